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
//!
//! The shape generated code targets (tonic-like):
//!
//! ```no_run
//! use std::sync::Arc;
//! use futures::{StreamExt, stream};
//! use slimrpc::{CallOptions, Channel, Context, Name, RequestStream, RpcError, Server};
//!
//! #[derive(Clone, PartialEq, prost::Message)]
//! struct Ping {
//!     #[prost(string, tag = "1")]
//!     text: String,
//! }
//!
//! # async fn demo(
//! #     service: slim_transport::service::Service,
//! #     id_server: slim_transport::identity::SharedSecret,
//! #     id_client: slim_transport::identity::SharedSecret,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! // Server: one handler per method, keyed `package.Service` + `Method`.
//! let server_app = Arc::new(service.app("org/ns/echo".parse()?, id_server).await?);
//! let mut server = Server::new(server_app, "org/ns/echo".parse()?);
//! server.register_unary_unary("pkg.Echo", "Say", |req: Ping, _ctx: Context| async move {
//!     Ok::<_, RpcError>(req)
//! });
//! server.register_stream_stream("pkg.Echo", "Chat", |reqs: RequestStream<Ping>, _ctx| async move {
//!     Ok::<_, RpcError>(reqs)
//! });
//! let running = server.start().await?;
//!
//! // Client: one member is point-to-point, several make a group channel.
//! let client_app = Arc::new(service.app("org/ns/client".parse()?, id_client).await?);
//! let channel = Channel::new(client_app.clone(), vec!["org/ns/echo".parse()?])?;
//! let pong: Ping = channel
//!     .unary("pkg.Echo", "Say", Ping { text: "hi".into() }, CallOptions::default())
//!     .await?;
//! let group = Channel::new(client_app, vec![Name::new("org", "ns", "a"), Name::new("org", "ns", "b")])?;
//! let mut answers = group.group_stream_stream::<_, Ping>(
//!     "pkg.Echo",
//!     "Chat",
//!     stream::iter([Ping { text: "x".into() }]),
//!     CallOptions::default(),
//! );
//! while let Some(item) = answers.next().await {
//!     match item {
//!         Ok(item) => tracing::info!(from = %item.source, text = %item.message.text),
//!         Err(e) => tracing::warn!(error = %e, "a member failed"),
//!     }
//! }
//! running.shutdown().await;
//! # let _ = pong;
//! # Ok(())
//! # }
//! ```

pub mod channel;
pub mod code;
pub mod context;
pub mod dispatcher;
pub mod error;
pub mod health;
pub mod interceptor;
mod lane;
mod membership;
pub mod metadata;
pub mod reducers;
pub mod response_meta;
pub mod server;
pub mod shared;
pub mod slim_app;
pub mod tracker;
pub mod transport;

// Generated code (the health service) names the runtime `slimrpc`.
extern crate self as slimrpc;

#[cfg(test)]
mod testing;

pub use channel::{Channel, ChannelOptions, MulticastStream, ResponseStream};
pub use code::Code;
pub use context::{CallOptions, Context, MulticastItem, RequestStream};
pub use error::{RpcError, unimplemented};
pub use interceptor::{Interceptor, Request};
pub use metadata::Metadata;
pub use reducers::{Folded, GroupResponsesExt, Majority, ReduceError};
pub use response_meta::{
    MetadataError, MetadataExt, Response, ResponseMetadata, ResponseMetadataSink,
};
pub use server::{Server, ServerHandle};
pub use slim_transport::Name;
pub use transport::{
    ConnId, EventSink, IncomingMessage, IntoTransport, RpcSessionEvents, RpcSessionHandle,
    RpcTransport, SessionKind, SessionOptions, TransportError, TransportEvent, TransportSession,
};
