//! Group membership: the moderator's queue of invite/remove jobs (one runs at
//! a time, through discovery, join, welcome/GROUP_ADD or GROUP_REMOVE and
//! LEAVE_REQUEST) with the numbering of the commits it produces, and the
//! participant's [`CommitQueue`], which applies GROUP_ADD/GROUP_REMOVE in
//! `commit_id` order.
//!
//! The pure parts ([`Jobs`], [`CommitQueue`]) own their state and are tested
//! alone; the `impl Session` block below is the facade's side of the jobs
//! (it sends the control requests and talks to the group's crypto). Nothing
//! here reads a clock.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use tracing::warn;

use crate::Name;
use crate::wire::{
    self, DiscoveryRequestPayload, GroupAddPayload, GroupRemovePayload, GroupWelcomePayload,
    JoinRequestPayload, LeaveRequestPayload, MlsPayload, SessionMessageType as Kind, TimerSettings,
    command_payload::CommandPayloadType as Cmd,
};

use super::super::packet::{GROUP_FANOUT, Inbound, command_content, keys};
use super::super::{DropReason, Event, JobId, SessionError, SessionEvent, SessionKind};
use super::controls::{Control, Purpose, Waiting};
use super::{Lifecycle, Session};

/// What an MLS payload of the moderator carries for a participant.
#[derive(Debug, Clone, Copy)]
enum MlsStep {
    Welcome,
    Commit,
}

/// A membership change the moderator was asked for (or owes the group).
#[derive(Debug)]
pub(super) enum Job {
    Invite {
        id: JobId,
        member: Name,
    },
    /// The first invites of a group, all in one MLS commit.
    InviteMany {
        id: JobId,
        members: Vec<Name>,
    },
    Remove {
        id: JobId,
        member: Name,
    },
    /// Tell the rest about a member that left or was declared gone.
    Announce {
        removed: Name,
        before: Vec<Name>,
    },
    /// Re-admit a member that fell behind (SLIM v3 rejoin request).
    Rejoin {
        member: Name,
        key_package: Vec<u8>,
        request: u32,
    },
}

impl Job {
    /// The id the app knows the job by (an announcement has none).
    fn id(&self) -> Option<JobId> {
        match self {
            Job::Invite { id, .. } | Job::InviteMany { id, .. } | Job::Remove { id, .. } => {
                Some(*id)
            }
            Job::Announce { .. } | Job::Rejoin { .. } => None,
        }
    }
}

/// Where the running job is.
#[derive(Debug)]
pub(super) enum Stage {
    Discovering,
    Joining {
        peer: Name,
    },
    Welcoming {
        peer: Name,
        outstanding: u32,
    },
    /// [`Job::InviteMany`]: discoveries and joins run in parallel; one
    /// commit adds everybody once every JOIN_REPLY is in.
    Batch(Batch),
    Removing {
        member: Name,
        leave: bool,
    },
    Leaving,
    /// [`Job::Rejoin`]: its REJOIN_REPLY and GROUP_UPDATE{REJOIN} await
    /// their acknowledgements.
    Rejoining {
        peer: Name,
        outstanding: u32,
    },
}

/// Progress of a [`Job::InviteMany`].
#[derive(Debug, Default)]
pub(super) struct Batch {
    /// Requested names still waiting for their DISCOVERY_REPLY.
    pub(super) discovering: Vec<Name>,
    /// Full names whose JOIN_REPLY is outstanding.
    pub(super) joining: BTreeSet<Name>,
    /// Full names with the key package of their JOIN_REPLY, in reply order.
    pub(super) joined: Vec<(Name, Option<Vec<u8>>)>,
    /// Full names whose GROUP_WELCOME is not acknowledged yet.
    pub(super) welcoming: BTreeSet<Name>,
    /// Everybody added by the commit.
    pub(super) added: Vec<Name>,
}

/// The running job.
#[derive(Debug)]
pub(super) struct Active {
    pub(super) job: Option<JobId>,
    pub(super) stage: Stage,
}

/// The moderator's jobs: a FIFO, the one running, and the `commit_id`s of
/// the commits they produce (1, 2, 3, ...; a welcome carries the id of the
/// commit that added its member).
#[derive(Debug)]
pub(super) struct Jobs {
    queue: VecDeque<Job>,
    pub(super) active: Option<Active>,
    next_id: JobId,
    last_commit: u32,
}

impl Default for Jobs {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            active: None,
            next_id: 1,
            last_commit: 0,
        }
    }
}

impl Jobs {
    /// Queues `job(id)` under a fresh id.
    pub(super) fn push(&mut self, job: impl FnOnce(JobId) -> Job) -> JobId {
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_back(job(id));
        id
    }

    /// Queues a job the app did not ask for (no id), in turn.
    pub(super) fn push_unnamed(&mut self, job: Job) {
        self.queue.push_back(job);
    }

    /// A rejoin of `member` waits in the queue.
    pub(super) fn is_rejoin_queued(&self, member: &Name) -> bool {
        self.queue
            .iter()
            .any(|j| matches!(j, Job::Rejoin { member: m, .. } if m == member))
    }

