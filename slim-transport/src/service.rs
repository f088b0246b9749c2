//! `Service`: the I/O shell around the forwarders — in-process app
//! connections, a gRPC server (`DataPlaneService/OpenChannel`) that serves
//! both SLIM wire generations on one endpoint, outgoing links that
//! negotiate, reconnect forever and replay, and remote subscription-ack
//! waits.
//!
//! A node runs one [`Forwarder`] per generation (v1: official 1.3/1.4, v3:
//! official 2.x/3.x) with connection ids from one counter. An incoming
//! stream is read as raw frames; the first frame tells its generation
//! (a v3 Link offers an X25519 key or a version ≥ 2; anything else that
//! decodes is v1; what decodes as neither closes the stream), and the
//! connection joins that generation's forwarder, so messages only ever
//! travel between connections of the same generation. An outgoing link
//! speaks the generation it is told, or finds out from the peer's reply.
//!
//! One tokio task per connection reads its inbound stream and runs each
//! message through the forwarder under a short synchronous lock; the
//! resulting sends happen after the lock is released, into bounded
//! per-connection channels. This module decides nothing about routing (that
//! is the forwarders' job) and never holds a lock across `.await`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Endpoint, Server, server::TcpIncoming};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::forwarder::link::LinkState;
use crate::forwarder::link3::LinkState3;
use crate::forwarder::{Action, ConnIds, ConnKind, Forwarder, Frame, Negotiation, Role, SubAck};
pub use crate::forwarder::{
    ConnId, ForwardError, ForwardErrorKind, Generation, LinkPolicy, SessionContext, TransportError,
};
use crate::grpc::{self, RawDataPlaneServer, RawHandler, RawStream};
use crate::name::{Name, NameKey};
use crate::wire::{self, message::MessageType};
use crate::wire3;

/// Capacity of every per-connection channel.
const CHANNEL_CAPACITY: usize = 1024;
/// Largest message accepted from a peer by default (tonic's default, as
/// SLIM).
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// Wait for a peer's SubscriptionAck before re-sending (SLIM: 5 s).
const REMOTE_ACK_WAIT: Duration = Duration::from_secs(5);
/// Re-sends after the first wait (SLIM: 3, so 4 waits in total).
const REMOTE_ACK_RETRIES: u32 = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a link may take to send its first (negotiation) frame or its
/// reply (the official `negotiation_timeout_secs` default).
const NEGOTIATION_TIMEOUT: Duration = Duration::from_secs(5);

/// An in-process v1 app connection to the forwarder.
pub struct LocalConnection {
    pub id: ConnId,
    /// App -> forwarder.
    pub tx: mpsc::Sender<wire::Message>,
    /// Forwarder -> app: messages routed to this app, its subscription
    /// acks, and errors about its own messages that were not forwarded.
    pub rx: mpsc::Receiver<Result<wire::Message, ForwardError>>,
}

impl std::fmt::Debug for LocalConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalConnection")
            .field("id", &self.id)
            .finish()
    }
}

/// An in-process v3 app connection to the forwarder.
pub struct LocalConnection3 {
    pub id: ConnId,
    pub tx: mpsc::Sender<wire3::Message>,
    pub rx: mpsc::Receiver<Result<wire3::Message, ForwardError>>,
}

impl std::fmt::Debug for LocalConnection3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalConnection3")
            .field("id", &self.id)
            .finish()
    }
}

/// How an outgoing link is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkOptions {
    /// The generation to speak; `None` asks the peer (a v3 request, and
    /// v1 if the reply says so).
    pub generation: Option<Generation>,
    /// Announce this node's subscriptions up the link (see
    /// [`Service::connect_upstream`]).
    pub upstream: bool,
    /// v3: refuse a peer without the X25519 exchange, and untagged
    /// messages (the official client default).
    pub require_header_mac: bool,
    /// v3: announce the link as an app's edge link (`EDGE`) rather than a
    /// node-to-node one (`REMOTE`).
    pub edge: bool,
}

impl Default for LinkOptions {
    fn default() -> Self {
        Self {
            generation: Some(Generation::V1),
            upstream: false,
            require_header_mac: true,
            edge: true,
        }
    }
}

/// How an outgoing link retries after it is lost: exponential backoff from
/// `initial` up to `max`, each wait randomized by ±`jitter` (a fraction),
/// forever.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconnectPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub jitter: f64,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(5),
            jitter: 0.2,
        }
    }
}

impl ReconnectPolicy {
    /// The wait before attempt `n` (0-based), jitter included.
    pub fn delay(&self, attempt: u32) -> Duration {
        use rand::Rng;
        let base = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(20)))
            .min(self.max);
        let j = self.jitter.clamp(0.0, 1.0);
        let factor = if j > 0.0 {
            rand::rng().random_range(1.0 - j..=1.0 + j)
        } else {
            1.0
        };
        base.mul_f64(factor)
    }
}

/// Link up/down notices for apps that watch their links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Link `conn` lost its stream; it keeps trying to reconnect.
    Down { conn: ConnId, reason: String },
    /// Link `conn` is negotiated again and its subscriptions replayed.
    Up { conn: ConnId },
}

