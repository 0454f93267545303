//! The frame parser (sans-io), checklist sections A and N.
//!
//! [`parse`] looks at the start of a buffer and returns one complete frame and the bytes it used,
//! or says how many bytes it needs. The caller strips inter-frame EOLs first with [`skip_eols`]
//! (they double as heart-beats, A4/E6).
//!
//! Decisions (documented in docs/protocol.md):
//! - A CR immediately before an LF is stripped in every version (A2 for 1.2; A3 for 1.0/1.1).
//! - Header values are never trimmed or padded, in any version (A11).
//! - The first colon splits a header line; later colons belong to the value (A10).
//! - Command lines, header names and values must be valid UTF-8 (A13), and a header may not
//!   contain NUL.
//!
//! # Invariants
//! - Never panics on any input, never reads past the slice.
//! - Limits are checked during the scan: an overlong line or body is an error as soon as the
//!   buffer holds more bytes than the limit allows, never after buffering all of it.

use super::escape::{self, Escaping};
use super::frame::{Command, Frame, Header, Headers};
use super::version::Version;
use memchr::memchr;
use thiserror::Error;

/// Longest command line we look at before calling the input garbage.
const MAX_COMMAND_LEN: usize = 16;

/// Limits enforced while parsing.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Header lines in one frame.
    pub max_headers: usize,
    /// Bytes of one `name:value` line, EOL excluded.
    pub max_header_len: usize,
    /// Body bytes.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_headers: 64, max_header_len: 8192, max_body: 1 << 20 }
    }
}

/// What [`parse`] found.
// A frame is returned by value once per parse; boxing it would allocate per frame, which is what
// the inline header storage exists to avoid.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Parsed<'a> {
    /// A complete frame and the number of bytes it used (through its NUL).
    Frame(Frame<'a>, usize),
    /// Not enough bytes yet. `need` is the total buffer length that will complete the frame when
    /// it is known (a `content-length` body), else 0, and then `until` says what it waits for.
    Incomplete { need: usize, until: Option<Until> },
}

/// What an incomplete frame without a known length waits for: no parse of the same buffer
/// grown by more bytes can complete or fail until `byte` (the LF ending the line being read, or
/// the NUL ending a body) appears at or after offset `from`, or the buffer reaches `limit`
/// bytes (where a line or body would be too long). A caller that receives its input in small
/// pieces checks only the new bytes for `byte` instead of parsing again: linear, not quadratic,
/// in the frame's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Until {
    pub byte: u8,
    pub from: usize,
    pub limit: usize,
}

impl Until {
    /// Whether `buf` (the same input, grown) may now parse differently; if not, the bytes
    /// looked at are remembered so that the next call looks only at newer ones.
    pub fn reached(&mut self, buf: &[u8]) -> bool {
        if buf.len() >= self.limit {
            return true;
        }
        let from = self.from.min(buf.len());
        if memchr(self.byte, &buf[from..]).is_some() {
            return true;
        }
        self.from = buf.len();
        false
    }
}

/// A malformed or oversized frame. Each maps to an ERROR `message` word in the session.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("unknown or malformed command")]
    BadCommand,
    #[error("header line longer than {0} bytes")]
    HeaderTooLong(usize),
    #[error("more than {0} header lines")]
    TooManyHeaders(usize),
    #[error("header line without a colon")]
    NoColon,
    #[error("header contains a NUL byte")]
    NulInHeader,
    #[error("frame is not valid UTF-8 in its command or headers")]
    NotUtf8,
    #[error("undefined escape sequence in a header")]
    BadEscape,
    #[error("content-length is not a non-negative integer")]
    BadContentLength,
    #[error("body larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("body is not followed by a NUL byte")]
    MissingNul,
}

