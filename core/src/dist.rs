//! Stage distributions (a JSON object: stage -> weight) and stage arrays: the rules, over the
//! binary readers of [`crate::binary`] and the exact sums of [`crate::decimal`].
//!
//! A distribution is valid when:
//! - it is a JSON object with at least one key;
//! - every key is a known stage (the caller classifies keys: built-in rules and aliases);
//! - every weight is a JSON number with 0 <= w <= 1;
//! - the weights sum to 1 within 1e-6 (absolute), exactly computed.
//!
//! Its canonical form has the canonical stage names as keys; keys that name the same stage are
//! merged into one whose weight is their exact sum. Weights are kept as given (never rescaled).
//! It is *canonical* when it is valid and every key is already a canonical name.
use crate::binary::{JValue, Jsonb, Object};
use crate::decimal::{Sum, SumClass};
use crate::StageId;

/// Reasons shown in a DETAIL at most (the rest are counted).
pub const DETAIL_REASONS: usize = 5;
/// Characters of a key quoted in a reason.
const KEY_CHARS: usize = 64;
/// Characters of a sum quoted in a reason.
const SUM_CHARS: usize = 40;

/// The verdict on a distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid, and every key is a canonical name: stored as it is.
    Canonical,
    /// Valid once its keys are normalized (and merged).
    Normalizable,
    Invalid,
}

