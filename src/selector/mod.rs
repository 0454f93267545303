//! Message selectors: the JMS / ActiveMQ / Artemis `selector` header of a SUBSCRIBE, parsed
//! once and evaluated against each candidate message's headers.
//!
//! Sans-io and thread-free: [`Selector::parse`] takes the header's text and returns a tree,
//! [`Selector::matches`] evaluates it over any header lookup. The queue owner evaluates a queue
//! consumer's selector when it dispatches; a topic subscriber's worker evaluates it while it fans
//! a topic message out to its local subscribers (see docs/protocol.md).
//!
//! # The language
//! SQL-92 conditional expressions as JMS defines them: `=`, `<>`, `<`, `<=`, `>`, `>=`; `AND`,
//! `OR`, `NOT`; `[NOT] LIKE 'pattern' [ESCAPE 'c']` (`%` any run, `_` one character);
//! `[NOT] IN ('a', 'b')`; `[NOT] BETWEEN x AND y`; `IS [NOT] NULL`; `+ - * /` and unary minus;
//! string literals in single quotes (`''` is a quote), integer (decimal, `0x` hex, `L` suffix)
//! and decimal literals (`1.5`, `.5`, `2e3`, `F`/`D` suffix), `TRUE`, `FALSE`. Keywords are
//! case-insensitive; identifiers (header names) are case-sensitive. A header name that is not a
//! Java identifier (`correlation-id`) may be written in double quotes: `"correlation-id" = 'x'`.
//! The JMS names map onto STOMP headers: `JMSType` → `type`, `JMSCorrelationID` →
//! `correlation-id`, `JMSMessageID` → `message-id`, `JMSPriority` → `priority`,
//! `JMSTimestamp` → `timestamp`, `JMSExpiration` → `expires`, `JMSDeliveryMode` →
//! `'PERSISTENT'` or `'NON_PERSISTENT'` from `persistent`.
//!
//! # Values
//! STOMP headers are text. A header compared with a number, or used in arithmetic, is read as a
//! number when it parses as one (`price > 10` works on `price:12.5`); otherwise the comparison
//! is unknown. A missing header is NULL. Logic is three-valued (SQL's unknown); a message is
//! selected only when the whole expression is true.
//!
//! # Invariants
//! - Parsing is bounded: at most [`MAX_LEN`] bytes of text, [`MAX_DEPTH`] levels of nesting and
//!   [`MAX_NODES`] nodes, so neither parsing nor evaluation can exhaust the stack or memory
//!   whatever a client sends.
//! - Neither parsing nor evaluation panics on any input.

mod eval;
mod lex;
mod parse;

#[cfg(test)]
mod tests;

pub use eval::Headers;

/// The longest selector text accepted, in bytes.
pub const MAX_LEN: usize = 4096;
/// The deepest nesting of sub-expressions accepted.
pub const MAX_DEPTH: usize = 64;
/// The most nodes (operators, operands, list items) one selector may hold.
pub const MAX_NODES: usize = 1024;

/// Why a selector was refused; `pos` is the byte offset in the text (0-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("selector error at position {pos}: {kind}")]
pub struct Error {
    pub pos: usize,
    pub kind: ErrorKind,
}

/// What was wrong with a selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    #[error("the selector is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("the selector nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("the selector has more than {MAX_NODES} terms")]
    TooBig,
    #[error("the selector is empty")]
    Empty,
    #[error("unexpected character {0:?}")]
    BadChar(char),
    #[error("unterminated string literal")]
    UnterminatedString,
    #[error("unterminated quoted identifier")]
    UnterminatedIdent,
    #[error("malformed number {0:?}")]
    BadNumber(String),
    #[error("expected {expected}, found {found}")]
    Expected { expected: &'static str, found: String },
    #[error("the ESCAPE of a LIKE must be one character")]
    BadEscape,
    #[error("a LIKE pattern ends with its escape character")]
    DanglingEscape,
    #[error("a {0} where a true/false condition is needed")]
    NotBoolean(&'static str),
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    root: parse::Node,
    text: Box<str>,
}

impl Selector {
    /// Parse the text of a `selector` header.
    pub fn parse(text: &str) -> Result<Selector, Error> {
        if text.len() > MAX_LEN {
            return Err(Error { pos: MAX_LEN, kind: ErrorKind::TooLong });
        }
        let tokens = lex::tokens(text)?;
        let root = parse::parse(&tokens, text.len())?;
        Ok(Selector { root, text: text.into() })
    }

    /// Whether a message with these headers is selected (the expression is true; false and
    /// unknown are not).
    pub fn matches<H: Headers + ?Sized>(&self, headers: &H) -> bool {
        eval::truth(&self.root, headers) == Some(true)
    }

    /// The text it was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }
}
