//! Fuzzes the pure normalizer: any bytes that are UTF-8 must classify without panicking, give a
//! canonical stage or nothing, and keep the ASCII fast path and the Unicode path in agreement.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stage_norm_core::{make_key, BUILTIN};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let mut buf = String::new();
    if let Some(id) = BUILTIN.classify(s, None, &mut buf) {
        assert!(BUILTIN.is_canonical(BUILTIN.name(id)));
    }
    make_key(s, &mut buf);
    // Appending separators and white space never changes the key.
    let padded = format!(" {s}_-.\u{3000}\u{200B}");
    let mut buf2 = String::new();
    make_key(&padded, &mut buf2);
    assert_eq!(buf, buf2);
});
