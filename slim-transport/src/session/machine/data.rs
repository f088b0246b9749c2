//! The data path of a session on top of `reliable.rs`: sequencing outbound
//! MSGs through the send window, acks and retransmission (the [`Sender`]),
//! per-source ordering and gap repair on the receiving side (the
//! [`Stream`]s), PUBLISH_TO duplicate removal, and delivery to the app.
//!
//! [`Data`] owns that state and answers questions about it; the
//! `impl Session` block is the facade's side (sealing with the group's
//! crypto, stamping and queueing what is sent, emitting what is delivered).
//! Nothing here reads a clock: retries start from the `now` handed in.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::Name;
use crate::wire::SessionMessageType as Kind;

use super::super::packet::{self, Inbound, MAX_PUBLISH_ID, TRUE, app_content, keys};
use super::super::reliable::{Refused, Retry, SendAction, Sender, Slot, Stream};
use super::super::{
    DropReason, Event, ReceivedMessage, SEND_WINDOW, SessionError, SessionEvent, SessionKind,
};
use super::Session;

/// How many PUBLISH_TO ids per source are remembered for duplicate removal.
const PUBLISH_TO_MEMORY: usize = 1024;

/// At most this many MSGs of one sender in a row are left undecrypted by
/// the session's [`InboundFilter`](super::super::InboundFilter); the next
/// one is decrypted (and delivered, for the application to discard). A
/// receiver's MLS ratchet for a sender moves one generation per message,
/// and a message more than the ratchet window ahead of the last one
/// decrypted (1024 generations, `crate::mls::SENDER_RATCHET_WINDOW`) no
/// longer decrypts: without this bound, a long run of skipped frames (a
/// stream whose caller stopped reading) would make every later frame of
/// that sender fail.
pub(crate) const MAX_UNDECRYPTED_IN_A_ROW: u32 = 256;

/// A sequenced publish held back by the send window.
#[derive(Debug)]
pub(super) struct Queued {
    pub(super) dst: Name,
    pub(super) fanout: u32,
    pub(super) payload: Vec<u8>,
    pub(super) metadata: HashMap<String, String>,
    pub(super) ack_from: Vec<Name>,
}

/// PUBLISH_TO ids already delivered, per source, the newest
/// [`PUBLISH_TO_MEMORY`] of each.
#[derive(Debug, Default)]
struct PublishToSeen {
    by_source: HashMap<Name, VecDeque<u32>>,
}

impl PublishToSeen {
    fn contains(&self, source: &Name, id: u32) -> bool {
        self.by_source
            .get(source)
            .is_some_and(|seen| seen.contains(&id))
    }

    /// Remembers `id` from `source`; false when it was already there.
    fn insert(&mut self, source: &Name, id: u32) -> bool {
        let seen = self.by_source.entry(source.clone()).or_default();
        if seen.contains(&id) {
            return false;
        }
        if seen.len() == PUBLISH_TO_MEMORY {
            seen.pop_front();
        }
        seen.push_back(id);
        true
    }
}

/// Messages a stream releases, in order: `(message id, slot)`.
pub(super) type Ready = Vec<(u32, Slot<ReceivedMessage>)>;

/// The data-path state of a session.
#[derive(Debug)]
pub(super) struct Data {
    /// Interval and retries of acks, RTX and ordering; `None` = MSGs are
    /// sent once and delivered as they come.
    reliability: Option<(Duration, u32)>,
    pub(super) sender: Sender,
    pub(super) streams: HashMap<Name, Stream<ReceivedMessage>>,
    publish_to_seen: PublishToSeen,
    /// Sequenced publishes waiting for room in the send window.
    windowed: VecDeque<Queued>,
    /// Per sender, how many of its MSGs in a row the filter kept from
    /// decryption (see [`MAX_UNDECRYPTED_IN_A_ROW`]).
    undecrypted: HashMap<Name, u32>,
}

