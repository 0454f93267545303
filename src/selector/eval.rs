//! Evaluation of a parsed selector over one message's headers, in SQL's three-valued logic
//! (`None` is unknown).

use super::parse::{Arith, Cmp, Like, Node};
use std::cmp::Ordering;

/// Where a selector reads header values from (a message, a test's table).
pub trait Headers {
    /// The value of the header `name`, if the message has it.
    fn header(&self, name: &str) -> Option<&str>;
}

impl Headers for [(&str, &str)] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

impl<const N: usize> Headers for [(&str, &str); N] {
    fn header(&self, name: &str) -> Option<&str> {
        self.as_slice().header(name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

impl Value<'_> {
    /// As a number: numbers as they are, text that parses as one (headers are text).
    fn number(self) -> Option<Num> {
        match self {
            Value::Int(i) => Some(Num::Int(i)),
            Value::Float(x) => Some(Num::Float(x)),
            Value::Str(s) => {
                let s = s.trim();
                s.parse::<i64>().map(Num::Int).ok().or_else(|| s.parse::<f64>().ok().filter(|x| x.is_finite()).map(Num::Float))
            }
            _ => None,
        }
    }

    fn is_number(self) -> bool {
        matches!(self, Value::Int(_) | Value::Float(_))
    }
}

#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn float(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(x) => x,
        }
    }

    fn cmp(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.float().partial_cmp(&b.float()),
        }
    }
}

/// The header a name reads, with the JMS names mapped onto STOMP's.
fn lookup<'a, H: Headers + ?Sized>(h: &'a H, name: &str) -> Value<'a> {
    let stomp = match name {
        "JMSType" => "type",
        "JMSCorrelationID" => "correlation-id",
        "JMSMessageID" => "message-id",
        "JMSPriority" => "priority",
        "JMSTimestamp" => "timestamp",
        "JMSExpiration" => "expires",
        "JMSDeliveryMode" => {
            return Value::Str(if h.header("persistent") == Some("true") { "PERSISTENT" } else { "NON_PERSISTENT" });
        }
        other => other,
    };
    match h.header(stomp) {
        Some(v) => Value::Str(v),
        None => Value::Null,
    }
}

fn value<'a, H: Headers + ?Sized>(n: &'a Node, h: &'a H) -> Value<'a> {
    match n {
        Node::Str(s) => Value::Str(s),
        Node::Int(i) => Value::Int(*i),
        Node::Float(x) => Value::Float(*x),
        Node::Bool(b) => Value::Bool(*b),
        Node::Null => Value::Null,
        Node::Header(name) => lookup(h, name),
        Node::Neg(inner) => match value(inner, h).number() {
            Some(Num::Int(i)) => i.checked_neg().map(Value::Int).unwrap_or(Value::Float(-(i as f64))),
            Some(Num::Float(x)) => Value::Float(-x),
            None => Value::Null,
        },
        Node::Arith(op, a, b) => arith(*op, value(a, h), value(b, h)),
        other => match truth(other, h) {
            Some(b) => Value::Bool(b),
            None => Value::Null,
        },
    }
}

fn arith(op: Arith, a: Value, b: Value) -> Value<'static> {
    let (Some(a), Some(b)) = (a.number(), b.number()) else {
        return Value::Null;
    };
    if let (Num::Int(x), Num::Int(y)) = (a, b) {
        let r = match op {
            Arith::Add => x.checked_add(y),
            Arith::Sub => x.checked_sub(y),
            Arith::Mul => x.checked_mul(y),
            Arith::Div if y == 0 => return Value::Null,
            Arith::Div => x.checked_div(y),
        };
        if let Some(r) = r {
            return Value::Int(r);
        }
    }
    let (x, y) = (a.float(), b.float());
    let r = match op {
        Arith::Add => x + y,
        Arith::Sub => x - y,
        Arith::Mul => x * y,
        Arith::Div if y == 0.0 => return Value::Null,
        Arith::Div => x / y,
    };
    if r.is_finite() {
        Value::Float(r)
    } else {
        Value::Null
    }
}

