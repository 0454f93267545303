//! Recursive descent over the tokens into a [`Node`] tree, with the nesting depth and node
//! count bounded (see the module bounds in `selector`).
//!
//! Precedence, loosest first: `OR`, `AND`, `NOT`, predicates (comparison, `LIKE`, `IN`,
//! `BETWEEN`, `IS NULL`), `+ -`, `* /`, unary sign.

use super::lex::{Kw, Tok};
use super::{Error, ErrorKind, MAX_DEPTH, MAX_NODES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

/// One element of a compiled LIKE pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Like {
    /// `%`: any run of characters, possibly empty.
    Any,
    /// `_`: exactly one character.
    One,
    Char(char),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Str(Box<str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    Header(Box<str>),
    Neg(Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    Cmp(Cmp, Box<Node>, Box<Node>),
    /// Every operand, flat (a chain of ANDs or ORs adds no depth).
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Like {
        value: Box<Node>,
        pattern: Vec<Like>,
        negated: bool,
    },
    In {
        value: Box<Node>,
        list: Vec<Box<str>>,
        negated: bool,
    },
    Between {
        value: Box<Node>,
        low: Box<Node>,
        high: Box<Node>,
        negated: bool,
    },
    IsNull {
        value: Box<Node>,
        negated: bool,
    },
}

impl Node {
    /// Whether this node yields true/false/unknown (rather than a number or a string).
    fn is_condition(&self) -> Option<&'static str> {
        match self {
            Node::Str(_) => Some("string"),
            Node::Int(_) | Node::Float(_) | Node::Neg(_) | Node::Arith(..) => Some("number"),
            _ => None,
        }
    }
}

struct Parser<'t> {
    toks: &'t [(usize, Tok)],
    at: usize,
    end: usize,
    depth: usize,
    nodes: usize,
}

