//! The gRPC interoperability test cases, ported to SlimRPC: the services of
//! grpc's `test.proto` (mirrored in `testdata/grpc_testing`, compiled by our
//! Rust plugin in `build.rs`), served by our runtime and called by our
//! runtime, each case point-to-point and on groups of two and three members, both
//! embedded (one SLIM service in the process) and through our node (each
//! party its own SLIM service linked to it; MLS on, the default).
//!
//! What differs from gRPC, by design of SlimRPC: a call is cancelled by
//! dropping it (as with tonic); a server learns of a call with its first
//! request frame, so `cancel_after_begin` (no request sent) leaves nothing
//! on the servers; a group call answers once per member, so each case checks
//! every member's answer.

mod common;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt, channel::mpsc, stream};
use slim_transport::Name;
use slim_transport::service::Service;
use slimrpc::{
    CallOptions, Channel, ChannelOptions, Code, Context, MetadataExt, MulticastItem, RequestStream,
    ResponseMetadataSink, ResponseStream, RpcError, Server, ServerHandle,
};
use slimrpc_examples::{Protocol, app_with, connect_with, name};

use common::{LIMIT, node};

#[allow(clippy::all, dead_code)]
mod grpc_testing {
    include!(concat!(env!("OUT_DIR"), "/grpc.testing.rs"));
}

use grpc_testing::test_service_client::{TestServiceClient, TestServiceGroupClient};
use grpc_testing::test_service_server::{TestService, TestServiceServer};
use grpc_testing::unimplemented_service_client::{
    UnimplementedServiceClient, UnimplementedServiceGroupClient,
};
use grpc_testing::{
    EchoStatus, Empty, Payload, ResponseParameters, SimpleRequest, SimpleResponse,
    StreamingInputCallRequest, StreamingInputCallResponse, StreamingOutputCallRequest,
    StreamingOutputCallResponse,
};

const ECHO_INITIAL: &str = "x-grpc-test-echo-initial";
const ECHO_TRAILING: &str = "x-grpc-test-echo-trailing-bin";

// ---- the interop server --------------------------------------------------

/// What one server saw.
#[derive(Debug, Default)]
struct Stats {
    /// Request streams that ended with `Cancelled` (the caller cancelled).
    cancelled: AtomicUsize,
}

struct Interop {
    stats: Arc<Stats>,
}

fn payload(size: i32) -> Payload {
    Payload {
        r#type: 0,
        body: vec![0; size.max(0) as usize],
    }
}

/// Echoes the interop metadata keys back, as the gRPC interop server does.
fn echo_metadata(ctx: &Context) {
    if let Some(v) = ctx.metadata().get(ECHO_INITIAL) {
        ctx.set_header(ECHO_INITIAL, v.clone());
    }
    if let Some(v) = ctx.metadata().get(ECHO_TRAILING) {
        ctx.set_trailer(ECHO_TRAILING, v.clone());
    }
}

/// The status a request asks for, as an error (none for code 0).
fn requested_status(s: &Option<EchoStatus>) -> Result<(), RpcError> {
    match s {
        Some(s) if s.code != 0 => Err(RpcError::new(
            Code::from_i32(s.code).unwrap_or(Code::Unknown),
            s.message.clone(),
        )),
        _ => Ok(()),
    }
}

async fn respond(p: &ResponseParameters) -> StreamingOutputCallResponse {
    if p.interval_us > 0 {
        tokio::time::sleep(Duration::from_micros(p.interval_us as u64)).await;
    }
    StreamingOutputCallResponse {
        payload: Some(payload(p.size)),
    }
}

type DuplexState = (
    RequestStream<StreamingOutputCallRequest>,
    VecDeque<ResponseParameters>,
    bool,
    Arc<Stats>,
);

impl TestService for Interop {
    async fn empty_call(&self, _: Empty, ctx: Context) -> Result<Empty, RpcError> {
        echo_metadata(&ctx);
        Ok(Empty {})
    }

    async fn unary_call(
        &self,
        request: SimpleRequest,
        ctx: Context,
    ) -> Result<SimpleResponse, RpcError> {
        echo_metadata(&ctx);
        requested_status(&request.response_status)?;
        Ok(SimpleResponse {
            payload: Some(payload(request.response_size)),
            ..SimpleResponse::default()
        })
    }

