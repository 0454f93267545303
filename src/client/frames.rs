//! Client frame encoders (sans-io): append CONNECT, SEND, SUBSCRIBE, ... to a caller's buffer.
//!
//! Built on the stomp core's primitives ([`crate::stomp::encoder`]). Headers are escaped for the
//! session's version; CONNECT is never escaped (B7), so its values must not need it. A frame
//! with a body always carries `content-length` (A8), so bodies may hold NUL bytes.
//!
//! Each encoder checks what it writes before writing anything: on error `out` is unchanged.

use super::ClientError;
use crate::stomp::encoder::{self, escaping};
use crate::stomp::escape::Escaping;
use crate::stomp::{AckMode, Command, HeartBeat, Version};

/// Extra headers, in the order they are written.
pub type Headers<'a> = &'a [(&'a str, &'a str)];

/// Can `esc` carry this header name or value? CR is refused outside 1.2 (it would be eaten as
/// part of an EOL), LF and (in names) colon where there is no escaping.
fn check(s: &str, name: bool, esc: Escaping, version: Version) -> Result<(), ClientError> {
    let bad = match esc {
        Escaping::None => s.bytes().any(|b| b == b'\n' || b == b'\r' || (name && b == b':')),
        Escaping::V11 => s.bytes().any(|b| b == b'\r'),
        Escaping::V12 => false,
    };
    if bad {
        return Err(ClientError::Unencodable(s.to_string(), version));
    }
    Ok(())
}

fn check_all(headers: Headers<'_>, esc: Escaping, version: Version) -> Result<(), ClientError> {
    for (k, v) in headers {
        check(k, true, esc, version)?;
        check(v, false, esc, version)?;
    }
    Ok(())
}

/// Write a whole frame: command, `headers` then `extra`, and the body (with `content-length`)
/// or the frame end.
fn frame(
    out: &mut Vec<u8>,
    cmd: Command,
    version: Version,
    headers: Headers<'_>,
    extra: Headers<'_>,
    body: Option<&[u8]>,
) -> Result<(), ClientError> {
    let esc = if cmd.is_connect_family() { Escaping::None } else { escaping(version) };
    check_all(headers, esc, version)?;
    check_all(extra, esc, version)?;
    encoder::command(out, cmd);
    for (k, v) in headers.iter().chain(extra) {
        encoder::header(out, k, v, esc);
    }
    match body {
        Some(b) => encoder::body(out, b),
        None => encoder::end(out),
    }
    Ok(())
}

/// What a CONNECT asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect<'a> {
    /// Versions offered; `[V1_0]` alone sends a plain 1.0 CONNECT (no `accept-version`, no
    /// `heart-beat`, as 1.0 servers expect).
    pub versions: &'a [Version],
    /// The virtual host (`host` header; required by 1.1 and 1.2).
    pub host: &'a str,
    pub login: Option<&'a str>,
    pub passcode: Option<&'a str>,
    /// `heart-beat: cx,cy` (ignored for a plain 1.0 CONNECT).
    pub heart_beat: HeartBeat,
    /// Send the 1.2 `STOMP` command instead of `CONNECT`.
    pub stomp_command: bool,
}

/// CONNECT (or STOMP).
pub fn connect(out: &mut Vec<u8>, c: &Connect<'_>, extra: Headers<'_>) -> Result<(), ClientError> {
    let plain_10 = c.versions.iter().all(|v| *v == Version::V1_0);
    let accept: String = c.versions.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(",");
    let hb = format!("{},{}", c.heart_beat.send_ms, c.heart_beat.recv_ms);
    let mut h: Vec<(&str, &str)> = Vec::with_capacity(5);
    if !plain_10 {
        h.push(("accept-version", &accept));
        h.push(("host", c.host));
        h.push(("heart-beat", &hb));
    } else if !c.host.is_empty() {
        h.push(("host", c.host));
    }
    if let Some(l) = c.login {
        h.push(("login", l));
    }
    if let Some(p) = c.passcode {
        h.push(("passcode", p));
    }
    let cmd = if c.stomp_command { Command::Stomp } else { Command::Connect };
    frame(out, cmd, Version::V1_0, &h, extra, None)
}

