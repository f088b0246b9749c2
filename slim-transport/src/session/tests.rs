//! Behaviour of the session state machines on the simulated network of
//! `testnet`: handshakes, exactly-once in-order delivery under 20 % loss,
//! duplication and reordering, loss reporting, liveness, membership changes
//! and bad input. Deterministic: seeded randomness, virtual clock.

use std::collections::HashMap;
use std::time::Duration;

use crate::Name;
use crate::wire::{self, SessionMessageType as Kind, command_payload::CommandPayloadType as Cmd};

use super::machine::ACK_DELAY;
use super::packet::{self, Inbound, MAX_PUBLISH_ID, keys};
use super::testnet::{Net, SECRET};
use super::{Event, SessionConfig, SessionEvent, SessionKind};
use crate::identity::{IdentityProvider as _, SharedSecret};

const LIMIT: Duration = Duration::from_secs(600);

fn lossy(seed: u64) -> Net {
    Net::new(seed, 0.2, 0.2, Duration::from_millis(300))
}

/// These tests exercise the protocol with MLS off (the MLS seam has its own
/// tests below and in `mls_tests`).
fn plain() -> SessionConfig {
    SessionConfig {
        mls: false,
        ..SessionConfig::default()
    }
}

fn group_config() -> SessionConfig {
    SessionConfig {
        kind: SessionKind::Group,
        ..plain()
    }
}

fn payloads(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}-{i}").into_bytes())
        .collect()
}

fn command_of(t: &super::testnet::Trace) -> Option<Cmd> {
    Inbound::parse(t.msg.clone()).ok()?.command().cloned()
}

/// Alice creates a P2P session to `org/ns/bob`; returns (net, alice, bob, sid).
fn p2p(mut net: Net) -> (Net, usize, usize, u32) {
    let alice = net.add("org/ns/alice");
    let bob = net.add("org/ns/bob");
    let (sid, job) = net.create(alice, plain(), &"org/ns/bob".parse().unwrap());
    let job = job.expect("P2P sessions invite at once");
    assert!(net.run_until(LIMIT, |n| n.job_result(alice, job).is_some()));
    assert_eq!(net.job_result(alice, job), Some(Ok(())));
    assert!(net.run_until(LIMIT, |n| {
        n.has_event(bob, sid, |e| *e == Event::Established)
    }));
    (net, alice, bob, sid)
}

/// A moderator and `n` members, every invite completed.
fn group(net: Net, n: usize) -> (Net, usize, Vec<usize>, u32) {
    group_with(net, n, group_config())
}

fn group_with(mut net: Net, n: usize, config: SessionConfig) -> (Net, usize, Vec<usize>, u32) {
    let m = net.add("org/ns/moderator");
    let members: Vec<usize> = (0..n)
        .map(|i| net.add(&format!("org/ns/member{i}")))
        .collect();
    let channel: Name = "org/ns/chat".parse().unwrap();
    let (sid, job) = net.create(m, config, &channel);
    assert!(job.is_none());
    let jobs: Vec<_> = (0..n)
        .map(|i| {
            let who: Name = format!("org/ns/member{i}").parse().unwrap();
            net.with(m, sid, |s, now| s.invite(&who, now)).unwrap()
        })
        .collect();
    assert!(net.run_until(LIMIT, |net| {
        jobs.iter().all(|j| net.job_result(m, *j).is_some())
    }));
    for j in &jobs {
        assert_eq!(net.job_result(m, *j), Some(Ok(())), "invite {j}");
    }
    // Every member knows every other member once the last GROUP_ADD landed.
    assert!(net.run_until(LIMIT, |net| members.iter().all(
        |&p| net.has_session(p, sid) && net.nodes[p].sessions[&sid].members().len() == n + 1
    )));
    (net, m, members, sid)
}

// ----- point-to-point --------------------------------------------------------

#[test]
fn p2p_handshake_follows_v1_3_and_sticks_to_the_instance_that_answered() {
    let mut net = Net::perfect(1);
    let alice = net.add("org/ns/alice");
    let bob1 = net.add("org/ns/bob");
    let bob2 = net.add("org/ns/bob");
    let (sid, job) = net.create(alice, plain(), &"org/ns/bob".parse().unwrap());
    let job = job.unwrap();
    assert!(net.run_until(LIMIT, |n| n.job_result(alice, job).is_some()));
    assert_eq!(net.job_result(alice, job), Some(Ok(())));
    let peer = net.session(alice, sid).destination().clone();
    let chosen = if peer == net.name(bob1) { bob1 } else { bob2 };
    assert_eq!(
        peer,
        net.name(chosen),
        "destination rewritten to the full name"
    );

    let kinds: Vec<Kind> = net.trace.iter().map(|t| t.kind).collect();
    assert_eq!(
        kinds,
        vec![
            Kind::DiscoveryRequest,
            Kind::DiscoveryReply,
            Kind::JoinRequest,
            Kind::JoinReply,
            Kind::GroupWelcome,
            Kind::GroupAck,
        ]
    );
    let t = &net.trace;
    assert!(t[0].destination.has_null_id() && t[0].fanout == 1);
    assert_eq!(
        t[1].source,
        net.name(chosen),
        "reply source = request dst + own id"
    );
    assert_eq!(t[1].message_id, t[0].message_id);
    let Some(Cmd::JoinRequest(jr)) = command_of(&t[2]) else {
        panic!("join request payload")
    };
    let ts = jr
        .timer_settings
        .expect("timer settings when both are configured");
    assert_eq!((ts.timeout, ts.max_retries), (1000, 10));
    assert!(jr.channel.is_none() && !jr.enable_mls);
    assert_eq!(t[3].message_id, t[2].message_id);
    let Some(Cmd::GroupWelcome(w)) = command_of(&t[4]) else {
        panic!("welcome payload")
    };
    let listed: Vec<Name> = w
        .participants
        .iter()
        .map(|n| Name::from_wire(n).unwrap())
        .collect();
    assert_eq!(listed, vec![net.name(alice), net.name(chosen)]);
    assert_eq!(t[5].message_id, t[4].message_id);

    // The app on bob learns about the session only at the welcome.
    assert!(net.has_event(chosen, sid, |e| *e == Event::Established));
    for i in 0..20u8 {
        net.publish(alice, sid, &[i]);
    }
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.messages(chosen, sid).len(), 20);
    let other = if chosen == bob1 { bob2 } else { bob1 };
    assert!(!net.has_session(other, sid));
    assert!(
        net.trace
            .iter()
            .filter(|t| t.kind == Kind::Msg)
            .all(|t| t.destination == peer && t.fanout == 1)
    );
}

#[test]
fn p2p_join_request_omits_timer_settings_when_not_both_configured() {
    let mut net = Net::perfect(2);
    let alice = net.add("org/ns/alice");
    let bob = net.add("org/ns/bob");
    let config = SessionConfig {
        max_retries: None,
        ..plain()
    };
    let (sid, job) = net.create(alice, config, &net.name(bob).without_id());
    assert!(net.run_until(LIMIT, |n| n.job_result(alice, job.unwrap()).is_some()));
    let join = net
        .trace
        .iter()
        .find(|t| t.kind == Kind::JoinRequest)
        .unwrap();
    let Some(Cmd::JoinRequest(jr)) = command_of(join) else {
        panic!()
    };
    assert!(jr.timer_settings.is_none());
    // Unreliable: delivered, never acked.
    net.publish(alice, sid, b"x");
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.messages(bob, sid).len(), 1);
    assert!(!net.trace.iter().any(|t| t.kind == Kind::MsgAck));
}

#[test]
fn p2p_messages_arrive_exactly_once_in_order_under_loss_duplication_and_reordering() {
    let (mut net, alice, bob, sid) = p2p(lossy(3));
    let a = payloads("a", 300);
    let b = payloads("b", 300);
    for i in 0..300 {
        net.publish(alice, sid, &a[i]);
        net.publish(bob, sid, &b[i]);
        if i % 10 == 0 {
            net.run_for(Duration::from_millis(100));
        }
    }
    assert!(net.run_until(LIMIT, |n| n.messages(bob, sid).len() >= 300
        && n.messages(alice, sid).len() >= 300));
    net.run_for(Duration::from_secs(30));
    assert_eq!(net.payloads_from(bob, sid, alice), a);
    assert_eq!(net.payloads_from(alice, sid, bob), b);
    assert!(!net.session(alice, sid).has_unacked());
    assert!(!net.session(bob, sid).has_unacked());
    assert!(
        net.nodes[bob].sessions[&sid].counters().duplicate > 0,
        "duplicates were exercised"
    );
    assert!(
        net.trace.iter().any(|t| t.kind == Kind::RtxRequest),
        "gaps were exercised"
    );
    for node in [alice, bob] {
        assert!(
            !net.app_events(node, sid)
                .iter()
                .any(|e| matches!(e, SessionEvent::MessageLost { .. }))
        );
    }
}

