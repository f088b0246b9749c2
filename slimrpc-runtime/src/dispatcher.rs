//! Client-side response dispatcher: one reader per session, routing by `rpc-id`.
//!
//! Job: keep the table `rpc-id → per-call queue`, feed it from the session's
//! single reader task, tell every call when a member leaves the session or a
//! message of the session was lost, and close every entry when the session
//! dies so waiting calls learn it at once. A [`DispatchGuard`] removes its
//! entry on drop, so a call abandoned at any point leaves nothing behind.
//! Must not: interpret frames (the call does), hold its lock across `.await`,
//! or wait long for any one call: the reader serves every call of the
//! session, so a call whose caller stopped reading must not stall the
//! others. A call holding [`CALL_BUFFER`] unread frames gets at most
//! [`CALL_BUFFER_WAIT`] to make room (a caller that merely hiccuped
//! catches up; the others wait that long at most, once); then it is ended
//! (its queue gets [`CallEvent::Overflow`] and no further frame), which
//! bounds its memory. The session's acks and timers never wait for the
//! reader at all (the transport's session task buffers and pushes back).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use slim_transport::Name;

use crate::transport::{IncomingMessage, RpcSessionEvents, TransportEvent};

/// Response frames one call buffers for a caller that has not read them
/// yet; one more ends that call with `ResourceExhausted`. Large enough for
/// a caller that reads steadily but slower than a burst arrives.
pub const CALL_BUFFER: usize = 1024;

/// How long the reader waits for a call with a full buffer to make room
/// before ending it.
pub const CALL_BUFFER_WAIT: Duration = Duration::from_secs(1);

/// Why a registration failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    /// The session behind this dispatcher is gone.
    Closed,
    /// A member already left this session: a call started now would wait
    /// for it in vain. The caller should use a fresh session.
    MemberGone,
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
    /// The session gave up recovering message `message_id` from `source`.
    /// Its `rpc-id` is unknown (it never arrived), so every call that still
    /// waits for `source` must assume the gap is in its own stream.
    MessageLost { source: Name, message_id: u32 },
    /// The caller left `limit` frames unread: the call is over, nothing
    /// follows this event.
    Overflow { limit: usize },
}

/// The dispatcher's end of one call's queue.
#[derive(Clone)]
struct CallSender {
    tx: mpsc::UnboundedSender<CallEvent>,
    /// Frames queued and not yet taken by the call.
    buffered: Arc<AtomicUsize>,
    /// Signalled each time the call takes a frame.
    taken: Arc<Notify>,
}

/// The call's end of its queue.
///
/// Unbounded as a channel, bounded by count: only frames count towards the
/// limit (the dispatcher checks `buffered` before queuing one), while the
/// few notices (member left, message lost, overflow) always get through
/// without ever making the reader wait.
pub struct CallReceiver {
    rx: mpsc::UnboundedReceiver<CallEvent>,
    buffered: Arc<AtomicUsize>,
    taken: Arc<Notify>,
}

impl CallReceiver {
    /// The next event; `None` once the session closed or the call was
    /// unregistered. Cancel-safe (the call selects on it).
    pub async fn recv(&mut self) -> Option<CallEvent> {
        let event = self.rx.recv().await;
        if let Some(CallEvent::Frame(_)) = &event {
            self.buffered.fetch_sub(1, Ordering::AcqRel);
            self.taken.notify_one();
        }
        event
    }
}

#[derive(Default)]
struct Table {
    calls: HashMap<String, CallSender>,
    closed: bool,
    /// A member left this session; a channel does not start new calls on it.
    lost_member: bool,
}

/// Routes frames to calls by `rpc-id`.
pub struct Dispatcher {
    table: Mutex<Table>,
    /// Frames a call may leave unread.
    call_buffer: usize,
    /// How long a call with a full buffer gets to make room.
    call_wait: Duration,
    /// Members pinned to an identity (by `org/ns/svc`): a frame from one of
    /// them under another verified identity becomes an error frame.
    pins: HashMap<[u64; 3], String>,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self {
            table: Mutex::default(),
            call_buffer: CALL_BUFFER,
            call_wait: CALL_BUFFER_WAIT,
            pins: HashMap::new(),
        }
    }
}

