//! The SLIM v3 edge of an app: translates the frames our session layer
//! speaks (the v1 schema, `crate::wire`) to and from the v3 wire
//! (`crate::wire3`), so one session core serves both generations.
//!
//! Per frame it maps:
//! * names: our app's 64-bit instance id to its v3 id (XXH3-128 of its
//!   identity's `sub`), and every 128-bit peer id to a 64-bit stand-in it
//!   remembers, so replies go back to the full 128-bit name;
//! * the header (v3 `version`, `ttl`), the session message types and
//!   command payloads (GROUP_ADD/REMOVE <-> GROUP_UPDATE, WELCOME with
//!   `Participant`s, JOIN_REQUEST's `mls_settings`, JOIN_REPLY's
//!   `participant`);
//! * identity: every outbound frame carries a fresh token whose `pubkey`
//!   claim is this edge's Ed25519 key, and every command frame is signed
//!   (`e2e_header_sig` over the HeaderIntegrityAad, `slim-payload-sig` over
//!   payload and metadata), as v3 peers require; inbound signatures that are
//!   present must verify;
//! * liveness: v1 PING rounds and echoes become one-way v3 HEARTBEATs, and
//!   a peer's HEARTBEAT (or any frame) answers our PING rounds.
//!
//! * presence and rejoin: UPDATE_PARTICIPANT_STATE, REJOIN_REQUEST,
//!   REJOIN_REPLY and GROUP_UPDATE{REJOIN} to and from the internal types
//!   the v1 schema gained for them (never sent on the v1 wire); a
//!   HEARTBEAT's epoch is noted for the session under `slim-mls-epoch`.
//!
//! Frames it cannot translate are refused with a [`CodecError`].
//! Synchronous and I/O-free; time comes in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, Verifier as _};
use prost::Message as _;

use crate::identity::{IdentityError, IdentityProvider, IdentityVerifier, SharedSecret};
use crate::name::{NULL_ID, NULL_ID128, app_id_v3};
use crate::wire::{self, command_payload::CommandPayloadType as C1};
use crate::wire3::{self, command_payload::CommandPayloadType as C3};

/// Metadata key of the payload signature of command messages.
pub const PAYLOAD_SIG_KEY: &str = "slim-payload-sig";
/// Metadata keys the payload signature leaves out.
const UNSIGNED_METADATA: [&str; 5] = [
    "traceparent",
    "tracestate",
    "baggage",
    PAYLOAD_SIG_KEY,
    "slim-peer-subject",
];
/// A peer heard from within this long answers our PING rounds.
const ALIVE_WINDOW: Duration = Duration::from_secs(30);

/// Why a frame was not translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("v3 message type {0} is not supported yet")]
    Unsupported(i32),
    #[error("frame has no header or session header")]
    Incomplete,
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
    #[error("control message signature does not verify")]
    BadSignature,
    #[error("control message signature key is malformed")]
    BadKey,
}

impl CodecError {
    /// The frame was refused for what it claims (signature, key, identity),
    /// not for a shape this edge cannot translate.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            CodecError::Identity(_) | CodecError::BadSignature | CodecError::BadKey
        )
    }
}

/// The session id of a v3 frame, if it is a session message.
pub fn session_id(m: &wire3::Message) -> Option<u32> {
    match &m.message_type {
        Some(wire3::message::MessageType::Publish(p)) => p.session.as_ref().map(|s| s.session_id),
        _ => None,
    }
}

/// What an outbound frame became.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    /// Frames for the wire.
    pub wire: Vec<wire3::Message>,
    /// Frames for our own session layer (a PING echo for a live peer).
    pub local: Vec<wire::Message>,
}

/// A prefix (three hashed components) and an instance id.
type Key<I> = ([u64; 3], I);

/// Our ids and every peer's, shared with the AAD hook of the sessions.
#[derive(Debug, Default)]
struct Ids {
    own_v1: u64,
    own_v3: u128,
    /// 64-bit stand-in -> 128-bit id of every peer seen.
    peers: HashMap<u64, u128>,
    /// Group channels, by the name our session layer uses: their v3 data
    /// and control ids (the v1 wire has one channel, v3 two).
    chans: HashMap<Key<u64>, (u128, u128)>,
    /// The data or control id of a channel -> the id our layer uses.
    chan_in: HashMap<Key<u128>, u64>,
}

fn prefix_of(e: &wire::EncodedName) -> [u64; 3] {
    [e.component_0, e.component_1, e.component_2]
}

impl Ids {
    /// The id our session layer uses for v3 id `id`; a peer's 128-bit id is
    /// remembered behind its 64-bit stand-in.
    fn learn(&mut self, id: u128) -> u64 {
        if id == NULL_ID128 {
            NULL_ID
        } else if id == self.own_v3 {
            self.own_v1
        } else {
            let f = fold(id);
            self.peers.insert(f, id);
            f
        }
    }

    /// The v3 id of `n`, the control id for a channel's control traffic.
    fn out_name(&self, n: &wire::Name, control: bool) -> u128 {
        let e = n.name.unwrap_or_default();
        match self.chans.get(&(prefix_of(&e), e.component_3)) {
            Some((data, ctrl)) => {
                if control {
                    *ctrl
                } else {
                    *data
                }
            }
            None => self.out(e.component_3),
        }
    }

    fn out(&self, id: u64) -> u128 {
        if id == NULL_ID {
            NULL_ID128
        } else if id == self.own_v1 {
            self.own_v3
        } else {
            self.peers.get(&id).copied().unwrap_or(u128::from(id))
        }
    }
}

fn lock(ids: &Mutex<Ids>) -> MutexGuard<'_, Ids> {
    ids.lock().unwrap_or_else(|p| p.into_inner())
}

/// The translation state of one app.
pub struct Codec3 {
    identity: SharedSecret,
    signing: ed25519_dalek::SigningKey,
    /// Our ids and every peer's (shared with the sessions' AAD hook).
    ids: Arc<Mutex<Ids>>,
    /// Last frame from each (session, peer stand-in).
    heard: HashMap<(u32, u64), Instant>,
    /// PINGs we made up from heartbeats, by (session, message id): our
    /// echo to them is not sent.
    made_up: HashMap<(u32, u32), Instant>,
    next_ping_id: u32,
}

impl std::fmt::Debug for Codec3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids = lock(&self.ids);
        f.debug_struct("Codec3")
            .field("own_v1", &ids.own_v1)
            .field("own_v3", &format_args!("{:032x}", ids.own_v3))
            .finish_non_exhaustive()
    }
}

fn id_of(n: &wire::Name) -> u64 {
    n.name.map_or(NULL_ID, |e| e.component_3)
}

/// The v3 form of v1 name `n` with instance id `id`.
fn name_with(n: &wire::Name, id: u128) -> wire3::Name {
    let e = n.name.unwrap_or_default();
    wire3::Name {
        name: Some(wire3::EncodedName {
            component_0: e.component_0,
            component_1: e.component_1,
            component_2: e.component_2,
            name_id: Some(wire3::NameId {
                id_0: (id >> 64) as u64,
                id_1: id as u64,
            }),
        }),
        str_name: n.str_name.as_ref().map(|s| wire3::StringName {
            str_component_0: s.str_component_0.clone(),
            str_component_1: s.str_component_1.clone(),
            str_component_2: s.str_component_2.clone(),
        }),
    }
}

fn v1_type(t: i32) -> Option<wire::SessionMessageType> {
    wire::SessionMessageType::try_from(t).ok()
}

