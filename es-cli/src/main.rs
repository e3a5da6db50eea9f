//! # `es`: the inspector of es-sqlite event stores
//!
//! A command line for any es-sqlite file, whatever program wrote it: it
//! reads envelopes and stored payloads, never the program's event types.
//!
//! ```text
//! es streams tickets.db                      # each stream: type, events, last activity
//! es events ticket-1 tickets.db --from 2
//! es types tickets.db                        # stored (aggregate, name, schema version) counts
//! es projections tickets.db                  # read models, inline models, checkpoints: lag, parked
//! es verify tickets.db --head 42:9f…         # integrity, checksums, contiguity, audit chain
//! es export tickets.db --out all.jsonl       # one event per line
//! es export --salvage bad.db --out s.jsonl   # every event that still reads, and what was skipped
//! es --db copy.db import all.jsonl           # into a new or existing store, idempotent
//! es --db new.db import --renumber s.jsonl   # a salvage, its streams' gaps closed
//! es --db new-0.db import --shard 0/3 all.jsonl  # only the streams of shard 0 of 3
//! es tail tickets.db --from 1                # follow $all
//! es serve tickets.db --addr 127.0.0.1:8081  # the same, and projections, as a web page
//! ```
//!
//! Every reading command takes the events file as its last argument
//! (`FILE`), or as `--db FILE` (both: the same file, or a usage error);
//! without either, `events.db`. `import` takes the file to read as its
//! argument, and the store as `--db`.
//!
//! Every command but `import` opens the store read-only
//! ([`SqliteOptions::read_only`](es_sqlite::SqliteOptions::read_only)): a
//! file that does not exist is not created, a file of an older schema is
//! not migrated (it is refused, untouched), and nothing is written.
//! `--json` prints JSON lines instead of tables.
//!
//! `es serve` serves the same, read-only, as a web page and a JSON API
//! (`/api/streams`, `/api/streams/{stream}/events`, `/api/all`,
//! `/api/projections`, `/api/types`, and `/api/tail`, a live tail of
//! `$all` as server-sent events), with failures as RFC 9457 problem
//! documents; it prints `listening on http://ADDR` and runs until Ctrl-C.
//!
//! `verify` reads every position of the log, past damage (a salvage,
//! [`SqliteStore::salvage`](es_sqlite::SqliteStore::salvage)), and lists
//! every damaged range of positions with the streams and versions its rows
//! name. `export --salvage` writes every event that still reads back whole
//! (checksum and position verified), and a report of what it skipped (on
//! standard error, as JSON with `--json`; and as JSON in `--report FILE`);
//! `import --renumber` imports such a file into a new store, renumbering
//! each stream's versions from 1 where damaged events left gaps.
//!
//! `import --shard I/M` imports only the streams that the stable shard
//! hash ([`shard_of`](es_core::shard::shard_of)) sends to shard `I` of a
//! [`ShardedStore`](es_core::ShardedStore) of `M` shards: resharding SQLite
//! files by copy is `es export` of each old shard file, then `es import
//! --shard I/M` of every export into each new shard file `I` (see
//! [`es_core::shard`]).
//!
//! Exit codes: 0 ok, 1 `verify` found damage or tampering, or `export
//! --salvage` skipped damaged events (all it could read is exported), 2 bad
//! usage or bad input (an address `serve` cannot listen on too), 3 the
//! store cannot be opened or read.
//!
//! Sealed personal fields ([`Personal`](es_core::Personal)) are shown,
//! exported and imported as stored, sealed: the inspector has no keys.

mod commands;
mod damage;
mod follow;
mod serve;
mod view;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// What ends a command other than success, and its exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// `verify` found something, or `export --salvage` skipped damaged
    /// events (exit 1); what it found is printed already.
    #[error("{0}")]
    Findings(String),
    /// Bad usage or bad input (exit 2).
    #[error("{0}")]
    Input(String),
    /// The store cannot be opened or read (exit 3).
    #[error("{0}")]
    Store(String),
}

