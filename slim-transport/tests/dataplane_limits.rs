//! Node limits: incoming connections beyond the configured maximum are
//! refused with RESOURCE_EXHAUSTED, and a frame over the size limit ends its
//! stream with OUT_OF_RANGE (not a normal close), while the node keeps
//! serving the others.

use std::time::Duration;

use bytes::Bytes;
use slim_transport::grpc;
use slim_transport::service::{Limits, Service};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const LIMIT: Duration = Duration::from_secs(30);

async fn open(
    addr: std::net::SocketAddr,
) -> (
    mpsc::Sender<Bytes>,
    Result<tonic::Streaming<Bytes>, tonic::Status>,
) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(4);
    let stream = grpc::open_channel(channel, ReceiverStream::new(rx), 64 << 20).await;
    (tx, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_with_resource_exhausted() {
    let node = Service::new();
    node.set_limits(Limits {
        max_connections: 2,
        ..Limits::default()
    });
    let addr = node
        .run_server("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (_t1, s1) = open(addr).await;
    let (_t2, s2) = open(addr).await;
    assert!(s1.is_ok() && s2.is_ok());
    let (_t3, s3) = open(addr).await;
    let err = s3.expect_err("third connection refused");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    // A slot frees when a connection ends.
    drop((_t1, s1));
    let start = std::time::Instant::now();
    loop {
        let (_t, s) = open(addr).await;
        if s.is_ok() {
            break;
        }
        assert!(start.elapsed() < LIMIT, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_ends_its_stream_with_out_of_range() {
    let node = Service::new();
    node.set_limits(Limits {
        max_message_size: 64 * 1024,
        ..Limits::default()
    });
    let addr = node
        .run_server("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (tx, stream) = open(addr).await;
    let mut stream = stream.unwrap();
    tx.send(Bytes::from(vec![0u8; 128 * 1024])).await.unwrap();
    let end = tokio::time::timeout(LIMIT, stream.message())
        .await
        .expect("liveness");
    match end {
        Err(status) => assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}"),
        other => panic!("stream ended without the size error: {other:?}"),
    }
    node.shutdown().await;
}
