//! What handlers and callers see besides messages: call options, the server
//! `Context`, the request stream of stream-input handlers, multicast items.
//!
//! Job: small value types and the request-stream adapter that turns a
//! handler's raw input frames into decoded messages. Must not: send frames.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime};

use futures::Stream;
use slim_transport::Name;

use crate::error::RpcError;
use crate::metadata::{Metadata, frame_code, is_eos};
use crate::response_meta::{
    MetadataError, MetadataExt, Outgoing, ResponseMetadataSink, encode_bin, is_binary_key,
};
use crate::transport::IncomingMessage;

/// Per-call options of a client call.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Bound on the whole call (session set-up included). `None`: 36000 s.
    pub timeout: Option<Duration>,
    /// User metadata, sent on the call's first frame.
    pub metadata: HashMap<String, String>,
    /// Where the servers' response metadata goes (see [`Self::capture`]).
    pub response_metadata: Option<ResponseMetadataSink>,
}

impl CallOptions {
    /// Options with only a timeout.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            ..Self::default()
        }
    }

    /// Adds one binary metadata entry: `key` must end in `-bin`; the value
    /// travels as standard base64.
    pub fn metadata_bin(mut self, key: &str, value: &[u8]) -> Result<Self, MetadataError> {
        self.metadata.insert_bin(key, value)?;
        Ok(self)
    }

    /// Collects the servers' headers and trailers into `sink`, per member.
    pub fn capture(mut self, sink: &ResponseMetadataSink) -> Self {
        self.response_metadata = Some(sink.clone());
        self
    }

    /// Adds one metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// One response of a group call, tagged with the member that sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct MulticastItem<T> {
    /// Full name (with instance id) of the member that sent `message`.
    pub source: Name,
    pub message: T,
}

/// What a server handler knows about its call.
#[derive(Debug, Clone)]
pub struct Context {
    metadata: Metadata,
    deadline: SystemTime,
    caller: Name,
    rpc_id: String,
    service: String,
    method: String,
    peer_subject: Option<String>,
    /// Turns `true` when the caller cancels the call.
    cancelled: Option<tokio::sync::watch::Receiver<bool>>,
    /// Headers and trailers the handler sets, sent with its answer.
    response: Outgoing,
    /// The peers' responses of a shared-responses call (see [`crate::shared`]).
    peers: Option<crate::shared::PeerSlot>,
}

impl Context {
    pub(crate) fn new(
        metadata: Metadata,
        deadline: SystemTime,
        caller: Name,
        rpc_id: String,
        service: String,
        method: String,
    ) -> Self {
        Self {
            metadata,
            deadline,
            caller,
            rpc_id,
            service,
            method,
            peer_subject: None,
            cancelled: None,
            response: Outgoing::default(),
            peers: None,
        }
    }

    /// The context with the metadata the server's interceptors left.
    pub(crate) fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// The handle the call's responder sends the response metadata from.
    pub(crate) fn outgoing(&self) -> Outgoing {
        self.response.clone()
    }

    /// Sets an initial metadata entry (a header): it goes with the first
    /// response frame sent after this call (or with the end of the call).
    pub fn set_header(&self, key: impl Into<String>, value: impl Into<String>) {
        self.response.set_header(key.into(), value.into());
    }

    /// Sets a binary header; `key` must end in `-bin`.
    pub fn set_header_bin(&self, key: &str, value: &[u8]) -> Result<(), MetadataError> {
        if !is_binary_key(key) {
            return Err(MetadataError::NotBinaryKey(key.to_string()));
        }
        self.response.set_header(key.to_string(), encode_bin(value));
        Ok(())
    }

    /// Sets a trailing metadata entry: it goes with the end of the answer
    /// (its EOS or error frame; for one-response methods, the response).
    pub fn set_trailer(&self, key: impl Into<String>, value: impl Into<String>) {
        self.response.set_trailer(key.into(), value.into());
    }

    /// Sets a binary trailer; `key` must end in `-bin`.
    pub fn set_trailer_bin(&self, key: &str, value: &[u8]) -> Result<(), MetadataError> {
        if !is_binary_key(key) {
            return Err(MetadataError::NotBinaryKey(key.to_string()));
        }
        self.response
            .set_trailer(key.to_string(), encode_bin(value));
        Ok(())
    }

    /// The bytes of binary request metadata entry `key` (see
    /// [`MetadataExt::get_bin`]).
    pub fn metadata_bin(&self, key: &str) -> Option<Result<Vec<u8>, MetadataError>> {
        self.metadata.get_bin(key)
    }

    /// The context of a shared-responses call, with its peer stream.
    pub(crate) fn with_peers(mut self, peers: crate::shared::PeerSlot) -> Self {
        self.peers = Some(peers);
        self
    }

