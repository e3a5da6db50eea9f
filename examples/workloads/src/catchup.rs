//! `projection_catchup`: a log of tickets, then a SQLite read model of them
//! (ticket id, status, message count) built from position 0 by the
//! es-sqlite runner; with `--live`, `append_concurrent`'s load runs against
//! the same store while the runner follows, and each command's lag is
//! measured. `raw_projection_catchup`: the same read model built by hand on
//! bare `rusqlite` from the same kind of log, the ceiling of the runner.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use es_core::prelude::*;
use es_core::{BoxError, NewEvent, StreamWrite};
use es_sqlite::rusqlite::{self, Connection, TransactionBehavior};
use es_sqlite::{ReadModel, ReadModels, RunOptions, Runner, SqliteStore};
use serde_json::json;
use ticket::{MessageAdded, Ticket, TicketClosed, TicketEvent, TicketOpened};

use crate::{Failure, Report, Sync, body, raw, round, sync_name, ticket_id};

/// The read model's table, the same for the runner and the raw twin.
const TABLE: &str = "CREATE TABLE tickets (\
     id TEXT PRIMARY KEY, status TEXT NOT NULL, messages INTEGER NOT NULL) STRICT";
const OPENED: &str = "INSERT INTO tickets (id, status, messages) VALUES (?1, 'open', 0)";
const MESSAGE: &str = "UPDATE tickets SET messages = messages + 1 WHERE id = ?1";
const CLOSED: &str = "UPDATE tickets SET status = 'closed' WHERE id = ?1";

/// The tickets `--live`'s commands go to, opened after the log (as many as
/// `append_concurrent`'s).
const LIVE_TICKETS: u64 = 1_000;

/// The id of `--live`'s ticket `n`.
fn live_id(n: u64) -> String {
    format!("live{n}")
}

/// Most events in one append (the store's default limit).
const PER_APPEND: usize = 1_000;

/// Tickets, their status and how many messages they hold.
#[derive(Projection, Default)]
#[projection(
    name = "ticket-summaries",
    events(TicketOpened, MessageAdded, TicketClosed),
    context = Connection
)]
pub(crate) struct Summaries;

impl ReadModel for Summaries {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        db.execute_batch(TABLE)
    }
}

/// Runs one of the statements above for ticket `id`: it must change exactly
/// one row (a message for a ticket never opened is an error, not a no-op).
fn change(db: &Connection, sql: &str, id: &str) -> Result<(), BoxError> {
    match db.prepare_cached(sql)?.execute([id])? {
        1 => Ok(()),
        n => Err(format!("`{sql}` changed {n} rows for ticket {id}").into()),
    }
}

impl Handle<TicketOpened, Connection> for Summaries {
    fn handle(&mut self, db: &Connection, e: &Envelope<TicketOpened>) -> Result<(), BoxError> {
        change(db, OPENED, e.aggregate_id())
    }
}

impl Handle<MessageAdded, Connection> for Summaries {
    fn handle(&mut self, db: &Connection, e: &Envelope<MessageAdded>) -> Result<(), BoxError> {
        change(db, MESSAGE, e.aggregate_id())
    }
}

impl Handle<TicketClosed, Connection> for Summaries {
    fn handle(&mut self, db: &Connection, e: &Envelope<TicketClosed>) -> Result<(), BoxError> {
        change(db, CLOSED, e.aggregate_id())
    }
}

/// How the log is made.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    /// Events in the log.
    pub(crate) events: u64,
    /// Tickets, each opened first.
    pub(crate) tickets: u64,
    /// Events per read-model transaction.
    pub(crate) batch: usize,
}

impl Shape {
    /// The last 1% of the tickets are closed at the end of the log.
    fn closed(self) -> u64 {
        self.tickets / 100
    }

    fn messages(self) -> Result<u64, Failure> {
        self.events
            .checked_sub(self.tickets + self.closed())
            .ok_or_else(|| {
                format!(
                    "{} events cannot open {} tickets and close {}",
                    self.events,
                    self.tickets,
                    self.closed()
                )
                .into()
            })
    }
}

/// What `--live` runs against the store while the runner follows:
/// `append_concurrent`'s commands.
#[derive(Clone, Copy)]
pub(crate) struct Live {
    pub(crate) commands: u64,
    pub(crate) tasks: usize,
}

