//! The generated registry agrees with the contracts and with the test files.

use std::path::Path;

#[test]
fn registry_lists_every_contract_falsifier_once() {
    let contracts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts");
    let mut expected = 0;
    for f in std::fs::read_dir(&contracts).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&p).unwrap();
            // Falsifier definitions are the `- id: FALSIFY-...` items of the `falsifiers:` list.
            expected += text
                .lines()
                .filter(|l| l.trim_start().starts_with("- id: FALSIFY-"))
                .count();
        }
    }
    assert!(
        falsifiers::BROKEN_CONTRACTS.is_empty(),
        "{:?}",
        falsifiers::BROKEN_CONTRACTS
    );
    assert_eq!(falsifiers::REGISTRY.len(), expected);
    let mut ids: Vec<&str> = falsifiers::REGISTRY.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), expected, "duplicate ids in the registry");
    for e in falsifiers::REGISTRY {
        assert!(falsifiers::entry(e.id).is_some());
        assert!(!e.metrics.is_empty(), "{} has no metric", e.id);
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(e.contract_file)
                .is_file(),
            "{}",
            e.contract_file
        );
    }
}

#[test]
fn bound_tests_exist_where_the_registry_says() {
    for e in falsifiers::REGISTRY {
        assert!(e.tests.len() <= 1, "{} bound twice", e.id);
        for b in e.tests {
            // Binding files are relative to the project root (the folder of pv.toml).
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let text = std::fs::read_to_string(root.join(b.file)).unwrap();
            let line = text.lines().nth(b.line - 1).unwrap();
            assert!(
                line.contains(e.id),
                "{}:{} does not bind {}",
                b.file,
                b.line,
                e.id
            );
        }
    }
    // Unbound live falsifiers are reported, not hidden.
    for e in falsifiers::unbound() {
        assert!(e.tests.is_empty() && e.retired.is_none());
    }
}