#[test]
fn p2p_handshake_completes_under_loss() {
    for seed in 10..20 {
        let (mut net, alice, bob, sid) = p2p(lossy(seed));
        net.publish(alice, sid, b"hello");
        assert!(
            net.run_until(LIMIT, |n| n.messages(bob, sid).len() == 1),
            "seed {seed}"
        );
    }
}

#[test]
fn messages_published_before_the_handshake_are_delivered_after_it() {
    let mut net = lossy(4);
    let alice = net.add("org/ns/alice");
    let bob = net.add("org/ns/bob");
    let (sid, _) = net.create(alice, plain(), &"org/ns/bob".parse().unwrap());
    for i in 0..5u8 {
        net.publish(alice, sid, &[i]);
    }
    assert!(net.run_until(LIMIT, |n| n.has_session(bob, sid)
        && n.messages(bob, sid).len() == 5));
    assert_eq!(
        net.payloads_from(bob, sid, alice),
        (0..5u8).map(|i| vec![i]).collect::<Vec<_>>()
    );
}

#[test]
fn message_lost_for_good_is_reported_lost_in_its_place() {
    let (mut net, alice, bob, sid) = p2p(Net::perfect(5));
    // MSG 3 never reaches bob, not even through retransmission or RTX.
    net.filter = Some(Box::new(|_, _, inb| {
        !(inb.message_id == 3 && matches!(inb.kind, Kind::Msg | Kind::RtxReply))
    }));
    for i in 1..=5u8 {
        net.publish(alice, sid, &[i]);
    }
    net.run_for(Duration::from_secs(30));
    let events: Vec<SessionEvent> = net
        .app_events(bob, sid)
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                SessionEvent::Message(_) | SessionEvent::MessageLost { .. }
            )
        })
        .collect();
    let alice_name = net.name(alice);
    // Each message carries alice's verified subject: her identity's id.
    let alice_subject = net.ctx(alice).provider.id().to_string();
    let expect = |i: u8| {
        SessionEvent::Message(super::ReceivedMessage {
            source: alice_name.clone(),
            payload: vec![i],
            metadata: HashMap::new(),
            peer_subject: Some(alice_subject.clone()),
        })
    };
    assert_eq!(
        events,
        vec![
            expect(1),
            expect(2),
            SessionEvent::MessageLost {
                source: net.name(alice),
                message_id: 3
            },
            expect(4),
            expect(5),
        ]
    );
    // The sender gave up too, and said so.
    assert!(net.has_event(alice, sid, |e| matches!(
        e,
        Event::PublishFailed { message_id: 3, .. }
    )));
}

#[test]
fn rtx_reply_with_error_flag_set_to_false_still_means_lost() {
    let (mut net, alice, bob, sid) = p2p(Net::perfect(6));
    // Deliver MSG 1 and 3 by hand-made copies; then an RTX_REPLY for 2 with error=false.
    let ctx = net.ctx(alice);
    let bob_name = net.name(bob);
    let now = net.now;
    let mk = |id: u32, kind: Kind, error: Option<bool>| {
        let mut m = packet::Out {
            source: &ctx.app_name,
            destination: &bob_name,
            fanout: 1,
            session_type: wire::SessionType::PointToPoint,
            kind,
            session_id: sid,
            message_id: id,
            content: packet::app_content("msg", vec![id as u8]),
            metadata: HashMap::new(),
        }
        .build();
        if let Some(wire::message::MessageType::Publish(p)) = &mut m.message_type {
            p.header.as_mut().unwrap().error = error;
        }
        packet::set_identity(&mut m, ctx.provider.token_at(ctx.clock.unix(now)).unwrap());
        m
    };
    net.inject(bob, mk(1, Kind::Msg, None));
    net.inject(bob, mk(3, Kind::Msg, None));
    net.inject(bob, mk(2, Kind::RtxReply, Some(false)));
    let ev = net.app_events(bob, sid);
    assert!(ev.contains(&SessionEvent::MessageLost {
        source: net.name(alice),
        message_id: 2
    }));
    assert_eq!(net.messages(bob, sid).len(), 2);
}

#[test]
fn sequenced_ids_wrap_after_max_publish_id_without_losing_order() {
    let (mut net, alice, bob, sid) = p2p(lossy(7));
    net.session(alice, sid)
        .sender_mut()
        .set_next_id(MAX_PUBLISH_ID - 3);
    let alice_name = net.name(alice);
    net.session(bob, sid)
        .start_stream_at(alice_name, MAX_PUBLISH_ID - 3);
    let p = payloads("w", 10);
    for x in &p {
        net.publish(alice, sid, x);
    }
    assert!(net.run_until(LIMIT, |n| n.messages(bob, sid).len() >= 10));
    net.run_for(Duration::from_secs(20));
    assert_eq!(net.payloads_from(bob, sid, alice), p);
    let ids: Vec<u32> = net
        .trace
        .iter()
        .filter(|t| t.kind == Kind::Msg && t.from == alice)
        .map(|t| t.message_id)
        .collect();
    assert!(ids.contains(&MAX_PUBLISH_ID) && ids.contains(&0));
}

#[test]
fn acks_and_rtx_requests_echo_incoming_conn_as_forward_to() {
    let (mut net, alice, _bob, sid) = p2p(Net::perfect(8));
    net.publish(alice, sid, b"x");
    net.run_for(Duration::from_secs(2));
    let ack = net.trace.iter().find(|t| t.kind == Kind::MsgAck).unwrap();
    let Some(wire::message::MessageType::Publish(p)) = &ack.msg.message_type else {
        panic!()
    };
    assert_eq!(p.header.as_ref().unwrap().forward_to, Some(alice as u64));
    let reply = net
        .trace
        .iter()
        .find(|t| t.kind == Kind::DiscoveryReply)
        .unwrap();
    let Some(wire::message::MessageType::Publish(p)) = &reply.msg.message_type else {
        panic!()
    };
    assert_eq!(p.header.as_ref().unwrap().forward_to, Some(alice as u64));
}

#[test]
fn a_msg_ack_rides_with_the_next_message_out_or_goes_alone_after_the_ack_delay() {
    let (mut net, alice, bob, sid) = p2p(Net::perfect(9));
    net.publish(alice, sid, b"question");
    assert!(net.run_until(LIMIT, |n| n.messages(bob, sid).len() == 1));
    // Delivered at once; its ack waits for bob's next message.
    assert_eq!(net.sent(bob, Kind::MsgAck), 0);
    net.publish(bob, sid, b"answer");
    let sent: Vec<Kind> = net
        .trace
        .iter()
        .filter(|t| t.from == bob)
        .map(|t| t.kind)
        .collect();
    assert_eq!(sent[sent.len() - 2..], [Kind::MsgAck, Kind::Msg]);
    // With nothing to ride on, the ack goes alone once ACK_DELAY passed.
    net.publish(alice, sid, b"second");
    assert!(net.run_until(LIMIT, |n| n.messages(bob, sid).len() == 2));
    let delivered = net.now;
    assert_eq!(net.sent(bob, Kind::MsgAck), 1);
    assert!(net.run_until(LIMIT, |n| n.sent(bob, Kind::MsgAck) == 2));
    assert_eq!(net.now - delivered, ACK_DELAY);
    // Alice saw both acks: nothing of hers is left to retransmit.
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.sent(alice, Kind::Msg), 2);
}

#[test]
fn p2p_participant_close_closes_both_sides() {
    let (mut net, alice, bob, sid) = p2p(lossy(9));
    net.with(bob, sid, |s, now| s.close(now));
    assert!(net.run_until(LIMIT, |n| n.is_closed_event(alice, sid)
        && n.is_closed_event(bob, sid)));
    let leave = net
        .trace
        .iter()
        .find(|t| t.kind == Kind::LeaveRequest)
        .unwrap();
    assert_eq!(
        leave
            .msg
            .metadata
            .get(keys::LEAVING_SESSION)
            .map(String::as_str),
        Some("TRUE")
    );
}

