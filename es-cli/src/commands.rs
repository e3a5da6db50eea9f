//! What each command does.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use es_core::blocking::block_on;
use es_core::export::{ExportedEvent, ImportBatch, ImportBatches, ImportCheck, ImportRefusal};
use es_core::store::{Limits, next};
use es_core::{Error, EventStore, EventStream, ReadRange, RecordedEvent, StreamId};
use es_sqlite::rusqlite::{Connection, OpenFlags};
use es_sqlite::{ChainError, ChainHead, Salvaged, SqliteStore, Verify};
use indicatif::{ProgressBar, ProgressStyle};

use crate::damage::{Damaged, Ranges};
use crate::follow::Follow;
use crate::view::{self, ProjectionRow, TypeRow};
use crate::{Cli, Command, Failure, Shard, chain};

/// Runs the command `cli` names.
pub(crate) fn run(cli: &Cli) -> Result<(), Failure> {
    let out = io::stdout().lock();
    let done = match &cli.command {
        Command::Streams { .. } => streams(cli, out),
        Command::Events {
            stream, from, to, ..
        } => events(cli, out, stream, *from, *to),
        Command::Types { .. } => types(cli, out),
        Command::Projections { .. } => projections(cli, out),
        Command::Verify { head, .. } => verify(cli, out, *head),
        Command::Export {
            out: file,
            salvage,
            report,
            ..
        } => {
            let report = report.as_deref();
            match file {
                Some(file) => {
                    let created = File::create(file).map_err(|e| {
                        Failure::Input(format!("cannot create `{}`: {e}", file.display()))
                    })?;
                    if *salvage {
                        export_salvage(cli, BufWriter::new(created), true, report)
                    } else {
                        export(cli, BufWriter::new(created), true)
                    }
                }
                None if *salvage => export_salvage(cli, BufWriter::new(out), false, report),
                None => export(cli, BufWriter::new(out), false),
            }
        }
        Command::Import {
            file,
            renumber,
            shard,
            postgres,
            schema,
        } => {
            // The whole file is checked before any store is opened (or made).
            let how = Import {
                file,
                renumber: *renumber,
                shard: *shard,
                total: check_file(file, *renumber)?,
            };
            if let Some(url) = postgres {
                let store = es_postgres::PostgresStore::options()
                    .schema(schema.as_str())
                    .connect(url)
                    .map_err(|e| Failure::store(&e))?;
                import(out, &how, &store, &format!("schema `{schema}` of {url}"))
            } else {
                let store = SqliteStore::open(cli.db()).map_err(|e| Failure::store(&e))?;
                import(out, &how, &store, &format!("`{}`", cli.db().display()))
            }
        }
        Command::Tail { from, .. } => tail(cli, out, *from),
        Command::Serve { addr, .. } => {
            drop(out);
            let store = open_read_with(cli.db(), Verify::Full, 2)?;
            crate::serve::serve(store, cli.db().to_path_buf(), addr).map_err(Stop::Failed)
        }
    };
    match done {
        // A reader that stopped reading (`es events … | head`) is not a failure.
        Err(Stop::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(Stop::Output(e)) => Err(Failure::Input(format!("cannot write the output: {e}"))),
        Err(Stop::Failed(failure)) => Err(failure),
        Ok(()) => Ok(()),
    }
}

/// Why a command stopped early.
enum Stop {
    Failed(Failure),
    Output(io::Error),
}

impl From<Failure> for Stop {
    fn from(failure: Failure) -> Self {
        Stop::Failed(failure)
    }
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        Stop::Output(e)
    }
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(Failure::store(&e))
    }
}

type Done = Result<(), Stop>;

/// Opens the store so that nothing can be written to it.
fn open_read(db: &Path, verify: Verify) -> Result<SqliteStore, Failure> {
    open_read_with(db, verify, 1)
}

/// [`open_read`] with `readers` reader threads.
fn open_read_with(db: &Path, verify: Verify, readers: usize) -> Result<SqliteStore, Failure> {
    SqliteStore::options()
        .read_only()
        .verify(verify)
        .readers(readers)
        .open(db)
        .map_err(|e| Failure::store(&e))
}