impl Data {
    pub(super) fn new(reliability: Option<(Duration, u32)>) -> Self {
        Self {
            reliability,
            sender: Sender::new(),
            streams: HashMap::new(),
            publish_to_seen: PublishToSeen::default(),
            windowed: VecDeque::new(),
            undecrypted: HashMap::new(),
        }
    }

    /// The filter wants a MSG of `source` left undecrypted: true when it
    /// may be, false when it is the one after [`MAX_UNDECRYPTED_IN_A_ROW`]
    /// undecrypted ones and must be decrypted anyway.
    fn may_leave_undecrypted(&mut self, source: &Name) -> bool {
        let run = self.undecrypted.entry(source.clone()).or_default();
        if *run >= MAX_UNDECRYPTED_IN_A_ROW {
            *run = 0;
            return false;
        }
        *run += 1;
        true
    }

    /// A MSG of `source` was decrypted: its receiver ratchet is current.
    fn decrypted(&mut self, source: &Name) {
        if let Some(run) = self.undecrypted.get_mut(source) {
            *run = 0;
        }
    }

    pub(super) fn reliability(&self) -> Option<(Duration, u32)> {
        self.reliability
    }

    pub(super) fn is_reliable(&self) -> bool {
        self.reliability.is_some()
    }

    /// A fresh retransmission timer started at `now` (reliable only).
    pub(super) fn retry(&self, now: Instant) -> Option<Retry> {
        self.reliability.map(|(i, r)| Retry::new(now, i, r))
    }

    /// Nothing sent waits for an ack, nothing waits for the window.
    pub(super) fn all_acked(&self) -> bool {
        self.sender.is_idle() && self.windowed.is_empty()
    }

    /// The earliest retransmission or gap-repair deadline.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let streams = self.streams.values().filter_map(|s| s.deadline()).min();
        [self.sender.deadline(), streams]
            .into_iter()
            .flatten()
            .min()
    }

    /// Queues `q` behind the send window when it has to wait: the window
    /// is full or earlier publishes still wait (order is kept). Hands it
    /// back when it may go now.
    pub(super) fn hold_if_full(&mut self, q: Queued) -> Option<Queued> {
        if self.is_reliable()
            && (!self.windowed.is_empty() || self.sender.in_flight() >= SEND_WINDOW)
        {
            self.windowed.push_back(q);
            return None;
        }
        Some(q)
    }

    /// The oldest held publish, when the window has room for it.
    pub(super) fn next_released(&mut self) -> Option<Queued> {
        if self.sender.in_flight() < SEND_WINDOW {
            self.windowed.pop_front()
        } else {
            None
        }
    }

    /// Already delivered: a PUBLISH_TO id seen before, or a sequenced id
    /// its stream already has.
    pub(super) fn is_duplicate(&self, source: &Name, id: u32, publish_to: bool) -> bool {
        if publish_to {
            self.publish_to_seen.contains(source, id)
        } else {
            self.is_reliable() && self.streams.get(source).is_some_and(|s| s.is_duplicate(id))
        }
    }

    /// Remembers PUBLISH_TO `id` from `source`; false when already seen.
    pub(super) fn remember_publish_to(&mut self, source: &Name, id: u32) -> bool {
        self.publish_to_seen.insert(source, id)
    }

    /// The receiving stream of `source`: a stream a moderator or a P2P
    /// peer sees starts at id 1; a late group joiner probes for its start.
    pub(super) fn stream(
        &mut self,
        source: &Name,
        fresh_start: bool,
    ) -> &mut Stream<ReceivedMessage> {
        self.streams.entry(source.clone()).or_insert_with(|| {
            if fresh_start {
                Stream::starting_at(1)
            } else {
                Stream::probing()
            }
        })
    }

    /// Sources whose gap-repair timers are due, in name order.
    pub(super) fn due_sources(&self, now: Instant) -> Vec<Name> {
        let mut sources: Vec<Name> = self
            .streams
            .iter()
            .filter(|(_, s)| s.deadline().is_some_and(|d| d <= now))
            .map(|(n, _)| n.clone())
            .collect();
        sources.sort();
        sources
    }

    /// Closing: everything each stream still holds, in name order (gaps
    /// reported lost); publishes still waiting for the window are dropped.
    pub(super) fn flush(&mut self) -> Vec<(Name, Ready)> {
        self.windowed.clear();
        let mut sources: Vec<Name> = self.streams.keys().cloned().collect();
        sources.sort();
        sources
            .into_iter()
            .filter_map(|s| {
                let ready = self.streams.get_mut(&s)?.flush();
                Some((s, ready))
            })
            .collect()
    }
}

