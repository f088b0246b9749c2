//! Client-side response dispatcher: one reader per session, routing by `rpc-id`.
//!
//! Job: keep the table `rpc-id → per-call bounded channel`, feed it from the
//! session's single reader task, tell every call when a member leaves the
//! session, and close every entry when the session dies so waiting calls
//! learn it at once. A [`DispatchGuard`] removes its entry on drop, so a call
//! abandoned at any point leaves nothing behind.
//! Must not: interpret frames (the call does) or hold its lock across `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use slim_transport::Name;

use crate::transport::{IncomingMessage, RpcSessionEvents, TransportEvent};

/// Frames buffered per call before the reader waits for the caller.
pub const CALL_BUFFER: usize = 64;

/// Why a registration failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    /// The session behind this dispatcher is gone.
    Closed,
    /// The rpc-id is already registered.
    Duplicate,
}

/// What a call receives from its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// A frame carrying this call's `rpc-id`.
    Frame(IncomingMessage),
    /// A member left the session (or stopped answering pings).
    MemberLeft(Name),
}

#[derive(Default)]
struct Table {
    calls: HashMap<String, mpsc::Sender<CallEvent>>,
    closed: bool,
    /// A member left this session; a channel does not start new calls on it.
    lost_member: bool,
}

/// Routes frames to calls by `rpc-id`.
#[derive(Default)]
pub struct Dispatcher {
    table: Mutex<Table>,
}

impl Dispatcher {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A poisoned table only means a panic elsewhere while it was held;
        // the map itself is still consistent.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `rpc_id`; the guard unregisters it when dropped.
    pub fn register(
        self: &Arc<Self>,
        rpc_id: &str,
    ) -> Result<(DispatchGuard, mpsc::Receiver<CallEvent>), RegisterError> {
        let mut t = self.lock();
        if t.closed {
            return Err(RegisterError::Closed);
        }
        if t.calls.contains_key(rpc_id) {
            return Err(RegisterError::Duplicate);
        }
        let (tx, rx) = mpsc::channel(CALL_BUFFER);
        t.calls.insert(rpc_id.to_string(), tx);
        Ok((
            DispatchGuard {
                dispatcher: self.clone(),
                rpc_id: rpc_id.to_string(),
            },
            rx,
        ))
    }

    /// Number of calls currently registered.
    pub fn len(&self) -> usize {
        self.lock().calls.len()
    }

    /// True when no call is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once [`Dispatcher::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// True once a member left this session.
    pub fn lost_a_member(&self) -> bool {
        self.lock().lost_member
    }

    /// Drops every entry (their receivers then end) and refuses new ones.
    pub fn close(&self) {
        let mut t = self.lock();
        t.closed = true;
        t.calls.clear();
    }

    /// Delivers `msg` to its call. Returns false when no live call wants it.
    /// Waits (without the lock) while that call's buffer is full.
    pub async fn dispatch(&self, msg: IncomingMessage) -> bool {
        let sender = {
            let t = self.lock();
            match crate::metadata::rpc_id(&msg.metadata) {
                Some(id) => t.calls.get(id).cloned(),
                None => None,
            }
        };
        match sender {
            // Err means the call was dropped meanwhile: its guard removes it.
            Some(tx) => tx.send(CallEvent::Frame(msg)).await.is_ok(),
            None => false,
        }
    }

    /// Records that `member` left and tells every registered call.
    pub async fn member_left(&self, member: Name) {
        let senders: Vec<_> = {
            let mut t = self.lock();
            t.lost_member = true;
            t.calls.values().cloned().collect()
        };
        for tx in senders {
            // A closed receiver is a call that already ended: nothing to tell.
            let _ = tx.send(CallEvent::MemberLeft(member.clone())).await;
        }
    }

    /// The reader loop: routes every message of `events` until the session
    /// ends, then closes the table.
    pub async fn run_reader(self: Arc<Self>, mut events: Box<dyn RpcSessionEvents>) {
        while let Some(event) = events.recv().await {
            match event {
                TransportEvent::Message(msg) => {
                    if !self.dispatch(msg).await {
                        tracing::trace!("dropping a frame for no registered call");
                    }
                }
                TransportEvent::MemberLeft(member) => {
                    tracing::debug!(%member, "member left the session");
                    self.member_left(member).await;
                }
            }
        }
        tracing::debug!("session closed; ending every pending call");
        self.close();
    }

