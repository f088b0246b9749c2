//! Reliability building blocks: the retransmission timer, MSG id arithmetic,
//! the sender's buffer of unacknowledged messages and the per-source reorder
//! buffer of a receiver (SLIM v1.3 §d.6).
//!
//! Pure data structures driven by explicit `now` values: they decide *what*
//! is due, the session turns that into messages. No clock, no I/O here.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Name;
use crate::wire;

use super::packet::MAX_PUBLISH_ID;

/// How many sent MSGs stay available for RTX_REPLY (SLIM's producer buffer).
pub const HISTORY: usize = 512;
/// How far ahead of the next expected id a MSG may be before it is refused
/// as out of range (it could not be recovered from a 512-message history).
pub const REORDER_WINDOW: i64 = 4096;

/// The id after `id` in the sequenced space (wraps from 2^31-1 to 0).
pub fn next_seq(id: u32) -> u32 {
    if id >= MAX_PUBLISH_ID { 0 } else { id + 1 }
}

/// `a - b` in the 2^31 id space, in `[-2^30, 2^30)` (half-window rule).
pub fn seq_diff(a: u32, b: u32) -> i64 {
    const SPACE: i64 = 1 << 31;
    let d = (i64::from(a) - i64::from(b)).rem_euclid(SPACE);
    if d >= SPACE / 2 { d - SPACE } else { d }
}

/// A constant-interval retransmission timer: resends at T, 2T, ..., NT after
/// the first send and gives up at (N+1)T, so N+1 sends in total.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub next: Instant,
    left: u32,
    interval: Duration,
}

/// What a due [`Retry`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fire {
    Resend,
    GiveUp,
}

impl Retry {
    pub fn new(now: Instant, interval: Duration, max_retries: u32) -> Self {
        Self {
            next: now + interval,
            left: max_retries,
            interval,
        }
    }

    /// `None` when not due yet.
    pub fn fire(&mut self, now: Instant) -> Option<Fire> {
        if now < self.next {
            return None;
        }
        if self.left == 0 {
            return Some(Fire::GiveUp);
        }
        self.left -= 1;
        self.next = now + self.interval;
        Some(Fire::Resend)
    }
}

/// A sent MSG still waiting for acknowledgements.
#[derive(Debug)]
struct Pending {
    /// Shared with the history's copy ([`Sent`]).
    msg: Arc<wire::Message>,
    waiting: BTreeSet<Name>,
    retry: Retry,
}

/// What the sender wants done after a timeout.
#[derive(Debug)]
pub enum SendAction {
    /// Re-send `msg` with its destination rewritten to each name in `to`.
    Resend {
        msg: Box<wire::Message>,
        to: Vec<Name>,
    },
    /// Gave up on `message_id`; `missing` never acknowledged it.
    Failed { message_id: u32, missing: Vec<Name> },
}

/// One historic MSG kept for RTX: the message and who it was addressed to.
#[derive(Debug)]
struct Sent {
    id: u32,
    msg: Arc<wire::Message>,
    audience: BTreeSet<Name>,
}

/// The reliable sender of one session.
#[derive(Debug)]
pub struct Sender {
    next_id: u32,
    history: VecDeque<Sent>,
    pending: HashMap<u32, Pending>,
}

impl Default for Sender {
    fn default() -> Self {
        Self::new()
    }
}

impl Sender {
    pub fn new() -> Self {
        Self {
            next_id: 1,
            history: VecDeque::new(),
            pending: HashMap::new(),
        }
    }