// The facade's side of the data path.
impl Session {
    pub(super) fn send_sequenced(
        &mut self,
        dst: &Name,
        fanout: u32,
        payload: Vec<u8>,
        metadata: HashMap<String, String>,
        ack_from: Vec<Name>,
    ) -> Result<(), SessionError> {
        let q = Queued {
            dst: dst.clone(),
            fanout,
            payload,
            metadata,
            ack_from,
        };
        match self.data.hold_if_full(q) {
            Some(q) => self.transmit_sequenced(&q.dst, q.fanout, q.payload, q.metadata, q.ack_from),
            None => Ok(()),
        }
    }

    /// Sends what the send window has room for, oldest first.
    pub(super) fn release_window(&mut self) {
        while let Some(q) = self.data.next_released() {
            // Members may have left while it waited.
            let ack_from: Vec<Name> = q
                .ack_from
                .into_iter()
                .filter(|n| self.members.contains(n))
                .collect();
            if let Err(e) =
                self.transmit_sequenced(&q.dst, q.fanout, q.payload, q.metadata, ack_from)
            {
                warn!(session_id = self.id, error = %e, "windowed publish failed");
            }
        }
    }

    pub(super) fn transmit_sequenced(
        &mut self,
        dst: &Name,
        fanout: u32,
        payload: Vec<u8>,
        metadata: HashMap<String, String>,
        ack_from: Vec<Name>,
    ) -> Result<(), SessionError> {
        let id = self.data.sender.take_id();
        let msg = self.sealed_msg(dst, fanout, id, &payload, metadata)?;
        if let Some(retry) = self.data_retry() {
            let audience: BTreeSet<Name> = ack_from.into_iter().collect();
            // One copy kept for both acks and RTX; `msg` itself goes out.
            let kept = Arc::new(msg.clone());
            self.data
                .sender
                .remember(id, kept.clone(), audience.clone());
            self.data.sender.expect_acks(id, kept, audience, retry);
        }
        self.send(msg);
        Ok(())
    }

