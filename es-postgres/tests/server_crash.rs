//! The server crashes under the store: PostgreSQL is stopped with
//! `pg_ctl -m immediate` (no checkpoint, no clean shutdown: what a power
//! cut or a killed postmaster leaves, recovered from its write-ahead log
//! at the next start) and started again while four threads append.
//!
//! Every acknowledged append is stored after the restart; every append
//! whose answer was an error (the connection lost before, during or after
//! its commit) is stored whole or not at all; positions stay gapless; and
//! the same store, without reopening, appends again once the server is
//! back (each of its threads connects anew).
//!
//! It needs the server of `scripts/with-postgres` (`ES_POSTGRES_DATA`,
//! `ES_POSTGRES_BIN`, `ES_POSTGRES_OWNER`), and is the only test of its
//! binary, since it stops the server under every other test's feet.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::check::check_log;
use es_core::blocking::block_on;
use es_core::{EventStore, ExpectedVersion, NewEvent, StreamId};

fn pg_ctl(args: &[&str]) {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run this test under scripts/with-postgres, which sets it")
        })
    };
    let (data, bin, owner) = (
        var("ES_POSTGRES_DATA"),
        var("ES_POSTGRES_BIN"),
        var("ES_POSTGRES_OWNER"),
    );
    let pg_ctl = format!("{bin}/pg_ctl");
    let me = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let mut command = if me.trim() == owner {
        Command::new(&pg_ctl)
    } else {
        let mut c = Command::new("runuser");
        c.args(["-u", &owner, "--", &pg_ctl]);
        c
    };
    // The server's log goes beside its data directory, as with-postgres's does.
    let log = format!("{data}/../server.log");
    let status = command
        .args(["-D", &data, "-l", &log, "-w", "-t", "60"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("pg_ctl runs");
    assert!(status.success(), "pg_ctl {args:?}: {status}");
}

#[test]
fn the_server_stopped_immediately_and_restarted_loses_no_acknowledged_append() {
    let store = common::store();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut acked, mut failed) = (Vec::new(), Vec::new());
                let stream = StreamId::new(format!("s-{t}")).unwrap();
                let mut errors = 0;
                while !stop.load(Ordering::SeqCst) {
                    let events: Vec<NewEvent> = (0..3)
                        .map(|k| NewEvent::new("s", "appended", 1, format!(r#"{{"k":{k}}}"#)))
                        .collect();
                    let ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
                    if block_on(store.append(&stream, ExpectedVersion::Any, events)).is_ok() {
                        acked.push(ids);
                    } else {
                        errors += 1;
                        failed.push(ids);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                (acked, failed, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Stopped without a checkpoint, then started with the options it had
    // (`restart` reads them back from the cluster's postmaster.opts).
    pg_ctl(&["-m", "immediate", "restart"]);
    // The store appends again without being reopened.
    let back = Instant::now();
    let probe = StreamId::new("probe").unwrap();
    loop {
        let appended = block_on(store.append(
            &probe,
            ExpectedVersion::Any,
            vec![NewEvent::new("s", "appended", 1, "{}")],
        ));
        if appended.is_ok() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "the store did not append again after the restart: {appended:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (mut acked, mut tried, mut errors) = (Vec::new(), Vec::new(), 0);
    for thread in threads {
        let (a, f, e) = thread.join().unwrap();
        tried.extend(a.iter().cloned());
        tried.extend(f);
        acked.extend(a);
        errors += e;
    }
    let log = common::read_all(&store, 1);
    check_log(&log, &acked, &tried);
    assert!(errors > 0, "the appends saw the server go");
    println!(
        "server crash: {} appends acknowledged, {errors} failed while the server was down",
        acked.len()
    );
}
