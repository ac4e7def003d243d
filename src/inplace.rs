//! Rewriting a governed value inside the row the trigger was given, instead of returning a new
//! row.
//!
//! A BEFORE ROW trigger that returns a different tuple pays PostgreSQL twice: the new tuple is
//! built (`heap_modify_tuple_by_cols`: deform every column, form a new tuple) and then copied
//! into the executor's slot (`ExecForceStoreHeapTuple` + `heap_copytuple`). Measured here, that
//! is ~1,400 instructions per rewritten row on an INSERT of ~12,300, more than the whole
//! extension's own work. When the row given to the trigger is the slot's own materialized copy,
//! the rewrite can be made in that copy and the same tuple returned: PostgreSQL then keeps the
//! slot as it is (`newtuple == trigtuple` in `ExecBRInsertTriggers`/`ExecBRUpdateTriggers`).
//!
//! When it is done (everything else goes through `heap_modify_tuple_by_cols`):
//! - the slot (`tg_trigslot` on INSERT, `tg_newslot` on UPDATE) is a heap or buffer-heap slot
//!   that holds exactly this tuple and owns it (`TTS_FLAG_SHOULDFREE`: a local, materialized
//!   copy, never a shared buffer page);
//! - the column is not referenced by the partition constraint (so a rewrite can never move a
//!   row out of its partition behind PostgreSQL's back);
//! - the old value is stored inline and uncompressed inside the tuple's data area;
//! - the new value is the same size as the old one (case and separator fixes: `Seed`,
//!   `PRE_SEED`, `Series A`), or smaller and stored with a 1-byte header (`Series A Round`,
//!   `seed round`); then the columns after it are moved down, re-aligned exactly as
//!   `heap_fill_tuple` would place them, provided the slot has not yet deformed the column or
//!   anything after it (else its cached offsets would go stale).
//!
//! The trigger's walk makes the rewrites that move no other column as soon as it judges the
//! value ([`rewrite_in_walk`]); the raw entry point makes the others, right to left.
//!
//! A larger new value (`seriesB` -> `series-b`) needs a larger tuple: [`grown`] builds it by
//! copying, or PostgreSQL does.
//!
//! The layout is computed and checked in full before any byte is written; if anything is not
//! as expected, the tuple is left untouched and the caller falls back. Nothing here can raise
//! an error or panic (it runs in the trigger's unguarded entry point). Little-endian only (the varlena header encodings below); on a big-endian build
//! every rewrite falls back.
use pgrx::pg_sys;

/// Trailing columns that a shrink may move; a wider row falls back.
const MAX_MOVES: usize = 32;

/// True when `tuple` is the materialized tuple owned by `slot`, so that writing into it is
/// writing into the row PostgreSQL will store.
///
/// # Safety
/// `slot` is null or a valid slot; `tuple` a valid tuple.
#[inline]
pub unsafe fn slot_owns(slot: *mut pg_sys::TupleTableSlot, tuple: pg_sys::HeapTuple) -> bool {
    if slot.is_null() || tuple.is_null() {
        return false;
    }
    let ops = (*slot).tts_ops;
    let heap_like = std::ptr::eq(ops, std::ptr::addr_of!(pg_sys::TTSOpsBufferHeapTuple))
        || std::ptr::eq(ops, std::ptr::addr_of!(pg_sys::TTSOpsHeapTuple));
    // BufferHeapTupleTableSlot starts with a HeapTupleTableSlot.
    heap_like
        && (*slot).tts_flags as u32 & pg_sys::TTS_FLAG_SHOULDFREE != 0
        && (*slot.cast::<pg_sys::HeapTupleTableSlot>()).tuple == tuple
}

#[inline]
fn align(off: usize, attalign: u8) -> usize {
    let a = match attalign {
        b's' => 2,
        b'i' => 4,
        b'd' => 8,
        _ => 1,
    };
    (off + a - 1) & !(a - 1)
}

