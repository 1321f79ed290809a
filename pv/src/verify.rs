//! `pv verify`: validate the contracts, run every falsifier, derive the status.
//!
//! 1. `pv validate` on the contracts (stops on errors: status over invalid contracts means
//!    nothing).
//! 2. `cargo test -p PKG... --no-fail-fast [--features ...] [-- --include-ignored]` over the
//!    project's test packages (`pv.toml` `[tests] packages`, else every package that depends on
//!    contract-macros) with `PV_EVIDENCE_DIR` set to a fresh run directory (default
//!    `<local evidence>/<UTC time>/`, git-ignored), printing each test's result as it comes.
//! 3. The dashboard derived from the contracts, the committed evidence (without other local
//!    runs) and this run's records, with `pv status`'s options.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context};

use crate::status::Inputs;
use crate::status_cmd;
use crate::status_load::{
    bound_ids, load_contracts, load_runs_excluding, model_from_contracts, now_ns, SourceFreshness,
};

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
    #[arg(long, value_name = "FILTER")]
    pub filter: Option<String>,
    /// Directory for this run's records (default: <pv.toml's local evidence>/<UTC time>/).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Skip contract validation.
    #[arg(long)]
    pub no_validate: bool,
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
    let run_dir = args.run_dir.clone().unwrap_or_else(|| {
        local.join(pv_evidence::timefmt::compact_utc(SystemTime::now()))
    });
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
    cmd.env("PV_EVIDENCE_DIR", &run_dir)
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

    // The dashboard: committed evidence (other local runs excluded) plus this run.
    let set = load_contracts(&paths.contracts)?;
    let model = model_from_contracts(&set, &paths.project);
    let mut dirs = paths.evidence.clone();
    if !dirs.iter().any(|d| run_dir.starts_with(d)) {
        dirs.push(run_dir.clone());
    }
    let loaded = load_runs_excluding(&dirs, &[local], std::slice::from_ref(&run_dir), None)?;
    let bound = bound_ids(paths.tests.as_deref())?;
    let fresh = SourceFreshness::new(&paths.project);
    let mut report = crate::status::derive(
        &model,
        &loaded.runs,
        &fresh,
        &Inputs {
            bound,
            now: now_ns(),
        },
    );
    report.unreadable = loaded.unreadable;
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
}
