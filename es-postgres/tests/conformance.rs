//! `PostgresStore` runs es-core's store conformance suite and model check,
//! unchanged (RELIABILITY T3/T3b in process, T12's model, T16, S1, S2),
//! against a real PostgreSQL server.

mod common;

es_core::store_conformance_tests!(common::store());
