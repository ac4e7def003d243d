//! The backend-local configuration cache: the stage set, aliases and per-table modes.
//!
//! Contract: a change to the stage set (the enum type `stage_norm.stage_set`), to
//! `stage_norm.aliases` or to `stage_norm.table_mode_settings` is visible to every session from
//! its next statement after commit (and to the writing session from its next command), with no
//! per-row catalog or SPI lookup.
//!
//! The stage set is a type, not table rows, so that pg_dump restores it before any data (an
//! enum type is pre-data): restored CHECK constraints and aliases need it. Its changes arrive
//! through the syscache callback on `pg_type` by (name, namespace), filtered by the hash of
//! `stage_norm.stage_set`, so other types' DDL costs nothing.
//!
//! How:
//! - Both tables live in backend memory and are (re)loaded only when stale: the overrides with
//!   the set, from the table's blocks ([`crate::heapread`]); the aliases at the first label the
//!   set's rules do not know after that ([`load_aliases`]), so a backend whose labels the rules
//!   know never reads them.
//! - Every write to either table fires a statement trigger ([`config_changed`]) that queues a
//!   relcache invalidation of that table; PostgreSQL delivers it to every backend after commit
//!   (and to the writer itself at its next command).
//! - The relcache callback registered in `_PG_init` only marks things stale (no catalog access,
//!   no errors: it may run anywhere). It also queues relids for the trigger's per-table cache.
//! - At the first call of each statement the backend accepts pending invalidation messages
//!   (a cheap flag check when there are none), so even a statement that takes no new lock sees
//!   a change committed before it started.
//! - The reload reads with the latest snapshot, so what it sees is never older than the
//!   invalidation that caused it, whatever the isolation level. In parallel mode no new snapshot
//!   may be taken: the reload uses the statement's snapshot and is redone at the next statement.
use std::collections::HashMap;
use std::ffi::{c_int, CStr, CString};
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};

use pgrx::prelude::*;
use stage_norm_core::{as_utf8, Aliases, Fnv1a, StageId, StageSet, BUILTIN};

use crate::server::{raw, Global};
use crate::guc::Mode;

type TableModes = HashMap<pg_sys::Oid, Mode, BuildHasherDefault<Fnv1a>>;

// Touched by the relcache callback: atomics only.
static STALE: AtomicBool = AtomicBool::new(true);
/// The relations whose writes make the cache stale: `aliases`, `table_mode_settings`,
/// `citus_table_modes`, and on Citus the local placements (shards) the configuration is read
/// from (0 = none).
static WATCHED: [AtomicU32; 5] = [const { AtomicU32::new(0) }; 5];
/// The `TYPENAMENSP` syscache hash of (`stage_set`, the `stage_norm` namespace); 0 = unknown.
static SET_TYPE_HASH: AtomicU32 = AtomicU32::new(0);
// Touched by the backend's own code paths only.
static RELOAD_AT_NEXT_STATEMENT: Global<bool> = Global::new(false);
static LAST_STATEMENT: Global<pg_sys::TimestampTz> = Global::new(pg_sys::TimestampTz::MIN);
/// Bumped by every reload, so that users of the cache can memoize lookups.
static GENERATION: Global<u64> = Global::new(0);
static ALIASES: Global<Option<Aliases>> = Global::new(None);
/// The configured stage set; None is the default set ([`BUILTIN`]).
static SET: Global<Option<StageSet>> = Global::new(None);
/// Bumped when the stage set itself changes (not on every reload), so that the trigger
/// rebuilds its canonical datums only then.
static SET_GENERATION: Global<u64> = Global::new(0);
/// The current set's canonical names indexed by (length, first and last bytes): "is this a
/// canonical name?" in one slot load and one compare, for a label the memo does not hold (then
/// recorded in it), and for the canonical-only checks of distribution keys and array elements.
/// Rebuilt with the set.
static CANON: Global<CanonIndex> = Global::new(CanonIndex::EMPTY);

const CANON_SLOTS: usize = 64;
const CANON_AMBIGUOUS: u8 = u8::MAX;
struct CanonIndex {
    /// Stage id + 1, 0 for no stage, `CANON_AMBIGUOUS` when two names share the slot.
    slots: [u8; CANON_SLOTS],
    /// Each name's bytes (pointing into the set, which outlives this index).
    names: [(*const u8, usize); stage_norm_core::MAX_STAGES],
}
impl CanonIndex {
    const EMPTY: CanonIndex = CanonIndex { slots: [0; CANON_SLOTS], names: [(std::ptr::null(), 0); stage_norm_core::MAX_STAGES] };
}

/// The slot of a name: its length, first and last bytes (the default set's `series-a` ...
/// `series-e` differ only in the last).
#[inline(always)]
fn canon_slot(b: &[u8]) -> usize {
    let (first, last) = (usize::from(b[0]), usize::from(b[b.len() - 1]));
    (b.len().wrapping_mul(7) ^ first ^ last.wrapping_mul(13)) & (CANON_SLOTS - 1)
}

fn build_canon_index(set: &StageSet) -> CanonIndex {
    let mut ix = CanonIndex::EMPTY;
    for (i, n) in set.stages.iter().enumerate() {
        let b = n.as_bytes();
        ix.names[i] = (b.as_ptr(), b.len());
        let slot = &mut ix.slots[canon_slot(b)];
        *slot = if *slot == 0 { i as u8 + 1 } else { CANON_AMBIGUOUS };
    }
    ix
}

