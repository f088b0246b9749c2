//! Group sessions on the SLIM v3 wire with the real peer: our moderator (a
//! v3 app, MLS on) invites official slim-bindings 3.3.8 group participants
//! (`slim-bindings-group` in passive mode, unchanged), adds one more to the
//! live group and removes one, through our node. Each participant prints
//! what it receives and answers the sender, as the official example does.

mod session_common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use session_common::{V3Net, app_v3_with, invite_via};
use slim_transport::Name;
use slim_transport::app::{Session, SessionConfig, SessionEvent, SessionKind};
use slimrpc_testkit::{Child, venv3_script};

const SECRET: &str = "a-shared-secret-for-the-v3-group-test-0123";
const LIMIT: Duration = Duration::from_secs(60);

/// An official passive group participant. The example reads chat lines
/// from its terminal and stops its app when input is not one, so it runs
/// under `script`, which gives it a pseudo-terminal (and no input).
async fn participant(url: &str, local: &str) -> Child {
    let (url, local) = (url.to_string(), local.to_string());
    tokio::task::spawn_blocking(move || {
        let program = venv3_script("slim-bindings-group");
        let line = format!(
            "{} --local {local} --slim {url} --shared-secret {SECRET} --enable-mls",
            program.display()
        );
        let mut c = Child::spawn(
            &format!("official-{}", local.replace('/', "-")),
            Command::new("script")
                .args(["-q", "-e", "-c", &line, "/dev/null"])
                .env("PYTHONUNBUFFERED", "1")
                .env(
                    "RUST_LOG",
                    std::env::var("OFFICIAL_RUST_LOG").unwrap_or_else(|_| "info".into()),
                ),
        );
        c.wait_for("Waiting for session", LIMIT);
        c
    })
    .await
    .expect("spawned")
}

/// Waits until every child printed `text` (bounded).
async fn all_print(children: &[&Child], text: &str) {
    let start = Instant::now();
    while !children.iter().all(|c| c.output().contains(text)) {
        assert!(
            start.elapsed() < LIMIT,
            "not every participant printed {text:?}:\n{}",
            children
                .iter()
                .map(|c| c.output())
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Counts the participants' answers ("message received by ...") arriving
/// in the session until `n` came (bounded).
async fn answers(group: &mut Session, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let e = tokio::time::timeout(LIMIT, group.recv())
            .await
            .expect("answers arrive in time")
            .expect("session open");
        if let SessionEvent::Message(m) = e {
            let text = String::from_utf8_lossy(&m.payload).into_owned();
            if text.starts_with("message received by") {
                got.push(text);
            }
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_v3_moderator_invites_adds_and_removes_official_3_3_8_participants_with_mls() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let net = V3Net::start().await;
    let (url, link) = (net.url.clone(), net.link);
    let p1 = participant(&url, "org/ns/v3p1").await;
    let p2 = participant(&url, "org/ns/v3p2").await;
    let p3 = participant(&url, "org/ns/v3p3").await;
    let moderator = app_v3_with(&net.client, "org/ns/v3mod", SECRET, Some(link)).await;
    let config = SessionConfig {
        kind: SessionKind::Group,
        mls: true,
        ..SessionConfig::default()
    };
    let channel: Name = "org/ns/v3-chat".parse().unwrap();
    let (mut group, ready) = moderator
        .create_session(config, &channel)
        .await
        .expect("group");
    ready.await.expect("group ready");
    invite_via(&moderator, &group, link, "org/ns/v3p1").await;
    invite_via(&moderator, &group, link, "org/ns/v3p2").await;
    group
        .publish(b"hello-one".to_vec(), HashMap::new())
        .await
        .unwrap();
    all_print(&[&p1, &p2], "hello-one").await;
    assert_eq!(answers(&mut group, 2).await.len(), 2);

    // A third member joins the live group (GROUP_UPDATE ADD to the others).
    invite_via(&moderator, &group, link, "org/ns/v3p3").await;
    group
        .publish(b"hello-two".to_vec(), HashMap::new())
        .await
        .unwrap();
    all_print(&[&p1, &p2, &p3], "hello-two").await;
    assert_eq!(answers(&mut group, 3).await.len(), 3);

    // One leaves it (GROUP_UPDATE REMOVE, then LEAVE_REQUEST).
    group
        .remove(&"org/ns/v3p2".parse().unwrap())
        .await
        .expect("removed");
    group
        .publish(b"hello-three".to_vec(), HashMap::new())
        .await
        .unwrap();
    all_print(&[&p1, &p3], "hello-three").await;
    let replies = answers(&mut group, 2).await;
    assert!(
        replies.iter().all(|r| !r.contains("v3p2")),
        "the removed member answered: {replies:?}"
    );
    assert!(
        !p2.output().contains("hello-three"),
        "the removed member still got the group's messages:\n{}",
        p2.output()
    );
    let _ = group.close().await;
    net.shutdown().await;
}
