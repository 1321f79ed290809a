//! Writing and reading evidence files.
//!
//! Writing: one file per record, `<compact UTC time>_<falsifier>_<pid>-<counter>-<random>.json`.
//! The counter separates records of one process (parallel test threads), the pid separates
//! processes of one machine, and the random part (from std's randomly keyed hasher) separates
//! machines whose files later meet in one directory. The file is written as a hidden `.tmp` file
//! in the same directory, flushed, and renamed into place, so a reader never sees half a record.
//!
//! Reading never modifies or deletes anything.

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::record::{EvidenceRecord, RECORD_FORMAT};
use crate::timefmt::compact_utc;

/// Environment variable naming the directory records are written to.
pub const EVIDENCE_DIR_ENV: &str = "PV_EVIDENCE_DIR";

/// The directory records go to: `$PV_EVIDENCE_DIR`, else the project's local evidence folder
/// (`pv.toml` `[evidence] local`). Committed evidence is added on purpose, never by a plain
/// `cargo test`.
pub fn evidence_dir(project: &pv_project::Project) -> PathBuf {
    match std::env::var_os(EVIDENCE_DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => project.local_evidence(),
    }
}

/// A failure to write a record.
#[derive(Debug, thiserror::Error)]
#[error("writing evidence to {path}: {source}")]
pub struct WriteError {
    /// The file or directory involved.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

/// `<pid>-<counter>-<random>`: unique per process, call and machine.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(n);
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{}-{n}-{:08x}", std::process::id(), h.finish() as u32)
}

/// The file name for a record of `falsifier` finished at `t`.
pub fn record_file_name(falsifier: &str, t: SystemTime) -> String {
    let safe: String = falsifier
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}_{safe}_{}.json", compact_utc(t), unique_suffix())
}

/// A record written: where, and the sha256 of its bytes (what its run's manifest lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The record file.
    pub path: PathBuf,
    /// sha256 (lowercase hex) of the file's bytes.
    pub sha256: String,
}

/// Writes `record` into `dir` (created if needed) atomically. The record is not yet part of a
/// run: [`crate::manifest::record_written`] adds it to one.
pub fn write_record(dir: &Path, record: &EvidenceRecord) -> Result<Written, WriteError> {
    fs::create_dir_all(dir).map_err(|source| WriteError {
        path: dir.to_path_buf(),
        source,
    })?;
    let name = record_file_name(&record.falsifier, SystemTime::now());
    let final_path = dir.join(&name);
    let tmp_path = dir.join(format!(".{name}.tmp"));
    let mut json = serde_json::to_vec_pretty(record).map_err(|e| WriteError {
        path: final_path.clone(),
        source: io::Error::other(e),
    })?;
    json.push(b'\n');
    let write = || -> io::Result<()> {
        let mut f = fs::File::create(&tmp_path)?;
        f.write_all(&json)?;
        f.sync_all()?;
        fs::rename(&tmp_path, &final_path)
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&tmp_path);
        WriteError {
            path: final_path.clone(),
            source,
        }
    })?;
    Ok(Written {
        path: final_path,
        sha256: crate::manifest::sha256_hex(&json),
    })
}

/// Why a file could not be read as a record.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid record (truncated, corrupt, wrong shape).
    #[error("{path}: not a valid evidence record: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
}

/// Reads one record, checking its format version and timestamp.
pub fn read_record(path: &Path) -> Result<EvidenceRecord, ReadError> {
    let bytes = fs::read(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_record(path, &bytes)
}

/// Parses one record from bytes (`path` is used in messages only).
pub fn parse_record(path: &Path, bytes: &[u8]) -> Result<EvidenceRecord, ReadError> {
    let invalid = |message: String| ReadError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let rec: EvidenceRecord = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    if rec.format > RECORD_FORMAT {
        return Err(invalid(format!(
            "record format {} is newer than this reader ({RECORD_FORMAT})",
            rec.format
        )));
    }
    if crate::timefmt::parse_rfc3339(&rec.timestamp).is_none() {
        return Err(invalid(format!(
            "timestamp {:?} is not RFC 3339",
            rec.timestamp
        )));
    }
    Ok(rec)
}

/// Every record file under `dir` (recursively): `*.json` but not run manifests
/// (`*.intoto.json`), sorted by path; hidden files (in-flight `.tmp` files) are skipped. A
/// missing directory yields an empty list.
pub fn list_record_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(list_evidence_files(dir)?.records)
}

/// The files of an evidence folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvidenceFiles {
    /// Record files, sorted by path.
    pub records: Vec<PathBuf>,
    /// Run manifests (`*.intoto.json`), sorted by path.
    pub manifests: Vec<PathBuf>,
}

/// Records and run manifests under `dir`, in one walk (see [`list_record_files`]).
pub fn list_evidence_files(dir: &Path) -> io::Result<EvidenceFiles> {
    let mut all = Vec::new();
    match fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(EvidenceFiles::default()),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    walk(dir, &mut all)?;
    // Byte order of the whole path: deterministic, and much cheaper than `Path`'s
    // component-wise comparison for 100,000 files.
    all.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    let (manifests, records) = all.into_iter().partition(|p| {
        p.as_os_str()
            .to_string_lossy()
            .ends_with(crate::manifest::MANIFEST_SUFFIX)
    });
    Ok(EvidenceFiles { records, manifests })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(&entry.path(), out)?;
        } else if ft.is_file() && name.ends_with(".json") {
            out.push(entry.path());
        }
    }
    Ok(())
}
