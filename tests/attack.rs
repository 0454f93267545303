//! Hostile clients against a broker *process*, so its memory can be read from /proc: streamed
//! oversized input, stuck and slow clients, floods, file-descriptor exhaustion. Each case checks
//! that the attacker gets ERROR and a close (or a clean close), that an innocent client keeps
//! working, and that the broker's RSS stays within a small multiple of the relevant limit.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_romp");
const MIB: u64 = 1 << 20;

struct Proc {
    child: Child,
    addr: SocketAddr,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Proc {
    /// Start the broker with extra TOML config lines; optionally with a low fd limit.
    fn start(toml: &str, nofile: Option<u64>) -> Proc {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("romp-attack-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("romp.toml");
        std::fs::write(
            &conf,
            format!(
                "ports = [{port}]\nweb_port = 0\n{}workers = 2\npin_workers = false\nlog_level = \"warn\"\ndata_dir = \"\"\n{toml}",
                if toml.contains("admin_port") { "" } else { "admin_port = 0\n" }
            ),
        )
        .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(&conf).stdout(Stdio::null()).stderr(Stdio::piped());
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl and setrlimit are async-signal-safe; nothing else runs between fork and
        // exec. Transparent huge pages are turned off for the broker so that RSS moves in 4 KiB
        // pages: with them, touching one fresh allocator page can add 2 MiB at once, which
        // measures the kernel's granularity, not the broker's buffering.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
                if let Some(n) = nofile {
                    let r = libc::rlimit { rlim_cur: n, rlim_max: n };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let t = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(t.elapsed() < WAIT, "broker did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Proc { child, addr }
    }

    fn status_field(&self, name: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// Resident set size in bytes.
    fn rss(&self) -> u64 {
        self.status_field("VmRSS:") * 1024
    }

    /// User + system CPU time consumed so far.
    fn cpu(&self) -> Duration {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after = &s[s.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split(' ').collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 1000 / 100)
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map(|d| d.count()).unwrap_or(0)
    }

    fn client(&self) -> Client {
        let mut c = Client::raw(self.addr);
        c.connect("1.2");
        c
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let t = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An innocent client: subscribed before the attack, checked after it.
struct Bystander {
    sub: Client,
    pubc: Client,
}

impl Bystander {
    fn new(p: &Proc) -> Bystander {
        let mut sub = p.client();
        sub.subscribe_sync("0", "/queue/innocent", "client-individual");
        let mut pubc = p.client();
        pubc.with_receipt("SEND", &[("destination", "/queue/innocent")], b"before", "b");
        assert_eq!(sub.expect("MESSAGE").text(), "before");
        Bystander { sub, pubc }
    }

    fn check(&mut self) {
        self.pubc.with_receipt("SEND", &[("destination", "/queue/innocent")], b"after", "a");
        let m = self.sub.expect("MESSAGE");
        assert_eq!(m.text(), "after");
        self.sub.with_receipt("ACK", &[("id", m.h("ack"))], b"", "ack");
    }
}

/// Stream `chunk` repeatedly (up to `total` bytes) after `prefix`; the broker must answer with
/// ERROR `word` and close long before the end. Returns the RSS growth seen.
fn stream_attack(p: &Proc, prefix: &[u8], chunk: &[u8], total: usize, word: &str) -> u64 {
    let before = p.rss();
    let mut peak = before;
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.write_all(b"CONNECT\naccept-version:1.2\n\n\0").unwrap();
    s.write_all(prefix).unwrap();
    let mut sent = 0;
    while sent < total {
        if s.write_all(chunk).is_err() {
            break;
        }
        sent += chunk.len();
        if sent % (256 * 1024) < chunk.len() {
            peak = peak.max(p.rss());
        }
    }
    let mut c =
        Client { sock: s, buf: Vec::new(), pos: 0, version: romp::stomp::Version::V1_2, eols: 0, stash: Default::default(), ws: None };
    c.expect("CONNECTED");
    let e = c.expect("ERROR");
    assert_eq!(e.h("message"), word, "{}", e.text());
    peak.max(p.rss()).saturating_sub(before)
}

#[test]
fn streamed_oversized_input_is_cut_off_with_bounded_memory() {
    let p = Proc::start("max_header_len = 4096\nmax_headers = 64\nmax_message_size = 65536\nmax_pending_bytes = 131072\n", None);
    let mut by = Bystander::new(&p);
    let cases: Vec<(&str, Vec<u8>, Vec<u8>, &str)> = vec![
        ("endless header line", b"SEND\ndestination:/queue/x\nk:".to_vec(), vec![b'v'; 8192], "hdr flup"),
        ("thousands of headers", b"SEND\ndestination:/queue/x\n".to_vec(), b"h:v\n".repeat(2048), "hdr flup"),
        ("huge header value", b"SUBSCRIBE\nid:".to_vec(), vec![b'i'; 8192], "hdr flup"),
        ("body without NUL", b"SEND\ndestination:/queue/x\n\n".to_vec(), vec![b'b'; 8192], "msg flup"),
        ("huge content-length", b"SEND\ndestination:/queue/x\ncontent-length:99999999999\n\n".to_vec(), vec![b'b'; 8192], "msg flup"),
    ];
    for (name, prefix, chunk, word) in cases {
        let growth = stream_attack(&p, &prefix, &chunk, 64 * MIB as usize, word);
        // The broker never buffers more than one bounded frame per connection; allow for the
        // allocator and read buffers: 4 MiB is ~60x the largest limit involved.
        eprintln!("observed: {name}: broker RSS grew by {} KiB while 64 MiB was streamed", growth / 1024);
        assert!(growth < 4 * MIB, "{name}: RSS grew by {growth} bytes");
        by.check();
    }
}

#[test]
fn malformed_frames_get_errors_and_bystanders_carry_on() {
    let p = Proc::start("", None);
    let mut by = Bystander::new(&p);
    let cases: Vec<(&str, &[u8], &str)> = vec![
        ("frame before CONNECT", b"SEND\ndestination:/queue/x\n\nx\0", "syntax"),
        ("negative content-length", b"CONNECT\n\n\0SEND\ndestination:/q\ncontent-length:-1\n\n\0", "len not +int"),
        ("non-numeric content-length", b"CONNECT\n\n\0SEND\ndestination:/q\ncontent-length:ten\n\n\0", "len not +int"),
        ("lying content-length", b"CONNECT\n\n\0SEND\ndestination:/q\ncontent-length:2\n\nabcdef\0", "body err"),
        ("undefined escape", b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/q\nk:\\q\n\n\0", "syntax"),
        ("NUL in a header", b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/q\nk:a\0b\n\n\0", "syntax"),
        ("invalid UTF-8", b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:/q\nk:\xc3\x28\n\n\0", "syntax"),
        ("empty destination", b"CONNECT\naccept-version:1.2\n\n\0SEND\ndestination:\n\nx\0", "syntax"),
        ("empty subscription id", b"CONNECT\naccept-version:1.2\n\n\0SUBSCRIBE\nid:\ndestination:/q\n\n\0", "syntax"),
        ("body on SUBSCRIBE", b"CONNECT\naccept-version:1.2\n\n\0SUBSCRIBE\nid:1\ndestination:/q\n\nbody\0", "syntax"),
        ("second CONNECT", b"CONNECT\n\n\0CONNECT\n\n\0", "syntax"),
        ("garbage", b"\x00\x01\x02\xff\xfe\n\n\x00", "syntax"),
        ("HTTP request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "syntax"),
        ("TLS ClientHello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00\x01\x02\x03\n", "syntax"),
    ];
    for (name, bytes, word) in cases {
        let mut c = Client::raw(p.addr);
        c.send_raw(bytes);
        loop {
            let g = c.recv();
            if g.command == "CONNECTED" {
                continue;
            }
            assert_eq!((g.command.as_str(), g.h("message")), ("ERROR", word), "{name}");
            break;
        }
        c.expect_closed();
        by.check();
    }
    // An enormous destination is a header-line limit.
    let mut c = p.client();
    let d = format!("/queue/{}", "d".repeat(5000));
    c.send_frame("SEND", &[("destination", &d)], b"x");
    c.expect_error("hdr flup");
    by.check();
}

#[test]
fn slowloris_connect_is_closed_by_the_timeout() {
    let p = Proc::start("connect_timeout = 1000\n", None);
    let mut by = Bystander::new(&p);
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    // One byte every 100 ms, checking for the broker's answer in between.
    for &b in b"CONNECT\naccept-version:1.2\nhost:slow\nlogin:a-very-slow-client\n\n\0".iter() {
        let _ = s.write_all(&[b]);
        let mut tmp = [0u8; 512];
        match s.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&tmp[..n]),
            Err(_) => {}
        }
        if !got.is_empty() {
            break;
        }
    }
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&got);
    eprintln!("observed: slowloris got ERROR after {took:?} (connect_timeout 1 s)");
    assert!(text.starts_with("ERROR\n"), "{text}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(2), "{took:?}");
    by.check();
}

#[test]
fn thousands_of_idle_sockets_do_not_stop_new_clients() {
    raise_nofile();
    let p = Proc::start("connect_timeout = 60000\nmax_connections = 20000\n", None);
    let idle: Vec<TcpStream> = (0..3000).map(|_| TcpStream::connect(p.addr).unwrap()).collect();
    let mut by = Bystander::new(&p);
    by.check();
    assert!(p.fds() > 3000, "the idle sockets are open in the broker ({} fds)", p.fds());
    drop(idle);
    let t = Instant::now();
    while p.fds() > 200 && t.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(p.fds() < 200, "fds not released: {}", p.fds());
}

fn raise_nofile() {
    // SAFETY: plain getrlimit/setrlimit on this process.
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max.min(65536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
}

#[test]
fn never_reading_subscriber_of_200_mb_is_bounded() {
    for policy in ["disconnect", "drop"] {
        let p = Proc::start(&format!("max_pending_bytes = 4194304\nslow_consumer = \"{policy}\"\n"), None);
        let mut by = Bystander::new(&p);
        let mut slow = p.client();
        slow.subscribe_sync("s", "/topic/firehose", "auto");
        let base = p.rss();
        let mut peak = base;
        let mut pubc = p.client();
        let body = vec![b'f'; 64 * 1024];
        for i in 0..3200 {
            // 3200 x 64 KiB = 200 MiB
            pubc.send_frame("SEND", &[("destination", "/topic/firehose")], &body);
            if i % 100 == 99 {
                pubc.with_receipt("SEND", &[("destination", "/topic/other")], b"", &i.to_string());
                peak = peak.max(p.rss());
            }
        }
        let growth = peak.saturating_sub(base);
        eprintln!("observed: 200 MiB to a never-reading subscriber ({policy}): broker RSS grew by {} MiB", growth / MIB);
        assert!(growth < 32 * MIB, "{policy}: RSS grew by {} MiB with max_pending_bytes = 4 MiB", growth / MIB);
        by.check();
        if policy == "drop" {
            // Still connected: it reads its bounded backlog, then gets new messages again.
            let mut backlog = 0u64;
            while slow.recv_timeout(Duration::from_millis(500)).is_some() {
                backlog += 1;
            }
            eprintln!("observed: the dropping subscriber read a backlog of {backlog} messages of 64 KiB");
            assert!(backlog < 3200);
            pubc.send("/topic/firehose", "the end");
            assert_eq!(slow.expect("MESSAGE").text(), "the end");
        }
        assert!(p.fds() < 64);
    }
}

#[test]
fn connect_disconnect_flood_and_rst_drops_leave_nothing_behind() {
    let mut p = Proc::start("", None);
    let mut by = Bystander::new(&p);
    for i in 0..1000 {
        let mut c = Client::raw(p.addr);
        c.connect("1.2");
        if i % 2 == 0 {
            c.disconnect();
        }
    }
    // Hundreds of connections with many subscriptions each, dropped with RST (SO_LINGER 0).
    let mut held = Vec::new();
    for i in 0..300 {
        let mut c = p.client();
        for j in 0..20 {
            c.send_frame("SUBSCRIBE", &[("id", &j.to_string()), ("destination", &format!("/topic/rst-{}", (i + j) % 50))], b"");
        }
        c.with_receipt("SUBSCRIBE", &[("id", "q"), ("destination", "/queue/rst"), ("ack", "client")], b"", "r");
        held.push(c);
    }
    for c in held {
        let sock = socket2::SockRef::from(&c.sock);
        sock.set_linger(Some(Duration::ZERO)).unwrap();
        drop(c);
    }
    by.check();
    assert!(p.alive());
    let t = Instant::now();
    while p.fds() > 40 && t.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(p.fds() < 40, "{} fds", p.fds());
}

#[test]
fn fd_exhaustion_is_logged_not_fatal_and_not_a_busy_loop() {
    let mut p = Proc::start("", Some(64));
    let mut by = Bystander::new(&p);
    // Far more connections than descriptors.
    let flood: Vec<TcpStream> = (0..200).filter_map(|_| TcpStream::connect(p.addr).ok()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let cpu0 = p.cpu();
    std::thread::sleep(Duration::from_secs(2));
    let spent = p.cpu() - cpu0;
    eprintln!("observed: out of descriptors with 200 connections waiting: {spent:?} CPU in 2 s");
    assert!(spent < Duration::from_millis(500), "broker burned {spent:?} of CPU in 2 s while out of descriptors");
    assert!(p.alive());
    drop(flood);
    std::thread::sleep(Duration::from_millis(300));
    // Accepting resumed: a new client works, and so does the old one.
    let mut c = Client::raw(p.addr);
    c.connect("1.2");
    by.check();
    let mut stderr = String::new();
    let _ = Command::new("kill").args(["-TERM", &p.child.id().to_string()]).status();
    let _ = p.child.wait();
    p.child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("accept failed") && stderr.contains("open files"), "{stderr}");
}

/// Write `bytes` to a socket until it is all gone or the broker stops reading (`WouldBlock`
/// for `stall`): returns how much went out.
fn push_until_held(s: &mut TcpStream, bytes: &[u8], stall: Duration) -> usize {
    s.set_write_timeout(Some(stall)).unwrap();
    let mut sent = 0;
    while sent < bytes.len() {
        match s.write(&bytes[sent..]) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    sent
}

/// The server's memory count on its admin port's /metrics.
fn memory_metric(admin: SocketAddr, name: &str) -> u64 {
    let mut s = TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    all.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// The broker binary with its admin port known, `max_memory` MiB, and `extra` config lines.
fn memory_proc_with(max_memory_mib: u64, extra: &str) -> (Proc, SocketAddr) {
    let admin = free_port();
    let p = Proc::start(&format!("max_memory = {}\nadmin_port = {admin}\n{extra}", max_memory_mib << 20), None);
    let addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let t = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(t.elapsed() < WAIT, "admin port did not open");
        std::thread::sleep(Duration::from_millis(20));
    }
    (p, addr)
}

fn memory_proc(extra: &str) -> (Proc, SocketAddr) {
    memory_proc_with(64, extra)
}

/// Close `sock` with a reset (SO_LINGER 0), as the kernel does for a process that dies with
/// unread input: the broker notices even while it is not reading the connection.
fn reset(sock: &TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket descriptor and a linger struct of the size passed.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// 12 connections x 16 open transactions x 16 MiB was 3 GiB of RSS; under a 64 MiB
/// `max_memory` the SENDs are paused once it is reached. Only their own connections can free
/// what open transactions hold (their COMMIT or ABORT waits behind the paused SEND): when they
/// go (here by a reset), their transactions are aborted and the alarm clears.
#[test]
fn open_transactions_are_bounded_by_max_memory() {
    let (p, admin) = memory_proc("");
    let base = p.rss();
    let body = vec![b't'; 1 << 20];
    let handles: Vec<_> = (0..12)
        .map(|c| {
            let addr = p.addr;
            let body = body.clone();
            std::thread::spawn(move || {
                let mut cl = Client::raw(addr);
                cl.connect("1.2");
                // Frame by frame (3 GiB is not built up front): stop once the broker stops
                // reading for half a second.
                let (mut sent, mut all) = (0, 0);
                'offer: for t in 0..16 {
                    let tx = format!("t{c}-{t}");
                    let mut frames = vec![frame("BEGIN", &[("transaction", &tx)], b"")];
                    frames.extend((0..16).map(|_| frame("SEND", &[("destination", "/queue/tx"), ("transaction", &tx)], &body)));
                    for f in frames {
                        all += f.len();
                        let n = push_until_held(&mut cl.sock, &f, Duration::from_millis(500));
                        sent += n;
                        if n < f.len() {
                            break 'offer;
                        }
                    }
                }
                (cl, sent, all)
            })
        })
        .collect();
    let mut held: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let growth = p.rss().saturating_sub(base);
    let sent: usize = held.iter().map(|h| h.1).sum();
    let counted = memory_metric(admin, "romp_memory_used_bytes ");
    eprintln!(
        "observed: {} MiB of transactions offered before a stall, {} MiB written before the broker paused them, {} MiB counted, RSS +{} MiB",
        held.iter().map(|h| h.2).sum::<usize>() >> 20,
        sent >> 20,
        counted >> 20,
        growth / MIB
    );
    if memory_metric(admin, "romp_memory_alarm ") != 1 {
        let got = held[0].0.recv_timeout(Duration::from_millis(100)).map(|g| format!("{} {}", g.command, g.text()));
        panic!("no alarm; the first connection got {got:?}");
    }
    for (cl, sent, all) in held.iter_mut() {
        if *sent == *all {
            let got = cl.recv_timeout(Duration::from_millis(100)).map(|g| format!("{} {}", g.command, g.text()));
            panic!("a connection wrote all it had: the broker did not pause it; it got {got:?}");
        }
    }
    assert!(growth < 160 * MIB, "RSS grew by {} MiB under a 64 MiB max_memory", growth / MIB);
    for (cl, _, _) in held {
        reset(&cl.sock);
    }
    let t = Instant::now();
    // Generous: what is checked is that it clears, not how fast (12 resets of connections
    // with megabytes unread behind them, on a machine the rest of the suite is loading).
    while memory_metric(admin, "romp_memory_alarm ") != 0 {
        assert!(t.elapsed() < 3 * WAIT, "the alarm stayed up after the connections were reset");
        std::thread::sleep(Duration::from_millis(50));
    }
    Bystander::new(&p).check();
}

/// 200 logged-in connections each in the middle of a 1 MB SEND (180 MB of partial frames):
/// under a 64 MiB `max_memory` they are held, read 16 KiB at a time, once it is reached. Their
/// close may sit behind the bytes the broker is not reading, so `block_timeout` ends it.
#[test]
fn partial_frames_after_login_are_bounded_by_max_memory() {
    let (p, admin) = memory_proc("max_connections = 2000\nblock_timeout = 2000\n");
    raise_nofile();
    let base = p.rss();
    let mut head = b"SEND\ndestination:/queue/partial\ncontent-length:1000000\n\n".to_vec();
    head.extend_from_slice(&[b'p'; 900_000]);
    let mut conns = Vec::new();
    for _ in 0..200 {
        let mut c = Client::raw(p.addr);
        c.connect("1.2");
        let _ = push_until_held(&mut c.sock, &head, Duration::from_millis(20));
        conns.push(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    let growth = p.rss().saturating_sub(base);
    let counted = memory_metric(admin, "romp_memory_used_bytes ");
    eprintln!("observed: 200 partial 1 MB SENDs: {} MiB counted, RSS +{} MiB", counted >> 20, growth / MIB);
    assert_eq!(memory_metric(admin, "romp_memory_alarm "), 1);
    assert!(growth < 128 * MIB, "RSS grew by {} MiB under a 64 MiB max_memory", growth / MIB);
    // Each is held in turn (released ones read what is left in their socket and are held
    // again) until block_timeout has closed enough of them for the rest, idle with their
    // partial frames, to fit under the low watermark: then the alarm stays down.
    let (t, mut calm) = (Instant::now(), 0);
    while calm < 10 {
        calm = if memory_metric(admin, "romp_memory_alarm ") == 0 { calm + 1 } else { 0 };
        assert!(t.elapsed() < 4 * WAIT, "the alarm did not settle down after block_timeout");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(conns);
    Bystander::new(&p).check();
}

/// 20 connections x 1,024 subscriptions (`max_subs`) with the longest ids (256 bytes) and destination names
/// (1,024 bytes) allowed: was 13 MiB per connection with 4,000-byte ids and names; now bounded
/// by the length limits, and counted against `max_memory`.
#[test]
fn subscription_state_at_its_limits_is_bounded() {
    let (p, admin) = memory_proc("");
    let base = p.rss();
    let counted_before = memory_metric(admin, "romp_memory_used_bytes ");
    let mut conns = Vec::new();
    for c in 0..20 {
        let mut cl = p.client();
        let mut wire = Vec::new();
        for s in 0..1023 {
            let id = format!("{c:03}-{s:04}-{}", "i".repeat(246));
            let dest = format!("/topic/{c:03}-{s:04}-{}", "d".repeat(1007));
            wire.extend_from_slice(&frame("SUBSCRIBE", &[("id", &id), ("destination", &dest)], b""));
        }
        wire.extend_from_slice(&frame("SUBSCRIBE", &[("id", "last"), ("destination", "/topic/last"), ("receipt", "done")], b""));
        cl.send_raw(&wire);
        let r = cl.recv();
        assert_eq!((r.command.as_str(), r.h("receipt-id")), ("RECEIPT", "done"), "{r:?}");
        conns.push(cl);
    }
    std::thread::sleep(Duration::from_millis(200)); // a recount
    let growth = p.rss().saturating_sub(base);
    let counted = memory_metric(admin, "romp_memory_used_bytes ").saturating_sub(counted_before);
    eprintln!("observed: 20,480 subscriptions at the length limits: RSS +{} MiB, {} MiB counted", growth / MIB, counted >> 20);
    assert!(growth < 96 * MIB, "RSS grew by {} MiB", growth / MIB);
    assert!(counted > 16 * MIB, "subscription state is counted against max_memory: {counted} bytes");
    Bystander::new(&p).check();
}

/// 200,000 distinct queue names from one client: it is refused (`dest flup`) at
/// `max_destinations` (100,000 by default) with the broker's RSS bounded by that, and others
/// carry on.
#[test]
fn two_hundred_thousand_queue_names_stop_at_max_destinations() {
    let p = Proc::start("", None);
    let mut by = Bystander::new(&p);
    let base = p.rss();
    let mut c = p.client();
    let mut refused = None;
    for chunk in 0..20 {
        let mut wire = Vec::new();
        for i in 0..10_000 {
            wire.extend_from_slice(&frame("SEND", &[("destination", &format!("/queue/many-{chunk:02}-{i:05}"))], b"x"));
        }
        if c.try_send_raw(&wire).is_err() {
            break;
        }
        if let Some(g) = c.recv_timeout(Duration::from_millis(1)) {
            refused = Some(g);
            break;
        }
    }
    let e = refused.or_else(|| c.recv_timeout(WAIT)).expect("refused at max_destinations");
    assert_eq!((e.command.as_str(), e.h("message")), ("ERROR", "dest flup"), "{e:?}");
    let growth = p.rss().saturating_sub(base);
    eprintln!("observed: queues up to max_destinations (100,000): RSS +{} MiB", growth / MIB);
    assert!(growth < 320 * MIB, "RSS grew by {} MiB", growth / MIB);
    by.check();
}

/// 50 topic subscribers that never read, flooded until each is cut off as a slow consumer:
/// each holds at most `max_pending_bytes` meanwhile (RSS), and all of it is released once they
/// have been dropped, within `linger` (the broker's own count; the allocator may keep the pages
/// for reuse, so RSS need not fall).
#[test]
fn cut_off_slow_consumers_give_their_backlog_back() {
    // max_memory well above 50 x max_pending_bytes: here the slow-consumer bound is the point
    // (under a lower one the memory alarm would pause the publisher first).
    let (p, admin) = memory_proc_with(1024, "max_pending_bytes = 1114112\nlinger = 300\n");
    let base = p.rss();
    let counted_before = memory_metric(admin, "romp_memory_used_bytes ");
    let mut subs = Vec::new();
    for i in 0..50 {
        let mut s = p.client();
        s.subscribe_sync(&i.to_string(), "/topic/flood", "auto");
        subs.push(s);
    }
    let mut pubc = p.client();
    let body = vec![b'f'; 60_000];
    let mut peak = base;
    for i in 0..400 {
        pubc.with_receipt("SEND", &[("destination", "/topic/flood")], &body, &i.to_string());
        if i % 20 == 0 {
            peak = peak.max(p.rss());
        }
    }
    // 400 x 60 KB is far over 1 MiB each: every subscriber is cut off, and dropped with its
    // backlog once linger (300 ms) has passed without its ERROR going out. (/metrics answers
    // from snapshots up to 500 ms old, so this waits on both figures, not on one sample.)
    let t = Instant::now();
    let counted = loop {
        let counted = memory_metric(admin, "romp_memory_used_bytes ").saturating_sub(counted_before);
        if counted < 8 * MIB && memory_metric(admin, "romp_connections ") <= 2 {
            break counted;
        }
        assert!(t.elapsed() < WAIT, "the cut-off subscribers' backlogs are still held: {counted} bytes");
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "observed: 50 cut-off slow consumers: peak RSS +{} MiB; released {} ms after the flood ({} KiB left counted)",
        peak.saturating_sub(base) / MIB,
        t.elapsed().as_millis(),
        counted >> 10
    );
    assert!(peak.saturating_sub(base) < 50 * 3 * MIB, "peak RSS +{} MiB", peak.saturating_sub(base) / MIB);
    assert!(t.elapsed() < Duration::from_secs(3), "released {} ms after the flood, linger is 300 ms", t.elapsed().as_millis());
    drop(subs);
}

/// Connection churn with hour-long heart-beats: 3,000 connections opened and closed leave
/// neither timers nor memory behind.
#[test]
fn connection_churn_with_long_heart_beats_leaves_no_memory_behind() {
    let p = Proc::start("heart_beat_max = 3600000\n", None);
    let base = p.rss();
    for _ in 0..3000 {
        let mut c = Client::raw(p.addr);
        c.send_frame("CONNECT", &[("accept-version", "1.2"), ("host", "/"), ("heart-beat", "3600000,3600000")], b"");
        c.expect("CONNECTED");
        c.disconnect();
    }
    std::thread::sleep(Duration::from_millis(200));
    let growth = p.rss().saturating_sub(base);
    eprintln!("observed: 3,000 connections with 1 h heart-beats opened and closed: RSS +{} KiB", growth / 1024);
    assert!(growth < 4 * MIB, "RSS grew by {} KiB", growth / 1024);
}

/// A queue consumer asking for `prefetch-count:100000` that never reads, fed 1 MiB messages:
/// was +2.7 GiB of RSS. Its deliveries stop at `max_pending_bytes` of unsent output, the queue
/// fills to `max_queue_bytes` and then holds the producer: RSS stays within those two bounds.
#[test]
fn a_non_reading_consumer_with_a_huge_prefetch_is_bounded_by_its_pending_bytes() {
    let p = Proc::start("max_queue_bytes = 33554432\nmax_pending_bytes = 4194304\nmax_message_size = 1048576\n", None);
    let base = p.rss();
    let mut c = p.client();
    c.with_receipt(
        "SUBSCRIBE",
        &[("id", "s"), ("destination", "/queue/huge"), ("ack", "client-individual"), ("prefetch-count", "100000")],
        b"",
        "sub",
    );
    let addr = p.addr;
    let producer = std::thread::spawn(move || {
        let mut pc = Client::raw(addr);
        pc.connect("1.2");
        let body = vec![b'q'; 1 << 20];
        let mut sent = 0;
        for _ in 0..2000 {
            if push_until_held(&mut pc.sock, &frame("SEND", &[("destination", "/queue/huge")], &body), Duration::from_secs(1)) == 0 {
                break;
            }
            sent += 1;
        }
        (pc, sent)
    });
    let (pc, sent) = producer.join().unwrap();
    let growth = p.rss().saturating_sub(base);
    eprintln!("observed: {sent} x 1 MiB offered to a never-reading prefetch-100000 consumer: RSS +{} MiB", growth / MIB);
    assert!(sent < 2000, "the producer was never held");
    assert!(growth < (32 + 4 + 32) * MIB, "RSS grew by {} MiB (max_queue_bytes 32 MiB + max_pending_bytes 4 MiB)", growth / MIB);
    drop((pc, c));
}

/// The dialect features' own bounds hold against a client that floods them: wildcard
/// subscriptions (`max_wildcard_subs`), scheduled messages (`max_scheduled`) and the
/// de-duplication window (`dedup_window`). Past each bound the attacker gets ERROR (or, for
/// de-duplication, old ids are forgotten), a bystander carries on, and RSS stays near what the
/// bound allows, far below what the flood would take unbounded.
#[test]
fn dialect_bounds_hold_under_floods() {
    let p = Proc::start("max_wildcard_subs = 1000\nmax_scheduled = 1000\ndedup_window = 1000\nmax_subs = 100000\n", None);
    let mut by = Bystander::new(&p);
    let base = p.rss();

    // 5,000 wildcard subscriptions with long patterns: 1,000 are taken.
    let mut w = p.client();
    let long = "x".repeat(200);
    let mut refused = None;
    for i in 0..5000 {
        let dest = format!("/topic/{long}.{i}.*");
        w.send_frame("SUBSCRIBE", &[("id", &i.to_string()), ("destination", &dest), ("receipt", "r")], b"");
        let g = w.recv();
        if g.command == "ERROR" {
            refused = Some((i, g));
            break;
        }
    }
    let (i, e) = refused.expect("the wildcard bound refused");
    assert_eq!((i, e.h("message")), (1000, "subs flup"));
    let wild = p.rss().saturating_sub(base);
    eprintln!("observed: 1,000 wildcard subscriptions of ~220 bytes: RSS +{} KiB", wild / 1024);
    assert!(wild < 8 * MIB, "wildcard subscriptions: RSS +{wild}");
    by.check();

    // 5,000 scheduled 10 KiB messages an hour out: 1,000 are held.
    let mut s = p.client();
    let body = vec![b'b'; 10 * 1024];
    let mut held = 0;
    for i in 0..5000 {
        let dest = format!("/queue/later{}", i % 7);
        s.send_frame("SEND", &[("destination", &dest), ("AMQ_SCHEDULED_DELAY", "3600000"), ("receipt", "r")], &body);
        let g = s.recv();
        if g.command == "ERROR" {
            assert_eq!(g.h("message"), "q flup");
            break;
        }
        held += 1;
    }
    // Each of the two workers holds its share (500); destinations fill them unevenly.
    assert!((500..=1000).contains(&held), "held {held}");
    let sched = p.rss().saturating_sub(base);
    eprintln!("observed: {held} scheduled 10 KiB messages: RSS +{} KiB (bodies alone: {} KiB)", sched / 1024, held * 10);
    assert!(sched < 40 * MIB, "scheduled: RSS +{sched}");
    by.check();

    // 100,000 distinct 256-byte ids to a topic: the window keeps the last 1,000.
    let before = p.rss();
    let mut d = p.client();
    for i in 0..100_000u32 {
        let id = format!("{i:0>256}");
        // A receipt every 10,000: what is in flight at once (and its transient memory) stays
        // small beside what an unbounded window would keep.
        if i % 10_000 == 9_999 {
            d.with_receipt("SEND", &[("destination", "/topic/nobody"), ("dedup-id", &id)], b"", "batch");
        } else {
            d.send_frame("SEND", &[("destination", "/topic/nobody"), ("dedup-id", &id)], b"");
        }
    }
    let dedup = p.rss().saturating_sub(before);
    eprintln!("observed: 100,000 dedup ids of 256 bytes through a 1,000-id window: RSS +{} KiB (a window that kept them all measured ~66,000 KiB)", dedup / 1024);
    assert!(dedup < 16 * MIB, "dedup window: RSS +{dedup}");
    by.check();
}