/// Node-wide limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Incoming connections accepted at once; more are refused with
    /// `RESOURCE_EXHAUSTED`.
    pub max_connections: usize,
    /// Largest frame accepted; a larger one fails its stream with
    /// `OUT_OF_RANGE`.
    pub max_message_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_message_size: MAX_MESSAGE_SIZE,
        }
    }
}

type RemoteTx = mpsc::Sender<Result<Bytes, Status>>;

#[derive(Clone)]
enum Outbound {
    Local1(mpsc::Sender<Result<wire::Message, ForwardError>>),
    Local3(mpsc::Sender<Result<wire3::Message, ForwardError>>),
    Remote(RemoteTx),
}

enum Delivery {
    Local1(
        mpsc::Sender<Result<wire::Message, ForwardError>>,
        Result<wire::Message, ForwardError>,
    ),
    Local3(
        mpsc::Sender<Result<wire3::Message, ForwardError>>,
        Result<wire3::Message, ForwardError>,
    ),
    Remote(RemoteTx, Bytes),
}

/// A frame the node can carry: a forwarder of its own and a way to local
/// apps.
trait NodeFrame: Frame + prost::Message + Default {
    fn core(st: &mut State) -> &mut Forwarder<Self>;
    fn to_local(out: &Outbound, item: Result<Self, ForwardError>) -> Option<Delivery>;
    fn tap(_st: &State, _msg: &Self) {}
}

impl NodeFrame for wire::Message {
    fn core(st: &mut State) -> &mut Forwarder<Self> {
        &mut st.v1
    }

    fn to_local(out: &Outbound, item: Result<Self, ForwardError>) -> Option<Delivery> {
        match out {
            Outbound::Local1(tx) => Some(Delivery::Local1(tx.clone(), item)),
            _ => None,
        }
    }

    fn tap(st: &State, msg: &Self) {
        if let Some(tap) = &st.tap
            && matches!(msg.message_type, Some(MessageType::Publish(_)))
        {
            let _ = tap.try_send(msg.clone());
        }
    }
}

impl NodeFrame for wire3::Message {
    fn core(st: &mut State) -> &mut Forwarder<Self> {
        &mut st.v3
    }

    fn tap(st: &State, msg: &Self) {
        if let Some(tap) = &st.tap3
            && matches!(
                msg.message_type,
                Some(wire3::message::MessageType::Publish(_))
            )
        {
            let _ = tap.try_send(msg.clone());
        }
    }

    fn to_local(out: &Outbound, item: Result<Self, ForwardError>) -> Option<Delivery> {
        match out {
            Outbound::Local3(tx) => Some(Delivery::Local3(tx.clone(), item)),
            _ => None,
        }
    }
}

struct State {
    v1: Forwarder<wire::Message>,
    v3: Forwarder<wire3::Message>,
    /// The generation of every connection.
    gens: HashMap<ConnId, Generation>,
    outs: HashMap<ConnId, Outbound>,
    /// The task reading each connection (and reconnecting outgoing links).
    tasks: HashMap<ConnId, JoinHandle<()>>,
    /// Tasks serving incoming streams.
    accepting: Vec<JoinHandle<()>>,
    /// Stops the reader of an incoming connection that is dropped.
    kills: HashMap<ConnId, oneshot::Sender<()>>,
    /// Remote-ack waits by (link, subscription id).
    pending: HashMap<(ConnId, u64), oneshot::Sender<SubAck>>,
    ack_waiters: Vec<JoinHandle<()>>,
    servers: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
    tap: Option<mpsc::Sender<wire::Message>>,
    tap3: Option<mpsc::Sender<wire3::Message>>,
    events: broadcast::Sender<LinkEvent>,
    reconnect: ReconnectPolicy,
    limits: Limits,
    incoming: usize,
    closed: bool,
}

impl Default for State {
    fn default() -> Self {
        let ids = ConnIds::default();
        Self {
            v1: Forwarder::new().with_ids(ids.clone()),
            v3: Forwarder::new().with_ids(ids),
            gens: HashMap::new(),
            outs: HashMap::new(),
            tasks: HashMap::new(),
            accepting: Vec::new(),
            kills: HashMap::new(),
            pending: HashMap::new(),
            ack_waiters: Vec::new(),
            servers: Vec::new(),
            tap: None,
            tap3: None,
            events: broadcast::channel(64).0,
            reconnect: ReconnectPolicy::default(),
            limits: Limits::default(),
            incoming: 0,
            closed: false,
        }
    }
}

struct Inner {
    state: Mutex<State>,
}

