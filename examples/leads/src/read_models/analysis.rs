//! The analysis model (the seeds' `AnalysisModelProjection`): per lead, how
//! many follow-up calls were set and where the lead stands, the figures an
//! analysis of the sales funnel needs (how many leads convert or are
//! closed, after how many follow-ups). After lead 12's events: one
//! follow-up, converted.
//!
//! Seed 004 only describes the model (put what the analysis needs in a
//! projection and keep it in a database: CQRS); seed 000 shows it, in Java
//! for its own lead 1, and prints `leadId: 1`, `followups: 1`,
//! `status: converted`, `version: 6`, which [`LeadAnalysis`]'s `Display`
//! follows.
//!
//! - [`AnalysisModelProjection`] is the per-stream form, folded from one
//!   lead's events with [`project`]. Its rules: a `followup-set` adds a
//!   follow-up; `lead-initialized` and `payment-failed` make the lead
//!   [`Open`](LeadStatus::Open), `order-submitted`
//!   [`AwaitingPayment`](LeadStatus::AwaitingPayment), `payment-confirmed`
//!   [`Converted`](LeadStatus::Converted), `lead-closed`
//!   [`Closed`](LeadStatus::Closed); the other events change nothing.
//! - [`AnalysisModel`] is the SQLite read model: the same state for every
//!   lead in one table, queried with [`lookup`] (by lead) and [`by_status`]
//!   (the funnel).
//!
//! # Table
//!
//! ```sql
//! lead_analysis (lead_id TEXT PRIMARY KEY, followups INTEGER NOT NULL,
//!                status TEXT, version INTEGER NOT NULL)
//! ```
//!
//! `status` is [`LeadStatus::as_str`] (`open`, `awaiting-payment`,
//! `converted`, `closed`).

use std::fmt;

use es_core::prelude::*;
use es_core::{BoxError, Projected};
use es_sqlite::rusqlite::types::{
    FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef,
};
use es_sqlite::rusqlite::{self, Connection, OptionalExtension};
use es_sqlite::{Forgetting, ReadModel, ReadModelError, ReadModels};

use super::{to_sql, u64_column};
use crate::Lead;
use crate::domain::{
    ContactDetailsUpdated, Contacted, FollowupSet, LeadClosed, LeadInitialized, OrderSubmitted,
    PaymentConfirmed, PaymentFailed, Status,
};
use crate::seed::seed_version;

/// Where a lead stands, as the analysis model names it (stored in the
/// `lead_analysis.status` column).
///
/// These are the lead's own states ([`Status`]), so the model agrees with
/// the aggregate. Seed 000's analysis model instead keeps the last
/// milestone, `NEW_LEAD`, `FOLLOWUP_SET`, `PENDING_PAYMENT`, `CONVERTED`
/// (its state table adds `CLOSED` and `PAYMENT_FAILED`): a new lead and
/// one with a follow-up set are both [`Open`](LeadStatus::Open) here (the
/// follow-ups are counted instead), `PENDING_PAYMENT` is
/// [`AwaitingPayment`](LeadStatus::AwaitingPayment) (which a follow-up set
/// meanwhile does not hide), and a failed payment makes the lead open
/// again, as the aggregate has it. `converted` and `closed` are the seeds'
/// words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeadStatus {
    /// The sales team works on the lead.
    Open,
    /// An order waits for its payment.
    AwaitingPayment,
    /// The order was paid: a customer now.
    Converted,
    /// The lead was given up.
    Closed,
}

impl LeadStatus {
    /// Every status, in the order of a lead's life.
    pub const ALL: [LeadStatus; 4] = [
        LeadStatus::Open,
        LeadStatus::AwaitingPayment,
        LeadStatus::Converted,
        LeadStatus::Closed,
    ];

    /// The status's name: `open`, `awaiting-payment`, `converted`, `closed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LeadStatus::Open => "open",
            LeadStatus::AwaitingPayment => "awaiting-payment",
            LeadStatus::Converted => "converted",
            LeadStatus::Closed => "closed",
        }
    }

    /// The status named `name` ([`as_str`](LeadStatus::as_str)).
    pub fn from_name(name: &str) -> Option<LeadStatus> {
        LeadStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The analysis status of the aggregate's [`Status`]; `None` for a lead
    /// not initialized.
    pub fn of(status: &Status) -> Option<LeadStatus> {
        match status {
            Status::Uninitialized => None,
            Status::Open => Some(LeadStatus::Open),
            Status::AwaitingPayment { .. } => Some(LeadStatus::AwaitingPayment),
            Status::Converted => Some(LeadStatus::Converted),
            Status::Closed => Some(LeadStatus::Closed),
        }
    }
}

