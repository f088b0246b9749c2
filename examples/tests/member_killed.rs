//! A server process killed in the middle of a call, over the real transport: our node on
//! 127.0.0.1, our `server` example binary as separate processes, and a Rust channel in this
//! process linked to the node over gRPC (MLS on, as every SlimRPC session).
//!
//! The channel pings its members every second, so a dead member is declared gone after
//! three missed rounds (a few seconds), well within the call's 60 s timeout:
//! * group: the survivors' answers all arrive, then the call ends with
//!   `MulticastSessionClosed` naming the killed member as missing; once the member is
//!   back, the next call gets a fresh session and all members answer;
//! * point-to-point: the call ends with `Internal` (the session closed under it).

use std::process::Command;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use slim_transport::service::Service;
use slimrpc::{CallOptions, Channel, ChannelOptions, Code, RpcError};
use slimrpc_examples::example_service::{ExampleRequest, ExampleResponse};
use slimrpc_examples::{app, connect, name};
use slimrpc_testkit::Child;

mod common;

use common::{LIMIT, node, spawn_ready};

const SVC: &str = "example_service.Test";
const SERVER: &str = env!("CARGO_BIN_EXE_server");

/// Our example server `agntcy/grpc/<instance>` as a process, once it is subscribed.
async fn server(instance: &str, url: &str) -> Child {
    let mut cmd = Command::new(SERVER);
    // The clients of these tests are in-process apps on the v1 wire.
    cmd.args(["--instance", instance, "--slim", url, "--protocol", "1"]);
    spawn_ready(&format!("server-{instance}"), cmd, "SLIM_RPC_SERVER_READY").await
}

/// A channel from a fresh client app linked to the node, pinging every second.
async fn channel(url: &str, client: &str, members: &[&str]) -> (Service, Channel) {
    let (service, conn) = connect(url).await.expect("linked to the node");
    let app = app(&service, client).await.expect("client app");
    app.subscribe(app.name(), Some(conn))
        .await
        .expect("client subscribed");
    let options = ChannelOptions {
        connection: Some(conn),
        ping_interval: Some(Duration::from_secs(1)),
        ..ChannelOptions::default()
    };
    let members = members.iter().map(|m| name(m)).collect();
    let channel = Channel::with_options(app, members, options).expect("channel");
    (service, channel)
}

fn req(text: &str, n: i64) -> ExampleRequest {
    ExampleRequest {
        example_integer: n,
        example_string: text.into(),
    }
}

async fn next<T>(s: &mut (impl futures::Stream<Item = T> + Unpin)) -> Option<T> {
    tokio::time::timeout(LIMIT, s.next())
        .await
        .expect("the call made progress in time")
}

async fn kill(mut child: Child) {
    tokio::task::spawn_blocking(move || child.kill())
        .await
        .expect("killer ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_killed_mid_stream_is_reported_missing_and_the_next_call_reaches_it_again() {
    let (_node, url) = node().await;
    let s1 = server("kill-s1", &url).await;
    let s2 = server("kill-s2", &url).await;
    let s3 = server("kill-s3", &url).await;
    let (_client_service, ch) = channel(
        &url,
        "kill-group-client",
        &["kill-s1", "kill-s2", "kill-s3"],
    )
    .await;

    let (mut requests, rx) = mpsc::unbounded::<ExampleRequest>();
    let mut call = ch.group_stream_stream::<_, ExampleResponse>(
        SVC,
        "ExampleStreamStream",
        rx,
        CallOptions::with_timeout(LIMIT),
    );
    requests.send(req("before", 1)).await.unwrap();
    let mut first_round = Vec::new();
    for _ in 0..3 {
        let item = next(&mut call).await.expect("an echo").expect("ok echo");
        assert_eq!(item.message.example_string, "Echo: before");
        first_round.push(item.source.strings()[2].clone());
    }
    first_round.sort();
    assert_eq!(first_round, ["kill-s1", "kill-s2", "kill-s3"]);

    // kill-s2 dies with the call still open; the others get one more request and the end.
    kill(s2).await;
    requests.send(req("after", 2)).await.unwrap();
    requests.close_channel();
    let mut second_round = Vec::new();
    let end = loop {
        match next(&mut call).await.expect("the call ends with an error") {
            Ok(item) => {
                assert_eq!(item.message.example_string, "Echo: after");
                second_round.push(item.source.strings()[2].clone());
            }
            Err(e) => break e,
        }
    };
    second_round.sort();
    assert_eq!(second_round, ["kill-s1", "kill-s3"], "{}", s1.output());
    assert_eq!(
        end,
        RpcError::MulticastSessionClosed {
            completed: 2,
            total: 3,
            received: vec!["agntcy/grpc/kill-s1".into(), "agntcy/grpc/kill-s3".into()],
            missing: vec!["agntcy/grpc/kill-s2".into()],
        }
    );
    assert!(next(&mut call).await.is_none());
    assert_eq!(ch.pending_calls(), 0);

    // The member comes back: the next call opens a new session and re-invites everyone.
    let _s2 = server("kill-s2", &url).await;
    let mut answers = ch.group_unary::<_, ExampleResponse>(
        SVC,
        "ExampleUnaryUnary",
        req("again", 3),
        CallOptions::with_timeout(LIMIT),
    );
    let mut from = Vec::new();
    while let Some(item) = next(&mut answers).await {
        let item = item.expect("every member answers the next call");
        assert_eq!(item.message.example_string, "Hello, World!");
        from.push(item.source.strings()[2].clone());
    }
    from.sort();
    assert_eq!(from, ["kill-s1", "kill-s2", "kill-s3"]);
    drop(s3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_to_point_server_killed_mid_stream_ends_the_call_with_internal() {
    let (_node, url) = node().await;
    let victim = server("kill-p2p", &url).await;
    let (_client_service, ch) = channel(&url, "kill-p2p-client", &["kill-p2p"]).await;
    assert!(!ch.is_group());

    let (mut requests, rx) = mpsc::unbounded::<ExampleRequest>();
    let mut call = ch.stream_stream::<_, ExampleResponse>(
        SVC,
        "ExampleStreamStream",
        rx,
        CallOptions::with_timeout(LIMIT),
    );
    requests.send(req("before", 1)).await.unwrap();
    let echo = next(&mut call).await.expect("an echo").expect("ok echo");
    assert_eq!(echo.example_string, "Echo: before");

    kill(victim).await;
    let end = next(&mut call)
        .await
        .expect("the call ends with an error")
        .expect_err("no echo from a dead server");
    assert_eq!(end.code(), Code::Internal, "{end}");
    assert!(next(&mut call).await.is_none());
    drop(requests);
}
