//! The session seam: the few session-layer operations SlimRPC needs.
//!
//! Job: state, as three small object-safe traits, what the runtime asks of a
//! SLIM app and its sessions, mirroring `slim_transport::app::{App, Session,
//! SessionHandle}` so that the real implementation is a thin adapter.
//! Must not: contain protocol logic; everything SlimRPC-specific lives in the
//! channel and the server.
//!
//! Mapping to the session-layer contract:
//!
//! | here | `slim_transport::app` |
//! |---|---|
//! | [`RpcTransport::local_name`] | `App::name` |
//! | [`RpcTransport::create_session`] | `App::create_session(config{kind, ping_interval}, dest)` + awaiting its `Completion` |
//! | [`RpcTransport::create_session_delivering`] | `App::create_session_with_sink(config, dest, sink)` + awaiting its `Completion` |
//! | [`RpcTransport::accept_session`] | `App::listen_for_session` |
//! | [`RpcTransport::subscribe`] | `App::subscribe(name, conn)` |
//! | [`RpcTransport::set_route`] | `App::set_route(name, conn)` |
//! | [`RpcTransport::set_accept_filter`] | `App::set_accept_filter(factory)` |
//! | [`RpcSessionHandle`] | `SessionHandle` (`publish`, `publish_unicast`, `invite` + `Completion`, `remove`, `close`, `is_closed`) |
//! | [`RpcSessionEvents::recv`] | `Session::recv`, keeping `Message`, `MemberLeft` and `MessageLost` events and ending on `Closed` or an error |

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use slim_transport::Name;
use slim_transport::session::{InboundFilter, InboundFilterFactory};

/// A session-layer failure, as text (the runtime only reports it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transport: {0}")]
pub struct TransportError(pub String);

/// A connection (link) id in the local node's table.
pub type ConnId = u64;

/// A future returned by the seam's async operations.
pub type TransportFuture<'a, T> = BoxFuture<'a, Result<T, TransportError>>;

/// Which session a channel asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// One peer; `destination` is that peer's name.
    PointToPoint,
    /// A multicast group; `destination` is the channel name, members are invited.
    Group,
}

/// How a channel wants its sessions made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionOptions {
    /// Moderator ping interval (liveness of members); `None` keeps the
    /// session layer's default (SLIM's 10 s).
    pub ping_interval: Option<Duration>,
}

/// What a session reports to its reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportEvent {
    /// An application message.
    Message(IncomingMessage),
    /// A member left the session or was declared gone (missed pings).
    MemberLeft(Name),
    /// The session gave up recovering sequenced message `message_id` from
    /// `source`: a gap the receiver must not pass over in silence.
    MessageLost { source: Name, message_id: u32 },
}

/// One message delivered by a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    /// Full name (with instance id) of the sender.
    pub source: Name,
    /// The MSG blob (after MLS decryption).
    pub payload: Vec<u8>,
    /// The SLIM message metadata.
    pub metadata: HashMap<String, String>,
    /// The sender's verified identity (the subject of the identity token
    /// its message carried), when the transport checked one.
    pub peer_subject: Option<String>,
}

/// Takes a session's events as they happen ([`RpcTransport::create_session_delivering`]):
/// `Some` for each message, departure or loss, then `None` once, when the
/// session ended. Called on the session's own task where the transport
/// allows it, so it must not block.
pub type EventSink = Box<dyn FnMut(Option<TransportEvent>) + Send + 'static>;

/// A SLIM app as SlimRPC uses it.
pub trait RpcTransport: Send + Sync + 'static {
    /// This app's full name (including its instance id).
    fn local_name(&self) -> Name;

    /// Creates a session of `kind` towards `destination` (the peer for P2P,
    /// the channel name for a group) and resolves once it is established.
    fn create_session(
        &self,
        kind: SessionKind,
        destination: &Name,
        options: SessionOptions,
    ) -> TransportFuture<'_, TransportSession>;

    /// As [`Self::create_session`], with every event of the session handed
    /// to `sink` instead of a receiver. The default reads the session's
    /// receiver in a task of its own; a transport that can call the sink
    /// from the session itself overrides it (one task hop less per message).
    ///
    /// `skip` picks, from a frame's sender and clear-text metadata, frames
    /// the sink's owner would discard: a transport may then acknowledge
    /// them without decrypting or delivering them. The default ignores it
    /// (every frame is delivered, and discarded by the owner).
    fn create_session_delivering(
        &self,
        kind: SessionKind,
        destination: &Name,
        options: SessionOptions,
        sink: EventSink,
        skip: Option<InboundFilter>,
    ) -> TransportFuture<'_, Arc<dyn RpcSessionHandle>> {
        let _ = skip;
        let destination = destination.clone();
        Box::pin(async move {
            let session = self.create_session(kind, &destination, options).await?;
            tokio::spawn(pump(session.events, sink));
            Ok(session.handle)
        })
    }

    /// Resolves with the next session another app opened towards this one.
    fn accept_session(&self) -> TransportFuture<'_, TransportSession>;

    /// Makes `name` route to this app (a server's base name); with `conn`,
    /// also announces it on that link to a remote node.
    fn subscribe(&self, name: &Name, conn: Option<ConnId>) -> TransportFuture<'_, ()>;

    /// Routes messages for `name` over link `conn` (a peer behind a remote node).
    fn set_route(&self, name: &Name, conn: ConnId) -> TransportFuture<'_, ()>;

    /// Sessions accepted from now on acknowledge, but neither decrypt nor
    /// deliver, the frames their filter (made by `factory`, one per
    /// session) picks. A server installs one for the frames it would drop
    /// anyway. The default ignores it: every frame is delivered.
    fn set_accept_filter(&self, factory: InboundFilterFactory) {
        let _ = factory;
    }
}

