//! A tampered SLIM v3 control payload is refused, and the error our app
//! gets names the cause. The peer here is a forger on a raw v3 link to our
//! node: it holds the right shared secret and answers our discovery with a
//! correctly signed DISCOVERY_REPLY, then changes the frame's metadata after
//! signing (as a man in the middle would). Our app's edge finds that the
//! payload signature no longer verifies, drops the frame, and the session's
//! handshake fails with an error that says so, instead of a bare timeout.
//! The same answer left untouched opens the session (the control case).

mod raw3_common;

use std::time::{Duration, Instant};

use raw3_common::{Raw3, name3};
use slim_transport::Name;
use slim_transport::app::{SessionConfig, SessionError, SessionKind};
use slim_transport::codec3::Codec3;
use slim_transport::identity::SharedSecret;
use slim_transport::service::{Generation, LinkOptions, Service};
use slim_transport::session::packet::{Out, command_content};
use slim_transport::wire::{self, command_payload::CommandPayloadType as C1};
use slim_transport::wire3;

const SECRET: &str = "a-shared-secret-for-the-tamper-test-0123456";
const LIMIT: Duration = Duration::from_secs(60);
/// The forger's 64-bit id on our side of its codec.
const FORGER_V1_ID: u64 = 0x5eed;

/// Waits for the next session frame our app sends the forger (bounded).
async fn next_publish(raw: &mut Raw3) -> wire3::Message {
    let start = Instant::now();
    while start.elapsed() < LIMIT {
        if let Some(m) = raw.recv().await
            && matches!(
                m.message_type,
                Some(wire3::message::MessageType::Publish(_))
            )
        {
            return m;
        }
    }
    panic!("no session frame reached the forger");
}

/// The signed v3 DISCOVERY_REPLY to `request`, built by the forger's own
/// codec (so token and signatures are what a real peer would send).
fn discovery_reply(codec: &mut Codec3, request: wire3::Message) -> wire3::Message {
    let req = codec
        .inbound(request, std::time::Instant::now())
        .expect("the forger reads our request")
        .expect("a session frame");
    let Some(wire::message::MessageType::Publish(p)) = &req.message_type else {
        panic!("not a publish: {req:?}");
    };
    let h = p.header.as_ref().unwrap();
    let s = p.session.as_ref().unwrap();
    let asked = Name::from_wire(h.destination.as_ref().unwrap()).unwrap();
    let from = Name::from_wire(h.source.as_ref().unwrap()).unwrap();
    let reply = Out {
        source: &asked.with_id(FORGER_V1_ID),
        destination: &from,
        fanout: 1,
        session_type: wire::SessionType::try_from(s.session_type).unwrap(),
        kind: wire::SessionMessageType::DiscoveryReply,
        session_id: s.session_id,
        message_id: s.message_id,
        content: command_content(C1::DiscoveryReply(wire::DiscoveryReplyPayload {})),
        metadata: Default::default(),
    }
    .build();
    let mut out = codec
        .outbound(reply, slim_transport::identity::unix_now(), Instant::now())
        .expect("the forger signs its reply");
    out.wire.remove(0)
}

/// Our moderator app (v3, through our node) opening a P2P MLS session to
/// the forger, who answers the discovery (tampered or not). Returns how
/// the handshake ended.
async fn handshake_with_forger(tamper: bool) -> Result<(), SessionError> {
    let node = Service::new();
    let addr = node
        .run_server("127.0.0.1:0".parse().unwrap())
        .await
        .expect("node listens");
    let identity = SharedSecret::new("org/ns/forger", SECRET).unwrap();
    let mut codec = Codec3::new(&identity, FORGER_V1_ID, [7; 32]);
    let mut raw = Raw3::connect(&addr.to_string(), true, true)
        .await
        .expect("raw v3 link");
    raw.subscribe(name3("forger", codec.own_v3_id())).await;

    let client = Service::new();
    let link = client
        .connect_with(
            &format!("http://{addr}"),
            LinkOptions {
                generation: Some(Generation::V3),
                ..LinkOptions::default()
            },
        )
        .await
        .expect("linked");
    let app = client
        .app_v3(
            "org/ns/victim".parse().unwrap(),
            SharedSecret::new("org/ns/victim", SECRET).unwrap(),
        )
        .await
        .expect("app");
    app.subscribe(app.name(), Some(link))
        .await
        .expect("subscribed");
    let forger: Name = "org/ns/forger".parse().unwrap();
    app.set_route(&forger, link).await.expect("route");
    let (_session, established) = app
        .create_session(
            SessionConfig {
                kind: SessionKind::PointToPoint,
                mls: true,
                ..SessionConfig::default()
            },
            &forger,
        )
        .await
        .expect("session created");

    let request = next_publish(&mut raw).await;
    let mut reply = discovery_reply(&mut codec, request);
    if tamper {
        reply
            .metadata
            .insert("injected".into(), "by a man in the middle".into());
    }
    raw.send(reply).await;
    let outcome = if tamper {
        tokio::time::timeout(LIMIT, established)
            .await
            .expect("the handshake ends in time")
    } else {
        // Untouched, the discovery is accepted: the next step (our
        // JOIN_REQUEST) reaches the forger.
        let join = next_publish(&mut raw).await;
        let Some(wire3::message::MessageType::Publish(p)) = &join.message_type else {
            unreachable!()
        };
        assert_eq!(
            p.session.as_ref().unwrap().session_message_type,
            wire3::SessionMessageType::JoinRequest as i32,
            "after an untouched discovery reply our app sends its JOIN_REQUEST"
        );
        Ok(())
    };
    client.shutdown().await;
    node.shutdown().await;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_signed_discovery_reply_is_refused_and_the_error_names_the_bad_signature() {
    let err = handshake_with_forger(true)
        .await
        .expect_err("a tampered answer must not open the session");
    assert!(
        matches!(&err, SessionError::Refused { cause, .. } if cause.contains("signature does not verify")),
        "the error does not name the cause: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_discovery_reply_untouched_is_accepted() {
    handshake_with_forger(false)
        .await
        .expect("an untouched, signed answer goes on to the join");
}
