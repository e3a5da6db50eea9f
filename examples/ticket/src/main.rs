//! `ticket`: the Ticket example as a command line.
//!
//! `cargo run -p ticket` runs a scripted scenario and prints the ticket's
//! state and history; the subcommands work on one ticket at a time
//! (`move-message` on two, `race` on a new one). Events
//! are kept in `tickets.db` (SQLite; `--db` to choose the file), so tickets
//! survive restarts; `--memory` keeps them in memory instead.
//!
//! Every command takes `--command-id UUID`: sent again with the same id (a
//! retry after a lost answer), it reports that it was already done, with
//! the first outcome, and changes nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use es_core::blocking::Repository;
use es_core::prelude::*;
use es_core::privacy::{Forget, KeyEncryptionKey, MemoryKeyStore};
use es_core::verify::Verify;
use es_core::{TrailEntry, Uuid};
use es_sqlite::{ChainError, ChainHead, SqliteStore};
use ticket::{AgentId, Reason, Ticket, TicketError, TicketEvent};

#[derive(Parser)]
#[command(
    about = "Support tickets, event sourced with es",
    version,
    after_help = "The customers' e-mails are encrypted under a key-encryption key taken from \
TICKETS_KEK (64 hex digits) or, when it is not set, the key file <db>.kek, created beside the \
database (readable by its owner only). A real deployment keeps the key-encryption key elsewhere."
)]
struct Cli {
    /// The SQLite file holding the events (created when missing).
    #[arg(long, default_value = "tickets.db", global = true)]
    db: PathBuf,
    /// Keep the events in memory instead: nothing survives the process.
    #[arg(long, global = true, conflicts_with = "db")]
    memory: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scripted scenario on a new ticket and print its state and history (the default).
    Demo,
    /// Open a ticket.
    Open {
        /// The ticket's id.
        id: String,
        /// What it is about.
        #[arg(long)]
        title: String,
        /// The customer's e-mail.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        once: Once,
    },
    /// Add a message.
    Message {
        /// The ticket's id.
        id: String,
        /// The text.
        body: String,
        /// `customer` or an agent id.
        #[arg(long, default_value = "customer")]
        by: String,
        #[command(flatten)]
        once: Once,
    },
    /// Escalate a ticket.
    Escalate {
        /// The ticket's id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// The agent.
        #[arg(long)]
        by: String,
        #[command(flatten)]
        once: Once,
    },
    /// Withdraw the ticket's escalation, recorded by mistake: a compensating
    /// event that names the escalation it corrects.
    CorrectEscalation {
        /// The ticket's id.
        id: String,
        /// Why the escalation was wrong.
        #[arg(long)]
        reason: String,
        /// Who corrects it.
        #[arg(long)]
        by: String,
        #[command(flatten)]
        once: Once,
    },
    /// Close a ticket.
    Close {
        /// The ticket's id.
        id: String,
        /// How it ended.
        #[arg(long)]
        resolution: String,
        /// Who closes it.
        #[arg(long, default_value = "customer")]
        by: String,
        #[command(flatten)]
        once: Once,
    },
    /// Move a message posted on the wrong ticket to another, both tickets
    /// changed in one atomic append.
    MoveMessage {
        /// The ticket the message is on.
        from: String,
        /// The ticket it goes to.
        to: String,
        /// The message's number on FROM (1 for the first message added or
        /// moved in, and so on); default: the last one still there.
        #[arg(long)]
        message: Option<u32>,
        /// Who moves it.
        #[arg(long, default_value = "agent")]
        by: String,
    },
    /// Print a ticket's state, now or in the past, or how it changed
    /// between two versions.
    Show {
        /// The ticket's id.
        id: String,
        /// The state at this version.
        #[arg(long, conflicts_with_all = ["as_of", "diff"])]
        at_version: Option<u64>,
        /// The state at this time (RFC 3339, e.g. 2026-11-23T18:00:00Z).
        #[arg(long, conflicts_with = "diff")]
        as_of: Option<Timestamp>,
        /// How the state changed from version A to version B (`A..B`):
        /// each changed field with its value at both, then the events
        /// between.
        #[arg(long, value_name = "A..B", value_parser = parse_versions)]
        diff: Option<(u64, u64)>,
    },
    /// Two agents add a message to one new ticket at the same moment, then
    /// one closes it while the other escalates it: shows which conflicts
    /// the domain lets through without deciding again, and which it
    /// decides again.
    Race,
    /// Print a ticket's history: who did what, when and why; every event
    /// as recorded (corrections marked), then what still stands.
    History {
        /// The ticket's id.
        id: String,
    },
    /// Print the business transaction an event of a ticket belongs to: every
    /// event with its correlation, across tickets, each under the event that
    /// caused it.
    Trail {
        /// The ticket's id.
        id: String,
        /// The event's version in the ticket.
        version: u64,
    },
    /// Forget the ticket's customer: their e-mail is destroyed (its key is),
    /// and reads as `(forgotten)` from then on; the ticket and the rest of
    /// its history stay as they are.
    Forget {
        /// The ticket's id.
        id: String,
        /// Why (recorded with the forgetting).
        #[arg(long)]
        reason: String,
        /// Who asks.
        #[arg(long)]
        by: String,
    },
    /// Replay every stored ticket through this build and report each event
    /// it cannot decode, each `apply` that panics and each snapshot that
    /// differs from its events; on a SQLite file, then recompute its audit
    /// chain and report the first event edited, deleted, inserted or
    /// reordered, and the head (`POSITION:HASH`) to keep elsewhere. Exits
    /// with 1 when either finds anything. Runs on a store the deploy check
    /// refuses, and writes nothing.
    Verify {
        /// A head printed by an earlier `verify` and kept elsewhere: also
        /// prove that no event at or before it changed.
        #[arg(long, value_name = "POSITION:HASH")]
        head: Option<ChainHead>,
    },
    /// Serve the tickets over HTTP: a JSON API and a web page with the
    /// list, each ticket's timeline and a slider through its versions,
    /// updated live. Prints `listening on http://ADDR` once it accepts
    /// connections; Ctrl-C stops it. `RUST_LOG` sets what it logs
    /// (default: `info`).
    Serve {
        /// Where to listen (port 0: any free port, printed).
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
        addr: std::net::SocketAddr,
    },
}

