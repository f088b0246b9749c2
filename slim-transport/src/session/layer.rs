//! The session layer of one app: routes received messages to sessions by
//! session id, answers messages for no known session (SLIM v1.3 §d.13) and
//! creates sessions with fresh random ids.
//!
//! It holds no sessions itself (the driver keeps each in its own task), only
//! the set of live ids. It never blocks, reads clocks or does I/O.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tracing::debug;

use crate::Name;
use crate::wire::{self, SessionMessageType as Kind};

use super::machine::{Session, discovery_reply};
use super::packet::{self, Inbound};
use super::{
    Context, Counters, CryptoError, DropReason, InboundFilterFactory, JobId, NoCrypto,
    SessionConfig, SessionCrypto, SessionError,
};

/// Builds the group cryptography of a session when MLS is requested
/// (argument: true for the moderator side). Without a factory, MLS sessions
/// are refused.
pub type CryptoFactory =
    Arc<dyn Fn(&Context, bool) -> Result<Box<dyn SessionCrypto>, CryptoError> + Send + Sync>;

/// Session ids are drawn from `0 ..= MAX_SESSION_ID` (SLIM v1.3).
pub const MAX_SESSION_ID: u32 = u32::MAX - 1001;

/// Where a received message goes.
#[derive(Debug)]
pub enum Dispatch {
    /// To the live session with this id.
    Session(u32, wire::Message),
    /// A JOIN_REQUEST created this participant session (already answered).
    Accepted(Box<Session>),
    /// Send this reply (a stateless DISCOVERY_REPLY).
    Reply(wire::Message),
    /// Dropped and counted.
    Dropped(DropReason),
}

/// The session layer of one app.
pub struct SessionLayer {
    ctx: Context,
    rng: StdRng,
    /// Token nonces of stateless replies (a fork of `rng`).
    nonce_rng: StdRng,
    live: HashSet<u32>,
    /// Live participant sessions that are closed and only linger (to
    /// answer a repeated LEAVE_REQUEST or GROUP_CLOSE): a new invite into
    /// the same session (its DISCOVERY_REQUEST, then JOIN_REQUEST) is
    /// answered and accepted as for an unknown session, so a member
    /// removed from a group can be added back at once.
    lingering: HashSet<u32>,
    crypto: Option<CryptoFactory>,
    accept_filter: Option<InboundFilterFactory>,
    counters: Counters,
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("ctx", &self.ctx)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}

impl SessionLayer {
    /// A layer whose randomness all derives from `seed`.
    pub fn new(ctx: Context, seed: u64) -> Self {
        Self {
            ctx,
            rng: StdRng::seed_from_u64(seed),
            nonce_rng: super::machine::fork(&StdRng::seed_from_u64(seed)),
            live: HashSet::new(),
            lingering: HashSet::new(),
            crypto: None,
            accept_filter: None,
            counters: Counters::default(),
        }
    }

    /// Uses `factory` for sessions with MLS on.
    pub fn with_crypto(mut self, factory: CryptoFactory) -> Self {
        self.crypto = Some(factory);
        self
    }

    /// Uses `factory` for sessions with MLS on, from now on.
    pub fn set_crypto(&mut self, factory: CryptoFactory) {
        self.crypto = Some(factory);
    }

    /// Gives every participant session accepted from now on a filter made
    /// by `factory` (see [`super::InboundFilter`]): the sessions a server
    /// serves, not the ones this app creates.
    pub fn set_accept_filter(&mut self, factory: InboundFilterFactory) {
        self.accept_filter = Some(factory);
    }

    /// Sets the MSG authenticated-data hook of sessions created from now on.
    pub fn set_aad(&mut self, aad: super::AadFn) {
        self.ctx.aad = Some(aad);
    }

    /// Sessions created from now on note their MLS epoch on outbound pings
    /// (see [`Context::ping_epoch`]).
    pub fn set_ping_epoch(&mut self, on: bool) {
        self.ctx.ping_epoch = on;
    }

