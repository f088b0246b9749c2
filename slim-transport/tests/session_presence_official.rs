//! Soft close and rejoin with the real peer (slim-bindings 3.3.8 through
//! `tests/python/presence_peer.py`: the bindings' own `close_with_mode(SOFT)`,
//! `rejoin()`, group creation and invites), MLS on, through our node.
//!
//! * An official participant in our moderator's group soft-closes: that
//!   completes only once our moderator and our participant acknowledged its
//!   OFFLINE update; the group goes on without it; a member joins while it
//!   is away (new MLS epoch), so its ONLINE update is NACKed by ours, it
//!   sends a rejoin request, and our moderator re-admits it with one commit
//!   replacing its leaf.
//! * Our participant in an official moderator's group does the same the
//!   other way: the official moderator acknowledges its soft close, NACKs
//!   its return after inviting another official member, and re-admits it
//!   with its own rejoin commit and welcome.
//!
//! Afterwards everybody reads the returned member and it reads everybody in
//! the new epoch.

mod session_common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use session_common::{V3Net, app_v3_with, created, invite_via};
use slim_transport::app::{App, Session, SessionConfig, SessionEvent, SessionKind};
use slimrpc_testkit::{Child, python3};

const SECRET: &str = "a-shared-secret-for-the-presence-test-0123";
const LIMIT: Duration = Duration::from_secs(60);

/// The official peer in `mode` ("participant", or "moderator" of
/// `channel`), started and subscribed.
async fn official(mode: &str, url: &str, local: &str, channel: &str) -> Child {
    let (mode, url, local, channel) = (
        mode.to_string(),
        url.to_string(),
        local.to_string(),
        channel.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/presence_peer.py");
        let mut c = Child::spawn_interactive(
            &format!("official-{}", local.replace('/', "-")),
            Command::new(python3())
                .args([script, &mode, &url, &local, SECRET, &channel])
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
            "the official peer did not print {text:?}:\n{}",
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

async fn our_app(net: &V3Net, name: &str) -> App {
    app_v3_with(&net.client, name, SECRET, Some(net.link)).await
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
    let net = V3Net::start().await;
    let link = net.link;
    let mut py = official("participant", &net.url, "org/ns/pyp", "").await;
    let moderator = our_app(&net, "org/ns/pres-mod").await;
    let ours = our_app(&net, "org/ns/pres-r1").await;
    let late = our_app(&net, "org/ns/pres-r2").await;
    let config = SessionConfig {
        kind: SessionKind::Group,
        mls: true,
        ..SessionConfig::default()
    };
    let mut group = created(&moderator, &"org/ns/pres-chat".parse().unwrap(), config).await;
    invite_via(&moderator, &group, link, "org/ns/pyp").await;
    invite_via(&moderator, &group, link, "org/ns/pres-r1").await;
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
    invite_via(&moderator, &group, link, "org/ns/pres-r2").await;
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
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_participant_soft_closes_and_is_readmitted_by_an_official_moderator_after_the_group_moved_on()
 {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let net = V3Net::start().await;
    let mut moderator = official("moderator", &net.url, "org/ns/pymod", "org/ns/pres-chat2").await;
    let late = official("participant", &net.url, "org/ns/pyq", "").await;
    prints(&moderator, "PY_CREATED").await;
    let ours = our_app(&net, "org/ns/pres-ours").await;
    moderator.send_line("invite org/ns/pres-ours");
    let mut s = listen(&ours).await;
    prints(&moderator, "PY_INVITED org/ns/pres-ours").await;

    moderator.send_line("say one");
    receives(&mut s, "one").await;

    tokio::time::timeout(LIMIT, s.soft_close())
        .await
        .expect("soft close in time")
        .expect("the official moderator acknowledged our soft close");
    let refused = s.publish(b"x".to_vec(), HashMap::new()).await;
    assert!(refused.is_err(), "a soft-closed member published");

    // The official moderator adds a member while we are away.
    moderator.send_line("invite org/ns/pyq");
    prints(&moderator, "PY_INVITED org/ns/pyq").await;
    prints(&late, "PY_JOINED").await;

    tokio::time::timeout(LIMIT, s.rejoin())
        .await
        .expect("rejoin in time")
        .expect("re-admitted by the official moderator");
    assert!(
        s.members()
            .iter()
            .any(|m| m.to_string().starts_with("org/ns/pyq/")),
        "our rejoined participant does not list the member added while it was away: {:?}",
        s.members()
    );
    moderator.send_line("say after");
    receives(&mut s, "after").await;
    prints(&late, "PY_GOT after").await;
    s.publish(b"ours-back".to_vec(), HashMap::new())
        .await
        .expect("publishes again");
    prints(&moderator, "PY_GOT ours-back").await;
    prints(&late, "PY_GOT ours-back").await;

    moderator.send_line("close");
    prints(&moderator, "PY_CLOSED").await;
    net.shutdown().await;
}
