//! SlimRPC interop as processes over real sockets on 127.0.0.1: the official `slim-bindings`
//! example programs (Python) of both lines — 3.3.8 on the SLIM v3 wire, 1.3.0 on v1 — against
//! our Rust example programs (`--protocol 3` / `--protocol 1`) in both directions, P2P and
//! group, all four shapes, MLS on, through our `slim` node and through the official embedded
//! node of the same line; and our generated Python stubs against our generated Rust stubs.
//!
//! Every test is independent (its own free ports and processes, all killed by PID). Clients
//! are retried at most three times, only to absorb server start-up; every attempt's output is
//! printed when a test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use slimrpc_testkit::{Child, bin, free_port, python, root, venv_script, venv3_script};

const LIMIT: Duration = Duration::from_secs(90);
const ATTEMPTS: usize = 3;

const RUST_SERVER: &str = env!("CARGO_BIN_EXE_server");
const RUST_CLIENT: &str = env!("CARGO_BIN_EXE_client");
const RUST_CLIENT_GROUP: &str = env!("CARGO_BIN_EXE_client-group");

/// Which official line (and so which wire) a test runs against.
#[derive(Clone, Copy)]
enum Line {
    /// slim-bindings 1.3.0, SLIM v1; our programs with `--protocol 1`.
    V1,
    /// slim-bindings 3.3.8, SLIM v3; our programs with `--protocol 3`.
    V3,
}

impl Line {
    fn script(self, name: &str) -> PathBuf {
        match self {
            Line::V1 => venv_script(name),
            Line::V3 => venv3_script(name),
        }
    }

    fn protocol(self) -> &'static str {
        match self {
            Line::V1 => "1",
            Line::V3 => "3",
        }
    }
}

/// Which SLIM node the programs meet on.
#[derive(Clone, Copy)]
enum NodeKind {
    /// Our `slim` binary.
    Ours,
    /// The official embedded node (`slim-bindings-server`).
    Official,
}

/// Starts a node on a free port (the official one of `line`); returns it and its
/// `http://` endpoint.
fn start_node(kind: NodeKind, line: Line) -> (Child, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let node = match kind {
        NodeKind::Ours => {
            let mut n = Child::spawn(
                "slim-node",
                Command::new(bin("slim")).args(["--endpoint", &listen]),
            );
            n.wait_for("slim node listening on", LIMIT);
            n
        }
        NodeKind::Official => {
            let mut n = Child::spawn(
                "official-node",
                Command::new(line.script("slim-bindings-server"))
                    .args(["--slim", &listen])
                    .env("PYTHONUNBUFFERED", "1"),
            );
            n.wait_for("started on", LIMIT);
            n
        }
    };
    (node, format!("http://{listen}"))
}

/// Our Rust example server `agntcy/grpc/<instance>`, ready (subscribed) on return.
fn rust_server(instance: &str, endpoint: &str, line: Line) -> Child {
    let mut s = Child::spawn(
        &format!("rust-server-{instance}"),
        Command::new(RUST_SERVER).args([
            "--instance",
            instance,
            "--slim",
            endpoint,
            "--protocol",
            line.protocol(),
        ]),
    );
    s.wait_for("SLIM_RPC_SERVER_READY", LIMIT);
    s
}

/// The official Python example server `agntcy/grpc/<instance>`, ready on return.
fn official_server(instance: &str, endpoint: &str, line: Line) -> Child {
    let mut s = Child::spawn(
        &format!("official-server-{instance}"),
        Command::new(line.script("slim-bindings-simple-rpc-server"))
            .args(["--instance", instance, "--server", endpoint])
            .env("PYTHONUNBUFFERED", "1"),
    );
    s.wait_for("SLIM_RPC_SERVER_READY", LIMIT);
    s
}

