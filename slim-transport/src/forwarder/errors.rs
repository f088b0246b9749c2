//! Errors of the data plane: [`ForwardError`] (what a local app learns when
//! its message could not be forwarded, SLIM §c.4) and [`TransportError`]
//! (what `Service` calls return).
//!
//! This module only describes failures; it never decides routing.

use crate::wire;

/// A connection index in a node's connection table.
pub type ConnId = u64;

/// Session context of a message that could not be forwarded (SLIM §c.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionContext {
    pub message_id: u32,
    pub session_id: u32,
    pub session_message_type: i32,
}

/// Why a message was not forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardErrorKind {
    /// No subscription matched the destination.
    #[error("no matching found for {0}")]
    NoMatch(String),
    /// `forward_to` named a connection this node does not have.
    #[error("connection not found: {0}")]
    UnknownConnection(ConnId),
    /// The message failed validation (SLIM §0.4) or carried a broken name.
    #[error("invalid message: {0}")]
    Invalid(String),
}

/// Sent to a local app whose message could not be forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ForwardError {
    pub kind: ForwardErrorKind,
    /// Present when the failed message was a Publish with a session header.
    pub session_context: Option<SessionContext>,
}

impl ForwardError {
    /// A forward error about v1 message `msg` (its session context is
    /// copied if any).
    pub fn about(kind: ForwardErrorKind, msg: &wire::Message) -> Self {
        Self::about_frame(kind, msg)
    }

    /// A forward error about frame `msg` of either generation.
    pub fn about_frame<F: super::frame::Frame>(kind: ForwardErrorKind, msg: &F) -> Self {
        Self {
            kind,
            session_context: msg.session_context(),
        }
    }

    /// The JSON text SLIM puts in its gRPC `Status` message for this error.
    pub fn to_slim_json(&self) -> String {
        let mut obj = serde_json::Map::new();
        obj.insert("error".into(), self.kind.to_string().into());
        if let Some(c) = &self.session_context {
            obj.insert(
                "session_context".into(),
                serde_json::json!({
                    "message_id": c.message_id,
                    "session_id": c.session_id,
                    "session_message_type": c.session_message_type,
                }),
            );
        }
        serde_json::Value::Object(obj).to_string()
    }
}

/// Errors from `Service` operations.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("connection {0} not found")]
    UnknownConnection(ConnId),
    #[error("the service is shut down")]
    Shutdown,
    #[error("tls: {0}")]
    Tls(String),
}
