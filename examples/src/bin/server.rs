//! `server --instance NAME --slim URL`: serves `example_service.Test` as `agntcy/grpc/NAME`
//! through the SLIM node at URL, with the official example server's answers. Prints
//! `SLIM_RPC_SERVER_READY` once subscribed; runs until Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use slimrpc_examples::{Protocol, app_with, connect_with, init_tracing, serve};

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
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let args = Args::parse();
    let run = async {
        let (service, conn) = connect_with(&args.slim, args.protocol).await?;
        let app = app_with(&service, &args.instance, args.protocol).await?;
        let handle = serve(app, &args.instance, Some(conn)).await?;
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
