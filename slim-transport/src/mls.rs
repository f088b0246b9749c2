//! MLS end-to-end encryption for SLIM sessions, on openmls, wire-compatible
//! with the official SLIM v1.3 MLS layer (mls-rs).
//!
//! Job: hold one member's MLS state for one session ([`MlsState`]): mint key
//! packages, create a group, add and remove members (moderator), join from a
//! Welcome and apply commits (participant), encrypt and decrypt application
//! payloads, and validate every credential that enters the group against the
//! shared-secret identity of SLIM (§e.2, §f of the protocol brief). It also
//! offers [`CommitQueue`], which applies commits in `commit_id` order.
//!
//! It must not: do any I/O, know about session messages or names (the caller
//! maps `commit_id`s and member identities to session concepts), block, or
//! panic on bytes from the network (every input error is an [`MlsError`]).
//!
//! # Settings needed to interoperate with SLIM v1.3 (mls-rs 0.54)
//!
//! Measured in `MLS-INTEROP.md`; each one is required or strongly advised:
//! * ciphersuite 0x0001 `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`;
//! * `BasicCredential` whose identity bytes are the UTF-8 shared-secret token,
//!   minted with the leaf's Ed25519 key in its `pubkey` claim;
//! * every MLS object on the wire is an `MLSMessage` (key packages through
//!   `MlsMessageOut::from(KeyPackage)`, Welcome, PublicMessage commits,
//!   PrivateMessage application data);
//! * creating: `use_ratchet_tree_extension(true)` (mls-rs joins from the
//!   Welcome alone, otherwise `RatchetTreeNotFound`);
//! * creating and joining: `MIXED_PLAINTEXT_WIRE_FORMAT_POLICY` (SLIM sends
//!   commits as PublicMessage; openmls's default pure-ciphertext policy fails
//!   with `IncompatibleWireFormat` on the next mls-rs commit);
//! * `max_past_epochs(3)`: an application message encrypted just before a
//!   commit still decrypts after it (mls-rs keeps past epochs by default);
//! * joining through `StagedWelcome::build_from_welcome(..)
//!   .skip_lifetime_validation()`: mls-rs leaves start `not_before = now`
//!   without margin, so a few seconds of clock skew would break joins;
//! * a sender-ratchet window of 1024 generations back and ahead
//!   ([`SENDER_RATCHET_WINDOW`], as mls-rs): openmls's default tolerance of
//!   5 makes every MSG that the session recovers by retransmission after 5
//!   newer ones from its sender undecryptable (found by the session test
//!   `real_mls_group_forms_talks_and_shrinks_under_loss_...`: 44 to 135
//!   decrypt failures per member and lost messages at 20 % loss);
//! * application messages with empty authenticated data, no padding;
//! * one Add per commit and one Welcome per commit; a Remove is one commit;
//! * everything else at openmls defaults (no extensions, no required
//!   capabilities, default key-package lifetime).
//!
//! openmls has no identity-provider hook, so the SLIM checks happen here, on
//! every credential that enters or speaks in the group: the key package of an
//! added member (ours and in received commits), every leaf of a Welcome before
//! the group is entered, Update proposals and changed UpdatePath leaves (the
//! successor must keep the same `sub`), and the sender of every decrypted
//! message. A check is: the credential is a BasicCredential, its identity is a
//! token that the local [`IdentityVerifier`] accepts (MAC under the shared
//! secret), and its `pubkey` claim equals standard-base64 of the leaf's
//! signature key.
//!
//! # Credential freshness (why our groups keep working after an hour)
//!
//! SLIM v1.3 re-checks the *age* of every leaf token (3600 s window) whenever
//! it processes a Welcome or an UpdatePath commit, and on every add/remove, and
//! it never rotates credentials. Its groups therefore freeze about an hour
//! after the oldest member's token was minted. We do two things instead:
//!
//! 1. **Freshness is checked at admission.** A credential must be within the
//!    token window at the moment it is *introduced*: an added member's key
//!    package, an Update proposal, or an UpdatePath leaf whose credential
//!    changed. Credentials already in the tree (the roster of a Welcome,
//!    including our own leaf, the committer of a Remove, the sender of a
//!    message) are checked for MAC and pubkey binding, but their age (expired,
//!    or ahead of our clock by more than the 5 s skew) is not held against
//!    them. This is sound:
//!    the age of a token only limits how long a stolen `(token, key)` pair can
//!    be used to *enter* a group. A member already in the tree is
//!    authenticated by the group's own keys (its leaf signature and the epoch
//!    secrets), and the member that admitted it checked the token's freshness
//!    then. Re-checking age later adds no security; it only expires groups.
//! 2. **Members can re-mint and rotate.** [`MlsState::refresh_credential`]
//!    (moderator: a self-update commit with a new Ed25519 key and a new token)
//!    and [`MlsState::propose_refresh`] (participant: an Update proposal that
//!    the moderator commits with [`MlsState::commit_pending_proposals`]) put a
//!    fresh token in the leaf. Receivers accept the successor only if it has
//!    the same `sub` and a fresh token. The Update proposal is committed by
//!    reference (RFC 9420 forbids Update by value), so it must reach *every*
//!    member, each of which calls [`MlsState::process_proposal`] before the
//!    commit arrives. This keeps leaf tokens young, which is
//!    what an official peer needs to accept our group. [`MlsState::needs_refresh`]
//!    says when the own token is older than half the window.
//!
//! Interop inside the window: our checks accept everything an official peer
//! sends (a fresh token is also MAC-valid and age-valid). Official peers do
//! not accept a Welcome or UpdatePath commit from us once any leaf token is
//! older than 3600 s; that is their limit and rotating our own leaf cannot fix
//! their members' stale leaves. SLIM v1.3 panics on GROUP_PROPOSAL, so the
//! proposal path is for all-openmls groups only; a moderator self-update
//! commit travels like any other commit.
//!
//! # `commit_id`
//!
//! The moderator's counter lives here: the first add or remove gets
//! `commit_id` 1, and every commit we produce (add, remove, refresh, committed
//! proposals) takes the next one ([`MlsState::commit_id`]). A participant
//! learns its starting id from the Welcome: pass it to
//! [`MlsState::process_welcome`]. [`MlsState::process_commit`] applies one
//! commit now (the caller orders them); [`CommitQueue`] does the ordering
//! (buffers early ids, drops duplicates, and keeps the id of a commit that
//! failed open, so a re-sent copy is retried: openmls refuses an Add whose
//! key package is not valid yet on a slow clock, and the same bytes apply
//! once the clock has passed `not_before`). Proposals take no `commit_id`.
//! [`MlsSessionCrypto`] is the same state behind the session layer's
//! `SessionCrypto` calls, where the session does the numbering.
//!
//! # In sessions (MLS on by default)
//!
//! `SessionConfig::default().mls` is true. Every app gets a crypto factory
//! (`session::mls_factory`, installed by `App::start`) that builds one
//! [`MlsSessionCrypto`] per session, with a fresh signing key and
//! credentials minted from the app's own `SharedSecret`; the session calls
//! it through the `SessionCrypto` seam (`session/crypto.rs` forwards each
//! method; `MlsError::NoGroup` becomes `CryptoError::NoGroup`,
//! [`MlsError::is_bad_input`] errors `BadInput`, the rest `Failed`). A key
//! package whose credential fails our checks fails the invite with
//! `SessionError::Crypto(BadInput(..))` naming the credential error. An app
//! with another shared secret never answers (peers drop requests whose
//! token they cannot verify), so that invite fails as a discovery timeout
//! whose text names the shared secret as the likely cause.
//!
//! Interop with the official `slim-bindings` 1.3.0, MLS on (tests in
//! `tests/session_interop_python.rs`, through our node and through the
//! official node): P2P created by either side, an official moderator with
//! our participant plus an official one, our moderator with two official
//! participants including a GROUP_REMOVE commit; 100 messages each way.
//! Every exchange worked with the settings above; no field or policy needed
//! changing on our side for the session integration.
//!
//! # Hardening beyond the settings
//!
//! * openmls deletes a key package from storage as soon as a Welcome names
//!   it, even when that Welcome then fails; we restore ours after a failed
//!   join so a tampered Welcome cannot spoil the genuine one.
//! * A commit whose new credentials fail the checks is not merged; the state
//!   stays at its epoch (the moderator and we have then forked, which is
//!   what SLIM's identity provider does too).
//! * Proposals other than Add, Update and Remove (PSK, re-init, group
//!   context extensions, external senders) and external commits are refused:
//!   SLIM never sends them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::storage::StorageProvider as _;

