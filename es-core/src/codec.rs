//! The serde boundary: how events and snapshots become bytes and back.
//!
//! Payloads are JSON (`serde_json`), with its default recursion limit of 128
//! kept on, so a hostile or corrupt payload is a [`DecodeError`], never a
//! stack overflow. The derives call these functions; implement [`Event`] by
//! hand with them when a derive does not fit.

use std::cmp::Ordering;

use crate::aggregate::Aggregate;
use crate::event::{DecodeError, EncodeError, Event};
use crate::payload::Payload;

/// Encodes an event's payload.
///
/// # Errors
///
/// When the event does not serialize (a map with non-string keys, a
/// `Serialize` impl that fails).
///
/// Its [`Personal`](crate::Personal) fields are marked for the store to seal
/// (`{"$personal": value}`), with the subject each names
/// ([`Event::PERSONAL_SUBJECTS`]); see [`privacy`](crate::privacy).
pub fn encode<E: Event>(event: &E) -> Result<Payload, EncodeError> {
    let error = |source| EncodeError {
        name: E::NAME,
        source,
    };
    let json = crate::privacy::marking(|| serde_json::to_string(event)).map_err(error)?;
    if E::PERSONAL_SUBJECTS.is_empty() || !json.contains("\"$personal\"") {
        return Ok(Payload::from(json));
    }
    crate::privacy::attach_subjects(&json, E::PERSONAL_SUBJECTS)
        .map(Payload::from)
        .map_err(|reason| error(serde::ser::Error::custom(reason)))
}

/// Decodes a payload stored at exactly `E::VERSION`; other versions are errors.
///
/// # Errors
///
/// [`DecodeError::VersionTooNew`] or [`DecodeError::UnknownVersion`] for
/// another version; [`DecodeError::Payload`] when the payload does not match.
pub fn decode_exact<E: Event>(version: u32, payload: &str) -> Result<E, DecodeError> {
    match version.cmp(&E::VERSION) {
        Ordering::Equal => serde_json::from_str(payload).map_err(|source| DecodeError::Payload {
            name: E::NAME,
            version,
            source,
        }),
        Ordering::Greater => Err(DecodeError::VersionTooNew {
            name: E::NAME,
            version,
            known: E::VERSION,
        }),
        Ordering::Less => Err(DecodeError::UnknownVersion {
            name: E::NAME,
            version,
        }),
    }
}

/// Decodes a payload stored at `E::VERSION` or, through `P` (the previous
/// link of the upcast chain) and `From<P>`, at any older version.
///
/// Each link costs one comparison: the chain is resolved at compile time.
///
/// # Errors
///
/// As [`decode_exact`], for the link that holds `version`.
pub fn decode_upcast<E, P>(version: u32, payload: &str) -> Result<E, DecodeError>
where
    E: Event + From<P>,
    P: Event,
{
    if version == E::VERSION {
        decode_exact::<E>(version, payload)
    } else if version > E::VERSION {
        Err(DecodeError::VersionTooNew {
            name: E::NAME,
            version,
            known: E::VERSION,
        })
    } else if version > P::VERSION {
        // A gap in the chain (v1 -> v3 with v2 stored): nothing decodes it.
        Err(DecodeError::UnknownVersion {
            name: E::NAME,
            version,
        })
    } else {
        P::decode(version, payload).map(E::from)
    }
}

/// The versions `E` decodes when its previous link is `P`: `P`'s, then its own.
pub fn upcast_versions<E: Event, P: Event>() -> Vec<u32> {
    let mut versions = P::decodable_versions();
    versions.push(E::VERSION);
    versions
}

/// Encodes an aggregate's state for a snapshot.
///
/// # Errors
///
/// When the state does not serialize.
pub fn encode_snapshot<A>(state: &A) -> Result<Vec<u8>, EncodeError>
where
    A: Aggregate + serde::Serialize,
{
    serde_json::to_vec(state).map_err(|source| EncodeError {
        name: A::NAME,
        source,
    })
}

/// Decodes an aggregate's state from a snapshot.
///
/// # Errors
///
/// [`DecodeError::Snapshot`] when the bytes do not match the state type.
pub fn decode_snapshot<A>(bytes: &[u8]) -> Result<A, DecodeError>
where
    A: Aggregate + serde::de::DeserializeOwned,
{
    serde_json::from_slice(bytes).map_err(|source| DecodeError::Snapshot {
        aggregate: A::NAME,
        source,
    })
}
