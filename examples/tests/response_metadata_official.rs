//! Response metadata (our extension: `slimrpc-h-*` headers and `slimrpc-t-*`
//! trailers on response frames) and the official peers of both lines
//! (slim-bindings 1.3.0 on the v1 wire, 3.3.8 on the v3 wire), through our
//! node:
//! * the official P2P and group clients call our example servers, which set
//!   a header and a binary trailer on every answer, and still get every
//!   answer right (they ignore the keys), while our client reads them;
//! * our client asking for response metadata from the official example
//!   servers gets empty metadata, per member too, and the answers.

mod common;

use std::process::Command;

use futures::StreamExt;
use slimrpc::{CallOptions, Channel, ChannelOptions, MetadataExt, ResponseMetadataSink};
use slimrpc_examples::example_service::{ExampleRequest, ExampleResponse};
use slimrpc_examples::{Protocol, app_with, connect_with, name, serve};
use slimrpc_testkit::{Child, venv_script, venv3_script};

use common::{LIMIT, node, spawn_ready};

const SVC: &str = "example_service.Test";

fn script(protocol: Protocol, name: &str) -> std::path::PathBuf {
    match protocol {
        Protocol::V1 => venv_script(name),
        Protocol::V3 => venv3_script(name),
    }
}

fn req() -> ExampleRequest {
    ExampleRequest {
        example_string: "Request 1".into(),
        example_integer: 1,
    }
}

fn opts() -> CallOptions {
    CallOptions::with_timeout(LIMIT)
}

/// Runs an official client program to its end; its exit code and output.
async fn run_official(label: &str, cmd: Command) -> (Option<i32>, String) {
    let label = label.to_string();
    tokio::task::spawn_blocking(move || {
        let mut cmd = cmd;
        let mut c = Child::spawn(&label, &mut cmd);
        c.wait_exit(LIMIT)
    })
    .await
    .expect("waiter ran")
}

fn assert_clean(label: &str, out: &str) {
    for bad in ["RPC error", "timeout while waiting", "Traceback", "Error:"] {
        assert!(!out.contains(bad), "{label} printed {bad:?}:\n{out}");
    }
}

async fn official_clients_ignore_our_response_metadata(protocol: Protocol, tag: &str) {
    let (_node, url) = node().await;
    let (service, conn) = connect_with(&url, protocol).await.expect("linked");
    let mut servers = Vec::new();
    for instance in ["server", "server1", "server2"] {
        let app = app_with(&service, instance, protocol).await.expect("app");
        servers.push(serve(app, instance, Some(conn)).await.expect("serving"));
    }

    // Our client sees the metadata our servers send, through the node.
    let app = app_with(&service, &format!("{tag}-client"), protocol)
        .await
        .expect("client app");
    app.subscribe(app.name(), Some(conn))
        .await
        .expect("subscribed");
    let options = ChannelOptions {
        connection: Some(conn),
        ..ChannelOptions::default()
    };
    let p2p = Channel::with_options(app.clone(), vec![name("server")], options).unwrap();
    let r = tokio::time::timeout(
        LIMIT,
        p2p.unary_with_metadata::<_, ExampleResponse>(SVC, "ExampleUnaryUnary", req(), opts()),
    )
    .await
    .expect("in time")
    .expect("answer");
    assert_eq!(r.metadata()["x-served-by"], "server");
    assert_eq!(
        r.trailers().get_bin("x-served-by-bin"),
        Some(Ok(b"server".to_vec()))
    );

    let mut cmd = Command::new(script(protocol, "slim-bindings-simple-rpc-client"));
    cmd.args(["--server", &url]).env("PYTHONUNBUFFERED", "1");
    let (code, out) = run_official(&format!("{tag}-official-client"), cmd).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("SLIM_RPC_CLIENT_DONE"), "{out}");
    assert!(out.contains("Stream Stream completed"), "{out}");
    assert!(
        out.contains("Stream Stream Response: example_string: \"Echo: Request 9\""),
        "{out}"
    );
    assert_clean("official client", &out);

    let mut cmd = Command::new(script(protocol, "slim-bindings-simple-rpc-client-group"));
    cmd.args(["--servers", "server1,server2", "--server", &url])
        .env("PYTHONUNBUFFERED", "1");
    let (code, out) = run_official(&format!("{tag}-official-group-client"), cmd).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("SLIM_RPC_GROUP_CLIENT_DONE"), "{out}");
    for m in ["server1", "server2"] {
        assert!(
            out.contains(&format!("RpcMessageContext(source=agntcy/grpc/{m}/"))
                || out.contains(&format!("RpcMessageContext(source=agntcy/grpc/{m})")),
            "no response from {m}:\n{out}"
        );
    }
    assert_clean("official group client", &out);

    let _ = p2p.close().await;
    for s in servers {
        s.shutdown().await;
    }
    service.shutdown().await;
}