/// What makes a command idempotent.
#[derive(clap::Args)]
struct Once {
    /// This command's id (a UUID): a command sent again with the same id
    /// is reported as already done, with its first outcome, and changes
    /// nothing. Without it, every run is a new command.
    #[arg(long, value_name = "UUID")]
    command_id: Option<Uuid>,
}

impl Once {
    /// `meta` with the command id, when one was given.
    fn on(&self, meta: Metadata) -> Metadata {
        match self.command_id {
            Some(id) => meta.command_id(id),
            None => meta,
        }
    }
}

type Failure = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Demo);
    let outcome = if cli.memory {
        let keys = MemoryKeyStore::new(KeyEncryptionKey::generate());
        run(
            &Repository::<Ticket, _>::new(InMemoryStore::new().with_keys(keys)),
            command,
        )
    } else {
        example_cli_support::key_encryption_key(&cli.db, KEK_VAR)
            .and_then(|kek| Ok(SqliteStore::options().personal_data(kek).open(&cli.db)?))
            .and_then(|store| {
                // The deploy check: a file holding events this build cannot
                // decode (written by a newer one) is not touched. `verify`
                // reads it all the same, to say what exactly it cannot read.
                if let Command::Verify { head } = command {
                    return verify_sqlite(&store, head);
                }
                es_core::blocking::block_on(es_core::registry::check_store(&store))?;
                if let Command::Serve { addr } = command {
                    return serve(store, addr);
                }
                run(&Repository::<Ticket, _>::new(store), command)
            })
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprintln!("  because: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Where the key-encryption key of the customers' data is looked for.
const KEK_VAR: &str = "TICKETS_KEK";

fn run<S: Forget + Clone>(
    tickets: &Repository<Ticket, S>,
    command: Command,
) -> Result<(), Failure> {
    match command {
        Command::Demo => demo(tickets),
        Command::Open {
            id,
            title,
            email,
            once,
        } => {
            let meta = once.on(Metadata::new().actor("customer").command("open"));
            report(tickets.execute_with(&id, meta, |t| t.open(&title, &email)))?;
            show(tickets, &id)
        }
        Command::Message { id, body, by, once } => {
            let meta = once.on(Metadata::new().actor(by.clone()).command("add-message"));
            report(tickets.execute_with(&id, meta, |t| t.add_message(&body, &by)))?;
            show(tickets, &id)
        }
        Command::Escalate {
            id,
            reason,
            by,
            once,
        } => {
            let meta = once.on(Metadata::new()
                .actor(by.clone())
                .command("escalate")
                .reason(reason.clone()));
            report(tickets.execute_with(&id, meta, |t| {
                t.escalate(Reason(reason.clone()), AgentId(by.clone()))
            }))?;
            show(tickets, &id)
        }
        Command::CorrectEscalation {
            id,
            reason,
            by,
            once,
        } => correct_escalation(tickets, &id, &reason, by, &once),
        Command::Close {
            id,
            resolution,
            by,
            once,
        } => {
            let meta = once.on(Metadata::new()
                .actor(by)
                .command("close")
                .reason(resolution.clone()));
            report(tickets.execute_with(&id, meta, |t| t.close(&resolution)))?;
            show(tickets, &id)
        }
        Command::MoveMessage {
            from,
            to,
            message,
            by,
        } => move_message(tickets, &from, &to, message, by),
        Command::Show {
            id,
            diff: Some((from, to)),
            ..
        } => show_diff(tickets, &id, from, to),
        Command::Race => race(tickets),
        Command::Show {
            id,
            at_version,
            as_of,
            diff: None,
        } => {
            let loaded = match (at_version, as_of) {
                (Some(v), _) => tickets.load_at(&id, v)?,
                (None, Some(t)) => tickets.load_as_of(&id, t)?,
                (None, None) => tickets.load(&id)?,
            };
            print_state(&id, &loaded);
            Ok(())
        }
        Command::History { id } => {
            print_history(&tickets.trail(&id)?);
            Ok(())
        }
        Command::Trail { id, version } => trail(tickets, &id, version),
        Command::Forget { id, reason, by } => forget(tickets, &id, reason, by),
        Command::Verify { head: None } => example_cli_support::replay_check(
            Verify::new(tickets.as_async().store()).aggregate::<Ticket>(),
        ),
        Command::Serve { .. } => {
            Err("`serve` serves a SQLite file (`--db FILE`), not `--memory`".into())
        }
        Command::Verify { head: Some(_) } => {
            Err("`--head` checks the audit chain of a SQLite file, which `--memory` has not".into())
        }
    }
}

/// `serve`: the HTTP service on `addr` until Ctrl-C.
fn serve(store: SqliteStore, addr: std::net::SocketAddr) -> Result<(), Failure> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let service = ticket::service::Service::start(store)?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        // The one line a script (or a test) waits for, with the real port.
        println!("listening on http://{}", listener.local_addr()?);
        std::io::Write::flush(&mut std::io::stdout())?;
        let stop = async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            tracing::info!("stopping");
        };
        ticket::service::serve(listener, service, stop).await?;
        Ok(())
    })
}

