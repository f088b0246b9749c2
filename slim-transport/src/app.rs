//! The public session API of an embedded SLIM app, and the async driver that
//! pumps the sans-IO [`crate::session`] state machines.
//!
//! An [`App`] owns one in-process connection to the data plane (a
//! `LocalConnection` of the `Service`): a reader task takes what the
//! forwarder delivers, resolves subscription acks, and hands Publish
//! messages to the [`SessionLayer`], which routes them by session id or
//! answers them (discovery, new participant sessions). Each session runs in
//! its own task that owns the state machine and exactly one timer: it feeds
//! in messages, commands and expired deadlines, then drains transmits (to
//! the forwarder) and events (to the app's [`Session`]).
//!
//! A session task never waits for its application: events that do not fit
//! the app's queue wait in the task's backlog, and while they do the state
//! machine refuses fresh MSGs unacknowledged (their senders retransmit
//! them), so acks, pings and timers keep running however slowly the app
//! reads, and nothing acknowledged is ever dropped.
//!
//! What this module must not do: decide anything about the protocol (that
//! is `session`'s job), hold a std lock across an `.await`, or leave a task
//! without an owner (the [`App`] aborts its tasks when dropped).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use rand::Rng as _;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::Name;
use crate::forwarder::ForwardError;
use crate::identity::{IdentityProvider as _, SharedSecret, unix_now};
use crate::session::{self, Context, Dispatch, Event, JobId, SessionLayer, WallClock};
use crate::wire::{self, SlimHeader, Subscribe, Unsubscribe, message::MessageType};

pub use crate::session::{ReceivedMessage, SessionConfig, SessionError, SessionEvent, SessionKind};

/// A connection index in the local node's connection table.
pub type ConnId = u64;

/// How long an app waits for a SubscriptionAck. SLIM apps wait 10 s; a node
/// forwarding to a remote peer may itself wait up to 20 s for that peer.
const SUBSCRIPTION_ACK_WAIT: Duration = Duration::from_secs(30);
/// Messages queued for one session task before the reader waits.
const SESSION_INBOX: usize = 1024;
/// Commands queued for one session task.
const SESSION_COMMANDS: usize = 256;
/// Events queued for the application; past this the session task keeps
/// the overflow in its backlog and refuses fresh MSGs until the app reads.
const SESSION_EVENTS: usize = 4096;
/// Accepted sessions not yet taken by `listen_for_session`.
const LISTEN_QUEUE: usize = 64;

