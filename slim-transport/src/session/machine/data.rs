//! The data path of a session on top of `reliable.rs`: sequencing outbound
//! MSGs through the send window, acks and retransmission (the [`Sender`]),
//! per-source ordering and gap repair on the receiving side (the
//! [`Stream`]s), PUBLISH_TO duplicate removal, and delivery to the app.
//!
//! [`Data`] owns that state and answers questions about it; the
//! `impl Session` block is the facade's side (sealing with the group's
//! crypto, stamping and queueing what is sent, emitting what is delivered).
//! Nothing here reads a clock: retries start from the `now` handed in.

use std::collections::{BTreeSet, HashMap};

use tracing::warn;

use crate::Name;
use crate::wire::SessionMessageType as Kind;

use super::super::packet::{self, Inbound, MAX_PUBLISH_ID, TRUE, app_content, keys};
use super::super::reliable::{Refused, SendAction, Slot, Stream};
use super::super::{
    DropReason, Event, ReceivedMessage, SEND_WINDOW, SessionError, SessionEvent, SessionKind,
};
use super::Session;

/// How many PUBLISH_TO ids per source are remembered for duplicate removal.
const PUBLISH_TO_MEMORY: usize = 1024;

/// A sequenced publish held back by the send window.
#[derive(Debug)]
pub(super) struct Queued {
    pub(super) dst: Name,
    pub(super) fanout: u32,
    pub(super) payload: Vec<u8>,
    pub(super) metadata: HashMap<String, String>,
    pub(super) ack_from: Vec<Name>,
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
        if self.data_retry().is_some()
            && (!self.windowed.is_empty() || self.sender.in_flight() >= SEND_WINDOW)
        {
            self.windowed.push_back(Queued {
                dst: dst.clone(),
                fanout,
                payload,
                metadata,
                ack_from,
            });
            return Ok(());
        }
        self.transmit_sequenced(dst, fanout, payload, metadata, ack_from)
    }

    /// Sends what the send window has room for, oldest first.
    pub(super) fn release_window(&mut self) {
        while self.sender.in_flight() < SEND_WINDOW
            && let Some(q) = self.windowed.pop_front()
        {
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
        let id = self.sender.take_id();
        let msg = self.sealed_msg(dst, fanout, id, &payload, metadata)?;
        if let Some(retry) = self.data_retry() {
            let audience: BTreeSet<Name> = ack_from.into_iter().collect();
            self.sender.remember(id, &msg, audience.clone());
            self.sender.expect_acks(id, msg.clone(), audience, retry);
        }
        self.send(msg);
        Ok(())
    }

    pub(super) fn on_data(&mut self, inb: Inbound, rtx: bool) {
        let reliable = self.data_timer.is_some();
        if rtx && !reliable {
            return self.drop_msg(DropReason::Unexpected);
        }
        let source = inb.source.clone();
        if rtx && inb.error.is_some() {
            let Some(stream) = self.streams.get_mut(&source) else {
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
        let skip = if rtx {
            inb.metadata.contains_key(keys::NOT_ADDRESSED)
        } else {
            self.kind == SessionKind::Group
                && !inb.destination.has_null_id()
                && inb.destination != self.local
        };
        // Duplicates are recognised before decryption and acknowledged again:
        // an MLS group cannot decrypt the same ciphertext twice, and a lost
        // ack must not turn into a failed send (§h.15).
        let duplicate = if publish_to {
            self.publish_to_seen
                .get(&source)
                .is_some_and(|seen| seen.contains(&inb.message_id))
        } else {
            reliable
                && self
                    .streams
                    .get(&source)
                    .is_some_and(|s| s.is_duplicate(inb.message_id))
        };
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
        // What the application would discard is not worth an MLS decryption.
        let unneeded = !skip
            && self
                .filter
                .as_mut()
                .is_some_and(|f| f(&source, &inb.metadata));
        if unneeded {
            self.counters.not_needed += 1;
        }
        let blob = if skip || unneeded {
            Vec::new()
        } else {
            match self.crypto.decrypt(&payload.blob) {
                Ok(b) => b,
                Err(_) => return self.drop_msg(DropReason::DecryptFailed),
            }
        };
        if reliable {
            // RTX_REPLYs are acked too (v1.3 does not): our senders wait for a
            // real ack; v1.3 senders ignore an ack they no longer wait for.
            self.send_msg_ack(&inb, publish_to);
        }
        let mut metadata = inb.metadata;
        metadata.remove(keys::PUBLISH_TO);
        metadata.remove(keys::NOT_ADDRESSED);
        let msg = ReceivedMessage {
            source: source.clone(),
            payload: blob,
            metadata,
            peer_subject: inb.subject.clone(),
        };
        if publish_to {
            let seen = self.publish_to_seen.entry(source).or_default();
            if seen.contains(&inb.message_id) {
                return self.drop_msg(DropReason::Duplicate);
            }
            if seen.len() == PUBLISH_TO_MEMORY {
                seen.pop_front();
            }
            seen.push_back(inb.message_id);
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
        let fresh_start = self.moderator || self.kind == SessionKind::PointToPoint;
        let stream = self.streams.entry(source.clone()).or_insert_with(|| {
            if fresh_start {
                Stream::starting_at(1)
            } else {
                Stream::probing()
            }
        });
        if inb.incoming_conn.is_some() {
            stream.last_conn = inb.incoming_conn;
        }
        let slot = if skip || unneeded {
            Slot::Skip
        } else {
            Slot::Deliver(msg)
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
        self.send(ack);
    }

    pub(super) fn deliver_ready(
        &mut self,
        source: &Name,
        ready: Vec<(u32, Slot<ReceivedMessage>)>,
    ) {
        for (id, slot) in ready {
            match slot {
                Slot::Deliver(m) => self.emit(SessionEvent::Message(m)),
                Slot::Skip => {}
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
        let conn = self.streams.get(source).and_then(|s| s.last_conn);
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
        if self.data_timer.is_none() {
            return self.drop_msg(DropReason::Unexpected);
        }
        // Unlike v1.3, an RTX_REQUEST does not count as an ack: the requester
        // does not have the message yet, and a close right now would lose it.
        let reply = match self.sender.lookup(inb.message_id) {
            Some((orig, audience)) => {
                let mut m = orig.clone();
                if !audience.contains(&inb.source) {
                    m.metadata
                        .insert(keys::NOT_ADDRESSED.to_string(), TRUE.to_string());
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
        for action in self.sender.on_timeout(self.now) {
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
        let mut sources: Vec<Name> = self
            .streams
            .iter()
            .filter(|(_, s)| s.deadline().is_some_and(|d| d <= now))
            .map(|(n, _)| n.clone())
            .collect();
        sources.sort();
        let retry = self.data_retry();
        for source in sources {
            let Some(stream) = self.streams.get_mut(&source) else {
                continue;
            };
            let Some(retry) = retry else {
                continue;
            };
            let _ = retry;
            let out = stream.on_timeout(now);
            for id in out.request {
                self.send_rtx_request(&source, id);
            }
            self.deliver_ready(&source, out.ready);
        }
    }
}
