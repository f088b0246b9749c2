//! A burst far larger than any queue on the way, with MLS on: every message
//! arrives, in order, none reported lost.
//!
//! On a loaded machine this used to fail: the sender overran the receiving
//! app's inbox (which drops what does not fit), retransmissions fell behind,
//! RTX requests for messages evicted from the sender's history were answered
//! "lost", and MLS refused retransmitted ciphertexts older than its ratchet
//! window. The send window and the RTX history fix are proven
//! deterministically by the sans-IO tests `a_burst_beyond_the_send_window_*`;
//! this test checks the whole stack end to end.

mod session_common;

use std::collections::HashMap;

use session_common::{LIVENESS, app};
use slim_transport::app::{SessionConfig, SessionEvent, SessionKind};
use slim_transport::service::Service;

const BURST: usize = 10_000;
const PAYLOAD: usize = 100;

/// Message `i`: its number, padded to [`PAYLOAD`] bytes.
fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("m{i}").into_bytes();
    p.resize(PAYLOAD, b'.');
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_message_burst_with_mls_arrives_whole_and_in_order() {
    let service = Service::new();
    let alice = app(&service, "org/burst/alice").await;
    let bob = app(&service, "org/burst/bob").await;
    let config = SessionConfig {
        kind: SessionKind::PointToPoint,
        mls: true,
        ..SessionConfig::default()
    };
    let (sender, done) = alice
        .create_session(config, &"org/burst/bob".parse().unwrap())
        .await
        .expect("session");
    let mut receiver = tokio::time::timeout(LIVENESS, bob.listen_for_session())
        .await
        .expect("invited in time")
        .expect("accepted");
    tokio::time::timeout(LIVENESS, done)
        .await
        .expect("established in time")
        .expect("established");

    let reader = tokio::spawn(async move {
        let mut got = 0usize;
        while got < BURST {
            let event = tokio::time::timeout(LIVENESS, receiver.recv())
                .await
                .unwrap_or_else(|_| panic!("stalled after {got} messages"))
                .expect("session open");
            match event {
                SessionEvent::Message(m) => {
                    assert_eq!(m.payload, payload(got));
                    got += 1;
                }
                SessionEvent::MessageLost { message_id, .. } => {
                    panic!("message {message_id} lost after {got} delivered")
                }
                SessionEvent::Closed { reason } => panic!("closed after {got}: {reason}"),
                _ => {}
            }
        }
        got
    });
    for i in 0..BURST {
        sender
            .publish(payload(i), HashMap::new())
            .await
            .expect("published");
    }
    let got = reader.await.expect("reader finished");
    assert_eq!(got, BURST);
    service.shutdown().await;
}