/// Header byte tests and sizes of PostgreSQL's varlena encoding (little-endian).
mod varlena {
    /// `VARATT_IS_1B` and not `VARATT_IS_1B_E`: a short inline value.
    #[inline]
    pub fn is_short_inline(b0: u8) -> bool {
        b0 & 0x01 == 0x01 && b0 != 0x01
    }
    /// `VARATT_IS_1B`: short inline or external pointer, stored unaligned.
    #[inline]
    pub fn is_1b(b0: u8) -> bool {
        b0 & 0x01 == 0x01
    }
    /// `VARATT_IS_4B_U`: 4-byte header, uncompressed.
    #[inline]
    pub fn is_4b_u(b0: u8) -> bool {
        b0 & 0x03 == 0x00
    }
    /// Total size of the varlena at `p` (header included), or None for an encoding that
    /// cannot occur in a stored row.
    ///
    /// # Safety
    /// `p` points at a varlena header with `avail` readable bytes from `p` on (`avail >= 1`).
    /// Nothing past them is read: the bound is checked before each read.
    pub unsafe fn size_any(p: *const u8, avail: usize) -> Option<usize> {
        let b0 = *p;
        if b0 == 0x01 {
            // External pointer: 2 header bytes + the pointer for its tag. Only on-disk TOAST
            // pointers (tag 18, struct varatt_external of 16 bytes) are stored in rows.
            return (avail >= 2 && *p.add(1) == 18).then_some(2 + 16);
        }
        if is_1b(b0) {
            return Some((b0 >> 1) as usize);
        }
        if avail < 4 {
            return None;
        }
        let h = u32::from_le_bytes(std::ptr::read_unaligned(p.cast::<[u8; 4]>()));
        Some(((h >> 2) & 0x3FFF_FFFF) as usize)
    }
}

/// The columns a change of size moves: (old start, new start, length) each, the first `n` of
/// them written by [`plan`] (not zeroed first: 768 bytes a call).
type Moves = [std::mem::MaybeUninit<(usize, usize, usize)>; MAX_MOVES];

/// The first `n` moves [`plan`] wrote.
///
/// # Safety
/// `plan` returned `Some((n, _))` for `moves`.
unsafe fn planned(moves: &Moves, n: usize) -> &[(usize, usize, usize)] {
    std::slice::from_raw_parts(moves.as_ptr().cast(), n)
}

/// Where each column after `attnum` lies in `data` (its `data_len` bytes) and where it goes when
/// the value of `attnum` ends at `new_end` instead of `old_end`: (old start, new start, length)
/// per non-NULL column, re-aligned exactly as `heap_fill_tuple` places them, and the data's new
/// length. None when the layout is not the expected one (more than `MAX_MOVES` columns, a
/// length that does not add up).
///
/// # Safety
/// `th` is the header of a valid heap tuple described by `desc`, whose data starts at `data`.
#[allow(clippy::too_many_arguments)]
unsafe fn plan(
    th: pg_sys::HeapTupleHeader,
    desc: pg_sys::TupleDesc,
    attnum: i32,
    data: *const u8,
    data_len: usize,
    old_end: usize,
    new_end: usize,
    moves: &mut Moves,
) -> Option<(usize, usize)> {
    let natts_t = ((*th).t_infomask2 as u32 & pg_sys::HEAP_NATTS_MASK) as usize;
    let has_nulls = (*th).t_infomask as u32 & pg_sys::HEAP_HASNULL != 0;
    let bits = (*th).t_bits.as_ptr();
    let attrs = crate::server::attrs(desc);
    let mut n_moves = 0;
    let mut cur_old = old_end;
    let mut cur_new = new_end;
    for i in (attnum as usize)..natts_t {
        if has_nulls && *bits.add(i >> 3) & (1 << (i & 7)) == 0 {
            continue; // NULL: no bytes
        }
        let att = attrs.get(i)?;
        let attalign = att.attalign as u8;
        let (old_start, new_start, len);
        if att.attlen > 0 {
            old_start = align(cur_old, attalign);
            new_start = align(cur_new, attalign);
            len = att.attlen as usize;
        } else if att.attlen == -1 {
            if cur_old >= data_len {
                return None;
            }
            // att_align_pointer: a non-zero byte here starts a short varlena (unaligned);
            // a zero byte is padding before an aligned 4-byte-header value.
            old_start = if *data.add(cur_old) != 0 { cur_old } else { align(cur_old, attalign) };
            if old_start >= data_len {
                return None;
            }
            let p = data.add(old_start);
            len = match varlena::size_any(p, data_len - old_start) {
                Some(s) if s > 0 => s,
                _ => return None,
            };
            new_start = if varlena::is_1b(*p) { cur_new } else { align(cur_new, attalign) };
        } else if att.attlen == -2 {
            // cstring: unaligned, NUL-terminated.
            old_start = cur_old;
            new_start = cur_new;
            let mut l = 0;
            while old_start + l < data_len && *data.add(old_start + l) != 0 {
                l += 1;
            }
            len = l + 1;
        } else {
            return None;
        }
        if old_start + len > data_len || n_moves == MAX_MOVES {
            return None;
        }
        moves[n_moves] = std::mem::MaybeUninit::new((old_start, new_start, len));
        n_moves += 1;
        cur_old = old_start + len;
        cur_new = new_start + len;
    }
    // Not the layout we expected: leave the tuple alone.
    (cur_old == data_len).then_some((n_moves, cur_new))
}

