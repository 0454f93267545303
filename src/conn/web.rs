//! Connections on the web port: HTTP/1.1 GET (keep-alive) until an upgrade, then STOMP over
//! WebSocket. Runs on the connection's worker, on the same loop as STOMP over TCP.
//!
//! Input: raw socket bytes collect in `Web::raw`. In HTTP mode, request heads are parsed from it
//! (bounded by `max_http_head`); in WebSocket mode, frames are decoded from it in place and data
//! payloads are fed to the STOMP session as one byte stream (a STOMP frame may span messages;
//! a message may hold several frames). Output: the session writes STOMP bytes to `conn.out` as
//! for TCP; [`frame_output`] wraps them into one WebSocket message per flush in `wire`.
//!
//! # Invariants
//! - `raw` holds at most one partial request head or one partial WebSocket frame plus one read
//!   batch; a frame's size is checked from its header before its payload is buffered.
//! - After the close frame is queued nothing else is written.

use super::session::{self, Fatal};
use super::{mark_dirty, CloseReason, Conn, Ctx, Phase};
use crate::api::HttpContext;
use crate::bus::ToOwner;
use crate::http::{self, Parsed, Request, Response};
use crate::stomp::ErrorWord;
use crate::timer::{Timer, TimerKind};
use crate::ws::frame::{encode, encode_close, CloseCode, Decoder, Event, Opcode};
use crate::ws::handshake;
use std::collections::HashMap;
use std::time::Duration;

/// Extra WebSocket message room above `max_message_size`, for the STOMP headers around a body.
pub const WS_HEADROOM: usize = 64 * 1024;

/// Static files served on the web port, loaded once at start.
#[derive(Debug, Default)]
pub struct Site {
    files: HashMap<String, (&'static str, Vec<u8>)>,
}

/// Most bytes a `web_root` may hold.
pub const SITE_MAX_BYTES: usize = 32 << 20;

impl Site {
    /// The built-in console page.
    pub fn builtin() -> Site {
        let mut files = HashMap::new();
        for (name, bytes) in [
            ("/index.html", include_bytes!("../../web/index.html") as &[u8]),
            ("/console.js", include_bytes!("../../web/console.js")),
            ("/console.css", include_bytes!("../../web/console.css")),
            ("/stomp.umd.min.js", include_bytes!("../../web/stomp.umd.min.js")),
            ("/LICENSE-stompjs.txt", include_bytes!("../../web/LICENSE-stompjs.txt")),
        ] {
            files.insert(name.to_string(), (http::content_type(name), bytes.to_vec()));
        }
        Site { files }
    }

    /// Every regular file under `dir` (recursively), at most [`SITE_MAX_BYTES`] in total.
    pub fn load(dir: &std::path::Path) -> std::io::Result<Site> {
        let mut files = HashMap::new();
        let mut total = 0usize;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d)? {
                let e = e?;
                let ft = e.file_type()?;
                let p = e.path();
                if ft.is_dir() {
                    stack.push(p);
                } else if ft.is_file() {
                    let bytes = std::fs::read(&p)?;
                    total += bytes.len();
                    if total > SITE_MAX_BYTES {
                        return Err(std::io::Error::other(format!("{} holds more than {SITE_MAX_BYTES} bytes", dir.display())));
                    }
                    let rel = p.strip_prefix(dir).map_err(std::io::Error::other)?;
                    let name = format!("/{}", rel.to_string_lossy());
                    files.insert(name.clone(), (http::content_type(&name), bytes));
                }
            }
        }
        Ok(Site { files })
    }

    fn get(&self, path: &str) -> Option<&(&'static str, Vec<u8>)> {
        let path = if path.ends_with('/') { format!("{path}index.html") } else { path.to_string() };
        self.files.get(&path)
    }
}

/// HTTP or WebSocket.
#[derive(Debug)]
pub enum Mode {
    Http {
        /// A console page waiting for every worker's stats: (request, keep-alive, head-only,
        /// parts still due, parts so far).
        waiting: Option<Box<StatsWait>>,
    },
    Ws {
        decoder: Decoder,
        /// Encoded WebSocket frames not yet written.
        wire: Vec<u8>,
        close_queued: bool,
        close_code: CloseCode,
    },
}