/// A progress bar on standard error, drawn only on a terminal.
fn bar(len: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len}") {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar
}

/// Prints a value as one JSON line.
fn json_line(out: &mut impl Write, value: &impl serde::Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)
}

/// Prints rows as a table with a header, columns as wide as their widest cell.
fn table<const N: usize>(out: &mut impl Write, header: [&str; N], rows: &[[String; N]]) -> Done {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: [&str; N]| -> io::Result<()> {
        let mut text = String::new();
        for (n, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if n + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(cell);
                let pad = width.saturating_sub(cell.chars().count()) + 2;
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, header)?;
    for row in rows {
        line(out, std::array::from_fn(|n| row[n].as_str()))?;
    }
    Ok(())
}

/// Calls `each` with every event of `events`.
fn for_each(
    mut events: EventStream,
    mut each: impl FnMut(RecordedEvent) -> Done,
) -> Result<(), Stop> {
    while let Some(event) = block_on(next(&mut events)) {
        each(event?)?;
    }
    Ok(())
}

fn streams(cli: &Cli, mut out: impl Write) -> Done {
    let store = open_read(cli.db(), Verify::Full)?;
    let streams = block_on(view::streams(&store))?;
    if cli.json {
        for row in &streams {
            json_line(&mut out, row)?;
        }
        return Ok(());
    }
    let rows: Vec<[String; 4]> = streams
        .into_iter()
        .map(|r| {
            [
                r.stream,
                r.aggregate_type,
                r.events.to_string(),
                r.last_recorded_at.to_string(),
            ]
        })
        .collect();
    table(
        &mut out,
        ["STREAM", "TYPE", "EVENTS", "LAST ACTIVITY"],
        &rows,
    )
}

/// Prints one event: a JSON line, or a few lines of text.
fn print_event(json: bool, out: &mut impl Write, event: &RecordedEvent) -> Done {
    let line = ExportedEvent::of(event).map_err(|e| {
        Failure::Store(format!(
            "the payload at position {} is not JSON: {e}",
            event.position
        ))
    })?;
    if json {
        return Ok(json_line(out, &line)?);
    }
    let metadata = serde_json::to_string(&event.metadata).unwrap_or_default();
    writeln!(
        out,
        "#{} {} v{}  {} (schema {})  id {}\n  recorded {}  occurred {}\n  metadata {metadata}\n  payload  {}",
        event.position,
        event.stream_id,
        event.version,
        event.name,
        event.schema_version,
        event.event_id,
        event.recorded_at,
        event.occurred_at,
        event.payload().as_str(),
    )?;
    Ok(())
}

fn events(
    cli: &Cli,
    mut out: impl Write,
    stream: &str,
    from: Option<u64>,
    to: Option<u64>,
) -> Done {
    let id = StreamId::new(stream)
        .map_err(|e| Failure::Input(format!("`{stream}` is not a stream id: {e}")))?;
    let range = ReadRange {
        start: from.unwrap_or(1),
        end: to,
    };
    if to.is_some_and(|to| to < range.first()) {
        return Err(Failure::Input("--to is before --from".to_owned()).into());
    }
    let store = open_read(cli.db(), Verify::Full)?;
    if block_on(store.stream_version(&id))? == 0 {
        return Err(Failure::Input(format!(
            "`{}` holds no stream `{stream}`",
            cli.db().display()
        ))
        .into());
    }
    for_each(store.read_stream(&id, range), |event| {
        print_event(cli.json, &mut out, &event)
    })
}

fn types(cli: &Cli, mut out: impl Write) -> Done {
    let store = open_read(cli.db(), Verify::Full)?;
    let types = block_on(store.event_types())?;
    if cli.json {
        for t in types {
            json_line(&mut out, &TypeRow::from(t))?;
        }
        return Ok(());
    }
    let rows: Vec<[String; 4]> = types
        .into_iter()
        .map(|t| {
            [
                t.aggregate_type,
                t.name,
                t.schema_version.to_string(),
                t.count.to_string(),
            ]
        })
        .collect();
    table(&mut out, ["TYPE", "NAME", "SCHEMA", "EVENTS"], &rows)
}

fn projections(cli: &Cli, mut out: impl Write) -> Done {
    let store = open_read(cli.db(), Verify::Full)?;
    let listed = store.projections().map_err(|e| Failure::store(&e))?;
    let rows: Vec<ProjectionRow> = listed.iter().map(ProjectionRow::of).collect();
    if cli.json {
        for row in &rows {
            json_line(&mut out, row)?;
        }
        return Ok(());
    }
    let cells: Vec<[String; 8]> = rows.iter().map(ProjectionRow::cells).collect();
    table(
        &mut out,
        [
            "NAME", "KIND", "VERSION", "POSITION", "HEAD", "LAG", "PARKED", "SERVING",
        ],
        &cells,
    )
}

/// What one check of `verify` found.
#[derive(serde::Serialize)]
struct Check {
    /// Which check: `integrity`, `events` or `chain`.
    #[serde(rename = "check")]
    name: &'static str,
    ok: bool,
    detail: String,
    /// The damaged ranges of positions, each with the streams and versions
    /// its rows name (the `events` check).
    #[serde(skip_serializing_if = "Ranges::is_empty")]
    damaged: Ranges,
}

fn verify(cli: &Cli, mut out: impl Write, head: Option<ChainHead>) -> Done {
    let integrity = integrity(cli.db())?;
    // Opened without its own check: `integrity` did it, and reports
    // damage instead of refusing the file.
    let store = open_read(cli.db(), Verify::Off)?;
    let events = events_check(&store)?;
    let chain = chain_check(&store, head)?;
    report(cli, &mut out, &[integrity, events, chain])
}

fn report(cli: &Cli, out: &mut impl Write, checks: &[Check]) -> Done {
    for check in checks {
        if cli.json {
            json_line(out, check)?;
        } else {
            let status = if check.ok { "ok" } else { "FAILED" };
            writeln!(out, "{:<10} {status:<6}  {}", check.name, check.detail)?;
            for line in check.damaged.lines() {
                writeln!(out, "{:<20}{line}", "")?;
            }
        }
    }
    let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Findings(failed.join(", ")).into())
    }
}

