//! Benchmark of `pv validate` (run with `cargo bench -p pv --bench validate -- DIR`).
//!
//! Not a timed test: it prints figures. Generate input first with
//! `scripts/gen-contracts.py /tmp/bench-contracts 1000`. It reports the whole validation
//! (as `pv validate --no-since DIR` runs it, in process, best and median of several runs) and a
//! single-threaded breakdown by phase, to show where the time goes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pv::validate::{validate, Since};
use pv_contract::load;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/bench-contracts"));
    let files = match load::contract_files(&dir) {
        Ok(f) if !f.is_empty() => f,
        _ => {
            eprintln!(
                "no contracts in {}: run scripts/gen-contracts.py {} 1000 first",
                dir.display(),
                dir.display()
            );
            std::process::exit(2);
        }
    };
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "input: {} files, {:.1} MB, {} threads",
        files.len(),
        bytes as f64 / 1e6,
        rayon::current_num_threads()
    );

    let runs = 7;
    let mut whole = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let report = validate(std::slice::from_ref(&dir), &Since::Off);
        whole.push(t.elapsed());
        assert_eq!(report.errors(), 0, "the generated contracts must be valid");
    }
    println!(
        "validate (all rules, no git): best {:.3} s, median {:.3} s over {runs} runs",
        whole
            .iter()
            .min()
            .copied()
            .unwrap_or_default()
            .as_secs_f64(),
        median(whole).as_secs_f64()
    );

    // Single-threaded phases.
    let t = Instant::now();
    let sources: Vec<_> = files
        .iter()
        .map(|f| load::read_source(f).expect("readable"))
        .collect();
    let read = t.elapsed();
    let t = Instant::now();
    let trees: Vec<_> = sources
        .iter()
        .map(|s| load::parse_tree(s).expect("parses").0)
        .collect();
    let parse = t.elapsed();
    let t = Instant::now();
    let mut schema_errors = 0;
    for (s, tree) in sources.iter().zip(&trees) {
        schema_errors += pv::schema::check(s, tree).len();
    }
    let schema = t.elapsed();
    assert_eq!(schema_errors, 0);
    let t = Instant::now();
    let loaded: Vec<_> = sources
        .iter()
        .zip(trees)
        .map(|(s, tree)| load::Loaded {
            contract: load::deserialize(s, &tree).expect("deserializes"),
            source: s.clone(),
            tree,
        })
        .collect();
    let de = t.elapsed();
    let t = Instant::now();
    let set = pv_contract::ContractSet::new(loaded);
    let diags = pv_contract::rules::check(&set);
    let rules = t.elapsed();
    assert!(diags.iter().all(|d| !d.is_error()));
    println!(
        "single thread: read {:.3} s, yaml {:.3} s, schema {:.3} s, types {:.3} s, rules {:.3} s",
        read.as_secs_f64(),
        parse.as_secs_f64(),
        schema.as_secs_f64(),
        de.as_secs_f64(),
        rules.as_secs_f64()
    );
}
