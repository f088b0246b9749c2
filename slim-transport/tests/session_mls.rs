//! MLS end-to-end encryption through the public app API, in process, with
//! real openmls behind every app (MLS is on by default): the node sees no
//! plaintext, a member that fails validation is refused with the reason,
//! replayed messages are not delivered twice.

mod session_common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use session_common::{LIVENESS, app, app_with};
use slim_transport::Name;
use slim_transport::app::{Session, SessionConfig, SessionEvent, SessionKind};
use slim_transport::identity::{IdentityVerifier, SharedSecret};
use slim_transport::mls::MlsSessionCrypto;
use slim_transport::service::Service;
use slim_transport::session::{CryptoError, SessionCrypto, SessionError};
use slim_transport::wire;

const OTHER_SECRET: &str = "a-completely-different-shared-secret-of-enough-length-0123";

async fn next_message(s: &mut Session) -> (Name, Vec<u8>) {
    loop {
        match tokio::time::timeout(LIVENESS, s.recv())
            .await
            .expect("event in time")
        {
            Ok(SessionEvent::Message(m)) => return (m.source, m.payload),
            Ok(_) => {}
            Err(e) => panic!("session ended: {e}"),
        }
    }
}

fn group() -> SessionConfig {
    SessionConfig {
        kind: SessionKind::Group,
        ..SessionConfig::default()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn sessions_have_mls_on_by_default() {
    assert!(SessionConfig::default().mls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_capture_sees_no_plaintext_of_any_application_payload() {
    let service = Service::new();
    let mut tap = service.tap_publishes(100_000);
    let alice = app(&service, "org/ns/alice").await;
    let bob = app(&service, "org/ns/bob").await;
    let carol = app(&service, "org/ns/carol").await;
    let marker = |kind: &str, i: usize| format!("TOP-SECRET-{kind}-{i}").into_bytes();

    // P2P, both directions.
    let (mut a, done) = alice
        .create_session(SessionConfig::default(), &"org/ns/bob".parse().unwrap())
        .await
        .unwrap();
    let mut b = tokio::time::timeout(LIVENESS, bob.listen_for_session())
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(LIVENESS, done).await.unwrap().unwrap();
    for i in 0..10 {
        a.publish(marker("p2p-a", i), HashMap::new()).await.unwrap();
        assert_eq!(next_message(&mut b).await.1, marker("p2p-a", i));
        b.publish(marker("p2p-b", i), HashMap::new()).await.unwrap();
        assert_eq!(next_message(&mut a).await.1, marker("p2p-b", i));
    }

    // Group: broadcast, publish_to and publish_unicast.
    let (mut m, ready) = alice
        .create_session(group(), &"org/ns/chat".parse().unwrap())
        .await
        .unwrap();
    ready.await.unwrap();
    let mut members = Vec::new();
    for (who, app) in [("org/ns/bob", &bob), ("org/ns/carol", &carol)] {
        let joined = m.invite(&who.parse().unwrap()).await.unwrap();
        let s = tokio::time::timeout(LIVENESS, app.listen_for_session())
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(LIVENESS, joined)
            .await
            .unwrap()
            .unwrap();
        members.push(s);
    }
    for i in 0..10 {
        m.publish(marker("group", i), HashMap::new()).await.unwrap();
    }
    let bob_name = bob.name().clone();
    m.publish_to(&bob_name, marker("to", 0), HashMap::new())
        .await
        .unwrap();
    m.publish_unicast(&bob_name, marker("unicast", 0), HashMap::new())
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 12 {
        got.push(next_message(&mut members[0]).await.1);
    }
    for i in 0..10 {
        assert!(got.contains(&marker("group", i)));
    }
    assert!(got.contains(&marker("to", 0)) && got.contains(&marker("unicast", 0)));
    members[1]
        .publish(marker("member", 0), HashMap::new())
        .await
        .unwrap();
    loop {
        if next_message(&mut m).await.1 == marker("member", 0) {
            break;
        }
    }

    let mut seen = 0;
    let mut msgs = 0;
    while let Ok(msg) = tap.try_recv() {
        seen += 1;
        if let Some(wire::message::MessageType::Publish(p)) = &msg.message_type
            && p.session.as_ref().map(|s| s.session_message_type)
                == Some(wire::SessionMessageType::Msg as i32)
        {
            msgs += 1;
        }
        let bytes = msg.encode_to_vec();
        assert!(
            !contains(&bytes, b"TOP-SECRET"),
            "plaintext on the node: {msg:?}"
        );
    }
    assert!(
        seen > 0 && msgs >= 33,
        "the tap saw the traffic ({seen}, {msgs})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_with_a_wrong_shared_secret_cannot_join_and_the_moderator_says_why() {
    let service = Service::new();
    let moderator = app(&service, "org/ns/moderator").await;
    let member = app(&service, "org/ns/member").await;
    let mallory = app_with(&service, "org/ns/mallory", OTHER_SECRET).await;
    let config = SessionConfig {
        interval: Some(Duration::from_millis(200)),
        max_retries: Some(5),
        ..group()
    };
    let (m, ready) = moderator
        .create_session(config, &"org/ns/chat".parse().unwrap())
        .await
        .unwrap();
    ready.await.unwrap();
    let joined = m.invite(&"org/ns/member".parse().unwrap()).await.unwrap();
    let mut s = tokio::time::timeout(LIVENESS, member.listen_for_session())
        .await
        .unwrap()
        .unwrap();
    joined.await.unwrap();

    let refused = m.invite(&"org/ns/mallory".parse().unwrap()).await.unwrap();
    let err = tokio::time::timeout(LIVENESS, refused)
        .await
        .expect("the invite ends")
        .expect_err("mallory must not join");
    let text = err.to_string();
    assert!(text.contains("shared secret"), "reason named: {text}");
    assert_eq!(m.members().len(), 2);
    drop(mallory);

    m.publish(b"members only".to_vec(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(next_message(&mut s).await.1, b"members only".to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_whose_mls_credential_fails_validation_is_refused_with_the_reason() {
    let service = Service::new();
    let moderator = app(&service, "org/ns/moderator").await;
    // Its SLIM identity is right, but its MLS credentials are minted with
    // another secret: the moderator's credential check refuses the key package.
    let forger = app(&service, "org/ns/forger").await;
    let forged = SharedSecret::new("org/ns/forger", OTHER_SECRET).unwrap();
    let verifier: Arc<dyn IdentityVerifier> = Arc::new(forged.clone());
    forger.set_crypto(Arc::new(move |_, _| {
        MlsSessionCrypto::new(forged.clone(), verifier.clone())
            .map(|c| Box::new(c) as Box<dyn SessionCrypto>)
            .map_err(|e| CryptoError::Failed(e.to_string()))
    }));
    let (m, ready) = moderator
        .create_session(group(), &"org/ns/chat".parse().unwrap())
        .await
        .unwrap();
    ready.await.unwrap();
    let refused = m.invite(&"org/ns/forger".parse().unwrap()).await.unwrap();
    let err = tokio::time::timeout(LIVENESS, refused)
        .await
        .expect("the invite ends")
        .expect_err("the forger must not join");
    assert!(
        matches!(err, SessionError::Crypto(CryptoError::BadInput(_))),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("credential"),
        "reason named: {err}"
    );
    assert_eq!(m.members().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_msg_is_rejected_and_not_delivered_twice() {
    let service = Service::new();
    let mut tap = service.tap_publishes(10_000);
    let alice = app(&service, "org/ns/alice").await;
    let bob = app(&service, "org/ns/bob").await;
    let (a, done) = alice
        .create_session(SessionConfig::default(), &"org/ns/bob".parse().unwrap())
        .await
        .unwrap();
    let mut b = tokio::time::timeout(LIVENESS, bob.listen_for_session())
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(LIVENESS, done).await.unwrap().unwrap();
    a.publish(b"transfer 100".to_vec(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(next_message(&mut b).await.1, b"transfer 100".to_vec());

    // The MSG as the node forwarded it.
    let mut original = None;
    while let Ok(msg) = tap.try_recv() {
        if let Some(wire::message::MessageType::Publish(p)) = &msg.message_type
            && let Some(s) = &p.session
            && s.session_message_type == wire::SessionMessageType::Msg as i32
            && p.header.as_ref().and_then(|h| h.source.as_ref()) == Some(&alice.name().to_wire())
        {
            original = Some(msg.clone());
        }
    }
    let original = original.expect("the tap saw alice's MSG");
    let message_id = match &original.message_type {
        Some(wire::message::MessageType::Publish(p)) => p.session.as_ref().unwrap().message_id,
        _ => unreachable!(),
    };
    // An attacker on the node re-injects it as is and under the next id.
    let raw = service.local_connection();
    let mut bumped = original.clone();
    if let Some(wire::message::MessageType::Publish(p)) = &mut bumped.message_type {
        p.session.as_mut().unwrap().message_id = message_id + 1;
        if let Some(h) = p.header.as_mut() {
            h.incoming_conn = None;
        }
    }
    let mut replay = original;
    if let Some(wire::message::MessageType::Publish(p)) = &mut replay.message_type
        && let Some(h) = p.header.as_mut()
    {
        h.incoming_conn = None;
    }
    raw.tx.send(replay).await.unwrap();
    raw.tx.send(bumped).await.unwrap();
    a.publish(b"hello again".to_vec(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut b).await.1,
        b"hello again".to_vec(),
        "the replays were not delivered"
    );
    a.publish(b"and again".to_vec(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(next_message(&mut b).await.1, b"and again".to_vec());
    drop(raw);
}
