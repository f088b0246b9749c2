//! Per-call response accounting: which member sent what, and when a call ends.
//!
//! Job: the EOS protocol on the client side, as a pure state machine. Each
//! member ends with an EOS or an error (an error counts as its EOS and does
//! not affect the others); the call ends when every member ended; a session
//! closing early yields `MulticastSessionClosed` (group) or `Internal` (P2P).
//! A member that leaves the session mid-call (its process died and it missed
//! its pings) ends too: the others' responses keep coming, and once they all
//! ended the call yields `MulticastSessionClosed` naming the departed member
//! as missing.
//! For calls with a single response per member (unary output), that member's
//! first OK frame *is* its response, even when zero-length, so messages that
//! encode to no bytes (e.g. `google.protobuf.Empty`) still arrive.
//! Must not: touch sessions, channels or clocks.

use slim_transport::Name;

use crate::code::Code;
use crate::error::RpcError;
use crate::metadata::{ResponseFrame, classify_response};
use crate::transport::IncomingMessage;

/// How many responses each member sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// One response, then EOS (unary and stream-unary).
    Unary,
    /// Any number of responses, then EOS.
    Stream,
}

/// What a received frame means for the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A response to decode, from `source`.
    Response {
        source: Name,
        member: usize,
        payload: Vec<u8>,
    },
    /// A member's error (already tagged with its origin in group mode).
    Error(RpcError),
    /// Nothing for the caller (EOS, echo, stray frame).
    Skip,
}

/// The display form used for origins and the received/missing lists:
/// `org/ns/svc`, plus `/<hex id>` when the member name has an instance id.
pub fn member_label(name: &Name) -> String {
    let [a, b, c] = name.strings();
    if name.has_null_id() {
        format!("{a}/{b}/{c}")
    } else {
        format!("{a}/{b}/{c}/{:x}", name.id())
    }
}

#[derive(Debug)]
struct Member {
    name: Name,
    done: bool,
    /// Left the session before it ended.
    departed: bool,
}

/// Accounting of one call's responses.
#[derive(Debug)]
pub struct CallTracker {
    group: bool,
    output: Output,
    members: Vec<Member>,
    completed: usize,
    departed: usize,
}

impl CallTracker {
    /// A tracker for `members` (one member and `group == false` for P2P).
    pub fn new(group: bool, output: Output, members: &[Name]) -> Self {
        Self {
            group,
            output,
            members: members
                .iter()
                .map(|n| Member {
                    name: n.clone(),
                    done: false,
                    departed: false,
                })
                .collect(),
            completed: 0,
            departed: 0,
        }
    }

    /// Number of members.
    pub fn total(&self) -> usize {
        self.members.len()
    }

    /// Members that ended (EOS or error).
    pub fn completed(&self) -> usize {
        self.completed
    }

    /// True once every member ended (EOS, error, or left the session).
    pub fn is_finished(&self) -> bool {
        self.completed + self.departed >= self.members.len()
    }

    /// Accounts `name` leaving the session; true when it was a member of
    /// this call that had not ended yet.
    pub fn on_member_left(&mut self, name: &Name) -> bool {
        let Some(member) = self.member_of(name) else {
            return false;
        };
        let m = &mut self.members[member];
        if m.done || m.departed {
            return false;
        }
        m.departed = true;
        self.departed += 1;
        true
    }

    /// Accounts the channel removing `name` from the group on purpose: if
    /// this call still waits for it, that wait ends here with an
    /// `Unavailable` item naming the member (the others go on). `None` when
    /// this call does not wait for `name` (not sent to it, or it already
    /// ended).
    pub fn on_member_removed(&mut self, name: &Name) -> Option<RpcError> {
        let member = self.members.iter().position(|m| {
            crate::dispatcher::designates(name, &m.name)
                || crate::dispatcher::designates(&m.name, name)
        })?;
        let m = &self.members[member];
        if m.done || m.departed {
            return None;
        }
        self.finish(member);
        let label = self.label(member);
        Some(self.attribute(
            member,
            RpcError::new(
                Code::Unavailable,
                format!(
                    "member removed: {label} was removed from the group before it ended this call"
                ),
            ),
        ))
    }

