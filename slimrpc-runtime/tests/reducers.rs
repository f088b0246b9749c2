//! The reducers (first response, majority, quorum, fold) over real group
//! calls on the embedded SLIM transport: member errors, a member shut down
//! mid-call, slow members and deadlines.

mod common;

use common::{LIMIT, Msg, Net, SVC, bounded, group_net, who_and_slow};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use slim_transport::Name;
use slimrpc::{
    CallOptions, Channel, Context, GroupResponsesExt, MulticastStream, ReduceError, RpcError,
    Server,
};
use tokio::sync::Notify;

/// [`who_and_slow`], and `Vote`: `bad*` members fail, `odd*` members
/// answer `n + 1`, the others `n`.
fn voters(s: &mut Server, label: &'static str, gate: &Arc<Notify>) {
    who_and_slow(s, label, gate);
    s.register_unary_unary(SVC, "Vote", move |req: Msg, _ctx: Context| async move {
        if label.starts_with("bad") {
            return Err(RpcError::invalid_argument(format!("{label} refuses")));
        }
        // Members named `odd*` disagree with the others.
        let n = if label.starts_with("odd") {
            req.n + 1
        } else {
            req.n
        };
        Ok(Msg {
            text: label.to_string(),
            n,
        })
    });
}

async fn net(labels: &[&'static str]) -> Net {
    group_net(labels, voters).await
}

fn channel(n: &Net, labels: &[&str]) -> Channel {
    let members = labels.iter().map(|l| Name::new("org", "ns", *l)).collect();
    Channel::new(n.client.clone(), members).unwrap()
}

fn call(ch: &Channel, method: &str, timeout: Duration) -> MulticastStream<Msg> {
    ch.group_unary(
        SVC,
        method,
        Msg {
            text: String::new(),
            n: 10,
        },
        CallOptions::with_timeout(timeout),
    )
}

fn label(item: &slimrpc::MulticastItem<Msg>) -> String {
    item.source.strings()[2].clone()
}

/// Releases the gated handlers again and again until `f` is done.
async fn releasing<F: std::future::Future>(gate: &Notify, f: F) -> F::Output {
    let release = async {
        loop {
            gate.notify_waiters();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        out = bounded(f) => out,
        _ = release => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_response_returns_a_fast_members_answer_while_slow_members_are_cancelled() {
    let n = net(&["fast", "slow1", "slow2"]).await;
    let ch = channel(&n, &["fast", "slow1", "slow2"]);
    // Every member answers Who at once: the first one wins.
    let first = bounded(call(&ch, "Who", LIMIT).first_response())
        .await
        .unwrap();
    assert_eq!(first.message.text, label(&first));
    // Slow members only: first_response waits for them and, once it has
    // one, drops the call (cancelled on the other), leaving nothing pending.
    let slow = channel(&n, &["slow1", "slow2"]);
    let got = releasing(&n.gate, call(&slow, "Slow", LIMIT).first_response())
        .await
        .unwrap();
    assert!(label(&got).starts_with("slow"));
    assert_eq!(slow.pending_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_response_names_every_member_error_when_no_member_answers() {
    let n = net(&["bad1", "bad2"]).await;
    let ch = channel(&n, &["bad1", "bad2"]);
    match bounded(call(&ch, "Vote", LIMIT).first_response()).await {
        Err(ReduceError::NoAnswer { failed }) => {
            assert_eq!(failed.len(), 2);
            let text = ReduceError::NoAnswer { failed }.to_string();
            assert!(
                text.contains("bad1 refuses") && text.contains("bad2 refuses"),
                "{text}"
            );
        }
        other => panic!("expected NoAnswer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majority_wins_despite_a_dissenter_and_fails_without_one_naming_the_errors() {
    let n = net(&["a", "b", "odd", "bad"]).await;
    let ch = channel(&n, &["a", "b", "odd"]);
    let m = bounded(call(&ch, "Vote", LIMIT).majority(|r| r.n))
        .await
        .unwrap();
    assert_eq!((m.key, m.votes.len(), m.voters), (10, 2, 3));
    // a agrees with nobody: 1 of 3 votes, one member failed.
    let split = channel(&n, &["a", "odd", "bad"]);
    match bounded(call(&split, "Vote", LIMIT).majority(|r| r.n)).await {
        Err(ReduceError::NoMajority {
            leading,
            voters,
            failed,
        }) => {
            assert_eq!((leading, voters, failed.len()), (1, 3, 1));
        }
        other => panic!("expected NoMajority, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_returns_the_answers_that_formed_it_and_reports_a_member_shut_down_mid_call() {
    let mut n = net(&["a", "b", "c"]).await;
    let ch = channel(&n, &["a", "b", "c"]);
    let q = bounded(call(&ch, "Vote", LIMIT).quorum(2)).await.unwrap();
    assert_eq!(q.len(), 2);
    assert_ne!(label(&q[0]), label(&q[1]));
    // c is shut down while the call waits on the gate: quorum(3) cannot be
    // reached, and the error says how many answered and why c did not.
    let mut slow = call(&ch, "Slow", LIMIT);
    let registered = async {
        while ch.pending_calls() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        early = slow.next() => panic!("a gated call answered: {early:?}"),
        _ = bounded(registered) => {}
    }
    let c = n.servers[2].take().unwrap();
    bounded(c.shutdown()).await;
    match releasing(&n.gate, slow.quorum(3)).await {
        Err(ReduceError::QuorumNotReached {
            wanted,
            answered,
            failed,
        }) => {
            assert_eq!((wanted, answered), (3, 2));
            assert_eq!(failed.len(), 1, "{failed:?}");
            assert!(failed[0].to_string().contains("org/ns/c"), "{failed:?}");
        }
        other => panic!("expected QuorumNotReached, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reducer_reports_the_deadline_when_members_are_too_slow() {
    let n = net(&["a", "b"]).await;
    let ch = channel(&n, &["a", "b"]);
    // The session first, under the long limit: on a loaded machine its
    // set-up alone (invites, MLS) can take longer than the short deadline.
    assert!(
        bounded(call(&ch, "Vote", LIMIT).first_response())
            .await
            .is_ok()
    );
    let short = Duration::from_millis(500);
    assert!(matches!(
        bounded(call(&ch, "Slow", short).first_response()).await,
        Err(ReduceError::Deadline { answered: 0, .. })
    ));
    assert!(matches!(
        bounded(call(&ch, "Slow", short).quorum(1)).await,
        Err(ReduceError::Deadline { .. })
    ));
    assert!(matches!(
        bounded(call(&ch, "Slow", short).majority(|r| r.n)).await,
        Err(ReduceError::Deadline { .. })
    ));
    let folded = call(&ch, "Slow", short)
        .fold_responses(0, |acc, item| ControlFlow::Continue(acc + item.message.n));
    let r = bounded(folded).await;
    assert!(matches!(r, Err(ReduceError::Deadline { .. })), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fold_sums_every_answer_and_returns_member_errors_beside_the_value() {
    let n = net(&["a", "b", "bad"]).await;
    let ch = channel(&n, &["a", "b", "bad"]);
    let folded = bounded(
        call(&ch, "Vote", LIMIT)
            .fold_responses(0, |acc, item| ControlFlow::Continue(acc + item.message.n)),
    )
    .await
    .unwrap();
    assert_eq!(folded.value, 20);
    assert_eq!(folded.failed.len(), 1);
}
