//! `slim-group` (ours) and `slim-bindings-group` (the official example of
//! the slim-bindings wheels: 3.3.8 on the v3 wire, 1.3.0 on v1 with our
//! `--protocol 1`) in one group session, MLS on, each program unchanged and
//! driven through its standard input as a user would type:
//!
//! * an official moderator invites our participants; every chat line
//!   reaches every other member and is answered by each
//!   (`message received by ...`), both ways, through our node and through
//!   the official node;
//! * our moderator invites official and our participants, adds one to the
//!   live group, removes one, and ends the group;
//! * one of our participants killed by PID is noticed by the official
//!   moderator (its heartbeat bookkeeping marks it offline), and the group
//!   goes on without it;
//! * one of our participants soft-closes (`soft-close`), misses a member
//!   joining, and rejoins (`rejoin`): the official moderator re-admits it
//!   and it reads and is read by everyone again.
//!
//! The official example reads its input with a terminal library, so it runs
//! under `script(1)`, which gives it a pseudo-terminal fed from a pipe.

use std::process::Command;
use std::time::{Duration, Instant};

use slimrpc_testkit::{Child, venv_script, venv3_script};

mod common;
use common::{official_node, plain, slim_node};

const LIMIT: Duration = Duration::from_secs(90);
const SECRET: &str = "a-shared-secret-for-the-group-example-tests-0123456789";

/// Which wheel an official program comes from.
#[derive(Clone, Copy)]
enum Line {
    /// slim-bindings 1.3.0 (SLIM v1 wire); ours runs with `--protocol 1`.
    V1,
    /// slim-bindings 3.3.8 (SLIM v3 wire); ours runs with its default.
    V3,
}

impl Line {
    fn protocol(self) -> &'static str {
        match self {
            Line::V1 => "1",
            Line::V3 => "3",
        }
    }
}

/// Our `slim-group`, with its standard input open for [`Child::send_line`].
fn ours(line: Line, local: &str, url: &str, extra: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slim-group"));
    cmd.args(["--protocol", line.protocol()])
        .args(["--local", local, "--slim", url, "--shared-secret", SECRET])
        .arg("--enable-mls")
        .args(extra);
    Child::spawn_interactive(&format!("ours-{}", local.replace('/', "-")), &mut cmd)
}

/// The official `slim-bindings-group`, under `script` with a piped input.
fn official(line: Line, local: &str, url: &str, extra: &[&str], rust_log: &str) -> Child {
    let program = match line {
        Line::V1 => venv_script("slim-bindings-group"),
        Line::V3 => venv3_script("slim-bindings-group"),
    };
    let command_line = format!(
        "{} --local {local} --slim {url} --shared-secret {SECRET} --enable-mls {}",
        program.display(),
        extra.join(" ")
    );
    Child::spawn_interactive(
        &format!("official-{}", local.replace('/', "-")),
        Command::new("script")
            .args(["-q", "-e", "-c", &command_line, "/dev/null"])
            .env("PYTHONUNBUFFERED", "1")
            .env("RUST_LOG", rust_log),
    )
}

/// How many output lines (escape sequences removed) contain `text`.
fn count(child: &Child, text: &str) -> usize {
    plain(&child.output())
        .iter()
        .filter(|l| l.contains(text))
        .count()
}

