//! `slim`: a standalone SLIM v1.3 data-plane node.
//!
//! `slim --config config.yaml` reads the official node's YAML shape (see
//! `slim_transport::config`); `slim --endpoint 127.0.0.1:46357` serves one
//! insecure endpoint. Prints `slim node listening on ADDR` once per server
//! (tests wait for it), links to the configured `clients:`, and drains on
//! SIGINT/SIGTERM, exiting 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use slim_transport::config::{ClientConfig, Config};
use slim_transport::service::Service;
use tracing::{error, info, warn};

#[derive(Parser, Debug)]
#[command(name = "slim", about = "SLIM v1.3 data-plane node")]
struct Args {
    /// YAML configuration (official SLIM node shape).
    #[arg(long, conflicts_with = "endpoint")]
    config: Option<PathBuf>,
    /// Serve a single insecure endpoint, e.g. 127.0.0.1:46357.
    #[arg(long)]
    endpoint: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match (&args.config, &args.endpoint) {
        (Some(path), _) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("slim: {e}");
                return ExitCode::from(2);
            }
        },
        (None, Some(ep)) => Config::single_server(ep),
        (None, None) => {
            eprintln!("slim: give --config <file> or --endpoint <addr>");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.tracing.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if config.runtime.n_cores > 0 {
        rt.worker_threads(config.runtime.n_cores);
    }
    if let Some(name) = &config.runtime.thread_name {
        rt.thread_name(name.clone());
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("slim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("slim: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn resolve(endpoint: &str) -> Result<SocketAddr, String> {
    let hostport = endpoint
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(endpoint);
    tokio::net::lookup_host(hostport)
        .await
        .map_err(|e| format!("cannot resolve {endpoint}: {e}"))?
        .next()
        .ok_or_else(|| format!("{endpoint} resolves to no address"))
}

async fn run(config: Config) -> Result<(), String> {
    let drain = config.runtime.drain().map_err(|e| e.to_string())?;
    let service = Service::new();
    let mut links = Vec::new();
    for (name, svc) in &config.services {
        info!(service = %name, "starting service");
        for s in &svc.dataplane.servers {
            if s.tls.wants_tls() {
                return Err(format!(
                    "server {}: TLS (cert_file/key_file) is not supported by this build; use `tls: {{ insecure: true }}`",
                    s.endpoint
                ));
            }
            let addr = resolve(&s.endpoint).await?;
            let bound = service.run_server(addr).await.map_err(|e| e.to_string())?;
            // Tests and scripts wait for this exact line.
            println!("slim node listening on {bound}");
        }
        for c in &svc.dataplane.clients {
            if c.tls.wants_tls() {
                return Err(format!(
                    "client {}: TLS (ca_file/cert_file) is not supported by this build; use `tls: {{ insecure: true }}`",
                    c.endpoint
                ));
            }
            let svc = service.clone();
            let c = c.clone();
            links.push(tokio::spawn(async move { keep_linking(svc, c).await }));
        }
    }
    shutdown_signal().await;
    info!("signal received; draining");
    for l in &links {
        l.abort();
    }
    if tokio::time::timeout(drain, service.shutdown())
        .await
        .is_err()
    {
        warn!(?drain, "drain timeout passed; exiting anyway");
    }
    info!("slim node stopped");
    Ok(())
}

/// Opens a configured outgoing link, retrying until the peer is up (the
/// link itself then reconnects on loss).
async fn keep_linking(service: Service, c: ClientConfig) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let r = if c.upstream {
            service.connect_upstream(&c.endpoint).await
        } else {
            service.connect(&c.endpoint).await
        };
        match r {
            Ok(conn) => {
                println!("slim node linked to {} (connection {conn})", c.endpoint);
                info!(endpoint = %c.endpoint, conn, upstream = c.upstream, "link up");
                return;
            }
            Err(e) => {
                warn!(endpoint = %c.endpoint, error = %e, "link failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the node");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