/// Parse a whole selector; `end` is the text's length (the position of "end of text").
pub fn parse(toks: &[(usize, Tok)], end: usize) -> Result<Node, Error> {
    if toks.is_empty() {
        return Err(Error { pos: 0, kind: ErrorKind::Empty });
    }
    let mut p = Parser { toks, at: 0, end, depth: 0, nodes: 0 };
    let root = p.condition()?;
    if p.at < toks.len() {
        return Err(p.expected("an operator or the end of the selector"));
    }
    if let Some(what) = root.is_condition() {
        return Err(Error { pos: 0, kind: ErrorKind::NotBoolean(what) });
    }
    Ok(root)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|(_, t)| t)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.at).map(|(p, _)| *p).unwrap_or(self.end)
    }

    fn expected(&self, expected: &'static str) -> Error {
        let found = self.peek().map(|t| t.to_string()).unwrap_or_else(|| "the end of the selector".into());
        Error { pos: self.pos(), kind: ErrorKind::Expected { expected, found } }
    }

    fn eat_kw(&mut self, k: Kw) -> bool {
        if self.peek() == Some(&Tok::Kw(k)) {
            self.at += 1;
            return true;
        }
        false
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.at += 1;
            return true;
        }
        false
    }

    fn node(&mut self, n: Node) -> Result<Box<Node>, Error> {
        self.count(1)?;
        Ok(Box::new(n))
    }

    /// Count `n` more nodes against [`MAX_NODES`].
    fn count(&mut self, n: usize) -> Result<(), Error> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(Error { pos: self.pos(), kind: ErrorKind::TooBig });
        }
        Ok(())
    }

    /// Enter one level of nesting (every recursive rule does).
    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error { pos: self.pos(), kind: ErrorKind::TooDeep });
        }
        Ok(())
    }

    /// A sub-expression that must be a condition (an operand of AND / OR / NOT).
    fn need_condition(&self, n: &Node, pos: usize) -> Result<(), Error> {
        match n.is_condition() {
            Some(what) => Err(Error { pos, kind: ErrorKind::NotBoolean(what) }),
            None => Ok(()),
        }
    }

    fn condition(&mut self) -> Result<Node, Error> {
        self.enter()?;
        let pos = self.pos();
        let first = self.conjunction()?;
        let mut all = Vec::new();
        while self.eat_kw(Kw::Or) {
            if all.is_empty() {
                self.need_condition(&first, pos)?;
            }
            let rpos = self.pos();
            let right = self.conjunction()?;
            self.need_condition(&right, rpos)?;
            self.count(1)?;
            all.push(right);
        }
        self.depth -= 1;
        Ok(if all.is_empty() {
            first
        } else {
            all.insert(0, first);
            Node::Or(all)
        })
    }

    fn conjunction(&mut self) -> Result<Node, Error> {
        let pos = self.pos();
        let first = self.negation()?;
        let mut all = Vec::new();
        while self.eat_kw(Kw::And) {
            if all.is_empty() {
                self.need_condition(&first, pos)?;
            }
            let rpos = self.pos();
            let right = self.negation()?;
            self.need_condition(&right, rpos)?;
            self.count(1)?;
            all.push(right);
        }
        Ok(if all.is_empty() {
            first
        } else {
            all.insert(0, first);
            Node::And(all)
        })
    }

    fn negation(&mut self) -> Result<Node, Error> {
        if self.eat_kw(Kw::Not) {
            self.enter()?;
            let pos = self.pos();
            let inner = self.negation()?;
            self.need_condition(&inner, pos)?;
            self.depth -= 1;
            return Ok(Node::Not(self.node(inner)?));
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Node, Error> {
        let value = self.sum()?;
        let cmp = match self.peek() {
            Some(Tok::Op("=")) => Some(Cmp::Eq),
            Some(Tok::Op("<>")) => Some(Cmp::Ne),
            Some(Tok::Op("<")) => Some(Cmp::Lt),
            Some(Tok::Op("<=")) => Some(Cmp::Le),
            Some(Tok::Op(">")) => Some(Cmp::Gt),
            Some(Tok::Op(">=")) => Some(Cmp::Ge),
            _ => None,
        };
        if let Some(c) = cmp {
            self.at += 1;
            let right = self.sum()?;
            return Ok(Node::Cmp(c, self.node(value)?, self.node(right)?));
        }
        if self.eat_kw(Kw::Is) {
            let negated = self.eat_kw(Kw::Not);
            if !self.eat_kw(Kw::Null) {
                return Err(self.expected("NULL"));
            }
            return Ok(Node::IsNull { value: self.node(value)?, negated });
        }
        let negated = self.eat_kw(Kw::Not);
        if self.eat_kw(Kw::Like) {
            let ppos = self.pos();
            let Some(Tok::Str(pattern)) = self.peek().cloned() else {
                return Err(self.expected("a pattern in quotes after LIKE"));
            };
            self.at += 1;
            let escape = if self.eat_kw(Kw::Escape) {
                let epos = self.pos();
                let Some(Tok::Str(e)) = self.peek().cloned() else {
                    return Err(self.expected("an escape character in quotes after ESCAPE"));
                };
                self.at += 1;
                let mut cs = e.chars();
                match (cs.next(), cs.next()) {
                    (Some(c), None) => Some(c),
                    _ => return Err(Error { pos: epos, kind: ErrorKind::BadEscape }),
                }
            } else {
                None
            };
            let pattern = like_pattern(&pattern, escape).ok_or(Error { pos: ppos, kind: ErrorKind::DanglingEscape })?;
            self.count(pattern.len())?;
            return Ok(Node::Like { value: self.node(value)?, pattern, negated });
        }
        if self.eat_kw(Kw::In) {
            if !self.eat_op("(") {
                return Err(self.expected("'(' after IN"));
            }
            let mut list = Vec::new();
            loop {
                let Some(Tok::Str(s)) = self.peek().cloned() else {
                    return Err(self.expected("a string in quotes in the IN list"));
                };
                self.at += 1;
                self.count(1)?;
                list.push(s.into_boxed_str());
                if self.eat_op(")") {
                    break;
                }
                if !self.eat_op(",") {
                    return Err(self.expected("',' or ')' in the IN list"));
                }
            }
            return Ok(Node::In { value: self.node(value)?, list, negated });
        }
        if self.eat_kw(Kw::Between) {
            let low = self.sum()?;
            if !self.eat_kw(Kw::And) {
                return Err(self.expected("AND in BETWEEN ... AND ..."));
            }
            let high = self.sum()?;
            return Ok(Node::Between { value: self.node(value)?, low: self.node(low)?, high: self.node(high)?, negated });
        }
        if negated {
            return Err(self.expected("LIKE, IN or BETWEEN after NOT"));
        }
        Ok(value)
    }

    fn sum(&mut self) -> Result<Node, Error> {
        let mut left = self.product()?;
        // Each link of a chain nests the tree one level deeper (left-associative).
        let base = self.depth;
        loop {
            let op = if self.eat_op("+") {
                Arith::Add
            } else if self.eat_op("-") {
                Arith::Sub
            } else {
                self.depth = base;
                return Ok(left);
            };
            self.enter()?;
            let right = self.product()?;
            left = Node::Arith(op, self.node(left)?, self.node(right)?);
        }
    }

    fn product(&mut self) -> Result<Node, Error> {
        let mut left = self.unary()?;
        // Each link of a chain nests the tree one level deeper (left-associative).
        let base = self.depth;
        loop {
            let op = if self.eat_op("*") {
                Arith::Mul
            } else if self.eat_op("/") {
                Arith::Div
            } else {
                self.depth = base;
                return Ok(left);
            };
            self.enter()?;
            let right = self.unary()?;
            left = Node::Arith(op, self.node(left)?, self.node(right)?);
        }
    }

    fn unary(&mut self) -> Result<Node, Error> {
        if self.eat_op("-") {
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(match inner {
                Node::Int(i) => Node::Int(i.wrapping_neg()),
                Node::Float(x) => Node::Float(-x),
                other => Node::Neg(self.node(other)?),
            });
        }
        if self.eat_op("+") {
            self.enter()?;
            let inner = self.unary();
            self.depth -= 1;
            return inner;
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, Error> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.expected("a value"));
        };
        let n = match tok {
            Tok::Str(s) => Node::Str(s.into_boxed_str()),
            Tok::Int(i) => Node::Int(i),
            Tok::Float(x) => Node::Float(x),
            Tok::Ident(name) => Node::Header(name.into_boxed_str()),
            Tok::Kw(Kw::True) => Node::Bool(true),
            Tok::Kw(Kw::False) => Node::Bool(false),
            Tok::Kw(Kw::Null) => Node::Null,
            Tok::Op("(") => {
                self.at += 1;
                let inner = self.condition()?;
                if !self.eat_op(")") {
                    return Err(self.expected("')'"));
                }
                return Ok(inner);
            }
            _ => return Err(self.expected("a value")),
        };
        self.at += 1;
        self.count(1)?;
        Ok(n)
    }
}

/// Compile a LIKE pattern; `None` if it ends with the escape character.
fn like_pattern(p: &str, escape: Option<char>) -> Option<Vec<Like>> {
    let mut out = Vec::new();
    let mut cs = p.chars();
    while let Some(c) = cs.next() {
        out.push(match c {
            c if Some(c) == escape => Like::Char(cs.next()?),
            '%' => {
                if out.last() == Some(&Like::Any) {
                    continue;
                }
                Like::Any
            }
            '_' => Like::One,
            c => Like::Char(c),
        });
    }
    Some(out)
}
