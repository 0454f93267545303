//! Header escaping per STOMP version (sans-io), checklist section B.
//!
//! 1.0 and the CONNECT/CONNECTED frames: no escaping at all. 1.1: `\\`, `\n`, `\c`.
//! 1.2: also `\r`. Decoding is one left-to-right pass; an undefined escape is an error.

use std::borrow::Cow;

/// Which escaping rules apply to a frame's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escaping {
    /// STOMP 1.0 and CONNECT/CONNECTED frames.
    None,
    /// STOMP 1.1: backslash, LF and colon.
    V11,
    /// STOMP 1.2: backslash, CR, LF and colon.
    V12,
}

/// An escape sequence that the version does not define (B2, B4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadEscape;

/// Decode `raw` in a single pass (B5). Borrows when there is nothing to decode.
pub fn decode(raw: &str, esc: Escaping) -> Result<Cow<'_, str>, BadEscape> {
    if esc == Escaping::None || !raw.as_bytes().contains(&b'\\') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('c') => out.push(':'),
            Some('r') if esc == Escaping::V12 => out.push('\r'),
            _ => return Err(BadEscape),
        }
    }
    Ok(Cow::Owned(out))
}

/// Append `value` to `out`, escaped for `esc` (B6: backslash first, then CR, LF, colon).
pub fn encode_into(out: &mut Vec<u8>, value: &str, esc: Escaping) {
    let needs = match esc {
        Escaping::None => false,
        _ => value.bytes().any(|b| matches!(b, b'\\' | b'\n' | b':' | b'\r')),
    };
    if !needs {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    for &b in value.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b':' => out.extend_from_slice(b"\\c"),
            b'\r' if esc == Escaping::V12 => out.extend_from_slice(b"\\r"),
            // 1.1 cannot express CR; it goes out raw, which a 1.1 peer reads back as part of the value.
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b5_single_pass() {
        assert_eq!(decode("a\\cb\\\\c", Escaping::V12).unwrap(), "a:b\\c");
        assert_eq!(decode("\\\\n", Escaping::V11).unwrap(), "\\n");
    }

    #[test]
    fn b1_b2_versions() {
        assert_eq!(decode("x\\r", Escaping::V12).unwrap(), "x\r");
        assert_eq!(decode("x\\r", Escaping::V11), Err(BadEscape));
        assert_eq!(decode("x\\n\\c", Escaping::V11).unwrap(), "x\n:");
    }

    #[test]
    fn b4_undefined_escapes() {
        for bad in ["\\t", "\\x", "abc\\", "\\"] {
            assert_eq!(decode(bad, Escaping::V12), Err(BadEscape), "{bad:?}");
        }
    }

    #[test]
    fn b3_none_is_literal() {
        assert_eq!(decode("a\\tb", Escaping::None).unwrap(), "a\\tb");
        let mut out = Vec::new();
        encode_into(&mut out, "a:b\\c\n", Escaping::None);
        assert_eq!(out, b"a:b\\c\n");
    }

    #[test]
    fn b6_round_trip() {
        for s in ["plain", "a:b", "back\\slash", "line\nfeed", "cr\rx", ":\\\n\r::", ""] {
            let mut out = Vec::new();
            encode_into(&mut out, s, Escaping::V12);
            let enc = std::str::from_utf8(&out).unwrap();
            assert!(!enc.contains(':') && !enc.contains('\n') && !enc.contains('\r'));
            assert_eq!(decode(enc, Escaping::V12).unwrap(), s);
        }
    }
}
