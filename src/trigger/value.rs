//! The text column kind: reading a governed value's bytes, and comparing two values.
use super::*;

/// The bytes of a text datum: read in place unless compressed or external (then detoasted).
#[inline(always)]
pub(super) unsafe fn varlena_bytes<'a>(d: pg_sys::Datum) -> &'a [u8] {
    let mut v = d.cast_mut_ptr::<pg_sys::varlena>();
    if pgrx::varlena::varatt_is_1b_e(v) || pgrx::varlena::varatt_is_4b_c(v) {
        v = pg_sys::pg_detoast_datum_packed(v);
    }
    let len = pgrx::varlena::varsize_any_exhdr(v);
    let data = pgrx::varlena::vardata_any(v) as *const u8;
    std::slice::from_raw_parts(data, len)
}

/// Do two values of a column hold the same bytes? The stored forms first (an unchanged value is
/// normally copied as it is, TOAST pointer included), then the detoasted contents.
#[inline(always)]
pub(super) unsafe fn same_value(a: pg_sys::Datum, b: pg_sys::Datum) -> bool {
    if a == b {
        return true;
    }
    let (pa, pb) = (a.cast_mut_ptr::<pg_sys::varlena>(), b.cast_mut_ptr::<pg_sys::varlena>());
    let (na, nb) = (pgrx::varlena::varsize_any(pa), pgrx::varlena::varsize_any(pb));
    if na == nb && std::slice::from_raw_parts(pa.cast::<u8>(), na) == std::slice::from_raw_parts(pb.cast::<u8>(), nb) {
        return true;
    }
    varlena_bytes(a) == varlena_bytes(b)
}

