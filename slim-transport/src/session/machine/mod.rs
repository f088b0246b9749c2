//! One session's state machine: moderator or participant, point-to-point or
//! group, with the control handshakes, reliability and liveness of SLIM v1.3
//! (§d.4–§d.11).
//!
//! Inputs: [`Session::handle_message`], the app commands and
//! [`Session::handle_timeout`]; outputs: [`Session::poll_transmit`],
//! [`Session::poll_timeout`], [`Session::poll_event`]. It must not do I/O,
//! read clocks or panic on anything a peer sends.
//!
//! Laid out as quinn-proto's `connection/`: this file is the facade
//! (construction, the sans-IO surface, app commands, stamping and sending,
//! inbound dispatch, what a completed or failed control request means); each
//! sub-state is a type of its own, tested alone with hand-driven time:
//! * `controls`: pending control requests, their retries and replies;
//! * `membership`: the moderator's invite/remove jobs and the commit queue;
//! * `liveness`: ping rounds, missed counts, the participant's watchdog;
//! * `data`: sequencing, send window, acks, RTX, ordering, delivery;
//! * `close`: the lifecycle from open to dropped and the close protocol;
//! * `role`: moderator or participant, each with the state only it keeps;
//! * `timers`: the session-wide timer table `poll_timeout` starts from.
//!
//! The session core is generation-neutral (v1-shaped messages); SLIM v3 is
//! a codec at the edge (`crate::codec3`) that only hands in an AAD hook
//! through [`super::Context`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng as _;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tracing::{debug, warn};

use crate::Name;
use crate::wire::{
    self, DiscoveryReplyPayload, GroupAckPayload, JoinReplyPayload, LeaveReplyPayload, PingPayload,
    SessionMessageType as Kind, SessionType, command_payload::CommandPayloadType as Cmd,
};

use super::packet::{
    self, GROUP_FANOUT, Inbound, MAX_PUBLISH_ID, Out, TRUE, app_content, command_content, keys,
};
use super::reliable::Retry;
#[cfg(test)]
use super::reliable::{Sender, Stream};
use super::{
    Context, Counters, DEFAULT_INTERVAL, DEFAULT_MAX_RETRIES, DropReason, Event, InboundFilter,
    JobId, SessionConfig, SessionCrypto, SessionError, SessionEvent, SessionKind,
};

mod close;
mod controls;
mod data;
mod liveness;
mod membership;
mod presence;
mod role;
mod timers;

use close::Lifecycle;
use controls::{Control, Controls, Due, Purpose, Waiting};
use data::Data;
#[cfg(test)]
pub(crate) use data::MAX_UNDECRYPTED_IN_A_ROW;
use liveness::{Liveness, WATCHDOG_PERIOD};
pub(crate) use membership::{CommitQueue, Offer};
use membership::{Job, Jobs, Stage};
use presence::Presence;
use role::{ModeratorState, ParticipantState, Role};
use timers::{Timer, Timers};

/// One SLIM session, moderator or participant. See the module docs.
pub struct Session {
    id: u32,
    kind: SessionKind,
    /// Moderator or participant, with what only that role keeps.
    role: Role,
    /// Who is offline, and our own soft close or rejoin (SLIM v3).
    presence: Presence,
    ctx: Context,
    rng: StdRng,
    /// Token nonces: a fork of `rng`, so minting does not move the
    /// stream session, control and PUBLISH_TO ids are drawn from.
    nonce_rng: StdRng,
    crypto: Box<dyn SessionCrypto>,
    now: Instant,
    local: Name,
    /// P2P: the peer (full name once known); group: the channel.
    destination: Name,
    /// The moderator's full name (our own when we are the moderator).
    moderator_name: Name,
    /// Full names, moderator first, including ourselves.
    members: Vec<Name>,
    control_interval: Duration,
    control_retries: u32,
    metadata: std::collections::HashMap<String, String>,
    lifecycle: Lifecycle,
    /// Sequencing, acks, RTX, ordering and delivery of MSGs.
    data: Data,
    controls: Controls,
    channel_subscribed: bool,
    timers: Timers,
    outbox: VecDeque<wire::Message>,
    /// MSG_ACKs waiting for the next message out (or [`Timer::Ack`]).
    held_acks: Vec<wire::Message>,
    events: VecDeque<Event>,
    counters: Counters,
    /// MSGs the application will discard, recognised before decryption.
    filter: Option<InboundFilter>,
    /// The application is not keeping up with its events: fresh MSGs are
    /// refused unacknowledged (see [`Session::set_receive_paused`]).
    receive_paused: bool,
}

/// How long a MSG_ACK may wait for another message of its session to go
/// out with. Acks held this way leave in the same flush as that message, so
/// the data plane and the link write them together (one socket write for an
/// answer and the ack of its request, or for a request and the acks of the
/// previous answer); an idle session sends them alone when it expires.
/// Senders retransmit after their interval (1 s in SlimRPC sessions, both
/// lines), far above this.
pub(crate) const ACK_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("moderator", &self.is_moderator())
            .field("local", &self.local)
            .field("destination", &self.destination)
            .field("members", &self.members)
            .field("lifecycle", &self.lifecycle)
            .finish_non_exhaustive()
    }
}

