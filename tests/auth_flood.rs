//! A flood of bad CONNECTs naming one PBKDF2 user, from one address, must not lock that user
//! out: each worker lets one address have a few slow checks pending and refuses the rest at
//! once, so a login from elsewhere still gets its turn on the auth threads.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn from(src: [u8; 4], to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(IpAddr::from(src), 0).into()).unwrap();
    s.connect(&to.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

fn connect_frame(login: &str, pass: &str) -> Vec<u8> {
    format!("CONNECT\naccept-version:1.2\nhost:/\nlogin:{login}\npasscode:{pass}\n\n\0").into_bytes()
}

/// The first frame's command, message header and body.
fn answer(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut b = [0u8; 1024];
    while !got.contains(&0) {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got).to_string();
    let command = text.lines().next().unwrap_or("").to_string();
    let message = text.lines().find_map(|l| l.strip_prefix("message:")).unwrap_or("").to_string();
    let body = text.split_once("\n\n").map_or("", |(_, b)| b).trim_end_matches('\0');
    format!("{command} {message}: {body}")
}

#[test]
fn a_login_flood_from_one_address_does_not_lock_out_the_user_elsewhere() {
    let dir = std::env::temp_dir().join(format!("romp-auth-flood-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A PBKDF2 user with few iterations (the debug build is slow at 100,000).
    let salt = [7u8; 16];
    let hash = romp::auth::pbkdf2_sha256(b"right", &salt, 30000);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let file = dir.join("passwd");
    std::fs::write(&file, format!("victim:$pbkdf2-sha256$30000${}${}\n", hex(&salt), hex(&hash))).unwrap();
    let f = file.clone();
    let b = Broker::with(2, |c| {
        c.user_file = Some(f);
        c.max_connections = 2000;
    });
    // 400 bad logins from 127.0.0.2, all sent before any answer is read.
    let mut flood: Vec<TcpStream> = (0..400).map(|_| from([127, 0, 0, 2], b.addr)).collect();
    for s in &mut flood {
        s.write_all(&connect_frame("victim", "wrong")).unwrap();
    }
    // The user, from 127.0.0.3, gets in promptly.
    let t0 = Instant::now();
    let mut me = from([127, 0, 0, 3], b.addr);
    me.write_all(&connect_frame("victim", "right")).unwrap();
    let got = answer(&mut me);
    assert!(got.starts_with("CONNECTED"), "{got}");
    let waited = t0.elapsed();
    // Every flood connection got an ERROR: most at once (too many pending), the rest after
    // their check failed.
    let (mut busy, mut bad) = (0, 0);
    for s in &mut flood {
        let a = answer(s);
        assert!(a.starts_with("ERROR auth err"), "{a}");
        if a.contains("too many") {
            busy += 1
        } else {
            bad += 1
        }
    }
    assert!(bad <= 2 * romp::auth::MAX_PENDING_PER_PEER as usize + 2 * 8, "{bad} checks ran for one address");
    assert!(busy >= 300, "only {busy} refused at once");
    assert!(waited < Duration::from_secs(5), "the user waited {waited:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