/// The canonical stage whose name is exactly `b` in the current set ([`StageSet::canonical_id_bytes`],
/// indexed). Call [`refresh`] first.
#[inline(always)]
pub fn canonical_id_bytes(b: &[u8]) -> Option<StageId> {
    if b.is_empty() {
        return None;
    }
    // SAFETY: single-threaded; rebuilt only by `reload`, together with the set it points into.
    let ix = unsafe { &*CANON.get() };
    match ix.slots[canon_slot(b)] {
        0 => None,
        CANON_AMBIGUOUS => set().canonical_id_bytes(b),
        k => {
            let (p, n) = ix.names[usize::from(k - 1)];
            // SAFETY: `p` points at `n` bytes of a name of the current set.
            (n == b.len() && stage_norm_core::bytes::same(unsafe { std::slice::from_raw_parts(p, n) }, b)).then_some(k - 1)
        }
    }
}
static TABLE_MODES: Global<Option<TableModes>> = Global::new(None);
static KEY_BUF: Global<String> = Global::new(String::new());
/// The keys of the last stage distribution the trigger judged ([`stage_norm_core::dist::KeyMemo`]);
/// cleared with [`MEMO`], so it always agrees with the classification.
pub static KEY_MEMO: Global<stage_norm_core::dist::KeyMemo> = Global::new(stage_norm_core::dist::KeyMemo::EMPTY);

/// The trigger's memo of recent labels ([`stage_norm_core::memo`]): direct-mapped, 256 slots,
/// labels up to 24 bytes, each with its [`Class`]. A column of stages holds few distinct
/// spellings, so most rows are a hit: a hash of the label and one compare instead of building
/// its key and trying the rules (measured: about 25 instead of 270 instructions), and one lookup
/// says both whether the value is canonical and which stage it names (#31). Cleared whenever the
/// configuration is reloaded, so it always agrees with the classification.
static MEMO: Global<stage_norm_core::memo::Memo> = Global::new(stage_norm_core::memo::Memo::EMPTY);

/// What a label is, in one byte (as the memo keeps it): a known variant of a stage (the stage's
/// id, below `MAX_STAGES`), a stage's canonical name (the id + [`Class::CANONICAL`]), or unknown.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Class(u8);
const _: () = assert!(stage_norm_core::MAX_STAGES <= Class::CANONICAL as usize);
impl Class {
    const CANONICAL: u8 = 0x40;
    const UNKNOWN: Class = Class(u8::MAX);

    #[inline(always)]
    fn of(k: stage_norm_core::dist::KeyClass) -> Class {
        match k {
            None => Class::UNKNOWN,
            Some((id, canonical)) => Class(id | if canonical { Class::CANONICAL } else { 0 }),
        }
    }

    /// The label is a stage's canonical name.
    #[inline(always)]
    pub fn is_canonical(self) -> bool {
        self.0 & 0xC0 == Class::CANONICAL
    }

    /// The stage the label names, canonical or not.
    #[inline(always)]
    pub fn stage(self) -> Option<StageId> {
        (self != Class::UNKNOWN).then_some(self.0 & (Class::CANONICAL - 1))
    }

    #[inline(always)]
    pub fn key(self) -> stage_norm_core::dist::KeyClass {
        self.stage().map(|id| (id, self.is_canonical()))
    }
}

/// Classifies a label given as bytes (not necessarily UTF-8: then it is unknown), through the
/// memo, with the rules and the aliases, for a caller that must not read the catalog (a raw
/// entry point's `catch_unwind`): `None` when the label needs the aliases and they are not read
/// yet. Then call [`load_aliases`] where an error may be raised, and ask again.
#[inline]
pub fn classify_bytes_if_loaded(bytes: &[u8]) -> Option<Option<StageId>> {
    lookup::<false>(bytes).map(Class::stage)
}

/// What a label is ([`Class`]): one memo lookup, the trigger's per-value question. Call
/// [`refresh`] first; may read the aliases (a catalog scan that can raise an error): call it
/// where an error may be raised.
#[inline(always)]
pub fn classify_label(bytes: &[u8]) -> Class {
    lookup::<true>(bytes).unwrap_or(Class::UNKNOWN)
}

/// What a distribution key or an array element is: `(stage, already canonical?)`, or None
/// ([`classify_label`]).
#[inline]
pub fn classify_key(bytes: &[u8]) -> stage_norm_core::dist::KeyClass {
    classify_label(bytes).key()
}

/// The memo's answer for `bytes`, filled on a miss; `None` when `!LOAD` and the label needs the
/// aliases, not read yet.
#[inline(always)]
fn lookup<const LOAD: bool>(bytes: &[u8]) -> Option<Class> {
    let Some(k) = stage_norm_core::memo::Key::of(bytes) else {
        return uncached::<LOAD>(bytes).map(Class::of);
    };
    // SAFETY: single-threaded; `uncached` does not touch MEMO.
    let memo = unsafe { MEMO.get() };
    if let Some(c) = memo.get(&k) {
        return Some(Class(c));
    }
    let class = Class::of(uncached::<LOAD>(bytes)?);
    memo.insert(&k, class.0);
    Some(class)
}

/// Called after a reload that changed the stage set, by whoever registered it
/// ([`on_set_changed`]): a plain function pointer, so that the cache knows nothing of its users.
static SET_CHANGED: Global<Option<fn()>> = Global::new(None);
/// Called by the relcache callback for every invalidation, by whoever registered it
/// ([`on_relation_invalidated`]). PostgreSQL keeps 10 relcache callback slots per backend
/// (core takes up to 4, Citus 5): stage_norm takes one and shares it.
static RELATION_LISTENER: std::sync::OnceLock<fn(pg_sys::Oid)> = std::sync::OnceLock::new();

