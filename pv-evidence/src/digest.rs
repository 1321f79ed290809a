//! The source digest: one sha256 over the sources under test, so that `pv` can tell whether
//! evidence was produced from the code that is checked out now.
//!
//! The roots are listed once, in [`SOURCE_ROOTS`], and every record stores the list it used, so
//! `pv` recomputes exactly the same digest without knowing anything about the engine.
//!
//! Algorithm `pv-source-v1`: files are collected from each root (a file, or a directory walked
//! recursively), keyed by their path relative to the workspace root with `/` separators, sorted
//! bytewise, and hashed as `path NUL length(u64 LE) contents` after a domain tag. A root that does
//! not exist contributes `missing NUL path NUL`, so creating it later changes the digest. Only
//! regular files count; entries whose name starts with `.` (editor swap files, `.DS_Store`) are
//! skipped, and so are symlinks, whose targets may lie outside the roots.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::record::SourceDigest;

/// The digest algorithm written into records.
pub const DIGEST_ALGORITHM: &str = "pv-source-v1";

/// The sources whose change makes evidence stale, relative to the workspace root. Evidence is
/// about the engine; the falsifier tests themselves are bound by the contract hash and the test
/// name, and `pv` crates never change what the engine computes.
pub const SOURCE_ROOTS: &[&str] = &["engine/src", "engine/Cargo.toml", "engine/build.rs"];

/// An I/O failure while hashing, with the path that caused it.
#[derive(Debug, thiserror::Error)]
#[error("hashing {path}: {source}")]
pub struct DigestError {
    /// The file or directory that could not be read.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

/// Computes the `pv-source-v1` digest of `roots` under `workspace_root`.
pub fn source_digest(workspace_root: &Path, roots: &[&str]) -> Result<SourceDigest, DigestError> {
    let mut hasher = Sha256::new();
    hasher.update(b"pv-source-v1\0");
    let mut files = 0usize;
    for root in roots {
        let abs = workspace_root.join(root);
        let meta = match fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                hasher.update(b"missing\0");
                hasher.update(root.as_bytes());
                hasher.update(b"\0");
                continue;
            }
            Err(source) => return Err(DigestError { path: abs, source }),
        };
        let mut list = Vec::new();
        if meta.is_dir() {
            collect(&abs, &mut list)?;
        } else if meta.is_file() {
            list.push(abs.clone());
        }
        let mut keyed: Vec<(String, PathBuf)> = list
            .into_iter()
            .map(|p| (rel_key(workspace_root, &p), p))
            .collect();
        keyed.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (key, path) in keyed {
            let bytes = fs::read(&path).map_err(|source| DigestError {
                path: path.clone(),
                source,
            })?;
            hasher.update(key.as_bytes());
            hasher.update(b"\0");
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
            files += 1;
        }
    }
    Ok(SourceDigest {
        algorithm: DIGEST_ALGORITHM.to_string(),
        roots: roots.iter().map(|r| r.to_string()).collect(),
        sha256: hex(&hasher.finalize()),
        files,
    })
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DigestError> {
    let rd = fs::read_dir(dir).map_err(|source| DigestError {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in rd {
        let entry = entry.map_err(|source| DigestError {
            path: dir.to_path_buf(),
            source,
        })?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let ft = entry.file_type().map_err(|source| DigestError {
            path: path.clone(),
            source,
        })?;
        if ft.is_dir() {
            collect(&path, out)?;
        } else if ft.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

fn rel_key(root: &Path, p: &Path) -> String {
    let rel = p.strip_prefix(root).unwrap_or(p);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// sha256 of a byte string, lowercase hex (used for contract files).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("engine/src/a")).unwrap();
        fs::write(d.path().join("engine/src/lib.rs"), "pub mod a;").unwrap();
        fs::write(d.path().join("engine/src/a/mod.rs"), "pub fn f() {}").unwrap();
        fs::write(d.path().join("engine/Cargo.toml"), "[package]").unwrap();
        d
    }

    #[test]
    fn digest_is_stable_and_counts_files() {
        let d = tree();
        let a = source_digest(d.path(), SOURCE_ROOTS).unwrap();
        let b = source_digest(d.path(), SOURCE_ROOTS).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.files, 3);
        assert_eq!(a.sha256.len(), 64);
    }

    #[test]
    fn any_change_changes_the_digest() {
        let d = tree();
        let base = source_digest(d.path(), SOURCE_ROOTS).unwrap().sha256;
        // An edit.
        fs::write(d.path().join("engine/src/a/mod.rs"), "pub fn f() { }").unwrap();
        let edited = source_digest(d.path(), SOURCE_ROOTS).unwrap().sha256;
        assert_ne!(base, edited);
        // A rename with the same contents.
        fs::rename(
            d.path().join("engine/src/a/mod.rs"),
            d.path().join("engine/src/a/other.rs"),
        )
        .unwrap();
        let renamed = source_digest(d.path(), SOURCE_ROOTS).unwrap().sha256;
        assert_ne!(edited, renamed);
        // A missing root appearing.
        fs::write(d.path().join("engine/build.rs"), "fn main() {}").unwrap();
        let with_build = source_digest(d.path(), SOURCE_ROOTS).unwrap().sha256;
        assert_ne!(renamed, with_build);
    }

    #[test]
    fn hidden_files_do_not_count() {
        let d = tree();
        let base = source_digest(d.path(), SOURCE_ROOTS).unwrap();
        fs::write(d.path().join("engine/src/.lib.rs.swp"), "junk").unwrap();
        assert_eq!(base, source_digest(d.path(), SOURCE_ROOTS).unwrap());
    }

    #[test]
    fn content_boundaries_are_unambiguous() {
        // "ab" + "c" must differ from "a" + "bc" under the same names.
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        for (d, x, y) in [(&d1, "ab", "c"), (&d2, "a", "bc")] {
            fs::create_dir_all(d.path().join("r")).unwrap();
            fs::write(d.path().join("r/1"), x).unwrap();
            fs::write(d.path().join("r/2"), y).unwrap();
        }
        assert_ne!(
            source_digest(d1.path(), &["r"]).unwrap().sha256,
            source_digest(d2.path(), &["r"]).unwrap().sha256
        );
    }

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