/// The columns after the value of `attnum` that a change of its size moves, and the data's new
/// length: [`plan`]'s answer, found without the call when the value ends the row's data (the
/// last column, or every later one NULL: nothing after it to move).
///
/// # Safety
/// As for [`plan`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn moves_after<'m>(
    th: pg_sys::HeapTupleHeader,
    desc: pg_sys::TupleDesc,
    attnum: i32,
    data: *const u8,
    data_len: usize,
    old_end: usize,
    new_end: usize,
    moves: &'m mut Moves,
) -> Option<(&'m [(usize, usize, usize)], usize)> {
    if old_end == data_len {
        return Some((&[], new_end));
    }
    let (n_moves, new_data_len) = plan(th, desc, attnum, data, data_len, old_end, new_end, moves)?;
    Some((planned(moves, n_moves), new_data_len))
}

/// Where the value `old` lies in `tuple`: the tuple's header, its header length and data
/// area, and the value's offset in it; None when `old` is not inside the data (a column missing
/// from the tuple, or a detoasted copy), or on a big-endian build.
///
/// # Safety
/// `tuple` is a valid heap tuple; `old` null or a pointer `heap_getattr` returned for it.
#[inline(always)]
unsafe fn locate(tuple: pg_sys::HeapTuple, old: *mut u8) -> Option<(pg_sys::HeapTupleHeader, usize, *mut u8, usize, usize)> {
    if cfg!(target_endian = "big") || old.is_null() {
        return None;
    }
    let th = (*tuple).t_data;
    let hoff = (*th).t_hoff as usize;
    let t_len = (*tuple).t_len as usize;
    if t_len <= hoff {
        return None;
    }
    let data = th.cast::<u8>().add(hoff);
    let data_len = t_len - hoff;
    let off_a = (old as usize).wrapping_sub(data as usize);
    if (old as usize) < (data as usize) || off_a >= data_len {
        return None;
    }
    Some((th, hoff, data, data_len, off_a))
}