/// Registers `f`, to be called from the relcache callback for every invalidation (0: all
/// relations); like the callback, it may touch atomics only. Once per backend, from `_PG_init`.
pub fn on_relation_invalidated(f: fn(pg_sys::Oid)) {
    let _ = RELATION_LISTENER.set(f);
}

/// Registers `f`, to be called when a reload changes the stage set (once per backend, from
/// `_PG_init`; the trigger, whose resolved tables hold the set's datums and widths).
pub fn on_set_changed(f: fn()) {
    // SAFETY: single-threaded; at load, before any reload.
    unsafe { *SET_CHANGED.get() = Some(f) };
}

/// Registers the relcache callback; called once per backend from `_PG_init`.
pub fn init() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0));
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::TYPENAMENSP as i32,
            Some(set_type_callback),
            pg_sys::Datum::from(0),
        );
    }
}

/// A type was created, changed or dropped: if it may be `stage_norm.stage_set`, reload.
#[pg_guard]
unsafe extern "C-unwind" fn set_type_callback(_arg: pg_sys::Datum, _cache: i32, hash: u32) {
    let ours = SET_TYPE_HASH.load(Relaxed);
    if hash == 0 || ours == 0 || hash == ours {
        STALE.store(true, Relaxed);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let id = u32::from(relid);
    if id == 0 || WATCHED.iter().any(|w| w.load(Relaxed) == id) {
        STALE.store(true, Relaxed);
    }
    if let Some(f) = RELATION_LISTENER.get() {
        f(relid);
    }
}

/// `stage_norm.config_changed()`, the statement trigger on the configuration tables: any write
/// invalidates every backend's cache. A raw entry point: called any other way than as an
/// AFTER ... FOR EACH STATEMENT trigger it raises 39P01.
#[no_mangle]
pub unsafe extern "C-unwind" fn config_changed_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    config_changed(fcinfo);
    pg_sys::Datum::from(0)
}

crate::pg_finfo_v1!(pg_finfo_config_changed_wrapper);

#[pg_guard]
unsafe extern "C-unwind" fn config_changed(fcinfo: pg_sys::FunctionCallInfo) {
    let td = crate::server::statement_trigger_data(fcinfo, "config_changed", "an AFTER ... FOR EACH STATEMENT trigger");
    pg_sys::CacheInvalidateRelcacheByRelid((*(*td).tg_relation).rd_id);
}

/// A label the memo does not hold: out of line, so that the memo's hit path (inlined into the
/// trigger's walk) stays small. A canonical name is its own stage, whatever the aliases say (a
/// CHECK on `stage_norm.aliases` keeps them from redefining a label the rules know).
#[inline(never)]
fn uncached<const LOAD: bool>(bytes: &[u8]) -> Option<stage_norm_core::dist::KeyClass> {
    if let Some(id) = canonical_id_bytes(bytes) {
        return Some(Some((id, true)));
    }
    let stage = match as_utf8(bytes) {
        Some(text) => classify_with::<LOAD>(text)?,
        None => None,
    };
    Some(stage.map(|id| (id, false)))
}

/// Classifies `input` with the set's rules and the current aliases; `None` when `!LOAD` and the
/// label needs the aliases, not read yet.
///
/// The rules are tried first, and the aliases only for a label they do not know: the result is
/// the same as the aliases first, since an alias never redefines a label the rules know (the
/// table's CHECK `aliases_extend_builtin`, re-checked by every change of the set). So a backend
/// reads the aliases at its first label the rules do not know, never when every label is one
/// they know (docs/benchmarks.md, #31).
#[inline(always)]
fn classify_with<const LOAD: bool>(input: &str) -> Option<Option<StageId>> {
    // SAFETY: single-threaded; neither global is reachable from inside the rules.
    let buf = unsafe { KEY_BUF.get() };
    if let Some(id) = set().classify(input, None, buf) {
        return Some(Some(id));
    }
    // SAFETY: as above; `load_aliases` replaces the value, no reference to it is held across.
    if unsafe { ALIASES.get().is_none() } {
        if !LOAD {
            return None;
        }
        load_aliases();
    }
    // `buf` still holds the key (the rules read a suffix-stripped slice of it).
    let aliases = unsafe { ALIASES.get().as_ref() };
    Some(aliases.filter(|a| !a.is_empty()).and_then(|a| a.get(buf)))
}

/// The current stage set. Call [`refresh`] first; the reference is valid until the next
/// [`refresh`] (a reload replaces the set), so hold it only within one call.
#[inline(always)]
pub fn set() -> &'static StageSet {
    // SAFETY: single-threaded; replaced only by `reload`, which callers do not reach while
    // they hold the reference (see above).
    unsafe { SET.get().as_ref().unwrap_or(&BUILTIN) }
}

/// Changes whenever the stage set changes. Call [`refresh`] first.
#[inline(always)]
pub fn set_generation() -> u64 {
    // SAFETY: as in `set`.
    unsafe { *SET_GENERATION.get() }
}

/// Classifies `input` with the built-in rules only (no aliases, no cache).
#[inline]
pub fn classify_builtin(input: &str) -> Option<StageId> {
    // SAFETY: as in `classify`.
    BUILTIN.classify(input, None, unsafe { KEY_BUF.get() })
}

