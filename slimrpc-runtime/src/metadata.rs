//! SlimRPC frames: metadata keys, deadline encoding and frame shapes (SLIM
//! v1.3 §g.1–g.2).
//!
//! Job: build the exact metadata of every client and server frame, read the
//! status code and deadline back, and classify a received frame (EOS, error,
//! data). Must not: send anything or keep state; the channel and the server
//! call these pure functions.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::code::Code;

/// Metadata of one message: string keys to string values.
pub type Metadata = HashMap<String, String>;

/// Service name (`package.Service`); on the first client frame.
pub const SERVICE_KEY: &str = "service";
/// Method name; on the first client frame.
pub const METHOD_KEY: &str = "method";
/// UUID v4 of the call; on every frame of the call, both directions.
pub const RPC_ID_KEY: &str = "rpc-id";
/// Direction marker; `req` on client data frames and client EOS #1 only.
pub const RPC_DIR_KEY: &str = "slimrpc-dir";
/// Value of [`RPC_DIR_KEY`] on client frames.
pub const RPC_DIR_REQ: &str = "req";
/// Decimal status code; on every server frame and on client EOS frames.
pub const STATUS_CODE_KEY: &str = "slimrpc-code";
/// Absolute deadline, Unix seconds as a Rust-formatted `f64`; first client frame.
pub const DEADLINE_KEY: &str = "slimrpc-timeout";
/// Our extension, on the first client frame of a call to a method with one
/// answer (unary, client streaming): `"true"` says the caller takes each
/// member's answer as the end of that member's part, so a server that knows
/// the key sends no EOS after it. Official servers ignore the key (and send
/// the EOS, which our client leaves undecrypted); official clients never
/// send it, so they get the EOS wherever they count it.
pub const ANSWER_ENDS_KEY: &str = "slimrpc-answer-ends";

