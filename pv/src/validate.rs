//! `pv validate`: YAML, JSON Schema, semantic rules and history rules over contract files.
//! It reads files and git objects and writes nothing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use pv_contract::load::{self, Loaded};
use pv_contract::rules::{self, codes};
use pv_contract::{ContractSet, Diagnostic};
use rayon::prelude::*;

use crate::render::{self, ColorMode, Format};
use crate::{git, schema};

/// `pv validate` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Contract files or directories of contracts (default: contracts/).
    pub paths: Vec<PathBuf>,
    /// Compare with this git revision: a changed contract must bump its version, amendment
    /// entries must not change, falsifiers must be retired rather than deleted. Defaults to HEAD
    /// inside a git repository.
    #[arg(long, value_name = "REV")]
    pub since: Option<String>,
    /// Skip the history rules.
    #[arg(long, conflicts_with = "since")]
    pub no_since: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Colour for human output.
    #[arg(long, value_enum, default_value_t)]
    pub color: ColorMode,
    /// The project file (default: `pv.toml` found upward from the current directory). Its
    /// `[contracts] dirs` are the default paths; its devices, fixtures and scopes are checked
    /// against the contracts (PV060, PV061).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Which revision to compare with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// HEAD when inside a git repository, else skipped with a note.
    Default,
    /// This revision; an unknown revision is a usage error.
    Rev(String),
    /// No history rules.
    Off,
}

/// Everything `pv validate` found.
#[derive(Debug)]
pub struct Report {
    /// The contracts that could be loaded (also when others failed).
    pub set: ContractSet,
    /// Every diagnostic, sorted by file and position, without duplicates.
    pub diagnostics: Vec<Diagnostic>,
    /// Files read.
    pub files: usize,
    /// Remarks that are not diagnostics (history rules skipped, ...).
    pub notes: Vec<String>,
    /// A path was missing, unreadable or held no contract, or the revision is unknown.
    pub usage_error: bool,
    /// The history rules did not run (no git repository, or no such revision by default).
    pub history_skipped: bool,
}

impl Report {
    /// Number of error diagnostics.
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Process exit code: 0 valid, 1 invalid, 2 usage or I/O problem.
    pub fn exit_code(&self) -> u8 {
        if self.usage_error {
            2
        } else if self.errors() > 0 {
            1
        } else {
            0
        }
    }
}

/// The default contract directory, without a project file.
pub fn default_paths() -> Vec<PathBuf> {
    vec![PathBuf::from("contracts")]
}

/// The project rules of `project` over the loaded contracts: PV060 (gates) always; PV061
/// (scopes) when `whole_project` (the set is the project's own contracts, so an id the scopes
/// name must be in it).
pub fn check_project(
    set: &ContractSet,
    project: &pv_project::Project,
    whole_project: bool,
) -> Vec<Diagnostic> {
    let file = project
        .file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "the project (no pv.toml; `pv init` writes one)".to_string());
    let c = &project.config;
    let declared = rules::Declared {
        file: file.clone(),
        devices: c.devices.keys().cloned().collect(),
        fixtures: c.fixtures.keys().cloned().collect(),
    };
    let mut diags = rules::check_project(set, &declared);
    let Some(path) = project.file.as_ref().filter(|_| whole_project) else {
        return diags;
    };
    let scope_err = |message: String, help: &str| {
        Diagnostic::file_error(codes::SCOPE, Some(path.clone()), message).with_help(help)
    };
    for id in c.scope.contract.keys() {
        if set.contract(id).is_none() {
            diags.push(scope_err(
                format!("[scope.contract] names `{id}`, which no contract defines"),
                "use a contract id (the `contract:` field), or remove the entry",
            ));
        }
    }
    for id in c.scope.falsifier.keys() {
        if set.falsifier(id).is_none() {
            diags.push(scope_err(
                format!("[scope.falsifier] names `{id}`, which no contract defines"),
                "use a falsifier id (FALSIFY-...), or remove the entry",
            ));
        }
    }
    // The built-in default scope is a conservative net (a project may have no Cargo.lock, for
    // instance): only scopes the project wrote must select files.
    let written = c
        .scope
        .entries()
        .into_iter()
        .filter(|(_, p)| *p != pv_project::DEFAULT_SCOPE);
    for (what, patterns) in written {
        let unmatched = pv_project::Scope::new(patterns)
            .map_err(|e| e.to_string())
            .and_then(|s| {
                s.unmatched(&project.root, &project.evidence_dirs())
                    .map_err(|e| e.to_string())
            });
        match unmatched {
            Ok(list) => {
                for p in list {
                    diags.push(scope_err(
                        format!("{what}: pattern {p:?} selects no file under {}", project.root.display()),
                        "a pattern that selects nothing makes the scope miss the code it is meant to cover: fix the path (patterns are relative to the folder of pv.toml)",
                    ));
                }
            }
            Err(e) => diags.push(scope_err(
                format!("{what}: {e}"),
                "see docs/project-file.md",
            )),
        }
    }
    diags
}

