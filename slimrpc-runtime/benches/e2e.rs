//! End-to-end SlimRPC benchmark of issues #5 and #19: our stack and the
//! official ones side by side, through a real SLIM node over loopback gRPC,
//! MLS on (the default session configuration).
//!
//! Topology per stack: one node process; for every case a fresh server
//! process (K apps serving a trivial unary echo) and a fresh client process
//! that times the calls and reports its own VmRSS. Ours are this binary
//! re-executed in a role (`node`, `servers`, `client`). The official peers
//! take the same roles with the same arguments:
//!
//! * the `slim_bindings` 1.3.0 wheel: `benches/official_rpc.py`, run by the
//!   venv's Python;
//! * the official Rust 1.3.0 crates (`benches-extra/official-rust-1.3`) and
//!   3.x crates (`benches-extra/official-rust-3`, `agntcy-slim-rpc` 3.4.6):
//!   standalone Cargo projects that `cargo xtask bench` builds on demand and
//!   names in `SLIMRPC_BENCH_OFFICIAL_RUST_1_3` / `SLIMRPC_BENCH_OFFICIAL_RUST_3`
//!   (no rows for a peer whose variable is unset).
//!
//! Each official peer runs once as shipped and once with `TCP_NODELAY`
//! forced on all its sockets (the `slimrpc-nodelay-preload` library, built by
//! this program with cargo through `slimrpc_testkit::nodelay_preload_library`
//! and loaded with `LD_PRELOAD`). Every client prints one
//! `BENCH_ROW key=value ...` line, which the orchestrator turns into one
//! table (rows grouped by case, each official row with our throughput and
//! p50 over its own), followed by issue #19's targets against each official
//! Rust line.
//!
//! Run: `cargo xtask bench` (or `cargo bench -p slimrpc-runtime --bench e2e`;
//! options after `--`: `--no-official`, `--no-python`, `--no-nodelay`,
//! `--k 2,8`, `--official-k 8` (Python), `--official-rust-k 2,8` (default:
//! `--k`), `--n-seq N`, `--n-conc N`, `--n-group N`, `--rounds N` (run
//! everything N times; each row is its median round), `--ours-wire 1,3`,
//! `--current-thread` to run our three roles on tokio's current-thread
//! runtime instead of the default multi-thread one).
//!
//! Every stack's node starts first; then each case runs on every stack in
//! turn before the next case starts, so that the machine's drift falls on
//! all stacks of a case alike.
//!
//! This is a benchmark, not a test: it prints figures and asserts nothing
//! about speed. Every child process is killed by PID when dropped (panics
//! included), via `slimrpc_testkit::Child`.

use std::collections::HashMap;
use std::error::Error;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use slim_transport::Name;
use slim_transport::app::App;
use slim_transport::identity::SharedSecret;
use slim_transport::service::{Generation, LinkOptions, Service};
use slimrpc::{CallOptions, Channel, Context, RpcError, Server};
use slimrpc_testkit::{Child, free_port};

const ORG: &str = "agntcy";
const NS: &str = "grpc";
/// The official examples' shared secret (both stacks use it).
const SECRET: &str = "my_shared_secret_for_testing_purposes_only";
const SVC: &str = "bench.Bench";
const METHOD: &str = "Echo";
/// Request payload size (bytes inside the protobuf `Blob`).
const PAYLOAD: usize = 64;
/// Concurrent callers of the "16-way" case.
const CONCURRENCY: usize = 16;
/// Set for our role processes by `--current-thread`.
const CURRENT_THREAD_ENV: &str = "SLIMRPC_BENCH_CURRENT_THREAD";
/// Set to `3` for our role processes of the "v3 wire" rows (SLIM 3 apps).
const WIRE_ENV: &str = "SLIMRPC_BENCH_WIRE";
/// Liveness bounds (not timing assertions).
const READY_LIMIT: Duration = Duration::from_secs(180);
const CLIENT_LIMIT: Duration = Duration::from_secs(900);

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Clone, PartialEq, prost::Message)]
struct Blob {
    #[prost(bytes = "vec", tag = "1")]
    data: Vec<u8>,
}