    /// Takes the next sequenced id (1, 2, ..., 2^31-1, 0, 1, ...).
    pub fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = next_seq(id);
        id
    }

    /// For tests of the wrap rule: the next id to be taken.
    #[cfg(test)]
    pub fn set_next_id(&mut self, id: u32) {
        self.next_id = id;
    }

    /// Records a sent sequenced MSG for RTX. The history is bounded, but
    /// the copy of a MSG still waiting for acks is never dropped: a receiver
    /// asking for it must get it, not a "lost" answer while the sender is
    /// still retransmitting it.
    pub fn remember(&mut self, id: u32, msg: Arc<wire::Message>, audience: BTreeSet<Name>) {
        if self.history.len() >= HISTORY
            && let Some(pos) = self
                .history
                .iter()
                .position(|s| !self.pending.contains_key(&s.id))
        {
            self.history.remove(pos);
        }
        self.history.push_back(Sent { id, msg, audience });
    }

    /// Waits for acks of `id` from `waiting`, retransmitting on `retry`.
    pub fn expect_acks(
        &mut self,
        id: u32,
        msg: Arc<wire::Message>,
        waiting: BTreeSet<Name>,
        retry: Retry,
    ) {
        if !waiting.is_empty() {
            self.pending.insert(
                id,
                Pending {
                    msg,
                    waiting,
                    retry,
                },
            );
        }
    }

    /// An ack (or RTX_REQUEST, which counts as one) of `id` from `from`.
    /// Returns true when it was expected.
    pub fn on_ack(&mut self, id: u32, from: &Name) -> bool {
        let Some(p) = self.pending.get_mut(&id) else {
            return false;
        };
        let was = p.waiting.remove(from);
        if p.waiting.is_empty() {
            self.pending.remove(&id);
        }
        was
    }

    /// Stops expecting anything from `name` (it left or was removed).
    pub fn forget_endpoint(&mut self, name: &Name) {
        self.pending.retain(|_, p| {
            p.waiting.remove(name);
            !p.waiting.is_empty()
        });
    }

    /// The historic copy of sequenced MSG `id`, with its audience.
    pub fn lookup(&self, id: u32) -> Option<(&wire::Message, &BTreeSet<Name>)> {
        self.history
            .iter()
            .rev()
            .find(|s| s.id == id)
            .map(|s| (&*s.msg, &s.audience))
    }

    /// True when nothing waits for an ack.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Sent messages still waiting for acks.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.retry.next).min()
    }

    /// Everything due at `now`, in id order for determinism.
    pub fn on_timeout(&mut self, now: Instant) -> Vec<SendAction> {
        let mut ids: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| p.retry.next <= now)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let mut out = Vec::new();
        for id in ids {
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            match p.retry.fire(now) {
                Some(Fire::Resend) => out.push(SendAction::Resend {
                    msg: Box::new(wire::Message::clone(&p.msg)),
                    to: p.waiting.iter().cloned().collect(),
                }),
                Some(Fire::GiveUp) => {
                    if let Some(p) = self.pending.remove(&id) {
                        out.push(SendAction::Failed {
                            message_id: id,
                            missing: p.waiting.into_iter().collect(),
                        });
                    }
                }
                None => {}
            }
        }
        out
    }
}

/// What a slot of the reorder buffer holds.
#[derive(Debug)]
pub enum Slot<T> {
    /// A message to deliver.
    Deliver(T),
    /// Sequenced but not for us (a unicast to another member).
    Skip,
    /// Not for us because it was sent before we joined: while probing for
    /// where the stream starts, this is the boundary.
    BeforeJoin,
    /// Recovery failed: report it lost.
    Lost,
}

/// Why [`Stream::accept`] refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Duplicate,
    OutOfRange,
}

/// The reorder buffer of one source: in-order delivery, gap detection.
///
/// Where the stream starts: in a fresh P2P session, or at a group moderator,
/// every sender's stream starts at id 1 ([`Stream::starting_at`]). A group
/// member that joined later cannot know which id is its first, and SLIM's
/// "first id seen starts the stream" would silently skip an earlier id that
/// merely arrived second. Such a stream therefore *probes* ([`Stream::probing`]):
/// it holds what arrives and asks the sender (RTX_REQUEST) for the id just
/// below the lowest one seen, going down until the sender answers "not
/// addressed to you" (our senders mark such RTX_REPLYs), "lost", or id 1 is
/// reached, or the probe times out. Then it starts at the lowest id that was
/// ours. An id that still turns up below the start later was meant for us
/// (it reached us): it is delivered late, once, rather than dropped.
#[derive(Debug)]
pub struct Stream<T> {
    next: Option<u32>,
    start: Option<u32>,
    probing: bool,
    probe: Option<(u32, Retry)>,
    held: HashMap<u32, Slot<T>>,
    missing: HashMap<u32, Retry>,
    late_seen: VecDeque<u32>,
    /// `incoming_conn` of the last MSG from this source (RTX_REQUEST path).
    pub last_conn: Option<u64>,
}

