//! The web port: HTTP answers, WebSocket upgrades and framing errors, STOMP over WebSocket
//! specifics (checklist section O). Sections A-N run over WebSocket too (the `ws4` variants).

mod common;
use common::*;
use romp::ws::frame::encode_client;
use romp::ws::Opcode;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn http(b: &Broker, req: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(b.web).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut rest = Vec::new();
    let head = read_http_head(&mut s, &mut rest);
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).map(|v| v.trim().parse().unwrap()).unwrap_or(0);
    let head_only = req.starts_with("HEAD");
    while !head_only && rest.len() < len {
        let mut tmp = [0u8; 65536];
        let n = s.read(&mut tmp).unwrap();
        assert!(n > 0);
        rest.extend_from_slice(&tmp[..n]);
    }
    (status, head, rest)
}

fn get(b: &Broker, path: &str) -> (u16, String, Vec<u8>) {
    http(b, &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
}

#[test]
fn health_check_and_static_page() {
    let b = Broker::start(2);
    for p in ["/romp/health_check", "/health"] {
        let (st, head, body) = get(&b, p);
        assert_eq!(st, 200);
        assert!(head.contains("Content-Type: application/json"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], "ok");
    }
    let (st, head, body) = get(&b, "/");
    assert_eq!(st, 200);
    assert!(head.contains("text/html"));
    assert!(String::from_utf8_lossy(&body).contains("<title>romp console</title>"));
    let (st, head, _) = get(&b, "/stomp.umd.min.js");
    assert_eq!(st, 200);
    assert!(head.contains("text/javascript"));
    let (st, head, body) = http(&b, "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(st, 200);
    assert!(body.is_empty() && !head.contains("Content-Length: 0"));
}

#[test]
fn http_errors() {
    let b = Broker::start(1);
    assert_eq!(get(&b, "/nope").0, 404);
    for traversal in ["/../Cargo.toml", "/%2e%2e/Cargo.toml", "/web/../../etc/passwd"] {
        assert_eq!(get(&b, traversal).0, 404, "{traversal}");
    }
    let (st, head, _) = http(&b, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(st, 405);
    assert!(head.contains("Allow: GET, HEAD"));
    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(10_000));
    assert_eq!(http(&b, &big).0, 431);
    assert_eq!(http(&b, "NOT HTTP AT ALL\r\n\r\n").0, 400);
    assert_eq!(http(&b, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n").0, 413);
    assert_eq!(http(&b, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab").0, 400);
}

#[test]
fn web_root_serves_a_directory() {
    let dir = std::env::temp_dir().join(format!("romp-webroot-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("index.html"), "<p>mine</p>").unwrap();
    std::fs::write(dir.join("sub/app.css"), "p{}").unwrap();
    let b = Broker::with(1, |c| c.web_root = Some(dir.clone()));
    let (st, _, body) = get(&b, "/");
    assert_eq!((st, body.as_slice()), (200, b"<p>mine</p>".as_slice()));
    let (st, head, _) = get(&b, "/sub/app.css");
    assert_eq!(st, 200);
    assert!(head.contains("text/css"));
    assert_eq!(get(&b, "/console.js").0, 404, "the built-in page is replaced, not merged");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn keep_alive_serves_several_requests() {
    let b = Broker::start(1);
    let mut s = TcpStream::connect(b.web).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut tmp = [0u8; 4096];
    while all.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count() < 2 {
        let n = s.read(&mut tmp).unwrap();
        assert!(n > 0);
        all.extend_from_slice(&tmp[..n]);
    }
}

#[test]
fn console_pages_report_every_worker() {
    let b = Broker::start(4);
    let mut subs: Vec<Client> = (0..6).map(|_| b.client("1.2")).collect();
    for (i, s) in subs.iter_mut().enumerate() {
        s.subscribe_sync("0", &format!("/queue/console-{}", i % 3), "auto");
    }
    let mut p = b.client("1.2");
    p.with_receipt("SEND", &[("destination", "/queue/held")], b"x", "r");
    let (st, _, body) = get(&b, "/romp/info");
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["workers"], 4);
    assert!(v["connections"].as_u64().unwrap() >= 7, "{v}");
    assert_eq!(v["per_worker"].as_array().unwrap().len(), 4);
    let (_, _, body) = get(&b, "/romp/destinations");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let dests = v["destinations"].as_array().unwrap();
    let held = dests.iter().find(|d| d["name"] == "/queue/held").expect("held queue listed");
    assert_eq!((held["kind"].as_str(), held["depth"].as_u64()), (Some("queue"), Some(1)));
    let c0 = dests.iter().find(|d| d["name"] == "/queue/console-0").unwrap();
    assert_eq!(c0["subscribers"], 2);
    let b2 = Broker::with(1, |c| c.enable_console = false);
    assert_eq!(get(&b2, "/romp/info").0, 404);
}

fn upgrade_status(b: &Broker, extra: &str, path: &str, version: &str) -> u16 {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n"
    );
    http(b, &req).0
}

#[test]
fn bad_upgrade_requests() {
    let b = Broker::with(1, |c| c.websockets_origin = vec!["http://good.example".into()]);
    assert_eq!(upgrade_status(&b, "", "/elsewhere", "13"), 404);
    assert_eq!(upgrade_status(&b, "", "/stomp", "8"), 426);
    assert_eq!(upgrade_status(&b, "Origin: http://evil.example\r\n", "/stomp", "13"), 403);
    let no_key = "GET /stomp HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(http(&b, no_key).0, 400);
    let mut ok = Client::websocket(b.web, "/stomp");
    ok.connect("1.2");
    let off = Broker::with(1, |c| c.websockets = false);
    assert_eq!(upgrade_status(&off, "", "/stomp", "13"), 404);
}

/// Open a WebSocket, CONNECT, and return the client plus an innocent bystander on TCP.
fn ws_and_bystander(b: &Broker) -> (Client, Client) {
    let mut w = Client::websocket(b.web, "/");
    w.connect("1.2");
    let mut t = b.client("1.2");
    t.subscribe_sync("0", "/topic/bystander", "auto");
    (w, t)
}

fn expect_ws_close(c: &mut Client, code: u16) {
    let t = std::time::Instant::now();
    while c.ws.as_ref().unwrap().closed.is_none() {
        assert!(t.elapsed() < WAIT, "no close frame");
        if c.recv_timeout(Duration::from_millis(50)).is_some() {
            continue;
        }
    }
    assert_eq!(c.ws.as_ref().unwrap().closed, Some(code));
    c.expect_closed();
}

fn bystander_fine(b: &Broker, t: &mut Client) {
    let mut p = b.client("1.2");
    p.send("/topic/bystander", "still here");
    assert_eq!(t.expect("MESSAGE").text(), "still here");
}

#[test]
fn ws_protocol_errors_close_with_the_right_code() {
    let b = Broker::start(2);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", vec![0x82, 0x01, b'x'], 1002),
        (
            "bad opcode",
            {
                let mut f = Vec::new();
                encode_client(&mut f, Opcode::Binary, true, b"x", [1, 2, 3, 4]);
                f[0] = 0x83;
                f
            },
            1002,
        ),
        (
            "rsv bits",
            {
                let mut f = Vec::new();
                encode_client(&mut f, Opcode::Binary, true, b"x", [1, 2, 3, 4]);
                f[0] |= 0x40;
                f
            },
            1002,
        ),
        (
            "bad utf-8 text",
            {
                let mut f = Vec::new();
                encode_client(&mut f, Opcode::Text, true, &[0xff, 0xfe], [1, 2, 3, 4]);
                f
            },
            1007,
        ),
        (
            "oversized",
            {
                let mut f = vec![0x82, 0x80 | 127];
                f.extend_from_slice(&(1u64 << 32).to_be_bytes());
                f.extend_from_slice(&[1, 2, 3, 4]);
                f
            },
            1009,
        ),
    ];
    for (name, bytes, code) in cases {
        let (mut w, mut t) = ws_and_bystander(&b);
        w.sock.write_all(&bytes).unwrap();
        expect_ws_close(&mut w, code);
        bystander_fine(&b, &mut t);
        let _ = name;
    }
}

#[test]
fn ws_ping_is_answered_and_client_close_is_echoed() {
    let b = Broker::start(1);
    let mut w = Client::websocket(b.web, "/stomp");
    let mut f = Vec::new();
    encode_client(&mut f, Opcode::Ping, true, b"are you there", [9, 9, 9, 9]);
    w.sock.write_all(&f).unwrap();
    let mut raw = Vec::new();
    w.sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut tmp = [0u8; 256];
    while raw.len() < 15 {
        let n = w.sock.read(&mut tmp).unwrap();
        raw.extend_from_slice(&tmp[..n]);
    }
    assert_eq!(&raw[..2], &[0x8a, 13]);
    assert_eq!(&raw[2..15], b"are you there");
    let mut f = Vec::new();
    encode_client(&mut f, Opcode::Close, true, &[0x03, 0xe8], [1, 1, 1, 1]);
    w.sock.write_all(&f).unwrap();
    expect_ws_close(&mut w, 1000);
}

#[test]
fn o2_frames_split_across_messages_and_several_per_message() {
    let b = Broker::start(2);
    let mut w = Client::websocket(b.web, "/stomp");
    w.connect("1.2");
    w.subscribe_sync("0", "/topic/o2", "auto");
    let frames: Vec<u8> =
        [frame("SEND", &[("destination", "/topic/o2")], b"one"), frame("SEND", &[("destination", "/topic/o2")], b"two")].concat();
    // Split in three messages at odd places, one of them a text message, one fragmented.
    let (a, rest) = frames.split_at(7);
    let (c, d) = rest.split_at(20);
    let mut bytes = Vec::new();
    encode_client(&mut bytes, Opcode::Binary, true, a, [5, 6, 7, 8]);
    encode_client(&mut bytes, Opcode::Text, false, &c[..10], [5, 6, 7, 8]);
    encode_client(&mut bytes, Opcode::Continuation, true, &c[10..], [5, 6, 7, 8]);
    encode_client(&mut bytes, Opcode::Binary, true, d, [5, 6, 7, 8]);
    w.sock.write_all(&bytes).unwrap();
    assert_eq!(w.expect("MESSAGE").text(), "one");
    assert_eq!(w.expect("MESSAGE").text(), "two");
}

#[test]
fn o3_heart_beats_are_lone_newline_messages_and_bodies_go_binary() {
    let b = Broker::start(1);
    let mut w = Client::websocket(b.web, "/stomp");
    w.send_frame("CONNECT", &[("accept-version", "1.2"), ("heart-beat", "0,500")], b"");
    w.expect("CONNECTED");
    let before = w.ws.as_ref().unwrap().messages;
    w.expect_nothing(Duration::from_millis(1300));
    assert!(w.eols >= 2, "{} heart-beats", w.eols);
    assert!(w.ws.as_ref().unwrap().messages >= before + 2, "each beat is its own message");
    // A body with NUL and non-UTF-8 bytes arrives intact (outgoing messages are binary).
    w.subscribe_sync("0", "/topic/o3", "auto");
    let mut p = b.client("1.2");
    p.send_frame("SEND", &[("destination", "/topic/o3"), ("content-length", "3")], &[0xff, 0x00, 0xfe]);
    assert_eq!(w.expect("MESSAGE").body, vec![0xff, 0x00, 0xfe]);
}

#[test]
fn o4_receipt_then_close_frame_then_tcp_close() {
    let b = Broker::start(2);
    let mut w = Client::websocket(b.web, "/stomp");
    w.connect("1.2");
    w.send_frame("DISCONNECT", &[("receipt", "bye")], b"");
    assert_eq!(w.expect("RECEIPT").h("receipt-id"), "bye");
    expect_ws_close(&mut w, 1000);
    // An ERROR, too, comes before the close frame.
    let mut w = Client::websocket(b.web, "/stomp");
    w.connect("1.2");
    w.send_frame("BOGUS", &[], b"");
    assert_eq!(w.expect("ERROR").h("message"), "syntax");
    expect_ws_close(&mut w, 1000);
}

#[test]
fn ws_and_tcp_clients_share_a_topic() {
    let b = Broker::start(4);
    let mut w = Client::websocket(b.web, "/stomp");
    w.connect("1.2");
    w.subscribe_sync("w", "/topic/shared", "auto");
    let mut t = b.client("1.1");
    t.subscribe_sync("t", "/topic/shared", "auto");
    let body: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
    for (sender_ws, text) in [(false, "from tcp"), (true, "from ws")] {
        let s = if sender_ws { &mut w } else { &mut t };
        s.send_frame("SEND", &[("destination", "/topic/shared"), ("k", "a:b")], text.as_bytes());
        assert_eq!(w.expect("MESSAGE").text(), text);
        assert_eq!(t.expect("MESSAGE").text(), text);
    }
    w.send_frame("SEND", &[("destination", "/topic/shared"), ("content-length", "1048576")], &body);
    assert_eq!(t.expect("MESSAGE").body, body);
    assert_eq!(w.expect("MESSAGE").body, body);
}

#[test]
fn websocket_text_option_sends_text_messages() {
    let b = Broker::with(1, |c| c.websocket_text = true);
    let mut w = Client::websocket(b.web, "/stomp");
    w.send_raw(&frame("CONNECT", &[("accept-version", "1.2")], b""));
    // Read the raw first server frame: CONNECTED is UTF-8, so a text message (opcode 1).
    w.sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut first = [0u8; 1];
    let raw = &mut w.ws.as_mut().unwrap().raw;
    if raw.is_empty() {
        w.sock.read_exact(&mut first).unwrap();
    } else {
        first[0] = raw[0];
    }
    assert_eq!(first[0], 0x81);
}

#[test]
fn garbage_pipelined_behind_a_console_request_is_refused() {
    let b = Broker::start(2);
    let mut s = TcpStream::connect(b.web).unwrap();
    // A console request (answered asynchronously) followed by far more than a few heads' worth.
    let mut bytes = b"GET /romp/info HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 200_000));
    let _ = s.write_all(&bytes);
    let mut out = Vec::new();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    // Refused either while the console answer is pending (431) or, if the answer came first,
    // as a malformed request (400); never buffered without end, never a hang.
    assert!(text.contains("HTTP/1.1 431") || text.contains("HTTP/1.1 400"), "{text}");
    assert_eq!(get(&b, "/health").0, 200);
}
