//! `romp ctl`: the admin plane from a shell. Reads the JSON pages of the admin port
//! (`/romp/info`, `/romp/destinations`, `/romp/connections`) over HTTP and carries out
//! `purge` and `kick` as admin SENDs over STOMP on the same port (`romp::client`), printing
//! human tables, or with `--json` the broker's JSON as it came.
//!
//! Runs in the `romp` binary's main thread, against a broker that may be on another host; every
//! wait has a deadline (10 s).

use base64::Engine as _;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

pub const USAGE: &str = "usage: romp ctl [--admin HOST:PORT] [--user U --password P | --token T] [--json] COMMAND
  COMMAND: stats | destinations | connections | purge DESTINATION | kick SESSION
  --admin     the admin port (default 127.0.0.1:61616)
  --user/--password   an admin login (HTTP Basic for the pages, CONNECT for purge and kick)
  --token     the metrics_token (pages only)
  --json      print the broker's JSON instead of a table";

struct Opts {
    admin: String,
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
    json: bool,
}

const WAIT: Duration = Duration::from_secs(10);

/// Run `romp ctl ARGS`: 0 on success, 1 when the broker refused or failed, 2 on bad usage.
pub fn run(args: impl Iterator<Item = String>) -> ExitCode {
    let mut o = Opts { admin: "127.0.0.1:61616".into(), user: None, password: None, token: None, json: false };
    let mut rest = Vec::new();
    let mut it = args.peekable();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let r = match a.as_str() {
            "--admin" => value("--admin").map(|v| o.admin = v),
            "--user" => value("--user").map(|v| o.user = Some(v)),
            "--password" => value("--password").map(|v| o.password = Some(v)),
            "--token" => value("--token").map(|v| o.token = Some(v)),
            "--json" => {
                o.json = true;
                Ok(())
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            _ => {
                rest.push(a);
                Ok(())
            }
        };
        if let Err(e) = r {
            eprintln!("romp ctl: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let result = match rest.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["stats"] => page(&o, "/romp/info").map(|v| if o.json { v.to_string() } else { stats_table(&v) }),
        ["destinations"] => page(&o, "/romp/destinations").map(|v| if o.json { v.to_string() } else { destinations_table(&v) }),
        ["connections"] => page(&o, "/romp/connections").map(|v| if o.json { v.to_string() } else { connections_table(&v) }),
        ["purge", dest] => admin_send(&o, "purge", &[("target", dest)]),
        ["kick", session] => admin_send(&o, "kick", &[("session", session)]),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(text) => {
            println!("{}", text.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("romp ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// GET a JSON page of the admin port.
fn page(o: &Opts, path: &str) -> Result<serde_json::Value, String> {
    let mut s = std::net::TcpStream::connect(&o.admin).map_err(|e| format!("{}: {e}", o.admin))?;
    s.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
    let auth = match (&o.token, &o.user) {
        (Some(t), _) => format!("Authorization: Bearer {t}\r\n"),
        (None, Some(u)) => {
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{}", o.password.as_deref().unwrap_or("")));
            format!("Authorization: Basic {b}\r\n")
        }
        (None, None) => String::new(),
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n", o.admin);
    s.write_all(req.as_bytes()).map_err(|e| format!("{}: {e}", o.admin))?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).map_err(|e| format!("{}: {e}", o.admin))?;
    let text = String::from_utf8_lossy(&all);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("{}: not an HTTP answer", o.admin))?;
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        let why = body.trim();
        return Err(format!("{path}: HTTP {status}{}", if why.is_empty() { String::new() } else { format!(": {why}") }));
    }
    serde_json::from_str(body).map_err(|e| format!("{path}: {e}"))
}

/// An admin action over STOMP: the broker's result MESSAGE, as a line (or JSON).
fn admin_send(o: &Opts, action: &str, headers: &[(&str, &str)]) -> Result<String, String> {
    use romp::client::blocking::Connection;
    let options = romp::client::Options { login: o.user.clone(), passcode: o.password.clone(), ..Default::default() };
    let mut c = Connection::connect(&o.admin, options).map_err(|e| format!("{}: {e}", o.admin))?;
    c.send(&format!("{}{action}", romp::admin::PREFIX), b"", headers).map_err(|e| e.to_string())?;
    let m = c.recv(WAIT).map_err(|e| e.to_string())?.ok_or_else(|| format!("{action}: no answer within {} s", WAIT.as_secs()))?;
    let result = m.header("result").unwrap_or("").to_string();
    let text = String::from_utf8_lossy(&m.body).into_owned();
    let _ = c.disconnect();
    let line = if o.json { serde_json::json!({ "action": action, "result": result, "text": text }).to_string() } else { text.clone() };
    if result == "ok" {
        Ok(line)
    } else {
        Err(if text.is_empty() { format!("{action} failed") } else { text })
    }
}

/// Left-aligned columns, two spaces apart.
fn table(head: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| cells.iter().enumerate().map(|(i, c)| format!("{c:<0$}", w[i])).collect::<Vec<_>>().join("  ");
    let mut out = line(head.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push('\n');
        out.push_str(line(r).trim_end());
    }
    out
}

fn field(v: &serde_json::Value, k: &str) -> String {
    match &v[k] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A table of the objects in `v[list]`: `cols` (their keys) under `head`, and a line when the
/// broker listed fewer than it has.
fn list_table(v: &serde_json::Value, list: &str, cols: &[&str], head: &[&str]) -> String {
    let rows = v[list].as_array().map(|a| a.iter().map(|d| cols.iter().map(|k| field(d, k)).collect()).collect()).unwrap_or_default();
    let mut t = table(head, rows);
    if v["truncated"] == true {
        t.push_str(&format!("\n(more {list} than listed)"));
    }
    t
}

fn destinations_table(v: &serde_json::Value) -> String {
    let cols = ["name", "kind", "subscribers", "ready", "unacked", "enqueued", "delivered"];
    list_table(v, "destinations", &cols, &["NAME", "KIND", "SUBSCRIBERS", "READY", "UNACKED", "ENQUEUED", "DELIVERED"])
}

fn connections_table(v: &serde_json::Value) -> String {
    let cols = ["session", "peer", "login", "transport", "version", "subscriptions", "pending_bytes"];
    list_table(v, "connections", &cols, &["SESSION", "PEER", "LOGIN", "TRANSPORT", "VERSION", "SUBS", "PENDING"])
}

fn stats_table(v: &serde_json::Value) -> String {
    let rows = [
        ("server", field(v, "server")),
        ("uptime (s)", field(v, "uptime_seconds")),
        ("workers", field(v, "workers")),
        ("connections", field(v, "connections")),
        ("destinations", field(v, "destinations")),
        ("messages in", field(v, "messages_in")),
        ("messages out", field(v, "messages_out")),
        ("published", field(v, "published")),
        ("rejected", field(v, "rejected")),
        ("expired", field(v, "expired")),
        ("dead-lettered", field(v, "dead_lettered")),
        ("memory used (bytes)", field(&v["memory"], "used_bytes")),
        ("memory limit (bytes)", field(&v["memory"], "limit_bytes")),
        ("memory alarm", field(&v["memory"], "alarm")),
    ];
    table(&["FIGURE", "VALUE"], rows.into_iter().map(|(k, v)| vec![k.to_string(), v]).collect())
}
