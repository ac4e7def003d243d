//! The write path: `stage_norm.normalize_trigger()` (BEFORE INSERT OR UPDATE, FOR EACH ROW) and
//! `stage_norm.summary_trigger()` (AFTER INSERT OR UPDATE, FOR EACH STATEMENT).
//!
//! Per row, for each governed column (the trigger's arguments):
//! 1. effective mode = min(table override, else `stage_norm.mode`; `stage_norm.max_mode`);
//!    `off` returns the row untouched;
//! 2. on UPDATE, a value the statement did not change is left alone (`unchanged`);
//! 3. NULL is left alone (`nulls`); a canonical value passes (`passed`);
//! 4. a known variant is rewritten (`normalized`; `would_normalize` in shadow);
//! 5. an unknown value is stored and reported (`warned`), counted only (`would_reject`, shadow),
//!    or rejected with SQLSTATE 23514 (`rejected`, enforce, inside the canary percentage).
//!
//! Everything per relation (attribute numbers, column types, the primary key, the schema and
//! table names) is resolved once and kept per trigger until a relcache invalidation of the
//! table; the override is memoized per cache generation. Labels are classified through the
//! cache's memo of recent labels. Rewrites are made inside the row when it is the slot's own
//! copy and the value keeps its size or shrinks (see `inplace`); the others are one
//! `heap_modify_tuple_by_cols` call, with canonical datums built once per backend.
//!
//! The rejection is thrown from the raw `extern "C-unwind"` entry point, after the guarded inner
//! function has returned: pgrx has no API for the SCHEMA/TABLE/COLUMN error fields, and an error
//! raised inside a guarded frame would lose them.
use std::collections::HashMap;
use std::ffi::{c_int, CStr, CString};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed};

use pgrx::pg_sys;
use pgrx::prelude::*;
use stage_norm_core::{Fnv1a, StageId};

use crate::backend::{raw, Global};
use crate::cache;
use crate::guc::{self, Mode};
use crate::inplace;

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

/// Client WARNINGs per statement and table; the rest are summed up by `summary_trigger`.
pub const WARNINGS_PER_STATEMENT: u64 = 3;
/// Longest stretch of a rejected value quoted in a message.
const QUOTE_CHARS: usize = 64;

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv1a>>;

struct Column {
    attnum: i16,
    name: CString,
    /// char(n): canonical values are blank-padded to n, and values compared without trailing blanks.
    pad_to: Option<usize>,
    /// The canonical datums to write into this column (padded for char(n)), by stage of the
    /// current set (the entry is rebuilt when the set changes).
    datums: Vec<pg_sys::Datum>,
    /// Their bytes (in TopMemoryContext, like the datums), for an in-place rewrite.
    payloads: Vec<(*const u8, usize)>,
    /// May be rewritten inside the row (see `inplace`): false when the partition constraint
    /// refers to it, or the table is not a heap (a foreign table, another access method).
    in_place: bool,
    /// For a column of a domain type: whether the domain accepts each canonical datum. A
    /// domain's CHECK runs before BEFORE triggers, so a rewrite must not store what the domain
    /// refuses: such a value is handled as an unknown one ([`Why::DomainRefuses`]).
    domain: Option<(pg_sys::Oid, Vec<bool>)>,
}

/// Why a value is not rewritten or passed: it is unknown, or it is a known variant that may not
/// be rewritten here. The mode then treats it as an unknown value (stored and reported,
/// counted, or rejected).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    Unknown,
    /// It arrived through a foreign key's referential action (ON UPDATE CASCADE, SET DEFAULT):
    /// rewriting it would make the row reference a value that no referenced row holds.
    ForeignKeyAction(StageId),
    /// The column's domain does not accept the canonical value it would be rewritten to.
    DomainRefuses(StageId),
}

struct Entry {
    relid: pg_sys::Oid,
    schema: CString,
    table: CString,
    /// The table `attach` was run on: this one, or for a partition governed through its
    /// parent's trigger, that parent (the root of the trigger's clones). Messages name it, and
    /// the per-statement bound on warnings counts per attached table.
    attached: pg_sys::Oid,
    /// Its name and schema-qualified name, when it is not this table.
    attached_name: Option<(String, String)>,
    columns: Vec<Column>,
    /// Primary-key columns: (attnum, typlen, typbyval). Empty when the table has none.
    pk: Vec<(i16, i16, bool)>,
    /// For a partition, its partitioned ancestors, nearest first: their override applies to it.
    ancestors: Vec<pg_sys::Oid>,
    mode_generation: u64,
    override_mode: Option<Mode>,
    counts: Counts,
}

#[derive(Default)]
struct StatementWarnings {
    statement: (pg_sys::TimestampTz, pg_sys::CommandId),
    /// relid -> unknown values seen in this statement
    unknown: FnvMap<pg_sys::Oid, u64>,
}

