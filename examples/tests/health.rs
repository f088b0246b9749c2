//! Health checking: `grpc.health.v1.Health` served by `Server::enable_health`,
//! Check and Watch point-to-point, a group check (one call, every member's
//! status) with one member NOT_SERVING, embedded and through our node, the
//! example `client-group --health` against our example servers, and the
//! runtime's copy of the generated health code being what our Rust plugin
//! generates from grpc's `health.proto` now.

mod common;

use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use slim_transport::service::Service;
use slimrpc::health::v1::health_client::{HealthClient, HealthGroupClient};
use slimrpc::health::v1::{HealthCheckRequest, HealthListRequest};
use slimrpc::health::{HealthReporter, ServingStatus};
use slimrpc::{CallOptions, Channel, ChannelOptions, Code, Server, ServerHandle};
use slimrpc_examples::{Protocol, app_with, connect_with, name};
use slimrpc_testkit::{Child, root};

use common::{LIMIT, node, plain};

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("liveness bound passed")
}

fn ask(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_string(),
    }
}

fn opts() -> CallOptions {
    CallOptions::with_timeout(LIMIT)
}

#[test]
fn the_runtimes_health_code_is_what_our_plugin_generates_from_health_proto() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/grpc.health.v1.rs"));
    let copy = root().join("slimrpc-runtime/src/health/grpc.health.v1.rs");
    if std::env::var("SLIMRPC_BLESS").as_deref() == Ok("1") {
        std::fs::write(&copy, generated).expect("copy rewritten");
        return;
    }
    let current = std::fs::read_to_string(&copy).expect("the runtime's copy");
    assert!(
        current == generated,
        "{} differs from what the plugin generates (rerun with SLIMRPC_BLESS=1)",
        copy.display()
    );
}

struct One {
    _service: Service,
    _server: ServerHandle,
    reporter: HealthReporter,
    channel: Channel,
}