impl fmt::Display for LeadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ToSql for LeadStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for LeadStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let name = value.as_str()?;
        LeadStatus::from_name(name)
            .ok_or_else(|| FromSqlError::Other(format!("unknown lead status {name:?}").into()))
    }
}

/// The analysis model of one lead, per stream (the seed's
/// `AnalysisModelProjection`): folded from the lead's events with
/// [`project`]; the version is the stream's, counted by the framework.
///
/// Its `Apply` impls are the analysis model's rules; [`AnalysisModel`]
/// applies them too.
#[derive(Projection, Default, Debug, Clone, Copy, PartialEq, Eq)]
#[projection(
    name = "lead-analysis-per-stream",
    events(
        LeadInitialized,
        Contacted,
        FollowupSet,
        ContactDetailsUpdated,
        OrderSubmitted,
        PaymentConfirmed,
        PaymentFailed,
        LeadClosed
    ),
    aggregates(Lead)
)]
pub struct AnalysisModelProjection {
    /// How many follow-up calls were set.
    pub followups: u32,
    /// Where the lead stands (`None` before it is initialized).
    pub status: Option<LeadStatus>,
}

impl Apply<LeadInitialized> for AnalysisModelProjection {
    fn apply(&mut self, _: &LeadInitialized) {
        self.status = Some(LeadStatus::Open);
    }
}

impl Apply<FollowupSet> for AnalysisModelProjection {
    fn apply(&mut self, _: &FollowupSet) {
        self.followups += 1;
    }
}

impl Apply<OrderSubmitted> for AnalysisModelProjection {
    fn apply(&mut self, _: &OrderSubmitted) {
        self.status = Some(LeadStatus::AwaitingPayment);
    }
}

impl Apply<PaymentConfirmed> for AnalysisModelProjection {
    fn apply(&mut self, _: &PaymentConfirmed) {
        self.status = Some(LeadStatus::Converted);
    }
}

impl Apply<PaymentFailed> for AnalysisModelProjection {
    /// The order is void: the lead is open again.
    fn apply(&mut self, _: &PaymentFailed) {
        self.status = Some(LeadStatus::Open);
    }
}

impl Apply<LeadClosed> for AnalysisModelProjection {
    fn apply(&mut self, _: &LeadClosed) {
        self.status = Some(LeadStatus::Closed);
    }
}

// These change nothing the analysis counts; listed for the version.

impl Apply<Contacted> for AnalysisModelProjection {
    fn apply(&mut self, _: &Contacted) {}
}

impl Apply<ContactDetailsUpdated> for AnalysisModelProjection {
    fn apply(&mut self, _: &ContactDetailsUpdated) {}
}

/// The analysis model as a SQLite read model: the
/// [`AnalysisModelProjection`] of every lead, with its version, in the
/// table of the [module docs](self). Start it with [`ReadModels::start`],
/// query it with [`lookup`] and [`by_status`].
///
/// Each event is handled by loading the lead's row, applying the event
/// with [`AnalysisModelProjection`]'s own `Apply` impl, and writing the row
/// back; so the two forms cannot drift apart. `aggregates(Lead)`: events
/// of other aggregate types that share an event's name are not taken.
#[derive(Projection, Default, Debug)]
#[projection(
    name = "lead-analysis",
    events(
        LeadInitialized,
        Contacted,
        FollowupSet,
        ContactDetailsUpdated,
        OrderSubmitted,
        PaymentConfirmed,
        PaymentFailed,
        LeadClosed
    ),
    aggregates(Lead),
    context = Connection
)]
pub struct AnalysisModel;

const TABLES: &str = "
    CREATE TABLE lead_analysis (
        lead_id   TEXT PRIMARY KEY,
        followups INTEGER NOT NULL,
        status    TEXT,
        version   INTEGER NOT NULL
    );
    CREATE INDEX lead_analysis_by_status ON lead_analysis (status);
";

impl ReadModel for AnalysisModel {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        db.execute_batch(TABLES)
    }

    /// Nothing to delete: the model takes events with personal data (a
    /// lead's names and phone number) but keeps none of it, so forgetting
    /// a lead leaves it as it is (rather than rebuilt, the default).
    fn forget(&mut self, _: &Connection, _: &str) -> rusqlite::Result<Forgetting> {
        Ok(Forgetting::Done)
    }
}

impl<E> Handle<E, Connection> for AnalysisModel
where
    AnalysisModelProjection: Apply<E>,
{
    fn handle(&mut self, db: &Connection, e: &Envelope<E>) -> Result<(), BoxError> {
        let lead_id = e.aggregate_id();
        let mut lead = read(db, lead_id)?.map(|(lead, _)| lead).unwrap_or_default();
        lead.apply(&e.event);
        db.prepare_cached(
            "INSERT INTO lead_analysis (lead_id, followups, status, version) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (lead_id) DO UPDATE SET followups = excluded.followups, \
             status = excluded.status, version = excluded.version",
        )?
        .execute((lead_id, lead.followups, lead.status, to_sql(e.version)?))?;
        Ok(())
    }
}

