//! `pv verify`: validate the contracts, run every falsifier, derive the status.
//!
//! 1. `pv validate` on the contracts (stops on errors: status over invalid contracts means
//!    nothing).
//! 2. `cargo test -p PKG... --no-fail-fast [--features ...] [-- --include-ignored]` over the
//!    project's test packages (`pv.toml` `[tests] packages`, else every package that depends on
//!    contract-macros) with `PV_EVIDENCE_DIR` set to a fresh run directory (default
//!    `<local evidence>/<UTC time>/`, git-ignored), printing each test's result as it comes.
//!    Each test process writes a run manifest beside its records, naming this invocation; with
//!    `--sign KEY` (or `$PV_SIGNING_KEY`) they are signed when the tests are done.
//! 3. The dashboard derived from the contracts, the committed evidence (without other local
//!    runs) and this run's records, with `pv status`'s options.
//!
//! `--partition K/N` runs only shard K of N (K is 1-based), for CI jobs that split the
//! falsifiers between machines: a falsifier belongs to shard `fnv1a64(id) % N + 1` (FNV-1a,
//! 64-bit, over the id's bytes), so the split depends only on the ids, never on the order in
//! which they are found or on the machine. The bound tests are found by the same textual scan
//! as `pv status` ([`pv_evidence::bindings::scan_package`]) over the test packages; their
//! function names are passed to the test harness as filters. A libtest filter matches every
//! test whose path *contains* it (`--exact` is not usable: module paths are not known), so a
//! shard may also run another test whose name contains a selected function's name. Tests
//! without a `#[falsifier]` attribute run in no shard.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context};

use crate::status_cmd;
use crate::status_load::status_for_selected;

/// `pv verify` arguments.
#[derive(Debug, clap::Args)]
#[group(id = "verify_args")]
pub struct Args {
    /// Also run the ignored (hardware-tier) falsifiers: passes `--include-ignored` to the tests.
    #[arg(long)]
    pub include_ignored: bool,
    /// Cargo features of the test packages (e.g. `cuda`), comma-separated.
    #[arg(long, value_name = "FEATURES")]
    pub features: Option<String>,
    /// Build the tests with `--release`.
    #[arg(long)]
    pub release: bool,
    /// Only run tests whose name contains this (passed to the test harness).
    #[arg(long, value_name = "FILTER", conflicts_with = "partition")]
    pub filter: Option<String>,
    /// Run only shard K of N (1-based, e.g. `2/4`): the falsifiers whose id's FNV-1a hash
    /// modulo N is K-1. The N shards together run every bound falsifier exactly once; tests
    /// without `#[falsifier]` run in none. Each selected test's function name is passed to the
    /// test harness as a filter, which also matches any other test whose name contains it.
    #[arg(long, value_name = "K/N", value_parser = parse_partition)]
    pub partition: Option<Partition>,
    /// Directory for this run's records, relative to the current folder (default: <pv.toml's
    /// local evidence>/<UTC time>/).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Skip contract validation.
    #[arg(long)]
    pub no_validate: bool,
    /// Sign this run's manifests with this OpenSSH private key (default: $PV_SIGNING_KEY when
    /// set; otherwise the runs stay unsigned).
    #[arg(long, value_name = "FILE")]
    pub sign: Option<PathBuf>,
    /// The dashboard's options (as `pv status`).
    #[command(flatten)]
    pub status: status_cmd::Args,
}

/// Counts of test results seen in the harness output.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// `... ok`
    pub ok: usize,
    /// `... FAILED`
    pub failed: usize,
    /// `... ignored`
    pub ignored: usize,
}

/// Parses one libtest line `test NAME ... RESULT`; returns (name, result).
pub fn parse_test_line(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("test ")?;
    let (name, result) = rest.split_once(" ... ")?;
    let result = result.trim();
    let word = result.split([' ', ',']).next()?;
    matches!(word, "ok" | "FAILED" | "ignored").then_some((name, word))
}

/// Shard K of N (`--partition K/N`), 1 <= K <= N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// The shard, 1-based.
    pub k: u64,
    /// The number of shards.
    pub n: u64,
}

