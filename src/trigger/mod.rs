//! The write path: `stage_norm.normalize_trigger()` (BEFORE INSERT OR UPDATE, FOR EACH ROW) and
//! `stage_norm.summary_trigger()` (AFTER INSERT OR UPDATE, FOR EACH STATEMENT).
//!
//! Per row, for each governed column (the trigger's arguments):
//! 1. effective mode = min(table override, else `stage_norm.mode`; `stage_norm.max_mode`),
//!    capped at warn while the table's circuit breaker is tripped (`stats`); `off` returns the
//!    row untouched;
//! 2. on UPDATE, a value the statement did not change is left alone (`unchanged`);
//! 3. NULL is left alone (`nulls`); a canonical value passes (`passed`);
//! 4. a known variant is rewritten (`normalized`; `would_normalize` in shadow);
//! 5. an unknown value is stored and reported (`warned`), counted only (`would_reject`, shadow),
//!    or rejected with SQLSTATE 23514 (`rejected`, enforce, inside the canary percentage).
//!
//! Counts are kept per column in the entry and reach shared memory (`stats`, when preloaded) at
//! transaction end through `transaction_end`, or at once for a rejection; one call in
//! `stage_norm.latency_sample_every` is timed by the raw entry point.
//!
//! Everything per relation (attribute numbers, column types, the primary key, the schema and
//! table names) is resolved once and kept per trigger until a relcache invalidation of the
//! table; the override is memoized per cache generation. Labels are classified through the
//! cache's memo of recent labels. Rewrites are made inside the row when it is the slot's own
//! copy and the value keeps its size or shrinks (see `inplace`): in the walk itself when nothing
//! else moves (same size, or the value ends the row's data), else by the raw entry point, right
//! to left; a value that grows is written into a copy of the row (`inplace::grown`); the others
//! are one `heap_modify_tuple_by_cols` call, with canonical datums built once per backend.
//!
//! The rejection is thrown from the raw `extern "C-unwind"` entry point, after the guarded inner
//! function has returned: pgrx has no API for the SCHEMA/TABLE/COLUMN error fields, and an error
//! raised inside a guarded frame would lose them.
//!
//! Layout: this module is the straight walk (decide the mode, classify each column's value,
//! rewrite, count, report); [`entry`] is what is resolved once per table, [`value`] reads a
//! text value, [`report`] says what happened to a value that is not stored as canonical.
use std::collections::HashMap;
use std::ffi::{c_int, CStr, CString};
use std::mem::MaybeUninit;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed};

use pgrx::pg_sys;
use pgrx::prelude::*;
use stage_norm_core::{Fnv1a, StageId};

use crate::server::{raw, statement_trigger_data, trigger_data, varlena_bytes, Global};
use crate::cache;
use crate::guc::{self, Mode};
use crate::inplace;
use crate::stats;

mod array;
mod entry;
mod jsonb;
mod report;
mod value;

use entry::*;
use report::*;
use value::*;

pub use entry::session_counts;
pub(crate) use entry::logical_name;
pub use report::WARNINGS_PER_STATEMENT;

/// What happened to one governed value; the index of its counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Outcome {
    Passed,
    Normalized,
    Warned,
    Rejected,
    WouldNormalize,
    WouldReject,
    Unchanged,
    Nulls,
}
pub const OUTCOMES: usize = 8;
pub type Counts = [i64; OUTCOMES];

/// The override that applies to `relid`: its own, else its nearest partitioned ancestor's.
/// Call `cache::refresh()` first.
pub fn override_mode(relid: pg_sys::Oid, ancestors: &[pg_sys::Oid]) -> Option<Mode> {
    cache::table_mode(relid).or_else(|| ancestors.iter().find_map(|a| cache::table_mode(*a)))
}

/// The override of any table (the SQL function `effective_mode`; not on the hot path).
pub fn override_mode_of(relid: pg_sys::Oid) -> Option<Mode> {
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return cache::table_mode(relid);
        }
        let ancestors = partition_ancestors(rel);
        pg_sys::RelationClose(rel);
        override_mode(relid, &ancestors)
    }
}

/// The effective mode of a table for this session: min(override else stage_norm.mode, max_mode).
pub fn effective_mode(override_mode: Option<Mode>) -> Mode {
    override_mode.unwrap_or(guc::read(&guc::MODE)).min(guc::read(&guc::MAX_MODE))
}

