//! Differences between two JSON values, place by place.
//!
//! What time travel shows between two versions of a state
//! ([`Repository::diff`](crate::Repository::diff)), and what the replay
//! check reports when a snapshot drifted from its events
//! ([`verify`](crate::verify)): each place where the two values differ, as
//! a JSON pointer (RFC 6901) with the value on each side.
//!
//! ```
//! use es_core::diff::{Change, diff};
//! use serde_json::json;
//!
//! let before = json!({"status": "Open", "messages": 2, "tags": ["printer"]});
//! let after = json!({"status": "Closed", "messages": 2, "tags": ["printer", "fire"], "by": "agent-7"});
//! assert_eq!(
//!     diff(&before, &after),
//!     [
//!         Change::added("/by", json!("agent-7")),
//!         Change::changed("/status", json!("Open"), json!("Closed")),
//!         Change::added("/tags/1", json!("fire")),
//!     ]
//! );
//! assert_eq!(diff(&before, &after)[1].to_string(), r#"/status: "Open" -> "Closed""#);
//! assert!(diff(&before, &before).is_empty());
//! ```
//!
//! The rules:
//!
//! - Objects are compared key by key, in key order; a key on one side only
//!   is one change (`old` or `new` is `None`), whatever it holds.
//! - Arrays are compared index by index; the elements past the end of the
//!   shorter one are each a change at their index (added, or removed). An
//!   element inserted in the middle therefore shows as changes at every
//!   later index: the diff says what is at each place, not how to edit one
//!   into the other.
//! - Anything else (numbers, strings, booleans, null, or values of
//!   different kinds) is one change when the two differ.
//! - Keys are escaped as JSON pointers do (`~` as `~0`, `/` as `~1`); the
//!   whole value is the empty pointer `""`.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// One place where two JSON values differ.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Where: a JSON pointer (RFC 6901) into both values; `""` for the
    /// whole value. It resolves with [`Value::pointer`] in whichever of the
    /// two values has something there.
    pub path: String,
    /// What the first value holds there; `None`: nothing (the place was
    /// added).
    pub old: Option<Value>,
    /// What the second value holds there; `None`: nothing (the place was
    /// removed).
    pub new: Option<Value>,
}

impl Change {
    /// A place holding `old` in the first value and `new` in the second.
    pub fn changed(path: impl Into<String>, old: Value, new: Value) -> Self {
        Change {
            path: path.into(),
            old: Some(old),
            new: Some(new),
        }
    }

    /// A place only the second value has.
    pub fn added(path: impl Into<String>, new: Value) -> Self {
        Change {
            path: path.into(),
            old: None,
            new: Some(new),
        }
    }

    /// A place only the first value has.
    pub fn removed(path: impl Into<String>, old: Value) -> Self {
        Change {
            path: path.into(),
            old: Some(old),
            new: None,
        }
    }

    /// The path as shown: the pointer, or `/` for the whole value (the
    /// empty pointer reads as nothing).
    pub fn shown_path(&self) -> &str {
        if self.path.is_empty() {
            "/"
        } else {
            &self.path
        }
    }
}

/// `/status: "Open" -> "Closed"`; a side with nothing there reads
/// `nothing`.
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} -> {}",
            self.shown_path(),
            shown(self.old.as_ref()),
            shown(self.new.as_ref())
        )
    }
}

/// How an aggregate's state changed between two versions: made by
/// [`Repository::diff`](crate::Repository::diff).
#[derive(Debug, Clone, PartialEq)]
pub struct StateDiff {
    /// The version of the first state compared.
    pub from: u64,
    /// The version of the second.
    pub to: u64,
    /// Each place where they differ, in document order.
    pub changes: Vec<Change>,
}

impl StateDiff {
    /// Whether the two states are the same.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// `v3 -> v6:` then each change on a line of its own, indented; or
/// `v3 -> v6: no change`.
impl fmt::Display for StateDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{} -> v{}:", self.from, self.to)?;
        if self.changes.is_empty() {
            return f.write_str(" no change");
        }
        for change in &self.changes {
            write!(f, "\n  {change}")?;
        }
        Ok(())
    }
}