// ---- roles (child processes) ------------------------------------------------

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn need(args: &[String], name: &str) -> Result<String, BoxError> {
    flag(args, name).ok_or_else(|| format!("missing {name}").into())
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn v3_wire() -> bool {
    std::env::var(WIRE_ENV).as_deref() == Ok("3")
}

/// An app of ours on the wire the orchestrator chose ([`WIRE_ENV`]).
async fn our_app(service: &Service, name: Name, id: SharedSecret) -> Result<App, BoxError> {
    Ok(if v3_wire() {
        service.app_v3(name, id).await?
    } else {
        service.app(name, id).await?
    })
}

/// A link to the node at `url` on the wire the orchestrator chose.
async fn our_link(service: &Service, url: &str) -> Result<slim_transport::app::ConnId, BoxError> {
    let generation = if v3_wire() {
        Generation::V3
    } else {
        Generation::V1
    };
    let opts = LinkOptions {
        generation: Some(generation),
        ..LinkOptions::default()
    };
    Ok(service.connect_with(url, opts).await?)
}

fn identity(instance: &str) -> Result<SharedSecret, BoxError> {
    Ok(SharedSecret::new(
        &format!("{ORG}/{NS}/{instance}"),
        SECRET,
    )?)
}

/// `node --port P`: a SLIM node serving 127.0.0.1:P until killed.
async fn role_node(args: &[String]) -> Result<(), BoxError> {
    let port: u16 = need(args, "--port")?.parse()?;
    let service = Service::new();
    let addr = service
        .run_server(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await?;
    println!("NODE_READY {addr}");
    std::future::pending::<()>().await;
    Ok(())
}

/// `servers --slim URL --instances a,b,..`: one app per instance, each a
/// SlimRPC server answering `bench.Bench/Echo` with its request.
async fn role_servers(args: &[String]) -> Result<(), BoxError> {
    let slim = need(args, "--slim")?;
    let service = Service::new();
    let conn = our_link(&service, &slim).await?;
    let mut handles = Vec::new();
    for instance in list(&need(args, "--instances")?) {
        let name = Name::new(ORG, NS, instance.as_str());
        let app = Arc::new(our_app(&service, name.clone(), identity(&instance)?).await?);
        let mut server = Server::new_with_connection(app, name, conn);
        server.register_unary_unary(SVC, METHOD, |b: Blob, _: Context| async move {
            Ok::<_, RpcError>(b)
        });
        handles.push(server.start().await?);
    }
    println!("SERVERS_READY {}", handles.len());
    std::future::pending::<()>().await;
    Ok(())
}

/// Resident set size of this process, in MB.
fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

/// `client --slim URL --case p2p-seq|p2p-conc|group --members a,b --n N
/// --label L`: times N calls after a first (set-up) call and prints one
/// `BENCH_ROW` line.
async fn role_client(args: &[String]) -> Result<(), BoxError> {
    let slim = need(args, "--slim")?;
    let case = need(args, "--case")?;
    let label = need(args, "--label")?;
    let n: usize = need(args, "--n")?.parse()?;
    let members: Vec<Name> = list(&need(args, "--members")?)
        .iter()
        .map(|m| Name::new(ORG, NS, m.as_str()))
        .collect();
    let k = members.len();
    let me = format!("client-{label}");

    let service = Service::new();
    let conn = our_link(&service, &slim).await?;
    let app = Arc::new(our_app(&service, Name::new(ORG, NS, me.as_str()), identity(&me)?).await?);
    app.subscribe(app.name(), Some(conn)).await?;
    let channel = Channel::new_with_connection(app.clone(), members, conn)?;
    let opts = CallOptions::with_timeout(Duration::from_secs(60));
    let req = Blob {
        data: vec![7; PAYLOAD],
    };

    let one = move |channel: Channel, req: Blob, opts: CallOptions| async move {
        if k > 1 {
            let mut answers = channel.group_unary::<_, Blob>(SVC, METHOD, req, opts);
            let mut got = 0;
            while let Some(a) = answers.next().await {
                a?;
                got += 1;
            }
            if got != k {
                return Err(format!("{got} answers from {k} members").into());
            }
            Ok::<_, BoxError>(())
        } else {
            let _: Blob = channel.unary(SVC, METHOD, req, opts).await?;
            Ok(())
        }
    };

    // First call: session creation (discovery or invites, MLS) + the call.
    let t = Instant::now();
    one(channel.clone(), req.clone(), opts.clone()).await?;
    let setup = t.elapsed();

    let mut lat = Vec::with_capacity(n);
    let t = Instant::now();
    if case == "p2p-conc" {
        let mut workers = Vec::new();
        for w in 0..CONCURRENCY {
            let calls = n / CONCURRENCY + usize::from(w < n % CONCURRENCY);
            let (channel, req, opts) = (channel.clone(), req.clone(), opts.clone());
            workers.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(calls);
                for _ in 0..calls {
                    let t = Instant::now();
                    one(channel.clone(), req.clone(), opts.clone()).await?;
                    lat.push(t.elapsed());
                }
                Ok::<_, BoxError>(lat)
            }));
        }
        for w in workers {
            lat.extend(w.await??);
        }
    } else {
        for _ in 0..n {
            let t = Instant::now();
            one(channel.clone(), req.clone(), opts.clone()).await?;
            lat.push(t.elapsed());
        }
    }
    let wall = t.elapsed();
    let rss = rss_mb().unwrap_or(f64::NAN);
    lat.sort();
    println!(
        "BENCH_ROW case={case} k={k} calls={} secs={:.3} calls_per_s={:.1} p50_ms={:.3} p99_ms={:.3} setup_ms={:.1} rss_mb={:.1}",
        lat.len(),
        wall.as_secs_f64(),
        lat.len() as f64 / wall.as_secs_f64(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        setup.as_secs_f64() * 1e3,
        rss,
    );
    let _ = channel.close().await;
    service.shutdown().await;
    Ok(())
}

