//! Presence (SLIM v3 only): which members are OFFLINE, this member's own
//! soft close, and its way back in (rejoin).
//!
//! A member that soft-closes tells the group (a participant-state update,
//! acknowledged by every member) and goes quiet without leaving: the others
//! stop sending to it and stop waiting for its acknowledgements. It comes
//! back by announcing itself ONLINE with its MLS epoch; a member whose epoch
//! differs answers with a NACK, and the returning member then asks the
//! moderator to re-admit it (a rejoin request with a fresh key package). The
//! moderator answers with the welcome of one commit that replaces the
//! member's leaf, and tells the rest with a rejoin group update. A
//! participant that hears a heartbeat from a later epoch than its own asks
//! for the same.
//!
//! The sub-state keeps the bookkeeping only: the offline set and this
//! member's own state with the control request it waits on. The facade's
//! side (below) builds and sends the messages. Only sessions whose edge
//! speaks SLIM v3 ([`super::Context::presence`]) use any of it.

use std::collections::BTreeSet;

use tracing::{debug, warn};

use crate::Name;
use crate::wire::{
    GroupNackPayload, ParticipantStatePayload, RejoinReplyPayload, RejoinRequestPayload,
    SessionMessageType as Kind, command_payload::CommandPayloadType as Cmd,
};

use super::super::packet::{GROUP_FANOUT, Inbound, keys};
use super::super::{DropReason, Event, JobId, SessionError, SessionKind};
use super::controls::{Control, Purpose, Waiting};
use super::membership::{Job, Stage};
use super::{Lifecycle, Session};

/// Ids of presence changes the app asked for: a range of their own, so they
/// never meet the moderator's membership job ids.
const FIRST_JOB: JobId = 1 << 63;

/// This member's own presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Own {
    Online,
    /// Our OFFLINE update is out; the acknowledgements are awaited.
    GoingOffline {
        job: JobId,
        request: u32,
    },
    /// Soft-closed: quiet until [`Session::rejoin`].
    Offline,
    /// Our ONLINE update (or, after a NACK or a later epoch heard, our
    /// rejoin request) is out. `job` is the app's, when it asked.
    Rejoining {
        job: Option<JobId>,
        request: u32,
    },
    /// The moderator's welcome re-admitted us; its group update (the list
    /// of the group we came back to) completes the rejoin.
    Readmitted {
        job: Option<JobId>,
    },
}

/// Offline members and our own presence.
#[derive(Debug)]
pub(super) struct Presence {
    offline: BTreeSet<Name>,
    pub(super) own: Own,
    next_job: JobId,
}

impl Default for Presence {
    fn default() -> Self {
        Self {
            offline: BTreeSet::new(),
            own: Own::Online,
            next_job: FIRST_JOB,
        }
    }
}

impl Presence {
    pub(super) fn is_offline(&self, member: &Name) -> bool {
        self.offline.contains(member)
    }

    /// Marks `member` offline; false when it already was.
    pub(super) fn set_offline(&mut self, member: &Name) -> bool {
        self.offline.insert(member.clone())
    }

    /// Marks `member` online; false when it already was.
    pub(super) fn set_online(&mut self, member: &Name) -> bool {
        self.offline.remove(member)
    }

    /// Forgets a member that left the group.
    pub(super) fn forget(&mut self, member: &Name) {
        self.offline.remove(member);
    }

    /// We are soft-closed, or on our way there or back.
    pub(super) fn quiet(&self) -> bool {
        !matches!(self.own, Own::Online)
    }

    /// Soft-closed, or on the way back from it: we take nothing from the
    /// group but the answers to our own updates (and its end).
    pub(super) fn away(&self) -> bool {
        matches!(self.own, Own::Offline | Own::Rejoining { job: Some(_), .. })
    }

    /// Whether a soft-closed member takes `kind`: the answers to its own
    /// updates and rejoin request, and the end of the group or of its
    /// membership.
    pub(super) fn takes_while_away(kind: Kind) -> bool {
        matches!(
            kind,
            Kind::GroupAck
                | Kind::GroupNack
                | Kind::RejoinReply
                | Kind::GroupClose
                | Kind::LeaveRequest
        )
    }

