//! End-to-end behaviour of Channel + Server over the in-memory seam.
//! These exercise the runtime logic only; they must also run over the real
//! `slim_transport::app` sessions once that API lands.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, stream};
use slim_transport::Name;
use tokio::sync::{Notify, watch};

use super::{MemApp, MemNet};
use crate::code::Code;
use crate::context::{CallOptions, Context, RequestStream};
use crate::error::RpcError;
use crate::metadata::{self, Metadata, RequestsSent};
use crate::server::{Server, ServerHandle};
use crate::transport::{
    RpcSessionHandle, RpcTransport, SessionKind, SessionOptions, TransportFuture,
};

use crate::{Channel, MulticastItem, TransportSession};

const SVC: &str = "example_service.Test";
/// Liveness bound for anything a test waits on.
const LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(int64, tag = "2")]
    pub n: i64,
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

/// Waits (bounded) until `cond` holds, yielding to the runtime in between.
async fn eventually(mut cond: impl FnMut() -> bool) {
    bounded(async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// A test server named `label`; `release` gates the `Slow*` methods.
fn test_server(app: MemApp, label: &'static str, release: Arc<Notify>) -> Server {
    let mut s = Server::new(app.clone(), Name::new("org", "ns", label));
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
            let all: Vec<Msg> = reqs.map(|r| r.unwrap()).collect().await;
            Ok(msg(label, all.iter().map(|m| m.n).sum()))
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
    s.register_unary_unary(SVC, "Empty", |_: Msg, _ctx| async { Ok(Msg::default()) });
    s.register_unary_unary(SVC, "Panic", |_: Msg, _ctx| async {
        if true {
            panic!("handler bug");
        }
        Ok(Msg::default())
    });
    s.register_unary_unary(SVC, "Meta", |_: Msg, ctx: Context| async move {
        let user = ctx.metadata().get("x-user").cloned().unwrap_or_default();
        let left = ctx.remaining();
        Ok(msg(
            &format!("{user}|{}", ctx.caller()),
            left.as_secs() as i64,
        ))
    });
    let r = release.clone();
    s.register_unary_unary(SVC, "Slow", move |req: Msg, _ctx| {
        let r = r.clone();
        async move {
            if label.starts_with("slow") || req.text == "all" {
                r.notified().await;
            }
            Ok(msg(label, 1))
        }
    });
    let r = release;
    s.register_unary_stream(SVC, "SlowStream", move |_: Msg, _ctx| {
        let r = r.clone();
        async move {
            Ok(
                stream::once(async { Ok(msg("first", 0)) }).chain(stream::once(async move {
                    r.notified().await;
                    Ok(msg("second", 1))
                })),
            )
        }
    });
    s.register_stream_unary(
        SVC,
        "FirstOnly",
        |mut reqs: RequestStream<Msg>, _ctx| async move {
            let first = reqs.next().await.transpose()?.unwrap_or_default();
            Ok(first)
        },
    );
    s
}

struct Fixture {
    net: Arc<MemNet>,
    client: MemApp,
    servers: Vec<ServerHandle>,
    release: Arc<Notify>,
}

async fn fixture(labels: &[&'static str]) -> Fixture {
    let net = MemNet::new();
    let release = Arc::new(Notify::new());
    let mut servers = Vec::new();
    for label in labels {
        let app = net.app(label);
        servers.push(
            test_server(app, label, release.clone())
                .start()
                .await
                .unwrap(),
        );
    }
    let client = net.app("client");
    Fixture {
        net,
        client,
        servers,
        release,
    }
}

fn members(labels: &[&str]) -> Vec<Name> {
    labels.iter().map(|l| Name::new("org", "ns", *l)).collect()
}

fn opts() -> CallOptions {
    CallOptions::with_timeout(LIMIT)
}

async fn collect_group<T>(s: crate::MulticastStream<T>) -> (Vec<MulticastItem<T>>, Vec<RpcError>) {
    let all: Vec<_> = bounded(s.collect::<Vec<_>>()).await;
    let mut ok = Vec::new();
    let mut err = Vec::new();
    for r in all {
        match r {
            Ok(i) => ok.push(i),
            Err(e) => err.push(e),
        }
    }
    (ok, err)
}

fn by_member<T: Clone>(items: &[MulticastItem<T>]) -> HashMap<String, Vec<T>> {
    let mut m: HashMap<String, Vec<T>> = HashMap::new();
    for i in items {
        m.entry(i.source.strings()[2].clone())
            .or_default()
            .push(i.message.clone());
    }
    m
}

// ---- the eight shapes ---------------------------------------------------

#[tokio::test]
async fn p2p_unary_returns_the_response() {
    let f = fixture(&["server"]).await;
    let ch = Channel::new(f.client.clone(), members(&["server"])).unwrap();
    let res: Msg = bounded(ch.unary(SVC, "ExampleUnaryUnary", msg("hello", 7), opts()))
        .await
        .unwrap();
    assert_eq!(res, msg("server: hello", 7));
}

#[tokio::test]
async fn p2p_unary_stream_yields_every_item_then_ends() {
    let f = fixture(&["server"]).await;
    let ch = Channel::new(f.client.clone(), members(&["server"])).unwrap();
    let items: Vec<Result<Msg, RpcError>> = bounded(
        ch.unary_stream(SVC, "ExampleUnaryStream", msg("", 3), opts())
            .collect(),
    )
    .await;
    let items: Vec<i64> = items.into_iter().map(|r| r.unwrap().n).collect();
    assert_eq!(items, vec![0, 1, 2]);
}

#[tokio::test]
async fn p2p_stream_unary_sums_all_requests() {
    let f = fixture(&["server"]).await;
    let ch = Channel::new(f.client.clone(), members(&["server"])).unwrap();
    let reqs = stream::iter((1..=4).map(|i| msg("x", i)));
    let res: Msg = bounded(ch.stream_unary(SVC, "ExampleStreamUnary", reqs, opts()))
        .await
        .unwrap();
    assert_eq!(res, msg("server", 10));
}

#[tokio::test]
async fn p2p_stream_unary_with_empty_request_stream_still_dispatches() {
    let f = fixture(&["server"]).await;
    let ch = Channel::new(f.client.clone(), members(&["server"])).unwrap();
    let res: Msg =
        bounded(ch.stream_unary(SVC, "ExampleStreamUnary", stream::empty::<Msg>(), opts()))
            .await
            .unwrap();
    assert_eq!(res, msg("server", 0));
}

#[tokio::test]
async fn p2p_stream_stream_echoes_each_request() {
    let f = fixture(&["server"]).await;
    let ch = Channel::new(f.client.clone(), members(&["server"])).unwrap();
    let reqs = stream::iter((1..=3).map(|i| msg(&format!("item {i}"), i)));
    let out: Vec<Result<Msg, RpcError>> = bounded(
        ch.stream_stream(SVC, "ExampleStreamStream", reqs, opts())
            .collect(),
    )
    .await;
    let out: Vec<Msg> = out.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        out,
        vec![
            msg("server: echo item 1", 100),
            msg("server: echo item 2", 200),
            msg("server: echo item 3", 300)
        ]
    );
}

#[tokio::test]
async fn group_unary_yields_one_tagged_response_per_member() {
    let f = fixture(&["s1", "s2", "s3"]).await;
    let ch = Channel::new(f.client.clone(), members(&["s1", "s2", "s3"])).unwrap();
    let (ok, err) =
        collect_group(ch.group_unary::<_, Msg>(SVC, "ExampleUnaryUnary", msg("hi", 1), opts()))
            .await;
    assert!(err.is_empty(), "{err:?}");
    let got = by_member(&ok);
    assert_eq!(got.len(), 3);
    for l in ["s1", "s2", "s3"] {
        assert_eq!(got[l], vec![msg(&format!("{l}: hi"), 1)]);
    }
}

#[tokio::test]
async fn group_unary_stream_ends_when_every_member_sent_eos() {
    let f = fixture(&["s1", "s2"]).await;
    let ch = Channel::new(f.client.clone(), members(&["s1", "s2"])).unwrap();
    let (ok, err) = collect_group(ch.group_unary_stream::<_, Msg>(
        SVC,
        "ExampleUnaryStream",
        msg("", 3),
        opts(),
    ))
    .await;
    assert!(err.is_empty());
    let got = by_member(&ok);
    for l in ["s1", "s2"] {
        assert_eq!(
            got[l].iter().map(|m| m.n).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
    }
}

#[tokio::test]
async fn group_stream_unary_each_member_answers_once() {
    let f = fixture(&["s1", "s2"]).await;
    let ch = Channel::new(f.client.clone(), members(&["s1", "s2"])).unwrap();
    let reqs = stream::iter((1..=3).map(|i| msg("x", i)));
    let (ok, err) =
        collect_group(ch.group_stream_unary::<_, Msg>(SVC, "ExampleStreamUnary", reqs, opts()))
            .await;
    assert!(err.is_empty());
    let got = by_member(&ok);
    assert_eq!(got["s1"], vec![msg("s1", 6)]);
    assert_eq!(got["s2"], vec![msg("s2", 6)]);
}

#[tokio::test]
async fn group_stream_stream_collects_every_members_echoes_despite_unicast_echoes() {
    // The in-memory group re-sends each unicast reply to the other members,
    // as SLIM v1.3 does: servers must drop those echoes (§g.4) and answer
    // exactly once per request.
    let f = fixture(&["s1", "s2"]).await;
    let ch = Channel::new(f.client.clone(), members(&["s1", "s2"])).unwrap();
    let reqs = stream::iter((0..3).map(|i| msg(&format!("item {i}"), i)));
    let (ok, err) =
        collect_group(ch.group_stream_stream::<_, Msg>(SVC, "ExampleStreamStream", reqs, opts()))
            .await;
    assert!(err.is_empty());
    assert_eq!(ok.len(), 6);
    let got = by_member(&ok);
    for l in ["s1", "s2"] {
        assert_eq!(
            got[l].iter().map(|m| m.n).collect::<Vec<_>>(),
            vec![0, 100, 200]
        );
    }
}

// ---- errors ---------------------------------------------------------------

#[tokio::test]
async fn group_member_error_is_isolated_and_tagged_with_its_origin() {
    let f = fixture(&["s1", "bad1", "s2"]).await;
    let ch = Channel::new(f.client.clone(), members(&["s1", "bad1", "s2"])).unwrap();
    let (ok, err) = collect_group(ch.group_unary::<_, Msg>(SVC, "Fail", msg("", 0), opts())).await;
    let got = by_member(&ok);
    assert_eq!(got.len(), 2);
    assert_eq!(got["s1"], vec![msg("s1", 0)]);
    assert_eq!(got["s2"], vec![msg("s2", 0)]);
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

#[tokio::test]
async fn p2p_handler_error_reaches_the_caller_with_code_and_message() {
    let f = fixture(&["bad"]).await;
    let ch = Channel::new(f.client.clone(), members(&["bad"])).unwrap();
    let r: Result<Msg, _> = bounded(ch.unary(SVC, "Fail", msg("", 0), opts())).await;
    assert_eq!(r, Err(RpcError::invalid_argument("bad input")));
}

#[tokio::test]
async fn unknown_method_is_unimplemented() {
    let f = fixture(&["server"]).await;
    let ch = Channel::new(f.client.clone(), members(&["server"])).unwrap();
    let r: Result<Msg, _> = bounded(ch.unary(SVC, "Nope", msg("", 0), opts())).await;
    assert_eq!(
        r,
        Err(RpcError::unimplemented(
            "Method not found: example_service.Test/Nope"
        ))
    );
}

#[tokio::test]
async fn panicking_handler_answers_internal_and_server_lives_on() {
    let f = fixture(&["server"]).await;
    let ch = Channel::new(f.client.clone(), members(&["server"])).unwrap();
    let r: Result<Msg, _> = bounded(ch.unary(SVC, "Panic", msg("", 0), opts())).await;
    assert_eq!(r.unwrap_err().code(), Code::Internal);
    let ok: Msg = bounded(ch.unary(SVC, "ExampleUnaryUnary", msg("again", 1), opts()))
        .await
        .unwrap();
    assert_eq!(ok, msg("server: again", 1));
    eventually(|| f.servers[0].active_handlers() == 0).await;
}

#[tokio::test]
async fn zero_length_unary_response_is_delivered_as_default_message() {
    let f = fixture(&["s1", "s2"]).await;
    let p2p = Channel::new(f.client.clone(), members(&["s1"])).unwrap();
    let r: Msg = bounded(p2p.unary(SVC, "Empty", msg("x", 1), opts()))
        .await
        .unwrap();
    assert_eq!(r, Msg::default());
    let group = Channel::new(f.client.clone(), members(&["s1", "s2"])).unwrap();
    let (ok, err) =
        collect_group(group.group_unary::<_, Msg>(SVC, "Empty", msg("x", 1), opts())).await;
    assert!(err.is_empty());
    assert_eq!(ok.len(), 2);
}

// ---- deadlines --------------------------------------------------------------

#[tokio::test]
async fn slow_call_fails_with_deadline_exceeded() {
    let f = fixture(&["slow"]).await;
    let ch = Channel::new(f.client.clone(), members(&["slow"])).unwrap();
    let r: Result<Msg, _> = bounded(ch.unary(
        SVC,
        "Slow",
        msg("", 0),
        CallOptions::with_timeout(Duration::from_millis(200)),
    ))
    .await;
    assert_eq!(r.unwrap_err().code(), Code::DeadlineExceeded);
    assert_eq!(ch.pending_calls(), 0);
    eventually(|| f.servers[0].active_handlers() == 0).await;
}

/// Opens a raw P2P session to `server` and returns its handle and events.
async fn raw_session(f: &Fixture, server: &str) -> TransportSession {
    f.client
        .create_session(
            SessionKind::PointToPoint,
            &Name::new("org", "ns", server),
            Default::default(),
        )
        .await
        .unwrap()
}

async fn next_frame(s: &mut TransportSession) -> crate::IncomingMessage {
    loop {
        match bounded(s.events.recv()).await.expect("session closed") {
            crate::TransportEvent::Message(m) => return m,
            _ => continue,
        }
    }
}

#[tokio::test]
async fn server_refuses_a_call_whose_deadline_already_passed() {
    let f = fixture(&["server"]).await;
    let mut s = raw_session(&f, "server").await;
    let past = SystemTime::now() - Duration::from_secs(5);
    let first =
        metadata::client_first_frame(&Metadata::new(), past, SVC, "ExampleUnaryUnary", "R1");
    s.handle
        .publish(vec![0x0a, 0x01, b'x'], first)
        .await
        .unwrap();
    let reply = next_frame(&mut s).await;
    assert_eq!(reply.payload, b"Deadline exceeded");
    assert_eq!(
        reply.metadata,
        metadata::status_frame(Code::DeadlineExceeded, "R1")
    );
}

#[tokio::test]
async fn server_stops_a_handler_that_outlives_the_deadline() {
    let f = fixture(&["slow"]).await;
    let mut s = raw_session(&f, "slow").await;
    let soon = SystemTime::now() + Duration::from_millis(100);
    let first = metadata::client_first_frame(&Metadata::new(), soon, SVC, "Slow", "R2");
    s.handle.publish(Vec::new(), first).await.unwrap();
    let reply = next_frame(&mut s).await;
    assert_eq!(reply.payload, b"Deadline exceeded during RPC execution");
    assert_eq!(
        reply.metadata,
        metadata::status_frame(Code::DeadlineExceeded, "R2")
    );
    eventually(|| f.servers[0].active_handlers() == 0).await;
}

#[tokio::test]
async fn handler_sees_user_metadata_deadline_and_caller() {
    let f = fixture(&["server"]).await;
    let ch = Channel::new(f.client.clone(), members(&["server"])).unwrap();
    let o = CallOptions::with_timeout(Duration::from_secs(30)).metadata("x-user", "u1");
    let r: Msg = bounded(ch.unary(SVC, "Meta", msg("", 0), o)).await.unwrap();
    assert_eq!(r.text, format!("u1|{}", f.client.name()));
    assert!((1..=30).contains(&r.n), "remaining {}s", r.n);
}

// ---- wire frames ------------------------------------------------------------

#[tokio::test]
async fn server_answers_responses_without_code_then_an_eos_with_code_and_no_direction_marker() {
    let f = fixture(&["server"]).await;
    let mut s = raw_session(&f, "server").await;
    let first = metadata::client_first_frame(
        &Metadata::new(),
        SystemTime::now() + Duration::from_secs(60),
        SVC,
        "ExampleUnaryStream",
        "R3",
    );
    use prost::Message as _;
    s.handle
        .publish(msg("", 2).encode_to_vec(), first.clone())
        .await
        .unwrap();
    s.handle
        .publish(
            Vec::new(),
            metadata::client_eos1("R3", RequestsSent::Some, &first),
        )
        .await
        .unwrap();
    for want in [msg("server", 0), msg("server", 1)] {
        let r = next_frame(&mut s).await;
        // Responses carry no code (3.x); only the EOS does.
        assert_eq!(r.metadata, metadata::response_frame("R3"));
        assert_eq!(Msg::decode(r.payload.as_slice()).unwrap(), want);
    }
    let eos = next_frame(&mut s).await;
    assert!(eos.payload.is_empty());
    assert_eq!(eos.metadata, metadata::status_frame(Code::Ok, "R3"));
}

/// Sends unary call `rpc_id` to the server on raw session `s`, with
/// `extra` in its first frame.
async fn raw_unary(s: &TransportSession, rpc_id: &str, n: i64, extra: &[(&str, &str)]) {
    use prost::Message as _;
    let mut first = metadata::client_first_frame(
        &Metadata::new(),
        SystemTime::now() + Duration::from_secs(60),
        SVC,
        "ExampleUnaryUnary",
        rpc_id,
    );
    first.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    s.handle
        .publish(msg("raw", n).encode_to_vec(), first)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_unary_answer_gets_an_eos_only_in_a_group_and_only_for_callers_that_count_them() {
    use prost::Message as _;
    let f = fixture(&["server"]).await;
    // Point-to-point: two calls, two answers, nothing between them.
    let mut p2p = raw_session(&f, "server").await;
    raw_unary(&p2p, "P1", 1, &[]).await;
    let answer = next_frame(&mut p2p).await;
    assert_eq!(answer.metadata, metadata::response_frame("P1"));
    assert_eq!(Msg::decode(answer.payload.as_slice()).unwrap().n, 1);
    raw_unary(&p2p, "P2", 2, &[]).await;
    let next = next_frame(&mut p2p).await;
    assert_eq!(
        next.metadata,
        metadata::response_frame("P2"),
        "the frame after P1's answer is P2's answer, not an EOS"
    );

    // Group: an official-style caller (no key) gets the answer, then the
    // EOS it counts; a caller that takes the answer as the end gets none.
    let mut group = f
        .client
        .create_session(
            SessionKind::Group,
            &Name::new("org", "ns", "chan"),
            Default::default(),
        )
        .await
        .unwrap();
    group
        .handle
        .invite(&Name::new("org", "ns", "server"))
        .await
        .unwrap();
    raw_unary(&group, "G1", 3, &[]).await;
    let answer = next_frame(&mut group).await;
    assert_eq!(answer.metadata, metadata::response_frame("G1"));
    let eos = next_frame(&mut group).await;
    assert!(eos.payload.is_empty());
    assert_eq!(eos.metadata, metadata::status_frame(Code::Ok, "G1"));
    let ends = [(metadata::ANSWER_ENDS_KEY, "true")];
    raw_unary(&group, "G2", 4, &ends).await;
    assert_eq!(
        next_frame(&mut group).await.metadata,
        metadata::response_frame("G2")
    );
    raw_unary(&group, "G3", 5, &[]).await;
    assert_eq!(
        next_frame(&mut group).await.metadata,
        metadata::response_frame("G3"),
        "no EOS after G2's answer"
    );
    assert_eq!(
        next_frame(&mut group).await.metadata,
        metadata::status_frame(Code::Ok, "G3")
    );
}

#[tokio::test]
async fn a_unary_request_is_one_frame_and_a_request_stream_ends_with_eos1_alone() {
    let net = MemNet::new();
    let server = net.app("raw");
    let client = net.app("client");
    let ch = Channel::new(client.clone(), members(&["raw"])).unwrap();
    let (ch2, ch3) = (ch.clone(), ch.clone());
    let o = CallOptions::with_timeout(Duration::from_secs(30)).metadata("x-user", "u1");
    let call =
        tokio::spawn(async move { ch.unary::<Msg, Msg>(SVC, "Echo", msg("ping", 1), o).await });
    let mut s = bounded(server.accept_session()).await.unwrap();
    let first = next_frame(&mut s).await;
    let m = &first.metadata;
    assert_eq!(m["service"], SVC);
    assert_eq!(m["method"], "Echo");
    assert_eq!(m["slimrpc-dir"], "req");
    assert_eq!(m["x-user"], "u1");
    assert!(!m.contains_key("slimrpc-code"));
    let rpc_id = m["rpc-id"].clone();
    assert_eq!(uuid::Uuid::parse_str(&rpc_id).unwrap().get_version_num(), 4);
    let deadline = metadata::decode_deadline(&m["slimrpc-timeout"]).unwrap();
    let left = deadline.duration_since(SystemTime::now()).unwrap();
    assert!(left <= Duration::from_secs(30));
    // Answer like a v1.3 server: response then EOS.
    let server_handle = s.handle.clone();
    let answer = |source: Name, rpc_id: String| {
        let handle = server_handle.clone();
        async move {
            use prost::Message as _;
            for payload in [msg("pong", 2).encode_to_vec(), Vec::new()] {
                handle
                    .publish_unicast(&source, payload, metadata::status_frame(Code::Ok, &rpc_id))
                    .await
                    .unwrap();
            }
        }
    };
    answer(first.source.clone(), rpc_id.clone()).await;
    assert_eq!(bounded(call).await.unwrap().unwrap(), msg("pong", 2));

    // The next frame on the session is the next call's: the unary call sent
    // neither EOS #1 nor EOS #2 (no server reads them).
    let reqs = stream::iter([msg("a", 1), msg("b", 2)]);
    let call = tokio::spawn(async move {
        ch2.stream_unary::<_, Msg>(SVC, "Collect", reqs, opts())
            .await
    });
    let first = next_frame(&mut s).await;
    assert_eq!(first.metadata["method"], "Collect");
    let stream_id = first.metadata["rpc-id"].clone();
    assert_ne!(stream_id, rpc_id);
    let second = next_frame(&mut s).await;
    assert_eq!(second.metadata, metadata::client_next_frame(&stream_id));
    let eos1 = next_frame(&mut s).await;
    assert!(eos1.payload.is_empty());
    assert_eq!(
        eos1.metadata,
        metadata::client_eos1(&stream_id, RequestsSent::Some, &first.metadata)
    );
    answer(first.source.clone(), stream_id.clone()).await;
    assert_eq!(bounded(call).await.unwrap().unwrap(), msg("pong", 2));

    // And the request stream sent no EOS #2 after its EOS #1.
    let call = tokio::spawn(async move {
        ch3.unary::<Msg, Msg>(SVC, "Echo", msg("c", 3), opts())
            .await
    });
    let third = next_frame(&mut s).await;
    assert_eq!(third.metadata["method"], "Echo");
    assert!(third.metadata["rpc-id"] != stream_id && third.metadata["rpc-id"] != rpc_id);
    answer(third.source.clone(), third.metadata["rpc-id"].clone()).await;
    assert_eq!(bounded(call).await.unwrap().unwrap(), msg("pong", 2));
}

// ---- concurrency, cancellation, sessions --------------------------------------

#[tokio::test]
async fn two_hundred_concurrent_unary_calls_share_one_session() {
    let f = fixture(&["server"]).await;
    let ch = Channel::new(f.client.clone(), members(&["server"])).unwrap();
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
    assert_eq!(f.net.p2p_created.load(Ordering::SeqCst), 1);
    assert_eq!(ch.pending_calls(), 0);
    eventually(|| f.servers[0].active_handlers() == 0).await;
}

#[tokio::test]
async fn dropping_a_response_stream_unregisters_the_call() {
    let f = fixture(&["server"]).await;
    let ch = Channel::new(f.client.clone(), members(&["server"])).unwrap();
    let mut s = ch.unary_stream::<_, Msg>(SVC, "SlowStream", msg("", 0), opts());
    let first = bounded(s.next()).await.unwrap().unwrap();
    assert_eq!(first.text, "first");
    assert_eq!(ch.pending_calls(), 1);
    drop(s);
    assert_eq!(ch.pending_calls(), 0);
    f.release.notify_waiters();
}

#[tokio::test]
async fn dropping_a_unary_future_mid_call_unregisters_it() {
    let f = fixture(&["slow"]).await;
    let ch = Channel::new(f.client.clone(), members(&["slow"])).unwrap();
    let mut call = Box::pin(ch.unary::<Msg, Msg>(SVC, "Slow", msg("", 0), opts()));
    // Drive it until the server runs the handler, then abandon it.
    tokio::select! {
        _ = &mut call => panic!("the slow call must not finish"),
        _ = eventually(|| f.servers[0].active_handlers() == 1) => {}
    }
    assert_eq!(ch.pending_calls(), 1);
    drop(call);
    assert_eq!(ch.pending_calls(), 0);
    // The channel still works.
    let r: Msg = bounded(ch.unary(SVC, "ExampleUnaryUnary", msg("x", 0), opts()))
        .await
        .unwrap();
    assert_eq!(r.text, "slow: x");
}

#[tokio::test]
async fn dead_p2p_session_is_recreated_on_the_next_call() {
    let f = fixture(&["server"]).await;
    let ch = Channel::new(f.client.clone(), members(&["server"])).unwrap();
    let _: Msg = bounded(ch.unary(SVC, "ExampleUnaryUnary", msg("a", 0), opts()))
        .await
        .unwrap();
    f.net.kill_all_sessions();
    let r: Msg = bounded(ch.unary(SVC, "ExampleUnaryUnary", msg("b", 0), opts()))
        .await
        .unwrap();
    assert_eq!(r.text, "server: b");
    assert_eq!(f.net.p2p_created.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn dead_group_session_is_recreated_and_members_reinvited() {
    let f = fixture(&["s1", "s2"]).await;
    let ch = Channel::new(f.client.clone(), members(&["s1", "s2"])).unwrap();
    let (ok, _) =
        collect_group(ch.group_unary::<_, Msg>(SVC, "ExampleUnaryUnary", msg("a", 0), opts()))
            .await;
    assert_eq!(ok.len(), 2);
    assert_eq!(f.net.invites.load(Ordering::SeqCst), 2);
    let first_name = ch.group_name().unwrap();
    f.net.kill_all_sessions();
    let (ok, err) =
        collect_group(ch.group_unary::<_, Msg>(SVC, "ExampleUnaryUnary", msg("b", 0), opts()))
            .await;
    assert!(err.is_empty());
    assert_eq!(ok.len(), 2);
    assert_eq!(f.net.groups_created.load(Ordering::SeqCst), 2);
    assert_eq!(f.net.invites.load(Ordering::SeqCst), 4);
    // The new session has a channel name of its own (same org/ns, new uuid).
    let second_name = ch.group_name().unwrap();
    assert_ne!(second_name, first_name);
    assert_eq!(second_name.strings()[..2], first_name.strings()[..2]);
}

#[tokio::test]
async fn group_session_death_mid_call_reports_completed_and_missing_members() {
    let f = fixture(&["s1", "slow2"]).await;
    let ch = Channel::new(f.client.clone(), members(&["s1", "slow2"])).unwrap();
    let mut s = ch.group_unary::<_, Msg>(SVC, "Slow", msg("", 0), opts());
    let first = bounded(s.next()).await.unwrap().unwrap();
    assert_eq!(first.source.strings()[2], "s1");
    // s1 answered; wait until its trailing EOS cannot matter, then kill.
    f.net.kill_all_sessions();
    let end = bounded(s.next()).await.unwrap();
    assert_eq!(
        end,
        Err(RpcError::MulticastSessionClosed {
            completed: 1,
            total: 2,
            received: vec!["org/ns/s1".into()],
            missing: vec!["org/ns/slow2".into()],
        })
    );
    assert!(bounded(s.next()).await.is_none());
    assert_eq!(ch.pending_calls(), 0);
}

#[tokio::test]
async fn a_member_leaving_mid_call_is_reported_missing_and_the_next_call_reinvites_it() {
    let f = fixture(&["s1", "s2", "slow3"]).await;
    let ch = Channel::new(f.client.clone(), members(&["s1", "s2", "slow3"])).unwrap();
    let mut s = ch.group_unary::<_, Msg>(SVC, "Slow", msg("", 0), opts());
    let mut answered = Vec::new();
    for _ in 0..2 {
        let item = bounded(s.next()).await.unwrap().unwrap();
        answered.push(item.source.strings()[2].clone());
    }
    answered.sort();
    assert_eq!(answered, ["s1", "s2"]);
    // slow3 is still working when the session declares it gone.
    f.net.drop_member("slow3").await;
    let end = bounded(s.next()).await.unwrap();
    assert_eq!(
        end,
        Err(RpcError::MulticastSessionClosed {
            completed: 2,
            total: 3,
            received: vec!["org/ns/s1".into(), "org/ns/s2".into()],
            missing: vec!["org/ns/slow3".into()],
        })
    );
    assert!(bounded(s.next()).await.is_none());
    assert_eq!(ch.pending_calls(), 0);
    // The session that lost a member is not reused: a new one re-invites all
    // three, and the old one is closed.
    let (ok, err) =
        collect_group(ch.group_unary::<_, Msg>(SVC, "ExampleUnaryUnary", msg("b", 0), opts()))
            .await;
    assert!(err.is_empty(), "{err:?}");
    assert_eq!(ok.len(), 3);
    assert_eq!(f.net.groups_created.load(Ordering::SeqCst), 2);
    assert_eq!(f.net.invites.load(Ordering::SeqCst), 6);
    eventually(|| f.net.open_sessions() == 1).await;
    f.release.notify_waiters();
}

#[tokio::test]
async fn a_member_leaving_after_its_eos_does_not_disturb_the_call() {
    let f = fixture(&["slow1", "s2"]).await;
    let ch = Channel::new(f.client.clone(), members(&["slow1", "s2"])).unwrap();
    let mut s = ch.group_unary::<_, Msg>(SVC, "Slow", msg("", 0), opts());
    let first = bounded(s.next()).await.unwrap().unwrap();
    assert_eq!(first.source.strings()[2], "s2");
    f.net.drop_member("s2").await;
    // slow1 still answers; s2 had finished, so nothing is missing.
    let net = f.net.clone();
    let release = f.release.clone();
    let releaser = tokio::spawn(async move {
        // Keep waking until slow1's handler has seen it.
        loop {
            release.notify_waiters();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if net.open_sessions() == 0 {
                break;
            }
        }
    });
    let second = bounded(s.next()).await.unwrap().unwrap();
    assert_eq!(second.source.strings()[2], "slow1");
    assert!(bounded(s.next()).await.is_none());
    releaser.abort();
}

#[tokio::test]
async fn a_member_leaving_mid_stream_before_the_others_end_is_owed_as_an_error_item() {
    // The departure is accounted first; the last survivor's end is an EOS
    // frame (nothing to yield), which used to end the call without the error.
    let f = fixture(&["s1", "slow2"]).await;
    let ch = Channel::new(f.client.clone(), members(&["s1", "slow2"])).unwrap();
    let mut s = ch.group_unary_stream::<_, Msg>(SVC, "SlowStream", msg("", 0), opts());
    let mut firsts = Vec::new();
    for _ in 0..2 {
        let item = bounded(s.next()).await.unwrap().unwrap();
        assert_eq!(item.message.text, "first");
        firsts.push(item.source.strings()[2].clone());
    }
    firsts.sort();
    assert_eq!(firsts, ["s1", "slow2"]);
    f.net.drop_member("slow2").await;
    // s1 goes on and ends with an EOS after its second item.
    let net = f.net.clone();
    let release = f.release.clone();
    let releaser = tokio::spawn(async move {
        loop {
            release.notify_waiters();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if net.open_sessions() == 0 {
                break;
            }
        }
    });
    let second = bounded(s.next()).await.unwrap().unwrap();
    assert_eq!(
        (
            second.source.strings()[2].as_str(),
            second.message.text.as_str()
        ),
        ("s1", "second")
    );
    assert_eq!(
        bounded(s.next()).await,
        Some(Err(RpcError::MulticastSessionClosed {
            completed: 1,
            total: 2,
            received: vec!["org/ns/s1".into()],
            missing: vec!["org/ns/slow2".into()],
        }))
    );
    assert!(bounded(s.next()).await.is_none());
    releaser.abort();
}

#[tokio::test]
async fn a_finished_response_stream_polled_again_yields_none_instead_of_panicking() {
    let f = fixture(&["s1", "s2"]).await;
    let ch = Channel::new(f.client.clone(), members(&["s1", "s2"])).unwrap();
    let mut s = ch.group_unary::<_, Msg>(SVC, "ExampleUnaryUnary", msg("x", 0), opts());
    while bounded(s.next()).await.is_some() {}
    for _ in 0..3 {
        assert!(bounded(s.next()).await.is_none());
    }
    let p2p = Channel::new(f.client.clone(), members(&["s1"])).unwrap();
    let mut s = p2p.unary_stream::<_, Msg>(SVC, "ExampleUnaryStream", msg("", 2), opts());
    assert!(matches!(bounded(s.next()).await, Some(Ok(_))));
    assert!(matches!(bounded(s.next()).await, Some(Ok(_))));
    assert!(bounded(s.next()).await.is_none());
    assert!(bounded(s.next()).await.is_none());
    // An error ends a call too; polling after it is just as safe.
    let mut s = p2p.unary_stream::<_, Msg>(SVC, "NoSuchMethod", msg("", 2), opts());
    assert!(matches!(bounded(s.next()).await, Some(Err(_))));
    assert!(bounded(s.next()).await.is_none());
    assert!(bounded(s.next()).await.is_none());
}

#[tokio::test]
async fn a_message_the_session_lost_ends_the_members_part_of_a_group_call_with_data_loss() {
    let f = fixture(&["slow1", "s2"]).await;
    let ch = Channel::new(f.client.clone(), members(&["slow1", "s2"])).unwrap();
    let mut s = ch.group_unary::<_, Msg>(SVC, "Slow", msg("", 0), opts());
    let first = bounded(s.next()).await.unwrap().unwrap();
    assert_eq!(first.source.strings()[2], "s2");
    // slow1's answer may be the lost message: the call must not wait for it
    // in silence, nor end as if nothing happened.
    f.net.lose_message_from("slow1", 42).await;
    match bounded(s.next()).await {
        Some(Err(RpcError::MulticastRpc { origin, code, .. })) => {
            assert_eq!(origin, "org/ns/slow1");
            assert_eq!(code, Code::DataLoss);
        }
        other => panic!("expected slow1's DataLoss, got {other:?}"),
    }
    assert!(bounded(s.next()).await.is_none());
    assert_eq!(ch.pending_calls(), 0);
    f.release.notify_waiters();
}

#[tokio::test]
async fn a_message_the_session_lost_fails_a_running_p2p_call_with_data_loss() {
    let f = fixture(&["server"]).await;
    let ch = Channel::new(f.client.clone(), members(&["server"])).unwrap();
    let mut s = ch.unary_stream::<_, Msg>(SVC, "SlowStream", msg("", 0), opts());
    assert_eq!(bounded(s.next()).await.unwrap().unwrap().text, "first");
    f.net.lose_message_from("server", 7).await;
    let e = bounded(s.next()).await.unwrap().unwrap_err();
    assert_eq!(e.code(), Code::DataLoss, "{e}");
    assert!(bounded(s.next()).await.is_none());
    // The session goes on: the next call succeeds on it.
    let r: Msg = bounded(ch.unary(SVC, "ExampleUnaryUnary", msg("b", 0), opts()))
        .await
        .unwrap();
    assert_eq!(r, msg("server: b", 0));
    f.release.notify_waiters();
}

#[tokio::test]
async fn a_message_lost_on_the_way_to_a_server_ends_the_request_stream_with_data_loss() {
    let f = fixture(&["server"]).await;
    let ch = Channel::new(f.client.clone(), members(&["server"])).unwrap();
    let (mut tx, rx) = futures::channel::mpsc::unbounded::<Msg>();
    let call = ch.stream_unary::<_, Msg>(SVC, "ExampleStreamUnary", rx, opts());
    let server = &f.servers[0];
    let net = f.net.clone();
    let (r, _) = bounded(futures::future::join(call, async move {
        use futures::SinkExt;
        tx.send(msg("a", 1)).await.unwrap();
        eventually(|| server.open_streams() == 1).await;
        net.lose_message_from("client", 3).await;
        // The handler's request stream ends with the loss, so it fails
        // (this test handler unwraps: Internal) instead of answering a sum
        // that misses a request.
        eventually(|| server.open_streams() == 0).await;
        drop(tx);
    }))
    .await;
    assert!(r.is_err(), "{r:?}");
}

/// A server whose `Stall` handler reads nothing until `release` fires,
/// then counts its requests; request buffer 4 (hold limit 20).
async fn stalling_server(net: &Arc<MemNet>, release: Arc<Notify>) -> ServerHandle {
    let mut s = Server::new(net.app("server"), Name::new("org", "ns", "server"));
    s.set_request_buffer(4);
    s.register_stream_unary(SVC, "Stall", move |mut reqs: RequestStream<Msg>, _ctx| {
        let r = release.clone();
        async move {
            r.notified().await;
            let mut n = 0;
            while let Some(req) = reqs.next().await {
                req?;
                n += 1;
            }
            Ok(msg("read", n))
        }
    });
    s.register_unary_unary(SVC, "Echo", |req: Msg, _ctx| async move { Ok(req) });
    s.start().await.unwrap()
}

// Paused time: the watchdog's second passes only when every task waits, so
// the stall is certain and no test waits for real.
#[tokio::test(start_paused = true)]
async fn a_handler_that_stops_reading_its_requests_gets_resource_exhausted_while_others_go_on() {
    let net = MemNet::new();
    let release = Arc::new(Notify::new());
    let server = stalling_server(&net, release.clone()).await;
    let ch = Channel::new(net.app("client"), members(&["server"])).unwrap();
    // Ten requests, then the stream stays open: more would come.
    let requests = stream::iter((0..10).map(|i| msg("r", i))).chain(stream::pending());
    let stalled = ch.stream_unary::<_, Msg>(SVC, "Stall", requests, opts());
    let others = async {
        eventually(|| server.open_streams() == 1 && server.active_handlers() == 1).await;
        // The session serves other calls while the handler holds more than
        // its buffer: nobody waits for it.
        let echo: Msg = bounded(ch.unary(SVC, "Echo", msg("hi", 1), opts()))
            .await
            .unwrap();
        assert_eq!(echo, msg("hi", 1));
        // Past the wait without taking a request: its stream is ended.
        tokio::time::sleep(crate::server::REQUEST_BUFFER_WAIT * 3).await;
        release.notify_one();
    };
    let (r, ()) = bounded(futures::future::join(stalled, others)).await;
    let e = r.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
}

#[tokio::test]
async fn a_handler_whose_requests_reach_the_hold_limit_gets_resource_exhausted_at_once() {
    let net = MemNet::new();
    let release = Arc::new(Notify::new());
    let server = stalling_server(&net, release.clone()).await;
    let ch = Channel::new(net.app("client"), members(&["server"])).unwrap();
    // Forty requests into a stream that holds at most twenty.
    let requests = stream::iter((0..40).map(|i| msg("r", i)));
    let stalled = ch.stream_unary::<_, Msg>(SVC, "Stall", requests, opts());
    let others = async {
        // Ended at once (no wait): the stream is gone while the handler has
        // not read a thing, and the session serves other calls.
        eventually(|| server.open_streams() == 0 && server.active_handlers() == 1).await;
        let echo: Msg = bounded(ch.unary(SVC, "Echo", msg("hi", 1), opts()))
            .await
            .unwrap();
        assert_eq!(echo, msg("hi", 1));
        release.notify_one();
    };
    let (r, ()) = bounded(futures::future::join(stalled, others)).await;
    let e = r.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
}

#[tokio::test]
async fn p2p_session_death_mid_call_is_internal() {
    let f = fixture(&["slow"]).await;
    let ch = Channel::new(f.client.clone(), members(&["slow"])).unwrap();
    let call = ch.unary::<Msg, Msg>(SVC, "Slow", msg("", 0), opts());
    let net = f.net.clone();
    let server = &f.servers[0];
    let (r, _) = bounded(futures::future::join(call, async move {
        eventually(|| server.active_handlers() == 1).await;
        net.kill_all_sessions();
    }))
    .await;
    assert_eq!(
        r,
        Err(RpcError::internal("Session closed after 0/1 EOS markers"))
    );
}

#[tokio::test]
async fn single_member_channel_is_point_to_point() {
    let f = fixture(&["server"]).await;
    let ch = Channel::new(f.client.clone(), members(&["server"])).unwrap();
    assert!(!ch.is_group());
    assert!(ch.group_name().is_none());
    let (ok, _) =
        collect_group(ch.group_unary::<_, Msg>(SVC, "ExampleUnaryUnary", msg("x", 0), opts()))
            .await;
    assert_eq!(ok.len(), 1);
    assert_eq!(f.net.p2p_created.load(Ordering::SeqCst), 1);
    assert_eq!(f.net.groups_created.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn group_channel_name_uses_client_org_and_namespace_and_a_uuid() {
    let net = MemNet::new();
    let client = net.app("client");
    let ch = Channel::new(client, members(&["a", "b"])).unwrap();
    let g = ch.group_name().unwrap();
    assert_eq!(g.strings()[0], "org");
    assert_eq!(g.strings()[1], "ns");
    assert_eq!(
        uuid::Uuid::parse_str(&g.strings()[2])
            .unwrap()
            .get_version_num(),
        4
    );
    assert!(Channel::new(net.app("c2"), vec![]).is_err());
}

#[tokio::test]
async fn closed_channel_refuses_calls() {
    let f = fixture(&["server"]).await;
    let ch = Channel::new(f.client.clone(), members(&["server"])).unwrap();
    let _: Msg = bounded(ch.unary(SVC, "ExampleUnaryUnary", msg("a", 0), opts()))
        .await
        .unwrap();
    bounded(ch.close()).await.unwrap();
    let r: Result<Msg, _> = bounded(ch.unary(SVC, "ExampleUnaryUnary", msg("a", 0), opts())).await;
    assert_eq!(r.unwrap_err().code(), Code::Unavailable);
}

// ---- server lifecycle -----------------------------------------------------------

#[tokio::test]
async fn shutdown_cancels_running_calls_with_server_shutting_down() {
    let mut f = fixture(&["slow"]).await;
    let ch = Channel::new(f.client.clone(), members(&["slow"])).unwrap();
    let server = f.servers.remove(0);
    let call = ch.unary::<Msg, Msg>(SVC, "Slow", msg("", 0), opts());
    let (r, _) = bounded(futures::future::join(call, async move {
        eventually(|| server.active_handlers() == 1).await;
        server.shutdown().await;
    }))
    .await;
    assert_eq!(r, Err(RpcError::cancelled("Server shutting down")));
}

#[tokio::test]
async fn stream_handler_that_answers_early_leaves_no_open_stream() {
    let f = fixture(&["server"]).await;
    let ch = Channel::new(f.client.clone(), members(&["server"])).unwrap();
    let (tx, rx) = futures::channel::mpsc::unbounded::<Msg>();
    tx.unbounded_send(msg("one", 1)).unwrap();
    // The request stream stays open: the handler answers after the first item.
    let r: Msg = bounded(ch.stream_unary(SVC, "FirstOnly", rx, opts()))
        .await
        .unwrap();
    assert_eq!(r, msg("one", 1));
    eventually(|| f.servers[0].active_handlers() == 0 && f.servers[0].open_streams() == 0).await;
    drop(tx);
}

#[tokio::test]
async fn group_servers_ignore_echoed_replies_of_other_members_while_streaming() {
    // Ping-pong: the next request goes out only once both members answered
    // the previous one, so each member's stream is still open when the
    // re-sent (echoed) replies of the other member reach it.
    let f = fixture(&["s1", "s2"]).await;
    let ch = Channel::new(f.client.clone(), members(&["s1", "s2"])).unwrap();
    let (tx, rx) = futures::channel::mpsc::unbounded::<Msg>();
    tx.unbounded_send(msg("item 0", 0)).unwrap();
    let mut s = ch.group_stream_stream::<_, Msg>(SVC, "ExampleStreamStream", rx, opts());
    let mut tx = Some(tx);
    let mut got = Vec::new();
    while let Some(item) = bounded(s.next()).await {
        let item = item.unwrap();
        got.push((item.source.strings()[2].clone(), item.message.n));
        if got.len() % 2 == 0 {
            let next = (got.len() / 2) as i64;
            if next < 3 {
                if let Some(tx) = &tx {
                    tx.unbounded_send(msg(&format!("item {next}"), next))
                        .unwrap();
                }
            } else {
                tx = None;
            }
        }
    }
    drop(tx);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("s1".to_string(), 0),
            ("s1".to_string(), 100),
            ("s1".to_string(), 200),
            ("s2".to_string(), 0),
            ("s2".to_string(), 100),
            ("s2".to_string(), 200),
        ]
    );
}

#[tokio::test]
async fn dropping_the_last_channel_clone_closes_its_session() {
    let f = fixture(&["server"]).await;
    let ch = Channel::new(f.client.clone(), members(&["server"])).unwrap();
    let other = ch.clone();
    let _: Msg = bounded(ch.unary(SVC, "ExampleUnaryUnary", msg("a", 0), opts()))
        .await
        .unwrap();
    assert_eq!(f.net.open_sessions(), 1);
    drop(ch);
    assert_eq!(f.net.open_sessions(), 1, "a clone still uses the session");
    drop(other);
    eventually(|| f.net.open_sessions() == 0).await;
    eventually(|| f.servers[0].active_sessions() == 0).await;
}

// ---- request frames owed after the answer ----------------------------------

/// A client transport whose sessions hold every empty publish (client EOS
/// #1 and #2) until `open` is set, and count the ones that went out.
#[derive(Clone)]
struct HeldEos {
    inner: MemApp,
    open: watch::Receiver<bool>,
    sent: Arc<AtomicUsize>,
}

struct HeldEosHandle {
    inner: Arc<dyn RpcSessionHandle>,
    open: watch::Receiver<bool>,
    sent: Arc<AtomicUsize>,
}

impl RpcTransport for HeldEos {
    fn local_name(&self) -> Name {
        self.inner.local_name()
    }
    fn create_session(
        &self,
        kind: SessionKind,
        destination: &Name,
        options: SessionOptions,
    ) -> TransportFuture<'_, TransportSession> {
        let destination = destination.clone();
        Box::pin(async move {
            let s = self
                .inner
                .create_session(kind, &destination, options)
                .await?;
            Ok(TransportSession {
                handle: Arc::new(HeldEosHandle {
                    inner: s.handle,
                    open: self.open.clone(),
                    sent: self.sent.clone(),
                }),
                events: s.events,
            })
        })
    }
    fn accept_session(&self) -> TransportFuture<'_, TransportSession> {
        self.inner.accept_session()
    }
    fn subscribe(&self, name: &Name, conn: Option<u64>) -> TransportFuture<'_, ()> {
        self.inner.subscribe(name, conn)
    }
    fn set_route(&self, name: &Name, conn: u64) -> TransportFuture<'_, ()> {
        self.inner.set_route(name, conn)
    }
}

impl RpcSessionHandle for HeldEosHandle {
    fn id(&self) -> u32 {
        self.inner.id()
    }
    fn kind(&self) -> SessionKind {
        self.inner.kind()
    }
    fn publish(&self, payload: Vec<u8>, metadata: Metadata) -> TransportFuture<'_, ()> {
        Box::pin(async move {
            let eos = payload.is_empty();
            if eos {
                let mut open = self.open.clone();
                let _ = open.wait_for(|o| *o).await;
            }
            self.inner.publish(payload, metadata).await?;
            if eos {
                self.sent.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })
    }
    fn publish_unicast<'a>(
        &'a self,
        member: &'a Name,
        payload: Vec<u8>,
        metadata: Metadata,
    ) -> TransportFuture<'a, ()> {
        self.inner.publish_unicast(member, payload, metadata)
    }
    fn invite<'a>(&'a self, member: &'a Name) -> TransportFuture<'a, ()> {
        self.inner.invite(member)
    }
    fn invite_many<'a>(&'a self, members: &'a [Name]) -> TransportFuture<'a, ()> {
        self.inner.invite_many(members)
    }
    fn close(&self) -> TransportFuture<'_, ()> {
        self.inner.close()
    }
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}

