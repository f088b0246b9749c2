//! The data plane on both SLIM generations, through our `slim` node (a real
//! process, so its log can be read): v1 and v3 connections on one
//! endpoint at once, garbage closed, the v3 header MAC enforced per link,
//! and v3 links between two of our services.
//!
//! The peers here are raw links written with this crate's wire types and
//! negotiation state (the official apps are the peers of
//! `interop_node_v3.rs`).

mod raw3_common;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use raw3_common::{Raw3, channel, header3, name3};
use slim_transport::forwarder::link::LinkState;
use slim_transport::forwarder::{Negotiation, Role};
use slim_transport::grpc;
use slim_transport::service::{Generation, LinkOptions, Service};
use slim_transport::{wire, wire3};
use slimrpc_testkit::{Child, free_port};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

const LIMIT: Duration = Duration::from_secs(30);

fn node(args: &[&str]) -> Child {
    let mut n = Child::spawn(
        "slim-v3",
        Command::new(env!("CARGO_BIN_EXE_slim")).args(args),
    );
    n.wait_for("slim node listening on", LIMIT);
    n
}

fn publish3(src: wire3::Name, dst: wire3::Name, body: &[u8]) -> wire3::Message {
    wire3::Message {
        metadata: Default::default(),
        message_type: Some(wire3::message::MessageType::Publish(wire3::Publish {
            header: header3(src, dst),
            session: Some(Default::default()),
            msg: Some(wire3::Content {
                content_type: Some(wire3::content::ContentType::AppPayload(
                    wire3::ApplicationPayload {
                        payload_type: "msg".into(),
                        blob: body.to_vec(),
                    },
                )),
            }),
        })),
    }
}

