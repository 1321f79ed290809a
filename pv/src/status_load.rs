//! Builds the inputs of [`crate::status::derive`] from files: contracts, evidence records, the
//! current source digests, and the bound tests.
//!
//! Never writes: evidence is read-only to `pv`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use pv_contract::ContractSet;
use pv_evidence::record::{SourceDigest, Tier};
use pv_evidence::store::{list_record_files, parse_record};
use pv_project::Project;
use rayon::prelude::*;

use serde::{Deserialize, Serialize};

use crate::status::{
    derive, ContractModel, CriterionModel, DivergenceModel, FalsifierModel, Inputs, Model, Run,
    RunRecord, StageModel, StatusReport,
};

/// Where things are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Project root (source digests are computed relative to it).
    pub root: PathBuf,
    /// The project (`pv.toml`, or the defaults): scopes, gates, evidence folders.
    pub project: Project,
    /// Contract folders.
    pub contracts: Vec<PathBuf>,
    /// Evidence directories, read recursively (default: the project's committed and local
    /// folders).
    pub evidence: Vec<PathBuf>,
    /// Folders scanned for bound tests (each package folder's `tests/*.rs` and `src/**/*.rs`,
    /// and `*.rs` directly in it); `None`: binding not checked.
    pub tests: Option<Vec<PathBuf>>,
    /// Use the record summary cache ([`cache_path`]).
    pub cache: bool,
}

impl Paths {
    /// The layout a project describes.
    pub fn for_project(project: Project) -> Result<Paths, pv_project::ProjectError> {
        let tests = project
            .test_packages()?
            .into_iter()
            .map(|p| p.dir)
            .collect();
        Ok(Paths {
            root: project.root.clone(),
            contracts: project.contract_dirs(),
            evidence: project.evidence_dirs(),
            tests: Some(tests),
            cache: false,
            project,
        })
    }

    /// The project at `root`: its `pv.toml` if it has one, else the defaults rooted there.
    pub fn in_workspace(root: &Path) -> Paths {
        let project = match root.join(pv_project::PROJECT_FILE) {
            f if f.is_file() => Project::load(&f).unwrap_or_else(|_| Project::defaults(root)),
            _ => Project::defaults(root),
        };
        Paths::for_project(project.clone()).unwrap_or_else(|_| Paths {
            root: root.to_path_buf(),
            contracts: project.contract_dirs(),
            evidence: project.evidence_dirs(),
            tests: None,
            cache: false,
            project,
        })
    }
}

