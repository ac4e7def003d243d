//! What the trigger resolves once per table (and keeps until a relcache invalidation of it):
//! the governed columns with their canonical datums, widths and domain answers, the primary
//! key, the partition ancestors and the attached table; and this backend's counts.
use super::*;

pub(super) type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv1a>>;

/// The column kinds the trigger governs, each read by its own module: text-like values
/// (`value`), stage distributions (`jsonb`), stage arrays (`array`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Text,
    Jsonb,
    /// `text[]` or `varchar[]`, with the element type.
    Array(pg_sys::Oid),
}

pub(super) struct Column {
    pub(super) attnum: i16,
    pub(super) name: CString,
    pub(super) kind: Kind,
    /// char(n): canonical values are blank-padded to n, and values compared without trailing blanks.
    pub(super) pad_to: Option<usize>,
    /// The canonical values to write into this column (padded for char(n)), by stage of the
    /// current set (the entry is rebuilt when the set changes).
    pub(super) canon: Vec<Canon>,
    /// May be rewritten inside the row (see `inplace`): false when the partition constraint
    /// refers to it, or the table is not a heap (a foreign table, another access method).
    pub(super) in_place: bool,
    /// May be rewritten inside the row during the walk, as soon as it is judged: in place, and
    /// not a primary-key column (the canary's bucket hashes the key as the row was written,
    /// and a later column of the same row may ask for it).
    pub(super) in_walk: bool,
    /// For a column of a domain type, the domain (whether it accepts each canonical value is
    /// `Canon::allowed`).
    pub(super) domain: Option<pg_sys::Oid>,
    /// The columns of this table's foreign keys that have a referential action, read the first
    /// time a rewrite may be one ([`Write::referential_action`]).
    pub(super) fk_action_keys: std::cell::OnceCell<Vec<Vec<i16>>>,
}

/// One canonical value of a column's stage: what a rewrite writes, read together.
#[derive(Clone, Copy)]
pub(super) struct Canon {
    /// The datum (in TopMemoryContext), for `heap_modify_tuple_by_cols`.
    pub(super) datum: pg_sys::Datum,
    /// Its bytes, for an in-place rewrite.
    pub(super) payload: (*const u8, usize),
    /// The column's domain accepts it (always, for a column not of a domain type). A domain's
    /// CHECK runs before BEFORE triggers, so a rewrite must not store what the domain refuses:
    /// such a value is handled as an unknown one ([`Why::DomainRefuses`]).
    pub(super) allowed: bool,
}

