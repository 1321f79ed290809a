//! Builds the inputs of [`crate::status::derive`] from files: contracts, evidence records, the
//! current source digests, and the bound tests.
//!
//! Never writes: evidence is read-only to `pv`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use pv_contract::ContractSet;
use pv_evidence::manifest::{read_manifest, sha256_hex, Manifest};
use pv_evidence::record::{SourceDigest, Tier};
use pv_evidence::store::{list_evidence_files, parse_record};
use pv_project::Project;
use rayon::prelude::*;

use serde::{Deserialize, Serialize};

use crate::status::{
    derive, ContractModel, CriterionModel, DivergenceModel, FalsifierModel, Inputs, Model,
    Provenance, Run, RunFacts, RunRecord, RunSignature, StageModel, StatusReport, TrustPolicy,
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
    /// Count only records an allowed signer vouches for (`--require-attested`).
    pub require_attested: bool,
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
            require_attested: false,
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
            require_attested: false,
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
    /// The trust policy could not be used.
    #[error("{message}")]
    Trust {
        /// What went wrong, naming the files.
        message: String,
    },
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
    /// Valid records, each with its provenance (rule 17) resolved against `manifests`.
    pub runs: Vec<Run>,
    /// `path: why` for each unreadable, truncated or corrupt file (reported, then skipped).
    pub unreadable: Vec<String>,
    /// The run manifests read, which [`Provenance::Run`] indexes.
    pub manifests: Vec<RunFacts>,
}

/// Reads every record and run manifest under `dirs` in parallel (signatures not checked).
/// Files are named relative to their directory.
pub fn load_runs(dirs: &[PathBuf]) -> Result<LoadedRuns, LoadError> {
    load_runs_excluding(dirs, &[], &[], None, None)
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
    /// Size and modification time (ns) when parsed: a file whose size or time changed is read
    /// again (an edit that keeps both is caught by `--no-cache` and `pv evidence verify`, which
    /// always read every byte).
    size: u64,
    mtime: i128,
    /// sha256 of the bytes parsed, compared with the run manifest's.
    sha256: String,
    ts: i64,
    record: RunRecord,
}

