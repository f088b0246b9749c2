//! Runtime proof: stubs generated with `runtime=v1` for `examples/example.proto` drive the
//! example programs of `examples/python/` on the official slim-bindings 1.3.0 with its SLIM
//! node — four point-to-point shapes, four group shapes with every answer tagged by its
//! member, a member's error delivered as an item next to the other member's response, the
//! generated reducers over group calls, and UNIMPLEMENTED from a servicer that overrides
//! nothing.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use slimrpc_testkit::{Child, free_port, python, venv_script};

const LIVENESS: Duration = Duration::from_secs(120);

fn python_cmd(script: &str, gen_dir: &Path) -> Command {
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
fn generated_python_stubs_run_eight_shapes_answer_unimplemented_and_keep_member_errors_on_slim_bindings_1_3()
 {
    let gen_dir = scratch("runtime-example");
    let run = protoc(
        &[root().join("examples")],
        &["example.proto".to_string()],
        &gen_dir,
        Some("runtime=v1"),
        true,
    );
    assert_ok("protoc example.proto", &run);

    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut node = Child::spawn(
        "slim-bindings-server",
        Command::new(venv_script("slim-bindings-server"))
            .env("PYTHONUNBUFFERED", "1")
            .args(["--slim", &format!("127.0.0.1:{port}")]),
    );
    node.wait_for("Slim server started", LIVENESS);

    let mut server1 = Child::spawn(
        "py-server1",
        python_cmd("server.py", &gen_dir).args(["--instance", "server1", "--server", &endpoint]),
    );
    let mut server2 = Child::spawn(
        "py-server2",
        python_cmd("server.py", &gen_dir).args([
            "--instance",
            "server2",
            "--server",
            &endpoint,
            "--fail-on",
            "boom",
        ]),
    );
    let mut bare = Child::spawn(
        "py-server-bare",
        python_cmd("server.py", &gen_dir).args([
            "--instance",
            "bare",
            "--server",
            &endpoint,
            "--bare",
        ]),
    );
    server1.wait_for("SLIM_RPC_SERVER_READY server1", LIVENESS);
    server2.wait_for("SLIM_RPC_SERVER_READY server2", LIVENESS);
    bare.wait_for("SLIM_RPC_SERVER_READY bare", LIVENESS);

    // Point-to-point: the four shapes against server1 (the client checks every answer).
    let mut client = Child::spawn(
        "py-client",
        python_cmd("client.py", &gen_dir).args(["--server", &endpoint, "--target", "server1"]),
    );
    let (code, out) = client.wait_exit(LIVENESS);
    assert_eq!(code, Some(0), "client failed:\n{out}");
    for line in [
        "UNARY_UNARY server1: hello world",
        "UNARY_STREAM 3 responses",
        "STREAM_UNARY server1: saw item 0, item 1, item 2",
        "STREAM_STREAM 3 responses",
        "CLIENT_DONE",
    ] {
        assert!(out.contains(line), "client output lacks {line:?}:\n{out}");
    }

    // The generated servicer base answers UNIMPLEMENTED for every shape.
    let mut unimplemented = Child::spawn(
        "py-client-unimplemented",
        python_cmd("client.py", &gen_dir).args([
            "--server",
            &endpoint,
            "--target",
            "bare",
            "--expect-unimplemented",
        ]),
    );
    let (code, out) = unimplemented.wait_exit(LIVENESS);
    assert_eq!(code, Some(0), "unimplemented client failed:\n{out}");
    for shape in [
        "UNARY_UNARY",
        "UNARY_STREAM",
        "STREAM_UNARY",
        "STREAM_STREAM",
    ] {
        assert!(
            out.contains(&format!("{shape} UNIMPLEMENTED")),
            "{shape}:\n{out}"
        );
    }

    // Group: the four shapes on both servers, then a request server2 refuses.
    let mut group = Child::spawn(
        "py-client-group",
        python_cmd("client_group.py", &gen_dir).args([
            "--server",
            &endpoint,
            "--servers",
            "server1,server2",
            "--fail-text",
            "boom",
            "--reducers",
        ]),
    );
    let (code, out) = group.wait_exit(LIVENESS);
    assert_eq!(code, Some(0), "group client failed:\n{out}");
    for member in ["server1", "server2"] {
        for line in [
            format!("GROUP_UNARY_UNARY [{member}] {member}: hello world"),
            format!("GROUP_UNARY_STREAM [{member}] {member}: world #2"),
            format!("GROUP_STREAM_UNARY [{member}] {member}: saw item 0, item 1, item 2"),
            format!("GROUP_STREAM_STREAM [{member}] {member}: echo item 2"),
        ] {
            assert!(out.contains(&line), "group output lacks {line:?}:\n{out}");
        }
    }
    assert!(
        out.contains("GROUP_MEMBER_ERROR [server2] code=RpcCode.FAILED_PRECONDITION"),
        "server2's refusal was not delivered as its error item:\n{out}"
    );
    assert!(
        out.contains("GROUP_MEMBER_OK [server1] server1: hello boom"),
        "server1's answer was lost next to server2's error:\n{out}"
    );
    // The generated reducers over the same group calls.
    for line in [
        "REDUCER_FIRST_OK [",
        "REDUCER_QUORUM_OK ['server1', 'server2']",
        "REDUCER_MAJORITY_OK 'hello world' 2",
        "REDUCER_FOLD_OK 6",
        "REDUCER_NO_MAJORITY_OK no majority: 1 of 2 votes at most",
        "REDUCER_NO_QUORUM_OK quorum of 2 not reached: 1 answered",
    ] {
        assert!(out.contains(line), "group output lacks {line:?}:\n{out}");
    }
    assert!(out.contains("GROUP_CLIENT_DONE"), "{out}");
    drop((server1, server2, bare, node));
}