impl ParseError {
    /// The short `message` header word (seeds-facts error words).
    pub fn word(&self) -> super::ErrorWord {
        use super::ErrorWord;
        match self {
            ParseError::HeaderTooLong(_) | ParseError::TooManyHeaders(_) => ErrorWord::HdrFlup,
            ParseError::BodyTooLarge(_) => ErrorWord::MsgFlup,
            ParseError::BadContentLength => ErrorWord::LenNotInt,
            ParseError::MissingNul => ErrorWord::BodyErr,
            _ => ErrorWord::Syntax,
        }
    }
}

/// Number of leading EOL bytes (`\n`, or `\r\n`) at the start of `buf`. A lone trailing `\r` is
/// left for the next read to complete.
pub fn skip_eols(buf: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match buf.get(i) {
            Some(b'\n') => i += 1,
            Some(b'\r') if buf.get(i + 1) == Some(&b'\n') => i += 2,
            _ => return i,
        }
    }
}

/// The escaping rules for a frame of `command` in a session of `version`.
pub fn escaping_for(command: Command, version: Version) -> Escaping {
    if command.is_connect_family() {
        return Escaping::None;
    }
    match version {
        Version::V1_0 => Escaping::None,
        Version::V1_1 => Escaping::V11,
        Version::V1_2 => Escaping::V12,
    }
}

/// Find the next line starting at `pos`, at most `max` bytes long (EOL excluded). Returns the
/// line without its EOL and the position after the LF; `Ok(None)` if incomplete.
fn next_line(buf: &[u8], pos: usize, max: usize, too_long: ParseError) -> Result<Option<(&[u8], usize)>, ParseError> {
    let rest = &buf[pos..];
    // Look no further than the limit allows: max bytes, a CR and the LF.
    let window = &rest[..rest.len().min(max + 2)];
    match memchr(b'\n', window) {
        Some(lf) => {
            let line = &rest[..lf];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > max {
                return Err(too_long);
            }
            Ok(Some((line, pos + lf + 1)))
        }
        None if window.len() >= max + 2 => Err(too_long),
        None => Ok(None),
    }
}

fn parse_content_length(v: &str) -> Result<usize, ParseError> {
    if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadContentLength);
    }
    v.parse().map_err(|_| ParseError::BadContentLength)
}

/// Parse one frame from the start of `buf` (which must not start with EOLs; see [`skip_eols`]).
/// `version` selects the escaping rules; before CONNECT pass [`Version::V1_2`].
pub fn parse<'a>(buf: &'a [u8], version: Version, limits: &Limits) -> Result<Parsed<'a>, ParseError> {
    let (cmd_line, mut pos) = match next_line(buf, 0, MAX_COMMAND_LEN, ParseError::BadCommand)? {
        Some(x) => x,
        None => return Ok(incomplete_line(buf, 0, MAX_COMMAND_LEN)),
    };
    let command = Command::from_bytes(cmd_line).ok_or(ParseError::BadCommand)?;
    let esc = escaping_for(command, version);

    let mut headers: Headers<'a> = Headers::new();
    let mut content_length: Option<usize> = None;
    let mut seen_content_length = false;
    loop {
        let (line, next) = match next_line(buf, pos, limits.max_header_len, ParseError::HeaderTooLong(limits.max_header_len))? {
            Some(x) => x,
            None => return Ok(incomplete_line(buf, pos, limits.max_header_len)),
        };
        pos = next;
        if line.is_empty() {
            break;
        }
        if headers.len() >= limits.max_headers {
            return Err(ParseError::TooManyHeaders(limits.max_headers));
        }
        if memchr(0, line).is_some() {
            return Err(ParseError::NulInHeader);
        }
        let colon = memchr(b':', line).ok_or(ParseError::NoColon)?;
        let name = std::str::from_utf8(&line[..colon]).map_err(|_| ParseError::NotUtf8)?;
        let value = std::str::from_utf8(&line[colon + 1..]).map_err(|_| ParseError::NotUtf8)?;
        let name = escape::decode(name, esc).map_err(|_| ParseError::BadEscape)?;
        let value = escape::decode(value, esc).map_err(|_| ParseError::BadEscape)?;
        if name == "content-length" && !seen_content_length {
            seen_content_length = true;
            let n = parse_content_length(&value)?;
            if n > limits.max_body {
                return Err(ParseError::BodyTooLarge(limits.max_body));
            }
            content_length = Some(n);
        }
        headers.push(Header { name, value });
    }

    let body_start = pos;
    let (body, used) = match content_length {
        Some(n) => {
            let need = body_start + n + 1;
            if buf.len() < need {
                return Ok(Parsed::Incomplete { need, until: None });
            }
            if buf[body_start + n] != 0 {
                return Err(ParseError::MissingNul);
            }
            (&buf[body_start..body_start + n], need)
        }
        None => {
            let rest = &buf[body_start..];
            let window = &rest[..rest.len().min(limits.max_body + 1)];
            match memchr(0, window) {
                Some(nul) => (&rest[..nul], body_start + nul + 1),
                None if window.len() > limits.max_body => return Err(ParseError::BodyTooLarge(limits.max_body)),
                None => {
                    let until = Until { byte: 0, from: buf.len(), limit: body_start + limits.max_body + 1 };
                    return Ok(Parsed::Incomplete { need: 0, until: Some(until) });
                }
            }
        }
    };
    Ok(Parsed::Frame(Frame { command, headers, body }, used))
}

