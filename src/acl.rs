//! Access control: who may use which verb on which destination (`acl_default`, `[groups]`,
//! `[acl."PATTERN"]`). Sans-io and pure: built from the configuration (again on every reload),
//! asked by the connection's worker before a SEND or SUBSCRIBE goes anywhere.
//!
//! Model (../shared/security.md): four verbs. Patterns are matched like `[destinations]`: an
//! exact name, or `prefix*`; `{user}` in a pattern stands for the login (a pattern with it
//! never matches an anonymous session). For each verb the most specific matching pattern that
//! sets the verb decides (an exact name beats every prefix, a longer prefix a shorter one); a
//! pattern that leaves the verb unset passes it on to the next one; when none sets it,
//! `acl_default` decides. `[]` denies explicitly. So nothing is denied by omission (unlike
//! Artemis) and nothing is granted by a broad union (unlike ActiveMQ). Admins (passwd
//! `:true`, or the config login) are never refused.
//!
//! Principals in a list: a login, a group from `[groups]`, `"*"` (any logged-in user) or
//! `"anonymous"` (a session without a login).

use std::collections::BTreeMap;

/// What a rule may allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// SEND, also inside a transaction.
    Send,
    /// SUBSCRIBE (ACK and NACK follow the subscription).
    Subscribe,
    /// Creating the destination on first use.
    Create,
    /// Durable subscriptions, and persistent messages asked for by the SEND.
    Durable,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Send => "send",
            Verb::Subscribe => "subscribe",
            Verb::Create => "create",
            Verb::Durable => "durable",
        }
    }
}

/// `acl_default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Default {
    /// What no rule covers is allowed (an open broker, as without any `[acl]`).
    #[default]
    Allow,
    /// What no rule covers is refused (a closed broker).
    Deny,
}

/// One `[acl."PATTERN"]` table: for each verb, who may (unset: ask a less specific pattern).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rule {
    pub send: Option<Vec<String>>,
    pub subscribe: Option<Vec<String>>,
    pub create: Option<Vec<String>>,
    pub durable: Option<Vec<String>>,
}

impl Rule {
    fn verb(&self, v: Verb) -> Option<&[String]> {
        match v {
            Verb::Send => self.send.as_deref(),
            Verb::Subscribe => self.subscribe.as_deref(),
            Verb::Create => self.create.as_deref(),
            Verb::Durable => self.durable.as_deref(),
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub login: Option<&'a str>,
    pub admin: bool,
}

/// The compiled rules.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    default: Default,
    groups: BTreeMap<String, Vec<String>>,
    /// (pattern, rule), as configured.
    rules: Vec<(String, Rule)>,
}

/// How specific a pattern is when it matches `dest` (higher wins), or `None`.
/// (`{user}` stands for the login wherever it appears; matched in place, nothing allocated.)
fn specificity(pattern: &str, login: Option<&str>, dest: &str) -> Option<usize> {
    let (body, prefix) = match pattern.strip_suffix('*') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    // Walk the pattern's literal pieces and logins along `dest`.
    let mut pieces = body.split("{user}");
    let mut rest = dest.strip_prefix(pieces.next().unwrap_or(""))?;
    for piece in pieces {
        rest = rest.strip_prefix(login?)?.strip_prefix(piece)?;
    }
    match (prefix, rest.is_empty()) {
        (true, _) => Some(dest.len() - rest.len()),
        // An exact name beats every prefix.
        (false, true) => Some(usize::MAX),
        (false, false) => None,
    }
}

impl Acl {
    pub fn new(default: Default, groups: &BTreeMap<String, Vec<String>>, rules: &BTreeMap<String, Rule>) -> Acl {
        Acl { default, groups: groups.clone(), rules: rules.iter().map(|(p, r)| (p.clone(), r.clone())).collect() }
    }

    /// The rules by pattern, as they stand (the admin `perms` action changes a copy).
    pub fn rules(&self) -> BTreeMap<String, Rule> {
        self.rules.iter().cloned().collect()
    }

    /// Whether there is anything to check (no rules and `allow`: every answer is yes).
    pub fn is_open(&self) -> bool {
        self.rules.is_empty() && self.default == Default::Allow
    }

    fn names(&self, list: &[String], who: Who<'_>) -> bool {
        list.iter().any(|p| match p.as_str() {
            "*" => who.login.is_some(),
            "anonymous" => who.login.is_none(),
            name => match (self.groups.get(name), who.login) {
                (Some(members), Some(l)) => members.iter().any(|m| m == l),
                (None, Some(l)) => name == l,
                (_, None) => false,
            },
        })
    }

