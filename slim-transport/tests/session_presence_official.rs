//! Soft close and rejoin with the real peer: an official slim-bindings
//! 3.3.8 participant (`tests/python/presence_peer.py`, the bindings' own
//! `close_with_mode(SOFT)` and `rejoin()`) in a group our v3 moderator
//! runs with MLS, through our node, beside one of our participants.
//!
//! Its soft close completes only once our moderator and our participant
//! acknowledged its OFFLINE update; the group then goes on without it; a
//! member joins while it is away (new MLS epoch), so its ONLINE update is
//! NACKed by ours, it sends a rejoin request, and our moderator re-admits it
//! with one commit replacing its leaf. Afterwards everybody reads it and it
//! reads everybody in the new epoch.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use slim_transport::Name;
use slim_transport::app::{App, Session, SessionConfig, SessionEvent, SessionKind};
use slim_transport::identity::SharedSecret;
use slim_transport::service::{ConnId, Generation, LinkOptions, Service};
use slimrpc_testkit::{Child, python3};

const SECRET: &str = "a-shared-secret-for-the-presence-test-0123";
const LIMIT: Duration = Duration::from_secs(60);

async fn official(url: &str, local: &str) -> Child {
    let (url, local) = (url.to_string(), local.to_string());
    tokio::task::spawn_blocking(move || {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/presence_peer.py");
        let mut c = Child::spawn_interactive(
            &format!("official-{}", local.replace('/', "-")),
            Command::new(python3())
                .args([script, &url, &local, SECRET])
                .env("PYTHONUNBUFFERED", "1")
                .env(
                    "RUST_LOG",
                    std::env::var("OFFICIAL_RUST_LOG").unwrap_or_else(|_| "info".into()),
                ),
        );
        c.wait_for("PY_READY", LIMIT);
        c
    })
    .await
    .expect("spawned")
}

/// Waits (bounded) until `child` printed `text`.
async fn prints(child: &Child, text: &str) {
    let start = Instant::now();
    while !child.output().contains(text) {
        assert!(
            start.elapsed() < LIMIT,
            "the official participant did not print {text:?}:\n{}",
            child.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads `s` until a message with payload `text` arrives (bounded).
async fn receives(s: &mut Session, text: &str) {
    let start = Instant::now();
    loop {
        let left = LIMIT.saturating_sub(start.elapsed());
        let e = tokio::time::timeout(left, s.recv())
            .await
            .unwrap_or_else(|_| panic!("{text:?} did not arrive in time"))
            .expect("session open");
        if let SessionEvent::Message(m) = e
            && m.payload == text.as_bytes()
        {
            return;
        }
    }
}

async fn our_app(service: &Service, link: ConnId, name: &str) -> App {
    let identity = SharedSecret::new(name, SECRET).unwrap();
    let app = service
        .app_v3(name.parse().unwrap(), identity)
        .await
        .expect("app");
    app.subscribe(app.name(), Some(link))
        .await
        .expect("subscribed");
    app
}

async fn invite(moderator: &App, group: &Session, link: ConnId, who: &str) {
    let base: Name = who.parse().unwrap();
    moderator.set_route(&base, link).await.expect("route");
    let done = group.invite(&base).await.expect("invite queued");
    tokio::time::timeout(LIMIT, done)
        .await
        .expect("invite finished in time")
        .unwrap_or_else(|e| panic!("invite of {who} failed: {e}"));
}

async fn listen(app: &App) -> Session {
    tokio::time::timeout(LIMIT, app.listen_for_session())
        .await
        .expect("invited in time")
        .expect("session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_official_participant_soft_closes_and_is_readmitted_by_our_moderator_after_the_group_moved_on()
 {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let node = Service::new();
    let addr = node
        .run_server("127.0.0.1:0".parse().unwrap())
        .await
        .expect("node listens");
    let url = format!("http://{addr}");
    let mut py = official(&url, "org/ns/pyp").await;

    let client = Service::new();
    let link = client
        .connect_with(
            &url,
            LinkOptions {
                generation: Some(Generation::V3),
                ..LinkOptions::default()
            },
        )
        .await
        .expect("linked");
    let moderator = our_app(&client, link, "org/ns/pres-mod").await;
    let ours = our_app(&client, link, "org/ns/pres-r1").await;
    let late = our_app(&client, link, "org/ns/pres-r2").await;
    let config = SessionConfig {
        kind: SessionKind::Group,
        mls: true,
        ..SessionConfig::default()
    };
    let (mut group, ready) = moderator
        .create_session(config, &"org/ns/pres-chat".parse().unwrap())
        .await
        .expect("group");
    ready.await.expect("group ready");
    invite(&moderator, &group, link, "org/ns/pyp").await;
    invite(&moderator, &group, link, "org/ns/pres-r1").await;
    let mut r1 = listen(&ours).await;
    prints(&py, "PY_JOINED").await;

    group
        .publish(b"one".to_vec(), HashMap::new())
        .await
        .unwrap();
    prints(&py, "PY_GOT one").await;
    receives(&mut group, "ack one").await;

    // Its soft close completes once our moderator and participant acked.
    group
        .publish(b"go-offline".to_vec(), HashMap::new())
        .await
        .unwrap();
    prints(&py, "PY_OFFLINE").await;

    // The group goes on without it, and a member joins meanwhile.
    group
        .publish(b"while-away".to_vec(), HashMap::new())
        .await
        .unwrap();
    receives(&mut r1, "while-away").await;
    invite(&moderator, &group, link, "org/ns/pres-r2").await;
    let mut r2 = listen(&late).await;
    assert!(
        !py.output().contains("PY_GOT while-away"),
        "the soft-closed participant still took the group's messages:\n{}",
        py.output()
    );

    // Back, behind the group's epoch: NACK, rejoin request, new welcome.
    py.send_line("rejoin");
    prints(&py, "PY_REJOINED").await;
    assert!(!py.output().contains("PY_REJOIN_FAILED"), "{}", py.output());
    group
        .publish(b"after".to_vec(), HashMap::new())
        .await
        .unwrap();
    prints(&py, "PY_GOT after").await;
    receives(&mut group, "ack after").await;
    receives(&mut r1, "ack after").await;
    receives(&mut r2, "ack after").await;

    let _ = group.close().await;
    prints(&py, "PY_CLOSED").await;
    client.shutdown().await;
    node.shutdown().await;
}
