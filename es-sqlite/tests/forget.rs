//! RELIABILITY S3 on SQLite: after `forget` a raw byte scan of the events
//! file, its `-wal` and `-shm`, and the key file finds none of the
//! subject's key material nor the canary strings planted in its personal
//! fields; the fields read as forgotten and everything else as before; a
//! wrong key-encryption key is a typed error at open.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use std::path::{Path, PathBuf};

use es_core::blocking::{Repository, block_on};
use es_core::prelude::*;
use es_core::privacy::{KeyEncryptionKey, KeyStore, PrivacyError};
use es_core::{Error, NewEvent};
use es_sqlite::{OpenError, SqliteKeyStore, SqliteStore};
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "member-joined")]
pub struct Joined {
    pub plan: String,
    pub name: Personal<String>,
    pub email: Personal<String>,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "member-referred")]
pub struct Referred {
    pub friend_id: String,
    #[personal(subject = friend_id)]
    pub friend_email: Personal<String>,
}

#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[aggregate(name = "member", events(Joined, Referred), snapshot(every = 1))]
pub struct Member {
    pub plan: String,
    pub name: Option<Personal<String>>,
    pub email: Option<Personal<String>>,
    pub friends: Vec<Personal<String>>,
}

impl Apply<Joined> for Member {
    fn apply(&mut self, e: &Joined) {
        self.plan.clone_from(&e.plan);
        self.name = Some(e.name.clone());
        self.email = Some(e.email.clone());
    }
}
impl Apply<Referred> for Member {
    fn apply(&mut self, e: &Referred) {
        self.friends.push(e.friend_email.clone());
    }
}

const CANARIES: [&str; 3] = [
    "Canary-Name-5b1e",
    "canary-5b1e@example.com",
    "friend-canary-5b1e@example.com",
];

/// Every file of the store: the events file, its `-wal` and `-shm`, and
/// the key file.
fn files(db: &Path) -> Vec<PathBuf> {
    ["", "-wal", "-shm", ".keys"]
        .iter()
        .map(|suffix| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        })
        .filter(|p| p.exists())
        .collect()
}

/// How many times `needle` occurs in the files of the store.
fn occurrences(db: &Path, needle: &[u8]) -> usize {
    files(db)
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).unwrap();
            bytes.windows(needle.len()).filter(|w| *w == needle).count()
        })
        .sum()
}

fn open(db: &Path, kek: &KeyEncryptionKey) -> SqliteStore {
    SqliteStore::options()
        .personal_data(kek.clone())
        .open(db)
        .unwrap()
}

