//! Exact tool names to their rule: the lookup of step 2, on every call.

use hashbrown::HashTable;

use crate::fasthash::{Seeds, eq_short};

/// Exact `tools` keys to the index of their rule.
///
/// A `hashbrown` table hashed with [`Seeds::mix`]: a name of up to 16 bytes is hashed with two
/// word loads and one multiply and compared with two more loads, where a `HashMap<Box<str>, _>`
/// runs `foldhash` over the name and its terminator and calls `memcmp`. Seeded at random per
/// policy, as the default hasher is.
pub(crate) struct ExactIndex {
    table: HashTable<(Box<str>, usize)>,
    seeds: Seeds,
}

impl ExactIndex {
    /// An empty index with room for `n` names.
    pub(crate) fn with_capacity(n: usize) -> Self {
        ExactIndex { table: HashTable::with_capacity(n), seeds: Seeds::new() }
    }

    #[inline(always)]
    fn hash(&self, name: &[u8]) -> u64 {
        let [k0, k1, ..] = self.seeds.k;
        self.seeds.mix(k0 ^ name.len() as u64, name, k1)
    }

    /// Maps `name` to `index`, replacing an earlier index of the same name.
    pub(crate) fn insert(&mut self, name: &str, index: usize) {
        let hash = self.hash(name.as_bytes());
        match self.table.find_mut(hash, |(k, _)| **k == *name) {
            Some(entry) => entry.1 = index,
            None => {
                let seeds = &self.seeds;
                let rehash = |(k, _): &(Box<str>, usize)| {
                    let [k0, k1, ..] = seeds.k;
                    seeds.mix(k0 ^ k.len() as u64, k.as_bytes(), k1)
                };
                self.table.insert_unique(hash, (name.into(), index), rehash);
            }
        }
    }

    /// The index of `name`'s rule.
    #[inline]
    pub(crate) fn get(&self, name: &str) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let name = name.as_bytes();
        self.table.find(self.hash(name), |(k, _)| eq_short(k.as_bytes(), name)).map(|(_, i)| *i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_name_and_no_other() {
        let names: Vec<String> = (0..2000)
            .map(|i| match i % 4 {
                0 => format!("t{i}"),
                1 => format!("tool_{i:05}"),
                2 => format!("a_much_longer_tool_name_{i}"),
                _ => "x".repeat(i % 40 + 1) + &i.to_string(),
            })
            .collect();
        let mut index = ExactIndex::with_capacity(0);
        assert_eq!(index.get("t0"), None);
        for (i, n) in names.iter().enumerate() {
            index.insert(n, i);
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(index.get(n), Some(i), "{n}");
            let mut other = n.clone();
            other.push('_');
            assert_eq!(index.get(&other), None, "{other}");
            assert_eq!(
                index.get(&n[..n.len() - 1]).is_some(),
                names.contains(&n[..n.len() - 1].to_owned())
            );
        }
        assert_eq!(index.get(""), None);
        index.insert("t0", 7);
        assert_eq!(index.get("t0"), Some(7));
    }
}
