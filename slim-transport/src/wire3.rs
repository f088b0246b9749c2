//! Wire types of the SLIM v3 data plane (official 2.x/3.x; same package
//! `dataplane.proto.v1` and gRPC path as v1, renumbered inside), generated
//! from `proto/v3/data_plane.proto`.
//!
//! This module only describes bytes on the wire; it never routes or decides.

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/v3/dataplane.proto.v1.rs"));

/// The version announced in v3 link negotiation and header `version`: the
/// official release whose wire we speak.
pub const SLIM_VERSION: &str = "3.4.6";

/// Hops a v3 message may take (the official default).
pub const DEFAULT_TTL: u32 = 8;
