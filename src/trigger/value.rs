//! The text column kind: reading a governed value's bytes, and comparing two values.
use super::*;

/// Do two values of a column hold the same bytes? The stored forms first (an unchanged value is
/// normally copied as it is, TOAST pointer included), then the detoasted contents.
#[inline(always)]
pub(super) unsafe fn same_value(a: pg_sys::Datum, b: pg_sys::Datum) -> bool {
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


/// What a column kind decided about one value.
pub(super) enum Judged<'a> {
    /// Canonical already: stored as it is.
    Passed,
    /// A known variant (or a valid structured value with variants): rewrite it.
    Rewrite(Rewrite),
    /// Not stored as canonical; for a stage array under warn, the array with its known
    /// elements rewritten (its unknown ones kept).
    Problem(Problem<'a>, Option<pg_sys::Datum>),
}

/// A rewrite of one column: the new datum and, for an in-place rewrite (text only), the old
/// value's bytes in the row and the new bytes.
pub(super) struct Rewrite {
    pub(super) value: pg_sys::Datum,
    pub(super) old: *mut u8,
    pub(super) payload: (*const u8, usize),
    /// May be made during the walk (`Column::in_walk`).
    pub(super) in_walk: bool,
}

impl Rewrite {
    /// A rewrite that is never made inside the row (a new jsonb or array datum).
    pub(super) fn replacing(value: pg_sys::Datum) -> Rewrite {
        Rewrite { value, old: std::ptr::null_mut(), payload: (std::ptr::NonNull::<u8>::dangling().as_ptr(), 0), in_walk: false }
    }
}

/// The row write being judged, for the one question only an UPDATE raises: did a foreign key's
/// referential action write this value? Null for an INSERT.
#[derive(Clone, Copy)]
pub(super) struct Write(pub(super) *mut pg_sys::TriggerData);

impl Write {
    /// Is this value written by a foreign key's referential action (ON UPDATE CASCADE, SET NULL,
    /// SET DEFAULT), which stage_norm never rewrites? Asked only for a value that would be
    /// rewritten (rare). ri_triggers.c runs the action's UPDATE under SECURITY_NOFORCE_RLS, but
    /// that flag stays set for everything the action's triggers run, so it is not enough: the
    /// row is the action's only when, besides, the column belongs to a foreign key of this table
    /// that has a referential action, and the UPDATE sets nothing but that key's columns (and
    /// generated columns that follow them), as the action's `UPDATE ... SET fk = $1` does. An
    /// UPDATE that another table's trigger runs inside the action is judged as any other.
    #[inline(always)]
    pub(super) unsafe fn referential_action(self, col: &Column) -> bool {
        !self.0.is_null() && raw::InNoForceRLSOperation() && self.action_writes(col)
    }

    #[cold]
    #[inline(never)]
    unsafe fn action_writes(self, col: &Column) -> bool {
        let td = self.0;
        let rel = (*td).tg_relation;
        let keys = col.fk_action_keys.get_or_init(|| fk_action_keys(rel));
        let updated = (*td).tg_updatedcols;
        // The action sets the key's columns: the governed one among them. A value another
        // trigger put there while the action set other columns is not the action's.
        if !pg_sys::bms_is_member(i32::from(col.attnum) - pg_sys::FirstLowInvalidHeapAttributeNumber, updated) {
            return false;
        }
        let desc = (*rel).rd_att;
        keys.iter().filter(|key| key.contains(&col.attnum)).any(|key| {
            let mut x = -1;
            loop {
                x = pg_sys::bms_next_member(updated, x);
                if x < 0 {
                    return true;
                }
                let attnum = x + pg_sys::FirstLowInvalidHeapAttributeNumber;
                if attnum <= 0 || attnum > (*desc).natts {
                    return false;
                }
                let generated = crate::server::attrs(desc)[(attnum - 1) as usize].attgenerated != 0;
                if !key.contains(&(attnum as i16)) && !generated {
                    return false;
                }
            }
        })
    }
}

/// The columns of each foreign key of `rel` whose referential action writes into `rel` (ON
/// UPDATE CASCADE / SET NULL / SET DEFAULT, ON DELETE SET NULL / SET DEFAULT).
unsafe fn fk_action_keys(rel: pg_sys::Relation) -> Vec<Vec<i16>> {
    let list = pg_sys::RelationGetFKeyList(rel);
    let mut keys = Vec::new();
    if list.is_null() {
        return keys;
    }
    for cell in std::slice::from_raw_parts((*list).elements, (*list).length as usize) {
        let info = cell.ptr_value.cast::<pg_sys::ForeignKeyCacheInfo>();
        let tup = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::CONSTROID as i32, pg_sys::Datum::from((*info).conoid));
        if tup.is_null() {
            continue;
        }
        // By name: pg_constraint's attribute numbers differ between major versions.
        let action = |name: &CStr| {
            let attnum = pg_sys::get_attnum(pg_sys::Oid::from(2606u32 /* pg_constraint */), name.as_ptr());
            let mut isnull = false;
            let d = pg_sys::SysCacheGetAttr(pg_sys::SysCacheIdentifier::CONSTROID as i32, tup, attnum, &mut isnull);
            if isnull { 0 } else { d.value() as u8 }
        };
        let (upd, del) = (action(c"confupdtype"), action(c"confdeltype"));
        pg_sys::ReleaseSysCache(tup);
        if matches!(upd, b'c' | b'n' | b'd') || matches!(del, b'n' | b'd') {
            let info = &*info;
            keys.push(info.conkey[..info.nkeys as usize].to_vec());
        }
    }
    keys
}

/// The text kind: a canonical name passes; a known variant is rewritten to its canonical datum
/// (in place when the column allows it); anything else is a problem.
#[inline(always)]
pub(super) unsafe fn judge_text<'a>(col: &Column, datum: pg_sys::Datum, write: Write) -> Judged<'a> {
    let mut bytes = varlena_bytes(datum);
    if col.pad_to.is_some() {
        while let [rest @ .., b' '] = bytes {
            bytes = rest;
        }
    }
    // One memo lookup says both whether the value is already canonical (the common case once a
    // table is migrated) and which stage it names.
    let class = cache::classify_label(bytes);
    if class.is_canonical() {
        return Judged::Passed;
    }
    let why = match class.stage() {
        None => Why::Unknown,
        Some(id) => match col.canon.get(usize::from(id)) {
            // Not rewritable here: handled as the mode handles unknown values.
            Some(c) if !c.allowed => Why::DomainRefuses(id),
            // Checked only for a rewrite, which is rare.
            Some(_) if write.referential_action(col) => Why::ForeignKeyAction(id),
            Some(c) => {
                return Judged::Rewrite(Rewrite {
                    value: c.datum,
                    old: if col.in_place { datum.cast_mut_ptr() } else { std::ptr::null_mut() },
                    payload: c.payload,
                    in_walk: col.in_walk,
                })
            }
            // The entry is built against the cache's current set (`build_entry_stable`) and
            // rebuilt when it changes; the memo is cleared then: not reached.
            None => Why::Unknown,
        },
    };
    Judged::Problem(Problem::Text(bytes, why), None)
}

/// The reason given when a structured value that would be rewritten came through a foreign
/// key's referential action (see `Why::ForeignKeyAction`).
pub(super) const FK_ACTION_REASON: &str =
    "it came through a foreign-key action (ON UPDATE CASCADE, SET DEFAULT), which stage_norm never rewrites";