    /// The member the running job re-admits.
    pub(super) fn active_rejoin(&self) -> Option<&Name> {
        match self.stage() {
            Some(Stage::Rejoining { peer, .. }) => Some(peer),
            _ => None,
        }
    }

    /// Queues an announcement ahead of everything else: the group must
    /// learn of a departure before any later change.
    pub(super) fn push_announcement(&mut self, removed: Name, before: Vec<Name>) {
        self.queue.push_front(Job::Announce { removed, before });
    }

    /// The next job to start, when none is running.
    pub(super) fn next(&mut self) -> Option<Job> {
        if self.active.is_some() {
            return None;
        }
        self.queue.pop_front()
    }

    /// Nothing queued or running.
    pub(super) fn is_empty(&self) -> bool {
        self.active.is_none() && self.queue.is_empty()
    }

    pub(super) fn start(&mut self, job: Option<JobId>, stage: Stage) {
        self.active = Some(Active { job, stage });
    }

    pub(super) fn set_stage(&mut self, stage: Stage) {
        if let Some(a) = self.active.as_mut() {
            a.stage = stage;
        }
    }

    pub(super) fn stage(&self) -> Option<&Stage> {
        self.active.as_ref().map(|a| &a.stage)
    }

    pub(super) fn batch(&mut self) -> Option<&mut Batch> {
        match self.active.as_mut() {
            Some(Active {
                stage: Stage::Batch(b),
                ..
            }) => Some(b),
            _ => None,
        }
    }

    pub(super) fn in_batch(&self) -> bool {
        matches!(self.stage(), Some(Stage::Batch(_)))
    }

    /// Ends the running job (`None` when none was running).
    pub(super) fn take_active(&mut self) -> Option<Active> {
        self.active.take()
    }

    /// Fails every queued job and the running one with `e` (queued first,
    /// in order, as they were asked for).
    pub(super) fn cancel_all(&mut self, e: &SessionError) -> Vec<Event> {
        let mut done: Vec<Event> = self
            .queue
            .drain(..)
            .filter_map(|j| j.id())
            .map(|job| Event::JobDone {
                job,
                result: Err(e.clone()),
            })
            .collect();
        if let Some(job) = self.active.take().and_then(|a| a.job) {
            done.push(Event::JobDone {
                job,
                result: Err(e.clone()),
            });
        }
        done
    }

    /// Numbers the next commit the moderator produced.
    pub(super) fn next_commit(&mut self, content: Vec<u8>) -> MlsPayload {
        self.last_commit += 1;
        MlsPayload {
            commit_id: self.last_commit,
            mls_content: content,
        }
    }
}

/// What [`CommitQueue::offer`] did with a commit.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer<T> {
    /// Already applied: acknowledge it again and apply nothing. (SLIM v1.3
    /// drops it without an ack, so a lost GROUP_ACK fails the invite.)
    Duplicate(T),
    /// Kept until the commits before it are applied; not acknowledged yet.
    Buffered,
    /// Too far ahead (or too many waiting): dropped unacknowledged, the
    /// moderator re-sends it.
    Refused,
    /// The next one: take it with [`CommitQueue::pop_next`].
    Ready,
}

/// Orders commits by `commit_id`: the one after the last applied is ready,
/// later ones wait, earlier ones are duplicates. The session and the v3 MLS
/// state (`crate::mls::CommitQueue`) share it, and with it one duplicate
/// rule: an already applied commit is acknowledged again. A commit offered
/// twice while waiting keeps its first copy.
#[derive(Debug)]
pub struct CommitQueue<T> {
    last: u32,
    waiting: BTreeMap<u32, T>,
    max_ahead: u32,
    max_waiting: usize,
}

impl<T> CommitQueue<T> {
    /// A queue whose last applied commit is `last` (the welcome's id, 0
    /// before any), accepting ids at most `max_ahead` past it and keeping
    /// at most `max_waiting` early ones (the next id is always accepted).
    pub fn new(last: u32, max_ahead: u32, max_waiting: usize) -> Self {
        Self {
            last,
            waiting: BTreeMap::new(),
            max_ahead,
            max_waiting,
        }
    }

    /// The last applied `commit_id`.
    pub fn last(&self) -> u32 {
        self.last
    }

    /// How many commits wait (the ready one included until popped).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Offers commit `commit_id`.
    pub fn offer(&mut self, commit_id: u32, commit: T) -> Offer<T> {
        if commit_id <= self.last {
            return Offer::Duplicate(commit);
        }
        let next = self.last.checked_add(1) == Some(commit_id);
        if !next
            && (commit_id - self.last > self.max_ahead
                || (self.waiting.len() >= self.max_waiting
                    && !self.waiting.contains_key(&commit_id)))
        {
            return Offer::Refused;
        }
        self.waiting.entry(commit_id).or_insert(commit);
        if self.waiting.contains_key(&(self.last + 1)) {
            Offer::Ready
        } else {
            Offer::Buffered
        }
    }