    /// The request our own presence change waits on.
    pub(super) fn request(&self) -> Option<u32> {
        match self.own {
            Own::GoingOffline { request, .. } | Own::Rejoining { request, .. } => Some(request),
            Own::Online | Own::Offline | Own::Readmitted { .. } => None,
        }
    }

    fn fresh_job(&mut self) -> JobId {
        let id = self.next_job;
        self.next_job += 1;
        id
    }
}

// The facade's side.
impl Session {
    /// Group member of a SLIM v3 session: soft close. Tells the group that
    /// this member goes OFFLINE (every member acknowledges), then stays in
    /// the group without sending, answering or heartbeating until
    /// [`rejoin`](Self::rejoin). Completion is [`Event::JobDone`].
    pub fn soft_close(&mut self, now: std::time::Instant) -> Result<JobId, SessionError> {
        self.tick(now);
        self.check_presence_change()?;
        if self.presence.own != Own::Online {
            return Err(SessionError::Unsupported(
                "soft close: this member is already offline or rejoining",
            ));
        }
        let job = self.presence.fresh_job();
        let request = self.send_own_state(false);
        self.presence.own = Own::GoingOffline { job, request };
        self.sync_timers();
        Ok(job)
    }

    /// Group member of a SLIM v3 session after [`soft_close`](Self::soft_close):
    /// announces itself ONLINE with its MLS epoch; when a member answers
    /// that the group moved on (NACK), asks the moderator to re-admit it.
    /// Completion is [`Event::JobDone`].
    pub fn rejoin(&mut self, now: std::time::Instant) -> Result<JobId, SessionError> {
        self.tick(now);
        self.check_presence_change()?;
        if self.presence.own != Own::Offline {
            return Err(SessionError::Unsupported(
                "rejoin: only a soft-closed member can rejoin",
            ));
        }
        let job = self.presence.fresh_job();
        let request = self.send_own_state(true);
        self.presence.own = Own::Rejoining {
            job: Some(job),
            request,
        };
        self.sync_timers();
        Ok(job)
    }

    fn check_presence_change(&self) -> Result<(), SessionError> {
        self.check_open()?;
        if !self.ctx.presence {
            return Err(SessionError::Unsupported(
                "soft close and rejoin need a SLIM v3 session",
            ));
        }
        if self.kind != SessionKind::Group {
            return Err(SessionError::Unsupported(
                "soft close and rejoin are for group sessions; close a point-to-point session",
            ));
        }
        if self.is_moderator() {
            return Err(SessionError::Unsupported(
                "soft close and rejoin are for participants; a moderator closes the group",
            ));
        }
        if !self.is_established() {
            return Err(SessionError::Unsupported(
                "soft close and rejoin: not welcomed into the group yet",
            ));
        }
        Ok(())
    }

    /// Our own participant-state update to the group, awaiting every other
    /// member's acknowledgement (going OFFLINE: the online ones only).
    fn send_own_state(&mut self, online: bool) -> u32 {
        let waiting: BTreeSet<Name> = if online {
            self.members
                .iter()
                .filter(|m| **m != self.local)
                .cloned()
                .collect()
        } else {
            self.others().into_iter().collect()
        };
        let mid = self.fresh_control_id();
        let dst = self.destination.clone();
        let epoch = self.crypto.epoch().unwrap_or(0);
        let msg = self.command_msg(
            &dst,
            GROUP_FANOUT,
            Kind::ParticipantState,
            mid,
            Cmd::ParticipantState(ParticipantStatePayload {
                participant: Some(self.local.to_wire()),
                online,
                epoch,
            }),
        );
        self.start_control(
            msg,
            Kind::GroupAck,
            Waiting::Names(waiting),
            Purpose::OwnState,
        );
        mid
    }

