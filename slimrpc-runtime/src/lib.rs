//! slimrpc: the SlimRPC protocol (point-to-point and Group RPC) over SLIM
//! sessions, and the typed API generated code calls.
//!
//! * Client: [`Channel::new`]`(app, members)` — one member is a point-to-point
//!   channel, several a group channel — then `unary`, `unary_stream`,
//!   `stream_unary`, `stream_stream` and their `group_*` versions, each with
//!   [`CallOptions`].
//! * Server: [`Server::new`]`(app, base_name)`, `register_*` per method
//!   (keyed `package.Service/Method`), then [`Server::start`].
//! * The session layer is reached through the small traits in [`transport`].
//!
//! Wire behaviour follows SLIM v1.3 (`agntcy-slim-bindings` 1.3.0): see
//! [`metadata`] for the frames.

pub mod channel;
pub mod code;
pub mod context;
pub mod dispatcher;
pub mod error;
pub mod metadata;
pub mod server;
pub mod slim_app;
pub mod tracker;
pub mod transport;

#[cfg(test)]
mod testing;

pub use channel::{Channel, MulticastStream, ResponseStream};
pub use code::Code;
pub use context::{CallOptions, Context, MulticastItem, RequestStream};
pub use error::RpcError;
pub use metadata::Metadata;
pub use server::{Server, ServerHandle};
pub use slim_transport::Name;
pub use transport::{
    IncomingMessage, IntoTransport, RpcSessionEvents, RpcSessionHandle, RpcTransport, SessionKind,
    TransportError, TransportSession,
};