async fn official_servers_give_empty_response_metadata(protocol: Protocol, tag: &str) {
    let (_node, url) = node().await;
    let instances = [format!("{tag}-1"), format!("{tag}-2")];
    let mut servers = Vec::new();
    for instance in &instances {
        let mut cmd = Command::new(script(protocol, "slim-bindings-simple-rpc-server"));
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
    let options = ChannelOptions {
        connection: Some(conn),
        ..ChannelOptions::default()
    };
    let p2p = Channel::with_options(app.clone(), vec![name(&instances[0])], options).unwrap();
    let r = tokio::time::timeout(
        LIMIT,
        p2p.unary_with_metadata::<_, ExampleResponse>(SVC, "ExampleUnaryUnary", req(), opts()),
    )
    .await
    .expect("in time")
    .expect("answer");
    assert_eq!(r.get_ref().example_string, "Hello, World!");
    assert!(r.metadata().is_empty(), "{:?}", r.metadata());
    assert!(r.trailers().is_empty(), "{:?}", r.trailers());

    let sink = ResponseMetadataSink::new();
    let answers: Vec<_> = tokio::time::timeout(
        LIMIT,
        p2p.unary_stream::<_, ExampleResponse>(
            SVC,
            "ExampleUnaryStream",
            req(),
            opts().capture(&sink),
        )
        .collect::<Vec<_>>(),
    )
    .await
    .expect("in time");
    assert_eq!(answers.len(), 5, "{answers:?}");
    assert!(sink.headers().is_empty() && sink.trailers().is_empty());

    let group = Channel::with_options(
        app.clone(),
        instances.iter().map(|i| name(i)).collect(),
        options,
    )
    .unwrap();
    let sink = ResponseMetadataSink::new();
    let answers: Vec<_> = tokio::time::timeout(
        LIMIT,
        group
            .group_unary::<_, ExampleResponse>(
                SVC,
                "ExampleUnaryUnary",
                req(),
                opts().capture(&sink),
            )
            .collect::<Vec<_>>(),
    )
    .await
    .expect("in time");
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers.iter().all(|a| a.is_ok()), "{answers:?}");
    let members = sink.members();
    assert_eq!(members.len(), 2, "{members:?}");
    assert!(members.iter().all(|(_, m)| m.is_empty()), "{members:?}");

    let _ = group.close().await;
    let _ = p2p.close().await;
    service.shutdown().await;
    drop(servers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_3_3_8_clients_ignore_our_response_metadata() {
    official_clients_ignore_our_response_metadata(Protocol::V3, "rmc3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_1_3_clients_ignore_our_response_metadata() {
    official_clients_ignore_our_response_metadata(Protocol::V1, "rmc1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_3_3_8_servers_give_our_client_empty_response_metadata() {
    official_servers_give_empty_response_metadata(Protocol::V3, "rms3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_1_3_servers_give_our_client_empty_response_metadata() {
    official_servers_give_empty_response_metadata(Protocol::V1, "rms1").await;
}
