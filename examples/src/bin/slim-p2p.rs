//! `slim-p2p`: point-to-point messaging over a SLIM node, the Rust twin of
//! the official `slim-bindings-p2p` example (`examples/point_to_point.py`
//! in the slim-bindings 1.3.0 wheel). Same flags, same printed lines, same
//! echo text, so either program can sit on either end.
//!
//! * Without `--message` it listens: every session another app opens to it
//!   gets its own task that echoes each message back as
//!   `"<text> from <instance id>"` until the session ends or stays silent
//!   for 30 s.
//! * With `--message` (and `--remote`) it opens a point-to-point session,
//!   and `--iterations` times sends the message, waits for the reply and
//!   prints `received (from session <id>): <reply>`, pausing 1 s between
//!   rounds (`--pause-ms`, beyond the official flags); then it closes the session
//!   and exits.
//!
//! What it must not do: anything the official example does not (no extra
//! protocol behaviour), or panic on bad input (errors go to stderr, exit 1).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use slim_transport::Name;
use slim_transport::app::{
    App, ConnId, Session, SessionConfig, SessionError, SessionEvent, SessionKind,
};
use slimrpc_examples::messaging::{Joined, join};
use slimrpc_examples::print_line;
use tokio::task::JoinSet;

/// How long either side waits for the next message (as the official one).
const RECEIVE_WAIT: Duration = Duration::from_secs(30);

#[derive(Parser, Debug)]
#[command(
    name = "slim-p2p",
    about = "SLIM Point-to-Point Messaging Example\n\nSend messages to a specific peer or listen for incoming connections."
)]
struct Args {
    /// Local ID in the format organization/namespace/application
    #[arg(long)]
    local: String,
    /// Remote ID in the format organization/namespace/application-or-stream
    #[arg(long)]
    remote: Option<String>,
    /// SLIM remote endpoint URL
    #[arg(long, default_value = "http://127.0.0.1:46357")]
    slim: String,
    /// Enable OpenTelemetry tracing (accepted for parity; no effect here)
    #[arg(long)]
    enable_opentelemetry: bool,
    /// Enable MLS (Message Layer Security) for sessions
    #[arg(long)]
    enable_mls: bool,
    /// Shared secret for authentication (development only)
    #[arg(long, default_value = "abcde-12345-fedcb-67890-deadc")]
    shared_secret: String,
    /// Message to send (activates sender mode)
    #[arg(long)]
    message: Option<String>,
    /// Number of request/reply cycles in sender mode
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    iterations: u32,
    /// Pause between rounds in milliseconds (the official example's 1 s by default)
    #[arg(long, default_value_t = 1000)]
    pause_ms: u64,
    /// SLIM wire generation: 3 (official 2.x/3.x) or 1 (official 1.3/1.4)
    #[arg(long, default_value = "3", value_parser = ["1", "3"])]
    protocol: String,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("Remote ID must be provided when message is specified.")]
    NoRemote,
    #[error("invalid name {0:?}: {1}")]
    Name(String, slim_transport::name::NameError),
    #[error("{0}")]
    Join(#[from] slimrpc_examples::messaging::JoinError),
    #[error("{0}")]
    Session(#[from] SessionError),
}

fn parse_name(s: &str) -> Result<Name, Error> {
    s.parse().map_err(|e| Error::Name(s.to_string(), e))
}

fn main() -> ExitCode {
    slimrpc_examples::messaging::main(run(Args::parse()))
}

async fn run(args: Args) -> Result<(), Error> {
    let local = parse_name(&args.local)?;
    let Joined {
        service,
        conn,
        app,
        instance,
    } = join(
        &local,
        &args.local,
        &args.shared_secret,
        &args.slim,
        args.protocol == "3",
    )
    .await?;
    // Checked after the app exists, as the official example does.
    if args.message.is_some() && args.remote.is_none() {
        return Err(Error::NoRemote);
    }

    let result = match (&args.message, &args.remote) {
        (Some(message), Some(remote)) => {
            let remote = parse_name(remote)?;
            send(&app, conn, &remote, message, &args, &instance).await
        }
        _ => listen(&app, &instance).await,
    };
    drop(app);
    service.shutdown().await;
    result
}

/// Active mode: one session, `iterations` request/reply rounds.
async fn send(
    app: &App,
    conn: ConnId,
    remote: &Name,
    message: &str,
    args: &Args,
    instance: &str,
) -> Result<(), Error> {
    app.set_route(remote, conn).await?;
    let config = SessionConfig {
        kind: SessionKind::PointToPoint,
        mls: args.enable_mls,
        interval: Some(Duration::from_secs(5)),
        max_retries: Some(5),
        metadata: HashMap::new(),
        ..SessionConfig::default()
    };
    let (mut session, established) = app.create_session(config, remote).await?;
    established.await?;
    let id = session.id();
    let mut closed = false;
    for i in 1..=args.iterations {
        match round(&mut session, message, i, args.iterations, instance).await {
            Ok(reply) => print_line(instance, &format!("received (from session {id}): {reply}")),
            Err(e) => {
                print_line(instance, &format!("error: {e}"));
                if matches!(e, SessionError::Closed) {
                    closed = true;
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
    }
    if !closed {
        session.close().await?;
    }
    Ok(())
}

/// Publishes the message once and returns the text of the next reply.
async fn round(
    session: &mut Session,
    message: &str,
    i: u32,
    n: u32,
    instance: &str,
) -> Result<String, SessionError> {
    session
        .publish(message.as_bytes().to_vec(), HashMap::new())
        .await?;
    print_line(instance, &format!("Sent message {message} - {i}/{n}"));
    let payload = next_message(session).await?;
    Ok(String::from_utf8_lossy(&payload).into_owned())
}

/// The next application message, bounded by [`RECEIVE_WAIT`].
async fn next_message(session: &mut Session) -> Result<Vec<u8>, SessionError> {
    tokio::time::timeout(RECEIVE_WAIT, async {
        loop {
            match session.recv().await? {
                SessionEvent::Message(m) => return Ok(m.payload),
                SessionEvent::Closed { .. } => return Err(SessionError::Closed),
                _ => {}
            }
        }
    })
    .await
    .map_err(|_| SessionError::Timeout {
        what: "receiving a message",
    })?
}

/// Passive mode: accept sessions forever, one echo task each.
async fn listen(app: &App, instance: &str) -> Result<(), Error> {
    let mut tasks = JoinSet::new();
    loop {
        print_line(instance, "waiting for new session to be established");
        let session = loop {
            tokio::select! {
                s = app.listen_for_session() => break s?,
                // Reap finished echo tasks while waiting.
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        };
        print_line(instance, &format!("new session {}", session.id()));
        tasks.spawn(echo(session, instance.to_string()));
    }
}

/// Echoes every message of one session until it ends or stays silent.
async fn echo(mut session: Session, instance: String) {
    while let Ok(payload) = next_message(&mut session).await {
        let text = String::from_utf8_lossy(&payload).into_owned();
        print_line(&instance, &format!("received: {text}"));
        let reply = format!("{text} from {instance}");
        if let Err(e) = session.publish(reply.into_bytes(), HashMap::new()).await {
            tracing::warn!(session = session.id(), error = %e, "echo failed");
        }
    }
}
