//! Server side: method registry, per-session demultiplexer, handler tasks.
//!
//! Job: accept sessions (P2P or group: the server does not care), route every
//! frame by `rpc-id` exactly as SLIM v1.3 does (§g.4: echoes and other
//! servers' frames are dropped), run one task per call under its deadline,
//! answer `response… EOS` or one error frame, survive panicking handlers, and
//! shut down gracefully (`Cancelled "Server shutting down"`).
//! Must not: hold a lock across `.await`, leave a task or a stream entry
//! behind once a call ended, or let peer input panic it.
//!
//! Requirement on the seam: [`RpcSessionEvents::recv`] must be cancel-safe
//! (as `mpsc::Receiver::recv` is): the demultiplexer selects on it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use futures::future::{BoxFuture, FutureExt};
use futures::stream::{Stream, StreamExt};
use slim_transport::Name;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::code::Code;
use crate::context::{Context, Input, RawRequests, RequestStream};
use crate::error::RpcError;
use crate::interceptor::{Chain, Interceptor, Request};
use crate::lane::{LaneTx, Push, lane};
use crate::metadata::{
    METHOD_KEY, Metadata, SERVICE_KEY, STATUS_CODE_KEY, deadline_from_metadata, frame_code,
    is_cancel, is_client_frame, is_eos, response_frame, rpc_id, status_frame,
};
use crate::response_meta::Outgoing;
use crate::transport::{
    ConnId, IncomingMessage, IntoTransport, RpcSessionEvents, RpcSessionHandle, RpcTransport,
    SessionKind, TransportEvent, TransportSession,
};
use slim_transport::session::InboundFilter;

/// Request frames a stream-input call buffers for a handler that has not
/// read them yet, by default (see [`Server::set_request_buffer`]).
pub const REQUEST_BUFFER: usize = 1024;
/// How long a handler holding more than its request buffer may go without
/// taking a request before its request stream is ended. Nobody waits for
/// it meanwhile.
pub const REQUEST_BUFFER_WAIT: Duration = Duration::from_secs(1);
/// How long a cancelled call's handler may go on (seeing
/// [`Context::is_cancelled`]) before it is stopped.
pub const CANCEL_GRACE: Duration = Duration::from_millis(500);

/// How long shutdown waits for handlers to send their `Cancelled` answer.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Why the demultiplexer dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No (or an empty) `rpc-id`.
    NoRpcId,
    /// For an open stream, but not a client frame (an echo or a peer server's frame).
    NotAClientFrame,
    /// A server frame, or client EOS #2, for no open stream.
    ServerFrame,
    /// A new call without `service` or `method`.
    NoServiceOrMethod,
}

/// What the demultiplexer does with a frame (§g.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Drop(DropReason),
    /// Feed it to the open stream-input call `rpc_id`.
    ToStream {
        rpc_id: String,
    },
    /// Start call `rpc_id` of `service/method`.
    NewCall {
        rpc_id: String,
        service: String,
        method: String,
    },
    /// The caller cancelled call `rpc_id` ([`crate::metadata::client_cancel`]).
    Cancel {
        rpc_id: String,
    },
}

/// Decides a frame's fate; `open_stream(id)` tells whether a stream-input
/// call with that id is still reading.
pub fn decide(metadata: &Metadata, open_stream: impl Fn(&str) -> bool) -> Decision {
    let Some(id) = rpc_id(metadata) else {
        return Decision::Drop(DropReason::NoRpcId);
    };
    if is_cancel(metadata) {
        return Decision::Cancel {
            rpc_id: id.to_string(),
        };
    }
    if open_stream(id) {
        return if is_client_frame(metadata) {
            Decision::ToStream {
                rpc_id: id.to_string(),
            }
        } else {
            Decision::Drop(DropReason::NotAClientFrame)
        };
    }
    if metadata.contains_key(STATUS_CODE_KEY) && !is_client_frame(metadata) {
        return Decision::Drop(DropReason::ServerFrame);
    }
    let non_empty = |k: &str| metadata.get(k).filter(|v| !v.is_empty()).cloned();
    match (non_empty(SERVICE_KEY), non_empty(METHOD_KEY)) {
        (Some(service), Some(method)) => Decision::NewCall {
            rpc_id: id.to_string(),
            service,
            method,
        },
        _ => Decision::Drop(DropReason::NoServiceOrMethod),
    }
}

/// How many unary-input calls [`Unneeded`] remembers per session before it
/// starts over (a client that never sends EOS #1 must not grow it forever;
/// forgetting only costs a decryption).
const UNARY_MEMORY: usize = 4096;

/// Picks, from clear-text metadata alone, the frames the demultiplexer of
/// one session would drop whatever its state, so that the session
/// acknowledges them without an MLS decryption (installed with
/// [`RpcTransport::set_accept_filter`]; with MLS every frame costs an
/// Ed25519 check). A unary call's client EOS #1 and EOS #2 are two of its
/// three client frames.
///
/// It agrees with [`decide`] on every frame it picks:
/// * no `rpc-id`: dropped by [`decide`] in every state;
/// * a status code without `slimrpc-dir=req` (client EOS #2, echoes, other
///   servers' frames): dropped whether or not a stream is open;
/// * a later client frame (no `service`/`method`) of a call whose first
///   frame named a method that does not read a stream: no stream is open
///   for it, so [`decide`] drops it (`NoServiceOrMethod`).
///
/// Anything else, first frames included, is delivered. It sees frames in
/// arrival order: a reordered EOS #1 that arrives before its call's first
/// frame is simply delivered (and dropped by the demultiplexer).
pub struct Unneeded {
    /// `service/method` of the stream-input handlers.
    stream_input: Arc<HashSet<String>>,
    /// Calls started with a first frame of a method that reads no stream.
    unary: HashSet<String>,
}

impl Unneeded {
    /// For a server whose stream-input methods are `stream_input`
    /// (`service/method`).
    pub fn new(stream_input: Arc<HashSet<String>>) -> Self {
        Self {
            stream_input,
            unary: HashSet::new(),
        }
    }

