//! The search model (the seed's `LeadSearchModelProjection`): every first
//! name, last name and phone number a lead ever had, so that a lead is found
//! by an old value as well as by its current one. After lead 12's events it
//! holds `FirstNames: ['Casey']`, `LastNames: ['David', 'Davis']` and
//! `PhoneNumbers: ['555-2951', '555-8101']`.
//!
//! - [`LeadSearchModelProjection`] is the per-stream form, folded from one
//!   lead's events with [`project`]. Its rule: a `lead-initialized` or
//!   `contact-details-updated` adds each of its known values that the lead
//!   did not have yet (exactly the same text), in the order first seen, and
//!   becomes the lead's [`Contact`]; the other events change nothing.
//! - [`LeadSearchModel`] is the SQLite read model: the same state for every
//!   lead in two tables, queried with [`search`] (by any value a lead ever
//!   had) and [`lookup`] (by lead).
//!
//! A value that was forgotten ([`Personal::Forgotten`]) is not searchable:
//! it adds nothing, and the contact shows it as forgotten. When the store
//! forgets a lead (its subject is the lead's stream, `lead-12`), the read
//! model's [`forget`](ReadModel::forget) hook deletes the lead's values and
//! blanks its details, keeping its row and version: what the model holds
//! of a lead whose values were forgotten before it took them, so the two
//! forms still agree.
//!
//! # Tables
//!
//! ```sql
//! -- one row per lead: its version and its details as last recorded
//! lead_search (lead_id TEXT PRIMARY KEY, version INTEGER NOT NULL,
//!              first_name TEXT, last_name TEXT, phone_number TEXT)
//! -- one row per value a lead ever had; `seen` is its place in the
//! -- per-stream form's list of that field (0, 1, ...)
//! lead_names  (lead_id TEXT, field TEXT, seen INTEGER, value TEXT,
//!              PRIMARY KEY (lead_id, field, value), UNIQUE (lead_id, field, seen))
//! ```
//!
//! `field` is [`Field::as_str`]: `first-name`, `last-name`, `phone-number`.

use std::fmt;

use es_core::prelude::*;
use es_core::{BoxError, Projected};
use es_sqlite::rusqlite::{self, Connection, OptionalExtension};
use es_sqlite::{Forgetting, ReadModel, ReadModelError, ReadModels};

use super::{to_sql, u64_column};
use crate::Lead;
use crate::domain::{
    ContactDetailsUpdated, Contacted, FollowupSet, LeadClosed, LeadInitialized, OrderSubmitted,
    PaymentConfirmed, PaymentFailed,
};
use crate::seed::seed_version;

/// A searchable field of a lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// The first name.
    FirstName,
    /// The last name.
    LastName,
    /// The phone number.
    PhoneNumber,
}

impl Field {
    /// Every field, in the order the events carry them.
    pub const ALL: [Field; 3] = [Field::FirstName, Field::LastName, Field::PhoneNumber];

    /// The field's name as the `lead_names.field` column stores it: the
    /// events' key (`first-name`, `last-name`, `phone-number`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Field::FirstName => "first-name",
            Field::LastName => "last-name",
            Field::PhoneNumber => "phone-number",
        }
    }

    /// The field named `name` ([`as_str`](Field::as_str)).
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lead's details as last recorded; `None` for a value that was
/// forgotten (and before the lead is initialized).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    /// The first name.
    pub first_name: Option<String>,
    /// The last name.
    pub last_name: Option<String>,
    /// The phone number.
    pub phone_number: Option<String>,
}

impl Contact {
    fn of(
        first_name: &Personal<String>,
        last_name: &Personal<String>,
        phone_number: &Personal<String>,
    ) -> Contact {
        Contact {
            first_name: first_name.as_known().cloned(),
            last_name: last_name.as_known().cloned(),
            phone_number: phone_number.as_known().cloned(),
        }
    }
}

impl fmt::Display for Contact {
    /// `Casey Davis, 555-8101`; a forgotten value as `(forgotten)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |value: &Option<String>| value.as_deref().unwrap_or("(forgotten)").to_owned();
        write!(
            f,
            "{} {}, {}",
            shown(&self.first_name),
            shown(&self.last_name),
            shown(&self.phone_number)
        )
    }
}

