//! Pure normalization logic of `stage_norm`, free of pgrx and of PostgreSQL.
//!
//! The contract (docs/normalization.md states it verbatim):
//! 1. Unicode NFKC normalization.
//! 2. Every dash character (general category Pd, plus U+2212 MINUS SIGN) becomes `-`.
//! 3. Full Unicode lowercase.
//! 4. Remove every White_Space character, the zero-width characters U+200B, U+200C, U+200D,
//!    U+2060, U+FEFF and the separators `-`, `_`, `.`. The result is the *key*.
//! 5. A key equal to a DBA-defined alias maps to that alias's stage.
//! 6. Otherwise one trailing suffix (`round`) is removed and the rest must match a rule exactly.
//! 7. Anything else is unknown.
//!
//! Steps 1-4 are [`make_key`]; steps 5-7 are [`StageSet::classify_key`]. The canonical stages and
//! the matching rules are data ([`StageSet`], [`BUILTIN`]), not code: a configurable stage set is a
//! different value of the same type.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use unicode_normalization::UnicodeNormalization;

pub mod binary;
pub mod bytes;
pub mod config;
pub mod decimal;
pub mod dist;
pub mod memo;
pub use config::{SetError, MAX_NAME_LEN, MAX_STAGES};

/// Index of a stage in its [`StageSet`] (`0` is the first canonical stage).
pub type StageId = u8;

/// DBA-defined aliases: key (the output of [`make_key`]) to stage.
///
/// Looked up once per classified label, so the miss (the common case) is made cheap: a bit mask
/// of the key lengths present rejects most labels before any hashing, and the hash is FNV-1a
/// (keys are short and chosen by the DBA, not by an attacker who could force collisions).
#[derive(Clone, Debug, Default)]
pub struct Aliases {
    map: HashMap<Box<str>, StageId, BuildHasherDefault<Fnv1a>>,
    /// Bit `min(len, 63)` is set when some key has that byte length.
    lengths: u64,
}

impl Aliases {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, key: Box<str>, stage: StageId) {
        self.lengths |= 1 << key.len().min(63);
        self.map.insert(key, stage);
    }

    #[inline]
    pub fn get(&self, key: &str) -> Option<StageId> {
        if self.lengths & (1 << key.len().min(63)) == 0 {
            return None;
        }
        self.map.get(key).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// FNV-1a, 64-bit.
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// One matching rule: a key that matches `pattern` is the stage `stage`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub pattern: Pattern,
    pub stage: StageId,
}

/// What a key must look like for a [`Rule`] to match. Patterns are matched against the whole key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// The key is exactly this string.
    Exact(Cow<'static, str>),
    /// `prefix`, then one ASCII letter `a`..`z` whose bit is set in `letters` (bit 0 is `a`),
    /// then zero or more ASCII digits (a tranche, `seriesa1`), then, only when `plus` is true,
    /// an optional `+` or `plus`.
    Lettered {
        prefix: Cow<'static, str>,
        letters: u32,
        plus: bool,
    },
}

/// A set of canonical stages and the rules that map keys to them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageSet {
    /// Canonical stage names, in stage order.
    pub stages: Cow<'static, [Cow<'static, str>]>,
    /// Rules, tried in order; the first that matches wins.
    pub rules: Cow<'static, [Rule]>,
    /// One trailing occurrence of this suffix is removed before the rules are tried (step 6).
    pub strip_suffix: Cow<'static, str>,
}

const fn exact(key: &'static str, stage: StageId) -> Rule {
    Rule {
        pattern: Pattern::Exact(Cow::Borrowed(key)),
        stage,
    }
}

/// The bit mask of the letters `first..=last`.
const fn letter_range(first: u8, last: u8) -> u32 {
    let mut mask = 0u32;
    let mut c = first;
    while c <= last {
        mask |= 1 << (c - b'a');
        c += 1;
    }
    mask
}

const fn lettered(first: u8, last: u8, plus: bool, stage: StageId) -> Rule {
    Rule {
        pattern: Pattern::Lettered {
            prefix: Cow::Borrowed("series"),
            letters: letter_range(first, last),
            plus,
        },
        stage,
    }
}

