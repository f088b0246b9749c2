//! Interop with the real peer: the official `slim-bindings` 1.3.0 SlimRPC
//! example programs (Python) run against our `slim` node — alone, and
//! across two of our nodes linked by an upstream link.

use std::process::Command;
use std::time::Duration;

use slimrpc_testkit::{Child, free_port, venv_script};

const LIMIT: Duration = Duration::from_secs(90);

fn node(label: &str, args: &[&str]) -> Child {
    let mut n = Child::spawn(label, Command::new(env!("CARGO_BIN_EXE_slim")).args(args));
    n.wait_for("slim node listening on", LIMIT);
    n
}

fn rpc_server(instance: &str, endpoint: &str) -> Child {
    let mut s = Child::spawn(
        &format!("rpc-server-{instance}"),
        Command::new(venv_script("slim-bindings-simple-rpc-server")).args([
            "--instance",
            instance,
            "--server",
            endpoint,
        ]),
    );
    // Printed after its subscription was acked: routes are in place.
    s.wait_for("SLIM_RPC_SERVER_READY", LIMIT);
    s
}

/// Runs a client program to completion, retrying a bounded number of times
/// (a slow machine may let its first session setup time out).
fn run_client(label: &str, script: &str, args: &[&str], done: &str, checks: &[&str]) -> String {
    let mut last = String::new();
    for attempt in 1..=3 {
        let mut c = Child::spawn(
            &format!("{label}-{attempt}"),
            Command::new(venv_script(script)).args(args),
        );
        let (code, out) = c.wait_exit(LIMIT);
        if code == Some(0) && out.contains(done) && checks.iter().all(|k| out.contains(k)) {
            return out;
        }
        last = format!("exit {code:?}\n{out}");
    }
    panic!("{label} never succeeded; last attempt:\n{last}");
}

fn p2p_and_group_clients(client_endpoint: &str) {
    // P2P: all four call shapes against `org/ns/server`.
    run_client(
        "rpc-client",
        "slim-bindings-simple-rpc-client",
        &["--server", client_endpoint],
        "SLIM_RPC_CLIENT_DONE",
        // The example prints DONE even after a timeout; this line proves the
        // last (stream-stream) call completed.
        &["Stream Stream completed"],
    );
    // Group: every call reaches server1 and server2.
    let out = run_client(
        "rpc-client-group",
        "slim-bindings-simple-rpc-client-group",
        &["--servers", "server1,server2", "--server", client_endpoint],
        "SLIM_RPC_GROUP_CLIENT_DONE",
        &["server1", "server2"],
    );
    assert!(
        !out.contains("RPC error"),
        "group client reported an RPC error:\n{out}"
    );
}

#[test]
fn official_slimrpc_examples_run_through_our_node() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let endpoint = format!("http://{listen}");
    let _node = node("slim-interop", &["--endpoint", &listen]);
    let _s = rpc_server("server", &endpoint);
    let _s1 = rpc_server("server1", &endpoint);
    let _s2 = rpc_server("server2", &endpoint);
    p2p_and_group_clients(&endpoint);
}

#[test]
fn official_slimrpc_examples_run_across_two_linked_nodes() {
    // Node A: plain. Node B: links to A as its upstream (config `clients:`).
    // Servers attach to A, clients to B.
    let port_a = free_port();
    let port_b = free_port();
    let listen_a = format!("127.0.0.1:{port_a}");
    let _node_a = node("slim-interop-a", &["--endpoint", &listen_a]);
    let config = std::env::temp_dir().join(format!(
        "slim-interop-b-{}-{port_b}.yaml",
        std::process::id()
    ));
    std::fs::write(
        &config,
        format!(
            "tracing:\n  log_level: info\nruntime:\n  drain_timeout: 2s\nservices:\n  slim/0:\n    dataplane:\n      servers:\n        - endpoint: \"127.0.0.1:{port_b}\"\n          tls:\n            insecure: true\n      clients:\n        - endpoint: \"http://{listen_a}\"\n          tls:\n            insecure: true\n          upstream: true\n"
        ),
    )
    .unwrap();
    let mut node_b = node("slim-interop-b", &["--config", config.to_str().unwrap()]);
    node_b.wait_for("slim node linked to", LIMIT);

    let endpoint_a = format!("http://{listen_a}");
    let endpoint_b = format!("http://127.0.0.1:{port_b}");
    let _s = rpc_server("server", &endpoint_a);
    let _s1 = rpc_server("server1", &endpoint_a);
    let _s2 = rpc_server("server2", &endpoint_a);
    p2p_and_group_clients(&endpoint_b);
    let _ = std::fs::remove_file(&config);
}
