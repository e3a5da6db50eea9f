//! Events, state and commands of a sales lead.
//!
//! The events carry the names the seed gives them (`lead-initialized`,
//! `contacted`, ...) and their payloads use the seed's kebab-case keys
//! (`first-name`, `followup-on`, ...), so a stored event reads like the
//! seed's JSON.

use std::fmt;

use es_core::prelude::*;
use serde::{Deserialize, Serialize};

/// A sales lead was registered: a person the sales team may sell to.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "lead-initialized")]
#[serde(rename_all = "kebab-case")]
pub struct LeadInitialized {
    /// The person's first name: personal data, forgettable.
    pub first_name: Personal<String>,
    /// The person's last name: personal data, forgettable.
    pub last_name: Personal<String>,
    /// Where to call them: personal data, forgettable.
    pub phone_number: Personal<String>,
}

/// A salesperson talked to the lead.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "contacted")]
pub struct Contacted {}

/// A salesperson agreed with the lead to call again.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "followup-set")]
#[serde(rename_all = "kebab-case")]
pub struct FollowupSet {
    /// When to call.
    pub followup_on: Timestamp,
}

/// The lead's name or phone number changed (all three are recorded, as in
/// the seed, whichever changed).
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "contact-details-updated")]
#[serde(rename_all = "kebab-case")]
pub struct ContactDetailsUpdated {
    /// The first name now: personal data, forgettable.
    pub first_name: Personal<String>,
    /// The last name now: personal data, forgettable.
    pub last_name: Personal<String>,
    /// The phone number now: personal data, forgettable.
    pub phone_number: Personal<String>,
}

/// The lead ordered: the order waits for its payment.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "order-submitted")]
#[serde(rename_all = "kebab-case")]
pub struct OrderSubmitted {
    /// The last moment the payment is accepted.
    pub payment_deadline: Timestamp,
}

/// The order was paid: the lead is converted, a customer now.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "payment-confirmed")]
pub struct PaymentConfirmed {}

/// The order's payment failed: the order is void, the lead open again.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "payment-failed")]
pub struct PaymentFailed {}

/// The sales team gave the lead up.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "lead-closed")]
pub struct LeadClosed {
    /// Why, in the salesperson's words.
    pub reason: String,
}

/// Where a lead is in its life.
///
/// ```text
///                 initialize           submit_order
/// Uninitialized ─────────────▶ Open ─────────────────▶ AwaitingPayment
///                              │  ▲                       │        │
///                              │  └──── fail_payment ─────┘        │ confirm_payment
///                        close │                                   ▼
///                              ▼                               Converted
///                            Closed
/// ```
///
/// `contact`, `set_followup` and `update_contact_details` keep the status
/// and are allowed when it is `Open` or `AwaitingPayment`; `Converted` and
/// `Closed` are final.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    /// No lead yet: the stream has no event.
    #[default]
    Uninitialized,
    /// A lead the sales team works on.
    Open,
    /// An order was submitted and waits for its payment.
    AwaitingPayment {
        /// The last moment the payment is accepted.
        deadline: Timestamp,
    },
    /// The order was paid (final).
    Converted,
    /// The lead was given up (final).
    Closed,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Uninitialized => f.write_str("uninitialized"),
            Status::Open => f.write_str("open"),
            Status::AwaitingPayment { deadline } => {
                write!(f, "awaiting payment (deadline {deadline})")
            }
            Status::Converted => f.write_str("converted"),
            Status::Closed => f.write_str("closed"),
        }
    }
}

