//! The forwarder: the synchronous core of a SLIM data-plane node, generic
//! over the wire generation ([`Frame`]): a node runs one per generation and
//! routes each generation only among its own connections.
//!
//! It owns the connection table (local in-process apps and remote gRPC
//! links, incoming or outgoing), the subscription table ([`table`]), the
//! per-link negotiation state ([`link`]) and the record of subscriptions this
//! node forwarded on each outgoing link (replayed after a reconnect). Each
//! inbound message goes through [`Forwarder::handle`], which returns the
//! [`Action`]s to perform: messages to send, errors for local apps, remote
//! subscription acks to wait for.
//!
//! It never does I/O, never sleeps and never reads a clock: the tokio/tonic
//! shell in `crate::service` performs the actions. The random pick of
//! anycast is injected ([`table::Pick`]), so every rule has a deterministic
//! unit test.
//!
//! One extension over a plain SLIM node (used only when asked for): an
//! outgoing link can be marked *upstream*. Every name subscribed on this node
//! by another connection is then announced on that link (SLIM Subscribe
//! without id, withdrawn by Unsubscribe when the last holder goes), and
//! publishes that match nothing here (fanout 1) or any publish to many
//! (fanout ≠ 1) also go up that link. This is what a control plane would
//! configure; it lets official apps attached to two linked nodes find each
//! other.
//!
//! Shared entries are counted ([`holds`]): the table entry a route installs
//! on a connection and the subscription forwarded on a link exist once per
//! `(name, connection, subscription id)`, here and on the peer, however many
//! connections asked for them. Each is withdrawn (the route removed, the
//! Unsubscribe forwarded) only when the last connection that asked for it
//! releases it or goes away, so two apps of one node holding a channel over
//! the same link do not withdraw it from each other.

pub mod errors;
pub mod frame;
pub mod holds;
pub mod link;
pub mod link3;
pub mod table;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{debug, warn};

pub use errors::{ConnId, ForwardError, ForwardErrorKind, SessionContext, TransportError};
pub use frame::{Frame, Generation, Kind, LinkPolicy, Negotiation, Route, SubAck};
use holds::{Holds, Release};
pub use link::Role;
use table::{Pick, RandomPick, RoundRobin, SubscriptionTable};

use crate::name::NameKey;
use crate::wire;

/// What a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKind {
    /// An in-process app.
    Local,
    /// A gRPC stream a peer opened to our server.
    Incoming,
    /// A gRPC stream we opened to a peer.
    Outgoing,
}

#[derive(Debug)]
struct Conn<F: Frame> {
    kind: ConnKind,
    link: Option<F::Link>,
    upstream: bool,
}

/// Work for the I/O shell, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action<F: Frame = wire::Message> {
    /// Send `msg` on connection `conn` (flags cleared, v3 MAC computed).
    Send { conn: ConnId, msg: F },
    /// Tell the local app on `conn` its message was not forwarded.
    Error { conn: ConnId, error: ForwardError },
    /// A Subscribe/Unsubscribe with `subscription_id` was forwarded on
    /// `link` to a peer that acks: wait for its ack (re-sending `resend` on
    /// timeout), then ack `reply_to` with the outcome.
    AwaitRemoteAck {
        link: ConnId,
        subscription_id: u64,
        reply_to: ConnId,
        resend: F,
    },
    /// A peer acked a subscription we forwarded on `link`.
    RemoteAck { link: ConnId, ack: SubAck },
    /// Close remote connection `conn` (a fatal negotiation failure).
    Close { conn: ConnId, reason: String },
}

/// Connection ids shared by the forwarders of one node (one per wire
/// generation), so an id names one connection whatever its generation.
#[derive(Debug, Clone, Default)]
pub struct ConnIds(Arc<AtomicU64>);

