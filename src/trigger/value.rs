//! The text column kind: reading a governed value's bytes, and comparing two values.
use super::*;

/// The bytes of a text datum: read in place unless compressed or external (then detoasted).
#[inline(always)]
pub(crate) unsafe fn varlena_bytes<'a>(d: pg_sys::Datum) -> &'a [u8] {
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


/// What a column kind decided about one value.
pub(super) enum Judged<'a> {
    /// Canonical already: stored as it is.
    Passed,
    /// A known variant (or a valid structured value with variants): rewrite it.
    Rewrite(Rewrite),
    /// Not stored as canonical; for a stage array under warn, the array with its known
    /// elements rewritten (its unknown ones kept).
    Problem(Problem<'a>, Option<pg_sys::Datum>),
}

/// A rewrite of one column: the new datum and, for an in-place rewrite (text only), the old
/// value's bytes in the row and the new bytes.
pub(super) struct Rewrite {
    pub(super) value: pg_sys::Datum,
    pub(super) old: *mut u8,
    pub(super) payload: (*const u8, usize),
}

impl Rewrite {
    /// A rewrite that is never made inside the row (a new jsonb or array datum).
    pub(super) fn replacing(value: pg_sys::Datum) -> Rewrite {
        Rewrite { value, old: std::ptr::null_mut(), payload: (std::ptr::NonNull::<u8>::dangling().as_ptr(), 0) }
    }
}

/// The text kind: a canonical name passes; a known variant is rewritten to its canonical datum
/// (in place when the column allows it); anything else is a problem.
#[inline(always)]
pub(super) unsafe fn judge_text<'a>(col: &Column, datum: pg_sys::Datum, is_update: bool) -> Judged<'a> {
    let mut bytes = varlena_bytes(datum);
    if col.pad_to.is_some() {
        while let [rest @ .., b' '] = bytes {
            bytes = rest;
        }
    }
    // Already canonical (the common case once a table is migrated): no key to build.
    // Sound because aliases cannot redefine what the built-in rules know (a CHECK on
    // stage_norm.aliases), and every canonical name is a built-in label of itself.
    if cache::canonical_id_bytes(bytes).is_some() {
        return Judged::Passed;
    }
    let why = match cache::classify_bytes(bytes) {
        None => Why::Unknown,
        // Not rewritable here: handled as the mode handles unknown values.
        Some(id) if col.domain.as_ref().is_some_and(|(_, ok)| !ok[usize::from(id)]) => Why::DomainRefuses(id),
        Some(id) if is_update && raw::InNoForceRLSOperation() => {
            // Only ri_triggers.c sets SECURITY_NOFORCE_RLS: this UPDATE is a foreign key's
            // referential action (checked only for a rewrite, which is rare).
            Why::ForeignKeyAction(id)
        }
        Some(id) => {
            let i = usize::from(id);
            return Judged::Rewrite(Rewrite {
                value: col.datums[i],
                old: if col.in_place { datum.cast_mut_ptr() } else { std::ptr::null_mut() },
                payload: col.payloads[i],
            });
        }
    };
    Judged::Problem(Problem::Text(bytes, why), None)
}

/// The reason given when a structured value that would be rewritten came through a foreign
/// key's referential action (see `Why::ForeignKeyAction`).
pub(super) const FK_ACTION_REASON: &str =
    "it came through a foreign-key action (ON UPDATE CASCADE, SET DEFAULT), which stage_norm never rewrites";
