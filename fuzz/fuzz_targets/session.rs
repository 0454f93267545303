//! A whole broker session driven sans-io (`romp::sim`): two connections on one worker,
//! arbitrary bytes as their input, the shard and deliveries run to completion after every chunk.
//! Checks: nothing panics; everything the broker would write parses as well-formed server
//! frames; an ERROR is the last frame a connection gets.
#![no_main]
use libfuzzer_sys::fuzz_target;
use romp::client::Decoded;
use romp::sim::Sim;
use romp::stomp::{Command, Limits, Version};
use romp::Config;

/// Check that `out` is a sequence of well-formed server frames, read as a client reads them
/// (`romp::client::read`, which also refuses commands a server never sends); returns whether it
/// held an ERROR (which must be the last frame).
fn check_output(out: &[u8], version: Version) -> bool {
    let limits = Limits { max_headers: 10_000, max_header_len: 1 << 20, max_body: 1 << 24 };
    let mut pos = 0;
    let mut error = false;
    while pos < out.len() {
        match romp::client::read(&out[pos..], version, &limits) {
            Ok(Decoded::HeartBeats { bytes, .. }) => pos += bytes,
            Ok(Decoded::Frame(f, used)) => {
                assert!(!error, "a frame after ERROR");
                error |= f.command() == Command::Error;
                if f.command() == Command::Message {
                    assert!(f.header("destination").is_some() && f.header("message-id").is_some() && f.header("subscription").is_some());
                }
                pos += used;
            }
            other => panic!("the broker wrote a malformed or partial frame: {other:?} in {:?}", String::from_utf8_lossy(&out[pos..])),
        }
    }
    error
}

fuzz_target!(|data: &[u8]| {
    let cfg = Config {
        max_headers: 12,
        max_header_len: 200,
        max_message_size: 2048,
        max_pending_bytes: 2048 + 65536,
        max_subs: 4,
        max_transactions: 2,
        max_tx_frames: 8,
        max_messages: 16,
        prefetch: 3,
        ..Config::default()
    };
    let mut sim = Sim::new(cfg, 2);
    let mut errored = [false, false];
    let mut data = data;
    // Most inputs start connected, so the fuzzer spends its time past the handshake.
    if let Some((&first, rest)) = data.split_first() {
        if first & 1 == 0 {
            for i in 0..2 {
                sim.feed(i, b"CONNECT\naccept-version:1.0,1.1,1.2\n\n\0");
            }
        }
        data = rest;
    }
    for (n, chunk) in data.chunks(23).enumerate() {
        sim.feed(n % 2, chunk);
        // "Write" everything: check it, then drop it.
        for j in 0..2 {
            let version = sim.conn(j).version;
            let out = std::mem::take(sim.output(j));
            if out.is_empty() {
                continue;
            }
            assert!(!errored[j], "output after ERROR");
            errored[j] |= check_output(&out, version);
        }
    }
});