/// Result of accepting one message or of a timeout: slots now in order
/// (or late), and ids to request with RTX_REQUEST.
pub struct Accepted<T> {
    pub ready: Vec<(u32, Slot<T>)>,
    pub request: Vec<u32>,
}

impl<T> Accepted<T> {
    fn empty() -> Self {
        Self {
            ready: Vec::new(),
            request: Vec::new(),
        }
    }
}

fn prev_seq(id: u32) -> u32 {
    if id == 0 { MAX_PUBLISH_ID } else { id - 1 }
}

impl<T> Stream<T> {
    fn with(next: Option<u32>, probing: bool) -> Self {
        Self {
            next,
            start: next,
            probing,
            probe: None,
            held: HashMap::new(),
            missing: HashMap::new(),
            late_seen: VecDeque::new(),
            last_conn: None,
        }
    }

    /// A stream known to start at `id`.
    pub fn starting_at(id: u32) -> Self {
        Self::with(Some(id), false)
    }

    /// A stream whose start is found by probing (see the type docs).
    pub fn probing() -> Self {
        Self::with(None, true)
    }

    /// True when `id` was already received (held, delivered, or reported).
    pub fn is_duplicate(&self, id: u32) -> bool {
        if self.held.contains_key(&id) {
            return true;
        }
        if self.probing {
            return false;
        }
        let (Some(next), Some(start)) = (self.next, self.start) else {
            return false;
        };
        if seq_diff(id, next) >= 0 {
            return false;
        }
        let before_start = seq_diff(id, start);
        !(-REORDER_WINDOW..0).contains(&before_start) || self.late_seen.contains(&id)
    }

    /// Accepts sequenced message `id`. `retry` builds the RTX timer of each
    /// id to request.
    pub fn accept(
        &mut self,
        id: u32,
        slot: Slot<T>,
        retry: impl Fn() -> Retry,
    ) -> Result<Accepted<T>, Refused> {
        if id > MAX_PUBLISH_ID {
            return Err(Refused::OutOfRange);
        }
        if self.held.contains_key(&id) {
            return Err(Refused::Duplicate);
        }
        if self.probing {
            return self.accept_probing(id, slot, retry);
        }
        // Once the start is known, "before we joined" is just "not ours".
        let slot = match slot {
            Slot::BeforeJoin => Slot::Skip,
            other => other,
        };
        let next = *self.next.get_or_insert(id);
        let start = *self.start.get_or_insert(id);
        let d = seq_diff(id, next);
        if d > REORDER_WINDOW {
            return Err(Refused::OutOfRange);
        }
        if d < 0 {
            let before_start = seq_diff(id, start);
            if (-REORDER_WINDOW..0).contains(&before_start)
                && !self.late_seen.contains(&id)
                && !matches!(slot, Slot::Skip)
            {
                if self.late_seen.len() == HISTORY {
                    self.late_seen.pop_front();
                }
                self.late_seen.push_back(id);
                return Ok(Accepted {
                    ready: vec![(id, slot)],
                    request: Vec::new(),
                });
            }
            return Err(Refused::Duplicate);
        }
        self.missing.remove(&id);
        self.held.insert(id, slot);
        Ok(Accepted {
            request: self.find_gaps(id, &retry),
            ready: self.drain(),
        })
    }

    fn accept_probing(
        &mut self,
        id: u32,
        slot: Slot<T>,
        retry: impl Fn() -> Retry,
    ) -> Result<Accepted<T>, Refused> {
        let Some(n) = self.next else {
            self.next = Some(id);
            self.held.insert(id, slot);
            return Ok(self.probe_below(id, &retry));
        };
        let d = seq_diff(id, n);
        if d.abs() > REORDER_WINDOW {
            return Err(Refused::OutOfRange);
        }
        if d >= 0 {
            self.missing.remove(&id);
            self.held.insert(id, slot);
            return Ok(Accepted {
                ready: Vec::new(),
                request: self.find_gaps(id, &retry),
            });
        }
        if matches!(slot, Slot::BeforeJoin) && self.probe.as_ref().is_some_and(|(p, _)| *p == id) {
            // Sent before we joined, just below our lowest id: the boundary.
            return Ok(self.confirm_start());
        }
        // Anything else below (ours, or a unicast to another member, whose
        // place it keeps): the stream goes on down.
        let slot = match slot {
            Slot::BeforeJoin => Slot::Skip,
            other => other,
        };
        // A lower id reached us, so it was ours: extend the stream down.
        self.held.insert(id, slot);
        self.next = Some(id);
        let mut request = self.find_gaps(n, &retry);
        let below = self.probe_below(id, &retry);
        request.extend(below.request);
        Ok(Accepted {
            ready: below.ready,
            request,
        })
    }

