//! Pending control requests of one session: each is retransmitted on its
//! own [`Retry`] until every expected replier answered, or given up.
//!
//! This sub-state only keeps the bookkeeping (who still has to answer, when
//! to resend, when to give up). It never builds or stamps messages and does
//! not know what a completed request means: the session facade decides that
//! from the request's [`Purpose`].

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use rand::Rng;

use crate::Name;
use crate::wire::{self, SessionMessageType as Kind};

use super::super::DropReason;
use super::super::reliable::{Fire, Retry};

/// Why a control request was sent: decides what its completion or failure
/// does to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Discovery,
    Join,
    Welcome,
    GroupAdd,
    GroupRemove,
    Leave,
    Ping,
    Close,
    GracefulLeave,
    /// Our own participant-state update (soft close, rejoin).
    OwnState,
    /// Our rejoin request to the moderator.
    Rejoin,
}

impl Purpose {
    /// Requests that are steps of a membership job (cancelled with it).
    pub(super) fn belongs_to_job(self) -> bool {
        matches!(
            self,
            Purpose::Discovery
                | Purpose::Join
                | Purpose::Welcome
                | Purpose::GroupAdd
                | Purpose::GroupRemove
                | Purpose::Leave
        )
    }
}

/// Who still has to answer a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Waiting {
    Names(BTreeSet<Name>),
    /// DISCOVERY_REPLY is matched on the name with its id reset.
    Prefix([u64; 3]),
}

/// A control request retransmitted until every expected replier answered.
#[derive(Debug)]
pub(super) struct Control {
    pub(super) msg: wire::Message,
    pub(super) expect: Kind,
    pub(super) waiting: Waiting,
    pub(super) retry: Retry,
    pub(super) purpose: Purpose,
}

/// What a reply did to its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Answered {
    pub(super) purpose: Purpose,
    /// Every expected replier answered: the request is gone.
    pub(super) done: bool,
}

/// What a due request asks for.
#[derive(Debug)]
pub(super) enum Due {
    /// Send this (unstamped) request again.
    Resend(wire::Message),
    /// Retries exhausted: the request is gone, here is what was left of it.
    GaveUp(Control),
}

/// The pending control requests, by message id.
#[derive(Debug, Default)]
pub(super) struct Controls {
    pending: HashMap<u32, Control>,
}

impl Controls {
    /// A message id no pending request uses.
    pub(super) fn fresh_id(&self, rng: &mut impl Rng) -> u32 {
        loop {
            let id: u32 = rng.random();
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// Starts waiting for `expect` replies to `msg` (the caller sends it).
    pub(super) fn start(
        &mut self,
        msg: wire::Message,
        expect: Kind,
        waiting: Waiting,
        purpose: Purpose,
        retry: Retry,
    ) {
        let message_id = match &msg.message_type {
            Some(wire::message::MessageType::Publish(p)) => {
                p.session.as_ref().map(|s| s.message_id).unwrap_or(0)
            }
            _ => 0,
        };
        self.pending.insert(
            message_id,
            Control {
                msg,
                expect,
                waiting,
                retry,
                purpose,
            },
        );
    }

    /// A reply of `kind` from `source` to request `message_id`.
    pub(super) fn on_reply(
        &mut self,
        kind: Kind,
        message_id: u32,
        source: &Name,
    ) -> Result<Answered, DropReason> {
        let Some(c) = self.pending.get_mut(&message_id) else {
            return Err(DropReason::Duplicate);
        };
        if c.expect != kind {
            return Err(DropReason::Unexpected);
        }
        let (matched, done) = match &mut c.waiting {
            Waiting::Names(set) => {
                let m = set.remove(source);
                (m, set.is_empty())
            }
            Waiting::Prefix(p) => {
                let m = *p == source.prefix();
                (m, m)
            }
        };
        if !matched {
            return Err(DropReason::Duplicate);
        }
        let purpose = c.purpose;
        if done {
            self.pending.remove(&message_id);
        }
        Ok(Answered { purpose, done })
    }

    /// Ids of the requests due at `now`, in id order (deterministic). Fire
    /// them one by one with [`Self::fire`]: handling one may cancel others.
    pub(super) fn due(&self, now: Instant) -> Vec<u32> {
        let mut due: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, c)| c.retry.next <= now)
            .map(|(id, _)| *id)
            .collect();
        due.sort_unstable();
        due
    }

