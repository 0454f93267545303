//! Embeds romp through its public API only: start on free ports, publish from Rust, consume
//! with the public client, match the error enums with a wildcard arm (they are
//! `#[non_exhaustive]`), shut down and join. Prints "ok" on success.

use romp::client::blocking::Connection;
use romp::client::Options;
use romp::stomp::AckMode;
use std::time::Duration;

fn main() {
    let mut cfg = romp::Config::default();
    (cfg.ports, cfg.web_port, cfg.admin_port) = (vec![0], 0, 0);
    cfg.data_dir = String::new();
    assert!(!cfg.pin_workers, "an embedded broker leaves the host's threads alone");
    let server = romp::Server::builder().config(cfg).start().expect("start");
    let addr = server.local_addrs()[0];
    let mut c = Connection::connect(addr, Options::default()).expect("connect");
    c.subscribe("1", "/queue/api", AckMode::Auto).expect("subscribe");
    server.publish("/queue/api", &[("k", "v")], b"from the host").expect("publish");
    let m = c.recv(Duration::from_secs(10)).expect("recv").expect("a message");
    assert_eq!(&m.body[..], b"from the host");
    match server.publish("", &[], b"") {
        Ok(()) => panic!("an empty destination was accepted"),
        Err(romp::PublishError::BadDestination) => {}
        Err(e) => panic!("{e}"),
    }
    if let Err(e) = romp::selector::Selector::parse("a =") {
        match e.kind {
            romp::selector::ErrorKind::Expected { .. } => {}
            _ => panic!("{e}"),
        }
    }
    c.disconnect().expect("disconnect");
    server.shutdown();
    server.join().expect("joined");
    println!("ok");
}
