//! Client side: `Channel` and the eight call shapes.
//!
//! Job: own one persistent session (P2P for one member, group for several),
//! created lazily on the first call and re-created (members re-invited) when
//! it dies; run each call as a lazy stream that sends the request frames
//! (§g.2), reads its own frames from the dispatcher, counts EOS per member and
//! enforces the call's deadline. Dropping a call's future or stream cancels
//! it: its dispatcher entry goes with it and no task is left behind. A member
//! that leaves the group session mid-call (declared gone by the session's
//! pings) ends that call with `MulticastSessionClosed` once the others are
//! done, and the next call gets a fresh session with every member re-invited.
//! A message the session reports lost ends the calls still waiting for its
//! sender with `DataLoss` (that member's item in a group call), and a caller
//! that leaves too many responses unread gets `ResourceExhausted`: neither
//! ends silently with a gap, and neither holds up the other calls.
//! Must not: hold a lock across `.await`, spawn per-call tasks, or know how
//! the session layer works beyond [`crate::transport`].

use std::collections::HashMap;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures::future::{BoxFuture, FutureExt, Shared};
use futures::stream::{BoxStream, Stream, StreamExt};
use slim_transport::Name;
use tokio::task::JoinHandle;

use crate::code::Code;
use crate::context::{CallOptions, MulticastItem};
use crate::dispatcher::{
    CALL_BUFFER, CALL_BUFFER_WAIT, CallEvent, CallReceiver, DispatchGuard, Dispatcher,
    RegisterError,
};
use crate::error::RpcError;
use crate::interceptor::{Chain, Interceptor, Request};
use crate::metadata::{
    ANSWER_ENDS_KEY, CANCEL_MESSAGE, MAX_TIMEOUT, Metadata, RequestsSent, client_cancel,
    client_eos1, client_first_frame, client_next_frame, new_rpc_id,
};
use crate::response_meta::{Response, ResponseMetadataSink};
use crate::tracker::{CallTracker, Output, Step};
use crate::transport::{
    ConnId, IntoTransport, RpcSessionHandle, RpcTransport, SessionKind, SessionOptions,
};

/// Responses of a single-target call (`unary_stream`, `stream_stream`).
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, RpcError>> + Send + 'static>>;

/// Responses of a group call, each tagged with its member.
pub type MulticastStream<T> =
    Pin<Box<dyn Stream<Item = Result<MulticastItem<T>, RpcError>> + Send + 'static>>;

/// A live session with its dispatcher, which the session feeds.
pub(crate) struct LiveSession {
    pub(crate) handle: Arc<dyn RpcSessionHandle>,
    pub(crate) dispatcher: Arc<Dispatcher>,
    /// Calls given up on before every server ended them: their ids go to
    /// `canceller`, which tells the servers (one task per session, so a
    /// dropped call needs no task of its own).
    cancels: tokio::sync::mpsc::Sender<String>,
    canceller: JoinHandle<()>,
}

/// Cancel frames queued and not yet sent before new ones are dropped (the
/// servers' deadlines still end those calls).
const CANCEL_QUEUE: usize = 1024;

/// Sends a cancel frame for every call id queued, until the session goes.
async fn send_cancels(
    handle: Arc<dyn RpcSessionHandle>,
    mut ids: tokio::sync::mpsc::Receiver<String>,
) {
    while let Some(rpc_id) = ids.recv().await {
        if let Err(e) = handle
            .publish(CANCEL_MESSAGE.to_vec(), client_cancel(&rpc_id))
            .await
        {
            tracing::debug!(%rpc_id, error = %e, "cancel frame not sent");
        }
    }
}

/// Queues its call's cancel frame when dropped while armed: the caller gave
/// up (dropped the call, or it failed on this side) before every server
/// ended it.
struct CancelOnDrop {
    cancels: tokio::sync::mpsc::Sender<String>,
    rpc_id: String,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed
            && self
                .cancels
                .try_send(std::mem::take(&mut self.rpc_id))
                .is_err()
        {
            tracing::debug!(
                "cancel queue full or session gone; the servers' deadline ends the call"
            );
        }
    }
}

impl LiveSession {
    /// Usable for new calls: open, and still holding every member.
    pub(crate) fn is_alive(&self) -> bool {
        !self.dispatcher.is_closed() && !self.handle.is_closed() && !self.dispatcher.lost_a_member()
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        self.canceller.abort();
        // The last user is gone (the channel dropped or replaced it, and no
        // call runs on it): close it on the peers too. Best effort, bounded.
        if !self.handle.is_closed()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let handle = self.handle.clone();
            rt.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), handle.close()).await;
            });
        }
    }
}

pub(crate) type SessionFuture = Shared<BoxFuture<'static, Result<Arc<LiveSession>, RpcError>>>;