static ENTRIES: Global<Option<FnvMap<pg_sys::Oid, Box<Entry>>>> = Global::new(None);
/// The entry used last (boxed, so the pointer is stable until the entry is dropped, which
/// clears this).
static LAST: Global<(pg_sys::Oid, *mut Entry)> = Global::new((pg_sys::InvalidOid, std::ptr::null_mut()));
/// Counts of entries that were dropped (invalidated), by relid.
static RETIRED: Global<Option<FnvMap<pg_sys::Oid, Counts>>> = Global::new(None);
/// The canonical datums by padding, for the stage set of generation `.0`.
static CANONICAL: Global<(u64, Option<FnvMap<usize, Vec<pg_sys::Datum>>>)> = Global::new((u64::MAX, None));
static WARNINGS: Global<Option<StatementWarnings>> = Global::new(None);
static RNG: Global<u64> = Global::new(0);
// Written by the relcache callback: atomics only. Relids to forget, and "forget everything".
const PENDING_SLOTS: usize = 16;
static PENDING: [AtomicU32; PENDING_SLOTS] = [const { AtomicU32::new(0) }; PENDING_SLOTS];
static PENDING_LEN: AtomicUsize = AtomicUsize::new(0);
static DROP_ALL: AtomicBool = AtomicBool::new(false);

/// Called by the relcache callback: forget what we resolved about `relid`.
pub fn relation_invalidated(relid: pg_sys::Oid) {
    let id = u32::from(relid);
    let n = PENDING_LEN.load(Relaxed);
    if id == 0 || n == PENDING_SLOTS {
        DROP_ALL.store(true, Relaxed);
    } else {
        PENDING[n].store(id, Relaxed);
        PENDING_LEN.store(n + 1, Relaxed);
    }
}

fn retire(e: &Entry) {
    // SAFETY: single-threaded; RETIRED is not reachable from the callers' borrows.
    let retired = unsafe { RETIRED.get() }.get_or_insert_with(FnvMap::default);
    let c = retired.entry(e.relid).or_insert([0; OUTCOMES]);
    for (a, b) in c.iter_mut().zip(e.counts) {
        *a += b;
    }
}

#[inline]
fn apply_invalidations(entries: &mut FnvMap<pg_sys::Oid, Box<Entry>>) {
    if DROP_ALL.load(Relaxed) {
        DROP_ALL.store(false, Relaxed);
        PENDING_LEN.store(0, Relaxed);
        // SAFETY: single-threaded.
        unsafe { *LAST.get() = (pg_sys::InvalidOid, std::ptr::null_mut()) };
        entries.values().for_each(|e| retire(e));
        entries.clear();
        return;
    }
    let n = PENDING_LEN.load(Relaxed);
    if n == 0 {
        return;
    }
    PENDING_LEN.store(0, Relaxed);
    // SAFETY: single-threaded.
    unsafe { *LAST.get() = (pg_sys::InvalidOid, std::ptr::null_mut()) };
    let pending: Vec<u32> = PENDING[..n].iter().map(|p| p.load(Relaxed)).collect();
    entries.retain(|_, e| {
        let keep = !pending.contains(&u32::from(e.relid));
        if !keep {
            retire(e);
        }
        keep
    });
}

/// This backend's counts by table (live entries plus retired ones).
pub fn session_counts() -> Vec<(pg_sys::Oid, Counts)> {
    // SAFETY: single-threaded; called from a SQL function, not from inside the trigger.
    let (retired, entries) = unsafe { (RETIRED.get(), ENTRIES.get()) };
    let mut all: FnvMap<pg_sys::Oid, Counts> = retired.clone().unwrap_or_default();
    for e in entries.iter().flat_map(|m| m.values()) {
        let c = all.entry(e.relid).or_insert([0; OUTCOMES]);
        for (a, b) in c.iter_mut().zip(e.counts) {
            *a += b;
        }
    }
    let mut v: Vec<_> = all.into_iter().collect();
    v.sort_by_key(|(relid, _)| u32::from(*relid));
    v
}

/// A WARNING for the client only (PostgreSQL 15's WARNING_CLIENT_ONLY: never in the server
/// log, which gets sampled LOG lines instead). Returns normally.
fn client_warning(message: String, detail: String, hint: Option<String>) {
    unsafe {
        let edata = error_data(pg_sys::WARNING_CLIENT_ONLY, PgSqlErrorCode::ERRCODE_WARNING, message, detail, hint);
        pg_sys::ThrowErrorData(edata);
    }
}

/// A palloc'd ErrorData for ThrowErrorData.
unsafe fn error_data(
    elevel: u32,
    code: PgSqlErrorCode,
    message: String,
    detail: String,
    hint: Option<String>,
) -> *mut pg_sys::ErrorData {
    let pstr = |s: String| pg_sys::pstrdup(CString::new(s.replace('\0', "")).unwrap_or_default().as_ptr());
    let edata = pg_sys::palloc0(std::mem::size_of::<pg_sys::ErrorData>()).cast::<pg_sys::ErrorData>();
    (*edata).elevel = elevel as c_int;
    (*edata).sqlerrcode = code as c_int;
    (*edata).message = pstr(message);
    (*edata).detail = pstr(detail);
    if let Some(h) = hint {
        (*edata).hint = pstr(h);
    }
    (*edata).filename = c"trigger.rs".as_ptr();
    (*edata).lineno = line!() as c_int;
    (*edata).funcname = c"normalize_trigger".as_ptr();
    edata
}

