//! `slim-p2p` (ours) and `slim-bindings-p2p` (the official example from the
//! slim-bindings wheels: 1.3.0 on the SLIM v1 wire with our `--protocol 1`,
//! 3.3.8 on the v3 wire with our default `--protocol 3`) are
//! interchangeable on either end of a point-to-point session through our
//! `slim` node (and through the official 3.3.8 node) on 127.0.0.1, with MLS
//! off (both examples' default) and on (`--enable-mls` on both ends: the
//! 1.3 suite on v1, P-256 with the header checked as MLS AAD on v3):
//! the sender prints every echo `"<text> from <listener instance>"` as
//! `received (from session <id>): ...`, the listener prints what it got.

use std::process::Command;
use std::time::Duration;

use slimrpc_testkit::{Child, venv_script, venv3_script};

mod common;
use common::{official_node, plain, slim_node as node};

const LIMIT: Duration = Duration::from_secs(90);
const SECRET: &str = "kjandjansdiasb8udaijdniasdaindasndasndasndasndasndasndasndas";
const ITERATIONS: usize = 3;

/// Our `slim-p2p` on a given wire (`--protocol`), or the official example
/// of the 1.3.0 (v1) or 3.3.8 (v3) wheel.
#[derive(Clone, Copy)]
enum Impl {
    Ours(&'static str),
    Official1,
    Official3,
}

fn p2p(which: Impl, label: &str, args: &[&str]) -> Child {
    let mut cmd = match which {
        Impl::Ours(protocol) => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_slim-p2p"));
            c.args(["--protocol", protocol]);
            c
        }
        Impl::Official1 => Command::new(venv_script("slim-bindings-p2p")),
        Impl::Official3 => Command::new(venv3_script("slim-bindings-p2p")),
    };
    // Python block-buffers a piped stdout; the test reads it while it runs.
    cmd.env("PYTHONUNBUFFERED", "1")
        .args(args)
        .args(["--shared-secret", SECRET]);
    Child::spawn(label, &mut cmd)
}

/// The instance id an example printed in its "Created app" line.
fn instance(out: &str) -> String {
    plain(out)
        .iter()
        .find(|l| l.contains("Created app"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| panic!("no 'Created app' line in:\n{out}"))
}

/// Lines whose text after the label column is exactly `text`.
fn count_lines(out: &str, text: &str) -> usize {
    plain(out)
        .iter()
        .filter(|l| l.trim_end().ends_with(text))
        .count()
}

fn listener_and_sender_exchange(listener_impl: Impl, sender_impl: Impl, mls: bool) {
    exchange_through(node(), listener_impl, sender_impl, mls);
}

fn exchange_through(node: (Child, String), listener_impl: Impl, sender_impl: Impl, mls: bool) {
    exchange_n(node, listener_impl, sender_impl, mls, ITERATIONS);
}

/// `n` messages from the sender, each echoed by the listener: `n` each way
/// in one session. Our sender runs without the official pause between
/// rounds (`--pause-ms 0`); the official one keeps its 1 s.
fn exchange_n(node: (Child, String), listener_impl: Impl, sender_impl: Impl, mls: bool, n: usize) {
    let (_node, url) = node;
    let mls_flag: &[&str] = if mls { &["--enable-mls"] } else { &[] };
    let listener_args = [&["--local", "org/ns/bob", "--slim", &url][..], mls_flag].concat();
    let mut listener = p2p(listener_impl, "p2p-listener", &listener_args);
    listener.wait_for("waiting for new session to be established", LIMIT);
    let bob = instance(&listener.output());

    let iterations = n.to_string();
    let pace: &[&str] = match sender_impl {
        Impl::Ours(_) => &["--pause-ms", "0"],
        _ => &[],
    };
    let sender_args = [
        &[
            "--local",
            "org/ns/alice",
            "--remote",
            "org/ns/bob",
            "--slim",
            &url,
            "--message",
            "hello",
            "--iterations",
            &iterations,
        ][..],
        mls_flag,
        pace,
    ]
    .concat();
    let mut sender = p2p(sender_impl, "p2p-sender", &sender_args);
    // The official sender pauses 1 s per round.
    let (code, out) = sender.wait_exit(LIMIT + Duration::from_secs(n as u64));
    assert_eq!(code, Some(0), "sender failed:\n{out}");
    let lines = plain(&out);
    let replies: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("received (from session "))
        .collect();
    assert_eq!(replies.len(), n, "sender output:\n{out}");
    for r in &replies {
        // The 3.3.8 example prints its id capitalised in "Created app"
        // and lower-case in its echo.
        assert!(
            r.trim_end()
                .to_lowercase()
                .ends_with(&format!("): hello from {}", bob.to_lowercase())),
            "reply line {r:?} does not carry the listener's echo"
        );
    }
    for i in 1..=n {
        assert_eq!(
            count_lines(&out, &format!("Sent message hello - {i}/{n}")),
            1,
            "sender output:\n{out}"
        );
    }
    assert_eq!(
        count_lines(&listener.output(), "received: hello"),
        n,
        "listener output:\n{}",
        listener.output()
    );
    assert!(
        plain(&listener.output())
            .iter()
            .any(|l| l.contains("new session ")),
        "listener never reported the session:\n{}",
        listener.output()
    );
}

