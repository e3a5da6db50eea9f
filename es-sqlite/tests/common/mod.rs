//! Helpers shared by the es-sqlite test files.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::expect_used,
    clippy::missing_panics_doc
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A small seeded generator (xorshift64*), so runs can be repeated.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The environment variable that makes a test binary play a child role.
pub const ROLE: &str = "ES_TEST_ROLE";
/// The database a child works on.
pub const DB: &str = "ES_TEST_DB";

/// Runs this test binary again as a child that executes only `test`, with
/// `role` set; its stdout is piped to the caller.
pub fn spawn_child(test: &str, role: &str, db: &Path, env: &[(&str, String)]) -> Child {
    Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([
            test,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(ROLE, role)
        .env(DB, db)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the child process starts")
}

/// The role this process plays, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// `PRAGMA quick_check` (or `integrity_check`) on a database file.
pub fn check_integrity(db: &Path, full: bool) -> String {
    let conn = rusqlite::Connection::open(db).expect("a raw connection opens");
    let pragma = if full {
        "PRAGMA integrity_check"
    } else {
        "PRAGMA quick_check"
    };
    conn.query_row(pragma, [], |r| r.get(0))
        .expect("the check runs")
}
