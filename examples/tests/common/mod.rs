//! Helpers shared by the example-program tests: an in-process SLIM node on
//! 127.0.0.1 and spawning a program until it reports ready.

// Each test crate uses its own subset.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use slim_transport::service::Service;
use slimrpc_testkit::{Child, bin, free_port, venv3_script};

/// Liveness bound of every wait (generous: shared, loaded machine).
pub const LIMIT: Duration = Duration::from_secs(60);

/// A SLIM node (our `Service`) serving on 127.0.0.1; returns it and its URL.
pub async fn node() -> (Service, String) {
    let service = Service::new();
    let addr = tokio::time::timeout(LIMIT, service.run_server("127.0.0.1:0".parse().unwrap()))
        .await
        .expect("node starts in time")
        .expect("node listens");
    (service, format!("http://127.0.0.1:{}", addr.port()))
}

/// Spawns and waits (off the runtime's threads) until `needle` is printed.
pub async fn spawn_ready(name: &str, cmd: Command, needle: &'static str) -> Child {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let mut cmd = cmd;
        let mut child = Child::spawn(&name, &mut cmd);
        child.wait_for(needle, LIMIT);
        child
    })
    .await
    .expect("waiter ran")
}

/// Our `slim` node program on a free 127.0.0.1 port; returns it and its URL.
pub fn slim_node() -> (Child, String) {
    let port = free_port();
    let mut n = Child::spawn(
        "slim-node",
        Command::new(bin("slim")).args(["--endpoint", &format!("127.0.0.1:{port}")]),
    );
    n.wait_for("slim node listening on", LIMIT);
    (n, format!("http://127.0.0.1:{port}"))
}

/// The official 3.3.8 node (the wheel's `slim-bindings-server`) on a free
/// 127.0.0.1 port; returns it and its URL.
pub fn official_node() -> (Child, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut n = Child::spawn(
        "official-node",
        Command::new(venv3_script("slim-bindings-server"))
            .args(["--slim", &listen])
            .env("PYTHONUNBUFFERED", "1"),
    );
    n.wait_for("started on", LIMIT);
    (n, format!("http://{listen}"))
}

/// Output lines without the ANSI escape sequences of the examples' coloured
/// or terminal output.
pub fn plain(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| {
            let mut s = String::new();
            let mut chars = l.chars();
            while let Some(c) = chars.next() {
                if c == '\u{1b}' {
                    // Skip "[...<final letter>" (colours end in 'm', cursor
                    // and mode sequences in other letters).
                    for d in chars.by_ref() {
                        if d.is_ascii_alphabetic() {
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
