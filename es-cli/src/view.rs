//! What the commands and the web page show, as serializable rows: the
//! same JSON for `--json` lines and for the page's endpoints.

use es_core::store::next;
use es_core::{Error, EventStore, StoredEventType, Timestamp};
use es_sqlite::{ProjectionKind, ProjectionStatus, SqliteStore};
use serde::Serialize;

/// A stream: its aggregate type, how many events it has, and when the
/// last was recorded.
#[derive(Debug, Serialize)]
pub(crate) struct StreamRow {
    /// The stream id.
    pub(crate) stream: String,
    /// Its aggregate type.
    pub(crate) aggregate_type: String,
    /// Its number of events (its version).
    pub(crate) events: u64,
    /// When its last event was recorded.
    pub(crate) last_recorded_at: Timestamp,
}

/// Every stream of `store`, sorted by id, from one read of `$all`.
///
/// # Errors
///
/// When the store cannot be read.
pub(crate) async fn streams(store: &SqliteStore) -> Result<Vec<StreamRow>, Error> {
    let mut streams = std::collections::BTreeMap::<String, StreamRow>::new();
    let mut events = store.read_all(1);
    while let Some(event) = next(&mut events).await {
        let event = event?;
        let row = streams
            .entry(event.stream_id.to_string())
            .or_insert_with(|| StreamRow {
                stream: event.stream_id.to_string(),
                aggregate_type: event.aggregate_type.to_string(),
                events: 0,
                last_recorded_at: event.recorded_at,
            });
        row.events += 1;
        row.last_recorded_at = event.recorded_at;
    }
    Ok(streams.into_values().collect())
}

/// A stored (aggregate type, event name, schema version) and how many
/// events have it.
#[derive(Debug, Serialize)]
pub(crate) struct TypeRow {
    /// The aggregate type.
    pub(crate) aggregate_type: String,
    /// The event name.
    pub(crate) name: String,
    /// The schema version.
    pub(crate) schema_version: u32,
    /// How many events.
    pub(crate) count: u64,
}

impl From<StoredEventType> for TypeRow {
    fn from(t: StoredEventType) -> Self {
        TypeRow {
            aggregate_type: t.aggregate_type,
            name: t.name,
            schema_version: t.schema_version,
            count: t.count,
        }
    }
}

/// A projection's checkpoint and lag, flattened for JSON: fields that do
/// not apply to its kind are `null`.
#[derive(Debug, Serialize)]
pub(crate) struct ProjectionRow {
    /// The projection's name.
    pub(crate) name: String,
    /// `read-model`, `inline` or `checkpoint`.
    pub(crate) kind: &'static str,
    /// The version of a read model or inline read model.
    pub(crate) version: Option<u32>,
    /// The generation of a read model's file.
    pub(crate) generation: Option<u64>,
    /// Whether a read model's file serves queries.
    pub(crate) serving: Option<bool>,
    /// Set when a read model's file is to be replaced by a new
    /// generation: the position of the forgetting.
    pub(crate) rebuild_for: Option<u64>,
    /// A read model's file.
    pub(crate) file: Option<String>,
    /// The position of the last event taken.
    pub(crate) position: u64,
    /// The store's last position.
    pub(crate) head: u64,
    /// Events behind the head.
    pub(crate) lag_events: u64,
    /// How much later the head was recorded than the last event taken,
    /// in microseconds (`null` when it has taken none).
    pub(crate) lag_micros: Option<i64>,
    /// Events parked by the read model.
    pub(crate) parked: u64,
}

impl ProjectionRow {
    /// The row of `status`.
    pub(crate) fn of(status: &ProjectionStatus) -> Self {
        let mut row = ProjectionRow {
            name: status.name.clone(),
            kind: "other",
            version: None,
            generation: None,
            serving: None,
            rebuild_for: None,
            file: None,
            position: status.position,
            head: status.head,
            lag_events: status.lag_events(),
            lag_micros: status.lag_micros,
            parked: status.parked,
        };
        match &status.kind {
            ProjectionKind::ReadModel {
                version,
                generation,
                serving,
                rebuild_for,
                file,
            } => {
                row.kind = "read-model";
                row.version = Some(*version);
                row.generation = Some(*generation);
                row.serving = Some(*serving);
                row.rebuild_for = *rebuild_for;
                row.file = Some(file.display().to_string());
            }
            ProjectionKind::Inline { version } => {
                row.kind = "inline";
                row.version = Some(*version);
            }
            ProjectionKind::Checkpoint => row.kind = "checkpoint",
            // A kind of a later es-sqlite: shown with what every kind has.
            _ => {}
        }
        row
    }

    /// The cells of its line in `es projections`' table: name, kind,
    /// version, position, head, lag, parked, serving.
    pub(crate) fn cells(&self) -> [String; 8] {
        let version = match (self.version, self.generation) {
            (Some(v), Some(g)) if g > 0 => format!("{v} (generation {g})"),
            (Some(v), _) => v.to_string(),
            (None, _) => "-".to_owned(),
        };
        let lag = match self.lag_micros {
            Some(micros) if self.lag_events > 0 => {
                format!("{} ({})", self.lag_events, duration(micros))
            }
            _ => self.lag_events.to_string(),
        };
        let serving = match (self.serving, self.rebuild_for) {
            (Some(true), Some(_)) => "yes, rebuild pending",
            (Some(false), Some(_)) => "no, rebuild pending",
            (Some(true), None) => "yes",
            (Some(false), None) => "no",
            (None, _) => "-",
        };
        [
            self.name.clone(),
            self.kind.replace('-', " "),
            version,
            self.position.to_string(),
            self.head.to_string(),
            lag,
            self.parked.to_string(),
            serving.to_owned(),
        ]
    }
}

/// A span of microseconds for people: `850 µs`, `12 ms`, `3.4 s`,
/// `5.2 min`, `3.1 h`, `2.0 d`.
pub(crate) fn duration(micros: i64) -> String {
    #[allow(clippy::cast_precision_loss)] // shown to one decimal
    let us = micros as f64;
    match micros {
        ..1_000 => format!("{micros} µs"),
        1_000..1_000_000 => format!("{} ms", micros / 1_000),
        1_000_000..60_000_000 => format!("{:.1} s", us / 1e6),
        60_000_000..3_600_000_000 => format!("{:.1} min", us / 6e7),
        3_600_000_000..86_400_000_000 => format!("{:.1} h", us / 3.6e9),
        _ => format!("{:.1} d", us / 8.64e10),
    }
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_read_in_the_unit_that_fits() {
        assert_eq!(duration(0), "0 µs");
        assert_eq!(duration(999), "999 µs");
        assert_eq!(duration(12_345), "12 ms");
        assert_eq!(duration(3_400_000), "3.4 s");
        assert_eq!(duration(312_000_000), "5.2 min");
        assert_eq!(duration(3 * 3_600_000_000), "3.0 h");
        assert_eq!(duration(2 * 86_400_000_000), "2.0 d");
    }
}