#[test]
fn s3_after_forget_no_key_material_nor_personal_data_remains_in_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("members.db");
    let kek = KeyEncryptionKey::generate();
    let store = open(&db, &kek);
    let members = Repository::<Member, _>::new(store.clone());
    members
        .execute("7", |_| Joined {
            plan: "gold".into(),
            name: Personal::known(CANARIES[0].into()),
            email: Personal::known(CANARIES[1].into()),
        })
        .unwrap();
    members
        .execute("7", |_| Referred {
            friend_id: "member-8".into(),
            friend_email: Personal::known(CANARIES[2].into()),
        })
        .unwrap();
    // A load takes a snapshot (every version): decrypted state in the file.
    members.load("7").unwrap();
    block_on(store.flush()).unwrap();
    assert!(
        block_on(store.load_snapshot(&StreamId::new("member-7").unwrap()))
            .unwrap()
            .is_some()
    );

    // The subject's keys, raw and wrapped, as an attacker would look for them.
    let keys = SqliteKeyStore::open(dir.path().join("members.db.keys"), kek.clone()).unwrap();
    let data_key = *keys.current_key("member-7").unwrap().bytes();
    let friend_key = *keys.current_key("member-8").unwrap().bytes();
    drop(keys);
    let wrapped: Vec<Vec<u8>> = {
        let conn = rusqlite::Connection::open(dir.path().join("members.db.keys")).unwrap();
        let mut st = conn.prepare("SELECT wrapped FROM data_keys").unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(wrapped.len(), 2);

    // Before: the events hold no plaintext, but the snapshot does, and the
    // key file holds the wrapped keys (the scan finds what is there).
    assert_eq!(
        occurrences(&db, &data_key),
        0,
        "data keys are only stored wrapped"
    );
    assert!(
        occurrences(&db, CANARIES[0].as_bytes()) > 0,
        "the snapshot holds it"
    );
    assert!(occurrences(&db, &wrapped[0]) > 0);
    let sealed = block_on(async {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.query_row(
            "SELECT count(*) FROM events WHERE payload LIKE '%canary%' OR payload LIKE '%Canary%'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    });
    assert_eq!(sealed, 0, "no event row holds a canary");

    let forgotten = members.forget("member-7").unwrap();
    assert_eq!(forgotten.keys_destroyed, 1);
    assert!(forgotten.snapshots_deleted >= 1);
    members.forget("member-8").unwrap();

    for (what, needle) in [
        ("the member's data key", &data_key[..]),
        ("the friend's data key", &friend_key[..]),
        ("a wrapped key", &wrapped[0][..]),
        ("a wrapped key", &wrapped[1][..]),
        ("a canary", CANARIES[0].as_bytes()),
        ("a canary", CANARIES[1].as_bytes()),
        ("a canary", CANARIES[2].as_bytes()),
    ] {
        assert_eq!(
            occurrences(&db, needle),
            0,
            "{what} remains in {:?}",
            files(&db)
        );
    }

    // Forgotten fields read as such, everything else as before; a load
    // after it takes a snapshot without them.
    let member = members.load("7").unwrap();
    assert_eq!(member.version, 2);
    assert_eq!(member.state.plan, "gold");
    assert_eq!(member.state.name, Some(Personal::Forgotten));
    assert_eq!(member.state.email, Some(Personal::Forgotten));
    assert_eq!(member.state.friends, vec![Personal::Forgotten]);

    // And so after the store closes and opens again.
    drop(members);
    drop(store);
    for needle in CANARIES {
        assert_eq!(occurrences(&db, needle.as_bytes()), 0);
    }
    let store = open(&db, &kek);
    let members = Repository::<Member, _>::new(store);
    assert_eq!(
        members.load("7").unwrap().state.name,
        Some(Personal::Forgotten)
    );
}

#[test]
fn s3_a_wrong_key_encryption_key_is_a_typed_error_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("members.db");
    let kek = KeyEncryptionKey::generate();
    drop(open(&db, &kek));
    let wrong = SqliteStore::options()
        .personal_data(KeyEncryptionKey::generate())
        .open(&db);
    assert!(
        matches!(
            wrong,
            Err(OpenError::Keys {
                source: PrivacyError::WrongKey,
                ..
            })
        ),
        "{wrong:?}"
    );
    open(&db, &kek);
}

#[test]
fn s3_a_ciphertext_moved_to_another_event_fails_authentication_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("members.db");
    let store = open(&db, &KeyEncryptionKey::generate());
    let members = Repository::<Member, _>::new(store.clone());
    members
        .execute("7", |_| Joined {
            plan: "gold".into(),
            name: Personal::known(CANARIES[0].into()),
            email: Personal::known(CANARIES[1].into()),
        })
        .unwrap();
    let stored: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT payload FROM events", [], |r| r.get(0))
        .unwrap();
    let copy = NewEvent::new("member", "member-joined", 1, stored);
    block_on(store.append(
        &StreamId::new("member-9").unwrap(),
        ExpectedVersion::NoStream,
        vec![copy],
    ))
    .unwrap();
    let err = members.load("9").unwrap_err();
    assert!(
        matches!(err, Error::Privacy(PrivacyError::Authentication { .. })),
        "{err:?}"
    );
    assert_eq!(members.load("7").unwrap().state.plan, "gold");
}
