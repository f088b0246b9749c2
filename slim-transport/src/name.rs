//! SLIM names: three string components plus a 64-bit instance id.
//!
//! The strings are hashed to `u64` exactly as SLIM v1.3 does (XXH64, seed 0,
//! over the UTF-8 bytes followed by one `0xFF` byte, which is what Rust's
//! `Hash for str` feeds a hasher), so names built here route on official nodes.
//! Equality and hashing use only the four `u64` components; the strings are
//! kept for display and for the wire's `StringName`.
//!
//! This module never touches the network; converting from the wire is
//! fallible because a peer may send a `Name` missing one of its parts.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use crate::wire;

/// Instance id meaning "no particular instance" (anycast / any match).
pub const NULL_ID: u64 = u64::MAX;

/// The NULL instance id of the v3 wire's 128-bit ids (all bits set).
pub const NULL_ID128: u128 = u128::MAX;

/// The routing key of a name in either wire generation: the three hashed
/// components and a 128-bit instance id.
///
/// v1 ids are 64 bits wide and map losslessly into this key: a specific id
/// `x` becomes `x` zero-extended, and the v1 NULL id (`u64::MAX`) becomes the
/// v3 NULL id (`u128::MAX`), so "anycast" means the same thing in both. The
/// inverse ([`NameKey::v1_id`]) is defined for every key built from a v1 name;
/// a v3 id above `u64::MAX - 1` has no v1 form, which never matters because
/// messages are only routed between connections of the same generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NameKey {
    pub prefix: [u64; 3],
    pub id: u128,
}

impl NameKey {
    /// A key from three components and a 128-bit id.
    pub fn new(prefix: [u64; 3], id: u128) -> Self {
        Self { prefix, id }
    }

    /// The key of a v1 name (`[c0, c1, c2, id]`).
    pub fn from_v1(c: [u64; 4]) -> Self {
        let id = if c[3] == NULL_ID {
            NULL_ID128
        } else {
            u128::from(c[3])
        };
        Self::new([c[0], c[1], c[2]], id)
    }

    /// The v1 id of this key, if it has one.
    pub fn v1_id(&self) -> Option<u64> {
        if self.id == NULL_ID128 {
            Some(NULL_ID)
        } else {
            u64::try_from(self.id).ok().filter(|x| *x != NULL_ID)
        }
    }

    /// True for the NULL (anycast) id.
    pub fn is_null(&self) -> bool {
        self.id == NULL_ID128
    }
}

impl From<[u64; 4]> for NameKey {
    fn from(c: [u64; 4]) -> Self {
        Self::from_v1(c)
    }
}

/// Hashes one string component the way SLIM v1.3 does.
pub fn hash_component(s: &str) -> u64 {
    let mut h = twox_hash::XxHash64::with_seed(0);
    h.write(s.as_bytes());
    h.write_u8(0xFF);
    h.finish()
}

/// v3 ids at or above `u128::MAX - 50` are reserved for the protocol.
const RESERVED_V3_IDS: u128 = 50;

/// The v3 instance id of an app whose verified identity (`sub`) is `sub`:
/// XXH3-128 (seed 0) of its UTF-8 bytes, folded out of the reserved range.
/// Peers recompute it from the `sub` of a verified token.
pub fn app_id_v3(sub: &str) -> u128 {
    let id = twox_hash::XxHash3_128::oneshot(sub.as_bytes());
    if id >= u128::MAX - RESERVED_V3_IDS {
        id % (u128::MAX - RESERVED_V3_IDS)
    } else {
        id
    }
}

/// The v3 data and control channel ids of group `org/ns/name` created by
/// the moderator whose `sub` is `sub`: XXH3-128 of
/// `"{sub}/{org}/{ns}/{name}/data"` and `".../control"` with seed 0, or the
/// next seed (up to 10) while the two collide. `None` when every seed
/// collides.
pub fn channel_ids_v3(sub: &str, org: &str, ns: &str, name: &str) -> Option<(u128, u128)> {
    let data = format!("{sub}/{org}/{ns}/{name}/data");
    let control = format!("{sub}/{org}/{ns}/{name}/control");
    let fold = |id: u128| {
        if id >= u128::MAX - RESERVED_V3_IDS {
            id % (u128::MAX - RESERVED_V3_IDS - 1) + 1
        } else {
            id
        }
    };
    (0..=10u64).find_map(|seed| {
        let d = fold(twox_hash::XxHash3_128::oneshot_with_seed(
            seed,
            data.as_bytes(),
        ));
        let c = fold(twox_hash::XxHash3_128::oneshot_with_seed(
            seed,
            control.as_bytes(),
        ));
        (d != c).then_some((d, c))
    })
}