/// Rewrites of one row collected before they are made (more are applied in batches).
const MAX_BATCH: usize = 4;

/// What the guarded part decided for a row, carried out by the raw entry point: plain data, so
/// that an error raised there skips no Rust destructor.
#[repr(C)]
struct Verdict {
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    /// The slot that holds `tuple` (tg_trigslot on INSERT, tg_newslot on UPDATE).
    slot: *mut pg_sys::TupleTableSlot,
    n: c_int,
    /// The row was already replaced by a batch flush: no in-row rewrite for this row.
    replaced: bool,
    /// The table's entry, where the raw entry point records a timed call's latency (null when
    /// the row was not judged, or was rejected).
    entry: *mut Entry,
    error: *mut pg_sys::ErrorData,
    /// The rewrites, `n` of them: left uninitialised beyond (measured: zeroing them cost every
    /// row, whatever its mode, about 10 instructions). Read through [`Verdict::col`] and its
    /// kin, which take an index below `n`. One array of records, not one array per field (the
    /// walk keeps one address for them), and last, so that the fields set for every row are
    /// contiguous (else the compiler zeroes the whole struct). Measured, #31: 6 and 5
    /// instructions per row.
    pending: [MaybeUninit<Pending>; MAX_BATCH],
}

/// One rewrite the walk left for the raw entry point.
#[repr(C)]
#[derive(Clone, Copy)]
struct Pending {
    col: c_int,
    value: pg_sys::Datum,
    /// The old value's bytes inside the tuple, for an in-place rewrite; null when the column
    /// may not be rewritten in place.
    old: *mut u8,
    /// The new value's bytes (without the varlena header).
    payload: (*const u8, usize),
}

/// A canonical payload's bytes (a column's `Canon::payload`, a rewrite's `payload`).
#[inline(always)]
unsafe fn slice_of((p, n): (*const u8, usize)) -> &'static [u8] {
    std::slice::from_raw_parts(p, n)
}

impl Verdict {
    // Each takes `i < n`: an entry `push_rewrite` wrote.
    #[inline(always)]
    unsafe fn col(&self, i: usize) -> c_int {
        self.pending[i].assume_init_ref().col
    }
    #[inline(always)]
    unsafe fn old(&self, i: usize) -> *mut u8 {
        self.pending[i].assume_init_ref().old
    }
    #[inline(always)]
    unsafe fn payload(&self, i: usize) -> &'static [u8] {
        slice_of(self.pending[i].assume_init_ref().payload)
    }
    /// The first `n` rewrites' columns and values, as `heap_modify_tuple_by_cols` takes them
    /// (with `NO_NULLS`: rewrites never write NULL).
    #[inline(always)]
    unsafe fn batch(&self, n: usize) -> ([c_int; MAX_BATCH], [pg_sys::Datum; MAX_BATCH]) {
        let mut cols = [0 as c_int; MAX_BATCH];
        let mut values = [pg_sys::Datum::from(0); MAX_BATCH];
        for i in 0..n {
            let p = self.pending[i].assume_init_ref();
            (cols[i], values[i]) = (p.col, p.value);
        }
        (cols, values)
    }
}

/// The `isnull` argument of `heap_modify_tuple_by_cols` for a batch: rewrites never write NULL.
const NO_NULLS: [bool; MAX_BATCH] = [false; MAX_BATCH];

