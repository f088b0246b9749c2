//! Unit tests of the MLS layer with real openmls and real shared-secret tokens.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng as _;

use super::*;

/// The public test secret of the SLIM sources.
const SECRET: &str = "kjandjansdiasb8udaijdniasdaindasndasndasndasndasndasndasndas";
const OTHER_SECRET: &str = "another-shared-secret-that-is-long-enough-0123456789";
/// Virtual time at which the tests start.
const T0: u64 = 1_800_000_000;
const TWO_HOURS: u64 = 2 * 3600;

/// A virtual clock shared by the members of a test.
#[derive(Clone)]
struct VClock(Arc<AtomicU64>);

impl VClock {
    fn new() -> Self {
        Self(Arc::new(AtomicU64::new(T0)))
    }
    fn set(&self, t: u64) {
        self.0.store(t, Ordering::SeqCst);
    }
    fn clock(&self) -> Clock {
        let c = self.0.clone();
        Arc::new(move || c.load(Ordering::SeqCst))
    }
}

fn member_with(name: &str, secret: &str, clock: &VClock) -> MlsState {
    let identity = SharedSecret::new(name, secret).unwrap();
    let verifier: Arc<dyn IdentityVerifier> =
        Arc::new(SharedSecret::new("verifier", secret).unwrap());
    MlsState::with_clock(identity, verifier, clock.clock()).unwrap()
}

fn member(name: &str, clock: &VClock) -> MlsState {
    member_with(name, SECRET, clock)
}

/// Moderator adds `joiner`; every existing member applies the commit.
fn add(
    moderator: &mut MlsState,
    others: &mut [&mut MlsState],
    joiner: &mut MlsState,
) -> AddOutcome {
    let kp = joiner.key_package().unwrap();
    let out = moderator.add_member(&kp).unwrap();
    for m in others.iter_mut() {
        match m.process_commit(&out.commit).unwrap() {
            CommitOutcome::Applied { added, .. } => {
                assert_eq!(added.len(), 1);
                assert_eq!(added[0].identity, joiner.identity());
            }
            CommitOutcome::SelfRemoved => panic!("unexpected removal"),
        }
    }
    joiner.process_welcome(&out.welcome, out.commit_id).unwrap();
    out
}

/// `from` encrypts; every member of `to` decrypts and sees `from` as sender.
fn roundtrip(from: &mut MlsState, to: &mut [&mut MlsState], text: &[u8]) {
    let ct = from.encrypt(text).unwrap();
    for m in to.iter_mut() {
        let d = m.decrypt(&ct).unwrap();
        assert_eq!(d.payload, text);
        assert_eq!(d.sender, from.identity());
    }
}

/// A, B, C, D in one group created by A.
fn group_of_four(clock: &VClock) -> [MlsState; 4] {
    let mut a = member("org/ns/a", clock);
    let mut b = member("org/ns/b", clock);
    let mut c = member("org/ns/c", clock);
    let mut d = member("org/ns/d", clock);
    a.create_group().unwrap();
    add(&mut a, &mut [], &mut b);
    add(&mut a, &mut [&mut b], &mut c);
    add(&mut a, &mut [&mut b, &mut c], &mut d);
    [a, b, c, d]
}

#[test]
fn group_of_four_shares_epochs_and_messages_with_sender_identity() {
    let clock = VClock::new();
    let mut a = member("org/ns/a", &clock);
    let mut b = member("org/ns/b", &clock);
    let mut c = member("org/ns/c", &clock);
    let mut d = member("org/ns/d", &clock);
    a.create_group().unwrap();
    assert_eq!(a.epoch(), 0);
    let o1 = add(&mut a, &mut [], &mut b);
    assert_eq!((o1.commit_id, a.epoch(), b.epoch()), (1, 1, 1));
    let o2 = add(&mut a, &mut [&mut b], &mut c);
    assert_eq!(o2.commit_id, 2);
    let o3 = add(&mut a, &mut [&mut b, &mut c], &mut d);
    assert_eq!(o3.commit_id, 3);
    for m in [&a, &b, &c, &d] {
        assert_eq!(m.epoch(), 3);
        assert_eq!(m.commit_id(), 3);
        assert_eq!(m.members().unwrap().len(), 4);
    }
    assert_eq!(o3.member.identity, d.identity());
    roundtrip(&mut a, &mut [&mut b, &mut c, &mut d], b"from a");
    roundtrip(&mut b, &mut [&mut a, &mut c, &mut d], b"from b");
    roundtrip(&mut d, &mut [&mut a, &mut b, &mut c], b"from d");
}

