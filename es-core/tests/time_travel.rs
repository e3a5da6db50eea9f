//! Time travel on `InMemoryStore`: the history between two versions, and
//! the diff of the state between two versions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use es_core::blocking;
use es_core::diff::Change;
use es_core::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "item-added")]
struct ItemAdded {
    item: String,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "renamed")]
struct Renamed {
    name: String,
}

#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "cart", events(ItemAdded, Renamed), snapshot(every = 2))]
struct Cart {
    name: String,
    items: Vec<String>,
}

impl Apply<ItemAdded> for Cart {
    fn apply(&mut self, e: &ItemAdded) {
        self.items.push(e.item.clone());
    }
}

impl Apply<Renamed> for Cart {
    fn apply(&mut self, e: &Renamed) {
        self.name.clone_from(&e.name);
    }
}

/// `c-1`: renamed "one" (v1), items a..e (v2..=v6), renamed "two" (v7).
fn cart() -> blocking::Repository<Cart, InMemoryStore> {
    let carts = blocking::Repository::<Cart, _>::new(InMemoryStore::new());
    carts
        .execute("c-1", |_| Renamed { name: "one".into() })
        .unwrap();
    for item in ["a", "b", "c", "d", "e"] {
        carts
            .execute("c-1", |_| ItemAdded { item: item.into() })
            .unwrap();
    }
    carts
        .execute("c-1", |_| Renamed { name: "two".into() })
        .unwrap();
    carts
}

fn versions(history: &[Envelope<Decoded<CartEvent>>]) -> Vec<u64> {
    history.iter().map(|e| e.version).collect()
}

#[test]
fn the_history_between_two_versions() {
    let carts = cart();
    assert_eq!(
        versions(&carts.history_between("c-1", 3..=6).unwrap()),
        [3, 4, 5, 6]
    );
    assert_eq!(
        versions(&carts.history_between("c-1", ..=2).unwrap()),
        [1, 2]
    );
    assert_eq!(
        versions(&carts.history_between("c-1", 6..).unwrap()),
        [6, 7]
    );
    assert_eq!(
        versions(&carts.history_between("c-1", 0..=1).unwrap()),
        [1],
        "version 0 holds no event"
    );
    assert_eq!(
        carts.history_between("c-1", ..).unwrap(),
        carts.history("c-1").unwrap()
    );
    let reversed = es_core::ReadRange {
        start: 6,
        end: Some(3),
    };
    assert!(carts.history_between("c-1", reversed).unwrap().is_empty());
    assert!(carts.history_between("c-1", 8..).unwrap().is_empty());
    assert!(carts.history_between("c-2", 1..=3).unwrap().is_empty());
    let between = carts.history_between("c-1", 7..=7).unwrap();
    assert_eq!(
        between[0].event.event(),
        Some(&Renamed { name: "two".into() }.into())
    );
    assert!(matches!(
        carts.history_between("", 1..=2),
        Err(es_core::Error::InvalidStreamId(_))
    ));
}

#[test]
fn the_diff_of_the_state_between_two_versions() {
    let carts = cart();
    let diff = carts.diff("c-1", 3, 7).unwrap();
    assert_eq!((diff.from, diff.to), (3, 7));
    assert_eq!(
        diff.changes,
        [
            Change::added("/items/2", json!("c")),
            Change::added("/items/3", json!("d")),
            Change::added("/items/4", json!("e")),
            Change::changed("/name", json!("one"), json!("two")),
        ],
        "in key order"
    );
    assert_eq!(
        diff.to_string(),
        "v3 -> v7:\n  /items/2: nothing -> \"c\"\n  /items/3: nothing -> \"d\"\n  \
         /items/4: nothing -> \"e\"\n  /name: \"one\" -> \"two\""
    );
    // Backwards: the same places, the sides swapped.
    let back = carts.diff("c-1", 7, 3).unwrap();
    assert_eq!(back.changes[0], Change::removed("/items/2", json!("c")));

    assert!(carts.diff("c-1", 4, 4).unwrap().is_empty());
    assert_eq!(
        carts.diff("c-1", 4, 4).unwrap().to_string(),
        "v4 -> v4: no change"
    );
    // Past the end: the current state, and the version actually compared.
    let diff = carts.diff("c-1", 7, 100).unwrap();
    assert_eq!((diff.to, diff.changes.len()), (7, 0));
    // From nothing: everything the state holds.
    let diff = carts.diff("c-1", 0, 1).unwrap();
    assert_eq!(
        diff.changes,
        [Change::changed("/name", json!(""), json!("one"))]
    );
}

/// Snapshots (every 2 versions here) never change what time travel shows.
#[test]
fn snapshots_do_not_change_the_diff() {
    let carts = cart();
    let plain = blocking::Repository::<Cart, _>::new(carts.as_async().store().clone())
        .with_snapshots(false);
    for (from, to) in [(0, 7), (2, 5), (6, 7), (7, 1)] {
        assert_eq!(
            carts.diff("c-1", from, to).unwrap(),
            plain.diff("c-1", from, to).unwrap()
        );
    }
}
