//! SlimRPC throughput over the embedded transport (in-process forwarder and
//! real sessions). Prints a table; asserts nothing about speed.
//!
//! Run: `cargo bench -p slimrpc-runtime --bench rpc` (release build).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use slim_transport::Name;
use slim_transport::app::App;
use slim_transport::identity::SharedSecret;
use slim_transport::service::Service;
use slimrpc::{CallOptions, Channel, Context, RpcError, Server};

const SECRET: &str = "slimrpc-runtime-bench-secret-0123456789abcdef";
const SVC: &str = "bench.Bench";

#[derive(Clone, PartialEq, prost::Message)]
struct Blob {
    #[prost(bytes = "vec", tag = "1")]
    data: Vec<u8>,
}

async fn app(service: &Service, name: &str) -> Arc<App> {
    let id = SharedSecret::new(name, SECRET).expect("secret");
    Arc::new(
        service
            .app(name.parse().expect("name"), id)
            .await
            .expect("app"),
    )
}

fn row(what: &str, n: usize, took: Duration) {
    let per_s = n as f64 / took.as_secs_f64();
    let us = took.as_secs_f64() * 1e6 / n as f64;
    println!("| {what:<34} | {n:>6} | {per_s:>10.0} | {us:>10.1} |");
}

#[tokio::main]
async fn main() -> Result<(), RpcError> {
    let service = Service::new();
    let mut handles = Vec::new();
    let mut names = Vec::new();
    for label in ["s1", "s2", "s3"] {
        let a = app(&service, &format!("bench/ns/{label}")).await;
        let mut s = Server::new(a, Name::new("bench", "ns", label));
        s.register_unary_unary(SVC, "Echo", |b: Blob, _: Context| async move {
            Ok::<_, RpcError>(b)
        });
        s.register_unary_stream(SVC, "Items", |b: Blob, _: Context| async move {
            Ok::<_, RpcError>(stream::iter((0..100).map(move |_| Ok(b.clone()))))
        });
        handles.push(s.start().await?);
        names.push(Name::new("bench", "ns", label));
    }
    let client = app(&service, "bench/ns/client").await;
    let p2p = Channel::new(client.clone(), names[..1].to_vec())?;
    let group = Channel::new(client, names.clone())?;
    let o = CallOptions::with_timeout(Duration::from_secs(120));
    let small = Blob { data: vec![7; 64] };
    // Warm up both sessions.
    let _: Blob = p2p.unary(SVC, "Echo", small.clone(), o.clone()).await?;
    let _ = group
        .group_unary::<_, Blob>(SVC, "Echo", small.clone(), o.clone())
        .collect::<Vec<_>>()
        .await;

    println!(
        "| {:<34} | {:>6} | {:>10} | {:>10} |",
        "case", "calls", "calls/s", "us/call"
    );
    println!("|{:-<36}|{:-<8}|{:-<12}|{:-<12}|", "", "", "", "");

    let n = 2000;
    let t = Instant::now();
    for _ in 0..n {
        let _: Blob = p2p.unary(SVC, "Echo", small.clone(), o.clone()).await?;
    }
    row("p2p unary, sequential, 64 B", n, t.elapsed());

    let t = Instant::now();
    let calls = (0..n).map(|_| p2p.unary::<_, Blob>(SVC, "Echo", small.clone(), o.clone()));
    for r in futures::future::join_all(calls).await {
        r?;
    }
    row("p2p unary, 2000 concurrent, 64 B", n, t.elapsed());

    let n_items = 20;
    let t = Instant::now();
    let mut items = 0;
    for _ in 0..n_items {
        items += p2p
            .unary_stream::<_, Blob>(SVC, "Items", small.clone(), o.clone())
            .count()
            .await;
    }
    row("p2p unary-stream items (x100/call)", items, t.elapsed());

    let n = 500;
    let t = Instant::now();
    for _ in 0..n {
        let got = group
            .group_unary::<_, Blob>(SVC, "Echo", small.clone(), o.clone())
            .count()
            .await;
        assert_eq!(got, 3);
    }
    row("group(3) unary, sequential", n, t.elapsed());

    for h in handles {
        h.shutdown().await;
    }
    Ok(())
}