fn blob3(m: &wire3::Message) -> Vec<u8> {
    match &m.message_type {
        Some(wire3::message::MessageType::Publish(p)) => match &p.msg {
            Some(wire3::Content {
                content_type: Some(wire3::content::ContentType::AppPayload(a)),
            }) => a.blob.clone(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// A raw v1 link, negotiated as a 1.3 app would.
struct Raw1 {
    tx: mpsc::Sender<Bytes>,
    rx: Streaming<Bytes>,
}

fn name1(app: &str, id: u64) -> wire::Name {
    slim_transport::Name::new("org", "ns", app)
        .with_id(id)
        .to_wire()
}

impl Raw1 {
    async fn connect(addr: &str) -> Raw1 {
        let mut link = LinkState::new(Role::Client);
        let req = link.request(uuid::Uuid::new_v4().to_string());
        let (tx, rx) = mpsc::channel(64);
        tx.send(Bytes::from(req.encode_to_vec())).await.unwrap();
        let mut stream = grpc::open_channel(channel(addr).await, ReceiverStream::new(rx), 1 << 22)
            .await
            .unwrap();
        let reply = stream.message().await.unwrap().unwrap();
        let reply = wire::Message::decode(reply).unwrap();
        assert_eq!(link.on_frame(&reply), Ok(None));
        Raw1 { tx, rx: stream }
    }

    async fn send(&self, m: wire::Message) {
        self.tx.send(Bytes::from(m.encode_to_vec())).await.unwrap();
    }

    async fn recv(&mut self) -> Option<wire::Message> {
        match tokio::time::timeout(LIMIT, self.rx.message()).await {
            Ok(Ok(Some(b))) => Some(wire::Message::decode(b).expect("v1 frame")),
            _ => None,
        }
    }

    async fn subscribe(&mut self, name: wire::Name) {
        self.send(wire::Message {
            metadata: Default::default(),
            message_type: Some(wire::message::MessageType::Subscribe(wire::Subscribe {
                header: Some(wire::SlimHeader {
                    source: Some(name.clone()),
                    destination: Some(name),
                    fanout: 1,
                    ..Default::default()
                }),
                subscription_id: 5,
            })),
        })
        .await;
        let ack = self.recv().await.expect("ack");
        assert!(matches!(
            &ack.message_type,
            Some(wire::message::MessageType::SubscriptionAck(a)) if a.success
        ));
    }
}

fn publish1(src: wire::Name, dst: wire::Name, body: &[u8]) -> wire::Message {
    wire::Message {
        metadata: Default::default(),
        message_type: Some(wire::message::MessageType::Publish(wire::Publish {
            header: Some(wire::SlimHeader {
                source: Some(src),
                destination: Some(dst),
                fanout: 1,
                ..Default::default()
            }),
            session: Some(Default::default()),
            msg: Some(wire::Content {
                content_type: Some(wire::content::ContentType::AppPayload(
                    wire::ApplicationPayload {
                        payload_type: "msg".into(),
                        blob: body.to_vec(),
                    },
                )),
            }),
        })),
    }
}

fn blob1(m: &wire::Message) -> Vec<u8> {
    match &m.message_type {
        Some(wire::message::MessageType::Publish(p)) => match &p.msg {
            Some(wire::Content {
                content_type: Some(wire::content::ContentType::AppPayload(a)),
            }) => a.blob.clone(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_endpoint_serves_v1_and_v3_connections_at_once_and_closes_garbage() {
    let addr = format!("127.0.0.1:{}", free_port());
    let node = node(&["--endpoint", &addr]);

    // Garbage first, then the two generations, all open at the same time.
    let (gtx, grx) = mpsc::channel::<Bytes>(4);
    gtx.send(Bytes::from_static(b"\xff\xff\xff\xffnot protobuf at all"))
        .await
        .unwrap();
    let mut garbage = grpc::open_channel(channel(&addr).await, ReceiverStream::new(grx), 1 << 22)
        .await
        .expect("the node accepts the stream before reading it");

    let mut v3_b = Raw3::connect(&addr, true, true).await.unwrap();
    let v3_a = Raw3::connect(&addr, true, true).await.unwrap();
    let mut v1_b = Raw1::connect(&addr).await;
    let v1_a = Raw1::connect(&addr).await;

    let closed = tokio::time::timeout(LIMIT, garbage.message()).await;
    assert!(
        matches!(closed, Ok(Err(_)) | Ok(Ok(None))),
        "garbage stream still open: {closed:?}"
    );

    // Same names in both generations: each reaches only its own kind.
    let b_id: u128 = (7 << 64) | 11;
    v3_b.subscribe(name3("bob", b_id)).await;
    v1_b.subscribe(name1("bob", 11)).await;
    for i in 0..20u8 {
        v3_a.send(publish3(name3("alice", 1), name3("bob", b_id), &[3, i]))
            .await;
        v1_a.send(publish1(name1("alice", 1), name1("bob", 11), &[1, i]))
            .await;
    }
    for i in 0..20u8 {
        let m = v3_b.recv().await.expect("v3 publish delivered");
        assert_eq!(blob3(&m), vec![3, i]);
        let h = m.message_type.as_ref().and_then(|t| match t {
            wire3::message::MessageType::Publish(p) => p.header.clone(),
            _ => None,
        });
        // The node re-signed it for this link and decremented the TTL.
        let h = h.expect("header");
        assert_eq!(h.header_mac.as_ref().map(Vec::len), Some(32));
        assert_eq!(h.ttl, wire3::DEFAULT_TTL - 1);
        assert_eq!(v3_b.link.check_inbound(&m), Ok(()));
        let m = v1_b.recv().await.expect("v1 publish delivered");
        assert_eq!(blob1(&m), vec![1, i]);
    }
    let log = node.output();
    assert!(
        log.contains("generation=v1") && log.contains("generation=v3"),
        "{log}"
    );
    assert!(log.contains("neither SLIM v1 nor v3"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v3_peer_with_a_wrong_header_mac_is_refused_and_logged_while_other_links_flow() {
    let addr = format!("127.0.0.1:{}", free_port());
    let node = node(&["--endpoint", &addr]);
    let mut bob = Raw3::connect(&addr, true, true).await.unwrap();
    let alice = Raw3::connect(&addr, true, true).await.unwrap();
    let mallory = Raw3::connect(&addr, true, true).await.unwrap();
    bob.subscribe(name3("bob", 1)).await;

    let mut forged = publish3(name3("mallory", 1), name3("bob", 1), b"forged");
    mallory.link.seal_outbound(&mut forged).unwrap();
    if let Some(wire3::message::MessageType::Publish(p)) = &mut forged.message_type {
        // Changed after signing: the tag no longer matches.
        p.header.as_mut().unwrap().fanout = 2;
    }
    mallory.send_raw(&forged).await;
    let mut unsigned = publish3(name3("mallory", 1), name3("bob", 1), b"unsigned");
    if let Some(wire3::message::MessageType::Publish(p)) = &mut unsigned.message_type {
        p.header.as_mut().unwrap().header_mac = None;
    }
    mallory.send_raw(&unsigned).await;
    alice
        .send(publish3(name3("alice", 1), name3("bob", 1), b"genuine"))
        .await;
    let got = bob.recv().await.expect("the genuine publish");
    assert_eq!(blob3(&got), b"genuine");
    // The forged and unsigned ones were sent before the genuine one on
    // another link; give them a moment more to show up if they passed.
    assert!(
        bob.recv_within(Duration::from_secs(2)).await.is_none(),
        "a forged message got through"
    );
    // Mallory's link stays open and can still send properly.
    mallory
        .send(publish3(name3("mallory", 1), name3("bob", 1), b"fixed"))
        .await;
    assert_eq!(blob3(&bob.recv().await.expect("signed")), b"fixed");
    let log = node.output();
    assert!(
        log.contains("SLIM header integrity verification failed"),
        "{log}"
    );
    assert!(log.contains("SLIM header integrity tag missing"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_node_refuses_a_v3_link_without_key_exchange_and_a_lax_one_accepts_it() {
    let addr = format!("127.0.0.1:{}", free_port());
    let strict = node(&["--endpoint", &addr]);
    let refused = Raw3::connect(&addr, false, false).await;
    assert!(
        refused.is_err(),
        "strict node accepted a link without a key"
    );
    let log = strict.output();
    assert!(log.contains("public key length is invalid"), "{log}");

    let addr = format!("127.0.0.1:{}", free_port());
    let _lax = node(&["--endpoint", &addr, "--lax-header-mac"]);
    let mut bob = Raw3::connect(&addr, false, false).await.expect("lax node");
    assert!(!bob.link.has_mac_key());
    bob.subscribe(name3("bob", 1)).await;
    let alice = Raw3::connect(&addr, false, false).await.unwrap();
    alice
        .send(publish3(name3("alice", 1), name3("bob", 1), b"plain"))
        .await;
    assert_eq!(blob3(&bob.recv().await.expect("delivered")), b"plain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_link_in_v3_and_auto_links_pick_the_generation_the_peer_answers() {
    let server = Service::new();
    let addr = server
        .run_server("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = Service::new();
    let v3_opts = LinkOptions {
        generation: Some(Generation::V3),
        ..LinkOptions::default()
    };
    let link = client
        .connect_with(&addr.to_string(), v3_opts)
        .await
        .unwrap();
    assert_eq!(client.generation(link), Some(Generation::V3));
    assert_eq!(
        client.peer_version(link).as_deref(),
        Some(wire3::SLIM_VERSION)
    );
    let auto = client
        .connect_with(
            &addr.to_string(),
            LinkOptions {
                generation: None,
                ..LinkOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(client.generation(auto), Some(Generation::V3));
    let v1 = client.connect(&addr.to_string()).await.unwrap();
    assert_eq!(client.generation(v1), Some(Generation::V1));

    // A v3 app on each side: the server side's app subscribes; the client
    // side's app publishes over the v3 link (forward_to names the link, as
    // the node's upstream routing would pick it).
    let mut bob = server.local_connection3();
    let alice = client.local_connection3();
    let sub = wire3::Message {
        metadata: Default::default(),
        message_type: Some(wire3::message::MessageType::Subscribe(wire3::Subscribe {
            header: header3(name3("bob", 3), name3("bob", 3)),
            subscription_id: 1,
        })),
    };
    bob.tx.send(sub).await.unwrap();
    let ack = bob.rx.recv().await.unwrap().unwrap();
    assert!(matches!(
        ack.message_type,
        Some(wire3::message::MessageType::SubscriptionAck(_))
    ));
    let mut m = publish3(name3("alice", 1), name3("bob", 3), b"over v3");
    if let Some(wire3::message::MessageType::Publish(p)) = &mut m.message_type {
        p.header.as_mut().unwrap().forward_to = Some(link);
    }
    alice.tx.send(m).await.unwrap();
    let got = tokio::time::timeout(LIMIT, bob.rx.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(blob3(&got), b"over v3");
    // Local apps never see the link's MAC.
    if let Some(wire3::message::MessageType::Publish(p)) = &got.message_type {
        assert_eq!(p.header.as_ref().unwrap().header_mac, None);
    }
    client.shutdown().await;
    server.shutdown().await;
}