/// Compare two values; `None` when they cannot be (a NULL, or kinds that do not compare).
fn compare(a: Value, b: Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(&y)),
        // Text against a boolean: `true` / `false` in any case (headers are text).
        (Value::Str(s), Value::Bool(y)) => boolean(s).map(|x| x.cmp(&y)),
        (Value::Bool(x), Value::Str(s)) => boolean(s).map(|y| x.cmp(&y)),
        (Value::Bool(_), _) | (_, Value::Bool(_)) => None,
        // A number on either side: compare as numbers, reading text as one if it parses.
        (x, y) if x.is_number() || y.is_number() => x.number()?.cmp(y.number()?),
        _ => None,
    }
}

/// A header read as a boolean.
fn boolean(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn not(v: Option<bool>) -> Option<bool> {
    v.map(|b| !b)
}

/// The truth of a condition: `Some(true)`, `Some(false)` or unknown.
pub fn truth<H: Headers + ?Sized>(n: &Node, h: &H) -> Option<bool> {
    match n {
        Node::And(all) => {
            let mut unknown = false;
            for a in all {
                match truth(a, h) {
                    Some(false) => return Some(false),
                    None => unknown = true,
                    Some(true) => {}
                }
            }
            (!unknown).then_some(true)
        }
        Node::Or(all) => {
            let mut unknown = false;
            for a in all {
                match truth(a, h) {
                    Some(true) => return Some(true),
                    None => unknown = true,
                    Some(false) => {}
                }
            }
            if unknown {
                None
            } else {
                Some(false)
            }
        }
        Node::Not(a) => not(truth(a, h)),
        Node::Cmp(op, a, b) => {
            let (x, y) = (value(a, h), value(b, h));
            let ord = compare(x, y)?;
            // Booleans compare for equality only.
            if matches!(x, Value::Bool(_)) && !matches!(op, Cmp::Eq | Cmp::Ne) {
                return None;
            }
            Some(match op {
                Cmp::Eq => ord == Ordering::Equal,
                Cmp::Ne => ord != Ordering::Equal,
                Cmp::Lt => ord == Ordering::Less,
                Cmp::Le => ord != Ordering::Greater,
                Cmp::Gt => ord == Ordering::Greater,
                Cmp::Ge => ord != Ordering::Less,
            })
        }
        Node::Like { value: v, pattern, negated } => {
            let Value::Str(s) = value(v, h) else { return None };
            let m = like(pattern, s);
            Some(m != *negated)
        }
        Node::In { value: v, list, negated } => {
            let Value::Str(s) = value(v, h) else { return None };
            Some(list.iter().any(|x| &**x == s) != *negated)
        }
        Node::Between { value: v, low, high, negated } => {
            let x = value(v, h);
            let lo = compare(x, value(low, h)).map(|o| o != Ordering::Less);
            let hi = compare(x, value(high, h)).map(|o| o != Ordering::Greater);
            let inside = match (lo, hi) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
            if *negated {
                not(inside)
            } else {
                inside
            }
        }
        Node::IsNull { value: v, negated } => Some((value(v, h) == Value::Null) != *negated),
        Node::Bool(b) => Some(*b),
        Node::Header(_) => match value(n, h) {
            Value::Str(s) => boolean(s),
            _ => None,
        },
        _ => None,
    }
}

/// Does `s` match the LIKE pattern? Iterative over the text's characters in place (no copy per
/// message), with one backtrack point for the last `%`: O(pattern x text) at worst, both
/// bounded (1,024 pattern terms, `max_header_len`).
fn like(p: &[Like], s: &str) -> bool {
    let next = |at: usize| s[at..].chars().next();
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(c) = next(si) {
        match p.get(pi) {
            Some(Like::Any) => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(Like::One) => {
                pi += 1;
                si += c.len_utf8();
            }
            Some(Like::Char(x)) if *x == c => {
                pi += 1;
                si += c.len_utf8();
            }
            _ => match star {
                Some((sp, ss)) => {
                    let skip = ss + next(ss).map_or(1, char::len_utf8);
                    pi = sp + 1;
                    si = skip;
                    star = Some((sp, skip));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|x| *x == Like::Any)
}