/// xorshift64*: log sampling only, no need for quality beyond uniformity.
fn random_unit() -> f64 {
    // SAFETY: single-threaded, not reentrant.
    let rng = unsafe { RNG.get() };
    let mut x = *rng;
    if x == 0 {
        x = (unsafe { pg_sys::MyProcPid } as u64) << 32 ^ unsafe { pg_sys::GetCurrentTimestamp() } as u64 | 1;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

/// The canonical datums of the current stage set, blank-padded to `pad` characters for char(n)
/// (0: no padding). Allocated once per backend and set in TopMemoryContext (a set change
/// leaves the old ones behind: a few bytes, rarely).
fn canonical_datums(pad: usize) -> Vec<pg_sys::Datum> {
    // SAFETY: single-threaded; only called while building an entry.
    let (generation, maps) = unsafe { CANONICAL.get() };
    if *generation != cache::set_generation() {
        *generation = cache::set_generation();
        *maps = None;
    }
    let set = cache::set();
    maps.get_or_insert_with(FnvMap::default)
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

/// The bytes of a text datum: read in place unless compressed or external (then detoasted).
#[inline(always)]
unsafe fn varlena_bytes<'a>(d: pg_sys::Datum) -> &'a [u8] {
    let mut v = d.cast_mut_ptr::<pg_sys::varlena>();
    if pgrx::varlena::varatt_is_1b_e(v) || pgrx::varlena::varatt_is_4b_c(v) {
        v = pg_sys::pg_detoast_datum_packed(v);
    }
    let len = pgrx::varlena::varsize_any_exhdr(v);
    let data = pgrx::varlena::vardata_any(v) as *const u8;
    std::slice::from_raw_parts(data, len)
}

/// Do two values of a column hold the same bytes? The stored forms first (an unchanged value is
/// normally copied as it is, TOAST pointer included), then the detoasted contents.
#[inline(always)]
unsafe fn same_value(a: pg_sys::Datum, b: pg_sys::Datum) -> bool {
    if a == b {
        return true;
    }
    let (pa, pb) = (a.cast_mut_ptr::<pg_sys::varlena>(), b.cast_mut_ptr::<pg_sys::varlena>());
    let (na, nb) = (pgrx::varlena::varsize_any(pa), pgrx::varlena::varsize_any(pb));
    if na == nb && std::slice::from_raw_parts(pa.cast::<u8>(), na) == std::slice::from_raw_parts(pb.cast::<u8>(), nb) {
        return true;
    }
    varlena_bytes(a) == varlena_bytes(b)
}

fn quote(value: &[u8]) -> String {
    let s = String::from_utf8_lossy(value);
    let mut out: String = s.chars().take(QUOTE_CHARS).collect();
    if s.chars().nth(QUOTE_CHARS).is_some() {
        out.push('…');
    }
    out
}

fn stage_list() -> String {
    cache::set().stages.iter().map(|s| &**s).collect::<Vec<_>>().join(", ")
}

fn unknown_hint(value: &[u8], why: Why) -> String {
    match why {
        Why::Unknown if std::str::from_utf8(value).is_err() => format!(
            "The value is not valid UTF-8 (its invalid bytes are shown as U+FFFD): fix its encoding. The stages are: {}.",
            stage_list()
        ),
        Why::Unknown => format!(
            "Use one of: {}; or ask a DBA to add an alias: SELECT stage_norm.add_alias('{}', '<stage>');",
            stage_list(),
            quote(value).replace('\'', "''")
        ),
        Why::ForeignKeyAction(_) => "Govern the referenced column too (stage_norm.attach on the referenced table), so that \
             the values a foreign-key action copies are canonical already; see docs/write-path.md."
            .into(),
        Why::DomainRefuses(_) => "Let the domain accept the canonical stages (ALTER DOMAIN ... DROP CONSTRAINT, then ADD \
             CONSTRAINT with them), or write values the domain and the stages agree on."
            .into(),
    }
}

/// The message of an unknown (or not rewritable) value, naming the attached table and, for a
/// partition, the partition.
fn value_message(e: &Entry, col: &Column, value: &[u8], why: Why) -> String {
    let q = quote(value);
    let col_name = col.name.to_string_lossy();
    let table = match &e.attached_name {
        Some((parent, _)) => format!("\"{parent}\" (partition \"{}\")", e.table.to_string_lossy()),
        None => format!("\"{}\"", e.table.to_string_lossy()),
    };
    match why {
        Why::Unknown => format!("value \"{q}\" for column \"{col_name}\" of table {table} is not a known investment stage"),
        Why::ForeignKeyAction(id) => format!(
            "value \"{q}\" for column \"{col_name}\" of table {table} came through a foreign-key action and is not canonical (\"{}\")",
            cache::set().name(id)
        ),
        Why::DomainRefuses(id) => format!(
            "value \"{q}\" for column \"{col_name}\" of table {table} would be rewritten to \"{}\", which its domain does not accept",
            cache::set().name(id)
        ),
    }
}

/// The table for a DETAIL: `schema.table`, or for a partition governed through its parent,
/// `schema.parent (partition schema.partition)`.
fn qualified_table(e: &Entry) -> String {
    let own = format!("{}.{}", e.schema.to_string_lossy(), e.table.to_string_lossy());
    match &e.attached_name {
        Some((_, parent)) => format!("{parent} (partition {own})"),
        None => own,
    }
}

/// What the DETAIL says about why the value was not rewritten (empty for an unknown value).
fn why_detail(why: Why) -> &'static str {
    match why {
        Why::Unknown => "",
        Why::ForeignKeyAction(_) => " stage_norm never rewrites a value written by a referential action (ON UPDATE CASCADE, SET DEFAULT): the rewritten value would reference no row, and PostgreSQL would not check it.",
        Why::DomainRefuses(_) => " A domain's CHECK runs before triggers, so stage_norm stores only canonical values the domain accepts.",
    }
}

fn text_like_error(e: &Entry, col: &str, msg: String) -> ! {
    pgrx::pg_sys::panic::ErrorReport::new(PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH, msg, "normalize_trigger")
        .set_detail(format!(
            "stage_norm.normalize_trigger governs column \"{col}\" of table {}.{}.",
            e.schema.to_string_lossy(),
            e.table.to_string_lossy()
        ))
        .set_hint("Re-run stage_norm.attach(...) with text, varchar(n >= 9), char(n >= 9) or citext columns.")
        .report(PgLogLevel::ERROR);
    unreachable!()
}

/// Resolves everything about the trigger's table once.
unsafe fn build_entry(td: *mut pg_sys::TriggerData) -> Entry {
    let rel = (*td).tg_relation;
    let trig = (*td).tg_trigger;
    let tupdesc = (*rel).rd_att;
    let relid = (*rel).rd_id;
    let schema = CStr::from_ptr(pg_sys::get_namespace_name((*(*rel).rd_rel).relnamespace)).to_owned();
    let table = CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr()).to_owned();
    let (attached, attached_name) = attached_table(rel, trig);
    let mut e = Entry {
        relid,
        schema,
        table,
        attached,
        attached_name,
        columns: Vec::new(),
        pk: Vec::new(),
        ancestors: partition_ancestors(rel),
        mode_generation: u64::MAX,
        override_mode: None,
        counts: [0; OUTCOMES],
    };
    let nargs = (*trig).tgnargs as usize;
    if nargs == 0 {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "trigger \"{}\" on table {}.{} names no column",
                CStr::from_ptr((*trig).tgname).to_string_lossy(),
                e.schema.to_string_lossy(),
                e.table.to_string_lossy()
            ),
            "normalize_trigger",
        )
        .set_hint("Create it with stage_norm.attach(table, column, ...).")
        .report(PgLogLevel::ERROR);
    }
    let attrs = (*tupdesc).attrs.as_slice((*tupdesc).natts as usize);
    let partition_columns = partition_qual_columns(rel);
    // In-row rewrites only for heap tables: a foreign table's slot is a heap slot too, but its
    // FDW may keep its own pointer to the tuple; other access methods fall back as well.
    let heap = (*(*rel).rd_rel).relam == pg_sys::HEAP_TABLE_AM_OID;
    for i in 0..nargs {
        let name = CStr::from_ptr(*(*trig).tgargs.add(i));
        let attnum = pg_sys::SPI_fnumber(tupdesc, name.as_ptr());
        if attnum <= 0 {
            pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!(
                    "column \"{}\" governed by stage_norm does not exist in table {}.{}",
                    name.to_string_lossy(),
                    e.schema.to_string_lossy(),
                    e.table.to_string_lossy()
                ),
                "normalize_trigger",
            )
            .set_detail("The trigger's arguments name the columns it governs; one was renamed or dropped.")
            .set_hint("Re-run stage_norm.attach(table, column, ...) with the current column names.")
            .report(PgLogLevel::ERROR);
        }
        let attr = &attrs[(attnum - 1) as usize];
        let mut typmod = attr.atttypmod;
        let base = pg_sys::getBaseTypeAndTypmod(attr.atttypid, &mut typmod);
        let col = name.to_string_lossy().into_owned();
        let text_like = base == pg_sys::TEXTOID
            || base == pg_sys::VARCHAROID
            || base == pg_sys::BPCHAROID
            || (pg_sys::TypeCategory(base) as u8 == b'S' && pg_sys::get_typlen(base) == -1);
        if !text_like {
            text_like_error(&e, &col, format!("column \"{col}\" is not of a text type"));
        }
        let limit = (typmod >= pg_sys::VARHDRSZ as i32).then(|| (typmod - pg_sys::VARHDRSZ as i32) as usize);
        let longest = cache::set().stages.iter().map(|s| s.chars().count()).max().unwrap_or(0);
        if (base == pg_sys::VARCHAROID || base == pg_sys::BPCHAROID) && limit.is_some_and(|n| n < longest) {
            text_like_error(&e, &col, format!("column \"{col}\" is too short to hold every canonical stage"));
        }
        let pad_to = if base == pg_sys::BPCHAROID { limit } else { None };
        let datums = canonical_datums(pad_to.unwrap_or(0));
        let in_place = heap && !in_partition_qual(partition_columns, attnum as i32);
        let payloads = datums
            .iter()
            .map(|&d| {
                let b = varlena_bytes(d);
                (b.as_ptr(), b.len())
            })
            .collect();
        let domain =
            (base != attr.atttypid).then(|| (attr.atttypid, datums.iter().map(|&d| domain_accepts(attr.atttypid, d)).collect()));
        e.columns.push(Column { attnum: attnum as i16, name: name.to_owned(), pad_to, datums, payloads, in_place, domain });
    }
    let pk_index = primary_key_index(rel);
    if pk_index != pg_sys::InvalidOid {
        let idx = pg_sys::RelationIdGetRelation(pk_index);
        if !idx.is_null() {
            let index = (*idx).rd_index;
            let n = (*index).indnkeyatts as usize;
            for &attnum in (*index).indkey.values.as_slice(n) {
                if attnum > 0 {
                    let a = &attrs[(attnum - 1) as usize];
                    e.pk.push((attnum, a.attlen, a.attbyval));
                }
            }
            pg_sys::RelationClose(idx);
        }
    }
    e
}