impl Partition {
    /// Whether falsifier `id` belongs to this shard.
    pub fn contains(&self, id: &str) -> bool {
        shard_of(id, self.n) == self.k
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// Parses `K/N` (whole numbers, 1 <= K <= N); the error names the expected form.
pub fn parse_partition(s: &str) -> Result<Partition, String> {
    const FORM: &str = "expected K/N with whole numbers 1 <= K <= N, e.g. 2/4 (shard 2 of 4)";
    let Some((k, n)) = s.trim().split_once('/') else {
        return Err(format!("`{s}`: {FORM}"));
    };
    let num = |x: &str| -> Option<u64> {
        let x = x.trim();
        (!x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()))
            .then(|| x.parse().ok())
            .flatten()
    };
    let (Some(k), Some(n)) = (num(k), num(n)) else {
        return Err(format!("`{s}`: {FORM}"));
    };
    if n == 0 {
        return Err(format!(
            "`{s}`: N, the number of shards, must be at least 1; {FORM}"
        ));
    }
    if k == 0 {
        return Err(format!("`{s}`: shards are numbered from 1; {FORM}"));
    }
    if k > n {
        return Err(format!("`{s}`: shard {k} of {n} does not exist; {FORM}"));
    }
    Ok(Partition { k, n })
}

/// FNV-1a, 64-bit, of `bytes`: a stable hash (the same on every machine and every version).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The shard (1-based, out of `n` >= 1) that falsifier `id` belongs to:
/// `fnv1a64(id) % n + 1`.
pub fn shard_of(id: &str, n: u64) -> u64 {
    fnv1a64(id.as_bytes()) % n.max(1) + 1
}

/// The bindings of shard `p`, in the order given, and the test-name filters that run them
/// (each function name once, sorted). Bindings whose function name was not found are returned
/// apart: no filter can select them.
pub fn select_shard(
    bindings: &[pv_evidence::bindings::Binding],
    p: Partition,
) -> (
    Vec<&pv_evidence::bindings::Binding>,
    Vec<String>,
    Vec<&pv_evidence::bindings::Binding>,
) {
    let mut chosen = Vec::new();
    let mut unnamed = Vec::new();
    let mut filters = std::collections::BTreeSet::new();
    for b in bindings.iter().filter(|b| p.contains(&b.id)) {
        match &b.function {
            Some(f) => {
                filters.insert(f.clone());
                chosen.push(b);
            }
            None => unnamed.push(b),
        }
    }
    (chosen, filters.into_iter().collect(), unnamed)
}

/// `pv verify`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let paths = args.status.locations.paths()?;
    let root = paths.root.clone();

    if !args.no_validate {
        let shown: Vec<String> = paths
            .contracts
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        eprintln!("pv verify: validating {}", shown.join(", "));
        let code = crate::validate::run(crate::validate::Args {
            // The project's own folders are checked as a whole project (PV061 too).
            paths: match (&args.status.locations.contracts, &paths.project.file) {
                (None, Some(_)) => Vec::new(),
                _ => paths.contracts.clone(),
            },
            config: paths.project.file.clone(),
            since: None,
            no_since: false,
            format: Default::default(),
            color: Default::default(),
        })?;
        if code != ExitCode::SUCCESS {
            eprintln!("pv verify: contracts are not valid; fix them first (pv validate)");
            return Ok(ExitCode::from(1));
        }
    }