#[test]
fn message_secrets_are_never_written_to_storage_yet_every_member_keeps_decrypting() {
    let clock = VClock::new();
    let [mut a, mut b, mut c, mut d] = group_of_four(&clock);
    for i in 0..50 {
        let text = format!("message {i}");
        roundtrip(&mut a, &mut [&mut b, &mut c, &mut d], text.as_bytes());
        roundtrip(&mut d, &mut [&mut a, &mut b, &mut c], text.as_bytes());
    }
    for m in [&a, &b, &c, &d] {
        let storage = m.provider.storage();
        assert_eq!(storage.entries_labelled(b"MessageSecrets"), 0);
        // The rest of the group state is persisted as usual.
        assert!(storage.entries_labelled(b"Tree") > 0);
    }
}

#[test]
fn removed_member_cannot_decrypt_messages_sent_after_removal() {
    let clock = VClock::new();
    let [mut a, mut b, mut c, mut d] = group_of_four(&clock);
    let before = c.encrypt(b"before").unwrap();
    let out = a
        .remove_member(&MemberRef::Identity(c.identity().to_owned()))
        .unwrap();
    assert_eq!(out.commit_id, 4);
    for m in [&mut b, &mut d] {
        match m.process_commit(&out.commit).unwrap() {
            CommitOutcome::Applied { epoch, removed, .. } => {
                assert_eq!(epoch, 4);
                assert_eq!(removed.len(), 1);
                assert_eq!(removed[0].identity, c.identity());
            }
            CommitOutcome::SelfRemoved => panic!("wrong member removed"),
        }
    }
    assert_eq!(
        c.process_commit(&out.commit).unwrap(),
        CommitOutcome::SelfRemoved
    );
    assert!(!c.is_active());
    assert_eq!(a.members().unwrap().len(), 3);

    // A message from the previous epoch still decrypts (max_past_epochs).
    assert_eq!(b.decrypt(&before).unwrap().payload, b"before");

    let after = a.encrypt(b"secret after removal").unwrap();
    assert_eq!(b.decrypt(&after).unwrap().payload, b"secret after removal");
    assert_eq!(d.decrypt(&after).unwrap().payload, b"secret after removal");
    assert_eq!(c.decrypt(&after), Err(MlsError::Inactive));
    assert_eq!(c.encrypt(b"x"), Err(MlsError::Inactive));
}

#[test]
fn member_that_missed_its_removal_commit_cannot_decrypt_the_next_epoch() {
    let clock = VClock::new();
    let [mut a, mut b, mut c, _d] = group_of_four(&clock);
    let out = a.remove_member(&MemberRef::Index(2)).unwrap();
    b.process_commit(&out.commit).unwrap();
    // c never sees the commit.
    let after = a.encrypt(b"new epoch").unwrap();
    assert!(b.decrypt(&after).is_ok());
    let err = c.decrypt(&after).unwrap_err();
    assert!(matches!(err, MlsError::Openmls { .. }), "{err}");
}

#[test]
fn tampered_ciphertext_is_rejected() {
    let clock = VClock::new();
    let [mut a, mut b, ..] = group_of_four(&clock);
    let ct = a.encrypt(b"integrity matters").unwrap();
    for pos in [ct.len() - 1, ct.len() - 20, ct.len() / 2] {
        let mut bad = ct.clone();
        bad[pos] ^= 0x01;
        assert!(b.decrypt(&bad).is_err(), "flip at {pos} accepted");
    }
    let good = a.encrypt(b"still fine").unwrap();
    assert_eq!(b.decrypt(&good).unwrap().payload, b"still fine");
}

#[test]
fn replayed_application_message_is_rejected() {
    let clock = VClock::new();
    let [mut a, mut b, ..] = group_of_four(&clock);
    let ct = a.encrypt(b"once").unwrap();
    assert_eq!(b.decrypt(&ct).unwrap().payload, b"once");
    let err = b.decrypt(&ct).unwrap_err();
    assert!(matches!(err, MlsError::Openmls { .. }), "{err}");
}

#[test]
fn key_package_from_another_shared_secret_is_refused_with_a_clear_error() {
    let clock = VClock::new();
    let mut a = member("org/ns/a", &clock);
    let mut e = member_with("org/ns/eve", OTHER_SECRET, &clock);
    a.create_group().unwrap();
    let err = a.add_member(&e.key_package().unwrap()).unwrap_err();
    assert_eq!(
        err,
        MlsError::Credential {
            who: "new member".into(),
            reason: CredentialError::WrongSecret
        }
    );
    assert!(err.to_string().contains("different shared secret"), "{err}");
    assert_eq!(a.epoch(), 0);
    assert_eq!(a.members().unwrap().len(), 1);
}