pub(super) struct Entry {
    pub(super) relid: pg_sys::Oid,
    pub(super) schema: CString,
    pub(super) table: CString,
    /// The table `attach` was run on: this one, or for a partition governed through its
    /// parent's trigger, that parent (the root of the trigger's clones). Messages name it, and
    /// the per-statement bound on warnings counts per attached table.
    pub(super) attached: pg_sys::Oid,
    /// Its name, schema-qualified name, and what this table is of it ("partition", or "shard"
    /// for a Citus shard whose trigger names its logical table: [`LOGICAL_PREFIX`], or
    /// [`SECONDARY_PLACEMENT`]), when it is not this table.
    pub(super) attached_name: Option<(String, String, &'static str)>,
    pub(super) columns: Vec<Column>,
    /// Primary-key columns: (attnum, typlen, typbyval). Empty when the table has none.
    pub(super) pk: Vec<(i16, i16, bool)>,
    /// For a partition, its partitioned ancestors, nearest first: their override applies to it.
    pub(super) ancestors: Vec<pg_sys::Oid>,
    pub(super) mode_generation: u64,
    pub(super) override_mode: Option<Mode>,
    /// This backend's counts per governed column (same order as `columns`), and what of them
    /// was flushed to shared memory (`stats`).
    pub(super) counts: Vec<Counts>,
    pub(super) flushed: Vec<Counts>,
    /// Shared-memory slots (`stats`): per column, and the attached table's (latency, breaker).
    /// (slot, attnum in the attached table) per column.
    pub(super) col_slots: Vec<Option<(u32, i16)>>,
    pub(super) table_slot: Option<u32>,
    /// The transaction generation in which this entry was last put on the dirty list.
    pub(super) dirty_gen: u64,
    /// Sampled trigger latency since the last flush.
    pub(super) hist: [u64; stats::BUCKETS],
    pub(super) hist_sum: u64,
    /// The effective mode of the last row.
    pub(super) last_mode: Mode,
}

pub(super) static ENTRIES: Global<Option<FnvMap<pg_sys::Oid, Box<Entry>>>> = Global::new(None);
/// The entry used last (boxed, so the pointer is stable until the entry is dropped, which
/// clears this).
pub(super) static LAST: Global<(pg_sys::Oid, *mut Entry)> = Global::new((pg_sys::InvalidOid, std::ptr::null_mut()));
/// Counts of entries that were dropped (invalidated), by relid.
pub(super) static RETIRED: Global<Option<FnvMap<pg_sys::Oid, Counts>>> = Global::new(None);
// Written by the relcache callback: atomics only. Relids to forget, and "forget everything".
pub(super) const PENDING_SLOTS: usize = 16;
pub(super) static PENDING: [AtomicU32; PENDING_SLOTS] = [const { AtomicU32::new(0) }; PENDING_SLOTS];
pub(super) static PENDING_LEN: AtomicUsize = AtomicUsize::new(0);
pub(super) static DROP_ALL: AtomicBool = AtomicBool::new(false);
/// Set by the syscache callback on pg_type/pg_constraint: forget only the tables with a
/// domain-typed governed column (their domains' answers may have changed), not every table.
pub(super) static DOMAINS_CHANGED: AtomicBool = AtomicBool::new(false);

/// Called by the syscache callback: a type or constraint changed somewhere (ALTER DOMAIN among
/// others). Atomics only, as for `relation_invalidated`.
pub(super) fn domains_changed() {
    DOMAINS_CHANGED.store(true, Relaxed);
}

/// Called by the relcache callback: forget what we resolved about `relid` (0: everything).
pub(super) fn relation_invalidated(relid: pg_sys::Oid) {
    let id = u32::from(relid);
    let n = PENDING_LEN.load(Relaxed);
    if id == 0 || n == PENDING_SLOTS {
        DROP_ALL.store(true, Relaxed);
    } else {
        PENDING[n].store(id, Relaxed);
        PENDING_LEN.store(n + 1, Relaxed);
    }
}

pub(super) fn retire(e: &mut Entry) {
    // What it counted since its last flush goes to shared memory now, as at transaction end;
    // in a transaction of migrate's own writes it is dropped there too (a relcache
    // invalidation in the middle of a batch, e.g. autovacuum's ANALYZE of the table, retired the
    // entry and flushed the batch's first rows: make monitoring saw them once).
    if super::uncounted() {
        discard_entry(e);
    } else {
        // SAFETY: single-threaded; flushing touches shared memory and this entry only.
        unsafe { flush_entry(e, false) };
    }
    // SAFETY: single-threaded; RETIRED is not reachable from the callers' borrows.
    let retired = unsafe { RETIRED.get() }.get_or_insert_with(FnvMap::default);
    let c = retired.entry(e.relid).or_insert([0; OUTCOMES]);
    for counts in &e.counts {
        for (a, b) in c.iter_mut().zip(counts) {
            *a += b;
        }
    }
}

#[inline]
pub(super) fn apply_invalidations(entries: &mut FnvMap<pg_sys::Oid, Box<Entry>>) {
    if DROP_ALL.load(Relaxed) {
        DROP_ALL.store(false, Relaxed);
        PENDING_LEN.store(0, Relaxed);
        // SAFETY: single-threaded.
        unsafe { *LAST.get() = (pg_sys::InvalidOid, std::ptr::null_mut()) };
        entries.values_mut().for_each(|e| retire(e));
        entries.clear();
        return;
    }
    if DOMAINS_CHANGED.load(Relaxed) {
        DOMAINS_CHANGED.store(false, Relaxed);
        let before = entries.len();
        entries.retain(|_, e| {
            let keep = e.columns.iter().all(|c| c.domain.is_none());
            if !keep {
                retire(e);
            }
            keep
        });
        if entries.len() != before {
            // SAFETY: single-threaded.
            unsafe { *LAST.get() = (pg_sys::InvalidOid, std::ptr::null_mut()) };
        }
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
        for counts in &e.counts {
            for (a, b) in c.iter_mut().zip(counts) {
                *a += b;
            }
        }
    }
    let mut v: Vec<_> = all.into_iter().collect();
    v.sort_by_key(|(relid, _)| u32::from(*relid));
    v
}

pub(super) fn text_like_error(e: &Entry, col: &str, msg: String) -> ! {
    pgrx::pg_sys::panic::ErrorReport::new(PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH, crate::encoding::for_report(msg), "normalize_trigger")
        .set_detail(crate::encoding::for_report(format!(
            "stage_norm.normalize_trigger governs column \"{col}\" of table {}.{}.",
            name_of(&e.schema),
            name_of(&e.table)
        )))
        .set_hint("Re-run stage_norm.attach(...) with text, varchar(n), char(n) or citext columns (wide enough for every stage), jsonb distribution columns, or text[]/varchar(n)[] columns.")
        .report(PgLogLevel::ERROR);
    unreachable!()
}

/// [`build_entry`], with the stage set it resolved still the cache's when it returns. A domain's
/// CHECK runs while the entry is built (`domain_accepts`, once per canonical value), and a CHECK
/// that changes the set (`stage_norm.set_stages`, in the writer's own transaction) makes the cache
/// reload under it: the entry's canonical values would then be the old set's while the row's
/// labels are classified against the new one (found by an independent review: `Series A`
/// stored as `series-b` after a stage was added first). So the entry is built again, up to
/// three times, then the statement fails (55000) rather than write what was not asked. Out of
/// line and cold: inlined into the walk it cost 12 instructions per row (code layout, #31).
#[cold]
#[inline(never)]
pub(super) unsafe fn build_entry_stable(td: *mut pg_sys::TriggerData) -> Entry {
    for _ in 0..3 {
        let generation = cache::set_generation();
        let e = build_entry(td);
        if cache::set_generation() == generation {
            return e;
        }
    }
    let rel = (*td).tg_relation;
    let table = CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr()).to_string_lossy().into_owned();
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        crate::encoding::for_report(format!("the stage set changed each time stage_norm prepared table \"{table}\"")),
        "normalize_trigger",
    )
    .set_detail("A CHECK of a governed column's domain changed the stage set while stage_norm checked the canonical stages against it.")
    .set_hint("Do not change the stage set (stage_norm.set_stages, rename_stage, reset_stages) from a domain's CHECK.")
    .report(PgLogLevel::ERROR);
    unreachable!()
}

