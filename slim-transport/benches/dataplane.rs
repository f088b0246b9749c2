//! Data-plane benchmark (plain `main`, prints a table): raw publish
//! throughput and round-trip latency with 100-byte payloads for
//! (a) the in-process forwarder, (b) one node over loopback gRPC,
//! (c) two linked nodes. Run with `cargo bench -p slim-transport --bench dataplane`.

use std::time::{Duration, Instant};

use slim_transport::Name;
use slim_transport::service::{ConnId, LocalConnection, Service};
use slim_transport::wire::{self, message::MessageType};

const PAYLOAD: usize = 100;

fn header(src: &Name, dst: &Name) -> wire::SlimHeader {
    wire::SlimHeader {
        source: Some(src.to_wire()),
        destination: Some(dst.to_wire()),
        fanout: 1,
        identity: String::new(),
        ..Default::default()
    }
}

fn subscribe(
    src: &Name,
    dst: &Name,
    id: u64,
    recv_from: Option<ConnId>,
    forward_to: Option<ConnId>,
) -> wire::Message {
    let mut h = header(src, dst);
    h.recv_from = recv_from;
    h.forward_to = forward_to;
    wire::Message {
        metadata: Default::default(),
        message_type: Some(MessageType::Subscribe(wire::Subscribe {
            header: Some(h),
            subscription_id: id,
        })),
    }
}

fn publish(src: &Name, dst: &Name, seq: u32) -> wire::Message {
    wire::Message {
        metadata: Default::default(),
        message_type: Some(MessageType::Publish(wire::Publish {
            header: Some(header(src, dst)),
            session: Some(wire::SessionHeader {
                session_type: 1,
                session_message_type: 1,
                session_id: 1,
                message_id: seq,
            }),
            msg: Some(wire::Content {
                content_type: Some(wire::content::ContentType::AppPayload(
                    wire::ApplicationPayload {
                        payload_type: "msg".into(),
                        blob: vec![0x5a; PAYLOAD],
                    },
                )),
            }),
        })),
    }
}

async fn sub_acked(app: &mut LocalConnection, msg: wire::Message) {
    app.tx.send(msg).await.expect("forwarder alive");
    loop {
        match app.rx.recv().await {
            Some(Ok(wire::Message {
                message_type: Some(MessageType::SubscriptionAck(a)),
                ..
            })) => {
                assert!(a.success, "subscribe failed: {}", a.error);
                return;
            }
            Some(_) => continue,
            None => panic!("forwarder closed"),
        }
    }
}

/// Two apps wired so that each can publish to the other by name.
struct Pair {
    a: LocalConnection,
    b: LocalConnection,
    na: Name,
    nb: Name,
    services: Vec<Service>,
}

async fn in_process() -> Pair {
    let s = Service::new();
    let mut a = s.local_connection();
    let mut b = s.local_connection();
    let na = Name::new("bench", "ns", "a").with_id(1);
    let nb = Name::new("bench", "ns", "b").with_id(2);
    sub_acked(&mut a, subscribe(&na, &na, 1, None, None)).await;
    sub_acked(&mut b, subscribe(&nb, &nb, 2, None, None)).await;
    Pair {
        a,
        b,
        na,
        nb,
        services: vec![s],
    }
}