/// The table the trigger was attached to: for a clone (a partition governed through its
/// parent's trigger), the nearest ancestor whose same-named trigger is not itself a clone;
/// otherwise `rel` itself (then no name is returned).
unsafe fn attached_table(rel: pg_sys::Relation, trig: *const pg_sys::Trigger) -> (pg_sys::Oid, Option<(String, String)>) {
    let relid = (*rel).rd_id;
    if !(*trig).tgisclone {
        return (relid, None);
    }
    let name = CStr::from_ptr((*trig).tgname);
    for anc in partition_ancestors(rel) {
        let arel = pg_sys::RelationIdGetRelation(anc);
        if arel.is_null() {
            break;
        }
        let td = (*arel).trigdesc;
        let found = if td.is_null() {
            None
        } else {
            let trigs = std::slice::from_raw_parts((*td).triggers, (*td).numtriggers as usize);
            trigs.iter().find(|t| CStr::from_ptr(t.tgname) == name).map(|t| t.tgisclone)
        };
        let name = CStr::from_ptr((*(*arel).rd_rel).relname.data.as_ptr()).to_string_lossy().into_owned();
        let qualified = format!(
            "{}.{name}",
            CStr::from_ptr(pg_sys::get_namespace_name((*(*arel).rd_rel).relnamespace)).to_string_lossy(),
        );
        pg_sys::RelationClose(arel);
        match found {
            Some(false) => return (anc, Some((name, qualified))),
            Some(true) => continue,
            None => break,
        }
    }
    (relid, None)
}