#[test]
fn p2p_moderator_close_reaches_the_peer_under_loss() {
    let (mut net, alice, bob, sid) = p2p(lossy(10));
    net.publish(alice, sid, b"last words");
    net.with(alice, sid, |s, now| s.close(now));
    assert!(net.run_until(LIMIT, |n| n.is_closed_event(alice, sid)
        && n.is_closed_event(bob, sid)));
    assert_eq!(
        net.payloads_from(bob, sid, alice),
        vec![b"last words".to_vec()]
    );
    assert!(
        net.with(alice, sid, |s, now| s.publish(vec![1], HashMap::new(), now))
            .is_err()
            || !net.has_session(alice, sid)
    );
}

#[test]
fn p2p_invite_of_nobody_fails_and_closes_the_session() {
    let mut net = Net::perfect(11);
    let alice = net.add("org/ns/alice");
    let (sid, job) = net.create(alice, plain(), &"org/ns/nobody".parse().unwrap());
    assert!(net.run_until(LIMIT, |n| n.job_result(alice, job.unwrap()).is_some()));
    assert!(matches!(
        net.job_result(alice, job.unwrap()),
        Some(Err(super::SessionError::Timeout { .. }))
    ));
    assert!(net.is_closed_event(alice, sid));
    // 1 send + 10 retransmissions of the DISCOVERY_REQUEST.
    assert_eq!(
        net.trace
            .iter()
            .filter(|t| t.kind == Kind::DiscoveryRequest)
            .count(),
        11
    );
}

#[test]
fn p2p_silent_peer_is_declared_gone_after_three_ping_rounds() {
    let (mut net, alice, bob, sid) = p2p(Net::perfect(12));
    let start = net.now;
    net.nodes[bob].silent = true;
    assert!(net.run_until(LIMIT, |n| n.is_closed_event(alice, sid)));
    let took = net.now - start;
    assert!(took >= Duration::from_secs(30), "virtual time {took:?}");
    assert!(took <= Duration::from_secs(45), "virtual time {took:?}");
    assert!(
        net.app_events(alice, sid)
            .contains(&SessionEvent::MemberLeft(net.name(bob)))
    );
}

#[test]
fn participant_detects_a_vanished_moderator_after_three_silent_intervals() {
    let (mut net, alice, bob, sid) = p2p(Net::perfect(13));
    net.run_for(Duration::from_secs(25));
    assert!(
        !net.is_closed_event(bob, sid),
        "pings keep the session alive"
    );
    net.nodes[alice].silent = true;
    let start = net.now;
    assert!(net.run_until(LIMIT, |n| n.is_closed_event(bob, sid)));
    assert!(net.now - start <= Duration::from_secs(31));
    assert!(net.app_events(bob, sid).contains(&SessionEvent::Closed {
        reason: "moderator unreachable".into()
    }));
}

// ----- group ------------------------------------------------------------------------

#[test]
fn group_of_moderator_and_five_members_forms_under_loss_following_v1_3() {
    let (net, m, members, sid) = group(lossy(20), 5);
    let mut expected: Vec<Name> = vec![net.name(m)];
    expected.extend(members.iter().map(|&p| net.name(p)));
    let mut sorted = expected.clone();
    sorted.sort();
    for &p in &members {
        let mut got = net.nodes[p].sessions[&sid].members().to_vec();
        got.sort();
        assert_eq!(got, sorted, "member list of {}", net.name(p));
    }
    let joins: Vec<_> = net
        .trace
        .iter()
        .filter(|t| t.kind == Kind::JoinRequest)
        .collect();
    for j in &joins {
        let Some(Cmd::JoinRequest(jr)) = command_of(j) else {
            panic!()
        };
        assert!(
            jr.timer_settings.is_some(),
            "group joins carry timer settings"
        );
        let channel =
            Name::from_wire(jr.channel.as_ref().expect("group joins carry the channel")).unwrap();
        assert_eq!(channel, "org/ns/chat".parse::<Name>().unwrap());
    }
    // GROUP_ADD only once the group has more than two members, to the channel.
    let adds: Vec<_> = net
        .trace
        .iter()
        .filter(|t| t.kind == Kind::GroupAdd)
        .collect();
    assert!(
        adds.iter()
            .all(|t| t.fanout == 256 && t.destination.has_null_id())
    );
    let added: std::collections::BTreeSet<Name> = adds
        .iter()
        .filter_map(|t| match command_of(t) {
            Some(Cmd::GroupAdd(a)) => Name::from_wire(a.new_participant.as_ref()?).ok(),
            _ => None,
        })
        .collect();
    assert_eq!(
        added.len(),
        4,
        "members 2..5 were announced, member 1 was not"
    );
    assert!(!added.contains(&net.name(members[0])));
    // Welcome lists everyone so far, moderator first.
    let Some(Cmd::GroupWelcome(w)) = command_of(
        net.trace
            .iter()
            .rfind(|t| t.kind == Kind::GroupWelcome)
            .unwrap(),
    ) else {
        panic!()
    };
    assert_eq!(Name::from_wire(&w.participants[0]).unwrap(), net.name(m));
    assert_eq!(w.participants.len(), 6);
    // §h.11: no GROUP_PROPOSAL/NACK ever, GROUP_ACK only to the moderator.
    assert!(
        !net.trace
            .iter()
            .any(|t| matches!(t.kind, Kind::GroupProposal | Kind::GroupNack))
    );
    assert!(
        net.trace
            .iter()
            .filter(|t| t.kind == Kind::GroupAck)
            .all(|t| t.destination == net.name(m))
    );
    // The moderator told its app about each member.
    for &p in &members {
        assert!(
            net.app_events(m, sid)
                .contains(&SessionEvent::MemberJoined(net.name(p)))
        );
    }
}

#[test]
fn group_broadcasts_arrive_exactly_once_in_per_source_order_under_loss() {
    let (mut net, m, members, sid) = group(lossy(21), 5);
    let all: Vec<usize> = std::iter::once(m).chain(members.iter().copied()).collect();
    let sent: HashMap<usize, Vec<Vec<u8>>> = all
        .iter()
        .map(|&n| (n, payloads(&format!("from{n}"), 40)))
        .collect();
    for i in 0..40 {
        for &n in &all {
            let payload = format!("from{n}-{i}").into_bytes();
            net.publish(n, sid, &payload);
        }
        net.run_for(Duration::from_millis(50));
    }
    assert!(net.run_until(LIMIT, |net| {
        all.iter().all(|&r| net.messages(r, sid).len() >= 40 * 5)
    }));
    net.run_for(Duration::from_secs(30));
    for &r in &all {
        for &s in &all {
            if r != s {
                assert_eq!(net.payloads_from(r, sid, s), sent[&s], "{r} from {s}");
            }
        }
        assert!(
            !net.app_events(r, sid)
                .iter()
                .any(|e| matches!(e, SessionEvent::MessageLost { .. }))
        );
        assert!(!net.nodes[r].sessions[&sid].has_unacked());
    }
    assert!(
        net.trace
            .iter()
            .filter(|t| t.kind == Kind::Msg && t.destination.has_null_id())
            .all(|t| t.fanout == 256)
    );
}

