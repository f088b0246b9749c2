//! The official SLIM 1.3 Rust stack (`agntcy-slim-bindings` 1.3.0, called
//! natively: the API the 1.3.0 Python wheel wraps, without Python) in the
//! three roles of the e2e bench (`slimrpc-runtime/benches/e2e.rs`), with the
//! same arguments and output as `benches/official_rpc.py`:
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
//! Everything runs on the bindings' own tokio runtime, as in the wheel.
//! Built on demand by `cargo xtask bench` (never by the tests). It measures;
//! it asserts nothing about speed.

#[path = "../../official-rust-common.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{BoxError, ClientArgs, METHOD, NS, ORG, SECRET, SVC, TIMEOUT, flag, list, payload};
use slim_bindings::{
    App, Channel, Context, MulticastStreamMessage, Name, RpcError, Server, Service,
    UnaryUnaryHandler,
};

fn name(instance: &str) -> Arc<Name> {
    Arc::new(Name::new(ORG.into(), NS.into(), instance.into()))
}

/// Initialises the bindings (warn-level logs) and returns their service.
fn init() -> Result<Arc<Service>, BoxError> {
    let mut tracing = slim_bindings::new_tracing_config();
    tracing.log_level = "warn".into();
    slim_bindings::initialize_with_configs(
        slim_bindings::new_runtime_config(),
        tracing,
        &[slim_bindings::new_service_config()],
    )?;
    Ok(slim_bindings::get_global_service())
}

async fn app(service: &Service, instance: &str, conn: u64) -> Result<Arc<App>, BoxError> {
    let app = service
        .create_app_with_secret_async(name(instance), SECRET.into())
        .await?;
    app.subscribe_async(name(instance), Some(conn)).await?;
    Ok(app)
}

async fn role_node(service: Arc<Service>, args: &[String]) -> Result<(), BoxError> {
    let port: u16 = flag(args, "--port")?.parse()?;
    let endpoint = format!("127.0.0.1:{port}");
    service
        .run_server_async(slim_bindings::new_insecure_server_config(endpoint.clone()))
        .await?;
    println!("NODE_READY {endpoint}");
    std::future::pending::<()>().await;
    Ok(())
}

/// `bench.Bench/Echo`: answers with the request bytes.
struct Echo;

#[async_trait::async_trait]
impl UnaryUnaryHandler for Echo {
    async fn handle(&self, request: Vec<u8>, _: Arc<Context>) -> Result<Vec<u8>, RpcError> {
        Ok(request)
    }
}

async fn role_servers(service: Arc<Service>, args: &[String]) -> Result<(), BoxError> {
    let conn = service
        .connect_async(slim_bindings::new_insecure_client_config(flag(
            args, "--slim",
        )?))
        .await?;
    let mut tasks = Vec::new();
    for instance in list(&flag(args, "--instances")?) {
        let app = app(&service, &instance, conn).await?;
        let server = Server::new_with_connection(&app, name(&instance), Some(conn));
        server.register_unary_unary(SVC.into(), METHOD.into(), Arc::new(Echo));
        tasks.push(tokio::spawn(async move { server.serve_async().await }));
    }
    // Let every serve loop start before the client is told to go.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("SERVERS_READY {}", tasks.len());
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn one(channel: Arc<Channel>, k: usize) -> Result<(), BoxError> {
    if k > 1 {
        let reader = channel
            .call_multicast_unary_async(SVC.into(), METHOD.into(), payload(), Some(TIMEOUT), None)
            .await?;
        let mut got = 0;
        loop {
            match reader.next_async().await {
                MulticastStreamMessage::End => break,
                MulticastStreamMessage::Error { error } => {
                    return Err(format!("member error: {error}").into());
                }
                MulticastStreamMessage::Data { .. } => got += 1,
            }
        }
        if got != k {
            return Err(format!("{got} answers from {k} members").into());
        }
    } else {
        channel
            .call_unary_async(SVC.into(), METHOD.into(), payload(), Some(TIMEOUT), None)
            .await?;
    }
    Ok(())
}

async fn role_client(service: Arc<Service>, args: &[String]) -> Result<(), BoxError> {
    let a = ClientArgs::parse(args)?;
    let k = a.members.len();
    let conn = service
        .connect_async(slim_bindings::new_insecure_client_config(a.slim.clone()))
        .await?;
    let app = app(&service, &a.me, conn).await?;
    let channel = Arc::new(if k > 1 {
        Channel::new_group_with_connection(
            app,
            a.members.iter().map(|m| name(m)).collect(),
            Some(conn),
        )?
    } else {
        Channel::new_with_connection(app, name(&a.members[0]), Some(conn))
    });
    let ch = channel.clone();
    common::run_client(&a.case, k, a.n, move || one(ch.clone(), k)).await?;
    // The figures are out; closing is best effort.
    let _ = tokio::time::timeout(Duration::from_secs(10), channel.close_async(None)).await;
    Ok(())
}

fn main() {
    let service = match init() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("init: {e}");
            std::process::exit(1);
        }
    };
    common::main_with(slim_bindings::get_runtime(), |role, args| async move {
        match role.as_str() {
            "node" => role_node(service, &args).await,
            "servers" => role_servers(service, &args).await,
            "client" => role_client(service, &args).await,
            _ => Err("usage: node|servers|client [--flag value ...]".into()),
        }
    });
}
