//! RELIABILITY S3 on SQLite: after `forget` a raw byte scan of the events
//! file, its `-wal` and `-shm`, and the key file finds none of the
//! subject's key material nor the canary strings planted in its personal
//! fields; the fields read as forgotten and everything else as before; a
//! wrong key-encryption key is a typed error at open.
//!
//! And the read models: after `forget` and a catch-up, a raw byte scan of
//! every file of the read-model directory and of the events files finds
//! none of the subject's canaries while the other subject's are still
//! there, for a model rebuilt (the default), one whose hook deletes the
//! subject's rows, inline models of both kinds, and a read-model file of
//! the earlier format that missed a forgetting; a model that never took
//! personal data is not rebuilt.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use es_core::blocking::{Repository, block_on};
use es_core::prelude::*;
use es_core::privacy::{KeyEncryptionKey, KeyStore, PrivacyError};
use es_core::{BoxError, Error, NewEvent};
use es_sqlite::rusqlite::Connection;
use es_sqlite::{Forgetting, OpenError, ReadModel, ReadModels, SqliteKeyStore, SqliteStore};
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

/// No personal data.
#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "member-renewed")]
pub struct Renewed {
    pub plan: String,
}

#[derive(Aggregate, Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[aggregate(
    name = "member",
    events(Joined, Referred, Renewed),
    snapshot(every = 1)
)]
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
impl Apply<Renewed> for Member {
    fn apply(&mut self, e: &Renewed) {
        self.plan.clone_from(&e.plan);
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

// ---------------------------------------------------------------------
// Read models.

/// The personal data of subject `member-7`: its name and e-mail (in its
/// stream), and the e-mail member 8 referred it with (in member 8's
/// stream, `#[personal(subject = friend_id)]`).
const SEVEN: [&str; 3] = [
    "Canary-Seven-7a1d",
    "canary-seven-7a1d@example.com",
    "friend-seven-7a1d@example.com",
];
/// The same of subject `member-8`, which is not forgotten.
const EIGHT: [&str; 3] = [
    "Canary-Eight-8c2f",
    "canary-eight-8c2f@example.com",
    "friend-eight-8c2f@example.com",
];

/// Members 7 and 8 joined, and referred each other.
fn members_of_two_subjects(members: &Repository<Member, SqliteStore>) -> u64 {
    for (id, canaries) in [("7", SEVEN), ("8", EIGHT)] {
        members
            .execute(id, |_| Joined {
                plan: "gold".into(),
                name: Personal::known(canaries[0].into()),
                email: Personal::known(canaries[1].into()),
            })
            .unwrap();
    }
    for (id, friend, canaries) in [("7", "member-8", EIGHT), ("8", "member-7", SEVEN)] {
        members
            .execute(id, |_| Referred {
                friend_id: friend.into(),
                friend_email: Personal::known(canaries[2].into()),
            })
            .unwrap();
    }
    let renewed = members
        .execute("8", |_| Renewed {
            plan: "platinum".into(),
        })
        .unwrap();
    renewed.position.unwrap()
}

/// Every file under `dir`, and in its subdirectories.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// How many times `needle` occurs in the bytes of every file under `dir`:
/// the events file, its log and key file, and the read-model directory.
fn occurrences_under(dir: &Path, needle: &str) -> usize {
    files_under(dir)
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).unwrap();
            bytes
                .windows(needle.len())
                .filter(|w| *w == needle.as_bytes())
                .count()
        })
        .sum()
}

/// Subject 7's canaries are nowhere under `dir`, subject 8's are (the
/// scan finds what is there).
fn assert_only_eight_remains(dir: &Path) {
    for canary in SEVEN {
        assert_eq!(
            occurrences_under(dir, canary),
            0,
            "{canary} remains in {:?}",
            files_under(dir)
        );
    }
    for canary in EIGHT {
        assert!(
            occurrences_under(dir, canary) > 0,
            "{canary} should still be in a read model"
        );
    }
}

fn names_table(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "CREATE TABLE names (stream TEXT PRIMARY KEY, name TEXT, email TEXT);
         CREATE INDEX names_by_name ON names (name);
         CREATE TABLE friends (friend TEXT NOT NULL, referred_by TEXT NOT NULL, email TEXT);",
    )
}

