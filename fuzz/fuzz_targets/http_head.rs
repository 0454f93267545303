//! HTTP request heads and the static-file path check on arbitrary bytes: never panic, and a
//! path that passes `safe_path` never leaves the web root.
#![no_main]
use libfuzzer_sys::fuzz_target;
use romp::http::{parse_request, safe_path, Parsed};

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Complete(req, used)) = parse_request(data, 8192) {
        assert!(used <= data.len());
        let _ = req.keep_alive();
        if let Some(p) = safe_path(req.path()) {
            assert!(p.starts_with('/'));
            assert!(!p.split('/').any(|s| s == ".." || s == "."));
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(p) = safe_path(s) {
            assert!(!p.split('/').any(|s| s == ".."));
        }
    }
});