/// The instance id SLIM derives from an identity id: SipHash-1-3 with zero
/// keys (`DefaultHasher::new()`) over the id string, never the NULL id.
fn instance_id(identity_id: &str) -> u64 {
    // Same hasher as SLIM's App (fixed zero keys, not randomly seeded).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    identity_id.hash(&mut h);
    let id = h.finish();
    if id == crate::name::NULL_ID {
        id ^ 1
    } else {
        id
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not wedge the app; the state stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct AppState {
    layer: SessionLayer,
    sessions: HashMap<u32, Inbox>,
    tasks: HashMap<u32, JoinHandle<()>>,
    pending_acks: HashMap<u64, oneshot::Sender<Result<(), String>>>,
    subscriptions: HashMap<(Name, Option<ConnId>), u64>,
    routes: HashMap<(Name, ConnId), u64>,
    /// Connections the app subscribed itself on: group channels are
    /// subscribed on them too.
    remote_conns: Vec<ConnId>,
    /// What its SLIM v3 edge refused, per session (v3 apps only).
    refusals: Option<Arc<Refusals>>,
}

/// Where the app's reader hands a session its frames: pings (liveness)
/// have a lane of their own, so a flood of data frames that fills the
/// session's inbox (a peer retransmitting to a member whose app does not
/// read) never makes it miss the pings that show its moderator alive.
#[derive(Clone)]
struct Inbox {
    frames: mpsc::Sender<wire::Message>,
    pings: mpsc::Sender<wire::Message>,
}

/// Room in a session's ping lane (pings are a few per interval).
const SESSION_PINGS: usize = 64;

/// Why a SLIM v3 edge refused a session's frames (a signature that does not
/// verify, an identity token that does not check out): the last cause per
/// session id. A control request that then times out names it, since from
/// the session a refused answer looks like no answer at all.
#[derive(Debug, Default)]
pub(crate) struct Refusals(Mutex<HashMap<u32, String>>);

/// Sessions whose refusals are remembered at once; older ones are dropped.
const MAX_REFUSALS: usize = 1024;

impl Refusals {
    fn note(&self, session_id: u32, cause: String) {
        let mut map = lock(&self.0);
        if map.len() >= MAX_REFUSALS && !map.contains_key(&session_id) {
            map.clear();
        }
        map.insert(session_id, cause);
    }

    fn take(&self, session_id: u32) -> Option<String> {
        lock(&self.0).remove(&session_id)
    }
}

struct Shared {
    name: Name,
    conn_id: ConnId,
    identity: SharedSecret,
    tx: mpsc::Sender<wire::Message>,
    state: Mutex<AppState>,
    /// Which sessions hold which group channel, locally and per link. An
    /// async lock: it is held while the resulting (un)subscriptions are
    /// queued, so two sessions' changes reach the data plane in the order
    /// their counts changed.
    channels: tokio::sync::Mutex<ChannelHolds>,
}

/// One channel (un)subscription the data plane must see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChannelOp {
    /// The app's own subscription on its local connection (no flags).
    Local { subscribe: bool },
    /// On link `conn`: the route of the channel to that link and the
    /// subscription forwarded to the peer (`recv_from` and `forward_to` both
    /// `conn`, so the local subscription is left alone).
    Link { conn: ConnId, subscribe: bool },
}

/// Reference counts of the group channels the sessions of one app hold.
///
/// The data plane keeps a subscription once per `(name, connection,
/// subscription id)` and the session layer subscribes channels with id 0 (as
/// SLIM's does), so two sessions on the same channel name share one entry
/// and one session's unsubscribe would withdraw it for both. Counting here
/// sends a subscription only for the first holder and its withdrawal only
/// for the last one. Plain data: it decides, the caller sends.
#[derive(Debug, Default)]
struct ChannelHolds {
    channels: HashMap<Name, ChannelCount>,
}

#[derive(Debug, Default)]
struct ChannelCount {
    /// Sessions holding the channel (each holds the local subscription).
    sessions: usize,
    /// Per link: sessions holding the channel on it.
    links: HashMap<ConnId, usize>,
}

impl ChannelHolds {
    /// A session starts holding `channel` (locally and on `links`).
    fn hold(&mut self, channel: &Name, links: &[ConnId]) -> Vec<ChannelOp> {
        let count = self.channels.entry(channel.clone()).or_default();
        count.sessions += 1;
        let mut ops = Vec::new();
        if count.sessions == 1 {
            ops.push(ChannelOp::Local { subscribe: true });
        }
        ops.extend(Self::hold_links(count, links));
        ops
    }

    /// A session already holding `channel` also holds it on `links`.
    fn hold_more_links(&mut self, channel: &Name, links: &[ConnId]) -> Vec<ChannelOp> {
        match self.channels.get_mut(channel) {
            Some(count) => Self::hold_links(count, links),
            None => Vec::new(),
        }
    }

    fn hold_links(count: &mut ChannelCount, links: &[ConnId]) -> Vec<ChannelOp> {
        let mut ops = Vec::new();
        for &conn in links {
            let n = count.links.entry(conn).or_default();
            *n += 1;
            if *n == 1 {
                ops.push(ChannelOp::Link {
                    conn,
                    subscribe: true,
                });
            }
        }
        ops
    }

    /// A session stops holding `channel` (it held it on `links`).
    fn release(&mut self, channel: &Name, links: &[ConnId]) -> Vec<ChannelOp> {
        let Some(count) = self.channels.get_mut(channel) else {
            return Vec::new();
        };
        let mut ops = Vec::new();
        for conn in links {
            if let Some(n) = count.links.get_mut(conn) {
                *n -= 1;
                if *n == 0 {
                    count.links.remove(conn);
                    ops.push(ChannelOp::Link {
                        conn: *conn,
                        subscribe: false,
                    });
                }
            }
        }
        count.sessions = count.sessions.saturating_sub(1);
        if count.sessions == 0 {
            // Links another session added but never released with it.
            ops.extend(count.links.drain().map(|(conn, _)| ChannelOp::Link {
                conn,
                subscribe: false,
            }));
            ops.push(ChannelOp::Local { subscribe: false });
            self.channels.remove(channel);
        }
        ops
    }
}

impl Shared {
    fn token(&self) -> String {
        self.identity.token().unwrap_or_default()
    }

    fn subscription_msg(
        &self,
        subscribe: bool,
        name: &Name,
        subscription_id: u64,
        forward_to: Option<ConnId>,
        recv_from: Option<ConnId>,
    ) -> wire::Message {
        let header = Some(SlimHeader {
            source: Some(self.name.to_wire()),
            destination: Some(name.to_wire()),
            fanout: 1,
            identity: self.token(),
            recv_from,
            forward_to,
            incoming_conn: None,
            error: None,
        });
        let message_type = if subscribe {
            MessageType::Subscribe(Subscribe {
                header,
                subscription_id,
            })
        } else {
            MessageType::Unsubscribe(Unsubscribe {
                header,
                subscription_id,
            })
        };
        wire::Message {
            metadata: HashMap::new(),
            message_type: Some(message_type),
        }
    }

    /// Sends a (un)subscription with a fresh id and waits for its ack.
    async fn acked(&self, msg_for: impl FnOnce(u64) -> wire::Message) -> Result<u64, SessionError> {
        let id = loop {
            let id: u64 = rand::rng().random();
            if id != 0 && !lock(&self.state).pending_acks.contains_key(&id) {
                break id;
            }
        };
        self.acked_with(id, msg_for(id)).await.map(|()| id)
    }

    async fn acked_with(&self, id: u64, msg: wire::Message) -> Result<(), SessionError> {
        let (tx, rx) = oneshot::channel();
        lock(&self.state).pending_acks.insert(id, tx);
        if self.tx.send(msg).await.is_err() {
            lock(&self.state).pending_acks.remove(&id);
            return Err(SessionError::Transport("data plane is gone".into()));
        }
        let result = tokio::time::timeout(SUBSCRIPTION_ACK_WAIT, rx).await;
        lock(&self.state).pending_acks.remove(&id);
        match result {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(SessionError::Transport(e)),
            Ok(Err(_)) => Err(SessionError::Transport("data plane is gone".into())),
            Err(_) => Err(SessionError::Transport("subscription ack timed out".into())),
        }
    }

    /// The links a group channel is held on by a session that reaches its
    /// peers through `links`: those plus every connection the app subscribed
    /// itself on.
    fn channel_links(&self, links: &[ConnId]) -> Vec<ConnId> {
        let mut conns = lock(&self.state).remote_conns.clone();
        for c in links {
            if !conns.contains(c) {
                conns.push(*c);
            }
        }
        conns
    }

    /// A session joined (`hold`) or left a group channel: counts it and
    /// queues what changed for the data plane, all under the channel gate.
    /// Locally the app subscribes the channel; on each link it routes the
    /// channel to the link and subscribes it on the peer, so our sends
    /// reach the remote members and theirs reach us (SLIM does both,
    /// Appendix C.2). No acks are requested (subscription id 0), as SLIM's
    /// session layer does.
    async fn channel_change(
        &self,
        channel: &Name,
        change: impl FnOnce(&mut ChannelHolds) -> Vec<ChannelOp>,
    ) {
        let mut holds = self.channels.lock().await;
        for op in change(&mut holds) {
            let m = match op {
                ChannelOp::Local { subscribe } => {
                    self.subscription_msg(subscribe, channel, 0, None, None)
                }
                ChannelOp::Link { conn, subscribe } => {
                    self.subscription_msg(subscribe, channel, 0, Some(conn), Some(conn))
                }
            };
            debug!(app = %self.name, channel = %channel, ?op, "channel subscription");
            if self.tx.send(m).await.is_err() {
                warn!(channel = %channel, "data plane is gone");
            }
        }
    }
}

/// An embedded SLIM application: one name, one identity, one local
/// connection to the data plane, any number of sessions.
pub struct App {
    shared: Arc<Shared>,
    listen: tokio::sync::Mutex<mpsc::Receiver<Session>>,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.shared.name)
            .field("conn_id", &self.shared.conn_id)
            .finish_non_exhaustive()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.reader.abort();
        for (_, t) in lock(&self.shared.state).tasks.drain() {
            t.abort();
        }
    }
}