fn insert_name(db: &Connection, e: &Envelope<Joined>) -> Result<(), BoxError> {
    db.prepare_cached("INSERT OR REPLACE INTO names VALUES (?1, ?2, ?3)")?
        .execute((
            e.stream_id.as_str(),
            e.event.name.as_known(),
            e.event.email.as_known(),
        ))?;
    Ok(())
}

fn insert_friend(db: &Connection, e: &Envelope<Referred>) -> Result<(), BoxError> {
    db.prepare_cached("INSERT INTO friends VALUES (?1, ?2, ?3)")?
        .execute((
            &e.event.friend_id,
            e.stream_id.as_str(),
            e.event.friend_email.as_known(),
        ))?;
    Ok(())
}

type NameRows = Vec<(String, Option<String>, Option<String>)>;
type FriendRows = Vec<(String, String, Option<String>)>;

const NAMES: &str = "SELECT stream, name, email FROM names ORDER BY stream";
const FRIENDS: &str = "SELECT friend, referred_by, email FROM friends ORDER BY friend";

/// Names and e-mails by member: the default hook (it is rebuilt).
#[derive(Projection, Default)]
#[projection(name = "member-names", events(Joined, Referred), context = Connection)]
struct Names;

impl ReadModel for Names {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        names_table(db)
    }
}
impl Handle<Joined, Connection> for Names {
    fn handle(&mut self, db: &Connection, e: &Envelope<Joined>) -> Result<(), BoxError> {
        insert_name(db, e)
    }
}
impl Handle<Referred, Connection> for Names {
    fn handle(&mut self, db: &Connection, e: &Envelope<Referred>) -> Result<(), BoxError> {
        insert_friend(db, e)
    }
}

/// The same tables, with a hook that deletes the subject's rows.
#[derive(Projection, Default)]
#[projection(name = "member-names-in-place", events(Joined, Referred), context = Connection)]
struct NamesInPlace {
    forgotten: Vec<String>,
}

fn delete_subject(db: &Connection, subject: &str) -> rusqlite::Result<Forgetting> {
    db.execute("DELETE FROM names WHERE stream = ?1", [subject])?;
    db.execute("DELETE FROM friends WHERE friend = ?1", [subject])?;
    Ok(Forgetting::Done)
}

impl ReadModel for NamesInPlace {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        names_table(db)
    }

    fn forget(&mut self, db: &Connection, subject: &str) -> rusqlite::Result<Forgetting> {
        self.forgotten.push(subject.to_owned());
        delete_subject(db, subject)
    }
}
impl Handle<Joined, Connection> for NamesInPlace {
    fn handle(&mut self, db: &Connection, e: &Envelope<Joined>) -> Result<(), BoxError> {
        insert_name(db, e)
    }
}
impl Handle<Referred, Connection> for NamesInPlace {
    fn handle(&mut self, db: &Connection, e: &Envelope<Referred>) -> Result<(), BoxError> {
        insert_friend(db, e)
    }
}

/// Plans renewed: no personal data ever. Its hook, if it were called,
/// would count and ask for a rebuild.
#[derive(Projection, Default)]
#[projection(name = "member-plans", events(Renewed), context = Connection)]
struct Plans {
    hook_calls: usize,
}

impl ReadModel for Plans {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        db.execute_batch("CREATE TABLE plans (stream TEXT PRIMARY KEY, plan TEXT NOT NULL)")
    }

    fn forget(&mut self, _: &Connection, _: &str) -> rusqlite::Result<Forgetting> {
        self.hook_calls += 1;
        Ok(Forgetting::Rebuild)
    }
}
impl Handle<Renewed, Connection> for Plans {
    fn handle(&mut self, db: &Connection, e: &Envelope<Renewed>) -> Result<(), BoxError> {
        db.prepare_cached("INSERT OR REPLACE INTO plans VALUES (?1, ?2)")?
            .execute((e.stream_id.as_str(), &e.event.plan))?;
        Ok(())
    }
}

/// A file's identity: a rebuild makes a new file, a forget in place keeps it.
#[cfg(unix)]
fn inode(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
}

fn seven_forgotten() -> (NameRows, FriendRows) {
    (
        vec![
            ("member-7".into(), None, None),
            (
                "member-8".into(),
                Some(EIGHT[0].into()),
                Some(EIGHT[1].into()),
            ),
        ],
        vec![
            ("member-7".into(), "member-8".into(), None),
            ("member-8".into(), "member-7".into(), Some(EIGHT[2].into())),
        ],
    )
}

