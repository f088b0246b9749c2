//! `client-group --servers a,b --slim URL`: the four group shapes against
//! `agntcy/grpc/a`, `agntcy/grpc/b`, ... through the SLIM node at URL. Prints every response
//! tagged with the member that sent it, then `SLIM_RPC_GROUP_CLIENT_DONE`; exits non-zero on
//! any failure (a member's error included). With `--health`: one health check of every member
//! instead (`health <member>: SERVING`).

use std::process::ExitCode;

use clap::Parser;
use slimrpc_examples::example_service::test_client::TestGroupClient;
use slimrpc_examples::{
    ExampleError, Protocol, app_with, connect_with, init_tracing, name, run_group, short,
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
    /// Instead of the four shapes: one `grpc.health.v1.Health/Check` call to every member,
    /// printing `health <member>: <STATUS>` per member.
    #[arg(long)]
    health: bool,
}

/// One Check call to the whole group; every member's status (or error) is printed.
async fn check_health(channel: &slimrpc::Channel) -> Result<(), ExampleError> {
    use futures::StreamExt;
    use slimrpc::health::v1::{HealthCheckRequest, health_client::HealthGroupClient};
    let group = HealthGroupClient::new(channel.clone());
    let mut answers = group.check_with(
        HealthCheckRequest {
            service: String::new(),
        },
        slimrpc_examples::options(),
    );
    let mut failed = None;
    while let Some(answer) = answers.next().await {
        match answer {
            Ok(item) => println!(
                "health {}: {}",
                short(&item.source),
                item.message.status().as_str_name()
            ),
            Err(e) => {
                println!("health error: {e}");
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
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
        if args.health {
            check_health(&channel).await?;
        } else {
            run_group(&TestGroupClient::new(channel.clone())).await?;
        }
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
