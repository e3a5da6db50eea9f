//! The store's tables: made in a fresh schema, upgraded in an old one, left
//! alone when a newer es-postgres made them.

use postgres::Client;

use crate::conn::quote_ident;
use crate::error::OpenError;

/// The migrations, in order: migration `i` takes the schema from version
/// `i` to `i + 1`. Stored formats outlive code: a released migration is
/// never edited; a change is a new one at the end.
const MIGRATIONS: &[&str] = &[
    include_str!("sql/0001_init.sql"),
    include_str!("sql/0002_read_models.sql"),
];

/// The version of the tables this build makes.
pub(crate) const SCHEMA_VERSION: i32 = 2;

const _: () = assert!(MIGRATIONS.len() == SCHEMA_VERSION as usize);

/// Makes the schema and its tables, or upgrades them, in one transaction.
/// Concurrent openers of one schema wait for each other on an advisory
/// lock keyed by its name, so exactly one of them migrates.
pub(crate) fn prepare(client: &mut Client, schema: &str) -> Result<(), OpenError> {
    let failed = |source| OpenError::Schema {
        schema: schema.to_owned(),
        source,
    };
    let mut tx = client.transaction().map_err(failed)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('es-postgres schema ' || $1::text))",
        &[&schema],
    )
    .map_err(failed)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.es_schema (
             one boolean PRIMARY KEY DEFAULT true CHECK (one),
             version integer NOT NULL
         );",
        schema = quote_ident(schema)
    ))
    .map_err(failed)?;
    let found: i32 = tx
        .query_opt("SELECT version FROM es_schema", &[])
        .map_err(failed)?
        .map_or(0, |row| row.get(0));
    if found > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema {
            schema: schema.to_owned(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    // `found` is 0..=SCHEMA_VERSION here, so the slice is in range.
    for sql in &MIGRATIONS[usize::try_from(found).unwrap_or(0)..] {
        tx.batch_execute(sql).map_err(failed)?;
    }
    if found < SCHEMA_VERSION {
        tx.execute(
            "INSERT INTO es_schema (one, version) VALUES (true, $1)
             ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version",
            &[&SCHEMA_VERSION],
        )
        .map_err(failed)?;
    }
    tx.commit().map_err(failed)
}
