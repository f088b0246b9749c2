//! Regression tests for transport bugs found by the SlimRPC runtime: each
//! test reproduces the scenario that failed, with real `Service`s (in-process
//! and, across nodes, real gRPC links on 127.0.0.1).

use std::collections::HashMap;
use std::time::Duration;

use slim_transport::Name;
use slim_transport::app::{App, Session, SessionConfig, SessionEvent, SessionKind};
use slim_transport::identity::SharedSecret;
use slim_transport::service::Service;

const SECRET: &str = "kjandjansdiasb8udaijdniasdaindasndasndasndasndasndasndasndas";
/// Liveness bound for every wait (generous: shared, loaded machine).
const LIVENESS: Duration = Duration::from_secs(60);

async fn app(service: &Service, name: &str) -> App {
    let base: Name = name.parse().unwrap();
    let identity = SharedSecret::new(name, SECRET).unwrap();
    tokio::time::timeout(LIVENESS, service.app(base, identity))
        .await
        .expect("app start in time")
        .expect("app started")
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

/// Bug 1: on a multi-threaded runtime, P2P session creation right after
/// both apps started intermittently failed with "discovery timed out".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_session_created_right_after_app_start_on_multi_thread_runtime() {
    for round in 0..30 {
        let service = Service::new();
        let server = app(&service, &format!("org/ns/server{round}")).await;
        let client = app(&service, &format!("org/ns/client{round}")).await;
        let peer: Name = format!("org/ns/server{round}").parse().unwrap();
        let (session, done) = client
            .create_session(SessionConfig::default(), &peer)
            .await
            .expect("session created");
        tokio::time::timeout(LIVENESS, done)
            .await
            .expect("handshake in time")
            .unwrap_or_else(|e| panic!("round {round}: handshake failed: {e}"));
        let mut accepted = listen(&server).await;
        session
            .publish(b"ping".to_vec(), HashMap::new())
            .await
            .expect("published");
        let (source, payload) = next_message(&mut accepted).await;
        assert_eq!(payload, b"ping");
        assert_eq!(&source, client.name());
        service.shutdown().await;
    }
}

/// Waits until the link `conn` of `node` negotiated its peer's version.
async fn negotiated(node: &Service, conn: u64) {
    tokio::time::timeout(LIVENESS, async {
        while node.peer_version(conn).is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("link negotiated in time");
}

/// A node serving on 127.0.0.1 and a second `Service` linked to it; returns
/// both and the link's id on the second.
async fn linked_pair() -> (Service, Service, u64) {
    let node = Service::new();
    let addr = node
        .run_server("127.0.0.1:0".parse().unwrap())
        .await
        .expect("server");
    let other = Service::new();
    let link = other
        .connect(&format!("http://{addr}"))
        .await
        .expect("connected");
    negotiated(&other, link).await;
    (node, other, link)
}

/// Bug 2: a group moderator on node A inviting members that live on node B
/// (A linked to B, one `set_route` per member) failed the second invite with
/// a welcome timeout: the GROUP_ADD sent to the channel never crossed the
/// link. Every member must join, and broadcasts must flow both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_moderator_behind_a_link_invites_several_remote_members() {
    let (node_b, node_a, link) = linked_pair().await;

    let moderator = app(&node_a, "org/ns/moderator").await;
    let mut members = Vec::new();
    for i in 0..3 {
        members.push(app(&node_b, &format!("org/ns/member{i}")).await);
    }
    let channel: Name = "org/ns/linked-chan".parse().unwrap();
    let config = SessionConfig {
        kind: SessionKind::Group,
        ..SessionConfig::default()
    };
    let (mut group, ready) = moderator.create_session(config, &channel).await.unwrap();
    ready.await.unwrap();
    let mut sessions = Vec::new();
    for (i, member) in members.iter().enumerate() {
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
    assert_eq!(group.members().len(), 4);

    group
        .publish(b"to all".to_vec(), HashMap::new())
        .await
        .unwrap();
    for s in sessions.iter_mut() {
        let (source, payload) = next_message(s).await;
        assert_eq!((&source, payload), (moderator.name(), b"to all".to_vec()));
    }
    // A member's broadcast reaches the moderator across the link and the
    // other members on its own node.
    sessions[0]
        .publish(b"from member0".to_vec(), HashMap::new())
        .await
        .unwrap();
    let (source, payload) = next_message(&mut group).await;
    assert_eq!(
        (&source, payload),
        (members[0].name(), b"from member0".to_vec())
    );
    for s in sessions.iter_mut().skip(1) {
        let (source, payload) = next_message(s).await;
        assert_eq!(
            (&source, payload),
            (members[0].name(), b"from member0".to_vec())
        );
    }
    tokio::time::timeout(LIVENESS, group.close())
        .await
        .expect("closed in time")
        .expect("closed");
    node_a.shutdown().await;
    node_b.shutdown().await;
}

/// The session driver used to hand out events and invite completions before
/// refreshing the member list, so `members()` read right after a completed
/// invite (or a `MemberLeft`) could still show the old list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_list_is_current_when_an_invite_completes_or_a_member_leaves() {
    let service = Service::new();
    let moderator = app(&service, "org/ns/moderator").await;
    let channel: Name = "org/ns/channel".parse().unwrap();
    let config = SessionConfig {
        kind: SessionKind::Group,
        mls: false,
        ..SessionConfig::default()
    };
    let (mut group, done) = moderator
        .create_session(config, &channel)
        .await
        .expect("group created");
    tokio::time::timeout(LIVENESS, done)
        .await
        .expect("group ready in time")
        .expect("group ready");
    let mut members = Vec::new();
    for i in 0..8 {
        let member = app(&service, &format!("org/ns/member{i}")).await;
        let invitee: Name = format!("org/ns/member{i}").parse().unwrap();
        let invited = group.invite(&invitee).await.expect("invite sent");
        tokio::time::timeout(LIVENESS, invited)
            .await
            .expect("invite in time")
            .expect("invite accepted");
        // Read immediately: no waiting, no retry.
        let now = group.members();
        assert!(
            now.contains(member.name()),
            "invite {i} completed but members() = {now:?}"
        );
        members.push(member);
    }
    let leaving = members.pop().expect("eight members");
    group.remove(leaving.name()).await.expect("removed");
    loop {
        let e = tokio::time::timeout(LIVENESS, group.recv())
            .await
            .expect("event in time")
            .expect("session open");
        if let SessionEvent::MemberLeft(name) = e {
            assert_eq!(&name, leaving.name());
            let now = group.members();
            assert!(
                !now.contains(leaving.name()),
                "MemberLeft delivered but members() = {now:?}"
            );
            break;
        }
    }
    service.shutdown().await;
}