/// An MLSMessage(KeyPackage) signed by `signer` whose token was minted by
/// `identity` (which may claim another key or none).
fn crafted_key_package(identity: &SharedSecret, signer: &MlsSigner) -> Vec<u8> {
    let provider = LeanProvider::default();
    let token = identity.token_at(T0).unwrap();
    let cred = CredentialWithKey {
        credential: BasicCredential::new(token.into_bytes()).into(),
        signature_key: signer.public().into(),
    };
    let bundle = KeyPackage::builder()
        .build(CIPHERSUITE, &provider, signer, cred)
        .unwrap();
    to_bytes(&MlsMessageOut::from(bundle.key_package().clone())).unwrap()
}

#[test]
fn key_package_whose_token_claims_another_public_key_is_refused() {
    let clock = VClock::new();
    let mut a = member("org/ns/a", &clock);
    a.create_group().unwrap();
    let signer = new_signer(CIPHERSUITE).unwrap();
    let other = new_signer(CIPHERSUITE).unwrap();
    let mallory = SharedSecret::new("org/ns/mallory", SECRET).unwrap();

    let claims_other = crafted_key_package(&mallory.with_public_key(other.public()), &signer);
    assert!(matches!(
        a.add_member(&claims_other),
        Err(MlsError::Credential {
            reason: CredentialError::PubkeyMismatch,
            ..
        })
    ));
    let claims_none = crafted_key_package(&mallory, &signer);
    assert!(matches!(
        a.add_member(&claims_none),
        Err(MlsError::Credential {
            reason: CredentialError::NoPubkey,
            ..
        })
    ));
    // The same construction with the right claim is accepted.
    let honest = crafted_key_package(&mallory.with_public_key(signer.public()), &signer);
    assert!(a.add_member(&honest).is_ok());
}

#[test]
fn commit_adding_a_member_from_another_secret_is_refused_by_members() {
    let clock = VClock::new();
    let mut a = member("org/ns/a", &clock);
    let mut b = member("org/ns/b", &clock);
    a.create_group().unwrap();
    add(&mut a, &mut [], &mut b);
    // A moderator that (wrongly) trusts another secret admits eve.
    a.verifier = Arc::new(SharedSecret::new("v", OTHER_SECRET).unwrap());
    let mut e = member_with("org/ns/eve", OTHER_SECRET, &clock);
    let out = a.add_member(&e.key_package().unwrap()).unwrap();
    let err = b.process_commit(&out.commit).unwrap_err();
    assert!(
        matches!(
            err,
            MlsError::Credential {
                reason: CredentialError::WrongSecret,
                ..
            }
        ),
        "{err}"
    );
    // b stays at its epoch and does not count eve as a member.
    assert_eq!(b.epoch(), 1);
    assert_eq!(b.members().unwrap().len(), 2);
}

#[test]
fn welcome_with_a_member_from_another_secret_is_refused() {
    let clock = VClock::new();
    let mut a = member_with("org/ns/a", OTHER_SECRET, &clock);
    // a trusts both; b trusts only SECRET, so a's own leaf is refused.
    a.verifier = Arc::new(SharedSecret::new("v", SECRET).unwrap());
    let mut b = member("org/ns/b", &clock);
    a.create_group().unwrap();
    let out = a.add_member(&b.key_package().unwrap()).unwrap();
    let err = b.process_welcome(&out.welcome, out.commit_id).unwrap_err();
    assert!(
        matches!(
            err,
            MlsError::Credential {
                reason: CredentialError::WrongSecret,
                ..
            }
        ),
        "{err}"
    );
    assert!(!b.is_active());
}

#[test]
fn mls_bytes_use_the_mlsmessage_framing_slim_sends() {
    let clock = VClock::new();
    let mut a = member("org/ns/a", &clock);
    let mut b = member("org/ns/b", &clock);
    let mut c = member("org/ns/c", &clock);
    a.create_group().unwrap();
    let kp = b.key_package().unwrap();
    assert_eq!(&kp[..8], &[0, 1, 0, 5, 0, 1, 0, 1]);
    let out = a.add_member(&kp).unwrap();
    assert_eq!(&out.welcome[..6], &[0, 1, 0, 3, 0, 1]);
    b.process_welcome(&out.welcome, out.commit_id).unwrap();
    let out = a.add_member(&c.key_package().unwrap()).unwrap();
    // PublicMessage commit with a 16-byte openmls group id.
    assert_eq!(&out.commit[..4], &[0, 1, 0, 1]);
    let ct = a.encrypt(b"hello").unwrap();
    assert_eq!(&ct[..4], &[0, 1, 0, 2]);
}

