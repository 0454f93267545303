//! The WebSocket opening handshake (RFC 6455 section 4.2), sans-io.
//!
//! Validates an HTTP GET upgrade request already parsed by [`crate::http`], checks the Origin
//! against the configured list, negotiates the STOMP subprotocol, and writes the 101 response.

use crate::http::Request;
use base64::Engine;
use sha1::{Digest, Sha1};
use thiserror::Error;

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// STOMP subprotocols we accept, best first (O1).
pub const SUBPROTOCOLS: [&str; 4] = ["v12.stomp", "v11.stomp", "v10.stomp", "stomp"];

/// Why an upgrade request was refused; each maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    #[error("not a WebSocket upgrade request")]
    NotUpgrade,
    #[error("unsupported Sec-WebSocket-Version (only 13)")]
    BadVersion,
    #[error("missing or malformed Sec-WebSocket-Key")]
    BadKey,
    #[error("origin not allowed")]
    Origin,
}

impl HandshakeError {
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::BadVersion => 426,
            HandshakeError::Origin => 403,
            _ => 400,
        }
    }
}

/// A header value contains `token` in its comma-separated list (case-insensitive).
fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Does this request ask for a WebSocket?
pub fn is_upgrade(req: &Request) -> bool {
    has_token(req.header("upgrade"), "websocket")
}

/// The `Sec-WebSocket-Accept` value for a key.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Is `origin` allowed by `allowed` (entries are exact origins, or `*`)? A request without
/// Origin (not a browser) is allowed.
pub fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    match origin {
        None => true,
        Some(o) => allowed.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(o)),
    }
}

/// The accepted handshake: the 101 response to write.
#[derive(Debug)]
pub struct Accepted {
    pub subprotocol: Option<&'static str>,
    pub response: Vec<u8>,
}

/// Validate an upgrade request and build the 101 response.
pub fn accept(req: &Request, allowed_origins: &[String]) -> Result<Accepted, HandshakeError> {
    if !is_upgrade(req) || !has_token(req.header("connection"), "upgrade") {
        return Err(HandshakeError::NotUpgrade);
    }
    if req.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(HandshakeError::BadVersion);
    }
    let key = req.header("sec-websocket-key").map(str::trim).ok_or(HandshakeError::BadKey)?;
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(k) if k.len() == 16 => {}
        _ => return Err(HandshakeError::BadKey),
    }
    if !origin_allowed(req.header("origin"), allowed_origins) {
        return Err(HandshakeError::Origin);
    }
    // Our preference order among what the client offers; no offer is fine (stomp.py).
    let offered: Vec<&str> = req.header("sec-websocket-protocol").map(|v| v.split(',').map(str::trim).collect()).unwrap_or_default();
    let subprotocol = SUBPROTOCOLS.iter().copied().find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)));
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    if let Some(p) = subprotocol {
        response.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    response.push_str("\r\n");
    Ok(Accepted { subprotocol, response: response.into_bytes() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request, Parsed};

    fn req(text: &str) -> Request {
        match parse_request(text.as_bytes(), 8192).unwrap() {
            Parsed::Complete(r, _) => r,
            Parsed::Partial => panic!("partial"),
        }
    }

    const GOOD: &str = "GET /stomp HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    #[test]
    fn rfc_example_accept_key() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn negotiates_best_offered_stomp_subprotocol() {
        let r = req(&format!("{GOOD}Sec-WebSocket-Protocol: v10.stomp, v11.stomp, v12.stomp\r\n\r\n"));
        let a = accept(&r, &["*".into()]).unwrap();
        assert_eq!(a.subprotocol, Some("v12.stomp"));
        let text = String::from_utf8(a.response).unwrap();
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("Sec-WebSocket-Protocol: v12.stomp\r\n"));
        let a = accept(&req(&format!("{GOOD}\r\n")), &["*".into()]).unwrap();
        assert_eq!(a.subprotocol, None, "no offer (stomp.py) is accepted without a protocol");
        let a = accept(&req(&format!("{GOOD}Sec-WebSocket-Protocol: mqtt\r\n\r\n")), &["*".into()]).unwrap();
        assert_eq!(a.subprotocol, None);
    }

    #[test]
    fn rejects_bad_requests() {
        let no_upgrade = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(accept(&req(no_upgrade), &[]).unwrap_err(), HandshakeError::NotUpgrade);
        let v8 = GOOD.replace("Version: 13", "Version: 8") + "\r\n";
        assert_eq!(accept(&req(&v8), &[]).unwrap_err(), HandshakeError::BadVersion);
        let badkey = GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "short") + "\r\n";
        assert_eq!(accept(&req(&badkey), &[]).unwrap_err(), HandshakeError::BadKey);
        let origin = format!("{GOOD}Origin: http://evil.example\r\n\r\n");
        assert_eq!(accept(&req(&origin), &["http://good.example".into()]).unwrap_err(), HandshakeError::Origin);
        assert!(accept(&req(&origin), &["http://evil.example".into()]).is_ok());
    }
}
