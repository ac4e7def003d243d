//! The SQL functions on stage labels (text), over the pure normalizer: normalize_stage and its
//! kin, the check helpers, the stage set's listing, stage_key. Volatility labels are the contract
//! (docs/normalization.md, "Honesty"): `normalize_stage_builtin` and `stage_key` know only the
//! default set and built-in rules, and are truly IMMUTABLE; `is_canonical_stage` follows the
//! configured set and is IMMUTABLE because a change of the set is refused while an index, a
//! generated column, a materialized view or a domain depends on it, re-checks every CHECK that
//! does, and invalidates cached plans; the functions that read aliases or list the set are
//! STABLE.
//!
//! Text arguments are read as bytes ([`Label`]), never as `&str`: a text datum is not always
//! valid UTF-8 (a `SQL_ASCII` database, a binary-coercible cast from bytea, a C function), and
//! pgrx's `&str` either assumes it is (undefined behaviour, a crash in a UTF8 database) or
//! panics. Bytes that are not UTF-8 are an unknown label (NULL, false); only `stage_key`, which
//! must return a key, refuses them with SQLSTATE 22021.
use pgrx::callconv::{Arg, ArgAbi};
use pgrx::prelude::*;
use stage_norm_core::{as_utf8, key_of, StageSet, BUILTIN};

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

/// `stage_norm.normalize_stage(text)`: the canonical stage of a label (the set's rules and the
/// DBA's aliases), NULL when unknown. STABLE because it reads `stage_norm.aliases` (through the
/// backend cache).
///
/// A raw C entry point (declared in sql/labels.sql under the symbol 0.1.0's SQL binds), not a
/// `#[pg_extern]`: pgrx's per-call guard (`sigsetjmp`, thread check, argument boxing) was a
/// third of a call, and the label is classified through the cache's memo as the trigger does
/// (docs/benchmarks.md, #31). It holds only plain data: the calls that can raise (the cache's
/// reload, guarded; detoasting and the result's allocation, through `server::raw`, whose errors
/// longjmp as PostgreSQL's do instead of becoming a Rust panic with no guard above) leave nothing
/// to unwind, and the pure classification runs under `catch_unwind`; the aliases, when a label
/// needs them and they are not read yet, are read outside it, guarded.
#[no_mangle]
pub unsafe extern "C-unwind" fn normalize_stage_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    if !cache::fresh() {
        refresh();
    }
    let bytes = crate::server::varlena_bytes_unguarded(crate::server::arg(fcinfo, 0));
    let classify = || std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache::classify_bytes_if_loaded(bytes)));
    let id = match classify() {
        Ok(Some(id)) => id,
        // A label the rules do not know, and the aliases not read yet in this backend since the
        // last reload: read them (guarded: a catalog scan may raise) and classify again.
        Ok(None) => {
            load_aliases();
            match classify() {
                Ok(Some(id)) => id,
                _ => classification_failed(),
            }
        }
        Err(_) => classification_failed(),
    };
    match id {
        Some(id) => {
            let name = cache::set().name(id);
            pg_sys::Datum::from(crate::server::raw::cstring_to_text_with_len(name.as_ptr().cast(), name.len() as std::ffi::c_int))
        }
        None => crate::server::return_null(fcinfo),
    }
}

crate::pg_finfo_v1!(pg_finfo_normalize_stage_wrapper);

#[pg_guard]
extern "C-unwind" fn refresh() {
    cache::refresh();
}

#[cold]
#[pg_guard]
extern "C-unwind" fn load_aliases() {
    cache::load_aliases();
}

#[cold]
#[pg_guard]
extern "C-unwind" fn classification_failed() -> ! {
    pgrx::pg_sys::panic::ErrorReport::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "stage_norm.normalize_stage: classifying the label failed", "normalize_stage")
        .set_hint("This is a bug in stage_norm: please report the label.")
        .report(PgLogLevel::ERROR);
    unreachable!()
}

/// The canonical stage of `label` by the built-in rules alone (no aliases): IMMUTABLE, for index
/// expressions, generated columns and distributed UPDATEs.
#[pg_extern(immutable, strict, parallel_safe)]
fn normalize_stage_builtin(label: Label) -> Option<&'static str> {
    cache::classify_builtin(as_utf8(label.0)?).map(|id| BUILTIN.name(id))
}

/// True exactly for the canonical stage names of the configured set; for CHECK constraints and
/// indexes (see the module comment for why IMMUTABLE is true).
#[pg_extern(immutable, strict, parallel_safe)]
pub fn is_canonical_stage(label: Label) -> bool {
    cache::refresh();
    cache::set().is_canonical_bytes(label.0)
}

