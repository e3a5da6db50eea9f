//! The benchmark workloads of `WORKLOADS.md`, on the Ticket aggregate of the
//! example app, against the embedded SQLite store (or es-postgres, or a
//! `ShardedStore` of SQLite files); each with a `raw_` twin that runs the
//! same commands with bare `rusqlite` (or bare `postgres`) and no
//! framework, so the framework's cost shows as a ratio measured in one run.
//!
//! ```sh
//! cargo run --release -p es-workloads -- append_1x1 [--sync full|normal] [--dir DIR]
//! # on PostgreSQL: a fresh schema w_<id> in the database, dropped after the run
//! cargo run --release -p es-workloads -- append_1x1 --store postgres [--url URL]
//! # over a ShardedStore of N SQLite files (append workloads)
//! cargo run --release -p es-workloads -- append_concurrent --tasks 32 --shards 4
//! ```
//!
//! `--store postgres` runs `append_1x1`, `append_concurrent`, `contention`,
//! `load_stream`, their `raw_` twins and `raw_append_batch`, on the database
//! of `--url` (default: `$ES_POSTGRES_URL`); the es runs report the mean size
//! of the store's group commit (`group_commit`). `--sync normal` on
//! PostgreSQL is `synchronous_commit = off` on every connection of the run,
//! set through the connection's `options` parameter (`-c
//! synchronous_commit=off`); `full` is the server's default, `on`.
//! `--shards N` runs `append_1x1` and `append_concurrent` (and their twins,
//! which send each command to its stream's shard file) over N SQLite files.
//!
//! Prints one JSON line per run; a run that fails its own check prints
//! `"ok":false` and exits non-zero.

// Counts are reported as floating-point rates, and task counts index ranges.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap
)]

mod catchup;
mod raw;
mod raw_pg;
mod target;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use es_core::prelude::*;
use es_core::{NewEvent, ReadRange, Uuid};
use es_sqlite::{Durability, SqliteStore};
use serde_json::{Value, json};
use target::{Backend, Target, on_store};
use ticket::{MessageAdded, Ticket, TicketEvent, TicketOpened};

#[derive(Parser, Clone)]
#[command(about = "The es benchmark workloads (WORKLOADS.md)")]
struct Args {
    /// The workload to run.
    workload: Workload,
    /// `full`: every acknowledged append is on disk; `normal`: flushed at
    /// checkpoints. PostgreSQL: `full` is `synchronous_commit = on` (the
    /// server's default); `normal` is `synchronous_commit = off` on every
    /// connection of the run (the connection option `-c
    /// synchronous_commit=off`).
    #[arg(long, default_value = "full")]
    sync: Sync,
    /// Where to create the database (default: a temporary directory, removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The store: `sqlite` (a fresh file in --dir) or `postgres` (a fresh
    /// schema `w_<id>` in the database of --url, dropped after the run; for
    /// append_1x1, append_concurrent, contention, load_stream, their raw_
    /// twins and raw_append_batch).
    #[arg(long, value_enum, default_value = "sqlite")]
    store: StoreKind,
    /// postgres: the database, as a URL or libpq's `key=value` form
    /// (default: the environment variable `ES_POSTGRES_URL`).
    #[arg(long)]
    url: Option<String>,
    /// sqlite, append_1x1 and append_concurrent (and their raw_ twins): an
    /// `es_core::ShardedStore` over this many SQLite files (1 to 16; 1 is
    /// the sharded store over one file, against the plain store without
    /// the flag).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=16))]
    shards: Option<u32>,
    /// Concurrent tasks (append_concurrent and projection_catchup --live;
    /// contention uses 8 unless given).
    #[arg(long)]
    tasks: Option<usize>,
    /// Commands to run (append workloads and projection_catchup --live;
    /// default 20,000).
    #[arg(long)]
    commands: Option<u64>,
    /// Tickets the commands are spread over (default 1,000); the tickets of
    /// the log (projection workloads; default 10,000).
    #[arg(long)]
    tickets: Option<u64>,
    /// Events in the loaded stream (load workloads; default 10,000 and
    /// 1,000,000); in the log (projection workloads; default 1,000,000).
    #[arg(long)]
    events: Option<u64>,
    /// Events per read-model transaction (projection workloads; default
    /// 1,024, the runner's default).
    #[arg(long)]
    batch: Option<usize>,
    /// projection_catchup: once caught up, run append_concurrent's commands
    /// (`--commands`, `--tasks`) while the runner follows, and report their
    /// lag.
    #[arg(long)]
    live: bool,
    /// How many loads (default 20 and 1,000).
    #[arg(long)]
    loads: Option<u64>,
    /// Keep the state of this many tickets in memory (`Repository::with_cache`;
    /// default: no cache).
    #[arg(long)]
    cache: Option<usize>,
    /// Let commands on one ticket race instead of queueing
    /// (`Repository::with_serialized_commands(false)`).
    #[arg(long)]
    race: bool,
    /// append workloads and wal_frames: give every command a fresh command
    /// id (idempotent commands); `look-up` also looks each one up
    /// (`Repository::earlier_outcome`) before executing it, as a caller
    /// that checks first would.
    #[arg(long, value_enum)]
    command_ids: Option<CommandIds>,
    /// contention: what a conflict does (`rerun`: decide again, the
    /// default; `check-conflicts`: ask `Ticket::conflicts_with`, and append
    /// a message after the others' without deciding again).
    #[arg(long, default_value = "rerun")]
    policy: Policy,
    /// contention: retries per command (default: the repository's, 3).
    #[arg(long)]
    retries: Option<u32>,
}