/// Expands the arguments to a sorted, de-duplicated file list. Unreadable paths and directories
/// without contracts become PV006 diagnostics.
fn collect_files(paths: &[PathBuf], diags: &mut Vec<Diagnostic>) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let mut seen = HashSet::new();
    for p in paths {
        match std::fs::metadata(p) {
            Err(e) => diags.push(Diagnostic::file_error(
                codes::IO,
                Some(p.clone()),
                format!("cannot read {}: {e}", p.display()),
            )),
            Ok(m) if m.is_dir() => match load::contract_files(p) {
                Err(e) => diags.push(Diagnostic::file_error(codes::IO, Some(p.clone()), e.to_string())),
                Ok(list) if list.is_empty() => diags.push(
                    Diagnostic::file_error(
                        codes::IO,
                        Some(p.clone()),
                        format!("no contract files (*.yaml, *.yml) in {}", p.display()),
                    )
                    .with_help("pass the directory that holds the contracts, or create one with `pv new NAME`"),
                ),
                Ok(list) => {
                    dirs.push(p.clone());
                    for f in list {
                        let key = std::fs::canonicalize(&f).unwrap_or_else(|_| f.clone());
                        if seen.insert(key) {
                            files.push(f);
                        }
                    }
                }
            },
            Ok(_) => {
                let key = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                if seen.insert(key) {
                    files.push(p.clone());
                }
            }
        }
    }
    (files, dirs)
}

/// Checks one file up to the typed contract: YAML, PV020, schema, types.
pub fn check_file(path: &Path) -> (Option<Loaded>, Vec<Diagnostic>) {
    let source = match load::read_source(path) {
        Ok(s) => s,
        Err(d) => return (None, vec![d]),
    };
    check_source(&source)
}

/// Like [`check_file`] on text already read (used for git blobs too).
pub fn check_source(source: &Arc<pv_contract::SourceFile>) -> (Option<Loaded>, Vec<Diagnostic>) {
    let (tree, mut diags) = match load::parse_tree(source) {
        Ok(t) => t,
        Err(d) => return (None, vec![d]),
    };
    let schema_diags = schema::check(source, &tree);
    let schema_ok = schema_diags.is_empty();
    diags.extend(schema_diags);
    match load::deserialize(source, &tree) {
        Ok(contract) => (
            Some(Loaded {
                contract,
                source: Arc::clone(source),
                tree,
            }),
            diags,
        ),
        Err(d) => {
            // The schema is generated from the same types, so it has already said why; only a
            // type error the schema cannot express (an integer too large, ...) is new.
            if schema_ok {
                diags.push(d);
            }
            (None, diags)
        }
    }
}

