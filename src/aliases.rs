//! The backend-local alias cache.
//!
//! Contract: an alias change is visible to every session from its next statement after commit,
//! with no per-row catalog or SPI lookup.
//!
//! How:
//! - The map `key -> stage` lives in backend memory and is (re)loaded from `stage_norm.aliases`
//!   only when it is stale.
//! - Every write to `stage_norm.aliases` fires a statement trigger ([`aliases_changed`]) that
//!   queues a relcache invalidation of that table; PostgreSQL delivers it to every backend after
//!   commit (and to the writer itself at its next command).
//! - The relcache callback registered in `_PG_init` only marks the cache stale (no catalog
//!   access, no errors: it may run anywhere).
//! - At the first call of each statement the backend accepts pending invalidation messages
//!   (a cheap flag check when there are none), so even a statement that takes no new lock sees
//!   a change committed before it started.
//! - The reload reads with the latest snapshot, so what it sees is never older than the
//!   invalidation that caused it, whatever the isolation level. In parallel mode no new snapshot
//!   may be taken: the reload uses the statement's snapshot and is redone at the next statement.
use std::cell::{Cell, RefCell};
use std::ffi::CStr;

use pgrx::prelude::*;
use stage_norm_core::{Aliases, StageId, BUILTIN};

thread_local! {
    static STALE: Cell<bool> = const { Cell::new(true) };
    static RELOAD_AT_NEXT_STATEMENT: Cell<bool> = const { Cell::new(false) };
    static LAST_STATEMENT: Cell<pg_sys::TimestampTz> = const { Cell::new(pg_sys::TimestampTz::MIN) };
    static ALIASES_OID: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
    static MAP: RefCell<Aliases> = RefCell::new(Aliases::new());
    static KEY_BUF: RefCell<String> = RefCell::new(String::with_capacity(64));
}

/// Registers the relcache callback; called once per backend from `_PG_init`.
pub fn init() {
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0)) };
}

#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    if relid == pg_sys::InvalidOid || relid == ALIASES_OID.get() {
        STALE.set(true);
    }
}

/// Statement trigger on `stage_norm.aliases`: any write invalidates every backend's cache.
#[pg_trigger]
fn aliases_changed<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(trigger.relid()?) };
    Ok(None)
}

/// Classifies `input` with the built-in rules and the current aliases.
#[inline]
pub fn classify(input: &str) -> Option<StageId> {
    refresh();
    MAP.with_borrow(|map| {
        let aliases = if map.is_empty() { None } else { Some(map) };
        KEY_BUF.with_borrow_mut(|buf| BUILTIN.classify(input, aliases, buf))
    })
}

/// Classifies `input` with the built-in rules only (no aliases, no cache).
#[inline]
pub fn classify_builtin(input: &str) -> Option<StageId> {
    KEY_BUF.with_borrow_mut(|buf| BUILTIN.classify(input, None, buf))
}

#[inline]
fn refresh() {
    let now = unsafe { pg_sys::GetCurrentStatementStartTimestamp() };
    if now != LAST_STATEMENT.get() {
        LAST_STATEMENT.set(now);
        if RELOAD_AT_NEXT_STATEMENT.get() {
            STALE.set(true);
        }
        unsafe { pg_sys::AcceptInvalidationMessages() };
    }
    if STALE.get() {
        reload();
    }
}

/// Marks the cache stale again if the reload does not complete (an error unwinds through it).
struct StaleUnlessDone(bool);
impl Drop for StaleUnlessDone {
    fn drop(&mut self) {
        if !self.0 {
            STALE.set(true);
        }
    }
}

#[cold]
fn reload() {
    // Cleared first: an invalidation that arrives while we read sets it again.
    STALE.set(false);
    let mut guard = StaleUnlessDone(false);
    let parallel = unsafe { pg_sys::IsInParallelMode() };
    let map = unsafe { load(parallel) };
    RELOAD_AT_NEXT_STATEMENT.set(parallel);
    MAP.set(map);
    guard.0 = true;
}

unsafe fn load(parallel: bool) -> Aliases {
    let mut map = Aliases::new();
    let nsp = pg_sys::get_namespace_oid(c"stage_norm".as_ptr(), true);
    let rel = if nsp == pg_sys::InvalidOid {
        pg_sys::InvalidOid
    } else {
        pg_sys::get_relname_relid(c"aliases".as_ptr(), nsp)
    };
    ALIASES_OID.set(rel);
    if rel == pg_sys::InvalidOid {
        return map;
    }
    if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
        pgrx::error!("stage_norm: SPI_connect failed while loading aliases");
    }
    let plan = pg_sys::SPI_prepare(
        c"SELECT alias_key, stage FROM stage_norm.aliases".as_ptr(),
        0,
        std::ptr::null_mut(),
    );
    let snapshot = if parallel {
        std::ptr::null_mut() // the active snapshot
    } else {
        pg_sys::GetLatestSnapshot()
    };
    let rc = pg_sys::SPI_execute_snapshot(
        plan,
        std::ptr::null_mut(),
        std::ptr::null(),
        snapshot,
        std::ptr::null_mut(),
        true,
        false,
        0,
    );
    if rc != pg_sys::SPI_OK_SELECT as i32 {
        pgrx::error!("stage_norm: reading stage_norm.aliases failed (SPI code {rc})");
    }
    let table = pg_sys::SPI_tuptable;
    for i in 0..pg_sys::SPI_processed as usize {
        let tuple = *(*table).vals.add(i);
        let key = pg_sys::SPI_getvalue(tuple, (*table).tupdesc, 1);
        let stage = pg_sys::SPI_getvalue(tuple, (*table).tupdesc, 2);
        if key.is_null() || stage.is_null() {
            continue;
        }
        let stage = CStr::from_ptr(stage).to_string_lossy();
        if let Some(id) = BUILTIN.canonical_id(&stage) {
            map.insert(CStr::from_ptr(key).to_string_lossy().into(), id);
        }
    }
    pg_sys::SPI_finish();
    map
}
