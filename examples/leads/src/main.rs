//! `leads`: the sales leads example as a command line.
//!
//! `cargo run -p leads` imports the seed's lead 12 (when the file does not
//! hold it yet) and prints its state, a look back in business time, its
//! history with both times, and its search and analysis models as the seed
//! prints them (per stream, and from the SQLite read models). `show` and
//! `history` work on one lead; `search TERM` finds the leads that have or
//! had a name or phone number; `forget ID --reason WHY` forgets a lead's
//! personal data. Events are kept in `leads.db` in the current
//! directory (SQLite; `--db` to choose the file), the read models in
//! `leads.read-models/` beside it; `--memory` keeps the events in memory
//! instead (and has no read models).
//!
//! Names and phone numbers are stored encrypted under a key per lead
//! (in `leads.db.keys`), wrapped by a key-encryption key taken from the
//! environment variable `LEADS_KEK` (64 hex digits) or, when it is not
//! set, from the key file `leads.db.kek`, created beside the database on
//! first use so that the example runs with no setup. A real deployment
//! keeps that key elsewhere (a secret manager, a KMS), never beside the
//! data it protects.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use es_core::blocking::{Repository, block_on};
use es_core::prelude::*;
use es_core::privacy::{Forget, KeyEncryptionKey, MemoryKeyStore};
use es_core::verify::Verify;
use es_sqlite::{ReadModels, SqliteStore};
use leads::read_models::{analysis, search};
use leads::seed::{self, LEAD_12_ID};
use leads::{AnalysisModel, Lead, LeadEvent, LeadSearchModel};

/// The environment variable holding the key-encryption key.
const KEK_VAR: &str = "LEADS_KEK";

#[derive(Parser)]
#[command(
    about = "Sales leads, event sourced with es",
    version,
    after_help = "Names and phone numbers are stored encrypted, under a key per lead kept in \
<db>.keys and wrapped by a key-encryption key: the 64 hex digits of the environment variable \
LEADS_KEK or, when it is not set, the key file <db>.kek, created beside the database (readable \
by its owner only) on first use so that the example runs with no setup. A real deployment keeps \
the key-encryption key elsewhere (a secret manager, a KMS): a key file beside the data it \
protects protects nothing from whoever can read the directory."
)]
struct Cli {
    /// The SQLite file holding the events (created when missing).
    #[arg(long, default_value = "leads.db", global = true)]
    db: PathBuf,
    /// Keep the events in memory instead: nothing survives the process.
    #[arg(long, global = true, conflicts_with = "db")]
    memory: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Import the seed's lead 12 (unless it exists) and print its state and history (the default).
    Demo,
    /// Print a lead's state, now or in the past.
    Show {
        /// The lead's id.
        id: String,
        /// The state at this version.
        #[arg(long, conflicts_with = "as_of")]
        at_version: Option<u64>,
        /// The state as of this time (RFC 3339, e.g. 2020-05-25T00:00:00Z):
        /// what the store had recorded by then.
        #[arg(long)]
        as_of: Option<Timestamp>,
        /// With --as-of: what had happened by then (business time) instead.
        #[arg(long, requires = "as_of")]
        occurred: bool,
    },
    /// Print a lead's history: what happened when, recorded when, by whom and why.
    History {
        /// The lead's id.
        id: String,
    },
    /// Find the leads that have or ever had a first name, last name or phone number
    /// (the search read model; letters in either case).
    Search {
        /// The name or phone number, e.g. 555-2951.
        term: String,
    },
    /// Forget a lead's names and phone numbers (crypto-shredding).
    ///
    /// Its keys are destroyed, so its names and phone numbers read as
    /// forgotten everywhere, and the read models delete them. Its events
    /// and everything else in them stay; the forgetting is recorded, with
    /// why.
    Forget {
        /// The lead's id.
        id: String,
        /// Why (recorded with the forgetting), e.g. "asked to be forgotten".
        #[arg(long)]
        reason: String,
    },
    /// Replay every stored lead through this build and report each event it
    /// cannot decode, each `apply` that panics and each snapshot that
    /// differs from its events; exits with 1 when it finds any. Runs on a
    /// store the deploy check refuses, and writes nothing.
    Verify,
}