impl App {
    /// Starts an app on a local connection (`tx`/`rx` of the data plane's
    /// `LocalConnection` with id `conn_id`): derives the instance id from
    /// the identity, subscribes the app's full name and waits for the ack.
    pub async fn start<E>(
        base: Name,
        identity: SharedSecret,
        conn_id: ConnId,
        tx: mpsc::Sender<wire::Message>,
        rx: mpsc::Receiver<Result<wire::Message, E>>,
    ) -> Result<Self, SessionError>
    where
        E: std::fmt::Display + Send + 'static,
    {
        let name = base.with_id(instance_id(crate::identity::IdentityProvider::id(
            &identity,
        )));
        let ctx = Context {
            app_name: name.clone(),
            provider: Arc::new(identity.clone()),
            verifier: Arc::new(identity.clone()),
            clock: WallClock {
                base: Instant::now(),
                unix_at_base: unix_now(),
            },
            aad: None,
            ping_epoch: false,
            presence: false,
        };
        // MLS is on by default: sessions build their group state from the
        // app's own shared secret (`set_crypto` can replace the factory).
        let layer = SessionLayer::new(ctx, rand::rng().random())
            .with_crypto(session::mls_factory(identity.clone()));
        let shared = Arc::new(Shared {
            name: name.clone(),
            conn_id,
            identity,
            tx,
            state: Mutex::new(AppState {
                layer,
                sessions: HashMap::new(),
                tasks: HashMap::new(),
                pending_acks: HashMap::new(),
                subscriptions: HashMap::new(),
                routes: HashMap::new(),
                remote_conns: Vec::new(),
                refusals: None,
            }),
            channels: tokio::sync::Mutex::new(ChannelHolds::default()),
        });
        let (listen_tx, listen_rx) = mpsc::channel(LISTEN_QUEUE);
        let reader = tokio::spawn(read_loop(shared.clone(), rx, listen_tx));
        let app = App {
            shared,
            listen: tokio::sync::Mutex::new(listen_rx),
            reader,
        };
        let own = app.shared.name.clone();
        let sub_id = app
            .shared
            .acked(|id| app.shared.subscription_msg(true, &own, id, None, None))
            .await?;
        lock(&app.shared.state)
            .subscriptions
            .insert((own, None), sub_id);
        Ok(app)
    }

    /// The full name, including this app's instance id.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// The id of this app's local connection.
    pub fn conn_id(&self) -> ConnId {
        self.shared.conn_id
    }

    /// Subscribes `name` (its id replaced by this app's, as SLIM does) so
    /// messages for it reach this app; with `conn`, also on that remote
    /// link (the node acks after the remote node did).
    pub async fn subscribe(&self, name: &Name, conn: Option<ConnId>) -> Result<(), SessionError> {
        let name = name.with_id(self.shared.name.id());
        let id = self
            .shared
            .acked(|id| self.shared.subscription_msg(true, &name, id, conn, None))
            .await?;
        let mut st = lock(&self.shared.state);
        st.subscriptions.insert((name, conn), id);
        if let Some(c) = conn
            && !st.remote_conns.contains(&c)
        {
            st.remote_conns.push(c);
        }
        Ok(())
    }

    /// Undoes [`subscribe`](Self::subscribe).
    pub async fn unsubscribe(&self, name: &Name, conn: Option<ConnId>) -> Result<(), SessionError> {
        let name = name.with_id(self.shared.name.id());
        let id = lock(&self.shared.state)
            .subscriptions
            .remove(&(name.clone(), conn))
            .unwrap_or(0);
        let msg = self.shared.subscription_msg(false, &name, id, conn, None);
        if id == 0 {
            self.shared
                .tx
                .send(msg)
                .await
                .map_err(|_| SessionError::Transport("data plane is gone".into()))
        } else {
            self.shared.acked_with(id, msg).await
        }
    }

    /// Routes messages for `name` to connection `conn` (local table only).
    pub async fn set_route(&self, name: &Name, conn: ConnId) -> Result<(), SessionError> {
        let id = self
            .shared
            .acked(|id| {
                self.shared
                    .subscription_msg(true, name, id, None, Some(conn))
            })
            .await?;
        lock(&self.shared.state)
            .routes
            .insert((name.clone(), conn), id);
        Ok(())
    }

    /// Creates a session as its moderator. `dest` is the peer (P2P; usually
    /// without instance id) or the channel (group). The [`Completion`]
    /// resolves when a P2P handshake finished (at once for a group).
    pub async fn create_session(
        &self,
        config: SessionConfig,
        dest: &Name,
    ) -> Result<(Session, Completion), SessionError> {
        self.start_session(&config, dest, None, None)
    }

    /// Creates the machine of a session this app moderates and starts its
    /// task (events to `sink`, or to the returned side's queue).
    fn start_session(
        &self,
        config: &SessionConfig,
        dest: &Name,
        sink: Option<EventSink>,
        filter: Option<session::InboundFilter>,
    ) -> Result<(Session, Completion), SessionError> {
        let (mut machine, job) =
            lock(&self.shared.state)
                .layer
                .create(config, dest, Instant::now())?;
        if let Some(filter) = filter {
            machine.set_inbound_filter(filter);
        }
        let mut jobs = HashMap::new();
        let completion = match job {
            Some(job) => {
                let (tx, rx) = oneshot::channel();
                jobs.insert(job, tx);
                Completion::pending(rx)
            }
            None => Completion::ready(Ok(())),
        };
        let session = spawn_session(&self.shared, machine, jobs, None, sink);
        Ok((session, completion))
    }

    /// As [`App::create_session`], but every event of the session goes to
    /// `sink`, called on the session's own task as the event happens: no
    /// queue and no task between the session and its reader (one wake-up
    /// less per message). The sink sees `Closed` last, once (also when the
    /// task ends without the machine saying so), and is dropped then. It
    /// must not block: it holds up the session's acks and timers while it
    /// runs. With a `filter`, the MSGs it picks are acknowledged but
    /// neither decrypted nor delivered (see [`session::InboundFilter`]): the
    /// sink's owner knows it would discard them. Returns the session's
    /// handle and its completion.
    pub async fn create_session_with_sink(
        &self,
        config: SessionConfig,
        dest: &Name,
        sink: EventSink,
        filter: Option<session::InboundFilter>,
    ) -> Result<(SessionHandle, Completion), SessionError> {
        let (session, completion) = self.start_session(&config, dest, Some(sink), filter)?;
        Ok((session.handle, completion))
    }

    /// The next session another app created with this one (its welcome
    /// arrived).
    pub async fn listen_for_session(&self) -> Result<Session, SessionError> {
        // The guard only serializes concurrent listeners on the receiver.
        let mut rx = self.listen.lock().await;
        rx.recv().await.ok_or(SessionError::Closed)
    }

    /// Builds the MLS state of sessions created or accepted from now on
    /// with `factory` (without one, MLS sessions are refused).
    pub fn set_crypto(&self, factory: session::CryptoFactory) {
        lock(&self.shared.state).layer.set_crypto(factory);
    }

