//! The subscription table (SLIM §b.4): which connections subscribed which
//! names, with reference counts per `(connection, subscription_id)`, and the
//! matching rules `match_one` (fanout 1) and `match_all` (any other fanout).
//!
//! Plain synchronous data: no I/O, no clock. The random choice SLIM makes is
//! injected through [`Pick`] so tests are deterministic. This module must not
//! know about links, acks or messages.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::errors::ConnId;
use crate::name::NameKey;

/// Chooses an index in `0..n` (`n >= 1`); SLIM uses a uniform random pick.
pub trait Pick: Send {
    fn pick(&mut self, n: usize) -> usize;
}

/// The production picker: uniform random.
#[derive(Debug, Default)]
pub struct RandomPick;

impl Pick for RandomPick {
    fn pick(&mut self, n: usize) -> usize {
        use rand::Rng;
        rand::rng().random_range(0..n.max(1))
    }
}

/// The v3 picker: a cursor that moves on at every pick (round robin).
#[derive(Debug, Default)]
pub struct RoundRobin(usize);

impl Pick for RoundRobin {
    fn pick(&mut self, n: usize) -> usize {
        let i = self.0 % n.max(1);
        self.0 = self.0.wrapping_add(1);
        i
    }
}

impl<F: FnMut(usize) -> usize + Send> Pick for F {
    fn pick(&mut self, n: usize) -> usize {
        self(n) % n.max(1)
    }
}

/// Errors of table updates (the text goes into `SubscriptionAck.error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("subscription id not found: {0}")]
    SubscriptionIdNotFound(u64),
    #[error("id not found: {0}")]
    IdNotFound(u128),
    #[error("subscription not found")]
    SubscriptionNotFound,
}

/// Connection class: local (in-process app) or remote (gRPC).
const LOCAL: usize = 0;
const REMOTE: usize = 1;

#[derive(Debug, Default)]
struct Prefix {
    /// instance id -> per class: connection -> subscription ids.
    ids: HashMap<u128, [BTreeMap<ConnId, BTreeSet<u64>>; 2]>,
    /// per class: connection -> number of (id, subscription id) pairs.
    conns: [BTreeMap<ConnId, usize>; 2],
}

/// Names are matched on the first three components, then the instance id.
#[derive(Debug, Default)]
pub struct SubscriptionTable {
    prefixes: HashMap<[u64; 3], Prefix>,
    /// Reverse map used when a connection goes away.
    by_conn: HashMap<ConnId, BTreeSet<NameKey>>,
    /// v3 rule: a specific id matches only that id. v1 (false) still uses
    /// the single subscriber of a prefix for an unknown id.
    exact_ids: bool,
}

fn class(is_local: bool) -> usize {
    if is_local { LOCAL } else { REMOTE }
}

fn split(name: NameKey) -> ([u64; 3], u128) {
    (name.prefix, name.id)
}

impl SubscriptionTable {
    /// A table with the v3 matching rule: an unknown specific id matches
    /// nothing (v1 falls back to the prefix's single subscriber).
    pub fn exact_ids() -> Self {
        Self {
            exact_ids: true,
            ..Self::default()
        }
    }

    /// Adds `conn` as a subscriber of `name` under `subscription_id`.
    /// Returns false when this exact subscription already existed (a
    /// re-subscribe with the same id is idempotent).
    pub fn add(
        &mut self,
        name: NameKey,
        conn: ConnId,
        is_local: bool,
        subscription_id: u64,
    ) -> bool {
        let (prefix, id) = split(name);
        let c = class(is_local);
        let p = self.prefixes.entry(prefix).or_default();
        let refs = p.ids.entry(id).or_default();
        let new = refs[c].entry(conn).or_default().insert(subscription_id);
        if new {
            *p.conns[c].entry(conn).or_default() += 1;
            self.by_conn.entry(conn).or_default().insert(name);
        }
        new
    }