    /// Takes the commit after the last applied one, if it is here. Call
    /// [`Self::applied`] when it was applied; otherwise it is gone and the
    /// moderator's retransmission brings it back.
    pub fn pop_next(&mut self) -> Option<(u32, T)> {
        let id = self.last.checked_add(1)?;
        self.waiting.remove(&id).map(|c| (id, c))
    }

    /// Commit `commit_id` was applied (a welcome starts the count too).
    pub fn applied(&mut self, commit_id: u32) {
        self.last = commit_id;
        self.waiting.retain(|id, _| *id > commit_id);
    }

    /// Forgets every waiting commit (the group is gone).
    pub fn clear(&mut self) {
        self.waiting.clear();
    }
}

/// The names of a participant list; `None` when one is malformed.
pub(super) fn names_of(list: &[wire::Name]) -> Option<Vec<Name>> {
    list.iter()
        .map(Name::from_wire)
        .collect::<Result<_, _>>()
        .ok()
}

// The facade's side of the jobs (moderator) and of the commits (participant).
impl Session {
    /// Queues an invite of `member` (moderators only).
    pub(super) fn push_job_invite(&mut self, member: Name) -> Result<JobId, SessionError> {
        let jobs = self.jobs_mut().ok_or(SessionError::NotModerator)?;
        Ok(jobs.push(|id| Job::Invite { id, member }))
    }

    /// Queues the job `job(id)` under a fresh id and starts it if idle.
    pub(super) fn queue_job(
        &mut self,
        job: impl FnOnce(JobId) -> Job,
    ) -> Result<JobId, SessionError> {
        let id = self.jobs_mut().ok_or(SessionError::NotModerator)?.push(job);
        self.progress();
        Ok(id)
    }

    fn start_job(&mut self, job: Option<JobId>, stage: Stage) {
        if let Some(j) = self.jobs_mut() {
            j.start(job, stage);
        }
    }

    pub(super) fn set_job_stage(&mut self, stage: Stage) {
        if let Some(j) = self.jobs_mut() {
            j.set_stage(stage);
        }
    }

    /// Numbers the commit the moderator just produced. A participant never
    /// produces one; it would get id 0, which every member treats as
    /// already applied.
    pub(super) fn next_commit(&mut self, content: Vec<u8>) -> MlsPayload {
        match self.jobs_mut() {
            Some(j) => j.next_commit(content),
            None => MlsPayload {
                commit_id: 0,
                mls_content: content,
            },
        }
    }

    pub(super) fn start_next_job(&mut self) {
        while self.lifecycle == Lifecycle::Open {
            let Some(job) = self.jobs_mut().and_then(Jobs::next) else {
                return;
            };
            match job {
                Job::Invite { id, member } => {
                    self.start_job(Some(id), Stage::Discovering);
                    self.send_discovery(&member);
                }
                Job::InviteMany { id, members } => {
                    self.start_job(
                        Some(id),
                        Stage::Batch(Batch {
                            discovering: members.clone(),
                            ..Batch::default()
                        }),
                    );
                    for member in &members {
                        self.send_discovery(member);
                    }
                }
                Job::Remove { id, member } => {
                    let Some(member) = self.resolve_member(&member) else {
                        self.events.push_back(Event::JobDone {
                            job: id,
                            result: Err(SessionError::NotAMember(member)),
                        });
                        continue;
                    };
                    let before = self.members.clone();
                    self.forget_member(&member);
                    self.emit(SessionEvent::MemberLeft(member.clone()));
                    self.start_job(Some(id), Stage::Leaving);
                    self.announce_removal(&member, &before, true);
                }
                Job::Announce { removed, before } => {
                    self.start_job(None, Stage::Leaving);
                    self.announce_removal(&removed, &before, false);
                }
                Job::Rejoin {
                    member,
                    key_package,
                    request,
                } => {
                    if !self.members.contains(&member) {
                        continue;
                    }
                    self.start_job(
                        None,
                        Stage::Rejoining {
                            peer: member.clone(),
                            outstanding: 2,
                        },
                    );
                    self.start_rejoin(member, key_package, request);
                }
            }
        }
    }

    /// DISCOVERY_REQUEST for `member`, retransmitted until an instance of its
    /// name answers.
    pub(super) fn send_discovery(&mut self, member: &Name) {
        let mid = self.fresh_control_id();
        let req = self.command_msg(
            member,
            1,
            Kind::DiscoveryRequest,
            mid,
            Cmd::DiscoveryRequest(DiscoveryRequestPayload { destination: None }),
        );
        self.start_control(
            req,
            Kind::DiscoveryReply,
            Waiting::Prefix(member.prefix()),
            Purpose::Discovery,
        );
    }

