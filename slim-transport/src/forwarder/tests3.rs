//! Deterministic tests of the forwarder core on the SLIM v3 wire: link
//! negotiation and header MAC hop by hop, TTL, exact-id matching, replay
//! only after the reply.

use super::*;
use crate::wire3::{self, message::MessageType};

type F3 = Forwarder<wire3::Message>;

fn wname(svc: &str, id: Option<u128>) -> wire3::Name {
    wire3::Name {
        name: Some(wire3::EncodedName {
            component_0: crate::name::hash_component("org"),
            component_1: crate::name::hash_component("ns"),
            component_2: crate::name::hash_component(svc),
            name_id: id.map(|id| wire3::NameId {
                id_0: (id >> 64) as u64,
                id_1: id as u64,
            }),
        }),
        str_name: Some(wire3::StringName {
            str_component_0: "org".into(),
            str_component_1: "ns".into(),
            str_component_2: svc.into(),
        }),
    }
}

fn header(dst: wire3::Name) -> Option<wire3::SlimHeader> {
    Some(wire3::SlimHeader {
        source: Some(wname("src", Some(1))),
        destination: Some(dst),
        fanout: 1,
        ttl: wire3::DEFAULT_TTL,
        ..Default::default()
    })
}

fn subscribe(dst: wire3::Name, id: u64) -> wire3::Message {
    wire3::Message {
        metadata: Default::default(),
        message_type: Some(MessageType::Subscribe(wire3::Subscribe {
            header: header(dst),
            subscription_id: id,
        })),
    }
}

fn publish(dst: wire3::Name) -> wire3::Message {
    wire3::Message {
        metadata: Default::default(),
        message_type: Some(MessageType::Publish(wire3::Publish {
            header: header(dst),
            session: Some(wire3::SessionHeader {
                session_id: 9,
                message_id: 4,
                ..Default::default()
            }),
            msg: None,
        })),
    }
}

fn hdr(m: &wire3::Message) -> &wire3::SlimHeader {
    frame::header_v3(m).expect("routed message")
}

fn sends(actions: &[Action<wire3::Message>]) -> Vec<(ConnId, wire3::Message)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { conn, msg } => Some((*conn, msg.clone())),
            _ => None,
        })
        .collect()
}

/// Two forwarders joined by one negotiated v3 link: (client side, its link
/// conn, server side, its link conn).
fn linked(policy: LinkPolicy) -> (F3, ConnId, F3, ConnId) {
    let mut a = F3::new().with_policy(policy).with_secrets(|| [7; 32]);
    let mut b = F3::new().with_policy(policy).with_secrets(|| [9; 32]);
    let la = a.add_connection(ConnKind::Outgoing);
    let lb = b.add_connection(ConnKind::Incoming);
    let first = a.link_up(la, "link-1".into());
    assert_eq!(first.len(), 1, "a v3 client sends nothing before the reply");
    let reply = sends(&b.handle(lb, first[0].clone()));
    assert_eq!(reply.len(), 1);
    assert!(sends(&a.handle(la, reply[0].1.clone())).is_empty());
    assert!(a.is_negotiated(la) && b.is_negotiated(lb));
    (a, la, b, lb)
}

#[test]
fn publish_crosses_a_v3_link_with_a_mac_that_the_peer_verifies_and_strips_for_its_app() {
    let (mut a, la, mut b, lb) = linked(LinkPolicy::default());
    let app_b = b.add_connection(ConnKind::Local);
    b.handle(app_b, subscribe(wname("svc", Some(5)), 0));
    let app_a = a.add_connection(ConnKind::Local);
    // app_a's publish goes up the link (an upstream would route it; here
    // forward_to names the link as a session reply would).
    let mut m = publish(wname("svc", Some(5)));
    frame::header_v3_mut(&mut m).unwrap().forward_to = Some(la);
    let out = sends(&a.handle(app_a, m));
    assert_eq!(out.len(), 1);
    let (to, on_link) = &out[0];
    assert_eq!(*to, la);
    assert_eq!(hdr(on_link).header_mac.as_ref().map(Vec::len), Some(32));
    assert_eq!(hdr(on_link).forward_to, None);
    let delivered = sends(&b.handle(lb, on_link.clone()));
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].0, app_b);
    assert_eq!(hdr(&delivered[0].1).header_mac, None);
    assert_eq!(hdr(&delivered[0].1).ttl, wire3::DEFAULT_TTL - 1);
}

#[test]
fn a_tampered_or_untagged_publish_is_dropped_and_the_link_stays_open() {
    let (mut a, la, mut b, lb) = linked(LinkPolicy::default());
    let app_b = b.add_connection(ConnKind::Local);
    b.handle(app_b, subscribe(wname("svc", Some(5)), 0));
    let app_a = a.add_connection(ConnKind::Local);
    let mut m = publish(wname("svc", Some(5)));
    frame::header_v3_mut(&mut m).unwrap().forward_to = Some(la);
    let (_, signed) = sends(&a.handle(app_a, m)).remove(0);
    let mut tampered = signed.clone();
    frame::header_v3_mut(&mut tampered).unwrap().fanout = 2;
    assert!(b.handle(lb, tampered).is_empty());
    let mut untagged = signed.clone();
    frame::header_v3_mut(&mut untagged).unwrap().header_mac = None;
    assert!(b.handle(lb, untagged).is_empty());
    // The genuine one still passes: nothing closed the link.
    assert_eq!(sends(&b.handle(lb, signed)).len(), 1);
}

