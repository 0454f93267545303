//! Authentication: a shared login from the config, and a passwd file of users.
//!
//! Built on the main thread at start; read by every worker through an `Arc`. Slow (salted) hash
//! checks run on the auth thread ([`spawn_auth_thread`]) so a CONNECT never stalls a worker loop.
//!
//! passwd lines (`#` starts a comment; a trailing `:true` marks an admin):
//! - `name:<64 hex>` — the old romp format: unsalted SHA-256 of the passcode plus a newline
//!   (`echo PASS | sha256sum`). Checked inline; kept for compatibility only.
//! - `name:$pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>` — the recommended format, printed
//!   by `romp passwd NAME`.
//!
//! Token auth (`secret`): a login `"user <unix-seconds> <random>"` with passcode
//! base64(sha1(login + secret)) is accepted once, within `secret_timeout` ms of its timestamp.
//! Tokens are checked on the auth thread, which alone holds the set of tokens already used.
//!
//! # Invariants
//! - Every secret comparison is constant-time ([`ct_eq`]).
//! - With neither a shared login nor a passwd file, every CONNECT is accepted (guest/guest works).

use crate::broker::ConnRef;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use thiserror::Error;

/// Iterations for new PBKDF2 hashes (about 30-60 ms on one core here).
pub const PBKDF2_ITERATIONS: u32 = 100_000;

#[derive(Debug, Error)]
pub enum AuthError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}:{line}: {message}")]
    Line { file: String, line: usize, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Sha256([u8; 32]),
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// A token login, signed with the server secret.
    Token {
        secret: String,
        timeout_ms: u64,
    },
}

#[derive(Debug, Clone)]
pub struct User {
    pub credential: Credential,
    pub admin: bool,
}

/// What a CONNECT's credentials get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept {
        admin: bool,
    },
    Reject,
    /// Needs a slow hash check: hand it to the auth thread.
    Deferred(Credential, bool),
}

#[derive(Debug, Default)]
pub struct Authenticator {
    shared: Option<(String, String)>,
    users: HashMap<String, User>,
    /// Token auth: the secret and how long a token is valid (ms).
    secret: Option<(String, u64)>,
    /// What an unknown login is checked against, so that it costs what a known one does and
    /// user names cannot be told apart by timing: a PBKDF2 hash with the largest iteration
    /// count of the file's PBKDF2 users (no passcode matches it: its salt and hash are zeros
    /// against a random-looking derivation); `None` when no user has a PBKDF2 hash (every
    /// check is then a fast SHA-256 one either way).
    dummy: Option<Credential>,
}

/// The parts of a token login `"user <unix-seconds> <random>"`.
pub fn parse_token(login: &str) -> Option<(&str, u64)> {
    let mut it = login.splitn(3, ' ');
    let (user, ts, rand) = (it.next()?, it.next()?, it.next()?);
    if user.is_empty() || rand.is_empty() {
        return None;
    }
    Some((user, ts.parse().ok()?))
}

/// The passcode for a token login: base64(sha1(login + secret)).
pub fn token_passcode(login: &str, secret: &str) -> String {
    use base64::Engine;
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(login.as_bytes());
    h.update(secret.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Tokens remembered against replay at most; past it new tokens are refused (fail closed).
pub const MAX_USED_TOKENS: usize = 1_000_000;

/// The auth thread's memory of used tokens (login -> expiry, ms since the epoch).
#[derive(Debug, Default)]
pub struct UsedTokens {
    used: HashMap<String, u64>,
}

impl UsedTokens {
    /// Check a token login; on success it cannot be used again. `now_ms`: wall clock.
    pub fn check(&mut self, login: &str, passcode: &str, secret: &str, timeout_ms: u64, now_ms: u64) -> bool {
        let Some((_, ts)) = parse_token(login) else { return false };
        let issued = ts.saturating_mul(1000);
        // Valid from its timestamp (one second of clock skew tolerated) for timeout_ms.
        if issued > now_ms + 1000 || now_ms.saturating_sub(issued) > timeout_ms {
            return false;
        }
        if !ct_eq(token_passcode(login, secret).as_bytes(), passcode.as_bytes()) {
            return false;
        }
        if self.used.len() >= MAX_USED_TOKENS / 2 {
            self.used.retain(|_, exp| *exp > now_ms);
        }
        if self.used.len() >= MAX_USED_TOKENS {
            log::warn!("token auth: {MAX_USED_TOKENS} unexpired tokens remembered; refusing new ones");
            return false;
        }
        match self.used.entry(login.to_string()) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(issued.saturating_add(timeout_ms).saturating_add(1000));
                true
            }
        }
    }
}

