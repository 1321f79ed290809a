//! `pv evidence adopt`: writes run manifests for loose records written before run manifests
//! existed, grouped by the process that wrote them (the `<pid>` of the record file name
//! `<time>_<falsifier>_<pid>-<counter>-<random>.json`), its commit and its machine. The
//! records keep their bytes.
//!
//! An adopted manifest says so (`adopted` in its run facts, shown by `pv evidence verify`): it
//! was written after the run from the records as found then, so it vouches only that they have
//! not changed since. It is a migration step, not a way to make a record trustworthy: the
//! people who adopt evidence should sign the adopted manifests only for records they have
//! reason to believe came from real runs (`docs/evidence.md`, "Trust model").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use pv_evidence::manifest::{read_manifest, RunLog, RunStart};
use pv_evidence::record::EvidenceRecord;
use pv_evidence::store::{list_evidence_files, read_record};

/// `pv evidence adopt` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Evidence folders whose loose records get manifests (searched recursively).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// List the runs that would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The process part of a record file name (`<pid>` of `..._<pid>-<counter>-<random>.json`).
pub fn writer_pid(file_name: &str) -> Option<&str> {
    let stem = file_name.strip_suffix(".json")?;
    let (_, tail) = stem.rsplit_once('_')?;
    let mut parts = tail.split('-');
    let pid = parts.next()?;
    let counter = parts.next()?;
    let random = parts.next()?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (parts.next().is_none()
        && digits(pid)
        && digits(counter)
        && random.len() == 8
        && random.bytes().all(|b| b.is_ascii_hexdigit()))
    .then_some(pid)
}

/// A group of loose records that one process wrote.
#[derive(Debug, Default)]
struct Group {
    records: Vec<(String, String, EvidenceRecord, i128)>,
}

fn ns_to_time(ns: i128) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns.max(0)).unwrap_or(u64::MAX))
}

/// Adopts the loose records of one folder; returns the manifests written (or, with `dry_run`,
/// that would be).
pub fn adopt_dir(dir: &Path, dry_run: bool) -> anyhow::Result<Vec<(PathBuf, usize)>> {
    let files = list_evidence_files(dir).with_context(|| format!("listing {}", dir.display()))?;
    let mut listed = std::collections::HashSet::new();
    for m in &files.manifests {
        let m_dir = m.parent().unwrap_or(dir);
        let manifest = read_manifest(m)?;
        for (name, _) in manifest.subjects() {
            listed.insert(m_dir.join(name));
        }
    }
    // (folder, pid, commit, hardware) -> records, in file order.
    let mut groups: BTreeMap<(PathBuf, String, String, String), Group> = BTreeMap::new();
    for f in files.records.iter().filter(|f| !listed.contains(*f)) {
        let Ok(record) = read_record(f) else {
            eprintln!(
                "pv evidence adopt: skipping {}: not a valid record",
                f.display()
            );
            continue;
        };
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let folder = f.parent().unwrap_or(dir).to_path_buf();
        let pid = writer_pid(&name).unwrap_or("unknown").to_string();
        let commit = record
            .git
            .as_ref()
            .map(|g| format!("{}{}", g.commit, if g.dirty { "+dirty" } else { "" }))
            .unwrap_or_default();
        let hardware = serde_json::to_string(&record.hardware).unwrap_or_default();
        let ts = pv_evidence::timefmt::parse_rfc3339(&record.timestamp).unwrap_or(0);
        groups
            .entry((folder, pid, commit, hardware))
            .or_default()
            .records
            .push((name, pv_evidence::manifest::sha256_hex(&bytes), record, ts));
    }
    let adopted = format!(
        "pv evidence adopt, {}: written after the run from its records as found then",
        pv_evidence::timefmt::format_rfc3339_utc(SystemTime::now())
    );
    let mut written = Vec::new();
    for ((folder, pid, _, _), mut g) in groups {
        g.records.sort_by_key(|r| r.3);
        let first = g.records.first().map_or(0, |r| r.3);
        let last = g.records.last().map_or(0, |r| r.3);
        // The first record finished after its run started: start one duration earlier.
        let started = first
            - g.records
                .first()
                .map_or(0, |r| (r.2.duration_s.max(0.0) * 1e9) as i128);
        let started = ns_to_time(started);
        let mut log = RunLog::new(
            &folder,
            RunStart {
                run_id: format!(
                    "adopted-{}-{pid}",
                    pv_evidence::timefmt::compact_utc(started)
                ),
                invocation: None,
                started,
                command: Vec::new(),
                host: "unknown".to_string(),
                project_file: None,
                adopted: Some(adopted.clone()),
            },
        );
        for (name, sha, record, _) in &g.records {
            log.add(name, sha, record);
        }
        if log.path().exists() {
            bail!(
                "{} exists already; not overwriting it",
                log.path().display()
            );
        }
        if !dry_run {
            log.write_finished(ns_to_time(last))
                .with_context(|| format!("writing {}", log.path().display()))?;
        }
        written.push((log.path().to_path_buf(), g.records.len()));
    }
    Ok(written)
}

/// Runs `pv evidence adopt`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut total = 0;
    let mut runs = 0;
    for d in &args.dirs {
        if !d.is_dir() {
            bail!("{}: not a folder", d.display());
        }
        for (path, n) in adopt_dir(d, args.dry_run)? {
            println!(
                "{} {} ({n} record(s))",
                if args.dry_run { "would write" } else { "wrote" },
                path.display()
            );
            total += n;
            runs += 1;
        }
    }
    eprintln!(
        "pv evidence adopt: {runs} run manifest(s) {} for {total} loose record(s)",
        if args.dry_run {
            "would be written"
        } else {
            "written"
        }
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writing_process_is_read_from_the_file_name() {
        assert_eq!(
            writer_pid("20261122T190715.293373Z_FALSIFY-TRACE-NO-EFFECT-001_25506-1-80fa7196.json"),
            Some("25506")
        );
        assert_eq!(
            writer_pid("20261122T190715Z_FALSIFY_X_7-0-0000abcd.json"),
            Some("7")
        );
        for bad in [
            "x.json",
            "a_b.json",
            "a_1-2.json",
            "a_1-2-xyz.json",
            "a_1-2-0000abcd-9.json",
            "a_p-2-0000abcd.json",
            "a_1-2-0000abcd.txt",
        ] {
            assert_eq!(writer_pid(bad), None, "{bad}");
        }
    }
}