/// The search model of one lead, per stream (the seed's
/// `LeadSearchModelProjection`): folded from the lead's events with
/// [`project`]; the version is the stream's, counted by the framework.
///
/// Its `Apply` impls are the search model's rules; [`LeadSearchModel`]
/// applies them too.
#[derive(Projection, Default, Debug, Clone, PartialEq, Eq)]
#[projection(
    name = "lead-search-per-stream",
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
pub struct LeadSearchModelProjection {
    /// Every first name the lead had, distinct, in the order first seen.
    pub first_names: Vec<String>,
    /// Every last name the lead had, distinct, in the order first seen.
    pub last_names: Vec<String>,
    /// Every phone number the lead had, distinct, in the order first seen.
    pub phone_numbers: Vec<String>,
    /// The details as last recorded.
    pub current: Contact,
}

impl LeadSearchModelProjection {
    /// The values `field` had, in the order first seen.
    pub fn values(&self, field: Field) -> &[String] {
        match field {
            Field::FirstName => &self.first_names,
            Field::LastName => &self.last_names,
            Field::PhoneNumber => &self.phone_numbers,
        }
    }

    fn values_mut(&mut self, field: Field) -> &mut Vec<String> {
        match field {
            Field::FirstName => &mut self.first_names,
            Field::LastName => &mut self.last_names,
            Field::PhoneNumber => &mut self.phone_numbers,
        }
    }

    /// The rule of the model: each known value the lead did not have yet is
    /// added after the others; the details become the current ones.
    fn record(
        &mut self,
        first_name: &Personal<String>,
        last_name: &Personal<String>,
        phone_number: &Personal<String>,
    ) {
        for (field, value) in Field::ALL
            .into_iter()
            .zip([first_name, last_name, phone_number])
        {
            if let Personal::Known(value) = value {
                let values = self.values_mut(field);
                if !values.contains(value) {
                    values.push(value.clone());
                }
            }
        }
        self.current = Contact::of(first_name, last_name, phone_number);
    }
}

impl Apply<LeadInitialized> for LeadSearchModelProjection {
    fn apply(&mut self, e: &LeadInitialized) {
        self.record(&e.first_name, &e.last_name, &e.phone_number);
    }
}

impl Apply<ContactDetailsUpdated> for LeadSearchModelProjection {
    fn apply(&mut self, e: &ContactDetailsUpdated) {
        self.record(&e.first_name, &e.last_name, &e.phone_number);
    }
}

// The seed's other `Apply`s only count the version (`Version += 1`), which
// the framework does here: they change nothing.

impl Apply<Contacted> for LeadSearchModelProjection {
    fn apply(&mut self, _: &Contacted) {}
}

impl Apply<FollowupSet> for LeadSearchModelProjection {
    fn apply(&mut self, _: &FollowupSet) {}
}

impl Apply<OrderSubmitted> for LeadSearchModelProjection {
    fn apply(&mut self, _: &OrderSubmitted) {}
}

impl Apply<PaymentConfirmed> for LeadSearchModelProjection {
    fn apply(&mut self, _: &PaymentConfirmed) {}
}

impl Apply<PaymentFailed> for LeadSearchModelProjection {
    fn apply(&mut self, _: &PaymentFailed) {}
}

impl Apply<LeadClosed> for LeadSearchModelProjection {
    fn apply(&mut self, _: &LeadClosed) {}
}

/// The search model as a SQLite read model: the
/// [`LeadSearchModelProjection`] of every lead, with its version, in the
/// tables of the [module docs](self). Start it with
/// [`ReadModels::start`], query it with [`search`] and [`lookup`].
///
/// Each event is handled by loading the lead's state from the tables,
/// applying the event with [`LeadSearchModelProjection`]'s own `Apply`
/// impl, and writing what changed; so the two forms cannot drift apart.
/// `aggregates(Lead)`: events of other aggregate types that share an
/// event's name are not taken.
#[derive(Projection, Default, Debug)]
#[projection(
    name = "lead-search",
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
pub struct LeadSearchModel;

const TABLES: &str = "
    CREATE TABLE lead_search (
        lead_id      TEXT PRIMARY KEY,
        version      INTEGER NOT NULL,
        first_name   TEXT,
        last_name    TEXT,
        phone_number TEXT
    );
    CREATE TABLE lead_names (
        lead_id TEXT NOT NULL,
        field   TEXT NOT NULL,
        seen    INTEGER NOT NULL,
        value   TEXT NOT NULL,
        PRIMARY KEY (lead_id, field, value),
        UNIQUE (lead_id, field, seen)
    );
    CREATE INDEX lead_names_by_value ON lead_names (value COLLATE NOCASE);
