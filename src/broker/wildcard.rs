//! Wildcard topic subscriptions: patterns in ActiveMQ's or RabbitMQ's syntax, and the trie
//! that finds every pattern a topic name matches.
//!
//! A name is a prefix through its last `/` (`/topic/`), then words separated by `.`:
//! `/topic/prices.stock.ibm` is `/topic/` + `prices`, `stock`, `ibm`. A pattern has the same
//! shape; a word `*` matches one word, and ActiveMQ's `>` (last word only) or RabbitMQ's `#`
//! (anywhere) matches zero or more words. (ActiveMQ's `PRICE.>` matches `PRICE` itself too, as
//! ActiveMQ does.) The prefix is always literal.
//!
//! One trie per worker, twice: the owner's (which workers have a matching subscription, so a
//! topic message goes to each such worker once) and each subscriber worker's (which of its
//! subscriptions get it). Matching costs the words of the name times the branches it meets,
//! not the number of patterns.
//!
//! # Invariants
//! - A pattern has at most [`MAX_WORDS`] words and [`MAX_ANY`] zero-or-more words, so the
//!   backtracking over them stays small whatever clients subscribe to.
//! - Nodes left without patterns are removed, so the trie holds only live subscriptions.

use super::FastMap;
use crate::config::Wildcards;
use smallvec::SmallVec;

/// The most words a wildcard pattern may have (after its prefix).
pub const MAX_WORDS: usize = 32;
/// The most zero-or-more words (`#`, `>`) in one pattern.
pub const MAX_ANY: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    Lit(Box<str>),
    /// `*`
    One,
    /// `>` or `#`
    Any,
}

/// A parsed wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    prefix: Box<str>,
    words: Vec<Word>,
}

/// Split a name into its prefix (through the last `/`) and its words.
pub fn split(name: &str) -> (&str, SmallVec<[&str; 8]>) {
    let cut = name.rfind('/').map_or(0, |i| i + 1);
    let (prefix, rest) = name.split_at(cut);
    (prefix, rest.split('.').collect())
}

impl Pattern {
    /// Parse `dest` as a pattern of `syntax`: `Ok(None)` when it has no wildcard word (an
    /// exact name), an error (for the ERROR frame) when it is malformed or too large.
    pub fn parse(dest: &str, syntax: Wildcards) -> Result<Option<Pattern>, String> {
        let any = match syntax {
            Wildcards::Off => return Ok(None),
            Wildcards::Activemq => ">",
            Wildcards::Rabbitmq => "#",
        };
        let (prefix, parts) = split(dest);
        if !parts.iter().any(|w| *w == "*" || *w == any) {
            return Ok(None);
        }
        if parts.len() > MAX_WORDS {
            return Err(format!("{dest}: a wildcard subscription has at most {MAX_WORDS} words"));
        }
        let mut words = Vec::with_capacity(parts.len());
        for (i, w) in parts.iter().enumerate() {
            words.push(match *w {
                "*" => Word::One,
                x if x == any => {
                    if syntax == Wildcards::Activemq && i + 1 != parts.len() {
                        return Err(format!("{dest}: '>' must be the last word of a wildcard subscription"));
                    }
                    // `#.#` is `#`.
                    if words.last() == Some(&Word::Any) {
                        continue;
                    }
                    Word::Any
                }
                x => Word::Lit(x.into()),
            });
        }
        if words.iter().filter(|w| **w == Word::Any).count() > MAX_ANY {
            return Err(format!("{dest}: a wildcard subscription has at most {MAX_ANY} '{any}' words"));
        }
        Ok(Some(Pattern { prefix: prefix.into(), words }))
    }

    /// Whether the topic `name` matches (tests, and the trie's reference).
    pub fn matches(&self, name: &str) -> bool {
        let (prefix, words) = split(name);
        prefix == &*self.prefix && match_words(&self.words, &words)
    }
}

