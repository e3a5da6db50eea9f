//! `SqliteStore` runs es-core's store conformance suite and model check,
//! unchanged (RELIABILITY T3/T3b in process, T16, S1, S2).

es_core::store_conformance_tests!(
    es_sqlite::SqliteStore::open_temporary().expect("a temporary store opens")
);
