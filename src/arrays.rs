//! Stage arrays: `text[]` and `varchar[]` columns of stages (docs/distributions.md). Read in
//! their binary form (`stage_norm_core::binary`) with no `deconstruct_array`; built again only
//! when an element must change (`construct_md_array`). Elements are classified through the cache
//! as text values are. Used by the trigger's array columns (`trigger/array.rs`) and by two SQL
//! functions, plain C functions declared in sql/distributions.sql.
use std::ffi::c_int;

use pgrx::pg_sys;
use pgrx::prelude::*;
use stage_norm_core::binary::{self, Array};
use stage_norm_core::dist;

use crate::cache::{self, classify_key as classify};
use crate::server::{arg, return_null};

/// An array datum as bytes, 4-byte header included (detoasted, so aligned as arrays need).
#[inline(always)]
pub unsafe fn array_bytes<'a>(d: pg_sys::Datum) -> &'a [u8] {
    let v = pg_sys::pg_detoast_datum(d.cast_mut_ptr());
    std::slice::from_raw_parts(v.cast::<u8>(), pgrx::varlena::varsize_any(v))
}

/// Reads an array of text or varchar (typalign 'i').
#[inline]
pub fn read_array(bytes: &[u8]) -> Option<Array<'_>> {
    binary::array(bytes, 4)
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
                    s.first_unknown.push((i + 1, crate::encoding::quote(&v[hdr..]).replace('"', "\\\"")));
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
    let canonical = cache::canonical_datums(0);
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
// SQL functions (STRICT: never called with NULL).

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

crate::c_function!(normalize_stages, pg_finfo_normalize_stages, normalize_stages_body);
crate::c_function!(is_canonical_stage_array, pg_finfo_is_canonical_stage_array, is_canonical_stage_array_body);
