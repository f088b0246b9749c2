//! The two published layouts of the SlimRPC Go runtime the stubs can target (`runtime=`).
//!
//! * `v3` (default): everything in `github.com/agntcy/slim-bindings-go/v3/slim_rpc`
//!   (UniFFI types and the hand-written stream/context helpers), as targeted by the official
//!   plugin 3.x.
//! * `v1`: the layout that pairs with slim-bindings 1.3 (Python) — UniFFI types in the root
//!   package `slim_bindings` (`github.com/agntcy/slim-bindings-go`), helpers in
//!   `github.com/agntcy/slim-bindings-go/slimrpc`, whose server-streaming send interface is
//!   called `RequestStream[T]` instead of `ServerStream[T]`.
//!
//! Only names live here; the code shape is the same for both layouts.

use crate::error::GoError;

/// A runtime layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Runtime {
    /// `github.com/agntcy/slim-bindings-go/v3/slim_rpc`.
    #[default]
    V3,
    /// `github.com/agntcy/slim-bindings-go` (`slim_bindings`) + `.../slimrpc`.
    V1,
}

/// A Go package the stubs import, with the name it is imported under when free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimePackage {
    /// Import path.
    pub path: &'static str,
    /// Preferred import name (the package's own name).
    pub name: &'static str,
}

impl Runtime {
    /// Parses `runtime=`.
    pub fn parse(value: &str) -> Result<Self, GoError> {
        match value {
            "v3" => Ok(Runtime::V3),
            "v1" => Ok(Runtime::V1),
            other => Err(GoError::UnknownRuntime(other.to_string())),
        }
    }

    /// The package with the UniFFI types (`ChannelInterface`, `ServerInterface`, `Context`,
    /// `ResponseSink`, `RequestStream`, `RpcError`, `NewRpcErrorRpc`, `RpcCode*`).
    pub fn uniffi(self) -> RuntimePackage {
        match self {
            Runtime::V3 => RuntimePackage {
                path: "github.com/agntcy/slim-bindings-go/v3/slim_rpc",
                name: "slim_rpc",
            },
            Runtime::V1 => RuntimePackage {
                path: "github.com/agntcy/slim-bindings-go",
                name: "slim_bindings",
            },
        }
    }

    /// The package with the generic stream wrappers and context helpers.
    pub fn helpers(self) -> RuntimePackage {
        match self {
            Runtime::V3 => self.uniffi(),
            Runtime::V1 => RuntimePackage {
                path: "github.com/agntcy/slim-bindings-go/slimrpc",
                name: "slimrpc",
            },
        }
    }

    /// Name of the helper interface a server-streaming handler sends through.
    pub fn server_stream_type(self) -> &'static str {
        match self {
            Runtime::V3 => "ServerStream",
            Runtime::V1 => "RequestStream",
        }
    }
}