/// Does domain `domain` accept `value`? Evaluated once per column and canonical stage when the
/// trigger resolves its table, in a subtransaction (a domain CHECK may call any function), the
/// way PL/pgSQL runs an exception block.
unsafe fn domain_accepts(domain: pg_sys::Oid, value: pg_sys::Datum) -> bool {
    let cxt = pg_sys::CurrentMemoryContext;
    let owner = pg_sys::CurrentResourceOwner;
    pg_sys::BeginInternalSubTransaction(std::ptr::null());
    pg_sys::MemoryContextSwitchTo(cxt);
    let ok = PgTryBuilder::new(|| {
        pg_sys::domain_check(value, false, domain, std::ptr::null_mut(), std::ptr::null_mut());
        true
    })
    .catch_others(|_| false)
    .execute();
    if ok {
        pg_sys::ReleaseCurrentSubTransaction();
    } else {
        pg_sys::RollbackAndReleaseCurrentSubTransaction();
    }
    pg_sys::MemoryContextSwitchTo(cxt);
    pg_sys::CurrentResourceOwner = owner;
    ok
}

#[cfg(not(any(feature = "pg17", feature = "pg18")))]
unsafe fn primary_key_index(rel: pg_sys::Relation) -> pg_sys::Oid {
    pg_sys::RelationGetPrimaryKeyIndex(rel)
}
#[cfg(any(feature = "pg17", feature = "pg18"))]
unsafe fn primary_key_index(rel: pg_sys::Relation) -> pg_sys::Oid {
    pg_sys::RelationGetPrimaryKeyIndex(rel, false)
}

/// The canary bucket (0..100) of a row: a hash of its primary key, or of the value when the
/// table has no primary key. Deterministic, so a retried row gets the same answer.
unsafe fn bucket(e: &Entry, tuple: pg_sys::HeapTuple, tupdesc: pg_sys::TupleDesc, value: &[u8]) -> u64 {
    let mut h = Fnv1a::default();
    if e.pk.is_empty() {
        h.write(value);
    }
    for &(attnum, typlen, byval) in &e.pk {
        let mut isnull = false;
        let d = pg_sys::heap_getattr(tuple, attnum as i32, tupdesc, &mut isnull);
        if isnull {
            h.write(&[0xff]);
        } else if byval {
            let n = (typlen as usize).min(8);
            h.write(&(d.value() as u64).to_le_bytes()[..n]);
        } else if typlen > 0 {
            h.write(std::slice::from_raw_parts(d.cast_mut_ptr::<u8>(), typlen as usize));
        } else if typlen == -1 {
            h.write(varlena_bytes(d));
        } else {
            h.write(CStr::from_ptr(d.cast_mut_ptr()).to_bytes());
        }
    }
    h.finish() % 100
}