    /// Sessions accepted from now on (the ones other apps open towards this
    /// one) acknowledge but neither decrypt nor deliver the MSGs their
    /// filter, made by `factory`, picks (see [`session::InboundFilter`]).
    pub fn set_accept_filter(&self, factory: session::InboundFilterFactory) {
        lock(&self.shared.state).layer.set_accept_filter(factory);
    }

    /// Sessions created from now on authenticate each MSG's header with
    /// `aad` (the SLIM v3 edge sets it).
    pub fn set_aad(&self, aad: session::AadFn) {
        lock(&self.shared.state).layer.set_aad(aad);
    }

    /// Sessions created from now on note their MLS epoch on outbound pings
    /// (the SLIM v3 edge asks for it: its heartbeats carry the epoch).
    pub(crate) fn set_ping_epoch(&self, on: bool) {
        let mut state = lock(&self.shared.state);
        state.layer.set_ping_epoch(on);
        state.layer.set_presence(on);
    }

    /// Inbound messages that reached no session (or found its inbox full)
    /// and were dropped, by reason.
    pub fn dropped_counters(&self) -> session::Counters {
        lock(&self.shared.state).layer.counters()
    }
}

/// The MLS ciphersuite of a SLIM v3 app's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MlsSuite {
    /// `MLS_128_DHKEMP256_AES128GCM_SHA256_P256` (0x0002): the official
    /// 2.x/3.x default.
    #[default]
    P256Aes128,
    /// `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519` (0x0001): the SLIM 1.3
    /// suite, which official 3.x builds use with their `curve25519` feature.
    Curve25519Aes128,
}

impl crate::service::Service {
    /// Starts an app named `name` (its instance id is derived from
    /// `identity`) on a new local connection of this node.
    pub async fn app(&self, name: Name, identity: SharedSecret) -> Result<App, SessionError> {
        let conn = self.local_connection();
        App::start(name, identity, conn.id, conn.tx, conn.rx).await
    }

    /// Starts an app that speaks the SLIM v3 wire: the same session layer
    /// behind a [`crate::codec3::Codec3`] edge on a v3 local connection
    /// (link this service to a node with a v3 link).
    pub async fn app_v3(&self, name: Name, identity: SharedSecret) -> Result<App, SessionError> {
        self.app_v3_with_suite(name, identity, MlsSuite::default())
            .await
    }

    /// As [`app_v3`](Self::app_v3), with the MLS ciphersuite of its
    /// sessions chosen: the official 3.x default (P-256) or the Curve25519
    /// suite that official builds with the `curve25519` feature use. Both
    /// ends of a session must use the same one.
    pub async fn app_v3_with_suite(
        &self,
        name: Name,
        identity: SharedSecret,
        suite: MlsSuite,
    ) -> Result<App, SessionError> {
        let conn = self.local_connection3();
        let own_v1 = instance_id(crate::identity::IdentityProvider::id(&identity));
        let codec = crate::codec3::Codec3::new(&identity, own_v1, crate::forwarder::random_key());
        let aad = codec.aad_fn();
        let (app_tx, from_app) = mpsc::channel::<wire::Message>(1024);
        let (to_app, app_rx) = mpsc::channel::<Result<wire::Message, ForwardError>>(1024);
        let refusals = Arc::new(Refusals::default());
        tokio::spawn(run_codec3(
            codec,
            refusals.clone(),
            from_app,
            to_app,
            conn.tx,
            conn.rx,
        ));
        let app = App::start(name, identity.clone(), conn.id, app_tx, app_rx).await?;
        lock(&app.shared.state).refusals = Some(refusals);
        // v3 groups use the P-256 suite (0x0002) of the official 3.x line
        // unless told otherwise, and authenticate each MSG's v3 header as
        // its MLS AAD.
        app.set_crypto(match suite {
            MlsSuite::P256Aes128 => session::mls_factory_v3(identity),
            MlsSuite::Curve25519Aes128 => session::mls_factory(identity),
        });
        app.set_aad(aad);
        // v3 heartbeats carry the member's MLS epoch.
        app.set_ping_epoch(true);
        Ok(app)
    }
}

