//! A fund's own stage set: the canonical stages as configuration, and the built-in rules mapped
//! onto them.
//!
//! The DBA gives the canonical names in stage order. Each name's key (steps 1-4 of the
//! contract) says which built-in form it takes:
//! - `preseed` (`pre-seed`) and `seed` take those forms;
//! - `series` + a letter (`series-d`) takes that letter, with tranche digits (`series d2`);
//! - `series` + a letter + `+` (`series-c+`) is a *catch-all*: it takes every letter from its
//!   own up to the next catch-all's, except the letters another stage takes, and it alone
//!   accepts the `+`/`plus` suffix (for exactly the letters it takes);
//! - any other name (`growth`, `pre-ipo`, `angel`) takes no built-in form: it is matched by its
//!   own spelling and by aliases.
//!
//! Every name also matches itself (its key), so a canonical value always classifies to itself.
//! A letter or form that no stage takes is unknown. The default set, built this way from
//! `pre-seed, seed, series-a, series-b, series-c+`, is exactly [`crate::BUILTIN`] (tested).
use std::borrow::Cow;
use std::fmt;

use crate::{key_of, Pattern, Rule, StageId, StageSet};

/// The most stages a set may have (a [`StageId`] is a byte; one value is kept for "none").
pub const MAX_STAGES: usize = 64;
/// The longest canonical name, in bytes.
pub const MAX_NAME_LEN: usize = 32;

/// Why a set was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetError {
    Empty,
    TooMany(usize),
    /// Not of the canonical shape: words of lowercase ASCII letters and digits joined by single
    /// `-`, optionally ending in `+`, at most [`MAX_NAME_LEN`] bytes.
    BadName(String),
    /// The name's key ends in `round`, which the normalizer removes: the name could not map to
    /// itself.
    EndsInRound(String),
    /// Two names with the same key (`series-a`, `series_a`): they could not be told apart.
    SameKey(String, String),
    /// Two stages take the same letter explicitly (`series-c` twice, or `series-c` and
    /// `series-c+`).
    LetterTakenTwice(char, String, String),
}

impl fmt::Display for SetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetError::Empty => write!(f, "a stage set needs at least one stage"),
            SetError::TooMany(n) => write!(f, "a stage set has at most {MAX_STAGES} stages, not {n}"),
            SetError::BadName(n) => write!(
                f,
                "\"{n}\" is not a canonical stage name: use words of lowercase ASCII letters and digits joined by single \"-\", optionally ending in \"+\", at most {MAX_NAME_LEN} bytes"
            ),
            SetError::EndsInRound(n) => write!(
                f,
                "stage \"{n}\" ends in \"round\", which the normalizer removes from every label, so no label could map to it"
            ),
            SetError::SameKey(a, b) => write!(f, "stages \"{a}\" and \"{b}\" have the same key, so no label could tell them apart"),
            SetError::LetterTakenTwice(c, a, b) => write!(f, "stages \"{a}\" and \"{b}\" both take the letter of series {c}"),
        }
    }
}

impl std::error::Error for SetError {}

/// What the key of a canonical name says it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Takes {
    /// `series` + letter (index 0 = `a`), catch-all or not.
    Letter(u8, bool),
    /// Nothing beyond its own spelling (`preseed` and `seed` are their own spellings).
    Own,
}

fn takes(key: &str) -> Takes {
    let Some(rest) = key.strip_prefix("series") else { return Takes::Own };
    match rest.as_bytes() {
        [c] if c.is_ascii_lowercase() => Takes::Letter(c - b'a', false),
        [c, b'+'] if c.is_ascii_lowercase() => Takes::Letter(c - b'a', true),
        _ => Takes::Own,
    }
}

/// `^[a-z0-9]+(-[a-z0-9]+)*\+?$`, at most [`MAX_NAME_LEN`] bytes.
fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    if b.is_empty() || b.len() > MAX_NAME_LEN {
        return false;
    }
    let body = b.strip_suffix(b"+").unwrap_or(b);
    !body.is_empty()
        && body.split(|&c| c == b'-').all(|w| !w.is_empty() && w.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
}