/// The canonical stages of the configured set, in stage order.
#[pg_extern(stable, parallel_safe)]
fn canonical_stages() -> SetOfIterator<'static, String> {
    cache::refresh();
    SetOfIterator::new(cache::set().stages.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

/// The position (1 = the first stage) of a canonical stage in the configured set; NULL for
/// anything else. `ORDER BY stage_rank(stage)`, `WHERE stage_rank(stage) >= stage_rank('series-b')`.
#[pg_extern(stable, strict, parallel_safe)]
fn stage_rank(stage: Label) -> Option<i32> {
    cache::refresh();
    cache::set().canonical_id_bytes(stage.0).map(|id| i32::from(id) + 1)
}

/// Internal: the canonical stage of `label` by the configured set's rules, without aliases
/// (what aliases may not redefine).
#[pg_extern(stable, strict, parallel_safe, name = "_normalize_stage_rules")]
fn normalize_stage_rules(label: Label) -> Option<&'static str> {
    cache::refresh();
    let set = cache::set();
    set.classify_bytes(label.0, None, &mut String::new()).map(|id| set.name(id))
}

/// Internal: the configured set, each stage with its position and the built-in forms it takes.
#[pg_extern(stable, parallel_safe, name = "_stage_forms")]
fn stage_forms() -> TableIterator<'static, (name!(position, i32), name!(stage, String), name!(forms, Vec<String>))> {
    cache::refresh();
    let set = cache::set();
    let rows: Vec<_> =
        (0..set.stages.len()).map(|i| (i as i32 + 1, set.stages[i].to_string(), set.forms(i as u8))).collect();
    TableIterator::new(rows)
}

/// Internal: raises 22023 when `stages` (the names, one per line) is not a valid stage set, and
/// 22021 when a name is not valid UTF-8. The names come as one text read as bytes (see
/// [`Label`]): a `text[]` argument would go through pgrx's `&str`.
#[pg_extern(immutable, strict, parallel_safe, name = "_check_stage_set")]
fn check_stage_set(stages: Label) -> bool {
    refuse_nul(stages.0, "a stage name", "set_stages");
    let Some(text) = as_utf8(stages.0) else {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            "a stage name is not valid UTF-8",
            "set_stages",
        )
        .set_hint("Stage names are lowercase ASCII letters, digits, \"-\" and \"+\".")
        .report(PgLogLevel::ERROR);
        unreachable!()
    };
    let names: Vec<&str> = text.split('\n').collect();
    if let Err(e) = StageSet::from_names(&names) {
        pgrx::pg_sys::panic::ErrorReport::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, e.to_string(), "set_stages")
            .set_detail(format!("The set asked for: {}.", names.join(", ")))
            .set_hint("Name the stages in order, e.g. SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'series-d', 'growth');")
            .report(PgLogLevel::ERROR);
    }
    true
}

/// Internal: the default stage names, in order.
#[pg_extern(immutable, parallel_safe, name = "_default_stages")]
fn default_stages() -> Vec<String> {
    BUILTIN.stages.iter().map(|s| s.to_string()).collect()
}

/// The matching key of `label` (steps 1-4 of the contract): what aliases are keyed by. A label
/// holding a NUL byte or bytes that are not UTF-8 has no key: 22021 (an alias keyed by such a
/// label would be cut at the NUL by whatever reads it as a C string, and could redefine a stage).
#[pg_extern(immutable, strict, parallel_safe)]
fn stage_key(label: Label) -> String {
    refuse_nul(label.0, "the label", "stage_key");
    match as_utf8(label.0) {
        Some(text) => key_of(text),
        None => {
            let n = label.0.len();
            pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
                "stage_norm.stage_key: the label is not valid UTF-8",
                "stage_key",
            )
            .set_detail(if n == 1 { "The label's one byte is not valid UTF-8.".to_string() } else { format!("The label's {n} bytes do not form valid UTF-8.") })
            .set_hint("Aliases and keys are made of text; fix the encoding of the label first (convert_from(bytes, 'LATIN1'), for example).")
            .report(PgLogLevel::ERROR);
            unreachable!()
        }
    }
}

/// Internal: raises 22021 when `value` (`what`, e.g. "the stage") holds a NUL byte (see
/// [`refuse_nul`]); for the configuration routines written in PL/pgSQL.
#[pg_extern(immutable, strict, parallel_safe, name = "_refuse_nul")]
fn refuse_nul_sql(value: Label, what: Label, function: Label) -> bool {
    refuse_nul(value.0, &String::from_utf8_lossy(what.0), &String::from_utf8_lossy(function.0));
    true
}

/// Raises 22021 when `bytes` (`what`, e.g. "the label") holds a NUL byte. PostgreSQL's own text
/// input never makes one, but a binary-coercible cast from bytea or a C function can.
pub fn refuse_nul(bytes: &[u8], what: &str, function: &str) {
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            format!("stage_norm.{function}: {what} holds a NUL byte"),
            "refuse_nul",
        )
        .set_detail(format!("Byte {} of {} is 0x00; text in PostgreSQL never holds one.", at + 1, bytes.len()))
        .set_hint("It came through a binary-coercible cast from bytea or a C function: remove the NUL bytes first.")
        .report(PgLogLevel::ERROR);
    }
}