    pub(super) fn on_data(&mut self, inb: Inbound, rtx: bool) {
        let reliable = self.data.is_reliable();
        if rtx && !reliable {
            return self.drop_msg(DropReason::Unexpected);
        }
        let source = inb.source.clone();
        if rtx && inb.error.is_some() {
            let Some(stream) = self.data.streams.get_mut(&source) else {
                return self.drop_msg(DropReason::Unexpected);
            };
            let ready = stream.mark_lost(inb.message_id);
            return self.deliver_ready(&source, ready);
        }
        let Some(payload) = inb.app_payload() else {
            return self.drop_msg(DropReason::Malformed);
        };
        let publish_to = self.kind == SessionKind::Group && inb.flag(keys::PUBLISH_TO);
        if publish_to == (inb.message_id <= MAX_PUBLISH_ID) && !rtx {
            // PUBLISH_TO ids live above the sequenced space, MSG ids in it.
            return self.drop_msg(DropReason::OutOfRange);
        }
        // Not ours: a unicast to another member, or (an RTX_REPLY marked
        // not addressed, without the unicast mark) sent before we joined.
        let not_ours = if rtx {
            inb.metadata.contains_key(keys::NOT_ADDRESSED).then(|| {
                if inb.metadata.contains_key(keys::UNICAST_TO_OTHER) {
                    Slot::Skip
                } else {
                    Slot::BeforeJoin
                }
            })
        } else {
            (self.kind == SessionKind::Group
                && !inb.destination.has_null_id()
                && inb.destination != self.local)
                .then_some(Slot::Skip)
        };
        let skip = not_ours.is_some();
        // Duplicates are recognised before decryption and acknowledged again:
        // an MLS group cannot decrypt the same ciphertext twice, and a lost
        // ack must not turn into a failed send (§h.15).
        let duplicate = self.data.is_duplicate(&source, inb.message_id, publish_to);
        if duplicate {
            if reliable {
                self.send_msg_ack(&inb, publish_to);
            }
            return self.drop_msg(DropReason::Duplicate);
        }
        if self.receive_paused && reliable && !rtx && !skip {
            // Before the filter (which sees each id once) and before the ack.
            self.counters.refused_busy += 1;
            return;
        }
        // What the application would discard is not worth an MLS decryption,
        // up to a bound on how far the sender's ratchet may run ahead.
        let unneeded = !skip
            && self
                .filter
                .as_mut()
                .is_some_and(|f| f(&source, &inb.metadata))
            && self.data.may_leave_undecrypted(&source);
        if unneeded {
            self.counters.not_needed += 1;
        }
        let blob = if skip || unneeded {
            Vec::new()
        } else {
            match self.crypto.decrypt(&payload.blob, self.unix_secs()) {
                Ok(b) => {
                    self.data.decrypted(&source);
                    b
                }
                Err(_) => return self.drop_msg(DropReason::DecryptFailed),
            }
        };
        if reliable {
            // RTX_REPLYs are acked too (v1.3 does not): our senders wait for a
            // real ack; v1.3 senders ignore an ack they no longer wait for.
            self.send_msg_ack(&inb, publish_to);
        }
        // PUBLISH_TO stays: it tells the app a message is an answer (the
        // official apps read it to avoid answering answers).
        let mut metadata = inb.metadata;
        metadata.remove(keys::NOT_ADDRESSED);
        metadata.remove(keys::UNICAST_TO_OTHER);
        let msg = ReceivedMessage {
            source: source.clone(),
            payload: blob,
            metadata,
            peer_subject: inb.subject.clone(),
        };
        if publish_to {
            if !self.data.remember_publish_to(&source, inb.message_id) {
                return self.drop_msg(DropReason::Duplicate);
            }
            if unneeded {
                return;
            }
            return self.emit(SessionEvent::Message(msg));
        }
        let Some(retry) = self.data_retry() else {
            if unneeded {
                return;
            }
            return self.emit(SessionEvent::Message(msg));
        };
        let fresh_start = self.is_moderator() || self.kind == SessionKind::PointToPoint;
        let stream = self.data.stream(&source, fresh_start);
        // A member's messages arrive over the link that reaches it: answers
        // to it (PUBLISH_TO, unicast) go back the same way, as official
        // apps answer along the message's incoming connection.
        if let Some(conn) = inb.incoming_conn
            && stream.last_conn != Some(conn)
        {
            stream.last_conn = Some(conn);
            self.events.push_back(Event::Route {
                name: source.clone(),
                conn,
            });
        }
        let slot = match not_ours {
            Some(slot) => slot,
            None if unneeded => Slot::Skip,
            None => Slot::Deliver(msg),
        };
        match stream.accept(inb.message_id, slot, || retry) {
            Ok(acc) => {
                for id in acc.request {
                    self.send_rtx_request(&source, id);
                }
                self.deliver_ready(&source, acc.ready);
            }
            Err(Refused::Duplicate) => self.drop_msg(DropReason::Duplicate),
            Err(Refused::OutOfRange) => self.drop_msg(DropReason::OutOfRange),
        }
    }

