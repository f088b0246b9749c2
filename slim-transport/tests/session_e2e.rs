//! End-to-end sessions through the real in-process data plane: apps on one
//! `Service`, each with its own local connection, talking SLIM v1.3
//! sessions through the forwarder.

mod session_common;

use std::collections::HashMap;
use std::time::Duration;

use session_common::{LIVENESS, app};
use slim_transport::Name;
use slim_transport::app::{App, Session, SessionConfig, SessionEvent, SessionKind};
use slim_transport::service::Service;

async fn next_message(s: &mut Session) -> (Name, Vec<u8>) {
    loop {
        let e = tokio::time::timeout(LIVENESS, s.recv())
            .await
            .expect("event in time")
            .expect("session open");
        if let SessionEvent::Message(m) = e {
            return (m.source, m.payload);
        }
    }
}

async fn until_closed(s: &mut Session) -> String {
    loop {
        match tokio::time::timeout(LIVENESS, s.recv())
            .await
            .expect("event in time")
        {
            Ok(SessionEvent::Closed { reason }) => return reason,
            Ok(_) => {}
            Err(_) => return "event stream ended".into(),
        }
    }
}

async fn listen(app: &App) -> Session {
    tokio::time::timeout(LIVENESS, app.listen_for_session())
        .await
        .expect("session in time")
        .expect("session accepted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_ping_pong_of_a_thousand_messages() {
    let service = Service::new();
    let alice = app(&service, "org/ns/alice").await;
    let bob = app(&service, "org/ns/bob").await;
    let (mut a, done) = alice
        .create_session(SessionConfig::default(), &"org/ns/bob".parse().unwrap())
        .await
        .unwrap();
    let mut b = listen(&bob).await;
    tokio::time::timeout(LIVENESS, done).await.unwrap().unwrap();
    assert_eq!(
        a.destination(),
        *bob.name(),
        "sticks to the instance that answered"
    );
    assert_eq!(b.destination(), *alice.name());
    let server = tokio::spawn(async move {
        for _ in 0..1000 {
            let (_, p) = next_message(&mut b).await;
            let mut reply = b"pong ".to_vec();
            reply.extend_from_slice(&p[5..]);
            b.publish(reply, HashMap::new()).await.unwrap();
        }
        b
    });
    for i in 0..1000 {
        a.publish(format!("ping {i}").into_bytes(), HashMap::new())
            .await
            .unwrap();
        let (src, p) = next_message(&mut a).await;
        assert_eq!(src, *bob.name());
        assert_eq!(p, format!("pong {i}").into_bytes());
    }
    let mut b = server.await.unwrap();
    a.close().await.unwrap();
    assert!(a.is_closed());
    until_closed(&mut b).await;
    assert_eq!(alice.dropped_counters().rejected(), 0);
    assert_eq!(bob.dropped_counters().rejected(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_moderator_and_five_members_broadcasts_replies_removes_and_closes() {
    let service = Service::new();
    let moderator = app(&service, "org/ns/moderator").await;
    let mut members = Vec::new();
    for i in 0..5 {
        members.push(app(&service, &format!("org/ns/member{i}")).await);
    }
    let channel: Name = "org/ns/chat".parse().unwrap();
    let config = SessionConfig {
        kind: SessionKind::Group,
        ..SessionConfig::default()
    };
    let (mut m, ready) = moderator.create_session(config, &channel).await.unwrap();
    ready.await.unwrap();
    let mut sessions = Vec::new();
    for (i, app) in members.iter().enumerate() {
        let joined = m
            .invite(&format!("org/ns/member{i}").parse().unwrap())
            .await
            .unwrap();
        let s = listen(app).await;
        tokio::time::timeout(LIVENESS, joined)
            .await
            .unwrap()
            .unwrap();
        sessions.push(s);
    }
    assert_eq!(m.members().len(), 6);

    // Broadcast from the moderator; every member answers the moderator only.
    m.publish(b"question".to_vec(), HashMap::new())
        .await
        .unwrap();
    for (i, s) in sessions.iter_mut().enumerate() {
        let (src, p) = next_message(s).await;
        assert_eq!((src, p), (moderator.name().clone(), b"question".to_vec()));
        s.publish_unicast(
            moderator.name(),
            format!("answer {i}").into_bytes(),
            HashMap::new(),
        )
        .await
        .unwrap();
    }
    let mut answers = Vec::new();
    while answers.len() < 5 {
        let (_, p) = next_message(&mut m).await;
        answers.push(String::from_utf8(p).unwrap());
    }
    answers.sort();
    assert_eq!(
        answers,
        (0..5).map(|i| format!("answer {i}")).collect::<Vec<_>>()
    );

    // A member's broadcast reaches everyone else, in order.
    for k in 0..20 {
        sessions[0]
            .publish(format!("chat {k}").into_bytes(), HashMap::new())
            .await
            .unwrap();
    }
    for s in sessions.iter_mut().skip(1) {
        for k in 0..20 {
            let (src, p) = next_message(s).await;
            assert_eq!(src, *members[0].name());
            assert_eq!(p, format!("chat {k}").into_bytes());
        }
    }
    for k in 0..20 {
        let (_, p) = next_message(&mut m).await;
        assert_eq!(p, format!("chat {k}").into_bytes());
    }

    // Remove member 4: it is closed and hears nothing more.
    m.remove(members[4].name()).await.unwrap();
    let mut removed = sessions.pop().unwrap();
    let reason = until_closed(&mut removed).await;
    assert!(reason.contains("removed"), "{reason}");
    assert_eq!(m.members().len(), 5);
    m.publish(b"after removal".to_vec(), HashMap::new())
        .await
        .unwrap();
    for s in sessions.iter_mut() {
        assert_eq!(next_message(s).await.1, b"after removal".to_vec());
    }
    assert!(removed.recv().await.is_err(), "nothing after the close");

    // Close reaches every remaining member.
    m.close().await.unwrap();
    for s in sessions.iter_mut() {
        until_closed(s).await;
        assert!(s.is_closed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_edges_subscriptions_failed_invites_and_commands_after_close() {
    let service = Service::new();
    let alice = app(&service, "org/ns/alice").await;
    let extra: Name = "org/ns/alias".parse().unwrap();
    alice.subscribe(&extra, None).await.unwrap();
    alice.unsubscribe(&extra, None).await.unwrap();
    alice
        .set_route(&"org/ns/elsewhere".parse().unwrap(), alice.conn_id())
        .await
        .unwrap();

    // An invite nobody answers fails (short timers keep the test quick).
    let quick = SessionConfig {
        kind: SessionKind::Group,
        interval: Some(Duration::from_millis(50)),
        max_retries: Some(2),
        ..SessionConfig::default()
    };
    let (g, _) = alice
        .create_session(quick.clone(), &"org/ns/room".parse().unwrap())
        .await
        .unwrap();
    let invite = g.invite(&"org/ns/nobody".parse().unwrap()).await.unwrap();
    let r = tokio::time::timeout(LIVENESS, invite).await.unwrap();
    assert!(r.is_err(), "{r:?}");
    assert!(g.remove(&"org/ns/nobody".parse().unwrap()).await.is_err());

    // A P2P session to nobody: its completion fails and the session closes.
    let p2p = SessionConfig {
        kind: SessionKind::PointToPoint,
        ..quick
    };
    let (mut s, done) = alice
        .create_session(p2p, &"org/ns/nobody".parse().unwrap())
        .await
        .unwrap();
    assert!(tokio::time::timeout(LIVENESS, done).await.unwrap().is_err());
    let reason = until_closed(&mut s).await;
    assert!(reason.contains("not reachable"), "{reason}");
    assert!(s.publish(b"x".to_vec(), HashMap::new()).await.is_err());
    assert!(s.recv().await.is_err(), "event stream ends after Closed");
    s.close().await.unwrap();
    g.close().await.unwrap();
    assert!(g.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_with_a_sink_hands_over_every_event_in_order_and_closed_last() {
    let service = Service::new();
    let alice = app(&service, "org/ns/alice-sink").await;
    let bob = app(&service, "org/ns/bob-sink").await;
    // Alice's events go to a sink (no event queue), Bob's to his queue.
    let (tx, mut from_sink) = tokio::sync::mpsc::unbounded_channel();
    let (a, done) = alice
        .create_session_with_sink(
            SessionConfig::default(),
            &"org/ns/bob-sink".parse().unwrap(),
            Box::new(move |e| {
                let _ = tx.send(e);
            }),
            None,
        )
        .await
        .unwrap();
    let mut b = listen(&bob).await;
    tokio::time::timeout(LIVENESS, done).await.unwrap().unwrap();
    a.publish(b"hello".to_vec(), HashMap::new()).await.unwrap();
    let (src, p) = next_message(&mut b).await;
    assert_eq!((src, p), (alice.name().clone(), b"hello".to_vec()));
    for i in 0..100 {
        b.publish(format!("b {i}").into_bytes(), HashMap::new())
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 100 {
        let e = tokio::time::timeout(LIVENESS, from_sink.recv())
            .await
            .expect("event in time")
            .expect("sink open");
        if let SessionEvent::Message(m) = e {
            got.push(String::from_utf8(m.payload).unwrap());
        }
    }
    let want: Vec<String> = (0..100).map(|i| format!("b {i}")).collect();
    assert_eq!(got, want, "every message, in order");
    // The sink sees `Closed` last, then is dropped.
    a.close().await.unwrap();
    let mut closed = false;
    while let Some(e) = tokio::time::timeout(LIVENESS, from_sink.recv())
        .await
        .expect("the sink is dropped in time")
    {
        assert!(!closed, "nothing after Closed: {e:?}");
        closed |= matches!(e, SessionEvent::Closed { .. });
    }
    assert!(closed);
}