    /// GROUP_REMOVE to the channel when more than two were members, then
    /// (when `leave`) LEAVE_REQUEST to the removed member.
    pub(super) fn announce_removal(&mut self, removed: &Name, before: &[Name], leave: bool) {
        let commit = match self.crypto.remove_member(removed, self.unix_secs()) {
            Ok(c) => c,
            Err(e) => {
                warn!(session_id = self.id, error = %e, "MLS remove failed");
                None
            }
        };
        let mls = commit.and_then(|c| self.jobs_mut().map(|j| j.next_commit(c)));
        if before.len() > 2 {
            let waiting: BTreeSet<Name> = before
                .iter()
                .filter(|m| {
                    **m != self.local && (leave || *m != removed) && !self.presence.is_offline(m)
                })
                .cloned()
                .collect();
            let mid = self.fresh_control_id();
            let dst = self.destination.clone();
            let msg = self.command_msg(
                &dst,
                GROUP_FANOUT,
                Kind::GroupRemove,
                mid,
                Cmd::GroupRemove(GroupRemovePayload {
                    removed_participant: Some(removed.to_wire()),
                    participants: before.iter().map(Name::to_wire).collect(),
                    mls,
                }),
            );
            self.set_job_stage(Stage::Removing {
                member: removed.clone(),
                leave,
            });
            self.start_control(
                msg,
                Kind::GroupAck,
                Waiting::Names(waiting),
                Purpose::GroupRemove,
            );
        } else if leave {
            self.send_leave_request(removed);
        } else {
            self.finish_job(Ok(()));
        }
    }

    pub(super) fn after_group_remove(&mut self) {
        let next = match self.jobs().and_then(Jobs::stage) {
            Some(Stage::Removing {
                member,
                leave: true,
            }) => Some(member.clone()),
            _ => None,
        };
        match next {
            Some(member) => self.send_leave_request(&member),
            None => self.finish_job(Ok(())),
        }
    }

    pub(super) fn send_leave_request(&mut self, member: &Name) {
        self.set_job_stage(Stage::Leaving);
        let mid = self.fresh_control_id();
        let msg = self.command_msg(
            member,
            1,
            Kind::LeaveRequest,
            mid,
            Cmd::LeaveRequest(LeaveRequestPayload { destination: None }),
        );
        self.start_control(
            msg,
            Kind::LeaveReply,
            Waiting::Names(BTreeSet::from([member.clone()])),
            Purpose::Leave,
        );
    }

    pub(super) fn after_discovery(&mut self, peer: Name) {
        if self.members.contains(&peer) {
            return self.fail_job(SessionError::AlreadyMember(peer));
        }
        if let Err(e) = self.prepare_group() {
            return self.fail_job(e);
        }
        if self.kind == SessionKind::PointToPoint {
            self.destination = peer.clone();
        }
        self.set_job_stage(Stage::Joining { peer: peer.clone() });
        self.send_join_request(peer);
    }

    /// Subscribes the channel (group) and creates the MLS group, once.
    pub(super) fn prepare_group(&mut self) -> Result<(), SessionError> {
        if self.kind == SessionKind::Group && !self.channel_subscribed {
            self.channel_subscribed = true;
            self.events
                .push_back(Event::Subscribe(self.destination.clone()));
        }
        if self.moderator_state().is_some_and(|m| !m.group_created) {
            self.crypto.create_group(self.unix_secs())?;
            if let Some(m) = self.moderator_mut() {
                m.group_created = true;
            }
        }
        Ok(())
    }

    /// JOIN_REQUEST to a discovered `peer`, retransmitted until it replies.
    pub(super) fn send_join_request(&mut self, peer: Name) {
        let timer_settings = self.data.reliability().map(|(i, r)| TimerSettings {
            timeout: u32::try_from(i.as_millis()).unwrap_or(u32::MAX),
            max_retries: r,
        });
        let channel = match self.kind {
            SessionKind::Group => Some(self.destination.to_wire()),
            SessionKind::PointToPoint => None,
        };
        let mid = self.fresh_control_id();
        let msg = self.out(
            &peer,
            1,
            Kind::JoinRequest,
            mid,
            command_content(Cmd::JoinRequest(JoinRequestPayload {
                enable_mls: self.crypto.enabled(),
                timer_settings,
                channel,
            })),
            self.metadata.clone(),
        );
        self.start_control(
            msg,
            Kind::JoinReply,
            Waiting::Names(BTreeSet::from([peer])),
            Purpose::Join,
        );
    }

    pub(super) fn in_batch(&self) -> bool {
        self.jobs().is_some_and(Jobs::in_batch)
    }

    pub(super) fn batch(&mut self) -> Option<&mut Batch> {
        self.jobs_mut().and_then(Jobs::batch)
    }

    pub(super) fn batch_discovered(&mut self, peer: Name) {
        if let Err(e) = self.prepare_group() {
            return self.fail_job(e);
        }
        let Some(b) = self.batch() else { return };
        b.discovering.retain(|m| m.prefix() != peer.prefix());
        b.joining.insert(peer.clone());
        self.send_join_request(peer);
    }

