//! Interop of our `slim` node with the real peers of both SLIM generations:
//! the official `slim-bindings` 3.3.8 example programs (SLIM v3 wire) and
//! the 1.3.0 ones (v1 wire), unchanged, through one endpoint at the same
//! time; and our node linked to an official 3.3.8 node.

use std::process::Command;
use std::thread;
use std::time::Duration;

use slimrpc_testkit::{Child, free_port, venv_script, venv3_script};

const LIMIT: Duration = Duration::from_secs(120);
const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!!";

#[derive(Clone, Copy)]
enum Line {
    V1,
    V3,
}

fn script(line: Line, name: &str) -> std::path::PathBuf {
    match line {
        Line::V1 => venv_script(name),
        Line::V3 => venv3_script(name),
    }
}

fn node(label: &str, args: &[&str]) -> Child {
    let mut n = Child::spawn(label, Command::new(env!("CARGO_BIN_EXE_slim")).args(args));
    n.wait_for("slim node listening on", LIMIT);
    n
}

fn rpc_server(line: Line, instance: &str, endpoint: &str) -> Child {
    let tag = match line {
        Line::V1 => "v1",
        Line::V3 => "v3",
    };
    let mut s = Child::spawn(
        &format!("rpc-server-{tag}-{instance}"),
        Command::new(script(line, "slim-bindings-simple-rpc-server"))
            .args(["--instance", instance, "--server", endpoint])
            .env("PYTHONUNBUFFERED", "1"),
    );
    s.wait_for("SLIM_RPC_SERVER_READY", LIMIT);
    s
}

/// Runs a client to completion, retrying a bounded number of times (a
/// loaded machine may let a first session setup time out); returns its
/// output or the last failure.
fn run_client(label: &str, cmd: impl Fn() -> Command, done: &[&str]) -> Result<String, String> {
    let mut last = String::new();
    for attempt in 1..=3 {
        let mut c = Child::spawn(&format!("{label}-{attempt}"), &mut cmd());
        let (code, out) = c.wait_exit(LIMIT);
        if code == Some(0) && done.iter().all(|k| out.contains(k)) && !out.contains("RPC error") {
            return Ok(out);
        }
        last = format!("exit {code:?}\n{out}");
    }
    Err(format!("{label} never succeeded; last attempt:\n{last}"))
}

fn p2p_rpc_client(line: Line, endpoint: &str) -> Result<String, String> {
    let endpoint = endpoint.to_string();
    run_client(
        "rpc-client",
        move || {
            let mut c = Command::new(script(line, "slim-bindings-simple-rpc-client"));
            c.args(["--server", &endpoint]);
            c
        },
        // DONE is printed even after a timeout; the last line proves the
        // stream-stream call completed.
        &["SLIM_RPC_CLIENT_DONE", "Stream Stream completed"],
    )
}

fn group_rpc_client(line: Line, endpoint: &str, servers: &str) -> Result<String, String> {
    let endpoint = endpoint.to_string();
    let servers_arg = servers.to_string();
    let members: Vec<String> = servers
        .split(',')
        .map(|s| format!("source=agntcy/grpc/{s}"))
        .collect();
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    let mut done = vec!["SLIM_RPC_GROUP_CLIENT_DONE"];
    done.extend(members);
    run_client(
        "rpc-client-group",
        move || {
            let mut c = Command::new(script(line, "slim-bindings-simple-rpc-client-group"));
            c.args(["--servers", &servers_arg, "--server", &endpoint]);
            c
        },
        &done,
    )
}

/// The 3.3.8 point-to-point messaging example with MLS: a receiver that
/// answers, and a sender of `n` messages that must get every reply.
fn mls_p2p_receiver(endpoint: &str, local: &str) -> Child {
    let mut r = Child::spawn(
        "p2p-receiver",
        Command::new(venv3_script("slim-bindings-p2p"))
            .args([
                "--local",
                local,
                "--slim",
                endpoint,
                "--enable-mls",
                "--shared-secret",
                SECRET,
            ])
            .env("PYTHONUNBUFFERED", "1"),
    );
    r.wait_for("waiting for new session", LIMIT);
    r
}

fn mls_p2p_sender(endpoint: &str, local: &str, remote: &str, n: usize) -> Result<String, String> {
    let (endpoint, local, remote) = (endpoint.to_string(), local.to_string(), remote.to_string());
    let last = format!("Sent message hello - {n}/{n}");
    let out = run_client(
        "p2p-sender",
        move || {
            let mut c = Command::new(venv3_script("slim-bindings-p2p"));
            c.args([
                "--local",
                &local,
                "--remote",
                &remote,
                "--slim",
                &endpoint,
                "--enable-mls",
                "--shared-secret",
                SECRET,
                "--message",
                "hello",
                "--iterations",
                &n.to_string(),
            ])
            .env("PYTHONUNBUFFERED", "1");
            c
        },
        &[&last],
    )?;
    let replies = out.matches("received (from session").count();
    if replies == n {
        Ok(out)
    } else {
        Err(format!("{replies} of {n} replies:\n{out}"))
    }
}

