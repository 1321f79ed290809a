//! A YAML node tree with source spans, built from `saphyr-parser` events.
//!
//! We keep our own tree (rather than deserializing straight from the event stream) because every
//! diagnostic — schema errors and semantic rules alike — must point at the exact node it is about,
//! and the contract types themselves should stay plain Rust values. The tree is also where the
//! hostile-input limits live: size, depth, node count after alias expansion, duplicate keys.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::source::{SourceFile, Span};

/// Largest file we parse. Real contracts are tens of kilobytes.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;
/// Deepest nesting of sequences and mappings. Contracts need about 6.
pub const MAX_DEPTH: usize = 64;
/// Most nodes in one document, counting every node an alias expands to (alias-bomb guard).
pub const MAX_NODES: usize = 2_000_000;

/// One YAML node and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node is in its file.
    pub span: Span,
    /// What it holds.
    pub value: Value,
}

/// A mapping key: always a scalar, kept as its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// The key text.
    pub text: String,
    /// Where the key is.
    pub span: Span,
}

/// The typed content of a node, resolved with the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or an empty value.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits in i64.
    Int(i64),
    /// A float, including `.inf` and `.nan`.
    Float(f64),
    /// Any quoted or block scalar, or a plain scalar that is not one of the above.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order (keys are unique: duplicates are a parse error).
    Map(Vec<(Key, Node)>),
}

impl Value {
    /// Short name of the kind, for messages ("a string", "a mapping", ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a sequence",
            Value::Map(_) => "a mapping",
        }
    }
}

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

impl From<&str> for Seg {
    fn from(s: &str) -> Seg {
        Seg::Key(s.to_string())
    }
}
impl From<usize> for Seg {
    fn from(i: usize) -> Seg {
        Seg::Index(i)
    }
}

/// Builds a path (an array of [`Seg`]) from keys and indices: `path!["stages", 3, "falsifiers", 0]`.
#[macro_export]
macro_rules! path {
    ($($seg:expr),* $(,)?) => { [$($crate::yaml::Seg::from($seg)),*] };
}