impl Failure {
    /// A store failure with its causes, one after another.
    pub(crate) fn store(error: &(dyn std::error::Error + 'static)) -> Failure {
        Failure::Store(chain(error))
    }

    fn code(&self) -> u8 {
        match self {
            Failure::Findings(_) => 1,
            Failure::Input(_) => 2,
            Failure::Store(_) => 3,
        }
    }
}

/// An error and its sources, as one line.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

const AFTER_HELP: &str = "\
Examples:
  es streams tickets.db
  es events ticket-t-1 tickets.db --from 2
  es verify tickets.db
  es export --salvage damaged.db --out salvage.jsonl --report skipped.json
  es --db new.db import --renumber salvage.jsonl
  es projections tickets.db
  es tail tickets.db --from 1
  es serve tickets.db --addr 127.0.0.1:8081
  es --db copy.db import all.jsonl
  es --db new-0.db import --shard 0/3 old-0.jsonl   # resharding by copy

The events file is the last argument of every command but `import` (or
--db FILE; both: the same file, or a usage error; neither: events.db).
Every command but `import` opens the store read-only: a missing file is not
created, a file of an older schema is not migrated, nothing is written.

Sealed personal fields (`Personal<T>`) are shown, exported and imported as
stored, sealed: the inspector has no keys, and needs none.

A damaged file: `verify` lists every damaged range of positions; `export
--salvage` exports every event that still reads back whole and reports what
it skipped; `import --renumber` imports that into a new store, closing the
gaps the skipped events left in their streams' versions.

Exit codes:
  0  ok
  1  `verify` found damage or tampering; `export --salvage` skipped damaged events
  2  bad usage, or bad input (an import file, a --head, an --addr to serve on)
  3  the store cannot be opened or read (missing, not an es store, older schema, damaged)";

/// The events file when none is named.
const DEFAULT_DB: &str = "events.db";

/// The inspector of es-sqlite event stores.
#[derive(Debug, Parser)]
#[command(name = "es", version, about, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// The es-sqlite events file, for `import` (the other commands take it
    /// as their FILE, or this); default: events.db.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) db: Option<PathBuf>,
    /// Prints JSON lines (one object a line) instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The events file a reading command works on, given after its other
/// arguments: `es streams tickets.db`.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreFile {
    /// The es-sqlite events file (or --db FILE; default: events.db).
    #[arg(value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
}

impl Cli {
    /// The FILE of the command, if it takes one and was given it.
    fn file(&self) -> Option<&Path> {
        let store = match &self.command {
            Command::Streams { store }
            | Command::Events { store, .. }
            | Command::Types { store }
            | Command::Projections { store }
            | Command::Serve { store, .. }
            | Command::Verify { store, .. }
            | Command::Export { store, .. }
            | Command::Tail { store, .. } => store,
            Command::Import { .. } => return None,
        };
        store.file.as_deref()
    }

    /// The events file: the command's FILE, else `--db`, else
    /// `events.db`.
    pub(crate) fn db(&self) -> &Path {
        self.file()
            .or(self.db.as_deref())
            .unwrap_or(Path::new(DEFAULT_DB))
    }