/// A SLIM data-plane node: in-process by default, optionally serving gRPC
/// (both generations on one endpoint) and linked to other nodes. Cheap to
/// clone (shared state).
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl Default for Service {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

/// Adds `http://` when the endpoint has no scheme.
fn endpoint_uri(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// A frame decoded with the schema of its generation.
#[derive(Debug)]
pub enum Detected {
    V1(wire::Message),
    V3(wire3::Message),
}

/// Tells the generation of a connection from its first frame: a v3 Link
/// request (an X25519 key, or a version of major 2 or more) is v3; any
/// other frame that decodes as a v1 message is v1; anything else is
/// refused with the reason.
pub fn detect_generation(frame: &[u8]) -> Result<Detected, String> {
    if let Some(m) = crate::forwarder::link3::v3_negotiation(frame) {
        return Ok(Detected::V3(m));
    }
    // A v1 frame that decodes but is invalid (say, a oneof member from a
    // newer peer) is dropped by the forwarder and the stream kept, as 1.3
    // nodes do; only bytes no schema can read close it here.
    match wire::Message::decode(frame) {
        Ok(m) => Ok(Detected::V1(m)),
        Err(e) => Err(format!("first frame is neither SLIM v1 nor v3: {e}")),
    }
}

impl Service {
    /// An in-process forwarder with no sockets.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Sets the v3 header-MAC policy of connections accepted from now on
    /// (the official node's `require_header_mac`, default on).
    pub fn set_link_policy(&self, policy: LinkPolicy) {
        let mut st = self.inner.lock();
        let v3 = std::mem::take(&mut st.v3);
        st.v3 = v3.with_policy(policy);
    }

    /// Sets how outgoing links retry after a loss.
    pub fn set_reconnect_policy(&self, policy: ReconnectPolicy) {
        self.inner.lock().reconnect = policy;
    }

    /// Sets the node limits of servers started from now on.
    pub fn set_limits(&self, limits: Limits) {
        self.inner.lock().limits = limits;
    }

    /// Link up/down notices from now on.
    pub fn link_events(&self) -> broadcast::Receiver<LinkEvent> {
        self.inner.lock().events.subscribe()
    }

    /// Serves `DataPlaneService` on `addr` (port 0 picks one); returns the
    /// bound address. TCP_NODELAY is set on every accepted link.
    pub async fn run_server(&self, addr: SocketAddr) -> Result<SocketAddr, TransportError> {
        self.run_server_with(addr, Server::builder()).await
    }

    /// As [`Service::run_server`] with a prepared tonic server builder (the
    /// `slim` binary passes its TLS settings this way).
    pub async fn run_server_with(
        &self,
        addr: SocketAddr,
        builder: Server,
    ) -> Result<SocketAddr, TransportError> {
        let max = {
            let st = self.inner.lock();
            if st.closed {
                return Err(TransportError::Shutdown);
            }
            st.limits.max_message_size
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| TransportError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| TransportError::Bind { addr, source })?;
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let svc = RawDataPlaneServer::new(NodeService {
            inner: self.inner.clone(),
        })
        .max_decoding_message_size(max);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let mut builder = builder.tcp_nodelay(true);
        let server = builder
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop_rx.await;
            });
        let handle = tokio::spawn(async move {
            if let Err(e) = server.await {
                warn!(error = %e, "gRPC server stopped with an error");
            }
        });
        self.inner.lock().servers.push((stop_tx, handle));
        info!(%local, "data-plane server listening (SLIM v1 and v3)");
        Ok(local)
    }

    /// Opens a v1 link to a node (`http://127.0.0.1:P` or `127.0.0.1:P`):
    /// the generation this crate's sessions speak.
    pub async fn connect(&self, endpoint: &str) -> Result<ConnId, TransportError> {
        self.connect_with(endpoint, LinkOptions::default()).await
    }

    /// Opens an *upstream* v1 link: every name subscribed here by another
    /// connection is announced on it, and traffic this node cannot deliver
    /// goes up it (see the forwarder's module doc). This stands in for the
    /// routes a SLIM control plane would configure.
    pub async fn connect_upstream(&self, endpoint: &str) -> Result<ConnId, TransportError> {
        let opts = LinkOptions {
            upstream: true,
            edge: false,
            ..LinkOptions::default()
        };
        self.connect_with(endpoint, opts).await
    }

    /// Opens a link with explicit options.
    pub async fn connect_with(
        &self,
        endpoint: &str,
        opts: LinkOptions,
    ) -> Result<ConnId, TransportError> {
        let uri = endpoint_uri(endpoint);
        let ep = Endpoint::from_shared(uri.clone())
            .map_err(|e| TransportError::InvalidEndpoint {
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            })?
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT);
        self.connect_endpoint_with(ep, opts).await
    }

    /// Opens a v1 link over a prepared tonic endpoint (TLS settings
    /// included).
    pub async fn connect_endpoint(
        &self,
        ep: Endpoint,
        upstream: bool,
    ) -> Result<ConnId, TransportError> {
        let opts = LinkOptions {
            upstream,
            edge: !upstream,
            ..LinkOptions::default()
        };
        self.connect_endpoint_with(ep, opts).await
    }

    /// Opens a link over a prepared tonic endpoint with explicit options.
    pub async fn connect_endpoint_with(
        &self,
        ep: Endpoint,
        opts: LinkOptions,
    ) -> Result<ConnId, TransportError> {
        let ep = ep.tcp_nodelay(true);
        if self.inner.lock().closed {
            return Err(TransportError::Shutdown);
        }
        let (conn, generation, stream) = self.inner.open_link(None, &ep, opts).await?;
        let uri = ep.uri().to_string();
        let inner = self.inner.clone();
        let opts = LinkOptions {
            generation: Some(generation),
            ..opts
        };
        let task = tokio::spawn(async move { inner.run_link(conn, ep, opts, stream).await });
        self.inner.lock().tasks.insert(conn, task);
        info!(conn, endpoint = %uri, upstream = opts.upstream, %generation, "link established");
        Ok(conn)
    }

    /// Closes a connection (any kind) and drops its routes.
    pub async fn disconnect(&self, conn: ConnId) -> Result<(), TransportError> {
        let task = {
            let mut st = self.inner.lock();
            if !st.gens.contains_key(&conn) {
                return Err(TransportError::UnknownConnection(conn));
            }
            st.tasks.remove(&conn)
        };
        if let Some(t) = task {
            t.abort();
        }
        self.inner.drop_conn(conn).await;
        Ok(())
    }

    /// A new in-process v1 app connection. Must be called inside a tokio
    /// runtime (it spawns the connection's reader task).
    pub fn local_connection(&self) -> LocalConnection {
        let (app_tx, fwd_rx) = mpsc::channel::<wire::Message>(CHANNEL_CAPACITY);
        let (fwd_tx, app_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let id = self.local::<wire::Message>(Outbound::Local1(fwd_tx), fwd_rx);
        LocalConnection {
            id,
            tx: app_tx,
            rx: app_rx,
        }
    }

    /// A new in-process v3 app connection.
    pub fn local_connection3(&self) -> LocalConnection3 {
        let (app_tx, fwd_rx) = mpsc::channel::<wire3::Message>(CHANNEL_CAPACITY);
        let (fwd_tx, app_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let id = self.local::<wire3::Message>(Outbound::Local3(fwd_tx), fwd_rx);
        LocalConnection3 {
            id,
            tx: app_tx,
            rx: app_rx,
        }
    }

    fn local<F: NodeFrame>(&self, out: Outbound, mut fwd_rx: mpsc::Receiver<F>) -> ConnId {
        let id = {
            let mut st = self.inner.lock();
            let id = F::core(&mut st).add_connection(ConnKind::Local);
            st.gens.insert(id, F::GENERATION);
            if !st.closed {
                st.outs.insert(id, out);
            }
            id
        };
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = fwd_rx.recv().await {
                inner.dispatch(id, m).await;
            }
            inner.drop_conn(id).await;
        });
        let mut st = self.inner.lock();
        if st.gens.contains_key(&id) {
            st.tasks.insert(id, task);
        }
        id
    }

    /// Stops the servers, closes every connection and stops every task.
    pub async fn shutdown(&self) {
        let (servers, tasks, waiters, accepting, conns) = {
            let mut st = self.inner.lock();
            st.closed = true;
            st.outs.clear();
            st.pending.clear();
            st.tap = None;
            st.tap3 = None;
            let conns: Vec<(ConnId, Generation)> = st.gens.drain().collect();
            for (c, g) in &conns {
                match g {
                    Generation::V1 => {
                        st.v1.remove_connection(*c);
                    }
                    Generation::V3 => {
                        st.v3.remove_connection(*c);
                    }
                }
            }
            (
                std::mem::take(&mut st.servers),
                std::mem::take(&mut st.tasks),
                std::mem::take(&mut st.ack_waiters),
                std::mem::take(&mut st.accepting),
                conns.len(),
            )
        };
        for (_, t) in tasks {
            t.abort();
        }
        for t in waiters.into_iter().chain(accepting) {
            t.abort();
        }
        for (stop, handle) in servers {
            let _ = stop.send(());
            let abort = handle.abort_handle();
            if tokio::time::timeout(Duration::from_millis(500), handle)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        info!(connections = conns, "service shut down");
    }

    /// Test tap: a copy of every v1 Publish the forwarder sends from now on
    /// (dropped when the receiver lags).
    pub fn tap_publishes(&self, capacity: usize) -> mpsc::Receiver<wire::Message> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.inner.lock().tap = Some(tx);
        rx
    }

    /// Test tap: a copy of every v3 Publish the forwarder sends from now on
    /// (dropped when the receiver lags).
    pub fn tap_publishes3(&self, capacity: usize) -> mpsc::Receiver<wire3::Message> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.inner.lock().tap3 = Some(tx);
        rx
    }

    /// The v1 connections subscribed to exactly `name` (diagnostics,
    /// tests).
    pub fn subscribers(&self, name: &Name) -> Vec<ConnId> {
        self.inner.lock().v1.subscribers(NameKey::from(name))
    }

    /// The connections of `generation` subscribed to exactly `key`.
    pub fn subscribers_of(&self, generation: Generation, key: NameKey) -> Vec<ConnId> {
        let st = self.inner.lock();
        match generation {
            Generation::V1 => st.v1.subscribers(key),
            Generation::V3 => st.v3.subscribers(key),
        }
    }

    /// The version a remote peer announced in link negotiation.
    pub fn peer_version(&self, conn: ConnId) -> Option<String> {
        let st = self.inner.lock();
        match st.gens.get(&conn)? {
            Generation::V1 => st.v1.peer_version(conn),
            Generation::V3 => st.v3.peer_version(conn),
        }
    }

    /// The wire generation of a connection.
    pub fn generation(&self, conn: ConnId) -> Option<Generation> {
        self.inner.lock().gens.get(&conn).copied()
    }

    /// Every open connection index.
    pub fn connections(&self) -> Vec<ConnId> {
        let mut v: Vec<ConnId> = self.inner.lock().gens.keys().copied().collect();
        v.sort_unstable();
        v
    }
}