/// `PRAGMA integrity_check` on a read-only connection of its own.
fn integrity(db: &Path) -> Result<Check, Failure> {
    let cannot =
        |e: &dyn std::fmt::Display| Failure::Store(format!("cannot open `{}`: {e}", db.display()));
    std::fs::metadata(db).map_err(|e| cannot(&e))?;
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| cannot(&e))?;
    let checked: Result<Vec<String>, _> =
        conn.prepare("PRAGMA integrity_check")
            .and_then(|mut check| {
                check
                    .query_map([], |r| r.get(0))
                    .and_then(Iterator::collect)
            });
    let found = match checked {
        Ok(found) => found,
        // So damaged that SQLite cannot finish the check: a finding, and
        // the other checks still run.
        Err(e)
            if e.sqlite_error_code() == Some(es_sqlite::rusqlite::ErrorCode::DatabaseCorrupt) =>
        {
            vec![format!("SQLite cannot finish the check: {e}")]
        }
        Err(e) => return Err(cannot(&e)),
    };
    let ok = found == ["ok"];
    Ok(Check {
        name: "integrity",
        ok,
        detail: if ok {
            "the file's pages and indexes are sound".to_owned()
        } else {
            found.join("; ")
        },
        damaged: Ranges::default(),
    })
}

/// Reads every position of the log through a salvage (checksums,
/// positions confirmed, gapless), past damage, listing every damaged range,
/// and checks that each stream's versions follow one another where no
/// damage explains a gap.
fn events_check(store: &SqliteStore) -> Result<Check, Failure> {
    let last = block_on(store.last_position()).unwrap_or(0);
    let bar = bar(last, "reading events");
    let mut versions = HashMap::<String, u64>::new();
    let mut jumps = Vec::new();
    let mut ranges = Ranges::default();
    let mut read = 0u64;
    let salvaged = block_on(store.salvage(1, |item| {
        bar.set_position(item.position());
        match item {
            Salvaged::Event(event) => {
                read += 1;
                let stream = event.stream_id.to_string();
                let before = versions.insert(stream.clone(), event.version).unwrap_or(0);
                if event.version != before + 1 {
                    jumps.push((stream, before, event.version, event.position));
                }
            }
            Salvaged::Damaged(found) => ranges.add(Damaged::from(&found)),
            _ => {}
        }
        ControlFlow::Continue(())
    }))
    .map_err(|e| Failure::store(&e))?;
    bar.finish_and_clear();
    let mut problems = Vec::new();
    if !ranges.is_empty() {
        problems.push(format!(
            "{read} of {} events read back whole; {} damaged, in {} ranges of positions:",
            salvaged.end,
            ranges.positions(),
            ranges.len()
        ));
    }
    // A stream whose versions jump where no damaged position can hold the
    // missing ones: rows deleted, or an index that hides them.
    for (stream, before, version, position) in jumps {
        if !ranges.may_hold(&stream) {
            problems.push(format!(
                "position {position}: stream `{stream}` has version {version} after version {before}"
            ));
        }
    }
    if salvaged.misplaced > 0 {
        problems.push(format!(
            "{} rows whose stored position is damaged were set aside",
            salvaged.misplaced
        ));
    }
    Ok(Check {
        name: "events",
        ok: problems.is_empty(),
        detail: if problems.is_empty() {
            format!("{read} events read: checksums, versions and positions are sound")
        } else {
            problems.join("; ")
        },
        damaged: ranges,
    })
}

