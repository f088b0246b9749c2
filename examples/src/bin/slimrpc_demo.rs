//! `slimrpc-demo`: one process, no sockets. Starts `server1` and `server2` on the embedded
//! SLIM transport, runs the group client through the four group shapes (every response
//! tagged with its member) and the point-to-point client through the four P2P shapes
//! against `server1`. Exits non-zero on any failure. `--protocol 1|3` picks the SLIM wire
//! generation the apps speak (default 3), as in the programs that use a node.

use std::process::ExitCode;

use clap::Parser;
use slimrpc_examples::example_service::test_client::{TestClient, TestGroupClient};
use slimrpc_examples::{
    ExampleError, Protocol, app_with, init_tracing, name, run_group, run_p2p, serve,
};

#[derive(Parser)]
#[command(about = "SlimRPC demo: two servers and a group client in one process")]
struct Args {
    /// SLIM wire generation: 3 (official 2.x/3.x) or 1 (official 1.3/1.4).
    #[arg(long, value_enum, default_value = "3")]
    protocol: Protocol,
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let args = Args::parse();
    let run = async {
        let service = slim_transport::service::Service::new();
        let mut servers = Vec::new();
        for instance in ["server1", "server2"] {
            let app = app_with(&service, instance, args.protocol).await?;
            servers.push(serve(app, instance, None).await?);
        }
        let client = app_with(&service, "demo-client", args.protocol).await?;
        println!("== group client: server1, server2");
        let group = slimrpc::Channel::new(client.clone(), vec![name("server1"), name("server2")])?;
        run_group(&TestGroupClient::new(group.clone())).await?;
        group.close().await?;
        println!("== point-to-point client: server1");
        let p2p = slimrpc::Channel::new(client, vec![name("server1")])?;
        run_p2p(&TestClient::new(p2p.clone())).await?;
        p2p.close().await?;
        for s in servers {
            s.shutdown().await;
        }
        service.shutdown().await;
        Ok::<_, ExampleError>(())
    };
    match run.await {
        Ok(()) => {
            println!("SLIMRPC_DEMO_DONE");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("slimrpc-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