#[test]
fn s3_after_forget_a_rebuilt_read_model_holds_no_personal_data_of_the_subject_in_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("members.db");
    let store = open(&db, &KeyEncryptionKey::generate());
    let members = Repository::<Member, _>::new(store.clone());
    let models = ReadModels::open(&store).unwrap();
    let names = models.start(Names).unwrap();
    let plans = models.start(Plans::default()).unwrap();
    members_of_two_subjects(&members);
    block_on(names.caught_up()).unwrap();
    block_on(plans.caught_up()).unwrap();
    // Both subjects' data is in the read model's files (and only there:
    // the events hold it sealed, and no snapshot was taken).
    for canary in SEVEN.iter().chain(&EIGHT) {
        assert!(occurrences_under(dir.path(), canary) > 0, "{canary}");
    }
    let first = models.serving_file("member-names").unwrap().unwrap();
    assert_eq!(first, models.model_path("member-names", 1));
    let plans_file = models.serving_file("member-plans").unwrap().unwrap();
    #[cfg(unix)]
    let plans_inode = inode(&plans_file);

    let forgotten = members.forget("member-7").unwrap();
    block_on(names.caught_up()).unwrap();
    block_on(plans.caught_up()).unwrap();

    // Rebuilt from the first event into a new file, swapped in, the old
    // one deleted.
    let rebuilt = models.serving_file("member-names").unwrap().unwrap();
    assert_ne!(rebuilt, first);
    assert!(!first.exists(), "the old file is deleted");
    assert_only_eight_remains(dir.path());
    let rows = (
        models.rows::<Names, _>(NAMES, []).unwrap(),
        models.rows::<Names, _>(FRIENDS, []).unwrap(),
    );
    assert_eq!(rows, seven_forgotten());
    assert!(names.progress().position >= forgotten.recorded.last_position.unwrap());

    // The model without personal data took the forgetting as any other
    // event it does not list: not rebuilt, its hook never called.
    assert_eq!(
        models.serving_file("member-plans").unwrap(),
        Some(plans_file.clone())
    );
    #[cfg(unix)]
    assert_eq!(inode(&plans_file), plans_inode);
    assert!(plans.progress().position >= forgotten.recorded.last_position.unwrap());
    assert_eq!(plans.stop().unwrap().hook_calls, 0);
    assert_eq!(
        models
            .rows::<Plans, (String, String)>("SELECT stream, plan FROM plans", [])
            .unwrap(),
        [("member-8".to_string(), "platinum".to_string())]
    );

    // Exactly once through it all, and after a restart: new events are
    // taken once, by the rebuilt file.
    drop(names);
    let names = models.start(Names).unwrap();
    let joined = members
        .execute("9", |_| Joined {
            plan: "silver".into(),
            name: Personal::known("Nine".into()),
            email: Personal::known("nine@example.com".into()),
        })
        .unwrap();
    block_on(names.wait_for(joined.position.unwrap())).unwrap();
    assert_eq!(models.serving_file("member-names").unwrap(), Some(rebuilt));
    let count: Vec<(i64,)> = models
        .rows::<Names, _>("SELECT count(*) FROM names", [])
        .unwrap();
    assert_eq!(count, [(3,)]);
}

#[test]
fn s3_after_forget_a_read_model_that_forgets_in_place_holds_no_personal_data_of_the_subject() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("members.db");
    let store = open(&db, &KeyEncryptionKey::generate());
    let members = Repository::<Member, _>::new(store.clone());
    let models = ReadModels::open(&store).unwrap();
    let names = models.start(NamesInPlace::default()).unwrap();
    members_of_two_subjects(&members);
    block_on(names.caught_up()).unwrap();
    for canary in SEVEN.iter().chain(&EIGHT) {
        assert!(occurrences_under(dir.path(), canary) > 0, "{canary}");
    }
    let file = models
        .serving_file("member-names-in-place")
        .unwrap()
        .unwrap();
    #[cfg(unix)]
    let before = inode(&file);

    members.forget("member-7").unwrap();
    block_on(names.caught_up()).unwrap();

    // The same file, the subject's rows deleted, overwritten
    // (secure_delete) and out of the log (truncated).
    assert_eq!(
        models.serving_file("member-names-in-place").unwrap(),
        Some(file.clone())
    );
    #[cfg(unix)]
    assert_eq!(inode(&file), before);
    assert_only_eight_remains(dir.path());
    let (mut names_left, mut friends_left) = seven_forgotten();
    names_left.remove(0);
    friends_left.remove(0);
    assert_eq!(
        (
            models.rows::<NamesInPlace, _>(NAMES, []).unwrap(),
            models.rows::<NamesInPlace, _>(FRIENDS, []).unwrap(),
        ),
        (names_left, friends_left)
    );
    // Forgetting again calls the hook again (it is safe to run twice);
    // a subject the model never saw too.
    members.forget("member-7").unwrap();
    members.forget("member-42").unwrap();
    block_on(names.caught_up()).unwrap();
    assert_eq!(
        names.stop().unwrap().forgotten,
        ["member-7", "member-7", "member-42"]
    );
    assert_only_eight_remains(dir.path());
}