    /// Removes one `(conn, subscription_id)` reference to `name`. The id must
    /// be the one used when subscribing (0 when none was given).
    pub fn remove(
        &mut self,
        name: NameKey,
        conn: ConnId,
        is_local: bool,
        subscription_id: u64,
    ) -> Result<(), TableError> {
        let (prefix, id) = split(name);
        let c = class(is_local);
        let p = self
            .prefixes
            .get_mut(&prefix)
            .ok_or(TableError::SubscriptionNotFound)?;
        let refs = p.ids.get_mut(&id).ok_or(TableError::IdNotFound(id))?;
        let set = refs[c]
            .get_mut(&conn)
            .ok_or(TableError::SubscriptionIdNotFound(subscription_id))?;
        if !set.remove(&subscription_id) {
            return Err(TableError::SubscriptionIdNotFound(subscription_id));
        }
        let conn_gone = set.is_empty();
        if conn_gone {
            refs[c].remove(&conn);
        }
        if refs[LOCAL].is_empty() && refs[REMOTE].is_empty() {
            p.ids.remove(&id);
        }
        if let Some(n) = p.conns[c].get_mut(&conn) {
            *n -= 1;
            if *n == 0 {
                p.conns[c].remove(&conn);
            }
        }
        if p.ids.is_empty() {
            self.prefixes.remove(&prefix);
        }
        if conn_gone && let Some(names) = self.by_conn.get_mut(&conn) {
            names.remove(&name);
            if names.is_empty() {
                self.by_conn.remove(&conn);
            }
        }
        Ok(())
    }

    /// Drops every subscription of `conn`; returns the names it held.
    pub fn remove_connection(&mut self, conn: ConnId) -> Vec<NameKey> {
        let names: Vec<NameKey> = self
            .by_conn
            .remove(&conn)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        for name in &names {
            let (prefix, id) = split(*name);
            let Some(p) = self.prefixes.get_mut(&prefix) else {
                continue;
            };
            if let Some(refs) = p.ids.get_mut(&id) {
                for r in refs.iter_mut() {
                    r.remove(&conn);
                }
                if refs[LOCAL].is_empty() && refs[REMOTE].is_empty() {
                    p.ids.remove(&id);
                }
            }
            for c in p.conns.iter_mut() {
                c.remove(&conn);
            }
            if p.ids.is_empty() {
                self.prefixes.remove(&prefix);
            }
        }
        names
    }

