//! The forwarder: the synchronous core of a SLIM v1.3 data-plane node.
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
pub mod holds;
pub mod link;
pub mod table;

use std::collections::{BTreeMap, HashMap};

use tracing::{debug, warn};

pub use errors::{ConnId, ForwardError, ForwardErrorKind, SessionContext, TransportError};
use holds::{Holds, Release};
use link::{LinkState, Role};
use table::{Pick, RandomPick, SubscriptionTable};

use crate::wire::{self, message::MessageType};

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
struct Conn {
    kind: ConnKind,
    link: Option<LinkState>,
    upstream: bool,
}

/// Work for the I/O shell, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send `msg` on connection `conn` (flags already cleared).
    Send { conn: ConnId, msg: wire::Message },
    /// Tell the local app on `conn` its message was not forwarded.
    Error { conn: ConnId, error: ForwardError },
    /// A Subscribe/Unsubscribe with `subscription_id` was forwarded on
    /// `link` to a peer that acks: wait for its ack (re-sending `resend` on
    /// timeout), then ack `reply_to` with the outcome.
    AwaitRemoteAck {
        link: ConnId,
        subscription_id: u64,
        reply_to: ConnId,
        resend: wire::Message,
    },
    /// A peer acked a subscription we forwarded on `link`.
    RemoteAck {
        link: ConnId,
        ack: wire::SubscriptionAck,
    },
}

/// A subscription this node sent on a link (for replay or withdrawal).
#[derive(Debug, Clone)]
struct SentSub {
    source: wire::Name,
    name: wire::Name,
    identity: String,
}

/// (source, name) of a forwarded subscription.
type SentKey = ([u64; 4], [u64; 4]);

/// The forwarder state.
pub struct Forwarder {
    conns: HashMap<ConnId, Conn>,
    next_id: ConnId,
    table: SubscriptionTable,
    /// Per link: subscriptions forwarded on it, keyed by (source, name).
    forwarded: HashMap<ConnId, BTreeMap<SentKey, SentSub>>,
    /// Names announced on upstream links.
    announced: BTreeMap<[u64; 4], SentSub>,
    /// Per table entry (name, connection routed to, id): the connections
    /// that asked for it (the connection itself for a direct subscription).
    routes: Holds<()>,
    /// Per forwarded subscription (name, link, id): the connections that
    /// asked for it, with what to send to withdraw it if they go away.
    forwards: Holds<SentSub>,
    pick: Box<dyn Pick>,
}

impl Default for Forwarder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("conns", &self.conns.len())
            .finish()
    }
}

/// The four components of a validated wire name.
fn comps(n: &Option<wire::Name>) -> [u64; 4] {
    match n.as_ref().and_then(|n| n.name.as_ref()) {
        Some(e) => [e.component_0, e.component_1, e.component_2, e.component_3],
        None => [0; 4],
    }
}

fn display(n: &Option<wire::Name>) -> String {
    let c = comps(n);
    match n.as_ref().and_then(|n| n.str_name.as_ref()) {
        Some(s) => format!(
            "{}/{}/{}/{:x}",
            s.str_component_0, s.str_component_1, s.str_component_2, c[3]
        ),
        None => format!("{:x}/{:x}/{:x}/{:x}", c[0], c[1], c[2], c[3]),
    }
}

fn check_name(n: &Option<wire::Name>, what: &str) -> Result<(), String> {
    match n {
        None => Err(format!("{what} missing")),
        Some(n) if n.name.is_none() => Err(format!("{what} has no encoded part")),
        Some(n) if n.str_name.is_none() => Err(format!("{what} has no string part")),
        Some(_) => Ok(()),
    }
}

fn check_header(h: &Option<wire::SlimHeader>) -> Result<(), String> {
    let h = h.as_ref().ok_or("header missing")?;
    check_name(&h.source, "source")?;
    check_name(&h.destination, "destination")
}

/// SLIM §0.4 validation, plus the name checks SLIM leaves to a panic.
pub fn validate(msg: &wire::Message) -> Result<(), String> {
    match &msg.message_type {
        None => Err("message type not set".into()),
        Some(MessageType::Publish(p)) => {
            check_header(&p.header)?;
            if p.session.is_none() {
                return Err("session header missing".into());
            }
            Ok(())
        }
        Some(MessageType::Subscribe(s)) => check_header(&s.header),
        Some(MessageType::Unsubscribe(u)) => check_header(&u.header),
        Some(MessageType::Link(l)) if l.link_type.is_none() => Err("link type not set".into()),
        Some(MessageType::Link(_)) | Some(MessageType::SubscriptionAck(_)) => Ok(()),
    }
}

