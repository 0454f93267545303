//! The client session (sans-io): where a connection is in its life, which version and
//! heart-beats were negotiated, which receipts are outstanding; it encodes each frame in the
//! negotiated shape and checks each server frame against the state.
//!
//! Transitions: `Idle --connect--> Connecting --CONNECTED--> Open --disconnect--> Disconnecting
//! --RECEIPT--> Closed`; an ERROR from the server closes from any state (the server closes the
//! connection after it, L1).

use super::frames::{self, AckRef, Connect, Headers};
use super::read::Incoming;
use super::ClientError;
use crate::stomp::{AckMode, Command, HeartBeat, Version};
use std::collections::VecDeque;

/// Where a client session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Nothing sent yet.
    Idle,
    /// CONNECT sent; waiting for CONNECTED.
    Connecting,
    /// CONNECTED received: frames flow.
    Open,
    /// DISCONNECT sent; waiting for its receipt.
    Disconnecting,
    /// Finished: DISCONNECT's receipt or an ERROR arrived.
    Closed,
}

/// What to connect with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Versions offered, any order; the server picks the highest it speaks (D3).
    pub versions: Vec<Version>,
    pub host: String,
    pub login: Option<String>,
    pub passcode: Option<String>,
    /// `cx,cy`: how often this client can send, how often it wants to hear from the server (ms).
    pub heart_beat: HeartBeat,
    /// Extra CONNECT headers (e.g. `client-id`).
    pub headers: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            versions: vec![Version::V1_0, Version::V1_1, Version::V1_2],
            host: "/".into(),
            login: None,
            passcode: None,
            heart_beat: HeartBeat::default(),
            headers: Vec::new(),
        }
    }
}

impl Options {
    /// Offer exactly one version.
    pub fn version(v: Version) -> Options {
        Options { versions: vec![v], ..Options::default() }
    }
    pub fn login(mut self, login: &str, passcode: &str) -> Options {
        self.login = Some(login.into());
        self.passcode = Some(passcode.into());
        self
    }
}

/// What CONNECTED said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connected {
    pub session: Option<String>,
    pub server: Option<String>,
    /// How often this client must send something (ms, 0 = never): max(cx, server's sy) (E2).
    pub send_every_ms: u32,
    /// How often the server promised to send something (ms, 0 = never): max(cy, server's sx).
    pub expect_every_ms: u32,
}

/// One client session's state.
#[derive(Debug)]
pub struct Session {
    state: State,
    version: Version,
    offered: Options,
    connected: Connected,
    next_receipt: u64,
    /// Receipts asked for and not yet received, oldest first.
    pending: VecDeque<String>,
    disconnect_receipt: Option<String>,
}

/// What a server frame meant to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// CONNECTED: the session is open.
    Connected,
    /// A MESSAGE for a subscription.
    Message,
    /// A RECEIPT this session asked for (not the DISCONNECT one).
    Receipt,
    /// DISCONNECT's receipt: the session is closed and the server closes the connection.
    Disconnected,
}

