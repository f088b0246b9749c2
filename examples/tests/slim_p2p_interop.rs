//! `slim-p2p` (ours) and `slim-bindings-p2p` (the official example from the
//! slim-bindings 1.3.0 wheel) are interchangeable on either end of a
//! point-to-point session through our `slim` node on 127.0.0.1, with MLS
//! off (both examples' default) and on (`--enable-mls` on both ends):
//! the sender prints every echo `"<text> from <listener instance>"` as
//! `received (from session <id>): ...`, the listener prints what it got.

use std::process::Command;
use std::time::Duration;

use slimrpc_testkit::{Child, bin, free_port, venv_script};

const LIMIT: Duration = Duration::from_secs(90);
const SECRET: &str = "kjandjansdiasb8udaijdniasdaindasndasndasndasndasndasndasndas";
const ITERATIONS: usize = 3;

fn node() -> (Child, String) {
    let port = free_port();
    let mut n = Child::spawn(
        "p2p-node",
        Command::new(bin("slim")).args(["--endpoint", &format!("127.0.0.1:{port}")]),
    );
    n.wait_for("slim node listening on", LIMIT);
    (n, format!("http://127.0.0.1:{port}"))
}

#[derive(Clone, Copy)]
enum Impl {
    Ours,
    Official,
}

fn p2p(which: Impl, label: &str, args: &[&str]) -> Child {
    let mut cmd = match which {
        Impl::Ours => Command::new(env!("CARGO_BIN_EXE_slim-p2p")),
        Impl::Official => Command::new(venv_script("slim-bindings-p2p")),
    };
    // Python block-buffers a piped stdout; the test reads it while it runs.
    cmd.env("PYTHONUNBUFFERED", "1")
        .args(args)
        .args(["--shared-secret", SECRET]);
    Child::spawn(label, &mut cmd)
}

/// Output lines without the ANSI colour codes of the examples' two-column
/// format.
fn plain(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| {
            let mut s = String::new();
            let mut chars = l.chars();
            while let Some(c) = chars.next() {
                if c == '\u{1b}' {
                    // Skip "[...m".
                    for d in chars.by_ref() {
                        if d == 'm' {
                            break;
                        }
                    }
                } else {
                    s.push(c);
                }
            }
            s
        })
        .collect()
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
    let (_node, url) = node();
    let mls_flag: &[&str] = if mls { &["--enable-mls"] } else { &[] };
    let listener_args = [&["--local", "org/ns/bob", "--slim", &url][..], mls_flag].concat();
    let mut listener = p2p(listener_impl, "p2p-listener", &listener_args);
    listener.wait_for("waiting for new session to be established", LIMIT);
    let bob = instance(&listener.output());

    let iterations = ITERATIONS.to_string();
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
    ]
    .concat();
    let mut sender = p2p(sender_impl, "p2p-sender", &sender_args);
    let (code, out) = sender.wait_exit(LIMIT);
    assert_eq!(code, Some(0), "sender failed:\n{out}");
    let lines = plain(&out);
    let replies: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("received (from session "))
        .collect();
    assert_eq!(replies.len(), ITERATIONS, "sender output:\n{out}");
    for r in &replies {
        assert!(
            r.trim_end().ends_with(&format!("): hello from {bob}")),
            "reply line {r:?} does not carry the listener's echo"
        );
    }
    for i in 1..=ITERATIONS {
        assert_eq!(
            count_lines(&out, &format!("Sent message hello - {i}/{ITERATIONS}")),
            1,
            "sender output:\n{out}"
        );
    }
    assert_eq!(
        count_lines(&listener.output(), "received: hello"),
        ITERATIONS,
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
fn our_listener_echoes_every_message_of_the_official_sender() {
    listener_and_sender_exchange(Impl::Ours, Impl::Official, false);
}

#[test]
fn official_listener_echoes_every_message_of_our_sender() {
    listener_and_sender_exchange(Impl::Official, Impl::Ours, false);
}

#[test]
fn our_listener_echoes_every_message_of_our_sender() {
    listener_and_sender_exchange(Impl::Ours, Impl::Ours, false);
}

#[test]
fn our_listener_echoes_every_message_of_the_official_sender_with_mls() {
    listener_and_sender_exchange(Impl::Ours, Impl::Official, true);
}

#[test]
fn official_listener_echoes_every_message_of_our_sender_with_mls() {
    listener_and_sender_exchange(Impl::Official, Impl::Ours, true);
}

#[test]
fn our_listener_echoes_every_message_of_our_sender_with_mls() {
    listener_and_sender_exchange(Impl::Ours, Impl::Ours, true);
}

#[test]
fn our_sender_without_remote_fails_with_the_official_error() {
    let (_node, url) = node();
    let mut sender = p2p(
        Impl::Ours,
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
