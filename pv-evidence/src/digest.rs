//! The source digest: one sha256 over the sources a falsifier's claim is about, so that `pv`
//! can tell whether evidence was produced from the code that is checked out now.
//!
//! Two algorithms, both readable forever:
//!
//! - `pv-source-v2` (written now): the files of the falsifier's **scope** (`pv.toml`'s
//!   `[scope]` globs, [`pv_project::Scope`]), excluding the project's evidence folders. The
//!   record stores the patterns in `source.roots`; `pv` recomputes the digest over the scope
//!   configured *now*, and a record whose patterns differ from it is stale.
//! - `pv-source-v1` (records of format 1): explicit roots (files or folders walked
//!   recursively), stored in the record and recomputed over the same roots.
//!
//! Both hash the selected files keyed by their `/`-separated path relative to the project
//! root, sorted bytewise, as `path NUL length(u64 LE) contents` after a domain tag. v1 adds
//! `missing NUL root NUL` for a root that does not exist. Only regular files count; entries
//! whose name starts with `.` and symlinks are skipped.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::record::SourceDigest;

/// The digest algorithm written into records now: a glob scope.
pub const DIGEST_ALGORITHM: &str = "pv-source-v2";

/// The algorithm of format-1 records: explicit roots.
pub const DIGEST_ALGORITHM_V1: &str = "pv-source-v1";

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

/// Computes the `pv-source-v2` digest of a scope under the project root, skipping `exclude`
/// folders (the evidence folders).
pub fn scope_digest(
    project_root: &Path,
    patterns: &[String],
    exclude: &[PathBuf],
) -> Result<SourceDigest, DigestError> {
    let scope = pv_project::Scope::new(patterns).map_err(|e| DigestError {
        path: project_root.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    let files = scope
        .files(project_root, exclude)
        .map_err(|e| DigestError {
            path: project_root.to_path_buf(),
            source: io::Error::other(e.to_string()),
        })?;
    let mut hasher = Sha256::new();
    hasher.update(b"pv-source-v2\0");
    for (key, path) in &files {
        hash_file(&mut hasher, key, path)?;
    }
    Ok(SourceDigest {
        algorithm: DIGEST_ALGORITHM.to_string(),
        roots: patterns.to_vec(),
        sha256: hex(&hasher.finalize()),
        files: files.len(),
    })
}

/// Computes the `pv-source-v1` digest of `roots` under `workspace_root` (format-1 records).
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
            hash_file(&mut hasher, &key, &path)?;
            files += 1;
        }
    }
    Ok(SourceDigest {
        algorithm: DIGEST_ALGORITHM_V1.to_string(),
        roots: roots.iter().map(|r| r.to_string()).collect(),
        sha256: hex(&hasher.finalize()),
        files,
    })
}

/// One file into the digest, as both algorithms hash it: `key NUL length(u64 LE) contents`.
fn hash_file(hasher: &mut Sha256, key: &str, path: &Path) -> Result<(), DigestError> {
    let bytes = fs::read(path).map_err(|source| DigestError {
        path: path.to_path_buf(),
        source,
    })?;
    hasher.update(key.as_bytes());
    hasher.update(b"\0");
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(&bytes);
    Ok(())
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

    const SOURCE_ROOTS: &[&str] = &["engine/src", "engine/Cargo.toml", "engine/build.rs"];

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
    fn scope_digest_follows_the_scope_only() {
        let d = tree();
        fs::create_dir_all(d.path().join("evidence")).unwrap();
        fs::write(d.path().join("evidence/r.json"), "{}").unwrap();
        fs::write(d.path().join("README.md"), "text").unwrap();
        let scope = vec!["engine/src/**".to_string()];
        let ex = [d.path().join("evidence")];
        let base = scope_digest(d.path(), &scope, &ex).unwrap();
        assert_eq!((base.algorithm.as_str(), base.files), ("pv-source-v2", 2));
        assert_eq!(base.roots, scope);
        // Outside the scope: nothing changes.
        fs::write(d.path().join("README.md"), "other text").unwrap();
        fs::write(
            d.path().join("engine/Cargo.toml"),
            "[package]\nname = \"e\"",
        )
        .unwrap();
        fs::write(d.path().join("evidence/r2.json"), "{}").unwrap();
        assert_eq!(base, scope_digest(d.path(), &scope, &ex).unwrap());
        // Inside: an edit, a new file.
        // A same-length edit: the contents, not only the sizes, are hashed.
        fs::write(d.path().join("engine/src/lib.rs"), "pub mod b;").unwrap();
        let same_len = scope_digest(d.path(), &scope, &ex).unwrap();
        assert_ne!(base.sha256, same_len.sha256);
        fs::write(d.path().join("engine/src/lib.rs"), "pub mod a; // edited").unwrap();
        let edited = scope_digest(d.path(), &scope, &ex).unwrap();
        assert_ne!(base.sha256, edited.sha256);
        fs::write(d.path().join("engine/src/new.rs"), "").unwrap();
        let added = scope_digest(d.path(), &scope, &ex).unwrap();
        assert_ne!(edited.sha256, added.sha256);
        assert_eq!(added.files, 3);
        // A scope whose globs select everything still skips the evidence folder.
        let all = scope_digest(d.path(), &["**".to_string()], &ex).unwrap();
        fs::write(d.path().join("evidence/r3.json"), "{}").unwrap();
        assert_eq!(
            all,
            scope_digest(d.path(), &["**".to_string()], &ex).unwrap()
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
