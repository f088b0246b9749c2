//! Response metadata: the initial metadata (headers) and trailing metadata
//! (trailers) a handler sends back, and binary (`-bin`) values.
//!
//! Job: name the wire keys, encode and decode binary values, hold what a
//! handler set until its frames go out, and collect what a caller receives,
//! per member. Must not: send frames; the server's responder and the
//! channel's call loop use these helpers.
//!
//! Wire (our extension; official peers ignore keys they do not know):
//! * a header `k: v` travels as `slimrpc-h-k: v`, a trailer as
//!   `slimrpc-t-k: v`, in the SlimRPC metadata of a response frame;
//! * headers go on the call's first response frame (or on its EOS or error
//!   frame when there is no response); headers set later go on the next
//!   frame sent;
//! * trailers go on the frame that ends the member's answer: the EOS or the
//!   error frame, and, for methods with one response (unary and
//!   client-streaming), on that response frame (the handler has returned,
//!   so they are final, and a caller stops reading at that response);
//! * a key ending in `-bin` holds a binary value, standard base64 with
//!   padding (as gRPC), in request metadata as in response metadata.

use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use slim_transport::Name;

use crate::metadata::Metadata;

/// Wire prefix of a header (initial metadata) key.
pub const HEADER_PREFIX: &str = "slimrpc-h-";
/// Wire prefix of a trailer (trailing metadata) key.
pub const TRAILER_PREFIX: &str = "slimrpc-t-";
/// Suffix of keys whose values are binary (base64 on the wire).
pub const BIN_SUFFIX: &str = "-bin";

/// A metadata value that cannot be read as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// Binary values need a key ending in `-bin`.
    #[error("metadata key {0:?} does not end in \"-bin\"")]
    NotBinaryKey(String),
    /// The value of a `-bin` key is not standard base64.
    #[error("metadata value of {key:?} is not base64: {reason}")]
    BadBase64 { key: String, reason: String },
}

/// True for a key holding a binary value.
pub fn is_binary_key(key: &str) -> bool {
    key.ends_with(BIN_SUFFIX)
}

/// Standard base64 (with padding) of `bytes`, as a `-bin` value travels.
pub fn encode_bin(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The bytes of a `-bin` value; unpadded input is accepted too (gRPC
/// receivers accept both).
pub fn decode_bin(key: &str, value: &str) -> Result<Vec<u8>, MetadataError> {
    let trimmed = value.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .map_err(|e| MetadataError::BadBase64 {
            key: key.to_string(),
            reason: e.to_string(),
        })
}

/// Binary values in [`Metadata`] (keys ending in `-bin`, base64 values).
pub trait MetadataExt {
    /// Inserts binary `value` under `key` (which must end in `-bin`).
    fn insert_bin(&mut self, key: &str, value: &[u8]) -> Result<(), MetadataError>;
    /// The bytes under `key`: `None` when absent, an error when `key` is
    /// not a `-bin` key or its value is not base64.
    fn get_bin(&self, key: &str) -> Option<Result<Vec<u8>, MetadataError>>;
}

impl MetadataExt for Metadata {
    fn insert_bin(&mut self, key: &str, value: &[u8]) -> Result<(), MetadataError> {
        if !is_binary_key(key) {
            return Err(MetadataError::NotBinaryKey(key.to_string()));
        }
        self.insert(key.to_string(), encode_bin(value));
        Ok(())
    }

    fn get_bin(&self, key: &str) -> Option<Result<Vec<u8>, MetadataError>> {
        let v = self.get(key)?;
        if !is_binary_key(key) {
            return Some(Err(MetadataError::NotBinaryKey(key.to_string())));
        }
        Some(decode_bin(key, v))
    }
}

/// Adds `entries` to a frame's metadata under `prefix`.
fn put(frame: &mut Metadata, prefix: &str, entries: Metadata) {
    for (k, v) in entries {
        frame.insert(format!("{prefix}{k}"), v);
    }
}

/// The headers and trailers a frame carries.
pub fn read_frame(frame: &Metadata) -> ResponseMetadata {
    let mut out = ResponseMetadata::default();
    for (k, v) in frame {
        if let Some(h) = k.strip_prefix(HEADER_PREFIX) {
            out.headers.insert(h.to_string(), v.clone());
        } else if let Some(t) = k.strip_prefix(TRAILER_PREFIX) {
            out.trailers.insert(t.to_string(), v.clone());
        }
    }
    out
}

/// What one server sent back besides its messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseMetadata {
    /// Initial metadata.
    pub headers: Metadata,
    /// Trailing metadata.
    pub trailers: Metadata,
}

impl ResponseMetadata {
    /// True when the server sent neither headers nor trailers.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.trailers.is_empty()
    }

    fn merge(&mut self, other: ResponseMetadata) {
        self.headers.extend(other.headers);
        self.trailers.extend(other.trailers);
    }
}

