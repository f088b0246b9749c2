//! Shared responses (context propagation) over the real embedded SLIM
//! transport: each member's handler reads the other members' responses to
//! the same call; members that do not take part are unaffected.

mod common;

use common::{LIMIT, Msg, Net, SVC, bounded, group_net};
use std::collections::BTreeSet;

use futures::{StreamExt, stream};
use slim_transport::Name;
use slimrpc::shared::{PeerItem, shared_responses};
use slimrpc::{CallOptions, Channel, Context, RpcError, Server};

/// `Gossip`: answers its own label at once, then, when the call shares
/// responses, reads its peers' responses until `req.n` peers answered and
/// answers `"<label> saw <peers>"` (`"<label> saw -"` without a peer stream).
fn gossiper(s: &mut Server, label: &'static str, shares: bool) {
    s.set_shared_responses(shares);
    s.register_unary_stream(SVC, "Gossip", move |req: Msg, ctx: Context| async move {
        let first = Msg {
            text: label.to_string(),
            n: 0,
        };
        let peers = ctx.peer_responses();
        let want = usize::try_from(req.n).unwrap_or(0);
        let saw = async move {
            let Some(mut peers) = peers else {
                return Ok(Msg {
                    text: format!("{label} saw -"),
                    n: 0,
                });
            };
            let mut seen = BTreeSet::new();
            while seen.len() < want {
                match peers.next().await {
                    Some(item @ PeerItem::Response { .. }) => {
                        let (_, m) = item.decode::<Msg>().expect("a response")?;
                        if m.n == 0 {
                            seen.insert(m.text);
                        }
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            let list: Vec<String> = seen.into_iter().collect();
            Ok::<_, RpcError>(Msg {
                text: format!("{label} saw {}", list.join(",")),
                n: 1,
            })
        };
        Ok(stream::once(async move { Ok(first) }).chain(stream::once(saw)))
    });
}

/// Members `(label, shares responses)`.
async fn net(members: &[(&'static str, bool)]) -> Net {
    let labels: Vec<&'static str> = members.iter().map(|(l, _)| *l).collect();
    group_net(&labels, |s, label, _| {
        let shares = members.iter().any(|(l, sh)| *l == label && *sh);
        gossiper(s, label, shares)
    })
    .await
}

/// Each member's second answer ("<label> saw ..."), by member label.
async fn gossip(ch: &Channel, peers: i64, options: CallOptions) -> Vec<String> {
    let s = ch.group_unary_stream::<_, Msg>(
        SVC,
        "Gossip",
        Msg {
            text: String::new(),
            n: peers,
        },
        options,
    );
    let mut saw = Vec::new();
    for item in bounded(s.collect::<Vec<_>>()).await {
        let item = item.expect("every member answers");
        if item.message.n != 0 || item.message.text.contains(" saw ") {
            saw.push(item.message.text);
        }
    }
    saw.sort();
    saw
}

async fn every_member_sees_every_peer(k: usize) {
    const LABELS: [&str; 8] = ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"];
    let labels = &LABELS[..k];
    let n = net(&labels.iter().map(|l| (*l, true)).collect::<Vec<_>>()).await;
    let members = labels.iter().map(|l| Name::new("org", "ns", *l)).collect();
    let ch = Channel::new(n.client.clone(), members).unwrap();
    let saw = gossip(
        &ch,
        (k - 1) as i64,
        shared_responses(CallOptions::with_timeout(LIMIT)),
    )
    .await;
    let want: Vec<String> = labels
        .iter()
        .map(|me| {
            let others: Vec<&str> = labels.iter().copied().filter(|l| l != me).collect();
            format!("{me} saw {}", others.join(","))
        })
        .collect();
    assert_eq!(saw, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_members_each_sees_the_others_response() {
    every_member_sees_every_peer(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_eight_members_each_sees_the_seven_others_responses() {
    every_member_sees_every_peer(8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_not_taking_part_answers_as_usual_and_the_others_still_share() {
    let n = net(&[("s1", true), ("s2", true), ("plain", false)]).await;
    let members = ["s1", "s2", "plain"]
        .iter()
        .map(|l| Name::new("org", "ns", *l))
        .collect();
    let ch = Channel::new(n.client.clone(), members).unwrap();
    let saw = gossip(&ch, 1, shared_responses(CallOptions::with_timeout(LIMIT))).await;
    assert_eq!(saw, vec!["plain saw -", "s1 saw s2", "s2 saw s1"]);
    // A call that does not ask for it is answered as usual by everyone.
    let saw = gossip(&ch, 1, CallOptions::with_timeout(LIMIT)).await;
    assert_eq!(saw, vec!["plain saw -", "s1 saw -", "s2 saw -"]);
}
