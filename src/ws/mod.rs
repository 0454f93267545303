//! WebSocket (RFC 6455), sans-io: the opening handshake ([`handshake`]) and frames ([`frame`]).
//!
//! Used by the worker's web connections; never sees a socket. STOMP rides on the *byte stream*
//! of data messages: one WebSocket message may carry several STOMP frames and one STOMP frame may
//! span several messages (checklist O2), so the decoder hands payload bytes to the STOMP parser
//! as they arrive rather than reassembling messages.

pub mod frame;
pub mod handshake;

pub use frame::{CloseCode, Decoder, Event, Opcode, WsError};