pub(crate) enum Slot {
    Empty,
    Creating(SessionFuture),
    Live(Arc<LiveSession>),
}

/// The channel name of a group channel's sessions: `org/ns/<uuid-v4>`, fresh
/// for every re-created session so that a new session never shares its
/// channel name (and the members' subscriptions to it) with the one it
/// replaces, which may still be closing on the members.
pub(crate) struct GroupName {
    org: String,
    ns: String,
    current: Name,
    used: bool,
}

impl GroupName {
    fn new(org: &str, ns: &str) -> Self {
        Self {
            org: org.to_string(),
            ns: ns.to_string(),
            current: Self::fresh(org, ns),
            used: false,
        }
    }

    fn fresh(org: &str, ns: &str) -> Name {
        Name::new(org, ns, uuid::Uuid::new_v4().to_string())
    }

    /// The name for the session about to be created.
    fn take(&mut self) -> Name {
        if self.used {
            self.current = Self::fresh(&self.org, &self.ns);
        }
        self.used = true;
        self.current.clone()
    }
}

pub(crate) struct ChannelInner {
    pub(crate) transport: Arc<dyn RpcTransport>,
    /// The live member set (P2P: the single peer). A group channel's set
    /// changes with [`Channel::add_member`] / [`Channel::remove_member`];
    /// each call snapshots it when it registers. Lock order: `slot`, then
    /// `members`.
    pub(crate) members: Mutex<Vec<Name>>,
    /// Serializes membership changes (held across their session round trips).
    pub(crate) membership: tokio::sync::Mutex<()>,
    /// Group channel naming; `None` for P2P.
    pub(crate) group: Option<Mutex<GroupName>>,
    /// Link towards the members' node, routed before every (re)creation.
    pub(crate) connection: Option<ConnId>,
    session_options: SessionOptions,
    /// Responses a call may leave unread (see [`ChannelOptions::response_buffer`]).
    response_buffer: usize,
    /// Members pinned to a verified identity (see [`Channel::pinned`]).
    pins: HashMap<[u64; 3], String>,
    /// Frames the channel's sessions acknowledged without decrypting them,
    /// because no call wanted them (see [`Channel::skipped_frames`]).
    skipped: Arc<AtomicUsize>,
    slot: Mutex<Slot>,
    closed: AtomicBool,
}

/// How a [`Channel`] reaches its members and watches them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelOptions {
    /// Link towards a remote node behind which the members sit: each member
    /// gets a route over it before the session is created (P2P) or the
    /// member invited (group).
    pub connection: Option<ConnId>,
    /// How often the channel's session pings its members. A member that
    /// misses three rounds is declared gone: a group call still waiting for
    /// it then ends with `MulticastSessionClosed` naming it missing. `None`
    /// keeps SLIM's 10 s (so about 30 s to notice a dead member).
    pub ping_interval: Option<Duration>,
    /// How many responses one call may hold for a caller that has not read
    /// them yet. Past it, the call keeps receiving as long as its caller
    /// takes a response at least every [`CALL_BUFFER_WAIT`]; a caller that
    /// takes none for that long, or lets
    /// [`hold_limit`](crate::dispatcher::hold_limit) responses pile up
    /// (twice this buffer), has its call ended with `ResourceExhausted`
    /// (after the responses it holds). So a caller that stops reading costs
    /// bounded memory and only its own call; the other calls of the channel
    /// never wait for it. `None` keeps [`CALL_BUFFER`].
    pub response_buffer: Option<usize>,
}

/// A client channel to one server (P2P) or a group of servers.
///
/// Cheap to clone; clones share the session. All calls are multiplexed on
/// that one session by `rpc-id`.
#[derive(Clone)]
pub struct Channel {
    inner: Arc<ChannelInner>,
    /// Run before every call made through this handle ([`Self::with_interceptor`]).
    interceptors: Chain,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("members", &self.members())
            .field("group_name", &self.group_name())
            .finish()
    }
}

impl Channel {
    /// A channel from `app` to `members`: one member gives a point-to-point
    /// channel, several give a group channel whose session is named
    /// `org/ns/<uuid-v4>` after the app's own org and namespace. Nothing is
    /// sent until the first call.
    pub fn new(app: impl IntoTransport, members: Vec<Name>) -> Result<Self, RpcError> {
        Self::with_options(app, members, ChannelOptions::default())
    }

    /// Like [`Channel::new`], for an app whose members sit behind a remote
    /// node reached over link `conn`: each member gets a route over `conn`
    /// before the session is created (P2P) or the member invited (group).
    pub fn new_with_connection(
        app: impl IntoTransport,
        members: Vec<Name>,
        conn: ConnId,
    ) -> Result<Self, RpcError> {
        let options = ChannelOptions {
            connection: Some(conn),
            ..ChannelOptions::default()
        };
        Self::with_options(app, members, options)
    }

