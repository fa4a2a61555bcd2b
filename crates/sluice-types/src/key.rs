//! Keys, their stable hash, and key groups.
//!
//! Keyed state is split into a fixed number of key groups (the maximum parallelism,
//! 128 by default, as in Flink). A key always hashes to the same group, and a group is
//! owned by exactly one worker; restoring with another parallelism reassigns whole
//! groups. The hash is fixed (not randomly seeded) so that routing and output are the
//! same in every run and every process.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};

/// The default number of key groups, the upper bound of a job's parallelism.
pub const DEFAULT_MAX_PARALLELISM: u16 = 128;

/// What a type needs to be a key: hashable for routing, ordered so timers fire in a
/// deterministic order, cloneable into state, and serializable into checkpoints.
pub trait Key: Hash + Eq + Ord + Clone + Debug + Send + Sync + Serialize + DeserializeOwned + 'static {}
impl<T: Hash + Eq + Ord + Clone + Debug + Send + Sync + Serialize + DeserializeOwned + 'static> Key for T {}

/// What a type needs to be kept in state (values, accumulators, buffered records): it
/// is copied, moved between threads and written into checkpoints. Derive `Serialize`
/// and `Deserialize` (serde) on your types, as Flink asks for serializable types.
pub trait Data: Clone + Send + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Serialize + DeserializeOwned + 'static> Data for T {}

/// One of the `max_parallelism` slices of the key space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyGroup(pub u16);

/// A stable 64-bit hash of a key, identical across runs, processes, platforms and
/// versions of Sluice's dependencies: key groups, and so which worker restores which
/// state, are derived from it and written into checkpoints.
///
/// It is Sluice's own [`Hasher`] (not a crate's, whose algorithm may change between
/// versions) fed by the key's `Hash` implementation; `usize` and `isize` are hashed as
/// 64-bit numbers so that 32- and 64-bit platforms agree. Restores check every key's
/// group again, so a changed `Hash` implementation is an error, not misplaced state.
pub fn hash_key<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut hasher = StableHasher::default();
    key.hash(&mut hasher);
    hasher.finish()
}

/// The hasher behind [`hash_key`]: per 64-bit word, a rotate, xor and multiply (the
/// FxHash construction, cheap for the small keys of stream jobs), finished with a
/// murmur3 mix so that the low bits, which pick key groups, are spread even for small
/// integers. Its output is fixed: the tests pin it.
#[derive(Default)]
struct StableHasher {
    state: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl StableHasher {
    #[inline]
    fn word(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for StableHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.word(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(word));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.word(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.word(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.word(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.word(i);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.word(i as u64);
        self.word((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.word(i as u64);
    }
    #[inline]
    fn write_isize(&mut self, i: isize) {
        self.word(i as i64 as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.state;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        h
    }
}

/// The key group a hash falls in.
pub fn key_group_for_hash(hash: u64, max_parallelism: u16) -> KeyGroup {
    KeyGroup((hash % u64::from(max_parallelism.max(1))) as u16)
}

/// The worker that owns a key group: contiguous ranges of groups per worker, as in
/// Flink, so rescaling moves whole ranges.
pub fn worker_for_key_group(group: KeyGroup, max_parallelism: u16, parallelism: usize) -> usize {
    usize::from(group.0) * parallelism / usize::from(max_parallelism.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checkpoints store state by key group: these values must never change.
    #[test]
    fn hashes_are_pinned() {
        let actual = [
            hash_key(&42u64),
            hash_key(&42usize),
            hash_key("card-17"),
            hash_key(&(7u32, "x".to_string())),
            hash_key(&-1i64),
            hash_key(&vec![1u8, 2, 3, 4, 5, 6, 7, 8, 9]),
        ];
        assert_eq!(actual, PINNED, "a hash changed: restored state would go to the wrong workers");
        // Widths agree: a usize hashes as the same number in 64 bits.
        assert_eq!(hash_key(&42usize), hash_key(&42u64));
    }

    const PINNED: [u64; 6] = [
        2_690_997_780_454_943_606,
        2_690_997_780_454_943_606,
        14_325_175_870_244_477_688,
        11_164_820_999_776_447_867,
        10_590_618_499_855_609_741,
        18_405_054_699_571_369_755,
    ];

    #[test]
    fn hash_is_stable_across_runs() {
        assert_eq!(hash_key(&42u64), hash_key(&42u64));
        assert_ne!(hash_key(&1u64), hash_key(&2u64));
    }

    #[test]
    fn key_groups_cover_every_worker() {
        for parallelism in 1..=8 {
            let mut seen = vec![false; parallelism];
            for group in 0..DEFAULT_MAX_PARALLELISM {
                let worker = worker_for_key_group(KeyGroup(group), DEFAULT_MAX_PARALLELISM, parallelism);
                seen[worker] = true;
            }
            assert!(seen.iter().all(|s| *s), "parallelism {parallelism}: {seen:?}");
        }
    }

    #[test]
    fn small_integer_keys_spread_over_groups() {
        let mut counts = vec![0usize; 4];
        for key in 0u64..4000 {
            let group = key_group_for_hash(hash_key(&key), DEFAULT_MAX_PARALLELISM);
            counts[worker_for_key_group(group, DEFAULT_MAX_PARALLELISM, 4)] += 1;
        }
        assert!(counts.iter().all(|c| *c > 800), "{counts:?}");
    }
}
