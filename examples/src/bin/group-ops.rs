//! `group-ops --slim URL --servers a,b,c [--no-shared] [--protocol 1|3]`: live membership
//! and reducers of Group RPC against `agntcy/grpc/a`, `.../b`, `.../c` through the SLIM node
//! at URL. Calls the group {a, b}; adds c to the live channel and calls again (three answers,
//! same session); removes a and calls (b and c answer); then runs the first-response,
//! majority and quorum(2) reducers. Each `GROUP_OPS_*_OK` line is printed only after the
//! step's outcome was checked; `GROUP_OPS_DONE` last. Exits non-zero on the first failed
//! check. Works with unmodified official servers as members (membership is session-level).
//! Unless `--no-shared`, a shared-responses call follows (members must run a server that
//! takes part, such as our example `server`): each member's answer must name the other.

use std::collections::BTreeSet;
use std::process::ExitCode;

use clap::Parser;
use futures::StreamExt;
use slimrpc::{GroupResponsesExt, MulticastStream};
use slimrpc_examples::example_service::ExampleRequest;
use slimrpc_examples::example_service::ExampleResponse;
use slimrpc_examples::example_service::test_client::TestGroupClient;
use slimrpc_examples::{
    ExampleError, Protocol, app_with, connect_with, init_tracing, name, options, short,
};

#[derive(Parser)]
#[command(about = "Group RPC live membership and reducers")]
struct Args {
    /// Exactly three server instances, comma-separated: the group starts as the first two.
    #[arg(long, value_delimiter = ',', default_value = "server1,server2,server3")]
    servers: Vec<String>,
    /// SLIM node to connect to.
    #[arg(long, default_value = "http://localhost:46357")]
    slim: String,
    /// Skip the shared-responses step (for servers that do not take part, e.g. official ones).
    #[arg(long)]
    no_shared: bool,
    /// SLIM wire generation: 3 (official 2.x/3.x) or 1 (official 1.3/1.4).
    #[arg(long, value_enum, default_value = "3")]
    protocol: Protocol,
}

fn failed(what: impl Into<String>) -> ExampleError {
    ExampleError::Slim(format!("check failed: {}", what.into()))
}

fn hello() -> ExampleRequest {
    ExampleRequest {
        example_integer: 1,
        example_string: "hello".into(),
    }
}

/// Every member's answer to one group unary call: the members that answered. Any member
/// error, or an answer that is not the example server's, fails the step.
async fn answers(
    step: &str,
    stream: MulticastStream<ExampleResponse>,
) -> Result<BTreeSet<String>, ExampleError> {
    let items: Vec<_> = stream.collect().await;
    let mut members = BTreeSet::new();
    for item in items {
        let item = item.map_err(|e| failed(format!("{step}: a member failed: {e}")))?;
        let who = short(&item.source);
        println!("{step}: [{who}] {}", item.message.example_string);
        if item.message.example_string != "Hello, World!" {
            return Err(failed(format!("{step}: unexpected answer from {who}")));
        }
        if !members.insert(who.clone()) {
            return Err(failed(format!("{step}: {who} answered twice")));
        }
    }
    Ok(members)
}

fn expect(
    step: &str,
    got: &BTreeSet<String>,
    want: &[&slim_transport::Name],
) -> Result<(), ExampleError> {
    let want: BTreeSet<String> = want.iter().map(|n| short(n)).collect();
    if *got != want {
        return Err(failed(format!(
            "{step}: answered by {got:?}, expected {want:?}"
        )));
    }
    Ok(())
}

/// A shared-responses unary-stream call to {b, c}: each member introduces itself, reads
/// its peer's introduction and answers `<me> saw <peer>`.
async fn shared_step(
    client: &TestGroupClient,
    b: &slim_transport::Name,
    c: &slim_transport::Name,
) -> Result<(), ExampleError> {
    let request = ExampleRequest {
        example_integer: 1,
        example_string: "shared".into(),
    };
    let options = slimrpc::shared::shared_responses(options());
    let items: Vec<_> = client
        .example_unary_stream_with(request, options)
        .collect()
        .await;
    let mut saw = BTreeSet::new();
    for item in items {
        let item = item.map_err(|e| failed(format!("shared: a member failed: {e}")))?;
        println!(
            "shared: [{}] {}",
            short(&item.source),
            item.message.example_string
        );
        if item.message.example_integer == 1 {
            saw.insert(item.message.example_string);
        }
    }
    let last = |n: &slim_transport::Name| n.strings()[2].clone();
    let want: BTreeSet<String> = [
        format!("{} saw {}", last(b), last(c)),
        format!("{} saw {}", last(c), last(b)),
    ]
    .into();
    if saw != want {
        return Err(failed(format!(
            "shared: members saw {saw:?}, expected {want:?}"
        )));
    }
    Ok(())
}