";

impl ReadModel for LeadSearchModel {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        db.execute_batch(TABLES)
    }

    /// Deletes every value lead `subject` (its stream, `lead-12`) ever had
    /// and blanks its details; its row stays, with its version. Every
    /// personal field of a lead's events has the lead's stream as its
    /// subject, so no other subject has data here.
    fn forget(&mut self, db: &Connection, subject: &str) -> rusqlite::Result<Forgetting> {
        let Some(lead_id) = subject
            .strip_prefix(<Lead as Aggregate>::NAME)
            .and_then(|rest| rest.strip_prefix('-'))
        else {
            return Ok(Forgetting::Done);
        };
        db.prepare_cached("DELETE FROM lead_names WHERE lead_id = ?1")?
            .execute([lead_id])?;
        db.prepare_cached(
            "UPDATE lead_search SET first_name = NULL, last_name = NULL, phone_number = NULL \
             WHERE lead_id = ?1",
        )?
        .execute([lead_id])?;
        Ok(Forgetting::Done)
    }
}

impl<E> Handle<E, Connection> for LeadSearchModel
where
    LeadSearchModelProjection: Apply<E>,
{
    fn handle(&mut self, db: &Connection, e: &Envelope<E>) -> Result<(), BoxError> {
        let lead_id = e.aggregate_id();
        let before = read(db, lead_id)?.map(|(lead, _)| lead).unwrap_or_default();
        let mut after = before.clone();
        after.apply(&e.event);
        write(db, lead_id, &before, &after, e.version)
    }
}

/// The state of lead `lead_id` and its version, as the tables hold it.
fn read(
    db: &Connection,
    lead_id: &str,
) -> rusqlite::Result<Option<(LeadSearchModelProjection, u64)>> {
    let row = db
        .prepare_cached(
            "SELECT version, first_name, last_name, phone_number FROM lead_search WHERE lead_id = ?1",
        )?
        .query_row([lead_id], |r| {
            Ok((
                u64_column(r, 0)?,
                Contact {
                    first_name: r.get(1)?,
                    last_name: r.get(2)?,
                    phone_number: r.get(3)?,
                },
            ))
        })
        .optional()?;
    let Some((version, current)) = row else {
        return Ok(None);
    };
    let mut lead = LeadSearchModelProjection {
        current,
        ..LeadSearchModelProjection::default()
    };
    let mut values = db.prepare_cached(
        "SELECT field, value FROM lead_names WHERE lead_id = ?1 ORDER BY field, seen",
    )?;
    let rows = values.query_map([lead_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (field, value) = row?;
        let field = Field::from_name(&field).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Text,
                format!("unknown field {field:?}").into(),
            )
        })?;
        lead.values_mut(field).push(value);
    }
    Ok(Some((lead, version)))
}

/// Writes the change from `before` to `after` of lead `lead_id`, now at
/// `version`: the values added, the current details, the version.
fn write(
    db: &Connection,
    lead_id: &str,
    before: &LeadSearchModelProjection,
    after: &LeadSearchModelProjection,
    version: u64,
) -> Result<(), BoxError> {
    for field in Field::ALL {
        let (old, new) = (before.values(field), after.values(field));
        // The rule only ever adds values after the others.
        let Some(added) = new.strip_prefix(old) else {
            return Err(format!("lead {lead_id}: the {field}s changed order").into());
        };
        for (seen, value) in (old.len()..).zip(added) {
            db.prepare_cached(
                "INSERT INTO lead_names (lead_id, field, seen, value) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute((lead_id, field.as_str(), i64::try_from(seen)?, value))?;
        }
    }
    let current = &after.current;
    db.prepare_cached(
        "INSERT INTO lead_search (lead_id, version, first_name, last_name, phone_number) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (lead_id) DO UPDATE SET version = excluded.version, \
         first_name = excluded.first_name, last_name = excluded.last_name, \
         phone_number = excluded.phone_number",
    )?
    .execute((
        lead_id,
        to_sql(version)?,
        &current.first_name,
        &current.last_name,
        &current.phone_number,
    ))?;
    Ok(())
}

/// A lead as the search model has it: every value it ever had, its
/// current details, its version (es's, from 1).
///
/// Displayed as seed 004 prints its search model (`LeadId: 12`,
/// `FirstNames: ['Casey']`, ..., `Version: 6`), where the version is the
/// seed's, counted from 0: one less than [`version`](SearchHit::version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// The lead's id (`12` for the stream `lead-12`).
    pub lead_id: String,
    /// Every first name it had, in the order first seen.
    pub first_names: Vec<String>,
    /// Every last name it had, in the order first seen.
    pub last_names: Vec<String>,
    /// Every phone number it had, in the order first seen.
    pub phone_numbers: Vec<String>,
    /// Its details as last recorded.
    pub current: Contact,
    /// The lead's version: its stream's, counted from 1.
    pub version: u64,
}

