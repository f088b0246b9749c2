//! A tiny simulated network for the session state machines' tests: routes
//! each transmit to the apps whose name (or subscribed channel) matches its
//! destination, with seeded loss, duplication and reordering per link, on a
//! virtual clock. It is the test harness of the sans-IO core, playing the
//! forwarder's routing rules (fanout 1 = one match, otherwise all; never
//! back to the sender); it is not part of the product.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::Name;
use crate::identity::SharedSecret;
use crate::wire::{self, SessionMessageType as Kind};

use super::packet::Inbound;
use super::{
    Context, Dispatch, Event, JobId, ReceivedMessage, Session, SessionConfig, SessionError,
    SessionEvent, SessionLayer, WallClock,
};

pub const SECRET: &str = "kjandjansdiasb8udaijdniasdaindasndasndasndasndasndasndasndas";
pub const UNIX_BASE: u64 = 1_800_000_000;

/// One app: its session layer and its sessions.
pub struct Node {
    pub name: Name,
    pub layer: SessionLayer,
    pub sessions: BTreeMap<u32, Session>,
    /// Every event, with the session id it came from.
    pub events: Vec<(u32, Event)>,
    /// A silent node receives nothing and sends nothing (vanished peer).
    pub silent: bool,
}

/// A message on its way, ordered by delivery time then by sequence.
struct InFlight {
    at: Instant,
    seq: u64,
    to: usize,
    msg: wire::Message,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at && self.seq == o.seq
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Min-heap on (at, seq).
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// A record of one routed transmit, for protocol assertions.
#[derive(Debug, Clone)]
pub struct Trace {
    pub from: usize,
    pub kind: Kind,
    pub source: Name,
    pub destination: Name,
    pub fanout: u32,
    pub message_id: u32,
    pub msg: wire::Message,
}

pub type Filter = Box<dyn FnMut(usize, usize, &Inbound) -> bool>;

pub struct Net {
    pub now: Instant,
    pub clock: WallClock,
    rng: StdRng,
    pub nodes: Vec<Node>,
    heap: BinaryHeap<InFlight>,
    seq: u64,
    pub loss: f64,
    pub dup: f64,
    pub max_delay: Duration,
    channels: HashMap<Name, BTreeSet<usize>>,
    /// Returns false to drop a message on the link `from -> to`.
    pub filter: Option<Filter>,
    pub trace: Vec<Trace>,
}

impl Net {
    /// A network with `loss` and `dup` probabilities per link and delays up
    /// to `max_delay` (which reorders messages).
    pub fn new(seed: u64, loss: f64, dup: f64, max_delay: Duration) -> Self {
        let now = Instant::now();
        Self {
            now,
            clock: WallClock {
                base: now,
                unix_at_base: UNIX_BASE,
            },
            rng: StdRng::seed_from_u64(seed),
            nodes: Vec::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            loss,
            dup,
            max_delay,
            channels: HashMap::new(),
            filter: None,
            trace: Vec::new(),
        }
    }

    /// A lossless, in-order network.
    pub fn perfect(seed: u64) -> Self {
        Self::new(seed, 0.0, 0.0, Duration::from_millis(1))
    }

    /// Adds an app named `org/ns/app` with a random instance id.
    pub fn add(&mut self, name: &str) -> usize {
        let base: Name = name.parse().expect("test names are valid");
        let id: u64 = self.rng.random_range(1..u64::MAX);
        let name = base.with_id(id);
        let identity = SharedSecret::new(&base.to_string(), SECRET).expect("valid test identity");
        let ctx = Context {
            app_name: name.clone(),
            provider: Arc::new(identity.clone()),
            verifier: Arc::new(identity),
            clock: self.clock,
            aad: None,
            ping_epoch: false,
            presence: false,
        };
        let layer = SessionLayer::new(ctx, self.rng.random());
        self.nodes.push(Node {
            name,
            layer,
            sessions: BTreeMap::new(),
            events: Vec::new(),
            silent: false,
        });
        self.nodes.len() - 1
    }

    pub fn name(&self, node: usize) -> Name {
        self.nodes[node].name.clone()
    }