    /// True when the demultiplexer will drop this frame, whatever it holds.
    pub fn skip(&mut self, metadata: &Metadata) -> bool {
        let Some(id) = rpc_id(metadata) else {
            return true;
        };
        if !is_client_frame(metadata) {
            // A peer's shared response is for the handler of that call.
            return metadata.contains_key(STATUS_CODE_KEY)
                && !crate::shared::is_shared_response(metadata);
        }
        if is_cancel(metadata) {
            self.unary.remove(id);
            return false;
        }
        let non_empty = |k: &str| metadata.get(k).filter(|v| !v.is_empty());
        if let (Some(service), Some(method)) = (non_empty(SERVICE_KEY), non_empty(METHOD_KEY)) {
            if self.stream_input.contains(&format!("{service}/{method}")) {
                self.unary.remove(id);
            } else if !metadata.contains_key(STATUS_CODE_KEY) {
                if self.unary.len() >= UNARY_MEMORY {
                    self.unary.clear();
                }
                self.unary.insert(id.to_string());
            }
            return false;
        }
        if metadata.contains_key(STATUS_CODE_KEY) {
            // EOS #1 (or an error) ends the client's frames of this call.
            self.unary.remove(id)
        } else {
            self.unary.contains(id)
        }
    }
}

/// Sends one call's answer frames.
#[derive(Clone)]
struct Responder {
    handle: Arc<dyn RpcSessionHandle>,
    caller: Name,
    rpc_id: String,
    /// Headers and trailers the handler set ([`crate::response_meta`]).
    meta: Outgoing,
    /// A shared-responses call: responses and EOS go to the whole group.
    shared: bool,
    /// Whether a unary-output answer is followed by an EOS: in a group
    /// session, where official callers count one per member, unless the
    /// caller said it takes the answer as the end
    /// ([`crate::metadata::ANSWER_ENDS_KEY`]), and always for a
    /// shared-responses call (the peers count EOS too). In a point-to-point
    /// session the answer ends the call for every client (ours, and the
    /// official 1.3.0 and 3.x ones, whose `unary` returns at the first
    /// response), so an EOS there is a frame nobody reads.
    eos_after_answer: bool,
}

impl Responder {
    /// A response message: `rpc-id` only, no status code (SlimRPC 3.x puts
    /// the code on terminal frames only, so a zero-length response such as
    /// `google.protobuf.Empty` is never read as the end of the stream; 1.x
    /// clients read an absent code as OK).
    async fn response(&self, payload: Vec<u8>) -> Result<(), RpcError> {
        self.send_response(payload, false).await
    }

    /// The one response of a unary-output method: it carries the
    /// trailers too (the handler returned; the caller stops there), then
    /// the EOS follows where a caller counts it (`eos_after_answer`).
    async fn answer(&self, payload: Vec<u8>) -> Result<(), RpcError> {
        self.send_response(payload, true).await?;
        if !self.eos_after_answer {
            return Ok(());
        }
        self.eos().await
    }

    async fn send_response(&self, payload: Vec<u8>, last: bool) -> Result<(), RpcError> {
        let meta = self.meta.stamp(response_frame(&self.rpc_id), last);
        self.deliver(payload, meta).await
    }

    /// A response or EOS frame: unicast to the caller, or to the whole
    /// group (marked) for a shared-responses call.
    async fn deliver(&self, payload: Vec<u8>, mut meta: Metadata) -> Result<(), RpcError> {
        let sent = if self.shared {
            meta.insert(crate::shared::SHARED_RESPONSE_KEY.into(), "true".into());
            self.handle.publish(payload, meta).await
        } else {
            self.handle
                .publish_unicast(&self.caller, payload, meta)
                .await
        };
        sent.map_err(|e| RpcError::internal(format!("Failed to send response: {e}")))
    }

    /// The end of this member's response stream: empty, code OK.
    async fn eos(&self) -> Result<(), RpcError> {
        self.deliver(
            Vec::new(),
            self.meta.stamp(status_frame(Code::Ok, &self.rpc_id), true),
        )
        .await
    }

    /// One error frame, to the caller only (in a group session too, as
    /// SlimRPC 3.x does: the other members have nothing to do with it).
    /// Never followed by an EOS.
    async fn error(&self, e: &RpcError) {
        let code = match e.code() {
            // An error frame with code 0 would read as data or EOS.
            Code::Ok => Code::Unknown,
            c => c,
        };
        let sent = self
            .handle
            .publish_unicast(
                &self.caller,
                e.message().into_bytes(),
                self.meta.stamp(status_frame(code, &self.rpc_id), true),
            )
            .await;
        if let Err(err) = sent {
            tracing::warn!(rpc_id = %self.rpc_id, error = %err, "failed to send error frame");
        }
    }

    async fn stream<Res, S>(&self, responses: S) -> Result<(), RpcError>
    where
        Res: prost::Message,
        S: Stream<Item = Result<Res, RpcError>>,
    {
        let mut responses = std::pin::pin!(responses);
        while let Some(r) = responses.next().await {
            self.response(r?.encode_to_vec()).await?;
        }
        self.eos().await
    }
}

type CallFuture = BoxFuture<'static, Result<(), RpcError>>;
type UnaryInputFn = Arc<dyn Fn(Vec<u8>, Context, Responder) -> CallFuture + Send + Sync>;
type StreamInputFn = Arc<dyn Fn(RawRequests, Context, Responder) -> CallFuture + Send + Sync>;

#[derive(Clone)]
enum Handler {
    UnaryInput(UnaryInputFn),
    StreamInput(StreamInputFn),
}

fn decode<Req: prost::Message + Default>(bytes: &[u8]) -> Result<Req, RpcError> {
    Req::decode(bytes).map_err(|e| RpcError::internal(format!("Failed to decode request: {e}")))
}

/// A SlimRPC server: register handlers, then [`Server::start`].
///
/// The same handler serves point-to-point and group callers.
pub struct Server {
    transport: Arc<dyn RpcTransport>,
    base_name: Name,
    connection: Option<ConnId>,
    handlers: HashMap<String, Handler>,
    request_buffer: usize,
    interceptors: ServerInterceptors,
    shared_responses: bool,
}