    /// Accounts the session giving up on message `message_id` of `name`.
    /// The message never arrived, so nobody knows which call it belonged
    /// to: if `name` is a member this call still waits for, the gap may be
    /// in this call's stream, and that member ends here with `DataLoss`
    /// (attributed to it in a group call; the others go on). `None` when
    /// this call does not wait for `name`.
    pub fn on_message_lost(&mut self, name: &Name, message_id: u32) -> Option<RpcError> {
        let member = self.member_of(name)?;
        let m = &self.members[member];
        if m.done || m.departed {
            return None;
        }
        self.finish(member);
        Some(self.attribute(
            member,
            RpcError::new(
                Code::DataLoss,
                format!(
                    "message {message_id} from {name} was lost (the session gave up \
                     recovering it); this call may be missing a response"
                ),
            ),
        ))
    }

    /// The error a finished call owes its caller because members left
    /// before ending, if any did.
    pub fn departure_error(&self) -> Option<RpcError> {
        (self.departed > 0).then(|| self.closed_error())
    }

    fn member_of(&self, source: &Name) -> Option<usize> {
        if !self.group {
            // A P2P session has exactly one peer, whatever instance answers.
            return Some(0);
        }
        self.members.iter().position(|m| {
            m.name.prefix() == source.prefix() && (m.name.has_null_id() || m.name == *source)
        })
    }

    fn finish(&mut self, member: usize) {
        if let Some(m) = self.members.get_mut(member)
            && !m.done
        {
            m.done = true;
            self.completed += 1;
        }
    }

    /// Marks `member` ended without an EOS (e.g. its response failed to decode).
    pub fn fail_member(&mut self, member: usize) {
        self.finish(member);
    }

    /// The label of `member` (see [`member_label`]).
    pub fn label(&self, member: usize) -> String {
        self.members
            .get(member)
            .map(|m| member_label(&m.name))
            .unwrap_or_default()
    }

    /// Tags `err` with `member`'s origin in group mode.
    pub fn attribute(&self, member: usize, err: RpcError) -> RpcError {
        if self.group {
            err.with_origin(self.label(member))
        } else {
            err
        }
    }

    /// Accounts one frame of this call.
    pub fn on_frame(&mut self, msg: IncomingMessage) -> Step {
        let Some(member) = self.member_of(&msg.source) else {
            tracing::trace!(source = %msg.source, "frame from a non-member; dropped");
            return Step::Skip;
        };
        if self.members[member].done || self.members[member].departed {
            // A unary member's trailing EOS, or anything after its end.
            return Step::Skip;
        }
        match classify_response(&msg.metadata, &msg.payload) {
            ResponseFrame::Error { code, message } => {
                self.finish(member);
                Step::Error(self.attribute(member, RpcError::new(code, message)))
            }
            ResponseFrame::Eos if self.output == Output::Stream => {
                self.finish(member);
                Step::Skip
            }
            ResponseFrame::Eos | ResponseFrame::Data => {
                if self.output == Output::Unary {
                    self.finish(member);
                }
                Step::Response {
                    source: msg.source,
                    member,
                    payload: msg.payload,
                }
            }
        }
    }