/// Runs every check over `paths`.
pub fn validate(paths: &[PathBuf], since: &Since) -> Report {
    let mut diags = Vec::new();
    let mut notes = Vec::new();
    let (files, dirs) = collect_files(paths, &mut diags);
    let mut usage_error = !diags.is_empty();
    let mut history_skipped = false;
    let results: Vec<(Option<Loaded>, Vec<Diagnostic>)> =
        files.par_iter().map(|f| check_file(f)).collect();
    let mut loaded = Vec::new();
    let mut not_loaded = 0usize;
    for (l, d) in results {
        if d.iter().any(|d| d.code == codes::IO) {
            usage_error = true;
        }
        if l.is_none() {
            not_loaded += 1;
        }
        loaded.extend(l);
        diags.extend(d);
    }
    if not_loaded > 0 && !loaded.is_empty() {
        notes.push(format!(
            "note: {not_loaded} file(s) did not load; ids defined there count as unknown in the \
             other contracts' references until they do"
        ));
    }
    let set = ContractSet::new(loaded);
    diags.extend(rules::check(&set));
    match since {
        Since::Off => {}
        Since::Default | Since::Rev(_) => {
            let explicit = matches!(since, Since::Rev(_));
            let rev = match since {
                Since::Rev(r) => r.as_str(),
                _ => "HEAD",
            };
            match history(&set, &files, &dirs, rev, explicit) {
                Ok((d, n)) => {
                    diags.extend(d);
                    notes.extend(n);
                }
                Err(HistoryError::Usage(msg)) => {
                    usage_error = true;
                    diags.push(Diagnostic::file_error(codes::IO, None, msg));
                }
                Err(HistoryError::Skip(msg)) => {
                    history_skipped = true;
                    notes.push(msg);
                }
            }
        }
    }
    dedupe(&mut diags);
    rules::sort_diagnostics(&mut diags);
    Report {
        set,
        diagnostics: diags,
        files: files.len(),
        notes,
        usage_error,
        history_skipped,
    }
}

/// Drops diagnostics with the same code at the same place (a schema pattern error and the
/// semantic id rule both reporting one bad id).
fn dedupe(diags: &mut Vec<Diagnostic>) {
    let mut seen = HashSet::new();
    diags.retain(|d| {
        seen.insert((
            d.code,
            d.file.clone(),
            d.primary.as_ref().map(|l| l.span.start),
            d.primary.is_none().then(|| d.message.clone()),
        ))
    });
}

enum HistoryError {
    Usage(String),
    Skip(String),
}

fn history(
    set: &ContractSet,
    files: &[PathBuf],
    dirs: &[PathBuf],
    rev: &str,
    explicit: bool,
) -> Result<(Vec<Diagnostic>, Vec<String>), HistoryError> {
    let Some(first) = files.first() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let dir = first
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(root) = git::repo_root(dir) else {
        let msg = "note: not inside a git repository; history rules (--since) skipped".to_string();
        return if explicit {
            Err(HistoryError::Usage(format!(
                "--since {rev}: {} is not inside a git repository",
                dir.display()
            )))
        } else {
            Err(HistoryError::Skip(msg))
        };
    };
    if !git::rev_exists(&root, rev) {
        return if explicit {
            Err(HistoryError::Usage(format!(
                "--since {rev}: no such git revision"
            )))
        } else {
            Err(HistoryError::Skip(format!(
                "note: {rev} does not exist yet (no commit?); history rules skipped"
            )))
        };
    }
    let mut rel_of = Vec::new();
    for e in set.entries() {
        if let Some(rel) = git::relative(&root, &e.source.path) {
            rel_of.push((rel, e));
        }
    }
    let rels: Vec<String> = rel_of.iter().map(|(r, _)| r.clone()).collect();
    let blobs = git::show_many(&root, rev, &rels)
        .map_err(|e| HistoryError::Usage(format!("--since {rev}: {e:#}")))?;
    let mut diags = Vec::new();
    let mut notes = Vec::new();
    for (rel, e) in &rel_of {
        let Some(bytes) = blobs.get(rel) else {
            continue; // new file: nothing to compare with
        };
        let label = PathBuf::from(format!("{rev}:{rel}"));
        let old = match load::source_from_bytes(label, bytes.clone()) {
            Ok(src) => check_source(&src).0,
            Err(_) => None,
        };
        match old {
            Some(old) => diags.extend(rules::check_since(&old, e)),
            None => notes.push(format!(
                "note: {rev}:{rel} is not a valid contract; its history rules were skipped"
            )),
        }
    }
    // Contract files that existed at `rev` in a validated directory and are gone now.
    for d in dirs {
        let Some(rel_dir) = git::relative(&root, d) else {
            continue;
        };
        let old_files = git::ls_dir(&root, rev, &rel_dir)
            .map_err(|e| HistoryError::Usage(format!("--since {rev}: {e:#}")))?;
        for f in old_files {
            let is_yaml = f.ends_with(".yaml") || f.ends_with(".yml");
            if is_yaml && !root.join(&f).exists() {
                diags.push(
                    Diagnostic::file_error(
                        codes::SINCE_DELETED,
                        Some(root.join(&f)),
                        format!("contract file {f} existed at {rev} and was deleted"),
                    )
                    .with_help("contracts are never deleted: retire their falsifiers instead"),
                );
            }
        }
    }
    Ok((diags, notes))
}