async fn run(args: &Args) -> Result<(), ExampleError> {
    let [a, b, c] = match args.servers.as_slice() {
        [a, b, c] => [name(a), name(b), name(c)],
        _ => return Err(failed("--servers needs exactly three instances")),
    };
    let (service, conn) = connect_with(&args.slim, args.protocol).await?;
    let app = app_with(&service, "group-ops", args.protocol).await?;
    app.subscribe(app.name(), Some(conn))
        .await
        .map_err(|e| ExampleError::Slim(e.to_string()))?;
    let channel = slimrpc::Channel::new_with_connection(app, vec![a.clone(), b.clone()], conn)?;
    let client = TestGroupClient::new(channel.clone());

    let got = answers("start", client.example_unary_unary_with(hello(), options())).await?;
    expect("start", &got, &[&a, &b])?;
    let session = channel.group_name();

    channel.add_member(c.clone()).await?;
    let got = answers("add", client.example_unary_unary_with(hello(), options())).await?;
    expect("add", &got, &[&a, &b, &c])?;
    if channel.group_name() != session {
        return Err(failed("add: the group session was re-created"));
    }
    println!("GROUP_OPS_ADD_OK");

    channel.remove_member(&a).await?;
    let got = answers(
        "remove",
        client.example_unary_unary_with(hello(), options()),
    )
    .await?;
    expect("remove", &got, &[&b, &c])?;
    if channel.group_name() != session || channel.members().len() != 2 {
        return Err(failed("remove: the group session was re-created"));
    }
    println!("GROUP_OPS_REMOVE_OK");

    let first = client
        .example_unary_unary_with(hello(), options())
        .first_response()
        .await
        .map_err(|e| failed(format!("first-response: {e}")))?;
    let who = short(&first.source);
    if ![short(&b), short(&c)].contains(&who) || first.message.example_string != "Hello, World!" {
        return Err(failed(format!(
            "first-response: unexpected answer from {who}"
        )));
    }
    if channel.pending_calls() != 0 {
        return Err(failed(
            "first-response: the call was not ended on the other member",
        ));
    }
    println!("first-response: [{who}] {}", first.message.example_string);
    println!("GROUP_OPS_FIRST_OK");

    let majority = client
        .example_unary_unary_with(hello(), options())
        .majority(|r| (r.example_integer, r.example_string.clone()))
        .await
        .map_err(|e| failed(format!("majority: {e}")))?;
    if majority.key != (1, "Hello, World!".to_string())
        || majority.votes.len() != 2
        || majority.voters != 2
    {
        return Err(failed(format!(
            "majority: {:?} with {} of {} votes",
            majority.key,
            majority.votes.len(),
            majority.voters
        )));
    }
    println!(
        "majority: {:?} with {} of {} votes",
        majority.key,
        majority.votes.len(),
        majority.voters
    );
    println!("GROUP_OPS_MAJORITY_OK");

    let quorum = client
        .example_unary_unary_with(hello(), options())
        .quorum(2)
        .await
        .map_err(|e| failed(format!("quorum(2): {e}")))?;
    let formed: BTreeSet<String> = quorum.iter().map(|i| short(&i.source)).collect();
    expect("quorum(2)", &formed, &[&b, &c])?;
    println!("quorum(2): formed by {formed:?}");
    println!("GROUP_OPS_QUORUM_OK");

    if !args.no_shared {
        shared_step(&client, &b, &c).await?;
        println!("GROUP_OPS_SHARED_OK");
    }
    channel.close().await?;
    service.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => {
            println!("GROUP_OPS_DONE");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("group-ops: {e}");
            ExitCode::FAILURE
        }
    }
}
