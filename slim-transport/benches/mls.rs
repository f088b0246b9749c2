//! MLS benchmark: encrypt+decrypt throughput of a 100-byte payload, the
//! cost of adding the k-th member (moderator's add + every existing member's
//! commit + the joiner's welcome), and P2P session messages through an
//! in-process node with MLS on vs off (throughput of a one-way stream and
//! p50/p99 round trip). Prints tables; asserts nothing about speed.
//!
//! Run: `cargo bench -p slim-transport --bench mls` (add `-- --quick` for a
//! short run).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openmls::prelude::Ciphersuite;
use slim_transport::app::{Session, SessionConfig, SessionEvent};
use slim_transport::identity::{IdentityVerifier, SharedSecret};
use slim_transport::mls::{CIPHERSUITE, CIPHERSUITE_V3, MlsState};
use slim_transport::service::Service;

const SECRET: &str = "kjandjansdiasb8udaijdniasdaindasndasndasndasndasndasndasndas";

fn member(i: usize, suite: Ciphersuite) -> MlsState {
    let verifier: Arc<dyn IdentityVerifier> =
        Arc::new(SharedSecret::new("verifier", SECRET).expect("secret"));
    let id = SharedSecret::new(&format!("org/ns/m{i}"), SECRET).expect("secret");
    MlsState::with_suite(id, verifier, suite).expect("mls state")
}

struct Group {
    suite: Ciphersuite,
    moderator: MlsState,
    members: Vec<MlsState>,
}

impl Group {
    fn new(suite: Ciphersuite) -> Self {
        let mut moderator = member(0, suite);
        moderator.create_group().expect("create");
        Self {
            suite,
            moderator,
            members: Vec::new(),
        }
    }

    fn size(&self) -> usize {
        self.members.len() + 1
    }

