//! WebSocket frames (RFC 6455 section 5), sans-io: a decoder for client frames and encoders for
//! server frames.
//!
//! # Invariants
//! - Client frames must be masked, carry no RSV bits (no extensions are negotiated) and use a
//!   known opcode; control frames are final and at most 125 bytes; a data message may be
//!   fragmented but not interleaved with another data message.
//! - A data message is bounded by `max_message` bytes across its fragments, checked from the
//!   frame header before any payload is buffered.
//! - Text messages are validated as UTF-8 across fragment boundaries.

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_u8(b: u8) -> Option<Opcode> {
        Some(match b {
            0 => Opcode::Continuation,
            1 => Opcode::Text,
            2 => Opcode::Binary,
            8 => Opcode::Close,
            9 => Opcode::Ping,
            10 => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0,
            Opcode::Text => 1,
            Opcode::Binary => 2,
            Opcode::Close => 8,
            Opcode::Ping => 9,
            Opcode::Pong => 10,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Close status codes we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    Normal = 1000,
    GoingAway = 1001,
    Protocol = 1002,
    BadData = 1007,
    Policy = 1008,
    TooBig = 1009,
}

/// A client frame that breaks the protocol; answered with a close frame of [`WsError::code`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WsError {
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("WebSocket message larger than {0} bytes")]
    TooBig(usize),
    #[error("text message is not valid UTF-8")]
    BadUtf8,
}

impl WsError {
    pub fn code(&self) -> CloseCode {
        match self {
            WsError::Protocol(_) => CloseCode::Protocol,
            WsError::TooBig(_) => CloseCode::TooBig,
            WsError::BadUtf8 => CloseCode::BadData,
        }
    }
}

/// What one client frame meant.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Payload bytes of a text or binary message (or a fragment of one), unmasked.
    Data(&'a [u8]),
    Ping(&'a [u8]),
    Pong,
    /// The client's close frame, with its status code if it gave one.
    Close(Option<u16>),
}

/// Decoder state for one connection.
#[derive(Debug)]
pub struct Decoder {
    /// The data message in progress (Text or Binary) and its length so far.
    message: Option<(Opcode, usize)>,
    max_message: usize,
    /// An incomplete UTF-8 sequence at the end of the last text fragment.
    carry: [u8; 4],
    carry_len: usize,
}

fn utf8_len(lead: u8) -> usize {
    match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

impl Decoder {
    pub fn new(max_message: usize) -> Decoder {
        Decoder { message: None, max_message, carry: [0; 4], carry_len: 0 }
    }

    /// Decode one frame from the start of `buf`, unmasking its payload in place. Returns the
    /// event and the bytes used, or `None` if the frame is not complete yet.
    pub fn decode<'a>(&mut self, buf: &'a mut [u8]) -> Result<Option<(Event<'a>, usize)>, WsError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(WsError::Protocol("reserved bits set"));
        }
        let op = Opcode::from_u8(b0 & 0x0f).ok_or(WsError::Protocol("unknown opcode"))?;
        if b1 & 0x80 == 0 {
            return Err(WsError::Protocol("client frames must be masked"));
        }
        let (len, mut pos) = match b1 & 0x7f {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                let n = u64::from_be_bytes(b);
                if n >> 63 != 0 {
                    return Err(WsError::Protocol("payload length has its top bit set"));
                }
                (n, 10)
            }
            n => (n as u64, 2),
        };
        if op.is_control() {
            if !fin {
                return Err(WsError::Protocol("fragmented control frame"));
            }
            if len > 125 {
                return Err(WsError::Protocol("control frame longer than 125 bytes"));
            }
        } else {
            let so_far = match (op, self.message) {
                (Opcode::Continuation, Some((_, n))) => n,
                (Opcode::Continuation, None) => return Err(WsError::Protocol("continuation without a message")),
                (_, Some(_)) => return Err(WsError::Protocol("new message before the last one ended")),
                (_, None) => 0,
            };
            if so_far as u64 + len > self.max_message as u64 {
                return Err(WsError::TooBig(self.max_message));
            }
        }
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&buf[pos..pos + 4]);
        pos += 4;
        let len = len as usize;
        if buf.len() < pos + len {
            return Ok(None);
        }
        let used = pos + len;
        let payload = &mut buf[pos..used];
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
        let payload: &'a [u8] = payload;
        let event = match op {
            Opcode::Ping => Event::Ping(payload),
            Opcode::Pong => Event::Pong,
            Opcode::Close => Event::Close(close_code(payload)?),
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                let kind = match op {
                    Opcode::Continuation => self.message.map_or(Opcode::Binary, |m| m.0),
                    k => k,
                };
                if kind == Opcode::Text {
                    self.check_utf8(payload, fin)?;
                }
                self.message = if fin { None } else { Some((kind, self.message.map_or(0, |m| m.1) + len)) };
                Event::Data(payload)
            }
        };
        Ok(Some((event, used)))
    }

    fn check_utf8(&mut self, mut data: &[u8], fin: bool) -> Result<(), WsError> {
        if self.carry_len > 0 {
            let need = utf8_len(self.carry[0]) - self.carry_len;
            let take = need.min(data.len());
            self.carry[self.carry_len..self.carry_len + take].copy_from_slice(&data[..take]);
            self.carry_len += take;
            data = &data[take..];
            if take == need {
                std::str::from_utf8(&self.carry[..self.carry_len]).map_err(|_| WsError::BadUtf8)?;
                self.carry_len = 0;
            }
        }
        if self.carry_len == 0 {
            if let Err(e) = std::str::from_utf8(data) {
                let tail = &data[e.valid_up_to()..];
                if e.error_len().is_some() || tail.len() >= 4 {
                    return Err(WsError::BadUtf8);
                }
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len();
            }
        }
        if fin && self.carry_len > 0 {
            self.carry_len = 0;
            return Err(WsError::BadUtf8);
        }
        Ok(())
    }
}

