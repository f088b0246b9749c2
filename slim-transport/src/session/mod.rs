//! The SLIM v1.3 session layer as a sans-IO state machine (quinn-proto style).
//!
//! A [`Session`] is fed received messages ([`Session::handle_message`]), app
//! commands (`publish`, `publish_to`, `publish_unicast`, `invite`, `remove`,
//! `close`) and the passing of time ([`Session::handle_timeout`]); it answers
//! with messages to send ([`Session::poll_transmit`]), the next deadline
//! ([`Session::poll_timeout`]) and events ([`Session::poll_event`]). The
//! [`SessionLayer`] routes received messages by session id and answers the
//! ones for no known session (DISCOVERY_REQUEST statelessly, JOIN_REQUEST by
//! creating a participant session).
//!
//! What this module must not do: open sockets, spawn tasks, read the system
//! clock or draw from a global RNG. Time comes in as `now: Instant`, wall
//! time for tokens and MLS credentials from the [`WallClock`] anchor (handed
//! to [`SessionCrypto`] as `now`), and randomness (session, control-message
//! and PUBLISH_TO ids, identity-token nonces) from a seeded RNG. The one
//! exception is key material: MLS signing keys come from the OS-seeded
//! CSPRNG inside `crate::mls`, and openmls's provider keeps its own
//! randomness (a 64-bit seed must not decide a signing key). The async
//! driver lives in `crate::app`.
//!
//! Differences from the official v1.3 stack, on purpose:
//! * [`Session::publish_unicast`] sends a sequenced MSG to one member and
//!   expects the ack only from that member, and retransmits only to it.
//!   v1.3 expects acks from every member for such a message and, after the
//!   first timeout, re-sends it to all of them. Other members keep their
//!   per-source order through RTX; our RTX_REPLY for such an id carries the
//!   `UNICAST_TO` metadata key so our receivers skip it instead of
//!   delivering it (SLIM receivers ignore the key and deliver it, as they
//!   would after a v1.3 re-send).
//! * An RTX_REQUEST does not count as an acknowledgement of the MSG (in
//!   v1.3 it does): the sender keeps retransmitting until a MSG_ACK, so a
//!   message is never considered delivered while its receiver still misses
//!   it. Our receivers also MSG_ACK a recovered RTX_REPLY.
//! * A participant answers GROUP_CLOSE only once its own outstanding MSGs
//!   are acknowledged (v1.3 answers and closes at once).
//! * A group member that joined late finds where each sender's stream starts
//!   by probing downwards with RTX_REQUEST (see `reliable::Stream`) instead
//!   of taking the first id seen, which would skip a reordered first id.
//! * A duplicate GROUP_ADD/GROUP_REMOVE carrying an already applied
//!   `commit_id` is acknowledged again (v1.3 drops it without an ack, which
//!   makes a lost GROUP_ACK fail the invite).
//! * Group sessions always use timer settings (the configured ones, else
//!   1 s / 10): a v1.3 participant refuses a multicast JOIN_REQUEST without.

mod crypto;
mod layer;
mod machine;
pub mod packet;
mod reliable;

#[cfg(test)]
mod mls_tests;
#[cfg(test)]
mod testnet;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Name;
use crate::identity::{IdentityProvider, IdentityVerifier};

pub use crypto::{AddOutput, CryptoError, NoCrypto, SessionCrypto, mls_factory, mls_factory_v3};
pub use layer::{CryptoFactory, Dispatch, SessionLayer};
pub use machine::Session;
pub(crate) use machine::{CommitQueue, Offer};

/// Control-message retransmission interval when none is configured.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Control-message retries when none are configured.
pub const DEFAULT_MAX_RETRIES: u32 = 10;
/// The moderator pings every this often.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Missed ping rounds (or silent intervals, for a participant) before a peer
/// is declared gone.
pub const MAX_PING_FAILURES: u32 = 3;
/// Reliable sequenced MSGs a session keeps unacknowledged at most; later
/// publishes wait (in order, not yet encrypted) until acks free the window.
/// This paces a burst to what the receiver absorbs: without it a sender could
/// overrun the receiving app's inbox (which drops what does not fit) faster
/// than retransmission repairs it, and MLS would refuse retransmitted
/// ciphertexts older than its 1024-generation ratchet window.
pub const SEND_WINDOW: usize = 256;

/// Point-to-point or group (SLIM "multicast").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionKind {
    PointToPoint,
    Group,
}