    /// A usage error when FILE and `--db` name different files.
    fn check_file(&self) -> Result<(), clap::Error> {
        match (self.file(), self.db.as_deref()) {
            (Some(file), Some(db)) if file != db => Err(Cli::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "FILE `{}` and --db `{}` name different files: give one of them",
                    file.display(),
                    db.display()
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Lists each stream with its aggregate type, event count and last
    /// activity (the time its last event was recorded).
    Streams {
        #[command(flatten)]
        store: StoreFile,
    },
    /// Prints the events of one stream: envelope, metadata and payload as
    /// stored.
    Events {
        /// The stream id.
        stream: String,
        /// The first version to print (default: 1).
        #[arg(long, value_name = "V")]
        from: Option<u64>,
        /// The last version to print (default: the last).
        #[arg(long, value_name = "V")]
        to: Option<u64>,
        #[command(flatten)]
        store: StoreFile,
    },
    /// Lists the stored (aggregate type, event name, schema version) with
    /// how many events have each.
    Types {
        #[command(flatten)]
        store: StoreFile,
    },
    /// Lists every projection's checkpoint and how far behind the head it
    /// is: the read-model files beside the events file (`tickets.db` ->
    /// `tickets.read-models/`), one per version and generation, with
    /// whether it serves and its parked events; the inline read models;
    /// the checkpoint store's positions. Lag in events, and in time (how
    /// much later the head was recorded than the last event taken).
    Projections {
        #[command(flatten)]
        store: StoreFile,
    },
    /// Checks the file (`PRAGMA integrity_check`), every event's checksum and
    /// the contiguity of versions and positions (by reading every position,
    /// past damage: every damaged range is listed, with the streams and
    /// versions its rows name), and the audit chain; exit 1 when anything is
    /// wrong.
    Verify {
        /// A head kept earlier (`POSITION:HASH`, as `verify` prints it):
        /// proves that nothing at or before it changed, even if the chain
        /// after an edit was computed again.
        #[arg(long, value_name = "POSITION:HASH")]
        head: Option<es_sqlite::ChainHead>,
        #[command(flatten)]
        store: StoreFile,
    },
    /// Writes every event, in `$all` order, as JSON lines: stream, aggregate
    /// type, version, position, event id, name, schema version, recorded at,
    /// occurred at, metadata, and the payload as stored.
    ///
    /// With --salvage, for a damaged file: every event that still reads
    /// back whole (its checksum holds and its position is confirmed),
    /// reading past damage, and a report of the damaged ranges skipped, on
    /// standard error (JSON with --json) and in --report FILE (JSON); exit
    /// 1 when anything was skipped. The file's structure is not checked
    /// first, so a file the other commands refuse can be salvaged.
    Export {
        /// The file to write (default: standard output).
        #[arg(long, value_name = "OUT")]
        out: Option<PathBuf>,
        /// Exports every event that still reads, past damage, and reports
        /// what was skipped.
        #[arg(long)]
        salvage: bool,
        /// With --salvage: also writes the report, as JSON, to this file.
        #[arg(long, value_name = "FILE", requires = "salvage")]
        report: Option<PathBuf>,
        #[command(flatten)]
        store: StoreFile,
    },
    /// Appends the events of an `export` file to the store (created when
    /// missing), keeping event ids, occurred-at times and metadata; positions
    /// and recorded-at times are the new store's. Running it again changes
    /// nothing. The whole file is checked first: a bad line is reported with
    /// its number and nothing is written. The store is named with --db
    /// (default: events.db); an existing empty file is refused (it may be a
    /// truncated copy): name a new file.
    Import {
        /// The JSON lines file, as `export` writes it.
        file: PathBuf,
        /// Renumbers each stream's versions from 1, in the file's order,
        /// where they have gaps: for a salvage (`export --salvage`), whose
        /// skipped events leave gaps, imported into a new store. Versions
        /// must still increase within each stream.
        #[arg(long)]
        renumber: bool,
        /// Imports only the streams of shard I of M (`0/3`, `1/3`, `2/3`):
        /// those that es's stable shard hash (`es_core::shard::shard_of`)
        /// sends to shard I of a sharded store of M shards. To reshard by
        /// copy, import every export file into each new shard file with its
        /// own `--shard I/M`.
        #[arg(long, value_name = "I/M", value_parser = parse_shard)]
        shard: Option<Shard>,
        /// Imports into the PostgreSQL database URL names
        /// (`postgresql://user@host/db`) instead of the SQLite file: how a
        /// store moves from SQLite to PostgreSQL (es-postgres). Its tables
        /// are made in `--schema` when missing.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
        /// The PostgreSQL schema of `--postgres`'s store.
        #[arg(long, value_name = "NAME", default_value = "es", requires = "postgres")]
        schema: String,
    },
    /// Serves the inspector as a read-only web page (streams, a stream's
    /// events, a live tail of `$all`, projections and their lag) and its
    /// JSON API, until interrupted (Ctrl-C). Prints `listening on
    /// http://ADDR` first, with the address bound.
    Serve {
        /// The address to listen on (port 0: any free port).
        #[arg(long, value_name = "HOST:PORT", default_value = serve::DEFAULT_ADDR)]
        addr: String,
        #[command(flatten)]
        store: StoreFile,
    },
    /// Follows `$all`: prints each event as it is committed, from the end
    /// (or `--from`), until interrupted.
    Tail {
        /// The first position to print (default: after the last event).
        #[arg(long, value_name = "POSITION")]
        from: Option<u64>,
        #[command(flatten)]
        store: StoreFile,
    },
}

/// One shard of a sharded store: index `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shard {
    /// Which, from 0.
    pub(crate) index: u32,
    /// Of how many, at least 1.
    pub(crate) count: u32,
}

/// `I/M` with `I < M`.
fn parse_shard(text: &str) -> Result<Shard, String> {
    let bad = || format!("`{text}` is not a shard I/M with 0 <= I < M (like `0/3`)");
    let (index, count) = text.split_once('/').ok_or_else(bad)?;
    let index: u32 = index.trim().parse().map_err(|_| bad())?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    if index >= count {
        return Err(bad());
    }
    Ok(Shard { index, count })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(usage) = cli.check_file() {
        usage.exit();
    }
    match commands::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !matches!(failure, Failure::Findings(_)) {
                eprintln!("es: {failure}");
            }
            ExitCode::from(failure.code())
        }
    }
}
