//! `pv new` and `pv amend`: the two commands that write contract files. Both make the smallest
//! textual change and re-parse the result before writing it, so comments and layout survive and
//! a broken edit is never written.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use pv_contract::path;
use pv_contract::rules::IdKind;
use pv_contract::yaml::Value;

/// `pv new` arguments.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// Contract id, e.g. `quant-kernels-v1` (`-v1` is appended when missing).
    pub name: String,
    /// Directory to create it in (default: the first of pv.toml's `[contracts] dirs`, else
    /// `contracts`).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Upper-case area code used in the ids (default: initials of the name's words).
    #[arg(long)]
    pub area: Option<String>,
    /// Title (default: the name's words).
    #[arg(long)]
    pub title: Option<String>,
}

/// Version part to bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Bump {
    /// Incompatible change of a claim or threshold.
    Major,
    /// New stages, falsifiers or criteria.
    Minor,
    /// Wording, links, fixes that change no claim.
    Patch,
}

/// `pv amend` arguments.
#[derive(Debug, clap::Args)]
pub struct AmendArgs {
    /// Contract id (looked up in --dir) or path to the contract file.
    pub contract: String,
    /// Which part of the version to bump.
    #[arg(long, value_enum)]
    pub bump: Bump,
    /// One-line summary of the amendment.
    #[arg(long)]
    pub summary: String,
    /// A change item (repeatable).
    #[arg(long = "change", value_name = "TEXT")]
    pub changes: Vec<String>,
    /// Date of the amendment, YYYY-MM-DD (default: today, UTC).
    #[arg(long)]
    pub date: Option<String>,
    /// Directory holding the contracts (default: the first of pv.toml's `[contracts] dirs`,
    /// else `contracts`).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `--dir`, else the project's first contract folder (shown relative to the current directory
/// when it lies below it), else `contracts`.
fn contracts_dir(dir: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = dir {
        return Ok(d);
    }
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let project = pv_project::Project::discover(&cwd)?;
    if project.file.is_none() {
        return Ok(PathBuf::from("contracts"));
    }
    let first = project
        .contract_dirs()
        .into_iter()
        .next()
        .unwrap_or_else(|| project.root.join("contracts"));
    Ok(match first.strip_prefix(&cwd) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.to_path_buf(),
        _ => first,
    })
}