#[test]
fn our_listener_echoes_every_message_of_the_official_1_3_sender() {
    listener_and_sender_exchange(Impl::Ours("1"), Impl::Official1, false);
}

#[test]
fn official_1_3_listener_echoes_every_message_of_our_sender() {
    listener_and_sender_exchange(Impl::Official1, Impl::Ours("1"), false);
}

#[test]
fn our_listener_echoes_every_message_of_our_sender() {
    listener_and_sender_exchange(Impl::Ours("1"), Impl::Ours("1"), false);
}

#[test]
fn our_listener_echoes_every_message_of_the_official_1_3_sender_with_mls() {
    listener_and_sender_exchange(Impl::Ours("1"), Impl::Official1, true);
}

#[test]
fn official_1_3_listener_echoes_every_message_of_our_sender_with_mls() {
    listener_and_sender_exchange(Impl::Official1, Impl::Ours("1"), true);
}

#[test]
fn our_listener_echoes_every_message_of_our_sender_with_mls() {
    listener_and_sender_exchange(Impl::Ours("1"), Impl::Ours("1"), true);
}

#[test]
fn our_v3_listener_echoes_every_message_of_the_official_3_3_8_sender() {
    listener_and_sender_exchange(Impl::Ours("3"), Impl::Official3, false);
}

#[test]
fn official_3_3_8_listener_echoes_every_message_of_our_v3_sender() {
    listener_and_sender_exchange(Impl::Official3, Impl::Ours("3"), false);
}

#[test]
fn our_v3_listener_echoes_every_message_of_the_official_3_3_8_sender_with_mls() {
    listener_and_sender_exchange(Impl::Ours("3"), Impl::Official3, true);
}

#[test]
fn official_3_3_8_listener_echoes_every_message_of_our_v3_sender_with_mls() {
    listener_and_sender_exchange(Impl::Official3, Impl::Ours("3"), true);
}

#[test]
fn our_v3_listener_and_sender_exchange_with_mls() {
    listener_and_sender_exchange(Impl::Ours("3"), Impl::Ours("3"), true);
}

#[test]
fn ours_and_the_official_3_3_8_example_exchange_through_the_official_node() {
    exchange_through(official_node(), Impl::Official3, Impl::Ours("3"), false);
    exchange_through(official_node(), Impl::Ours("3"), Impl::Official3, true);
}

