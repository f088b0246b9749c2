//! `RpcError`: the one error type every SlimRPC call and handler returns.
//!
//! Job: the three variants of the Group RPC design (plain RPC error, one
//! group member's error tagged with its origin, group session closed before
//! every member finished) and small constructors. Must not: decide when an
//! error happens; the channel and server do that.

use crate::code::Code;

/// An RPC failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// A status from the peer (P2P) or a local failure not tied to one member
    /// (deadline, encoding, transport).
    #[error("{code}: {message}")]
    Rpc {
        code: Code,
        message: String,
        /// Never transmitted by SLIM v1.3; only set by local code.
        details: Option<Vec<u8>>,
    },
    /// One group member answered with an error; `origin` is its name
    /// (`org/ns/service`). It counts as that member's end of stream.
    #[error("[origin: {origin}] {code}: {message}")]
    MulticastRpc {
        origin: String,
        code: Code,
        message: String,
        details: Option<Vec<u8>>,
    },
    /// The group session died before every member finished.
    #[error(
        "session closed after {completed}/{total} members; received: [{}], missing: [{}]",
        received.join(", "),
        missing.join(", ")
    )]
    MulticastSessionClosed {
        completed: u64,
        total: u64,
        received: Vec<String>,
        missing: Vec<String>,
    },
}

impl RpcError {
    /// A plain error with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        RpcError::Rpc {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// `Cancelled`.
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::new(Code::Cancelled, message)
    }

    /// `InvalidArgument`.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    /// `DeadlineExceeded`.
    pub fn deadline_exceeded(message: impl Into<String>) -> Self {
        Self::new(Code::DeadlineExceeded, message)
    }

    /// `Unimplemented`.
    pub fn unimplemented(message: impl Into<String>) -> Self {
        Self::new(Code::Unimplemented, message)
    }

    /// `Internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }

    /// `Unavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, message)
    }

    /// The status code (`Internal` for `MulticastSessionClosed`).
    pub fn code(&self) -> Code {
        match self {
            RpcError::Rpc { code, .. } | RpcError::MulticastRpc { code, .. } => *code,
            RpcError::MulticastSessionClosed { .. } => Code::Internal,
        }
    }

    /// The message text as it travels in an error frame.
    pub fn message(&self) -> String {
        match self {
            RpcError::Rpc { message, .. } | RpcError::MulticastRpc { message, .. } => {
                message.clone()
            }
            RpcError::MulticastSessionClosed { .. } => self.to_string(),
        }
    }

    /// Details bytes, if any (never received from the wire).
    pub fn details(&self) -> Option<&[u8]> {
        match self {
            RpcError::Rpc { details, .. } | RpcError::MulticastRpc { details, .. } => {
                details.as_deref()
            }
            RpcError::MulticastSessionClosed { .. } => None,
        }
    }

    /// The same error attributed to group member `origin`.
    pub fn with_origin(self, origin: impl Into<String>) -> Self {
        match self {
            RpcError::Rpc {
                code,
                message,
                details,
            }
            | RpcError::MulticastRpc {
                code,
                message,
                details,
                ..
            } => RpcError::MulticastRpc {
                origin: origin.into(),
                code,
                message,
                details,
            },
            closed @ RpcError::MulticastSessionClosed { .. } => closed,
        }
    }
}

/// The answer of a method of a generated handler trait that the implementation does not
/// override: a ready `Unimplemented` error naming `service/method`. Generated code calls
/// this instead of carrying its own copy per service.
pub fn unimplemented<T>(service: &str, method: &str) -> std::future::Ready<Result<T, RpcError>> {
    std::future::ready(Err(RpcError::unimplemented(format!(
        "{service}/{method} is not implemented"
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_origin_tags_a_plain_error_with_the_member() {
        let e = RpcError::invalid_argument("bad input").with_origin("org/ns/s1");
        assert_eq!(
            e,
            RpcError::MulticastRpc {
                origin: "org/ns/s1".into(),
                code: Code::InvalidArgument,
                message: "bad input".into(),
                details: None
            }
        );
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(e.message(), "bad input");
    }

    #[test]
    fn session_closed_error_lists_received_and_missing_members() {
        let e = RpcError::MulticastSessionClosed {
            completed: 1,
            total: 2,
            received: vec!["org/ns/a".into()],
            missing: vec!["org/ns/b".into()],
        };
        assert_eq!(e.code(), Code::Internal);
        assert_eq!(
            e.to_string(),
            "session closed after 1/2 members; received: [org/ns/a], missing: [org/ns/b]"
        );
    }

    #[test]
    fn unimplemented_answer_names_the_service_and_method() {
        let answer: Result<(), RpcError> =
            futures::executor::block_on(super::unimplemented("a.v1.Svc", "Call"));
        let e = answer.unwrap_err();
        assert_eq!(e.code(), Code::Unimplemented);
        assert_eq!(e.message(), "a.v1.Svc/Call is not implemented");
    }
}
