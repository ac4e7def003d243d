//! Cluster-wide counters, trigger latency and the circuit breaker, in shared memory. Present
//! only when `stage_norm` is in `shared_preload_libraries`; without it the views raise 55000
//! with a HINT, and the trigger keeps its per-backend counts only (`session_counters`).
//!
//! Layout (sized once at server start by `stage_norm.max_tracked_columns` = N): a header and
//! 2N slots. A slot is keyed by (database, table, attnum): attnum > 0 holds a column's eight
//! outcome counters; attnum 0 holds its table's latency histogram and breaker. A partition
//! governed through its parent counts under that parent (the table `attach` was run on). At
//! most N column slots and N table slots are used; when either kind is full, a new key is not
//! tracked and `dropped` counts the flushes that found no room (`stage_norm.stats_info`).
//! Nothing is evicted: a slot is freed only by `reset_stats()`.
//!
//! Locking contract (after pg_stat_statements):
//! - Per row, the trigger touches no shared memory except one relaxed atomic load of its table
//!   slot's `tripped` flag. It counts in backend-local memory and flushes the differences at the
//!   end of each transaction, committed or aborted (a rolled-back statement's counts are kept),
//!   and at once when it rejects a row, so that the breaker sees rejections as they happen.
//! - A flush takes the header's LWLock in shared mode, checks that each cached slot still holds
//!   its key, and adds with atomic `fetch_add`. A table slot's breaker window is rotated under
//!   the slot's spin flag (a handful of instructions, nothing that can fail).
//! - Creating a slot takes the LWLock exclusively; so does `reset_stats`. The views read under
//!   the shared lock: a view may show a flush half applied, never a torn counter.
//! - Nothing done under the lock or the spin flag can raise an error.
//!
//! Persistence: the postmaster writes the slots to `pg_stat/stage_norm.stat` at a clean
//! shutdown and reads (then deletes) it at start; after a crash there is no file to read, so
//! the counters start from zero, as pg_stat_statements' do.
use std::ffi::{c_int, CStr};
use std::io::{Read, Write};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU32, AtomicU64, Ordering::*};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::guc;

/// Latency buckets: bucket i holds durations up to `BUCKET0_NS << i`; the last one, the rest.
pub const BUCKETS: usize = 24;
pub const BUCKET0_NS: u64 = 250;
const NAME: usize = 64;
const FILE: &CStr = c"pg_stat/stage_norm.stat";
const FILE_MAGIC: u64 = 0x5354_474e_4f52_4d31; // "STGNORM1"

#[repr(C)]
pub struct Slot {
    /// 0 free, 1 used; written under the exclusive lock.
    used: AtomicU32,
    attnum: AtomicU32,
    dbid: AtomicU32,
    relid: AtomicU32,
    /// schema, table, column (NUL-padded); written under the exclusive lock with the key.
    names: [[u8; NAME]; 3],
    pub counts: [AtomicU64; 8],
    /// The effective mode of the last flush (`Mode as u32`).
    mode: AtomicU32,
    last_seen: AtomicI64,
    hist: [AtomicU64; BUCKETS],
    hist_sum_ns: AtomicU64,
    // The breaker (table slots): a sliding window of two fixed windows.
    spin: AtomicU32,
    window_start: AtomicI64,
    cur_rows: AtomicU64,
    cur_rejects: AtomicU64,
    prev_rows: AtomicU64,
    prev_rejects: AtomicU64,
    pub tripped: AtomicU32,
    tripped_at: AtomicI64,
    trip_ratio: AtomicU64,
}

#[repr(C)]
struct Header {
    lock: *mut pg_sys::LWLock,
    nslots: u32,
    max_columns: u32,
    columns_used: AtomicU32,
    tables_used: AtomicU32,
    dropped: AtomicU64,
    reset_at: AtomicI64,
}

static SHARED: AtomicPtr<Header> = AtomicPtr::new(null_mut());
static mut PREV_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP: pg_sys::shmem_startup_hook_type = None;
/// `stage_norm.max_tracked_columns`, as read at server start.
static mut MAX_COLUMNS: u32 = 0;

fn size(max_columns: u32) -> usize {
    std::mem::size_of::<Header>() + 2 * max_columns as usize * std::mem::size_of::<Slot>()
}

/// True when the shared memory is there (preloaded).
#[inline(always)]
pub fn enabled() -> bool {
    !SHARED.load(Relaxed).is_null()
}

unsafe fn header() -> &'static Header {
    &*SHARED.load(Relaxed)
}