#[test]
fn one_endpoint_serves_official_3x_and_1x_apps_at_the_same_time() {
    let listen = format!("127.0.0.1:{}", free_port());
    let endpoint = format!("http://{listen}");
    let node = node("slim-dual", &["--endpoint", &listen]);
    // The same server names in both generations: each generation's clients
    // reach only their own servers.
    let mut servers = Vec::new();
    for line in [Line::V3, Line::V1] {
        for instance in ["server", "server1", "server2"] {
            servers.push(rpc_server(line, instance, &endpoint));
        }
    }
    let _receiver = mls_p2p_receiver(&endpoint, "org/ns/bob");

    let runs: Vec<(&str, thread::JoinHandle<Result<String, String>>)> = vec![
        ("3.3.8 p2p rpc", {
            let e = endpoint.clone();
            thread::spawn(move || p2p_rpc_client(Line::V3, &e))
        }),
        ("3.3.8 group rpc", {
            let e = endpoint.clone();
            thread::spawn(move || group_rpc_client(Line::V3, &e, "server1,server2"))
        }),
        ("3.3.8 p2p messaging, MLS", {
            let e = endpoint.clone();
            thread::spawn(move || mls_p2p_sender(&e, "org/ns/alice", "org/ns/bob", 10))
        }),
        ("1.3.0 p2p rpc", {
            let e = endpoint.clone();
            thread::spawn(move || p2p_rpc_client(Line::V1, &e))
        }),
        ("1.3.0 group rpc", {
            let e = endpoint.clone();
            thread::spawn(move || group_rpc_client(Line::V1, &e, "server1,server2"))
        }),
    ];
    let mut failures = Vec::new();
    for (what, run) in runs {
        match run.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => failures.push(format!("{what}: {e}")),
            Err(_) => failures.push(format!("{what}: panicked")),
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n--- node log ---\n{}",
        failures.join("\n\n"),
        node.output()
    );
    let log = node.output();
    assert!(log.contains("generation=v1") && log.contains("generation=v3"));
    drop(servers);
}

fn official_node(label: &str, listen: &str) -> Child {
    let mut n = Child::spawn(
        label,
        Command::new(venv3_script("slim-bindings-server"))
            .args(["--slim", listen])
            .env("PYTHONUNBUFFERED", "1"),
    );
    n.wait_for("started on", LIMIT);
    n
}

#[test]
fn our_node_linked_to_an_official_3x_node_joins_apps_on_both_sides() {
    let listen_o = format!("127.0.0.1:{}", free_port());
    let endpoint_o = format!("http://{listen_o}");
    let _official = official_node("official-3x-node", &listen_o);
    let port_b = free_port();
    let config =
        std::env::temp_dir().join(format!("slim-v3-b-{}-{port_b}.yaml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "runtime:\n  drain_timeout: 2s\nservices:\n  slim/0:\n    dataplane:\n      servers:\n        - endpoint: \"127.0.0.1:{port_b}\"\n      clients:\n        - endpoint: \"{endpoint_o}\"\n          upstream: true\n"
        ),
    )
    .unwrap();
    let mut node_b = node("slim-linked-to-3x", &["--config", config.to_str().unwrap()]);
    node_b.wait_for("slim node linked to", LIMIT);
    let endpoint_b = format!("http://127.0.0.1:{port_b}");

    // server and server1 on the official node, server2 on ours.
    let _s = rpc_server(Line::V3, "server", &endpoint_o);
    let _s1 = rpc_server(Line::V3, "server1", &endpoint_o);
    let _s2 = rpc_server(Line::V3, "server2", &endpoint_b);
    // Our side calls the official side; the group spans both nodes.
    p2p_rpc_client(Line::V3, &endpoint_b).unwrap_or_else(|e| panic!("{e}\n{}", node_b.output()));
    group_rpc_client(Line::V3, &endpoint_b, "server1,server2")
        .unwrap_or_else(|e| panic!("{e}\n{}", node_b.output()));
    // MLS messaging from the official side to an app on ours.
    let _bob = mls_p2p_receiver(&endpoint_b, "org/ns/bob");
    mls_p2p_sender(&endpoint_o, "org/ns/alice", "org/ns/bob", 5)
        .unwrap_or_else(|e| panic!("{e}\n{}", node_b.output()));
    let log = node_b.output();
    assert!(
        log.contains("generation=V3") || log.contains("generation=v3"),
        "{log}"
    );
    let _ = std::fs::remove_file(&config);
}
