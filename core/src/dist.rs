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
    let s = String::from_utf8_lossy(k);
    let mut out: String = s.chars().take(KEY_CHARS).collect();
    if s.chars().nth(KEY_CHARS).is_some() {
        out.push('…');
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
    match (sum.class(), canonical) {
        (SumClass::One, true) => Verdict::Canonical,
        (SumClass::One, false) => Verdict::Normalizable,
        _ => Verdict::Invalid,
    }
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
        if *keys > 1 && !sum.at_most(1) {
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
        out.push(format!("weights sum to {} (must be 1 ± 1e-6)", truncate(&sum.to_decimal_string())));
    }
    out
}

fn truncate(s: &str) -> String {
    if s.chars().count() > SUM_CHARS {
        let mut t: String = s.chars().take(SUM_CHARS).collect();
        t.push('…');
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
    if total.class() != SumClass::One || per.iter().any(|p| p.1.is_none() && !p.2.at_most(1)) {
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
                    let sd: u16 = (if o.neg { 0x4000 } else { 0 }) | o.dscale as u16;
                    num.extend_from_slice(&sd.to_le_bytes());
                    num.extend_from_slice(&(o.weight as i16).to_le_bytes());
                    num.extend_from_slice(&o.digits);
                    let total = (num.len() + 4) as u32;
                    data.extend_from_slice(&(total << 2).to_le_bytes());
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
        assert_eq!(reasons(&doc(&b), classify), vec!["weights sum to 0.999 (must be 1 ± 1e-6)"]);
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
            vec!["weight of \"seed\" is above 1", "weight of \"series-a\" is negative", "weights sum to 100 (must be 1 ± 1e-6)"]
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
}