/// Resolves everything about the trigger's table once.
pub(super) unsafe fn build_entry(td: *mut pg_sys::TriggerData) -> Entry {
    let rel = (*td).tg_relation;
    let trig = (*td).tg_trigger;
    let tupdesc = (*rel).rd_att;
    let relid = (*rel).rd_id;
    let schema = CStr::from_ptr(pg_sys::get_namespace_name((*(*rel).rd_rel).relnamespace)).to_owned();
    let table = CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr()).to_owned();
    let (attached, attached_name) = attached_table(rel, trig);
    let mut ancestors = partition_ancestors(rel);
    if attached != relid && !ancestors.contains(&attached) {
        ancestors.push(attached); // a shard: the logical table's override applies to it
    }
    let mut e = Entry {
        relid,
        schema,
        table,
        attached,
        attached_name,
        columns: Vec::new(),
        pk: Vec::new(),
        ancestors,
        mode_generation: u64::MAX,
        override_mode: None,
        counts: Vec::new(),
        flushed: Vec::new(),
        col_slots: Vec::new(),
        table_slot: None,
        dirty_gen: 0,
        hist: [0; stats::BUCKETS],
        hist_sum: 0,
        last_mode: Mode::Off,
    };
    let nargs = (*trig).tgnargs as usize;
    let columns_named = (0..nargs).filter(|&i| logical_name(CStr::from_ptr(*(*trig).tgargs.add(i))).is_none()).count();
    if columns_named == 0 {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, crate::encoding::for_report(format!(
                "trigger \"{}\" on table {}.{} names no column",
                name_of(CStr::from_ptr((*trig).tgname)),
                name_of(&e.schema),
                name_of(&e.table)
            )),
            "normalize_trigger",
        )
        .set_hint("Create it with stage_norm.attach(table, column, ...).")
        .report(PgLogLevel::ERROR);
    }
    let attrs = crate::server::attrs(tupdesc);
    let partition_columns = partition_qual_columns(rel);
    // In-row rewrites only for heap tables: a foreign table's slot is a heap slot too, but its
    // FDW may keep its own pointer to the tuple; other access methods fall back as well.
    let heap = (*(*rel).rd_rel).relam == pg_sys::HEAP_TABLE_AM_OID;
    for i in 0..nargs {
        let name = CStr::from_ptr(*(*trig).tgargs.add(i));
        if logical_name(name).is_some() {
            continue;
        }
        let attnum = pg_sys::SPI_fnumber(tupdesc, name.as_ptr());
        if attnum <= 0 {
            pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN, crate::encoding::for_report(format!(
                    "column \"{}\" governed by stage_norm does not exist in table {}.{}",
                    name_of(name),
                    name_of(&e.schema),
                    name_of(&e.table)
                )),
                "normalize_trigger",
            )
            .set_detail("The trigger's arguments name the columns it governs; one was renamed or dropped.")
            .set_hint("Re-run stage_norm.attach(table, column, ...) with the current column names.")
            .report(PgLogLevel::ERROR);
        }
        let attr = &attrs[(attnum - 1) as usize];
        let mut typmod = attr.atttypmod;
        let base = pg_sys::getBaseTypeAndTypmod(attr.atttypid, &mut typmod);
        let col = name_of(name);
        let longest = cache::set().stages.iter().map(|s| s.chars().count()).max().unwrap_or(0);
        let elem = pg_sys::get_element_type(base);
        if base == pg_sys::JSONBOID || elem != pg_sys::InvalidOid {
            if base != attr.atttypid {
                text_like_error(&e, &col, format!("column \"{col}\" is of a domain over jsonb or an array, which stage_norm does not govern"));
            }
            if base != pg_sys::JSONBOID && elem != pg_sys::TEXTOID && elem != pg_sys::VARCHAROID {
                text_like_error(&e, &col, format!("column \"{col}\" is an array of a type other than text or varchar"));
            }
            let limit = (typmod >= pg_sys::VARHDRSZ as i32).then(|| (typmod - pg_sys::VARHDRSZ as i32) as usize);
            if limit.is_some_and(|n| n < longest) {
                text_like_error(&e, &col, format!("column \"{col}\" is too short to hold every canonical stage"));
            }
            let kind = if base == pg_sys::JSONBOID { Kind::Jsonb } else { Kind::Array(elem) };
            e.columns.push(Column {
                attnum: attnum as i16,
                name: name.to_owned(),
                kind,
                pad_to: None,
                canon: Vec::new(),
                in_place: false,
                in_walk: false,
                domain: None,
                fk_action_keys: Default::default(),
            });
            continue;
        }
        let text_like = base == pg_sys::TEXTOID
            || base == pg_sys::VARCHAROID
            || base == pg_sys::BPCHAROID
            || (pg_sys::TypeCategory(base) as u8 == b'S' && pg_sys::get_typlen(base) == -1);
        if !text_like {
            text_like_error(&e, &col, format!("column \"{col}\" is not of a text type"));
        }
        let limit = (typmod >= pg_sys::VARHDRSZ as i32).then(|| (typmod - pg_sys::VARHDRSZ as i32) as usize);
        if (base == pg_sys::VARCHAROID || base == pg_sys::BPCHAROID) && limit.is_some_and(|n| n < longest) {
            text_like_error(&e, &col, format!("column \"{col}\" is too short to hold every canonical stage"));
        }
        let pad_to = if base == pg_sys::BPCHAROID { limit } else { None };
        let datums = cache::canonical_datums(pad_to.unwrap_or(0));
        let in_place = heap && !in_partition_qual(partition_columns, attnum as i32);
        let domain = (base != attr.atttypid).then_some(attr.atttypid);
        let canon = datums
            .iter()
            .map(|&d| {
                let b = varlena_bytes(d);
                Canon { datum: d, payload: (b.as_ptr(), b.len()), allowed: domain.is_none_or(|t| domain_accepts(t, d)) }
            })
            .collect();
        e.columns.push(Column {
            attnum: attnum as i16,
            name: name.to_owned(),
            kind: Kind::Text,
            pad_to,
            canon,
            in_place,
            in_walk: false, // set once the primary key is known, below
            domain,
            fk_action_keys: Default::default(),
        });
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
    for c in &mut e.columns {
        c.in_walk = c.in_place && !e.pk.iter().any(|&(attnum, _, _)| attnum == c.attnum);
    }
    e.counts = vec![[0; OUTCOMES]; e.columns.len()];
    e.flushed = e.counts.clone();
    resolve_slots(&mut e);
    e
}