    pub(super) fn batch_joined(&mut self, reply: &Inbound) {
        let key_package = match reply.command() {
            Some(Cmd::JoinReply(r)) => r.key_package.clone(),
            _ => None,
        };
        let Some(b) = self.batch() else { return };
        if !b.joining.remove(&reply.source) {
            return;
        }
        b.joined.push((reply.source.clone(), key_package));
        if !b.discovering.is_empty() || !b.joining.is_empty() {
            return;
        }
        let joined = std::mem::take(&mut b.joined);
        let added = match self.crypto.add_members(&joined, self.unix_secs()) {
            Ok(a) => a,
            Err(e) => return self.fail_job(e.into()),
        };
        let welcome = added.map(|a| {
            let commit = self.next_commit(a.commit);
            MlsPayload {
                commit_id: commit.commit_id,
                mls_content: a.welcome,
            }
        });
        let peers: Vec<Name> = joined.into_iter().map(|(n, _)| n).collect();
        for p in &peers {
            self.admit(p);
        }
        let participants: Vec<wire::Name> = self.members.iter().map(Name::to_wire).collect();
        for peer in &peers {
            let mid = self.fresh_control_id();
            let msg = self.command_msg(
                peer,
                1,
                Kind::GroupWelcome,
                mid,
                Cmd::GroupWelcome(GroupWelcomePayload {
                    participants: participants.clone(),
                    mls: welcome.clone(),
                }),
            );
            self.start_control(
                msg,
                Kind::GroupAck,
                Waiting::Names(BTreeSet::from([peer.clone()])),
                Purpose::Welcome,
            );
        }
        if let Some(b) = self.batch() {
            b.welcoming = peers.iter().cloned().collect();
            b.added = peers;
        }
    }

    pub(super) fn batch_welcomed(&mut self, peer: &Name) {
        let Some(b) = self.batch() else { return };
        if !b.welcoming.remove(peer) || !b.welcoming.is_empty() {
            return;
        }
        let added = std::mem::take(&mut b.added);
        for peer in added {
            if let Some(l) = self.liveness_mut() {
                l.heard_from(&peer);
            }
            self.emit(SessionEvent::MemberJoined(peer));
        }
        self.finish_job(Ok(()));
    }

    /// A discovery, join or welcome of the batch went unanswered: the whole
    /// invite fails, naming who did not answer. Members whose welcome was
    /// not acknowledged are forgotten.
    pub(super) fn batch_failed(&mut self, c: Control) {
        let member = match &c.waiting {
            Waiting::Names(set) => set.iter().next().cloned(),
            Waiting::Prefix(p) => self
                .batch()
                .and_then(|b| b.discovering.iter().find(|m| m.prefix() == *p).cloned()),
        };
        let what = match c.purpose {
            Purpose::Discovery => "discovery",
            Purpose::Join => "join",
            _ => "welcome",
        };
        if c.purpose == Purpose::Welcome {
            let unwelcomed: Vec<Name> = self
                .batch()
                .map(|b| b.welcoming.iter().cloned().collect())
                .unwrap_or_default();
            for m in &unwelcomed {
                self.forget_member(m);
            }
        }
        let e = match member {
            Some(member) if c.purpose == Purpose::Discovery => {
                SessionError::DiscoveryTimeout { member }
            }
            Some(member) => SessionError::MemberTimeout { what, member },
            None => SessionError::Timeout { what },
        };
        self.fail_job(e);
    }

    pub(super) fn after_join(&mut self, reply: &Inbound) {
        let Some(Stage::Joining { peer }) = self.jobs().and_then(Jobs::stage) else {
            return;
        };
        let peer = peer.clone();
        let key_package = match reply.command() {
            Some(Cmd::JoinReply(r)) => r.key_package.clone(),
            _ => None,
        };
        let added = match self
            .crypto
            .add_member(&peer, key_package.as_deref(), self.unix_secs())
        {
            Ok(a) => a,
            Err(e) => return self.fail_job(e.into()),
        };
        self.admit(&peer);
        let (commit, welcome) = match added {
            Some(a) => {
                let commit = self.next_commit(a.commit);
                let welcome = MlsPayload {
                    commit_id: commit.commit_id,
                    mls_content: a.welcome,
                };
                (Some(commit), Some(welcome))
            }
            None => (None, None),
        };
        if self.kind == SessionKind::PointToPoint {
            // The peer is a data endpoint from now on: flush early publishes.
            let held: Vec<_> = self
                .moderator_mut()
                .map(|m| m.held_back.drain(..).collect())
                .unwrap_or_default();
            for (payload, metadata) in held {
                if let Err(e) = self.send_sequenced(&peer, 1, payload, metadata, vec![peer.clone()])
                {
                    warn!(session_id = self.id, error = %e, "held-back publish failed");
                }
            }
        }
        let participants: Vec<wire::Name> = self.members.iter().map(Name::to_wire).collect();
        let mut outstanding = 0;
        if self.kind == SessionKind::Group && self.members.len() > 2 {
            let waiting: BTreeSet<Name> = self
                .members
                .iter()
                .filter(|m| **m != self.local && **m != peer && !self.presence.is_offline(m))
                .cloned()
                .collect();
            let mid = self.fresh_control_id();
            let dst = self.destination.clone();
            let msg = self.command_msg(
                &dst,
                GROUP_FANOUT,
                Kind::GroupAdd,
                mid,
                Cmd::GroupAdd(GroupAddPayload {
                    new_participant: Some(peer.to_wire()),
                    participants: participants.clone(),
                    mls: commit,
                }),
            );
            self.start_control(
                msg,
                Kind::GroupAck,
                Waiting::Names(waiting),
                Purpose::GroupAdd,
            );
            outstanding += 1;
        }
        let mid = self.fresh_control_id();
        let msg = self.command_msg(
            &peer,
            1,
            Kind::GroupWelcome,
            mid,
            Cmd::GroupWelcome(GroupWelcomePayload {
                participants,
                mls: welcome,
            }),
        );
        self.start_control(
            msg,
            Kind::GroupAck,
            Waiting::Names(BTreeSet::from([peer.clone()])),
            Purpose::Welcome,
        );
        outstanding += 1;
        self.set_job_stage(Stage::Welcoming { peer, outstanding });
    }

