//! `romp::client`: a sans-io STOMP 1.0/1.1/1.2 client, and a small blocking adapter on top.
//!
//! The core never sees a socket or a clock. [`Session`] encodes client frames into a caller's
//! `Vec<u8>` and reads server frames from a caller's byte slice with the same parser the broker
//! uses ([`crate::stomp::parse`]); the caller moves the bytes (a mio loop, a thread with a
//! `TcpStream`, a WebSocket, a test). [`blocking::Connection`] is that caller for the simple case:
//! one `std::net::TcpStream`, calls that block with deadlines.
//!
//! ```no_run
//! use romp::client::{blocking::Connection, AckMode, Options};
//! use std::time::Duration;
//!
//! let mut c = Connection::connect("127.0.0.1:61613", Options::default())?;
//! c.subscribe("s1", "/queue/work", AckMode::Client)?;
//! c.send_with_receipt("/queue/work", b"hello", &[("content-type", "text/plain")])?;
//! if let Some(m) = c.recv(Duration::from_secs(5))? {
//!     println!("{}", String::from_utf8_lossy(&m.body));
//!     c.ack(&m)?;
//! }
//! c.disconnect()?;
//! # Ok::<(), romp::client::ClientError>(())
//! ```
//!
//! # Invariants
//! - Every header a session writes is escaped for its negotiated version; a value the version
//!   cannot carry (a newline in 1.0, say) is refused with [`ClientError::Unencodable`], never
//!   sent mangled.
//! - ACK and NACK take the shape of the negotiated version (1.0: `message-id`; 1.1:
//!   `subscription` + `message-id`; 1.2: `id` = the MESSAGE's `ack` header). NACK on 1.0, which
//!   has none, is [`ClientError::Unsupported`].
//! - The client reads only what the server may send (CONNECTED, MESSAGE, RECEIPT, ERROR); any
//!   other command is [`ClientError::Protocol`].
//!
//! Runs on whatever thread owns the caller's transport; nothing here is shared.

pub mod blocking;
pub mod frames;
pub mod read;
pub mod session;

pub use crate::stomp::AckMode;
pub use read::{read, Decoded, Incoming, OwnedFrame};
pub use session::{Options, Session, State};

use crate::stomp::{ParseError, Version};
use thiserror::Error;

/// What can go wrong on the client side.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server sent bytes that are not a STOMP frame.
    #[error("malformed frame from the server: {0}")]
    Parse(#[from] ParseError),
    /// The server sent a frame a client never receives, or one out of order.
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
    /// The server answered with ERROR (its `message` header and body text).
    #[error("server ERROR {message:?}: {detail}")]
    Server { message: String, detail: String },
    /// The negotiated version cannot carry this header name or value.
    #[error("{0:?} cannot be sent in STOMP {1}")]
    Unencodable(String, Version),
    /// The negotiated version has no such frame (NACK in 1.0).
    #[error("{0} does not exist in STOMP {1}")]
    Unsupported(&'static str, Version),
    /// A frame was asked for in a state that does not allow it (e.g. SEND before CONNECTED).
    #[error("cannot {0} while the session is {1:?}")]
    State(&'static str, State),
    /// The transport failed (blocking adapter only).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The connection closed before the awaited frame arrived.
    #[error("connection closed by the server")]
    Closed,
    /// The awaited frame did not arrive in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
}
