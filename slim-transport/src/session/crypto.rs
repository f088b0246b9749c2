//! The MLS seam of the session layer: what a session asks of its group
//! cryptography, the no-op implementation used when MLS is off, and the
//! forwarding of the seam to the openmls implementation
//! ([`crate::mls::MlsSessionCrypto`], built per session by [`mls_factory`]).
//!
//! The session state machine owns the *protocol* around MLS (who sends which
//! payload, `commit_id` numbering from 1, applying commits strictly in
//! `commit_id` order, buffering early ones and dropping duplicates, decrypting
//! before acking and encrypting before buffering). An implementation of
//! [`SessionCrypto`] owns only the MLS group state and the bytes. It must not
//! send anything, keep timers or reorder anything; every call is synchronous
//! and is made from the session's own task. Calls that mint or check
//! credentials take `now` (Unix seconds) from the session: an implementation
//! reads no clock of its own.
//!
//! All byte strings are serialized `MLSMessage` structures exactly as they
//! travel in SLIM v1.3 (§e.4): key packages are `MLSMessage(KeyPackage)`,
//! welcomes `MLSMessage(Welcome)` (with the ratchet-tree extension), commits
//! `MLSMessage(PublicMessage)`, application data `MLSMessage(PrivateMessage)`.

use crate::Name;

/// Why a cryptographic operation failed. The session drops the message (or
/// fails the invite/remove) and counts it; it never panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("MLS group does not exist yet")]
    NoGroup,
    #[error("bad MLS input: {0}")]
    BadInput(String),
    #[error("MLS operation failed: {0}")]
    Failed(String),
}

/// What adding a member produced: the commit for the existing members
/// (carried in GROUP_ADD) and the welcome for the new one (GROUP_WELCOME).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddOutput {
    pub commit: Vec<u8>,
    pub welcome: Vec<u8>,
}

impl From<crate::mls::AddBytes> for AddOutput {
    fn from(a: crate::mls::AddBytes) -> Self {
        Self {
            commit: a.commit,
            welcome: a.welcome,
        }
    }
}

/// Group cryptography of one session (one MLS group).
///
/// Call order, moderator: [`create_group`](Self::create_group) once, when the
/// first invitee answers discovery; then per invite
/// [`add_member`](Self::add_member) with the key package from its
/// JOIN_REPLY; per removal [`remove_member`](Self::remove_member). The session
/// numbers the resulting commits 1, 2, 3, ... and puts the same number on
/// the welcome of the add that produced it.
///
/// Call order, participant: [`key_package`](Self::key_package) once for the
/// JOIN_REPLY (the session re-sends the same bytes if the request is
/// repeated); [`process_welcome`](Self::process_welcome) once; then
/// [`process_commit`](Self::process_commit) exactly once per commit, in
/// `commit_id` order, never for a duplicate.
///
/// Both: [`encrypt`](Self::encrypt) each outbound MSG payload once (the
/// ciphertext is what gets buffered and retransmitted);
/// [`decrypt`](Self::decrypt) each inbound MSG payload before it is acked. A
/// decrypt failure drops the message without an ack. Duplicates (a MSG
/// re-sent because its ack was lost) are recognised *before* decryption and
/// acknowledged again, so an implementation never sees the same ciphertext
/// twice. RTX_REPLY payloads are decrypted too (v1.3 forgets to).
pub trait SessionCrypto: Send {
    /// True when MSG payloads are encrypted and MLS payloads are exchanged.
    fn enabled(&self) -> bool;
    /// Participant: the serialized key package for JOIN_REPLY (`None` = no MLS).
    fn key_package(&mut self, now: u64) -> Result<Option<Vec<u8>>, CryptoError>;
    /// Moderator: creates the group, with this member alone in it.
    fn create_group(&mut self, now: u64) -> Result<(), CryptoError>;
    /// Moderator: adds `member` from its key package (`None` when the
    /// JOIN_REPLY carried none). Returns `None` when MLS is off.
    fn add_member(
        &mut self,
        member: &Name,
        key_package: Option<&[u8]>,
        now: u64,
    ) -> Result<Option<AddOutput>, CryptoError>;
    /// Moderator: adds every `(member, key package)` in **one** commit whose
    /// single welcome every new member can open (a group's first invites,
    /// see `Session::invite_many`). Returns `None` when MLS is off.
    fn add_members(
        &mut self,
        members: &[(Name, Option<Vec<u8>>)],
        now: u64,
    ) -> Result<Option<AddOutput>, CryptoError>;
    /// Moderator: removes `member`; returns the commit (`None` = MLS off).
    fn remove_member(&mut self, member: &Name, now: u64) -> Result<Option<Vec<u8>>, CryptoError>;
    /// Moderator (SLIM v3 rejoin): replaces `member`'s leaf with the one of
    /// its fresh `key_package` in one commit, with a welcome for it.
    /// Returns `None` when MLS is off.
    fn rejoin_member(
        &mut self,
        member: &Name,
        key_package: &[u8],
        now: u64,
    ) -> Result<Option<AddOutput>, CryptoError> {
        let _ = (member, key_package, now);
        Ok(None)
    }
    /// Participant (SLIM v3 rejoin): a new key package for REJOIN_REQUEST
    /// (`None` = no MLS).
    fn fresh_key_package(&mut self, now: u64) -> Result<Option<Vec<u8>>, CryptoError> {
        let _ = now;
        Ok(None)
    }
    /// Participant (SLIM v3 rejoin): re-enters the group from the welcome
    /// of a REJOIN_REPLY, replacing the state it fell behind with.
    fn process_rejoin_welcome(&mut self, welcome: &[u8], now: u64) -> Result<(), CryptoError> {
        let _ = (welcome, now);
        Ok(())
    }
    /// Participant: joins the group from a welcome.
    fn process_welcome(&mut self, welcome: &[u8], now: u64) -> Result<(), CryptoError>;
    /// Participant: applies one commit (called in `commit_id` order).
    fn process_commit(&mut self, commit: &[u8], now: u64) -> Result<(), CryptoError>;
    /// Encrypts one MSG payload.
    fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError>;
    /// The member's current MLS epoch (`None` without MLS or before the
    /// group exists).
    fn epoch(&self) -> Option<u64> {
        None
    }
    /// Encrypts one MSG payload authenticating `aad` with it (SLIM v3);
    /// without MLS the AAD has nothing to bind to.
    fn encrypt_with_aad(&mut self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let _ = aad;
        self.encrypt(plaintext)
    }
    /// Decrypts one MSG payload.
    fn decrypt(&mut self, ciphertext: &[u8], now: u64) -> Result<Vec<u8>, CryptoError>;
}

