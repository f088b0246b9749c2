//! Data plane over real gRPC on 127.0.0.1: linked `Service`s route publishes
//! between apps, routes die with their link, reconnects replay forwarded
//! subscriptions, and a three-node chain works with explicit routes.

mod dataplane_common;

use dataplane_common::*;
use slim_transport::service::{ForwardErrorKind, Service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_linked_services_route_a_publish_between_apps_and_back() {
    let node_b = Service::new();
    let addr = node_b.run_server(localhost()).await.unwrap();
    let node_a = Service::new();
    let link = node_a.connect(&format!("http://{addr}")).await.unwrap();
    // Until the link is negotiated a forwarded subscription is acked at
    // once, before node B holds it; wait, so the acks below mean B has it.
    negotiated(&node_a, link).await;

    let mut app_b = node_b.local_connection();
    let mut app_a = node_a.local_connection();
    let bob = name("org/ns/bob/b0b");
    let alice = name("org/ns/alice/a1");

    subscribe_acked(&mut app_b, subscribe(&bob, &bob, 1, None, None)).await;
    // alice's own name, forwarded to node B (acked after B's ack).
    subscribe_acked(&mut app_a, subscribe(&alice, &alice, 2, None, Some(link))).await;
    // A route towards bob over the link (local to node A only).
    subscribe_acked(&mut app_a, subscribe(&alice, &bob, 3, Some(link), None)).await;
    assert_eq!(node_a.peer_version(link).as_deref(), Some("1.3.0"));

    app_a
        .tx
        .send(publish(&alice, &bob, 1, b"hello bob"))
        .await
        .unwrap();
    let got = next_publish(&mut app_b).await;
    assert_eq!(blob(&got), Some(&b"hello bob"[..]));
    let h = pub_header(&got);
    // Stamped by node B with its own index of the link; flags cleared.
    let b_side_link = h.incoming_conn.expect("incoming_conn stamped");
    assert_eq!(node_b.subscribers(&alice), vec![b_side_link]);
    assert_eq!((h.forward_to, h.recv_from), (None, None));
    assert_eq!(got.metadata.get("k").map(String::as_str), Some("v"));

    // The reply goes back by name thanks to the forwarded subscription.
    app_b
        .tx
        .send(publish(&bob, &alice, 1, b"hello alice"))
        .await
        .unwrap();
    let back = next_publish(&mut app_a).await;
    assert_eq!(blob(&back), Some(&b"hello alice"[..]));

    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_link_removes_the_routes_learned_on_it() {
    let node_b = Service::new();
    let addr = node_b.run_server(localhost()).await.unwrap();
    let node_a = Service::new();
    let link = node_a.connect(&addr.to_string()).await.unwrap();
    negotiated(&node_a, link).await;
    let mut app_a = node_a.local_connection();
    let mut app_b = node_b.local_connection();
    let alice = name("org/ns/alice/a1");
    let bob = name("org/ns/bob/b0b");
    subscribe_acked(&mut app_a, subscribe(&alice, &alice, 7, None, Some(link))).await;
    assert_eq!(node_b.subscribers(&alice).len(), 1);

    node_a.disconnect(link).await.unwrap();
    eventually("node B forgets alice", || {
        node_b.subscribers(&alice).is_empty()
    })
    .await;
    app_b
        .tx
        .send(publish(&bob, &alice, 1, b"anyone?"))
        .await
        .unwrap();
    let err = next(&mut app_b).await.expect_err("no route any more");
    assert!(matches!(err.kind, ForwardErrorKind::NoMatch(_)), "{err}");
    assert_eq!(err.session_context.map(|c| c.message_id), Some(1));
    assert!(node_a.disconnect(link).await.is_err());

    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_in_a_chain_route_with_explicit_routes_only() {
    // A --link--> B --link--> C ; alice on A, carol on C, a route-setting
    // app on B (what a control plane would do).
    let node_c = Service::new();
    let addr_c = node_c.run_server(localhost()).await.unwrap();
    let node_b = Service::new();
    let addr_b = node_b.run_server(localhost()).await.unwrap();
    let b_to_c = node_b.connect(&addr_c.to_string()).await.unwrap();
    let node_a = Service::new();
    let a_to_b = node_a.connect(&addr_b.to_string()).await.unwrap();
    negotiated(&node_b, b_to_c).await;
    negotiated(&node_a, a_to_b).await;

    let mut alice_app = node_a.local_connection();
    let mut ctl_b = node_b.local_connection();
    let mut carol_app = node_c.local_connection();
    let alice = name("org/ns/alice/1");
    let carol = name("org/ns/carol/3");
    let ctl = name("org/ns/control/2");

    subscribe_acked(&mut carol_app, subscribe(&carol, &carol, 1, None, None)).await;
    // alice: own name forwarded to B; route to carol over the link.
    subscribe_acked(
        &mut alice_app,
        subscribe(&alice, &alice, 2, None, Some(a_to_b)),
    )
    .await;
    subscribe_acked(
        &mut alice_app,
        subscribe(&alice, &carol, 3, Some(a_to_b), None),
    )
    .await;
    let b_from_a = node_b.subscribers(&alice)[0];
    // B: carol is over the link to C; alice (on B's link from A) is also
    // announced to C, so C routes replies to B.
    subscribe_acked(&mut ctl_b, subscribe(&ctl, &carol, 4, Some(b_to_c), None)).await;
    subscribe_acked(
        &mut ctl_b,
        subscribe(&ctl, &alice, 5, Some(b_from_a), Some(b_to_c)),
    )
    .await;

    alice_app
        .tx
        .send(publish(&alice, &carol, 1, b"two hops"))
        .await
        .unwrap();
    assert_eq!(
        blob(&next_publish(&mut carol_app).await),
        Some(&b"two hops"[..])
    );
    carol_app
        .tx
        .send(publish(&carol, &alice, 1, b"and back"))
        .await
        .unwrap();
    assert_eq!(
        blob(&next_publish(&mut alice_app).await),
        Some(&b"and back"[..])
    );

    // Without a route on C there is no flooding: an unknown name fails.
    carol_app
        .tx
        .send(publish(&carol, &name("org/ns/nobody/9"), 1, b"?"))
        .await
        .unwrap();
    assert!(next(&mut carol_app).await.is_err());

    for n in [node_a, node_b, node_c] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multicast_fanout_reaches_every_subscriber_across_a_link() {
    let node_b = Service::new();
    let addr = node_b.run_server(localhost()).await.unwrap();
    let node_a = Service::new();
    let link = node_a.connect(&addr.to_string()).await.unwrap();
    negotiated(&node_a, link).await;
    let chan = name("org/ns/chan");
    let mut m1 = node_b.local_connection();
    let mut m2 = node_b.local_connection();
    let mut m3 = node_a.local_connection();
    let me = name("org/ns/m/1");
    subscribe_acked(&mut m1, subscribe(&me, &chan, 1, None, None)).await;
    subscribe_acked(&mut m2, subscribe(&me, &chan, 2, None, None)).await;
    subscribe_acked(&mut m3, subscribe(&me, &chan, 3, None, Some(link))).await;

    m1.tx.send(publish(&me, &chan, 256, b"all")).await.unwrap();
    assert_eq!(blob(&next_publish(&mut m2).await), Some(&b"all"[..]));
    assert_eq!(blob(&next_publish(&mut m3).await), Some(&b"all"[..]));
    // Never echoed to the sender: its next item is the one after.
    m2.tx
        .send(publish(&me, &chan, 256, b"second"))
        .await
        .unwrap();
    assert_eq!(blob(&next_publish(&mut m1).await), Some(&b"second"[..]));

    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_unsubscribe_is_acked_with_the_peers_refusal() {
    let node_b = Service::new();
    let addr = node_b.run_server(localhost()).await.unwrap();
    let node_a = Service::new();
    let link = node_a.connect(&addr.to_string()).await.unwrap();
    // Only a negotiated >= 1.2.0 peer is waited for.
    negotiated(&node_a, link).await;
    let mut app = node_a.local_connection();
    let me = name("org/ns/me/1");
    // Known locally (so the local removal succeeds) but never forwarded:
    // node B refuses the forwarded unsubscribe, and the app learns it only
    // through the remote ack.
    subscribe_acked(&mut app, subscribe(&me, &me, 5, None, None)).await;
    let ack = ack_for(&mut app, unsubscribe(&me, &me, 5, Some(link)), 5).await;
    assert!(!ack.success);
    assert!(
        ack.error
            .starts_with("remote subscription ack returned error"),
        "{}",
        ack.error
    );
    // A forwarded subscribe the peer accepts is acked with success.
    let ack = ack_for(&mut app, subscribe(&me, &me, 6, None, Some(link)), 6).await;
    assert!(ack.success, "{}", ack.error);
    assert_eq!(node_b.subscribers(&me).len(), 1);
    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_reports_unreachable_and_malformed_endpoints() {
    let svc = Service::new();
    let port = slimrpc_testkit::free_port();
    let err = svc.connect(&format!("127.0.0.1:{port}")).await.unwrap_err();
    assert!(
        matches!(err, slim_transport::service::TransportError::Connect { .. }),
        "{err}"
    );
    let err = svc.connect("http://bad host:1").await.unwrap_err();
    assert!(
        matches!(
            err,
            slim_transport::service::TransportError::InvalidEndpoint { .. }
        ),
        "{err}"
    );
    // Failed attempts leave no connection behind.
    assert!(svc.connections().is_empty());
    svc.shutdown().await;
    assert!(matches!(
        svc.connect(&format!("127.0.0.1:{port}")).await,
        Err(slim_transport::service::TransportError::Shutdown)
    ));
}