    /// Sessions created from now on handle participant states and rejoin
    /// (see [`Context::presence`]).
    pub fn set_presence(&mut self, on: bool) {
        self.ctx.presence = on;
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Drops counted here (messages that reached no session).
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Counts a message the driver dropped because its session's inbox was
    /// full (see [`Counters::inbox_full`]).
    pub fn count_inbox_full(&mut self) {
        self.counters.inbox_full += 1;
    }

    fn crypto_for(
        &self,
        mls: bool,
        moderator: bool,
    ) -> Result<Box<dyn SessionCrypto>, SessionError> {
        if !mls {
            return Ok(Box::new(NoCrypto));
        }
        match &self.crypto {
            Some(f) => Ok(f(&self.ctx, moderator)?),
            None => Err(SessionError::Unsupported("MLS is not available")),
        }
    }

    fn session_rng(&mut self) -> StdRng {
        StdRng::seed_from_u64(self.rng.random())
    }

    /// Creates a moderator session towards `dest` (P2P peer or channel).
    /// For P2P, the returned job id completes when the handshake does.
    pub fn create(
        &mut self,
        config: &SessionConfig,
        dest: &Name,
        now: Instant,
    ) -> Result<(Session, Option<JobId>), SessionError> {
        let crypto = self.crypto_for(config.mls, true)?;
        let mut id = None;
        for _ in 0..64 {
            let candidate = self.rng.random_range(0..=MAX_SESSION_ID);
            if !self.live.contains(&candidate) {
                id = Some(candidate);
                break;
            }
        }
        let id = id.ok_or(SessionError::NoSessionId)?;
        let rng = self.session_rng();
        let (session, job) =
            Session::new_moderator(self.ctx.clone(), id, config, dest, crypto, rng, now);
        self.live.insert(id);
        Ok((session, job))
    }

    /// The session is gone; later messages for its id are "unknown".
    pub fn forget(&mut self, session_id: u32) {
        self.live.remove(&session_id);
        self.lingering.remove(&session_id);
    }

    /// Live participant session `session_id` is closed and lingers: a new
    /// invite into it replaces it (see the field's doc).
    pub fn set_lingering(&mut self, session_id: u32) {
        if self.live.contains(&session_id) {
            self.lingering.insert(session_id);
        }
    }

    /// Routes or answers one received message.
    pub fn handle(&mut self, msg: wire::Message, now: Instant) -> Dispatch {
        let Some((session_id, kind)) = packet::peek(&msg) else {
            return self.dropped(DropReason::Malformed);
        };
        let invite = kind == Kind::DiscoveryRequest as i32 || kind == Kind::JoinRequest as i32;
        if self.live.contains(&session_id) && !(invite && self.lingering.contains(&session_id)) {
            return Dispatch::Session(session_id, msg);
        }
        let inb = match Inbound::parse(msg) {
            Ok(i) => i,
            Err(r) => return self.dropped(r),
        };
        if !matches!(inb.kind, Kind::DiscoveryRequest | Kind::JoinRequest) {
            return self.dropped(DropReason::UnknownSession);
        }
        if let Err(e) = self
            .ctx
            .verifier
            .verify_at(&inb.identity, self.ctx.clock.unix(now))
        {
            debug!(error = %e, source = %inb.source, "bad identity on session request");
            return self.dropped(DropReason::BadIdentity);
        }
        match inb.kind {
            Kind::DiscoveryRequest => {
                match discovery_reply(&self.ctx, &inb, now, self.nonce_rng.random()) {
                    Some(reply) => Dispatch::Reply(reply),
                    None => {
                        self.counters.mint_failed += 1;
                        Dispatch::Dropped(DropReason::Unexpected)
                    }
                }
            }
            _ => {
                let mls = matches!(
                    inb.command(),
                    Some(wire::command_payload::CommandPayloadType::JoinRequest(j)) if j.enable_mls
                );
                let crypto = match self.crypto_for(mls, false) {
                    Ok(c) => c,
                    Err(_) => return self.dropped(DropReason::Unexpected),
                };
                let rng = self.session_rng();
                match Session::new_participant(self.ctx.clone(), &inb, crypto, rng, now) {
                    Ok(mut s) => {
                        if let Some(f) = &self.accept_filter {
                            s.set_inbound_filter(f());
                        }
                        self.lingering.remove(&s.id());
                        self.live.insert(s.id());
                        Dispatch::Accepted(Box::new(s))
                    }
                    Err(r) => self.dropped(r),
                }
            }
        }
    }

    fn dropped(&mut self, r: DropReason) -> Dispatch {
        debug!(reason = ?r, "message for no session dropped");
        self.counters.record(r);
        Dispatch::Dropped(r)
    }
}