/// MLS off: no key packages or commits, payloads pass through unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCrypto;

impl SessionCrypto for NoCrypto {
    fn enabled(&self) -> bool {
        false
    }
    fn key_package(&mut self, _now: u64) -> Result<Option<Vec<u8>>, CryptoError> {
        Ok(None)
    }
    fn create_group(&mut self, _now: u64) -> Result<(), CryptoError> {
        Ok(())
    }
    fn add_member(
        &mut self,
        _member: &Name,
        _key_package: Option<&[u8]>,
        _now: u64,
    ) -> Result<Option<AddOutput>, CryptoError> {
        Ok(None)
    }
    fn add_members(
        &mut self,
        _members: &[(Name, Option<Vec<u8>>)],
        _now: u64,
    ) -> Result<Option<AddOutput>, CryptoError> {
        Ok(None)
    }
    fn remove_member(&mut self, _member: &Name, _now: u64) -> Result<Option<Vec<u8>>, CryptoError> {
        Ok(None)
    }
    fn process_welcome(&mut self, _welcome: &[u8], _now: u64) -> Result<(), CryptoError> {
        Ok(())
    }
    fn process_commit(&mut self, _commit: &[u8], _now: u64) -> Result<(), CryptoError> {
        Ok(())
    }
    fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(plaintext.to_vec())
    }
    fn decrypt(&mut self, ciphertext: &[u8], _now: u64) -> Result<Vec<u8>, CryptoError> {
        Ok(ciphertext.to_vec())
    }
}

/// Maps the MLS layer's errors onto the seam's.
fn from_mls(e: crate::mls::MlsError) -> CryptoError {
    match e {
        crate::mls::MlsError::NoGroup => CryptoError::NoGroup,
        e if e.is_bad_input() => CryptoError::BadInput(e.to_string()),
        e => CryptoError::Failed(e.to_string()),
    }
}