#[test]
fn unicast_and_publish_to_reach_only_their_target_and_keep_everyones_order() {
    let (mut net, m, members, sid) = group(lossy(22), 3);
    let (a, b, c) = (members[0], members[1], members[2]);
    let target = net.name(b);
    let mut broadcast = Vec::new();
    for i in 0..30u8 {
        if i % 3 == 0 {
            net.with(a, sid, |s, now| {
                s.publish_unicast(&target, vec![100 + i], HashMap::new(), now)
            })
            .unwrap();
        } else if i % 3 == 1 {
            net.with(a, sid, |s, now| {
                s.publish_to(&target, vec![200 + i], HashMap::new(), now)
            })
            .unwrap();
        } else {
            net.publish(a, sid, &[i]);
            broadcast.push(vec![i]);
        }
        net.run_for(Duration::from_millis(30));
    }
    net.run_for(Duration::from_secs(60));
    let unicast: Vec<Vec<u8>> = (0..30u8)
        .filter(|i| i % 3 == 0)
        .map(|i| vec![100 + i])
        .collect();
    let direct: std::collections::BTreeSet<Vec<u8>> = (0..30u8)
        .filter(|i| i % 3 == 1)
        .map(|i| vec![200 + i])
        .collect();
    let at_b = net.payloads_from(b, sid, a);
    // Sequenced ones (broadcast + unicast) in order; PUBLISH_TO ones exactly once.
    let seq_b: Vec<Vec<u8>> = at_b.iter().filter(|p| p[0] < 200).cloned().collect();
    let mut want_seq: Vec<Vec<u8>> = Vec::new();
    for i in 0..30u8 {
        if i % 3 == 0 {
            want_seq.push(vec![100 + i]);
        } else if i % 3 == 2 {
            want_seq.push(vec![i]);
        }
    }
    assert_eq!(seq_b, want_seq);
    let direct_b: Vec<Vec<u8>> = at_b.iter().filter(|p| p[0] >= 200).cloned().collect();
    assert_eq!(direct_b.len(), direct.len(), "each PUBLISH_TO exactly once");
    assert_eq!(
        direct_b
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>(),
        direct
    );
    for other in [m, c] {
        assert_eq!(net.payloads_from(other, sid, a), broadcast, "node {other}");
        assert!(
            !net.app_events(other, sid)
                .iter()
                .any(|e| matches!(e, SessionEvent::MessageLost { .. }))
        );
    }
    assert!(!unicast.is_empty());
    let pt: Vec<_> = net
        .trace
        .iter()
        .filter(|t| t.kind == Kind::Msg && t.msg.metadata.contains_key(keys::PUBLISH_TO))
        .collect();
    assert!(
        pt.iter()
            .all(|t| t.fanout == 1 && t.message_id > MAX_PUBLISH_ID && t.message_id < u32::MAX)
    );
    assert!(
        net.trace
            .iter()
            .filter(|t| t.kind == Kind::MsgAck && t.destination == net.name(a) && t.from == b)
            .any(|t| t.msg.metadata.get(keys::PUBLISH_TO).map(String::as_str) == Some("TRUE"))
    );
}

/// Publishes `m0`, `m1`, ... `m{n-1}` from `a` at once.
fn publish_numbered(net: &mut Net, a: usize, sid: u32, n: usize) {
    for i in 0..n {
        net.publish(a, sid, format!("m{i}").as_bytes());
    }
}

/// Runs until `b` delivered all `n` numbered messages of `a`, in order.
fn delivered_in_order(net: &mut Net, a: usize, b: usize, sid: u32, n: usize) {
    assert!(net.run_until(LIMIT, |net| net.payloads_from(b, sid, a).len() == n));
    for (i, p) in net.payloads_from(b, sid, a).iter().enumerate() {
        assert_eq!(p, format!("m{i}").as_bytes());
    }
}

#[test]
fn a_burst_beyond_the_send_window_is_paced_by_acks_and_delivered_in_order() {
    let (mut net, a, b, sid) = p2p(Net::perfect(37));
    let sent_msgs = |net: &Net| net.sent(a, Kind::Msg);
    let before = sent_msgs(&net);
    let n = crate::session::SEND_WINDOW * 4 + 7;
    publish_numbered(&mut net, a, sid, n);
    // No ack has come back yet: one window is on the wire, the rest waits.
    assert_eq!(sent_msgs(&net) - before, crate::session::SEND_WINDOW);
    assert!(net.session(a, sid).has_unacked());
    delivered_in_order(&mut net, a, b, sid, n);
    assert!(net.run_until(LIMIT, |net| !net.nodes[a].sessions[&sid].has_unacked()));
    // Nothing was sent twice on a perfect network.
    assert_eq!(sent_msgs(&net) - before, n);
}

#[test]
fn a_burst_beyond_the_send_window_survives_loss_and_duplication() {
    // More MSGs than the sender's RTX history holds go out while early ones
    // are still unacked: their copies must stay available for RTX.
    let (mut net, a, b, sid) = p2p(lossy(41));
    let n = crate::session::SEND_WINDOW * 3;
    publish_numbered(&mut net, a, sid, n);
    delivered_in_order(&mut net, a, b, sid, n);
    assert!(
        !net.app_events(b, sid)
            .iter()
            .any(|e| matches!(e, SessionEvent::MessageLost { .. }))
    );
}

#[test]
fn a_paused_receiver_refuses_fresh_messages_unacked_and_delivers_them_all_once_resumed() {
    let (mut net, a, b, sid) = p2p(Net::perfect(43));
    net.session(b, sid).set_receive_paused(true);
    publish_numbered(&mut net, a, sid, 5);
    // Retransmission rounds pass (fewer than the sender's retries): the
    // receiver neither delivers nor acknowledges, and both sides live on.
    net.run_for(Duration::from_secs(3));
    assert!(net.payloads_from(b, sid, a).is_empty());
    assert!(
        net.session(a, sid).has_unacked(),
        "nothing was acknowledged"
    );
    assert!(net.session(b, sid).counters().refused_busy >= 5);
    assert!(!net.is_closed_event(a, sid) && !net.is_closed_event(b, sid));
    net.session(b, sid).set_receive_paused(false);
    delivered_in_order(&mut net, a, b, sid, 5);
    assert!(
        !net.app_events(b, sid)
            .iter()
            .any(|e| matches!(e, SessionEvent::MessageLost { .. }))
    );
}

#[test]
fn a_paused_receiver_still_acknowledges_duplicates_of_what_it_delivered() {
    let (mut net, a, b, sid) = p2p(Net::perfect(44));
    publish_numbered(&mut net, a, sid, 3);
    delivered_in_order(&mut net, a, b, sid, 3);
    net.session(b, sid).set_receive_paused(true);
    // A retransmission of an acknowledged message is re-acked, not refused:
    // pausing never turns a delivered message into a failed send.
    let copy = net
        .trace
        .iter()
        .rev()
        .find(|t| t.from == a && t.kind == Kind::Msg)
        .map(|t| t.msg.clone())
        .expect("a MSG was sent");
    let refused = net.session(b, sid).counters().refused_busy;
    net.inject(b, copy);
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.session(b, sid).counters().refused_busy, refused);
    assert_eq!(net.payloads_from(b, sid, a).len(), 3, "delivered once");
}

#[test]
fn a_shorter_ping_interval_declares_a_silent_member_gone_after_three_of_its_rounds() {
    let config = SessionConfig {
        ping_interval: Duration::from_secs(2),
        ..group_config()
    };
    let (mut net, m, members, sid) = group_with(Net::perfect(29), 3, config);
    let gone = members[2];
    let took = silence_until_gone(&mut net, m, sid, gone);
    // Simulated time: three missed rounds of 2 s, plus the round in progress.
    assert!(
        took >= Duration::from_secs(6) && took <= Duration::from_secs(9),
        "{took:?}"
    );
    assert!(!net.is_closed_event(m, sid));
    // Only the silent member was dropped.
    assert!(!has_left(&net, m, sid, net.name(members[0])));
    assert!(!has_left(&net, m, sid, net.name(members[1])));
}

/// Silences `gone` and runs until the moderator `m` declares it gone;
/// returns how long that took (simulated time).
fn silence_until_gone(net: &mut Net, m: usize, sid: u32, gone: usize) -> Duration {
    net.nodes[gone].silent = true;
    let start = net.now;
    assert!(net.run_until(LIMIT, |n| has_left(n, m, sid, n.name(gone))));
    net.now - start
}

fn has_left(net: &Net, node: usize, sid: u32, who: Name) -> bool {
    net.app_events(node, sid)
        .contains(&SessionEvent::MemberLeft(who))
}

#[test]
fn silent_member_is_declared_gone_after_three_missed_ping_rounds() {
    let (mut net, m, members, sid) = group(Net::perfect(23), 3);
    let gone = members[1];
    let took = silence_until_gone(&mut net, m, sid, gone);
    assert!(
        took >= Duration::from_secs(30) && took <= Duration::from_secs(45),
        "{took:?}"
    );
    // The others are told through GROUP_REMOVE, and stay in the session.
    for &p in [members[0], members[2]].iter() {
        assert!(net.run_until(LIMIT, |n| {
            n.app_events(p, sid)
                .contains(&SessionEvent::MemberLeft(n.name(gone)))
        }));
        assert!(!net.is_closed_event(p, sid));
    }
    assert_eq!(net.session(m, sid).members().len(), 3);
    // Pings carry a fresh random id each round.
    let ids: std::collections::BTreeSet<u32> = net
        .trace
        .iter()
        .filter(|t| t.kind == Kind::Ping && t.from == m)
        .map(|t| t.message_id)
        .collect();
    assert!(ids.len() >= 3);
}

