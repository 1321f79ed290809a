//! Source scopes: the files a record's source digest covers, as glob patterns relative to the
//! project root.
//!
//! Pattern rules (`docs/project-file.md`):
//! - `*` and `?` match within one path segment, `**` across segments, `{a,b}` alternatives,
//!   `[abc]` classes (globset's syntax with a literal separator);
//! - a pattern without any of `*?[{` that names a directory means everything under it
//!   (`engine/src` = `engine/src/**`);
//! - hidden entries (a name starting with `.`), symlinks and every folder named `target` are
//!   never in a scope, and neither is anything under the `exclude` folders the caller passes
//!   (the evidence folders: a new record must not stale the others).

use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::ProjectError;

/// A compiled scope.
#[derive(Debug, Clone)]
pub struct Scope {
    patterns: Vec<String>,
    set: GlobSet,
    /// Per pattern: the literal folder to start walking from (relative, `/`-separated; empty =
    /// the root) and whether the pattern is a plain path (no glob characters).
    bases: Vec<(String, bool)>,
}

fn is_literal(p: &str) -> bool {
    !p.contains(['*', '?', '[', '{'])
}

impl Scope {
    /// Compiles `patterns`. An invalid glob is an error naming it.
    pub fn new(patterns: &[String]) -> Result<Scope, String> {
        let mut b = GlobSetBuilder::new();
        let mut bases = Vec::new();
        for p in patterns {
            let p = p.trim_end_matches('/');
            if p.starts_with('/') || p.split('/').any(|s| s == "..") {
                return Err(format!(
                    "pattern {p:?} leaves the project: scopes are relative to the project root"
                ));
            }
            let glob = |s: &str| {
                GlobBuilder::new(s)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| format!("pattern {p:?}: {e}"))
            };
            b.add(glob(p)?);
            let literal = is_literal(p);
            if literal {
                b.add(glob(&format!("{p}/**"))?);
            }
            let base: Vec<&str> = p.split('/').take_while(|seg| is_literal(seg)).collect();
            // A literal pattern may name a file: walk from its parent, match exactly.
            let base = if literal {
                p.to_string()
            } else {
                base.join("/")
            };
            bases.push((base, literal));
        }
        let set = b.build().map_err(|e| e.to_string())?;
        Ok(Scope {
            patterns: patterns.to_vec(),
            set,
            bases,
        })
    }

    /// The patterns as written.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether a `/`-separated path relative to the root is in the scope (ignoring the walk's
    /// exclusions).
    pub fn matches(&self, rel: &str) -> bool {
        self.set.is_match(rel)
    }

    /// Every regular file in the scope under `root`, as (`/`-separated relative path, absolute
    /// path), sorted bytewise by the relative path, without duplicates. `exclude` folders
    /// (absolute or relative to `root`) are skipped.
    pub fn files(
        &self,
        root: &Path,
        exclude: &[PathBuf],
    ) -> Result<Vec<(String, PathBuf)>, ProjectError> {
        let exclude: Vec<PathBuf> = exclude
            .iter()
            .map(|e| {
                if e.is_absolute() {
                    e.clone()
                } else {
                    root.join(e)
                }
            })
            .collect();
        let mut out = Vec::new();
        let mut walked: Vec<String> = Vec::new();
        for (base, literal) in &self.bases {
            // A base under one already walked adds nothing.
            if walked
                .iter()
                .any(|w| w.is_empty() || base == w || base.starts_with(&format!("{w}/")))
            {
                continue;
            }
            let abs = if base.is_empty() {
                root.to_path_buf()
            } else {
                root.join(base)
            };
            match std::fs::symlink_metadata(&abs) {
                Ok(m) if m.is_file() && *literal => {
                    out.push((base.clone(), abs));
                    continue;
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(ProjectError::Walk { path: abs, source }),
            }
            walked.push(base.clone());
            self.walk(&abs, base, &exclude, &mut out)?;
        }
        out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(out)
    }

    fn walk(
        &self,
        dir: &Path,
        rel: &str,
        exclude: &[PathBuf],
        out: &mut Vec<(String, PathBuf)>,
    ) -> Result<(), ProjectError> {
        if exclude.iter().any(|e| dir == e) {
            return Ok(());
        }
        let rd = std::fs::read_dir(dir).map_err(|source| ProjectError::Walk {
            path: dir.to_path_buf(),
            source,
        })?;
        for entry in rd {
            let entry = entry.map_err(|source| ProjectError::Walk {
                path: dir.to_path_buf(),
                source,
            })?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let ft = entry.file_type().map_err(|source| ProjectError::Walk {
                path: path.clone(),
                source,
            })?;
            let key = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            if ft.is_dir() {
                if name != "target" {
                    self.walk(&path, &key, exclude, out)?;
                }
            } else if ft.is_file() && self.set.is_match(&key) {
                out.push((key, path));
            }
        }
        Ok(())
    }

    /// The patterns that select no file under `root` (a likely typo).
    pub fn unmatched(&self, root: &Path, exclude: &[PathBuf]) -> Result<Vec<String>, ProjectError> {
        let files = self.files(root, exclude)?;
        let mut out = Vec::new();
        for p in &self.patterns {
            let one =
                Scope::new(std::slice::from_ref(p)).map_err(|message| ProjectError::Invalid {
                    path: root.join(crate::PROJECT_FILE),
                    message,
                    help: String::new(),
                })?;
            if !files.iter().any(|(rel, _)| one.matches(rel)) {
                out.push(p.clone());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "src/lib.rs",
            "src/a/mod.rs",
            "src/a/b.rs",
            "src/.swap.rs",
            "tests/t.rs",
            "Cargo.toml",
            "target/debug/x.rs",
            "evidence/runs/r.rs",
            "sub/Cargo.toml",
            "sub/src/lib.rs",
        ] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, f).unwrap();
        }
        d
    }

    fn files(d: &Path, pats: &[&str]) -> Vec<String> {
        let pats: Vec<String> = pats.iter().map(|s| s.to_string()).collect();
        Scope::new(&pats)
            .unwrap()
            .files(d, &[PathBuf::from("evidence")])
            .unwrap()
            .into_iter()
            .map(|(r, _)| r)
            .collect()
    }

    #[test]
    fn globs_select_files() {
        let d = tree();
        assert_eq!(
            files(d.path(), &["src/**"]),
            ["src/a/b.rs", "src/a/mod.rs", "src/lib.rs"]
        );
        assert_eq!(files(d.path(), &["src/*.rs"]), ["src/lib.rs"]);
        assert_eq!(
            files(d.path(), &["**/*.rs"]),
            [
                "src/a/b.rs",
                "src/a/mod.rs",
                "src/lib.rs",
                "sub/src/lib.rs",
                "tests/t.rs"
            ]
        );
        assert_eq!(
            files(d.path(), &["**/Cargo.toml"]),
            ["Cargo.toml", "sub/Cargo.toml"]
        );
    }

    #[test]
    fn a_plain_path_is_a_file_or_everything_under_a_folder() {
        let d = tree();
        assert_eq!(files(d.path(), &["src/a"]), ["src/a/b.rs", "src/a/mod.rs"]);
        assert_eq!(files(d.path(), &["Cargo.toml"]), ["Cargo.toml"]);
        assert_eq!(
            files(d.path(), &["src/a", "src/a/b.rs", "src/**"]),
            ["src/a/b.rs", "src/a/mod.rs", "src/lib.rs"]
        );
    }

    #[test]
    fn hidden_target_and_excluded_never_count() {
        let d = tree();
        let all = files(d.path(), &["**"]);
        assert!(!all.iter().any(|f| f.contains(".swap")), "{all:?}");
        assert!(!all.iter().any(|f| f.starts_with("target/")), "{all:?}");
        assert!(!all.iter().any(|f| f.starts_with("evidence/")), "{all:?}");
    }

    #[test]
    fn patterns_matching_nothing_are_reported() {
        let d = tree();
        let s = Scope::new(&["src/**".into(), "srcc/**".into(), "nothing.rs".into()]).unwrap();
        assert_eq!(
            s.unmatched(d.path(), &[]).unwrap(),
            ["srcc/**", "nothing.rs"]
        );
    }

    #[test]
    fn patterns_leaving_the_project_are_rejected() {
        assert!(Scope::new(&["../x/**".into()]).is_err());
        assert!(Scope::new(&["/etc/**".into()]).is_err());
        assert!(Scope::new(&["src/[".into()]).is_err());
    }
}
