//! The seam implemented by the real session layer, `slim_transport::app`.
//!
//! Job: map [`RpcTransport`] / [`RpcSessionHandle`] / [`RpcSessionEvents`]
//! one-to-one onto `App`, `SessionHandle` and `Session`. Sessions are created
//! with the layer's defaults (1 s, 10 retries, MLS as the layer supports it).
//! Must not: add protocol behaviour; this is a translation layer only.

use std::collections::HashMap;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use slim_transport::Name;
use slim_transport::app::{App, Session, SessionConfig, SessionEvent, SessionHandle};
use slim_transport::session::{InboundFilter, InboundFilterFactory};

use crate::transport::{
    ConnId, EventSink, IncomingMessage, RpcSessionEvents, RpcSessionHandle, RpcTransport,
    SessionKind, SessionOptions, TransportError, TransportEvent, TransportFuture, TransportSession,
};

fn err(e: impl std::fmt::Display) -> TransportError {
    TransportError(e.to_string())
}

fn wrap(session: Session) -> TransportSession {
    TransportSession {
        handle: Arc::new(session.handle()),
        events: Box::new(session),
    }
}

/// The layer's session configuration for a channel's session.
fn config(kind: SessionKind, options: SessionOptions) -> SessionConfig {
    let defaults = SessionConfig::default();
    SessionConfig {
        kind: match kind {
            SessionKind::PointToPoint => slim_transport::app::SessionKind::PointToPoint,
            SessionKind::Group => slim_transport::app::SessionKind::Group,
        },
        ping_interval: options.ping_interval.unwrap_or(defaults.ping_interval),
        ..defaults
    }
}

/// What the runtime hears of a session event: `Some(Some(_))` to pass on,
/// `Some(None)` for the end, `None` for an event it does not use.
fn translate(event: SessionEvent) -> Option<Option<TransportEvent>> {
    match event {
        SessionEvent::Message(m) => Some(Some(TransportEvent::Message(IncomingMessage {
            source: m.source,
            payload: m.payload,
            metadata: m.metadata,
            peer_subject: m.peer_subject,
        }))),
        SessionEvent::MemberLeft(name) => Some(Some(TransportEvent::MemberLeft(name))),
        SessionEvent::MessageLost { source, message_id } => {
            Some(Some(TransportEvent::MessageLost { source, message_id }))
        }
        SessionEvent::Closed { reason } => {
            tracing::debug!(%reason, "session closed");
            Some(None)
        }
        other => {
            tracing::trace!(?other, "session event ignored");
            None
        }
    }
}

impl RpcTransport for App {
    fn local_name(&self) -> Name {
        self.name().clone()
    }

    fn create_session(
        &self,
        kind: SessionKind,
        destination: &Name,
        options: SessionOptions,
    ) -> TransportFuture<'_, TransportSession> {
        let destination = destination.clone();
        async move {
            let config = config(kind, options);
            let (session, done) = self
                .create_session(config, &destination)
                .await
                .map_err(err)?;
            if let Err(e) = done.await {
                let _ = session.close().await;
                return Err(err(e));
            }
            Ok(wrap(session))
        }
        .boxed()
    }

    fn create_session_delivering(
        &self,
        kind: SessionKind,
        destination: &Name,
        options: SessionOptions,
        mut sink: EventSink,
        skip: Option<InboundFilter>,
    ) -> TransportFuture<'_, Arc<dyn RpcSessionHandle>> {
        let destination = destination.clone();
        async move {
            let on_event = move |event: SessionEvent| {
                if let Some(event) = translate(event) {
                    sink(event);
                }
            };
            let (handle, done) = self
                .create_session_with_sink(
                    config(kind, options),
                    &destination,
                    Box::new(on_event),
                    skip,
                )
                .await
                .map_err(err)?;
            if let Err(e) = done.await {
                let _ = handle.close().await;
                return Err(err(e));
            }
            Ok(Arc::new(handle) as Arc<dyn RpcSessionHandle>)
        }
        .boxed()
    }

    fn accept_session(&self) -> TransportFuture<'_, TransportSession> {
        async move { self.listen_for_session().await.map(wrap).map_err(err) }.boxed()
    }

    fn subscribe(&self, name: &Name, conn: Option<ConnId>) -> TransportFuture<'_, ()> {
        let name = name.clone();
        async move { App::subscribe(self, &name, conn).await.map_err(err) }.boxed()
    }

    fn set_route(&self, name: &Name, conn: ConnId) -> TransportFuture<'_, ()> {
        let name = name.clone();
        async move { App::set_route(self, &name, conn).await.map_err(err) }.boxed()
    }

    fn set_accept_filter(&self, factory: InboundFilterFactory) {
        App::set_accept_filter(self, factory);
    }
}

