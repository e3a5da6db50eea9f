//! Compile tests of the derives: every diagnostic has a fail case with its
//! checked-in `.stderr`; pass cases cover the supported shapes.
//!
//! Re-bless after a deliberate change: `TRYBUILD=overwrite cargo test -p es-derive --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
