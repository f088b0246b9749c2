//! Liveness on the SLIM v3 wire with the real peer: our group client (a
//! v3 app, pinging every second) calls two official slim-bindings 3.3.8
//! example servers through our node; one is killed by PID mid-call. The call
//! keeps the other member's answers and ends with `MulticastSessionClosed`
//! naming the dead one. A killed process is noticed as soon as the node
//! drops its routes (its connection closed); a member that only went
//! silent counts as alive while it was heard from within 30 s, since v3
//! members heartbeat every 10 s when idle (the official stack marks a
//! member offline after the same three missed heartbeats).

mod common;

use std::process::Command;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use slimrpc::{CallOptions, Channel, ChannelOptions, RpcError};
use slimrpc_examples::example_service::{ExampleRequest, ExampleResponse};
use slimrpc_examples::{Protocol, app_with, connect_with, name};
use slimrpc_testkit::venv3_script;

use common::{node, spawn_ready};

const SVC: &str = "example_service.Test";

fn req(i: i64) -> ExampleRequest {
    ExampleRequest {
        example_string: format!("Request {i}"),
        example_integer: i,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_official_3_3_8_member_killed_mid_call_is_reported_missing_and_the_other_answers() {
    let (_node, url) = node().await;
    let mut servers = Vec::new();
    for instance in ["v3live-1", "v3live-2"] {
        let mut cmd = Command::new(venv3_script("slim-bindings-simple-rpc-server"));
        cmd.args(["--instance", instance, "--server", &url])
            .env("PYTHONUNBUFFERED", "1");
        servers.push(spawn_ready(instance, cmd, "SLIM_RPC_SERVER_READY").await);
    }
    let (service, conn) = connect_with(&url, Protocol::V3).await.expect("linked");
    let app = app_with(&service, "v3live-client", Protocol::V3)
        .await
        .expect("client app");
    app.subscribe(app.name(), Some(conn))
        .await
        .expect("subscribed");
    let options = ChannelOptions {
        connection: Some(conn),
        ping_interval: Some(Duration::from_secs(1)),
        ..ChannelOptions::default()
    };
    let members = vec![name("v3live-1"), name("v3live-2")];
    let ch = Channel::with_options(app, members, options).expect("channel");

    let (mut tx, rx) = mpsc::channel::<ExampleRequest>(8);
    let call_options = CallOptions {
        timeout: Some(Duration::from_secs(180)),
        ..CallOptions::default()
    };
    let mut responses =
        ch.group_stream_stream::<_, ExampleResponse>(SVC, "ExampleStreamStream", rx, call_options);
    let limit = Duration::from_secs(120);
    tx.send(req(1)).await.unwrap();
    let mut before = Vec::new();
    while before.len() < 2 {
        let item = tokio::time::timeout(limit, responses.next())
            .await
            .expect("both members answer the first request")
            .expect("the call goes on");
        before.push(item.expect("no error before the kill").source.strings()[2].clone());
    }
    before.sort();
    assert_eq!(before, vec!["v3live-1", "v3live-2"]);

    servers[1].kill();
    tx.send(req(2)).await.unwrap();
    drop(tx);
    let mut after_ok = Vec::new();
    let mut ended_with = None;
    while let Some(item) = tokio::time::timeout(limit, responses.next())
        .await
        .expect("the call ends once the dead member is noticed")
    {
        match item {
            Ok(i) => after_ok.push(i.source.strings()[2].clone()),
            Err(e) => ended_with = Some(e),
        }
    }
    assert_eq!(after_ok, vec!["v3live-1"], "the survivor answers the rest");
    match ended_with {
        Some(RpcError::MulticastSessionClosed { missing, .. }) => {
            assert_eq!(missing.len(), 1, "{missing:?}");
            assert!(missing[0].contains("v3live-2"), "{missing:?}");
        }
        other => panic!("the call owed MulticastSessionClosed, got {other:?}"),
    }
    service.shutdown().await;
}