/// Errors from parsing or decoding a [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name `{0}` must have 3 or 4 `/`-separated components")]
    Components(String),
    #[error("name component {index} of `{name}` is empty")]
    EmptyComponent { name: String, index: usize },
    #[error("instance id `{0}` is not a hexadecimal u64")]
    BadId(String),
    #[error("wire name has no encoded part")]
    MissingEncoded,
    #[error("wire name has no string part")]
    MissingStrings,
}

/// A SLIM name: `org/namespace/service` plus an instance id.
///
/// The strings are shared: a clone (names are cloned into every packet,
/// route and member list) copies four integers and bumps one count.
#[derive(Clone)]
pub struct Name {
    components: [u64; 4],
    strings: Arc<[String; 3]>,
}

impl Name {
    /// A name from its three string components, with the NULL instance id.
    pub fn new(org: impl Into<String>, ns: impl Into<String>, svc: impl Into<String>) -> Self {
        let strings = [org.into(), ns.into(), svc.into()];
        let components = [
            hash_component(&strings[0]),
            hash_component(&strings[1]),
            hash_component(&strings[2]),
            NULL_ID,
        ];
        Self {
            components,
            strings: Arc::new(strings),
        }
    }

    /// The same name with instance id `id`.
    pub fn with_id(&self, id: u64) -> Self {
        let mut n = self.clone();
        n.components[3] = id;
        n
    }

    /// The same name with the NULL instance id.
    pub fn without_id(&self) -> Self {
        self.with_id(NULL_ID)
    }

    /// The instance id (component 3).
    pub fn id(&self) -> u64 {
        self.components[3]
    }

    /// True when the instance id is NULL (`u64::MAX`).
    pub fn has_null_id(&self) -> bool {
        self.components[3] == NULL_ID
    }

    /// The four encoded components.
    pub fn components(&self) -> [u64; 4] {
        self.components
    }

    /// The three string components (display only; not used for matching).
    pub fn strings(&self) -> &[String; 3] {
        &self.strings
    }

    /// The first three components: the key routing tables use.
    pub fn prefix(&self) -> [u64; 3] {
        [self.components[0], self.components[1], self.components[2]]
    }

    /// Converts to the wire form, always carrying both sub-messages.
    pub fn to_wire(&self) -> wire::Name {
        wire::Name {
            name: Some(wire::EncodedName {
                component_0: self.components[0],
                component_1: self.components[1],
                component_2: self.components[2],
                component_3: self.components[3],
            }),
            str_name: Some(wire::StringName {
                str_component_0: self.strings[0].clone(),
                str_component_1: self.strings[1].clone(),
                str_component_2: self.strings[2].clone(),
            }),
        }
    }

    /// Converts from the wire form; both sub-messages must be present.
    pub fn from_wire(n: &wire::Name) -> Result<Self, NameError> {
        Self::try_from(n.clone())
    }
}

impl TryFrom<wire::Name> for Name {
    type Error = NameError;
    /// As [`Name::from_wire`], taking the strings over instead of copying.
    fn try_from(n: wire::Name) -> Result<Self, NameError> {
        let e = n.name.ok_or(NameError::MissingEncoded)?;
        let s = n.str_name.ok_or(NameError::MissingStrings)?;
        Ok(Self {
            components: [e.component_0, e.component_1, e.component_2, e.component_3],
            strings: Arc::new([s.str_component_0, s.str_component_1, s.str_component_2]),
        })
    }
}

impl From<&Name> for NameKey {
    fn from(n: &Name) -> Self {
        NameKey::from_v1(n.components)
    }
}

impl From<&Name> for wire::Name {
    fn from(n: &Name) -> Self {
        n.to_wire()
    }
}

impl TryFrom<&wire::Name> for Name {
    type Error = NameError;
    fn try_from(n: &wire::Name) -> Result<Self, NameError> {
        Name::from_wire(n)
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.components == other.components
    }
}