/// A frame from `member` under an identity other than the `expected` one:
/// an `Unauthenticated` error frame of the same call in its place, so the
/// call reports it for that member and never yields the answer.
fn refused(msg: IncomingMessage, expected: &str) -> IncomingMessage {
    let got = msg.peer_subject.as_deref().unwrap_or("<none>");
    let text = format!(
        "answer from {} refused: its identity is {got:?}, the channel is pinned to {expected:?}",
        msg.source
    );
    let mut metadata = HashMap::new();
    if let Some(id) = msg.metadata.get(crate::metadata::RPC_ID_KEY) {
        metadata.insert(crate::metadata::RPC_ID_KEY.to_string(), id.clone());
    }
    metadata.insert(
        crate::metadata::STATUS_CODE_KEY.to_string(),
        crate::code::Code::Unauthenticated.as_i32().to_string(),
    );
    IncomingMessage {
        source: msg.source,
        payload: text.into_bytes(),
        metadata,
        peer_subject: msg.peer_subject,
    }
}

impl Dispatcher {
    pub fn new() -> Arc<Self> {
        Self::with_call_buffer(CALL_BUFFER, CALL_BUFFER_WAIT)
    }

    /// A dispatcher whose calls may leave `limit` frames unread (at least
    /// 1), and get `wait` to make room before they are ended.
    pub fn with_call_buffer(limit: usize, wait: Duration) -> Arc<Self> {
        Self::with_pins(limit, wait, HashMap::new())
    }

