//! Cancellation on the wire, over the real transport in one process, on both
//! SLIM wire generations: a caller that drops its call tells the server(s)
//! with a cancel frame (`slimrpc-code=1`, `slimrpc-dir=req`); the handler's
//! `Context` reports it, a request stream it reads ends with `Cancelled`,
//! and the handler is stopped. In a group every member is told. A finished
//! call sends nothing, and a cancel from anyone but the caller is ignored.

mod common;

use common::{Wire, app, bounded};

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use slim_transport::Name;
use slim_transport::app::App;
use slim_transport::service::Service;
use slimrpc::{CallOptions, Channel, Code, Context, RequestStream, Server, ServerHandle};
use tokio::sync::mpsc;

const SVC: &str = "example_service.Test";

#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
}

/// What the handlers report to the test.
#[derive(Debug, PartialEq)]
enum Seen {
    /// A handler started (`label`).
    Started(&'static str),
    /// A handler saw its context cancelled.
    Cancelled(&'static str),
    /// A handler's request stream ended with this code.
    StreamEnded(&'static str, Code),
}

/// A server whose `Hang` handler waits for its cancellation (or ten
/// minutes), whose `HangReading` handler reads its requests until they
/// end, and whose `Echo` answers at once.
async fn server(
    app: &Arc<App>,
    label: &'static str,
    seen: mpsc::UnboundedSender<Seen>,
) -> ServerHandle {
    let mut s = Server::new(app.clone(), Name::new("org", "ns", label));
    let tx = seen.clone();
    s.register_unary_unary(SVC, "Hang", move |_: Msg, ctx: Context| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(Seen::Started(label));
            tokio::select! {
                _ = ctx.cancelled() => {
                    assert!(ctx.is_cancelled());
                    let _ = tx.send(Seen::Cancelled(label));
                }
                _ = tokio::time::sleep(Duration::from_secs(600)) => {}
            }
            Ok(Msg::default())
        }
    });
    let tx = seen.clone();
    s.register_stream_unary(
        SVC,
        "HangReading",
        move |mut requests: RequestStream<Msg>, _ctx: Context| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Seen::Started(label));
                loop {
                    match requests.next().await {
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => {
                            let _ = tx.send(Seen::StreamEnded(label, e.code()));
                            return Err(e);
                        }
                        None => {
                            let _ = tx.send(Seen::StreamEnded(label, Code::Ok));
                            return Ok(Msg::default());
                        }
                    }
                }
            }
        },
    );
    s.register_unary_unary(SVC, "Echo", |m: Msg, _ctx| async move { Ok(m) });
    bounded(s.start()).await.unwrap()
}

