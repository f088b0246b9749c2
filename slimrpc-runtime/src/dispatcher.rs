//! Client-side response dispatcher: one per session, routing by `rpc-id`.
//!
//! Job: keep the table `rpc-id → per-call queue`, feed it from the session's
//! events (handed over on the session's own task), tell every call when a
//! member leaves the session or a message of the session was lost, and
//! close every entry when the session
//! dies so waiting calls learn it at once. A [`DispatchGuard`] removes its
//! entry on drop, so a call abandoned at any point leaves nothing behind.
//! Must not: interpret frames (the call does), hold its lock across `.await`,
//! or wait for any one call: the reader serves every call of the session,
//! so [`Dispatcher::dispatch`] never waits (no head-of-line blocking).
//!
//! A call's memory stays bounded without making anyone wait. Past its
//! buffer ([`CALL_BUFFER`], or the channel's `response_buffer`), a call
//! keeps receiving as long as its caller makes progress: a watchdog checks
//! every [`CALL_BUFFER_WAIT`] that the caller took at least one frame since
//! the last look, and ends the call (its queue gets [`CallEvent::Overflow`]
//! after the frames it holds, and nothing further) when it did not. A call
//! that reaches [`hold_limit`] frames is ended at once, late or stalled.
//! So a caller that reads behind a burst keeps its call, a caller that
//! stopped reading loses only its own call, and the other calls never wait.
//! The session's acks and timers never wait for the reader at all (the
//! transport's session task buffers and pushes back).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use slim_transport::Name;
use slim_transport::session::InboundFilter;

use crate::lane::{LaneRx, LaneTx, Push, lane};
use crate::tracker::Output;
use crate::transport::{EventSink, IncomingMessage, TransportEvent};

pub use crate::lane::hold_limit;

/// Response frames one call buffers for a caller that has not read them
/// yet. Past it, the call must show progress (see [`CALL_BUFFER_WAIT`]) and
/// may hold at most [`hold_limit`] frames. Large enough for a caller that
/// reads steadily but slower than a burst arrives.
pub const CALL_BUFFER: usize = 1024;

/// How long a call holding more than its buffer may go without its caller
/// taking a frame before it is ended. Nobody waits for it: the frames
/// keep flowing to every call meanwhile.
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
    /// The channel removed this member from the session on purpose.
    MemberRemoved(Name),
    /// The session gave up recovering message `message_id` from `source`.
    /// Its `rpc-id` is unknown (it never arrived), so every call that still
    /// waits for `source` must assume the gap is in its own stream.
    MessageLost { source: Name, message_id: u32 },
    /// The caller left more than `limit` frames unread and stopped taking
    /// them (or let [`hold_limit`] of them pile up): the call is over,
    /// nothing follows this event.
    Overflow { limit: usize },
}

/// The dispatcher's end of one call's queue: frames are counted, notices
/// (member left, message lost, overflow) are not.
type CallSender = LaneTx<CallEvent>;

/// The call's end of its queue (a lane, see the `lane` module): the few notices
/// always get through without ever making the reader wait.
pub struct CallReceiver {
    rx: LaneRx<CallEvent>,
}

impl CallReceiver {
    /// The next event; `None` once the session closed or the call was
    /// unregistered. Cancel-safe (the call selects on it).
    pub async fn recv(&mut self) -> Option<CallEvent> {
        self.rx.recv().await
    }
}

/// One registered call.
struct Entry {
    tx: CallSender,
    /// For a call whose members answer once (unary output): the senders
    /// whose answer it already got. A member's first frame ends its part
    /// (see the tracker), so nothing more from it is wanted.
    answered: Option<Vec<Name>>,
}

impl Entry {
    fn wants(&self, source: &Name) -> bool {
        self.answered
            .as_ref()
            .is_none_or(|done| !done.contains(source))
    }
}

#[derive(Default)]
struct Table {
    calls: HashMap<String, Entry>,
    closed: bool,
    /// A member left this session; a channel does not start new calls on it.
    lost_member: bool,
    /// Members the channel is removing on purpose: their departure is not a
    /// loss (the session stays usable), and calls learn it as
    /// [`CallEvent::MemberRemoved`].
    removing: Vec<Name>,
}

