//! An outgoing link survives its peer node being killed and restarted on the
//! same port: it reconnects and replays the subscriptions it forwarded, so
//! traffic reaches the app again. The peer is our `slim` binary.

mod dataplane_common;

use std::process::Command;
use std::time::{Duration, Instant};

use dataplane_common::*;
use slim_transport::service::Service;
use slimrpc_testkit::{Child, free_port};

fn start_node(label: &str, endpoint: &str) -> Child {
    let mut node = Child::spawn(
        label,
        Command::new(env!("CARGO_BIN_EXE_slim")).args(["--endpoint", endpoint]),
    );
    tokio::task::block_in_place(|| node.wait_for("slim node listening on", LIMIT));
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_link_reconnects_after_node_restart_and_replays_subscriptions() {
    let endpoint = format!("127.0.0.1:{}", free_port());
    let mut node = start_node("slim-reconnect-first", &endpoint);

    let a = Service::new();
    let link = a.connect(&endpoint).await.unwrap();
    let mut alice_app = a.local_connection();
    let alice = name("org/ns/alice/a1");
    subscribe_acked(
        &mut alice_app,
        subscribe(&alice, &alice, 1, None, Some(link)),
    )
    .await;

    node.kill();
    let _node = start_node("slim-reconnect-second", &endpoint);

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