    pub(super) fn send_msg_ack(&mut self, inb: &Inbound, publish_to: bool) {
        let mut meta = HashMap::new();
        if publish_to {
            meta.insert(keys::PUBLISH_TO.to_string(), TRUE.to_string());
        }
        let mut ack = self.out(
            &inb.source,
            1,
            Kind::MsgAck,
            inb.message_id,
            app_content("", Vec::new()),
            meta,
        );
        packet::set_forward_to(&mut ack, inb.incoming_conn);
        self.hold_ack(ack);
    }

    pub(super) fn deliver_ready(
        &mut self,
        source: &Name,
        ready: Vec<(u32, Slot<ReceivedMessage>)>,
    ) {
        for (id, slot) in ready {
            match slot {
                Slot::Deliver(m) => self.emit(SessionEvent::Message(m)),
                Slot::Skip | Slot::BeforeJoin => {}
                Slot::Lost => {
                    warn!(session_id = self.id, source = %source, message_id = id, "message lost");
                    self.emit(SessionEvent::MessageLost {
                        source: source.clone(),
                        message_id: id,
                    })
                }
            }
        }
    }

    pub(super) fn send_rtx_request(&mut self, source: &Name, id: u32) {
        let conn = self.data.streams.get(source).and_then(|s| s.last_conn);
        let mut req = self.out(
            source,
            1,
            Kind::RtxRequest,
            id,
            app_content("", Vec::new()),
            HashMap::new(),
        );
        packet::set_forward_to(&mut req, conn);
        self.send(req);
    }

    pub(super) fn on_rtx_request(&mut self, inb: &Inbound) {
        if !self.data.is_reliable() {
            return self.drop_msg(DropReason::Unexpected);
        }
        // Unlike v1.3, an RTX_REQUEST does not count as an ack: the requester
        // does not have the message yet, and a close right now would lose it.
        let reply = match self.data.sender.lookup(inb.message_id) {
            Some((orig, audience)) => {
                let mut m = orig.clone();
                if !audience.contains(&inb.source) {
                    m.metadata
                        .insert(keys::NOT_ADDRESSED.to_string(), TRUE.to_string());
                    if packet::is_addressed_to_one(&m) {
                        m.metadata
                            .insert(keys::UNICAST_TO_OTHER.to_string(), TRUE.to_string());
                    }
                }
                packet::set_kind(&mut m, Kind::RtxReply);
                packet::set_destination(&mut m, &inb.source);
                m
            }
            None => {
                let mut m = self.out(
                    &inb.source,
                    1,
                    Kind::RtxReply,
                    inb.message_id,
                    app_content("", Vec::new()),
                    HashMap::new(),
                );
                packet::set_lost(&mut m);
                m
            }
        };
        let mut reply = reply;
        packet::set_forward_to(&mut reply, inb.incoming_conn);
        self.send(reply);
    }

    pub(super) fn sender_timeouts(&mut self) {
        for action in self.data.sender.on_timeout(self.now) {
            match action {
                SendAction::Resend { msg, to } => {
                    let msg = *msg;
                    for name in to {
                        let mut m = msg.clone();
                        packet::set_destination(&mut m, &name);
                        self.send(m);
                    }
                }
                SendAction::Failed {
                    message_id,
                    missing,
                } => {
                    warn!(
                        session_id = self.id,
                        message_id,
                        ?missing,
                        "message send retry failed"
                    );
                    self.events.push_back(Event::PublishFailed {
                        message_id,
                        missing,
                    });
                }
            }
        }
    }

