//! A STOMP handler that answers `/virt/ping` SENDs with a MESSAGE straight back to the sender.
//!
//! ```text
//! cargo run --example ping
//! # then, with any STOMP client: SEND destination:/virt/ping body "hi" -> MESSAGE pong:true "hi"
//! ```

use romp::api::{Flow, Reply, SendContext};
use std::sync::atomic::{AtomicU64, Ordering};

fn main() {
    let pings = AtomicU64::new(0);
    let server = romp::Server::builder()
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
    println!("ping handler on STOMP {:?}; Ctrl-C to stop", server.local_addrs());
    wait_for_ctrl_c();
    server.shutdown();
    server.join();
}

fn wait_for_ctrl_c() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    let _ = set.thread_block();
    let _ = set.wait();
}
