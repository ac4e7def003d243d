//! Exact decimal sums of distribution weights, in PostgreSQL's `numeric` representation.
//!
//! jsonb stores every number as a `numeric`: a sign, the weight of its first base-10000 digit, a
//! display scale, and base-10000 digits. [`Num`] reads those parts (from the binary form, see
//! [`crate::binary::numeric`], or from text for tests), and [`Sum`] adds them exactly: no binary
//! floating point anywhere, so `0.1 + 0.2 + 0.7` is exactly 1.
//!
//! Cost: a weight with at most 4 base-10000 digits after the point (16 decimals) and below
//! 10^8 is added into an `i128` fixed-point accumulator (scale 10^16), which covers every
//! realistic weight; anything else (1e308, 1e-20, 1000 digits) goes to a base-10000 accumulator
//! whose work is linear in the digits of its terms, and whose size is bounded by numeric's own
//! range (at most 131072 digits before the point and 16383 after it).
use std::cmp::Ordering;
use std::fmt::Write;

const NBASE: u32 = 10_000;
/// The fixed-point accumulator's scale: 10000^FIXED_LO_DIGITS = 10^16.
const FIXED_LO: i32 = -4;
/// The highest digit weight the fixed-point accumulator takes (digits up to 10^4..10^8).
const FIXED_HI: i32 = 1;
const FIXED_ONE: i128 = 10_000_000_000_000_000; // 10^16

/// A number as `numeric` stores it. `digits` are base-10000 digits, most significant first,
/// each two bytes in native byte order (as in the binary form; they may be unaligned).
#[derive(Clone, Copy, Debug)]
pub struct Num<'a> {
    pub neg: bool,
    /// Weight (power of 10000) of the first digit.
    pub weight: i32,
    /// Display scale: the number of decimal digits after the point.
    pub dscale: u32,
    pub digits: &'a [u8],
}

impl<'a> Num<'a> {
    #[inline(always)]
    pub fn ndigits(&self) -> usize {
        self.digits.len() / 2
    }
    #[inline(always)]
    pub fn digit(&self, i: usize) -> u32 {
        u32::from(u16::from_ne_bytes([self.digits[2 * i], self.digits[2 * i + 1]]))
    }
    /// Zero (numeric has no negative zero: `-0` is stored as 0; all-zero digits count as 0 too).
    pub fn is_zero(&self) -> bool {
        (0..self.ndigits()).all(|i| self.digit(i) == 0)
    }
    /// Is it negative (and not zero)?
    pub fn is_negative(&self) -> bool {
        self.neg && !self.is_zero()
    }
    /// Compares the magnitude with 1.
    pub fn cmp_one(&self) -> Ordering {
        let mut first = None;
        for i in 0..self.ndigits() {
            if self.digit(i) != 0 {
                first = Some(i);
                break;
            }
        }
        let Some(f) = first else { return Ordering::Less };
        let w = self.weight - f as i32;
        match w.cmp(&0) {
            Ordering::Less => Ordering::Less,
            Ordering::Greater => Ordering::Greater,
            Ordering::Equal if self.digit(f) > 1 => Ordering::Greater,
            Ordering::Equal => {
                if (f + 1..self.ndigits()).any(|i| self.digit(i) != 0) {
                    Ordering::Greater
                } else {
                    Ordering::Equal
                }
            }
        }
    }
    /// Is 0 <= self <= 1?
    #[inline]
    pub fn in_unit_range(&self) -> bool {
        // Fast paths for the usual weights: a positive number whose first digit weighs below 1
        // (numeric strips leading zero digits, but a zero first digit only makes it smaller).
        if !self.neg && self.weight < 0 {
            return true;
        }
        if !self.neg && self.weight == 0 && self.digits.len() == 2 {
            return self.digit(0) <= 1;
        }
        !self.is_negative() && self.cmp_one() != Ordering::Greater
    }
}

/// A decimal owned in memory (tests, fuzzing, text input).
#[derive(Clone, Debug)]
pub struct OwnedNum {
    pub neg: bool,
    pub weight: i32,
    pub dscale: u32,
    pub digits: Vec<u8>,
}

