//! Hostile input on a node's gRPC port: garbage bytes, names missing a part,
//! a Publish without header, an unknown oneof member, a message over 4 MiB.
//! Each is dropped (or its stream closed) and the node keeps serving other
//! connections.

mod dataplane_common;

use std::time::Duration;

use bytes::{Buf, BufMut};
use dataplane_common::*;
use slim_transport::service::Service;
use slim_transport::wire::{self, data_plane_service_client::DataPlaneServiceClient};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;

/// Sends and receives raw bytes as gRPC messages (no protobuf).
#[derive(Default)]
struct RawCodec;
struct RawEnc;
struct RawDec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEnc;
    type Decoder = RawDec;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> RawDec {
        RawDec
    }
}

impl Encoder for RawEnc {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let v = src.chunk().to_vec();
        src.advance(v.len());
        Ok(Some(v))
    }
}

/// Opens a raw stream and returns its sender and the server's replies.
async fn raw_stream(
    addr: std::net::SocketAddr,
) -> (mpsc::Sender<Vec<u8>>, tonic::Streaming<Vec<u8>>) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let (tx, rx) = mpsc::channel(16);
    let path = PathAndQuery::from_static("/dataplane.proto.v1.DataPlaneService/OpenChannel");
    let resp = grpc
        .streaming(tonic::Request::new(ReceiverStream::new(rx)), path, RawCodec)
        .await
        .unwrap();
    (tx, resp.into_inner())
}

/// Waits until the server ends the stream (error or end), bounded.
async fn closed_by_server(stream: &mut tonic::Streaming<Vec<u8>>) -> bool {
    matches!(
        tokio::time::timeout(LIMIT, async {
            loop {
                match stream.message().await {
                    Ok(Some(_)) => continue,
                    other => return other,
                }
            }
        })
        .await,
        Ok(Ok(None)) | Ok(Err(_))
    )
}

/// A full round trip through `node` from another linked Service.
async fn round_trip_still_works(node: &Service, addr: std::net::SocketAddr, tag: u64) {
    let other = Service::new();
    let link = other.connect(&addr.to_string()).await.unwrap();
    let mut sender = other.local_connection();
    let mut receiver = node.local_connection();
    let src = name(&format!("org/ns/sender/{tag:x}"));
    let dst = name(&format!("org/ns/receiver/{tag:x}"));
    subscribe_acked(&mut receiver, subscribe(&dst, &dst, 1, None, None)).await;
    subscribe_acked(&mut sender, subscribe(&src, &dst, 2, Some(link), None)).await;
    sender
        .tx
        .send(publish(&src, &dst, 1, b"still alive"))
        .await
        .unwrap();
    assert_eq!(
        blob(&next_publish(&mut receiver).await),
        Some(&b"still alive"[..])
    );
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_close_only_that_stream() {
    let node = Service::new();
    let addr = node.run_server(localhost()).await.unwrap();
    let (tx, mut replies) = raw_stream(addr).await;
    tx.send(vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02])
        .await
        .unwrap();
    assert!(closed_by_server(&mut replies).await);
    round_trip_still_works(&node, addr, 1).await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_oneof_member_is_dropped_and_the_stream_stays_usable() {
    let node = Service::new();
    let addr = node.run_server(localhost()).await.unwrap();
    let (tx, mut replies) = raw_stream(addr).await;
    // Field 7 (not in the oneof), length-delimited, empty.
    tx.send(vec![0x3a, 0x00]).await.unwrap();
    // A SubscriptionAck-free Subscribe with an id on the same stream is
    // still answered: the stream survived the unknown member.
    let me = name("org/ns/raw/1");
    let sub = subscribe(&me, &me, 77, None, None);
    tx.send(prost::Message::encode_to_vec(&sub)).await.unwrap();
    let reply = tokio::time::timeout(LIMIT, replies.message())
        .await
        .expect("liveness")
        .expect("stream ok")
        .expect("an ack");
    let ack: wire::Message = prost::Message::decode(&reply[..]).unwrap();
    assert!(matches!(
        ack.message_type,
        Some(wire::message::MessageType::SubscriptionAck(
            wire::SubscriptionAck {
                subscription_id: 77,
                success: true,
                ..
            }
        ))
    ));
    round_trip_still_works(&node, addr, 2).await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_names_and_headerless_publish_are_dropped_without_harm() {
    let node = Service::new();
    let addr = node.run_server(localhost()).await.unwrap();
    let mut victim = node.local_connection();
    let target = name("org/ns/victim/1");
    subscribe_acked(&mut victim, subscribe(&target, &target, 1, None, None)).await;

    let mut client = DataPlaneServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(16);
    let mut replies = client
        .open_channel(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let src = name("org/ns/evil/2");
    let mut no_strings = publish(&src, &target, 1, b"x");
    let mut no_encoded = publish(&src, &target, 1, b"x");
    let mut no_header = publish(&src, &target, 1, b"x");
    if let Some(wire::message::MessageType::Publish(p)) = &mut no_strings.message_type {
        p.header
            .as_mut()
            .unwrap()
            .destination
            .as_mut()
            .unwrap()
            .str_name = None;
    }
    if let Some(wire::message::MessageType::Publish(p)) = &mut no_encoded.message_type {
        p.header.as_mut().unwrap().source.as_mut().unwrap().name = None;
    }
    if let Some(wire::message::MessageType::Publish(p)) = &mut no_header.message_type {
        p.header = None;
    }
    let mut bad_sub = subscribe(&src, &target, 9, None, None);
    if let Some(wire::message::MessageType::Subscribe(s)) = &mut bad_sub.message_type {
        s.header
            .as_mut()
            .unwrap()
            .destination
            .as_mut()
            .unwrap()
            .name = None;
    }
    for m in [no_strings, no_encoded, no_header, bad_sub] {
        tx.send(m).await.unwrap();
    }
    // Then a valid publish on the same stream: it is the only thing the
    // victim receives.
    tx.send(publish(&src, &target, 1, b"valid")).await.unwrap();
    assert_eq!(blob(&next_publish(&mut victim).await), Some(&b"valid"[..]));
    // Nothing came back to the sender (remote errors are only logged).
    assert!(
        tokio::time::timeout(Duration::from_millis(50), replies.message())
            .await
            .is_err()
    );
    round_trip_still_works(&node, addr, 3).await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_over_four_mebibytes_closes_that_stream_only() {
    let node = Service::new();
    let addr = node.run_server(localhost()).await.unwrap();
    let mut victim = node.local_connection();
    let target = name("org/ns/victim/1");
    subscribe_acked(&mut victim, subscribe(&target, &target, 1, None, None)).await;

    let mut client = DataPlaneServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(4);
    let mut replies = client
        .open_channel(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let big = vec![7u8; 5 * 1024 * 1024];
    tx.send(publish(&name("org/ns/big/1"), &target, 1, &big))
        .await
        .unwrap();
    let end = tokio::time::timeout(LIMIT, replies.message())
        .await
        .expect("liveness");
    assert!(
        !matches!(end, Ok(Some(_))),
        "stream should be closed: {end:?}"
    );
    round_trip_still_works(&node, addr, 4).await;
    // The oversized publish never reached the victim.
    assert!(victim.rx.try_recv().is_err());
    node.shutdown().await;
}