    /// The other members' responses to this call, as they arrive, when the
    /// caller asked for shared responses and this server takes part
    /// ([`crate::Server::set_shared_responses`]); `None` otherwise, and
    /// after the first time (one reader per call).
    pub fn peer_responses(&self) -> Option<crate::shared::PeerResponses> {
        self.peers
            .as_ref()?
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The context with the signal of the caller's cancel frame.
    pub(crate) fn with_cancel(mut self, cancelled: tokio::sync::watch::Receiver<bool>) -> Self {
        self.cancelled = Some(cancelled);
        self
    }

    /// True once the caller cancelled the call (dropped it, or gave up at
    /// its deadline). The handler is then stopped after a short grace
    /// period ([`crate::server::CANCEL_GRACE`]); its answer goes nowhere.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.as_ref().is_some_and(|c| *c.borrow())
    }

    /// Resolves when the caller cancels the call (never, if it does not):
    /// select on it to stop work early and release what the call holds.
    pub async fn cancelled(&self) {
        match &self.cancelled {
            Some(c) => {
                let mut c = c.clone();
                // An error means the server dropped the call: not cancelled.
                if c.wait_for(|v| *v).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }

    /// The context with the caller's verified identity.
    pub(crate) fn with_peer_subject(mut self, subject: Option<String>) -> Self {
        self.peer_subject = subject;
        self
    }

    /// The caller's verified identity: the subject (`sub`) of the identity
    /// token on the call's first frame, which the session checked (for a
    /// shared secret: the caller's identity id). Unlike [`Self::caller`]
    /// and the metadata, a caller cannot choose it without the secret.
    /// `None` when the transport does not verify identities.
    pub fn peer_subject(&self) -> Option<&str> {
        self.peer_subject.as_deref()
    }

    /// Metadata of the call's first frame (user keys and protocol keys).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The absolute deadline of the call.
    pub fn deadline(&self) -> SystemTime {
        self.deadline
    }

    /// Time left until the deadline (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default()
    }

    /// Full name of the client that made the call.
    pub fn caller(&self) -> &Name {
        &self.caller
    }

    /// The call's `rpc-id`.
    pub fn rpc_id(&self) -> &str {
        &self.rpc_id
    }

    /// `package.Service` of the call.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Method name of the call.
    pub fn method(&self) -> &str {
        &self.method
    }
}

/// What the server's demultiplexer hands a stream-input call after its
/// first frame.
#[derive(Debug)]
pub(crate) enum Input {
    /// A later request frame (or the client's EOS).
    Frame(IncomingMessage),
    /// The request stream cannot go on (the handler fell too far behind, or
    /// the session lost a frame of it): the handler sees this error last.
    Fail(RpcError),
}

/// Raw input frames of a stream-input call: the first frame, then the later
/// `req` frames routed by the server, until the client EOS.
pub(crate) struct RawRequests {
    first: Option<IncomingMessage>,
    rest: Option<crate::lane::LaneRx<Input>>,
    ended: bool,
}

impl RawRequests {
    pub(crate) fn new(first: IncomingMessage, rest: Option<crate::lane::LaneRx<Input>>) -> Self {
        Self {
            first: Some(first),
            rest,
            ended: false,
        }
    }

    fn frame(&mut self, msg: IncomingMessage) -> Option<Result<Vec<u8>, RpcError>> {
        let code = frame_code(&msg.metadata);
        if !code.is_ok() {
            self.ended = true;
            return Some(Err(RpcError::new(
                code,
                String::from_utf8_lossy(&msg.payload).into_owned(),
            )));
        }
        if is_eos(&msg.metadata, &msg.payload) {
            self.ended = true;
            return None;
        }
        Some(Ok(msg.payload))
    }
}

impl Stream for RawRequests {
    type Item = Result<Vec<u8>, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            let out = this.frame(first);
            if this.ended {
                this.rest = None;
            }
            return Poll::Ready(out);
        }
        let Some(rx) = this.rest.as_mut() else {
            this.ended = true;
            return Poll::Ready(None);
        };
        match rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                // The session ended or the server shut down before the client EOS.
                this.ended = true;
                this.rest = None;
                Poll::Ready(Some(Err(RpcError::cancelled(
                    "request stream ended before the client's end of stream",
                ))))
            }
            Poll::Ready(Some(Input::Fail(e))) => {
                this.ended = true;
                this.rest = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Input::Frame(msg))) => {
                let out = this.frame(msg);
                if this.ended {
                    this.rest = None;
                }
                Poll::Ready(out)
            }
        }
    }
}

/// The decoded request stream a stream-input handler reads.
///
/// Yields each request; ends at the client's EOS. A zero-length request is
/// indistinguishable from EOS on the SLIM wire and also ends the stream.
pub struct RequestStream<Req> {
    raw: RawRequests,
    _req: PhantomData<fn() -> Req>,
}

impl<Req> RequestStream<Req> {
    pub(crate) fn new(raw: RawRequests) -> Self {
        Self {
            raw,
            _req: PhantomData,
        }
    }
}

impl<Req: prost::Message + Default> Stream for RequestStream<Req> {
    type Item = Result<Req, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.raw).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Some(Ok(bytes))) => {
                Poll::Ready(Some(Req::decode(bytes.as_slice()).map_err(|e| {
                    RpcError::internal(format!("Failed to decode request: {e}"))
                })))
            }
        }
    }
}
