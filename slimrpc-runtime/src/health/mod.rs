//! Health checking: the standard `grpc.health.v1.Health` service (Check,
//! Watch, List), served by a [`Server`] on request.
//!
//! Job: keep each service's serving status, answer Check/List from it and
//! stream its changes to Watch callers. Must not: guess statuses; only the
//! application sets them through its [`HealthReporter`].
//!
//! ```no_run
//! # async fn demo(app: std::sync::Arc<slim_transport::app::App>, members: Vec<slimrpc::Name>)
//! #     -> Result<(), slimrpc::RpcError> {
//! use futures::StreamExt;
//! use slimrpc::health::v1::{HealthCheckRequest, health_client::HealthGroupClient};
//! use slimrpc::health::ServingStatus;
//!
//! // Server: serve Health; "" (the whole server) is SERVING from the start.
//! let mut server = slimrpc::Server::new(app.clone(), "org/ns/node-a".parse().unwrap());
//! let health = server.enable_health();
//! health.set_status("pkg.Echo", ServingStatus::NotServing);
//!
//! // Client: one call, every member's status.
//! let group = HealthGroupClient::new(slimrpc::Channel::new(app, members)?);
//! let mut answers = group.check(HealthCheckRequest { service: String::new() });
//! while let Some(answer) = answers.next().await {
//!     match answer {
//!         Ok(item) => println!("{}: {:?}", item.source, item.message.status()),
//!         Err(e) => println!("{e}"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The generated code in [`v1`] comes from grpc's `health.proto` (vendored
//! in `testdata/grpc_health`) through our Rust plugin; a test in the
//! examples (`tests/health.rs`) checks it is what the plugin generates now.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use tokio::sync::watch;

use crate::code::Code;
use crate::context::Context;
use crate::error::RpcError;
use crate::server::Server;

/// `grpc.health.v1`: messages and SlimRPC stubs generated from grpc's
/// `health.proto`.
#[allow(clippy::all, missing_docs, rustdoc::broken_intra_doc_links)]
pub mod v1 {
    include!("grpc.health.v1.rs");
}

pub use v1::health_check_response::ServingStatus;
use v1::health_server::{Health, HealthServer};
use v1::{HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse};

/// The service name of the whole server in health requests.
pub const SERVER: &str = "";

type Statuses = HashMap<String, ServingStatus>;

/// Sets the serving status the server's Health service reports. Cheap to
/// clone; every clone sets the same statuses. Watchers see each change.
#[derive(Debug, Clone)]
pub struct HealthReporter {
    statuses: Arc<watch::Sender<Statuses>>,
}

impl HealthReporter {
    fn new() -> Self {
        let (tx, _) = watch::channel(Statuses::from([(
            SERVER.to_string(),
            ServingStatus::Serving,
        )]));
        Self {
            statuses: Arc::new(tx),
        }
    }

    /// Sets `service`'s status (`""`: the whole server).
    pub fn set_status(&self, service: &str, status: ServingStatus) {
        self.statuses
            .send_if_modified(|m| m.insert(service.to_string(), status) != Some(status));
    }

    /// Sets `service` SERVING.
    pub fn set_serving(&self, service: &str) {
        self.set_status(service, ServingStatus::Serving);
    }

    /// Sets `service` NOT_SERVING.
    pub fn set_not_serving(&self, service: &str) {
        self.set_status(service, ServingStatus::NotServing);
    }

    /// Forgets `service`: Check answers NOT_FOUND for it, Watch
    /// SERVICE_UNKNOWN.
    pub fn clear(&self, service: &str) {
        self.statuses
            .send_if_modified(|m| m.remove(service).is_some());
    }

    /// The status `service` has now, if it has one.
    pub fn status(&self, service: &str) -> Option<ServingStatus> {
        self.statuses.borrow().get(service).copied()
    }
}

struct HealthService {
    statuses: Arc<watch::Sender<Statuses>>,
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

impl Health for HealthService {
    async fn check(
        &self,
        request: HealthCheckRequest,
        _context: Context,
    ) -> Result<HealthCheckResponse, RpcError> {
        match self.statuses.borrow().get(&request.service) {
            Some(s) => Ok(response(*s)),
            None => Err(RpcError::new(
                Code::NotFound,
                format!("unknown service {:?}", request.service),
            )),
        }
    }

    async fn watch(
        &self,
        request: HealthCheckRequest,
        _context: Context,
    ) -> Result<crate::ResponseStream<HealthCheckResponse>, RpcError> {
        // The current status first, then every change, until the caller
        // leaves (its cancel stops this handler) or the server stops.
        let rx = self.statuses.subscribe();
        let service = request.service;
        let updates = stream::unfold((rx, None::<ServingStatus>), move |(mut rx, last)| {
            let service = service.clone();
            async move {
                loop {
                    let now = rx
                        .borrow_and_update()
                        .get(&service)
                        .copied()
                        .unwrap_or(ServingStatus::ServiceUnknown);
                    if Some(now) != last {
                        return Some((Ok(response(now)), (rx, Some(now))));
                    }
                    // The reporter is gone with the server: the stream ends.
                    rx.changed().await.ok()?;
                }
            }
        });
        Ok(updates.boxed())
    }

    async fn list(
        &self,
        _request: HealthListRequest,
        _context: Context,
    ) -> Result<HealthListResponse, RpcError> {
        Ok(HealthListResponse {
            statuses: self
                .statuses
                .borrow()
                .iter()
                .map(|(k, v)| (k.clone(), response(*v)))
                .collect(),
        })
    }
}

impl Server {
    /// Serves `grpc.health.v1.Health` (Check, Watch, List) on this server
    /// and returns the reporter that sets what it answers. The whole server
    /// (service `""`) starts SERVING; other services have no status until
    /// set (Check: `NotFound`, Watch: SERVICE_UNKNOWN).
    pub fn enable_health(&mut self) -> HealthReporter {
        let reporter = HealthReporter::new();
        HealthServer::new(HealthService {
            statuses: reporter.statuses.clone(),
        })
        .register(self);
        reporter
    }
}
