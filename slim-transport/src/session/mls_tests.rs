//! The session state machine with the real MLS implementation behind its
//! seam (openmls through `MlsSessionCrypto`), on the deterministic test
//! network: garbage in every MLS-carrying field (key package, welcome,
//! commit, ciphertext) is refused without harming the session.
//!
//! These tests must not stand in for openmls: every node uses
//! [`super::mls_factory`] or a thin wrapper that corrupts one output.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::Name;
use crate::identity::SharedSecret;
use crate::wire::{self, SessionMessageType as Kind, command_payload::CommandPayloadType as Cmd};

use super::packet::{self, Inbound};
use super::testnet::{Net, SECRET};
use super::{
    AddOutput, CryptoError, CryptoFactory, SessionConfig, SessionCrypto, SessionError, SessionKind,
    mls_factory,
};

const LIMIT: Duration = Duration::from_secs(600);

fn identity(base: &str) -> SharedSecret {
    SharedSecret::new(base, SECRET).unwrap()
}

/// Which output of a wrapped MLS state is replaced by garbage.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spoil {
    KeyPackage,
    /// The welcome of the n-th add (1-based).
    Welcome(u32),
}

/// Real MLS, with one output replaced by bytes that are no MLS message.
struct Spoiled {
    inner: Box<dyn SessionCrypto>,
    spoil: Spoil,
    adds: u32,
}

const GARBAGE: &[u8] = b"\x00\x01 definitely not an MLSMessage \xff\xfe";

impl SessionCrypto for Spoiled {
    fn enabled(&self) -> bool {
        true
    }
    fn key_package(&mut self, now: u64) -> Result<Option<Vec<u8>>, CryptoError> {
        let kp = self.inner.key_package(now)?;
        Ok(if self.spoil == Spoil::KeyPackage {
            Some(GARBAGE.to_vec())
        } else {
            kp
        })
    }
    fn create_group(&mut self, now: u64) -> Result<(), CryptoError> {
        self.inner.create_group(now)
    }
    fn add_member(
        &mut self,
        member: &Name,
        key_package: Option<&[u8]>,
        now: u64,
    ) -> Result<Option<AddOutput>, CryptoError> {
        self.adds += 1;
        let out = self.inner.add_member(member, key_package, now)?;
        Ok(out.map(|mut o| {
            if self.spoil == Spoil::Welcome(self.adds) {
                o.welcome = GARBAGE.to_vec();
            }
            o
        }))
    }
    fn add_members(
        &mut self,
        members: &[(Name, Option<Vec<u8>>)],
        now: u64,
    ) -> Result<Option<AddOutput>, CryptoError> {
        self.adds += 1;
        let out = self.inner.add_members(members, now)?;
        Ok(out.map(|mut o| {
            if self.spoil == Spoil::Welcome(self.adds) {
                o.welcome = GARBAGE.to_vec();
            }
            o
        }))
    }
    fn remove_member(&mut self, member: &Name, now: u64) -> Result<Option<Vec<u8>>, CryptoError> {
        self.inner.remove_member(member, now)
    }
    fn process_welcome(&mut self, welcome: &[u8], now: u64) -> Result<(), CryptoError> {
        self.inner.process_welcome(welcome, now)
    }
    fn process_commit(&mut self, commit: &[u8], now: u64) -> Result<(), CryptoError> {
        self.inner.process_commit(commit, now)
    }
    fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.encrypt(plaintext)
    }
    fn decrypt(&mut self, ciphertext: &[u8], now: u64) -> Result<Vec<u8>, CryptoError> {
        self.inner.decrypt(ciphertext, now)
    }
}

fn spoiled(base: &str, spoil: Spoil) -> CryptoFactory {
    let real = mls_factory(identity(base));
    Arc::new(move |ctx, moderator| {
        Ok(Box::new(Spoiled {
            inner: real(ctx, moderator)?,
            spoil,
            adds: 0,
        }) as Box<dyn SessionCrypto>)
    })
}

fn group() -> SessionConfig {
    SessionConfig {
        kind: SessionKind::Group,
        mls: true,
        ..SessionConfig::default()
    }
}

/// A net of a moderator and `n` members, every one with real MLS.
fn nodes(seed: u64, n: usize) -> (Net, usize, Vec<usize>) {
    nodes_on(Net::perfect(seed), n)
}

