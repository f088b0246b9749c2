//! Helpers shared by the data-plane integration tests: building SLIM
//! messages as an app would, and bounded receives.

#![allow(dead_code)]

use std::time::Duration;

use slim_transport::Name;
use slim_transport::service::{ConnId, ForwardError, LocalConnection};
use slim_transport::wire::{self, message::MessageType};

/// Liveness bound for every wait (a loaded 2-core machine is slow).
pub const LIMIT: Duration = Duration::from_secs(60);

pub fn name(s: &str) -> Name {
    s.parse().expect("test name")
}

fn header(src: &Name, dst: &Name, fanout: u32) -> wire::SlimHeader {
    wire::SlimHeader {
        source: Some(src.to_wire()),
        destination: Some(dst.to_wire()),
        fanout,
        identity: "test-identity".into(),
        ..Default::default()
    }
}

/// Subscribe `dst` (route on `recv_from`, forward on `forward_to`).
pub fn subscribe(
    src: &Name,
    dst: &Name,
    id: u64,
    recv_from: Option<ConnId>,
    forward_to: Option<ConnId>,
) -> wire::Message {
    let mut h = header(src, dst, 1);
    h.recv_from = recv_from;
    h.forward_to = forward_to;
    wire::Message {
        metadata: Default::default(),
        message_type: Some(MessageType::Subscribe(wire::Subscribe {
            header: Some(h),
            subscription_id: id,
        })),
    }
}

pub fn publish(src: &Name, dst: &Name, fanout: u32, payload: &[u8]) -> wire::Message {
    wire::Message {
        metadata: [("k".to_string(), "v".to_string())].into(),
        message_type: Some(MessageType::Publish(wire::Publish {
            header: Some(header(src, dst, fanout)),
            session: Some(wire::SessionHeader {
                session_type: 1,
                session_message_type: 1,
                session_id: 1,
                message_id: 1,
            }),
            msg: Some(wire::Content {
                content_type: Some(wire::content::ContentType::AppPayload(
                    wire::ApplicationPayload {
                        payload_type: "msg".into(),
                        blob: payload.to_vec(),
                    },
                )),
            }),
        })),
    }
}

pub fn blob(m: &wire::Message) -> Option<&[u8]> {
    match &m.message_type {
        Some(MessageType::Publish(p)) => match &p.msg {
            Some(wire::Content {
                content_type: Some(wire::content::ContentType::AppPayload(a)),
            }) => Some(&a.blob),
            _ => None,
        },
        _ => None,
    }
}

pub fn pub_header(m: &wire::Message) -> wire::SlimHeader {
    match &m.message_type {
        Some(MessageType::Publish(p)) => p.header.clone().expect("publish header"),
        other => panic!("not a publish: {other:?}"),
    }
}

/// The next item for this app (bounded wait).
pub async fn next(app: &mut LocalConnection) -> Result<wire::Message, ForwardError> {
    tokio::time::timeout(LIMIT, app.rx.recv())
        .await
        .expect("liveness bound passed waiting for the forwarder")
        .expect("forwarder closed the app connection")
}

/// The next Publish for this app, skipping acks.
pub async fn next_publish(app: &mut LocalConnection) -> wire::Message {
    loop {
        let m = next(app).await.expect("unexpected forward error");
        if matches!(m.message_type, Some(MessageType::Publish(_))) {
            return m;
        }
    }
}

/// Sends a subscription with a non-zero id and waits for its ack.
pub async fn subscribe_acked(app: &mut LocalConnection, msg: wire::Message) {
    let id = match &msg.message_type {
        Some(MessageType::Subscribe(s)) => s.subscription_id,
        _ => panic!("not a subscribe"),
    };
    assert_ne!(id, 0);
    app.tx.send(msg).await.expect("forwarder alive");
    loop {
        match next(app).await {
            Ok(wire::Message {
                message_type: Some(MessageType::SubscriptionAck(a)),
                ..
            }) if a.subscription_id == id => {
                assert!(a.success, "subscription {id} failed: {}", a.error);
                return;
            }
            _ => continue,
        }
    }
}

/// Polls `cond` every 20 ms until true (bounded).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < LIMIT, "liveness bound passed: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn localhost() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}
