//! Shared responses (context propagation): the members of a group call see
//! each other's responses to it while they work.
//!
//! Job: the wire keys, the caller's opt-in, and the stream a handler reads
//! its peers' responses from. Per call and opt-in on both ends:
//! * the caller puts [`SHARED_RESPONSES_KEY`]`: "true"` in the call's
//!   metadata ([`shared_responses`]); the key travels on the first frame
//!   with the other user metadata;
//! * a server that accepts shared calls ([`crate::Server::set_shared_responses`])
//!   then publishes that call's responses and its EOS to the whole group
//!   (not unicast to the caller), each frame marked
//!   [`SHARED_RESPONSE_KEY`]`: "true"` beside its usual `rpc-id` (and
//!   `slimrpc-code` on the EOS). Error frames stay unicast to the caller.
//!   Its handler reads the peers' frames of the same call from
//!   [`crate::Context::peer_responses`].
//!
//! Anyone else is unaffected: the caller reads a multicast response exactly
//! like a unicast one; a member that does not take part (an official
//! server, or ours without the opt-in) answers unicast as usual and drops
//! the peers' frames as it drops any server frame (no `service`, no
//! `slimrpc-dir=req`).
//! Must not: send frames (the server does) or block the session's reader
//! (a handler that stops reading loses peer frames beyond a bounded buffer).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use futures::Stream;
use slim_transport::Name;
use tokio::sync::mpsc;

use crate::context::CallOptions;
use crate::error::RpcError;

/// Call metadata key asking the members to share their responses.
pub const SHARED_RESPONSES_KEY: &str = "slimrpc-shared-responses";

/// Frame metadata key marking a response a member published to the whole
/// group because its call shares responses.
pub const SHARED_RESPONSE_KEY: &str = "slimrpc-shared";

/// Peer frames one handler may leave unread; later ones are dropped (and
/// the handler's stream reports the gap as [`PeerItem::Gap`]).
pub const PEER_BUFFER: usize = 1024;

/// `options` asking the group's members to share their responses.
pub fn shared_responses(options: CallOptions) -> CallOptions {
    options.metadata(SHARED_RESPONSES_KEY, "true")
}

/// True when a call's first-frame metadata asks for shared responses.
pub fn wants_shared(metadata: &crate::Metadata) -> bool {
    metadata
        .get(SHARED_RESPONSES_KEY)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// True for a frame a member published to share its response.
pub fn is_shared_response(metadata: &crate::Metadata) -> bool {
    metadata.contains_key(SHARED_RESPONSE_KEY)
}

/// What a handler learns about its peers' answers to the same call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerItem {
    /// One response message of `source` (encoded; see [`PeerItem::decode`]).
    Response { source: Name, payload: Vec<u8> },
    /// `source` ended its responses (EOS).
    End { source: Name },
    /// Peer frames were dropped because the handler did not read them.
    Gap,
}

impl PeerItem {
    /// The response message of a [`PeerItem::Response`], decoded.
    pub fn decode<T: prost::Message + Default>(&self) -> Option<Result<(Name, T), RpcError>> {
        match self {
            PeerItem::Response { source, payload } => Some(
                T::decode(payload.as_slice())
                    .map(|m| (source.clone(), m))
                    .map_err(|e| {
                        RpcError::internal(format!("Failed to decode a peer response: {e}"))
                    }),
            ),
            _ => None,
        }
    }
}

/// The peers' responses to one call, as they arrive. Ends when the call's
/// handler is done (the server cannot know how many peers will answer).
pub struct PeerResponses {
    rx: mpsc::Receiver<PeerItem>,
}

impl std::fmt::Debug for PeerResponses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerResponses").finish_non_exhaustive()
    }
}

impl Stream for PeerResponses {
    type Item = PeerItem;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<PeerItem>> {
        self.rx.poll_recv(cx)
    }
}

/// The handler's end, held by its `Context` until taken.
pub(crate) type PeerSlot = Arc<Mutex<Option<PeerResponses>>>;

/// The server's end of one call's peer stream.
#[derive(Clone)]
pub(crate) struct PeerSender {
    tx: mpsc::Sender<PeerItem>,
    gap: Arc<std::sync::atomic::AtomicBool>,
}

impl PeerSender {
    /// Hands one peer frame to the handler, never waiting.
    pub(crate) fn send(&self, item: PeerItem) {
        use std::sync::atomic::Ordering;
        if self.gap.swap(false, Ordering::SeqCst) && self.tx.try_send(PeerItem::Gap).is_err() {
            self.gap.store(true, Ordering::SeqCst);
            return;
        }
        if self.tx.try_send(item).is_err() {
            self.gap.store(true, Ordering::SeqCst);
        }
    }

    /// True once the handler is done with the call.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A new peer stream: the server's sender, and the slot for the context.
pub(crate) fn peer_channel() -> (PeerSender, PeerSlot) {
    let (tx, rx) = mpsc::channel(PEER_BUFFER);
    (
        PeerSender {
            tx,
            gap: Arc::default(),
        },
        Arc::new(Mutex::new(Some(PeerResponses { rx }))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::Code;
    use crate::metadata::{response_frame, status_frame};
    use crate::server::Unneeded;

    #[test]
    fn a_peers_shared_eos_is_delivered_while_other_server_frames_are_skipped() {
        let mut unneeded = Unneeded::new(Arc::default());
        let mut eos = status_frame(Code::Ok, "R");
        assert!(unneeded.skip(&eos));
        eos.insert(SHARED_RESPONSE_KEY.into(), "true".into());
        assert!(!unneeded.skip(&eos));
        let mut data = response_frame("R");
        data.insert(SHARED_RESPONSE_KEY.into(), "true".into());
        assert!(!unneeded.skip(&data));
    }

    #[test]
    fn only_a_true_shared_responses_key_asks_for_shared_responses() {
        let options = shared_responses(CallOptions::default());
        assert!(wants_shared(&options.metadata));
        let mut no = crate::Metadata::new();
        assert!(!wants_shared(&no));
        no.insert(SHARED_RESPONSES_KEY.into(), "no".into());
        assert!(!wants_shared(&no));
    }

    #[tokio::test]
    async fn a_handler_that_stops_reading_peers_gets_a_gap_instead_of_blocking_the_reader() {
        let (tx, slot) = peer_channel();
        let src = Name::new("org", "ns", "peer");
        for _ in 0..(PEER_BUFFER + 10) {
            tx.send(PeerItem::End {
                source: src.clone(),
            });
        }
        let mut peers = slot.lock().unwrap().take().unwrap();
        use futures::StreamExt;
        for _ in 0..PEER_BUFFER {
            assert!(matches!(peers.next().await, Some(PeerItem::End { .. })));
        }
        tx.send(PeerItem::End { source: src });
        assert_eq!(peers.next().await, Some(PeerItem::Gap));
    }
}