struct Net {
    _service: Service,
    client: Arc<App>,
    servers: Vec<ServerHandle>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

async fn net(wire: Wire, labels: &[&'static str]) -> Net {
    let service = Service::new();
    let (tx, seen) = mpsc::unbounded_channel();
    let mut servers = Vec::new();
    for label in labels {
        let a = app(&service, &format!("org/ns/{label}"), wire).await;
        servers.push(server(&a, label, tx.clone()).await);
    }
    let client = app(&service, "org/ns/client", wire).await;
    Net {
        _service: service,
        client,
        servers,
        seen,
    }
}

fn member(label: &str) -> Name {
    Name::new("org", "ns", label)
}

async fn next_seen(n: &mut Net) -> Seen {
    bounded(n.seen.recv()).await.expect("a handler reports")
}

/// Waits until no handler runs on any server.
async fn no_handler_left(n: &Net) {
    bounded(async {
        while n.servers.iter().any(|s| s.active_handlers() > 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

fn long() -> CallOptions {
    CallOptions::with_timeout(Duration::from_secs(3600))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_unary_call_cancels_its_handler_and_leaves_nothing_running() {
    for wire in [Wire::V1, Wire::V3] {
        let mut n = net(wire, &["s1"]).await;
        let ch = Channel::new(n.client.clone(), vec![member("s1")]).unwrap();
        let call = ch.unary::<Msg, Msg>(SVC, "Hang", Msg::default(), long());
        let mut call = Box::pin(call);
        tokio::select! {
            _ = &mut call => panic!("the hanging call answered"),
            seen = n.seen.recv() => assert_eq!(seen, Some(Seen::Started("s1")), "{wire:?}"),
        }
        drop(call);
        assert_eq!(next_seen(&mut n).await, Seen::Cancelled("s1"), "{wire:?}");
        no_handler_left(&n).await;
        assert_eq!(ch.pending_calls(), 0, "{wire:?}");
        // The session goes on serving calls.
        let echo: Msg = bounded(ch.unary(
            SVC,
            "Echo",
            Msg {
                text: "after".into(),
            },
            CallOptions::default(),
        ))
        .await
        .unwrap();
        assert_eq!(echo.text, "after");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_streaming_call_ends_the_handlers_request_stream_with_cancelled() {
    for wire in [Wire::V1, Wire::V3] {
        let mut n = net(wire, &["s1"]).await;
        let ch = Channel::new(n.client.clone(), vec![member("s1")]).unwrap();
        // Requests that never end: the call only stops when dropped.
        let requests = stream::iter([Msg::default()]).chain(stream::pending());
        let call = ch.stream_unary::<Msg, Msg>(SVC, "HangReading", requests, long());
        let mut call = Box::pin(call);
        tokio::select! {
            _ = &mut call => panic!("the call answered"),
            seen = n.seen.recv() => assert_eq!(seen, Some(Seen::Started("s1")), "{wire:?}"),
        }
        drop(call);
        assert_eq!(
            next_seen(&mut n).await,
            Seen::StreamEnded("s1", Code::Cancelled),
            "{wire:?}"
        );
        no_handler_left(&n).await;
        assert_eq!(n.servers[0].open_streams(), 0, "{wire:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_group_call_cancels_it_on_every_member() {
    for wire in [Wire::V1, Wire::V3] {
        let mut n = net(wire, &["g1", "g2", "g3"]).await;
        let ch = Channel::new(
            n.client.clone(),
            vec![member("g1"), member("g2"), member("g3")],
        )
        .unwrap();
        let mut call = ch.group_unary::<Msg, Msg>(SVC, "Hang", Msg::default(), long());
        let mut started = Vec::new();
        while started.len() < 3 {
            tokio::select! {
                _ = call.next() => panic!("a hanging member answered"),
                seen = n.seen.recv() => started.push(seen.expect("reports")),
            }
        }
        drop(call);
        let mut cancelled: Vec<Seen> = Vec::new();
        for _ in 0..3 {
            cancelled.push(next_seen(&mut n).await);
        }
        for label in ["g1", "g2", "g3"] {
            assert!(
                cancelled.contains(&Seen::Cancelled(label)),
                "{wire:?}: {label} was not told: {cancelled:?}"
            );
        }
        no_handler_left(&n).await;
        assert_eq!(ch.pending_calls(), 0);
    }
}

/// Cancel frames the node forwarded so far (v1 wire; metadata travels in
/// clear beside the MLS-protected payload).
fn cancel_frames(tap: &mut mpsc::Receiver<slim_transport::wire::Message>) -> usize {
    let mut n = 0;
    while let Ok(msg) = tap.try_recv() {
        let cancel = msg.metadata.get("slimrpc-code").map(String::as_str) == Some("1")
            && msg.metadata.get("slimrpc-dir").map(String::as_str) == Some("req");
        n += usize::from(cancel);
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_ended_normally_send_no_cancel_frame_and_a_dropped_one_sends_one() {
    let mut n = net(Wire::V1, &["s1"]).await;
    let mut tap = n._service.tap_publishes(100_000);
    let ch = Channel::new(n.client.clone(), vec![member("s1")]).unwrap();
    for i in 0..20 {
        let echo: Msg = bounded(ch.unary(
            SVC,
            "Echo",
            Msg {
                text: i.to_string(),
            },
            CallOptions::default(),
        ))
        .await
        .unwrap();
        assert_eq!(echo.text, i.to_string());
    }
    no_handler_left(&n).await;
    assert_eq!(cancel_frames(&mut tap), 0);
    let call = ch.unary::<Msg, Msg>(SVC, "Hang", Msg::default(), long());
    let mut call = Box::pin(call);
    tokio::select! {
        _ = &mut call => panic!("the hanging call answered"),
        seen = n.seen.recv() => assert_eq!(seen, Some(Seen::Started("s1"))),
    }
    drop(call);
    assert_eq!(next_seen(&mut n).await, Seen::Cancelled("s1"));
    assert_eq!(cancel_frames(&mut tap), 1);
}