#[derive(Debug)]
pub struct StatsWait {
    pub path: String,
    pub keep_alive: bool,
    pub head_only: bool,
    pub due: usize,
    pub parts: Vec<crate::metrics::WorkerSnapshot>,
}

/// Web-port state of a connection.
#[derive(Debug)]
pub struct Web {
    pub raw: Vec<u8>,
    pub mode: Mode,
}

impl Web {
    pub fn new() -> Web {
        Web { raw: Vec::new(), mode: Mode::Http { waiting: None } }
    }

    pub fn is_ws(&self) -> bool {
        matches!(self.mode, Mode::Ws { .. })
    }

    pub fn wire_len(&self) -> usize {
        match &self.mode {
            Mode::Ws { wire, .. } => wire.len(),
            Mode::Http { .. } => 0,
        }
    }
}

impl Default for Web {
    fn default() -> Self {
        Web::new()
    }
}

/// Is there buffered input that processing could make progress on?
pub fn has_buffered(conn: &mut Conn) -> bool {
    let Some(w) = conn.web.as_ref() else { return false };
    match &w.mode {
        Mode::Http { waiting } => waiting.is_none() && !w.raw.is_empty(),
        Mode::Ws { .. } => !w.raw.is_empty() || conn.input_ready(),
    }
}

/// Pipelined HTTP input held while a request is being answered, at most this many request
/// heads' worth (then 431 and close).
const HTTP_PIPELINE_HEADS: usize = 4;

/// New bytes from the socket.
pub fn ingest(conn: &mut Conn, bytes: &[u8], ctx: &mut Ctx) {
    if let Some(w) = conn.web.as_mut() {
        w.raw.extend_from_slice(bytes);
        if !w.is_ws() && w.raw.len() > HTTP_PIPELINE_HEADS * ctx.env.cfg.max_http_head {
            w.raw = Vec::new();
            w.mode = Mode::Http { waiting: None };
            return respond(conn, ctx, &Response::text(431, "too much pipelined input"), false, false);
        }
    }
    pump(conn, ctx);
}

/// Process buffered input as far as possible.
pub fn pump(conn: &mut Conn, ctx: &mut Ctx) {
    loop {
        if conn.is_closing() {
            return;
        }
        let Some(w) = conn.web.as_mut() else { return };
        match w.mode {
            Mode::Http { ref waiting } => {
                if waiting.is_some() || w.raw.is_empty() {
                    return;
                }
                match http::parse_request(&w.raw, ctx.env.cfg.max_http_head) {
                    Ok(Parsed::Partial) => return,
                    Ok(Parsed::Complete(req, used)) => {
                        w.raw.drain(..used);
                        on_request(conn, req, ctx);
                    }
                    Err(e) => {
                        respond(conn, ctx, &Response::text(e.status(), &e.to_string()), false, false);
                        return;
                    }
                }
            }
            Mode::Ws { .. } => {
                if !pump_ws(conn, ctx) {
                    return;
                }
            }
        }
    }
}

