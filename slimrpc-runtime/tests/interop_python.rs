//! Interop with the official SlimRPC stack: the `slim_bindings` 1.3.0 example
//! server (`slim-bindings-simple-rpc-server`, Python) connects over gRPC to
//! our Rust node on 127.0.0.1; our Rust Channel calls it point-to-point and
//! as a group of two (sessions with MLS off, as our session layer supports).

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use slim_transport::Name;
use slim_transport::app::App;
use slim_transport::identity::SharedSecret;
use slim_transport::service::Service;
use slimrpc::{CallOptions, Channel, RpcError};
use slimrpc_testkit::Child;

/// The official examples' shared secret (`examples/constants.py`).
const SECRET: &str = "my_shared_secret_for_testing_purposes_only";
const SVC: &str = "example_service.Test";
const LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, PartialEq, prost::Message)]
struct ExampleRequest {
    #[prost(string, tag = "1")]
    example_string: String,
    #[prost(int64, tag = "2")]
    example_integer: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ExampleResponse {
    #[prost(string, tag = "1")]
    example_string: String,
    #[prost(int64, tag = "2")]
    example_integer: i64,
}

fn req(s: &str, i: i64) -> ExampleRequest {
    ExampleRequest {
        example_string: s.into(),
        example_integer: i,
    }
}

fn res(s: &str, i: i64) -> ExampleResponse {
    ExampleResponse {
        example_string: s.into(),
        example_integer: i,
    }
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("liveness bound exceeded")
}

async fn python_server(port: u16, instance: &str) -> Child {
    let child = Child::spawn(
        &format!("py-rpc-{instance}"),
        Command::new(slimrpc_testkit::venv_script(
            "slim-bindings-simple-rpc-server",
        ))
        .arg("--instance")
        .arg(instance)
        .arg("--server")
        .arg(format!("http://127.0.0.1:{port}")),
    );
    tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.wait_for("SLIM_RPC_SERVER_READY", LIMIT);
        child
    })
    .await
    .expect("waiter ran")
}

struct Setup {
    _service: Service,
    client: Arc<App>,
    servers: Vec<Child>,
}

async fn setup(instances: &[&str]) -> Setup {
    let service = Service::new();
    let addr = bounded(service.run_server("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let mut servers = Vec::new();
    for i in instances {
        servers.push(python_server(addr.port(), i).await);
    }
    let identity = SharedSecret::new("agntcy/grpc/rust-client", SECRET).unwrap();
    let client = Arc::new(
        bounded(service.app("agntcy/grpc/rust-client".parse().unwrap(), identity))
            .await
            .unwrap(),
    );
    Setup {
        _service: service,
        client,
        servers,
    }
}

fn opts() -> CallOptions {
    CallOptions::with_timeout(Duration::from_secs(30))
}

fn outputs(s: &Setup) -> String {
    s.servers
        .iter()
        .map(Child::output)
        .collect::<Vec<_>>()
        .join("\n----\n")
}

#[tokio::test]
async fn rust_channel_calls_official_python_server_in_all_four_shapes() {
    let s = setup(&["server1"]).await;
    let ch = Channel::new(
        s.client.clone(),
        vec![Name::new("agntcy", "grpc", "server1")],
    )
    .unwrap();

    let r: Result<ExampleResponse, RpcError> =
        bounded(ch.unary(SVC, "ExampleUnaryUnary", req("hello", 1), opts())).await;
    assert_eq!(r, Ok(res("Hello, World!", 1)), "{}", outputs(&s));

    let items: Vec<_> = bounded(
        ch.unary_stream::<_, ExampleResponse>(SVC, "ExampleUnaryStream", req("x", 0), opts())
            .collect(),
    )
    .await;
    let items: Vec<ExampleResponse> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        items,
        (0..5)
            .map(|i| res(&format!("Response {i}"), i))
            .collect::<Vec<_>>()
    );

    let reqs = stream::iter(["a", "b", "c"].map(|s| req(s, 1)));
    let r: ExampleResponse = bounded(ch.stream_unary(SVC, "ExampleStreamUnary", reqs, opts()))
        .await
        .unwrap();
    assert_eq!(r, res("Saw: a, b, c", 3));

    let reqs = stream::iter((0..3).map(|i| req(&format!("item {i}"), i)));
    let out: Vec<_> = bounded(
        ch.stream_stream::<_, ExampleResponse>(SVC, "ExampleStreamStream", reqs, opts())
            .collect(),
    )
    .await;
    let out: Vec<ExampleResponse> = out.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        out,
        (0..3)
            .map(|i| res(&format!("Echo: item {i}"), i * 100))
            .collect::<Vec<_>>()
    );

    let r: Result<ExampleResponse, RpcError> =
        bounded(ch.unary(SVC, "Nope", req("", 0), opts())).await;
    assert_eq!(
        r,
        Err(RpcError::unimplemented(
            "Method not found: example_service.Test/Nope"
        ))
    );
}