/// Lets an app be shared: `Channel::new(app.clone(), ..)` with `Arc<App>`.
impl<T: RpcTransport> RpcTransport for Arc<T> {
    fn local_name(&self) -> Name {
        (**self).local_name()
    }
    fn create_session(
        &self,
        kind: SessionKind,
        destination: &Name,
        options: SessionOptions,
    ) -> TransportFuture<'_, TransportSession> {
        (**self).create_session(kind, destination, options)
    }
    fn create_session_delivering(
        &self,
        kind: SessionKind,
        destination: &Name,
        options: SessionOptions,
        sink: EventSink,
        skip: Option<InboundFilter>,
    ) -> TransportFuture<'_, Arc<dyn RpcSessionHandle>> {
        (**self).create_session_delivering(kind, destination, options, sink, skip)
    }
    fn accept_session(&self) -> TransportFuture<'_, TransportSession> {
        (**self).accept_session()
    }
    fn subscribe(&self, name: &Name, conn: Option<ConnId>) -> TransportFuture<'_, ()> {
        (**self).subscribe(name, conn)
    }
    fn set_route(&self, name: &Name, conn: ConnId) -> TransportFuture<'_, ()> {
        (**self).set_route(name, conn)
    }
    fn set_accept_filter(&self, factory: InboundFilterFactory) {
        (**self).set_accept_filter(factory)
    }
}

impl RpcSessionHandle for SessionHandle {
    fn id(&self) -> u32 {
        SessionHandle::id(self)
    }

    fn kind(&self) -> SessionKind {
        match SessionHandle::kind(self) {
            slim_transport::session::SessionKind::PointToPoint => SessionKind::PointToPoint,
            slim_transport::session::SessionKind::Group => SessionKind::Group,
        }
    }

    fn publish(
        &self,
        payload: Vec<u8>,
        metadata: HashMap<String, String>,
    ) -> TransportFuture<'_, ()> {
        async move {
            SessionHandle::publish(self, payload, metadata)
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn publish_unicast<'a>(
        &'a self,
        member: &'a Name,
        payload: Vec<u8>,
        metadata: HashMap<String, String>,
    ) -> TransportFuture<'a, ()> {
        async move {
            SessionHandle::publish_unicast(self, member, payload, metadata)
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn invite<'a>(&'a self, member: &'a Name) -> TransportFuture<'a, ()> {
        async move {
            SessionHandle::invite(self, member)
                .await
                .map_err(err)?
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn invite_many<'a>(&'a self, members: &'a [Name]) -> TransportFuture<'a, ()> {
        async move {
            SessionHandle::invite_many(self, members)
                .await
                .map_err(err)?
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn remove<'a>(&'a self, member: &'a Name) -> TransportFuture<'a, ()> {
        async move { SessionHandle::remove(self, member).await.map_err(err) }.boxed()
    }

    fn close(&self) -> TransportFuture<'_, ()> {
        async move { SessionHandle::close(self).await.map_err(err) }.boxed()
    }

    fn is_closed(&self) -> bool {
        SessionHandle::is_closed(self)
    }
}

impl RpcSessionEvents for Session {
    fn recv(&mut self) -> BoxFuture<'_, Option<TransportEvent>> {
        async move {
            loop {
                match Session::recv(self).await {
                    Ok(event) => match translate(event) {
                        Some(passed) => return passed,
                        None => continue,
                    },
                    Err(_) => return None,
                }
            }
        }
        .boxed()
    }
}