fn run_role(role: &str, args: &[String]) -> Result<(), BoxError> {
    // Off unless RUST_LOG is set (the figures are taken without logging).
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    // `--current-thread` makes the orchestrator set this for our roles.
    let rt = if std::env::var_os(CURRENT_THREAD_ENV).is_some() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()?;
    rt.block_on(async {
        match role {
            "node" => role_node(args).await,
            "servers" => role_servers(args).await,
            _ => role_client(args).await,
        }
    })
}

// ---- orchestrator -----------------------------------------------------------

/// An official stack the bench runs beside ours.
#[derive(Clone, Copy, PartialEq)]
enum Official {
    /// The `slim_bindings` 1.3.0 wheel (`benches/official_rpc.py`).
    Python,
    /// The 1.3.0 Rust crates (`agntcy-slim-bindings` 1.3.0 used natively;
    /// `benches-extra/official-rust-1.3`).
    Rust13,
    /// The 3.x Rust crates (`agntcy-slim-rpc` 3.4.6;
    /// `benches-extra/official-rust-3`).
    Rust3,
}

impl Official {
    const ALL: [Official; 3] = [Official::Python, Official::Rust13, Official::Rust3];

    /// The SLIM wire it speaks: our rows on the same wire are its match.
    fn wire(self) -> Wire {
        match self {
            Official::Python | Official::Rust13 => Wire::V1,
            Official::Rust3 => Wire::V3,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Official::Python => "official 1.3.0 (py)",
            Official::Rust13 => "official 1.3.0 (Rust)",
            Official::Rust3 => "official 3.4.6 (Rust)",
        }
    }
}

/// The SLIM wire generation of our rows.
#[derive(Clone, Copy, PartialEq)]
enum Wire {
    /// SLIM 1.3 (what the 1.3.0 stacks speak).
    V1,
    /// SLIM 2.x/3.x (what the 3.x stacks speak; our default).
    V3,
}

#[derive(Clone, Copy, PartialEq)]
enum Stack {
    /// Ours, on one wire.
    Ours(Wire),
    /// An official stack; `true`: with `TCP_NODELAY` forced on all its
    /// sockets by the `slimrpc-nodelay-preload` library (`LD_PRELOAD`), as in
    /// the issues' second set of official figures.
    Official(Official, bool),
}

impl Stack {
    fn label(self) -> String {
        match self {
            Stack::Ours(Wire::V1) => "ours (v1 wire)".into(),
            Stack::Ours(Wire::V3) => "ours (v3 wire)".into(),
            Stack::Official(o, false) => o.name().into(),
            Stack::Official(o, true) => format!("{}, NODELAY", o.name()),
        }
    }

    /// Prefix of this stack's process names and app instances.
    fn tag(self) -> String {
        match self {
            Stack::Ours(Wire::V1) => "r".into(),
            Stack::Ours(Wire::V3) => "rv".into(),
            Stack::Official(o, nodelay) => {
                let o = match o {
                    Official::Python => "py",
                    Official::Rust13 => "r13",
                    Official::Rust3 => "r3",
                };
                format!("{o}{}", if nodelay { "nd" } else { "" })
            }
        }
    }

