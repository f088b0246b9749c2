//! Interop of our session layer with the official SLIM v1.3 Python bindings
//! (`slim_bindings` 1.3.0, MLS off): the Python app connects over gRPC to a
//! Rust node on 127.0.0.1 that also hosts our Rust apps.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use slim_transport::Name;
use slim_transport::app::{App, Session, SessionConfig, SessionEvent, SessionKind};
use slim_transport::identity::SharedSecret;
use slim_transport::service::Service;
use slimrpc_testkit::Child;

const SECRET: &str = "kjandjansdiasb8udaijdniasdaindasndasndasndasndasndasndasndas";
const LIVENESS: Duration = Duration::from_secs(60);
const N: usize = 20;

async fn node() -> (Service, u16) {
    let service = Service::new();
    let addr = service
        .run_server("127.0.0.1:0".parse().unwrap())
        .await
        .expect("server runs");
    (service, addr.port())
}

async fn app(service: &Service, name: &str) -> App {
    let identity = SharedSecret::new(name, SECRET).unwrap();
    tokio::time::timeout(LIVENESS, service.app(name.parse().unwrap(), identity))
        .await
        .expect("app in time")
        .expect("app started")
}

fn python(port: u16, mode: &str) -> Child {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/session_peer.py");
    Child::spawn(
        &format!("slim-py-{mode}"),
        Command::new(slimrpc_testkit::python())
            .arg(script)
            .arg(port.to_string())
            .arg(mode)
            .arg(N.to_string()),
    )
}

/// Waits (off the async runtime) for the Python side to print `needle`.
async fn wait_for(child: Child, needle: &'static str) -> Child {
    tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.wait_for(needle, LIVENESS);
        child
    })
    .await
    .expect("waiter ran")
}

async fn wait_success(child: Child) {
    let (code, out) = tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.wait_exit(LIVENESS)
    })
    .await
    .expect("waiter ran");
    assert_eq!(code, Some(0), "python side failed:\n{out}");
    assert!(out.contains("PY_DONE"), "{out}");
}

async fn next_message(s: &mut Session) -> (Name, Vec<u8>, HashMap<String, String>) {
    loop {
        match tokio::time::timeout(LIVENESS, s.recv())
            .await
            .expect("event in time")
        {
            Ok(SessionEvent::Message(m)) => return (m.source, m.payload, m.metadata),
            Ok(_) => {}
            Err(e) => panic!("session ended: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_moderator_and_python_participant_exchange_p2p_messages() {
    let (service, port) = node().await;
    let rusty = app(&service, "org/ns/rusty").await;
    let py = wait_for(python(port, "accept"), "PY_READY").await;
    let (mut s, done) = rusty
        .create_session(SessionConfig::default(), &"org/ns/py".parse().unwrap())
        .await
        .unwrap();
    tokio::time::timeout(LIVENESS, done).await.unwrap().unwrap();
    let peer = s.destination();
    assert!(!peer.has_null_id(), "pinned to the Python instance: {peer}");
    for i in 0..N {
        s.publish(format!("ping {i}").into_bytes(), HashMap::new())
            .await
            .unwrap();
        let (src, p, _) = next_message(&mut s).await;
        assert_eq!(src, peer);
        assert_eq!(p, format!("pong {i}").into_bytes());
    }
    s.close().await.unwrap();
    wait_success(py).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_moderator_and_rust_participant_exchange_p2p_messages() {
    let (service, port) = node().await;
    let rusty = app(&service, "org/ns/rusty").await;
    let py = python(port, "initiate");
    let mut s = tokio::time::timeout(LIVENESS, rusty.listen_for_session())
        .await
        .expect("python created a session in time")
        .unwrap();
    assert_eq!(s.kind(), SessionKind::PointToPoint);
    for _ in 0..N {
        let (_, p, _) = next_message(&mut s).await;
        let mut reply = b"pong ".to_vec();
        reply.extend_from_slice(&p[5..]);
        s.publish(reply, HashMap::new()).await.unwrap();
    }
    wait_success(py).await;
    loop {
        match tokio::time::timeout(LIVENESS, s.recv())
            .await
            .expect("close in time")
        {
            Ok(SessionEvent::Closed { .. }) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert!(s.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_participant_joins_a_rust_group_and_talks_to_everyone() {
    let (service, port) = node().await;
    let moderator = app(&service, "org/ns/rusty").await;
    let member = app(&service, "org/ns/rustmember").await;
    let py = wait_for(python(port, "group"), "PY_READY").await;
    let config = SessionConfig {
        kind: SessionKind::Group,
        ..SessionConfig::default()
    };
    let (mut m, ready) = moderator
        .create_session(config, &"org/ns/chat".parse().unwrap())
        .await
        .unwrap();
    ready.await.unwrap();
    let joined = m
        .invite(&"org/ns/rustmember".parse().unwrap())
        .await
        .unwrap();
    let mut r = tokio::time::timeout(LIVENESS, member.listen_for_session())
        .await
        .unwrap()
        .unwrap();
    joined.await.unwrap();
    let joined = m.invite(&"org/ns/py".parse().unwrap()).await.unwrap();
    tokio::time::timeout(LIVENESS, joined)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.members().len(), 3);
    let py_name = m
        .members()
        .into_iter()
        .find(|n| n.prefix() == "org/ns/py".parse::<Name>().unwrap().prefix())
        .unwrap();
    for i in 0..N {
        m.publish(format!("q{i}").into_bytes(), HashMap::new())
            .await
            .unwrap();
    }
    let mut direct = Vec::new();
    let mut all = Vec::new();
    while direct.len() + all.len() < 2 * N {
        let (src, p, meta) = next_message(&mut m).await;
        if src != py_name {
            continue;
        }
        assert!(
            !meta.contains_key("PUBLISH_TO"),
            "flag is stripped before delivery"
        );
        let text = String::from_utf8(p).unwrap();
        if text.starts_with("direct") {
            direct.push(text);
        } else {
            all.push(text);
        }
    }
    let want = |prefix: &str| (0..N).map(|i| format!("{prefix} q{i}")).collect::<Vec<_>>();
    assert_eq!(all, want("all"), "sequenced broadcasts arrive in order");
    direct.sort();
    let mut want_direct = want("direct");
    want_direct.sort();
    assert_eq!(direct, want_direct);
    // The other Rust member hears the moderator and Python's broadcasts only.
    let mut from_py = Vec::new();
    let mut from_mod = 0;
    while from_py.len() < N || from_mod < N {
        let (src, p, _) = next_message(&mut r).await;
        if src == py_name {
            from_py.push(String::from_utf8(p).unwrap());
        } else {
            from_mod += 1;
        }
    }
    assert_eq!(from_py, want("all"));
    m.close().await.unwrap();
    wait_success(py).await;
}