unsafe fn slots() -> &'static [Slot] {
    let h = SHARED.load(Relaxed);
    std::slice::from_raw_parts(h.add(1).cast::<Slot>(), (*h).nslots as usize)
}

/// The slot at `i` (an index from `find_or_create`).
#[inline(always)]
pub unsafe fn slot(i: u32) -> &'static Slot {
    slots().get_unchecked(i as usize)
}

/// From `_PG_init`: when preloading, ask for the memory and chain the hooks, and say so (true:
/// the trigger counts from the first transaction and flushes at each transaction end).
pub fn init() -> bool {
    if unsafe { !pg_sys::process_shared_preload_libraries_in_progress } {
        return false;
    }
    unsafe {
        MAX_COLUMNS = guc::read(&guc::MAX_TRACKED_COLUMNS) as u32;
        PREV_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(shmem_request);
        PREV_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
    }
    true
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_request() {
    if let Some(prev) = PREV_REQUEST {
        prev();
    }
    pg_sys::RequestAddinShmemSpace(size(MAX_COLUMNS));
    pg_sys::RequestNamedLWLockTranche(c"stage_norm".as_ptr(), 1);
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    if let Some(prev) = PREV_STARTUP {
        prev();
    }
    // AddinShmemInitLock is MainLWLockArray[21] (lwlocknames.txt; not in pgrx's bindings).
    let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
    pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
    let mut found = false;
    let h = pg_sys::ShmemInitStruct(c"stage_norm stats".as_ptr(), size(MAX_COLUMNS), &mut found).cast::<Header>();
    if !found {
        std::ptr::write_bytes(h.cast::<u8>(), 0, size(MAX_COLUMNS));
        (*h).lock = &mut (*pg_sys::GetNamedLWLockTranche(c"stage_norm".as_ptr())).lock;
        (*h).nslots = 2 * MAX_COLUMNS;
        (*h).max_columns = MAX_COLUMNS;
        (*h).reset_at = AtomicI64::new(pg_sys::GetCurrentTimestamp());
    }
    pg_sys::LWLockRelease(init_lock);
    SHARED.store(h, Relaxed);
    if !pg_sys::IsUnderPostmaster {
        pg_sys::on_shmem_exit(Some(shmem_shutdown), pg_sys::Datum::from(0));
        if !found {
            load();
        }
    }
}

/// The postmaster's exit: write the slots at a clean shutdown only (code 0).
#[pg_guard]
unsafe extern "C-unwind" fn shmem_shutdown(code: c_int, _arg: pg_sys::Datum) {
    if code != 0 || !enabled() {
        return;
    }
    if let Err(e) = save() {
        pgrx::log!("stage_norm: could not write {}: {e}", FILE.to_string_lossy());
    }
}

fn file_path() -> String {
    FILE.to_string_lossy().into_owned()
}

/// The used slots, verbatim (a plain-data struct of this build), after a header naming the
/// format and the slot size; written to a temporary file and renamed.
unsafe fn save() -> std::io::Result<()> {
    let tmp = format!("{}.tmp", file_path());
    let mut f = std::fs::File::create(&tmp)?;
    let h = header();
    f.write_all(&FILE_MAGIC.to_le_bytes())?;
    f.write_all(&(std::mem::size_of::<Slot>() as u64).to_le_bytes())?;
    f.write_all(&h.reset_at.load(Relaxed).to_le_bytes())?;
    f.write_all(&h.dropped.load(Relaxed).to_le_bytes())?;
    for s in slots().iter().filter(|s| s.used.load(Relaxed) == 1) {
        let bytes = std::slice::from_raw_parts((s as *const Slot).cast::<u8>(), std::mem::size_of::<Slot>());
        f.write_all(bytes)?;
    }
    f.sync_all()?;
    std::fs::rename(tmp, file_path())
}

/// At start: read what the last clean shutdown wrote, then delete it (so that a crash, which
/// writes nothing, starts from zero). A file of another format is ignored.
unsafe fn load() {
    // An immediate shutdown also runs the postmaster's exit callbacks with code 0; what it
    // wrote is kept only if the server then shut down cleanly (as the cumulative statistics
    // are discarded when the next start begins with crash recovery).
    let mut crc_ok = false;
    let control = pg_sys::get_controlfile(pg_sys::DataDir, &mut crc_ok);
    let clean = crc_ok
        && !control.is_null()
        && matches!((*control).state, pg_sys::DBState::DB_SHUTDOWNED | pg_sys::DBState::DB_SHUTDOWNED_IN_RECOVERY);
    if !clean {
        let _ = std::fs::remove_file(file_path());
        return;
    }
    let Ok(mut f) = std::fs::File::open(file_path()) else { return };
    let mut buf = Vec::new();
    let ok = f.read_to_end(&mut buf).is_ok();
    let _ = std::fs::remove_file(file_path());
    let word = |i: usize| buf.get(i * 8..i * 8 + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    if !ok || word(0) != Some(FILE_MAGIC) || word(1) != Some(std::mem::size_of::<Slot>() as u64) {
        return;
    }
    let h = header();
    h.reset_at.store(word(2).unwrap_or(0) as i64, Relaxed);
    h.dropped.store(word(3).unwrap_or(0), Relaxed);
    let body = &buf[32..];
    let n = std::mem::size_of::<Slot>();
    for chunk in body.chunks_exact(n) {
        let s = chunk.as_ptr().cast::<Slot>().read_unaligned();
        let attnum = s.attnum.load(Relaxed);
        let (used, max) = if attnum == 0 { (&h.tables_used, h.max_columns) } else { (&h.columns_used, h.max_columns) };
        if used.load(Relaxed) >= max {
            continue;
        }
        if let Some(i) = probe(s.dbid.load(Relaxed), s.relid.load(Relaxed), attnum) {
            if slot(i).used.load(Relaxed) == 0 {
                let dst = (slot(i) as *const Slot).cast_mut();
                dst.write(s);
                (*dst).spin.store(0, Relaxed);
                used.fetch_add(1, Relaxed);
            }
        }
    }
}

fn hash(dbid: u32, relid: u32, attnum: u32) -> u64 {
    let mut x = (dbid as u64) << 32 ^ relid as u64 ^ (attnum as u64) << 48;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ x >> 33
}

/// Linear probing: the slot holding the key, or the free slot where it would go; None when
/// every slot is taken by other keys. Call under the lock (either mode).
unsafe fn probe(dbid: u32, relid: u32, attnum: u32) -> Option<u32> {
    let all = slots();
    let n = all.len();
    if n == 0 {
        return None;
    }
    let start = hash(dbid, relid, attnum) as usize % n;
    for k in 0..n {
        let i = (start + k) % n;
        let s = &all[i];
        if s.used.load(Relaxed) == 0 || (s.dbid.load(Relaxed) == dbid && s.relid.load(Relaxed) == relid && s.attnum.load(Relaxed) == attnum) {
            return Some(i as u32);
        }
    }
    None
}

/// Whether slot `i` still holds the key (another backend's `reset_stats` may have freed it).
#[inline]
pub unsafe fn holds(i: u32, dbid: u32, relid: u32, attnum: u32) -> bool {
    let s = slot(i);
    s.used.load(Relaxed) == 1 && s.relid.load(Relaxed) == relid && s.dbid.load(Relaxed) == dbid && s.attnum.load(Relaxed) == attnum
}

fn copy_name(dst: &mut [u8; NAME], src: &[u8]) {
    *dst = [0; NAME];
    let n = src.len().min(NAME - 1);
    dst[..n].copy_from_slice(&src[..n]);
}

/// The slot of a key, created (with its names) when missing; None when not preloaded or when
/// its kind is full (counted in `dropped`). Not for the per-row path: it takes the lock.
pub unsafe fn find_or_create(relid: pg_sys::Oid, attnum: i16, names: [&[u8]; 3]) -> Option<u32> {
    if !enabled() {
        return None;
    }
    let (dbid, relid, attnum) = (u32::from(pg_sys::MyDatabaseId), u32::from(relid), attnum as u32);
    let h = header();
    pg_sys::LWLockAcquire(h.lock, pg_sys::LWLockMode::LW_SHARED);
    let found = probe(dbid, relid, attnum).filter(|&i| slot(i).used.load(Relaxed) == 1);
    pg_sys::LWLockRelease(h.lock);
    if found.is_some() {
        return found;
    }
    pg_sys::LWLockAcquire(h.lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
    let used = if attnum == 0 { &h.tables_used } else { &h.columns_used };
    let i = probe(dbid, relid, attnum);
    let r = match i {
        Some(i) if slot(i).used.load(Relaxed) == 1 => Some(i),
        Some(i) if used.load(Relaxed) < h.max_columns => {
            let s = (slot(i) as *const Slot).cast_mut();
            std::ptr::write_bytes(s.cast::<u8>(), 0, std::mem::size_of::<Slot>());
            (*s).dbid.store(dbid, Relaxed);
            (*s).relid.store(relid, Relaxed);
            (*s).attnum.store(attnum, Relaxed);
            for (d, n) in (*s).names.iter_mut().zip(names) {
                copy_name(d, n);
            }
            (*s).used.store(1, Release);
            used.fetch_add(1, Relaxed);
            Some(i)
        }
        _ => {
            h.dropped.fetch_add(1, Relaxed);
            None
        }
    };
    pg_sys::LWLockRelease(h.lock);
    r
}

/// A flush: what one column's counts grew by since the last flush. `slot` must come from
/// `find_or_create` for (this database, relid, attnum); the key is checked under the lock.
pub struct Flush<'a> {
    pub relid: pg_sys::Oid,
    pub attnum: i16,
    pub slot: u32,
    pub delta: &'a [i64; 8],
}

/// Adds column deltas, a latency histogram delta and the breaker's rows and rejections of one
/// table; returns the columns whose slot was freed meanwhile (by `reset_stats`), for the
/// caller to look up again. Cannot raise.
pub unsafe fn flush(cols: &[Flush], mode: u32, table: Option<(pg_sys::Oid, u32)>, hist: &[u64; BUCKETS], hist_sum: u64) -> bool {
    let h = header();
    let db = u32::from(pg_sys::MyDatabaseId);
    let now = pg_sys::GetCurrentTimestamp();
    let mut stale = false;
    pg_sys::LWLockAcquire(h.lock, pg_sys::LWLockMode::LW_SHARED);
    for c in cols {
        if !holds(c.slot, db, u32::from(c.relid), c.attnum as u32) {
            stale = true;
            continue;
        }
        let s = slot(c.slot);
        for (a, d) in s.counts.iter().zip(c.delta) {
            if *d != 0 {
                a.fetch_add(*d as u64, Relaxed);
            }
        }
        s.mode.store(mode, Relaxed);
        s.last_seen.store(now, Relaxed);
    }
    if let Some((relid, t)) = table {
        if holds(t, db, u32::from(relid), 0) {
            let s = slot(t);
            for (a, d) in s.hist.iter().zip(hist) {
                if *d != 0 {
                    a.fetch_add(*d, Relaxed);
                }
            }
            if hist_sum != 0 {
                s.hist_sum_ns.fetch_add(hist_sum, Relaxed);
            }
            s.last_seen.store(now, Relaxed);
        } else {
            stale = true;
        }
    }
    pg_sys::LWLockRelease(h.lock);
    stale
}

/// The breaker: add a table's judged values and rejections to its window, and trip it when the
/// reject ratio over the window exceeds `stage_norm.breaker_reject_ratio` with at least
/// `stage_norm.breaker_min_rows` values seen. Returns Some(ratio, rows) when this call tripped
/// it (exactly one caller does). Cannot raise.
pub unsafe fn breaker_add(relid: pg_sys::Oid, t: u32, rows: u64, rejects: u64) -> Option<(f64, f64)> {
    let threshold = guc::read(&guc::BREAKER_REJECT_RATIO);
    let window_us = guc::read(&guc::BREAKER_WINDOW) as i64 * 1_000_000;
    let min_rows = guc::read(&guc::BREAKER_MIN_ROWS) as f64;
    if threshold <= 0.0 || rows == 0 {
        return None;
    }
    let h = header();
    let db = u32::from(pg_sys::MyDatabaseId);
    let now = pg_sys::GetCurrentTimestamp();
    pg_sys::LWLockAcquire(h.lock, pg_sys::LWLockMode::LW_SHARED);
    let mut tripped = None;
    if holds(t, db, u32::from(relid), 0) {
        let s = slot(t);
        while s.spin.compare_exchange_weak(0, 1, Acquire, Relaxed).is_err() {
            std::hint::spin_loop();
        }
        let (start, cur, prev, w) = window_at(s, now, window_us);
        let (cur_rows, cur_rej) = (cur.0 + rows, cur.1 + rejects);
        s.window_start.store(start, Relaxed);
        s.cur_rows.store(cur_rows, Relaxed);
        s.cur_rejects.store(cur_rej, Relaxed);
        s.prev_rows.store(prev.0, Relaxed);
        s.prev_rejects.store(prev.1, Relaxed);
        let est_rows = prev.0 as f64 * w + cur_rows as f64;
        let est_rej = prev.1 as f64 * w + cur_rej as f64;
        let ratio = if est_rows > 0.0 { est_rej / est_rows } else { 0.0 };
        if est_rows >= min_rows && ratio > threshold && s.tripped.compare_exchange(0, 1, AcqRel, Relaxed).is_ok() {
            s.tripped_at.store(now, Relaxed);
            s.trip_ratio.store(ratio.to_bits(), Relaxed);
            tripped = Some((ratio, est_rows));
        }
        s.spin.store(0, Release);
    }
    pg_sys::LWLockRelease(h.lock);
    tripped
}

/// A table slot's breaker window as it stands at `now`: (start, current (values, rejections),
/// previous (values, rejections), the previous window's weight). A window that has ended is
/// rotated: it becomes the previous one, or nothing if it ended more than a window ago; a
/// window never started (start 0) starts now. The weight is how much of the previous window
/// the sliding window still covers. Read-only: `breaker_add` stores what it returns.
fn window_at(s: &Slot, now: i64, window_us: i64) -> (i64, (u64, u64), (u64, u64), f64) {
    let w = window_us.max(1);
    let start = s.window_start.load(Relaxed);
    let cur = (s.cur_rows.load(Relaxed), s.cur_rejects.load(Relaxed));
    let prev = (s.prev_rows.load(Relaxed), s.prev_rejects.load(Relaxed));
    let (start, cur, prev) = if start == 0 {
        (now, (0, 0), (0, 0))
    } else if now < start + w {
        (start, cur, prev)
    } else if now < start + 2 * w {
        (start + w, (0, 0), cur)
    } else {
        (now - (now - start) % w, (0, 0), (0, 0))
    };
    (start, cur, prev, (1.0 - (now - start) as f64 / w as f64).clamp(0.0, 1.0))
}

/// Whether the table's breaker is tripped (the per-row check: one relaxed load, and the key
/// only when it says tripped).
#[inline(always)]
pub unsafe fn is_tripped(relid: pg_sys::Oid, t: u32) -> bool {
    slot(t).tripped.load(Relaxed) != 0 && holds(t, u32::from(pg_sys::MyDatabaseId), u32::from(relid), 0)
}

pub fn require() {
    if !enabled() {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "stage_norm's cluster-wide statistics are not available",
            "stage_norm.stats",
        )
        .set_detail("They live in shared memory, which stage_norm can only have when the server loads it at start.")
        .set_hint("Add stage_norm to shared_preload_libraries, keeping the libraries already there (SHOW shared_preload_libraries; then ALTER SYSTEM SET shared_preload_libraries = '<those>,stage_norm'), and restart the server. This session's own counts are in stage_norm.session_counters.")
        .report(PgLogLevel::ERROR);
    }
}

fn name_of(b: &[u8; NAME]) -> String {
    let n = b.iter().position(|&c| c == 0).unwrap_or(NAME);
    String::from_utf8_lossy(&b[..n]).into_owned()
}

fn ts(t: i64) -> Option<TimestampWithTimeZone> {
    (t != 0).then(|| unsafe { TimestampWithTimeZone::from_datum(pg_sys::Datum::from(t), false) }).flatten()
}

/// A copy of the used slots (under the shared lock).
pub struct Row {
    pub dbid: u32,
    pub relid: u32,
    pub attnum: i16,
    pub names: [String; 3],
    pub counts: [i64; 8],
    pub mode: u32,
    pub last_seen: Option<TimestampWithTimeZone>,
    pub hist: [u64; BUCKETS],
    pub hist_sum_ns: u64,
    pub tripped: bool,
    pub tripped_at: Option<TimestampWithTimeZone>,
    pub trip_ratio: f64,
    pub window: (f64, f64),
}

pub fn snapshot() -> Vec<Row> {
    require();
    unsafe {
        let h = header();
        let now = pg_sys::GetCurrentTimestamp();
        let window_us = (guc::read(&guc::BREAKER_WINDOW) as i64 * 1_000_000).max(1);
        pg_sys::LWLockAcquire(h.lock, pg_sys::LWLockMode::LW_SHARED);
        let rows = slots()
            .iter()
            .filter(|s| s.used.load(Acquire) == 1)
            .map(|s| {
                // The window as breaker_add would see it now (rotated if it has ended).
                let (_, (cur_r, cur_j), (prev_r, prev_j), w) = window_at(s, now, window_us);
                Row {
                    dbid: s.dbid.load(Relaxed),
                    relid: s.relid.load(Relaxed),
                    attnum: s.attnum.load(Relaxed) as i16,
                    names: [name_of(&s.names[0]), name_of(&s.names[1]), name_of(&s.names[2])],
                    counts: std::array::from_fn(|i| s.counts[i].load(Relaxed) as i64),
                    mode: s.mode.load(Relaxed),
                    last_seen: ts(s.last_seen.load(Relaxed)),
                    hist: std::array::from_fn(|i| s.hist[i].load(Relaxed)),
                    hist_sum_ns: s.hist_sum_ns.load(Relaxed),
                    tripped: s.tripped.load(Relaxed) != 0,
                    tripped_at: ts(s.tripped_at.load(Relaxed)),
                    trip_ratio: f64::from_bits(s.trip_ratio.load(Relaxed)),
                    window: (prev_r as f64 * w + cur_r as f64, prev_j as f64 * w + cur_j as f64),
                }
            })
            .collect();
        pg_sys::LWLockRelease(h.lock);
        rows
    }
}

/// (columns used, column slots, tables used, dropped, stats_reset)
pub fn info() -> (i32, i32, i32, i64, Option<TimestampWithTimeZone>) {
    require();
    unsafe {
        let h = header();
        (
            h.columns_used.load(Relaxed) as i32,
            h.max_columns as i32,
            h.tables_used.load(Relaxed) as i32,
            h.dropped.load(Relaxed) as i64,
            ts(h.reset_at.load(Relaxed)),
        )
    }
}

/// Frees every slot (backends find theirs again at their next flush), except the table slots
/// of tripped breakers, whose counters are zeroed: a statistics reset is not a breaker reset.
pub fn reset() {
    require();
    unsafe {
        let h = header();
        pg_sys::LWLockAcquire(h.lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        // Keep the tripped ones, re-inserted at their probe position after the others go.
        let keep: Vec<Slot> = slots()
            .iter()
            .filter(|s| s.used.load(Relaxed) == 1 && s.attnum.load(Relaxed) == 0 && s.tripped.load(Relaxed) != 0)
            .map(|s| (s as *const Slot).read())
            .collect();
        let all = slots();
        std::ptr::write_bytes(all.as_ptr().cast_mut().cast::<u8>(), 0, std::mem::size_of_val(all));
        h.columns_used.store(0, Relaxed);
        h.tables_used.store(0, Relaxed);
        h.dropped.store(0, Relaxed);
        for s in keep {
            if let Some(i) = probe(s.dbid.load(Relaxed), s.relid.load(Relaxed), 0) {
                let dst = (slot(i) as *const Slot).cast_mut();
                dst.write(s);
                for c in &(*dst).hist {
                    c.store(0, Relaxed);
                }
                (*dst).hist_sum_ns.store(0, Relaxed);
                (*dst).spin.store(0, Relaxed);
                h.tables_used.fetch_add(1, Relaxed);
            }
        }
        h.reset_at.store(pg_sys::GetCurrentTimestamp(), Relaxed);
        pg_sys::LWLockRelease(h.lock);
    }
}

/// Closes a table's breaker (this database); false when it was not tripped.
pub fn reset_breaker(relid: pg_sys::Oid) -> bool {
    require();
    unsafe {
        let h = header();
        let db = u32::from(pg_sys::MyDatabaseId);
        pg_sys::LWLockAcquire(h.lock, pg_sys::LWLockMode::LW_SHARED);
        let mut was = false;
        if let Some(i) = probe(db, u32::from(relid), 0).filter(|&i| holds(i, db, u32::from(relid), 0)) {
            let s = slot(i);
            while s.spin.compare_exchange_weak(0, 1, Acquire, Relaxed).is_err() {
                std::hint::spin_loop();
            }
            was = s.tripped.swap(0, AcqRel) != 0;
            s.tripped_at.store(0, Relaxed);
            s.trip_ratio.store(0, Relaxed);
            for a in [&s.cur_rows, &s.cur_rejects, &s.prev_rows, &s.prev_rejects] {
                a.store(0, Relaxed);
            }
            s.window_start.store(0, Relaxed);
            s.spin.store(0, Release);
        }
        pg_sys::LWLockRelease(h.lock);
        was
    }
}

/// The latency bucket of a duration.
#[inline(always)]
pub fn bucket(ns: u64) -> usize {
    let q = ns.div_ceil(BUCKET0_NS);
    if q <= 1 {
        0
    } else {
        ((64 - (q - 1).leading_zeros()) as usize).min(BUCKETS - 1)
    }
}

/// A quantile from a histogram, interpolated linearly inside its bucket (as Prometheus'
/// `histogram_quantile`), in microseconds.
pub fn quantile(hist: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, &n) in hist.iter().enumerate() {
        if n > 0 && (seen + n) as f64 >= rank {
            if i == BUCKETS - 1 {
                // +Inf: the last finite bound, as histogram_quantile answers.
                return Some((BUCKET0_NS << (i - 1)) as f64 / 1000.0);
            }
            let lo = if i == 0 { 0.0 } else { (BUCKET0_NS << (i - 1)) as f64 };
            let hi = (BUCKET0_NS << i) as f64;
            let f = ((rank - seen as f64) / n as f64).clamp(0.0, 1.0);
            return Some((lo + (hi - lo) * f) / 1000.0);
        }
        seen += n;
    }
    None
}

// ---- SQL functions (the views over them are in sql/stats.sql) ----

const OUTCOME_NAMES: [&str; 8] = ["passed", "normalized", "warned", "rejected", "would_normalize", "would_reject", "unchanged", "nulls"];

fn mode_name(m: u32) -> &'static str {
    crate::guc::Mode::NAMES.get(m as usize).copied().unwrap_or("off")
}