/// The per-table override of `relid`, if any. Call [`refresh`] first.
#[inline]
pub fn table_mode(relid: pg_sys::Oid) -> Option<Mode> {
    // SAFETY: as in `classify`.
    unsafe { TABLE_MODES.get().as_ref() }.and_then(|m| if m.is_empty() { None } else { m.get(&relid).copied() })
}

/// The cache generation: changes whenever the cache is reloaded.
#[inline]
pub fn generation() -> u64 {
    // SAFETY: as in `classify`.
    unsafe { *GENERATION.get() }
}

/// Makes the cache current: once per statement, accept invalidations; reload when stale.
#[inline(always)]
pub fn refresh() {
    // SAFETY: single-threaded; the callback that may run inside AcceptInvalidationMessages only
    // touches atomics.
    unsafe {
        let now = raw::GetCurrentStatementStartTimestamp();
        let last = LAST_STATEMENT.get();
        if now != *last {
            *last = now;
            if *RELOAD_AT_NEXT_STATEMENT.get() {
                STALE.store(true, Relaxed);
            }
            pg_sys::AcceptInvalidationMessages();
        }
    }
    if STALE.load(Relaxed) {
        reload();
    }
}

/// Whether [`refresh`] has nothing to do: this statement's invalidations were taken in and the
/// cache is not stale. Lets a raw entry point call a guarded `refresh` only when it must.
#[inline(always)]
pub fn fresh() -> bool {
    // SAFETY: single-threaded; a read of two plain values.
    unsafe { raw::GetCurrentStatementStartTimestamp() == *LAST_STATEMENT.get() && !STALE.load(Relaxed) }
}

/// Marks the cache stale again if the reload does not complete (an error unwinds through it).
struct StaleUnlessDone(bool);
impl Drop for StaleUnlessDone {
    fn drop(&mut self) {
        if !self.0 {
            STALE.store(true, Relaxed);
        }
    }
}

#[cold]
fn reload() {
    // Cleared first: an invalidation that arrives while we read sets it again.
    STALE.store(false, Relaxed);
    let mut guard = StaleUnlessDone(false);
    let parallel = unsafe { pg_sys::IsInParallelMode() };
    // SAFETY: single-threaded.
    unsafe { *RELOAD_AT_NEXT_STATEMENT.get() = false };
    let (set, aliases, modes) = unsafe { load(parallel) };
    // SAFETY: single-threaded; no reference into these globals is live during a reload.
    unsafe {
        // (load may have asked for it too: a configuration table it went without)
        *RELOAD_AT_NEXT_STATEMENT.get() |= parallel;
        if *SET.get() != set || *SET_GENERATION.get() == 0 {
            *SET.get() = set;
            *CANON.get() = build_canon_index(SET.get().as_ref().unwrap_or(&BUILTIN));
            let g = SET_GENERATION.get();
            *g = g.wrapping_add(1);
            // Who resolved something against the set does it again (the trigger: canonical
            // datums, widths, domains).
            if let Some(f) = *SET_CHANGED.get() {
                f();
            }
        }
        // None: read at the first label the rules do not know (`classify_with`).
        *ALIASES.get() = aliases;
        MEMO.get().clear();
        KEY_MEMO.get().clear();
        *TABLE_MODES.get() = Some(modes);
        let g = GENERATION.get();
        *g = g.wrapping_add(1);
    }
    guard.0 = true;
}

/// Reads `stage_norm.aliases` into the cache, with the latest snapshot (the active one in parallel
/// mode): called by [`classify_key`] at the first label the rules do not know after a (re)load, never
/// from a raw entry point's `catch_unwind` (it may raise an error). Until the next reload: an
/// invalidation of the table marks the whole cache stale, and the reload forgets the aliases.
#[cold]
#[inline(never)]
pub fn load_aliases() {
    let oid = pg_sys::Oid::from(WATCHED[0].load(Relaxed));
    // SAFETY: a read of backend state.
    let parallel = unsafe { pg_sys::IsInParallelMode() };
    let mut aliases = Aliases::new();
    if oid != pg_sys::InvalidOid {
        let current = set();
        // SAFETY: the extension's own table, by the oid the reload found; scan checks its columns.
        unsafe {
            scan(oid, parallel, [c"alias_key", c"stage"], |[k, s]| {
                if let (Some(k), Some(s)) = (text_bytes(k), text_bytes(s)) {
                    alias_entry(&mut aliases, current, k, s);
                }
            });
        }
    }
    // SAFETY: single-threaded; no reference into ALIASES is held across this call.
    unsafe {
        *RELOAD_AT_NEXT_STATEMENT.get() |= parallel;
        *ALIASES.get() = Some(aliases);
    }
}

/// One row of `aliases` into the map: keys and stages as bytes with their lengths (never C
/// strings: a key holding a NUL byte, which add_alias refuses and an old row may have, must not
/// turn into its prefix); a stage the set does not know, or a key that is not UTF-8, is left out.
fn alias_entry(aliases: &mut Aliases, set: &StageSet, key: &[u8], stage: &[u8]) {
    if let (Some(id), Some(key)) = (set.canonical_id_bytes(stage), as_utf8(key)) {
        aliases.insert(key.into(), id);
    }
}

unsafe fn relation_oid(nsp: pg_sys::Oid, name: &CStr) -> pg_sys::Oid {
    if nsp == pg_sys::InvalidOid {
        return pg_sys::InvalidOid;
    }
    pg_sys::get_relname_relid(name.as_ptr(), nsp)
}