/// SEND to `dest`; `extra` may carry `receipt`, `transaction`, `content-type` and user headers.
pub fn send(out: &mut Vec<u8>, version: Version, dest: &str, body: &[u8], extra: Headers<'_>) -> Result<(), ClientError> {
    frame(out, Command::Send, version, &[("destination", dest)], extra, Some(body))
}

/// The start of a SEND of `len` body bytes, through the blank line: a caller that sends many
/// messages of one shape encodes this once and writes `head`, body, NUL for each.
pub fn send_head(out: &mut Vec<u8>, version: Version, dest: &str, len: usize, extra: Headers<'_>) -> Result<(), ClientError> {
    let esc = escaping(version);
    check(dest, false, esc, version)?;
    check_all(extra, esc, version)?;
    encoder::command(out, Command::Send);
    encoder::header(out, "destination", dest, esc);
    for (k, v) in extra {
        encoder::header(out, k, v, esc);
    }
    encoder::header_u64(out, "content-length", len as u64);
    out.push(b'\n');
    Ok(())
}

/// SUBSCRIBE `id` to `dest` with an ack mode (1.0 has no `client-individual`).
pub fn subscribe(out: &mut Vec<u8>, version: Version, id: &str, dest: &str, ack: AckMode, extra: Headers<'_>) -> Result<(), ClientError> {
    if version == Version::V1_0 && ack == AckMode::ClientIndividual {
        return Err(ClientError::Unsupported("ack:client-individual", version));
    }
    frame(out, Command::Subscribe, version, &[("id", id), ("destination", dest), ("ack", ack.as_str())], extra, None)
}

/// UNSUBSCRIBE `id`.
pub fn unsubscribe(out: &mut Vec<u8>, version: Version, id: &str, extra: Headers<'_>) -> Result<(), ClientError> {
    frame(out, Command::Unsubscribe, version, &[("id", id)], extra, None)
}

/// What identifies a MESSAGE for ACK/NACK: its `ack`, `subscription` and `message-id` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRef<'a> {
    pub ack: Option<&'a str>,
    pub subscription: Option<&'a str>,
    pub message_id: Option<&'a str>,
}

/// ACK (`nack: false`) or NACK in the version's shape.
pub fn ack(out: &mut Vec<u8>, version: Version, r: AckRef<'_>, nack: bool, extra: Headers<'_>) -> Result<(), ClientError> {
    let missing = |what: &'static str| ClientError::Protocol(format!("the MESSAGE has no {what} header to acknowledge it by"));
    let cmd = if nack { Command::Nack } else { Command::Ack };
    match version {
        Version::V1_0 if nack => Err(ClientError::Unsupported("NACK", version)),
        Version::V1_0 => frame(out, cmd, version, &[("message-id", r.message_id.ok_or(missing("message-id"))?)], extra, None),
        Version::V1_1 => {
            let h = [
                ("subscription", r.subscription.ok_or(missing("subscription"))?),
                ("message-id", r.message_id.ok_or(missing("message-id"))?),
            ];
            frame(out, cmd, version, &h, extra, None)
        }
        Version::V1_2 => frame(out, cmd, version, &[("id", r.ack.ok_or(missing("ack"))?)], extra, None),
    }
}

/// BEGIN, COMMIT or ABORT of `transaction`.
pub fn transaction(out: &mut Vec<u8>, version: Version, cmd: Command, tx: &str, extra: Headers<'_>) -> Result<(), ClientError> {
    debug_assert!(matches!(cmd, Command::Begin | Command::Commit | Command::Abort));
    frame(out, cmd, version, &[("transaction", tx)], extra, None)
}

