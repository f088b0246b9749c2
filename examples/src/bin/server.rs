//! `server --instance NAME --slim URL`: serves `example_service.Test` as `agntcy/grpc/NAME`
//! through the SLIM node at URL, with the official example server's answers, and
//! `grpc.health.v1.Health` (`--health not-serving` to report the server NOT_SERVING). Prints
//! `SLIM_RPC_SERVER_READY` once subscribed; runs until Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use slimrpc::health::ServingStatus;
use slimrpc_examples::{Protocol, app_with, connect_with, init_tracing, serve_with_health};

/// What the server's health service reports for the whole server.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Health {
    Serving,
    NotServing,
}

#[derive(Parser)]
#[command(about = "SlimRPC example server (example_service.Test)")]
struct Args {
    /// Instance name: the server is `agntcy/grpc/<instance>`.
    #[arg(long, default_value = "server")]
    instance: String,
    /// SLIM node to connect to.
    #[arg(long, default_value = "http://localhost:46357")]
    slim: String,
    /// SLIM wire generation: 3 (official 2.x/3.x) or 1 (official 1.3/1.4).
    #[arg(long, value_enum, default_value = "3")]
    protocol: Protocol,
    /// Status its `grpc.health.v1.Health` service reports for the whole server.
    #[arg(long, value_enum, default_value = "serving")]
    health: Health,
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let args = Args::parse();
    let run = async {
        let (service, conn) = connect_with(&args.slim, args.protocol).await?;
        let app = app_with(&service, &args.instance, args.protocol).await?;
        let (handle, health) = serve_with_health(app, &args.instance, Some(conn)).await?;
        if let Health::NotServing = args.health {
            health.set_status("", ServingStatus::NotServing);
        }
        println!("SLIM_RPC_SERVER_READY");
        let _ = tokio::signal::ctrl_c().await;
        handle.shutdown().await;
        service.shutdown().await;
        Ok::<_, slimrpc_examples::ExampleError>(())
    };
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server: {e}");
            ExitCode::FAILURE
        }
    }
}