/// True when a call's first-frame metadata carries [`ANSWER_ENDS_KEY`].
pub fn answer_ends(metadata: &Metadata) -> bool {
    metadata
        .get(ANSWER_ENDS_KEY)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The deadline used when a call sets no timeout (SLIM's `MAX_TIMEOUT`).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(36000);

/// A fresh call id (UUID v4, hyphenated lower case).
pub fn new_rpc_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Encodes an absolute deadline as SLIM does: seconds since the epoch as an
/// `f64`, printed with Rust's `f64` `Display` (`"1718000000.5"`, `"1718000000"`).
pub fn encode_deadline(deadline: SystemTime) -> String {
    deadline
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        .to_string()
}

/// Decodes a `slimrpc-timeout` value; `None` when it is not a finite,
/// non-negative number of seconds (the caller then uses the default).
pub fn decode_deadline(value: &str) -> Option<SystemTime> {
    let secs = value.parse::<f64>().ok()?;
    let d = Duration::try_from_secs_f64(secs).ok()?;
    UNIX_EPOCH.checked_add(d)
}

/// The deadline a server applies for `metadata` at `now`: the parsed
/// `slimrpc-timeout`, or `now + MAX_TIMEOUT` when absent or unparsable.
pub fn deadline_from_metadata(metadata: &Metadata, now: SystemTime) -> SystemTime {
    metadata
        .get(DEADLINE_KEY)
        .and_then(|v| decode_deadline(v))
        .unwrap_or_else(|| now.checked_add(MAX_TIMEOUT).unwrap_or(now))
}

/// The status code of a frame (lenient parse, see [`Code::from_metadata`]).
pub fn frame_code(metadata: &Metadata) -> Code {
    Code::from_metadata(metadata.get(STATUS_CODE_KEY).map(String::as_str))
}

/// True when the frame is an end-of-stream marker: a `slimrpc-code` is
/// present and reads OK (an unparsable one reads OK too), **and** the payload
/// is empty. Without a code an empty frame is a zero-length message (a
/// `google.protobuf.Empty` response, as SlimRPC 3.x sends it). 1.x peers put
/// a code on every frame, so from them a zero-length message still reads as
/// EOS: their wire cannot tell the two apart.
pub fn is_eos(metadata: &Metadata, payload: &[u8]) -> bool {
    payload.is_empty() && metadata.contains_key(STATUS_CODE_KEY) && frame_code(metadata).is_ok()
}

/// True when the frame carries `slimrpc-dir=req` (sent by a client).
pub fn is_client_frame(metadata: &Metadata) -> bool {
    metadata.get(RPC_DIR_KEY).map(String::as_str) == Some(RPC_DIR_REQ)
}

/// The `rpc-id` of a frame, if present and non-empty.
pub fn rpc_id(metadata: &Metadata) -> Option<&str> {
    metadata
        .get(RPC_ID_KEY)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

/// What a received frame means to a caller waiting for responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseFrame {
    /// End of that sender's response stream (also: a zero-length response).
    Eos,
    /// An error status; the payload is its UTF-8 message. Ends that sender's stream.
    Error { code: Code, message: String },
    /// A response message to decode.
    Data,
}

/// Classifies a frame received by a client.
pub fn classify_response(metadata: &Metadata, payload: &[u8]) -> ResponseFrame {
    let code = frame_code(metadata);
    if !code.is_ok() {
        ResponseFrame::Error {
            code,
            message: String::from_utf8_lossy(payload).into_owned(),
        }
    } else if is_eos(metadata, payload) {
        ResponseFrame::Eos
    } else {
        ResponseFrame::Data
    }
}

// ---- client frames -------------------------------------------------------

/// Metadata of a call's first client data frame: the caller's metadata plus
/// `slimrpc-timeout`, `service`, `method`, `rpc-id`, `slimrpc-dir=req`.
/// Protocol keys win over user keys of the same name.
pub fn client_first_frame(
    user: &Metadata,
    deadline: SystemTime,
    service: &str,
    method: &str,
    rpc_id: &str,
) -> Metadata {
    let mut m = user.clone();
    m.insert(DEADLINE_KEY.into(), encode_deadline(deadline));
    m.insert(SERVICE_KEY.into(), service.into());
    m.insert(METHOD_KEY.into(), method.into());
    m.insert(RPC_ID_KEY.into(), rpc_id.into());
    m.insert(RPC_DIR_KEY.into(), RPC_DIR_REQ.into());
    m
}

/// Metadata of every later client data frame: `rpc-id`, `slimrpc-dir=req`.
pub fn client_next_frame(rpc_id: &str) -> Metadata {
    Metadata::from([
        (RPC_ID_KEY.into(), rpc_id.into()),
        (RPC_DIR_KEY.into(), RPC_DIR_REQ.into()),
    ])
}

/// Where the client's request stream came from, for its EOS frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestsSent {
    /// At least one data frame went out (it carried service/method).
    Some,
    /// The request stream was empty: the EOS must carry the call's first-frame
    /// metadata so the server can dispatch without a data frame.
    None,
}

/// Client EOS #1: empty blob, `slimrpc-code=0`, `rpc-id`, `slimrpc-dir=req`;
/// when no data frame was sent, the whole first-frame metadata (service,
/// method, deadline and user keys) too.
pub fn client_eos1(rpc_id: &str, sent: RequestsSent, first_frame: &Metadata) -> Metadata {
    let mut m = match sent {
        RequestsSent::Some => Metadata::new(),
        RequestsSent::None => first_frame.clone(),
    };
    m.insert(STATUS_CODE_KEY.into(), Code::Ok.as_i32().to_string());
    m.insert(RPC_ID_KEY.into(), rpc_id.into());
    m.insert(RPC_DIR_KEY.into(), RPC_DIR_REQ.into());
    m
}

/// Client EOS #2: empty blob, `slimrpc-code=0`, `rpc-id`, plus service and
/// method when the stream was empty. No `slimrpc-dir`; servers drop it.
pub fn client_eos2(rpc_id: &str, sent: RequestsSent, service: &str, method: &str) -> Metadata {
    let mut m = status_frame(Code::Ok, rpc_id);
    if sent == RequestsSent::None {
        m.insert(SERVICE_KEY.into(), service.into());
        m.insert(METHOD_KEY.into(), method.into());
    }
    m
}

/// The client's cancel frame (our extension): `rpc-id`, `slimrpc-dir=req`,
/// `slimrpc-code=1` (CANCELLED), and no `service`/`method`; its payload is
/// [`CANCEL_MESSAGE`]. Sent when a caller gives up on a call before every
/// server ended it. Official servers read it as the client ending its
/// request stream with an error (a call still reading requests) or drop it
/// for naming no method (any other call).
pub fn client_cancel(rpc_id: &str) -> Metadata {
    let mut m = status_frame(Code::Cancelled, rpc_id);
    m.insert(RPC_DIR_KEY.into(), RPC_DIR_REQ.into());
    m
}

/// The payload of [`client_cancel`] frames.
pub const CANCEL_MESSAGE: &[u8] = b"Cancelled by the caller";

/// True for a [`client_cancel`] frame.
pub fn is_cancel(metadata: &Metadata) -> bool {
    is_client_frame(metadata)
        && metadata.contains_key(STATUS_CODE_KEY)
        && frame_code(metadata) == Code::Cancelled
}

// ---- server frames -------------------------------------------------------

/// Metadata of a server response message: `rpc-id` only (no code: SlimRPC
/// 3.x codes terminal frames only). Never `slimrpc-dir`.
pub fn response_frame(rpc_id: &str) -> Metadata {
    let mut m = Metadata::new();
    if !rpc_id.is_empty() {
        m.insert(RPC_ID_KEY.into(), rpc_id.into());
    }
    m
}

/// Metadata of a server EOS (code OK) or error frame: `slimrpc-code`,
/// `rpc-id`. Never `slimrpc-dir`.
pub fn status_frame(code: Code, rpc_id: &str) -> Metadata {
    let mut m = Metadata::from([(STATUS_CODE_KEY.into(), code.as_i32().to_string())]);
    if !rpc_id.is_empty() {
        m.insert(RPC_ID_KEY.into(), rpc_id.into());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> Metadata {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn deadline_is_printed_like_rust_f64_display() {
        let t = UNIX_EPOCH + Duration::from_millis(1_718_000_000_500);
        assert_eq!(encode_deadline(t), "1718000000.5");
        let whole = UNIX_EPOCH + Duration::from_secs(1_718_000_000);
        assert_eq!(encode_deadline(whole), "1718000000");
        let t = UNIX_EPOCH + Duration::from_secs_f64(1795290693.2715242);
        assert_eq!(encode_deadline(t), 1795290693.2715242_f64.to_string());
    }

    #[test]
    fn deadline_round_trips_within_a_microsecond() {
        let now = SystemTime::now() + Duration::from_secs(30);
        let back = decode_deadline(&encode_deadline(now)).unwrap();
        let diff = match back.duration_since(now) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        assert!(diff < Duration::from_micros(1), "diff {diff:?}");
    }

    #[test]
    fn malformed_deadlines_decode_to_none_and_fall_back_to_max_timeout() {
        for bad in ["", "soon", "-5", "NaN", "inf", "1e400"] {
            assert_eq!(decode_deadline(bad), None, "{bad}");
        }
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let m = meta(&[(DEADLINE_KEY, "garbage")]);
        assert_eq!(deadline_from_metadata(&m, now), now + MAX_TIMEOUT);
        assert_eq!(
            deadline_from_metadata(&Metadata::new(), now),
            now + MAX_TIMEOUT
        );
        let m = meta(&[(DEADLINE_KEY, "1500.25")]);
        assert_eq!(
            deadline_from_metadata(&m, now),
            UNIX_EPOCH + Duration::from_secs_f64(1500.25)
        );
    }

    #[test]
    fn first_client_frame_carries_protocol_keys_and_user_metadata() {
        let user = meta(&[("x-user", "u1"), (SERVICE_KEY, "spoofed")]);
        let deadline = UNIX_EPOCH + Duration::from_secs(1_718_000_000);
        let m = client_first_frame(&user, deadline, "pkg.Svc", "Echo", "R1");
        assert_eq!(
            m,
            meta(&[
                ("x-user", "u1"),
                (SERVICE_KEY, "pkg.Svc"),
                (METHOD_KEY, "Echo"),
                (RPC_ID_KEY, "R1"),
                (RPC_DIR_KEY, "req"),
                (DEADLINE_KEY, "1718000000"),
            ])
        );
        assert!(!m.contains_key(STATUS_CODE_KEY));
    }

    #[test]
    fn later_client_frames_carry_only_rpc_id_and_direction() {
        assert_eq!(
            client_next_frame("R1"),
            meta(&[(RPC_ID_KEY, "R1"), (RPC_DIR_KEY, "req")])
        );
    }

    #[test]
    fn client_eos1_has_direction_and_eos2_does_not() {
        let first = meta(&[(SERVICE_KEY, "S"), (METHOD_KEY, "M"), ("k", "v")]);
        let e1 = client_eos1("R1", RequestsSent::Some, &first);
        assert_eq!(
            e1,
            meta(&[
                (STATUS_CODE_KEY, "0"),
                (RPC_ID_KEY, "R1"),
                (RPC_DIR_KEY, "req")
            ])
        );
        let e2 = client_eos2("R1", RequestsSent::Some, "S", "M");
        assert_eq!(e2, meta(&[(STATUS_CODE_KEY, "0"), (RPC_ID_KEY, "R1")]));
    }

    #[test]
    fn eos_of_an_empty_request_stream_names_service_and_method() {
        let first = meta(&[(SERVICE_KEY, "S"), (METHOD_KEY, "M"), ("k", "v")]);
        let e1 = client_eos1("R1", RequestsSent::None, &first);
        assert_eq!(e1.get(SERVICE_KEY).map(String::as_str), Some("S"));
        assert_eq!(e1.get(METHOD_KEY).map(String::as_str), Some("M"));
        assert_eq!(e1.get("k").map(String::as_str), Some("v"));
        assert_eq!(e1.get(RPC_DIR_KEY).map(String::as_str), Some("req"));
        let e2 = client_eos2("R1", RequestsSent::None, "S", "M");
        assert_eq!(
            e2,
            meta(&[
                (STATUS_CODE_KEY, "0"),
                (RPC_ID_KEY, "R1"),
                (SERVICE_KEY, "S"),
                (METHOD_KEY, "M")
            ])
        );
    }

    #[test]
    fn server_frames_carry_code_and_rpc_id_but_no_direction() {
        assert_eq!(
            status_frame(Code::Ok, "R1"),
            meta(&[(STATUS_CODE_KEY, "0"), (RPC_ID_KEY, "R1")])
        );
        assert_eq!(
            status_frame(Code::Unimplemented, "R1"),
            meta(&[(STATUS_CODE_KEY, "12"), (RPC_ID_KEY, "R1")])
        );
        assert_eq!(
            status_frame(Code::Internal, ""),
            meta(&[(STATUS_CODE_KEY, "13")])
        );
    }

    #[test]
    fn eos_is_ok_code_with_empty_payload() {
        let ok = status_frame(Code::Ok, "R");
        assert!(is_eos(&ok, b""));
        assert!(!is_eos(&ok, b"x"));
        // No code: a zero-length message (3.x), not an EOS.
        assert!(!is_eos(&Metadata::new(), b""));
        assert!(!is_eos(&response_frame("R"), b""));
        assert!(is_eos(&meta(&[(STATUS_CODE_KEY, "77")]), b""));
        assert!(!is_eos(&status_frame(Code::Internal, "R"), b""));
    }

    #[test]
    fn zero_length_response_looks_like_eos() {
        // A default protobuf message encodes to zero bytes: on the wire the
        // response frame is then identical to an EOS frame.
        let response = Vec::new();
        assert!(response.is_empty());
        assert_eq!(
            classify_response(&status_frame(Code::Ok, "R"), &response),
            ResponseFrame::Eos
        );
    }

    #[test]
    fn classify_response_reads_errors_with_utf8_message() {
        assert_eq!(
            classify_response(&status_frame(Code::InvalidArgument, "R"), b"bad input"),
            ResponseFrame::Error {
                code: Code::InvalidArgument,
                message: "bad input".into()
            }
        );
        assert_eq!(
            classify_response(&status_frame(Code::Ok, "R"), b"\x08\x01"),
            ResponseFrame::Data
        );
        // Out-of-range codes read as OK.
        assert_eq!(
            classify_response(&meta(&[(STATUS_CODE_KEY, "42")]), b"x"),
            ResponseFrame::Data
        );
    }

    #[test]
    fn rpc_ids_are_uuid_v4_and_unique() {
        let a = new_rpc_id();
        let b = new_rpc_id();
        assert_ne!(a, b);
        let u = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(u.get_version_num(), 4);
        assert_eq!(rpc_id(&meta(&[(RPC_ID_KEY, "")])), None);
        assert_eq!(rpc_id(&meta(&[(RPC_ID_KEY, "x")])), Some("x"));
    }
}