/// Runs a client to completion, at most [`ATTEMPTS`] times until `ok` accepts its exit code
/// and output; panics with every attempt's output (and the servers' logs) otherwise.
fn run_client(
    label: &str,
    make: impl Fn() -> Command,
    ok: impl Fn(Option<i32>, &str) -> Result<(), String>,
    others: &[&Child],
) -> String {
    let mut attempts = Vec::new();
    for attempt in 1..=ATTEMPTS {
        let mut cmd = make();
        let mut c = Child::spawn(&format!("{label}-{attempt}"), &mut cmd);
        let (code, out) = c.wait_exit(LIMIT);
        match ok(code, &out) {
            Ok(()) => return out,
            Err(why) => attempts.push(format!(
                "==== attempt {attempt}: exit {code:?}: {why}\n{out}"
            )),
        }
    }
    let logs: Vec<String> = others.iter().map(|c| c.output()).collect();
    panic!(
        "{label} never succeeded:\n{}\n==== other processes:\n{}",
        attempts.join("\n"),
        logs.join("\n----\n")
    );
}

fn check(cond: bool, why: &str) -> Result<(), String> {
    if cond { Ok(()) } else { Err(why.to_string()) }
}

/// Failure lines of the official Python clients: they log a timeout and still print DONE,
/// and log "RPC error" (plus a traceback) before raising on an RPC error.
fn official_client_failed(out: &str) -> Result<(), String> {
    for bad in ["RPC error", "timeout while waiting", "Traceback", "Error:"] {
        check(!out.contains(bad), &format!("output contains {bad:?}"))?;
    }
    Ok(())
}

/// The official P2P and group clients against servers `server`, `server1`, `server2`.
fn official_clients_call(endpoint: &str, others: &[&Child], line: Line) {
    run_client(
        "official-client",
        || {
            let mut c = Command::new(line.script("slim-bindings-simple-rpc-client"));
            c.args(["--server", endpoint]).env("PYTHONUNBUFFERED", "1");
            c
        },
        |code, out| {
            check(code == Some(0), "exit code")?;
            check(out.contains("SLIM_RPC_CLIENT_DONE"), "no DONE")?;
            // Logged only after the last (stream-stream) call ended without error.
            check(
                out.contains("Stream Stream completed"),
                "stream-stream did not complete",
            )?;
            check(
                out.contains("Stream Stream Response: example_string: \"Echo: Request 9\""),
                "last stream-stream response missing",
            )?;
            official_client_failed(out)
        },
        others,
    );
    run_client(
        "official-client-group",
        || {
            let mut c = Command::new(line.script("slim-bindings-simple-rpc-client-group"));
            c.args(["--servers", "server1,server2", "--server", endpoint])
                .env("PYTHONUNBUFFERED", "1");
            c
        },
        |code, out| {
            check(code == Some(0), "exit code")?;
            check(out.contains("SLIM_RPC_GROUP_CLIENT_DONE"), "no DONE")?;
            for m in ["server1", "server2"] {
                // 1.3.0 prints the source with its id, 3.3.8 without.
                check(
                    out.contains(&format!("RpcMessageContext(source=agntcy/grpc/{m}/"))
                        || out.contains(&format!("RpcMessageContext(source=agntcy/grpc/{m})")),
                    &format!("no response from {m}"),
                )?;
            }
            official_client_failed(out)
        },
        others,
    );
}

fn official_clients_call_rust_servers(kind: NodeKind, line: Line) {
    let (node, endpoint) = start_node(kind, line);
    let s = rust_server("server", &endpoint, line);
    let s1 = rust_server("server1", &endpoint, line);
    let s2 = rust_server("server2", &endpoint, line);
    official_clients_call(&endpoint, &[&node, &s, &s1, &s2], line);
}

#[test]
fn official_1_3_python_clients_call_rust_servers_through_our_node() {
    official_clients_call_rust_servers(NodeKind::Ours, Line::V1);
}

#[test]
fn official_1_3_python_clients_call_rust_servers_through_the_official_node() {
    official_clients_call_rust_servers(NodeKind::Official, Line::V1);
}

#[test]
fn official_3_3_8_python_clients_call_rust_servers_through_our_node() {
    official_clients_call_rust_servers(NodeKind::Ours, Line::V3);
}

#[test]
fn official_3_3_8_python_clients_call_rust_servers_through_the_official_node() {
    official_clients_call_rust_servers(NodeKind::Official, Line::V3);
}

/// Lines of our Rust group client's output for `shape` from member `m`.
fn group_lines<'a>(out: &'a str, shape: &str, m: &str) -> Vec<&'a str> {
    let prefix = format!("group {shape}: [agntcy/grpc/{m}] ");
    out.lines().filter(|l| l.starts_with(&prefix)).collect()
}

