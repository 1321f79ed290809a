//! The few git operations pv needs, through the `git` CLI (no libgit2: one less native
//! dependency, and the user's git configuration applies as usual).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The top-level directory of the repository containing `dir`, or `None` outside any repository
/// (or when git is not installed).
pub fn repo_root(dir: &Path) -> Option<PathBuf> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--show-toplevel"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    Some(PathBuf::from(s.trim_end_matches(['\n', '\r'])))
}

/// Whether `rev` names a commit in the repository at `root`.
pub fn rev_exists(root: &Path, rev: &str) -> bool {
    Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{rev}^{{commit}}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `path` relative to `root`, with '/' separators, as git names it.
pub fn relative(root: &Path, path: &Path) -> Option<String> {
    let abs = std::fs::canonicalize(path).ok()?;
    let root = std::fs::canonicalize(root).ok()?;
    let rel = abs.strip_prefix(&root).ok()?;
    Some(
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
    )
}

/// The content of `rev:path` for each path (relative to `root`), `None` where the blob does not
/// exist at `rev`. Uses one `git cat-file --batch` process for all paths.
pub fn show_many(root: &Path, rev: &str, paths: &[String]) -> Result<HashMap<String, Vec<u8>>> {
    let mut out = HashMap::new();
    if paths.is_empty() {
        return Ok(out);
    }
    let mut child = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run `git cat-file`")?;
    let mut stdin = child.stdin.take().context("git stdin")?;
    let input: String = paths.iter().map(|p| format!("{rev}:{p}\n")).collect();
    // Write from another thread: git answers while reading, and a full stdout pipe would
    // otherwise block both sides.
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        stdin.write_all(input.as_bytes())?;
        drop(stdin);
        Ok(())
    });
    let mut reader = BufReader::new(child.stdout.take().context("git stdout")?);
    for p in paths {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            bail!("`git cat-file` stopped early");
        }
        let fields: Vec<&str> = header.split_whitespace().collect();
        match fields.as_slice() {
            [_, "blob", size] => {
                let size: usize = size.parse().context("bad size from git cat-file")?;
                let mut buf = vec![0u8; size];
                reader.read_exact(&mut buf)?;
                let mut nl = [0u8; 1];
                reader.read_exact(&mut nl)?;
                out.insert(p.clone(), buf);
            }
            [_, "missing"] | [_, "ambiguous"] => {}
            [_, _kind, size] => {
                // A tree or other object at that path: skip its body.
                let size: usize = size.parse().context("bad size from git cat-file")?;
                let mut sink = vec![0u8; size + 1];
                reader.read_exact(&mut sink)?;
            }
            _ => bail!("unexpected answer from `git cat-file`: {header:?}"),
        }
    }
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("git writer thread panicked"))?
        .context("cannot write to `git cat-file`")?;
    let _ = child.wait();
    Ok(out)
}

/// Files directly under `dir` (relative to `root`) at `rev`.
pub fn ls_dir(root: &Path, rev: &str, dir: &str) -> Result<Vec<String>> {
    let spec = if dir.is_empty() {
        rev.to_string()
    } else {
        format!("{rev}:{dir}")
    };
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-tree", "--name-only", &spec])
        .stderr(Stdio::null())
        .output()
        .context("cannot run `git ls-tree`")?;
    if !out.status.success() {
        // The directory did not exist at that revision.
        return Ok(Vec::new());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|name| {
            if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            }
        })
        .collect())
}

/// The content of one `REV:path` spec (path relative to the repository of the current
/// directory), for `pv diff`.
pub fn show(spec: &str) -> Result<Vec<u8>> {
    let out = Command::new("git")
        .args(["show", spec])
        .output()
        .context("cannot run `git show`")?;
    if !out.status.success() {
        bail!(
            "git show {spec} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}
