//! [`PostgresOptions`]: how a [`PostgresStore`] connects and behaves.

use std::sync::Arc;
use std::time::Duration;

use es_core::Limits;
use es_core::privacy::{KeyEncryptionKey, KeyStore};
use postgres::config::Host;
use postgres::tls::{MakeTlsConnect, TlsConnect};
use postgres::{NoTls, Socket};

use crate::conn::{Connect, Connector};
use crate::error::OpenError;
use crate::store::PostgresStore;

/// How a [`PostgresStore`] connects and behaves. Start from
/// [`PostgresStore::options`].
///
/// ```no_run
/// use std::time::Duration;
/// use es_postgres::PostgresStore;
///
/// let store = PostgresStore::options()
///     .schema("tickets")
///     .readers(8)
///     .poll_interval(Duration::from_millis(200))
///     .connect("postgresql://app@127.0.0.1/app")?;
/// # Ok::<(), es_postgres::OpenError>(())
/// ```
#[derive(Clone)]
pub struct PostgresOptions {
    pub(crate) schema: String,
    pub(crate) readers: usize,
    pub(crate) max_batch: usize,
    pub(crate) limits: Limits,
    pub(crate) poll_interval: Duration,
    pub(crate) listen: bool,
    pub(crate) connect: Option<Connect>,
    pub(crate) allow_plaintext: bool,
    pub(crate) keys: Option<KeysOption>,
}

#[derive(Clone)]
pub(crate) enum KeysOption {
    /// A [`PostgresKeyStore`](crate::PostgresKeyStore) in the store's
    /// database, opened with this key.
    Here(KeyEncryptionKey),
    /// A key store of the caller's.
    Given(Arc<dyn KeyStore>),
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("schema", &self.schema)
            .field("readers", &self.readers)
            .field("max_batch", &self.max_batch)
            .field("limits", &self.limits)
            .field("poll_interval", &self.poll_interval)
            .field("listen", &self.listen)
            .field("tls", &self.connect.is_some())
            .field("allow_plaintext", &self.allow_plaintext)
            .field("personal_data", &self.keys.is_some())
            .finish()
    }
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: "es".to_owned(),
            readers: 4,
            max_batch: 256,
            limits: Limits::default(),
            poll_interval: Duration::from_secs(1),
            listen: true,
            connect: None,
            allow_plaintext: false,
            keys: None,
        }
    }
}

impl PostgresOptions {
    /// The defaults: schema `es`, 4 reader connections, up to 256 appends
    /// per commit, default [`Limits`], `LISTEN/NOTIFY` on with a poll every
    /// second, no TLS (and so only servers on this machine).
    pub fn new() -> Self {
        Self::default()
    }