impl StageSet {
    /// Builds a stage set from its canonical names, in stage order (see the module comment).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<StageSet, SetError> {
        if names.is_empty() {
            return Err(SetError::Empty);
        }
        if names.len() > MAX_STAGES {
            return Err(SetError::TooMany(names.len()));
        }
        let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
        let keys: Vec<String> = names.iter().map(|n| key_of(n)).collect();
        for (i, n) in names.iter().enumerate() {
            if !valid_name(n) || keys[i].is_empty() {
                return Err(SetError::BadName((*n).to_string()));
            }
            if keys[i].ends_with("round") {
                return Err(SetError::EndsInRound((*n).to_string()));
            }
            if let Some(j) = keys[..i].iter().position(|k| *k == keys[i]) {
                return Err(SetError::SameKey(names[j].to_string(), (*n).to_string()));
            }
        }
        // Letters taken explicitly, and the catch-alls' own letters.
        let mut taken: [Option<usize>; 26] = [None; 26];
        let mut catch_alls: Vec<(u8, usize)> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            if let Takes::Letter(c, plus) = takes(k) {
                if let Some(j) = taken[usize::from(c)] {
                    return Err(SetError::LetterTakenTwice((b'a' + c) as char, names[j].to_string(), names[i].to_string()));
                }
                taken[usize::from(c)] = Some(i);
                if plus {
                    catch_alls.push((c, i));
                }
            }
        }
        catch_alls.sort_unstable();
        let mut rules: Vec<Rule> = Vec::new();
        // Every name matches itself.
        for (i, k) in keys.iter().enumerate() {
            rules.push(Rule { pattern: Pattern::Exact(Cow::Owned(k.clone())), stage: i as StageId });
        }
        // Explicit letters (with tranches, no plus).
        for (c, owner) in taken.iter().enumerate() {
            let Some(i) = owner else { continue };
            if catch_alls.iter().any(|&(l, _)| usize::from(l) == c) {
                continue;
            }
            rules.push(Rule {
                pattern: Pattern::Lettered { prefix: Cow::Borrowed("series"), letters: 1 << c, plus: false },
                stage: *i as StageId,
            });
        }
        // Catch-alls: from their letter to the next catch-all's, minus letters taken explicitly.
        for (n, &(c, i)) in catch_alls.iter().enumerate() {
            let end = catch_alls.get(n + 1).map_or(26, |&(next, _)| next);
            let mut letters = 0u32;
            for l in c..end {
                if taken[usize::from(l)].is_none() || l == c {
                    letters |= 1 << l;
                }
            }
            rules.push(Rule {
                pattern: Pattern::Lettered { prefix: Cow::Borrowed("series"), letters, plus: true },
                stage: i as StageId,
            });
        }
        Ok(StageSet {
            stages: Cow::Owned(names.iter().map(|n| Cow::Owned((*n).to_string())).collect()),
            rules: Cow::Owned(rules),
            strip_suffix: Cow::Borrowed("round"),
        })
    }

    /// The built-in forms stage `id` takes, in words (for the `stages` view): for example
    /// `["pre-seed"]`, `["series a (tranches: series a2)"]`, `["series c to z", "+ or plus"]`.
    pub fn forms(&self, id: StageId) -> Vec<String> {
        let mut out = Vec::new();
        for r in self.rules.iter().filter(|r| r.stage == id) {
            match &r.pattern {
                Pattern::Exact(k) => {
                    if k == "preseed" {
                        out.push("preseed".to_string());
                    } else if k == "seed" {
                        out.push("seed".to_string());
                    }
                }
                Pattern::Lettered { prefix, letters, plus } => {
                    let ls: Vec<char> = (0..26u8).filter(|l| letters & (1 << l) != 0).map(|l| (b'a' + l) as char).collect();
                    let mut runs: Vec<String> = Vec::new();
                    let mut k = 0;
                    while k < ls.len() {
                        let mut e = k;
                        while e + 1 < ls.len() && ls[e + 1] as u8 == ls[e] as u8 + 1 {
                            e += 1;
                        }
                        runs.push(if e == k { ls[k].to_string() } else { format!("{}-{}", ls[k], ls[e]) });
                        k = e + 1;
                    }
                    out.push(format!("{prefix} {}{}", runs.join(","), if *plus { " (+, plus)" } else { "" }));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BUILTIN;
    use proptest::prelude::*;

    const DEFAULT: [&str; 5] = ["pre-seed", "seed", "series-a", "series-b", "series-c+"];

    fn n(set: &StageSet, s: &str) -> Option<String> {
        set.normalize(s, None).map(str::to_string)
    }

    #[test]
    fn default_names_give_the_builtin_set() {
        let set = StageSet::from_names(&DEFAULT).unwrap();
        for s in ["Series D", "series c+", "Series C Plus", "series a+", "series b2", "Series Z", "pre_seed", "Seed Round", "seriesc", "series", "series +", "series 1", "SERIES-C+", "Series Ö"] {
            assert_eq!(n(&set, s), BUILTIN.normalize(s, None).map(str::to_string), "{s}");
        }
        assert_eq!(set.stages, BUILTIN.stages);
    }

    #[test]
    fn a_seven_stage_set() {
        let set = StageSet::from_names(&["pre-seed", "seed", "series-a", "series-b", "series-c", "series-d", "growth"]).unwrap();
        assert_eq!(n(&set, "Series C").as_deref(), Some("series-c"));
        assert_eq!(n(&set, "series d2").as_deref(), Some("series-d"));
        assert_eq!(n(&set, "Series E"), None); // no stage takes e
        assert_eq!(n(&set, "Series C+"), None); // no catch-all: + is unknown
        assert_eq!(n(&set, "Growth").as_deref(), Some("growth"));
        assert_eq!(n(&set, "growth round").as_deref(), Some("growth"));
        assert_eq!(set.forms(4), ["series c"]);
        assert_eq!(set.forms(6), Vec::<String>::new());
    }

    #[test]
    fn catch_all_takes_the_letters_nobody_else_takes() {
        let set = StageSet::from_names(&["angel", "seed", "series-a", "series-c+", "series-f", "series-x+"]).unwrap();
        assert_eq!(n(&set, "series b"), None); // before the catch-all's own letter
        assert_eq!(n(&set, "series d").as_deref(), Some("series-c+"));
        assert_eq!(n(&set, "series e+").as_deref(), Some("series-c+"));
        assert_eq!(n(&set, "series f").as_deref(), Some("series-f"));
        assert_eq!(n(&set, "series f+"), None); // f is taken explicitly: no plus
        assert_eq!(n(&set, "series g").as_deref(), Some("series-c+"));
        assert_eq!(n(&set, "series x plus").as_deref(), Some("series-x+"));
        assert_eq!(n(&set, "series z").as_deref(), Some("series-x+"));
        assert_eq!(n(&set, "pre seed"), None); // no stage takes preseed
        assert_eq!(n(&set, "Angel").as_deref(), Some("angel"));
        assert_eq!(set.forms(3), ["series c-e,g-w (+, plus)"]);
    }

    #[test]
    fn refusals() {
        assert_eq!(StageSet::from_names::<&str>(&[]), Err(SetError::Empty));
        assert!(matches!(StageSet::from_names(&["Seed"]), Err(SetError::BadName(_))));
        assert!(matches!(StageSet::from_names(&["-seed"]), Err(SetError::BadName(_))));
        assert!(matches!(StageSet::from_names(&["a b"]), Err(SetError::BadName(_))));
        for bad in ["seed-", "x--y", "a+b", "+", "series-c++", "-"] {
            assert!(matches!(StageSet::from_names(&[bad]), Err(SetError::BadName(_))), "{bad}");
        }
        for bad in ["seed-round", "round", "post-round"] {
            assert!(matches!(StageSet::from_names(&[bad]), Err(SetError::EndsInRound(_))), "{bad}");
        }
        assert!(matches!(StageSet::from_names(&["x".repeat(33)]), Err(SetError::BadName(_))));
        assert!(matches!(StageSet::from_names(&["pre-seed", "preseed"]), Err(SetError::SameKey(..))));
        assert!(matches!(StageSet::from_names(&["series-c", "series-c+"]), Err(SetError::LetterTakenTwice('c', ..))));
        let many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
        assert_eq!(StageSet::from_names(&many), Err(SetError::TooMany(65)));
        assert!(StageSet::from_names(&many[..64]).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The default set built from its names classifies every label as BUILTIN does.
        #[test]
        fn derived_default_equals_builtin(s in "[ a-zA-Z0-9_.+-]{0,16}") {
            let set = StageSet::from_names(&DEFAULT).unwrap();
            prop_assert_eq!(n(&set, &s), BUILTIN.normalize(&s, None).map(str::to_string));
        }

        /// Any valid set: every canonical name classifies to itself, and results are canonical.
        #[test]
        fn names_classify_to_themselves(names in proptest::collection::btree_set("(series-[a-z]\\+?|[a-z][a-z0-9-]{0,8})", 1..12), probe in "[ a-zA-Z+-]{0,12}") {
            let names: Vec<String> = names.into_iter().collect();
            if let Ok(set) = StageSet::from_names(&names) {
                for (i, name) in names.iter().enumerate() {
                    prop_assert_eq!(set.canonical_id(name), Some(i as StageId));
                    let got = n(&set, name);
                    prop_assert_eq!(got.as_deref(), Some(name.as_str()));
                }
                if let Some(got) = n(&set, &probe) {
                    prop_assert!(set.is_canonical(&got));
                }
            }
        }
    }
}
