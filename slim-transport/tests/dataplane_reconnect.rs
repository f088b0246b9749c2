//! An outgoing link survives its peer node being killed and restarted on the
//! same port: it reconnects and replays the subscriptions it forwarded, so
//! traffic reaches the app again, after a short outage and after one longer
//! than a minute (links never give up), and tells watchers it went down and
//! came back. The peer is our `slim` binary.

mod dataplane_common;

use std::process::Command;
use std::time::{Duration, Instant};

use dataplane_common::*;
use slim_transport::service::{LinkEvent, ReconnectPolicy, Service};
use slimrpc_testkit::{Child, free_port};

fn start_node(label: &str, endpoint: &str) -> Child {
    let mut node = Child::spawn(
        label,
        Command::new(env!("CARGO_BIN_EXE_slim")).args(["--endpoint", endpoint]),
    );
    tokio::task::block_in_place(|| node.wait_for("slim node listening on", LIMIT));
    node
}

/// Kills the node under a linked service, keeps it down for `outage`, restarts
/// it on the same port, and checks the link came back with its replayed
/// subscription and reported Down then Up.
async fn link_survives_an_outage_of(outage: Duration) {
    let endpoint = format!("127.0.0.1:{}", free_port());
    let mut node = start_node("slim-reconnect-first", &endpoint);

    let a = Service::new();
    // Capped well below the outage, so many attempts fail before one works.
    a.set_reconnect_policy(ReconnectPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_secs(2),
        jitter: 0.2,
    });
    let mut events = a.link_events();
    let link = a.connect(&endpoint).await.unwrap();
    let mut alice_app = a.local_connection();
    let alice = name("org/ns/alice/a1");
    subscribe_acked(
        &mut alice_app,
        subscribe(&alice, &alice, 1, None, Some(link)),
    )
    .await;

    node.kill();
    let down = tokio::time::timeout(LIMIT, events.recv()).await;
    assert!(
        matches!(&down, Ok(Ok(LinkEvent::Down { conn, .. })) if *conn == link),
        "{down:?}"
    );
    tokio::time::sleep(outage).await;
    let _node = start_node("slim-reconnect-second", &endpoint);
    let up = tokio::time::timeout(LIMIT, events.recv()).await;
    assert!(
        matches!(&up, Ok(Ok(LinkEvent::Up { conn })) if *conn == link),
        "{up:?}"
    );

    // A fresh peer routes to alice through the restarted node; it only
    // works once the replayed subscription arrived there.
    let c = Service::new();
    let to_node = c.connect(&endpoint).await.unwrap();
    let mut carol_app = c.local_connection();
    let carol = name("org/ns/carol/c3");
    subscribe_acked(
        &mut carol_app,
        subscribe(&carol, &alice, 2, Some(to_node), None),
    )
    .await;
    let start = Instant::now();
    let got = loop {
        assert!(
            start.elapsed() < LIMIT,
            "replayed subscription never arrived"
        );
        carol_app
            .tx
            .send(publish(&carol, &alice, 1, b"after restart"))
            .await
            .unwrap();
        if let Ok(Some(Ok(m))) =
            tokio::time::timeout(Duration::from_millis(250), alice_app.rx.recv()).await
        {
            break m;
        }
    };
    assert_eq!(blob(&got), Some(&b"after restart"[..]));
    // Same connection index as before the restart.
    assert!(a.connections().contains(&link));
    a.shutdown().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_link_reconnects_after_node_restart_and_replays_subscriptions() {
    link_survives_an_outage_of(Duration::from_secs(2)).await;
}

/// Longer than the minute after which links used to give up for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_link_keeps_trying_through_a_65_s_outage_and_comes_back() {
    link_survives_an_outage_of(Duration::from_secs(65)).await;
}