/// The guarded part of the trigger: decides, and leaves the rewrite (or the error) in `v`.
#[pg_guard]
unsafe extern "C-unwind" fn normalize_row(fcinfo: pg_sys::FunctionCallInfo, v: *mut Verdict) {
    let v = &mut *v;
    let td = trigger_data(fcinfo, "normalize_trigger");
    let event = (*td).tg_event;
    let op = event & pg_sys::TRIGGER_EVENT_OPMASK;
    if event & pg_sys::TRIGGER_EVENT_TIMINGMASK != pg_sys::TRIGGER_EVENT_BEFORE
        || event & pg_sys::TRIGGER_EVENT_ROW == 0
        || (op != pg_sys::TRIGGER_EVENT_INSERT && op != pg_sys::TRIGGER_EVENT_UPDATE)
    {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "stage_norm.normalize_trigger() must be a BEFORE INSERT OR UPDATE ... FOR EACH ROW trigger",
            "normalize_trigger",
        )
        .set_hint("Attach it with stage_norm.attach(table, column, ...).")
        .report(PgLogLevel::ERROR);
    }
    let is_update = op == pg_sys::TRIGGER_EVENT_UPDATE;
    let mut tuple = if is_update { (*td).tg_newtuple } else { (*td).tg_trigtuple };
    v.tuple = tuple;
    v.slot = if is_update { (*td).tg_newslot } else { (*td).tg_trigslot };
    if guc::read(&guc::MAX_MODE) == Mode::Off {
        return;
    }
    cache::refresh();
    let rel = (*td).tg_relation;
    let tupdesc = (*rel).rd_att;
    v.desc = tupdesc;
    let tgoid = (*(*td).tg_trigger).tgoid;

    // SAFETY: single-threaded; nothing called below reaches ENTRIES (the relcache callback only
    // queues relids in atomics).
    let entries = unsafe { ENTRIES.get() }.get_or_insert_with(FnvMap::default);
    {
        apply_invalidations(entries);
        let last = LAST.get();
        let e: &mut Entry = if last.0 == tgoid && !last.1.is_null() {
            &mut *last.1
        } else {
            let e = &mut **entries.entry(tgoid).or_insert_with(|| Box::new(build_entry_stable(td)));
            *last = (tgoid, e as *mut Entry);
            e
        };
        let generation = cache::generation();
        if e.mode_generation != generation {
            e.mode_generation = generation;
            e.override_mode = override_mode(e.relid, &e.ancestors);
        }
        let mut mode = effective_mode(e.override_mode);
        if mode == Mode::Off {
            return;
        }
        // The circuit breaker (stats): a tripped table is capped at warn, cluster-wide.
        if let Some(t) = e.table_slot {
            if mode == Mode::Enforce && stats::is_tripped(e.attached, t) {
                mode = Mode::Warn;
            }
        }
        // Counts reach shared memory at the end of the transaction: list the entry once per
        // transaction (XACT_GEN is 0, and never equal to an entry's 1.., without preload or
        // with stage_norm.track_stats off).
        let gen = *XACT_GEN.get();
        if e.dirty_gen != gen && gen != 0 {
            e.dirty_gen = gen;
            e.last_mode = mode;
            DIRTY.get().push(tgoid);
        }
        v.entry = e;
        let mut n = 0usize;
        for ci in 0..e.columns.len() {
            let col = &e.columns[ci];
            let attnum = col.attnum as i32;
            let mut isnull = false;
            let datum = crate::server::getattr(tuple, attnum, tupdesc, &mut isnull);
            if is_update {
                // Unchanged means equal to the old row's value, whatever the SET list says: a
                // BEFORE trigger that fires earlier may have changed a column the statement did
                // not target (tg_updatedcols does not show that).
                let mut old_null = false;
                let old = crate::server::getattr((*td).tg_trigtuple, attnum, tupdesc, &mut old_null);
                if old_null == isnull && (isnull || same_value(old, datum)) {
                    e.counts[ci][Outcome::Unchanged as usize] += 1;
                    continue;
                }
            }
            if isnull {
                e.counts[ci][Outcome::Nulls as usize] += 1;
                continue;
            }
            // Each kind judges its value (value.rs, jsonb.rs, array.rs); what passes or is
            // rewritten is settled here, the rest goes on to the mode. (One `settle` per kind,
            // inlined: the text path keeps its judgement in registers.)
            let build = mode != Mode::Shadow;
            let c = &mut e.counts[ci];
            let w = Write(if is_update { td } else { std::ptr::null_mut() });
            let settled = match col.kind {
                Kind::Text => settle(v, &mut n, &mut tuple, tupdesc, attnum, mode, c, judge_text(col, datum, w)),
                Kind::Jsonb => settle(v, &mut n, &mut tuple, tupdesc, attnum, mode, c, jsonb::judge(col, datum, w, build)),
                Kind::Array(t) => settle(v, &mut n, &mut tuple, tupdesc, attnum, mode, c, array::judge(col, datum, t, w, build)),
            };
            let Some((problem, partial)) = settled else { continue };
            // Unknown, invalid, or a known variant that may not be rewritten here.
            if !problem_value(v, &mut n, &mut tuple, tupdesc, e, ci, mode, gen, problem, partial) {
                return; // rejected: v.error is set
            }
        }
        v.n = n as c_int;
    }
}

