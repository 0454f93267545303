//! A runnable tour of `romp::client`: start an embedded broker on a free port, then produce
//! and consume through the blocking client (receipts, client acks, a NACK that redelivers, a
//! transaction, a clean DISCONNECT).
//!
//! `cargo run --example client` (or pass `HOST:PORT` to talk to a running broker instead).

use romp::client::{blocking::Connection, AckMode, ClientError, Options};
use std::time::Duration;

fn main() -> Result<(), ClientError> {
    let embedded;
    let addr = match std::env::args().nth(1) {
        Some(a) => a,
        None => {
            let cfg = romp::Config { ports: vec![0], web_port: 0, admin_port: 0, data_dir: String::new(), ..romp::Config::default() };
            embedded = romp::Server::start(cfg).expect("the embedded broker starts");
            embedded.local_addrs()[0].to_string()
        }
    };

    let mut producer = Connection::connect(&addr, Options::default())?;
    let mut consumer = Connection::connect(&addr, Options::default())?;
    println!("connected with STOMP {}", consumer.version());

    consumer.subscribe("work", "/queue/example", AckMode::ClientIndividual)?;
    producer.send_with_receipt("/queue/example", b"first", &[("content-type", "text/plain")])?;

    let m = consumer.recv(Duration::from_secs(5))?.expect("a message");
    println!("got {:?}; NACK it", String::from_utf8_lossy(&m.body));
    consumer.nack(&m)?;
    let m = consumer.recv(Duration::from_secs(5))?.expect("the redelivery");
    println!("got {:?} again (redelivered: {:?}); ACK it", String::from_utf8_lossy(&m.body), m.header("redelivered"));
    consumer.ack(&m)?;

    producer.begin("tx1")?;
    producer.send("/queue/example", b"in a transaction", &[("transaction", "tx1")])?;
    producer.commit("tx1")?;
    let m = consumer.recv(Duration::from_secs(5))?.expect("the committed message");
    println!("got {:?} after COMMIT", String::from_utf8_lossy(&m.body));
    consumer.ack(&m)?;

    consumer.disconnect()?;
    producer.disconnect()?;
    println!("disconnected cleanly");
    Ok(())
}