/// The command side of one session; cheap to share.
pub trait RpcSessionHandle: Send + Sync + 'static {
    /// Session id, for logs.
    fn id(&self) -> u32;

    /// Sends to the session destination: the peer (P2P) or every member (group).
    fn publish(
        &self,
        payload: Vec<u8>,
        metadata: HashMap<String, String>,
    ) -> TransportFuture<'_, ()>;

    /// Sends a sequenced, reliable message addressed to one member (in P2P,
    /// the peer). A SlimRPC server replies this way.
    fn publish_unicast<'a>(
        &'a self,
        member: &'a Name,
        payload: Vec<u8>,
        metadata: HashMap<String, String>,
    ) -> TransportFuture<'a, ()>;

    /// Invites `member` into a group session and resolves once it joined.
    fn invite<'a>(&'a self, member: &'a Name) -> TransportFuture<'a, ()>;

    /// Invites all of `members` into a fresh group session (nobody invited
    /// yet) and resolves once every one joined. The default invites them
    /// one after the other; a transport that can add them together (one
    /// MLS commit) overrides it. An error says which member failed.
    fn invite_many<'a>(&'a self, members: &'a [Name]) -> TransportFuture<'a, ()> {
        Box::pin(async move {
            for m in members {
                self.invite(m)
                    .await
                    .map_err(|e| TransportError(format!("{m}: {}", e.0)))?;
            }
            Ok(())
        })
    }

    /// Removes `member` from a group session this app moderates and
    /// resolves once it is out (the others are told). The default reports
    /// removal unsupported.
    fn remove<'a>(&'a self, member: &'a Name) -> TransportFuture<'a, ()> {
        Box::pin(async move {
            Err(TransportError(format!(
                "cannot remove {member}: this transport does not support removal"
            )))
        })
    }

    /// Closes the session.
    fn close(&self) -> TransportFuture<'_, ()>;

    /// True once the session is closed (by us, the peer, or a failure).
    fn is_closed(&self) -> bool;

    /// Point-to-point or group. A server ends a unary answer with an EOS
    /// only in a group session (group clients count them per member); the
    /// default says group, which is always safe.
    fn kind(&self) -> SessionKind {
        SessionKind::Group
    }
}

/// The receive side of one session; owned by exactly one reader task.
pub trait RpcSessionEvents: Send + 'static {
    /// The next application message, member departure or lost message, or
    /// `None` once the session is closed. Other session events (member
    /// joined) are skipped.
    fn recv(&mut self) -> BoxFuture<'_, Option<TransportEvent>>;
}

/// Feeds every event of `events` to `sink`, then `None`.
async fn pump(mut events: Box<dyn RpcSessionEvents>, mut sink: EventSink) {
    while let Some(event) = events.recv().await {
        sink(Some(event));
    }
    sink(None);
}

/// A live session: its shared handle and its single event receiver.
pub struct TransportSession {
    pub handle: Arc<dyn RpcSessionHandle>,
    pub events: Box<dyn RpcSessionEvents>,
}

impl std::fmt::Debug for TransportSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportSession")
            .field("id", &self.handle.id())
            .finish()
    }
}

/// Anything that can hand the runtime a shared [`RpcTransport`].
pub trait IntoTransport {
    fn into_transport(self) -> Arc<dyn RpcTransport>;
}

impl<T: RpcTransport> IntoTransport for T {
    fn into_transport(self) -> Arc<dyn RpcTransport> {
        Arc::new(self)
    }
}

impl IntoTransport for Arc<dyn RpcTransport> {
    fn into_transport(self) -> Arc<dyn RpcTransport> {
        self
    }
}
