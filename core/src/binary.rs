//! Readers of PostgreSQL's binary forms, over plain bytes: `numeric`, jsonb containers and
//! one-dimensional or multi-dimensional arrays of a varlena type. The trigger and the SQL
//! functions read values in these forms as they are stored (no text round trip, no
//! deconstruction into datums), and they are pure so that they can be fuzzed.
//!
//! Every read is bounds-checked: malformed bytes give `None` (or [`JValue::Bad`]), never a
//! panic. The layouts are PostgreSQL's (numeric.c, jsonb.h, array.h), stable since 9.4/8.3 and
//! written to disk; little-endian hosts only (like every platform PostgreSQL 15 ships on here).
use crate::decimal::Num;

#[cfg(target_endian = "big")]
compile_error!("stage_norm_core::binary reads little-endian varlena headers");

#[inline(always)]
pub(crate) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
#[inline(always)]
pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A varlena at the start of `b` (1-byte or 4-byte header, not external or compressed): its
/// header length and its total length.
#[inline(always)]
pub fn varlena_at(b: &[u8]) -> Option<(usize, usize)> {
    let b0 = *b.first()?;
    if b0 & 0x01 == 0x01 {
        if b0 == 0x01 {
            return None; // external TOAST pointer
        }
        let len = usize::from(b0 >> 1);
        (len >= 1 && len <= b.len()).then_some((1, len))
    } else {
        let h = u32_at(b, 0)?;
        if h & 0x03 != 0 {
            return None; // compressed inline
        }
        let len = (h >> 2) as usize;
        (len >= 4 && len <= b.len()).then_some((4, len))
    }
}

/// Reads a `numeric` from its contents (the bytes after its varlena header). `None` for NaN
/// and the infinities (never in jsonb) and for malformed bytes.
#[inline]
pub fn numeric(data: &[u8]) -> Option<Num<'_>> {
    let h = u16_at(data, 0)?;
    match h & 0xC000 {
        0xC000 => None, // NaN, +-Infinity
        0x8000 => {
            // short format
            let w = i32::from(h & 0x003F);
            let weight = if h & 0x0040 != 0 { w | !0x3F } else { w };
            let digits = &data[2..];
            digits.len().is_multiple_of(2).then_some(Num {
                neg: h & 0x2000 != 0,
                weight,
                dscale: u32::from((h & 0x1F80) >> 7),
                digits,
            })
        }
        sign => {
            let weight = i32::from(u16_at(data, 2)? as i16);
            let digits = data.get(4..)?;
            digits.len().is_multiple_of(2).then_some(Num { neg: sign == 0x4000, weight, dscale: u32::from(h & 0x3FFF), digits })
        }
    }
}

pub(crate) const JB_CMASK: u32 = 0x0FFF_FFFF;
pub(crate) const JB_FSCALAR: u32 = 0x1000_0000;
pub(crate) const JB_FOBJECT: u32 = 0x2000_0000;
pub(crate) const JB_FARRAY: u32 = 0x4000_0000;
pub(crate) const JENTRY_OFFLENMASK: u32 = 0x0FFF_FFFF;
pub(crate) const JENTRY_TYPEMASK: u32 = 0x7000_0000;
pub(crate) const JENTRY_HAS_OFF: u32 = 0x8000_0000;

/// A value inside a jsonb container.
#[derive(Clone, Copy, Debug)]
pub enum JValue<'a> {
    String(&'a [u8]),
    /// The number, and the whole `numeric` varlena it was read from (header included).
    Number(Num<'a>, &'a [u8]),
    Bool,
    Null,
    Object,
    Array,
    /// Bytes that do not form a value (never from PostgreSQL).
    Bad,
}

impl JValue<'_> {
    /// "a string", "an object"...: for reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            JValue::String(_) => "a string",
            JValue::Number(..) => "a number",
            JValue::Bool => "a boolean",
            JValue::Null => "null",
            JValue::Object => "an object",
            JValue::Array => "an array",
            JValue::Bad => "unreadable",
        }
    }
}

/// The top level of a jsonb document.
pub enum Jsonb<'a> {
    Object(Object<'a>),
    /// An array, or a scalar (jsonb stores a top-level scalar as a one-element array); what
    /// it is, as [`JValue::kind`] says.
    Other(&'static str),
}

/// A jsonb object container: `len()` pairs, keys in jsonb's order (shorter first, then bytewise).
#[derive(Clone, Copy)]
pub struct Object<'a> {
    entries: &'a [u8],
    base: &'a [u8],
    n: usize,
}