    pub(super) fn welcome_part_done(&mut self) {
        if let Some(Active {
            stage: Stage::Rejoining { outstanding, .. },
            ..
        }) = self.jobs_mut().and_then(|j| j.active.as_mut())
        {
            *outstanding = outstanding.saturating_sub(1);
            if *outstanding == 0 {
                self.finish_job(Ok(()));
            }
            return;
        }
        let Some(Active {
            stage: Stage::Welcoming { peer, outstanding },
            ..
        }) = self.jobs_mut().and_then(|j| j.active.as_mut())
        else {
            return;
        };
        *outstanding = outstanding.saturating_sub(1);
        if *outstanding > 0 {
            return;
        }
        let peer = peer.clone();
        if let Some(l) = self.liveness_mut() {
            l.heard_from(&peer);
        }
        self.emit(SessionEvent::MemberJoined(peer));
        self.finish_job(Ok(()));
    }

    pub(super) fn finish_job(&mut self, result: Result<(), SessionError>) {
        let Some(active) = self.jobs_mut().and_then(Jobs::take_active) else {
            return;
        };
        self.controls.cancel_job_requests();
        let failed = result.is_err();
        if let Some(job) = active.job {
            self.events.push_back(Event::JobDone {
                job,
                result: result.clone(),
            });
        }
        if failed && self.kind == SessionKind::PointToPoint {
            let reason = match result {
                Err(e) => format!("peer not reachable: {e}"),
                Ok(()) => String::new(),
            };
            self.finish_close(&reason);
        }
    }

    pub(super) fn fail_job(&mut self, e: SessionError) {
        warn!(session_id = self.id, error = %e, "invite/remove failed");
        self.finish_job(Err(e));
    }

    pub(super) fn cancel_jobs(&mut self, e: SessionError) {
        // Job requests exist only while a job runs; without one this is a no-op.
        self.controls.cancel_job_requests();
        let done = self
            .jobs_mut()
            .map(|j| j.cancel_all(&e))
            .unwrap_or_default();
        self.events.extend(done);
    }

    pub(super) fn on_leave_request_at_moderator(&mut self, inb: &Inbound) {
        self.send_leave_reply(inb);
        if inb.flag(keys::DELETE_GROUP) {
            self.close(self.now);
            return;
        }
        if !self.members.contains(&inb.source) {
            return;
        }
        if !inb.flag(keys::LEAVING_SESSION) {
            return self.drop_msg(DropReason::Unexpected);
        }
        self.member_gone(&inb.source.clone(), "peer left the session");
    }

    /// A member left or stopped answering pings.
    pub(super) fn member_gone(&mut self, member: &Name, p2p_reason: &str) {
        let before = self.members.clone();
        self.forget_member(member);
        self.emit(SessionEvent::MemberLeft(member.clone()));
        if self.kind == SessionKind::PointToPoint || before.len() <= 2 {
            self.cancel_jobs(SessionError::Closed);
            self.finish_close(p2p_reason);
        } else {
            if let Some(j) = self.jobs_mut() {
                j.push_announcement(member.clone(), before);
            }
        }
    }

    /// With MLS on, applies the MLS part of a welcome or commit and
    /// records its commit id; false (the message dropped) when it is
    /// missing or refused. With MLS off there is nothing to apply.
    fn apply_mls(&mut self, mls: Option<&MlsPayload>, step: MlsStep) -> bool {
        if !self.crypto.enabled() {
            return true;
        }
        let Some(mls) = mls else {
            self.drop_msg(DropReason::Malformed);
            return false;
        };
        let now = self.unix_secs();
        let applied = match step {
            MlsStep::Welcome => self.crypto.process_welcome(&mls.mls_content, now),
            MlsStep::Commit => self.crypto.process_commit(&mls.mls_content, now),
        };
        if let Err(e) = applied {
            warn!(session_id = self.id, error = %e, ?step, "MLS message rejected");
            self.drop_msg(DropReason::DecryptFailed);
            return false;
        }
        if let Some(p) = self.participant_mut() {
            p.commits.applied(mls.commit_id);
        }
        true
    }