const SHAPES: [&str; 4] = [
    "unary-unary",
    "unary-stream",
    "stream-unary",
    "stream-stream",
];

/// Our Rust group client against `server1`, `server2`; every shape answered by both.
fn rust_group_client_calls(
    endpoint: &str,
    others: &[&Child],
    extra: impl Fn(&str) -> Result<(), String>,
    line: Line,
) -> String {
    run_client(
        "rust-client-group",
        || {
            let mut c = Command::new(RUST_CLIENT_GROUP);
            c.args(["--servers", "server1,server2", "--slim", endpoint])
                .args(["--protocol", line.protocol()]);
            c
        },
        |code, out| {
            check(code == Some(0), "exit code")?;
            check(out.contains("SLIM_RPC_GROUP_CLIENT_DONE"), "no DONE")?;
            for shape in SHAPES {
                for m in ["server1", "server2"] {
                    check(
                        !group_lines(out, shape, m).is_empty(),
                        &format!("no {shape} response from {m}"),
                    )?;
                }
            }
            extra(out)
        },
        others,
    )
}

fn rust_clients_call_official_servers(kind: NodeKind, line: Line) {
    let (node, endpoint) = start_node(kind, line);
    let s = official_server("server", &endpoint, line);
    let s1 = official_server("server1", &endpoint, line);
    let s2 = official_server("server2", &endpoint, line);
    let others = [&node, &s, &s1, &s2];
    run_client(
        "rust-client",
        || {
            let mut c = Command::new(RUST_CLIENT);
            c.args(["--slim", &endpoint, "--protocol", line.protocol()]);
            c
        },
        |code, out| {
            check(code == Some(0), "exit code")?;
            check(out.contains("SLIM_RPC_CLIENT_DONE"), "no DONE")?;
            check(
                out.contains("unary-unary: example_integer: 1, example_string: \"Hello, World!\""),
                "unary-unary answer",
            )?;
            check(
                out.contains(
                    "stream-stream: example_integer: 900, example_string: \"Echo: Request 9\"",
                ),
                "last stream-stream answer",
            )
        },
        &others,
    );
    rust_group_client_calls(
        &endpoint,
        &others,
        |out| {
            // The official server answers unary-stream with five responses per member.
            for m in ["server1", "server2"] {
                let n = group_lines(out, "unary-stream", m).len();
                check(n == 5, &format!("{m} sent {n} unary-stream responses"))?;
            }
            Ok(())
        },
        line,
    );
}

#[test]
fn rust_clients_call_official_1_3_python_servers_through_our_node() {
    rust_clients_call_official_servers(NodeKind::Ours, Line::V1);
}

#[test]
fn rust_clients_call_official_1_3_python_servers_through_the_official_node() {
    rust_clients_call_official_servers(NodeKind::Official, Line::V1);
}

#[test]
fn rust_clients_call_official_3_3_8_python_servers_through_our_node() {
    rust_clients_call_official_servers(NodeKind::Ours, Line::V3);
}

#[test]
fn rust_clients_call_official_3_3_8_python_servers_through_the_official_node() {
    rust_clients_call_official_servers(NodeKind::Official, Line::V3);
}