    /// Fires request `id` if it is still pending and due.
    pub(super) fn fire(&mut self, id: u32, now: Instant) -> Option<Due> {
        let c = self.pending.get_mut(&id)?;
        match c.retry.fire(now)? {
            Fire::Resend => Some(Due::Resend(c.msg.clone())),
            Fire::GiveUp => self.pending.remove(&id).map(Due::GaveUp),
        }
    }

    /// The earliest retransmission or give-up time.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.pending.values().map(|c| c.retry.next).min()
    }

    /// Removes request `id` (a ping round replaced by the next one).
    pub(super) fn remove(&mut self, id: u32) -> Option<Control> {
        self.pending.remove(&id)
    }

    /// Drops the requests of the membership job (it finished or failed).
    pub(super) fn cancel_job_requests(&mut self) {
        self.pending.retain(|_, c| !c.purpose.belongs_to_job());
    }

    /// Stops waiting for `name`'s answer to pings (it left).
    pub(super) fn forget_pinged(&mut self, name: &Name) {
        for c in self.pending.values_mut() {
            if c.purpose == Purpose::Ping
                && let Waiting::Names(set) = &mut c.waiting
            {
                set.remove(name);
            }
        }
    }

    pub(super) fn clear(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rand::SeedableRng as _;
    use rand::rngs::StdRng;

    use super::*;
    use crate::session::packet::{Out, command_content};
    use crate::wire::{SessionType, command_payload::CommandPayloadType as Cmd};

    const T: Duration = Duration::from_millis(100);

    fn name(s: &str) -> Name {
        let (org, rest) = s.split_once('/').unwrap_or(("org", s));
        let (ns, app) = rest.split_once('/').unwrap_or(("ns", rest));
        Name::new(org, ns, app).with_id(1)
    }

    fn request(id: u32) -> wire::Message {
        Out {
            source: &name("org/ns/moderator"),
            destination: &name("org/ns/channel"),
            fanout: 1,
            session_type: SessionType::Multicast,
            kind: Kind::GroupAdd,
            session_id: 7,
            message_id: id,
            content: command_content(Cmd::GroupAck(crate::wire::GroupAckPayload {})),
            metadata: Default::default(),
        }
        .build()
    }

    fn waiting_for(names: &[&str]) -> Waiting {
        Waiting::Names(names.iter().map(|n| name(n)).collect())
    }

    #[test]
    fn request_completes_only_when_every_expected_replier_answered_in_any_order() {
        let mut c = Controls::default();
        let t0 = Instant::now();
        c.start(
            request(5),
            Kind::GroupAck,
            waiting_for(&["b", "c"]),
            Purpose::GroupAdd,
            Retry::new(t0, T, 3),
        );
        // Reordered: c answers before b.
        let first = c.on_reply(Kind::GroupAck, 5, &name("c"));
        assert_eq!(
            first,
            Ok(Answered {
                purpose: Purpose::GroupAdd,
                done: false
            })
        );
        assert_eq!(
            c.on_reply(Kind::GroupAck, 5, &name("c")),
            Err(DropReason::Duplicate)
        );
        let second = c.on_reply(Kind::GroupAck, 5, &name("b"));
        assert_eq!(second.map(|a| a.done), Ok(true));
        assert_eq!(c.deadline(), None);
        // A late duplicate after completion is a duplicate, not an error.
        assert_eq!(
            c.on_reply(Kind::GroupAck, 5, &name("b")),
            Err(DropReason::Duplicate)
        );
    }

    #[test]
    fn reply_of_the_wrong_kind_is_unexpected_and_leaves_the_request_pending() {
        let mut c = Controls::default();
        c.start(
            request(5),
            Kind::GroupAck,
            waiting_for(&["b"]),
            Purpose::Welcome,
            Retry::new(Instant::now(), T, 3),
        );
        assert_eq!(
            c.on_reply(Kind::LeaveReply, 5, &name("b")),
            Err(DropReason::Unexpected)
        );
        assert!(c.deadline().is_some());
    }

    #[test]
    fn discovery_reply_matches_any_instance_of_the_requested_name() {
        let mut c = Controls::default();
        c.start(
            request(9),
            Kind::DiscoveryReply,
            Waiting::Prefix(name("b").prefix()),
            Purpose::Discovery,
            Retry::new(Instant::now(), T, 3),
        );
        assert_eq!(
            c.on_reply(Kind::DiscoveryReply, 9, &name("other")),
            Err(DropReason::Duplicate)
        );
        let instance = name("b").with_id(42);
        assert_eq!(
            c.on_reply(Kind::DiscoveryReply, 9, &instance)
                .map(|a| a.done),
            Ok(true)
        );
    }

    #[test]
    fn lost_reply_is_retransmitted_after_the_control_timeout_then_given_up() {
        let mut c = Controls::default();
        let t0 = Instant::now();
        c.start(
            request(5),
            Kind::GroupAck,
            waiting_for(&["b"]),
            Purpose::GroupAdd,
            Retry::new(t0, T, 2),
        );
        // Nothing is due before the interval.
        assert!(c.due(t0 + T / 2).is_empty());
        let mut resent = 0;
        let mut now = t0;
        let gave_up = loop {
            now += T;
            let due = c.due(now);
            assert_eq!(due, vec![5]);
            match c.fire(5, now) {
                Some(Due::Resend(m)) => {
                    assert_eq!(m, request(5));
                    resent += 1;
                }
                Some(Due::GaveUp(ctl)) => break ctl,
                None => panic!("a due request must fire"),
            }
        };
        assert_eq!(resent, 2);
        assert_eq!(gave_up.waiting, waiting_for(&["b"]));
        assert_eq!(c.deadline(), None);
        assert_eq!(
            c.on_reply(Kind::GroupAck, 5, &name("b")),
            Err(DropReason::Duplicate)
        );
    }

    #[test]
    fn cancelling_a_job_keeps_pings_and_a_cancelled_request_no_longer_fires() {
        let mut c = Controls::default();
        let t0 = Instant::now();
        for (id, purpose) in [(1, Purpose::Join), (2, Purpose::Ping), (3, Purpose::Close)] {
            c.start(
                request(id),
                Kind::GroupAck,
                waiting_for(&["b", "c"]),
                purpose,
                Retry::new(t0, T, 1),
            );
        }
        let due = c.due(t0 + T);
        assert_eq!(due, vec![1, 2, 3]);
        c.cancel_job_requests();
        assert!(c.fire(1, t0 + T).is_none());
        assert!(matches!(c.fire(2, t0 + T), Some(Due::Resend(_))));
        c.forget_pinged(&name("b"));
        assert_eq!(c.remove(2).map(|p| p.waiting), Some(waiting_for(&["c"])));
    }

    #[test]
    fn fresh_ids_avoid_pending_ones_and_follow_the_injected_rng() {
        let mut c = Controls::default();
        let first = Controls::default().fresh_id(&mut StdRng::seed_from_u64(3));
        c.start(
            request(first),
            Kind::GroupAck,
            waiting_for(&["b"]),
            Purpose::Ping,
            Retry::new(Instant::now(), T, 1),
        );
        let next = c.fresh_id(&mut StdRng::seed_from_u64(3));
        assert_ne!(next, first);
    }
}
