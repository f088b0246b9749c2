//! `slim-group`: group messaging over a SLIM node, the Rust twin of the
//! official `slim-bindings-group` example (`examples/group.py` in the
//! slim-bindings wheels). Same flags, same roles, same answers, so either
//! program can be the moderator or a participant of the other's group.
//!
//! * With `--remote CHANNEL` and at least one `--invites NAME` it is the
//!   moderator: it creates the group session on the channel, invites each
//!   name in turn (waiting until it joined), and then reads chat lines.
//! * Otherwise it is a participant: it waits for an invitation and joins.
//!
//! Both then print every message as `<sender> > <text>` and answer it with
//! `message received by <own name>` sent back to its sender only (a reply,
//! marked `PUBLISH_TO`, which is itself never answered, so two examples
//! cannot loop). Each line typed on standard input is sent to the group;
//! `exit` or `quit` leaves (a moderator's leaving ends the group); the
//! moderator also takes `invite NAME` and `remove NAME`. Beyond the official
//! example a participant on SLIM 3 takes `soft-close` (go offline without
//! leaving) and `rejoin` (come back, re-admitted by the moderator if the
//! group changed meanwhile), it prints members joining and leaving, and when its standard
//! input ends it keeps receiving instead of leaving, so it can run without
//! a terminal.
//!
//! What it must not do: panic on bad input (errors go to stderr, exit 1).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use slim_transport::Name;
use slim_transport::app::{
    App, ConnId, Session, SessionConfig, SessionError, SessionEvent, SessionKind,
};
use slimrpc_examples::messaging::{Joined, join};
use slimrpc_examples::{print_line, short};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The metadata key that marks a reply (see the module documentation).
const PUBLISH_TO: &str = "PUBLISH_TO";

#[derive(Parser, Debug)]
#[command(
    name = "slim-group",
    about = "SLIM Group Messaging Example\n\nCreate or join a group messaging session with multiple participants."
)]
struct Args {
    /// Local ID in the format organization/namespace/application
    #[arg(long)]
    local: String,
    /// Remote ID (the group's channel) in the format organization/namespace/channel
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
    /// Invite participant to the group session (can be specified multiple times)
    #[arg(long = "invites")]
    invites: Vec<String>,
    /// SLIM wire generation: 3 (official 2.x/3.x) or 1 (official 1.3/1.4)
    #[arg(long, default_value = "3", value_parser = ["1", "3"])]
    protocol: String,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("invalid name {0:?}: {1}")]
    Name(String, slim_transport::name::NameError),
    #[error("{0}")]
    Join(#[from] slimrpc_examples::messaging::JoinError),
    #[error("cannot add {0} to the group: {1}")]
    Invite(String, Box<SessionError>),
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
    let invites = args
        .invites
        .iter()
        .map(|s| parse_name(s))
        .collect::<Result<Vec<_>, _>>()?;
    let channel = args.remote.as_deref().map(parse_name).transpose()?;
    let Joined {
        service,
        conn,
        app,
        instance: _,
    } = join(
        &local,
        &args.local,
        &args.shared_secret,
        &args.slim,
        args.protocol == "3",
    )
    .await?;

    let result = match channel {
        Some(channel) if !invites.is_empty() => {
            match moderate(&app, conn, &channel, &invites, &args).await {
                Ok(session) => chat(&app, session, conn, true).await,
                Err(e) => Err(e),
            }
        }
        _ => {
            println!("Waiting for session...");
            match app.listen_for_session().await {
                Ok(session) => chat(&app, session, conn, false).await,
                Err(e) => Err(e.into()),
            }
        }
    };
    drop(app);
    service.shutdown().await;
    result
}

/// Creates the group on `channel` and invites every name, one at a time.
async fn moderate(
    app: &App,
    conn: ConnId,
    channel: &Name,
    invites: &[Name],
    args: &Args,
) -> Result<Session, Error> {
    print_line(
        &format!("Creating new group session (moderator)... {}", args.local),
        "",
    );
    let config = SessionConfig {
        kind: SessionKind::Group,
        mls: args.enable_mls,
        interval: Some(Duration::from_secs(5)),
        max_retries: Some(5),
        metadata: HashMap::new(),
        ..SessionConfig::default()
    };
    let (session, established) = app.create_session(config, channel).await?;
    established.await?;
    for member in invites {
        invite(app, &session, conn, member).await?;
        println!("{} -> add {member} to the group", args.local);
    }
    Ok(session)
}

/// Invites one member (routed over the node link) and waits until it joined.
async fn invite(app: &App, session: &Session, conn: ConnId, member: &Name) -> Result<(), Error> {
    let failed = |e| Error::Invite(member.to_string(), Box::new(e));
    app.set_route(member, conn).await.map_err(failed)?;
    session
        .invite(member)
        .await
        .map_err(failed)?
        .await
        .map_err(failed)
}