/// Writes the log, not timed: every ticket opened, then the messages
/// round-robin over the tickets (so one ticket's events are spread over the
/// whole log, as concurrent commands leave them), then the last 1% of the
/// tickets closed. Each append holds 1,000 events, one per ticket.
async fn write_log(store: &SqliteStore, shape: Shape) -> Result<(), Failure> {
    let messages = shape.messages()?;
    let tickets = shape.tickets.max(1);
    let streams = (0..tickets)
        .map(|t| StreamId::new(format!("ticket-{}", ticket_id(t))))
        .collect::<Result<Vec<_>, _>>()?;
    let per_append = PER_APPEND.min(tickets as usize);
    let encode = |event: TicketEvent| NewEvent::encode(Ticket::NAME, &event, Metadata::default());
    // Ticket i % tickets's version before message i: 1 (opened) + the
    // i / tickets messages it got before.
    let version = |i: u64| 1 + i / tickets;
    let mut writes = Vec::with_capacity(per_append);
    for t in 0..tickets {
        let opened = TicketEvent::from(TicketOpened {
            title: "Printer jams".into(),
            customer_email: Personal::known("customer@example.com".into()),
        });
        writes.push(StreamWrite::new(
            streams[t as usize].clone(),
            ExpectedVersion::NoStream,
            vec![encode(opened)?],
        ));
        if writes.len() == per_append || t + 1 == tickets {
            store.append_to_streams(std::mem::take(&mut writes)).await?;
        }
    }
    for i in 0..messages {
        let t = i % tickets;
        let message = TicketEvent::from(MessageAdded {
            body: body(i),
            by: "agent-42".into(),
        });
        writes.push(StreamWrite::new(
            streams[t as usize].clone(),
            ExpectedVersion::Exact(version(i)),
            vec![encode(message)?],
        ));
        if writes.len() == per_append || i + 1 == messages {
            store.append_to_streams(std::mem::take(&mut writes)).await?;
        }
    }
    for t in tickets - shape.closed()..tickets {
        let closed = TicketEvent::from(TicketClosed {
            resolution: "Rollers replaced".into(),
        });
        writes.push(StreamWrite::new(
            streams[t as usize].clone(),
            ExpectedVersion::StreamExists,
            vec![encode(closed)?],
        ));
        if writes.len() == per_append || t + 1 == tickets {
            store.append_to_streams(std::mem::take(&mut writes)).await?;
        }
    }
    let head = store.last_position().await?;
    if head != shape.events {
        return Err(format!("the log holds {head} events, not {}", shape.events).into());
    }
    Ok(())
}

/// A row of the read model: ticket id, status, message count.
type Row = (String, String, i64);

