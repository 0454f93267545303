//! Header escaping: encode then decode gives the value back (1.2 always; 1.1 when there is no
//! CR, which 1.1 cannot express), and decoding arbitrary text never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use romp::stomp::escape::{decode, encode_into, Escaping};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for esc in [Escaping::V11, Escaping::V12] {
        let _ = decode(s, esc);
        if esc == Escaping::V11 && s.contains('\r') {
            continue;
        }
        let mut out = Vec::new();
        encode_into(&mut out, s, esc);
        let enc = std::str::from_utf8(&out).expect("escaping keeps UTF-8");
        assert!(!enc.contains('\n') && !enc.contains(':'));
        assert_eq!(decode(enc, esc).expect("our own escapes decode"), s);
    }
});
