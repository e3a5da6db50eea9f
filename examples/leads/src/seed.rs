//! The seed's lead 12, as data, and its import through the lead's rules.
//!
//! [`LEAD_12_JSON`] is `seed/lead-12.json`: the seven events seed document
//! 004 prints, with one correction. The seed's `contact-details-updated`
//! (event-id 3) says `"last-name": "David"`, but the seed's prose calls the
//! lead "Casey Davis" and the search model it prints after these events
//! holds `LastNames: ['David', 'Davis']`, which only a correction to
//! `"Davis"` in that event produces; so the file says `"Davis"` there (see
//! `seed/README.md`).
//!
//! [`import`] does not copy the events into the store: it runs the lead's
//! command for each one, so the rules check the seed's history, and records
//! each with the seed's timestamp as its business time (`occurred_at`) and
//! as the command's `now`.
//!
//! The seed's search model counts versions from 0 (`Version: 6` after the
//! seven events); es counts a stream's versions from 1, so the imported lead
//! is at version 7.

use std::fmt;

use es_core::prelude::*;
use serde::Deserialize;

use crate::domain::{
    ContactDetailsUpdated, Contacted, FollowupSet, Lead, LeadClosed, LeadError, LeadInitialized,
    OrderSubmitted, PaymentConfirmed, PaymentFailed,
};

/// The seed's lead 12: its seven events, as JSON.
pub const LEAD_12_JSON: &str = include_str!("../seed/lead-12.json");

/// The id the seed gives the lead.
pub const LEAD_12_ID: &str = "12";

/// Who the imported events are recorded as made by.
pub const ACTOR: &str = "import";

/// Why the imported events were recorded.
pub const REASON: &str = "seed 004";

/// One event as the seed writes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SeedEvent {
    /// The lead's id in the seed's system.
    pub lead_id: u64,
    /// The event's number in the lead's history, from 0.
    pub event_id: u64,
    /// When it happened.
    pub timestamp: Timestamp,
    /// What happened.
    #[serde(flatten)]
    pub fact: SeedFact,
}

/// What happened, by the seed's `event-type`, with the seed's fields.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    tag = "event-type",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub enum SeedFact {
    /// `lead-initialized`.
    LeadInitialized {
        /// The first name.
        first_name: String,
        /// The last name.
        last_name: String,
        /// The phone number.
        phone_number: String,
    },
    /// `contacted`.
    Contacted,
    /// `followup-set`.
    FollowupSet {
        /// When to call again.
        followup_on: Timestamp,
    },
    /// `contact-details-updated`.
    ContactDetailsUpdated {
        /// The first name.
        first_name: String,
        /// The last name.
        last_name: String,
        /// The phone number.
        phone_number: String,
    },
    /// `order-submitted`.
    OrderSubmitted {
        /// The payment deadline.
        payment_deadline: Timestamp,
    },
    /// `payment-confirmed`; the seed adds the lead's resulting status,
    /// which must be `converted` (the lead's rules convert a paid lead).
    PaymentConfirmed {
        /// The lead's status after the payment.
        status: String,
    },
    /// `payment-failed` (not in the seed; the lead's own event).
    PaymentFailed,
    /// `lead-closed` (not in the seed; the lead's own event).
    LeadClosed {
        /// Why the lead was given up.
        reason: String,
    },
}

impl SeedFact {
    /// The `event-type`: the name of the lead's event it becomes.
    pub fn event_type(&self) -> &'static str {
        match self {
            SeedFact::LeadInitialized { .. } => LeadInitialized::NAME,
            SeedFact::Contacted => Contacted::NAME,
            SeedFact::FollowupSet { .. } => FollowupSet::NAME,
            SeedFact::ContactDetailsUpdated { .. } => ContactDetailsUpdated::NAME,
            SeedFact::OrderSubmitted { .. } => OrderSubmitted::NAME,
            SeedFact::PaymentConfirmed { .. } => PaymentConfirmed::NAME,
            SeedFact::PaymentFailed => PaymentFailed::NAME,
            SeedFact::LeadClosed { .. } => LeadClosed::NAME,
        }
    }

    /// The name of the lead's command it is imported through, as recorded
    /// in the events' metadata.
    pub fn command(&self) -> &'static str {
        match self {
            SeedFact::LeadInitialized { .. } => "initialize",
            SeedFact::Contacted => "contact",
            SeedFact::FollowupSet { .. } => "set-followup",
            SeedFact::ContactDetailsUpdated { .. } => "update-contact-details",
            SeedFact::OrderSubmitted { .. } => "submit-order",
            SeedFact::PaymentConfirmed { .. } => "confirm-payment",
            SeedFact::PaymentFailed => "fail-payment",
            SeedFact::LeadClosed { .. } => "close",
        }
    }
}

