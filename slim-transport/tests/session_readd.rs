//! A member removed from a group can be invited back into the same live
//! session at once, on both wire generations: its old side of the session
//! (closed, lingering to answer a repeated LEAVE_REQUEST) gives way to the
//! new invitation, the others forget its old message sequence, and
//! messages flow both ways again.

mod session_common;

use std::collections::HashMap;

use session_common::{LIVENESS, app, app_v3, created, joined, next_payload};
use slim_transport::Name;
use slim_transport::app::{SessionConfig, SessionKind};
use slim_transport::service::Service;

async fn remove_and_add_back(v3: bool) {
    let service = Service::new();
    let start = |name: &'static str| {
        let service = &service;
        async move {
            if v3 {
                app_v3(service, name, None).await
            } else {
                let a = app(service, name).await;
                a.subscribe(a.name(), None).await.expect("subscribed");
                a
            }
        }
    };
    let m = start("org/ns/rmod").await;
    let p = start("org/ns/rp").await;
    let q = start("org/ns/rq").await;
    let config = SessionConfig {
        kind: SessionKind::Group,
        mls: true,
        ..SessionConfig::default()
    };
    let mut group = created(&m, &"org/ns/readd-chat".parse().unwrap(), config).await;
    let p_first = joined(&group, &p).await;
    let mut q_session = joined(&group, &q).await;
    // p's first session leaves a sequence behind at the others.
    p_first
        .publish(b"before".to_vec(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(next_payload(&mut group).await, b"before");
    assert_eq!(next_payload(&mut q_session).await, b"before");

    let p_base: Name = "org/ns/rp".parse().unwrap();
    tokio::time::timeout(LIVENESS, group.remove(&p_base))
        .await
        .expect("removed in time")
        .expect("removed");
    // At once, while p's old side of the session still lingers.
    let mut p_again = joined(&group, &p).await;
    group
        .publish(b"welcome back".to_vec(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(next_payload(&mut p_again).await, b"welcome back");
    assert_eq!(next_payload(&mut q_session).await, b"welcome back");
    p_again
        .publish(b"glad to be back".to_vec(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(next_payload(&mut group).await, b"glad to be back");
    assert_eq!(next_payload(&mut q_session).await, b"glad to be back");
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_is_added_back_into_the_live_v1_session_at_once() {
    remove_and_add_back(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_is_added_back_into_the_live_v3_session_at_once() {
    remove_and_add_back(true).await;
}