impl Node {
    /// The value under `key` if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.text == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The key node (not the value) for `key` in this mapping.
    pub fn key(&self, key: &str) -> Option<&Key> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.text == key).map(|(k, _)| k),
            _ => None,
        }
    }

    /// Follows `path`; `None` when a step does not exist.
    pub fn at(&self, path: &[Seg]) -> Option<&Node> {
        let mut node = self;
        for seg in path {
            node = match (seg, &node.value) {
                (Seg::Key(k), Value::Map(_)) => node.get(k)?,
                (Seg::Index(i), Value::Seq(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// Span of the deepest existing node along `path` (so a diagnostic always has a place).
    pub fn span_of(&self, path: &[Seg]) -> Span {
        let mut node = self;
        for seg in path {
            let next = match (seg, &node.value) {
                (Seg::Key(k), Value::Map(_)) => node.get(k),
                (Seg::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.span
    }

    /// Span of the key of the last step of `path` when it is a key, else of the node.
    pub fn key_span_of(&self, path: &[Seg]) -> Span {
        if let Some((Seg::Key(k), parent)) = path.split_last() {
            if let Some(key) = self.at(parent).and_then(|p| p.key(k)) {
                return key.span;
            }
        }
        self.span_of(path)
    }

    /// Converts to JSON (for JSON-Schema checks). Non-finite floats become their YAML text
    /// (`.inf`, `.nan`) so that a schema that wants a number rejects them at the right place.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or_else(|| J::String(format_nonfinite(*f))),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.text.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

fn format_nonfinite(f: f64) -> String {
    if f.is_nan() {
        ".nan".into()
    } else if f > 0.0 {
        ".inf".into()
    } else {
        "-.inf".into()
    }
}

/// Why a file could not be turned into a node tree.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    /// What kind of problem (decides the diagnostic code).
    pub kind: YamlErrorKind,
    /// Human message.
    pub message: String,
    /// Where.
    pub span: Span,
    /// A second place worth showing (the first occurrence of a duplicate key).
    pub related: Option<(Span, String)>,
}

/// Classes of YAML-level failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YamlErrorKind {
    /// Syntax error from the parser (includes tabs in indentation, bad flow syntax).
    Syntax,
    /// No document, or only comments.
    Empty,
    /// More than one document in the file.
    MultipleDocuments,
    /// A mapping key that is not a scalar.
    ComplexKey,
    /// The same key twice in one mapping.
    DuplicateKey,
    /// Size, depth or node-count limit exceeded.
    Limit,
    /// An alias to an unknown or enclosing anchor.
    BadAlias,
}

enum Frame {
    Seq {
        start: Span,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: Span,
        anchor: usize,
        entries: Vec<(Key, Node)>,
        pending: Option<Key>,
        // Key index for duplicate detection, built only for large mappings: contract mappings
        // have a dozen keys, where a linear scan beats hashing, but a hostile file may have
        // a hundred thousand.
        seen: Option<HashMap<String, Span>>,
    },
}

/// Parses one YAML document into a node tree, enforcing the limits above.
pub fn parse(src: &SourceFile) -> Result<Node, YamlError> {
    let text = &src.text;
    if text.len() > MAX_FILE_BYTES {
        return Err(YamlError {
            kind: YamlErrorKind::Limit,
            message: format!(
                "file is {} bytes; contracts larger than {} bytes are refused",
                text.len(),
                MAX_FILE_BYTES
            ),
            span: src.point(1, 0),
            related: None,
        });
    }
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut nodes: usize = 0;
    let mut root: Option<Node> = None;
    let mut documents = 0usize;

    while let Some(ev) = parser.next_event() {
        let (event, espan) = ev.map_err(|e| YamlError {
            kind: YamlErrorKind::Syntax,
            message: e.info().to_string(),
            span: src.point(e.marker().line(), e.marker().col()),
            related: None,
        })?;
        let start = src.point(espan.start.line(), espan.start.col());
        let end = src.point(espan.end.line(), espan.end.col());
        let span = Span {
            end: end.start.max(start.start),
            ..start
        };
        let completed: Option<(Node, usize, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError {
                        kind: YamlErrorKind::MultipleDocuments,
                        message: "a contract file holds exactly one YAML document".into(),
                        span,
                        related: None,
                    });
                }
                None
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let value = resolve_scalar(text, style);
                Some((Node { span, value }, anchor, 1))
            }
            Event::Alias(id) => {
                let Some((node, count)) = anchors.get(&id) else {
                    return Err(YamlError {
                        kind: YamlErrorKind::BadAlias,
                        message: "alias to an anchor that is not defined (or that encloses it)"
                            .into(),
                        span,
                        related: None,
                    });
                };
                // Aliases are expanded by copy; the copy counts against the node budget, which
                // is what bounds a "billion laughs" document.
                if nodes.saturating_add(*count) > MAX_NODES {
                    return Err(limit_error(span));
                }
                let mut copy = node.clone();
                copy.span = span;
                Some((copy, 0, *count))
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError {
                        kind: YamlErrorKind::Limit,
                        message: format!("nesting deeper than {MAX_DEPTH} levels"),
                        span,
                        related: None,
                    });
                }
                if matches!(event, Event::SequenceStart(..)) {
                    stack.push(Frame::Seq {
                        start: span,
                        anchor,
                        items: Vec::new(),
                    });
                } else {
                    stack.push(Frame::Map {
                        start: span,
                        anchor,
                        entries: Vec::new(),
                        pending: None,
                        seen: None,
                    });
                }
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq {
                    start,
                    anchor,
                    items,
                }) => {
                    // Children were counted when they completed.
                    let count = 1;
                    Some((
                        Node {
                            span: start.join(span),
                            value: Value::Seq(items),
                        },
                        anchor,
                        count,
                    ))
                }
                Some(Frame::Map {
                    start,
                    anchor,
                    entries,
                    ..
                }) => {
                    let count = 1 + entries.len();
                    Some((
                        Node {
                            span: start.join(span),
                            value: Value::Map(entries),
                        },
                        anchor,
                        count,
                    ))
                }
                None => None,
            },
        };
        let Some((node, anchor, count)) = completed else {
            continue;
        };
        nodes = nodes.saturating_add(count);
        if nodes > MAX_NODES {
            return Err(limit_error(node.span));
        }
        if anchor != 0 {
            // Subtree size: for containers `count` is only the direct children; compute the
            // real size once here so that every later alias is charged in full.
            let size = subtree_size(&node);
            anchors.insert(anchor, (node.clone(), size));
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending,
                seen,
                ..
            }) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    let text = match node.value {
                        Value::Str(s) => s,
                        Value::Null => String::new(),
                        Value::Bool(b) => b.to_string(),
                        Value::Int(i) => i.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Seq(_) | Value::Map(_) => {
                            return Err(YamlError {
                                kind: YamlErrorKind::ComplexKey,
                                message: "mapping keys must be plain strings".into(),
                                span: node.span,
                                related: None,
                            })
                        }
                    };
                    let first = match seen {
                        Some(index) => index.get(&text).copied(),
                        None => entries
                            .iter()
                            .find(|(k, _)| k.text == text)
                            .map(|(k, _)| k.span),
                    };
                    if let Some(first) = first {
                        return Err(YamlError {
                            kind: YamlErrorKind::DuplicateKey,
                            message: format!("duplicate key `{text}`"),
                            span: node.span,
                            related: Some((first, "first defined here".into())),
                        });
                    }
                    if let Some(index) = seen {
                        index.insert(text.clone(), node.span);
                    } else if entries.len() >= 32 {
                        let mut index: HashMap<String, Span> = entries
                            .iter()
                            .map(|(k, _)| (k.text.clone(), k.span))
                            .collect();
                        index.insert(text.clone(), node.span);
                        *seen = Some(index);
                    }
                    *pending = Some(Key {
                        text,
                        span: node.span,
                    });
                }
            },
        }
    }
    match root {
        Some(node) if node.value != Value::Null => Ok(node),
        _ => Err(YamlError {
            kind: YamlErrorKind::Empty,
            message: "the file holds no YAML document (empty, or only comments)".into(),
            span: src.point(1, 0),
            related: None,
        }),
    }
}