#[test]
fn s3_a_read_model_started_after_the_forgetting_never_holds_the_subject_nor_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("members.db");
    let store = open(&db, &KeyEncryptionKey::generate());
    let members = Repository::<Member, _>::new(store.clone());
    members_of_two_subjects(&members);
    members.forget("member-7").unwrap();
    let models = ReadModels::open(&store).unwrap();
    let names = models.start(Names).unwrap();
    block_on(names.caught_up()).unwrap();
    // Built once, after the forgetting: the subject read as forgotten and
    // the forgetting passed by.
    assert_eq!(
        models.serving_file("member-names").unwrap(),
        Some(models.model_path("member-names", 1))
    );
    assert_only_eight_remains(dir.path());
}

#[test]
fn s3_a_read_model_file_of_the_first_format_that_missed_a_forgetting_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("members.db");
    let store = open(&db, &KeyEncryptionKey::generate());
    let members = Repository::<Member, _>::new(store.clone());
    let models = ReadModels::open(&store).unwrap();
    members_of_two_subjects(&members);
    models_catch_up_names(&models);
    // Forgotten while the model is stopped; then its file is made what
    // an earlier es-sqlite left: format 1 (and registry format 1), its
    // checkpoint past the forgetting, which that runner never saw.
    let forgotten = members.forget("member-7").unwrap();
    drop(models);
    let path = dir.path().join("members.read-models/member-names.v1.db");
    let old = Connection::open(&path).unwrap();
    old.execute_batch(&format!(
        "UPDATE _es_read_model SET position = {};
         ALTER TABLE _es_read_model DROP COLUMN generation;
         ALTER TABLE _es_read_model DROP COLUMN created_at_head;
         ALTER TABLE _es_read_model DROP COLUMN personal_at;
         ALTER TABLE _es_read_model DROP COLUMN rebuild_for;
         PRAGMA user_version = 1;",
        forgotten.recorded.last_position.unwrap()
    ))
    .unwrap();
    drop(old);
    let registry = Connection::open(dir.path().join("members.read-models/serving.db")).unwrap();
    registry
        .execute_batch("ALTER TABLE serving DROP COLUMN generation; PRAGMA user_version = 1;")
        .unwrap();
    drop(registry);
    assert!(occurrences_under(dir.path(), SEVEN[0]) > 0);

    let models = ReadModels::open(&store).unwrap();
    let names = models.start(Names).unwrap();
    block_on(names.caught_up()).unwrap();
    assert_ne!(
        models.serving_file("member-names").unwrap(),
        Some(path.clone())
    );
    assert!(!path.exists());
    assert_only_eight_remains(dir.path());
    assert_eq!(
        (
            models.rows::<Names, _>(NAMES, []).unwrap(),
            models.rows::<Names, _>(FRIENDS, []).unwrap(),
        ),
        seven_forgotten()
    );
}

/// [`Names`], slowly: 30 ms an event, to stop a rebuild half way.
#[derive(Projection, Default)]
#[projection(name = "slow-names", events(Joined, Referred), context = Connection)]
struct SlowNames;

impl ReadModel for SlowNames {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        names_table(db)
    }
}
impl Handle<Joined, Connection> for SlowNames {
    fn handle(&mut self, db: &Connection, e: &Envelope<Joined>) -> Result<(), BoxError> {
        std::thread::sleep(std::time::Duration::from_millis(30));
        insert_name(db, e)
    }
}
impl Handle<Referred, Connection> for SlowNames {
    fn handle(&mut self, db: &Connection, e: &Envelope<Referred>) -> Result<(), BoxError> {
        std::thread::sleep(std::time::Duration::from_millis(30));
        insert_friend(db, e)
    }
}

