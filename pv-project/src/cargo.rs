//! The few facts pv reads from `Cargo.toml` files, without running cargo: the root above a
//! folder, the packages of a workspace (or the single package), and which of them depend on
//! `contract-macros`.

use std::path::{Path, PathBuf};

use crate::{ProjectError, MACROS_CRATE};

/// One package of the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// `[package] name` (the folder name when the manifest has none).
    pub name: String,
    /// Its folder, relative to the project root (`.` for a root package), `/`-separated.
    pub path: String,
    /// Its folder, absolute.
    pub dir: PathBuf,
    /// Whether it depends on `contract-macros` (any dependency table, target tables included).
    pub uses_macros: bool,
}

/// The cargo root above `start`: the nearest ancestor whose `Cargo.toml` has a `[workspace]`
/// table, else the nearest with any `Cargo.toml`, else `start`.
pub fn root_above(start: &Path) -> PathBuf {
    let mut nearest = None;
    for dir in start.ancestors() {
        let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        if nearest.is_none() {
            nearest = Some(dir.to_path_buf());
        }
        if text
            .parse::<toml::Table>()
            .is_ok_and(|t| t.contains_key("workspace"))
        {
            return dir.to_path_buf();
        }
    }
    nearest.unwrap_or_else(|| start.to_path_buf())
}

fn read_manifest(path: &Path) -> Result<toml::Table, ProjectError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProjectError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.parse()
        .map_err(|e: toml::de::Error| ProjectError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
}

/// Whether a manifest lists `name` in any dependency table (`[dependencies]`,
/// `[dev-dependencies]`, `[build-dependencies]`, and their `[target.*]` forms).
pub fn depends_on(manifest: &toml::Table, name: &str) -> bool {
    let in_tables = |t: &toml::Table| {
        ["dependencies", "dev-dependencies", "build-dependencies"]
            .iter()
            .any(|k| {
                t.get(*k)
                    .and_then(toml::Value::as_table)
                    .is_some_and(|d| d.contains_key(name))
            })
    };
    in_tables(manifest)
        || manifest
            .get("target")
            .and_then(toml::Value::as_table)
            .is_some_and(|targets| {
                targets
                    .values()
                    .filter_map(toml::Value::as_table)
                    .any(in_tables)
            })
}

/// The packages under `root` ([`scan`] without its notes).
pub fn packages(root: &Path) -> Result<Vec<Package>, ProjectError> {
    Ok(scan(root)?.0)
}

/// The packages under `root`: the workspace's members (`members` entries that are paths or
/// `dir/*`, minus `exclude`) and the root package if the root manifest has one, with notes on
/// members that were skipped (no folder, an unexpanded pattern) or whose manifest did not
/// parse (kept, named after their folder). A root without `Cargo.toml` has no packages; a root
/// manifest that does not parse is an error.
pub fn scan(root: &Path) -> Result<(Vec<Package>, Vec<String>), ProjectError> {
    let manifest = root.join("Cargo.toml");
    let mut notes = Vec::new();
    if !manifest.is_file() {
        return Ok((Vec::new(), notes));
    }
    let doc = read_manifest(&manifest)?;
    let mut paths = Vec::new();
    if doc.contains_key("package") {
        paths.push(".".to_string());
    }
    if let Some(ws) = doc.get("workspace").and_then(toml::Value::as_table) {
        let strings = |key: &str| -> Vec<String> {
            ws.get(key)
                .and_then(toml::Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .map(|s| s.trim_end_matches('/').to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let exclude = strings("exclude");
        for m in strings("members") {
            let expanded = match m.strip_suffix("/*") {
                Some(dir) if !dir.contains(['*', '?', '[']) => glob_dir(root, dir),
                _ if m.contains(['*', '?', '[']) => {
                    notes.push(format!(
                        "member pattern `{m}` not expanded (only `dir/*` is understood)"
                    ));
                    Vec::new()
                }
                _ => vec![m],
            };
            paths.extend(expanded.into_iter().filter(|p| !exclude.contains(p)));
        }
    }
    let mut out = Vec::new();
    for p in paths {
        let dir = if p == "." {
            root.to_path_buf()
        } else {
            root.join(&p)
        };
        let m = dir.join("Cargo.toml");
        if !dir.is_dir() {
            notes.push(format!("member `{p}`: no such directory"));
            continue;
        }
        let folder_name = || p.rsplit('/').next().unwrap_or(&p).to_string();
        let doc = if p == "." {
            Ok(doc.clone())
        } else {
            read_manifest(&m)
        };
        let (name, uses_macros) = match doc {
            Ok(doc) => (
                doc.get("package")
                    .and_then(|p| p.get("name"))
                    .and_then(toml::Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(folder_name),
                depends_on(&doc, MACROS_CRATE),
            ),
            Err(e) => {
                let why = match &e {
                    ProjectError::Parse { message, .. } => {
                        message.lines().next().unwrap_or("").to_string()
                    }
                    other => other.to_string(),
                };
                notes.push(format!(
                    "member `{p}`: its Cargo.toml does not parse ({why})"
                ));
                (folder_name(), false)
            }
        };
        out.push(Package {
            name,
            path: p,
            dir,
            uses_macros,
        });
    }
    Ok((out, notes))
}

fn glob_dir(root: &Path, dir: &str) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| format!("{dir}/{}", e.file_name().to_string_lossy()))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn workspace_members_and_their_use_of_the_macros() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(
            r,
            "Cargo.toml",
            "[workspace]\nmembers = [\"lib\", \"crates/*\"]\nexclude = [\"crates/old\"]\n",
        );
        write(r, "lib/Cargo.toml", "[package]\nname = \"mylib\"\n");
        write(
            r,
            "crates/checks/Cargo.toml",
            "[package]\nname = \"checks\"\n[dev-dependencies]\ncontract-macros = \"0.1\"\n",
        );
        write(
            r,
            "crates/gpu/Cargo.toml",
            "[package]\nname = \"gpu\"\n[target.'cfg(unix)'.dependencies]\ncontract-macros = \"0.1\"\n",
        );
        write(r, "crates/old/Cargo.toml", "[package]\nname = \"old\"\n");
        let p = packages(r).unwrap();
        let names: Vec<(&str, bool)> = p.iter().map(|p| (p.name.as_str(), p.uses_macros)).collect();
        assert_eq!(names, [("mylib", false), ("checks", true), ("gpu", true)]);
        assert_eq!(root_above(&r.join("crates/checks/src")), r);
    }

    #[test]
    fn a_single_package_is_its_own_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        write(
            r,
            "Cargo.toml",
            "[package]\nname = \"softmax\"\n[dev-dependencies]\ncontract-macros = { path = \"x\" }\n",
        );
        std::fs::create_dir_all(r.join("src/deep")).unwrap();
        assert_eq!(root_above(&r.join("src/deep")), r);
        let p = packages(r).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].name.as_str(), p[0].path.as_str(), p[0].uses_macros),
            ("softmax", ".", true)
        );
    }

    #[test]
    fn a_broken_manifest_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "Cargo.toml", "[package\n");
        let e = packages(d.path()).unwrap_err().to_string();
        assert!(e.contains("Cargo.toml"), "{e}");
    }
}