    async fn streaming_output_call(
        &self,
        request: StreamingOutputCallRequest,
        ctx: Context,
    ) -> Result<ResponseStream<StreamingOutputCallResponse>, RpcError> {
        echo_metadata(&ctx);
        requested_status(&request.response_status)?;
        Ok(Box::pin(
            stream::iter(request.response_parameters)
                .then(|p| async move { Ok(respond(&p).await) }),
        ))
    }

    async fn streaming_input_call(
        &self,
        mut requests: RequestStream<StreamingInputCallRequest>,
        ctx: Context,
    ) -> Result<StreamingInputCallResponse, RpcError> {
        echo_metadata(&ctx);
        let mut size = 0;
        while let Some(r) = requests.next().await {
            match r {
                Ok(r) => size += r.payload.map_or(0, |p| p.body.len() as i32),
                Err(e) => {
                    if e.code() == Code::Cancelled {
                        self.stats.cancelled.fetch_add(1, Ordering::SeqCst);
                    }
                    return Err(e);
                }
            }
        }
        Ok(StreamingInputCallResponse {
            aggregated_payload_size: size,
        })
    }

    async fn full_duplex_call(
        &self,
        requests: RequestStream<StreamingOutputCallRequest>,
        ctx: Context,
    ) -> Result<ResponseStream<StreamingOutputCallResponse>, RpcError> {
        echo_metadata(&ctx);
        let state: DuplexState = (requests, VecDeque::new(), false, self.stats.clone());
        Ok(Box::pin(stream::unfold(
            state,
            |(mut requests, mut queue, done, stats)| async move {
                if done {
                    return None;
                }
                loop {
                    if let Some(p) = queue.pop_front() {
                        let r = respond(&p).await;
                        return Some((Ok(r), (requests, queue, false, stats)));
                    }
                    match requests.next().await {
                        None => return None,
                        Some(Err(e)) => {
                            if e.code() == Code::Cancelled {
                                stats.cancelled.fetch_add(1, Ordering::SeqCst);
                            }
                            return Some((Err(e), (requests, queue, true, stats)));
                        }
                        Some(Ok(r)) => {
                            if let Err(e) = requested_status(&r.response_status) {
                                return Some((Err(e), (requests, queue, true, stats)));
                            }
                            queue.extend(r.response_parameters);
                        }
                    }
                }
            },
        )))
    }
}

// ---- environments ----------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    /// Every party an app of one SLIM service in this process.
    Embedded,
    /// Every party its own SLIM service, linked to our node.
    Node,
}

struct Env {
    label: String,
    group: bool,
    channel: Channel,
    members: Vec<Name>,
    servers: Vec<ServerHandle>,
    stats: Vec<Arc<Stats>>,
    services: Vec<Service>,
    _node: Option<Service>,
}

async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: liveness bound passed"))
}

/// `count` servers (1: point-to-point, more: a group) and a client channel to them.
async fn env(via: Via, count: usize, tag: &str) -> Env {
    let group = count > 1;
    let label = format!("{tag} via {via:?}, {count} member(s)");
    let protocol = Protocol::V3;
    let mut services = Vec::new();
    let (node, url) = match via {
        Via::Node => {
            let (n, url) = node().await;
            (Some(n), Some(url))
        }
        Via::Embedded => {
            services.push(Service::new());
            (None, None)
        }
    };
    let mut servers = Vec::new();
    let mut stats = Vec::new();
    let mut members = Vec::new();
    for i in 0..count {
        let instance = format!("{tag}-s{i}");
        let server = match &url {
            Some(url) => {
                let (svc, conn) = connect_with(url, protocol).await.expect("linked");
                let app = app_with(&svc, &instance, protocol).await.expect("app");
                services.push(svc);
                Server::new_with_connection(app, name(&instance), conn)
            }
            None => {
                let app = app_with(&services[0], &instance, protocol)
                    .await
                    .expect("app");
                Server::new(app, name(&instance))
            }
        };
        let mut server = server;
        let s = Arc::new(Stats::default());
        TestServiceServer::new(Interop { stats: s.clone() }).register(&mut server);
        servers.push(bounded("server start", server.start()).await.unwrap());
        stats.push(s);
        members.push(name(&instance));
    }
    let client = format!("{tag}-c");
    let channel = match &url {
        Some(url) => {
            let (svc, conn) = connect_with(url, protocol).await.expect("linked");
            let app = app_with(&svc, &client, protocol).await.expect("app");
            app.subscribe(app.name(), Some(conn))
                .await
                .expect("subscribed");
            services.push(svc);
            let options = ChannelOptions {
                connection: Some(conn),
                ..ChannelOptions::default()
            };
            Channel::with_options(app, members.clone(), options).unwrap()
        }
        None => {
            let app = app_with(&services[0], &client, protocol)
                .await
                .expect("app");
            Channel::new(app, members.clone()).unwrap()
        }
    };
    Env {
        label,
        group,
        channel,
        members,
        servers,
        stats,
        services,
        _node: node,
    }
}

