//! Generates synthetic evidence records for benchmarking `pv status`.
//!
//! ```sh
//! cargo run --release -p pv --example gen_evidence -- /tmp/pv-bench 100000
//! time target/release/pv status --evidence /tmp/pv-bench > /dev/null
//! ```
//!
//! Records are spread over every live falsifier of `contracts/`, in runs a minute apart over the
//! last days, mostly passes, some failures and skips, and a mix of fresh and stale source digests, so
//! the derivation does all of its work. Written with the real writer (atomic, unique names), in
//! runs of 100 records, each with its manifest, as test processes write them.

use std::path::PathBuf;

use pv_evidence::manifest::{RunLog, RunStart};
use pv_evidence::record::{
    ContractRef, EvidenceRecord, GitInfo, Hardware, JsonF64, MetricResult, Outcome, TestRef,
    RECORD_FORMAT,
};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "/tmp/pv-bench".into()));
    let n: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let project = pv_project::Project::discover(&std::env::current_dir()?)?;
    let root = project.root.clone();
    let set = pv_contract::load_dir(root.join(&project.config.contracts.dirs[0]))?;
    // The function bound to each falsifier (records name their test).
    let mut bound = std::collections::HashMap::new();
    for p in project.test_packages()? {
        for b in pv_evidence::bindings::scan_package(&p.dir)? {
            bound.insert(b.id, b.function.unwrap_or_default());
        }
    }
    // One digest per distinct scope, as the runtime writes them.
    let mut digests = std::collections::HashMap::new();
    let falsifiers: Vec<_> = set
        .entries()
        .iter()
        .flat_map(|e| {
            let hash = pv_contract::digest::content_hash(
                std::fs::read(&e.source.path).unwrap_or_default(),
            );
            e.contract
                .falsifiers
                .iter()
                .filter(|f| f.is_live())
                .map(move |f| (e.contract.clone(), f.clone(), hash.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    anyhow::ensure!(!falsifiers.is_empty(), "no live falsifier in contracts/");
    std::fs::create_dir_all(&dir)?;
    let now = std::time::SystemTime::now();
    // A small deterministic generator (xorshift): reproducible without a dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const RUN_LEN: usize = 100;
    let mut run: Option<RunLog> = None;
    for i in 0..n {
        let (c, f, hash) = &falsifiers[i % falsifiers.len()];
        let scope = project.scope_for(&c.contract, &f.id).to_vec();
        let current = match digests.get(&scope) {
            Some(d) => Clone::clone(d),
            None => {
                let d = pv_evidence::digest::scope_digest(&root, &scope, &project.evidence_dirs())?;
                digests.insert(scope.clone(), d.clone());
                d
            }
        };
        let mut stale = current.clone();
        stale.sha256 = "0".repeat(64);
        let r = next();
        let outcome = match r % 100 {
            0..=84 => Outcome::Pass,
            85..=92 => Outcome::Fail,
            93..=95 => Outcome::Error,
            _ => Outcome::Skipped,
        };
        // Runs of 100 records each, one minute apart, ending now; records a second apart.
        let run_start =
            now - std::time::Duration::from_secs(60 * (n.div_ceil(RUN_LEN) - i / RUN_LEN) as u64);
        let t = run_start + std::time::Duration::from_secs((i % RUN_LEN) as u64);
        if i % RUN_LEN == 0 {
            if let Some(log) = run.take() {
                log.write()?;
            }
            run = Some(RunLog::new(
                &dir,
                RunStart {
                    run_id: format!("bench-{:06}", i / RUN_LEN),
                    invocation: None,
                    started: run_start,
                    command: vec!["cargo".into(), "test".into()],
                    host: "bench".into(),
                    project_file: None,
                    adopted: None,
                },
            ));
        }
        let record = EvidenceRecord {
            format: RECORD_FORMAT,
            falsifier: f.id.clone(),
            contract: ContractRef {
                id: c.contract.clone(),
                version: c.version.clone(),
                path: format!("contracts/{}.yaml", c.contract),
                sha256: hash.clone(),
                falsifier_sha256: Some(pv_contract::digest::claim_digest(c, f)),
            },
            outcome,
            reason: (outcome != Outcome::Pass).then(|| "synthetic".to_string()),
            metrics: f
                .metrics
                .iter()
                .map(|m| {
                    use pv_evidence::Op;
                    let op = Op::parse(m.op.as_str()).unwrap_or(Op::Eq);
                    let t = m.threshold;
                    // Values consistent with the outcome (pv recomputes every verdict).
                    let value = match (outcome, op) {
                        (Outcome::Pass, Op::Lt) => t - 1.0,
                        (Outcome::Pass, Op::Gt) => t + 1.0,
                        (Outcome::Pass, _) => t,
                        (_, Op::Le | Op::Lt | Op::Eq) => t + 1.0,
                        (_, Op::Ge | Op::Gt) => t - 1.0,
                    };
                    MetricResult {
                        name: m.name.clone(),
                        value: Some(JsonF64(value)),
                        op,
                        threshold: t,
                        unit: m.unit.clone(),
                        passed: op.holds(value, t),
                    }
                })
                .collect(),
            tier: match f.tier {
                pv_contract::Tier::Algorithm => pv_evidence::Tier::Algorithm,
                pv_contract::Tier::Hardware => pv_evidence::Tier::Hardware,
            },
            hardware: Hardware {
                cpu_model: Some("Synthetic CPU @ 3.0GHz".into()),
                cpus: 16,
                gpus: vec![],
                platform: "linux-x86_64".into(),
            },
            git: Some(GitInfo {
                commit: format!("{:040x}", next()),
                dirty: r % 2 == 0,
            }),
            source: if r % 3 == 0 { stale } else { current },
            rustc: "rustc 1.95.0".into(),
            timestamp: pv_evidence::timefmt::format_rfc3339_utc(t),
            duration_s: 0.5,
            test: TestRef {
                // The bound test's function, as the runtime writes it (pv checks it).
                name: format!(
                    "bench::{}",
                    bound
                        .get(&f.id)
                        .cloned()
                        .unwrap_or_else(|| f.id.to_lowercase().replace('-', "_"))
                ),
                file: "tests/bench.rs".into(),
            },
            notes: vec!["synthetic record for the pv status benchmark".into()],
            series: Default::default(),
            details: Default::default(),
            counterexample: None,
        };
        let written = pv_evidence::store::write_record(&dir, &record)?;
        if let Some(log) = run.as_mut() {
            let name = written
                .path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy();
            log.add(&name, &written.sha256, &record);
        }
    }
    if let Some(log) = run.take() {
        log.write()?;
    }
    eprintln!("wrote {n} records to {}", dir.display());
    Ok(())
}
