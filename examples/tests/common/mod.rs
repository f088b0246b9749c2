//! Helpers shared by the example-program tests: an in-process SLIM node on
//! 127.0.0.1 and spawning a program until it reports ready.

// Each test crate uses its own subset.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use slim_transport::service::Service;
use slimrpc_testkit::Child;

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