use crate::identity::{
    Claims, IdentityError, IdentityProvider, IdentityVerifier, SharedSecret, TOKEN_VALIDITY_SECS,
    unix_now,
};

/// The SLIM v1.3 ciphersuite (0x0001).
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// The ciphersuite of SLIM v3 (official 2.x/3.x) groups by default:
/// P-256 ECDH and ECDSA, AES-128-GCM, SHA-256 (0x0002).
pub const CIPHERSUITE_V3: Ciphersuite = Ciphersuite::MLS_128_DHKEMP256_AES128GCM_SHA256_P256;
/// How many past epochs keep their application secrets (matches mls-rs).
pub const MAX_PAST_EPOCHS: usize = 3;
/// How many early commits a [`CommitQueue`] holds at most.
pub const MAX_BUFFERED_COMMITS: usize = 64;
/// A leaf token older than this (seconds) should be refreshed.
pub const REFRESH_AFTER_SECS: u64 = TOKEN_VALIDITY_SECS / 2;

/// A source of Unix time in seconds. Injected so tests can run hours ahead.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Why a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("credential is not a BasicCredential")]
    NotBasic,
    #[error("credential identity is not a UTF-8 token")]
    NotUtf8,
    #[error("token MAC does not match (signed with a different shared secret?)")]
    WrongSecret,
    #[error("token rejected: {0}")]
    Token(IdentityError),
    #[error("token has no pubkey claim")]
    NoPubkey,
    #[error("token pubkey claim does not match the leaf's signature key")]
    PubkeyMismatch,
    #[error("successor credential changes the subject from {old:?} to {new:?}")]
    NotSuccessor { old: String, new: String },
    #[error("member {0:?} is already in the group")]
    Duplicate(String),
}

impl From<IdentityError> for CredentialError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::BadMac => Self::WrongSecret,
            other => Self::Token(other),
        }
    }
}

/// Errors of the MLS layer. Bad input always ends here, never in a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MlsError {
    #[error("malformed MLS message: {0}")]
    Malformed(String),
    #[error("expected {expected}, got {got}")]
    UnexpectedMessage { expected: &'static str, got: String },
    #[error("wrong MLS ciphersuite: {0}")]
    WrongCiphersuite(String),
    #[error("no MLS group yet")]
    NoGroup,
    #[error("already in an MLS group")]
    AlreadyInGroup,
    #[error("this member is no longer in the group")]
    Inactive,
    #[error("credential of {who} refused: {reason}")]
    Credential {
        who: String,
        reason: CredentialError,
    },
    #[error("no member {0}")]
    UnknownMember(String),
    #[error("a member cannot remove itself; leave instead")]
    RemoveSelf,
    #[error("proposal type {0} is not used by SLIM and is refused")]
    UnsupportedProposal(String),
    #[error("cannot mint our own token: {0}")]
    Mint(IdentityError),
    #[error("openmls {op} failed: {reason}")]
    Openmls { op: &'static str, reason: String },
}

impl MlsError {
    /// True when the input bytes (or the credentials in them) were at fault,
    /// false when the local state or openmls refused an operation.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::Malformed(_)
                | Self::UnexpectedMessage { .. }
                | Self::WrongCiphersuite(_)
                | Self::Credential { .. }
                | Self::UnsupportedProposal(_)
        )
    }
}

fn om<E: fmt::Debug>(op: &'static str) -> impl FnOnce(E) -> MlsError {
    move |e| MlsError::Openmls {
        op,
        reason: format!("{e:?}"),
    }
}

fn cred_err(who: impl Into<String>) -> impl FnOnce(CredentialError) -> MlsError {
    let who = who.into();
    move |reason| MlsError::Credential { who, reason }
}

/// Which member to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberRef {
    /// The token subject (`sub`, the token's id field) of the member.
    Identity(String),
    /// The member's leaf index.
    Index(u32),
}

/// A member of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Leaf index in the ratchet tree.
    pub index: u32,
    /// Token subject (`<base_id>_<8 alphanumerics>`).
    pub identity: String,
}

/// What the moderator sends after adding a member.
#[derive(Debug, Clone)]
pub struct AddOutcome {
    /// Sequence number for GROUP_ADD and GROUP_WELCOME.
    pub commit_id: u32,
    /// MLSMessage(PublicMessage Commit) for the existing members.
    pub commit: Vec<u8>,
    /// MLSMessage(Welcome) for the new member.
    pub welcome: Vec<u8>,
    /// The new member's identity.
    pub member: MemberInfo,
}

/// What the moderator sends after adding several members in one commit.
#[derive(Debug, Clone)]
pub struct AddManyOutcome {
    /// Sequence number for GROUP_WELCOME (and GROUP_ADD, if any).
    pub commit_id: u32,
    /// MLSMessage(PublicMessage Commit) for the existing members.
    pub commit: Vec<u8>,
    /// MLSMessage(Welcome) that every new member can open.
    pub welcome: Vec<u8>,
    /// The new members' identities, in the order of the key packages.
    pub members: Vec<MemberInfo>,
}

/// A commit we produced (remove, refresh, committed proposals).
#[derive(Debug, Clone)]
pub struct CommitOut {
    /// Sequence number to send it with.
    pub commit_id: u32,
    /// MLSMessage(PublicMessage Commit).
    pub commit: Vec<u8>,
}

/// What applying a received commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The commit was merged; the group is at `epoch`.
    Applied {
        epoch: u64,
        added: Vec<MemberInfo>,
        removed: Vec<MemberInfo>,
        updated: Vec<MemberInfo>,
    },
    /// The commit removed us; the state is now inactive.
    SelfRemoved,
}