async fn one() -> One {
    let service = Service::new();
    let app = app_with(&service, "healthy", Protocol::V3).await.unwrap();
    let mut server = Server::new(app, name("healthy"));
    let reporter = server.enable_health();
    let server = bounded(server.start()).await.unwrap();
    let client = app_with(&service, "doctor", Protocol::V3).await.unwrap();
    let channel = Channel::new(client, vec![name("healthy")]).unwrap();
    One {
        _service: service,
        _server: server,
        reporter,
        channel,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_the_servers_status_and_not_found_for_an_unknown_service() {
    let o = one().await;
    let client = HealthClient::new(o.channel.clone());
    let r = bounded(client.check_with(ask(""), opts())).await.unwrap();
    assert_eq!(r.status(), ServingStatus::Serving);
    let e = bounded(client.check_with(ask("pkg.Nope"), opts()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    o.reporter.set_not_serving("pkg.Echo");
    let r = bounded(client.check_with(ask("pkg.Echo"), opts()))
        .await
        .unwrap();
    assert_eq!(r.status(), ServingStatus::NotServing);
    let all = bounded(client.list_with(HealthListRequest {}, opts()))
        .await
        .unwrap();
    assert_eq!(all.statuses.len(), 2);
    assert_eq!(all.statuses["pkg.Echo"].status(), ServingStatus::NotServing);
    o.reporter.clear("pkg.Echo");
    let e = bounded(client.check_with(ask("pkg.Echo"), opts()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_the_current_status_then_every_change_until_dropped() {
    let o = one().await;
    let client = HealthClient::new(o.channel.clone());
    let mut updates = client.watch_with(ask("pkg.Echo"), opts());
    let next = async |u: &mut slimrpc::ResponseStream<_>| {
        bounded(u.next())
            .await
            .expect("an update")
            .map(|r: slimrpc::health::v1::HealthCheckResponse| r.status())
            .unwrap()
    };
    assert_eq!(next(&mut updates).await, ServingStatus::ServiceUnknown);
    o.reporter.set_serving("pkg.Echo");
    assert_eq!(next(&mut updates).await, ServingStatus::Serving);
    // Setting the same status again sends nothing; a change does.
    o.reporter.set_serving("pkg.Echo");
    o.reporter.set_not_serving("pkg.Echo");
    assert_eq!(next(&mut updates).await, ServingStatus::NotServing);
    drop(updates);
    // The watch handler does not outlive the caller.
    bounded(async {
        while o._server.active_handlers() > 0 || o.channel.pending_calls() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Two members `<tag>-a` (SERVING) and `<tag>-b` (NOT_SERVING), embedded
/// or through our node; one group Check.
async fn group_check(through_node: bool, tag: &str) {
    let (node, url) = if through_node {
        let (n, u) = node().await;
        (Some(n), Some(u))
    } else {
        (None, None)
    };
    let mut services = Vec::new();
    let embedded = Service::new();
    let mut servers = Vec::new();
    let members = [format!("{tag}-a"), format!("{tag}-b")];
    for (i, m) in members.iter().enumerate() {
        let mut server = match &url {
            Some(url) => {
                let (svc, conn) = connect_with(url, Protocol::V3).await.unwrap();
                let app = app_with(&svc, m, Protocol::V3).await.unwrap();
                services.push(svc);
                Server::new_with_connection(app, name(m), conn)
            }
            None => Server::new(app_with(&embedded, m, Protocol::V3).await.unwrap(), name(m)),
        };
        let reporter = server.enable_health();
        if i == 1 {
            reporter.set_not_serving("");
        }
        servers.push((bounded(server.start()).await.unwrap(), reporter));
    }
    let channel = match &url {
        Some(url) => {
            let (svc, conn) = connect_with(url, Protocol::V3).await.unwrap();
            let app = app_with(&svc, &format!("{tag}-c"), Protocol::V3)
                .await
                .unwrap();
            app.subscribe(app.name(), Some(conn)).await.unwrap();
            services.push(svc);
            let options = ChannelOptions {
                connection: Some(conn),
                ..ChannelOptions::default()
            };
            Channel::with_options(app, members.iter().map(|m| name(m)).collect(), options).unwrap()
        }
        None => Channel::new(
            app_with(&embedded, &format!("{tag}-c"), Protocol::V3)
                .await
                .unwrap(),
            members.iter().map(|m| name(m)).collect(),
        )
        .unwrap(),
    };
    let group = HealthGroupClient::new(channel.clone());
    let answers: Vec<_> = bounded(group.check_with(ask(""), opts()).collect::<Vec<_>>()).await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    let mut by_member: Vec<(String, ServingStatus)> = answers
        .into_iter()
        .map(|a| {
            let a = a.expect("every member answers");
            (a.source.strings()[2].clone(), a.message.status())
        })
        .collect();
    by_member.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        by_member,
        vec![
            (members[0].clone(), ServingStatus::Serving),
            (members[1].clone(), ServingStatus::NotServing),
        ]
    );
    let _ = channel.close().await;
    for (s, _) in servers {
        s.shutdown().await;
    }
    for s in services {
        s.shutdown().await;
    }
    embedded.shutdown().await;
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_check_reports_every_members_status_with_one_not_serving_embedded() {
    group_check(false, "hg-e").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_check_reports_every_members_status_with_one_not_serving_through_our_node() {
    group_check(true, "hg-n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_group_client_checks_every_members_health_in_one_call() {
    let (_node, url) = node().await;
    let server_bin = env!("CARGO_BIN_EXE_server");
    let client_bin = env!("CARGO_BIN_EXE_client-group");
    let mut servers = Vec::new();
    for (instance, status) in [("hx1", "serving"), ("hx2", "not-serving")] {
        let mut cmd = Command::new(server_bin);
        cmd.args(["--instance", instance, "--slim", &url, "--health", status]);
        servers.push(common::spawn_ready(instance, cmd, "SLIM_RPC_SERVER_READY").await);
    }
    let url2 = url.clone();
    let (code, out) = tokio::task::spawn_blocking(move || {
        let mut c = Child::spawn(
            "client-group-health",
            Command::new(client_bin).args(["--servers", "hx1,hx2", "--slim", &url2, "--health"]),
        );
        c.wait_exit(LIMIT)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{out}");
    let lines = plain(&out);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("health agntcy/grpc/hx1: SERVING")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("health agntcy/grpc/hx2: NOT_SERVING")),
        "{out}"
    );
    drop(servers);
}
