//! The search and analysis models: lead 12 as the seeds print them, from
//! both forms; search by old and new values; leads (and other aggregates)
//! kept apart; the read models equal to the per-stream forms over many
//! leads with varied histories; the command line.

// Test helpers panic to fail the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use es_core::blocking::{Repository, block_on};
use es_core::prelude::*;
use es_core::{NewEvent, Projected};
use es_sqlite::{ReadModels, Runner, SqliteStore};
use leads::read_models::analysis::{self, StatusCount};
use leads::read_models::search::{self, Contact};
use leads::seed::{self, seed_version};
use leads::{
    AnalysisModel, AnalysisModelProjection, ContactDetailsUpdated, Lead, LeadAnalysis,
    LeadInitialized, LeadSearchModel, LeadSearchModelProjection, LeadStatus, SearchHit,
};

/// The read models of `store`, running.
struct Running {
    models: ReadModels,
    search: Runner<LeadSearchModel>,
    analysis: Runner<AnalysisModel>,
}

impl Running {
    fn start(store: &SqliteStore) -> Running {
        let models = ReadModels::open(store).unwrap();
        let search = models.start(LeadSearchModel).unwrap();
        let analysis = models.start(AnalysisModel).unwrap();
        let started = Running {
            models,
            search,
            analysis,
        };
        started.catch_up();
        started
    }

    fn catch_up(&self) {
        block_on(self.search.caught_up()).unwrap();
        block_on(self.analysis.caught_up()).unwrap();
    }

    fn search(&self, term: &str) -> Vec<SearchHit> {
        search::search(&self.models, term).unwrap()
    }

    fn ids(&self, term: &str) -> Vec<String> {
        self.search(term).into_iter().map(|h| h.lead_id).collect()
    }
}

fn known(value: &str) -> Personal<String> {
    Personal::known(value.to_owned())
}

/// A store with the seed's lead 12 imported.
fn with_lead_12() -> (SqliteStore, Repository<Lead, SqliteStore>) {
    let store = SqliteStore::open_temporary().unwrap();
    let leads = Repository::<Lead, _>::new(store.clone());
    block_on(seed::import(leads.as_async(), "12")).unwrap();
    (store, leads)
}

/// What the seeds print for lead 12: seed 004's search model and seed 000's
/// analysis model (whose numbers, for its own lead 1, are the same).
const SEED_SEARCH: &str = "\
LeadId: 12
FirstNames: ['Casey']
LastNames: ['David', 'Davis']
PhoneNumbers: ['555-2951', '555-8101']
Version: 6
";
const SEED_ANALYSIS: &str = "\
leadId: 12
followups: 1
status: converted
version: 6
";

#[test]
fn lead_12_is_what_the_seeds_print_from_both_forms() {
    let (store, _) = with_lead_12();
    let models = Running::start(&store);

    let stream = StreamId::new("lead-12").unwrap();
    let per_stream: Projected<LeadSearchModelProjection> =
        block_on(es_core::projection::project::<LeadSearchModelProjection, _>(&store, &stream))
            .unwrap();
    assert_eq!(per_stream.first_names, ["Casey"]);
    assert_eq!(per_stream.last_names, ["David", "Davis"]);
    assert_eq!(per_stream.phone_numbers, ["555-2951", "555-8101"]);
    assert_eq!(
        per_stream.current,
        Contact {
            first_name: Some("Casey".into()),
            last_name: Some("Davis".into()),
            phone_number: Some("555-8101".into()),
        }
    );
    // es counts the seven events from 1; the seed from 0.
    assert_eq!(per_stream.version, 7);
    assert_eq!(seed_version(per_stream.version), 6);

    let searched = block_on(search::project(&store, "12")).unwrap().unwrap();
    assert_eq!(searched, SearchHit::from_projected("12", per_stream));
    assert_eq!(searched.to_string(), SEED_SEARCH);
    let read = search::lookup(&models.models, "12").unwrap().unwrap();
    assert_eq!(read, searched);
    assert_eq!(read.to_string(), SEED_SEARCH);

    let analysed: Projected<AnalysisModelProjection> = block_on(es_core::projection::project::<
        AnalysisModelProjection,
        _,
    >(&store, &stream))
    .unwrap();
    assert_eq!(analysed.followups, 1);
    assert_eq!(analysed.status, Some(LeadStatus::Converted));
    assert_eq!(analysed.version, 7);
    let analysed = LeadAnalysis::from_projected("12", &analysed);
    assert_eq!(
        block_on(analysis::project(&store, "12")).unwrap().as_ref(),
        Some(&analysed)
    );
    assert_eq!(analysed.to_string(), SEED_ANALYSIS);
    let read = analysis::lookup(&models.models, "12").unwrap().unwrap();
    assert_eq!(read, analysed);
    assert_eq!(read.to_string(), SEED_ANALYSIS);

    // Each status is stored under its name.
    let stored: Vec<(String,)> = models
        .models
        .rows::<AnalysisModel, _>("SELECT status FROM lead_analysis", [])
        .unwrap();
    assert_eq!(stored, [("converted".to_string(),)]);
}