/// Runs a read-only query with the latest snapshot (or the active one in parallel mode) and
/// calls `row` with the bytes of the first two columns of each row: a `text` column's bytes as
/// stored (with their length: text may hold a NUL byte, which a C string would cut off), any
/// other column's output.
unsafe fn query(sql: &CStr, parallel: bool, mut row: impl FnMut(&[u8], &[u8])) {
    let plan = pg_sys::SPI_prepare(sql.as_ptr(), 0, std::ptr::null_mut());
    let snapshot = if parallel { std::ptr::null_mut() } else { pg_sys::GetLatestSnapshot() };
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
        pgrx::error!("stage_norm: reading its configuration failed (SPI code {rc})");
    }
    let table = pg_sys::SPI_tuptable;
    let desc = (*table).tupdesc;
    let column = |tuple: pg_sys::HeapTuple, n: i32| -> Option<&[u8]> {
        if pg_sys::SPI_gettypeid(desc, n) == pg_sys::TEXTOID {
            let mut isnull = false;
            let d = pg_sys::SPI_getbinval(tuple, desc, n, &mut isnull);
            (!isnull).then(|| crate::server::varlena_bytes(d))
        } else {
            let v = pg_sys::SPI_getvalue(tuple, desc, n);
            (!v.is_null()).then(|| CStr::from_ptr(v).to_bytes())
        }
    };
    for i in 0..pg_sys::SPI_processed as usize {
        let tuple = *(*table).vals.add(i);
        if let (Some(a), Some(b)) = (column(tuple, 1), column(tuple, 2)) {
            row(a, b);
        }
    }
}

/// Whether this database has Citus's metadata (the extension citus).
unsafe fn citus_metadata() -> bool {
    pg_sys::get_relname_relid(c"pg_dist_partition".as_ptr(), pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE)) != pg_sys::InvalidOid
}

/// Where to read the configuration table `relid` (`stage_norm.<name>`) from, and whether that
/// read may fail:
/// - without Citus, or when the table is no Citus table: itself;
/// - a Citus reference table: this node's placement of its shard, a plain local table (and
///   that shard's oid, for the invalidation callback);
/// - a reference table without a placement here (a coordinator outside the metadata, a node
///   being added while its placement is copied): the logical table, through Citus. Inside a
///   shard's query Citus refuses that read; the caller then goes without (see [`load`]).
unsafe fn config_source(citus: bool, relid: pg_sys::Oid, name: &CStr, parallel: bool) -> (String, pg_sys::Oid, bool) {
    let own = format!("stage_norm.{}", name.to_string_lossy());
    if !citus {
        return (own, pg_sys::InvalidOid, false);
    }
    let (mut distributed, mut shard) = (false, None::<String>);
    let sql = CString::new(format!(
        "SELECT s.shardid::text, coalesce((SELECT true FROM pg_catalog.pg_dist_placement p, pg_catalog.pg_dist_local_group l \
                                             WHERE p.shardid OPERATOR(pg_catalog.=) s.shardid \
                                               AND p.groupid OPERATOR(pg_catalog.=) l.groupid LIMIT 1), false)::text \
           FROM pg_catalog.pg_dist_shard s WHERE s.logicalrelid::pg_catalog.oid OPERATOR(pg_catalog.=) {}::pg_catalog.oid LIMIT 1",
        u32::from(relid)
    ))
    .unwrap();
    query(&sql, parallel, |id, local| {
        distributed = true;
        if local == b"true" {
            shard = Some(format!("{}_{}", name.to_string_lossy(), String::from_utf8_lossy(id)));
        }
    });
    if !distributed {
        return (own, pg_sys::InvalidOid, false);
    }
    let Some(shard) = shard else { return (own, pg_sys::InvalidOid, true) };
    let cname = CString::new(shard).unwrap();
    let nsp = pg_sys::get_namespace_oid(c"stage_norm".as_ptr(), true);
    let oid = pg_sys::get_relname_relid(cname.as_ptr(), nsp);
    if oid == pg_sys::InvalidOid {
        return (own, pg_sys::InvalidOid, true);
    }
    let quoted = CStr::from_ptr(pg_sys::quote_identifier(cname.as_ptr())).to_string_lossy().into_owned();
    (format!("stage_norm.{quoted}"), oid, false)
}

/// Reads `from` with [`query`], or when `fallible`, in a subtransaction: an error (Citus refusing
/// a distributed read inside a shard's query) reads nothing and returns false.
unsafe fn read_config(sql: &CStr, parallel: bool, fallible: bool, row: &mut dyn FnMut(&[u8], &[u8])) -> bool {
    if !fallible || parallel {
        query(sql, parallel, row);
        return true;
    }
    let rows = crate::server::in_subtransaction(|| {
        let mut rows: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        query(sql, parallel, |a, b| rows.push((a.to_owned(), b.to_owned())));
        rows
    });
    for (a, b) in rows.iter().flatten() {
        row(a, b);
    }
    rows.is_some()
}