    /// Like [`Channel::new`], with [`ChannelOptions`].
    pub fn with_options(
        app: impl IntoTransport,
        members: Vec<Name>,
        options: ChannelOptions,
    ) -> Result<Self, RpcError> {
        Self::build(app, members, options, HashMap::new())
    }

    fn build(
        app: impl IntoTransport,
        members: Vec<Name>,
        options: ChannelOptions,
        pins: HashMap<[u64; 3], String>,
    ) -> Result<Self, RpcError> {
        let transport = app.into_transport();
        if members.is_empty() {
            return Err(RpcError::invalid_argument(
                "a channel needs at least one member",
            ));
        }
        let group = (members.len() > 1).then(|| {
            let local = transport.local_name();
            let [org, ns, _] = local.strings();
            Mutex::new(GroupName::new(org, ns))
        });
        Ok(Self {
            inner: Arc::new(ChannelInner {
                transport,
                members: Mutex::new(members),
                membership: tokio::sync::Mutex::new(()),
                group,
                connection: options.connection,
                session_options: SessionOptions {
                    ping_interval: options.ping_interval,
                },
                response_buffer: options.response_buffer.unwrap_or(CALL_BUFFER),
                pins,
                skipped: Arc::default(),
                slot: Mutex::new(Slot::Empty),
                closed: AtomicBool::new(false),
            }),
            interceptors: Chain::default(),
        })
    }

    /// A channel whose members are pinned to their verified identities: an
    /// answer from member `name` counts only if its identity token's
    /// subject is the one given here; any other answer is refused and the
    /// call reports `Unauthenticated` for that member (in a group call, as
    /// that member's error item). Each member's subject is what its app's
    /// identity reports (for a shared secret: its identity id).
    pub fn pinned(
        app: impl IntoTransport,
        members: Vec<(Name, String)>,
        options: ChannelOptions,
    ) -> Result<Self, RpcError> {
        let pins: HashMap<[u64; 3], String> = members
            .iter()
            .map(|(n, subject)| (n.prefix(), subject.clone()))
            .collect();
        let names = members.into_iter().map(|(n, _)| n).collect();
        Self::build(app, names, options, pins)
    }

    /// This channel (sharing its session) with `interceptor` run before
    /// each of its calls, after the interceptors it already has. It sees
    /// the call's metadata, service and method, may change the metadata,
    /// or refuse the call: the call then fails with its error and sends
    /// nothing. See [`crate::interceptor`].
    pub fn with_interceptor(&self, interceptor: impl Interceptor) -> Channel {
        Channel {
            inner: self.inner.clone(),
            interceptors: self.interceptors.with(interceptor),
        }
    }

    /// True for a group channel (more than one member).
    pub fn is_group(&self) -> bool {
        self.inner.group.is_some()
    }

    /// The members this channel calls now: the live set, changed by
    /// [`Channel::add_member`] and [`Channel::remove_member`].
    pub fn members(&self) -> Vec<Name> {
        self.inner.members_now()
    }

    /// Adds `member` to this group channel's live session (invited into
    /// it, one MLS commit; nothing is re-created and running calls go on).
    /// Calls started once this returns are sent to it too; calls already
    /// running do not wait for it. Without a live session, the member is
    /// invited with the others when the next call creates one.
    ///
    /// Errors: `FailedPrecondition` on a point-to-point channel,
    /// `AlreadyExists` when `member` is already one, `Unavailable` when
    /// the session could not invite it (the member set is then unchanged).
    /// A member removed earlier can be added back into the same session.
    pub async fn add_member(&self, member: Name) -> Result<(), RpcError> {
        crate::membership::add_member(&self.inner, member).await
    }

    /// Removes `member` from this group channel's live session (nothing is
    /// re-created). Calls started from now on are not sent to it; a running
    /// call still waiting for it gets an `Unavailable` item naming it
    /// ("member removed") and goes on with the others.
    ///
    /// Errors: `FailedPrecondition` on a point-to-point channel,
    /// `NotFound` when `member` is not one, `InvalidArgument` for the last
    /// member, `Unavailable` when the session failed to remove it (it is
    /// out of the channel's member set all the same).
    pub async fn remove_member(&self, member: &Name) -> Result<(), RpcError> {
        crate::membership::remove_member(&self.inner, member).await
    }

    /// The name of the group session (the current one, or the next one to
    /// be created), for a group channel.
    pub fn group_name(&self) -> Option<Name> {
        self.inner
            .group
            .as_ref()
            .map(|g| g.lock().unwrap_or_else(|p| p.into_inner()).current.clone())
    }