#[test]
fn the_per_stream_form_looks_back_by_version() {
    // The seed: "for the state at version 5, apply the first 5 events".
    let (store, _) = with_lead_12();
    let stream = StreamId::new("lead-12").unwrap();
    let at = |version: u64| {
        block_on(es_core::projection::project_until::<
            LeadSearchModelProjection,
            _,
        >(&store, &stream, (..=version).into()))
        .unwrap()
    };
    let before_the_update = at(3);
    assert_eq!(before_the_update.version, 3);
    assert_eq!(before_the_update.last_names, ["David"]);
    assert_eq!(before_the_update.phone_numbers, ["555-2951"]);
    let after_it = at(4);
    assert_eq!(after_it.last_names, ["David", "Davis"]);
    assert_eq!(after_it.phone_numbers, ["555-2951", "555-8101"]);
}

#[test]
fn the_per_stream_forms_fold_on_any_store() {
    let store = InMemoryStore::new();
    let leads = Repository::<Lead, _>::new(store.clone());
    block_on(seed::import(leads.as_async(), "12")).unwrap();
    let searched = block_on(search::project(&store, "12")).unwrap().unwrap();
    assert_eq!(searched.to_string(), SEED_SEARCH);
    let analysed = block_on(analysis::project(&store, "12")).unwrap().unwrap();
    assert_eq!(analysed.to_string(), SEED_ANALYSIS);
    assert_eq!(block_on(search::project(&store, "13")).unwrap(), None);
    assert_eq!(block_on(analysis::project(&store, "13")).unwrap(), None);
}

#[test]
fn lead_12_is_found_by_its_old_and_new_names_and_phones() {
    let (store, _) = with_lead_12();
    let models = Running::start(&store);
    for term in [
        "555-2951", // the old phone number
        "555-8101", // the new one
        "David",    // the old last name
        "Davis",    // the new one
        "Casey", "casey", // letters in either case
        " DAVIS ",
    ] {
        let hits = models.search(term);
        assert_eq!(hits.len(), 1, "{term:?}: {hits:?}");
        assert_eq!(hits[0].lead_id, "12");
        assert_eq!(hits[0].current.to_string(), "Casey Davis, 555-8101");
        assert_eq!(hits[0].version, 7);
    }
    for term in ["555-0000", "Dav", "555", "", "Casey Davis"] {
        assert!(models.search(term).is_empty(), "{term:?}");
    }
    assert_eq!(search::lookup(&models.models, "13").unwrap(), None);
    assert_eq!(analysis::lookup(&models.models, "13").unwrap(), None);
}