impl OwnedNum {
    pub fn as_num(&self) -> Num<'_> {
        Num { neg: self.neg, weight: self.weight, dscale: self.dscale, digits: &self.digits }
    }

    /// Parses a JSON number (`-?digits[.digits][e[+-]digits]`) the way numeric_in does.
    pub fn parse(s: &str) -> Option<OwnedNum> {
        let b = s.as_bytes();
        let mut i = 0;
        let neg = b.first() == Some(&b'-');
        if neg {
            i += 1;
        }
        let mut int = String::new();
        while i < b.len() && b[i].is_ascii_digit() {
            int.push(b[i] as char);
            i += 1;
        }
        let mut frac = String::new();
        if i < b.len() && b[i] == b'.' {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                frac.push(b[i] as char);
                i += 1;
            }
        }
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let mut exp: i64 = 0;
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            exp = std::str::from_utf8(&b[i..]).ok()?.parse().ok()?;
            i = b.len();
        }
        if i != b.len() || exp.abs() > 200_000 {
            return None;
        }
        // All digits, and the position of the decimal point after applying the exponent.
        let all: Vec<u8> = int.bytes().chain(frac.bytes()).map(|c| c - b'0').collect();
        let point = int.len() as i64 + exp; // digits before the point
        let dscale = (frac.len() as i64 - exp).max(0) as u32;
        // Align to base-10000 groups: group g covers decimal positions by weight.
        // Decimal digit k (0-based in `all`) has decimal exponent point-1-k.
        let mut groups: std::collections::BTreeMap<i64, u32> = Default::default();
        for (k, &d) in all.iter().enumerate() {
            if d == 0 {
                continue;
            }
            let e = point - 1 - k as i64; // 10^e
            let w = e.div_euclid(4);
            let pos = e.rem_euclid(4);
            *groups.entry(w).or_insert(0) += u32::from(d) * 10u32.pow(pos as u32);
        }
        let mut digits = Vec::new();
        let weight;
        if groups.is_empty() {
            weight = 0;
        } else {
            let hi = *groups.keys().next_back().unwrap();
            let lo = *groups.keys().next().unwrap();
            weight = hi as i32;
            for w in (lo..=hi).rev() {
                digits.extend_from_slice(&(groups.get(&w).copied().unwrap_or(0) as u16).to_ne_bytes());
            }
        }
        Some(OwnedNum { neg: neg && !groups.is_empty(), weight, dscale, digits })
    }
}

/// A base-10000 accumulator of non-negative terms: `d[i]` is the digit of weight `lo + i`.
#[derive(Clone, Debug, Default)]
struct Acc {
    lo: i32,
    d: Vec<u32>,
}

impl Acc {
    fn add_digits(&mut self, weight: i32, digits: impl Iterator<Item = u32> + Clone, n: usize) {
        if n == 0 {
            return;
        }
        let nlo = weight - (n as i32 - 1);
        if self.d.is_empty() {
            self.lo = nlo;
        }
        if nlo < self.lo {
            // Grow downwards by at least the current length: amortized linear.
            let grow = (self.lo - nlo).max(self.d.len() as i32) as usize;
            self.d.splice(0..0, std::iter::repeat_n(0, grow));
            self.lo -= grow as i32;
        }
        let top = (weight - self.lo) as usize;
        if self.d.len() <= top {
            self.d.resize(top + 1, 0);
        }
        for (k, dig) in digits.enumerate() {
            self.d[top - k] += dig;
        }
        let mut i = (nlo - self.lo) as usize;
        let mut carry = 0;
        while i < self.d.len() && (i <= top || carry > 0) {
            let v = self.d[i] + carry;
            self.d[i] = v % NBASE;
            carry = v / NBASE;
            i += 1;
        }
        if carry > 0 {
            self.d.push(carry);
        }
    }

    fn add_u128(&mut self, mut v: u128, lo: i32) {
        let mut ds = Vec::new();
        while v > 0 {
            ds.push((v % u128::from(NBASE)) as u32);
            v /= u128::from(NBASE);
        }
        let n = ds.len();
        self.add_digits(lo + n as i32 - 1, ds.into_iter().rev(), n);
    }

    fn digit_at(&self, w: i32) -> u32 {
        let i = w - self.lo;
        if i < 0 {
            0
        } else {
            self.d.get(i as usize).copied().unwrap_or(0)
        }
    }

    fn hi(&self) -> i32 {
        self.lo + self.d.len() as i32 - 1
    }
}

