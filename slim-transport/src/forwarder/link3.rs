//! Link negotiation of the SLIM v3 wire and its per-link header MAC.
//!
//! The client opens with a Link request carrying a fresh X25519 public key;
//! the server answers once with its own key. Both derive a 32-byte key with
//! HKDF-SHA256 (salt = the link id, info = a fixed label) from the X25519
//! shared secret, and from then on every Subscribe, Unsubscribe and Publish
//! on the link carries `header_mac` = HMAC-SHA256(key, canonical preimage of
//! the routing fields). The MAC is hop by hop: verified with the inbound
//! link's key, re-computed with the outbound link's key.
//!
//! `require_header_mac` (strict, the official default) refuses a peer that
//! offers no key and every untagged message; lax accepts untagged traffic
//! but never a tag it cannot check. ML-KEM (hybrid) links are refused with
//! [`LinkError::PqcUnsupported`]. Failures of negotiation are fatal to the
//! link; a frame failing the MAC check is dropped, the link stays.
//!
//! Synchronous and I/O-free: the ephemeral secret is given by the caller.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::frame::{Kind, LinkPolicy, Negotiation, header_v3, header_v3_mut};
use super::link::{LinkError, Role, parse_version};
use crate::wire3::{self, message::MessageType};

type HmacSha256 = Hmac<Sha256>;

/// HKDF info of the classical (X25519 only) derivation.
const HKDF_INFO: &[u8] = b"SLIM-DP-inter-node-hmac-v1";
/// Domain separator opening every MAC preimage.
const MAC_DOMAIN: &[u8] = b"SLIM-DP-HDR-v1\0";
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 32;

/// The negotiation and MAC state of one v3 connection.
pub struct LinkState3 {
    role: Role,
    policy: LinkPolicy,
    secret: x25519_dalek::StaticSecret,
    sent_link_id: Option<String>,
    link_id: Option<String>,
    negotiated: bool,
    peer_version: Option<semver::Version>,
    /// The connection type the link runs as (the client's choice, echoed).
    conn_type: wire3::LinkConnectionType,
    key: Option<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for LinkState3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkState3")
            .field("role", &self.role)
            .field("negotiated", &self.negotiated)
            .field("peer_version", &self.peer_version)
            .field("mac", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

/// Derives the link's HMAC key from an X25519 exchange.
pub fn derive_key(
    secret: &x25519_dalek::StaticSecret,
    peer_public: &[u8],
    link_id: &str,
) -> Result<[u8; KEY_LEN], LinkError> {
    let peer: [u8; 32] = peer_public
        .try_into()
        .map_err(|_| LinkError::BadPublicKey(peer_public.len()))?;
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(peer));
    if !shared.was_contributory() {
        return Err(LinkError::BadPublicKey(peer_public.len()));
    }
    let hk = hkdf::Hkdf::<Sha256>::new(Some(link_id.as_bytes()), shared.as_bytes());
    let mut okm = [0u8; KEY_LEN];
    hk.expand(HKDF_INFO, &mut okm)
        .map_err(|_| LinkError::BadPublicKey(peer_public.len()))?;
    Ok(okm)
}

fn push_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
    buf.extend_from_slice(b);
}

fn push_name(buf: &mut Vec<u8>, n: &Option<wire3::Name>) {
    let Some(n) = n else {
        buf.push(0);
        return;
    };
    buf.push(1);
    match &n.name {
        Some(e) => {
            buf.push(1);
            for c in [e.component_0, e.component_1, e.component_2] {
                buf.extend_from_slice(&c.to_le_bytes());
            }
            match &e.name_id {
                Some(id) => {
                    buf.push(1);
                    buf.extend_from_slice(&id.id_0.to_le_bytes());
                    buf.extend_from_slice(&id.id_1.to_le_bytes());
                }
                None => buf.push(0),
            }
        }
        None => buf.push(0),
    }
    match &n.str_name {
        Some(s) => {
            buf.push(1);
            push_bytes(buf, s.str_component_0.as_bytes());
            push_bytes(buf, s.str_component_1.as_bytes());
            push_bytes(buf, s.str_component_2.as_bytes());
        }
        None => buf.push(0),
    }
}