/// A peer's stand-in id: both halves folded, never NULL.
fn fold(id: u128) -> u64 {
    let f = (id >> 64) as u64 ^ id as u64;
    if f == NULL_ID { f ^ 1 } else { f }
}

impl Codec3 {
    /// The edge of an app with `identity` whose session layer uses instance
    /// id `own_v1`; `key` seeds its Ed25519 signing key.
    pub fn new(identity: &SharedSecret, own_v1: u64, key: [u8; 32]) -> Self {
        let signing = ed25519_dalek::SigningKey::from_bytes(&key);
        let identity = identity.with_public_key(signing.verifying_key().as_bytes());
        let own_v3 = app_id_v3(identity.id());
        Self {
            identity,
            signing,
            ids: Arc::new(Mutex::new(Ids {
                own_v1,
                own_v3,
                ..Ids::default()
            })),
            heard: HashMap::new(),
            made_up: HashMap::new(),
            next_ping_id: 1,
        }
    }

    /// This app's v3 instance id.
    pub fn own_v3_id(&self) -> u128 {
        lock(&self.ids).own_v3
    }

    #[cfg(test)]
    fn id_out(&self, id: u64) -> u128 {
        lock(&self.ids).out(id)
    }

    /// The hook that gives a session's outbound MSG the MLS authenticated
    /// data v3 peers check: the HeaderIntegrityAad of the frame as this
    /// codec will put it on the wire (same names, same identity token).
    pub fn aad_fn(&self) -> crate::session::AadFn {
        let ids = self.ids.clone();
        Arc::new(move |m: &wire::Message| {
            let Some(wire::message::MessageType::Publish(p)) = &m.message_type else {
                return Vec::new();
            };
            let h = p.header.clone().unwrap_or_default();
            let sh = p.session.unwrap_or_default();
            let ids = lock(&ids);
            let name =
                |n: &Option<wire::Name>| n.as_ref().map(|n| name_with(n, ids.out_name(n, false)));
            let kind = v1_type(sh.session_message_type).map(type_out);
            let payload_type = match &p.msg {
                Some(wire::Content {
                    content_type: Some(wire::content::ContentType::AppPayload(a)),
                }) => a.payload_type.clone(),
                _ => String::new(),
            };
            wire3::HeaderIntegrityAad {
                version: 1,
                source: name(&h.source),
                destination: name(&h.destination),
                identity: h.identity,
                session_type: sh.session_type,
                session_message_type: kind.map_or(sh.session_message_type, |k| k as i32),
                session_id: sh.session_id,
                message_id: sh.message_id,
                payload_type,
            }
            .encode_to_vec()
        })
    }

    fn id_in(&mut self, id: u128) -> u64 {
        lock(&self.ids).learn(id)
    }

    fn name_out(&self, n: &wire::Name) -> wire3::Name {
        name_with(n, lock(&self.ids).out_name(n, false))
    }

    /// The control channel of channel `n` (or `n` itself if not a channel).
    fn control_out(&self, n: &wire::Name) -> wire3::Name {
        name_with(n, lock(&self.ids).out_name(n, true))
    }

    fn is_channel(&self, n: &wire::Name) -> bool {
        let e = n.name.unwrap_or_default();
        lock(&self.ids)
            .chans
            .contains_key(&(prefix_of(&e), e.component_3))
    }

    /// Registers channel `n` of a group we moderate: its v3 data and
    /// control ids derive from our `sub` and its readable name, as 3.x
    /// invitees check.
    fn derive_channel(&self, n: &wire::Name) {
        let e = n.name.unwrap_or_default();
        let key = (prefix_of(&e), e.component_3);
        let mut ids = lock(&self.ids);
        if ids.chans.contains_key(&key) {
            return;
        }
        let s = n.str_name.clone().unwrap_or_default();
        let Some((data, ctrl)) = crate::name::channel_ids_v3(
            self.identity.id(),
            &s.str_component_0,
            &s.str_component_1,
            &s.str_component_2,
        ) else {
            return;
        };
        ids.chans.insert(key, (data, ctrl));
        ids.chan_in.insert((key.0, data), key.1);
        ids.chan_in.insert((key.0, ctrl), key.1);
    }

    /// Registers the channel a moderator invites us to: its data and
    /// control names both map to the channel's name with the NULL id.
    fn learn_channel(&mut self, data: &wire3::Name, control: &wire3::Name) {
        let (Some(d), Some(c)) = (data.name, control.name) else {
            return;
        };
        let prefix = [d.component_0, d.component_1, d.component_2];
        let (data_id, ctrl_id) = (
            crate::forwarder::frame::id_v3(&d),
            crate::forwarder::frame::id_v3(&c),
        );
        // Our session layer knows a group channel by its name with the NULL
        // id, as v1 channels are named (and treats MSGs to it as for all).
        let ours = NULL_ID;
        let mut ids = lock(&self.ids);
        ids.chans.insert((prefix, ours), (data_id, ctrl_id));
        ids.chan_in.insert((prefix, data_id), ours);
        ids.chan_in.insert((prefix, ctrl_id), ours);
    }

    fn name_in(&mut self, n: &wire3::Name) -> wire::Name {
        let e = n.name.unwrap_or_default();
        let id128 = crate::forwarder::frame::id_v3(&e);
        let chan = lock(&self.ids)
            .chan_in
            .get(&([e.component_0, e.component_1, e.component_2], id128))
            .copied();
        let id = match chan {
            Some(id) => id,
            None => self.id_in(id128),
        };
        wire::Name {
            name: Some(wire::EncodedName {
                component_0: e.component_0,
                component_1: e.component_1,
                component_2: e.component_2,
                component_3: id,
            }),
            str_name: n.str_name.as_ref().map(|s| wire::StringName {
                str_component_0: s.str_component_0.clone(),
                str_component_1: s.str_component_1.clone(),
                str_component_2: s.str_component_2.clone(),
            }),
        }
    }

    fn names_out(&self, v: &[wire::Name]) -> Vec<wire3::Name> {
        v.iter().map(|n| self.name_out(n)).collect()
    }

    fn participant(&self, n: &wire::Name) -> wire3::Participant {
        wire3::Participant {
            name: Some(self.name_out(n)),
            settings: Some(wire3::ParticipantSettings {
                sends_data: true,
                receives_data: true,
            }),
            status: wire3::ParticipantState::Online as i32,
        }
    }

    /// The v3 header of `h`. Command frames get a fresh token carrying
    /// this edge's signing key (they are signed with it); other frames keep
    /// the session's token, which a MSG's MLS AAD covers.
    fn header_out(
        &self,
        h: &wire::SlimHeader,
        now: u64,
        fresh_token: bool,
    ) -> Result<wire3::SlimHeader, CodecError> {
        let identity = if fresh_token || h.identity.is_empty() {
            self.identity.token_at(now)?
        } else {
            h.identity.clone()
        };
        Ok(wire3::SlimHeader {
            source: h.source.as_ref().map(|n| self.name_out(n)),
            destination: h.destination.as_ref().map(|n| self.name_out(n)),
            identity,
            fanout: h.fanout,
            version: wire3::SLIM_VERSION.to_string(),
            ttl: wire3::DEFAULT_TTL,
            recv_from: h.recv_from,
            forward_to: h.forward_to,
            incoming_conn: h.incoming_conn,
            error: h.error,
            header_mac: None,
            e2e_header_sig: None,
        })
    }