    /// Sends our rejoin request to the moderator with a fresh key package.
    fn send_rejoin_request(&mut self, job: Option<JobId>) {
        let key_package = match self.crypto.fresh_key_package(self.unix_secs()) {
            Ok(kp) => kp.unwrap_or_default(),
            Err(e) => {
                warn!(session_id = self.id, error = %e, "no key package for a rejoin");
                return self.own_change_done(job, Err(e.into()));
            }
        };
        let mid = self.fresh_control_id();
        let moderator = self.moderator_name.clone();
        let msg = self.command_msg(
            &moderator,
            1,
            Kind::RejoinRequest,
            mid,
            Cmd::RejoinRequest(RejoinRequestPayload {
                participant: Some(self.local.to_wire()),
                key_package,
            }),
        );
        self.start_control(
            msg,
            Kind::RejoinReply,
            Waiting::Names(BTreeSet::from([moderator])),
            Purpose::Rejoin,
        );
        self.presence.own = Own::Rejoining { job, request: mid };
    }

    fn own_change_done(&mut self, job: Option<JobId>, result: Result<(), SessionError>) {
        if let Some(job) = job {
            self.events.push_back(Event::JobDone { job, result });
        }
    }

    /// Our OFFLINE or ONLINE update was acknowledged by everyone (or by
    /// whoever was still there when its retries ran out).
    pub(super) fn own_state_done(&mut self) {
        match self.presence.own {
            Own::GoingOffline { job, .. } => {
                self.presence.own = Own::Offline;
                self.timers.stop(super::timers::Timer::Watchdog);
                debug!(session_id = self.id, "soft-closed");
                self.own_change_done(Some(job), Ok(()));
            }
            Own::Rejoining { job, .. } => {
                self.presence.own = Own::Online;
                self.rearm_watchdog();
                debug!(session_id = self.id, "back online");
                self.own_change_done(job, Ok(()));
            }
            Own::Online | Own::Offline | Own::Readmitted { .. } => {}
        }
    }

    /// Our rejoin request was never answered.
    pub(super) fn rejoin_request_failed(&mut self) {
        if let Own::Rejoining { job, .. } = self.presence.own {
            self.presence.own = if job.is_some() {
                Own::Offline
            } else {
                Own::Online
            };
            self.own_change_done(
                job,
                Err(SessionError::Timeout {
                    what: "rejoin request (the moderator did not answer)",
                }),
            );
        }
    }

    /// A GROUP_ACK or GROUP_NACK to our own participant-state update.
    pub(super) fn on_own_state_reply(&mut self, inb: &Inbound) {
        if inb.kind == Kind::GroupNack {
            let Own::Rejoining { job, request } = self.presence.own else {
                return self.drop_msg(DropReason::Unexpected);
            };
            if request != inb.message_id {
                return self.drop_msg(DropReason::Duplicate);
            }
            debug!(session_id = self.id, from = %inb.source, "the group moved on: asking to rejoin");
            self.controls.remove(request);
            return self.send_rejoin_request(job);
        }
        self.presence.set_online(&inb.source);
        self.on_control_reply(inb);
    }

    /// A participant-state update about another member.
    pub(super) fn on_participant_state(&mut self, inb: &Inbound) {
        let Some(Cmd::ParticipantState(p)) = inb.command() else {
            return self.drop_msg(DropReason::Malformed);
        };
        let Some(Ok(subject)) = p.participant.as_ref().map(Name::from_wire) else {
            return self.drop_msg(DropReason::Malformed);
        };
        // Membership is the moderator's: a member speaks only for itself.
        if inb.source != self.moderator_name && subject != inb.source {
            return self.drop_msg(DropReason::Unexpected);
        }
        if subject == self.local || !self.members.contains(&subject) {
            return self.drop_msg(DropReason::Unexpected);
        }
        if !p.online {
            if self.presence.set_offline(&subject) {
                debug!(session_id = self.id, member = %subject, "member is offline");
                self.data.sender.forget_endpoint(&subject);
                self.controls.forget_pinged(&subject);
            }
            return self.send_group_ack(inb);
        }
        if let Some(epoch) = self.crypto.epoch()
            && epoch != p.epoch
        {
            debug!(session_id = self.id, member = %subject, ours = epoch, theirs = p.epoch,
                "member is back at another epoch: NACK");
            let nack = self.command_msg(
                &inb.source,
                1,
                Kind::GroupNack,
                inb.message_id,
                Cmd::GroupNack(GroupNackPayload {}),
            );
            return self.send(nack);
        }
        if self.presence.set_online(&subject) {
            debug!(session_id = self.id, member = %subject, "member is back online");
            if let Some(l) = self.liveness_mut() {
                l.heard_from(&subject);
            }
        }
        self.send_group_ack(inb);
    }

