//! Link negotiation state of one remote connection (SLIM §a.1): the client
//! sends a UUID-v4 `link_id` with its version, the server answers once per
//! connection echoing the id, and each side remembers the peer's version.
//!
//! Synchronous and I/O-free: the forwarder feeds it the payloads and sends
//! what it returns. It must not touch subscriptions.

use crate::wire;

/// Which end of the gRPC stream this node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We opened the stream (we send requests, accept replies).
    Client,
    /// The peer opened the stream (we accept requests, send replies).
    Server,
}

/// Why a negotiation message was ignored (logged by the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("link reply received on an incoming connection")]
    ReplyOnServerSide,
    #[error("link request received on an outgoing connection")]
    RequestOnClientSide,
    #[error("peer version `{0}` is not strict semver")]
    BadVersion(String),
    #[error("link request replayed on this connection")]
    Replayed,
    #[error("link id `{0}` is not a UUID v4")]
    BadLinkId(String),
    #[error("link reply does not match the link id we sent")]
    WrongLinkId,
    #[error("link reply already accepted")]
    DuplicateReply,
    #[error("not a link negotiation message")]
    NotNegotiation,
    #[error("link public key length is invalid ({0} bytes, expected 32)")]
    BadPublicKey(usize),
    #[error("post-quantum (ML-KEM) link negotiation is not supported")]
    PqcUnsupported,
    #[error("SLIM header integrity tag missing")]
    MissingTag,
    #[error("SLIM header integrity verification failed")]
    BadTag,
    #[error("header MAC required but the link has no MAC key")]
    MacRequired,
    #[error("tagged message before the link MAC key was derived")]
    AwaitingNegotiation,
}

/// The negotiation state of one connection.
#[derive(Debug, Clone)]
pub struct LinkState {
    role: Role,
    sent_link_id: Option<String>,
    negotiated: bool,
    peer_version: Option<semver::Version>,
}

/// Parses a version the way SLIM does: strict semver, no `v` prefix.
pub fn parse_version(s: &str) -> Result<semver::Version, LinkError> {
    semver::Version::parse(s).map_err(|_| LinkError::BadVersion(s.to_string()))
}

fn is_uuid_v4(s: &str) -> bool {
    uuid::Uuid::parse_str(s)
        .map(|u| u.get_version_num() == 4)
        .unwrap_or(false)
}

