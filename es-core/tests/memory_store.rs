//! `InMemoryStore` runs the store conformance suite and the model check.

es_core::store_conformance_tests!(es_core::InMemoryStore::new());
