//! Reading the visible rows of one of the extension's small configuration tables without building
//! its relation cache entry.
//!
//! Why: a backend's first governed write reads the per-table mode overrides. Opening
//! `stage_norm.table_mode_settings` the usual way builds its relcache entry (its CHECK, defaults,
//! trigger and row security policies: the first use of `pg_policy` and `pg_attrdef` in a backend),
//! about 0.4 M instructions for a table of a few rows (docs/benchmarks.md, #31).
//!
//! How, as PostgreSQL's own `CREATE DATABASE ... STRATEGY wal_log` reads the template's `pg_class`
//! (`ScanSourceDatabasePgClass`): with the table locked by the caller, its file is found through its `pg_class` row, each block read with `ReadBufferWithoutRelcache`
//! under a share lock, and each normal line pointer's tuple judged by
//! `HeapTupleSatisfiesVisibility` with the caller's snapshot (which sets hint bits as a scan
//! does). Visible tuples are copied before the buffer's lock is released, and deformed with a
//! descriptor built from `pg_attribute`'s rows, so that whatever the caller does with them
//! (detoasting included) happens with no buffer lock held.
//!
//! Only a permanent plain table whose columns are all in every row qualifies (no attribute
//! added with a default since rows were written: its value would be in `pg_attribute`, which a
//! descriptor without constraints cannot serve); for anything else [`visible_rows`] says
//! [`Read::Unsupported`] and the caller opens the table as usual. No statistics are counted
//! (`pg_stat_user_tables.seq_scan` does not move), and, a change from `systable_beginscan` in a
//! serializable transaction, no predicate lock is taken: the configuration is read with the latest
//! snapshot, not the transaction's, so it never was one of its reads.
use pgrx::pg_sys;

/// What [`visible_rows`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Every visible row was passed to the callback.
    Done,
    /// No such relation (dropped, its drop committed while the caller waited for the lock).
    Missing,
    /// Not read: not a permanent plain table, or its catalog rows are not as expected. Read it
    /// the usual way.
    Unsupported,
}

/// The rows of `relid` that `snapshot` sees, deformed: for each, `(values, nulls)` by attribute
/// number - 1, with the table's descriptor (dropped columns included, `attisdropped`). Datums
/// point into copies that live in the current memory context.
///
/// # Safety
/// A backend in a transaction that holds a lock on `relid` (AccessShareLock at least, as
/// `table_open` takes), taken before `snapshot` (then a transaction that rewrote the table and
/// that the lock waited for is seen; a concurrent TRUNCATE, VACUUM FULL or CLUSTER, which gives
/// it a new file, waits for us or has committed, and its `pg_class` row is current);
/// `snapshot` registered or active for the call.
pub unsafe fn visible_rows(
    relid: pg_sys::Oid,
    snapshot: pg_sys::Snapshot,
    mut row: impl FnMut(&[pg_sys::FormData_pg_attribute], &[pg_sys::Datum], &[bool]),
) -> Read {
    read(relid, snapshot, &mut row)
}