/// `a - b` for two accumulators: (negative?, magnitude).
fn sub(a: &Acc, b: &Acc) -> (bool, Acc) {
    let lo = a.lo.min(b.lo);
    let hi = a.hi().max(b.hi());
    let mut ord = Ordering::Equal;
    let mut w = hi;
    while w >= lo {
        ord = a.digit_at(w).cmp(&b.digit_at(w));
        if ord != Ordering::Equal {
            break;
        }
        w -= 1;
    }
    let (x, y, neg) = if ord == Ordering::Less { (b, a, true) } else { (a, b, false) };
    let mut out = Acc { lo, d: Vec::with_capacity((hi - lo + 1).max(0) as usize) };
    let mut borrow = 0i64;
    for w in lo..=hi {
        let mut v = i64::from(x.digit_at(w)) - i64::from(y.digit_at(w)) - borrow;
        borrow = 0;
        if v < 0 {
            v += i64::from(NBASE);
            borrow = 1;
        }
        out.d.push(v as u32);
    }
    (neg, out)
}

/// Compares a magnitude with `bound` (given as base-10000 digits, most significant first, the
/// first of weight `bw`).
fn cmp_mag(a: &Acc, bw: i32, bound: &[u32]) -> Ordering {
    let blo = bw - bound.len() as i32 + 1;
    let lo = a.lo.min(blo);
    let hi = a.hi().max(bw);
    for w in (lo..=hi).rev() {
        let bd = if w <= bw && w >= blo { bound[(bw - w) as usize] } else { 0 };
        match a.digit_at(w).cmp(&bd) {
            Ordering::Equal => continue,
            o => return o,
        }
    }
    Ordering::Equal
}

/// Where an exact sum lies, for the distribution rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SumClass {
    /// Within 1 ± 1e-6 (valid).
    One,
    /// Within 100 ± 1e-4: weights written as percentages.
    Hundred,
    Other,
}

/// An exact sum of numerics (see the module comment).
#[derive(Clone, Debug, Default)]
pub struct Sum {
    fixed: i128,
    big_pos: Acc,
    big_neg: Acc,
    big: bool,
    /// The largest display scale of the terms: the scale of the sum, as numeric_add gives it.
    pub dscale: u32,
    pub terms: u32,
}

impl Sum {
    pub fn new() -> Sum {
        Sum::default()
    }

    #[inline]
    pub fn add(&mut self, n: &Num) {
        self.dscale = self.dscale.max(n.dscale);
        self.terms += 1;
        let nd = n.ndigits();
        if nd == 0 {
            return;
        }
        let lo = n.weight - (nd as i32 - 1);
        if n.weight <= FIXED_HI && lo >= FIXED_LO {
            let mut v: i128 = 0;
            for ch in n.digits.chunks_exact(2) {
                v = v * i128::from(NBASE) + i128::from(u16::from_ne_bytes([ch[0], ch[1]]));
            }
            // v is in units of 10000^lo; bring it to 10000^FIXED_LO.
            for _ in FIXED_LO..lo {
                v *= i128::from(NBASE);
            }
            if n.neg {
                self.fixed -= v;
            } else {
                self.fixed += v;
            }
            return;
        }
        self.big = true;
        let acc = if n.neg { &mut self.big_neg } else { &mut self.big_pos };
        acc.add_digits(n.weight, (0..nd).map(|i| n.digit(i)), nd);
    }

    /// The exact value as (negative?, magnitude).
    fn exact(&self) -> (bool, Acc) {
        let mut pos = self.big_pos.clone();
        let mut neg = self.big_neg.clone();
        if self.fixed >= 0 {
            pos.add_u128(self.fixed as u128, FIXED_LO);
        } else {
            neg.add_u128(self.fixed.unsigned_abs(), FIXED_LO);
        }
        sub(&pos, &neg)
    }

    pub fn class(&self) -> SumClass {
        if !self.big {
            let tol1 = FIXED_ONE / 1_000_000; // 1e-6
            if (self.fixed - FIXED_ONE).abs() <= tol1 {
                return SumClass::One;
            }
            if (self.fixed - 100 * FIXED_ONE).abs() <= 100 * tol1 {
                return SumClass::Hundred;
            }
            return SumClass::Other;
        }
        let (neg, mag) = self.exact();
        if neg {
            return SumClass::Other;
        }
        // 0.999999 <= s <= 1.000001; 99.9999 <= s <= 100.0001
        let within = |lo_w: i32, lo: &[u32], hi_w: i32, hi: &[u32]| {
            cmp_mag(&mag, lo_w, lo) != Ordering::Less && cmp_mag(&mag, hi_w, hi) != Ordering::Greater
        };
        if within(-1, &[9999, 9900], 0, &[1, 0, 100]) {
            SumClass::One
        } else if within(0, &[99, 9999], 0, &[100, 1]) {
            SumClass::Hundred
        } else {
            SumClass::Other
        }
    }