/// What every new session starts from.
struct Basics {
    ctx: Context,
    id: u32,
    kind: SessionKind,
    role: Role,
    local: Name,
    destination: Name,
    now: Instant,
}

impl Session {
    fn blank(b: Basics, crypto: Box<dyn SessionCrypto>, rng: StdRng) -> Self {
        let Basics {
            ctx,
            id,
            kind,
            role,
            local,
            destination,
            now,
        } = b;
        Self {
            id,
            kind,
            role,
            presence: Presence::default(),
            nonce_rng: fork(&rng),
            rng,
            crypto,
            now,
            moderator_name: local.clone(),
            members: vec![local.clone()],
            local,
            destination,
            control_interval: DEFAULT_INTERVAL,
            control_retries: DEFAULT_MAX_RETRIES,
            metadata: HashMap::new(),
            lifecycle: Lifecycle::Open,
            data: Data::new(None),
            controls: Controls::default(),
            channel_subscribed: false,
            timers: Timers::default(),
            outbox: VecDeque::new(),
            held_acks: Vec::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            filter: None,
            receive_paused: false,
            ctx,
        }
    }

    /// A moderator session (the creator's side). P2P sessions invite `dest`
    /// at once and return that invite's job id: its [`Event::JobDone`] is the
    /// handshake's completion.
    pub(crate) fn new_moderator(
        ctx: Context,
        id: u32,
        config: &SessionConfig,
        dest: &Name,
        crypto: Box<dyn SessionCrypto>,
        rng: StdRng,
        now: Instant,
    ) -> (Self, Option<JobId>) {
        let local = ctx.app_name.clone();
        let basics = Basics {
            ctx,
            id,
            kind: config.kind,
            role: Role::Moderator(ModeratorState::new(Liveness::new(config.ping_interval))),
            local,
            destination: dest.clone(),
            now,
        };
        let mut s = Self::blank(basics, crypto, rng);
        s.control_interval = config.interval.unwrap_or(DEFAULT_INTERVAL);
        s.control_retries = config.max_retries.unwrap_or(DEFAULT_MAX_RETRIES);
        let reliability = match (config.kind, config.interval, config.max_retries) {
            (_, Some(i), Some(r)) => Some((i, r)),
            (SessionKind::Group, _, _) => Some((s.control_interval, s.control_retries)),
            _ => None,
        };
        s.data = Data::new(reliability);
        s.metadata = config.metadata.clone();
        if let Some(interval) = s.moderator_state().map(|m| m.liveness.interval()) {
            s.timers.set(Timer::Ping, now + interval);
        }
        let job = match config.kind {
            SessionKind::PointToPoint => {
                let id = s.push_job_invite(dest.clone()).ok();
                s.progress();
                id
            }
            SessionKind::Group => None,
        };
        (s, job)
    }

    /// A participant session created by a verified JOIN_REQUEST; answers it.
    pub(crate) fn new_participant(
        ctx: Context,
        join: &Inbound,
        crypto: Box<dyn SessionCrypto>,
        rng: StdRng,
        now: Instant,
    ) -> Result<Self, DropReason> {
        let Some(Cmd::JoinRequest(req)) = join.command() else {
            return Err(DropReason::Malformed);
        };
        let kind = match join.session_type {
            SessionType::PointToPoint => SessionKind::PointToPoint,
            SessionType::Multicast => SessionKind::Group,
            SessionType::Unspecified => return Err(DropReason::Malformed),
        };
        if join.flag(keys::IS_MODERATOR) {
            // Control-plane-created moderators are not supported.
            return Err(DropReason::Unexpected);
        }
        if req.enable_mls != crypto.enabled() {
            return Err(DropReason::Unexpected);
        }
        let channel = match (kind, &req.channel) {
            (SessionKind::Group, Some(c)) => {
                Some(Name::from_wire(c).map_err(|_| DropReason::Malformed)?)
            }
            (SessionKind::Group, None) => return Err(DropReason::Malformed),
            (SessionKind::PointToPoint, _) => None,
        };
        if kind == SessionKind::Group && req.timer_settings.is_none() {
            return Err(DropReason::Malformed);
        }
        let local = join.destination.with_id(ctx.app_name.id());
        let destination = channel.unwrap_or_else(|| join.source.clone());
        let basics = Basics {
            ctx,
            id: join.session_id,
            kind,
            role: Role::Participant(ParticipantState::default()),
            local,
            destination,
            now,
        };
        let mut s = Self::blank(basics, crypto, rng);
        s.moderator_name = join.source.clone();
        s.members = vec![join.source.clone(), s.local.clone()];
        if let Some(t) = &req.timer_settings {
            let interval = Duration::from_millis(u64::from(t.timeout.max(1)));
            s.data = Data::new(Some((interval, t.max_retries)));
            s.control_interval = interval;
            s.control_retries = t.max_retries;
        }
        s.metadata = join.metadata.clone();
        s.metadata.remove(keys::IS_MODERATOR);
        s.timers.set(Timer::Watchdog, now + WATCHDOG_PERIOD);
        let key_package = s.crypto.key_package(s.unix_secs()).map_err(|e| {
            warn!(session_id = s.id, error = %e, "no key package for JOIN_REPLY");
            DropReason::Unexpected
        })?;
        let reply = s.command_msg(
            &join.source,
            1,
            Kind::JoinReply,
            join.message_id,
            Cmd::JoinReply(JoinReplyPayload { key_package }),
        );
        if let Some(p) = s.participant_mut() {
            p.join_reply = Some(reply.clone());
        }
        if let Some(conn) = join.incoming_conn {
            s.events.push_back(Event::Route {
                name: join.source.clone(),
                conn,
            });
        }
        s.send(reply);
        Ok(s)
    }

