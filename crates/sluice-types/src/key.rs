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

/// A stable 64-bit hash of a key, identical across runs and processes.
pub fn hash_key<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    key.hash(&mut hasher);
    // FxHash leaves low bits weak for small integers; finish with a murmur3 mix so key
    // groups spread evenly.
    let mut h = hasher.finish();
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
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