impl Server {
    /// A server for `app`, reachable as `base_name` (`org/ns/service`).
    pub fn new(app: impl IntoTransport, base_name: Name) -> Self {
        Self {
            transport: app.into_transport(),
            base_name,
            connection: None,
            handlers: HashMap::new(),
            request_buffer: REQUEST_BUFFER,
            interceptors: ServerInterceptors::default(),
            shared_responses: false,
        }
    }

    /// Runs `interceptor` when any call starts, before its handler (after
    /// the interceptors added before it). An error answers the call with
    /// that error, and its handler never runs. See [`crate::interceptor`].
    pub fn add_interceptor(&mut self, interceptor: impl Interceptor) -> &mut Self {
        self.interceptors.all = self.interceptors.all.with(interceptor);
        self
    }

    /// Like [`Self::add_interceptor`], for the calls of `service`
    /// (`package.Service`) only; they run after the server-wide ones.
    pub fn intercept_service(&mut self, service: &str, interceptor: impl Interceptor) -> &mut Self {
        let chain = self
            .interceptors
            .per_service
            .entry(service.to_string())
            .or_default();
        *chain = chain.with(interceptor);
        self
    }

    /// Takes part in shared-responses calls (see [`crate::shared`]): for a
    /// call whose caller asked for it, responses go to the whole group and
    /// the handler reads its peers' from [`Context::peer_responses`].
    /// Off by default: such calls are then answered as any other.
    pub fn set_shared_responses(&mut self, on: bool) -> &mut Self {
        self.shared_responses = on;
        self
    }

    /// How many request frames a stream-input call may hold for a handler
    /// that has not read them (default [`REQUEST_BUFFER`], at least 1).
    /// Past it, the call keeps receiving as long as its handler takes a
    /// request at least every [`REQUEST_BUFFER_WAIT`], up to
    /// [`hold_limit`](crate::dispatcher::hold_limit) frames (twice the
    /// buffer); a handler that takes none for that long, or lets that many
    /// pile up, has its request stream ended with `ResourceExhausted`. The
    /// session's reader never waits for a handler, so the other calls of
    /// the session keep going, and memory stays bounded.
    pub fn set_request_buffer(&mut self, frames: usize) -> &mut Self {
        self.request_buffer = frames.max(1);
        self
    }

    /// A server whose base name is also subscribed on link `conn` (the app
    /// reaches its clients through a remote SLIM node).
    pub fn new_with_connection(app: impl IntoTransport, base_name: Name, conn: ConnId) -> Self {
        let mut s = Self::new(app, base_name);
        s.connection = Some(conn);
        s
    }

    fn insert(&mut self, service: &str, method: &str, h: Handler) {
        self.handlers.insert(format!("{service}/{method}"), h);
    }

    /// Registers a unary handler for `service/method` (`package.Service`, `Method`).
    pub fn register_unary_unary<Req, Res, F, Fut>(
        &mut self,
        service: &str,
        method: &str,
        handler: F,
    ) where
        Req: prost::Message + Default + 'static,
        Res: prost::Message + 'static,
        F: Fn(Req, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Res, RpcError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let f: UnaryInputFn = Arc::new(move |bytes, ctx, out| {
            let handler = handler.clone();
            async move {
                let res = handler(decode::<Req>(&bytes)?, ctx).await?;
                out.answer(res.encode_to_vec()).await
            }
            .boxed()
        });
        self.insert(service, method, Handler::UnaryInput(f));
    }

    /// Registers a unary-stream handler: it returns a stream of responses.
    pub fn register_unary_stream<Req, Res, S, F, Fut>(
        &mut self,
        service: &str,
        method: &str,
        handler: F,
    ) where
        Req: prost::Message + Default + 'static,
        Res: prost::Message + 'static,
        S: Stream<Item = Result<Res, RpcError>> + Send + 'static,
        F: Fn(Req, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S, RpcError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let f: UnaryInputFn = Arc::new(move |bytes, ctx, out| {
            let handler = handler.clone();
            async move {
                let responses = handler(decode::<Req>(&bytes)?, ctx).await?;
                out.stream(responses).await
            }
            .boxed()
        });
        self.insert(service, method, Handler::UnaryInput(f));
    }

    /// Registers a stream-unary handler: it reads a [`RequestStream`].
    pub fn register_stream_unary<Req, Res, F, Fut>(
        &mut self,
        service: &str,
        method: &str,
        handler: F,
    ) where
        Req: prost::Message + Default + Send + 'static,
        Res: prost::Message + 'static,
        F: Fn(RequestStream<Req>, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Res, RpcError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let f: StreamInputFn = Arc::new(move |raw, ctx, out| {
            let handler = handler.clone();
            async move {
                let res = handler(RequestStream::new(raw), ctx).await?;
                out.answer(res.encode_to_vec()).await
            }
            .boxed()
        });
        self.insert(service, method, Handler::StreamInput(f));
    }

    /// Registers a stream-stream handler.
    pub fn register_stream_stream<Req, Res, S, F, Fut>(
        &mut self,
        service: &str,
        method: &str,
        handler: F,
    ) where
        Req: prost::Message + Default + Send + 'static,
        Res: prost::Message + 'static,
        S: Stream<Item = Result<Res, RpcError>> + Send + 'static,
        F: Fn(RequestStream<Req>, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<S, RpcError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let f: StreamInputFn = Arc::new(move |raw, ctx, out| {
            let handler = handler.clone();
            async move {
                let responses = handler(RequestStream::new(raw), ctx).await?;
                out.stream(responses).await
            }
            .boxed()
        });
        self.insert(service, method, Handler::StreamInput(f));
    }

    /// The registered method paths (`package.Service/Method`), sorted.
    pub fn methods(&self) -> Vec<String> {
        let mut m: Vec<String> = self.handlers.keys().cloned().collect();
        m.sort();
        m
    }