/// Constant-time equality for secrets and hashes.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// PBKDF2-HMAC-SHA256.
pub fn pbkdf2_sha256(passcode: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(passcode, salt, iterations, &mut out);
    out
}

/// Check a passcode against a credential (slow for PBKDF2).
pub fn verify(cred: &Credential, passcode: &str) -> bool {
    match cred {
        Credential::Sha256(h) => {
            let mut d = Sha256::new();
            d.update(passcode.as_bytes());
            d.update(b"\n");
            ct_eq(&d.finalize(), h)
        }
        Credential::Pbkdf2 { iterations, salt, hash } => ct_eq(&pbkdf2_sha256(passcode.as_bytes(), salt, *iterations), hash),
        // Needs the login and the used-token memory: see `UsedTokens`.
        Credential::Token { .. } => false,
    }
}

/// A passwd line for `name` with a fresh random salt (`romp passwd`).
pub fn passwd_line(name: &str, passcode: &str, admin: bool) -> std::io::Result<String> {
    let mut salt = [0u8; 16];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(&mut salt)?;
    let hash = pbkdf2_sha256(passcode.as_bytes(), &salt, PBKDF2_ITERATIONS);
    Ok(format!("{name}:$pbkdf2-sha256${PBKDF2_ITERATIONS}${}${}{}", hex_encode(&salt), hex_encode(&hash), if admin { ":true" } else { "" }))
}

fn parse_credential(s: &str) -> Result<Credential, String> {
    if let Some(rest) = s.strip_prefix("$pbkdf2-sha256$") {
        let parts: Vec<&str> = rest.split('$').collect();
        let [iters, salt, hash] = parts.as_slice() else {
            return Err("expected $pbkdf2-sha256$ITERATIONS$SALT$HASH".into());
        };
        let iterations: u32 = iters.parse().map_err(|_| format!("bad iteration count {iters:?}"))?;
        if iterations == 0 {
            return Err("iteration count must be positive".into());
        }
        let salt = hex_decode(salt).ok_or("salt is not hex")?;
        let hash = hex_decode(hash).filter(|h| h.len() == 32).ok_or("hash is not 64 hex digits")?;
        Ok(Credential::Pbkdf2 { iterations, salt, hash })
    } else {
        let h = hex_decode(s).filter(|h| h.len() == 32).ok_or("hash is neither 64 hex digits (sha256) nor $pbkdf2-sha256$...")?;
        let mut a = [0u8; 32];
        a.copy_from_slice(&h);
        Ok(Credential::Sha256(a))
    }
}

/// Parse passwd text; `file` names the source in errors.
pub fn parse_passwd(text: &str, file: &str) -> Result<HashMap<String, User>, AuthError> {
    let mut users = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |message: String| AuthError::Line { file: file.into(), line: i + 1, message };
        let mut parts = line.splitn(3, ':');
        let name = parts.next().unwrap_or("");
        let hash = parts.next().ok_or_else(|| err("expected name:hash[:true]".into()))?;
        let admin = match parts.next() {
            None | Some("false") => false,
            Some("true") => true,
            Some(x) => return Err(err(format!("third field must be true or false, not {x:?}"))),
        };
        if name.is_empty() {
            return Err(err("empty user name".into()));
        }
        let credential = parse_credential(hash).map_err(err)?;
        users.insert(name.to_string(), User { credential, admin });
    }
    Ok(users)
}

