//! RELIABILITY T13: the history checker (`common/history.rs`) can fail.
//! Each test feeds it a history with one kind of violation and sees it
//! reported; a clean history of the same shape reports nothing; and a
//! history recorded from a real store checks clean.

// Test helpers panic to fail the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]
mod common;

use common::history::{
    Line, Op, Outcome, Recorded, Recorder, Seen, Write, Written, check, final_state,
};
use es_core::blocking::block_on;
use es_core::{EventStore, ExpectedVersion, NewEvent, StreamId, Uuid};
use es_sqlite::SqliteStore;

/// Builds a history by hand, with a clock that ticks once per line.
#[derive(Default)]
struct History {
    lines: Vec<Line>,
    clock: u64,
    next: u64,
}

impl History {
    fn tick(&mut self) -> u64 {
        self.clock += 10;
        self.clock
    }

    fn invoke(&mut self, session: &str, op: Op) -> u64 {
        self.next += 1;
        let at = self.tick();
        self.lines.push(Line::Invoke {
            session: session.to_owned(),
            id: self.next,
            at,
            op,
        });
        self.next
    }

    fn complete(&mut self, session: &str, id: u64, outcome: Outcome) {
        let at = self.tick();
        self.lines.push(Line::Complete {
            session: session.to_owned(),
            id,
            at,
            outcome,
        });
    }

    /// An operation invoked and completed at once.
    fn op(&mut self, session: &str, op: Op, outcome: Outcome) {
        let id = self.invoke(session, op);
        self.complete(session, id, outcome);
    }

    /// An append of `ids` to `stream`, told it got versions from `version`
    /// and positions from `position`.
    fn appended(&mut self, session: &str, stream: &str, ids: &[u128], version: u64, position: u64) {
        self.op(
            session,
            append(stream, ids),
            Outcome::Appended(vec![Written {
                stream: stream.to_owned(),
                first_version: version,
                last_version: version + ids.len() as u64 - 1,
                first_position: Some(position),
                repeated: false,
            }]),
        );
    }

    fn kinds(&self, all: &[Seen]) -> Vec<&'static str> {
        check(&self.lines, all)
            .violations
            .iter()
            .map(common::history::Violation::kind)
            .collect()
    }
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn append(stream: &str, ids: &[u128]) -> Op {
    Op::Append(vec![Write {
        stream: stream.to_owned(),
        expected: "any version".to_owned(),
        ids: ids.iter().map(|n| id(*n)).collect(),
    }])
}

fn seen(stream: &str, version: u64, position: u64, n: u128) -> Seen {
    Seen {
        stream: stream.to_owned(),
        version,
        position: Some(position),
        id: Some(id(n)),
    }
}

fn read(events: Vec<Seen>) -> Outcome {
    Outcome::Read {
        events,
        whole: true,
    }
}

fn read_a(from: u64) -> Op {
    Op::ReadStream {
        stream: "a".to_owned(),
        from,
        to: None,
    }
}

/// The final state of most cases: `a` 1..=2 (one append), then `b` 1.
fn final_state_ab() -> Vec<Seen> {
    vec![seen("a", 1, 1, 1), seen("a", 2, 2, 2), seen("b", 1, 3, 3)]
}

/// The clean history the bad ones are variations of.
fn clean() -> History {
    let mut h = History::default();
    h.appended("s1", "a", &[1, 2], 1, 1);
    h.op(
        "s2",
        read_a(1),
        read(vec![seen("a", 1, 1, 1), seen("a", 2, 2, 2)]),
    );
    h.appended("s2", "b", &[3], 1, 3);
    h.op(
        "s1",
        Op::ReadAll { from: 2 },
        read(vec![seen("a", 2, 2, 2), seen("b", 1, 3, 3)]),
    );
    h.op(
        "s1",
        Op::Version {
            stream: "a".to_owned(),
        },
        Outcome::Number(2),
    );
    h.op(
        "s2",
        append("a", &[9]),
        Outcome::Conflict {
            stream: "a".to_owned(),
            actual: 2,
        },
    );
    h
}

#[test]
fn t13_a_clean_history_has_no_violation() {
    let report = check(&clean().lines, &final_state_ab());
    report.assert_clean("the clean history");
    assert_eq!(
        (report.operations, report.appends, report.events),
        (6, 3, 3)
    );
}

