//! A small seeded generator (xorshift64*) for the simulations: the multi-worker scheduler
//! (`sim`) and the simulated disk (`journal::disk`). Deterministic for a seed, so a failing
//! schedule or crash is replayed by its seed. Not for anything that needs unpredictability.

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // A zero state would stay zero.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