#[test]
fn removed_member_stops_receiving_and_the_others_are_told() {
    let (mut net, m, members, sid) = group(lossy(24), 3);
    let removed = members[1];
    let who = net.name(removed).without_id();
    let job = net.with(m, sid, |s, now| s.remove(&who, now)).unwrap();
    assert!(net.run_until(LIMIT, |n| n.job_result(m, job).is_some()));
    assert_eq!(net.job_result(m, job), Some(Ok(())));
    assert!(net.run_until(LIMIT, |n| n.is_closed_event(removed, sid)));
    for &p in [members[0], members[2]].iter() {
        assert!(
            net.app_events(p, sid)
                .contains(&SessionEvent::MemberLeft(net.name(removed)))
        );
    }
    // GROUP_REMOVE first (more than two members), then LEAVE_REQUEST.
    let gr = net
        .trace
        .iter()
        .position(|t| t.kind == Kind::GroupRemove)
        .unwrap();
    let lr = net
        .trace
        .iter()
        .position(|t| t.kind == Kind::LeaveRequest)
        .unwrap();
    assert!(gr < lr);
    let Some(Cmd::GroupRemove(r)) = command_of(&net.trace[gr]) else {
        panic!()
    };
    assert_eq!(r.participants.len(), 4, "list before removal");
    net.run_for(Duration::from_secs(30));
    let before = net.messages(removed, sid).len();
    for i in 0..10u8 {
        net.publish(m, sid, &[i]);
        net.publish(members[0], sid, &[50 + i]);
    }
    assert!(net.run_until(LIMIT, |n| n.messages(members[2], sid).len() >= 20));
    net.run_for(Duration::from_secs(20));
    let after: Vec<_> = net.app_events(removed, sid);
    assert_eq!(
        after
            .iter()
            .filter(|e| matches!(e, SessionEvent::Message(_)))
            .count(),
        before,
        "nothing delivered after removal"
    );
    assert_eq!(
        net.payloads_from(members[2], sid, m),
        (0..10u8).map(|i| vec![i]).collect::<Vec<_>>()
    );
}

#[test]
fn close_reaches_every_member_under_loss() {
    let (mut net, m, members, sid) = group(lossy(25), 5);
    net.publish(m, sid, b"bye");
    net.with(m, sid, |s, now| s.close(now));
    assert!(net.run_until(LIMIT, |n| n.is_closed_event(m, sid)
        && members.iter().all(|&p| n.is_closed_event(p, sid))));
    for &p in &members {
        assert_eq!(net.payloads_from(p, sid, m), vec![b"bye".to_vec()]);
        assert!(net.has_event(p, sid, |e| matches!(e, Event::Unsubscribe(_))));
    }
    let close = net
        .trace
        .iter()
        .find(|t| t.kind == Kind::GroupClose)
        .unwrap();
    assert_eq!(close.fanout, 256);
}

#[test]
fn member_leaving_gracefully_is_removed_and_the_group_goes_on() {
    let (mut net, m, members, sid) = group(lossy(26), 3);
    let leaver = members[0];
    net.with(leaver, sid, |s, now| s.close(now));
    assert!(net.run_until(LIMIT, |n| {
        n.is_closed_event(leaver, sid)
            && [members[1], members[2]]
                .iter()
                .all(|&p| n.nodes[p].sessions[&sid].members().len() == 3)
    }));
    assert!(
        net.app_events(m, sid)
            .contains(&SessionEvent::MemberLeft(net.name(leaver)))
    );
    assert!(!net.is_closed_event(m, sid));
    net.publish(members[1], sid, b"still here");
    assert!(
        net.run_until(LIMIT, |n| n.messages(members[2], sid).len() == 1
            && n.messages(m, sid).len() == 1)
    );
}

#[test]
fn last_member_leaving_closes_the_group() {
    let (mut net, m, members, sid) = group(Net::perfect(27), 1);
    net.with(members[0], sid, |s, now| s.close(now));
    assert!(net.run_until(LIMIT, |n| n.is_closed_event(m, sid)));
}

#[test]
fn participants_refuse_group_commands_from_anyone_but_the_moderator() {
    let (mut net, _m, members, sid) = group(Net::perfect(28), 2);
    let (a, b) = (members[0], members[1]);
    let ctx = net.ctx(a);
    let now = net.now;
    let mut close = packet::Out {
        source: &ctx.app_name,
        destination: &net.name(b),
        fanout: 1,
        session_type: wire::SessionType::Multicast,
        kind: Kind::GroupClose,
        session_id: sid,
        message_id: 42,
        content: packet::command_content(Cmd::GroupClose(wire::GroupClosePayload {
            participants: vec![],
        })),
        metadata: HashMap::new(),
    }
    .build();
    packet::set_identity(
        &mut close,
        ctx.provider.token_at(ctx.clock.unix(now)).unwrap(),
    );
    net.inject(b, close);
    assert!(!net.is_closed_event(b, sid));
    assert_eq!(net.session(b, sid).counters().unexpected, 1);
}

#[test]
fn lifecycles_deliver_exactly_once_in_order_across_many_seeds() {
    // Group: publish from everyone, remove one member, close right away.
    // P2P: both sides publish, the moderator closes right away; nothing in
    // flight may be lost.
    for seed in 100..112 {
        let (mut net, m, members, sid) = group(lossy(seed), 4);
        let all: Vec<usize> = std::iter::once(m).chain(members.iter().copied()).collect();
        for i in 0..15u8 {
            for &n in &all {
                net.publish(n, sid, &[n as u8, i]);
            }
            net.run_for(Duration::from_millis(20));
        }
        assert!(net.run_until(LIMIT, |n| {
            all.iter().all(|&r| n.messages(r, sid).len() >= 15 * 4)
        }));
        let rm = net.name(members[3]);
        net.with(m, sid, |s, now| s.remove(&rm, now)).unwrap();
        net.with(m, sid, |s, now| s.close(now));
        assert!(
            net.run_until(LIMIT, |n| all.iter().all(|&p| n.is_closed_event(p, sid))),
            "seed {seed}"
        );
        for &r in &all[..4] {
            for &s in &all {
                if r != s {
                    let want: Vec<Vec<u8>> = (0..15u8).map(|i| vec![s as u8, i]).collect();
                    assert_eq!(
                        net.payloads_from(r, sid, s),
                        want,
                        "seed {seed} {r} from {s}"
                    );
                }
            }
            assert!(
                !net.app_events(r, sid)
                    .iter()
                    .any(|e| matches!(e, SessionEvent::MessageLost { .. })),
                "seed {seed}"
            );
        }
        let (mut net, alice, bob, sid) = p2p(lossy(seed));
        for i in 0..50u8 {
            net.publish(alice, sid, &[i]);
            net.publish(bob, sid, &[i]);
        }
        net.with(alice, sid, |s, now| s.close(now));
        assert!(
            net.run_until(LIMIT, |n| n.is_closed_event(bob, sid)
                && n.is_closed_event(alice, sid)),
            "seed {seed}"
        );
        let want: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i]).collect();
        assert_eq!(net.payloads_from(bob, sid, alice), want, "p2p seed {seed}");
        assert_eq!(net.payloads_from(alice, sid, bob), want, "p2p seed {seed}");
    }
}

// ----- bad input ---------------------------------------------------------------------

/// A MSG from alice to bob in session `sid`, with `token` as identity.
fn msg_with_token(
    net: &Net,
    from: usize,
    to: usize,
    sid: u32,
    id: u32,
    token: &str,
) -> wire::Message {
    let src = net.name(from);
    let dst = net.name(to);
    let mut m = packet::Out {
        source: &src,
        destination: &dst,
        fanout: 1,
        session_type: wire::SessionType::PointToPoint,
        kind: Kind::Msg,
        session_id: sid,
        message_id: id,
        content: packet::app_content("msg", b"evil".to_vec()),
        metadata: HashMap::new(),
    }
    .build();
    packet::set_identity(&mut m, token.to_string());
    m
}

fn unix_now(net: &Net) -> u64 {
    net.clock.unix(net.now)
}