#[tokio::test]
async fn client_eos1_overtaken_by_the_answer_is_still_sent() {
    let f = fixture(&["s1", "s2"]).await;
    let (open, rx) = watch::channel(false);
    let client = HeldEos {
        inner: f.client.clone(),
        open: rx,
        sent: Arc::new(AtomicUsize::new(0)),
    };
    // `FirstOnly` answers after the first request, before the stream ends.
    let ch = Channel::new(client.clone(), members(&["s1"])).unwrap();
    let reqs = stream::iter([msg("hi", 1)]);
    let res: Msg = bounded(ch.stream_unary(SVC, "FirstOnly", reqs, opts()))
        .await
        .unwrap();
    assert_eq!(res, msg("hi", 1));
    let group = Channel::new(client.clone(), members(&["s1", "s2"])).unwrap();
    let reqs = stream::iter([msg("g", 2)]);
    let (ok, err) =
        collect_group(group.group_stream_unary::<_, Msg>(SVC, "FirstOnly", reqs, opts())).await;
    assert_eq!((ok.len(), err.len()), (2, 0));
    // Both calls ended with their EOS #1 still held back.
    assert_eq!(client.sent.load(Ordering::SeqCst), 0);
    open.send(true).unwrap();
    eventually(|| client.sent.load(Ordering::SeqCst) == 2).await;
}