    /// Participant: a heartbeat announced a later MLS epoch than ours: we
    /// missed a commit, so we ask the moderator to re-admit us.
    pub(super) fn check_heartbeat_epoch(&mut self, inb: &Inbound) {
        if !self.ctx.presence || self.presence.own != Own::Online || !self.is_established() {
            return;
        }
        let Some(theirs) = inb
            .metadata
            .get(keys::MLS_EPOCH)
            .and_then(|e| e.parse::<u64>().ok())
        else {
            return;
        };
        if self.crypto.epoch().is_some_and(|ours| theirs > ours) {
            debug!(
                session_id = self.id,
                theirs, "behind the group's epoch: asking to rejoin"
            );
            self.send_rejoin_request(None);
        }
    }

    /// Participant: the moderator's answer to our rejoin request.
    pub(super) fn on_rejoin_reply(&mut self, inb: &Inbound) {
        let Own::Rejoining { job, request } = self.presence.own else {
            // A repeat after we were re-admitted: acknowledge it again.
            return self.send_group_ack(inb);
        };
        if request != inb.message_id {
            return self.drop_msg(DropReason::Duplicate);
        }
        let Some(Cmd::RejoinReply(r)) = inb.command() else {
            return self.drop_msg(DropReason::Malformed);
        };
        if self.crypto.enabled() {
            if let Err(e) = self
                .crypto
                .process_rejoin_welcome(&r.welcome, self.unix_secs())
            {
                warn!(session_id = self.id, error = %e, "rejoin welcome rejected");
                return self.drop_msg(DropReason::DecryptFailed);
            }
            if let Some(p) = self.participant_mut() {
                p.commits.applied(r.commit_id);
            }
        }
        self.controls.remove(request);
        self.presence.own = Own::Readmitted { job };
        self.rearm_watchdog();
        self.send_group_ack(inb);
        debug!(session_id = self.id, "re-admitted by the moderator");
    }

    /// Moderator: a member asks to be re-admitted.
    pub(super) fn on_rejoin_request(&mut self, inb: &Inbound) {
        let Some(Cmd::RejoinRequest(r)) = inb.command() else {
            return self.drop_msg(DropReason::Malformed);
        };
        let Some(Ok(subject)) = r.participant.as_ref().map(Name::from_wire) else {
            return self.drop_msg(DropReason::Malformed);
        };
        if subject != inb.source || !self.members.contains(&subject) {
            return self.drop_msg(DropReason::Unexpected);
        }
        // Without MLS there is no epoch to fall behind.
        if !self.crypto.enabled() {
            return self.drop_msg(DropReason::Unexpected);
        }
        let busy = self
            .jobs()
            .is_some_and(|j| j.is_rejoin_queued(&subject) || j.active_rejoin() == Some(&subject));
        if busy {
            // The job in progress answers it (a repeat of the same request).
            return self.counters.record(DropReason::Duplicate);
        }
        if let Some(j) = self.jobs_mut() {
            j.push_rejoin(subject, r.key_package.clone(), inb.message_id);
        }
        self.progress();
    }

    /// Moderator: runs a queued rejoin: one commit replacing the member's
    /// leaf; the welcome to it (REJOIN_REPLY), the commit to everybody
    /// (GROUP_UPDATE{REJOIN}, which the member rebuilds its list from).
    pub(super) fn start_rejoin(&mut self, member: Name, key_package: Vec<u8>, request: u32) {
        let added = match self
            .crypto
            .rejoin_member(&member, &key_package, self.unix_secs())
        {
            Ok(Some(a)) => a,
            Ok(None) => return self.finish_job(Ok(())),
            Err(e) => {
                warn!(session_id = self.id, member = %member, error = %e, "rejoin refused");
                return self.finish_job(Err(e.into()));
            }
        };
        let commit = self.next_commit(added.commit);
        let commit_id = commit.commit_id;
        if self.presence.set_online(&member)
            && let Some(l) = self.liveness_mut()
        {
            l.heard_from(&member);
        }
        let reply = self.command_msg(
            &member,
            1,
            Kind::RejoinReply,
            request,
            Cmd::RejoinReply(RejoinReplyPayload {
                commit_id,
                welcome: added.welcome,
            }),
        );
        self.start_control(
            reply,
            Kind::GroupAck,
            Waiting::Names(BTreeSet::from([member.clone()])),
            Purpose::Welcome,
        );
        let waiting: BTreeSet<Name> = self.others().into_iter().collect();
        let mid = self.fresh_control_id();
        let dst = self.destination.clone();
        let participants = self.members.iter().map(Name::to_wire).collect();
        let update = self.command_msg(
            &dst,
            GROUP_FANOUT,
            Kind::GroupRejoin,
            mid,
            Cmd::GroupRejoin(crate::wire::GroupAddPayload {
                new_participant: Some(member.to_wire()),
                participants,
                mls: Some(commit),
            }),
        );
        self.start_control(
            update,
            Kind::GroupAck,
            Waiting::Names(waiting),
            Purpose::GroupAdd,
        );
        self.set_job_stage(Stage::Rejoining {
            peer: member,
            outstanding: 2,
        });
    }