    /// May `who` use `verb` on `dest`?
    pub fn allows(&self, who: Who<'_>, verb: Verb, dest: &str) -> bool {
        if who.admin || self.is_open() {
            return true;
        }
        let decider =
            self.rules.iter().filter_map(|(p, r)| Some((specificity(p, who.login, dest)?, r.verb(verb)?))).max_by_key(|(s, _)| *s);
        match decider {
            Some((_, list)) => self.names(list, who),
            None => self.default == Default::Allow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(default: Default, rules: &[(&str, Rule)]) -> Acl {
        let mut groups = BTreeMap::new();
        groups.insert("apps".to_string(), vec!["orders-svc".to_string(), "billing".to_string()]);
        let rules = rules.iter().map(|(p, r)| (p.to_string(), r.clone())).collect();
        Acl::new(default, &groups, &rules)
    }

    fn list(names: &[&str]) -> Option<Vec<String>> {
        Some(names.iter().map(|s| s.to_string()).collect())
    }

    fn user(l: &str) -> Who<'_> {
        Who { login: Some(l), admin: false }
    }

    const ANON: Who<'static> = Who { login: None, admin: false };

    #[test]
    fn the_most_specific_pattern_that_sets_a_verb_decides() {
        let a = acl(
            Default::Deny,
            &[
                ("/queue/orders*", Rule { send: list(&["apps"]), subscribe: list(&["orders-svc"]), ..Rule::default() }),
                ("/queue/orders.audit", Rule { subscribe: list(&["auditor"]), ..Rule::default() }),
                ("/queue/*", Rule { send: list(&["*"]), subscribe: list(&["*"]), durable: list(&["billing"]), ..Rule::default() }),
                ("/queue/orders.closed", Rule { send: Some(vec![]), ..Rule::default() }),
            ],
        );
        // Groups and names.
        assert!(a.allows(user("billing"), Verb::Send, "/queue/orders.new"));
        assert!(!a.allows(user("mallory"), Verb::Send, "/queue/orders.new"));
        assert!(a.allows(user("orders-svc"), Verb::Subscribe, "/queue/orders.new"));
        assert!(!a.allows(user("billing"), Verb::Subscribe, "/queue/orders.new"));
        // The exact name wins for subscribe; send is unset there, so the prefix decides.
        assert!(a.allows(user("auditor"), Verb::Subscribe, "/queue/orders.audit"));
        assert!(!a.allows(user("orders-svc"), Verb::Subscribe, "/queue/orders.audit"));
        assert!(a.allows(user("orders-svc"), Verb::Send, "/queue/orders.audit"));
        // Unset at every more specific pattern: the broad one decides; unset everywhere: the default.
        assert!(a.allows(user("billing"), Verb::Durable, "/queue/orders.new"));
        assert!(!a.allows(user("orders-svc"), Verb::Durable, "/queue/orders.new"));
        assert!(!a.allows(user("billing"), Verb::Create, "/queue/orders.new"));
        assert!(a.allows(user("anyone"), Verb::Send, "/queue/other"));
        assert!(!a.allows(ANON, Verb::Send, "/queue/other"), "* is logged-in users only");
        assert!(!a.allows(user("anyone"), Verb::Send, "/topic/x"), "no rule: acl_default = deny");
        // [] denies explicitly.
        assert!(!a.allows(user("billing"), Verb::Send, "/queue/orders.closed"));
        // Admins are never refused.
        assert!(a.allows(Who { login: Some("root"), admin: true }, Verb::Send, "/queue/orders.closed"));
    }

    #[test]
    fn user_patterns_anonymous_and_an_open_default() {
        let a = acl(
            Default::Allow,
            &[
                ("/topic/user.{user}.*", Rule { subscribe: list(&["*"]), ..Rule::default() }),
                ("/topic/user.*", Rule { subscribe: Some(vec![]), send: list(&["anonymous", "apps"]), ..Rule::default() }),
            ],
        );
        assert!(a.allows(user("ann"), Verb::Subscribe, "/topic/user.ann.inbox"));
        assert!(!a.allows(user("bob"), Verb::Subscribe, "/topic/user.ann.inbox"));
        assert!(!a.allows(ANON, Verb::Subscribe, "/topic/user.ann.inbox"));
        assert!(a.allows(ANON, Verb::Send, "/topic/user.ann.inbox"));
        assert!(a.allows(user("billing"), Verb::Send, "/topic/user.ann.inbox"));
        assert!(!a.allows(user("bob"), Verb::Send, "/topic/user.ann.inbox"));
        assert!(a.allows(user("bob"), Verb::Send, "/queue/anything"), "acl_default = allow");
        assert!(Acl::new(Default::Allow, &BTreeMap::new(), &BTreeMap::new()).is_open());
    }
}