    /// Subscribes the base name and starts accepting sessions.
    pub async fn start(self) -> Result<ServerHandle, RpcError> {
        self.transport
            .subscribe(&self.base_name, self.connection)
            .await
            .map_err(|e| {
                RpcError::unavailable(format!("Failed to subscribe {}: {e}", self.base_name))
            })?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let stats = Arc::new(Stats::default());
        let stream_input: Arc<HashSet<String>> = Arc::new(
            self.handlers
                .iter()
                .filter(|(_, h)| matches!(h, Handler::StreamInput(_)))
                .map(|(path, _)| path.clone())
                .collect(),
        );
        let counted = stats.clone();
        self.transport
            .set_accept_filter(Arc::new(move || -> InboundFilter {
                let mut unneeded = Unneeded::new(stream_input.clone());
                let stats = counted.clone();
                Box::new(move |_source: &Name, metadata: &Metadata| {
                    let skip = unneeded.skip(metadata);
                    if skip {
                        stats.skipped.fetch_add(1, Ordering::Relaxed);
                    }
                    skip
                })
            }));
        let shared = Arc::new(Shared {
            interceptors: self.interceptors,
            handlers: self.handlers,
            stats: stats.clone(),
            request_buffer: self.request_buffer,
            shared_responses: self.shared_responses,
            base_name: self.base_name.clone(),
        });
        tracing::info!(base_name = %self.base_name, "slimrpc server started");
        let task = tokio::spawn(accept_loop(self.transport, shared, shutdown_rx));
        Ok(ServerHandle {
            shutdown_tx,
            task: Some(task),
            stats,
        })
    }
}

#[derive(Default)]
struct Stats {
    sessions: AtomicUsize,
    handlers: AtomicUsize,
    streams: AtomicUsize,
    skipped: AtomicUsize,
}

/// The server's interceptors: for every call, then per service.
#[derive(Default)]
struct ServerInterceptors {
    all: Chain,
    per_service: HashMap<String, Chain>,
}

impl ServerInterceptors {
    /// Runs the interceptors of a starting call; the metadata its handler
    /// sees, or the error to answer.
    fn run(&self, ctx: &Context) -> Result<Option<Metadata>, RpcError> {
        let per_service = self.per_service.get(ctx.service());
        if self.all.is_empty() && per_service.is_none() {
            return Ok(None);
        }
        let mut request =
            Request::for_call((), ctx.metadata().clone(), ctx.service(), ctx.method())
                .with_caller(ctx.caller().clone(), ctx.peer_subject().map(str::to_string));
        request = self.all.run(request)?;
        if let Some(chain) = per_service {
            request = chain.run(request)?;
        }
        Ok(Some(std::mem::take(request.metadata_mut())))
    }
}

struct Shared {
    interceptors: ServerInterceptors,
    handlers: HashMap<String, Handler>,
    stats: Arc<Stats>,
    request_buffer: usize,
    shared_responses: bool,
    base_name: Name,
}

/// Counts one live thing in `Stats` for as long as it exists.
struct Counted {
    stats: Arc<Stats>,
    which: fn(&Stats) -> &AtomicUsize,
}