#[test]
fn garbage_input_is_an_error_and_never_a_panic() {
    let clock = VClock::new();
    let [mut a, mut b, mut c, _d] = group_of_four(&clock);
    let mut joiner = member("org/ns/j", &clock);
    let mut fresh = member("org/ns/f", &clock);
    let kp = joiner.key_package().unwrap();
    let ct = b.encrypt(b"payload").unwrap();
    let mut probe = member("org/ns/p", &clock);
    let wkp = probe.key_package().unwrap();
    let added = a.add_member(&wkp).unwrap();
    // c did not process `added.commit`, so it stays a valid test input.

    let mut rng = rand::rng();
    let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![0], vec![0, 1], vec![0xff; 64]];
    for len in [1usize, 7, 32, 200, 1500] {
        inputs.push((0..len).map(|_| rng.random()).collect());
    }
    for real in [&kp, &added.welcome, &added.commit, &ct] {
        for cut in [1, 4, 5, 16, real.len() / 2, real.len() - 1] {
            inputs.push(real[..cut].to_vec());
        }
        let mut extended = real.clone();
        extended.push(0);
        inputs.push(extended);
        for _ in 0..8 {
            let mut flipped = real.clone();
            let i = rng.random_range(0..flipped.len());
            flipped[i] ^= 1 << rng.random_range(0..8);
            inputs.push(flipped);
        }
    }
    for input in &inputs {
        assert!(a.add_member(input).is_err());
        assert!(fresh.process_welcome(input, 1).is_err());
        assert!(probe.process_welcome(input, 1).is_err());
        assert!(c.process_commit(input).is_err());
        assert!(c.decrypt(input).is_err());
        assert!(a.process_proposal(input).is_err());
    }
    // Valid messages of the wrong kind are refused too.
    assert!(matches!(
        c.decrypt(&added.commit),
        Err(MlsError::UnexpectedMessage { .. })
    ));
    assert!(matches!(
        c.process_commit(&ct),
        Err(MlsError::UnexpectedMessage { .. })
    ));
    assert!(matches!(
        a.add_member(&added.welcome),
        Err(MlsError::UnexpectedMessage { .. })
    ));
    assert!(matches!(
        fresh.process_welcome(&kp, 1),
        Err(MlsError::UnexpectedMessage { .. })
    ));
    // Operations without a group.
    assert_eq!(fresh.encrypt(b"x"), Err(MlsError::NoGroup));
    assert_eq!(fresh.decrypt(&ct), Err(MlsError::NoGroup));
    assert_eq!(fresh.process_commit(&added.commit), Err(MlsError::NoGroup));
    // The group still works after all that.
    assert_eq!(c.process_commit(&added.commit).map(|_| ()), Ok(()));
    probe
        .process_welcome(&added.welcome, added.commit_id)
        .unwrap();
    roundtrip(&mut a, &mut [&mut c, &mut probe], b"alive");
}

#[test]
fn stale_key_package_is_refused_at_admission() {
    let clock = VClock::new();
    let mut a = member("org/ns/a", &clock);
    let mut b = member("org/ns/b", &clock);
    a.create_group().unwrap();
    let kp = b.key_package().unwrap();
    clock.set(T0 + TOKEN_VALIDITY_SECS + 1);
    assert!(matches!(
        a.add_member(&kp),
        Err(MlsError::Credential {
            reason: CredentialError::Token(IdentityError::Expired(_)),
            ..
        })
    ));
}

