//! What the command lines of the es examples (`ticket`, `leads`) share:
//! where their key-encryption key comes from, and how they run the replay
//! check with a progress bar.

#![forbid(unsafe_code)]

use std::error::Error;
use std::path::{Path, PathBuf};

use es_core::privacy::{KeyEncryptionKey, KeySource};
use es_core::verify::{Phase, Verify};
use es_core::{EventStore, SnapshotStore};

/// The key that wraps the keys of an example's personal data: from the
/// environment variable `var`, or else the key file `<db>.kek`, created
/// (owner-only) when missing, with a note on stderr saying so.
///
/// # Errors
///
/// As [`KeyEncryptionKey::from_env_or_file`].
pub fn key_encryption_key(db: &Path, var: &str) -> Result<KeyEncryptionKey, Box<dyn Error>> {
    let mut path = db.as_os_str().to_owned();
    path.push(".kek");
    let path = PathBuf::from(path);
    let (kek, source) = KeyEncryptionKey::from_env_or_file(var, &path)?;
    if source == KeySource::Created {
        eprintln!(
            "note: created the key-encryption key {} (set {var} to keep it elsewhere)",
            path.display()
        );
    }
    Ok(kek)
}

/// Runs `check` with a progress bar on a terminal and prints its report;
/// an error when it found anything.
///
/// # Errors
///
/// When the store cannot be read, or the check found problems.
pub fn replay_check<S: EventStore + SnapshotStore>(
    check: Verify<'_, S>,
) -> Result<(), Box<dyn Error>> {
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len}") {
        bar.set_style(style);
    }
    // The report names each panic with its stream and version: the default
    // hook's message would only repeat it without them.
    std::panic::set_hook(Box::new(|_| {}));
    let report = es_core::blocking::block_on(
        check
            .progress(|p| {
                bar.set_length(p.total);
                bar.set_position(p.done);
                bar.set_message(match p.phase {
                    Phase::List => "listing streams",
                    Phase::Replay => "replaying",
                });
            })
            .run(),
    );
    let _ = std::panic::take_hook();
    bar.finish_and_clear();
    let report = report?;
    println!("{report:#}");
    match report.findings.len() {
        0 => Ok(()),
        n => Err(format!("the replay check found {n} problems").into()),
    }
}
