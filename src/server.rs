//! Backend-global state without thread-local storage.
//!
//! A PostgreSQL backend runs extension code on one thread only (pgrx checks this). In a cdylib,
//! `thread_local!` is general-dynamic TLS: every access is a `__tls_get_addr` call, which showed
//! up as a double-digit percentage of a trigger that fires a million times. So the state the
//! write path touches per row lives in plain statics.
//!
//! Rules: [`Global::get`] hands out `&mut` and must not be held across a call that could reach
//! the same global again. What the relcache callback touches (it can run inside almost any
//! PostgreSQL call) is atomics only, never a [`Global`].
use std::cell::UnsafeCell;

use pgrx::pg_sys;
use pgrx::prelude::*;

pub struct Global<T>(UnsafeCell<T>);

// SAFETY: only the backend's main thread runs extension code.
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    pub const fn new(value: T) -> Self {
        Global(UnsafeCell::new(value))
    }

    /// # Safety
    /// Single-threaded use, and no other live reference to this global (see the module comment).
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self) -> &mut T {
        &mut *self.0.get()
    }
}

/// PostgreSQL functions declared without pgrx's guard (which costs a `sigsetjmp` per call),
/// for the per-row path.
pub mod raw {
    use pgrx::pg_sys;
    use std::ffi::c_int;
    extern "C" {
        /// Cannot raise.
        pub fn GetCurrentStatementStartTimestamp() -> pg_sys::TimestampTz;
        /// Cannot raise: true inside a query run by ri_triggers.c (SECURITY_NOFORCE_RLS).
        pub fn InNoForceRLSOperation() -> bool;
    }
    extern "C-unwind" {
        /// Can raise (out of memory): call it only from a frame that holds nothing with a
        /// destructor (the trigger's raw entry point), so that the longjmp skips no Rust cleanup.
        pub fn heap_modify_tuple_by_cols(
            tuple: pg_sys::HeapTuple,
            desc: pg_sys::TupleDesc,
            n: c_int,
            cols: *mut c_int,
            values: *mut pg_sys::Datum,
            isnull: *mut bool,
        ) -> pg_sys::HeapTuple;
        pub fn ThrowErrorData(edata: *mut pg_sys::ErrorData);
        /// The same: can raise (out of memory, a damaged TOAST chunk). Unlike their `pg_sys`
        /// twins, which pgrx wraps so that an error becomes a Rust panic (an abort when no
        /// guard is above), these longjmp as PostgreSQL does, for the raw entry points.
        pub fn palloc(size: pg_sys::Size) -> *mut std::ffi::c_void;
        pub fn pg_detoast_datum_packed(datum: *mut pg_sys::varlena) -> *mut pg_sys::varlena;
        pub fn cstring_to_text_with_len(s: *const std::ffi::c_char, len: c_int) -> *mut pg_sys::text;
    }
}

/// Runs `f` in an internal subtransaction, the way PL/pgSQL runs an exception block: `Some`
/// with its result, or `None` (everything it did rolled back) when it raised an error. Not in
/// parallel mode (no subtransactions there).
///
/// # Safety
/// A backend context where a subtransaction may start (inside a transaction, not parallel).
pub unsafe fn in_subtransaction<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Option<T> {
    use pgrx::{pg_sys, PgTryBuilder};
    let cxt = pg_sys::CurrentMemoryContext;
    let owner = pg_sys::CurrentResourceOwner;
    pg_sys::BeginInternalSubTransaction(std::ptr::null());
    pg_sys::MemoryContextSwitchTo(cxt);
    let result = PgTryBuilder::new(move || Some(f())).catch_others(|_| None).execute();
    if result.is_some() {
        pg_sys::ReleaseCurrentSubTransaction();
    } else {
        pg_sys::RollbackAndReleaseCurrentSubTransaction();
    }
    pg_sys::MemoryContextSwitchTo(cxt);
    pg_sys::CurrentResourceOwner = owner;
    result
}

/// Declares `pg_finfo_<symbol>`, the version-1 calling convention record PostgreSQL looks up for
/// a C-language function written as a raw `extern "C-unwind"` entry point (the trigger
/// functions, the jsonb and array functions): `pg_finfo_v1!(pg_finfo_normalize_trigger);`.
#[macro_export]
macro_rules! pg_finfo_v1 {
    ($finfo:ident) => {
        #[no_mangle]
        pub extern "C" fn $finfo() -> &'static pgrx::pg_sys::Pg_finfo_record {
            const V1: pgrx::pg_sys::Pg_finfo_record = pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
    };
}

/// A tuple descriptor's attributes, as a slice. PostgreSQL 18 put an array of `CompactAttribute`
/// first and the `FormData_pg_attribute`s after it (`TupleDescAttr()`, an inline function there);
/// 15 and 17 keep `attrs` as the flexible member.
///
/// # Safety
/// `desc` is a valid tuple descriptor that outlives the slice.
#[cfg(not(feature = "pg18"))]
pub(crate) unsafe fn attrs<'a>(desc: pgrx::pg_sys::TupleDesc) -> &'a [pgrx::pg_sys::FormData_pg_attribute] {
    (*desc).attrs.as_slice((*desc).natts as usize)
}
#[cfg(feature = "pg18")]
pub(crate) unsafe fn attrs<'a>(desc: pgrx::pg_sys::TupleDesc) -> &'a [pgrx::pg_sys::FormData_pg_attribute] {
    let natts = (*desc).natts as usize;
    let first = (*desc).compact_attrs.as_ptr().add(natts) as *const pgrx::pg_sys::FormData_pg_attribute;
    std::slice::from_raw_parts(first, natts)
}

