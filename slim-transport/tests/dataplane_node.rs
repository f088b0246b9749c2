//! The `slim` binary: reads the official YAML shape, serves, drains on
//! SIGTERM/SIGINT with exit code 0, and refuses a broken config clearly.

use std::process::Command;
use std::time::Duration;

use slimrpc_testkit::{Child, free_port};

const LIMIT: Duration = Duration::from_secs(60);

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

fn write_config(tag: &str, body: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("slim-{tag}-{}.yaml", std::process::id()));
    std::fs::write(&p, body).expect("write config");
    p
}

#[test]
fn node_serves_the_documented_config_and_exits_zero_on_sigterm() {
    let port = free_port();
    let cfg = write_config(
        "sigterm",
        &format!(
            "tracing:\n  log_level: info\n  display_thread_names: true\nruntime:\n  n_cores: 0\n  thread_name: \"slim-data-plane\"\n  drain_timeout: 10s\nservices:\n  slim/0:\n    pubsub:\n      servers:\n        - endpoint: \"127.0.0.1:{port}\"\n          tls:\n            insecure: true\n      clients: []\n"
        ),
    );
    let mut node = Child::spawn(
        "slim-sigterm",
        Command::new(env!("CARGO_BIN_EXE_slim"))
            .arg("--config")
            .arg(&cfg),
    );
    node.wait_for(&format!("slim node listening on 127.0.0.1:{port}"), LIMIT);
    signal(&node, "-TERM");
    let (code, out) = node.wait_exit(LIMIT);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("slim node stopped"), "{out}");
    let _ = std::fs::remove_file(cfg);
}

#[test]
fn endpoint_shortcut_node_exits_zero_on_sigint() {
    let port = free_port();
    let mut node = Child::spawn(
        "slim-sigint",
        Command::new(env!("CARGO_BIN_EXE_slim")).args(["--endpoint", &format!("127.0.0.1:{port}")]),
    );
    node.wait_for("slim node listening on", LIMIT);
    signal(&node, "-INT");
    let (code, out) = node.wait_exit(LIMIT);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn broken_config_is_refused_with_a_clear_message() {
    let cfg = write_config("broken", "services: { slim/0: { dataplane: { servers: [ {");
    let mut node = Child::spawn(
        "slim-broken",
        Command::new(env!("CARGO_BIN_EXE_slim"))
            .arg("--config")
            .arg(&cfg),
    );
    let (code, out) = node.wait_exit(LIMIT);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("invalid YAML"), "{out}");
    let _ = std::fs::remove_file(cfg);
}