/// The state of lead `lead_id` and its version, as the table holds it.
fn read(
    db: &Connection,
    lead_id: &str,
) -> rusqlite::Result<Option<(AnalysisModelProjection, u64)>> {
    db.prepare_cached("SELECT followups, status, version FROM lead_analysis WHERE lead_id = ?1")?
        .query_row([lead_id], |r| {
            Ok((
                AnalysisModelProjection {
                    followups: r.get(0)?,
                    status: r.get(1)?,
                },
                u64_column(r, 2)?,
            ))
        })
        .optional()
}

/// A lead as the analysis model has it.
///
/// Displayed as seed 000 prints its analysis model (`leadId: 12`,
/// `followups: 1`, `status: converted`, `version: 6`), where the version is
/// the seed's, counted from 0: one less than
/// [`version`](LeadAnalysis::version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadAnalysis {
    /// The lead's id (`12` for the stream `lead-12`).
    pub lead_id: String,
    /// How many follow-up calls were set.
    pub followups: u32,
    /// Where the lead stands (`None` before it is initialized).
    pub status: Option<LeadStatus>,
    /// The lead's version: its stream's, counted from 1.
    pub version: u64,
}

impl LeadAnalysis {
    /// The analysis of lead `lead_id` from its per-stream form.
    pub fn from_projected(
        lead_id: impl Into<String>,
        projected: &Projected<AnalysisModelProjection>,
    ) -> LeadAnalysis {
        LeadAnalysis::new(lead_id.into(), projected.state, projected.version)
    }

    fn new(lead_id: String, lead: AnalysisModelProjection, version: u64) -> LeadAnalysis {
        LeadAnalysis {
            lead_id,
            followups: lead.followups,
            status: lead.status,
            version,
        }
    }
}

impl fmt::Display for LeadAnalysis {
    /// One line each: `leadId`, `followups`, `status`, and `version`
    /// counted from 0 as the seed counts it ([`seed_version`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "leadId: {}", self.lead_id)?;
        writeln!(f, "followups: {}", self.followups)?;
        match self.status {
            Some(status) => writeln!(f, "status: {status}")?,
            None => writeln!(f, "status: -")?,
        }
        writeln!(f, "version: {}", seed_version(self.version))
    }
}

/// The analysis model of lead `lead_id`, folded from its events (the
/// per-stream form); `None` when the lead has no events.
///
/// # Errors
///
/// [`es_core::Error::InvalidStreamId`] for an id that makes no stream id;
/// what [`project`](es_core::projection::project) fails with.
pub async fn project<S: EventStore>(
    store: &S,
    lead_id: &str,
) -> es_core::Result<Option<LeadAnalysis>> {
    let stream = StreamId::for_aggregate(<crate::Lead as Aggregate>::NAME, lead_id)?;
    let projected =
        es_core::projection::project::<AnalysisModelProjection, _>(store, &stream).await?;
    Ok((projected.version > 0).then(|| LeadAnalysis::from_projected(lead_id, &projected)))
}

/// Lead `lead_id` as the serving version of [`AnalysisModel`] has it;
/// `None` when the model has no event of it.
///
/// # Errors
///
/// [`ReadModelError::NotServing`] before the model has caught up once;
/// [`ReadModelError::Sqlite`] when its file cannot be read.
pub fn lookup(models: &ReadModels, lead_id: &str) -> Result<Option<LeadAnalysis>, ReadModelError> {
    models.query::<AnalysisModel, _>(|db| {
        let found = read(db, lead_id)?;
        Ok(found.map(|(lead, version)| LeadAnalysis::new(lead_id.to_owned(), lead, version)))
    })
}

/// The leads in one status, and the follow-ups they took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusCount {
    /// The status.
    pub status: LeadStatus,
    /// How many leads are in it.
    pub leads: u64,
    /// The follow-ups set for those leads, together.
    pub followups: u64,
}

/// The funnel: for each status with leads in it, in [`LeadStatus::ALL`]'s
/// order, how many leads are there and how many follow-ups they took.
///
/// # Errors
///
/// As [`lookup`].
pub fn by_status(models: &ReadModels) -> Result<Vec<StatusCount>, ReadModelError> {
    let mut counts = models.query::<AnalysisModel, _>(|db| {
        db.prepare_cached(
            "SELECT status, count(*), sum(followups) FROM lead_analysis \
             WHERE status IS NOT NULL GROUP BY status",
        )?
        .query_map([], |r| {
            Ok(StatusCount {
                status: r.get(0)?,
                leads: u64_column(r, 1)?,
                followups: u64_column(r, 2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
    })?;
    counts.sort_by_key(|c| c.status);
    Ok(counts)
}
