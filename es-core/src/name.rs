//! The one rule for stored names: event names and aggregate names.
//!
//! Names are stored with every event forever, become part of stream ids
//! (`ticket-42`) and are compared byte for byte, so they are kept to a small,
//! unambiguous alphabet: ASCII letters, digits, `-`, `_` and `.`, starting
//! with a letter, at most [`MAX_NAME_LEN`] bytes.
//!
//! The same `const fn` decides at compile time, for the names the derives
//! generate or are given (a bad name fails the build, on the user's token),
//! and at run time, for every event a store is asked to append.
//!
//! ```
//! use es_core::name::{NameError, check_name};
//!
//! assert_eq!(check_name("ticket-opened"), Ok(()));
//! assert_eq!(check_name(""), Err(NameError::Empty));
//! assert_eq!(check_name("ticket opened"), Err(NameError::InvalidCharacter { at: 6 }));
//! assert_eq!(check_name("1st"), Err(NameError::InvalidStart));
//! ```

/// The longest name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Why a text is not a valid name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("the name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("the name is {len} bytes long, over the limit of {MAX_NAME_LEN}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name does not start with an ASCII letter.
    #[error("the name does not start with an ASCII letter")]
    InvalidStart,
    /// The name holds a byte other than an ASCII letter, digit, `-`, `_` or `.`.
    #[error(
        "the name has a character other than ASCII letters, digits, `-`, `_` and `.` at byte {at}"
    )]
    InvalidCharacter {
        /// The byte offset of the first such character.
        at: usize,
    },
}

/// Checks `name` against the rule of this module.
///
/// # Errors
///
/// The first rule `name` breaks, as a [`NameError`].
pub const fn check_name(name: &str) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Err(NameError::Empty);
    }
    if bytes.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: bytes.len() });
    }
    if !bytes[0].is_ascii_alphabetic() {
        return Err(NameError::InvalidStart);
    }
    let mut at = 1;
    while at < bytes.len() {
        let b = bytes[at];
        if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
            return Err(NameError::InvalidCharacter { at });
        }
        at += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        for ok in [
            "a",
            "ticket-opened",
            "Ticket.Opened_v2",
            &"x".repeat(MAX_NAME_LEN),
        ] {
            assert_eq!(check_name(ok), Ok(()), "{ok:?}");
        }
        let cases = [
            ("", NameError::Empty),
            ("-a", NameError::InvalidStart),
            ("é", NameError::InvalidStart),
            ("ab c", NameError::InvalidCharacter { at: 2 }),
            ("a\0", NameError::InvalidCharacter { at: 1 }),
            ("aé", NameError::InvalidCharacter { at: 1 }),
        ];
        for (name, error) in cases {
            assert_eq!(check_name(name), Err(error), "{name:?}");
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            check_name(&long),
            Err(NameError::TooLong {
                len: MAX_NAME_LEN + 1
            })
        );
    }
}
