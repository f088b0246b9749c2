//! gRPC status codes as SlimRPC carries them in `slimrpc-code`.
//!
//! Job: the numbering (0–16) and the lenient parse rule of SLIM v1.3: a value
//! that is absent, not a decimal integer, or outside 0..=16 reads as `Ok`.
//! Must not: know anything about frames or sessions.

use std::fmt;

/// A gRPC status code (same numbering as gRPC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(i32)]
pub enum Code {
    #[default]
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl Code {
    /// Every code, in numeric order.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code for `value`, or `None` outside 0..=16.
    pub fn from_i32(value: i32) -> Option<Code> {
        usize::try_from(value)
            .ok()
            .and_then(|i| Code::ALL.get(i).copied())
    }

    /// The numeric value sent on the wire.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// Reads a `slimrpc-code` metadata value the way SLIM v1.3 does:
    /// absent, unparsable or out-of-range values are `Ok`.
    pub fn from_metadata(value: Option<&str>) -> Code {
        value
            .and_then(|v| v.parse::<i32>().ok())
            .and_then(Code::from_i32)
            .unwrap_or(Code::Ok)
    }

    /// True for `Ok`.
    pub fn is_ok(self) -> bool {
        self == Code::Ok
    }

    /// The canonical upper-case gRPC name (`DEADLINE_EXCEEDED`).
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Code> for i32 {
    fn from(c: Code) -> i32 {
        c.as_i32()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_use_grpc_numbering() {
        for (i, c) in Code::ALL.iter().enumerate() {
            assert_eq!(c.as_i32(), i as i32);
            assert_eq!(Code::from_i32(i as i32), Some(*c));
        }
        assert_eq!(Code::DeadlineExceeded.as_i32(), 4);
        assert_eq!(Code::Unimplemented.as_i32(), 12);
        assert_eq!(Code::Unauthenticated.as_i32(), 16);
    }

    #[test]
    fn metadata_code_parses_decimal_values() {
        assert_eq!(Code::from_metadata(Some("0")), Code::Ok);
        assert_eq!(Code::from_metadata(Some("3")), Code::InvalidArgument);
        assert_eq!(Code::from_metadata(Some("12")), Code::Unimplemented);
        assert_eq!(Code::from_metadata(Some("16")), Code::Unauthenticated);
    }

    #[test]
    fn absent_unparsable_or_out_of_range_code_reads_as_ok() {
        assert_eq!(Code::from_metadata(None), Code::Ok);
        assert_eq!(Code::from_metadata(Some("")), Code::Ok);
        assert_eq!(Code::from_metadata(Some("abc")), Code::Ok);
        assert_eq!(Code::from_metadata(Some("17")), Code::Ok);
        assert_eq!(Code::from_metadata(Some("-1")), Code::Ok);
        assert_eq!(Code::from_metadata(Some("99999999999")), Code::Ok);
        assert_eq!(Code::from_metadata(Some("4.0")), Code::Ok);
        assert_eq!(Code::from_metadata(Some(" 3")), Code::Ok);
    }

    #[test]
    fn code_displays_grpc_name() {
        assert_eq!(Code::DeadlineExceeded.to_string(), "DEADLINE_EXCEEDED");
        assert_eq!(Code::Ok.to_string(), "OK");
    }
}
