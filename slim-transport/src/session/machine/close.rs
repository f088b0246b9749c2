//! Closing a session: draining outstanding MSGs, the close protocol
//! (GROUP_CLOSE from the moderator, a graceful LEAVE_REQUEST from a
//! participant), and the closed state that still answers repeated close and
//! leave requests until its linger timer fires.
//!
//! [`Lifecycle`] is the pure state with its transitions; the `impl Session`
//! block is the facade's side (sending, releasing resources, the final
//! event). Nothing here reads a clock.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::Name;
use crate::wire::{
    GroupClosePayload, LeaveRequestPayload, SessionMessageType as Kind,
    command_payload::CommandPayloadType as Cmd,
};

use super::super::packet::{GROUP_FANOUT, Inbound, TRUE, command_content, keys};
use super::super::{DropReason, Event, SessionError, SessionEvent, SessionKind};
use super::Session;
use super::controls::{Purpose, Waiting};
use super::timers::Timer;

/// Where a session is on its way from open to dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lifecycle {
    Open,
    /// Close requested: waiting for outstanding MSG acks first.
    Draining,
    /// GROUP_CLOSE (moderator) or graceful LEAVE_REQUEST (participant) sent.
    Closing,
    /// Closed; still answers repeated GROUP_CLOSE / LEAVE_REQUEST until
    /// [`Timer::Linger`].
    Closed,
}

impl Lifecycle {
    /// The app asked to close: an open session starts draining; anything
    /// further along ignores it (closing is idempotent).
    pub(super) fn request_close(&mut self) -> bool {
        if *self != Lifecycle::Open {
            return false;
        }
        *self = Lifecycle::Draining;
        true
    }

    /// The close protocol may start: close was requested and every sent
    /// MSG is acknowledged.
    pub(super) fn ready_to_close(self, all_acked: bool) -> bool {
        self == Lifecycle::Draining && all_acked
    }

    /// How long a closed session keeps answering repeated close and leave
    /// requests: as long as a peer retries them.
    pub(super) fn linger(interval: Duration, retries: u32) -> Duration {
        interval * (retries + 1)
    }
}

// The facade's side of closing.
impl Session {
    /// A closed session still answers repeated close/leave requests, so the
    /// moderator does not wait for acks that were lost.
    pub(super) fn handle_after_close(&mut self, inb: &Inbound) {
        if self.is_moderator() || inb.source != self.moderator_name {
            return self.drop_msg(DropReason::Unexpected);
        }
        match inb.kind {
            Kind::GroupClose => self.send_group_ack(inb),
            Kind::LeaveRequest => self.send_leave_reply(inb),
            _ => self.drop_msg(DropReason::Unexpected),
        }
    }

    pub(super) fn start_close_protocol(&mut self) {
        if self.is_moderator() {
            let others = self.others();
            if others.is_empty() {
                return self.finish_close("closed");
            }
            let participants = self.members.iter().map(Name::to_wire).collect();
            let mid = self.fresh_control_id();
            let dst = self.destination.clone();
            let msg = self.command_msg(
                &dst,
                GROUP_FANOUT,
                Kind::GroupClose,
                mid,
                Cmd::GroupClose(GroupClosePayload { participants }),
            );
            self.lifecycle = Lifecycle::Closing;
            self.start_control(
                msg,
                Kind::GroupAck,
                Waiting::Names(others.into_iter().collect()),
                Purpose::Close,
            );
        } else {
            if !self.is_established() {
                return self.finish_close("left the session");
            }
            let mid = self.fresh_control_id();
            let moderator = self.moderator_name.clone();
            let msg = self.out(
                &moderator,
                1,
                Kind::LeaveRequest,
                mid,
                command_content(Cmd::LeaveRequest(LeaveRequestPayload { destination: None })),
                HashMap::from([(keys::LEAVING_SESSION.to_string(), TRUE.to_string())]),
            );
            self.unsubscribe_channel();
            self.lifecycle = Lifecycle::Closing;
            self.start_control(
                msg,
                Kind::LeaveReply,
                Waiting::Names(BTreeSet::from([moderator])),
                Purpose::GracefulLeave,
            );
        }
    }

    pub(super) fn unsubscribe_channel(&mut self) {
        if self.kind == SessionKind::Group && self.channel_subscribed {
            self.channel_subscribed = false;
            self.events
                .push_back(Event::Unsubscribe(self.destination.clone()));
        }
    }

    pub(super) fn finish_close(&mut self, reason: &str) {
        if self.is_closed() {
            return;
        }
        self.release_acks();
        self.cancel_jobs(SessionError::Closed);
        self.unsubscribe_channel();
        for (source, ready) in self.data.flush() {
            self.deliver_ready(&source, ready);
        }
        self.controls.clear();
        if let Some(m) = self.moderator_mut() {
            m.held_back.clear();
            m.liveness.stop();
        }
        self.timers.stop(Timer::Ping);
        self.timers.stop(Timer::Watchdog);
        let grace = Lifecycle::linger(self.control_interval, self.control_retries);
        self.lifecycle = Lifecycle::Closed;
        self.timers.set(Timer::Linger, self.now + grace);
        self.emit(SessionEvent::Closed {
            reason: reason.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_is_requested_once_and_only_while_open() {
        let mut l = Lifecycle::Open;
        assert!(l.request_close());
        assert_eq!(l, Lifecycle::Draining);
        assert!(!l.request_close());
        for mut later in [Lifecycle::Closing, Lifecycle::Closed] {
            assert!(!later.request_close());
        }
    }

    #[test]
    fn close_protocol_waits_while_sent_msgs_are_unacknowledged() {
        assert!(!Lifecycle::Draining.ready_to_close(false));
        assert!(Lifecycle::Draining.ready_to_close(true));
        assert!(!Lifecycle::Open.ready_to_close(true));
        assert!(!Lifecycle::Closing.ready_to_close(true));
    }

    #[test]
    fn a_closed_session_lingers_as_long_as_a_peer_retries() {
        let interval = Duration::from_millis(250);
        assert_eq!(Lifecycle::linger(interval, 3), Duration::from_secs(1));
    }
}