/// Internal: one row per tracked column and outcome (`stage_norm.stats`).
#[pg_extern(volatile, parallel_safe, name = "_stats")]
#[allow(clippy::type_complexity)]
pub fn sql_stats() -> TableIterator<
    'static,
    (
        name!(dbid, pg_sys::Oid),
        name!(relid, pg_sys::Oid),
        name!(attnum, i16),
        name!(schema_name, String),
        name!(table_name, String),
        name!(column_name, String),
        name!(outcome, &'static str),
        name!(count, i64),
        name!(mode, &'static str),
        name!(last_seen, Option<TimestampWithTimeZone>),
    ),
> {
    let rows = snapshot().into_iter().filter(|r| r.attnum > 0).flat_map(|r| {
        (0..8).map(move |i| {
            (
                pg_sys::Oid::from(r.dbid),
                pg_sys::Oid::from(r.relid),
                r.attnum,
                r.names[0].clone(),
                r.names[1].clone(),
                r.names[2].clone(),
                OUTCOME_NAMES[i],
                r.counts[i],
                mode_name(r.mode),
                r.last_seen,
            )
        })
    });
    TableIterator::new(rows.collect::<Vec<_>>())
}

/// Internal: `stage_norm.stats_info`.
#[pg_extern(volatile, parallel_safe, name = "_stats_info")]
#[allow(clippy::type_complexity)]
pub fn sql_stats_info() -> TableIterator<
    'static,
    (
        name!(columns_used, i32),
        name!(columns_max, i32),
        name!(tables_used, i32),
        name!(tables_max, i32),
        name!(dropped, i64),
        name!(stats_reset, Option<TimestampWithTimeZone>),
    ),
> {
    let (c, max, t, dropped, reset) = info();
    TableIterator::once((c, max, t, max, dropped, reset))
}

/// Internal: the latency histogram per table, cumulative as Prometheus wants it: one row per
/// bucket upper bound `le` (microseconds; the last is +Infinity), plus the sum and count.
#[pg_extern(volatile, parallel_safe, name = "_latency_buckets")]
#[allow(clippy::type_complexity)]
pub fn sql_latency_buckets() -> TableIterator<
    'static,
    (
        name!(dbid, pg_sys::Oid),
        name!(relid, pg_sys::Oid),
        name!(schema_name, String),
        name!(table_name, String),
        name!(le, f64),
        name!(count, i64),
        name!(sum_us, f64),
        name!(total, i64),
    ),
> {
    let mut out = Vec::new();
    for r in snapshot().into_iter().filter(|r| r.attnum == 0) {
        let total: u64 = r.hist.iter().sum();
        let mut cum = 0u64;
        for (i, n) in r.hist.iter().enumerate() {
            cum += n;
            let le = if i == BUCKETS - 1 { f64::INFINITY } else { (BUCKET0_NS << i) as f64 / 1000.0 };
            out.push((
                pg_sys::Oid::from(r.dbid),
                pg_sys::Oid::from(r.relid),
                r.names[0].clone(),
                r.names[1].clone(),
                le,
                cum as i64,
                r.hist_sum_ns as f64 / 1000.0,
                total as i64,
            ));
        }
    }
    TableIterator::new(out)
}

/// Internal: `stage_norm.latency`: per table, sampled calls, mean and quantiles (µs).
#[pg_extern(volatile, parallel_safe, name = "_latency")]
#[allow(clippy::type_complexity)]
pub fn sql_latency() -> TableIterator<
    'static,
    (
        name!(dbid, pg_sys::Oid),
        name!(relid, pg_sys::Oid),
        name!(schema_name, String),
        name!(table_name, String),
        name!(sampled_calls, i64),
        name!(mean_us, Option<f64>),
        name!(p50_us, Option<f64>),
        name!(p99_us, Option<f64>),
        name!(p999_us, Option<f64>),
    ),
> {
    let rows: Vec<_> = snapshot()
        .into_iter()
        .filter(|r| r.attnum == 0)
        .map(|r| {
            let n: u64 = r.hist.iter().sum();
            (
                pg_sys::Oid::from(r.dbid),
                pg_sys::Oid::from(r.relid),
                r.names[0].clone(),
                r.names[1].clone(),
                n as i64,
                (n > 0).then(|| r.hist_sum_ns as f64 / n as f64 / 1000.0),
                quantile(&r.hist, 0.5),
                quantile(&r.hist, 0.99),
                quantile(&r.hist, 0.999),
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// Internal: the breakers per table. `strict` false (for `table_modes`, readable by everyone):
/// this database's tables only, without the window's counts (NULL), and no rows (instead of
/// an error) when not preloaded.
#[pg_extern(volatile, parallel_safe, name = "_breakers")]
#[allow(clippy::type_complexity)]
pub fn sql_breakers(
    strict: bool,
) -> TableIterator<
    'static,
    (
        name!(dbid, pg_sys::Oid),
        name!(relid, pg_sys::Oid),
        name!(schema_name, String),
        name!(table_name, String),
        name!(tripped, bool),
        name!(tripped_at, Option<TimestampWithTimeZone>),
        name!(trip_ratio, Option<f64>),
        name!(window_values, Option<f64>),
        name!(window_rejects, Option<f64>),
    ),
> {
    if !strict && !enabled() {
        return TableIterator::new(Vec::new());
    }
    // Every database's tables: for pg_monitor (OID 3373) and superusers, as the other views.
    if strict && unsafe { !pg_sys::has_privs_of_role(pg_sys::GetUserId(), pg_sys::Oid::from(3373)) } {
        pgrx::pg_sys::panic::ErrorReport::new(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, "permission denied for the breakers of every database", "stage_norm.breakers")
            .set_hint("Members of pg_monitor may read stage_norm.breakers; stage_norm.table_modes shows this database's.")
            .report(PgLogLevel::ERROR);
    }
    let db = u32::from(unsafe { pg_sys::MyDatabaseId });
    let rows: Vec<_> = snapshot()
        .into_iter()
        .filter(|r| r.attnum == 0 && (strict || r.dbid == db))
        .map(|r| {
            (
                pg_sys::Oid::from(r.dbid),
                pg_sys::Oid::from(r.relid),
                r.names[0].clone(),
                r.names[1].clone(),
                r.tripped,
                r.tripped_at,
                r.tripped.then_some(r.trip_ratio),
                // The window's counts are every writer's traffic: for pg_monitor only (strict);
                // table_modes (everyone) needs the trip alone.
                strict.then_some(r.window.0),
                strict.then_some(r.window.1),
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// Frees the cluster-wide counters and latency of every database (a tripped breaker stays
/// tripped). Revoked from PUBLIC; grantable.
#[pg_extern(volatile, parallel_unsafe, name = "reset_stats")]
pub fn sql_reset_stats() {
    reset();
}

/// Closes a table's circuit breaker: enforcement applies again from the next row. Returns
/// whether it was tripped. Revoked from PUBLIC; grantable.
#[pg_extern(volatile, strict, parallel_unsafe, name = "_reset_breaker")]
pub fn sql_reset_breaker(tbl: pg_sys::Oid) -> bool {
    let was = reset_breaker(tbl);
    if was {
        // SAFETY: catalog lookups in a transaction (a SQL function).
        let (table, user) = unsafe {
            let name = pg_sys::get_rel_name(tbl);
            let ns = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(tbl));
            let table = if name.is_null() || ns.is_null() {
                u32::from(tbl).to_string()
            } else {
                CStr::from_ptr(pg_sys::quote_qualified_identifier(ns, name)).to_string_lossy().into_owned()
            };
            // The caller: reset_breaker is SECURITY DEFINER, so the current user is its owner;
            // the outer user is the session's role (SET ROLE included), which definers leave alone.
            let outer = pg_sys::GetOuterUserId();
            let session = pg_sys::GetSessionUserId();
            let name = |id| CStr::from_ptr(pg_sys::GetUserNameFromId(id, false)).to_string_lossy().into_owned();
            let user = if outer == session { name(outer) } else { format!("{} (session user {})", name(outer), name(session)) };
            (table, user)
        };
        pgrx::log!("stage_norm: circuit breaker of table {table} reset by {user}");
    }
    was
}
