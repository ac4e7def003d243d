//! Comparing and copying short byte strings without a call into libc: for labels (a stage name is
//! at most a few dozen bytes), `memcmp` and `memcpy` through the PLT cost more than the bytes
//! themselves (measured in the trigger's walk, #31). Lengths up to 24 take two or three word
//! loads, which may overlap; longer ones go to the standard library.

#[inline(always)]
fn w8(s: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(s[at..at + 8].try_into().unwrap())
}

#[inline(always)]
fn w4(s: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(s[at..at + 4].try_into().unwrap())
}

/// `a == b`, for two slices of the same length (false when the lengths differ).
#[inline(always)]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        17..=24 => w8(a, 0) == w8(b, 0) && w8(a, 8) == w8(b, 8) && w8(a, n - 8) == w8(b, n - 8),
        8..=16 => w8(a, 0) == w8(b, 0) && w8(a, n - 8) == w8(b, n - 8),
        4..=7 => w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4),
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        _ => a == b,
    }
}

/// Copies `src` to `dst` (`src.len()` bytes; the two may not overlap).
///
/// # Safety
/// `dst` is valid for `src.len()` bytes of writes and does not overlap `src`.
#[inline(always)]
pub unsafe fn copy(dst: *mut u8, src: &[u8]) {
    let n = src.len();
    let s = src.as_ptr();
    // Both words are read before either is written: overlapping words of one copy are fine.
    match n {
        8..=16 => {
            let (a, b) = (std::ptr::read_unaligned(s.cast::<u64>()), std::ptr::read_unaligned(s.add(n - 8).cast::<u64>()));
            std::ptr::write_unaligned(dst.cast::<u64>(), a);
            std::ptr::write_unaligned(dst.add(n - 8).cast::<u64>(), b);
        }
        4..=7 => {
            let (a, b) = (std::ptr::read_unaligned(s.cast::<u32>()), std::ptr::read_unaligned(s.add(n - 4).cast::<u32>()));
            std::ptr::write_unaligned(dst.cast::<u32>(), a);
            std::ptr::write_unaligned(dst.add(n - 4).cast::<u32>(), b);
        }
        0..=3 => {
            for i in 0..n {
                *dst.add(i) = *s.add(i);
            }
        }
        _ => std::ptr::copy_nonoverlapping(s, dst, n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_agrees_with_eq_at_every_length_and_position() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
            assert!(same(&a, &a.clone()), "n = {n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same(&a, &b), "n = {n}, differs at {at}");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!same(&a, &longer), "lengths {n} and {}", n + 1);
        }
    }

    #[test]
    fn copy_writes_exactly_the_bytes() {
        for n in 0..40usize {
            let src: Vec<u8> = (0..n).map(|i| (i * 13 + 1) as u8).collect();
            let mut dst = vec![0xEEu8; n + 16];
            unsafe { copy(dst.as_mut_ptr().add(8), &src) };
            assert_eq!(&dst[8..8 + n], &src[..], "n = {n}");
            assert!(dst[..8].iter().chain(&dst[8 + n..]).all(|&b| b == 0xEE), "n = {n}: nothing outside");
        }
    }
}