/// Waits until `child` printed at least `n` lines containing `text`.
fn wait_count(child: &Child, text: &str, n: usize) {
    let start = Instant::now();
    while count(child, text) < n {
        assert!(
            start.elapsed() < LIMIT,
            "expected {n} lines with {text:?}, got {}:\n{}",
            count(child, text),
            child.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Lines of `child` that contain both `a` and `b`.
fn lines_with(child: &Child, a: &str, b: &str) -> usize {
    plain(&child.output())
        .iter()
        .filter(|l| l.contains(a) && l.contains(b))
        .count()
}

/// An official moderator invites two of our participants; a line typed at
/// the moderator reaches both and each answers it; a line typed at one of
/// ours reaches the moderator and the other participant, and both answer.
fn official_moderator_with_our_participants(line: Line, (_node, url): (Child, String)) {
    let mut a = ours(line, "org/ns/gpa", &url, &[]);
    let b = ours(line, "org/ns/gpb", &url, &[]);
    wait_count(&a, "Waiting for session...", 1);
    wait_count(&b, "Waiting for session...", 1);
    let mut moderator = official(
        line,
        "org/ns/gmod",
        &url,
        &[
            "--remote org/ns/gchat",
            "--invites org/ns/gpa",
            "--invites org/ns/gpb",
        ],
        "info",
    );
    wait_count(&moderator, "Welcome to the group", 1);

    moderator.send_line("hello-from-official");
    wait_count(&a, "> hello-from-official", 1);
    wait_count(&b, "> hello-from-official", 1);
    wait_count(&moderator, "message received by", 2);
    assert_eq!(
        lines_with(&moderator, "message received by", "org/ns/gpa"),
        1,
        "{}",
        moderator.output()
    );
    assert_eq!(
        lines_with(&moderator, "message received by", "org/ns/gpb"),
        1,
        "{}",
        moderator.output()
    );

    a.send_line("hello-from-ours");
    wait_count(&moderator, "> hello-from-ours", 1);
    wait_count(&b, "> hello-from-ours", 1);
    // Answers from the moderator and from b, to a only.
    wait_count(&a, "message received by", 2);
    assert_eq!(
        lines_with(&a, "message received by", "org/ns/gmod"),
        1,
        "{}",
        a.output()
    );
    assert_eq!(count(&b, "message received by"), 0, "{}", b.output());
}

#[test]
fn official_3_3_8_moderator_and_our_participants_chat_both_ways_with_mls_through_our_node() {
    official_moderator_with_our_participants(Line::V3, slim_node());
}

#[test]
fn official_3_3_8_moderator_and_our_participants_chat_both_ways_with_mls_through_the_official_node()
{
    official_moderator_with_our_participants(Line::V3, official_node());
}

#[test]
fn official_1_3_moderator_and_our_v1_participants_chat_both_ways_with_mls_through_our_node() {
    official_moderator_with_our_participants(Line::V1, slim_node());
}

#[test]
fn our_moderator_invites_adds_removes_official_3_3_8_participants_and_ends_the_group() {
    let (_node, url) = slim_node();
    let p1 = official(Line::V3, "org/ns/gp1", &url, &[], "info");
    let p2 = ours(Line::V3, "org/ns/gp2", &url, &[]);
    let p3 = official(Line::V3, "org/ns/gp3", &url, &[], "info");
    for p in [&p1, &p2, &p3] {
        wait_count(p, "Waiting for session", 1);
    }
    let mut moderator = ours(
        Line::V3,
        "org/ns/gmod",
        &url,
        &[
            "--remote",
            "org/ns/gchat",
            "--invites",
            "org/ns/gp1",
            "--invites",
            "org/ns/gp2",
        ],
    );
    wait_count(&moderator, "Welcome to the group", 1);
    assert_eq!(count(&moderator, "-> add org/ns/gp"), 2);

    moderator.send_line("round-one");
    wait_count(&p1, "> round-one", 1);
    wait_count(&p2, "> round-one", 1);
    wait_count(&moderator, "message received by", 2);

    // A third member joins the live group.
    moderator.send_line("invite org/ns/gp3");
    wait_count(&moderator, "org/ns/gp3 joined the group", 1);
    moderator.send_line("round-two");
    for p in [&p1, &p2, &p3] {
        wait_count(p, "> round-two", 1);
    }
    wait_count(&moderator, "message received by", 5);

    // One leaves it.
    moderator.send_line("remove org/ns/gp1");
    wait_count(&moderator, "org/ns/gp1 removed from the group", 1);
    moderator.send_line("round-three");
    wait_count(&p2, "> round-three", 1);
    wait_count(&p3, "> round-three", 1);
    wait_count(&moderator, "message received by", 7);
    assert_eq!(count(&p1, "round-three"), 0, "{}", p1.output());

    // The moderator leaving ends the group for everyone.
    moderator.send_line("exit");
    let (code, out) = moderator.wait_exit(LIMIT);
    assert_eq!(code, Some(0), "{out}");
    wait_count(&p2, "Session closed", 1);
}

#[test]
fn our_participant_killed_is_marked_offline_by_the_official_3_3_8_moderator() {
    let (_node, url) = slim_node();
    let a = ours(Line::V3, "org/ns/gka", &url, &[]);
    let mut b = ours(Line::V3, "org/ns/gkb", &url, &[]);
    wait_count(&a, "Waiting for session...", 1);
    wait_count(&b, "Waiting for session...", 1);
    // The moderator's heartbeat bookkeeping logs at debug level only.
    let mut moderator = official(
        Line::V3,
        "org/ns/gkmod",
        &url,
        &[
            "--remote org/ns/gkchat",
            "--invites org/ns/gka",
            "--invites org/ns/gkb",
        ],
        "info,slim_session=debug",
    );
    wait_count(&moderator, "Welcome to the group", 1);
    moderator.send_line("before");
    wait_count(&moderator, "message received by", 2);
    assert_eq!(
        count(&moderator, "participant detected offline"),
        0,
        "{}",
        moderator.output()
    );

    b.kill();
    // Three missed heartbeats of 10 s each, plus slack.
    wait_count(&moderator, "participant detected offline", 1);
    assert_eq!(
        lines_with(&moderator, "participant detected offline", "org/ns/gkb"),
        count(&moderator, "participant detected offline"),
        "another member than the killed one was marked offline:\n{}",
        moderator.output()
    );
    moderator.send_line("after");
    wait_count(&a, "> after", 1);
    wait_count(&moderator, "message received by", 3);
}

#[test]
fn our_participant_soft_closes_and_rejoins_an_official_3_3_8_moderators_group_that_moved_on() {
    let (_node, url) = slim_node();
    let mut a = ours(Line::V3, "org/ns/spa", &url, &[]);
    let b = ours(Line::V3, "org/ns/spb", &url, &[]);
    let c = ours(Line::V3, "org/ns/spc", &url, &[]);
    for p in [&a, &b, &c] {
        wait_count(p, "Waiting for session...", 1);
    }
    let mut moderator = official(
        Line::V3,
        "org/ns/smod",
        &url,
        &[
            "--remote org/ns/schat",
            "--invites org/ns/spa",
            "--invites org/ns/spb",
        ],
        "info",
    );
    wait_count(&moderator, "Welcome to the group", 1);
    wait_count(&a, "Welcome to the group", 1);

    a.send_line("soft-close");
    wait_count(&a, "offline: the group acknowledged", 1);
    moderator.send_line("while-away");
    wait_count(&b, "> while-away", 1);
    // The group moves on while a is away: a third member joins.
    moderator.send_line("invite org/ns/spc");
    wait_count(&c, "Welcome to the group", 1);
    assert_eq!(count(&a, "> while-away"), 0, "{}", a.output());

    a.send_line("rejoin");
    wait_count(&a, "back online in the group", 1);
    moderator.send_line("after-rejoin");
    wait_count(&a, "> after-rejoin", 1);
    wait_count(&c, "> after-rejoin", 1);
    a.send_line("from-a-again");
    wait_count(&moderator, "> from-a-again", 1);
    wait_count(&b, "> from-a-again", 1);
    wait_count(&c, "> from-a-again", 1);
}