    let local = paths.project.local_evidence();
    let run_dir = args
        .run_dir
        .clone()
        .unwrap_or_else(|| local.join(pv_evidence::timefmt::compact_utc(SystemTime::now())));
    // Absolute: the tests run in their package's folder, not here, and read it as given.
    let run_dir = if run_dir.is_relative() {
        std::env::current_dir()
            .context("reading the current directory")?
            .join(run_dir)
    } else {
        run_dir
    };
    let packages = paths.project.test_packages()?;
    if packages.is_empty() {
        bail!(
            "no package holds bound tests: none depends on contract-macros, and {} names none \
             under [tests] packages (pv init writes an example)",
            paths
                .project
                .file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "no pv.toml".to_string())
        );
    }
    // --partition: the function names of this shard's bound tests, passed as filters.
    let mut shard_filters = Vec::new();
    if let Some(p) = args.partition {
        let mut bindings = Vec::new();
        for pkg in &packages {
            bindings.extend(
                pv_evidence::bindings::scan_package(&pkg.dir).with_context(|| {
                    format!("scanning {} for #[falsifier] tests", pkg.dir.display())
                })?,
            );
        }
        let (chosen, filters, unnamed) = select_shard(&bindings, p);
        for b in &unnamed {
            eprintln!(
                "pv verify: warning: {} ({}:{}): no function found after the attribute; not run",
                b.id,
                b.file.display(),
                b.line
            );
        }
        let mut ids: Vec<&str> = chosen.iter().map(|b| b.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let total = {
            let mut all: Vec<&str> = bindings.iter().map(|b| b.id.as_str()).collect();
            all.sort_unstable();
            all.dedup();
            all.len()
        };
        if filters.is_empty() {
            eprintln!("pv verify: shard {p} holds no falsifier (of {total} bound); nothing to run");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "pv verify: shard {p}: {} of {total} bound falsifiers: {}",
            ids.len(),
            ids.join(", ")
        );
        shard_filters = filters;
    }
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("creating the run directory {}", run_dir.display()))?;
    eprintln!(
        "pv verify: evidence of this run goes to {}",
        run_dir.display()
    );

    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(&root).arg("test");
    for p in &packages {
        cmd.args(["-p", &p.name]);
    }
    cmd.arg("--no-fail-fast");
    if args.release {
        cmd.arg("--release");
    }
    if let Some(f) = &args.features {
        cmd.args(["--features", f]);
    }
    cmd.arg("--");
    if args.include_ignored {
        cmd.arg("--include-ignored");
    }
    if let Some(f) = &args.filter {
        cmd.arg(f);
    }
    cmd.args(&shard_filters);
    // Every test process writes its own run manifest; these name the invocation they belong
    // to (so it can be signed below) and the command that started them.
    let invocation = format!(
        "verify-{}-{}",
        pv_evidence::timefmt::compact_utc(SystemTime::now()),
        std::process::id()
    );
    let command: Vec<String> = std::env::args().collect();
    cmd.env("PV_EVIDENCE_DIR", &run_dir)
        .env(pv_evidence::manifest::INVOCATION_ENV, &invocation)
        .env(pv_evidence::manifest::RUN_COMMAND_ENV, command.join(" "))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!("pv verify: {:?}", cmd);
    let start = Instant::now();
    let mut child = cmd.spawn().context("starting cargo test")?;
    let stdout = child.stdout.take().context("capturing cargo's output")?;
    let mut progress = Progress::default();
    let mut in_failures = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        if let Some((name, result)) = parse_test_line(&line) {
            match result {
                "ok" => progress.ok += 1,
                "FAILED" => progress.failed += 1,
                _ => progress.ignored += 1,
            }
            let n = progress.ok + progress.failed + progress.ignored;
            eprintln!(
                "[{n:>3} | {:>6.1}s] {result:<7} {name}",
                start.elapsed().as_secs_f64()
            );
            continue;
        }
        // Keep the harness's failure details (panic messages name metric, threshold, if_fails).
        if line.starts_with("failures:") {
            in_failures = true;
        }
        if line.starts_with("test result:") {
            in_failures = false;
        }
        if in_failures {
            eprintln!("{line}");
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    eprintln!(
        "pv verify: {} passed, {} failed, {} ignored in {:.1}s (cargo test {})",
        progress.ok,
        progress.failed,
        progress.ignored,
        start.elapsed().as_secs_f64(),
        if status.success() { "ok" } else { "failed" }
    );
    if !status.success() && progress.ok + progress.failed + progress.ignored == 0 {
        bail!("cargo test failed before running any test (a build error? see above)");
    }

    let signing = match &args.sign {
        Some(k) => Some(crate::sign::signing_key(Some(k))?),
        None if std::env::var_os(crate::sign::SIGNING_KEY_ENV).is_some_and(|v| !v.is_empty()) => {
            Some(crate::sign::signing_key(None)?)
        }
        None => None,
    };
    if let Some(key) = &signing {
        let (added, _) = crate::sign::sign_all(
            std::slice::from_ref(&run_dir),
            key,
            Some(&invocation),
            false,
        )?;
        eprintln!(
            "pv verify: signed {added} run manifest(s) with {}",
            key.fingerprint()
        );
    }

    // The dashboard: committed evidence (other local runs excluded) plus this run.
    let mut dashboard = paths.clone();
    if !dashboard.evidence.iter().any(|d| run_dir.starts_with(d)) {
        dashboard.evidence.push(run_dir.clone());
    }
    dashboard.cache = false;
    dashboard.require_attested = args.status.require_attested;
    let (set, report) = status_for_selected(&dashboard, &[local], std::slice::from_ref(&run_dir))?;
    let code = status_cmd::report_and_check(&report, &set, &args.status)?;
    if !status.success() {
        return Ok(ExitCode::from(1));
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_lines() {
        assert_eq!(
            parse_test_line("test trace::spec_errors ... ok"),
            Some(("trace::spec_errors", "ok"))
        );
        assert_eq!(
            parse_test_line("test gpu_parity ... ignored, needs a GPU: x"),
            Some(("gpu_parity", "ignored"))
        );
        assert_eq!(parse_test_line("test a ... FAILED"), Some(("a", "FAILED")));
        assert_eq!(parse_test_line("test result: ok. 3 passed"), None);
        assert_eq!(parse_test_line("running 3 tests"), None);
    }

    #[test]
    fn partitions_parse_and_bad_ones_name_the_form() {
        assert_eq!(parse_partition("1/1"), Ok(Partition { k: 1, n: 1 }));
        assert_eq!(parse_partition("2/4"), Ok(Partition { k: 2, n: 4 }));
        assert_eq!(parse_partition(" 4/4 "), Ok(Partition { k: 4, n: 4 }));
        for bad in [
            "3/2", "0/0", "0/3", "a/b", "1/0", "", "2", "1/2/3", "-1/2", "+1/2", "1/ ", "1.0/2",
        ] {
            let e = parse_partition(bad).expect_err(bad);
            assert!(
                e.contains("expected K/N") && e.contains("2/4"),
                "{bad}: {e}"
            );
        }
        assert!(parse_partition("0/3")
            .unwrap_err()
            .contains("numbered from 1"));
        assert!(parse_partition("1/0").unwrap_err().contains("at least 1"));
        assert!(parse_partition("3/2")
            .unwrap_err()
            .contains("does not exist"));
    }

    #[test]
    fn fnv1a64_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn shards_partition_the_ids_exactly() {
        let ids: Vec<String> = (0..200)
            .map(|i| format!("FALSIFY-AREA{}-CHECK-{i:03}", i % 7))
            .collect();
        for n in 1..=9 {
            let mut seen = vec![0usize; ids.len()];
            for k in 1..=n {
                let p = Partition { k, n };
                for (i, id) in ids.iter().enumerate() {
                    if p.contains(id) {
                        seen[i] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "n = {n}: {seen:?}");
            for id in &ids {
                let s = shard_of(id, n);
                assert!((1..=n).contains(&s));
                assert_eq!(s, fnv1a64(id.as_bytes()) % n + 1);
            }
        }
        // 200 ids over 4 shards: none empty (the hash spreads them).
        for k in 1..=4 {
            assert!(ids.iter().any(|id| shard_of(id, 4) == k), "shard {k} empty");
        }
    }

    #[test]
    fn a_shard_selects_its_bindings_and_filters() {
        use pv_evidence::bindings::Binding;
        let b = |id: &str, f: Option<&str>| Binding {
            id: id.to_string(),
            file: PathBuf::from("tests/t.rs"),
            line: 1,
            function: f.map(str::to_string),
        };
        let bindings: Vec<Binding> = (0..40)
            .map(|i| b(&format!("FALSIFY-X-{i:03}"), Some(&format!("check_{i}"))))
            .chain([
                b("FALSIFY-X-000", Some("check_0_again")),
                b("FALSIFY-X-999", None),
            ])
            .collect();
        let mut union = Vec::new();
        for k in 1..=3 {
            let p = Partition { k, n: 3 };
            let (chosen, filters, unnamed) = select_shard(&bindings, p);
            assert!(chosen.iter().all(|b| p.contains(&b.id)));
            assert_eq!(filters.len(), chosen.len());
            assert!(
                filters.windows(2).all(|w| w[0] < w[1]),
                "sorted, no duplicates"
            );
            assert_eq!(unnamed.is_empty(), !p.contains("FALSIFY-X-999"));
            union.extend(filters);
        }
        union.sort();
        assert_eq!(union.len(), 41, "every named binding in exactly one shard");
        // Both functions of one falsifier land in the same shard.
        let s = shard_of("FALSIFY-X-000", 3);
        let (_, filters, _) = select_shard(&bindings, Partition { k: s, n: 3 });
        assert!(
            filters.contains(&"check_0".to_string())
                && filters.contains(&"check_0_again".to_string())
        );
    }
}