/// The audit chain, to the end or to a kept head.
fn chain_check(store: &SqliteStore, head: Option<ChainHead>) -> Result<Check, Failure> {
    let spinner = ProgressBar::new_spinner();
    spinner.set_message("verifying the audit chain");
    spinner.enable_steady_tick(Duration::from_millis(100));
    let verified = match head {
        Some(kept) => block_on(store.verify_chain_to(kept)),
        None => block_on(store.verify_chain()),
    };
    spinner.finish_and_clear();
    let (ok, detail) = match verified {
        Ok(report) => (true, report.to_string()),
        Err(ChainError::Store(Error::Corrupt { detail })) => (false, detail),
        Err(ChainError::Store(e)) => return Err(Failure::store(&e)),
        Err(e) => (false, chain(&e)),
    };
    Ok(Check {
        name: "chain",
        ok,
        detail,
        damaged: Ranges::default(),
    })
}

fn export(cli: &Cli, mut out: impl Write, progress: bool) -> Done {
    let store = open_read(cli.db(), Verify::Full)?;
    let last = block_on(store.last_position())?;
    let bar = if progress {
        bar(last, "exporting")
    } else {
        ProgressBar::hidden()
    };
    for_each(store.read_all(1), |event| {
        bar.set_position(event.position);
        print_event(true, &mut out, &event)
    })?;
    bar.finish_and_clear();
    out.flush()?;
    Ok(())
}

/// What `export --salvage` did: the report it prints (on standard error)
/// and writes to `--report`.
#[derive(serde::Serialize)]
struct SalvageSummary {
    /// Events exported.
    exported: u64,
    /// Positions skipped: damaged, or an event whose payload is not JSON.
    skipped: u64,
    /// The last position the log should hold.
    end: u64,
    /// Rows whose stored position is damaged, set aside.
    misplaced: u64,
    /// Every position up to the end was looked at.
    complete: bool,
    /// The skipped positions, as ranges.
    damaged: Ranges,
}

