//! Who holds each entry the forwarder shares between connections.
//!
//! The subscription table, and a peer node for the subscriptions we forward
//! to it, keep an entry once per `(name, connection, subscription id)`.
//! Several connections can ask for the same entry: two local apps routing
//! one channel to the same link (`recv_from`), or forwarding its
//! subscription on that link (`forward_to`), with id 0. This module records,
//! per entry, which connections asked for it, so the forwarder withdraws the
//! entry only when the last of them releases it or goes away.
//!
//! Plain synchronous data: it decides, the forwarder acts. It must not know
//! about messages, the table or links.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::errors::ConnId;
use crate::name::NameKey;

/// A shared entry: (name, connection it is on, subscription id).
pub type HoldKey = (NameKey, ConnId, u64);

/// What releasing one hold left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release<V> {
    /// The holder was the last one: the entry must be withdrawn.
    Last(V),
    /// Other connections still hold the entry: leave it alone.
    Shared,
    /// The connection did not hold the entry; `others` says whether some
    /// other connection does.
    NotHeld { others: bool },
}

/// Holders of shared entries, each holder with a value (what it asked for).
#[derive(Debug)]
pub struct Holds<V> {
    entries: HashMap<HoldKey, BTreeMap<ConnId, V>>,
    /// Reverse map: the entries each connection holds.
    by_holder: HashMap<ConnId, BTreeSet<HoldKey>>,
}

impl<V> Default for Holds<V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            by_holder: HashMap::new(),
        }
    }
}

impl<V> Holds<V> {
    /// `holder` asks for `key` (again: idempotent, the value is replaced).
    /// Returns true when it is the first holder.
    pub fn hold(&mut self, key: HoldKey, holder: ConnId, value: V) -> bool {
        let holders = self.entries.entry(key).or_default();
        let first = holders.is_empty();
        holders.insert(holder, value);
        self.by_holder.entry(holder).or_default().insert(key);
        first
    }

    /// `holder` no longer asks for `key`.
    pub fn release(&mut self, key: HoldKey, holder: ConnId) -> Release<V> {
        let Some(holders) = self.entries.get_mut(&key) else {
            return Release::NotHeld { others: false };
        };
        let Some(value) = holders.remove(&holder) else {
            return Release::NotHeld { others: true };
        };
        let last = holders.is_empty();
        if last {
            self.entries.remove(&key);
        }
        self.forget(holder, &key);
        if last {
            Release::Last(value)
        } else {
            Release::Shared
        }
    }

    /// The number of connections holding `key`.
    pub fn holders(&self, key: HoldKey) -> usize {
        self.entries.get(&key).map_or(0, BTreeMap::len)
    }

    /// Forgets every entry on `conn` (it went away, and its entries with it).
    pub fn drop_entries_on(&mut self, conn: ConnId) {
        let keys: Vec<HoldKey> = self
            .entries
            .keys()
            .filter(|(_, on, _)| *on == conn)
            .copied()
            .collect();
        for key in keys {
            if let Some(holders) = self.entries.remove(&key) {
                for holder in holders.keys() {
                    self.forget(*holder, &key);
                }
            }
        }
    }

    /// Releases every hold of `holder` (it went away). Returns each entry
    /// it held, the value it held it with, and whether it was the last
    /// holder (the entry must then be withdrawn).
    pub fn release_all(&mut self, holder: ConnId) -> Vec<(HoldKey, V, bool)> {
        let keys = self.by_holder.remove(&holder).unwrap_or_default();
        let mut out = Vec::new();
        for key in keys {
            let Some(holders) = self.entries.get_mut(&key) else {
                continue;
            };
            let Some(value) = holders.remove(&holder) else {
                continue;
            };
            let last = holders.is_empty();
            if last {
                self.entries.remove(&key);
            }
            out.push((key, value, last));
        }
        out
    }

    fn forget(&mut self, holder: ConnId, key: &HoldKey) {
        if let Some(keys) = self.by_holder.get_mut(&holder) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_holder.remove(&holder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: NameKey = NameKey {
        prefix: [1, 2, 3],
        id: 4,
    };

    #[test]
    fn entry_is_withdrawn_only_when_its_last_holder_releases_it() {
        let mut h = Holds::default();
        assert!(h.hold((N, 9, 0), 1, "a"));
        assert!(!h.hold((N, 9, 0), 2, "b"));
        // Holding again is idempotent.
        assert!(!h.hold((N, 9, 0), 2, "b"));
        assert_eq!(h.holders((N, 9, 0)), 2);
        assert_eq!(h.release((N, 9, 0), 1), Release::Shared);
        assert_eq!(h.release((N, 9, 0), 1), Release::NotHeld { others: true });
        assert_eq!(h.release((N, 9, 0), 2), Release::Last("b"));
        assert_eq!(h.release((N, 9, 0), 2), Release::NotHeld { others: false });
        assert!(h.entries.is_empty() && h.by_holder.is_empty());
    }

    #[test]
    fn entries_with_another_connection_or_id_are_held_apart() {
        let mut h = Holds::default();
        assert!(h.hold((N, 9, 0), 1, ()));
        assert!(h.hold((N, 8, 0), 2, ()));
        assert!(h.hold((N, 9, 5), 2, ()));
        assert_eq!(h.release((N, 9, 0), 1), Release::Last(()));
        assert_eq!(h.holders((N, 8, 0)), 1);
        assert_eq!(h.holders((N, 9, 5)), 1);
    }

    #[test]
    fn a_holder_going_away_releases_all_its_holds_and_reports_the_last_ones() {
        let mut h = Holds::default();
        h.hold((N, 9, 0), 1, "shared");
        h.hold((N, 9, 0), 2, "other");
        h.hold(([5; 4].into(), 9, 0), 1, "alone");
        let mut gone = h.release_all(1);
        gone.sort();
        assert_eq!(
            gone,
            vec![
                ((N, 9, 0), "shared", false),
                (([5; 4].into(), 9, 0), "alone", true)
            ]
        );
        assert_eq!(h.release((N, 9, 0), 2), Release::Last("other"));
        assert!(h.release_all(1).is_empty());
    }

    #[test]
    fn entries_on_a_connection_that_went_away_are_forgotten_for_every_holder() {
        let mut h = Holds::default();
        h.hold((N, 9, 0), 1, ());
        h.hold((N, 9, 0), 2, ());
        h.hold((N, 8, 0), 2, ());
        h.drop_entries_on(9);
        assert_eq!(h.holders((N, 9, 0)), 0);
        assert!(h.release_all(1).is_empty());
        assert_eq!(h.release_all(2), vec![((N, 8, 0), (), true)]);
        assert!(h.entries.is_empty() && h.by_holder.is_empty());
    }
}
