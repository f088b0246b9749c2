//! What the forwarder needs to know of a wire message, for either SLIM
//! generation: [`Frame`] is implemented by the v1 schema (`crate::wire`) and
//! the v3 schema (`crate::wire3`), so one forwarder core routes both.
//!
//! A frame exposes only its routing view (kind, names as [`NameKey`]s,
//! fanout, the connection flags) and the few rewrites a node makes (stamping
//! the incoming connection, clearing flags, the v3 TTL). Link negotiation and
//! the v3 header MAC belong to each generation's [`Negotiation`] type. This
//! module never routes and never does I/O.

use std::fmt::Debug;

use super::errors::{ConnId, SessionContext};
use super::link::{LinkError, Role};
use crate::name::NameKey;
use crate::{wire, wire3};

/// The two wire generations of SLIM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Generation {
    /// Official 1.3.x / 1.4.x.
    V1,
    /// Official 2.x / 3.x.
    V3,
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Generation::V1 => "v1",
            Generation::V3 => "v3",
        })
    }
}

/// A SubscriptionAck, in either generation (the schema is the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub subscription_id: u64,
    pub success: bool,
    pub error: String,
}

/// What kind of message a frame is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Publish,
    Subscribe {
        subscription_id: u64,
    },
    Unsubscribe {
        subscription_id: u64,
    },
    Link,
    SubscriptionAck(SubAck),
    /// No message type set.
    Empty,
}

/// The routing fields of a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub source: NameKey,
    pub destination: NameKey,
    pub fanout: u32,
    pub recv_from: Option<ConnId>,
    pub forward_to: Option<ConnId>,
}

/// Link options that change negotiation (v3 only; v1 ignores them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkPolicy {
    /// Refuse a peer that offers no X25519 key, and every untagged message
    /// (the official `require_header_mac`, default on).
    pub require_header_mac: bool,
}

impl Default for LinkPolicy {
    fn default() -> Self {
        Self {
            require_header_mac: true,
        }
    }
}

/// The negotiation state of one remote connection, per generation.
pub trait Negotiation<F>: Debug + Send {
    /// A fresh state; `secret` seeds the v3 ephemeral X25519 key.
    fn new(role: Role, policy: LinkPolicy, secret: [u8; 32]) -> Self
    where
        Self: Sized;
    /// Client side: the request to send first (restarts negotiation).
    fn request(&mut self, link_id: String) -> F;
    /// Handles a received Link frame; a server returns its reply.
    fn on_frame(&mut self, frame: &F) -> Result<Option<F>, LinkError>;
    /// True once a request was answered (server) or a reply accepted
    /// (client).
    fn is_negotiated(&self) -> bool;
    /// The peer's version once negotiated.
    fn peer_version(&self) -> Option<&semver::Version>;
    /// True when the peer answers forwarded subscriptions with acks.
    fn peer_acks_subscriptions(&self) -> bool;
    /// True when a failed negotiation must close the link (v3), false when
    /// it is only logged (v1).
    fn failures_are_fatal(&self) -> bool;
    /// True when a client may send before the reply arrived (v1).
    fn sends_before_reply(&self) -> bool;
    /// Checks an inbound routed frame (v3: the header MAC rules).
    fn check_inbound(&self, frame: &F) -> Result<(), LinkError>;
    /// Prepares an outbound routed frame (v3: signs it).
    fn seal_outbound(&self, frame: &mut F) -> Result<(), LinkError>;
    /// The role of this end.
    fn role(&self) -> Role;
}