/// Every event that still reads back whole, past damage, as JSON lines;
/// then the report of what was skipped. Exit 1 when anything was.
fn export_salvage(
    cli: &Cli,
    mut out: impl Write,
    progress: bool,
    report_file: Option<&Path>,
) -> Done {
    // Not checked at open: damage is what a salvage is for.
    let store = open_read(cli.db(), Verify::Off)?;
    let last = block_on(store.last_position()).unwrap_or(0);
    let bar = if progress {
        bar(last, "salvaging")
    } else {
        ProgressBar::hidden()
    };
    let mut ranges = Ranges::default();
    let mut exported = 0u64;
    let mut failed = None;
    let salvaged = block_on(store.salvage(1, |item| {
        bar.set_position(item.position());
        match item {
            Salvaged::Event(event) => match ExportedEvent::of(&event) {
                Ok(line) => {
                    if let Err(e) = json_line(&mut out, &line) {
                        failed = Some(e);
                        return ControlFlow::Break(());
                    }
                    exported += 1;
                }
                Err(e) => ranges.add(Damaged {
                    position: event.position,
                    stream: Some(event.stream_id.to_string()),
                    version: Some(event.version),
                    kind: "payload",
                    detail: format!("its payload is not JSON: {e}"),
                }),
            },
            Salvaged::Damaged(found) => ranges.add(Damaged::from(&found)),
            _ => {}
        }
        ControlFlow::Continue(())
    }));
    bar.finish_and_clear();
    if let Some(e) = failed {
        return Err(Stop::Output(e));
    }
    let salvaged = salvaged?;
    out.flush()?;
    let summary = SalvageSummary {
        exported,
        skipped: ranges.positions(),
        end: salvaged.end,
        misplaced: salvaged.misplaced,
        complete: salvaged.is_complete(),
        damaged: ranges,
    };
    if let Some(file) = report_file {
        let written = serde_json::to_vec_pretty(&summary)
            .map_err(io::Error::other)
            .and_then(|mut json| {
                json.push(b'\n');
                std::fs::write(file, json)
            });
        written.map_err(|e| {
            Failure::Input(format!("cannot write the report `{}`: {e}", file.display()))
        })?;
    }
    let mut err = io::stderr().lock();
    if cli.json {
        json_line(&mut err, &summary)?;
    } else if summary.skipped == 0 {
        writeln!(err, "salvage: {exported} events exported; nothing skipped")?;
    } else {
        writeln!(
            err,
            "salvage: {exported} events exported; {} of the {} positions skipped, in {} ranges:",
            summary.skipped,
            summary.end,
            summary.damaged.len()
        )?;
        for line in summary.damaged.lines() {
            writeln!(err, "  {line}")?;
        }
    }
    if summary.misplaced > 0 && !cli.json {
        writeln!(
            err,
            "salvage: {} rows whose stored position is damaged were set aside",
            summary.misplaced
        )?;
    }
    if summary.skipped > 0 || summary.misplaced > 0 {
        return Err(Failure::Findings("damaged events were skipped".to_owned()).into());
    }
    Ok(())
}

/// The events of an export file, each with its line number (from 1),
/// blank lines skipped.
fn lines(
    file: &Path,
) -> Result<impl Iterator<Item = Result<(usize, ExportedEvent), Failure>>, Failure> {
    let opened = File::open(file)
        .map_err(|e| Failure::Input(format!("cannot open `{}`: {e}", file.display())))?;
    let name = file.display().to_string();
    Ok(BufReader::new(opened)
        .lines()
        .enumerate()
        .filter_map(move |(n, text)| {
            let number = n + 1;
            let bad =
                |e: &dyn std::fmt::Display| Failure::Input(format!("{name}: line {number}: {e}"));
            match text {
                Err(e) => Some(Err(bad(&e))),
                Ok(text) => ExportedEvent::parse(&text)
                    .map_err(|e| bad(&e))
                    .transpose()
                    .map(|parsed| parsed.map(|event| (number, event))),
            }
        }))
}

/// Whether `event` is of `shard` (every event is, without one).
fn in_shard(shard: Option<Shard>, event: &ExportedEvent) -> bool {
    match (shard, StreamId::new(&event.stream)) {
        (Some(shard), Ok(stream)) => es_core::shard::shard_of(&stream, shard.count) == shard.index,
        // An invalid stream id is refused by the check, whatever the shard.
        _ => true,
    }
}