/// Reads every row of one of the extension's configuration tables directly, with the latest
/// snapshot (the active one in parallel mode), and calls `row` with the datums of the columns
/// named `cols` (None: NULL). No SPI: a query would be parsed and planned (about 0.7 M
/// instructions each), paid by every backend's first statement that reads the configuration.
/// And no relation cache entry when [`heapread`] can read the table's blocks itself: building it
/// costs about 0.4 M instructions for `table_mode_settings`, with its row security policies.
/// Nothing is checked but visibility, as for the bootstrap superuser the query ran as: the tables
/// are readable by everyone and have no row security that hides rows from their readers.
unsafe fn scan(relid: pg_sys::Oid, parallel: bool, cols: [&CStr; 2], mut row: impl FnMut([Option<pg_sys::Datum>; 2])) {
    // Locked before the snapshot is taken: a transaction that rewrote the table (TRUNCATE) and
    // that the lock waited for is seen, with what it wrote.
    let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    pg_sys::LockRelationOid(relid, lock);
    let snapshot = if !parallel {
        pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot())
    } else if pg_sys::ActiveSnapshotSet() {
        pg_sys::GetActiveSnapshot()
    } else {
        pg_sys::GetTransactionSnapshot()
    };
    let mut att: Option<[usize; 2]> = None;
    let mut each = |attrs: &[pg_sys::FormData_pg_attribute], values: &[pg_sys::Datum], nulls: &[bool]| {
        let att = *att.get_or_insert_with(|| columns(relid, attrs, cols));
        row(att.map(|i| (!nulls[i]).then_some(values[i])));
    };
    // Missing: dropped (DROP EXTENSION committed while this statement ran): no rows.
    if crate::heapread::visible_rows(relid, snapshot, &mut each) == crate::heapread::Read::Unsupported {
        let rel = pg_sys::table_open(relid, pg_sys::NoLock as pg_sys::LOCKMODE);
        let desc = (*rel).rd_att;
        let attrs = crate::server::attrs(desc);
        let sscan = pg_sys::systable_beginscan(rel, pg_sys::InvalidOid, false, snapshot, 0, std::ptr::null_mut());
        let mut values = vec![pg_sys::Datum::from(0); attrs.len()];
        let mut nulls = vec![true; attrs.len()];
        loop {
            let tuple = pg_sys::systable_getnext(sscan);
            if tuple.is_null() {
                break;
            }
            pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            each(attrs, &values, &nulls);
        }
        pg_sys::systable_endscan(sscan);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
    if !parallel {
        pg_sys::UnregisterSnapshot(snapshot);
    }
    pg_sys::UnlockRelationOid(relid, lock);
}

/// The 0-based positions of the columns named `cols` in a configuration table's attributes (by
/// the descriptor's names, not get_attnum: its first call in a backend sets up the attribute-name
/// syscache, about 70,000 instructions); an error when one is missing or dropped.
unsafe fn columns(relid: pg_sys::Oid, attrs: &[pg_sys::FormData_pg_attribute], cols: [&CStr; 2]) -> [usize; 2] {
    cols.map(|c| {
        match attrs.iter().position(|a| !a.attisdropped && CStr::from_ptr(a.attname.data.as_ptr()) == c) {
            Some(i) => i,
            None => pgrx::error!("stage_norm: its configuration table {} lacks a column; reinstall the extension", u32::from(relid)),
        }
    })
}

/// The labels of the enum type `stage_norm.stage_set` in order (its sort order), from the
/// catalog through its index; empty when there is no such type.
unsafe fn stage_set_labels(nsp: pg_sys::Oid) -> Vec<String> {
    let typid = pg_sys::GetSysCacheOid(
        pg_sys::SysCacheIdentifier::TYPENAMENSP as i32,
        pg_sys::Anum_pg_type_oid as pg_sys::AttrNumber,
        pg_sys::Datum::from(c"stage_set".as_ptr()),
        pg_sys::Datum::from(nsp),
        pg_sys::Datum::from(0),
        pg_sys::Datum::from(0),
    );
    if typid == pg_sys::InvalidOid {
        return Vec::new();
    }
    let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    let rel = pg_sys::table_open(pg_sys::EnumRelationId, lock);
    let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
    pg_sys::ScanKeyInit(
        &mut key,
        pg_sys::Anum_pg_enum_enumtypid as pg_sys::AttrNumber,
        pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
        pg_sys::Oid::from(pg_sys::F_OIDEQ),
        pg_sys::Datum::from(typid),
    );
    let sscan = pg_sys::systable_beginscan(
        rel,
        pg_sys::Oid::from(pg_sys::EnumTypIdSortOrderIndexId),
        true,
        std::ptr::null_mut(),
        1,
        &mut key,
    );
    let mut names = Vec::new();
    loop {
        let tuple = pg_sys::systable_getnext(sscan);
        if tuple.is_null() {
            break;
        }
        let e = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_enum>(tuple);
        names.push(CStr::from_ptr((*e).enumlabel.data.as_ptr()).to_string_lossy().into_owned());
    }
    pg_sys::systable_endscan(sscan);
    pg_sys::table_close(rel, lock);
    names
}

/// A datum of a `text` column as bytes.
unsafe fn text_bytes<'a>(d: Option<pg_sys::Datum>) -> Option<&'a [u8]> {
    d.map(|d| crate::server::varlena_bytes(d))
}

