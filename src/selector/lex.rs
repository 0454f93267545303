//! The selector's tokens: literals, identifiers, keywords and operators, each with the byte
//! offset it starts at (for error positions).

use super::{Error, ErrorKind, MAX_NODES};

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Str(String),
    Int(i64),
    Float(f64),
    Ident(String),
    /// A keyword, upper-cased: AND OR NOT LIKE ESCAPE IN BETWEEN IS NULL TRUE FALSE.
    Kw(Kw),
    /// `=` `<>` `<` `<=` `>` `>=` `+` `-` `*` `/` `(` `)` `,`
    Op(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kw {
    And,
    Or,
    Not,
    Like,
    Escape,
    In,
    Between,
    Is,
    Null,
    True,
    False,
}

impl Kw {
    fn of(word: &str) -> Option<Kw> {
        const ALL: [(&str, Kw); 11] = [
            ("AND", Kw::And),
            ("OR", Kw::Or),
            ("NOT", Kw::Not),
            ("LIKE", Kw::Like),
            ("ESCAPE", Kw::Escape),
            ("IN", Kw::In),
            ("BETWEEN", Kw::Between),
            ("IS", Kw::Is),
            ("NULL", Kw::Null),
            ("TRUE", Kw::True),
            ("FALSE", Kw::False),
        ];
        ALL.iter().find(|(w, _)| w.eq_ignore_ascii_case(word)).map(|&(_, k)| k)
    }
}

impl std::fmt::Display for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tok::Str(s) => write!(f, "'{s}'"),
            Tok::Int(i) => write!(f, "{i}"),
            Tok::Float(x) => write!(f, "{x}"),
            Tok::Ident(s) => write!(f, "{s}"),
            Tok::Kw(k) => write!(f, "{}", format!("{k:?}").to_uppercase()),
            Tok::Op(o) => write!(f, "'{o}'"),
        }
    }
}

fn ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

fn ident_part(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Split `text` into tokens (at most [`MAX_NODES`] of them).
pub fn tokens(text: &str) -> Result<Vec<(usize, Tok)>, Error> {
    let mut out = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some(&(pos, c)) = it.peek() {
        if out.len() > MAX_NODES {
            return Err(Error { pos, kind: ErrorKind::TooBig });
        }
        if c.is_whitespace() {
            it.next();
            continue;
        }
        let tok = if c == '\'' || c == '"' {
            it.next();
            let mut s = String::new();
            loop {
                match it.next() {
                    None => {
                        let kind = if c == '\'' { ErrorKind::UnterminatedString } else { ErrorKind::UnterminatedIdent };
                        return Err(Error { pos, kind });
                    }
                    Some((_, q)) if q == c => {
                        if it.peek().is_some_and(|&(_, n)| n == c) {
                            it.next();
                            s.push(c);
                        } else {
                            break;
                        }
                    }
                    Some((_, other)) => s.push(other),
                }
            }
            if c == '\'' {
                Tok::Str(s)
            } else {
                Tok::Ident(s)
            }
        } else if c.is_ascii_digit() || (c == '.' && text[pos + 1..].starts_with(|d: char| d.is_ascii_digit())) {
            let mut end = pos;
            while let Some(&(i, d)) = it.peek() {
                let prev = text[..i].chars().next_back();
                let exp_sign = (d == '+' || d == '-') && matches!(prev, Some('e' | 'E')) && !text[pos..i].starts_with("0x");
                if d.is_ascii_alphanumeric() || d == '.' || exp_sign {
                    end = i + d.len_utf8();
                    it.next();
                } else {
                    break;
                }
            }
            number(&text[pos..end]).ok_or_else(|| Error { pos, kind: ErrorKind::BadNumber(text[pos..end].to_string()) })?
        } else if ident_start(c) {
            let mut end = pos;
            while let Some(&(i, d)) = it.peek() {
                if ident_part(d) {
                    end = i + d.len_utf8();
                    it.next();
                } else {
                    break;
                }
            }
            let word = &text[pos..end];
            match Kw::of(word) {
                Some(k) => Tok::Kw(k),
                None => Tok::Ident(word.to_string()),
            }
        } else {
            it.next();
            let next = it.peek().map(|&(_, n)| n);
            let op = match (c, next) {
                ('<', Some('>')) => "<>",
                ('<', Some('=')) => "<=",
                ('>', Some('=')) => ">=",
                ('=', _) => "=",
                ('<', _) => "<",
                ('>', _) => ">",
                ('+', _) => "+",
                ('-', _) => "-",
                ('*', _) => "*",
                ('/', _) => "/",
                ('(', _) => "(",
                (')', _) => ")",
                (',', _) => ",",
                _ => return Err(Error { pos, kind: ErrorKind::BadChar(c) }),
            };
            if op.len() == 2 {
                it.next();
            }
            Tok::Op(op)
        };
        out.push((pos, tok));
    }
    Ok(out)
}

/// A numeric literal: decimal or `0x` hex integers (optional `L`), decimals with an optional
/// exponent (optional `F`/`D`).
fn number(s: &str) -> Option<Tok> {
    let int = s.strip_suffix(['l', 'L']).unwrap_or(s);
    if let Some(hex) = int.strip_prefix("0x").or_else(|| int.strip_prefix("0X")) {
        return i64::from_str_radix(hex, 16).ok().map(Tok::Int);
    }
    if !int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()) {
        return int.parse().ok().map(Tok::Int);
    }
    let f = s.strip_suffix(['f', 'F', 'd', 'D']).unwrap_or(s);
    if f.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) && f.bytes().any(|b| b.is_ascii_digit()) {
        return f.parse::<f64>().ok().filter(|x| x.is_finite()).map(Tok::Float);
    }
    None
}