impl Authenticator {
    /// Build from config values.
    pub fn new(login: Option<&str>, passcode: Option<&str>, user_file: Option<&Path>) -> Result<Authenticator, AuthError> {
        let shared = match (login, passcode) {
            (Some(l), Some(p)) => Some((l.to_string(), p.to_string())),
            _ => None,
        };
        let users = match user_file {
            Some(path) => {
                let file = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read { file: file.clone(), source })?;
                parse_passwd(&text, &file)?
            }
            None => HashMap::new(),
        };
        let dummy = users
            .values()
            .filter_map(|u| match &u.credential {
                Credential::Pbkdf2 { iterations, .. } => Some(*iterations),
                _ => None,
            })
            .max()
            .map(|iterations| Credential::Pbkdf2 { iterations, salt: vec![0; 16], hash: vec![0; 32] });
        Ok(Authenticator { shared, users, secret: None, dummy })
    }

    /// Accept token logins signed with `secret`, valid for `timeout_ms`.
    pub fn with_secret(mut self, secret: Option<&str>, timeout_ms: u64) -> Authenticator {
        self.secret = secret.map(|s| (s.to_string(), timeout_ms));
        self
    }

    /// Anyone may connect.
    pub fn is_open(&self) -> bool {
        self.shared.is_none() && self.users.is_empty() && self.secret.is_none()
    }

    /// A login proven by a verified client certificate (`tls_cert_login = "cn"`): no passcode.
    /// On a broker with users (`user_file`), the name must be one of them (its admin flag
    /// applies); the shared config login is an admin as usual; an open broker accepts anyone.
    pub fn check_certified(&self, name: &str) -> Verdict {
        if self.is_open() {
            return Verdict::Accept { admin: false };
        }
        if let Some(u) = self.users.get(name) {
            return Verdict::Accept { admin: u.admin };
        }
        match &self.shared {
            Some((l, _)) if l == name => Verdict::Accept { admin: true },
            _ => Verdict::Reject,
        }
    }

    pub fn check(&self, login: Option<&str>, passcode: Option<&str>) -> Verdict {
        if self.is_open() {
            return Verdict::Accept { admin: false };
        }
        let (login, passcode) = (login.unwrap_or(""), passcode.unwrap_or(""));
        if let Some((l, p)) = &self.shared {
            // Both compares always run, so timing does not tell which part was wrong.
            let ok = ct_eq(l.as_bytes(), login.as_bytes()) & ct_eq(p.as_bytes(), passcode.as_bytes());
            if ok {
                return Verdict::Accept { admin: true };
            }
        }
        if let Some((secret, timeout_ms)) = &self.secret {
            if parse_token(login).is_some() {
                return Verdict::Deferred(Credential::Token { secret: secret.clone(), timeout_ms: *timeout_ms }, false);
            }
        }
        match self.users.get(login) {
            Some(u) => match &u.credential {
                Credential::Sha256(_) => {
                    if verify(&u.credential, passcode) {
                        Verdict::Accept { admin: u.admin }
                    } else {
                        Verdict::Reject
                    }
                }
                c @ Credential::Pbkdf2 { .. } => Verdict::Deferred(c.clone(), u.admin),
                Credential::Token { .. } => Verdict::Reject, // never stored in a passwd file
            },
            // As slow as a known user's check, on the same thread (it fails there).
            None => match &self.dummy {
                Some(d) => Verdict::Deferred(d.clone(), false),
                None => {
                    let _ = verify(&Credential::Sha256([0; 32]), passcode);
                    Verdict::Reject
                }
            },
        }
    }
}

/// The outcome of an authentication done off the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    Accepted { admin: bool },
    Rejected,
}

/// A slow credential check for the auth thread.
pub struct AuthJob {
    pub conn: ConnRef,
    /// The connection's peer address (its worker bounds the checks pending per address).
    pub peer: std::net::IpAddr,
    pub credential: Credential,
    pub admin: bool,
    pub login: String,
    pub passcode: String,
}

/// Capacity of the auth thread's queue; a CONNECT that finds it full is refused with ERROR.
pub const AUTH_QUEUE: usize = 1024;

