//! An echo service: a SEND to `/virt/echo` is published back to the destination named in its
//! `reply-to` header (the usual request/reply pattern), with the body unchanged. A pre-publish
//! hook stamps every other SEND with the time the broker saw it.
//!
//! ```text
//! cargo run --example echo
//! # SUBSCRIBE /queue/replies; SEND /virt/echo reply-to:/queue/replies "ping" -> MESSAGE "ping"
//! ```

use romp::api::{Draft, Flow, Reply, SendContext, Verdict};

#[path = "support/mod.rs"]
mod common;

fn main() {
    let server = romp::Server::builder()
        .config(common::config())
        .stomp_handler("/virt/echo", |send: &SendContext<'_>, reply: &mut Reply<'_>| {
            match send.header("reply-to") {
                Some(to) => reply.publish(to, &[("echo-of", send.session)], send.body),
                None => {
                    let _ = reply.send(send.destination, &[("error", "no reply-to header")], b"");
                }
            }
            Flow::Handled
        })
        .pre_publish(|draft: &mut Draft, _send: &SendContext<'_>| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
            draft.headers.push(("x-broker-seen-ms".into(), now.to_string()));
            Verdict::Accept
        })
        .start()
        .expect("start");
    println!(
        "echo service on STOMP {} web {}; Ctrl-C to stop",
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
