//! Live membership of a group channel over the real embedded SLIM transport
//! (one in-process `Service`: the real forwarder, session layer and MLS):
//! members added to and removed from the running session, calls accounted
//! against the members they were sent to.

mod common;

use common::{LIMIT, Msg, Net, SVC, bounded, group_net, who_and_slow};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use slim_transport::Name;
use slimrpc::{CallOptions, Channel, Code, MulticastStream, RpcError};

async fn net(labels: &[&'static str]) -> Net {
    group_net(labels, who_and_slow).await
}

fn name(label: &str) -> Name {
    Name::new("org", "ns", label)
}

fn names(labels: &[&str]) -> Vec<Name> {
    labels.iter().map(|l| name(l)).collect()
}

fn opts() -> CallOptions {
    CallOptions::with_timeout(LIMIT)
}

fn labels(members: &[Name]) -> BTreeSet<String> {
    members.iter().map(|m| m.strings()[2].clone()).collect()
}

/// What one group call yielded: members that answered, members reported
/// removed, and any other error.
#[derive(Debug, Default)]
struct Outcome {
    answered: BTreeSet<String>,
    removed: BTreeSet<String>,
    other: Vec<RpcError>,
}

impl Outcome {
    /// Every member the call was accounted against.
    fn accounted(&self) -> BTreeSet<String> {
        self.answered.union(&self.removed).cloned().collect()
    }
}

async fn outcome(s: MulticastStream<Msg>) -> Outcome {
    let mut o = Outcome::default();
    for r in bounded(s.collect::<Vec<_>>()).await {
        match r {
            Ok(item) => {
                assert_eq!(item.message.text, item.source.strings()[2]);
                assert!(o.answered.insert(item.message.text), "answered twice");
            }
            Err(RpcError::MulticastRpc {
                origin,
                code: Code::Unavailable,
                message,
                ..
            }) if message.contains("member removed") => {
                let label = origin.rsplit('/').next().unwrap_or_default().to_string();
                assert!(o.removed.insert(label), "removed twice");
            }
            Err(e) => o.other.push(e),
        }
    }
    o
}

fn who(ch: &Channel, n: i64) -> MulticastStream<Msg> {
    ch.group_unary(
        SVC,
        "Who",
        Msg {
            text: String::new(),
            n,
        },
        opts(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_to_a_live_group_channel_answers_on_the_same_session() {
    let n = net(&["a", "b", "c"]).await;
    let ch = Channel::new(n.client.clone(), names(&["a", "b"])).unwrap();
    let first = outcome(who(&ch, 1)).await;
    assert_eq!(first.answered, labels(&names(&["a", "b"])));
    let session = ch.group_name();

    bounded(ch.add_member(name("c"))).await.unwrap();
    assert_eq!(labels(&ch.members()), labels(&names(&["a", "b", "c"])));
    let second = outcome(who(&ch, 2)).await;
    assert!(second.other.is_empty(), "{:?}", second.other);
    assert_eq!(second.answered, labels(&names(&["a", "b", "c"])));
    assert_eq!(ch.group_name(), session, "the session was re-created");

    let again = bounded(ch.add_member(name("c"))).await.unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_is_no_longer_called_and_is_added_back_into_the_same_session() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let n = net(&["a", "b", "c"]).await;
    let ch = Channel::new(n.client.clone(), names(&["a", "b", "c"])).unwrap();
    assert_eq!(outcome(who(&ch, 1)).await.answered.len(), 3);
    let session = ch.group_name();

    bounded(ch.remove_member(&name("a"))).await.unwrap();
    assert_eq!(labels(&ch.members()), labels(&names(&["b", "c"])));
    let after = outcome(who(&ch, 2)).await;
    assert!(after.other.is_empty(), "{:?}", after.other);
    assert_eq!(after.answered, labels(&names(&["b", "c"])));
    assert_eq!(ch.group_name(), session, "the session was re-created");

    let gone = bounded(ch.remove_member(&name("a"))).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    bounded(ch.remove_member(&name("b"))).await.unwrap();
    let last = bounded(ch.remove_member(&name("c"))).await.unwrap_err();
    assert_eq!(last.code(), Code::InvalidArgument);
    // A member removed from this session is added back into it at once.
    bounded(ch.add_member(name("a"))).await.unwrap();
    assert_eq!(labels(&ch.members()), labels(&names(&["a", "c"])));
    let back = outcome(who(&ch, 3)).await;
    assert!(back.other.is_empty(), "{:?}", back.other);
    assert_eq!(back.answered, labels(&names(&["a", "c"])));
    assert_eq!(ch.group_name(), session, "the session was re-created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_mid_call_ends_that_calls_wait_with_a_member_removed_item() {
    let n = net(&["a", "b", "c"]).await;
    let ch = Channel::new(n.client.clone(), names(&["a", "b", "c"])).unwrap();
    // Warm the session up so the slow call is sent at once.
    assert_eq!(outcome(who(&ch, 0)).await.answered.len(), 3);
    let mut slow = ch.group_unary::<_, Msg>(
        SVC,
        "Slow",
        Msg {
            text: String::new(),
            n: 1,
        },
        opts(),
    );
    // Drive the call until it is registered (its member snapshot taken).
    let registered = async {
        while ch.pending_calls() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        early = slow.next() => panic!("a gated call answered: {early:?}"),
        _ = bounded(registered) => {}
    }
    bounded(ch.remove_member(&name("c"))).await.unwrap();
    // The removal is reported before anything is released.
    let first = bounded(slow.next()).await.expect("an item");
    match first {
        Err(RpcError::MulticastRpc {
            origin,
            code: Code::Unavailable,
            message,
            ..
        }) => {
            assert_eq!(origin, "org/ns/c");
            assert!(message.contains("member removed"), "{message}");
        }
        other => panic!("expected c's member-removed item, got {other:?}"),
    }
    // Release the handlers (again and again: one may not wait yet).
    let release = async {
        loop {
            n.gate.notify_waiters();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let rest = tokio::select! {
        rest = outcome(slow) => rest,
        _ = release => unreachable!(),
    };
    assert!(rest.other.is_empty(), "{:?}", rest.other);
    assert_eq!(rest.answered, labels(&names(&["a", "b"])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_on_a_point_to_point_channel_fail_with_failed_precondition() {
    let n = net(&["a"]).await;
    let ch = Channel::new(n.client.clone(), names(&["a"])).unwrap();
    let e = bounded(ch.add_member(name("b"))).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = bounded(ch.remove_member(&name("a"))).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

/// 200 concurrent group calls while members come and go (a and b stay;
/// c leaves, d to g join and leave): every call ends, and each call is accounted
/// against exactly the member set of one moment of its lifetime (its
/// snapshot at send time): each member of it either answered or was
/// reported removed, nobody else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_group_calls_under_membership_churn_each_match_their_membership_at_send_time() {
    const CALLS: usize = 200;
    let n = net(&["a", "b", "c", "d", "e", "f", "g"]).await;
    let ch = Channel::new(n.client.clone(), names(&["a", "b", "c"])).unwrap();
    assert_eq!(outcome(who(&ch, -1)).await.answered.len(), 3);
    let session = ch.group_name();

    // The schedule of changes, and the member set after each.
    let ops: Vec<(bool, &str)> = vec![
        (false, "c"),
        (true, "d"),
        (true, "e"),
        (false, "d"),
        (true, "f"),
        (false, "e"),
        (true, "g"),
        (false, "f"),
    ];
    let mut history = vec![labels(&ch.members())];
    for (add, who) in &ops {
        let mut next = history.last().cloned().unwrap_or_default();
        if *add {
            next.insert(who.to_string());
        } else {
            next.remove(*who);
        }
        history.push(next);
    }
    let done_ops = Arc::new(AtomicUsize::new(0));
    let calls_done = Arc::new(AtomicUsize::new(0));
    // Calls ended since the last change: (change count, calls then).
    let mark = Arc::new(std::sync::Mutex::new((0usize, 0usize)));
    let calls_since = {
        let mark = mark.clone();
        move |ops: &AtomicUsize, calls: &AtomicUsize| {
            let (ops, calls) = (ops.load(Ordering::SeqCst), calls.load(Ordering::SeqCst));
            let mut m = mark.lock().unwrap();
            if m.0 != ops {
                *m = (ops, calls);
            }
            calls - m.1
        }
    };

    let churn = {
        let ch = ch.clone();
        let done_ops = done_ops.clone();
        let calls_done = calls_done.clone();
        tokio::spawn(async move {
            for (add, who) in ops {
                if add {
                    ch.add_member(name(who)).await.unwrap();
                } else {
                    ch.remove_member(&name(who)).await.unwrap();
                }
                done_ops.fetch_add(1, Ordering::SeqCst);
                // Let calls run on this member set before the next change.
                while calls_since(&done_ops, &calls_done) < 200 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // CALLS callers, each calling again and again until the churn ended.
    let calls = futures::stream::iter(0..CALLS)
        .map(|i| {
            let ch = ch.clone();
            let done_ops = done_ops.clone();
            let calls_done = calls_done.clone();
            let total = history.len() - 1;
            async move {
                let mut seen = Vec::new();
                loop {
                    let lo = done_ops.load(Ordering::SeqCst);
                    let o = outcome(who(&ch, i as i64)).await;
                    let hi = done_ops.load(Ordering::SeqCst);
                    calls_done.fetch_add(1, Ordering::SeqCst);
                    seen.push((lo, hi, o));
                    if lo == total {
                        return seen;
                    }
                }
            }
        })
        .buffer_unordered(CALLS)
        .collect::<Vec<_>>();
    let (results, churned) = bounded(async { tokio::join!(calls, churn) }).await;
    churned.unwrap();
    assert_eq!(results.len(), CALLS);
    let results: Vec<_> = results.into_iter().flatten().collect();
    assert!(results.len() >= CALLS * 2);
    for (lo, hi, o) in &results {
        assert!(o.other.is_empty(), "unexpected errors: {:?}", o.other);
        // The set may have changed once more while the call was in flight
        // (the change under way when it ended).
        let window = &history[*lo..=(*hi + 1).min(history.len() - 1)];
        assert!(
            window.contains(&o.accounted()),
            "call accounted against {:?}, not a member set of its lifetime {window:?}",
            o.accounted()
        );
        assert!(o.answered.contains("a") && o.answered.contains("b"));
    }
    assert_eq!(labels(&ch.members()), history[history.len() - 1]);
    let last = outcome(who(&ch, 1000)).await;
    assert_eq!(last.answered, history[history.len() - 1]);
    assert_eq!(ch.group_name(), session, "the session was re-created");
    assert_eq!(ch.pending_calls(), 0);
}