/// DISCONNECT, with a receipt when `receipt` is given.
pub fn disconnect(out: &mut Vec<u8>, version: Version, receipt: Option<&str>) -> Result<(), ClientError> {
    match receipt {
        Some(r) => frame(out, Command::Disconnect, version, &[("receipt", r)], &[], None),
        None => frame(out, Command::Disconnect, version, &[], &[], None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stomp::{parse, Limits, Parsed};

    fn parsed(out: &[u8], v: Version) -> crate::stomp::Frame<'_> {
        match parse(out, v, &Limits::default()).expect("parses") {
            Parsed::Frame(f, n) => {
                assert_eq!(n, out.len());
                f
            }
            Parsed::Incomplete { .. } => panic!("incomplete"),
        }
    }

    #[test]
    fn connect_offers_versions_and_heart_beats() {
        let mut out = Vec::new();
        let c = Connect {
            versions: &[Version::V1_1, Version::V1_2],
            host: "/",
            login: Some("u"),
            passcode: Some("p:w"),
            heart_beat: HeartBeat { send_ms: 100, recv_ms: 200 },
            stomp_command: false,
        };
        connect(&mut out, &c, &[]).unwrap();
        let f = parsed(&out, Version::V1_2);
        assert_eq!(f.command, Command::Connect);
        assert_eq!(f.header("accept-version"), Some("1.1,1.2"));
        assert_eq!(f.header("heart-beat"), Some("100,200"));
        assert_eq!(f.header("passcode"), Some("p:w"), "CONNECT is not escaped");
        let mut out = Vec::new();
        connect(&mut out, &Connect { versions: &[Version::V1_0], host: "", ..c.clone() }, &[]).unwrap();
        let f = parsed(&out, Version::V1_0);
        assert_eq!((f.header("accept-version"), f.header("heart-beat"), f.header("host")), (None, None, None));
    }

    #[test]
    fn headers_are_escaped_per_version_or_refused() {
        for v in [Version::V1_1, Version::V1_2] {
            let mut out = Vec::new();
            send(&mut out, v, "/queue/a", b"x\0y", &[("k:1", "a\nb\\c")]).unwrap();
            let f = parsed(&out, v);
            assert_eq!(f.header("k:1"), Some("a\nb\\c"), "{v}");
            assert_eq!(f.body, b"x\0y");
        }
        let mut out = Vec::new();
        assert!(matches!(send(&mut out, Version::V1_0, "/queue/a", b"", &[("k", "a\nb")]), Err(ClientError::Unencodable(..))));
        assert!(matches!(send(&mut out, Version::V1_1, "/queue/a", b"", &[("k", "a\rb")]), Err(ClientError::Unencodable(..))));
        assert!(out.is_empty(), "nothing written on error");
        send(&mut out, Version::V1_2, "/queue/a", b"", &[("k", "a\rb")]).unwrap();
        assert_eq!(parsed(&out, Version::V1_2).header("k"), Some("a\rb"));
    }

    #[test]
    fn ack_shapes_follow_the_version() {
        let r = AckRef { ack: Some("A1"), subscription: Some("s"), message_id: Some("m") };
        let shape = |v: Version, nack: bool| {
            let mut out = Vec::new();
            ack(&mut out, v, r, nack, &[("transaction", "t")]).map(|_| {
                let f = parsed(&out, v);
                (f.command, f.headers.iter().map(|h| format!("{}={}", h.name, h.value)).collect::<Vec<_>>())
            })
        };
        assert_eq!(shape(Version::V1_0, false).unwrap(), (Command::Ack, vec!["message-id=m".into(), "transaction=t".into()]));
        assert!(matches!(shape(Version::V1_0, true), Err(ClientError::Unsupported("NACK", _))));
        assert_eq!(
            shape(Version::V1_1, true).unwrap(),
            (Command::Nack, vec!["subscription=s".into(), "message-id=m".into(), "transaction=t".into()])
        );
        assert_eq!(shape(Version::V1_2, false).unwrap(), (Command::Ack, vec!["id=A1".into(), "transaction=t".into()]));
    }

    #[test]
    fn send_head_matches_send() {
        let mut a = Vec::new();
        send(&mut a, Version::V1_2, "/topic/t", b"hello", &[("receipt", "r")]).unwrap();
        let mut b = Vec::new();
        send_head(&mut b, Version::V1_2, "/topic/t", 5, &[("receipt", "r")]).unwrap();
        b.extend_from_slice(b"hello\0");
        assert_eq!(a, b);
    }
}