/// True when `name` (as given by a user, maybe without an instance id)
/// designates `full` (as the session reports it).
pub(crate) fn designates(name: &Name, full: &Name) -> bool {
    name.prefix() == full.prefix() && (name.has_null_id() || name == full)
}

/// Routes frames to calls by `rpc-id`.
pub struct Dispatcher {
    table: Mutex<Table>,
    /// Frames a call may leave unread without showing progress.
    call_buffer: usize,
    /// How long a call past its buffer may go without taking a frame.
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
    /// 1); past that, a call whose caller takes no frame for `wait` is
    /// ended, and so is one that reaches [`hold_limit`]`(limit)` frames.
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

    /// Registers `rpc_id` for every frame that carries it; the guard
    /// unregisters it when dropped.
    pub fn register(
        self: &Arc<Self>,
        rpc_id: &str,
    ) -> Result<(DispatchGuard, CallReceiver), RegisterError> {
        self.register_for(rpc_id, Output::Stream)
    }

    /// Registers `rpc_id` for a call whose members each send `output`:
    /// with [`Output::Unary`], only the first frame of each sender is
    /// delivered (it ends that member's part of the call, see
    /// [`crate::tracker`]), and [`Self::wants`] refuses the rest, such as
    /// the EOS after a unary answer.
    pub fn register_for(
        self: &Arc<Self>,
        rpc_id: &str,
        output: Output,
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
        let (tx, rx) = lane(self.call_buffer);
        let answered = (output == Output::Unary).then(Vec::new);
        t.calls.insert(rpc_id.to_string(), Entry { tx, answered });
        Ok((
            DispatchGuard {
                dispatcher: self.clone(),
                rpc_id: rpc_id.to_string(),
            },
            CallReceiver { rx },
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

    /// Delivers `msg` to its call, without waiting. Returns false when no
    /// live call wants it, or when that call already holds
    /// [`hold_limit`] frames: it is then ended ([`CallEvent::Overflow`]
    /// after what it holds) and unregistered. A call that goes past its
    /// buffer gets a watchdog that ends it once its caller takes no frame
    /// for the dispatcher's wait.
    pub fn dispatch(self: &Arc<Self>, msg: IncomingMessage) -> bool {
        let Some(id) = crate::metadata::rpc_id(&msg.metadata) else {
            return false;
        };
        let call = {
            let mut t = self.lock();
            let Some(entry) = t.calls.get_mut(id) else {
                return false;
            };
            if !entry.wants(&msg.source) {
                return false;
            }
            if let Some(done) = &mut entry.answered {
                done.push(msg.source.clone());
            }
            entry.tx.clone()
        };
        let id = id.to_string();
        match call.push(CallEvent::Frame(msg)) {
            Push::Queued => true,
            Push::Watch => {
                let dispatcher = Arc::downgrade(self);
                let lane = call.clone();
                call.watch(self.call_wait, move || {
                    if let Some(d) = dispatcher.upgrade() {
                        d.overflow(&id, &lane);
                    }
                });
                true
            }
            Push::Full => {
                self.overflow(&id, &call);
                false
            }
            // The call was dropped or ended meanwhile: its guard removes it.
            Push::Closed => false,
        }
    }

    /// Ends call `id`, whose caller left too much unread.
    fn overflow(&self, id: &str, call: &CallSender) {
        tracing::warn!(
            rpc_id = %id,
            limit = self.call_buffer,
            "caller stopped reading a call's responses; ending that call"
        );
        call.end(CallEvent::Overflow {
            limit: self.call_buffer,
        });
        let mut t = self.lock();
        // Only this call's entry: the id may have been re-registered since.
        if t.calls.get(id).is_some_and(|c| c.tx.same_lane(call)) {
            t.calls.remove(id);
        }
    }

    /// Marks `member` as being removed by the channel: its departure from
    /// now on does not make the session unusable.
    pub fn expect_removal(&self, member: &Name) {
        let mut t = self.lock();
        if !t.removing.iter().any(|n| n == member) {
            t.removing.push(member.clone());
        }
    }

    /// True when the channel removed `member` from this session before.
    pub fn was_removed(&self, member: &Name) -> bool {
        self.lock()
            .removing
            .iter()
            .any(|n| designates(n, member) || designates(member, n))
    }

    /// `member` is wanted again (re-added): a later departure is a loss.
    pub fn forget_removal(&self, member: &Name) {
        self.lock()
            .removing
            .retain(|n| !(designates(n, member) || designates(member, n)));
    }

    /// Tells every registered call that `member` was removed on purpose.
    pub fn member_removed(&self, member: &Name) {
        let t = self.lock();
        for call in t.calls.values() {
            call.tx.notice(CallEvent::MemberRemoved(member.clone()));
        }
    }

    /// Records that `member` left and tells every registered call.
    pub fn member_left(&self, member: Name) {
        let mut t = self.lock();
        if t.removing.iter().any(|n| designates(n, &member)) {
            for call in t.calls.values() {
                call.tx.notice(CallEvent::MemberRemoved(member.clone()));
            }
            return;
        }
        t.lost_member = true;
        for call in t.calls.values() {
            // A closed receiver is a call that already ended: nothing to tell.
            call.tx.notice(CallEvent::MemberLeft(member.clone()));
        }
    }

    /// Tells every registered call that a message of `source` was lost.
    pub fn message_lost(&self, source: Name, message_id: u32) {
        let t = self.lock();
        for call in t.calls.values() {
            call.tx.notice(CallEvent::MessageLost {
                source: source.clone(),
                message_id,
            });
        }
    }

    /// Handles one event of the session: routes a message to its call,
    /// tells the calls of a departure or a loss, and closes the table at
    /// the end (`None`). Never waits.
    pub fn on_event(self: &Arc<Self>, event: Option<TransportEvent>) {
        match event {
            Some(TransportEvent::Message(msg)) => {
                let msg = match self.pins.get(&msg.source.prefix()) {
                    Some(want) if msg.peer_subject.as_deref() != Some(want.as_str()) => {
                        tracing::warn!(source = %msg.source, expected = %want, got = ?msg.peer_subject, "answer from an unexpected identity refused");
                        refused(msg, want)
                    }
                    _ => msg,
                };
                if !self.dispatch(msg) {
                    tracing::trace!("dropping a frame for no registered call");
                }
            }
            Some(TransportEvent::MemberLeft(member)) => {
                tracing::debug!(%member, "member left the session");
                self.member_left(member);
            }
            Some(TransportEvent::MessageLost { source, message_id }) => {
                tracing::debug!(%source, message_id, "the session lost a message");
                self.message_lost(source, message_id);
            }
            None => {
                tracing::debug!("session closed; ending every pending call");
                self.close();
            }
        }
    }

    /// This dispatcher as the sink of its session's events
    /// ([`crate::RpcTransport::create_session_delivering`]).
    pub fn sink(self: &Arc<Self>) -> EventSink {
        let me = self.clone();
        Box::new(move |event| me.on_event(event))
    }

    /// True when a frame from `source` with this metadata would be
    /// delivered to a call now: it names a registered call, and that call
    /// still wants frames from `source`. Anything else [`Self::dispatch`]
    /// drops, so the session need not decrypt it.
    pub fn wants(&self, source: &Name, metadata: &HashMap<String, String>) -> bool {
        let Some(id) = crate::metadata::rpc_id(metadata) else {
            return false;
        };
        self.lock()
            .calls
            .get(id)
            .is_some_and(|entry| entry.wants(source))
    }

    /// The session filter that skips what this dispatcher would drop
    /// ([`Self::wants`]), counting each skipped frame in `skipped`.
    /// Frames reach it in arrival order and are delivered in order after
    /// it; a frame it lets through may still be dropped (say, an EOS that
    /// arrived before its answer), but a frame it skips would have been
    /// dropped: calls only ever stop wanting frames.
    pub fn skip_filter(self: &Arc<Self>, skipped: Arc<AtomicUsize>) -> InboundFilter {
        let me = self.clone();
        Box::new(move |source: &Name, metadata: &HashMap<String, String>| {
            let skip = !me.wants(source, metadata);
            if skip {
                skipped.fetch_add(1, Ordering::Relaxed);
            }
            skip
        })
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
        assert!(d.dispatch(frame("B", b"b1")));
        assert!(d.dispatch(frame("A", b"a1")));
        assert!(!d.dispatch(frame("C", b"c1")));
        assert_eq!(payload(a.recv().await), b"a1");
        assert_eq!(payload(b.recv().await), b"b1");
    }

    fn payload(event: Option<CallEvent>) -> Vec<u8> {
        match event {
            Some(CallEvent::Frame(m)) => m.payload,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    fn from(member: u64, rpc_id: &str, payload: &[u8]) -> IncomingMessage {
        IncomingMessage {
            source: Name::new("org", "ns", format!("srv{member}")).with_id(member),
            ..frame(rpc_id, payload)
        }
    }

    #[tokio::test]
    async fn a_unary_output_call_takes_the_first_frame_of_each_member_and_wants_no_more_from_it() {
        let d = Dispatcher::new();
        let (_g, mut rx) = d.register_for("U", Output::Unary).unwrap();
        let (_gs, mut stream) = d.register_for("S", Output::Stream).unwrap();
        let (one, two) = (from(1, "U", b"answer 1"), from(2, "U", b"answer 2"));
        assert!(d.wants(&one.source, &one.metadata));
        assert!(d.dispatch(one.clone()));
        // Member 1's EOS (or anything else from it) is no longer wanted.
        let eos1 = from(1, "U", b"");
        assert!(!d.wants(&eos1.source, &eos1.metadata));
        assert!(!d.dispatch(eos1));
        // Member 2 has not answered yet.
        assert!(d.wants(&two.source, &two.metadata));
        assert!(d.dispatch(two));
        assert_eq!(payload(rx.recv().await), b"answer 1");
        assert_eq!(payload(rx.recv().await), b"answer 2");
        // A streaming call wants every frame of every member.
        for p in [&b"r1"[..], b"r2", b""] {
            let f = from(1, "S", p);
            assert!(d.wants(&f.source, &f.metadata));
            assert!(d.dispatch(f));
            assert_eq!(payload(stream.recv().await), p);
        }
    }

    #[tokio::test]
    async fn frames_of_no_registered_call_are_not_wanted_and_the_filter_counts_them() {
        let d = Dispatcher::new();
        let skipped = Arc::new(AtomicUsize::new(0));
        let mut skip = d.skip_filter(skipped.clone());
        let (g, _rx) = d.register_for("U", Output::Unary).unwrap();
        let answer = from(1, "U", b"a");
        assert!(!skip(&answer.source, &answer.metadata));
        assert!(d.dispatch(answer));
        let eos = from(1, "U", b"");
        assert!(skip(&eos.source, &eos.metadata));
        let none = from(1, "", b"no rpc-id");
        let mut no_id = none.metadata.clone();
        no_id.clear();
        assert!(skip(&none.source, &no_id));
        drop(g);
        let late = from(2, "U", b"late");
        assert!(skip(&late.source, &late.metadata));
        assert_eq!(skipped.load(Ordering::Relaxed), 3);
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
        assert!(d.dispatch(frame("A", b"after")));
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
        assert!(!d.dispatch(frame("A", b"late")));
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
        assert!(!d.dispatch(f.clone()));
        f.metadata.clear();
        assert!(!d.dispatch(f));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_whose_caller_stops_reading_is_ended_after_the_wait_and_the_others_never_wait() {
        let d = Dispatcher::with_call_buffer(4, Duration::from_millis(50));
        let (_ga, mut slow) = d.register("slow").unwrap();
        let (_gb, mut busy) = d.register("busy").unwrap();
        // Past its buffer, the slow call still takes frames: nobody waits.
        for i in 0..6u8 {
            assert!(d.dispatch(frame("slow", &[i])));
        }
        // The other call is served meanwhile, however many frames it gets.
        for _ in 0..(CALL_BUFFER * 2) {
            assert!(d.dispatch(frame("busy", b"x")));
            assert_eq!(payload(busy.recv().await), b"x");
        }
        assert_eq!(d.len(), 2, "not ended before the wait is over");
        // No frame taken during the wait: the slow call is ended.
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(d.len(), 1, "the slow call is unregistered");
        assert!(!d.dispatch(frame("slow", b"later")));
        assert!(d.dispatch(frame("busy", b"y")));
        // The slow caller still gets what was queued, then the overflow, then the end.
        for i in 0..6u8 {
            assert_eq!(payload(slow.recv().await), vec![i]);
        }
        assert_eq!(slow.recv().await, Some(CallEvent::Overflow { limit: 4 }));
        assert_eq!(slow.recv().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_reads_behind_a_burst_keeps_its_call_past_its_buffer() {
        let d = Dispatcher::with_call_buffer(2, Duration::from_millis(50));
        let (_g, mut rx) = d.register("A").unwrap();
        // A burst of ten into a two-frame buffer (the limit is 18).
        for i in 0..10u8 {
            assert!(d.dispatch(frame("A", &[i])));
        }
        // The caller takes one frame per wait: slow, but it makes progress.
        for i in 0..9u8 {
            assert_eq!(payload(rx.recv().await), vec![i]);
            tokio::time::sleep(Duration::from_millis(40)).await;
            assert_eq!(d.len(), 1, "kept after {} frames", i + 1);
        }
        assert_eq!(payload(rx.recv().await), vec![9]);
        // Back within its buffer, then stalled with a full buffer: still
        // bounded by the buffer, nothing to end.
        assert!(d.dispatch(frame("A", b"a")));
        assert!(d.dispatch(frame("A", b"b")));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(d.len(), 1);
        assert_eq!(payload(rx.recv().await), b"a");
        assert_eq!(payload(rx.recv().await), b"b");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_reaches_its_hold_limit_is_ended_at_once() {
        // A wait far beyond the test: only the hold limit can end it.
        let d = Dispatcher::with_call_buffer(4, Duration::from_secs(600));
        let (_g, mut rx) = d.register("A").unwrap();
        let limit = hold_limit(4);
        assert_eq!(limit, 20);
        for i in 0..limit {
            assert!(d.dispatch(frame("A", &[i as u8])));
        }
        assert!(!d.dispatch(frame("A", b"one too many")));
        assert_eq!(d.len(), 0);
        for i in 0..limit {
            assert_eq!(payload(rx.recv().await), vec![i as u8]);
        }
        assert_eq!(rx.recv().await, Some(CallEvent::Overflow { limit: 4 }));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn notices_reach_a_call_whose_buffer_is_full() {
        let d = Dispatcher::with_call_buffer(2, Duration::from_millis(50));
        let (_g, mut rx) = d.register("A").unwrap();
        assert!(d.dispatch(frame("A", b"1")));
        assert!(d.dispatch(frame("A", b"2")));
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
    async fn a_member_removed_on_purpose_is_no_loss_and_calls_are_told_it_was_removed() {
        let d = Dispatcher::new();
        let (_g, mut a) = d.register("A").unwrap();
        d.expect_removal(&Name::new("org", "ns", "srv"));
        let gone = Name::new("org", "ns", "srv").with_id(7);
        d.member_left(gone.clone());
        assert!(!d.lost_a_member());
        assert_eq!(a.recv().await, Some(CallEvent::MemberRemoved(gone.clone())));
        assert!(d.register("B").is_ok());
        // Re-added, then gone for real: a loss again.
        d.forget_removal(&gone);
        d.member_left(gone.clone());
        assert!(d.lost_a_member());
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
            assert!(!d.dispatch(frame("A", b"x")));
        }
    }
}
