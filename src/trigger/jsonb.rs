//! The stage distribution kind (jsonb): valid and canonical passes; valid with variant keys is
//! rewritten to its canonical form (keys merged, weights kept exactly); anything else is a
//! problem with every reason (`crate::distributions`, `stage_norm_core::dist`).
use super::*;
use crate::distributions;
use stage_norm_core::dist::Verdict as Dist;

/// `build`: make the rewritten datum (not in shadow mode, which only counts).
#[inline]
pub(super) unsafe fn judge<'a>(col: &Column, datum: pg_sys::Datum, write: Write, build: bool) -> Judged<'a> {
    let bytes = distributions::jsonb_bytes(datum);
    match distributions::distribution_verdict(bytes) {
        Dist::Canonical => Judged::Passed,
        Dist::Normalizable if write.referential_action(col) => Judged::Problem(
            Problem::Structured(Box::new(Structured { what: WHAT, reasons: vec![FK_ACTION_REASON.into()], total: 1, raw: bytes })),
            None,
        ),
        Dist::Normalizable if !build => Judged::Rewrite(Rewrite::replacing(pg_sys::Datum::from(0))),
        Dist::Normalizable => match distributions::canonical_distribution(bytes) {
            Some(Some(d)) => Judged::Rewrite(Rewrite::replacing(d)),
            Some(None) => Judged::Passed,
            None => problem(bytes),
        },
        Dist::Invalid => problem(bytes),
    }
}

const WHAT: &str = "stage distribution";

fn problem(bytes: &[u8]) -> Judged<'_> {
    let mut reasons = distributions::distribution_reasons(bytes);
    let total = reasons.len().max(1);
    reasons.truncate(stage_norm_core::dist::DETAIL_REASONS);
    if reasons.is_empty() {
        reasons.push("not a valid distribution".into());
    }
    Judged::Problem(Problem::Structured(Box::new(Structured { what: WHAT, reasons, total, raw: bytes })), None)
}