/// Decode WebSocket frames and feed STOMP. Returns true if the mode changed and the caller
/// should loop; false when it cannot progress further now.
fn pump_ws(conn: &mut Conn, ctx: &mut Ctx) -> bool {
    // STOMP bytes left over from an earlier message come first.
    if stomp_can_run(conn, ctx) && conn.input_ready() {
        let buf = std::mem::take(&mut conn.inbuf);
        let used = session::process_input(conn, &buf, ctx);
        keep_tail(conn, buf, used, ctx);
    }
    loop {
        if conn.is_closing() || !stomp_can_run(conn, ctx) {
            return false;
        }
        let Some(w) = conn.web.as_mut() else { return false };
        let Mode::Ws { decoder, wire, .. } = &mut w.mode else { return false };
        let mut raw = std::mem::take(&mut w.raw);
        let step = decoder.decode(&mut raw);
        match step {
            Ok(None) => {
                w.raw = raw;
                return false;
            }
            Err(e) => {
                w.raw = raw;
                log::debug!("{} {}: {e}", conn.session_id(), conn.who.peer);
                close_ws(conn, ctx, e.code(), &e.to_string());
                return false;
            }
            Ok(Some((ev, used))) => {
                match ev {
                    Event::Data(payload) => {
                        conn.beat.last_read = ctx.time.now;
                        if conn.inbuf.is_empty() {
                            let n = session::process_input(conn, payload, ctx);
                            if !conn.is_closing() && n < payload.len() {
                                let mut b = ctx.turn.pool.take();
                                b.extend_from_slice(&payload[n..]);
                                conn.inbuf = b;
                            }
                        } else {
                            conn.inbuf.extend_from_slice(payload);
                            if conn.input_ready() {
                                let buf = std::mem::take(&mut conn.inbuf);
                                let n = session::process_input(conn, &buf, ctx);
                                keep_tail(conn, buf, n, ctx);
                            }
                        }
                    }
                    Event::Ping(p) => {
                        encode(wire, Opcode::Pong, p);
                        mark_dirty(conn, ctx);
                    }
                    Event::Pong => {}
                    Event::Close(code) => {
                        log::debug!("{} {}: WebSocket close {code:?}", conn.session_id(), conn.who.peer);
                        raw.drain(..used);
                        if let Some(w) = conn.web.as_mut() {
                            w.raw = raw;
                        }
                        close_ws(conn, ctx, CloseCode::Normal, "");
                        if conn.close_reason.is_none() || conn.close_reason == Some(CloseReason::WebSocket) {
                            conn.close_reason = Some(CloseReason::PeerClosed);
                        }
                        return false;
                    }
                }
                raw.drain(..used);
                if let Some(w) = conn.web.as_mut() {
                    w.raw = raw;
                }
            }
        }
    }
}

fn stomp_can_run(conn: &Conn, ctx: &Ctx) -> bool {
    !matches!(conn.phase, Phase::Authenticating | Phase::Closing | Phase::Released) && conn.held.is_none() && !ctx.outbox.reads_paused()
}

fn keep_tail(conn: &mut Conn, mut buf: Vec<u8>, used: usize, ctx: &mut Ctx) {
    if conn.is_closing() {
        ctx.turn.pool.give(buf);
        return;
    }
    buf.drain(..used);
    if buf.is_empty() {
        ctx.turn.pool.give(buf);
    } else {
        conn.inbuf = buf;
    }
}

/// Queue a close frame and start closing (the STOMP session's ERROR, if any, goes first).
pub fn close_ws(conn: &mut Conn, ctx: &mut Ctx, code: CloseCode, _why: &str) {
    if let Some(Web { mode: Mode::Ws { close_code, .. }, .. }) = conn.web.as_deref_mut() {
        *close_code = code;
    }
    if !conn.is_closing() {
        conn.begin_close(if code == CloseCode::Normal { CloseReason::PeerClosed } else { CloseReason::WebSocket });
    }
    mark_dirty(conn, ctx);
}

/// Before writing: wrap pending STOMP output into a WebSocket message, and queue the close frame
/// once the connection is closing and everything before it is framed.
pub fn frame_output(conn: &mut Conn, text: bool) {
    let closing = conn.is_closing();
    let Some(Web { mode: Mode::Ws { wire, close_queued, close_code, .. }, .. }) = conn.web.as_deref_mut() else { return };
    if *close_queued {
        conn.out.clear();
        return;
    }
    if !conn.out.is_empty() {
        let op = if text && std::str::from_utf8(&conn.out).is_ok() { Opcode::Text } else { Opcode::Binary };
        encode(wire, op, &conn.out);
        conn.out.clear();
    }
    if closing {
        encode_close(wire, *close_code, "");
        *close_queued = true;
    }
}

fn respond(conn: &mut Conn, ctx: &mut Ctx, resp: &Response, keep_alive: bool, head_only: bool) {
    if conn.out.capacity() == 0 {
        conn.out = ctx.turn.pool.take();
    }
    resp.write(&mut conn.out, keep_alive, head_only);
    mark_dirty(conn, ctx);
    log::debug!("{} {}: HTTP {}", conn.session_id(), conn.who.peer, resp.status);
    if !keep_alive {
        conn.begin_close(CloseReason::HttpDone);
    }
}

