//! A group member whose process dies is detected by the moderator's pings:
//! after three missed rounds (10 s apart) it is declared gone, the
//! moderator's app sees `MemberLeft`, and the group goes on without it.
//!
//! Everything runs through our `slim` node (a separate process) over
//! loopback gRPC: the moderator and a surviving Rust member are apps of this
//! test process on their own `Service`s linked to the node; the member that
//! dies is the official Python participant (`tests/python/session_peer.py`,
//! mode `group`), killed by PID. This takes about 30–45 s of real time.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use slim_transport::Name;
use slim_transport::app::{App, ConnId, Session, SessionConfig, SessionEvent, SessionKind};
use slim_transport::identity::SharedSecret;
use slim_transport::service::Service;
use slimrpc_testkit::{Child, free_port};

const SECRET: &str = "kjandjansdiasb8udaijdniasdaindasndasndasndasndasndasndasndas";
const LIVENESS: Duration = Duration::from_secs(60);
/// Three ping rounds of 10 s, plus slack for a loaded machine.
const DETECTION_BOUND: Duration = Duration::from_secs(150);

/// Our node as its own process; returns it and its port.
async fn node() -> (Child, u16) {
    let port = free_port();
    let child = Child::spawn(
        "ping-kill-node",
        Command::new(env!("CARGO_BIN_EXE_slim")).args(["--endpoint", &format!("127.0.0.1:{port}")]),
    );
    let child = tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.wait_for("slim node listening on", LIVENESS);
        child
    })
    .await
    .expect("waiter ran");
    (child, port)
}

/// An app on its own `Service` linked to the node, subscribed there.
async fn remote_app(port: u16, name: &str) -> (Service, App, ConnId) {
    let service = Service::new();
    let conn = tokio::time::timeout(
        LIVENESS,
        service.connect(&format!("http://127.0.0.1:{port}")),
    )
    .await
    .expect("connected in time")
    .expect("connected");
    let identity = SharedSecret::new(name, SECRET).unwrap();
    let base: Name = name.parse().unwrap();
    let app = tokio::time::timeout(LIVENESS, service.app(base.clone(), identity))
        .await
        .expect("app in time")
        .expect("app started");
    tokio::time::timeout(LIVENESS, app.subscribe(&base, Some(conn)))
        .await
        .expect("subscribed in time")
        .expect("subscribed on the node");
    (service, app, conn)
}

/// Waits (bounded) until the session's member list satisfies `ok`. The
/// driver refreshes `SessionHandle::members()` only after it delivered the
/// events and completions of a step, so a reader may briefly see the list
/// from before the step.
async fn members_until(s: &Session, ok: impl Fn(&[Name]) -> bool) -> Vec<Name> {
    tokio::time::timeout(LIVENESS, async {
        loop {
            let members = s.members();
            if ok(&members) {
                return members;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("member list never became as expected: {:?}", s.members()))
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderator_declares_a_killed_member_process_gone_after_three_missed_pings() {
    let (_node, port) = node().await;
    let (_ms, moderator, mconn) = remote_app(port, "org/ns/moderator").await;
    let (_ks, keeper, _) = remote_app(port, "org/ns/keeper").await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/session_peer.py");
    let py = Child::spawn(
        "ping-kill-py",
        Command::new(slimrpc_testkit::python())
            .arg(script)
            .arg(port.to_string())
            .arg("group")
            .arg("0"),
    );
    let mut py = tokio::task::spawn_blocking(move || {
        let mut py = py;
        py.wait_for("PY_READY", LIVENESS);
        py
    })
    .await
    .expect("waiter ran");

    let py_base: Name = "org/ns/py".parse().unwrap();
    let keeper_base: Name = "org/ns/keeper".parse().unwrap();
    moderator.set_route(&py_base, mconn).await.unwrap();
    moderator.set_route(&keeper_base, mconn).await.unwrap();
    // MLS plays no part in liveness; off keeps the test about pings.
    let config = SessionConfig {
        kind: SessionKind::Group,
        mls: false,
        ..SessionConfig::default()
    };
    let (mut m, ready) = moderator
        .create_session(config, &"org/ns/pingchat".parse().unwrap())
        .await
        .unwrap();
    ready.await.unwrap();
    let joined = m.invite(&keeper_base).await.unwrap();
    let mut k = tokio::time::timeout(LIVENESS, keeper.listen_for_session())
        .await
        .expect("keeper invited in time")
        .unwrap();
    tokio::time::timeout(LIVENESS, joined)
        .await
        .expect("keeper joined in time")
        .unwrap();
    let joined = m.invite(&py_base).await.unwrap();
    tokio::time::timeout(LIVENESS, joined)
        .await
        .expect("python joined in time")
        .unwrap();
    let members = members_until(&m, |ms| ms.len() == 3).await;
    let py_name = members
        .into_iter()
        .find(|n| n.prefix() == py_base.prefix())
        .expect("python is a member");

    // The Python member is alive and answers (PUBLISH_TO and broadcast).
    m.publish(b"hello".to_vec(), HashMap::new()).await.unwrap();
    let mut answers = 0;
    while answers < 2 {
        let (src, p) = next_message(&mut m).await;
        if src == py_name && p.ends_with(b"hello") {
            answers += 1;
        }
    }

    // Its process dies without a word to anybody.
    py.kill();

    let left = tokio::time::timeout(DETECTION_BOUND, async {
        loop {
            match m.recv().await {
                Ok(SessionEvent::MemberLeft(n)) => return n,
                Ok(_) => {}
                Err(e) => panic!("moderator session ended: {e}"),
            }
        }
    })
    .await
    .expect("the moderator detects the dead member within the bound");
    assert_eq!(left, py_name);
    let members = members_until(&m, |ms| !ms.contains(&py_name)).await;
    assert_eq!(members.len(), 2, "{members:?}");

    // The surviving member hears of it and the group goes on.
    let keeper_saw = tokio::time::timeout(LIVENESS, async {
        loop {
            match k.recv().await {
                Ok(SessionEvent::MemberLeft(n)) if n == py_name => return,
                Ok(_) => {}
                Err(e) => panic!("keeper session ended: {e}"),
            }
        }
    })
    .await;
    assert!(keeper_saw.is_ok(), "keeper was told the member left");
    m.publish(b"still here".to_vec(), HashMap::new())
        .await
        .unwrap();
    loop {
        let (_, p) = next_message(&mut k).await;
        if p == b"still here" {
            break;
        }
    }
    m.close().await.unwrap();
}