/// Pumps frames between an app's session layer and its v3 connection
/// through the codec; ends when either side goes away.
async fn run_codec3(
    mut codec: crate::codec3::Codec3,
    refusals: Arc<Refusals>,
    mut from_app: mpsc::Receiver<wire::Message>,
    to_app: mpsc::Sender<Result<wire::Message, ForwardError>>,
    to_wire: mpsc::Sender<crate::wire3::Message>,
    mut from_wire: mpsc::Receiver<Result<crate::wire3::Message, ForwardError>>,
) {
    loop {
        tokio::select! {
            m = from_app.recv() => {
                let Some(m) = m else { return };
                tracing::trace!(frame = ?crate::session::packet::peek(&m), "v3 frame out");
                match codec.outbound(m, unix_now(), Instant::now()) {
                    Ok(out) => {
                        for w in out.wire {
                            if to_wire.send(w).await.is_err() {
                                return;
                            }
                        }
                        for l in out.local {
                            if to_app.send(Ok(l)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => warn!(error = %e, "frame not sent: no SLIM v3 form"),
                }
            }
            r = from_wire.recv() => {
                let Some(r) = r else { return };
                let item = match r {
                    Ok(m) => {
                        let session = crate::codec3::session_id(&m);
                        match codec.inbound(m, Instant::now()) {
                        Ok(Some(m)) => {
                            tracing::trace!(frame = ?crate::session::packet::peek(&m), "v3 frame in");
                            Ok(m)
                        }
                        Ok(None) => continue,
                        Err(e) => {
                            warn!(error = %e, "SLIM v3 frame dropped");
                            if e.is_refusal() && let Some(id) = session {
                                refusals.note(id, e.to_string());
                            }
                            continue;
                        }
                    }},
                    Err(e) => Err(e),
                };
                if to_app.send(item).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads everything the forwarder delivers to the app.
async fn read_loop<E: std::fmt::Display>(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Result<wire::Message, E>>,
    listen: mpsc::Sender<Session>,
) {
    while let Some(item) = rx.recv().await {
        let msg = match item {
            Ok(m) => m,
            Err(e) => {
                debug!(app = %shared.name, error = %e, "data plane could not forward a message");
                continue;
            }
        };
        match &msg.message_type {
            Some(MessageType::SubscriptionAck(ack)) => {
                let waiter = lock(&shared.state)
                    .pending_acks
                    .remove(&ack.subscription_id);
                if let Some(w) = waiter {
                    let r = if ack.success {
                        Ok(())
                    } else {
                        Err(ack.error.clone())
                    };
                    let _ = w.send(r);
                }
                continue;
            }
            Some(MessageType::Publish(_)) => {}
            _ => continue,
        }
        let dispatch = lock(&shared.state).layer.handle(msg, Instant::now());
        match dispatch {
            Dispatch::Session(id, m) => {
                let inbox = lock(&shared.state).sessions.get(&id).cloned();
                // Without an inbox the session is ending; its task forgets it.
                // A full inbox drops the message rather than stalling every
                // other session of the app: the sender retransmits it.
                // Session tasks never wait for their apps, so this takes a
                // task starved of CPU or of data-plane capacity. Counted, so
                // it is never silent (`App::dropped_counters`).
                let ping = packet_kind(&m) == Some(wire::SessionMessageType::Ping);
                if let Some(inbox) = inbox
                    && let Err(mpsc::error::TrySendError::Full(_)) = if ping {
                        inbox.pings.try_send(m)
                    } else {
                        inbox.frames.try_send(m)
                    }
                {
                    lock(&shared.state).layer.count_inbox_full();
                    debug!(app = %shared.name, session_id = id, "session inbox full; message dropped");
                }
            }
            Dispatch::Accepted(s) => {
                spawn_session(&shared, *s, HashMap::new(), Some(listen.clone()), None);
            }
            Dispatch::Reply(m) => {
                let _ = shared.tx.send(m).await;
            }
            Dispatch::Dropped(_) => {}
        }
    }
    debug!(app = %shared.name, "data plane connection closed");
}

/// What a session handle asks its task.
enum Command {
    Publish {
        target: Target,
        payload: Vec<u8>,
        metadata: HashMap<String, String>,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    Invite {
        member: Name,
        reply: oneshot::Sender<Result<Completion, SessionError>>,
    },
    InviteMany {
        members: Vec<Name>,
        reply: oneshot::Sender<Result<Completion, SessionError>>,
    },
    Remove {
        member: Name,
        reply: oneshot::Sender<Result<Completion, SessionError>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
    SoftClose {
        reply: oneshot::Sender<Result<Completion, SessionError>>,
    },
    Rejoin {
        reply: oneshot::Sender<Result<Completion, SessionError>>,
    },
}

enum Target {
    Destination,
    To(Name),
    Unicast(Name),
}

/// What handles can read without asking the task.
struct Info {
    local: Name,
    destination: Name,
    members: Vec<Name>,
    closed: bool,
    counters: session::Counters,
}

/// Room for one event in the app's queue; `None` once nobody reads it (or
/// it was already dropped).
async fn reserve(
    events: Option<mpsc::Sender<SessionEvent>>,
) -> Option<mpsc::OwnedPermit<SessionEvent>> {
    match events {
        Some(tx) => tx.reserve_owned().await.ok(),
        None => None,
    }
}

/// Receives the events of a session created with
/// [`App::create_session_with_sink`], on the session's task.
pub type EventSink = Box<dyn FnMut(SessionEvent) + Send + 'static>;

/// Starts the task of one session and returns its application side. For an
/// accepted (participant) session the application side is handed to
/// `listen` once the welcome arrived. With a `sink`, events go to it and
/// the returned side's event queue stays empty.
fn spawn_session(
    shared: &Arc<Shared>,
    machine: session::Session,
    jobs: HashMap<JobId, oneshot::Sender<Result<(), SessionError>>>,
    listen: Option<mpsc::Sender<Session>>,
    sink: Option<EventSink>,
) -> Session {
    let id = machine.id();
    let (inbox_tx, inbox) = mpsc::channel(SESSION_INBOX);
    let (pings_tx, pings) = mpsc::channel(SESSION_PINGS);
    let (cmd_tx, commands) = mpsc::channel(SESSION_COMMANDS);
    let (events_tx, events) = mpsc::channel(SESSION_EVENTS);
    let info = Arc::new(Mutex::new(Info {
        local: machine.local_name().clone(),
        destination: machine.destination().clone(),
        members: machine.members().to_vec(),
        closed: false,
        counters: machine.counters(),
    }));
    let handle = SessionHandle {
        id,
        kind: machine.kind(),
        commands: cmd_tx,
        info: info.clone(),
    };
    let app_side = Session {
        handle: handle.clone(),
        events,
    };
    let (to_return, pending) = match listen {
        Some(_) => (None, Some(app_side)),
        None => (Some(app_side), None),
    };
    let driver = Driver {
        shared: shared.clone(),
        machine,
        inbox,
        pings,
        inbox_ref: inbox_tx.downgrade(),
        told_lingering: false,
        commands,
        commands_open: true,
        events: if sink.is_some() {
            None
        } else {
            Some(events_tx)
        },
        sink,
        backlog: VecDeque::new(),
        events_end: false,
        info,
        jobs,
        published: Vec::new(),
        close_waiters: Vec::new(),
        pending,
        listen,
        links: Vec::new(),
        channel: None,
        channel_links: Vec::new(),
    };
    // The inbox must be reachable before the task can send anything: a
    // reply may come back before `spawn` even returns.
    lock(&shared.state).sessions.insert(
        id,
        Inbox {
            frames: inbox_tx,
            pings: pings_tx,
        },
    );
    let task = tokio::spawn(driver.run());
    {
        let mut st = lock(&shared.state);
        if st.sessions.contains_key(&id) {
            st.tasks.insert(id, task);
        }
    }
    // Only a participant's side is absent here; its caller ignores it.
    to_return.unwrap_or(Session {
        handle,
        events: mpsc::channel(1).1,
    })
}

/// Where a publish's result goes.
type PublishReply = oneshot::Sender<Result<(), SessionError>>;

/// One session's task: the state machine, its timer and its channels.
struct Driver {
    shared: Arc<Shared>,
    machine: session::Session,
    inbox: mpsc::Receiver<wire::Message>,
    /// Pings, apart from the other frames (see [`Inbox`]).
    pings: mpsc::Receiver<wire::Message>,
    /// Tells this task's inbox from a newer session's under the same id
    /// (a participant invited again into the group it was removed from).
    inbox_ref: mpsc::WeakSender<wire::Message>,
    /// The layer was told this (participant) session closed and lingers.
    told_lingering: bool,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    /// Dropped right after `Closed` is delivered, which ends the app's
    /// event stream.
    events: Option<mpsc::Sender<SessionEvent>>,
    /// Takes the events instead of `events` (never both); dropped after
    /// `Closed`.
    sink: Option<EventSink>,
    /// Events for the app that did not fit its queue, oldest first. Bounded
    /// in practice: while it is not empty the machine refuses fresh MSGs,
    /// so only messages it had already acknowledged (held for reordering)
    /// and a few notices can still land here.
    backlog: VecDeque<SessionEvent>,
    /// `Closed` was queued: drop `events` once the backlog is delivered.
    events_end: bool,
    info: Arc<Mutex<Info>>,
    jobs: HashMap<JobId, oneshot::Sender<Result<(), SessionError>>>,
    /// Results of publishes, answered once their messages are on their way:
    /// waking the publisher first would put its task ahead of the send.
    published: Vec<(PublishReply, Result<(), SessionError>)>,
    close_waiters: Vec<oneshot::Sender<()>>,
    pending: Option<Session>,
    listen: Option<mpsc::Sender<Session>>,
    /// Connections the session's peers were reached through
    /// ([`Event::Route`]).
    links: Vec<ConnId>,
    /// The group channel while subscribed.
    channel: Option<Name>,
    /// The links this session holds its channel on.
    channel_links: Vec<ConnId>,
}

impl Driver {
    async fn run(mut self) {
        let id = self.machine.id();
        loop {
            self.flush().await;
            for (reply, r) in self.published.drain(..) {
                let _ = reply.send(r);
            }
            if self.machine.is_finished(Instant::now()) {
                break;
            }
            if !self.told_lingering && self.machine.is_closed() && !self.machine.is_moderator() {
                self.told_lingering = true;
                lock(&self.shared.state).layer.set_lingering(id);
            }
            let deadline = self.machine.poll_timeout();
            let sleep = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            let behind = !self.backlog.is_empty();
            // A clone, so that waiting for room borrows nothing of `self`.
            let events = if behind { self.events.clone() } else { None };
            tokio::select! {
                m = self.inbox.recv() => match m {
                    Some(m) => {
                        self.machine.set_receive_paused(!self.backlog.is_empty());
                        self.machine.handle_message(m, Instant::now());
                    }
                    None => break,
                },
                Some(m) = self.pings.recv() => {
                    self.machine.handle_message(m, Instant::now());
                }
                permit = reserve(events), if behind => match permit {
                    Some(permit) => {
                        if let Some(ev) = self.backlog.pop_front() {
                            permit.send(ev);
                        }
                        self.end_events_if_done();
                    }
                    // Nobody reads any more: nothing to keep.
                    None => {
                        self.backlog.clear();
                        self.end_events_if_done();
                    }
                },
                c = self.commands.recv(), if self.commands_open => match c {
                    Some(c) => self.command(c),
                    None => {
                        // Every handle is gone: nobody can use the session.
                        self.commands_open = false;
                        self.machine.close(Instant::now());
                    }
                },
                () = sleep => self.machine.handle_timeout(Instant::now()),
            }
        }
        lock(&self.info).closed = true;
        for w in self.close_waiters.drain(..) {
            let _ = w.send(());
        }
        for (_, j) in self.jobs.drain() {
            let _ = j.send(Err(SessionError::Closed));
        }
        // A session that ended without unsubscribing (its inbox closed)
        // still gives its share of the channel back.
        self.release_channel().await;
        if let Some(mut sink) = self.sink.take() {
            sink(SessionEvent::Closed {
                reason: "the session's task ended".to_string(),
            });
        }
        // What the app has not taken yet is still its own (the last messages
        // and `Closed`): hand it over before leaving. This waits for the app
        // to read or drop its side, while the task is still registered, so
        // dropping the `App` stops it.
        if let Some(events) = self.events.take() {
            for ev in self.backlog.drain(..) {
                if events.send(ev).await.is_err() {
                    break;
                }
            }
        }
        let mut st = lock(&self.shared.state);
        // Unless a new session took the id over (its inbox replaced ours).
        let own = match st.sessions.get(&id) {
            None => true,
            Some(registered) => self
                .inbox_ref
                .upgrade()
                .is_some_and(|ours| registered.frames.same_channel(&ours)),
        };
        if own {
            st.sessions.remove(&id);
            st.tasks.remove(&id);
            st.layer.forget(id);
        }
    }

    /// Drops the event sender once `Closed` was handed over, which ends
    /// the app's event stream.
    fn end_events_if_done(&mut self) {
        if self.events_end && self.backlog.is_empty() {
            self.events = None;
        }
    }

    fn command(&mut self, c: Command) {
        let now = Instant::now();
        match c {
            Command::Publish {
                target,
                payload,
                metadata,
                reply,
            } => {
                let r = match target {
                    Target::Destination => self.machine.publish(payload, metadata, now),
                    Target::To(m) => self.machine.publish_to(&m, payload, metadata, now),
                    Target::Unicast(m) => self.machine.publish_unicast(&m, payload, metadata, now),
                };
                self.published.push((reply, r));
            }
            Command::Invite { member, reply } => {
                let r = self
                    .machine
                    .invite(&member, now)
                    .map(|job| self.completion(job));
                let _ = reply.send(r);
            }
            Command::InviteMany { members, reply } => {
                let r = self
                    .machine
                    .invite_many(&members, now)
                    .map(|job| self.completion(job));
                let _ = reply.send(r);
            }
            Command::Remove { member, reply } => {
                let r = self
                    .machine
                    .remove(&member, now)
                    .map(|job| self.completion(job));
                let _ = reply.send(r);
            }
            Command::SoftClose { reply } => {
                let r = self.machine.soft_close(now).map(|job| self.completion(job));
                let _ = reply.send(r);
            }
            Command::Rejoin { reply } => {
                let r = self.machine.rejoin(now).map(|job| self.completion(job));
                let _ = reply.send(r);
            }
            Command::Close { reply } => {
                if self.machine.is_closed() {
                    let _ = reply.send(());
                } else {
                    self.close_waiters.push(reply);
                    self.machine.close(now);
                }
            }
        }
    }

    fn completion(&mut self, job: JobId) -> Completion {
        let (tx, rx) = oneshot::channel();
        self.jobs.insert(job, tx);
        Completion::pending(rx)
    }

    /// Sends what the machine wants sent and delivers its events.
    ///
    /// Routes and channel subscriptions the machine asked for go to the data
    /// plane *before* its transmits: a participant's JOIN_REPLY to a
    /// moderator behind a link is queued together with the route back to
    /// it, and sent first it found no route, was dropped, and the session
    /// only came up on the moderator's retransmission one interval later.
    /// Hoisting stops at the first `Unsubscribe`, whose order relative to
    /// the transmits (e.g. a GROUP_CLOSE fanned out on the channel) matters.
    async fn flush(&mut self) {
        let mut later = Vec::new();
        while let Some(e) = self.machine.poll_event() {
            let hoist = later.iter().all(|e| !matches!(e, Event::Unsubscribe(_)))
                && matches!(e, Event::Route { .. } | Event::Subscribe(_));
            if hoist {
                self.apply(e).await;
            } else {
                later.push(e);
            }
        }
        while let Some(m) = self.machine.poll_transmit() {
            if self.shared.tx.send(m).await.is_err() {
                warn!(session_id = self.machine.id(), "data plane is gone");
            }
        }
        // Publish the machine's state before handing out the events it
        // produced: an app reacting to `MemberLeft` or to a completed invite
        // must already see the new member list.
        let closed = {
            let mut info = lock(&self.info);
            // Names compare by their integers: copying only what changed
            // keeps this per-flush step free of allocations.
            if info.local != *self.machine.local_name() {
                info.local = self.machine.local_name().clone();
            }
            if info.destination != *self.machine.destination() {
                info.destination = self.machine.destination().clone();
            }
            if info.members != self.machine.members() {
                info.members = self.machine.members().to_vec();
            }
            info.closed = self.machine.is_closed();
            info.counters = self.machine.counters();
            info.closed
        };
        for e in later {
            self.apply(e).await;
        }
        if closed {
            for w in self.close_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    /// Stops holding the session's group channel, if it holds one.
    async fn release_channel(&mut self) {
        if let Some(channel) = self.channel.take() {
            let links = std::mem::take(&mut self.channel_links);
            self.shared
                .channel_change(&channel, |h| h.release(&channel, &links))
                .await;
        }
    }

    /// Carries out one event of the machine.
    async fn apply(&mut self, e: Event) {
        match e {
            Event::App(ev) => {
                let last = matches!(ev, SessionEvent::Closed { .. });
                if let Some(sink) = self.sink.as_mut() {
                    sink(ev);
                    if last {
                        self.sink = None;
                    }
                    return;
                }
                if let Some(events) = &self.events {
                    // Never waits: a full queue parks the event in the
                    // backlog (behind any already there, to keep order).
                    // A dropped receiver just means nobody listens any more.
                    if self.backlog.is_empty() {
                        if let Err(mpsc::error::TrySendError::Full(ev)) = events.try_send(ev) {
                            self.backlog.push_back(ev);
                        }
                    } else {
                        self.backlog.push_back(ev);
                    }
                }
                if last {
                    self.events_end = true;
                    self.end_events_if_done();
                }
            }
            Event::Established => {
                if let (Some(s), Some(l)) = (self.pending.take(), self.listen.as_ref()) {
                    let _ = l.send(s).await;
                }
            }
            Event::JobDone { job, mut result } => {
                if let Err(e) = &result
                    && e.is_timeout()
                {
                    let refusals = lock(&self.shared.state).refusals.clone();
                    if let Some(cause) = refusals.and_then(|r| r.take(self.machine.id())) {
                        result = Err(SessionError::Refused {
                            what: e.to_string(),
                            cause,
                        });
                    }
                }
                if let Some(tx) = self.jobs.remove(&job) {
                    let _ = tx.send(result);
                }
            }
            Event::Subscribe(channel) => {
                if self.channel.is_some() {
                    return;
                }
                let links = self.shared.channel_links(&self.links);
                self.shared
                    .channel_change(&channel, |h| h.hold(&channel, &links))
                    .await;
                self.channel = Some(channel);
                self.channel_links = links;
            }
            Event::Unsubscribe(_) => self.release_channel().await,
            Event::Route { name, conn } => {
                // A route on a local connection is accepted and ignored
                // by the node, so this is harmless for in-process peers.
                let m = self
                    .shared
                    .subscription_msg(true, &name, 0, None, Some(conn));
                if self.shared.tx.send(m).await.is_err() {
                    warn!(session_id = self.machine.id(), "data plane is gone");
                }
                // A peer behind another link: the group channel must be
                // subscribed and routed on that link too, or fanout-256
                // messages (GROUP_ADD, MSG) never cross it.
                if !self.links.contains(&conn) {
                    self.links.push(conn);
                    if let Some(channel) = &self.channel
                        && !self.channel_links.contains(&conn)
                    {
                        self.shared
                            .channel_change(channel, |h| h.hold_more_links(channel, &[conn]))
                            .await;
                        self.channel_links.push(conn);
                    }
                }
            }
            // The machine already logged it (once, with the same fields).
            Event::PublishFailed { .. } => {}
        }
    }
}

/// The application's side of a session: its events, plus (through
/// `Deref`) every command of [`SessionHandle`].
pub struct Session {
    handle: SessionHandle,
    events: mpsc::Receiver<SessionEvent>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.handle.id)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A cloneable handle for commands.
    pub fn handle(&self) -> SessionHandle {
        self.handle.clone()
    }

    /// The next event; `Err(Closed)` once the session ended and every
    /// event was read.
    pub async fn recv(&mut self) -> Result<SessionEvent, SessionError> {
        self.events.recv().await.ok_or(SessionError::Closed)
    }
}

impl std::ops::Deref for Session {
    type Target = SessionHandle;
    fn deref(&self) -> &SessionHandle {
        &self.handle
    }
}

/// Commands and read-only facts of one session; cheap to clone.
#[derive(Clone)]
pub struct SessionHandle {
    id: u32,
    kind: SessionKind,
    commands: mpsc::Sender<Command>,
    info: Arc<Mutex<Info>>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SessionHandle {
    pub fn id(&self) -> u32 {
        self.id
    }
    pub fn kind(&self) -> SessionKind {
        self.kind
    }
    /// This app's full name in the session.
    pub fn local_name(&self) -> Name {
        lock(&self.info).local.clone()
    }
    /// The peer (full name once discovered) or the channel.
    pub fn destination(&self) -> Name {
        lock(&self.info).destination.clone()
    }
    /// Current members (full names), moderator first, this app included.
    pub fn members(&self) -> Vec<Name> {
        lock(&self.info).members.clone()
    }
    pub fn is_closed(&self) -> bool {
        lock(&self.info).closed
    }
    /// This session's counts of dropped and refused inbound messages (as
    /// of its last step).
    pub fn counters(&self) -> session::Counters {
        lock(&self.info).counters
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SessionError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| SessionError::Closed)?;
        rx.await.map_err(|_| SessionError::Closed)
    }

    async fn publish_target(
        &self,
        target: Target,
        payload: Vec<u8>,
        metadata: HashMap<String, String>,
    ) -> Result<(), SessionError> {
        self.ask(|reply| Command::Publish {
            target,
            payload,
            metadata,
            reply,
        })
        .await?
    }

    /// To the destination: the peer, or every member (fanout 256).
    pub async fn publish(
        &self,
        payload: Vec<u8>,
        metadata: HashMap<String, String>,
    ) -> Result<(), SessionError> {
        self.publish_target(Target::Destination, payload, metadata)
            .await
    }

    /// v1.3 PUBLISH_TO: unsequenced, to one member, delivered at once.
    pub async fn publish_to(
        &self,
        member: &Name,
        payload: Vec<u8>,
        metadata: HashMap<String, String>,
    ) -> Result<(), SessionError> {
        self.publish_target(Target::To(member.clone()), payload, metadata)
            .await
    }

    /// Sequenced, ordered, reliable MSG to one member (acked by it only).
    pub async fn publish_unicast(
        &self,
        member: &Name,
        payload: Vec<u8>,
        metadata: HashMap<String, String>,
    ) -> Result<(), SessionError> {
        self.publish_target(Target::Unicast(member.clone()), payload, metadata)
            .await
    }

    /// Moderator of a group: invites `member`; the [`Completion`] resolves
    /// when it joined (or failed to).
    pub async fn invite(&self, member: &Name) -> Result<Completion, SessionError> {
        let member = member.clone();
        self.ask(|reply| Command::Invite { member, reply }).await?
    }

    /// Moderator of a group nobody was invited to yet: invites all of
    /// `members` at once (parallel discovery and join, one MLS commit, a
    /// welcome each); the [`Completion`] resolves when every one of them
    /// joined, or with the first failure. Much faster than one
    /// [`invite`](Self::invite) after the other for a large group, whose
    /// set-up is then one MLS commit instead of one per member with every
    /// earlier member processing each. Later joiners use `invite`.
    pub async fn invite_many(&self, members: &[Name]) -> Result<Completion, SessionError> {
        let members = members.to_vec();
        self.ask(|reply| Command::InviteMany { members, reply })
            .await?
    }

    /// Moderator of a group: removes `member` and waits until done.
    pub async fn remove(&self, member: &Name) -> Result<(), SessionError> {
        let member = member.clone();
        self.ask(|reply| Command::Remove { member, reply })
            .await??
            .await
    }

    /// Participant of a SLIM v3 group: soft close. Tells the group this
    /// member goes offline and waits until every member acknowledged; the
    /// session stays open but quiet (publishing fails with
    /// [`SessionError::Offline`]) until [`rejoin`](Self::rejoin).
    pub async fn soft_close(&self) -> Result<(), SessionError> {
        self.ask(|reply| Command::SoftClose { reply }).await??.await
    }

    /// Participant of a SLIM v3 group after [`soft_close`](Self::soft_close):
    /// comes back online; when the group moved on meanwhile (a new MLS
    /// epoch), the moderator re-admits it with a fresh key package. Resolves
    /// once it is back.
    pub async fn rejoin(&self) -> Result<(), SessionError> {
        self.ask(|reply| Command::Rejoin { reply }).await??.await
    }

    /// Closes the session (moderator: for everyone; participant: leaves)
    /// and waits until it is closed.
    pub async fn close(&self) -> Result<(), SessionError> {
        match self.ask(|reply| Command::Close { reply }).await {
            Ok(()) | Err(SessionError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Resolves when an invite (or a P2P session's handshake) completed.
pub struct Completion {
    state: CompletionState,
}

enum CompletionState {
    Ready(Option<Result<(), SessionError>>),
    Pending(oneshot::Receiver<Result<(), SessionError>>),
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion").finish_non_exhaustive()
    }
}

impl Completion {
    fn ready(r: Result<(), SessionError>) -> Self {
        Self {
            state: CompletionState::Ready(Some(r)),
        }
    }
    fn pending(rx: oneshot::Receiver<Result<(), SessionError>>) -> Self {
        Self {
            state: CompletionState::Pending(rx),
        }
    }
}

impl Future for Completion {
    type Output = Result<(), SessionError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            CompletionState::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(SessionError::Closed))),
            CompletionState::Pending(rx) => match Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(r)) => Poll::Ready(r),
                Poll::Ready(Err(_)) => Poll::Ready(Err(SessionError::Closed)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// The session message type of a frame, if it is a session message.
fn packet_kind(m: &wire::Message) -> Option<wire::SessionMessageType> {
    session::packet::peek(m).and_then(|(_, k)| wire::SessionMessageType::try_from(k).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_id_matches_rust_default_hasher_and_is_never_null() {
        let id = "org/ns/alice/ffffffffffffffff_abcdefgh";
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        assert_eq!(instance_id(id), h.finish());
        assert_ne!(instance_id(""), crate::name::NULL_ID);
    }

    fn channel() -> Name {
        "org/ns/shared-channel".parse().unwrap()
    }

    fn link(conn: ConnId, subscribe: bool) -> ChannelOp {
        ChannelOp::Link { conn, subscribe }
    }

    #[test]
    fn second_session_on_a_channel_sends_no_subscription_and_first_release_withdraws_nothing() {
        let mut holds = ChannelHolds::default();
        let c = channel();
        assert_eq!(
            holds.hold(&c, &[7]),
            vec![ChannelOp::Local { subscribe: true }, link(7, true)]
        );
        assert_eq!(holds.hold(&c, &[7]), vec![]);
        // The first session closes: the second still needs everything.
        assert_eq!(holds.release(&c, &[7]), vec![]);
        // The last one withdraws the link and then the local subscription.
        assert_eq!(
            holds.release(&c, &[7]),
            vec![link(7, false), ChannelOp::Local { subscribe: false }]
        );
        assert!(holds.channels.is_empty());
    }

    #[test]
    fn releasing_a_link_only_one_session_used_keeps_the_local_subscription() {
        let mut holds = ChannelHolds::default();
        let c = channel();
        // A local-only session, then one that also reaches a peer on link 3.
        assert_eq!(
            holds.hold(&c, &[]),
            vec![ChannelOp::Local { subscribe: true }]
        );
        assert_eq!(holds.hold(&c, &[]), vec![]);
        assert_eq!(holds.hold_more_links(&c, &[3]), vec![link(3, true)]);
        assert_eq!(holds.release(&c, &[3]), vec![link(3, false)]);
        assert_eq!(
            holds.release(&c, &[]),
            vec![ChannelOp::Local { subscribe: false }]
        );
    }

    #[test]
    fn channels_with_different_names_are_counted_apart() {
        let mut holds = ChannelHolds::default();
        let a = channel();
        let b: Name = "org/ns/other-channel".parse().unwrap();
        assert_eq!(holds.hold(&a, &[1]).len(), 2);
        assert_eq!(holds.hold(&b, &[1]).len(), 2);
        assert_eq!(
            holds.release(&a, &[1]),
            vec![link(1, false), ChannelOp::Local { subscribe: false }]
        );
        assert_eq!(holds.release(&a, &[1]), vec![]);
        assert_eq!(holds.hold_more_links(&a, &[2]), vec![]);
        assert_eq!(holds.channels.len(), 1);
    }
}
