//! Reading and building the `Publish` messages a session exchanges.
//!
//! [`Inbound`] is a received Publish checked for shape (header, names,
//! session header, known enums); building helpers produce outbound Publish
//! messages with every field SLIM v1.3 expects (both name parts, explicit
//! fanout, no `error` flag unless it means "lost"). This module never decides
//! what to send, never verifies identity and never touches time.

use std::collections::HashMap;

use crate::Name;
use crate::wire::{
    self, ApplicationPayload, CommandPayload, Content, Publish, SessionHeader, SessionMessageType,
    SessionType, SlimHeader, command_payload::CommandPayloadType, content::ContentType,
    message::MessageType,
};

use super::DropReason;

/// Largest id of the sequenced MSG space (`u32::MAX / 2`); the next id is 0.
pub const MAX_PUBLISH_ID: u32 = 2_147_483_647;
/// Fanout SLIM uses for group (channel) sends; any value but 1 means "all".
pub const GROUP_FANOUT: u32 = 256;
/// Metadata flag value used by every session-layer key.
pub const TRUE: &str = "TRUE";

/// Session-layer metadata keys (SLIM v1.3 §d.9, plus one of ours).
pub mod keys {
    /// MSG / MSG_ACK: direct, unsequenced delivery to one member.
    pub const PUBLISH_TO: &str = "PUBLISH_TO";
    /// LEAVE_REQUEST participant → moderator: graceful leave.
    pub const LEAVING_SESSION: &str = "LEAVING_SESSION";
    /// JOIN_REQUEST from a control plane: the receiver becomes moderator.
    pub const IS_MODERATOR: &str = "IS_MODERATOR";
    /// LEAVE_REQUEST to the moderator: close the whole group.
    pub const DELETE_GROUP: &str = "DELETE_GROUP";
    /// Ours, not SLIM's: on an RTX_REPLY, "this sequenced MSG was not
    /// addressed to you (a unicast to another member, or sent before you
    /// joined); keep your order but do not deliver it". SLIM peers ignore
    /// unknown keys and deliver it, which is what a v1.3 sender's
    /// re-send-to-everyone would have made them do anyway.
    pub const NOT_ADDRESSED: &str = "NOT_ADDRESSED";
    /// Ours, with [`NOT_ADDRESSED`]: the message was a unicast to another
    /// member, so the requester's stream goes on below it (without it,
    /// "not addressed" is read as "sent before you joined": your stream
    /// starts after it). Older peers of ours ignore it and read the old way.
    pub const UNICAST_TO_OTHER: &str = "UNICAST_TO_OTHER";
    /// Ours, never on the wire: on an outbound PING, this member's MLS
    /// epoch, for the SLIM v3 edge's HEARTBEAT (which carries it; v3
    /// members that see a higher epoch than theirs ask to rejoin).
    pub const MLS_EPOCH: &str = "slim-mls-epoch";
}

/// A received Publish whose shape is valid for the session layer.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub source: Name,
    pub destination: Name,
    pub fanout: u32,
    pub identity: String,
    pub incoming_conn: Option<u64>,
    pub error: Option<bool>,
    pub session_type: SessionType,
    pub kind: SessionMessageType,
    pub session_id: u32,
    pub message_id: u32,
    pub content: Option<Content>,
    pub metadata: HashMap<String, String>,
    /// The sender's subject, once the session verified its identity token.
    pub subject: Option<String>,
}

/// The session id and message type of a Publish, without taking it apart.
pub fn peek(msg: &wire::Message) -> Option<(u32, i32)> {
    match &msg.message_type {
        Some(MessageType::Publish(p)) => p
            .session
            .as_ref()
            .map(|s| (s.session_id, s.session_message_type)),
        _ => None,
    }
}

impl Inbound {
    /// Takes a received message apart; anything malformed is a [`DropReason`].
    pub fn parse(msg: wire::Message) -> Result<Self, DropReason> {
        let metadata = msg.metadata;
        let Some(MessageType::Publish(Publish {
            header,
            session,
            msg: content,
        })) = msg.message_type
        else {
            return Err(DropReason::Malformed);
        };
        let header = header.ok_or(DropReason::Malformed)?;
        let session = session.ok_or(DropReason::Malformed)?;
        let source = header
            .source
            .and_then(|n| Name::try_from(n).ok())
            .ok_or(DropReason::Malformed)?;
        let destination = header
            .destination
            .and_then(|n| Name::try_from(n).ok())
            .ok_or(DropReason::Malformed)?;
        let session_type =
            SessionType::try_from(session.session_type).map_err(|_| DropReason::Malformed)?;
        let kind = SessionMessageType::try_from(session.session_message_type)
            .map_err(|_| DropReason::Malformed)?;
        Ok(Self {
            source,
            destination,
            fanout: header.fanout,
            identity: header.identity,
            incoming_conn: header.incoming_conn,
            error: header.error,
            session_type,
            kind,
            session_id: session.session_id,
            message_id: session.message_id,
            content,
            metadata,
            subject: None,
        })
    }

