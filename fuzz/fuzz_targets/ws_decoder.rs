//! The WebSocket decoder on arbitrary bytes (never panics, never over-consumes), and a stream of
//! well-formed client frames built from the input decodes back to the same payloads.
#![no_main]
use libfuzzer_sys::fuzz_target;
use romp::ws::frame::{encode_client, Decoder, Event, Opcode};

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new(1 << 16);
    let mut buf = data.to_vec();
    let mut pos = 0;
    while pos < buf.len() {
        match d.decode(&mut buf[pos..]) {
            Ok(Some((_, used))) => {
                assert!(used > 0 && pos + used <= data.len());
                pos += used;
            }
            _ => break,
        }
    }
    // Structured: split the input into binary message fragments.
    let mut frames = Vec::new();
    let mut want = Vec::new();
    let parts: Vec<&[u8]> = data.chunks(17).collect();
    for (i, p) in parts.iter().enumerate() {
        let op = if i == 0 { Opcode::Binary } else { Opcode::Continuation };
        encode_client(&mut frames, op, i + 1 == parts.len(), p, [i as u8, 7, 99, 3]);
        want.extend_from_slice(p);
    }
    let mut d = Decoder::new(1 << 20);
    let mut got = Vec::new();
    let mut pos = 0;
    while pos < frames.len() {
        match d.decode(&mut frames[pos..]).expect("well-formed frames decode") {
            Some((Event::Data(p), used)) => {
                got.extend_from_slice(p);
                pos += used;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, want);
});
