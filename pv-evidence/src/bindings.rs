//! Which falsifiers have a bound test: a textual scan of the test packages' `tests/*.rs` and
//! `src/**/*.rs` for `#[falsifier("ID")]` attributes.
//!
//! The proc-macro sees one test at a time, so it cannot know which falsifiers have no test. A
//! textual scan is simple and robust enough for that question: the attribute is always written
//! literally (`#[falsifier("...")]` or `#[contract_macros::falsifier("...")]`), and a line whose
//! first non-blank characters are `//` is ignored. Both `pv-build` (the registry and the
//! one-test-per-falsifier check) and `pv status` (UNIMPLEMENTED) use this one function, so they
//! cannot disagree.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One `#[falsifier("ID")]` attribute found in a test file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The falsifier id in the attribute.
    pub id: String,
    /// The file, as found.
    pub file: PathBuf,
    /// 1-based line of the attribute.
    pub line: usize,
    /// The name of the function that follows, if found.
    pub function: Option<String>,
}

/// Scans one file's text.
pub fn scan_text(file: &Path, text: &str) -> Vec<Binding> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if t.starts_with("//") || !t.starts_with("#[") {
            continue;
        }
        let inner = t[2..].trim_start();
        let inner = inner
            .strip_prefix("contract_macros::")
            .or_else(|| inner.strip_prefix("::contract_macros::"))
            .unwrap_or(inner);
        let Some(rest) = inner.strip_prefix("falsifier") else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(rest) = rest.strip_prefix('(') else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(rest) = rest.strip_prefix('"') else {
            continue;
        };
        let Some(end) = rest.find('"') else {
            continue;
        };
        let id = rest[..end].to_string();
        let function = lines[i..].iter().find_map(|l| fn_name(l));
        out.push(Binding {
            id,
            file: file.to_path_buf(),
            line: i + 1,
            function,
        });
    }
    out
}

fn fn_name(line: &str) -> Option<String> {
    let t = line.trim_start();
    if t.starts_with("//") {
        return None;
    }
    let pos = t.find("fn ")?;
    // `fn` must start a word: start of line or after a space (`pub fn`, `async fn`).
    if pos > 0 && !t[..pos].ends_with(' ') {
        return None;
    }
    let name: String = t[pos + 3..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Scans every `*.rs` file directly in `tests_dir` (not subdirectories: `tests/ui/` holds
/// compile-fail cases that are not bound tests), in file-name order.
pub fn scan_tests_dir(tests_dir: &Path) -> io::Result<Vec<Binding>> {
    let mut files: Vec<PathBuf> = fs::read_dir(tests_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = fs::read_to_string(&f)?;
        out.extend(scan_text(&f, &text));
    }
    Ok(out)
}

/// Scans one package folder: every `*.rs` directly in `tests/` (cargo's integration tests; not
/// subfolders, where `tests/ui/` holds compile-fail cases that are not bound tests) and every
/// `*.rs` under `src/` (unit tests), in path order. Missing folders contribute nothing.
pub fn scan_package(package_dir: &Path) -> io::Result<Vec<Binding>> {
    let mut out = Vec::new();
    let tests = package_dir.join("tests");
    if tests.is_dir() {
        out.extend(scan_tests_dir(&tests)?);
    }
    let src = package_dir.join("src");
    if src.is_dir() {
        let mut files = Vec::new();
        rs_files(&src, &mut files)?;
        files.sort();
        for f in files {
            let text = fs::read_to_string(&f)?;
            out.extend(scan_text(&f, &text));
        }
    }
    Ok(out)
}

/// A folder named as holding bound tests (`pv status --tests DIR`, a test package): scanned as
/// a package ([`scan_package`]) and for `*.rs` directly in it ([`scan_tests_dir`]).
pub fn scan_folder(dir: &Path) -> io::Result<Vec<Binding>> {
    let mut b = scan_package(dir)?;
    b.extend(scan_tests_dir(dir)?);
    Ok(b)
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let ft = e.file_type()?;
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if ft.is_dir() {
            rs_files(&p, out)?;
        } else if ft.is_file() && p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_attributes_and_functions() {
        let src = r#"
use contract_macros::falsifier;

/// Doc.
#[falsifier("FALSIFY-A-001")]
fn first(ctx: &mut Ctx) -> FalsifierResult { Ok(()) }

// #[falsifier("FALSIFY-COMMENTED-001")]
#[contract_macros::falsifier( "FALSIFY-B-002" )]
#[allow(clippy::float_cmp)]
pub fn second(ctx: &mut Ctx) -> FalsifierResult { Ok(()) }

#[test]
fn not_bound() {}
"#;
        let b = scan_text(Path::new("t.rs"), src);
        assert_eq!(b.len(), 2, "{b:?}");
        assert_eq!(b[0].id, "FALSIFY-A-001");
        assert_eq!(b[0].line, 5);
        assert_eq!(b[0].function.as_deref(), Some("first"));
        assert_eq!(b[1].id, "FALSIFY-B-002");
        assert_eq!(b[1].function.as_deref(), Some("second"));
    }
}
