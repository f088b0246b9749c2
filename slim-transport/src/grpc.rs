//! The gRPC face of a link, byte for byte: `DataPlaneService/OpenChannel`
//! carrying undecoded frames.
//!
//! Both SLIM generations use the same gRPC path, so the stream cannot be
//! typed by one schema: the node reads raw frames, tells the generation
//! from the first one, and decodes the rest with that generation's schema
//! (`crate::service`). This module only moves bytes: [`RawCodec`], the
//! server side ([`RawDataPlaneServer`]) and the client call
//! ([`open_channel`]).

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, Service as TowerService, StdError, http};
use tonic::{Request, Response, Status, Streaming};

/// The gRPC path of the data plane (both generations).
pub const OPEN_CHANNEL_PATH: &str = "/dataplane.proto.v1.DataPlaneService/OpenChannel";
const SERVICE_NAME: &str = "dataplane.proto.v1.DataPlaneService";

/// A codec that passes message bytes through untouched.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// The response stream a handler returns.
pub type RawStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes, Status>> + Send + 'static>>;

/// What serves an incoming `OpenChannel` stream.
#[tonic::async_trait]
pub trait RawHandler: Send + Sync + 'static {
    async fn open_channel(
        &self,
        request: Request<Streaming<Bytes>>,
    ) -> Result<Response<RawStream>, Status>;
}

/// A tower service routing `OpenChannel` to a [`RawHandler`] and answering
/// every other path with `Unimplemented`.
pub struct RawDataPlaneServer<H> {
    inner: Arc<H>,
    max_decoding_message_size: Option<usize>,
}

impl<H> Clone for RawDataPlaneServer<H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            max_decoding_message_size: self.max_decoding_message_size,
        }
    }
}

impl<H: RawHandler> RawDataPlaneServer<H> {
    pub fn new(inner: H) -> Self {
        Self {
            inner: Arc::new(inner),
            max_decoding_message_size: None,
        }
    }

    /// Largest frame accepted; a larger one fails the stream with
    /// `OutOfRange` (tonic's check).
    #[must_use]
    pub fn max_decoding_message_size(mut self, limit: usize) -> Self {
        self.max_decoding_message_size = Some(limit);
        self
    }
}

struct OpenChannelSvc<H>(Arc<H>);

impl<H: RawHandler> tonic::server::StreamingService<Bytes> for OpenChannelSvc<H> {
    type Response = Bytes;
    type ResponseStream = RawStream;
    type Future = BoxFuture<Response<RawStream>, Status>;

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.open_channel(request).await })
    }
}

impl<H, B> TowerService<http::Request<B>> for RawDataPlaneServer<H>
where
    H: RawHandler,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != OPEN_CHANNEL_PATH {
            return Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(
                    Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            });
        }
        let inner = self.inner.clone();
        let max = self.max_decoding_message_size;
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(RawCodec).apply_max_message_size_config(max, None);
            Ok(grpc.streaming(OpenChannelSvc(inner), req).await)
        })
    }
}

impl<H> tonic::server::NamedService for RawDataPlaneServer<H> {
    const NAME: &'static str = SERVICE_NAME;
}

/// Opens `OpenChannel` on `channel`, sending `outbound` and returning the
/// peer's frames.
pub async fn open_channel<S>(
    channel: tonic::transport::Channel,
    outbound: S,
    max_decoding_message_size: usize,
) -> Result<Streaming<Bytes>, Status>
where
    S: futures::Stream<Item = Bytes> + Send + 'static,
{
    let mut grpc =
        tonic::client::Grpc::new(channel).max_decoding_message_size(max_decoding_message_size);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("service was not ready: {e}")))?;
    let path = http::uri::PathAndQuery::from_static(OPEN_CHANNEL_PATH);
    let response = grpc
        .streaming(Request::new(outbound), path, RawCodec)
        .await?;
    Ok(response.into_inner())
}
