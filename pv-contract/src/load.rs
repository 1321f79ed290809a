//! Reading contract files: bytes -> UTF-8 text -> YAML node tree -> [`Contract`].

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::de::from_node;
use crate::diag::Diagnostic;
use crate::model::{AcceptanceCriterion, Contract, Falsifier, Stage};
use crate::rules::codes;
use crate::source::{SourceFile, Span};
use crate::yaml::{self, Node, Value, YamlErrorKind};

/// A contract together with its source text and node tree (for positions).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The typed contract.
    pub contract: Contract,
    /// The file it came from.
    pub source: Arc<SourceFile>,
    /// The YAML node tree, for mapping a field path to a span.
    pub tree: Node,
}

/// Why loading failed.
#[derive(Debug)]
pub enum LoadError {
    /// A path could not be read (directory listing or file).
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The directory holds no `*.yaml` / `*.yml` file.
    NoContracts {
        /// The directory.
        dir: PathBuf,
    },
    /// Files were read but at least one is not a well-formed contract.
    Invalid(Vec<Diagnostic>),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            LoadError::NoContracts { dir } => {
                write!(f, "no contract files (*.yaml) in {}", dir.display())
            }
            LoadError::Invalid(diags) => {
                let errors: Vec<&Diagnostic> = diags.iter().filter(|d| d.is_error()).collect();
                write!(f, "{} invalid contract file(s):", errors.len())?;
                for d in errors.iter().take(10) {
                    write!(f, "\n  {d}")?;
                }
                if errors.len() > 10 {
                    write!(f, "\n  ... and {} more", errors.len() - 10)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads a file as UTF-8 text, refusing files over [`yaml::MAX_FILE_BYTES`] before reading them.
pub fn read_source(path: &Path) -> Result<Arc<SourceFile>, Diagnostic> {
    let io_err = |e: std::io::Error| {
        Diagnostic::file_error(
            codes::IO,
            Some(path.to_path_buf()),
            format!("cannot read {}: {e}", path.display()),
        )
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if meta.len() > yaml::MAX_FILE_BYTES as u64 {
        return Err(Diagnostic::file_error(
            codes::LIMIT,
            Some(path.to_path_buf()),
            format!(
                "{} is {} bytes; contracts larger than {} bytes are refused",
                path.display(),
                meta.len(),
                yaml::MAX_FILE_BYTES
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(io_err)?;
    source_from_bytes(path.to_path_buf(), bytes)
}

/// Wraps bytes (from a file or `git show`) as a source, checking that they are UTF-8.
pub fn source_from_bytes(path: PathBuf, bytes: Vec<u8>) -> Result<Arc<SourceFile>, Diagnostic> {
    match String::from_utf8(bytes) {
        Ok(mut text) => {
            // A byte-order mark is allowed at the start of a YAML stream; editors do not count
            // it as a column, and neither do we.
            if text.starts_with('\u{feff}') {
                text.drain(..'\u{feff}'.len_utf8());
            }
            Ok(Arc::new(SourceFile::new(path, text)))
        }
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let bad = bytes.get(valid).copied().unwrap_or(0);
            // Show the text with the invalid bytes replaced, so the snippet can point at the
            // spot; offsets before the first invalid byte are unchanged by the replacement.
            let lossy = Arc::new(SourceFile::new(
                path,
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
            let span = lossy.span_at_byte(valid, valid + 1);
            Err(Diagnostic::error(
                codes::YAML,
                &lossy,
                span,
                format!("the file is not UTF-8 text (invalid byte 0x{bad:02x} at offset {valid})"),
                "not UTF-8",
            )
            .with_help("contracts are UTF-8 YAML; re-save the file as UTF-8"))
        }
    }
}

/// Parses the YAML of `source` into a node tree. Every `status` key is removed from the tree and
/// reported as PV020 (status is derived from evidence, never written), so that the schema and
/// type checks that follow do not report it a second time as an unknown field.
pub fn parse_tree(source: &Arc<SourceFile>) -> Result<(Node, Vec<Diagnostic>), Diagnostic> {
    let mut tree = yaml::parse(source).map_err(|mut e| {
        if e.kind == YamlErrorKind::Syntax && e.message.contains("tab") {
            // The scanner reports where the token began; point at the tab itself.
            if let Some(i) = source.text[e.span.start..].find('\t') {
                let at = e.span.start + i;
                e.span = source.span_at_byte(at, at + 1);
            }
        }
        let code = match e.kind {
            YamlErrorKind::Limit => codes::LIMIT,
            YamlErrorKind::DuplicateKey => codes::DUPLICATE_KEY,
            YamlErrorKind::Empty => codes::EMPTY,
            _ => codes::YAML,
        };
        let label = match e.kind {
            YamlErrorKind::DuplicateKey => "defined again here",
            YamlErrorKind::Syntax => "here",
            _ => "",
        };
        let mut d = Diagnostic::error(code, source, e.span, e.message.clone(), label);
        if let Some((span, msg)) = e.related {
            d = d.with_label(source, span, msg);
        }
        match e.kind {
            YamlErrorKind::Syntax if e.message.contains("tab") => {
                d.with_help("YAML indentation uses spaces only; replace the tab with spaces")
            }
            YamlErrorKind::DuplicateKey => d.with_help("remove one of the two entries"),
            _ => d,
        }
    })?;
    if !matches!(tree.value, Value::Map(_)) {
        return Err(Diagnostic::error(
            codes::SCHEMA,
            source,
            tree.span,
            format!(
                "a contract is a mapping at the top level, found {}",
                tree.value.kind()
            ),
            "expected `contract: ...`, `version: ...`, ...",
        ));
    }
    let mut status = Vec::new();
    strip_status(&mut tree, &mut status);
    let diags = status
        .into_iter()
        .map(|span| {
            Diagnostic::error(
                codes::STATUS,
                source,
                span,
                "`status` is derived from evidence, never written",
                "remove this key",
            )
            .with_help(
                "a stage's status comes from its falsifiers' test outcomes (see docs/status.md); \
                 run `pv status` to see it",
            )
        })
        .collect();
    Ok((tree, diags))
}

fn strip_status(node: &mut Node, found: &mut Vec<Span>) {
    // Iterative: the tree depth is bounded by the parser, but keep stack use flat anyway.
    let mut todo = vec![node];
    while let Some(n) = todo.pop() {
        match &mut n.value {
            Value::Map(entries) => {
                entries.retain(|(k, _)| {
                    if k.text == "status" {
                        found.push(k.span);
                        false
                    } else {
                        true
                    }
                });
                todo.extend(entries.iter_mut().map(|(_, v)| v));
            }
            Value::Seq(items) => todo.extend(items.iter_mut()),
            _ => {}
        }
    }
    found.sort();
}

/// Deserializes a parsed tree into a [`Contract`]; the error points at the offending node.
pub fn deserialize(source: &Arc<SourceFile>, tree: &Node) -> Result<Contract, Diagnostic> {
    from_node::<Contract>(tree).map_err(|e| {
        let span = e.span.unwrap_or(tree.span);
        let help = if e.message.starts_with("unknown field") {
            Some("the contract format is closed; see docs/contract-format.md for the fields")
        } else if e.message.starts_with("invalid type") && e.message.contains("expected a string") {
            Some("quote the value to make it a string")
        } else {
            None
        };
        let d = Diagnostic::error(
            codes::SCHEMA,
            source,
            span,
            format!("does not match the contract format: {}", e.message),
            "",
        );
        match help {
            Some(h) => d.with_help(h),
            None => d,
        }
    })
}

/// Parses one source completely. All diagnostics found are returned (PV020 and a parse or type
/// error can come together); the contract is `Some` when the text could be deserialized.
pub fn parse_source(source: &Arc<SourceFile>) -> (Option<Loaded>, Vec<Diagnostic>) {
    let (tree, mut diags) = match parse_tree(source) {
        Ok(t) => t,
        Err(d) => return (None, vec![d]),
    };
    match deserialize(source, &tree) {
        Ok(contract) => (
            Some(Loaded {
                contract,
                source: Arc::clone(source),
                tree,
            }),
            diags,
        ),
        Err(d) => {
            diags.push(d);
            (None, diags)
        }
    }
}

/// Parses contract text; `path` is only a label for messages.
pub fn load_str(path: impl Into<PathBuf>, text: &str) -> Result<Loaded, LoadError> {
    let source = Arc::new(SourceFile::new(path, text.to_string()));
    match parse_source(&source) {
        (Some(loaded), diags) if !diags.iter().any(Diagnostic::is_error) => Ok(loaded),
        (_, diags) => Err(LoadError::Invalid(diags)),
    }
}

/// Loads one contract file (YAML and format checks only, no cross-contract rules).
pub fn load_file(path: impl AsRef<Path>) -> Result<Loaded, LoadError> {
    let path = path.as_ref();
    let source = read_source(path).map_err(|d| LoadError::Invalid(vec![d]))?;
    match parse_source(&source) {
        (Some(loaded), diags) if !diags.iter().any(Diagnostic::is_error) => Ok(loaded),
        (_, diags) => Err(LoadError::Invalid(diags)),
    }
}

/// The contract files of a directory: `*.yaml` and `*.yml`, not recursive, sorted by name.
pub fn contract_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let rd = std::fs::read_dir(dir).map_err(|e| LoadError::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut files = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| LoadError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let p = entry.path();
        let is_yaml = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        if is_yaml && !p.is_dir() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads every contract file of `dir` (see [`contract_files`]). Fails if the directory has no
/// contract or any file is not a well-formed contract. Cross-contract rules (unique ids,
/// references, cycles, ...) are not checked here: run [`crate::rules::check`] for those.
pub fn load_dir(dir: impl AsRef<Path>) -> Result<ContractSet, LoadError> {
    let dir = dir.as_ref();
    let files = contract_files(dir)?;
    if files.is_empty() {
        return Err(LoadError::NoContracts {
            dir: dir.to_path_buf(),
        });
    }
    let mut loaded = Vec::new();
    let mut diags = Vec::new();
    for f in &files {
        match read_source(f) {
            Ok(src) => {
                let (l, d) = parse_source(&src);
                loaded.extend(l);
                diags.extend(d);
            }
            Err(d) => diags.push(d),
        }
    }
    if diags.iter().any(Diagnostic::is_error) {
        return Err(LoadError::Invalid(diags));
    }
    Ok(ContractSet::new(loaded))
}

/// All loaded contracts with id lookups. On duplicate ids the first (by file order) wins in
/// lookups; duplicates are reported by [`crate::rules::check`] (PV012).
#[derive(Debug, Clone, Default)]
pub struct ContractSet {
    entries: Vec<Loaded>,
    contracts: HashMap<String, usize>,
    falsifiers: HashMap<String, (usize, usize)>,
    stages: HashMap<String, (usize, usize)>,
    criteria: HashMap<String, (usize, usize)>,
}

impl ContractSet {
    /// Indexes `entries` (kept in the given order).
    pub fn new(entries: Vec<Loaded>) -> ContractSet {
        let mut set = ContractSet {
            entries,
            ..ContractSet::default()
        };
        for (ci, e) in set.entries.iter().enumerate() {
            let c = &e.contract;
            set.contracts.entry(c.contract.clone()).or_insert(ci);
            for (i, f) in c.falsifiers.iter().enumerate() {
                set.falsifiers.entry(f.id.clone()).or_insert((ci, i));
            }
            for (i, s) in c.stages.iter().enumerate() {
                set.stages.entry(s.id.clone()).or_insert((ci, i));
            }
            for (i, a) in c.acceptance_criteria.iter().enumerate() {
                set.criteria.entry(a.id.clone()).or_insert((ci, i));
            }
        }
        set
    }

    /// Number of contracts.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no contract.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Contracts with their sources, in load order.
    pub fn entries(&self) -> &[Loaded] {
        &self.entries
    }

    /// Contracts in load order.
    pub fn contracts(&self) -> impl Iterator<Item = &Contract> {
        self.entries.iter().map(|e| &e.contract)
    }

    /// The contract with this id.
    pub fn contract(&self, id: &str) -> Option<&Contract> {
        self.entry(id).map(|e| &e.contract)
    }

    /// The contract with this id, with its source and tree.
    pub fn entry(&self, id: &str) -> Option<&Loaded> {
        self.contracts.get(id).map(|&i| &self.entries[i])
    }

    /// The falsifier with this id and the contract defining it.
    pub fn falsifier(&self, id: &str) -> Option<(&Contract, &Falsifier)> {
        self.falsifiers.get(id).map(|&(c, i)| {
            let c = &self.entries[c].contract;
            (c, &c.falsifiers[i])
        })
    }

    /// The stage with this id and the contract defining it.
    pub fn stage(&self, id: &str) -> Option<(&Contract, &Stage)> {
        self.stages.get(id).map(|&(c, i)| {
            let c = &self.entries[c].contract;
            (c, &c.stages[i])
        })
    }

    /// The acceptance criterion with this id and the contract defining it.
    pub fn criterion(&self, id: &str) -> Option<(&Contract, &AcceptanceCriterion)> {
        self.criteria.get(id).map(|&(c, i)| {
            let c = &self.entries[c].contract;
            (c, &c.acceptance_criteria[i])
        })
    }

    /// Every falsifier (retired ones included) with its contract.
    pub fn falsifiers(&self) -> impl Iterator<Item = (&Contract, &Falsifier)> {
        self.contracts()
            .flat_map(|c| c.falsifiers.iter().map(move |f| (c, f)))
    }

    /// Every stage with its contract.
    pub fn stages(&self) -> impl Iterator<Item = (&Contract, &Stage)> {
        self.contracts()
            .flat_map(|c| c.stages.iter().map(move |s| (c, s)))
    }

    /// The equation with this id and the contract defining it (linear scan: contracts hold a
    /// handful of equations).
    pub fn equation(&self, id: &str) -> Option<(&Contract, &crate::model::Equation)> {
        self.contracts()
            .find_map(|c| c.equation(id).map(|e| (c, e)))
    }

    /// Every equation with its contract.
    pub fn equations(&self) -> impl Iterator<Item = (&Contract, &crate::model::Equation)> {
        self.contracts()
            .flat_map(|c| c.equations.iter().map(move |e| (c, e)))
    }

    /// Every proof obligation with its contract.
    pub fn obligations(&self) -> impl Iterator<Item = (&Contract, &crate::model::ProofObligation)> {
        self.contracts()
            .flat_map(|c| c.proof_obligations.iter().map(move |o| (c, o)))
    }

    /// Every acceptance criterion with its contract.
    pub fn criteria(&self) -> impl Iterator<Item = (&Contract, &AcceptanceCriterion)> {
        self.contracts()
            .flat_map(|c| c.acceptance_criteria.iter().map(move |a| (c, a)))
    }
}
