//! Chaos tests with real processes (issue 21): our example `server` binary as separate
//! processes behind our node on 127.0.0.1, and a Rust channel in this process linked to the
//! node over gRPC (MLS on, as every SlimRPC session). Every process is killed by its PID
//! when its `Child` is dropped, whatever the test's outcome.
//!
//! * A member SIGKILLed or SIGSTOPped in the middle of a call, for all four group shapes
//!   and all four point-to-point shapes: the call gets the survivors' answers, then ends
//!   with the error the caller is owed (group: `MulticastSessionClosed` naming the member
//!   missing; point-to-point: the session's end), never hangs, and the next call reaches
//!   the member again once it is back (restarted, or thawed with SIGCONT).
//! * Faults on the links, injected by a TCP proxy between each process and the node
//!   (`slimrpc_testkit::proxy`): with 30 ms added each way every group shape delivers
//!   everything in order; a member whose link is black-holed mid-call is reported
//!   missing like a dead one, and answers again once its link clears.
//! * A caller that leaves a stream unread (group and point-to-point): that call alone
//!   ends with `ResourceExhausted` after what it holds; the other calls of the same
//!   channel go on, on the same session.
//! * A memory soak: 2 000 group calls; the resident memory of this process and of a
//!   server stays within a generous bound.
//!
//! Calls ping their members every second, so a dead or frozen member is declared gone
//! after three missed rounds. No assertion is about time: every wait is a liveness bound.
//! The tests take turns (one lock), so their processes do not compete for the CPU and
//! stall each other's pings.

use std::process::Command;
use std::time::Duration;

use futures::channel::mpsc;
use futures::{SinkExt, Stream, StreamExt};
use slim_transport::service::Service;
use slimrpc::{CallOptions, Channel, ChannelOptions, Code, RpcError};
use slimrpc_examples::example_service::{ExampleRequest, ExampleResponse};
use slimrpc_examples::{app, connect, name};
use slimrpc_testkit::proxy::Proxy;
use slimrpc_testkit::{Child, rss_kib};

mod common;

use common::{LIMIT, node, spawn_ready};

const SVC: &str = "example_service.Test";
const SERVER: &str = env!("CARGO_BIN_EXE_server");

/// One chaos test at a time (see the module docs).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Our example server `agntcy/grpc/<instance>` as a process, once it is subscribed.
async fn server(instance: &str, url: &str) -> Child {
    let mut cmd = Command::new(SERVER);
    // The clients of these tests are in-process apps on the v1 wire.
    cmd.args(["--instance", instance, "--slim", url, "--protocol", "1"]);
    spawn_ready(&format!("server-{instance}"), cmd, "SLIM_RPC_SERVER_READY").await
}

