//! Access control through the embedded server: every verb allowed and denied by name, group,
//! `*`, `anonymous` and `{user}` patterns, the most specific pattern deciding, `acl_default =
//! "deny"`, admins passing, a refusal inside a transaction, the same over WebSocket, and a
//! reload that changes the rules for sessions already open.

mod common;
use common::*;
use romp::acl::{Default as AclDefault, Rule};
use sha2::Digest;

fn passwd(dir: &std::path::Path) -> std::path::PathBuf {
    let line = |name: &str, pass: &str, admin: bool| {
        let mut h = sha2::Sha256::new();
        h.update(format!("{pass}\n").as_bytes());
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        format!("{name}:{hex}{}\n", if admin { ":true" } else { "" })
    };
    let p = dir.join("passwd");
    let text = [line("orders-svc", "o", false), line("billing", "b", false), line("ann", "a", false), line("root", "r", true)].concat();
    std::fs::write(&p, text).unwrap();
    p
}

fn list(names: &[&str]) -> Option<Vec<String>> {
    Some(names.iter().map(|s| s.to_string()).collect())
}

fn rules(c: &mut romp::Config, users: std::path::PathBuf) {
    c.user_file = Some(users);
    c.acl_default = AclDefault::Deny;
    c.groups.insert("apps".into(), vec!["orders-svc".into(), "billing".into()]);
    c.acl.insert(
        "/queue/orders*".into(),
        Rule { send: list(&["apps"]), subscribe: list(&["orders-svc"]), durable: list(&["orders-svc"]), create: list(&["*"]) },
    );
    c.acl.insert(
        "/topic/user.{user}.*".into(),
        Rule { subscribe: list(&["*"]), send: list(&["*"]), create: list(&["*"]), ..Rule::default() },
    );
    c.acl.insert("/topic/public".into(), Rule { subscribe: list(&["*"]), send: list(&["apps"]), create: list(&["*"]), ..Rule::default() });
}

fn login(b: &Broker, user: &str, pass: &str) -> Client {
    let mut c = b.raw();
    c.connect_with("1.2", &[("login", user), ("passcode", pass)]);
    c
}

fn denied(c: &mut Client, what: &str) {
    let e = c.expect_error("access denied");
    assert!(e.text().contains(what), "{e:?}");
}

