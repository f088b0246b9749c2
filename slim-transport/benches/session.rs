//! Session-layer benchmark (plain `main`, prints a table; not a test):
//!
//! * P2P session round trip (p50/p99 of publish -> echo -> receive) and
//!   one-way throughput (sender publishes, receiver delivers all), both
//!   in-process (one `Service`) and through a node over loopback gRPC (each
//!   app on its own `Service` linked to a node `Service` serving on
//!   127.0.0.1).
//! * Group broadcast from a moderator to 8 members, reliable (every member
//!   acknowledges every message): messages/s until every member delivered
//!   every message; in-process and through a node.
//!
//! 100-byte payloads, default timer settings (1 s / 10 retries), MLS off
//! (and on, see `MLS_MODES`).
//! Run with `cargo bench -p slim-transport --bench session`; it takes well
//! under a minute.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use slim_transport::Name;
use slim_transport::app::{App, Session, SessionConfig, SessionEvent, SessionKind};
use slim_transport::identity::SharedSecret;
use slim_transport::service::Service;
use tokio::sync::oneshot;

const SECRET: &str = "kjandjansdiasb8udaijdniasdaindasndasndasndasndasndasndasndas";
const PAYLOAD: usize = 100;
const ROUNDS: usize = 1_000;
const ONE_WAY: usize = 10_000;
const MEMBERS: usize = 8;
const BROADCASTS: usize = 1_000;
const WAIT: Duration = Duration::from_secs(60);

/// Where the apps live.
#[derive(Clone, Copy)]
enum Topology {
    InProcess,
    ViaNode,
}

impl Topology {
    fn label(self) -> &'static str {
        match self {
            Topology::InProcess => "in-process",
            Topology::ViaNode => "via node (gRPC)",
        }
    }
}

/// Apps and the services that must outlive them.
struct Apps {
    services: Vec<Service>,
    apps: Vec<App>,
}

impl Apps {
    async fn shutdown(self) {
        drop(self.apps);
        for s in self.services {
            s.shutdown().await;
        }
    }
}

/// Starts one app per name: all on one `Service`, or each on its own
/// `Service` linked to a node, routing every other name to that link.
async fn start(topology: Topology, names: &[String]) -> Apps {
    match topology {
        Topology::InProcess => {
            let service = Service::new();
            let mut apps = Vec::new();
            for n in names {
                apps.push(app(&service, n).await);
            }
            Apps {
                services: vec![service],
                apps,
            }
        }
        Topology::ViaNode => {
            let node = Service::new();
            let addr = node
                .run_server("127.0.0.1:0".parse().expect("literal address"))
                .await
                .expect("node serves");
            let mut services = vec![node];
            let mut apps = Vec::new();
            for n in names {
                let s = Service::new();
                let conn = s
                    .connect(&format!("http://{addr}"))
                    .await
                    .expect("link to node");
                let a = app(&s, n).await;
                let base: Name = n.parse().expect("bench name");
                a.subscribe(&base, Some(conn)).await.expect("subscribe");
                // Everything this app does not host goes to the node.
                for other in names.iter().filter(|o| *o != n) {
                    let other: Name = other.parse().expect("bench name");
                    a.set_route(&other, conn).await.expect("route");
                }
                services.push(s);
                apps.push(a);
            }
            Apps { services, apps }
        }
    }
}

async fn app(service: &Service, name: &str) -> App {
    let identity = SharedSecret::new(name, SECRET).expect("identity");
    service
        .app(name.parse().expect("bench name"), identity)
        .await
        .expect("app")
}

async fn next_payload(s: &mut Session) -> Vec<u8> {
    match next_payload_or_end(s).await {
        Some(p) => p,
        None => panic!("session ended"),
    }
}

