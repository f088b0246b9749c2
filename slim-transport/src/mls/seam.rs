//! The session-facing face of [`MlsState`]: the calls the session state
//! machine makes (its `SessionCrypto` seam), keyed by SLIM [`Name`]s.
//!
//! Job: remember which MLS member (token subject) each invited [`Name`]
//! became, as SLIM does (`participants: Name -> identity`), so removals can be
//! asked for by name; and shape the results as the seam wants them. It must
//! not number or order commits: the session does that and calls
//! [`MlsSessionCrypto::process_commit`] once per commit, in order.
//!
//! The methods have exactly the signatures of the session branch's
//! `SessionCrypto` trait, with [`MlsError`] as error type, so the trait impl
//! is a forwarding shim that maps errors.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{AddManyOutcome, AddOutcome, MemberRef, MlsError, MlsState};
use crate::Name;
use crate::identity::{IdentityVerifier, SharedSecret};

/// The commit and welcome of one add (GROUP_ADD / GROUP_WELCOME payloads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddBytes {
    pub commit: Vec<u8>,
    pub welcome: Vec<u8>,
}

/// [`MlsState`] plus the `Name -> member` map of the moderator.
#[derive(Debug)]
pub struct MlsSessionCrypto {
    state: MlsState,
    members: HashMap<Name, String>,
    /// The JOIN_REPLY key package, minted once and re-sent on repeats.
    key_package: Option<Vec<u8>>,
    /// The time the state's clock reads, when the caller drives it (see
    /// [`Self::driven`]).
    driven: Option<Arc<AtomicU64>>,
}

impl MlsSessionCrypto {
    /// A member with a new signing key, on the system clock.
    pub fn new(
        identity: SharedSecret,
        verifier: Arc<dyn IdentityVerifier>,
    ) -> Result<Self, MlsError> {
        Ok(Self::from_state(MlsState::new(identity, verifier)?))
    }

    /// A member of a group of ciphersuite `suite` (v3: P-256).
    pub fn with_suite(
        identity: SharedSecret,
        verifier: Arc<dyn IdentityVerifier>,
        suite: openmls::prelude::Ciphersuite,
    ) -> Result<Self, MlsError> {
        Ok(Self::from_state(MlsState::with_suite(
            identity, verifier, suite,
        )?))
    }

    /// Wraps an existing state (e.g. one with an injected clock).
    pub fn from_state(state: MlsState) -> Self {
        Self {
            state,
            members: HashMap::new(),
            key_package: None,
            driven: None,
        }
    }

    /// A member of a group of ciphersuite `suite` whose clock is driven by
    /// the caller: it reads the Unix seconds last given to [`Self::at`]
    /// and never the system clock (the session core passes its `now`).
    pub fn driven(
        identity: SharedSecret,
        verifier: Arc<dyn IdentityVerifier>,
        suite: openmls::prelude::Ciphersuite,
    ) -> Result<Self, MlsError> {
        let now = Arc::new(AtomicU64::new(0));
        let reads = now.clone();
        let clock = Arc::new(move || reads.load(Ordering::Relaxed));
        let state = MlsState::with_suite_and_clock(identity, verifier, suite, clock)?;
        let mut s = Self::from_state(state);
        s.driven = Some(now);
        Ok(s)
    }

    /// Sets the time (Unix seconds) a driven state's clock reads; no effect
    /// on a state that keeps its own clock.
    pub fn at(&mut self, now: u64) {
        if let Some(clock) = &self.driven {
            clock.store(now, Ordering::Relaxed);
        }
    }

    /// The MLS state, for epochs, rosters and credential refresh.
    pub fn state(&mut self) -> &mut MlsState {
        &mut self.state
    }

    /// Always true: this is the MLS-on implementation.
    pub fn enabled(&self) -> bool {
        true
    }

    /// Participant: the JOIN_REPLY key package (the same bytes every call).
    pub fn key_package(&mut self) -> Result<Option<Vec<u8>>, MlsError> {
        if self.key_package.is_none() {
            self.key_package = Some(self.state.key_package()?);
        }
        Ok(self.key_package.clone())
    }

    /// Moderator: creates the group.
    pub fn create_group(&mut self) -> Result<(), MlsError> {
        self.state.create_group()
    }

    /// Moderator: adds `member` from its key package; a missing key package
    /// is an error (the peer did not enable MLS).
    pub fn add_member(
        &mut self,
        member: &Name,
        key_package: Option<&[u8]>,
    ) -> Result<Option<AddBytes>, MlsError> {
        let kp = key_package.ok_or_else(|| MlsError::UnexpectedMessage {
            expected: "a key package in JOIN_REPLY",
            got: "none".into(),
        })?;
        let AddOutcome {
            commit,
            welcome,
            member: info,
            ..
        } = self.state.add_member(kp)?;
        self.members.insert(member.clone(), info.identity);
        Ok(Some(AddBytes { commit, welcome }))
    }

    /// Moderator: adds every `(member, key package)` in one commit with one
    /// welcome for all of them; a missing key package is an error.
    pub fn add_members(
        &mut self,
        members: &[(Name, Option<Vec<u8>>)],
    ) -> Result<Option<AddBytes>, MlsError> {
        let mut kps = Vec::with_capacity(members.len());
        for (_, kp) in members {
            kps.push(kp.as_deref().ok_or_else(|| MlsError::UnexpectedMessage {
                expected: "a key package in JOIN_REPLY",
                got: "none".into(),
            })?);
        }
        let AddManyOutcome {
            commit,
            welcome,
            members: infos,
            ..
        } = self.state.add_members(&kps)?;
        for ((name, _), info) in members.iter().zip(infos) {
            self.members.insert(name.clone(), info.identity);
        }
        Ok(Some(AddBytes { commit, welcome }))
    }