#[test]
fn s3_a_rebuild_stopped_half_way_goes_on_in_its_new_file_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("members.db");
    let store = open(&db, &KeyEncryptionKey::generate());
    let members = Repository::<Member, _>::new(store.clone());
    let models = ReadModels::open(&store).unwrap();
    let one_by_one = || es_sqlite::RunOptions::new().batch(1);
    let names = models.start_with(SlowNames, one_by_one()).unwrap();
    members_of_two_subjects(&members);
    block_on(names.caught_up()).unwrap();
    let first = models.model_path("slow-names", 1);
    let next = dir.path().join("members.read-models/slow-names.v1.g1.db");

    let forgotten = members.forget("member-7").unwrap();
    let forgetting = forgotten.recorded.last_position.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !next.exists() {
        assert!(std::time::Instant::now() < deadline, "the rebuild starts");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    names.stop().unwrap();
    // Stopped half way: the old file still serves, the new one is kept.
    assert_eq!(
        models.serving_file("slow-names").unwrap(),
        Some(first.clone())
    );
    // As the inspector lists them: the old file serving, its rebuild
    // pending, and the new generation behind the head.
    let listed = store.projections().unwrap();
    let kinds: Vec<_> = listed.iter().map(|p| (p.name.as_str(), &p.kind)).collect();
    assert_eq!(
        kinds,
        [
            (
                "slow-names",
                &es_sqlite::ProjectionKind::ReadModel {
                    version: 1,
                    generation: 0,
                    serving: true,
                    rebuild_for: Some(forgetting),
                    file: first.clone(),
                }
            ),
            (
                "slow-names",
                &es_sqlite::ProjectionKind::ReadModel {
                    version: 1,
                    generation: 1,
                    serving: false,
                    rebuild_for: None,
                    file: next.clone(),
                }
            ),
        ]
    );
    assert!(listed[1].lag_events() > 0, "{listed:?}");
    #[cfg(unix)]
    let next_inode = inode(&next);

    let names = models.start_with(SlowNames, one_by_one()).unwrap();
    block_on(names.caught_up()).unwrap();
    assert_eq!(
        models.serving_file("slow-names").unwrap(),
        Some(next.clone())
    );
    #[cfg(unix)]
    assert_eq!(inode(&next), next_inode, "the same new file, gone on with");
    assert!(!first.exists());
    assert!(
        !dir.path()
            .join("members.read-models/slow-names.v1.g2.db")
            .exists()
    );
    assert_only_eight_remains(dir.path());
    assert_eq!(
        (
            models.rows::<SlowNames, _>(NAMES, []).unwrap(),
            models.rows::<SlowNames, _>(FRIENDS, []).unwrap(),
        ),
        seven_forgotten()
    );
}

/// [`Names`] with a hook that deletes a row, then fails.
#[derive(Projection, Default)]
#[projection(name = "failing-names", events(Joined, Referred), context = Connection)]
struct FailingNames;

impl ReadModel for FailingNames {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        names_table(db)
    }

    fn forget(&mut self, db: &Connection, subject: &str) -> rusqlite::Result<Forgetting> {
        db.execute("DELETE FROM names WHERE stream = ?1", [subject])?;
        db.execute("DELETE FROM no_such_table", [])?;
        Ok(Forgetting::Done)
    }
}
impl Handle<Joined, Connection> for FailingNames {
    fn handle(&mut self, db: &Connection, e: &Envelope<Joined>) -> Result<(), BoxError> {
        insert_name(db, e)
    }
}
impl Handle<Referred, Connection> for FailingNames {
    fn handle(&mut self, db: &Connection, e: &Envelope<Referred>) -> Result<(), BoxError> {
        insert_friend(db, e)
    }
}

