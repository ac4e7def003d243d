//! The SQL functions on this session's state: what the trigger would do to a table now
//! (`_effective_mode`), what it counted (`_session_counters`, behind the `session_counters`
//! view), migrate's uncounted transactions, and whether a procedure runs inside a transaction
//! block. Internal: the SQL in sql/ calls them.
use pgrx::prelude::*;

use crate::cache;
use crate::trigger;

/// Internal: is the caller inside an explicit transaction block (BEGIN ... )? Procedures that
/// COMMIT between steps use it to fail fast instead of half-way.
#[pg_extern(volatile, parallel_restricted, name = "_in_transaction_block")]
pub fn in_transaction_block() -> bool {
    unsafe { pg_sys::IsTransactionBlock() }
}

/// Internal: this transaction's trigger work is not counted in the cluster-wide statistics
/// (migrate's own batches; called through `_migrate_uncounted`, which checks that the caller runs
/// a migration). EXECUTE is revoked from PUBLIC.
#[pg_extern(volatile, parallel_unsafe, name = "_uncounted_transaction")]
fn uncounted_transaction() {
    trigger::uncounted_transaction();
}

/// Internal: the effective mode of table `tbl` for this session (what the trigger would use now).
#[pg_extern(stable, strict, parallel_safe, name = "_effective_mode")]
fn effective_mode(tbl: pg_sys::Oid) -> &'static str {
    // SAFETY: a syscache lookup in a transaction.
    if unsafe { pg_sys::get_rel_relkind(tbl) } == 0 {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("relation with OID {} does not exist", u32::from(tbl)),
            "effective_mode",
        )
        .set_hint("Name an existing table, e.g. 'public.portfolio'::regclass (a regclass of a dropped table names nothing).")
        .report(PgLogLevel::ERROR);
    }
    cache::refresh();
    trigger::effective_mode(trigger::override_mode_of(tbl)).name()
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
        trigger::session_counts()
            .into_iter()
            .map(|(relid, c)| (relid, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7])),
    )
}
