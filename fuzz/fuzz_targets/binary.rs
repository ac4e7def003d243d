//! The binary readers and the distribution rules over arbitrary bytes: they must never panic,
//! whatever PostgreSQL's datums (or a corrupt page) hold.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stage_norm_core::{binary, dist};

fuzz_target!(|data: &[u8]| {
    let _ = binary::numeric(data);
    let classify = |k: &[u8]| if k == b"seed" { Some((1, true)) } else if k.is_empty() { None } else { Some((0, false)) };
    // The trigger's fast path, cold and warm memo; where it answers, `verdict` must agree.
    let mut memo = dist::KeyMemo::EMPTY;
    let quick = dist::quick_verdict(data, classify, Some(&mut memo));
    assert_eq!(quick, dist::quick_verdict(data, classify, Some(&mut memo)));
    if let Some(doc) = binary::jsonb(data) {
        let v = dist::verdict(&doc, classify);
        if let Some(q) = quick {
            assert_eq!(q, v);
        }
        let _ = dist::reasons(&doc, classify);
        if let binary::Jsonb::Object(o) = doc {
            let _ = dist::canonical_form(&o, classify).map(|f| f.1.len());
        }
    }
    if let Some(a) = binary::array(data, 4) {
        for e in a.elements().take(100_000) {
            let _ = e.map(|(v, h)| v.len() + h);
        }
        let _ = a.dims();
    }
});
