//! Interop of our session layer with the official SLIM v1.3 Python bindings
//! (`slim_bindings` 1.3.0): the Python app connects over gRPC to a Rust node
//! on 127.0.0.1 that also hosts our Rust apps (or to an official node our
//! apps connect to). The first tests run with MLS off; the `mls_*` tests
//! run every session shape with MLS on, through both nodes.

mod session_common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use session_common::{LIVENESS, app};
use slim_transport::Name;
use slim_transport::app::{App, Session, SessionConfig, SessionEvent, SessionKind};
use slim_transport::service::Service;
use slimrpc_testkit::Child;

const N: usize = 20;

async fn node() -> (Service, u16) {
    let service = Service::new();
    let addr = service
        .run_server("127.0.0.1:0".parse().unwrap())
        .await
        .expect("server runs");
    (service, addr.port())
}

/// Sessions with MLS off (what the first tests exercise).
fn plain() -> SessionConfig {
    SessionConfig {
        mls: false,
        ..SessionConfig::default()
    }
}

fn python(port: u16, mode: &str) -> Child {
    python_as(port, mode, N, false, "org/ns/py")
}

/// The official peer in `mode`, exchanging `n` messages, creating its
/// sessions with MLS on when `mls`, named `name`.
fn python_as(port: u16, mode: &str, n: usize, mls: bool, name: &str) -> Child {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/session_peer.py");
    Child::spawn(
        &format!("slim-py-{mode}-{}", name.replace('/', "_")),
        Command::new(slimrpc_testkit::python())
            .arg(script)
            .arg(port.to_string())
            .arg(mode)
            .arg(n.to_string())
            .arg(if mls { "mls" } else { "plain" })
            .arg(name),
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
        .create_session(plain(), &"org/ns/py".parse().unwrap())
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
        ..plain()
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
        let text = String::from_utf8(p).unwrap();
        // As the official apps do, the app sees which messages were
        // answers (PUBLISH_TO) and which were sent to the group.
        assert_eq!(
            meta.contains_key("PUBLISH_TO"),
            text.starts_with("direct"),
            "PUBLISH_TO marks exactly the direct answers: {text}"
        );
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
        .create_session(plain(), &"org/ns/py".parse().unwrap())
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
        ..plain()
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

// ----- MLS on ------------------------------------------------------------------------

/// Messages each way in every MLS case.
const N_MLS: usize = 100;

/// Which node the apps meet at.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// Our node (`Service::run_server`), hosting our apps in process.
    Ours,
    /// The official embedded node (`slim-bindings-server`); our apps
    /// connect to it as a client.
    Official,
}

struct Net {
    service: Service,
    /// Every Publish our node forwarded (to our apps, and to and from the
    /// official node over the link).
    tap: tokio::sync::mpsc::Receiver<slim_transport::wire::Message>,
    port: u16,
    link: Option<slim_transport::app::ConnId>,
    _node: Option<Child>,
}

async fn net(via: Via) -> Net {
    match via {
        Via::Ours => {
            let (service, port) = node().await;
            Net {
                tap: service.tap_publishes(100_000),
                service,
                port,
                link: None,
                _node: None,
            }
        }
        Via::Official => {
            let (node, port) = official_node().await;
            let service = Service::new();
            let link = tokio::time::timeout(
                LIVENESS,
                service.connect(&format!("http://127.0.0.1:{port}")),
            )
            .await
            .expect("connect in time")
            .expect("connected to the official node");
            Net {
                tap: service.tap_publishes(100_000),
                service,
                port,
                link: Some(link),
                _node: Some(node),
            }
        }
    }
}

/// A Rust app reachable from the Python apps on `net`.
async fn net_app(net: &Net, name: &str) -> App {
    let a = app(&net.service, name).await;
    if let Some(link) = net.link {
        let own = a.name().clone();
        a.subscribe(&own, Some(link)).await.unwrap();
        for py in ["org/ns/py", "org/ns/py2"] {
            a.set_route(&py.parse().unwrap(), link).await.unwrap();
        }
    }
    a
}

/// MLS was really on: of all the application messages that crossed our
/// node, none carried a payload in the clear.
fn assert_no_plaintext_crossed(net: &mut Net, via: Via) {
    use prost::Message as _;
    use slim_transport::wire::{SessionMessageType, message::MessageType};
    let mut msgs = 0;
    while let Ok(m) = net.tap.try_recv() {
        if let Some(MessageType::Publish(p)) = &m.message_type
            && p.session.as_ref().map(|s| s.session_message_type)
                == Some(SessionMessageType::Msg as i32)
        {
            msgs += 1;
        }
        let bytes = m.encode_to_vec();
        // Only needles with a space: base64 identity tokens cannot hold them.
        for needle in [b"ping ".as_slice(), b"pong ", b"ack m"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "plaintext crossed the node via {via:?}: {m:?}"
            );
        }
    }
    assert!(
        msgs >= N_MLS,
        "the tap saw the messages ({msgs}) via {via:?}"
    );
}