/// Bumped whenever `RunRecord` or the cache layout changes.
const CACHE_VERSION: u32 = 6;

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
/// With `signers`, manifest signatures are verified against them.
pub fn load_runs_excluding(
    dirs: &[PathBuf],
    exclude: &[PathBuf],
    keep: &[PathBuf],
    cache: Option<&Path>,
    signers: Option<&pv_attest::AllowedSigners>,
) -> Result<LoadedRuns, LoadError> {
    let mut files: Vec<(usize, PathBuf)> = Vec::new();
    let mut manifest_files: Vec<(usize, PathBuf)> = Vec::new();
    let mut seen = HashSet::new();
    for (di, d) in dirs.iter().enumerate() {
        let listed = list_evidence_files(d).map_err(|source| LoadError::Evidence {
            dir: d.clone(),
            source,
        })?;
        let kept = |f: &PathBuf| {
            exclude.is_empty()
                || !exclude.iter().any(|e| f.starts_with(e))
                || keep.iter().any(|k| f.starts_with(k))
        };
        for f in listed.records {
            // Only overlapping directories can list a file twice.
            if kept(&f) && (dirs.len() == 1 || seen.insert(f.clone())) {
                files.push((di, f));
            }
        }
        for f in listed.manifests {
            if kept(&f) && (dirs.len() == 1 || seen.insert(f.clone())) {
                manifest_files.push((di, f));
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
    let rel = |di: usize, f: &Path| {
        f.strip_prefix(&dirs[di])
            .unwrap_or(f)
            .to_string_lossy()
            .into_owned()
    };
    // Records are read in parallel; a cache hit (same size and modification time) is not
    // re-read. Each slot: the run and its sha256, or why the file is no record.
    let cached = Mutex::new(cached);
    let loaded: Vec<(Result<LoadedRecord, String>, bool)> = files
        .par_iter()
        .map(|(di, f)| {
            let name = rel(*di, f);
            let meta = std::fs::metadata(f).map_err(|e| format!("{}: {e}", f.display()));
            let (size, mtime) = match &meta {
                Ok(m) => (m.len(), mtime_ns(m)),
                Err(_) => (0, 0),
            };
            let hit = cached
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(*di, name.clone()))
                .filter(|e| meta.is_ok() && e.size == size && e.mtime == mtime);
            if let Some(e) = hit {
                let run = Run {
                    file: e.file,
                    ts: e.ts as i128,
                    record: e.record,
                    provenance: Provenance::Loose,
                };
                return (Ok((run, e.sha256, size, mtime)), false);
            }
            let parsed = (|| {
                meta?;
                let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
                let record = parse_record(f, &bytes).map_err(|e| e.to_string())?;
                let ts = pv_evidence::timefmt::parse_rfc3339(&record.timestamp)
                    .ok_or_else(|| format!("{}: bad timestamp", f.display()))?;
                let run = Run {
                    file: name,
                    ts,
                    record: RunRecord::from(record),
                    provenance: Provenance::Loose,
                };
                Ok::<_, String>((run, sha256_hex(&bytes), size, mtime))
            })();
            (parsed, true)
        })
        .collect();
    let mut out = LoadedRuns::default();
    let mut changed = false;
    let mut kept = Vec::with_capacity(loaded.len());
    for ((r, fresh_read), (di, _)) in loaded.into_iter().zip(&files) {
        match r {
            Ok((run, sha, size, mtime)) => {
                changed |= fresh_read;
                kept.push((*di, sha, size, mtime));
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
    let keys: Vec<(usize, &str)> = kept.iter().map(|k| (k.0, k.1.as_str())).collect();
    resolve_provenance(dirs, &manifest_files, &keys, signers, &mut out);
    if timing {
        eprintln!(
            "pv timing: {} manifests resolved {:.3}s",
            out.manifests.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    if let Some(path) = cache {
        if changed || out.runs.len() != cached_len {
            let entries = out
                .runs
                .iter()
                .zip(kept)
                .map(|(run, (di, sha256, size, mtime))| CacheEntry {
                    dir: di,
                    file: run.file.clone(),
                    size,
                    mtime,
                    sha256,
                    ts: run.ts as i64,
                    record: run.record.clone(),
                })
                .collect();
            write_cache(path, entries);
        }
    }
    Ok(out)
}

/// A record read (or taken from the cache): the run, the sha256 of its bytes, its size and
/// modification time.
type LoadedRecord = (Run, String, u64, i128);

fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Rule 17: reads the run manifests, checks their signatures (with `signers`), and sets each
/// record's provenance (`records[i]`: the directory index and sha256 of `out.runs[i]`).
/// Unusable manifests go to `out.unreadable`, listed records that are not there to
/// `out.missing`.
fn resolve_provenance(
    dirs: &[PathBuf],
    manifest_files: &[(usize, PathBuf)],
    records: &[(usize, &str)],
    signers: Option<&pv_attest::AllowedSigners>,
    out: &mut LoadedRuns,
) {
    let parsed: Vec<Result<(usize, String, Manifest), String>> = manifest_files
        .par_iter()
        .map(|(di, f)| {
            let m = read_manifest(f).map_err(|e| e.to_string())?;
            let name = f
                .strip_prefix(&dirs[*di])
                .unwrap_or(f)
                .to_string_lossy()
                .into_owned();
            Ok((*di, name, m))
        })
        .collect();
    // (dir, record path relative to it) -> index of the record in `out.runs`.
    let mut by_path: HashMap<(usize, &str), usize> = HashMap::with_capacity(out.runs.len());
    for (i, r) in out.runs.iter().enumerate() {
        by_path.insert((records[i].0, r.file.as_str()), i);
    }
    let mut provenance = vec![Provenance::Loose; out.runs.len()];
    let mut missing = Vec::new();
    for p in parsed {
        let (di, name, m) = match p {
            Ok(x) => x,
            Err(e) => {
                out.unreadable.push(e);
                continue;
            }
        };
        let signature = run_signature(&m, signers);
        let started = pv_evidence::timefmt::parse_rfc3339(&m.run.started).unwrap_or(0);
        let run_index = out.manifests.len();
        out.manifests.push(RunFacts {
            manifest: name.clone(),
            id: m.run.run_id.clone(),
            started,
            signature,
        });
        let folder = Path::new(&name).parent().unwrap_or(Path::new(""));
        for (subject, sha) in m.subjects() {
            let path = folder.join(subject).to_string_lossy().into_owned();
            match by_path.get(&(di, path.as_str())) {
                None => missing.push(missing_placeholder(&m, &name, subject, path)),
                Some(&i) => {
                    // A record two manifests list belongs to the first whose digest matches.
                    if records[i].1 == sha {
                        if !matches!(provenance[i], Provenance::Run(_)) {
                            provenance[i] = Provenance::Run(run_index);
                        }
                    } else if provenance[i] == Provenance::Loose {
                        provenance[i] = Provenance::Altered {
                            manifest: name.clone(),
                        };
                    }
                }
            }
        }
    }
    for (run, p) in out.runs.iter_mut().zip(provenance) {
        run.provenance = p;
    }
    out.runs.extend(missing);
}

/// A stand-in for a record manifest `m` (at `manifest`) lists as `subject` (at `path`) that is
/// not there: what the manifest's summary says of it, marked [`Provenance::Missing`].
fn missing_placeholder(m: &Manifest, manifest: &str, subject: &str, path: String) -> Run {
    let summary = m.run.records.iter().find(|r| r.file == subject);
    let finished = &m.run.finished;
    Run {
        file: path,
        ts: pv_evidence::timefmt::parse_rfc3339(finished).unwrap_or(0),
        record: RunRecord {
            falsifier: summary.map(|s| s.falsifier.clone()).unwrap_or_default(),
            contract_sha256: String::new(),
            falsifier_sha256: None,
            outcome: summary.map_or(pv_evidence::Outcome::Error, |s| s.outcome),
            reason: None,
            metrics: Vec::new(),
            checks: Vec::new(),
            test: summary.map(|s| s.test.clone()).unwrap_or_default(),
            source: SourceDigest {
                algorithm: String::new(),
                roots: Vec::new(),
                sha256: String::new(),
                files: 0,
            },
            timestamp: finished.clone(),
            commit: None,
            hardware: String::new(),
        },
        provenance: Provenance::Missing {
            manifest: manifest.to_string(),
        },
    }
}

/// What a manifest's signatures establish against `signers` (rule 18).
pub fn run_signature(m: &Manifest, signers: Option<&pv_attest::AllowedSigners>) -> RunSignature {
    if m.envelope.signatures.is_empty() {
        return RunSignature::Unsigned;
    }
    let Some(signers) = signers else {
        return RunSignature::NotChecked;
    };
    let message = m.signed_bytes();
    // Signatures are judged as of the run's end, as git judges a commit's signature as of its
    // date: rotating a key out later does not unsign old runs.
    let at = pv_evidence::timefmt::parse_rfc3339(&m.run.finished)
        .and_then(|ns| u64::try_from(ns).ok())
        .map_or(SystemTime::now(), |ns| {
            UNIX_EPOCH + std::time::Duration::from_nanos(ns)
        });
    let mut broken = None;
    let mut not_allowed = None;
    let mut principals: Vec<String> = Vec::new();
    let mut fingerprint = String::new();
    for s in &m.envelope.signatures {
        let sig = match pv_attest::SshSignature::from_base64(&s.sig) {
            Ok(sig) => sig,
            Err(e) => {
                broken.get_or_insert(format!("unreadable signature: {e}"));
                continue;
            }
        };
        match signers.verify(
            pv_evidence::manifest::SIGNATURE_NAMESPACE,
            &message,
            &sig,
            at,
        ) {
            Ok(v) => {
                fingerprint = v.fingerprint;
                principals.extend(v.principals);
            }
            Err(pv_attest::VerifyError::BadSignature { .. })
            | Err(pv_attest::VerifyError::WrongNamespace { .. }) => {
                broken.get_or_insert(format!("signature by {}", sig.fingerprint()));
            }
            Err(e) => {
                not_allowed.get_or_insert(e.to_string());
            }
        }
    }
    if !principals.is_empty() {
        return RunSignature::Verified {
            principals,
            fingerprint,
        };
    }
    match (broken, not_allowed) {
        (Some(b), _) => RunSignature::Broken(b),
        (None, Some(n)) => RunSignature::NotAllowed(n),
        (None, None) => RunSignature::Unsigned,
    }
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

/// The derivation's inputs from the bound-test scan ([`bound_tests`]) and the clock (no runs,
/// no trust policy: see [`derive_loaded`]).
pub fn inputs_from(tests: Option<HashMap<String, String>>) -> Inputs {
    Inputs {
        bound: tests.as_ref().map(|t| t.keys().cloned().collect()),
        now: now_ns(),
        // A function the scan could not name is not checked.
        test_functions: tests.map(|t| t.into_iter().filter(|(_, f)| !f.is_empty()).collect()),
        runs: Vec::new(),
        count_loose: false,
        trust: None,
    }
}

/// What the project's `pv.toml` says about trust: the loose-record policy, and the signers and
/// per-tier policy of `[trust]`.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// The `allowed_signers` file, loaded.
    pub signers: Option<pv_attest::AllowedSigners>,
    /// Who may vouch for which tier.
    pub policy: Option<TrustPolicy>,
    /// Loose records count (migration).
    pub count_loose: bool,
}

impl Trust {
    /// The trust settings of `project`; an unreadable or malformed `allowed_signers` file is an
    /// error (a policy that cannot be checked must not pass silently).
    pub fn for_project(project: &Project) -> Result<Trust, LoadError> {
        let count_loose = project.config.evidence.loose == pv_project::LooseRecords::Count;
        let Some(t) = &project.config.trust else {
            return Ok(Trust {
                count_loose,
                ..Trust::default()
            });
        };
        let file = project.root.join(&t.allowed_signers);
        let signers = pv_attest::AllowedSigners::load(&file).map_err(|e| LoadError::Trust {
            message: format!(
                "{e} (named by [trust] allowed_signers in {})",
                project_file_name(project)
            ),
        })?;
        Ok(Trust {
            signers: Some(signers),
            policy: Some(TrustPolicy {
                algorithm: t.algorithm.clone(),
                hardware: t.hardware.clone(),
                require_attested: t.require_attested,
            }),
            count_loose,
        })
    }
}

fn project_file_name(project: &Project) -> String {
    project.file.as_ref().map_or_else(
        || pv_project::PROJECT_FILE.to_string(),
        |f| f.display().to_string(),
    )
}

/// Derives the report from what [`load_runs_excluding`] loaded: runs, manifests, the bound
/// tests, and the trust settings (`require_attested`: count attested records only).
pub fn derive_loaded(
    model: &Model,
    loaded: LoadedRuns,
    fresh: &dyn crate::status::Freshness,
    tests: Option<HashMap<String, String>>,
    trust: &Trust,
    require_attested: bool,
) -> StatusReport {
    let mut inputs = inputs_from(tests);
    inputs.runs = loaded.manifests;
    inputs.count_loose = trust.count_loose;
    inputs.trust = trust.policy.clone().map(|mut p| {
        p.require_attested |= require_attested;
        p
    });
    let mut report = derive(model, &loaded.runs, fresh, &inputs);
    report.unreadable = loaded.unreadable;
    report
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
    status_for_selected(paths, &[], &[])
}

/// As [`status_for`], reading the evidence folders' files except those under `exclude` that
/// are not under `keep` (`pv verify`: committed evidence and this run, not older local runs).
pub fn status_for_selected(
    paths: &Paths,
    exclude: &[PathBuf],
    keep: &[PathBuf],
) -> Result<(ContractSet, StatusReport), LoadError> {
    let timing = std::env::var_os("PV_TIMING").is_some();
    let t0 = std::time::Instant::now();
    let set = load_contracts(&paths.contracts)?;
    let model = model_from_contracts(&set, &paths.project);
    let cache = if paths.cache {
        cache_path(&paths.evidence)
    } else {
        None
    };
    let trust = Trust::for_project(&paths.project)?;
    let t1 = std::time::Instant::now();
    let loaded = load_runs_excluding(
        &paths.evidence,
        exclude,
        keep,
        cache.as_deref(),
        trust.signers.as_ref(),
    )?;
    let t2 = std::time::Instant::now();
    let tests = bound_tests(paths.tests.as_deref())?;
    let fresh = SourceFreshness::new(&paths.project);
    let report = derive_loaded(
        &model,
        loaded,
        &fresh,
        tests,
        &trust,
        paths.require_attested,
    );
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