/// What the log says the read model must hold, computed from the events
/// table with SQL, sorted by ticket id; and the number of `MessageAdded`.
fn expected(db: &Path, sync: Sync) -> Result<(Vec<Row>, i64), Failure> {
    let conn = raw::connect(db, sync)?;
    let mut rows = conn
        .prepare(
            "SELECT substr(s.stream_id, length(s.aggregate_type) + 2), \
             CASE WHEN max(e.name = 'ticket-closed') THEN 'closed' ELSE 'open' END, \
             sum(e.name = 'message-added') \
             FROM events e JOIN streams s ON s.stream_pk = e.stream_pk \
             WHERE s.aggregate_type = 'ticket' GROUP BY s.stream_pk",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<Vec<Row>, _>>()?;
    rows.sort();
    let messages = conn.query_row(
        "SELECT count(*) FROM events WHERE name = 'message-added'",
        [],
        |r| r.get(0),
    )?;
    Ok((rows, messages))
}

/// Whether the read model's rows are what the log says: one row per
/// ticket, each with its status and message count, the counts summing to
/// the log's `MessageAdded` events.
fn check(db: &Path, sync: Sync, tickets: u64, mut rows: Vec<Row>) -> Result<bool, Failure> {
    rows.sort();
    let (want, messages) = expected(db, sync)?;
    let counted: i64 = rows.iter().map(|r| r.2).sum();
    let ok = rows == want && rows.len() as u64 == tickets && counted == messages;
    if !ok {
        let first_difference = rows.iter().zip(&want).find(|(a, b)| a != b);
        eprintln!(
            "check failed: {} rows (log: {} tickets, {tickets} written), {counted} messages \
             (log: {messages}); first difference (model, log): {first_difference:?}",
            rows.len(),
            want.len(),
        );
    }
    Ok(ok)
}

/// `projection_catchup`: the log, then the runner from position 0 until it
/// has caught up to the head (timed from its start); with `live`, the
/// commands run while it follows.
pub(crate) async fn projection_catchup(
    db: &Path,
    store: &SqliteStore,
    sync: Sync,
    shape: Shape,
    live: Option<Live>,
) -> Result<Report, Failure> {
    write_log(store, shape).await?;
    let models = ReadModels::open(store)?;
    let started = Instant::now();
    let runner = models.start_with(Summaries, RunOptions::new().batch(shape.batch))?;
    runner.caught_up().await?;
    let seconds = started.elapsed().as_secs_f64();
    let mut params = json!({
        "sync": sync_name(sync), "events": shape.events, "tickets": shape.tickets,
        "batch": shape.batch, "live": live.is_some(),
    });
    let mut extra = json!({});
    let runner = Arc::new(runner);
    if let Some(live) = live {
        let followed = follow(store, &runner, live).await?;
        if let (Some(params), Some(more)) = (params.as_object_mut(), followed.0.as_object()) {
            params.extend(more.clone());
        }
        extra = followed.1;
        runner.caught_up().await?;
    }
    let rows: Vec<Row> =
        models.rows::<Summaries, _>("SELECT id, status, messages FROM tickets", [])?;
    let tickets = shape.tickets + if live.is_some() { LIVE_TICKETS } else { 0 };
    let ok = check(db, sync, tickets, rows)?;
    drop(runner);
    Ok(Report {
        name: "projection_catchup",
        params,
        events: shape.events,
        seconds,
        ok,
        extra,
    })
}

/// `--live`: `append_concurrent`'s load on the same store: 1,000 new
/// tickets opened (not counted), then `live.commands` commands over
/// `live.tasks` tasks, each adding a message to one of them round-robin,
/// each task on its own tickets. Each command's lag is the time from its
/// `execute` returning until the runner has taken its position
/// (`wait_for`, awaited on a task of its own so the commands do not wait);
/// a sampler also records how many events the runner is behind the head
/// every millisecond. Returns the parameters and the figures.
async fn follow(
    store: &SqliteStore,
    runner: &Arc<Runner<Summaries>>,
    live: Live,
) -> Result<(serde_json::Value, serde_json::Value), Failure> {
    let repository = Repository::<Ticket, _>::new(store.clone());
    let tickets = LIVE_TICKETS;
    for t in 0..tickets {
        repository
            .execute(&live_id(t), |ticket| {
                ticket.open("Printer jams", "customer@example.com")
            })
            .await?;
    }
    let tasks = live.tasks.max(1) as u64;
    let commands = live.commands;
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (runner, store, sampling) = (runner.clone(), store.clone(), sampling.clone());
        tokio::spawn(async move {
            let mut behind = Vec::new();
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let head = store.last_position().await?;
                behind.push(head.saturating_sub(runner.progress().position));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Ok::<_, Failure>(behind)
        })
    };
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let (repository, runner) = (repository.clone(), runner.clone());
            tokio::spawn(async move {
                let mut waits = Vec::new();
                for i in (task..commands).step_by(tasks as usize) {
                    let t = i / tasks % (tickets / tasks).max(1) * tasks + task;
                    let text = body(i);
                    let done = repository
                        .execute(&ticket_id(t), |ticket| {
                            ticket.add_message(&text, "agent-42")
                        })
                        .await?;
                    let appended = Instant::now();
                    let position = done.position.ok_or("a command appended nothing")?;
                    let taken = runner.wait_for(position);
                    waits.push(tokio::spawn(async move {
                        taken.await.map(|()| appended.elapsed())
                    }));
                }
                Ok::<_, Failure>(waits)
            })
        })
        .collect();
    let mut waits = Vec::new();
    for handle in handles {
        waits.extend(handle.await??);
    }
    let append_seconds = started.elapsed().as_secs_f64();
    let mut lags = Vec::with_capacity(waits.len());
    for wait in waits {
        lags.push(wait.await??);
    }
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut behind = sampler.await??;
    lags.sort();
    behind.sort_unstable();
    let ms = |d: Duration| round(d.as_secs_f64() * 1000.0, 3);
    let lag = |q| lags.get(quantile(lags.len(), q)).copied().map(ms);
    let events_behind = |q| behind.get(quantile(behind.len(), q)).copied();
    Ok((
        json!({"commands": commands, "tasks": tasks, "live_tickets": tickets}),
        json!({
            "append_seconds": round(append_seconds, 4),
            "append_events_per_sec": round(commands as f64 / append_seconds.max(1e-9), 1),
            "lag_p50_ms": lag(500),
            "lag_p99_ms": lag(990),
            "lag_max_ms": lags.last().copied().map(ms),
            "behind_p50_events": events_behind(500),
            "behind_p99_events": events_behind(990),
            "behind_max_events": behind.last(),
            "behind_samples": behind.len(),
        }),
    ))
}