unsafe fn read(
    relid: pg_sys::Oid,
    snapshot: pg_sys::Snapshot,
    row: &mut dyn FnMut(&[pg_sys::FormData_pg_attribute], &[pg_sys::Datum], &[bool]),
) -> Read {
    let tup = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as i32, pg_sys::Datum::from(relid));
    if tup.is_null() {
        return Read::Missing;
    }
    let c = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(tup);
    let (file, space, natts) = ((*c).relfilenode, (*c).reltablespace, (*c).relnatts);
    let plain = (*c).relkind as u8 == pg_sys::RELKIND_RELATION as u8
        && (*c).relpersistence as u8 == pg_sys::RELPERSISTENCE_PERMANENT as u8;
    pg_sys::ReleaseSysCache(tup);
    if !plain || file == pg_sys::InvalidOid || natts <= 0 {
        return Read::Unsupported;
    }
    let space = if space == pg_sys::InvalidOid { pg_sys::MyDatabaseTableSpace } else { space };
    #[cfg(feature = "pg15")]
    let locator = pg_sys::RelFileNode { spcNode: space, dbNode: pg_sys::MyDatabaseId, relNode: file };
    #[cfg(not(feature = "pg15"))]
    let locator = pg_sys::RelFileLocator { spcOid: space, dbOid: pg_sys::MyDatabaseId, relNumber: file };
    let smgr = pg_sys::smgropen(locator, -1);
    if !pg_sys::smgrexists(smgr, pg_sys::ForkNumber::MAIN_FORKNUM) {
        return Read::Unsupported;
    }
    let blocks = pg_sys::smgrnblocks(smgr, pg_sys::ForkNumber::MAIN_FORKNUM);
    if blocks == 0 {
        // No block, no row in any snapshot; the descriptor is not needed.
        return Read::Done;
    }
    let Some(desc) = descriptor(relid, natts) else { return Read::Unsupported };
    let attrs = crate::server::attrs(desc);
    let mut values = vec![pg_sys::Datum::from(0); natts as usize];
    let mut nulls = vec![true; natts as usize];
    let mut visible: Vec<pg_sys::HeapTuple> = Vec::new();
    for block in 0..blocks {
        let buffer = pg_sys::ReadBufferWithoutRelcache(
            locator,
            pg_sys::ForkNumber::MAIN_FORKNUM,
            block,
            pg_sys::ReadBufferMode::RBM_NORMAL,
            std::ptr::null_mut(),
            true,
        );
        pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_SHARE as i32);
        let page = pg_sys::BufferGetPage(buffer);
        if !pg_sys::PageIsNew(page) {
            for offset in 1..=pg_sys::PageGetMaxOffsetNumber(page) {
                let item = pg_sys::PageGetItemId(page, offset);
                if (*item).lp_flags() != pg_sys::LP_NORMAL {
                    continue;
                }
                let mut tuple: pg_sys::HeapTupleData = std::mem::zeroed();
                tuple.t_data = pg_sys::PageGetItem(page, item).cast();
                tuple.t_len = (*item).lp_len();
                tuple.t_tableOid = relid;
                tuple.t_self.ip_blkid.bi_hi = (block >> 16) as u16;
                tuple.t_self.ip_blkid.bi_lo = (block & 0xffff) as u16;
                tuple.t_self.ip_posid = offset;
                if pg_sys::HeapTupleSatisfiesVisibility(&mut tuple, snapshot, buffer) {
                    visible.push(pg_sys::heap_copytuple(&mut tuple));
                }
            }
        }
        pg_sys::UnlockReleaseBuffer(buffer);
        for tuple in visible.drain(..) {
            pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            row(attrs, &values, &nulls);
        }
    }
    Read::Done
}

/// The descriptor of `relid`'s `natts` attributes from their `pg_attribute` rows (as the relcache
/// builds it, without defaults or constraints). None when a row is absent, or when an attribute
/// has a "missing" value (`atthasmissing`: added with a default after rows were written; a row
/// without it would take the value from the descriptor's constraints, which this one has not,
/// and `heap_deform_tuple` would read a null pointer).
unsafe fn descriptor(relid: pg_sys::Oid, natts: i16) -> Option<pg_sys::TupleDesc> {
    let desc = pg_sys::CreateTemplateTupleDesc(i32::from(natts));
    (*desc).tdtypeid = pg_sys::RECORDOID;
    (*desc).tdtypmod = -1;
    for i in 0..natts as usize {
        let tup = pg_sys::SearchSysCache2(
            pg_sys::SysCacheIdentifier::ATTNUM as i32,
            pg_sys::Datum::from(relid),
            pg_sys::Datum::from(i as i16 + 1),
        );
        if tup.is_null() {
            pg_sys::FreeTupleDesc(desc);
            return None;
        }
        let a = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_attribute>(tup);
        let missing = (*a).atthasmissing;
        crate::server::set_attr(desc, i, a);
        pg_sys::ReleaseSysCache(tup);
        if missing {
            pg_sys::FreeTupleDesc(desc);
            return None;
        }
    }
    Some(desc)
}