    /// The command running `role` for this stack.
    fn command(self, role: &str, opts: &Opts) -> Command {
        let (official, nodelay) = match self {
            Stack::Ours(wire) => {
                let mut c = Command::new(std::env::current_exe().expect("own path"));
                c.arg(role);
                if opts.current_thread {
                    c.env(CURRENT_THREAD_ENV, "1");
                }
                if wire == Wire::V3 {
                    c.env(WIRE_ENV, "3");
                }
                return c;
            }
            Stack::Official(o, nodelay) => (o, nodelay),
        };
        let mut c = match official {
            Official::Python => {
                let mut c = Command::new(slimrpc_testkit::python());
                c.arg(official_script());
                c
            }
            Official::Rust13 | Official::Rust3 => Command::new(
                opts.rust_peer(official)
                    .expect("only run when its binary is built"),
            ),
        };
        c.arg(role);
        if nodelay && let Some(lib) = &opts.nodelay_lib {
            c.env("LD_PRELOAD", lib);
        }
        c
    }
}

fn official_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/official_rpc.py")
}

/// Where `cargo xtask bench` tells us it built the official Rust peers.
const RUST13_ENV: &str = "SLIMRPC_BENCH_OFFICIAL_RUST_1_3";
const RUST3_ENV: &str = "SLIMRPC_BENCH_OFFICIAL_RUST_3";

/// What the orchestrator passes on to the role processes.
struct Opts {
    current_thread: bool,
    /// The built `LD_PRELOAD` library for the NODELAY rows.
    nodelay_lib: Option<PathBuf>,
    /// The official Rust peers' binaries, when built.
    rust13: Option<PathBuf>,
    rust3: Option<PathBuf>,
}

impl Opts {
    fn rust_peer(&self, o: Official) -> Option<&PathBuf> {
        match o {
            Official::Python => None,
            Official::Rust13 => self.rust13.as_ref(),
            Official::Rust3 => self.rust3.as_ref(),
        }
    }
}

#[derive(Clone)]
struct Case {
    name: String,
    kind: &'static str,
    k: usize,
    n: usize,
    target: &'static str,
}

struct Row {
    stack: Stack,
    case: Case,
    fields: Result<HashMap<String, String>, String>,
}

