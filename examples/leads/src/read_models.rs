//! The lead's read models, the seeds' two projections of the same events:
//! [`search`] (every name and phone number a lead ever had: the seeds'
//! `LeadSearchModelProjection`) and [`analysis`] (follow-ups and status per
//! lead: the seeds' `AnalysisModelProjection`).
//!
//! Each comes in two forms with one logic:
//!
//! - **per stream**: a [`Projection`](es_core::Projection) without context,
//!   folded on demand from one lead's events with
//!   [`project`](es_core::projection::project), as the seed's classes are.
//!   Its [`Apply`](es_core::Apply) impls, one per event, are the model's
//!   rules, and the only place they are written.
//! - **SQLite read model**: a [`ReadModel`](es_sqlite::ReadModel) fed with
//!   every lead's events by a runner, in its own file beside the events
//!   (`leads.db` → `leads.read-models/`), queried across leads. Its
//!   handler loads the lead's per-stream form from the tables, applies the
//!   event to it with those same impls, and writes back what changed: the
//!   tables hold the per-stream form of every lead.
//!
//! Both forms list every event of a lead, also those that change nothing in
//! them: the read model sees only the events it lists, and it keeps the
//! lead's version, which counts every event.
//!
//! # Versions
//!
//! The version kept is es's: a stream's versions count from 1, so lead 12's
//! seven events leave it at version 7. The seed counts from 0
//! (`Version = 0` in `Apply(LeadInitialized)`) and prints `Version: 6`
//! (seed 004's search model) and `version: 6` (seed 000's analysis model);
//! the seed-format printouts ([`SearchHit`](search::SearchHit)'s and
//! [`LeadAnalysis`](analysis::LeadAnalysis)'s `Display`) print the seed's
//! number, [`seed_version`](crate::seed::seed_version).

pub mod analysis;
pub mod search;

use es_core::BoxError;
use es_sqlite::rusqlite;

/// A version as SQLite stores it (a signed 64-bit integer).
fn to_sql(version: u64) -> Result<i64, BoxError> {
    Ok(i64::try_from(version)?)
}

/// Reads column `index` of `row` as a non-negative integer (a version, a
/// count).
fn u64_column(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let stored: i64 = row.get(index)?;
    u64::try_from(stored).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, stored))
}