/// The prefix of the trigger argument that names the logical table of a Citus shard:
/// `'@table=public.portfolio'` (written by `attach` on a Citus table, copied by Citus to every
/// shard's trigger as written). No column can be governed under a name that starts with it.
pub(crate) const LOGICAL_PREFIX: &str = "@table=";

/// The logical table an argument names, if it is the [`LOGICAL_PREFIX`] argument.
pub(crate) fn logical_name(arg: &CStr) -> Option<&str> {
    arg.to_str().ok()?.strip_prefix(LOGICAL_PREFIX)
}

/// The table the trigger was attached to:
/// - a trigger that names its logical table (a Citus shard's): that table as this node knows
///   it (a worker's shell table), or this table when the name resolves to nothing here; named
///   as written in the argument;
/// - a clone (a partition governed through its parent's trigger): the nearest ancestor whose
///   same-named trigger is not itself a clone;
/// - otherwise `rel` itself (then no name is returned).
pub(super) unsafe fn attached_table(
    rel: pg_sys::Relation,
    trig: *const pg_sys::Trigger,
) -> (pg_sys::Oid, Option<(String, String, &'static str)>) {
    let relid = (*rel).rd_id;
    for i in 0..(*trig).tgnargs as usize {
        if let Some(logical) = logical_name(CStr::from_ptr(*(*trig).tgargs.add(i))) {
            return logical_table(relid, logical);
        }
    }
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
        let name = name_of(CStr::from_ptr((*(*arel).rd_rel).relname.data.as_ptr()));
        let qualified = format!("{}.{name}", name_of(CStr::from_ptr(pg_sys::get_namespace_name((*(*arel).rd_rel).relnamespace))));
        pg_sys::RelationClose(arel);
        match found {
            Some(false) => return (anc, Some((name, qualified, "partition"))),
            Some(true) => continue,
            None => break,
        }
    }
    (relid, None)
}