/// A sales lead: only what decisions need. The person's name and phone
/// number are not here (no rule reads them): the read models show them.
#[derive(Aggregate, Default, Debug, Clone, PartialEq)]
#[aggregate(
    name = "lead",
    events(
        LeadInitialized,
        Contacted,
        FollowupSet,
        ContactDetailsUpdated,
        OrderSubmitted,
        PaymentConfirmed,
        PaymentFailed,
        LeadClosed
    )
)]
pub struct Lead {
    /// Its status.
    pub status: Status,
    /// Whether anyone has talked to the lead yet (an order needs a contact).
    pub contacted: bool,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeadError {
    /// The lead was already initialized.
    AlreadyInitialized,
    /// The lead has not been initialized.
    NotInitialized,
    /// The lead is converted: nothing more happens to it.
    Converted,
    /// The lead is closed: nothing more happens to it.
    Closed,
    /// A follow-up must be after the command's time.
    FollowupInPast {
        /// The follow-up asked for.
        followup_on: Timestamp,
        /// The command's time.
        now: Timestamp,
    },
    /// An order needs a contact with the lead first.
    NotContacted,
    /// An order already waits for its payment.
    OrderPending {
        /// The pending order's payment deadline.
        deadline: Timestamp,
    },
    /// A payment deadline must be after the command's time.
    DeadlineInPast {
        /// The deadline asked for.
        deadline: Timestamp,
        /// The command's time.
        now: Timestamp,
    },
    /// A payment needs an order waiting for it.
    NoOrder,
    /// The payment came after the order's deadline: record it as failed.
    DeadlinePassed {
        /// The order's payment deadline.
        deadline: Timestamp,
        /// The command's time.
        now: Timestamp,
    },
    /// A required text is empty.
    Empty(&'static str),
}

impl fmt::Display for LeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeadError::AlreadyInitialized => f.write_str("the lead is already initialized"),
            LeadError::NotInitialized => f.write_str("the lead has not been initialized"),
            LeadError::Converted => f.write_str("the lead is converted"),
            LeadError::Closed => f.write_str("the lead is closed"),
            LeadError::FollowupInPast { followup_on, now } => {
                write!(f, "the follow-up {followup_on} is not after now ({now})")
            }
            LeadError::NotContacted => f.write_str("nobody has talked to the lead yet"),
            LeadError::OrderPending { deadline } => {
                write!(
                    f,
                    "an order already waits for its payment (deadline {deadline})"
                )
            }
            LeadError::DeadlineInPast { deadline, now } => {
                write!(
                    f,
                    "the payment deadline {deadline} is not after now ({now})"
                )
            }
            LeadError::NoOrder => f.write_str("no order waits for a payment"),
            LeadError::DeadlinePassed { deadline, now } => {
                write!(f, "the payment deadline {deadline} passed (now {now})")
            }
            LeadError::Empty(what) => write!(f, "the {what} is empty"),
        }
    }
}

impl std::error::Error for LeadError {}

impl Apply<LeadInitialized> for Lead {
    fn apply(&mut self, _: &LeadInitialized) {
        self.status = Status::Open;
    }
}

impl Apply<Contacted> for Lead {
    fn apply(&mut self, _: &Contacted) {
        self.contacted = true;
    }
}

impl Apply<FollowupSet> for Lead {
    /// No rule depends on a follow-up: it is the read models' business.
    fn apply(&mut self, _: &FollowupSet) {}
}

impl Apply<ContactDetailsUpdated> for Lead {
    /// No rule depends on the details: they stay in the events.
    fn apply(&mut self, _: &ContactDetailsUpdated) {}
}

impl Apply<OrderSubmitted> for Lead {
    fn apply(&mut self, event: &OrderSubmitted) {
        self.status = Status::AwaitingPayment {
            deadline: event.payment_deadline,
        };
    }
}

impl Apply<PaymentConfirmed> for Lead {
    fn apply(&mut self, _: &PaymentConfirmed) {
        self.status = Status::Converted;
    }
}

impl Apply<PaymentFailed> for Lead {
    fn apply(&mut self, _: &PaymentFailed) {
        self.status = Status::Open;
    }
}

impl Apply<LeadClosed> for Lead {
    fn apply(&mut self, _: &LeadClosed) {
        self.status = Status::Closed;
    }
}

impl Lead {
    /// Registers the lead with the person's name and phone number.
    ///
    /// # Errors
    ///
    /// [`LeadError::AlreadyInitialized`], or [`LeadError::Empty`] for an
    /// empty name or phone number.
    pub fn initialize(
        &self,
        first_name: &str,
        last_name: &str,
        phone_number: &str,
    ) -> Result<LeadInitialized, LeadError> {
        if self.status != Status::Uninitialized {
            return Err(LeadError::AlreadyInitialized);
        }
        let [first_name, last_name, phone_number] = details(first_name, last_name, phone_number)?;
        Ok(LeadInitialized {
            first_name,
            last_name,
            phone_number,
        })
    }

    /// Records that a salesperson talked to the lead.
    ///
    /// # Errors
    ///
    /// When the lead is not initialized, converted or closed.
    pub fn contact(&self) -> Result<Contacted, LeadError> {
        self.require_open()?;
        Ok(Contacted {})
    }

    /// Sets a follow-up call at `followup_on`, which must be after `now`.
    ///
    /// # Errors
    ///
    /// When the lead is not initialized, converted or closed;
    /// [`LeadError::FollowupInPast`] when `followup_on` is not after `now`.
    pub fn set_followup(
        &self,
        followup_on: Timestamp,
        now: Timestamp,
    ) -> Result<FollowupSet, LeadError> {
        self.require_open()?;
        if followup_on <= now {
            return Err(LeadError::FollowupInPast { followup_on, now });
        }
        Ok(FollowupSet { followup_on })
    }