    /// The error for a session that closed before the call finished.
    pub fn closed_error(&self) -> RpcError {
        if self.group {
            let (done, missing): (Vec<&Member>, Vec<&Member>) =
                self.members.iter().partition(|m| m.done);
            RpcError::MulticastSessionClosed {
                completed: self.completed as u64,
                total: self.members.len() as u64,
                received: done.iter().map(|m| member_label(&m.name)).collect(),
                missing: missing.iter().map(|m| member_label(&m.name)).collect(),
            }
        } else {
            RpcError::internal(format!(
                "Session closed after {}/{} EOS markers",
                self.completed,
                self.members.len()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::status_frame;

    fn m(i: u64) -> Name {
        Name::new("org", "ns", format!("srv{i}"))
    }

    fn frame(from: &Name, code: Code, payload: &[u8]) -> IncomingMessage {
        IncomingMessage {
            source: from.with_id(0xabc),
            payload: payload.to_vec(),
            metadata: status_frame(code, "R"),
            peer_subject: None,
        }
    }

    fn members(n: u64) -> Vec<Name> {
        (0..n).map(m).collect()
    }

    #[test]
    fn a_member_removed_mid_call_ends_its_wait_with_an_unavailable_item_naming_it() {
        let mut t = CallTracker::new(true, Output::Unary, &members(3));
        assert!(matches!(
            t.on_frame(frame(&m(0), Code::Ok, b"x")),
            Step::Response { .. }
        ));
        // Removing a member that already answered changes nothing.
        assert_eq!(t.on_member_removed(&m(0).with_id(0xabc)), None);
        let e = t.on_member_removed(&m(2).with_id(0xabc)).expect("an item");
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.to_string().contains("member removed"), "{e}");
        assert!(e.to_string().contains("org/ns/srv2"), "{e}");
        assert!(!t.is_finished());
        // Told twice (session event and channel), reported once.
        assert_eq!(t.on_member_removed(&m(2)), None);
        assert!(matches!(
            t.on_frame(frame(&m(1), Code::Ok, b"y")),
            Step::Response { .. }
        ));
        assert!(t.is_finished());
        assert_eq!(t.departure_error(), None);
    }

    #[test]
    fn removing_a_member_the_call_was_not_sent_to_is_ignored() {
        let mut t = CallTracker::new(true, Output::Unary, &members(2));
        assert_eq!(t.on_member_removed(&m(7)), None);
        assert!(!t.is_finished());
    }

    #[test]
    fn group_call_ends_when_every_member_sent_eos() {
        let mut t = CallTracker::new(true, Output::Stream, &members(3));
        for i in 0..3 {
            assert!(matches!(
                t.on_frame(frame(&m(i), Code::Ok, b"x")),
                Step::Response { .. }
            ));
        }
        assert_eq!(t.on_frame(frame(&m(0), Code::Ok, b"")), Step::Skip);
        assert_eq!(t.on_frame(frame(&m(2), Code::Ok, b"")), Step::Skip);
        assert!(!t.is_finished());
        // A second EOS from a finished member does not count twice.
        assert_eq!(t.on_frame(frame(&m(0), Code::Ok, b"")), Step::Skip);
        assert!(!t.is_finished());
        assert_eq!(t.on_frame(frame(&m(1), Code::Ok, b"")), Step::Skip);
        assert!(t.is_finished());
        assert_eq!(t.completed(), 3);
    }

    #[test]
    fn member_error_counts_as_its_eos_and_others_go_on() {
        let mut t = CallTracker::new(true, Output::Stream, &members(2));
        let step = t.on_frame(frame(&m(0), Code::InvalidArgument, b"bad input"));
        assert_eq!(
            step,
            Step::Error(RpcError::MulticastRpc {
                origin: "org/ns/srv0".into(),
                code: Code::InvalidArgument,
                message: "bad input".into(),
                details: None
            })
        );
        assert_eq!(t.completed(), 1);
        assert!(matches!(
            t.on_frame(frame(&m(1), Code::Ok, b"r")),
            Step::Response { member: 1, .. }
        ));
        // Anything later from the failed member is ignored.
        assert_eq!(t.on_frame(frame(&m(0), Code::Ok, b"late")), Step::Skip);
        assert!(!t.is_finished());
        t.on_frame(frame(&m(1), Code::Ok, b""));
        assert!(t.is_finished());
    }

    #[test]
    fn p2p_error_is_not_tagged_with_an_origin() {
        let mut t = CallTracker::new(false, Output::Unary, &members(1));
        assert_eq!(
            t.on_frame(frame(&m(7), Code::Unimplemented, b"Method not found: S/M")),
            Step::Error(RpcError::unimplemented("Method not found: S/M"))
        );
        assert!(t.is_finished());
    }

    #[test]
    fn zero_length_unary_response_is_delivered_not_taken_for_eos() {
        let mut t = CallTracker::new(true, Output::Unary, &members(2));
        match t.on_frame(frame(&m(0), Code::Ok, b"")) {
            Step::Response {
                payload, member, ..
            } => {
                assert!(payload.is_empty());
                assert_eq!(member, 0);
            }
            other => panic!("expected a response, got {other:?}"),
        }
        // Its trailing real EOS is skipped.
        assert_eq!(t.on_frame(frame(&m(0), Code::Ok, b"")), Step::Skip);
        assert_eq!(t.completed(), 1);
    }

    #[test]
    fn frames_from_non_members_are_skipped_in_group_mode() {
        let mut t = CallTracker::new(true, Output::Stream, &members(2));
        let stranger = Name::new("org", "ns", "other");
        assert_eq!(t.on_frame(frame(&stranger, Code::Ok, b"x")), Step::Skip);
        assert_eq!(
            t.on_frame(frame(&stranger, Code::Internal, b"x")),
            Step::Skip
        );
        assert_eq!(t.completed(), 0);
    }

    #[test]
    fn session_closed_lists_completed_and_missing_members() {
        let mut t = CallTracker::new(true, Output::Stream, &members(3));
        t.on_frame(frame(&m(1), Code::Ok, b""));
        let e = t.closed_error();
        assert_eq!(
            e,
            RpcError::MulticastSessionClosed {
                completed: 1,
                total: 3,
                received: vec!["org/ns/srv1".into()],
                missing: vec!["org/ns/srv0".into(), "org/ns/srv2".into()],
            }
        );
    }

    #[test]
    fn a_departed_member_ends_the_call_once_the_others_finished_and_is_reported_missing() {
        let mut t = CallTracker::new(true, Output::Stream, &members(3));
        t.on_frame(frame(&m(0), Code::Ok, b""));
        // A member that already ended may leave without affecting the call.
        assert!(!t.on_member_left(&m(0).with_id(1)));
        assert!(t.on_member_left(&m(2).with_id(9)));
        assert!(!t.on_member_left(&m(2).with_id(9)), "counted once");
        assert!(!t.is_finished());
        // The survivor still streams and ends normally.
        assert!(matches!(
            t.on_frame(frame(&m(1), Code::Ok, b"r")),
            Step::Response { member: 1, .. }
        ));
        // Late frames of the departed member are ignored.
        assert_eq!(t.on_frame(frame(&m(2), Code::Ok, b"late")), Step::Skip);
        t.on_frame(frame(&m(1), Code::Ok, b""));
        assert!(t.is_finished());
        assert_eq!(
            t.departure_error(),
            Some(RpcError::MulticastSessionClosed {
                completed: 2,
                total: 3,
                received: vec!["org/ns/srv0".into(), "org/ns/srv1".into()],
                missing: vec!["org/ns/srv2".into()],
            })
        );
    }

    #[test]
    fn a_lost_message_ends_only_the_member_it_came_from_with_data_loss() {
        let mut t = CallTracker::new(true, Output::Stream, &members(3));
        t.on_frame(frame(&m(0), Code::Ok, b""));
        // Already ended, or not a member: nothing for this call.
        assert_eq!(t.on_message_lost(&m(0).with_id(1), 5), None);
        assert_eq!(t.on_message_lost(&Name::new("org", "ns", "other"), 5), None);
        let e = t
            .on_message_lost(&m(1).with_id(1), 9)
            .expect("member 1 still streams");
        assert_eq!(e.code(), Code::DataLoss);
        assert!(matches!(&e, RpcError::MulticastRpc { origin, .. } if origin == "org/ns/srv1"));
        assert_eq!(t.on_message_lost(&m(1).with_id(1), 10), None, "once");
        assert!(!t.is_finished(), "member 2 goes on");
        t.on_frame(frame(&m(2), Code::Ok, b""));
        assert!(t.is_finished());
    }

    #[test]
    fn a_lost_message_fails_a_p2p_call_that_has_not_ended() {
        let mut t = CallTracker::new(false, Output::Stream, &members(1));
        let e = t
            .on_message_lost(&m(0).with_id(3), 1)
            .expect("the call waits for its peer");
        assert_eq!(e.code(), Code::DataLoss);
        assert!(t.is_finished());
    }

    #[test]
    fn a_call_nobody_left_owes_no_departure_error() {
        let mut t = CallTracker::new(true, Output::Unary, &members(2));
        assert!(!t.on_member_left(&Name::new("org", "ns", "stranger")));
        t.on_frame(frame(&m(0), Code::Ok, b"a"));
        t.on_frame(frame(&m(1), Code::Ok, b"b"));
        assert!(t.is_finished());
        assert_eq!(t.departure_error(), None);
    }

    #[test]
    fn p2p_session_closed_is_internal_with_eos_count() {
        let t = CallTracker::new(false, Output::Stream, &members(1));
        assert_eq!(
            t.closed_error(),
            RpcError::internal("Session closed after 0/1 EOS markers")
        );
    }

    #[test]
    fn member_with_instance_id_only_matches_that_instance() {
        let pinned = m(0).with_id(5);
        let mut t = CallTracker::new(true, Output::Stream, std::slice::from_ref(&pinned));
        let mut other = frame(&m(0), Code::Ok, b"");
        other.source = m(0).with_id(6);
        assert_eq!(t.on_frame(other), Step::Skip);
        assert!(!t.is_finished());
        let mut mine = frame(&m(0), Code::Ok, b"");
        mine.source = pinned.clone();
        t.on_frame(mine);
        assert!(t.is_finished());
        assert_eq!(member_label(&pinned), "org/ns/srv0/5");
    }
}
