//! STOMP over WebSocket for the load tool (`--ws PATH`): the upgrade request, unframing of
//! server messages, and masking of what the tool sends (RFC 6455 client rules).
//!
//! The tool's connections keep speaking STOMP bytes; this layer sits between them and the
//! socket: outgoing STOMP bytes become one masked binary frame per flush, incoming frames are
//! unframed into the STOMP read buffer.

/// A fixed masking key: masking is mandatory for clients, but it protects nothing on loopback,
/// and a constant key costs the same XOR as a random one.
const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x88];

/// Per-connection WebSocket state.
#[derive(Debug, Default)]
pub struct WsConn {
    /// The server answered 101.
    pub upgraded: bool,
    /// Bytes read from the socket and not yet unframed (or the HTTP response head).
    pub raw: Vec<u8>,
    /// Bytes to write: the upgrade request, then frames.
    pub wire: Vec<u8>,
}

/// The HTTP upgrade request for `path` on `host`.
pub fn upgrade_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: v12.stomp, v11.stomp, v10.stomp\r\n\r\n"
    )
    .into_bytes()
}

impl WsConn {
    pub fn new(host: &str, path: &str) -> WsConn {
        WsConn { upgraded: false, raw: Vec::new(), wire: upgrade_request(host, path) }
    }

    /// Wrap pending STOMP bytes into one masked binary frame (after the upgrade only).
    pub fn frame(&mut self, stomp: &mut Vec<u8>) {
        if !self.upgraded || stomp.is_empty() {
            return;
        }
        romp::ws::frame::encode_client(&mut self.wire, romp::ws::Opcode::Binary, true, stomp, MASK);
        stomp.clear();
    }

    /// Process `raw`: finish the upgrade, then move every complete server frame's payload to
    /// `stomp`. Errors end the connection.
    pub fn unframe(&mut self, stomp: &mut Vec<u8>) -> Result<(), String> {
        if !self.upgraded {
            let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                if self.raw.len() > 16 * 1024 {
                    return Err("no end of the HTTP upgrade response".into());
                }
                return Ok(());
            };
            let head = String::from_utf8_lossy(&self.raw[..end]).into_owned();
            if !head.starts_with("HTTP/1.1 101") {
                return Err(format!("WebSocket upgrade refused: {}", head.lines().next().unwrap_or("")));
            }
            self.raw.drain(..end + 4);
            self.upgraded = true;
        }
        let mut pos = 0;
        loop {
            let r = &self.raw[pos..];
            if r.len() < 2 {
                break;
            }
            if r[1] & 0x80 != 0 {
                return Err("the server sent a masked frame".into());
            }
            let (len, hdr) = match r[1] & 0x7f {
                126 if r.len() >= 4 => (u16::from_be_bytes([r[2], r[3]]) as usize, 4),
                127 if r.len() >= 10 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&r[2..10]);
                    (u64::from_be_bytes(b) as usize, 10)
                }
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if r.len() < hdr + len {
                break;
            }
            match r[0] & 0x0f {
                // Continuation, text and binary: STOMP bytes.
                0..=2 => stomp.extend_from_slice(&r[hdr..hdr + len]),
                8 => return Err("the server closed the WebSocket".into()),
                _ => {} // ping/pong: the tool never idles long enough to need an answer
            }
            pos += hdr + len;
        }
        self.raw.drain(..pos);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_then_frames_split_anywhere() {
        let mut server = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
        for msg in [&b"CONNECTED\n\n\0"[..], &vec![b'x'; 300][..]] {
            romp::ws::frame::encode(&mut server, romp::ws::Opcode::Binary, msg);
        }
        for split in 0..server.len() {
            let mut ws = WsConn::new("h", "/stomp");
            let mut out = Vec::new();
            ws.raw.extend_from_slice(&server[..split]);
            ws.unframe(&mut out).unwrap();
            ws.raw.extend_from_slice(&server[split..]);
            ws.unframe(&mut out).unwrap();
            assert!(ws.upgraded);
            assert_eq!(out.len(), 12 + 300, "split at {split}");
        }
        let mut ws = WsConn::new("h", "/stomp");
        ws.raw.extend_from_slice(b"HTTP/1.1 404 Not Found\r\n\r\n");
        assert!(ws.unframe(&mut Vec::new()).is_err());
    }
}
