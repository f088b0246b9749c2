//! slim-transport: an embedded SLIM v1.3 transport.
//!
//! Layers, bottom up: [`name`] (SLIM names and their hashes), [`wire`] (the
//! v1.3 protobuf schema), [`identity`] (shared-secret tokens). The forwarder,
//! sessions and MLS build on these.

pub mod app;
pub mod codec3;
pub mod config;
pub mod forwarder;
pub mod grpc;
pub mod identity;
pub mod mls;
pub mod name;
pub mod service;
pub mod session;
pub mod wire;
pub mod wire3;

pub use name::Name;
