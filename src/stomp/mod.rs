//! The sans-io STOMP core.
//!
//! Owns the wire format of STOMP 1.0, 1.1 and 1.2: frame grammar ([`parser`]), header escaping
//! ([`escape`]), frame encoding ([`encoder`]) and version / heart-beat negotiation ([`version`]).
//! It parses `&[u8]` and appends to a caller's `Vec<u8>`; it never sees a socket, a thread or a
//! clock, so every rule here is tested with plain byte slices.
//!
//! # Invariants
//! - Parsing never panics and never allocates for a frame without escaped header values, except
//!   when a frame has more headers than fit inline (see [`frame::Headers`]).
//! - Every limit (command length, header count, header line length, body size) is enforced while
//!   scanning, so an endless header line or body is rejected as soon as it passes its limit.

pub mod encoder;
pub mod error_word;
pub mod escape;
pub mod frame;
pub mod parser;
pub mod version;

pub use error_word::ErrorWord;
pub use frame::{AckMode, Command, Frame, Header};
pub use parser::{parse, skip_eols, Limits, ParseError, Parsed, Until};
pub use version::{HeartBeat, Version};