/// [`nodes`] on a given (e.g. lossy) net.
fn nodes_on(mut net: Net, n: usize) -> (Net, usize, Vec<usize>) {
    let m = net.add("org/ns/moderator");
    net.nodes[m]
        .layer
        .set_crypto(mls_factory(identity("org/ns/moderator")));
    let members = (0..n)
        .map(|i| {
            let base = format!("org/ns/member{i}");
            let p = net.add(&base);
            net.nodes[p].layer.set_crypto(mls_factory(identity(&base)));
            p
        })
        .collect();
    (net, m, members)
}

fn invite(net: &mut Net, m: usize, sid: u32, who: usize) -> Option<Result<(), SessionError>> {
    let name = net.name(who);
    let job = net.with(m, sid, |s, now| s.invite(&name, now)).unwrap();
    net.run_until(LIMIT, |n| n.job_result(m, job).is_some());
    net.job_result(m, job)
}

/// The moderator publishes `text`; true when every one of `to` got it.
fn broadcast_arrives(net: &mut Net, m: usize, sid: u32, to: &[usize], text: &[u8]) -> bool {
    net.publish(m, sid, text);
    net.run_until(Duration::from_secs(60), |n| {
        to.iter()
            .all(|&p| n.payloads_from(p, sid, m).iter().any(|x| x == text))
    })
}

fn msgs_from(net: &Net, node: usize) -> Vec<wire::Message> {
    net.trace
        .iter()
        .filter(|t| t.kind == Kind::Msg && t.from == node)
        .map(|t| t.msg.clone())
        .collect()
}

#[test]
fn real_mls_group_encrypts_every_msg_and_members_read_each_other() {
    let (mut net, m, members) = nodes(60, 2);
    let (sid, _) = net.create(m, group(), &"org/ns/chat".parse().unwrap());
    for &p in &members {
        assert_eq!(invite(&mut net, m, sid, p), Some(Ok(())));
    }
    assert!(broadcast_arrives(
        &mut net,
        m,
        sid,
        &members,
        b"hello members"
    ));
    net.publish(members[0], sid, b"hello from member0");
    assert!(net.run_until(LIMIT, |n| {
        n.payloads_from(m, sid, members[0]).len() == 1
            && n.payloads_from(members[1], sid, members[0]).len() == 1
    }));
    for msg in msgs_from(&net, m)
        .into_iter()
        .chain(msgs_from(&net, members[0]))
    {
        let inb = Inbound::parse(msg).unwrap();
        let blob = &inb.app_payload().unwrap().blob;
        assert!(!blob.windows(5).any(|w| w == b"hello"), "plaintext on wire");
    }
}

#[test]
fn garbage_key_package_fails_the_invite_with_the_reason_and_the_group_keeps_working() {
    let (mut net, m, members) = nodes(61, 1);
    let bad = net.add("org/ns/badkp");
    net.nodes[bad]
        .layer
        .set_crypto(spoiled("org/ns/badkp", Spoil::KeyPackage));
    let (sid, _) = net.create(m, group(), &"org/ns/chat".parse().unwrap());
    assert_eq!(invite(&mut net, m, sid, members[0]), Some(Ok(())));
    let result = invite(&mut net, m, sid, bad);
    let Some(Err(SessionError::Crypto(CryptoError::BadInput(reason)))) = &result else {
        panic!("invite of a garbage key package must fail as bad input: {result:?}");
    };
    assert!(!reason.is_empty());
    assert_eq!(net.session(m, sid).members().len(), 2, "not added");
    assert!(broadcast_arrives(&mut net, m, sid, &members, b"still fine"));
}