/// `verify` on a SQLite file: the replay check, then the audit chain, each
/// reported whatever the other found.
fn verify_sqlite(store: &SqliteStore, kept: Option<ChainHead>) -> Result<(), Failure> {
    let replayed = example_cli_support::replay_check(Verify::new(store).aggregate::<Ticket>());
    let chained = audit_chain(store, kept);
    match (replayed, chained) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(replay), Err(chain)) => Err(format!("{replay}; {chain}").into()),
    }
}

/// Recomputes the audit chain and prints what it proved, or where it
/// breaks; then, given a kept head, whether nothing up to it changed.
fn audit_chain(store: &SqliteStore, kept: Option<ChainHead>) -> Result<(), Failure> {
    let shown = |verified: Result<es_sqlite::ChainReport, ChainError>| match verified {
        Ok(report) => Ok(report.to_string()),
        Err(ChainError::Broken { position, tamper }) => {
            Err(format!("broken at position {position}: {tamper}"))
        }
        Err(e) => Err(e.to_string()),
    };
    let mut clean = true;
    match shown(es_core::blocking::block_on(store.verify_chain())) {
        Ok(report) => println!("audit chain: {report}"),
        Err(why) => {
            println!("audit chain: {why}");
            clean = false;
        }
    }
    if let Some(kept) = kept {
        match shown(es_core::blocking::block_on(store.verify_chain_to(kept))) {
            Ok(_) => println!("kept head {kept}: nothing at or before it changed"),
            Err(why) => {
                println!("kept head {kept}: {why}");
                clean = false;
            }
        }
    }
    if clean {
        Ok(())
    } else {
        Err("the audit chain does not verify".into())
    }
}

