//! Unit-test harness only: an in-memory implementation of the transport seam.
//!
//! Job: let the runtime's logic (channel, dispatcher, server) run end to end
//! inside one test process before the real session layer exists. It models
//! what SlimRPC relies on — P2P and group sessions, invites, publish to the
//! destination, unicast replies (with the group re-send *echo* to the other
//! members that SLIM v1.3 produces), and session death — and nothing else.
//! Must not: be used outside `#[cfg(test)]`; it is not the SLIM transport.

mod e2e;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use slim_transport::Name;
use tokio::sync::{mpsc, watch};

use crate::transport::{
    IncomingMessage, RpcSessionEvents, RpcSessionHandle, RpcTransport, SessionKind, SessionOptions,
    TransportError, TransportEvent, TransportFuture, TransportSession,
};

const QUEUE: usize = 1024;

fn matches(wanted: &Name, have: &Name) -> bool {
    wanted.prefix() == have.prefix() && (wanted.has_null_id() || wanted == have)
}

/// The in-memory "network": apps and sessions.
#[derive(Default)]
pub struct MemNet {
    apps: Mutex<Vec<(Name, mpsc::Sender<TransportSession>)>>,
    sessions: Mutex<Vec<Arc<MemSession>>>,
    next_id: AtomicU64,
    /// Sessions created by `create_session`, by kind.
    pub p2p_created: AtomicUsize,
    pub groups_created: AtomicUsize,
    /// Successful invites.
    pub invites: AtomicUsize,
}

impl MemNet {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A new app named `org/ns/svc` with a fresh instance id.
    pub fn app(self: &Arc<Self>, svc: &str) -> MemApp {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        let name = Name::new("org", "ns", svc).with_id(id);
        let (tx, rx) = mpsc::channel(QUEUE);
        self.apps.lock().unwrap().push((name.clone(), tx));
        MemApp {
            net: self.clone(),
            name,
            inbox: Arc::new(tokio::sync::Mutex::new(rx)),
        }
    }

    /// Closes every session (simulates the sessions dying).
    pub fn kill_all_sessions(&self) {
        for s in self.sessions.lock().unwrap().drain(..) {
            s.close_now();
        }
    }

    /// Removes the app named `svc` from every session, as if its process
    /// died and the moderator declared it gone: the others see `MemberLeft`.
    /// Its own handles stay open but reach nobody, like a dead process's.
    pub async fn drop_member(&self, svc: &str) {
        let sessions: Vec<_> = self.sessions.lock().unwrap().clone();
        for s in sessions {
            let gone: Vec<Name> = {
                let eps = s.endpoints.lock().unwrap();
                let mut departed = s.departed.lock().unwrap();
                let gone: Vec<Name> = eps
                    .iter()
                    .filter(|e| e.name.strings()[2] == svc && !departed.contains(&e.name))
                    .map(|e| e.name.clone())
                    .collect();
                departed.extend(gone.iter().cloned());
                gone
            };
            for name in gone {
                for (_, tx) in s.targets(|_| true) {
                    let _ = tx.send(TransportEvent::MemberLeft(name.clone())).await;
                }
            }
        }
    }

    /// Tells every other endpoint of every session that a message of the
    /// app named `svc` was lost (its session gave up recovering it), as a
    /// real session reports after retransmission failed.
    pub async fn lose_message_from(&self, svc: &str, message_id: u32) {
        let sessions: Vec<_> = self.sessions.lock().unwrap().clone();
        for s in sessions {
            let from: Vec<Name> = s
                .endpoints
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.name.strings()[2] == svc)
                .map(|e| e.name.clone())
                .collect();
            for source in from {
                for (_, tx) in s.targets(|n| *n != source) {
                    let _ = tx
                        .send(TransportEvent::MessageLost {
                            source: source.clone(),
                            message_id,
                        })
                        .await;
                }
            }
        }
    }

    /// Sessions created so far that are still open.
    pub fn open_sessions(&self) -> usize {
        self.sessions
            .lock()
            .unwrap()
            .iter()
            .filter(|s| !s.is_closed())
            .count()
    }

    fn find_app(&self, name: &Name) -> Option<(Name, mpsc::Sender<TransportSession>)> {
        self.apps
            .lock()
            .unwrap()
            .iter()
            .find(|(n, _)| matches(name, n))
            .cloned()
    }
}

/// An app on the in-memory network.
#[derive(Clone)]
pub struct MemApp {
    net: Arc<MemNet>,
    name: Name,
    inbox: Arc<tokio::sync::Mutex<mpsc::Receiver<TransportSession>>>,
}

impl MemApp {
    pub fn name(&self) -> Name {
        self.name.clone()
    }
}

impl RpcTransport for MemApp {
    fn local_name(&self) -> Name {
        self.name.clone()
    }

    fn create_session(
        &self,
        kind: SessionKind,
        destination: &Name,
        _options: SessionOptions,
    ) -> TransportFuture<'_, TransportSession> {
        let destination = destination.clone();
        async move {
            let id = self.net.next_id.fetch_add(1, Ordering::SeqCst) as u32;
            let session = Arc::new(MemSession {
                id,
                kind,
                endpoints: Mutex::new(Vec::new()),
                departed: Mutex::new(Vec::new()),
                closed: watch::channel(false).0,
            });
            let mine = session.join(self.name.clone(), self.net.clone());
            match kind {
                SessionKind::PointToPoint => {
                    let (peer, inbox) = self
                        .net
                        .find_app(&destination)
                        .ok_or_else(|| TransportError(format!("no app named {destination}")))?;
                    let theirs = session.join(peer, self.net.clone());
                    inbox
                        .send(theirs)
                        .await
                        .map_err(|_| TransportError("peer gone".into()))?;
                    self.net.p2p_created.fetch_add(1, Ordering::SeqCst);
                }
                SessionKind::Group => {
                    self.net.groups_created.fetch_add(1, Ordering::SeqCst);
                }
            }
            self.net.sessions.lock().unwrap().push(session);
            Ok(mine)
        }
        .boxed()
    }

    fn accept_session(&self) -> TransportFuture<'_, TransportSession> {
        async move {
            self.inbox
                .lock()
                .await
                .recv()
                .await
                .ok_or_else(|| TransportError("app closed".into()))
        }
        .boxed()
    }

    fn subscribe(&self, _name: &Name, _conn: Option<u64>) -> TransportFuture<'_, ()> {
        async { Ok(()) }.boxed()
    }

    fn set_route(&self, _name: &Name, _conn: u64) -> TransportFuture<'_, ()> {
        async { Ok(()) }.boxed()
    }
}