impl Counted {
    fn new(stats: &Arc<Stats>, which: fn(&Stats) -> &AtomicUsize) -> Self {
        which(stats).fetch_add(1, Ordering::SeqCst);
        Self {
            stats: stats.clone(),
            which,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        (self.which)(&self.stats).fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running server. Dropping it aborts everything; [`ServerHandle::shutdown`]
/// stops gracefully.
pub struct ServerHandle {
    shutdown_tx: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    stats: Arc<Stats>,
}

impl ServerHandle {
    /// Stops accepting, answers every running call with `Cancelled "Server
    /// shutting down"`, closes the sessions and waits for all of it.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "server task ended abnormally");
        }
    }

    /// Sessions currently served.
    pub fn active_sessions(&self) -> usize {
        self.stats.sessions.load(Ordering::SeqCst)
    }

    /// Handler tasks currently running.
    pub fn active_handlers(&self) -> usize {
        self.stats.handlers.load(Ordering::SeqCst)
    }

    /// Stream-input calls still registered for more input.
    pub fn open_streams(&self) -> usize {
        self.stats.streams.load(Ordering::SeqCst)
    }

    /// Frames the sessions acknowledged without decrypting or delivering
    /// them, because the demultiplexer would have dropped them (see
    /// [`Unneeded`]); 0 on a transport without such filters.
    pub fn skipped_frames(&self) -> usize {
        self.stats.skipped.load(Ordering::Relaxed)
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Resolves once `flag` is true (or its sender is gone, which also means stop).
async fn signalled(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|f| *f).await;
}

/// Resolves when a call's cancel signal fires; never when the signal is
/// dropped instead (the session ending stops handlers its own way).
async fn cancelled_by_caller(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|f| *f).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn accept_loop(
    transport: Arc<dyn RpcTransport>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sessions = JoinSet::new();
    let mut accept = Some(transport.accept_session());
    loop {
        tokio::select! {
            _ = signalled(&mut shutdown) => break,
            Some(done) = sessions.join_next(), if !sessions.is_empty() => {
                if let Err(e) = done && e.is_panic() {
                    tracing::error!("session task panicked");
                }
            }
            accepted = async { match accept.as_mut() { Some(f) => f.await, None => std::future::pending().await } } => {
                match accepted {
                    Ok(session) => {
                        tracing::debug!(session_id = session.handle.id(), "session accepted");
                        sessions.spawn(session_loop(session, shared.clone(), shutdown.clone()));
                        accept = Some(transport.accept_session());
                    }
                    Err(e) => {
                        // The app can no longer accept; keep serving what we have.
                        tracing::warn!(error = %e, "accepting sessions failed; no longer accepting");
                        accept = None;
                    }
                }
            }
        }
    }
    drop(accept);
    // Each session task saw the same signal and drains its handlers.
    while sessions.join_next().await.is_some() {}
    tracing::info!("slimrpc server stopped");
}

/// The per-session demultiplexer (§g.4).
async fn session_loop(
    session: TransportSession,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _live = Counted::new(&shared.stats, |s| &s.sessions);
    let TransportSession { handle, mut events } = session;
    let mut demux = Demux {
        group: handle.kind() == SessionKind::Group,
        handle: handle.clone(),
        shared: shared.clone(),
        pending: HashMap::new(),
        handlers: JoinSet::new(),
        cancel: watch::channel(false).0,
        calls: HashMap::new(),
        peers: HashMap::new(),
        early: HashMap::new(),
        counted_streams: 0,
    };
    let server_shutdown = loop {
        tokio::select! {
            _ = signalled(&mut shutdown) => break true,
            Some(done) = demux.handlers.join_next(), if !demux.handlers.is_empty() => {
                if let Err(e) = done && e.is_panic() {
                    tracing::error!("handler task panicked");
                }
                demux.prune();
            }
            event = events.recv() => match event {
                Some(TransportEvent::Message(msg)) => demux.route(msg).await,
                // A server serves whoever calls; membership is the caller's business.
                Some(TransportEvent::MemberLeft(_)) => {}
                Some(TransportEvent::MessageLost { source, message_id }) => {
                    demux.message_lost(&source, message_id)
                }
                None => break false,
            }
        }
    };
    demux.finish(server_shutdown, &mut events).await;
}

struct Demux {
    handle: Arc<dyn RpcSessionHandle>,
    /// A group session (not point-to-point): unary answers get an EOS.
    group: bool,
    shared: Arc<Shared>,
    /// Stream-input calls still reading input, by rpc-id: their caller and
    /// their input lane (which never makes the reader wait).
    pending: HashMap<String, (Name, LaneTx<Input>)>,
    handlers: JoinSet<()>,
    /// Fires when the server shuts down: running handlers answer `Cancelled`.
    cancel: watch::Sender<bool>,
    /// Running calls by rpc-id: their caller and the signal their caller's
    /// cancel frame fires. Entries go when the handler is done (`prune`).
    calls: HashMap<String, (Name, watch::Sender<bool>)>,
    /// Shared-responses calls running here, by rpc-id: where their peers'
    /// responses go.
    peers: HashMap<String, crate::shared::PeerSender>,
    /// Peer responses that arrived before their call's request did (the
    /// peers' frames and the caller's are not ordered with each other),
    /// by rpc-id; bounded, for a server that shares responses.
    early: HashMap<String, Vec<IncomingMessage>>,
    counted_streams: usize,
}

/// Calls whose early peer responses a session keeps, and frames per call.
const EARLY_CALLS: usize = 256;
const EARLY_FRAMES: usize = 64;

impl Demux {
    /// Keeps `Stats::streams` equal to the sum of every session's `pending`.
    fn sync_stream_count(&mut self) {
        let now = self.pending.len();
        let s = &self.shared.stats.streams;
        if now > self.counted_streams {
            s.fetch_add(now - self.counted_streams, Ordering::SeqCst);
        } else {
            s.fetch_sub(self.counted_streams - now, Ordering::SeqCst);
        }
        self.counted_streams = now;
    }

    /// Forgets stream entries whose handler finished (it answered without
    /// reading all its input).
    fn prune(&mut self) {
        self.pending.retain(|_, (_, tx)| !tx.is_closed());
        self.calls.retain(|_, (_, tx)| !tx.is_closed());
        self.peers.retain(|_, tx| !tx.is_closed());
        self.sync_stream_count();
    }

    async fn route(&mut self, msg: IncomingMessage) {
        if crate::shared::is_shared_response(&msg.metadata) && !is_client_frame(&msg.metadata) {
            self.peer_frame(msg);
            return;
        }
        match decide(&msg.metadata, |id| self.pending.contains_key(id)) {
            Decision::Drop(reason) => {
                tracing::trace!(?reason, source = %msg.source, "frame dropped");
            }
            Decision::ToStream { rpc_id } => {
                let terminal =
                    is_eos(&msg.metadata, &msg.payload) || !frame_code(&msg.metadata).is_ok();
                let tx = if terminal {
                    self.pending.remove(&rpc_id).map(|(_, tx)| tx)
                } else {
                    self.pending.get(&rpc_id).map(|(_, tx)| tx.clone())
                };
                // Counted before the handler can see its stream end.
                self.sync_stream_count();
                if let Some(tx) = tx {
                    self.queue(&rpc_id, &tx, msg);
                }
            }
            Decision::NewCall {
                rpc_id,
                service,
                method,
            } => self.start_call(msg, rpc_id, service, method).await,
            Decision::Cancel { rpc_id } => self.cancel_call(&msg.source, &rpc_id),
        }
    }

    /// A peer's shared response: to the handler of its call, if that call
    /// shares responses here; our own echoes and anything else dropped.
    fn peer_frame(&mut self, msg: IncomingMessage) {
        if !self.shared.shared_responses || msg.source.prefix() == self.shared.base_name.prefix() {
            return;
        }
        let Some(id) = rpc_id(&msg.metadata) else {
            return;
        };
        let Some(tx) = self.peers.get(id) else {
            if self.calls.contains_key(id) {
                // A call here that does not share: nothing to do with it.
                return;
            }
            if self.early.len() >= EARLY_CALLS && !self.early.contains_key(id) {
                self.early.clear();
            }
            let held = self.early.entry(id.to_string()).or_default();
            if held.len() < EARLY_FRAMES {
                held.push(msg);
            }
            return;
        };
        let item = if is_eos(&msg.metadata, &msg.payload) {
            crate::shared::PeerItem::End { source: msg.source }
        } else {
            crate::shared::PeerItem::Response {
                source: msg.source,
                payload: msg.payload,
            }
        };
        tx.send(item);
    }

    /// The caller `source` cancelled call `rpc_id`: its request stream ends
    /// with `Cancelled`, its context reports it, and its handler is stopped
    /// after [`CANCEL_GRACE`]. A cancel from anyone but the call's own
    /// caller, or for a call that is not running, changes nothing.
    fn cancel_call(&mut self, source: &Name, rpc_id: &str) {
        let Some((caller, signal)) = self.calls.get(rpc_id) else {
            tracing::trace!(%rpc_id, %source, "cancel of a call that is not running");
            return;
        };
        if caller != source {
            tracing::debug!(%rpc_id, %source, %caller, "cancel from another than the caller ignored");
            return;
        }
        tracing::debug!(%rpc_id, %source, "call cancelled by its caller");
        let _ = signal.send(true);
        if let Some((_, tx)) = self.pending.remove(rpc_id) {
            // Counted before the handler can see its stream end.
            self.sync_stream_count();
            tx.end(Input::Fail(RpcError::cancelled("Cancelled by the caller")));
        }
    }

    /// Hands `msg` to its call, never waiting: the session's one reader
    /// serves every call. A handler past its request buffer gets a
    /// watchdog, which ends its request stream with `ResourceExhausted`
    /// once it takes no request for [`REQUEST_BUFFER_WAIT`]; at
    /// [`hold_limit`](crate::dispatcher::hold_limit) frames the stream ends
    /// at once.
    fn queue(&mut self, rpc_id: &str, tx: &LaneTx<Input>, msg: IncomingMessage) {
        let limit = self.shared.request_buffer;
        let exhausted = move || {
            Input::Fail(RpcError::new(
                Code::ResourceExhausted,
                format!("the handler left {limit} requests unread; its request stream was ended"),
            ))
        };
        match tx.push(Input::Frame(msg)) {
            Push::Queued => {}
            Push::Watch => {
                let (lane, id) = (tx.clone(), rpc_id.to_string());
                tx.watch(REQUEST_BUFFER_WAIT, move || {
                    tracing::warn!(rpc_id = %id, limit, "handler stopped reading its requests; ending its request stream");
                    lane.end(exhausted());
                });
            }
            Push::Full => {
                tracing::warn!(%rpc_id, limit, "handler let its requests pile up; ending its request stream");
                self.pending.remove(rpc_id);
                self.sync_stream_count();
                tx.end(exhausted());
            }
            // The handler finished without reading it all, or its stream
            // was ended.
            Push::Closed => {
                self.pending.remove(rpc_id);
                self.sync_stream_count();
            }
        }
    }

    /// The session gave up on message `message_id` of `source`: every
    /// request stream of that caller may have a gap, so each ends with
    /// `DataLoss` rather than going on without it.
    fn message_lost(&mut self, source: &Name, message_id: u32) {
        let hit: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, (caller, _))| caller == source)
            .map(|(id, _)| id.clone())
            .collect();
        let ended: Vec<_> = hit
            .into_iter()
            .filter_map(|id| self.pending.remove(&id).map(|(_, tx)| (id, tx)))
            .collect();
        // Counted before any handler can see its stream end.
        self.sync_stream_count();
        for (rpc_id, tx) in ended {
            tracing::debug!(%rpc_id, %source, message_id, "request stream lost a frame");
            tx.end(Input::Fail(RpcError::new(
                Code::DataLoss,
                format!(
                    "request frame {message_id} from {source} was lost (the session gave up \
                     recovering it)"
                ),
            )));
        }
    }

