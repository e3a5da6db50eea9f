//! Connections: how one is made (the connector, TLS or not, the schema on
//! the search path) and the statement cache each thread keeps with its own.

use std::collections::HashMap;
use std::sync::Arc;

use es_core::{Error, Result};
use postgres::types::ToSql;
use postgres::{Client, Row, Statement};

use crate::error::store_error;

/// Makes a new client from the store's configuration: TLS or clear text.
pub(crate) type Connect =
    Arc<dyn Fn(&postgres::Config) -> std::result::Result<Client, postgres::Error> + Send + Sync>;

/// What every connection of a store is made from.
#[derive(Clone)]
pub(crate) struct Connector {
    pub(crate) config: postgres::Config,
    pub(crate) connect: Connect,
    /// The schema the store's tables are in, quoted for SQL.
    pub(crate) schema: String,
}

impl Connector {
    /// A new client, with the store's schema first on its search path.
    pub(crate) fn client(&self) -> std::result::Result<Client, postgres::Error> {
        let mut client = (self.connect)(&self.config)?;
        client.batch_execute(&format!(
            "SET search_path TO {}, public; SET application_name = 'es-postgres'",
            quote_ident(&self.schema)
        ))?;
        Ok(client)
    }
}

/// `name` as a quoted SQL identifier. The store's schema names are checked
/// to be plain identifiers; quoting keeps upper case as given.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One thread's connection, made on first use and made again after it is
/// lost, with the statements prepared on it.
pub(crate) struct Conn {
    connector: Connector,
    client: Option<Client>,
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    pub(crate) fn new(connector: Connector) -> Self {
        Conn {
            connector,
            client: None,
            statements: HashMap::new(),
        }
    }

    /// The client, connecting when there is none or the last one was lost.
    pub(crate) fn client(&mut self) -> Result<&mut Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.statements.clear();
            self.client = None;
            self.client = Some(self.connector.client().map_err(store_error)?);
        }
        // Just made when it was missing.
        self.client.as_mut().ok_or(Error::Closed)
    }

    /// `sql`, prepared once per connection.
    pub(crate) fn statement(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(statement) = self.statements.get(sql)
            && self.client.as_ref().is_some_and(|c| !c.is_closed())
        {
            return Ok(statement.clone());
        }
        let statement = self.client()?.prepare(sql).map_err(store_error)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Runs the cached statement `sql`.
    pub(crate) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        self.client()?
            .query(&statement, params)
            .map_err(store_error)
    }
}