/// MLS on: every call forwards to the method of the same name of
/// [`crate::mls::MlsSessionCrypto`], after handing it the session's `now`
/// (a state built by [`crate::mls::MlsSessionCrypto::driven`] mints and
/// checks tokens at that time and reads no clock).
impl SessionCrypto for crate::mls::MlsSessionCrypto {
    fn enabled(&self) -> bool {
        true
    }
    fn key_package(&mut self, now: u64) -> Result<Option<Vec<u8>>, CryptoError> {
        self.at(now);
        crate::mls::MlsSessionCrypto::key_package(self).map_err(from_mls)
    }
    fn create_group(&mut self, now: u64) -> Result<(), CryptoError> {
        self.at(now);
        crate::mls::MlsSessionCrypto::create_group(self).map_err(from_mls)
    }
    fn add_member(
        &mut self,
        member: &Name,
        key_package: Option<&[u8]>,
        now: u64,
    ) -> Result<Option<AddOutput>, CryptoError> {
        self.at(now);
        crate::mls::MlsSessionCrypto::add_member(self, member, key_package)
            .map(|o| o.map(AddOutput::from))
            .map_err(from_mls)
    }
    fn add_members(
        &mut self,
        members: &[(Name, Option<Vec<u8>>)],
        now: u64,
    ) -> Result<Option<AddOutput>, CryptoError> {
        self.at(now);
        crate::mls::MlsSessionCrypto::add_members(self, members)
            .map(|o| o.map(AddOutput::from))
            .map_err(from_mls)
    }
    fn remove_member(&mut self, member: &Name, now: u64) -> Result<Option<Vec<u8>>, CryptoError> {
        self.at(now);
        crate::mls::MlsSessionCrypto::remove_member(self, member).map_err(from_mls)
    }
    fn rejoin_member(
        &mut self,
        member: &Name,
        key_package: &[u8],
        now: u64,
    ) -> Result<Option<AddOutput>, CryptoError> {
        self.at(now);
        crate::mls::MlsSessionCrypto::rejoin_member(self, member, key_package)
            .map(|o| o.map(AddOutput::from))
            .map_err(from_mls)
    }
    fn fresh_key_package(&mut self, now: u64) -> Result<Option<Vec<u8>>, CryptoError> {
        self.at(now);
        crate::mls::MlsSessionCrypto::fresh_key_package(self)
            .map(Some)
            .map_err(from_mls)
    }
    fn process_rejoin_welcome(&mut self, welcome: &[u8], now: u64) -> Result<(), CryptoError> {
        self.at(now);
        crate::mls::MlsSessionCrypto::process_rejoin_welcome(self, welcome).map_err(from_mls)
    }
    fn process_welcome(&mut self, welcome: &[u8], now: u64) -> Result<(), CryptoError> {
        self.at(now);
        crate::mls::MlsSessionCrypto::process_welcome(self, welcome).map_err(from_mls)
    }
    fn process_commit(&mut self, commit: &[u8], now: u64) -> Result<(), CryptoError> {
        self.at(now);
        crate::mls::MlsSessionCrypto::process_commit(self, commit).map_err(from_mls)
    }
    fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        crate::mls::MlsSessionCrypto::encrypt(self, plaintext).map_err(from_mls)
    }
    fn encrypt_with_aad(&mut self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        crate::mls::MlsSessionCrypto::encrypt_with_aad(self, plaintext, aad).map_err(from_mls)
    }
    fn epoch(&self) -> Option<u64> {
        crate::mls::MlsSessionCrypto::epoch(self)
    }
    fn decrypt(&mut self, ciphertext: &[u8], now: u64) -> Result<Vec<u8>, CryptoError> {
        self.at(now);
        crate::mls::MlsSessionCrypto::decrypt(self, ciphertext).map_err(from_mls)
    }
}

/// As [`mls_factory`] for SLIM v3 groups: ciphersuite 0x0002 (P-256), as
/// the official 2.x/3.x lines use by default.
pub fn mls_factory_v3(identity: crate::identity::SharedSecret) -> super::CryptoFactory {
    let verifier: std::sync::Arc<dyn crate::identity::IdentityVerifier> =
        std::sync::Arc::new(identity.clone());
    std::sync::Arc::new(move |_ctx, _moderator| {
        crate::mls::MlsSessionCrypto::driven(
            identity.clone(),
            verifier.clone(),
            crate::mls::CIPHERSUITE_V3,
        )
        .map(|c| Box::new(c) as Box<dyn SessionCrypto>)
        .map_err(from_mls)
    })
}

/// The factory every app gets by default: each MLS session builds a fresh
/// [`crate::mls::MlsSessionCrypto`] (new signing key) whose credentials are
/// minted from `identity` and whose peers are checked against it.
pub fn mls_factory(identity: crate::identity::SharedSecret) -> super::CryptoFactory {
    let verifier: std::sync::Arc<dyn crate::identity::IdentityVerifier> =
        std::sync::Arc::new(identity.clone());
    std::sync::Arc::new(move |_ctx, _moderator| {
        crate::mls::MlsSessionCrypto::driven(
            identity.clone(),
            verifier.clone(),
            crate::mls::CIPHERSUITE,
        )
        .map(|c| Box::new(c) as Box<dyn SessionCrypto>)
        .map_err(from_mls)
    })
}