/// A wire message of one generation, as the forwarder sees it.
pub trait Frame: Clone + Debug + PartialEq + Send + Sync + 'static {
    /// Its generation's negotiation state.
    type Link: Negotiation<Self>;
    /// Which generation this is.
    const GENERATION: Generation;
    /// Validation every node applies (SLIM §0.4).
    fn validate(&self) -> Result<(), String>;
    fn kind(&self) -> Kind;
    /// The routing view of a Publish/Subscribe/Unsubscribe header.
    fn route(&self) -> Option<Route>;
    /// Records the incoming connection and clears the flags a node never
    /// passes on (`recv_from`, `forward_to`).
    fn stamp(&mut self, incoming: ConnId);
    /// A hop from another node: v3 decrements the TTL; false means the
    /// frame must be dropped (TTL expired).
    fn hop(&mut self) -> bool;
    /// Removes per-link data before handing a frame to a local app.
    fn strip_link_data(&mut self);
    /// The destination, readable, for errors.
    fn destination_display(&self) -> String;
    /// Session context of a Publish, for errors to local apps.
    fn session_context(&self) -> Option<SessionContext>;
    /// A Subscribe (or Unsubscribe) with this frame's source, destination
    /// and identity, as a node sends it on a link.
    fn subscription(&self, subscribe: bool, subscription_id: u64) -> Self;
    /// A bare SubscriptionAck.
    fn ack(subscription_id: u64, result: Result<(), String>) -> Self;
}

fn check_parts<N>(
    n: &Option<N>,
    what: &str,
    parts: impl Fn(&N) -> (bool, bool),
) -> Result<(), String> {
    match n {
        None => Err(format!("{what} missing")),
        Some(n) => match parts(n) {
            (false, _) => Err(format!("{what} has no encoded part")),
            (_, false) => Err(format!("{what} has no string part")),
            _ => Ok(()),
        },
    }
}

fn ack_result(result: Result<(), String>) -> (bool, String) {
    match result {
        Ok(()) => (true, String::new()),
        Err(e) => (false, e),
    }
}

// ---------------------------------------------------------------- v1 ----

fn key_v1(n: &Option<wire::Name>) -> NameKey {
    match n.as_ref().and_then(|n| n.name.as_ref()) {
        Some(e) => NameKey::from_v1([e.component_0, e.component_1, e.component_2, e.component_3]),
        None => NameKey::from_v1([0; 4]),
    }
}

fn header_v1(m: &wire::Message) -> Option<&wire::SlimHeader> {
    use wire::message::MessageType as T;
    match &m.message_type {
        Some(T::Publish(p)) => p.header.as_ref(),
        Some(T::Subscribe(s)) => s.header.as_ref(),
        Some(T::Unsubscribe(u)) => u.header.as_ref(),
        _ => None,
    }
}

fn header_v1_mut(m: &mut wire::Message) -> Option<&mut wire::SlimHeader> {
    use wire::message::MessageType as T;
    match &mut m.message_type {
        Some(T::Publish(p)) => p.header.as_mut(),
        Some(T::Subscribe(s)) => s.header.as_mut(),
        Some(T::Unsubscribe(u)) => u.header.as_mut(),
        _ => None,
    }
}

fn check_header_v1(h: &Option<wire::SlimHeader>) -> Result<(), String> {
    let h = h.as_ref().ok_or("header missing")?;
    let parts = |n: &wire::Name| (n.name.is_some(), n.str_name.is_some());
    check_parts(&h.source, "source", parts)?;
    check_parts(&h.destination, "destination", parts)
}

