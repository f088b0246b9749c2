//! Shared parts of the example programs: the stubs generated from `example.proto` (via
//! `build.rs` and the prost-build service generator), the example server implementation
//! with the official example server's answers, and the two client scripts (four
//! point-to-point shapes, four group shapes) that print every response.
//!
//! Programs print their results on stdout (they are programs, not libraries); this module
//! logs with `tracing` and returns typed errors. It must not spawn tasks it does not own.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use slim_transport::Name;
use slim_transport::app::App;
use slim_transport::identity::SharedSecret;
use slim_transport::service::Service;
use slimrpc::{CallOptions, Context, MulticastItem, RequestStream, ResponseStream, RpcError};

/// Messages and stubs of package `example_service`.
pub mod example_service {
    include!(concat!(env!("OUT_DIR"), "/example_service.rs"));
}

use example_service::test_client::{TestClient, TestGroupClient};
use example_service::test_server::Test;
use example_service::{ExampleRequest, ExampleResponse};

/// Organisation of every example name (`agntcy/grpc/...`).
pub const ORG: &str = "agntcy";
/// Namespace of every example name.
pub const NS: &str = "grpc";
/// The official examples' shared secret.
pub const SHARED_SECRET: &str = "my_shared_secret_for_testing_purposes_only";

/// Why an example program failed.
#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    /// A call failed.
    #[error("rpc: {0}")]
    Rpc(#[from] RpcError),
    /// Setting up the SLIM app or connection failed.
    #[error("slim: {0}")]
    Slim(String),
    /// A response was not the one the example server gives.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// `agntcy/grpc/<instance>`.
pub fn name(instance: &str) -> Name {
    Name::new(ORG, NS, instance)
}

/// `org/ns/svc` of a full name (without the instance id), as the examples print members.
pub fn short(name: &Name) -> String {
    name.strings().join("/")
}

/// The official messaging examples' two-column line: a bold cyan label
/// padded to 45 columns, then the text.
pub fn print_line(label: &str, text: &str) {
    const BOLD: &str = "\x1b[1m";
    const CYAN: &str = "\x1b[96m";
    const END: &str = "\x1b[0m";
    println!("{BOLD}{CYAN}{label:<45}{END}{text}");
}

/// A 128-bit id in the hyphenated UUID form the official 3.x examples
/// print instance ids with.
pub fn uuid_text(id: u128) -> String {
    let h = format!("{id:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The SLIM wire generation a program speaks (`--protocol 1|3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Protocol {
    /// SLIM v1: the official 1.3/1.4 line.
    #[value(name = "1")]
    V1,
    /// SLIM v3: the official 2.x/3.x line (`pip install slim-bindings`).
    #[default]
    #[value(name = "3")]
    V3,
}

/// An app named `agntcy/grpc/<instance>` on `service`, speaking SLIM v1.
pub async fn app(service: &Service, instance: &str) -> Result<Arc<App>, ExampleError> {
    app_with(service, instance, Protocol::V1).await
}

/// An app named `agntcy/grpc/<instance>` on `service`, speaking `protocol`.
pub async fn app_with(
    service: &Service,
    instance: &str,
    protocol: Protocol,
) -> Result<Arc<App>, ExampleError> {
    let id = format!("{ORG}/{NS}/{instance}");
    let identity =
        SharedSecret::new(&id, SHARED_SECRET).map_err(|e| ExampleError::Slim(e.to_string()))?;
    let app = match protocol {
        Protocol::V1 => service.app(name(instance), identity).await,
        Protocol::V3 => service.app_v3(name(instance), identity).await,
    }
    .map_err(|e| ExampleError::Slim(e.to_string()))?;
    Ok(Arc::new(app))
}

/// The example server: the same answers as the official `examples/slimrpc/simple/server.py`.
/// Every answer also carries response metadata (our extension, which official clients
/// ignore): header `x-served-by: <instance>` and binary trailer `x-served-by-bin`.
#[derive(Debug, Clone, Default)]
pub struct TestService {
    /// Instance name, for logs.
    pub instance: String,
}

impl TestService {
    /// Names this instance in the call's response metadata.
    fn sign(&self, context: &Context) {
        context.set_header("x-served-by", self.instance.as_str());
        // The key ends in -bin, so this cannot fail.
        let _ = context.set_trailer_bin("x-served-by-bin", self.instance.as_bytes());
    }
}

impl Test for TestService {
    async fn example_unary_unary(
        &self,
        request: ExampleRequest,
        context: Context,
    ) -> Result<ExampleResponse, RpcError> {
        self.sign(&context);
        tracing::info!(instance = %self.instance, ?request, "unary-unary");
        Ok(ExampleResponse {
            example_integer: 1,
            example_string: "Hello, World!".into(),
        })
    }

    async fn example_unary_stream(
        &self,
        request: ExampleRequest,
        context: Context,
    ) -> Result<ResponseStream<ExampleResponse>, RpcError> {
        self.sign(&context);
        tracing::info!(instance = %self.instance, ?request, "unary-stream");
        if let Some(peers) = context.peer_responses() {
            return Ok(shared_answers(&self.instance, request, peers));
        }
        Ok(Box::pin(stream::iter((0..5).map(|i| {
            Ok(ExampleResponse {
                example_integer: i,
                example_string: format!("Response {i}"),
            })
        }))))
    }

    async fn example_stream_unary(
        &self,
        requests: RequestStream<ExampleRequest>,
        context: Context,
    ) -> Result<ExampleResponse, RpcError> {
        self.sign(&context);
        let mut seen = Vec::new();
        let mut requests = requests;
        while let Some(request) = requests.next().await {
            seen.push(request?.example_string);
        }
        tracing::info!(instance = %self.instance, count = seen.len(), "stream-unary");
        Ok(ExampleResponse {
            example_integer: seen.len() as i64,
            example_string: format!("Saw: {}", seen.join(", ")),
        })
    }

    async fn example_stream_stream(
        &self,
        requests: RequestStream<ExampleRequest>,
        context: Context,
    ) -> Result<ResponseStream<ExampleResponse>, RpcError> {
        self.sign(&context);
        tracing::info!(instance = %self.instance, "stream-stream");
        Ok(Box::pin(requests.map(|r| {
            r.map(|r| ExampleResponse {
                example_integer: r.example_integer * 100,
                example_string: format!("Echo: {}", r.example_string),
            })
        })))
    }
}

/// A shared-responses unary-stream call (see `slimrpc::shared`): answers
/// `member <instance>` at once, then reads the other members' answers until
/// `request.example_integer` of them introduced themselves, and answers
/// `<instance> saw <peers>` (comma-separated, sorted) with integer 1.
fn shared_answers(
    instance: &str,
    request: ExampleRequest,
    mut peers: slimrpc::shared::PeerResponses,
) -> ResponseStream<ExampleResponse> {
    let me = instance.to_string();
    let want = usize::try_from(request.example_integer).unwrap_or(0);
    let hello = ExampleResponse {
        example_integer: 0,
        example_string: format!("member {me}"),
    };
    let saw = async move {
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < want {
            let Some(item) = peers.next().await else {
                break;
            };
            if let Some(decoded) = item.decode::<ExampleResponse>() {
                let (_, r) = decoded?;
                if let Some(peer) = r.example_string.strip_prefix("member ") {
                    seen.insert(peer.to_string());
                }
            }
        }
        let list: Vec<String> = seen.into_iter().collect();
        Ok(ExampleResponse {
            example_integer: 1,
            example_string: format!("{me} saw {}", list.join(",")),
        })
    };
    Box::pin(stream::once(async move { Ok(hello) }).chain(stream::once(saw)))
}

/// Per-call options of the example clients.
pub fn options() -> CallOptions {
    CallOptions::with_timeout(Duration::from_secs(30))
}

/// The official client's request stream: `Request 0` .. `Request 9`.
pub fn requests() -> impl Stream<Item = ExampleRequest> + Send + 'static {
    stream::iter((0..10).map(|i| ExampleRequest {
        example_integer: i,
        example_string: format!("Request {i}"),
    }))
}

fn hello() -> ExampleRequest {
    ExampleRequest {
        example_integer: 1,
        example_string: "hello".into(),
    }
}

fn show(r: &ExampleResponse) -> String {
    format!(
        "example_integer: {}, example_string: {:?}",
        r.example_integer, r.example_string
    )
}

/// What a client run printed, line by line (also returned for tests).
pub type Transcript = Vec<String>;

fn say(out: &mut Transcript, line: String) {
    println!("{line}");
    out.push(line);
}

/// The four point-to-point shapes, as the official `client.py` runs them.
pub async fn run_p2p(client: &TestClient) -> Result<Transcript, ExampleError> {
    let mut out = Transcript::new();
    let r = client.example_unary_unary_with(hello(), options()).await?;
    say(&mut out, format!("unary-unary: {}", show(&r)));
    let mut s = client.example_unary_stream_with(hello(), options());
    while let Some(r) = s.next().await {
        say(&mut out, format!("unary-stream: {}", show(&r?)));
    }
    let r = client
        .example_stream_unary_with(requests(), options())
        .await?;
    say(&mut out, format!("stream-unary: {}", show(&r)));
    let mut s = client.example_stream_stream_with(requests(), options());
    while let Some(r) = s.next().await {
        say(&mut out, format!("stream-stream: {}", show(&r?)));
    }
    Ok(out)
}

async fn drain_group(
    out: &mut Transcript,
    shape: &str,
    mut s: slimrpc::MulticastStream<ExampleResponse>,
) -> Result<(), ExampleError> {
    while let Some(item) = s.next().await {
        let MulticastItem { source, message } = item?;
        say(
            out,
            format!("{shape} [{}] {}", short(&source), show(&message)),
        );
    }
    Ok(())
}

/// The four group shapes, as the official `client_group.py` runs them; every response is
/// printed with the member that sent it.
pub async fn run_group(client: &TestGroupClient) -> Result<Transcript, ExampleError> {
    let mut out = Transcript::new();
    drain_group(
        &mut out,
        "group unary-unary:",
        client.example_unary_unary_with(hello(), options()),
    )
    .await?;
    drain_group(
        &mut out,
        "group unary-stream:",
        client.example_unary_stream_with(hello(), options()),
    )
    .await?;
    let three = || {
        stream::iter((0..3).map(|i| ExampleRequest {
            example_integer: i,
            example_string: format!("item {i}"),
        }))
    };
    drain_group(
        &mut out,
        "group stream-unary:",
        client.example_stream_unary_with(three(), options()),
    )
    .await?;
    drain_group(
        &mut out,
        "group stream-stream:",
        client.example_stream_stream_with(three(), options()),
    )
    .await?;
    Ok(out)
}

/// Starts the example server as `agntcy/grpc/<instance>` on `app` (its base name also
/// subscribed on link `conn` when given).
pub async fn serve(
    app: Arc<App>,
    instance: &str,
    conn: Option<slimrpc::transport::ConnId>,
) -> Result<slimrpc::ServerHandle, ExampleError> {
    Ok(serve_with_health(app, instance, conn).await?.0)
}

/// [`serve`], also serving `grpc.health.v1.Health`; returns the reporter that sets what it
/// answers (the whole server starts SERVING).
pub async fn serve_with_health(
    app: Arc<App>,
    instance: &str,
    conn: Option<slimrpc::transport::ConnId>,
) -> Result<(slimrpc::ServerHandle, slimrpc::health::HealthReporter), ExampleError> {
    let mut server = match conn {
        Some(c) => slimrpc::Server::new_with_connection(app, name(instance), c),
        None => slimrpc::Server::new(app, name(instance)),
    };
    // Takes part in shared-responses calls (group-ops); other calls are unchanged.
    server.set_shared_responses(true);
    example_service::test_server::TestServer::new(TestService {
        instance: instance.to_string(),
    })
    .register(&mut server);
    let health = server.enable_health();
    Ok((server.start().await?, health))
}

/// Logs to stderr, `RUST_LOG` filtered (default `warn`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// A SLIM service linked (v1) to the node at `url`; returns the service and the link.
pub async fn connect(url: &str) -> Result<(Service, slimrpc::transport::ConnId), ExampleError> {
    connect_with(url, Protocol::V1).await
}

/// A SLIM service linked to the node at `url` in `protocol`.
pub async fn connect_with(
    url: &str,
    protocol: Protocol,
) -> Result<(Service, slimrpc::transport::ConnId), ExampleError> {
    let service = Service::new();
    let generation = match protocol {
        Protocol::V1 => slim_transport::service::Generation::V1,
        Protocol::V3 => slim_transport::service::Generation::V3,
    };
    let opts = slim_transport::service::LinkOptions {
        generation: Some(generation),
        ..Default::default()
    };
    let conn = service
        .connect_with(url, opts)
        .await
        .map_err(|e| ExampleError::Slim(format!("connect {url}: {e}")))?;
    Ok((service, conn))
}

/// What the messaging programs (`slim-p2p`, `slim-group`) share: their
/// process shell and how they join a node, as the official messaging
/// examples do.
pub mod messaging {
    use std::fmt::Display;
    use std::process::ExitCode;

    use slim_transport::Name;
    use slim_transport::app::{App, ConnId, SessionError};
    use slim_transport::identity::{IdentityError, IdentityProvider, SharedSecret};
    use slim_transport::service::{Generation, LinkOptions, Service, TransportError};

    use super::{print_line, uuid_text};

    /// Why joining the node failed.
    #[derive(Debug, thiserror::Error)]
    pub enum JoinError {
        #[error("identity: {0}")]
        Identity(#[from] IdentityError),
        #[error("cannot connect to {0}: {1}")]
        Connect(String, TransportError),
        #[error("{0}")]
        Session(#[from] SessionError),
    }

    /// An app linked to a node, as a messaging program uses it.
    pub struct Joined {
        pub service: Service,
        pub conn: ConnId,
        pub app: App,
        /// The instance id peers see, as the official examples print it.
        pub instance: String,
    }

    /// Links to the node at `slim` on SLIM v3 (`v3`) or v1, starts the app
    /// `local` with a shared-secret identity, prints its "Created app"
    /// line and subscribes its name on the link.
    pub async fn join(
        local: &Name,
        local_id: &str,
        secret: &str,
        slim: &str,
        v3: bool,
    ) -> Result<Joined, JoinError> {
        let service = Service::new();
        let link = LinkOptions {
            generation: Some(if v3 { Generation::V3 } else { Generation::V1 }),
            ..LinkOptions::default()
        };
        let conn = service
            .connect_with(slim, link)
            .await
            .map_err(|e| JoinError::Connect(slim.to_string(), e))?;
        println!("Using shared-secret authentication.");
        let identity = SharedSecret::new(local_id, secret)?;
        // The id peers see: on v3 the 128-bit id derived from the identity,
        // printed as a UUID as the official 3.x examples do.
        let wire_id = v3.then(|| slim_transport::name::app_id_v3(identity.id()));
        let app = if v3 {
            service.app_v3(local.clone(), identity).await?
        } else {
            service.app(local.clone(), identity).await?
        };
        let instance = match wire_id {
            Some(id) => uuid_text(id),
            None => app.name().id().to_string(),
        };
        print_line(&instance, "Created app");
        app.subscribe(local, Some(conn)).await?;
        Ok(Joined {
            service,
            conn,
            app,
            instance,
        })
    }

    /// The process shell: logs to stderr (`RUST_LOG`, default `info`), runs
    /// `program` on a multi-threaded runtime until it ends or Ctrl-C; an
    /// error is printed as `Error: ...` with exit code 1.
    pub fn main<E: Display>(program: impl Future<Output = Result<(), E>>) -> ExitCode {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("Error: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        rt.block_on(async {
            tokio::select! {
                r = program => match r {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("Error: {e}");
                        ExitCode::FAILURE
                    }
                },
                _ = tokio::signal::ctrl_c() => {
                    println!("\nClient interrupted by user.");
                    ExitCode::SUCCESS
                }
            }
        })
    }
}