#[test]
fn t13_a_stream_read_that_is_not_a_prefix() {
    let mut h = clean();
    h.op("s3", read_a(1), read(vec![seen("a", 1, 1, 2)]));
    assert!(
        h.kinds(&final_state_ab())
            .contains(&"stream read not a prefix")
    );
    let mut h = clean();
    h.op(
        "s3",
        read_a(2),
        read(vec![seen("a", 2, 2, 2), seen("a", 3, 4, 7)]),
    );
    assert!(
        h.kinds(&final_state_ab())
            .contains(&"stream read not a prefix")
    );
}

#[test]
fn t13_an_all_read_that_is_not_a_prefix() {
    let mut h = clean();
    // Skips position 2.
    h.op(
        "s3",
        Op::ReadAll { from: 1 },
        read(vec![seen("a", 1, 1, 1), seen("b", 1, 3, 3)]),
    );
    assert!(
        h.kinds(&final_state_ab())
            .contains(&"$all read not a prefix")
    );
}

#[test]
fn t13_a_read_that_sees_a_failed_append() {
    let mut h = clean();
    h.op("s3", append("c", &[5]), Outcome::Failed("busy".to_owned()));
    h.op(
        "s3",
        Op::ReadStream {
            stream: "c".to_owned(),
            from: 1,
            to: None,
        },
        read(vec![seen("c", 1, 4, 5)]),
    );
    assert!(
        h.kinds(&final_state_ab())
            .contains(&"read saw a failed append")
    );
}

#[test]
fn t13_a_failed_append_that_is_stored() {
    let mut h = clean();
    h.op("s3", append("c", &[5]), Outcome::Failed("busy".to_owned()));
    let mut all = final_state_ab();
    all.push(seen("c", 1, 4, 5));
    assert!(h.kinds(&all).contains(&"failed append stored"));
}

#[test]
fn t13_an_acknowledged_append_that_is_lost_or_moved() {
    let mut h = clean();
    h.appended("s3", "c", &[5], 1, 4);
    assert!(
        h.kinds(&final_state_ab())
            .contains(&"acknowledged append lost")
    );
    let mut all = final_state_ab();
    all.push(seen("c", 1, 5, 5));
    assert!(h.kinds(&all).contains(&"acknowledged append lost"));
}

#[test]
fn t13_an_append_partly_stored_or_partly_seen() {
    // In flight at a crash: half of it is stored.
    let mut h = clean();
    h.invoke("s3", append("c", &[5, 6]));
    let mut all = final_state_ab();
    all.push(seen("c", 1, 4, 5));
    assert!(h.kinds(&all).contains(&"partial append"));
    // A read that ends inside an append.
    let mut h = clean();
    h.op("s3", read_a(1), read(vec![seen("a", 1, 1, 1)]));
    assert!(h.kinds(&final_state_ab()).contains(&"partial append"));
    let mut h = clean();
    h.op(
        "s3",
        Op::ReadAll { from: 1 },
        read(vec![seen("a", 1, 1, 1)]),
    );
    assert!(h.kinds(&final_state_ab()).contains(&"partial append"));
}

#[test]
fn t13_a_session_that_reads_less_than_it_saw() {
    let mut all = final_state_ab();
    all.push(seen("a", 3, 4, 4));
    let mut h = clean();
    h.appended("s3", "a", &[4], 3, 4);
    // s3 wrote version 3, then reads `a` to version 2 (a prefix, so only
    // monotonicity is broken).
    h.op(
        "s3",
        read_a(1),
        read(vec![seen("a", 1, 1, 1), seen("a", 2, 2, 2)]),
    );
    assert_eq!(h.kinds(&all), ["not monotonic"]);
    // Positions too: s1 saw position 3, then $all stops at 2.
    let mut h = clean();
    h.op(
        "s1",
        Op::ReadAll { from: 1 },
        read(vec![seen("a", 1, 1, 1), seen("a", 2, 2, 2)]),
    );
    assert_eq!(h.kinds(&final_state_ab()), ["not monotonic"]);
}

