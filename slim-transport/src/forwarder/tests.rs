//! Deterministic tests of the forwarder core: acks, forwarding flags,
//! errors for local apps, remote acks, replay and upstream announcements.

use super::*;
use crate::name::Name;
use crate::wire::message::MessageType;

fn name(s: &str) -> Name {
    s.parse().expect("test name")
}

fn header(src: &Name, dst: &Name) -> wire::SlimHeader {
    wire::SlimHeader {
        source: Some(src.to_wire()),
        destination: Some(dst.to_wire()),
        fanout: 1,
        identity: "tok".into(),
        ..Default::default()
    }
}

fn subscribe(dst: &Name, id: u64, edit: impl FnOnce(&mut wire::SlimHeader)) -> wire::Message {
    let mut h = header(&name("a/b/src/1"), dst);
    edit(&mut h);
    wire::Message {
        metadata: Default::default(),
        message_type: Some(MessageType::Subscribe(wire::Subscribe {
            header: Some(h),
            subscription_id: id,
        })),
    }
}

fn unsubscribe(dst: &Name, id: u64) -> wire::Message {
    wire::Message {
        metadata: Default::default(),
        message_type: Some(MessageType::Unsubscribe(wire::Unsubscribe {
            header: Some(header(&name("a/b/src/1"), dst)),
            subscription_id: id,
        })),
    }
}

fn publish(dst: &Name, fanout: u32, edit: impl FnOnce(&mut wire::SlimHeader)) -> wire::Message {
    let mut h = header(&name("a/b/src/1"), dst);
    h.fanout = fanout;
    edit(&mut h);
    wire::Message {
        metadata: Default::default(),
        message_type: Some(MessageType::Publish(wire::Publish {
            header: Some(h),
            session: Some(wire::SessionHeader {
                session_type: 1,
                session_message_type: 1,
                session_id: 7,
                message_id: 9,
            }),
            msg: None,
        })),
    }
}

fn pub_header(m: &wire::Message) -> &wire::SlimHeader {
    match &m.message_type {
        Some(MessageType::Publish(p)) => p.header.as_ref().expect("header"),
        Some(MessageType::Subscribe(s)) => s.header.as_ref().expect("header"),
        Some(MessageType::Unsubscribe(s)) => s.header.as_ref().expect("header"),
        _ => panic!("no header"),
    }
}

fn sends(actions: &[Action]) -> Vec<ConnId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect()
}

fn ack_of(a: &Action) -> (ConnId, wire::SubscriptionAck) {
    match a {
        Action::Send {
            conn,
            msg:
                wire::Message {
                    message_type: Some(MessageType::SubscriptionAck(ack)),
                    ..
                },
        } => (*conn, ack.clone()),
        other => panic!("not an ack: {other:?}"),
    }
}

/// A forwarder whose link to a 1.3.0 peer is negotiated.
fn negotiated(f: &mut Forwarder, kind: ConnKind) -> ConnId {
    let c = f.add_connection(kind);
    let id = uuid::Uuid::new_v4().to_string();
    match kind {
        ConnKind::Outgoing => {
            f.link_up(c, id.clone());
            f.handle(c, link::link_message(id, true));
        }
        _ => {
            f.handle(c, link::link_message(id, false));
        }
    }
    c
}

#[test]
fn subscribe_with_id_is_acked_on_the_same_connection_and_without_id_is_not() {
    let mut f = Forwarder::new();
    let app = f.add_connection(ConnKind::Local);
    let out = f.handle(app, subscribe(&name("a/b/c/5"), 42, |_| {}));
    assert_eq!(out.len(), 1);
    let (to, ack) = ack_of(&out[0]);
    assert_eq!((to, ack.subscription_id, ack.success), (app, 42, true));
    assert!(
        f.handle(app, subscribe(&name("a/b/d/5"), 0, |_| {}))
            .is_empty()
    );
    assert_eq!(f.subscribers(name("a/b/d/5").components()), vec![app]);
}

#[test]
fn unsubscribe_with_a_different_id_is_nacked_with_subscription_id_not_found() {
    let mut f = Forwarder::new();
    let app = f.add_connection(ConnKind::Incoming);
    f.handle(app, subscribe(&name("a/b/c/5"), 42, |_| {}));
    f.handle(app, subscribe(&name("a/b/c/5"), 42, |_| {}));
    let out = f.handle(app, unsubscribe(&name("a/b/c/5"), 43));
    let (_, ack) = ack_of(&out[0]);
    assert!(!ack.success);
    assert_eq!(ack.error, "subscription id not found: 43");
    // The idempotent re-subscribe left one reference: one unsubscribe clears it.
    let out = f.handle(app, unsubscribe(&name("a/b/c/5"), 42));
    assert!(ack_of(&out[0]).1.success);
    assert!(f.subscribers(name("a/b/c/5").components()).is_empty());
}