fn push_opt_u64(buf: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => buf.push(0),
        Some(v) => {
            buf.push(1);
            buf.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// The bytes the header MAC covers: the routing fields of `h` on link
/// `link_id` (not `version`, `incoming_conn`, the tags, the session header,
/// the payload or the metadata).
pub fn mac_preimage(h: &wire3::SlimHeader, link_id: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(160);
    buf.extend_from_slice(MAC_DOMAIN);
    push_bytes(&mut buf, link_id.as_bytes());
    push_name(&mut buf, &h.source);
    push_name(&mut buf, &h.destination);
    push_bytes(&mut buf, h.identity.as_bytes());
    buf.extend_from_slice(&h.fanout.to_le_bytes());
    push_opt_u64(&mut buf, h.recv_from);
    push_opt_u64(&mut buf, h.forward_to);
    match h.error {
        None => buf.push(0),
        Some(b) => {
            buf.push(1);
            buf.push(u8::from(b));
        }
    }
    buf.extend_from_slice(&h.ttl.to_le_bytes());
    buf
}

fn mac(key: &[u8; KEY_LEN], h: &wire3::SlimHeader, link_id: &str) -> HmacSha256 {
    // A 32-byte key is always accepted by HMAC.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(&mac_preimage(h, link_id));
    m
}

/// The tag of header `h` on link `link_id`.
pub fn compute_tag(key: &[u8; KEY_LEN], h: &wire3::SlimHeader, link_id: &str) -> Vec<u8> {
    mac(key, h, link_id).finalize().into_bytes().to_vec()
}

/// Checks `h.header_mac` in constant time.
pub fn verify_tag(
    key: &[u8; KEY_LEN],
    h: &wire3::SlimHeader,
    link_id: &str,
) -> Result<(), LinkError> {
    let tag = h.header_mac.as_deref().ok_or(LinkError::MissingTag)?;
    if tag.len() != TAG_LEN {
        return Err(LinkError::BadTag);
    }
    mac(key, h, link_id)
        .verify_slice(tag)
        .map_err(|_| LinkError::BadTag)
}

/// A v3 link negotiation message.
fn link_message(
    link_id: String,
    is_reply: bool,
    public_key: Option<[u8; 32]>,
    connection_type: wire3::LinkConnectionType,
) -> wire3::Message {
    wire3::Message {
        metadata: Default::default(),
        message_type: Some(MessageType::Link(wire3::Link {
            link_type: Some(wire3::link::LinkType::LinkNegotiation(
                wire3::LinkNegotiationPayload {
                    link_id,
                    slim_version: wire3::SLIM_VERSION.to_string(),
                    is_reply,
                    link_ecdh_public_key: public_key.map(|k| k.to_vec()).unwrap_or_default(),
                    connection_type: connection_type as i32,
                    node_id: String::new(),
                    deployment_name: String::new(),
                    link_kem_payload: None,
                },
            )),
        })),
    }
}

/// The negotiation payload of a v3 Link frame.
pub fn payload_of(m: &wire3::Message) -> Option<&wire3::LinkNegotiationPayload> {
    match &m.message_type {
        Some(MessageType::Link(wire3::Link {
            link_type: Some(wire3::link::LinkType::LinkNegotiation(p)),
        })) => Some(p),
        _ => None,
    }
}

/// The frame decoded as a v3 Link negotiation, when it is one of the v3
/// generation: it offers an X25519 key, or announces a version of major 2 or
/// more. (The first fields of a negotiation decode alike in both schemas; a
/// v1 peer sends neither.)
pub fn v3_negotiation(frame: &[u8]) -> Option<wire3::Message> {
    use prost::Message as _;
    let m = wire3::Message::decode(frame).ok()?;
    let p = payload_of(&m)?;
    let major = semver::Version::parse(&p.slim_version)
        .ok()
        .map(|v| v.major);
    (!p.link_ecdh_public_key.is_empty() || major.is_some_and(|v| v >= 2)).then_some(m)
}

impl LinkState3 {
    fn public_key(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.secret).to_bytes()
    }

    /// True when this link carries header MACs at all: every connection
    /// type but PEER (as the official node).
    fn macs_apply(&self) -> bool {
        self.conn_type != wire3::LinkConnectionType::Peer
    }

    /// True once the header MAC key is installed.
    pub fn has_mac_key(&self) -> bool {
        self.key.is_some()
    }

    /// The connection type the link runs as.
    pub fn connection_type(&self) -> wire3::LinkConnectionType {
        self.conn_type
    }

    fn on_request(
        &mut self,
        p: &wire3::LinkNegotiationPayload,
        version: semver::Version,
    ) -> Result<Option<wire3::Message>, LinkError> {
        if self.negotiated {
            return Err(LinkError::Replayed);
        }
        if p.link_id.is_empty() {
            return Err(LinkError::BadLinkId(String::new()));
        }
        if p.link_kem_payload.as_ref().is_some_and(|k| !k.is_empty()) {
            return Err(LinkError::PqcUnsupported);
        }
        let has_key = p.link_ecdh_public_key.len() == 32;
        if self.policy.require_header_mac && !has_key {
            return Err(LinkError::BadPublicKey(p.link_ecdh_public_key.len()));
        }
        self.conn_type = wire3::LinkConnectionType::try_from(p.connection_type)
            .unwrap_or(wire3::LinkConnectionType::Remote);
        let mut reply_key = None;
        if has_key {
            match derive_key(&self.secret, &p.link_ecdh_public_key, &p.link_id) {
                Ok(k) => {
                    self.key = Some(k);
                    reply_key = Some(self.public_key());
                }
                Err(e) if self.policy.require_header_mac => return Err(e),
                Err(_) => {}
            }
        }
        self.negotiated = true;
        self.peer_version = Some(version);
        self.link_id = Some(p.link_id.clone());
        Ok(Some(link_message(
            p.link_id.clone(),
            true,
            reply_key,
            self.conn_type,
        )))
    }

    fn on_reply(
        &mut self,
        p: &wire3::LinkNegotiationPayload,
        version: semver::Version,
    ) -> Result<Option<wire3::Message>, LinkError> {
        if self.sent_link_id.as_deref() != Some(p.link_id.as_str()) {
            return Err(LinkError::WrongLinkId);
        }
        if self.negotiated {
            return Err(LinkError::DuplicateReply);
        }
        let has_key = p.link_ecdh_public_key.len() == 32;
        if self.policy.require_header_mac && !has_key {
            return Err(LinkError::BadPublicKey(p.link_ecdh_public_key.len()));
        }
        if has_key {
            self.key = Some(derive_key(
                &self.secret,
                &p.link_ecdh_public_key,
                &p.link_id,
            )?);
        }
        self.negotiated = true;
        self.peer_version = Some(version);
        self.link_id = Some(p.link_id.clone());
        Ok(None)
    }

    /// Client side: the connection type to announce (apps: EDGE, nodes:
    /// REMOTE). Must be set before [`Negotiation::request`].
    pub fn set_connection_type(&mut self, t: wire3::LinkConnectionType) {
        self.conn_type = t;
    }
}

impl Negotiation<wire3::Message> for LinkState3 {
    fn new(role: Role, policy: LinkPolicy, secret: [u8; 32]) -> Self {
        Self {
            role,
            policy,
            secret: x25519_dalek::StaticSecret::from(secret),
            sent_link_id: None,
            link_id: None,
            negotiated: false,
            peer_version: None,
            conn_type: wire3::LinkConnectionType::Remote,
            key: None,
        }
    }

    fn request(&mut self, link_id: String) -> wire3::Message {
        self.sent_link_id = Some(link_id.clone());
        self.link_id = None;
        self.negotiated = false;
        self.peer_version = None;
        self.key = None;
        link_message(link_id, false, Some(self.public_key()), self.conn_type)
    }

    fn on_frame(&mut self, frame: &wire3::Message) -> Result<Option<wire3::Message>, LinkError> {
        let p = payload_of(frame).ok_or(LinkError::NotNegotiation)?;
        match (self.role, p.is_reply) {
            (Role::Server, true) => return Err(LinkError::ReplyOnServerSide),
            (Role::Client, false) => return Err(LinkError::RequestOnClientSide),
            _ => {}
        }
        let version = parse_version(&p.slim_version)?;
        match self.role {
            Role::Server => self.on_request(p, version),
            Role::Client => self.on_reply(p, version),
        }
    }

    fn is_negotiated(&self) -> bool {
        self.negotiated
    }

    fn peer_version(&self) -> Option<&semver::Version> {
        self.peer_version.as_ref()
    }

    fn peer_acks_subscriptions(&self) -> bool {
        // Every v3 peer acks a subscription carrying an id.
        self.negotiated
    }

    fn failures_are_fatal(&self) -> bool {
        true
    }

    fn sends_before_reply(&self) -> bool {
        false
    }

    fn check_inbound(&self, frame: &wire3::Message) -> Result<(), LinkError> {
        if !self.macs_apply() {
            return Ok(());
        }
        let kind = super::frame::Frame::kind(frame);
        if !matches!(
            kind,
            Kind::Publish | Kind::Subscribe { .. } | Kind::Unsubscribe { .. }
        ) {
            return Ok(());
        }
        let Some(h) = header_v3(frame) else {
            return Ok(());
        };
        let tagged = h.header_mac.as_ref().is_some_and(|t| !t.is_empty());
        if !matches!(kind, Kind::Publish) && !tagged {
            return if self.policy.require_header_mac {
                Err(LinkError::MissingTag)
            } else {
                Ok(())
            };
        }
        let (Some(key), Some(link_id)) = (&self.key, &self.link_id) else {
            if self.policy.require_header_mac {
                return Err(LinkError::MacRequired);
            }
            if tagged {
                return Err(LinkError::AwaitingNegotiation);
            }
            return Ok(());
        };
        verify_tag(key, h, link_id)
    }

    fn seal_outbound(&self, frame: &mut wire3::Message) -> Result<(), LinkError> {
        if !self.macs_apply() {
            return Ok(());
        }
        let key = self.key;
        let link_id = self.link_id.clone();
        let strict = self.policy.require_header_mac;
        let Some(h) = header_v3_mut(frame) else {
            return Ok(());
        };
        h.header_mac = None;
        match (key, link_id) {
            (Some(key), Some(link_id)) => {
                h.header_mac = Some(compute_tag(&key, h, &link_id));
                Ok(())
            }
            _ if strict => Err(LinkError::MacRequired),
            _ => Ok(()),
        }
    }

    fn role(&self) -> Role {
        self.role
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forwarder::frame::Frame;

    fn strict() -> LinkPolicy {
        LinkPolicy {
            require_header_mac: true,
        }
    }

    fn lax() -> LinkPolicy {
        LinkPolicy {
            require_header_mac: false,
        }
    }

    fn pair(client: LinkPolicy, server: LinkPolicy) -> (LinkState3, LinkState3) {
        let mut c = LinkState3::new(Role::Client, client, [1; 32]);
        let mut s = LinkState3::new(Role::Server, server, [2; 32]);
        let req = c.request(uuid::Uuid::new_v4().to_string());
        let reply = s.on_frame(&req).unwrap().unwrap();
        assert_eq!(c.on_frame(&reply).unwrap(), None);
        (c, s)
    }

    fn publish(dst: &str) -> wire3::Message {
        let name = |s: &str| wire3::Name {
            name: Some(wire3::EncodedName {
                component_0: 1,
                component_1: 2,
                component_2: 3,
                name_id: Some(wire3::NameId { id_0: 4, id_1: 5 }),
            }),
            str_name: Some(wire3::StringName {
                str_component_0: "a".into(),
                str_component_1: "b".into(),
                str_component_2: s.into(),
            }),
        };
        wire3::Message {
            metadata: Default::default(),
            message_type: Some(MessageType::Publish(wire3::Publish {
                header: Some(wire3::SlimHeader {
                    source: Some(name("src")),
                    destination: Some(name(dst)),
                    fanout: 1,
                    ttl: 8,
                    ..Default::default()
                }),
                session: Some(Default::default()),
                msg: None,
            })),
        }
    }

    #[test]
    fn both_ends_derive_the_same_key_and_a_signed_publish_verifies_on_the_other_end() {
        let (c, s) = pair(strict(), strict());
        assert!(c.has_mac_key() && s.has_mac_key());
        assert_eq!(c.key, s.key);
        let mut m = publish("dst");
        c.seal_outbound(&mut m).unwrap();
        assert_eq!(
            header_v3(&m).unwrap().header_mac.as_ref().unwrap().len(),
            32
        );
        assert_eq!(s.check_inbound(&m), Ok(()));
    }

    #[test]
    fn a_tampered_destination_or_ttl_fails_the_mac_check() {
        let (c, s) = pair(strict(), strict());
        let mut m = publish("dst");
        c.seal_outbound(&mut m).unwrap();
        let mut tampered = m.clone();
        if let Some(h) = header_v3_mut(&mut tampered) {
            h.destination
                .as_mut()
                .unwrap()
                .str_name
                .as_mut()
                .unwrap()
                .str_component_2 = "other".into();
        }
        assert_eq!(s.check_inbound(&tampered), Err(LinkError::BadTag));
        let mut ttl = m.clone();
        assert!(ttl.hop());
        assert_eq!(s.check_inbound(&ttl), Err(LinkError::BadTag));
        // Fields outside the preimage may change.
        let mut meta = m;
        meta.metadata.insert("k".into(), "v".into());
        assert_eq!(s.check_inbound(&meta), Ok(()));
    }

    #[test]
    fn strict_server_refuses_a_request_without_a_key_and_lax_accepts_it_without_mac() {
        let mut s = LinkState3::new(Role::Server, strict(), [2; 32]);
        let mut req = link_message(
            uuid::Uuid::new_v4().to_string(),
            false,
            None,
            wire3::LinkConnectionType::Edge,
        );
        assert_eq!(s.on_frame(&req), Err(LinkError::BadPublicKey(0)));
        let mut lax_server = LinkState3::new(Role::Server, lax(), [2; 32]);
        let reply = lax_server.on_frame(&req).unwrap().unwrap();
        assert!(payload_of(&reply).unwrap().link_ecdh_public_key.is_empty());
        assert!(!lax_server.has_mac_key());
        // Untagged traffic flows on the lax link; a tag it cannot check does not.
        let m = publish("x");
        assert_eq!(lax_server.check_inbound(&m), Ok(()));
        let mut tagged = m;
        header_v3_mut(&mut tagged).unwrap().header_mac = Some(vec![0; 32]);
        assert_eq!(
            lax_server.check_inbound(&tagged),
            Err(LinkError::AwaitingNegotiation)
        );
        // A PQC offer is refused cleanly.
        if let Some(MessageType::Link(wire3::Link {
            link_type: Some(wire3::link::LinkType::LinkNegotiation(p)),
        })) = &mut req.message_type
        {
            p.link_kem_payload = Some(vec![0; 1184]);
        }
        let mut s2 = LinkState3::new(Role::Server, lax(), [2; 32]);
        assert_eq!(s2.on_frame(&req), Err(LinkError::PqcUnsupported));
    }

    #[test]
    fn strict_client_refuses_a_reply_without_a_key() {
        let mut c = LinkState3::new(Role::Client, strict(), [1; 32]);
        let id = uuid::Uuid::new_v4().to_string();
        c.request(id.clone());
        let reply = link_message(id, true, None, wire3::LinkConnectionType::Remote);
        assert_eq!(c.on_frame(&reply), Err(LinkError::BadPublicKey(0)));
        assert!(!c.is_negotiated());
    }

    #[test]
    fn strict_link_drops_untagged_subscriptions_and_lax_link_accepts_them() {
        let (_, s) = pair(strict(), strict());
        let sub = publish("x").subscription(true, 7);
        assert_eq!(s.check_inbound(&sub), Err(LinkError::MissingTag));
        let (_, s) = pair(lax(), lax());
        assert_eq!(s.check_inbound(&sub), Ok(()));
        // A publish must be tagged once the key exists, lax or not.
        assert_eq!(s.check_inbound(&publish("x")), Err(LinkError::MissingTag));
    }

    #[test]
    fn strict_outbound_without_a_key_is_refused() {
        let c = LinkState3::new(Role::Client, strict(), [1; 32]);
        assert_eq!(
            c.seal_outbound(&mut publish("x")),
            Err(LinkError::MacRequired)
        );
        let c = LinkState3::new(Role::Client, lax(), [1; 32]);
        assert_eq!(c.seal_outbound(&mut publish("x")), Ok(()));
    }

    #[test]
    fn server_answers_once_and_echoes_the_link_id_and_connection_type() {
        let mut c = LinkState3::new(Role::Client, strict(), [1; 32]);
        c.set_connection_type(wire3::LinkConnectionType::Edge);
        let req = c.request("any-non-empty-id".into());
        let mut s = LinkState3::new(Role::Server, strict(), [2; 32]);
        let reply = s.on_frame(&req).unwrap().unwrap();
        let p = payload_of(&reply).unwrap();
        assert!(p.is_reply);
        assert_eq!(p.link_id, "any-non-empty-id");
        assert_eq!(p.connection_type, wire3::LinkConnectionType::Edge as i32);
        assert_eq!(p.link_ecdh_public_key.len(), 32);
        assert_eq!(s.on_frame(&req), Err(LinkError::Replayed));
    }

    #[test]
    fn mac_preimage_lays_out_fields_as_specified() {
        let h = wire3::SlimHeader {
            source: None,
            destination: None,
            identity: "id".into(),
            fanout: 1,
            ttl: 8,
            recv_from: Some(2),
            ..Default::default()
        };
        let p = mac_preimage(&h, "L");
        let mut want = b"SLIM-DP-HDR-v1\0".to_vec();
        want.extend_from_slice(&[1, 0, 0, 0, b'L']);
        want.extend_from_slice(&[0, 0]);
        want.extend_from_slice(&[2, 0, 0, 0, b'i', b'd']);
        want.extend_from_slice(&[1, 0, 0, 0]);
        want.extend_from_slice(&[1, 2, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[0, 0]);
        want.extend_from_slice(&[8, 0, 0, 0]);
        assert_eq!(p, want);
    }
}