/// Reads the top of a jsonb document from its contents (the bytes after its varlena header).
pub fn jsonb(data: &[u8]) -> Option<Jsonb<'_>> {
    let h = u32_at(data, 0)?;
    let n = (h & JB_CMASK) as usize;
    if h & JB_FOBJECT != 0 {
        let entries = data.get(4..4 + 8 * n)?;
        let base = data.get(4 + 8 * n..)?;
        return Some(Jsonb::Object(Object { entries, base, n }));
    }
    if h & JB_FARRAY == 0 {
        return None;
    }
    if h & JB_FSCALAR == 0 {
        return Some(Jsonb::Other("an array"));
    }
    let entries = data.get(4..8)?;
    let base = data.get(8..)?;
    let c = Container { entries, base };
    Some(Jsonb::Other(c.value(0, 0, c.len_at(0, 0)?).kind()))
}

struct Container<'a> {
    entries: &'a [u8],
    base: &'a [u8],
}

impl<'a> Container<'a> {
    #[inline(always)]
    fn entry(&self, i: usize) -> u32 {
        u32_at(self.entries, 4 * i).unwrap_or(0)
    }
    /// getJsonbOffset: the start of child `i`.
    #[inline]
    fn offset(&self, i: usize) -> usize {
        let mut off = 0usize;
        for j in (0..i).rev() {
            let e = self.entry(j);
            off = off.wrapping_add((e & JENTRY_OFFLENMASK) as usize);
            if e & JENTRY_HAS_OFF != 0 {
                break;
            }
        }
        off
    }
    /// getJsonbLength: the length of child `i` starting at `off`.
    #[inline(always)]
    fn len_at(&self, i: usize, off: usize) -> Option<usize> {
        let e = self.entry(i);
        if e & JENTRY_HAS_OFF != 0 {
            ((e & JENTRY_OFFLENMASK) as usize).checked_sub(off)
        } else {
            Some((e & JENTRY_OFFLENMASK) as usize)
        }
    }
    #[inline]
    fn value(&self, i: usize, off: usize, len: usize) -> JValue<'a> {
        let e = self.entry(i);
        let end = off.saturating_add(len);
        match e & JENTRY_TYPEMASK {
            0x0000_0000 => self.base.get(off..end).map_or(JValue::Bad, JValue::String),
            0x1000_0000 => {
                let start = (off + 3) & !3;
                let Some(bytes) = self.base.get(start..end) else { return JValue::Bad };
                match varlena_at(bytes) {
                    Some((hdr, total)) => match numeric(&bytes[hdr..total]) {
                        Some(n) => JValue::Number(n, &bytes[..total]),
                        None => JValue::Bad,
                    },
                    None => JValue::Bad,
                }
            }
            0x2000_0000 | 0x3000_0000 => JValue::Bool,
            0x4000_0000 => JValue::Null,
            0x5000_0000 => {
                let start = (off + 3) & !3;
                match u32_at(self.base, start) {
                    Some(h) if h & JB_FOBJECT != 0 => JValue::Object,
                    Some(h) if h & JB_FARRAY != 0 => JValue::Array,
                    _ => JValue::Bad,
                }
            }
            _ => JValue::Bad,
        }
    }
}

impl<'a> Object<'a> {
    pub fn len(&self) -> usize {
        self.n
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    /// The pairs in order. A malformed key is returned as an empty key with [`JValue::Bad`].
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], JValue<'a>)> + 'a {
        let c = Container { entries: self.entries, base: self.base };
        let n = self.n;
        let mut koff = 0usize;
        let mut voff = c.offset(n);
        (0..n).map(move |i| {
            let klen = c.len_at(i, koff);
            let key = klen.and_then(|l| c.base.get(koff..koff.checked_add(l)?));
            koff = koff.saturating_add(klen.unwrap_or(0));
            let vlen = c.len_at(n + i, voff);
            let value = match (key, vlen) {
                (Some(_), Some(l)) => c.value(n + i, voff, l),
                _ => JValue::Bad,
            };
            voff = voff.saturating_add(vlen.unwrap_or(0));
            (key.unwrap_or(&[]), value)
        })
    }
}

/// An array of a varlena element type, read from the whole datum (4-byte header included; the
/// caller detoasts it, so that it is aligned as it is in memory).
#[derive(Clone, Copy, Debug)]
pub struct Array<'a> {
    bytes: &'a [u8],
    pub ndim: usize,
    nitems: usize,
    bitmap: Option<&'a [u8]>,
    data_start: usize,
    /// The element type's alignment in bytes (4 for text and varchar).
    align: usize,
}