/// The chat: prints and answers what arrives, sends what is typed.
async fn chat(app: &App, mut session: Session, conn: ConnId, moderator: bool) -> Result<(), Error> {
    let me = session.local_name();
    println!("Welcome to the group {}!", short(&session.destination()));
    println!("Commands:");
    println!("  - Type a message to send it to the group");
    if moderator {
        println!("  - 'remove NAME' to remove a participant");
        println!("  - 'invite NAME' to invite a participant");
    } else {
        println!("  - 'soft-close' to go offline without leaving, 'rejoin' to come back (SLIM 3)");
    }
    println!("  - 'exit' or 'quit' to leave the group");
    let mut input = Some(BufReader::new(tokio::io::stdin()).lines());
    loop {
        tokio::select! {
            event = session.recv() => match event {
                Ok(SessionEvent::Message(m)) => {
                    let text = String::from_utf8_lossy(&m.payload);
                    println!("{} > {text}", m.source);
                    if !m.metadata.contains_key(PUBLISH_TO) {
                        let reply = format!("message received by {me}");
                        if let Err(e) = session.publish_to(&m.source, reply.into_bytes(), m.metadata.clone()).await {
                            eprintln!("Error: cannot answer {}: {e}", m.source);
                        }
                    }
                }
                Ok(SessionEvent::MemberJoined(member)) => println!("{member} joined the group"),
                Ok(SessionEvent::MemberLeft(member)) => println!("{member} left the group"),
                Ok(SessionEvent::MessageLost { source, message_id }) => {
                    eprintln!("Error: message {message_id} from {source} was lost");
                }
                Ok(SessionEvent::Closed { reason }) => {
                    println!("Session closed: {reason}");
                    return Ok(());
                }
                Err(SessionError::Closed) => {
                    println!("Session closed");
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            },
            line = next_line(&mut input) => match line {
                Some(line) => {
                    if !command(app, &session, conn, moderator, line.trim()).await? {
                        session.close().await?;
                        return Ok(());
                    }
                }
                // Input ended: keep receiving until the session ends.
                None => input = None,
            },
        }
    }
}

/// The next line typed, or `None` once input ended (then never again).
async fn next_line(
    input: &mut Option<tokio::io::Lines<BufReader<tokio::io::Stdin>>>,
) -> Option<String> {
    match input {
        Some(lines) => lines.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// Carries out one typed line; `false` means leave.
async fn command(
    app: &App,
    session: &Session,
    conn: ConnId,
    moderator: bool,
    line: &str,
) -> Result<bool, Error> {
    if line.eq_ignore_ascii_case("exit") || line.eq_ignore_ascii_case("quit") {
        return Ok(false);
    }
    if line.is_empty() {
        return Ok(true);
    }
    if moderator && let Some(who) = argument(line, "invite ") {
        println!("Inviting participant: {who}");
        match parse_name(who) {
            Ok(member) => match invite(app, session, conn, &member).await {
                Ok(()) => println!("{who} joined the group"),
                Err(e) => eprintln!("Error: {e}"),
            },
            Err(e) => eprintln!("Error: {e}"),
        }
        return Ok(true);
    }
    if moderator && let Some(who) = argument(line, "remove ") {
        println!("Removing participant: {who}");
        match parse_name(who) {
            Ok(member) => match session.remove(&member).await {
                Ok(()) => println!("{who} removed from the group"),
                Err(e) => eprintln!("Error: cannot remove {who}: {e}"),
            },
            Err(e) => eprintln!("Error: {e}"),
        }
        return Ok(true);
    }
    if !moderator && line.eq_ignore_ascii_case("soft-close") {
        match session.soft_close().await {
            Ok(()) => println!("offline: the group acknowledged; 'rejoin' to come back"),
            Err(e) => eprintln!("Error: cannot soft-close: {e}"),
        }
        return Ok(true);
    }
    if !moderator && line.eq_ignore_ascii_case("rejoin") {
        match session.rejoin().await {
            Ok(()) => println!("back online in the group"),
            Err(e) => eprintln!("Error: cannot rejoin: {e}"),
        }
        return Ok(true);
    }
    match session
        .publish(line.as_bytes().to_vec(), HashMap::new())
        .await
    {
        Err(SessionError::Offline) => eprintln!("Error: offline; type 'rejoin' first"),
        other => other?,
    }
    Ok(true)
}

/// What follows `command` (any case) at the start of `line`.
fn argument<'a>(line: &'a str, command: &str) -> Option<&'a str> {
    let head = line.get(..command.len())?;
    head.eq_ignore_ascii_case(command)
        .then(|| line.get(command.len()..))
        .flatten()
        .map(str::trim)
}