/// The next payload, or `None` once the session ended.
async fn next_payload_or_end(s: &mut Session) -> Option<Vec<u8>> {
    loop {
        match tokio::time::timeout(WAIT, s.recv()).await {
            Ok(Ok(SessionEvent::Message(m))) => return Some(m.payload),
            Ok(Ok(SessionEvent::Closed { .. })) | Ok(Err(_)) => return None,
            Ok(Ok(_)) => {}
            Err(_) => panic!("no message within {WAIT:?}"),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct P2pFigures {
    p50: Duration,
    p99: Duration,
    one_way_per_s: f64,
}

fn config(kind: SessionKind, mls: bool) -> SessionConfig {
    SessionConfig {
        kind,
        mls,
        ..SessionConfig::default()
    }
}

async fn p2p(topology: Topology, mls: bool) -> P2pFigures {
    let names = vec!["org/bench/alice".to_string(), "org/bench/bob".to_string()];
    let apps = start(topology, &names).await;
    let (alice, bob) = (&apps.apps[0], &apps.apps[1]);
    let (mut s, done) = alice
        .create_session(
            config(SessionKind::PointToPoint, mls),
            &names[1].parse().expect("name"),
        )
        .await
        .expect("session");
    let mut r = tokio::time::timeout(WAIT, bob.listen_for_session())
        .await
        .expect("invited in time")
        .expect("listen");
    tokio::time::timeout(WAIT, done)
        .await
        .expect("established in time")
        .expect("established");

    // Bob echoes 'r' payloads and counts 't' payloads.
    let (counted_tx, counted_rx) = oneshot::channel();
    let echo = tokio::spawn(async move {
        let mut counted = 0;
        let mut counted_tx = Some(counted_tx);
        loop {
            // The session closes when the measurement is over.
            let Some(p) = next_payload_or_end(&mut r).await else {
                break;
            };
            if p.first() == Some(&b'r') {
                r.publish(p, HashMap::new()).await.expect("echo");
            } else {
                counted += 1;
                if counted == ONE_WAY
                    && let Some(tx) = counted_tx.take()
                {
                    let _ = tx.send(());
                }
            }
        }
    });

    let mut rtts = Vec::with_capacity(ROUNDS);
    let mut payload = vec![0x5a; PAYLOAD];
    payload[0] = b'r';
    for _ in 0..ROUNDS {
        let t = Instant::now();
        s.publish(payload.clone(), HashMap::new())
            .await
            .expect("publish");
        next_payload(&mut s).await;
        rtts.push(t.elapsed());
    }
    rtts.sort();

    payload[0] = b't';
    let t = Instant::now();
    for _ in 0..ONE_WAY {
        s.publish(payload.clone(), HashMap::new())
            .await
            .expect("publish");
    }
    tokio::time::timeout(WAIT, counted_rx)
        .await
        .expect("all delivered in time")
        .expect("counter alive");
    let one_way_per_s = ONE_WAY as f64 / t.elapsed().as_secs_f64();

    echo.abort();
    let _ = s.close().await;
    drop(s);
    apps.shutdown().await;
    P2pFigures {
        p50: percentile(&rtts, 0.50),
        p99: percentile(&rtts, 0.99),
        one_way_per_s,
    }
}

async fn group(topology: Topology, mls: bool) -> f64 {
    let mut names = vec!["org/bench/moderator".to_string()];
    names.extend((0..MEMBERS).map(|i| format!("org/bench/member{i}")));
    let apps = start(topology, &names).await;
    let (m, ready) = apps.apps[0]
        .create_session(
            config(SessionKind::Group, mls),
            &"org/bench/channel".parse().expect("name"),
        )
        .await
        .expect("group");
    ready.await.expect("group ready");
    let mut sessions = Vec::new();
    for (i, member) in apps.apps[1..].iter().enumerate() {
        let joined = m
            .invite(&names[i + 1].parse().expect("name"))
            .await
            .expect("invite");
        let s = tokio::time::timeout(WAIT, member.listen_for_session())
            .await
            .expect("invited in time")
            .expect("listen");
        tokio::time::timeout(WAIT, joined)
            .await
            .expect("joined in time")
            .expect("joined");
        sessions.push(s);
    }
    let counters: Vec<_> = sessions
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                for _ in 0..BROADCASTS {
                    next_payload(&mut s).await;
                }
                s
            })
        })
        .collect();
    let payload = vec![0x5a; PAYLOAD];
    let t = Instant::now();
    for _ in 0..BROADCASTS {
        m.publish(payload.clone(), HashMap::new())
            .await
            .expect("publish");
    }
    let mut done = Vec::new();
    for c in counters {
        done.push(
            tokio::time::timeout(WAIT, c)
                .await
                .expect("members delivered in time")
                .expect("counter ran"),
        );
    }
    let per_s = BROADCASTS as f64 / t.elapsed().as_secs_f64();
    let _ = m.close().await;
    drop(done);
    drop(m);
    apps.shutdown().await;
    per_s
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// MLS settings measured: off and on. (MLS on used to stall the 10 000-message
/// burst; fixed by the send window and the RTX history fix, see
/// `tests/session_burst.rs`.)
const MLS_MODES: &[bool] = &[false, true];

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        println!("session benchmark: {PAYLOAD}-byte payloads, reliable (1 s / 10 retries)");
        println!(
            "{:<18} {:>4} {:>12} {:>12} {:>18} {:>20}",
            "topology",
            "MLS",
            "RTT p50",
            "RTT p99",
            "P2P one-way msg/s",
            format!("group x{MEMBERS} msg/s")
        );
        for &mls in MLS_MODES {
            for topology in [Topology::InProcess, Topology::ViaNode] {
                let p = p2p(topology, mls).await;
                let g = group(topology, mls).await;
                println!(
                    "{:<18} {:>4} {:>12} {:>12} {:>18.0} {:>20.0}",
                    topology.label(),
                    if mls { "on" } else { "off" },
                    us(p.p50),
                    us(p.p99),
                    p.one_way_per_s,
                    g
                );
            }
        }
        println!(
            "(RTT over {ROUNDS} rounds; one-way {ONE_WAY} messages until all delivered; \
             group {BROADCASTS} broadcasts until all {MEMBERS} members delivered all)"
        );
    });
}
