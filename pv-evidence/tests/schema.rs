//! `evidence/record.schema.json` is generated from the Rust types; this keeps them in step.
//! Regenerate with `PV_BLESS=1 cargo test -p pv-evidence --test schema`.

use std::path::PathBuf;

#[test]
fn committed_schema_matches_the_types() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../evidence/record.schema.json");
    let mut generated =
        serde_json::to_string_pretty(&pv_evidence::record::record_schema()).unwrap();
    generated.push('\n');
    if std::env::var_os("PV_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with PV_BLESS=1 to create it)", path.display()));
    assert!(
        committed == generated,
        "{} is out of date: run PV_BLESS=1 cargo test -p pv-evidence --test schema",
        path.display()
    );
}
