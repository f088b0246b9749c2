//! `Service`: the I/O shell around the [`Forwarder`] — in-process app
//! connections, a gRPC server (`DataPlaneService/OpenChannel`), outgoing
//! links with reconnect and replay, and remote subscription-ack waits.
//!
//! One tokio task per connection reads its inbound stream and runs each
//! message through the forwarder under a short synchronous lock; the
//! resulting sends happen after the lock is released, into bounded
//! per-connection channels. This module decides nothing about routing (that
//! is the forwarder's job) and never holds a lock across `.await`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Endpoint, Server, server::TcpIncoming};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::forwarder::{Action, ConnKind, Forwarder, ack_message};
pub use crate::forwarder::{
    ConnId, ForwardError, ForwardErrorKind, SessionContext, TransportError,
};
use crate::name::Name;
use crate::wire::{
    self,
    data_plane_service_client::DataPlaneServiceClient,
    data_plane_service_server::{DataPlaneService, DataPlaneServiceServer},
    message::MessageType,
};

/// Capacity of every per-connection channel.
const CHANNEL_CAPACITY: usize = 1024;
/// Largest message accepted from a peer (tonic's default, as SLIM).
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// Wait for a peer's SubscriptionAck before re-sending (SLIM: 5 s).
const REMOTE_ACK_WAIT: Duration = Duration::from_secs(5);
/// Re-sends after the first wait (SLIM: 3, so 4 waits in total).
const REMOTE_ACK_RETRIES: u32 = 3;
/// How long an outgoing link keeps trying to reconnect before giving up.
const RECONNECT_WINDOW: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An in-process app connection to the forwarder.
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

#[derive(Clone)]
enum Outbound {
    Local(mpsc::Sender<Result<wire::Message, ForwardError>>),
    Remote(mpsc::Sender<wire::Message>),
}

type Delivery = (Outbound, Result<wire::Message, ForwardError>);

#[derive(Default)]
struct State {
    core: Forwarder,
    outs: HashMap<ConnId, Outbound>,
    /// The task reading each connection (and reconnecting outgoing links).
    tasks: HashMap<ConnId, JoinHandle<()>>,
    /// Remote-ack waits by (link, subscription id).
    pending: HashMap<(ConnId, u64), oneshot::Sender<wire::SubscriptionAck>>,
    ack_waiters: Vec<JoinHandle<()>>,
    servers: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
    tap: Option<mpsc::Sender<wire::Message>>,
    closed: bool,
}

struct Inner {
    state: Mutex<State>,
}

/// A SLIM data-plane node: in-process by default, optionally serving gRPC
/// and linked to other nodes. Cheap to clone (shared state).
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