/// A value as JSON text, or `nothing`.
pub(crate) fn shown(value: Option<&Value>) -> String {
    value.map_or_else(|| "nothing".to_owned(), ToString::to_string)
}

/// Every place where `old` and `new` differ, in document order (object
/// keys sorted); empty when they are equal. See the [module](self) for the
/// rules.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut changes = Vec::new();
    walk(old, new, &mut String::new(), &mut changes);
    changes
}

/// [`diff`] of two values serialized to JSON (`serde_json::to_value`): the
/// places where two states differ.
///
/// ```
/// # use serde::Serialize;
/// #[derive(Serialize)]
/// struct Ticket { open: bool, messages: u32 }
///
/// let changes = es_core::diff::diff_serialized(
///     &Ticket { open: true, messages: 1 },
///     &Ticket { open: true, messages: 3 },
/// )?;
/// assert_eq!(changes.len(), 1);
/// assert_eq!(changes[0].to_string(), "/messages: 1 -> 3");
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// # Errors
///
/// When either value does not serialize to JSON (a map with keys that are
/// not strings, a `Serialize` impl that fails).
pub fn diff_serialized<T: Serialize + ?Sized>(
    old: &T,
    new: &T,
) -> Result<Vec<Change>, serde_json::Error> {
    Ok(diff(
        &serde_json::to_value(old)?,
        &serde_json::to_value(new)?,
    ))
}

fn walk(old: &Value, new: &Value, path: &mut String, out: &mut Vec<Change>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let len = path.len();
                path.push('/');
                path.push_str(&key.replace('~', "~0").replace('/', "~1"));
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => walk(x, y, path, out),
                    (x, y) => out.push(Change {
                        path: path.clone(),
                        old: x.cloned(),
                        new: y.cloned(),
                    }),
                }
                path.truncate(len);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                match (a.get(i), b.get(i)) {
                    (Some(x), Some(y)) => walk(x, y, path, out),
                    (x, y) => out.push(Change {
                        path: path.clone(),
                        old: x.cloned(),
                        new: y.cloned(),
                    }),
                }
                path.truncate(len);
            }
        }
        (a, b) if a != b => out.push(Change::changed(path.clone(), a.clone(), b.clone())),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn equal_values_have_no_changes() {
        let v = json!({"a": [1, {"b": null}], "c": "x"});
        assert!(diff(&v, &v).is_empty());
    }

    #[test]
    fn the_whole_value_is_the_empty_pointer() {
        let changes = diff(&json!(1), &json!("one"));
        assert_eq!(changes, [Change::changed("", json!(1), json!("one"))]);
        assert_eq!(changes[0].to_string(), r#"/: 1 -> "one""#);
        let changes = diff(&json!({"a": 1}), &json!([1]));
        assert_eq!(changes.len(), 1, "values of different kinds: one change");
    }

    #[test]
    fn keys_are_escaped_as_json_pointers() {
        let old = json!({"a/b": 1, "m~n": 2});
        let new = json!({"a/b": 3, "m~n": 2});
        let changes = diff(&old, &new);
        assert_eq!(changes, [Change::changed("/a~1b", json!(1), json!(3))]);
        assert_eq!(new.pointer(&changes[0].path), Some(&json!(3)));
    }

    #[test]
    fn arrays_compare_by_index_and_list_what_is_past_the_shorter_end() {
        let old = json!({"xs": [1, 2, 3]});
        let new = json!({"xs": [1, 5]});
        assert_eq!(
            diff(&old, &new),
            [
                Change::changed("/xs/1", json!(2), json!(5)),
                Change::removed("/xs/2", json!(3)),
            ]
        );
        assert_eq!(diff(&new, &old)[1], Change::added("/xs/2", json!(3)));
    }

    #[test]
    fn a_key_on_one_side_is_one_change_whatever_it_holds() {
        let changes = diff(&json!({}), &json!({"deep": {"a": [1, 2]}}));
        assert_eq!(
            changes,
            [Change::added("/deep", json!({"a": [1, 2]}))],
            "not one change per leaf"
        );
        assert_eq!(changes[0].to_string(), r#"/deep: nothing -> {"a":[1,2]}"#);
    }
}
