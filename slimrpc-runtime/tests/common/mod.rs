//! Helpers shared by the runtime's in-process tests: the liveness bound,
//! the shared secret, and apps on either SLIM wire generation.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use slim_transport::app::App;
use slim_transport::identity::SharedSecret;
use slim_transport::service::Service;

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