#[test]
fn a_second_lead_and_another_aggregate_do_not_mix_in() {
    let (store, leads) = with_lead_12();
    leads
        .execute("7", |l| l.initialize("Robin", "Davis", "555-7000"))
        .unwrap();
    leads.execute("7", Lead::contact).unwrap();
    leads
        .execute("7", |l| {
            l.update_contact_details("Robin", "Smith", "555-7001")
        })
        .unwrap();
    leads.execute("7", |l| l.close("moved away")).unwrap();
    // Events of another aggregate type with the leads' event names, and a
    // stream id that reads as lead 12's id.
    let stranger = r#"{"first-name":"Mallory","last-name":"Davis","phone-number":"555-2951"}"#;
    block_on(store.append(
        &StreamId::new("ticket-12").unwrap(),
        ExpectedVersion::Any,
        vec![
            NewEvent::new("ticket", "lead-initialized", 1, stranger),
            NewEvent::new(
                "ticket",
                "followup-set",
                1,
                r#"{"followup-on":"2020-06-01T00:00:00Z"}"#,
            ),
            NewEvent::new("ticket", "payment-failed", 1, "{}"),
        ],
    ))
    .unwrap();

    let models = Running::start(&store);
    let twelve = block_on(search::project(&store, "12")).unwrap().unwrap();
    assert_eq!(twelve.to_string(), SEED_SEARCH, "lead 12 as before");
    assert_eq!(
        search::lookup(&models.models, "12").unwrap().unwrap(),
        twelve
    );
    let seven = search::lookup(&models.models, "7").unwrap().unwrap();
    assert_eq!(seven.first_names, ["Robin"]);
    assert_eq!(seven.last_names, ["Davis", "Smith"]);
    assert_eq!(seven.phone_numbers, ["555-7000", "555-7001"]);
    assert_eq!(seven.version, 4);
    assert_eq!(
        seven,
        block_on(search::project(&store, "7")).unwrap().unwrap()
    );

    assert_eq!(models.ids("Davis"), ["12", "7"], "both had it");
    assert_eq!(models.ids("555-7000"), ["7"]);
    assert_eq!(models.ids("555-2951"), ["12"]);
    assert!(models.search("Mallory").is_empty(), "not a lead's");

    let twelve = analysis::lookup(&models.models, "12").unwrap().unwrap();
    assert_eq!(twelve.to_string(), SEED_ANALYSIS);
    let seven = analysis::lookup(&models.models, "7").unwrap().unwrap();
    assert_eq!(
        (seven.followups, seven.status, seven.version),
        (0, Some(LeadStatus::Closed), 4)
    );
    assert_eq!(
        analysis::by_status(&models.models).unwrap(),
        [
            StatusCount {
                status: LeadStatus::Converted,
                leads: 1,
                followups: 1
            },
            StatusCount {
                status: LeadStatus::Closed,
                leads: 1,
                followups: 0
            },
        ]
    );
}

#[test]
fn a_forgotten_value_is_not_searchable() {
    let store = SqliteStore::open_temporary().unwrap();
    let leads = Repository::<Lead, _>::new(store.clone());
    leads
        .execute("20", |_| LeadInitialized {
            first_name: Personal::Forgotten,
            last_name: known("Doe"),
            phone_number: known("555-2000"),
        })
        .unwrap();
    leads
        .execute("20", |_| ContactDetailsUpdated {
            first_name: known("Jo"),
            last_name: known("Doe"),
            phone_number: Personal::Forgotten,
        })
        .unwrap();
    let models = Running::start(&store);
    let hit = search::lookup(&models.models, "20").unwrap().unwrap();
    assert_eq!(hit.first_names, ["Jo"]);
    assert_eq!(hit.last_names, ["Doe"]);
    assert_eq!(hit.phone_numbers, ["555-2000"]);
    assert_eq!(hit.current.to_string(), "Jo Doe, (forgotten)");
    assert_eq!(
        hit,
        block_on(search::project(&store, "20")).unwrap().unwrap()
    );
    assert_eq!(models.ids("555-2000"), ["20"], "it was known then");
    assert!(models.search("(forgotten)").is_empty());
}

/// A small deterministic generator (64-bit LCG): the same "random" histories
/// on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[usize::try_from(self.below(from.len() as u64)).unwrap()]
    }
}