impl ConnIds {
    fn next(&self) -> ConnId {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// (source, name) of a forwarded subscription.
type SentKey = (NameKey, NameKey);

/// The forwarder state of one wire generation.
pub struct Forwarder<F: Frame = wire::Message> {
    conns: HashMap<ConnId, Conn<F>>,
    ids: ConnIds,
    table: SubscriptionTable,
    /// Per link: subscriptions forwarded on it, keyed by (source, name);
    /// the stored frame is the Subscribe as received (flags cleared).
    forwarded: HashMap<ConnId, BTreeMap<SentKey, F>>,
    /// Names announced on upstream links.
    announced: BTreeMap<NameKey, F>,
    /// Per table entry (name, connection routed to, id): the connections
    /// that asked for it (the connection itself for a direct subscription).
    routes: Holds<()>,
    /// Per forwarded subscription (name, link, id): the connections that
    /// asked for it, with what to send to withdraw it if they go away.
    forwards: Holds<F>,
    pick: Box<dyn Pick>,
    policy: LinkPolicy,
    secrets: Box<dyn FnMut() -> [u8; 32] + Send>,
}

impl<F: Frame> Default for Forwarder<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Frame> std::fmt::Debug for Forwarder<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("generation", &F::GENERATION)
            .field("conns", &self.conns.len())
            .finish()
    }
}

/// SLIM §0.4 validation, plus the name checks SLIM leaves to a panic.
pub fn validate<F: Frame>(msg: &F) -> Result<(), String> {
    msg.validate()
}

/// A bare SubscriptionAck message of generation `F`.
pub fn ack_message<F: Frame>(subscription_id: u64, result: Result<(), String>) -> F {
    F::ack(subscription_id, result)
}

/// 32 bytes from the thread CSPRNG (OS-seeded): ephemeral link secrets and
/// signing-key seeds.
pub fn random_key() -> [u8; 32] {
    use rand::RngCore;
    let mut k = [0u8; 32];
    rand::rng().fill_bytes(&mut k);
    k
}

impl<F: Frame> Forwarder<F> {
    /// A forwarder with SLIM's anycast pick (v1: random, v3: round robin),
    /// strict header MACs and its own connection ids.
    pub fn new() -> Self {
        match F::GENERATION {
            Generation::V1 => Self::with_pick(RandomPick),
            Generation::V3 => Self::with_pick(RoundRobin::default()),
        }
    }

    /// A forwarder with an injected pick (tests).
    pub fn with_pick(pick: impl Pick + 'static) -> Self {
        let table = match F::GENERATION {
            Generation::V1 => SubscriptionTable::default(),
            Generation::V3 => SubscriptionTable::exact_ids(),
        };
        Self {
            conns: HashMap::new(),
            ids: ConnIds::default(),
            table,
            forwarded: HashMap::new(),
            announced: BTreeMap::new(),
            routes: Holds::default(),
            forwards: Holds::default(),
            pick: Box::new(pick),
            policy: LinkPolicy::default(),
            secrets: Box::new(random_key),
        }
    }

    /// Takes connection ids from `ids` (shared with the node's other
    /// forwarder), so ids are unique across generations.
    pub fn with_ids(mut self, ids: ConnIds) -> Self {
        self.ids = ids;
        self
    }

