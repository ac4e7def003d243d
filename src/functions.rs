//! SQL-callable functions over the pure normalizer. Volatility labels are the contract:
//! only functions that read `stage_norm.aliases` are STABLE; the rest are IMMUTABLE.
use pgrx::prelude::*;
use stage_norm_core::{key_of, BUILTIN};

use crate::cache;

/// The canonical stage of `label` (built-in rules and DBA-defined aliases), NULL when unknown.
/// STABLE because it reads `stage_norm.aliases` (through the backend cache).
#[pg_extern(stable, strict, parallel_safe)]
fn normalize_stage(label: &str) -> Option<&'static str> {
    cache::refresh();
    cache::classify(label).map(|id| BUILTIN.name(id))
}

/// The canonical stage of `label` by the built-in rules alone (no aliases): IMMUTABLE, for index
/// expressions, generated columns and distributed UPDATEs.
#[pg_extern(immutable, strict, parallel_safe)]
fn normalize_stage_builtin(label: &str) -> Option<&'static str> {
    cache::classify_builtin(label).map(|id| BUILTIN.name(id))
}

/// True exactly for the canonical stage names; for CHECK constraints and indexes.
#[pg_extern(immutable, strict, parallel_safe)]
pub fn is_canonical_stage(label: &str) -> bool {
    BUILTIN.is_canonical(label)
}

/// The canonical stages, in stage order.
#[pg_extern(immutable, parallel_safe)]
fn canonical_stages() -> SetOfIterator<'static, &'static str> {
    SetOfIterator::new(BUILTIN.stages.iter().map(|s| &**s))
}

/// The matching key of `label` (steps 1-4 of the contract): what aliases are keyed by.
#[pg_extern(immutable, strict, parallel_safe)]
fn stage_key(label: &str) -> String {
    key_of(label)
}

/// Internal: is the caller inside an explicit transaction block (BEGIN ... )? Procedures that
/// COMMIT between steps use it to fail fast instead of half-way.
#[pg_extern(volatile, parallel_restricted, name = "_in_transaction_block")]
pub fn in_transaction_block() -> bool {
    unsafe { pg_sys::IsTransactionBlock() }
}

/// Internal: the effective mode of table `tbl` for this session (what the trigger would use now).
#[pg_extern(stable, strict, parallel_safe, name = "_effective_mode")]
fn effective_mode(tbl: pg_sys::Oid) -> &'static str {
    cache::refresh();
    crate::trigger::effective_mode(crate::trigger::override_mode_of(tbl)).name()
}

/// Internal: this backend's trigger counts by table.
#[pg_extern(volatile, parallel_restricted, name = "_session_counters")]
#[allow(clippy::type_complexity)]
fn session_counters() -> TableIterator<
    'static,
    (
        name!(relid, pg_sys::Oid),
        name!(passed, i64),
        name!(normalized, i64),
        name!(warned, i64),
        name!(rejected, i64),
        name!(would_normalize, i64),
        name!(would_reject, i64),
        name!(unchanged, i64),
        name!(nulls, i64),
    ),
> {
    TableIterator::new(
        crate::trigger::session_counts()
            .into_iter()
            .map(|(relid, c)| (relid, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7])),
    )
}