    fn header_in(&mut self, h: &wire3::SlimHeader) -> wire::SlimHeader {
        wire::SlimHeader {
            source: h.source.as_ref().map(|n| self.name_in(n)),
            destination: h.destination.as_ref().map(|n| self.name_in(n)),
            fanout: h.fanout,
            identity: h.identity.clone(),
            recv_from: h.recv_from,
            forward_to: h.forward_to,
            incoming_conn: h.incoming_conn,
            error: h.error,
        }
    }

    fn mls_out(m: &Option<wire::MlsPayload>) -> Option<wire3::MlsPayload> {
        m.as_ref().map(|m| wire3::MlsPayload {
            commit_id: m.commit_id,
            mls_content: m.mls_content.clone(),
        })
    }

    fn mls_in(m: &Option<wire3::MlsPayload>) -> Option<wire::MlsPayload> {
        m.as_ref().map(|m| wire::MlsPayload {
            commit_id: m.commit_id,
            mls_content: m.mls_content.clone(),
        })
    }

    fn timer_out(t: &Option<wire::TimerSettings>) -> Option<wire3::TimerSettings> {
        t.as_ref().map(|t| wire3::TimerSettings {
            timeout: t.timeout,
            max_retries: t.max_retries,
        })
    }

    fn command_out(&self, c: &C1, source: &Option<wire::Name>) -> C3 {
        match c {
            C1::DiscoveryRequest(_) => C3::DiscoveryRequest(wire3::DiscoveryRequestPayload {}),
            C1::DiscoveryReply(_) => C3::DiscoveryReply(wire3::DiscoveryReplyPayload {}),
            C1::JoinRequest(j) => C3::JoinRequest(wire3::JoinRequestPayload {
                timer_settings: Self::timer_out(&j.timer_settings),
                channel: j.channel.as_ref().map(|n| {
                    self.derive_channel(n);
                    self.name_out(n)
                }),
                control: j.channel.as_ref().map(|n| self.control_out(n)),
                mls_settings: j.enable_mls.then_some(wire3::MlsSettings {
                    header_integrity_validation_percent: 0,
                }),
            }),
            C1::JoinReply(j) => C3::JoinReply(wire3::JoinReplyPayload {
                key_package: j.key_package.clone(),
                participant: source.as_ref().map(|n| self.participant(n)),
            }),
            C1::LeaveRequest(_) => C3::LeaveRequest(wire3::LeaveRequestPayload {}),
            C1::LeaveReply(_) => C3::LeaveReply(wire3::LeaveReplyPayload {}),
            C1::GroupAdd(a) => C3::GroupUpdate(wire3::GroupUpdatePayload {
                op: wire3::GroupUpdateOp::Add as i32,
                participant: a.new_participant.as_ref().map(|n| self.participant(n)),
                participants: a.participants.iter().map(|n| self.participant(n)).collect(),
                mls: Self::mls_out(&a.mls),
            }),
            C1::GroupRemove(r) => C3::GroupUpdate(wire3::GroupUpdatePayload {
                op: wire3::GroupUpdateOp::Remove as i32,
                participant: r.removed_participant.as_ref().map(|n| self.participant(n)),
                participants: r.participants.iter().map(|n| self.participant(n)).collect(),
                mls: Self::mls_out(&r.mls),
            }),
            C1::GroupWelcome(w) => C3::GroupWelcome(wire3::GroupWelcomePayload {
                participants: w.participants.iter().map(|n| self.participant(n)).collect(),
                mls: Self::mls_out(&w.mls),
            }),
            C1::GroupClose(c) => C3::GroupClose(wire3::GroupClosePayload {
                participants: self.names_out(&c.participants),
            }),
            C1::GroupProposal(p) => C3::GroupProposal(wire3::GroupProposalPayload {
                source: p.source.as_ref().map(|n| self.name_out(n)),
                mls_proposal: p.mls_proposal.clone(),
            }),
            C1::GroupAck(_) => C3::GroupAck(wire3::GroupAckPayload {}),
            C1::GroupNack(_) => C3::GroupNack(wire3::GroupNackPayload {}),
            // The epoch is filled in from the session's note (outbound()).
            C1::Ping(_) => C3::Heartbeat(wire3::HeartbeatPayload { epoch: u64::MAX }),
            C1::ParticipantState(p) => {
                C3::UpdateParticipantState(wire3::UpdateParticipantStatePayload {
                    participant: p.participant.as_ref().map(|n| self.name_out(n)),
                    new_state: if p.online {
                        wire3::ParticipantState::Online
                    } else {
                        wire3::ParticipantState::Offline
                    } as i32,
                    epoch: p.epoch,
                })
            }
            C1::RejoinRequest(r) => C3::RejoinRequest(wire3::RejoinRequestPayload {
                participant: r.participant.as_ref().map(|n| self.name_out(n)),
                key_package: r.key_package.clone(),
            }),
            C1::RejoinReply(r) => C3::RejoinReply(wire3::RejoinReplyPayload {
                commit_id: r.commit_id,
                mls_content: r.welcome.clone(),
            }),
            C1::GroupRejoin(a) => C3::GroupUpdate(wire3::GroupUpdatePayload {
                op: wire3::GroupUpdateOp::Rejoin as i32,
                participant: a.new_participant.as_ref().map(|n| self.participant(n)),
                participants: a.participants.iter().map(|n| self.participant(n)).collect(),
                mls: Self::mls_out(&a.mls),
            }),
        }
    }

    fn command_in(&mut self, c: &C3, dest: &Option<wire::Name>) -> Result<C1, CodecError> {
        let pname = |s: &mut Self, p: &Option<wire3::Participant>| {
            p.as_ref()
                .and_then(|p| p.name.as_ref())
                .map(|n| s.name_in(n))
        };
        Ok(match c {
            C3::DiscoveryRequest(_) => C1::DiscoveryRequest(wire::DiscoveryRequestPayload {
                destination: dest.clone(),
            }),
            C3::DiscoveryReply(_) => C1::DiscoveryReply(wire::DiscoveryReplyPayload {}),
            C3::JoinRequest(j) => C1::JoinRequest(wire::JoinRequestPayload {
                // (the channel was registered before the names were mapped)
                enable_mls: j.mls_settings.is_some(),
                timer_settings: j.timer_settings.as_ref().map(|t| wire::TimerSettings {
                    timeout: t.timeout,
                    max_retries: t.max_retries,
                }),
                channel: j.channel.as_ref().map(|n| self.name_in(n)),
            }),
            C3::JoinReply(j) => C1::JoinReply(wire::JoinReplyPayload {
                key_package: j.key_package.clone(),
            }),
            C3::LeaveRequest(_) => C1::LeaveRequest(wire::LeaveRequestPayload {
                destination: dest.clone(),
            }),
            C3::LeaveReply(_) => C1::LeaveReply(wire::LeaveReplyPayload {}),
            C3::GroupUpdate(u) => {
                let subject = pname(self, &u.participant);
                let participants = u
                    .participants
                    .iter()
                    .filter_map(|p| p.name.as_ref())
                    .map(|n| self.name_in(n))
                    .collect();
                match wire3::GroupUpdateOp::try_from(u.op) {
                    Ok(wire3::GroupUpdateOp::Add) => C1::GroupAdd(wire::GroupAddPayload {
                        new_participant: subject,
                        participants,
                        mls: Self::mls_in(&u.mls),
                    }),
                    Ok(wire3::GroupUpdateOp::Remove) => C1::GroupRemove(wire::GroupRemovePayload {
                        removed_participant: subject,
                        participants,
                        mls: Self::mls_in(&u.mls),
                    }),
                    Ok(wire3::GroupUpdateOp::Rejoin) => C1::GroupRejoin(wire::GroupAddPayload {
                        new_participant: subject,
                        participants,
                        mls: Self::mls_in(&u.mls),
                    }),
                    Err(_) => return Err(CodecError::Unsupported(u.op)),
                }
            }
            C3::GroupWelcome(w) => C1::GroupWelcome(wire::GroupWelcomePayload {
                participants: w
                    .participants
                    .iter()
                    .filter_map(|p| p.name.as_ref())
                    .map(|n| self.name_in(n))
                    .collect(),
                mls: Self::mls_in(&w.mls),
            }),
            C3::GroupClose(c) => C1::GroupClose(wire::GroupClosePayload {
                participants: c.participants.iter().map(|n| self.name_in(n)).collect(),
            }),
            C3::GroupProposal(p) => C1::GroupProposal(wire::GroupProposalPayload {
                source: p.source.as_ref().map(|n| self.name_in(n)),
                mls_proposal: p.mls_proposal.clone(),
            }),
            C3::GroupAck(_) => C1::GroupAck(wire::GroupAckPayload {}),
            C3::GroupNack(_) => C1::GroupNack(wire::GroupNackPayload {}),
            C3::Heartbeat(_) => C1::Ping(wire::PingPayload {}),
            C3::UpdateParticipantState(u) => C1::ParticipantState(wire::ParticipantStatePayload {
                participant: u.participant.as_ref().map(|n| self.name_in(n)),
                online: u.new_state == wire3::ParticipantState::Online as i32,
                epoch: u.epoch,
            }),
            C3::RejoinRequest(r) => C1::RejoinRequest(wire::RejoinRequestPayload {
                participant: r.participant.as_ref().map(|n| self.name_in(n)),
                key_package: r.key_package.clone(),
            }),
            C3::RejoinReply(r) => C1::RejoinReply(wire::RejoinReplyPayload {
                commit_id: r.commit_id,
                welcome: r.mls_content.clone(),
            }),
        })
    }

