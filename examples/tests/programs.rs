//! The example programs as processes: `slimrpc-demo` (embedded transport, one process); our
//! `client` over real sockets on 127.0.0.1 through a SLIM node (our `slim_transport` service,
//! run by the test) against the official `slim_bindings` 1.3.0 example server; and our
//! `client` / `client-group` against our own `server` processes through the node.

use std::process::Command;

use slimrpc_testkit::Child;

mod common;

use common::{LIMIT, node, spawn_ready};

/// Runs to completion (off the runtime's threads); returns exit code and output.
async fn run(name: &str, cmd: Command) -> (Option<i32>, String) {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let mut cmd = cmd;
        Child::spawn(&name, &mut cmd).wait_exit(LIMIT)
    })
    .await
    .expect("runner ran")
}

fn logs(children: &[Child]) -> String {
    children
        .iter()
        .map(Child::output)
        .collect::<Vec<_>>()
        .join("\n----\n")
}

fn ours(bin: &str, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args);
    c
}

fn official(script: &str, args: &[&str]) -> Command {
    let mut c = Command::new(slimrpc_testkit::venv_script(script));
    c.args(args);
    c
}

const CLIENT: &str = env!("CARGO_BIN_EXE_client");
const DEMO: &str = env!("CARGO_BIN_EXE_slimrpc-demo");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slimrpc_demo_runs_eight_shapes_and_tags_group_responses_by_member() {
    let (code, out) = run("slimrpc-demo", ours(DEMO, &[])).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("SLIMRPC_DEMO_DONE"), "{out}");
    for member in ["server1", "server2"] {
        for shape in [
            "unary-unary",
            "unary-stream",
            "stream-unary",
            "stream-stream",
        ] {
            assert!(
                out.contains(&format!("group {shape}: [agntcy/grpc/{member}]")),
                "{shape} from {member} missing:\n{out}"
            );
        }
    }
    for shape in [
        "unary-unary",
        "unary-stream",
        "stream-unary",
        "stream-stream",
    ] {
        assert!(
            out.contains(&format!("\n{shape}: example_integer")),
            "{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_calls_the_official_python_example_server_through_a_slim_node() {
    let (_node, url) = node().await;
    let cmd = official(
        "slim-bindings-simple-rpc-server",
        &["--instance", "server", "--server", &url],
    );
    let server = spawn_ready("py-server", cmd, "SLIM_RPC_SERVER_READY").await;
    // The official peer here is the 1.3.0 wheel: the v1 wire.
    let (code, out) = run(
        "client-vs-py",
        ours(CLIENT, &["--slim", &url, "--protocol", "1"]),
    )
    .await;
    assert_eq!(code, Some(0), "{out}\n---- server:\n{}", logs(&[server]));
    assert!(out.contains("SLIM_RPC_CLIENT_DONE"), "{out}");
    assert!(
        out.contains("unary-unary: example_integer: 1, example_string: \"Hello, World!\""),
        "{out}"
    );
    assert!(out.contains("stream-unary: example_integer: 10"), "{out}");
    assert!(
        out.contains("stream-stream: example_integer: 900, example_string: \"Echo: Request 9\""),
        "{out}"
    );
}

const SERVER: &str = env!("CARGO_BIN_EXE_server");
const CLIENT_GROUP: &str = env!("CARGO_BIN_EXE_client-group");

/// Our generated stubs on both ends, as separate processes, over real gRPC
/// links through a SLIM node: the P2P client's four shapes against
/// `agntcy/grpc/server`, the group client's four shapes against server1 and
/// server2, every group response tagged with the member that sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_clients_call_rust_servers_through_a_slim_node_in_all_eight_shapes() {
    let (_node, url) = node().await;
    let mut servers = Vec::new();
    for instance in ["server", "server1", "server2"] {
        let cmd = ours(SERVER, &["--instance", instance, "--slim", &url]);
        servers.push(spawn_ready(instance, cmd, "SLIM_RPC_SERVER_READY").await);
    }
    let (code, out) = run("client-vs-rust", ours(CLIENT, &["--slim", &url])).await;
    assert_eq!(code, Some(0), "{out}\n---- servers:\n{}", logs(&servers));
    assert!(out.contains("SLIM_RPC_CLIENT_DONE"), "{out}");
    assert!(
        out.contains("unary-unary: example_integer: 1, example_string: \"Hello, World!\""),
        "{out}"
    );
    assert!(out.contains("stream-unary: example_integer: 10"), "{out}");
    assert!(
        out.contains("stream-stream: example_integer: 900, example_string: \"Echo: Request 9\""),
        "{out}"
    );

    let args = ["--servers", "server1,server2", "--slim", &url];
    let (code, out) = run("client-group-vs-rust", ours(CLIENT_GROUP, &args)).await;
    assert_eq!(code, Some(0), "{out}\n---- servers:\n{}", logs(&servers));
    assert!(out.contains("SLIM_RPC_GROUP_CLIENT_DONE"), "{out}");
    for member in ["server1", "server2"] {
        for shape in [
            "unary-unary",
            "unary-stream",
            "stream-unary",
            "stream-stream",
        ] {
            assert!(
                out.contains(&format!("group {shape}: [agntcy/grpc/{member}]")),
                "{shape} from {member} missing:\n{out}"
            );
        }
    }
}