fn on_request(conn: &mut Conn, req: Request, ctx: &mut Ctx) {
    let head_only = req.method == "HEAD";
    let keep_alive = req.keep_alive();
    if req.method != "GET" && !head_only {
        let r = Response::text(405, "only GET and HEAD are served here").with_header("Allow", "GET, HEAD");
        return respond(conn, ctx, &r, false, false);
    }
    if req.has_body() {
        let big = req.header("content-length").and_then(|v| v.trim().parse::<usize>().ok()).is_some_and(|n| n > ctx.env.cfg.max_http_head);
        let r = if big { Response::text(413, "request body too large") } else { Response::text(400, "a GET request has no body") };
        return respond(conn, ctx, &r, false, false);
    }
    let path = req.path().to_string();
    let admin = conn.who.listener == super::ListenerKind::Admin;
    if handshake::is_upgrade(&req) {
        if admin || !ctx.env.cfg.websockets || !ctx.env.cfg.websocket_paths.contains(&path) {
            return respond(conn, ctx, &Response::text(404, "no WebSocket endpoint here"), false, false);
        }
        return match handshake::accept(&req, &ctx.env.cfg.websockets_origin) {
            Ok(acc) => upgrade(conn, ctx, acc),
            Err(e) => {
                respond(conn, ctx, &Response::text(e.status(), &e.to_string()).with_header("Sec-WebSocket-Version", "13"), false, false)
            }
        };
    }
    match path.as_str() {
        "/romp/health_check" | "/health" | "/health_check" => match ctx.env.shared.failure.get() {
            // The memory alarm is flow control, not a failure: the broker still works (consumers
            // drain, publishers resume below the low watermark), so a restart would only lose
            // what it holds. It is shown, and the status stays 200.
            None => {
                let mem = &ctx.env.shared.memory;
                let body = serde_json::json!({
                    "status": "ok",
                    "server": ctx.env.server_header,
                    "memory_alarm": mem.alarm(),
                    "memory_used_bytes": mem.used(),
                    "memory_limit_bytes": mem.limit(),
                })
                .to_string()
                    + "\n";
                respond(conn, ctx, &Response::json(body), keep_alive, head_only);
            }
            Some(reason) => {
                let body = serde_json::json!({ "status": "failed", "server": ctx.env.server_header, "reason": reason }).to_string();
                let mut r = Response::json(body + "\n");
                r.status = 503;
                respond(conn, ctx, &r, false, head_only);
            }
        },
        "/romp/info" | "/romp/destinations" | "/romp/connections" | "/metrics"
            if admin || (path == "/metrics" && ctx.env.cfg.web_metrics) || (ctx.env.cfg.enable_console && path != "/metrics") =>
        {
            // Credentials first: a request that may not see the pages costs no worker anything.
            match gate(&req, &path, conn, ctx) {
                Gate::Open => {}
                Gate::Refused(resp) => return respond(conn, ctx, &resp, keep_alive, head_only),
                Gate::Verify(job) => {
                    let busy = match ctx.submit_auth(*job) {
                        Ok(()) => None,
                        Err(crate::conn::ctx::AuthBusy::PeerPending) => Some((429, "too many logins pending from this address")),
                        Err(crate::conn::ctx::AuthBusy::QueueFull) => Some((503, "the authentication service is busy; try again")),
                    };
                    if let Some((status, why)) = busy {
                        return respond(conn, ctx, &Response::text(status, why), false, head_only);
                    }
                    conn.phase = super::Phase::Authenticating;
                    if let Some(web) = conn.web.as_mut() {
                        web.mode =
                            Mode::Http { waiting: Some(Box::new(StatsWait { path, keep_alive, head_only, due: 0, parts: Vec::new() })) };
                    }
                    return;
                }
            }
            stats_round(conn, path, keep_alive, head_only, ctx);
        }
        _ => {
            let hctx = HttpContext { path: &path, target: &req.target, headers: &req.headers, peer: conn.who.peer };
            let handlers = ctx.env.handlers.clone();
            for (prefix, h) in handlers.http.iter().filter(|(p, _)| path.starts_with(p.as_str())) {
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.get(&hctx))) {
                    Ok(Some(resp)) => return respond(conn, ctx, &resp, keep_alive, head_only),
                    Ok(None) => {}
                    Err(_) => {
                        log::error!("{} {}: HTTP handler for {prefix:?} panicked on {path}", conn.session_id(), conn.who.peer);
                        return respond(conn, ctx, &Response::text(500, "handler failed"), false, head_only);
                    }
                }
            }
            let resp = match http::safe_path(&path).and_then(|p| ctx.env.site.get(&p).map(|(ct, b)| Response::new(200, ct, b.clone()))) {
                Some(r) => r,
                None => Response::text(404, "not found"),
            };
            respond(conn, ctx, &resp, keep_alive, head_only);
        }
    }
}

