//! Compile-time behaviour of `#[falsifier]`, against the fixture contract in `tests/ui/contracts`
//! (so the expected messages do not change when real contracts do). Bless new expectations with
//! `TRYBUILD=overwrite cargo test -p falsifiers --test meta_ui`.

#[test]
fn falsifier_macro_compile_errors() {
    // The macro reads this when the cases are compiled (by a child cargo, which inherits it).
    std::env::set_var(
        "PV_CONTRACTS_DIR",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ui/contracts"),
    );
    std::env::remove_var("PV_DEVICES");
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
