//! Several workers in one thread (`romp::sim`, multi-worker): four connections on three workers,
//! arbitrary bytes as their input, bus deliveries interleaved by a schedule the input also picks.
//! Checks: nothing panics; every connection's output is well-formed server frames read as a
//! client reads them; the bus always drains (no livelock); after a shutdown every connection
//! is closed and released and nothing is left on the bus.
#![no_main]
use libfuzzer_sys::fuzz_target;
use romp::client::Decoded;
use romp::sim::{ConnId, Sim};
use romp::stomp::{Command, Limits};
use romp::Config;

fn check(sim: &mut Sim, id: ConnId, errored: &mut bool) {
    let out = sim.take_output(id);
    let Some(version) = sim.get(id).map(|c| c.version) else { return };
    let limits = Limits { max_headers: 10_000, max_header_len: 1 << 20, max_body: 1 << 24 };
    let mut pos = 0;
    while pos < out.len() {
        match romp::client::read(&out[pos..], version, &limits) {
            Ok(Decoded::HeartBeats { bytes, .. }) => pos += bytes,
            Ok(Decoded::Frame(f, used)) => {
                assert!(!*errored, "a frame after ERROR");
                *errored |= f.command() == Command::Error;
                pos += used;
            }
            other => panic!("malformed or partial output: {other:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (seed, mut data) = data.split_at(8);
    let seed = u64::from_le_bytes(seed.try_into().expect("8 bytes"));
    let cfg =
        Config { max_message_size: 2048, max_pending_bytes: 2048 + 65536, max_subs: 4, max_messages: 16, prefetch: 3, ..Config::default() };
    let mut sim = Sim::workers(cfg, 3, seed);
    let ids: Vec<ConnId> = (0..4).map(|i| sim.connect_on(i % 3)).collect();
    for id in &ids {
        sim.input(*id, b"CONNECT\naccept-version:1.0,1.1,1.2\n\n\0");
    }
    let mut errored = [false; 4];
    while let Some((&ctl, rest)) = data.split_first() {
        let n = (rest.len()).min(1 + (ctl as usize >> 3));
        let (chunk, rest) = rest.split_at(n);
        let i = (ctl & 3) as usize;
        sim.input(ids[i], chunk);
        // Some bus steps between inputs, as many as the control byte says.
        for _ in 0..(ctl >> 2 & 1) * 8 {
            if sim.step().is_none() {
                break;
            }
        }
        for (j, id) in ids.iter().enumerate() {
            check(&mut sim, *id, &mut errored[j]);
        }
        data = rest;
    }
    sim.run(1_000_000);
    for (j, id) in ids.iter().enumerate() {
        check(&mut sim, *id, &mut errored[j]);
    }
    sim.shutdown();
    sim.run(1_000_000);
    for id in &ids {
        let c = sim.get(*id).expect("connections stay in the slab in the simulation");
        assert!(c.is_closing() && c.session_torn_down());
    }
    assert!(sim.step().is_none());
});