struct Endpoint {
    name: Name,
    tx: mpsc::Sender<TransportEvent>,
}

struct MemSession {
    id: u32,
    kind: SessionKind,
    endpoints: Mutex<Vec<Endpoint>>,
    /// Members cut off by [`MemNet::drop_member`].
    departed: Mutex<Vec<Name>>,
    closed: watch::Sender<bool>,
}

impl MemSession {
    fn join(self: &Arc<Self>, name: Name, net: Arc<MemNet>) -> TransportSession {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.endpoints.lock().unwrap().push(Endpoint {
            name: name.clone(),
            tx,
        });
        TransportSession {
            handle: Arc::new(MemHandle {
                session: self.clone(),
                me: name,
                net,
            }),
            events: Box::new(MemEvents {
                rx,
                closed: self.closed.subscribe(),
            }),
        }
    }

    fn close_now(&self) {
        let _ = self.closed.send(true);
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Senders for every endpoint selected by `pick`.
    fn targets(&self, pick: impl Fn(&Name) -> bool) -> Vec<(Name, mpsc::Sender<TransportEvent>)> {
        let departed = self.departed.lock().unwrap().clone();
        self.endpoints
            .lock()
            .unwrap()
            .iter()
            .filter(|e| pick(&e.name) && !departed.contains(&e.name))
            .map(|e| (e.name.clone(), e.tx.clone()))
            .collect()
    }
}

struct MemHandle {
    session: Arc<MemSession>,
    me: Name,
    net: Arc<MemNet>,
}

impl MemHandle {
    fn is_departed(&self) -> bool {
        self.session.departed.lock().unwrap().contains(&self.me)
    }

    async fn deliver(
        &self,
        to: Vec<(Name, mpsc::Sender<TransportEvent>)>,
        payload: Vec<u8>,
        metadata: HashMap<String, String>,
    ) -> Result<(), TransportError> {
        if self.session.is_closed() {
            return Err(TransportError("session closed".into()));
        }
        if self.is_departed() {
            // A dead process's messages reach nobody.
            return Ok(());
        }
        for (_, tx) in to {
            let _ = tx
                .send(TransportEvent::Message(IncomingMessage {
                    source: self.me.clone(),
                    payload: payload.clone(),
                    metadata: metadata.clone(),
                    // This in-memory transport verifies no identity.
                    peer_subject: None,
                }))
                .await;
        }
        Ok(())
    }
}

impl RpcSessionHandle for MemHandle {
    fn id(&self) -> u32 {
        self.session.id
    }

    fn kind(&self) -> SessionKind {
        self.session.kind
    }

    fn publish(
        &self,
        payload: Vec<u8>,
        metadata: HashMap<String, String>,
    ) -> TransportFuture<'_, ()> {
        async move {
            let to = self.session.targets(|n| *n != self.me);
            self.deliver(to, payload, metadata).await
        }
        .boxed()
    }

    fn publish_unicast<'a>(
        &'a self,
        member: &'a Name,
        payload: Vec<u8>,
        metadata: HashMap<String, String>,
    ) -> TransportFuture<'a, ()> {
        async move {
            let mut to = self.session.targets(|n| matches(member, n));
            if to.is_empty() {
                return Err(TransportError(format!("{member} is not in the session")));
            }
            if self.session.kind == SessionKind::Group {
                // SLIM v1.3 re-sends an unacked unicast MSG to every other
                // member: model that echo unconditionally.
                to.extend(
                    self.session
                        .targets(|n| *n != self.me && !matches(member, n)),
                );
            }
            self.deliver(to, payload, metadata).await
        }
        .boxed()
    }

    fn invite<'a>(&'a self, member: &'a Name) -> TransportFuture<'a, ()> {
        async move {
            let (name, inbox) = self
                .net
                .find_app(member)
                .ok_or_else(|| TransportError(format!("no app named {member}")))?;
            let theirs = self.session.join(name, self.net.clone());
            inbox
                .send(theirs)
                .await
                .map_err(|_| TransportError("invitee gone".into()))?;
            self.net.invites.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        .boxed()
    }

    fn close(&self) -> TransportFuture<'_, ()> {
        async move {
            if !self.is_departed() {
                self.session.close_now();
            }
            Ok(())
        }
        .boxed()
    }

    fn is_closed(&self) -> bool {
        self.session.is_closed()
    }
}

struct MemEvents {
    rx: mpsc::Receiver<TransportEvent>,
    closed: watch::Receiver<bool>,
}

impl RpcSessionEvents for MemEvents {
    fn recv(&mut self) -> BoxFuture<'_, Option<TransportEvent>> {
        async move {
            if *self.closed.borrow() {
                return None;
            }
            tokio::select! {
                m = self.rx.recv() => m,
                _ = self.closed.wait_for(|c| *c) => None,
            }
        }
        .boxed()
    }
}
