//! A direct-mapped memo from short labels to one byte: the trigger's per-value question ("is this
//! label canonical, and which stage does it name?") answered with a hash and one compare.
//!
//! A label of up to [`KEY_MAX`] bytes is read as at most three words (the first and last eight
//! bytes, and the middle eight for labels over 16; overlapping, as [`crate::bytes::same`] reads
//! them). The words identify the label given its length, so a slot holds the words instead of the
//! bytes: the hit test compares words already loaded for the hash (measured in the trigger's walk,
//! #31: about 25 instructions against 55 for a byte compare with a separate index of canonical
//! names).

/// Slots: a column of stages holds few distinct spellings.
pub const SLOTS: usize = 256;
/// The longest label the memo holds; longer ones are classified every time.
pub const KEY_MAX: usize = 24;

/// One slot: 32 bytes.
#[derive(Clone, Copy)]
struct Entry {
    head: u64,
    mid: u64,
    tail: u64,
    /// The label's length + 1; 0 for an empty slot.
    len: u8,
    value: u8,
}

impl Entry {
    const EMPTY: Entry = Entry { head: 0, mid: 0, tail: 0, len: 0, value: 0 };
}

/// A label read as words, and its slot.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    head: u64,
    mid: u64,
    tail: u64,
    len: u8,
    slot: u8,
}

#[inline(always)]
fn r8(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[inline(always)]
fn r4(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()))
}

impl Key {
    /// The key of `b`; None when it is longer than [`KEY_MAX`].
    #[inline(always)]
    pub fn of(b: &[u8]) -> Option<Key> {
        let n = b.len();
        // Every byte of `b` is in one of the words, for its length: equal words and lengths
        // mean equal labels.
        let (head, mid, tail) = match n {
            17..=KEY_MAX => (r8(b, 0), r8(b, 8), r8(b, n - 8)),
            8..=16 => (r8(b, 0), 0, r8(b, n - 8)),
            4..=7 => (r4(b, 0) | r4(b, n - 4) << 32, 0, 0),
            1..=3 => (u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16, 0, 0),
            0 => (0, 0, 0),
            _ => return None,
        };
        // The slot from the first and last words and the length (the middle word, of labels
        // over 16 bytes only, is compared but not hashed).
        let h = (head ^ tail.rotate_left(29) ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Some(Key { head, mid, tail, len: n as u8 + 1, slot: (h >> 56) as u8 })
    }
}

/// The memo: [`SLOTS`] slots, each holding one label's words and its value; a new label takes
/// its slot from whichever label held it.
pub struct Memo {
    slots: [Entry; SLOTS],
}

impl Memo {
    pub const EMPTY: Memo = Memo { slots: [Entry::EMPTY; SLOTS] };

    /// The value stored for the label of `k`, if it holds its slot.
    #[inline(always)]
    pub fn get(&self, k: &Key) -> Option<u8> {
        let e = &self.slots[usize::from(k.slot)];
        // One branch: the four compares folded together.
        let differ = u64::from(e.len ^ k.len) | (e.head ^ k.head) | (e.tail ^ k.tail) | (e.mid ^ k.mid);
        (differ == 0).then_some(e.value)
    }

    /// Stores `value` for the label of `k`, in its slot.
    #[inline]
    pub fn insert(&mut self, k: &Key, value: u8) {
        self.slots[usize::from(k.slot)] = Entry { head: k.head, mid: k.mid, tail: k.tail, len: k.len, value };
    }

    pub fn clear(&mut self) {
        self.slots = [Entry::EMPTY; SLOTS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }

    #[test]
    fn longer_labels_have_no_key() {
        assert!(Key::of(&[b'a'; KEY_MAX]).is_some());
        assert!(Key::of(&[b'a'; KEY_MAX + 1]).is_none());
    }

    /// Labels that differ in one byte, or in length only, never answer for each other, at every
    /// length and position.
    #[test]
    fn distinct_labels_never_hit_each_other() {
        for n in 0..=KEY_MAX {
            let a: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            let mut m = Memo::EMPTY;
            let ka = Key::of(&a).unwrap();
            assert_eq!(m.get(&ka), None, "n = {n}: an empty memo holds nothing");
            m.insert(&ka, 9);
            assert_eq!(m.get(&Key::of(&a.clone()).unwrap()), Some(9), "n = {n}");
            for at in 0..n {
                for bit in [0x01u8, 0x20, 0x80] {
                    let mut b = a.clone();
                    b[at] ^= bit;
                    let kb = Key::of(&b).unwrap();
                    assert_eq!(m.get(&kb), None, "n = {n}, byte {at} ^ {bit:#x}");
                }
            }
            if n < KEY_MAX {
                let mut longer = a.clone();
                longer.push(0);
                assert_eq!(m.get(&Key::of(&longer).unwrap()), None, "n = {n} + a NUL byte");
            }
            if n > 0 {
                assert_eq!(m.get(&Key::of(&a[..n - 1]).unwrap()), None, "n = {n} - 1");
            }
        }
    }

    /// Two labels in one slot: the later one takes it, and the earlier one is a miss again.
    #[test]
    fn a_slot_holds_the_latest_label() {
        let labels: Vec<String> = (0..2000).map(|i| format!("label-{i}")).collect();
        let (a, b) = (0..labels.len())
            .flat_map(|i| (i + 1..labels.len()).map(move |j| (i, j)))
            .find(|&(i, j)| Key::of(labels[i].as_bytes()).unwrap().slot == Key::of(labels[j].as_bytes()).unwrap().slot)
            .expect("2000 labels share a slot somewhere");
        let (ka, kb) = (Key::of(labels[a].as_bytes()).unwrap(), Key::of(labels[b].as_bytes()).unwrap());
        let mut m = Memo::EMPTY;
        m.insert(&ka, 1);
        assert_eq!(m.get(&kb), None);
        m.insert(&kb, 2);
        assert_eq!((m.get(&ka), m.get(&kb)), (None, Some(2)));
        m.clear();
        assert_eq!(m.get(&kb), None);
    }

    /// The stage labels of the default set and their common spellings spread over the slots
    /// (a few collisions are fine; all in one slot would not be).
    #[test]
    fn labels_spread_over_slots() {
        let labels = [
            "pre-seed", "seed", "series-a", "series-b", "series-c", "series-d", "series-e", "series-c+", "Series A ", "pre_seed",
            "seriesB", "Series D", "Seed Round", "PRE-SEED", "Series C Plus", "series b2", "Series A-2 Round", "series-c+",
            "Series E", "seed round", "Pre Seed", "SERIES B", "series a", "Series C+",
        ];
        let slots: std::collections::HashSet<u8> = labels.iter().map(|l| Key::of(l.as_bytes()).unwrap().slot).collect();
        assert!(slots.len() >= labels.len() - 4, "{} slots for {} labels", slots.len(), labels.len());
    }
}