#[test]
fn group_keeps_working_two_hours_after_every_token_was_minted() {
    let clock = VClock::new();
    let mut a = member("org/ns/a", &clock);
    let mut b = member("org/ns/b", &clock);
    let mut c = member("org/ns/c", &clock);
    a.create_group().unwrap();
    add(&mut a, &mut [], &mut b);
    add(&mut a, &mut [&mut b], &mut c);
    assert!(!a.needs_refresh());

    clock.set(T0 + TWO_HOURS);
    assert!(a.needs_refresh());
    // Adding a member with a fresh key package; the joiner accepts the stale
    // (but authentic) leaves of a, b and c.
    let mut d = member("org/ns/d", &clock);
    add(&mut a, &mut [&mut b, &mut c], &mut d);
    // Removing a member (UpdatePath with a's unchanged, stale credential).
    let out = a
        .remove_member(&MemberRef::Identity(b.identity().to_owned()))
        .unwrap();
    c.process_commit(&out.commit).unwrap();
    d.process_commit(&out.commit).unwrap();
    assert_eq!(
        b.process_commit(&out.commit).unwrap(),
        CommitOutcome::SelfRemoved
    );
    roundtrip(&mut c, &mut [&mut a, &mut d], b"two hours later");

    // The moderator re-mints its token with a new key (self-update commit).
    let old_key = a.signer.public().to_vec();
    let out = a.refresh_credential().unwrap();
    assert!(!a.needs_refresh());
    assert_ne!(a.signer.public(), &old_key[..]);
    for m in [&mut c, &mut d] {
        match m.process_commit(&out.commit).unwrap() {
            CommitOutcome::Applied { updated, .. } => {
                assert_eq!(updated.len(), 1);
                assert_eq!(updated[0].identity, a.identity());
            }
            CommitOutcome::SelfRemoved => panic!("unexpected removal"),
        }
    }
    roundtrip(&mut a, &mut [&mut c, &mut d], b"after moderator refresh");

    // A participant proposes its own refresh; the moderator commits it.
    let proposal = c.propose_refresh().unwrap();
    let who = a.process_proposal(&proposal).unwrap();
    assert_eq!(who.identity, c.identity());
    assert_eq!(d.process_proposal(&proposal).unwrap(), who);
    let out = a.commit_pending_proposals().unwrap();
    d.process_commit(&out.commit).unwrap();
    assert!(c.needs_refresh());
    c.process_commit(&out.commit).unwrap();
    assert!(!c.needs_refresh(), "c did not switch to its new credential");
    roundtrip(&mut c, &mut [&mut a, &mut d], b"after participant refresh");
    for m in [&a, &c, &d] {
        assert_eq!(m.epoch(), a.epoch());
        assert_eq!(m.commit_id(), a.commit_id());
    }
}