/// The logical table `logical` (a qualified name as `attach` wrote it) of the shard `relid`,
/// honoured only when Citus's metadata says `relid` is one of its shards: same schema, named
/// `<table>_<shardid>` (the suffix alone when Citus shortened a long name), and that shardid
/// listed for that table in `pg_dist_shard`. Anything else (no Citus, a hand-written trigger
/// naming someone else's table) leaves the table on its own: a trigger argument cannot borrow
/// another table's override, breaker or counters (the security review of #19).
unsafe fn logical_table(relid: pg_sys::Oid, logical: &str) -> (pg_sys::Oid, Option<(String, String, &'static str)>) {
    let alone = (relid, None);
    if pg_sys::get_relname_relid(c"pg_dist_shard".as_ptr(), pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE)) == pg_sys::InvalidOid {
        return alone;
    }
    let Ok(text) = CString::new(logical) else { return alone };
    // attach writes the name with %I; a hand-written argument that does not parse is refused
    // (42602, from stringToQualifiedNameList) when the trigger first runs.
    #[cfg(feature = "pg15")]
    let names = pg_sys::stringToQualifiedNameList(text.as_ptr());
    // 16 added a soft-error context; NULL keeps the error thrown, as 15 does.
    #[cfg(not(feature = "pg15"))]
    let names = pg_sys::stringToQualifiedNameList(text.as_ptr(), std::ptr::null_mut());
    let rv = pg_sys::makeRangeVarFromNameList(names);
    let oid = pg_sys::RangeVarGetRelidExtended(rv, pg_sys::NoLock as i32, pg_sys::RVROption::RVR_MISSING_OK, None, std::ptr::null_mut());
    if oid == pg_sys::InvalidOid || oid == relid || pg_sys::get_rel_namespace(oid) != pg_sys::get_rel_namespace(relid) {
        return alone;
    }
    let (own, name) = (pg_sys::get_rel_name(relid), pg_sys::get_rel_name(oid));
    let ns = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(oid));
    if own.is_null() || name.is_null() || ns.is_null() {
        return alone;
    }
    let own = CStr::from_ptr(own).to_string_lossy().into_owned();
    let name = CStr::from_ptr(name).to_string_lossy().into_owned();
    let Some(shardid) = own.rsplit_once('_').and_then(|(_, id)| id.parse::<i64>().ok()) else { return alone };
    let expected = format!("{name}_{shardid}");
    if expected.len() < pg_sys::NAMEDATALEN as usize && own != expected {
        return alone;
    }
    if !is_shard_of(oid, shardid) {
        return alone;
    }
    let qualified = format!("{}.{name}", name_of(CStr::from_ptr(ns)));
    let via = if is_secondary_placement(oid, shardid) { SECONDARY_PLACEMENT } else { "shard" };
    (oid, Some((name, qualified, via)))
}