impl Service {
    /// An in-process forwarder with no sockets.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
            }),
        }
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
        if self.inner.lock().closed {
            return Err(TransportError::Shutdown);
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| TransportError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| TransportError::Bind { addr, source })?;
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let svc = DataPlaneServiceServer::new(NodeService {
            inner: self.inner.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE_SIZE);
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
        info!(%local, "data-plane server listening");
        Ok(local)
    }

    /// Opens a link to a node (`http://127.0.0.1:P` or `127.0.0.1:P`).
    pub async fn connect(&self, endpoint: &str) -> Result<ConnId, TransportError> {
        self.connect_link(endpoint, false).await
    }

    /// Opens an *upstream* link: every name subscribed here by another
    /// connection is announced on it, and traffic this node cannot deliver
    /// goes up it (see the forwarder's module doc). This stands in for the
    /// routes a SLIM control plane would configure.
    pub async fn connect_upstream(&self, endpoint: &str) -> Result<ConnId, TransportError> {
        self.connect_link(endpoint, true).await
    }

    async fn connect_link(&self, endpoint: &str, upstream: bool) -> Result<ConnId, TransportError> {
        let uri = endpoint_uri(endpoint);
        let ep = Endpoint::from_shared(uri.clone())
            .map_err(|e| TransportError::InvalidEndpoint {
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            })?
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT);
        self.connect_endpoint(ep, upstream).await
    }

    /// Opens a link over a prepared tonic endpoint (TLS settings included).
    pub async fn connect_endpoint(
        &self,
        ep: Endpoint,
        upstream: bool,
    ) -> Result<ConnId, TransportError> {
        let ep = ep.tcp_nodelay(true);
        let conn = {
            let mut st = self.inner.lock();
            if st.closed {
                return Err(TransportError::Shutdown);
            }
            st.core.add_connection(ConnKind::Outgoing)
        };
        let stream = match self.inner.open_link(conn, &ep).await {
            Ok(s) => s,
            Err(e) => {
                self.inner.lock().core.remove_connection(conn);
                return Err(e);
            }
        };
        if upstream {
            let deliveries = {
                let mut st = self.inner.lock();
                let msgs = st.core.set_upstream(conn);
                let out = st.outs.get(&conn).cloned();
                out.map(|o| msgs.into_iter().map(|m| (o.clone(), Ok(m))).collect())
                    .unwrap_or_else(Vec::new)
            };
            deliver_all(deliveries).await;
        }
        let uri = ep.uri().to_string();
        let inner = self.inner.clone();
        let task = tokio::spawn(async move { inner.run_link(conn, ep, stream).await });
        self.inner.lock().tasks.insert(conn, task);
        info!(conn, endpoint = %uri, upstream, "link established");
        Ok(conn)
    }

    /// Closes a connection (any kind) and drops its routes.
    pub async fn disconnect(&self, conn: ConnId) -> Result<(), TransportError> {
        let task = {
            let mut st = self.inner.lock();
            if st.core.kind(conn).is_none() {
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

    /// A new in-process app connection. Must be called inside a tokio
    /// runtime (it spawns the connection's reader task).
    pub fn local_connection(&self) -> LocalConnection {
        let (app_tx, mut fwd_rx) = mpsc::channel::<wire::Message>(CHANNEL_CAPACITY);
        let (fwd_tx, app_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let id = {
            let mut st = self.inner.lock();
            let id = st.core.add_connection(ConnKind::Local);
            if !st.closed {
                st.outs.insert(id, Outbound::Local(fwd_tx));
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
        if st.core.kind(id).is_some() {
            st.tasks.insert(id, task);
        }
        LocalConnection {
            id,
            tx: app_tx,
            rx: app_rx,
        }
    }

    /// Stops the servers, closes every connection and stops every task.
    pub async fn shutdown(&self) {
        let (servers, tasks, waiters, conns) = {
            let mut st = self.inner.lock();
            st.closed = true;
            st.outs.clear();
            st.pending.clear();
            st.tap = None;
            let conns = st.core.connections();
            for c in &conns {
                st.core.remove_connection(*c);
            }
            (
                std::mem::take(&mut st.servers),
                std::mem::take(&mut st.tasks),
                std::mem::take(&mut st.ack_waiters),
                conns.len(),
            )
        };
        for (_, t) in tasks {
            t.abort();
        }
        for t in waiters {
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

    /// Test tap: a copy of every Publish the forwarder sends from now on
    /// (dropped when the receiver lags).
    pub fn tap_publishes(&self, capacity: usize) -> mpsc::Receiver<wire::Message> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.inner.lock().tap = Some(tx);
        rx
    }

    /// The connections subscribed to exactly `name` (diagnostics, tests).
    pub fn subscribers(&self, name: &Name) -> Vec<ConnId> {
        self.inner.lock().core.subscribers(name.components())
    }

    /// The version a remote peer announced in link negotiation.
    pub fn peer_version(&self, conn: ConnId) -> Option<String> {
        self.inner.lock().core.peer_version(conn)
    }

    /// Every open connection index.
    pub fn connections(&self) -> Vec<ConnId> {
        self.inner.lock().core.connections()
    }
}

async fn deliver(out: Outbound, item: Result<wire::Message, ForwardError>) {
    match (out, item) {
        (Outbound::Local(tx), item) => {
            if tx.send(item).await.is_err() {
                debug!("local app gone; message dropped");
            }
        }
        (Outbound::Remote(tx), Ok(m)) => {
            if tx.send(m).await.is_err() {
                debug!("link closed; message dropped");
            }
        }
        (Outbound::Remote(_), Err(_)) => {}
    }
}

async fn deliver_all(deliveries: Vec<Delivery>) {
    for (out, item) in deliveries {
        deliver(out, item).await;
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in the forwarder;
        // keep serving with whatever state it left rather than cascading.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one inbound message through the forwarder, then sends.
    async fn dispatch(self: &Arc<Self>, conn: ConnId, msg: wire::Message) {
        let deliveries = {
            let mut st = self.lock();
            let actions = st.core.handle(conn, msg);
            self.resolve(&mut st, actions)
        };
        deliver_all(deliveries).await;
    }

    /// Turns forwarder actions into deliveries (under the lock, no await).
    fn resolve(self: &Arc<Self>, st: &mut State, actions: Vec<Action>) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(actions.len());
        for a in actions {
            match a {
                Action::Send { conn, msg } => {
                    if let Some(tap) = &st.tap
                        && matches!(msg.message_type, Some(MessageType::Publish(_)))
                    {
                        let _ = tap.try_send(msg.clone());
                    }
                    match st.outs.get(&conn) {
                        Some(o) => out.push((o.clone(), Ok(msg))),
                        None => debug!(conn, "connection not writable; message dropped"),
                    }
                }
                Action::Error { conn, error } => {
                    if let Some(o @ Outbound::Local(_)) = st.outs.get(&conn) {
                        out.push((o.clone(), Err(error)));
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
            }
        }
        out
    }

    /// SLIM's remote-ack path: wait 5 s, re-send, up to 4 waits; then ack
    /// the subscriber with the peer's answer or a timeout error.
    async fn wait_remote_ack(
        self: Arc<Self>,
        link: ConnId,
        subscription_id: u64,
        reply_to: ConnId,
        resend: wire::Message,
        mut rx: oneshot::Receiver<wire::SubscriptionAck>,
    ) {
        let mut result = Err(format!(
            "remote subscription ack timed out after {REMOTE_ACK_RETRIES} retries"
        ));
        for attempt in 0..=REMOTE_ACK_RETRIES {
            if attempt > 0 {
                debug!(link, subscription_id, attempt, "re-sending subscription");
                let out = self.lock().outs.get(&link).cloned();
                if let Some(o) = out {
                    deliver(o, Ok(resend.clone())).await;
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
        let out = {
            let mut st = self.lock();
            st.pending.remove(&(link, subscription_id));
            st.outs.get(&reply_to).cloned()
        };
        if let Some(o) = out {
            deliver(o, Ok(ack_message(subscription_id, result))).await;
        }
    }

    /// Drops a connection's state and routes (its task is stopped by the
    /// caller or is the caller).
    async fn drop_conn(self: &Arc<Self>, conn: ConnId) {
        let deliveries = {
            let mut st = self.lock();
            let actions = st.core.remove_connection(conn);
            st.outs.remove(&conn);
            st.tasks.remove(&conn);
            st.pending.retain(|(l, _), _| *l != conn);
            self.resolve(&mut st, actions)
        };
        deliver_all(deliveries).await;
    }

    /// Reads one remote stream until it ends.
    async fn read_remote(self: &Arc<Self>, conn: ConnId, mut stream: Streaming<wire::Message>) {
        loop {
            match stream.message().await {
                Ok(Some(m)) => self.dispatch(conn, m).await,
                Ok(None) => {
                    info!(conn, "stream closed by peer");
                    break;
                }
                Err(status) => {
                    warn!(
                        conn,
                        code = ?status.code(),
                        message = %status.message(),
                        "closing connection: stream error"
                    );
                    break;
                }
            }
        }
    }

    /// Opens (or re-opens) the gRPC stream of outgoing link `conn`: link
    /// request first, then the replayed subscriptions.
    async fn open_link(
        self: &Arc<Self>,
        conn: ConnId,
        ep: &Endpoint,
    ) -> Result<Streaming<wire::Message>, TransportError> {
        let endpoint = ep.uri().to_string();
        let channel = ep.connect().await.map_err(|e| TransportError::Connect {
            endpoint: endpoint.clone(),
            reason: format!("{e}: {}", source_chain(&e)),
        })?;
        let mut client =
            DataPlaneServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_SIZE);
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let first = self
            .lock()
            .core
            .link_up(conn, uuid::Uuid::new_v4().to_string());
        let mut first = first.into_iter();
        if let Some(link_request) = first.next() {
            // Queued before the stream opens, so it is the first message.
            let _ = tx.try_send(link_request);
        }
        let response = client
            .open_channel(ReceiverStream::new(rx))
            .await
            .map_err(|s| TransportError::Connect {
                endpoint: endpoint.clone(),
                reason: s.to_string(),
            })?;
        for m in first {
            if tx.send(m).await.is_err() {
                break;
            }
        }
        self.lock().outs.insert(conn, Outbound::Remote(tx));
        Ok(response.into_inner())
    }

    /// Owns an outgoing link: reads it, and on loss reconnects with backoff
    /// (same connection index, subscriptions replayed), giving up after
    /// [`RECONNECT_WINDOW`].
    async fn run_link(
        self: Arc<Self>,
        conn: ConnId,
        ep: Endpoint,
        first: Streaming<wire::Message>,
    ) {
        let mut stream = first;
        loop {
            self.read_remote(conn, stream).await;
            {
                let mut st = self.lock();
                st.outs.remove(&conn);
                if st.closed {
                    return;
                }
            }
            info!(conn, endpoint = %ep.uri(), "link lost; reconnecting");
            let start = Instant::now();
            let mut backoff = Duration::from_millis(50);
            stream = loop {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                match self.open_link(conn, &ep).await {
                    Ok(s) => {
                        info!(conn, "link re-established; subscriptions replayed");
                        break s;
                    }
                    Err(e) if start.elapsed() < RECONNECT_WINDOW => {
                        debug!(conn, error = %e, "reconnect attempt failed");
                    }
                    Err(e) => {
                        warn!(conn, error = %e, "giving up on link");
                        self.drop_conn(conn).await;
                        return;
                    }
                }
            };
        }
    }
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

type OutStream = Pin<Box<dyn Stream<Item = Result<wire::Message, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl DataPlaneService for NodeService {
    type OpenChannelStream = OutStream;

    async fn open_channel(
        &self,
        request: Request<Streaming<wire::Message>>,
    ) -> Result<Response<Self::OpenChannelStream>, Status> {
        let peer = request.remote_addr();
        let stream = request.into_inner();
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let conn = {
            let mut st = self.inner.lock();
            if st.closed {
                return Err(Status::unavailable("node is shutting down"));
            }
            let conn = st.core.add_connection(ConnKind::Incoming);
            st.outs.insert(conn, Outbound::Remote(tx));
            conn
        };
        info!(conn, ?peer, "incoming connection");
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            inner.read_remote(conn, stream).await;
            inner.drop_conn(conn).await;
        });
        {
            let mut st = self.inner.lock();
            if st.core.kind(conn).is_some() {
                st.tasks.insert(conn, task);
            }
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(Ok))))
    }
}