/// Start the auth thread. It hands each outcome to `answer` (the server passes one that sends it
/// to the connection's worker over the bus and wakes it); the thread ends when `answer` returns
/// `false` (the worker is gone) or every job sender is dropped.
/// If the thread dies (a panic in a check), `on_death` gets the reason: the server stops, since
/// slow-hash logins would otherwise fail everywhere from then on.
///
/// `fault` is fault injection for supervision tests: once set, the next job panics.
pub fn spawn_auth_thread(
    answer: impl Fn(ConnRef, std::net::IpAddr, AuthOutcome) -> bool + Send + Sync + 'static,
    on_death: impl Fn(String) + Send + Sync + 'static,
    fault: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<(Sender<AuthJob>, std::thread::JoinHandle<()>)> {
    let (tx, rx): (Sender<AuthJob>, Receiver<AuthJob>) = crossbeam_channel::bounded(AUTH_QUEUE);
    let (answer, on_death) = (std::sync::Arc::new(answer), std::sync::Arc::new(on_death));
    // One-time tokens are remembered across the pool, so a replay fails whichever thread
    // checks it (a lock among the auth threads only; workers never take it).
    let tokens = std::sync::Arc::new(std::sync::Mutex::new(UsedTokens::default()));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, AUTH_THREADS);
    let mut handles = Vec::new();
    for i in 0..threads {
        let (rx, answer, on_death, fault, tokens) = (rx.clone(), answer.clone(), on_death.clone(), fault.clone(), tokens.clone());
        handles.push(std::thread::Builder::new().name(format!("romp-auth{i}")).spawn(move || {
            let run = std::panic::AssertUnwindSafe(|| auth_loop(rx, &*answer, &fault, &tokens));
            if let Err(p) = std::panic::catch_unwind(run) {
                let text = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
                on_death(format!("the auth thread died: {}", text.unwrap_or_else(|| "a panic".into())));
            }
        })?);
    }
    // The handle the server joins: it waits for the whole pool.
    let h = std::thread::Builder::new().name("romp-auth".into()).spawn(move || {
        for h in handles {
            let _ = h.join();
        }
    })?;
    Ok((tx, h))
}

/// Threads checking slow credentials at most (fewer on fewer cores): a flood of PBKDF2 checks
/// then cannot take every core from the workers, and one slow check does not hold up the rest.
pub const AUTH_THREADS: usize = 2;

/// Slow checks one peer address may have pending on one worker; past it a CONNECT is refused
/// at once (ERROR `auth err`), so one source cannot fill the queue that everyone's logins share.
pub const MAX_PENDING_PER_PEER: u32 = 8;

/// An auth thread's loop: check each job, answer through `answer`, until the job senders are
/// gone or `answer` says the worker is.
fn auth_loop(
    rx: Receiver<AuthJob>,
    answer: &dyn Fn(ConnRef, std::net::IpAddr, AuthOutcome) -> bool,
    fault: &std::sync::atomic::AtomicBool,
    tokens: &std::sync::Mutex<UsedTokens>,
) {
    for job in rx {
        if fault.swap(false, std::sync::atomic::Ordering::Relaxed) {
            panic!("injected fault in the auth thread");
        }
        let ok = match &job.credential {
            Credential::Token { secret, timeout_ms } => {
                let mut t = tokens.lock().unwrap_or_else(|e| e.into_inner());
                t.check(&job.login, &job.passcode, secret, *timeout_ms, crate::broker::wall_ms())
            }
            c => verify(c, &job.passcode),
        };
        let outcome = if ok { AuthOutcome::Accepted { admin: job.admin } } else { AuthOutcome::Rejected };
        if !answer(job.conn, job.peer, outcome) {
            return;
        }
    }
}

