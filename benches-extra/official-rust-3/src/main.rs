//! The official SLIM 3.x Rust stack (`agntcy-slim-rpc` 3.4.6 over
//! `agntcy-slim-service` 0.13) in the three roles of the e2e bench
//! (`slimrpc-runtime/benches/e2e.rs`), with the same arguments and output as
//! `benches/official_rpc.py`:
//!
//! * `node --port P`: a SLIM node on 127.0.0.1:P; prints `NODE_READY`.
//! * `servers --slim URL --instances a,b,..`: one app and SlimRPC server per
//!   instance, answering `bench.Bench/Echo` with its request; prints
//!   `SERVERS_READY`.
//! * `client --slim URL --case p2p-seq|p2p-conc|group --members a,b --n N
//!   --label L`: one set-up call, then N timed calls; prints one `BENCH_ROW`
//!   line, and a `BENCH_ERROR` line if a timed call failed (the row then
//!   covers the calls before it).
//!
//! Built on demand by `cargo xtask bench` (never by the tests). It measures;
//! it asserts nothing about speed.

#[path = "../../official-rust-common.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{BoxError, ClientArgs, METHOD, NS, ORG, SECRET, SVC, TIMEOUT, flag, list, payload};
use futures::StreamExt;
use slim_auth::auth_provider::{AuthProvider, AuthVerifier};
use slim_auth::shared_secret::SharedSecret;
use slim_config::component::id::{ID, Kind};
use slim_config::tls::client::TlsClientConfig;
use slim_config::tls::server::TlsServerConfig;
use slim_datapath::api::ProtoName as Name;
use slim_rpc::{Channel, Context, RpcError, Server};
use slim_service::Service;

type App = slim_service::app::App<AuthProvider, AuthVerifier>;
type Notifications = tokio::sync::mpsc::Receiver<
    Result<slim_session::notification::Notification, slim_session::errors::SessionError>,
>;

fn name(instance: &str) -> Name {
    Name::from_strings([ORG, NS, instance])
}

fn service(id: &str) -> Result<Service, BoxError> {
    Ok(Service::new(ID::new_with_name(Kind::new("slim")?, id)?))
}

async fn connect(service: &Service, url: &str) -> Result<u64, BoxError> {
    let config = slim_config::client::ClientConfig::with_endpoint(url)
        .with_tls_setting(TlsClientConfig::insecure());
    Ok(service.connect(&config).await?)
}

/// An app `agntcy/grpc/<instance>` with the shared-secret identity.
fn app(service: &Service, instance: &str) -> Result<(App, Notifications), BoxError> {
    let id = format!("{ORG}/{NS}/{instance}");
    let provider = AuthProvider::SharedSecret(SharedSecret::new(&id, SECRET)?);
    let verifier = AuthVerifier::SharedSecret(SharedSecret::new(&id, SECRET)?);
    Ok(service.create_app(&name(instance), provider, verifier)?)
}

async fn role_node(args: &[String]) -> Result<(), BoxError> {
    let port: u16 = flag(args, "--port")?.parse()?;
    let service = service("bench-node")?;
    let endpoint = format!("127.0.0.1:{port}");
    let config = slim_config::server::ServerConfig::with_endpoint(&endpoint)
        .with_tls_settings(TlsServerConfig::insecure());
    service.run_server(&config).await?;
    println!("NODE_READY {endpoint}");
    std::future::pending::<()>().await;
    Ok(())
}

async fn role_servers(args: &[String]) -> Result<(), BoxError> {
    let service = service("bench-servers")?;
    let conn = connect(&service, &flag(args, "--slim")?).await?;
    let mut tasks = Vec::new();
    for instance in list(&flag(args, "--instances")?) {
        let (app, rx) = app(&service, &instance)?;
        let app = Arc::new(app);
        app.subscribe(&name(&instance), Some(conn)).await?;
        let server =
            Server::new_with_connection_and_runtime(app, name(&instance), Some(conn), rx, None);
        server.register_unary_unary(SVC, METHOD, |req: Vec<u8>, _: Context| async move {
            Ok::<_, RpcError>(req)
        });
        tasks.push(tokio::spawn(async move { server.serve().await }));
    }
    // Let every serve loop subscribe before the client is told to go.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("SERVERS_READY {}", tasks.len());
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn one(channel: Channel, k: usize) -> Result<(), BoxError> {
    if k > 1 {
        let answers = channel.multicast_unary::<Vec<u8>, Vec<u8>>(
            SVC,
            METHOD,
            payload(),
            Some(TIMEOUT),
            None,
        );
        futures::pin_mut!(answers);
        let mut got = 0;
        while let Some(a) = answers.next().await {
            a?;
            got += 1;
        }
        if got != k {
            return Err(format!("{got} answers from {k} members").into());
        }
    } else {
        let _: Vec<u8> = channel
            .unary(SVC, METHOD, payload(), Some(TIMEOUT), None)
            .await?;
    }
    Ok(())
}

async fn role_client(args: &[String]) -> Result<(), BoxError> {
    let a = ClientArgs::parse(args)?;
    let k = a.members.len();
    let service = service("bench-client")?;
    let conn = connect(&service, &a.slim).await?;
    let (app, _notifications) = app(&service, &a.me)?;
    let app = Arc::new(app);
    app.subscribe(&name(&a.me), Some(conn)).await?;
    let channel = if k > 1 {
        Channel::new_group_with_connection(
            app,
            a.members.iter().map(|m| Arc::new(name(m))).collect(),
            Some(conn),
        )?
    } else {
        Channel::new_with_connection(app, Arc::new(name(&a.members[0])), Some(conn))
    };
    let ch = channel.clone();
    common::run_client(&a.case, k, a.n, move || one(ch.clone(), k)).await?;
    // The figures are out; closing is best effort.
    let _ = tokio::time::timeout(Duration::from_secs(10), channel.close(None)).await;
    Ok(())
}

fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    common::main_with(&rt, |role, args| async move {
        match role.as_str() {
            "node" => role_node(&args).await,
            "servers" => role_servers(&args).await,
            "client" => role_client(&args).await,
            _ => Err("usage: node|servers|client [--flag value ...]".into()),
        }
    });
}