#[test]
fn a_message_whose_ttl_runs_out_is_dropped() {
    // A lax server and a client that offers no key: an untagged link, so
    // only the TTL decides.
    let lax = LinkPolicy {
        require_header_mac: false,
    };
    let mut c = F3::new().with_policy(lax).with_secrets(|| [3; 32]);
    let app = c.add_connection(ConnKind::Local);
    c.handle(app, subscribe(wname("svc", Some(5)), 0));
    let inc = c.add_connection(ConnKind::Incoming);
    let mut client = link3::LinkState3::new(Role::Client, lax, [4; 32]);
    let mut request = Negotiation::request(&mut client, "l".into());
    if let Some(MessageType::Link(l)) = &mut request.message_type
        && let Some(wire3::link::LinkType::LinkNegotiation(p)) = &mut l.link_type
    {
        p.link_ecdh_public_key.clear();
    }
    assert_eq!(sends(&c.handle(inc, request)).len(), 1);
    let mut last_hop = publish(wname("svc", Some(5)));
    frame::header_v3_mut(&mut last_hop).unwrap().ttl = 1;
    assert!(c.handle(inc, last_hop.clone()).is_empty());
    frame::header_v3_mut(&mut last_hop).unwrap().ttl = 2;
    let out = sends(&c.handle(inc, last_hop));
    assert_eq!(out.len(), 1);
    assert_eq!(hdr(&out[0].1).ttl, 1);
}

#[test]
fn a_strict_server_closes_a_link_whose_request_has_no_key() {
    let mut b = F3::new();
    let lb = b.add_connection(ConnKind::Incoming);
    let mut c = link3::LinkState3::new(Role::Client, LinkPolicy::default(), [4; 32]);
    let mut request = Negotiation::request(&mut c, "l".into());
    if let Some(MessageType::Link(l)) = &mut request.message_type
        && let Some(wire3::link::LinkType::LinkNegotiation(p)) = &mut l.link_type
    {
        p.link_ecdh_public_key = vec![1; 5];
    }
    let out = b.handle(lb, request);
    assert!(
        matches!(&out[..], [Action::Close { conn, reason }] if *conn == lb && reason.contains("public key")),
        "{out:?}"
    );
}

#[test]
fn v3_unknown_instance_id_is_no_match_for_a_local_app() {
    let mut f = F3::new();
    let server = f.add_connection(ConnKind::Local);
    f.handle(server, subscribe(wname("svc", Some(5)), 0));
    let app = f.add_connection(ConnKind::Local);
    let out = f.handle(app, publish(wname("svc", Some(6))));
    match &out[..] {
        [Action::Error { conn, error }] => {
            assert_eq!(*conn, app);
            assert!(matches!(error.kind, ForwardErrorKind::NoMatch(_)));
            assert_eq!(error.session_context.map(|c| c.session_id), Some(9));
        }
        other => panic!("{other:?}"),
    }
    // NULL id (no name_id on the wire) is anycast and reaches it.
    assert_eq!(
        sends(&f.handle(app, publish(wname("svc", None))))[0].0,
        server
    );
}

#[test]
fn v3_anycast_takes_turns_among_instances() {
    let mut f = F3::new();
    let s1 = f.add_connection(ConnKind::Local);
    let s2 = f.add_connection(ConnKind::Local);
    f.handle(s1, subscribe(wname("svc", Some(1)), 0));
    f.handle(s2, subscribe(wname("svc", Some(2)), 0));
    let app = f.add_connection(ConnKind::Local);
    let picks: Vec<ConnId> = (0..4)
        .map(|_| sends(&f.handle(app, publish(wname("svc", None))))[0].0)
        .collect();
    assert_eq!(picks, vec![s1, s2, s1, s2]);
}

#[test]
fn v3_outgoing_link_replays_its_subscriptions_only_after_the_reply() {
    let (mut a, la, mut b, lb) = linked(LinkPolicy::default());
    let app = a.add_connection(ConnKind::Local);
    let mut sub = subscribe(wname("svc", Some(5)), 0);
    frame::header_v3_mut(&mut sub).unwrap().forward_to = Some(la);
    a.handle(app, sub);
    // Reconnect: the request goes alone; the replay follows the reply.
    let first = a.link_up(la, "link-2".into());
    assert_eq!(first.len(), 1);
    let lb2 = b.add_connection(ConnKind::Incoming);
    let reply = sends(&b.handle(lb2, first[0].clone()));
    let replay = sends(&a.handle(la, reply[0].1.clone()));
    assert_eq!(replay.len(), 1);
    assert!(matches!(
        replay[0].1.message_type,
        Some(MessageType::Subscribe(_))
    ));
    // Sealed with the new link's key: the peer accepts it.
    b.handle(lb2, replay[0].1.clone());
    assert_eq!(
        b.subscribers(NameKey::new(
            [
                crate::name::hash_component("org"),
                crate::name::hash_component("ns"),
                crate::name::hash_component("svc"),
            ],
            5
        )),
        vec![lb2]
    );
    let _ = lb;
}