    /// Participant: GROUP_UPDATE{REJOIN} about us: the list of the group we
    /// came back to (the commit itself predates our welcome).
    pub(super) fn on_own_rejoin_update(&mut self, inb: &Inbound) {
        let Some(Cmd::GroupRejoin(a)) = inb.command() else {
            return self.drop_msg(DropReason::Malformed);
        };
        let Some(participants) = super::membership::names_of(&a.participants) else {
            return self.drop_msg(DropReason::Malformed);
        };
        for p in &participants {
            if self.admit(p) {
                self.emit(super::super::SessionEvent::MemberJoined(p.clone()));
            }
        }
        let gone: Vec<Name> = self
            .members
            .iter()
            .filter(|m| !participants.contains(m) && **m != self.local)
            .cloned()
            .collect();
        for m in gone {
            self.forget_member(&m);
            self.emit(super::super::SessionEvent::MemberLeft(m));
        }
        self.send_group_ack(inb);
        if let Own::Readmitted { job } = self.presence.own {
            self.presence.own = Own::Online;
            self.own_change_done(job, Ok(()));
        }
    }

    /// A control request of ours that belongs to presence gave up.
    pub(super) fn presence_control_failed(&mut self, c: &Control) {
        match c.purpose {
            Purpose::OwnState => self.own_state_done(),
            Purpose::Rejoin => self.rejoin_request_failed(),
            _ => {}
        }
    }

    /// Re-arms the participant's watch on the moderator.
    fn rearm_watchdog(&mut self) {
        if !self.is_moderator() && self.lifecycle == Lifecycle::Open {
            self.timers.set(
                super::timers::Timer::Watchdog,
                self.now + super::liveness::WATCHDOG_PERIOD,
            );
        }
    }
}

impl super::membership::Jobs {
    /// Queues a rejoin (no app id: the member asked, not our app).
    pub(super) fn push_rejoin(&mut self, member: Name, key_package: Vec<u8>, request: u32) {
        self.push_unnamed(Job::Rejoin {
            member,
            key_package,
            request,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(app: &str) -> Name {
        Name::new("org", "ns", app).with_id(7)
    }

    #[test]
    fn a_member_goes_offline_and_back_once_each() {
        let mut p = Presence::default();
        let b = name("b");
        assert!(!p.is_offline(&b));
        assert!(p.set_offline(&b));
        assert!(!p.set_offline(&b), "already offline");
        assert!(p.is_offline(&b));
        assert!(p.set_online(&b));
        assert!(!p.set_online(&b), "already online");
        p.set_offline(&b);
        p.forget(&b);
        assert!(!p.is_offline(&b));
    }

    #[test]
    fn own_changes_get_ids_apart_from_membership_jobs_and_name_their_request() {
        let mut p = Presence::default();
        let first = p.fresh_job();
        assert!(first >= FIRST_JOB && p.fresh_job() == first + 1);
        assert!(!p.quiet() && p.request().is_none());
        p.own = Own::GoingOffline {
            job: first,
            request: 9,
        };
        assert!(p.quiet());
        assert_eq!(p.request(), Some(9));
        p.own = Own::Offline;
        assert!(p.quiet() && p.request().is_none());
    }
}