/// The built-in stage set: the whole table of canonical stages and rules.
pub static BUILTIN: StageSet = StageSet {
    stages: Cow::Borrowed(&[
        Cow::Borrowed("pre-seed"),
        Cow::Borrowed("seed"),
        Cow::Borrowed("series-a"),
        Cow::Borrowed("series-b"),
        Cow::Borrowed("series-c+"),
    ]),
    rules: Cow::Borrowed(&[
        exact("preseed", 0),
        exact("seed", 1),
        lettered(b'a', b'a', false, 2),
        lettered(b'b', b'b', false, 3),
        lettered(b'c', b'z', true, 4),
    ]),
    strip_suffix: Cow::Borrowed("round"),
};

/// Is `c` removed by step 4 (White_Space, the zero-width characters, or a separator)?
#[inline]
fn is_removed(c: char) -> bool {
    c.is_whitespace() // exactly the Unicode White_Space property
        || matches!(
            c,
            '-' | '_' | '.' | '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'
        )
}

/// Is `c` a dash of step 2: general category Pd (Unicode 15.1) or U+2212 MINUS SIGN?
#[inline]
fn is_dash(c: char) -> bool {
    matches!(
        c,
        '\u{002D}'
            | '\u{058A}'
            | '\u{05BE}'
            | '\u{1400}'
            | '\u{1806}'
            | '\u{2010}'..='\u{2015}'
            | '\u{2212}'
            | '\u{2E17}'
            | '\u{2E1A}'
            | '\u{2E3A}'
            | '\u{2E3B}'
            | '\u{2E40}'
            | '\u{2E5D}'
            | '\u{301C}'
            | '\u{3030}'
            | '\u{30A0}'
            | '\u{FE31}'
            | '\u{FE32}'
            | '\u{FE58}'
            | '\u{FE63}'
            | '\u{FF0D}'
            | '\u{10EAD}'
    )
}

/// Steps 1-4: writes the key of `input` into `out` (cleared first).
///
/// ASCII input (the common case) takes a fast path that allocates nothing once `out` has grown
/// to the key's size; other input goes through NFKC. Both paths give the same key.
pub fn make_key(input: &str, out: &mut String) {
    out.clear();
    if input.is_ascii() {
        make_key_ascii(input.as_bytes(), out);
    } else {
        make_key_unicode(input, out);
    }
}

/// Steps 1-4 for ASCII: byte to key byte, [`REMOVED`] for a byte that step 4 removes. NFKC leaves ASCII
/// unchanged; the only ASCII dash is '-', which step 4 removes.
const REMOVED: u8 = 0xff; // never an ASCII byte
static ASCII_KEY: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = match c {
            b' ' | b'\t'..=b'\r' | b'-' | b'_' | b'.' => REMOVED,
            _ => c.to_ascii_lowercase(),
        };
        b += 1;
    }
    t
};

#[inline]
fn make_key_ascii(input: &[u8], out: &mut String) {
    // SAFETY: only ASCII bytes (table values) are pushed, so the String stays UTF-8.
    let v = unsafe { out.as_mut_vec() };
    v.reserve(input.len());
    for &b in input {
        let k = ASCII_KEY[usize::from(b & 0x7f)];
        if k != REMOVED {
            v.push(k);
        }
    }
}

/// Steps 1-4 literally, for any input.
fn make_key_unicode(input: &str, out: &mut String) {
    for c in input.nfkc() {
        let c = if is_dash(c) { '-' } else { c };
        for l in c.to_lowercase() {
            if !is_removed(l) {
                out.push(l);
            }
        }
    }
}

/// Does `key` match `pattern` exactly?
fn matches(pattern: &Pattern, key: &[u8]) -> bool {
    match pattern {
        Pattern::Exact(s) => key == s.as_bytes(),
        Pattern::Lettered { prefix, letters, plus } => {
            let Some(rest) = key.strip_prefix(prefix.as_bytes()) else {
                return false;
            };
            let Some((&letter, rest)) = rest.split_first() else {
                return false;
            };
            if !letter.is_ascii_lowercase() || letters & (1 << (letter - b'a')) == 0 {
                return false;
            }
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let rest = &rest[digits..];
            rest.is_empty() || (*plus && (rest == b"+" || rest == b"plus"))
        }
    }
}

impl StageSet {
    /// The canonical name of stage `id`.
    pub fn name(&self, id: StageId) -> &str {
        &self.stages[usize::from(id)]
    }

    /// The stage whose canonical name is exactly `s`, if any.
    pub fn canonical_id(&self, s: &str) -> Option<StageId> {
        self.canonical_id_bytes(s.as_bytes())
    }

