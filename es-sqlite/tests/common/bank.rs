//! A small domain for the read-model tests: deposits and withdrawals of
//! accounts, a `noted` event no read model lists, and a read model of
//! balances that refuses to take an event twice.

#![allow(unreachable_pub, dead_code)]
use es_core::prelude::*;
use es_core::{BoxError, NewEvent};
use es_sqlite::ReadModel;
use es_sqlite::rusqlite::{self, Connection};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "deposited")]
pub struct Deposited {
    pub amount: i64,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "withdrawn")]
pub struct Withdrawn {
    pub amount: i64,
}

/// An amount the balance model refuses while [`Balances::refuse`] is set.
pub const REFUSED: i64 = 13;

/// Balances per account, and every position taken: the primary key on
/// `taken.position` makes a second take of an event fail loudly.
#[derive(Projection, Debug, Default)]
#[projection(name = "balances", events(Deposited, Withdrawn), context = Connection)]
pub struct Balances {
    /// Refuse deposits of [`REFUSED`].
    pub refuse: bool,
}

pub const BALANCES_TABLES: &str = "
    CREATE TABLE balances (account TEXT PRIMARY KEY, balance INTEGER NOT NULL, events INTEGER NOT NULL);
    CREATE TABLE taken (position INTEGER PRIMARY KEY, stream TEXT NOT NULL, version INTEGER NOT NULL);
";

impl ReadModel for Balances {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        db.execute_batch(BALANCES_TABLES)
    }
}

/// Adds `delta` to the account of `e`, and records that `e` was taken.
pub fn credit<E>(db: &Connection, e: &Envelope<E>, delta: i64) -> Result<(), BoxError> {
    db.prepare_cached(
        "INSERT INTO balances (account, balance, events) VALUES (?1, ?2, 1) \
         ON CONFLICT (account) DO UPDATE SET balance = balance + ?2, events = events + 1",
    )?
    .execute((e.stream_id.as_str(), delta))?;
    db.prepare_cached("INSERT INTO taken (position, stream, version) VALUES (?1, ?2, ?3)")?
        .execute((
            i64::try_from(e.position)?,
            e.stream_id.as_str(),
            i64::try_from(e.version)?,
        ))?;
    Ok(())
}

impl Handle<Deposited, Connection> for Balances {
    fn handle(&mut self, db: &Connection, e: &Envelope<Deposited>) -> Result<(), BoxError> {
        if self.refuse && e.event.amount == REFUSED {
            return Err(format!("deposits of {REFUSED} are refused").into());
        }
        credit(db, e, e.event.amount)
    }
}

impl Handle<Withdrawn, Connection> for Balances {
    fn handle(&mut self, db: &Connection, e: &Envelope<Withdrawn>) -> Result<(), BoxError> {
        credit(db, e, -e.event.amount)
    }
}

pub fn deposited(amount: i64) -> NewEvent {
    NewEvent::new(
        "account",
        "deposited",
        1,
        format!(r#"{{"amount":{amount}}}"#),
    )
}

pub fn withdrawn(amount: i64) -> NewEvent {
    NewEvent::new(
        "account",
        "withdrawn",
        1,
        format!(r#"{{"amount":{amount}}}"#),
    )
}

/// An event no read model lists, with a payload nothing could decode.
pub fn noted() -> NewEvent {
    NewEvent::new("account", "noted", 1, r#"{"not":"an amount"}"#)
}

/// The balances table, sorted: (account, balance, events).
pub fn balances(db: &Connection) -> rusqlite::Result<Vec<(String, i64, i64)>> {
    db.prepare("SELECT account, balance, events FROM balances ORDER BY account")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect()
}

/// The positions taken, in order.
pub fn taken(db: &Connection) -> rusqlite::Result<Vec<i64>> {
    db.prepare("SELECT position FROM taken ORDER BY position")?
        .query_map([], |r| r.get(0))?
        .collect()
}
