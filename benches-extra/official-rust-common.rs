//! What the official-Rust bench peers (`official-rust-1.3`, `official-rust-3`)
//! share: the command line of the e2e bench roles
//! (`slimrpc-runtime/benches/e2e.rs`, `benches/official_rpc.py`) and the
//! client's timing loop and `BENCH_ROW` / `BENCH_ERROR` output. Included by
//! each peer with `#[path]`; the stack-specific calls stay in each `main.rs`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub const ORG: &str = "agntcy";
pub const NS: &str = "grpc";
/// The official examples' shared secret (every peer uses it).
pub const SECRET: &str = "my_shared_secret_for_testing_purposes_only";
pub const SVC: &str = "bench.Bench";
pub const METHOD: &str = "Echo";
/// Concurrent callers of the `p2p-conc` case.
pub const CONCURRENCY: usize = 16;
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The bytes of the other peers' `Blob { data: [7; 64] }` request.
pub fn payload() -> Vec<u8> {
    let mut p = vec![0x0a, 0x40];
    p.extend_from_slice(&[7; 64]);
    p
}

/// The value after `name` on the command line.
pub fn flag(args: &[String], name: &str) -> Result<String, BoxError> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .ok_or_else(|| format!("missing {name}").into())
}

/// A comma-separated list, blanks dropped.
pub fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The `client` role's arguments.
pub struct ClientArgs {
    pub slim: String,
    pub case: String,
    pub members: Vec<String>,
    pub n: usize,
    /// This client's app instance, `client-<label>`.
    pub me: String,
}

impl ClientArgs {
    pub fn parse(args: &[String]) -> Result<Self, BoxError> {
        let members = list(&flag(args, "--members")?);
        if members.is_empty() {
            return Err("--members is empty".into());
        }
        Ok(Self {
            slim: flag(args, "--slim")?,
            case: flag(args, "--case")?,
            members,
            n: flag(args, "--n")?.parse()?,
            me: format!("client-{}", flag(args, "--label")?),
        })
    }
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

/// Latencies of the calls that completed, when the last one ended, and the
/// first error, if any.
#[derive(Default)]
struct Tally {
    lat: Vec<Duration>,
    last_ok: Option<Instant>,
    error: Option<String>,
}

async fn worker<F, Fut>(one: F, calls: usize, stop: Arc<AtomicBool>) -> Tally
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let mut tally = Tally::default();
    for _ in 0..calls {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let t = Instant::now();
        match one().await {
            Ok(()) => {
                let now = Instant::now();
                tally.lat.push(now - t);
                tally.last_ok = Some(now);
            }
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                tally.error = Some(e.to_string().replace('\n', " "));
                break;
            }
        }
    }
    tally
}

/// Times one set-up call, then `n` calls (sequential, or [`CONCURRENCY`]
/// callers for `p2p-conc`), and prints the `BENCH_ROW` line (and
/// `BENCH_ERROR` if a call failed: the callers stop, the row covers the
/// calls that completed and is timed up to the last answer).
pub async fn run_client<F, Fut>(case: &str, k: usize, n: usize, one: F) -> Result<(), BoxError>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
{
    let t = Instant::now();
    one().await?;
    let setup = t.elapsed();

    let stop = Arc::new(AtomicBool::new(false));
    let workers = if case == "p2p-conc" { CONCURRENCY } else { 1 };
    let t = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let calls = n / workers + usize::from(w < n % workers);
            tokio::spawn(worker(one.clone(), calls, stop.clone()))
        })
        .collect();
    let mut all = Tally::default();
    for h in handles {
        let tally = h.await?;
        all.lat.extend(tally.lat);
        all.last_ok = all.last_ok.max(tally.last_ok);
        all.error = all.error.or(tally.error);
    }
    let wall = match (&all.error, all.last_ok) {
        (Some(_), Some(last)) => last - t,
        _ => t.elapsed(),
    }
    .as_secs_f64();
    let rss = rss_mb();
    let mut lat = all.lat;
    lat.sort();
    println!(
        "BENCH_ROW case={case} k={k} calls={} secs={wall:.3} calls_per_s={:.1} p50_ms={:.3} \
         p99_ms={:.3} setup_ms={:.1} rss_mb={rss:.1}",
        lat.len(),
        lat.len() as f64 / wall,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        setup.as_secs_f64() * 1e3,
    );
    if let Some(e) = all.error {
        println!("BENCH_ERROR {e}");
    }
    Ok(())
}

/// Runs `role` (`node`, `servers`, `client`) on `rt`; exits 1 with the error.
pub fn main_with<F, Fut>(rt: &tokio::runtime::Runtime, role_fn: F)
where
    F: FnOnce(String, Vec<String>) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let mut args = std::env::args().skip(1);
    let role = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    if let Err(e) = rt.block_on(role_fn(role.clone(), rest)) {
        eprintln!("{role}: {e}");
        std::process::exit(1);
    }
}
