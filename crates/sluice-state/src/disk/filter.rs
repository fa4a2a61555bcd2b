//! Which keys an operator instance's LSM tree may hold: a Bloom filter over every key
//! the write-back cache has written to it.
//!
//! Most lookups a stream job makes are of keys that have no state yet (an account's
//! first transaction, a window's first record) or whose state was deleted. Asked of
//! the tree, each costs searches of its memtables and a filter check per segment; asked
//! of this filter, one hash. The filter cannot forget a key, so deleted keys make it
//! fill up: when more keys were added than it was sized for, it is rebuilt from the
//! keys the tree holds, sized for twice as many. A rebuild reads the whole tree, so its
//! cost is paid for by the writes that filled the filter.

/// Bits per key: a false positive rate of about 1 %.
const BITS_PER_KEY: usize = 10;
/// Bit positions checked per key.
const PROBES: usize = 7;
/// The fewest keys a filter is sized for.
const MIN_KEYS: usize = 1 << 10;

/// A Bloom filter of keys, by their 64-bit hashes, sized for a number of keys.
pub(crate) struct KeyFilter {
    words: Vec<u64>,
    /// How many keys it is sized for.
    capacity: usize,
    /// How many keys were added since it was built.
    added: usize,
}

impl KeyFilter {
    /// An empty filter sized for `keys` keys.
    pub(crate) fn with_capacity(keys: usize) -> Self {
        let capacity = keys.max(MIN_KEYS);
        let words = (capacity * BITS_PER_KEY).div_ceil(64).next_power_of_two();
        KeyFilter { words: vec![0; words], capacity, added: 0 }
    }

    /// The bit positions of a key: double hashing over one 64-bit hash.
    fn probes(&self, hash: u64) -> [usize; PROBES] {
        let (mut position, step) = (hash as u32 as usize, ((hash >> 32) as usize) | 1);
        let mask = self.words.len() * 64 - 1;
        std::array::from_fn(|_| {
            let bit = position & mask;
            position = position.wrapping_add(step);
            bit
        })
    }

    pub(crate) fn add(&mut self, hash: u64) {
        for bit in self.probes(hash) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
        self.added += 1;
    }

    /// False if the key of this hash was certainly never added.
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        self.probes(hash).iter().all(|&bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// Whether more keys were added than it was sized for: time to rebuild it.
    pub(crate) fn full(&self) -> bool {
        self.added > self.capacity
    }

    /// What it holds in memory, in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.words.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::cache::hash_of;

    #[test]
    fn keys_added_are_always_found_and_few_others_are() {
        let mut filter = KeyFilter::with_capacity(10_000);
        for i in 0u32..10_000 {
            filter.add(hash_of(&i.to_be_bytes()));
        }
        assert!((0u32..10_000).all(|i| filter.may_contain(hash_of(&i.to_be_bytes()))));
        let false_positives = (10_000u32..110_000).filter(|i| filter.may_contain(hash_of(&i.to_be_bytes()))).count();
        assert!(false_positives < 3_000, "{false_positives} of 100 000 keys never added");
        assert!(!filter.full());
        for i in 10_000u32..26_385 {
            filter.add(hash_of(&i.to_be_bytes()));
        }
        assert!(filter.full(), "more keys than it was sized for");
    }
}