/// A value that is not stored as canonical (unknown, invalid, or a known variant that may not
/// be rewritten here), handled as the mode says, and counted. False when the row is rejected
/// (`v.error` set). Out of line: the common rows never come here, and the walk keeps its
/// registers.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn problem_value(
    v: &mut Verdict,
    n: &mut usize,
    tuple: &mut pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
    e: &mut Entry,
    ci: usize,
    mode: Mode,
    gen: u64,
    problem: Problem,
    partial: Option<pg_sys::Datum>,
) -> bool {
    let col = &e.columns[ci];
    let outcome = match mode {
        Mode::Shadow => {
            log_sample(e, col, &problem, mode);
            Outcome::WouldReject
        }
        Mode::Enforce
            if {
                let percent = guc::read(&guc::ENFORCE_PERCENT);
                percent >= 100 || bucket(e, *tuple, tupdesc, problem.bytes()) < percent as u64
            } =>
        {
            e.counts[ci][Outcome::Rejected as usize] += 1;
            log_sample(e, col, &problem, mode);
            v.error = rejection(e, col, &problem);
            // Rejections reach shared memory at once (the breaker adds them up across
            // sessions as they happen); the transaction is about to abort.
            if gen != 0 {
                e.last_mode = mode;
                flush_entry(e, true);
            }
            v.entry = std::ptr::null_mut();
            return false;
        }
        // warn, or enforce outside the canary: stored (a stage array's known elements
        // rewritten) and reported.
        _ => {
            if let Some(d) = partial {
                push_rewrite(v, n, tuple, tupdesc, col.attnum as i32, Rewrite::replacing(d));
            }
            report_unknown(e, col, &problem, mode);
            Outcome::Warned
        }
    };
    e.counts[ci][outcome as usize] += 1;
    true
}

/// `stage_norm.normalize_trigger()`: the raw entry point (see the module comment). It holds
/// only plain data, so the two PostgreSQL calls that can longjmp (the error, and the tuple
/// rewrite, which can run out of memory) are made here, unguarded.
#[no_mangle]
pub unsafe extern "C-unwind" fn normalize_trigger(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let mut v = Verdict {
        tuple: std::ptr::null_mut(),
        desc: std::ptr::null_mut(),
        slot: std::ptr::null_mut(),
        n: 0,
        replaced: false,
        entry: std::ptr::null_mut(),
        error: std::ptr::null_mut(),
        pending: [MaybeUninit::uninit(); MAX_BATCH],
    };
    // Latency: one row in stage_norm.latency_sample_every is timed (clock reads cost more
    // than the rest of a canonical row's work; see docs/monitoring.md).
    let t0 = if *XACT_GEN.get() != 0 && {
        let n = SAMPLE.get();
        *n += 1;
        *n >= guc::read(&guc::LATENCY_SAMPLE_EVERY) as u32
    } {
        *SAMPLE.get() = 0;
        Some(std::time::Instant::now())
    } else {
        None
    };
    normalize_row(fcinfo, &mut v);
    if !v.error.is_null() {
        raw::ThrowErrorData(v.error);
    }
    // The rewrites the walk left (most rows have none: one test).
    if v.n > 0 {
        finish_rewrites(&mut v);
    }
    if let Some(t0) = t0 {
        if !v.entry.is_null() {
            let ns = t0.elapsed().as_nanos() as u64;
            let e = &mut *v.entry;
            e.hist[stats::bucket(ns)] += 1;
            e.hist_sum += ns;
        }
    }
    pg_sys::Datum::from(v.tuple)
}

/// Makes the rewrites the walk left in `v` (`v.n > 0`), and leaves in `v.tuple` the row to
/// return. One value that grows (`seriesB` -> `series-b`): a copy of the row with it, built
/// without deforming and forming the row again (`inplace::grown`, which declines at once any
/// other rewrite; tried first, since the walk made the other single rewrites it could). Then
/// what can be made inside the row, right to left; PostgreSQL builds the rest. Cannot raise
/// but for out of memory (unguarded: a longjmp, as PostgreSQL's own).
#[inline]
unsafe fn finish_rewrites(v: &mut Verdict) {
    if v.n == 1 && !v.replaced {
        if let Some(t) = inplace::grown(v.tuple, v.desc, v.col(0), v.old(0), v.payload(0)) {
            v.tuple = t;
            v.n = 0;
            return;
        }
    }
    if !v.replaced && inplace::slot_owns(v.slot, v.tuple) {
        rewrite_in_place(v);
    }
    if v.n > 0 {
        let ((mut cols, mut values), mut no_nulls) = (v.batch(v.n as usize), NO_NULLS);
        v.tuple = raw::heap_modify_tuple_by_cols(v.tuple, v.desc, v.n, cols.as_mut_ptr(), values.as_mut_ptr(), no_nulls.as_mut_ptr());
    }
}

