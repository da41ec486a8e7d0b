//! Hashing and comparing short byte strings (tool names, counter names, grants) in a few
//! instructions, for the lookups of every call: the tool's rule and the counter to charge.
//!
//! A string of up to 16 bytes is read as two words (overlapping reads), with no call and no
//! loop; the words are mixed with a folded multiply (the construction of `foldhash`, which
//! `hashbrown` uses by default) under random seeds, so that hashes cannot be predicted from
//! outside the process. Longer strings go through `foldhash` itself.

use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;

/// Random seeds for [`folded_multiply`] mixing, and `foldhash` for strings over 16 bytes.
#[derive(Clone)]
pub(crate) struct Seeds {
    pub(crate) k: [u64; 4],
    long: DefaultHashBuilder,
}

impl Seeds {
    /// Fresh random seeds.
    pub(crate) fn new() -> Self {
        let long = DefaultHashBuilder::default();
        // Drawn from the random state; odd, so that no multiply by a seed loses bits.
        let k = [0u64, 1, 2, 3].map(|i| long.hash_one(i) | 1);
        Seeds { k, long }
    }

    /// Mixes the string `s` into `acc` under the seed `k`.
    #[inline(always)]
    pub(crate) fn mix(&self, acc: u64, s: &[u8], k: u64) -> u64 {
        match words(s) {
            Some((lo, hi)) => folded_multiply(lo ^ acc, hi ^ k),
            None => self.mix_long(acc, s, k),
        }
    }

    #[cold]
    #[inline(never)]
    fn mix_long(&self, acc: u64, s: &[u8], k: u64) -> u64 {
        folded_multiply(self.long.hash_one(s) ^ acc, k)
    }
}

/// The high and low halves of the full product, XORed: every input bit reaches the middle.
#[inline(always)]
pub(crate) fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    #[allow(clippy::cast_possible_truncation)]
    let (lo, hi) = (p as u64, (p >> 64) as u64);
    lo ^ hi
}

/// A string of up to 16 bytes as two words (overlapping reads, as [`eq_short`] compares);
/// `None` for a longer one. Strings of different lengths may give the same words: callers mix
/// the length in.
#[inline(always)]
pub(crate) fn words(s: &[u8]) -> Option<(u64, u64)> {
    let w8 = |c: Option<&[u8; 8]>| c.map_or(0, |b| u64::from_le_bytes(*b));
    let w4 = |c: Option<&[u8; 4]>| c.map_or(0, |b| u64::from(u32::from_le_bytes(*b)));
    let b = |c: Option<&u8>| c.map_or(0, |b| u64::from(*b));
    Some(match s.len() {
        0 => (0, 0),
        n @ 1..=3 => (b(s.first()) | b(s.get(n / 2)) << 8 | b(s.last()) << 16, 0),
        4..=7 => (w4(s.first_chunk::<4>()), w4(s.last_chunk::<4>())),
        8..=16 => (w8(s.first_chunk::<8>()), w8(s.last_chunk::<8>())),
        _ => return None,
    })
}

/// `a == b`, without a call to `memcmp` for strings of up to 16 bytes: two overlapping word
/// loads (or three byte loads) compare them.
#[inline(always)]
pub(crate) fn eq_short(a: &[u8], b: &[u8]) -> bool {
    fn words<const N: usize>(s: &[u8]) -> Option<([u8; N], [u8; N])> {
        Some((*s.first_chunk::<N>()?, *s.last_chunk::<N>()?))
    }
    match a.len() {
        n if n != b.len() => false,
        0 => true,
        n @ 1..=3 => a.first() == b.first() && a.get(n / 2) == b.get(n / 2) && a.last() == b.last(),
        4..=7 => words::<4>(a) == words::<4>(b),
        8..=16 => words::<8>(a) == words::<8>(b),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_short_is_slice_equality() {
        for n in 0..=24u8 {
            let a: Vec<u8> = (0..n).collect();
            assert!(eq_short(&a, &a.clone()), "length {n}");
            for i in 0..usize::from(n) {
                let mut b = a.clone();
                b[i] ^= 0x80;
                assert!(!eq_short(&a, &b), "length {n}, byte {i} differs");
            }
            let longer: Vec<u8> = (0..=n).collect();
            assert!(!eq_short(&a, &longer), "lengths {n} and {}", n + 1);
        }
    }

    #[test]
    fn words_read_every_byte_of_a_short_string() {
        let seeds = Seeds::new();
        for n in 1..=24u8 {
            let a: Vec<u8> = (1..=n).collect();
            let h = seeds.mix(seeds.k[0] ^ u64::from(n), &a, seeds.k[1]);
            for i in 0..usize::from(n) {
                let mut b = a.clone();
                b[i] ^= 0x40;
                let hb = seeds.mix(seeds.k[0] ^ u64::from(n), &b, seeds.k[1]);
                assert_ne!(h, hb, "length {n}, byte {i} changed, same hash");
            }
        }
    }
}
