//! Keeping the trigger in step with DDL on the columns it governs, the way PostgreSQL keeps a
//! trigger's `UPDATE OF` columns:
//! - every governed column gets a dependency (`pg_depend`, DEPENDENCY_NORMAL) from the
//!   `stage_norm_normalize` trigger, recorded by `attach` and, for triggers created any other
//!   way (a restore, a hand-written CREATE TRIGGER), by the event trigger `stage_norm_ddl`.
//!   So `DROP COLUMN` is refused unless CASCADE (which drops the trigger), and
//!   `ALTER COLUMN ... TYPE` is refused ("cannot alter type of a column used in a trigger
//!   definition"), exactly as for a column named in `UPDATE OF`;
//! - `RENAME COLUMN` keeps the column governed: the event trigger finds the one argument that
//!   names no column and the one dependent column that no argument names, and re-creates the
//!   trigger with the new name (`attach`).
use std::ffi::CStr;

use pgrx::prelude::*;

/// Internal: records the column dependencies of a `stage_norm_normalize` trigger that is not a
/// clone, and returns its column list as it should be when an argument names a column that was
/// renamed (NULL when the arguments are current). Callable by whoever may create triggers on
/// the table (`attach` runs as its caller).
///
/// It runs inside every ALTER TABLE of a governed table (the event trigger), so it takes no lock
/// of its own unless there is something to do: most commands (VALIDATE CONSTRAINT, SET
/// STATISTICS, SET (fillfactor), CLUSTER ON) leave the trigger's columns as they are, and run
/// beside writers under their own lock. Only when a dependency is missing or a governed column
/// was renamed does it lock the table as CREATE TRIGGER does, and look again.
#[pg_extern(volatile, strict, parallel_unsafe, name = "_sync_trigger")]
fn sync_trigger(tgoid: pg_sys::Oid) -> Option<Vec<String>> {
    let relid = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT tgrelid FROM pg_catalog.pg_trigger WHERE oid = $1 AND tgparentid = 0 \
           AND tgfoid = 'stage_norm.normalize_trigger()'::pg_catalog.regprocedure",
        &[tgoid.into()],
    )
    .ok()
    .flatten()?;
    // SAFETY: a catalog privilege check, in a transaction.
    unsafe {
        if pg_sys::pg_class_aclcheck(relid, pg_sys::GetUserId(), pg_sys::ACL_TRIGGER as pg_sys::AclMode)
            != pg_sys::AclResult::ACLCHECK_OK
        {
            let table = crate::encoding::text_of(CStr::from_ptr(pg_sys::get_rel_name(relid)).to_bytes());
            pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                crate::encoding::for_report(format!("permission denied for table {table}")),
                "stage_norm._sync_trigger",
            )
            .set_detail("Recording a stage_norm trigger's column dependencies needs the TRIGGER privilege on its table.")
            .set_hint("stage_norm.attach does it for the table's owner; the event trigger stage_norm_ddl for every DDL command.")
            .report(PgLogLevel::ERROR);
        }
    }
    let quiet = plan(tgoid, relid)?;
    if quiet.missing.is_empty() && quiet.rename.is_none() {
        return None;
    }
    // SAFETY: a lock on an existing relation, in a transaction. What CREATE TRIGGER takes: no
    // concurrent DDL or trigger change on the table meanwhile. A rename must be followed, so it
    // waits for the lock; dependencies alone (a trigger created where the event trigger did not
    // fire, found by any later command, possibly on another table) are recorded only when the
    // lock is free at once, so that command never waits for the writers of a table it does not
    // touch: a later command records them.
    unsafe {
        let mode = pg_sys::ShareRowExclusiveLock as pg_sys::LOCKMODE;
        if quiet.rename.is_some() {
            pg_sys::LockRelationOid(relid, mode);
        } else if !pg_sys::ConditionalLockRelationOid(relid, mode) {
            return None;
        }
    }
    // The trigger may have changed or gone while we waited for the lock: look again.
    let locked = plan(tgoid, relid)?;
    for &attnum in &locked.missing {
        unsafe {
            let depender = pg_sys::ObjectAddress { classId: pg_sys::TriggerRelationId, objectId: tgoid, objectSubId: 0 };
            let referenced =
                pg_sys::ObjectAddress { classId: pg_sys::RelationRelationId, objectId: relid, objectSubId: attnum as i32 };
            pg_sys::recordDependencyOn(&depender, &referenced, pg_sys::DependencyType::DEPENDENCY_NORMAL);
        }
    }
    locked.rename
}