/// A decrypted application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// Sender's token subject.
    pub sender: String,
    /// Sender's leaf index.
    pub sender_index: u32,
    /// The plaintext.
    pub payload: Vec<u8>,
}

/// One member's MLS state for one session.
pub struct MlsState {
    provider: LeanProvider,
    suite: Ciphersuite,
    identity: SharedSecret,
    verifier: Arc<dyn IdentityVerifier>,
    clock: Clock,
    signer: MlsSigner,
    /// Signer of our own not-yet-committed Update proposal.
    pending_signer: Option<MlsSigner>,
    /// When the token of `pending_signer` was minted.
    pending_minted: u64,
    group: Option<MlsGroup>,
    /// Our unused key packages. openmls deletes a key package from storage
    /// as soon as a Welcome names it, even if the Welcome then fails; we put
    /// it back so a tampered Welcome cannot spoil the real one.
    key_packages: Vec<KeyPackageBundle>,
    commit_id: u32,
    /// Unix time at which our current leaf token was minted.
    token_minted: u64,
    /// Per sender leaf, the credential and key last found good and what its
    /// token says: a sender's every message carries the same credential, so
    /// its token is checked once, not once per message.
    checked: HashMap<u32, CheckedSender>,
}

/// A current member's credential and signature key, checked, with its claims.
struct CheckedSender {
    credential: Credential,
    signature_key: Vec<u8>,
    claims: Claims,
}

impl fmt::Debug for MlsState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlsState")
            .field("identity", &self.identity.id())
            .field("epoch", &self.epoch())
            .field("commit_id", &self.commit_id)
            .finish_non_exhaustive()
    }
}

/// Our signature key pair. Ed25519 keeps the signing key expanded once:
/// `SignatureKeyPair` rebuilds it from the private bytes on every signature
/// (a base-point multiplication to recompute the public key); that was about
/// 40% of the cost of encrypting each MLS application message. It signs with
/// AWS-LC, about three times faster than ed25519-dalek here (`cargo xtask
/// bench crypto`); Ed25519 signatures are deterministic, so both give the
/// same bytes (unit test `ed25519_signatures_are_the_bytes_dalek_would_give`).
/// P-256 (the v3 suite) signs ECDSA-SHA256 with DER signatures, as the
/// RustCrypto provider and mls-rs expect, with `ring`: about ten times
/// faster than RustCrypto's `p256` here (`cargo xtask bench crypto`).
struct MlsSigner {
    pair: SignatureKeyPair,
    key: SignerKey,
}

enum SignerKey {
    Ed25519(aws_lc_rs::signature::Ed25519KeyPair),
    P256(ring::signature::EcdsaKeyPair),
}

impl MlsSigner {
    fn public(&self) -> &[u8] {
        self.pair.public()
    }
}

impl openmls_traits::signatures::Signer for MlsSigner {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, openmls_traits::signatures::SignerError> {
        match &self.key {
            SignerKey::Ed25519(k) => Ok(k.sign(payload).as_ref().to_vec()),
            SignerKey::P256(k) => k
                .sign(&ring::rand::SystemRandom::new(), payload)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| openmls_traits::signatures::SignerError::SigningError),
        }
    }

    fn signature_scheme(&self) -> SignatureScheme {
        self.pair.signature_scheme()
    }
}

fn new_signer(suite: Ciphersuite) -> Result<MlsSigner, MlsError> {
    use rand::RngCore as _;
    if suite.signature_algorithm() == SignatureScheme::ECDSA_SECP256R1_SHA256 {
        // A P-256 scalar from the thread CSPRNG; retried in the negligible
        // case that the bytes are not a valid scalar.
        let key = loop {
            let mut seed = [0u8; 32];
            rand::rng().fill_bytes(&mut seed);
            if let Ok(k) = p256::ecdsa::SigningKey::from_slice(&seed) {
                seed.fill(0);
                break k;
            }
        };
        let public = key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        let pair = SignatureKeyPair::from_raw(
            suite.signature_algorithm(),
            key.to_bytes().to_vec(),
            public,
        );
        let ring_key = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &key.to_bytes(),
            pair.public(),
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|e| MlsError::Openmls {
            op: "load the P-256 signing key",
            reason: e.to_string(),
        })?;
        return Ok(MlsSigner {
            pair,
            key: SignerKey::P256(ring_key),
        });
    }
    // A fresh Ed25519 seed from the thread CSPRNG (OS-seeded ChaCha).
    let mut seed = [0u8; ed25519_dalek::SECRET_KEY_LENGTH];
    rand::rng().fill_bytes(&mut seed);
    let signer = ed25519_signer(&seed);
    seed.fill(0);
    signer
}

/// The Ed25519 signer of the 32-byte private `seed`.
fn ed25519_signer(seed: &[u8; 32]) -> Result<MlsSigner, MlsError> {
    let public = ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes();
    let key = aws_lc_rs::signature::Ed25519KeyPair::from_seed_and_public_key(seed, &public)
        .map_err(|e| MlsError::Openmls {
            op: "load the Ed25519 signing key",
            reason: e.to_string(),
        })?;
    let pair = SignatureKeyPair::from_raw(SignatureScheme::ED25519, seed.to_vec(), public.to_vec());
    Ok(MlsSigner {
        pair,
        key: SignerKey::Ed25519(key),
    })
}

/// How far back and ahead of a sender's newest generation a message still
/// decrypts: 1024 both ways, as mls-rs (`MAX_RATCHET_BACK_HISTORY`).
/// openmls's default tolerance of 5 generations fails every message that
/// a session recovers by retransmission after 5 newer ones from the same
/// sender were decrypted (loss or reordering), and a member skipped by
/// unicast replies sees generations jump.
pub const SENDER_RATCHET_WINDOW: u32 = 1024;

fn sender_ratchet() -> SenderRatchetConfiguration {
    SenderRatchetConfiguration::new(SENDER_RATCHET_WINDOW, SENDER_RATCHET_WINDOW)
}

fn create_config(suite: Ciphersuite) -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(suite)
        .use_ratchet_tree_extension(true)
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .sender_ratchet_configuration(sender_ratchet())
        .build()
}

fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .sender_ratchet_configuration(sender_ratchet())
        .build()
}

fn parse(bytes: &[u8]) -> Result<MlsMessageBodyIn, MlsError> {
    let msg = MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|e| MlsError::Malformed(format!("{e:?}")))?;
    Ok(msg.extract())
}

fn body_kind(body: &MlsMessageBodyIn) -> String {
    match body {
        MlsMessageBodyIn::PublicMessage(_) => "PublicMessage".into(),
        MlsMessageBodyIn::PrivateMessage(_) => "PrivateMessage".into(),
        MlsMessageBodyIn::Welcome(_) => "Welcome".into(),
        MlsMessageBodyIn::GroupInfo(_) => "GroupInfo".into(),
        MlsMessageBodyIn::KeyPackage(_) => "KeyPackage".into(),
        #[allow(unreachable_patterns)]
        _ => "another MLS message".into(),
    }
}

