//! `client --slim URL`: the four point-to-point shapes against `agntcy/grpc/server` through
//! the SLIM node at URL, as the official example client runs them. Prints every response,
//! then `SLIM_RPC_CLIENT_DONE`; exits non-zero on any failure.

use std::process::ExitCode;

use clap::Parser;
use slimrpc_examples::example_service::test_client::TestClient;
use slimrpc_examples::{
    ExampleError, Protocol, app_with, connect_with, init_tracing, name, run_p2p,
};

#[derive(Parser)]
#[command(about = "SlimRPC example client (point-to-point)")]
struct Args {
    /// SLIM node to connect to.
    #[arg(long, default_value = "http://localhost:46357")]
    slim: String,
    /// Server instance to call (`agntcy/grpc/<server>`).
    #[arg(long, default_value = "server")]
    server: String,
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
        let app = app_with(&service, "client", args.protocol).await?;
        // Replies come back by name: announce ours on the link.
        app.subscribe(app.name(), Some(conn))
            .await
            .map_err(|e| ExampleError::Slim(e.to_string()))?;
        let channel = slimrpc::Channel::new_with_connection(app, vec![name(&args.server)], conn)?;
        println!("SLIM_RPC_CLIENT_STARTED");
        run_p2p(&TestClient::new(channel.clone())).await?;
        channel.close().await?;
        service.shutdown().await;
        Ok::<_, ExampleError>(())
    };
    match run.await {
        Ok(()) => {
            println!("SLIM_RPC_CLIENT_DONE");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("client: {e}");
            ExitCode::FAILURE
        }
    }
}