/// Runs `steps` commands on random leads `0..leads`, each as the lead's
/// rules allow or refuse it (refusals append nothing).
fn random_histories(leads: &Repository<Lead, SqliteStore>, rng: &mut Lcg, count: u64, steps: u32) {
    const FIRST: [&str; 3] = ["Casey", "Robin", "Alex"];
    // "Smith" and "smith" are different values (the rule is exact text).
    const LAST: [&str; 4] = ["David", "Davis", "Smith", "smith"];
    const PHONE: [&str; 4] = ["555-0001", "555-0002", "555-0003", "555-0004"];
    let hour = 3_600_000_000;
    for step in 0..steps {
        let id = rng.below(count).to_string();
        let now = Timestamp::from_unix_micros(1_590_000_000_000_000 + i64::from(step) * hour);
        let later = |hours: i64| Timestamp::from_unix_micros(now.as_unix_micros() + hours * hour);
        let (first, last, phone) = (rng.pick(&FIRST), rng.pick(&LAST), rng.pick(&PHONE));
        let command = leads.command(&id).occurred_at(now);
        // A refused command appends nothing, which the read models must
        // see too; the store must not fail.
        // Weighted so that most leads live a while before they convert or
        // are closed (after which every command is refused).
        let outcome = match rng.below(40) {
            0..=5 => command
                .execute(|l| l.initialize(first, last, phone))
                .map(drop),
            6..=13 => command.execute(Lead::contact).map(drop),
            14..=19 => command
                .execute(|l| l.set_followup(later(24), now))
                .map(drop),
            20..=27 => command
                .execute(|l| l.update_contact_details(first, last, phone))
                .map(drop),
            28..=32 => command
                .execute(|l| l.submit_order(later(48), now))
                .map(drop),
            33 | 34 => command.execute(|l| l.confirm_payment(now)).map(drop),
            35..=37 => command.execute(Lead::fail_payment).map(drop),
            _ => command.execute(|l| l.close("not now")).map(drop),
        };
        if let Err(ExecuteError::Store(error)) = outcome {
            panic!("step {step}, lead {id}: {error}");
        }
    }
}

/// Every lead's read-model rows are its per-stream forms, the analysis
/// status is the aggregate's, and a search for each value finds exactly the
/// leads that had it. Returns the names of the events stored, with repeats.
fn check_models_equal_per_stream(
    store: &SqliteStore,
    leads: &Repository<Lead, SqliteStore>,
    models: &Running,
    count: u64,
) -> Vec<String> {
    let mut events = Vec::new();
    let mut by_value = std::collections::BTreeMap::<String, BTreeSet<String>>::new();
    let mut funnel = std::collections::BTreeMap::<LeadStatus, (u64, u64)>::new();
    for n in 0..count {
        let id = n.to_string();
        let searched = block_on(search::project(store, &id)).unwrap();
        assert_eq!(
            search::lookup(&models.models, &id).unwrap(),
            searched,
            "lead {id}"
        );
        let analysed = block_on(analysis::project(store, &id)).unwrap();
        assert_eq!(
            analysis::lookup(&models.models, &id).unwrap(),
            analysed,
            "lead {id}"
        );
        let lead = leads.load(&id).unwrap();
        let history = leads.history(&id).unwrap();
        events.extend(history.iter().map(|e| e.name.clone()));
        let Some(searched) = searched else {
            assert_eq!(lead.version, 0);
            continue;
        };
        let analysed = analysed.unwrap();
        assert_eq!(searched.version, lead.version);
        assert_eq!(analysed.version, lead.version);
        assert_eq!(analysed.status, LeadStatus::of(&lead.status), "lead {id}");
        let followups = history.iter().filter(|e| e.name == "followup-set").count();
        assert_eq!(analysed.followups as usize, followups, "lead {id}");
        let entry = funnel.entry(analysed.status.unwrap()).or_default();
        entry.0 += 1;
        entry.1 += u64::from(analysed.followups);
        for value in searched
            .first_names
            .iter()
            .chain(&searched.last_names)
            .chain(&searched.phone_numbers)
        {
            by_value
                .entry(value.to_lowercase())
                .or_default()
                .insert(id.clone());
        }
    }
    for (value, ids) in by_value {
        let found: BTreeSet<String> = models.ids(&value).into_iter().collect();
        assert_eq!(found, ids, "search {value:?}");
    }
    let funnel: Vec<StatusCount> = funnel
        .into_iter()
        .map(|(status, (leads, followups))| StatusCount {
            status,
            leads,
            followups,
        })
        .collect();
    assert_eq!(analysis::by_status(&models.models).unwrap(), funnel);
    events
}