#[test]
fn s3_a_read_model_whose_forget_hook_fails_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("members.db");
    let store = open(&db, &KeyEncryptionKey::generate());
    let members = Repository::<Member, _>::new(store.clone());
    let models = ReadModels::open(&store).unwrap();
    // Parking would not skip the forgetting either.
    let options = es_sqlite::RunOptions::new().on_error(es_sqlite::OnError::Park);
    let names = models.start_with(FailingNames, options).unwrap();
    members_of_two_subjects(&members);
    block_on(names.caught_up()).unwrap();
    members.forget("member-7").unwrap();
    block_on(names.caught_up()).unwrap();
    assert_eq!(
        models.serving_file("failing-names").unwrap(),
        Some(
            dir.path()
                .join("members.read-models/failing-names.v1.g1.db")
        )
    );
    assert!(models.parked::<FailingNames>().unwrap().is_empty());
    assert_only_eight_remains(dir.path());
    assert_eq!(
        (
            models.rows::<FailingNames, _>(NAMES, []).unwrap(),
            models.rows::<FailingNames, _>(FRIENDS, []).unwrap(),
        ),
        seven_forgotten()
    );
}

fn models_catch_up_names(models: &ReadModels) {
    block_on(models.catch_up(Names)).unwrap();
}

/// The inline forms: names rebuilt in place (the default), names deleted
/// by a hook, and plans (no personal data).
#[derive(Projection, Default)]
#[projection(name = "inline-names", events(Joined, Referred), context = Connection)]
struct InlineNames;

fn inline_names_table(db: &Connection, prefix: &str) -> rusqlite::Result<()> {
    db.execute_batch(&format!(
        "CREATE TABLE {prefix}_names (stream TEXT PRIMARY KEY, name TEXT, email TEXT);
         CREATE INDEX {prefix}_names_by_name ON {prefix}_names (name);
         CREATE TABLE {prefix}_friends (friend TEXT NOT NULL, referred_by TEXT NOT NULL, email TEXT);"
    ))
}

fn inline_insert_name(db: &Connection, prefix: &str, e: &Envelope<Joined>) -> Result<(), BoxError> {
    db.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {prefix}_names VALUES (?1, ?2, ?3)"
    ))?
    .execute((
        e.stream_id.as_str(),
        e.event.name.as_known(),
        e.event.email.as_known(),
    ))?;
    Ok(())
}

fn inline_insert_friend(
    db: &Connection,
    prefix: &str,
    e: &Envelope<Referred>,
) -> Result<(), BoxError> {
    db.prepare_cached(&format!("INSERT INTO {prefix}_friends VALUES (?1, ?2, ?3)"))?
        .execute((
            &e.event.friend_id,
            e.stream_id.as_str(),
            e.event.friend_email.as_known(),
        ))?;
    Ok(())
}

impl ReadModel for InlineNames {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        inline_names_table(db, "rebuilt")
    }
}
impl Handle<Joined, Connection> for InlineNames {
    fn handle(&mut self, db: &Connection, e: &Envelope<Joined>) -> Result<(), BoxError> {
        inline_insert_name(db, "rebuilt", e)
    }
}
impl Handle<Referred, Connection> for InlineNames {
    fn handle(&mut self, db: &Connection, e: &Envelope<Referred>) -> Result<(), BoxError> {
        inline_insert_friend(db, "rebuilt", e)
    }
}

#[derive(Projection, Default)]
#[projection(name = "inline-names-in-place", events(Joined, Referred), context = Connection)]
struct InlineNamesInPlace;

impl ReadModel for InlineNamesInPlace {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        inline_names_table(db, "kept")
    }

    fn forget(&mut self, db: &Connection, subject: &str) -> rusqlite::Result<Forgetting> {
        db.execute("DELETE FROM kept_names WHERE stream = ?1", [subject])?;
        db.execute("DELETE FROM kept_friends WHERE friend = ?1", [subject])?;
        Ok(Forgetting::Done)
    }
}
impl Handle<Joined, Connection> for InlineNamesInPlace {
    fn handle(&mut self, db: &Connection, e: &Envelope<Joined>) -> Result<(), BoxError> {
        inline_insert_name(db, "kept", e)
    }
}
impl Handle<Referred, Connection> for InlineNamesInPlace {
    fn handle(&mut self, db: &Connection, e: &Envelope<Referred>) -> Result<(), BoxError> {
        inline_insert_friend(db, "kept", e)
    }
}

/// How many times the inline models' tables were made.
static INLINE_NAMES_MADE: AtomicUsize = AtomicUsize::new(0);
static INLINE_PLANS_MADE: AtomicUsize = AtomicUsize::new(0);

#[derive(Projection, Default)]
#[projection(name = "inline-plans", events(Renewed), context = Connection)]
struct InlinePlans;