    /// Moderator: removes `member` (as added by [`Self::add_member`]).
    pub fn remove_member(&mut self, member: &Name) -> Result<Option<Vec<u8>>, MlsError> {
        let identity = self
            .members
            .get(member)
            .cloned()
            .ok_or_else(|| MlsError::UnknownMember(member.to_string()))?;
        let out = self.state.remove_member(&MemberRef::Identity(identity))?;
        self.members.remove(member);
        Ok(Some(out.commit))
    }

    /// Moderator: re-admits `member` (SLIM v3 rejoin) from a fresh key
    /// package: one commit replacing its leaf, one welcome.
    pub fn rejoin_member(
        &mut self,
        member: &Name,
        key_package: &[u8],
    ) -> Result<Option<AddBytes>, MlsError> {
        let identity = self
            .members
            .get(member)
            .cloned()
            .ok_or_else(|| MlsError::UnknownMember(member.to_string()))?;
        let out = self
            .state
            .rejoin_member(&MemberRef::Identity(identity), key_package)?;
        self.members.insert(member.clone(), out.member.identity);
        Ok(Some(AddBytes {
            commit: out.commit,
            welcome: out.welcome,
        }))
    }

    /// Participant: a new key package for a rejoin request (never the one
    /// of the JOIN_REPLY, which the group already consumed).
    pub fn fresh_key_package(&mut self) -> Result<Vec<u8>, MlsError> {
        self.state.key_package()
    }

    /// Participant: re-enters the group from the welcome of a rejoin.
    pub fn process_rejoin_welcome(&mut self, welcome: &[u8]) -> Result<(), MlsError> {
        self.state.process_rejoin_welcome(welcome, 0)
    }

    /// Participant: joins from the welcome. The session numbers commits, so
    /// [`MlsState::commit_id`] is not meaningful behind this adapter.
    pub fn process_welcome(&mut self, welcome: &[u8]) -> Result<(), MlsError> {
        self.state.process_welcome(welcome, 0)
    }

    /// Participant: applies one commit (the session orders them). Being
    /// removed is not an error here; [`MlsState::is_active`] turns false.
    pub fn process_commit(&mut self, commit: &[u8]) -> Result<(), MlsError> {
        self.state.process_commit(commit).map(|_| ())
    }

    /// Encrypts one MSG payload.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, MlsError> {
        self.state.encrypt(plaintext)
    }

    /// The current epoch, once in a group.
    pub fn epoch(&self) -> Option<u64> {
        self.state.is_active().then(|| self.state.epoch())
    }

    /// Encrypts one MSG payload with `aad` as its authenticated data.
    pub fn encrypt_with_aad(&mut self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, MlsError> {
        self.state.encrypt_with_aad(plaintext, aad)
    }

    /// Decrypts one MSG payload (the sender was validated; see
    /// [`MlsState::decrypt`] for its identity).
    pub fn decrypt(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, MlsError> {
        self.state.decrypt(ciphertext).map(|d| d.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "kjandjansdiasb8udaijdniasdaindasndasndasndasndasndasndasndas";

    fn crypto(name: &str) -> MlsSessionCrypto {
        let verifier: Arc<dyn IdentityVerifier> =
            Arc::new(SharedSecret::new("verifier", SECRET).unwrap());
        MlsSessionCrypto::new(SharedSecret::new(name, SECRET).unwrap(), verifier).unwrap()
    }

    #[test]
    fn seam_adds_and_removes_members_by_slim_name() {
        let mut m = crypto("org/ns/mod");
        let mut p1 = crypto("org/ns/p1");
        let mut p2 = crypto("org/ns/p2");
        let n1: Name = "org/ns/p1".parse::<Name>().unwrap().with_id(1);
        let n2: Name = "org/ns/p2".parse::<Name>().unwrap().with_id(2);
        m.create_group().unwrap();
        let kp1 = p1.key_package().unwrap().unwrap();
        assert_eq!(
            p1.key_package().unwrap().unwrap(),
            kp1,
            "JOIN_REPLY repeats"
        );
        let a1 = m.add_member(&n1, Some(&kp1)).unwrap().unwrap();
        p1.process_welcome(&a1.welcome).unwrap();
        let kp2 = p2.key_package().unwrap().unwrap();
        let a2 = m.add_member(&n2, Some(&kp2)).unwrap().unwrap();
        p1.process_commit(&a2.commit).unwrap();
        p2.process_welcome(&a2.welcome).unwrap();

        let ct = p2.encrypt(b"hi").unwrap();
        assert_eq!(m.decrypt(&ct).unwrap(), b"hi");
        assert_eq!(p1.decrypt(&ct).unwrap(), b"hi");

        let commit = m.remove_member(&n1).unwrap().unwrap();
        p2.process_commit(&commit).unwrap();
        p1.process_commit(&commit).unwrap();
        assert!(!p1.state().is_active());
        assert!(matches!(
            m.remove_member(&n1),
            Err(MlsError::UnknownMember(_))
        ));
        assert!(m.add_member(&n1, None).is_err());
        let ct = m.encrypt(b"after").unwrap();
        assert_eq!(p2.decrypt(&ct).unwrap(), b"after");
        assert!(p1.decrypt(&ct).is_err());
    }
}
