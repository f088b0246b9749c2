//! MLS benchmark: encrypt+decrypt throughput of a 100-byte payload, and the
//! cost of adding the k-th member (moderator's add + every existing member's
//! commit + the joiner's welcome). Prints a table; asserts nothing about speed.
//!
//! Run: `cargo bench -p slim-transport --bench mls` (add `-- --quick` for a
//! short run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use slim_transport::identity::{IdentityVerifier, SharedSecret};
use slim_transport::mls::MlsState;

const SECRET: &str = "kjandjansdiasb8udaijdniasdaindasndasndasndasndasndasndasndas";

fn member(i: usize) -> MlsState {
    let verifier: Arc<dyn IdentityVerifier> =
        Arc::new(SharedSecret::new("verifier", SECRET).expect("secret"));
    let id = SharedSecret::new(&format!("org/ns/m{i}"), SECRET).expect("secret");
    MlsState::new(id, verifier).expect("mls state")
}

struct Group {
    moderator: MlsState,
    members: Vec<MlsState>,
}

impl Group {
    fn new() -> Self {
        let mut moderator = member(0);
        moderator.create_group().expect("create");
        Self {
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
        let mut joiner = member(self.size());
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

    println!("MLS (openmls 0.9, RustCrypto, suite 0x0001)\n");

    // Throughput: one sender, one receiver, 100-byte payloads.
    let mut g = Group::new();
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
    println!("| operation | payload | ciphertext | per message | messages/s |");
    println!("|---|---|---|---|---|");
    println!(
        "| encrypt + decrypt | 100 B | {size} B | {best:.1} µs | {:.0} |\n",
        1e6 / best
    );

    // Cost of adding the k-th member.
    println!(
        "| k-th member | moderator add_member | commit at k-2 members (total) | welcome at joiner | total |"
    );
    println!("|---|---|---|---|---|");
    let targets = [2usize, 8, 32];
    let mut samples: Vec<Vec<(Duration, Duration, Duration)>> = vec![Vec::new(); targets.len()];
    for _ in 0..runs {
        let mut g = Group::new();
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
}
