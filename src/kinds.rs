//! The two structured kinds of stage values next to text: stage distributions (jsonb objects,
//! stage -> weight) and stage arrays (`text[]`, `varchar[]`). Shared by their SQL functions
//! (below) and by the trigger's column kinds (`trigger/jsonb.rs`, `trigger/array.rs`).
//!
//! Values are read in their binary form (`stage_norm_core::binary`): a jsonb container and an
//! array are walked where they lie, with no text round trip, no serde and no
//! `deconstruct_array`; only a value that must change is built again (`pushJsonbValue`,
//! `construct_md_array`). Keys and elements are classified through the same interface as text
//! values: the configured set's canonical names first, then the cache's rules and aliases.
//!
//! The SQL functions are plain C functions (declared in sql/distributions.sql): they take and
//! return jsonb and arrays as datums, which pgrx's own types would convert through serde or
//! `Vec<String>`. Each raw entry point calls a `#[pg_guard]`ed body.
use std::ffi::c_int;

use pgrx::pg_sys;
use pgrx::prelude::*;
use stage_norm_core::binary::{self, Array, Jsonb};
use stage_norm_core::dist::{self, KeyClass, Verdict, Weight};
use stage_norm_core::StageId;

use crate::cache;

/// What a distribution key or an array element is: `(stage, already canonical?)`, or None.
#[inline]
pub fn classify(bytes: &[u8]) -> KeyClass {
    if let Some(id) = cache::canonical_id_bytes(bytes) {
        return Some((id, true));
    }
    cache::classify_bytes(bytes).map(|id| (id, false))
}

/// Canonical names only (no rules, no aliases): what `is_valid_stage_distribution` accepts.
#[inline]
fn classify_canonical(bytes: &[u8]) -> KeyClass {
    cache::canonical_id_bytes(bytes).map(|id| (id, true))
}

/// The contents of a jsonb datum (after its varlena header; detoasted if needed, a short header
/// kept: jsonb's offsets are relative, so its alignment does not matter).
#[inline(always)]
pub unsafe fn jsonb_bytes<'a>(d: pg_sys::Datum) -> &'a [u8] {
    crate::trigger::varlena_bytes(d)
}

/// An array datum as bytes, 4-byte header included (detoasted, so aligned as arrays need).
#[inline(always)]
pub unsafe fn array_bytes<'a>(d: pg_sys::Datum) -> &'a [u8] {
    let v = pg_sys::pg_detoast_datum(d.cast_mut_ptr());
    std::slice::from_raw_parts(v.cast::<u8>(), pgrx::varlena::varsize_any(v))
}

/// Reads a jsonb document; a malformed one (never from PostgreSQL) reads as not an object.
#[inline]
pub fn read_jsonb(bytes: &[u8]) -> Jsonb<'_> {
    binary::jsonb(bytes).unwrap_or(Jsonb::Other("unreadable"))
}

/// Reads an array of text or varchar (typalign 'i').
#[inline]
pub fn read_array(bytes: &[u8]) -> Option<Array<'_>> {
    binary::array(bytes, 4)
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

/// The elements of an array as the trigger and `normalize_stages` see them.
pub struct ArrayScan {
    /// Some element is a known variant (needs a rewrite).
    pub changes: bool,
    /// Unknown elements: their count, and the first few (1-based position, quoted value).
    pub unknown: usize,
    pub first_unknown: Vec<(usize, String)>,
}

/// One pass over an array: which elements are variants, which are unknown.
pub fn scan_array(arr: &Array) -> ArrayScan {
    let mut s = ArrayScan { changes: false, unknown: 0, first_unknown: Vec::new() };
    for (i, e) in arr.elements().enumerate() {
        let Some((v, hdr)) = e else { continue };
        match classify(&v[hdr..]) {
            Some((_, true)) => {}
            Some(_) => s.changes = true,
            None => {
                s.unknown += 1;
                if s.first_unknown.len() < dist::DETAIL_REASONS {
                    s.first_unknown.push((i + 1, crate::trigger::quote(&v[hdr..]).replace('"', "\\\"")));
                }
            }
        }
    }
    s
}