    /// [`Self::canonical_id`] on raw bytes (the trigger's shortcut for values that are already
    /// canonical, once per row). Length and first byte are compared before the rest: most
    /// labels differ there, and the rest is a `memcmp` call.
    #[inline]
    pub fn canonical_id_bytes(&self, b: &[u8]) -> Option<StageId> {
        self.stages
            .iter()
            .position(|n| {
                let n = n.as_bytes();
                n.len() == b.len() && n.first() == b.first() && n == b
            })
            .and_then(|i| StageId::try_from(i).ok())
    }

    /// Is `s` exactly one of the canonical names?
    pub fn is_canonical(&self, s: &str) -> bool {
        self.canonical_id(s).is_some()
    }

    /// Steps 5-7 for a key made by [`make_key`].
    pub fn classify_key(&self, key: &str, aliases: Option<&Aliases>) -> Option<StageId> {
        if let Some(stage) = aliases.and_then(|a| a.get(key)) {
            return Some(stage);
        }
        let key = key.strip_suffix(&*self.strip_suffix).unwrap_or(key);
        let key = key.as_bytes();
        self.rules
            .iter()
            .find(|r| matches(&r.pattern, key))
            .map(|r| r.stage)
    }

    /// The whole contract: `input` to a stage, or `None` when unknown. `buf` is scratch space
    /// reused between calls so that the common path does not allocate.
    pub fn classify(&self, input: &str, aliases: Option<&Aliases>, buf: &mut String) -> Option<StageId> {
        make_key(input, buf);
        self.classify_key(buf, aliases)
    }

    /// The whole contract on raw bytes, as they come out of a PostgreSQL text datum. Bytes that
    /// are not valid UTF-8 (possible in a `SQL_ASCII` database, or through a binary-coercible
    /// cast or a C function in any database) are an unknown label: `None`, never a panic.
    pub fn classify_bytes(&self, input: &[u8], aliases: Option<&Aliases>, buf: &mut String) -> Option<StageId> {
        let text = as_utf8(input)?;
        self.classify(text, aliases, buf)
    }

    /// [`Self::is_canonical`] on raw bytes: false for bytes that are not UTF-8 (no canonical
    /// name is).
    pub fn is_canonical_bytes(&self, b: &[u8]) -> bool {
        self.canonical_id_bytes(b).is_some()
    }

    /// Convenience for tests and tools: `input` to a canonical name.
    pub fn normalize(&self, input: &str, aliases: Option<&Aliases>) -> Option<&str> {
        let mut buf = String::new();
        self.classify(input, aliases, &mut buf).map(|id| self.name(id))
    }
}

/// `b` as `&str` when it is valid UTF-8 (ASCII, the common case, is checked by the faster test).
#[inline]
pub fn as_utf8(b: &[u8]) -> Option<&str> {
    if b.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(b) })
    } else {
        std::str::from_utf8(b).ok()
    }
}

