//! Interceptors, in the shape of tonic's `service::Interceptor`: a function
//! from a [`Request<()>`] (the call's metadata and names, no message) to the
//! same request, possibly changed, or an error that ends the call.
//!
//! Job: the request type interceptors see and the shared, chained
//! interceptor list the channel and the server run. Must not: send frames.
//!
//! * Client ([`crate::Channel::with_interceptor`], generated
//!   `XClient::with_interceptor`): runs before every call of that channel
//!   handle; may add metadata (credentials, tracing ids) or refuse the call,
//!   which then fails with its error without sending anything.
//! * Server ([`crate::Server::add_interceptor`], or per service with
//!   [`crate::Server::intercept_service`] and generated
//!   `XServer::with_interceptor`): runs when a call starts, before its
//!   handler; may check credentials (answer `Unauthenticated`), log, count,
//!   or change the metadata the handler's `Context` sees. A refused call is
//!   answered with the interceptor's error; its handler never runs.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use slim_transport::Name;

use crate::error::RpcError;
use crate::metadata::Metadata;

/// A call as an interceptor sees it: metadata, names, and a message (`()`
/// for interceptors).
#[derive(Debug, Clone)]
pub struct Request<T> {
    metadata: Metadata,
    message: T,
    service: String,
    method: String,
    caller: Option<Name>,
    peer_subject: Option<String>,
}

impl<T> Request<T> {
    /// A request with `message` and no metadata.
    pub fn new(message: T) -> Self {
        Self {
            metadata: Metadata::new(),
            message,
            service: String::new(),
            method: String::new(),
            caller: None,
            peer_subject: None,
        }
    }

    pub(crate) fn for_call(message: T, metadata: Metadata, service: &str, method: &str) -> Self {
        Self {
            metadata,
            message,
            service: service.to_string(),
            method: method.to_string(),
            caller: None,
            peer_subject: None,
        }
    }

    pub(crate) fn with_caller(mut self, caller: Name, peer_subject: Option<String>) -> Self {
        self.caller = Some(caller);
        self.peer_subject = peer_subject;
        self
    }

    /// The call's metadata (on a server: the first frame's, protocol keys
    /// included).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The call's metadata, to change.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// `package.Service` of the call.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Method name of the call.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Server side: the full name of the caller.
    pub fn caller(&self) -> Option<&Name> {
        self.caller.as_ref()
    }

    /// Server side: the caller's verified identity, as
    /// [`crate::Context::peer_subject`].
    pub fn peer_subject(&self) -> Option<&str> {
        self.peer_subject.as_deref()
    }

    /// The message.
    pub fn get_ref(&self) -> &T {
        &self.message
    }

    /// The message, to change.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.message
    }

    /// The message, the rest dropped.
    pub fn into_inner(self) -> T {
        self.message
    }
}

/// Runs on every call before anything is sent (client) or before the
/// handler (server); implemented by every
/// `FnMut(Request<()>) -> Result<Request<()>, RpcError>`.
pub trait Interceptor: Send + 'static {
    /// The request to go on with, or the error the call ends with.
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, RpcError>;
}

impl<F> Interceptor for F
where
    F: FnMut(Request<()>) -> Result<Request<()>, RpcError> + Send + 'static,
{
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, RpcError> {
        self(request)
    }
}

type Shared = Arc<Mutex<dyn Interceptor>>;

/// Interceptors run in the order they were added; the first error stops
/// the chain. Cheap to clone (shared).
#[derive(Clone, Default)]
pub(crate) struct Chain(Vec<Shared>);

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chain({} interceptors)", self.0.len())
    }
}

impl Chain {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The chain with `interceptor` last.
    pub(crate) fn with(&self, interceptor: impl Interceptor) -> Self {
        let mut v = self.0.clone();
        v.push(Arc::new(Mutex::new(interceptor)));
        Self(v)
    }

    /// Runs every interceptor in turn. A panicking interceptor fails the
    /// call with `Internal` instead of taking its caller down.
    pub(crate) fn run(&self, mut request: Request<()>) -> Result<Request<()>, RpcError> {
        for i in &self.0 {
            let mut guard = i.lock().unwrap_or_else(|p| p.into_inner());
            let out = std::panic::catch_unwind(AssertUnwindSafe(|| guard.call(request)));
            request = match out {
                Ok(r) => r?,
                Err(_) => return Err(RpcError::internal("an interceptor panicked")),
            };
        }
        Ok(request)
    }
}

/// The interceptor a generated `XServer::with_interceptor` holds until
/// `register` installs it for its service
/// ([`crate::Server::intercept_service`]).
#[derive(Default)]
pub struct ServiceInterceptor(Option<Box<dyn Interceptor>>);

impl ServiceInterceptor {
    /// Holds `interceptor`.
    pub fn new(interceptor: impl Interceptor) -> Self {
        Self(Some(Box::new(interceptor)))
    }

    /// Installs the interceptor, if any, for the calls of `service` on `server`.
    pub fn install(self, server: &mut crate::Server, service: &str) {
        if let Some(i) = self.0 {
            server.intercept_service(service, i);
        }
    }
}

impl std::fmt::Debug for ServiceInterceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ServiceInterceptor(set)"
        } else {
            "ServiceInterceptor(none)"
        })
    }
}

impl Interceptor for Box<dyn Interceptor> {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, RpcError> {
        (**self).call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::Code;

    fn req() -> Request<()> {
        Request::for_call((), Metadata::new(), "pkg.Svc", "M")
    }

    #[test]
    fn interceptors_run_in_order_and_the_first_error_stops_the_chain() {
        let chain = Chain::default()
            .with(|mut r: Request<()>| {
                r.metadata_mut().insert("a".into(), "1".into());
                Ok(r)
            })
            .with(|mut r: Request<()>| {
                let a = r.metadata()["a"].clone();
                r.metadata_mut().insert("b".into(), format!("{a}2"));
                Ok(r)
            });
        let out = chain.run(req()).unwrap();
        assert_eq!(out.metadata()["b"], "12");
        assert_eq!(out.service(), "pkg.Svc");
        let refusing = chain
            .with(|_r: Request<()>| Err(RpcError::new(Code::Unauthenticated, "no token")))
            .with(|_r: Request<()>| -> Result<Request<()>, RpcError> { panic!("never reached") });
        assert_eq!(
            refusing.run(req()).unwrap_err().code(),
            Code::Unauthenticated
        );
    }

    #[test]
    fn a_panicking_interceptor_fails_the_call_with_internal() {
        let chain = Chain::default()
            .with(|_r: Request<()>| -> Result<Request<()>, RpcError> { panic!("boom") });
        assert_eq!(chain.run(req()).unwrap_err().code(), Code::Internal);
        // And it keeps working (the lock is not poisoned for good).
        assert_eq!(chain.run(req()).unwrap_err().code(), Code::Internal);
    }
}