/// A new tuple: `tuple` with the short value at `old` (column `attnum`) replaced by the larger
/// `payload` (`seriesB` -> `series-b`), byte for byte what `heap_modify_tuple_by_cols` builds
/// (the header as `heap_form_tuple` sets it, the later columns moved up and re-aligned as
/// `heap_fill_tuple` places them, zeroed padding), made by copying instead of deforming and
/// forming the row again (about 130 instructions per row of the benchmark, 15 of them Debian
/// 15.20's `heap_datum_check`). Allocated in the current memory context, as PostgreSQL's would be.
/// None, having allocated nothing, when it cannot be done this way (the value is not a short
/// inline one inside the tuple, the new one would not be short, the tuple lacks trailing columns
/// of the descriptor (PostgreSQL's tuple would carry their missing values), or the layout is not
/// the expected one): the caller then lets PostgreSQL build it.
///
/// # Safety
/// As for [`rewrite`]; it writes nothing into `tuple`.
pub unsafe fn grown(
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    attnum: i32,
    old: *mut u8,
    payload: &[u8],
) -> Option<pg_sys::HeapTuple> {
    let (th, hoff, data, data_len, off_a) = locate(tuple, old)?;
    let b0 = *old;
    if !varlena::is_short_inline(b0) {
        return None;
    }
    let old_sz = (b0 >> 1) as usize;
    let new_sz = 1 + payload.len();
    // 0x7F: the largest size a 1-byte header holds (VARATT_SHORT_MAX).
    if old_sz < 1 || off_a + old_sz > data_len || new_sz <= old_sz || new_sz > 0x7F {
        return None;
    }
    let natts_t = ((*th).t_infomask2 as u32 & pg_sys::HEAP_NATTS_MASK) as i32;
    if natts_t != (*desc).natts {
        return None;
    }
    let mut moves: Moves = [const { std::mem::MaybeUninit::uninit() }; MAX_MOVES];
    let (moves, new_data_len) = moves_after(th, desc, attnum, data, data_len, off_a + old_sz, off_a + new_sz, &mut moves)?;
    let new_len = hoff + new_data_len;
    // heap_form_tuple: one zeroed chunk, the HeapTupleData then the tuple. Not zeroed here:
    // every byte of the tuple is written below, padding included (the HeapTupleData's own
    // padding is never read).
    let size = std::mem::size_of::<pg_sys::HeapTupleData>();
    // Unguarded (the trigger's raw entry point calls this): out of memory longjmps.
    let out = crate::server::raw::palloc(size + new_len).cast::<pg_sys::HeapTupleData>();
    let nth = out.cast::<u8>().add(size).cast::<pg_sys::HeapTupleHeaderData>();
    (*out).t_len = new_len as u32;
    (*out).t_self = (*tuple).t_self;
    (*out).t_tableOid = (*tuple).t_tableOid;
    (*out).t_data = nth;
    // The header and null bitmap as they are; then what heap_form_tuple sets itself.
    std::ptr::copy_nonoverlapping(th.cast::<u8>(), nth.cast::<u8>(), hoff);
    (*nth).t_choice.t_datum.datum_len_ = (new_len as i32) << 2;
    (*nth).t_choice.t_datum.datum_typmod = (*desc).tdtypmod;
    (*nth).t_choice.t_datum.datum_typeid = (*desc).tdtypeid;
    (*nth).t_infomask = (*th).t_infomask & (pg_sys::HEAP_HASNULL | pg_sys::HEAP_HASVARWIDTH | pg_sys::HEAP_HASEXTERNAL) as u16;
    (*nth).t_infomask2 = natts_t as u16;
    let ndata = nth.cast::<u8>().add(hoff);
    std::ptr::copy_nonoverlapping(data, ndata, off_a);
    *ndata.add(off_a) = ((new_sz as u8) << 1) | 0x01;
    stage_norm_core::bytes::copy(ndata.add(off_a + 1), payload);
    let mut end = off_a + new_sz;
    for &(old_start, new_start, len) in moves {
        // The alignment padding before a moved column: zero, as in heap_form_tuple's chunk.
        std::ptr::write_bytes(ndata.add(end), 0, new_start - end);
        std::ptr::copy_nonoverlapping(data.add(old_start), ndata.add(new_start), len);
        end = new_start + len;
    }
    debug_assert_eq!(hoff + end, new_len);
    Some(out)
}

