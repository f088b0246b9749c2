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

async fn next_event(s: &mut Session) -> SessionEvent {
    tokio::time::timeout(LIVENESS, s.recv())
        .await
        .expect("event in time")
        .expect("session open")
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
async fn python_participant_joins_a_rust_group_talks_to_everyone_and_is_removed() {
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
    // Idle past three ping rounds: our pings keep the official participant
    // in the session (it closes after 3 silent intervals otherwise), and its
    // echoes keep it a member (we remove it after 3 missed rounds).
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(m.members().len(), 3);
    m.publish(b"late".to_vec(), HashMap::new()).await.unwrap();
    let mut late = 0;
    while late < 2 {
        let (src, p, _) = next_message(&mut m).await;
        if src == py_name && p.ends_with(b"late") {
            late += 1;
        }
    }
    // Removing the official participant: GROUP_REMOVE to the channel (three
    // members), then LEAVE_REQUEST; its session closes, ours goes on.
    m.remove(&py_name).await.unwrap();
    assert_eq!(m.members().len(), 2);
    wait_success(py).await;
    loop {
        match next_event(&mut r).await {
            SessionEvent::MemberLeft(n) if n == py_name => break,
            _ => {}
        }
    }
    m.publish(b"just us".to_vec(), HashMap::new())
        .await
        .unwrap();
    loop {
        let (_, p, _) = next_message(&mut r).await;
        if p == b"just us" {
            break;
        }
    }
    m.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_participants_serve_a_python_group_across_ping_rounds() {
    let (service, port) = node().await;
    let apps = [
        app(&service, "org/ns/rust0").await,
        app(&service, "org/ns/rust1").await,
    ];
    let py = python(port, "moderate");
    let mut members = Vec::new();
    for a in &apps {
        let s = tokio::time::timeout(LIVENESS, a.listen_for_session())
            .await
            .expect("invited in time")
            .unwrap();
        assert_eq!(s.kind(), SessionKind::Group);
        members.push(s);
    }
    let py = wait_for(py, "PY_INVITED").await;
    let tasks: Vec<_> = members
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut from_py = 0;
                loop {
                    let (src, p, _) = next_message(&mut s).await;
                    if src.prefix() != "org/ns/py".parse::<Name>().unwrap().prefix() {
                        continue; // the other member's acks
                    }
                    let text = String::from_utf8(p).unwrap();
                    let moderator = src.clone();
                    if text == "still there?" {
                        s.publish_unicast(&moderator, b"yes".to_vec(), HashMap::new())
                            .await
                            .unwrap();
                        break;
                    }
                    assert_eq!(text, format!("m{from_py}"), "moderator's order kept");
                    from_py += 1;
                    s.publish_unicast(
                        &moderator,
                        format!("ack {text}").into_bytes(),
                        HashMap::new(),
                    )
                    .await
                    .unwrap();
                }
                // The Python moderator closes the session.
                loop {
                    match tokio::time::timeout(LIVENESS, s.recv())
                        .await
                        .expect("close in time")
                    {
                        Ok(SessionEvent::Closed { .. }) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                from_py
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), N);
    }
    wait_success(py).await;
}

/// An official SLIM node (`slim-bindings-server`) on a free loopback port.
async fn official_node() -> (Child, u16) {
    let port = slimrpc_testkit::free_port();
    let node = Child::spawn(
        "slim-official-node",
        Command::new(slimrpc_testkit::venv_script("slim-bindings-server"))
            .arg("--slim")
            .arg(format!("127.0.0.1:{port}")),
    );
    (wait_for(node, "Slim server started").await, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_app_behind_an_official_node_runs_p2p_and_group_sessions_with_python() {
    let (_node, port) = official_node().await;
    let service = Service::new();
    let link = tokio::time::timeout(
        LIVENESS,
        service.connect(&format!("http://127.0.0.1:{port}")),
    )
    .await
    .expect("connect in time")
    .expect("connected to the official node");
    let rusty = app(&service, "org/ns/rusty").await;
    let own = rusty.name().clone();
    rusty.subscribe(&own, Some(link)).await.unwrap();
    rusty
        .set_route(&"org/ns/py".parse().unwrap(), link)
        .await
        .unwrap();

    // P2P through the official node.
    let py = wait_for(python(port, "accept"), "PY_READY").await;
    let (mut s, done) = rusty
        .create_session(SessionConfig::default(), &"org/ns/py".parse().unwrap())
        .await
        .unwrap();
    tokio::time::timeout(LIVENESS, done).await.unwrap().unwrap();
    for i in 0..N {
        s.publish(format!("ping {i}").into_bytes(), HashMap::new())
            .await
            .unwrap();
        let (_, p, _) = next_message(&mut s).await;
        assert_eq!(p, format!("pong {i}").into_bytes());
    }
    s.close().await.unwrap();
    wait_success(py).await;

    // A group whose only other member sits behind the official node.
    let py = wait_for(python(port, "group"), "PY_READY").await;
    let config = SessionConfig {
        kind: SessionKind::Group,
        ..SessionConfig::default()
    };
    let (mut m, ready) = rusty
        .create_session(config, &"org/ns/remotechat".parse().unwrap())
        .await
        .unwrap();
    ready.await.unwrap();
    let joined = m.invite(&"org/ns/py".parse().unwrap()).await.unwrap();
    tokio::time::timeout(LIVENESS, joined)
        .await
        .unwrap()
        .unwrap();
    for i in 0..=N {
        m.publish(format!("q{i}").into_bytes(), HashMap::new())
            .await
            .unwrap();
    }
    let mut all = Vec::new();
    let mut direct = 0;
    while all.len() + direct < 2 * (N + 1) {
        let (_, p, _) = next_message(&mut m).await;
        let text = String::from_utf8(p).unwrap();
        if text.starts_with("direct") {
            direct += 1;
        } else {
            all.push(text);
        }
    }
    assert_eq!(
        all,
        (0..=N).map(|i| format!("all q{i}")).collect::<Vec<_>>()
    );
    m.close().await.unwrap();
    wait_success(py).await;
}