fn active_mut(group: &mut Option<MlsGroup>) -> Result<&mut MlsGroup, MlsError> {
    match group {
        None => Err(MlsError::NoGroup),
        Some(g) if !g.is_active() => Err(MlsError::Inactive),
        Some(g) => Ok(g),
    }
}

fn to_bytes(msg: &MlsMessageOut) -> Result<Vec<u8>, MlsError> {
    msg.tls_serialize_detached().map_err(om("serialize"))
}

/// The token subject of a credential already in the tree (not verified here).
fn subject_of(credential: &Credential) -> String {
    BasicCredential::try_from(credential.clone())
        .ok()
        .and_then(|b| String::from_utf8(b.identity().to_vec()).ok())
        .and_then(|t| t.split(':').next().map(str::to_owned))
        .unwrap_or_else(|| "<invalid credential>".into())
}

/// Whether a token's age is held against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Age {
    /// Being admitted now: must be inside the token window.
    MustBeFresh,
    /// Already admitted: MAC and binding only.
    Admitted,
}

impl MlsState {
    /// A fresh state with a new Ed25519 signing key, on the system clock.
    pub fn new(
        identity: SharedSecret,
        verifier: Arc<dyn IdentityVerifier>,
    ) -> Result<Self, MlsError> {
        Self::with_clock(identity, verifier, Arc::new(unix_now))
    }

    /// A fresh state of ciphersuite `suite` ([`CIPHERSUITE`] for v1 groups,
    /// [`CIPHERSUITE_V3`] for v3 ones), on the system clock.
    pub fn with_suite(
        identity: SharedSecret,
        verifier: Arc<dyn IdentityVerifier>,
        suite: Ciphersuite,
    ) -> Result<Self, MlsError> {
        Self::with_suite_and_clock(identity, verifier, suite, Arc::new(unix_now))
    }

    /// A fresh state of ciphersuite `suite` whose token minting and checking
    /// use `clock`.
    pub fn with_suite_and_clock(
        identity: SharedSecret,
        verifier: Arc<dyn IdentityVerifier>,
        suite: Ciphersuite,
        clock: Clock,
    ) -> Result<Self, MlsError> {
        let mut s = Self::with_clock(identity, verifier, clock)?;
        if suite != s.suite {
            s.suite = suite;
            s.signer = new_signer(suite)?;
        }
        Ok(s)
    }