impl Eq for Name {}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.components.hash(state);
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.components.cmp(&other.components)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{:x}",
            self.strings[0], self.strings[1], self.strings[2], self.components[3]
        )
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Name {
    type Err = NameError;

    /// Parses `org/ns/svc` (NULL id) or `org/ns/svc/<hex id>`.
    fn from_str(s: &str) -> Result<Self, NameError> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(3..=4).contains(&parts.len()) {
            return Err(NameError::Components(s.to_string()));
        }
        for (index, p) in parts.iter().enumerate() {
            if p.is_empty() {
                return Err(NameError::EmptyComponent {
                    name: s.to_string(),
                    index,
                });
            }
        }
        let name = Name::new(parts[0], parts[1], parts[2]);
        match parts.get(3) {
            None => Ok(name),
            Some(id) => u64::from_str_radix(id, 16)
                .map(|id| name.with_id(id))
                .map_err(|_| NameError::BadId((*id).to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_app_id_is_xxh3_128_of_the_subject() {
        // The upstream test vector.
        assert_eq!(
            app_id_v3("did:key:z6Mkfvtar6ATQYC5jXqVLBjCH8R6AUAuKjta6LsFcG4gUND1"),
            0x48b1da600caab75fa73e4fe334bf1482
        );
    }

    #[test]
    fn v3_channel_ids_differ_and_depend_on_the_moderator() {
        let (d, c) = channel_ids_v3("org/ns/mod_abc", "org", "ns", "chan").unwrap();
        assert_ne!(d, c);
        let (d2, _) = channel_ids_v3("org/ns/other_xyz", "org", "ns", "chan").unwrap();
        assert_ne!(d, d2);
    }

    #[test]
    fn component_hash_matches_slim_v1_3_vectors() {
        let vectors = [
            ("org", 0x873e580376ea963b_u64),
            ("default", 0x219303c7c93f9668),
            ("app", 0x86cb542776a5f6d5),
            ("agntcy", 0x169ca82eb17d6bc2),
            ("ns", 0xeef9769a4c6990d1),
            ("", 0x95634172a60b7544),
        ];
        for (s, want) in vectors {
            assert_eq!(hash_component(s), want, "hash of {s:?}");
        }
    }

    #[test]
    fn component_hash_includes_the_trailing_ff_byte() {
        // Hashing the bare bytes gives the value SLIM does NOT use.
        let bare = twox_hash::XxHash64::oneshot(0, b"org");
        assert_eq!(bare, 0xc38126cd35e92b15);
        assert_ne!(hash_component("org"), bare);
    }

    #[test]
    fn new_name_has_null_id_and_displays_it_in_hex() {
        let n = Name::new("org", "ns", "app");
        assert!(n.has_null_id());
        assert_eq!(n.to_string(), "org/ns/app/ffffffffffffffff");
        assert_eq!(n.with_id(0x2a).to_string(), "org/ns/app/2a");
    }

    #[test]
    fn parse_round_trips_display() {
        let n: Name = "agntcy/grpc/server/1f".parse().unwrap();
        assert_eq!(n.id(), 0x1f);
        assert_eq!(n.to_string().parse::<Name>().unwrap(), n);
        let anycast: Name = "agntcy/grpc/server".parse().unwrap();
        assert!(anycast.has_null_id());
    }

    #[test]
    fn parse_rejects_malformed_names() {
        assert!(matches!(
            "a/b".parse::<Name>(),
            Err(NameError::Components(_))
        ));
        assert!(matches!(
            "a/b/c/d/e".parse::<Name>(),
            Err(NameError::Components(_))
        ));
        assert!(matches!(
            "a//c".parse::<Name>(),
            Err(NameError::EmptyComponent { .. })
        ));
        assert!(matches!(
            "a/b/c/zz".parse::<Name>(),
            Err(NameError::BadId(_))
        ));
    }

    #[test]
    fn equality_ignores_strings_and_uses_components() {
        let a = Name::new("org", "ns", "app").with_id(7);
        let mut w = a.to_wire();
        w.str_name.as_mut().unwrap().str_component_2 = "other".into();
        let b = Name::from_wire(&w).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, a.with_id(8));
    }

    #[test]
    fn wire_round_trip_carries_both_parts() {
        let a = Name::new("org", "ns", "app").with_id(99);
        let w = a.to_wire();
        assert!(w.name.is_some() && w.str_name.is_some());
        assert_eq!(Name::from_wire(&w).unwrap(), a);
        let owned = Name::try_from(w).unwrap();
        assert_eq!(owned, a);
        assert_eq!(owned.to_string(), a.to_string());
    }

    #[test]
    fn clones_share_the_strings_and_keep_their_own_id() {
        let a = Name::new("org", "ns", "app");
        let b = a.with_id(5);
        assert!(std::ptr::eq(a.strings(), b.strings()));
        assert_eq!((a.id(), b.id()), (NULL_ID, 5));
        assert_eq!(b.to_string(), "org/ns/app/5");
    }

    #[test]
    fn wire_name_missing_a_part_is_an_error() {
        let mut w = Name::new("o", "n", "s").to_wire();
        w.str_name = None;
        assert_eq!(Name::from_wire(&w), Err(NameError::MissingStrings));
        assert_eq!(Name::try_from(w), Err(NameError::MissingStrings));
        w = Name::new("o", "n", "s").to_wire();
        w.name = None;
        assert_eq!(Name::from_wire(&w), Err(NameError::MissingEncoded));
        assert_eq!(Name::try_from(w), Err(NameError::MissingEncoded));
    }
}