    fn content_out(&self, c: &wire::Content, source: &Option<wire::Name>) -> wire3::Content {
        wire3::Content {
            content_type: c.content_type.as_ref().map(|t| match t {
                wire::content::ContentType::AppPayload(a) => {
                    wire3::content::ContentType::AppPayload(wire3::ApplicationPayload {
                        payload_type: a.payload_type.clone(),
                        blob: a.blob.clone(),
                    })
                }
                wire::content::ContentType::CommandPayload(p) => {
                    wire3::content::ContentType::CommandPayload(wire3::CommandPayload {
                        command_payload_type: p
                            .command_payload_type
                            .as_ref()
                            .map(|c| self.command_out(c, source)),
                    })
                }
            }),
        }
    }

    fn content_in(
        &mut self,
        c: &wire3::Content,
        dest: &Option<wire::Name>,
    ) -> Result<wire::Content, CodecError> {
        let content_type = match &c.content_type {
            None => None,
            Some(wire3::content::ContentType::AppPayload(a)) => Some(
                wire::content::ContentType::AppPayload(wire::ApplicationPayload {
                    payload_type: a.payload_type.clone(),
                    blob: a.blob.clone(),
                }),
            ),
            Some(wire3::content::ContentType::CommandPayload(p)) => {
                let command_payload_type = match &p.command_payload_type {
                    None => None,
                    Some(c) => Some(self.command_in(c, dest)?),
                };
                Some(wire::content::ContentType::CommandPayload(
                    wire::CommandPayload {
                        command_payload_type,
                    },
                ))
            }
        };
        Ok(wire::Content { content_type })
    }

    /// Translates a frame our session layer sends. `now` is the wall clock
    /// (tokens), `at` the monotonic one (liveness).
    pub fn outbound(
        &mut self,
        m: wire::Message,
        now: u64,
        at: Instant,
    ) -> Result<Outbound, CodecError> {
        use wire::message::MessageType as T1;
        use wire3::message::MessageType as T3;
        let mut local = Vec::new();
        let message_type = match m.message_type {
            Some(T1::Subscribe(s)) => {
                let Some(h) = &s.header else {
                    return Err(CodecError::Incomplete);
                };
                return self.subscription_out(true, h, s.subscription_id, m.metadata, now);
            }
            Some(T1::Unsubscribe(u)) => {
                let Some(h) = &u.header else {
                    return Err(CodecError::Incomplete);
                };
                return self.subscription_out(false, h, u.subscription_id, m.metadata, now);
            }
            Some(T1::Publish(p)) => {
                let (Some(h), Some(sh)) = (&p.header, &p.session) else {
                    return Err(CodecError::Incomplete);
                };
                let kind = v1_type(sh.session_message_type);
                if kind == Some(wire::SessionMessageType::Ping) {
                    let made_up = self
                        .made_up
                        .remove(&(sh.session_id, sh.message_id))
                        .is_some();
                    if !made_up {
                        // A PING round of ours: a peer heard from lately
                        // counts as answering it.
                        let peer = h
                            .destination
                            .as_ref()
                            .and_then(|d| d.name.as_ref())
                            .map(|e| e.component_3);
                        let alive = peer.is_some_and(|p| {
                            self.heard
                                .get(&(sh.session_id, p))
                                .is_some_and(|t| at.duration_since(*t) < ALIVE_WINDOW)
                        });
                        if alive {
                            let mut echo = wire::Message {
                                metadata: m.metadata.clone(),
                                message_type: Some(T1::Publish(p.clone())),
                            };
                            swap_ends(&mut echo);
                            local.push(echo);
                        }
                    }
                }
                let session_message_type = match kind {
                    Some(k) => type_out(k),
                    None => return Err(CodecError::Unsupported(sh.session_message_type)),
                };
                // v3 sends membership, close and liveness traffic of a group
                // on its control channel, data on the data channel.
                let to_control = matches!(
                    session_message_type,
                    wire3::SessionMessageType::GroupUpdate
                        | wire3::SessionMessageType::GroupClose
                        | wire3::SessionMessageType::Heartbeat
                        | wire3::SessionMessageType::UpdateParticipantState
                ) && h.destination.as_ref().is_some_and(|d| self.is_channel(d));
                let mut header =
                    self.header_out(h, now, is_command(session_message_type as i32))?;
                if to_control && let Some(d) = &h.destination {
                    header.destination = Some(self.control_out(d));
                }
                Some(T3::Publish(wire3::Publish {
                    header: Some(header),
                    session: Some(wire3::SessionHeader {
                        session_type: sh.session_type,
                        session_message_type: session_message_type as i32,
                        session_id: sh.session_id,
                        message_id: sh.message_id,
                    }),
                    msg: p.msg.as_ref().map(|c| self.content_out(c, &h.source)),
                }))
            }
            Some(T1::SubscriptionAck(a)) => Some(T3::SubscriptionAck(wire3::SubscriptionAck {
                subscription_id: a.subscription_id,
                success: a.success,
                error: a.error,
            })),
            Some(T1::Link(_)) | None => None,
        };
        let mut metadata = m.metadata;
        // A HEARTBEAT carries the sender's MLS epoch (all bits set without
        // MLS): v3 members seeing a higher one than theirs ask to rejoin.
        let epoch = metadata
            .remove(crate::session::packet::keys::MLS_EPOCH)
            .and_then(|e| e.parse::<u64>().ok());
        let mut message_type = message_type;
        if let Some(T3::Publish(p)) = &mut message_type
            && let Some(wire3::Content {
                content_type: Some(wire3::content::ContentType::CommandPayload(c)),
            }) = &mut p.msg
            && let Some(C3::Heartbeat(hb)) = &mut c.command_payload_type
        {
            hb.epoch = epoch.unwrap_or(u64::MAX);
        }
        let mut out = wire3::Message {
            metadata,
            message_type,
        };
        self.sign(&mut out);
        Ok(Outbound {
            wire: vec![out],
            local,
        })
    }