fn statement_id() -> (pg_sys::TimestampTz, pg_sys::CommandId) {
    unsafe { (pg_sys::GetCurrentStatementStartTimestamp(), pg_sys::GetCurrentCommandId(false)) }
}

/// Reports an unknown value that is stored (warn, or enforce outside the canary): a client
/// WARNING for the first few per statement and table, a sampled server-log line always.
fn report_unknown(e: &Entry, col: &Column, value: &[u8], mode: Mode, why: Why) {
    let shown = {
        // SAFETY: single-threaded; WARNINGS is not reachable from the trigger's other borrows.
        let w = unsafe { WARNINGS.get() }.get_or_insert_with(StatementWarnings::default);
        let now = statement_id();
        if w.statement != now {
            w.statement = now;
            w.unknown.clear();
        }
        let n = w.unknown.entry(e.attached).or_insert(0);
        *n += 1;
        *n
    };
    if shown <= WARNINGS_PER_STATEMENT {
        let table = qualified_table(e);
        let detail = if mode == Mode::Enforce {
            format!("stage_norm enforces on table {table}, but this row is outside stage_norm.enforce_percent (canary), so it was stored as it is.{}", why_detail(why))
        } else {
            format!("stage_norm mode is warn for table {table}: the value was stored as it is.{}", why_detail(why))
        };
        client_warning(value_message(e, col, value, why), detail, Some(unknown_hint(value, why)));
    }
    log_sample(e, col, value, mode);
}

/// A server-log line for an unknown value, with probability `stage_norm.log_sample_rate`.
fn log_sample(e: &Entry, col: &Column, value: &[u8], mode: Mode) {
    let rate = guc::read(&guc::LOG_SAMPLE_RATE);
    if rate > 0.0 && (rate >= 1.0 || random_unit() < rate) {
        let quoted = quote(value);
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_WARNING,
            format!(
                "stage_norm: unknown stage \"{quoted}\" in column \"{}\" of table {}.{} (mode {}, sampled at {rate})",
                col.name.to_string_lossy(),
                e.schema.to_string_lossy(),
                e.table.to_string_lossy(),
                mode.name()
            ),
            "normalize_trigger",
        )
        .report(PgLogLevel::LOG_SERVER_ONLY);
    }
}

/// Builds the 23514 error (palloc'd) that the raw entry point throws.
unsafe fn rejection(e: &Entry, col: &Column, value: &[u8], why: Why) -> *mut pg_sys::ErrorData {
    let table = qualified_table(e);
    let detail = match why {
        Why::Unknown => format!("stage_norm enforces on table {table}: the value matches no canonical stage, built-in rule or alias."),
        _ => format!("stage_norm enforces on table {table}.{}", why_detail(why)),
    };
    let edata = error_data(
        pg_sys::PGERROR,
        PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
        value_message(e, col, value, why),
        detail,
        Some(unknown_hint(value, why)),
    );
    (*edata).schema_name = pg_sys::pstrdup(e.schema.as_ptr());
    (*edata).table_name = pg_sys::pstrdup(e.table.as_ptr());
    (*edata).column_name = pg_sys::pstrdup(col.name.as_ptr());
    edata
}

/// The partitioned tables `rel` is a partition of, nearest first (empty for other tables).
unsafe fn partition_ancestors(rel: pg_sys::Relation) -> Vec<pg_sys::Oid> {
    if !(*(*rel).rd_rel).relispartition {
        return Vec::new();
    }
    let relid = (*rel).rd_id;
    let list = pg_sys::ffi::pg_guard_ffi_boundary(|| get_partition_ancestors(relid));
    if list.is_null() {
        return Vec::new();
    }
    let cells = std::slice::from_raw_parts((*list).elements, (*list).length as usize);
    cells.iter().map(|c| c.oid_value).collect()
}

/// The columns the partition constraint of `rel` refers to (ancestors' keys included), as a
/// `pull_varattnos` set; null for a table that is not a partition.
unsafe fn partition_qual_columns(rel: pg_sys::Relation) -> *mut pg_sys::Bitmapset {
    let mut set: *mut pg_sys::Bitmapset = std::ptr::null_mut();
    if (*(*rel).rd_rel).relispartition {
        let qual = pg_sys::ffi::pg_guard_ffi_boundary(|| RelationGetPartitionQual(rel));
        pg_sys::pull_varattnos(qual.cast(), 1, &mut set);
    }
    set
}