    /// Frames this channel's sessions acknowledged without decrypting or
    /// delivering them, because no call wanted them: the EOS each member
    /// sends after a unary answer (the answer already ended its part of
    /// the call), and frames of calls that had ended. Each one saves an
    /// MLS decryption (a signature check).
    pub fn skipped_frames(&self) -> usize {
        self.inner.skipped.load(Ordering::Relaxed)
    }

    /// Calls currently registered with the live session's dispatcher
    /// (for tests and metrics).
    pub fn pending_calls(&self) -> usize {
        match &*self.inner.lock() {
            Slot::Live(s) => s.dispatcher.len(),
            _ => 0,
        }
    }

    /// Closes the session; every later call fails with `Unavailable`.
    /// In-flight calls end with the session-closed error.
    pub async fn close(&self) -> Result<(), RpcError> {
        self.inner.closed.store(true, Ordering::SeqCst);
        let slot = std::mem::replace(&mut *self.inner.lock(), Slot::Empty);
        if let Slot::Live(s) = slot {
            s.dispatcher.close();
            s.handle
                .close()
                .await
                .map_err(|e| RpcError::unavailable(format!("Failed to close session: {e}")))?;
        }
        Ok(())
    }

    // ---- typed API ---------------------------------------------------------

    /// Unary call: one request, one response (a group channel returns the
    /// first member's answer).
    pub async fn unary<Req, Res>(
        &self,
        service: &str,
        method: &str,
        request: Req,
        options: CallOptions,
    ) -> Result<Res, RpcError>
    where
        Req: prost::Message,
        Res: prost::Message + Default + Send + 'static,
    {
        let stream = self.call::<Res>(
            service,
            method,
            Requests::One(request.encode_to_vec()),
            options,
            Output::Unary,
        );
        first_message(stream).await
    }

    /// Unary call returning the server's headers and trailers with the
    /// response (tonic's `Response`). On a group channel: the first
    /// member's answer, with the metadata of every member that answered
    /// by then, merged (use [`CallOptions::capture`] for per-member
    /// metadata).
    pub async fn unary_with_metadata<Req, Res>(
        &self,
        service: &str,
        method: &str,
        request: Req,
        options: CallOptions,
    ) -> Result<Response<Res>, RpcError>
    where
        Req: prost::Message,
        Res: prost::Message + Default + Send + 'static,
    {
        let sink = ResponseMetadataSink::new();
        let message = self
            .unary(service, method, request, options.capture(&sink))
            .await?;
        let meta = crate::ResponseMetadata {
            headers: sink.headers(),
            trailers: sink.trailers(),
        };
        Ok(Response::new(message, meta))
    }

    /// Unary-stream call: one request, a stream of responses.
    pub fn unary_stream<Req, Res>(
        &self,
        service: &str,
        method: &str,
        request: Req,
        options: CallOptions,
    ) -> ResponseStream<Res>
    where
        Req: prost::Message,
        Res: prost::Message + Default + Send + 'static,
    {
        let s = self.call::<Res>(
            service,
            method,
            Requests::One(request.encode_to_vec()),
            options,
            Output::Stream,
        );
        Box::pin(s.map(|r| r.map(|i| i.message)))
    }

    /// Stream-unary call: a stream of requests, one response.
    pub async fn stream_unary<Req, Res>(
        &self,
        service: &str,
        method: &str,
        requests: impl Stream<Item = Req> + Send + 'static,
        options: CallOptions,
    ) -> Result<Res, RpcError>
    where
        Req: prost::Message + 'static,
        Res: prost::Message + Default + Send + 'static,
    {
        let stream = self.call::<Res>(
            service,
            method,
            Requests::encode(requests),
            options,
            Output::Unary,
        );
        first_message(stream).await
    }

    /// Stream-stream call: requests and responses stream concurrently.
    ///
    /// Like every call, it is lazy: requests are taken from `requests` and
    /// sent while the returned stream is being polled.
    pub fn stream_stream<Req, Res>(
        &self,
        service: &str,
        method: &str,
        requests: impl Stream<Item = Req> + Send + 'static,
        options: CallOptions,
    ) -> ResponseStream<Res>
    where
        Req: prost::Message + 'static,
        Res: prost::Message + Default + Send + 'static,
    {
        let s = self.call::<Res>(
            service,
            method,
            Requests::encode(requests),
            options,
            Output::Stream,
        );
        Box::pin(s.map(|r| r.map(|i| i.message)))
    }

    /// Group unary call: one response (or error) per member.
    pub fn group_unary<Req, Res>(
        &self,
        service: &str,
        method: &str,
        request: Req,
        options: CallOptions,
    ) -> MulticastStream<Res>
    where
        Req: prost::Message,
        Res: prost::Message + Default + Send + 'static,
    {
        self.call(
            service,
            method,
            Requests::One(request.encode_to_vec()),
            options,
            Output::Unary,
        )
    }