/// The methods both generations implement the same way: their schemas
/// agree on these fields (names and meaning), only the Rust types differ.
macro_rules! same_in_both_generations {
    ($w:ident, $check:ident, $header_mut:ident) => {
        fn validate(&self) -> Result<(), String> {
            use $w::message::MessageType as T;
            match &self.message_type {
                None => Err("message type not set".into()),
                Some(T::Publish(p)) => {
                    $check(&p.header)?;
                    if p.session.is_none() {
                        return Err("session header missing".into());
                    }
                    Ok(())
                }
                Some(T::Subscribe(s)) => $check(&s.header),
                Some(T::Unsubscribe(u)) => $check(&u.header),
                Some(T::Link(l)) if l.link_type.is_none() => Err("link type not set".into()),
                Some(T::Link(_)) | Some(T::SubscriptionAck(_)) => Ok(()),
            }
        }

        fn kind(&self) -> Kind {
            use $w::message::MessageType as T;
            match &self.message_type {
                None => Kind::Empty,
                Some(T::Publish(_)) => Kind::Publish,
                Some(T::Subscribe(s)) => Kind::Subscribe {
                    subscription_id: s.subscription_id,
                },
                Some(T::Unsubscribe(u)) => Kind::Unsubscribe {
                    subscription_id: u.subscription_id,
                },
                Some(T::Link(_)) => Kind::Link,
                Some(T::SubscriptionAck(a)) => Kind::SubscriptionAck(SubAck {
                    subscription_id: a.subscription_id,
                    success: a.success,
                    error: a.error.clone(),
                }),
            }
        }

        fn stamp(&mut self, incoming: ConnId) {
            if let Some(h) = $header_mut(self) {
                h.incoming_conn = Some(incoming);
                h.recv_from = None;
                h.forward_to = None;
            }
        }

        fn session_context(&self) -> Option<SessionContext> {
            match &self.message_type {
                Some($w::message::MessageType::Publish(p)) => {
                    p.session.as_ref().map(|s| SessionContext {
                        message_id: s.message_id,
                        session_id: s.session_id,
                        session_message_type: s.session_message_type,
                    })
                }
                _ => None,
            }
        }

        fn ack(subscription_id: u64, result: Result<(), String>) -> Self {
            let (success, error) = ack_result(result);
            $w::Message {
                metadata: Default::default(),
                message_type: Some($w::message::MessageType::SubscriptionAck(
                    $w::SubscriptionAck {
                        subscription_id,
                        success,
                        error,
                    },
                )),
            }
        }
    };
}

impl Frame for wire::Message {
    type Link = super::link::LinkState;
    const GENERATION: Generation = Generation::V1;

    same_in_both_generations!(wire, check_header_v1, header_v1_mut);

    fn route(&self) -> Option<Route> {
        let h = header_v1(self)?;
        Some(Route {
            source: key_v1(&h.source),
            destination: key_v1(&h.destination),
            fanout: h.fanout,
            recv_from: h.recv_from,
            forward_to: h.forward_to,
        })
    }

    fn hop(&mut self) -> bool {
        true
    }

    fn strip_link_data(&mut self) {}

    fn destination_display(&self) -> String {
        let Some(h) = header_v1(self) else {
            return String::new();
        };
        let k = key_v1(&h.destination);
        let id = k.v1_id().unwrap_or(u64::MAX);
        match h.destination.as_ref().and_then(|n| n.str_name.as_ref()) {
            Some(s) => format!(
                "{}/{}/{}/{id:x}",
                s.str_component_0, s.str_component_1, s.str_component_2
            ),
            None => format!(
                "{:x}/{:x}/{:x}/{id:x}",
                k.prefix[0], k.prefix[1], k.prefix[2]
            ),
        }
    }

    fn subscription(&self, subscribe: bool, subscription_id: u64) -> Self {
        use wire::message::MessageType as T;
        let h = header_v1(self);
        let header = Some(wire::SlimHeader {
            source: h.and_then(|h| h.source.clone()),
            destination: h.and_then(|h| h.destination.clone()),
            fanout: 1,
            identity: h.map(|h| h.identity.clone()).unwrap_or_default(),
            ..Default::default()
        });
        let message_type = if subscribe {
            T::Subscribe(wire::Subscribe {
                header,
                subscription_id,
            })
        } else {
            T::Unsubscribe(wire::Unsubscribe {
                header,
                subscription_id,
            })
        };
        wire::Message {
            metadata: Default::default(),
            message_type: Some(message_type),
        }
    }
}

// ---------------------------------------------------------------- v3 ----

/// The 128-bit id of a v3 name; an absent `name_id` is the NULL id.
pub fn id_v3(e: &wire3::EncodedName) -> u128 {
    match &e.name_id {
        Some(id) => (u128::from(id.id_0) << 64) | u128::from(id.id_1),
        None => crate::name::NULL_ID128,
    }
}