/// `A..B` as two versions.
fn parse_versions(text: &str) -> Result<(u64, u64), String> {
    let (from, to) = text
        .split_once("..")
        .ok_or_else(|| format!("`{text}` is not a range of versions like 3..6"))?;
    let version = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|e| format!("`{v}` is not a version: {e}"))
    };
    Ok((version(from)?, version(to)?))
}

/// Moves message `message` (default: the last one still on `from`) to
/// `to`, both tickets in one atomic append.
fn move_message<S: EventStore + SnapshotStore>(
    tickets: &Repository<Ticket, S>,
    from: &str,
    to: &str,
    message: Option<u32>,
    by: String,
) -> Result<(), Failure> {
    let source = tickets.load(from)?;
    let received = source.messages + u32::try_from(source.moved_out.len())?;
    let Some(n) = message.or_else(|| (1..=received).rev().find(|&n| source.holds_message(n)))
    else {
        return Err(format!("refused: ticket {from} holds no message").into());
    };
    let Some(moved) = ticket::message(&tickets.history(from)?, n) else {
        return Err(format!("refused: {}", TicketError::NoSuchMessage(n)).into());
    };
    let meta = Metadata::new().actor(by).command("move-message");
    let outcome = tickets.execute_many_with([from, to], meta, |states| {
        Ticket::move_message(states, [from, to], n, &moved)
    });
    match outcome {
        Ok([out, into]) => {
            println!(
                "ok: message {n} moved; ticket {from} at version {}, ticket {to} at version {}",
                out.version, into.version
            );
            show(tickets, from)?;
            show(tickets, to)
        }
        Err(ExecuteError::Rejected(why)) => Err(format!("refused: {why}").into()),
        Err(e) => Err(e.into()),
    }
}

/// `ticket race`: see [`ticket::race`].
fn race<S: EventStore + SnapshotStore + Clone>(
    tickets: &Repository<Ticket, S>,
) -> Result<(), Failure> {
    let store = tickets.as_async().store();
    // Two servers: a repository each, judging conflicts with the domain.
    let server = || {
        Repository::<Ticket, _>::new(store.clone())
            .with_conflict_policy(ConflictPolicy::CheckConflicts)
    };
    let (a, b) = (server(), server());
    let id = format!(
        "race-{}",
        &es_core::Uuid::now_v7().simple().to_string()[20..]
    );
    tickets.execute(&id, |t| t.open("Printer on fire", "ada@example.com"))?;
    tickets.execute(&id, |t| t.add_message("It smokes.", "customer"))?;

    println!("== ticket {id}: agent-7 and agent-9 answer at the same moment\n");
    let (seven, nine) = ticket::race::race(
        &a,
        &b,
        &id,
        |t| t.add_message("We are on it.", "agent-7"),
        |t| t.add_message("Unplug it, please.", "agent-9"),
    );
    describe("agent-7's message", &seven);
    describe("agent-9's message", &nine);

    tickets.execute(&id, |t| t.add_message("Still smoking!", "customer"))?;
    println!("\n== the customer writes again; agent-7 closes while agent-9 escalates\n");
    let (close, escalate) = ticket::race::race(
        &a,
        &b,
        &id,
        |t| t.close("replaced the fuser"),
        |t| t.escalate(Reason("smoke".into()), AgentId("agent-9".into())),
    );
    describe("the close", &close);
    describe("the escalation", &escalate);
    println!();
    show(tickets, &id)
}