/// How a session is created.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub kind: SessionKind,
    /// MLS end-to-end encryption on (the default) or off. On needs the
    /// app's crypto factory (every app built by `App::start` has one).
    pub mls: bool,
    /// Retransmission interval; data reliability needs both this and
    /// `max_retries`.
    pub interval: Option<Duration>,
    pub max_retries: Option<u32>,
    /// Copied into the JOIN_REQUEST's metadata.
    pub metadata: HashMap<String, String>,
    /// How often a moderator pings its members; a member silent for
    /// [`MAX_PING_FAILURES`] rounds is declared gone. SLIM uses
    /// [`PING_INTERVAL`]; shorter intervals find dead members sooner and
    /// stay compatible (participants only require a ping at least every
    /// [`PING_INTERVAL`]). Participants ignore this setting.
    pub ping_interval: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            kind: SessionKind::PointToPoint,
            mls: true,
            interval: Some(DEFAULT_INTERVAL),
            max_retries: Some(DEFAULT_MAX_RETRIES),
            metadata: HashMap::new(),
            ping_interval: PING_INTERVAL,
        }
    }
}

/// A message delivered to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub source: Name,
    pub payload: Vec<u8>,
    pub metadata: HashMap<String, String>,
    /// The sender's verified identity: the subject (`sub`) of the identity
    /// token the message carried, checked against the app's verifier.
    pub peer_subject: Option<String>,
}

/// What the application learns about a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    Message(ReceivedMessage),
    /// A sequenced message from `source` could not be recovered.
    MessageLost {
        source: Name,
        message_id: u32,
    },
    MemberJoined(Name),
    MemberLeft(Name),
    Closed {
        reason: String,
    },
}

/// Identifies an invite or remove queued on a moderator.
pub type JobId = u64;

/// Everything a session reports, for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// For the application.
    App(SessionEvent),
    /// Participant: the welcome arrived; the app may now be told about the
    /// session (events before this one belong to it too).
    Established,
    /// An invite or remove finished.
    JobDone {
        job: JobId,
        result: Result<(), SessionError>,
    },
    /// Subscribe the app to `name` (a group channel) on its connections.
    Subscribe(Name),
    /// Undo [`Event::Subscribe`].
    Unsubscribe(Name),
    /// Route messages for the full name `name` to connection `conn` of the
    /// local node: the connection its DISCOVERY_REPLY or JOIN_REQUEST came
    /// in on (as SLIM does, so replies sent with fanout 256 to a full name
    /// find their way across a node).
    Route { name: Name, conn: u64 },
    /// A sent MSG was never acknowledged by `missing`.
    PublishFailed { message_id: u32, missing: Vec<Name> },
}

/// Errors of the session layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("session is closed")]
    Closed,
    #[error("only the moderator can do this")]
    NotModerator,
    #[error("{0} is not a member of this session")]
    NotAMember(Name),
    #[error("{0} is already a member of this session")]
    AlreadyMember(Name),
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    #[error("{what} timed out")]
    Timeout { what: &'static str },
    #[error("{what} of {member} timed out")]
    MemberTimeout { what: &'static str, member: Name },
    /// Peers drop requests whose identity token they cannot verify,
    /// silently (as SLIM does), so from here a member with another shared
    /// secret looks exactly like an absent one: the text names both.
    #[error(
        "discovery of {member} timed out (no reply passed identity verification: \
         the member is absent or does not use our shared secret)"
    )]
    DiscoveryTimeout { member: Name },
    #[error("MLS: {0}")]
    Crypto(#[from] CryptoError),
    #[error("transport: {0}")]
    Transport(String),
    #[error("identity: {0}")]
    Identity(String),
    #[error("no free session id")]
    NoSessionId,
    #[error("this member is soft-closed: rejoin before sending")]
    Offline,
    /// A control request timed out after the SLIM v3 edge had refused an
    /// answer to it; `cause` says why (e.g. a signature that does not
    /// verify: the frame was tampered with, or signed with another key).
    #[error("{what}; an answer was refused: {cause}")]
    Refused { what: String, cause: String },
}

impl SessionError {
    /// A control request got no (acceptable) answer in time.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            SessionError::Timeout { .. }
                | SessionError::MemberTimeout { .. }
                | SessionError::DiscoveryTimeout { .. }
        )
    }
}

/// Tells, from a received MSG's sender and clear-text metadata alone,
/// that the application will discard it: the session then acknowledges it
/// as usual but neither decrypts nor delivers it.
///
/// SLIM metadata travels outside MLS, so an application whose dispatch
/// depends only on metadata (a SlimRPC server dropping client EOS #2 and
/// echoed server frames, §g.4) saves an MLS decryption, an Ed25519 check,
/// per such frame. Skipping is safe for MLS: a later message of the same
/// sender ratchets past the skipped generation. So that the ratchet never
/// has to run further ahead than its window, at most 256 MSGs of one
/// sender in a row are skipped; the next one is decrypted and delivered
/// (the application discards it). The filter sees MSGs in arrival order
/// (before any reordering), once per message id.
pub type InboundFilter = Box<dyn FnMut(&Name, &HashMap<String, String>) -> bool + Send>;

