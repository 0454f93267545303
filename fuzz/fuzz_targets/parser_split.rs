//! The same bytes fed whole and split at arbitrary offsets (the way a connection buffers partial
//! frames) must give the same frames and the same error. The split feed parses again only when
//! the last `Incomplete` says the input may now parse differently (`need`, `until`), as the
//! broker does: a hint that hid a frame or an error would show here.
#![no_main]
use libfuzzer_sys::fuzz_target;
use romp::stomp::{parse, skip_eols, Limits, Parsed, Until, Version};

type Out = (Vec<(romp::stomp::Command, Vec<(String, String)>, Vec<u8>)>, bool);

fn run(chunks: &[&[u8]]) -> Out {
    let limits = Limits { max_headers: 16, max_header_len: 256, max_body: 4096 };
    let mut acc: Vec<u8> = Vec::new();
    let mut frames = Vec::new();
    let (mut need, mut until): (usize, Option<Until>) = (0, None);
    for c in chunks {
        acc.extend_from_slice(c);
        loop {
            let n = skip_eols(&acc);
            if n > 0 {
                acc.drain(..n);
                (need, until) = (0, None);
            }
            if acc.is_empty() {
                break;
            }
            let ready = if need > 0 { acc.len() >= need } else { until.as_mut().is_none_or(|u| u.reached(&acc)) };
            if !ready {
                break;
            }
            let used = match parse(&acc, Version::V1_2, &limits) {
                Ok(Parsed::Frame(f, used)) => {
                    frames.push((
                        f.command,
                        f.headers.iter().map(|h| (h.name.to_string(), h.value.to_string())).collect(),
                        f.body.to_vec(),
                    ));
                    used
                }
                Ok(Parsed::Incomplete { need: n, until: u }) => {
                    (need, until) = (n, u);
                    break;
                }
                Err(_) => return (frames, true),
            };
            acc.drain(..used);
            (need, until) = (0, None);
        }
    }
    (frames, false)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (cuts, bytes) = data.split_at(data.len().min(4));
    let mut points: Vec<usize> = cuts.iter().map(|&c| (c as usize * bytes.len()) / 256).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut last = 0;
    for p in points {
        chunks.push(&bytes[last..p]);
        last = p;
    }
    chunks.push(&bytes[last..]);
    let whole = run(&[bytes]);
    let split = run(&chunks);
    // An error may surface earlier in a split feed (a limit passed in the first chunk), but
    // every frame before it must be the same.
    if whole.1 || split.1 {
        let n = whole.0.len().min(split.0.len());
        assert_eq!(whole.0[..n], split.0[..n]);
    } else {
        assert_eq!(whole, split);
    }
});