fn match_words(p: &[Word], w: &[&str]) -> bool {
    match p.split_first() {
        None => w.is_empty(),
        Some((Word::Any, rest)) => (0..=w.len()).any(|k| match_words(rest, &w[k..])),
        Some((Word::One, rest)) => !w.is_empty() && match_words(rest, &w[1..]),
        Some((Word::Lit(l), rest)) => w.first().is_some_and(|x| **x == **l) && match_words(rest, &w[1..]),
    }
}

#[derive(Debug)]
struct Node<V> {
    lit: FastMap<Box<str>, Node<V>>,
    one: Option<Box<Node<V>>>,
    any: Option<Box<Node<V>>>,
    /// The subscriptions whose pattern ends here.
    here: Vec<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node { lit: FastMap::default(), one: None, any: None, here: Vec::new() }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.here.is_empty() && self.lit.is_empty() && self.one.is_none() && self.any.is_none()
    }

    fn child(&mut self, w: &Word) -> &mut Node<V> {
        match w {
            Word::Lit(l) => self.lit.entry(l.clone()).or_default(),
            Word::One => self.one.get_or_insert_with(Default::default),
            Word::Any => self.any.get_or_insert_with(Default::default),
        }
    }

    /// Remove the first value at the end of `words` that `pred` picks; prune emptied nodes.
    fn remove(&mut self, words: &[Word], pred: &mut impl FnMut(&V) -> bool) -> bool {
        let Some((w, rest)) = words.split_first() else {
            let Some(i) = self.here.iter().position(&mut *pred) else { return false };
            self.here.swap_remove(i);
            return true;
        };
        let (found, empty) = match w {
            Word::Lit(l) => match self.lit.get_mut(l) {
                Some(n) => (n.remove(rest, pred), n.is_empty()),
                None => (false, false),
            },
            Word::One => match self.one.as_deref_mut() {
                Some(n) => (n.remove(rest, pred), n.is_empty()),
                None => (false, false),
            },
            Word::Any => match self.any.as_deref_mut() {
                Some(n) => (n.remove(rest, pred), n.is_empty()),
                None => (false, false),
            },
        };
        if empty {
            match w {
                Word::Lit(l) => {
                    self.lit.remove(l);
                }
                Word::One => self.one = None,
                Word::Any => self.any = None,
            }
        }
        found
    }

    /// Visit the nodes matching the rest `w` of the name, calling `f` at the ends. `seen`:
    /// (node, words left) pairs already visited: a zero-or-more word reaches the same node at
    /// the same place by many splits of the name, and visiting each pair once keeps a match
    /// O(nodes x words) instead of exponential in the number of `#`s. Returns the visits.
    fn each<'a>(
        &'a self,
        w: &[&str],
        seen: &mut Option<&mut std::collections::HashSet<(usize, usize)>>,
        f: &mut impl FnMut(&'a V),
    ) -> usize {
        if seen.as_mut().is_some_and(|s| !s.insert((self as *const Self as usize, w.len()))) {
            return 0;
        }
        let mut visits = 1;
        if let Some(n) = &self.any {
            // Zero or more words: every tail of the name, this node's included.
            for k in 0..=w.len() {
                visits += n.each(&w[k..], seen, f);
            }
        }
        let Some((first, rest)) = w.split_first() else {
            self.here.iter().for_each(&mut *f);
            return visits;
        };
        if let Some(n) = self.lit.get(*first) {
            visits += n.each(rest, seen, f);
        }
        if let Some(n) = &self.one {
            visits += n.each(rest, seen, f);
        }
        visits
    }
}

/// Wildcard subscriptions by pattern. `V` is what a match yields (a subscription key).
#[derive(Debug)]
pub struct Trie<V> {
    roots: FastMap<Box<str>, Node<V>>,
    len: usize,
    /// Scratch for [`Node::each`]'s visited set (no allocation per match once warm), used
    /// only while some pattern has a zero-or-more word (`anys` of them): without one, every
    /// node is reached at one place of the name only.
    seen: std::cell::RefCell<std::collections::HashSet<(usize, usize)>>,
    anys: usize,
}

