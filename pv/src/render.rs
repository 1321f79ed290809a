//! Rendering diagnostics: rustc-style text (codespan-reporting, ASCII frame) and JSON.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::ops::Range;
use std::sync::Arc;

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label as CsLabel, LabelStyle};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::{self, termcolor, Chars, Config};
use pv_contract::{Diagnostic, Label, Severity, SourceFile};
use serde_json::json;

/// Output format of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// rustc-style text for people.
    #[default]
    Human,
    /// One JSON document on stdout, for tools.
    Json,
}

/// Whether to colour human output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ColorMode {
    /// Colour when stderr is a terminal and `NO_COLOR` is unset.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

fn config() -> Config {
    Config {
        chars: Chars::ascii(),
        ..Config::default()
    }
}

/// The byte range to underline: one line at most, so a label on a whole mapping underlines its
/// first line instead of drawing a frame around dozens of lines.
fn label_range(src: &SourceFile, span: pv_contract::Span) -> Range<usize> {
    let text = &src.text;
    let start = span.start.min(text.len());
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let end = span.end.clamp(start, line_end);
    // Trim trailing whitespace so carets stop at the text.
    let trimmed = text[start..end].trim_end();
    start..start + trimmed.len()
}

/// Renders diagnostics as text, without colour (used by tests and when not on a terminal).
pub fn to_string(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    let (files, converted) = convert(diags);
    for d in &converted {
        match term::emit_into_string(&config(), &files, d) {
            Ok(s) => out.push_str(&s),
            Err(e) => out.push_str(&format!("(cannot render diagnostic: {e})\n")),
        }
    }
    out
}

/// Writes diagnostics to stderr in the human format, coloured per `color`.
pub fn emit_stderr(diags: &[Diagnostic], color: ColorMode) {
    let choice = match color {
        ColorMode::Always => termcolor::ColorChoice::Always,
        ColorMode::Never => termcolor::ColorChoice::Never,
        ColorMode::Auto => {
            if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
                termcolor::ColorChoice::Auto
            } else {
                termcolor::ColorChoice::Never
            }
        }
    };
    let mut stream = termcolor::StandardStream::stderr(choice);
    let (files, converted) = convert(diags);
    for d in &converted {
        if let Err(e) = term::emit_to_write_style(&mut stream, &config(), &files, d) {
            let _ = writeln!(stream, "(cannot render diagnostic: {e})");
        }
    }
}

type Files = SimpleFiles<String, Arc<str>>;

fn convert(diags: &[Diagnostic]) -> (Files, Vec<CsDiagnostic<usize>>) {
    let mut files: Files = SimpleFiles::new();
    let mut ids: HashMap<*const SourceFile, usize> = HashMap::new();
    let mut file_id = |files: &mut Files, src: &Arc<SourceFile>| -> usize {
        *ids.entry(Arc::as_ptr(src)).or_insert_with(|| {
            files.add(src.path.display().to_string(), Arc::from(src.text.as_str()))
        })
    };
    let mut out = Vec::with_capacity(diags.len());
    for d in diags {
        let mut cs = match d.severity {
            Severity::Error => CsDiagnostic::error(),
            Severity::Warning => CsDiagnostic::warning(),
        }
        .with_code(d.code)
        .with_message(&d.message);
        let mut labels = Vec::new();
        let mut push = |files: &mut Files, l: &Label, style: LabelStyle| {
            let id = file_id(files, &l.source);
            labels.push(
                CsLabel::new(style, id, label_range(&l.source, l.span)).with_message(&l.message),
            );
        };
        if let Some(p) = &d.primary {
            push(&mut files, p, LabelStyle::Primary);
        }
        for s in &d.secondary {
            push(&mut files, s, LabelStyle::Secondary);
        }
        cs = cs.with_labels(labels);
        let mut notes = Vec::new();
        if d.primary.is_none() {
            if let Some(f) = &d.file {
                notes.push(format!("in {}", f.display()));
            }
        }
        if let Some(h) = &d.help {
            notes.push(format!("help: {h}"));
        }
        out.push(cs.with_notes(notes));
    }
    (files, out)
}

/// One diagnostic as JSON: the same content as the text form.
pub fn diagnostic_json(d: &Diagnostic) -> serde_json::Value {
    let label = |l: &Label| {
        json!({
            "file": l.source.path.display().to_string(),
            "line": l.span.line,
            "col": l.span.col,
            "start": l.span.start,
            "end": l.span.end,
            "message": l.message,
        })
    };
    json!({
        "code": d.code,
        "severity": d.severity,
        "message": d.message,
        "file": d.file.as_ref().map(|f| f.display().to_string()),
        "line": d.primary.as_ref().map(|l| l.span.line),
        "col": d.primary.as_ref().map(|l| l.span.col),
        "primary": d.primary.as_ref().map(label),
        "secondary": d.secondary.iter().map(label).collect::<Vec<_>>(),
        "help": d.help,
    })
}

/// Counts of errors and warnings.
pub fn counts(diags: &[Diagnostic]) -> (usize, usize) {
    let errors = diags.iter().filter(|d| d.is_error()).count();
    (errors, diags.len() - errors)
}