    pub(super) fn on_welcome(&mut self, inb: &Inbound) {
        if self.is_established() {
            return self.send_group_ack(inb);
        }
        let Some(Cmd::GroupWelcome(w)) = inb.command() else {
            return self.drop_msg(DropReason::Malformed);
        };
        let Some(participants) = names_of(&w.participants) else {
            return self.drop_msg(DropReason::Malformed);
        };
        if !self.apply_mls(w.mls.as_ref(), MlsStep::Welcome) {
            return;
        }
        if let Some(p) = self.participant_mut() {
            p.welcomed = true;
        }
        if !participants.contains(&self.local) {
            warn!(
                session_id = self.id,
                "welcome does not list us; using it anyway"
            );
        }
        self.members = participants;
        if !self.members.contains(&self.moderator_name) {
            self.members.insert(0, self.moderator_name.clone());
        }
        if !self.members.contains(&self.local) {
            self.members.push(self.local.clone());
        }
        if self.kind == SessionKind::Group {
            self.channel_subscribed = true;
            self.events
                .push_back(Event::Subscribe(self.destination.clone()));
        }
        self.events.push_back(Event::Established);
        for m in self.others() {
            self.emit(SessionEvent::MemberJoined(m));
        }
        self.send_group_ack(inb);
    }

    pub(super) fn on_commit(&mut self, inb: Inbound) {
        if !self.is_established() {
            // Not acked: the moderator retransmits once we are welcomed.
            return self.drop_msg(DropReason::Unexpected);
        }
        let commit_id = match inb.command() {
            Some(Cmd::GroupAdd(a)) => a.mls.as_ref().map(|m| m.commit_id),
            Some(Cmd::GroupRemove(r)) => r.mls.as_ref().map(|m| m.commit_id),
            Some(Cmd::GroupRejoin(a)) => {
                if a.new_participant.as_ref() == Some(&self.local.to_wire()) {
                    return self.on_own_rejoin_update(&inb);
                }
                a.mls.as_ref().map(|m| m.commit_id)
            }
            _ => return self.drop_msg(DropReason::Malformed),
        };
        let Some(commit_id) = commit_id.filter(|_| self.crypto.enabled()) else {
            return self.apply_commit(&inb);
        };
        let Some(p) = self.participant_mut() else {
            return self.drop_msg(DropReason::Unexpected);
        };
        match p.commits.offer(commit_id, inb) {
            Offer::Duplicate(inb) => {
                // Already applied: acknowledge again, apply nothing.
                self.counters.record(DropReason::Duplicate);
                self.send_group_ack(&inb);
            }
            Offer::Refused => self.drop_msg(DropReason::OutOfRange),
            Offer::Buffered => {}
            Offer::Ready => {
                while let Some((id, next)) =
                    self.participant_mut().and_then(|p| p.commits.pop_next())
                {
                    self.apply_commit(&next);
                    if self.participant_state().map(|p| p.commits.last()) != Some(id) {
                        break;
                    }
                }
            }
        }
    }