/// `heap_getattr` of a column passed by reference (a governed column: text, jsonb, an array):
/// in a row without NULLs, at the offset PostgreSQL cached for the column (`attcacheoff`, set by
/// its first deforming of such a row), a pointer into the row, as `fastgetattr` and `fetchatt`
/// compute it; anything else through pgrx's `heap_getattr`. Measured in the trigger's walk: about
/// 15 instructions fewer per value (#31).
///
/// # Safety
/// `tuple` is a valid heap tuple of `desc`, `attnum` one of its user columns.
#[inline(always)]
pub(crate) unsafe fn getattr(tuple: pgrx::pg_sys::HeapTuple, attnum: i32, desc: pgrx::pg_sys::TupleDesc, isnull: &mut bool) -> pgrx::pg_sys::Datum {
    use pgrx::pg_sys;
    let t = (*tuple).t_data;
    if (*t).t_infomask & (pg_sys::HEAP_HASNULL as u16) == 0
        && attnum >= 1
        && attnum <= i32::from((*t).t_infomask2 & (pg_sys::HEAP_NATTS_MASK as u16))
    {
        #[cfg(not(feature = "pg18"))]
        let (off, byval) = {
            let a = (*desc).attrs.as_ptr().add(attnum as usize - 1);
            ((*a).attcacheoff, (*a).attbyval)
        };
        #[cfg(feature = "pg18")]
        let (off, byval) = {
            let a = (*desc).compact_attrs.as_ptr().add(attnum as usize - 1);
            ((*a).attcacheoff, (*a).attbyval)
        };
        if off >= 0 && !byval {
            *isnull = false;
            return pg_sys::Datum::from(t.cast::<u8>().add(usize::from((*t).t_hoff) + off as usize));
        }
    }
    pg_sys::heap_getattr(tuple, attnum, desc, isnull)
}

/// Fills attribute `i` (0-based) of a descriptor made with `CreateTemplateTupleDesc` from the fixed
/// part of a `pg_attribute` row, as `RelationBuildTupleDesc` does (on 18 also its compact form,
/// which deforming reads).
///
/// # Safety
/// `desc` has more than `i` attributes; `att` points at a `pg_attribute` row.
pub(crate) unsafe fn set_attr(desc: pgrx::pg_sys::TupleDesc, i: usize, att: *const pgrx::pg_sys::FormData_pg_attribute) {
    // ATTRIBUTE_FIXED_PART_SIZE: the fields up to attcollation; what follows is not in a descriptor.
    let fixed = std::mem::offset_of!(pgrx::pg_sys::FormData_pg_attribute, attcollation) + std::mem::size_of::<pgrx::pg_sys::Oid>();
    #[cfg(not(feature = "pg18"))]
    let slot = (*desc).attrs.as_mut_ptr().add(i);
    #[cfg(feature = "pg18")]
    let slot = ((*desc).compact_attrs.as_mut_ptr().add((*desc).natts as usize) as *mut pgrx::pg_sys::FormData_pg_attribute).add(i);
    std::ptr::copy_nonoverlapping(att.cast::<u8>(), slot.cast::<u8>(), fixed);
    #[cfg(feature = "pg18")]
    pgrx::pg_sys::populate_compact_attribute(desc, i as i32);
}

/// The first column of the first row of a catalog query, as text (None: no row, NULL, or the
/// query did not run), through SPI in read-only mode: unlike pgrx's `Spi`, which runs a query
/// read-write once the transaction has an xid, this increments no command counter, so a
/// trigger may look something up in the middle of a statement without changing the command id
/// that tells its statements apart (`trigger::report::statement_id`).
///
/// # Safety
/// Inside a transaction, where SPI may connect; `query` reads catalogs only (no side effects),
/// with every name and operator qualified.
pub unsafe fn read_only_text(query: &std::ffi::CStr) -> Option<String> {
    use pgrx::pg_sys;
    if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
        return None;
    }
    let mut out = None;
    if pg_sys::SPI_execute(query.as_ptr(), true, 1) == pg_sys::SPI_OK_SELECT as i32 && pg_sys::SPI_processed > 0 {
        let tt = pg_sys::SPI_tuptable;
        let v = pg_sys::SPI_getvalue(*(*tt).vals, (*tt).tupdesc, 1);
        if !v.is_null() {
            out = Some(crate::encoding::text_of(std::ffi::CStr::from_ptr(v).to_bytes()));
        }
    }
    pg_sys::SPI_finish();
    out
}

// ---------------------------------------------------------------------------------------------
// Datums and function calls.

