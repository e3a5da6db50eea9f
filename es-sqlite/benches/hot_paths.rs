//! Criterion benchmarks of the hot paths (placeholder until written).
fn main() {}