/// Whether `attnum` (or the whole row) appears in a `partition_qual_columns` set.
unsafe fn in_partition_qual(set: *mut pg_sys::Bitmapset, attnum: i32) -> bool {
    let member = |a: i32| pg_sys::bms_is_member(a - pg_sys::FirstLowInvalidHeapAttributeNumber, set);
    !set.is_null() && (member(attnum) || member(0))
}

extern "C-unwind" {
    /// PostgreSQL's partition.c (not in pgrx's bindings): an OidList, nearest parent first.
    /// Called through `pg_guard_ffi_boundary`, which turns an ERROR into a Rust panic.
    fn get_partition_ancestors(relid: pg_sys::Oid) -> *mut pg_sys::List;
    /// partcache.c (not in pgrx's bindings): the partition constraint as a list of
    /// expressions on the partition's own columns (varno 1). Same calling rule.
    fn RelationGetPartitionQual(rel: pg_sys::Relation) -> *mut pg_sys::List;
}

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

unsafe fn trigger_data(fcinfo: pg_sys::FunctionCallInfo, name: &str) -> *mut pg_sys::TriggerData {
    let ctx = (*fcinfo).context;
    if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            format!("stage_norm.{name}() was not called by the trigger manager"),
            "normalize_trigger",
        )
        .set_hint("Attach it with stage_norm.attach(table, column, ...).")
        .report(PgLogLevel::ERROR);
    }
    ctx.cast()
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
    cols: [c_int; MAX_BATCH],
    values: [pg_sys::Datum; MAX_BATCH],
    /// The old value's bytes inside `tuple`, for an in-place rewrite; null when the column
    /// may not be rewritten in place.
    old: [*mut u8; MAX_BATCH],
    /// The new value's bytes (without the varlena header).
    payload: [(*const u8, usize); MAX_BATCH],
    /// The row was already replaced by a batch flush: no in-row rewrite for this row.
    replaced: bool,
    error: *mut pg_sys::ErrorData,
}

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
            let e = &mut **entries.entry(tgoid).or_insert_with(|| Box::new(build_entry(td)));
            *last = (tgoid, e as *mut Entry);
            e
        };
        let generation = cache::generation();
        if e.mode_generation != generation {
            e.mode_generation = generation;
            e.override_mode = override_mode(e.relid, &e.ancestors);
        }
        let mode = effective_mode(e.override_mode);
        if mode == Mode::Off {
            return;
        }
        let mut n = 0usize;
        for ci in 0..e.columns.len() {
            let col = &e.columns[ci];
            let attnum = col.attnum as i32;
            let mut isnull = false;
            let datum = pg_sys::heap_getattr(tuple, attnum, tupdesc, &mut isnull);
            if is_update {
                // Unchanged means equal to the old row's value, whatever the SET list says: a
                // BEFORE trigger that fires earlier may have changed a column the statement did
                // not target (tg_updatedcols does not show that).
                let mut old_null = false;
                let old = pg_sys::heap_getattr((*td).tg_trigtuple, attnum, tupdesc, &mut old_null);
                if old_null == isnull && (isnull || same_value(old, datum)) {
                    e.counts[Outcome::Unchanged as usize] += 1;
                    continue;
                }
            }
            if isnull {
                e.counts[Outcome::Nulls as usize] += 1;
                continue;
            }
            let mut bytes = varlena_bytes(datum);
            if col.pad_to.is_some() {
                while let [rest @ .., b' '] = bytes {
                    bytes = rest;
                }
            }
            // Already canonical (the common case once a table is migrated): no key to build.
            // Sound because aliases cannot redefine what the built-in rules know (a CHECK on
            // stage_norm.aliases), and every canonical name is a built-in label of itself.
            if cache::canonical_id_bytes(bytes).is_some() {
                e.counts[Outcome::Passed as usize] += 1;
                continue;
            }
            let why = match cache::classify_bytes(bytes) {
                None => Why::Unknown,
                // Not rewritable here: handled as the mode handles unknown values.
                Some(id) if col.domain.as_ref().is_some_and(|(_, ok)| !ok[usize::from(id)]) => Why::DomainRefuses(id),
                Some(id) if is_update && raw::InNoForceRLSOperation() => {
                    // Only ri_triggers.c sets SECURITY_NOFORCE_RLS: this UPDATE is a foreign
                    // key's referential action (checked only for a rewrite, which is rare).
                    Why::ForeignKeyAction(id)
                }
                Some(id) => {
                    if mode == Mode::Shadow {
                        e.counts[Outcome::WouldNormalize as usize] += 1;
                        continue;
                    }
                    if n == MAX_BATCH {
                        // More than MAX_BATCH rewrites in one row: apply them here (guarded).
                        // The row is then a new tuple that no slot owns: no in-row rewrite
                        // for the rest, by design (`v.replaced`), and no stale old pointers.
                        let mut no_nulls = [false; MAX_BATCH];
                        tuple = pg_sys::heap_modify_tuple_by_cols(tuple, tupdesc, n as c_int, v.cols.as_mut_ptr(), v.values.as_mut_ptr(), no_nulls.as_mut_ptr());
                        v.tuple = tuple;
                        v.replaced = true;
                        v.old = [std::ptr::null_mut(); MAX_BATCH];
                        n = 0;
                    }
                    v.cols[n] = attnum;
                    v.values[n] = col.datums[usize::from(id)];
                    v.old[n] = if col.in_place && !v.replaced { datum.cast_mut_ptr() } else { std::ptr::null_mut() };
                    v.payload[n] = col.payloads[usize::from(id)];
                    n += 1;
                    e.counts[Outcome::Normalized as usize] += 1;
                    continue;
                }
            };
            // Unknown, or a known variant that may not be rewritten here.
            let outcome = match mode {
                Mode::Shadow => {
                    log_sample(e, col, bytes, mode);
                    Outcome::WouldReject
                }
                Mode::Enforce => {
                    let percent = guc::read(&guc::ENFORCE_PERCENT);
                    if percent >= 100 || bucket(e, tuple, tupdesc, bytes) < percent as u64 {
                        e.counts[Outcome::Rejected as usize] += 1;
                        log_sample(e, col, bytes, mode);
                        v.error = rejection(e, col, bytes, why);
                        return;
                    }
                    report_unknown(e, col, bytes, mode, why);
                    Outcome::Warned
                }
                _ => {
                    report_unknown(e, col, bytes, mode, why);
                    Outcome::Warned
                }
            };
            e.counts[outcome as usize] += 1;
        }
        v.n = n as c_int;
    }
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
        cols: [0; MAX_BATCH],
        values: [pg_sys::Datum::from(0); MAX_BATCH],
        old: [std::ptr::null_mut(); MAX_BATCH],
        payload: [(std::ptr::null(), 0); MAX_BATCH],
        replaced: false,
        error: std::ptr::null_mut(),
    };
    normalize_row(fcinfo, &mut v);
    if !v.error.is_null() {
        raw::ThrowErrorData(v.error);
    }
    if v.n > 0 && !v.replaced && inplace::slot_owns(v.slot, v.tuple) {
        rewrite_in_place(&mut v);
    }
    if v.n > 0 {
        // Rewrites never write NULL.
        let mut no_nulls = [false; MAX_BATCH];
        v.tuple = raw::heap_modify_tuple_by_cols(v.tuple, v.desc, v.n, v.cols.as_mut_ptr(), v.values.as_mut_ptr(), no_nulls.as_mut_ptr());
    }
    pg_sys::Datum::from(v.tuple)
}