async fn deliver(d: Delivery) {
    match d {
        Delivery::Local1(tx, item) => {
            if tx.send(item).await.is_err() {
                debug!("local app gone; message dropped");
            }
        }
        Delivery::Local3(tx, item) => {
            if tx.send(item).await.is_err() {
                debug!("local app gone; message dropped");
            }
        }
        Delivery::Remote(tx, bytes) => {
            if tx.send(Ok(bytes)).await.is_err() {
                debug!("link closed; message dropped");
            }
        }
    }
}

async fn deliver_all(deliveries: Vec<Delivery>) {
    for d in deliveries {
        deliver(d).await;
    }
}

/// A delivery of `msg` on `out`.
fn delivery<F: NodeFrame>(out: &Outbound, msg: F) -> Option<Delivery> {
    match out {
        Outbound::Remote(tx) => Some(Delivery::Remote(
            tx.clone(),
            Bytes::from(msg.encode_to_vec()),
        )),
        local => F::to_local(local, Ok(msg)),
    }
}

/// What negotiating an outgoing link produced.
enum Negotiated {
    V1(LinkState),
    V3(LinkState3),
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in the forwarder;
        // keep serving with whatever state it left rather than cascading.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one inbound message through its forwarder, then sends.
    async fn dispatch<F: NodeFrame>(self: &Arc<Self>, conn: ConnId, msg: F) {
        let (deliveries, closes) = {
            let mut st = self.lock();
            let actions = F::core(&mut st).handle(conn, msg);
            self.resolve(&mut st, actions)
        };
        deliver_all(deliveries).await;
        for (conn, reason) in closes {
            warn!(conn, %reason, "closing connection");
            let out = self.lock().outs.get(&conn).cloned();
            if let Some(Outbound::Remote(tx)) = out {
                let _ = tx.try_send(Err(Status::failed_precondition(reason)));
            }
            self.drop_conn(conn).await;
        }
    }

