//! Frames as parsed from a read buffer (sans-io).
//!
//! A [`Frame`] borrows its command, header names, header values and body from the buffer it was
//! parsed from; only header values that contained escapes are owned.

use smallvec::SmallVec;
use std::borrow::Cow;

/// A STOMP command, client or server side. Commands are case-sensitive (A5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Connect,
    Stomp,
    Send,
    Subscribe,
    Unsubscribe,
    Ack,
    Nack,
    Begin,
    Commit,
    Abort,
    Disconnect,
    Connected,
    Message,
    Receipt,
    Error,
}

impl Command {
    pub fn from_bytes(b: &[u8]) -> Option<Command> {
        Some(match b {
            b"CONNECT" => Command::Connect,
            b"STOMP" => Command::Stomp,
            b"SEND" => Command::Send,
            b"SUBSCRIBE" => Command::Subscribe,
            b"UNSUBSCRIBE" => Command::Unsubscribe,
            b"ACK" => Command::Ack,
            b"NACK" => Command::Nack,
            b"BEGIN" => Command::Begin,
            b"COMMIT" => Command::Commit,
            b"ABORT" => Command::Abort,
            b"DISCONNECT" => Command::Disconnect,
            b"CONNECTED" => Command::Connected,
            b"MESSAGE" => Command::Message,
            b"RECEIPT" => Command::Receipt,
            b"ERROR" => Command::Error,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Connected => "CONNECTED",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// Frames whose headers are never escaped, in any version (B7).
    pub fn is_connect_family(self) -> bool {
        matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }

    /// Only SEND, MESSAGE and ERROR carry a body (A14).
    pub fn takes_body(self) -> bool {
        matches!(self, Command::Send | Command::Message | Command::Error)
    }
}

/// One decoded header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: Cow<'a, str>,
    pub value: Cow<'a, str>,
}

/// Headers in wire order, repeated names kept. Eight fit inline without allocating (a SEND from
/// a typical client has two to six); more spill to the heap. Inline storage is moved with every
/// parsed frame, so it is kept small.
pub type Headers<'a> = SmallVec<[Header<'a>; 8]>;

/// A parsed frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub command: Command,
    pub headers: Headers<'a>,
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The first value of header `name` (C1: first wins).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|h| h.name == name).map(|h| h.value.as_ref())
    }
}

/// Acknowledgement modes (G3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    Auto,
    /// Cumulative (I4).
    Client,
    /// One message at a time (I5).
    ClientIndividual,
}

impl AckMode {
    /// The mode a SUBSCRIBE's `ack` header names (any version; 1.0 has no client-individual,
    /// which the caller checks).
    pub fn from_name(name: &str) -> Option<AckMode> {
        match name {
            "auto" => Some(AckMode::Auto),
            "client" => Some(AckMode::Client),
            "client-individual" => Some(AckMode::ClientIndividual),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }
}
