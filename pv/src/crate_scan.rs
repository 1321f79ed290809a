//! Textual scans for `pv coverage --by crate`: the workspace's member crates, the public
//! functions their `src/` declares, and the words falsifier tests and claims use.
//!
//! Textual and approximate on purpose, like the `#[falsifier]` scan (`pv_evidence::bindings`):
//! no parsing of Rust, no macro expansion. A function made by a macro or re-exported from
//! another crate is not seen; a `pub fn` inside a string literal or a block comment is; so is
//! a `pub fn` of a private module (the scan cannot tell what is reachable from the crate root).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Why the project's packages could not be read at all.
pub type ScanError = pv_project::ProjectError;

/// A member crate to scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its `[package] name`, or its path when its manifest does not say.
    pub name: String,
    /// Its path relative to the project root (`.` for a single-package project).
    pub path: String,
}

/// The project's packages (a workspace's members in `members` order, or the single package),
/// without the test packages in `skip` (their functions are tests, not claims), and notes on
/// what was skipped.
pub fn workspace_members(
    root: &Path,
    skip: &[PathBuf],
) -> Result<(Vec<Member>, Vec<String>), ScanError> {
    let manifest = root.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(pv_project::ProjectError::Read {
            path: manifest,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no Cargo.toml, so there are no crates to list",
            ),
        });
    }
    let (packages, mut notes) = pv_project::cargo::scan(root)?;
    let mut members = Vec::new();
    for p in packages {
        if skip.contains(&p.dir) {
            continue;
        }
        if !p.dir.join("src").is_dir() {
            notes.push(format!("member `{}`: no src/, skipped", p.path));
            continue;
        }
        members.push(Member {
            name: p.name,
            path: p.path,
        });
    }
    Ok((members, notes))
}

/// A public function found in a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubFn {
    /// Its name.
    pub name: String,
    /// 1-based line.
    pub line: usize,
}

/// Words that may stand between `pub` and `fn`.
const QUALIFIERS: &[&str] = &["const", "async", "unsafe", "extern", "default"];

/// `pub fn NAME` (also `pub async fn`, `pub const fn`, `pub unsafe fn`, `pub extern "C" fn`)
/// in `text`. Restricted visibility (`pub(crate)`, `pub(super)`, `pub(in ..)`) is not public
/// and not counted; lines that start with `//` (comments, doc examples) are ignored.
pub fn pub_fns(text: &str) -> Vec<PubFn> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(pos) = find_word(rest, "pub") {
            let after = &rest[pos + 3..];
            rest = after;
            // `pub(crate)` and friends: `pub` directly followed by `(`.
            if !after.starts_with(char::is_whitespace) {
                continue;
            }
            let mut toks = Tokens(after);
            let mut tok = toks.next();
            // `extern "C"`: the ABI string is one more qualifier.
            while tok.is_some_and(|t| QUALIFIERS.contains(&t) || t.starts_with('"')) {
                tok = toks.next();
            }
            if tok != Some("fn") {
                continue;
            }
            if let Some(name) = toks.next().map(ident) {
                if !name.is_empty() {
                    out.push(PubFn {
                        name: name.to_string(),
                        line: i + 1,
                    });
                }
            }
        }
    }
    out
}

/// Whitespace-separated tokens, where an identifier ends at the first non-identifier
/// character (`fn name<T>(` yields `fn`, then `name<T>(` of which [`ident`] keeps `name`).
struct Tokens<'a>(&'a str);

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let s = self.0.trim_start();
        if s.is_empty() {
            return None;
        }
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        self.0 = &s[end..];
        Some(&s[..end])
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The identifier at the start of `s` (`r#` raw prefix dropped).
fn ident(s: &str) -> &str {
    let s = s.strip_prefix("r#").unwrap_or(s);
    let end = s.find(|c: char| !is_ident_char(c)).unwrap_or(s.len());
    &s[..end]
}

/// Byte offset of `word` in `s` where it is a whole word.
fn find_word(s: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = s[from..].find(word) {
        let at = from + p;
        let before = s[..at].chars().next_back();
        let after = s[at + word.len()..].chars().next();
        if !before.is_some_and(is_ident_char) && !after.is_some_and(is_ident_char) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// Every identifier-like word of `text` (`mycrate::quant::dequantize(x)` gives `mycrate`,
/// `quant`, `dequantize`, `x`).
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !is_ident_char(c))
        .filter(|w| !w.is_empty())
}