    /// Every connection holding a subscription to exactly `name`.
    pub fn holders(&self, name: NameKey) -> Vec<ConnId> {
        let (prefix, id) = split(name);
        self.prefixes
            .get(&prefix)
            .and_then(|p| p.ids.get(&id))
            .map(|refs| {
                refs[LOCAL]
                    .keys()
                    .chain(refs[REMOTE].keys())
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The names `conn` subscribed.
    pub fn names_of(&self, conn: ConnId) -> Vec<NameKey> {
        self.by_conn
            .get(&conn)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Fanout 1: one connection, local ones first, never `incoming`.
    pub fn match_one(
        &self,
        name: NameKey,
        incoming: ConnId,
        pick: &mut dyn Pick,
    ) -> Option<ConnId> {
        let (prefix, id) = split(name);
        let p = self.prefixes.get(&prefix)?;
        for c in [LOCAL, REMOTE] {
            if let Some(conn) = Self::one_in_class(p, c, id, self.exact_ids, incoming, pick) {
                return Some(conn);
            }
        }
        None
    }

    fn one_in_class(
        p: &Prefix,
        c: usize,
        id: u128,
        exact_ids: bool,
        incoming: ConnId,
        pick: &mut dyn Pick,
    ) -> Option<ConnId> {
        let candidates: Vec<ConnId> = if id == crate::name::NULL_ID128 {
            // Anycast: any connection under the prefix.
            p.conns[c].keys().copied().collect()
        } else {
            match p.ids.get(&id) {
                Some(refs) => refs[c].keys().copied().collect(),
                // Unknown instance, but a single subscriber of this class
                // under the prefix: SLIM still uses it.
                None if !exact_ids && p.conns[c].len() == 1 => p.conns[c].keys().copied().collect(),
                None => Vec::new(),
            }
        };
        let usable: Vec<ConnId> = candidates.into_iter().filter(|&x| x != incoming).collect();
        match usable.len() {
            0 => None,
            1 => Some(usable[0]),
            n => Some(usable[pick.pick(n)]),
        }
    }

    /// Any other fanout: every matching connection except `incoming`
    /// (local ones first, each at most once).
    pub fn match_all(&self, name: NameKey, incoming: ConnId) -> Vec<ConnId> {
        let (prefix, id) = split(name);
        let Some(p) = self.prefixes.get(&prefix) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for c in [LOCAL, REMOTE] {
            if id == crate::name::NULL_ID128 {
                out.extend(p.conns[c].keys().copied().filter(|&x| x != incoming));
            } else if let Some(refs) = p.ids.get(&id) {
                out.extend(refs[c].keys().copied().filter(|&x| x != incoming));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::NULL_ID;

    const A: [u64; 3] = [1, 2, 3];
    fn n(id: u64) -> NameKey {
        NameKey::from_v1([A[0], A[1], A[2], id])
    }
    fn first() -> impl FnMut(usize) -> usize + Send {
        |_| 0
    }
    fn last() -> impl FnMut(usize) -> usize + Send {
        |n| n - 1
    }

    #[test]
    fn match_one_prefers_local_connections_over_remote() {
        let mut t = SubscriptionTable::default();
        t.add(n(7), 10, false, 0);
        t.add(n(7), 11, true, 0);
        assert_eq!(t.match_one(n(7), 99, &mut first()), Some(11));
        assert_eq!(t.match_one(n(NULL_ID), 99, &mut first()), Some(11));
    }

    #[test]
    fn match_one_falls_back_to_remote_when_only_local_is_the_incoming() {
        let mut t = SubscriptionTable::default();
        t.add(n(7), 10, false, 0);
        t.add(n(7), 11, true, 0);
        assert_eq!(t.match_one(n(7), 11, &mut first()), Some(10));
    }

    #[test]
    fn match_one_anycast_picks_with_the_injected_choice_among_all_instances() {
        let mut t = SubscriptionTable::default();
        t.add(n(1), 10, false, 0);
        t.add(n(2), 11, false, 0);
        t.add(n(3), 12, false, 0);
        assert_eq!(t.match_one(n(NULL_ID), 99, &mut first()), Some(10));
        assert_eq!(t.match_one(n(NULL_ID), 99, &mut last()), Some(12));
        // The incoming connection is removed before picking.
        assert_eq!(t.match_one(n(NULL_ID), 12, &mut last()), Some(11));
    }

    #[test]
    fn match_one_specific_id_picks_only_among_that_ids_connections() {
        let mut t = SubscriptionTable::default();
        t.add(n(1), 10, false, 0);
        t.add(n(2), 11, false, 0);
        t.add(n(2), 12, false, 0);
        assert_eq!(t.match_one(n(2), 99, &mut first()), Some(11));
        assert_eq!(t.match_one(n(2), 99, &mut last()), Some(12));
        assert_eq!(t.match_one(n(1), 99, &mut last()), Some(10));
    }

    #[test]
    fn match_one_unknown_id_uses_the_single_connection_under_the_prefix() {
        let mut t = SubscriptionTable::default();
        t.add(n(1), 10, false, 0);
        assert_eq!(t.match_one(n(42), 99, &mut first()), Some(10));
        // ...but never when that single connection is the incoming one.
        assert_eq!(t.match_one(n(42), 10, &mut first()), None);
    }

    #[test]
    fn match_one_unknown_id_with_several_connections_matches_nothing() {
        let mut t = SubscriptionTable::default();
        t.add(n(1), 10, false, 0);
        t.add(n(2), 11, false, 0);
        assert_eq!(t.match_one(n(42), 99, &mut first()), None);
    }

    #[test]
    fn match_one_never_returns_the_incoming_connection() {
        let mut t = SubscriptionTable::default();
        t.add(n(1), 10, false, 0);
        assert_eq!(t.match_one(n(1), 10, &mut first()), None);
        assert_eq!(t.match_one(n(NULL_ID), 10, &mut first()), None);
    }

    #[test]
    fn match_one_unknown_prefix_matches_nothing() {
        let t = SubscriptionTable::default();
        assert_eq!(t.match_one([9, 9, 9, 1].into(), 0, &mut first()), None);
    }

    #[test]
    fn match_all_null_id_returns_every_connection_under_the_prefix_but_incoming() {
        let mut t = SubscriptionTable::default();
        t.add(n(1), 10, false, 0);
        t.add(n(2), 11, true, 0);
        t.add(n(NULL_ID), 12, false, 0);
        assert_eq!(t.match_all(n(NULL_ID), 99), vec![11, 10, 12]);
        assert_eq!(t.match_all(n(NULL_ID), 10), vec![11, 12]);
    }

    #[test]
    fn match_all_specific_id_returns_that_ids_connections_and_unknown_id_none() {
        let mut t = SubscriptionTable::default();
        t.add(n(1), 10, false, 0);
        t.add(n(1), 11, true, 0);
        t.add(n(2), 12, false, 0);
        assert_eq!(t.match_all(n(1), 99), vec![11, 10]);
        assert_eq!(t.match_all(n(1), 11), vec![10]);
        assert!(t.match_all(n(3), 99).is_empty());
    }

    #[test]
    fn resubscribe_with_same_id_is_idempotent_and_one_unsubscribe_removes_it() {
        let mut t = SubscriptionTable::default();
        assert!(t.add(n(1), 10, false, 5));
        assert!(!t.add(n(1), 10, false, 5));
        assert_eq!(t.remove(n(1), 10, false, 5), Ok(()));
        assert!(t.match_all(n(1), 99).is_empty());
        assert_eq!(
            t.remove(n(1), 10, false, 5),
            Err(TableError::SubscriptionNotFound)
        );
    }

    #[test]
    fn different_subscription_ids_are_counted_separately() {
        let mut t = SubscriptionTable::default();
        t.add(n(1), 10, false, 5);
        t.add(n(1), 10, false, 6);
        t.remove(n(1), 10, false, 5).unwrap();
        assert_eq!(t.match_all(n(1), 99), vec![10]);
        t.remove(n(1), 10, false, 6).unwrap();
        assert!(t.match_all(n(1), 99).is_empty());
        assert!(t.names_of(10).is_empty());
    }

    #[test]
    fn unsubscribe_with_another_id_fails_with_subscription_id_not_found() {
        let mut t = SubscriptionTable::default();
        t.add(n(1), 10, false, 5);
        let err = t.remove(n(1), 10, false, 6).unwrap_err();
        assert_eq!(err, TableError::SubscriptionIdNotFound(6));
        assert_eq!(err.to_string(), "subscription id not found: 6");
        // A subscription without an id lives under id 0.
        t.add(n(1), 11, false, 0);
        assert_eq!(t.remove(n(1), 11, false, 0), Ok(()));
        assert_eq!(t.match_all(n(1), 99), vec![10]);
    }

    #[test]
    fn removing_a_connection_drops_all_its_subscriptions_only() {
        let mut t = SubscriptionTable::default();
        t.add(n(1), 10, false, 1);
        t.add(n(2), 10, false, 2);
        t.add(n(2), 11, false, 0);
        let mut gone = t.remove_connection(10);
        gone.sort();
        assert_eq!(gone, vec![n(1), n(2)]);
        assert!(t.match_all(n(1), 99).is_empty());
        assert_eq!(t.match_all(n(2), 99), vec![11]);
        assert_eq!(t.match_one(n(NULL_ID), 99, &mut first()), Some(11));
        assert_eq!(t.holders(n(2)), vec![11]);
    }

    #[test]
    fn v3_table_matches_an_unknown_specific_id_to_nothing_even_with_one_subscriber() {
        let mut t = SubscriptionTable::exact_ids();
        let key = |id: u128| NameKey::new(A, id);
        t.add(key(7 << 64 | 1), 10, true, 0);
        assert_eq!(t.match_one(key(5), 99, &mut first()), None);
        assert!(t.match_all(key(5), 99).is_empty());
        assert_eq!(t.match_one(key(7 << 64 | 1), 99, &mut first()), Some(10));
        // NULL still reaches the subscriber registered with its own id.
        assert_eq!(t.match_one(key(u128::MAX), 99, &mut first()), Some(10));
    }

    #[test]
    fn v1_ids_map_into_128_bit_keys_and_back_losslessly() {
        for id in [0, 1, 0x873e_5803_76ea_963b, u64::MAX - 1, NULL_ID] {
            let k = NameKey::from_v1([1, 2, 3, id]);
            assert_eq!(k.v1_id(), Some(id));
        }
        assert!(NameKey::from_v1([1, 2, 3, NULL_ID]).is_null());
        assert_eq!(NameKey::new(A, 1 << 64).v1_id(), None);
    }
}
