//! Diagnostics as plain data. Rendering (rustc-style text, JSON) lives in the `pv` crate.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::source::{SourceFile, Span};

/// How bad a diagnostic is. Errors make `pv validate` fail; warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Advice; the contract set is still valid.
    Warning,
    /// The contract set is invalid.
    Error,
}

/// A place in a source file with a short message.
#[derive(Debug, Clone)]
pub struct Label {
    /// The file (kept whole so a renderer can show the snippet).
    pub source: Arc<SourceFile>,
    /// Where.
    pub span: Span,
    /// What is there ("defined again here").
    pub message: String,
}

/// One finding: a stable code, a message, where, and how to fix it.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// Stable rule code (`PV012`); see `docs/rules.md` and [`crate::rules::RULES`].
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// One sentence.
    pub message: String,
    /// The file concerned, when there is one (also for errors without a position).
    pub file: Option<PathBuf>,
    /// The main place; `None` for file-level errors such as an unreadable file.
    pub primary: Option<Label>,
    /// Other relevant places.
    pub secondary: Vec<Label>,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `span` in `source`.
    pub fn error(
        code: &'static str,
        source: &Arc<SourceFile>,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            file: Some(source.path.clone()),
            primary: Some(Label {
                source: Arc::clone(source),
                span,
                message: label.into(),
            }),
            secondary: Vec::new(),
            help: None,
        }
    }

    /// An error about a whole file (or no file), without a position.
    pub fn file_error(
        code: &'static str,
        file: Option<PathBuf>,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            file,
            primary: None,
            secondary: Vec::new(),
            help: None,
        }
    }

    /// Turns an error into a warning.
    pub fn warning(mut self) -> Diagnostic {
        self.severity = Severity::Warning;
        self
    }

    /// Adds a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Adds a secondary label.
    pub fn with_label(
        mut self,
        source: &Arc<SourceFile>,
        span: Span,
        message: impl Into<String>,
    ) -> Diagnostic {
        self.secondary.push(Label {
            source: Arc::clone(source),
            span,
            message: message.into(),
        });
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `path:line:col` of the primary label, or the file path alone.
    pub fn location(&self) -> String {
        match (&self.primary, &self.file) {
            (Some(l), _) => format!("{}:{}:{}", l.source.path.display(), l.span.line, l.span.col),
            (None, Some(f)) => f.display().to_string(),
            (None, None) => String::new(),
        }
    }
}

/// One line: `path:line:col: error[PV012]: message`.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let loc = self.location();
        if loc.is_empty() {
            write!(f, "{sev}[{}]: {}", self.code, self.message)
        } else {
            write!(f, "{loc}: {sev}[{}]: {}", self.code, self.message)
        }
    }
}