/// A line starting at `start` is not complete: it waits for its LF, or for the length at which
/// [`next_line`] finds it too long (`max` bytes, a CR and the LF).
fn incomplete_line<'a>(buf: &[u8], start: usize, max: usize) -> Parsed<'a> {
    Parsed::Incomplete { need: 0, until: Some(Until { byte: b'\n', from: buf.len(), limit: start + max + 2 }) }
}

/// Convenience for tests and tools: own a copy of a header list.
pub fn owned_headers(frame: &Frame<'_>) -> Vec<(String, String)> {
    frame.headers.iter().map(|h| (h.name.to_string(), h.value.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> Limits {
        Limits { max_headers: 8, max_header_len: 64, max_body: 1024 }
    }

    fn one(buf: &[u8], v: Version) -> (Frame<'_>, usize) {
        match parse(buf, v, &lim()).expect("parse error") {
            Parsed::Frame(f, n) => (f, n),
            Parsed::Incomplete { .. } => panic!("incomplete"),
        }
    }

    /// Parse every frame in `buf` as a client would feed it: all at once.
    type Owned = (Command, Vec<(String, String)>, Vec<u8>);

    fn all_frames(buf: &[u8], v: Version) -> Vec<Owned> {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            pos += skip_eols(&buf[pos..]);
            if pos >= buf.len() {
                return out;
            }
            match parse(&buf[pos..], v, &lim()).unwrap() {
                Parsed::Frame(f, n) => {
                    out.push((f.command, owned_headers(&f), f.body.to_vec()));
                    pos += n;
                }
                Parsed::Incomplete { .. } => return out,
            }
        }
    }

    /// Feed `buf` split into two reads at `split`, the way a connection buffers a partial frame,
    /// and collect the frames.
    fn frames_split(buf: &[u8], split: usize, v: Version) -> Vec<Owned> {
        let mut acc: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        for chunk in [&buf[..split], &buf[split..]] {
            acc.extend_from_slice(chunk);
            loop {
                let skip = skip_eols(&acc);
                acc.drain(..skip);
                if acc.is_empty() {
                    break;
                }
                let used = match parse(&acc, v, &lim()).unwrap() {
                    Parsed::Frame(f, n) => {
                        out.push((f.command, owned_headers(&f), f.body.to_vec()));
                        n
                    }
                    Parsed::Incomplete { .. } => break,
                };
                acc.drain(..used);
            }
        }
        out
    }

    const STREAM: &[u8] = b"SEND\ndestination:/queue/a\nreceipt:1\n\nhello\0\n\nSEND\r\ndestination:/queue/b\r\ncontent-length:5\r\n\r\nx\0y\0z\0\r\nSUBSCRIBE\nid:0\ndestination:/topic/t\nack:client\n\n\0";

    #[test]
    fn a1_every_split_offset_gives_the_same_frames() {
        let whole = all_frames(STREAM, Version::V1_2);
        assert_eq!(whole.len(), 3);
        for split in 0..=STREAM.len() {
            assert_eq!(frames_split(STREAM, split, Version::V1_2), whole, "split at {split}");
        }
    }

    /// Feed `buf` a byte at a time, parsing only when the last `Incomplete` says the input may
    /// now parse differently (`need` or `until`), as the broker does; returns the frames, the
    /// error if any, and how many parses it took.
    fn gated_byte_at_a_time(buf: &[u8], v: Version) -> (Vec<Owned>, Option<ParseError>, usize) {
        let (mut acc, mut out, mut parses) = (Vec::new(), Vec::new(), 0);
        let (mut need, mut until): (usize, Option<Until>) = (0, None);
        for &b in buf {
            acc.push(b);
            loop {
                let skip = skip_eols(&acc);
                if skip > 0 {
                    acc.drain(..skip);
                    (need, until) = (0, None);
                }
                let ready = !acc.is_empty() && if need > 0 { acc.len() >= need } else { until.as_mut().is_none_or(|u| u.reached(&acc)) };
                if !ready {
                    break;
                }
                parses += 1;
                let used = match parse(&acc, v, &lim()) {
                    Ok(Parsed::Frame(f, n)) => {
                        out.push((f.command, owned_headers(&f), f.body.to_vec()));
                        n
                    }
                    Ok(Parsed::Incomplete { need: n, until: u }) => {
                        (need, until) = (n, u);
                        break;
                    }
                    Err(e) => return (out, Some(e), parses),
                };
                acc.drain(..used);
                (need, until) = (0, None);
            }
        }
        (out, None, parses)
    }

    #[test]
    fn the_incomplete_hint_never_hides_a_frame_or_an_error_and_keeps_parsing_linear() {
        let whole = all_frames(STREAM, Version::V1_2);
        let (frames, err, parses) = gated_byte_at_a_time(STREAM, Version::V1_2);
        assert_eq!((frames, err), (whole, None));
        // One parse per line and per frame end, not one per byte.
        let lines = STREAM.iter().filter(|&&b| b == b'\n').count();
        assert!(parses <= lines + 8, "{parses} parses for {} bytes", STREAM.len());
        // A body without content-length, a byte at a time: a handful of parses, not 1000.
        let mut f = b"SEND\ndestination:/q\n\n".to_vec();
        f.extend(std::iter::repeat_n(b'b', 1000));
        f.push(0);
        let (frames, err, parses) = gated_byte_at_a_time(&f, Version::V1_2);
        assert_eq!((frames.len(), err, frames[0].2.len()), (1, None, 1000));
        assert!(parses <= 6, "{parses} parses");
        // Limits still trip while waiting: a line, a command and a body that are too long.
        let long_line = [b"SEND\nx-h:".as_slice(), &[b'v'; 100]].concat();
        assert_eq!(gated_byte_at_a_time(&long_line, Version::V1_2).1, Some(ParseError::HeaderTooLong(64)));
        let long_cmd = [b'S'; 100];
        assert_eq!(gated_byte_at_a_time(&long_cmd, Version::V1_2).1, Some(ParseError::BadCommand));
        let long_body = [b"SEND\ndestination:/q\n\n".as_slice(), &[b'b'; 1100]].concat();
        assert_eq!(gated_byte_at_a_time(&long_body, Version::V1_2).1, Some(ParseError::BodyTooLarge(1024)));
        // The same errors as parsing it all at once.
        for bad in [&long_line[..], &long_cmd[..], &long_body[..]] {
            assert_eq!(parse(bad, Version::V1_2, &lim()).err(), gated_byte_at_a_time(bad, Version::V1_2).1);
        }
    }

    #[test]
    fn a1_byte_at_a_time() {
        let mut acc = Vec::new();
        let mut n = 0;
        for &b in STREAM {
            acc.push(b);
            let skip = skip_eols(&acc);
            acc.drain(..skip);
            if acc.is_empty() {
                continue;
            }
            let used = match parse(&acc, Version::V1_2, &lim()).unwrap() {
                Parsed::Frame(_, used) => used,
                Parsed::Incomplete { .. } => 0,
            };
            if used > 0 {
                acc.drain(..used);
                n += 1;
            }
        }
        assert_eq!(n, 3);
    }

    #[test]
    fn a2_crlf_same_as_lf() {
        let lf = all_frames(b"SEND\ndestination:/q\nk:v\n\nbody\0", Version::V1_2);
        let crlf = all_frames(b"SEND\r\ndestination:/q\r\nk:v\r\n\r\nbody\0", Version::V1_2);
        assert_eq!(lf, crlf);
    }

    #[test]
    fn a4_eols_between_frames() {
        let f = all_frames(b"\n\r\n\nSEND\ndestination:/q\n\n\0\n\n\r\nSEND\ndestination:/r\n\n\0\n", Version::V1_1);
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn a5_commands_are_case_sensitive() {
        assert_eq!(parse(b"send\ndestination:/q\n\n\0", Version::V1_2, &lim()).unwrap_err(), ParseError::BadCommand);
        assert_eq!(parse(b"Send\n\n\0", Version::V1_2, &lim()).unwrap_err(), ParseError::BadCommand);
    }

    #[test]
    fn a7_content_length_body_with_nuls() {
        let (f, n) = one(b"SEND\ndestination:/q\ncontent-length:3\n\n\0\0\0\0rest", Version::V1_2);
        assert_eq!(f.body, b"\0\0\0");
        assert_eq!(n, 42);
        assert_eq!(parse(b"SEND\ncontent-length:2\n\nabc\0", Version::V1_2, &lim()).unwrap_err(), ParseError::MissingNul);
        match parse(b"SEND\ncontent-length:10\n\nabc", Version::V1_2, &lim()).unwrap() {
            Parsed::Incomplete { need, .. } => assert_eq!(need, 35),
            _ => panic!(),
        }
    }

    #[test]
    fn a7_bad_content_length() {
        for v in ["-1", "abc", "", "1e3", "+5", "99999999999999999999999"] {
            let f = format!("SEND\ncontent-length:{v}\n\n\0");
            assert_eq!(parse(f.as_bytes(), Version::V1_2, &lim()).unwrap_err(), ParseError::BadContentLength, "{v}");
        }
        let f = b"SEND\ncontent-length:1025\n\n";
        assert_eq!(parse(f, Version::V1_2, &lim()).unwrap_err(), ParseError::BodyTooLarge(1024));
    }

    #[test]
    fn a10_first_colon_splits() {
        let (f, _) = one(b"CONNECT\npasscode:a:b\\c\n\n\0", Version::V1_2);
        assert_eq!(f.header("passcode"), Some("a:b\\c"));
        let (f, _) = one(b"SEND\ncurrent-time:07:42:00\n\n\0", Version::V1_0);
        assert_eq!(f.header("current-time"), Some("07:42:00"));
    }

    #[test]
    fn a11_a12_values_are_exact() {
        let (f, _) = one(b"SEND\nk: v \nempty:\n\n\0", Version::V1_1);
        assert_eq!(f.header("k"), Some(" v "));
        assert_eq!(f.header("empty"), Some(""));
    }

    #[test]
    fn a13_utf8_round_trips_and_invalid_is_rejected() {
        let (f, _) = one("SEND\nclé:välue✓\n\nbödy\0".as_bytes(), Version::V1_2);
        assert_eq!(f.header("clé"), Some("välue✓"));
        assert_eq!(f.body, "bödy".as_bytes());
        assert_eq!(parse(b"SEND\nk:\xff\xfe\n\n\0", Version::V1_2, &lim()).unwrap_err(), ParseError::NotUtf8);
    }

    #[test]
    fn b1_b7_escaping_per_command_and_version() {
        let (f, _) = one(b"SEND\nk:a\\cb\\nc\\r\n\n\0", Version::V1_2);
        assert_eq!(f.header("k"), Some("a:b\nc\r"));
        let (f, _) = one(b"SEND\nk:a\\cb\n\n\0", Version::V1_0);
        assert_eq!(f.header("k"), Some("a\\cb"));
        let (f, _) = one(b"CONNECT\nlogin:a\\cb\n\n\0", Version::V1_2);
        assert_eq!(f.header("login"), Some("a\\cb"));
        assert_eq!(parse(b"SEND\nk:\\t\n\n\0", Version::V1_2, &lim()).unwrap_err(), ParseError::BadEscape);
        assert_eq!(parse(b"SEND\nk:\\r\n\n\0", Version::V1_1, &lim()).unwrap_err(), ParseError::BadEscape);
    }

    #[test]
    fn c1_first_wins() {
        let (f, _) = one(b"SEND\ndestination:/a\ndestination:/b\n\n\0", Version::V1_2);
        assert_eq!(f.header("destination"), Some("/a"));
        assert_eq!(f.headers.len(), 2);
    }

    #[test]
    fn n1_header_limits_at_boundaries() {
        let l = lim();
        let line = |n: usize| format!("k:{}", "v".repeat(n - 2));
        let ok = format!("SEND\n{}\n\n\0", line(l.max_header_len));
        assert!(matches!(parse(ok.as_bytes(), Version::V1_2, &l).unwrap(), Parsed::Frame(..)));
        let bad = format!("SEND\n{}\n\n\0", line(l.max_header_len + 1));
        assert_eq!(parse(bad.as_bytes(), Version::V1_2, &l).unwrap_err(), ParseError::HeaderTooLong(64));
        // A header line streamed without an end is rejected once it passes the limit.
        let streaming = format!("SEND\n{}", "v".repeat(l.max_header_len + 2));
        assert_eq!(parse(streaming.as_bytes(), Version::V1_2, &l).unwrap_err(), ParseError::HeaderTooLong(64));
        let heads = |n: usize| format!("SEND\n{}\n\0", (0..n).map(|i| format!("h{i}:v\n")).collect::<String>());
        assert!(parse(heads(8).as_bytes(), Version::V1_2, &l).is_ok());
        assert_eq!(parse(heads(9).as_bytes(), Version::V1_2, &l).unwrap_err(), ParseError::TooManyHeaders(8));
    }

    #[test]
    fn n1_body_limit_at_boundaries() {
        let l = lim();
        let frame = |n: usize| {
            let mut v = b"SEND\n\n".to_vec();
            v.extend(std::iter::repeat_n(b'x', n));
            v.push(0);
            v
        };
        assert!(matches!(parse(&frame(1024), Version::V1_2, &l).unwrap(), Parsed::Frame(..)));
        assert_eq!(parse(&frame(1025), Version::V1_2, &l).unwrap_err(), ParseError::BodyTooLarge(1024));
        let mut endless = b"SEND\n\n".to_vec();
        endless.extend(std::iter::repeat_n(b'x', 2000));
        assert_eq!(parse(&endless, Version::V1_2, &l).unwrap_err(), ParseError::BodyTooLarge(1024));
    }

    #[test]
    fn garbage_never_panics() {
        let inputs: [&[u8]; 8] = [
            b"\0\0\0",
            b"GET / HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00",
            b"SEND",
            b"SEND\n",
            b"SEND\nx",
            b":\n\n\0",
            b"SEND\n:\n\n\0",
        ];
        for i in inputs {
            let _ = parse(i, Version::V1_2, &lim());
        }
        assert_eq!(parse(b"SEND\nnocolon\n\n\0", Version::V1_2, &lim()).unwrap_err(), ParseError::NoColon);
        assert_eq!(parse(b"SEND\nk:a\0b\n\n\0", Version::V1_2, &lim()).unwrap_err(), ParseError::NulInHeader);
    }
}
