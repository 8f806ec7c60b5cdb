//! Positions of keys a list holds: a lookup table of positions only, each key read from its
//! list when compared. The resolver finds its tasks by id so (the ids in its plan), and the
//! queue-manager (the ids in its task records): no second copy of every id as a map key.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

/// The position of each key of a list that the caller keeps; every call is given the list
/// as `key_at` (the key at a position, `None` past the end).
#[derive(Debug, Default)]
pub struct Positions {
    table: HashTable<u32>,
    hasher: RandomState,
}

impl Positions {
    /// An empty table.
    pub fn new() -> Positions {
        Positions::default()
    }

    /// A table of the keys `0..len` of a list (a key met again names its last position).
    pub fn of<'a>(len: usize, key_at: impl Fn(usize) -> Option<&'a str>) -> Positions {
        let mut positions = Positions {
            table: HashTable::with_capacity(len),
            hasher: RandomState::new(),
        };
        for at in 0..len {
            if let Some(key) = key_at(at) {
                positions.insert(key, at, &key_at);
            }
        }
        positions
    }

    /// Records `key` at position `at` (a key already recorded moves there).
    pub fn insert<'a>(&mut self, key: &str, at: usize, key_at: impl Fn(usize) -> Option<&'a str>) {
        let position = u32::try_from(at).unwrap_or(u32::MAX);
        let hash = self.hasher.hash_one(key);
        match self
            .table
            .find_mut(hash, |&p| key_at(p as usize) == Some(key))
        {
            Some(known) => *known = position,
            None => {
                let hasher = &self.hasher;
                self.table.insert_unique(hash, position, |&p| {
                    key_at(p as usize).map_or(0, |k| hasher.hash_one(k))
                });
            }
        }
    }

    /// The position of `key`.
    pub fn get<'a>(&self, key: &str, key_at: impl Fn(usize) -> Option<&'a str>) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        self.table
            .find(hash, |&p| key_at(p as usize) == Some(key))
            .map(|&p| p as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_key_and_moves_one_met_again() {
        let mut keys: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
        let mut positions = Positions::of(keys.len(), |i| keys.get(i).map(String::as_str));
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(
                positions.get(key, |p| keys.get(p).map(String::as_str)),
                Some(i)
            );
        }
        assert_eq!(
            positions.get("nowhere", |p| keys.get(p).map(String::as_str)),
            None
        );
        keys.push("t5".into());
        positions.insert("t5", 1000, |p| keys.get(p).map(String::as_str));
        assert_eq!(
            positions.get("t5", |p| keys.get(p).map(String::as_str)),
            Some(1000)
        );
        keys.push("new".into());
        positions.insert("new", 1001, |p| keys.get(p).map(String::as_str));
        assert_eq!(
            positions.get("new", |p| keys.get(p).map(String::as_str)),
            Some(1001)
        );
    }
}