#[test]
fn garbage_welcome_is_refused_by_the_invitee_and_the_group_keeps_working() {
    let mut net = Net::perfect(62);
    let m = net.add("org/ns/moderator");
    net.nodes[m]
        .layer
        .set_crypto(spoiled("org/ns/moderator", Spoil::Welcome(2)));
    let good = net.add("org/ns/member0");
    net.nodes[good]
        .layer
        .set_crypto(mls_factory(identity("org/ns/member0")));
    let victim = net.add("org/ns/member1");
    net.nodes[victim]
        .layer
        .set_crypto(mls_factory(identity("org/ns/member1")));
    let config = SessionConfig {
        interval: Some(Duration::from_millis(200)),
        max_retries: Some(3),
        ..group()
    };
    let (sid, _) = net.create(m, config, &"org/ns/chat".parse().unwrap());
    assert_eq!(invite(&mut net, m, sid, good), Some(Ok(())));
    let result = invite(&mut net, m, sid, victim);
    assert!(
        matches!(result, Some(Err(_))),
        "no GROUP_ACK for a welcome that cannot be read: {result:?}"
    );
    let welcomed = net.nodes[victim]
        .events
        .iter()
        .any(|(_, e)| *e == super::Event::Established);
    assert!(!welcomed, "the invitee never joined on garbage");
    assert!(broadcast_arrives(&mut net, m, sid, &[good], b"still fine"));
}

/// A GROUP_ADD from the moderator (valid token) with `content` as commit.
fn forged_add(net: &Net, m: usize, sid: u32, commit_id: u32, content: Vec<u8>) -> wire::Message {
    let ctx = net.ctx(m);
    let newcomer = Name::new("org", "ns", "ghost").with_id(7);
    let mut msg = packet::Out {
        source: &ctx.app_name,
        destination: &"org/ns/chat".parse().unwrap(),
        fanout: 256,
        session_type: wire::SessionType::Multicast,
        kind: Kind::GroupAdd,
        session_id: sid,
        message_id: 4242 + commit_id,
        content: packet::command_content(Cmd::GroupAdd(wire::GroupAddPayload {
            new_participant: Some(newcomer.to_wire()),
            participants: vec![],
            mls: Some(wire::MlsPayload {
                commit_id,
                mls_content: content,
            }),
        })),
        metadata: HashMap::new(),
    }
    .build();
    packet::set_identity(
        &mut msg,
        ctx.provider.token_at(ctx.clock.unix(net.now)).unwrap(),
    );
    msg
}

#[test]
fn garbage_commit_with_the_next_commit_id_is_refused_and_the_genuine_commit_applies() {
    let (mut net, m, members) = nodes(63, 2);
    let (sid, _) = net.create(m, group(), &"org/ns/chat".parse().unwrap());
    assert_eq!(invite(&mut net, m, sid, members[0]), Some(Ok(())));
    let p = members[0];
    // Commit 2 is due next: garbage, then a well-formed but foreign commit
    // (a copy of nothing this group knows: the welcome bytes of commit 1).
    let welcome = net
        .trace
        .iter()
        .find_map(|t| match Inbound::parse(t.msg.clone()).ok()?.command() {
            Some(Cmd::GroupWelcome(w)) => w.mls.as_ref().map(|x| x.mls_content.clone()),
            _ => None,
        })
        .expect("a welcome was sent");
    let before = net.session(p, sid).counters().decrypt_failed;
    net.inject(p, forged_add(&net, m, sid, 2, GARBAGE.to_vec()));
    net.inject(p, forged_add(&net, m, sid, 2, welcome));
    assert_eq!(net.session(p, sid).counters().decrypt_failed, before + 2);
    assert_eq!(net.session(p, sid).members().len(), 2, "ghost not added");
    // The genuine commit 2 (adding member1) still applies at member0.
    assert_eq!(invite(&mut net, m, sid, members[1]), Some(Ok(())));
    assert!(broadcast_arrives(
        &mut net,
        m,
        sid,
        &members,
        b"after the forgery"
    ));
    net.publish(members[1], sid, b"newcomer speaks");
    assert!(net.run_until(LIMIT, |n| n.payloads_from(p, sid, members[1]).len() == 1));
}