/// Today's date in UTC as YYYY-MM-DD.
pub fn today_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A YAML scalar for `s`: plain when that reads back as the same string, else double-quoted.
pub fn yaml_scalar(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && s.trim() == s
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && !s.chars().any(|c| c.is_control())
        && !s.starts_with([
            '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%',
            '@', '`',
        ])
        && reads_back_as_string(s);
    if plain_ok {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn reads_back_as_string(s: &str) -> bool {
    let src = pv_contract::SourceFile::new("check", format!("k: {s}\n"));
    match pv_contract::yaml::parse(&src) {
        Ok(node) => matches!(node.get("k").map(|n| &n.value), Some(Value::Str(v)) if v == s),
        Err(_) => false,
    }
}

fn area_from(name: &str) -> String {
    let words: Vec<&str> = name.split('-').filter(|w| !w.is_empty()).collect();
    let initials: String = words
        .iter()
        .filter_map(|w| w.chars().next())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if initials.len() >= 2 {
        initials
    } else {
        words
            .first()
            .map(|w| w.to_ascii_uppercase())
            .unwrap_or_else(|| "X".into())
    }
}

/// The scaffold text of a new contract.
pub fn scaffold(id: &str, area: &str, title: &str, date: &str) -> String {
    format!(
        "# yaml-language-server: $schema=./contract.schema.json
contract: {id}
version: 0.1.0
title: {title}
summary: >
  What this contract is about: the component, the claims it makes and how they are checked.
owners: []

acceptance_criteria:
  - id: AC-{area}-001
    text: State what \"done\" means, decided by the falsifiers listed.
    falsifiers: [FALSIFY-{area}-FIRST-001]

stages:
  - id: M-{area}-1.1
    title: First milestone
    requires: []
    falsifiers: [FALSIFY-{area}-FIRST-001]

falsifiers:
  - id: FALSIFY-{area}-FIRST-001
    claim: >
      A claim precise enough that a test can refute it, with its inputs and tolerance.
    tier: algorithm
    metrics:
      - name: mismatches
        op: \"==\"
        threshold: 0
        unit: count
    if_fails: >
      Where to look first when this fails.

amendment_history:
  - version: 0.1.0
    date: {date}
    summary: First version.
",
        title = yaml_scalar(title)
    )
}

/// `pv new`.
pub fn run_new(args: NewArgs) -> Result<ExitCode> {
    let id = if IdKind::Contract.matches(&args.name) {
        args.name.clone()
    } else {
        format!("{}-v1", args.name)
    };
    if !IdKind::Contract.matches(&id) {
        bail!(
            "`{}` cannot be a contract id: {}",
            args.name,
            IdKind::Contract.shape()
        );
    }
    let base = id.rsplit_once("-v").map_or(id.as_str(), |(b, _)| b);
    let area = args.area.clone().unwrap_or_else(|| area_from(base));
    if !area
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        || area.is_empty()
    {
        bail!("--area must be upper-case letters and digits, got `{area}`");
    }
    let title = args.title.clone().unwrap_or_else(|| {
        let mut t = base.replace('-', " ");
        if let Some(first) = t.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        t
    });
    let text = scaffold(&id, &area, &title, &today_utc());
    // Never write something `pv validate` would reject.
    let loaded = pv_contract::load_str(format!("{id}.yaml"), &text)
        .map_err(|e| anyhow::anyhow!("internal error: the scaffold does not load: {e}"))?;
    let problems: Vec<_> = pv_contract::rules::check(&pv_contract::ContractSet::new(vec![loaded]))
        .into_iter()
        .filter(|d| d.is_error())
        .collect();
    if let Some(d) = problems.first() {
        bail!("internal error: the scaffold is invalid: {d}");
    }
    let dir = contracts_dir(args.dir.clone())?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{id}.yaml"));
    write_new(&path, &text)?;
    eprintln!("created {}", path.display());
    let schema = dir.join("contract.schema.json");
    if !schema.exists() {
        write_new(&schema, &crate::schema::schema_text())?;
        eprintln!("created {} (editor completion)", schema.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn write_new(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Resolves `pv amend CONTRACT`: an existing path, else `<dir>/<id>.yaml`.
pub fn resolve_contract(spec: &str, dir: &Path) -> PathBuf {
    let p = PathBuf::from(spec);
    if p.exists() {
        p
    } else {
        dir.join(format!("{spec}.yaml"))
    }
}

/// Applies an amendment to contract text: bumps `version` and appends an entry to
/// `amendment_history`, touching nothing else. Returns the new text and version.
pub fn amend_text(
    text: &str,
    bump: Bump,
    summary: &str,
    changes: &[String],
    date: &str,
) -> Result<(String, semver::Version)> {
    let loaded = pv_contract::load_str("contract", text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let c = &loaded.contract;
    let tree = &loaded.tree;
    let old = semver::Version::parse(&c.version)
        .with_context(|| format!("version `{}` is not semver; fix it first", c.version))?;
    let new = match bump {
        Bump::Major => semver::Version::new(old.major + 1, 0, 0),
        Bump::Minor => semver::Version::new(old.major, old.minor + 1, 0),
        Bump::Patch => semver::Version::new(old.major, old.minor, old.patch + 1),
    };
    if summary.trim().is_empty() {
        bail!("--summary must not be empty");
    }
    if !pv_contract::rules::is_valid_date(date) {
        bail!("--date `{date}` is not a YYYY-MM-DD date");
    }
    let version_span = tree.span_of(&path!["version"]);
    let history = tree
        .at(&path!["amendment_history"])
        .context("no amendment_history")?;
    let Value::Seq(items) = &history.value else {
        bail!("amendment_history is not a list");
    };
    let (Some(first), Some(last)) = (items.first(), items.last()) else {
        bail!("amendment_history is empty; add the first entry by hand");
    };
    if text[history.span.start..].starts_with('[') {
        bail!(
            "amendment_history is written in flow style ([...]); pv amend edits block lists only"
        );
    }
    // Column of the '-' of the first entry: entries are written at that indentation.
    let line_start = text[..first.span.start].rfind('\n').map_or(0, |i| i + 1);
    let prefix = &text[line_start..first.span.start];
    let Some(dash) = prefix.rfind('-') else {
        bail!("cannot find the '-' of the first amendment entry");
    };
    let indent = " ".repeat(prefix[..dash].chars().count());
    // Insert after the line on which the last entry ends (its last value's end).
    let last_end = match &last.value {
        Value::Map(entries) => entries.last().map_or(last.span.end, |(_, v)| v.span.end),
        _ => last.span.end,
    };
    let insert_at = if last_end > 0 && text.as_bytes().get(last_end - 1) == Some(&b'\n') {
        last_end
    } else {
        text[last_end..]
            .find('\n')
            .map_or(text.len(), |i| last_end + i + 1)
    };
    let mut entry = String::new();
    if insert_at == text.len() && !text.ends_with('\n') {
        entry.push('\n');
    }
    entry.push_str(&format!("{indent}- version: {new}\n"));
    entry.push_str(&format!("{indent}  date: {date}\n"));
    entry.push_str(&format!(
        "{indent}  summary: {}\n",
        yaml_scalar(summary.trim())
    ));
    if !changes.is_empty() {
        entry.push_str(&format!("{indent}  changes:\n"));
        for ch in changes {
            entry.push_str(&format!("{indent}    - {}\n", yaml_scalar(ch.trim())));
        }
    }
    let mut out = String::with_capacity(text.len() + entry.len());
    out.push_str(&text[..version_span.start]);
    out.push_str(&new.to_string());
    out.push_str(&text[version_span.end..insert_at]);
    out.push_str(&entry);
    out.push_str(&text[insert_at..]);
    // Re-parse: the edit must give exactly the intended contract.
    let check = pv_contract::load_str("contract", &out)
        .map_err(|e| anyhow::anyhow!("internal error: the amended text does not load: {e}"))?;
    let nc = &check.contract;
    let ok = nc.version == new.to_string()
        && nc.amendment_history.len() == c.amendment_history.len() + 1
        && nc.amendment_history[..c.amendment_history.len()] == c.amendment_history[..]
        && nc.amendment_history.last().is_some_and(|a| {
            a.version == new.to_string() && a.date == date && a.summary == summary.trim()
        })
        && {
            let mut a = nc.clone();
            let mut b = c.clone();
            a.version.clear();
            b.version.clear();
            a.amendment_history.pop();
            a == b
        };
    if !ok {
        bail!(
            "internal error: the edit did not produce the intended contract; file left unchanged"
        );
    }
    Ok((out, new))
}

/// `pv amend`.
pub fn run_amend(args: AmendArgs) -> Result<ExitCode> {
    let dir = contracts_dir(args.dir.clone())?;
    let path = resolve_contract(&args.contract, &dir);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let date = args.date.clone().unwrap_or_else(today_utc);
    let (out, new) = amend_text(&text, args.bump, &args.summary, &args.changes, &date)
        .with_context(|| format!("cannot amend {}", path.display()))?;
    // Write next to the file and rename, so an interrupted write never leaves half a contract.
    let tmp = path.with_extension("yaml.pv-tmp");
    std::fs::write(&tmp, &out).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))?;
    eprintln!("{}: version {new}", path.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_779), (2026, 11, 22));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn scalars_quote_only_when_needed() {
        assert_eq!(
            yaml_scalar("Add the router check."),
            "Add the router check."
        );
        assert_eq!(yaml_scalar("a: b"), "\"a: b\"");
        assert_eq!(yaml_scalar("1.0"), "\"1.0\"");
        assert_eq!(yaml_scalar("true"), "\"true\"");
        assert_eq!(yaml_scalar("- x"), "\"- x\"");
        assert_eq!(yaml_scalar("say \"hi\" #1"), "\"say \\\"hi\\\" #1\"");
    }

    #[test]
    fn scaffold_is_valid_without_warnings() {
        let text = scaffold("demo-thing-v1", "DT", "Demo thing", "2026-11-22");
        let loaded = pv_contract::load_str("demo-thing-v1.yaml", &text).expect("loads");
        let diags = pv_contract::rules::check(&pv_contract::ContractSet::new(vec![loaded]));
        assert!(diags.is_empty(), "{diags:?}");
    }

    #[test]
    fn amend_bumps_and_appends_only() {
        let text = scaffold("demo-thing-v1", "DT", "Demo thing", "2026-11-22")
            + "# trailing comment kept\n";
        let (out, v) = amend_text(
            &text,
            Bump::Minor,
            "Add a stage: the second one",
            &["Added M-DT-1.2.".into()],
            "2026-11-23",
        )
        .expect("amends");
        assert_eq!(v.to_string(), "0.2.0");
        assert!(out.contains("version: 0.2.0\ntitle"));
        assert!(out.contains(
            "  - version: 0.2.0\n    date: 2026-11-23\n    summary: \"Add a stage: the second one\"\n    changes:\n      - Added M-DT-1.2.\n# trailing comment kept\n"
        ), "{out}");
        // Everything before the version and between version and the new entry is untouched.
        let (o_head, _) = text
            .split_once("version: 0.1.0\ntitle")
            .expect("version line");
        assert!(out.starts_with(o_head));
        let (out2, v2) = amend_text(&out, Bump::Major, "Break", &[], "2026-11-23").expect("again");
        assert_eq!(v2.to_string(), "1.0.0");
        let loaded = pv_contract::load_str("demo-thing-v1.yaml", &out2).expect("loads");
        let diags = pv_contract::rules::check(&pv_contract::ContractSet::new(vec![loaded]));
        assert!(diags.is_empty(), "{diags:?}");
    }

    #[test]
    fn amend_refuses_bad_dates() {
        let text = scaffold("demo-thing-v1", "DT", "Demo thing", "2026-11-22");
        assert!(amend_text(&text, Bump::Patch, "x", &[], "2026-13-01").is_err());
    }
}
