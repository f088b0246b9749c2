//! SlimRPC over the real embedded SLIM transport: apps on one in-process
//! `Service` (the real forwarder and session layer), the runtime's Channel
//! and Server on top, through the `slim_app` adapter.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use slim_transport::Name;
use slim_transport::app::App;
use slim_transport::identity::SharedSecret;
use slim_transport::service::Service;
use slimrpc::metadata::{self, RequestsSent};
use slimrpc::transport::{RpcTransport, SessionKind, TransportEvent, TransportSession};
use slimrpc::{
    CallOptions, Channel, ChannelOptions, Code, Context, MulticastItem, MulticastStream,
    RequestStream, RpcError, Server, ServerHandle,
};
use tokio::sync::Notify;

const SECRET: &str = "slimrpc-runtime-test-secret-0123456789abcdef";
const SVC: &str = "example_service.Test";
/// Liveness bound for every wait (shared, loaded machine).
const LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(int64, tag = "2")]
    n: i64,
}

fn msg(text: &str, n: i64) -> Msg {
    Msg {
        text: text.into(),
        n,
    }
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("liveness bound exceeded")
}

async fn eventually(mut cond: impl FnMut() -> bool) {
    bounded(async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

async fn app(service: &Service, name: &str) -> Arc<App> {
    let identity = SharedSecret::new(name, SECRET).unwrap();
    Arc::new(
        bounded(service.app(name.parse().unwrap(), identity))
            .await
            .unwrap(),
    )
}

fn register(s: &mut Server, label: &'static str, gate: Arc<Notify>) {
    s.register_unary_unary(SVC, "ExampleUnaryUnary", move |req: Msg, _ctx: Context| async move {
        Ok(msg(&format!("{label}: {}", req.text), req.n))
    });
    s.register_unary_stream(
        SVC,
        "ExampleUnaryStream",
        move |req: Msg, _ctx| async move {
            Ok(stream::iter((0..req.n).map(move |i| Ok(msg(label, i)))))
        },
    );
    s.register_stream_unary(
        SVC,
        "ExampleStreamUnary",
        move |reqs: RequestStream<Msg>, _ctx| async move {
            let all: Vec<Result<Msg, RpcError>> = reqs.collect().await;
            let mut sum = 0;
            for r in all {
                sum += r?.n;
            }
            Ok(msg(label, sum))
        },
    );
    s.register_stream_stream(
        SVC,
        "ExampleStreamStream",
        move |reqs: RequestStream<Msg>, _ctx| async move {
            Ok(reqs.map(move |r| r.map(|m| msg(&format!("{label}: echo {}", m.text), m.n * 100))))
        },
    );
    s.register_unary_unary(SVC, "Fail", move |_: Msg, _ctx| async move {
        if label.starts_with("bad") {
            Err::<Msg, _>(RpcError::invalid_argument("bad input"))
        } else {
            Ok(msg(label, 0))
        }
    });
    s.register_unary_unary(SVC, "Panic", |_: Msg, _ctx| async {
        if true {
            panic!("handler bug");
        }
        Ok(Msg::default())
    });
    s.register_unary_unary(SVC, "Slow", move |_: Msg, _ctx| {
        let gate = gate.clone();
        async move {
            gate.notified().await;
            Ok(msg(label, 1))
        }
    });
}

struct Net {
    _service: Service,
    client: Arc<App>,
    server_apps: Vec<Arc<App>>,
    servers: Vec<ServerHandle>,
    gate: Arc<Notify>,
}

async fn start_server(app: &Arc<App>, label: &'static str, gate: &Arc<Notify>) -> ServerHandle {
    let mut s = Server::new(app.clone(), Name::new("org", "ns", label));
    register(&mut s, label, gate.clone());
    bounded(s.start()).await.unwrap()
}

async fn net(labels: &[&'static str]) -> Net {
    let service = Service::new();
    let gate = Arc::new(Notify::new());
    let mut server_apps = Vec::new();
    let mut servers = Vec::new();
    for label in labels {
        let a = app(&service, &format!("org/ns/{label}")).await;
        servers.push(start_server(&a, label, &gate).await);
        server_apps.push(a);
    }
    let client = app(&service, "org/ns/client").await;
    Net {
        _service: service,
        client,
        server_apps,
        servers,
        gate,
    }
}

fn members(labels: &[&str]) -> Vec<Name> {
    labels.iter().map(|l| Name::new("org", "ns", *l)).collect()
}

fn opts() -> CallOptions {
    CallOptions::with_timeout(LIMIT)
}

async fn collect<T>(s: MulticastStream<T>) -> (Vec<MulticastItem<T>>, Vec<RpcError>) {
    let mut ok = Vec::new();
    let mut err = Vec::new();
    for r in bounded(s.collect::<Vec<_>>()).await {
        match r {
            Ok(i) => ok.push(i),
            Err(e) => err.push(e),
        }
    }
    (ok, err)
}

fn sorted<T>(items: &[MulticastItem<T>], f: impl Fn(&T) -> i64) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = items
        .iter()
        .map(|i| (i.source.strings()[2].clone(), f(&i.message)))
        .collect();
    v.sort();
    v
}

/// A group stream-unary call sending 1, 2, 3: each member's sum, by member.
async fn group_sums(ch: &Channel) -> Vec<(String, i64)> {
    let reqs = stream::iter((1..=3).map(|i| msg("x", i)));
    let (ok, err) =
        collect(ch.group_stream_unary::<_, Msg>(SVC, "ExampleStreamUnary", reqs, opts())).await;
    assert!(err.is_empty(), "{err:?}");
    sorted(&ok, |m| m.n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_unary_over_slim_sessions() {
    let n = net(&["server"]).await;
    let ch = Channel::new(n.client.clone(), members(&["server"])).unwrap();
    assert!(!ch.is_group());
    let r: Msg = bounded(ch.unary(SVC, "ExampleUnaryUnary", msg("hello", 7), opts()))
        .await
        .unwrap();
    assert_eq!(r, msg("server: hello", 7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_unary_stream_over_slim_sessions() {
    let n = net(&["server"]).await;
    let ch = Channel::new(n.client.clone(), members(&["server"])).unwrap();
    let items: Vec<_> = bounded(
        ch.unary_stream::<_, Msg>(SVC, "ExampleUnaryStream", msg("", 5), opts())
            .collect(),
    )
    .await;
    let ns: Vec<i64> = items.into_iter().map(|r| r.unwrap().n).collect();
    assert_eq!(ns, vec![0, 1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_stream_unary_over_slim_sessions() {
    let n = net(&["server"]).await;
    let ch = Channel::new(n.client.clone(), members(&["server"])).unwrap();
    let reqs = stream::iter((1..=4).map(|i| msg("x", i)));
    let r: Msg = bounded(ch.stream_unary(SVC, "ExampleStreamUnary", reqs, opts()))
        .await
        .unwrap();
    assert_eq!(r, msg("server", 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_stream_stream_over_slim_sessions() {
    let n = net(&["server"]).await;
    let ch = Channel::new(n.client.clone(), members(&["server"])).unwrap();
    let reqs = stream::iter((1..=3).map(|i| msg(&i.to_string(), i)));
    let out: Vec<_> = bounded(
        ch.stream_stream::<_, Msg>(SVC, "ExampleStreamStream", reqs, opts())
            .collect(),
    )
    .await;
    let out: Vec<Msg> = out.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        out,
        vec![
            msg("server: echo 1", 100),
            msg("server: echo 2", 200),
            msg("server: echo 3", 300)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_unary_over_slim_sessions() {
    let n = net(&["s1", "s2", "s3"]).await;
    let ch = Channel::new(n.client.clone(), members(&["s1", "s2", "s3"])).unwrap();
    assert!(ch.is_group());
    let (ok, err) =
        collect(ch.group_unary::<_, Msg>(SVC, "ExampleUnaryUnary", msg("hi", 1), opts())).await;
    assert!(err.is_empty(), "{err:?}");
    let mut texts: Vec<String> = ok.into_iter().map(|i| i.message.text).collect();
    texts.sort();
    assert_eq!(texts, vec!["s1: hi", "s2: hi", "s3: hi"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_unary_stream_over_slim_sessions() {
    let n = net(&["s1", "s2"]).await;
    let ch = Channel::new(n.client.clone(), members(&["s1", "s2"])).unwrap();
    let (ok, err) =
        collect(ch.group_unary_stream::<_, Msg>(SVC, "ExampleUnaryStream", msg("", 3), opts()))
            .await;
    assert!(err.is_empty(), "{err:?}");
    assert_eq!(
        sorted(&ok, |m| m.n),
        vec![
            ("s1".into(), 0),
            ("s1".into(), 1),
            ("s1".into(), 2),
            ("s2".into(), 0),
            ("s2".into(), 1),
            ("s2".into(), 2)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_stream_unary_over_slim_sessions() {
    let n = net(&["s1", "s2"]).await;
    let ch = Channel::new(n.client.clone(), members(&["s1", "s2"])).unwrap();
    assert_eq!(
        group_sums(&ch).await,
        vec![("s1".into(), 6), ("s2".into(), 6)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_stream_stream_over_slim_sessions() {
    let n = net(&["s1", "s2"]).await;
    let ch = Channel::new(n.client.clone(), members(&["s1", "s2"])).unwrap();
    let reqs = stream::iter((0..3).map(|i| msg(&i.to_string(), i)));
    let (ok, err) =
        collect(ch.group_stream_stream::<_, Msg>(SVC, "ExampleStreamStream", reqs, opts())).await;
    assert!(err.is_empty(), "{err:?}");
    assert_eq!(
        sorted(&ok, |m| m.n),
        vec![
            ("s1".into(), 0),
            ("s1".into(), 100),
            ("s1".into(), 200),
            ("s2".into(), 0),
            ("s2".into(), 100),
            ("s2".into(), 200)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_member_error_is_isolated_over_slim_sessions() {
    let n = net(&["s1", "bad1", "s2"]).await;
    let ch = Channel::new(n.client.clone(), members(&["s1", "bad1", "s2"])).unwrap();
    let (ok, err) = collect(ch.group_unary::<_, Msg>(SVC, "Fail", msg("", 0), opts())).await;
    assert_eq!(
        sorted(&ok, |m| m.n),
        vec![("s1".into(), 0), ("s2".into(), 0)]
    );
    assert_eq!(
        err,
        vec![RpcError::MulticastRpc {
            origin: "org/ns/bad1".into(),
            code: Code::InvalidArgument,
            message: "bad input".into(),
            details: None
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_unary_calls_over_one_slim_session() {
    let n = net(&["server"]).await;
    let ch = Channel::new(n.client.clone(), members(&["server"])).unwrap();
    let calls = (0..200).map(|i| {
        let ch = ch.clone();
        async move {
            let r: Msg = ch
                .unary(SVC, "ExampleUnaryUnary", msg(&i.to_string(), i), opts())
                .await
                .unwrap();
            assert_eq!(r, msg(&format!("server: {i}"), i));
        }
    });
    bounded(futures::future::join_all(calls)).await;
    assert_eq!(ch.pending_calls(), 0);
    assert_eq!(n.servers[0].active_sessions(), 1);
    eventually(|| n.servers[0].active_handlers() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_method_and_panicking_handler_over_slim_sessions() {
    let n = net(&["server"]).await;
    let ch = Channel::new(n.client.clone(), members(&["server"])).unwrap();
    let r: Result<Msg, _> = bounded(ch.unary(SVC, "Nope", msg("", 0), opts())).await;
    assert_eq!(
        r,
        Err(RpcError::unimplemented(
            "Method not found: example_service.Test/Nope"
        ))
    );
    let r: Result<Msg, _> = bounded(ch.unary(SVC, "Panic", msg("", 0), opts())).await;
    assert_eq!(r.unwrap_err().code(), Code::Internal);
    let r: Msg = bounded(ch.unary(SVC, "ExampleUnaryUnary", msg("ok", 1), opts()))
        .await
        .unwrap();
    assert_eq!(r.text, "server: ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_exceeded_over_slim_sessions() {
    let n = net(&["server"]).await;
    let ch = Channel::new(n.client.clone(), members(&["server"])).unwrap();
    // Warm the session up so the short deadline only covers the call.
    let _: Msg = bounded(ch.unary(SVC, "ExampleUnaryUnary", msg("", 0), opts()))
        .await
        .unwrap();
    let r: Result<Msg, _> = bounded(ch.unary(
        SVC,
        "Slow",
        msg("", 0),
        CallOptions::with_timeout(Duration::from_millis(300)),
    ))
    .await;
    assert_eq!(r.unwrap_err().code(), Code::DeadlineExceeded);
    assert_eq!(ch.pending_calls(), 0);
    eventually(|| n.servers[0].active_handlers() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_call_over_slim_sessions_unregisters_it() {
    let n = net(&["server"]).await;
    let ch = Channel::new(n.client.clone(), members(&["server"])).unwrap();
    let mut call = Box::pin(ch.unary::<Msg, Msg>(SVC, "Slow", msg("", 0), opts()));
    tokio::select! {
        _ = &mut call => panic!("the slow call must not finish"),
        _ = eventually(|| n.servers[0].active_handlers() == 1) => {}
    }
    assert_eq!(ch.pending_calls(), 1);
    drop(call);
    assert_eq!(ch.pending_calls(), 0);
    n.gate.notify_waiters();
    eventually(|| n.servers[0].active_handlers() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_calls_and_a_new_server_is_reached_through_a_new_session() {
    let mut n = net(&["server"]).await;
    let ch = Channel::new(n.client.clone(), members(&["server"])).unwrap();
    let server = n.servers.remove(0);
    let call = ch.unary::<Msg, Msg>(SVC, "Slow", msg("", 0), opts());
    let (r, _) = bounded(futures::future::join(call, async move {
        eventually(|| server.active_handlers() == 1).await;
        server.shutdown().await;
    }))
    .await;
    assert_eq!(r, Err(RpcError::cancelled("Server shutting down")));
    // The server closed its session; the channel must notice and re-create it.
    let again = start_server(&n.server_apps[0], "server", &n.gate).await;
    let r: Msg = bounded(ch.unary(SVC, "ExampleUnaryUnary", msg("back", 2), opts()))
        .await
        .unwrap();
    assert_eq!(r, msg("server: back", 2));
    assert_eq!(again.active_sessions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_channel_with_connection_reaches_a_server_behind_a_remote_node() {
    // Node A hosts the server and listens on 127.0.0.1; node B hosts the
    // client and links to A. The route to the member goes over that link.
    let node_a = Service::new();
    let addr = bounded(node_a.run_server("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let gate = Arc::new(Notify::new());
    let server_app = app(&node_a, "org/ns/s1").await;
    let server = start_server(&server_app, "s1", &gate).await;
    let node_b = Service::new();
    let conn = bounded(node_b.connect(&format!("http://127.0.0.1:{}", addr.port())))
        .await
        .unwrap();
    let client = app(&node_b, "org/ns/client").await;
    // Replies are routed by name: announce the client's name on the link.
    bounded(client.subscribe(client.name(), Some(conn)))
        .await
        .unwrap();
    let ch = Channel::new_with_connection(client.clone(), members(&["s1"]), conn).unwrap();
    for i in 0..3 {
        let r: Msg = bounded(ch.unary(SVC, "ExampleUnaryUnary", msg("far", i), opts()))
            .await
            .unwrap();
        assert_eq!(r, msg("s1: far", i));
    }
    let items: Vec<_> = bounded(
        ch.unary_stream::<_, Msg>(SVC, "ExampleUnaryStream", msg("", 3), opts())
            .collect(),
    )
    .await;
    assert_eq!(items.len(), 3);
    assert_eq!(server.active_sessions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_unary_from_a_client_whose_servers_sit_behind_a_link() {
    let node_b = Service::new();
    let addr = node_b
        .run_server("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let node_a = Service::new();
    let link = node_a.connect(&format!("http://{addr}")).await.unwrap();
    eventually(|| node_a.peer_version(link).is_some()).await;
    let gate = Arc::new(Notify::new());
    let mut servers = Vec::new();
    for label in ["r1", "r2", "r3"] {
        let a = app(&node_b, &format!("org/ns/{label}")).await;
        servers.push((start_server(&a, label, &gate).await, a));
    }
    let client = app(&node_a, "org/ns/client").await;
    let ch = Channel::new_with_connection(client, members(&["r1", "r2", "r3"]), link).unwrap();
    let (ok, err) =
        collect(ch.group_unary::<_, Msg>(SVC, "ExampleUnaryUnary", msg("hi", 1), opts())).await;
    assert!(err.is_empty(), "{err:?}");
    assert_eq!(
        sorted(&ok, |m| m.n),
        vec![("r1".into(), 1), ("r2".into(), 1), ("r3".into(), 1)]
    );
}

/// A session of `client` to `members` (one: P2P; more: a group), as the
/// official clients make them.
async fn official_style_session(client: &Arc<App>, members: &[Name]) -> TransportSession {
    let (kind, destination) = match members {
        [one] => (SessionKind::PointToPoint, one.clone()),
        _ => (SessionKind::Group, Name::new("org", "ns", "official-style")),
    };
    let s = bounded(client.create_session(kind, &destination, Default::default()))
        .await
        .unwrap();
    if kind == SessionKind::Group {
        bounded(s.handle.invite_many(members)).await.unwrap();
    }
    s
}

/// Makes a call the way the official clients (SLIM v1.3 and 3.x) do: its
/// request frames, then client EOS #1, then client EOS #2. Our own client
/// leaves out the EOS frames no server reads; servers must still take them
/// from official clients. Returns each member's answers up to its EOS (in
/// a point-to-point session, up to the answer of a unary-output method:
/// no EOS follows it there).
async fn official_style_call(
    s: &mut TransportSession,
    members: usize,
    method: &str,
    rpc_id: &str,
    requests: &[Msg],
) -> Vec<Msg> {
    use prost::Message as _;
    let deadline = std::time::SystemTime::now() + LIMIT;
    let first = metadata::client_first_frame(&Default::default(), deadline, SVC, method, rpc_id);
    for (i, r) in requests.iter().enumerate() {
        let meta = if i == 0 {
            first.clone()
        } else {
            metadata::client_next_frame(rpc_id)
        };
        bounded(s.handle.publish(r.encode_to_vec(), meta))
            .await
            .unwrap();
    }
    let sent = if requests.is_empty() {
        RequestsSent::None
    } else {
        RequestsSent::Some
    };
    let eos1 = metadata::client_eos1(rpc_id, sent, &first);
    let eos2 = metadata::client_eos2(rpc_id, sent, SVC, method);
    for meta in [eos1, eos2] {
        bounded(s.handle.publish(Vec::new(), meta)).await.unwrap();
    }
    let answer_ends = members == 1 && matches!(method, "ExampleUnaryUnary" | "ExampleStreamUnary");
    let (mut answers, mut ended) = (Vec::new(), 0);
    while ended < members {
        let Some(TransportEvent::Message(m)) = bounded(s.events.recv()).await else {
            continue;
        };
        if m.metadata.get("rpc-id").map(String::as_str) != Some(rpc_id) {
            continue;
        }
        if m.payload.is_empty() && m.metadata.contains_key("slimrpc-code") {
            ended += 1;
        } else {
            answers.push(Msg::decode(m.payload.as_slice()).unwrap());
            if answer_ends {
                ended += 1;
            }
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_leaves_the_client_eos_frames_of_unary_calls_undecrypted_and_reads_every_stream_frame()
 {
    let mut n = net(&["server"]).await;
    let mut s = official_style_session(&n.client, &members(&["server"])).await;
    for i in 0..5 {
        let id = format!("U{i}");
        let r = official_style_call(&mut s, 1, "ExampleUnaryUnary", &id, &[msg("u", i)]).await;
        assert_eq!(r.len(), 1);
        assert_eq!(r[0], msg("server: u", i));
    }
    let reqs: Vec<Msg> = (1..=4).map(|i| msg("x", i)).collect();
    let r = official_style_call(&mut s, 1, "ExampleStreamUnary", "S1", &reqs).await;
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0],
        msg("server", 10),
        "no frame of the stream was skipped"
    );
    let reqs = [msg("1", 1), msg("2", 2)];
    let r = official_style_call(&mut s, 1, "ExampleStreamStream", "S2", &reqs).await;
    assert_eq!(r.len(), 2);
    // EOS #1 and #2 of each unary call, EOS #2 of each stream-input call.
    let server = n.servers.remove(0);
    eventually(|| server.skipped_frames() >= 5 * 2 + 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.skipped_frames(), 5 * 2 + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_members_leave_the_client_eos_frames_undecrypted_and_answer_every_call() {
    let n = net(&["s1", "s2", "s3"]).await;
    let mut s = official_style_session(&n.client, &members(&["s1", "s2", "s3"])).await;
    for i in 0..4 {
        let id = format!("G{i}");
        let ok = official_style_call(&mut s, 3, "ExampleUnaryUnary", &id, &[msg("g", i)]).await;
        let mut got: Vec<(String, i64)> = ok.iter().map(|m| (m.text.clone(), m.n)).collect();
        got.sort();
        let want = ["s1: g", "s2: g", "s3: g"].map(|t| (t.to_string(), i));
        assert_eq!(got, want);
    }
    let reqs: Vec<Msg> = (1..=3).map(|i| msg("x", i)).collect();
    let sums = official_style_call(&mut s, 3, "ExampleStreamUnary", "GS", &reqs).await;
    assert!(
        sums.iter().all(|m| m.n == 6) && sums.len() == 3,
        "every member read the whole request stream: {sums:?}"
    );
    // Each member: EOS #1 and #2 of the 4 unary calls, EOS #2 of the stream call.
    let per_member = 4 * 2 + 1;
    for server in &n.servers {
        eventually(|| server.skipped_frames() >= per_member).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_sends_servers_no_frame_they_would_skip() {
    let n = net(&["s1", "s2"]).await;
    let p2p = Channel::new(n.client.clone(), members(&["s1"])).unwrap();
    let group = Channel::new(n.client.clone(), members(&["s1", "s2"])).unwrap();
    for i in 0..3 {
        let r: Msg = bounded(p2p.unary(SVC, "ExampleUnaryUnary", msg("u", i), opts()))
            .await
            .unwrap();
        assert_eq!(r, msg("s1: u", i));
        let (ok, err) =
            collect(group.group_unary::<_, Msg>(SVC, "ExampleUnaryUnary", msg("g", i), opts()))
                .await;
        assert_eq!((ok.len(), err.len()), (2, 0));
    }
    let reqs = stream::iter((1..=4).map(|i| msg("x", i)));
    let r: Msg = bounded(p2p.stream_unary(SVC, "ExampleStreamUnary", reqs, opts()))
        .await
        .unwrap();
    assert_eq!(r, msg("s1", 10));
    // A frame the servers skip would have been counted on its arrival,
    // before the answer it precedes; the answers are all in.
    for server in &n.servers {
        assert_eq!(server.skipped_frames(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_servers_send_our_client_no_eos_after_unary_answers_and_end_streams_with_one() {
    let n = net(&["s1", "s2", "s3"]).await;
    let p2p = Channel::new(n.client.clone(), members(&["s1"])).unwrap();
    for i in 0..4 {
        let r: Msg = bounded(p2p.unary(SVC, "ExampleUnaryUnary", msg("u", i), opts()))
            .await
            .unwrap();
        assert_eq!(r, msg("s1: u", i));
    }
    // A response stream needs its EOS: nothing of it is skipped.
    let out: Vec<_> = bounded(
        p2p.unary_stream::<_, Msg>(SVC, "ExampleUnaryStream", msg("n", 3), opts())
            .collect(),
    )
    .await;
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|r| r.is_ok()), "{out:?}");
    // The server sent no EOS after the unary answers of this point-to-point
    // session: one would have arrived (and been skipped) before the stream's
    // frames, which the same server sent afterwards in order.
    assert_eq!(p2p.skipped_frames(), 0);

    let group = Channel::new(n.client.clone(), members(&["s1", "s2", "s3"])).unwrap();
    for i in 0..4 {
        let (ok, err) =
            collect(group.group_unary::<_, Msg>(SVC, "ExampleUnaryUnary", msg("g", i), opts()))
                .await;
        assert!(err.is_empty(), "{err:?}");
        assert_eq!(
            sorted(&ok, |m| m.n),
            vec![("s1".into(), i), ("s2".into(), i), ("s3".into(), i)]
        );
    }
    let (ok, err) =
        collect(group.group_unary_stream::<_, Msg>(SVC, "ExampleUnaryStream", msg("n", 2), opts()))
            .await;
    assert_eq!((ok.len(), err.len()), (3 * 2, 0));
    // Nor after the group's answers: our client's calls say it takes each
    // answer as that member's end (`slimrpc-answer-ends`). Any such EOS
    // would have been skipped before the stream's frames.
    assert_eq!(p2p.skipped_frames(), 0);
    assert_eq!(group.skipped_frames(), 0);
}

// ---- a caller that stops reading ------------------------------------------

/// Reads `call` to its end after it was left unread: the items it still
/// held (numbered from `from`, in order), then its error.
async fn rest_of_unread<T: std::fmt::Debug>(
    call: &mut (impl futures::Stream<Item = Result<T, RpcError>> + Unpin),
    number: impl Fn(&T) -> i64,
    from: i64,
) -> (i64, RpcError) {
    let mut next = from;
    loop {
        match bounded(call.next()).await {
            Some(Ok(item)) => {
                assert_eq!(number(&item), next, "in order, no gap");
                next += 1;
            }
            Some(Err(e)) => return (next - from, e),
            None => panic!("the unread call ended without an error after {next} items"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_left_unread_ends_with_resource_exhausted_while_the_other_calls_go_on() {
    let n = net(&["server"]).await;
    let options = ChannelOptions {
        response_buffer: Some(64),
        ..ChannelOptions::default()
    };
    let ch = Channel::with_options(n.client.clone(), members(&["server"]), options).unwrap();
    // Started (its first item read), then left unread.
    let mut unread = ch.unary_stream::<_, Msg>(SVC, "ExampleUnaryStream", msg("", 5_000), opts());
    assert_eq!(
        bounded(unread.next()).await.unwrap().unwrap(),
        msg("server", 0)
    );

    // Other calls on the same session get every item meanwhile.
    let all: Vec<_> = bounded(
        ch.unary_stream::<_, Msg>(SVC, "ExampleUnaryStream", msg("", 5_000), opts())
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(all.len(), 5_000);
    assert!(all.iter().all(|r| r.is_ok()));
    let r: Msg = bounded(ch.unary(SVC, "ExampleUnaryUnary", msg("hi", 1), opts()))
        .await
        .unwrap();
    assert_eq!(r, msg("server: hi", 1));

    // The unread call fell more than its buffer behind and was ended,
    // which frees what it held.
    eventually(|| ch.pending_calls() == 0).await;
    let (held, end) = rest_of_unread(&mut unread, |m: &Msg| m.n, 1).await;
    assert!(
        held <= slimrpc::dispatcher::hold_limit(64) as i64,
        "at most the hold limit: {held}"
    );
    assert_eq!(end.code(), Code::ResourceExhausted, "{end}");
    assert!(bounded(unread.next()).await.is_none());
    assert!(bounded(unread.next()).await.is_none(), "fused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_group_stream_stalls_neither_the_session_nor_the_other_group_calls() {
    let labels = ["g1", "g2", "g3"];
    let n = net(&labels).await;
    let options = ChannelOptions {
        // Pings keep running throughout (a member missing three rounds would
        // be declared gone and the session replaced). Not shorter: on a loaded
        // 2-core machine a busy member can miss a 200 ms round for real.
        ping_interval: Some(Duration::from_secs(1)),
        response_buffer: Some(64),
        ..ChannelOptions::default()
    };
    let ch = Channel::with_options(n.client.clone(), members(&labels), options).unwrap();
    let mut unread =
        ch.group_unary_stream::<_, Msg>(SVC, "ExampleUnaryStream", msg("", 500), opts());
    assert!(bounded(unread.next()).await.unwrap().is_ok());
    let session = ch.group_name();

    // Many calls complete, each through every member, on the same session:
    // its task keeps reading, acknowledging and pinging.
    for _ in 0..10 {
        assert_eq!(
            group_sums(&ch).await,
            vec![("g1".into(), 6), ("g2".into(), 6), ("g3".into(), 6)]
        );
    }
    eventually(|| ch.pending_calls() == 0).await;
    assert_eq!(
        ch.group_name(),
        session,
        "no member was lost, no new session"
    );
    let mut ended = None;
    while let Some(item) = bounded(unread.next()).await {
        if let Err(e) = item {
            ended = Some(e);
        }
    }
    let end = ended.expect("the unread call ends with an error");
    assert_eq!(end.code(), Code::ResourceExhausted, "{end}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_never_reads_again_costs_only_itself_while_concurrent_calls_and_the_session_timers_go_on()
 {
    // Issue 19: one stalled caller must not hold up the other calls of its
    // session (no head-of-line blocking in the dispatcher) nor the session's
    // own acks and pings.
    let labels = ["h1", "h2"];
    let n = net(&labels).await;
    let options = ChannelOptions {
        // Pings run throughout: a member missing three rounds would be
        // declared gone and the session replaced.
        ping_interval: Some(Duration::from_secs(1)),
        // More than any other call below ever holds (so only the stalled
        // one can fill it, however late the others read), far less than
        // the stalled call is sent.
        response_buffer: Some(128),
        ..ChannelOptions::default()
    };
    let ch = Channel::with_options(n.client.clone(), members(&labels), options).unwrap();
    // Started (its first item read, so it is registered and answered), then
    // never read again.
    let mut stalled =
        ch.group_unary_stream::<_, Msg>(SVC, "ExampleUnaryStream", msg("", 2_000), opts());
    assert!(bounded(stalled.next()).await.unwrap().is_ok());
    let session = ch.group_name();

    // Rounds of concurrent calls on the same session: unary calls through
    // every member and long streams, all complete and in full.
    for _ in 0..3 {
        let unary = (0..16).map(|i| {
            let ch = ch.clone();
            async move {
                let (ok, err) = collect(ch.group_unary::<_, Msg>(
                    SVC,
                    "ExampleUnaryUnary",
                    msg("u", i),
                    opts(),
                ))
                .await;
                assert!(err.is_empty(), "{err:?}");
                assert_eq!(
                    sorted(&ok, |m| m.n),
                    vec![("h1".into(), i), ("h2".into(), i)]
                );
            }
        });
        let streams = (0..2).map(|_| {
            let ch = ch.clone();
            async move {
                let (ok, err) = collect(ch.group_unary_stream::<_, Msg>(
                    SVC,
                    "ExampleUnaryStream",
                    msg("", 60),
                    opts(),
                ))
                .await;
                assert!(err.is_empty(), "{err:?}");
                assert_eq!(ok.len(), 120, "60 items from each member");
            }
        });
        bounded(futures::future::join(
            futures::future::join_all(unary),
            futures::future::join_all(streams),
        ))
        .await;
    }
    // Every call but the stalled one is done, and the stalled one was ended
    // (unregistered) meanwhile; the session is the first one: no member was
    // lost on the way, so its pings and acks kept going.
    eventually(|| ch.pending_calls() == 0).await;
    assert_eq!(
        ch.group_name(),
        session,
        "no member was lost, no new session"
    );

    // The stalled caller gets what its call held, then ResourceExhausted.
    let mut held = 0;
    let mut ended = None;
    while let Some(item) = bounded(stalled.next()).await {
        match item {
            Ok(_) => held += 1,
            Err(e) => ended = Some(e),
        }
    }
    assert!(
        held <= slimrpc::dispatcher::hold_limit(128),
        "at most the hold limit: {held}"
    );
    let end = ended.expect("the stalled call ends with an error");
    assert_eq!(end.code(), Code::ResourceExhausted, "{end}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_default_options_an_unread_stream_does_not_stall_the_next_calls_of_its_channel() {
    // Issue 21 as reported: one stream of a channel left unread, and a second
    // stream (then a short one) on the same channel got nothing.
    let n = net(&["server"]).await;
    let ch = Channel::new(n.client.clone(), members(&["server"])).unwrap();
    let mut unread = ch.unary_stream::<_, Msg>(SVC, "ExampleUnaryStream", msg("", 5_000), opts());
    assert!(bounded(unread.next()).await.unwrap().is_ok());
    for count in [5_000, 10] {
        let all: Vec<_> = bounded(
            ch.unary_stream::<_, Msg>(SVC, "ExampleUnaryStream", msg("", count), opts())
                .collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(all.len(), count as usize);
        assert!(all.iter().all(|r| r.is_ok()));
    }
    drop(unread);
}