    /// Sets the link policy of connections added from now on.
    pub fn with_policy(mut self, policy: LinkPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Injects the source of ephemeral link secrets (tests).
    pub fn with_secrets(mut self, secrets: impl FnMut() -> [u8; 32] + Send + 'static) -> Self {
        self.secrets = Box::new(secrets);
        self
    }

    /// The link policy of new connections.
    pub fn policy(&self) -> LinkPolicy {
        self.policy
    }

    /// Adds a connection and returns its index.
    pub fn add_connection(&mut self, kind: ConnKind) -> ConnId {
        let link = match kind {
            ConnKind::Local => None,
            ConnKind::Incoming => Some(F::Link::new(Role::Server, self.policy, (self.secrets)())),
            ConnKind::Outgoing => Some(F::Link::new(Role::Client, self.policy, (self.secrets)())),
        };
        self.insert(kind, link)
    }

    /// Adds an outgoing connection whose negotiation already completed
    /// (the I/O shell negotiated it before knowing its generation).
    pub fn add_negotiated(&mut self, link: F::Link) -> ConnId {
        self.insert(ConnKind::Outgoing, Some(link))
    }

    /// Gives outgoing connection `conn` the state of a new negotiation
    /// (after a reconnect); false when `conn` is not an outgoing link.
    pub fn replace_link(&mut self, conn: ConnId, link: F::Link) -> bool {
        match self.conns.get_mut(&conn) {
            Some(c) if c.kind == ConnKind::Outgoing => {
                c.link = Some(link);
                true
            }
            _ => false,
        }
    }

    fn insert(&mut self, kind: ConnKind, link: Option<F::Link>) -> ConnId {
        let id = self.ids.next();
        self.conns.insert(
            id,
            Conn {
                kind,
                link,
                upstream: false,
            },
        );
        id
    }

    /// The kind of `conn`, if it exists.
    pub fn kind(&self, conn: ConnId) -> Option<ConnKind> {
        self.conns.get(&conn).map(|c| c.kind)
    }

    /// Every connection index.
    pub fn connections(&self) -> Vec<ConnId> {
        let mut v: Vec<ConnId> = self.conns.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// The negotiated peer version of a remote connection.
    pub fn peer_version(&self, conn: ConnId) -> Option<String> {
        self.conns
            .get(&conn)
            .and_then(|c| c.link.as_ref())
            .and_then(|l| l.peer_version())
            .map(|v| v.to_string())
    }

    /// True once the link negotiation of remote `conn` completed.
    pub fn is_negotiated(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .and_then(|c| c.link.as_ref())
            .is_some_and(|l| l.is_negotiated())
    }

    /// The connections currently subscribed to exactly `name`.
    pub fn subscribers(&self, name: impl Into<NameKey>) -> Vec<ConnId> {
        self.table.holders(name.into())
    }

    /// What to replay on a (re)negotiated outgoing link: the subscriptions
    /// this node forwarded on it (original source and identity, no id) and,
    /// on an upstream link, every announced name.
    fn replay(&self, conn: ConnId, upstream: bool) -> Vec<F> {
        let mut out = Vec::new();
        if let Some(subs) = self.forwarded.get(&conn) {
            out.extend(subs.values().map(|s| s.subscription(true, 0)));
        }
        if upstream {
            out.extend(
                self.announced
                    .iter()
                    .filter(|(name, _)| self.table.holders(**name) != [conn])
                    .map(|(_, s)| s.subscription(true, 0)),
            );
        }
        out
    }

    /// (Re)starts negotiation on an outgoing link and returns what to send
    /// first: the link request, then (v1, which may send before the reply)
    /// the replay of [`Self::replay`]. A v3 link replays when the reply
    /// arrives ([`Self::handle`]).
    pub fn link_up(&mut self, conn: ConnId, link_id: String) -> Vec<F> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        let upstream = c.upstream;
        let Some(l) = c.link.as_mut() else {
            return Vec::new();
        };
        let mut out = vec![l.request(link_id)];
        if l.sends_before_reply() {
            let replay = self.replay(conn, upstream);
            out.extend(self.sealed_for(conn, replay));
        }
        out
    }

    /// Replay for an outgoing link that was negotiated by the I/O shell
    /// ([`Self::add_negotiated`]), sealed for the link.
    pub fn link_ready(&mut self, conn: ConnId) -> Vec<F> {
        let upstream = self.is_upstream(conn);
        let replay = self.replay(conn, upstream);
        self.sealed_for(conn, replay)
    }

    fn sealed_for(&self, conn: ConnId, frames: Vec<F>) -> Vec<F> {
        let mut actions: Vec<Action<F>> = frames
            .into_iter()
            .map(|msg| Action::Send { conn, msg })
            .collect();
        self.finish(&mut actions);
        actions
            .into_iter()
            .filter_map(|a| match a {
                Action::Send { msg, .. } => Some(msg),
                _ => None,
            })
            .collect()
    }

    /// Marks an outgoing link as upstream and returns the announcements of
    /// every name already subscribed here.
    pub fn set_upstream(&mut self, conn: ConnId) -> Vec<F> {
        match self.conns.get_mut(&conn) {
            Some(c) if c.kind == ConnKind::Outgoing => c.upstream = true,
            _ => return Vec::new(),
        }
        let msgs = self
            .announced
            .values()
            .map(|s| s.subscription(true, 0))
            .collect();
        self.sealed_for(conn, msgs)
    }

    /// Drops a connection and everything routed on it, and releases what
    /// it asked for elsewhere: a route it installed on another connection,
    /// or a subscription it had forwarded on a link, is withdrawn when no
    /// other connection still holds it.
    pub fn remove_connection(&mut self, conn: ConnId) -> Vec<Action<F>> {
        let mut out = Vec::new();
        if !self.conns.contains_key(&conn) {
            return out;
        }
        let names = self.table.names_of(conn);
        let before: Vec<bool> = names.iter().map(|n| self.held_downstream(*n)).collect();
        self.table.remove_connection(conn);
        self.conns.remove(&conn);
        self.forwarded.remove(&conn);
        self.routes.drop_entries_on(conn);
        self.forwards.drop_entries_on(conn);
        for (name, was) in names.into_iter().zip(before) {
            self.announce(was, name, None, &mut out);
        }
        for ((name, target, id), (), last) in self.routes.release_all(conn) {
            if !last {
                continue;
            }
            let before = self.held_downstream(name);
            let target_local = self.kind(target) == Some(ConnKind::Local);
            if let Err(e) = self.table.remove(name, target, target_local, id) {
                debug!(conn, target, error = %e, "route of a removed connection already gone");
            }
            self.announce(before, name, None, &mut out);
        }
        for ((name, link, id), sent, last) in self.forwards.release_all(conn) {
            if let Some(record) = self.forwarded.get_mut(&link)
                && let Some(r) = sent.route()
            {
                record.remove(&(r.source, name));
            }
            if last && self.conns.contains_key(&link) {
                debug!(
                    conn,
                    link, "forwarded subscription of a removed connection withdrawn"
                );
                out.push(Action::Send {
                    conn: link,
                    msg: sent.subscription(false, id),
                });
            }
        }
        debug!(conn, "connection removed");
        self.finish(&mut out);
        out
    }

    fn is_upstream(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.upstream)
    }