/// One side of a race, in a sentence.
fn describe(what: &str, side: &ticket::race::Side) {
    let how = match (&side.outcome, side.lost()) {
        (Ok(done), false) => format!("won the race: appended at v{}", done.version),
        (Ok(done), true) if done.reruns == 0 => format!(
            "lost the race, and the domain saw no conflict: appended after the winner at v{} \
             without deciding again ({} attempts, {} rerun avoided)",
            done.version,
            done.attempts,
            done.reruns_avoided()
        ),
        (Ok(done), true) => format!(
            "lost the race, and the domain saw a conflict: decided again on the fresh state, \
             appended at v{} ({} attempts, {} rerun)",
            done.version, done.attempts, done.reruns
        ),
        (Err(ExecuteError::Rejected(why)), true) => format!(
            "lost the race, and the domain saw a conflict: decided again on the fresh state, \
             and refused: {why}"
        ),
        (Err(e), _) => format!("failed: {e}"),
    };
    println!("{what} {how}");
}

/// `trail ID VERSION`: the business transaction of the ticket's event at
/// `version`, across tickets.
fn trail<S: Forget>(
    tickets: &Repository<Ticket, S>,
    id: &str,
    version: u64,
) -> Result<(), Failure> {
    let history = tickets.history_between(id, version..=version)?;
    let Some(event) = history.first() else {
        return Err(format!("refused: ticket {id} has no version {version}").into());
    };
    let correlation = event.correlation();
    let trail = es_core::blocking::block_on(es_core::audit::trail_of(
        tickets.as_async().store(),
        correlation,
    ))?;
    println!(
        "== the transaction {correlation}: {} event(s)\n",
        trail.len()
    );
    print!("{trail}");
    Ok(())
}

/// `forget ID`: forgets the ticket's customer (the subject of its e-mail is
/// the ticket's stream).
fn forget<S: Forget>(
    tickets: &Repository<Ticket, S>,
    id: &str,
    reason: String,
    by: String,
) -> Result<(), Failure> {
    let stream = tickets.as_async().stream_id(id)?;
    if !tickets.load(id)?.exists() {
        return Err(format!("refused: there is no ticket {id}").into());
    }
    let meta = Metadata::new().actor(by).command("forget").reason(reason);
    let forgotten = tickets.forget_with(stream.as_str(), meta)?;
    println!(
        "ok: the customer of ticket {id} is forgotten ({} key(s) destroyed)",
        forgotten.keys_destroyed
    );
    print_history(&tickets.trail(id)?);
    Ok(())
}

/// `correct-escalation`: withdraws the last escalation in force with a
/// compensating event.
fn correct_escalation<S: EventStore + SnapshotStore>(
    tickets: &Repository<Ticket, S>,
    id: &str,
    reason: &str,
    by: String,
    once: &Once,
) -> Result<(), Failure> {
    let meta = once.on(Metadata::new()
        .actor(by)
        .command("correct-escalation")
        .reason(reason));
    // The escalation to correct is found in the current trail: a
    // repeat must be known before, as the first run changed it.
    if let Some(done) = tickets.earlier_outcome(id, &meta)? {
        report(Ok(done))?;
        return show(tickets, id);
    }
    let Some(escalation) = ticket::last_escalation(&tickets.trail(id)?).map(|e| e.event_id) else {
        return Err(format!("refused: ticket {id} has no escalation to correct").into());
    };
    report(
        tickets
            .command(id)
            .metadata(meta)
            .compensating(escalation)
            .execute(|t| t.withdraw_escalation(Reason(reason.to_owned()))),
    )?;
    show(tickets, id)
}

/// `show --diff FROM..TO`: what changed between two versions, and the
/// events between them.
fn show_diff<S: EventStore + SnapshotStore>(
    tickets: &Repository<Ticket, S>,
    id: &str,
    from: u64,
    to: u64,
) -> Result<(), Failure> {
    let diff = tickets.diff(id, from, to)?;
    println!("ticket {id}, {diff}");
    let between =
        tickets.history_between(id, diff.from.min(diff.to) + 1..=diff.from.max(diff.to))?;
    if !between.is_empty() {
        println!("\n== the events between\n");
        print_header();
        for e in &between {
            print_entry(e, "");
        }
    }
    Ok(())
}