    pub(super) fn stream_timeouts(&mut self) {
        let now = self.now;
        for source in self.data.due_sources(now) {
            let Some(stream) = self.data.streams.get_mut(&source) else {
                continue;
            };
            let out = stream.on_timeout(now);
            for id in out.request {
                self.send_rtx_request(&source, id);
            }
            self.deliver_ready(&source, out.ready);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(100);

    fn name(app: &str) -> Name {
        Name::new("org", "ns", app).with_id(1)
    }

    fn publish(n: u8) -> Queued {
        Queued {
            dst: name("peer"),
            fanout: 1,
            payload: vec![n],
            metadata: HashMap::new(),
            ack_from: vec![name("peer")],
        }
    }

    fn msg(n: u8) -> ReceivedMessage {
        ReceivedMessage {
            source: name("peer"),
            payload: vec![n],
            metadata: HashMap::new(),
            peer_subject: None,
        }
    }

    /// What the facade does with a publish the window lets through.
    fn transmit(d: &mut Data, now: Instant) -> u32 {
        let id = d.sender.take_id();
        let audience = BTreeSet::from([name("peer")]);
        let retry = d.retry(now).expect("reliable");
        d.sender
            .expect_acks(id, Default::default(), audience, retry);
        id
    }

    fn delivered(ready: Vec<(u32, Slot<ReceivedMessage>)>) -> Vec<(u32, Option<u8>)> {
        ready
            .into_iter()
            .map(|(id, slot)| match slot {
                Slot::Deliver(m) => (id, m.payload.first().copied()),
                Slot::Skip | Slot::BeforeJoin | Slot::Lost => (id, None),
            })
            .collect()
    }

    #[test]
    fn publishes_beyond_the_send_window_wait_in_order_until_acks_free_room() {
        let t0 = Instant::now();
        let mut d = Data::new(Some((T, 3)));
        let mut ids = Vec::new();
        for _ in 0..SEND_WINDOW {
            let q = d.hold_if_full(publish(0));
            assert!(q.is_some(), "room in the window");
            ids.push(transmit(&mut d, t0));
        }
        assert!(d.hold_if_full(publish(1)).is_none());
        assert!(d.hold_if_full(publish(2)).is_none());
        assert!(d.next_released().is_none(), "window still full");
        assert!(!d.all_acked());
        assert!(d.sender.on_ack(ids[0], &name("peer")));
        let first = d.next_released().map(|q| q.payload);
        assert_eq!(first, Some(vec![1]));
        transmit(&mut d, t0);
        assert!(d.next_released().is_none(), "one ack, one release");
        assert!(d.sender.on_ack(ids[1], &name("peer")));
        assert_eq!(d.next_released().map(|q| q.payload), Some(vec![2]));
    }

    #[test]
    fn an_unreliable_session_never_holds_a_publish_back() {
        let mut d = Data::new(None);
        for _ in 0..(SEND_WINDOW + 2) {
            d.sender.take_id();
            assert!(d.hold_if_full(publish(0)).is_some());
        }
        assert!(d.retry(Instant::now()).is_none());
        assert!(!d.is_duplicate(&name("peer"), 1, false));
    }

    #[test]
    fn lost_ack_makes_the_msg_go_again_after_the_data_timeout_then_fail() {
        let t0 = Instant::now();
        let mut d = Data::new(Some((T, 2)));
        let id = transmit(&mut d, t0);
        assert_eq!(d.deadline(), Some(t0 + T));
        assert!(d.sender.on_timeout(t0 + T / 2).is_empty());
        let mut now = t0;
        let mut resent = 0;
        let missing = loop {
            now += T;
            match d.sender.on_timeout(now).pop() {
                Some(SendAction::Resend { to, .. }) => {
                    assert_eq!(to, vec![name("peer")]);
                    resent += 1;
                }
                Some(SendAction::Failed {
                    message_id,
                    missing,
                }) => {
                    assert_eq!(message_id, id);
                    break missing;
                }
                None => panic!("a due MSG must resend or fail"),
            }
        };
        assert_eq!((resent, missing), (2, vec![name("peer")]));
        assert!(d.all_acked());
    }

    #[test]
    fn reordered_msgs_are_delivered_in_order_and_duplicates_recognised() {
        let t0 = Instant::now();
        let mut d = Data::new(Some((T, 3)));
        let retry = || Retry::new(t0, T, 3);
        let peer = name("peer");
        let mut out = Vec::new();
        for id in [2u32, 3, 1] {
            let acc = d
                .stream(&peer, true)
                .accept(id, Slot::Deliver(msg(id as u8)), retry)
                .expect("in range");
            out.extend(delivered(acc.ready));
        }
        assert_eq!(out, vec![(1, Some(1)), (2, Some(2)), (3, Some(3))]);
        assert!(d.is_duplicate(&peer, 2, false));
        assert!(!d.is_duplicate(&peer, 4, false));
    }

    #[test]
    fn a_gap_that_never_fills_is_requested_again_then_reported_lost_in_order() {
        let t0 = Instant::now();
        let mut d = Data::new(Some((T, 2)));
        let retry = || Retry::new(t0, T, 2);
        let peer = name("peer");
        let acc = d
            .stream(&peer, true)
            .accept(1, Slot::Deliver(msg(1)), retry)
            .expect("in range");
        assert_eq!(delivered(acc.ready), vec![(1, Some(1))]);
        // 2 is lost on the way; 3 arrives and waits behind the gap.
        let acc = d
            .stream(&peer, true)
            .accept(3, Slot::Deliver(msg(3)), retry)
            .expect("in range");
        assert!(acc.ready.is_empty());
        let mut requested = acc.request;
        let mut now = t0;
        let mut out = Vec::new();
        while out.is_empty() {
            now += T;
            assert!(now < t0 + T * 10, "the gap must be given up");
            for source in d.due_sources(now) {
                let step = d.streams.get_mut(&source).expect("due").on_timeout(now);
                requested.extend(step.request);
                out.extend(delivered(step.ready));
            }
        }
        assert!(requested.contains(&2));
        assert_eq!(out, vec![(2, None), (3, Some(3))]);
    }

    #[test]
    fn publish_to_ids_are_remembered_per_source_up_to_the_memory_bound() {
        let mut d = Data::new(Some((T, 1)));
        let (a, b) = (name("a"), name("b"));
        assert!(d.remember_publish_to(&a, 7));
        assert!(!d.remember_publish_to(&a, 7));
        assert!(d.is_duplicate(&a, 7, true));
        assert!(!d.is_duplicate(&b, 7, true), "per source");
        for id in 0..PUBLISH_TO_MEMORY as u32 {
            d.remember_publish_to(&a, 1000 + id);
        }
        assert!(!d.is_duplicate(&a, 7, true), "the oldest is forgotten");
    }

    #[test]
    fn closing_flushes_every_stream_in_name_order_and_drops_held_publishes() {
        let t0 = Instant::now();
        let mut d = Data::new(Some((T, 3)));
        let retry = || Retry::new(t0, T, 3);
        for app in ["b", "a"] {
            let source = name(app);
            let acc = d
                .stream(&source, true)
                .accept(2, Slot::Deliver(msg(2)), retry)
                .expect("in range");
            assert!(acc.ready.is_empty());
        }
        for _ in 0..SEND_WINDOW {
            transmit(&mut d, t0);
        }
        assert!(d.hold_if_full(publish(9)).is_none());
        type Delivered = Vec<(u32, Option<u8>)>;
        let flushed: Vec<(Name, Delivered)> = d
            .flush()
            .into_iter()
            .map(|(n, r)| (n, delivered(r)))
            .collect();
        let order: Vec<Name> = flushed.iter().map(|(n, _)| n.clone()).collect();
        let mut sorted = vec![name("a"), name("b")];
        sorted.sort();
        assert_eq!(order, sorted);
        assert!(flushed.iter().all(|(_, r)| r.last() == Some(&(2, Some(2)))));
        assert!(d.next_released().is_none());
    }
}