#[test]
fn messages_with_bad_identity_tokens_are_dropped_counted_and_harmless() {
    let (mut net, alice, bob, sid) = p2p(Net::perfect(30));
    let now = unix_now(&net);
    let good = SharedSecret::new("org/ns/alice", SECRET).unwrap();
    let other = SharedSecret::new("org/ns/mallory", &"m".repeat(40)).unwrap();
    let tokens = vec![
        other.token_at(now).unwrap(),       // wrong MAC
        good.token_at(now - 3601).unwrap(), // expired
        good.token_at(now + 60).unwrap(),   // from the future
        "not:a:token".to_string(),          // malformed
        String::new(),                      // missing
    ];
    let n = tokens.len() as u64;
    for t in &tokens {
        let m = msg_with_token(&net, alice, bob, sid, 1, t);
        net.inject(bob, m);
    }
    assert_eq!(net.session(bob, sid).counters().bad_identity, n);
    assert!(net.messages(bob, sid).is_empty());
    assert!(
        !net.trace.iter().any(|t| t.kind == Kind::MsgAck),
        "never acked"
    );
    // The same forgery aimed at the stateless path (a JOIN_REQUEST).
    let mut join = msg_with_token(&net, alice, bob, 777, 5, &tokens[0]);
    packet::set_kind(&mut join, Kind::JoinRequest);
    net.inject(bob, join);
    assert_eq!(net.nodes[bob].layer.counters().bad_identity, 1);
    assert!(!net.has_session(bob, 777));
    // The session is unaffected.
    net.publish(alice, sid, b"real");
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.payloads_from(bob, sid, alice), vec![b"real".to_vec()]);
    // A token just inside the skew and validity windows is fine.
    let m = msg_with_token(
        &net,
        alice,
        bob,
        sid,
        2,
        &good.token_at(unix_now(&net) + 5).unwrap(),
    );
    net.inject(bob, m);
    assert_eq!(net.messages(bob, sid).len(), 2);
}

#[test]
fn messages_for_unknown_sessions_are_dropped_and_counted() {
    let (mut net, alice, bob, _sid) = p2p(Net::perfect(31));
    let token = net.ctx(alice).provider.token_at(unix_now(&net)).unwrap();
    for kind in [
        Kind::Msg,
        Kind::MsgAck,
        Kind::GroupWelcome,
        Kind::Ping,
        Kind::GroupClose,
    ] {
        let mut m = msg_with_token(&net, alice, bob, 4242, 1, &token);
        packet::set_kind(&mut m, kind);
        net.inject(bob, m);
    }
    assert_eq!(net.nodes[bob].layer.counters().unknown_session, 5);
    assert!(!net.has_session(bob, 4242));
}

#[test]
fn out_of_range_message_ids_are_dropped_and_counted() {
    let (mut net, alice, bob, sid) = p2p(Net::perfect(32));
    let token = net.ctx(alice).provider.token_at(unix_now(&net)).unwrap();
    // Sequenced ids live in [0, 2^31); far-ahead ids cannot be recovered.
    for id in [MAX_PUBLISH_ID + 1, u32::MAX, 1_000_000] {
        let m = msg_with_token(&net, alice, bob, sid, id, &token);
        net.inject(bob, m);
    }
    assert_eq!(net.session(bob, sid).counters().out_of_range, 3);
    assert!(net.messages(bob, sid).is_empty());
    net.publish(alice, sid, b"fine");
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.messages(bob, sid).len(), 1);
}

#[test]
fn group_publish_to_with_an_id_inside_the_sequenced_space_is_refused() {
    let (mut net, _m, members, sid) = group(Net::perfect(33), 2);
    let (a, b) = (members[0], members[1]);
    let token = net.ctx(a).provider.token_at(unix_now(&net)).unwrap();
    let mut m = msg_with_token(&net, a, b, sid, 5, &token);
    m.metadata.insert(keys::PUBLISH_TO.into(), "TRUE".into());
    net.inject(b, m);
    assert_eq!(net.session(b, sid).counters().out_of_range, 1);
    assert!(net.messages(b, sid).is_empty());
}

#[test]
fn truncated_and_incomplete_messages_are_dropped_without_panic() {
    use prost::Message as _;
    let (mut net, alice, bob, sid) = p2p(Net::perfect(34));
    let token = net.ctx(alice).provider.token_at(unix_now(&net)).unwrap();
    let good = msg_with_token(&net, alice, bob, sid, 1, &token);
    let mut broken = Vec::new();
    // No content at all, on a MSG and on control messages.
    for kind in [
        Kind::Msg,
        Kind::GroupWelcome,
        Kind::GroupAdd,
        Kind::RtxReply,
    ] {
        let mut m = good.clone();
        packet::set_kind(&mut m, kind);
        if let Some(wire::message::MessageType::Publish(p)) = &mut m.message_type {
            p.msg = None;
        }
        broken.push(m);
    }
    // No header, no session header, names missing a part, unknown enum values.
    let mut m = good.clone();
    if let Some(wire::message::MessageType::Publish(p)) = &mut m.message_type {
        p.header = None;
    }
    broken.push(m);
    let mut m = good.clone();
    if let Some(wire::message::MessageType::Publish(p)) = &mut m.message_type {
        p.header.as_mut().unwrap().source.as_mut().unwrap().str_name = None;
    }
    broken.push(m);
    let mut m = good.clone();
    if let Some(wire::message::MessageType::Publish(p)) = &mut m.message_type {
        p.session.as_mut().unwrap().session_message_type = 99;
    }
    broken.push(m);
    let mut m = good.clone();
    if let Some(wire::message::MessageType::Publish(p)) = &mut m.message_type {
        p.session.as_mut().unwrap().session_type = 7;
    }
    broken.push(m);
    broken.push(wire::Message::default());
    // Truncated bytes: whatever still decodes must be handled gracefully.
    let bytes = good.encode_to_vec();
    for cut in [1, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        if let Ok(m) = wire::Message::decode(&bytes[..cut]) {
            broken.push(m);
        }
    }
    for m in broken {
        net.inject(bob, m.clone());
        // Straight into the session too, bypassing the layer's routing.
        let now = net.now;
        net.session(bob, sid).handle_message(m, now);
    }
    let c = net.session(bob, sid).counters();
    assert!(c.malformed >= 6, "{c:?}");
    assert!(net.messages(bob, sid).is_empty());
    net.publish(alice, sid, b"still fine");
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.messages(bob, sid).len(), 1);
}

#[test]
fn group_join_request_without_channel_or_timer_settings_is_refused() {
    let mut net = Net::perfect(35);
    let m = net.add("org/ns/moderator");
    let p = net.add("org/ns/member");
    let ctx = net.ctx(m);
    let token = ctx.provider.token_at(unix_now(&net)).unwrap();
    let dst = net.name(p);
    for (channel, timers) in [(false, true), (true, false)] {
        let mut join = packet::Out {
            source: &ctx.app_name,
            destination: &dst,
            fanout: 1,
            session_type: wire::SessionType::Multicast,
            kind: Kind::JoinRequest,
            session_id: 99,
            message_id: 1,
            content: packet::command_content(Cmd::JoinRequest(wire::JoinRequestPayload {
                enable_mls: false,
                timer_settings: timers.then_some(wire::TimerSettings {
                    timeout: 1000,
                    max_retries: 10,
                }),
                channel: channel.then(|| "org/ns/chat".parse::<Name>().unwrap().to_wire()),
            })),
            metadata: HashMap::new(),
        }
        .build();
        packet::set_identity(&mut join, token.clone());
        net.inject(p, join);
    }
    assert!(!net.has_session(p, 99));
    assert_eq!(net.nodes[p].layer.counters().malformed, 2);
}

#[test]
fn duplicate_and_reordered_control_requests_are_answered_idempotently() {
    // Every link duplicates and reorders; handshakes still complete once.
    let (net, m, members, sid) = group(Net::new(36, 0.0, 0.5, Duration::from_millis(500)), 3);
    for &p in &members {
        let established = net.nodes[p]
            .events
            .iter()
            .filter(|(id, e)| *id == sid && *e == Event::Established)
            .count();
        assert_eq!(established, 1);
    }
    let joined = net
        .app_events(m, sid)
        .iter()
        .filter(|e| matches!(e, SessionEvent::MemberJoined(_)))
        .count();
    assert_eq!(joined, 3);
}