/// What `_sync_trigger` has to do for trigger `tgoid` of table `relid`: the governed columns
/// that have no dependency yet, and the column list after a rename. None when the trigger is
/// gone.
struct Plan {
    missing: Vec<i16>,
    rename: Option<Vec<String>>,
}

fn plan(tgoid: pg_sys::Oid, relid: pg_sys::Oid) -> Option<Plan> {
    Spi::get_one_with_args::<bool>("SELECT true FROM pg_catalog.pg_trigger WHERE oid = $1", &[tgoid.into()]).ok().flatten()?;
    // The columns the trigger depends on now.
    let depended: Vec<i16> = Spi::connect(|c| {
        c.select(
            "SELECT refobjsubid::int2 FROM pg_catalog.pg_depend WHERE classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass \
               AND objid = $1 AND refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND refobjid = $2 AND refobjsubid > 0",
            None,
            &[tgoid.into(), relid.into()],
        )
        .map(|rows| rows.filter_map(|r| r.get::<i16>(1).ok().flatten()).collect())
        .unwrap_or_default()
    });
    // The trigger's arguments, resolved against the table's current columns.
    let (args, attnums, names, logical_table) = unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return None;
        }
        let desc = (*rel).rd_att;
        let mut args = Vec::new();
        let mut logical_table = None;
        let td = (*rel).trigdesc;
        if !td.is_null() {
            let trigs = std::slice::from_raw_parts((*td).triggers, (*td).numtriggers as usize);
            if let Some(t) = trigs.iter().find(|t| t.tgoid == tgoid) {
                for i in 0..t.tgnargs as usize {
                    let arg = CStr::from_ptr(*t.tgargs.add(i));
                    // The logical-table argument of a Citus table's trigger is not a column.
                    if let Some(logical) = crate::trigger::logical_name(arg) {
                        logical_table = Some(logical.to_owned());
                    } else {
                        args.push(arg.to_owned());
                    }
                }
            }
        }
        let attnums: Vec<i16> = args.iter().map(|a| pg_sys::SPI_fnumber(desc, a.as_ptr()) as i16).collect();
        let attrs = crate::server::attrs(desc);
        let names: Vec<(i16, String)> = attrs
            .iter()
            .filter(|a| !a.attisdropped)
            .map(|a| (a.attnum, CStr::from_ptr(a.attname.data.as_ptr()).to_string_lossy().into_owned()))
            .collect();
        pg_sys::RelationClose(rel);
        (args, attnums, names, logical_table)
    };
    let missing: Vec<i16> = attnums.iter().copied().filter(|&a| a > 0 && !depended.contains(&a)).collect();
    let mut plan = Plan { missing, rename: None };
    // A shard's trigger follows its logical table: Citus renames the column on every shard,
    // and attach on the logical table (the coordinator's event trigger) re-creates the triggers.
    if let Some(logical) = logical_table {
        let named = Spi::get_one_with_args::<pg_sys::Oid>("SELECT pg_catalog.to_regclass($1)::oid", &[logical.clone().into()])
            .ok()
            .flatten();
        // A trigger argument that names no table at all is a mistake (#27 item 7): refused when
        // the trigger is created (this runs from the event trigger), not ignored for ever.
        let Some(named) = named else {
            pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                crate::encoding::for_report(format!("the stage_norm trigger's argument '@table={logical}' names no table")),
                "stage_norm._sync_trigger",
            )
            .set_detail("The argument '@table=schema.name' names the logical table of a Citus table's shards; stage_norm.attach writes it.")
            .set_hint("Create the trigger with stage_norm.attach(table, column, ...), which writes the argument only where it applies.")
            .report(PgLogLevel::ERROR);
            unreachable!()
        };
        if named != relid {
            return Some(plan);
        }
    }
    // A rename: exactly one argument names no column, and exactly one column the trigger
    // depends on is named by no argument (one ALTER TABLE renames one column at a time).
    let missing_arg: Vec<usize> = (0..args.len()).filter(|&i| attnums[i] <= 0).collect();
    let unnamed: Vec<i16> = depended.iter().copied().filter(|d| !attnums.contains(d)).collect();
    if missing_arg.len() == 1 && unnamed.len() == 1 {
        if let Some((_, new_name)) = names.iter().find(|(n, _)| *n == unnamed[0]) {
            let mut cols: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
            cols[missing_arg[0]] = new_name.clone();
            plan.rename = Some(cols);
        }
    }
    Some(plan)
}
