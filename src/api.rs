//! The embedding API: Rust code that answers STOMP SENDs and HTTP GETs in-process.
//!
//! Handlers are registered on a [`crate::ServerBuilder`] before start and shared by every
//! worker (`Send + Sync`, usually behind their own atomics or channels for state). They run on
//! the worker that received the frame or request, inside its event loop, so they **must not
//! block**: no sleeping, no blocking I/O, no waiting on locks held elsewhere. Hand long work to
//! your own thread and publish the result with [`crate::ServerHandle::publish`].
//!
//! A panic in a handler is caught at the connection boundary: that client gets an ERROR
//! (or a 500) and is closed; the worker and everyone else carry on.

use crate::broker::Message;
use crate::http::Response;
use std::sync::Arc;

/// What a handler did with a frame or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Not handled here: the next handler (or normal routing) gets it.
    Continue,
    /// Handled: stop. A handled SEND is not published (its receipt is still sent).
    Handled,
}

/// A SEND as a handler sees it.
#[derive(Debug)]
pub struct SendContext<'a> {
    pub destination: &'a str,
    /// User headers, decoded, in the order sent.
    pub headers: &'a [(Box<str>, Box<str>)],
    pub body: &'a [u8],
    /// The sender's session id (as in its CONNECTED frame).
    pub session: &'a str,
    pub login: Option<&'a str>,
    pub admin: bool,
    /// The sender came in over the web port (WebSocket).
    pub web: bool,
}

impl SendContext<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| &**k == name).map(|(_, v)| &**v)
    }
}

/// Why a reply could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("the sender's output is full (max_pending_bytes); reply not queued")]
    Full,
}

/// A message a handler asked for: destination, headers, body.
pub(crate) type Outgoing = (String, Vec<(String, String)>, Vec<u8>);

/// A handler's way back: messages to the sender, and publishes to any destination. Bounded and
/// non-blocking: a reply that does not fit is refused with [`ReplyError::Full`], never dropped
/// silently.
pub struct Reply<'a> {
    pub(crate) to_sender: &'a mut Vec<Outgoing>,
    pub(crate) publishes: &'a mut Vec<Outgoing>,
    pub(crate) room: usize,
}

impl Reply<'_> {
    /// Send a MESSAGE straight to the sender's connection. Its `subscription` header is the
    /// sender's subscription to `destination` if it has one, else `romp-reply`.
    pub fn send(&mut self, destination: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<(), ReplyError> {
        let size = destination.len() + body.len() + headers.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>() + 64;
        if size > self.room {
            return Err(ReplyError::Full);
        }
        self.room -= size;
        self.to_sender.push((
            destination.to_string(),
            headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body.to_vec(),
        ));
        Ok(())
    }

    /// Publish a message to a destination, as if a client had sent it.
    pub fn publish(&mut self, destination: &str, headers: &[(&str, &str)], body: &[u8]) {
        self.publishes.push((
            destination.to_string(),
            headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body.to_vec(),
        ));
    }
}

/// Answers SENDs to a destination prefix.
pub trait StompHandler: Send + Sync {
    fn on_send(&self, send: &SendContext<'_>, reply: &mut Reply<'_>) -> Flow;
}

impl<F> StompHandler for F
where
    F: Fn(&SendContext<'_>, &mut Reply<'_>) -> Flow + Send + Sync,
{
    fn on_send(&self, send: &SendContext<'_>, reply: &mut Reply<'_>) -> Flow {
        self(send, reply)
    }
}

/// An HTTP GET as a handler sees it.
#[derive(Debug)]
pub struct HttpContext<'a> {
    pub path: &'a str,
    /// The full target, with the query string.
    pub target: &'a str,
    pub headers: &'a [(String, String)],
    pub peer: std::net::SocketAddr,
}

impl HttpContext<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

/// Answers GETs (and HEADs) under a path prefix. `None` = not handled, try the next.
pub trait HttpHandler: Send + Sync {
    fn get(&self, req: &HttpContext<'_>) -> Option<Response>;
}

impl<F> HttpHandler for F
where
    F: Fn(&HttpContext<'_>) -> Option<Response> + Send + Sync,
{
    fn get(&self, req: &HttpContext<'_>) -> Option<Response> {
        self(req)
    }
}

/// A SEND about to be published, which a pre-publish hook may change.
#[derive(Debug)]
pub struct Draft {
    pub destination: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A pre-publish hook's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Publish (possibly rewritten in place).
    Accept,
    /// Refuse: the sender gets ERROR `blocked` with this reason, then is closed.
    Reject(String),
}

/// Sees every client SEND (after handlers, before routing) and may veto or rewrite it.
pub trait PrePublish: Send + Sync {
    fn check(&self, draft: &mut Draft, send: &SendContext<'_>) -> Verdict;
}

impl<F> PrePublish for F
where
    F: Fn(&mut Draft, &SendContext<'_>) -> Verdict + Send + Sync,
{
    fn check(&self, draft: &mut Draft, send: &SendContext<'_>) -> Verdict {
        self(draft, send)
    }
}

/// Everything registered on a builder; shared by all workers.
#[derive(Default, Clone)]
pub struct Handlers {
    pub(crate) stomp: Vec<(String, Arc<dyn StompHandler>)>,
    pub(crate) http: Vec<(String, Arc<dyn HttpHandler>)>,
    pub(crate) pre_publish: Option<Arc<dyn PrePublish>>,
}

impl Handlers {
    pub fn is_empty(&self) -> bool {
        self.stomp.is_empty() && self.http.is_empty() && self.pre_publish.is_none()
    }

    /// The STOMP handlers whose prefix matches `dest`, in registration order.
    pub(crate) fn stomp_for<'a>(&'a self, dest: &'a str) -> impl Iterator<Item = &'a Arc<dyn StompHandler>> + 'a {
        self.stomp.iter().filter(move |(p, _)| dest.starts_with(p.as_str())).map(|(_, h)| h)
    }
}

/// Build a message for [`crate::ServerHandle::publish`] and handler publishes.
pub(crate) fn message(id: u64, destination: &str, headers: Vec<(String, String)>, body: Vec<u8>) -> Message {
    Message::new(
        id,
        Arc::from(destination),
        headers.into_iter().map(|(k, v)| (Box::from(k.as_str()), Box::from(v.as_str()))).collect(),
        body.into(),
    )
}