    /// Probes the id below `id`, or confirms the start when there is none.
    fn probe_below(&mut self, id: u32, retry: &impl Fn() -> Retry) -> Accepted<T> {
        if id == 1 {
            return self.confirm_start();
        }
        let p = prev_seq(id);
        self.probe = Some((p, retry()));
        Accepted {
            ready: Vec::new(),
            request: vec![p],
        }
    }

    fn confirm_start(&mut self) -> Accepted<T> {
        self.probing = false;
        self.probe = None;
        self.start = self.next;
        Accepted {
            ready: self.drain(),
            request: Vec::new(),
        }
    }

    /// Registers every id between `next` and `upto` not yet held or missing.
    fn find_gaps(&mut self, upto: u32, retry: &impl Fn() -> Retry) -> Vec<u32> {
        let mut newly = Vec::new();
        let Some(mut k) = self.next else {
            return newly;
        };
        while k != upto {
            if !self.held.contains_key(&k) && !self.missing.contains_key(&k) {
                self.missing.insert(k, retry());
                newly.push(k);
            }
            k = next_seq(k);
        }
        newly
    }

    /// The sender says `id` is no longer available: lost, reported in order
    /// (or, for a probe, the stream's start was found).
    pub fn mark_lost(&mut self, id: u32) -> Vec<(u32, Slot<T>)> {
        if self.probing && self.probe.as_ref().is_some_and(|(p, _)| *p == id) {
            return self.confirm_start().ready;
        }
        if self.missing.remove(&id).is_some() {
            self.held.insert(id, Slot::Lost);
        }
        if self.probing {
            return Vec::new();
        }
        self.drain()
    }

    fn drain(&mut self) -> Vec<(u32, Slot<T>)> {
        let mut out = Vec::new();
        let Some(mut next) = self.next else {
            return out;
        };
        while let Some(slot) = self.held.remove(&next) {
            out.push((next, slot));
            next = next_seq(next);
        }
        self.next = Some(next);
        out
    }

    /// The session is closing: delivers everything held, in order, with
    /// every id still missing before the highest one reported lost.
    pub fn flush(&mut self) -> Vec<(u32, Slot<T>)> {
        self.probing = false;
        self.probe = None;
        self.missing.clear();
        let mut out = Vec::new();
        let Some(mut next) = self.next else {
            return out;
        };
        while !self.held.is_empty() {
            let slot = self.held.remove(&next).unwrap_or(Slot::Lost);
            out.push((next, slot));
            next = next_seq(next);
        }
        self.next = Some(next);
        out
    }

    pub fn deadline(&self) -> Option<Instant> {
        let rtx = self.missing.values().map(|r| r.next).min();
        let probe = self.probe.as_ref().map(|(_, r)| r.next);
        [rtx, probe].into_iter().flatten().min()
    }