    fn unregister(&self, rpc_id: &str) {
        self.lock().calls.remove(rpc_id);
    }
}

/// Removes its call from the dispatcher when dropped.
pub struct DispatchGuard {
    dispatcher: Arc<Dispatcher>,
    rpc_id: String,
}

impl DispatchGuard {
    pub fn rpc_id(&self) -> &str {
        &self.rpc_id
    }
}

impl Drop for DispatchGuard {
    fn drop(&mut self) {
        self.dispatcher.unregister(&self.rpc_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{Metadata, RPC_ID_KEY};

    fn frame(rpc_id: &str, payload: &[u8]) -> IncomingMessage {
        IncomingMessage {
            source: Name::new("org", "ns", "srv").with_id(1),
            payload: payload.to_vec(),
            metadata: Metadata::from([(RPC_ID_KEY.to_string(), rpc_id.to_string())]),
        }
    }

    #[tokio::test]
    async fn dispatcher_routes_frames_by_rpc_id() {
        let d = Dispatcher::new();
        let (_ga, mut a) = d.register("A").unwrap();
        let (_gb, mut b) = d.register("B").unwrap();
        assert!(d.dispatch(frame("B", b"b1")).await);
        assert!(d.dispatch(frame("A", b"a1")).await);
        assert!(!d.dispatch(frame("C", b"c1")).await);
        assert_eq!(payload(a.recv().await), b"a1");
        assert_eq!(payload(b.recv().await), b"b1");
    }

    fn payload(event: Option<CallEvent>) -> Vec<u8> {
        match event {
            Some(CallEvent::Frame(m)) => m.payload,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_departed_member_is_announced_to_every_call_and_marks_the_session() {
        let d = Dispatcher::new();
        let (_ga, mut a) = d.register("A").unwrap();
        let (_gb, mut b) = d.register("B").unwrap();
        assert!(!d.lost_a_member());
        let gone = Name::new("org", "ns", "srv").with_id(7);
        d.member_left(gone.clone()).await;
        assert!(d.lost_a_member());
        assert_eq!(a.recv().await, Some(CallEvent::MemberLeft(gone.clone())));
        assert_eq!(b.recv().await, Some(CallEvent::MemberLeft(gone)));
        // Frames still flow to the calls already running.
        assert!(d.dispatch(frame("A", b"after")).await);
        assert_eq!(payload(a.recv().await), b"after");
    }

    #[tokio::test]
    async fn dropping_the_guard_unregisters_the_call() {
        let d = Dispatcher::new();
        let (g, rx) = d.register("A").unwrap();
        assert_eq!(d.len(), 1);
        drop(rx);
        drop(g);
        assert_eq!(d.len(), 0);
        assert!(!d.dispatch(frame("A", b"late")).await);
    }

    #[tokio::test]
    async fn closing_ends_pending_calls_and_refuses_new_ones() {
        let d = Dispatcher::new();
        let (_g, mut rx) = d.register("A").unwrap();
        d.close();
        assert!(rx.recv().await.is_none());
        assert_eq!(d.register("B").err(), Some(RegisterError::Closed));
    }

    #[tokio::test]
    async fn duplicate_rpc_id_is_refused() {
        let d = Dispatcher::new();
        let _a = d.register("A").unwrap();
        assert_eq!(d.register("A").err(), Some(RegisterError::Duplicate));
    }

    #[tokio::test]
    async fn frames_without_rpc_id_are_dropped() {
        let d = Dispatcher::new();
        let (_g, _rx) = d.register("").unwrap();
        let mut f = frame("", b"x");
        assert!(!d.dispatch(f.clone()).await);
        f.metadata.clear();
        assert!(!d.dispatch(f).await);
    }

    #[tokio::test]
    async fn a_dropped_receiver_does_not_block_the_reader() {
        let d = Dispatcher::new();
        let (_g, rx) = d.register("A").unwrap();
        drop(rx);
        for _ in 0..(CALL_BUFFER * 2) {
            assert!(!d.dispatch(frame("A", b"x")).await);
        }
    }
}
