//! The hash maps of the hot in-memory state (the stream engine's windows and batch sales, the
//! reference-id sets every record is checked against), with `foldhash`'s fast hasher instead
//! of the standard library's SipHash: several times cheaper on the short string keys these
//! maps hold.
//!
//! Invariant: only keys that passed validation against the reference data (enterprise and
//! product ids, batch numbers of known products, business days) or the reference data itself
//! are hashed with it, so an outside party cannot pick keys that collide on purpose; maps keyed
//! by raw message content keep the standard hasher. The seed is fixed, so iteration order is
//! the same from run to run (nothing depends on it, but a replay is easier to compare).

use std::collections::{HashMap, HashSet};

/// The hasher's builder: `foldhash`'s fast hasher with a fixed seed.
pub type FastState = foldhash::fast::FixedState;
/// A `HashMap` with [`FastState`].
pub type FastMap<K, V> = HashMap<K, V, FastState>;
/// A `HashSet` with [`FastState`].
pub type FastSet<K> = HashSet<K, FastState>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_do_not_collide_and_maps_work() {
        let mut set: FastSet<String> = FastSet::default();
        for i in 0..100_000u64 {
            assert!(set.insert(format!("91150100{i:010}")));
        }
        assert_eq!(set.len(), 100_000);
        let mut map: FastMap<(String, u32), u32> = FastMap::default();
        map.insert(("a".into(), 1), 2);
        assert_eq!(map.get(&("a".to_string(), 1)), Some(&2));
    }
}
