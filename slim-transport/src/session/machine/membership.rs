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

use crate::Name;
use crate::wire::MlsPayload;

use super::super::{Event, JobId, SessionError};

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
}

impl Job {
    /// The id the app knows the job by (an announcement has none).
    fn id(&self) -> Option<JobId> {
        match self {
            Job::Invite { id, .. } | Job::InviteMany { id, .. } | Job::Remove { id, .. } => {
                Some(*id)
            }
            Job::Announce { .. } => None,
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
