//! `pv list`: the contracts with their versions and sizes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::render::{self, Format};
use crate::validate::{self, Since};

/// `pv list` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Contract files or directories (default: contracts/).
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// One row.
#[derive(Debug, Serialize)]
pub struct Row {
    /// Contract id.
    pub contract: String,
    /// Version.
    pub version: String,
    /// Number of stages.
    pub stages: usize,
    /// Falsifiers that are not retired.
    pub falsifiers: usize,
    /// Retired falsifiers.
    pub retired: usize,
    /// Acceptance criteria.
    pub criteria: usize,
    /// The file.
    pub file: String,
}

/// `pv list`. Files that do not load are reported on stderr and the exit code is 1.
pub fn run(args: Args) -> Result<ExitCode> {
    use std::io::Write;
    let paths = if args.paths.is_empty() {
        validate::default_paths()
    } else {
        args.paths
    };
    let report = validate::validate(&paths, &Since::Off);
    let rows: Vec<Row> = report
        .set
        .entries()
        .iter()
        .map(|e| {
            let c = &e.contract;
            let retired = c.falsifiers.iter().filter(|f| !f.is_live()).count();
            Row {
                contract: c.contract.clone(),
                version: c.version.clone(),
                stages: c.stages.len(),
                falsifiers: c.falsifiers.len() - retired,
                retired,
                criteria: c.acceptance_criteria.len(),
                file: e.source.path.display().to_string(),
            }
        })
        .collect();
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &rows)?;
            writeln!(out)?;
        }
        Format::Human => {
            let w = rows
                .iter()
                .map(|r| r.contract.len())
                .max()
                .unwrap_or(8)
                .max(8);
            writeln!(
                out,
                "{:<w$}  {:<9}  {:>6}  {:>10}  {:>7}  {:>8}",
                "CONTRACT", "VERSION", "STAGES", "FALSIFIERS", "RETIRED", "CRITERIA"
            )?;
            for r in &rows {
                writeln!(
                    out,
                    "{:<w$}  {:<9}  {:>6}  {:>10}  {:>7}  {:>8}",
                    r.contract, r.version, r.stages, r.falsifiers, r.retired, r.criteria
                )?;
            }
        }
    }
    let load_errors: Vec<_> = report
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    if !load_errors.is_empty() {
        render::emit_stderr(&load_errors, render::ColorMode::Auto);
        eprintln!("note: `pv validate` reports these; the list above may be incomplete");
        return Ok(ExitCode::from(if report.usage_error { 2 } else { 1 }));
    }
    Ok(ExitCode::SUCCESS)
}