#[inline(always)]
unsafe fn payload(v: &Verdict, i: usize) -> &'static [u8] {
    std::slice::from_raw_parts(v.payload[i].0, v.payload[i].1)
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
        if inplace::rewrite(v.tuple, v.desc, v.cols[0], v.old[0], payload(v, 0), nvalid) {
            v.n = 0;
        }
        return;
    }
    let mut order: [usize; MAX_BATCH] = std::array::from_fn(|i| i);
    order[..n].sort_unstable_by_key(|&i| std::cmp::Reverse(v.cols[i]));
    let mut done = [false; MAX_BATCH];
    for &i in &order[..n] {
        done[i] = inplace::rewrite(v.tuple, v.desc, v.cols[i], v.old[i], payload(v, i), nvalid);
    }
    let mut k = 0;
    for (i, &made) in done[..n].iter().enumerate() {
        if !made {
            v.cols[k] = v.cols[i];
            v.values[k] = v.values[i];
            k += 1;
        }
    }
    v.n = k as c_int;
}

/// The key under which `report_unknown` counted a statement's unknown values for `rel`.
unsafe fn statement_key(rel: pg_sys::Relation) -> (pg_sys::Oid, Option<(String, String)>) {
    let relid = (*rel).rd_id;
    let td = (*rel).trigdesc;
    if !(*(*rel).rd_rel).relispartition || td.is_null() {
        return (relid, None);
    }
    let trigs = std::slice::from_raw_parts((*td).triggers, (*td).numtriggers as usize);
    match trigs.iter().find(|t| CStr::from_ptr(t.tgname) == c"stage_norm_normalize") {
        Some(t) => attached_table(rel, t),
        None => (relid, None),
    }
}

#[no_mangle]
pub extern "C" fn pg_finfo_normalize_trigger() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `stage_norm.summary_trigger()`: after each INSERT or UPDATE statement, one WARNING with the
/// exact number of unknown values that were stored but not shown.
#[pg_trigger]
fn summary_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    // Unknown values are counted per attached table: for a partition governed through its
    // parent's trigger (a statement that writes into the partition directly), that parent.
    let (relid, attached_name) = unsafe { statement_key(trigger.relation()?.as_ptr()) };
    // SAFETY: single-threaded; not reentrant.
    let unknown = match unsafe { WARNINGS.get() } {
        Some(w) if w.statement == statement_id() => w.unknown.remove(&relid).unwrap_or(0),
        _ => 0,
    };
    if unknown > WARNINGS_PER_STATEMENT {
        let table = match attached_name {
            Some((parent, _)) => format!("\"{parent}\" (partition \"{}\")", trigger.table_name()?),
            None => format!("\"{}\"", trigger.table_name()?),
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
    Ok(None)
}