fn quote_key(k: &[u8]) -> String {
    // Bytes that are not UTF-8 as \xNN (never U+FFFD, which some server encodings cannot hold).
    let mut s = String::with_capacity(k.len());
    for chunk in k.utf8_chunks() {
        s.push_str(chunk.valid());
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    let mut out: String = s.chars().take(KEY_CHARS).collect();
    if s.chars().nth(KEY_CHARS).is_some() {
        out.push_str("...");
    }
    out.replace('"', "\\\"")
}

/// What a key is: `Some((stage, canonical?))` or `None` when unknown.
pub type KeyClass = Option<(StageId, bool)>;

/// Judges a distribution; `classify` says what each key is. Allocates nothing for a canonical
/// or normalizable distribution of at most 16 weights of up to 16 decimals (the trigger's path).
pub fn verdict(doc: &Jsonb, mut classify: impl FnMut(&[u8]) -> KeyClass) -> Verdict {
    let Jsonb::Object(obj) = doc else { return Verdict::Invalid };
    if obj.is_empty() {
        return Verdict::Invalid;
    }
    let mut sum = Sum::new();
    let mut canonical = true;
    for (key, value) in obj.iter() {
        let Some((_, is_canonical)) = classify(key) else { return Verdict::Invalid };
        canonical &= is_canonical;
        let JValue::Number(n, _) = value else { return Verdict::Invalid };
        if !n.in_unit_range() {
            return Verdict::Invalid;
        }
        sum.add(&n);
    }
    if sum.class() != SumClass::One {
        return Verdict::Invalid;
    }
    if canonical {
        return Verdict::Canonical;
    }
    // Keys naming the same stage are merged: a merged weight above 1 is invalid. The weights
    // are all from 0 to 1, so a merged weight is at most the total: only a total above 1 needs
    // the second pass.
    if sum.exceeds(1) && merged_weight_above_one(obj, classify) {
        return Verdict::Invalid;
    }
    Verdict::Normalizable
}

// The stage bitmaps of `merged_weight_above_one` have a bit per StageId.
const _: () = assert!(std::mem::size_of::<StageId>() == 1);

/// Does a stage named by several keys have a merged weight above 1? For an object whose keys
/// are all stages and whose weights are all numbers (as [`verdict`] checked). Allocates nothing
/// (weights of up to 16 decimals): it classifies each key once to find the stages named more
/// than once, then once more per such stage to add up that stage's weights; at most
/// (1 + stages named more than once) passes over the keys.
fn merged_weight_above_one(obj: &Object, mut classify: impl FnMut(&[u8]) -> KeyClass) -> bool {
    let bit = |id: StageId| (usize::from(id) / 64, 1u64 << (usize::from(id) % 64));
    let mut seen = [0u64; 4];
    let mut repeated = [0u64; 4];
    for (key, _) in obj.iter() {
        let Some((id, _)) = classify(key) else { continue };
        let (w, b) = bit(id);
        if seen[w] & b != 0 {
            repeated[w] |= b;
        }
        seen[w] |= b;
    }
    for (w, &word) in repeated.iter().enumerate() {
        let mut rest = word;
        while rest != 0 {
            let id = (64 * w + rest.trailing_zeros() as usize) as StageId;
            rest &= rest - 1;
            let mut merged = Sum::new();
            for (key, value) in obj.iter() {
                if let (Some((i, _)), JValue::Number(n, _)) = (classify(key), value) {
                    if i == id {
                        merged.add(&n);
                    }
                }
            }
            if merged.exceeds(1) {
                return true;
            }
        }
    }
    false
}

/// The keys of the last distribution whose keys were all stages, as they are stored (their
/// JEntries and bytes), and whether they were all canonical names. A column of distributions
/// names the same stages row after row while the weights change, so [`quick_verdict`] compares
/// the keys with these bytes instead of classifying each key again. The caller clears it
/// whenever the classification of keys may change (stage set, aliases).
pub struct KeyMemo {
    /// Pairs, and bytes used in `buf` (entries then keys); 0 when empty.
    n: usize,
    used: usize,
    canonical: bool,
    buf: [u8; KEY_MEMO_BYTES],
}
const KEY_MEMO_BYTES: usize = 512;

impl KeyMemo {
    pub const EMPTY: KeyMemo = KeyMemo { n: 0, used: 0, canonical: false, buf: [0; KEY_MEMO_BYTES] };
    pub fn clear(&mut self) {
        self.n = 0;
        self.used = 0;
    }
}

/// The trigger's fast path: the verdict on a distribution as its bytes are stored (the jsonb
/// contents after the varlena header), in one walk over the container with no iterator and
/// no general decimal: for an object of 1 to 64 string keys whose values are all numbers in
/// `numeric`'s short format from 0 to 1 with at most 16 decimals (every realistic weight),
/// their sum is exact in a `u64` of units of 1e-16. Keys equal to the `memo`'s are not
/// classified again. `None` for anything else, and for non-canonical keys whose weights add up
/// to above 1 (within 1e-6: a stage's merged weight may exceed 1): then [`verdict`] decides
/// (the two agree wherever this one answers; property tests check it).
#[inline]
pub fn quick_verdict(data: &[u8], mut classify: impl FnMut(&[u8]) -> KeyClass, memo: Option<&mut KeyMemo>) -> Option<Verdict> {
    use crate::binary::{u32_at, JB_CMASK, JB_FARRAY, JB_FOBJECT, JB_FSCALAR, JENTRY_HAS_OFF, JENTRY_OFFLENMASK, JENTRY_TYPEMASK};
    const MAX_PAIRS: usize = 64;
    const JENTRY_NUMERIC: u32 = 0x1000_0000;
    let h = u32_at(data, 0)?;
    let n = (h & JB_CMASK) as usize;
    if h & (JB_FOBJECT | JB_FARRAY | JB_FSCALAR) != JB_FOBJECT || n == 0 || n > MAX_PAIRS {
        return None;
    }
    let entries = data.get(4..4 + 8 * n)?;
    let (key_entries, value_entries) = entries.split_at(4 * n);
    let base = &data[4 + 8 * n..];
    let word = |c: &[u8]| u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    // getJsonbOffset walked forwards: each child ends at its offset (HAS_OFF) or after its length.
    let end = |e: u32, off: usize| {
        let v = (e & JENTRY_OFFLENMASK) as usize;
        if e & JENTRY_HAS_OFF != 0 { v } else { off + v }
    };
    let remembered = memo.as_ref().is_some_and(|m| {
        m.n == n && m.buf[..4 * n] == *key_entries && base.get(..m.used - 4 * n) == Some(&m.buf[4 * n..m.used])
    });
    let (mut off, canonical) = if remembered {
        let m = memo.as_ref()?;
        (m.used - 4 * n, m.canonical)
    } else {
        let mut off = 0usize;
        let mut canonical = true;
        for c in key_entries.chunks_exact(4) {
            let e = word(c);
            if e & JENTRY_TYPEMASK != 0 {
                return None;
            }
            let to = end(e, off);
            let Some((_, is_canonical)) = classify(base.get(off..to)?) else { return Some(Verdict::Invalid) };
            canonical &= is_canonical;
            off = to;
        }
        if let Some(m) = memo {
            if 4 * n + off <= KEY_MEMO_BYTES {
                m.buf[..4 * n].copy_from_slice(key_entries);
                m.buf[4 * n..4 * n + off].copy_from_slice(&base[..off]);
                (m.n, m.used, m.canonical) = (n, 4 * n + off, canonical);
            }
        }
        (off, canonical)
    };
    let mut sum: u64 = 0;
    for c in value_entries.chunks_exact(4) {
        let e = word(c);
        if e & JENTRY_TYPEMASK != JENTRY_NUMERIC {
            return None;
        }
        let to = end(e, off);
        let v = base.get((off + 3) & !3..to)?;
        sum += match one_digit_weight(v) {
            Some(x) => x,
            None => unit_weight(v)?,
        };
        off = to;
    }
    Some(match (sum.abs_diff(UNIT) <= UNIT / 1_000_000, canonical) {
        (true, true) => Verdict::Canonical,
        // Keys naming the same stage are merged, and a merged weight may then exceed 1 when the
        // total does: `verdict` finds out (the keys are not at hand here when memoized).
        (true, false) if sum > UNIT => return None,
        (true, false) => Verdict::Normalizable,
        (false, _) => Verdict::Invalid,
    })
}

/// 1 in units of 1e-16.
const UNIT: u64 = 10_000_000_000_000_000;

/// A jsonb number (its whole `numeric` varlena) in units of 1e-16, when it is in the short
/// format, from 0 to 1, with at most 16 decimals; `None` otherwise.
/// The commonest weight in one load: a `numeric` with a 4-byte varlena header, the short
/// format, a + sign and a single base-10000 digit of weight 10000^0 to 10000^-4 (0.1, 0.25,
/// 0.125, 1). `None` for anything else, which [`unit_weight`] reads.
#[inline(always)]
fn one_digit_weight(v: &[u8]) -> Option<u64> {
    // Units of 1e-16 per digit, by the header's low 7 bits (weight sign and weight): 0 for
    // weight 0, 0x7F for -1, ... 0x7C for -4; 0 where the fast path does not apply.
    const UNITS: [u64; 128] = {
        let mut t = [0u64; 128];
        t[0] = UNIT;
        t[0x7F] = 1_000_000_000_000;
        t[0x7E] = 100_000_000;
        t[0x7D] = 10_000;
        t[0x7C] = 1;
        t
    };
    let x = u64::from_le_bytes(v.try_into().ok()?);
    let (hdr, h, digit) = (x as u32, (x >> 32) as u16, (x >> 48) as u16);
    // varlena header: 8 bytes, 4-byte form; numeric header: short format, + sign
    if hdr != 8 << 2 || h & 0xE000 != 0x8000 {
        return None;
    }
    let units = UNITS[usize::from(h & 0x7F)];
    let w = u64::from(digit) * units;
    (units != 0 && w <= UNIT).then_some(w)
}

#[inline(always)]
fn unit_weight(v: &[u8]) -> Option<u64> {
    // 10000^(p + 4) for a digit of weight 10000^p, p = -4..=0
    const SCALE: [u64; 5] = [1, 10_000, 100_000_000, 1_000_000_000_000, UNIT];
    let (hdr, total) = crate::binary::varlena_at(v)?;
    let d = &v[hdr..total];
    let h = crate::binary::u16_at(d, 0)?;
    if h & 0xC000 != 0x8000 || !d.len().is_multiple_of(2) {
        return None; // not the short format
    }
    let w = i32::from(h & 0x3F);
    let mut p = if h & 0x40 != 0 { w | !0x3F } else { w };
    let mut x: u64 = 0;
    for ch in d[2..].chunks_exact(2) {
        let digit = u64::from(u16::from_ne_bytes([ch[0], ch[1]]));
        if digit != 0 {
            if !(-4..=0).contains(&p) || digit >= 10_000 {
                return None;
            }
            x += digit * SCALE[(p + 4) as usize];
        }
        p -= 1;
    }
    // A negative sign on a zero is zero (numeric has no -0).
    (x <= UNIT && (h & 0x2000 == 0 || x == 0)).then_some(x)
}

/// Every reason why a distribution is invalid (empty when it is valid), in a fixed order: the
/// shape, then each key in jsonb's key order (unknown key, then its weight), then the sum.
pub fn reasons(doc: &Jsonb, mut classify: impl FnMut(&[u8]) -> KeyClass) -> Vec<String> {
    let obj = match doc {
        Jsonb::Object(o) => o,
        Jsonb::Other(kind) => return vec![format!("not a JSON object ({kind})")],
    };
    if obj.is_empty() {
        return vec!["empty object".into()];
    }
    let mut out = Vec::new();
    let mut sum = Sum::new();
    let mut numbers_ok = true;
    // Every weight a number from 0 to 100: what percentages look like.
    let mut percent_range = true;
    let mut above_one: Vec<String> = Vec::new();
    // Per stage: its number of keys and their sum (for merged weights above 1).
    let mut per: Vec<(StageId, u32, Sum)> = Vec::new();
    for (key, value) in obj.iter() {
        let q = quote_key(key);
        let class = classify(key);
        if class.is_none() {
            out.push(format!("unknown key \"{q}\""));
        }
        if let (Some((id, _)), JValue::Number(n, _)) = (class, value) {
            merge(&mut per, id, &n, 1u32, |k| *k += 1);
        }
        match value {
            JValue::Number(n, _) => {
                if n.is_negative() {
                    percent_range = false;
                    out.push(format!("weight of \"{q}\" is negative"));
                } else if !n.in_unit_range() {
                    let mut h = Sum::new();
                    h.add(&n);
                    percent_range &= h.at_most(100);
                    // Held back: percentages get one reason instead of one per weight.
                    above_one.push(format!("weight of \"{q}\" is above 1"));
                    out.push(String::new());
                }
                sum.add(&n);
            }
            other => {
                numbers_ok = false;
                out.push(format!("weight of \"{q}\" is not a number ({})", other.kind()));
            }
        }
    }
    let class = sum.class();
    let percentages = numbers_ok && percent_range && class == SumClass::Hundred;
    let mut held = above_one.into_iter();
    out = out
        .into_iter()
        .filter_map(|r| if r.is_empty() { held.next().filter(|_| !percentages) } else { Some(r) })
        .collect();
    for (_, keys, sum) in &per {
        if *keys > 1 && sum.exceeds(1) {
            out.push(format!(
                "{keys} keys name the same stage and their weights add up to {}, above 1",
                truncate(&sum.to_decimal_string())
            ));
        }
    }
    if percentages {
        out.push(format!(
            "weights sum to {}: looks like percentages (divide each weight by 100)",
            truncate(&sum.to_decimal_string())
        ));
    } else if numbers_ok && class != SumClass::One {
        out.push(format!("weights sum to {} (must be 1 +/- 1e-6)", truncate(&sum.to_decimal_string())));
    }
    out
}

fn truncate(s: &str) -> String {
    if s.chars().count() > SUM_CHARS {
        let mut t: String = s.chars().take(SUM_CHARS).collect();
        t.push_str("...");
        t
    } else {
        s.to_string()
    }
}

/// The DETAIL text of reasons: `shown` (the first few) joined, and how many more of `total`.
pub fn detail(shown: &[String], total: usize) -> String {
    let mut s = shown.join("; ");
    if total > shown.len() {
        s.push_str(&format!("; and {} more", total - shown.len()));
    }
    s
}

/// Adds weight `n` of stage `id` to the per-stage sums (`keys`: how many keys named it).
fn merge<T>(per: &mut Vec<(StageId, T, Sum)>, id: StageId, n: &crate::decimal::Num, first: T, again: impl FnOnce(&mut T)) {
    match per.iter_mut().find(|p| p.0 == id) {
        Some(p) => {
            again(&mut p.1);
            p.2.add(n);
        }
        None => {
            let mut s = Sum::new();
            s.add(n);
            per.push((id, first, s));
        }
    }
}

/// One key of the canonical form: the stage and its weight, either one of the input's numbers
/// as it is, or the exact sum of several (as numeric_out prints it).
pub enum Weight<'a> {
    /// The input's own `numeric` varlena (header included).
    One(&'a [u8]),
    Merged(String),
}

/// The canonical form of a valid distribution: (stage, weight) in stage order, and whether every
/// key was canonical already (then the input is its own canonical form). `None` when the
/// distribution is invalid. One pass: what `verdict` checks, plus the merge.
pub type Form<'a> = (bool, Vec<(StageId, Weight<'a>)>);
pub fn canonical_form<'a>(obj: &Object<'a>, mut classify: impl FnMut(&[u8]) -> KeyClass) -> Option<Form<'a>> {
    let mut per: Vec<(StageId, Option<&'a [u8]>, Sum)> = Vec::with_capacity(obj.len().min(64));
    let mut total = Sum::new();
    let mut canonical = true;
    if obj.is_empty() {
        return None;
    }
    for (key, value) in obj.iter() {
        let (id, is_canonical) = classify(key)?;
        canonical &= is_canonical;
        let JValue::Number(n, raw) = value else { return None };
        if !n.in_unit_range() {
            return None;
        }
        total.add(&n);
        // A stage named by several keys keeps no single input number: its weight is the sum.
        merge(&mut per, id, &n, Some(raw), |one| *one = None);
    }
    if total.class() != SumClass::One || per.iter().any(|p| p.1.is_none() && p.2.exceeds(1)) {
        // (a merged weight may exceed 1 while the total is within 1 + 1e-6)
        return None;
    }
    per.sort_by_key(|p| p.0);
    Some((
        canonical,
        per.into_iter()
            .map(|(id, one, s)| match one {
                Some(n) => (id, Weight::One(n)),
                None => (id, Weight::Merged(s.to_decimal_string())),
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decimal::OwnedNum;

    // A tiny jsonb object builder for tests: keys sorted as jsonb sorts them, numbers in the
    // long numeric format with 4-byte headers, strings and nulls.
    enum V<'a> {
        N(&'a str),
        S(&'a str),
        Null,
    }

    fn build(pairs: &[(&str, V)]) -> Vec<u8> {
        build_fmt(pairs, false, false)
    }

    /// `short`: numbers in numeric's short format where it fits (as PostgreSQL stores them);
    /// `hdr1`: with 1-byte varlena headers (a numeric taken from a stored row).
    fn build_fmt(pairs: &[(&str, V)], short: bool, hdr1: bool) -> Vec<u8> {
        let mut ps: Vec<_> = pairs.iter().collect();
        ps.sort_by(|a, b| (a.0.len(), a.0.as_bytes()).cmp(&(b.0.len(), b.0.as_bytes())));
        let n = ps.len();
        let mut entries: Vec<u32> = Vec::new();
        let mut data: Vec<u8> = Vec::new();
        for (k, _) in &ps {
            data.extend_from_slice(k.as_bytes());
            entries.push(k.len() as u32);
        }
        for (_, v) in &ps {
            let start = data.len();
            match v {
                V::S(s) => {
                    data.extend_from_slice(s.as_bytes());
                    entries.push(s.len() as u32);
                }
                V::Null => entries.push(0x4000_0000),
                V::N(s) => {
                    while data.len() % 4 != 0 {
                        data.push(0);
                    }
                    let o = OwnedNum::parse(s).unwrap();
                    let mut num = Vec::new();
                    if short && o.dscale <= 63 && (-64..=63).contains(&o.weight) {
                        let h: u16 = 0x8000
                            | if o.neg { 0x2000 } else { 0 }
                            | ((o.dscale as u16) << 7)
                            | if o.weight < 0 { 0x40 } else { 0 }
                            | (o.weight as u16 & 0x3F);
                        num.extend_from_slice(&h.to_le_bytes());
                    } else {
                        let sd: u16 = (if o.neg { 0x4000 } else { 0 }) | o.dscale as u16;
                        num.extend_from_slice(&sd.to_le_bytes());
                        num.extend_from_slice(&(o.weight as i16).to_le_bytes());
                    }
                    num.extend_from_slice(&o.digits);
                    if hdr1 && num.len() + 1 <= 127 {
                        data.push((((num.len() + 1) as u8) << 1) | 1);
                    } else {
                        let total = (num.len() + 4) as u32;
                        data.extend_from_slice(&(total << 2).to_le_bytes());
                    }
                    data.extend_from_slice(&num);
                    entries.push(0x1000_0000 | (data.len() - start) as u32);
                }
            }
        }
        let mut out = (0x2000_0000u32 | n as u32).to_le_bytes().to_vec();
        for e in entries {
            out.extend_from_slice(&e.to_le_bytes());
        }
        out.extend_from_slice(&data);
        out
    }

    fn classify(k: &[u8]) -> KeyClass {
        match k {
            b"seed" => Some((1, true)),
            b"Seed" | b"seed round" => Some((1, false)),
            b"series-a" => Some((2, true)),
            b"Series A" => Some((2, false)),
            _ => None,
        }
    }

    fn doc(b: &[u8]) -> Jsonb<'_> {
        crate::binary::jsonb(b).unwrap()
    }

    #[test]
    fn keys_that_are_not_utf8_are_quoted_as_bytes() {
        let mut b = build(&[("x", V::N("1"))]);
        let at = b.iter().position(|&c| c == b'x').unwrap();
        b[at] = 0xe9; // LATIN1's "é": not UTF-8
        assert_eq!(reasons(&doc(&b), classify), vec!["unknown key \"\\xe9\""]);
    }

    #[test]
    fn verdicts_and_reasons() {
        let b = build(&[("seed", V::N("0.1")), ("series-a", V::N("0.9"))]);
        assert_eq!(verdict(&doc(&b), classify), Verdict::Canonical);
        assert!(reasons(&doc(&b), classify).is_empty());
        let b = build(&[("Seed", V::N("0.1")), ("seed", V::N("0.2")), ("series-a", V::N("0.7"))]);
        assert_eq!(verdict(&doc(&b), classify), Verdict::Normalizable);
        let Jsonb::Object(o) = doc(&b) else { panic!() };
        let (all_canonical, form) = canonical_form(&o, classify).unwrap();
        assert!(!all_canonical);
        assert_eq!(form.len(), 2);
        assert!(matches!(&form[0], (1, Weight::Merged(s)) if s == "0.3"));
        assert!(matches!(&form[1], (2, Weight::One(_))));
        let b = build(&[("growth", V::N("0.5")), ("seed", V::S("0.5"))]);
        assert_eq!(verdict(&doc(&b), classify), Verdict::Invalid);
        assert_eq!(
            reasons(&doc(&b), classify),
            // jsonb's key order: shorter keys first
            vec!["weight of \"seed\" is not a number (a string)", "unknown key \"growth\""]
        );
        let b = build(&[("seed", V::N("50")), ("series-a", V::N("50"))]);
        assert_eq!(reasons(&doc(&b), classify), vec!["weights sum to 100: looks like percentages (divide each weight by 100)"]);
        let b = build(&[("seed", V::N("0.5")), ("series-a", V::N("0.499"))]);
        assert_eq!(reasons(&doc(&b), classify), vec!["weights sum to 0.999 (must be 1 +/- 1e-6)"]);
        let b = build(&[("seed", V::N("1e308")), ("series-a", V::N("-0.5"))]);
        let r = reasons(&doc(&b), classify);
        assert_eq!(r[0], "weight of \"seed\" is above 1");
        assert_eq!(r[1], "weight of \"series-a\" is negative");
        assert!(r[2].starts_with("weights sum to 99999999"), "{}", r[2]);
        let b = build(&[("Seed", V::N("0.5")), ("seed round", V::N("0.5000010"))]);
        let Jsonb::Object(o) = doc(&b) else { panic!() };
        assert!(canonical_form(&o, classify).is_none());
        assert_eq!(reasons(&doc(&b), classify), vec!["2 keys name the same stage and their weights add up to 1.0000010, above 1"]);
        let b = build(&[("seed", V::N("150")), ("series-a", V::N("-50"))]);
        assert_eq!(
            reasons(&doc(&b), classify),
            vec!["weight of \"seed\" is above 1", "weight of \"series-a\" is negative", "weights sum to 100 (must be 1 +/- 1e-6)"]
        );
        let b = build(&[("seed", V::N("-0")), ("series-a", V::N("1"))]);
        assert_eq!(verdict(&doc(&b), classify), Verdict::Canonical);
        let b = build(&[("seed", V::Null)]);
        assert_eq!(reasons(&doc(&b), classify), vec!["weight of \"seed\" is not a number (null)"]);
        let b = build(&[]);
        assert_eq!(reasons(&doc(&b), classify), vec!["empty object"]);
        assert_eq!(verdict(&doc(&b), classify), Verdict::Invalid);
        let b = build(&[("seed", V::N("0.9999995"))]);
        assert_eq!(verdict(&doc(&b), classify), Verdict::Canonical);
        let many: Vec<String> = (0..8).map(|i| format!("x{i}")).collect();
        let pairs: Vec<(&str, V)> = many.iter().map(|k| (k.as_str(), V::N("0.125"))).collect();
        let b = build(&pairs);
        let r = reasons(&doc(&b), classify);
        assert_eq!(r.len(), 8);
        assert_eq!(detail(&r[..5], r.len()), format!("{}; and 3 more", r[..5].join("; ")));
    }

    proptest::proptest! {
        /// Wherever the trigger's fast path answers, it answers as `verdict` does.
        #[test]
        fn quick_verdict_agrees(
            pairs in proptest::collection::vec((0usize..7, 0u8..10, -3_000_000_000i64..20_000_000_000_000_000, 0u32..20), 0..9),
            short in proptest::prelude::any::<bool>(),
            hdr1 in proptest::prelude::any::<bool>(),
        ) {
            const KEYS: [&str; 7] = ["seed", "Seed", "seed round", "series-a", "Series A", "growth", "x"];
            let nums: Vec<String> = pairs.iter().map(|&(_, _, m, sc)| {
                let neg = m < 0;
                let digits = format!("{:0>width$}", m.unsigned_abs(), width = sc as usize + 1);
                let (int, frac) = digits.split_at(digits.len() - sc as usize);
                format!("{}{}{}{}", if neg { "-" } else { "" }, int, if sc > 0 { "." } else { "" }, frac)
            }).collect();
            let mut seen = std::collections::HashSet::new();
            let ps: Vec<(&str, V)> = pairs.iter().zip(&nums)
                .filter(|((k, ..), _)| seen.insert(*k))
                .map(|(&(k, kind, ..), s)| (KEYS[k], match kind { 0 => V::Null, 1 => V::S("0.5"), _ => V::N(s.as_str()) }))
                .collect();
            let b = build_fmt(&ps, short, hdr1);
            if let Some(q) = quick_verdict(&b, classify, None) {
                proptest::prop_assert_eq!(q, verdict(&doc(&b), classify), "{:?}", ps.iter().map(|p| p.0).collect::<Vec<_>>());
            }
            // With a memo: cold, then warm (the same keys), then after another document.
            let mut memo = KeyMemo::EMPTY;
            let cold = quick_verdict(&b, classify, Some(&mut memo));
            proptest::prop_assert_eq!(cold, quick_verdict(&b, classify, None));
            proptest::prop_assert_eq!(quick_verdict(&b, classify, Some(&mut memo)), cold);
            let other = build_fmt(&[("seed", V::N("1"))], true, false);
            let _ = quick_verdict(&other, classify, Some(&mut memo));
            proptest::prop_assert_eq!(quick_verdict(&b, classify, Some(&mut memo)), cold);
        }
    }

    proptest::proptest! {
        /// The same on valid distributions: weights of `scale` decimals summing to exactly 1
        /// (or off by `off` units of the last decimal), keys canonical or not.
        #[test]
        fn quick_verdict_agrees_on_valid(
            parts in proptest::collection::vec((0usize..5, 0u64..1_000_000_000_000_000_000), 1..6),
            scale in 1u32..19,
            off in -2i64..3,
            short in proptest::prelude::any::<bool>(),
        ) {
            const KEYS: [&str; 5] = ["seed", "Seed", "seed round", "series-a", "Series A"];
            let one = 10u128.pow(scale);
            let cap = (one / parts.len() as u128).max(1);
            let mut ws: Vec<u128> = parts.iter().map(|&(_, x)| u128::from(x) % cap).collect();
            let rest: u128 = ws[1..].iter().sum();
            ws[0] = (one - rest).saturating_add_signed(i128::from(off));
            let fmt = |w: u128| {
                let d = format!("{:0>width$}", w, width = scale as usize + 1);
                let (i, f) = d.split_at(d.len() - scale as usize);
                format!("{i}.{f}")
            };
            let nums: Vec<String> = ws.iter().map(|&w| fmt(w)).collect();
            let mut seen = std::collections::HashSet::new();
            let ps: Vec<(&str, V)> = parts.iter().zip(&nums)
                .filter(|((k, _), _)| seen.insert(*k))
                .map(|(&(k, _), s)| (KEYS[k], V::N(s.as_str())))
                .collect();
            let b = build_fmt(&ps, short, false);
            if let Some(q) = quick_verdict(&b, classify, None) {
                proptest::prop_assert_eq!(q, verdict(&doc(&b), classify), "{:?}", nums);
            }
            // A warm memo from a document with the same keys and other weights, and its own.
            let mut memo = KeyMemo::EMPTY;
            let same_keys: Vec<(&str, V)> = ps.iter().map(|p| (p.0, V::N("0"))).collect();
            let _ = quick_verdict(&build_fmt(&same_keys, short, false), classify, Some(&mut memo));
            proptest::prop_assert_eq!(quick_verdict(&b, classify, Some(&mut memo)), quick_verdict(&b, classify, None));
        }
    }

    /// 1 in the units of [`judges_agree`]'s weights: 1e-20.
    const E20: i128 = 100_000_000_000_000_000_000;

    /// A weight of `u` units of 1e-20 as JSON, with at least `min_scale` decimals (trailing
    /// zeros beyond it trimmed).
    fn fmt_e20(u: i128, min_scale: u32) -> String {
        let m = u.unsigned_abs();
        let frac = format!("{:020}", m % E20 as u128);
        let keep = frac.trim_end_matches('0').len().max(min_scale as usize);
        let mut s = format!("{}{}", if u < 0 { "-" } else { "" }, m / E20 as u128);
        if keep > 0 {
            s.push('.');
            s.push_str(&frac[..keep]);
        }
        s
    }

    /// A test distribution's value: a number (units of 1e-20, minimum scale), or what is not one.
    #[derive(Clone, Copy, Debug)]
    enum TV {
        Num(i128, u32),
        NegZero,
        Null,
        Str,
    }

    /// What the rules say, computed independently with i128 arithmetic.
    fn reference_verdict(ps: &[(&str, TV)]) -> Verdict {
        if ps.is_empty() {
            return Verdict::Invalid;
        }
        let mut total = 0i128;
        let mut per = [0i128; 3];
        let mut canonical = true;
        for &(k, v) in ps {
            let Some((id, c)) = classify(k.as_bytes()) else { return Verdict::Invalid };
            canonical &= c;
            let w = match v {
                TV::Num(u, _) => u,
                TV::NegZero => 0,
                TV::Null | TV::Str => return Verdict::Invalid,
            };
            if !(0..=E20).contains(&w) {
                return Verdict::Invalid;
            }
            total += w;
            per[usize::from(id)] += w;
        }
        if (total - E20).abs() > E20 / 1_000_000 || per.iter().any(|&w| w > E20) {
            Verdict::Invalid
        } else if canonical {
            Verdict::Canonical
        } else {
            Verdict::Normalizable
        }
    }

    proptest::proptest! {
        /// `verdict`, `quick_verdict` (with and without a memo), `canonical_form` and `reasons`
        /// judge alike, and as an i128 reference does, on distributions that often name a stage
        /// by two keys whose weights add up to just above or below 1 (± k·1e-7), with negative
        /// weights, weights above 1, totals around 1 ± 1e-6, non-numbers and unknown keys.
        #[test]
        fn judges_agree(
            // keys 5 and 6 are unknown; 7.. the known keys again (unknown keys are rarer)
            others in proptest::collection::vec((0usize..16, 0u8..14, -3_000_000_000i64..20_000_000_000_000_000, 0u32..21), 0..6),
            zero_others in proptest::bool::weighted(0.6),
            // Two keys, mostly of one stage: which, where the weight is split (units of 1e-9),
            // the sum's distance from 1 (units of 1e-7, often within 1e-6 above 1; and units of
            // 1e-20), their minimum scale.
            same in proptest::option::weighted(0.8, (
                0usize..6,
                0i128..=1_000_000_000,
                proptest::prop_oneof![1i128..=10, -15i128..=15],
                proptest::prop_oneof![3 => proptest::strategy::Just(0i128), 1 => -1i128..=1],
                0usize..4,
            )),
            // The first other number set so that the total is 1 + k·1e-7 + d·1e-20.
            fix in proptest::option::weighted(0.4, (-15i128..=15, proptest::prop_oneof![3 => proptest::strategy::Just(0i128), 1 => -1i128..=1])),
            short in proptest::prelude::any::<bool>(),
            hdr1 in proptest::prelude::any::<bool>(),
        ) {
            const KEYS: [&str; 7] = ["seed", "Seed", "seed round", "series-a", "Series A", "growth", "x"];
            // Keys of the same stage; then of two stages (canonical, not canonical).
            const SAME: [(usize, usize); 6] = [(1, 2), (0, 1), (2, 0), (3, 4), (0, 3), (1, 4)];
            const SCALES: [u32; 4] = [1, 7, 16, 18];
            let mut tv: Vec<(usize, TV)> = Vec::new();
            if let Some((p, a, k, d, sc)) = same {
                let (i, j) = SAME[p];
                let a = a * 100_000_000_000;
                tv.push((i, TV::Num(a, SCALES[sc])));
                tv.push((j, TV::Num(E20 + k * 10_000_000_000_000 + d - a, SCALES[sc])));
            }
            for &(k, kind, m, sc) in &others {
                let k = if k < KEYS.len() { k } else { k % 5 };
                let v = match kind {
                    0 => TV::Null,
                    1 => TV::Str,
                    2 => TV::NegZero,
                    _ if zero_others => TV::Num(0, sc),
                    _ => TV::Num(i128::from(m) * 10i128.pow(20 - sc), sc),
                };
                if tv.iter().all(|t| t.0 != k) {
                    tv.push((k, v));
                }
            }
            if let Some((k, d)) = fix {
                let first = if same.is_some() { 2 } else { 0 };
                if let Some(f) = (first..tv.len()).find(|&i| matches!(tv[i].1, TV::Num(..))) {
                    let rest: i128 = tv.iter().enumerate().filter(|&(i, _)| i != f).map(|(_, t)| match t.1 { TV::Num(u, _) => u, _ => 0 }).sum();
                    let TV::Num(_, sc) = tv[f].1 else { unreachable!() };
                    tv[f].1 = TV::Num(E20 + k * 10_000_000_000_000 + d - rest, sc);
                }
            }
            let strs: Vec<String> = tv.iter().map(|t| match t.1 { TV::Num(u, sc) => fmt_e20(u, sc), _ => String::new() }).collect();
            let ps: Vec<(&str, V)> = tv.iter().zip(&strs).map(|(&(k, v), s)| (KEYS[k], match v {
                TV::Num(..) => V::N(s.as_str()),
                TV::NegZero => V::N("-0"),
                TV::Null => V::Null,
                TV::Str => V::S("0.5"),
            })).collect();
            let shown: Vec<(&str, &str)> = tv.iter().zip(&strs).map(|(&(k, v), s)| (KEYS[k], match v { TV::Num(..) => s.as_str(), TV::NegZero => "-0", TV::Null => "null", TV::Str => "\"0.5\"" })).collect();
            let b = build_fmt(&ps, short, hdr1);
            let Jsonb::Object(o) = doc(&b) else { panic!() };
            let v = verdict(&doc(&b), classify);
            let form = canonical_form(&o, classify);
            let rs = reasons(&doc(&b), classify);
            let named: Vec<(&str, TV)> = tv.iter().map(|&(k, v)| (KEYS[k], v)).collect();
            proptest::prop_assert_eq!(v, reference_verdict(&named), "{:?}", shown);
            proptest::prop_assert_eq!(v == Verdict::Invalid, form.is_none(), "{:?}", shown);
            proptest::prop_assert_eq!(v == Verdict::Invalid, !rs.is_empty(), "{:?} {:?}", shown, rs);
            proptest::prop_assert_eq!(v == Verdict::Canonical, matches!(form, Some((true, _))), "{:?}", shown);
            proptest::prop_assert_eq!(v == Verdict::Normalizable, matches!(form, Some((false, _))), "{:?}", shown);
            let q = quick_verdict(&b, classify, None);
            if let Some(q) = q {
                proptest::prop_assert_eq!(q, v, "{:?}", shown);
            }
            // With a memo: cold, warm, and warm from a document with the same keys.
            let mut memo = KeyMemo::EMPTY;
            for _ in 0..2 {
                let m = quick_verdict(&b, classify, Some(&mut memo));
                proptest::prop_assert_eq!(m, q, "{:?}", shown);
            }
            let same_keys: Vec<(&str, V)> = ps.iter().map(|p| (p.0, V::N("0"))).collect();
            let mut memo = KeyMemo::EMPTY;
            let _ = quick_verdict(&build_fmt(&same_keys, short, hdr1), classify, Some(&mut memo));
            proptest::prop_assert_eq!(quick_verdict(&b, classify, Some(&mut memo)), q, "{:?}", shown);
        }
    }

    proptest::proptest! {
        /// Arbitrary bytes: the fast path never panics, and agrees with `verdict` where it answers.
        #[test]
        fn quick_verdict_on_any_bytes(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut memo = KeyMemo::EMPTY;
            let q = quick_verdict(&b, classify, Some(&mut memo));
            proptest::prop_assert_eq!(quick_verdict(&b, classify, Some(&mut memo)), q);
            if let (Some(q), Some(d)) = (q, crate::binary::jsonb(&b)) {
                proptest::prop_assert_eq!(q, verdict(&d, classify));
            }
        }
    }

    /// A merged-weights reason only for a merged sum really above 1: two negative weights of the
    /// same stage add up to a negative sum, which is not "above 1".
    #[test]
    fn merged_weights_reason_only_above_one() {
        let b = build(&[("Seed", V::N("-0.5")), ("seed round", V::N("-0.5")), ("series-a", V::N("2"))]);
        assert_eq!(
            reasons(&doc(&b), classify),
            vec![
                "weight of \"Seed\" is negative",
                "weight of \"series-a\" is above 1",
                "weight of \"seed round\" is negative",
            ]
        );
        // Still given when the merged sum is above 1, whatever else is wrong.
        let b = build(&[("Seed", V::N("0.7")), ("seed round", V::N("0.7")), ("series-a", V::N("-0.4"))]);
        assert_eq!(
            reasons(&doc(&b), classify),
            vec![
                "weight of \"series-a\" is negative",
                "2 keys name the same stage and their weights add up to 1.4, above 1",
            ]
        );
    }

    /// A stage's merged weight above 1 (while the total is within 1 + 1e-6) is invalid for
    /// `verdict` and `quick_verdict` as it is for `canonical_form` and `reasons`.
    #[test]
    fn merged_weight_above_one_is_invalid() {
        for (short, hdr1) in [(false, false), (true, false), (true, true)] {
            let b = build_fmt(&[("Seed", V::N("0.5")), ("seed round", V::N("0.500001"))], short, hdr1);
            let Jsonb::Object(o) = doc(&b) else { panic!() };
            assert!(canonical_form(&o, classify).is_none());
            assert_eq!(reasons(&doc(&b), classify).len(), 1);
            assert_eq!(verdict(&doc(&b), classify), Verdict::Invalid);
            assert_eq!(quick_verdict(&b, classify, None), None, "short {short}");
            let mut memo = KeyMemo::EMPTY;
            assert_eq!(quick_verdict(&b, classify, Some(&mut memo)), None);
            assert_eq!(quick_verdict(&b, classify, Some(&mut memo)), None);
            // The same stage by a canonical and a non-canonical key, with a third stage.
            let b = build_fmt(&[("seed", V::N("0.3")), ("Seed", V::N("0.7000005")), ("series-a", V::N("0"))], short, hdr1);
            assert_eq!(verdict(&doc(&b), classify), Verdict::Invalid);
            assert_eq!(quick_verdict(&b, classify, None), None);
            // Merged weights at most 1 while the total is above 1: still normalizable.
            let b = build_fmt(&[("seed", V::N("0.3")), ("Seed", V::N("0.3")), ("series-a", V::N("0.4000005"))], short, hdr1);
            assert_eq!(verdict(&doc(&b), classify), Verdict::Normalizable);
            assert!(matches!(quick_verdict(&b, classify, None), None | Some(Verdict::Normalizable)));
            let b = build_fmt(&[("Seed", V::N("0.5")), ("seed round", V::N("0.5"))], short, hdr1);
            assert_eq!(verdict(&doc(&b), classify), Verdict::Normalizable);
            // Canonical keys above 1 in total: the fast path still answers.
            let b = build_fmt(&[("seed", V::N("0.5")), ("series-a", V::N("0.5000005"))], short, hdr1);
            assert_eq!(verdict(&doc(&b), classify), Verdict::Canonical);
            if short {
                assert_eq!(quick_verdict(&b, classify, None), Some(Verdict::Canonical));
            }
        }
    }

    #[test]
    fn quick_verdict_answers_the_usual() {
        let b = build_fmt(&[("seed", V::N("0.1")), ("series-a", V::N("0.9"))], true, false);
        assert_eq!(quick_verdict(&b, classify, None), Some(Verdict::Canonical));
        let b = build_fmt(&[("Seed", V::N("0.1")), ("series-a", V::N("0.8999995"))], true, true);
        assert_eq!(quick_verdict(&b, classify, None), Some(Verdict::Normalizable));
        // Non-canonical keys above 1 in total (a merged weight might exceed 1): left to `verdict`.
        let b = build_fmt(&[("Seed", V::N("0.1")), ("series-a", V::N("0.9000005"))], true, true);
        assert_eq!(quick_verdict(&b, classify, None), None);
        assert_eq!(verdict(&doc(&b), classify), Verdict::Normalizable);
        let b = build_fmt(&[("seed", V::N("0.1")), ("series-a", V::N("0.8999989"))], true, false);
        assert_eq!(quick_verdict(&b, classify, None), Some(Verdict::Invalid));
        let b = build_fmt(&[("seed", V::N("-0")), ("series-a", V::N("1"))], true, false);
        assert_eq!(quick_verdict(&b, classify, None), Some(Verdict::Canonical));
        // 1 ± 1e-6 inclusive, exactly
        for (w, v) in [("0.900001", Verdict::Canonical), ("0.8999990", Verdict::Canonical), ("0.9000010000000001", Verdict::Invalid)] {
            let b = build_fmt(&[("seed", V::N("0.1")), ("series-a", V::N(w))], true, false);
            assert_eq!(quick_verdict(&b, classify, None), Some(v), "{w}");
            assert_eq!(verdict(&doc(&b), classify), v, "{w}");
        }
        // left to `verdict`: the long format, 17 decimals, above 1, negative, not a number
        for (w, short) in [("0.5", false), ("0.50000000000000001", true), ("1.5", true), ("-0.5", true)] {
            let b = build_fmt(&[("seed", V::N("0.5")), ("series-a", V::N(w))], short, false);
            assert_eq!(quick_verdict(&b, classify, None), None, "{w}");
        }
        let b = build_fmt(&[("seed", V::Null)], true, false);
        assert_eq!(quick_verdict(&b, classify, None), None);
        assert_eq!(quick_verdict(&build_fmt(&[("growth", V::N("1"))], true, false), classify, None), Some(Verdict::Invalid));
        // The memo: keys classified once for the same keys, again after clear() or other keys.
        let calls = std::cell::Cell::new(0);
        let counting = |k: &[u8]| {
            calls.set(calls.get() + 1);
            classify(k)
        };
        let mut memo = KeyMemo::EMPTY;
        let a = build_fmt(&[("Seed", V::N("0.25")), ("series-a", V::N("0.75"))], true, false);
        let b = build_fmt(&[("Seed", V::N("0.5")), ("series-a", V::N("0.5"))], true, false);
        assert_eq!(quick_verdict(&a, counting, Some(&mut memo)), Some(Verdict::Normalizable));
        assert_eq!(quick_verdict(&b, counting, Some(&mut memo)), Some(Verdict::Normalizable));
        assert_eq!(calls.get(), 2);
        memo.clear();
        assert_eq!(quick_verdict(&b, counting, Some(&mut memo)), Some(Verdict::Normalizable));
        assert_eq!(calls.get(), 4);
        let c = build_fmt(&[("seed", V::N("0.5")), ("series-a", V::N("0.5"))], true, false);
        assert_eq!(quick_verdict(&c, counting, Some(&mut memo)), Some(Verdict::Canonical));
        assert_eq!(calls.get(), 6);
    }
}
