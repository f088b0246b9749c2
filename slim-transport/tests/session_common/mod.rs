//! Helpers shared by the session-layer integration tests: the shared secret
//! every test app uses, the liveness bound, and starting an app.

#![allow(dead_code)]

use std::time::Duration;

use slim_transport::app::App;
use slim_transport::identity::SharedSecret;
use slim_transport::service::Service;

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