/// Checks the whole file before anything is written ([`ImportCheck`]):
/// returns the number of events.
fn check_file(file: &Path, renumber: bool) -> Result<u64, Failure> {
    // The limits of the store `import` opens (the defaults).
    let mut check = ImportCheck::new(renumber, Limits::default());
    for line in lines(file)? {
        let (number, event) = line?;
        check.check(&event).map_err(|e| {
            let hint = if matches!(e, ImportRefusal::VersionGap { .. }) {
                " (`import --renumber`)"
            } else {
                ""
            };
            Failure::Input(format!("{}: line {number}: {e}{hint}", file.display()))
        })?;
    }
    Ok(check.events())
}

/// What `es import` imports, and how.
struct Import<'a> {
    file: &'a Path,
    renumber: bool,
    shard: Option<Shard>,
    /// The file's events, as its check counted them.
    total: u64,
}

/// Imports into `store` (named `target` in the report): a SQLite file or
/// a PostgreSQL database, the same way.
fn import<S: EventStore>(mut out: impl Write, how: &Import<'_>, store: &S, target: &str) -> Done {
    let Import {
        file,
        renumber,
        shard,
        total,
    } = *how;
    let bar = bar(total, "importing");
    let (mut appended, mut repeated) = (0u64, 0u64);
    let mut append = |batch: ImportBatch| -> Result<(), Stop> {
        let results = block_on(store.append_to_streams(batch.writes))
            .map_err(|e| import_error(file, batch.first_line, &e))?;
        let n = batch.events as u64;
        if results.iter().all(|r| r.repeated) {
            repeated += n;
        } else {
            appended += n;
        }
        bar.inc(n);
        Ok(())
    };
    let mut batches = ImportBatches::new(renumber, &Limits::default());
    let mut elsewhere = 0u64;
    for line in lines(file)? {
        let (number, event) = line?;
        if !in_shard(shard, &event) {
            elsewhere += 1;
            bar.inc(1);
            continue;
        }
        let full = batches
            .push(number, event)
            .map_err(|e| Failure::Input(format!("line {number}: {e}")))?;
        if let Some(batch) = full {
            append(batch)?;
        }
    }
    if let Some(batch) = batches.finish() {
        append(batch)?;
    }
    bar.finish_and_clear();
    let renumbered = match batches.renumbered_streams() {
        0 => String::new(),
        n => format!("; the versions of {n} streams renumbered to close their gaps"),
    };
    let others = match shard {
        Some(shard) => format!(
            "; {elsewhere} events of streams of other shards than {}/{} left out",
            shard.index, shard.count
        ),
        None => String::new(),
    };
    writeln!(
        out,
        "{appended} events imported, {repeated} already stored, into {target}{renumbered}{others}"
    )?;
    Ok(())
}

/// An append of an import that failed: the input does not fit the store
/// (exit 2), or the store cannot write (exit 3).
fn import_error(file: &Path, line: usize, e: &Error) -> Stop {
    let at = format!("{}: line {line}", file.display());
    Stop::Failed(match e {
        Error::Conflict(_)
        | Error::DuplicateEvent { .. }
        | Error::InvalidName { .. }
        | Error::InvalidEvent { .. }
        | Error::Limit(_)
        | Error::AggregateMismatch { .. } => Failure::Input(format!(
            "{at}: does not fit the store, nothing of it was written: {}",
            chain(e)
        )),
        _ => Failure::Store(format!("{at}: {}", chain(e))),
    })
}

fn tail(cli: &Cli, mut out: impl Write, from: Option<u64>) -> Done {
    let store = open_read(cli.db(), Verify::Full)?;
    let mut follow = Follow::new(store, from)?;
    loop {
        follow.read(|event| print_event(cli.json, &mut out, &event))?;
        out.flush()?;
        follow.wait();
    }
}