/// A bare SubscriptionAck message.
pub fn ack_message(subscription_id: u64, result: Result<(), String>) -> wire::Message {
    let (success, error) = match result {
        Ok(()) => (true, String::new()),
        Err(e) => (false, e),
    };
    wire::Message {
        metadata: Default::default(),
        message_type: Some(MessageType::SubscriptionAck(wire::SubscriptionAck {
            subscription_id,
            success,
            error,
        })),
    }
}

/// A Subscribe or Unsubscribe as a node sends it on a link.
fn subscription_message(s: &SentSub, subscribe: bool, subscription_id: u64) -> wire::Message {
    let header = Some(wire::SlimHeader {
        source: Some(s.source.clone()),
        destination: Some(s.name.clone()),
        fanout: 1,
        identity: s.identity.clone(),
        ..Default::default()
    });
    let message_type = if subscribe {
        MessageType::Subscribe(wire::Subscribe {
            header,
            subscription_id,
        })
    } else {
        MessageType::Unsubscribe(wire::Unsubscribe {
            header,
            subscription_id,
        })
    };
    wire::Message {
        metadata: Default::default(),
        message_type: Some(message_type),
    }
}

/// Clears the flags a node never emits (SLIM `clear_flags`).
fn clear_flags(h: &mut wire::SlimHeader) {
    h.recv_from = None;
    h.forward_to = None;
}

impl Forwarder {
    /// A forwarder with SLIM's random anycast pick.
    pub fn new() -> Self {
        Self::with_pick(RandomPick)
    }

    /// A forwarder with an injected pick (tests).
    pub fn with_pick(pick: impl Pick + 'static) -> Self {
        Self {
            conns: HashMap::new(),
            next_id: 0,
            table: SubscriptionTable::default(),
            forwarded: HashMap::new(),
            announced: BTreeMap::new(),
            routes: Holds::default(),
            forwards: Holds::default(),
            pick: Box::new(pick),
        }
    }

