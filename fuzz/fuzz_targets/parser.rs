//! The STOMP parser on arbitrary bytes, in every version: never panics, never claims more bytes
//! than it was given, and every frame it returns re-parses identically from its own bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use romp::stomp::{parse, skip_eols, Limits, Parsed, Version};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_headers: 16, max_header_len: 256, max_body: 4096 };
    for v in [Version::V1_0, Version::V1_1, Version::V1_2] {
        let mut pos = 0;
        while pos < data.len() {
            pos += skip_eols(&data[pos..]);
            if pos >= data.len() {
                break;
            }
            match parse(&data[pos..], v, &limits) {
                Ok(Parsed::Frame(f, used)) => {
                    assert!(used > 0 && pos + used <= data.len());
                    let again = match parse(&data[pos..pos + used], v, &limits) {
                        Ok(Parsed::Frame(g, n)) => (g, n),
                        other => panic!("a frame's own bytes do not re-parse: {other:?}"),
                    };
                    assert_eq!(again.1, used);
                    assert_eq!(again.0, f);
                    pos += used;
                }
                Ok(Parsed::Incomplete { need, until }) => {
                    assert!(need == 0 || need > data.len() - pos);
                    if let Some(u) = until {
                        assert!(u.from == data.len() - pos && u.limit > u.from, "{u:?}");
                    }
                    break;
                }
                Err(_) => break,
            }
        }
    }
});