/// Turns a refused command into an error the user reads.
fn report(
    outcome: Result<es_core::Executed<Ticket>, ExecuteError<TicketError>>,
) -> Result<(), Failure> {
    match outcome {
        Ok(done) if done.repeated => {
            println!(
                "ok: already done, nothing changed: ticket at version {}",
                done.version
            );
            Ok(())
        }
        Ok(done) => {
            println!("ok: ticket at version {}", done.version);
            Ok(())
        }
        Err(ExecuteError::Rejected(why)) => Err(format!("refused: {why}").into()),
        Err(e) => Err(e.into()),
    }
}

fn show<S: EventStore + SnapshotStore>(
    tickets: &Repository<Ticket, S>,
    id: &str,
) -> Result<(), Failure> {
    print_state(id, &tickets.load(id)?);
    Ok(())
}

/// The scenario of the seeds: open, talk, an escalation recorded by
/// mistake and withdrawn, a refused and an accepted escalation, close;
/// then the state, a look back in time, and the history, raw and
/// effective.
fn demo<S: EventStore + SnapshotStore>(tickets: &Repository<Ticket, S>) -> Result<(), Failure> {
    let id = format!(
        "demo-{}",
        &es_core::Uuid::now_v7().simple().to_string()[20..]
    );
    let agent = || Metadata::new().actor("agent-7");
    let customer = || Metadata::new().actor("customer");
    println!("== a new ticket: {id}\n");

    // The customer's app gives its command an id, and sends it again when
    // the answer does not arrive: the second is a repeat, and changes nothing.
    let opening = customer().command("open").command_id(Uuid::now_v7());
    let open = |t: &Ticket| t.open("Printer on fire", "ada@example.com");
    tickets.execute_with(&id, opening.clone(), open)?;
    let retry = tickets.execute_with(&id, opening, open)?;
    if retry.repeated {
        println!(
            "the opening, sent again with its command id: already done, nothing appended (v{})",
            retry.version
        );
    }
    tickets.execute_with(&id, customer().command("add-message"), |t| {
        t.add_message("It started smoking after the update.", "customer")
    })?;

    // An escalation recorded on the wrong ticket. Events are never changed:
    // a compensating event that names it withdraws it.
    let vip = "VIP customer";
    tickets.execute_with(
        &id,
        Metadata::new()
            .actor("agent-9")
            .command("escalate")
            .reason(vip),
        |t| t.escalate(Reason(vip.into()), AgentId("agent-9".into())),
    )?;
    let wrong = ticket::last_escalation(&tickets.trail(&id)?)
        .map(|e| e.event_id)
        .ok_or("the escalation is recorded")?;
    let why = "agent-9 escalated the wrong ticket";
    let withdrawn = tickets
        .command(&id)
        .metadata(
            Metadata::new()
                .actor("supervisor")
                .command("correct-escalation")
                .reason(why),
        )
        .compensating(wrong)
        .execute(|t| t.withdraw_escalation(Reason(why.into())))?;
    println!(
        "an escalation recorded by mistake, withdrawn at v{}: escalated is {} again",
        withdrawn.version, withdrawn.state.escalated
    );

    tickets.execute_with(&id, agent().command("add-message"), |t| {
        t.add_message("Please unplug it; we are on it.", "agent-7")
    })?;

    // The customer is not waiting (an agent answered last): refused.
    let refused = tickets.execute_with(&id, agent().command("escalate"), |t| {
        t.escalate(Reason("second opinion".into()), AgentId("agent-7".into()))
    });
    if let Err(ExecuteError::Rejected(why)) = &refused {
        println!("escalation refused, as the rules say: {why}");
    }

    tickets.execute_with(&id, customer().command("add-message"), |t| {
        t.add_message("It is still smoking. Three days now!", "customer")
    })?;
    // The escalation reacts to that message: it names it as its cause.
    let complaint = tickets
        .history(&id)?
        .pop()
        .ok_or("the message is recorded")?;
    let reason = "customer waited three days";
    tickets
        .command(&id)
        .metadata(agent().command("escalate").reason(reason))
        .caused_by(&complaint)
        .execute(|t| t.escalate(Reason(reason.into()), AgentId("agent-7".into())))?;
    let again = tickets.execute(&id, |t| {
        t.escalate(Reason("again".into()), AgentId("agent-9".into()))
    });
    if let Err(ExecuteError::Rejected(why)) = &again {
        println!("second escalation refused: {why}");
    }
    tickets.execute_with(
        &id,
        agent().command("close").reason("replaced the fuser"),
        |t| t.close("replaced the fuser"),
    )?;

    println!();
    print_state(&id, &tickets.load(&id)?);
    println!("\n== the same ticket at version 3, before the correction (time travel)\n");
    print_state(&id, &tickets.load_at(&id, 3)?);
    println!("\n== what changed since then\n");
    println!("{}", tickets.diff(&id, 3, u64::MAX)?);
    println!();
    print_history(&tickets.trail(&id)?);
    Ok(())
}

