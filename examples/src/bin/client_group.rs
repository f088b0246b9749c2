//! `client-group --servers a,b --slim URL`: the four group shapes against
//! `agntcy/grpc/a`, `agntcy/grpc/b`, ... through the SLIM node at URL. Prints every response
//! tagged with the member that sent it, then `SLIM_RPC_GROUP_CLIENT_DONE`; exits non-zero on
//! any failure (a member's error included).

use std::process::ExitCode;

use clap::Parser;
use slimrpc_examples::example_service::test_client::TestGroupClient;
use slimrpc_examples::{
    ExampleError, Protocol, app_with, connect_with, init_tracing, name, run_group,
};

#[derive(Parser)]
#[command(about = "SlimRPC example group client")]
struct Args {
    /// Server instances, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "server1,server2")]
    servers: Vec<String>,
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
        let app = app_with(&service, "client-group", args.protocol).await?;
        app.subscribe(app.name(), Some(conn))
            .await
            .map_err(|e| ExampleError::Slim(e.to_string()))?;
        let members = args.servers.iter().map(|s| name(s)).collect();
        let channel = slimrpc::Channel::new_with_connection(app, members, conn)?;
        println!("SLIM_RPC_GROUP_CLIENT_STARTED");
        run_group(&TestGroupClient::new(channel.clone())).await?;
        channel.close().await?;
        service.shutdown().await;
        Ok::<_, ExampleError>(())
    };
    match run.await {
        Ok(()) => {
            println!("SLIM_RPC_GROUP_CLIENT_DONE");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("client-group: {e}");
            ExitCode::FAILURE
        }
    }
}