    /// Records the lead's name and phone number as they are now.
    ///
    /// # Errors
    ///
    /// When the lead is not initialized, converted or closed;
    /// [`LeadError::Empty`] for an empty name or phone number.
    pub fn update_contact_details(
        &self,
        first_name: &str,
        last_name: &str,
        phone_number: &str,
    ) -> Result<ContactDetailsUpdated, LeadError> {
        self.require_open()?;
        let [first_name, last_name, phone_number] = details(first_name, last_name, phone_number)?;
        Ok(ContactDetailsUpdated {
            first_name,
            last_name,
            phone_number,
        })
    }

    /// Submits the lead's order, to be paid by `payment_deadline` (after
    /// `now`). One order at a time, and only after a contact.
    ///
    /// # Errors
    ///
    /// When the lead is not initialized, converted or closed;
    /// [`LeadError::OrderPending`] when an order already waits for its
    /// payment; [`LeadError::NotContacted`] when nobody talked to the lead;
    /// [`LeadError::DeadlineInPast`] when the deadline is not after `now`.
    pub fn submit_order(
        &self,
        payment_deadline: Timestamp,
        now: Timestamp,
    ) -> Result<OrderSubmitted, LeadError> {
        self.require_open()?;
        if let Status::AwaitingPayment { deadline } = self.status {
            return Err(LeadError::OrderPending { deadline });
        }
        if !self.contacted {
            return Err(LeadError::NotContacted);
        }
        if payment_deadline <= now {
            return Err(LeadError::DeadlineInPast {
                deadline: payment_deadline,
                now,
            });
        }
        Ok(OrderSubmitted { payment_deadline })
    }

    /// Confirms the order's payment, received at `now`: the lead is
    /// converted.
    ///
    /// # Errors
    ///
    /// When the lead is not initialized, converted or closed;
    /// [`LeadError::NoOrder`] when no order waits; [`LeadError::DeadlinePassed`]
    /// when `now` is after the order's payment deadline.
    pub fn confirm_payment(&self, now: Timestamp) -> Result<PaymentConfirmed, LeadError> {
        let deadline = self.pending_order()?;
        if now > deadline {
            return Err(LeadError::DeadlinePassed { deadline, now });
        }
        Ok(PaymentConfirmed {})
    }

    /// Records that the order's payment failed: the order is void and the
    /// lead open again (a new order may follow).
    ///
    /// # Errors
    ///
    /// When the lead is not initialized, converted or closed;
    /// [`LeadError::NoOrder`] when no order waits.
    pub fn fail_payment(&self) -> Result<PaymentFailed, LeadError> {
        self.pending_order()?;
        Ok(PaymentFailed {})
    }

    /// Gives the lead up, for `reason`. A lead whose order waits for its
    /// payment is not given up: its payment is confirmed or fails first.
    ///
    /// # Errors
    ///
    /// When the lead is not initialized, converted or closed;
    /// [`LeadError::OrderPending`] when an order waits for its payment;
    /// [`LeadError::Empty`] for an empty reason.
    pub fn close(&self, reason: &str) -> Result<LeadClosed, LeadError> {
        self.require_open()?;
        if let Status::AwaitingPayment { deadline } = self.status {
            return Err(LeadError::OrderPending { deadline });
        }
        if reason.trim().is_empty() {
            return Err(LeadError::Empty("reason"));
        }
        Ok(LeadClosed {
            reason: reason.to_owned(),
        })
    }

    /// Whether the lead is one the sales team works on (open, or awaiting
    /// a payment).
    fn require_open(&self) -> Result<(), LeadError> {
        match self.status {
            Status::Uninitialized => Err(LeadError::NotInitialized),
            Status::Open | Status::AwaitingPayment { .. } => Ok(()),
            Status::Converted => Err(LeadError::Converted),
            Status::Closed => Err(LeadError::Closed),
        }
    }

    /// The deadline of the order waiting for its payment.
    fn pending_order(&self) -> Result<Timestamp, LeadError> {
        self.require_open()?;
        match self.status {
            Status::AwaitingPayment { deadline } => Ok(deadline),
            _ => Err(LeadError::NoOrder),
        }
    }
}

/// A person's details, checked and wrapped as personal data.
fn details(
    first_name: &str,
    last_name: &str,
    phone_number: &str,
) -> Result<[Personal<String>; 3], LeadError> {
    let check = |value: &str, what: &'static str| {
        let value = value.trim();
        if value.is_empty() {
            Err(LeadError::Empty(what))
        } else {
            Ok(Personal::known(value.to_owned()))
        }
    };
    Ok([
        check(first_name, "first name")?,
        check(last_name, "last name")?,
        check(phone_number, "phone number")?,
    ])
}