fn key_v3(n: &Option<wire3::Name>) -> NameKey {
    match n.as_ref().and_then(|n| n.name.as_ref()) {
        Some(e) => NameKey::new([e.component_0, e.component_1, e.component_2], id_v3(e)),
        None => NameKey::new([0; 3], crate::name::NULL_ID128),
    }
}

/// The header of a routed v3 message.
pub fn header_v3(m: &wire3::Message) -> Option<&wire3::SlimHeader> {
    use wire3::message::MessageType as T;
    match &m.message_type {
        Some(T::Publish(p)) => p.header.as_ref(),
        Some(T::Subscribe(s)) => s.header.as_ref(),
        Some(T::Unsubscribe(u)) => u.header.as_ref(),
        _ => None,
    }
}

/// The header of a routed v3 message, mutable.
pub fn header_v3_mut(m: &mut wire3::Message) -> Option<&mut wire3::SlimHeader> {
    use wire3::message::MessageType as T;
    match &mut m.message_type {
        Some(T::Publish(p)) => p.header.as_mut(),
        Some(T::Subscribe(s)) => s.header.as_mut(),
        Some(T::Unsubscribe(u)) => u.header.as_mut(),
        _ => None,
    }
}

fn check_header_v3(h: &Option<wire3::SlimHeader>) -> Result<(), String> {
    let h = h.as_ref().ok_or("header missing")?;
    let parts = |n: &wire3::Name| (n.name.is_some(), n.str_name.is_some());
    check_parts(&h.source, "source", parts)?;
    check_parts(&h.destination, "destination", parts)
}

impl Frame for wire3::Message {
    type Link = super::link3::LinkState3;
    const GENERATION: Generation = Generation::V3;

    same_in_both_generations!(wire3, check_header_v3, header_v3_mut);

    fn route(&self) -> Option<Route> {
        let h = header_v3(self)?;
        Some(Route {
            source: key_v3(&h.source),
            destination: key_v3(&h.destination),
            fanout: h.fanout,
            recv_from: h.recv_from,
            forward_to: h.forward_to,
        })
    }

    fn hop(&mut self) -> bool {
        match header_v3_mut(self) {
            Some(h) => {
                h.ttl = h.ttl.saturating_sub(1);
                h.ttl > 0
            }
            None => true,
        }
    }

    fn strip_link_data(&mut self) {
        if let Some(h) = header_v3_mut(self) {
            h.header_mac = None;
        }
    }

    fn destination_display(&self) -> String {
        let Some(h) = header_v3(self) else {
            return String::new();
        };
        let k = key_v3(&h.destination);
        let id = if k.is_null() {
            "NULL_COMPONENT".to_string()
        } else {
            uuid::Uuid::from_u128(k.id).hyphenated().to_string()
        };
        match h.destination.as_ref().and_then(|n| n.str_name.as_ref()) {
            Some(s) => format!(
                "{}/{}/{}/{id}",
                s.str_component_0, s.str_component_1, s.str_component_2
            ),
            None => format!("{:x}/{:x}/{:x}/{id}", k.prefix[0], k.prefix[1], k.prefix[2]),
        }
    }

    fn subscription(&self, subscribe: bool, subscription_id: u64) -> Self {
        use wire3::message::MessageType as T;
        let h = header_v3(self);
        let header = Some(wire3::SlimHeader {
            source: h.and_then(|h| h.source.clone()),
            destination: h.and_then(|h| h.destination.clone()),
            fanout: 1,
            identity: h.map(|h| h.identity.clone()).unwrap_or_default(),
            version: wire3::SLIM_VERSION.to_string(),
            ttl: wire3::DEFAULT_TTL,
            ..Default::default()
        });
        let message_type = if subscribe {
            T::Subscribe(wire3::Subscribe {
                header,
                subscription_id,
            })
        } else {
            T::Unsubscribe(wire3::Unsubscribe {
                header,
                subscription_id,
            })
        };
        wire3::Message {
            metadata: Default::default(),
            message_type: Some(message_type),
        }
    }
}