impl Env {
    fn p2p(&self) -> TestServiceClient {
        TestServiceClient::new(self.channel.clone())
    }

    fn group(&self) -> TestServiceGroupClient {
        TestServiceGroupClient::new(self.channel.clone())
    }

    async fn close(self) {
        let _ = self.channel.close().await;
        for s in self.servers {
            s.shutdown().await;
        }
        for s in self.services {
            s.shutdown().await;
        }
    }

    /// Waits until no handler runs on any member, every member saw
    /// `cancelled` cancelled request streams, and the channel holds no call.
    async fn settled(&self, cancelled: usize) {
        bounded(&self.label, async {
            loop {
                let handlers: usize = self.servers.iter().map(|s| s.active_handlers()).sum();
                let seen = self
                    .stats
                    .iter()
                    .all(|s| s.cancelled.load(Ordering::SeqCst) == cancelled);
                if handlers == 0 && seen && self.channel.pending_calls() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// Every member's item of a group call: one each, from distinct members.
    fn per_member<T: std::fmt::Debug>(
        &self,
        items: Vec<Result<MulticastItem<T>, RpcError>>,
    ) -> Vec<MulticastItem<T>> {
        assert_eq!(items.len(), self.members.len(), "{}: {items:?}", self.label);
        let ok: Vec<MulticastItem<T>> = items
            .into_iter()
            .map(|i| i.unwrap_or_else(|e| panic!("{}: {e}", self.label)))
            .collect();
        let sources: HashSet<String> = ok.iter().map(|i| i.source.strings()[2].clone()).collect();
        assert_eq!(sources.len(), self.members.len(), "{}", self.label);
        ok
    }

    /// Every member's error of a group call: one each, from distinct members.
    fn per_member_errors<T: std::fmt::Debug>(
        &self,
        items: Vec<Result<MulticastItem<T>, RpcError>>,
    ) -> Vec<RpcError> {
        assert_eq!(items.len(), self.members.len(), "{}: {items:?}", self.label);
        let errors: Vec<RpcError> = items
            .into_iter()
            .map(|i| match i {
                Err(e) => e,
                Ok(i) => panic!("{}: expected an error, got {i:?}", self.label),
            })
            .collect();
        let origins: HashSet<String> = errors
            .iter()
            .map(|e| match e {
                RpcError::MulticastRpc { origin, .. } => origin.clone(),
                other => panic!("{}: not a member's error: {other:?}", self.label),
            })
            .collect();
        assert_eq!(origins.len(), self.members.len(), "{}", self.label);
        errors
    }
}

fn opts() -> CallOptions {
    CallOptions::with_timeout(LIMIT)
}

/// Runs `case` point-to-point and in groups of two and three, embedded and
/// through our node.
async fn every_setting(tag: &str, case: impl AsyncFn(&Env)) {
    for via in [Via::Embedded, Via::Node] {
        for count in [1, 2, 3] {
            let t = format!("{tag}-{}{count}", if via == Via::Node { "n" } else { "e" },);
            let e = env(via, count, &t).await;
            case(&e).await;
            e.close().await;
        }
    }
}

fn duplex_request(request_size: i32, response_size: i32) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_parameters: vec![ResponseParameters {
            size: response_size,
            ..ResponseParameters::default()
        }],
        payload: Some(payload(request_size)),
        ..StreamingOutputCallRequest::default()
    }
}

/// Requests the test sends one by one, and the stream the call reads them from.
fn request_channel<T: Send + 'static>() -> (
    mpsc::UnboundedSender<T>,
    impl Stream<Item = T> + Send + 'static,
) {
    mpsc::unbounded()
}

fn body_len(p: &Option<Payload>) -> usize {
    p.as_ref().map_or(0, |p| p.body.len())
}

type PongStream = std::pin::Pin<Box<dyn Stream<Item = Result<(String, usize), RpcError>> + Send>>;

// ---- the cases ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_unary_returns_a_314159_byte_payload_for_a_271828_byte_request() {
    every_setting("large", async |e: &Env| {
        let req = SimpleRequest {
            response_size: 314159,
            payload: Some(payload(271828)),
            ..SimpleRequest::default()
        };
        if e.group {
            let items = bounded(
                &e.label,
                e.group().unary_call_with(req, opts()).collect::<Vec<_>>(),
            )
            .await;
            for i in e.per_member(items) {
                assert_eq!(body_len(&i.message.payload), 314159, "{}", e.label);
            }
        } else {
            let r = bounded(&e.label, e.p2p().unary_call_with(req, opts()))
                .await
                .unwrap();
            assert_eq!(body_len(&r.payload), 314159, "{}", e.label);
        }
    })
    .await;
}

