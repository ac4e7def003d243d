//! SQL-callable functions over the pure normalizer. Volatility labels are the contract:
//! only functions that read `stage_norm.aliases` are STABLE; the rest are IMMUTABLE.
//!
//! Text arguments are read as bytes ([`Label`]), never as `&str`: a text datum is not always
//! valid UTF-8 (a `SQL_ASCII` database, a binary-coercible cast from bytea, a C function), and
//! pgrx's `&str` either assumes it is (undefined behaviour, a crash in a UTF8 database) or
//! panics. Bytes that are not UTF-8 are an unknown label (NULL, false); only `stage_key`, which
//! must return a key, refuses them with SQLSTATE 22021.
use pgrx::callconv::{Arg, ArgAbi};
use pgrx::prelude::*;
use stage_norm_core::{as_utf8, key_of, BUILTIN};

use crate::cache;

/// A `text` argument as its raw bytes (detoasted), with no assumption about their encoding.
pub struct Label<'a>(pub &'a [u8]);

pgrx::impl_sql_translatable!(Label<'_>, arg_only = "text");

// SAFETY: the argument is declared `text` (above), a varlena; `&[u8]`'s FromDatum detoasts it
// and reads its bytes without interpreting them.
unsafe impl<'fcx> ArgAbi<'fcx> for Label<'fcx> {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        // STRICT functions are never called with NULL; an empty label stands in for safety.
        Label(unsafe { arg.unbox_arg_using_from_datum::<&'fcx [u8]>() }.unwrap_or(&[]))
    }
}

/// The canonical stage of `label` (built-in rules and DBA-defined aliases), NULL when unknown.
/// STABLE because it reads `stage_norm.aliases` (through the backend cache).
#[pg_extern(stable, strict, parallel_safe)]
fn normalize_stage(label: Label) -> Option<&'static str> {
    cache::refresh();
    cache::classify(as_utf8(label.0)?).map(|id| BUILTIN.name(id))
}

/// The canonical stage of `label` by the built-in rules alone (no aliases): IMMUTABLE, for index
/// expressions, generated columns and distributed UPDATEs.
#[pg_extern(immutable, strict, parallel_safe)]
fn normalize_stage_builtin(label: Label) -> Option<&'static str> {
    cache::classify_builtin(as_utf8(label.0)?).map(|id| BUILTIN.name(id))
}

/// True exactly for the canonical stage names; for CHECK constraints and indexes.
#[pg_extern(immutable, strict, parallel_safe)]
pub fn is_canonical_stage(label: Label) -> bool {
    BUILTIN.is_canonical_bytes(label.0)
}

/// The canonical stages, in stage order.
#[pg_extern(immutable, parallel_safe)]
fn canonical_stages() -> SetOfIterator<'static, &'static str> {
    SetOfIterator::new(BUILTIN.stages.iter().map(|s| &**s))
}

/// The matching key of `label` (steps 1-4 of the contract): what aliases are keyed by.
#[pg_extern(immutable, strict, parallel_safe)]
fn stage_key(label: Label) -> String {
    match as_utf8(label.0) {
        Some(text) => key_of(text),
        None => {
            pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
                "stage_norm.stage_key: the label is not valid UTF-8",
                "stage_key",
            )
            .set_detail(format!("The label holds {} bytes that do not form valid UTF-8.", label.0.len()))
            .set_hint("Aliases and keys are made of text; fix the encoding of the label first (convert_from(bytes, 'LATIN1'), for example).")
            .report(PgLogLevel::ERROR);
            unreachable!()
        }
    }
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
