//! The eight call shapes end to end through the stubs `build.rs` generated, in one process
//! on the embedded SLIM transport (real sessions, no sockets), plus the trait's default
//! `Unimplemented` answers.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, stream};
use slim_transport::service::Service;
use slimrpc::{Channel, Code, MulticastStream, RpcError};
use slimrpc_examples::example_service::test_client::{TestClient, TestGroupClient};
use slimrpc_examples::example_service::test_server::{Test, TestServer};
use slimrpc_examples::example_service::{ExampleRequest, ExampleResponse};
use slimrpc_examples::{app, name, options, requests, serve, short};

const LIMIT: Duration = Duration::from_secs(60);

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("liveness bound exceeded")
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

/// Every member's responses, in arrival order per member.
async fn by_member(s: MulticastStream<ExampleResponse>) -> BTreeMap<String, Vec<ExampleResponse>> {
    let items: Vec<_> = bounded(s.collect()).await;
    let mut out: BTreeMap<String, Vec<ExampleResponse>> = BTreeMap::new();
    for item in items {
        let item = item.expect("no member fails");
        out.entry(short(&item.source))
            .or_default()
            .push(item.message);
    }
    out
}

#[tokio::test]
async fn eight_shapes_through_generated_stubs_on_the_embedded_transport() {
    let service = Service::new();
    let mut servers = Vec::new();
    for instance in ["server1", "server2"] {
        let a = bounded(app(&service, instance)).await.unwrap();
        servers.push(bounded(serve(a, instance, None)).await.unwrap());
    }
    let client = bounded(app(&service, "client")).await.unwrap();

    // Point-to-point.
    let p2p = TestClient::new(Channel::new(client.clone(), vec![name("server1")]).unwrap());
    let r = bounded(p2p.example_unary_unary(req("hello", 1))).await;
    assert_eq!(r, Ok(res("Hello, World!", 1)));
    let items: Vec<_> = bounded(p2p.example_unary_stream(req("x", 0)).collect()).await;
    let items: Vec<ExampleResponse> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        items,
        (0..5)
            .map(|i| res(&format!("Response {i}"), i))
            .collect::<Vec<_>>()
    );
    let r = bounded(p2p.example_stream_unary_with(requests(), options())).await;
    let saw = (0..10)
        .map(|i| format!("Request {i}"))
        .collect::<Vec<_>>()
        .join(", ");
    assert_eq!(r, Ok(res(&format!("Saw: {saw}"), 10)));
    let items: Vec<_> = bounded(p2p.example_stream_stream(requests()).collect()).await;
    let items: Vec<ExampleResponse> = items.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        items,
        (0..10)
            .map(|i| res(&format!("Echo: Request {i}"), i * 100))
            .collect::<Vec<_>>()
    );

    // Group of two: every member answers, tagged with its name.
    let group = TestGroupClient::new(
        Channel::new(client.clone(), vec![name("server1"), name("server2")]).unwrap(),
    );
    let members = ["agntcy/grpc/server1", "agntcy/grpc/server2"];
    let got = by_member(group.example_unary_unary(req("hello", 1))).await;
    assert_eq!(got.keys().map(String::as_str).collect::<Vec<_>>(), members);
    assert!(got.values().all(|v| *v == vec![res("Hello, World!", 1)]));
    let got = by_member(group.example_unary_stream_with(req("x", 0), options())).await;
    assert_eq!(got.len(), 2);
    for v in got.values() {
        assert_eq!(
            *v,
            (0..5)
                .map(|i| res(&format!("Response {i}"), i))
                .collect::<Vec<_>>()
        );
    }
    let three = || stream::iter((0..3).map(|i| req(&format!("item {i}"), i)));
    let got = by_member(group.example_stream_unary(three())).await;
    assert_eq!(got.len(), 2);
    assert!(
        got.values()
            .all(|v| *v == vec![res("Saw: item 0, item 1, item 2", 3)])
    );
    let got = by_member(group.example_stream_stream(three())).await;
    assert_eq!(got.len(), 2);
    for v in got.values() {
        assert_eq!(
            *v,
            (0..3)
                .map(|i| res(&format!("Echo: item {i}"), i * 100))
                .collect::<Vec<_>>()
        );
    }

    for s in servers {
        s.shutdown().await;
    }
    service.shutdown().await;
}

/// Overrides nothing: every method keeps the generated default.
struct Nothing;
impl Test for Nothing {}

#[tokio::test]
async fn methods_not_overridden_answer_unimplemented_in_all_shapes() {
    let service = Service::new();
    let server_app = bounded(app(&service, "lazy")).await.unwrap();
    let mut server = slimrpc::Server::new(server_app, name("lazy"));
    TestServer::new(Nothing).register(&mut server);
    let running = bounded(server.start()).await.unwrap();
    let client = bounded(app(&service, "asker")).await.unwrap();
    let c = TestClient::new(Channel::new(client, vec![name("lazy")]).unwrap());

    let unimplemented = |e: RpcError| {
        assert_eq!(e.code(), Code::Unimplemented, "{e}");
        assert!(e.message().contains("example_service.Test/"), "{e}");
    };
    unimplemented(
        bounded(c.example_unary_unary(req("a", 1)))
            .await
            .unwrap_err(),
    );
    let first = bounded(c.example_unary_stream(req("a", 1)).next()).await;
    unimplemented(first.expect("one item").unwrap_err());
    unimplemented(
        bounded(c.example_stream_unary(requests()))
            .await
            .unwrap_err(),
    );
    let first = bounded(c.example_stream_stream(requests()).next()).await;
    unimplemented(first.expect("one item").unwrap_err());
    running.shutdown().await;
    service.shutdown().await;
}