/// Why an import stopped. Events before the failing one stay appended (each
/// event is its own command, as it was in the seed's system).
#[derive(Debug)]
pub enum ImportError {
    /// The seed's JSON does not parse.
    Seed(serde_json::Error),
    /// The lead's rules refused an event of the seed's history (importing
    /// into a lead that already exists is refused by its first event).
    Rejected {
        /// The seed's `event-id`.
        event_id: u64,
        /// The seed's `event-type`.
        event_type: &'static str,
        /// The refusal.
        error: LeadError,
    },
    /// A `payment-confirmed` gives a status other than `converted`.
    Status {
        /// The seed's `event-id`.
        event_id: u64,
        /// The status it gives.
        status: String,
    },
    /// The store failed.
    Store(es_core::Error),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Seed(_) => f.write_str("the seed does not parse"),
            ImportError::Rejected {
                event_id,
                event_type,
                ..
            } => write!(f, "the rules refused seed event {event_id} ({event_type})"),
            ImportError::Status { event_id, status } => write!(
                f,
                "seed event {event_id} says the paid lead is {status:?}, not \"converted\""
            ),
            ImportError::Store(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for ImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImportError::Seed(e) => Some(e),
            ImportError::Rejected { error, .. } => Some(error),
            ImportError::Status { .. } => None,
            // Transparent: the store error's own causes.
            ImportError::Store(e) => e.source(),
        }
    }
}

impl From<serde_json::Error> for ImportError {
    fn from(e: serde_json::Error) -> Self {
        ImportError::Seed(e)
    }
}

impl From<es_core::Error> for ImportError {
    fn from(e: es_core::Error) -> Self {
        ImportError::Store(e)
    }
}

/// A version as the seed counts it: from 0 (`Version = 0` when the lead
/// is initialized), where es counts a stream's versions from 1. So the
/// seed's `Version: 6` is es's version 7, after the same seven events.
pub const fn seed_version(version: u64) -> u64 {
    version.saturating_sub(1)
}

/// The seed's lead 12, parsed.
///
/// # Errors
///
/// [`ImportError::Seed`] when the JSON does not parse (it does: a test says so).
pub fn lead_12() -> Result<Vec<SeedEvent>, ImportError> {
    Ok(serde_json::from_str(LEAD_12_JSON)?)
}

/// Imports the seed's lead 12 into the lead with id `lead_id`, event by
/// event, each through the lead's command, recorded as occurred at the
/// seed's timestamp with the metadata `actor = "import"`,
/// `reason = "seed 004"` and the command's name. Returns the lead's state
/// and version after the last event.
///
/// # Errors
///
/// As [`import_events`].
pub async fn import<I, S>(
    leads: &Repository<Lead, S>,
    lead_id: &I,
) -> Result<Loaded<Lead>, ImportError>
where
    I: fmt::Display + ?Sized,
    S: EventStore + SnapshotStore,
{
    import_events(leads, lead_id, &lead_12()?).await
}

/// Imports `events` (in the seed's format) into the lead with id
/// `lead_id`: see [`import`].
///
/// # Errors
///
/// [`ImportError::Rejected`] when the rules refuse an event (a lead that
/// already exists refuses the first, `lead-initialized`);
/// [`ImportError::Status`] for a `payment-confirmed` that does not convert;
/// [`ImportError::Store`] when the store fails. The events before the
/// failing one stay appended.
pub async fn import_events<I, S>(
    leads: &Repository<Lead, S>,
    lead_id: &I,
    events: &[SeedEvent],
) -> Result<Loaded<Lead>, ImportError>
where
    I: fmt::Display + ?Sized,
    S: EventStore + SnapshotStore,
{
    let mut last = None;
    for event in events {
        let now = event.timestamp;
        let command = leads.command(lead_id).occurred_at(now).metadata(
            Metadata::new()
                .actor(ACTOR)
                .command(event.fact.command())
                .reason(REASON),
        );
        let outcome = match &event.fact {
            SeedFact::LeadInitialized {
                first_name,
                last_name,
                phone_number,
            } => {
                command
                    .execute(|l| l.initialize(first_name, last_name, phone_number))
                    .await
            }
            SeedFact::Contacted => command.execute(Lead::contact).await,
            SeedFact::FollowupSet { followup_on } => {
                command.execute(|l| l.set_followup(*followup_on, now)).await
            }
            SeedFact::ContactDetailsUpdated {
                first_name,
                last_name,
                phone_number,
            } => {
                command
                    .execute(|l| l.update_contact_details(first_name, last_name, phone_number))
                    .await
            }
            SeedFact::OrderSubmitted { payment_deadline } => {
                command
                    .execute(|l| l.submit_order(*payment_deadline, now))
                    .await
            }
            SeedFact::PaymentConfirmed { status } => {
                if status != "converted" {
                    return Err(ImportError::Status {
                        event_id: event.event_id,
                        status: status.clone(),
                    });
                }
                command.execute(|l| l.confirm_payment(now)).await
            }
            SeedFact::PaymentFailed => command.execute(Lead::fail_payment).await,
            SeedFact::LeadClosed { reason } => command.execute(|l| l.close(reason)).await,
        };
        match outcome {
            Ok(done) => last = Some(done),
            Err(ExecuteError::Rejected(error)) => {
                return Err(ImportError::Rejected {
                    event_id: event.event_id,
                    event_type: event.fact.event_type(),
                    error,
                });
            }
            // A writer importing the same lead at the same time.
            Err(ExecuteError::Conflict(raced)) => {
                return Err(es_core::Error::Conflict(raced.conflict).into());
            }
            Err(ExecuteError::Store(error)) => return Err(error.into()),
        }
    }
    Ok(match last {
        Some(done) => Loaded {
            state: done.state,
            version: done.version,
        },
        None => leads.load(lead_id).await?,
    })
}
