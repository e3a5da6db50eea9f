//! The given/when/then kit reports a wrong expectation by panicking, with a
//! message that says what the decision did instead; each assertion is shown
//! to fail when it should (`should_panic`), and to pass when it should.

use es_core::prelude::*;
use es_core::testing::given;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Opened;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Noted {
    text: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Closed;

#[derive(Aggregate, Default, Debug, PartialEq)]
#[aggregate(name = "door", events(Opened, Noted, Closed))]
struct Door {
    open: bool,
    notes: usize,
}

impl Apply<Opened> for Door {
    fn apply(&mut self, _: &Opened) {
        self.open = true;
    }
}

impl Apply<Noted> for Door {
    fn apply(&mut self, _: &Noted) {
        self.notes += 1;
    }
}

impl Apply<Closed> for Door {
    fn apply(&mut self, _: &Closed) {
        self.open = false;
    }
}

impl Door {
    fn close(&self) -> Result<(Noted, Closed), &'static str> {
        if !self.open {
            return Err("the door is not open");
        }
        Ok((
            Noted {
                text: "closing".into(),
            },
            Closed,
        ))
    }
}

fn note(text: &str) -> Noted {
    Noted { text: text.into() }
}

#[test]
fn the_right_expectations_pass_and_give_the_state_after() {
    let state = given::<Door>(Opened)
        .when(Door::close)
        .then((note("closing"), Closed));
    assert_eq!(
        state,
        Door {
            open: false,
            notes: 1
        }
    );
    // Events given as one event, a tuple, an array, a `Vec`, or the enum.
    let state = given::<Door>((Opened, note("a"), note("b")))
        .when(|_| ())
        .then_nothing();
    assert_eq!(state.notes, 2);
    given::<Door>([note("a"), note("b")]).when(|_| ()).then(());
    given::<Door>(vec![DoorEvent::from(Opened), note("a").into()])
        .when(Door::close)
        .then([DoorEvent::from(note("closing")), Closed.into()]);
    given::<Door>(())
        .when(Door::close)
        .then_error("the door is not open");
    given::<Door>(())
        .when(Door::close)
        .then_error_matches(|e| e.contains("not open"));
}

#[test]
#[should_panic(expected = "the decision returned other events than expected")]
fn then_with_other_events_fails() {
    given::<Door>(Opened).when(Door::close).then(Closed);
}

#[test]
#[should_panic(expected = "but the decision refused")]
fn then_when_the_decision_refuses_fails() {
    given::<Door>(()).when(Door::close).then(Closed);
}

#[test]
#[should_panic(expected = "the decision returned other events than expected")]
fn then_nothing_when_events_came_fails() {
    given::<Door>(Opened).when(Door::close).then_nothing();
}

#[test]
#[should_panic(expected = "but the decision returned")]
fn then_error_when_events_came_fails() {
    given::<Door>(Opened)
        .when(Door::close)
        .then_error("the door is not open");
}

#[test]
#[should_panic(expected = "the decision refused with another error")]
fn then_error_with_another_error_fails() {
    given::<Door>(()).when(Door::close).then_error("locked");
}

#[test]
#[should_panic(expected = "does not match")]
fn then_error_matches_with_a_check_that_fails_fails() {
    given::<Door>(())
        .when(Door::close)
        .then_error_matches(|e| e.contains("locked"));
}