impl LinkState {
    pub fn new(role: Role) -> Self {
        Self {
            role,
            sent_link_id: None,
            negotiated: false,
            peer_version: None,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The peer's version once negotiation succeeded.
    pub fn peer_version(&self) -> Option<&semver::Version> {
        self.peer_version.as_ref()
    }

    /// True when the peer (≥ 1.2.0) answers subscriptions with acks.
    pub fn peer_acks_subscriptions(&self) -> bool {
        self.peer_version
            .as_ref()
            .is_some_and(|v| *v >= semver::Version::new(1, 2, 0))
    }

    /// Client side: starts (or restarts, after a reconnect) negotiation and
    /// returns the request to send first on the stream.
    pub fn request(&mut self, link_id: String) -> wire::Message {
        self.sent_link_id = Some(link_id.clone());
        self.negotiated = false;
        self.peer_version = None;
        link_message(link_id, false)
    }

    /// Handles a received negotiation payload; returns the reply to send, if
    /// any.
    pub fn on_payload(
        &mut self,
        p: &wire::LinkNegotiationPayload,
    ) -> Result<Option<wire::Message>, LinkError> {
        match (self.role, p.is_reply) {
            (Role::Server, true) => return Err(LinkError::ReplyOnServerSide),
            (Role::Client, false) => return Err(LinkError::RequestOnClientSide),
            _ => {}
        }
        let version = parse_version(&p.slim_version)?;
        match self.role {
            Role::Server => {
                if self.negotiated {
                    return Err(LinkError::Replayed);
                }
                if !is_uuid_v4(&p.link_id) {
                    return Err(LinkError::BadLinkId(p.link_id.clone()));
                }
                self.negotiated = true;
                self.peer_version = Some(version);
                Ok(Some(link_message(p.link_id.clone(), true)))
            }
            Role::Client => {
                if self.sent_link_id.as_deref() != Some(p.link_id.as_str()) {
                    return Err(LinkError::WrongLinkId);
                }
                if self.negotiated {
                    return Err(LinkError::DuplicateReply);
                }
                self.negotiated = true;
                self.peer_version = Some(version);
                Ok(None)
            }
        }
    }
}

impl super::frame::Negotiation<wire::Message> for LinkState {
    fn new(role: Role, _policy: super::frame::LinkPolicy, _secret: [u8; 32]) -> Self {
        LinkState::new(role)
    }

    fn request(&mut self, link_id: String) -> wire::Message {
        LinkState::request(self, link_id)
    }

    fn on_frame(&mut self, frame: &wire::Message) -> Result<Option<wire::Message>, LinkError> {
        match &frame.message_type {
            Some(wire::message::MessageType::Link(wire::Link {
                link_type: Some(wire::link::LinkType::LinkNegotiation(p)),
            })) => self.on_payload(p),
            _ => Err(LinkError::NotNegotiation),
        }
    }

    fn is_negotiated(&self) -> bool {
        self.negotiated
    }

    fn peer_version(&self) -> Option<&semver::Version> {
        LinkState::peer_version(self)
    }

    fn peer_acks_subscriptions(&self) -> bool {
        LinkState::peer_acks_subscriptions(self)
    }

    fn failures_are_fatal(&self) -> bool {
        false
    }

    fn sends_before_reply(&self) -> bool {
        true
    }

    fn check_inbound(&self, _frame: &wire::Message) -> Result<(), LinkError> {
        Ok(())
    }

    fn seal_outbound(&self, _frame: &mut wire::Message) -> Result<(), LinkError> {
        Ok(())
    }

    fn role(&self) -> Role {
        self.role
    }
}

/// A bare negotiation message (no header, empty metadata).
pub fn link_message(link_id: String, is_reply: bool) -> wire::Message {
    wire::Message {
        metadata: Default::default(),
        message_type: Some(wire::message::MessageType::Link(wire::Link {
            link_type: Some(wire::link::LinkType::LinkNegotiation(
                wire::LinkNegotiationPayload {
                    link_id,
                    slim_version: wire::SLIM_VERSION.to_string(),
                    is_reply,
                },
            )),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(link_id: &str, version: &str, is_reply: bool) -> wire::LinkNegotiationPayload {
        wire::LinkNegotiationPayload {
            link_id: link_id.into(),
            slim_version: version.into(),
            is_reply,
        }
    }

    fn reply_payload(m: &wire::Message) -> wire::LinkNegotiationPayload {
        match &m.message_type {
            Some(wire::message::MessageType::Link(wire::Link {
                link_type: Some(wire::link::LinkType::LinkNegotiation(p)),
            })) => p.clone(),
            other => panic!("not a link message: {other:?}"),
        }
    }

    #[test]
    fn server_answers_a_valid_request_echoing_the_link_id_with_its_version() {
        let id = uuid::Uuid::new_v4().to_string();
        let mut s = LinkState::new(Role::Server);
        let reply = s
            .on_payload(&payload(&id, "1.3.0", false))
            .unwrap()
            .unwrap();
        let p = reply_payload(&reply);
        assert_eq!(p.link_id, id);
        assert_eq!(p.slim_version, "1.3.0");
        assert!(p.is_reply);
        assert!(s.peer_acks_subscriptions());
    }

    #[test]
    fn server_rejects_a_replayed_request_on_the_same_connection() {
        let id = uuid::Uuid::new_v4().to_string();
        let mut s = LinkState::new(Role::Server);
        s.on_payload(&payload(&id, "1.3.0", false)).unwrap();
        assert_eq!(
            s.on_payload(&payload(&id, "1.3.0", false)),
            Err(LinkError::Replayed)
        );
        let other = uuid::Uuid::new_v4().to_string();
        assert_eq!(
            s.on_payload(&payload(&other, "1.3.0", false)),
            Err(LinkError::Replayed)
        );
    }

    #[test]
    fn server_rejects_replies_and_client_rejects_requests() {
        let id = uuid::Uuid::new_v4().to_string();
        let mut s = LinkState::new(Role::Server);
        assert_eq!(
            s.on_payload(&payload(&id, "1.3.0", true)),
            Err(LinkError::ReplyOnServerSide)
        );
        let mut c = LinkState::new(Role::Client);
        c.request(id.clone());
        assert_eq!(
            c.on_payload(&payload(&id, "1.3.0", false)),
            Err(LinkError::RequestOnClientSide)
        );
        assert!(c.peer_version().is_none());
    }

    #[test]
    fn server_rejects_a_link_id_that_is_not_uuid_v4() {
        let mut s = LinkState::new(Role::Server);
        assert!(matches!(
            s.on_payload(&payload("not-a-uuid", "1.3.0", false)),
            Err(LinkError::BadLinkId(_))
        ));
        // A v1-shaped uuid is rejected too.
        let v1 = "c232ab00-9414-11ec-b3c8-9f6bdeced846";
        assert!(matches!(
            s.on_payload(&payload(v1, "1.3.0", false)),
            Err(LinkError::BadLinkId(_))
        ));
        // The failed attempts did not consume the one negotiation.
        let id = uuid::Uuid::new_v4().to_string();
        assert!(s.on_payload(&payload(&id, "1.3.0", false)).is_ok());
    }

    #[test]
    fn versions_must_be_strict_semver() {
        assert!(parse_version("1.3.0").is_ok());
        assert!(parse_version("1.3.0-rc.1").is_ok());
        assert!(parse_version("v1.3.0").is_err());
        assert!(parse_version("1.3").is_err());
        let id = uuid::Uuid::new_v4().to_string();
        let mut s = LinkState::new(Role::Server);
        assert!(matches!(
            s.on_payload(&payload(&id, "v1.3.0", false)),
            Err(LinkError::BadVersion(_))
        ));
    }

    #[test]
    fn client_accepts_one_reply_with_its_own_link_id() {
        let id = uuid::Uuid::new_v4().to_string();
        let mut c = LinkState::new(Role::Client);
        let req = c.request(id.clone());
        assert!(!reply_payload(&req).is_reply);
        let other = uuid::Uuid::new_v4().to_string();
        assert_eq!(
            c.on_payload(&payload(&other, "1.3.0", true)),
            Err(LinkError::WrongLinkId)
        );
        assert_eq!(c.on_payload(&payload(&id, "1.1.0", true)), Ok(None));
        assert!(!c.peer_acks_subscriptions());
        assert_eq!(
            c.on_payload(&payload(&id, "1.3.0", true)),
            Err(LinkError::DuplicateReply)
        );
    }
}