    pub fn ctx(&self, node: usize) -> Context {
        self.nodes[node].layer.context().clone()
    }

    /// Creates a moderator session on `node`.
    pub fn create(
        &mut self,
        node: usize,
        config: SessionConfig,
        dest: &Name,
    ) -> (u32, Option<JobId>) {
        let now = self.now;
        let (s, job) = self.nodes[node]
            .layer
            .create(&config, dest, now)
            .expect("session created");
        let id = s.id();
        self.nodes[node].sessions.insert(id, s);
        self.pump(node);
        (id, job)
    }

    pub fn session(&mut self, node: usize, sid: u32) -> &mut Session {
        self.nodes[node]
            .sessions
            .get_mut(&sid)
            .expect("session exists")
    }

    pub fn has_session(&self, node: usize, sid: u32) -> bool {
        self.nodes[node].sessions.contains_key(&sid)
    }

    /// Runs `f` on a session with the current time, then routes its output.
    pub fn with<R>(
        &mut self,
        node: usize,
        sid: u32,
        f: impl FnOnce(&mut Session, Instant) -> R,
    ) -> R {
        let now = self.now;
        let r = f(self.session(node, sid), now);
        self.pump(node);
        r
    }

    pub fn publish(&mut self, node: usize, sid: u32, payload: &[u8]) {
        self.with(node, sid, |s, now| {
            s.publish(payload.to_vec(), HashMap::new(), now)
        })
        .expect("publish accepted");
    }

    /// Delivers one raw message to `node` as if it came off the wire.
    pub fn inject(&mut self, node: usize, msg: wire::Message) {
        self.deliver(node, msg);
        self.pump(node);
    }

    fn deliver(&mut self, node: usize, msg: wire::Message) {
        let now = self.now;
        let n = &mut self.nodes[node];
        if n.silent {
            return;
        }
        match n.layer.handle(msg, now) {
            Dispatch::Session(id, m) => match n.sessions.get_mut(&id) {
                Some(s) => s.handle_message(m, now),
                None => n.layer.forget(id),
            },
            Dispatch::Accepted(s) => {
                n.sessions.insert(s.id(), *s);
            }
            Dispatch::Reply(m) => self.route(node, m),
            Dispatch::Dropped(_) => {}
        }
    }

    /// Moves every transmit and event out of `node`'s sessions.
    fn pump(&mut self, node: usize) {
        let mut out = Vec::new();
        let n = &mut self.nodes[node];
        let mut finished = Vec::new();
        for (id, s) in n.sessions.iter_mut() {
            while let Some(m) = s.poll_transmit() {
                out.push(m);
            }
            while let Some(e) = s.poll_event() {
                match &e {
                    Event::Subscribe(c) => {
                        self.channels.entry(c.clone()).or_default().insert(node);
                    }
                    Event::Unsubscribe(c) => {
                        if let Some(set) = self.channels.get_mut(c) {
                            set.remove(&node);
                        }
                    }
                    _ => {}
                }
                n.events.push((*id, e));
            }
            if s.is_finished(self.now) {
                finished.push(*id);
            }
        }
        for id in finished {
            n.sessions.remove(&id);
            n.layer.forget(id);
        }
        if n.silent {
            return;
        }
        for m in out {
            self.route(node, m);
        }
    }