#[test]
fn the_read_models_equal_the_per_stream_forms_over_many_histories() {
    let store = SqliteStore::open_temporary().unwrap();
    let leads = Repository::<Lead, _>::new(store.clone());
    let mut rng = Lcg(2020);
    let count = 20;

    // Half before the runners start (they catch up)...
    random_histories(&leads, &mut rng, count, 300);
    let models = Running::start(&store);
    check_models_equal_per_stream(&store, &leads, &models, count);

    // ... half while they follow live, ...
    random_histories(&leads, &mut rng, count, 300);
    models.catch_up();
    check_models_equal_per_stream(&store, &leads, &models, count);

    // ... and some while they are stopped: started again, they resume.
    let Running {
        models: read_models,
        search,
        analysis,
    } = models;
    let (search, analysis) = (search.stop().unwrap(), analysis.stop().unwrap());
    random_histories(&leads, &mut rng, count, 150);
    let models = Running {
        search: read_models.start(search).unwrap(),
        analysis: read_models.start(analysis).unwrap(),
        models: read_models,
    };
    models.catch_up();
    let events = check_models_equal_per_stream(&store, &leads, &models, count);
    assert!(events.len() > 200, "{} events", events.len());
    let kinds: BTreeSet<&str> = events.iter().map(String::as_str).collect();
    assert_eq!(kinds.len(), 8, "every kind of event: {kinds:?}");

    // Every status has leads in it.
    let statuses: BTreeSet<LeadStatus> = analysis::by_status(&models.models)
        .unwrap()
        .into_iter()
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses.len(), 4, "{statuses:?}");
}

// ── the command line ────────────────────────────────────────────────────

/// Runs the `leads` binary on `db` with `args`: (success, stdout, stderr).
fn run(db: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leads"))
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("the leads binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_command_line_prints_the_models_as_the_seeds_do_and_searches() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leads.db");

    for _ in 0..2 {
        // The second run finds the lead and the read models in place.
        let (ok, out, err) = run(&db, &["demo"]);
        assert!(ok, "{err}");
        let per_stream = "-- per stream, folded from the lead's events:\n";
        let search_model = "\n-- read model `lead-search` in ";
        let analysis_model = "\n-- read model `lead-analysis` in ";
        let search_at = out.find("== its search model").expect("the search model");
        let analysis_at = out
            .find("== its analysis model")
            .expect("the analysis model");
        let (searched, analysed) = (&out[search_at..analysis_at], &out[analysis_at..]);
        assert!(
            searched.contains(&format!("{per_stream}{SEED_SEARCH}{search_model}")),
            "{out}"
        );
        assert!(
            searched.ends_with(&format!("leads.read-models:\n{SEED_SEARCH}\n")),
            "{out}"
        );
        assert!(
            analysed.contains(&format!("{per_stream}{SEED_ANALYSIS}{analysis_model}")),
            "{out}"
        );
        assert!(
            analysed.ends_with(&format!("leads.read-models:\n{SEED_ANALYSIS}")),
            "{out}"
        );
        assert!(searched.contains("es counts from 1, and has version 7"));
    }
    assert!(dir.path().join("leads.read-models").is_dir());

    let (ok, out, err) = run(&db, &["search", "555-2951"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "== leads that have or had \"555-2951\": 1\n\
         lead 12: Casey Davis, 555-8101 (version 7)\n  \
         first names ['Casey'], last names ['David', 'Davis'], phone numbers ['555-2951', '555-8101']\n"
    );
    let (ok, out, err) = run(&db, &["search", "davis"]);
    assert!(ok, "{err}");
    assert!(out.contains("lead 12: Casey Davis, 555-8101"), "{out}");
    let (ok, out, err) = run(&db, &["search", "nobody"]);
    assert!(ok, "{err}");
    assert_eq!(out, "== leads that have or had \"nobody\": none\n");

    // In memory there is no read model to search.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leads"))
        .args(["--memory", "search", "555-2951"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not with --memory"),
        "{out:?}"
    );
}