/// Replaces the varlena at `old` (inside `tuple`'s data area) with `payload`, in place.
/// Returns false, having written nothing, when that cannot be done safely (see the module
/// comment). `nvalid` is the slot's `tts_nvalid`; `attnum` the column (1-based).
///
/// `MOVES = false` ([`rewrite_in_walk`]): only what moves no other column (a value of the same
/// size, or a shrink of the value that ends the row's data); the caller defers the rest.
///
/// # Safety
/// `tuple` is a valid heap tuple described by `desc`; `old` is the value of column `attnum`
/// as `heap_getattr` returned it for this tuple.
#[inline]
pub unsafe fn rewrite(
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    attnum: i32,
    old: *mut u8,
    payload: &[u8],
    nvalid: i32,
) -> bool {
    rewrite_with::<true>(tuple, desc, attnum, old, payload, nvalid)
}

/// [`rewrite`] of what moves no other column, for the trigger's walk of the row: made as soon
/// as the value is judged (nothing is recorded for later), so that the deferred rewrites'
/// pointers into the row stay valid (nothing after the value moves, and what is before it
/// never moves). False, having written nothing, for the rest.
///
/// # Safety
/// As for [`rewrite`]; `slot_owns(slot, tuple)` holds.
#[inline(always)]
pub unsafe fn rewrite_in_walk(tuple: pg_sys::HeapTuple, attnum: i32, old: *mut u8, payload: &[u8], nvalid: i32) -> bool {
    rewrite_with::<false>(tuple, std::ptr::null_mut(), attnum, old, payload, nvalid)
}

#[inline(always)]
unsafe fn rewrite_with<const MOVES: bool>(
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    attnum: i32,
    old: *mut u8,
    payload: &[u8],
    nvalid: i32,
) -> bool {
    let Some((th, hoff, data, data_len, off_a)) = locate(tuple, old) else { return false };
    let t_len = hoff + data_len;
    let b0 = *old;
    let (hdr, old_sz) = if varlena::is_short_inline(b0) {
        (1, (b0 >> 1) as usize)
    } else if varlena::is_4b_u(b0) {
        match varlena::size_any(old, data_len - off_a) {
            Some(s) => (4, s),
            None => return false,
        }
    } else {
        return false; // compressed or external
    };
    if old_sz < hdr || off_a + old_sz > data_len {
        return false;
    }
    let new_sz = hdr + payload.len();
    if new_sz == old_sz {
        stage_norm_core::bytes::copy(old.add(hdr), payload);
        return true;
    }
    // Only a short (1-byte header) value may change size, and only shrink; and not when the
    // slot has deformed this column or a later one (it caches their offsets).
    if hdr != 1 || new_sz > old_sz || nvalid >= attnum {
        return false;
    }

    // Something after the value would move: only where moves are allowed, and not past the
    // tuple's last attribute.
    if off_a + old_sz != data_len && (!MOVES || attnum >= ((*th).t_infomask2 as u32 & pg_sys::HEAP_NATTS_MASK) as i32) {
        return false;
    }
    let mut moves: Moves = [const { std::mem::MaybeUninit::uninit() }; MAX_MOVES];
    let Some((moves, _)) = moves_after(th, desc, attnum, data, data_len, off_a + old_sz, off_a + new_sz, &mut moves) else {
        return false;
    };
    if moves.iter().any(|&(old_start, new_start, _)| new_start > old_start) {
        return false;
    }

    // Write: the value, then each later column moved down (never up: new_start <= old_start),
    // with zeroed padding before it, as heap_fill_tuple leaves it.
    *old = ((new_sz as u8) << 1) | 0x01;
    stage_norm_core::bytes::copy(old.add(1), payload);
    let mut end = off_a + new_sz;
    for &(old_start, new_start, len) in moves {
        std::ptr::write_bytes(data.add(end), 0, new_start - end);
        std::ptr::copy(data.add(old_start), data.add(new_start), len);
        end = new_start + len;
    }
    let new_t_len = hoff + end;
    // heap_form_tuple also records the length as a composite datum's; keep it consistent.
    let datum_len = &mut (*th).t_choice.t_datum.datum_len_;
    if *datum_len == (t_len as i32) << 2 {
        *datum_len = (new_t_len as i32) << 2;
    }
    (*tuple).t_len = new_t_len as u32;
    true
}
