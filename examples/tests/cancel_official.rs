//! Our cancel frame (`slimrpc-code=1`, `slimrpc-dir=req`, no method) does
//! is understood by the official servers, of either line, and upsets none: the official example
//! servers (slim-bindings 1.3.0 on the v1 wire, 3.3.8 on the v3 wire),
//! through our node, receive calls our client drops mid-way (a streaming
//! call with its request stream still open, a server-streaming call after
//! its first answer, a group call). A call still reading its requests
//! ends with "Cancelled by the caller" in the official server (it reads the
//! frame as its request stream ending with that error); any other call
//! ignores it (no method named). They go on answering every later call of
//! the same session and of a new one.

mod common;

use std::process::Command;
use std::time::Duration;

use futures::{StreamExt, stream};
use slimrpc::{CallOptions, Channel, ChannelOptions};
use slimrpc_examples::example_service::{ExampleRequest, ExampleResponse};
use slimrpc_examples::{Protocol, app_with, connect_with, name};
use slimrpc_testkit::{venv_script, venv3_script};

use common::{LIMIT, node, spawn_ready};

const SVC: &str = "example_service.Test";

fn req(i: i64) -> ExampleRequest {
    ExampleRequest {
        example_string: format!("Request {i}"),
        example_integer: i,
    }
}

/// Waits until the server logged `n` handlers ended by `text` (bounded).
async fn said(server: &slimrpc_testkit::Child, text: &str, n: usize) {
    let start = std::time::Instant::now();
    let count = || {
        server
            .output()
            .lines()
            .filter(|l| l.contains("Error in RPC handler") && l.contains(text))
            .count()
    };
    while count() < n {
        assert!(
            start.elapsed() < LIMIT,
            "the server never logged {text:?} {n} times:\n{}",
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn official_servers_ignore_our_cancel_frames(protocol: Protocol, tag: &str) {
    let (_node, url) = node().await;
    let script = match protocol {
        Protocol::V1 => venv_script("slim-bindings-simple-rpc-server"),
        Protocol::V3 => venv3_script("slim-bindings-simple-rpc-server"),
    };
    let instances = [format!("{tag}-1"), format!("{tag}-2")];
    let mut servers = Vec::new();
    for instance in &instances {
        let mut cmd = Command::new(&script);
        cmd.args(["--instance", instance, "--server", &url])
            .env("PYTHONUNBUFFERED", "1");
        servers.push(spawn_ready(instance, cmd, "SLIM_RPC_SERVER_READY").await);
    }
    let (service, conn) = connect_with(&url, protocol).await.expect("linked");
    let app = app_with(&service, &format!("{tag}-client"), protocol)
        .await
        .expect("client app");
    app.subscribe(app.name(), Some(conn))
        .await
        .expect("subscribed");
    let options = || ChannelOptions {
        connection: Some(conn),
        ..ChannelOptions::default()
    };
    let p2p = Channel::with_options(app.clone(), vec![name(&instances[0])], options()).unwrap();
    let call_options = || CallOptions {
        timeout: Some(Duration::from_secs(120)),
        ..CallOptions::default()
    };
    let unary = async |ch: &Channel| -> ExampleResponse {
        tokio::time::timeout(
            LIMIT,
            ch.unary(SVC, "ExampleUnaryUnary", req(1), call_options()),
        )
        .await
        .expect("answer in time")
        .expect("the server still answers")
    };
    assert_eq!(unary(&p2p).await.example_string, "Hello, World!");

    // A stream-input call whose request stream never ends, dropped: the
    // official server sees its request stream end with an error.
    let requests = stream::iter([req(1)]).chain(stream::pending());
    let call =
        p2p.stream_unary::<_, ExampleResponse>(SVC, "ExampleStreamUnary", requests, call_options());
    let _ = tokio::time::timeout(Duration::from_millis(500), call).await;
    // It read our cancel frame as the end of the call's requests, with the
    // reason.
    said(&servers[0], "Cancelled by the caller", 1).await;
    assert_eq!(unary(&p2p).await.example_string, "Hello, World!");

    // A server-streaming call dropped after its first answer.
    let mut responses =
        p2p.unary_stream::<_, ExampleResponse>(SVC, "ExampleUnaryStream", req(2), call_options());
    let first = tokio::time::timeout(LIMIT, responses.next())
        .await
        .expect("first answer in time")
        .expect("an answer")
        .expect("no error");
    assert_eq!(first.example_string, "Response 0");
    drop(responses);
    assert_eq!(unary(&p2p).await.example_string, "Hello, World!");

    // A group call dropped before its answers, then a full group call.
    let group = Channel::with_options(
        app.clone(),
        instances.iter().map(|i| name(i)).collect(),
        options(),
    )
    .unwrap();
    let requests = stream::iter([req(1)]).chain(stream::pending());
    let dropped = group.group_stream_unary::<_, ExampleResponse>(
        SVC,
        "ExampleStreamUnary",
        requests,
        call_options(),
    );
    let mut dropped = Box::pin(dropped);
    let _ = tokio::time::timeout(Duration::from_millis(500), dropped.next()).await;
    drop(dropped);
    said(&servers[0], "Cancelled by the caller", 2).await;
    said(&servers[1], "Cancelled by the caller", 1).await;
    let answers: Vec<_> = tokio::time::timeout(
        LIMIT,
        group
            .group_unary::<_, ExampleResponse>(SVC, "ExampleUnaryUnary", req(3), call_options())
            .collect::<Vec<_>>(),
    )
    .await
    .expect("answers in time");
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers.iter().all(|a| a.is_ok()), "{answers:?}");

    // The servers are alive and well.
    for s in &servers {
        assert!(
            !s.output().contains("Traceback"),
            "an official server failed:\n{}",
            s.output()
        );
    }
    let _ = group.close().await;
    let _ = p2p.close().await;
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_3_3_8_servers_ignore_our_cancel_frames_and_keep_answering() {
    official_servers_ignore_our_cancel_frames(Protocol::V3, "cancel3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_1_3_servers_ignore_our_cancel_frames_and_keep_answering() {
    official_servers_ignore_our_cancel_frames(Protocol::V1, "cancel1").await;
}
