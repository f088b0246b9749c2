//! The session's role, as an enum carrying the state only that role has:
//! the moderator's membership jobs, liveness rounds, MLS group creation and
//! early publishes; the participant's welcome, JOIN_REPLY, commit queue and
//! pending close acknowledgement.
//!
//! Code that only makes sense in one role reaches that state through
//! [`Session::moderator_mut`] / [`Session::participant_mut`], so a
//! participant simply has no jobs to run rather than an empty queue guarded
//! by a flag.

use std::collections::{HashMap, VecDeque};

use crate::wire;

use super::super::packet::Inbound;
use super::Session;
use super::liveness::Liveness;
use super::membership::{CommitQueue, Jobs};

/// How far past the last applied `commit_id` a participant buffers commits.
const MAX_COMMITS_AHEAD: u32 = 1024;

/// Moderator or participant, with what only that role keeps.
// One per session, built once and never moved around in bulk: the size
// difference between the variants (a participant keeps whole messages)
// costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Role {
    Moderator(ModeratorState),
    Participant(ParticipantState),
}

/// What only a moderator keeps.
#[derive(Debug)]
pub(super) struct ModeratorState {
    /// Invites and removes, one at a time, and the commit numbering.
    pub(super) jobs: Jobs,
    /// Ping rounds and missed counts.
    pub(super) liveness: Liveness,
    /// The MLS group exists (created when the first invitee answers).
    pub(super) group_created: bool,
    /// P2P: MSGs published before the peer is known.
    pub(super) held_back: VecDeque<(Vec<u8>, HashMap<String, String>)>,
}

impl ModeratorState {
    pub(super) fn new(liveness: Liveness) -> Self {
        Self {
            jobs: Jobs::default(),
            liveness,
            group_created: false,
            held_back: VecDeque::new(),
        }
    }
}

/// What only a participant keeps.
#[derive(Debug)]
pub(super) struct ParticipantState {
    /// The welcome was processed.
    pub(super) welcomed: bool,
    /// Re-sent as is when the JOIN_REQUEST is repeated.
    pub(super) join_reply: Option<wire::Message>,
    /// GROUP_ADD/GROUP_REMOVE in `commit_id` order.
    pub(super) commits: CommitQueue<Inbound>,
    /// GROUP_CLOSE received; answered once our MSGs are acknowledged.
    pub(super) close_ack: Option<Inbound>,
}

impl Default for ParticipantState {
    fn default() -> Self {
        Self {
            welcomed: false,
            join_reply: None,
            commits: CommitQueue::new(0, MAX_COMMITS_AHEAD, MAX_COMMITS_AHEAD as usize),
            close_ack: None,
        }
    }
}

impl Role {
    pub(super) fn is_moderator(&self) -> bool {
        matches!(self, Role::Moderator(_))
    }

    /// A moderator is established from the start, a participant once
    /// welcomed.
    pub(super) fn is_established(&self) -> bool {
        match self {
            Role::Moderator(_) => true,
            Role::Participant(p) => p.welcomed,
        }
    }
}

impl Session {
    pub(super) fn moderator_mut(&mut self) -> Option<&mut ModeratorState> {
        match &mut self.role {
            Role::Moderator(m) => Some(m),
            Role::Participant(_) => None,
        }
    }

    pub(super) fn moderator_state(&self) -> Option<&ModeratorState> {
        match &self.role {
            Role::Moderator(m) => Some(m),
            Role::Participant(_) => None,
        }
    }

    pub(super) fn participant_mut(&mut self) -> Option<&mut ParticipantState> {
        match &mut self.role {
            Role::Participant(p) => Some(p),
            Role::Moderator(_) => None,
        }
    }

    pub(super) fn participant_state(&self) -> Option<&ParticipantState> {
        match &self.role {
            Role::Participant(p) => Some(p),
            Role::Moderator(_) => None,
        }
    }

    pub(super) fn jobs_mut(&mut self) -> Option<&mut Jobs> {
        self.moderator_mut().map(|m| &mut m.jobs)
    }

    pub(super) fn jobs(&self) -> Option<&Jobs> {
        self.moderator_state().map(|m| &m.jobs)
    }

    pub(super) fn liveness_mut(&mut self) -> Option<&mut Liveness> {
        self.moderator_mut().map(|m| &mut m.liveness)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_moderator_is_established_at_once_and_a_participant_once_welcomed() {
        let moderator = Role::Moderator(ModeratorState::new(Liveness::new(Duration::from_secs(1))));
        assert!(moderator.is_moderator() && moderator.is_established());
        let mut participant = Role::Participant(ParticipantState::default());
        assert!(!participant.is_moderator() && !participant.is_established());
        if let Role::Participant(p) = &mut participant {
            p.welcomed = true;
        }
        assert!(participant.is_established());
    }
}