const MAXALIGN: usize = 8;

/// Reads an array's header. `align` is the element type's typalign in bytes.
pub fn array(bytes: &[u8], align: usize) -> Option<Array<'_>> {
    let (hdr, total) = varlena_at(bytes)?;
    if hdr != 4 {
        return None;
    }
    let bytes = &bytes[..total];
    let ndim = u32_at(bytes, 4)? as usize;
    let dataoffset = u32_at(bytes, 8)? as usize;
    if ndim > 6 {
        return None;
    }
    let mut nitems: usize = if ndim == 0 { 0 } else { 1 };
    for d in 0..ndim {
        let dim = u32_at(bytes, 16 + 4 * d)? as i32;
        if dim < 0 {
            return None;
        }
        nitems = nitems.checked_mul(dim as usize)?;
    }
    let after_dims = 16 + 8 * ndim;
    let (bitmap, data_start) = if dataoffset != 0 {
        (Some(bytes.get(after_dims..after_dims + nitems.div_ceil(8))?), dataoffset)
    } else {
        (None, after_dims.div_ceil(MAXALIGN) * MAXALIGN)
    };
    if data_start > bytes.len() || nitems > bytes.len() * 8 {
        return None;
    }
    Some(Array { bytes, ndim, nitems, bitmap, data_start, align })
}

impl<'a> Array<'a> {
    pub fn len(&self) -> usize {
        self.nitems
    }
    pub fn is_empty(&self) -> bool {
        self.nitems == 0
    }
    /// The dimensions and lower bounds (`ndim` of each).
    pub fn dims(&self) -> (Vec<i32>, Vec<i32>) {
        let at = |i: usize| u32_at(self.bytes, 16 + 4 * i).unwrap_or(0) as i32;
        ((0..self.ndim).map(at).collect(), (self.ndim..2 * self.ndim).map(at).collect())
    }
    /// The elements in storage order: `Some((varlena, header length))` (the element's whole
    /// varlena; its contents start after the header) or `None` for NULL. Stops early (yielding
    /// fewer than `len()` items) at malformed bytes.
    pub fn elements(&self) -> impl Iterator<Item = Option<(&'a [u8], usize)>> + 'a {
        let bytes = self.bytes;
        let bitmap = self.bitmap;
        let align = self.align.max(1);
        let mut p = self.data_start;
        let mut bad = false;
        (0..self.nitems).map_while(move |i| {
            if bad {
                return None;
            }
            if let Some(bm) = bitmap {
                if bm[i / 8] & (1 << (i % 8)) == 0 {
                    return Some(None);
                }
            }
            // att_align_pointer: a 1-byte header is never padded; else align.
            if bytes.get(p).is_some_and(|&b| b == 0) {
                p = p.div_ceil(align) * align;
            }
            match bytes.get(p..).and_then(varlena_at) {
                Some((hdr, len)) => {
                    let v = &bytes[p..p + len];
                    p += len;
                    Some(Some((v, hdr)))
                }
                None => {
                    bad = true;
                    None
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_short_and_long() {
        // 0.25 short: weight -1, dscale 2, digit 2500
        let h: u16 = 0x8000 | (2 << 7) | 0x0040 | (0x3F & (-1i32 as u16));
        let mut b = h.to_le_bytes().to_vec();
        b.extend_from_slice(&2500u16.to_le_bytes());
        let n = numeric(&b).unwrap();
        assert_eq!((n.neg, n.weight, n.dscale, n.digit(0)), (false, -1, 2, 2500));
        // long: -1e308: sign 0x4000, dscale 0, weight 77, digit 1
        let mut b = 0x4000u16.to_le_bytes().to_vec();
        b.extend_from_slice(&77i16.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        let n = numeric(&b).unwrap();
        assert_eq!((n.neg, n.weight, n.digit(0)), (true, 77, 1));
        assert!(numeric(&0xC000u16.to_le_bytes()).is_none());
        assert!(numeric(&[0x00]).is_none());
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic the readers.
        #[test]
        fn readers_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = numeric(&b);
            if let Some(Jsonb::Object(o)) = jsonb(&b) {
                for (k, v) in o.iter().take(1000) { let _ = (k.len(), v.kind()); }
            }
            if let Some(a) = array(&b, 4) {
                for e in a.elements().take(1000) { let _ = e.map(|x| x.0.len()); }
                let _ = a.dims();
            }
        }
    }
}