#[test]
fn successor_credential_with_another_subject_is_refused() {
    let clock = VClock::new();
    let [mut a, mut b, ..] = group_of_four(&clock);
    // b tries to take over its leaf with a token for another subject.
    b.identity = SharedSecret::new("org/ns/mallory", SECRET).unwrap();
    let proposal = b.propose_refresh().unwrap();
    let err = a.process_proposal(&proposal).unwrap_err();
    assert!(
        matches!(
            err,
            MlsError::Credential {
                reason: CredentialError::NotSuccessor { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(a.commit_pending_proposals().is_ok());
    assert_eq!(a.members().unwrap().len(), 4);
}

#[test]
fn commit_queue_applies_commits_in_commit_id_order_and_drops_duplicates() {
    let clock = VClock::new();
    let mut a = member("org/ns/a", &clock);
    let mut b = member("org/ns/b", &clock);
    a.create_group().unwrap();
    add(&mut a, &mut [], &mut b);
    let mut c = member("org/ns/c", &clock);
    let mut d = member("org/ns/d", &clock);
    let c2 = a.add_member(&c.key_package().unwrap()).unwrap();
    let c3 = a.add_member(&d.key_package().unwrap()).unwrap();
    let c4 = a.remove_member(&MemberRef::Index(c2.member.index)).unwrap();
    assert_eq!((c2.commit_id, c3.commit_id, c4.commit_id), (2, 3, 4));

    let mut q = CommitQueue::new();
    assert!(matches!(
        q.push(&mut b, 1, c2.commit.clone()),
        Queued::Duplicate
    ));
    assert!(matches!(
        q.push(&mut b, 4, c4.commit.clone()),
        Queued::Buffered
    ));
    assert!(matches!(
        q.push(&mut b, 3, c3.commit.clone()),
        Queued::Buffered
    ));
    assert_eq!(q.buffered(), 2);
    match q.push(&mut b, 2, c2.commit.clone()) {
        Queued::Applied(done) => {
            let ids: Vec<u32> = done.iter().map(|(id, _)| *id).collect();
            assert_eq!(ids, vec![2, 3, 4]);
            assert!(done.iter().all(|(_, r)| r.is_ok()));
        }
        other => panic!("expected applied, got {other:?}"),
    }
    assert!(matches!(
        q.push(&mut b, 2, c2.commit.clone()),
        Queued::Duplicate
    ));
    assert_eq!((b.epoch(), b.commit_id()), (a.epoch(), 4));

    // A joiner starts from its Welcome's commit_id.
    d.process_welcome(&c3.welcome, c3.commit_id).unwrap();
    let mut qd = CommitQueue::new();
    assert!(matches!(
        qd.push(&mut d, 3, c3.commit.clone()),
        Queued::Duplicate
    ));
    assert!(matches!(
        qd.push(&mut d, 4, c4.commit.clone()),
        Queued::Applied(_)
    ));
    roundtrip(&mut a, &mut [&mut b, &mut d], b"in order");
    // c was added then removed before it joined: its Welcome still works,
    // and the removal commit tells it so.
    c.process_welcome(&c2.welcome, c2.commit_id).unwrap();
    let mut qc = CommitQueue::new();
    match qc.push(&mut c, 4, c4.commit.clone()) {
        Queued::Buffered => {}
        other => panic!("expected buffered, got {other:?}"),
    }
    match qc.push(&mut c, 3, c3.commit.clone()) {
        Queued::Applied(done) => {
            assert_eq!(done.len(), 2);
            assert_eq!(done[1].1, Ok(CommitOutcome::SelfRemoved));
        }
        other => panic!("expected applied, got {other:?}"),
    }
    assert!(!c.is_active());
}

#[test]
fn failed_commit_keeps_its_id_open_for_a_retry() {
    let clock = VClock::new();
    let mut a = member("org/ns/a", &clock);
    let mut b = member("org/ns/b", &clock);
    a.create_group().unwrap();
    add(&mut a, &mut [], &mut b);
    let mut c = member("org/ns/c", &clock);
    let out = a.add_member(&c.key_package().unwrap()).unwrap();
    let mut q = CommitQueue::new();
    let mut broken = out.commit.clone();
    let last = broken.len() - 1;
    broken[last] ^= 0xff;
    match q.push(&mut b, 2, broken) {
        Queued::Applied(done) => assert!(done[0].1.is_err()),
        other => panic!("expected an attempt, got {other:?}"),
    }
    assert_eq!(b.commit_id(), 1);
    assert!(matches!(
        q.push(&mut b, 2, out.commit.clone()),
        Queued::Applied(_)
    ));
    assert_eq!(b.epoch(), a.epoch());
}

#[test]
fn mls_state_can_move_into_the_session_task() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<MlsState>();
    assert_send::<MlsSessionCrypto>();
    assert_send::<CommitQueue>();
}

#[test]
fn admitted_credentials_tolerate_clock_skew_but_new_ones_do_not() {
    let clock = VClock::new();
    let mut a = member("org/ns/a", &clock);
    let mut b = member("org/ns/b", &clock);
    a.create_group().unwrap();
    // b's clock is a minute behind the moderator's: a's leaf token is from
    // b's future, yet it is already admitted, so the welcome is accepted.
    let out = a.add_member(&b.key_package().unwrap()).unwrap();
    clock.set(T0 - 60);
    b.process_welcome(&out.welcome, out.commit_id).unwrap();
    roundtrip(&mut a, &mut [&mut b], b"skewed");
    // A new key package from 60 s in the future is refused at admission.
    clock.set(T0 + 60);
    let mut c = member("org/ns/c", &clock);
    let kp = c.key_package().unwrap();
    clock.set(T0);
    assert!(matches!(
        a.add_member(&kp),
        Err(MlsError::Credential {
            reason: CredentialError::Token(IdentityError::FromTheFuture(60)),
            ..
        })
    ));
}

#[test]
fn commit_queue_is_bounded_and_survives_extreme_ids() {
    let clock = VClock::new();
    let mut a = member("org/ns/a", &clock);
    let mut b = member("org/ns/b", &clock);
    a.create_group().unwrap();
    let out = a.add_member(&b.key_package().unwrap()).unwrap();
    b.process_welcome(&out.welcome, u32::MAX).unwrap();
    let mut q = CommitQueue::new();
    assert!(matches!(
        q.push(&mut b, u32::MAX, vec![1]),
        Queued::Duplicate
    ));

    let mut c = member("org/ns/c", &clock);
    let out = a.add_member(&c.key_package().unwrap()).unwrap();
    c.process_welcome(&out.welcome, out.commit_id).unwrap();
    let mut q = CommitQueue::new();
    for i in 0..MAX_BUFFERED_COMMITS as u32 {
        assert!(matches!(q.push(&mut c, 100 + i, vec![0]), Queued::Buffered));
    }
    assert!(matches!(q.push(&mut c, 5000, vec![0]), Queued::Full));
    assert!(matches!(q.push(&mut c, u32::MAX, vec![0]), Queued::Full));
    assert_eq!(q.buffered(), MAX_BUFFERED_COMMITS);
    // The next expected commit is still applied.
    let mut d = member("org/ns/d", &clock);
    let next = a.add_member(&d.key_package().unwrap()).unwrap();
    assert!(matches!(
        q.push(&mut c, next.commit_id, next.commit),
        Queued::Applied(_)
    ));
    assert_eq!(c.epoch(), a.epoch());
}

#[test]
fn self_update_commit_that_changes_the_subject_is_refused_by_members() {
    let clock = VClock::new();
    let [mut a, mut b, ..] = group_of_four(&clock);
    a.identity = SharedSecret::new("org/ns/impostor", SECRET).unwrap();
    let out = a.refresh_credential().unwrap();
    let err = b.process_commit(&out.commit).unwrap_err();
    assert!(
        matches!(
            err,
            MlsError::Credential {
                reason: CredentialError::NotSuccessor { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(b.epoch(), 3);
}

#[test]
fn update_proposal_with_a_stale_token_is_refused() {
    let clock = VClock::new();
    let [mut a, mut b, ..] = group_of_four(&clock);
    let proposal = b.propose_refresh().unwrap();
    clock.set(T0 + TOKEN_VALIDITY_SECS + 10);
    assert!(matches!(
        a.process_proposal(&proposal),
        Err(MlsError::Credential {
            reason: CredentialError::Token(IdentityError::Expired(_)),
            ..
        })
    ));
}

#[test]
fn signer_signatures_verify_under_its_advertised_public_key() {
    use openmls_traits::crypto::OpenMlsCrypto as _;
    use openmls_traits::signatures::Signer as _;
    let signer = new_signer(CIPHERSUITE).unwrap();
    let other = new_signer(CIPHERSUITE).unwrap();
    let crypto = openmls_rust_crypto::RustCrypto::default();
    let sig = signer.sign(b"payload").unwrap();
    assert_eq!(signer.signature_scheme(), SignatureScheme::ED25519);
    assert!(
        crypto
            .verify_signature(SignatureScheme::ED25519, b"payload", signer.public(), &sig)
            .is_ok()
    );
    assert!(
        crypto
            .verify_signature(SignatureScheme::ED25519, b"tampered", signer.public(), &sig)
            .is_err()
    );
    assert!(
        crypto
            .verify_signature(SignatureScheme::ED25519, b"payload", other.public(), &sig)
            .is_err()
    );
}

#[test]
fn ed25519_signatures_are_the_bytes_dalek_would_give() {
    use ed25519_dalek::Signer as _;
    use openmls_traits::signatures::Signer as _;
    let seed: [u8; 32] = rand::rng().random();
    let signer = ed25519_signer(&seed).unwrap();
    let dalek = ed25519_dalek::SigningKey::from_bytes(&seed);
    assert_eq!(signer.public(), dalek.verifying_key().as_bytes());
    for payload in [&b""[..], b"payload", &[0xA5; 4096]] {
        let ours = signer.sign(payload).unwrap();
        assert_eq!(ours, dalek.sign(payload).to_bytes().to_vec());
    }
}

fn member_v3(name: &str) -> MlsState {
    let identity = SharedSecret::new(name, SECRET).unwrap();
    let verifier: Arc<dyn IdentityVerifier> =
        Arc::new(SharedSecret::new("verifier", SECRET).unwrap());
    MlsState::with_suite(identity, verifier, CIPHERSUITE_V3).unwrap()
}

#[test]
fn v3_groups_use_p256_leaf_keys_and_carry_the_aad_with_each_message() {
    let mut a = member_v3("org/ns/a");
    let mut b = member_v3("org/ns/b");
    // The leaf key (and the token's pubkey claim) is an uncompressed P-256
    // point, as 3.x peers expect.
    assert_eq!(a.signer.public().len(), 65);
    assert_eq!(a.signer.public()[0], 0x04);
    a.create_group().unwrap();
    add(&mut a, &mut [], &mut b);
    let ct = a.encrypt_with_aad(b"hello", b"the header").unwrap();
    let d = b.decrypt(&ct).unwrap();
    assert_eq!(d.payload, b"hello");
    // The AAD travels in clear in the PrivateMessage (authenticated).
    assert!(ct.windows(10).any(|w| w == b"the header"));
    let plain = a.encrypt(b"hello").unwrap();
    assert!(!plain.windows(10).any(|w| w == b"the header"));
    roundtrip(&mut b, &mut [&mut a], b"back");
}

#[test]
fn v1_and_v3_suites_do_not_mix() {
    let clock = VClock::new();
    let mut v1 = member("org/ns/a", &clock);
    let mut v3 = member_v3("org/ns/b");
    v1.create_group().unwrap();
    let kp = v3.key_package().unwrap();
    assert!(matches!(
        v1.add_member(&kp),
        Err(MlsError::WrongCiphersuite(_))
    ));
}

#[test]
fn a_driven_member_mints_and_checks_credentials_at_the_time_it_is_given() {
    let identity = |name: &str| SharedSecret::new(name, SECRET).unwrap();
    let verifier: Arc<dyn IdentityVerifier> = Arc::new(identity("verifier"));
    let name: crate::Name = "org/ns/joiner".parse().unwrap();
    let mut joiner =
        MlsSessionCrypto::driven(identity("joiner"), verifier.clone(), CIPHERSUITE).unwrap();
    joiner.at(T0);
    let kp = joiner.key_package().unwrap().unwrap();

    let mut in_time =
        MlsSessionCrypto::driven(identity("mod"), verifier.clone(), CIPHERSUITE).unwrap();
    in_time.at(T0 + 60);
    in_time.create_group().unwrap();
    assert!(in_time.add_member(&name, Some(&kp)).unwrap().is_some());

    // The same key package, checked by a moderator told it is a year later:
    // its token has expired, whatever the system clock says.
    let mut late = MlsSessionCrypto::driven(identity("mod2"), verifier, CIPHERSUITE).unwrap();
    late.at(T0 + 365 * 24 * 3600);
    late.create_group().unwrap();
    assert!(late.add_member(&name, Some(&kp)).is_err());
}

/// A shared-secret verifier that counts the tokens it was asked to check.
struct CountingVerifier {
    inner: SharedSecret,
    checks: Arc<AtomicU64>,
}

impl IdentityVerifier for CountingVerifier {
    fn verify_at(&self, token: &str, now: u64) -> Result<Claims, IdentityError> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        self.inner.verify_at(token, now)
    }
}

#[test]
fn a_senders_token_is_checked_once_per_credential_not_once_per_message() {
    let clock = VClock::new();
    let checks = Arc::new(AtomicU64::new(0));
    let verifier: Arc<dyn IdentityVerifier> = Arc::new(CountingVerifier {
        inner: SharedSecret::new("verifier", SECRET).unwrap(),
        checks: checks.clone(),
    });
    let mut a = member("org/ns/a", &clock);
    let mut b = MlsState::with_clock(
        SharedSecret::new("org/ns/b", SECRET).unwrap(),
        verifier,
        clock.clock(),
    )
    .unwrap();
    a.create_group().unwrap();
    add(&mut a, &mut [], &mut b);

    let before = checks.load(Ordering::SeqCst);
    for i in 0..5 {
        roundtrip(&mut a, &mut [&mut b], format!("message {i}").as_bytes());
    }
    assert_eq!(
        checks.load(Ordering::SeqCst) - before,
        1,
        "five messages of one credential"
    );

    // A new credential and key in the sender's leaf is checked again.
    let out = a.refresh_credential().unwrap();
    b.process_commit(&out.commit).unwrap();
    let before = checks.load(Ordering::SeqCst);
    roundtrip(&mut a, &mut [&mut b], b"after the refresh");
    roundtrip(&mut a, &mut [&mut b], b"and again");
    assert_eq!(checks.load(Ordering::SeqCst) - before, 1);

    // A token that no longer passes is not hidden by the cache: a forged
    // credential in the same leaf (same key, other MAC) is refused.
    let (current, key) = {
        let g = b.group().unwrap();
        let leaf = g.public_group().leaf(LeafNodeIndex::new(0)).unwrap();
        (
            leaf.credential().clone(),
            leaf.signature_key().as_slice().to_vec(),
        )
    };
    assert!(b.check_current(0, &current, key.clone()).is_ok());
    let other = SharedSecret::new("org/ns/a", OTHER_SECRET)
        .unwrap()
        .with_public_key(&key);
    let forged = BasicCredential::new(other.token().unwrap().into_bytes()).into();
    let refused = b.check_current(0, &forged, key);
    assert!(
        matches!(refused, Err(CredentialError::WrongSecret)),
        "{refused:?}"
    );
}