    // ----- accessors -------------------------------------------------------

    pub fn id(&self) -> u32 {
        self.id
    }
    pub fn kind(&self) -> SessionKind {
        self.kind
    }
    pub fn is_moderator(&self) -> bool {
        self.role.is_moderator()
    }
    /// Our full name in this session.
    pub fn local_name(&self) -> &Name {
        &self.local
    }
    /// The peer (P2P, full name once discovered) or the channel (group).
    pub fn destination(&self) -> &Name {
        &self.destination
    }
    /// Current members (full names), moderator first, ourselves included.
    pub fn members(&self) -> &[Name] {
        &self.members
    }
    /// Session metadata (the JOIN_REQUEST's, for a participant).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }
    pub fn is_closed(&self) -> bool {
        self.lifecycle == Lifecycle::Closed
    }
    /// Closed and past its grace period: the driver may drop it.
    pub fn is_finished(&self, now: Instant) -> bool {
        self.is_closed() && self.timers.is_expired(Timer::Linger, now)
    }
    /// Participant: the welcome was processed.
    pub fn is_established(&self) -> bool {
        self.role.is_established()
    }
    pub fn counters(&self) -> Counters {
        self.counters
    }
    /// Back-pressure from the application: while paused, a reliable
    /// session refuses fresh MSGs that it would deliver, *without*
    /// acknowledging them, exactly as if they had been lost on the way. The
    /// sender keeps them and retransmits, and its send window stops it after
    /// [`super::SEND_WINDOW`] unacknowledged ones, so nothing the session
    /// acknowledged is ever dropped and the app's queue stays bounded.
    /// Everything else goes on as usual: acks, pings, control messages,
    /// duplicates (acked again) and RTX replies (they fill gaps of messages
    /// already acknowledged and held). A session without data reliability
    /// ignores this: refusing there would lose messages silently.
    pub fn set_receive_paused(&mut self, paused: bool) {
        self.receive_paused = paused;
    }
    /// True while sent MSGs still wait for acknowledgements (or for room in
    /// the send window).
    pub fn has_unacked(&self) -> bool {
        !self.all_acked()
    }

    fn all_acked(&self) -> bool {
        self.data.all_acked()
    }

    /// From now on, MSGs `filter` picks are acknowledged but neither
    /// decrypted nor delivered (see [`InboundFilter`]).
    pub fn set_inbound_filter(&mut self, filter: InboundFilter) {
        self.filter = Some(filter);
    }

    #[cfg(test)]
    pub(crate) fn sender_mut(&mut self) -> &mut Sender {
        &mut self.data.sender
    }
    /// Tests of the id wrap: pretend the stream from `source` starts at `id`.
    #[cfg(test)]
    pub(crate) fn start_stream_at(&mut self, source: Name, id: u32) {
        self.data.streams.insert(source, Stream::starting_at(id));
    }