#[test]
fn t13_a_conflict_or_version_that_was_never_visible() {
    // Version 1 of `a` is inside the append of versions 1 and 2.
    let mut h = clean();
    h.op(
        "s3",
        append("a", &[8]),
        Outcome::Conflict {
            stream: "a".to_owned(),
            actual: 1,
        },
    );
    assert!(h.kinds(&final_state_ab()).contains(&"version not visible"));
    // Version 5 was never reached.
    let mut h = clean();
    h.op(
        "s3",
        Op::Version {
            stream: "a".to_owned(),
        },
        Outcome::Number(5),
    );
    assert!(h.kinds(&final_state_ab()).contains(&"version not visible"));
    // Version 3 is stored by an append invoked after the conflict was
    // reported.
    let mut h = clean();
    h.op(
        "s3",
        append("a", &[8]),
        Outcome::Conflict {
            stream: "a".to_owned(),
            actual: 3,
        },
    );
    h.appended("s4", "a", &[4], 3, 4);
    let mut all = final_state_ab();
    all.push(seen("a", 3, 4, 4));
    assert!(h.kinds(&all).contains(&"version not visible"));
}

#[test]
fn t13_a_position_filled_in_late() {
    // s1 saw positions 1 and 3; an append invoked afterwards stored its
    // event at position 2, below what s1 saw: a gap filled in late.
    let mut h = History::default();
    h.appended("s1", "a", &[1], 1, 1);
    h.appended("s1", "b", &[3], 1, 3);
    h.op(
        "s1",
        Op::ReadAll { from: 1 },
        read(vec![seen("a", 1, 1, 1), seen("b", 1, 3, 3)]),
    );
    h.appended("s2", "c", &[4], 1, 2);
    let all = vec![seen("a", 1, 1, 1), seen("c", 1, 2, 4), seen("b", 1, 3, 3)];
    assert!(h.kinds(&all).contains(&"late fill"));
}

#[test]
fn t13_an_event_no_append_carried() {
    let h = clean();
    let mut all = final_state_ab();
    all.push(seen("z", 1, 4, 77));
    assert_eq!(h.kinds(&all), ["unattempted event stored"]);
}

#[test]
fn t13_a_malformed_history() {
    let mut h = clean();
    h.complete("s9", 999, Outcome::Number(0));
    assert_eq!(h.kinds(&final_state_ab()), ["malformed"]);
}

/// What the wired tests record: a real store, sessions through the
/// helpers and through the recording store under a repository-like use
/// (reads, folds, versions, conflicts), checks clean; and tampering with
/// the final state is seen.
#[test]
fn t13_a_recorded_history_of_a_real_store_checks_clean() {
    let store = SqliteStore::open_temporary().unwrap();
    let (recorder, lines) = Recorder::memory();
    let stream = StreamId::new("r-1").unwrap();
    let a = recorder.session("a");
    let b = Recorded::new(store.clone(), recorder.session("b"));
    block_on(async {
        let e = || NewEvent::new("r", "e", 1, "{}");
        a.append(&store, &stream, ExpectedVersion::NoStream, vec![e(), e()])
            .await
            .unwrap();
        let stale = b
            .append(&stream, ExpectedVersion::Exact(1), vec![e()])
            .await;
        assert!(stale.is_err(), "a conflict");
        let v = b.stream_version(&stream).await.unwrap();
        b.append(&stream, ExpectedVersion::Exact(v), vec![e()])
            .await
            .unwrap();
        b.fold_stream(&stream, es_core::ReadRange::all(), |_| {
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .await
        .unwrap();
        a.read_stream(&store, &stream, 2).await.unwrap();
        a.read_all(&store, 1).await.unwrap();
        common::collect_ok(b.read_all(3)).await;
    });
    let lines = lines.lock().unwrap().clone();
    let all = block_on(final_state(&store));
    let report = check(&lines, &all);
    report.assert_clean("a recorded history");
    assert_eq!(
        (report.operations, report.appends, report.events),
        (8, 3, 3)
    );
    // The same history against a final state that lost the last append.
    let kinds: Vec<&str> = check(&lines, &all[..2])
        .violations
        .iter()
        .map(common::history::Violation::kind)
        .collect();
    assert!(kinds.contains(&"acknowledged append lost"), "{kinds:?}");
}
