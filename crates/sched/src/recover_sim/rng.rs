//! The simulator's only source of randomness: a seeded SplitMix64, so a
//! run is a pure function of its configuration (same seed, same result on
//! every machine), and a stateless mix for hash-like choices (CRUSH).

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, good enough for
/// choosing racks and phases, and fully determined by its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// An independent stream for one purpose (placement, phases, a policy),
    /// so adding draws to one never shifts another's.
    pub fn stream(seed: u64, purpose: u64) -> Rng {
        Rng(mix(seed ^ mix(purpose.wrapping_add(0x5157_0000))))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (0 when `n` is 0), by multiply-shift: no modulo bias
    /// worth mentioning at these sizes and no rejection loop.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The SplitMix64 finaliser: a stateless 64-bit mix.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of two values (CRUSH-like straw draws: the same pair always
/// draws the same straw).
pub fn hash2(a: u64, b: u64) -> u64 {
    mix(mix(a).wrapping_add(b.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}