    pub(super) fn apply_commit(&mut self, inb: &Inbound) {
        let (mls, participants, change) = match inb.command() {
            Some(Cmd::GroupAdd(a)) => (
                &a.mls,
                &a.participants,
                a.new_participant.as_ref().map(|n| (true, n)),
            ),
            Some(Cmd::GroupRemove(r)) => (
                &r.mls,
                &r.participants,
                r.removed_participant.as_ref().map(|n| (false, n)),
            ),
            // A member re-admitted: the same members, a new leaf for it.
            Some(Cmd::GroupRejoin(a)) => (
                &a.mls,
                &a.participants,
                a.new_participant.as_ref().map(|n| (true, n)),
            ),
            _ => return self.drop_msg(DropReason::Malformed),
        };
        let Some((added, who)) = change else {
            return self.drop_msg(DropReason::Malformed);
        };
        let Ok(who) = Name::from_wire(who) else {
            return self.drop_msg(DropReason::Malformed);
        };
        let Some(participants) = names_of(participants) else {
            return self.drop_msg(DropReason::Malformed);
        };
        if !self.apply_mls(mls.as_ref(), MlsStep::Commit) {
            return;
        }
        if added {
            self.presence.set_online(&who);
            for p in participants {
                if self.admit(&p) {
                    self.emit(SessionEvent::MemberJoined(p));
                }
            }
            if self.admit(&who) {
                self.emit(SessionEvent::MemberJoined(who));
            }
        } else if who != self.local && self.members.contains(&who) {
            self.forget_member(&who);
            self.emit(SessionEvent::MemberLeft(who));
        }
        self.send_group_ack(inb);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(app: &str) -> Name {
        Name::new("org", "ns", app).with_id(1)
    }

    /// Applies everything ready, as the participant does.
    fn drain(q: &mut CommitQueue<&'static str>) -> Vec<(u32, &'static str)> {
        let mut out = Vec::new();
        while let Some((id, c)) = q.pop_next() {
            q.applied(id);
            out.push((id, c));
        }
        out
    }

    #[test]
    fn reordered_commits_are_applied_in_commit_id_order() {
        let mut q = CommitQueue::new(1, 1024, 1024);
        assert_eq!(q.offer(4, "four"), Offer::Buffered);
        assert_eq!(q.offer(3, "three"), Offer::Buffered);
        assert!(drain(&mut q).is_empty());
        assert_eq!(q.offer(2, "two"), Offer::Ready);
        assert_eq!(drain(&mut q), vec![(2, "two"), (3, "three"), (4, "four")]);
        assert_eq!(q.last(), 4);
    }

    #[test]
    fn an_already_applied_commit_comes_back_to_be_acknowledged_again() {
        let mut q = CommitQueue::new(0, 1024, 1024);
        assert_eq!(q.offer(1, "one"), Offer::Ready);
        drain(&mut q);
        // Its GROUP_ACK was lost: the moderator re-sends it.
        assert_eq!(q.offer(1, "one again"), Offer::Duplicate("one again"));
        assert_eq!(q.last(), 1);
    }

    #[test]
    fn a_commit_offered_twice_while_waiting_keeps_its_first_copy() {
        let mut q = CommitQueue::new(0, 1024, 1024);
        assert_eq!(q.offer(2, "first"), Offer::Buffered);
        assert_eq!(q.offer(2, "second"), Offer::Buffered);
        assert_eq!(q.waiting(), 1);
        q.offer(1, "one");
        assert_eq!(drain(&mut q), vec![(1, "one"), (2, "first")]);
    }

    #[test]
    fn commits_too_far_ahead_or_beyond_the_buffer_are_refused_but_the_next_is_always_taken() {
        let mut q = CommitQueue::new(10, 100, 2);
        assert_eq!(q.offer(111, "far"), Offer::Refused);
        assert_eq!(q.offer(110, "edge"), Offer::Buffered);
        assert_eq!(q.offer(50, "b"), Offer::Buffered);
        assert_eq!(q.offer(60, "c"), Offer::Refused);
        assert_eq!(q.offer(11, "next"), Offer::Ready);
    }

    #[test]
    fn a_commit_that_failed_to_apply_is_gone_until_it_is_offered_again() {
        let mut q = CommitQueue::new(0, 1024, 1024);
        q.offer(2, "two");
        q.offer(1, "bad");
        // Applying 1 fails: it is not marked applied, 2 keeps waiting.
        assert_eq!(q.pop_next(), Some((1, "bad")));
        assert_eq!(q.pop_next(), None);
        assert_eq!(q.offer(1, "good"), Offer::Ready);
        assert_eq!(drain(&mut q), vec![(1, "good"), (2, "two")]);
    }

    #[test]
    fn jobs_run_one_at_a_time_in_order_and_announcements_jump_the_queue() {
        let mut jobs = Jobs::default();
        let a = jobs.push(|id| Job::Invite {
            id,
            member: name("a"),
        });
        let b = jobs.push(|id| Job::Remove {
            id,
            member: name("b"),
        });
        assert_eq!((a, b), (1, 2));
        let Some(Job::Invite { id, .. }) = jobs.next() else {
            panic!("the invite comes first");
        };
        jobs.start(Some(id), Stage::Discovering);
        assert!(jobs.next().is_none(), "one job at a time");
        jobs.push_announcement(name("c"), vec![name("m"), name("c")]);
        assert_eq!(jobs.take_active().and_then(|a| a.job), Some(1));
        assert!(matches!(jobs.next(), Some(Job::Announce { .. })));
        jobs.start(None, Stage::Leaving);
        assert!(
            jobs.take_active().is_some_and(|a| a.job.is_none()),
            "nobody asked for an announcement"
        );
        assert!(matches!(jobs.next(), Some(Job::Remove { id: 2, .. })));
        assert!(jobs.is_empty());
    }

    #[test]
    fn cancelling_fails_the_queued_jobs_then_the_running_one() {
        let mut jobs = Jobs::default();
        for app in ["a", "b", "c"] {
            jobs.push(|id| Job::Invite {
                id,
                member: name(app),
            });
        }
        let first = jobs.next().and_then(|j| j.id());
        jobs.start(first, Stage::Discovering);
        jobs.push_announcement(name("d"), Vec::new());
        let done: Vec<JobId> = jobs
            .cancel_all(&SessionError::Closed)
            .into_iter()
            .map(|e| match e {
                Event::JobDone {
                    job,
                    result: Err(SessionError::Closed),
                } => job,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(done, vec![2, 3, 1]);
        assert!(jobs.is_empty());
    }

    #[test]
    fn commits_are_numbered_from_one() {
        let mut jobs = Jobs::default();
        assert_eq!(jobs.next_commit(vec![1]).commit_id, 1);
        assert_eq!(jobs.next_commit(vec![2]).commit_id, 2);
    }
}
