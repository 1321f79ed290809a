//! `pv status`: the dashboard derived from contracts and evidence (rules: `docs/status.md`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use pv_contract::ContractSet;
use pv_project::Project;

use crate::status::{StageStatus, StatusReport};
use crate::status_load::{status_for, Paths};
use crate::status_render;

/// Output format of `pv status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Terminal table per contract.
    #[default]
    Table,
    /// The whole derivation as JSON.
    Json,
    /// Markdown tables.
    Markdown,
    /// A self-contained HTML page (inline SVG, no network).
    Html,
}

/// Where to look (shared by `status`, `verify`, `evidence report` and the other commands that
/// read evidence). Defaults come from the project file, `pv.toml`.
#[derive(Debug, Clone, clap::Args)]
pub struct Locations {
    /// The project file (default: `pv.toml` in the current directory or its nearest ancestor
    /// that has one; without one, the defaults rooted at the cargo workspace root).
    #[arg(long, value_name = "FILE", conflicts_with = "root")]
    pub config: Option<PathBuf>,
    /// Project root: its `pv.toml` if it has one, else the defaults rooted there.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Contracts directory (default: `[contracts] dirs` of pv.toml, `contracts`).
    #[arg(long, value_name = "DIR")]
    pub contracts: Option<PathBuf>,
    /// Evidence directory, read recursively; repeatable (default: pv.toml's committed and
    /// local evidence folders).
    #[arg(long = "evidence", value_name = "DIR")]
    pub evidence: Vec<PathBuf>,
    /// A folder of bound tests, scanned like a package (`tests/*.rs`, `src/**/*.rs`, `*.rs`
    /// in it) (default: the packages of `[tests] packages`, else every package that depends
    /// on contract-macros).
    #[arg(long, value_name = "DIR")]
    pub tests: Option<PathBuf>,
    /// Re-read every record instead of using the summary cache (`$PV_CACHE_DIR`, else
    /// `~/.cache/pv`; records are immutable, so the cache only saves re-parsing).
    #[arg(long)]
    pub no_cache: bool,
}

impl Locations {
    /// The project these options name.
    pub fn project(&self) -> anyhow::Result<Project> {
        Ok(match (&self.config, &self.root) {
            (Some(file), _) => Project::load(file)?,
            (None, Some(root)) => match root.join(pv_project::PROJECT_FILE) {
                f if f.is_file() => Project::load(&f)?,
                _ => Project::defaults(root),
            },
            (None, None) => {
                let cwd = std::env::current_dir().context("reading the current directory")?;
                Project::discover(&cwd)?
            }
        })
    }

    /// Resolves the defaults.
    pub fn paths(&self) -> anyhow::Result<Paths> {
        let mut p = Paths::for_project(self.project()?)?;
        if let Some(c) = &self.contracts {
            p.contracts = vec![c.clone()];
        }
        if !self.evidence.is_empty() {
            p.evidence = self.evidence.clone();
        }
        if let Some(t) = &self.tests {
            p.tests = Some(vec![t.clone()]);
        }
        p.cache = !self.no_cache;
        Ok(p)
    }
}

/// `pv status` arguments.
#[derive(Debug, clap::Args)]
#[group(id = "status_args")]
pub struct Args {
    #[command(flatten)]
    pub locations: Locations,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Write the output to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Exit 1 if any stage is FAILING or a --require is not met.
    #[arg(long)]
    pub check: bool,
    /// With --check: STAGE=STATUS, the stage must be at least at STATUS's level
    /// (STALE < ALGORITHM_LEVEL < DISCHARGED; PENDING is met by anything but FAILING or
    /// UNIMPLEMENTED). Repeatable.
    #[arg(long, value_name = "STAGE=STATUS", requires = "check")]
    pub require: Vec<String>,
    /// With --check: do not fail on invalid evidence records (they still count for nothing and
    /// are listed). For migrating old evidence only.
    #[arg(long, requires = "check")]
    pub allow_invalid: bool,
    /// Count only records whose run is signed by a key `[trust]` in pv.toml allows for the
    /// record's tier (needs a `[trust]` table; `require_attested = true` there makes it the
    /// default).
    #[arg(long)]
    pub require_attested: bool,
    /// Also write a JUnit XML file (one test case per stage).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// A parsed `--require`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Stage id.
    pub stage: String,
    /// Minimum status.
    pub status: StageStatus,
}

/// Parses `STAGE=STATUS`.
pub fn parse_requirement(s: &str) -> anyhow::Result<Requirement> {
    let Some((stage, status)) = s.split_once('=') else {
        bail!("--require {s:?}: expected STAGE=STATUS, e.g. M-QK-1.1=ALGORITHM_LEVEL");
    };
    let Some(status) = StageStatus::parse(status) else {
        bail!(
            "--require {s:?}: unknown status {status:?} (PENDING, STALE, ALGORITHM_LEVEL, DISCHARGED)"
        );
    };
    Ok(Requirement {
        stage: stage.trim().to_string(),
        status,
    })
}

