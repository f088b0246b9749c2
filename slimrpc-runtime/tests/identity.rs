//! Verified identity and zero-length answers, over the real transport in
//! one process, on both SLIM wire generations:
//! * a handler sees the caller's verified identity (`Context::peer_subject`);
//! * a channel pinned to its members' identities refuses an answer from
//!   another identity, as that member's `Unauthenticated` error;
//! * a zero-length response (an all-defaults message, as
//!   `google.protobuf.Empty`) is a response, never the end of the stream,
//!   in unary and streaming calls, P2P and group.

mod common;

use common::{Wire, app_with_subject, bounded};
use std::sync::Arc;

use futures::{StreamExt, stream};
use slim_transport::Name;
use slim_transport::app::App;
use slim_transport::service::Service;
use slimrpc::{
    CallOptions, Channel, ChannelOptions, Code, Context, RpcError, Server, ServerHandle,
};

const SVC: &str = "example_service.Test";

#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(int64, tag = "2")]
    n: i64,
}

async fn server(app: &Arc<App>, label: &'static str) -> ServerHandle {
    let mut s = Server::new(app.clone(), Name::new("org", "ns", label));
    s.register_unary_unary(SVC, "WhoCalls", |_: Msg, ctx: Context| async move {
        Ok(Msg {
            text: ctx.peer_subject().unwrap_or("<none>").to_string(),
            n: 0,
        })
    });
    // Zero-length answers: every response encodes to no bytes.
    s.register_unary_unary(
        SVC,
        "Empty",
        |_: Msg, _ctx| async move { Ok(Msg::default()) },
    );
    s.register_unary_stream(SVC, "Empties", |req: Msg, _ctx| async move {
        Ok(stream::iter((0..req.n).map(|_| Ok(Msg::default()))))
    });
    bounded(s.start()).await.unwrap()
}

struct Net {
    _service: Service,
    client: Arc<App>,
    client_subject: String,
    subjects: Vec<String>,
    _servers: Vec<ServerHandle>,
}

async fn net(wire: Wire, labels: &[&'static str]) -> Net {
    let service = Service::new();
    let mut servers = Vec::new();
    let mut subjects = Vec::new();
    for label in labels {
        let (a, subject) = app_with_subject(&service, &format!("org/ns/{label}"), wire).await;
        servers.push(server(&a, label).await);
        subjects.push(subject);
    }
    let (client, client_subject) = app_with_subject(&service, "org/ns/client", wire).await;
    Net {
        _service: service,
        client,
        client_subject,
        subjects,
        _servers: servers,
    }
}

fn member(label: &str) -> Name {
    Name::new("org", "ns", label)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_sees_the_callers_verified_identity_on_both_wires() {
    for wire in [Wire::V1, Wire::V3] {
        let n = net(wire, &["s1"]).await;
        let ch = Channel::new(n.client.clone(), vec![member("s1")]).unwrap();
        let answer: Msg =
            bounded(ch.unary(SVC, "WhoCalls", Msg::default(), CallOptions::default()))
                .await
                .unwrap();
        assert_eq!(answer.text, n.client_subject, "{wire:?}");
        assert!(answer.text.starts_with("org/ns/client_"), "{wire:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_pinned_to_its_members_identity_accepts_it_and_refuses_another() {
    for wire in [Wire::V1, Wire::V3] {
        let n = net(wire, &["s1"]).await;
        let right = Channel::pinned(
            n.client.clone(),
            vec![(member("s1"), n.subjects[0].clone())],
            ChannelOptions::default(),
        )
        .unwrap();
        let ok: Msg = bounded(right.unary(SVC, "WhoCalls", Msg::default(), CallOptions::default()))
            .await
            .unwrap();
        assert_eq!(ok.text, n.client_subject);
        let wrong = Channel::pinned(
            n.client.clone(),
            vec![(member("s1"), "org/ns/s1_impostor".to_string())],
            ChannelOptions::default(),
        )
        .unwrap();
        let err = bounded(wrong.unary::<Msg, Msg>(
            SVC,
            "WhoCalls",
            Msg::default(),
            CallOptions::default(),
        ))
        .await
        .expect_err("an answer from another identity must be refused");
        assert_eq!(err.code(), Code::Unauthenticated, "{wire:?}: {err:?}");
        assert!(err.message().contains("pinned"), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_group_call_reports_the_member_with_the_wrong_identity_and_keeps_the_other() {
    for wire in [Wire::V1, Wire::V3] {
        let n = net(wire, &["s1", "s2"]).await;
        let ch = Channel::pinned(
            n.client.clone(),
            vec![
                (member("s1"), n.subjects[0].clone()),
                (member("s2"), "org/ns/s2_impostor".to_string()),
            ],
            ChannelOptions::default(),
        )
        .unwrap();
        let items: Vec<_> = bounded(
            ch.group_unary::<Msg, Msg>(SVC, "WhoCalls", Msg::default(), CallOptions::default())
                .collect::<Vec<_>>(),
        )
        .await;
        let mut answered = Vec::new();
        let mut refused = Vec::new();
        for item in items {
            match item {
                Ok(i) => answered.push(i.source.strings()[2].clone()),
                Err(RpcError::MulticastRpc { origin, code, .. }) => {
                    assert_eq!(code, Code::Unauthenticated, "{wire:?}");
                    let who = origin.split('/').nth(2).unwrap_or_default().to_string();
                    refused.push(who);
                }
                Err(e) => panic!("{wire:?}: unexpected {e:?}"),
            }
        }
        assert_eq!(answered, vec!["s1".to_string()], "{wire:?}");
        assert_eq!(refused, vec!["s2".to_string()], "{wire:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_length_responses_are_responses_in_unary_and_streaming_calls_p2p_and_group() {
    for wire in [Wire::V1, Wire::V3] {
        let n = net(wire, &["s1", "s2"]).await;
        let p2p = Channel::new(n.client.clone(), vec![member("s1")]).unwrap();
        let one: Msg = bounded(p2p.unary(SVC, "Empty", Msg::default(), CallOptions::default()))
            .await
            .unwrap();
        assert_eq!(one, Msg::default());
        let many: Vec<Result<Msg, RpcError>> = bounded(
            p2p.unary_stream::<Msg, Msg>(
                SVC,
                "Empties",
                Msg {
                    text: String::new(),
                    n: 3,
                },
                CallOptions::default(),
            )
            .collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(many.len(), 3, "{wire:?}: {many:?}");
        assert!(many.iter().all(|r| r.as_ref() == Ok(&Msg::default())));

        let group = Channel::new(n.client.clone(), vec![member("s1"), member("s2")]).unwrap();
        let items: Vec<_> = bounded(
            group
                .group_unary::<Msg, Msg>(SVC, "Empty", Msg::default(), CallOptions::default())
                .collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(items.len(), 2, "{wire:?}: {items:?}");
        assert!(items.iter().all(|i| i.is_ok()), "{items:?}");
        let items: Vec<_> = bounded(
            group
                .group_unary_stream::<Msg, Msg>(
                    SVC,
                    "Empties",
                    Msg {
                        text: String::new(),
                        n: 2,
                    },
                    CallOptions::default(),
                )
                .collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(items.len(), 4, "{wire:?}: {items:?}");
        assert!(items.iter().all(|i| i.is_ok()), "{items:?}");
    }
}
