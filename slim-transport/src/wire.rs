//! Wire types of the SLIM v1.3 data plane (`dataplane.proto.v1`), generated
//! from `proto/data_plane.proto`, plus small helpers to build and read them.
//!
//! This module only describes bytes on the wire; it never routes or decides.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("dataplane.proto.v1");

/// The version string this implementation announces in link negotiation.
pub const SLIM_VERSION: &str = "1.3.0";
