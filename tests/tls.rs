//! STOMP over TLS through the embedded server: certificates made at test time (rcgen), a
//! rustls client on a blocking socket. Round trips between TLS and plain clients at TLS 1.2 and
//! 1.3 with bodies up to 1 MiB, client certificates (required, optional, the CN as login),
//! and bad input: plaintext on the TLS port, a ClientHello on the plain port, garbage records
//! and a handshake that stalls, each closed while other sessions go on.

mod common;
use common::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A test PKI: a CA, a server certificate for 127.0.0.1 and client certificates, as PEM files.
struct Pki {
    dir: PathBuf,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_pem: String,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("romp-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, format!("romp test CA {name}"));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        let ca_pem = cert.pem();
        std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
        let ca = rcgen::Issuer::new(p, key);
        let pki = Pki { dir, ca, ca_pem };
        pki.issue("server", "localhost", true);
        pki
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Write NAME.pem and NAME.key: a certificate with common name `cn` signed by the CA.
    fn issue(&self, name: &str, cn: &str, server: bool) -> (String, String) {
        let sans = if server { vec!["localhost".to_string(), "127.0.0.1".to_string()] } else { Vec::new() };
        let mut p = rcgen::CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.ca).unwrap();
        std::fs::write(self.dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn configure(&self, c: &mut romp::Config) {
        c.tls_ports = vec![0];
        c.tls_cert = Some(self.path("server.pem"));
        c.tls_key = Some(self.path("server.key"));
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn client_config(pki: &Pki, versions: &[&'static rustls::SupportedProtocolVersion], me: Option<&str>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap()).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let c = match me {
        None => b.with_no_client_auth(),
        Some(name) => {
            let chain = vec![CertificateDer::from_pem_file(pki.path(&format!("{name}.pem"))).unwrap()];
            let key = PrivateKeyDer::from_pem_file(pki.path(&format!("{name}.key"))).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    };
    Arc::new(c)
}

/// A blocking STOMP client over TLS (frames written and read by hand: bodies carry
/// content-length and no NUL).
struct TlsClient {
    s: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

/// A frame as read: command, headers, body.
#[derive(Debug)]
struct F {
    command: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl F {
    fn h(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl TlsClient {
    fn open(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> std::io::Result<TlsClient> {
        let sock = TcpStream::connect(addr)?;
        sock.set_read_timeout(Some(WAIT))?;
        sock.set_nodelay(true)?;
        let conn = rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
        let mut s = rustls::StreamOwned::new(conn, sock);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        Ok(TlsClient { s, buf: Vec::new() })
    }

    fn version(&self) -> Option<rustls::ProtocolVersion> {
        self.s.conn.protocol_version()
    }

    fn send(&mut self, command: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<()> {
        let mut f = format!("{command}\n").into_bytes();
        for (k, v) in headers {
            f.extend_from_slice(format!("{k}:{v}\n").as_bytes());
        }
        if !body.is_empty() {
            f.extend_from_slice(format!("content-length:{}\n", body.len()).as_bytes());
        }
        f.push(b'\n');
        f.extend_from_slice(body);
        f.push(0);
        self.s.write_all(&f)?;
        self.s.flush()
    }

    fn recv(&mut self) -> std::io::Result<F> {
        loop {
            while self.buf.first() == Some(&b'\n') {
                self.buf.remove(0);
            }
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let mut lines = head.lines();
                let command = lines.next().unwrap_or("").to_string();
                let headers: Vec<(String, String)> =
                    lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
                let len = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse::<usize>().ok());
                let start = end + 2;
                let stop = match len {
                    Some(n) if self.buf.len() > start + n => Some(start + n),
                    Some(_) => None,
                    None => self.buf[start..].iter().position(|&b| b == 0).map(|p| start + p),
                };
                if let Some(stop) = stop {
                    let body = self.buf[start..stop].to_vec();
                    self.buf.drain(..=stop);
                    return Ok(F { command, headers, body });
                }
            }
            let mut chunk = [0u8; 65536];
            let n = self.s.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn connect(&mut self, headers: &[(&str, &str)]) -> F {
        let mut h = vec![("accept-version", "1.2"), ("host", "/")];
        h.extend_from_slice(headers);
        self.send("CONNECT", &h, b"").unwrap();
        self.recv().unwrap()
    }
}

fn tls_broker(pki: &Pki, workers: usize, f: impl FnOnce(&mut romp::Config)) -> (Broker, SocketAddr) {
    let b = Broker::with(workers, |c| {
        pki.configure(c);
        f(c)
    });
    let addr = b.handle.as_ref().unwrap().tls_addrs()[0];
    (b, addr)
}

fn body(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + ((i * 7 + seed) % 26) as u8).collect()
}

#[test]
fn tls_and_plain_clients_talk_both_ways_at_tls_1_2_and_1_3_with_large_bodies() {
    let pki = Pki::new("roundtrip");
    for workers in [1, 3] {
        let (b, addr) = tls_broker(&pki, workers, |c| c.max_message_size = 2 << 20);
        for (versions, want) in [
            (&[&rustls::version::TLS13][..], rustls::ProtocolVersion::TLSv1_3),
            (&[&rustls::version::TLS12][..], rustls::ProtocolVersion::TLSv1_2),
        ] {
            let mut t = TlsClient::open(addr, client_config(&pki, versions, None)).unwrap();
            assert_eq!(t.version(), Some(want));
            let f = t.connect(&[]);
            assert_eq!(f.command, "CONNECTED", "{f:?}");
            // TLS subscriber, plain publisher; then plain subscriber, TLS publisher.
            t.send("SUBSCRIBE", &[("id", "1"), ("destination", "/queue/from-plain"), ("receipt", "s")], b"").unwrap();
            assert_eq!(t.recv().unwrap().command, "RECEIPT");
            let mut p = b.client("1.2");
            let mut plain_sub = b.client("1.2");
            plain_sub.subscribe_sync("2", "/queue/from-tls", "auto");
            for (i, size) in [0usize, 100, 16 * 1024, 70_000, 1 << 20].into_iter().enumerate() {
                let data = body(size, i);
                p.send_frame("SEND", &[("destination", "/queue/from-plain")], &data);
                let m = t.recv().unwrap();
                assert_eq!((m.command.as_str(), m.body.len()), ("MESSAGE", size), "{workers} workers {want:?}");
                assert_eq!(m.h("destination"), Some("/queue/from-plain"));
                assert!(m.body == data, "{size} bytes changed on the way");
                t.send("SEND", &[("destination", "/queue/from-tls"), ("receipt", "r")], &data).unwrap();
                let r = t.recv().unwrap();
                assert_eq!(r.command, "RECEIPT", "{r:?}");
                let m = plain_sub.recv();
                assert!(m.command == "MESSAGE" && m.body == data, "{size} bytes from the TLS client");
            }
            t.send("DISCONNECT", &[("receipt", "bye")], b"").unwrap();
            assert_eq!(t.recv().unwrap().command, "RECEIPT");
        }
    }
}

#[test]
fn client_certificates_required_optional_and_the_common_name_as_login() {
    let pki = Pki::new("clientauth");
    pki.issue("orders", "orders-svc", false);
    pki.issue("stranger", "stranger", false);
    // A certificate from another CA.
    let other = Pki::new("clientauth-other");
    other.issue("rogue", "orders-svc", false);
    std::fs::copy(other.path("rogue.pem"), pki.path("rogue.pem")).unwrap();
    std::fs::copy(other.path("rogue.key"), pki.path("rogue.key")).unwrap();
    let users = pki.dir.join("passwd");
    let line = romp::auth::passwd_line("orders-svc", "unused", false).unwrap();
    let pw = romp::auth::passwd_line("billing", "secret", false).unwrap();
    std::fs::write(&users, format!("{line}\n{pw}\n")).unwrap();
    let tls13 = &[&rustls::version::TLS13][..];

    let (b, addr) = tls_broker(&pki, 2, |c| {
        c.tls_client_ca = Some(pki.path("ca.pem"));
        c.tls_client_auth = romp::tls::ClientAuth::Required;
        c.tls_cert_login = romp::tls::CertLogin::Cn;
        c.user_file = Some(users.clone());
    });
    // No certificate, or one the CA did not sign: the handshake fails.
    for me in [None, Some("rogue")] {
        let r = TlsClient::open(addr, client_config(&pki, tls13, me)).and_then(|mut t| {
            t.send("CONNECT", &[("accept-version", "1.2")], b"")?;
            t.recv()
        });
        assert!(r.is_err(), "{me:?}: {r:?}");
    }
    // A signed certificate whose CN is a user: logged in with no passcode.
    let mut t = TlsClient::open(addr, client_config(&pki, tls13, Some("orders"))).unwrap();
    assert_eq!(t.connect(&[]).command, "CONNECTED");
    // Signed, but its CN is nobody: refused.
    let mut t2 = TlsClient::open(addr, client_config(&pki, tls13, Some("stranger"))).unwrap();
    let f = t2.connect(&[]);
    assert!(f.command == "ERROR" && String::from_utf8_lossy(&f.body).contains("not a known user"), "{f:?}");
    // A CONNECT that names a login is checked as usual, certificate or not.
    let mut t3 = TlsClient::open(addr, client_config(&pki, tls13, Some("orders"))).unwrap();
    assert_eq!(t3.connect(&[("login", "billing"), ("passcode", "secret")]).command, "CONNECTED");
    let mut t4 = TlsClient::open(addr, client_config(&pki, tls13, Some("orders"))).unwrap();
    assert_eq!(t4.connect(&[("login", "billing"), ("passcode", "wrong")]).command, "ERROR");
    drop(b);

    let (_b, addr) = tls_broker(&pki, 1, |c| {
        c.tls_client_ca = Some(pki.path("ca.pem"));
        c.tls_client_auth = romp::tls::ClientAuth::Optional;
        c.user_file = Some(users.clone());
    });
    // Optional: no certificate is fine (the passcode decides); a rogue one is still refused.
    let mut t = TlsClient::open(addr, client_config(&pki, tls13, None)).unwrap();
    assert_eq!(t.connect(&[("login", "billing"), ("passcode", "secret")]).command, "CONNECTED");
    let r = TlsClient::open(addr, client_config(&pki, tls13, Some("rogue"))).and_then(|mut t| {
        t.send("CONNECT", &[("accept-version", "1.2")], b"")?;
        t.recv()
    });
    assert!(r.is_err(), "{r:?}");
    // Without tls_cert_login the certificate is no login.
    let mut t = TlsClient::open(addr, client_config(&pki, tls13, Some("orders"))).unwrap();
    assert_eq!(t.connect(&[]).command, "ERROR");
}

/// Read until the peer closes (or the deadline): what came back.
fn read_to_close(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let (mut got, deadline) = (Vec::new(), Instant::now() + within);
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return got,
        }
    }
    panic!("not closed within {within:?}; got {:?}", String::from_utf8_lossy(&got));
}

#[test]
fn bad_input_on_either_port_is_closed_and_other_sessions_go_on() {
    let pki = Pki::new("bad");
    let (b, addr) = tls_broker(&pki, 2, |c| c.connect_timeout = 500);
    let tls = client_config(&pki, &[&rustls::version::TLS13], None);
    let mut good = TlsClient::open(addr, tls.clone()).unwrap();
    assert_eq!(good.connect(&[]).command, "CONNECTED");
    good.send("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/alive"), ("receipt", "s")], b"").unwrap();
    assert_eq!(good.recv().unwrap().command, "RECEIPT");

    // Plain STOMP on the TLS port: no CONNECTED, closed (at most a TLS alert comes back).
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"CONNECT\naccept-version:1.2\n\n\0").unwrap();
    let got = read_to_close(&mut s, WAIT);
    assert!(!String::from_utf8_lossy(&got).contains("CONNECTED"), "{got:?}");
    // Garbage that looks like a TLS record header, then junk.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x10]).unwrap();
    s.write_all(&[0xff; 16]).unwrap();
    read_to_close(&mut s, WAIT);
    // A handshake that stalls after its first bytes: closed by connect_timeout.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&[0x16, 0x03, 0x01]).unwrap();
    let t0 = Instant::now();
    read_to_close(&mut s, WAIT);
    assert!(t0.elapsed() >= Duration::from_millis(300), "closed after {:?}", t0.elapsed());
    // A handshake trickled one byte every 50 ms: activity does not extend connect_timeout.
    let conn2 = rustls::ClientConnection::new(tls.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello2 = Vec::new();
    let mut conn2 = conn2;
    conn2.write_tls(&mut hello2).unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    let t0 = Instant::now();
    let mut sent = 0;
    // The hello is hundreds of bytes: at this pace it would take over 10 s. The broker ends its
    // side (EOF here) at connect_timeout = 500 ms, trickle or not.
    s.set_nonblocking(true).unwrap();
    let mut ended = None;
    while sent < hello2.len() - 1 && t0.elapsed() < Duration::from_secs(6) {
        let _ = s.write_all(&hello2[sent..sent + 1]);
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(0) => {
                ended = Some(t0.elapsed());
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => {
                ended = Some(t0.elapsed());
                break;
            }
        }
    }
    let ended = ended.expect("the trickled handshake was never closed");
    assert!(ended < Duration::from_millis(1500), "a trickled handshake lived {ended:?} ({sent} bytes)");
    // A TLS ClientHello on the plain port: an ERROR, and closed.
    let conn = rustls::ClientConnection::new(tls.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    let mut conn = conn;
    conn.write_tls(&mut hello).unwrap();
    let mut s = TcpStream::connect(b.addr).unwrap();
    s.write_all(&hello).unwrap();
    let got = read_to_close(&mut s, WAIT);
    assert!(String::from_utf8_lossy(&got).starts_with("ERROR"), "{:?}", String::from_utf8_lossy(&got));

    // The good session never noticed.
    let mut p = b.client("1.2");
    p.send_frame("SEND", &[("destination", "/topic/alive")], b"still here");
    let m = good.recv().unwrap();
    assert_eq!((m.command.as_str(), m.body.as_slice()), ("MESSAGE", &b"still here"[..]));
}

#[test]
fn a_tls_port_without_certificate_files_is_a_config_error_naming_the_key() {
    let pki = Pki::new("config");
    let mut cfg =
        romp::Config { ports: vec![0], web_port: 0, admin_port: 0, tls_ports: vec![0], data_dir: String::new(), ..romp::Config::default() };
    let e = cfg.validate("romp.toml").unwrap_err().to_string();
    assert!(e.contains("romp.toml") && e.contains("tls_cert"), "{e}");
    cfg.tls_cert = Some(pki.path("server.pem"));
    cfg.tls_key = Some(pki.path("missing.key"));
    let e = cfg.validate("romp.toml").unwrap_err().to_string();
    assert!(e.contains("tls_key") && e.contains("missing.key"), "{e}");
    cfg.tls_key = Some(pki.path("server.key"));
    assert!(cfg.validate("romp.toml").is_ok());
    cfg.tls_cert_login = romp::tls::CertLogin::Cn;
    let e = cfg.validate("romp.toml").unwrap_err().to_string();
    assert!(e.contains("tls_cert_login"), "{e}");
}

/// A TLS subscriber that stops reading while messages pile up (socket buffers full, records
/// queued inside TLS) gets every one of them, in order, once it reads again.
#[test]
fn a_tls_subscriber_that_pauses_gets_everything_when_it_reads_again() {
    let pki = Pki::new("pause");
    let (b, addr) = tls_broker(&pki, 2, |_| {});
    let mut t = TlsClient::open(addr, client_config(&pki, &[&rustls::version::TLS13], None)).unwrap();
    assert_eq!(t.connect(&[]).command, "CONNECTED");
    t.send("SUBSCRIBE", &[("id", "1"), ("destination", "/queue/paused"), ("receipt", "s")], b"").unwrap();
    assert_eq!(t.recv().unwrap().command, "RECEIPT");
    let mut p = b.client("1.2");
    // 6 MiB in 100 messages, more than the kernel buffers and a TLS chunk hold.
    for i in 0..100 {
        p.send_frame("SEND", &[("destination", "/queue/paused")], &body(60_000 + i, i));
    }
    p.with_receipt("SEND", &[("destination", "/queue/other")], b"x", "done");
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..100 {
        let m = t.recv().unwrap();
        assert!(m.command == "MESSAGE" && m.body == body(60_000 + i, i), "message {i}: {} {} bytes", m.command, m.body.len());
    }
}

/// The common name of the certificate a TLS client was shown.
fn served_cn(t: &TlsClient) -> String {
    let c = t.s.conn.peer_certificates().and_then(|c| c.first()).expect("a server certificate");
    romp::tls::common_name(c).unwrap_or_default()
}

/// New certificate files take effect on reload for new connections; connections already open
/// keep theirs and go on working; a reload with a broken key changes nothing.
#[test]
fn a_reload_serves_new_certificates_to_new_connections_only() {
    let pki = Pki::new("reload");
    pki.issue("server", "first", true);
    let mut cfg = test_config(2);
    pki.configure(&mut cfg);
    let handle = romp::Server::start(cfg.clone()).unwrap();
    let addr = handle.tls_addrs()[0];
    let tls = client_config(&pki, &[&rustls::version::TLS13], None);
    let mut old = TlsClient::open(addr, tls.clone()).unwrap();
    assert_eq!(served_cn(&old), "first");
    assert_eq!(old.connect(&[]).command, "CONNECTED");
    old.send("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/reload"), ("receipt", "s")], b"").unwrap();
    assert_eq!(old.recv().unwrap().command, "RECEIPT");

    pki.issue("server", "second", true);
    handle.reload(cfg.clone()).expect("reload");
    // Each worker takes the new configuration from its inbox on its next turn.
    let deadline = Instant::now() + WAIT;
    let mut new = loop {
        let t = TlsClient::open(addr, tls.clone()).unwrap();
        if served_cn(&t) == "second" || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(served_cn(&new), "second");
    assert_eq!(new.connect(&[]).command, "CONNECTED");
    new.send("SEND", &[("destination", "/topic/reload"), ("receipt", "r")], b"after the reload").unwrap();
    assert_eq!(new.recv().unwrap().command, "RECEIPT");
    let m = old.recv().unwrap();
    assert_eq!((m.command.as_str(), m.body.as_slice()), ("MESSAGE", &b"after the reload"[..]));

    // A broken key file: the reload is refused naming it, and the second certificate stays.
    std::fs::write(pki.path("server.key"), "not a key").unwrap();
    let e = handle.reload(cfg.clone()).unwrap_err().to_string();
    assert!(e.contains("tls_key") && e.contains("server.key"), "{e}");
    for _ in 0..4 {
        let again = TlsClient::open(addr, tls.clone()).unwrap();
        assert_eq!(served_cn(&again), "second");
    }
    handle.shutdown();
    handle.join().unwrap();
}

/// `admin_tls = true`: the admin port's pages come over HTTPS only.
#[test]
fn the_admin_port_speaks_tls_when_asked() {
    let pki = Pki::new("admin");
    let (b, _) = tls_broker(&pki, 1, |c| c.admin_tls = true);
    let admin = b.admin.expect("admin port");
    let mut t = TlsClient::open(admin, client_config(&pki, &[&rustls::version::TLS13], None)).unwrap();
    t.s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut page = Vec::new();
    let _ = t.s.read_to_end(&mut page);
    let page = String::from_utf8_lossy(&page);
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("romp_uptime_seconds"), "{page}");
    // Plain HTTP there gets nothing but a closed connection.
    let mut s = TcpStream::connect(admin).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let got = read_to_close(&mut s, WAIT);
    assert!(!String::from_utf8_lossy(&got).contains("romp_"), "{got:?}");
}

/// An upstream link dials its edge over TLS, checking the certificate against `tls_ca` and for
/// `tls_name`; a wrong name keeps the link down (nothing is taken from the edge).
#[test]
fn an_upstream_link_dials_its_edge_over_tls_and_checks_the_name() {
    let pki = Pki::new("link");
    let (edge, edge_tls) = tls_broker(&pki, 1, |_| {});
    let link = |name: Option<&str>| romp::config::DownstreamConfig {
        address: edge_tls.to_string(),
        login: None,
        passcode: None,
        remote: None,
        reconnect_min: 50,
        reconnect_max: 200,
        prefetch: 10,
        tls: true,
        tls_ca: Some(pki.path("ca.pem")),
        tls_name: name.map(str::to_string),
    };
    let core = Broker::with(2, |c| {
        c.downstreams.insert("/queue/work".into(), link(None));
    });
    let mut sub = core.client("1.2");
    sub.subscribe_sync("1", "/queue/work", "auto");
    let mut p = edge.client("1.2");
    p.with_receipt("SEND", &[("destination", "/queue/work/up")], b"through tls", "r");
    let m = sub.recv();
    assert_eq!((m.command.as_str(), m.text()), ("MESSAGE", "through tls".to_string()));
    drop(core);

    let wrong = Broker::with(1, |c| {
        c.downstreams.insert("/queue/other".into(), link(Some("not-the-edge.example")));
    });
    let mut sub = wrong.client("1.2");
    sub.subscribe_sync("1", "/queue/other", "auto");
    p.with_receipt("SEND", &[("destination", "/queue/other/up")], b"stays at the edge", "r2");
    sub.expect_nothing(Duration::from_millis(800));
    drop(wrong);
    // Still at the edge for whoever consumes it there.
    let mut there = edge.client("1.2");
    there.subscribe_sync("1", "/queue/other/up", "auto");
    assert_eq!(there.recv().text(), "stays at the edge");
}

/// openssl s_client (Debian's) at each protocol version: 1.2 and 1.3 are served, 1.0 and 1.1
/// are refused (the client is told it may use them: `SECLEVEL=0`).
#[test]
fn openssl_s_client_gets_tls_1_2_and_1_3_only() {
    let pki = Pki::new("versions");
    let (_b, addr) = tls_broker(&pki, 1, |_| {});
    for (flag, served) in [("-tls1", false), ("-tls1_1", false), ("-tls1_2", true), ("-tls1_3", true)] {
        let mut child = std::process::Command::new("openssl")
            .args(["s_client", flag, "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", &pki.path("ca.pem"), "-connect", &addr.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("openssl (Debian's openssl package) runs");
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        // A session that came up names its cipher.
        let up = !text.contains("Cipher is (NONE)") && text.contains("Cipher is ") && text.contains("Verify return code: 0 (ok)");
        assert_eq!(up, served, "{flag}: {text}");
    }
}

/// The romp binary on a TLS port with the PKI's server certificate (plus `extra` TOML); its
/// TLS address.
fn binary(pki: &Pki, extra: &str) -> (std::process::Child, SocketAddr) {
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = pki.dir.join("romp.toml");
    let text = format!(
        "ports = [0]\ntls_ports = [{tls_port}]\nweb_port = 0\nadmin_port = 0\ndata_dir = \"\"\nworkers = 2\n\
         tls_cert = \"{}\"\ntls_key = \"{}\"\n{extra}",
        pki.path("server.pem"),
        pki.path("server.key")
    );
    std::fs::write(&cfg, text).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_romp"))
        .arg("--config")
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    (child, format!("127.0.0.1:{tls_port}").parse().unwrap())
}

/// A TLS client, once the broker at `addr` accepts one.
fn open_when_up(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> TlsClient {
    let deadline = Instant::now() + WAIT;
    loop {
        match TlsClient::open(addr, tls.clone()) {
            Ok(c) => return c,
            Err(e) => {
                assert!(Instant::now() < deadline, "the broker did not come up: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// A flood of stalled handshakes against the binary: 1,500 connections that each send most of
/// a large ClientHello record and stop, 500 that send one byte. The broker's memory grows by a
/// bounded amount per connection (read from /proc), a real TLS client is served meanwhile, and
/// connect_timeout closes every stalled one.
#[test]
fn a_flood_of_stalled_handshakes_is_bounded_and_closed() {
    let pki = Pki::new("flood");
    let (mut child, addr) = binary(&pki, "connect_timeout = 2000\nmax_connections = 5000\n");
    let tls = client_config(&pki, &[&rustls::version::TLS13], None);
    let mut first = open_when_up(addr, &tls);
    assert_eq!(first.connect(&[]).command, "CONNECTED");
    let base = rss_kib(child.id());
    // A handshake record header announcing 16 KiB, then 15 KiB of it.
    let mut big = vec![0x16, 0x03, 0x01, 0x40, 0x00];
    big.extend(std::iter::repeat_n(0x01u8, 15 * 1024));
    let mut stalled = Vec::new();
    for i in 0..2000 {
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(if i < 1500 { &big } else { &big[..1] });
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut good = TlsClient::open(addr, tls.clone()).unwrap();
    assert_eq!(good.connect(&[]).command, "CONNECTED", "a real client during the flood");
    let peak = rss_kib(child.id());
    let per_conn = peak.saturating_sub(base) / 2000;
    assert!(per_conn <= 64, "RSS grew {} KiB for 2,000 stalled handshakes ({per_conn} KiB each)", peak.saturating_sub(base));
    // connect_timeout closes them all.
    for s in &mut stalled {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut b = [0u8; 256];
        let closed = loop {
            match s.read(&mut b) {
                Ok(0) | Err(_) => break true,
                Ok(_) => continue, // an alert or ERROR before the close
            }
        };
        assert!(closed);
    }
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(child.wait().unwrap().success());
    eprintln!("RSS {base} KiB, {peak} KiB with 2,000 stalled handshakes ({per_conn} KiB each)");
}

/// SIGHUP to the binary reads the certificate files again: new connections see the new
/// certificate while a client connected before goes on working.
#[test]
fn sighup_reloads_certificates_for_new_connections_of_the_binary() {
    let pki = Pki::new("sighup");
    pki.issue("server", "before-hup", true);
    let (mut child, addr) = binary(&pki, "");
    let tls = client_config(&pki, &[&rustls::version::TLS13], None);
    let mut old = open_when_up(addr, &tls);
    assert_eq!(served_cn(&old), "before-hup");
    assert_eq!(old.connect(&[]).command, "CONNECTED");
    old.send("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/hup"), ("receipt", "s")], b"").unwrap();
    assert_eq!(old.recv().unwrap().command, "RECEIPT");
    pki.issue("server", "after-hup", true);
    let _ = std::process::Command::new("kill").args(["-HUP", &child.id().to_string()]).status();
    let deadline = Instant::now() + WAIT;
    let mut new = loop {
        let t = TlsClient::open(addr, tls.clone()).unwrap();
        if served_cn(&t) == "after-hup" {
            break t;
        }
        assert!(Instant::now() < deadline, "still the old certificate after SIGHUP");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(new.connect(&[]).command, "CONNECTED");
    new.send("SEND", &[("destination", "/topic/hup"), ("receipt", "r")], b"across the reload").unwrap();
    assert_eq!(new.recv().unwrap().command, "RECEIPT");
    let m = old.recv().unwrap();
    assert_eq!((m.command.as_str(), m.body.as_slice()), ("MESSAGE", &b"across the reload"[..]));
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(child.wait().unwrap().success());
}
