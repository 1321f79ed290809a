//! Unclaimed code: the project's source files compiled into the binaries `pv.toml` names as the
//! product (`[product] binaries`) that no contract's scope covers, so that a claim about one
//! module cannot pass for another. Part of `pv audit`.
//!
//! The files come from cargo's dep-info file `<target>/<profile>/<binary>.d` (written by every
//! `cargo build`; the newer of `release` and `debug`), whose first rule lists every source file
//! rustc read for the binary, dependencies included. Files outside the project root (the
//! registry, the toolchain) and under the target folder are not the project's. A file is
//! claimed when the scope of some live falsifier (`Project::scope_for`) matches it; files
//! listed under `[product.unclaimed]` carry the project's reason instead.

use std::path::{Path, PathBuf};

use pv_contract::ContractSet;
use pv_project::{Project, Scope};
use serde::Serialize;

/// The report for one binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BinaryReport {
    /// Binary name.
    pub binary: String,
    /// The dep-info file read, if one was found.
    pub dep_info: Option<String>,
    /// Project files compiled in.
    pub files: usize,
    /// Files no scope covers and no reason excuses.
    pub unclaimed: Vec<String>,
    /// Files no scope covers, with the project's reason.
    pub excused: Vec<(String, String)>,
}

/// Parses the first rule of a dep-info file: the prerequisites of its first target, with
/// `\ ` unescaped.
pub fn parse_dep_info(text: &str) -> Vec<String> {
    let Some(line) = text.lines().find(|l| !l.trim().is_empty()) else {
        return Vec::new();
    };
    // `target: a b c`; a colon inside a Windows drive letter never occurs on the targets pv
    // supports, and an escaped space is `\ `.
    let Some((_, deps)) = split_rule(line) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = deps.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                cur.push(' ');
                chars.next();
            }
            ' ' | '\t' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn split_rule(line: &str) -> Option<(&str, &str)> {
    // The first `: ` not preceded by a backslash.
    let bytes = line.as_bytes();
    (0..bytes.len().saturating_sub(1))
        .find(|&i| bytes[i] == b':' && bytes[i + 1] == b' ' && (i == 0 || bytes[i - 1] != b'\\'))
        .map(|i| (&line[..i], &line[i + 2..]))
}

/// The target folder cargo uses for the project: `$CARGO_TARGET_DIR`, else `<root>/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                root.join(d)
            }
        }
        _ => root.join("target"),
    }
}

/// The newer of `<target>/release/<bin>.d` and `<target>/debug/<bin>.d`.
pub fn find_dep_info(target: &Path, binary: &str) -> Option<PathBuf> {
    ["release", "debug"]
        .iter()
        .map(|p| target.join(p).join(format!("{binary}.d")))
        .filter(|f| f.is_file())
        .max_by_key(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
}

/// Every binary's report, reading dep-info files under `target` ([`target_dir`]).
pub fn report(project: &Project, set: &ContractSet, target: &Path) -> Vec<BinaryReport> {
    let product = &project.config.product;
    if product.binaries.is_empty() {
        return Vec::new();
    }
    let mut scopes: Vec<Vec<String>> = Vec::new();
    for c in set.contracts() {
        for f in c.falsifiers.iter().filter(|f| f.is_live()) {
            let s = project.scope_for(&c.contract, &f.id).to_vec();
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
    }
    let scopes: Vec<Scope> = scopes.iter().filter_map(|p| Scope::new(p).ok()).collect();
    let root = project
        .root
        .canonicalize()
        .unwrap_or_else(|_| project.root.clone());
    let target = target
        .canonicalize()
        .unwrap_or_else(|_| target.to_path_buf());
    product
        .binaries
        .iter()
        .map(|bin| {
            let mut r = BinaryReport {
                binary: bin.clone(),
                dep_info: None,
                files: 0,
                unclaimed: Vec::new(),
                excused: Vec::new(),
            };
            let Some(d) = find_dep_info(&target, bin) else {
                return r;
            };
            r.dep_info = Some(d.display().to_string());
            let text = std::fs::read_to_string(&d).unwrap_or_default();
            let mut files: Vec<String> = parse_dep_info(&text)
                .into_iter()
                .map(PathBuf::from)
                .filter(|p| !p.starts_with(&target))
                .filter_map(|p| {
                    p.strip_prefix(&root).ok().map(|rel| {
                        rel.components()
                            .map(|c| c.as_os_str().to_string_lossy())
                            .collect::<Vec<_>>()
                            .join("/")
                    })
                })
                .collect();
            files.sort();
            files.dedup();
            r.files = files.len();
            for f in files {
                if scopes.iter().any(|s| s.matches(&f)) {
                    continue;
                }
                match product.unclaimed.get(&f) {
                    Some(why) => r.excused.push((f, why.clone())),
                    None => r.unclaimed.push(f),
                }
            }
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_first_rule_with_escaped_spaces() {
        let text = "/t/debug/infer: /p/infer/src/main.rs /p/my\\ dir/a.rs /p/engine/src/lib.rs\n\n/p/infer/src/main.rs:\n";
        assert_eq!(
            parse_dep_info(text),
            [
                "/p/infer/src/main.rs",
                "/p/my dir/a.rs",
                "/p/engine/src/lib.rs"
            ]
        );
        assert!(parse_dep_info("").is_empty());
        assert!(parse_dep_info("no rule here").is_empty());
    }

    #[test]
    fn files_outside_every_scope_are_unclaimed_unless_excused() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let write = |rel: &str, text: &str| {
            let p = r.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write(
            "pv.toml",
            "[scope]\ndefault = [\"engine/src/**\"]\n[product]\nbinaries = [\"app\"]\n[product.unclaimed]\n\"app/src/cli.rs\" = \"argument parsing only\"\n",
        );
        write(
            "contracts/demo-v1.yaml",
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/rules/valid/demo-v1.yaml"),
            )
            .unwrap(),
        );
        let root = r.canonicalize().unwrap();
        let dep = format!(
            "{t}/debug/app: {p}/app/src/main.rs {p}/app/src/cli.rs {p}/engine/src/lib.rs /registry/serde/src/lib.rs {t}/debug/build/out.rs\n",
            p = root.display(),
            t = root.join("target").display()
        );
        write("target/debug/app.d", &dep);
        let project = Project::load(&r.join("pv.toml")).unwrap();
        let set = pv_contract::load_dir(r.join("contracts")).unwrap();
        let rep = report(&project, &set, &r.join("target"));
        assert_eq!(rep.len(), 1);
        assert_eq!(rep[0].files, 3);
        assert_eq!(rep[0].unclaimed, ["app/src/main.rs"]);
        assert_eq!(
            rep[0].excused,
            [(
                "app/src/cli.rs".to_string(),
                "argument parsing only".to_string()
            )]
        );
    }
}
