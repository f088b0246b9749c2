//! The MLS ciphersuite of SLIM v3 sessions: P-256 by default (the official
//! 3.x wheel's suite), the Curve25519 suite when an app is configured for it
//! (what official builds with their `curve25519` feature use). Sessions
//! between two apps of the same suite carry messages both ways; an app of
//! the other suite is refused, and the error names the ciphersuites.

mod session_common;

use std::collections::HashMap;

use session_common::{LIVENESS, SECRET, created, next_payload};
use slim_transport::app::{App, MlsSuite, SessionConfig, SessionKind};
use slim_transport::identity::SharedSecret;
use slim_transport::service::Service;

async fn app(service: &Service, name: &str, suite: MlsSuite) -> App {
    let identity = SharedSecret::new(name, SECRET).unwrap();
    let app = service
        .app_v3_with_suite(name.parse().unwrap(), identity, suite)
        .await
        .expect("app started");
    app.subscribe(app.name(), None).await.expect("subscribed");
    app
}

fn p2p_mls() -> SessionConfig {
    SessionConfig {
        kind: SessionKind::PointToPoint,
        mls: true,
        ..SessionConfig::default()
    }
}

async fn exchange(suite: MlsSuite) {
    let service = Service::new();
    let alice = app(&service, "org/ns/alice", suite).await;
    let bob = app(&service, "org/ns/bob", suite).await;
    let mut a = created(&alice, &"org/ns/bob".parse().unwrap(), p2p_mls()).await;
    let mut b = tokio::time::timeout(LIVENESS, bob.listen_for_session())
        .await
        .expect("invited in time")
        .expect("session");
    for i in 0..5u8 {
        a.publish(vec![b'a', i], HashMap::new()).await.unwrap();
        assert_eq!(next_payload(&mut b).await, vec![b'a', i]);
        b.publish(vec![b'b', i], HashMap::new()).await.unwrap();
        assert_eq!(next_payload(&mut a).await, vec![b'b', i]);
    }
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_sessions_in_the_default_p256_suite_carry_messages_both_ways() {
    exchange(MlsSuite::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_sessions_configured_for_curve25519_carry_messages_both_ways() {
    exchange(MlsSuite::Curve25519Aes128).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v3_peer_of_the_other_suite_is_refused_with_an_error_naming_both_suites() {
    let service = Service::new();
    let alice = app(&service, "org/ns/alice", MlsSuite::P256Aes128).await;
    let _bob = app(&service, "org/ns/bob", MlsSuite::Curve25519Aes128).await;
    let (_a, established) = alice
        .create_session(p2p_mls(), &"org/ns/bob".parse().unwrap())
        .await
        .expect("session");
    let err = tokio::time::timeout(LIVENESS, established)
        .await
        .expect("answer in time")
        .expect_err("a session across suites must fail");
    let text = err.to_string();
    assert!(
        text.contains("ciphersuite") && text.contains("P256") && text.contains("25519"),
        "the error does not name the suites: {text}"
    );
    service.shutdown().await;
}