/// Submit a job without blocking; `false` if the queue is full or the thread is gone.
pub fn submit(tx: &Sender<AuthJob>, job: AuthJob) -> bool {
    !matches!(tx.try_send(job), Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    // echo secret | sha256sum
    const SECRET_SHA: &str = "e5afd4f1d0b4b4a1b7e1b5d0d0ee1b0b9bdba2ad3d0cd67fc5b2e84bbb0f2c46";

    fn sha_line(name: &str, pass: &str, admin: bool) -> String {
        let mut d = Sha256::new();
        d.update(pass.as_bytes());
        d.update(b"\n");
        format!("{name}:{}{}", hex_encode(&d.finalize()), if admin { ":true" } else { "" })
    }

    #[test]
    fn old_romp_sha256_format() {
        let text = format!("# users\n{}\n\n{}  # trailing comment\n", sha_line("alice", "secret", true), sha_line("bob", "pw", false));
        let users = parse_passwd(&text, "passwd").unwrap();
        assert!(users["alice"].admin && !users["bob"].admin);
        let a = Authenticator { shared: None, users, secret: None, dummy: None };
        assert_eq!(a.check(Some("alice"), Some("secret")), Verdict::Accept { admin: true });
        assert_eq!(a.check(Some("alice"), Some("wrong")), Verdict::Reject);
        assert_eq!(a.check(Some("carol"), Some("secret")), Verdict::Reject);
        assert_eq!(a.check(None, None), Verdict::Reject);
        assert_eq!(SECRET_SHA.len(), 64);
    }

    #[test]
    fn pbkdf2_format_round_trip() {
        let line = passwd_line("dave", "s3cret:x", false).unwrap();
        let users = parse_passwd(&line, "p").unwrap();
        let cred = users["dave"].credential.clone();
        assert!(verify(&cred, "s3cret:x"));
        assert!(!verify(&cred, "s3cret"));
        let a = Authenticator { shared: None, users, secret: None, dummy: None };
        assert!(matches!(a.check(Some("dave"), Some("x")), Verdict::Deferred(_, false)));
    }

    /// An unknown login costs what a known PBKDF2 one does (the same iterations, on the auth
    /// threads), so user names cannot be enumerated by timing; and it never succeeds.
    #[test]
    fn unknown_logins_take_the_slow_path_of_the_known_ones() {
        let dir = std::env::temp_dir().join(format!("romp-auth-dummy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("passwd");
        std::fs::write(&file, format!("{}\n{}\n", passwd_line("dave", "pw", false).unwrap(), sha_line("alice", "secret", false))).unwrap();
        let a = Authenticator::new(None, None, Some(&file)).unwrap();
        let known = match a.check(Some("dave"), Some("wrong")) {
            Verdict::Deferred(Credential::Pbkdf2 { iterations, .. }, _) => iterations,
            v => panic!("{v:?}"),
        };
        match a.check(Some("nobody"), Some("pw")) {
            Verdict::Deferred(c @ Credential::Pbkdf2 { iterations, .. }, false) => {
                assert_eq!(iterations, known);
                for guess in ["", "pw", "secret", "\0"] {
                    assert!(!verify(&c, guess));
                }
            }
            v => panic!("an unknown login answered {v:?} at once"),
        }
        // Without PBKDF2 users every check is fast, unknown logins too.
        std::fs::write(&file, format!("{}\n", sha_line("alice", "secret", false))).unwrap();
        let a = Authenticator::new(None, None, Some(&file)).unwrap();
        assert_eq!(a.check(Some("nobody"), Some("x")), Verdict::Reject);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let e = parse_passwd("ok:zz\n", "etc/pw").unwrap_err().to_string();
        assert!(e.starts_with("etc/pw:1:"), "{e}");
        let e = parse_passwd(&format!("\n{}:maybe\n", sha_line("a", "b", false)), "pw").unwrap_err().to_string();
        assert!(e.starts_with("pw:2:"), "{e}");
    }

    #[test]
    fn open_and_shared() {
        assert_eq!(Authenticator::default().check(Some("guest"), Some("guest")), Verdict::Accept { admin: false });
        let a = Authenticator::new(Some("u"), Some("p:w"), None).unwrap();
        assert_eq!(a.check(Some("u"), Some("p:w")), Verdict::Accept { admin: true });
        assert_eq!(a.check(Some("u"), Some("p")), Verdict::Reject);
    }

    #[test]
    fn tokens_expire_and_are_single_use() {
        let secret = "s3";
        let now = 1_700_000_000_000;
        let login = format!("alice {} r1", now / 1000);
        let pass = token_passcode(&login, secret);
        let mut used = UsedTokens::default();
        assert!(!used.check(&login, "wrong", secret, 60_000, now));
        assert!(used.check(&login, &pass, secret, 60_000, now + 5));
        assert!(!used.check(&login, &pass, secret, 60_000, now + 10), "replayed");
        let old = format!("alice {} r2", now / 1000 - 120);
        assert!(!used.check(&old, &token_passcode(&old, secret), secret, 60_000, now), "expired");
        let future = format!("alice {} r3", now / 1000 + 120);
        assert!(!used.check(&future, &token_passcode(&future, secret), secret, 60_000, now), "from the future");
        let a = Authenticator::default().with_secret(Some(secret), 60_000);
        assert!(matches!(a.check(Some(&login), Some(&pass)), Verdict::Deferred(Credential::Token { .. }, false)));
        assert_eq!(a.check(Some("alice"), Some(&pass)), Verdict::Reject);
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
