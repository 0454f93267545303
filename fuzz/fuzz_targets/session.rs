//! A whole broker session driven sans-io: two connections on one worker, arbitrary bytes as
//! their input, the shard and deliveries run to completion after every chunk. Checks: nothing
//! panics; everything the broker would write parses as well-formed server frames; an ERROR is
//! the last frame a connection gets.
#![no_main]
use libfuzzer_sys::fuzz_target;
use romp::api::Handlers;
use romp::auth::Authenticator;
use romp::broker::shard::Shard;
use romp::broker::ConnRef;
use romp::bus::{self, Outbox};
use romp::conn::web::Site;
use romp::conn::{deliver, session, Conn, Ctx};
use romp::stomp::{parse, skip_eols, Command, Limits, Parsed};
use romp::Config;
use std::sync::Arc;

/// Loopback sockets and a waker made once per process; each run gets duplicated descriptors
/// (the session never reads or writes them).
struct Fixed {
    server_ends: Vec<std::net::TcpStream>,
    _clients: Vec<std::net::TcpStream>,
    _poll: mio::Poll,
    waker: Arc<mio::Waker>,
}

fn fixed() -> &'static Fixed {
    static F: std::sync::OnceLock<Fixed> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut server_ends = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..2 {
            clients.push(std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap());
            let (s, _) = l.accept().unwrap();
            s.set_nonblocking(true).unwrap();
            server_ends.push(s);
        }
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(usize::MAX)).unwrap());
        Fixed { server_ends, _clients: clients, _poll: poll, waker }
    })
}

/// Check that `out` is a sequence of well-formed server frames; returns whether it held an ERROR
/// (which must be the last frame).
fn check_output(out: &[u8], conn: &Conn) -> bool {
    let limits = Limits { max_headers: 10_000, max_header_len: 1 << 20, max_body: 1 << 24 };
    let mut pos = 0;
    let mut error = false;
    while pos < out.len() {
        pos += skip_eols(&out[pos..]);
        if pos >= out.len() {
            break;
        }
        assert!(!error, "a frame after ERROR");
        match parse(&out[pos..], conn.version, &limits) {
            Ok(Parsed::Frame(f, used)) => {
                assert!(matches!(f.command, Command::Connected | Command::Message | Command::Receipt | Command::Error), "{:?}", f.command);
                if f.command == Command::Error {
                    error = true;
                }
                if f.command == Command::Message {
                    assert!(f.header("destination").is_some() && f.header("message-id").is_some() && f.header("subscription").is_some());
                }
                pos += used;
            }
            other => panic!("the broker wrote a malformed or partial frame: {other:?} in {:?}", String::from_utf8_lossy(&out[pos..])),
        }
    }
    error
}

fuzz_target!(|data: &[u8]| {
    let fx = fixed();
    let (peer, _mailbox) = bus::channel(64, fx.waker.clone());
    let cfg = Config {
        max_headers: 12,
        max_header_len: 200,
        max_message_size: 2048,
        max_pending_bytes: 2048 + 65536,
        max_subs: 4,
        max_transactions: 2,
        max_tx_frames: 8,
        max_messages: 16,
        prefetch: 3,
        ..Config::default()
    };
    let cfg = Arc::new(cfg);
    let (auth_tx, _auth_rx) = crossbeam_channel::bounded(4);
    let mut ctx = Ctx::new(
        0,
        cfg.clone(),
        Outbox::new(0, vec![peer], 64),
        Arc::new(Authenticator::default()),
        auth_tx,
        Arc::new(Handlers::default()),
        Arc::new(Site::default()),
    );
    let mut shard = Shard::new(&cfg, 1);
    let mut conns = slab::Slab::new();
    for i in 0..2 {
        let s = mio::net::TcpStream::from_std(fx.server_ends[i].try_clone().unwrap());
        let e = conns.vacant_entry();
        let slot = e.key() as u32;
        let me = ConnRef { worker: 0, slot, gen: slot + 1 };
        e.insert(Conn::new(s, me, "127.0.0.1:1".parse().unwrap(), ctx.now));
    }
    let mut pending: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut errored = [false, false];
    // Most inputs start connected, so the fuzzer spends its time past the handshake.
    let mut data = data;
    if let Some((&first, rest)) = data.split_first() {
        if first & 1 == 0 {
            for p in pending.iter_mut() {
                p.extend_from_slice(b"CONNECT\naccept-version:1.0,1.1,1.2\n\n\0");
            }
        }
        data = rest;
    }
    let mut chunks = data.chunks(23).peekable();
    while chunks.peek().is_some() || pending.iter().any(|p| !p.is_empty()) {
        for i in 0..2 {
            if let Some(c) = chunks.next() {
                pending[i].extend_from_slice(c);
            }
            let conn = &mut conns[i];
            if !conn.is_closing() && !pending[i].is_empty() {
                let buf = std::mem::take(&mut pending[i]);
                let used = session::process_input(conn, &buf, &mut ctx);
                assert!(used <= buf.len());
                if !conn.is_closing() {
                    pending[i] = buf[used..].to_vec();
                }
            } else {
                pending[i].clear();
            }
            if conn.is_closing() && !conn.session_torn_down() {
                session::teardown(conn, &mut ctx);
                conn.mark_torn_down();
            }
            loop {
                let mut did = false;
                while let Some(m) = ctx.outbox.local_data.pop_front() {
                    shard.handle(m, &mut ctx.outbox);
                    did = true;
                }
                while let Some(m) = ctx.outbox.local_ctrl.pop_front() {
                    deliver::handle(m, &mut conns, &mut ctx);
                    did = true;
                }
                if !ctx.credits.is_empty() {
                    ctx.flush_credits();
                    did = true;
                }
                if !did {
                    break;
                }
            }
            // "Write" everything: check it, then drop it.
            for j in 0..2 {
                let c = &mut conns[j];
                if c.out.is_empty() {
                    continue;
                }
                assert!(!errored[j], "output after ERROR");
                errored[j] |= check_output(&c.out, c);
                c.out.clear();
            }
            ctx.dirty.clear();
            ctx.read_list.clear();
        }
        if chunks.peek().is_none() {
            // Input is over: anything still pending is an incomplete frame.
            pending = [Vec::new(), Vec::new()];
        }
    }
});
