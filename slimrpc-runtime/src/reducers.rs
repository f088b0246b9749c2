//! Reducers over a group call's response stream: first response, majority
//! vote, quorum, and a general fold.
//!
//! Job: turn the per-member items of a [`MulticastStream`](crate::MulticastStream)
//! (or any stream of the same items) into one result, and say precisely
//! why when that result cannot be reached: too many member errors, members
//! gone, the call's deadline. A reducer that has its result before every
//! member ended drops the stream, which cancels the call on the members
//! still working (the channel sends the cancel frame).
//! Must not: know about sessions or frames; it only reads items.

use std::collections::HashMap;
use std::hash::Hash;
use std::ops::ControlFlow;

use futures::{Stream, StreamExt};

use crate::code::Code;
use crate::context::MulticastItem;
use crate::error::RpcError;

/// Why a reducer could not produce its result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReduceError {
    /// Every member ended without an answer (errors, or gone).
    #[error("no member answered; member errors: [{}]", list(.failed))]
    NoAnswer { failed: Vec<RpcError> },
    /// Fewer than `wanted` members answered before the call ended.
    #[error(
        "quorum of {wanted} not reached: {answered} answered; member errors: [{}]",
        list(.failed)
    )]
    QuorumNotReached {
        wanted: usize,
        answered: usize,
        failed: Vec<RpcError>,
    },
    /// No answer was given by more than half of the members that ended.
    #[error(
        "no majority: the most common answer has {leading} of {voters} votes; member errors: [{}]",
        list(.failed)
    )]
    NoMajority {
        leading: usize,
        voters: usize,
        failed: Vec<RpcError>,
    },
    /// The call's deadline passed before the result was reached.
    #[error("deadline exceeded after {answered} answers: {cause}")]
    Deadline { answered: usize, cause: RpcError },
    /// The call failed as a whole (not one member's error).
    #[error("the call failed: {0}")]
    Call(RpcError),
}