    /// Turns forwarder actions into deliveries (under the lock, no await);
    /// also returns the connections to close.
    fn resolve<F: NodeFrame>(
        self: &Arc<Self>,
        st: &mut State,
        actions: Vec<Action<F>>,
    ) -> (Vec<Delivery>, Vec<(ConnId, String)>) {
        let mut out = Vec::with_capacity(actions.len());
        let mut closes = Vec::new();
        for a in actions {
            match a {
                Action::Send { conn, msg } => {
                    F::tap(st, &msg);
                    match st.outs.get(&conn).and_then(|o| delivery(o, msg)) {
                        Some(d) => out.push(d),
                        None => debug!(conn, "connection not writable; message dropped"),
                    }
                }
                Action::Error { conn, error } => {
                    if let Some(o) = st.outs.get(&conn)
                        && let Some(d) = F::to_local(o, Err(error))
                    {
                        out.push(d);
                    }
                }
                Action::AwaitRemoteAck {
                    link,
                    subscription_id,
                    reply_to,
                    resend,
                } => {
                    let (tx, rx) = oneshot::channel();
                    st.pending.insert((link, subscription_id), tx);
                    let inner = self.clone();
                    st.ack_waiters.retain(|h| !h.is_finished());
                    st.ack_waiters.push(tokio::spawn(async move {
                        inner
                            .wait_remote_ack(link, subscription_id, reply_to, resend, rx)
                            .await
                    }));
                }
                Action::RemoteAck { link, ack } => {
                    match st.pending.remove(&(link, ack.subscription_id)) {
                        Some(tx) => {
                            let _ = tx.send(ack);
                        }
                        None => debug!(
                            link,
                            subscription_id = ack.subscription_id,
                            "unexpected subscription ack ignored"
                        ),
                    }
                }
                Action::Close { conn, reason } => closes.push((conn, reason)),
            }
        }
        (out, closes)
    }