/// What a shard's trigger calls its table in messages when this node holds a copy of a
/// reference table's shard other than the first (the placement of the lowest group): Citus runs
/// a write on every copy, and relays each node's WARNINGs to the client, so only the first
/// copy's reach it (once per statement, not once per node); the others go to the server log.
pub(super) const SECONDARY_PLACEMENT: &str = "placement";

/// Whether `shardid` of `logical` is a reference table's (partition method `n`, one shard with
/// a copy on every node) and this node's group is not the lowest that holds a copy of it.
unsafe fn is_secondary_placement(logical: pg_sys::Oid, shardid: i64) -> bool {
    // Read-only SPI (no command counter increment in the middle of the writer's statement);
    // the two numbers are formatted into the query.
    let query = format!(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p \
                         WHERE p.logicalrelid::pg_catalog.oid OPERATOR(pg_catalog.=) {} \
                           AND p.partmethod OPERATOR(pg_catalog.=) 'n') \
            AND (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g) \
                OPERATOR(pg_catalog.<>) (SELECT pg_catalog.min(pl.groupid) FROM pg_catalog.pg_dist_placement pl \
                                          WHERE pl.shardid OPERATOR(pg_catalog.=) {shardid})",
        logical.to_u32()
    );
    let Ok(query) = CString::new(query) else { return false };
    crate::server::read_only_text(&query).as_deref() == Some("t")
}

/// Whether Citus lists `shardid` as a shard of `logical` (pg_dist_shard, readable by everyone).
/// Run as the writer: only pg_catalog names and operators, qualified.
unsafe fn is_shard_of(logical: pg_sys::Oid, shardid: i64) -> bool {
    // Read-only SPI, as in is_secondary_placement.
    let query = format!(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_shard s \
                         WHERE s.logicalrelid::pg_catalog.oid OPERATOR(pg_catalog.=) {} \
                           AND s.shardid OPERATOR(pg_catalog.=) {shardid})",
        logical.to_u32()
    );
    let Ok(query) = CString::new(query) else { return false };
    crate::server::read_only_text(&query).as_deref() == Some("t")
}