fn list(errors: &[RpcError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a member-less error means for a reduction.
enum Failure {
    /// One member (or several gone members) ended without answering.
    Members(usize),
    Deadline,
    Call,
}

fn classify(e: &RpcError) -> Failure {
    match e {
        RpcError::MulticastRpc { .. } => Failure::Members(1),
        RpcError::MulticastSessionClosed { missing, .. } => Failure::Members(missing.len().max(1)),
        RpcError::Rpc { code, .. } if *code == Code::DeadlineExceeded => Failure::Deadline,
        RpcError::Rpc { .. } => Failure::Call,
    }
}

/// The winning answer of [`GroupResponsesExt::majority`].
#[derive(Debug, Clone, PartialEq)]
pub struct Majority<T, K> {
    /// The key more than half of the members answered with.
    pub key: K,
    /// The answers that voted for it.
    pub votes: Vec<MulticastItem<T>>,
    /// Members that ended the call (answered or failed).
    pub voters: usize,
}

/// The result of [`GroupResponsesExt::fold_responses`].
#[derive(Debug, Clone, PartialEq)]
pub struct Folded<A> {
    /// The accumulator after the last answer folded.
    pub value: A,
    /// The members' errors met on the way (they were not folded).
    pub failed: Vec<RpcError>,
}

/// Reducers over a group call's responses; implemented for every stream of
/// `Result<MulticastItem<T>, RpcError>`, such as the
/// [`MulticastStream`](crate::MulticastStream) a group call returns.
pub trait GroupResponsesExt<T>:
    Stream<Item = Result<MulticastItem<T>, RpcError>> + Unpin + Send + Sized
{
    /// The first answer of any member; the call is cancelled on the
    /// others. Fails with [`ReduceError::NoAnswer`] when every member
    /// failed, [`ReduceError::Deadline`] when the deadline passed first.
    fn first_response(
        mut self,
    ) -> impl Future<Output = Result<MulticastItem<T>, ReduceError>> + Send {
        async move {
            let mut failed = Vec::new();
            while let Some(item) = self.next().await {
                match item {
                    Ok(item) => return Ok(item),
                    Err(e) => match classify(&e) {
                        Failure::Members(_) => failed.push(e),
                        Failure::Deadline => {
                            return Err(ReduceError::Deadline {
                                answered: 0,
                                cause: e,
                            });
                        }
                        Failure::Call => return Err(ReduceError::Call(e)),
                    },
                }
            }
            Err(ReduceError::NoAnswer { failed })
        }
    }

    /// The first `n` answers, from `n` different members; the call is then
    /// cancelled on the others. Fails with
    /// [`ReduceError::QuorumNotReached`] when the call ended with fewer,
    /// [`ReduceError::Deadline`] when the deadline passed first.
    fn quorum(
        mut self,
        n: usize,
    ) -> impl Future<Output = Result<Vec<MulticastItem<T>>, ReduceError>> + Send
    where
        T: Send,
    {
        async move {
            let mut got: Vec<MulticastItem<T>> = Vec::new();
            let mut failed = Vec::new();
            while got.len() < n {
                let Some(item) = self.next().await else {
                    return Err(ReduceError::QuorumNotReached {
                        wanted: n,
                        answered: got.len(),
                        failed,
                    });
                };
                match item {
                    // A member streaming several answers counts once.
                    Ok(item) if got.iter().any(|g| g.source == item.source) => {}
                    Ok(item) => got.push(item),
                    Err(e) => match classify(&e) {
                        Failure::Members(_) => failed.push(e),
                        Failure::Deadline => {
                            return Err(ReduceError::Deadline {
                                answered: got.len(),
                                cause: e,
                            });
                        }
                        Failure::Call => return Err(ReduceError::Call(e)),
                    },
                }
            }
            Ok(got)
        }
    }

    /// Majority vote: waits for every member, groups the answers by
    /// `key(&answer)`, and returns the key more than half of the members
    /// that ended the call answered with (a failed member counts as a
    /// voter without a vote). Fails with [`ReduceError::NoMajority`],
    /// or [`ReduceError::Deadline`] when the deadline passed first.
    fn majority<K, F>(
        mut self,
        mut key: F,
    ) -> impl Future<Output = Result<Majority<T, K>, ReduceError>> + Send
    where
        T: Send,
        K: Eq + Hash + Clone + Send,
        F: FnMut(&T) -> K + Send,
    {
        async move {
            let mut votes: HashMap<K, Vec<MulticastItem<T>>> = HashMap::new();
            let mut failed = Vec::new();
            let mut voters = 0;
            while let Some(item) = self.next().await {
                match item {
                    Ok(item) => {
                        voters += 1;
                        votes.entry(key(&item.message)).or_default().push(item);
                    }
                    Err(e) => match classify(&e) {
                        Failure::Members(k) => {
                            voters += k;
                            failed.push(e);
                        }
                        Failure::Deadline => {
                            return Err(ReduceError::Deadline {
                                answered: voters,
                                cause: e,
                            });
                        }
                        Failure::Call => return Err(ReduceError::Call(e)),
                    },
                }
            }
            let leading = votes.values().map(Vec::len).max().unwrap_or(0);
            if leading * 2 > voters
                && let Some((k, v)) = votes.into_iter().find(|(_, v)| v.len() == leading)
            {
                return Ok(Majority {
                    key: k,
                    votes: v,
                    voters,
                });
            }
            Err(ReduceError::NoMajority {
                leading,
                voters,
                failed,
            })
        }
    }

    /// Folds every answer into `init` with `f`, in arrival order; `f`
    /// returning `ControlFlow::Break` ends the fold early (and cancels the
    /// call on the members still working). Members' errors are not folded
    /// but returned beside the value; the call failing as a whole fails
    /// the fold ([`ReduceError::Deadline`], [`ReduceError::Call`]).
    fn fold_responses<A, F>(
        mut self,
        init: A,
        mut f: F,
    ) -> impl Future<Output = Result<Folded<A>, ReduceError>> + Send
    where
        A: Send,
        F: FnMut(A, MulticastItem<T>) -> ControlFlow<A, A> + Send,
    {
        async move {
            let mut value = init;
            let mut failed = Vec::new();
            let mut answered = 0;
            while let Some(item) = self.next().await {
                match item {
                    Ok(item) => {
                        answered += 1;
                        match f(value, item) {
                            ControlFlow::Continue(v) => value = v,
                            ControlFlow::Break(v) => {
                                return Ok(Folded { value: v, failed });
                            }
                        }
                    }
                    Err(e) => match classify(&e) {
                        Failure::Members(_) => failed.push(e),
                        Failure::Deadline => {
                            return Err(ReduceError::Deadline { answered, cause: e });
                        }
                        Failure::Call => return Err(ReduceError::Call(e)),
                    },
                }
            }
            Ok(Folded { value, failed })
        }
    }
}

impl<T, S> GroupResponsesExt<T> for S where
    S: Stream<Item = Result<MulticastItem<T>, RpcError>> + Unpin + Send + Sized
{
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;
    use slim_transport::Name;

    fn ok(member: &str, v: i32) -> Result<MulticastItem<i32>, RpcError> {
        Ok(MulticastItem {
            source: Name::new("org", "ns", member),
            message: v,
        })
    }

    fn bad(member: &str) -> Result<MulticastItem<i32>, RpcError> {
        Err(RpcError::internal("boom").with_origin(format!("org/ns/{member}")))
    }

    fn run<O>(f: impl Future<Output = O>) -> O {
        futures::executor::block_on(f)
    }

    #[test]
    fn first_response_skips_member_errors_and_names_them_when_none_answered() {
        let s = stream::iter(vec![bad("a"), ok("b", 2), ok("c", 3)]);
        assert_eq!(run(s.first_response()).unwrap().message, 2);
        let s = stream::iter(vec![bad("a"), bad("b")]);
        match run(s.first_response()) {
            Err(ReduceError::NoAnswer { failed }) => assert_eq!(failed.len(), 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn majority_counts_failed_members_as_voters_without_a_vote() {
        let s = stream::iter(vec![ok("a", 1), ok("b", 1), ok("c", 2)]);
        let m = run(s.majority(|v| *v)).unwrap();
        assert_eq!((m.key, m.votes.len(), m.voters), (1, 2, 3));
        let s = stream::iter(vec![ok("a", 1), bad("b"), ok("c", 2)]);
        match run(s.majority(|v| *v)) {
            Err(ReduceError::NoMajority {
                leading, voters, ..
            }) => assert_eq!((leading, voters), (1, 3)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quorum_counts_each_member_once_and_reports_a_shortfall() {
        let s = stream::iter(vec![ok("a", 1), ok("a", 2), ok("b", 3)]);
        let q = run(s.quorum(2)).unwrap();
        assert_eq!(q.iter().map(|i| i.message).collect::<Vec<_>>(), vec![1, 3]);
        let s = stream::iter(vec![ok("a", 1), bad("b")]);
        match run(s.quorum(2)) {
            Err(ReduceError::QuorumNotReached {
                wanted, answered, ..
            }) => assert_eq!((wanted, answered), (2, 1)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_deadline_fails_every_reducer_with_deadline() {
        let late = || {
            stream::iter(vec![
                ok("a", 1),
                Err(RpcError::deadline_exceeded("too late")),
            ])
        };
        assert!(matches!(
            run(late().quorum(2)),
            Err(ReduceError::Deadline { answered: 1, .. })
        ));
        assert!(matches!(
            run(late().majority(|v| *v)),
            Err(ReduceError::Deadline { .. })
        ));
        assert!(matches!(
            run(late().fold_responses(0, |a, i| ControlFlow::Continue(a + i.message))),
            Err(ReduceError::Deadline { answered: 1, .. })
        ));
    }

    #[test]
    fn fold_sums_answers_stops_on_break_and_returns_member_errors() {
        let s = stream::iter(vec![ok("a", 1), bad("b"), ok("c", 5)]);
        let f = run(s.fold_responses(0, |a, i| ControlFlow::Continue(a + i.message))).unwrap();
        assert_eq!((f.value, f.failed.len()), (6, 1));
        let s = stream::iter(vec![ok("a", 1), ok("b", 2), ok("c", 5)]);
        let f = run(s.fold_responses(0, |a, i| {
            let a = a + i.message;
            if a >= 3 {
                ControlFlow::Break(a)
            } else {
                ControlFlow::Continue(a)
            }
        }))
        .unwrap();
        assert_eq!(f.value, 3);
    }
}
