//! Interceptors over the real transport in one process: a client
//! interceptor adds credentials, a server interceptor checks them and
//! answers `Unauthenticated` without running the handler, per-service
//! interceptors apply to their service only, a refusing client interceptor
//! sends nothing, and in a group each member's interceptor decides for
//! that member.

mod common;

use common::{Wire, app, bounded};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use slim_transport::Name;
use slim_transport::app::App;
use slim_transport::service::Service;
use slimrpc::{CallOptions, Channel, Code, Context, Request, RpcError, Server, ServerHandle};

const SVC: &str = "test.Guarded";
const OPEN: &str = "test.Open";

#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
}

#[derive(Default)]
struct Counts {
    /// Calls the server-wide (metrics) interceptor saw.
    seen: AtomicUsize,
    /// Handlers that ran.
    handled: AtomicUsize,
}

/// A server whose `test.Guarded` service wants `authorization: Bearer
/// <token>` and tells its handler the user; `test.Open` wants nothing.
async fn server(
    app: &Arc<App>,
    label: &str,
    token: &'static str,
    counts: Arc<Counts>,
) -> ServerHandle {
    let mut s = Server::new(app.clone(), Name::new("org", "ns", label));
    let c = counts.clone();
    s.add_interceptor(move |r: Request<()>| {
        c.seen.fetch_add(1, Ordering::SeqCst);
        tracing::info!(service = r.service(), method = r.method(), caller = ?r.caller(), "call");
        Ok(r)
    });
    s.intercept_service(SVC, move |mut r: Request<()>| {
        let expected = format!("Bearer {token}");
        match r.metadata().get("authorization") {
            Some(v) if *v == expected => {
                r.metadata_mut().insert("x-user".into(), "alice".into());
                Ok(r)
            }
            _ => Err(RpcError::new(Code::Unauthenticated, "invalid token")),
        }
    });
    for service in [SVC, OPEN] {
        let c = counts.clone();
        s.register_unary_unary(service, "Who", move |_: Msg, ctx: Context| {
            let c = c.clone();
            async move {
                c.handled.fetch_add(1, Ordering::SeqCst);
                Ok::<_, RpcError>(Msg {
                    text: ctx.metadata().get("x-user").cloned().unwrap_or_default(),
                })
            }
        });
    }
    bounded(s.start()).await.unwrap()
}

fn opts() -> CallOptions {
    CallOptions::with_timeout(Duration::from_secs(30))
}

fn bearer(
    token: &'static str,
) -> impl FnMut(Request<()>) -> Result<Request<()>, RpcError> + Send + 'static {
    move |mut r: Request<()>| {
        r.metadata_mut()
            .insert("authorization".into(), format!("Bearer {token}"));
        Ok(r)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_interceptor_adds_the_token_the_server_interceptor_checks() {
    let service = Service::new();
    let counts = Arc::new(Counts::default());
    let a = app(&service, "org/ns/guard", Wire::V3).await;
    let _s = server(&a, "guard", "s3cret", counts.clone()).await;
    let client = app(&service, "org/ns/client", Wire::V3).await;
    let plain = Channel::new(client, vec![Name::new("org", "ns", "guard")]).unwrap();

    // No token: refused before the handler.
    let e = bounded(plain.unary::<_, Msg>(SVC, "Who", Msg::default(), opts()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert_eq!(e.message(), "invalid token");
    assert_eq!(counts.handled.load(Ordering::SeqCst), 0);

    // The same session, with the token added by an interceptor: the
    // handler sees what the server interceptor added.
    let authed = plain.with_interceptor(bearer("s3cret"));
    let r = bounded(authed.unary::<_, Msg>(SVC, "Who", Msg::default(), opts()))
        .await
        .unwrap();
    assert_eq!(r.text, "alice");

    // A wrong token is refused too.
    let wrong = plain.with_interceptor(bearer("guess"));
    let e = bounded(wrong.unary::<_, Msg>(SVC, "Who", Msg::default(), opts()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // The other service has no per-service interceptor.
    let r = bounded(plain.unary::<_, Msg>(OPEN, "Who", Msg::default(), opts()))
        .await
        .unwrap();
    assert_eq!(r.text, "");
    // The server-wide interceptor saw every call; two handlers ran.
    assert_eq!(counts.seen.load(Ordering::SeqCst), 4);
    assert_eq!(counts.handled.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_client_interceptor_fails_the_call_and_sends_nothing() {
    let service = Service::new();
    let counts = Arc::new(Counts::default());
    let a = app(&service, "org/ns/guard", Wire::V3).await;
    let _s = server(&a, "guard", "s3cret", counts.clone()).await;
    let client = app(&service, "org/ns/client", Wire::V3).await;
    let ch = Channel::new(client, vec![Name::new("org", "ns", "guard")])
        .unwrap()
        .with_interceptor(|r: Request<()>| {
            if r.method() == "Who" && r.service() == OPEN {
                Err(RpcError::new(Code::PermissionDenied, "not from here"))
            } else {
                Ok(r)
            }
        });
    let e = bounded(ch.unary::<_, Msg>(OPEN, "Who", Msg::default(), opts()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let items: Vec<_> = bounded(
        ch.unary_stream::<_, Msg>(OPEN, "Who", Msg::default(), opts())
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0].as_ref().unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        counts.seen.load(Ordering::SeqCst),
        0,
        "nothing reached the server"
    );
    assert_eq!(ch.pending_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_group_each_members_interceptor_decides_for_that_member() {
    let service = Service::new();
    let counts = Arc::new(Counts::default());
    let a = app(&service, "org/ns/m1", Wire::V3).await;
    let b = app(&service, "org/ns/m2", Wire::V3).await;
    let _a = server(&a, "m1", "one", counts.clone()).await;
    let _b = server(&b, "m2", "two", counts.clone()).await;
    let client = app(&service, "org/ns/client", Wire::V3).await;
    let ch = Channel::new(
        client,
        vec![Name::new("org", "ns", "m1"), Name::new("org", "ns", "m2")],
    )
    .unwrap()
    .with_interceptor(bearer("one"));
    let items: Vec<_> = bounded(
        ch.group_unary::<_, Msg>(SVC, "Who", Msg::default(), opts())
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(items.len(), 2, "{items:?}");
    let ok: Vec<_> = items.iter().filter_map(|i| i.as_ref().ok()).collect();
    assert_eq!(ok.len(), 1, "{items:?}");
    assert_eq!(ok[0].source.strings()[2], "m1");
    assert_eq!(ok[0].message.text, "alice");
    let err = items.iter().find_map(|i| i.as_ref().err()).unwrap();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(matches!(err, RpcError::MulticastRpc { origin, .. } if origin.contains("m2")));
}