    /// Adds a connection and returns its index.
    pub fn add_connection(&mut self, kind: ConnKind) -> ConnId {
        let id = self.next_id;
        self.next_id += 1;
        let link = match kind {
            ConnKind::Local => None,
            ConnKind::Incoming => Some(LinkState::new(Role::Server)),
            ConnKind::Outgoing => Some(LinkState::new(Role::Client)),
        };
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

    /// The connections currently subscribed to exactly `name`.
    pub fn subscribers(&self, name: [u64; 4]) -> Vec<ConnId> {
        self.table.holders(name)
    }

    /// (Re)starts negotiation on an outgoing link and returns what to send
    /// first: the link request, then the replay of the subscriptions this
    /// node forwarded on it (original source and identity, no id) and, on an
    /// upstream link, every announced name.
    pub fn link_up(&mut self, conn: ConnId, link_id: String) -> Vec<wire::Message> {
        let Some(c) = self.conns.get_mut(&conn) else {
            return Vec::new();
        };
        let Some(l) = c.link.as_mut() else {
            return Vec::new();
        };
        let mut out = vec![l.request(link_id)];
        let upstream = c.upstream;
        if let Some(subs) = self.forwarded.get(&conn) {
            out.extend(subs.values().map(|s| subscription_message(s, true, 0)));
        }
        if upstream {
            out.extend(
                self.announced
                    .iter()
                    .filter(|(name, _)| self.table.holders(**name) != [conn])
                    .map(|(_, s)| subscription_message(s, true, 0)),
            );
        }
        out
    }

    /// Marks an outgoing link as upstream and returns the announcements of
    /// every name already subscribed here.
    pub fn set_upstream(&mut self, conn: ConnId) -> Vec<wire::Message> {
        match self.conns.get_mut(&conn) {
            Some(c) if c.kind == ConnKind::Outgoing => c.upstream = true,
            _ => return Vec::new(),
        }
        self.announced
            .values()
            .map(|s| subscription_message(s, true, 0))
            .collect()
    }

    /// Drops a connection and everything routed on it, and releases what
    /// it asked for elsewhere: a route it installed on another connection,
    /// or a subscription it had forwarded on a link, is withdrawn when no
    /// other connection still holds it.
    pub fn remove_connection(&mut self, conn: ConnId) -> Vec<Action> {
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
            if let Some(record) = self.forwarded.get_mut(&link) {
                record.remove(&(comps(&Some(sent.source.clone())), name));
            }
            if last && self.conns.contains_key(&link) {
                debug!(
                    conn,
                    link, "forwarded subscription of a removed connection withdrawn"
                );
                out.push(Action::Send {
                    conn: link,
                    msg: subscription_message(&sent, false, id),
                });
            }
        }
        debug!(conn, "connection removed");
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
    fn held_downstream(&self, name: [u64; 4]) -> bool {
        self.table
            .holders(name)
            .iter()
            .any(|c| !self.is_upstream(*c))
    }

    /// Announces or withdraws `name` on upstream links when its downstream
    /// holders went from none to some or back.
    fn announce(
        &mut self,
        before: bool,
        name: [u64; 4],
        sub: Option<SentSub>,
        out: &mut Vec<Action>,
    ) {
        let after = self.held_downstream(name);
        let s = if !before && after {
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
                msg: subscription_message(&s.0, s.1, 0),
            });
        }
    }

    /// Processes one message that arrived on `conn`.
    pub fn handle(&mut self, conn: ConnId, msg: wire::Message) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(c) = self.conns.get(&conn) else {
            warn!(conn, "message on an unknown connection dropped");
            return out;
        };
        let is_local = c.kind == ConnKind::Local;
        if let Err(reason) = validate(&msg) {
            warn!(conn, %reason, "invalid message dropped");
            if is_local {
                out.push(Action::Error {
                    conn,
                    error: ForwardError::about(ForwardErrorKind::Invalid(reason), &msg),
                });
            }
            return out;
        }
        match &msg.message_type {
            Some(MessageType::Publish(_)) => self.on_publish(conn, is_local, msg, &mut out),
            Some(MessageType::Subscribe(_)) => self.on_subscription(conn, msg, true, &mut out),
            Some(MessageType::Unsubscribe(_)) => self.on_subscription(conn, msg, false, &mut out),
            Some(MessageType::Link(l)) => {
                let Some(wire::link::LinkType::LinkNegotiation(p)) = &l.link_type else {
                    return out;
                };
                self.on_link(conn, p, &mut out)
            }
            Some(MessageType::SubscriptionAck(a)) if !is_local => {
                out.push(Action::RemoteAck {
                    link: conn,
                    ack: a.clone(),
                });
            }
            Some(MessageType::SubscriptionAck(_)) | None => {}
        }
        out
    }

    fn on_link(&mut self, conn: ConnId, p: &wire::LinkNegotiationPayload, out: &mut Vec<Action>) {
        let Some(l) = self.conns.get_mut(&conn).and_then(|c| c.link.as_mut()) else {
            debug!(conn, "link negotiation on a local connection ignored");
            return;
        };
        match l.on_payload(p) {
            Ok(Some(reply)) => {
                debug!(conn, peer_version = %p.slim_version, "link negotiated (server side)");
                out.push(Action::Send { conn, msg: reply });
            }
            Ok(None) => debug!(conn, peer_version = %p.slim_version, "link negotiated"),
            Err(e) => warn!(conn, error = %e, "link negotiation message ignored"),
        }
    }

    fn on_publish(
        &mut self,
        conn: ConnId,
        is_local: bool,
        mut msg: wire::Message,
        out: &mut Vec<Action>,
    ) {
        let Some(MessageType::Publish(p)) = &mut msg.message_type else {
            return;
        };
        let Some(h) = p.header.as_mut() else {
            return;
        };
        h.incoming_conn = Some(conn);
        let forward_to = h.forward_to;
        clear_flags(h);
        let fanout = h.fanout;
        let dst = comps(&h.destination);
        if let Some(f) = forward_to {
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
            let name = display(&h.destination);
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
        msg: &wire::Message,
        out: &mut Vec<Action>,
    ) {
        if is_local {
            debug!(conn, error = %kind, "message not forwarded");
            out.push(Action::Error {
                conn,
                error: ForwardError::about(kind, msg),
            });
        } else {
            debug!(conn, error = %kind, "message from a remote connection dropped");
        }
    }

    fn on_subscription(
        &mut self,
        conn: ConnId,
        mut msg: wire::Message,
        subscribe: bool,
        out: &mut Vec<Action>,
    ) {
        let (header, subscription_id) = match &mut msg.message_type {
            Some(MessageType::Subscribe(s)) => (s.header.as_mut(), s.subscription_id),
            Some(MessageType::Unsubscribe(u)) => (u.header.as_mut(), u.subscription_id),
            _ => return,
        };
        let Some(h) = header else {
            return;
        };
        h.incoming_conn = Some(conn);
        let recv_from = h.recv_from;
        let forward_to = h.forward_to;
        clear_flags(h);
        let name = comps(&h.destination);
        let sent = SentSub {
            source: h.source.clone().unwrap_or_default(),
            name: h.destination.clone().unwrap_or_default(),
            identity: h.identity.clone(),
        };
        let ack = |out: &mut Vec<Action>, r: Result<(), String>| {
            if subscription_id != 0 {
                out.push(Action::Send {
                    conn,
                    msg: ack_message(subscription_id, r),
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
        let key = (comps(&Some(sent.source.clone())), name);
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
                out.push(Action::AwaitRemoteAck {
                    link: f,
                    subscription_id,
                    reply_to: conn,
                    resend: msg,
                });
            } else {
                ack(out, Ok(()));
            }
        }
    }
}

#[cfg(test)]
mod tests;