impl SearchHit {
    /// The hit of lead `lead_id` from its per-stream form.
    pub fn from_projected(
        lead_id: impl Into<String>,
        projected: Projected<LeadSearchModelProjection>,
    ) -> SearchHit {
        let Projected { state, version } = projected;
        SearchHit::new(lead_id.into(), state, version)
    }

    fn new(lead_id: String, lead: LeadSearchModelProjection, version: u64) -> SearchHit {
        SearchHit {
            lead_id,
            first_names: lead.first_names,
            last_names: lead.last_names,
            phone_numbers: lead.phone_numbers,
            current: lead.current,
            version,
        }
    }
}

impl fmt::Display for SearchHit {
    /// The seed's printout, one line each: `LeadId`, `FirstNames`,
    /// `LastNames`, `PhoneNumbers`, and `Version` counted from 0 as the
    /// seed counts it ([`seed_version`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "LeadId: {}", self.lead_id)?;
        writeln!(f, "FirstNames: {}", seed_list(&self.first_names))?;
        writeln!(f, "LastNames: {}", seed_list(&self.last_names))?;
        writeln!(f, "PhoneNumbers: {}", seed_list(&self.phone_numbers))?;
        writeln!(f, "Version: {}", seed_version(self.version))
    }
}

/// A list as the seed prints it: `['David', 'Davis']`.
pub fn seed_list(values: &[String]) -> String {
    let quoted: Vec<String> = values
        .iter()
        .map(|v| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// The search model of lead `lead_id`, folded from its events (the
/// per-stream form); `None` when the lead has no events.
///
/// # Errors
///
/// [`es_core::Error::InvalidStreamId`] for an id that makes no stream id;
/// what [`project`](es_core::projection::project) fails with.
pub async fn project<S: EventStore>(
    store: &S,
    lead_id: &str,
) -> es_core::Result<Option<SearchHit>> {
    let stream = StreamId::for_aggregate(<crate::Lead as Aggregate>::NAME, lead_id)?;
    let projected =
        es_core::projection::project::<LeadSearchModelProjection, _>(store, &stream).await?;
    Ok((projected.version > 0).then(|| SearchHit::from_projected(lead_id, projected)))
}

/// Every lead that has or ever had `term` (trimmed) as its first name, last
/// name or phone number, by lead id; ASCII letters match in either case.
/// Read from the serving version of [`LeadSearchModel`], in one read
/// transaction.
///
/// # Errors
///
/// [`ReadModelError::NotServing`] before the model has caught up once;
/// [`ReadModelError::Sqlite`] when its file cannot be read.
pub fn search(models: &ReadModels, term: &str) -> Result<Vec<SearchHit>, ReadModelError> {
    let term = term.trim();
    // `query` reads in one transaction: one snapshot for the ids and each
    // lead's values.
    models.query::<LeadSearchModel, _>(|db| {
        let ids = db
            .prepare_cached(
                "SELECT DISTINCT lead_id FROM lead_names WHERE value = ?1 COLLATE NOCASE \
                 ORDER BY lead_id",
            )?
            .query_map([term], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut hits = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some((lead, version)) = read(db, &id)? {
                hits.push(SearchHit::new(id, lead, version));
            }
        }
        Ok(hits)
    })
}

/// Lead `lead_id` as the serving version of [`LeadSearchModel`] has it;
/// `None` when the model has no event of it.
///
/// # Errors
///
/// As [`search`].
pub fn lookup(models: &ReadModels, lead_id: &str) -> Result<Option<SearchHit>, ReadModelError> {
    models.query::<LeadSearchModel, _>(|db| {
        let found = read(db, lead_id)?;
        Ok(found.map(|(lead, version)| SearchHit::new(lead_id.to_owned(), lead, version)))
    })
}