fn echo_options(sink: &ResponseMetadataSink) -> CallOptions {
    opts()
        .metadata(ECHO_INITIAL, "test_initial_metadata_value")
        .metadata_bin(ECHO_TRAILING, &[0xab, 0xab, 0xab])
        .unwrap()
        .capture(sink)
}

fn assert_echoed(e: &Env, sink: &ResponseMetadataSink) {
    let check = |headers: &slimrpc::Metadata, trailers: &slimrpc::Metadata| {
        assert_eq!(
            headers.get(ECHO_INITIAL).map(String::as_str),
            Some("test_initial_metadata_value"),
            "{}",
            e.label
        );
        assert_eq!(
            trailers.get_bin(ECHO_TRAILING),
            Some(Ok(vec![0xab, 0xab, 0xab])),
            "{}",
            e.label
        );
    };
    if e.group {
        for m in &e.members {
            let got = sink
                .member(m)
                .unwrap_or_else(|| panic!("{}: nothing from {m}", e.label));
            check(&got.headers, &got.trailers);
        }
    } else {
        check(&sink.headers(), &sink.trailers());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_metadata_comes_back_as_initial_and_binary_trailing_metadata() {
    every_setting("meta", async |e: &Env| {
        // UnaryCall.
        let req = SimpleRequest {
            response_size: 314159,
            payload: Some(payload(271828)),
            ..SimpleRequest::default()
        };
        let sink = ResponseMetadataSink::new();
        if e.group {
            let items = bounded(
                &e.label,
                e.group()
                    .unary_call_with(req, echo_options(&sink))
                    .collect::<Vec<_>>(),
            )
            .await;
            e.per_member(items);
        } else {
            bounded(&e.label, e.p2p().unary_call_with(req, echo_options(&sink)))
                .await
                .unwrap();
            // The tonic-like shape gives the same.
            let r = bounded(
                &e.label,
                e.channel.unary_with_metadata::<_, SimpleResponse>(
                    "grpc.testing.TestService",
                    "UnaryCall",
                    SimpleRequest::default(),
                    echo_options(&ResponseMetadataSink::new()),
                ),
            )
            .await
            .unwrap();
            assert_eq!(r.metadata()[ECHO_INITIAL], "test_initial_metadata_value");
            assert_eq!(r.trailers().get_bin(ECHO_TRAILING), Some(Ok(vec![0xab; 3])));
        }
        assert_echoed(e, &sink);

        // FullDuplexCall.
        let sink = ResponseMetadataSink::new();
        let requests = stream::iter([duplex_request(271828, 314159)]);
        let items = if e.group {
            let items = bounded(
                &e.label,
                e.group()
                    .full_duplex_call_with(requests, echo_options(&sink))
                    .collect::<Vec<_>>(),
            )
            .await;
            e.per_member(items).len()
        } else {
            let items = bounded(
                &e.label,
                e.p2p()
                    .full_duplex_call_with(requests, echo_options(&sink))
                    .collect::<Vec<_>>(),
            )
            .await;
            assert!(items.iter().all(|i| i.is_ok()), "{}: {items:?}", e.label);
            items.len()
        };
        assert_eq!(items, e.members.len(), "{}", e.label);
        assert_echoed(e, &sink);
    })
    .await;
}

async fn status_case(e: &Env, message: &str, duplex: bool) {
    let status = Some(EchoStatus {
        code: 2,
        message: message.to_string(),
    });
    let errors: Vec<RpcError> = if duplex {
        let req = StreamingOutputCallRequest {
            response_status: status,
            ..StreamingOutputCallRequest::default()
        };
        type Items = std::pin::Pin<
            Box<
                dyn Stream<Item = Result<MulticastItem<StreamingOutputCallResponse>, RpcError>>
                    + Send,
            >,
        >;
        let responses: Items = if e.group {
            Box::pin(e.group().full_duplex_call_with(stream::iter([req]), opts()))
        } else {
            let source = e.members[0].clone();
            Box::pin(
                e.p2p()
                    .full_duplex_call_with(stream::iter([req]), opts())
                    .map(move |r| {
                        r.map(|m| MulticastItem {
                            source: source.clone(),
                            message: m,
                        })
                    }),
            )
        };
        let items = bounded(&e.label, responses.collect::<Vec<_>>()).await;
        if e.group {
            e.per_member_errors(items)
        } else {
            assert_eq!(items.len(), 1, "{}: {items:?}", e.label);
            vec![items.into_iter().next().unwrap().unwrap_err()]
        }
    } else {
        let req = SimpleRequest {
            response_status: status,
            ..SimpleRequest::default()
        };
        if e.group {
            let items = bounded(
                &e.label,
                e.group().unary_call_with(req, opts()).collect::<Vec<_>>(),
            )
            .await;
            e.per_member_errors(items)
        } else {
            vec![
                bounded(&e.label, e.p2p().unary_call_with(req, opts()))
                    .await
                    .unwrap_err(),
            ]
        }
    };
    for err in errors {
        assert_eq!(err.code(), Code::Unknown, "{}: {err}", e.label);
        assert_eq!(err.message(), message, "{}", e.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_code_and_message_reach_the_caller_from_unary_and_full_duplex_calls() {
    every_setting("status", async |e: &Env| {
        status_case(e, "test status message", false).await;
        status_case(e, "test status message", true).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_status_message_with_whitespace_and_unicode_arrives_unchanged() {
    let special = "\t\ntest with whitespace\r\nand Unicode BMP \u{263A} and non-BMP \u{1F608}\t\n";
    every_setting("special", async |e: &Env| {
        status_case(e, special, false).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_gets_each_response_before_sending_the_next_request() {
    const REQUESTS: [i32; 4] = [27182, 8, 1828, 45904];
    const RESPONSES: [i32; 4] = [31415, 9, 2653, 58979];
    every_setting("pingpong", async |e: &Env| {
        let (tx, requests) = request_channel();
        let mut responses: PongStream =
            if e.group {
                Box::pin(e.group().full_duplex_call_with(requests, opts()).map(|r| {
                    r.map(|i| (i.source.strings()[2].clone(), body_len(&i.message.payload)))
                }))
            } else {
                Box::pin(
                    e.p2p()
                        .full_duplex_call_with(requests, opts())
                        .map(|r| r.map(|m| (String::new(), body_len(&m.payload)))),
                )
            };
        for (req, res) in REQUESTS.into_iter().zip(RESPONSES) {
            tx.unbounded_send(duplex_request(req, res)).unwrap();
            let mut from = HashSet::new();
            for _ in 0..e.members.len() {
                let (source, len) = bounded(&e.label, responses.next())
                    .await
                    .expect("a response")
                    .unwrap_or_else(|err| panic!("{}: {err}", e.label));
                assert_eq!(len, res as usize, "{}", e.label);
                from.insert(source);
            }
            assert_eq!(from.len(), e.members.len(), "{}", e.label);
        }
        drop(tx);
        assert!(
            bounded(&e.label, responses.next()).await.is_none(),
            "{}: the call ends after the last pong",
            e.label
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_stream_full_duplex_call_ends_without_responses_or_errors() {
    every_setting("empty", async |e: &Env| {
        if e.group {
            let items = bounded(
                &e.label,
                e.group()
                    .full_duplex_call_with(stream::empty(), opts())
                    .collect::<Vec<_>>(),
            )
            .await;
            assert!(items.is_empty(), "{}: {items:?}", e.label);
        } else {
            let items = bounded(
                &e.label,
                e.p2p()
                    .full_duplex_call_with(stream::empty(), opts())
                    .collect::<Vec<_>>(),
            )
            .await;
            assert!(items.is_empty(), "{}: {items:?}", e.label);
        }
        e.settled(0).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unimplemented_method_answers_unimplemented() {
    every_setting("unimpl-m", async |e: &Env| {
        if e.group {
            let items = bounded(
                &e.label,
                e.group()
                    .unimplemented_call_with(Empty {}, opts())
                    .collect::<Vec<_>>(),
            )
            .await;
            for err in e.per_member_errors(items) {
                assert_eq!(err.code(), Code::Unimplemented, "{}: {err}", e.label);
            }
        } else {
            let err = bounded(&e.label, e.p2p().unimplemented_call_with(Empty {}, opts()))
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::Unimplemented, "{}: {err}", e.label);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unimplemented_service_answers_unimplemented() {
    every_setting("unimpl-s", async |e: &Env| {
        if e.group {
            let client = UnimplementedServiceGroupClient::new(e.channel.clone());
            let items = bounded(
                &e.label,
                client
                    .unimplemented_call_with(Empty {}, opts())
                    .collect::<Vec<_>>(),
            )
            .await;
            for err in e.per_member_errors(items) {
                assert_eq!(err.code(), Code::Unimplemented, "{}: {err}", e.label);
            }
        } else {
            let client = UnimplementedServiceClient::new(e.channel.clone());
            let err = bounded(&e.label, client.unimplemented_call_with(Empty {}, opts()))
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::Unimplemented, "{}: {err}", e.label);
        }
    })
    .await;
}

/// Makes sure the channel's session is up (so a short deadline bounds the
/// call, not the session's set-up).
async fn warm_up(e: &Env) {
    if e.group {
        let items = bounded(
            &e.label,
            e.group()
                .empty_call_with(Empty {}, opts())
                .collect::<Vec<_>>(),
        )
        .await;
        e.per_member(items);
    } else {
        bounded(&e.label, e.p2p().empty_call_with(Empty {}, opts()))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_after_begin_leaves_no_call_on_the_client_or_the_servers() {
    every_setting("cancel-begin", async |e: &Env| {
        warm_up(e).await;
        // A client-streaming call that has sent nothing yet, dropped.
        let requests = stream::pending::<StreamingInputCallRequest>();
        if e.group {
            let mut call = e.group().streaming_input_call_with(requests, opts());
            bounded(&e.label, async {
                while e.channel.pending_calls() == 0 {
                    tokio::select! {
                        item = call.next() => panic!("{}: the call ended: {item:?}", e.label),
                        _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                    }
                }
            })
            .await;
            drop(call);
        } else {
            let client = e.p2p();
            let call = client.streaming_input_call_with(requests, opts());
            let mut call = std::pin::pin!(call);
            bounded(&e.label, async {
                while e.channel.pending_calls() == 0 {
                    tokio::select! {
                        r = &mut call => panic!("{}: the call ended: {r:?}", e.label),
                        _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                    }
                }
            })
            .await;
        }
        // Nothing left anywhere, and the channel still serves.
        e.settled(0).await;
        warm_up(e).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_after_first_response_ends_every_members_handler_with_cancelled() {
    every_setting("cancel-first", async |e: &Env| {
        let (tx, requests) = request_channel();
        tx.unbounded_send(duplex_request(27182, 31415)).unwrap();
        if e.group {
            let mut call = e.group().full_duplex_call_with(requests, opts());
            for _ in 0..e.members.len() {
                let i = bounded(&e.label, call.next()).await.expect("a response");
                assert_eq!(body_len(&i.unwrap().message.payload), 31415);
            }
            drop(call);
        } else {
            let mut call = e.p2p().full_duplex_call_with(requests, opts());
            let r = bounded(&e.label, call.next()).await.expect("a response");
            assert_eq!(body_len(&r.unwrap().payload), 31415);
            drop(call);
        }
        // The request side is still open: only the cancel ends the handlers.
        e.settled(1).await;
        drop(tx);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_on_sleeping_server_ends_the_call_with_deadline_exceeded() {
    every_setting("timeout", async |e: &Env| {
        warm_up(e).await;
        let requests = stream::iter([StreamingOutputCallRequest {
            payload: Some(payload(27182)),
            ..StreamingOutputCallRequest::default()
        }])
        .chain(stream::pending());
        let short = CallOptions::with_timeout(Duration::from_millis(1));
        let items = if e.group {
            bounded(
                &e.label,
                e.group()
                    .full_duplex_call_with(requests, short)
                    .map(|r| r.map(|_| ()))
                    .collect::<Vec<_>>(),
            )
            .await
        } else {
            bounded(
                &e.label,
                e.p2p()
                    .full_duplex_call_with(requests, short)
                    .map(|r| r.map(|_| ()))
                    .collect::<Vec<_>>(),
            )
            .await
        };
        // The caller's deadline ends the call; a member whose own copy of
        // the deadline fired first may have answered DEADLINE_EXCEEDED too.
        assert!(!items.is_empty(), "{}", e.label);
        assert!(
            items
                .iter()
                .all(|i| matches!(i, Err(err) if err.code() == Code::DeadlineExceeded)),
            "{}: {items:?}",
            e.label
        );
        // The sleeping handlers do not outlive the call.
        bounded(&e.label, async {
            while e.servers.iter().any(|s| s.active_handlers() > 0) || e.channel.pending_calls() > 0
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_leaves_no_handler_on_any_member_and_no_dispatcher_entry() {
    for via in [Via::Embedded, Via::Node] {
        let e = env(via, 2, &format!("stubborn-{}", (via == Via::Node) as u8)).await;
        // StreamingOutputCall with a 10-minute pause before its answer: the
        // handler never looks at its context or a request stream.
        let req = StreamingOutputCallRequest {
            response_parameters: vec![ResponseParameters {
                size: 1,
                interval_us: 600_000_000,
                ..ResponseParameters::default()
            }],
            ..StreamingOutputCallRequest::default()
        };
        let mut call = e.group().streaming_output_call_with(req, opts());
        bounded(&e.label, async {
            while e.servers.iter().any(|s| s.active_handlers() == 0) {
                tokio::select! {
                    item = call.next() => panic!("{}: the call ended: {item:?}", e.label),
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
        })
        .await;
        drop(call);
        // The handlers would run for 10 minutes on their own; the cancel
        // frame plus the server's grace (`CANCEL_GRACE`, 500 ms) ends them.
        // The bound is a liveness bound for a loaded machine, not a timing.
        let within = Duration::from_secs(30);
        let gone = tokio::time::timeout(within, async {
            while e.servers.iter().any(|s| s.active_handlers() > 0) || e.channel.pending_calls() > 0
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            gone.is_ok(),
            "{}: handlers {:?}, client calls {} long after the cancel",
            e.label,
            e.servers
                .iter()
                .map(|s| s.active_handlers())
                .collect::<Vec<_>>(),
            e.channel.pending_calls()
        );
        e.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_clients_and_servers_take_interceptors_for_auth() {
    let service = Service::new();
    let server_app = app_with(&service, "intercepted", Protocol::V3)
        .await
        .unwrap();
    let mut server = Server::new(server_app, name("intercepted"));
    let stats = Arc::new(Stats::default());
    TestServiceServer::with_interceptor(
        Interop {
            stats: stats.clone(),
        },
        |r: slimrpc::Request<()>| match r.metadata().get("authorization") {
            Some(t) if t == "Bearer interop" => Ok(r),
            _ => Err(RpcError::new(Code::Unauthenticated, "missing token")),
        },
    )
    .register(&mut server);
    let running = bounded("start", server.start()).await.unwrap();
    let client_app = app_with(&service, "intercepting", Protocol::V3)
        .await
        .unwrap();
    let channel = Channel::new(client_app, vec![name("intercepted")]).unwrap();
    let e = bounded(
        "no token",
        TestServiceClient::new(channel.clone()).empty_call(Empty {}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let authed =
        TestServiceClient::with_interceptor(channel.clone(), |mut r: slimrpc::Request<()>| {
            r.metadata_mut()
                .insert("authorization".into(), "Bearer interop".into());
            Ok(r)
        });
    bounded("token", authed.empty_call(Empty {})).await.unwrap();
    // A logging interceptor on a group client (one member here).
    let group =
        TestServiceGroupClient::with_interceptor(channel.clone(), |r: slimrpc::Request<()>| {
            tracing::info!(service = r.service(), method = r.method(), "group call");
            Ok(r)
        });
    let items: Vec<_> = bounded("group", group.empty_call(Empty {}).collect::<Vec<_>>()).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].as_ref().unwrap_err().code(), Code::Unauthenticated);
    let _ = channel.close().await;
    running.shutdown().await;
    service.shutdown().await;
}
