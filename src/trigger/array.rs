//! The stage array kind (`text[]`, `varchar[]`): each element is judged like a text value.
//! All canonical (NULL elements allowed) passes; known variants only: rewritten element by
//! element; any unknown element makes the array a problem (under warn, its known elements are
//! still rewritten and the unknown ones kept).
use super::*;
use crate::arrays;

const WHAT: &str = "stage array";

/// `build`: make the rewritten datum (not in shadow mode, which only counts).
#[inline]
pub(super) unsafe fn judge<'a>(col: &Column, datum: pg_sys::Datum, elemtype: pg_sys::Oid, write: Write, build: bool) -> Judged<'a> {
    let bytes = arrays::array_bytes(datum);
    let Some(arr) = arrays::read_array(bytes) else {
        let reasons = vec!["the array cannot be read".to_string()];
        return Judged::Problem(Problem::Structured(Box::new(Structured { what: WHAT, reasons, total: 1, raw: bytes })), None);
    };
    let scan = arrays::scan_array(&arr);
    if !scan.changes && scan.unknown == 0 {
        return Judged::Passed;
    }
    let fk_action = scan.changes && write.referential_action(col);
    if scan.unknown == 0 && !fk_action {
        let d = if build { arrays::rebuild_array(&arr, elemtype, false) } else { pg_sys::Datum::from(0) };
        return Judged::Rewrite(Rewrite::replacing(d));
    }
    let mut reasons: Vec<String> = scan
        .first_unknown
        .iter()
        .map(|(i, v)| format!("element {i} \"{v}\" is not a known investment stage"))
        .collect();
    let mut total = scan.unknown;
    if fk_action {
        reasons.insert(0, FK_ACTION_REASON.into());
        total += 1;
    }
    reasons.truncate(stage_norm_core::dist::DETAIL_REASONS);
    let partial = (build && scan.changes && !fk_action).then(|| arrays::rebuild_array(&arr, elemtype, false));
    Judged::Problem(Problem::Structured(Box::new(Structured { what: WHAT, reasons, total, raw: bytes })), partial)
}
