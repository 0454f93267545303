//! Frame encoders (sans-io): append server frames to a caller's buffer.
//!
//! Header names and values are escaped for the *receiving* session (B6); CONNECTED is never
//! escaped (B7). Frames with a body always carry `content-length` (A8, A9).

use super::escape::{encode_into, Escaping};
use super::version::Version;
use super::Command;

/// The escaping a session of `version` expects on frames other than CONNECTED.
pub fn escaping(version: Version) -> Escaping {
    match version {
        Version::V1_0 => Escaping::None,
        Version::V1_1 => Escaping::V11,
        Version::V1_2 => Escaping::V12,
    }
}

/// Start a frame: the command line.
#[inline]
pub fn command(out: &mut Vec<u8>, cmd: Command) {
    out.extend_from_slice(cmd.as_str().as_bytes());
    out.push(b'\n');
}

/// One header line, escaped.
#[inline]
pub fn header(out: &mut Vec<u8>, name: &str, value: &str, esc: Escaping) {
    encode_into(out, name, esc);
    out.push(b':');
    encode_into(out, value, esc);
    out.push(b'\n');
}

/// A header whose value is a number (never needs escaping).
#[inline]
pub fn header_u64(out: &mut Vec<u8>, name: &str, value: u64) {
    out.extend_from_slice(name.as_bytes());
    out.push(b':');
    push_u64(out, value);
    out.push(b'\n');
}

/// Append the decimal digits of `v` without allocating.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Finish a frame that has a body: `content-length`, the blank line, the body and the NUL.
#[inline]
pub fn body(out: &mut Vec<u8>, body: &[u8]) {
    header_u64(out, "content-length", body.len() as u64);
    out.push(b'\n');
    out.extend_from_slice(body);
    out.push(0);
}

/// Finish a frame without a body.
#[inline]
pub fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\n\0");
}

/// CONNECTED (D5): version, heart-beat, session and server; never escaped, no body.
/// `negotiated`: the client sent `accept-version`, so CONNECTED names the version even if it is
/// 1.0; a plain 1.0 client (no `accept-version`) gets neither `version` nor `heart-beat` (D2).
pub fn connected(out: &mut Vec<u8>, version: Version, negotiated: bool, heart_beat: (u32, u32), session: &str, server: &str) {
    command(out, Command::Connected);
    if negotiated {
        header(out, "version", version.as_str(), Escaping::None);
    }
    if version > Version::V1_0 {
        out.extend_from_slice(b"heart-beat:");
        push_u64(out, heart_beat.0 as u64);
        out.push(b',');
        push_u64(out, heart_beat.1 as u64);
        out.push(b'\n');
    }
    header(out, "session", session, Escaping::None);
    header(out, "server", server, Escaping::None);
    end(out);
}

/// RECEIPT for `receipt_id`.
pub fn receipt(out: &mut Vec<u8>, receipt_id: &str, version: Version) {
    command(out, Command::Receipt);
    header(out, "receipt-id", receipt_id, escaping(version));
    end(out);
}

/// ERROR with a short `message` word, a sentence in the body, and `receipt-id` when the failing
/// frame asked for a receipt (K3, L2, L3). `extra` headers come after `message`.
pub fn error(out: &mut Vec<u8>, version: Version, message: &str, detail: &str, receipt_id: Option<&str>, extra: &[(&str, &str)]) {
    let esc = escaping(version);
    command(out, Command::Error);
    header(out, "message", message, esc);
    if let Some(r) = receipt_id {
        header(out, "receipt-id", r, esc);
    }
    for (k, v) in extra {
        header(out, k, v, esc);
    }
    header(out, "content-type", "text/plain", esc);
    body(out, detail.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stomp::{parse, Limits, Parsed};

    #[test]
    fn push_u64_digits() {
        for v in [0u64, 7, 10, 99, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
    }

    #[test]
    fn error_frame_parses_back() {
        let mut out = Vec::new();
        error(&mut out, Version::V1_2, "syntax", "bad: frame", Some("r:1"), &[("version", "1.0,1.1,1.2")]);
        match parse(&out, Version::V1_2, &Limits::default()).unwrap() {
            Parsed::Frame(f, n) => {
                assert_eq!(n, out.len());
                assert_eq!(f.command, Command::Error);
                assert_eq!(f.header("receipt-id"), Some("r:1"));
                assert_eq!(f.header("version"), Some("1.0,1.1,1.2"));
                assert_eq!(f.header("content-length"), Some("10"));
                assert_eq!(f.body, b"bad: frame");
            }
            _ => panic!(),
        };
    }

    #[test]
    fn connected_is_never_escaped() {
        let mut out = Vec::new();
        connected(&mut out, Version::V1_2, true, (500, 0), "s:1", "romp/0.1");
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("session:s:1\n"), "{s}");
        assert!(s.contains("heart-beat:500,0\n"));
        let mut out = Vec::new();
        connected(&mut out, Version::V1_0, false, (0, 0), "s", "romp");
        assert!(!String::from_utf8(out).unwrap().contains("version"));
    }
}
