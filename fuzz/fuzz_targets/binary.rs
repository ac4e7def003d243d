//! The binary readers and the distribution rules over arbitrary bytes: they must never panic,
//! whatever PostgreSQL's datums (or a corrupt page) hold.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stage_norm_core::{binary, dist};

fuzz_target!(|data: &[u8]| {
    let _ = binary::numeric(data);
    if let Some(doc) = binary::jsonb(data) {
        let classify = |k: &[u8]| if k == b"seed" { Some((1, true)) } else if k.is_empty() { None } else { Some((0, false)) };
        let _ = dist::verdict(&doc, classify);
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
