//! Stage distributions: jsonb objects, stage -> weight (docs/distributions.md). Read in their
//! binary form (`stage_norm_core::binary`) where they lie, with no text round trip and no serde;
//! judged by `stage_norm_core::dist`; built again only when they must change (`pushJsonbValue`).
//! Keys are classified through the cache as text values are: the configured set's canonical
//! names first, then its rules and aliases. Used by the trigger's jsonb columns
//! (`trigger/jsonb.rs`) and by three SQL functions, plain C functions declared in
//! sql/distributions.sql: they take and return jsonb as datums, which pgrx's own types would
//! convert through serde.
use std::ffi::c_int;

use pgrx::pg_sys;
use pgrx::prelude::*;
use stage_norm_core::binary::{self, Jsonb};
use stage_norm_core::dist::{self, KeyClass, Verdict, Weight};
use stage_norm_core::StageId;

use crate::cache::{self, classify_key as classify};
use crate::server::{arg, return_null, varlena_bytes};

/// Canonical names only (no rules, no aliases): what `is_valid_stage_distribution` accepts.
#[inline]
fn classify_canonical(bytes: &[u8]) -> KeyClass {
    cache::canonical_id_bytes(bytes).map(|id| (id, true))
}

/// The contents of a jsonb datum (after its varlena header; detoasted if needed, a short header
/// kept: jsonb's offsets are relative, so its alignment does not matter).
#[inline(always)]
pub unsafe fn jsonb_bytes<'a>(d: pg_sys::Datum) -> &'a [u8] {
    varlena_bytes(d)
}

/// Reads a jsonb document; a malformed one (never from PostgreSQL) reads as not an object.
#[inline]
pub fn read_jsonb(bytes: &[u8]) -> Jsonb<'_> {
    binary::jsonb(bytes).unwrap_or(Jsonb::Other("unreadable"))
}

/// The verdict on a distribution (keys by [`classify`]).
#[inline]
pub fn distribution_verdict(bytes: &[u8]) -> Verdict {
    // SAFETY: single-threaded; cleared by the cache's reload, never held across it.
    match dist::quick_verdict(bytes, classify, Some(unsafe { cache::KEY_MEMO.get() })) {
        Some(v) => v,
        None => dist::verdict(&read_jsonb(bytes), classify),
    }
}

/// Every reason why a distribution is invalid (empty when it can be normalized).
pub fn distribution_reasons(bytes: &[u8]) -> Vec<String> {
    dist::reasons(&read_jsonb(bytes), classify)
}

/// The canonical form of a distribution as a new jsonb datum (current memory context), or None
/// when it is invalid; `Some(None)` when it is canonical already (the input is its own form).
pub unsafe fn canonical_distribution(bytes: &[u8]) -> Option<Option<pg_sys::Datum>> {
    let Jsonb::Object(obj) = read_jsonb(bytes) else { return None };
    let (canonical, form) = dist::canonical_form(&obj, classify)?;
    Some((!canonical).then(|| build_distribution(&form)))
}

unsafe fn build_distribution(form: &[(StageId, Weight)]) -> pg_sys::Datum {
    use pg_sys::JsonbIteratorToken::*;
    let set = cache::set();
    let mut state: *mut pg_sys::JsonbParseState = std::ptr::null_mut();
    pg_sys::pushJsonbValue(&mut state, WJB_BEGIN_OBJECT, std::ptr::null_mut());
    for (id, w) in form {
        let name = set.name(*id);
        let mut k: pg_sys::JsonbValue = std::mem::zeroed();
        k.type_ = pg_sys::jbvType::jbvString;
        k.val.string.len = name.len() as c_int;
        // The set's own bytes: they outlive this call (the set changes only between statements).
        k.val.string.val = name.as_ptr().cast_mut().cast();
        pg_sys::pushJsonbValue(&mut state, WJB_KEY, &mut k);
        let mut v: pg_sys::JsonbValue = std::mem::zeroed();
        v.type_ = pg_sys::jbvType::jbvNumeric;
        v.val.numeric = match w {
            // The input's own numeric (jsonb copies it with VARSIZE_ANY; it is only read).
            Weight::One(raw) => raw.as_ptr().cast_mut().cast(),
            Weight::Merged(s) => {
                let c = std::ffi::CString::new(s.as_str()).unwrap_or_default();
                pg_sys::DirectFunctionCall3Coll(
                    Some(numeric_in),
                    pg_sys::InvalidOid,
                    pg_sys::Datum::from(c.as_ptr()),
                    pg_sys::Datum::from(pg_sys::InvalidOid),
                    pg_sys::Datum::from(-1i32),
                )
                .cast_mut_ptr()
            }
        };
        pg_sys::pushJsonbValue(&mut state, WJB_VALUE, &mut v);
    }
    let res = pg_sys::pushJsonbValue(&mut state, WJB_END_OBJECT, std::ptr::null_mut());
    pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(res))
}

// ---------------------------------------------------------------------------------------------
// SQL functions (STRICT: never called with NULL).

unsafe fn text_array(items: &[String]) -> pg_sys::Datum {
    let mut elems: Vec<pg_sys::Datum> = items
        .iter()
        .map(|s| {
            // In the database's encoding (crate::encoding): the reasons quote keys and values.
            let b = crate::encoding::server_bytes(s);
            pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(b.as_ptr().cast(), b.len() as c_int))
        })
        .collect();
    pg_sys::Datum::from(pg_sys::construct_array(
        elems.as_mut_ptr(),
        elems.len() as c_int,
        pg_sys::TEXTOID,
        -1,
        false,
        b'i' as std::ffi::c_char,
    ))
}

#[pg_guard]
unsafe extern "C-unwind" fn normalize_stage_distribution_body(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    cache::refresh();
    match canonical_distribution(jsonb_bytes(arg(fcinfo, 0))) {
        Some(Some(d)) => d,
        Some(None) => arg(fcinfo, 0),
        None => return_null(fcinfo),
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn stage_distribution_errors_body(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    cache::refresh();
    text_array(&distribution_reasons(jsonb_bytes(arg(fcinfo, 0))))
}

#[pg_guard]
unsafe extern "C-unwind" fn is_valid_stage_distribution_body(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    cache::refresh();
    let bytes = jsonb_bytes(arg(fcinfo, 0));
    let v = dist::quick_verdict(bytes, classify_canonical, None).unwrap_or_else(|| dist::verdict(&read_jsonb(bytes), classify_canonical));
    pg_sys::Datum::from(v == Verdict::Canonical)
}

crate::c_function!(normalize_stage_distribution, pg_finfo_normalize_stage_distribution, normalize_stage_distribution_body);
crate::c_function!(stage_distribution_errors, pg_finfo_stage_distribution_errors, stage_distribution_errors_body);
crate::c_function!(is_valid_stage_distribution, pg_finfo_is_valid_stage_distribution, is_valid_stage_distribution_body);

extern "C-unwind" {
    /// numeric.c's fmgr entry point (pgrx binds a guarded Rust wrapper under this name; a
    /// function pointer needs the C symbol). Called through DirectFunctionCall3Coll.
    fn numeric_in(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum;
}
