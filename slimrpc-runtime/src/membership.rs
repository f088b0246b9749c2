//! Live membership of a group [`Channel`](crate::Channel): adding and
//! removing members on the running session.
//!
//! Job: change the channel's member set and the session's together, so
//! that every call is accounted against the members it was sent to. A call
//! snapshots the set right after it registers with the session's
//! dispatcher; a removal updates the set first and tells the registered
//! calls afterwards (through the dispatcher, in order with their frames),
//! so each call either never counted the member or learns it was removed.
//! An addition invites first and updates the set after, so no call waits
//! for a member that cannot have seen its request.
//! Must not: re-create the session, end running calls, or hold a std lock
//! across `.await` (the async `membership` lock serializes changes).

use std::sync::Arc;

use slim_transport::Name;

use crate::channel::{ChannelInner, LiveSession, Slot};
use crate::code::Code;
use crate::dispatcher::designates;
use crate::error::RpcError;

/// How often an addition retries when the session was replaced while the
/// member was being invited.
const ADD_ATTEMPTS: usize = 3;

fn same(a: &Name, b: &Name) -> bool {
    designates(a, b) || designates(b, a)
}

fn not_a_group() -> RpcError {
    RpcError::new(
        Code::FailedPrecondition,
        "membership changes need a group channel (created with two or more members)",
    )
}

/// The session calls run on now: the live one, the one being created
/// (awaited), or none.
async fn current_session(inner: &Arc<ChannelInner>) -> Option<Arc<LiveSession>> {
    let creating = match &*inner.lock() {
        Slot::Live(s) if s.is_alive() => return Some(s.clone()),
        Slot::Creating(f) => f.clone(),
        _ => return None,
    };
    creating.await.ok()
}

/// Invites `member` into `session`. A member removed from this very
/// session earlier is invited back the same way (the transport replaces its
/// closed side of the session); from then on its departure is a loss again.
async fn invite(session: &LiveSession, member: &Name) -> Result<(), RpcError> {
    session
        .handle
        .invite(member)
        .await
        .map_err(|e| RpcError::unavailable(format!("Failed to invite {member}: {e}")))?;
    session.dispatcher.forget_removal(member);
    Ok(())
}

pub(crate) async fn add_member(inner: &Arc<ChannelInner>, member: Name) -> Result<(), RpcError> {
    if inner.group.is_none() {
        return Err(not_a_group());
    }
    let _serial = inner.membership.lock().await;
    if inner.members_now().iter().any(|m| same(m, &member)) {
        return Err(RpcError::new(
            Code::AlreadyExists,
            format!("{member} is already a member of this channel"),
        ));
    }
    if let Some(conn) = inner.connection {
        inner
            .transport
            .set_route(&member, conn)
            .await
            .map_err(|e| RpcError::unavailable(format!("Failed to route {member}: {e}")))?;
    }
    for _ in 0..ADD_ATTEMPTS {
        let session = current_session(inner).await;
        if let Some(s) = &session {
            invite(s, &member).await?;
        }
        // Publish the new member only if the session it joined is still the
        // one calls use (or there is none: the next one invites everyone).
        let slot = inner.lock();
        let current = match (&*slot, &session) {
            (Slot::Live(now), Some(s)) => Arc::ptr_eq(now, s),
            (Slot::Empty, _) => true,
            _ => false,
        };
        if current {
            inner
                .members
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(member.clone());
            tracing::debug!(%member, "member added to the group channel");
            return Ok(());
        }
    }
    Err(RpcError::unavailable(format!(
        "Failed to add {member}: the group session kept being replaced"
    )))
}

pub(crate) async fn remove_member(
    inner: &Arc<ChannelInner>,
    member: &Name,
) -> Result<(), RpcError> {
    if inner.group.is_none() {
        return Err(not_a_group());
    }
    let _serial = inner.membership.lock().await;
    let removed = {
        // Under the slot lock: a session created from now on leaves it out.
        let _slot = inner.lock();
        let mut members = inner.members.lock().unwrap_or_else(|p| p.into_inner());
        let Some(at) = members.iter().position(|m| same(m, member)) else {
            return Err(RpcError::new(
                Code::NotFound,
                format!("{member} is not a member of this channel"),
            ));
        };
        if members.len() == 1 {
            return Err(RpcError::invalid_argument(format!(
                "{member} is the channel's last member; close the channel instead"
            )));
        }
        members.remove(at)
    };
    let Some(session) = current_session(inner).await else {
        tracing::debug!(%removed, "member removed from the group channel (no live session)");
        return Ok(());
    };
    // Before the session reports it gone: its departure is no loss.
    session.dispatcher.expect_removal(&removed);
    let result = session.handle.remove(&removed).await;
    // Whether or not the session reported the departure, every call still
    // waiting for the member stops waiting now.
    session.dispatcher.member_removed(&removed);
    match result {
        Ok(()) => {
            tracing::debug!(%removed, session_id = session.handle.id(), "member removed from the group session");
            Ok(())
        }
        Err(e) => Err(RpcError::unavailable(format!(
            "{removed} is out of the channel, but the session failed to remove it: {e}"
        ))),
    }
}