/// How the append workloads' commands are made idempotent (`--command-ids`).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CommandIds {
    /// Each command has a fresh command id.
    Fresh,
    /// The same, and each command is looked up before it runs.
    LookUp,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Policy {
    Rerun,
    CheckConflicts,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::Rerun => "rerun",
            Policy::CheckConflicts => "check-conflicts",
        }
    }

    fn conflict_policy(self) -> ConflictPolicy {
        match self {
            Policy::Rerun => ConflictPolicy::Rerun,
            Policy::CheckConflicts => ConflictPolicy::CheckConflicts,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    #[value(name = "append_1x1")]
    Append1x1,
    #[value(name = "raw_append_1x1")]
    RawAppend1x1,
    #[value(name = "append_concurrent")]
    AppendConcurrent,
    #[value(name = "raw_append_concurrent")]
    RawAppendConcurrent,
    #[value(name = "load_stream")]
    LoadStream,
    #[value(name = "raw_load_stream")]
    RawLoadStream,
    #[value(name = "load_snapshot")]
    LoadSnapshot,
    #[value(name = "raw_load_snapshot")]
    RawLoadSnapshot,
    #[value(name = "contention")]
    Contention,
    #[value(name = "raw_contention")]
    RawContention,
    /// `raw_append_1x1`'s commands, 100 per transaction on one connection:
    /// the ceiling group commit can reach.
    #[value(name = "raw_append_batch")]
    RawAppendBatch,
    /// WAL frames one single-event append writes (`append_1x1`'s commands).
    #[value(name = "wal_frames")]
    WalFrames,
    /// The same for a minimal table: a position and a unique (stream, version).
    #[value(name = "raw_wal_frames")]
    RawWalFrames,
    /// A log of 1,000,000 events over 10,000 tickets, then a SQLite read
    /// model of them built from position 0 by the runner (`--live`: then
    /// append_concurrent's load while it follows, with the lag per command).
    #[value(name = "projection_catchup")]
    ProjectionCatchup,
    /// The same read model built by hand with bare rusqlite: the ceiling.
    #[value(name = "raw_projection_catchup")]
    RawProjectionCatchup,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    Sqlite,
    Postgres,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Sync {
    Full,
    Normal,
}

type Failure = Box<dyn std::error::Error + Send + std::marker::Sync>;

/// What a run reports.
struct Report {
    name: &'static str,
    params: Value,
    events: u64,
    seconds: f64,
    ok: bool,
    extra: Value,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let temporary = match &args.dir {
        Some(_) => None,
        None => match tempfile::tempdir() {
            Ok(dir) => Some(dir),
            Err(e) => {
                eprintln!("error: cannot create a temporary directory: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let dir = args
        .dir
        .clone()
        .or_else(|| temporary.as_ref().map(|t| t.path().to_path_buf()))
        .unwrap_or_default();
    let db = dir.join(format!("workload-{}.db", Uuid::now_v7().simple()));
    let target = match target(&args, db) {
        Ok(target) => target,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // On a worker thread, as a server's request handlers run: a future
    // driven by `block_on` on the main thread wakes up far slower.
    let outcome = runtime.block_on(async {
        let (args, target) = (args.clone(), target.clone());
        tokio::spawn(async move { run(&args, &target).await }).await
    });
    let outcome = outcome.unwrap_or_else(|e| Err(format!("the workload panicked: {e}").into()));
    if let Err(e) = target.remove() {
        eprintln!("warning: the run's store was not removed: {e}");
    }
    match outcome {
        Ok(mut report) => {
            // Only off the default store, so SQLite lines read as before.
            if let Some(params) = report.params.as_object_mut() {
                match &target {
                    Target::Sqlite { .. } => {}
                    Target::Sharded { shards, .. } => {
                        params.insert("shards".into(), json!(shards));
                    }
                    Target::Postgres { .. } => {
                        params.insert("store".into(), json!("postgres"));
                    }
                }
            }
            let mut line = json!({
                "name": report.name,
                "params": report.params,
                "events": report.events,
                "seconds": round(report.seconds, 4),
                "events_per_sec": round(report.events as f64 / report.seconds.max(1e-9), 1),
                "ok": report.ok,
            });
            if let (Some(line), Some(extra)) = (line.as_object_mut(), report.extra.as_object()) {
                line.extend(extra.clone());
            }
            println!("{line}");
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            // A database error's message is in its source.
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                message = format!("{message}: {cause}");
                source = cause.source();
            }
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The run's target, from `--store`, `--url`, `--shards` and `--sync`;
/// refuses a workload the store does not run.
fn target(args: &Args, db: PathBuf) -> Result<Target, Failure> {
    use Workload::{
        Append1x1, AppendConcurrent, Contention, LoadStream, RawAppend1x1, RawAppendBatch,
        RawAppendConcurrent, RawContention, RawLoadStream,
    };
    let appends = matches!(
        args.workload,
        Append1x1 | RawAppend1x1 | AppendConcurrent | RawAppendConcurrent
    );
    let sync = args.sync;
    match (args.store, args.shards) {
        (StoreKind::Sqlite, None) => Ok(Target::Sqlite { db, sync }),
        (StoreKind::Sqlite, Some(_)) if !appends => {
            Err("--shards is for append_1x1 and append_concurrent (and their raw_ twins)".into())
        }
        (StoreKind::Sqlite, Some(shards)) => Ok(Target::Sharded { db, sync, shards }),
        (StoreKind::Postgres, Some(_)) => Err("--shards is for --store sqlite".into()),
        (StoreKind::Postgres, None) => {
            let on_postgres = appends
                || matches!(
                    args.workload,
                    Contention | RawContention | LoadStream | RawLoadStream | RawAppendBatch
                );
            if !on_postgres {
                return Err("this workload runs on --store sqlite only".into());
            }
            let url = match &args.url {
                Some(url) => url.clone(),
                None => std::env::var("ES_POSTGRES_URL")
                    .map_err(|_| "--store postgres needs --url or ES_POSTGRES_URL")?,
            };
            let mut config: postgres::Config = url.parse()?;
            if sync == Sync::Normal {
                let off = "-c synchronous_commit=off";
                let options = match config.get_options() {
                    Some(given) => format!("{given} {off}"),
                    None => off.to_owned(),
                };
                config.options(&options);
            }
            Ok(Target::Postgres {
                config: Box::new(config),
                schema: Target::fresh_schema(),
            })
        }
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

fn sync_name(sync: Sync) -> &'static str {
    match sync {
        Sync::Full => "full",
        Sync::Normal => "normal",
    }
}

fn open(db: &Path, sync: Sync) -> Result<SqliteStore, Failure> {
    let durability = match sync {
        Sync::Full => Durability::Full,
        Sync::Normal => Durability::Normal,
    };
    Ok(SqliteStore::options().durability(durability).open(db)?)
}

/// A message body of about 150 characters: the payload is about 200 bytes.
fn body(n: u64) -> String {
    let text = format!(
        "Message {n}: the printer on floor three jams on every A4 job since the update; \
         reseating the tray and cleaning the rollers did not help at all, please advise."
    );
    text.chars().take(150).collect()
}

fn ticket_id(n: u64) -> String {
    format!("t{n}")
}

/// The peak resident set of this process, in KiB (Linux).
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn run(args: &Args, target: &Target) -> Result<Report, Failure> {
    use Workload::{
        Append1x1, AppendConcurrent, Contention, LoadSnapshot, LoadStream, ProjectionCatchup,
        RawAppend1x1, RawAppendBatch, RawAppendConcurrent, RawContention, RawLoadSnapshot,
        RawLoadStream, RawProjectionCatchup, RawWalFrames, WalFrames,
    };
    let sync = args.sync;
    let raw = matches!(
        args.workload,
        RawAppend1x1
            | RawAppendConcurrent
            | RawLoadStream
            | RawLoadSnapshot
            | RawContention
            | RawAppendBatch
            | RawWalFrames
            | RawProjectionCatchup
    );
    let cache = if raw { None } else { args.cache };
    let idempotency = args.command_ids.filter(|_| !raw);
    let commands = args.commands.unwrap_or(20_000);
    let tickets = args.tickets.unwrap_or(1_000);
    // The workloads on SQLite only (`target` refused them elsewhere).
    let sqlite_only = || {
        target
            .sqlite_db()
            .ok_or_else(|| Failure::from("this workload runs on --store sqlite only"))
    };
    match args.workload {
        Append1x1 | RawAppend1x1 | AppendConcurrent | RawAppendConcurrent => {
            let tasks = match args.workload {
                Append1x1 | RawAppend1x1 => 1,
                _ => args.tasks.unwrap_or(4),
            };
            let shape = AppendShape {
                commands,
                tickets,
                tasks,
                cache,
                idempotency,
            };
            append(target, sync, shape, raw).await
        }
        LoadStream | RawLoadStream => {
            load_stream(
                target,
                sync,
                args.events.unwrap_or(10_000),
                args.loads.unwrap_or(20),
                raw,
            )
            .await
        }
        LoadSnapshot | RawLoadSnapshot => {
            let (db, sync) = sqlite_only()?;
            let (events, loads) = (
                args.events.unwrap_or(1_000_000),
                args.loads.unwrap_or(1_000),
            );
            load_snapshot(db, sync, events, loads, raw).await
        }
        Contention | RawContention => {
            let shape = ContentionShape {
                tasks: args.tasks.unwrap_or(8),
                each: args.commands.unwrap_or(1_000),
                race: args.race,
                policy: args.policy,
                retries: args.retries,
            };
            contention(target, sync, shape, raw).await
        }
        RawAppendBatch => append_batch(target, sync, commands, tickets).await,
        WalFrames | RawWalFrames => {
            let (db, sync) = sqlite_only()?;
            let commands = args.commands.unwrap_or(1_000);
            wal_frames(db, sync, commands, tickets, raw, idempotency).await
        }
        ProjectionCatchup | RawProjectionCatchup => {
            let shape = catchup::Shape {
                events: args.events.unwrap_or(1_000_000),
                tickets: args.tickets.unwrap_or(10_000),
                batch: args.batch.unwrap_or(1_024).max(1),
            };
            let (db, sync) = sqlite_only()?;
            let store = open(db, sync)?;
            if raw {
                if args.live {
                    return Err("--live is for projection_catchup".into());
                }
                catchup::raw_projection_catchup(db, &store, sync, shape).await
            } else {
                let live = args.live.then(|| catchup::Live {
                    commands,
                    tasks: args.tasks.unwrap_or(4),
                });
                catchup::projection_catchup(db, &store, sync, shape, live).await
            }
        }
    }
}

/// Opens `tickets` tickets through the repository (not counted).
async fn open_tickets<S: Backend>(
    repository: &Repository<Ticket, S>,
    tickets: u64,
) -> Result<(), Failure> {
    for t in 0..tickets {
        repository
            .execute(&ticket_id(t), |ticket| {
                ticket.open("Printer jams", "customer@example.com")
            })
            .await?;
    }
    Ok(())
}

/// `raw_append_batch`: `raw_append_1x1`'s commands (load the ticket from its
/// events, decide, check the version, insert), 100 per transaction on one
/// connection (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the head taken once
/// per transaction).
async fn append_batch(
    target: &Target,
    sync: Sync,
    commands: u64,
    tickets: u64,
) -> Result<Report, Failure> {
    on_store!(target.open()?, store => open_tickets(&Repository::new(store), tickets).await?);
    // Timed from a connection made, to the connection closed.
    let seconds = match target {
        Target::Sqlite { db, sync } => raw_append_batch(db, *sync, commands, tickets)?,
        Target::Postgres { config, schema } => {
            let (config, schema) = (config.clone(), schema.clone());
            target::off_runtime(move || {
                let mut conn = raw_pg::Conn::connect(&config, &schema)?;
                let started = Instant::now();
                conn.append_batch(
                    commands,
                    tickets,
                    |t| format!("ticket-{}", ticket_id(t)),
                    body,
                )?;
                drop(conn);
                Ok(started.elapsed().as_secs_f64())
            })?
        }
        Target::Sharded { .. } => return Err("--shards is for the append workloads".into()),
    };
    let stored = on_store!(target.open()?, store => store.stored().await?);
    Ok(Report {
        name: "raw_append_batch",
        params: json!({"sync": sync_name(sync), "commands": commands, "streams": tickets, "per_transaction": 100}),
        events: commands,
        seconds,
        ok: stored == tickets + commands,
        extra: json!({}),
    })
}

/// `raw_append_batch` on SQLite: 100 commands per `BEGIN IMMEDIATE`
/// transaction. Returns the seconds they took.
fn raw_append_batch(db: &Path, sync: Sync, commands: u64, tickets: u64) -> Result<f64, Failure> {
    let mut conn = raw::connect(db, sync)?;
    let started = Instant::now();
    let mut i = 0;
    while i < commands {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for i in i..(i + 100).min(commands) {
            let stream = format!("ticket-{}", ticket_id(i % tickets.max(1)));
            let (ticket, version) = raw::load(&tx, &stream, false)?;
            let event = ticket.add_message(&body(i), "agent-42")?;
            if !raw::insert_message(&tx, &stream, version, &event)? {
                return Err("a version moved inside a transaction".into());
            }
        }
        tx.commit()?;
        i += 100;
    }
    drop(conn);
    Ok(started.elapsed().as_secs_f64())
}

/// `wal_frames`: how many WAL frames one single-event append writes,
/// measured from the growth of the `-wal` file over `commands` of
/// `append_1x1`'s commands while a reader holds the log open (so it is
/// never reset). `raw_wal_frames`: the same appends into a minimal table.
async fn wal_frames(
    db: &Path,
    sync: Sync,
    commands: u64,
    tickets: u64,
    raw: bool,
    idempotency: Option<CommandIds>,
) -> Result<Report, Failure> {
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    let store = open(db, sync)?;
    let repository = Repository::<Ticket, _>::new(store.clone());
    if raw {
        raw::connect(db, sync)?.execute_batch(
            "CREATE TABLE minimal (position INTEGER PRIMARY KEY, stream INTEGER NOT NULL, \
             version INTEGER NOT NULL, payload TEXT NOT NULL, UNIQUE (stream, version))",
        )?;
    } else {
        open_tickets(&repository, tickets).await?;
    }
    let page_size: i64 = raw::connect(db, sync)?.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    // A read transaction held open on another thread: the log can be
    // checkpointed but never reset, so it only grows.
    let (held, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
    let holder = {
        let (db, held) = (db.to_path_buf(), held.0);
        let release = release.1;
        std::thread::spawn(move || -> Result<(), Failure> {
            let mut reader = raw::connect(&db, sync)?;
            let snapshot = reader.transaction()?;
            snapshot.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
            held.send(())?;
            release.recv()?;
            Ok(())
        })
    };
    held.1.recv()?;
    let before = std::fs::metadata(&wal)?.len();
    let started = Instant::now();
    if raw {
        let minimal = raw::connect(db, sync)?;
        for i in 0..commands {
            let payload = serde_json::to_string(&MessageAdded {
                body: body(i),
                by: "agent-42".into(),
            })?;
            minimal.execute(
                "INSERT INTO minimal (stream, version, payload) VALUES (?1, ?2, ?3)",
                rusqlite::params![
                    (i % tickets.max(1)) as i64,
                    (i / tickets.max(1) + 2) as i64,
                    payload
                ],
            )?;
        }
    } else {
        for i in 0..commands {
            let text = body(i);
            let meta = match idempotency {
                Some(_) => Metadata::new().command_id(Uuid::now_v7()),
                None => Metadata::new(),
            };
            repository
                .execute_with(&ticket_id(i % tickets.max(1)), meta, |t| {
                    t.add_message(&text, "agent-42")
                })
                .await?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let grown = std::fs::metadata(&wal)?.len() - before;
    release.0.send(())?;
    holder.join().map_err(|_| "the reader thread panicked")??;
    let frames = grown as f64 / (page_size + 24) as f64;
    Ok(Report {
        name: if raw { "raw_wal_frames" } else { "wal_frames" },
        params: json!({"sync": sync_name(sync), "commands": commands, "streams": tickets, "command_ids": idempotency.is_some()}),
        events: commands,
        seconds,
        ok: grown > 0,
        extra: json!({
            "frames_per_commit": round(frames / commands.max(1) as f64, 2),
            "page_size": page_size,
        }),
    })
}

/// The settings of `append_1x1` and `append_concurrent`.
#[derive(Clone, Copy)]
struct AppendShape {
    commands: u64,
    tickets: u64,
    tasks: usize,
    cache: Option<usize>,
    idempotency: Option<CommandIds>,
}

/// `append_1x1` (one task) and `append_concurrent` (`tasks` tasks, each on
/// its own tickets): `commands` commands, each adding one message to a ticket
/// round-robin; the tickets are opened first, not counted.
async fn append(
    target: &Target,
    sync: Sync,
    shape: AppendShape,
    raw: bool,
) -> Result<Report, Failure> {
    let AppendShape {
        commands,
        tickets,
        tasks,
        cache,
        idempotency,
    } = shape;
    let tasks = tasks.max(1) as u64;
    let (seconds, group_commit) =
        on_store!(target.open()?, store => append_on(store, target, shape, raw).await?);
    // Check: every command landed.
    let stored = on_store!(target.open()?, store => store.stored().await?);
    let ok = stored == tickets + commands;
    let name = match (tasks, raw) {
        (1, false) => "append_1x1",
        (1, true) => "raw_append_1x1",
        (_, false) => "append_concurrent",
        (_, true) => "raw_append_concurrent",
    };
    Ok(Report {
        name,
        params: json!({"sync": sync_name(sync), "commands": commands, "streams": tickets, "tasks": tasks, "cache": cache, "command_ids": idempotency.map(|i| match i { CommandIds::Fresh => "fresh", CommandIds::LookUp => "look-up" })}),
        events: commands,
        seconds,
        ok,
        extra: group_commit,
    })
}

/// The timed part of [`append`] on `store`: the seconds, and the group
/// commit's sizes (where the store counts them, else `{}`).
async fn append_on<S: Backend>(
    store: S,
    target: &Target,
    shape: AppendShape,
    raw: bool,
) -> Result<(f64, Value), Failure> {
    let AppendShape {
        commands,
        tickets,
        tasks,
        cache,
        idempotency,
    } = shape;
    let mut repository = Repository::<Ticket, _>::new(store.clone());
    if let Some(capacity) = cache {
        repository = repository.with_cache(capacity);
    }
    for t in 0..tickets {
        repository
            .execute(&ticket_id(t), |ticket| {
                ticket.open("Printer jams", "customer@example.com")
            })
            .await?;
    }
    let tasks = tasks.max(1) as u64;
    let before = store.write_stats();
    let started = Instant::now();
    if raw {
        drop((repository, store));
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let target = target.clone();
                std::thread::spawn(move || -> Result<(), Failure> {
                    let mut conn = target.twin()?;
                    for i in (task..commands).step_by(tasks as usize) {
                        let t = i / tasks % (tickets / tasks).max(1) * tasks + task;
                        conn.execute_message(&format!("ticket-{}", ticket_id(t)), &body(i), false)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle.join().map_err(|_| "a task panicked")??;
        }
        return Ok((started.elapsed().as_secs_f64(), json!({})));
    }
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let repository = repository.clone();
            tokio::spawn(async move {
                for i in (task..commands).step_by(tasks as usize) {
                    let t = i / tasks % (tickets / tasks).max(1) * tasks + task;
                    let text = body(i);
                    let mut meta = Metadata::new();
                    if idempotency.is_some() {
                        meta = meta.command_id(Uuid::now_v7());
                    }
                    if idempotency == Some(CommandIds::LookUp)
                        && repository
                            .earlier_outcome(&ticket_id(t), &meta)
                            .await?
                            .is_some()
                    {
                        return Err("a fresh command id was found".into());
                    }
                    repository
                        .execute_with(&ticket_id(t), meta, |ticket| {
                            ticket.add_message(&text, "agent-42")
                        })
                        .await?;
                }
                Ok::<(), Failure>(())
            })
        })
        .collect();
    for handle in handles {
        handle.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok((seconds, group_commit(before, store.write_stats())))
}

/// The group commit between two of a store's counts: commits, requests and
/// their mean per commit, as `{"group_commit": ...}`; `{}` for a store
/// that does not count them.
fn group_commit(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Value {
    let (Some((c0, r0)), Some((c1, r1))) = (before, after) else {
        return json!({});
    };
    let (commits, requests) = (c1 - c0, r1 - r0);
    json!({"group_commit": {
        "commits": commits,
        "requests": requests,
        "mean_batch": round(requests as f64 / commits.max(1) as f64, 2),
    }})
}

/// Appends `messages` messages to one ticket, 1,000 per append.
async fn populate<S: EventStore>(store: &S, id: &str, messages: u64) -> Result<StreamId, Failure> {
    let stream = StreamId::new(format!("ticket-{id}"))?;
    let opened = TicketEvent::from(TicketOpened {
        title: "Long".into(),
        customer_email: Personal::known("c@example.com".into()),
    });
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::encode(
                Ticket::NAME,
                &opened,
                Metadata::default(),
            )?],
        )
        .await?;
    let mut written = 0;
    while written < messages {
        let n = (messages - written).min(1_000);
        let batch = (written..written + n)
            .map(|i| {
                let e = TicketEvent::from(MessageAdded {
                    body: body(i),
                    by: "agent-42".into(),
                });
                NewEvent::encode(Ticket::NAME, &e, Metadata::default())
            })
            .collect::<Result<Vec<_>, _>>()?;
        store
            .append(&stream, ExpectedVersion::Exact(written + 1), batch)
            .await?;
        written += n;
    }
    Ok(stream)
}

/// `load_stream`: one ticket with `messages` messages, loaded `loads` times
/// without snapshots.
async fn load_stream(
    target: &Target,
    sync: Sync,
    messages: u64,
    loads: u64,
    raw: bool,
) -> Result<Report, Failure> {
    let (seconds, ok) = on_store!(target.open()?, store => load_stream_on(store, target, messages, loads, raw).await?);
    Ok(Report {
        name: if raw {
            "raw_load_stream"
        } else {
            "load_stream"
        },
        params: json!({"sync": sync_name(sync), "events": messages + 1, "loads": loads}),
        events: (messages + 1) * loads,
        seconds,
        ok,
        extra: json!({"peak_rss_kb": peak_rss_kb()}),
    })
}

/// The timed part of [`load_stream`] on `store`: the seconds, and whether
/// every load saw every message.
async fn load_stream_on<S: Backend>(
    store: S,
    target: &Target,
    messages: u64,
    loads: u64,
    raw: bool,
) -> Result<(f64, bool), Failure> {
    let stream = populate(&store, "long", messages).await?;
    let check = move |version: u64, messages_seen: u32| {
        version == messages + 1 && u64::from(messages_seen) == messages
    };
    if raw {
        // On a thread of its own: the bare PostgreSQL client must not run
        // on the runtime.
        let target = target.clone();
        return target::off_runtime(move || {
            // Timed from the connection made, as the store's first load
            // makes its reader's.
            let started = Instant::now();
            let mut conn = target.twin()?;
            let mut ok = true;
            for _ in 0..loads {
                let (ticket, version) = conn.load(stream.as_str(), false)?;
                ok &= check(version, ticket.messages);
            }
            Ok((started.elapsed().as_secs_f64(), ok))
        });
    }
    let mut ok = true;
    let started = Instant::now();
    let tickets = Repository::<Ticket, _>::new(store.clone()).with_snapshots(false);
    for _ in 0..loads {
        let loaded = tickets.load("long").await?;
        ok &= check(loaded.version, loaded.messages);
    }
    Ok((started.elapsed().as_secs_f64(), ok))
}

/// `load_snapshot`: one ticket with `messages` messages and a snapshot
/// (taken by a first, untimed load), loaded `loads` times.
async fn load_snapshot(
    db: &Path,
    sync: Sync,
    messages: u64,
    loads: u64,
    raw: bool,
) -> Result<Report, Failure> {
    let store = open(db, sync)?;
    let stream = populate(&store, "huge", messages).await?;
    let tickets = Repository::<Ticket, _>::new(store.clone());
    let first = tickets.load("huge").await?;
    // The load queued its snapshot without waiting for it: wait here.
    store.flush().await?;
    let snapshot = store.load_snapshot(&stream).await?;
    let mut ok =
        first.version == messages + 1 && snapshot.is_some_and(|s| s.version == first.version);
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    if raw {
        let conn = raw::connect(db, sync)?;
        for _ in 0..loads {
            let one = Instant::now();
            let (ticket, version) = raw::load(&conn, stream.as_str(), true)?;
            slowest = slowest.max(one.elapsed());
            ok &= version == messages + 1 && u64::from(ticket.messages) == messages;
        }
    } else {
        for _ in 0..loads {
            let one = Instant::now();
            let loaded = tickets.load("huge").await?;
            slowest = slowest.max(one.elapsed());
            ok &= loaded.version == messages + 1 && u64::from(loaded.messages) == messages;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Report {
        name: if raw {
            "raw_load_snapshot"
        } else {
            "load_snapshot"
        },
        params: json!({"sync": sync_name(sync), "events": messages + 1, "loads": loads, "snapshot_every": 100}),
        events: loads,
        seconds,
        ok,
        extra: json!({
            "mean_ms": round(seconds * 1000.0 / loads.max(1) as f64, 4),
            "max_ms": round(slowest.as_secs_f64() * 1000.0, 4),
        }),
    })
}

/// `contention`'s settings.
#[derive(Clone, Copy)]
struct ContentionShape {
    tasks: usize,
    each: u64,
    race: bool,
    policy: Policy,
    retries: Option<u32>,
}

/// What the tasks of `contention` counted.
#[derive(Default)]
struct Tally {
    /// `attempts[k]`: how many commands took k + 1 attempts.
    attempts: Vec<u64>,
    /// Commands whose retries ran out.
    failed: u64,
    /// Conflicts met, by every command (a failed one met one per attempt).
    conflicts: u64,
    /// Decisions run again.
    reruns: u64,
    /// Conflicts the domain judged harmless: appended without deciding again.
    reruns_avoided: u64,
}

impl Tally {
    fn new() -> Self {
        Tally {
            attempts: vec![0; 8],
            ..Tally::default()
        }
    }

    fn add(&mut self, other: &Tally) {
        self.attempts
            .iter_mut()
            .zip(&other.attempts)
            .for_each(|(a, t)| *a += t);
        self.failed += other.failed;
        self.conflicts += other.conflicts;
        self.reruns += other.reruns;
        self.reruns_avoided += other.reruns_avoided;
    }
}

/// `contention`: `tasks` tasks on one ticket, `each` commands each (task
/// `n` writes as `agent-n`), with the repository's retries on conflict:
/// every command must complete (a command whose retries run out fails the
/// run), and the final version must be exactly `tasks * each + 1`. Reports
/// the conflicts, the attempts per command, and the decisions run again or
/// avoided (`--policy check-conflicts`).
async fn contention(
    target: &Target,
    sync: Sync,
    shape: ContentionShape,
    raw: bool,
) -> Result<Report, Failure> {
    let ContentionShape {
        tasks,
        each,
        race,
        policy,
        retries,
    } = shape;
    let (seconds, tally, group_commit) =
        on_store!(target.open()?, store => contention_on(store, target, shape, raw).await?);
    let expected = tasks as u64 * each + 1;
    let (version, events) = on_store!(target.open()?, store => {
        let version = store.stream_version(&StreamId::new("ticket-hot")?).await?;
        (version, read_count(&store, "ticket-hot").await?)
    });
    let attempts = &tally.attempts;
    let done = attempts.iter().sum::<u64>();
    let stored = version.saturating_sub(1);
    let policy = if raw { "rerun" } else { policy.name() };
    let mut extra = json!({
        "conflicts": tally.conflicts,
        "reruns": tally.reruns,
        "reruns_avoided": tally.reruns_avoided,
        "failed_commands": tally.failed,
        "attempts_per_command": round((done + tally.conflicts) as f64 / (done + tally.failed).max(1) as f64, 3),
        "commands_by_attempts": attempts,
        "final_version": version,
    });
    if let (Some(extra), Some(group_commit)) = (extra.as_object_mut(), group_commit.as_object()) {
        extra.extend(group_commit.clone());
    }
    Ok(Report {
        name: if raw { "raw_contention" } else { "contention" },
        params: json!({"sync": sync_name(sync), "tasks": tasks, "commands_per_task": each, "race": race, "policy": policy, "retries": retries}),
        events: stored,
        seconds,
        ok: tally.failed == 0 && version == expected && events == expected,
        extra,
    })
}

/// The timed part of [`contention`] on `store`: the seconds, what the
/// tasks counted, and the group commit's sizes (or `{}`).
async fn contention_on<S: Backend>(
    store: S,
    target: &Target,
    shape: ContentionShape,
    raw: bool,
) -> Result<(f64, Tally, Value), Failure> {
    let ContentionShape {
        tasks,
        each,
        race,
        policy,
        retries,
    } = shape;
    let mut repository = Repository::<Ticket, _>::new(store.clone())
        .with_serialized_commands(!race)
        .with_conflict_policy(policy.conflict_policy());
    if let Some(retries) = retries {
        repository = repository.with_retries(retries);
    }
    repository
        .execute("hot", |t| t.open("Everyone at once", "c@example.com"))
        .await?;
    let before = store.write_stats();
    let started = Instant::now();
    let mut tally = Tally::new();
    if raw {
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let target = target.clone();
                std::thread::spawn(move || raw_contention_task(&target, task, each))
            })
            .collect();
        for handle in handles {
            tally.add(&handle.join().map_err(|_| "a task panicked")??);
        }
    } else {
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let repository = repository.clone();
                tokio::spawn(async move { contention_task(&repository, task, each).await })
            })
            .collect();
        for handle in handles {
            tally.add(&handle.await??);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let group_commit = if raw {
        json!({})
    } else {
        group_commit(before, store.write_stats())
    };
    Ok((seconds, tally, group_commit))
}

/// One task of `contention`: `each` messages of `agent-{task}`.
async fn contention_task<S: Backend>(
    repository: &Repository<Ticket, S>,
    task: usize,
    each: u64,
) -> Result<Tally, Failure> {
    let mut tally = Tally::new();
    let agent = format!("agent-{task}");
    for i in 0..each {
        let text = body(task as u64 * each + i);
        match repository
            .execute("hot", |t| t.add_message(&text, &agent))
            .await
        {
            Ok(done) => {
                tally.attempts[(done.attempts as usize - 1).min(7)] += 1;
                tally.conflicts += u64::from(done.conflicts());
                tally.reruns += u64::from(done.reruns);
                tally.reruns_avoided += u64::from(done.reruns_avoided());
            }
            Err(e) if e.as_conflict().is_some() => {
                tally.failed += 1;
                if let Some(raced) = e.as_command_conflict() {
                    tally.conflicts += u64::from(raced.attempts);
                    tally.reruns += u64::from(raced.reruns);
                    tally.reruns_avoided += u64::from(raced.attempts - 1 - raced.reruns);
                }
            }
            Err(e) => return Err(Failure::from(e.to_string())),
        }
    }
    Ok(tally)
}

/// One thread of `raw_contention`: load, decide, insert, and on a conflict
/// start again (deciding again).
fn raw_contention_task(target: &Target, task: usize, each: u64) -> Result<Tally, Failure> {
    let mut conn = target.twin()?;
    let mut tally = Tally::new();
    for i in 0..each {
        let conflicts = conn.execute_message("ticket-hot", &body(task as u64 * each + i), true)?;
        tally.attempts[(conflicts as usize).min(7)] += 1;
        tally.conflicts += conflicts;
        tally.reruns += conflicts;
    }
    Ok(tally)
}

async fn read_count<S: EventStore>(store: &S, stream: &str) -> Result<u64, Failure> {
    let mut events = store.read_stream(&StreamId::new(stream)?, ReadRange::all());
    let mut n = 0;
    while let Some(e) = es_core::store::next(&mut events).await {
        e?;
        n += 1;
    }
    Ok(n)
}