    fn upstreams(&self) -> Vec<ConnId> {
        let mut v: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.upstream)
            .map(|(id, _)| *id)
            .collect();
        v.sort_unstable();
        v
    }

    /// True when a connection other than an upstream link holds `name`.
    fn held_downstream(&self, name: NameKey) -> bool {
        self.table
            .holders(name)
            .iter()
            .any(|c| !self.is_upstream(*c))
    }

    /// Announces or withdraws `name` on upstream links when its downstream
    /// holders went from none to some or back.
    fn announce(&mut self, before: bool, name: NameKey, sub: Option<F>, out: &mut Vec<Action<F>>) {
        let after = self.held_downstream(name);
        let (s, subscribe) = if !before && after {
            match sub {
                Some(s) => {
                    self.announced.insert(name, s.clone());
                    (s, true)
                }
                None => return,
            }
        } else if before && !after {
            match self.announced.remove(&name) {
                Some(s) => (s, false),
                None => return,
            }
        } else {
            return;
        };
        for u in self.upstreams() {
            out.push(Action::Send {
                conn: u,
                msg: s.subscription(subscribe, 0),
            });
        }
    }

    /// Last pass over actions: frames for local apps lose their per-link
    /// data, frames for links are sealed for that link (v3: header MAC);
    /// a frame a strict link refuses to carry unsealed is dropped.
    fn finish(&self, out: &mut Vec<Action<F>>) {
        out.retain_mut(|a| {
            let Action::Send { conn, msg } = a else {
                return true;
            };
            let Some(c) = self.conns.get(conn) else {
                return true;
            };
            match &c.link {
                None => {
                    msg.strip_link_data();
                    true
                }
                Some(l) => match l.seal_outbound(msg) {
                    Ok(()) => true,
                    Err(e) => {
                        warn!(conn = *conn, error = %e, "message not sent on link");
                        false
                    }
                },
            }
        });
    }

    /// Processes one message that arrived on `conn`.
    pub fn handle(&mut self, conn: ConnId, msg: F) -> Vec<Action<F>> {
        // Most messages make exactly one action (a unicast forward); room
        // for one keeps that allocation small.
        let mut out = Vec::with_capacity(1);
        self.handle_into(conn, msg, &mut out);
        self.finish(&mut out);
        out
    }

    fn handle_into(&mut self, conn: ConnId, mut msg: F, out: &mut Vec<Action<F>>) {
        let Some(c) = self.conns.get(&conn) else {
            warn!(conn, "message on an unknown connection dropped");
            return;
        };
        let is_local = c.kind == ConnKind::Local;
        if let Err(reason) = msg.validate() {
            warn!(conn, %reason, "invalid message dropped");
            if is_local {
                out.push(Action::Error {
                    conn,
                    error: ForwardError::about_frame(ForwardErrorKind::Invalid(reason), &msg),
                });
            }
            return;
        }
        let kind = msg.kind();
        let routed = matches!(
            kind,
            Kind::Publish | Kind::Subscribe { .. } | Kind::Unsubscribe { .. }
        );
        if routed && let Some(l) = &c.link {
            if let Err(e) = l.check_inbound(&msg) {
                warn!(conn, error = %e, "message from link dropped");
                return;
            }
            if !msg.hop() {
                debug!(conn, "message dropped: TTL expired");
                return;
            }
        }
        match kind {
            Kind::Publish => self.on_publish(conn, is_local, msg, out),
            Kind::Subscribe { subscription_id } => {
                self.on_subscription(conn, msg, true, subscription_id, out)
            }
            Kind::Unsubscribe { subscription_id } => {
                self.on_subscription(conn, msg, false, subscription_id, out)
            }
            Kind::Link => self.on_link(conn, &mut msg, out),
            Kind::SubscriptionAck(ack) if !is_local => {
                out.push(Action::RemoteAck { link: conn, ack });
            }
            Kind::SubscriptionAck(_) | Kind::Empty => {}
        }
    }

    fn on_link(&mut self, conn: ConnId, msg: &mut F, out: &mut Vec<Action<F>>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let upstream = c.upstream;
        let Some(l) = c.link.as_mut() else {
            debug!(conn, "link negotiation on a local connection ignored");
            return;
        };
        match l.on_frame(msg) {
            Ok(Some(reply)) => {
                debug!(conn, peer_version = ?l.peer_version(), "link negotiated (server side)");
                out.push(Action::Send { conn, msg: reply });
            }
            Ok(None) => {
                debug!(conn, peer_version = ?l.peer_version(), "link negotiated");
                if !l.sends_before_reply() {
                    for m in self.replay(conn, upstream) {
                        out.push(Action::Send { conn, msg: m });
                    }
                }
            }
            Err(e) if l.failures_are_fatal() => {
                warn!(conn, error = %e, "link negotiation failed; closing the link");
                out.push(Action::Close {
                    conn,
                    reason: format!("link negotiation failed: {e}"),
                });
            }
            Err(e) => warn!(conn, error = %e, "link negotiation message ignored"),
        }
    }

    fn on_publish(&mut self, conn: ConnId, is_local: bool, mut msg: F, out: &mut Vec<Action<F>>) {
        let Some(r) = msg.route() else {
            return;
        };
        msg.stamp(conn);
        if let Some(f) = r.forward_to {
            if self.conns.contains_key(&f) {
                out.push(Action::Send { conn: f, msg });
            } else {
                self.fail(
                    conn,
                    is_local,
                    ForwardErrorKind::UnknownConnection(f),
                    &msg,
                    out,
                );
            }
            return;
        }
        let dst = r.destination;
        let fanout = r.fanout;
        let mut targets: Vec<ConnId> = if fanout == 1 {
            self.table
                .match_one(dst, conn, self.pick.as_mut())
                .into_iter()
                .collect()
        } else {
            self.table.match_all(dst, conn)
        };
        if fanout != 1 || targets.is_empty() {
            for u in self.upstreams() {
                if u != conn && !targets.contains(&u) {
                    targets.push(u);
                    if fanout == 1 {
                        break;
                    }
                }
            }
        }
        if targets.is_empty() {
            let name = msg.destination_display();
            self.fail(conn, is_local, ForwardErrorKind::NoMatch(name), &msg, out);
            return;
        }
        let last = targets.len() - 1;
        for &t in &targets[..last] {
            out.push(Action::Send {
                conn: t,
                msg: msg.clone(),
            });
        }
        out.push(Action::Send {
            conn: targets[last],
            msg,
        });
    }

    fn fail(
        &self,
        conn: ConnId,
        is_local: bool,
        kind: ForwardErrorKind,
        msg: &F,
        out: &mut Vec<Action<F>>,
    ) {
        if is_local {
            debug!(conn, error = %kind, "message not forwarded");
            out.push(Action::Error {
                conn,
                error: ForwardError::about_frame(kind, msg),
            });
        } else {
            debug!(conn, error = %kind, "message from a remote connection dropped");
        }
    }

    fn on_subscription(
        &mut self,
        conn: ConnId,
        mut msg: F,
        subscribe: bool,
        subscription_id: u64,
        out: &mut Vec<Action<F>>,
    ) {
        let Some(r) = msg.route() else {
            return;
        };
        msg.stamp(conn);
        let recv_from = r.recv_from;
        let forward_to = r.forward_to;
        let name = r.destination;
        let sent = msg.clone();
        let ack = |out: &mut Vec<Action<F>>, r: Result<(), String>| {
            if subscription_id != 0 {
                out.push(Action::Send {
                    conn,
                    msg: F::ack(subscription_id, r),
                });
            }
        };
        // Which connection the route points at.
        let target = match recv_from {
            None => conn,
            Some(r) => match self.conns.get(&r) {
                None => return ack(out, Err(format!("connection not found: {r}"))),
                Some(rc) if rc.kind == ConnKind::Local => return ack(out, Ok(())),
                Some(_) => r,
            },
        };
        let target_local = self.kind(target) == Some(ConnKind::Local);
        let before = self.held_downstream(name);
        let route = (name, target, subscription_id);
        if subscribe {
            self.routes.hold(route, conn, ());
            self.table.add(name, target, target_local, subscription_id);
        } else {
            match self.routes.release(route, conn) {
                // Another connection still asked for this entry.
                Release::Shared => {
                    debug!(conn, target, "route kept for its other holders");
                }
                Release::NotHeld { others: true } => {
                    debug!(conn, target, "unsubscribe of a route held only by others");
                    return ack(
                        out,
                        Err(table::TableError::SubscriptionNotFound.to_string()),
                    );
                }
                Release::Last(()) | Release::NotHeld { others: false } => {
                    if let Err(e) = self
                        .table
                        .remove(name, target, target_local, subscription_id)
                    {
                        debug!(conn, error = %e, "unsubscribe failed");
                        return ack(out, Err(e.to_string()));
                    }
                }
            }
        }
        self.announce(before, name, Some(sent.clone()), out);
        let Some(f) = forward_to else {
            return ack(out, Ok(()));
        };
        let acks = match self.conns.get(&f) {
            None => return ack(out, Err(format!("connection not found: {f}"))),
            Some(fc) if fc.kind == ConnKind::Local => return ack(out, Ok(())),
            Some(fc) => fc
                .link
                .as_ref()
                .is_some_and(|l| l.peer_acks_subscriptions()),
        };
        let key = (r.source, name);
        let forward = (name, f, subscription_id);
        if subscribe {
            // Forwarded again for every holder: the peer keeps it once per
            // (name, link, id), so a repeat changes nothing there.
            self.forwards.hold(forward, conn, sent.clone());
            self.forwarded.entry(f).or_default().insert(key, sent);
        } else {
            self.forwarded.entry(f).or_default().remove(&key);
            match self.forwards.release(forward, conn) {
                Release::Shared | Release::NotHeld { others: true } => {
                    debug!(
                        conn,
                        link = f,
                        "forwarded subscription kept for its other holders"
                    );
                    return ack(out, Ok(()));
                }
                Release::Last(_) | Release::NotHeld { others: false } => {}
            }
        }
        out.push(Action::Send {
            conn: f,
            msg: msg.clone(),
        });
        if subscription_id != 0 {
            if acks {
                let mut resend = msg;
                // The resend is sealed again when it is sent.
                resend.strip_link_data();
                out.push(Action::AwaitRemoteAck {
                    link: f,
                    subscription_id,
                    reply_to: conn,
                    resend,
                });
            } else {
                ack(out, Ok(()));
            }
        }
    }

    /// Seals a frame for sending on `conn` outside [`Self::handle`] (the
    /// re-sends of a remote-ack wait); `None` when the link refuses it.
    pub fn seal_for(&self, conn: ConnId, msg: F) -> Option<F> {
        self.sealed_for(conn, vec![msg]).into_iter().next()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests3;