/// Makes the [`InboundFilter`] of each new session (one per session: a
/// filter may keep per-session state).
pub type InboundFilterFactory = Arc<dyn Fn() -> InboundFilter + Send + Sync>;

/// Why an inbound message was dropped (see [`Counters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Identity token missing, malformed, with a wrong MAC, expired or from
    /// the future.
    BadIdentity,
    /// Not a Publish, missing header/names/session header/payload, unknown
    /// enum values.
    Malformed,
    /// For a session id nobody knows (or not the one it was given to).
    UnknownSession,
    /// A message id outside the acceptable range.
    OutOfRange,
    /// Already received (still acknowledged when it was a MSG).
    Duplicate,
    /// Not expected in this role or state (or from this sender).
    Unexpected,
    /// The MSG payload could not be decrypted (dropped without an ack).
    DecryptFailed,
}

/// Counts of dropped inbound messages, readable by tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub bad_identity: u64,
    pub malformed: u64,
    pub unknown_session: u64,
    pub out_of_range: u64,
    pub duplicate: u64,
    pub unexpected: u64,
    pub decrypt_failed: u64,
    /// Outbound messages not sent because no token could be minted.
    pub mint_failed: u64,
    /// MSGs acknowledged but neither decrypted nor delivered because the
    /// session's [`InboundFilter`] said the application discards them.
    pub not_needed: u64,
    /// Fresh MSGs refused, unacknowledged, while the application was not
    /// reading its events (`Session::set_receive_paused`); their senders
    /// retransmit them.
    pub refused_busy: u64,
    /// Messages for a session whose task had a full inbox, dropped by the
    /// app's reader (never acknowledged, so retransmitted) rather than
    /// stalling every other session of the app.
    pub inbox_full: u64,
}

impl Counters {
    pub fn record(&mut self, r: DropReason) {
        let c = match r {
            DropReason::BadIdentity => &mut self.bad_identity,
            DropReason::Malformed => &mut self.malformed,
            DropReason::UnknownSession => &mut self.unknown_session,
            DropReason::OutOfRange => &mut self.out_of_range,
            DropReason::Duplicate => &mut self.duplicate,
            DropReason::Unexpected => &mut self.unexpected,
            DropReason::DecryptFailed => &mut self.decrypt_failed,
        };
        *c += 1;
    }

    /// Messages dropped for being bad input (not for being duplicates).
    pub fn rejected(&self) -> u64 {
        self.bad_identity + self.malformed + self.unknown_session + self.out_of_range
    }
}

/// Maps the monotonic `Instant`s the state machine runs on to Unix seconds,
/// for minting and checking identity tokens.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    pub base: Instant,
    pub unix_at_base: u64,
}

impl WallClock {
    /// Unix seconds at `now`.
    pub fn unix(&self, now: Instant) -> u64 {
        self.unix_at_base + now.saturating_duration_since(self.base).as_secs()
    }
}

/// Computes the MLS authenticated data of an outbound MSG from the frame
/// about to be sent, identity stamped (SLIM v3 authenticates the header
/// this way; v1 has no AAD).
pub type AadFn = Arc<dyn Fn(&crate::wire::Message) -> Vec<u8> + Send + Sync>;

/// What every session of one app shares: its name and identity.
#[derive(Clone)]
pub struct Context {
    /// The app's full name (with its instance id).
    pub app_name: Name,
    pub provider: Arc<dyn IdentityProvider>,
    pub verifier: Arc<dyn IdentityVerifier>,
    pub clock: WallClock,
    /// Set by a SLIM v3 edge: MSG payloads are encrypted with this AAD and
    /// keep the identity they were stamped with on every retransmission.
    pub aad: Option<AadFn>,
    /// Set by an edge whose wire carries the member's MLS epoch on pings
    /// (SLIM v3 heartbeats): outbound PINGs note it under
    /// [`packet::keys::MLS_EPOCH`] for the codec to move into place. The
    /// session core itself knows no wire generation.
    pub ping_epoch: bool,
    /// Set by an edge whose wire has participant states and rejoin (SLIM
    /// v3): group members may soft-close and rejoin, and the session
    /// answers other members' state updates and rejoin requests.
    pub presence: bool,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("app_name", &self.app_name)
            .finish_non_exhaustive()
    }
}