/// Apps in two client processes' forwarders, both linked to `node_a`
/// (or, with `node_b`, app b's side linked to `node_b`, which has an
/// upstream link to `node_a`).
async fn over_grpc(two_nodes: bool) -> Pair {
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let node_a = Service::new();
    let addr_a = node_a.run_server(any).await.expect("server");
    let mut services = vec![node_a];
    let addr_b = if two_nodes {
        let node_b = Service::new();
        let addr_b = node_b.run_server(any).await.expect("server");
        node_b
            .connect_upstream(&addr_a.to_string())
            .await
            .expect("link");
        services.push(node_b);
        addr_b
    } else {
        addr_a
    };
    let ca = Service::new();
    let cb = Service::new();
    let la = ca.connect(&addr_a.to_string()).await.expect("connect");
    let lb = cb.connect(&addr_b.to_string()).await.expect("connect");
    let mut a = ca.local_connection();
    let mut b = cb.local_connection();
    let na = Name::new("bench", "ns", "a").with_id(1);
    let nb = Name::new("bench", "ns", "b").with_id(2);
    sub_acked(&mut a, subscribe(&na, &na, 1, None, Some(la))).await;
    sub_acked(&mut b, subscribe(&nb, &nb, 2, None, Some(lb))).await;
    sub_acked(&mut a, subscribe(&na, &nb, 3, Some(la), None)).await;
    sub_acked(&mut b, subscribe(&nb, &na, 4, Some(lb), None)).await;
    services.push(ca);
    services.push(cb);
    let mut p = Pair {
        a,
        b,
        na,
        nb,
        services,
    };
    // Warm-up round trip (the upstream announcement may still be in flight).
    loop {
        p.a.tx.send(publish(&p.na, &p.nb, 0)).await.expect("send");
        if let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_millis(200), p.b.rx.recv()).await
        {
            break;
        }
    }
    p
}

struct Row {
    setup: &'static str,
    msgs_per_s: f64,
    p50: Duration,
    p99: Duration,
}

async fn measure(setup: &'static str, mut p: Pair, n_throughput: u32, n_rtt: u32) -> Row {
    // Throughput: a -> b, b counts.
    let mut b = p.b;
    let counter = tokio::spawn(async move {
        let mut n = 0;
        while n < n_throughput {
            match b.rx.recv().await {
                Some(Ok(_)) => n += 1,
                Some(Err(e)) => panic!("forward error: {e}"),
                None => panic!("closed"),
            }
        }
        b
    });
    let start = Instant::now();
    for i in 0..n_throughput {
        p.a.tx
            .send(publish(&p.na, &p.nb, i + 1))
            .await
            .expect("send");
    }
    let mut b = counter.await.expect("counter");
    let msgs_per_s = f64::from(n_throughput) / start.elapsed().as_secs_f64();

    // Round trip: a -> b -> a, one at a time; b echoes.
    let (na, nb) = (p.na.clone(), p.nb.clone());
    let echo = tokio::spawn(async move {
        for _ in 0..n_rtt {
            match b.rx.recv().await {
                Some(Ok(m)) => {
                    let seq = match &m.message_type {
                        Some(MessageType::Publish(p)) => {
                            p.session.as_ref().map_or(0, |s| s.message_id)
                        }
                        _ => 0,
                    };
                    b.tx.send(publish(&nb, &na, seq)).await.expect("echo");
                }
                other => panic!("echo side got {other:?}"),
            }
        }
    });
    let mut rtts = Vec::with_capacity(n_rtt as usize);
    for i in 0..n_rtt {
        let t = Instant::now();
        p.a.tx
            .send(publish(&p.na, &p.nb, i + 1))
            .await
            .expect("send");
        match p.a.rx.recv().await {
            Some(Ok(_)) => rtts.push(t.elapsed()),
            other => panic!("round trip got {other:?}"),
        }
    }
    echo.await.expect("echo task");
    rtts.sort_unstable();
    let pct = |q: f64| rtts[((rtts.len() as f64 - 1.0) * q) as usize];
    for s in p.services.drain(..) {
        s.shutdown().await;
    }
    Row {
        setup,
        msgs_per_s,
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rows = rt.block_on(async {
        vec![
            measure(
                "(a) in-process forwarder",
                in_process().await,
                200_000,
                20_000,
            )
            .await,
            measure(
                "(b) one node, loopback gRPC",
                over_grpc(false).await,
                100_000,
                10_000,
            )
            .await,
            measure(
                "(c) two linked nodes",
                over_grpc(true).await,
                100_000,
                10_000,
            )
            .await,
        ]
    });
    println!("slim-transport data plane, {PAYLOAD}-byte payloads");
    println!(
        "{:<30} {:>12} {:>12} {:>12}",
        "setup", "messages/s", "rtt p50", "rtt p99"
    );
    for r in rows {
        println!(
            "{:<30} {:>12.0} {:>10.1}µs {:>10.1}µs",
            r.setup,
            r.msgs_per_s,
            r.p50.as_secs_f64() * 1e6,
            r.p99.as_secs_f64() * 1e6
        );
    }
}
