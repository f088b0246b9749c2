//! Helpers shared by the session-layer integration tests: the shared secret
//! every test app uses, the liveness bound, and starting an app.

#![allow(dead_code)]

use std::time::Duration;

use slim_transport::Name;
use slim_transport::app::{App, Session, SessionConfig, SessionEvent};
use slim_transport::identity::SharedSecret;
use slim_transport::service::{ConnId, Generation, LinkOptions, Service};

/// The shared secret of every test app (the official examples' length).
pub const SECRET: &str = "kjandjansdiasb8udaijdniasdaindasndasndasndasndasndasndasndas";

/// Liveness bound for every wait (a loaded 2-core machine is slow).
pub const LIVENESS: Duration = Duration::from_secs(60);

/// Starts app `name` on `service` with [`SECRET`].
pub async fn app(service: &Service, name: &str) -> App {
    app_with(service, name, SECRET).await
}

/// Starts app `name` on `service` with the shared secret `secret`.
pub async fn app_with(service: &Service, name: &str, secret: &str) -> App {
    let identity = SharedSecret::new(name, secret).unwrap();
    tokio::time::timeout(LIVENESS, service.app(name.parse().unwrap(), identity))
        .await
        .expect("app in time")
        .expect("app started")
}

/// Starts SLIM v3 app `name` on `service` with [`SECRET`], subscribed on
/// `link` (a node's) or locally.
pub async fn app_v3(service: &Service, name: &str, link: Option<ConnId>) -> App {
    app_v3_with(service, name, SECRET, link).await
}

/// As [`app_v3`] with the shared secret `secret`.
pub async fn app_v3_with(service: &Service, name: &str, secret: &str, link: Option<ConnId>) -> App {
    let identity = SharedSecret::new(name, secret).unwrap();
    let app = tokio::time::timeout(LIVENESS, service.app_v3(name.parse().unwrap(), identity))
        .await
        .expect("app in time")
        .expect("app started");
    app.subscribe(app.name(), link).await.expect("subscribed");
    app
}

/// The payload of the next message of `s`; other events are skipped.
pub async fn next_payload(s: &mut Session) -> Vec<u8> {
    loop {
        match tokio::time::timeout(LIVENESS, s.recv())
            .await
            .expect("a message in time")
        {
            Ok(SessionEvent::Message(m)) => return m.payload,
            Ok(_) => {}
            Err(e) => panic!("session ended: {e}"),
        }
    }
}

/// Our node listening on 127.0.0.1, and a client service linked to it on
/// the SLIM v3 wire.
pub struct V3Net {
    pub node: Service,
    pub url: String,
    pub client: Service,
    pub link: ConnId,
}

impl V3Net {
    pub async fn start() -> Self {
        let node = Service::new();
        let addr = node
            .run_server("127.0.0.1:0".parse().unwrap())
            .await
            .expect("node listens");
        let url = format!("http://{addr}");
        let client = Service::new();
        let link = client
            .connect_with(
                &url,
                LinkOptions {
                    generation: Some(Generation::V3),
                    ..LinkOptions::default()
                },
            )
            .await
            .expect("linked");
        Self {
            node,
            url,
            client,
            link,
        }
    }

    pub async fn shutdown(self) {
        self.client.shutdown().await;
        self.node.shutdown().await;
    }
}

/// Invites `who` into `group` (its moderator `app` routes it over `link`)
/// and waits until it joined.
pub async fn invite_via(app: &App, group: &Session, link: ConnId, who: &str) {
    let base: slim_transport::Name = who.parse().unwrap();
    app.set_route(&base, link).await.expect("route");
    let done = group.invite(&base).await.expect("invite queued");
    tokio::time::timeout(LIVENESS, done)
        .await
        .expect("invite finished in time")
        .unwrap_or_else(|e| panic!("invite of {who} failed: {e}"));
}

/// A session `app` creates on `destination` with `config` (a group: the
/// channel), once it is ready.
pub async fn created(app: &App, destination: &Name, config: SessionConfig) -> Session {
    let (session, ready) = app
        .create_session(config, destination)
        .await
        .expect("session created");
    tokio::time::timeout(LIVENESS, ready)
        .await
        .expect("ready in time")
        .expect("ready");
    session
}

/// Invites `member` (an app on the moderator's service) into the group of
/// `moderator` and returns its side of the session once it joined.
pub async fn joined(moderator: &Session, member: &App) -> Session {
    let done = moderator
        .invite(&member.name().with_id(slim_transport::name::NULL_ID))
        .await
        .expect("invite queued");
    let session = tokio::time::timeout(LIVENESS, member.listen_for_session())
        .await
        .expect("invited in time")
        .expect("session");
    tokio::time::timeout(LIVENESS, done)
        .await
        .expect("joined in time")
        .expect("joined");
    session
}