/// The index of the quantile `per_mille` / 1,000 in a sorted list of `n`.
fn quantile(n: usize, per_mille: usize) -> usize {
    (n * per_mille).div_ceil(1000).clamp(1, n.max(1)) - 1
}

/// The raw twin's read-model file, beside the events.
pub(crate) fn raw_model_path(db: &Path) -> PathBuf {
    db.with_extension("raw-read-model.db")
}

/// `raw_projection_catchup`: the same log, then the same table built by
/// hand: one connection reads the events file in position order, the names
/// filtered in SQL as the runner's query does, `shape.batch` events a page;
/// each page's payloads are decoded with `serde_json` into the Ticket's
/// event structs and its rows changed in one transaction of a separate
/// file (WAL, `synchronous = NORMAL`, as the runner's files), with the
/// checkpoint row updated in the same transaction.
pub(crate) async fn raw_projection_catchup(
    db: &Path,
    store: &SqliteStore,
    sync: Sync,
    shape: Shape,
) -> Result<Report, Failure> {
    write_log(store, shape).await?;
    let path = raw_model_path(db);
    let started = Instant::now();
    let taken = build_by_hand(db, &path, sync, shape.batch)?;
    let seconds = started.elapsed().as_secs_f64();
    let rows: Vec<Row> = raw::connect(&path, Sync::Normal)?
        .prepare("SELECT id, status, messages FROM tickets")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let ok = taken == shape.events && check(db, sync, shape.tickets, rows)?;
    Ok(Report {
        name: "raw_projection_catchup",
        params: json!({
            "sync": sync_name(sync), "events": shape.events, "tickets": shape.tickets,
            "batch": shape.batch,
        }),
        events: shape.events,
        seconds,
        ok,
        extra: json!({}),
    })
}

/// Builds the read model in `path` from the events of `db`; returns how
/// many events it took.
fn build_by_hand(db: &Path, path: &Path, sync: Sync, batch: usize) -> Result<u64, Failure> {
    let events = raw::connect(db, sync)?;
    events.pragma_update(None, "query_only", true)?;
    let mut model = raw::connect(path, Sync::Normal)?;
    {
        let tx = model.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(TABLE)?;
        tx.execute_batch(
            "CREATE TABLE checkpoint (position INTEGER NOT NULL) STRICT; \
             INSERT INTO checkpoint (position) VALUES (0);",
        )?;
        tx.commit()?;
    }
    let mut page = events.prepare(&format!(
        "SELECT e.position, s.stream_id, s.aggregate_type, e.name, e.payload FROM events e \
         JOIN streams s ON s.stream_pk = e.stream_pk \
         WHERE e.position > ?1 AND e.name IN ('ticket-opened', 'message-added', 'ticket-closed') \
         ORDER BY e.position LIMIT {batch}"
    ))?;
    let mut checkpoint = 0i64;
    let mut taken = 0u64;
    loop {
        let tx = model.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut rows = page.query([checkpoint])?;
        let mut last = None;
        while let Some(row) = rows.next()? {
            let stream = row.get_ref(1)?.as_str()?;
            let aggregate = row.get_ref(2)?.as_str()?;
            let id = stream
                .strip_prefix(aggregate)
                .and_then(|rest| rest.strip_prefix('-'))
                .ok_or_else(|| format!("stream {stream} is not of a {aggregate}"))?;
            let payload = row.get_ref(4)?.as_str()?;
            match row.get_ref(3)?.as_str()? {
                "ticket-opened" => {
                    let _: TicketOpened = serde_json::from_str(payload)?;
                    change(&tx, OPENED, id)?;
                }
                "message-added" => {
                    let _: MessageAdded = serde_json::from_str(payload)?;
                    change(&tx, MESSAGE, id)?;
                }
                "ticket-closed" => {
                    let _: TicketClosed = serde_json::from_str(payload)?;
                    change(&tx, CLOSED, id)?;
                }
                other => return Err(format!("unexpected event {other}").into()),
            }
            last = Some(row.get::<_, i64>(0)?);
            taken += 1;
        }
        let Some(last) = last else { break };
        tx.prepare_cached("UPDATE checkpoint SET position = ?1")?
            .execute([last])?;
        tx.commit()?;
        checkpoint = last;
    }
    Ok(taken)
}