/// The bytes of a text datum: read in place unless compressed or external (then detoasted).
#[inline(always)]
pub unsafe fn varlena_bytes<'a>(d: pg_sys::Datum) -> &'a [u8] {
    // The two plain forms first, read from the header byte (little-endian layout, as
    // postgres.h's VARATT_IS_1B / VARATT_IS_4B_U): a short value (`1`-tagged, not the external
    // pointer's 0x01) and an uncompressed 4-byte-header one. Measured in the trigger's walk:
    // about 8 instructions fewer than the generic path per value (#31).
    #[cfg(target_endian = "little")]
    {
        let p = d.cast_mut_ptr::<u8>();
        let b0 = *p;
        if b0 & 0x01 == 0x01 && b0 != 0x01 {
            return std::slice::from_raw_parts(p.add(1), usize::from(b0 >> 1) - 1);
        }
        if b0 & 0x03 == 0x00 {
            let len = (std::ptr::read_unaligned(p.cast::<u32>()) >> 2) as usize;
            return std::slice::from_raw_parts(p.add(4), len - 4);
        }
    }
    varlena_bytes_slow(d)
}

/// [`varlena_bytes`] for a raw entry point (no pgrx guard above it): a compressed or external
/// value is detoasted through [`raw::pg_detoast_datum_packed`], whose error longjmps as
/// PostgreSQL's do. Call it only from a frame that holds nothing with a destructor.
#[inline(always)]
pub unsafe fn varlena_bytes_unguarded<'a>(d: pg_sys::Datum) -> &'a [u8] {
    let v = d.cast_mut_ptr::<pg_sys::varlena>();
    if pgrx::varlena::varatt_is_1b_e(v) || pgrx::varlena::varatt_is_4b_c(v) {
        return varlena_bytes(pg_sys::Datum::from(raw::pg_detoast_datum_packed(v)));
    }
    varlena_bytes(d)
}

#[cold]
unsafe fn varlena_bytes_slow<'a>(d: pg_sys::Datum) -> &'a [u8] {
    let mut v = d.cast_mut_ptr::<pg_sys::varlena>();
    if pgrx::varlena::varatt_is_1b_e(v) || pgrx::varlena::varatt_is_4b_c(v) {
        v = pgrx::pg_sys::pg_detoast_datum_packed(v);
    }
    let len = pgrx::varlena::varsize_any_exhdr(v);
    let data = pgrx::varlena::vardata_any(v) as *const u8;
    std::slice::from_raw_parts(data, len)
}

/// The call's TriggerData, or 39P01 when the function was not called by the trigger manager.
/// Inlined (the per-row path calls it first thing); the error is out of line.
#[inline(always)]
pub unsafe fn trigger_data(fcinfo: pg_sys::FunctionCallInfo, name: &str) -> *mut pg_sys::TriggerData {
    let ctx = (*fcinfo).context;
    if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
        not_called_as_trigger(name);
    }
    ctx.cast()
}

#[cold]
#[inline(never)]
fn not_called_as_trigger(name: &str) -> ! {
    pgrx::pg_sys::panic::ErrorReport::new(
        PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
        format!("stage_norm.{name}() was not called by the trigger manager"),
        "trigger_data",
    )
    .set_detail("It is a trigger function: it can only be called as a trigger.")
    .set_hint("stage_norm.attach(table, column, ...) creates the triggers stage_norm needs.")
    .report(PgLogLevel::ERROR);
    unreachable!()
}

/// The TriggerData of a statement-level AFTER trigger (`summary_trigger`, `config_changed`), or
/// 39P01 naming how `name` must be used.
pub unsafe fn statement_trigger_data(fcinfo: pg_sys::FunctionCallInfo, name: &str, usage: &str) -> *mut pg_sys::TriggerData {
    let td = trigger_data(fcinfo, name);
    let event = (*td).tg_event;
    if event & pg_sys::TRIGGER_EVENT_TIMINGMASK != pg_sys::TRIGGER_EVENT_AFTER || event & pg_sys::TRIGGER_EVENT_ROW != 0 {
        pgrx::pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            format!("stage_norm.{name}() must be {usage}"),
            "statement_trigger_data",
        )
        .set_detail("stage_norm creates this trigger itself; it is not meant to be attached by hand.")
        .report(PgLogLevel::ERROR);
    }
    td
}

/// Argument `i` of a call (the functions are STRICT: never NULL).
#[inline]
pub unsafe fn arg(fcinfo: pg_sys::FunctionCallInfo, i: usize) -> pg_sys::Datum {
    (*fcinfo).args.as_slice(i + 1)[i].value
}

/// Returns SQL NULL.
pub unsafe fn return_null(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    (*fcinfo).isnull = true;
    pg_sys::Datum::from(0)
}

/// A raw C-language entry point `$name` (and its `pg_finfo_` record) that calls the
/// `#[pg_guard]`ed `$body`: the jsonb and array functions.
#[macro_export]
macro_rules! c_function {
    ($name:ident, $finfo:ident, $body:ident) => {
        #[no_mangle]
        pub unsafe extern "C-unwind" fn $name(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
            $body(fcinfo)
        }
        $crate::pg_finfo_v1!($finfo);
    };
}
