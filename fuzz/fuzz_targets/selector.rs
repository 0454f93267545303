//! Selectors: parsing arbitrary text never panics, a refusal names a position inside the text,
//! and an accepted selector evaluates (without panicking) over headers drawn from the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use romp::selector::Selector;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    // The text's words double as header names and values, so comparisons meet real values.
    let words: Vec<&str> = s.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).take(8).collect();
    match Selector::parse(s) {
        Ok(sel) => {
            let headers: Vec<(&str, &str)> = words.iter().zip(words.iter().rev()).map(|(k, v)| (*k, *v)).collect();
            let _ = sel.matches(headers.as_slice());
            assert_eq!(sel.text(), s);
        }
        Err(e) => assert!(e.pos <= s.len(), "{e}"),
    }
});