fn close_code(payload: &[u8]) -> Result<Option<u16>, WsError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(WsError::Protocol("close frame with a one-byte payload")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !valid {
                return Err(WsError::Protocol("invalid close code"));
            }
            std::str::from_utf8(&payload[2..]).map_err(|_| WsError::BadUtf8)?;
            Ok(Some(code))
        }
    }
}

/// Append a final, unmasked server frame.
pub fn encode(out: &mut Vec<u8>, op: Opcode, payload: &[u8]) {
    out.push(0x80 | op.bits());
    let n = payload.len();
    if n < 126 {
        out.push(n as u8);
    } else if n <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Append a close frame with a status code and a short reason.
pub fn encode_close(out: &mut Vec<u8>, code: CloseCode, reason: &str) {
    let mut p = (code as u16).to_be_bytes().to_vec();
    let reason = &reason.as_bytes()[..reason.len().min(120)];
    p.extend_from_slice(reason);
    encode(out, Opcode::Close, &p);
}

/// Build a masked client frame (for tests and tools).
pub fn encode_client(out: &mut Vec<u8>, op: Opcode, fin: bool, payload: &[u8], mask: [u8; 4]) {
    out.push(if fin { 0x80 } else { 0 } | op.bits());
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn client(op: Opcode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_client(&mut v, op, fin, payload, M);
        v
    }

    /// Decode everything in `stream` fed in two pieces split at `split`; data events are
    /// concatenated.
    fn run(stream: &[u8], split: usize, max: usize) -> Result<(Vec<u8>, Vec<String>), WsError> {
        let mut d = Decoder::new(max);
        let mut acc = Vec::new();
        let (mut data, mut other) = (Vec::new(), Vec::new());
        for chunk in [&stream[..split], &stream[split..]] {
            acc.extend_from_slice(chunk);
            while let Some((ev, used)) = d.decode(&mut acc)? {
                match ev {
                    Event::Data(p) => data.extend_from_slice(p),
                    e => other.push(format!("{e:?}")),
                }
                acc.drain(..used);
            }
        }
        Ok((data, other))
    }

    #[test]
    fn masking_fragmentation_and_control_frames_at_every_split() {
        let mut s = client(Opcode::Text, false, b"SEND\ndesti");
        s.extend(client(Opcode::Ping, true, b"hi"));
        s.extend(client(Opcode::Continuation, true, b"nation:/q\n\nh\0"));
        s.extend(client(Opcode::Binary, true, &[0u8, 1, 2]));
        s.extend(client(Opcode::Binary, true, &vec![7u8; 70_000]));
        s.extend(client(Opcode::Close, true, &[0x03, 0xe8]));
        let mut want = b"SEND\ndestination:/q\n\nh\0\0\x01\x02".to_vec();
        want.extend(vec![7u8; 70_000]);
        for split in (0..s.len()).step_by(1).filter(|i| *i < 64 || i % 997 == 0 || *i > s.len() - 64) {
            let (data, other) = run(&s, split, 1 << 20).unwrap();
            assert_eq!(data, want, "split {split}");
            assert_eq!(other, vec!["Ping([104, 105])".to_string(), "Close(Some(1000))".to_string()]);
        }
    }

    #[test]
    fn unmasked_and_reserved_and_unknown_are_protocol_errors() {
        let mut unmasked = client(Opcode::Binary, true, b"x");
        unmasked[1] &= 0x7f;
        assert!(matches!(run(&unmasked, 0, 100), Err(WsError::Protocol(_))));
        let mut rsv = client(Opcode::Binary, true, b"x");
        rsv[0] |= 0x40;
        assert!(matches!(run(&rsv, 0, 100), Err(WsError::Protocol(_))));
        let mut op = client(Opcode::Binary, true, b"x");
        op[0] = 0x83;
        assert!(matches!(run(&op, 0, 100), Err(WsError::Protocol(_))));
        assert!(matches!(run(&client(Opcode::Continuation, true, b"x"), 0, 100), Err(WsError::Protocol(_))));
        let mut two = client(Opcode::Text, false, b"a");
        two.extend(client(Opcode::Text, true, b"b"));
        assert!(matches!(run(&two, 0, 100), Err(WsError::Protocol(_))));
        assert!(matches!(run(&client(Opcode::Ping, false, b""), 0, 100), Err(WsError::Protocol(_))));
        assert!(matches!(run(&client(Opcode::Ping, true, &[0; 126]), 0, 200), Err(WsError::Protocol(_))));
        assert!(matches!(run(&client(Opcode::Close, true, &[3]), 0, 100), Err(WsError::Protocol(_))));
        assert!(matches!(run(&client(Opcode::Close, true, &[0, 5]), 0, 100), Err(WsError::Protocol(_))));
    }

    #[test]
    fn size_limit_applies_across_fragments_before_buffering() {
        let mut s = client(Opcode::Binary, false, &[1; 60]);
        s.extend(client(Opcode::Continuation, true, &[1; 60]));
        assert_eq!(run(&s, s.len(), 100), Err(WsError::TooBig(100)));
        // Only the header of a huge frame is needed to refuse it.
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(Decoder::new(1 << 20).decode(&mut header), Err(WsError::TooBig(1 << 20)));
    }

    #[test]
    fn utf8_is_checked_across_fragments() {
        let text = "héllo ✓ 𝄞".as_bytes();
        for cut in 0..text.len() {
            let mut s = client(Opcode::Text, false, &text[..cut]);
            s.extend(client(Opcode::Continuation, true, &text[cut..]));
            assert_eq!(run(&s, s.len(), 100).unwrap().0, text, "cut {cut}");
        }
        assert_eq!(run(&client(Opcode::Text, true, &[0xff]), 1, 100), Err(WsError::BadUtf8));
        assert_eq!(run(&client(Opcode::Text, true, &[0xe2, 0x9c]), 1, 100), Err(WsError::BadUtf8));
        let mut s = client(Opcode::Text, false, &[0xe2]);
        s.extend(client(Opcode::Continuation, true, &[0x41]));
        assert_eq!(run(&s, 0, 100), Err(WsError::BadUtf8));
        // Binary messages are opaque.
        assert!(run(&client(Opcode::Binary, true, &[0xff]), 0, 100).is_ok());
    }

    #[test]
    fn server_frames_have_the_right_length_encoding() {
        for n in [0usize, 125, 126, 65535, 65536] {
            let mut out = Vec::new();
            encode(&mut out, Opcode::Binary, &vec![1; n]);
            let header = match n {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            assert_eq!(out.len(), header + n);
            assert_eq!(out[0], 0x82);
        }
        let mut out = Vec::new();
        encode_close(&mut out, CloseCode::TooBig, "too big");
        assert_eq!(&out[..4], &[0x88, 9, 0x03, 0xf1]);
    }
}
