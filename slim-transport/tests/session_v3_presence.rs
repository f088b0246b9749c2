//! Soft close and rejoin in SLIM v3 groups (MLS on), between our own apps:
//! a soft-closed member is skipped by the group without leaving it, cannot
//! publish, and comes back either at once (the group did not change) or,
//! when the group moved on to a new MLS epoch meanwhile, through a rejoin
//! request the moderator answers with a fresh welcome. The official peers
//! are exercised in `examples/tests/slim_group_presence.rs`.

mod session_common;

use std::collections::HashMap;

use session_common::{LIVENESS, SECRET, app_v3, joined, next_payload};
use slim_transport::app::{App, Session, SessionConfig, SessionError, SessionKind};
use slim_transport::identity::SharedSecret;
use slim_transport::service::Service;

fn group_mls() -> SessionConfig {
    SessionConfig {
        kind: SessionKind::Group,
        mls: true,
        ..SessionConfig::default()
    }
}

struct Group {
    service: Service,
    moderator: Session,
    members: Vec<Session>,
    _apps: Vec<App>,
}

/// Our moderator and `n` of our participants in one v3 group.
async fn group(n: usize) -> Group {
    let service = Service::new();
    let m = app_v3(&service, "org/ns/pmod", None).await;
    let (moderator, ready) = m
        .create_session(group_mls(), &"org/ns/presence-chat".parse().unwrap())
        .await
        .expect("group");
    ready.await.expect("ready");
    let mut apps = vec![m];
    let mut members = Vec::new();
    for i in 0..n {
        let (member, session) = join(&service, &moderator, &format!("org/ns/p{i}")).await;
        apps.push(member);
        members.push(session);
    }
    Group {
        service,
        moderator,
        members,
        _apps: apps,
    }
}

async fn join(service: &Service, moderator: &Session, name: &str) -> (App, Session) {
    let app = app_v3(service, name, None).await;
    let session = joined(moderator, &app).await;
    (app, session)
}

async fn in_time<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIVENESS, f).await.expect("in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_closed_member_cannot_publish_is_skipped_and_rejoins_at_the_same_epoch() {
    let mut g = group(2).await;
    in_time(g.members[0].soft_close())
        .await
        .expect("soft close acknowledged by the group");
    let refused = g.members[0].publish(b"x".to_vec(), HashMap::new()).await;
    assert!(
        matches!(refused, Err(SessionError::Offline)),
        "a soft-closed member published: {refused:?}"
    );
    // The group goes on without it: the other member gets the moderator's
    // messages and the moderator gets the other member's.
    g.moderator
        .publish(b"while-away".to_vec(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(next_payload(&mut g.members[1]).await, b"while-away");
    g.members[1]
        .publish(b"from-p1".to_vec(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(next_payload(&mut g.moderator).await, b"from-p1");

    in_time(g.members[0].rejoin()).await.expect("back online");
    g.members[0]
        .publish(b"back".to_vec(), HashMap::new())
        .await
        .expect("publishes again");
    assert_eq!(next_payload(&mut g.moderator).await, b"back");
    assert_eq!(next_payload(&mut g.members[1]).await, b"back");
    g.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_back_after_the_group_moved_on_is_readmitted_by_the_moderator() {
    let mut g = group(2).await;
    in_time(g.members[0].soft_close())
        .await
        .expect("soft close");
    // A new member joins while p0 is away: the group's MLS epoch moves on,
    // so p0's ONLINE update is NACKed and it asks the moderator to re-admit
    // it (a new leaf, a new welcome).
    let (_p2_app, mut p2) = join(&g.service, &g.moderator, "org/ns/p2").await;
    in_time(g.members[0].rejoin())
        .await
        .expect("re-admitted by the moderator");
    assert!(
        g.members[0]
            .members()
            .iter()
            .any(|m| m.to_string().starts_with("org/ns/p2/")),
        "the rejoined member does not list the member added while it was away: {:?}",
        g.members[0].members()
    );
    // Everybody reads everybody in the new epoch.
    g.moderator
        .publish(b"after-rejoin".to_vec(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(next_payload(&mut g.members[0]).await, b"after-rejoin");
    assert_eq!(next_payload(&mut g.members[1]).await, b"after-rejoin");
    assert_eq!(next_payload(&mut p2).await, b"after-rejoin");
    g.members[0]
        .publish(b"p0-again".to_vec(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(next_payload(&mut g.moderator).await, b"p0-again");
    assert_eq!(next_payload(&mut g.members[1]).await, b"p0-again");
    assert_eq!(next_payload(&mut p2).await, b"p0-again");
    g.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_close_is_refused_with_its_reason_for_a_moderator_and_on_v1() {
    let g = group(1).await;
    let err = g
        .moderator
        .soft_close()
        .await
        .expect_err("moderator refused");
    assert!(err.to_string().contains("moderator"), "{err}");
    let rejoin = g.members[0].rejoin().await.expect_err("not soft-closed");
    assert!(rejoin.to_string().contains("soft-closed"), "{rejoin}");
    g.service.shutdown().await;

    let service = Service::new();
    let identity = SharedSecret::new("org/ns/v1mod", SECRET).unwrap();
    let v1 = service
        .app("org/ns/v1mod".parse().unwrap(), identity)
        .await
        .expect("app");
    let (p2p, _) = v1
        .create_session(
            SessionConfig {
                kind: SessionKind::Group,
                ..SessionConfig::default()
            },
            &"org/ns/v1-chat".parse().unwrap(),
        )
        .await
        .expect("group");
    let err = p2p.soft_close().await.expect_err("v1 refused");
    assert!(err.to_string().contains("SLIM v3"), "{err}");
    service.shutdown().await;
}