type Failure = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Demo);
    let outcome = if cli.memory {
        let keys = MemoryKeyStore::new(KeyEncryptionKey::generate());
        run(
            &Repository::<Lead, _>::new(InMemoryStore::new().with_keys(keys)),
            None,
            command,
        )
    } else {
        example_cli_support::key_encryption_key(&cli.db, KEK_VAR)
            .and_then(|kek| Ok(SqliteStore::options().personal_data(kek).open(&cli.db)?))
            .and_then(|store| {
                // The deploy check: a file holding events this build cannot
                // decode (written by a newer one) is not touched. `verify`
                // reads it all the same, to say what exactly it cannot read.
                if !matches!(command, Command::Verify) {
                    block_on(es_core::registry::check_store(&store))?;
                }
                run(
                    &Repository::<Lead, _>::new(store.clone()),
                    Some(&store),
                    command,
                )
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

/// Runs `command` on `leads`; `sqlite` is the same store when it is a
/// SQLite file, which the read models live beside.
fn run<S: EventStore + SnapshotStore + Forget>(
    leads: &Repository<Lead, S>,
    sqlite: Option<&SqliteStore>,
    command: Command,
) -> Result<(), Failure> {
    match command {
        Command::Demo => demo(leads, sqlite),
        Command::Show {
            id,
            at_version,
            as_of,
            occurred,
        } => {
            let loaded = match (at_version, as_of) {
                (Some(v), _) => leads.load_at(&id, v)?,
                (None, Some(t)) if occurred => leads.load_as_of(&id, AsOf::Occurred(t))?,
                (None, Some(t)) => leads.load_as_of(&id, AsOf::Recorded(t))?,
                (None, None) => leads.load(&id)?,
            };
            print_state(&id, &loaded);
            Ok(())
        }
        Command::History { id } => {
            print_history(&leads.history(&id)?);
            Ok(())
        }
        Command::Search { term } => {
            let store = sqlite.ok_or(
                "search reads the search read model, which lives beside a SQLite file: not with --memory",
            )?;
            let models = ReadModels::open(store)?;
            let runner = models.start(LeadSearchModel)?;
            block_on(runner.caught_up())?;
            let hits = search::search(&models, &term)?;
            if hits.is_empty() {
                println!("== leads that have or had {term:?}: none");
            } else {
                println!("== leads that have or had {term:?}: {}", hits.len());
            }
            for hit in &hits {
                println!(
                    "lead {}: {} (version {})",
                    hit.lead_id, hit.current, hit.version
                );
                println!(
                    "  first names {}, last names {}, phone numbers {}",
                    search::seed_list(&hit.first_names),
                    search::seed_list(&hit.last_names),
                    search::seed_list(&hit.phone_numbers)
                );
            }
            Ok(())
        }
        Command::Forget { id, reason } => forget(leads, sqlite, &id, reason),
        Command::Verify => example_cli_support::replay_check(
            Verify::new(leads.as_async().store()).aggregate::<Lead>(),
        ),
    }
}

/// Forgets lead `id`'s personal data, then brings the read models up to
/// date, so that their files forget it now.
fn forget<S: EventStore + SnapshotStore + Forget>(
    leads: &Repository<Lead, S>,
    sqlite: Option<&SqliteStore>,
    id: &str,
    reason: String,
) -> Result<(), Failure> {
    if !leads.load(id)?.exists() {
        return Err(format!("lead {id}: no such lead").into());
    }
    // The subject of a lead's personal data is its stream.
    let subject = StreamId::for_aggregate(<Lead as Aggregate>::NAME, id)?;
    let metadata = Metadata::new()
        .actor("leads")
        .command("forget")
        .reason(reason);
    let forgotten = leads.forget_with(subject.as_str(), metadata)?;
    println!(
        "== lead {id} forgotten: {} key(s) destroyed, {} snapshot(s) deleted, recorded in {} at position {}",
        forgotten.keys_destroyed,
        forgotten.snapshots_deleted,
        forgotten.recorded.stream_id,
        forgotten.recorded.last_position.unwrap_or(0),
    );
    if let Some(store) = sqlite {
        let models = ReadModels::open(store)?;
        let search_runner = models.start(LeadSearchModel)?;
        let analysis_runner = models.start(AnalysisModel)?;
        block_on(search_runner.caught_up())?;
        block_on(analysis_runner.caught_up())?;
        println!(
            "   its names and phone numbers read as forgotten; the read models in {} hold them no more",
            models.dir().display()
        );
    }
    Ok(())
}

/// The seed's story: lead 12 imported through the rules, its state now,
/// as of a day between its events in business time and in recorded time,
/// its history, and its search and analysis models.
fn demo<S: EventStore + SnapshotStore>(
    leads: &Repository<Lead, S>,
    sqlite: Option<&SqliteStore>,
) -> Result<(), Failure> {
    let id = LEAD_12_ID;
    if leads.load(id)?.exists() {
        println!("== lead {id} is already in the store: not imported again\n");
    } else {
        let imported = block_on(seed::import(leads.as_async(), id))?;
        println!(
            "== lead {id}: the seed's events imported through the rules (version {})\n",
            imported.version
        );
    }
    print_state(id, &leads.load(id)?);

    let day: Timestamp = "2020-05-25T00:00:00Z".parse()?;
    println!("\n== lead {id} as of {day}, business time (what had happened by then)\n");
    print_state(id, &leads.load_as_of(id, AsOf::Occurred(day))?);
    println!("\n== lead {id} as of {day}, recorded time (what this store knew then)\n");
    print_state(id, &leads.load_as_of(id, AsOf::Recorded(day))?);

    println!("\n== its history\n");
    print_history(&leads.history(id)?);

    print_models(leads.as_async().store(), sqlite, id)
}

/// Lead `id`'s search and analysis models, as the seeds print them: per
/// stream, then from the read models (which must agree).
fn print_models<S: EventStore>(
    store: &S,
    sqlite: Option<&SqliteStore>,
    id: &str,
) -> Result<(), Failure> {
    let searched = block_on(search::project(store, id))?.ok_or("the lead has no events")?;
    let analysed = block_on(analysis::project(store, id))?.ok_or("the lead has no events")?;
    let read = match sqlite {
        Some(store) => {
            let models = ReadModels::open(store)?;
            // Both runners catch up side by side.
            let search_runner = models.start(LeadSearchModel)?;
            let analysis_runner = models.start(AnalysisModel)?;
            block_on(search_runner.caught_up())?;
            block_on(analysis_runner.caught_up())?;
            Some((
                models.dir().display().to_string(),
                search::lookup(&models, id)?,
                analysis::lookup(&models, id)?,
            ))
        }
        None => None,
    };
    // The seeds count versions from 0 (6 after seven events), es from 1 (7).
    let versions = format!(
        "   (the version counts from 0 as the seeds count: es counts from 1, and has version {})",
        searched.version
    );

    println!("\n== its search model, LeadSearchModelProjection, as seed 004 prints it");
    println!("{versions}");
    print_forms(
        &searched,
        read.as_ref()
            .map(|(dir, hit, _)| (LeadSearchModel::NAME, dir.as_str(), hit.as_ref())),
    )?;
    println!("\n== its analysis model, AnalysisModelProjection, as seed 000 prints it");
    println!("{versions}");
    print_forms(
        &analysed,
        read.as_ref()
            .map(|(dir, _, found)| (AnalysisModel::NAME, dir.as_str(), found.as_ref())),
    )
}

/// A model's per-stream form, then its read model's answer (`name`, in
/// `dir`), which must be the same.
fn print_forms<T: std::fmt::Display + PartialEq>(
    per_stream: &T,
    read: Option<(&str, &str, Option<&T>)>,
) -> Result<(), Failure> {
    println!("\n-- per stream, folded from the lead's events:");
    print!("{per_stream}");
    let Some((name, dir, found)) = read else {
        println!("\n-- read model: none with --memory (read models live beside a SQLite file)");
        return Ok(());
    };
    println!("\n-- read model `{name}` in {dir}:");
    let found = found.ok_or_else(|| format!("read model `{name}` has no such lead"))?;
    print!("{found}");
    if found != per_stream {
        return Err(format!("read model `{name}` disagrees with the per-stream form").into());
    }
    Ok(())
}

fn print_state(id: &str, loaded: &Loaded<Lead>) {
    if !loaded.exists() {
        println!("lead {id}: no such lead");
        return;
    }
    let l = &loaded.state;
    println!("lead {id} at version {}", loaded.version);
    println!("  status:    {}", l.status);
    println!(
        "  contacted: {}",
        if l.contacted { "yes" } else { "not yet" }
    );
}

fn print_history(trail: &[Envelope<Decoded<LeadEvent>>]) {
    println!(
        "{:>3} {:>5}  {:<27} {:<27} {:<28} {:<8} {:<23} what / why",
        "v", "pos", "occurred at", "recorded at", "event", "actor", "command"
    );
    for e in trail {
        let what = match &e.event {
            Decoded::Event(LeadEvent::LeadInitialized(i)) => {
                person(&i.first_name, &i.last_name, &i.phone_number)
            }
            Decoded::Event(LeadEvent::ContactDetailsUpdated(u)) => {
                person(&u.first_name, &u.last_name, &u.phone_number)
            }
            Decoded::Event(LeadEvent::FollowupSet(f)) => format!("call on {}", f.followup_on),
            Decoded::Event(LeadEvent::OrderSubmitted(o)) => {
                format!("pay by {}", o.payment_deadline)
            }
            Decoded::Event(LeadEvent::LeadClosed(c)) => c.reason.clone(),
            Decoded::Event(
                LeadEvent::Contacted(_)
                | LeadEvent::PaymentConfirmed(_)
                | LeadEvent::PaymentFailed(_),
            ) => String::new(),
            // Written by a newer version of this program: shown as stored.
            Decoded::Undecodable { payload, error } => format!("{payload} ({error})"),
        };
        let why = match (e.metadata.reason.as_deref(), what.is_empty()) {
            (Some(r), false) => format!(" (why: {r})"),
            (Some(r), true) => format!("(why: {r})"),
            (None, _) => String::new(),
        };
        println!(
            "{:>3} {:>5}  {:<27} {:<27} {:<28} {:<8} {:<23} {what}{why}",
            e.version,
            e.position,
            e.occurred_at.to_string(),
            e.recorded_at.to_string(),
            format!("{}@v{}", e.name, e.schema_version),
            e.metadata.actor.as_deref().unwrap_or("-"),
            e.metadata.command.as_deref().unwrap_or("-"),
        );
    }
}

/// A person's details as far as they are known.
fn person(first: &Personal<String>, last: &Personal<String>, phone: &Personal<String>) -> String {
    let known = |p: &Personal<String>| {
        p.as_known()
            .map_or("(forgotten)", String::as_str)
            .to_owned()
    };
    format!("{} {}, {}", known(first), known(last), known(phone))
}
