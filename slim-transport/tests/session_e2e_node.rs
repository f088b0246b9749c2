//! The session end-to-end scenarios over loopback gRPC: every app lives in
//! its own `Service`, linked to a node (our forwarder behind `run_server`)
//! on 127.0.0.1, so every message crosses two real gRPC hops. MLS is on
//! (the default).

use std::collections::HashMap;
use std::time::Duration;

use slim_transport::Name;
use slim_transport::app::{App, Session, SessionConfig, SessionEvent, SessionKind};
use slim_transport::identity::SharedSecret;
use slim_transport::service::{ConnId, Service};

const SECRET: &str = "kjandjansdiasb8udaijdniasdaindasndasndasndasndasndasndasndas";
/// Liveness bound for every wait (generous: shared, loaded machine).
const LIVENESS: Duration = Duration::from_secs(60);

/// An app in its own process-like `Service`, linked to the node at `addr`,
/// with its own name subscribed on the node (as official apps do).
async fn linked_app(addr: std::net::SocketAddr, name: &str) -> (Service, App, ConnId) {
    let service = Service::new();
    let link = service
        .connect(&format!("http://{addr}"))
        .await
        .expect("connected to the node");
    tokio::time::timeout(LIVENESS, async {
        while service.peer_version(link).is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("link negotiated in time");
    let base: Name = name.parse().unwrap();
    let identity = SharedSecret::new(name, SECRET).unwrap();
    let app = tokio::time::timeout(LIVENESS, service.app(base, identity))
        .await
        .expect("app start in time")
        .expect("app started");
    app.subscribe(app.name(), Some(link))
        .await
        .expect("own name subscribed on the node");
    (service, app, link)
}

async fn listen(app: &App) -> Session {
    tokio::time::timeout(LIVENESS, app.listen_for_session())
        .await
        .expect("session in time")
        .expect("session accepted")
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_ping_pong_of_a_thousand_messages_through_a_node() {
    let node = Service::new();
    let addr = node
        .run_server("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (_sa, alice, link) = linked_app(addr, "org/ns/alice").await;
    let (_sb, bob, _) = linked_app(addr, "org/ns/bob").await;
    let bob_base: Name = "org/ns/bob".parse().unwrap();
    alice.set_route(&bob_base, link).await.unwrap();
    let (mut a, done) = alice
        .create_session(SessionConfig::default(), &bob_base)
        .await
        .unwrap();
    let mut b = listen(&bob).await;
    tokio::time::timeout(LIVENESS, done).await.unwrap().unwrap();
    assert_eq!(a.destination(), *bob.name());
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
    let _b = server.await.unwrap();
    a.close().await.unwrap();
    assert_eq!(alice.dropped_counters().rejected(), 0);
    assert_eq!(bob.dropped_counters().rejected(), 0);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_moderator_and_five_members_through_a_node_broadcasts_and_gets_unicast_replies() {
    let node = Service::new();
    let addr = node
        .run_server("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (_sm, moderator, link) = linked_app(addr, "org/ns/moderator").await;
    let mut members = Vec::new();
    for i in 0..5 {
        members.push(linked_app(addr, &format!("org/ns/member{i}")).await);
    }
    let channel: Name = "org/ns/node-chan".parse().unwrap();
    let config = SessionConfig {
        kind: SessionKind::Group,
        ..SessionConfig::default()
    };
    let (mut group, ready) = moderator.create_session(config, &channel).await.unwrap();
    ready.await.unwrap();
    let mut sessions = Vec::new();
    for (i, (_, member, _)) in members.iter().enumerate() {
        let base: Name = format!("org/ns/member{i}").parse().unwrap();
        moderator.set_route(&base, link).await.expect("route set");
        let joined = group.invite(&base).await.expect("invite queued");
        let s = listen(member).await;
        tokio::time::timeout(LIVENESS, joined)
            .await
            .expect("invite finished in time")
            .unwrap_or_else(|e| panic!("invite of member{i} failed: {e}"));
        sessions.push(s);
    }
    assert_eq!(group.members().len(), 6);

    group
        .publish(b"to all".to_vec(), HashMap::new())
        .await
        .unwrap();
    for (s, (_, member, _)) in sessions.iter_mut().zip(&members) {
        let (source, payload) = next_message(s).await;
        assert_eq!((&source, payload), (moderator.name(), b"to all".to_vec()));
        s.publish_unicast(
            moderator.name(),
            format!("reply from {}", member.name()).into_bytes(),
            HashMap::new(),
        )
        .await
        .unwrap();
    }
    let mut replies = Vec::new();
    for _ in 0..5 {
        let (source, payload) = next_message(&mut group).await;
        assert_eq!(payload, format!("reply from {source}").into_bytes());
        replies.push(source);
    }
    replies.sort();
    let mut expected: Vec<Name> = members.iter().map(|(_, m, _)| m.name().clone()).collect();
    expected.sort();
    assert_eq!(replies, expected, "one unicast reply from every member");
    tokio::time::timeout(LIVENESS, group.close())
        .await
        .expect("closed in time")
        .expect("closed");
    node.shutdown().await;
}