    /// Is the sum at most `bound` (a whole number below 10000) and not negative?
    pub fn at_most(&self, bound: u32) -> bool {
        let (neg, mag) = self.exact();
        !neg && cmp_mag(&mag, 0, &[bound]) != Ordering::Greater
    }

    /// Is the sum above `bound` (a whole number below 10000)? Not `!at_most(bound)`: a
    /// negative sum is not at most `bound` and not above it either. Allocates nothing when
    /// every term went to the fixed-point accumulator.
    pub fn exceeds(&self, bound: u32) -> bool {
        debug_assert!(bound < NBASE);
        if !self.big {
            return self.fixed > i128::from(bound) * FIXED_ONE;
        }
        let (neg, mag) = self.exact();
        !neg && cmp_mag(&mag, 0, &[bound]) == Ordering::Greater
    }

    /// The sum as numeric_out prints it (scale = the largest scale of the terms).
    pub fn to_decimal_string(&self) -> String {
        let (neg, mag) = self.exact();
        let mut s = String::new();
        let is_zero = mag.d.iter().all(|&d| d == 0);
        if neg && !is_zero {
            s.push('-');
        }
        let hi = mag.hi().max(0);
        let mut started = false;
        for w in (0..=hi).rev() {
            let d = mag.digit_at(w);
            if started {
                let _ = write!(s, "{d:04}");
            } else if d != 0 || w == 0 {
                let _ = write!(s, "{d}");
                started = true;
            }
        }
        if self.dscale > 0 {
            s.push('.');
            let mut left = self.dscale as usize;
            let mut w = -1;
            while left > 0 {
                let grp = format!("{:04}", mag.digit_at(w));
                let take = left.min(4);
                s.push_str(&grp[..take]);
                left -= take;
                w -= 1;
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(xs: &[&str]) -> Sum {
        let mut s = Sum::new();
        let owned: Vec<_> = xs.iter().map(|x| OwnedNum::parse(x).unwrap()).collect();
        for o in &owned {
            s.add(&o.as_num());
        }
        s
    }

    #[test]
    fn exact_sums() {
        assert_eq!(sum(&["0.1", "0.2", "0.7"]).class(), SumClass::One);
        assert_eq!(sum(&["0.1", "0.2", "0.7"]).to_decimal_string(), "1.0");
        assert_eq!(sum(&["0.25", "0.5"]).to_decimal_string(), "0.75");
        assert_eq!(sum(&["0.50", "0.5"]).to_decimal_string(), "1.00");
        assert_eq!(sum(&["0.9999995"]).class(), SumClass::One);
        assert_eq!(sum(&["0.999999"]).class(), SumClass::One);
        assert_eq!(sum(&["0.9999989"]).class(), SumClass::Other);
        assert_eq!(sum(&["1.000001"]).class(), SumClass::One);
        assert_eq!(sum(&["1.0000011"]).class(), SumClass::Other);
        assert_eq!(sum(&["50", "50"]).class(), SumClass::Hundred);
        assert_eq!(sum(&["33.3333", "33.3333", "33.3334"]).class(), SumClass::Hundred);
        assert_eq!(sum(&["0.999"]).to_decimal_string(), "0.999");
        assert_eq!(sum(&["1e308"]).class(), SumClass::Other);
        assert!(sum(&["1e308"]).to_decimal_string().starts_with("1000000"));
        assert_eq!(sum(&["1e308"]).to_decimal_string().len(), 309);
        assert_eq!(sum(&["1e308", "-1e308", "1"]).class(), SumClass::One);
        assert_eq!(sum(&["0.00000000000000000001", "0.99999999999999999999"]).class(), SumClass::One);
        assert_eq!(sum(&["0.00000000000000000001", "0.99999999999999999999"]).to_decimal_string(), "1.00000000000000000000");
        assert_eq!(sum(&["-0.5", "1.5"]).to_decimal_string(), "1.0");
        assert_eq!(sum(&["-0", "1"]).class(), SumClass::One);
        assert_eq!(sum(&[]).to_decimal_string(), "0");
        assert_eq!(sum(&["-2"]).to_decimal_string(), "-2");
    }

    #[test]
    fn exceeds_is_above_and_not_negative() {
        for (xs, bound, above) in [
            (&["-0.5", "-0.5"][..], 1, false),
            (&["-2"][..], 1, false),
            (&[][..], 1, false),
            (&["1"][..], 1, false),
            (&["0.5", "0.5000"][..], 1, false),
            (&["0.5", "0.500001"][..], 1, true),
            (&["0.5", "0.5000000000000001"][..], 1, true),
            // the big accumulator: 17+ decimals, huge terms
            (&["0.5", "0.50000000000000000001"][..], 1, true),
            (&["0.5", "0.49999999999999999999"][..], 1, false),
            (&["1e40", "-1e40", "1"][..], 1, false),
            (&["1e40", "-1e40", "1.0001"][..], 1, true),
            (&["-1e40", "1"][..], 1, false),
            (&["1e40"][..], 100, true),
            (&["100"][..], 100, false),
            (&["100.0001"][..], 100, true),
        ] {
            let s = sum(xs);
            assert_eq!(s.exceeds(bound), above, "{xs:?} > {bound}");
            // the complement of at_most, except for negative sums
            let negative = s.to_decimal_string().starts_with('-');
            assert_eq!(s.exceeds(bound), !negative && !s.at_most(bound), "{xs:?}");
        }
    }

    #[test]
    fn ranges() {
        let p = |s: &str| OwnedNum::parse(s).unwrap();
        assert!(p("0").as_num().in_unit_range());
        assert!(p("-0").as_num().in_unit_range());
        assert!(p("-0.0").as_num().in_unit_range());
        assert!(p("1").as_num().in_unit_range());
        assert!(p("1.000").as_num().in_unit_range());
        assert!(p("0.5").as_num().in_unit_range());
        assert!(!p("1.0001").as_num().in_unit_range());
        assert!(!p("-0.1").as_num().in_unit_range());
        assert!(!p("1e308").as_num().in_unit_range());
        assert!(p("1e-308").as_num().in_unit_range());
        assert!(!p("10000").as_num().in_unit_range());
        assert!(!p("10001").as_num().in_unit_range());
        assert_eq!(p("1e308").as_num().cmp_one(), Ordering::Greater);
    }

    proptest::proptest! {
        /// The fixed-point path and the big path agree, and both agree with an i128 reference
        /// over numbers with up to 12 decimals.
        #[test]
        fn fixed_matches_reference(xs in proptest::collection::vec((-2_000_000_000_000i64..2_000_000_000_000, 0u32..13), 0..40)) {
            let strs: Vec<String> = xs.iter().map(|&(v, sc)| {
                let neg = v < 0;
                let m = v.unsigned_abs().to_string();
                let sc = sc as usize;
                let m = format!("{m:0>width$}", width = sc + 1);
                let (i, f) = m.split_at(m.len() - sc);
                format!("{}{}{}{}", if neg { "-" } else { "" }, i, if sc > 0 { "." } else { "" }, f)
            }).collect();
            let refs: Vec<&str> = strs.iter().map(|s| s.as_str()).collect();
            let s = sum(&refs);
            // reference in units of 1e-12
            let total: i128 = xs.iter().map(|&(v, sc)| i128::from(v) * 10i128.pow(12 - sc)).sum();
            let expect = if (total - 1_000_000_000_000).abs() <= 1_000_000 { SumClass::One }
                else if (total - 100_000_000_000_000).abs() <= 100_000_000 { SumClass::Hundred } else { SumClass::Other };
            proptest::prop_assert_eq!(s.class(), expect);
            // force the big path with a huge term and its negation
            let mut b = refs.clone();
            b.push("1e40");
            b.push("-1e40");
            let sb = sum(&b);
            proptest::prop_assert_eq!(sb.class(), expect);
            let dscale = xs.iter().map(|x| x.1).max().unwrap_or(0);
            let neg = total < 0;
            let m = total.unsigned_abs();
            let ip = m / 1_000_000_000_000;
            let fp = format!("{:012}", m % 1_000_000_000_000);
            let mut want = format!("{}{}", if neg { "-" } else { "" }, ip);
            if dscale > 0 { want.push('.'); want.push_str(&fp[..dscale as usize]); }
            proptest::prop_assert_eq!(s.to_decimal_string(), want.clone());
            proptest::prop_assert_eq!(sb.to_decimal_string(), want);
        }
    }
}
