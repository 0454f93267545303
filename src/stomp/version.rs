//! Protocol versions and heart-beat values (sans-io).
//!
//! Version negotiation picks the highest version both sides speak (checklist D2-D4); heart-beat
//! headers are parsed strictly as two non-negative integers (E1).

use std::fmt;

/// A STOMP protocol version. Ordered: `V1_0 < V1_1 < V1_2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V1_0,
    V1_1,
    V1_2,
}

/// The versions this broker speaks, as sent in the `version` header of a negotiation ERROR.
pub const SUPPORTED: &str = "1.0,1.1,1.2";

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// One version token ("1.0", "1.1", "1.2"; surrounding blanks ignored).
    pub fn from_token(s: &str) -> Option<Version> {
        match s.trim() {
            "1.0" => Some(Version::V1_0),
            "1.1" => Some(Version::V1_1),
            "1.2" => Some(Version::V1_2),
            _ => None,
        }
    }

    /// Negotiate from a CONNECT's `accept-version` header. No header means a 1.0 client (D2);
    /// otherwise the highest version in the list that we speak (D3); `None` if there is none (D4).
    pub fn negotiate(accept_version: Option<&str>) -> Option<Version> {
        match accept_version {
            None => Some(Version::V1_0),
            Some(list) => list.split(',').filter_map(Version::from_token).max(),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `heart-beat` header: `cx,cy` in milliseconds (0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeartBeat {
    /// The smallest interval at which the sender can send heart-beats.
    pub send_ms: u32,
    /// The interval at which the sender wants to receive heart-beats.
    pub recv_ms: u32,
}

impl HeartBeat {
    /// Parse `cx,cy`: exactly two unsigned decimal integers that fit in a u32. Anything else is
    /// `None`, which the session turns into ERROR `ecg err` (E1).
    pub fn parse(value: &str) -> Option<HeartBeat> {
        let (a, b) = value.split_once(',')?;
        Some(HeartBeat { send_ms: parse_u32(a)?, recv_ms: parse_u32(b)? })
    }
}

fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Negotiated heart-beat intervals for one session, in milliseconds (0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Negotiated {
    /// How often the server must send something.
    pub server_send_ms: u32,
    /// How often the client promised to send something.
    pub client_send_ms: u32,
}

/// Negotiate heart-beats (E2). The server honours what the client asks for, clamped to
/// `[floor_ms, ceiling_ms]`; a client interval of 0 means "none" in that direction.
/// Returns the intervals and the `heart-beat` value for CONNECTED (`sx,sy`).
pub fn negotiate_heart_beat(client: HeartBeat, floor_ms: u32, ceiling_ms: u32) -> Negotiated {
    let clamp = |v: u32| {
        if v == 0 {
            0
        } else {
            v.clamp(floor_ms, ceiling_ms)
        }
    };
    // The server can send at whatever interval the client wants to receive (cy) ...
    let server_send_ms = clamp(client.recv_ms);
    // ... and wants to receive at whatever interval the client can send (cx).
    let client_send_ms = clamp(client.send_ms);
    Negotiated { server_send_ms, client_send_ms }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d3_highest_common_version() {
        assert_eq!(Version::negotiate(Some("1.0,1.1,2.0")), Some(Version::V1_1));
        assert_eq!(Version::negotiate(Some("1.2")), Some(Version::V1_2));
        assert_eq!(Version::negotiate(Some("1.1,1.0")), Some(Version::V1_1));
        assert_eq!(Version::negotiate(Some("1.2,1.0,1.1")), Some(Version::V1_2));
        assert_eq!(Version::negotiate(None), Some(Version::V1_0));
        assert_eq!(Version::negotiate(Some("2.0,3.1")), None);
        assert_eq!(Version::negotiate(Some("")), None);
    }

    #[test]
    fn e1_heart_beat_parse() {
        assert_eq!(HeartBeat::parse("0,0"), Some(HeartBeat { send_ms: 0, recv_ms: 0 }));
        assert_eq!(HeartBeat::parse("10000,500"), Some(HeartBeat { send_ms: 10000, recv_ms: 500 }));
        for bad in ["", "1", "1,", ",1", "-1,0", "a,b", "1,2,3", " 1,2", "99999999999,1"] {
            assert_eq!(HeartBeat::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn e2_negotiation_clamps() {
        let n = negotiate_heart_beat(HeartBeat { send_ms: 1, recv_ms: 1 }, 500, 60_000);
        assert_eq!(n, Negotiated { server_send_ms: 500, client_send_ms: 500 });
        let n = negotiate_heart_beat(HeartBeat { send_ms: 0, recv_ms: 10_000 }, 500, 60_000);
        assert_eq!(n, Negotiated { server_send_ms: 10_000, client_send_ms: 0 });
        let n = negotiate_heart_beat(HeartBeat { send_ms: 999_999, recv_ms: 0 }, 500, 60_000);
        assert_eq!(n, Negotiated { server_send_ms: 0, client_send_ms: 60_000 });
    }
}