/// The stage set, the aliases (None: left for [`load_aliases`], at the first label the rules do
/// not know) and the mode overrides.
unsafe fn load(parallel: bool) -> (Option<StageSet>, Option<Aliases>, TableModes) {
    let mut aliases = Aliases::new();
    let mut modes = TableModes::default();
    let nsp = pg_sys::get_namespace_oid(c"stage_norm".as_ptr(), true);
    let aliases_oid = relation_oid(nsp, c"aliases");
    let modes_oid = relation_oid(nsp, c"table_mode_settings");
    let citus_modes_oid = relation_oid(nsp, c"citus_table_modes");
    for (w, oid) in WATCHED.iter().zip([aliases_oid, modes_oid, citus_modes_oid, pg_sys::InvalidOid, pg_sys::InvalidOid]) {
        w.store(u32::from(oid), Relaxed);
    }
    if nsp != pg_sys::InvalidOid {
        // namehashfast reads the key as a NUL-terminated name.
        let hash = pg_sys::GetSysCacheHashValue(
            pg_sys::SysCacheIdentifier::TYPENAMENSP as i32,
            pg_sys::Datum::from(c"stage_set".as_ptr()),
            pg_sys::Datum::from(nsp),
            pg_sys::Datum::from(0),
            pg_sys::Datum::from(0),
        );
        SET_TYPE_HASH.store(hash, Relaxed);
    }
    if aliases_oid == pg_sys::InvalidOid && modes_oid == pg_sys::InvalidOid {
        return (None, Some(aliases), modes);
    }
    // The stage set: the labels of the enum type stage_norm.stage_set in order; no such type is
    // the default set. set_stages validated them; a type made around it that does not form a
    // valid set is refused loudly, never half-used.
    let mut set: Option<StageSet> = None;
    let names = if nsp != pg_sys::InvalidOid { stage_set_labels(nsp) } else { Vec::new() };
    if !names.is_empty() {
        match StageSet::from_names(&names) {
            Ok(s) => set = (s != BUILTIN).then_some(s),
            Err(e) => {
                pgrx::pg_sys::panic::ErrorReport::new(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("the enum type stage_norm.stage_set is not a valid stage set: {e}"),
                    "stage_norm",
                )
                .set_hint("Define the set with stage_norm.set_stages(...), or go back to the default with stage_norm.reset_stages().")
                .report(PgLogLevel::ERROR);
            }
        }
    }
    let current = set.as_ref().unwrap_or(&BUILTIN);
    let mut alias_row = |key: &[u8], stage: &[u8]| alias_entry(&mut aliases, current, key, stage);
    let mut mode_row = |oid: pg_sys::Oid, mode: &[u8]| {
        if let Some(mode) = as_utf8(mode).and_then(Mode::parse) {
            modes.insert(oid, mode);
        }
    };
    // On Citus the shared configuration tables are reference tables (stage_norm.citus_setup):
    // read them from this node's own placement, through SPI (config_source, load_citus).
    if citus_metadata() {
        load_citus(parallel, aliases_oid, modes_oid, citus_modes_oid, &mut alias_row, &mut mode_row);
        return (set, Some(aliases), modes);
    }
    WATCHED[3].store(0, Relaxed);
    WATCHED[4].store(0, Relaxed);
    if modes_oid != pg_sys::InvalidOid {
        scan(modes_oid, parallel, [c"tbl", c"mode"], |[t, m]| {
            if let (Some(t), Some(m)) = (t, text_bytes(m)) {
                mode_row(pg_sys::Oid::from(t.value() as u32), m);
            }
        });
    }
    // Overrides of Citus tables, by logical name (kept without Citus too: a dump restored
    // elsewhere). Read last: they win.
    if citus_modes_oid != pg_sys::InvalidOid {
        let mut rows: Vec<(pg_sys::Datum, Vec<u8>)> = Vec::new();
        scan(citus_modes_oid, parallel, [c"table_name", c"mode"], |[n, m]| {
            if let (Some(n), Some(m)) = (n, text_bytes(m)) {
                rows.push((n, m.to_vec()));
            }
        });
        for (name, mode) in rows {
            if let Some(oid) = pgrx::direct_function_call::<pg_sys::Oid>(pg_sys::to_regclass, &[Some(name)]) {
                mode_row(oid, &mode);
            }
        }
    }
    // The aliases: at the first label the rules do not know (load_aliases).
    (set, None, modes)
}