/// Counts a value that passes, or adds its rewrite (counted; in shadow only counted); hands back
/// a problem for the mode to handle.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn settle<'a>(
    v: &mut Verdict,
    n: &mut usize,
    tuple: &mut pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
    attnum: i32,
    mode: Mode,
    counts: &mut Counts,
    judged: Judged<'a>,
) -> Option<(Problem<'a>, Option<pg_sys::Datum>)> {
    match judged {
        Judged::Passed => {
            counts[Outcome::Passed as usize] += 1;
            None
        }
        Judged::Rewrite(rw) => {
            if mode == Mode::Shadow {
                counts[Outcome::WouldNormalize as usize] += 1;
            } else {
                // What moves no other column is written into the row at once (the slot's own
                // copy: see `inplace`; never a primary-key column, which the canary's bucket
                // reads as written); the rest is left to the raw entry point.
                let now = rw.in_walk
                    && !v.replaced
                    && inplace::slot_owns(v.slot, *tuple)
                    && inplace::rewrite_in_walk(*tuple, attnum, rw.old, slice_of(rw.payload), (*v.slot).tts_nvalid as i32);
                if !now {
                    push_rewrite(v, n, tuple, tupdesc, attnum, rw);
                }
                counts[Outcome::Normalized as usize] += 1;
            }
            None
        }
        Judged::Problem(p, partial) => Some((p, partial)),
    }
}

/// Adds a rewrite to the verdict. More than MAX_BATCH rewrites in one row are applied here
/// (guarded): the row is then a new tuple that no slot owns, so no in-row rewrite for the rest,
/// by design (`v.replaced`), and no stale old-value pointers.
#[inline(always)]
unsafe fn push_rewrite(v: &mut Verdict, n: &mut usize, tuple: &mut pg_sys::HeapTuple, tupdesc: pg_sys::TupleDesc, attnum: i32, rw: Rewrite) {
    if *n == MAX_BATCH {
        let ((mut cols, mut values), mut no_nulls) = (v.batch(*n), NO_NULLS);
        *tuple = pg_sys::heap_modify_tuple_by_cols(*tuple, tupdesc, *n as c_int, cols.as_mut_ptr(), values.as_mut_ptr(), no_nulls.as_mut_ptr());
        v.tuple = *tuple;
        v.replaced = true;
        *n = 0;
    }
    // After a flush the old values' pointers are into the replaced tuple: none is kept.
    let old = if v.replaced { std::ptr::null_mut() } else { rw.old };
    v.pending[*n].write(Pending { col: attnum, value: rw.value, old, payload: rw.payload });
    *n += 1;
}

/// Makes what rewrites it can inside the row itself, right to left (a shrink moves only the
/// columns after it, so the old-value pointers of the columns before stay valid), and leaves
/// the others in `v` for `heap_modify_tuple_by_cols`. Cannot raise.
#[inline]
unsafe fn rewrite_in_place(v: &mut Verdict) {
    let n = v.n as usize;
    let nvalid = (*v.slot).tts_nvalid as i32;
    if n == 1 {
        // One governed column, the common case: no ordering or compaction (measured: 15
        // instructions per row of the benchmark's INSERT).
        if inplace::rewrite(v.tuple, v.desc, v.col(0), v.old(0), v.payload(0), nvalid) {
            v.n = 0;
        }
        return;
    }
    let mut order: [usize; MAX_BATCH] = std::array::from_fn(|i| i);
    order[..n].sort_unstable_by_key(|&i| std::cmp::Reverse(v.col(i)));
    let mut done = [false; MAX_BATCH];
    for &i in &order[..n] {
        done[i] = inplace::rewrite(v.tuple, v.desc, v.col(i), v.old(i), v.payload(i), nvalid);
    }
    let mut k = 0;
    for (i, &made) in done[..n].iter().enumerate() {
        if !made {
            v.pending[k] = v.pending[i];
            k += 1;
        }
    }
    v.n = k as c_int;
}