fn print_state(id: &str, loaded: &Loaded<Ticket>) {
    let t = &loaded.state;
    if !loaded.exists() {
        println!("ticket {id}: no such ticket");
        return;
    }
    println!("ticket {id} at version {}", loaded.version);
    println!("  title:     {}", t.title);
    println!("  status:    {:?}", t.status);
    println!("  escalated: {}", t.escalated);
    println!("  messages:  {}", t.messages);
    println!(
        "  waiting:   {}",
        if t.customer_waiting {
            "customer waits for an answer"
        } else {
            "no"
        }
    );
}

/// The history twice: every event as recorded, each correction and
/// corrected event marked; then the events that still stand. Each line
/// has who (actor), which command and why (reason), and the short forms
/// of its correlation id (its business transaction: a command's own
/// events share it) and its cause (the event its command reacted to).
fn print_history(trail: &Trail<Decoded<TicketEvent>>) {
    println!("== its history: every event, as recorded\n");
    print_header();
    for e in trail {
        print_entry(e, &marks(e));
    }
    println!("\n== its history: what still stands (no corrected event, no correction)\n");
    print_header();
    for e in trail.effective() {
        print_entry(e, "");
    }
}

fn print_header() {
    println!(
        "{:>3} {:>5}  {:<27} {:<26} {:<10} {:<18} {:<8} {:<8} what / why",
        "v", "pos", "recorded at", "event", "actor", "command", "corr", "cause"
    );
}

/// The short form of an id in the history: its last 8 hex digits (the
/// first ones of a UUID v7 are its time, shared by ids made together).
fn short(id: Uuid) -> String {
    let hex = id.simple().to_string();
    hex[hex.len() - 8..].to_owned()
}

fn print_entry(e: &Envelope<Decoded<TicketEvent>>, marks: &str) {
    let what = ticket::describe(&e.event);
    let why = e
        .metadata
        .reason
        .as_deref()
        .map(|r| format!(" (why: {r})"))
        .unwrap_or_default();
    println!(
        "{:>3} {:>5}  {:<27} {:<26} {:<10} {:<18} {:<8} {:<8} {what}{why}{marks}",
        e.version,
        e.position,
        e.recorded_at.to_string(),
        format!("{}@v{}", e.name, e.schema_version),
        e.metadata.actor.as_deref().unwrap_or("-"),
        e.metadata.command.as_deref().unwrap_or("-"),
        short(e.correlation()),
        e.metadata
            .causation_id
            .map_or_else(|| "-".to_owned(), short),
    );
}

/// How an entry stands: `[corrects v3]` on a compensation, `[corrected by
/// v4]` on the event it corrects (`undone` when that correction was
/// corrected in turn).
fn marks(e: &TrailEntry<Decoded<TicketEvent>>) -> String {
    let mut marks = Vec::new();
    if e.is_compensation() {
        marks.push(match e.compensated_version() {
            Some(v) => format!("corrects v{v}"),
            None => "corrects an event not in this ticket".to_owned(),
        });
    }
    if !e.corrected_by().is_empty() {
        let by: Vec<String> = e.corrected_by().iter().map(|v| format!("v{v}")).collect();
        let undone = if e.is_corrected() { "" } else { ", undone" };
        marks.push(format!("corrected by {}{undone}", by.join(", ")));
    }
    if marks.is_empty() {
        String::new()
    } else {
        format!("  [{}]", marks.join("; "))
    }
}