#[test]
fn our_v3_sender_refused_by_an_official_3_3_8_listener_for_its_secret_says_so() {
    let (_node, url) = node();
    let mut listener = p2p(
        Impl::Official3,
        "p2p-listener-other-secret",
        &["--local", "org/ns/bob", "--slim", &url],
    );
    listener.wait_for("waiting for new session to be established", LIMIT);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slim-p2p"));
    cmd.args([
        "--local",
        "org/ns/alice",
        "--remote",
        "org/ns/bob",
        "--slim",
        &url,
        "--message",
        "hello",
        "--iterations",
        "1",
        "--shared-secret",
        "another-shared-secret-of-at-least-32-bytes",
    ]);
    let mut sender = Child::spawn("p2p-sender-other-secret", &mut cmd);
    let (code, out) = sender.wait_exit(LIMIT);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("does not use our shared secret"),
        "the error does not name the cause:\n{out}"
    );
    // The official side refused our tokens, as it logs.
    assert!(
        listener.output().contains("identity verification failed"),
        "{}",
        listener.output()
    );
}

#[test]
fn our_sender_without_remote_fails_with_the_official_error() {
    let (_node, url) = node();
    let mut sender = p2p(
        Impl::Ours("3"),
        "p2p-no-remote",
        &[
            "--local",
            "org/ns/alice",
            "--slim",
            &url,
            "--message",
            "hello",
        ],
    );
    let (code, out) = sender.wait_exit(LIMIT);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("Error: Remote ID must be provided when message is specified."),
        "{out}"
    );
}

/// With MLS on the v3 wire, the messages and their echoes cross our node
/// (in process here, so every publish it forwards can be inspected)
/// encrypted: no MSG it forwards carries the text in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mls_on_v3_no_message_text_crosses_our_node_in_clear() {
    use slim_transport::wire3;
    let node = slim_transport::service::Service::new();
    let addr = node
        .run_server("127.0.0.1:0".parse().unwrap())
        .await
        .expect("node listens");
    let mut tap = node.tap_publishes3(100_000);
    let url = format!("http://{addr}");
    let marker = "clear-text-marker-7f3a";
    let (url2, marker2) = (url.clone(), marker.to_string());
    let sender_out = tokio::task::spawn_blocking(move || {
        let mut listener = p2p(
            Impl::Official3,
            "p2p-listener-clear",
            &["--local", "org/ns/bob", "--slim", &url2, "--enable-mls"],
        );
        listener.wait_for("waiting for new session to be established", LIMIT);
        let iterations = ITERATIONS.to_string();
        let mut sender = p2p(
            Impl::Ours("3"),
            "p2p-sender-clear",
            &[
                "--local",
                "org/ns/alice",
                "--remote",
                "org/ns/bob",
                "--slim",
                &url2,
                "--message",
                &marker2,
                "--iterations",
                &iterations,
                "--enable-mls",
            ],
        );
        sender.wait_exit(LIMIT)
    })
    .await
    .expect("runner ran");
    let (code, out) = sender_out;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        plain(&out)
            .iter()
            .filter(|l| l.contains("received (from session "))
            .count(),
        ITERATIONS,
        "{out}"
    );
    let mut msgs = 0;
    while let Ok(m) = tap.try_recv() {
        let Some(wire3::message::MessageType::Publish(p)) = &m.message_type else {
            continue;
        };
        let is_msg = p
            .session
            .is_some_and(|s| s.session_message_type == wire3::SessionMessageType::Msg as i32);
        if !is_msg {
            continue;
        }
        if let Some(wire3::Content {
            content_type: Some(wire3::content::ContentType::AppPayload(a)),
        }) = &p.msg
        {
            msgs += 1;
            assert!(
                !a.blob.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "a MSG crossed the node in clear"
            );
        }
    }
    // Each round: our message and the listener's echo, both through the node.
    assert!(msgs >= 2 * ITERATIONS, "only {msgs} MSGs seen at the node");
    node.shutdown().await;
}

#[test]
fn our_v3_sender_and_the_official_3_3_8_listener_exchange_100_messages_each_way_with_mls() {
    exchange_n(node(), Impl::Official3, Impl::Ours("3"), true, 100);
}

#[test]
fn the_official_3_3_8_sender_and_our_v3_listener_exchange_100_messages_each_way_with_mls() {
    exchange_n(node(), Impl::Ours("3"), Impl::Official3, true, 100);
}