    /// A fresh state whose token minting and checking use `clock`.
    pub fn with_clock(
        identity: SharedSecret,
        verifier: Arc<dyn IdentityVerifier>,
        clock: Clock,
    ) -> Result<Self, MlsError> {
        Ok(Self {
            provider: LeanProvider::default(),
            identity,
            verifier,
            clock,
            signer: new_signer(CIPHERSUITE)?,
            suite: CIPHERSUITE,
            pending_signer: None,
            pending_minted: 0,
            group: None,
            key_packages: Vec::new(),
            commit_id: 0,
            token_minted: 0,
            checked: HashMap::new(),
        })
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Our token subject.
    pub fn identity(&self) -> &str {
        self.identity.id()
    }

    /// A credential with a token minted now for `signer`'s public key.
    fn mint(&self, signer: &MlsSigner) -> Result<(CredentialWithKey, u64), MlsError> {
        let now = self.now();
        let token = self
            .identity
            .with_public_key(signer.public())
            .token_at(now)
            .map_err(MlsError::Mint)?;
        Ok((
            CredentialWithKey {
                credential: BasicCredential::new(token.into_bytes()).into(),
                signature_key: signer.public().into(),
            },
            now,
        ))
    }

    /// Validates a credential and its leaf signature key; returns its claims.
    fn check(
        &self,
        credential: &Credential,
        signature_key: &[u8],
        age: Age,
    ) -> Result<Claims, CredentialError> {
        let basic =
            BasicCredential::try_from(credential.clone()).map_err(|_| CredentialError::NotBasic)?;
        let token = std::str::from_utf8(basic.identity()).map_err(|_| CredentialError::NotUtf8)?;
        let claims = match (self.verifier.verify_at(token, self.now()), age) {
            (Ok(c), _) => c,
            (Err(IdentityError::Expired(_) | IdentityError::FromTheFuture(_)), Age::Admitted) => {
                // Judge MAC and shape as of the token's own timestamp: an
                // admitted credential's age (or our clock's skew against the
                // member that admitted it) is not held against it.
                let ts = token
                    .split(':')
                    .nth(1)
                    .and_then(|t| t.parse::<u64>().ok())
                    .ok_or(CredentialError::Token(IdentityError::BadTimestamp))?;
                self.verifier.verify_at(token, ts)?
            }
            (Err(e), _) => return Err(e.into()),
        };
        let pubkey = claims.pubkey.as_deref().ok_or(CredentialError::NoPubkey)?;
        if pubkey != STANDARD.encode(signature_key) {
            return Err(CredentialError::PubkeyMismatch);
        }
        Ok(claims)
    }

    fn group(&self) -> Result<&MlsGroup, MlsError> {
        match &self.group {
            None => Err(MlsError::NoGroup),
            Some(g) if !g.is_active() => Err(MlsError::Inactive),
            Some(g) => Ok(g),
        }
    }

    /// A new key package for JOIN_REPLY: MLSMessage(KeyPackage) bytes with a
    /// token minted now. Its private keys stay in this state for the Welcome.
    pub fn key_package(&mut self) -> Result<Vec<u8>, MlsError> {
        let (cred, minted) = self.mint(&self.signer)?;
        let bundle = KeyPackage::builder()
            .build(self.suite, &self.provider, &self.signer, cred)
            .map_err(om("key package"))?;
        self.token_minted = minted;
        let bytes = to_bytes(&MlsMessageOut::from(bundle.key_package().clone()))?;
        self.key_packages.push(bundle);
        Ok(bytes)
    }

    /// Creates the group with us as its only member (moderator).
    pub fn create_group(&mut self) -> Result<(), MlsError> {
        if self.group.is_some() {
            return Err(MlsError::AlreadyInGroup);
        }
        let (cred, minted) = self.mint(&self.signer)?;
        let group = MlsGroup::new(
            &self.provider,
            &self.signer,
            &create_config(self.suite),
            cred,
        )
        .map_err(om("create group"))?;
        self.group = Some(group);
        self.token_minted = minted;
        self.commit_id = 0;
        Ok(())
    }

    /// Adds the member whose MLSMessage(KeyPackage) is `key_package`: one
    /// commit with one Add, one Welcome. The commit is merged locally.
    pub fn add_member(&mut self, key_package: &[u8]) -> Result<AddOutcome, MlsError> {
        let mut many = self.add_members(&[key_package])?;
        let member = many
            .members
            .pop()
            .ok_or_else(|| MlsError::UnknownMember("new member".into()))?;
        Ok(AddOutcome {
            commit_id: many.commit_id,
            commit: many.commit,
            welcome: many.welcome,
            member,
        })
    }

    /// Adds every member whose MLSMessage(KeyPackage) is in `key_packages`
    /// in **one** commit (one Add proposal each) with one Welcome that each
    /// of them can open. The commit is merged locally. Every key package is
    /// validated first; one bad or duplicate member fails the whole add and
    /// leaves the group unchanged. `members` follows the input order.
    pub fn add_members(&mut self, key_packages: &[&[u8]]) -> Result<AddManyOutcome, MlsError> {
        self.group()?;
        if key_packages.is_empty() {
            return Err(MlsError::UnexpectedMessage {
                expected: "at least one key package",
                got: "none".into(),
            });
        }
        let mut present: std::collections::HashSet<String> =
            self.members()?.into_iter().map(|m| m.identity).collect();
        let mut kps = Vec::with_capacity(key_packages.len());
        let mut subjects = Vec::with_capacity(key_packages.len());
        for key_package in key_packages {
            let (kp, sub) = self.admit_key_package(key_package)?;
            if !present.insert(sub.clone()) {
                return Err(MlsError::Credential {
                    who: "new member".into(),
                    reason: CredentialError::Duplicate(sub),
                });
            }
            subjects.push(sub);
            kps.push(kp);
        }
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self.group.as_mut().ok_or(MlsError::NoGroup)?;
        let (commit, welcome, _) = group
            .add_members(provider, signer, &kps)
            .map_err(om("add member"))?;
        group
            .merge_pending_commit(provider)
            .map_err(om("merge own commit"))?;
        let mut members = Vec::with_capacity(subjects.len());
        for sub in subjects {
            let index = group
                .members()
                .find(|m| subject_of(&m.credential) == sub)
                .map(|m| m.index.u32())
                .ok_or_else(|| MlsError::UnknownMember(sub.clone()))?;
            members.push(MemberInfo {
                index,
                identity: sub,
            });
        }
        self.commit_id = self.commit_id.wrapping_add(1);
        Ok(AddManyOutcome {
            commit_id: self.commit_id,
            commit: to_bytes(&commit)?,
            welcome: to_bytes(&welcome)?,
            members,
        })
    }

    /// Parses and validates one MLSMessage(KeyPackage) of a joiner: this
    /// group's ciphersuite, a fresh credential; returns it with its subject.
    fn admit_key_package(&self, key_package: &[u8]) -> Result<(KeyPackage, String), MlsError> {
        let kp_in = match parse(key_package)? {
            MlsMessageBodyIn::KeyPackage(kp) => kp,
            other => {
                return Err(MlsError::UnexpectedMessage {
                    expected: "KeyPackage",
                    got: body_kind(&other),
                });
            }
        };
        let kp = kp_in
            .validate(self.provider.crypto(), ProtocolVersion::Mls10)
            .map_err(om("key package validation"))?;
        if kp.ciphersuite() != self.suite {
            return Err(MlsError::WrongCiphersuite(format!(
                "the joiner offers {:?}, this group uses {:?}",
                kp.ciphersuite(),
                self.suite
            )));
        }
        let leaf = kp.leaf_node();
        let claims = self
            .check(
                leaf.credential(),
                leaf.signature_key().as_slice(),
                Age::MustBeFresh,
            )
            .map_err(cred_err("new member"))?;
        Ok((kp, claims.sub))
    }

    /// Re-admits a member that fell behind (SLIM v3 rejoin): **one** commit
    /// that removes its old leaf and adds `key_package`, a fresh leaf of the
    /// same subject, with a welcome for it. The commit is merged locally.
    pub fn rejoin_member(
        &mut self,
        who: &MemberRef,
        key_package: &[u8],
    ) -> Result<AddOutcome, MlsError> {
        let index = self.find(who)?;
        let old_sub = self
            .group()?
            .member_at(index)
            .map(|m| subject_of(&m.credential))
            .ok_or_else(|| MlsError::UnknownMember(format!("{who:?}")))?;
        let (kp, sub) = self.admit_key_package(key_package)?;
        if sub != old_sub {
            return Err(MlsError::Credential {
                who: "rejoining member".into(),
                reason: CredentialError::NotSuccessor {
                    old: old_sub,
                    new: sub,
                },
            });
        }
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self.group.as_mut().ok_or(MlsError::NoGroup)?;
        if index == group.own_leaf_index() {
            return Err(MlsError::RemoveSelf);
        }
        let out = group
            .swap_members(provider, signer, &[index], &[kp])
            .map_err(om("rejoin member"))?;
        group
            .merge_pending_commit(provider)
            .map_err(om("merge own commit"))?;
        let index = group
            .members()
            .find(|m| subject_of(&m.credential) == sub)
            .map(|m| m.index.u32())
            .ok_or_else(|| MlsError::UnknownMember(sub.clone()))?;
        self.commit_id = self.commit_id.wrapping_add(1);
        Ok(AddOutcome {
            commit_id: self.commit_id,
            commit: to_bytes(&out.commit)?,
            welcome: to_bytes(&out.welcome)?,
            member: MemberInfo {
                index,
                identity: sub,
            },
        })
    }

    fn find(&self, who: &MemberRef) -> Result<LeafNodeIndex, MlsError> {
        let group = self.group()?;
        let found = group.members().find(|m| match who {
            MemberRef::Identity(id) => subject_of(&m.credential) == *id,
            MemberRef::Index(i) => m.index.u32() == *i,
        });
        found
            .map(|m| m.index)
            .ok_or_else(|| MlsError::UnknownMember(format!("{who:?}")))
    }

    /// Removes one member: one Remove commit, merged locally.
    pub fn remove_member(&mut self, who: &MemberRef) -> Result<CommitOut, MlsError> {
        let index = self.find(who)?;
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self.group.as_mut().ok_or(MlsError::NoGroup)?;
        if index == group.own_leaf_index() {
            return Err(MlsError::RemoveSelf);
        }
        let (commit, _, _) = group
            .remove_members(provider, signer, &[index])
            .map_err(om("remove member"))?;
        group
            .merge_pending_commit(provider)
            .map_err(om("merge own commit"))?;
        self.commit_id = self.commit_id.wrapping_add(1);
        Ok(CommitOut {
            commit_id: self.commit_id,
            commit: to_bytes(&commit)?,
        })
    }

    /// Joins from an MLSMessage(Welcome). `commit_id` is the id the Welcome
    /// came with; later commits must follow it. Every leaf is validated
    /// before the group is entered.
    pub fn process_welcome(&mut self, welcome: &[u8], commit_id: u32) -> Result<(), MlsError> {
        if self.group.is_some() {
            return Err(MlsError::AlreadyInGroup);
        }
        self.enter_from_welcome(welcome, commit_id)
    }

    /// Re-enters the group from the welcome of a rejoin (SLIM v3): the
    /// group state this member fell behind with is replaced once the
    /// welcome checks out, and kept if it does not.
    pub fn process_rejoin_welcome(
        &mut self,
        welcome: &[u8],
        commit_id: u32,
    ) -> Result<(), MlsError> {
        let old = self.group.take();
        let entered = self.enter_from_welcome(welcome, commit_id);
        if entered.is_err() {
            self.group = old;
        }
        entered
    }

    fn enter_from_welcome(&mut self, welcome: &[u8], commit_id: u32) -> Result<(), MlsError> {
        let welcome = match parse(welcome)? {
            MlsMessageBodyIn::Welcome(w) => w,
            other => {
                return Err(MlsError::UnexpectedMessage {
                    expected: "Welcome",
                    got: body_kind(&other),
                });
            }
        };
        if welcome.ciphersuite() != self.suite {
            return Err(MlsError::WrongCiphersuite(format!(
                "the group uses {:?}, this member {:?}",
                welcome.ciphersuite(),
                self.suite
            )));
        }
        match self.join(welcome) {
            Ok(group) => {
                self.group = Some(group);
                self.commit_id = commit_id;
                self.key_packages.clear();
                Ok(())
            }
            Err(e) => {
                self.restore_key_packages();
                Err(e)
            }
        }
    }

    fn restore_key_packages(&self) {
        let storage = self.provider.storage();
        for bundle in &self.key_packages {
            let restored = bundle
                .key_package()
                .hash_ref(self.provider.crypto())
                .map_err(|e| format!("{e:?}"))
                .and_then(|r| {
                    storage
                        .write_key_package(&r, bundle)
                        .map_err(|e| format!("{e:?}"))
                });
            if let Err(e) = restored {
                tracing::warn!(error = %e, "could not restore a key package after a failed welcome");
            }
        }
    }

    fn join(&self, welcome: Welcome) -> Result<MlsGroup, MlsError> {
        let staged = StagedWelcome::build_from_welcome(&self.provider, &join_config(), welcome)
            .map_err(om("welcome"))?
            .skip_lifetime_validation()
            .build()
            .map_err(om("welcome"))?;
        // Every leaf, ours included, was admitted by the member that added
        // it (our key package by the welcome's sender): authenticity and
        // binding are checked, age is not (see the module doc).
        for m in staged.members() {
            self.check(&m.credential, &m.signature_key, Age::Admitted)
                .map_err(cred_err(format!(
                    "welcome member {} ({})",
                    m.index.u32(),
                    subject_of(&m.credential)
                )))?;
        }
        staged.into_group(&self.provider).map_err(om("enter group"))
    }

    /// Validates what a staged commit brings in, per the module doc.
    fn check_commit(
        &self,
        committer: LeafNodeIndex,
        staged: &StagedCommit,
    ) -> Result<(), MlsError> {
        let group = self.group()?;
        for p in staged.queued_proposals() {
            match p.proposal() {
                Proposal::Add(_) | Proposal::Update(_) | Proposal::Remove(_) => {}
                other => {
                    return Err(MlsError::UnsupportedProposal(format!(
                        "{:?}",
                        other.proposal_type()
                    )));
                }
            }
        }
        let removed: Vec<String> = staged
            .remove_proposals()
            .filter_map(|r| group.member_at(r.remove_proposal().removed()))
            .map(|m| subject_of(&m.credential))
            .collect();
        for add in staged.add_proposals() {
            let leaf = add.add_proposal().key_package().leaf_node();
            let claims = self
                .check(
                    leaf.credential(),
                    leaf.signature_key().as_slice(),
                    Age::MustBeFresh,
                )
                .map_err(cred_err("added member"))?;
            // A rejoin replaces a member's leaf in one commit: its subject
            // leaves and comes back.
            if !removed.contains(&claims.sub)
                && group
                    .members()
                    .any(|m| subject_of(&m.credential) == claims.sub)
            {
                return Err(MlsError::Credential {
                    who: "added member".into(),
                    reason: CredentialError::Duplicate(claims.sub),
                });
            }
        }
        for upd in staged.update_proposals() {
            let Sender::Member(index) = upd.sender() else {
                return Err(MlsError::UnsupportedProposal("external update".into()));
            };
            self.check_successor(*index, upd.update_proposal().leaf_node())?;
        }
        if let Some(leaf) = staged.update_path_leaf_node() {
            self.check_successor(committer, leaf)?;
        }
        Ok(())
    }

    /// A leaf replacing the leaf at `index`: unchanged credentials are
    /// re-checked as admitted; new ones must be fresh and keep the `sub`.
    fn check_successor(&self, index: LeafNodeIndex, leaf: &LeafNode) -> Result<(), MlsError> {
        let group = self.group()?;
        let old = group
            .member_at(index)
            .ok_or_else(|| MlsError::UnknownMember(format!("leaf {}", index.u32())))?;
        let who = || format!("member {} ({})", index.u32(), subject_of(&old.credential));
        let unchanged = old.credential == *leaf.credential()
            && old.signature_key == leaf.signature_key().as_slice();
        let age = if unchanged {
            Age::Admitted
        } else {
            Age::MustBeFresh
        };
        let claims = self
            .check(leaf.credential(), leaf.signature_key().as_slice(), age)
            .map_err(cred_err(who()))?;
        let old_sub = subject_of(&old.credential);
        if claims.sub != old_sub {
            return Err(MlsError::Credential {
                who: who(),
                reason: CredentialError::NotSuccessor {
                    old: old_sub,
                    new: claims.sub,
                },
            });
        }
        Ok(())
    }

    fn protocol_message(bytes: &[u8], expected: &'static str) -> Result<ProtocolMessage, MlsError> {
        let body = parse(bytes)?;
        let kind = body_kind(&body);
        let msg = match body {
            MlsMessageBodyIn::PublicMessage(m) => ProtocolMessage::from(m),
            MlsMessageBodyIn::PrivateMessage(m) => ProtocolMessage::from(m),
            _ => {
                return Err(MlsError::UnexpectedMessage {
                    expected,
                    got: kind,
                });
            }
        };
        Ok(msg)
    }

    /// Applies one commit (MLSMessage, PublicMessage or PrivateMessage) now.
    /// The caller orders commits by `commit_id` (or uses [`CommitQueue`]).
    pub fn process_commit(&mut self, commit: &[u8]) -> Result<CommitOutcome, MlsError> {
        let msg = Self::protocol_message(commit, "a Commit")?;
        if msg.content_type() != ContentType::Commit {
            return Err(MlsError::UnexpectedMessage {
                expected: "a Commit",
                got: format!("{:?}", msg.content_type()),
            });
        }
        let processed = {
            let provider = &self.provider;
            let group = active_mut(&mut self.group)?;
            group
                .process_message(provider, msg)
                .map_err(om("process commit"))?
        };
        let Sender::Member(committer) = *processed.sender() else {
            return Err(MlsError::UnsupportedProposal("external commit".into()));
        };
        let staged = match processed.into_content() {
            ProcessedMessageContent::StagedCommitMessage(s) => s,
            _ => {
                return Err(MlsError::UnexpectedMessage {
                    expected: "a Commit",
                    got: "another handshake message".into(),
                });
            }
        };
        self.check_commit(committer, &staged)?;
        let group = self.group()?;
        let info = |i: LeafNodeIndex| MemberInfo {
            index: i.u32(),
            identity: group
                .member(i)
                .map(subject_of)
                .unwrap_or_else(|| "<unknown>".into()),
        };
        let removed: Vec<MemberInfo> = staged
            .remove_proposals()
            .map(|r| info(r.remove_proposal().removed()))
            .collect();
        let mut updated: Vec<MemberInfo> = staged
            .update_proposals()
            .filter_map(|u| match u.sender() {
                Sender::Member(i) => Some(info(*i)),
                _ => None,
            })
            .collect();
        if staged.update_path_leaf_node().is_some() {
            updated.push(info(committer));
        }
        let added_subs: Vec<String> = staged
            .add_proposals()
            .map(|a| subject_of(a.add_proposal().key_package().leaf_node().credential()))
            .collect();
        let self_removed = staged.self_removed();
        let provider = &self.provider;
        let group = self.group.as_mut().ok_or(MlsError::NoGroup)?;
        group
            .merge_staged_commit(provider, *staged)
            .map_err(om("merge commit"))?;
        self.commit_id = self.commit_id.wrapping_add(1);
        if self_removed {
            self.pending_signer = None;
            return Ok(CommitOutcome::SelfRemoved);
        }
        // If the commit carried our own Update proposal, switch signers.
        if let Some(pending) = &self.pending_signer {
            let own = group
                .own_leaf_node()
                .map(|l| l.signature_key().as_slice().to_vec());
            if own.as_deref() == Some(pending.public())
                && let Some(s) = self.pending_signer.take()
            {
                self.signer = s;
                self.token_minted = self.pending_minted;
            }
        }
        let added = group
            .members()
            .filter(|m| added_subs.contains(&subject_of(&m.credential)))
            .map(|m| MemberInfo {
                index: m.index.u32(),
                identity: subject_of(&m.credential),
            })
            .collect();
        Ok(CommitOutcome::Applied {
            epoch: group.epoch().as_u64(),
            added,
            removed,
            updated,
        })
    }

    /// Encrypts an application payload: MLSMessage(PrivateMessage), empty AAD.
    pub fn encrypt(&mut self, plain: &[u8]) -> Result<Vec<u8>, MlsError> {
        self.encrypt_with_aad(plain, &[])
    }

    /// Encrypts an application message whose authenticated data is `aad`
    /// (SLIM v3 binds the message header this way).
    pub fn encrypt_with_aad(&mut self, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, MlsError> {
        let (provider, signer) = (&self.provider, &self.signer);
        let group = active_mut(&mut self.group)?;
        group.set_aad(aad.to_vec());
        let msg = group
            .create_message(provider, signer, plain)
            .map_err(om("encrypt"))?;
        to_bytes(&msg)
    }

    /// Decrypts an MLSMessage(PrivateMessage) application payload. Each
    /// ciphertext decrypts once: a replay fails.
    pub fn decrypt(&mut self, bytes: &[u8]) -> Result<Decrypted, MlsError> {
        let body = parse(bytes)?;
        let MlsMessageBodyIn::PrivateMessage(pm) = body else {
            return Err(MlsError::UnexpectedMessage {
                expected: "PrivateMessage",
                got: body_kind(&body),
            });
        };
        let msg = ProtocolMessage::from(pm);
        if msg.content_type() != ContentType::Application {
            return Err(MlsError::UnexpectedMessage {
                expected: "an application message",
                got: format!("{:?}", msg.content_type()),
            });
        }
        let processed = {
            let provider = &self.provider;
            let group = active_mut(&mut self.group)?;
            group
                .process_message(provider, msg)
                .map_err(om("decrypt"))?
        };
        let Sender::Member(index) = *processed.sender() else {
            return Err(MlsError::UnexpectedMessage {
                expected: "a message from a member",
                got: "an external sender".into(),
            });
        };
        // The sender's credential was admitted earlier: MAC always, pubkey
        // binding when the leaf still holds that credential (messages from a
        // past epoch may come from a leaf that changed since).
        let claims = {
            let credential = processed.credential();
            let current_key = self
                .group()?
                .public_group()
                .leaf(index)
                .filter(|leaf| leaf.credential() == credential)
                .map(|leaf| leaf.signature_key().as_slice().to_vec());
            match current_key {
                Some(key) => self.check_current(index.u32(), credential, key),
                None => self.check_mac_only(credential),
            }
            .map_err(|reason| MlsError::Credential {
                who: format!("sender {} ({})", index.u32(), subject_of(credential)),
                reason,
            })?
        };
        let ProcessedMessageContent::ApplicationMessage(app) = processed.into_content() else {
            return Err(MlsError::UnexpectedMessage {
                expected: "an application message",
                got: "a handshake message".into(),
            });
        };
        Ok(Decrypted {
            sender: claims.sub,
            sender_index: index.u32(),
            payload: app.into_bytes(),
        })
    }

    /// [`Self::check`] of a current member's credential, as admitted, done
    /// once per credential and key of a leaf.
    fn check_current(
        &mut self,
        leaf: u32,
        credential: &Credential,
        signature_key: Vec<u8>,
    ) -> Result<Claims, CredentialError> {
        if let Some(c) = self.checked.get(&leaf)
            && c.credential == *credential
            && c.signature_key == signature_key
        {
            return Ok(c.claims.clone());
        }
        let claims = self.check(credential, &signature_key, Age::Admitted)?;
        self.checked.insert(
            leaf,
            CheckedSender {
                credential: credential.clone(),
                signature_key,
                claims: claims.clone(),
            },
        );
        Ok(claims)
    }

    fn check_mac_only(&self, credential: &Credential) -> Result<Claims, CredentialError> {
        let basic =
            BasicCredential::try_from(credential.clone()).map_err(|_| CredentialError::NotBasic)?;
        let token = std::str::from_utf8(basic.identity()).map_err(|_| CredentialError::NotUtf8)?;
        let ts = token
            .split(':')
            .nth(1)
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or(CredentialError::Token(IdentityError::BadTimestamp))?;
        Ok(self.verifier.verify_at(token, ts)?)
    }

    /// Moderator credential refresh: a self-update commit that puts a new
    /// Ed25519 key and a token minted now in our leaf. Merged locally.
    pub fn refresh_credential(&mut self) -> Result<CommitOut, MlsError> {
        self.group()?;
        let new = new_signer(self.suite)?;
        let (cred, minted) = self.mint(&new)?;
        let provider = &self.provider;
        let old = &self.signer;
        let group = self.group.as_mut().ok_or(MlsError::NoGroup)?;
        let params = LeafNodeParameters::builder()
            .with_credential_with_key(cred.clone())
            .build();
        let bundle = group
            .self_update_with_new_signer(
                provider,
                old,
                NewSignerBundle {
                    signer: &new,
                    credential_with_key: cred,
                },
                params,
            )
            .map_err(om("self update"))?;
        let commit = to_bytes(bundle.commit())?;
        group
            .merge_pending_commit(provider)
            .map_err(om("merge own commit"))?;
        self.signer = new;
        self.token_minted = minted;
        self.commit_id = self.commit_id.wrapping_add(1);
        Ok(CommitOut {
            commit_id: self.commit_id,
            commit,
        })
    }

    /// Participant credential refresh: an Update proposal (MLSMessage,
    /// PublicMessage) with a new key and a token minted now. The moderator
    /// commits it ([`Self::process_proposal`], [`Self::commit_pending_proposals`]);
    /// we switch to the new key when that commit is applied. For all-openmls
    /// groups only: SLIM v1.3 does not handle proposals.
    pub fn propose_refresh(&mut self) -> Result<Vec<u8>, MlsError> {
        self.group()?;
        let new = new_signer(self.suite)?;
        let (cred, minted) = self.mint(&new)?;
        let provider = &self.provider;
        let old = &self.signer;
        let group = self.group.as_mut().ok_or(MlsError::NoGroup)?;
        let params = LeafNodeParameters::builder()
            .with_credential_with_key(cred.clone())
            .build();
        let (msg, _) = group
            .propose_self_update_with_new_signer(
                provider,
                old,
                NewSignerBundle {
                    signer: &new,
                    credential_with_key: cred,
                },
                params,
            )
            .map_err(om("propose update"))?;
        self.pending_signer = Some(new);
        self.pending_minted = minted;
        to_bytes(&msg)
    }

    /// Every member except the proposer: validates a member's Update proposal
    /// (same `sub`, fresh token, pubkey binding) and stores it, because the
    /// moderator's commit refers to it by reference (RFC 9420 forbids Update
    /// by value). Deliver the proposal to the whole group, then the commit.
    /// Returns the proposer.
    pub fn process_proposal(&mut self, proposal: &[u8]) -> Result<MemberInfo, MlsError> {
        let msg = Self::protocol_message(proposal, "a Proposal")?;
        if msg.content_type() != ContentType::Proposal {
            return Err(MlsError::UnexpectedMessage {
                expected: "a Proposal",
                got: format!("{:?}", msg.content_type()),
            });
        }
        let processed = {
            let provider = &self.provider;
            let group = active_mut(&mut self.group)?;
            group
                .process_message(provider, msg)
                .map_err(om("process proposal"))?
        };
        let queued = match processed.into_content() {
            ProcessedMessageContent::ProposalMessage(q) => q,
            _ => {
                return Err(MlsError::UnexpectedMessage {
                    expected: "a Proposal from a member",
                    got: "another message".into(),
                });
            }
        };
        let (Sender::Member(index), Proposal::Update(update)) =
            (queued.sender(), queued.proposal())
        else {
            return Err(MlsError::UnsupportedProposal(format!(
                "{:?} from {:?}",
                queued.proposal().proposal_type(),
                queued.sender()
            )));
        };
        let index = *index;
        self.check_successor(index, update.leaf_node())?;
        let identity = subject_of(update.leaf_node().credential());
        let provider = &self.provider;
        let group = self.group.as_mut().ok_or(MlsError::NoGroup)?;
        group
            .store_pending_proposal(provider.storage(), *queued)
            .map_err(om("store proposal"))?;
        Ok(MemberInfo {
            index: index.u32(),
            identity,
        })
    }

    /// Moderator: commits every stored proposal (with an UpdatePath).
    pub fn commit_pending_proposals(&mut self) -> Result<CommitOut, MlsError> {
        let (provider, signer) = (&self.provider, &self.signer);
        let group = active_mut(&mut self.group)?;
        let (commit, _, _) = group
            .commit_to_pending_proposals(provider, signer)
            .map_err(om("commit proposals"))?;
        group
            .merge_pending_commit(provider)
            .map_err(om("merge own commit"))?;
        self.commit_id = self.commit_id.wrapping_add(1);
        Ok(CommitOut {
            commit_id: self.commit_id,
            commit: to_bytes(&commit)?,
        })
    }

    /// Whether our leaf token is older than [`REFRESH_AFTER_SECS`].
    pub fn needs_refresh(&self) -> bool {
        self.group.is_some() && self.now().saturating_sub(self.token_minted) > REFRESH_AFTER_SECS
    }

    /// The current epoch (0 before any group).
    pub fn epoch(&self) -> u64 {
        self.group.as_ref().map_or(0, |g| g.epoch().as_u64())
    }

    /// The last commit id produced (moderator) or applied (participant).
    pub fn commit_id(&self) -> u32 {
        self.commit_id
    }

    /// Whether we are in an active group.
    pub fn is_active(&self) -> bool {
        self.group.as_ref().is_some_and(MlsGroup::is_active)
    }

    /// The current roster.
    pub fn members(&self) -> Result<Vec<MemberInfo>, MlsError> {
        Ok(self
            .group()?
            .members()
            .map(|m| MemberInfo {
                index: m.index.u32(),
                identity: subject_of(&m.credential),
            })
            .collect())
    }
}

/// Applies commits in `commit_id` order: early ones wait, duplicates (ids
/// already applied) are reported so the caller acknowledges them again, the
/// rest are applied as soon as the gap before them is filled. Start it from
/// the Welcome's id. The ordering is the session's own commit queue
/// (`session::CommitQueue`), so both generations share one rule.
#[derive(Debug)]
pub struct CommitQueue {
    order: crate::session::CommitQueue<Vec<u8>>,
}

impl Default for CommitQueue {
    fn default() -> Self {
        Self {
            order: crate::session::CommitQueue::new(0, u32::MAX, MAX_BUFFERED_COMMITS),
        }
    }
}

/// What [`CommitQueue::push`] did with a commit.
#[derive(Debug)]
pub enum Queued {
    /// The id was already applied: acknowledge it again, apply nothing (a
    /// lost GROUP_ACK must not fail the moderator's invite).
    Duplicate,
    /// Waiting for earlier ids.
    Buffered,
    /// Dropped: [`MAX_BUFFERED_COMMITS`] commits already wait for a gap
    /// (the next expected id is always accepted).
    Full,
    /// This commit and possibly buffered successors were applied, in order.
    Applied(Vec<(u32, Result<CommitOutcome, MlsError>)>),
}

impl CommitQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many commits wait for an earlier id.
    pub fn buffered(&self) -> usize {
        self.order.waiting()
    }

    /// Offers `commit` with `commit_id` to `state`.
    pub fn push(&mut self, state: &mut MlsState, commit_id: u32, commit: Vec<u8>) -> Queued {
        use crate::session::Offer;
        // The state may have moved on by itself (a Welcome, our own commits).
        self.order.applied(state.commit_id());
        match self.order.offer(commit_id, commit) {
            Offer::Duplicate(_) => return Queued::Duplicate,
            Offer::Refused => return Queued::Full,
            Offer::Buffered => return Queued::Buffered,
            Offer::Ready => {}
        }
        let mut applied = Vec::new();
        while let Some((id, bytes)) = self.order.pop_next() {
            let result = state.process_commit(&bytes);
            // On failure the id stays open: the commit is not acked, so the
            // moderator re-sends it and the next push retries (e.g. after a
            // `NotValidYet` lifetime caused by clock skew).
            let stop = !matches!(result, Ok(CommitOutcome::Applied { .. }));
            applied.push((id, result));
            if stop {
                if !state.is_active() {
                    self.order.clear();
                }
                break;
            }
            self.order.applied(state.commit_id());
        }
        Queued::Applied(applied)
    }
}

mod keycache;
mod seam;
mod storage;
pub use seam::{AddBytes, MlsSessionCrypto};
use storage::LeanProvider;

#[cfg(test)]
mod tests;