#[test]
fn garbage_and_tampered_ciphertexts_are_dropped_without_ack_and_later_messages_decrypt() {
    let (mut net, m, members) = nodes(64, 1);
    let p = members[0];
    let (sid, _) = net.create(m, group(), &"org/ns/chat".parse().unwrap());
    assert_eq!(invite(&mut net, m, sid, p), Some(Ok(())));
    assert!(broadcast_arrives(&mut net, m, sid, &[p], b"first"));
    let genuine = msgs_from(&net, m).pop().expect("a MSG was sent");
    let inb = Inbound::parse(genuine.clone()).unwrap();
    let next_id = inb.message_id + 1;
    let mut flipped = inb.app_payload().unwrap().blob.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x55;
    let acks = |net: &Net| {
        net.trace
            .iter()
            .filter(|t| t.kind == Kind::MsgAck && t.from == p)
            .count()
    };
    let acks_before = acks(&net);
    for blob in [GARBAGE.to_vec(), flipped, Vec::new()] {
        let mut msg = genuine.clone();
        packet::set_content(&mut msg, packet::app_content("msg", blob));
        if let Some(wire::message::MessageType::Publish(pb)) = &mut msg.message_type {
            pb.session.as_mut().unwrap().message_id = next_id;
        }
        net.inject(p, msg);
    }
    assert_eq!(net.session(p, sid).counters().decrypt_failed, 3);
    assert_eq!(acks(&net), acks_before, "nothing acknowledged");
    assert_eq!(net.payloads_from(p, sid, m), vec![b"first".to_vec()]);
    // The genuine message with that id still arrives and decrypts.
    assert!(broadcast_arrives(&mut net, m, sid, &[p], b"second"));
    assert_eq!(
        net.payloads_from(p, sid, m),
        vec![b"first".to_vec(), b"second".to_vec()]
    );
}

#[test]
fn replayed_ciphertext_under_a_fresh_message_id_is_not_delivered_again() {
    let (mut net, m, members) = nodes(65, 1);
    let p = members[0];
    let (sid, _) = net.create(m, group(), &"org/ns/chat".parse().unwrap());
    assert_eq!(invite(&mut net, m, sid, p), Some(Ok(())));
    assert!(broadcast_arrives(&mut net, m, sid, &[p], b"pay 100"));
    let genuine = msgs_from(&net, m).pop().unwrap();
    let next_id = Inbound::parse(genuine.clone()).unwrap().message_id + 1;
    // Exact replay: a duplicate, acked again, not delivered.
    net.inject(p, genuine.clone());
    // Same ciphertext, next message id: MLS refuses a consumed generation.
    let mut again = genuine;
    if let Some(wire::message::MessageType::Publish(pb)) = &mut again.message_type {
        pb.session.as_mut().unwrap().message_id = next_id;
    }
    net.inject(p, again);
    assert_eq!(net.session(p, sid).counters().decrypt_failed, 1);
    assert!(broadcast_arrives(&mut net, m, sid, &[p], b"done"));
    assert_eq!(
        net.payloads_from(p, sid, m),
        vec![b"pay 100".to_vec(), b"done".to_vec()]
    );
}

#[test]
fn real_mls_group_forms_talks_and_shrinks_under_loss_duplication_and_reordering() {
    let net = Net::new(66, 0.2, 0.2, Duration::from_millis(300));
    let (mut net, m, members) = nodes_on(net, 4);
    let (sid, _) = net.create(m, group(), &"org/ns/chat".parse().unwrap());
    // Invites queued back to back: commits 2..4 reach earlier members while
    // messages are lost, duplicated and reordered.
    let jobs: Vec<_> = members
        .iter()
        .map(|&p| {
            let who = net.name(p);
            net.with(m, sid, |s, now| s.invite(&who, now)).unwrap()
        })
        .collect();
    assert!(net.run_until(LIMIT, |n| {
        jobs.iter().all(|j| n.job_result(m, *j).is_some())
    }));
    for j in &jobs {
        assert_eq!(net.job_result(m, *j), Some(Ok(())));
    }
    for i in 0..10u8 {
        net.publish(m, sid, &[b'm', i]);
        net.publish(members[0], sid, &[b'a', i]);
    }
    let ok = net.run_until(LIMIT, |n| {
        members[1..].iter().all(|&p| {
            n.payloads_from(p, sid, m).len() == 10
                && n.payloads_from(p, sid, members[0]).len() == 10
        })
    });
    assert!(ok, "every member got every message");
    for &p in &members[1..] {
        let want: Vec<Vec<u8>> = (0..10u8).map(|i| vec![b'm', i]).collect();
        assert_eq!(net.payloads_from(p, sid, m), want);
        assert_eq!(
            net.session(p, sid).counters().decrypt_failed,
            0,
            "retransmitted MSGs still decrypt"
        );
    }
    // A remove is a commit every remaining member applies in order.
    let gone = net.name(members[3]);
    let job = net.with(m, sid, |s, now| s.remove(&gone, now)).unwrap();
    assert!(net.run_until(LIMIT, |n| n.job_result(m, job).is_some()));
    assert_eq!(net.job_result(m, job), Some(Ok(())));
    net.publish(m, sid, b"after remove");
    assert!(net.run_until(LIMIT, |n| {
        members[..3].iter().all(|&p| {
            n.payloads_from(p, sid, m)
                .iter()
                .any(|x| x == b"after remove")
        })
    }));
    assert!(
        !net.payloads_from(members[3], sid, m)
            .iter()
            .any(|x| x == b"after remove")
    );
}