fn is_from(src: &Name, base: &str) -> bool {
    src.prefix() == base.parse::<Name>().unwrap().prefix()
}

/// Our app creates an MLS P2P session to the official app; N_MLS each way.
async fn mls_p2p_created_by_rust(via: Via) {
    let mut net = net(via).await;
    let rusty = net_app(&net, "org/ns/rusty").await;
    let py = wait_for(
        python_as(net.port, "accept", N_MLS, true, "org/ns/py"),
        "PY_READY",
    )
    .await;
    let config = SessionConfig::default();
    assert!(config.mls);
    let (mut s, done) = rusty
        .create_session(config, &"org/ns/py".parse().unwrap())
        .await
        .unwrap();
    tokio::time::timeout(LIVENESS, done).await.unwrap().unwrap();
    for i in 0..N_MLS {
        s.publish(format!("ping {i}").into_bytes(), HashMap::new())
            .await
            .unwrap();
        let (_, p, _) = next_message(&mut s).await;
        assert_eq!(p, format!("pong {i}").into_bytes(), "{via:?}");
    }
    s.close().await.unwrap();
    wait_success(py).await;
    assert_no_plaintext_crossed(&mut net, via);
}

/// The official app creates an MLS P2P session to ours; N_MLS each way.
async fn mls_p2p_created_by_python(via: Via) {
    let mut net = net(via).await;
    let rusty = net_app(&net, "org/ns/rusty").await;
    let py = python_as(net.port, "initiate", N_MLS, true, "org/ns/py");
    let mut s = tokio::time::timeout(LIVENESS, rusty.listen_for_session())
        .await
        .expect("python created a session in time")
        .unwrap();
    for i in 0..N_MLS {
        let (_, p, _) = next_message(&mut s).await;
        assert_eq!(p, format!("ping {i}").into_bytes(), "{via:?}");
        s.publish(format!("pong {i}").into_bytes(), HashMap::new())
            .await
            .unwrap();
    }
    wait_success(py).await;
    assert_no_plaintext_crossed(&mut net, via);
}

/// The official moderator invites our participant and an official one into
/// an MLS group; each member acks each of N_MLS broadcasts to the channel.
async fn mls_group_moderated_by_python(via: Via) {
    let mut net = net(via).await;
    let rust0 = net_app(&net, "org/ns/rust0").await;
    let py2 = wait_for(
        python_as(net.port, "member", N_MLS, true, "org/ns/py2"),
        "PY_READY",
    )
    .await;
    let py = python_as(net.port, "mlsmoderate", N_MLS, true, "org/ns/py");
    let mut s = tokio::time::timeout(LIVENESS, rust0.listen_for_session())
        .await
        .expect("invited in time")
        .unwrap();
    assert_eq!(s.kind(), SessionKind::Group);
    let mut from_moderator = 0;
    let mut from_py2 = 0;
    while from_moderator < N_MLS || from_py2 < N_MLS {
        let (src, p, _) = next_message(&mut s).await;
        let text = String::from_utf8(p).unwrap();
        if is_from(&src, "org/ns/py") {
            assert_eq!(text, format!("m{from_moderator}"), "{via:?}");
            from_moderator += 1;
            s.publish(format!("ack {text}").into_bytes(), HashMap::new())
                .await
                .unwrap();
        } else if is_from(&src, "org/ns/py2") {
            assert_eq!(text, format!("ack m{from_py2}"), "{via:?}");
            from_py2 += 1;
        }
    }
    wait_success(py).await;
    wait_success(py2).await;
    assert_no_plaintext_crossed(&mut net, via);
}