/// `pv validate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let project = match &args.config {
        Some(f) => pv_project::Project::load(f)?,
        None => pv_project::Project::discover(&cwd)?,
    };
    let whole_project = args.paths.is_empty();
    let paths = if !whole_project {
        args.paths
    } else if project.file.is_some() {
        // Shown relative to the current directory where they lie below it (shorter messages).
        project
            .contract_dirs()
            .into_iter()
            .map(|d| match d.strip_prefix(&cwd) {
                Ok(rel) if !rel.as_os_str().is_empty() => rel.to_path_buf(),
                _ => d,
            })
            .collect()
    } else {
        default_paths()
    };
    let since = match (args.no_since, args.since) {
        (true, _) => Since::Off,
        (false, Some(r)) => Since::Rev(r),
        (false, None) => Since::Default,
    };
    let mut report = validate(&paths, &since);
    report
        .diagnostics
        .extend(check_project(&report.set, &project, whole_project));
    rules::sort_diagnostics(&mut report.diagnostics);
    print_report(&report, args.format, args.color)?;
    let code = ExitCode::from(report.exit_code());
    // The process ends here: freeing hundreds of thousands of nodes one by one would only cost
    // time (about a tenth of the run on a thousand contracts).
    std::mem::forget(report);
    Ok(code)
}

fn print_report(report: &Report, format: Format, color: ColorMode) -> anyhow::Result<()> {
    use std::io::Write;
    let (errors, warnings) = render::counts(&report.diagnostics);
    match format {
        Format::Json => {
            let doc = serde_json::json!({
                "valid": report.exit_code() == 0,
                "files": report.files,
                "contracts": report.set.len(),
                "errors": errors,
                "warnings": warnings,
                "notes": report.notes,
                "history_skipped": report.history_skipped,
                "diagnostics": report.diagnostics.iter().map(render::diagnostic_json).collect::<Vec<_>>(),
            });
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        }
        Format::Human => {
            render::emit_stderr(&report.diagnostics, color);
            let mut err = std::io::stderr().lock();
            for n in &report.notes {
                writeln!(err, "{n}")?;
            }
            writeln!(err, "{}", summary(report, errors, warnings))?;
        }
    }
    Ok(())
}

/// The last line of human output.
pub fn summary(report: &Report, errors: usize, warnings: usize) -> String {
    let falsifiers = report.set.falsifiers().count();
    let stages = report.set.stages().count();
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    let what = format!(
        "{}, {}, {}",
        plural(report.set.len(), "contract"),
        plural(stages, "stage"),
        plural(falsifiers, "falsifier")
    );
    let history = if report.history_skipped {
        "; history rules not checked"
    } else {
        ""
    };
    if errors == 0 && !report.usage_error {
        if warnings == 0 {
            format!("ok: {what}{history}")
        } else {
            format!("ok: {what} ({}){history}", plural(warnings, "warning"))
        }
    } else {
        format!(
            "invalid: {}, {} in {} ({what})",
            plural(errors, "error"),
            plural(warnings, "warning"),
            plural(report.files, "file")
        )
    }
}
