//! `slim`: a standalone SLIM data-plane node serving both wire generations
//! (v1: official 1.3/1.4, v3: official 2.x/3.x) on every endpoint.
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
use slim_transport::config::{
    BackoffConfig, ClientConfig, Config, LinkProtocol, TlsConfig, parse_duration,
};
use slim_transport::service::{
    Generation, Limits, LinkOptions, LinkPolicy, ReconnectPolicy, Service,
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};
use tracing::{error, info, warn};

#[derive(Parser, Debug)]
#[command(
    name = "slim",
    about = "SLIM data-plane node: every endpoint serves SLIM v1 (official 1.3/1.4) and SLIM v3 \
             (official 2.x/3.x, what `pip install slim-bindings` gives) at once; each \
             connection's generation is detected from its first message, and messages are \
             routed only among connections of the same generation"
)]
struct Args {
    /// YAML configuration (official SLIM node shape).
    #[arg(long, conflicts_with = "endpoint")]
    config: Option<PathBuf>,
    /// Serve a single insecure endpoint, e.g. 127.0.0.1:46357.
    #[arg(long)]
    endpoint: Option<String>,
    /// With --endpoint: accept v3 links without the per-link header MAC
    /// (as the official bindings' embedded node does).
    #[arg(long, requires = "endpoint")]
    lax_header_mac: bool,
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
        (None, Some(ep)) => {
            let mut c = Config::single_server(ep);
            if args.lax_header_mac {
                for svc in c.services.values_mut() {
                    for s in &mut svc.dataplane.servers {
                        s.require_header_mac = false;
                    }
                }
            }
            c
        }
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
        // Colour codes only on a terminal: log files stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
    let servers = config.services.values().flat_map(|s| &s.dataplane.servers);
    let strict = servers.clone().all(|s| s.require_header_mac);
    service.set_link_policy(LinkPolicy {
        require_header_mac: strict,
    });
    let mut limits = Limits::default();
    if let Some(n) = servers.clone().filter_map(|s| s.max_connections).min() {
        limits.max_connections = n;
    }
    if let Some(n) = servers.filter_map(|s| s.max_message_size).min() {
        limits.max_message_size = n;
    }
    service.set_limits(limits);
    if let Some(c) = config
        .services
        .values()
        .flat_map(|s| &s.dataplane.clients)
        .next()
    {
        service.set_reconnect_policy(reconnect_policy(&c.backoff)?);
    }
    let mut links = Vec::new();
    for (name, svc) in &config.services {
        info!(service = %name, "starting service");
        for s in &svc.dataplane.servers {
            let builder =
                server_builder(&s.tls).map_err(|e| format!("server {}: {e}", s.endpoint))?;
            let addr = resolve(&s.endpoint).await?;
            let bound = service
                .run_server_with(addr, builder)
                .await
                .map_err(|e| e.to_string())?;
            // Tests and scripts wait for this exact line.
            println!("slim node listening on {bound}");
        }
        for c in &svc.dataplane.clients {
            let ep = client_endpoint(c).map_err(|e| format!("client {}: {e}", c.endpoint))?;
            let svc = service.clone();
            let c = c.clone();
            links.push(tokio::spawn(async move { keep_linking(svc, c, ep).await }));
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
/// link itself then reconnects on loss). With `protocol: auto` the node
/// links every generation the peer serves: the v3 link first, then, when
/// the peer also answers a v1 request (another dual-stack node), a v1 link
/// beside it, so apps of both generations reach each other across nodes.
async fn keep_linking(service: Service, c: ClientConfig, ep: Endpoint) {
    let mut backoff = Duration::from_millis(100);
    let opts = LinkOptions {
        generation: match c.protocol {
            LinkProtocol::Auto => None,
            LinkProtocol::V1 => Some(Generation::V1),
            LinkProtocol::V3 => Some(Generation::V3),
        },
        upstream: c.upstream,
        require_header_mac: c.require_header_mac,
        edge: false,
    };
    let conn = loop {
        match service.connect_endpoint_with(ep.clone(), opts).await {
            Ok(conn) => break conn,
            Err(e) => {
                warn!(endpoint = %c.endpoint, error = %e, "link failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    let generation = service.generation(conn);
    println!("slim node linked to {} (connection {conn})", c.endpoint);
    info!(endpoint = %c.endpoint, conn, upstream = c.upstream, ?generation, "link up");
    if c.protocol == LinkProtocol::Auto && generation == Some(Generation::V3) {
        let v1 = LinkOptions {
            generation: Some(Generation::V1),
            ..opts
        };
        match service.connect_endpoint_with(ep, v1).await {
            Ok(conn) => {
                println!(
                    "slim node linked to {} (connection {conn}, SLIM v1)",
                    c.endpoint
                );
                info!(endpoint = %c.endpoint, conn, "second link for SLIM v1 up");
            }
            Err(e) => {
                info!(endpoint = %c.endpoint, error = %e, "the peer serves only SLIM v3")
            }
        }
    }
}

/// The reconnect policy of a `backoff:` entry.
fn reconnect_policy(b: &BackoffConfig) -> Result<ReconnectPolicy, String> {
    let mut p = ReconnectPolicy::default();
    if let Some(ms) = b.base {
        p.initial = Duration::from_millis(ms.max(1));
    }
    if let Some(d) = &b.max_delay {
        p.max = parse_duration(d).map_err(|e| e.to_string())?;
    }
    if b.jitter == Some(false) {
        p.jitter = 0.0;
    }
    Ok(p)
}

fn read_pem(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A tonic server builder with this entry's TLS identity (and client CA
/// for mutual TLS), or a plain one for `insecure: true`.
fn server_builder(tls: &TlsConfig) -> Result<Server, String> {
    let builder = Server::builder();
    if !tls.wants_tls() {
        return Ok(builder);
    }
    let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) else {
        return Err("TLS needs both cert_file and key_file".into());
    };
    let mut cfg =
        ServerTlsConfig::new().identity(Identity::from_pem(read_pem(cert)?, read_pem(key)?));
    if let Some(ca) = &tls.ca_file {
        cfg = cfg.client_ca_root(Certificate::from_pem(read_pem(ca)?));
    }
    builder.tls_config(cfg).map_err(|e| format!("TLS: {e}"))
}

/// The tonic endpoint of an outgoing link (`https` and a CA when TLS).
fn client_endpoint(c: &ClientConfig) -> Result<Endpoint, String> {
    let tls = c.tls.wants_tls();
    let uri = if c.endpoint.contains("://") {
        c.endpoint.clone()
    } else if tls {
        format!("https://{}", c.endpoint)
    } else {
        format!("http://{}", c.endpoint)
    };
    let ep = Endpoint::from_shared(uri)
        .map_err(|e| format!("invalid endpoint: {e}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10));
    if !tls {
        return Ok(ep);
    }
    let mut cfg = ClientTlsConfig::new();
    if let Some(ca) = &c.tls.ca_file {
        cfg = cfg.ca_certificate(Certificate::from_pem(read_pem(ca)?));
    }
    if let (Some(cert), Some(key)) = (&c.tls.cert_file, &c.tls.key_file) {
        cfg = cfg.identity(Identity::from_pem(read_pem(cert)?, read_pem(key)?));
    }
    ep.tls_config(cfg).map_err(|e| format!("TLS: {e}"))
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