/// What a scan of one crate found.
#[derive(Debug, Default)]
pub struct CrateScan {
    /// `(file relative to the crate, function)`, files in path order.
    pub fns: Vec<(String, PubFn)>,
    /// Files or directories that could not be read (not UTF-8, permissions).
    pub notes: Vec<String>,
}

/// Every `pub fn` in `<crate_dir>/src/**/*.rs`.
pub fn scan_crate(crate_dir: &Path) -> CrateScan {
    let mut scan = CrateScan::default();
    let mut files = Vec::new();
    rs_files(&crate_dir.join("src"), &mut files, &mut scan.notes);
    files.sort();
    for f in files {
        let rel = f
            .strip_prefix(crate_dir)
            .unwrap_or(&f)
            .to_string_lossy()
            .replace('\\', "/");
        match std::fs::read(&f).map(String::from_utf8) {
            Ok(Ok(text)) => scan
                .fns
                .extend(pub_fns(&text).into_iter().map(|p| (rel.clone(), p))),
            Ok(Err(_)) => scan.notes.push(format!("{rel}: not UTF-8, not scanned")),
            Err(e) => scan.notes.push(format!("{rel}: cannot read ({e})")),
        }
    }
    scan
}

/// `*.rs` files under `dir`, recursively. Symbolic links are not followed (no cycles).
fn rs_files(dir: &Path, out: &mut Vec<PathBuf>, notes: &mut Vec<String>) {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            notes.push(format!("{}: cannot list ({e})", dir.display()));
            return;
        }
    };
    for e in rd.filter_map(|e| e.ok()) {
        let Ok(ft) = e.file_type() else { continue };
        let p = e.path();
        if ft.is_dir() {
            rs_files(&p, out, notes);
        } else if ft.is_file() && p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The falsifier test files whose words count as naming a function: every `*.rs` under
/// `tests_dir` (helper modules such as `gpu_support/` are compiled into the falsifier tests),
/// except `ui/`, which holds the macro's compile-fail cases, not falsifiers.
pub fn falsifier_test_words(tests_dir: &Path, notes: &mut Vec<String>) -> HashSet<String> {
    let mut files = Vec::new();
    if tests_dir.is_dir() {
        rs_files(tests_dir, &mut files, notes);
    } else {
        notes.push(format!(
            "{}: no such directory; only contract texts name functions",
            tests_dir.display()
        ));
    }
    // Compile-fail cases (trybuild's conventional folder) name nothing real.
    let ui = tests_dir.join("tests").join("ui");
    let mut set = HashSet::new();
    for f in files.iter().filter(|f| !f.starts_with(&ui)) {
        match std::fs::read(f) {
            // Lossy: a stray non-UTF-8 byte in a test should not hide the names around it.
            Ok(bytes) => set.extend(words(&String::from_utf8_lossy(&bytes)).map(str::to_string)),
            Err(e) => notes.push(format!("{}: cannot read ({e})", f.display())),
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(src: &str) -> Vec<String> {
        pub_fns(src).into_iter().map(|p| p.name).collect()
    }

    #[test]
    fn public_functions_are_found_and_restricted_ones_are_not() {
        let src = r#"
pub fn plain() {}
    pub async fn later() {}
pub const fn width() -> usize { 4 }
pub unsafe extern "C" fn ffi() {}
pub fn generic<T>(x: T) {}
pub(crate) fn internal() {}
pub(super) fn up() {}
pub(in crate::a) fn deep() {}
fn private() {}
// pub fn commented() {}
/// pub fn in_doc() {}
pub struct S; pub fn same_line() {}
pub fn r#type() {}
republic fn no() {}
"#;
        assert_eq!(
            names(src),
            [
                "plain",
                "later",
                "width",
                "ffi",
                "generic",
                "same_line",
                "type"
            ]
        );
        assert_eq!(pub_fns(src)[1].line, 3);
    }

    #[test]
    fn words_split_paths_and_calls() {
        let w: Vec<&str> = words("engine::quant::dequantize_q4k(&x); // 1e-6").collect();
        assert_eq!(w, ["engine", "quant", "dequantize_q4k", "x", "1e", "6"]);
    }
}