/// What a handler set and has not sent yet.
#[derive(Debug, Default)]
struct Pending {
    headers: Metadata,
    trailers: Metadata,
}

/// The response metadata of one server call, shared by its [`crate::Context`]
/// (which sets it) and its responder (which sends it).
#[derive(Debug, Clone, Default)]
pub(crate) struct Outgoing(Arc<Mutex<Pending>>);

impl Outgoing {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_header(&self, key: String, value: String) {
        self.lock().headers.insert(key, value);
    }

    pub(crate) fn set_trailer(&self, key: String, value: String) {
        self.lock().trailers.insert(key, value);
    }

    /// Adds the headers not sent yet (and the trailers, when `last`) to
    /// `frame`; what is added is not sent again.
    pub(crate) fn stamp(&self, mut frame: Metadata, last: bool) -> Metadata {
        let mut p = self.lock();
        put(&mut frame, HEADER_PREFIX, std::mem::take(&mut p.headers));
        if last {
            put(&mut frame, TRAILER_PREFIX, std::mem::take(&mut p.trailers));
        }
        frame
    }
}

/// Collects the response metadata of a client call, per member: pass it
/// with [`crate::CallOptions::capture`], read it during or after the call.
/// A member's headers are complete once its first response arrived, its
/// trailers once it ended (for one-response methods: with its response).
#[derive(Debug, Clone, Default)]
pub struct ResponseMetadataSink(Arc<Mutex<Vec<(Name, ResponseMetadata)>>>);

impl ResponseMetadataSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(Name, ResponseMetadata)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records what a frame from `source` carries.
    pub(crate) fn record(&self, source: &Name, frame: &Metadata) {
        let got = read_frame(frame);
        let mut all = self.lock();
        match all.iter_mut().find(|(n, _)| n == source) {
            Some((_, m)) => m.merge(got),
            None => all.push((source.clone(), got)),
        }
    }

    /// Every server that answered, with what it sent (full names, with
    /// instance id, as in [`crate::MulticastItem::source`]).
    pub fn members(&self) -> Vec<(Name, ResponseMetadata)> {
        self.lock().clone()
    }

    /// What member `name` sent; a name without instance id matches any
    /// instance of it.
    pub fn member(&self, name: &Name) -> Option<ResponseMetadata> {
        self.lock()
            .iter()
            .find(|(n, _)| n.prefix() == name.prefix() && (name.has_null_id() || n == name))
            .map(|(_, m)| m.clone())
    }

    /// Headers of every member, merged (for a point-to-point call: the
    /// server's headers).
    pub fn headers(&self) -> Metadata {
        let mut out = Metadata::new();
        for (_, m) in self.lock().iter() {
            out.extend(m.headers.clone());
        }
        out
    }

    /// Trailers of every member, merged (point-to-point: the server's).
    pub fn trailers(&self) -> Metadata {
        let mut out = Metadata::new();
        for (_, m) in self.lock().iter() {
            out.extend(m.trailers.clone());
        }
        out
    }
}

/// A response with the metadata it came with (as tonic's `Response`).
#[derive(Debug, Clone, PartialEq)]
pub struct Response<T> {
    message: T,
    metadata: Metadata,
    trailers: Metadata,
}