    /// Adds one member; returns (moderator add, all members' commit
    /// processing, joiner's welcome) durations.
    fn add(&mut self) -> (Duration, Duration, Duration) {
        let mut joiner = member(self.size(), self.suite);
        let kp = joiner.key_package().expect("key package");
        let t = Instant::now();
        let out = self.moderator.add_member(&kp).expect("add");
        let add = t.elapsed();
        let t = Instant::now();
        for m in &mut self.members {
            m.process_commit(&out.commit).expect("commit");
        }
        let commits = t.elapsed();
        let t = Instant::now();
        joiner
            .process_welcome(&out.welcome, out.commit_id)
            .expect("welcome");
        let welcome = t.elapsed();
        self.members.push(joiner);
        (add, commits, welcome)
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let messages = if quick { 500 } else { 5000 };
    let runs = if quick { 1 } else { 3 };

    println!("MLS (openmls 0.9; RustCrypto, with ring for P-256 signatures)\n");

    // Throughput: one sender, one receiver, 100-byte payloads, in the SLIM
    // 1.3 suite (Ed25519) and the SLIM 3 one (P-256).
    println!("| suite | operation | payload | ciphertext | per message | messages/s |");
    println!("|---|---|---|---|---|---|");
    for (label, suite) in [
        ("0x0001 (v1)", CIPHERSUITE),
        ("0x0002 P-256 (v3)", CIPHERSUITE_V3),
    ] {
        let mut g = Group::new(suite);
        g.add();
        let payload = [0x5au8; 100];
        let mut best = f64::MAX;
        let mut size = 0;
        for _ in 0..runs {
            let t = Instant::now();
            for _ in 0..messages {
                let ct = g.moderator.encrypt(&payload).expect("encrypt");
                size = ct.len();
                let pt = g.members[0].decrypt(&ct).expect("decrypt");
                assert_eq!(pt.payload.len(), payload.len());
            }
            best = best.min(micros(t.elapsed()) / messages as f64);
        }
        println!(
            "| {label} | encrypt + decrypt | 100 B | {size} B | {best:.1} µs | {:.0} |",
            1e6 / best
        );
    }
    println!();

    // Cost of adding the k-th member.
    println!(
        "| k-th member | moderator add_member | commit at k-2 members (total) | welcome at joiner | total |"
    );
    println!("|---|---|---|---|---|");
    let targets = [2usize, 8, 32];
    let mut samples: Vec<Vec<(Duration, Duration, Duration)>> = vec![Vec::new(); targets.len()];
    for _ in 0..runs {
        let mut g = Group::new(CIPHERSUITE);
        while g.size() < *targets.last().unwrap_or(&2) {
            let k = g.size() + 1;
            let cost = g.add();
            if let Some(i) = targets.iter().position(|&t| t == k) {
                samples[i].push(cost);
            }
        }
    }
    for (k, s) in targets.iter().zip(&samples) {
        let best = s
            .iter()
            .min_by_key(|(a, c, w)| *a + *c + *w)
            .copied()
            .unwrap_or_default();
        println!(
            "| {k} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs |",
            micros(best.0),
            micros(best.1),
            micros(best.2),
            micros(best.0 + best.1 + best.2)
        );
    }

    // P2P session messages through an in-process node, MLS on vs off.
    let streamed = if quick { 1000 } else { 10_000 };
    let round_trips = if quick { 300 } else { 2000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "\nP2P session, in-process node, 100-byte payloads ({streamed} streamed, {round_trips} round trips)\n"
    );
    println!("| MLS | stream messages/s | round trip p50 | round trip p99 |");
    println!("|---|---|---|---|");
    for run in 0..runs {
        for mls in [false, true] {
            let (rate, p50, p99) = rt.block_on(session_run(mls, streamed, round_trips));
            let _ = run;
            println!(
                "| {} | {rate:.0} | {p50:.0} µs | {p99:.0} µs |",
                if mls { "on" } else { "off" }
            );
        }
    }
}

async fn next_payload(s: &mut Session) -> Vec<u8> {
    loop {
        match s.recv().await.expect("session open") {
            SessionEvent::Message(m) => return m.payload,
            _ => continue,
        }
    }
}

/// One P2P session: (stream messages/s, round-trip p50 µs, p99 µs).
async fn session_run(mls: bool, streamed: usize, round_trips: usize) -> (f64, f64, f64) {
    let service = Service::new();
    let alice = service
        .app(
            "org/ns/alice".parse().expect("name"),
            SharedSecret::new("org/ns/alice", SECRET).expect("secret"),
        )
        .await
        .expect("alice");
    let bob = service
        .app(
            "org/ns/bob".parse().expect("name"),
            SharedSecret::new("org/ns/bob", SECRET).expect("secret"),
        )
        .await
        .expect("bob");
    let config = SessionConfig {
        mls,
        ..SessionConfig::default()
    };
    let (mut a, done) = alice
        .create_session(config, &"org/ns/bob".parse().expect("name"))
        .await
        .expect("session");
    let mut b = bob.listen_for_session().await.expect("accepted");
    done.await.expect("handshake");
    let payload = vec![0x5au8; 100];

    // Throughput: alice streams, bob receives everything.
    let receiver = tokio::spawn(async move {
        for _ in 0..streamed {
            next_payload(&mut b).await;
        }
        b
    });
    let t = Instant::now();
    for _ in 0..streamed {
        a.publish(payload.clone(), HashMap::new())
            .await
            .expect("publish");
    }
    let mut b = receiver.await.expect("receiver");
    let rate = streamed as f64 / t.elapsed().as_secs_f64();

    // Latency: ping-pong.
    let echo = tokio::spawn(async move {
        for _ in 0..round_trips {
            let p = next_payload(&mut b).await;
            b.publish(p, HashMap::new()).await.expect("pong");
        }
        b
    });
    let mut rtts = Vec::with_capacity(round_trips);
    for _ in 0..round_trips {
        let t = Instant::now();
        a.publish(payload.clone(), HashMap::new())
            .await
            .expect("ping");
        next_payload(&mut a).await;
        rtts.push(micros(t.elapsed()));
    }
    let _b = echo.await.expect("echo");
    rtts.sort_by(f64::total_cmp);
    let pick = |q: f64| rtts[((rtts.len() as f64 * q) as usize).min(rtts.len() - 1)];
    (rate, pick(0.5), pick(0.99))
}