/// A failure that prevents deriving any status.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Contracts did not load.
    #[error("loading contracts from {dir}: {message}")]
    Contracts {
        /// Directory.
        dir: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An evidence directory could not be listed.
    #[error("listing evidence in {dir}: {source}")]
    Evidence {
        /// Directory.
        dir: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The project file could not be used.
    #[error(transparent)]
    Project(#[from] pv_project::ProjectError),
    /// The tests directory could not be scanned.
    #[error("scanning bound tests in {dir}: {source}")]
    Tests {
        /// Directory.
        dir: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Converts loaded contracts into the status model (file hashes from the bytes on disk, claim
/// digests, and each falsifier's scope in `project`).
pub fn model_from_contracts(set: &ContractSet, project: &Project) -> Model {
    let mut contracts = Vec::new();
    for e in set.entries() {
        let c = &e.contract;
        // The file's bytes, as the macro hashed them when it compiled the test.
        let sha256 = match std::fs::read(&e.source.path) {
            Ok(bytes) => pv_contract::digest::content_hash(bytes),
            Err(_) => pv_contract::digest::content_hash(e.source.text.as_bytes()),
        };
        contracts.push(ContractModel {
            id: c.contract.clone(),
            version: c.version.clone(),
            path: e.source.path.display().to_string(),
            sha256,
            criteria: c
                .acceptance_criteria
                .iter()
                .map(|a| CriterionModel {
                    id: a.id.clone(),
                    text: a.text.trim().to_string(),
                    falsifiers: a.falsifiers.clone(),
                })
                .collect(),
            stages: c
                .stages
                .iter()
                .map(|s| StageModel {
                    id: s.id.clone(),
                    title: s.title.clone(),
                    requires: s.requires.clone(),
                    falsifiers: s.falsifiers.clone(),
                })
                .collect(),
            falsifiers: c
                .falsifiers
                .iter()
                .map(|f| FalsifierModel {
                    id: f.id.clone(),
                    tier: match f.tier {
                        pv_contract::Tier::Algorithm => Tier::Algorithm,
                        pv_contract::Tier::Hardware => Tier::Hardware,
                    },
                    retired: f.retired.clone(),
                    metrics: f.metrics.iter().map(|m| m.name.clone()).collect(),
                    claim_sha256: pv_contract::digest::claim_digest(c, f),
                    thresholds: f
                        .metrics
                        .iter()
                        .map(|m| {
                            (
                                m.name.clone(),
                                pv_evidence::Op::parse(m.op.as_str())
                                    .unwrap_or(pv_evidence::Op::Eq),
                                m.threshold,
                            )
                        })
                        .collect(),
                    scope: project.scope_for(&c.contract, &f.id).to_vec(),
                })
                .collect(),
            divergences: c
                .known_divergences
                .iter()
                .map(|d| DivergenceModel {
                    falsifier: d.falsifier.clone(),
                    scope: d.scope.clone(),
                    classification: match d.classification {
                        pv_contract::Classification::Benign => "benign".to_string(),
                        pv_contract::Classification::NotBenign => "not-benign".to_string(),
                    },
                })
                .collect(),
        });
    }
    Model { contracts }
}

/// Records read from disk, and the files that were not valid records.
#[derive(Debug, Default)]
pub struct LoadedRuns {
    /// Valid records.
    pub runs: Vec<Run>,
    /// `path: why` for each unreadable, truncated or corrupt file (reported, then skipped).
    pub unreadable: Vec<String>,
}

/// Reads every record under `dirs` in parallel. Files are named relative to their directory.
pub fn load_runs(dirs: &[PathBuf]) -> Result<LoadedRuns, LoadError> {
    load_runs_excluding(dirs, &[], &[], None)
}

/// The summary cache: what was parsed from each record file, keyed by its absolute path.
/// Records are immutable once written (unique names, atomic rename, never rewritten), so the
/// cache only saves re-reading and re-parsing; files that disappeared drop out, new files are
/// read. A record edited in place is not noticed: `--no-cache` re-reads everything. It lives outside the evidence tree (`$PV_CACHE_DIR`, else `$XDG_CACHE_HOME/pv`, else
/// `~/.cache/pv`), so `pv` still never writes evidence.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    entries: Vec<CacheEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheEntry {
    /// Index into the evidence directories the cache was made for (its name hashes them).
    dir: usize,
    /// Path relative to that directory.
    file: String,
    ts: i64,
    record: RunRecord,
}

/// Bumped whenever `RunRecord` or the cache layout changes.
const CACHE_VERSION: u32 = 5;

/// The cache file for this set of evidence directories, if a cache directory can be found.
pub fn cache_path(dirs: &[PathBuf]) -> Option<PathBuf> {
    let base = std::env::var_os("PV_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("pv")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache").join("pv")))?;
    let key: Vec<String> = dirs
        .iter()
        .map(|d| {
            d.canonicalize()
                .unwrap_or_else(|_| d.clone())
                .display()
                .to_string()
        })
        .collect();
    let h = pv_contract::digest::content_hash(key.join("\n"));
    Some(base.join(format!("status-{}.json", &h[..16])))
}

fn read_cache(path: &Path) -> HashMap<(usize, String), CacheEntry> {
    let Ok(bytes) = std::fs::read(path) else {
        return HashMap::new();
    };
    match serde_json::from_slice::<CacheFile>(&bytes) {
        Ok(c) if c.version == CACHE_VERSION => c
            .entries
            .into_iter()
            .map(|e| ((e.dir, e.file.clone()), e))
            .collect(),
        // A stale or damaged cache is simply rebuilt.
        _ => HashMap::new(),
    }
}

fn write_cache(path: &Path, entries: Vec<CacheEntry>) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let file = CacheFile {
        version: CACHE_VERSION,
        entries,
    };
    let Ok(bytes) = serde_json::to_vec(&file) else {
        return;
    };
    // Best effort: a cache that cannot be written only costs time next run.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// As [`load_runs`], skipping files under any of `exclude` unless they are under one of `keep`
/// (`pv verify`: committed evidence plus this run, not older local runs). A file reachable from
/// two of `dirs` is read once. With `cache`, unchanged files are taken from the summary cache.
pub fn load_runs_excluding(
    dirs: &[PathBuf],
    exclude: &[PathBuf],
    keep: &[PathBuf],
    cache: Option<&Path>,
) -> Result<LoadedRuns, LoadError> {
    let mut files: Vec<(usize, PathBuf)> = Vec::new();
    let mut seen = HashSet::new();
    for (di, d) in dirs.iter().enumerate() {
        let list = list_record_files(d).map_err(|source| LoadError::Evidence {
            dir: d.clone(),
            source,
        })?;
        for f in list {
            let excluded = !exclude.is_empty()
                && exclude.iter().any(|e| f.starts_with(e))
                && !keep.iter().any(|k| f.starts_with(k));
            // Only overlapping directories can list a file twice.
            if !excluded && (dirs.len() == 1 || seen.insert(f.clone())) {
                files.push((di, f));
            }
        }
    }
    let timing = std::env::var_os("PV_TIMING").is_some();
    let t0 = std::time::Instant::now();
    let cached = cache.map(read_cache).unwrap_or_default();
    let cached_len = cached.len();
    if timing {
        eprintln!(
            "pv timing: listed {} files, read cache ({cached_len}) {:.3}s",
            files.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    // Cache hits need no system call at all: records are immutable once written, so a path
    // that was parsed before still holds the same record (`--no-cache` re-reads everything).
    // Hits are moved out of the cache (no copy); only misses are read, in parallel.
    let mut cached = cached;
    let mut slots: Vec<Option<(Result<Run, String>, bool)>> = files
        .iter()
        .map(|(di, f)| {
            let rel = f
                .strip_prefix(&dirs[*di])
                .unwrap_or(f)
                .to_string_lossy()
                .into_owned();
            let e = cached.remove(&(*di, rel))?;
            Some((
                Ok(Run {
                    file: e.file,
                    ts: e.ts as i128,
                    record: e.record,
                }),
                false,
            ))
        })
        .collect();
    slots
        .par_iter_mut()
        .zip(files.par_iter())
        .filter(|(slot, _)| slot.is_none())
        .for_each(|(slot, (di, f))| {
            let rel = f
                .strip_prefix(&dirs[*di])
                .unwrap_or(f)
                .to_string_lossy()
                .into_owned();
            let parsed = (|| {
                let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
                let record = parse_record(f, &bytes).map_err(|e| e.to_string())?;
                let ts = pv_evidence::timefmt::parse_rfc3339(&record.timestamp)
                    .ok_or_else(|| format!("{}: bad timestamp", f.display()))?;
                Ok::<_, String>(Run {
                    file: rel,
                    ts,
                    record: RunRecord::from(record),
                })
            })();
            *slot = Some((parsed, true));
        });
    let results: Vec<(Result<Run, String>, bool)> = slots.into_iter().flatten().collect();
    let mut out = LoadedRuns::default();
    let mut changed = false;
    let mut keys = Vec::with_capacity(results.len());
    for ((r, fresh_read), (di, _)) in results.into_iter().zip(&files) {
        match r {
            Ok(run) => {
                changed |= fresh_read;
                keys.push(*di);
                out.runs.push(run);
            }
            Err(e) => out.unreadable.push(e),
        }
    }
    if timing {
        eprintln!(
            "pv timing: records loaded {:.3}s",
            t0.elapsed().as_secs_f64()
        );
    }
    if let Some(path) = cache {
        if changed || out.runs.len() != cached_len {
            let entries = out
                .runs
                .iter()
                .zip(keys)
                .map(|(run, di)| CacheEntry {
                    dir: di,
                    file: run.file.clone(),
                    ts: run.ts as i64,
                    record: run.record.clone(),
                })
                .collect();
            write_cache(path, entries);
        }
    }
    Ok(out)
}

/// (algorithm, roots) -> the digest now (None: cannot be recomputed).
type DigestCache = HashMap<(String, Vec<String>), Option<String>>;

/// Recomputes source digests for the checkout, once per distinct scope (or v1 roots list).
pub struct SourceFreshness {
    root: PathBuf,
    exclude: Vec<PathBuf>,
    cache: Mutex<DigestCache>,
}

impl SourceFreshness {
    /// For the project's checkout (its evidence folders are never part of a scope).
    pub fn new(project: &Project) -> Self {
        SourceFreshness {
            root: project.root.clone(),
            exclude: project.evidence_dirs(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn current(&self, d: &SourceDigest) -> Option<String> {
        let key = (d.algorithm.clone(), d.roots.clone());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(key)
            .or_insert_with(|| {
                use pv_evidence::digest::{DIGEST_ALGORITHM, DIGEST_ALGORITHM_V1};
                // Only the algorithms this build implements can be recomputed; anything else
                // is never fresh.
                match d.algorithm.as_str() {
                    DIGEST_ALGORITHM => {
                        pv_evidence::digest::scope_digest(&self.root, &d.roots, &self.exclude)
                            .ok()
                            .map(|s| s.sha256)
                    }
                    DIGEST_ALGORITHM_V1 => {
                        let roots: Vec<&str> = d.roots.iter().map(String::as_str).collect();
                        pv_evidence::digest::source_digest(&self.root, &roots)
                            .ok()
                            .map(|s| s.sha256)
                    }
                    _ => None,
                }
            })
            .clone()
    }
}

impl crate::status::Freshness for SourceFreshness {
    fn source_fresh(&self, digest: &SourceDigest) -> bool {
        self.current(digest).is_some_and(|now| now == digest.sha256)
    }
}

/// Ids bound to a test in the `dirs` (each scanned as a package folder: `tests/*.rs`,
/// `src/**/*.rs`, and `*.rs` directly in it), or `None` when binding is not checked.
pub fn bound_ids(dirs: Option<&[PathBuf]>) -> Result<Option<HashSet<String>>, LoadError> {
    Ok(bound_tests(dirs)?.map(|m| m.into_keys().collect()))
}

/// Id -> the function bound to it (empty when the scan found none), for the same `dirs`.
pub fn bound_tests(dirs: Option<&[PathBuf]>) -> Result<Option<HashMap<String, String>>, LoadError> {
    let Some(dirs) = dirs else {
        return Ok(None);
    };
    let mut ids = HashMap::new();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        let b = pv_evidence::bindings::scan_folder(dir).map_err(|source| LoadError::Tests {
            dir: dir.to_path_buf(),
            source,
        })?;
        ids.extend(
            b.into_iter()
                .map(|b| (b.id, b.function.unwrap_or_default())),
        );
    }
    Ok(Some(ids))
}

/// Loads the contracts of every folder (one set; an id defined twice is `pv validate`'s
/// business, the first one wins here).
pub fn load_contracts(dirs: &[PathBuf]) -> Result<ContractSet, LoadError> {
    if let [dir] = dirs {
        return pv_contract::load_dir(dir).map_err(|e| LoadError::Contracts {
            dir: dir.to_path_buf(),
            message: e.to_string(),
        });
    }
    let mut loaded = Vec::new();
    for dir in dirs {
        let set = pv_contract::load_dir(dir).map_err(|e| LoadError::Contracts {
            dir: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        loaded.extend(set.entries().iter().cloned());
    }
    Ok(ContractSet::new(loaded))
}

/// The derivation's inputs from the bound-test scan ([`bound_tests`]) and the clock.
pub fn inputs_from(tests: Option<HashMap<String, String>>) -> Inputs {
    Inputs {
        bound: tests.as_ref().map(|t| t.keys().cloned().collect()),
        now: now_ns(),
        // A function the scan could not name is not checked.
        test_functions: tests.map(|t| t.into_iter().filter(|(_, f)| !f.is_empty()).collect()),
    }
}

/// "Now" in ns since the epoch.
pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Everything from files: contracts, records, digests, bindings -> the derived report.
pub fn status_for(paths: &Paths) -> Result<(ContractSet, StatusReport), LoadError> {
    let timing = std::env::var_os("PV_TIMING").is_some();
    let t0 = std::time::Instant::now();
    let set = load_contracts(&paths.contracts)?;
    let model = model_from_contracts(&set, &paths.project);
    let cache = if paths.cache {
        cache_path(&paths.evidence)
    } else {
        None
    };
    let t1 = std::time::Instant::now();
    let loaded = load_runs_excluding(&paths.evidence, &[], &[], cache.as_deref())?;
    let t2 = std::time::Instant::now();
    let tests = bound_tests(paths.tests.as_deref())?;
    let fresh = SourceFreshness::new(&paths.project);
    let mut report = derive(&model, &loaded.runs, &fresh, &inputs_from(tests));
    report.unreadable = loaded.unreadable;
    if timing {
        eprintln!(
            "pv timing: contracts {:.3}s, records {:.3}s ({}), derive {:.3}s",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            report.records,
            t2.elapsed().as_secs_f64()
        );
    }
    Ok((set, report))
}
