//! Response metadata over the real transport in one process, on both SLIM
//! wire generations: handlers set headers and trailers (text and `-bin`)
//! on their `Context`; a caller reads them beside the response (P2P) or per
//! member (group), on success and on error; binary request metadata reaches
//! the handler.

mod common;

use common::{Wire, app, bounded};

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use slim_transport::Name;
use slim_transport::app::App;
use slim_transport::service::Service;
use slimrpc::{
    CallOptions, Channel, Code, Context, MetadataExt, ResponseMetadataSink, RpcError, Server,
    ServerHandle,
};

const SVC: &str = "test.Meta";

#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
}

/// Echoes the caller's `x-echo-bin` back as a binary header and trailer,
/// names itself in header `x-who` and trailer `x-bye`.
fn stamp(ctx: &Context, label: &str) {
    ctx.set_header("x-who", label);
    if let Some(Ok(bytes)) = ctx.metadata_bin("x-echo-bin") {
        ctx.set_header_bin("x-echo-bin", &bytes).unwrap();
        ctx.set_trailer_bin("x-echo-trailing-bin", &bytes).unwrap();
    }
    ctx.set_trailer("x-bye", label);
}

async fn server(app: &Arc<App>, label: &'static str) -> ServerHandle {
    let mut s = Server::new(app.clone(), Name::new("org", "ns", label));
    s.register_unary_unary(SVC, "Unary", move |m: Msg, ctx: Context| async move {
        stamp(&ctx, label);
        Ok::<_, RpcError>(m)
    });
    s.register_unary_stream(SVC, "Stream", move |m: Msg, ctx: Context| async move {
        stamp(&ctx, label);
        Ok::<_, RpcError>(stream::iter([Ok(m.clone()), Ok(m)]))
    });
    s.register_unary_unary(SVC, "Fail", move |_: Msg, ctx: Context| async move {
        stamp(&ctx, label);
        Err::<Msg, _>(RpcError::new(Code::FailedPrecondition, "no"))
    });
    bounded(s.start()).await.unwrap()
}

struct Net {
    _service: Service,
    client: Arc<App>,
    _servers: Vec<ServerHandle>,
}

async fn net(wire: Wire, labels: &[&'static str]) -> Net {
    let service = Service::new();
    let mut servers = Vec::new();
    for label in labels {
        let a = app(&service, &format!("org/ns/{label}"), wire).await;
        servers.push(server(&a, label).await);
    }
    let client = app(&service, "org/ns/client", wire).await;
    Net {
        _service: service,
        client,
        _servers: servers,
    }
}

fn opts() -> CallOptions {
    CallOptions::with_timeout(Duration::from_secs(30))
        .metadata_bin("x-echo-bin", &[0xab, 0x00, 0xff])
        .unwrap()
}

fn member(label: &str) -> Name {
    Name::new("org", "ns", label)
}

async fn a_unary_response_carries_headers_and_trailers(wire: Wire) {
    let n = net(wire, &["a"]).await;
    let ch = Channel::new(n.client.clone(), vec![member("a")]).unwrap();
    let msg = Msg { text: "hi".into() };
    let r = bounded(ch.unary_with_metadata::<_, Msg>(SVC, "Unary", msg.clone(), opts()))
        .await
        .unwrap();
    assert_eq!(r.get_ref(), &msg);
    assert_eq!(r.metadata()["x-who"], "a");
    assert_eq!(
        r.metadata().get_bin("x-echo-bin"),
        Some(Ok(vec![0xab, 0x00, 0xff]))
    );
    assert_eq!(r.trailers()["x-bye"], "a");
    assert_eq!(
        r.trailers().get_bin("x-echo-trailing-bin"),
        Some(Ok(vec![0xab, 0x00, 0xff]))
    );
    // Headers and trailers stay apart, and the wire's prefixes are gone.
    assert!(!r.metadata().contains_key("x-bye"));
    assert!(r.metadata().keys().all(|k| !k.starts_with("slimrpc-")));
    assert!(r.trailers().keys().all(|k| !k.starts_with("slimrpc-")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_response_carries_headers_and_binary_trailers_v3() {
    a_unary_response_carries_headers_and_trailers(Wire::V3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_response_carries_headers_and_binary_trailers_v1() {
    a_unary_response_carries_headers_and_trailers(Wire::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_gets_headers_with_its_first_response_and_trailers_at_its_end() {
    let n = net(Wire::V3, &["a"]).await;
    let ch = Channel::new(n.client.clone(), vec![member("a")]).unwrap();
    let sink = ResponseMetadataSink::new();
    let mut s = ch.unary_stream::<_, Msg>(SVC, "Stream", Msg::default(), opts().capture(&sink));
    bounded(s.next()).await.unwrap().unwrap();
    assert_eq!(sink.headers()["x-who"], "a");
    let rest: Vec<_> = bounded(s.collect::<Vec<_>>()).await;
    assert_eq!(rest.len(), 1);
    assert_eq!(sink.trailers()["x-bye"], "a");
    assert_eq!(
        sink.trailers().get_bin("x-echo-trailing-bin"),
        Some(Ok(vec![0xab, 0x00, 0xff]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_still_delivers_the_handlers_headers_and_trailers() {
    let n = net(Wire::V3, &["a"]).await;
    let ch = Channel::new(n.client.clone(), vec![member("a")]).unwrap();
    let sink = ResponseMetadataSink::new();
    let e = bounded(ch.unary::<_, Msg>(SVC, "Fail", Msg::default(), opts().capture(&sink)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(sink.headers()["x-who"], "a");
    assert_eq!(sink.trailers()["x-bye"], "a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_call_reports_each_members_metadata_under_its_name() {
    let n = net(Wire::V3, &["a", "b"]).await;
    let ch = Channel::new(n.client.clone(), vec![member("a"), member("b")]).unwrap();
    for method in ["Unary", "Stream", "Fail"] {
        let sink = ResponseMetadataSink::new();
        let items: Vec<_> = bounded(
            ch.group_unary_stream::<_, Msg>(SVC, method, Msg::default(), opts().capture(&sink))
                .collect::<Vec<_>>(),
        )
        .await;
        assert!(!items.is_empty(), "{method}");
        for label in ["a", "b"] {
            let m = sink.member(&member(label)).expect("member answered");
            assert_eq!(m.headers["x-who"], label, "{method}");
            assert_eq!(m.trailers["x-bye"], label, "{method}");
        }
        // Each item's source finds that member's metadata.
        for item in items.iter().flatten() {
            let m = sink.member(&item.source).unwrap();
            assert_eq!(m.headers["x-who"], item.source.strings()[2]);
        }
        assert_eq!(sink.members().len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_sets_nothing_gives_empty_metadata() {
    let service = Service::new();
    let a = app(&service, "org/ns/plain", Wire::V3).await;
    let mut s = Server::new(a.clone(), member("plain"));
    s.register_unary_unary(
        SVC,
        "Unary",
        |m: Msg, _ctx| async move { Ok::<_, RpcError>(m) },
    );
    let _h = bounded(s.start()).await.unwrap();
    let client = app(&service, "org/ns/client", Wire::V3).await;
    let ch = Channel::new(client, vec![member("plain")]).unwrap();
    let r = bounded(ch.unary_with_metadata::<_, Msg>(SVC, "Unary", Msg::default(), opts()))
        .await
        .unwrap();
    assert!(r.metadata().is_empty());
    assert!(r.trailers().is_empty());
}