/// Our moderator invites two official participants into an MLS group; each
/// acks each of N_MLS broadcasts to the channel; then it removes one and
/// the other still reads (and answers) the next broadcast.
async fn mls_group_moderated_by_rust(via: Via) {
    let mut net = net(via).await;
    let moderator = net_app(&net, "org/ns/rusty").await;
    let members = [
        wait_for(
            python_as(net.port, "member", N_MLS, true, "org/ns/py"),
            "PY_READY",
        )
        .await,
        wait_for(
            python_as(net.port, "member", N_MLS, true, "org/ns/py2"),
            "PY_READY",
        )
        .await,
    ];
    let (mut m, ready) = moderator
        .create_session(
            SessionConfig {
                kind: SessionKind::Group,
                ..SessionConfig::default()
            },
            &"org/ns/mlschat".parse().unwrap(),
        )
        .await
        .unwrap();
    ready.await.unwrap();
    for who in ["org/ns/py", "org/ns/py2"] {
        let joined = m.invite(&who.parse().unwrap()).await.unwrap();
        tokio::time::timeout(LIVENESS, joined)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{who} joins via {via:?}: {e}"));
    }
    assert_eq!(m.members().len(), 3);
    for i in 0..N_MLS {
        m.publish(format!("m{i}").into_bytes(), HashMap::new())
            .await
            .unwrap();
    }
    let mut acks = [0usize; 2];
    while acks.iter().any(|&a| a < N_MLS) {
        let (src, p, _) = next_message(&mut m).await;
        let k = usize::from(is_from(&src, "org/ns/py2"));
        assert_eq!(
            p,
            format!("ack m{}", acks[k]).into_bytes(),
            "{via:?} from {src}"
        );
        acks[k] += 1;
    }
    // Removing one official member (a GROUP_REMOVE commit every remaining
    // member must apply): its session ends, and the other still decrypts.
    let py2 = m
        .members()
        .into_iter()
        .find(|n| is_from(n, "org/ns/py2"))
        .unwrap();
    m.remove(&py2).await.unwrap();
    assert_eq!(m.members().len(), 2);
    m.publish(b"final".to_vec(), HashMap::new()).await.unwrap();
    loop {
        let (src, p, _) = next_message(&mut m).await;
        if p == b"ack final" {
            assert!(is_from(&src, "org/ns/py"), "{via:?}: {src}");
            break;
        }
    }
    m.close().await.unwrap();
    for py in members {
        wait_success(py).await;
    }
    assert_no_plaintext_crossed(&mut net, via);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mls_p2p_created_by_rust_with_python_via_our_node() {
    mls_p2p_created_by_rust(Via::Ours).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mls_p2p_created_by_rust_with_python_via_official_node() {
    mls_p2p_created_by_rust(Via::Official).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mls_p2p_created_by_python_with_rust_via_our_node() {
    mls_p2p_created_by_python(Via::Ours).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mls_p2p_created_by_python_with_rust_via_official_node() {
    mls_p2p_created_by_python(Via::Official).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mls_python_moderator_with_rust_and_python_members_via_our_node() {
    mls_group_moderated_by_python(Via::Ours).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mls_python_moderator_with_rust_and_python_members_via_official_node() {
    mls_group_moderated_by_python(Via::Official).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mls_rust_moderator_with_two_python_members_via_our_node() {
    mls_group_moderated_by_rust(Via::Ours).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mls_rust_moderator_with_two_python_members_via_official_node() {
    mls_group_moderated_by_rust(Via::Official).await;
}
