//! The lead's rules, given/when/then; the seed's lead 12 imported through
//! them on the in-memory and the SQLite store; the command line.

// The helpers below are test code too (clippy allows these only in `#[test]`s).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use es_core::prelude::*;
use es_core::testing::given;
use leads::seed::{self, ImportError, SeedEvent, SeedFact};
use leads::{
    ContactDetailsUpdated, Contacted, FollowupSet, Lead, LeadClosed, LeadError, LeadEvent,
    LeadInitialized, OrderSubmitted, PaymentConfirmed, PaymentFailed, Status,
};

fn t(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn now() -> Timestamp {
    t("2020-05-20T12:00:00Z")
}

fn initialized() -> LeadEvent {
    LeadInitialized {
        first_name: Personal::known("Casey".into()),
        last_name: Personal::known("David".into()),
        phone_number: Personal::known("555-2951".into()),
    }
    .into()
}

fn contacted() -> LeadEvent {
    Contacted {}.into()
}

fn ordered() -> LeadEvent {
    OrderSubmitted {
        payment_deadline: t("2020-05-30T12:00:00Z"),
    }
    .into()
}

fn converted() -> [LeadEvent; 4] {
    [
        initialized(),
        contacted(),
        ordered(),
        PaymentConfirmed {}.into(),
    ]
}

fn closed() -> [LeadEvent; 2] {
    [
        initialized(),
        LeadClosed {
            reason: "not interested".into(),
        }
        .into(),
    ]
}

// ── initialize ──────────────────────────────────────────────────────────

#[test]
fn initializing_a_new_lead() {
    let lead = given::<Lead>(())
        .when(|l| l.initialize("Casey", "David", "555-2951"))
        .then(initialized());
    assert_eq!(lead.status, Status::Open);
    assert!(!lead.contacted);
}

#[test]
fn a_lead_is_initialized_once() {
    given::<Lead>(initialized())
        .when(|l| l.initialize("Casey", "Davis", "555-8101"))
        .then_error(LeadError::AlreadyInitialized);
}

#[test]
fn a_lead_needs_a_name_and_a_phone_number() {
    given::<Lead>(())
        .when(|l| l.initialize(" ", "David", "555-2951"))
        .then_error(LeadError::Empty("first name"));
    given::<Lead>(())
        .when(|l| l.initialize("Casey", "", "555-2951"))
        .then_error(LeadError::Empty("last name"));
    given::<Lead>(())
        .when(|l| l.initialize("Casey", "David", ""))
        .then_error(LeadError::Empty("phone number"));
}

// ── nothing before initialization ───────────────────────────────────────

#[test]
fn nothing_happens_to_a_lead_before_it_is_initialized() {
    given::<Lead>(())
        .when(Lead::contact)
        .then_error(LeadError::NotInitialized);
    given::<Lead>(())
        .when(|l| l.set_followup(t("2020-05-27T12:00:00Z"), now()))
        .then_error(LeadError::NotInitialized);
    given::<Lead>(())
        .when(|l| l.update_contact_details("Casey", "Davis", "555-8101"))
        .then_error(LeadError::NotInitialized);
    given::<Lead>(())
        .when(|l| l.submit_order(t("2020-05-30T12:00:00Z"), now()))
        .then_error(LeadError::NotInitialized);
    given::<Lead>(())
        .when(|l| l.confirm_payment(now()))
        .then_error(LeadError::NotInitialized);
    given::<Lead>(())
        .when(Lead::fail_payment)
        .then_error(LeadError::NotInitialized);
    given::<Lead>(())
        .when(|l| l.close("never met"))
        .then_error(LeadError::NotInitialized);
}

// ── contact, follow-up, details ─────────────────────────────────────────

#[test]
fn contacting_a_lead() {
    let lead = given::<Lead>(initialized())
        .when(Lead::contact)
        .then(Contacted {});
    assert!(lead.contacted);
}

#[test]
fn setting_a_followup_in_the_future() {
    let on = t("2020-05-27T12:00:00Z");
    given::<Lead>((initialized(), Contacted {}))
        .when(|l| l.set_followup(on, now()))
        .then(FollowupSet { followup_on: on });
}

#[test]
fn a_followup_is_not_in_the_past() {
    let yesterday = t("2020-05-19T12:00:00Z");
    given::<Lead>(initialized())
        .when(|l| l.set_followup(yesterday, now()))
        .then_error(LeadError::FollowupInPast {
            followup_on: yesterday,
            now: now(),
        });
    // Nor now: a follow-up is a later call.
    given::<Lead>(initialized())
        .when(|l| l.set_followup(now(), now()))
        .then_error(LeadError::FollowupInPast {
            followup_on: now(),
            now: now(),
        });
}

#[test]
fn updating_contact_details() {
    given::<Lead>(initialized())
        .when(|l| l.update_contact_details("Casey", "Davis", " 555-8101 "))
        .then(ContactDetailsUpdated {
            first_name: Personal::known("Casey".into()),
            last_name: Personal::known("Davis".into()),
            phone_number: Personal::known("555-8101".into()),
        });
    given::<Lead>(initialized())
        .when(|l| l.update_contact_details("Casey", "Davis", "  "))
        .then_error(LeadError::Empty("phone number"));
}

#[test]
fn a_lead_awaiting_payment_can_still_be_called_and_updated() {
    let on = t("2020-05-28T09:00:00Z");
    given::<Lead>((initialized(), contacted(), ordered()))
        .when(Lead::contact)
        .then(Contacted {});
    given::<Lead>((initialized(), contacted(), ordered()))
        .when(|l| l.set_followup(on, now()))
        .then(FollowupSet { followup_on: on });
    given::<Lead>((initialized(), contacted(), ordered()))
        .when(|l| l.update_contact_details("Casey", "Davis", "555-8101"))
        .then(ContactDetailsUpdated {
            first_name: Personal::known("Casey".into()),
            last_name: Personal::known("Davis".into()),
            phone_number: Personal::known("555-8101".into()),
        });
}

// ── orders ──────────────────────────────────────────────────────────────

#[test]
fn submitting_an_order() {
    let deadline = t("2020-05-30T12:00:00Z");
    let lead = given::<Lead>((initialized(), contacted()))
        .when(|l| l.submit_order(deadline, now()))
        .then(OrderSubmitted {
            payment_deadline: deadline,
        });
    assert_eq!(lead.status, Status::AwaitingPayment { deadline });
}

#[test]
fn an_order_needs_a_contact_first() {
    given::<Lead>(initialized())
        .when(|l| l.submit_order(t("2020-05-30T12:00:00Z"), now()))
        .then_error(LeadError::NotContacted);
}

#[test]
fn an_order_is_not_submitted_twice() {
    given::<Lead>([initialized(), contacted(), ordered()])
        .when(|l| l.submit_order(t("2020-06-30T12:00:00Z"), now()))
        .then_error(LeadError::OrderPending {
            deadline: t("2020-05-30T12:00:00Z"),
        });
}

#[test]
fn a_payment_deadline_is_not_in_the_past() {
    let deadline = t("2020-05-20T11:59:59Z");
    given::<Lead>((initialized(), contacted()))
        .when(|l| l.submit_order(deadline, now()))
        .then_error(LeadError::DeadlineInPast {
            deadline,
            now: now(),
        });
}

// ── payments ────────────────────────────────────────────────────────────

#[test]
fn a_confirmed_payment_converts_the_lead() {
    let lead = given::<Lead>((initialized(), contacted(), ordered()))
        .when(|l| l.confirm_payment(t("2020-05-27T12:38:44Z")))
        .then(PaymentConfirmed {});
    assert_eq!(lead.status, Status::Converted);
}

#[test]
fn a_payment_is_confirmed_by_its_deadline_at_the_latest() {
    let deadline = t("2020-05-30T12:00:00Z");
    given::<Lead>((initialized(), contacted(), ordered()))
        .when(|l| l.confirm_payment(deadline))
        .then(PaymentConfirmed {});
    let late = t("2020-05-30T12:00:01Z");
    given::<Lead>((initialized(), contacted(), ordered()))
        .when(|l| l.confirm_payment(late))
        .then_error(LeadError::DeadlinePassed {
            deadline,
            now: late,
        });
}

#[test]
fn a_payment_needs_an_order() {
    given::<Lead>((initialized(), contacted()))
        .when(|l| l.confirm_payment(now()))
        .then_error(LeadError::NoOrder);
    given::<Lead>((initialized(), contacted()))
        .when(Lead::fail_payment)
        .then_error(LeadError::NoOrder);
}

#[test]
fn a_failed_payment_voids_the_order_and_reopens_the_lead() {
    let lead = given::<Lead>((initialized(), contacted(), ordered()))
        .when(Lead::fail_payment)
        .then(PaymentFailed {});
    assert_eq!(lead.status, Status::Open);
    // A new order may follow; the voided one cannot be paid.
    let deadline = t("2020-06-30T12:00:00Z");
    given::<Lead>((initialized(), contacted(), ordered(), PaymentFailed {}))
        .when(|l| l.submit_order(deadline, now()))
        .then(OrderSubmitted {
            payment_deadline: deadline,
        });
    given::<Lead>((initialized(), contacted(), ordered(), PaymentFailed {}))
        .when(|l| l.confirm_payment(now()))
        .then_error(LeadError::NoOrder);
}

// ── closing ─────────────────────────────────────────────────────────────

#[test]
fn giving_a_lead_up() {
    let lead = given::<Lead>((initialized(), contacted()))
        .when(|l| l.close("not interested"))
        .then(LeadClosed {
            reason: "not interested".into(),
        });
    assert_eq!(lead.status, Status::Closed);
}

#[test]
fn closing_needs_a_reason() {
    given::<Lead>(initialized())
        .when(|l| l.close(" "))
        .then_error(LeadError::Empty("reason"));
}

#[test]
fn a_lead_awaiting_payment_is_not_given_up() {
    given::<Lead>((initialized(), contacted(), ordered()))
        .when(|l| l.close("changed their mind"))
        .then_error(LeadError::OrderPending {
            deadline: t("2020-05-30T12:00:00Z"),
        });
}

// ── nothing after conversion or closing ─────────────────────────────────

/// A command, its event as the aggregate's event enum.
type AnyCommand<'a> = &'a dyn Fn(&Lead) -> Result<LeadEvent, LeadError>;

/// Every command, on `events`, is refused with `expected`.
fn everything_refused(events: &[LeadEvent], expected: &LeadError) {
    let later = t("2020-06-01T00:00:00Z");
    let commands: [AnyCommand<'_>; 8] = [
        &|l| l.initialize("Casey", "Davis", "555-8101").map(Into::into),
        &|l| l.contact().map(Into::into),
        &|l| l.set_followup(later, now()).map(Into::into),
        &|l| l.update_contact_details("C", "D", "1").map(Into::into),
        &|l| l.submit_order(later, now()).map(Into::into),
        &|l| l.confirm_payment(now()).map(Into::into),
        &|l| l.fail_payment().map(Into::into),
        &|l| l.close("again").map(Into::into),
    ];
    for (n, command) in commands.iter().enumerate() {
        let outcome = given::<Lead>(events.to_vec())
            .when(|l| command(l))
            .outcome();
        let error = outcome.expect_err("a final lead refuses every command");
        if n == 0 {
            assert_eq!(error, LeadError::AlreadyInitialized);
        } else {
            assert_eq!(&error, expected, "command {n}");
        }
    }
}

#[test]
fn a_converted_lead_refuses_everything() {
    everything_refused(&converted(), &LeadError::Converted);
    given::<Lead>(converted())
        .when(Lead::contact)
        .then_error(LeadError::Converted);
}

#[test]
fn a_closed_lead_refuses_everything() {
    everything_refused(&closed(), &LeadError::Closed);
    given::<Lead>(closed())
        .when(|l| l.close("again"))
        .then_error(LeadError::Closed);
}

// ── the seed ────────────────────────────────────────────────────────────

/// The seed's timestamps, in order.
const SEED_TIMES: [&str; 7] = [
    "2020-05-20T09:52:55.95Z",
    "2020-05-20T12:32:08.24Z",
    "2020-05-20T12:32:08.24Z",
    "2020-05-20T12:32:08.24Z",
    "2020-05-27T12:02:12.51Z",
    "2020-05-27T12:02:12.51Z",
    "2020-05-27T12:38:44.12Z",
];

#[test]
fn the_seed_parses_as_printed_with_davis_corrected() {
    let events = seed::lead_12().unwrap();
    assert_eq!(events.len(), 7);
    for (n, e) in events.iter().enumerate() {
        assert_eq!((e.lead_id, e.event_id), (12, n as u64));
        assert_eq!(e.timestamp, t(SEED_TIMES[n]));
    }
    let types: Vec<_> = events.iter().map(|e| e.fact.event_type()).collect();
    assert_eq!(
        types,
        [
            "lead-initialized",
            "contacted",
            "followup-set",
            "contact-details-updated",
            "contacted",
            "order-submitted",
            "payment-confirmed"
        ]
    );
    assert!(matches!(
        &events[0].fact,
        SeedFact::LeadInitialized { first_name, last_name, phone_number }
            if (first_name.as_str(), last_name.as_str(), phone_number.as_str())
                == ("Casey", "David", "555-2951")
    ));
    // The one correction (seed/README.md): "Davis", as the seed's search
    // model and prose have it.
    assert!(matches!(
        &events[3].fact,
        SeedFact::ContactDetailsUpdated { first_name, last_name, phone_number }
            if (first_name.as_str(), last_name.as_str(), phone_number.as_str())
                == ("Casey", "Davis", "555-8101")
    ));
    assert_eq!(
        events[2].fact,
        SeedFact::FollowupSet {
            followup_on: t("2020-05-27T12:00:00Z")
        }
    );
    assert_eq!(
        events[5].fact,
        SeedFact::OrderSubmitted {
            payment_deadline: t("2020-05-30T12:02:12.51Z")
        }
    );
    assert_eq!(
        events[6].fact,
        SeedFact::PaymentConfirmed {
            status: "converted".into()
        }
    );
}

/// Imports lead 12 and checks what the store holds, on any store.
async fn import_and_check<S: EventStore + SnapshotStore>(store: S) {
    let leads = Repository::<Lead, _>::new(store);
    let before = Timestamp::now();
    let imported = seed::import(&leads, "12").await.unwrap();
    assert_eq!(imported.version, 7);
    assert_eq!(imported.status, Status::Converted);

    let trail = leads.history("12").await.unwrap();
    assert_eq!(trail.len(), 7);
    assert_eq!(trail[0].stream_id.as_str(), "lead-12");
    for (n, e) in trail.iter().enumerate() {
        assert_eq!(e.version, n as u64 + 1);
        assert_eq!(e.occurred_at, t(SEED_TIMES[n]), "event {n}");
        assert!(e.recorded_at >= before && e.recorded_at > e.occurred_at);
        assert_eq!(e.metadata.actor.as_deref(), Some("import"));
        assert_eq!(e.metadata.reason.as_deref(), Some("seed 004"));
        assert!(!e.event.is_undecodable());
    }
    let names: Vec<_> = trail.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "lead-initialized",
            "contacted",
            "followup-set",
            "contact-details-updated",
            "contacted",
            "order-submitted",
            "payment-confirmed"
        ]
    );
    assert_eq!(trail[0].metadata.command.as_deref(), Some("initialize"));
    assert_eq!(
        trail[3].event.event(),
        Some(&LeadEvent::from(ContactDetailsUpdated {
            first_name: Personal::known("Casey".into()),
            last_name: Personal::known("Davis".into()),
            phone_number: Personal::known("555-8101".into()),
        }))
    );

    // Business time: what had happened by then.
    let cases = [
        ("2020-05-20T09:00:00Z", 0, Status::Uninitialized),
        ("2020-05-20T09:52:55.95Z", 1, Status::Open),
        ("2020-05-20T12:00:00Z", 1, Status::Open),
        ("2020-05-20T12:32:08.24Z", 4, Status::Open),
        ("2020-05-25T00:00:00Z", 4, Status::Open),
        ("2020-05-27T12:02:12.50Z", 4, Status::Open),
        (
            "2020-05-27T12:10:00Z",
            6,
            Status::AwaitingPayment {
                deadline: t("2020-05-30T12:02:12.51Z"),
            },
        ),
        ("2020-05-27T12:38:44.12Z", 7, Status::Converted),
        ("2030-01-01T00:00:00Z", 7, Status::Converted),
    ];
    for (at, version, status) in cases {
        let then = leads.load_as_of("12", AsOf::Occurred(t(at))).await.unwrap();
        assert_eq!((then.version, then.status), (version, status), "as of {at}");
    }
    let on_the_25th = leads
        .load_as_of("12", AsOf::Occurred(t("2020-05-25T00:00:00Z")))
        .await
        .unwrap();
    assert!(on_the_25th.contacted);

    // Recorded time: the store knew nothing of it in 2020, all of it now.
    let known = leads
        .load_as_of("12", AsOf::Recorded(t("2020-05-25T00:00:00Z")))
        .await
        .unwrap();
    assert!(!known.exists());
    let known = leads
        .load_as_of("12", AsOf::Recorded(trail[6].recorded_at))
        .await
        .unwrap();
    assert_eq!(known.version, 7);

    // A second import is refused by the rules, and appends nothing.
    let again = seed::import(&leads, "12").await;
    assert!(
        matches!(
            again,
            Err(ImportError::Rejected {
                event_id: 0,
                event_type: "lead-initialized",
                error: LeadError::AlreadyInitialized
            })
        ),
        "{again:?}"
    );
    assert_eq!(leads.load("12").await.unwrap().version, 7);
}

