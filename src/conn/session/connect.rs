//! CONNECT and STOMP: version and heart-beat negotiation, credentials (checked here or on the
//! auth thread), CONNECTED, and the heart-beat timers it arms (checklist sections D and E).

use super::*;

pub(super) fn connect(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx) -> Res {
    let Some(v) = Version::negotiate(f.header("accept-version")) else {
        return Err(Fatal {
            word: ErrorWord::Version,
            detail: format!("no common protocol version: this server speaks {}", version::SUPPORTED),
            receipt: None,
            versions: true,
        });
    };
    conn.version = v;
    conn.negotiated = f.header("accept-version").is_some();
    if v > Version::V1_0 {
        let hb = match f.header("heart-beat") {
            None => HeartBeat::default(),
            Some(s) => HeartBeat::parse(s)
                .ok_or_else(|| Fatal::new(ErrorWord::EcgErr, format!("heart-beat {s:?} is not two non-negative integers \"cx,cy\"")))?,
        };
        conn.beat.hb = negotiate_heart_beat(hb, ctx.env.cfg.heart_beat_min, ctx.env.cfg.heart_beat_max);
    }
    // Under tls_cert_login = "cn", a CONNECT without a login logs in as its verified client
    // certificate's common name, with no passcode.
    let certified = match (f.header("login"), ctx.env.cfg.tls_cert_login) {
        (None, crate::tls::CertLogin::Cn) => conn.io.peer_certificate().and_then(crate::tls::common_name),
        _ => None,
    };
    let login = f.header("login").or(certified.as_deref());
    conn.who.login = login.map(str::to_string);
    conn.who.client_id = match f.header("client-id") {
        None | Some("") => None,
        Some(c) if c.len() > MAX_SUBSCRIPTION_ID_LEN => {
            return Err(Fatal::new(ErrorWord::Syntax, format!("client-id is at most {MAX_SUBSCRIPTION_ID_LEN} bytes")))
        }
        Some(c) => Some(c.into()),
    };
    let verdict = match &certified {
        Some(name) => ctx.env.auth.check_certified(name),
        None => ctx.env.auth.check(login, f.header("passcode")),
    };
    match verdict {
        Verdict::Accept { admin } => {
            finish_connect(conn, ctx, admin);
            Ok(())
        }
        Verdict::Reject if certified.is_some() => Err(Fatal::new(ErrorWord::AuthErr, "the client certificate's name is not a known user")),
        Verdict::Reject => Err(Fatal::new(ErrorWord::AuthErr, "bad login or passcode")),
        Verdict::Deferred(credential, admin) => {
            let job = AuthJob {
                conn: conn.me,
                peer: conn.who.peer.ip(),
                credential,
                admin,
                login: login.unwrap_or("").to_string(),
                passcode: f.header("passcode").unwrap_or("").to_string(),
            };
            match ctx.submit_auth(job) {
                Ok(()) => {}
                Err(AuthBusy::PeerPending) => {
                    return Err(Fatal::new(ErrorWord::AuthErr, "too many logins pending from this address; try again"))
                }
                Err(AuthBusy::QueueFull) => return Err(Fatal::new(ErrorWord::AuthErr, "the authentication service is busy; try again")),
            }
            conn.phase = Phase::Authenticating;
            Ok(())
        }
    }
}

/// Credentials accepted: CONNECTED, then heart-beat timers.
pub fn finish_connect(conn: &mut Conn, ctx: &mut Ctx, admin: bool) {
    if conn.who.listener == ListenerKind::Admin && !admin {
        // The old romp let anyone in here.
        let f = Fatal::new(ErrorWord::AuthErr, "the admin port accepts admin users only (passwd \":true\" or the config login)");
        return fail(conn, ctx, f);
    }
    conn.who.admin = admin;
    conn.phase = Phase::Open;
    if conn.out.capacity() == 0 {
        conn.out = ctx.turn.pool.take();
    }
    let sid = conn.session_id();
    encoder::connected(
        &mut conn.out,
        conn.version,
        conn.negotiated,
        (conn.beat.hb.server_send_ms, conn.beat.hb.client_send_ms),
        &sid,
        &ctx.env.server_header,
    );
    mark_dirty(conn, ctx);
    let (slot, gen) = (conn.me.slot, conn.me.gen);
    if conn.beat.hb.server_send_ms > 0 {
        let at = ctx.time.now + Duration::from_millis(conn.beat.hb.server_send_ms as u64);
        ctx.time.timers.arm(Timer { at, slot, gen, kind: TimerKind::HeartBeatSend });
    }
    if conn.beat.hb.client_send_ms > 0 {
        let at = ctx.time.now + recv_grace(conn, ctx);
        ctx.time.timers.arm(Timer { at, slot, gen, kind: TimerKind::HeartBeatRecv });
    }
    log::debug!("{} {}: connected, STOMP {}, heart-beat {:?}", sid, conn.who.peer, conn.version, conn.beat.hb);
}

/// How long a heart-beating client may stay silent.
pub fn recv_grace(conn: &Conn, ctx: &Ctx) -> Duration {
    Duration::from_millis((conn.beat.hb.client_send_ms as f64 * ctx.env.cfg.heart_beat_grace) as u64)
}
