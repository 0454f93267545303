//! The short words an ERROR frame's `message` header carries (the xtomp vocabulary, see
//! ../shared/seeds-facts.md and docs/protocol.md). One enum, so a word is never mistyped, the
//! close reason is picked by variant rather than by comparing strings, and each word has its own
//! counter in `/metrics`.

use std::fmt;

/// An ERROR `message` word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorWord {
    /// A frame that is not STOMP, or a header that breaks a rule.
    Syntax,
    /// Anything without a more specific word (connect timeout, kicked, internal).
    General,
    /// Bad credentials.
    AuthErr,
    /// No version in common (D4).
    Version,
    /// The destination is blocked for this client (read_block / write_block).
    Blocked,
    /// The destination does not exist and may not be created.
    DestinationUnknown,
    /// Too many destinations (or a destination refused a subscription).
    DestFlup,
    /// The destination is full (max_messages / max_queue_bytes).
    QFlup,
    /// Too many subscriptions on one connection.
    SubsFlup,
    /// Too many transactions, or frames in one.
    TxFlup,
    /// Heart-beats promised and missing, or a bad `heart-beat` header.
    EcgErr,
    /// A topic subscriber fell too far behind under the `disconnect` policy.
    SlowConsumer,
    /// Too many headers, or a header line too long.
    HdrFlup,
    /// A body over `max_message_size`.
    MsgFlup,
    /// `content-length` is not a non-negative integer.
    LenNotInt,
    /// The body is not followed by NUL.
    BodyErr,
    /// A persistent SEND while the durable log is at `max_disk_bytes` or under `min_free_disk`.
    DiskFlup,
    /// The access rules (`[acl]`) do not let this login use this verb on this destination.
    AccessDenied,
    /// A header asks for a behaviour romp does not provide (or has turned off): refused
    /// rather than ignored (docs/protocol.md lists the extension headers).
    Unsupported,
}

impl ErrorWord {
    /// Every word, in counter order.
    pub const ALL: [ErrorWord; 19] = [
        ErrorWord::Syntax,
        ErrorWord::General,
        ErrorWord::AuthErr,
        ErrorWord::Version,
        ErrorWord::Blocked,
        ErrorWord::DestinationUnknown,
        ErrorWord::DestFlup,
        ErrorWord::QFlup,
        ErrorWord::SubsFlup,
        ErrorWord::TxFlup,
        ErrorWord::EcgErr,
        ErrorWord::SlowConsumer,
        ErrorWord::HdrFlup,
        ErrorWord::MsgFlup,
        ErrorWord::LenNotInt,
        ErrorWord::BodyErr,
        ErrorWord::DiskFlup,
        ErrorWord::AccessDenied,
        ErrorWord::Unsupported,
    ];

    /// The word as it goes on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorWord::Syntax => "syntax",
            ErrorWord::General => "general",
            ErrorWord::AuthErr => "auth err",
            ErrorWord::Version => "version",
            ErrorWord::Blocked => "blocked",
            ErrorWord::DestinationUnknown => "destination unknown",
            ErrorWord::DestFlup => "dest flup",
            ErrorWord::QFlup => "q flup",
            ErrorWord::SubsFlup => "subs flup",
            ErrorWord::TxFlup => "tx flup",
            ErrorWord::EcgErr => "ecg err",
            ErrorWord::SlowConsumer => "slow consumer",
            ErrorWord::HdrFlup => "hdr flup",
            ErrorWord::MsgFlup => "msg flup",
            ErrorWord::LenNotInt => "len not +int",
            ErrorWord::BodyErr => "body err",
            ErrorWord::DiskFlup => "disk flup",
            ErrorWord::AccessDenied => "access denied",
            ErrorWord::Unsupported => "unsupported",
        }
    }

    /// Position in [`ErrorWord::ALL`] (the index of its counter).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_word_at_its_index_once() {
        for (i, w) in ErrorWord::ALL.iter().enumerate() {
            assert_eq!(w.index(), i, "{w:?}");
        }
        let mut words: Vec<&str> = ErrorWord::ALL.iter().map(|w| w.as_str()).collect();
        words.sort();
        words.dedup();
        assert_eq!(words.len(), ErrorWord::ALL.len());
    }
}