// ----- MLS seam -------------------------------------------------------------------------

/// What a test implementation of the MLS seam saw, per app.
#[derive(Default, Debug)]
struct CryptoLog {
    commits: Vec<Vec<u8>>,
    welcomes: Vec<Vec<u8>>,
    /// The `now` of every call that takes one.
    times: Vec<u64>,
}

/// A stand-in for the MLS group behind [`super::SessionCrypto`]: "encrypts"
/// by prefixing, numbers its commits, and records what it processes, so the
/// session's side of the contract (ordering, numbering, decrypt before ack)
/// can be checked before the openmls implementation exists.
struct TestCrypto {
    log: std::sync::Arc<std::sync::Mutex<CryptoLog>>,
    made: u32,
    /// Like MLS, a ciphertext can be decrypted only once.
    decrypted: std::collections::HashSet<Vec<u8>>,
}

impl super::SessionCrypto for TestCrypto {
    fn enabled(&self) -> bool {
        true
    }
    fn key_package(&mut self, now: u64) -> Result<Option<Vec<u8>>, super::CryptoError> {
        self.log.lock().unwrap().times.push(now);
        Ok(Some(b"kp".to_vec()))
    }
    fn create_group(&mut self, now: u64) -> Result<(), super::CryptoError> {
        self.log.lock().unwrap().times.push(now);
        Ok(())
    }
    fn add_member(
        &mut self,
        _member: &Name,
        key_package: Option<&[u8]>,
        now: u64,
    ) -> Result<Option<super::AddOutput>, super::CryptoError> {
        self.log.lock().unwrap().times.push(now);
        if key_package != Some(b"kp".as_slice()) {
            return Err(super::CryptoError::BadInput("no key package".into()));
        }
        self.made += 1;
        Ok(Some(super::AddOutput {
            commit: format!("commit-{}", self.made).into_bytes(),
            welcome: format!("welcome-{}", self.made).into_bytes(),
        }))
    }
    fn add_members(
        &mut self,
        members: &[(Name, Option<Vec<u8>>)],
        now: u64,
    ) -> Result<Option<super::AddOutput>, super::CryptoError> {
        self.log.lock().unwrap().times.push(now);
        if members
            .iter()
            .any(|(_, kp)| kp.as_deref() != Some(b"kp".as_slice()))
        {
            return Err(super::CryptoError::BadInput("no key package".into()));
        }
        self.made += 1;
        Ok(Some(super::AddOutput {
            commit: format!("commit-{}", self.made).into_bytes(),
            welcome: format!("welcome-{}", self.made).into_bytes(),
        }))
    }
    fn remove_member(
        &mut self,
        _member: &Name,
        now: u64,
    ) -> Result<Option<Vec<u8>>, super::CryptoError> {
        self.log.lock().unwrap().times.push(now);
        self.made += 1;
        Ok(Some(format!("commit-{}", self.made).into_bytes()))
    }
    fn process_welcome(&mut self, welcome: &[u8], now: u64) -> Result<(), super::CryptoError> {
        self.log.lock().unwrap().times.push(now);
        self.log.lock().unwrap().welcomes.push(welcome.to_vec());
        Ok(())
    }
    fn process_commit(&mut self, commit: &[u8], now: u64) -> Result<(), super::CryptoError> {
        self.log.lock().unwrap().times.push(now);
        self.log.lock().unwrap().commits.push(commit.to_vec());
        Ok(())
    }
    fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, super::CryptoError> {
        Ok([b"enc:".as_slice(), plaintext].concat())
    }
    fn decrypt(&mut self, ciphertext: &[u8], now: u64) -> Result<Vec<u8>, super::CryptoError> {
        self.log.lock().unwrap().times.push(now);
        if !self.decrypted.insert(ciphertext.to_vec()) {
            return Err(super::CryptoError::Failed(
                "generation already consumed".into(),
            ));
        }
        ciphertext
            .strip_prefix(b"enc:".as_slice())
            .map(<[u8]>::to_vec)
            .ok_or_else(|| super::CryptoError::BadInput("not ours".into()))
    }
}

type Logs = Vec<std::sync::Arc<std::sync::Mutex<CryptoLog>>>;

/// A group with MLS on through [`TestCrypto`]; returns the per-node logs.
fn mls_group(mut net: Net, n: usize) -> (Net, usize, Vec<usize>, u32, Logs) {
    let m = net.add("org/ns/moderator");
    let members: Vec<usize> = (0..n)
        .map(|i| net.add(&format!("org/ns/member{i}")))
        .collect();
    let mut logs = Vec::new();
    for node in 0..net.nodes.len() {
        let log = std::sync::Arc::new(std::sync::Mutex::new(CryptoLog::default()));
        logs.push(log.clone());
        net.nodes[node]
            .layer
            .set_crypto(std::sync::Arc::new(move |_, _| {
                Ok(Box::new(TestCrypto {
                    log: log.clone(),
                    made: 0,
                    decrypted: Default::default(),
                }) as Box<dyn super::SessionCrypto>)
            }));
    }
    let config = SessionConfig {
        mls: true,
        ..group_config()
    };
    let (sid, _) = net.create(m, config, &"org/ns/chat".parse().unwrap());
    let jobs: Vec<_> = (0..n)
        .map(|i| {
            let who: Name = format!("org/ns/member{i}").parse().unwrap();
            net.with(m, sid, |s, now| s.invite(&who, now)).unwrap()
        })
        .collect();
    assert!(net.run_until(LIMIT, |net| {
        jobs.iter().all(|j| net.job_result(m, *j).is_some())
    }));
    for j in &jobs {
        assert_eq!(net.job_result(m, *j), Some(Ok(())));
    }
    (net, m, members, sid, logs)
}

#[test]
fn crypto_is_handed_the_sessions_virtual_time_and_never_reads_a_clock() {
    let (mut net, m, members, sid, logs) = mls_group(lossy(41), 2);
    net.publish(members[0], sid, b"timed");
    assert!(net.run_until(LIMIT, |n| {
        members
            .iter()
            .chain([&m])
            .filter(|&&r| r != members[0])
            .all(|&r| !n.messages(r, sid).is_empty())
    }));
    let end = net.clock.unix(net.now);
    // The virtual wall time starts far from the system clock's.
    let start = super::testnet::UNIX_BASE;
    for (node, log) in logs.iter().enumerate() {
        let times = std::mem::take(&mut log.lock().unwrap().times);
        assert!(!times.is_empty(), "node {node} made no timed call");
        assert!(
            times.iter().all(|t| (start..=end).contains(t)),
            "node {node}: {times:?} outside {start}..={end}"
        );
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "node {node}: time went back"
        );
    }
}