/// The aliases and mode overrides on a node with Citus's metadata: through SPI, from this node's
/// placement of each reference table when it has one (see [`config_source`]).
unsafe fn load_citus(
    parallel: bool,
    aliases_oid: pg_sys::Oid,
    modes_oid: pg_sys::Oid,
    citus_modes_oid: pg_sys::Oid,
    alias_row: &mut dyn FnMut(&[u8], &[u8]),
    mode_row: &mut dyn FnMut(pg_sys::Oid, &[u8]),
) {
    // Every query below runs with the caller's search_path as the bootstrap superuser: so no
    // operator, function or type name in them may resolve to a user's object. Functions are
    // qualified, and operators written OPERATOR(pg_catalog.=) on operands of exactly its types
    // (an operator of a user's for (oid, regtype) would otherwise be an exact match and win
    // over pg_catalog's (oid, oid), whatever the path: the security review of #19).
    // The configuration is readable by everyone; read it as the bootstrap superuser in a
    // restricted operation (as PostgreSQL's RI checks switch user), so that a writer's missing
    // USAGE on schema stage_norm cannot make its writes fail. Fixed queries on the extension's
    // own tables: no user code runs. An error aborts the (sub)transaction, which restores the
    // user.
    let (mut save_user, mut save_sec) = (pg_sys::InvalidOid, 0);
    pg_sys::GetUserIdAndSecContext(&mut save_user, &mut save_sec);
    pg_sys::SetUserIdAndSecContext(
        pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID),
        save_sec | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32,
    );
    if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
        pgrx::error!("stage_norm: SPI_connect failed while loading its configuration");
    }
    // Went without a configuration table (see config_source): read again at the next statement.
    let mut incomplete = false;
    if aliases_oid != pg_sys::InvalidOid {
        let (from, shard, fallible) = config_source(true, aliases_oid, c"aliases", parallel);
        WATCHED[3].store(u32::from(shard), Relaxed);
        let sql = CString::new(format!("SELECT alias_key, stage FROM {from}")).unwrap();
        incomplete |= !read_config(&sql, parallel, fallible, alias_row);
    }
    let mut mode_text = |oid: &[u8], mode: &[u8]| {
        if let Some(oid) = std::str::from_utf8(oid).ok().and_then(|s| s.parse::<u32>().ok()) {
            mode_row(pg_sys::Oid::from(oid), mode);
        }
    };
    if modes_oid != pg_sys::InvalidOid {
        query(c"SELECT tbl::oid, mode FROM stage_norm.table_mode_settings", parallel, &mut mode_text);
    }
    // Overrides of Citus tables, by logical name: each node resolves the name to its own
    // relation (on a worker, the shell table its shards' triggers name). Read last: they win.
    if citus_modes_oid != pg_sys::InvalidOid {
        let (from, shard, fallible) = config_source(true, citus_modes_oid, c"citus_table_modes", parallel);
        WATCHED[4].store(u32::from(shard), Relaxed);
        let sql = CString::new(format!(
            "SELECT pg_catalog.to_regclass(table_name)::oid, mode FROM {from} WHERE pg_catalog.to_regclass(table_name) IS NOT NULL"
        ))
        .unwrap();
        incomplete |= !read_config(&sql, parallel, fallible, &mut mode_text);
    }
    if incomplete {
        *RELOAD_AT_NEXT_STATEMENT.get() = true;
    }
    pg_sys::SPI_finish();
    pg_sys::SetUserIdAndSecContext(save_user, save_sec);
}

/// The prepared transactions of this database that changed stage_norm's configuration (they hold
/// a lock on one of its tables other than the migration's: `aliases`, the mode overrides, a
/// Citus placement of them) and are not committed yet, as `gid (prepared at)`, comma-separated;
/// None when there are none, or when they cannot be read.
///
/// Until such a transaction is committed (`COMMIT PREPARED`; on Citus, by the coordinator's
/// `recover_prepared_transactions()`, which its maintenance daemon runs every
/// `citus.recover_2pc_interval`), this node judges rows by the configuration before it: a Citus
/// worker that failed between PREPARE and COMMIT serves the old aliases and stage set. The
/// trigger names them in the DETAIL of what it reports (a cold path), and `citus_check` per node.
pub(crate) fn prepared_config_changes() -> Option<String> {
    // Read-only SPI: no command counter increment in the middle of the caller's statement.
    unsafe {
        crate::server::read_only_text(
            c"SELECT pg_catalog.string_agg(DISTINCT pg_catalog.format('%s (%s)', p.gid, p.prepared), ', ') \
                FROM pg_catalog.pg_prepared_xacts p \
                JOIN pg_catalog.pg_locks x ON x.locktype OPERATOR(pg_catalog.=) 'transactionid' \
                                          AND x.transactionid OPERATOR(pg_catalog.=) p.transaction \
                JOIN pg_catalog.pg_locks l ON l.virtualtransaction OPERATOR(pg_catalog.=) x.virtualtransaction \
                                          AND l.locktype OPERATOR(pg_catalog.=) 'relation' \
                JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) l.relation \
                JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
               WHERE p.database OPERATOR(pg_catalog.=) pg_catalog.current_database() \
                 AND n.nspname OPERATOR(pg_catalog.=) 'stage_norm' \
                 AND NOT c.relname::pg_catalog.text OPERATOR(pg_catalog.~~) 'migration\\_%'",
        )
    }
}

/// `stage_norm._prepared_config_changes()`: [`prepared_config_changes`], for `citus_check` on
/// every node.
#[pg_extern(volatile, parallel_restricted, name = "_prepared_config_changes")]
fn prepared_config_changes_sql() -> Option<String> {
    prepared_config_changes()
}

/// The canonical datums by padding, for the stage set of generation `.0`.
static CANONICAL: Global<(u64, Option<HashMap<usize, Vec<pg_sys::Datum>, BuildHasherDefault<Fnv1a>>>)> = Global::new((u64::MAX, None));

/// The canonical datums of the current stage set, blank-padded to `pad` characters for char(n)
/// (0: no padding). Allocated once per backend and set in TopMemoryContext (a set change
/// leaves the old ones behind: a few bytes, rarely).
pub fn canonical_datums(pad: usize) -> Vec<pg_sys::Datum> {
    // SAFETY: single-threaded; called while building a trigger entry or an array, never reentrant.
    let (generation, maps) = unsafe { CANONICAL.get() };
    if *generation != set_generation() {
        *generation = set_generation();
        *maps = None;
    }
    let set = set();
    maps.get_or_insert_with(HashMap::default)
        .entry(pad)
        .or_insert_with(|| unsafe {
            pgrx::PgMemoryContexts::TopMemoryContext.switch_to(|_| {
                (0..set.stages.len())
                    .map(|i| {
                        let s = format!("{:<pad$}", set.name(i as StageId));
                        pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(s.as_ptr().cast(), s.len() as c_int))
                    })
                    .collect()
            })
        })
        .clone()
}