fn upgrade(conn: &mut Conn, ctx: &mut Ctx, acc: handshake::Accepted) {
    let max = ctx.env.cfg.max_message_size + WS_HEADROOM;
    let Some(w) = conn.web.as_mut() else { return };
    let mut wire = Vec::with_capacity(acc.response.len());
    wire.extend_from_slice(&acc.response);
    w.mode = Mode::Ws { decoder: Decoder::new(max), wire, close_queued: false, close_code: CloseCode::Normal };
    mark_dirty(conn, ctx);
    log::debug!("{} {}: WebSocket upgrade, subprotocol {:?}", conn.session_id(), conn.who.peer, acc.subprotocol);
    // A fresh CONNECT deadline for the STOMP session that starts now.
    let at = ctx.time.now + Duration::from_millis(ctx.env.cfg.connect_timeout);
    ctx.time.timers.arm(Timer { at, slot: conn.me.slot, gen: conn.me.gen, kind: TimerKind::Connect });
    conn.phase = Phase::Handshake;
}

/// One worker's stats arrived for a waiting console request.
/// The console page or `/metrics` for `path`, rendered from every worker's snapshot.
fn stats_response(path: &str, parts: &[crate::metrics::WorkerSnapshot], ctx: &Ctx) -> Response {
    let env = ctx.env.metrics_env();
    let body = crate::metrics::render(path, parts, env);
    if path == "/metrics" {
        Response::new(200, "text/plain; version=0.0.4", body)
    } else {
        Response::json(body)
    }
}

/// How long a gathered snapshot answers console and `/metrics` requests on its worker.
pub const STATS_FRESH: std::time::Duration = std::time::Duration::from_millis(500);

pub fn stats_part(conn: &mut Conn, part: crate::metrics::WorkerSnapshot, ctx: &mut Ctx) {
    let Some(w) = conn.web.as_mut() else { return };
    let Mode::Http { waiting: Some(wait) } = &mut w.mode else { return };
    wait.parts.push(part);
    wait.due -= 1;
    if wait.due > 0 {
        return;
    }
    let Mode::Http { waiting } = &mut w.mode else { return };
    let Some(wait) = waiting.take() else { return };
    let resp = stats_response(&wait.path, &wait.parts, ctx);
    ctx.stats_cache = Some((ctx.time.now, wait.parts));
    respond(conn, ctx, &resp, wait.keep_alive, wait.head_only);
    // Requests pipelined behind this one.
    super::want_read(conn, ctx);
}

/// A web connection whose CONNECT (or request) deadline passed.
pub fn timed_out(conn: &mut Conn, ctx: &mut Ctx) {
    match conn.web.as_ref().map(|w| w.is_ws()) {
        Some(false) => {
            conn.begin_close(CloseReason::ConnectTimeout);
            mark_dirty(conn, ctx);
        }
        _ => {
            let ms = ctx.env.cfg.connect_timeout;
            session::fail(conn, ctx, Fatal::new(ErrorWord::General, format!("no CONNECT within connect_timeout ({ms} ms)")));
            conn.close_reason = Some(CloseReason::ConnectTimeout);
        }
    }
}