impl ReadModel for InlinePlans {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        INLINE_PLANS_MADE.fetch_add(1, Ordering::SeqCst);
        db.execute_batch("CREATE TABLE inline_plans (stream TEXT PRIMARY KEY, plan TEXT NOT NULL)")
    }
}
impl Handle<Renewed, Connection> for InlinePlans {
    fn handle(&mut self, db: &Connection, e: &Envelope<Renewed>) -> Result<(), BoxError> {
        db.prepare_cached("INSERT OR REPLACE INTO inline_plans VALUES (?1, ?2)")?
            .execute((e.stream_id.as_str(), &e.event.plan))?;
        Ok(())
    }
}

/// Counts how many times `InlineNames` is made, beside it.
#[derive(Projection, Default)]
#[projection(name = "inline-names-made", events(Joined), context = Connection)]
struct InlineNamesMade;

impl ReadModel for InlineNamesMade {
    fn create(db: &Connection) -> rusqlite::Result<()> {
        INLINE_NAMES_MADE.fetch_add(1, Ordering::SeqCst);
        db.execute_batch("CREATE TABLE inline_made (n INTEGER)")
    }
}
impl Handle<Joined, Connection> for InlineNamesMade {
    fn handle(&mut self, _: &Connection, _: &Envelope<Joined>) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn s3_after_forget_inline_read_models_hold_no_personal_data_of_the_subject_in_the_events_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("members.db");
    let kek = KeyEncryptionKey::generate();
    let open_inline = || {
        SqliteStore::options()
            .personal_data(kek.clone())
            .inline(InlineNames)
            .inline(InlineNamesInPlace)
            .inline(InlinePlans)
            .inline(InlineNamesMade)
            .open(&db)
            .unwrap()
    };
    let store = open_inline();
    let members = Repository::<Member, _>::new(store.clone());
    members_of_two_subjects(&members);
    for canary in SEVEN.iter().chain(&EIGHT) {
        assert!(occurrences_under(dir.path(), canary) > 0, "{canary}");
    }
    assert_eq!(INLINE_PLANS_MADE.load(Ordering::SeqCst), 1);
    assert_eq!(INLINE_NAMES_MADE.load(Ordering::SeqCst), 1);

    // The forgetting's own append rebuilds one, and the other's hook
    // deletes the subject's rows; `forget` then truncates the log.
    members.forget("member-7").unwrap();
    assert_only_eight_remains(dir.path());
    let rows = |store: &SqliteStore, prefix: &str| {
        (
            store
                .rows::<InlineNames, _>(
                    &format!("SELECT stream, name, email FROM {prefix}_names ORDER BY stream"),
                    [],
                )
                .unwrap(),
            store
                .rows::<InlineNames, _>(
                    &format!(
                        "SELECT friend, referred_by, email FROM {prefix}_friends ORDER BY friend"
                    ),
                    [],
                )
                .unwrap(),
        )
    };
    assert_eq!(rows(&store, "rebuilt"), seven_forgotten());
    let (mut names_left, mut friends_left) = seven_forgotten();
    names_left.remove(0);
    friends_left.remove(0);
    assert_eq!(rows(&store, "kept"), (names_left, friends_left));
    // A model without personal data is not rebuilt; one that took personal
    // data with the default hook is (and only it).
    assert_eq!(INLINE_PLANS_MADE.load(Ordering::SeqCst), 1);
    assert_eq!(INLINE_NAMES_MADE.load(Ordering::SeqCst), 2);
    assert_eq!(
        store
            .rows::<InlinePlans, (String, String)>("SELECT stream, plan FROM inline_plans", [])
            .unwrap(),
        [("member-8".to_string(), "platinum".to_string())]
    );

    // Opened again: nothing is rebuilt, and new events are taken.
    drop(members);
    drop(store);
    assert_only_eight_remains(dir.path());
    let store = open_inline();
    assert_eq!(INLINE_PLANS_MADE.load(Ordering::SeqCst), 1);
    assert_eq!(INLINE_NAMES_MADE.load(Ordering::SeqCst), 2);
    Repository::<Member, _>::new(store.clone())
        .execute("9", |_| Joined {
            plan: "silver".into(),
            name: Personal::known("Nine".into()),
            email: Personal::known("nine@example.com".into()),
        })
        .unwrap();
    assert_eq!(rows(&store, "rebuilt").0.len(), 3);
    assert_eq!(rows(&store, "kept").0.len(), 2);
}