/// The key of `input` as a new string (steps 1-4); used where an allocation does not matter.
pub fn key_of(input: &str) -> String {
    let mut out = String::new();
    make_key(input, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(s: &str) -> Option<&'static str> {
        BUILTIN.normalize(s, None)
    }

    #[test]
    fn issue_examples() {
        assert_eq!(n("Series A "), Some("series-a"));
        assert_eq!(n("pre_seed"), Some("pre-seed"));
        assert_eq!(n("seriesB"), Some("series-b"));
        assert_eq!(n("Series D"), Some("series-c+"));
        assert_eq!(n("Series A-2 Round"), Some("series-a"));
        assert_eq!(n("Ｓｅｒｉｅｓ\u{3000}Ａ"), Some("series-a"));
        assert_eq!(n("Series C Plus"), Some("series-c+"));
        assert_eq!(n(""), None);
    }

    #[test]
    fn canonical_names_map_to_themselves() {
        for s in BUILTIN.stages.iter() {
            assert_eq!(n(s), Some(&**s));
            assert!(BUILTIN.is_canonical(s));
        }
        assert_eq!(
            BUILTIN.stages.iter().map(|s| &**s).collect::<Vec<_>>(),
            ["pre-seed", "seed", "series-a", "series-b", "series-c+"]
        );
    }

    #[test]
    fn is_canonical_is_exact() {
        for s in ["Seed", "seed ", " seed", "series_a", "seriesa", "series-c", "series-d", ""] {
            assert!(!BUILTIN.is_canonical(s), "{s:?}");
        }
    }

    #[test]
    fn pre_seed_and_seed() {
        for s in ["preseed", "Pre-Seed", "PRE SEED", "pre.seed", "pre_seed round", "Pre-seed Round"] {
            assert_eq!(n(s), Some("pre-seed"), "{s:?}");
        }
        for s in ["seed", "Seed", " SEED\t", "Seed Round", "seed-round", "s.e.e.d"] {
            assert_eq!(n(s), Some("seed"), "{s:?}");
        }
    }

    #[test]
    fn series_letters() {
        assert_eq!(n("series a"), Some("series-a"));
        assert_eq!(n("series b"), Some("series-b"));
        for l in b'c'..=b'z' {
            let s = format!("Series {}", l as char);
            assert_eq!(n(&s), Some("series-c+"), "{s:?}");
        }
    }

    #[test]
    fn tranches() {
        assert_eq!(n("Series A1"), Some("series-a"));
        assert_eq!(n("seriesa12"), Some("series-a"));
        assert_eq!(n("Series B-2"), Some("series-b"));
        assert_eq!(n("series c 3"), Some("series-c+"));
        assert_eq!(n("Series E 10 Round"), Some("series-c+"));
        assert_eq!(n("series a ２"), Some("series-a")); // full-width digit via NFKC
    }

    #[test]
    fn plus_only_from_c() {
        for s in ["seriesc+", "Series C+", "seriescplus", "Series D+", "series d plus", "Series C2+", "series z plus round"] {
            assert_eq!(n(s), Some("series-c+"), "{s:?}");
        }
        for s in ["Series A+", "series a plus", "Series B+", "seriesbplus"] {
            assert_eq!(n(s), None, "{s:?}");
        }
    }

    #[test]
    fn round_is_removed_once() {
        assert_eq!(n("Seed Round"), Some("seed"));
        assert_eq!(n("seed round round"), None);
        assert_eq!(n("round"), None);
        assert_eq!(n("Series Round"), None);
        assert_eq!(n("round seed"), None);
    }

    #[test]
    fn no_guessing() {
        for s in [
            "angel", "growth", "A", "a", "Series A+", "seeds", "series", "series 1", "series aa",
            "series a1b", "seed1", "pre", "ipo", "Series Ä", "series a++", "series c plus plus",
            "series c+1", "Serie A", "series-", "-", "   ", "\u{200B}",
        ] {
            assert_eq!(n(s), None, "{s:?}");
        }
    }

    #[test]
    fn unicode_dashes_spaces_and_zero_width() {
        assert_eq!(n("Series\u{2013}A"), Some("series-a")); // en dash
        assert_eq!(n("pre\u{2212}seed"), Some("pre-seed")); // minus sign
        assert_eq!(n("pre\u{2E3A}seed"), Some("pre-seed")); // two-em dash
        assert_eq!(n("pre\u{FE63}seed"), Some("pre-seed")); // small hyphen-minus (NFKC -> '-')
        assert_eq!(n("Series\u{00A0}B"), Some("series-b")); // no-break space
        assert_eq!(n("Series\u{2007}B\u{205F}"), Some("series-b"));
        assert_eq!(n("se\u{200B}ed\u{FEFF}"), Some("seed"));
        assert_eq!(n("se\u{200C}e\u{200D}d\u{2060}"), Some("seed"));
        assert_eq!(n("\u{0085}seed\u{1680}"), Some("seed"));
        assert_eq!(n("ＳＥＥＤ"), Some("seed"));
        assert_eq!(n("Ｓｅｒｉｅｓ　Ｃ＋"), Some("series-c+"));
        // Characters that only look alike are not folded: Cyrillic 'а' is not 'a'.
        assert_eq!(n("series \u{0430}"), None);
        // NFKC compatibility ligature: U+FB01 'ﬁ' -> "fi" (not a stage, but must not crash).
        assert_eq!(n("\u{FB01}"), None);
        // Full lowercase: U+0130 (I with dot above) lowercases to "i\u{307}".
        assert_eq!(key_of("\u{0130}"), "i\u{307}");
    }

    #[test]
    fn keys() {
        assert_eq!(key_of(" Series-A_1.  Round "), "seriesa1round");
        assert_eq!(key_of("Ｐｒｅ－Ｓｅｅｄ"), "preseed");
        assert_eq!(key_of("\t\n\u{0b}\u{0c}\r "), "");
    }

    #[test]
    fn aliases_take_precedence_and_use_keys() {
        let mut a = Aliases::new();
        a.insert(key_of("Angel").into(), 0);
        a.insert(key_of("Series A").into(), 3); // an alias may even override a rule
        a.insert(key_of("growth round").into(), 4);
        assert_eq!(BUILTIN.normalize(" ANGEL ", Some(&a)), Some("pre-seed"));
        assert_eq!(BUILTIN.normalize("series_a", Some(&a)), Some("series-b"));
        assert_eq!(BUILTIN.normalize("Growth Round", Some(&a)), Some("series-c+"));
        // Aliases match the whole key: the round suffix is not removed for them.
        assert_eq!(BUILTIN.normalize("Growth", Some(&a)), None);
        assert_eq!(BUILTIN.normalize("angel", None), None);
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn long_alias_keys_share_the_last_length_bit() {
        let mut a = Aliases::new();
        let long = "x".repeat(100);
        a.insert(long.clone().into(), 1);
        assert_eq!(a.get(&long), Some(1));
        assert_eq!(a.get(&"x".repeat(64)), None);
        assert_eq!(a.get("x"), None);
    }

    #[test]
    fn huge_inputs() {
        let big = "a".repeat(10 << 20);
        assert_eq!(n(&big), None);
        let tranche = format!("series a{}", "7".repeat(10 << 20));
        assert_eq!(n(&tranche), Some("series-a"));
        let spaces = format!("{}seed{}", " ".repeat(5 << 20), "\u{3000}".repeat(1 << 20));
        assert_eq!(n(&spaces), Some("seed"));
    }

    #[test]
    fn every_plane_does_not_panic() {
        let mut s = String::new();
        for cp in (0..=0x10FFFFu32).step_by(97) {
            if let Some(c) = char::from_u32(cp) {
                s.push(c);
                let _ = n(&s[s.len() - c.len_utf8()..]);
            }
        }
        let _ = n(&s);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn ascii_fast_path_equals_unicode_path(s in "[\u{0}-\u{7f}]{0,40}") {
            let mut fast = String::new();
            let mut slow = String::new();
            make_key(&s, &mut fast);
            make_key_unicode(&s, &mut slow);
            prop_assert_eq!(fast, slow);
        }

        #[test]
        fn result_is_none_or_canonical(s in any::<String>()) {
            if let Some(stage) = n(&s) {
                prop_assert!(BUILTIN.is_canonical(stage));
            }
        }

        #[test]
        fn separators_and_case_do_not_matter(
            i in 0usize..5,
            seps in proptest::collection::vec("[ _.\u{2010}\u{3000}\u{200B}-]{0,2}", 12),
            upper in proptest::collection::vec(any::<bool>(), 12),
        ) {
            let canonical = &*BUILTIN.stages[i];
            let mut messy = String::new();
            for (k, c) in canonical.chars().enumerate() {
                messy.push_str(&seps[k % seps.len()]);
                if upper[k % upper.len()] { messy.extend(c.to_uppercase()) } else { messy.push(c) }
            }
            prop_assert_eq!(n(&messy), Some(canonical));
        }

        /// Any bytes at all (not only valid strings): never a panic; invalid UTF-8 is unknown;
        /// valid UTF-8 gives what the `&str` path gives.
        #[test]
        fn arbitrary_bytes_are_classified_or_unknown(b in proptest::collection::vec(any::<u8>(), 0..48)) {
            let mut buf = String::new();
            let got = BUILTIN.classify_bytes(&b, None, &mut buf);
            match std::str::from_utf8(&b) {
                Ok(s) => prop_assert_eq!(got, BUILTIN.classify(s, None, &mut buf)),
                Err(_) => {
                    prop_assert_eq!(got, None);
                    prop_assert!(!BUILTIN.is_canonical_bytes(&b));
                }
            }
        }

        /// Valid stage spellings with one byte corrupted into an invalid sequence are unknown.
        #[test]
        fn corrupted_spellings_are_unknown(i in 0usize..5, at in 0usize..16, bad in prop_oneof![Just(0xc3u8), Just(0x80u8), Just(0xffu8), Just(0xedu8)]) {
            let mut b = BUILTIN.stages[i].as_bytes().to_vec();
            let at = at % (b.len() + 1);
            b.insert(at, bad);
            let mut buf = String::new();
            if std::str::from_utf8(&b).is_err() {
                prop_assert_eq!(BUILTIN.classify_bytes(&b, None, &mut buf), None);
            }
        }

        #[test]
        fn key_has_nothing_steps_2_and_4_remove(s in any::<String>()) {
            let k = key_of(&s);
            // A key contains nothing that steps 2 and 4 remove.
            prop_assert!(!k.chars().any(|c| is_removed(c) || is_dash(c)));
        }
    }
}