    /// SLIM's remote-ack path: wait 5 s, re-send, up to 4 waits; then ack
    /// the subscriber with the peer's answer or a timeout error.
    async fn wait_remote_ack<F: NodeFrame>(
        self: Arc<Self>,
        link: ConnId,
        subscription_id: u64,
        reply_to: ConnId,
        resend: F,
        mut rx: oneshot::Receiver<SubAck>,
    ) {
        let mut result = Err(format!(
            "remote subscription ack timed out after {REMOTE_ACK_RETRIES} retries"
        ));
        for attempt in 0..=REMOTE_ACK_RETRIES {
            if attempt > 0 {
                debug!(link, subscription_id, attempt, "re-sending subscription");
                let d = {
                    let mut st = self.lock();
                    let sealed = F::core(&mut st).seal_for(link, resend.clone());
                    match (st.outs.get(&link), sealed) {
                        (Some(o), Some(m)) => delivery(o, m),
                        _ => None,
                    }
                };
                if let Some(d) = d {
                    deliver(d).await;
                }
            }
            match tokio::time::timeout(REMOTE_ACK_WAIT, &mut rx).await {
                Ok(Ok(ack)) => {
                    result = if ack.success {
                        Ok(())
                    } else {
                        Err(format!(
                            "remote subscription ack returned error: {}",
                            ack.error
                        ))
                    };
                    break;
                }
                Ok(Err(_)) => {
                    result = Err(format!("connection not found: {link}"));
                    break;
                }
                Err(_) => continue,
            }
        }
        if let Err(e) = &result {
            warn!(link, subscription_id, error = %e, "remote subscription failed");
        }
        let d = {
            let mut st = self.lock();
            st.pending.remove(&(link, subscription_id));
            st.outs
                .get(&reply_to)
                .and_then(|o| delivery(o, F::ack(subscription_id, result)))
        };
        if let Some(d) = d {
            deliver(d).await;
        }
    }

    /// Drops a connection's state and routes (its task is stopped by the
    /// caller or is the caller).
    async fn drop_conn(self: &Arc<Self>, conn: ConnId) {
        let (deliveries, _) = {
            let mut st = self.lock();
            st.outs.remove(&conn);
            st.tasks.remove(&conn);
            if let Some(kill) = st.kills.remove(&conn) {
                let _ = kill.send(());
            }
            st.pending.retain(|(l, _), _| *l != conn);
            match st.gens.remove(&conn) {
                Some(Generation::V1) => {
                    let actions = st.v1.remove_connection(conn);
                    self.resolve(&mut st, actions)
                }
                Some(Generation::V3) => {
                    let actions = st.v3.remove_connection(conn);
                    self.resolve(&mut st, actions)
                }
                None => (Vec::new(), Vec::new()),
            }
        };
        deliver_all(deliveries).await;
    }

    /// Reads one remote stream of generation `F` until it ends, fails, or
    /// the connection is closed. A frame that does not decode with `F`'s
    /// schema closes the connection.
    async fn read_remote<F: NodeFrame>(
        self: &Arc<Self>,
        conn: ConnId,
        stream: &mut Streaming<Bytes>,
        reply: Option<&RemoteTx>,
        mut kill: Option<oneshot::Receiver<()>>,
    ) -> String {
        loop {
            let next = match kill.as_mut() {
                Some(k) => tokio::select! {
                    m = stream.message() => m,
                    _ = k => return "connection closed".into(),
                },
                None => stream.message().await,
            };
            match next {
                Ok(Some(bytes)) => match F::decode(bytes) {
                    Ok(m) => {
                        self.dispatch(conn, m).await;
                        if !self.lock().gens.contains_key(&conn) {
                            return "connection closed".into();
                        }
                    }
                    Err(e) => {
                        let reason = format!("frame is not valid SLIM {}: {e}", F::GENERATION);
                        warn!(conn, %reason, "closing connection");
                        if let Some(tx) = reply {
                            let _ = tx.try_send(Err(Status::invalid_argument(reason.clone())));
                        }
                        return reason;
                    }
                },
                Ok(None) => {
                    info!(conn, "stream closed by peer");
                    return "stream closed by peer".into();
                }
                Err(status) => {
                    warn!(
                        conn,
                        code = ?status.code(),
                        message = %status.message(),
                        "closing connection: stream error"
                    );
                    if let Some(tx) = reply {
                        // Tell the peer why (e.g. a frame over the size limit).
                        let _ = tx.try_send(Err(status.clone()));
                    }
                    return format!("stream error: {}", status.message());
                }
            }
        }
    }

