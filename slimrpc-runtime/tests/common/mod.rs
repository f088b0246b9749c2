//! Helpers shared by the runtime's in-process tests: the liveness bound,
//! the shared secret, and apps on either SLIM wire generation.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use slim_transport::Name;
use slim_transport::app::App;
use slim_transport::identity::SharedSecret;
use slim_transport::service::Service;
use slimrpc::{Context, Server, ServerHandle};
use tokio::sync::Notify;

/// The shared secret of every test app.
pub const SECRET: &str = "slimrpc-runtime-tests-shared-secret-0123456789";
/// Liveness bound for every wait (a shared, loaded machine).
pub const LIMIT: Duration = Duration::from_secs(120);

/// The message most tests exchange.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(int64, tag = "2")]
    pub n: i64,
}

/// The SLIM wire generation an app speaks.
#[derive(Clone, Copy, Debug)]
pub enum Wire {
    V1,
    V3,
}

/// `f`, or a failed test once [`LIMIT`] passed.
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("liveness bound passed")
}

/// App `name` with [`SECRET`] on `service`, speaking `wire`.
pub async fn app(service: &Service, name: &str, wire: Wire) -> Arc<App> {
    app_with_subject(service, name, wire).await.0
}

/// As [`app`], with its identity's subject (what peers verify it as; each
/// identity gets a subject of its own).
pub async fn app_with_subject(service: &Service, name: &str, wire: Wire) -> (Arc<App>, String) {
    use slim_transport::identity::IdentityProvider as _;
    let identity = SharedSecret::new(name, SECRET).unwrap();
    let subject = identity.id().to_string();
    let app = match wire {
        Wire::V1 => bounded(service.app(name.parse().unwrap(), identity)).await,
        Wire::V3 => bounded(service.app_v3(name.parse().unwrap(), identity)).await,
    };
    (Arc::new(app.expect("app started")), subject)
}

/// The service of [`group_net`]'s tests.
pub const SVC: &str = "example_service.Test";

/// Servers `org/ns/<label>` on one embedded service, and a client app
/// `org/ns/client` beside them (all on the v1 wire).
pub struct Net {
    pub service: Service,
    pub client: Arc<App>,
    pub apps: Vec<Arc<App>>,
    /// In label order; `take` one to shut it down.
    pub servers: Vec<Option<ServerHandle>>,
    /// Held by the `Slow` handlers of [`who_and_slow`] until notified.
    pub gate: Arc<Notify>,
}

/// One SlimRPC server per label, whose methods `setup` registers.
pub async fn group_net(
    labels: &[&'static str],
    setup: impl Fn(&mut Server, &'static str, &Arc<Notify>),
) -> Net {
    let service = Service::new();
    let gate = Arc::new(Notify::new());
    let mut apps = Vec::new();
    let mut servers = Vec::new();
    for &label in labels {
        let a = app(&service, &format!("org/ns/{label}"), Wire::V1).await;
        let mut s = Server::new(a.clone(), Name::new("org", "ns", label));
        setup(&mut s, label, &gate);
        servers.push(Some(bounded(s.start()).await.unwrap()));
        apps.push(a);
    }
    let client = app(&service, "org/ns/client", Wire::V1).await;
    Net {
        service,
        client,
        apps,
        servers,
        gate,
    }
}

/// `Who` answers the member's label with the request's `n`; `Slow` does
/// the same once `gate` is notified.
pub fn who_and_slow(s: &mut Server, label: &'static str, gate: &Arc<Notify>) {
    s.register_unary_unary(SVC, "Who", move |req: Msg, _ctx: Context| async move {
        Ok(Msg {
            text: label.to_string(),
            n: req.n,
        })
    });
    let gate = gate.clone();
    s.register_unary_unary(SVC, "Slow", move |req: Msg, _ctx: Context| {
        let gate = gate.clone();
        async move {
            gate.notified().await;
            Ok(Msg {
                text: label.to_string(),
                n: req.n,
            })
        }
    });
}