#[tokio::test]
async fn the_seed_imports_on_the_in_memory_store() {
    import_and_check(InMemoryStore::new()).await;
}

#[tokio::test]
async fn the_seed_imports_on_sqlite() {
    import_and_check(es_sqlite::SqliteStore::open_temporary().unwrap()).await;
}

#[tokio::test]
async fn an_import_stops_at_the_first_event_the_rules_refuse() {
    let leads = Repository::<Lead, _>::new(InMemoryStore::new());
    let mut events: Vec<SeedEvent> = seed::lead_12().unwrap();
    // The follow-up is set a week before the call that sets it.
    events[2].fact = SeedFact::FollowupSet {
        followup_on: t("2020-05-13T12:00:00Z"),
    };
    let outcome = seed::import_events(&leads, "12", &events).await;
    assert!(
        matches!(
            outcome,
            Err(ImportError::Rejected {
                event_id: 2,
                event_type: "followup-set",
                error: LeadError::FollowupInPast { .. }
            })
        ),
        "{outcome:?}"
    );
    assert_eq!(leads.load("12").await.unwrap().version, 2);

    let leads = Repository::<Lead, _>::new(InMemoryStore::new());
    let mut events = seed::lead_12().unwrap();
    events[6].fact = SeedFact::PaymentConfirmed {
        status: "pending".into(),
    };
    let outcome = seed::import_events(&leads, "12", &events).await;
    assert!(
        matches!(outcome, Err(ImportError::Status { event_id: 6, .. })),
        "{outcome:?}"
    );
    assert_eq!(leads.load("12").await.unwrap().version, 6);
}