impl<T> Response<T> {
    pub(crate) fn new(message: T, meta: ResponseMetadata) -> Self {
        Self {
            message,
            metadata: meta.headers,
            trailers: meta.trailers,
        }
    }

    /// The server's initial metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The server's trailing metadata.
    pub fn trailers(&self) -> &Metadata {
        &self.trailers
    }

    /// The message.
    pub fn get_ref(&self) -> &T {
        &self.message
    }

    /// The message, metadata dropped.
    pub fn into_inner(self) -> T {
        self.message
    }

    /// Message, headers and trailers.
    pub fn into_parts(self) -> (T, Metadata, Metadata) {
        (self.message, self.metadata, self.trailers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_values_round_trip_as_padded_standard_base64() {
        let mut m = Metadata::new();
        m.insert_bin("x-grpc-test-echo-trailing-bin", &[0xab, 0xab, 0xab])
            .unwrap();
        assert_eq!(m["x-grpc-test-echo-trailing-bin"], "q6ur");
        m.insert_bin("k-bin", &[1]).unwrap();
        assert_eq!(m["k-bin"], "AQ==");
        assert_eq!(m.get_bin("k-bin"), Some(Ok(vec![1])));
        // Unpadded (as some gRPC stacks send it) reads the same.
        m.insert("u-bin".into(), "AQ".into());
        assert_eq!(m.get_bin("u-bin"), Some(Ok(vec![1])));
        assert_eq!(m.get_bin("missing-bin"), None);
    }

    #[test]
    fn binary_values_need_a_bin_key_and_valid_base64() {
        let mut m = Metadata::new();
        assert!(matches!(
            m.insert_bin("plain", b"x"),
            Err(MetadataError::NotBinaryKey(_))
        ));
        m.insert("plain".into(), "x".into());
        assert!(matches!(
            m.get_bin("plain"),
            Some(Err(MetadataError::NotBinaryKey(_)))
        ));
        m.insert("bad-bin".into(), "!!!".into());
        assert!(matches!(
            m.get_bin("bad-bin"),
            Some(Err(MetadataError::BadBase64 { .. }))
        ));
    }

    #[test]
    fn headers_go_out_once_and_trailers_only_on_the_last_frame() {
        let out = Outgoing::default();
        out.set_header("h".into(), "1".into());
        out.set_trailer("t".into(), "2".into());
        let first = out.stamp(Metadata::from([("rpc-id".into(), "R".into())]), false);
        assert_eq!(first.get("slimrpc-h-h").map(String::as_str), Some("1"));
        assert!(!first.contains_key("slimrpc-t-t"));
        let second = out.stamp(Metadata::new(), false);
        assert!(second.is_empty());
        let last = out.stamp(Metadata::new(), true);
        assert_eq!(last, Metadata::from([("slimrpc-t-t".into(), "2".into())]));
        let read = read_frame(&first);
        assert_eq!(read.headers, Metadata::from([("h".into(), "1".into())]));
        assert!(read.trailers.is_empty());
    }

    #[test]
    fn a_sink_keeps_each_members_metadata_apart() {
        let sink = ResponseMetadataSink::new();
        let a = Name::new("org", "ns", "a").with_id(1);
        let b = Name::new("org", "ns", "b").with_id(2);
        sink.record(&a, &Metadata::from([("slimrpc-h-who".into(), "a".into())]));
        sink.record(&b, &Metadata::from([("slimrpc-h-who".into(), "b".into())]));
        sink.record(&a, &Metadata::from([("slimrpc-t-end".into(), "a".into())]));
        let ma = sink.member(&Name::new("org", "ns", "a")).unwrap();
        assert_eq!(ma.headers["who"], "a");
        assert_eq!(ma.trailers["end"], "a");
        let mb = sink.member(&b).unwrap();
        assert_eq!(mb.headers["who"], "b");
        assert!(mb.trailers.is_empty());
        assert_eq!(sink.members().len(), 2);
    }
}