    /// A (un)subscription. A group channel is two names on the v3 wire:
    /// both are (un)subscribed, the control one without an ack.
    fn subscription_out(
        &mut self,
        subscribe: bool,
        h: &wire::SlimHeader,
        subscription_id: u64,
        metadata: HashMap<String, String>,
        now: u64,
    ) -> Result<Outbound, CodecError> {
        use wire3::message::MessageType as T3;
        // Not a channel: our own name, or a route (recv_from without
        // forward_to). A channel held on a link has both flags.
        let route = h.recv_from.is_some() && h.forward_to.is_none();
        let channel = !route
            && h.destination
                .as_ref()
                .is_some_and(|d| id_of(d) != lock(&self.ids).own_v1);
        if channel && let Some(d) = &h.destination {
            self.derive_channel(d);
        }
        let header = self.header_out(h, now, false)?;
        let frame = |header: wire3::SlimHeader, id: u64| wire3::Message {
            metadata: metadata.clone(),
            message_type: Some(if subscribe {
                T3::Subscribe(wire3::Subscribe {
                    header: Some(header),
                    subscription_id: id,
                })
            } else {
                T3::Unsubscribe(wire3::Unsubscribe {
                    header: Some(header),
                    subscription_id: id,
                })
            }),
        };
        let mut wire = vec![frame(header.clone(), subscription_id)];
        if let Some(d) = &h.destination
            && channel
            && self.is_channel(d)
        {
            let mut control = header;
            control.destination = Some(self.control_out(d));
            wire.push(frame(control, 0));
        }
        Ok(Outbound {
            wire,
            local: Vec::new(),
        })
    }

    /// Signs a command message (header and payload), as v3 peers require.
    fn sign(&self, m: &mut wire3::Message) {
        let Some(wire3::message::MessageType::Publish(p)) = &m.message_type else {
            return;
        };
        let Some(sh) = &p.session else {
            return;
        };
        if !is_command(sh.session_message_type) {
            return;
        }
        let aad = header_aad(m);
        let header_sig = self.signing.sign(&aad).to_bytes().to_vec();
        let payload_sig = self.signing.sign(&payload_signing_input(m, &aad));
        m.metadata.insert(
            PAYLOAD_SIG_KEY.to_string(),
            STANDARD.encode(payload_sig.to_bytes()),
        );
        if let Some(wire3::message::MessageType::Publish(p)) = &mut m.message_type
            && let Some(h) = p.header.as_mut()
        {
            h.e2e_header_sig = Some(header_sig);
        }
    }

    /// Translates a frame from the wire for our session layer (`None`: a
    /// frame it has no use for, such as a Link).
    pub fn inbound(
        &mut self,
        m: wire3::Message,
        at: Instant,
    ) -> Result<Option<wire::Message>, CodecError> {
        use wire::message::MessageType as T1;
        use wire3::message::MessageType as T3;
        if let Some(T3::Publish(p)) = &m.message_type
            && let Some(sh) = &p.session
            && is_command(sh.session_message_type)
        {
            self.verify(&m)?;
        }
        // A group invite: its data and control channels map to one name.
        if let Some(T3::Publish(p)) = &m.message_type
            && let Some(wire3::Content {
                content_type: Some(wire3::content::ContentType::CommandPayload(c)),
            }) = &p.msg
            && let Some(C3::JoinRequest(j)) = &c.command_payload_type
            && let (Some(data), Some(control)) = (&j.channel, &j.control)
        {
            self.learn_channel(data, control);
        }
        let message_type = match &m.message_type {
            Some(T3::Subscribe(s)) => Some(T1::Subscribe(wire::Subscribe {
                header: s.header.as_ref().map(|h| self.header_in(h)),
                subscription_id: s.subscription_id,
            })),
            Some(T3::Unsubscribe(u)) => Some(T1::Unsubscribe(wire::Unsubscribe {
                header: u.header.as_ref().map(|h| self.header_in(h)),
                subscription_id: u.subscription_id,
            })),
            Some(T3::Publish(p)) => {
                let (Some(h), Some(sh)) = (&p.header, &p.session) else {
                    return Err(CodecError::Incomplete);
                };
                let header = self.header_in(h);
                let peer = header
                    .source
                    .as_ref()
                    .and_then(|n| n.name.as_ref())
                    .map(|e| e.component_3);
                if let Some(peer) = peer {
                    self.heard.insert((sh.session_id, peer), at);
                }
                let kind = wire3::SessionMessageType::try_from(sh.session_message_type)
                    .map_err(|_| CodecError::Unsupported(sh.session_message_type))?;
                let v1_kind = type_in(kind, p)?;
                let mut message_id = sh.message_id;
                if v1_kind == wire::SessionMessageType::Ping {
                    // One-way heartbeat: offered to the session layer as a
                    // PING (keeps a participant's watchdog fed); its echo
                    // is not sent back.
                    message_id = self.next_ping_id;
                    self.next_ping_id = self.next_ping_id.wrapping_add(1).max(1);
                    self.made_up
                        .retain(|_, t| at.duration_since(*t) < ALIVE_WINDOW);
                    self.made_up.insert((sh.session_id, message_id), at);
                }
                let msg = match &p.msg {
                    Some(c) => Some(self.content_in(c, &header.destination)?),
                    None => None,
                };
                Some(T1::Publish(wire::Publish {
                    header: Some(header),
                    session: Some(wire::SessionHeader {
                        session_type: sh.session_type,
                        session_message_type: v1_kind as i32,
                        session_id: sh.session_id,
                        message_id,
                    }),
                    msg,
                }))
            }
            Some(T3::SubscriptionAck(a)) => Some(T1::SubscriptionAck(wire::SubscriptionAck {
                subscription_id: a.subscription_id,
                success: a.success,
                error: a.error.clone(),
            })),
            Some(T3::Link(_)) | None => return Ok(None),
        };
        let mut metadata = m.metadata;
        metadata.remove(PAYLOAD_SIG_KEY);
        // The MLS epoch of a HEARTBEAT is noted for the session (a member
        // behind it asks to rejoin); never trusted from a sender's metadata.
        metadata.remove(crate::session::packet::keys::MLS_EPOCH);
        if let Some(epoch) = heartbeat_epoch(&m.message_type) {
            metadata.insert(
                crate::session::packet::keys::MLS_EPOCH.into(),
                epoch.to_string(),
            );
        }
        Ok(Some(wire::Message {
            metadata,
            message_type,
        }))
    }

