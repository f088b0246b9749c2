//! The library is loaded the way the benchmark loads it: `LD_PRELOAD` into a
//! fresh process. This test re-executes its own binary as that process (the
//! `NODELAY_PROBE` variable selects the probe) and reads what the probe saw.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;

const PROBE: &str = "NODELAY_PROBE";
const TEST: &str = "nagle_is_off_on_every_loopback_tcp_socket_only_when_the_library_is_preloaded";

/// Prints `connect=<bool> accept=<bool> after_off=<bool>`: `TCP_NODELAY` on
/// a connected socket, on the accepted one, and on the connected one after
/// the program turned it off.
fn probe() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    let connect = client.nodelay().expect("getsockopt");
    let accept = server.nodelay().expect("getsockopt");
    client.set_nodelay(false).expect("setsockopt");
    let after_off = client.nodelay().expect("getsockopt");
    println!("PROBE connect={connect} accept={accept} after_off={after_off}");
}

fn run_probe(preload: Option<&PathBuf>) -> String {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(PROBE, "1")
        .env_remove("LD_PRELOAD");
    if let Some(lib) = preload {
        cmd.env("LD_PRELOAD", lib);
    }
    let out = cmd.output().expect("run probe");
    assert!(out.status.success(), "probe failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.split_once("PROBE ").map(|(_, probe)| probe.to_string()))
        .unwrap_or_else(|| panic!("no probe line in {out:?}"))
}

#[test]
fn nagle_is_off_on_every_loopback_tcp_socket_only_when_the_library_is_preloaded() {
    if std::env::var_os(PROBE).is_some() {
        probe();
        return;
    }
    let lib = slimrpc_testkit::nodelay_preload_library().expect("build the library");
    // Without the library the kernel default (Nagle on) and the program's
    // own choice stand.
    assert_eq!(
        run_probe(None),
        "connect=false accept=false after_off=false"
    );
    // With it, both ends start with Nagle off and the program cannot turn
    // it back on.
    assert_eq!(
        run_probe(Some(&lib)),
        "connect=true accept=true after_off=true"
    );
}