fn limit_error(span: Span) -> YamlError {
    YamlError {
        kind: YamlErrorKind::Limit,
        message: format!(
            "the document expands to more than {MAX_NODES} nodes (aliases are counted in full)"
        ),
        span,
        related: None,
    }
}

fn subtree_size(node: &Node) -> usize {
    // Iterative to keep stack use flat whatever the shape.
    let mut total = 0usize;
    let mut todo = vec![node];
    while let Some(n) = todo.pop() {
        total += 1;
        match &n.value {
            Value::Seq(items) => todo.extend(items.iter()),
            Value::Map(entries) => {
                total += entries.len();
                todo.extend(entries.iter().map(|(_, v)| v));
            }
            _ => {}
        }
    }
    total
}

/// YAML 1.2 core-schema resolution of a scalar. Quoted and block scalars are always strings.
fn resolve_scalar(text: std::borrow::Cow<'_, str>, style: ScalarStyle) -> Value {
    // Most scalars of a contract are prose or ids: a plain scalar starting with a letter that
    // begins none of the core-schema words (null, true, false and their capitalisations) is a
    // string, with no further tests.
    let first = text.as_bytes().first().copied();
    let maybe_typed = matches!(
        first,
        None | Some(
            b'0'..=b'9' | b'-' | b'+' | b'.' | b'~' | b'n' | b'N' | b't' | b'T' | b'f' | b'F'
        )
    );
    if style != ScalarStyle::Plain || !maybe_typed {
        return Value::Str(text.into_owned());
    }
    let text: &str = &text;
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(i) = i64::from_str_radix(hex, 16) {
                return Value::Int(i);
            }
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if !oct.is_empty() && oct.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            if let Ok(i) = i64::from_str_radix(oct, 8) {
                return Value::Int(i);
            }
        }
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<i64>() {
            Ok(i) => Value::Int(i),
            Err(_) => text
                .parse::<f64>()
                .map(Value::Float)
                .unwrap_or_else(|_| Value::Str(text.to_string())),
        };
    }
    if is_core_float(digits) {
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(text.to_string())
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` (sign already stripped).
fn is_core_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let int_digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e') | Some(b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-') | Some(b'+')) {
            i += 1;
        }
        let exp = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Node, YamlError> {
        parse(&SourceFile::new("t.yaml", text.to_string()))
    }

    #[test]
    fn scalars_resolve_with_core_schema() {
        let n =
            p("a: 1\nb: 1.5\nc: 0.1.0\nd: '1'\ne: .inf\nf: true\ng: ~\nh: 1e-3\ni: 2026-11-22\n")
                .expect("parses");
        assert_eq!(n.get("a").map(|n| &n.value), Some(&Value::Int(1)));
        assert_eq!(n.get("b").map(|n| &n.value), Some(&Value::Float(1.5)));
        assert_eq!(
            n.get("c").map(|n| &n.value),
            Some(&Value::Str("0.1.0".into()))
        );
        assert_eq!(n.get("d").map(|n| &n.value), Some(&Value::Str("1".into())));
        assert_eq!(
            n.get("e").map(|n| &n.value),
            Some(&Value::Float(f64::INFINITY))
        );
        assert_eq!(n.get("f").map(|n| &n.value), Some(&Value::Bool(true)));
        assert_eq!(n.get("g").map(|n| &n.value), Some(&Value::Null));
        assert_eq!(n.get("h").map(|n| &n.value), Some(&Value::Float(1e-3)));
        assert_eq!(
            n.get("i").map(|n| &n.value),
            Some(&Value::Str("2026-11-22".into()))
        );
    }

    #[test]
    fn spans_are_one_based_and_count_characters() {
        let n = p("é: x\nkey:\n  - value\n").expect("parses");
        let path = path!["key", 0];
        let v = n.at(&path).expect("exists");
        assert_eq!((v.span.line, v.span.col), (3, 5));
        let k = n.get("é").expect("exists");
        assert_eq!((k.span.line, k.span.col), (1, 4));
        assert_eq!(&"é: x\n"[k.span.start..k.span.end], "x");
    }

    #[test]
    fn duplicate_keys_are_rejected_with_both_places() {
        let e = p("a: 1\nb: 2\na: 3\n").expect_err("duplicate");
        assert_eq!(e.kind, YamlErrorKind::DuplicateKey);
        assert_eq!(e.span.line, 3);
        assert_eq!(e.related.map(|r| r.0.line), Some(1));
    }

    #[test]
    fn duplicate_keys_in_large_mappings_are_found() {
        let mut s: String = (0..100).map(|i| format!("k{i}: {i}\n")).collect();
        s.push_str("k7: again\n");
        let e = p(&s).expect_err("duplicate");
        assert_eq!(e.kind, YamlErrorKind::DuplicateKey);
        assert_eq!((e.span.line, e.related.map(|r| r.0.line)), (101, Some(8)));
        let s: String = (0..100).map(|i| format!("k{i}: {i}\n")).collect();
        assert!(p(&s).is_ok());
    }

    #[test]
    fn alias_bomb_is_bounded() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            s.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let e = p(&s).expect_err("bomb");
        assert_eq!(e.kind, YamlErrorKind::Limit);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let s = "[".repeat(100_000);
        let e = p(&s).expect_err("deep");
        assert!(
            matches!(e.kind, YamlErrorKind::Limit | YamlErrorKind::Syntax),
            "{e:?}"
        );
    }

    #[test]
    fn empty_and_comment_only_files_are_empty() {
        assert_eq!(p("").expect_err("empty").kind, YamlErrorKind::Empty);
        assert_eq!(
            p("# nothing\n").expect_err("empty").kind,
            YamlErrorKind::Empty
        );
    }

    #[test]
    fn two_documents_are_refused() {
        let e = p("a: 1\n---\nb: 2\n").expect_err("two docs");
        assert_eq!(e.kind, YamlErrorKind::MultipleDocuments);
    }

    #[test]
    fn tabs_in_indentation_are_syntax_errors() {
        let e = p("a:\n\tb: 1\n").expect_err("tab");
        assert_eq!(e.kind, YamlErrorKind::Syntax);
    }
}
