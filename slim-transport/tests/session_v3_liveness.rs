//! Liveness of a SLIM v3 group moderated by us, between our own apps: v3
//! members never answer a ping round (their heartbeats are one-way, under
//! ids of their own), so the moderator counts anything a member sends as a
//! sign of life. Before that, every v3 group of ours lost all its members
//! after three ping rounds, idle or busy.

mod session_common;

use std::collections::HashMap;
use std::time::Duration;

use session_common::{LIVENESS, app_v3, created, joined};
use slim_transport::app::{SessionConfig, SessionKind};
use slim_transport::service::Service;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v3_group_keeps_its_members_over_many_ping_rounds_idle_and_busy() {
    let service = Service::new();
    let m = app_v3(&service, "org/ns/live-mod", None).await;
    let config = SessionConfig {
        kind: SessionKind::Group,
        mls: true,
        // Three missed rounds would be 600 ms.
        ping_interval: Duration::from_millis(200),
        ..SessionConfig::default()
    };
    let mut moderator = created(&m, &"org/ns/live-group".parse().unwrap(), config).await;
    let p = app_v3(&service, "org/ns/live-p1", None).await;
    let member = joined(&moderator, &p).await;
    assert_eq!(moderator.members().len(), 2);

    // Idle for ten rounds: the member's heartbeats keep it in.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(moderator.members().len(), 2, "kept while idle");

    // Busy for ten rounds: a stream of data from the member keeps it in.
    let sender = tokio::spawn(async move {
        for i in 0..200u32 {
            member
                .publish(i.to_be_bytes().to_vec(), HashMap::new())
                .await
                .expect("published");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        member
    });
    let mut got = 0;
    while got < 200 {
        let e = tokio::time::timeout(LIVENESS, moderator.recv())
            .await
            .expect("event in time")
            .expect("open");
        match e {
            slim_transport::app::SessionEvent::Message(_) => got += 1,
            slim_transport::app::SessionEvent::MemberLeft(n) => {
                panic!("{n} declared gone while it was sending")
            }
            _ => {}
        }
    }
    let _member = sender.await.unwrap();
    assert_eq!(moderator.members().len(), 2, "kept while busy");
}
