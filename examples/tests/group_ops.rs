//! The `group-ops` example as a process, through our `slim` node program on
//! 127.0.0.1: against three of our example `server` processes, and against
//! three unmodified official slim-bindings 3.3.8 Python example servers
//! (`--no-shared`; ours also run the shared-responses step). Every `GROUP_OPS_*_OK` line is printed by the program only
//! after it checked the step, so the test asks for each of them.

use std::process::Command;

use slimrpc_testkit::{Child, venv3_script};

mod common;

use common::{LIMIT, slim_node};

const GROUP_OPS: &str = env!("CARGO_BIN_EXE_group-ops");
const SERVER: &str = env!("CARGO_BIN_EXE_server");
const STEPS: [&str; 7] = [
    "GROUP_OPS_ADD_OK",
    "GROUP_OPS_REMOVE_OK",
    "GROUP_OPS_FIRST_OK",
    "GROUP_OPS_MAJORITY_OK",
    "GROUP_OPS_QUORUM_OK",
    "GROUP_OPS_SHARED_OK",
    "GROUP_OPS_DONE",
];

fn ready(name: &str, mut cmd: Command) -> Child {
    let mut c = Child::spawn(name, &mut cmd);
    c.wait_for("SLIM_RPC_SERVER_READY", LIMIT);
    c
}

fn run_group_ops(url: &str, extra: &[&str], shared: bool, servers: &[Child]) {
    let mut cmd = Command::new(GROUP_OPS);
    cmd.args([
        "--slim",
        url,
        "--servers",
        "ops-a,ops-b,ops-c",
        "--protocol",
        "3",
    ])
    .args(extra);
    let (code, out) = Child::spawn("group-ops", &mut cmd).wait_exit(LIMIT);
    let logs = servers
        .iter()
        .map(Child::output)
        .collect::<Vec<_>>()
        .join("\n----\n");
    assert_eq!(code, Some(0), "{out}\n---- servers:\n{logs}");
    let mut at = 0;
    let steps: Vec<&str> = STEPS
        .iter()
        .copied()
        .filter(|s| shared || *s != "GROUP_OPS_SHARED_OK")
        .collect();
    for step in steps {
        let found = out[at..]
            .find(step)
            .unwrap_or_else(|| panic!("{step} missing or out of order:\n{out}"));
        at += found + step.len();
    }
    if !shared {
        assert!(!out.contains("GROUP_OPS_SHARED_OK"), "{out}");
    }
}

#[test]
fn group_ops_adds_removes_reduces_and_shares_against_our_servers_through_our_node() {
    let (node, url) = slim_node();
    let mut servers = vec![node];
    for instance in ["ops-a", "ops-b", "ops-c"] {
        let mut cmd = Command::new(SERVER);
        cmd.args(["--instance", instance, "--slim", &url, "--protocol", "3"]);
        servers.push(ready(instance, cmd));
    }
    run_group_ops(&url, &[], true, &servers);
}

#[test]
fn group_ops_adds_removes_and_reduces_against_official_3_3_8_servers_through_our_node() {
    let (node, url) = slim_node();
    let mut servers = vec![node];
    for instance in ["ops-a", "ops-b", "ops-c"] {
        let mut cmd = Command::new(venv3_script("slim-bindings-simple-rpc-server"));
        cmd.args(["--instance", instance, "--server", &url])
            .env("PYTHONUNBUFFERED", "1");
        servers.push(ready(&format!("official-{instance}"), cmd));
    }
    run_group_ops(&url, &["--no-shared"], false, &servers);
}