impl<V> Default for Trie<V> {
    fn default() -> Self {
        Trie { roots: FastMap::default(), len: 0, seen: Default::default(), anys: 0 }
    }
}

impl<V> Trie<V> {
    /// Patterns held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(&mut self, p: &Pattern, v: V) {
        let mut n = self.roots.entry(p.prefix.clone()).or_default();
        for w in &p.words {
            n = n.child(w);
        }
        n.here.push(v);
        self.len += 1;
        self.anys += p.words.contains(&Word::Any) as usize;
    }

    /// Remove the value of pattern `p` that `pred` picks; whether there was one.
    pub fn remove(&mut self, p: &Pattern, mut pred: impl FnMut(&V) -> bool) -> bool {
        let Some(root) = self.roots.get_mut(&p.prefix) else { return false };
        let found = root.remove(&p.words, &mut pred);
        if root.is_empty() {
            self.roots.remove(&p.prefix);
        }
        self.len -= found as usize;
        self.anys -= (found && p.words.contains(&Word::Any)) as usize;
        found
    }

    /// Call `f` with every value whose pattern matches the topic `name` (each once); returns
    /// the nodes visited, at most the trie's nodes times the name's words plus one.
    pub fn each_match<'a>(&'a self, name: &str, mut f: impl FnMut(&'a V)) -> usize {
        let (prefix, words) = split(name);
        let Some(root) = self.roots.get(prefix) else { return 0 };
        if self.anys == 0 {
            return root.each(&words, &mut None, &mut f);
        }
        let mut seen = self.seen.borrow_mut();
        seen.clear();
        root.each(&words, &mut Some(&mut seen), &mut f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str, syntax: Wildcards) -> Pattern {
        Pattern::parse(s, syntax).unwrap().unwrap_or_else(|| panic!("{s} is not a pattern"))
    }

    #[test]
    fn activemq_and_rabbitmq_patterns_match_as_those_brokers_do() {
        use Wildcards::*;
        let table: &[(&str, Wildcards, &str, bool)] = &[
            ("/topic/PRICE.>", Activemq, "/topic/PRICE.STOCK.NASDAQ.ORCL", true),
            ("/topic/PRICE.>", Activemq, "/topic/PRICE", true),
            ("/topic/PRICE.>", Activemq, "/topic/PRICES.X", false),
            ("/topic/PRICE.STOCK.*.IBM", Activemq, "/topic/PRICE.STOCK.NYSE.IBM", true),
            ("/topic/PRICE.STOCK.*.IBM", Activemq, "/topic/PRICE.STOCK.NYSE.SUNW", false),
            ("/topic/PRICE.STOCK.NASDAQ.*", Activemq, "/topic/PRICE.STOCK.NASDAQ", false),
            ("/topic/PRICE.STOCK.NASDAQ.*", Activemq, "/topic/PRICE.STOCK.NASDAQ.A.B", false),
            ("/topic/*", Activemq, "/topic/x", true),
            ("/topic/*", Activemq, "/queue/x", false),
            ("/topic/>", Activemq, "/topic/a.b.c", true),
            ("/topic/news.europe.#", Rabbitmq, "/topic/news.europe", true),
            ("/topic/news.europe.#", Rabbitmq, "/topic/news.europe.sport.football", true),
            ("/topic/news.europe.#", Rabbitmq, "/topic/news.usa", false),
            ("/topic/news.*", Rabbitmq, "/topic/news.europe", true),
            ("/topic/news.*", Rabbitmq, "/topic/news.europe.sport", false),
            ("/topic/news.*.sport", Rabbitmq, "/topic/news.usa.sport", true),
            ("/topic/#.sport", Rabbitmq, "/topic/sport", true),
            ("/topic/#.sport", Rabbitmq, "/topic/a.b.sport", true),
            ("/topic/#.sport.#", Rabbitmq, "/topic/a.sport.b.sport", true),
            ("/topic/a.#.#.b", Rabbitmq, "/topic/a.b", true),
        ];
        for &(pat, syntax, name, want) in table {
            let pattern = p(pat, syntax);
            assert_eq!(pattern.matches(name), want, "{pat} ~ {name}");
            let mut t = Trie::default();
            t.insert(&pattern, 1u8);
            let mut hits = 0;
            t.each_match(name, |_| hits += 1);
            assert_eq!(hits > 0, want, "trie: {pat} ~ {name}");
        }
    }

    #[test]
    fn a_long_name_against_many_zero_or_more_words_costs_nodes_times_words() {
        let mut t = Trie::default();
        t.insert(&p("/topic/#.x.#.x.#.x.#.y", Wildcards::Rabbitmq), 1u8);
        t.insert(&p("/topic/#.x", Wildcards::Rabbitmq), 2u8);
        let name = format!("/topic/{}", vec!["x"; 500].join("."));
        let mut hits = Vec::new();
        let visits = t.each_match(&name, |v| hits.push(*v));
        assert_eq!(hits, [2], "each match once; the one ending in y does not");
        // 11 nodes x 501 places at most (every split of the name tried would be ~2.6e9).
        assert!(visits <= 11 * 501, "{visits} visits");
    }

    #[test]
    fn exact_names_and_bad_patterns() {
        assert_eq!(Pattern::parse("/topic/a.b", Wildcards::Activemq), Ok(None));
        assert_eq!(Pattern::parse("/topic/a.#", Wildcards::Activemq), Ok(None), "# is a plain word in ActiveMQ's syntax");
        assert_eq!(Pattern::parse("/topic/a.>", Wildcards::Rabbitmq), Ok(None));
        assert_eq!(Pattern::parse("/topic/a.*", Wildcards::Off), Ok(None));
        assert_eq!(Pattern::parse("/topic/a*.b", Wildcards::Activemq), Ok(None), "only whole words are wildcards");
        assert!(Pattern::parse("/topic/a.>.b", Wildcards::Activemq).unwrap_err().contains("last word"));
        let long = format!("/topic/{}*", "a.".repeat(MAX_WORDS));
        assert!(Pattern::parse(&long, Wildcards::Activemq).unwrap_err().contains("at most"));
        assert!(Pattern::parse("/topic/#.a.#.b.#.c.#.d.#", Wildcards::Rabbitmq).unwrap_err().contains("'#'"));
        assert!(Pattern::parse("/topic/#.#.#.#.#.#.a", Wildcards::Rabbitmq).unwrap().is_some(), "#.# folds into #");
    }

    #[test]
    fn the_trie_finds_every_matching_pattern_and_forgets_removed_ones() {
        let pats = ["/topic/a.*", "/topic/a.>", "/topic/*.b", "/topic/a.b.>", "/topic/x.*"];
        let mut t = Trie::default();
        for (i, s) in pats.iter().enumerate() {
            t.insert(&p(s, Wildcards::Activemq), i);
        }
        let mut hits = Vec::new();
        t.each_match("/topic/a.b", |v| hits.push(*v));
        hits.sort_unstable();
        assert_eq!(hits, [0, 1, 2, 3]);
        assert!(t.remove(&p("/topic/a.>", Wildcards::Activemq), |v| *v == 1));
        assert!(!t.remove(&p("/topic/a.>", Wildcards::Activemq), |v| *v == 1));
        hits.clear();
        t.each_match("/topic/a.b", |v| hits.push(*v));
        hits.sort_unstable();
        assert_eq!(hits, [0, 2, 3]);
        for (i, s) in pats.iter().enumerate().filter(|(i, _)| *i != 1) {
            assert!(t.remove(&p(s, Wildcards::Activemq), |v| *v == i));
        }
        assert!(t.is_empty() && t.roots.is_empty(), "emptied nodes are pruned");
    }
}