#[test]
fn mls_commits_are_numbered_from_one_and_applied_in_order_under_loss() {
    let (mut net, m, members, sid, logs) = mls_group(lossy(40), 3);
    let adds: Vec<u32> = net
        .trace
        .iter()
        .filter(|t| t.kind == Kind::GroupAdd)
        .filter_map(|t| match command_of(t) {
            Some(Cmd::GroupAdd(a)) => a.mls.map(|m| m.commit_id),
            _ => None,
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(adds, vec![2, 3], "no GROUP_ADD for the first member");
    for (k, &p) in members.iter().enumerate() {
        let log = logs[p].lock().unwrap();
        let k = k + 1;
        assert_eq!(
            log.welcomes,
            vec![format!("welcome-{k}").into_bytes()],
            "welcome carries its add's commit"
        );
        let want: Vec<Vec<u8>> = (k + 1..=3)
            .map(|c| format!("commit-{c}").into_bytes())
            .collect();
        assert_eq!(
            log.commits, want,
            "member {k} applies later commits once, in order"
        );
    }
    net.publish(m, sid, b"secret");
    assert!(net.run_until(LIMIT, |n| {
        members.iter().all(|&p| n.messages(p, sid).len() == 1)
    }));
    for &p in &members {
        assert_eq!(net.payloads_from(p, sid, m), vec![b"secret".to_vec()]);
    }
    assert!(net.trace.iter().filter(|t| t.kind == Kind::Msg).all(|t| {
        Inbound::parse(t.msg.clone())
            .unwrap()
            .app_payload()
            .unwrap()
            .blob
            .starts_with(b"enc:")
    }));
    // A remove is one more commit, with the next number.
    let who = net.name(members[2]);
    let job = net.with(m, sid, |s, now| s.remove(&who, now)).unwrap();
    assert!(net.run_until(LIMIT, |n| n.job_result(m, job).is_some()));
    let remove = net
        .trace
        .iter()
        .find(|t| t.kind == Kind::GroupRemove)
        .unwrap();
    let Some(Cmd::GroupRemove(r)) = command_of(remove) else {
        panic!()
    };
    assert_eq!(r.mls.unwrap().commit_id, 4);
    assert!(
        net.run_until(LIMIT, |_| logs[members[0]].lock().unwrap().commits.len()
            == 3)
    );
}

#[test]
fn early_commits_wait_for_their_turn_and_duplicates_are_acked_not_reapplied() {
    let (mut net, m, members, sid, logs) = mls_group(Net::perfect(41), 1);
    let p = members[0];
    let ctx = net.ctx(m);
    let now = net.now;
    let mk = |commit_id: u32, mid: u32| {
        let newcomer = Name::new("org", "ns", "late").with_id(commit_id.into());
        let mut msg = packet::Out {
            source: &ctx.app_name,
            destination: &"org/ns/chat".parse().unwrap(),
            fanout: 256,
            session_type: wire::SessionType::Multicast,
            kind: Kind::GroupAdd,
            session_id: sid,
            message_id: mid,
            content: packet::command_content(Cmd::GroupAdd(wire::GroupAddPayload {
                new_participant: Some(newcomer.to_wire()),
                participants: vec![],
                mls: Some(wire::MlsPayload {
                    commit_id,
                    mls_content: format!("injected-{commit_id}").into_bytes(),
                }),
            })),
            metadata: HashMap::new(),
        }
        .build();
        packet::set_identity(
            &mut msg,
            ctx.provider.token_at(ctx.clock.unix(now)).unwrap(),
        );
        msg
    };
    let acks = |net: &Net, mid: u32| {
        net.trace
            .iter()
            .filter(|t| t.kind == Kind::GroupAck && t.from == p && t.message_id == mid)
            .count()
    };
    net.inject(p, mk(3, 903));
    assert!(
        logs[p].lock().unwrap().commits.is_empty(),
        "commit 3 waits for 2"
    );
    assert_eq!(acks(&net, 903), 0);
    net.inject(p, mk(2, 902));
    assert_eq!(
        logs[p].lock().unwrap().commits,
        vec![b"injected-2".to_vec(), b"injected-3".to_vec()]
    );
    assert_eq!((acks(&net, 902), acks(&net, 903)), (1, 1));
    net.inject(p, mk(2, 902));
    assert_eq!(
        logs[p].lock().unwrap().commits.len(),
        2,
        "not applied twice"
    );
    assert_eq!(acks(&net, 902), 2, "but acknowledged again");
    assert_eq!(net.session(p, sid).members().len(), 4);
}

#[test]
fn undecryptable_msg_is_dropped_without_an_ack() {
    let (mut net, m, members, sid, _logs) = mls_group(Net::perfect(42), 1);
    let p = members[0];
    let ctx = net.ctx(m);
    let token = ctx.provider.token_at(ctx.clock.unix(net.now)).unwrap();
    let mut msg = msg_with_token(&net, m, p, sid, 1, &token);
    if let Some(wire::message::MessageType::Publish(pb)) = &mut msg.message_type {
        pb.session.as_mut().unwrap().session_type = wire::SessionType::Multicast as i32;
    }
    net.inject(p, msg);
    assert_eq!(net.session(p, sid).counters().decrypt_failed, 1);
    assert!(
        !net.trace
            .iter()
            .any(|t| t.kind == Kind::MsgAck && t.from == p)
    );
    assert!(net.messages(p, sid).is_empty());
}

#[test]
fn duplicate_msg_is_acked_again_without_being_decrypted_twice() {
    let (mut net, m, members, sid, _logs) = mls_group(Net::perfect(43), 1);
    let p = members[0];
    net.publish(m, sid, b"once");
    net.run_for(Duration::from_secs(1));
    let original = net
        .trace
        .iter()
        .find(|t| t.kind == Kind::Msg && t.from == m)
        .unwrap()
        .msg
        .clone();
    let acks = |net: &Net| net.sent(p, Kind::MsgAck);
    let before = acks(&net);
    net.inject(p, original);
    // The ack is held for at most ACK_DELAY (nothing else goes out).
    net.run_for(ACK_DELAY);
    assert_eq!(acks(&net), before + 1);
    assert_eq!(net.session(p, sid).counters().decrypt_failed, 0);
    assert_eq!(net.messages(p, sid).len(), 1);
}

#[test]
fn mls_group_traffic_under_loss_never_decrypts_a_ciphertext_twice() {
    let (mut net, m, members, sid, _logs) = mls_group(lossy(44), 3);
    let all: Vec<usize> = std::iter::once(m).chain(members.iter().copied()).collect();
    for i in 0..30u8 {
        for &n in &all {
            net.publish(n, sid, &[n as u8, i]);
        }
        net.run_for(Duration::from_millis(40));
    }
    assert!(net.run_until(LIMIT, |n| {
        all.iter().all(|&r| n.messages(r, sid).len() >= 90)
    }));
    net.run_for(Duration::from_secs(30));
    for &r in &all {
        for &s in &all {
            if r != s {
                let want: Vec<Vec<u8>> = (0..30u8).map(|i| vec![s as u8, i]).collect();
                assert_eq!(net.payloads_from(r, sid, s), want);
            }
        }
        let c = net.session(r, sid).counters();
        assert_eq!(c.decrypt_failed, 0, "node {r}");
        assert!(!net.session(r, sid).has_unacked(), "node {r}");
    }
}

#[test]
fn a_member_is_routed_back_over_the_link_its_messages_arrive_on_and_answers_keep_publish_to() {
    let (mut net, _m, members, sid) = group(Net::perfect(35), 2);
    let (a, b) = (members[0], members[1]);
    let (name_a, name_b) = (net.name(a), net.name(b));
    net.publish(a, sid, b"question");
    net.run_for(Duration::from_secs(2));
    // b learned where a's messages come from, so b's answer can reach a
    // without any route set by the app (as official participants answer).
    assert!(
        net.has_event(b, sid, |e| matches!(
            e,
            Event::Route { name, conn } if *name == name_a && *conn == a as u64
        )),
        "no route back to the sender was learned"
    );
    net.with(b, sid, |s, now| {
        s.publish_to(&name_a, b"answer".to_vec(), HashMap::new(), now)
    })
    .unwrap();
    net.run_for(Duration::from_secs(2));
    let answers: Vec<_> = net
        .messages(a, sid)
        .into_iter()
        .filter(|m| m.source == name_b)
        .collect();
    assert_eq!(answers.len(), 1);
    // The app sees that it is an answer (the official apps do not answer
    // answers, and read this key to know).
    assert_eq!(
        answers[0]
            .metadata
            .get(keys::PUBLISH_TO)
            .map(String::as_str),
        Some("TRUE")
    );
    // A broadcast is not marked as an answer.
    assert!(
        net.messages(b, sid)
            .iter()
            .all(|m| !m.metadata.contains_key(keys::PUBLISH_TO))
    );
}

#[test]
fn a_participant_keeps_a_session_whose_moderator_sends_data_instead_of_pings() {
    // SLIM 3 moderators heartbeat only when they sent nothing else for an
    // interval; here the moderator never pings, but publishes every 5 s.
    let mut net = Net::perfect(36);
    let alice = net.add("org/ns/alice");
    let bob = net.add("org/ns/bob");
    let config = SessionConfig {
        ping_interval: Duration::from_secs(3600),
        ..plain()
    };
    let (sid, job) = net.create(alice, config, &"org/ns/bob".parse().unwrap());
    let job = job.expect("P2P sessions invite at once");
    assert!(net.run_until(LIMIT, |n| n.job_result(alice, job).is_some()));
    for i in 0..20u8 {
        net.publish(alice, sid, &[i]);
        net.run_for(Duration::from_secs(5));
    }
    assert!(
        !net.is_closed_event(bob, sid),
        "the participant gave up on a moderator that kept sending"
    );
    assert_eq!(net.messages(bob, sid).len(), 20);
    // Once it falls silent, it is noticed as before.
    let start = net.now;
    assert!(net.run_until(LIMIT, |n| n.is_closed_event(bob, sid)));
    assert!(net.now - start <= Duration::from_secs(31));
}