    /// Checks the signatures a command message carries against its token's
    /// `pubkey` claim (Ed25519 or P-256). Absent signatures are accepted:
    /// the session layer decides what it requires.
    fn verify(&self, m: &wire3::Message) -> Result<(), CodecError> {
        let Some(h) = crate::forwarder::frame::header_v3(m) else {
            return Ok(());
        };
        let Some(sig) = &h.e2e_header_sig else {
            return Ok(());
        };
        let claims = self
            .identity
            .verify_at(&h.identity, crate::identity::unix_now())?;
        let Some(pubkey) = claims.pubkey else {
            return Err(CodecError::BadKey);
        };
        let pubkey = STANDARD.decode(pubkey).map_err(|_| CodecError::BadKey)?;
        let aad = header_aad(m);
        verify_sig(&aad, sig, &pubkey)?;
        if let Some(p) = m.metadata.get(PAYLOAD_SIG_KEY) {
            let psig = STANDARD.decode(p).map_err(|_| CodecError::BadSignature)?;
            verify_sig(&payload_signing_input(m, &aad), &psig, &pubkey)?;
        }
        Ok(())
    }
}

/// Verifies `sig` over `data`: Ed25519 for a 32-byte key, ECDSA P-256
/// (DER) for a 33- or 65-byte SEC1 key.
pub fn verify_sig(data: &[u8], sig: &[u8], pubkey: &[u8]) -> Result<(), CodecError> {
    match pubkey.len() {
        32 => {
            let key: [u8; 32] = pubkey.try_into().map_err(|_| CodecError::BadKey)?;
            let vk =
                ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| CodecError::BadKey)?;
            let sig: [u8; 64] = sig.try_into().map_err(|_| CodecError::BadSignature)?;
            vk.verify(data, &ed25519_dalek::Signature::from_bytes(&sig))
                .map_err(|_| CodecError::BadSignature)
        }
        33 | 65 => {
            use p256::ecdsa::signature::Verifier as _;
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(pubkey)
                .map_err(|_| CodecError::BadKey)?;
            let sig =
                p256::ecdsa::Signature::from_der(sig).map_err(|_| CodecError::BadSignature)?;
            vk.verify(data, &sig).map_err(|_| CodecError::BadSignature)
        }
        _ => Err(CodecError::BadKey),
    }
}

/// Turns our PING into the echo a live peer would send.
fn swap_ends(m: &mut wire::Message) {
    if let Some(wire::message::MessageType::Publish(p)) = &mut m.message_type
        && let Some(h) = p.header.as_mut()
    {
        std::mem::swap(&mut h.source, &mut h.destination);
    }
}

/// The MLS epoch a HEARTBEAT announces (`None` without MLS: all bits set).
fn heartbeat_epoch(m: &Option<wire3::message::MessageType>) -> Option<u64> {
    let Some(wire3::message::MessageType::Publish(p)) = m else {
        return None;
    };
    match &p.msg.as_ref()?.content_type {
        Some(wire3::content::ContentType::CommandPayload(wire3::CommandPayload {
            command_payload_type: Some(C3::Heartbeat(hb)),
        })) if hb.epoch != u64::MAX => Some(hb.epoch),
        _ => None,
    }
}

fn is_command(t: i32) -> bool {
    (5..=20).contains(&t)
}

fn type_out(k: wire::SessionMessageType) -> wire3::SessionMessageType {
    use wire::SessionMessageType as A;
    use wire3::SessionMessageType as B;
    match k {
        A::Unspecified => B::Unspecified,
        A::Msg => B::Msg,
        A::MsgAck => B::MsgAck,
        A::RtxRequest => B::RtxRequest,
        A::RtxReply => B::RtxReply,
        A::DiscoveryRequest => B::DiscoveryRequest,
        A::DiscoveryReply => B::DiscoveryReply,
        A::JoinRequest => B::JoinRequest,
        A::JoinReply => B::JoinReply,
        A::LeaveRequest => B::LeaveRequest,
        A::LeaveReply => B::LeaveReply,
        A::GroupAdd | A::GroupRemove => B::GroupUpdate,
        A::GroupWelcome => B::GroupWelcome,
        A::GroupClose => B::GroupClose,
        A::GroupProposal => B::GroupProposal,
        A::GroupAck => B::GroupAck,
        A::GroupNack => B::GroupNack,
        A::Ping => B::Heartbeat,
        A::ParticipantState => B::UpdateParticipantState,
        A::RejoinRequest => B::RejoinRequest,
        A::RejoinReply => B::RejoinReply,
        A::GroupRejoin => B::GroupUpdate,
    }
}

/// The v1 type of a v3 message (GROUP_UPDATE by its op).
fn type_in(
    k: wire3::SessionMessageType,
    p: &wire3::Publish,
) -> Result<wire::SessionMessageType, CodecError> {
    use wire::SessionMessageType as A;
    use wire3::SessionMessageType as B;
    Ok(match k {
        B::Unspecified => A::Unspecified,
        B::Msg => A::Msg,
        B::MsgAck => A::MsgAck,
        B::RtxRequest => A::RtxRequest,
        B::RtxReply => A::RtxReply,
        B::DiscoveryRequest => A::DiscoveryRequest,
        B::DiscoveryReply => A::DiscoveryReply,
        B::JoinRequest => A::JoinRequest,
        B::JoinReply => A::JoinReply,
        B::LeaveRequest => A::LeaveRequest,
        B::LeaveReply => A::LeaveReply,
        B::GroupUpdate => {
            let op = match &p.msg {
                Some(wire3::Content {
                    content_type: Some(wire3::content::ContentType::CommandPayload(c)),
                }) => match &c.command_payload_type {
                    Some(C3::GroupUpdate(u)) => u.op,
                    _ => -1,
                },
                _ => -1,
            };
            match wire3::GroupUpdateOp::try_from(op) {
                Ok(wire3::GroupUpdateOp::Add) => A::GroupAdd,
                Ok(wire3::GroupUpdateOp::Remove) => A::GroupRemove,
                Ok(wire3::GroupUpdateOp::Rejoin) => A::GroupRejoin,
                Err(_) => return Err(CodecError::Unsupported(B::GroupUpdate as i32)),
            }
        }
        B::GroupWelcome => A::GroupWelcome,
        B::GroupClose => A::GroupClose,
        B::GroupProposal => A::GroupProposal,
        B::GroupAck => A::GroupAck,
        B::GroupNack => A::GroupNack,
        B::Heartbeat => A::Ping,
        B::UpdateParticipantState => A::ParticipantState,
        B::RejoinRequest => A::RejoinRequest,
        B::RejoinReply => A::RejoinReply,
    })
}

/// `protobuf-encode(HeaderIntegrityAad)` of a v3 Publish: what the header
/// signature (and, for MLS messages, the authenticated data) covers.
pub fn header_aad(m: &wire3::Message) -> Vec<u8> {
    let Some(wire3::message::MessageType::Publish(p)) = &m.message_type else {
        return Vec::new();
    };
    let h = p.header.clone().unwrap_or_default();
    let sh = p.session.unwrap_or_default();
    let payload_type = match &p.msg {
        Some(wire3::Content {
            content_type: Some(wire3::content::ContentType::AppPayload(a)),
        }) => a.payload_type.clone(),
        _ => String::new(),
    };
    wire3::HeaderIntegrityAad {
        version: 1,
        source: h.source,
        destination: h.destination,
        identity: h.identity,
        session_type: sh.session_type,
        session_message_type: sh.session_message_type,
        session_id: sh.session_id,
        message_id: sh.message_id,
        payload_type,
    }
    .encode_to_vec()
}