impl Session {
    pub fn new(options: Options) -> Session {
        Session {
            state: State::Idle,
            version: Version::V1_2,
            offered: options,
            connected: Connected::default(),
            next_receipt: 0,
            pending: VecDeque::new(),
            disconnect_receipt: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }
    /// The negotiated version (the highest offered until CONNECTED says otherwise).
    pub fn version(&self) -> Version {
        self.version
    }
    pub fn connected(&self) -> &Connected {
        &self.connected
    }
    /// Receipts asked for and not yet received, oldest first.
    pub fn pending_receipts(&self) -> impl Iterator<Item = &str> {
        self.pending.iter().map(String::as_str)
    }

    fn require(&self, what: &'static str, ok: bool) -> Result<(), ClientError> {
        if ok {
            Ok(())
        } else {
            Err(ClientError::State(what, self.state))
        }
    }

    /// Write CONNECT.
    pub fn connect(&mut self, out: &mut Vec<u8>) -> Result<(), ClientError> {
        self.require("connect", self.state == State::Idle)?;
        let o = &self.offered;
        let extra: Vec<(&str, &str)> = o.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let c = Connect {
            versions: &o.versions,
            host: &o.host,
            login: o.login.as_deref(),
            passcode: o.passcode.as_deref(),
            heart_beat: o.heart_beat,
            stomp_command: false,
        };
        frames::connect(out, &c, &extra)?;
        self.version = o.versions.iter().copied().max().unwrap_or(Version::V1_0);
        self.state = State::Connecting;
        Ok(())
    }

    /// A fresh receipt id for the caller to put on a frame; the session then expects it.
    pub fn receipt(&mut self) -> String {
        self.next_receipt += 1;
        let r = format!("r-{}", self.next_receipt);
        self.pending.push_back(r.clone());
        r
    }

    /// Take back a receipt id whose frame was never sent (it could not be encoded).
    pub fn cancel_receipt(&mut self, id: &str) {
        self.pending.retain(|r| r != id);
    }

    fn open(&self, what: &'static str) -> Result<(), ClientError> {
        self.require(what, self.state == State::Open)
    }

    /// SEND `body` to `dest` with `extra` headers.
    pub fn send(&mut self, out: &mut Vec<u8>, dest: &str, body: &[u8], extra: Headers<'_>) -> Result<(), ClientError> {
        self.open("send")?;
        frames::send(out, self.version, dest, body, extra)
    }

    pub fn subscribe(&mut self, out: &mut Vec<u8>, id: &str, dest: &str, ack: AckMode, extra: Headers<'_>) -> Result<(), ClientError> {
        self.open("subscribe")?;
        frames::subscribe(out, self.version, id, dest, ack, extra)
    }

    pub fn unsubscribe(&mut self, out: &mut Vec<u8>, id: &str, extra: Headers<'_>) -> Result<(), ClientError> {
        self.open("unsubscribe")?;
        frames::unsubscribe(out, self.version, id, extra)
    }

    /// ACK a MESSAGE (in a transaction when `extra` names one).
    pub fn ack(&mut self, out: &mut Vec<u8>, msg: AckRef<'_>, extra: Headers<'_>) -> Result<(), ClientError> {
        self.open("ack")?;
        frames::ack(out, self.version, msg, false, extra)
    }

    /// NACK a MESSAGE (1.1 and 1.2).
    pub fn nack(&mut self, out: &mut Vec<u8>, msg: AckRef<'_>, extra: Headers<'_>) -> Result<(), ClientError> {
        self.open("nack")?;
        frames::ack(out, self.version, msg, true, extra)
    }

    pub fn begin(&mut self, out: &mut Vec<u8>, tx: &str, extra: Headers<'_>) -> Result<(), ClientError> {
        self.open("begin")?;
        frames::transaction(out, self.version, Command::Begin, tx, extra)
    }
    pub fn commit(&mut self, out: &mut Vec<u8>, tx: &str, extra: Headers<'_>) -> Result<(), ClientError> {
        self.open("commit")?;
        frames::transaction(out, self.version, Command::Commit, tx, extra)
    }
    pub fn abort(&mut self, out: &mut Vec<u8>, tx: &str, extra: Headers<'_>) -> Result<(), ClientError> {
        self.open("abort")?;
        frames::transaction(out, self.version, Command::Abort, tx, extra)
    }

    /// Write DISCONNECT with a receipt; returns the receipt id. The session is closed when the
    /// receipt arrives (only then has the server seen everything sent before it, K2).
    pub fn disconnect(&mut self, out: &mut Vec<u8>) -> Result<String, ClientError> {
        self.open("disconnect")?;
        self.next_receipt += 1;
        let r = format!("bye-{}", self.next_receipt);
        frames::disconnect(out, self.version, Some(&r))?;
        self.disconnect_receipt = Some(r.clone());
        self.state = State::Disconnecting;
        Ok(r)
    }

    /// Write one heart-beat (an EOL) if the session is open.
    pub fn heart_beat(&self, out: &mut Vec<u8>) {
        if self.state == State::Open || self.state == State::Disconnecting {
            out.push(b'\n');
        }
    }

    /// Take in a server frame. An ERROR closes the session and comes back as
    /// [`ClientError::Server`]; a frame the state does not allow is [`ClientError::Protocol`].
    pub fn on_frame(&mut self, f: &Incoming<'_>) -> Result<Event, ClientError> {
        match (f.command(), self.state) {
            (Command::Error, _) => {
                self.state = State::Closed;
                Err(ClientError::Server {
                    message: f.header("message").unwrap_or_default().to_string(),
                    detail: String::from_utf8_lossy(f.body()).into_owned(),
                })
            }
            (Command::Connected, State::Connecting) => {
                // No `version` header: a 1.0 server (D2).
                let v = f.header("version").and_then(Version::from_token).unwrap_or(Version::V1_0);
                if !self.offered.versions.contains(&v) {
                    return Err(ClientError::Protocol(format!("the server chose {v}, which was not offered")));
                }
                self.version = v;
                let server_hb = f.header("heart-beat").and_then(HeartBeat::parse).unwrap_or_default();
                let mine = self.offered.heart_beat;
                let every = |a: u32, b: u32| if a == 0 || b == 0 { 0 } else { a.max(b) };
                self.connected = Connected {
                    session: f.header("session").map(str::to_string),
                    server: f.header("server").map(str::to_string),
                    send_every_ms: every(mine.send_ms, server_hb.recv_ms),
                    expect_every_ms: every(mine.recv_ms, server_hb.send_ms),
                };
                self.state = State::Open;
                Ok(Event::Connected)
            }
            (Command::Message, State::Open | State::Disconnecting) => Ok(Event::Message),
            (Command::Receipt, State::Open | State::Disconnecting) => {
                let id = f.header("receipt-id").unwrap_or_default();
                if self.disconnect_receipt.as_deref() == Some(id) {
                    self.state = State::Closed;
                    return Ok(Event::Disconnected);
                }
                match self.pending.iter().position(|r| r == id) {
                    Some(i) => {
                        self.pending.remove(i);
                        Ok(Event::Receipt)
                    }
                    None => Err(ClientError::Protocol(format!("RECEIPT {id:?} was never asked for"))),
                }
            }
            (cmd, state) => Err(ClientError::Protocol(format!("{} while the session is {state:?}", cmd.as_str()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::read::{read, Decoded};
    use crate::stomp::Limits;

    fn feed(s: &mut Session, wire: &[u8]) -> Result<Event, ClientError> {
        match read(wire, s.version(), &Limits::default())? {
            Decoded::Frame(f, _) => s.on_frame(&f),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_session_from_connect_to_disconnect() {
        let mut s = Session::new(Options { heart_beat: HeartBeat { send_ms: 1000, recv_ms: 0 }, ..Options::default() });
        let mut out = Vec::new();
        assert!(matches!(s.send(&mut out, "/queue/a", b"", &[]), Err(ClientError::State("send", State::Idle))));
        s.connect(&mut out).unwrap();
        assert_eq!(s.state(), State::Connecting);
        assert_eq!(feed(&mut s, b"CONNECTED\nversion:1.1\nheart-beat:0,5000\nsession:x\n\n\0").unwrap(), Event::Connected);
        assert_eq!(s.version(), Version::V1_1);
        assert_eq!(s.connected().send_every_ms, 5000);
        assert_eq!(s.connected().expect_every_ms, 0);
        let r = s.receipt();
        out.clear();
        s.send(&mut out, "/queue/a", b"x", &[("receipt", &r)]).unwrap();
        assert_eq!(feed(&mut s, format!("RECEIPT\nreceipt-id:{r}\n\n\0").as_bytes()).unwrap(), Event::Receipt);
        assert!(matches!(feed(&mut s, b"RECEIPT\nreceipt-id:nope\n\n\0"), Err(ClientError::Protocol(_))));
        let bye = s.disconnect(&mut out).unwrap();
        assert_eq!(feed(&mut s, format!("RECEIPT\nreceipt-id:{bye}\n\n\0").as_bytes()).unwrap(), Event::Disconnected);
        assert_eq!(s.state(), State::Closed);
    }

    #[test]
    fn a_plain_10_server_and_an_error() {
        let mut s = Session::new(Options::default());
        s.connect(&mut Vec::new()).unwrap();
        feed(&mut s, b"CONNECTED\nsession:x\n\n\0").unwrap();
        assert_eq!(s.version(), Version::V1_0);
        let mut out = Vec::new();
        assert!(matches!(
            s.nack(&mut out, AckRef { ack: None, subscription: None, message_id: Some("1") }, &[]),
            Err(ClientError::Unsupported(..))
        ));
        let e = feed(&mut s, b"ERROR\nmessage:q flup\ncontent-length:4\n\nfull\0").unwrap_err();
        assert!(matches!(e, ClientError::Server { ref message, ref detail } if message == "q flup" && detail == "full"));
        assert_eq!(s.state(), State::Closed);
    }

    #[test]
    fn an_unoffered_version_is_a_protocol_error() {
        let mut s = Session::new(Options::version(Version::V1_1));
        s.connect(&mut Vec::new()).unwrap();
        assert!(matches!(feed(&mut s, b"CONNECTED\nversion:1.2\n\n\0"), Err(ClientError::Protocol(_))));
    }
}