    /// Runs the probe and RTX timers due at `now`.
    pub fn on_timeout(&mut self, now: Instant) -> Accepted<T> {
        let mut out = Accepted::empty();
        if let Some((id, retry)) = self.probe.as_mut() {
            match retry.fire(now) {
                Some(Fire::Resend) => out.request.push(*id),
                Some(Fire::GiveUp) => out.ready = self.confirm_start().ready,
                None => {}
            }
        }
        let mut again = Vec::new();
        let mut gave_up = Vec::new();
        for (id, r) in self.missing.iter_mut() {
            match r.fire(now) {
                Some(Fire::Resend) => again.push(*id),
                Some(Fire::GiveUp) => gave_up.push(*id),
                None => {}
            }
        }
        again.sort_unstable();
        gave_up.sort_unstable();
        for id in gave_up {
            let ready = self.mark_lost(id);
            out.ready.extend(ready);
        }
        out.request.extend(again);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unacked_msg_stays_available_for_rtx_past_the_history_bound() {
        let peer = Name::new("org", "ns", "peer").with_id(1);
        let audience = BTreeSet::from([peer.clone()]);
        let mut sender = Sender::new();
        let msg = Arc::new(wire::Message::default());
        let first = sender.take_id();
        sender.remember(first, msg.clone(), audience.clone());
        sender.expect_acks(first, msg.clone(), audience.clone(), retry());
        for _ in 0..(HISTORY * 2) {
            let id = sender.take_id();
            sender.remember(id, msg.clone(), audience.clone());
            sender.expect_acks(id, msg.clone(), audience.clone(), retry());
            assert!(sender.on_ack(id, &peer));
        }
        assert!(sender.lookup(first).is_some(), "unacked copy kept");
        assert!(sender.lookup(first + 1).is_none(), "acked copies age out");
        assert!(sender.history.len() <= HISTORY + 1);
        assert!(sender.on_ack(first, &peer));
    }

    #[test]
    fn ids_wrap_from_max_publish_id_to_zero() {
        assert_eq!(next_seq(1), 2);
        assert_eq!(next_seq(MAX_PUBLISH_ID), 0);
        assert_eq!(seq_diff(0, MAX_PUBLISH_ID), 1);
        assert_eq!(seq_diff(MAX_PUBLISH_ID, 0), -1);
        assert_eq!(seq_diff(5, 3), 2);
        assert_eq!(seq_diff(3, 5), -2);
    }

    #[test]
    fn retry_sends_n_plus_one_times_then_gives_up() {
        let t0 = Instant::now();
        let mut r = Retry::new(t0, Duration::from_secs(1), 3);
        assert_eq!(r.fire(t0), None);
        let mut resends = 0;
        let mut t = t0;
        loop {
            t += Duration::from_secs(1);
            match r.fire(t) {
                Some(Fire::Resend) => resends += 1,
                Some(Fire::GiveUp) => break,
                None => panic!("timer not due at its deadline"),
            }
        }
        assert_eq!(resends, 3);
        assert_eq!(t - t0, Duration::from_secs(4));
    }

    fn retry() -> Retry {
        Retry::new(Instant::now(), Duration::from_secs(1), 2)
    }

    fn ids(v: Vec<(u32, Slot<u32>)>) -> Vec<u32> {
        v.into_iter().map(|(id, _)| id).collect()
    }

    #[test]
    fn stream_orders_across_the_wrap_and_reports_gaps() {
        let mut s: Stream<u32> = Stream::starting_at(MAX_PUBLISH_ID - 1);
        let a = s
            .accept(MAX_PUBLISH_ID - 1, Slot::Deliver(0), retry)
            .unwrap();
        assert_eq!(ids(a.ready), vec![MAX_PUBLISH_ID - 1]);
        let a = s.accept(1, Slot::Deliver(0), retry).unwrap();
        assert!(a.ready.is_empty());
        assert_eq!(a.request, vec![MAX_PUBLISH_ID, 0]);
        let a = s.accept(0, Slot::Deliver(0), retry).unwrap();
        assert!(a.ready.is_empty());
        let ready = s.mark_lost(MAX_PUBLISH_ID);
        assert_eq!(ids(ready), vec![MAX_PUBLISH_ID, 0, 1]);
        assert_eq!(
            s.accept(0, Slot::Deliver(0), retry).err(),
            Some(Refused::Duplicate)
        );
    }

    #[test]
    fn probing_stream_extends_down_to_the_boundary_and_delivers_late_ids_once() {
        let mut s: Stream<u32> = Stream::probing();
        let a = s.accept(7, Slot::Deliver(7), retry).unwrap();
        assert!(a.ready.is_empty());
        assert_eq!(a.request, vec![6], "probe below the first id");
        let a = s.accept(9, Slot::Deliver(9), retry).unwrap();
        assert!(a.ready.is_empty());
        assert_eq!(a.request, vec![8]);
        // 6 was ours (its payload came back): go on probing 5.
        let a = s.accept(6, Slot::Deliver(6), retry).unwrap();
        assert!(a.ready.is_empty());
        assert_eq!(a.request, vec![5]);
        // 5 was not addressed to us: the stream starts at 6.
        let a = s.accept(5, Slot::BeforeJoin, retry).unwrap();
        assert_eq!(ids(a.ready), vec![6, 7]);
        assert_eq!(
            ids(s.accept(8, Slot::Deliver(8), retry).unwrap().ready),
            vec![8, 9]
        );
        // An id below the start that reaches us anyway: delivered once, late.
        assert_eq!(
            ids(s.accept(4, Slot::Deliver(4), retry).unwrap().ready),
            vec![4]
        );
        assert_eq!(
            s.accept(4, Slot::Deliver(4), retry).err(),
            Some(Refused::Duplicate)
        );
    }

    /// A participant whose first MSG from a sender follows a unicast to
    /// another member, with an earlier broadcast lost, keeps probing below
    /// the unicast ([`Slot::Skip`]) instead of starting there, so the lost
    /// broadcast is delivered in order.
    #[test]
    fn a_unicast_to_another_member_below_the_first_id_seen_is_not_taken_for_the_start() {
        // In delivery order, the ids handed to the app (not the skipped).
        let delivered_ids = |v: Vec<(u32, Slot<u32>)>| -> Vec<u32> {
            v.into_iter()
                .filter(|(_, slot)| matches!(slot, Slot::Deliver(_)))
                .map(|(id, _)| id)
                .collect()
        };
        let mut s: Stream<u32> = Stream::probing();
        let mut delivered = Vec::new();
        // 2 (ours) is lost, 3 went to another member, 4 arrives first.
        let a = s.accept(4, Slot::Deliver(4), retry).unwrap();
        assert_eq!(a.request, vec![3]);
        delivered.extend(delivered_ids(a.ready));
        delivered.extend(delivered_ids(s.accept(3, Slot::Skip, retry).unwrap().ready));
        // The sender retransmits 2 (ours) until we acknowledge it; 3 did not
        // end the probe, so it goes on below 2.
        let a = s.accept(2, Slot::Deliver(2), retry).unwrap();
        assert_eq!(a.request, vec![1]);
        delivered.extend(delivered_ids(a.ready));
        // 1 was sent before we joined: the stream starts at 2.
        delivered.extend(delivered_ids(
            s.accept(1, Slot::BeforeJoin, retry).unwrap().ready,
        ));
        assert_eq!(delivered, vec![2, 4]);
    }

    #[test]
    fn probing_stops_at_id_one_and_on_a_lost_answer() {
        let mut s: Stream<u32> = Stream::probing();
        assert_eq!(
            ids(s.accept(1, Slot::Deliver(1), retry).unwrap().ready),
            vec![1]
        );
        let mut s: Stream<u32> = Stream::probing();
        s.accept(3, Slot::Deliver(3), retry).unwrap();
        assert_eq!(ids(s.mark_lost(2)), vec![3]);
    }

    #[test]
    fn flush_reports_gaps_lost_and_delivers_the_rest_in_order() {
        let mut s: Stream<u32> = Stream::starting_at(1);
        s.accept(1, Slot::Deliver(1), retry).unwrap();
        s.accept(3, Slot::Deliver(3), retry).unwrap();
        let flushed: Vec<(u32, bool)> = s
            .flush()
            .into_iter()
            .map(|(id, slot)| (id, matches!(slot, Slot::Lost)))
            .collect();
        assert_eq!(flushed, vec![(2, true), (3, false)]);
    }

    #[test]
    fn stream_refuses_ids_far_ahead_or_outside_the_space() {
        let mut s: Stream<u32> = Stream::starting_at(10);
        s.accept(10, Slot::Deliver(0), retry).unwrap();
        assert_eq!(
            s.accept(10 + 5000, Slot::Deliver(0), retry).err(),
            Some(Refused::OutOfRange)
        );
        assert_eq!(
            s.accept(MAX_PUBLISH_ID + 7, Slot::Deliver(0), retry).err(),
            Some(Refused::OutOfRange)
        );
    }
}
