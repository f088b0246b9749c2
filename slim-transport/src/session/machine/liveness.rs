//! Liveness of a session's peers: the moderator's ping rounds and the count
//! of rounds each member left unanswered, and the participant's watchdog
//! period (how long the moderator may stay silent).
//!
//! This sub-state decides *who* is gone; the session facade sends the pings
//! (as control requests) and runs the consequences (announcing a removal,
//! closing). The round's deadline lives in the session's timer table.

use std::collections::HashMap;
use std::time::Duration;

use tracing::warn;

use crate::Name;
use crate::wire::{
    PingPayload, SessionMessageType as Kind, command_payload::CommandPayloadType as Cmd,
};

use super::super::packet::GROUP_FANOUT;
use super::super::{MAX_PING_FAILURES, PING_INTERVAL, SessionKind};
use super::controls::{Purpose, Waiting};
use super::role::Role;
use super::timers::Timer;
use super::{Lifecycle, Session};

/// How long a participant waits for a ping (or any other sign of the
/// moderator) before it declares the moderator unreachable.
pub(super) const WATCHDOG_PERIOD: Duration = PING_INTERVAL.saturating_mul(MAX_PING_FAILURES);

/// The moderator's view of its members' liveness.
#[derive(Debug)]
pub(super) struct Liveness {
    /// Time between ping rounds.
    interval: Duration,
    /// The message id of the round still waiting for answers.
    round: Option<u32>,
    /// Rounds in a row each member left unanswered.
    missed: HashMap<Name, u32>,
}

impl Liveness {
    /// Pings every `interval` (at least 10 ms, so a misconfiguration cannot
    /// turn into a ping storm).
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            interval: interval.max(Duration::from_millis(10)),
            round: None,
            missed: HashMap::new(),
        }
    }

    pub(super) fn interval(&self) -> Duration {
        self.interval
    }

    /// A round with message id `id` starts.
    pub(super) fn start_round(&mut self, id: u32) {
        self.round = Some(id);
    }

    /// Ends the running round (a new one starts), returning its id.
    pub(super) fn take_round(&mut self) -> Option<u32> {
        self.round.take()
    }

    /// Request `id` was answered by everybody or given up.
    pub(super) fn round_over(&mut self, id: u32) {
        if self.round == Some(id) {
            self.round = None;
        }
    }

    /// `member` answered a ping or just joined: its count starts over.
    pub(super) fn heard_from(&mut self, member: &Name) {
        self.missed.insert(member.clone(), 0);
    }

    pub(super) fn forget(&mut self, member: &Name) {
        self.missed.remove(member);
    }

    /// `silent` left a round unanswered; returns those of them (members
    /// only, in the given order) who have now missed [`MAX_PING_FAILURES`]
    /// rounds in a row and are to be declared gone.
    pub(super) fn missed_round<'a>(
        &mut self,
        silent: impl IntoIterator<Item = &'a Name>,
        members: &[Name],
    ) -> Vec<Name> {
        let mut gone = Vec::new();
        for name in silent {
            if !members.contains(name) {
                continue;
            }
            let missed = self.missed.entry(name.clone()).or_insert(0);
            *missed += 1;
            if *missed >= MAX_PING_FAILURES {
                gone.push(name.clone());
            }
        }
        gone
    }

    /// The session closed: no round is running any more.
    pub(super) fn stop(&mut self) {
        self.round = None;
    }
}

// The facade's side: ping rounds are control requests to every member.
impl Session {
    pub(super) fn ping_round(&mut self) {
        let Some(l) = self.liveness_mut() else {
            return;
        };
        let (interval, previous) = (l.interval(), l.take_round());
        self.timers.set(Timer::Ping, self.now + interval);
        if let Some(id) = previous
            && let Some(c) = self.controls.remove(id)
        {
            self.count_missed(c.waiting);
        }
        if self.is_closed() {
            return;
        }
        let others = self.others();
        if others.is_empty() || self.lifecycle != Lifecycle::Open {
            return;
        }
        let (dst, fanout) = match self.kind {
            SessionKind::PointToPoint => (self.destination.clone(), 1),
            SessionKind::Group => (self.destination.clone(), GROUP_FANOUT),
        };
        let mid = self.fresh_control_id();
        let mut msg = self.command_msg(&dst, fanout, Kind::Ping, mid, Cmd::Ping(PingPayload {}));
        self.tag_epoch(&mut msg);
        if let Some(l) = self.liveness_mut() {
            l.start_round(mid);
        }
        self.start_control(
            msg,
            Kind::Ping,
            Waiting::Names(others.into_iter().collect()),
            Purpose::Ping,
        );
    }

    pub(super) fn count_missed(&mut self, waiting: Waiting) {
        let Waiting::Names(silent) = waiting else {
            return;
        };
        let gone = match &mut self.role {
            Role::Moderator(m) => m.liveness.missed_round(&silent, &self.members),
            Role::Participant(_) => Vec::new(),
        };
        for name in gone {
            warn!(session_id = self.id, member = %name, "member declared gone after missed pings");
            self.member_gone(&name, "peer unreachable");
            if self.is_closed() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(app: &str) -> Name {
        Name::new("org", "ns", app).with_id(1)
    }

    #[test]
    fn member_is_gone_after_max_missed_rounds_in_a_row_and_an_answer_resets_the_count() {
        let (b, c) = (name("b"), name("c"));
        let members = [name("m"), b.clone(), c.clone()];
        let mut l = Liveness::new(Duration::from_secs(1));
        for _ in 1..MAX_PING_FAILURES {
            assert!(l.missed_round([&b, &c], &members).is_empty());
        }
        // b answers the next round (its count starts over); c stays silent.
        l.heard_from(&b);
        assert_eq!(l.missed_round([&c], &members), vec![c.clone()]);
        for _ in 1..MAX_PING_FAILURES {
            assert!(l.missed_round([&b], &members).is_empty());
        }
        assert_eq!(l.missed_round([&b], &members), vec![b]);
    }

    #[test]
    fn silence_of_a_name_that_is_no_longer_a_member_counts_for_nothing() {
        let gone = name("gone");
        let members = [name("m")];
        let mut l = Liveness::new(Duration::from_secs(1));
        for _ in 0..=MAX_PING_FAILURES {
            assert!(l.missed_round([&gone], &members).is_empty());
        }
    }

    #[test]
    fn only_the_running_round_is_ended_by_its_answer() {
        let mut l = Liveness::new(Duration::from_millis(1));
        assert_eq!(l.interval(), Duration::from_millis(10));
        l.start_round(7);
        l.round_over(6);
        assert_eq!(l.take_round(), Some(7));
        l.start_round(8);
        l.round_over(8);
        assert_eq!(l.take_round(), None);
    }
}
