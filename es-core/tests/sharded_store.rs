//! `ShardedStore` over `InMemoryStore`s runs the sharded conformance suite
//! and model check with 1, 2 and 4 shards, and, with one shard, the plain
//! suite unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use es_core::{InMemoryStore, ShardedStore};

fn sharded(n: usize) -> ShardedStore<InMemoryStore> {
    ShardedStore::new((0..n).map(|_| InMemoryStore::new()).collect()).expect("shards")
}

mod one_shard_plain {
    es_core::store_conformance_tests!(super::sharded(1));
}

mod one_shard {
    es_core::sharded_store_conformance_tests!(super::sharded(1));
}

mod two_shards {
    es_core::sharded_store_conformance_tests!(super::sharded(2));
}

mod four_shards {
    es_core::sharded_store_conformance_tests!(super::sharded(4));
}