#[test]
fn publish_is_stamped_with_incoming_conn_and_flags_are_cleared() {
    let mut f = Forwarder::new();
    let a = f.add_connection(ConnKind::Local);
    let b = f.add_connection(ConnKind::Local);
    f.handle(b, subscribe(&name("a/b/c/5"), 0, |_| {}));
    let out = f.handle(
        a,
        publish(&name("a/b/c/5"), 1, |h| {
            h.incoming_conn = Some(999);
            h.recv_from = Some(3);
        }),
    );
    match &out[..] {
        [Action::Send { conn, msg }] => {
            assert_eq!(*conn, b);
            let h = pub_header(msg);
            assert_eq!(h.incoming_conn, Some(a));
            assert_eq!((h.recv_from, h.forward_to), (None, None));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn publish_with_forward_to_skips_the_table_and_unknown_target_errors_locally() {
    let mut f = Forwarder::new();
    let a = f.add_connection(ConnKind::Local);
    let b = f.add_connection(ConnKind::Incoming);
    let out = f.handle(a, publish(&name("x/y/z/1"), 1, |h| h.forward_to = Some(b)));
    assert_eq!(sends(&out), vec![b]);
    assert_eq!(
        pub_header(match &out[0] {
            Action::Send { msg, .. } => msg,
            _ => unreachable!(),
        })
        .forward_to,
        None
    );
    let out = f.handle(a, publish(&name("x/y/z/1"), 1, |h| h.forward_to = Some(77)));
    match &out[..] {
        [Action::Error { conn, error }] => {
            assert_eq!(*conn, a);
            assert_eq!(error.kind, ForwardErrorKind::UnknownConnection(77));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn unmatched_publish_errors_to_a_local_app_with_session_context_and_is_silent_for_remote() {
    let mut f = Forwarder::new();
    let a = f.add_connection(ConnKind::Local);
    let r = f.add_connection(ConnKind::Incoming);
    let out = f.handle(a, publish(&name("x/y/z/1"), 1, |_| {}));
    match &out[..] {
        [Action::Error { conn, error }] => {
            assert_eq!(*conn, a);
            assert!(matches!(error.kind, ForwardErrorKind::NoMatch(_)));
            let ctx = error.session_context.expect("context");
            assert_eq!(
                (ctx.message_id, ctx.session_id, ctx.session_message_type),
                (9, 7, 1)
            );
            let json: serde_json::Value = serde_json::from_str(&error.to_slim_json()).unwrap();
            assert_eq!(json["session_context"]["message_id"], 9);
            assert_eq!(json["error"], "no matching found for x/y/z/1");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(f.handle(r, publish(&name("x/y/z/1"), 1, |_| {})).is_empty());
}

#[test]
fn invalid_messages_are_dropped_and_reported_only_to_local_apps() {
    let mut f = Forwarder::new();
    let a = f.add_connection(ConnKind::Local);
    let r = f.add_connection(ConnKind::Incoming);
    let mut broken = publish(&name("x/y/z/1"), 1, |h| {
        if let Some(d) = h.destination.as_mut() {
            d.str_name = None;
        }
    });
    let out = f.handle(a, broken.clone());
    assert!(matches!(&out[..], [Action::Error { error, .. }]
        if matches!(&error.kind, ForwardErrorKind::Invalid(t) if t.contains("string part"))));
    assert!(f.handle(r, broken.clone()).is_empty());
    if let Some(MessageType::Publish(p)) = &mut broken.message_type {
        p.header = None;
    }
    assert!(f.handle(r, broken).is_empty());
    let empty = wire::Message::default();
    assert!(matches!(&f.handle(a, empty)[..], [Action::Error { .. }]));
}

#[test]
fn fanout_other_than_one_reaches_every_match_but_never_the_incoming_connection() {
    let mut f = Forwarder::new();
    let a = f.add_connection(ConnKind::Local);
    let b = f.add_connection(ConnKind::Local);
    let c = f.add_connection(ConnKind::Incoming);
    for x in [a, b, c] {
        f.handle(x, subscribe(&name("g/r/chan"), 0, |_| {}));
    }
    assert_eq!(
        sends(&f.handle(a, publish(&name("g/r/chan"), 256, |_| {}))),
        vec![b, c]
    );
    assert_eq!(
        sends(&f.handle(c, publish(&name("g/r/chan"), 0, |_| {}))),
        vec![a, b]
    );
}

#[test]
fn anycast_uses_the_injected_pick() {
    let mut f = Forwarder::with_pick(|n: usize| n - 1);
    let src = f.add_connection(ConnKind::Incoming);
    let s1 = f.add_connection(ConnKind::Incoming);
    let s2 = f.add_connection(ConnKind::Incoming);
    f.handle(s1, subscribe(&name("o/n/server/1"), 0, |_| {}));
    f.handle(s2, subscribe(&name("o/n/server/2"), 0, |_| {}));
    assert_eq!(
        sends(&f.handle(src, publish(&name("o/n/server"), 1, |_| {}))),
        vec![s2]
    );
}

#[test]
fn recv_from_installs_a_route_on_another_connection_and_local_targets_are_ignored() {
    let mut f = Forwarder::new();
    let app = f.add_connection(ConnKind::Local);
    let other_app = f.add_connection(ConnKind::Local);
    let link = f.add_connection(ConnKind::Outgoing);
    let out = f.handle(
        app,
        subscribe(&name("p/e/er/3"), 5, |h| h.recv_from = Some(link)),
    );
    assert!(ack_of(&out[0]).1.success);
    assert_eq!(f.subscribers(name("p/e/er/3").components()), vec![link]);
    let out = f.handle(
        app,
        subscribe(&name("p/e/er/4"), 6, |h| h.recv_from = Some(other_app)),
    );
    assert!(ack_of(&out[0]).1.success);
    assert!(f.subscribers(name("p/e/er/4").components()).is_empty());
}

#[test]
fn forwarded_subscription_to_an_acking_peer_waits_for_the_remote_ack() {
    let mut f = Forwarder::new();
    let app = f.add_connection(ConnKind::Local);
    let link = negotiated(&mut f, ConnKind::Outgoing);
    assert_eq!(f.peer_version(link).as_deref(), Some("1.3.0"));
    let out = f.handle(
        app,
        subscribe(&name("a/b/me/1"), 9, |h| h.forward_to = Some(link)),
    );
    assert_eq!(f.subscribers(name("a/b/me/1").components()), vec![app]);
    match &out[..] {
        [
            Action::Send { conn, msg },
            Action::AwaitRemoteAck {
                link: l,
                subscription_id: 9,
                reply_to,
                ..
            },
        ] => {
            assert_eq!((*conn, *l, *reply_to), (link, link, app));
            let h = pub_header(msg);
            assert_eq!((h.forward_to, h.recv_from), (None, None));
            assert_eq!(h.identity, "tok");
        }
        other => panic!("unexpected {other:?}"),
    }
    let ack = ack_message(9, Ok(()));
    assert!(matches!(&f.handle(link, ack)[..], [Action::RemoteAck { link: l, .. }] if *l == link));
}

#[test]
fn forwarded_subscription_to_an_unnegotiated_peer_is_acked_at_once() {
    let mut f = Forwarder::new();
    let app = f.add_connection(ConnKind::Local);
    let link = f.add_connection(ConnKind::Outgoing);
    let out = f.handle(
        app,
        subscribe(&name("a/b/me/1"), 9, |h| h.forward_to = Some(link)),
    );
    assert_eq!(sends(&out), vec![link, app]);
    assert!(ack_of(&out[1]).1.success);
}

#[test]
fn subscriptions_are_never_forwarded_to_local_connections() {
    let mut f = Forwarder::new();
    let app = f.add_connection(ConnKind::Local);
    let other = f.add_connection(ConnKind::Local);
    let out = f.handle(
        app,
        subscribe(&name("a/b/me/1"), 9, |h| h.forward_to = Some(other)),
    );
    assert_eq!(sends(&out), vec![app]);
}

#[test]
fn link_reconnect_replays_forwarded_subscriptions_without_id() {
    let mut f = Forwarder::new();
    let app = f.add_connection(ConnKind::Local);
    let link = negotiated(&mut f, ConnKind::Outgoing);
    f.handle(
        app,
        subscribe(&name("a/b/me/1"), 9, |h| h.forward_to = Some(link)),
    );
    f.handle(
        app,
        subscribe(&name("a/b/me2/1"), 10, |h| h.forward_to = Some(link)),
    );
    f.handle(app, unsubscribe(&name("a/b/me2/1"), 10));
    let replay = f.link_up(link, uuid::Uuid::new_v4().to_string());
    assert!(matches!(replay[0].message_type, Some(MessageType::Link(_))));
    // Unsubscribe without forward_to does not withdraw the remote record.
    assert_eq!(replay.len(), 3);
    for m in &replay[1..] {
        match &m.message_type {
            Some(MessageType::Subscribe(s)) => {
                assert_eq!(s.subscription_id, 0);
                let h = s.header.as_ref().unwrap();
                assert_eq!(h.identity, "tok");
                assert_eq!(h.source, Some(name("a/b/src/1").to_wire()));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn removing_a_connection_removes_its_routes() {
    let mut f = Forwarder::new();
    let a = f.add_connection(ConnKind::Local);
    let r = f.add_connection(ConnKind::Incoming);
    f.handle(r, subscribe(&name("a/b/c/1"), 1, |_| {}));
    assert_eq!(
        sends(&f.handle(a, publish(&name("a/b/c/1"), 1, |_| {}))),
        vec![r]
    );
    f.remove_connection(r);
    assert!(matches!(
        &f.handle(a, publish(&name("a/b/c/1"), 1, |_| {}))[..],
        [Action::Error { .. }]
    ));
    assert!(f.handle(r, publish(&name("a/b/c/1"), 1, |_| {})).is_empty());
}

#[test]
fn upstream_link_learns_downstream_names_once_and_carries_unmatched_traffic() {
    let mut f = Forwarder::new();
    let up = f.add_connection(ConnKind::Outgoing);
    assert!(f.set_upstream(up).is_empty());
    let a = f.add_connection(ConnKind::Incoming);
    let b = f.add_connection(ConnKind::Incoming);
    let out = f.handle(a, subscribe(&name("a/b/chan"), 3, |_| {}));
    assert_eq!(sends(&out), vec![up, a]);
    // A second holder of the same name announces nothing more.
    assert_eq!(
        sends(&f.handle(b, subscribe(&name("a/b/chan"), 0, |_| {}))),
        Vec::<ConnId>::new()
    );
    // Unmatched unicast goes up; multicast goes to matches and up.
    assert_eq!(
        sends(&f.handle(a, publish(&name("x/y/z"), 1, |_| {}))),
        vec![up]
    );
    assert_eq!(
        sends(&f.handle(a, publish(&name("a/b/chan"), 256, |_| {}))),
        vec![b, up]
    );
    // Nothing goes back up the link it came from.
    assert_eq!(
        sends(&f.handle(up, publish(&name("a/b/chan"), 256, |_| {}))),
        vec![a, b]
    );
    assert!(f.handle(up, publish(&name("x/y/z"), 1, |_| {})).is_empty());
    // Withdrawn when the last downstream holder goes.
    f.remove_connection(a);
    let out = f.remove_connection(b);
    match &out[..] {
        [Action::Send { conn, msg }] => {
            assert_eq!(*conn, up);
            assert!(matches!(
                msg.message_type,
                Some(MessageType::Unsubscribe(_))
            ));
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A group channel (un)subscription as an app sends it for a link: route
/// the channel to `link` and forward the subscription on it, id 0.
fn channel_on_link(src: &str, channel: &Name, link: ConnId, subscribe: bool) -> wire::Message {
    let mut h = header(&name(src), channel);
    h.recv_from = Some(link);
    h.forward_to = Some(link);
    let message_type = if subscribe {
        MessageType::Subscribe(wire::Subscribe {
            header: Some(h),
            subscription_id: 0,
        })
    } else {
        MessageType::Unsubscribe(wire::Unsubscribe {
            header: Some(h),
            subscription_id: 0,
        })
    };
    wire::Message {
        metadata: Default::default(),
        message_type: Some(message_type),
    }
}

fn is_unsubscribe(a: &Action, on: ConnId) -> bool {
    matches!(a, Action::Send { conn, msg } if *conn == on
        && matches!(msg.message_type, Some(MessageType::Unsubscribe(_))))
}

#[test]
fn two_local_apps_holding_a_channel_on_one_link_keep_it_until_the_last_unsubscribes() {
    let mut f = Forwarder::new();
    let a = f.add_connection(ConnKind::Local);
    let b = f.add_connection(ConnKind::Local);
    let link = negotiated(&mut f, ConnKind::Outgoing);
    let chan = name("org/ns/chan");
    f.handle(a, subscribe(&chan, 0, |_| {}));
    f.handle(b, subscribe(&chan, 0, |_| {}));
    // Every holder's Subscribe is forwarded (the peer keeps it once).
    for (app, src) in [(a, "org/ns/a/1"), (b, "org/ns/b/2")] {
        let out = f.handle(app, channel_on_link(src, &chan, link, true));
        assert_eq!(sends(&out), vec![link]);
    }
    assert_eq!(f.subscribers(chan.components()), vec![a, b, link]);

    // A's withdrawal: nothing forwarded, the route stays for B.
    let out = f.handle(a, channel_on_link("org/ns/a/1", &chan, link, false));
    assert!(out.is_empty(), "{out:?}");
    assert!(f.subscribers(chan.components()).contains(&link));
    assert_eq!(
        sends(&f.handle(b, publish(&chan, 256, |_| {}))),
        vec![a, link]
    );
    // After a reconnect only B's subscription is replayed.
    let replay = f.link_up(link, uuid::Uuid::new_v4().to_string());
    assert_eq!(replay.len(), 2);
    assert_eq!(
        pub_header(&replay[1]).source,
        Some(name("org/ns/b/2").to_wire())
    );

    // B's withdrawal is the last: the route goes and the peer is told.
    let out = f.handle(b, channel_on_link("org/ns/b/2", &chan, link, false));
    assert_eq!(out.len(), 1);
    assert!(is_unsubscribe(&out[0], link), "{out:?}");
    let h = pub_header(match &out[0] {
        Action::Send { msg, .. } => msg,
        _ => unreachable!(),
    });
    assert_eq!((h.recv_from, h.forward_to), (None, None));
    assert!(!f.subscribers(chan.components()).contains(&link));
    assert_eq!(f.link_up(link, uuid::Uuid::new_v4().to_string()).len(), 1);
}

#[test]
fn a_local_app_that_goes_away_releases_its_share_of_a_channel_on_a_link() {
    let mut f = Forwarder::new();
    let a = f.add_connection(ConnKind::Local);
    let b = f.add_connection(ConnKind::Local);
    let link = negotiated(&mut f, ConnKind::Outgoing);
    let chan = name("org/ns/chan");
    f.handle(a, channel_on_link("org/ns/a/1", &chan, link, true));
    f.handle(b, channel_on_link("org/ns/b/2", &chan, link, true));
    // A is dropped without unsubscribing: B still holds the channel.
    assert!(f.remove_connection(a).is_empty());
    assert_eq!(f.subscribers(chan.components()), vec![link]);
    // B's withdrawal is now the last one.
    let out = f.handle(b, channel_on_link("org/ns/b/2", &chan, link, false));
    assert!(
        matches!(&out[..], [x] if is_unsubscribe(x, link)),
        "{out:?}"
    );
    assert!(f.subscribers(chan.components()).is_empty());

    // The last holder dropped without unsubscribing withdraws it too.
    let c = f.add_connection(ConnKind::Local);
    f.handle(c, channel_on_link("org/ns/c/3", &chan, link, true));
    let out = f.remove_connection(c);
    assert!(
        matches!(&out[..], [x] if is_unsubscribe(x, link)),
        "{out:?}"
    );
    assert!(f.subscribers(chan.components()).is_empty());
    assert_eq!(f.link_up(link, uuid::Uuid::new_v4().to_string()).len(), 1);
}

#[test]
fn a_peers_unsubscribe_keeps_the_route_local_apps_installed_on_its_link() {
    let mut f = Forwarder::new();
    let app = f.add_connection(ConnKind::Local);
    let peer = negotiated(&mut f, ConnKind::Incoming);
    let chan = name("org/ns/chan");
    f.handle(app, channel_on_link("org/ns/a/1", &chan, peer, true));
    // The peer subscribes and withdraws the same name itself (no flags,
    // as an official node does): the app's route on that link remains.
    f.handle(peer, subscribe(&chan, 0, |_| {}));
    assert!(f.handle(peer, unsubscribe(&chan, 0)).is_empty());
    assert_eq!(f.subscribers(chan.components()), vec![peer]);
    // An Unsubscribe from a connection that never asked for it fails.
    let out = f.handle(peer, unsubscribe(&chan, 0));
    assert!(out.is_empty());
    assert_eq!(f.subscribers(chan.components()), vec![peer]);
    f.handle(app, channel_on_link("org/ns/a/1", &chan, peer, false));
    assert!(f.subscribers(chan.components()).is_empty());
}