/// What the payload signature covers: a version tag, the header AAD, the
/// encoded payload and the signed metadata sorted by key then value, each
/// prefixed with its length (u64, big-endian).
pub fn payload_signing_input(m: &wire3::Message, aad: &[u8]) -> Vec<u8> {
    fn push(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as u64).to_be_bytes());
        out.extend_from_slice(b);
    }
    let mut out = b"slim-payload-v1".to_vec();
    push(&mut out, aad);
    let payload = match &m.message_type {
        Some(wire3::message::MessageType::Publish(p)) => p
            .msg
            .as_ref()
            .map(|c| c.encode_to_vec())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    push(&mut out, &payload);
    let mut meta: Vec<(&String, &String)> = m
        .metadata
        .iter()
        .filter(|(k, _)| !UNSIGNED_METADATA.contains(&k.as_str()))
        .collect();
    meta.sort();
    for (k, v) in meta {
        push(&mut out, k.as_bytes());
        push(&mut out, v.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Name;
    use crate::session::packet::{Out, command_content};

    const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!!";

    fn codec(base: &str, own: u64, key: u8) -> Codec3 {
        Codec3::new(&SharedSecret::new(base, SECRET).unwrap(), own, [key; 32])
    }

    fn frame(src: &Name, dst: &Name, kind: wire::SessionMessageType, c: C1) -> wire::Message {
        Out {
            source: src,
            destination: dst,
            fanout: 1,
            session_type: wire::SessionType::PointToPoint,
            kind,
            session_id: 7,
            message_id: 3,
            content: command_content(c),
            metadata: Default::default(),
        }
        .build()
    }

    fn v3_header(m: &wire3::Message) -> &wire3::SlimHeader {
        crate::forwarder::frame::header_v3(m).unwrap()
    }

    #[test]
    fn our_instance_id_becomes_the_v3_app_id_and_peer_ids_round_trip() {
        let mut alice = codec("org/ns/alice", 42, 1);
        let mut bob = codec("org/ns/bob", 99, 2);
        let a = Name::new("org", "ns", "alice").with_id(42);
        let b_any = Name::new("org", "ns", "bob");
        let req = frame(
            &a,
            &b_any,
            wire::SessionMessageType::DiscoveryRequest,
            C1::DiscoveryRequest(wire::DiscoveryRequestPayload { destination: None }),
        );
        let out = alice
            .outbound(req, crate::identity::unix_now(), Instant::now())
            .unwrap();
        let on_wire = &out.wire[0];
        let h = v3_header(on_wire);
        let src_id =
            crate::forwarder::frame::id_v3(h.source.as_ref().unwrap().name.as_ref().unwrap());
        assert_eq!(src_id, alice.own_v3_id());
        let dst_id =
            crate::forwarder::frame::id_v3(h.destination.as_ref().unwrap().name.as_ref().unwrap());
        assert_eq!(dst_id, NULL_ID128);
        assert!(h.e2e_header_sig.is_some(), "command frames are signed");
        // Bob reads it: alice gets a 64-bit stand-in that maps back.
        let got = bob
            .inbound(on_wire.clone(), Instant::now())
            .unwrap()
            .unwrap();
        let src = Name::from_wire(match &got.message_type {
            Some(wire::message::MessageType::Publish(p)) => {
                p.header.as_ref().unwrap().source.as_ref().unwrap()
            }
            _ => panic!(),
        })
        .unwrap();
        assert_eq!(bob.id_out(src.id()), alice.own_v3_id());
    }

    #[test]
    fn a_tampered_signed_control_frame_is_refused() {
        let mut alice = codec("org/ns/alice", 42, 1);
        let mut bob = codec("org/ns/bob", 99, 2);
        let a = Name::new("org", "ns", "alice").with_id(42);
        let b = Name::new("org", "ns", "bob");
        let join = frame(
            &a,
            &b,
            wire::SessionMessageType::JoinRequest,
            C1::JoinRequest(wire::JoinRequestPayload {
                enable_mls: false,
                timer_settings: None,
                channel: None,
            }),
        );
        let mut m = alice
            .outbound(join, crate::identity::unix_now(), Instant::now())
            .unwrap()
            .wire
            .remove(0);
        assert!(bob.inbound(m.clone(), Instant::now()).is_ok());
        if let Some(wire3::message::MessageType::Publish(p)) = &mut m.message_type {
            p.session.as_mut().unwrap().session_id = 8;
        }
        assert_eq!(
            bob.inbound(m.clone(), Instant::now()),
            Err(CodecError::BadSignature)
        );
        // The payload signature covers metadata too.
        if let Some(wire3::message::MessageType::Publish(p)) = &mut m.message_type {
            p.session.as_mut().unwrap().session_id = 7;
        }
        m.metadata.insert("injected".into(), "x".into());
        assert_eq!(
            bob.inbound(m, Instant::now()),
            Err(CodecError::BadSignature)
        );
    }

    #[test]
    fn a_frame_signed_by_another_secret_is_refused() {
        let mut mallory = Codec3::new(
            &SharedSecret::new("org/ns/mallory", "another-secret-of-at-least-32-bytes!!").unwrap(),
            5,
            [3; 32],
        );
        let mut bob = codec("org/ns/bob", 99, 2);
        let m = Name::new("org", "ns", "mallory").with_id(5);
        let b = Name::new("org", "ns", "bob");
        let req = frame(
            &m,
            &b,
            wire::SessionMessageType::DiscoveryRequest,
            C1::DiscoveryRequest(wire::DiscoveryRequestPayload { destination: None }),
        );
        let on_wire = mallory
            .outbound(req, crate::identity::unix_now(), Instant::now())
            .unwrap()
            .wire
            .remove(0);
        assert!(matches!(
            bob.inbound(on_wire, Instant::now()),
            Err(CodecError::Identity(IdentityError::BadMac))
        ));
    }

    /// The command a frame carries, after a trip out of one edge and into
    /// another, and the v3 type it had on the wire.
    fn round_trip(kind: wire::SessionMessageType, c: C1) -> (i32, C1) {
        let mut alice = codec("org/ns/alice", 42, 1);
        let mut bob = codec("org/ns/bob", 99, 2);
        let a = Name::new("org", "ns", "alice").with_id(42);
        let b = Name::new("org", "ns", "bob").with_id(7);
        let on_wire = alice
            .outbound(
                frame(&a, &b, kind, c),
                crate::identity::unix_now(),
                Instant::now(),
            )
            .unwrap()
            .wire
            .remove(0);
        let Some(wire3::message::MessageType::Publish(p)) = &on_wire.message_type else {
            panic!("not a publish");
        };
        let v3_type = p.session.as_ref().unwrap().session_message_type;
        let back = bob.inbound(on_wire, Instant::now()).unwrap().unwrap();
        let Some(wire::message::MessageType::Publish(p)) = back.message_type else {
            panic!("not a publish");
        };
        let Some(wire::content::ContentType::CommandPayload(cp)) = p.msg.unwrap().content_type
        else {
            panic!("not a command");
        };
        (v3_type, cp.command_payload_type.unwrap())
    }

    #[test]
    fn presence_and_rejoin_frames_cross_the_edge_as_their_v3_types_and_back() {
        let (t, c) = round_trip(
            wire::SessionMessageType::ParticipantState,
            C1::ParticipantState(wire::ParticipantStatePayload {
                participant: None,
                online: false,
                epoch: 4,
            }),
        );
        assert_eq!(t, wire3::SessionMessageType::UpdateParticipantState as i32);
        assert!(matches!(c, C1::ParticipantState(p) if !p.online && p.epoch == 4));
        let (t, c) = round_trip(
            wire::SessionMessageType::RejoinRequest,
            C1::RejoinRequest(wire::RejoinRequestPayload {
                participant: None,
                key_package: b"kp".to_vec(),
            }),
        );
        assert_eq!(t, wire3::SessionMessageType::RejoinRequest as i32);
        assert!(matches!(c, C1::RejoinRequest(r) if r.key_package == b"kp"));
        let (t, c) = round_trip(
            wire::SessionMessageType::RejoinReply,
            C1::RejoinReply(wire::RejoinReplyPayload {
                commit_id: 9,
                welcome: b"w".to_vec(),
            }),
        );
        assert_eq!(t, wire3::SessionMessageType::RejoinReply as i32);
        assert!(matches!(c, C1::RejoinReply(r) if r.commit_id == 9 && r.welcome == b"w"));
        let (t, c) = round_trip(
            wire::SessionMessageType::GroupRejoin,
            C1::GroupRejoin(wire::GroupAddPayload {
                new_participant: None,
                participants: Vec::new(),
                mls: Some(wire::MlsPayload {
                    commit_id: 3,
                    mls_content: b"c".to_vec(),
                }),
            }),
        );
        assert_eq!(t, wire3::SessionMessageType::GroupUpdate as i32);
        assert!(
            matches!(c, C1::GroupRejoin(a) if a.mls.as_ref().is_some_and(|m| m.commit_id == 3))
        );
    }

    #[test]
    fn join_reply_carries_its_sender_as_an_online_participant_and_types_are_renumbered() {
        let mut alice = codec("org/ns/alice", 42, 1);
        let a = Name::new("org", "ns", "alice").with_id(42);
        let b = Name::new("org", "ns", "bob").with_id(7);
        let reply = frame(
            &a,
            &b,
            wire::SessionMessageType::JoinReply,
            C1::JoinReply(wire::JoinReplyPayload { key_package: None }),
        );
        let m = alice
            .outbound(reply, crate::identity::unix_now(), Instant::now())
            .unwrap()
            .wire
            .remove(0);
        let Some(wire3::message::MessageType::Publish(p)) = &m.message_type else {
            panic!()
        };
        assert_eq!(
            p.session.unwrap().session_message_type,
            wire3::SessionMessageType::JoinReply as i32
        );
        let Some(wire3::content::ContentType::CommandPayload(c)) =
            p.msg.as_ref().and_then(|c| c.content_type.clone())
        else {
            panic!()
        };
        let Some(C3::JoinReply(j)) = c.command_payload_type else {
            panic!()
        };
        let part = j.participant.unwrap();
        assert!(part.settings.unwrap().receives_data);
        assert_eq!(part.status, wire3::ParticipantState::Online as i32);
        assert_eq!(
            crate::forwarder::frame::id_v3(part.name.unwrap().name.as_ref().unwrap()),
            alice.own_v3_id()
        );
        for (v1, v3) in [
            (
                wire::SessionMessageType::GroupWelcome,
                wire3::SessionMessageType::GroupWelcome,
            ),
            (
                wire::SessionMessageType::GroupAck,
                wire3::SessionMessageType::GroupAck,
            ),
            (
                wire::SessionMessageType::GroupClose,
                wire3::SessionMessageType::GroupClose,
            ),
            (
                wire::SessionMessageType::Ping,
                wire3::SessionMessageType::Heartbeat,
            ),
            (
                wire::SessionMessageType::GroupAdd,
                wire3::SessionMessageType::GroupUpdate,
            ),
        ] {
            assert_eq!(type_out(v1), v3);
        }
    }

    #[test]
    fn a_heartbeat_feeds_the_session_as_a_ping_whose_echo_stays_home_as_a_heartbeat() {
        let mut alice = codec("org/ns/alice", 42, 1);
        let mut bob = codec("org/ns/bob", 99, 2);
        let a = Name::new("org", "ns", "alice").with_id(42);
        let b = Name::new("org", "ns", "bob").with_id(99);
        let ping = frame(
            &a,
            &b,
            wire::SessionMessageType::Ping,
            C1::Ping(wire::PingPayload {}),
        );
        let now = Instant::now();
        let hb = alice
            .outbound(ping, crate::identity::unix_now(), now)
            .unwrap();
        // Bob was never heard from: no echo is made up for alice.
        assert!(hb.local.is_empty());
        let got = bob.inbound(hb.wire[0].clone(), now).unwrap().unwrap();
        let Some(wire::message::MessageType::Publish(p)) = &got.message_type else {
            panic!()
        };
        let sh = p.session.unwrap();
        assert_eq!(
            sh.session_message_type,
            wire::SessionMessageType::Ping as i32
        );
        // Bob's session echoes that PING: it leaves as a heartbeat and is
        // not made up again at alice's end.
        let mut echo = got.clone();
        swap_ends(&mut echo);
        let out = bob
            .outbound(echo, crate::identity::unix_now(), now)
            .unwrap();
        assert!(out.local.is_empty());
        let Some(wire3::message::MessageType::Publish(p3)) = &out.wire[0].message_type else {
            panic!()
        };
        assert_eq!(
            p3.session.unwrap().session_message_type,
            wire3::SessionMessageType::Heartbeat as i32
        );
        // Now that bob was heard from, alice's next PING round is answered.
        alice.inbound(out.wire[0].clone(), now).unwrap();
        let b_at_alice = Name::new("org", "ns", "bob").with_id(fold(bob.own_v3_id()));
        let ping = frame(
            &a,
            &b_at_alice,
            wire::SessionMessageType::Ping,
            C1::Ping(wire::PingPayload {}),
        );
        let round = alice
            .outbound(ping, crate::identity::unix_now(), now)
            .unwrap();
        assert_eq!(round.local.len(), 1);
    }

    #[test]
    fn a_heartbeat_carries_the_epoch_the_session_noted_and_not_the_note() {
        let mut alice = codec("org/ns/alice", 42, 1);
        let a = Name::new("org", "ns", "alice").with_id(42);
        let b = Name::new("org", "ns", "bob").with_id(7);
        let mut ping = frame(
            &a,
            &b,
            wire::SessionMessageType::Ping,
            C1::Ping(wire::PingPayload {}),
        );
        ping.metadata
            .insert(crate::session::packet::keys::MLS_EPOCH.into(), "5".into());
        let out = alice
            .outbound(ping, crate::identity::unix_now(), Instant::now())
            .unwrap();
        let hb = &out.wire[0];
        assert!(
            !hb.metadata
                .contains_key(crate::session::packet::keys::MLS_EPOCH)
        );
        let Some(wire3::message::MessageType::Publish(p)) = &hb.message_type else {
            panic!()
        };
        let Some(wire3::content::ContentType::CommandPayload(c)) =
            p.msg.as_ref().and_then(|c| c.content_type.clone())
        else {
            panic!()
        };
        assert_eq!(
            c.command_payload_type,
            Some(C3::Heartbeat(wire3::HeartbeatPayload { epoch: 5 }))
        );
        // Without a note (no MLS): all bits set.
        let ping = frame(
            &a,
            &b,
            wire::SessionMessageType::Ping,
            C1::Ping(wire::PingPayload {}),
        );
        let out = alice
            .outbound(ping, crate::identity::unix_now(), Instant::now())
            .unwrap();
        let Some(wire3::message::MessageType::Publish(p)) = &out.wire[0].message_type else {
            panic!()
        };
        let Some(wire3::content::ContentType::CommandPayload(c)) =
            p.msg.as_ref().and_then(|c| c.content_type.clone())
        else {
            panic!()
        };
        assert_eq!(
            c.command_payload_type,
            Some(C3::Heartbeat(wire3::HeartbeatPayload { epoch: u64::MAX }))
        );
    }
}
