//! A raw SLIM v3 link to a node, negotiated as an app would (header MAC,
//! edge connection), for tests that play a peer frame by frame: the
//! data-plane tests, and session tests that hand our apps forged frames.

#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use slim_transport::forwarder::link3::LinkState3;
use slim_transport::forwarder::{LinkPolicy, Negotiation, Role};
use slim_transport::grpc;
use slim_transport::name::hash_component;
use slim_transport::wire3;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// Liveness bound of the raw link's waits.
pub const LIMIT: Duration = Duration::from_secs(30);

pub async fn channel(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the node")
}

/// A raw v3 link, negotiated as an app would.
pub struct Raw3 {
    tx: mpsc::Sender<Bytes>,
    rx: Streaming<Bytes>,
    pub link: LinkState3,
}

pub fn name3(app: &str, id: u128) -> wire3::Name {
    wire3::Name {
        name: Some(wire3::EncodedName {
            component_0: hash_component("org"),
            component_1: hash_component("ns"),
            component_2: hash_component(app),
            name_id: Some(wire3::NameId {
                id_0: (id >> 64) as u64,
                id_1: id as u64,
            }),
        }),
        str_name: Some(wire3::StringName {
            str_component_0: "org".into(),
            str_component_1: "ns".into(),
            str_component_2: app.into(),
        }),
    }
}

pub fn header3(src: wire3::Name, dst: wire3::Name) -> Option<wire3::SlimHeader> {
    Some(wire3::SlimHeader {
        source: Some(src),
        destination: Some(dst),
        fanout: 1,
        version: wire3::SLIM_VERSION.into(),
        ttl: wire3::DEFAULT_TTL,
        ..Default::default()
    })
}

impl Raw3 {
    pub async fn connect(addr: &str, strict: bool, offer_key: bool) -> Result<Raw3, String> {
        let policy = LinkPolicy {
            require_header_mac: strict,
        };
        let mut link = LinkState3::new(Role::Client, policy, rand_secret());
        link.set_connection_type(wire3::LinkConnectionType::Edge);
        let mut req = Negotiation::request(&mut link, uuid::Uuid::new_v4().to_string());
        if !offer_key
            && let Some(wire3::message::MessageType::Link(l)) = &mut req.message_type
            && let Some(wire3::link::LinkType::LinkNegotiation(p)) = &mut l.link_type
        {
            p.link_ecdh_public_key.clear();
        }
        let (tx, rx) = mpsc::channel(64);
        tx.send(Bytes::from(req.encode_to_vec())).await.unwrap();
        let mut stream = grpc::open_channel(channel(addr).await, ReceiverStream::new(rx), 1 << 22)
            .await
            .map_err(|s| s.to_string())?;
        let reply = tokio::time::timeout(LIMIT, stream.message())
            .await
            .map_err(|_| "no reply".to_string())?
            .map_err(|s| s.to_string())?
            .ok_or("stream closed")?;
        let reply = wire3::Message::decode(reply).map_err(|e| e.to_string())?;
        Negotiation::on_frame(&mut link, &reply).map_err(|e| e.to_string())?;
        Ok(Raw3 {
            tx,
            rx: stream,
            link,
        })
    }

    pub async fn send_raw(&self, m: &wire3::Message) {
        self.tx.send(Bytes::from(m.encode_to_vec())).await.unwrap();
    }

    pub async fn send(&self, mut m: wire3::Message) {
        self.link.seal_outbound(&mut m).expect("sealed");
        self.send_raw(&m).await;
    }

    /// The next frame, waiting up to `LIMIT` (a liveness bound).
    pub async fn recv(&mut self) -> Option<wire3::Message> {
        self.recv_within(LIMIT).await
    }

    /// The next frame within `wait`, if any.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<wire3::Message> {
        match tokio::time::timeout(wait, self.rx.message()).await {
            Ok(Ok(Some(b))) => Some(wire3::Message::decode(b).expect("v3 frame")),
            _ => None,
        }
    }

    /// Subscribes `name` and waits for the node's ack.
    pub async fn subscribe(&mut self, name: wire3::Name) {
        let m = wire3::Message {
            metadata: Default::default(),
            message_type: Some(wire3::message::MessageType::Subscribe(wire3::Subscribe {
                header: header3(name.clone(), name),
                subscription_id: 77,
            })),
        };
        self.send(m).await;
        let ack = self.recv().await.expect("subscription ack");
        assert!(
            matches!(&ack.message_type, Some(wire3::message::MessageType::SubscriptionAck(a)) if a.success),
            "{ack:?}"
        );
    }
}

pub fn rand_secret() -> [u8; 32] {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = (uuid::Uuid::new_v4().as_u128() as u8).wrapping_add(i as u8);
    }
    k
}