#[tokio::test]
async fn rust_group_channel_collects_every_official_python_member_in_all_four_shapes() {
    let s = setup(&["server1", "server2"]).await;
    let ch = Channel::new(
        s.client.clone(),
        vec![
            Name::new("agntcy", "grpc", "server1"),
            Name::new("agntcy", "grpc", "server2"),
        ],
    )
    .unwrap();

    let all: Vec<_> = bounded(
        ch.group_unary::<_, ExampleResponse>(SVC, "ExampleUnaryUnary", req("hi", 1), opts())
            .collect(),
    )
    .await;
    let mut got: Vec<(String, ExampleResponse)> = all
        .into_iter()
        .map(|r| {
            let i = r.unwrap_or_else(|e| panic!("{e}\n{}", outputs(&s)));
            (i.source.strings()[2].clone(), i.message)
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("server1".to_string(), res("Hello, World!", 1)),
            ("server2".to_string(), res("Hello, World!", 1)),
        ]
    );

    let reqs = stream::iter((0..3).map(|i| req(&format!("item {i}"), i)));
    let all: Vec<_> = bounded(
        ch.group_stream_stream::<_, ExampleResponse>(SVC, "ExampleStreamStream", reqs, opts())
            .collect(),
    )
    .await;
    // The official members ignore `slimrpc-answer-ends` and sent an EOS
    // after each unary answer; each reached our client (before this call's
    // frames) and was left undecrypted.
    assert!(ch.skipped_frames() >= 2, "{}", ch.skipped_frames());
    let mut got: Vec<(String, i64)> = all
        .into_iter()
        .map(|r| {
            let i = r.unwrap();
            (i.source.strings()[2].clone(), i.message.example_integer)
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("server1".to_string(), 0),
            ("server1".to_string(), 100),
            ("server1".to_string(), 200),
            ("server2".to_string(), 0),
            ("server2".to_string(), 100),
            ("server2".to_string(), 200),
        ]
    );

    let all: Vec<_> = bounded(
        ch.group_unary_stream::<_, ExampleResponse>(SVC, "ExampleUnaryStream", req("x", 0), opts())
            .collect(),
    )
    .await;
    let mut got: Vec<(String, i64)> = all
        .into_iter()
        .map(|r| {
            let i = r.unwrap();
            (i.source.strings()[2].clone(), i.message.example_integer)
        })
        .collect();
    got.sort();
    let want: Vec<(String, i64)> = ["server1", "server2"]
        .iter()
        .flat_map(|m| (0..5).map(move |i| (m.to_string(), i)))
        .collect();
    assert_eq!(got, want);

    let reqs = stream::iter(["a", "b"].map(|s| req(s, 1)));
    let all: Vec<_> = bounded(
        ch.group_stream_unary::<_, ExampleResponse>(SVC, "ExampleStreamUnary", reqs, opts())
            .collect(),
    )
    .await;
    let mut got: Vec<(String, ExampleResponse)> = all
        .into_iter()
        .map(|r| {
            let i = r.unwrap();
            (i.source.strings()[2].clone(), i.message)
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("server1".to_string(), res("Saw: a, b", 2)),
            ("server2".to_string(), res("Saw: a, b", 2)),
        ]
    );
}
