//! User code that derives stays clean under strict lints: no warning comes
//! from the generated code.

#![deny(warnings, unused_qualifications, missing_docs, rust_2018_idioms)]
#![deny(clippy::all, clippy::pedantic)]
#![forbid(unsafe_code)]

use es_core::prelude::*;
use serde::{Deserialize, Serialize};

/// A documented event.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[event(name = "lint-happened")]
pub struct Happened {
    /// How many.
    pub count: u32,
}

/// A documented aggregate.
#[derive(Aggregate, Default, Debug, Serialize, Deserialize)]
#[aggregate(name = "lint", events(Happened), snapshot(every = 10))]
pub struct Lint {
    total: u64,
}

impl Apply<Happened> for Lint {
    fn apply(&mut self, event: &Happened) {
        self.total += u64::from(event.count);
    }
}

#[test]
fn strict_lints_hold() {
    let mut lint = Lint::default();
    lint.apply(&LintEvent::from(Happened { count: 2 }));
    assert_eq!(lint.total, 2);
}