/// Whether `actual` meets a requirement of `required`.
pub fn meets(actual: StageStatus, required: StageStatus) -> bool {
    use StageStatus::*;
    match required {
        // A requirement of PENDING says only "not broken".
        Pending => !matches!(actual, Failing | Unimplemented),
        Failing | Unimplemented => true,
        _ => actual.level() >= required.level(),
    }
}

/// The problems `--check` reports (empty: the check passes).
pub fn check_problems(
    report: &StatusReport,
    reqs: &[Requirement],
    allow_invalid: bool,
) -> Vec<String> {
    let mut problems: Vec<String> = report
        .stages()
        .filter(|(_, s)| s.status == StageStatus::Failing)
        .map(|(c, s)| format!("{c} {} is FAILING", s.id))
        .collect();
    if !allow_invalid && !report.invalid.is_empty() {
        problems.push(format!(
            "{} invalid evidence record(s) (listed above; --allow-invalid tolerates them while migrating)",
            report.invalid.len()
        ));
    }
    if !allow_invalid && !report.missing.is_empty() {
        problems.push(format!(
            "{} record(s) listed in run manifests are missing (listed above)",
            report.missing.len()
        ));
    }
    for r in reqs {
        match report.stage(&r.stage) {
            None => problems.push(format!("--require {}: no such stage", r.stage)),
            Some(s) if !meets(s.status, r.status) => {
                problems.push(format!("{} is {}, required {}", s.id, s.status, r.status))
            }
            Some(_) => {}
        }
    }
    problems
}

/// `(falsifier, metric) -> (op, threshold)` for the HTML charts.
pub fn thresholds(set: &ContractSet) -> BTreeMap<(String, String), (String, f64)> {
    set.falsifiers()
        .flat_map(|(_, f)| {
            f.metrics.iter().map(move |m| {
                (
                    (f.id.clone(), m.name.clone()),
                    (m.op.as_str().to_string(), m.threshold),
                )
            })
        })
        .collect()
}

/// Renders `report` in `format`.
pub fn render(report: &StatusReport, set: &ContractSet, format: Format) -> String {
    match format {
        Format::Table => status_render::table(report),
        Format::Json => status_render::json(report),
        Format::Markdown => status_render::markdown(report),
        Format::Html => status_render::html(report, set),
    }
}

fn write_out(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match path {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            // A closed pipe (`pv status | head`) is not an error worth reporting.
            match out.write_all(text.as_bytes()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => r.context("writing to stdout"),
            }
        }
    }
}

/// Prints the status and applies `--check` / `--junit`; shared with `pv verify`.
pub fn report_and_check(
    report: &StatusReport,
    set: &ContractSet,
    args: &Args,
) -> anyhow::Result<ExitCode> {
    let reqs = args
        .require
        .iter()
        .map(|r| parse_requirement(r))
        .collect::<anyhow::Result<Vec<_>>>()?;
    write_out(args.output.as_deref(), &render(report, set, args.format))?;
    if let Some(j) = &args.junit {
        write_out(Some(j), &status_render::junit(report))?;
    }
    if args.check {
        let problems = check_problems(report, &reqs, args.allow_invalid);
        if !problems.is_empty() {
            for p in &problems {
                eprintln!("check failed: {p}");
            }
            return Ok(ExitCode::from(1));
        }
        eprintln!("check passed");
    }
    Ok(ExitCode::SUCCESS)
}

/// `pv status`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut paths = args.locations.paths()?;
    if args.require_attested && paths.project.config.trust.is_none() {
        bail!(
            "--require-attested needs a trust policy: add a [trust] table to {} (allowed_signers, and the principals allowed per tier; docs/project-file.md)",
            paths
                .project
                .file
                .as_ref()
                .map_or_else(|| pv_project::PROJECT_FILE.to_string(), |f| f.display().to_string())
        );
    }
    paths.require_attested = args.require_attested;
    let (set, report) = status_for(&paths)?;
    report_and_check(&report, &set, &args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definitions_are_consistent() {
        use clap::Args as _;
        for cmd in [
            Args::augment_args(clap::Command::new("status")),
            crate::verify::Args::augment_args(clap::Command::new("verify")),
            crate::evidence_cmd::Args::augment_args(clap::Command::new("evidence")),
        ] {
            cmd.debug_assert();
        }
    }

    #[test]
    fn requirements_parse_and_compare() {
        let r = parse_requirement("M-QK-1.1=algorithm_level").unwrap();
        assert_eq!(r.stage, "M-QK-1.1");
        assert_eq!(r.status, StageStatus::AlgorithmLevel);
        assert!(parse_requirement("M-QK-1.1").is_err());
        assert!(parse_requirement("M-QK-1.1=DONE").is_err());
        use StageStatus::*;
        assert!(meets(Discharged, AlgorithmLevel));
        assert!(meets(AlgorithmLevel, AlgorithmLevel));
        assert!(!meets(Stale, AlgorithmLevel));
        assert!(!meets(Pending, Stale));
        assert!(meets(Pending, Pending));
        assert!(!meets(Failing, Pending));
        assert!(!meets(Unimplemented, Pending));
    }
}