/// Does domain `domain` accept `value`? Evaluated once per column and canonical stage when the
/// trigger resolves its table, in a subtransaction (a domain CHECK may call any function), the
/// way PL/pgSQL runs an exception block.
pub(super) unsafe fn domain_accepts(domain: pg_sys::Oid, value: pg_sys::Datum) -> bool {
    crate::server::in_subtransaction(|| {
        pg_sys::domain_check(value, false, domain, std::ptr::null_mut(), std::ptr::null_mut());
    })
    .is_some()
}

/// The primary key's index (18 added `deferrable_ok`: a deferrable key is no key here either).
#[cfg(not(feature = "pg18"))]
pub(super) unsafe fn primary_key_index(rel: pg_sys::Relation) -> pg_sys::Oid {
    pg_sys::RelationGetPrimaryKeyIndex(rel)
}
#[cfg(feature = "pg18")]
pub(super) unsafe fn primary_key_index(rel: pg_sys::Relation) -> pg_sys::Oid {
    pg_sys::RelationGetPrimaryKeyIndex(rel, false)
}

/// The partitioned tables `rel` is a partition of, nearest first (empty for other tables).
pub(super) unsafe fn partition_ancestors(rel: pg_sys::Relation) -> Vec<pg_sys::Oid> {
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
pub(super) unsafe fn partition_qual_columns(rel: pg_sys::Relation) -> *mut pg_sys::Bitmapset {
    let mut set: *mut pg_sys::Bitmapset = std::ptr::null_mut();
    if (*(*rel).rd_rel).relispartition {
        let qual = pg_sys::ffi::pg_guard_ffi_boundary(|| RelationGetPartitionQual(rel));
        pg_sys::pull_varattnos(qual.cast(), 1, &mut set);
    }
    set
}

/// Whether `attnum` (or the whole row) appears in a `partition_qual_columns` set.
pub(super) unsafe fn in_partition_qual(set: *mut pg_sys::Bitmapset, attnum: i32) -> bool {
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


/// The shared-memory slots (`stats`) of the entry's attached table and columns; none when not
/// preloaded, or when the tracking table is full (`stats_info.dropped`). Catalog access: not
/// on the per-row path (at the entry's build, and after a `reset_stats`).
pub(super) unsafe fn resolve_slots(e: &mut Entry) {
    e.col_slots = vec![None; e.columns.len()];
    e.table_slot = None;
    if !stats::enabled() {
        return;
    }
    let (schema, table) = if e.attached == e.relid {
        (e.schema.to_bytes().to_vec(), e.table.to_bytes().to_vec())
    } else {
        let ns = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(e.attached));
        let name = pg_sys::get_rel_name(e.attached);
        if ns.is_null() || name.is_null() {
            return;
        }
        (CStr::from_ptr(ns).to_bytes().to_vec(), CStr::from_ptr(name).to_bytes().to_vec())
    };
    e.table_slot = stats::find_or_create(e.attached, 0, [&schema, &table, b""]);
    for (ci, col) in e.columns.iter().enumerate() {
        let attnum = if e.attached == e.relid { col.attnum } else { pg_sys::get_attnum(e.attached, col.name.as_ptr()) };
        if attnum > 0 {
            e.col_slots[ci] = stats::find_or_create(e.attached, attnum, [&schema, &table, col.name.to_bytes()]).map(|s| (s, attnum));
        }
    }
}

/// Adds what this entry counted and timed since its last flush to shared memory, and the
/// breaker's share of it. `statement`: called from the trigger (a rejection), where a trip may
/// also WARN the client; otherwise (transaction end) it only LOGs. Cannot raise, except
/// through `resolve_slots` after a concurrent `reset_stats` (catalog access, in a transaction).
/// Drops what an entry counted since its last flush (a transaction of migrate's own writes).
pub(super) fn discard_entry(e: &mut Entry) {
    e.flushed.clone_from(&e.counts);
    e.hist = [0; stats::BUCKETS];
    e.hist_sum = 0;
}

pub(super) unsafe fn flush_entry(e: &mut Entry, statement: bool) {
    if !stats::enabled() || e.counts.is_empty() {
        return;
    }
    let mut deltas: Vec<Counts> = Vec::with_capacity(e.counts.len());
    let (mut rows, mut rejects) = (0u64, 0u64);
    for (c, f) in e.counts.iter().zip(&e.flushed) {
        let d: Counts = std::array::from_fn(|i| c[i] - f[i]);
        rows += (d[Outcome::Passed as usize] + d[Outcome::Normalized as usize] + d[Outcome::Warned as usize]
            + d[Outcome::Rejected as usize] + d[Outcome::WouldNormalize as usize] + d[Outcome::WouldReject as usize]) as u64;
        rejects += d[Outcome::Rejected as usize] as u64;
        deltas.push(d);
    }
    let changed = deltas.iter().any(|d| d.iter().any(|&x| x != 0)) || e.hist_sum != 0;
    if !changed {
        return;
    }
    for _attempt in 0..2 {
        let flushes: Vec<stats::Flush> = e
            .columns
            .iter()
            .zip(&e.col_slots)
            .zip(&deltas)
            .filter_map(|((_, slot), d)| slot.map(|(s, attnum)| stats::Flush { relid: e.attached, attnum, slot: s, delta: d }))
            .collect();
        let stale = stats::flush(&flushes, e.last_mode as u32, e.table_slot.map(|t| (e.attached, t)), &e.hist, e.hist_sum);
        if !stale {
            break;
        }
        // A reset freed our slots meanwhile: find (create) them again, and flush once more,
        // only when a transaction is there for the catalog lookups.
        if !pg_sys::IsTransactionState() {
            break;
        }
        resolve_slots(e);
    }
    e.flushed.clone_from(&e.counts);
    e.hist = [0; stats::BUCKETS];
    e.hist_sum = 0;
    if let Some(t) = e.table_slot {
        if let Some((ratio, seen)) = stats::breaker_add(e.attached, t, rows, rejects) {
            breaker_tripped(e, ratio, seen, statement);
        }
    }
}

/// One LOG line (this backend tripped it: exactly one does), and a WARNING to the statement.
unsafe fn breaker_tripped(e: &Entry, ratio: f64, seen: f64, statement: bool) {
    // Quoted as SQL identifiers, so that the HINT's reset_breaker('...') names this table.
    let ident = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let table = if e.attached == e.relid {
        format!("{}.{}", ident(&name_of(&e.schema)), ident(&name_of(&e.table)))
    } else {
        let ns = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(e.attached));
        let name = pg_sys::get_rel_name(e.attached);
        if ns.is_null() || name.is_null() {
            e.attached_name.as_ref().map(|(_, q, _)| q.clone()).unwrap_or_default()
        } else {
            format!("{}.{}", ident(&name_of(CStr::from_ptr(ns))), ident(&name_of(CStr::from_ptr(name))))
        }
    };
    let window = guc::read(&guc::BREAKER_WINDOW);
    let threshold = guc::read(&guc::BREAKER_REJECT_RATIO);
    let message = format!(
        "stage_norm: circuit breaker tripped on table {table}: reject ratio {ratio:.4} over the last {window} s ({seen:.0} values) exceeds stage_norm.breaker_reject_ratio = {threshold}; the table is capped at warn"
    );
    let hint = format!("Fix the writers, then SELECT stage_norm.reset_breaker('{}'); see docs/monitoring.md.", table.replace('\'', "''"));
    // In the database's encoding (crate::encoding); LOG_SERVER_ONLY returns.
    let edata = error_data(pg_sys::LOG_SERVER_ONLY, PgSqlErrorCode::ERRCODE_WARNING, message.clone(), None, Some(hint.clone()));
    pg_sys::ThrowErrorData(edata);
    if statement {
        client_warning(message, "Every session now treats its unknown values as in warn mode: stored and reported, not rejected.".into(), Some(hint));
    }
}