/// `invite_many`: the job's result, and every GROUP_WELCOME / GROUP_ADD the
/// moderator sent (parsed).
fn invite_all(
    net: &mut Net,
    m: usize,
    sid: u32,
    who: &[usize],
) -> Option<Result<(), SessionError>> {
    let names: Vec<Name> = who.iter().map(|&p| net.name(p)).collect();
    let job = net
        .with(m, sid, |s, now| s.invite_many(&names, now))
        .unwrap();
    net.run_until(LIMIT, |n| n.job_result(m, job).is_some());
    net.job_result(m, job)
}

fn commands_from(net: &Net, node: usize, kind: Kind) -> Vec<Inbound> {
    net.trace
        .iter()
        .filter(|t| t.kind == kind && t.from == node)
        .map(|t| Inbound::parse(t.msg.clone()).unwrap())
        .collect()
}

#[test]
fn invite_many_adds_every_member_in_one_commit_and_all_of_them_talk() {
    let (mut net, m, members) = nodes(70, 4);
    let (sid, _) = net.create(m, group(), &"org/ns/chat".parse().unwrap());
    assert_eq!(invite_all(&mut net, m, sid, &members), Some(Ok(())));

    // One welcome each, all from the same commit 1, each listing everybody;
    // nobody was welcomed before, so no GROUP_ADD.
    let welcomes = commands_from(&net, m, Kind::GroupWelcome);
    let mut welcomed: Vec<Name> = welcomes.iter().map(|w| w.destination.clone()).collect();
    welcomed.sort();
    welcomed.dedup();
    assert_eq!(welcomed.len(), members.len());
    for w in &welcomes {
        let Some(Cmd::GroupWelcome(p)) = w.command() else {
            panic!("not a welcome: {w:?}");
        };
        assert_eq!(p.participants.len(), members.len() + 1);
        assert_eq!(p.mls.as_ref().map(|x| x.commit_id), Some(1));
    }
    assert!(commands_from(&net, m, Kind::GroupAdd).is_empty());
    let mut listed = net.session(m, sid).members().to_vec();
    listed.sort();
    let mut want: Vec<Name> = members.iter().map(|&p| net.name(p)).collect();
    want.push(net.name(m));
    want.sort();
    assert_eq!(listed, want);

    assert!(broadcast_arrives(&mut net, m, sid, &members, b"hello all"));
    net.publish(members[2], sid, b"hello from member2");
    let others: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&p| p != members[2])
        .collect();
    assert!(net.run_until(LIMIT, |n| {
        n.payloads_from(m, sid, members[2]).len() == 1
            && others
                .iter()
                .all(|&p| n.payloads_from(p, sid, members[2]).len() == 1)
    }));

    // A later joiner comes in with an ordinary invite: commit 2, applied by
    // everyone who joined through the batch.
    let late = net.add("org/ns/late");
    net.nodes[late]
        .layer
        .set_crypto(mls_factory(identity("org/ns/late")));
    assert_eq!(invite(&mut net, m, sid, late), Some(Ok(())));
    let adds = commands_from(&net, m, Kind::GroupAdd);
    assert!(adds.iter().all(|a| matches!(
        a.command(),
        Some(Cmd::GroupAdd(p)) if p.mls.as_ref().map(|x| x.commit_id) == Some(2)
    )));
    let mut everyone = members.clone();
    everyone.push(late);
    assert!(broadcast_arrives(&mut net, m, sid, &everyone, b"with late"));
}