    /// Group unary-stream call: each member streams its responses.
    pub fn group_unary_stream<Req, Res>(
        &self,
        service: &str,
        method: &str,
        request: Req,
        options: CallOptions,
    ) -> MulticastStream<Res>
    where
        Req: prost::Message,
        Res: prost::Message + Default + Send + 'static,
    {
        self.call(
            service,
            method,
            Requests::One(request.encode_to_vec()),
            options,
            Output::Stream,
        )
    }

    /// Group stream-unary call: requests broadcast, one response per member.
    pub fn group_stream_unary<Req, Res>(
        &self,
        service: &str,
        method: &str,
        requests: impl Stream<Item = Req> + Send + 'static,
        options: CallOptions,
    ) -> MulticastStream<Res>
    where
        Req: prost::Message + 'static,
        Res: prost::Message + Default + Send + 'static,
    {
        self.call(
            service,
            method,
            Requests::encode(requests),
            options,
            Output::Unary,
        )
    }

    /// Group stream-stream call: requests broadcast, every member streams back.
    /// Requests are sent while the returned stream is being polled.
    pub fn group_stream_stream<Req, Res>(
        &self,
        service: &str,
        method: &str,
        requests: impl Stream<Item = Req> + Send + 'static,
        options: CallOptions,
    ) -> MulticastStream<Res>
    where
        Req: prost::Message + 'static,
        Res: prost::Message + Default + Send + 'static,
    {
        self.call(
            service,
            method,
            Requests::encode(requests),
            options,
            Output::Stream,
        )
    }

    // ---- core --------------------------------------------------------------

    fn call<Res>(
        &self,
        service: &str,
        method: &str,
        requests: Requests,
        options: CallOptions,
        output: Output,
    ) -> MulticastStream<Res>
    where
        Res: prost::Message + Default + Send + 'static,
    {
        let mut options = options;
        if !self.interceptors.is_empty() {
            let request = Request::for_call((), options.metadata, service, method);
            match self.interceptors.run(request) {
                Ok(mut r) => options.metadata = std::mem::take(r.metadata_mut()),
                Err(e) => return Box::pin(futures::stream::once(async move { Err(e) })),
            }
        }
        let timeout = options.timeout.unwrap_or(MAX_TIMEOUT);
        let now = SystemTime::now();
        let state = CallState::<Res> {
            channel: self.inner.clone(),
            service: service.to_string(),
            method: method.to_string(),
            requests: Some(requests),
            user_metadata: options.metadata,
            deadline_wall: now.checked_add(timeout).unwrap_or(now),
            deadline: tokio::time::Instant::now() + timeout,
            output,
            running: None,
            done: false,
            trailing: None,
            sink: options.response_metadata,
            _res: PhantomData,
        };
        // Fused: a caller may poll again after the end (e.g. `select!` or a
        // combinator that does not remember it) and must get `None`, not a panic.
        Box::pin(futures::stream::unfold(state, CallState::step).fuse())
    }
}

async fn first_message<Res>(mut stream: MulticastStream<Res>) -> Result<Res, RpcError> {
    match stream.next().await {
        Some(r) => r.map(|i| i.message),
        None => Err(RpcError::internal("No response received")),
    }
}

