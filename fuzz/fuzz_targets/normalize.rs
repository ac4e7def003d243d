//! Fuzzes the pure normalizer over arbitrary bytes (what a PostgreSQL text datum can hold, valid
//! UTF-8 or not): no panic; invalid UTF-8 is unknown; valid input gives a canonical stage or
//! nothing, and the ASCII fast path and the Unicode path agree.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stage_norm_core::{make_key, BUILTIN};

fuzz_target!(|data: &[u8]| {
    let mut buf = String::new();
    let by_bytes = BUILTIN.classify_bytes(data, None, &mut buf);
    let Ok(s) = std::str::from_utf8(data) else {
        assert_eq!(by_bytes, None);
        assert!(!BUILTIN.is_canonical_bytes(data));
        return;
    };
    let by_str = BUILTIN.classify(s, None, &mut buf);
    assert_eq!(by_bytes, by_str);
    if let Some(id) = by_str {
        assert!(BUILTIN.is_canonical(BUILTIN.name(id)));
    }
    make_key(s, &mut buf);
    // Appending separators and white space never changes the key.
    let padded = format!(" {s}_-.\u{3000}\u{200B}");
    let mut buf2 = String::new();
    make_key(&padded, &mut buf2);
    assert_eq!(buf, buf2);
});