#[test]
fn invite_many_survives_loss_duplication_and_reordering() {
    let net = Net::new(71, 0.2, 0.2, Duration::from_millis(300));
    let (mut net, m, members) = nodes_on(net, 5);
    let (sid, _) = net.create(m, group(), &"org/ns/chat".parse().unwrap());
    assert_eq!(invite_all(&mut net, m, sid, &members), Some(Ok(())));
    for i in 0..5u8 {
        net.publish(m, sid, &[b'm', i]);
    }
    assert!(net.run_until(LIMIT, |n| {
        members
            .iter()
            .all(|&p| n.payloads_from(p, sid, m).len() == 5)
    }));
    for &p in &members {
        assert_eq!(net.session(p, sid).counters().decrypt_failed, 0);
    }
}

#[test]
fn invite_many_with_an_absent_member_fails_naming_it() {
    let (mut net, m, members) = nodes(72, 2);
    let (sid, _) = net.create(m, group(), &"org/ns/chat".parse().unwrap());
    let absent: Name = "org/ns/nobody".parse().unwrap();
    let mut names: Vec<Name> = members.iter().map(|&p| net.name(p)).collect();
    names.insert(1, absent.clone());
    let job = net
        .with(m, sid, |s, now| s.invite_many(&names, now))
        .unwrap();
    assert!(net.run_until(LIMIT, |n| n.job_result(m, job).is_some()));
    match net.job_result(m, job) {
        Some(Err(e @ SessionError::DiscoveryTimeout { .. })) => {
            assert_eq!(
                e,
                SessionError::DiscoveryTimeout {
                    member: absent.clone()
                }
            );
            // The same hint as a point-to-point discovery gives.
            assert!(
                e.to_string().contains("does not use our shared secret"),
                "{e}"
            );
        }
        other => panic!("expected a discovery timeout naming {absent}: {other:?}"),
    }
    assert!(commands_from(&net, m, Kind::GroupWelcome).is_empty());
}

#[test]
fn invite_many_is_refused_once_the_group_has_members_or_for_a_duplicate() {
    let (mut net, m, members) = nodes(73, 3);
    let (sid, _) = net.create(m, group(), &"org/ns/chat".parse().unwrap());
    let dup = vec![net.name(members[0]), net.name(members[0])];
    assert!(matches!(
        net.with(m, sid, |s, now| s.invite_many(&dup, now)),
        Err(SessionError::AlreadyMember(_))
    ));
    assert_eq!(invite(&mut net, m, sid, members[0]), Some(Ok(())));
    let rest = vec![net.name(members[1]), net.name(members[2])];
    assert!(matches!(
        net.with(m, sid, |s, now| s.invite_many(&rest, now)),
        Err(SessionError::Unsupported(_))
    ));
}

#[test]
fn filtered_msgs_are_acked_but_not_decrypted_or_delivered_and_later_ones_still_decrypt() {
    let (mut net, m, members) = nodes(66, 1);
    let p = members[0];
    // Every layer gets the filter; only sessions it accepts use it.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    for node in [m, p] {
        let seen = seen.clone();
        net.nodes[node]
            .layer
            .set_accept_filter(Arc::new(move || -> super::InboundFilter {
                let seen = seen.clone();
                Box::new(move |source: &Name, md: &HashMap<String, String>| {
                    seen.lock().unwrap().push(source.clone());
                    md.contains_key("discard")
                })
            }));
    }
    let (sid, _) = net.create(m, group(), &"org/ns/chat".parse().unwrap());
    assert_eq!(invite(&mut net, m, sid, p), Some(Ok(())));
    let discard = HashMap::from([("discard".to_string(), "1".to_string())]);
    for (text, md) in [
        (&b"keep 1"[..], HashMap::new()),
        (b"drop 1", discard.clone()),
        (b"drop 2", discard.clone()),
        (b"keep 2", HashMap::new()),
    ] {
        net.with(m, sid, |s, now| s.publish(text.to_vec(), md, now))
            .unwrap();
    }
    assert!(net.run_until(LIMIT, |n| n.payloads_from(p, sid, m).len() == 2));
    net.run_for(Duration::from_secs(5));
    assert_eq!(
        net.payloads_from(p, sid, m),
        vec![b"keep 1".to_vec(), b"keep 2".to_vec()]
    );
    let counters = net.session(p, sid).counters();
    assert_eq!(counters.not_needed, 2);
    assert_eq!(counters.decrypt_failed, 0);
    assert!(
        !net.session(m, sid).has_unacked(),
        "the filtered MSGs were acknowledged"
    );
    assert!(seen.lock().unwrap().iter().all(|s| *s == net.name(m)));
    // The moderator created its session: the accept filter is not its own.
    net.with(p, sid, |s, now| {
        s.publish(b"to moderator".to_vec(), discard, now)
    })
    .unwrap();
    assert!(net.run_until(LIMIT, |n| n.payloads_from(m, sid, p).len() == 1));
    assert_eq!(net.session(m, sid).counters().not_needed, 0);
}