    async fn start_call(
        &mut self,
        msg: IncomingMessage,
        rpc_id: String,
        service: String,
        method: String,
    ) {
        let path = format!("{service}/{method}");
        let shared = self.shared.shared_responses && crate::shared::wants_shared(&msg.metadata);
        let mut out = Responder {
            handle: self.handle.clone(),
            caller: msg.source.clone(),
            rpc_id: rpc_id.clone(),
            meta: Outgoing::default(),
            shared,
            eos_after_answer: shared
                || (self.group && !crate::metadata::answer_ends(&msg.metadata)),
        };
        let Some(handler) = self.shared.handlers.get(&path).cloned() else {
            tracing::debug!(%path, %rpc_id, "unknown method");
            out.error(&RpcError::unimplemented(format!(
                "Method not found: {path}"
            )))
            .await;
            return;
        };
        tracing::debug!(%path, %rpc_id, caller = %msg.source, "call started");
        let deadline = deadline_from_metadata(&msg.metadata, SystemTime::now());
        let ctx = Context::new(
            msg.metadata.clone(),
            deadline,
            msg.source.clone(),
            rpc_id.clone(),
            service,
            method,
        )
        .with_peer_subject(msg.peer_subject.clone());
        out.meta = ctx.outgoing();
        let ctx = match self.shared.interceptors.run(&ctx) {
            Ok(None) => ctx,
            Ok(Some(metadata)) => ctx.with_metadata(metadata),
            Err(e) => {
                tracing::debug!(%path, %rpc_id, error = %e, "call refused by an interceptor");
                out.error(&e).await;
                return;
            }
        };
        let (cancelled_tx, mut cancelled) = watch::channel(false);
        let mut ctx = ctx.with_cancel(cancelled.clone());
        if shared {
            let (tx, slot) = crate::shared::peer_channel();
            self.peers.insert(rpc_id.clone(), tx);
            ctx = ctx.with_peers(slot);
            for early in self.early.remove(&rpc_id).unwrap_or_default() {
                self.peer_frame(early);
            }
        } else {
            self.early.remove(&rpc_id);
        }
        self.calls
            .insert(rpc_id.clone(), (msg.source.clone(), cancelled_tx));
        let call = match handler {
            Handler::UnaryInput(f) => f(msg.payload, ctx, out.clone()),
            Handler::StreamInput(f) => {
                let first_is_last =
                    is_eos(&msg.metadata, &msg.payload) || !frame_code(&msg.metadata).is_ok();
                let rest = if first_is_last {
                    None
                } else {
                    let (tx, rx) = lane(self.shared.request_buffer);
                    self.pending
                        .insert(rpc_id.clone(), (msg.source.clone(), tx));
                    self.sync_stream_count();
                    Some(rx)
                };
                f(RawRequests::new(msg, rest), ctx, out.clone())
            }
        };
        let active = Counted::new(&self.shared.stats, |s| &s.handlers);
        let mut cancel = self.cancel.subscribe();
        self.handlers.spawn(async move {
            let _active = active;
            let mut call = std::pin::pin!(AssertUnwindSafe(call).catch_unwind());
            let outcome = match deadline.duration_since(SystemTime::now()) {
                Err(_) => Err(RpcError::deadline_exceeded("Deadline exceeded")),
                Ok(remaining) => {
                    tokio::select! {
                        r = &mut call => match r {
                            Ok(r) => r,
                            Err(_) => {
                                tracing::error!(%path, "handler panicked");
                                Err(RpcError::internal(format!("Handler for {path} panicked")))
                            }
                        },
                        _ = tokio::time::sleep(remaining) => Err(RpcError::deadline_exceeded(
                            "Deadline exceeded during RPC execution",
                        )),
                        _ = signalled(&mut cancel) => Err(RpcError::cancelled("Server shutting down")),
                        _ = cancelled_by_caller(&mut cancelled) => {
                            // The caller left: the handler may wind down
                            // (its context says so), then it is stopped.
                            // Nobody waits for an answer.
                            let _ = tokio::time::timeout(CANCEL_GRACE, &mut call).await;
                            tracing::debug!(%path, "cancelled call stopped");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = outcome {
                tracing::debug!(%path, error = %e, "call failed");
                out.error(&e).await;
            }
        });
    }

    /// Ends the session: on server shutdown, running handlers answer
    /// `Cancelled` and the session is closed; when the session died, handlers
    /// are aborted (nobody can hear them).
    async fn finish(mut self, server_shutdown: bool, _events: &mut Box<dyn RpcSessionEvents>) {
        self.pending.clear();
        self.sync_stream_count();
        if server_shutdown {
            let _ = self.cancel.send(true);
            let drained = tokio::time::timeout(DRAIN_LIMIT, async {
                while self.handlers.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tracing::warn!("handlers did not stop in time; aborting them");
            }
        }
        self.handlers.abort_all();
        while self.handlers.join_next().await.is_some() {}
        if !self.handle.is_closed() {
            let _ = tokio::time::timeout(DRAIN_LIMIT, self.handle.close()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{
        DEADLINE_KEY, RPC_DIR_KEY, RPC_ID_KEY, RequestsSent, client_eos1, client_eos2,
        client_first_frame, client_next_frame,
    };

    fn none(_: &str) -> bool {
        false
    }
    fn all(_: &str) -> bool {
        true
    }

    fn first() -> Metadata {
        client_first_frame(&Metadata::new(), SystemTime::now(), "pkg.Svc", "Echo", "R1")
    }

    #[test]
    fn first_client_frame_starts_a_call() {
        assert_eq!(
            decide(&first(), none),
            Decision::NewCall {
                rpc_id: "R1".into(),
                service: "pkg.Svc".into(),
                method: "Echo".into()
            }
        );
    }

    #[test]
    fn frame_without_rpc_id_is_dropped() {
        let mut m = first();
        m.remove(RPC_ID_KEY);
        assert_eq!(decide(&m, all), Decision::Drop(DropReason::NoRpcId));
        m.insert(RPC_ID_KEY.into(), String::new());
        assert_eq!(decide(&m, all), Decision::Drop(DropReason::NoRpcId));
    }

    #[test]
    fn client_frames_of_an_open_stream_are_routed_to_it() {
        assert_eq!(
            decide(&client_next_frame("R1"), all),
            Decision::ToStream {
                rpc_id: "R1".into()
            }
        );
        let eos1 = client_eos1("R1", RequestsSent::Some, &first());
        assert_eq!(
            decide(&eos1, all),
            Decision::ToStream {
                rpc_id: "R1".into()
            }
        );
    }

    #[test]
    fn echoes_and_peer_server_frames_for_an_open_stream_are_dropped() {
        // A response/EOS/error from this or another group member.
        for code in [Code::Ok, Code::Internal] {
            assert_eq!(
                decide(&status_frame(code, "R1"), all),
                Decision::Drop(DropReason::NotAClientFrame)
            );
        }
    }

    #[test]
    fn server_frames_and_client_eos2_without_open_stream_are_dropped() {
        assert_eq!(
            decide(&status_frame(Code::Ok, "R1"), none),
            Decision::Drop(DropReason::ServerFrame)
        );
        assert_eq!(
            decide(&status_frame(Code::Unimplemented, "R1"), none),
            Decision::Drop(DropReason::ServerFrame)
        );
        // EOS #2 of an empty stream names service and method but has no
        // direction marker: still dropped.
        let eos2 = client_eos2("R1", RequestsSent::None, "pkg.Svc", "Echo");
        assert_eq!(decide(&eos2, none), Decision::Drop(DropReason::ServerFrame));
    }

    #[test]
    fn client_eos1_of_an_empty_stream_starts_the_call() {
        let eos1 = client_eos1("R1", RequestsSent::None, &first());
        assert!(matches!(decide(&eos1, none), Decision::NewCall { .. }));
    }

    #[test]
    fn unary_client_eos1_after_the_call_started_is_dropped() {
        let eos1 = client_eos1("R1", RequestsSent::Some, &first());
        assert_eq!(
            decide(&eos1, none),
            Decision::Drop(DropReason::NoServiceOrMethod)
        );
        assert_eq!(
            decide(&client_next_frame("R1"), none),
            Decision::Drop(DropReason::NoServiceOrMethod)
        );
    }

    #[test]
    fn new_call_needs_non_empty_service_and_method() {
        let mut m = first();
        m.insert(METHOD_KEY.into(), String::new());
        assert_eq!(
            decide(&m, none),
            Decision::Drop(DropReason::NoServiceOrMethod)
        );
        let mut m = first();
        m.remove(SERVICE_KEY);
        assert_eq!(
            decide(&m, none),
            Decision::Drop(DropReason::NoServiceOrMethod)
        );
    }

    fn stream_methods() -> Arc<HashSet<String>> {
        Arc::new(["pkg.Svc/Collect".to_string()].into_iter().collect())
    }

    fn first_of(method: &str, id: &str) -> Metadata {
        client_first_frame(&Metadata::new(), SystemTime::now(), "pkg.Svc", method, id)
    }

    #[test]
    fn unneeded_skips_a_unary_calls_eos1_and_eos2_but_never_its_first_frame() {
        let mut u = Unneeded::new(stream_methods());
        let first = first_of("Echo", "R1");
        assert!(!u.skip(&first));
        assert!(u.skip(&client_eos1("R1", RequestsSent::Some, &first)));
        assert!(u.skip(&client_eos2("R1", RequestsSent::Some, "pkg.Svc", "Echo")));
        assert!(u.unary.is_empty(), "EOS #1 ended what it remembers of R1");
    }

    #[test]
    fn unneeded_delivers_every_client_frame_of_a_stream_input_call() {
        let mut u = Unneeded::new(stream_methods());
        let first = first_of("Collect", "S1");
        assert!(!u.skip(&first));
        assert!(!u.skip(&client_next_frame("S1")));
        assert!(!u.skip(&client_eos1("S1", RequestsSent::Some, &first)));
        // EOS #2 carries no direction: dropped by every demultiplexer state.
        assert!(u.skip(&client_eos2("S1", RequestsSent::Some, "pkg.Svc", "Collect")));
    }

    #[test]
    fn unneeded_skips_frames_without_rpc_id_and_server_frames_but_not_unknown_calls() {
        let mut u = Unneeded::new(stream_methods());
        let mut m = first();
        m.remove(RPC_ID_KEY);
        assert!(u.skip(&m));
        assert!(u.skip(&status_frame(Code::Ok, "X")));
        assert!(u.skip(&status_frame(Code::Internal, "X")));
        // Frames of a call whose first frame it did not see: delivered.
        assert!(!u.skip(&client_next_frame("X")));
        assert!(!u.skip(&client_eos1("X", RequestsSent::Some, &first())));
        // A first frame without direction (older client) is delivered.
        let mut m = first();
        m.remove(RPC_DIR_KEY);
        assert!(!u.skip(&m));
        // An empty stream's EOS #1 starts the call: delivered.
        assert!(!u.skip(&client_eos1(
            "E",
            RequestsSent::None,
            &first_of("Echo", "E")
        )));
    }

    #[test]
    fn unneeded_delivers_an_eos1_that_arrives_before_its_first_frame() {
        let mut u = Unneeded::new(stream_methods());
        let first = first_of("Echo", "R1");
        assert!(!u.skip(&client_eos1("R1", RequestsSent::Some, &first)));
        assert!(!u.skip(&first));
    }

    /// Runs `calls` (method, rpc-id, request count) interleaved on one
    /// session, each call's frames in order, and returns how many frames
    /// the filter skipped. The demultiplexer's stream table is modelled as
    /// `Demux::route` keeps it; every frame the filter skips must be one
    /// `decide` drops in the state of that moment.
    fn interleave(
        calls: &[(&str, &str, usize)],
        u: &mut Unneeded,
        pending: &mut HashSet<String>,
    ) -> usize {
        let mut frames: Vec<Vec<Metadata>> = calls
            .iter()
            .map(|&(method, id, n)| {
                let first = first_of(method, id);
                let sent = if n == 0 {
                    RequestsSent::None
                } else {
                    RequestsSent::Some
                };
                let mut f = Vec::new();
                if n > 0 {
                    f.push(first.clone());
                }
                f.extend((1..n).map(|_| client_next_frame(id)));
                f.push(client_eos1(id, sent, &first));
                f.push(client_eos2(id, sent, "pkg.Svc", method));
                f.push(status_frame(Code::Ok, id)); // an echo
                f.into_iter().rev().collect()
            })
            .collect();
        let (mut skipped, mut turn) = (0, 0usize);
        while frames.iter().any(|f| !f.is_empty()) {
            turn = (turn + 1) % frames.len();
            let Some(md) = frames[turn].pop() else {
                continue;
            };
            let skip = u.skip(&md);
            let d = decide(&md, |id| pending.contains(id));
            if skip {
                skipped += 1;
                assert!(
                    matches!(d, Decision::Drop(_)),
                    "skipped {md:?}, decided {d:?}"
                );
            }
            match d {
                Decision::NewCall { rpc_id, method, .. }
                    if method == "Collect" && !is_eos(&md, &[]) =>
                {
                    pending.insert(rpc_id);
                }
                Decision::ToStream { rpc_id } if md.contains_key(STATUS_CODE_KEY) => {
                    pending.remove(&rpc_id);
                }
                _ => {}
            }
        }
        skipped
    }

    #[test]
    fn every_frame_unneeded_skips_is_dropped_by_decide() {
        let mut u = Unneeded::new(stream_methods());
        let mut pending = HashSet::new();
        let calls = [
            ("Echo", "U1", 1),
            ("Collect", "S1", 3),
            ("Missing", "M1", 1),
            ("Echo", "U2", 1),
            ("Collect", "S2", 0),
        ];
        // EOS #1 of the three unary-input calls; EOS #2 and an echo of all five.
        assert_eq!(interleave(&calls, &mut u, &mut pending), 3 + 2 * 5);
        // Ids used again, the other way round, once those calls are over.
        let again = [("Collect", "U1", 2), ("Echo", "S1", 1)];
        assert_eq!(interleave(&again, &mut u, &mut pending), 1 + 2 * 2);
        assert!(pending.is_empty());
    }

    #[test]
    fn unneeded_remembers_a_bounded_number_of_calls() {
        let mut u = Unneeded::new(stream_methods());
        for i in 0..UNARY_MEMORY + 10 {
            assert!(!u.skip(&first_of("Echo", &format!("R{i}"))));
        }
        assert!(u.unary.len() <= UNARY_MEMORY);
    }

    #[test]
    fn request_frames_do_not_need_a_deadline_or_direction_to_start() {
        // An older client without slimrpc-dir or slimrpc-timeout still dispatches.
        let mut m = first();
        m.remove(RPC_DIR_KEY);
        m.remove(DEADLINE_KEY);
        assert!(matches!(decide(&m, none), Decision::NewCall { .. }));
    }

    #[test]
    fn a_cancel_frame_is_decided_as_a_cancel_whether_or_not_a_stream_is_open_and_never_skipped() {
        let cancel = crate::metadata::client_cancel("C1");
        for open in [true, false] {
            assert_eq!(
                decide(&cancel, |_| open),
                Decision::Cancel {
                    rpc_id: "C1".into()
                }
            );
        }
        // A unary call cancelled before its EOS #1: the cancel still gets
        // through the filter.
        let mut u = Unneeded::new(stream_methods());
        assert!(!u.skip(&first_of("Echo", "C1")));
        assert!(!u.skip(&cancel));
        // A server error frame with the same code is not a cancel.
        assert!(!matches!(
            decide(&status_frame(Code::Cancelled, "C1"), none),
            Decision::Cancel { .. }
        ));
    }
}
