//! `pv evidence report`: the traceability matrix, acceptance criterion -> stage -> falsifier ->
//! bound test -> runs (commit, hardware, metrics, outcome), flagging stale and missing evidence.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::status::{fmt_num, FalsifierState, RunView, StatusReport};
use crate::status_cmd::Locations;
use crate::status_load::{status_for, Paths};
use crate::status_render::esc;

/// `pv evidence` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: EvidenceCommand,
}

/// `pv evidence` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum EvidenceCommand {
    /// Traceability matrix: criterion -> stage -> falsifier -> test -> runs.
    Report(ReportArgs),
    /// Print the JSON Schema of evidence records.
    Schema,
    /// Sign run manifests with an SSH key (SSHSIG over the DSSE envelope's payload).
    Sign(crate::sign::Args),
    /// Write run manifests for loose records made before manifests existed (migration),
    /// grouped by the process that wrote them; marked as adopted.
    Adopt(crate::adopt::Args),
    /// Check every record and run manifest: digests, signatures, signer per tier, recomputed
    /// verdicts, contract versions in git. Exit 1 on any problem.
    Verify(crate::evidence_verify::Args),
}

/// Report format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Markdown.
    #[default]
    Markdown,
    /// Self-contained HTML.
    Html,
}

/// `pv evidence report` arguments.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub locations: Locations,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: ReportFormat,
    /// Runs listed per falsifier, newest first.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Write to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// One row of the matrix.
#[derive(Debug, Clone)]
pub struct Row {
    /// `AC-...` (or `-` for a falsifier no criterion names).
    pub criterion: String,
    /// Stages listing the falsifier.
    pub stages: Vec<String>,
    /// Falsifier id.
    pub falsifier: String,
    /// `file:line fn` of the bound test, if any.
    pub test: Option<String>,
    /// Newest runs first.
    pub runs: Vec<RunView>,
    /// Flags: `no test`, `no evidence`, `stale`, `failing`, `only skipped runs`.
    pub flags: Vec<String>,
}

/// Builds the rows from the derived report and the bound tests.
pub fn rows(
    report: &StatusReport,
    model: &crate::status::Model,
    tests: &BTreeMap<String, String>,
    max_runs: usize,
) -> Vec<Row> {
    let mut out = Vec::new();
    let stage_of = |fid: &str| -> Vec<String> {
        model
            .contracts
            .iter()
            .flat_map(|c| c.stages.iter())
            .filter(|s| s.falsifiers.iter().any(|f| f == fid))
            .map(|s| s.id.clone())
            .collect()
    };
    for c in &model.contracts {
        let mut named = std::collections::HashSet::new();
        let push = |criterion: &str, fid: &str, out: &mut Vec<Row>| {
            let Some(f) = report.falsifiers.get(fid) else {
                return;
            };
            let mut flags = Vec::new();
            match f.state {
                FalsifierState::Unimplemented => flags.push("no test".to_string()),
                FalsifierState::NeverRun if f.skipped_runs > 0 => {
                    flags.push("only skipped runs".to_string())
                }
                FalsifierState::NeverRun => flags.push("no evidence".to_string()),
                FalsifierState::Failing => flags.push("failing".to_string()),
                FalsifierState::PassStale => flags.push("stale".to_string()),
                FalsifierState::PassFresh => {}
            }
            out.push(Row {
                criterion: criterion.to_string(),
                stages: stage_of(fid),
                falsifier: fid.to_string(),
                test: tests.get(fid).cloned(),
                runs: f.runs.iter().rev().take(max_runs).cloned().collect(),
                flags,
            });
        };
        for a in &c.criteria {
            for fid in &a.falsifiers {
                named.insert(fid.clone());
                push(&a.id, fid, &mut out);
            }
        }
        for f in &c.falsifiers {
            if f.retired.is_none() && !named.contains(&f.id) {
                push("-", &f.id, &mut out);
            }
        }
    }
    out
}

fn run_line(r: &RunView) -> String {
    let metrics: Vec<String> = r
        .metrics
        .iter()
        .map(|(n, v, _)| format!("{n}={}", v.map_or("n/a".into(), fmt_num)))
        .collect();
    format!(
        "{} {} {}{} @{} on {} [{}]",
        r.timestamp,
        r.outcome,
        if r.fresh { "fresh" } else { "STALE" },
        r.stale_because
            .as_ref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default(),
        r.commit.as_deref().unwrap_or("?"),
        r.hardware,
        metrics.join(", ")
    )
}