    /// As [`Self::with_call_buffer`], refusing answers of the members in
    /// `pins` (keyed by `org/ns/svc`) unless their verified identity is the
    /// pinned one.
    pub fn with_pins(limit: usize, wait: Duration, pins: HashMap<[u64; 3], String>) -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::default(),
            call_buffer: limit.max(1),
            call_wait: wait,
            pins,
        })
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
    ) -> Result<(DispatchGuard, CallReceiver), RegisterError> {
        let mut t = self.lock();
        if t.closed {
            return Err(RegisterError::Closed);
        }
        // Checked under the same lock `member_left` takes: a call is either
        // registered before a departure (and told about it) or refused.
        if t.lost_member {
            return Err(RegisterError::MemberGone);
        }
        if t.calls.contains_key(rpc_id) {
            return Err(RegisterError::Duplicate);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let buffered = Arc::new(AtomicUsize::new(0));
        let taken = Arc::new(Notify::new());
        t.calls.insert(
            rpc_id.to_string(),
            CallSender {
                tx,
                buffered: buffered.clone(),
                taken: taken.clone(),
            },
        );
        Ok((
            DispatchGuard {
                dispatcher: self.clone(),
                rpc_id: rpc_id.to_string(),
            },
            CallReceiver {
                rx,
                buffered,
                taken,
            },
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

    /// Delivers `msg` to its call. Returns false when no live call wants it,
    /// or when that call had fallen too far behind: a call holding its whole
    /// buffer gets the dispatcher's wait to take a frame (without the lock
    /// held), then it ends with [`CallEvent::Overflow`] and is unregistered.
    pub async fn dispatch(&self, msg: IncomingMessage) -> bool {
        let Some(id) = crate::metadata::rpc_id(&msg.metadata).map(str::to_string) else {
            return false;
        };
        let Some(call) = self.lock().calls.get(&id).cloned() else {
            return false;
        };
        if call.buffered.load(Ordering::Acquire) >= self.call_buffer {
            let deadline = tokio::time::Instant::now() + self.call_wait;
            while call.buffered.load(Ordering::Acquire) >= self.call_buffer {
                let taken = call.taken.notified();
                if call.tx.is_closed() {
                    return false;
                }
                if tokio::time::timeout_at(deadline, taken).await.is_err()
                    && call.buffered.load(Ordering::Acquire) >= self.call_buffer
                {
                    self.overflow(&id, &call);
                    return false;
                }
            }
        }
        // Counted before the send so the call never sees it go below zero.
        call.buffered.fetch_add(1, Ordering::AcqRel);
        if call.tx.send(CallEvent::Frame(msg)).is_err() {
            // The call was dropped meanwhile: its guard removes it.
            call.buffered.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Ends call `id`, which left its whole buffer unread.
    fn overflow(&self, id: &str, call: &CallSender) {
        tracing::warn!(
            rpc_id = %id,
            limit = self.call_buffer,
            "caller stopped reading a call's responses; ending that call"
        );
        let _ = call.tx.send(CallEvent::Overflow {
            limit: self.call_buffer,
        });
        let mut t = self.lock();
        // Only this call's entry: the id may have been re-registered since.
        if t.calls.get(id).is_some_and(|c| c.tx.same_channel(&call.tx)) {
            t.calls.remove(id);
        }
    }

    /// Records that `member` left and tells every registered call.
    pub fn member_left(&self, member: Name) {
        let mut t = self.lock();
        t.lost_member = true;
        for call in t.calls.values() {
            // A closed receiver is a call that already ended: nothing to tell.
            let _ = call.tx.send(CallEvent::MemberLeft(member.clone()));
        }
    }

    /// Tells every registered call that a message of `source` was lost.
    pub fn message_lost(&self, source: Name, message_id: u32) {
        let t = self.lock();
        for call in t.calls.values() {
            let _ = call.tx.send(CallEvent::MessageLost {
                source: source.clone(),
                message_id,
            });
        }
    }

    /// The reader loop: routes every message of `events` until the session
    /// ends, then closes the table.
    pub async fn run_reader(self: Arc<Self>, mut events: Box<dyn RpcSessionEvents>) {
        while let Some(event) = events.recv().await {
            match event {
                TransportEvent::Message(msg) => {
                    let msg = match self.pins.get(&msg.source.prefix()) {
                        Some(want) if msg.peer_subject.as_deref() != Some(want.as_str()) => {
                            tracing::warn!(source = %msg.source, expected = %want, got = ?msg.peer_subject, "answer from an unexpected identity refused");
                            refused(msg, want)
                        }
                        _ => msg,
                    };
                    if !self.dispatch(msg).await {
                        tracing::trace!("dropping a frame for no registered call");
                    }
                }
                TransportEvent::MemberLeft(member) => {
                    tracing::debug!(%member, "member left the session");
                    self.member_left(member);
                }
                TransportEvent::MessageLost { source, message_id } => {
                    tracing::debug!(%source, message_id, "the session lost a message");
                    self.message_lost(source, message_id);
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
            peer_subject: None,
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
        d.member_left(gone.clone());
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
    async fn a_call_whose_caller_stops_reading_is_ended_and_the_others_keep_getting_frames() {
        let d = Dispatcher::with_call_buffer(4, Duration::from_millis(50));
        let (_ga, mut slow) = d.register("slow").unwrap();
        let (_gb, mut busy) = d.register("busy").unwrap();
        for i in 0..4u8 {
            assert!(d.dispatch(frame("slow", &[i])).await);
        }
        // The fifth unread frame ends the slow call instead of waiting.
        assert!(!d.dispatch(frame("slow", b"one too many")).await);
        assert_eq!(d.len(), 1, "the slow call is unregistered");
        assert!(!d.dispatch(frame("slow", b"later")).await);
        // The other call is not affected, however many frames it gets.
        for _ in 0..(CALL_BUFFER * 2) {
            assert!(d.dispatch(frame("busy", b"x")).await);
            assert_eq!(payload(busy.recv().await), b"x");
        }
        // The slow caller still gets what was buffered, then the overflow, then the end.
        for i in 0..4u8 {
            assert_eq!(payload(slow.recv().await), vec![i]);
        }
        assert_eq!(slow.recv().await, Some(CallEvent::Overflow { limit: 4 }));
        assert_eq!(slow.recv().await, None);
    }

    #[tokio::test]
    async fn a_caller_that_takes_a_frame_within_the_wait_keeps_its_call() {
        // A wait far beyond the test: only the caller's read can end it.
        let d = Dispatcher::with_call_buffer(2, Duration::from_secs(600));
        let (_g, mut rx) = d.register("A").unwrap();
        assert!(d.dispatch(frame("A", b"1")).await);
        assert!(d.dispatch(frame("A", b"2")).await);
        let third = d.dispatch(frame("A", b"3"));
        let reader = async {
            assert_eq!(payload(rx.recv().await), b"1");
            rx
        };
        let (delivered, mut rx) = tokio::join!(third, reader);
        assert!(delivered, "room was made in time");
        assert_eq!(payload(rx.recv().await), b"2");
        assert_eq!(payload(rx.recv().await), b"3");
        assert_eq!(d.len(), 1);
    }

    #[tokio::test]
    async fn notices_reach_a_call_whose_buffer_is_full() {
        let d = Dispatcher::with_call_buffer(2, Duration::from_millis(50));
        let (_g, mut rx) = d.register("A").unwrap();
        assert!(d.dispatch(frame("A", b"1")).await);
        assert!(d.dispatch(frame("A", b"2")).await);
        let src = Name::new("org", "ns", "srv").with_id(1);
        d.message_lost(src.clone(), 17);
        d.member_left(src.clone());
        assert_eq!(payload(rx.recv().await), b"1");
        assert_eq!(payload(rx.recv().await), b"2");
        assert_eq!(
            rx.recv().await,
            Some(CallEvent::MessageLost {
                source: src.clone(),
                message_id: 17
            })
        );
        assert_eq!(rx.recv().await, Some(CallEvent::MemberLeft(src)));
    }

    #[tokio::test]
    async fn a_call_is_refused_once_a_member_left_the_session() {
        let d = Dispatcher::new();
        d.member_left(Name::new("org", "ns", "srv").with_id(7));
        assert_eq!(d.register("A").err(), Some(RegisterError::MemberGone));
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