#[test]
fn a_long_run_of_filtered_msgs_is_broken_by_a_decryption_so_later_msgs_still_decrypt() {
    let (mut net, m, members) = nodes(67, 1);
    let p = members[0];
    net.nodes[p]
        .layer
        .set_accept_filter(Arc::new(|| -> super::InboundFilter {
            Box::new(|_: &Name, md: &HashMap<String, String>| md.contains_key("discard"))
        }));
    let (sid, _) = net.create(m, group(), &"org/ns/chat".parse().unwrap());
    assert_eq!(invite(&mut net, m, sid, p), Some(Ok(())));
    // More in a row than the MLS ratchet window (1024 generations ahead).
    let n = 1500u32;
    let discard = HashMap::from([("discard".to_string(), "1".to_string())]);
    for i in 0..n {
        let text = format!("drop {}", i + 1).into_bytes();
        net.with(m, sid, |s, now| s.publish(text, discard.clone(), now))
            .unwrap();
    }
    net.with(m, sid, |s, now| {
        s.publish(b"keep".to_vec(), HashMap::new(), now)
    })
    .unwrap();
    let run = super::machine::MAX_UNDECRYPTED_IN_A_ROW;
    let forced = n / (run + 1);
    assert!(net.run_until(LIMIT, |n| {
        n.payloads_from(p, sid, m)
            .last()
            .is_some_and(|l| l == b"keep")
    }));
    // One filtered MSG in every run + 1 that arrived was decrypted and
    // handed to the app (which discards it); the rest were not decrypted.
    let got = net.payloads_from(p, sid, m);
    assert_eq!(got.len() as u32, forced + 1, "{got:?}");
    assert!(
        got[..forced as usize]
            .iter()
            .all(|g| g.starts_with(b"drop "))
    );
    let counters = net.session(p, sid).counters();
    assert_eq!(counters.not_needed, u64::from(n - forced));
    assert_eq!(counters.decrypt_failed, 0);
}

// ----- presence (SLIM v3): soft close and rejoin ------------------------------

/// Turns on the SLIM v3 presence messages for every node's future sessions.
fn with_presence(net: &mut Net) {
    for n in &mut net.nodes {
        n.layer.set_presence(true);
    }
}

fn kinds_sent(net: &Net) -> Vec<Kind> {
    net.trace.iter().map(|t| t.kind).collect()
}

