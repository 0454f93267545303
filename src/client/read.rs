//! Reading server frames (sans-io): one call looks at the start of the caller's buffer and says
//! what is there: heart-beat EOLs, a complete server frame (borrowed from the buffer), or not
//! enough bytes yet.

use super::frames::AckRef;
use super::ClientError;
use crate::stomp::{parse, skip_eols, Command, Frame, Limits, Parsed, Version};

/// What [`read`] found at the start of the buffer.
// Returned by value once per frame, like the parser's `Parsed`; boxing would allocate per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decoded<'a> {
    /// `bytes` of EOLs (heart-beats) carrying `beats` newlines; consume them and read again.
    HeartBeats { bytes: usize, beats: usize },
    /// A complete frame and the bytes it used.
    Frame(Incoming<'a>, usize),
    /// Not enough bytes; `need` is the total length that completes the frame when known, else 0.
    Incomplete { need: usize },
}

/// A server frame, borrowed from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming<'a> {
    pub frame: Frame<'a>,
}

impl<'a> Incoming<'a> {
    pub fn command(&self) -> Command {
        self.frame.command
    }
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.frame.header(name)
    }
    pub fn body(&self) -> &'a [u8] {
        self.frame.body
    }
    /// What an ACK/NACK of this MESSAGE needs.
    pub fn ack_ref(&self) -> AckRef<'_> {
        AckRef { ack: self.header("ack"), subscription: self.header("subscription"), message_id: self.header("message-id") }
    }
    /// An owned copy (headers in wire order, repeats kept).
    pub fn to_owned_frame(&self) -> OwnedFrame {
        OwnedFrame {
            command: self.frame.command,
            headers: self.frame.headers.iter().map(|h| (h.name.to_string(), h.value.to_string())).collect(),
            body: self.frame.body.to_vec(),
        }
    }
}

/// A server frame that outlives the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedFrame {
    pub command: Command,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl OwnedFrame {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// What an ACK/NACK of this MESSAGE needs.
    pub fn ack_ref(&self) -> AckRef<'_> {
        AckRef { ack: self.header("ack"), subscription: self.header("subscription"), message_id: self.header("message-id") }
    }
}

/// Read the start of `buf`, a stream of server frames of a session at `version` (before
/// CONNECTED any version does: CONNECTED is never escaped).
pub fn read<'a>(buf: &'a [u8], version: Version, limits: &Limits) -> Result<Decoded<'a>, ClientError> {
    let eols = skip_eols(buf);
    if eols > 0 {
        let beats = buf[..eols].iter().filter(|&&b| b == b'\n').count();
        return Ok(Decoded::HeartBeats { bytes: eols, beats });
    }
    if buf.is_empty() {
        return Ok(Decoded::Incomplete { need: 0 });
    }
    match parse(buf, version, limits)? {
        Parsed::Incomplete { need, .. } => Ok(Decoded::Incomplete { need }),
        Parsed::Frame(frame, used) => match frame.command {
            Command::Connected | Command::Message | Command::Receipt | Command::Error => Ok(Decoded::Frame(Incoming { frame }, used)),
            other => Err(ClientError::Protocol(format!("a server does not send {}", other.as_str()))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every server frame kind, with heart-beats between, read whole and split at every byte.
    #[test]
    fn reads_a_stream_split_at_every_byte() {
        let mut wire = Vec::new();
        crate::stomp::encoder::connected(&mut wire, Version::V1_2, true, (0, 0), "s-1", "romp");
        wire.extend_from_slice(b"\n\r\n");
        wire.extend_from_slice(b"MESSAGE\ndestination:/queue/a\nmessage-id:7\nsubscription:s\nack:A\\c1\ncontent-length:3\n\na\0b\0");
        wire.extend_from_slice(b"RECEIPT\nreceipt-id:r1\n\n\0\n");
        crate::stomp::encoder::error(&mut wire, Version::V1_2, "syntax", "bad", None, &[]);
        let limits = Limits::default();
        let mut whole = Stream::default();
        whole.pump(&wire, &limits);
        assert_eq!(whole.frames.len(), 4);
        assert_eq!(whole.beats, 3, "three heart-beat newlines");
        assert_eq!(whole.frames[1].header("ack"), Some("A:1"), "1.2 escapes are decoded");
        assert_eq!(whole.frames[1].body, b"a\0b");
        for cut in 0..wire.len() {
            // Feed the first `cut` bytes, then the rest, as a socket might.
            let mut s = Stream::default();
            s.pump(&wire[..cut], &limits);
            s.pump(&wire, &limits);
            assert_eq!((s.frames, s.beats), (whole.frames.clone(), whole.beats), "cut at {cut}");
        }
    }

    /// A reader's side of a stream: what it has taken in so far.
    #[derive(Default)]
    struct Stream {
        pos: usize,
        frames: Vec<OwnedFrame>,
        beats: usize,
    }

    impl Stream {
        /// Read everything complete in `buf` past what was read before.
        fn pump(&mut self, buf: &[u8], limits: &Limits) {
            loop {
                match read(&buf[self.pos..], Version::V1_2, limits).unwrap() {
                    Decoded::HeartBeats { bytes, beats } => {
                        self.pos += bytes;
                        self.beats += beats;
                    }
                    Decoded::Frame(f, used) => {
                        self.frames.push(f.to_owned_frame());
                        self.pos += used;
                    }
                    Decoded::Incomplete { .. } => return,
                }
            }
        }
    }

    #[test]
    fn client_commands_from_a_server_are_refused() {
        assert!(matches!(read(b"SEND\ndestination:/a\n\n\0", Version::V1_2, &Limits::default()), Err(ClientError::Protocol(_))));
    }
}