/// Transaction generation (stats): bumped at every flush; 0 when nothing goes to shared memory.
static XACT_GEN: Global<u64> = Global::new(0);
/// Entries (by trigger OID) that counted something in this transaction.
static DIRTY: Global<Vec<pg_sys::Oid>> = Global::new(Vec::new());
/// Rows since the last timed one.
static SAMPLE: Global<u32> = Global::new(0);
/// This transaction's writes are migrate's own (`uncounted_transaction`): its counts and latency
/// samples are dropped at transaction end instead of reaching shared memory.
static UNCOUNTED: Global<bool> = Global::new(false);

/// Marks the current transaction's trigger work as not the application's: a batch of
/// `stage_norm.migrate` (`_migrate_uncounted`), whose rewrites would otherwise count as
/// `passed` values and dilute the unknown ratio the rollout's gate reads (#28). Enforcement is
/// unchanged; `session_counters` still shows them (this session's own work).
pub fn uncounted_transaction() {
    // SAFETY: single-threaded.
    unsafe { *UNCOUNTED.get() = true };
}

/// Whether this transaction's trigger work is migrate's own ([`uncounted_transaction`]).
pub(super) fn uncounted() -> bool {
    // SAFETY: single-threaded.
    unsafe { *UNCOUNTED.get() }
}

