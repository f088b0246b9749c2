//! An application that stops reading its session's events must not stall
//! the session: its task keeps answering pings and acknowledging, refuses
//! (unacknowledged) what the app has no room for, and once the app reads
//! again everything arrives, in order, nothing reported lost.
//!
//! The old driver waited on the app's full event queue, stopped reading its
//! inbox, let the app's reader drop what did not fit, and stopped answering
//! pings: the moderator declared the member gone and messages were lost.

mod session_common;

use std::time::Duration;

use session_common::{LIVENESS, app};
use slim_transport::app::{SessionConfig, SessionEvent, SessionKind};
use slim_transport::service::Service;

/// More than the app's event queue (4096) plus the send window (256).
const BURST: usize = 6_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_reading_keeps_answering_pings_and_later_gets_every_message_in_order() {
    let service = Service::new();
    let moderator = app(&service, "org/slow/moderator").await;
    let member = app(&service, "org/slow/member").await;
    // Short rounds so that many pass while the member does not read;
    // retries far beyond the test, so a refused MSG is never given up.
    let config = SessionConfig {
        kind: SessionKind::Group,
        mls: true,
        interval: Some(Duration::from_millis(200)),
        max_retries: Some(100_000),
        ping_interval: Duration::from_millis(200),
        ..SessionConfig::default()
    };
    let (group, ready) = moderator
        .create_session(config, &"org/slow/chat".parse().unwrap())
        .await
        .expect("session");
    ready.await.expect("group created");
    let joined = group
        .invite(&"org/slow/member".parse().unwrap())
        .await
        .expect("invite sent");
    let mut inbox = tokio::time::timeout(LIVENESS, member.listen_for_session())
        .await
        .expect("invited in time")
        .expect("accepted");
    tokio::time::timeout(LIVENESS, joined)
        .await
        .expect("joined in time")
        .expect("joined");

    for i in 0..BURST {
        group
            .publish(format!("m{i}").into_bytes(), Default::default())
            .await
            .expect("publish accepted");
    }
    // The member reads nothing until it refused enough retransmissions for
    // many ping rounds to have passed (one round per retransmission interval).
    let limit = tokio::time::Instant::now() + LIVENESS;
    while inbox.counters().refused_busy < 256 * 10 {
        assert!(
            tokio::time::Instant::now() < limit,
            "the member never pushed back: {:?}",
            inbox.counters()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        group.members().len(),
        2,
        "the member answered every ping while its app did not read"
    );

    let mut got = 0usize;
    while got < BURST {
        let event = tokio::time::timeout(LIVENESS, inbox.recv())
            .await
            .unwrap_or_else(|_| panic!("stalled after {got} messages"))
            .expect("session open");
        match event {
            SessionEvent::Message(m) => {
                assert_eq!(m.payload, format!("m{got}").into_bytes(), "in order");
                got += 1;
            }
            SessionEvent::MessageLost { message_id, .. } => {
                panic!("message {message_id} lost after {got}")
            }
            SessionEvent::Closed { reason } => panic!("closed after {got}: {reason}"),
            _ => {}
        }
    }
    assert_eq!(inbox.counters().decrypt_failed, 0);
    let _ = group.close().await;
}
