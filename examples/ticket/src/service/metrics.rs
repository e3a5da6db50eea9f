//! `/metrics`: the service's figures in the Prometheus text format
//! (OpenMetrics), through `prometheus-client`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A command and how it ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CommandLabels {
    /// `open`, `add-message`, `escalate`, `close`, `correct-escalation`, `forget`.
    pub command: &'static str,
    /// `ok`, `repeated`, `refused`, `conflict`, `not-found`, `error`.
    pub outcome: &'static str,
}

/// A command.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CommandLabel {
    /// As in [`CommandLabels`].
    pub command: &'static str,
}

/// An HTTP request's route and status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// The method.
    pub method: String,
    /// The route's pattern (`/api/tickets/{id}`), not the path: one
    /// series per route, whatever the ids.
    pub route: String,
    /// The status code.
    pub status: u16,
}

/// The service's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    commands: Family<CommandLabels, Counter>,
    latency: Family<CommandLabel, Histogram>,
    appended: Histogram,
    requests: Family<RequestLabels, Counter>,
    lag: Gauge,
    position: Gauge,
    live_clients: Gauge,
    commits: Counter,
    appends: Counter,
    events: Counter,
    /// The store's counts as last exported: counters move by the
    /// difference.
    exported: std::sync::Mutex<es_sqlite::WriteStats>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let commands = Family::<CommandLabels, Counter>::default();
        registry.register(
            "ticket_commands",
            "Commands handled, by command and outcome",
            commands.clone(),
        );
        // 0.25 ms to about 4 s.
        let latency = Family::<CommandLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
        });
        registry.register(
            "ticket_command_duration_seconds",
            "How long commands took, load, decision and durable append included",
            latency.clone(),
        );
        let appended = Histogram::new(exponential_buckets(1.0, 2.0, 8));
        registry.register(
            "ticket_append_events",
            "Events appended per command (one atomic append each)",
            appended.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "ticket_http_requests",
            "HTTP requests, by method, route and status",
            requests.clone(),
        );
        let lag = Gauge::default();
        registry.register(
            "ticket_list_lag_events",
            "How many events the ticket list read model is behind the store",
            lag.clone(),
        );
        let position = Gauge::default();
        registry.register(
            "ticket_list_position",
            "The position of the last event the ticket list has taken",
            position.clone(),
        );
        let live_clients = Gauge::default();
        registry.register(
            "ticket_live_clients",
            "Clients following the live updates (server-sent events)",
            live_clients.clone(),
        );
        let commits = Counter::default();
        registry.register(
            "es_sqlite_commits",
            "Transactions the store's writer committed with appends (group commit: \
             es_sqlite_appends_total / es_sqlite_commits_total appends share a commit)",
            commits.clone(),
        );
        let appends = Counter::default();
        registry.register(
            "es_sqlite_appends",
            "Append requests the store's writer committed",
            appends.clone(),
        );
        let events = Counter::default();
        registry.register(
            "es_sqlite_events",
            "Events the store's writer committed",
            events.clone(),
        );
        Metrics {
            commits,
            appends,
            events,
            exported: std::sync::Mutex::default(),
            registry,
            commands,
            latency,
            appended,
            requests,
            lag,
            position,
            live_clients,
        }
    }
}

impl Metrics {
    /// Counts a command that ended with `outcome` after `took`, having
    /// appended `events`.
    pub fn command(
        &self,
        command: &'static str,
        outcome: &'static str,
        took: Duration,
        events: usize,
    ) {
        self.commands
            .get_or_create(&CommandLabels { command, outcome })
            .inc();
        self.latency
            .get_or_create(&CommandLabel { command })
            .observe(took.as_secs_f64());
        if events > 0 {
            #[allow(clippy::cast_precision_loss)] // a command appends a handful of events
            self.appended.observe(events as f64);
        }
    }

    /// Counts a request.
    pub fn request(&self, method: &str, route: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    /// A client started (+1) or stopped (-1) following the live updates.
    pub fn live_client(&self, delta: i64) {
        self.live_clients.inc_by(delta);
    }

    /// The text exposition, with the read model's progress and the store's
    /// write counts as of now.
    pub fn render(
        &self,
        progress: es_core::projection::Progress,
        store: es_sqlite::WriteStats,
    ) -> String {
        {
            let mut exported = self
                .exported
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.commits
                .inc_by(store.commits.saturating_sub(exported.commits));
            self.appends
                .inc_by(store.appends.saturating_sub(exported.appends));
            self.events
                .inc_by(store.events.saturating_sub(exported.events));
            *exported = store;
        }
        self.lag
            .set(i64::try_from(progress.lag_events()).unwrap_or(i64::MAX));
        self.position
            .set(i64::try_from(progress.position).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