    fn route(&mut self, from: usize, msg: wire::Message) {
        let Ok(inb) = Inbound::parse(msg.clone()) else {
            panic!("a session emitted a malformed message");
        };
        self.trace.push(Trace {
            from,
            kind: inb.kind,
            source: inb.source.clone(),
            destination: inb.destination.clone(),
            fanout: inb.fanout,
            message_id: inb.message_id,
            msg: msg.clone(),
        });
        let d = &inb.destination;
        let mut targets: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| j != from)
            .filter(|&j| {
                let n = &self.nodes[j].name;
                n.prefix() == d.prefix() && (d.has_null_id() || n.id() == d.id())
            })
            .collect();
        if let Some(subs) = self.channels.get(d) {
            for &j in subs {
                if j != from && !targets.contains(&j) {
                    targets.push(j);
                }
            }
        }
        targets.sort_unstable();
        if inb.fanout == 1 && targets.len() > 1 {
            let pick = self.rng.random_range(0..targets.len());
            targets = vec![targets[pick]];
        }
        for to in targets {
            if let Some(f) = self.filter.as_mut()
                && !f(from, to, &inb)
            {
                continue;
            }
            if self.rng.random_bool(self.loss) {
                continue;
            }
            let copies = if self.rng.random_bool(self.dup) { 2 } else { 1 };
            for _ in 0..copies {
                let mut m = msg.clone();
                if let Some(wire::message::MessageType::Publish(p)) = &mut m.message_type
                    && let Some(h) = p.header.as_mut()
                {
                    // The "node" stamps the arrival link, as SLIM does.
                    h.incoming_conn = Some(from as u64);
                    h.forward_to = None;
                }
                let delay = self.rng.random_range(Duration::ZERO..=self.max_delay);
                self.seq += 1;
                self.heap.push(InFlight {
                    at: self.now + delay,
                    seq: self.seq,
                    to,
                    msg: m,
                });
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let timers = self
            .nodes
            .iter()
            .flat_map(|n| n.sessions.values())
            .filter_map(|s| s.poll_timeout())
            .min();
        let wire = self.heap.peek().map(|f| f.at);
        [timers, wire].into_iter().flatten().min()
    }

    /// Advances virtual time until `done` holds or `limit` (virtual) passed.
    /// Returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            let Some(next) = self.next_deadline() else {
                return false;
            };
            if next > end {
                self.now = end;
                return done(self);
            }
            self.now = self.now.max(next);
            let now = self.now;
            while self.heap.peek().is_some_and(|f| f.at <= now) {
                let Some(f) = self.heap.pop() else { break };
                self.deliver(f.to, f.msg);
                self.pump(f.to);
            }
            for node in 0..self.nodes.len() {
                let n = &mut self.nodes[node];
                let mut any = false;
                for s in n.sessions.values_mut() {
                    if s.poll_timeout().is_some_and(|t| t <= now) {
                        s.handle_timeout(now);
                        any = true;
                    }
                }
                if any {
                    self.pump(node);
                }
            }
        }
    }

    /// Advances virtual time by `d`.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    /// How many messages of `kind` `node` has sent so far.
    pub fn sent(&self, node: usize, kind: Kind) -> usize {
        self.trace
            .iter()
            .filter(|t| t.from == node && t.kind == kind)
            .count()
    }

    pub fn app_events(&self, node: usize, sid: u32) -> Vec<SessionEvent> {
        self.nodes[node]
            .events
            .iter()
            .filter(|(id, _)| *id == sid)
            .filter_map(|(_, e)| match e {
                Event::App(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn messages(&self, node: usize, sid: u32) -> Vec<ReceivedMessage> {
        self.app_events(node, sid)
            .into_iter()
            .filter_map(|e| match e {
                SessionEvent::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// Payloads received on `node` from `source`, in delivery order.
    pub fn payloads_from(&self, node: usize, sid: u32, source: usize) -> Vec<Vec<u8>> {
        let src = self.name(source);
        self.messages(node, sid)
            .into_iter()
            .filter(|m| m.source == src)
            .map(|m| m.payload)
            .collect()
    }

    pub fn job_result(&self, node: usize, job: JobId) -> Option<Result<(), SessionError>> {
        self.nodes[node].events.iter().find_map(|(_, e)| match e {
            Event::JobDone { job: j, result } if *j == job => Some(result.clone()),
            _ => None,
        })
    }

    pub fn has_event(&self, node: usize, sid: u32, pred: impl Fn(&Event) -> bool) -> bool {
        self.nodes[node]
            .events
            .iter()
            .any(|(id, e)| *id == sid && pred(e))
    }

    pub fn is_closed_event(&self, node: usize, sid: u32) -> bool {
        self.app_events(node, sid)
            .iter()
            .any(|e| matches!(e, SessionEvent::Closed { .. }))
    }
}
