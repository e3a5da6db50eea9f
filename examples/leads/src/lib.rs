//! The sales leads of the seeds (Learning Domain-Driven Design, ch. 7,
//! "modeling the dimension of time"): a person the sales team may sell to
//! is registered as a lead, is called, gets follow-up calls, changes their
//! name or number, orders and pays, or is given up.
//!
//! Everything here is plain Rust: events are structs, the state is a struct,
//! commands are methods that return an event or a refusal ([`LeadError`]).
//! The framework stores the events and rebuilds the state; a lead's history
//! is its events, each with two times: when the store **recorded** it and
//! when it **occurred** (the seed's timestamps, for an import).
//!
//! # Events
//!
//! Named as the seed's `event-type`s: `lead-initialized` (first name, last
//! name, phone number), `contacted`, `followup-set` (when), `contact-details-updated`
//! (first name, last name, phone number), `order-submitted` (payment
//! deadline), `payment-confirmed`, `payment-failed`, `lead-closed` (why).
//! Names and phone numbers are [`Personal`](es_core::Personal): personal
//! data, forgettable.
//!
//! # Rules
//!
//! A lead is [`Uninitialized`](Status::Uninitialized), [`Open`](Status::Open),
//! [`AwaitingPayment`](Status::AwaitingPayment) (an order waits),
//! [`Converted`](Status::Converted) or [`Closed`](Status::Closed).
//!
//! | command                  | allowed when                      | refused with |
//! |--------------------------|-----------------------------------|--------------|
//! | `initialize`             | uninitialized; names and phone not empty | `AlreadyInitialized`, `Empty` |
//! | `contact`                | open or awaiting payment          | `NotInitialized`, `Converted`, `Closed` |
//! | `set_followup(on, now)`  | open or awaiting payment; `on` after `now` | ... , `FollowupInPast` |
//! | `update_contact_details` | open or awaiting payment; not empty | ... , `Empty` |
//! | `submit_order(deadline, now)` | open, contacted at least once, no order waiting; deadline after `now` | ... , `OrderPending`, `NotContacted`, `DeadlineInPast` |
//! | `confirm_payment(now)`   | an order waits and its deadline has not passed at `now` | ... , `NoOrder`, `DeadlinePassed` |
//! | `fail_payment`           | an order waits (the lead is open again) | ... , `NoOrder` |
//! | `close(reason)`          | open (not while an order waits); a reason | ... , `OrderPending`, `Empty` |
//!
//! (`...`: the refusals of `contact`.) A converted or closed lead refuses
//! every command. Commands that depend
//! on time take the command's time, `now`, as an argument: the rules never
//! read a clock, so an import replays the seed's history at the seed's times.
//!
//! # The seed
//!
//! [`seed`] holds the seed's lead 12 (seven events, `seed/lead-12.json`) and
//! [`seed::import`], which replays it through the commands above.
//!
//! # Read models
//!
//! [`read_models`] holds the seeds' two projections of the leads' events,
//! each per stream (folded from one lead's events on demand) and as a
//! SQLite read model (kept for every lead by a runner, beside the events):
//!
//! - the **search model** ([`LeadSearchModelProjection`],
//!   [`LeadSearchModel`]): every first name, last name and phone number a
//!   lead ever had; [`search`] finds a lead by an old value as well as a
//!   new one;
//! - the **analysis model** ([`AnalysisModelProjection`],
//!   [`AnalysisModel`]): per lead, the follow-ups set and its
//!   [`LeadStatus`]; [`by_status`](read_models::analysis::by_status) is the
//!   funnel.
//!
//! After lead 12's events the search model holds `FirstNames: ['Casey']`,
//! `LastNames: ['David', 'Davis']`, `PhoneNumbers: ['555-2951', '555-8101']`
//! and the analysis model one follow-up, status `converted`. The seed prints
//! `Version: 6` for the lead: it counts versions from 0, es from 1 (version
//! 7), see [`seed::seed_version`].
//!
//! # The command line
//!
//! `leads demo` (the default) imports lead 12 into `leads.db` unless it is
//! there, and prints its state, the state as of a day between its events in
//! business and in recorded time, its history with both times, and its
//! search and analysis models as the seed prints them, per stream and from
//! the read models in `leads.read-models/`;
//! `leads show ID [--at-version N] [--as-of TIME [--occurred]]` and
//! `leads history ID` look at one lead; `leads search TERM` finds the leads
//! that have or had a name or phone number; `leads forget ID --reason WHY`
//! forgets a lead's personal data: its keys are destroyed (so its names and
//! phone numbers read as [`Forgotten`](es_core::Personal::Forgotten)
//! everywhere), and the read models delete them
//! ([`LeadSearchModel`]'s [`forget`](es_sqlite::ReadModel::forget) hook).
//!
//! Personal data is stored encrypted: the store is opened with a
//! key-encryption key from the environment variable `LEADS_KEK` (64 hex
//! digits) or else from the key file `leads.db.kek` beside the database,
//! created on first use (`leads --help` says more). A real deployment keeps
//! that key elsewhere.

pub mod domain;
pub mod read_models;
pub mod seed;

pub use domain::{
    ContactDetailsUpdated, Contacted, FollowupSet, Lead, LeadClosed, LeadError, LeadEvent,
    LeadInitialized, OrderSubmitted, PaymentConfirmed, PaymentFailed, Status,
};
pub use read_models::analysis::{AnalysisModel, AnalysisModelProjection, LeadAnalysis, LeadStatus};
pub use read_models::search::{LeadSearchModel, LeadSearchModelProjection, SearchHit, search};