    /// The PostgreSQL schema (namespace) the store's tables are made in,
    /// `es` by default. Several stores can share one database, each in a
    /// schema of its own (a tenant, a shard, a test). 1 to 63 ASCII
    /// letters, digits or `_`, not starting with a digit.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// How many connections serve reads, in parallel (default 4; at least
    /// 1). Each is made on first use and kept, with its prepared
    /// statements: this is the store's connection pool.
    #[must_use]
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers.max(1);
        self
    }

    /// The most appends (and snapshot or checkpoint writes) the writer
    /// commits in one transaction (default 256; at least 1): appends that
    /// arrive while a commit is under way share the next one (group
    /// commit), so concurrent writers pay for one round trip to the disk
    /// between them.
    #[must_use]
    pub fn max_batch(mut self, requests: usize) -> Self {
        self.max_batch = requests.max(1);
        self
    }

    /// The size limits appends are checked against.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How often a [`Watch`](es_core::store::Watch) of the store polls the
    /// database for commits it was not told about (default 1 s): the
    /// fallback when a notification is lost or `LISTEN` is off.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Whether the store listens for other processes' commits with
    /// `LISTEN/NOTIFY` (default on). Turn it off behind a pooler that
    /// cannot hold a session, as PgBouncer in transaction mode: watches
    /// then learn of other processes' commits by polling only.
    #[must_use]
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// Connects with TLS through `tls`, a connector of
    /// `postgres-native-tls`, `postgres-openssl` or any other
    /// [`MakeTlsConnect`] implementation. Without it, connections are in
    /// clear text, which the store allows only to a server on this machine
    /// (a Unix socket, `localhost` or a loopback address) unless
    /// [`allow_plaintext`](PostgresOptions::allow_plaintext) says so.
    #[must_use]
    pub fn tls<T>(mut self, tls: T) -> Self
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        self.connect = Some(Arc::new(move |config: &postgres::Config| {
            config.connect(tls.clone())
        }));
        self
    }

    /// Allows connections without TLS to a server on another machine (a
    /// private network the operator trusts).
    #[must_use]
    pub fn allow_plaintext(mut self) -> Self {
        self.allow_plaintext = true;
        self
    }

    /// Seals the [`Personal`](es_core::Personal) fields of the events the
    /// store appends, with data keys kept (wrapped by `kek`) in a
    /// [`PostgresKeyStore`](crate::PostgresKeyStore) in the same database
    /// and schema, and opens them on reading (see [`es_core::privacy`]).
    #[must_use]
    pub fn personal_data(mut self, kek: KeyEncryptionKey) -> Self {
        self.keys = Some(KeysOption::Here(kek));
        self
    }

    /// As [`personal_data`](PostgresOptions::personal_data), with the data
    /// keys in `keys`: a key store on another server, which a backup of the
    /// events does not copy.
    #[must_use]
    pub fn key_store(mut self, keys: impl KeyStore) -> Self {
        self.keys = Some(KeysOption::Given(Arc::new(keys)));
        self
    }

    /// Connects to the database `url` names
    /// (`postgresql://user@host:port/database`, or libpq's `key=value`
    /// form), making or upgrading the store's tables in its schema.
    ///
    /// # Errors
    ///
    /// [`OpenError`]: a connection string that does not parse, a server
    /// that cannot be reached, a schema made by a newer es-postgres, a
    /// server elsewhere without TLS.
    pub fn connect(self, url: &str) -> Result<PostgresStore, OpenError> {
        let config: postgres::Config = url.parse().map_err(OpenError::Config)?;
        self.connect_config(config)
    }

    /// As [`connect`](PostgresOptions::connect), with a configuration
    /// built in code.
    ///
    /// # Errors
    ///
    /// As [`connect`](PostgresOptions::connect).
    pub fn connect_config(self, config: postgres::Config) -> Result<PostgresStore, OpenError> {
        let connector = self.connector(config)?;
        PostgresStore::start(&self, connector)
    }

    pub(crate) fn connector(&self, config: postgres::Config) -> Result<Connector, OpenError> {
        check_schema_name(&self.schema)?;
        let connect = if let Some(connect) = &self.connect {
            connect.clone()
        } else {
            if !self.allow_plaintext
                && let Some(host) = config.get_hosts().iter().find_map(remote_host)
            {
                return Err(OpenError::TlsRequired { host });
            }
            let plain: Connect = Arc::new(|config: &postgres::Config| config.connect(NoTls));
            plain
        };
        Ok(Connector {
            config,
            connect,
            schema: self.schema.clone(),
        })
    }
}

/// The name of `host` when it is not on this machine.
fn remote_host(host: &Host) -> Option<String> {
    match host {
        Host::Unix(_) => None,
        Host::Tcp(name) => {
            let local = name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            (!local).then(|| name.clone())
        }
    }
}

pub(crate) fn check_schema_name(name: &str) -> Result<(), OpenError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if valid {
        Ok(())
    } else {
        Err(OpenError::InvalidSchemaName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["es", "tenant_42", "_x", &"a".repeat(63)] {
            assert!(check_schema_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1st", "a-b", "a b", "é", "x\"y", &"a".repeat(64)] {
            assert!(
                matches!(check_schema_name(bad), Err(OpenError::InvalidSchemaName(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn clear_text_is_refused_to_another_machine_only() {
        let refused = |url: &str| {
            let config: postgres::Config = url.parse().expect("parses");
            PostgresOptions::new().connector(config).err()
        };
        for local in [
            "postgresql://u@127.0.0.1/db",
            "postgresql://u@localhost/db",
            "postgresql://u@[::1]/db",
            "host=/run/postgresql user=u",
        ] {
            assert!(refused(local).is_none(), "{local}");
        }
        let remote = refused("postgresql://u@db.example.com/db");
        assert!(
            matches!(&remote, Some(OpenError::TlsRequired { host }) if host == "db.example.com"),
            "{remote:?}"
        );
        let config: postgres::Config = "postgresql://u@10.0.0.5/db".parse().expect("parses");
        assert!(
            PostgresOptions::new()
                .allow_plaintext()
                .connector(config)
                .is_ok()
        );
    }
}
