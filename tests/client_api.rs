//! `romp::client` against the broker on an ephemeral port: every version's frame shapes, acks,
//! transactions, receipts, heart-beats and a server ERROR, through the public blocking adapter.

mod common;
use common::Broker;
use romp::client::{blocking::Connection, AckMode, ClientError, Options};
use romp::stomp::{HeartBeat, Version};
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

fn body(m: &romp::client::read::OwnedFrame) -> String {
    String::from_utf8_lossy(&m.body).into_owned()
}

#[test]
fn every_version_sends_acks_and_disconnects() {
    for workers in [1, 4] {
        let b = Broker::start(workers);
        for v in [Version::V1_0, Version::V1_1, Version::V1_2] {
            let dest = format!("/queue/client-{v}");
            let mut c = Connection::connect(b.addr, Options::version(v)).unwrap();
            assert_eq!(c.version(), v);
            c.subscribe("s", &dest, AckMode::Client).unwrap();
            c.send_with_receipt(&dest, b"one", &[("k", "a:b")]).unwrap();
            let m = c.recv(T).unwrap().expect("MESSAGE");
            assert_eq!(body(&m), "one");
            assert_eq!(m.header("k"), Some("a:b"), "{v}");
            c.ack(&m).unwrap();
            if v == Version::V1_0 {
                assert!(matches!(c.nack(&m), Err(ClientError::Unsupported("NACK", _))));
            } else {
                c.send(&dest, b"two", &[]).unwrap();
                let m = c.recv(T).unwrap().expect("MESSAGE");
                c.nack(&m).unwrap();
                let again = c.recv(T).unwrap().expect("redelivery");
                assert_eq!((body(&again), again.header("redelivered")), ("two".into(), Some("true")), "{v}");
                c.ack(&again).unwrap();
            }
            c.unsubscribe("s").unwrap();
            c.disconnect().unwrap();
        }
    }
}

#[test]
fn a_transaction_commits_or_aborts() {
    let b = Broker::start(4);
    let mut p = Connection::connect(b.addr, Options::default()).unwrap();
    let mut c = Connection::connect(b.addr, Options::default()).unwrap();
    c.subscribe("s", "/queue/tx", AckMode::Auto).unwrap();
    p.begin("t1").unwrap();
    p.send("/queue/tx", b"dropped", &[("transaction", "t1")]).unwrap();
    p.abort("t1").unwrap();
    p.begin("t2").unwrap();
    p.send("/queue/tx", b"kept", &[("transaction", "t2")]).unwrap();
    p.commit("t2").unwrap();
    assert_eq!(body(&c.recv(T).unwrap().expect("the committed message")), "kept");
    assert!(c.recv(Duration::from_millis(200)).unwrap().is_none(), "the aborted SEND never arrives");
}

#[test]
fn heart_beats_are_negotiated_and_kept() {
    let b = Broker::with(1, |cfg| cfg.heart_beat_min = 50);
    let opts = Options { heart_beat: HeartBeat { send_ms: 100, recv_ms: 100 }, ..Options::default() };
    let mut c = Connection::connect(b.addr, opts).unwrap();
    let hb = c.session().connected().clone();
    assert!(hb.send_every_ms >= 100 && hb.expect_every_ms >= 100, "{hb:?}");
    // Several intervals of silence each way: the adapter sends beats, the server's arrive, and
    // neither side gives up on the other.
    assert!(c.recv(Duration::from_millis(700)).unwrap().is_none());
    c.send_with_receipt("/topic/alive", b"", &[]).unwrap();
    c.disconnect().unwrap();
}

#[test]
fn a_server_error_is_an_error_value() {
    let b = Broker::with(1, |cfg| {
        cfg.login = Some("u".into());
        cfg.passcode = Some("right".into());
    });
    match Connection::connect(b.addr, Options::default().login("u", "wrong")) {
        Err(ClientError::Server { message, .. }) => assert_eq!(message, "auth err"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a wrong passcode was accepted"),
    }
    let c = Connection::connect(b.addr, Options::default().login("u", "right")).unwrap();
    c.disconnect().unwrap();
}
