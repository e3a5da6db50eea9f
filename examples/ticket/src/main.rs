//! `ticket`: the Ticket example as a command line.
//!
//! `cargo run -p ticket` runs a scripted scenario and prints the ticket's
//! state and history; the subcommands work on one ticket at a time. Events
//! are kept in `tickets.db` (SQLite; `--db` to choose the file), so tickets
//! survive restarts; `--memory` keeps them in memory instead.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use es_core::blocking::Repository;
use es_core::prelude::*;
use es_sqlite::SqliteStore;
use ticket::{AgentId, Reason, Ticket, TicketError, TicketEvent};

#[derive(Parser)]
#[command(about = "Support tickets, event sourced with es", version)]
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
    },
    /// Print a ticket's state, now or in the past.
    Show {
        /// The ticket's id.
        id: String,
        /// The state at this version.
        #[arg(long, conflicts_with = "as_of")]
        at_version: Option<u64>,
        /// The state at this time (RFC 3339, e.g. 2026-11-23T18:00:00Z).
        #[arg(long)]
        as_of: Option<Timestamp>,
    },
    /// Print a ticket's history: who did what, when and why.
    History {
        /// The ticket's id.
        id: String,
    },
}

type Failure = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Demo);
    let outcome = if cli.memory {
        run(&Repository::<Ticket, _>::new(InMemoryStore::new()), command)
    } else {
        SqliteStore::open(&cli.db)
            .map_err(Failure::from)
            .and_then(|store| {
                // The deploy check: a file holding events this build cannot
                // decode (written by a newer one) is not touched.
                es_core::blocking::block_on(es_core::registry::check_store(&store))?;
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

fn run<S: EventStore + SnapshotStore>(
    tickets: &Repository<Ticket, S>,
    command: Command,
) -> Result<(), Failure> {
    match command {
        Command::Demo => demo(tickets),
        Command::Open { id, title, email } => {
            let meta = Metadata::new().actor("customer").command("open");
            report(tickets.execute_with(&id, meta, |t| t.open(&title, &email)))?;
            show(tickets, &id)
        }
        Command::Message { id, body, by } => {
            let meta = Metadata::new().actor(by.clone()).command("add-message");
            report(tickets.execute_with(&id, meta, |t| t.add_message(&body, &by)))?;
            show(tickets, &id)
        }
        Command::Escalate { id, reason, by } => {
            let meta = Metadata::new()
                .actor(by.clone())
                .command("escalate")
                .reason(reason.clone());
            report(tickets.execute_with(&id, meta, |t| {
                t.escalate(Reason(reason.clone()), AgentId(by.clone()))
            }))?;
            show(tickets, &id)
        }
        Command::Close { id, resolution, by } => {
            let meta = Metadata::new()
                .actor(by)
                .command("close")
                .reason(resolution.clone());
            report(tickets.execute_with(&id, meta, |t| t.close(&resolution)))?;
            show(tickets, &id)
        }
        Command::Show {
            id,
            at_version,
            as_of,
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
            print_history(&tickets.history(&id)?);
            Ok(())
        }
    }
}

/// Turns a refused command into an error the user reads.
fn report(
    outcome: Result<es_core::Executed<Ticket>, ExecuteError<TicketError>>,
) -> Result<(), Failure> {
    match outcome {
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

/// The scenario of the seeds: open, talk, a refused and an accepted
/// escalation, close; then the state, a look back in time, and the history.
fn demo<S: EventStore + SnapshotStore>(tickets: &Repository<Ticket, S>) -> Result<(), Failure> {
    let id = format!(
        "demo-{}",
        &es_core::Uuid::now_v7().simple().to_string()[20..]
    );
    let agent = || Metadata::new().actor("agent-7");
    let customer = || Metadata::new().actor("customer");
    println!("== a new ticket: {id}\n");

    tickets.execute_with(&id, customer().command("open"), |t| {
        t.open("Printer on fire", "ada@example.com")
    })?;
    tickets.execute_with(&id, customer().command("add-message"), |t| {
        t.add_message("It started smoking after the update.", "customer")
    })?;
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
    let reason = "customer waited three days";
    tickets.execute_with(&id, agent().command("escalate").reason(reason), |t| {
        t.escalate(Reason(reason.into()), AgentId("agent-7".into()))
    })?;
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
    println!("\n== the same ticket at version 3 (time travel)\n");
    print_state(&id, &tickets.load_at(&id, 3)?);
    println!("\n== its history\n");
    print_history(&tickets.history(&id)?);
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

fn print_history(trail: &[Envelope<Decoded<TicketEvent>>]) {
    println!(
        "{:>3} {:>5}  {:<27} {:<22} {:<10} {:<12} what / why",
        "v", "pos", "recorded at", "event", "actor", "command"
    );
    for e in trail {
        let what = match &e.event {
            Decoded::Event(TicketEvent::TicketOpened(o)) => format!("\"{}\"", o.title),
            Decoded::Event(TicketEvent::MessageAdded(m)) => format!("{}: \"{}\"", m.by, m.body),
            Decoded::Event(TicketEvent::TicketEscalated(x)) => format!("by {}: {}", x.by, x.reason),
            Decoded::Event(TicketEvent::TicketClosed(c)) => c.resolution.clone(),
            // Written by a newer version of this program: shown as stored.
            Decoded::Undecodable { payload, error } => format!("{payload} ({error})"),
        };
        let why = e
            .metadata
            .reason
            .as_deref()
            .map(|r| format!(" (why: {r})"))
            .unwrap_or_default();
        println!(
            "{:>3} {:>5}  {:<27} {:<22} {:<10} {:<12} {what}{why}",
            e.version,
            e.position,
            e.recorded_at.to_string(),
            format!("{}@v{}", e.name, e.schema_version),
            e.metadata.actor.as_deref().unwrap_or("-"),
            e.metadata.command.as_deref().unwrap_or("-"),
        );
    }
}
