//! A STOMP handler that answers `/virt/ping` SENDs with a MESSAGE straight back to the sender.
//!
//! ```text
//! cargo run --example ping
//! # then, with any STOMP client: SEND destination:/virt/ping body "hi" -> MESSAGE pong:true "hi"
//! ```

use romp::api::{Flow, Reply, SendContext};
use std::sync::atomic::{AtomicU64, Ordering};

#[path = "support/mod.rs"]
mod common;

fn main() {
    let pings = AtomicU64::new(0);
    let server = romp::Server::builder()
        .config(common::config())
        .stomp_handler("/virt/ping", move |send: &SendContext<'_>, reply: &mut Reply<'_>| {
            let n = pings.fetch_add(1, Ordering::Relaxed) + 1;
            let count = n.to_string();
            // Bounded and non-blocking: if the sender's output is full the reply is refused.
            if reply.send(send.destination, &[("pong", "true"), ("count", &count)], send.body).is_err() {
                eprintln!("ping reply refused: {}'s output is full", send.session);
            }
            Flow::Handled
        })
        .start()
        .expect("start");
    println!(
        "ping handler on STOMP {} web {}; Ctrl-C to stop",
        server.local_addrs()[0],
        server.web_addr().map(|a| a.to_string()).unwrap_or_default()
    );
    common::wait_for_signal();
    server.shutdown();
    if let Err(e) = server.join() {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
