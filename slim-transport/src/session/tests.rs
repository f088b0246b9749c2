//! Behaviour of the session state machines on the simulated network of
//! `testnet`: handshakes, exactly-once in-order delivery under 20 % loss,
//! duplication and reordering, loss reporting, liveness, membership changes
//! and bad input. Deterministic: seeded randomness, virtual clock.

use std::collections::HashMap;
use std::time::Duration;

use crate::Name;
use crate::wire::{self, SessionMessageType as Kind, command_payload::CommandPayloadType as Cmd};

use super::packet::{self, Inbound, MAX_PUBLISH_ID, keys};
use super::testnet::Net;
use super::{Event, SessionConfig, SessionEvent, SessionKind};

const LIMIT: Duration = Duration::from_secs(600);

fn lossy(seed: u64) -> Net {
    Net::new(seed, 0.2, 0.2, Duration::from_millis(300))
}

fn group_config() -> SessionConfig {
    SessionConfig {
        kind: SessionKind::Group,
        ..SessionConfig::default()
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
    let (sid, job) = net.create(
        alice,
        SessionConfig::default(),
        &"org/ns/bob".parse().unwrap(),
    );
    let job = job.expect("P2P sessions invite at once");
    assert!(net.run_until(LIMIT, |n| n.job_result(alice, job).is_some()));
    assert_eq!(net.job_result(alice, job), Some(Ok(())));
    assert!(net.run_until(LIMIT, |n| {
        n.has_event(bob, sid, |e| *e == Event::Established)
    }));
    (net, alice, bob, sid)
}

/// A moderator and `n` members, every invite completed.
fn group(mut net: Net, n: usize) -> (Net, usize, Vec<usize>, u32) {
    let m = net.add("org/ns/moderator");
    let members: Vec<usize> = (0..n)
        .map(|i| net.add(&format!("org/ns/member{i}")))
        .collect();
    let channel: Name = "org/ns/chat".parse().unwrap();
    let (sid, job) = net.create(m, group_config(), &channel);
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
    let (sid, job) = net.create(
        alice,
        SessionConfig::default(),
        &"org/ns/bob".parse().unwrap(),
    );
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
        ..SessionConfig::default()
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
    let (sid, _) = net.create(
        alice,
        SessionConfig::default(),
        &"org/ns/bob".parse().unwrap(),
    );
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
    let expect = |i: u8| {
        SessionEvent::Message(super::ReceivedMessage {
            source: alice_name.clone(),
            payload: vec![i],
            metadata: HashMap::new(),
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
    // Bob's RTX_REQUEST counted as his ack (v1.3): the sender did not fail.
    assert!(!net.has_event(alice, sid, |e| matches!(e, Event::PublishFailed { .. })));
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
    let (sid, job) = net.create(
        alice,
        SessionConfig::default(),
        &"org/ns/nobody".parse().unwrap(),
    );
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