/// A channel from a fresh client app linked to the node, pinging every second.
async fn channel(
    url: &str,
    client: &str,
    members: &[&str],
    response_buffer: Option<usize>,
) -> (Service, Channel) {
    let (service, conn) = connect(url).await.expect("linked to the node");
    let app = app(&service, client).await.expect("client app");
    app.subscribe(app.name(), Some(conn))
        .await
        .expect("client subscribed");
    let options = ChannelOptions {
        connection: Some(conn),
        ping_interval: Some(Duration::from_secs(1)),
        response_buffer,
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

fn opts() -> CallOptions {
    CallOptions::with_timeout(LIMIT)
}

async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(LIMIT + Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: hung"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    UnaryUnary,
    UnaryStream,
    StreamUnary,
    StreamStream,
}

const SHAPES: [Shape; 4] = [
    Shape::UnaryUnary,
    Shape::UnaryStream,
    Shape::StreamUnary,
    Shape::StreamStream,
];

impl Shape {
    fn streams_requests(self) -> bool {
        matches!(self, Shape::StreamUnary | Shape::StreamStream)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL: the process is gone; it is restarted afterwards.
    Kill,
    /// SIGSTOP: the process is frozen; SIGCONT afterwards.
    Freeze,
}

/// A group item as the tests compare it: (member instance, text) or the error.
type Seen = Result<(String, String), RpcError>;

/// Polls `call` in a task (a call only sends its requests while polled) and hands
/// every item over as it arrives; the receiver ends when the call did.
fn drive<T, S>(call: S) -> tokio::sync::mpsc::UnboundedReceiver<T>
where
    T: Send + 'static,
    S: Stream<Item = T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut call = Box::pin(call);
        while let Some(item) = call.next().await {
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    rx
}

async fn next_of<T>(rx: &mut tokio::sync::mpsc::UnboundedReceiver<T>) -> Option<T> {
    bounded("the call made progress", rx.recv()).await
}

fn signal(child: &mut Child, fault: Fault) {
    match fault {
        // Reaping blocks (briefly); keep the runtime's other tasks going meanwhile.
        Fault::Kill => tokio::task::block_in_place(|| child.kill()),
        Fault::Freeze => child.freeze(),
    }
}

/// Brings the victim back after `fault`.
async fn recover(victim: &mut Child, fault: Fault, instance: &str, url: &str) {
    match fault {
        Fault::Kill => *victim = server(instance, url).await,
        Fault::Freeze => victim.thaw(),
    }
}

// ---- group -------------------------------------------------------------------------

/// A group call of `shape` during which `victim` suffers `fault`: every item it yields.
async fn group_call_with_fault(
    ch: &Channel,
    shape: Shape,
    victim: &mut Child,
    fault: Fault,
) -> Vec<Seen> {
    group_call_with(ch, shape, || signal(victim, fault)).await
}

/// A group call of `shape` during which `inject` strikes one member: every item it yields.
async fn group_call_with(ch: &Channel, shape: Shape, inject: impl FnOnce()) -> Vec<Seen> {
    let mut inject = Some(inject);
    let mut strike = move || {
        if let Some(f) = inject.take() {
            f();
        }
    };
    let (mut requests, rx) = mpsc::unbounded::<ExampleRequest>();
    let call = match shape {
        Shape::UnaryUnary => {
            ch.group_unary::<_, ExampleResponse>(SVC, "ExampleUnaryUnary", req("x", 1), opts())
        }
        Shape::UnaryStream => ch.group_unary_stream::<_, ExampleResponse>(
            SVC,
            "ExampleUnaryStream",
            req("x", 1),
            opts(),
        ),
        Shape::StreamUnary => {
            ch.group_stream_unary::<_, ExampleResponse>(SVC, "ExampleStreamUnary", rx, opts())
        }
        Shape::StreamStream => {
            ch.group_stream_stream::<_, ExampleResponse>(SVC, "ExampleStreamStream", rx, opts())
        }
    };
    let call = call.map(|r| r.map(|i| (i.source.strings()[2].clone(), i.message.example_string)));
    let mut seen = Vec::new();
    if !shape.streams_requests() {
        // The server answers a unary request at once: the member dies while the
        // session still counts it, and the call is made to it.
        strike();
    }
    let mut items = drive(call);
    if shape.streams_requests() {
        requests.send(req("before", 1)).await.unwrap();
        if shape == Shape::StreamStream {
            // Every member echoed: the call is under way on all three.
            for _ in 0..3 {
                seen.push(next_of(&mut items).await.expect("an echo"));
            }
        }
        strike();
        requests.send(req("after", 2)).await.unwrap();
        requests.close_channel();
    }
    while let Some(item) = next_of(&mut items).await {
        seen.push(item);
    }
    seen
}

/// The texts each survivor sends for `shape` once the victim is gone.
fn survivor_texts(shape: Shape) -> Vec<String> {
    match shape {
        Shape::UnaryUnary => vec!["Hello, World!".into()],
        Shape::UnaryStream => (0..5).map(|i| format!("Response {i}")).collect(),
        Shape::StreamUnary => vec!["Saw: before, after".into()],
        Shape::StreamStream => vec!["Echo: after".into()],
    }
}

/// Checks a group call's items: the survivors' full answers, then exactly one error,
/// the one owed for `victim` (or, had the session noticed the death before the call
/// was made, the failed re-invitation of it).
fn assert_group_outcome(shape: Shape, seen: &[Seen], members: &[&str], victim: &str) {
    let (last, items) = seen.split_last().expect("the call yielded something");
    let ok: Vec<&(String, String)> = items
        .iter()
        .map(|i| {
            i.as_ref()
                .unwrap_or_else(|e| panic!("{shape:?}: early error {e}"))
        })
        .collect();
    let label = |m: &str| format!("agntcy/grpc/{m}");
    eprintln!("group {shape:?}: {} answers, then {last:?}", ok.len());
    match last {
        Err(RpcError::MulticastSessionClosed {
            completed,
            total,
            received,
            missing,
        }) => {
            assert_eq!(missing, &vec![label(victim)], "{shape:?}");
            assert_eq!((*completed, *total), (2, 3), "{shape:?}");
            let mut want: Vec<String> = members
                .iter()
                .filter(|m| **m != victim)
                .map(|m| label(m))
                .collect();
            want.sort();
            let mut got = received.clone();
            got.sort();
            assert_eq!(got, want, "{shape:?}");
            for survivor in members.iter().filter(|m| **m != victim) {
                let texts: Vec<&str> = ok
                    .iter()
                    .filter(|(from, text)| {
                        from == survivor
                            && !(shape == Shape::StreamStream && text.ends_with("before"))
                    })
                    .map(|(_, text)| text.as_str())
                    .collect();
                assert_eq!(texts, survivor_texts(shape), "{shape:?}: {survivor}");
            }
            let late_from_victim = ok
                .iter()
                .filter(|(from, text)| from == victim && !text.ends_with("before"))
                .count();
            assert_eq!(late_from_victim, 0, "{shape:?}: nothing after the fault");
        }
        Err(e @ RpcError::Rpc { .. }) if e.code() == Code::Unavailable => {
            assert!(ok.is_empty(), "{shape:?}: {e}");
            assert!(e.to_string().contains(victim), "{shape:?}: {e}");
        }
        other => panic!("{shape:?}: expected the owed error, got {other:?} after {ok:?}"),
    }
}

/// Every member answers a group unary call (the group is whole again).
async fn assert_group_whole(ch: &Channel, members: &[&str]) {
    let call = ch.group_unary::<_, ExampleResponse>(SVC, "ExampleUnaryUnary", req("w", 0), opts());
    let all: Vec<_> = bounded("a whole-group call", call.collect::<Vec<_>>()).await;
    let mut from: Vec<String> = all
        .into_iter()
        .map(|r| r.expect("every member answers").source.strings()[2].clone())
        .collect();
    from.sort();
    let mut want: Vec<String> = members.iter().map(|m| m.to_string()).collect();
    want.sort();
    assert_eq!(from, want);
}

async fn group_fault_every_shape(fault: Fault, tag: &str) {
    let _turn = SERIAL.lock().await;
    let (_node, url) = node().await;
    let members: Vec<String> = (1..=3).map(|i| format!("chaos-{tag}-g{i}")).collect();
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    let _s1 = server(members[0], &url).await;
    let _s2 = server(members[1], &url).await;
    let mut victim = server(members[2], &url).await;
    let (_client, ch) = channel(&url, &format!("chaos-{tag}-client"), &members, None).await;
    for shape in SHAPES {
        assert_group_whole(&ch, &members).await;
        let seen = group_call_with_fault(&ch, shape, &mut victim, fault).await;
        assert_group_outcome(shape, &seen, &members, members[2]);
        assert_eq!(ch.pending_calls(), 0, "{shape:?}: nothing left registered");
        recover(&mut victim, fault, members[2], &url).await;
    }
    assert_group_whole(&ch, &members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_killed_mid_call_is_reported_missing_in_every_shape_and_rejoins() {
    group_fault_every_shape(Fault::Kill, "k").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_member_frozen_mid_call_is_reported_missing_in_every_shape_and_rejoins() {
    group_fault_every_shape(Fault::Freeze, "f").await;
}

// ---- faults on the links ----------------------------------------------------------

/// The node's address, from its URL.
fn addr_of(url: &str) -> std::net::SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .expect("the node's URL is http://127.0.0.1:<port>")
}

/// Three servers and a client, each linked to the node through its own proxy.
async fn behind_proxies(
    url: &str,
    tag: &str,
    members: &[&str],
) -> (Vec<Proxy>, Vec<Child>, Service, Channel) {
    let node = addr_of(url);
    let mut proxies = Vec::new();
    let mut servers = Vec::new();
    for m in members {
        let p = Proxy::start(node);
        servers.push(server(m, &p.url()).await);
        proxies.push(p);
    }
    let p = Proxy::start(node);
    let (client, ch) = channel(&p.url(), &format!("chaos-{tag}-client"), members, None).await;
    proxies.push(p);
    (proxies, servers, client, ch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_group_shape_over_delayed_links_delivers_everything_in_order() {
    let _turn = SERIAL.lock().await;
    let (_node, url) = node().await;
    let members = ["chaos-d-g1", "chaos-d-g2", "chaos-d-g3"];
    let (proxies, _servers, _client, ch) = behind_proxies(&url, "d", &members).await;
    for p in &proxies {
        p.set_delay(Duration::from_millis(30));
    }
    assert_group_whole(&ch, &members).await;
    let by_member = |all: Vec<Result<slimrpc::MulticastItem<ExampleResponse>, RpcError>>| {
        let mut m: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for r in all {
            let item = r.expect("no error over a slow link");
            m.entry(item.source.strings()[2].clone())
                .or_default()
                .push(item.message.example_string);
        }
        assert_eq!(m.len(), 3, "every member answered: {m:?}");
        m
    };
    let s =
        ch.group_unary_stream::<_, ExampleResponse>(SVC, "ExampleUnaryStream", req("x", 1), opts());
    for texts in by_member(bounded("unary-stream", s.collect()).await).values() {
        assert_eq!(texts, &survivor_texts(Shape::UnaryStream));
    }
    let n = 50;
    let reqs = || futures::stream::iter((0..n).map(|i| req(&format!("r{i}"), i)));
    let s = ch.group_stream_unary::<_, ExampleResponse>(SVC, "ExampleStreamUnary", reqs(), opts());
    let want = format!(
        "Saw: {}",
        (0..n)
            .map(|i| format!("r{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for texts in by_member(bounded("stream-unary", s.collect()).await).values() {
        assert_eq!(texts, &vec![want.clone()]);
    }
    let s =
        ch.group_stream_stream::<_, ExampleResponse>(SVC, "ExampleStreamStream", reqs(), opts());
    let want: Vec<String> = (0..n).map(|i| format!("Echo: r{i}")).collect();
    for texts in by_member(bounded("stream-stream", s.collect()).await).values() {
        assert_eq!(texts, &want, "all echoes, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_behind_a_black_holed_link_is_reported_missing_in_every_shape_and_answers_once_it_clears()
 {
    let _turn = SERIAL.lock().await;
    let (_node, url) = node().await;
    let members = ["chaos-b-g1", "chaos-b-g2", "chaos-b-g3"];
    let (proxies, _servers, _client, ch) = behind_proxies(&url, "b", &members).await;
    for shape in SHAPES {
        assert_group_whole(&ch, &members).await;
        let seen = group_call_with(&ch, shape, || proxies[2].stall()).await;
        assert_group_outcome(shape, &seen, &members, members[2]);
        assert_eq!(ch.pending_calls(), 0, "{shape:?}: nothing left registered");
        proxies[2].resume();
    }
    assert_group_whole(&ch, &members).await;
}

// ---- point-to-point ------------------------------------------------------------------

/// A point-to-point call of `shape` during which the server suffers `fault`.
async fn p2p_call_with_fault(
    ch: &Channel,
    shape: Shape,
    victim: &mut Child,
    fault: Fault,
) -> Vec<Result<String, RpcError>> {
    let (mut requests, rx) = mpsc::unbounded::<ExampleRequest>();
    if !shape.streams_requests() {
        signal(victim, fault);
    }
    let mut seen = Vec::new();
    let text = |r: ExampleResponse| r.example_string;
    let mut items = match shape {
        Shape::UnaryUnary => {
            let ch = ch.clone();
            drive(futures::stream::once(async move {
                ch.unary::<_, ExampleResponse>(SVC, "ExampleUnaryUnary", req("x", 1), opts())
                    .await
                    .map(text)
            }))
        }
        Shape::UnaryStream => drive(
            ch.unary_stream::<_, ExampleResponse>(SVC, "ExampleUnaryStream", req("x", 1), opts())
                .map(move |r| r.map(text)),
        ),
        Shape::StreamUnary => {
            let ch = ch.clone();
            drive(futures::stream::once(async move {
                ch.stream_unary::<_, ExampleResponse>(SVC, "ExampleStreamUnary", rx, opts())
                    .await
                    .map(text)
            }))
        }
        Shape::StreamStream => drive(
            ch.stream_stream::<_, ExampleResponse>(SVC, "ExampleStreamStream", rx, opts())
                .map(move |r| r.map(text)),
        ),
    };
    if shape.streams_requests() {
        requests.send(req("before", 1)).await.unwrap();
        if shape == Shape::StreamStream {
            seen.push(next_of(&mut items).await.expect("an echo"));
        }
        signal(victim, fault);
        requests.send(req("after", 2)).await.unwrap();
        requests.close_channel();
    }
    while let Some(item) = next_of(&mut items).await {
        seen.push(item);
    }
    seen
}

async fn p2p_fault_every_shape(fault: Fault, tag: &str) {
    let _turn = SERIAL.lock().await;
    let (_node, url) = node().await;
    let instance = format!("chaos-{tag}-p2p");
    let mut victim = server(&instance, &url).await;
    let (_client, ch) = channel(&url, &format!("chaos-{tag}-p2p-client"), &[&instance], None).await;
    assert!(!ch.is_group());
    for shape in SHAPES {
        let hello = bounded(
            "a call to a live server",
            ch.unary::<_, ExampleResponse>(SVC, "ExampleUnaryUnary", req("w", 0), opts()),
        )
        .await
        .unwrap_or_else(|e| panic!("{shape:?}: the server answers again: {e}"));
        assert_eq!(hello.example_string, "Hello, World!");
        let seen = p2p_call_with_fault(&ch, shape, &mut victim, fault).await;
        let (last, items) = seen.split_last().expect("the call yielded something");
        for item in items {
            let text = item
                .as_ref()
                .unwrap_or_else(|e| panic!("{shape:?}: early error {e}"));
            assert_eq!(
                text, "Echo: before",
                "{shape:?}: nothing answered after the fault"
            );
        }
        let end = last.as_ref().expect_err("the call ends with an error");
        eprintln!(
            "p2p {fault:?} {shape:?}: {} answers, then {end}",
            items.len()
        );
        // The session closed under the call (Internal), or, had it noticed before the
        // call was made, no new one could be created (Unavailable).
        assert!(
            matches!(end.code(), Code::Internal | Code::Unavailable),
            "{shape:?}: {end}"
        );
        assert_eq!(ch.pending_calls(), 0, "{shape:?}: nothing left registered");
        recover(&mut victim, fault, &instance, &url).await;
    }
    let back = bounded(
        "a call to the recovered server",
        ch.unary::<_, ExampleResponse>(SVC, "ExampleUnaryUnary", req("w", 0), opts()),
    )
    .await
    .expect("the server answers again");
    assert_eq!(back.example_string, "Hello, World!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_to_point_server_killed_mid_call_ends_it_with_an_error_in_every_shape() {
    p2p_fault_every_shape(Fault::Kill, "k").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_to_point_server_frozen_mid_call_ends_it_with_an_error_in_every_shape() {
    p2p_fault_every_shape(Fault::Freeze, "f").await;
}

// ---- a caller that stops reading -----------------------------------------------------

/// `count` requests `r0`, `r1`, ..., then a request stream that stays open.
fn endless_requests(count: i64) -> impl futures::Stream<Item = ExampleRequest> + Send + 'static {
    futures::stream::iter((0..count).map(|i| req(&format!("r{i}"), i)))
        .chain(futures::stream::pending())
}

/// Waits (bounded) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    bounded(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_stream_ends_alone_with_resource_exhausted_in_group_and_p2p_channels() {
    let _turn = SERIAL.lock().await;
    let (_node, url) = node().await;
    let members = ["chaos-r-g1", "chaos-r-g2", "chaos-r-g3"];
    let _servers = [
        server(members[0], &url).await,
        server(members[1], &url).await,
        server(members[2], &url).await,
    ];
    // Three members echo forty requests each (and the request stream stays
    // open, so more could come) into a call that buffers four and holds at
    // most twenty: it must end, whenever the caller would have read.
    let (_client, ch) = channel(&url, "chaos-r-client", &members, Some(4)).await;
    let mut unread = ch.group_stream_stream::<_, ExampleResponse>(
        SVC,
        "ExampleStreamStream",
        endless_requests(40),
        opts(),
    );
    assert!(
        bounded("the first response", unread.next())
            .await
            .expect("an item")
            .is_ok()
    );
    let session = ch.group_name();
    // The call was ended for holding too much, which freed it.
    eventually("the unread call is ended", || ch.pending_calls() == 0).await;

    // Every shape still works on the same session.
    assert_group_whole(&ch, &members).await;
    let streamed =
        ch.group_unary_stream::<_, ExampleResponse>(SVC, "ExampleUnaryStream", req("x", 1), opts());
    // Read as it comes: 15 responses through a four-response buffer.
    let all: Vec<_> = bounded("a read stream", streamed.collect::<Vec<_>>()).await;
    assert_eq!(all.len(), 15);
    assert!(all.iter().all(Result::is_ok));
    let sums = ch.group_stream_unary::<_, ExampleResponse>(
        SVC,
        "ExampleStreamUnary",
        futures::stream::iter([req("a", 1), req("b", 2)]),
        opts(),
    );
    let sums: Vec<_> = bounded("a stream-unary call", sums.collect::<Vec<_>>()).await;
    assert_eq!(sums.len(), 3);
    assert!(sums.iter().all(|r| {
        r.as_ref()
            .is_ok_and(|i| i.message.example_string == "Saw: a, b")
    }));
    let echoes = ch.group_stream_stream::<_, ExampleResponse>(
        SVC,
        "ExampleStreamStream",
        futures::stream::iter([req("a", 1)]),
        opts(),
    );
    let echoes: Vec<_> = bounded("a stream-stream call", echoes.collect::<Vec<_>>()).await;
    assert_eq!(echoes.len(), 3);
    assert_eq!(ch.group_name(), session, "the same session throughout");

    // The unread caller gets what its call held, then the error, then the end.
    let mut held = 0;
    let end = loop {
        match bounded("the unread call", unread.next()).await {
            Some(Ok(_)) => held += 1,
            Some(Err(e)) => break e,
            None => panic!("the unread call ended without an error after {held} items"),
        }
    };
    assert!(held <= slimrpc::dispatcher::hold_limit(4), "{held}");
    assert_eq!(end.code(), Code::ResourceExhausted, "{end}");
    assert!(bounded("after the end", unread.next()).await.is_none());

    // Point-to-point: thirty echoes into a call that buffers two and holds
    // at most eighteen.
    let (_p2p_client, p2p) = channel(&url, "chaos-r-p2p-client", &members[..1], Some(2)).await;
    let mut unread = p2p.stream_stream::<_, ExampleResponse>(
        SVC,
        "ExampleStreamStream",
        endless_requests(30),
        opts(),
    );
    let first = bounded("the first response", unread.next()).await;
    assert_eq!(
        first.expect("an item").expect("ok").example_string,
        "Echo: r0"
    );
    eventually("the unread call is ended", || p2p.pending_calls() == 0).await;
    let hello = bounded(
        "a unary call",
        p2p.unary::<_, ExampleResponse>(SVC, "ExampleUnaryUnary", req("w", 0), opts()),
    )
    .await
    .expect("the session serves other calls");
    assert_eq!(hello.example_string, "Hello, World!");
    let mut next = 1;
    let end = loop {
        match bounded("the unread call", unread.next()).await {
            Some(Ok(r)) => {
                assert_eq!(r.example_string, format!("Echo: r{next}"), "in order");
                next += 1;
            }
            Some(Err(e)) => break e,
            None => panic!("the unread call ended without an error after {next} items"),
        }
    };
    assert!(next - 1 <= slimrpc::dispatcher::hold_limit(2), "{next}");
    assert_eq!(end.code(), Code::ResourceExhausted, "{end}");
}

// ---- memory soak ---------------------------------------------------------------------

const SOAK_CALLS: usize = 2_000;
const WARM_UP_CALLS: usize = 200;
/// Growth allowed over the soak after warm-up, per process: generous (allocator
/// fragmentation, lazily grown tables), yet far below what keeping per-call state would
/// cost over 2 000 calls.
const SOAK_GROWTH_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_group_calls_leave_memory_flat_in_client_and_servers() {
    let _turn = SERIAL.lock().await;
    let (_node, url) = node().await;
    let members = ["chaos-m-g1", "chaos-m-g2", "chaos-m-g3"];
    let servers = [
        server(members[0], &url).await,
        server(members[1], &url).await,
        server(members[2], &url).await,
    ];
    let (_client, ch) = channel(&url, "chaos-m-client", &members, None).await;
    let me = std::process::id();
    let mut before = None;
    for i in 0..SOAK_CALLS {
        if i == WARM_UP_CALLS {
            before = Some((rss_kib(me), rss_kib(servers[0].pid())));
        }
        let call = ch.group_unary::<_, ExampleResponse>(
            SVC,
            "ExampleUnaryUnary",
            req("soak", i as i64),
            opts(),
        );
        let all: Vec<_> = bounded("a soak call", call.collect::<Vec<_>>()).await;
        assert_eq!(all.len(), 3, "call {i}");
        assert!(all.iter().all(Result::is_ok), "call {i}: {all:?}");
    }
    assert_eq!(ch.pending_calls(), 0);
    let (client_before, server_before) = before.expect("warmed up");
    for (who, was, now) in [
        ("client", client_before, rss_kib(me)),
        ("server", server_before, rss_kib(servers[0].pid())),
    ] {
        let (was, now) = (was.expect("RSS readable"), now.expect("RSS readable"));
        assert!(
            now <= was + SOAK_GROWTH_KIB,
            "{who}: resident memory grew from {was} KiB to {now} KiB over {} calls",
            SOAK_CALLS - WARM_UP_CALLS
        );
    }
}