#[test]
fn under_loss_a_soft_closed_member_is_readmitted_after_the_group_moved_on_and_reads_again() {
    let net = Net::new(81, 0.2, 0.2, Duration::from_millis(300));
    let (mut net, m, members) = nodes_on(net, 3);
    with_presence(&mut net);
    let (sid, _) = net.create(m, group(), &"org/ns/chat".parse().unwrap());
    for &p in &members[..2] {
        assert_eq!(invite(&mut net, m, sid, p), Some(Ok(())));
    }
    let away = members[0];
    assert!(net.run_until(LIMIT, |n| n.has_session(away, sid)
        && n.nodes[away].sessions[&sid].is_established()));
    let job = net.with(away, sid, |s, now| s.soft_close(now)).unwrap();
    assert!(net.run_until(LIMIT, |n| n.job_result(away, job).is_some()));
    assert_eq!(net.job_result(away, job), Some(Ok(())));
    assert!(matches!(
        net.with(away, sid, |s, now| s.publish(
            b"x".to_vec(),
            HashMap::new(),
            now
        )),
        Err(SessionError::Offline)
    ));
    // The group moves on while it is away: a commit it never applies.
    assert_eq!(invite(&mut net, m, sid, members[2]), Some(Ok(())));
    assert!(broadcast_arrives(
        &mut net,
        m,
        sid,
        &members[1..],
        b"while away"
    ));
    assert!(
        !net.payloads_from(away, sid, m)
            .iter()
            .any(|x| x == b"while away")
    );

    let job = net.with(away, sid, |s, now| s.rejoin(now)).unwrap();
    assert!(net.run_until(LIMIT, |n| n.job_result(away, job).is_some()));
    assert_eq!(net.job_result(away, job), Some(Ok(())));
    let kinds = kinds_sent(&net);
    for k in [
        Kind::GroupNack,
        Kind::RejoinRequest,
        Kind::RejoinReply,
        Kind::GroupRejoin,
    ] {
        assert!(
            kinds.contains(&k),
            "no {k:?} on the wire: the rejoin took another path"
        );
    }
    assert_eq!(
        net.session(away, sid).members().len(),
        4,
        "the rejoined member lists the group it came back to"
    );
    assert!(broadcast_arrives(&mut net, m, sid, &members, b"all back"));
    net.publish(away, sid, b"from the rejoined");
    assert!(net.run_until(LIMIT, |n| {
        [m, members[1], members[2]].iter().all(|&p| {
            n.payloads_from(p, sid, away)
                .iter()
                .any(|x| x == b"from the rejoined")
        })
    }));
}

#[test]
fn a_member_back_at_the_same_epoch_needs_no_new_welcome() {
    let (mut net, m, members) = nodes(82, 2);
    with_presence(&mut net);
    let (sid, _) = net.create(m, group(), &"org/ns/chat".parse().unwrap());
    for &p in &members {
        assert_eq!(invite(&mut net, m, sid, p), Some(Ok(())));
    }
    let away = members[1];
    let job = net.with(away, sid, |s, now| s.soft_close(now)).unwrap();
    assert!(net.run_until(LIMIT, |n| n.job_result(away, job).is_some()));
    let job = net.with(away, sid, |s, now| s.rejoin(now)).unwrap();
    assert!(net.run_until(LIMIT, |n| n.job_result(away, job).is_some()));
    assert_eq!(net.job_result(away, job), Some(Ok(())));
    let kinds = kinds_sent(&net);
    assert!(kinds.contains(&Kind::ParticipantState));
    assert!(
        !kinds.contains(&Kind::GroupNack) && !kinds.contains(&Kind::RejoinRequest),
        "nobody NACKs a member back at the group's epoch"
    );
    assert!(broadcast_arrives(
        &mut net,
        m,
        sid,
        &members,
        b"still one epoch"
    ));
}

#[test]
fn a_participant_hearing_a_later_epoch_asks_the_moderator_to_rejoin() {
    let (mut net, m, members) = nodes(83, 2);
    with_presence(&mut net);
    let (sid, _) = net.create(m, group(), &"org/ns/chat".parse().unwrap());
    for &p in &members {
        assert_eq!(invite(&mut net, m, sid, p), Some(Ok(())));
    }
    // The moderator's PING (a v3 HEARTBEAT) announcing an epoch ahead of
    // member0's, as the edge notes it after reading a real heartbeat.
    let ping = net
        .trace
        .iter()
        .rev()
        .find(|t| t.from == m && t.kind == Kind::Ping)
        .map(|t| t.msg.clone());
    let mut ping = match ping {
        Some(p) => p,
        None => {
            net.run_for(Duration::from_secs(15));
            net.trace
                .iter()
                .rev()
                .find(|t| t.from == m && t.kind == Kind::Ping)
                .map(|t| t.msg.clone())
                .expect("the moderator pings")
        }
    };
    ping.metadata
        .insert(packet::keys::MLS_EPOCH.into(), u64::MAX.to_string());
    let before = net.trace.len();
    net.inject(members[0], ping);
    net.run_for(Duration::from_millis(50));
    assert!(
        net.trace[before..]
            .iter()
            .any(|t| t.from == members[0] && t.kind == Kind::RejoinRequest),
        "no rejoin request after a heartbeat from a later epoch"
    );
}