/// The array rebuilt with each element's known variant replaced by its canonical name and each
/// unknown element kept (`unknown_to_null` false) or made NULL. Dimensions and lower bounds are
/// kept; the element type is `elemtype` (text or varchar: the same representation).
pub unsafe fn rebuild_array(arr: &Array, elemtype: pg_sys::Oid, unknown_to_null: bool) -> pg_sys::Datum {
    let canonical = crate::trigger::canonical_datums(0);
    let n = arr.len();
    let mut elems: Vec<pg_sys::Datum> = Vec::with_capacity(n);
    let mut nulls: Vec<bool> = Vec::with_capacity(n);
    for e in arr.elements() {
        let (d, null) = match e {
            None => (pg_sys::Datum::from(0), true),
            Some((v, hdr)) => match classify(&v[hdr..]) {
                Some((_, true)) => (pg_sys::Datum::from(v.as_ptr()), false),
                Some((id, false)) => (canonical[usize::from(id)], false),
                None if unknown_to_null => (pg_sys::Datum::from(0), true),
                None => (pg_sys::Datum::from(v.as_ptr()), false),
            },
        };
        elems.push(d);
        nulls.push(null);
    }
    let (mut dims, mut lbs) = arr.dims();
    if arr.ndim == 0 || elems.len() != n {
        return pg_sys::Datum::from(pg_sys::construct_empty_array(elemtype));
    }
    pg_sys::Datum::from(pg_sys::construct_md_array(
        elems.as_mut_ptr(),
        nulls.as_mut_ptr(),
        arr.ndim as c_int,
        dims.as_mut_ptr(),
        lbs.as_mut_ptr(),
        elemtype,
        -1,
        false,
        b'i' as std::ffi::c_char,
    ))
}

/// The element type of an array datum.
unsafe fn array_elemtype(bytes: &[u8]) -> pg_sys::Oid {
    pg_sys::Oid::from(u32::from_le_bytes(bytes[12..16].try_into().unwrap_or([0; 4])))
}

// ---------------------------------------------------------------------------------------------
// SQL functions (plain C functions; see the module comment). All STRICT: never called with NULL.

unsafe fn arg(fcinfo: pg_sys::FunctionCallInfo, i: usize) -> pg_sys::Datum {
    (*fcinfo).args.as_slice(i + 1)[i].value
}

unsafe fn return_null(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    (*fcinfo).isnull = true;
    pg_sys::Datum::from(0)
}

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

#[pg_guard]
unsafe extern "C-unwind" fn normalize_stages_body(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    cache::refresh();
    let bytes = array_bytes(arg(fcinfo, 0));
    let Some(arr) = read_array(bytes) else { return return_null(fcinfo) };
    let scan = scan_array(&arr);
    if !scan.changes && scan.unknown == 0 {
        return pg_sys::Datum::from(bytes.as_ptr());
    }
    rebuild_array(&arr, array_elemtype(bytes), true)
}

#[pg_guard]
unsafe extern "C-unwind" fn is_canonical_stage_array_body(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    cache::refresh();
    let bytes = array_bytes(arg(fcinfo, 0));
    let ok = read_array(bytes).is_some_and(|arr| {
        let mut n = 0;
        let all = arr.elements().all(|e| {
            n += 1;
            e.is_none_or(|(v, hdr)| cache::canonical_id_bytes(&v[hdr..]).is_some())
        });
        all && n == arr.len()
    });
    pg_sys::Datum::from(ok)
}

macro_rules! c_function {
    ($name:ident, $finfo:ident, $body:ident) => {
        #[no_mangle]
        pub unsafe extern "C-unwind" fn $name(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
            $body(fcinfo)
        }
        crate::pg_finfo_v1!($finfo);
    };
}

c_function!(normalize_stage_distribution, pg_finfo_normalize_stage_distribution, normalize_stage_distribution_body);
c_function!(stage_distribution_errors, pg_finfo_stage_distribution_errors, stage_distribution_errors_body);
c_function!(is_valid_stage_distribution, pg_finfo_is_valid_stage_distribution, is_valid_stage_distribution_body);
c_function!(normalize_stages, pg_finfo_normalize_stages, normalize_stages_body);
c_function!(is_canonical_stage_array, pg_finfo_is_canonical_stage_array, is_canonical_stage_array_body);

extern "C-unwind" {
    /// numeric.c's fmgr entry point (pgrx binds a guarded Rust wrapper under this name; a
    /// function pointer needs the C symbol). Called through DirectFunctionCall3Coll.
    fn numeric_in(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum;
}
