//! Source files and byte spans with 1-based line/column positions.

use std::path::{Path, PathBuf};

/// A region of a source file: byte range plus the 1-based line and column of its start.
///
/// Columns count Unicode scalar values (characters), which is what editors and rustc show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte (`start == end` for a point).
    pub end: usize,
    /// 1-based line of `start`.
    pub line: u32,
    /// 1-based column (in characters) of `start`.
    pub col: u32,
}

impl Span {
    /// The smallest span covering both `self` and `other` (line/col from the earlier one).
    pub fn join(self, other: Span) -> Span {
        let (first, _) = if self.start <= other.start {
            (self, other)
        } else {
            (other, self)
        };
        Span {
            start: first.start,
            end: self.end.max(other.end),
            line: first.line,
            col: first.col,
        }
    }
}

/// One file's text, kept so that diagnostics can show snippets.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as given (or a label such as `HEAD:contracts/x.yaml` for git blobs).
    pub path: PathBuf,
    /// The full text.
    pub text: String,
    line_starts: Vec<usize>,
    // For ASCII text a character column is a byte offset, which spares a scan per position.
    ascii: bool,
}

impl SourceFile {
    /// Wraps `text` read from `path`.
    pub fn new(path: impl Into<PathBuf>, text: String) -> SourceFile {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let ascii = text.is_ascii();
        SourceFile {
            path: path.into(),
            text,
            line_starts,
            ascii,
        }
    }

    /// The path (or label) of this source.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Span of a point given a 1-based line and a 0-based character column
    /// (the convention of the YAML parser's markers). Out-of-range inputs are clamped.
    pub fn point(&self, line: usize, col0: usize) -> Span {
        let li = line.saturating_sub(1).min(self.line_starts.len() - 1);
        let ls = self.line_starts[li];
        let line_end = self
            .line_starts
            .get(li + 1)
            .copied()
            .unwrap_or(self.text.len());
        let line_text = &self.text[ls..line_end];
        let off = if self.ascii {
            col0.min(line_text.len())
        } else {
            line_text
                .char_indices()
                .nth(col0)
                .map_or(line_text.len(), |(i, _)| i)
        };
        Span {
            start: ls + off,
            end: ls + off,
            line: (li + 1) as u32,
            col: (col0 + 1) as u32,
        }
    }

    /// Span from a byte offset (clamped to the text, moved back to a char boundary).
    pub fn span_at_byte(&self, mut start: usize, mut end: usize) -> Span {
        start = start.min(self.text.len());
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        end = end.clamp(start, self.text.len());
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let li = match self.line_starts.binary_search(&start) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let col = self.text[self.line_starts[li]..start].chars().count();
        Span {
            start,
            end,
            line: (li + 1) as u32,
            col: (col + 1) as u32,
        }
    }

    /// Text of 1-based line `line` without its newline.
    pub fn line_text(&self, line: u32) -> &str {
        let li = (line as usize).saturating_sub(1);
        let Some(&s) = self.line_starts.get(li) else {
            return "";
        };
        let e = self
            .line_starts
            .get(li + 1)
            .copied()
            .unwrap_or(self.text.len());
        self.text[s..e].trim_end_matches(['\n', '\r'])
    }
}