    /// Opens (or, with `existing`, re-opens) an outgoing link: connects,
    /// negotiates (the first reply decides the generation when `opts` does
    /// not), registers the connection with its forwarder and sends the
    /// replay. Returns the connection, its generation and its stream.
    async fn open_link(
        self: &Arc<Self>,
        existing: Option<ConnId>,
        ep: &Endpoint,
        opts: LinkOptions,
    ) -> Result<(ConnId, Generation, Streaming<Bytes>), TransportError> {
        let endpoint = ep.uri().to_string();
        let fail = |reason: String| TransportError::Connect {
            endpoint: endpoint.clone(),
            reason,
        };
        let channel = ep
            .connect()
            .await
            .map_err(|e| fail(format!("{e}: {}", source_chain(&e))))?;
        let (tx, rx) = mpsc::channel::<Result<Bytes, Status>>(CHANNEL_CAPACITY);
        let link_id = uuid::Uuid::new_v4().to_string();
        let policy = LinkPolicy {
            require_header_mac: opts.require_header_mac,
        };
        let mut v1 = LinkState::new(Role::Client);
        let mut v3 = <LinkState3 as Negotiation<wire3::Message>>::new(
            Role::Client,
            policy,
            crate::forwarder::random_key(),
        );
        v3.set_connection_type(if opts.edge {
            wire3::LinkConnectionType::Edge
        } else {
            wire3::LinkConnectionType::Remote
        });
        // A v1 request for v1; otherwise a v3 request, which v1 peers
        // answer too (they ignore the fields they do not know).
        let request = match opts.generation {
            Some(Generation::V1) => v1.request(link_id.clone()).encode_to_vec(),
            _ => Negotiation::request(&mut v3, link_id.clone()).encode_to_vec(),
        };
        // Queued before the stream opens, so it is the first frame.
        let _ = tx.try_send(Ok(Bytes::from(request)));
        let outbound = ReceiverStream::new(rx).filter_map(|r| r.ok());
        let max = self.lock().limits.max_message_size;
        let mut stream = grpc::open_channel(channel, outbound, max)
            .await
            .map_err(|s| fail(s.to_string()))?;
        let reply = match tokio::time::timeout(NEGOTIATION_TIMEOUT, stream.message()).await {
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) => return Err(fail("stream closed before link negotiation".into())),
            Ok(Err(s)) => return Err(fail(format!("link negotiation: {s}"))),
            Err(_) => return Err(fail("no link negotiation reply".into())),
        };
        let negotiated = match opts.generation {
            Some(Generation::V1) => {
                if let Some(m3) = crate::forwarder::link3::v3_negotiation(&reply) {
                    let version = crate::forwarder::link3::payload_of(&m3)
                        .map(|p| p.slim_version.clone())
                        .unwrap_or_default();
                    return Err(fail(format!(
                        "link negotiation: the peer speaks SLIM v3 ({version}), not v1"
                    )));
                }
                let m = wire::Message::decode(reply.clone())
                    .map_err(|e| fail(format!("link negotiation reply: {e}")))?;
                match v1.on_frame(&m) {
                    Ok(_) => Negotiated::V1(v1),
                    Err(e) => return Err(fail(format!("link negotiation: {e}"))),
                }
            }
            wanted => match crate::forwarder::link3::v3_negotiation(&reply) {
                Some(m3) => {
                    Negotiation::on_frame(&mut v3, &m3)
                        .map_err(|e| fail(format!("link negotiation: {e}")))?;
                    Negotiated::V3(v3)
                }
                _ if wanted == Some(Generation::V3) => {
                    return Err(fail(
                            "link negotiation: the peer does not speak SLIM v3 (public key length is invalid)"
                                .into(),
                        ));
                }
                _ => {
                    let m = wire::Message::decode(reply.clone())
                        .map_err(|e| fail(format!("link negotiation reply: {e}")))?;
                    v1.request(link_id.clone());
                    v1.on_frame(&m)
                        .map_err(|e| fail(format!("link negotiation: {e}")))?;
                    Negotiated::V1(v1)
                }
            },
        };
        let (conn, generation, replay) = {
            let mut st = self.lock();
            if st.closed {
                return Err(TransportError::Shutdown);
            }
            let (conn, generation, replay) = match negotiated {
                Negotiated::V1(l) => {
                    let conn = register(&mut st.v1, existing, l).ok_or(
                        TransportError::UnknownConnection(existing.unwrap_or_default()),
                    )?;
                    let replay = link_replay(&mut st.v1, conn, existing.is_none() && opts.upstream);
                    (conn, Generation::V1, replay)
                }
                Negotiated::V3(l) => {
                    let conn = register(&mut st.v3, existing, l).ok_or(
                        TransportError::UnknownConnection(existing.unwrap_or_default()),
                    )?;
                    let replay = link_replay(&mut st.v3, conn, existing.is_none() && opts.upstream);
                    (conn, Generation::V3, replay)
                }
            };
            st.gens.insert(conn, generation);
            st.outs.insert(conn, Outbound::Remote(tx.clone()));
            (conn, generation, replay)
        };
        for b in replay {
            if tx.send(Ok(b)).await.is_err() {
                break;
            }
        }
        Ok((conn, generation, stream))
    }

    /// Owns an outgoing link: reads it, and on loss reconnects forever with
    /// capped exponential backoff and jitter (same connection index,
    /// subscriptions replayed), telling watchers when it goes down and
    /// comes back.
    async fn run_link(
        self: Arc<Self>,
        conn: ConnId,
        ep: Endpoint,
        opts: LinkOptions,
        first: Streaming<Bytes>,
    ) {
        let mut stream = first;
        loop {
            let reason = match opts.generation {
                Some(Generation::V3) => {
                    self.read_remote::<wire3::Message>(conn, &mut stream, None, None)
                        .await
                }
                _ => {
                    self.read_remote::<wire::Message>(conn, &mut stream, None, None)
                        .await
                }
            };
            let events = {
                let mut st = self.lock();
                st.outs.remove(&conn);
                if st.closed || !st.gens.contains_key(&conn) {
                    return;
                }
                st.events.clone()
            };
            info!(conn, endpoint = %ep.uri(), %reason, "link lost; reconnecting");
            let _ = events.send(LinkEvent::Down { conn, reason });
            let mut attempt = 0u32;
            stream = loop {
                let delay = self.lock().reconnect.delay(attempt);
                tokio::time::sleep(delay).await;
                attempt = attempt.saturating_add(1);
                if self.lock().closed {
                    return;
                }
                match self.open_link(Some(conn), &ep, opts).await {
                    Ok((_, _, s)) => {
                        info!(conn, attempt, "link re-established; subscriptions replayed");
                        let _ = events.send(LinkEvent::Up { conn });
                        break s;
                    }
                    Err(e) => {
                        // Logged at warn only now and then: a node down for
                        // long would otherwise flood the log.
                        if attempt.is_power_of_two() {
                            warn!(conn, attempt, error = %e, "reconnect attempt failed; still trying");
                        } else {
                            debug!(conn, attempt, error = %e, "reconnect attempt failed");
                        }
                    }
                }
            };
        }
    }

    /// Serves one incoming stream: reads its first frame within the
    /// negotiation timeout, tells its generation, registers it and reads on.
    async fn serve_incoming(
        self: Arc<Self>,
        mut stream: Streaming<Bytes>,
        tx: RemoteTx,
        peer: Option<SocketAddr>,
    ) {
        let first = match tokio::time::timeout(NEGOTIATION_TIMEOUT, stream.message()).await {
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) => {
                debug!(?peer, "incoming stream closed before its first frame");
                return;
            }
            Ok(Err(s)) => {
                warn!(?peer, error = %s, "incoming stream failed before its first frame");
                let _ = tx.try_send(Err(s));
                return;
            }
            Err(_) => {
                warn!(
                    ?peer,
                    "closing incoming connection: no first frame within the negotiation timeout"
                );
                let _ = tx.try_send(Err(Status::deadline_exceeded("link negotiation timed out")));
                return;
            }
        };
        let detected = match detect_generation(&first) {
            Ok(d) => d,
            Err(reason) => {
                warn!(?peer, %reason, "closing incoming connection");
                let _ = tx.try_send(Err(Status::invalid_argument(reason)));
                return;
            }
        };
        let generation = match &detected {
            Detected::V1(_) => Generation::V1,
            Detected::V3(_) => Generation::V3,
        };
        let (kill_tx, kill_rx) = oneshot::channel();
        let conn = {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            let conn = match generation {
                Generation::V1 => st.v1.add_connection(ConnKind::Incoming),
                Generation::V3 => st.v3.add_connection(ConnKind::Incoming),
            };
            st.gens.insert(conn, generation);
            st.outs.insert(conn, Outbound::Remote(tx.clone()));
            st.kills.insert(conn, kill_tx);
            conn
        };
        info!(conn, ?peer, %generation, "incoming connection");
        match detected {
            Detected::V1(m) => {
                self.dispatch(conn, m).await;
                self.read_remote::<wire::Message>(conn, &mut stream, Some(&tx), Some(kill_rx))
                    .await;
            }
            Detected::V3(m) => {
                self.dispatch(conn, m).await;
                if self.lock().gens.contains_key(&conn) {
                    self.read_remote::<wire3::Message>(conn, &mut stream, Some(&tx), Some(kill_rx))
                        .await;
                }
            }
        }
        self.drop_conn(conn).await;
    }
}