impl ChannelInner {
    /// The live member set.
    pub(crate) fn members_now(&self) -> Vec<Name> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Slot> {
        // Poison only means a panic elsewhere; the slot is always consistent.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live session, creating it (once, shared by concurrent callers)
    /// when there is none or the previous one died.
    pub(crate) async fn session(self: &Arc<Self>) -> Result<Arc<LiveSession>, RpcError> {
        let fut = {
            let mut slot = self.lock();
            if self.closed.load(Ordering::SeqCst) {
                return Err(RpcError::unavailable("channel is closed"));
            }
            match &*slot {
                Slot::Live(s) if s.is_alive() => return Ok(s.clone()),
                Slot::Creating(f) => f.clone(),
                _ => {
                    let f = open_session(
                        self.transport.clone(),
                        self.members_now(),
                        self.group
                            .as_ref()
                            .map(|g| g.lock().unwrap_or_else(|p| p.into_inner()).take()),
                        self.connection,
                        self.session_options,
                        Dispatcher::with_pins(
                            self.response_buffer,
                            CALL_BUFFER_WAIT,
                            self.pins.clone(),
                        ),
                        self.skipped.clone(),
                    )
                    .boxed()
                    .shared();
                    *slot = Slot::Creating(f.clone());
                    f
                }
            }
        };
        let result = fut.clone().await;
        let mut slot = self.lock();
        if let Slot::Creating(f) = &*slot
            && f.ptr_eq(&fut)
        {
            *slot = match &result {
                Ok(s) if !self.closed.load(Ordering::SeqCst) => Slot::Live(s.clone()),
                _ => Slot::Empty,
            };
        }
        result
    }

    /// Forgets `dead` so the next call creates a fresh session.
    fn invalidate(&self, dead: &Arc<LiveSession>) {
        let mut slot = self.lock();
        if let Slot::Live(s) = &*slot
            && Arc::ptr_eq(s, dead)
        {
            *slot = Slot::Empty;
        }
    }
}

async fn open_session(
    transport: Arc<dyn RpcTransport>,
    members: Vec<Name>,
    group_name: Option<Name>,
    connection: Option<ConnId>,
    options: SessionOptions,
    dispatcher: Arc<Dispatcher>,
    skipped: Arc<AtomicUsize>,
) -> Result<Arc<LiveSession>, RpcError> {
    let (kind, destination) = match &group_name {
        Some(g) => (SessionKind::Group, g.clone()),
        None => (SessionKind::PointToPoint, members[0].clone()),
    };
    let route = async |m: &Name| -> Result<(), RpcError> {
        if let Some(conn) = connection {
            transport
                .set_route(m, conn)
                .await
                .map_err(|e| RpcError::unavailable(format!("Failed to route {m}: {e}")))?;
        }
        Ok(())
    };
    if group_name.is_none() {
        route(&destination).await?;
    }
    // The session hands its events straight to the dispatcher, on its own
    // task: no reader task between them. Frames no call wants (the EOS
    // after a unary answer, frames of ended calls) are not even decrypted.
    let handle = transport
        .create_session_delivering(
            kind,
            &destination,
            options,
            dispatcher.sink(),
            Some(dispatcher.skip_filter(skipped)),
        )
        .await
        .map_err(|e| {
            RpcError::unavailable(format!("Failed to create session to {destination}: {e}"))
        })?;
    if group_name.is_some() {
        // Every member at once: one MLS commit adds them all, so set-up
        // costs one round of discovery/join/welcome instead of one per member.
        let mut invited = Ok(());
        for m in &members {
            invited = route(m).await;
            if invited.is_err() {
                break;
            }
        }
        if invited.is_ok() {
            invited = handle.invite_many(&members).await.map_err(|e| {
                let names: Vec<String> = members.iter().map(Name::to_string).collect();
                RpcError::unavailable(format!("Failed to invite [{}]: {e}", names.join(", ")))
            });
        }
        if let Err(e) = invited {
            let _ = handle.close().await;
            return Err(e);
        }
    }
    tracing::debug!(session_id = handle.id(), %destination, "channel session ready");
    let (cancels, ids) = tokio::sync::mpsc::channel(CANCEL_QUEUE);
    let canceller = tokio::spawn(send_cancels(handle.clone(), ids));
    Ok(Arc::new(LiveSession {
        handle,
        dispatcher,
        cancels,
        canceller,
    }))
}

/// The request side of a call, already encoded.
enum Requests {
    One(Vec<u8>),
    Many(BoxStream<'static, Vec<u8>>),
}

impl Requests {
    fn encode<Req: prost::Message + 'static>(s: impl Stream<Item = Req> + Send + 'static) -> Self {
        Requests::Many(s.map(|r| r.encode_to_vec()).boxed())
    }
}

/// Sends the request frames of a call, and for a request stream client
/// EOS #1 after them.
///
/// A unary request is its first frame alone. The official clients follow it
/// with EOS #1 and EOS #2, and follow a request stream with EOS #2, but no
/// server reads those frames: official servers and ours drop EOS #2 always
/// and EOS #1 of a call to a method that reads no stream (its EOS #1 names no
/// method and opens no stream). Each frame left out is an MLS signature, a
/// hop through the node for every member, and an acknowledgement from each.
async fn send_requests(
    handle: Arc<dyn RpcSessionHandle>,
    rpc_id: String,
    first_frame: Metadata,
    requests: Requests,
) -> Result<(), RpcError> {
    let send_err = |e| RpcError::unavailable(format!("Failed to send request: {e}"));
    match requests {
        Requests::One(bytes) => handle.publish(bytes, first_frame).await.map_err(send_err),
        Requests::Many(mut s) => {
            let mut sent = RequestsSent::None;
            while let Some(bytes) = s.next().await {
                let meta = match sent {
                    RequestsSent::None => first_frame.clone(),
                    RequestsSent::Some => client_next_frame(&rpc_id),
                };
                handle.publish(bytes, meta).await.map_err(send_err)?;
                sent = RequestsSent::Some;
            }
            handle
                .publish(Vec::new(), client_eos1(&rpc_id, sent, &first_frame))
                .await
                .map_err(send_err)
        }
    }
}

struct Running {
    sleep: Pin<Box<tokio::time::Sleep>>,
    rx: CallReceiver,
    send: Option<BoxFuture<'static, Result<(), RpcError>>>,
    tracker: CallTracker,
    cancel: CancelOnDrop,
    // Field order matters only for clarity: the guard unregisters on drop.
    _guard: DispatchGuard,
    _session: Arc<LiveSession>,
}

struct CallState<Res> {
    channel: Arc<ChannelInner>,
    service: String,
    method: String,
    requests: Option<Requests>,
    user_metadata: Metadata,
    deadline_wall: SystemTime,
    deadline: tokio::time::Instant,
    output: Output,
    running: Option<Running>,
    done: bool,
    /// Owed to the caller after the last response: members left mid-call.
    trailing: Option<RpcError>,
    /// Where the servers' headers and trailers go, if the caller asked.
    sink: Option<ResponseMetadataSink>,
    _res: PhantomData<fn() -> Res>,
}

type Item<Res> = Result<MulticastItem<Res>, RpcError>;

enum Event {
    Sent(Result<(), RpcError>),
    Frame(Option<CallEvent>),
    Deadline,
}

/// Drives the sending future while there is one; pending forever after.
async fn poll_sender(
    send: &mut Option<BoxFuture<'static, Result<(), RpcError>>>,
) -> Result<(), RpcError> {
    match send {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

impl<Res: prost::Message + Default + Send + 'static> CallState<Res> {
    /// One `unfold` step: the next item of the call, or `None` when it ended.
    async fn step(mut self) -> Option<(Item<Res>, Self)> {
        if self.done {
            return self.owed();
        }
        if self.running.is_none() {
            match self.start().await {
                Ok(r) => self.running = Some(r),
                Err(e) => return self.fail(e),
            }
        }
        loop {
            let running = self.running.as_mut()?;
            let event = {
                let Running {
                    send, rx, sleep, ..
                } = running;
                tokio::select! {
                    sent = poll_sender(send) => Event::Sent(sent),
                    msg = rx.recv() => Event::Frame(msg),
                    _ = sleep.as_mut() => Event::Deadline,
                }
            };
            // A server's own deadline error races the caller's timer: read
            // after the deadline, it is the call's deadline, whichever of
            // the two the runtime woke this task for first.
            let event = match event {
                Event::Frame(Some(CallEvent::Frame(m)))
                    if crate::metadata::frame_code(&m.metadata) == Code::DeadlineExceeded
                        && tokio::time::Instant::now() >= self.deadline =>
                {
                    Event::Deadline
                }
                other => other,
            };
            let step = match event {
                Event::Sent(Ok(())) => {
                    running.send = None;
                    continue;
                }
                Event::Sent(Err(e)) => return self.fail(e),
                Event::Deadline => {
                    return self.fail(RpcError::deadline_exceeded(
                        "Client deadline exceeded while receiving response",
                    ));
                }
                Event::Frame(Some(CallEvent::Frame(msg))) => {
                    if let Some(sink) = &self.sink {
                        sink.record(&msg.source, &msg.metadata);
                    }
                    running.tracker.on_frame(msg)
                }
                Event::Frame(Some(CallEvent::MessageLost { source, message_id })) => {
                    match running.tracker.on_message_lost(&source, message_id) {
                        Some(e) => Step::Error(e),
                        None => continue,
                    }
                }
                Event::Frame(Some(CallEvent::MemberRemoved(member))) => {
                    match running.tracker.on_member_removed(&member) {
                        Some(e) => Step::Error(e),
                        None => continue,
                    }
                }
                Event::Frame(Some(CallEvent::Overflow { limit })) => {
                    return self.fail(RpcError::new(
                        Code::ResourceExhausted,
                        format!(
                            "the caller left {limit} responses unread; the call was ended \
                             (ChannelOptions::response_buffer)"
                        ),
                    ));
                }
                Event::Frame(Some(CallEvent::MemberLeft(member))) => {
                    if running.tracker.on_member_left(&member) {
                        tracing::debug!(%member, "a member of a running call left the session");
                        if running.tracker.is_finished() {
                            self.complete();
                            return self.owed();
                        }
                    }
                    continue;
                }
                Event::Frame(None) => {
                    // The session died: the dispatcher dropped every entry.
                    if running.tracker.is_finished() {
                        self.complete();
                        return self.owed();
                    }
                    let err = running.tracker.closed_error();
                    return self.fail(err);
                }
            };
            let finished = running.tracker.is_finished();
            let item = match step {
                Step::Skip => None,
                Step::Error(e) => Some(Err(e)),
                Step::Response {
                    source,
                    member,
                    payload,
                } => Some(match Res::decode(payload.as_slice()) {
                    Ok(message) => Ok(MulticastItem { source, message }),
                    Err(e) => {
                        running.tracker.fail_member(member);
                        Err(running.tracker.attribute(
                            member,
                            RpcError::internal(format!("Failed to decode response: {e}")),
                        ))
                    }
                }),
            };
            let finished = finished || running.tracker.is_finished();
            if finished {
                self.complete();
            }
            match item {
                Some(item) => return Some((item, self)),
                // The last frame was an EOS: what the call still owes (a
                // member that left meanwhile) comes now, not never.
                None if finished => return self.owed(),
                None => continue,
            }
        }
    }

    /// After the call ended: the error still owed to the caller, if any.
    fn owed(mut self) -> Option<(Item<Res>, Self)> {
        let e = self.trailing.take()?;
        Some((Err(e), self))
    }

    fn fail(mut self, e: RpcError) -> Option<(Item<Res>, Self)> {
        self.finish();
        self.trailing = None;
        Some((Err(e), self))
    }

    /// Every member answered: the call is over, but the request side may
    /// still owe frames (a unary answer can overtake client EOS #1 and #2).
    /// They are sent anyway, as v1.3 does, by a task bounded by the call's
    /// deadline.
    fn complete(&mut self) {
        if let Some(send) = self.running.as_mut().and_then(|r| r.send.take()) {
            let deadline = self.deadline;
            tokio::spawn(async move {
                if let Ok(Err(e)) = tokio::time::timeout_at(deadline, send).await {
                    tracing::debug!(error = %e, "request frames after the answer not sent");
                }
            });
        }
        self.finish();
    }

    /// Ends the call: unregisters it and stops sending. A member that left
    /// before ending leaves an error owed to the caller.
    fn finish(&mut self) {
        if let Some(r) = &mut self.running {
            self.trailing = r.tracker.departure_error();
            // Every server ended the call: nothing to cancel.
            r.cancel.armed = !r.tracker.is_finished();
        }
        self.done = true;
        self.running = None;
        self.requests = None;
    }

    /// Session set-up, registration and the sending future, bounded by the
    /// call's deadline.
    async fn start(&mut self) -> Result<Running, RpcError> {
        let mut sleep = Box::pin(tokio::time::sleep_until(self.deadline));
        let channel = self.channel.clone();
        let rpc_id = new_rpc_id();
        let setup = async {
            // A session can die between our liveness check and registration;
            // retry with a fresh one a couple of times.
            for _ in 0..3 {
                let session = channel.session().await?;
                match session.dispatcher.register_for(&rpc_id, self.output) {
                    Ok((guard, rx)) => return Ok((session, guard, rx)),
                    // A member left between the liveness check and now:
                    // the call belongs on a fresh session with everyone.
                    Err(RegisterError::Closed | RegisterError::MemberGone) => {
                        channel.invalidate(&session)
                    }
                    Err(RegisterError::Duplicate) => {
                        return Err(RpcError::internal("duplicate rpc-id"));
                    }
                }
            }
            Err(RpcError::unavailable("session closed during call set-up"))
        };
        let (session, guard, rx) = tokio::select! {
            r = setup => r?,
            _ = &mut sleep => {
                return Err(RpcError::deadline_exceeded(
                    "Client deadline exceeded during session setup",
                ));
            }
        };
        let mut first_frame = client_first_frame(
            &self.user_metadata,
            self.deadline_wall,
            &self.service,
            &self.method,
            &rpc_id,
        );
        if self.output == Output::Unary {
            // Each member's answer ends its part (the tracker's rule):
            // servers that know the key leave out the EOS behind it.
            first_frame.insert(ANSWER_ENDS_KEY.into(), "true".into());
        }
        let requests = self
            .requests
            .take()
            .ok_or_else(|| RpcError::internal("call started twice"))?;
        let send = send_requests(
            session.handle.clone(),
            rpc_id.clone(),
            first_frame,
            requests,
        )
        .boxed();
        // Snapshot after registering: a member removed from now on is told
        // to this call (MemberRemoved), one added is not waited for.
        let members = self.channel.members_now();
        tracing::debug!(rpc_id = %rpc_id, service = %self.service, method = %self.method, "call started");
        Ok(Running {
            sleep,
            rx,
            send: Some(send),
            tracker: CallTracker::new(self.channel.group.is_some(), self.output, &members),
            cancel: CancelOnDrop {
                cancels: session.cancels.clone(),
                rpc_id: rpc_id.clone(),
                armed: true,
            },
            _guard: guard,
            _session: session,
        })
    }
}