fn parse_row(output: &str) -> Option<HashMap<String, String>> {
    let line = output.lines().find(|l| l.starts_with("BENCH_ROW "))?;
    Some(
        line.split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

fn run_case(stack: Stack, opts: &Opts, url: &str, case: &Case, tag: &str) -> Row {
    eprintln!("bench: {} {} ...", stack.label(), case.name);
    let instances: Vec<String> = (0..case.k).map(|i| format!("{tag}-s{i}")).collect();
    let instances = instances.join(",");
    let mut servers = Child::spawn(
        &format!("bench-servers-{tag}"),
        stack
            .command("servers", opts)
            .args(["--slim", url, "--instances", &instances]),
    );
    servers.wait_for("SERVERS_READY", READY_LIMIT);
    let mut client = Child::spawn(
        &format!("bench-client-{tag}"),
        stack.command("client", opts).args([
            "--slim",
            url,
            "--case",
            case.kind,
            "--members",
            &instances,
            "--n",
            &case.n.to_string(),
            "--label",
            tag,
        ]),
    );
    let (code, out) = client.wait_exit(CLIENT_LIMIT);
    let fields = match (code, parse_row(&out)) {
        (Some(0), Some(mut f)) => {
            // A run stopped by an error still reports the calls before it.
            if let Some(err) = out.lines().find_map(|l| l.strip_prefix("BENCH_ERROR ")) {
                f.insert("error".into(), err.to_string());
            }
            Ok(f)
        }
        _ => Err(format!(
            "client exited with {code:?}:\n{}\n-- servers:\n{}",
            tail(&out, 15),
            tail(&servers.output(), 15)
        )),
    };
    if let Err(e) = &fields {
        eprintln!("bench: {} {} FAILED: {e}", stack.label(), case.name);
    }
    Row {
        stack,
        case: case.clone(),
        fields,
    }
}

/// One stack's node, started once and kept for all of its cases.
struct StackRun {
    stack: Stack,
    cases: Vec<Case>,
    url: String,
    _node: Child,
}

fn start_stack(stack: Stack, opts: &Opts, cases: Vec<Case>) -> StackRun {
    let port = free_port();
    let mut node = Child::spawn(
        &format!("bench-node-{}", stack.tag()),
        stack
            .command("node", opts)
            .args(["--port", &port.to_string()]),
    );
    node.wait_for("NODE_READY", READY_LIMIT);
    StackRun {
        stack,
        cases,
        url: format!("http://127.0.0.1:{port}"),
        _node: node,
    }
}

/// Runs every case of every stack, `rounds` times. Each case runs on all
/// stacks one after the other before the next case starts, so that this
/// machine's drift (its speed changes by tens of per cent from one minute
/// to the next) falls on ours and theirs alike; with several rounds, each
/// stack and case reports its median round (by throughput).
fn run_interleaved(stacks: &[StackRun], opts: &Opts, rounds: usize) -> Vec<Row> {
    let mut all: Vec<&Case> = stacks.iter().flat_map(|s| s.cases.iter()).collect();
    all.sort_by_key(|c| case_order(c));
    all.dedup_by_key(|c| case_order(c));
    let mut runs: Vec<(Stack, Case, Vec<Row>)> = Vec::new();
    for round in 0..rounds {
        for case in &all {
            for (si, st) in stacks.iter().enumerate() {
                let Some(c) = st.cases.iter().find(|c| case_order(c) == case_order(case)) else {
                    continue;
                };
                let (kind, k) = case_order(c);
                let tag = format!("{}{round}x{kind}k{k}s{si}", st.stack.tag());
                let row = run_case(st.stack, opts, &st.url, c, &tag);
                match runs
                    .iter_mut()
                    .find(|(s, c2, _)| *s == st.stack && case_order(c2) == case_order(c))
                {
                    Some((_, _, rows)) => rows.push(row),
                    None => runs.push((st.stack, c.clone(), vec![row])),
                }
            }
        }
    }
    runs.into_iter()
        .map(|(stack, case, rows)| median_row(stack, case, rows))
        .collect()
}

/// The round with the median throughput among those that ran; the first
/// failure when none did.
fn median_row(stack: Stack, case: Case, rows: Vec<Row>) -> Row {
    let rounds = rows.len();
    let (mut ok, failed): (Vec<Row>, Vec<Row>) = rows.into_iter().partition(|r| r.fields.is_ok());
    if ok.is_empty() {
        return failed.into_iter().next().unwrap_or(Row {
            stack,
            case,
            fields: Err("no round ran".into()),
        });
    }
    ok.sort_by(|a, b| {
        let t = |r: &Row| num(r, "calls_per_s").unwrap_or(0.0);
        t(a).total_cmp(&t(b))
    });
    let mut row = ok.swap_remove(ok.len() / 2);
    if rounds > 1
        && let Ok(f) = &mut row.fields
    {
        f.insert(
            "rounds".into(),
            format!("{}/{rounds}", rounds - failed.len()),
        );
    }
    row
}

fn opt_list(args: &[String], name: &str, default: &[usize]) -> Vec<usize> {
    flag(args, name)
        .map(|s| list(&s).iter().filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

fn opt_num(args: &[String], name: &str, default: usize) -> usize {
    flag(args, name)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn cases(args: &[String], ks: &[usize]) -> Vec<Case> {
    let mut v = vec![
        Case {
            name: "P2P unary, sequential".into(),
            kind: "p2p-seq",
            k: 1,
            n: opt_num(args, "--n-seq", 1000),
            target: ">= 4 700 calls/s",
        },
        Case {
            name: format!("P2P unary, {CONCURRENCY}-way"),
            kind: "p2p-conc",
            k: 1,
            n: opt_num(args, "--n-conc", 4000),
            target: ">= 10 000 calls/s",
        },
    ];
    for &k in ks {
        v.push(Case {
            name: format!("group unary, K={k}"),
            kind: "group",
            k,
            n: opt_num(args, "--n-group", 500),
            target: match k {
                8 => ">= 450 calls/s, p50 <= 1 ms, first <= 10 ms",
                _ => "cost <= linear in K",
            },
        });
    }
    v
}

fn cell(row: &Row, key: &str) -> String {
    match &row.fields {
        // `*`: the run stopped at an error; see the note under the table.
        Ok(f) if key == "calls" && f.contains_key("error") => {
            format!("{}*", f.get(key).map_or("-", String::as_str))
        }
        Ok(f) => f.get(key).cloned().unwrap_or_else(|| "-".into()),
        Err(_) => "FAILED".into(),
    }
}

/// A row's figure as a number (`None` for a failed run or a missing key).
fn num(row: &Row, key: &str) -> Option<f64> {
    row.fields.as_ref().ok()?.get(key)?.parse().ok()
}

/// Our row for the case of `row`, on the wire of `row`'s stack, if it ran.
fn ours_for<'a>(rows: &'a [Row], row: &Row) -> Option<&'a Row> {
    let wire = match row.stack {
        Stack::Ours(w) => w,
        Stack::Official(o, _) => o.wire(),
    };
    rows.iter()
        .find(|r| r.stack == Stack::Ours(wire) && r.case.name == row.case.name)
}

/// Ours against an official row: (throughput ours/theirs, p50 ours/theirs).
fn ratios(ours: &Row, theirs: &Row) -> (Option<f64>, Option<f64>) {
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() && b.is_finite() => Some(a / b),
        _ => None,
    };
    (
        div(num(ours, "calls_per_s"), num(theirs, "calls_per_s")),
        div(num(ours, "p50_ms"), num(theirs, "p50_ms")),
    )
}

fn times(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}x"))
}

/// Where a case sorts in the table: P2P sequential, P2P 16-way, then groups by K.
fn case_order(c: &Case) -> (usize, usize) {
    let kind = match c.kind {
        "p2p-seq" => 0,
        "p2p-conc" => 1,
        _ => 2,
    };
    (kind, c.k)
}

fn print_table(rows: &[Row], rounds: usize) {
    let mut sorted: Vec<&Row> = rows.iter().collect();
    sorted.sort_by_key(|r| case_order(&r.case));
    println!();
    println!(
        "| {:<30} | {:<22} | {:>6} | {:>8} | {:>7} | {:>7} | {:>13} | {:>8} | {:>9} | {:>20} | {:<42} |",
        "stack",
        "case",
        "calls",
        "calls/s",
        "p50 ms",
        "p99 ms",
        "first call ms",
        "RSS MB",
        "us/member",
        "ours: calls/s, p50",
        "target (ours)"
    );
    println!(
        "|{:-<32}|{:-<24}|{:->8}|{:->10}|{:->9}|{:->9}|{:->15}|{:->10}|{:->11}|{:->22}|{:-<44}|",
        "", "", "", "", "", "", "", "", "", "", ""
    );
    for r in sorted {
        // Cost per call and member: flat or falling with K means linear.
        let per_member = num(r, "calls_per_s")
            .map(|c| format!("{:.0}", 1e6 / (c * r.case.k as f64)))
            .unwrap_or_else(|| "-".into());
        let (target, vs) = match r.stack {
            Stack::Ours(_) => (r.case.target, String::new()),
            Stack::Official(..) => (
                "",
                match ours_for(rows, r) {
                    Some(ours) => {
                        let (thr, p50) = ratios(ours, r);
                        format!("{}, {}", times(thr), times(p50))
                    }
                    None => "-".into(),
                },
            ),
        };
        println!(
            "| {:<30} | {:<22} | {:>6} | {:>8} | {:>7} | {:>7} | {:>13} | {:>8} | {:>9} | {:>20} | {:<42} |",
            r.stack.label(),
            r.case.name,
            cell(r, "calls"),
            cell(r, "calls_per_s"),
            cell(r, "p50_ms"),
            cell(r, "p99_ms"),
            cell(r, "setup_ms"),
            cell(r, "rss_mb"),
            per_member,
            vs,
            target
        );
    }
    println!();
    println!(
        "Release build; node, servers and client are separate processes on 127.0.0.1 (gRPC), \
         MLS on; {PAYLOAD}-byte payload; RSS is the client's VmRSS after the timed calls; \
         first call = channel creation to first answer (session set-up + call). \
         \"NODELAY\": that official stack with TCP_NODELAY forced on its sockets. \
         \"ours: calls/s, p50\": our throughput and p50 over that row's (same case, same run), \
         ours on the same wire (v1 for the 1.3.0 stacks, v3 for 3.4.6). \
         Each case ran on every stack in turn before the next case; {}.",
        if rounds > 1 {
            format!("{rounds} rounds, each row is its stack's median round by calls/s")
        } else {
            "one round".to_string()
        }
    );
    for r in rows {
        if let Ok(f) = &r.fields
            && let Some(err) = f.get("error")
        {
            println!(
                "* {} {}: stopped by an error after {} of {} calls (figures cover those): {err}",
                r.stack.label(),
                r.case.name,
                f.get("calls").map_or("?", String::as_str),
                r.case.n,
            );
        }
    }
    print_targets(rows);
}

/// Issue #19's targets against each official Rust line, per case: at least
/// 2x its throughput and at most 0.5x its p50, against the faster of its two
/// rows (as shipped, NODELAY).
fn print_targets(rows: &[Row]) {
    let lines = [Official::Rust13, Official::Rust3];
    if !rows
        .iter()
        .any(|r| matches!(r.stack, Stack::Official(o, _) if lines.contains(&o)))
    {
        return;
    }
    println!();
    println!(
        "Targets (issue #19): ours >= 2x the official Rust throughput and <= 0.5x its p50, per case, against the faster of its rows:"
    );
    println!();
    println!(
        "| case | vs | ours calls/s | theirs calls/s | ratio | ours p50 | theirs p50 | ratio | holds |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut cases: Vec<&Case> = Vec::new();
    for r in rows {
        if matches!(r.stack, Stack::Ours(_)) && !cases.iter().any(|c| c.name == r.case.name) {
            cases.push(&r.case);
        }
    }
    cases.sort_by_key(|c| case_order(c));
    for case in cases {
        for line in lines {
            let Some(o) = rows
                .iter()
                .find(|r| r.stack == Stack::Ours(line.wire()) && r.case.name == case.name)
            else {
                continue;
            };
            let best = rows
                .iter()
                .filter(|r| {
                    matches!(r.stack, Stack::Official(l, _) if l == line)
                        && r.case.name == o.case.name
                })
                .max_by(|a, b| {
                    let a = num(a, "calls_per_s").unwrap_or(-1.0);
                    let b = num(b, "calls_per_s").unwrap_or(-1.0);
                    a.total_cmp(&b)
                });
            let Some(best) = best else { continue };
            let (thr, p50) = ratios(o, best);
            let stopped = best
                .fields
                .as_ref()
                .map_or(true, |f| f.contains_key("error"));
            let holds = match (thr, p50) {
                (Some(t), Some(p)) if t >= 2.0 && p <= 0.5 => "yes".to_string(),
                (Some(_), Some(_)) => "no".to_string(),
                _ if stopped => "theirs failed".to_string(),
                _ => "-".to_string(),
            };
            let holds = if stopped && holds != "theirs failed" {
                format!("{holds} (theirs stopped by an error)")
            } else {
                holds
            };
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {holds} |",
                o.case.name,
                best.stack.label(),
                cell(o, "calls_per_s"),
                cell(best, "calls_per_s"),
                times(thr),
                cell(o, "p50_ms"),
                cell(best, "p50_ms"),
                times(p50),
            );
        }
    }
}

/// Per-message MLS cost in this process, in µs: (encrypt, decrypt) of a
/// 100-byte payload between two members (Ed25519 sign / verify dominate).
fn mls_costs() -> Result<(f64, f64), BoxError> {
    use slim_transport::identity::IdentityVerifier;
    use slim_transport::mls::MlsState;
    let verifier: Arc<dyn IdentityVerifier> = Arc::new(identity("verifier")?);
    let mut a = MlsState::new(identity("floor-a")?, verifier.clone())?;
    let mut b = MlsState::new(identity("floor-b")?, verifier)?;
    a.create_group()?;
    let kp = b.key_package()?;
    let added = a.add_member(&kp)?;
    b.process_welcome(&added.welcome, added.commit_id)?;
    let n = 2000;
    let payload = [0x5au8; 100];
    let t = Instant::now();
    let cts = (0..n)
        .map(|_| a.encrypt(&payload))
        .collect::<Result<Vec<_>, _>>()?;
    let enc = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = Instant::now();
    for ct in &cts {
        b.decrypt(ct)?;
    }
    let dec = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    Ok((enc, dec))
}

/// MLS CPU of a group's set-up in this process, in µs: `k` members each
/// create their state and key package, the moderator adds all of them in one
/// commit (as `invite_many` does), and each member opens the welcome.
fn mls_setup_cost(k: usize) -> Result<f64, BoxError> {
    use slim_transport::identity::IdentityVerifier;
    use slim_transport::mls::MlsState;
    let verifier: Arc<dyn IdentityVerifier> = Arc::new(identity("verifier")?);
    let t = Instant::now();
    let mut moderator = MlsState::new(identity("setup-m")?, verifier.clone())?;
    moderator.create_group()?;
    let mut members = Vec::with_capacity(k);
    let mut kps = Vec::with_capacity(k);
    for i in 0..k {
        let mut m = MlsState::new(identity(&format!("setup-{i}"))?, verifier.clone())?;
        kps.push(m.key_package()?);
        members.push(m);
    }
    let refs: Vec<&[u8]> = kps.iter().map(Vec::as_slice).collect();
    let added = moderator.add_members(&refs)?;
    for m in &mut members {
        m.process_welcome(&added.welcome, added.commit_id)?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6)
}

/// What MLS alone allows on this machine: every SlimRPC frame is one MLS
/// application message, signed by its sender and verified by each receiver.
fn print_mls_ceiling(ks: &[usize]) {
    let (e, d) = match mls_costs() {
        Ok(c) => c,
        Err(err) => {
            println!("MLS cost measurement failed: {err}");
            return;
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let setup = |k: usize| match mls_setup_cost(k) {
        Ok(us) => format!("{:.1} ms", us / 1e3),
        Err(err) => format!("failed: {err}"),
    };
    println!();
    println!(
        "MLS ceiling (same run, in-process, {cores} cores): encrypt {e:.1} µs, decrypt {d:.1} µs \
         per 100-byte message, in the v1 wire's suite (Ed25519); the v3 wire's default suite \
         signs with P-256 (`cargo xtask bench crypto`)."
    );
    println!();
    println!(
        "| case | MLS CPU per call | ceiling, all cores on MLS only | MLS on the critical path | MLS CPU of the set-up |"
    );
    println!("|---|---|---|---|---|");
    // P2P unary: the request (our client sends no client EOS frames for a
    // unary request), then the answer (our server sends no EOS after it).
    let p2p = 2.0 * (e + d);
    let path = 2.0 * (e + d);
    println!(
        "| P2P unary (2 messages, 2 decrypted) | {p2p:.0} µs | {:.0} calls/s | {path:.0} µs (request, then response): at most {:.0} calls/s sequential | {} |",
        cores * 1e6 / p2p,
        1e6 / path,
        setup(1),
    );
    for &k in ks {
        let kf = k as f64;
        // Client: 1 encrypt (the request), K decrypts (the answers); each
        // member: 1 decrypt (the request), 1 encrypt (the answer: our
        // client's call says `slimrpc-answer-ends`, so no EOS follows).
        let cpu = e + kf * (2.0 * d + e);
        // The client's share is serial (one session): 1 encrypt, K decrypts.
        let client = e + kf * d;
        println!(
            "| group unary K={k} | {cpu:.0} µs | {:.0} calls/s | {:.0} µs (all CPU over {cores} cores); the client alone {client:.0} µs | {} |",
            cores * 1e6 / cpu,
            cpu / cores,
            setup(k),
        );
    }
}

fn orchestrate(args: &[String]) {
    let ks = opt_list(args, "--k", &[2, 8, 32, 64]);
    let official_ks = opt_list(args, "--official-k", &[2, 8]);
    let rust_ks = opt_list(args, "--official-rust-k", &ks);
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let built = |env: &str| {
        let path = PathBuf::from(std::env::var_os(env)?);
        if path.is_file() {
            Some(path)
        } else {
            eprintln!("bench: {env}={} is not a file", path.display());
            None
        }
    };
    let mut opts = Opts {
        current_thread: has("--current-thread"),
        nodelay_lib: None,
        rust13: built(RUST13_ENV),
        rust3: built(RUST3_ENV),
    };
    let rounds = opt_num(args, "--rounds", 1).max(1);
    // Ours on each wire asked for (`--ours-wire 1,3`, the default).
    let mut stacks = Vec::new();
    for wire in opt_list(args, "--ours-wire", &[1, 3]) {
        let wire = match wire {
            1 => Wire::V1,
            3 => Wire::V3,
            other => {
                eprintln!("bench: no wire {other} (1 or 3)");
                continue;
            }
        };
        stacks.push((Stack::Ours(wire), cases(args, &ks)));
    }
    if !has("--no-official") {
        if !has("--no-nodelay") {
            match slimrpc_testkit::nodelay_preload_library() {
                Ok(lib) => opts.nodelay_lib = Some(lib),
                Err(e) => eprintln!("bench: no TCP_NODELAY rows: {e}"),
            }
        }
        for official in Official::ALL {
            let ks = match official {
                Official::Python if has("--no-python") => continue,
                Official::Python => &official_ks,
                _ if opts.rust_peer(official).is_none() => {
                    eprintln!(
                        "bench: no {} rows: its peer is not built (`cargo xtask bench` builds \
                         it; or set {RUST13_ENV} / {RUST3_ENV})",
                        official.name()
                    );
                    continue;
                }
                _ => &rust_ks,
            };
            stacks.push((Stack::Official(official, false), cases(args, ks)));
            if opts.nodelay_lib.is_some() {
                stacks.push((Stack::Official(official, true), cases(args, ks)));
            }
        }
    }
    let stacks: Vec<StackRun> = stacks
        .into_iter()
        .map(|(stack, cases)| start_stack(stack, &opts, cases))
        .collect();
    let rows = run_interleaved(&stacks, &opts, rounds);
    drop(stacks);
    print_table(&rows, rounds);
    print_mls_ceiling(&ks);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(role @ ("node" | "servers" | "client")) => {
            if let Err(e) = run_role(role, &args[1..]) {
                eprintln!("{role}: {e}");
                std::process::exit(1);
            }
        }
        // `cargo bench` passes `--bench` (and any filter); anything else
        // runs the whole benchmark.
        _ => orchestrate(&args),
    }
}