// ── the command line ────────────────────────────────────────────────────

/// Runs the `leads` binary on `db` with `args`: (success, stdout, stderr).
fn run(db: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leads"))
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("the leads binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_command_line_imports_lead_12_once_and_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");

    let (ok, out, err) = run(&db, &["demo"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("imported through the rules (version 7)"),
        "{out}"
    );
    assert!(out.contains("status:    converted"), "{out}");
    assert!(out.contains("Casey Davis, 555-8101"), "{out}");
    // Both times in the history.
    assert!(
        out.contains("occurred at") && out.contains("recorded at"),
        "{out}"
    );
    assert!(out.contains("2020-05-27T12:38:44.120000Z"), "{out}");
    assert!(out.contains("payment-confirmed@v1"), "{out}");

    // Run again: the lead is kept, not imported twice.
    let (ok, out, err) = run(&db, &[]);
    assert!(ok, "{err}");
    assert!(out.contains("already in the store"), "{out}");
    assert!(out.contains("lead 12 at version 7"), "{out}");

    let (ok, out, err) = run(&db, &["show", "12"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("lead 12 at version 7") && out.contains("status:    converted"),
        "{out}"
    );
    let (ok, out, err) = run(&db, &["show", "12", "--at-version", "1"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("at version 1") && out.contains("contacted: not yet"),
        "{out}"
    );
    let (ok, out, err) = run(
        &db,
        &[
            "show",
            "12",
            "--as-of",
            "2020-05-27T12:10:00Z",
            "--occurred",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("at version 6") && out.contains("awaiting payment"),
        "{out}"
    );
    let (ok, out, err) = run(&db, &["show", "12", "--as-of", "2020-05-27T12:10:00Z"]);
    assert!(ok, "{err}");
    assert!(out.contains("no such lead"), "recorded time: {out}");
    let (ok, _, err) = run(&db, &["show", "12", "--occurred"]);
    assert!(!ok, "--occurred needs --as-of");
    assert!(err.contains("--as-of"), "{err}");

    let (ok, out, err) = run(&db, &["history", "12"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 8, "a header and seven events: {out}");
    assert!(out.contains("Casey David, 555-2951"), "{out}");
    assert!(out.contains("(why: seed 004)"), "{out}");
}