/// Registers a negotiated outgoing link with forwarder `f` (or gives an
/// existing connection its new link state).
fn register<F: Frame>(
    f: &mut Forwarder<F>,
    existing: Option<ConnId>,
    link: F::Link,
) -> Option<ConnId> {
    match existing {
        Some(conn) => f.replace_link(conn, link).then_some(conn),
        None => Some(f.add_negotiated(link)),
    }
}

/// The frames to send on a freshly negotiated link, encoded: its replay,
/// plus the announcements if it just became upstream.
fn link_replay<F: NodeFrame>(f: &mut Forwarder<F>, conn: ConnId, announce: bool) -> Vec<Bytes> {
    let mut frames = if announce {
        f.set_upstream(conn)
    } else {
        Vec::new()
    };
    frames.extend(f.link_ready(conn));
    frames
        .into_iter()
        .map(|m| Bytes::from(m.encode_to_vec()))
        .collect()
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

/// The gRPC face of the node.
struct NodeService {
    inner: Arc<Inner>,
}

/// Releases an incoming-connection slot when its stream ends.
struct Slot(Arc<Inner>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.incoming = st.incoming.saturating_sub(1);
    }
}

#[tonic::async_trait]
impl RawHandler for NodeService {
    async fn open_channel(
        &self,
        request: Request<Streaming<Bytes>>,
    ) -> Result<Response<RawStream>, Status> {
        let peer = request.remote_addr();
        let stream = request.into_inner();
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        {
            let mut st = self.inner.lock();
            if st.closed {
                return Err(Status::unavailable("node is shutting down"));
            }
            if st.incoming >= st.limits.max_connections {
                warn!(
                    ?peer,
                    limit = st.limits.max_connections,
                    "incoming connection refused: too many connections"
                );
                return Err(Status::resource_exhausted("too many connections"));
            }
            st.incoming += 1;
        }
        let slot = Slot(self.inner.clone());
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let _slot = slot;
            inner.serve_incoming(stream, tx, peer).await;
        });
        {
            let mut st = self.inner.lock();
            st.accepting.retain(|h| !h.is_finished());
            st.accepting.push(task);
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