/// Markdown rendering.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from("# Traceability: criterion -> stage -> falsifier -> test -> runs\n\n");
    s.push_str("| criterion | stages | falsifier | test | runs (newest first) | flags |\n");
    s.push_str("|---|---|---|---|---|---|\n");
    for r in rows {
        let runs: Vec<String> = r.runs.iter().map(run_line).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.criterion,
            r.stages.join(", "),
            r.falsifier,
            r.test.as_deref().unwrap_or("**none**"),
            if runs.is_empty() {
                "-".to_string()
            } else {
                runs.join("<br>").replace('|', "\\|")
            },
            if r.flags.is_empty() {
                "ok".to_string()
            } else {
                format!("**{}**", r.flags.join(", "))
            }
        );
    }
    s
}

/// HTML rendering (self-contained).
pub fn html(rows: &[Row]) -> String {
    let mut s = String::from(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>pv evidence report</title>
<style>body{font-family:system-ui,sans-serif;margin:24px}table{border-collapse:collapse}
th,td{border:1px solid #e1e4e8;padding:4px 8px;font-size:13px;vertical-align:top;text-align:left}
th{background:#f6f8fa}.flag{color:#d73a49;font-weight:bold}</style></head><body>
<h1>Traceability: criterion &rarr; stage &rarr; falsifier &rarr; test &rarr; runs</h1>
<table><tr><th>criterion</th><th>stages</th><th>falsifier</th><th>test</th><th>runs (newest first)</th><th>flags</th></tr>
"#,
    );
    for r in rows {
        let runs: Vec<String> = r.runs.iter().map(|x| esc(&run_line(x))).collect();
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"flag\">{}</td></tr>",
            esc(&r.criterion),
            esc(&r.stages.join(", ")),
            esc(&r.falsifier),
            esc(r.test.as_deref().unwrap_or("none")),
            if runs.is_empty() { "-".to_string() } else { runs.join("<br>") },
            esc(&r.flags.join(", "))
        );
    }
    s.push_str("</table></body></html>\n");
    s
}

/// `pv evidence ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        EvidenceCommand::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&pv_evidence::record::record_schema())?
            );
            Ok(ExitCode::SUCCESS)
        }
        EvidenceCommand::Report(a) => report(a),
        EvidenceCommand::Sign(a) => crate::sign::run(a),
        EvidenceCommand::Adopt(a) => crate::adopt::run(a),
        EvidenceCommand::Verify(a) => crate::evidence_verify::run(a),
    }
}

/// The records that count for nothing or that nobody vouches for (rules 16-18), after the
/// report: none of them is a row's evidence.
pub fn untrusted_section(report: &StatusReport, format: ReportFormat) -> String {
    use crate::status_render::{evidence_summary, untrusted_html, untrusted_text};
    match format {
        ReportFormat::Markdown => {
            let lines = untrusted_text(report);
            format!("\n```text\n{lines}{}\n```\n", evidence_summary(report))
        }
        ReportFormat::Html => untrusted_html(report),
    }
}

fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let paths: Paths = args.locations.paths()?;
    let (set, report) = status_for(&paths)?;
    let model = crate::status_load::model_from_contracts(&set, &paths.project);
    let mut tests = BTreeMap::new();
    for dir in paths.tests.iter().flatten().filter(|d| d.is_dir()) {
        let found = pv_evidence::bindings::scan_folder(dir)
            .with_context(|| format!("scanning {}", dir.display()))?;
        for b in found {
            let file = b
                .file
                .strip_prefix(&paths.root)
                .unwrap_or(&b.file)
                .display()
                .to_string();
            tests.insert(
                b.id.clone(),
                format!("{file}:{} {}", b.line, b.function.unwrap_or_default()),
            );
        }
    }
    let rows = rows(&report, &model, &tests, args.runs);
    let mut text = match args.format {
        ReportFormat::Markdown => markdown(&rows),
        ReportFormat::Html => html(&rows),
    };
    text.push_str(&untrusted_section(&report, args.format));
    match &args.output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
