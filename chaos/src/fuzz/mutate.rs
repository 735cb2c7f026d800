//! Inputs for the fuzz targets: arbitrary bytes, and valid encodings
//! mutated the ways a damaged disk or a hostile peer changes bytes.

use crate::rng::Rng;

/// Integers a decoder's edge cases hide behind.
const EDGES: [u64; 12] = [
    0,
    1,
    2,
    127,
    128,
    255,
    256,
    u16::MAX as u64,
    u32::MAX as u64,
    (u32::MAX as u64) + 1,
    u64::MAX - 1,
    u64::MAX,
];

/// Up to `max` arbitrary bytes.
pub fn bytes(rng: &mut Rng, max: usize) -> Vec<u8> {
    let len = match rng.below(4) {
        0 => rng.below(9) as usize,
        _ => rng.below(max as u64 + 1) as usize,
    };
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// An integer, often an edge one.
pub fn int(rng: &mut Rng) -> u64 {
    match rng.below(3) {
        0 => EDGES[rng.below(EDGES.len() as u64) as usize],
        1 => rng.below(1_000),
        _ => rng.next_u64(),
    }
}

/// A string, sometimes empty, long, or with control characters.
pub fn text(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => String::new(),
        1 => "x".repeat(rng.below(600) as usize),
        2 => String::from_utf8_lossy(&bytes(rng, 40)).into_owned(),
        _ => format!("n{}", rng.below(50)),
    }
}

/// `seed` changed by 1 to 4 mutations: bit flips, byte sets, integer
/// overwrites, truncation, insertion, deletion, duplication, splicing
/// with `other`.
pub fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.range(1, 4) {
        let at = |rng: &mut Rng, v: &[u8]| rng.below(v.len() as u64 + 1) as usize;
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len() as u64) as usize;
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len() as u64) as usize;
                v[i] = EDGES[rng.below(EDGES.len() as u64) as usize] as u8;
            }
            2 if v.len() >= 8 => {
                let i = rng.below(v.len() as u64 - 7) as usize;
                v[i..i + 8].copy_from_slice(&int(rng).to_le_bytes());
            }
            3 => {
                let i = at(rng, &v);
                v.truncate(i);
            }
            4 => {
                let i = at(rng, &v);
                let extra = bytes(rng, 16);
                v.splice(i..i, extra);
            }
            5 if !v.is_empty() => {
                let i = rng.below(v.len() as u64) as usize;
                let n = (rng.below(16) as usize).min(v.len() - i);
                v.drain(i..i + n);
            }
            6 if !v.is_empty() => {
                let i = rng.below(v.len() as u64) as usize;
                let n = (rng.below(32) as usize + 1).min(v.len() - i);
                let dup = v[i..i + n].to_vec();
                v.splice(i..i, dup);
            }
            _ if !other.is_empty() => {
                // The head of one valid input on the tail of another.
                let i = at(rng, &v);
                let j = rng.below(other.len() as u64) as usize;
                v.truncate(i);
                v.extend_from_slice(&other[j..]);
            }
            _ => {}
        }
    }
    v
}

/// An input for a target with these valid `seeds`: a quarter arbitrary
/// bytes, the rest a mutated seed (an unchanged one now and then).
pub fn input(rng: &mut Rng, seeds: &[Vec<u8>], max: usize) -> Vec<u8> {
    if seeds.is_empty() || rng.below(4) == 0 {
        return bytes(rng, max);
    }
    let seed = &seeds[rng.below(seeds.len() as u64) as usize];
    if rng.below(20) == 0 {
        return seed.clone();
    }
    let other = &seeds[rng.below(seeds.len() as u64) as usize];
    mutate(rng, seed, other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_change_the_seed() {
        let seed: Vec<u8> = (0..64).collect();
        let a: Vec<Vec<u8>> = {
            let mut r = Rng::new(7);
            (0..100).map(|_| mutate(&mut r, &seed, &seed)).collect()
        };
        let b: Vec<Vec<u8>> = {
            let mut r = Rng::new(7);
            (0..100).map(|_| mutate(&mut r, &seed, &seed)).collect()
        };
        assert_eq!(a, b, "same seed, same inputs");
        let changed = a.iter().filter(|m| **m != seed).count();
        assert!(
            changed >= 90,
            "only {changed} of 100 mutations changed anything"
        );
    }
}