    // ----- sans-IO surface --------------------------------------------------

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<wire::Message> {
        self.outbox.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return self.timers.get(Timer::Linger);
        }
        // Every input ends with `sync_timers`; a debug build checks that
        // none forgot (an internal invariant, not peer input).
        debug_assert_eq!(self.timers.get(Timer::Data), self.data.deadline());
        debug_assert_eq!(self.timers.get(Timer::Control), self.controls.deadline());
        self.timers.next()
    }

    /// Copies the earliest deadline of the data and control sub-states
    /// (which keep one per message) into the timer table.
    fn sync_timers(&mut self) {
        self.timers.set_or_stop(Timer::Data, self.data.deadline());
        self.timers
            .set_or_stop(Timer::Control, self.controls.deadline());
    }

    /// A message received from the data plane for this session.
    pub fn handle_message(&mut self, msg: wire::Message, now: Instant) {
        self.tick(now);
        match Inbound::parse(msg) {
            Ok(inb) => self.handle_inbound(inb),
            Err(r) => self.drop_msg(r),
        }
        self.progress();
    }

    /// Time passed: retransmit, give up, ping, detect silence.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        if self.is_closed() {
            return;
        }
        if self.timers.is_expired(Timer::Ack, now) {
            self.release_acks();
        }
        self.sender_timeouts();
        self.stream_timeouts();
        self.control_timeouts();
        if self.is_moderator() {
            if self.timers.is_expired(Timer::Ping, now) {
                self.ping_round();
            }
        } else if self.timers.is_expired(Timer::Watchdog, now) {
            self.timers.stop(Timer::Watchdog);
            self.finish_close("moderator unreachable");
        }
        self.progress();
    }

    // ----- app commands -----------------------------------------------------

    /// Sends `payload` to the destination (P2P peer, or the whole group).
    pub fn publish(
        &mut self,
        payload: Vec<u8>,
        metadata: HashMap<String, String>,
        now: Instant,
    ) -> Result<(), SessionError> {
        self.tick(now);
        self.check_can_send()?;
        match self.kind {
            SessionKind::PointToPoint => {
                if self.members.len() < 2
                    && let Some(m) = self.moderator_mut()
                {
                    m.held_back.push_back((payload, metadata));
                    return Ok(());
                }
                let peer = self.destination.clone();
                self.send_sequenced(&peer, 1, payload, metadata, vec![peer.clone()])?;
            }
            SessionKind::Group => {
                let dst = self.destination.clone();
                let others = self.others();
                self.send_sequenced(&dst, GROUP_FANOUT, payload, metadata, others)?;
            }
        }
        self.progress();
        Ok(())
    }

    /// v1.3 PUBLISH_TO: an unsequenced MSG to one member, delivered at once.
    /// In P2P sessions this is a normal publish to the peer.
    pub fn publish_to(
        &mut self,
        member: &Name,
        payload: Vec<u8>,
        mut metadata: HashMap<String, String>,
        now: Instant,
    ) -> Result<(), SessionError> {
        self.tick(now);
        self.check_can_send()?;
        if self.kind == SessionKind::PointToPoint {
            self.check_peer(member)?;
            return self.publish(payload, metadata, now);
        }
        let target = self
            .resolve_member(member)
            .ok_or_else(|| SessionError::NotAMember(member.clone()))?;
        let id = self.rng.random_range((MAX_PUBLISH_ID + 1)..=(u32::MAX - 1));
        metadata.insert(keys::PUBLISH_TO.into(), TRUE.into());
        let msg = self.sealed_msg(&target, 1, id, &payload, metadata)?;
        if let Some(retry) = self.data_retry() {
            self.data.sender.expect_acks(
                id,
                Arc::new(msg.clone()),
                BTreeSet::from([target]),
                retry,
            );
        }
        self.send(msg);
        self.sync_timers();
        Ok(())
    }

    /// A sequenced, ordered, reliable MSG addressed to one member, whose ack
    /// is expected only from that member (see the module docs for how this
    /// differs from v1.3). In P2P sessions this is a normal publish.
    pub fn publish_unicast(
        &mut self,
        member: &Name,
        payload: Vec<u8>,
        metadata: HashMap<String, String>,
        now: Instant,
    ) -> Result<(), SessionError> {
        self.tick(now);
        self.check_can_send()?;
        if self.kind == SessionKind::PointToPoint {
            self.check_peer(member)?;
            return self.publish(payload, metadata, now);
        }
        let target = self
            .resolve_member(member)
            .ok_or_else(|| SessionError::NotAMember(member.clone()))?;
        let dst = target.clone();
        let sent = self.send_sequenced(&dst, GROUP_FANOUT, payload, metadata, vec![target]);
        self.sync_timers();
        sent
    }

    /// Moderator of a group: queues an invite of `member` (usually a NULL-id
    /// name: discovery picks an instance). Completion is [`Event::JobDone`].
    pub fn invite(&mut self, member: &Name, now: Instant) -> Result<JobId, SessionError> {
        self.check_group_moderator(
            now,
            "a point-to-point session invites its peer when created",
        )?;
        if !member.has_null_id() && self.members.contains(member) {
            return Err(SessionError::AlreadyMember(member.clone()));
        }
        let id = self.push_job_invite(member.clone())?;
        self.progress();
        Ok(id)
    }

    /// The checks every membership command of a group's moderator starts
    /// with; `p2p` says why a point-to-point session refuses it.
    fn check_group_moderator(
        &mut self,
        now: Instant,
        p2p: &'static str,
    ) -> Result<(), SessionError> {
        self.tick(now);
        self.check_open()?;
        if !self.is_moderator() {
            return Err(SessionError::NotModerator);
        }
        if self.kind == SessionKind::PointToPoint {
            return Err(SessionError::Unsupported(p2p));
        }
        Ok(())
    }

    /// Moderator of a group that has no members but itself yet: invites all
    /// of `members` at once. Discoveries and joins run in parallel, and one
    /// MLS commit adds everybody, so each of them gets a GROUP_WELCOME with
    /// `commit_id` 1 and the full member list (no GROUP_ADD is needed: nobody
    /// was welcomed before). Completion is [`Event::JobDone`]: `Ok` once every
    /// member acknowledged its welcome; an error (naming the member when one
    /// did not answer) as soon as any of them fails.
    pub fn invite_many(&mut self, members: &[Name], now: Instant) -> Result<JobId, SessionError> {
        self.check_group_moderator(
            now,
            "a point-to-point session invites its peer when created",
        )?;
        if self.members.len() > 1 || !self.jobs().is_none_or(Jobs::is_empty) {
            return Err(SessionError::Unsupported(
                "invite_many is for the first invites of a group; use invite",
            ));
        }
        if members.is_empty() {
            return Err(SessionError::Unsupported("invite_many of nobody"));
        }
        let mut prefixes = BTreeSet::new();
        for m in members {
            if m.prefix() == self.local.prefix() || !prefixes.insert(m.prefix()) {
                return Err(SessionError::AlreadyMember(m.clone()));
            }
        }
        let members = members.to_vec();
        self.queue_job(|id| Job::InviteMany { id, members })
    }

    /// Moderator of a group: removes `member` (GROUP_REMOVE to the others if
    /// any, then LEAVE_REQUEST to it). Completion is [`Event::JobDone`].
    pub fn remove(&mut self, member: &Name, now: Instant) -> Result<JobId, SessionError> {
        self.check_group_moderator(
            now,
            "close a point-to-point session instead of removing its peer",
        )?;
        if self.resolve_member(member).is_none() {
            return Err(SessionError::NotAMember(member.clone()));
        }
        let member = member.clone();
        self.queue_job(|id| Job::Remove { id, member })
    }

    /// Closes the session: after outstanding MSGs are acknowledged, a
    /// moderator sends GROUP_CLOSE to every member and a participant leaves
    /// gracefully. Ends with [`SessionEvent::Closed`]. Idempotent.
    pub fn close(&mut self, now: Instant) {
        self.tick(now);
        if !self.lifecycle.request_close() {
            return;
        }
        self.cancel_jobs(SessionError::Closed);
        self.progress();
    }

    // ----- plumbing -----------------------------------------------------------

    fn tick(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    fn check_open(&self) -> Result<(), SessionError> {
        if self.lifecycle == Lifecycle::Open {
            Ok(())
        } else {
            Err(SessionError::Closed)
        }
    }

    /// Open, and not soft-closed.
    fn check_can_send(&self) -> Result<(), SessionError> {
        self.check_open()?;
        if self.presence.quiet() {
            return Err(SessionError::Offline);
        }
        Ok(())
    }

    fn check_peer(&self, member: &Name) -> Result<(), SessionError> {
        if member.prefix() == self.destination.prefix() {
            Ok(())
        } else {
            Err(SessionError::NotAMember(member.clone()))
        }
    }

    fn drop_msg(&mut self, r: DropReason) {
        debug!(session_id = self.id, reason = ?r, "inbound message dropped");
        self.counters.record(r);
    }

    fn session_type(&self) -> SessionType {
        match self.kind {
            SessionKind::PointToPoint => SessionType::PointToPoint,
            SessionKind::Group => SessionType::Multicast,
        }
    }

    /// The other members that are online: those data, pings and group
    /// updates expect an answer from.
    fn others(&self) -> Vec<Name> {
        self.members
            .iter()
            .filter(|m| **m != self.local && !self.presence.is_offline(m))
            .cloned()
            .collect()
    }

    /// A member by full name, or by prefix when `name` has the NULL id.
    fn resolve_member(&self, name: &Name) -> Option<Name> {
        let others = self.members.iter().filter(|m| **m != self.local);
        if name.has_null_id() {
            others
                .into_iter()
                .find(|m| m.prefix() == name.prefix())
                .cloned()
        } else {
            others.into_iter().find(|m| *m == name).cloned()
        }
    }

    fn data_retry(&self) -> Option<Retry> {
        self.data.retry(self.now)
    }

    fn control_retry(&self) -> Retry {
        Retry::new(self.now, self.control_interval, self.control_retries)
    }

    fn out(
        &self,
        dst: &Name,
        fanout: u32,
        kind: Kind,
        message_id: u32,
        content: wire::Content,
        metadata: HashMap<String, String>,
    ) -> wire::Message {
        Out {
            source: &self.local,
            destination: dst,
            fanout,
            session_type: self.session_type(),
            kind,
            session_id: self.id,
            message_id,
            content,
            metadata,
        }
        .build()
    }

    fn command_msg(
        &self,
        dst: &Name,
        fanout: u32,
        kind: Kind,
        message_id: u32,
        cmd: Cmd,
    ) -> wire::Message {
        self.out(
            dst,
            fanout,
            kind,
            message_id,
            command_content(cmd),
            HashMap::new(),
        )
    }

    /// A MSG carrying `payload`, encrypted. With an AAD hook (SLIM v3) it
    /// is stamped first and the AAD of the stamped frame is authenticated
    /// with the payload; [`Self::send`] then keeps that stamp, on every
    /// retransmission too.
    fn sealed_msg(
        &mut self,
        dst: &Name,
        fanout: u32,
        id: u32,
        payload: &[u8],
        metadata: HashMap<String, String>,
    ) -> Result<wire::Message, SessionError> {
        let Some(aad) = self.ctx.aad.clone() else {
            let blob = self.crypto.encrypt(payload)?;
            return Ok(self.out(
                dst,
                fanout,
                Kind::Msg,
                id,
                app_content("msg", blob),
                metadata,
            ));
        };
        let mut msg = self.out(
            dst,
            fanout,
            Kind::Msg,
            id,
            app_content("msg", Vec::new()),
            metadata,
        );
        let token = self
            .mint_token()
            .map_err(|e| SessionError::Identity(e.to_string()))?;
        packet::set_identity(&mut msg, token);
        let blob = self.crypto.encrypt_with_aad(payload, &aad(&msg))?;
        packet::set_content(&mut msg, app_content("msg", blob));
        Ok(msg)
    }

    /// `now` in Unix seconds, for identity tokens and MLS credentials.
    fn unix_secs(&self) -> u64 {
        self.ctx.clock.unix(self.now)
    }

    /// An identity token for now, its nonce drawn from the session's RNG.
    fn mint_token(&mut self) -> Result<String, crate::identity::IdentityError> {
        let nonce = self.nonce_rng.random();
        self.ctx.provider.token_with_nonce(self.unix_secs(), nonce)
    }

    /// Queues a message behind the acks held so far (they ride along).
    fn send(&mut self, msg: wire::Message) {
        self.release_acks();
        self.queue(msg);
    }

    /// Holds a MSG_ACK until the next message out, at most [`ACK_DELAY`]
    /// (a closed session sends it at once: its timers no longer run).
    fn hold_ack(&mut self, ack: wire::Message) {
        if self.is_closed() {
            return self.send(ack);
        }
        if self.held_acks.is_empty() {
            self.timers.set(Timer::Ack, self.now + ACK_DELAY);
        }
        self.held_acks.push(ack);
    }

    /// Queues the held acks, oldest first.
    fn release_acks(&mut self) {
        if self.held_acks.is_empty() {
            return;
        }
        self.timers.stop(Timer::Ack);
        // Drained in place: the buffer keeps its room for the next acks.
        let mut held = std::mem::take(&mut self.held_acks);
        for a in held.drain(..) {
            self.queue(a);
        }
        self.held_acks = held;
    }

    /// Stamps a fresh identity token and puts the message in the outbox (a
    /// MSG sealed with an AAD keeps the stamp its AAD covers).
    fn queue(&mut self, mut msg: wire::Message) {
        if self.ctx.aad.is_some()
            && packet::has_identity(&msg)
            && packet::peek(&msg).map(|p| p.1) == Some(Kind::Msg as i32)
        {
            self.outbox.push_back(msg);
            return;
        }
        match self.mint_token() {
            Ok(token) => {
                packet::set_identity(&mut msg, token);
                self.outbox.push_back(msg);
            }
            Err(e) => {
                warn!(session_id = self.id, error = %e, "cannot mint identity token");
                self.counters.mint_failed += 1;
            }
        }
    }

    /// Notes this member's MLS epoch on an outbound PING (see
    /// [`keys::MLS_EPOCH`]) when the edge asked for it
    /// ([`Context::ping_epoch`]), and only with MLS.
    fn tag_epoch(&self, msg: &mut wire::Message) {
        msg.metadata.remove(keys::MLS_EPOCH);
        if !self.ctx.ping_epoch {
            return;
        }
        if let Some(epoch) = self.crypto.epoch() {
            msg.metadata
                .insert(keys::MLS_EPOCH.into(), epoch.to_string());
        }
    }

    fn emit(&mut self, e: SessionEvent) {
        self.events.push_back(Event::App(e));
    }

    fn fresh_control_id(&mut self) -> u32 {
        self.controls.fresh_id(&mut self.rng)
    }

    /// Sends a control request and retransmits it until answered.
    fn start_control(
        &mut self,
        msg: wire::Message,
        expect: Kind,
        waiting: Waiting,
        purpose: Purpose,
    ) {
        self.send(msg.clone());
        let retry = self.control_retry();
        self.controls.start(msg, expect, waiting, purpose, retry);
    }

    /// Advances whatever can advance after an input: the next queued job,
    /// the close protocol once outstanding MSGs are acknowledged.
    fn progress(&mut self) {
        if !self.is_closed() {
            self.release_window();
        }
        if self.is_moderator() && self.lifecycle == Lifecycle::Open {
            self.start_next_job();
        }
        if self.lifecycle.ready_to_close(self.all_acked()) {
            self.start_close_protocol();
        }
        if self.all_acked()
            && let Some(close) = self.participant_mut().and_then(|p| p.close_ack.take())
        {
            self.send_group_ack(&close);
            self.finish_close("closed by the moderator");
        }
        self.sync_timers();
    }

    // ----- inbound dispatch ---------------------------------------------------

    pub(crate) fn handle_inbound(&mut self, mut inb: Inbound) {
        if inb.session_id != self.id {
            return self.drop_msg(DropReason::UnknownSession);
        }
        let unix = self.ctx.clock.unix(self.now);
        match self.ctx.verifier.verify_at(&inb.identity, unix) {
            Ok(claims) => inb.subject = Some(claims.sub),
            Err(e) => {
                debug!(session_id = self.id, error = %e, source = %inb.source, "bad identity");
                return self.drop_msg(DropReason::BadIdentity);
            }
        }
        if inb.source == self.local {
            return self.drop_msg(DropReason::Unexpected);
        }
        if self.is_closed() {
            return self.handle_after_close(&inb);
        }
        let moderator = self.is_moderator();
        // Whatever the moderator sends shows it is alive: SLIM 3 moderators
        // heartbeat only after an interval in which they sent nothing else.
        if !moderator
            && inb.source == self.moderator_name
            && self.timers.get(Timer::Watchdog).is_some()
        {
            self.timers.set(Timer::Watchdog, self.now + WATCHDOG_PERIOD);
        }
        // And whatever a member sends shows it is alive to the moderator:
        // SLIM 3 members answer no ping round (their heartbeats are one-way
        // and arrive under ids of their own), and under load they send
        // data instead of heartbeats.
        if moderator && self.members.contains(&inb.source) {
            let source = inb.source.clone();
            if let Some(l) = self.liveness_mut() {
                l.heard_from(&source);
            }
        }
        if self.presence.away() && !Presence::takes_while_away(inb.kind) {
            return self.drop_msg(DropReason::Unexpected);
        }
        let own_request = self.presence.request() == Some(inb.message_id);
        match inb.kind {
            Kind::Msg => self.on_data(inb, false),
            Kind::RtxReply => self.on_data(inb, true),
            Kind::MsgAck => {
                if !self.data.sender.on_ack(inb.message_id, &inb.source) {
                    self.counters.record(DropReason::Duplicate);
                }
            }
            Kind::RtxRequest => self.on_rtx_request(&inb),
            Kind::DiscoveryRequest => {
                let nonce = self.nonce_rng.random();
                if let Some(reply) = discovery_reply(&self.ctx, &inb, self.now, nonce) {
                    self.outbox.push_back(reply);
                }
            }
            Kind::GroupAck | Kind::GroupNack if own_request => self.on_own_state_reply(&inb),
            Kind::ParticipantState if self.ctx.presence => self.on_participant_state(&inb),
            Kind::RejoinRequest if moderator && self.ctx.presence => self.on_rejoin_request(&inb),
            Kind::DiscoveryReply | Kind::JoinReply | Kind::GroupAck if moderator => {
                self.on_control_reply(&inb)
            }
            Kind::Ping if moderator => self.on_control_reply(&inb),
            Kind::LeaveReply => self.on_control_reply(&inb),
            Kind::LeaveRequest if moderator => self.on_leave_request_at_moderator(&inb),
            _ if moderator => self.drop_msg(DropReason::Unexpected),
            // Participant: control comes from the moderator only.
            _ if inb.source != self.moderator_name => self.drop_msg(DropReason::Unexpected),
            Kind::JoinRequest => {
                if let Some(r) = self.participant_state().and_then(|p| p.join_reply.clone()) {
                    self.send(r);
                }
            }
            Kind::GroupWelcome => self.on_welcome(&inb),
            Kind::GroupAdd | Kind::GroupRemove => self.on_commit(inb),
            Kind::GroupRejoin if self.ctx.presence => self.on_commit(inb),
            Kind::RejoinReply if self.ctx.presence => self.on_rejoin_reply(&inb),
            Kind::GroupClose => {
                // Our own MSGs still in flight are delivered first: the ack
                // (and our close) waits until every member acknowledged them.
                self.cancel_jobs(SessionError::Closed);
                self.lifecycle = Lifecycle::Closing;
                if let Some(p) = self.participant_mut() {
                    p.close_ack = Some(inb);
                }
            }
            Kind::LeaveRequest => {
                self.send_leave_reply(&inb);
                self.finish_close("removed by the moderator");
            }
            // Soft-closed: quiet, no heartbeat either.
            Kind::Ping if self.presence.quiet() => {}
            Kind::Ping => {
                self.check_heartbeat_epoch(&inb);
                let mut echo = self.out(
                    &inb.source,
                    inb.fanout,
                    Kind::Ping,
                    inb.message_id,
                    inb.content
                        .clone()
                        .unwrap_or_else(|| command_content(Cmd::Ping(PingPayload {}))),
                    inb.metadata.clone(),
                );
                self.tag_epoch(&mut echo);
                self.send(echo);
                self.timers.set(Timer::Watchdog, self.now + WATCHDOG_PERIOD);
            }
            _ => self.drop_msg(DropReason::Unexpected),
        }
    }

    fn send_group_ack(&mut self, inb: &Inbound) {
        let ack = self.command_msg(
            &inb.source,
            1,
            Kind::GroupAck,
            inb.message_id,
            Cmd::GroupAck(GroupAckPayload {}),
        );
        self.send(ack);
    }

    fn send_leave_reply(&mut self, inb: &Inbound) {
        let reply = self.command_msg(
            &inb.source,
            1,
            Kind::LeaveReply,
            inb.message_id,
            Cmd::LeaveReply(LeaveReplyPayload {}),
        );
        self.send(reply);
    }

    // ----- timers -------------------------------------------------------------------

    fn control_timeouts(&mut self) {
        let now = self.now;
        for id in self.controls.due(now) {
            match self.controls.fire(id, now) {
                Some(Due::Resend(m)) => self.send(m),
                Some(Due::GaveUp(c)) => self.control_failed(id, c),
                None => {}
            }
        }
    }

    // ----- control replies (moderator, and a participant's graceful leave) --------

    fn on_control_reply(&mut self, inb: &Inbound) {
        match self
            .controls
            .on_reply(inb.kind, inb.message_id, &inb.source)
        {
            Err(r) => self.drop_msg(r),
            Ok(a) => {
                if a.purpose == Purpose::Ping
                    && let Some(l) = self.liveness_mut()
                {
                    l.heard_from(&inb.source);
                }
                if a.done {
                    self.control_done(a.purpose, inb);
                }
            }
        }
    }

    fn control_done(&mut self, purpose: Purpose, reply: &Inbound) {
        match purpose {
            Purpose::Discovery => {
                if let Some(conn) = reply.incoming_conn {
                    self.events.push_back(Event::Route {
                        name: reply.source.clone(),
                        conn,
                    });
                }
                if self.in_batch() {
                    self.batch_discovered(reply.source.clone())
                } else {
                    self.after_discovery(reply.source.clone())
                }
            }
            Purpose::Join if self.in_batch() => self.batch_joined(reply),
            Purpose::Join => self.after_join(reply),
            Purpose::Welcome if self.in_batch() => self.batch_welcomed(&reply.source),
            Purpose::Welcome | Purpose::GroupAdd => self.welcome_part_done(),
            Purpose::GroupRemove => self.after_group_remove(),
            Purpose::Leave => self.finish_job(Ok(())),
            Purpose::Ping => {
                if let Some(l) = self.liveness_mut() {
                    l.round_over(reply.message_id);
                }
            }
            Purpose::Close => self.finish_close("closed"),
            Purpose::GracefulLeave => self.finish_close("left the session"),
            Purpose::OwnState => self.own_state_done(),
            // Answered by REJOIN_REPLY, which takes it off itself.
            Purpose::Rejoin => {}
        }
    }

    fn control_failed(&mut self, id: u32, c: Control) {
        debug!(session_id = self.id, purpose = ?c.purpose, message_id = id, "control request timed out");
        if self.in_batch() && c.purpose.belongs_to_job() {
            return self.batch_failed(c);
        }
        match c.purpose {
            // Peers drop requests whose identity token they cannot verify,
            // silently (as SLIM does), so silence is all a wrong shared
            // secret looks like from here: say so.
            Purpose::Discovery => self.fail_job(SessionError::Timeout {
                what: "discovery (no reply passed identity verification: the peer is absent \
                       or does not use our shared secret)",
            }),
            Purpose::Join => self.fail_job(SessionError::Timeout { what: "join" }),
            Purpose::Welcome | Purpose::GroupAdd => {
                if let Some(Stage::Welcoming { peer, .. }) = self.jobs().and_then(Jobs::stage) {
                    let peer = peer.clone();
                    self.forget_member(&peer);
                }
                self.fail_job(SessionError::Timeout { what: "welcome" })
            }
            // Whoever did not answer is presumably gone; carry on.
            Purpose::GroupRemove => self.after_group_remove(),
            Purpose::Leave => self.finish_job(Ok(())),
            Purpose::Ping => {
                if let Some(l) = self.liveness_mut() {
                    l.round_over(id);
                }
                self.count_missed(c.waiting);
            }
            Purpose::Close => self.finish_close("closed"),
            Purpose::GracefulLeave => self.finish_close("left the session"),
            Purpose::OwnState | Purpose::Rejoin => self.presence_control_failed(&c),
        }
    }

    /// Adds `name` to the member list (false when it already was one). A
    /// member invited back after a removal comes with a new session and a
    /// new message sequence: what is left of its old one is forgotten. (Kept
    /// until then, so late duplicates of its old messages stay duplicates.)
    fn admit(&mut self, name: &Name) -> bool {
        if self.members.contains(name) {
            return false;
        }
        self.data.streams.remove(name);
        self.members.push(name.clone());
        true
    }

    /// Drops `name` from the member list and the data endpoints.
    fn forget_member(&mut self, name: &Name) {
        self.members.retain(|m| m != name);
        self.presence.forget(name);
        self.data.sender.forget_endpoint(name);
        if let Some(l) = self.liveness_mut() {
            l.forget(name);
        }
        self.controls.forget_pinged(name);
    }
}

/// An independent RNG derived from `rng` without drawing from it.
pub(crate) fn fork(rng: &StdRng) -> StdRng {
    StdRng::from_rng(&mut rng.clone())
}

/// The stateless DISCOVERY_REPLY to a DISCOVERY_REQUEST: source = the
/// request's destination with our id, back along `incoming_conn`.
/// `nonce` is the randomness of its identity token, drawn by the caller.
pub(crate) fn discovery_reply(
    ctx: &Context,
    req: &Inbound,
    now: Instant,
    nonce: [u8; 12],
) -> Option<wire::Message> {
    let source = req.destination.with_id(ctx.app_name.id());
    let mut msg = Out {
        source: &source,
        destination: &req.source,
        fanout: 1,
        session_type: req.session_type,
        kind: Kind::DiscoveryReply,
        session_id: req.session_id,
        message_id: req.message_id,
        content: command_content(Cmd::DiscoveryReply(DiscoveryReplyPayload {})),
        metadata: HashMap::new(),
    }
    .build();
    packet::set_forward_to(&mut msg, req.incoming_conn);
    let token = ctx
        .provider
        .token_with_nonce(ctx.clock.unix(now), nonce)
        .ok()?;
    packet::set_identity(&mut msg, token);
    Some(msg)
}