/// From `_PG_init`, once per backend (or once in the postmaster, inherited): the trigger's own
/// callbacks. Forget resolved tables on a relcache invalidation (heard through the cache's
/// callback), on a domain's change (a
/// domain's constraints decide which canonical values may be written into a domain-typed
/// column: any change of pg_constraint or pg_type, ALTER DOMAIN among them, makes the tables that
/// have such a column resolve again; other tables are kept, as every CREATE TABLE changes
/// pg_type too) and on a change of the stage set. `stats`: the cluster-wide statistics are
/// preloaded (`stats::init`): count from the first transaction and flush at its end.
pub fn init(stats: bool) {
    cache::on_set_changed(|| relation_invalidated(pg_sys::InvalidOid));
    // Through the cache's relcache callback: PostgreSQL has 10 slots per backend
    // (docs/development.md), stage_norm takes one.
    cache::on_relation_invalidated(relation_invalidated);
    // SAFETY: at load, single-threaded.
    unsafe {
        for cache in [pg_sys::SysCacheIdentifier::CONSTROID, pg_sys::SysCacheIdentifier::TYPEOID] {
            pg_sys::CacheRegisterSyscacheCallback(cache as i32, Some(syscache_callback), pg_sys::Datum::from(0));
        }
        if stats {
            pg_sys::RegisterXactCallback(Some(xact_callback), std::ptr::null_mut());
            *XACT_GEN.get() = 1;
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn syscache_callback(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    domains_changed();
}

#[pg_guard]
unsafe extern "C-unwind" fn xact_callback(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT | pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE => transaction_end(true),
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => transaction_end(false),
        _ => {}
    }
}

/// At transaction end (commit or abort): flush every entry that counted something, then open
/// the next generation (0 when stage_norm.track_stats is off or nothing is preloaded).
fn transaction_end(commit: bool) {
    // SAFETY: single-threaded; the trigger is not running (transaction boundary).
    unsafe {
        let dirty = std::mem::take(DIRTY.get());
        let uncounted = std::mem::take(UNCOUNTED.get());
        if let Some(entries) = ENTRIES.get().as_mut() {
            for tgoid in dirty {
                if let Some(e) = entries.get_mut(&tgoid) {
                    if uncounted {
                        discard_entry(e);
                    } else {
                        flush_entry(e, commit);
                    }
                }
            }
        }
        let gen = XACT_GEN.get();
        *gen = if stats::enabled() && guc::read(&guc::TRACK_STATS) { (*gen).max(1) + 1 } else { 0 };
    }
}

/// The key under which `report_unknown` counted a statement's unknown values for `rel`.
unsafe fn statement_key(rel: pg_sys::Relation) -> (pg_sys::Oid, Option<(String, String, &'static str)>) {
    let relid = (*rel).rd_id;
    let td = (*rel).trigdesc;
    if td.is_null() {
        return (relid, None);
    }
    // The row trigger: `stage_norm_normalize`, or on a Citus shard `stage_norm_normalize_<shardid>`.
    let trigs = std::slice::from_raw_parts((*td).triggers, (*td).numtriggers as usize);
    let row_trigger = trigs.iter().find(|t| CStr::from_ptr(t.tgname).to_bytes().starts_with(b"stage_norm_normalize"));
    let names_logical = row_trigger.is_some_and(|t| {
        (0..t.tgnargs as usize).any(|i| entry::logical_name(CStr::from_ptr(*t.tgargs.add(i))).is_some())
    });
    if !(*(*rel).rd_rel).relispartition && !names_logical {
        return (relid, None);
    }
    match row_trigger {
        Some(t) => attached_table(rel, t),
        None => (relid, None),
    }
}

crate::pg_finfo_v1!(pg_finfo_normalize_trigger);

/// `stage_norm.summary_trigger()`: after each INSERT or UPDATE statement, one WARNING with the
/// exact number of unknown values that were stored but not shown. A raw entry point, as
/// `normalize_trigger` is: called any other way than as an AFTER ... FOR EACH STATEMENT trigger
/// it raises 39P01 (pgrx's `#[pg_trigger]` panicked with a backtrace when called directly, and
/// returned NULL from a row trigger, which skipped the row).
#[no_mangle]
pub unsafe extern "C-unwind" fn summary_trigger_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    summary_statement(fcinfo);
    pg_sys::Datum::from(0)
}

crate::pg_finfo_v1!(pg_finfo_summary_trigger_wrapper);

#[pg_guard]
unsafe extern "C-unwind" fn summary_statement(fcinfo: pg_sys::FunctionCallInfo) {
    let td = statement_trigger_data(fcinfo, "summary_trigger", "an AFTER INSERT OR UPDATE ... FOR EACH STATEMENT trigger");
    let op = (*td).tg_event & pg_sys::TRIGGER_EVENT_OPMASK;
    if op != pg_sys::TRIGGER_EVENT_INSERT && op != pg_sys::TRIGGER_EVENT_UPDATE {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "stage_norm.summary_trigger() must be an AFTER INSERT OR UPDATE ... FOR EACH STATEMENT trigger",
            "summary_trigger",
        )
        .set_detail("stage_norm creates this trigger itself; it is not meant to be attached by hand.")
        .report(PgLogLevel::ERROR);
    }
    // Most statements show every unknown value they stored (or have none): then there is nothing
    // to sum up, and no table to resolve (for a partition its ancestors, for a shard Citus's
    // metadata).
    // SAFETY: single-threaded; not reentrant.
    let over_bound = match unsafe { WARNINGS.get() } {
        Some(w) if w.statement == statement_id() => w.unknown.values().any(|&n| n > WARNINGS_PER_STATEMENT),
        _ => false,
    };
    if !over_bound {
        return;
    }
    // Unknown values are counted per attached table: for a partition governed through its
    // parent's trigger (a statement that writes into the partition directly), that parent.
    let rel = (*td).tg_relation;
    let (relid, attached_name) = statement_key(rel);
    // SAFETY: single-threaded; not reentrant.
    let unknown = match unsafe { WARNINGS.get() } {
        Some(w) if w.statement == statement_id() => w.unknown.remove(&relid).unwrap_or(0),
        _ => 0,
    };
    let secondary = matches!(&attached_name, Some((_, _, via)) if *via == entry::SECONDARY_PLACEMENT);
    if unknown > WARNINGS_PER_STATEMENT && !secondary {
        let own = crate::encoding::text_of(CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr()).to_bytes());
        let table = match attached_name {
            Some((parent, _, via)) => format!("\"{parent}\" ({via} \"{own}\")"),
            None => format!("\"{own}\""),
        };
        client_warning(
            format!(
                "{} more unknown stage values in table {table} were stored as they are (not shown)",
                unknown - WARNINGS_PER_STATEMENT
            ),
            format!("This statement stored {unknown} unknown values in all; stage_norm shows the first {WARNINGS_PER_STATEMENT}."),
            Some("SELECT * FROM stage_norm.session_counters; lists this session's totals.".into()),
        );
    }
}