/// Answer a stats page: from this worker's fresh snapshot, or by asking every worker.
fn stats_round(conn: &mut Conn, path: String, keep_alive: bool, head_only: bool, ctx: &mut Ctx) {
    // A snapshot this worker gathered less than STATS_FRESH ago answers at once (rendered
    // from the cache in place, not copied): no request rate can make every worker
    // snapshot itself more often than that.
    let fresh = ctx.stats_cache.as_ref().filter(|(at, _)| ctx.time.now.duration_since(*at) < STATS_FRESH);
    if let Some(resp) = fresh.map(|(_, parts)| stats_response(&path, parts, ctx)) {
        return respond(conn, ctx, &resp, keep_alive, head_only);
    }
    // Ask every worker (including this one) for its numbers; answer when all replied.
    let n = ctx.outbox.workers();
    for w in 0..n {
        ctx.outbox.to_owner(w, ToOwner::Stats { from: crate::broker::StatsAsker::Conn(conn.me) });
    }
    if let Some(web) = conn.web.as_mut() {
        web.mode = Mode::Http { waiting: Some(Box::new(StatsWait { path, keep_alive, head_only, due: n, parts: Vec::new() })) };
    }
}

/// What the admin plane's rules say about a request for a stats page.
enum Gate {
    Open,
    Refused(Response),
    /// Credentials the auth threads must check (a PBKDF2 passcode).
    Verify(Box<crate::auth::AuthJob>),
}

fn unauthorized(why: &str) -> Response {
    Response::text(401, why).with_header("WWW-Authenticate", "Basic realm=\"romp\", charset=\"UTF-8\"")
}

/// The stats pages need an admin login (HTTP Basic), or the `metrics_token` bearer for
/// `/metrics`, unless `console_public` opens them or there is nothing to log in with (a broker
/// without users and without a token).
fn gate(req: &crate::http::Request, path: &str, conn: &Conn, ctx: &Ctx) -> Gate {
    let cfg = &ctx.env.cfg;
    let auth = &ctx.env.auth;
    if cfg.console_public || (auth.is_open() && cfg.metrics_token.is_none()) {
        return Gate::Open;
    }
    let Some(value) = req.header("authorization") else {
        return Gate::Refused(unauthorized("credentials needed: an admin login (HTTP Basic) or the metrics token"));
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        let ok =
            path == "/metrics" && cfg.metrics_token.as_deref().is_some_and(|t| crate::auth::ct_eq(t.as_bytes(), rest.trim().as_bytes()));
        return if ok { Gate::Open } else { Gate::Refused(unauthorized("bad token (metrics_token opens /metrics only)")) };
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Gate::Refused(unauthorized("unsupported authorization scheme"));
    }
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok().and_then(|b| String::from_utf8(b).ok());
    let Some((login, passcode)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Gate::Refused(unauthorized("malformed Basic credentials"));
    };
    match auth.check(Some(login), Some(passcode)) {
        crate::auth::Verdict::Accept { admin: true } => Gate::Open,
        crate::auth::Verdict::Accept { admin: false } => Gate::Refused(Response::text(403, "the stats pages are for admin users")),
        crate::auth::Verdict::Reject => Gate::Refused(unauthorized("bad login or passcode")),
        crate::auth::Verdict::Deferred(credential, admin) => Gate::Verify(Box::new(crate::auth::AuthJob {
            conn: conn.me,
            peer: conn.who.peer.ip(),
            credential,
            admin,
            login: login.to_string(),
            passcode: passcode.to_string(),
        })),
    }
}

/// The auth thread's answer for a stats page's Basic credentials.
pub fn auth_done(conn: &mut Conn, accepted: bool, admin: bool, ctx: &mut Ctx) {
    conn.phase = super::Phase::Handshake;
    let waiting = match conn.web.as_mut().map(|w| &mut w.mode) {
        Some(Mode::Http { waiting }) => waiting.take(),
        _ => None,
    };
    let Some(w) = waiting else { return };
    if !accepted {
        respond(conn, ctx, &unauthorized("bad login or passcode"), w.keep_alive, w.head_only);
    } else if !admin {
        respond(conn, ctx, &Response::text(403, "the stats pages are for admin users"), w.keep_alive, w.head_only);
    } else {
        stats_round(conn, w.path, w.keep_alive, w.head_only, ctx);
    }
    super::want_read(conn, ctx);
}
