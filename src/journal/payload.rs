//! The payloads of the log's records, encoded without reference to the broker's types (this
//! module sits below them): a persistent message, and the messages that left a destination.
//! Sans-io. Decoding never panics and never trusts a length: a payload whose CRC matched but
//! whose contents do not parse (a bug, or a record from a newer format) is an error naming why.
//!
//! Layout, little-endian; strings and byte strings are a u32 length then the bytes:
//! - message: destination, id u64, expires u64 (ms since the epoch, 0 = never), order u64
//!   (the sequence of the record it copies when compaction rewrote it, 0 = its own), header
//!   count u32, each header name and value, body;
//! - drop: destination, count u32, that many message ids u64;
//! - subscription: action u8 (1 define, 0 remove), identity (client-id or login), name,
//!   destination.

use thiserror::Error;

/// The destination under which a durable subscription's messages are logged: the topic, the
/// identity and the name, NUL-separated (no STOMP header holds a NUL).
pub fn durable_key(topic: &str, identity: &str, name: &str) -> String {
    format!("{topic}\0{identity}\0{name}")
}

/// The parts of a [`durable_key`], or `None` for a plain destination.
pub fn split_durable_key(key: &str) -> Option<(&str, &str, &str)> {
    let mut it = key.splitn(3, '\0');
    match (it.next(), it.next(), it.next()) {
        (Some(t), Some(i), Some(n)) => Some((t, i, n)),
        _ => None,
    }
}

/// A persistent message as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord<'a> {
    pub dest: &'a str,
    pub id: u64,
    pub expires: u64,
    /// Where it stands among its destination's messages: 0 = at its own record; a copy made by
    /// compaction keeps the place of the record it copies.
    pub order: u64,
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
}

/// Messages that left `dest` (acknowledged, expired, dead-lettered, purged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropRecord<'a> {
    pub dest: &'a str,
    pub ids: Vec<u64>,
}

/// A durable subscription defined or removed. Its identity is (client-id or login, name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord<'a> {
    pub define: bool,
    pub identity: &'a str,
    pub name: &'a str,
    pub dest: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PayloadError {
    #[error("the payload ends inside a field")]
    Truncated,
    #[error("a text field is not UTF-8")]
    NotUtf8,
    #[error("{0} bytes after the last field")]
    Trailing(usize),
    #[error("unknown subscription action {0}")]
    Action(u8),
    #[error("unknown record kind {0} inside a transaction")]
    Kind(u8),
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PayloadError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(PayloadError::Truncated)?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, PayloadError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, PayloadError> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], PayloadError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Result<&'a str, PayloadError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| PayloadError::NotUtf8)
    }
    fn done(&self) -> Result<(), PayloadError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(PayloadError::Trailing(n)),
        }
    }
}

impl<'a> MessageRecord<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.dest.as_bytes());
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.expires.to_le_bytes());
        out.extend_from_slice(&self.order.to_le_bytes());
        out.extend_from_slice(&(self.headers.len() as u32).to_le_bytes());
        for (k, v) in &self.headers {
            put_bytes(out, k.as_bytes());
            put_bytes(out, v.as_bytes());
        }
        put_bytes(out, self.body);
    }

    pub fn decode(buf: &'a [u8]) -> Result<MessageRecord<'a>, PayloadError> {
        let mut r = Reader { buf, pos: 0 };
        let dest = r.str()?;
        let (id, expires, order) = (r.u64()?, r.u64()?, r.u64()?);
        let n = r.u32()? as usize;
        // Each header takes at least 8 bytes: a count beyond that is a lie, not an allocation.
        let mut headers = Vec::with_capacity(n.min(buf.len() / 8));
        for _ in 0..n {
            headers.push((r.str()?, r.str()?));
        }
        let body = r.bytes()?;
        r.done()?;
        Ok(MessageRecord { dest, id, expires, order, headers, body })
    }
}

impl<'a> DropRecord<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.dest.as_bytes());
        out.extend_from_slice(&(self.ids.len() as u32).to_le_bytes());
        for id in &self.ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }

    pub fn decode(buf: &'a [u8]) -> Result<DropRecord<'a>, PayloadError> {
        let mut r = Reader { buf, pos: 0 };
        let dest = r.str()?;
        let n = r.u32()? as usize;
        let mut ids = Vec::with_capacity(n.min(buf.len() / 8));
        for _ in 0..n {
            ids.push(r.u64()?);
        }
        r.done()?;
        Ok(DropRecord { dest, ids })
    }
}

impl<'a> SubscriptionRecord<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.define));
        put_bytes(out, self.identity.as_bytes());
        put_bytes(out, self.name.as_bytes());
        put_bytes(out, self.dest.as_bytes());
    }

    pub fn decode(buf: &'a [u8]) -> Result<SubscriptionRecord<'a>, PayloadError> {
        let mut r = Reader { buf, pos: 0 };
        let define = match r.take(1)?[0] {
            1 => true,
            0 => false,
            other => return Err(PayloadError::Action(other)),
        };
        let (identity, name, dest) = (r.str()?, r.str()?, r.str()?);
        r.done()?;
        Ok(SubscriptionRecord { define, identity, name, dest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_round_trip_and_refuse_unknown_actions() {
        let s = SubscriptionRecord { define: true, identity: "app1", name: "orders-audit", dest: "/topic/orders" };
        let mut out = Vec::new();
        s.encode(&mut out);
        assert_eq!(SubscriptionRecord::decode(&out), Ok(s));
        for n in 0..out.len() {
            assert!(SubscriptionRecord::decode(&out[..n]).is_err(), "truncated at {n}");
        }
        out[0] = 7;
        assert_eq!(SubscriptionRecord::decode(&out), Err(PayloadError::Action(7)));
    }

    fn sample() -> MessageRecord<'static> {
        MessageRecord {
            dest: "/queue/orders",
            id: 0x1234_5678_9abc,
            expires: 1_800_000_000_000,
            order: 0,
            headers: vec![("content-type", "text/plain"), ("x-empty", ""), ("persistent", "true")],
            body: b"hello\0world",
        }
    }

    #[test]
    fn messages_and_drops_round_trip() {
        let mut out = Vec::new();
        sample().encode(&mut out);
        assert_eq!(MessageRecord::decode(&out), Ok(sample()));
        let d = DropRecord { dest: "/queue/orders", ids: vec![1, u64::MAX, 7] };
        let mut out = Vec::new();
        d.encode(&mut out);
        assert_eq!(DropRecord::decode(&out), Ok(d));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error_or_a_different_record_never_a_panic() {
        let mut out = Vec::new();
        sample().encode(&mut out);
        for n in 0..out.len() {
            assert!(MessageRecord::decode(&out[..n]).is_err(), "truncated at {n}");
        }
        let mut longer = out.clone();
        longer.push(0);
        assert_eq!(MessageRecord::decode(&longer), Err(PayloadError::Trailing(1)));
        for i in 0..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[i] ^= 1 << bit;
                if let Ok(m) = MessageRecord::decode(&bad) {
                    assert_ne!(m, sample(), "byte {i} bit {bit}");
                }
            }
        }
        // A header count that the bytes cannot hold does not allocate for it.
        let mut lie = Vec::new();
        put_bytes(&mut lie, b"/q");
        lie.extend_from_slice(&[0; 24]);
        lie.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(MessageRecord::decode(&lie), Err(PayloadError::Truncated));
    }
}