#[test]
fn verbs_are_allowed_and_denied_by_the_rules_over_tcp_and_websocket() {
    let dir = std::env::temp_dir().join(format!("romp-acl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let users = passwd(&dir);
    for setup in [Setup { workers: 2, ws: false }, Setup { workers: 1, ws: true }] {
        let u = users.clone();
        let b = Broker::with(setup, |c| rules(c, u));
        // A group member sends; the named consumer subscribes and receives.
        let mut sub = login(&b, "orders-svc", "o");
        sub.subscribe_sync("1", "/queue/orders.new", "auto");
        let mut p = login(&b, "billing", "b");
        p.with_receipt("SEND", &[("destination", "/queue/orders.new")], b"order 1", "r1");
        assert_eq!(sub.recv().text(), "order 1", "{setup}");
        // Not in the subscribe list: refused, named verb and destination.
        let mut c = login(&b, "billing", "b");
        c.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", "/queue/orders.new")], b"");
        denied(&mut c, "subscribe on /queue/orders.new");
        // Not in the send list.
        let mut c = login(&b, "ann", "a");
        c.send_frame("SEND", &[("destination", "/queue/orders.new")], b"x");
        denied(&mut c, "send on /queue/orders.new");
        // No rule at all: acl_default = deny.
        let mut c = login(&b, "ann", "a");
        c.send_frame("SEND", &[("destination", "/queue/elsewhere")], b"x");
        denied(&mut c, "\"ann\" may not send on /queue/elsewhere");
        // {user}: one's own topics only.
        let mut own = login(&b, "ann", "a");
        own.subscribe_sync("1", "/topic/user.ann.inbox", "auto");
        let mut c = login(&b, "billing", "b");
        c.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/user.ann.inbox")], b"");
        denied(&mut c, "subscribe on /topic/user.ann.inbox");
        // Persistent SENDs need `durable` where the rules set it.
        let mut c = login(&b, "billing", "b");
        c.send_frame("SEND", &[("destination", "/queue/orders.new"), ("persistent", "true")], b"x");
        denied(&mut c, "durable on /queue/orders.new");
        // A SEND inside a transaction is refused at once, not at COMMIT.
        let mut c = login(&b, "ann", "a");
        c.send_frame("BEGIN", &[("transaction", "t")], b"");
        c.send_frame("SEND", &[("destination", "/topic/public"), ("transaction", "t")], b"x");
        denied(&mut c, "send on /topic/public");
        // An admin passes every rule.
        let mut root = login(&b, "root", "r");
        root.with_receipt("SEND", &[("destination", "/queue/elsewhere")], b"admin", "ra");
        root.with_receipt("SUBSCRIBE", &[("id", "9"), ("destination", "/topic/user.ann.inbox")], b"", "rs");
        // Anonymous: nothing here (every rule names logged-in users).
        let mut open = Broker::with(setup, |c| {
            c.acl_default = AclDefault::Deny;
            c.acl.insert("/topic/public".into(), Rule { subscribe: list(&["anonymous"]), create: list(&["anonymous"]), ..Rule::default() });
        });
        let mut a = open.client("1.2");
        a.subscribe_sync("1", "/topic/public", "auto");
        a.send_frame("SEND", &[("destination", "/topic/public")], b"x");
        denied(&mut a, "an anonymous session may not send on /topic/public");
        open.handle.take().unwrap().shutdown();
        // Those who were allowed still work.
        p.with_receipt("SEND", &[("destination", "/queue/orders.new")], b"order 2", "r2");
        assert_eq!(sub.recv().text(), "order 2");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_reload_applies_new_rules_to_sessions_already_open() {
    let dir = std::env::temp_dir().join(format!("romp-acl-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let users = passwd(&dir);
    let u = users.clone();
    let b = Broker::with(2, |c| rules(c, u));
    let mut p = login(&b, "billing", "b");
    p.with_receipt("SEND", &[("destination", "/queue/orders.x")], b"before", "r1");
    // The new rules drop billing from the senders; its next SEND (same destination, whose
    // check was cached) is refused.
    let mut cfg = test_config(2);
    rules(&mut cfg, users);
    cfg.acl.get_mut("/queue/orders*").unwrap().send = list(&["orders-svc"]);
    b.handle.as_ref().unwrap().reload(cfg).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    p.send_frame("SEND", &[("destination", "/queue/orders.x")], b"after");
    denied(&mut p, "send on /queue/orders.x");
    let mut o = login(&b, "orders-svc", "o");
    o.with_receipt("SEND", &[("destination", "/queue/orders.x")], b"allowed now", "r2");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The admin `perms` action changes the rules at run time (until the next reload): here it
/// takes `send` on the orders queues from billing, and a later change leaves that one in place.
#[test]
fn the_admin_perms_action_changes_the_rules_at_run_time() {
    let dir = std::env::temp_dir().join(format!("romp-acl-perms-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let users = passwd(&dir);
    let b = Broker::with(2, |c| rules(c, users.clone()));
    let mut p = login(&b, "billing", "b");
    p.with_receipt("SEND", &[("destination", "/queue/orders.y")], b"before", "r1");
    let mut admin = Client::raw(b.admin.unwrap());
    admin.connect_with("1.2", &[("login", "root"), ("passcode", "r")]);
    let mut perms = |headers: &[(&str, &str)]| {
        let mut h = vec![("destination", "/virt/admin/perms"), ("target", "/queue/orders*")];
        h.extend_from_slice(headers);
        admin.with_receipt("SEND", &h, b"", "p");
        let m = admin.recv();
        assert_eq!(m.header("result"), Some("ok"), "{m:?}");
    };
    perms(&[("acl.send", "orders-svc")]);
    perms(&[("acl.subscribe", "orders-svc, billing")]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    // billing may subscribe now, and may no longer send.
    let mut s = login(&b, "billing", "b");
    s.subscribe_sync("1", "/queue/orders.y", "auto");
    p.send_frame("SEND", &[("destination", "/queue/orders.y")], b"after");
    denied(&mut p, "send on /queue/orders.y");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `create`: a destination comes into being only for those allowed to create it; once it
/// exists, anyone the other verbs allow uses it. The owner decides (only it knows what exists).
#[test]
fn only_those_allowed_create_a_destination_on_first_use() {
    let dir = std::env::temp_dir().join(format!("romp-acl-create-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let users = passwd(&dir);
    for workers in [1, 3] {
        let b = Broker::with(workers, |c| {
            c.user_file = Some(users.clone());
            c.groups.insert("apps".into(), vec!["orders-svc".into(), "billing".into()]);
            c.acl.insert(
                "/queue/jobs*".into(),
                Rule { send: list(&["*"]), subscribe: list(&["*"]), create: list(&["apps"]), ..Rule::default() },
            );
        });
        let mut ann = login(&b, "ann", "a");
        ann.send_frame("SEND", &[("destination", "/queue/jobs.new"), ("receipt", "r")], b"x");
        denied(&mut ann, "may not create /queue/jobs.new");
        let mut ann = login(&b, "ann", "a");
        ann.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", "/queue/jobs.other")], b"");
        denied(&mut ann, "may not create /queue/jobs.other");
        // billing creates it; then ann may use it.
        let mut billing = login(&b, "billing", "b");
        billing.with_receipt("SEND", &[("destination", "/queue/jobs.new")], b"first", "r1");
        let mut ann = login(&b, "ann", "a");
        ann.with_receipt("SEND", &[("destination", "/queue/jobs.new")], b"second", "r2");
        ann.subscribe_sync("1", "/queue/jobs.new", "auto");
        assert_eq!(ann.recv().text(), "first", "{workers} workers");
        assert_eq!(ann.recv().text(), "second");
        // Topics without retained messages are never "created" by a SEND: allowed.
        ann.with_receipt("SEND", &[("destination", "/topic/anything")], b"dropped", "r3");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