/// Generates our Python stubs for `examples/example.proto` into a fresh directory.
fn generate_python_stubs(label: &str) -> PathBuf {
    let dir = root()
        .join("target/test-tmp")
        .join(format!("{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create stub dir");
    let out = Command::new(slimrpc_testkit::protoc())
        .arg(format!("-I{}", root().join("examples").display()))
        .arg(format!(
            "--plugin=protoc-gen-slimrpc-python={}",
            bin("protoc-gen-slimrpc-python").display()
        ))
        .arg(format!("--slimrpc-python_out={}", dir.display()))
        // These stubs run on the 1.3.0 wheel.
        .arg("--slimrpc-python_opt=runtime=v1")
        .arg(format!("--python_out={}", dir.display()))
        .arg(format!("--pyi_out={}", dir.display()))
        .arg("example.proto")
        .output()
        .expect("run protoc");
    assert!(
        out.status.success(),
        "protoc failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// `python examples/python/<script>` on our generated stubs in `gen`.
fn our_python(script: &str, gen_dir: &Path) -> Command {
    let examples = root().join("examples/python");
    let mut cmd = Command::new(python());
    cmd.arg(examples.join(script))
        .env("PYTHONUNBUFFERED", "1")
        .env(
            "PYTHONPATH",
            format!("{}:{}", gen_dir.display(), examples.display()),
        );
    cmd
}

#[test]
fn rust_group_client_calls_python_servers_on_our_generated_stubs() {
    let gen_dir = generate_python_stubs("interop-py-stubs-a");
    let (node, endpoint) = start_node(NodeKind::Ours, Line::V1);
    let mut servers = Vec::new();
    for m in ["server1", "server2"] {
        let mut s = Child::spawn(
            &format!("our-py-server-{m}"),
            our_python("server.py", &gen_dir).args(["--instance", m, "--server", &endpoint]),
        );
        s.wait_for(&format!("SLIM_RPC_SERVER_READY {m}"), LIMIT);
        servers.push(s);
    }
    let others = [&node, &servers[0], &servers[1]];
    rust_group_client_calls(
        &endpoint,
        &others,
        |out| {
            // Our Python server starts every answer with its own instance name: the member a
            // response is tagged with is the one that produced it.
            for line in out.lines().filter(|l| l.starts_with("group ")) {
                let tagged = ["server1", "server2"]
                    .into_iter()
                    .find(|m| line.contains(&format!("[agntcy/grpc/{m}] ")));
                let Some(m) = tagged else {
                    return Err(format!("untagged response line {line:?}"));
                };
                check(
                    line.contains(&format!("example_string: \"{m}: ")),
                    &format!("line tagged {m} carries another member's answer: {line:?}"),
                )?;
            }
            for m in ["server1", "server2"] {
                let n = group_lines(out, "unary-stream", m).len();
                check(n == 3, &format!("{m} sent {n} unary-stream responses"))?;
                let n = group_lines(out, "stream-stream", m).len();
                check(n == 3, &format!("{m} sent {n} stream-stream responses"))?;
            }
            Ok(())
        },
        Line::V1,
    );
    let _ = std::fs::remove_dir_all(&gen_dir);
}

#[test]
fn python_group_client_on_our_generated_stubs_calls_rust_servers() {
    let gen_dir = generate_python_stubs("interop-py-stubs-b");
    let (node, endpoint) = start_node(NodeKind::Ours, Line::V1);
    let s1 = rust_server("server1", &endpoint, Line::V1);
    let s2 = rust_server("server2", &endpoint, Line::V1);
    let others = [&node, &s1, &s2];
    run_client(
        "our-py-client-group",
        || {
            let mut c = our_python("client_group.py", &gen_dir);
            c.args([
                "--servers",
                "server1,server2",
                "--server",
                &endpoint,
                "--answers",
                "official",
            ]);
            c
        },
        |code, out| {
            check(code == Some(0), "exit code")?;
            // Printed only after every shape was answered completely by both members, each
            // answer tagged with the member that sent it.
            check(out.contains("GROUP_CLIENT_DONE"), "no DONE")?;
            check(
                !out.contains("GROUP_CLIENT_FAILED"),
                "client reported a failure",
            )?;
            for shape in [
                "GROUP_UNARY_UNARY",
                "GROUP_UNARY_STREAM",
                "GROUP_STREAM_UNARY",
                "GROUP_STREAM_STREAM",
            ] {
                for m in ["server1", "server2"] {
                    let prefix = format!("{shape} [{m}] ");
                    check(
                        out.lines().any(|l| l.starts_with(&prefix)),
                        &format!("no {shape} answer from {m}"),
                    )?;
                }
            }
            for m in ["server1", "server2"] {
                check(
                    out.contains(&format!("GROUP_UNARY_UNARY [{m}] Hello, World!")),
                    &format!("{m}'s unary-unary answer"),
                )?;
                check(
                    out.contains(&format!("GROUP_STREAM_STREAM [{m}] Echo: item 2")),
                    &format!("{m}'s last stream-stream answer"),
                )?;
            }
            Ok(())
        },
        &others,
    );
    let _ = std::fs::remove_dir_all(&gen_dir);
}