    /// The application payload, if the content is one.
    pub fn app_payload(&self) -> Option<&ApplicationPayload> {
        match self.content.as_ref()?.content_type.as_ref()? {
            ContentType::AppPayload(p) => Some(p),
            ContentType::CommandPayload(_) => None,
        }
    }

    /// The command payload, if the content is one.
    pub fn command(&self) -> Option<&CommandPayloadType> {
        match self.content.as_ref()?.content_type.as_ref()? {
            ContentType::CommandPayload(c) => c.command_payload_type.as_ref(),
            ContentType::AppPayload(_) => None,
        }
    }

    /// True when metadata `key` is present with value `TRUE`.
    pub fn flag(&self, key: &str) -> bool {
        self.metadata.get(key).is_some_and(|v| v == TRUE)
    }
}

/// Everything needed to build one outbound Publish.
pub struct Out<'a> {
    pub source: &'a Name,
    pub destination: &'a Name,
    pub fanout: u32,
    pub session_type: SessionType,
    pub kind: SessionMessageType,
    pub session_id: u32,
    pub message_id: u32,
    pub content: Content,
    pub metadata: HashMap<String, String>,
}

impl Out<'_> {
    /// The wire message, without identity (the session stamps a fresh token
    /// on every send).
    pub fn build(self) -> wire::Message {
        wire::Message {
            metadata: self.metadata,
            message_type: Some(MessageType::Publish(Publish {
                header: Some(SlimHeader {
                    source: Some(self.source.to_wire()),
                    destination: Some(self.destination.to_wire()),
                    fanout: self.fanout,
                    identity: String::new(),
                    recv_from: None,
                    forward_to: None,
                    incoming_conn: None,
                    error: None,
                }),
                session: Some(SessionHeader {
                    session_type: self.session_type as i32,
                    session_message_type: self.kind as i32,
                    session_id: self.session_id,
                    message_id: self.message_id,
                }),
                msg: Some(self.content),
            })),
        }
    }
}

/// An application payload content.
pub fn app_content(payload_type: &str, blob: Vec<u8>) -> Content {
    Content {
        content_type: Some(ContentType::AppPayload(ApplicationPayload {
            payload_type: payload_type.to_string(),
            blob,
        })),
    }
}

/// A command payload content.
pub fn command_content(c: CommandPayloadType) -> Content {
    Content {
        content_type: Some(ContentType::CommandPayload(CommandPayload {
            command_payload_type: Some(c),
        })),
    }
}

fn header_mut(msg: &mut wire::Message) -> Option<&mut SlimHeader> {
    match &mut msg.message_type {
        Some(MessageType::Publish(p)) => p.header.as_mut(),
        _ => None,
    }
}

/// Sets `forward_to` (the reply path one hop back), or clears it.
pub fn set_forward_to(msg: &mut wire::Message, conn: Option<u64>) {
    if let Some(h) = header_mut(msg) {
        h.forward_to = conn;
    }
}

/// Marks a message "no longer available" (only ever `Some(true)`: SLIM
/// tests the flag for presence, §h.13).
pub fn set_lost(msg: &mut wire::Message) {
    if let Some(h) = header_mut(msg) {
        h.error = Some(true);
    }
}

/// True when the frame is addressed to one instance (a specific id), as a
/// unicast to a member is; a group broadcast goes to its channel (no id).
pub fn is_addressed_to_one(msg: &wire::Message) -> bool {
    match &msg.message_type {
        Some(MessageType::Publish(p)) => p
            .header
            .as_ref()
            .and_then(|h| h.destination.as_ref())
            .and_then(|n| Name::from_wire(n).ok())
            .is_some_and(|n| !n.has_null_id()),
        _ => false,
    }
}

/// Rewrites the destination.
pub fn set_destination(msg: &mut wire::Message, dst: &Name) {
    if let Some(h) = header_mut(msg) {
        h.destination = Some(dst.to_wire());
    }
}

/// True when the frame already carries an identity token.
pub fn has_identity(msg: &wire::Message) -> bool {
    match &msg.message_type {
        Some(wire::message::MessageType::Publish(p)) => {
            p.header.as_ref().is_some_and(|h| !h.identity.is_empty())
        }
        _ => false,
    }
}

/// Stamps the identity token.
pub fn set_identity(msg: &mut wire::Message, token: String) {
    if let Some(h) = header_mut(msg) {
        h.identity = token;
    }
}

/// Changes the session message type.
pub fn set_kind(msg: &mut wire::Message, kind: SessionMessageType) {
    if let Some(MessageType::Publish(p)) = &mut msg.message_type
        && let Some(s) = p.session.as_mut()
    {
        s.session_message_type = kind as i32;
    }
}

/// Removes the content (an RTX_REPLY saying "lost" carries an empty payload).
pub fn set_content(msg: &mut wire::Message, content: Content) {
    if let Some(MessageType::Publish(p)) = &mut msg.message_type {
        p.msg = Some(content);
    }
}
