//! The save-tensor plan: which stages, layers, positions and experts a traced forward saves.
//!
//! Grammar (whitespace around every token is ignored):
//!
//! ```text
//! spec    := clause (';' clause)*
//! clause  := stages ('@' key '=' value)*
//! stages  := 'all' | stage (',' stage)*            stage names: see `Stage::name`
//! key     := 'layers' | 'pos' | 'experts'          each at most once per clause
//! value   := 'all' | item (',' item)*
//! item    := N | N '..' M | N '..=' M | N '..' | '..' M | 'last'   ('last' only for pos)
//! ```
//!
//! `a..b` is half-open like Rust (`0..48` is layers 0 to 47), `a..=b` includes `b`, a missing
//! bound means the start or the end. A key left out means `all`. A tensor is saved when any
//! clause selects it. Example: `moe_router,moe_ffn_out@layers=0..48@pos=last;logits@pos=all`.
//!
//! Parsing is in two steps so that a CLI can reject a malformed spec before it loads a model:
//! [`PlanSpec::parse`] checks the syntax and the names, [`PlanSpec::bind`] checks every number
//! against the model's layer and expert counts and the number of tokens, and returns the
//! [`TracePlan`] the forward asks. Every error carries the byte span of the offending text and
//! renders with a caret under it.

use std::fmt;
use std::ops::Range;

use super::stage::{Phase, Stage};

/// The sizes a plan is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanDims {
    pub n_layer: usize,
    pub n_expert: usize,
    pub n_tokens: usize,
}

/// A rejected spec: what is wrong, and where (byte span into `spec`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    pub spec: String,
    pub span: Range<usize>,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for SpecError {
    /// Renders like a compiler diagnostic, e.g.
    ///
    /// ```text
    /// invalid trace spec: unknown stage `moe_routr`
    ///   | moe_routr@layers=0..4
    ///   | ^^^^^^^^^
    ///   = help: did you mean `moe_router`?
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let start = self.span.start.min(self.spec.len());
        let end = self.span.end.clamp(start, self.spec.len());
        // Columns count characters, not bytes, so the caret lines up under non-ASCII text too.
        let col = self.spec[..start].chars().count();
        let width = self.spec[start..end].chars().count().max(1);
        writeln!(f, "invalid trace spec: {}", self.message)?;
        writeln!(f, "  | {}", self.spec)?;
        write!(f, "  | {}{}", " ".repeat(col), "^".repeat(width))?;
        if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

/// One element of a value list, before it is checked against the model.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    One(usize),
    Last,
    Range {
        start: Option<usize>,
        end: Option<usize>,
        inclusive: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Selection {
    All,
    Items(Vec<(Item, Range<usize>)>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Layers,
    Pos,
    Experts,
}

impl Key {
    const NAMES: [&'static str; 3] = ["layers", "pos", "experts"];

    fn from_name(s: &str) -> Option<Key> {
        match s {
            "layers" => Some(Key::Layers),
            "pos" => Some(Key::Pos),
            "experts" => Some(Key::Experts),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Key::Layers => "layers",
            Key::Pos => "pos",
            Key::Experts => "experts",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ClauseSpec {
    stages: Vec<Stage>,
    stages_span: Range<usize>,
    /// (selection, span of the whole `key=value` segment)
    layers: Option<(Selection, Range<usize>)>,
    pos: Option<(Selection, Range<usize>)>,
    experts: Option<(Selection, Range<usize>)>,
}

/// A syntactically valid spec, not yet checked against a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanSpec {
    text: String,
    clauses: Vec<ClauseSpec>,
}

/// A spec bound to a model and a token count: what the forward asks while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracePlan {
    spec: String,
    dims: PlanDims,
    clauses: Vec<BoundClause>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct BoundClause {
    stages: [bool; Stage::ALL.len()],
    layers: Vec<bool>,
    pos: Vec<bool>,
    experts: Vec<bool>,
}

/// Splits `s` (which starts at byte `base` of the spec) at every `sep`, and trims each piece.
/// Returns (absolute byte offset of the trimmed piece, trimmed piece).
fn split_trimmed(s: &str, base: usize, sep: char) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c == sep {
            out.push(trim_at(&s[start..i], base + start));
            start = i + c.len_utf8();
        }
    }
    out.push(trim_at(&s[start..], base + start));
    out
}

fn trim_at(piece: &str, base: usize) -> (usize, &str) {
    let lead = piece.len() - piece.trim_start().len();
    (base + lead, piece.trim())
}

fn span(at: usize, text: &str) -> Range<usize> {
    at..at + text.len()
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

impl PlanSpec {
    /// Checks the syntax and the stage and key names.
    pub fn parse(spec: &str) -> Result<PlanSpec, SpecError> {
        let err = |span: Range<usize>, message: String, help: Option<String>| SpecError {
            spec: spec.to_string(),
            span,
            message,
            help,
        };
        if spec.trim().is_empty() {
            return Err(err(
                0..spec.len(),
                "the spec is empty".into(),
                Some("example: `moe_router,moe_ffn_out@layers=0..4@pos=last`".into()),
            ));
        }
        let mut clauses = Vec::new();
        for (clause_at, clause) in split_trimmed(spec, 0, ';') {
            if clause.is_empty() {
                return Err(err(
                    clause_at..clause_at,
                    "empty clause".into(),
                    Some("clauses are separated by `;`; remove the extra `;`".into()),
                ));
            }
            let segments = split_trimmed(clause, clause_at, '@');
            let (stages_at, stages_text) = segments[0];
            let stages = parse_stages(spec, stages_at, stages_text)?;
            let mut c = ClauseSpec {
                stages,
                stages_span: span(stages_at, stages_text),
                layers: None,
                pos: None,
                experts: None,
            };
            for &(seg_at, seg) in &segments[1..] {
                let seg_span = span(seg_at, seg);
                let Some(eq) = seg.find('=') else {
                    return Err(err(
                        seg_span,
                        format!("expected `key=value` after `@`, found `{seg}`"),
                        Some("keys are `layers`, `pos` and `experts`, e.g. `@layers=0..4`".into()),
                    ));
                };
                let (key_at, key_text) = trim_at(&seg[..eq], seg_at);
                let Some(key) = Key::from_name(key_text) else {
                    let help = match closest(key_text, Key::NAMES) {
                        Some(k) => {
                            format!("did you mean `{k}`? keys are `layers`, `pos`, `experts`")
                        }
                        None => "keys are `layers`, `pos` and `experts`".to_string(),
                    };
                    return Err(err(
                        span(key_at, key_text),
                        format!("unknown key `{key_text}`"),
                        Some(help),
                    ));
                };
                let (value_at, value) = trim_at(&seg[eq + 1..], seg_at + eq + 1);
                let sel = parse_selection(spec, key, value_at, value)?;
                let slot = match key {
                    Key::Layers => &mut c.layers,
                    Key::Pos => &mut c.pos,
                    Key::Experts => &mut c.experts,
                };
                if slot.is_some() {
                    return Err(err(
                        seg_span,
                        format!("`{}` is given twice in one clause", key.name()),
                        Some(
                            "to select more, list them (`layers=0,5,9`) or add a clause after `;`"
                                .into(),
                        ),
                    ));
                }
                *slot = Some((sel, seg_span));
            }
            clauses.push(c);
        }
        Ok(PlanSpec {
            text: spec.to_string(),
            clauses,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Checks every number against the model and the token count.
    pub fn bind(&self, dims: PlanDims) -> Result<TracePlan, SpecError> {
        let err = |span: &Range<usize>, message: String, help: Option<String>| SpecError {
            spec: self.text.clone(),
            span: span.clone(),
            message,
            help,
        };
        let mut clauses = Vec::new();
        for c in &self.clauses {
            let mut stages = [false; Stage::ALL.len()];
            for s in &c.stages {
                stages[s.index()] = true;
            }
            let any_layer_stage = c.stages.iter().any(|s| s.phase() == Phase::Layer);
            let any_expert_stage = c.stages.iter().any(|s| s.per_expert());
            if let (Some((_, sp)), false) = (&c.layers, any_layer_stage) {
                return Err(err(
                    sp,
                    "`layers` given, but no stage of this clause is computed per layer".into(),
                    Some("`embed`, `final_norm` and `logits` have no layer; put them in their own clause".into()),
                ));
            }
            if let (Some((_, sp)), false) = (&c.experts, any_expert_stage) {
                return Err(err(
                    sp,
                    "`experts` given, but no stage of this clause is computed per expert".into(),
                    Some("per-expert stages: moe_expert_gate, moe_expert_up, moe_expert_swiglu, moe_expert_out".into()),
                ));
            }
            let layers = resolve(
                &self.text,
                c.layers.as_ref(),
                dims.n_layer,
                "layer",
                "layers",
            )?;
            let pos = resolve(
                &self.text,
                c.pos.as_ref(),
                dims.n_tokens,
                "position",
                "tokens",
            )?;
            let experts = resolve(
                &self.text,
                c.experts.as_ref(),
                dims.n_expert,
                "expert",
                "experts",
            )?;
            clauses.push(BoundClause {
                stages,
                layers,
                pos,
                experts,
            });
        }
        Ok(TracePlan {
            spec: self.text.clone(),
            dims,
            clauses,
        })
    }
}

fn parse_stages(spec: &str, at: usize, text: &str) -> Result<Vec<Stage>, SpecError> {
    let err = |span: Range<usize>, message: String, help: Option<String>| SpecError {
        spec: spec.to_string(),
        span,
        message,
        help,
    };
    if text.is_empty() {
        return Err(err(
            at..at,
            "expected stage names before `@`".into(),
            Some("e.g. `moe_router@layers=3`, or `all@layers=3` for every stage".into()),
        ));
    }
    if text == "all" {
        return Ok(Stage::ALL.to_vec());
    }
    let mut stages = Vec::new();
    for (name_at, name) in split_trimmed(text, at, ',') {
        if name.is_empty() {
            return Err(err(name_at..name_at, "empty stage name".into(), None));
        }
        if name == "all" {
            return Err(err(
                span(name_at, name),
                "`all` cannot be mixed with stage names".into(),
                None,
            ));
        }
        match Stage::from_name(name) {
            Some(s) => {
                if !stages.contains(&s) {
                    stages.push(s);
                }
            }
            None => {
                let list: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
                let help = match closest(name, list.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`? stages: {}", list.join(", ")),
                    None => format!("stages: {}", list.join(", ")),
                };
                return Err(err(
                    span(name_at, name),
                    format!("unknown stage `{name}`"),
                    Some(help),
                ));
            }
        }
    }
    Ok(stages)
}

fn parse_number(spec: &str, at: usize, text: &str, what: &str) -> Result<usize, SpecError> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = text.parse::<usize>() {
            return Ok(n);
        }
    }
    Err(SpecError {
        spec: spec.to_string(),
        span: if text.is_empty() {
            at..at
        } else {
            span(at, text)
        },
        message: if text.is_empty() {
            format!("expected a number {what}")
        } else {
            format!("expected a number {what}, found `{text}`")
        },
        help: Some("items are `N`, `A..B` (B excluded), `A..=B`, `A..` or `..B`".into()),
    })
}

fn parse_selection(spec: &str, key: Key, at: usize, value: &str) -> Result<Selection, SpecError> {
    if value.is_empty() {
        return Err(SpecError {
            spec: spec.to_string(),
            span: at..at,
            message: format!("`{}=` has no value", key.name()),
            help: Some("e.g. `layers=0..4`, `pos=last`, `experts=all`".into()),
        });
    }
    if value == "all" {
        return Ok(Selection::All);
    }
    let mut items = Vec::new();
    for (item_at, item) in split_trimmed(value, at, ',') {
        let item_span = span(item_at, item);
        if item.is_empty() {
            return Err(SpecError {
                spec: spec.to_string(),
                span: item_at..item_at,
                message: "empty item in list".into(),
                help: None,
            });
        }
        if item == "last" {
            if key != Key::Pos {
                return Err(SpecError {
                    spec: spec.to_string(),
                    span: item_span,
                    message: format!("`last` is only valid for `pos`, not `{}`", key.name()),
                    help: None,
                });
            }
            items.push((Item::Last, item_span));
            continue;
        }
        if item == "all" {
            return Err(SpecError {
                spec: spec.to_string(),
                span: item_span,
                message: "`all` cannot be mixed with other items".into(),
                help: None,
            });
        }
        let parsed = match item.find("..") {
            None => Item::One(parse_number(spec, item_at, item, "")?),
            Some(dots) => {
                let left = &item[..dots];
                let (right_off, inclusive) = if item[dots + 2..].starts_with('=') {
                    (dots + 3, true)
                } else {
                    (dots + 2, false)
                };
                let right = &item[right_off..];
                let start = if left.is_empty() {
                    None
                } else {
                    Some(parse_number(spec, item_at, left, "before `..`")?)
                };
                let end = if right.is_empty() {
                    if inclusive {
                        return Err(SpecError {
                            spec: spec.to_string(),
                            span: item_span,
                            message: "`..=` needs an end".into(),
                            help: Some("write `A..` for everything from A on".into()),
                        });
                    }
                    None
                } else {
                    Some(parse_number(
                        spec,
                        item_at + right_off,
                        right,
                        "after `..`",
                    )?)
                };
                Item::Range {
                    start,
                    end,
                    inclusive,
                }
            }
        };
        items.push((parsed, item_span));
    }
    Ok(Selection::Items(items))
}

/// Turns a selection into a membership mask of length `bound`, checking every number.
fn resolve(
    spec: &str,
    sel: Option<&(Selection, Range<usize>)>,
    bound: usize,
    what: &str,
    plural: &str,
) -> Result<Vec<bool>, SpecError> {
    let err = |span: &Range<usize>, message: String, help: Option<String>| SpecError {
        spec: spec.to_string(),
        span: span.clone(),
        message,
        help,
    };
    let items = match sel {
        None | Some((Selection::All, _)) => return Ok(vec![true; bound]),
        Some((Selection::Items(items), _)) => items,
    };
    let range_help = || {
        Some(if bound == 0 {
            format!("there are no {plural}")
        } else {
            format!("valid {plural}: 0..{bound} (0 to {} inclusive)", bound - 1)
        })
    };
    let mut mask = vec![false; bound];
    for (item, sp) in items {
        let (lo, hi) = match *item {
            Item::One(n) => {
                if n >= bound {
                    return Err(err(sp, format!("{what} {n} is out of range"), range_help()));
                }
                (n, n + 1)
            }
            Item::Last => {
                if bound == 0 {
                    return Err(err(
                        sp,
                        "`last` given, but there are no tokens".into(),
                        None,
                    ));
                }
                (bound - 1, bound)
            }
            Item::Range {
                start,
                end,
                inclusive,
            } => {
                let lo = start.unwrap_or(0);
                let hi = match end {
                    None => bound,
                    Some(e) if inclusive => e.saturating_add(1),
                    Some(e) => e,
                };
                if hi < lo {
                    return Err(err(
                        sp,
                        format!("reversed range: the start ({lo}) is after the end"),
                        Some("ranges go up: `A..B` with A < B".into()),
                    ));
                }
                if hi == lo {
                    return Err(err(
                        sp,
                        "empty range: it selects nothing".into(),
                        Some(format!(
                            "`{lo}..{}` or `{lo}..={lo}` selects {what} {lo}",
                            lo + 1
                        )),
                    ));
                }
                if hi > bound {
                    let last = hi - 1;
                    return Err(err(
                        sp,
                        format!("{what} {last} is out of range"),
                        range_help(),
                    ));
                }
                (lo, hi)
            }
        };
        for m in &mut mask[lo..hi] {
            *m = true;
        }
    }
    Ok(mask)
}

impl TracePlan {
    /// Parses and binds in one step.
    pub fn parse(spec: &str, dims: PlanDims) -> Result<TracePlan, SpecError> {
        PlanSpec::parse(spec)?.bind(dims)
    }

    /// A plan that saves every stage of every layer, position and expert.
    pub fn everything(dims: PlanDims) -> TracePlan {
        TracePlan {
            spec: "all".to_string(),
            dims,
            clauses: vec![BoundClause {
                stages: [true; Stage::ALL.len()],
                layers: vec![true; dims.n_layer],
                pos: vec![true; dims.n_tokens],
                experts: vec![true; dims.n_expert],
            }],
        }
    }

    pub fn spec(&self) -> &str {
        &self.spec
    }

    pub fn dims(&self) -> PlanDims {
        self.dims
    }

    fn layer_ok(c: &BoundClause, stage: Stage, layer: Option<usize>) -> bool {
        match (stage.phase(), layer) {
            (Phase::Layer, Some(l)) => c.layers.get(l).copied().unwrap_or(false),
            (Phase::Layer, None) => false,
            // Stages outside the layers ignore the layer argument.
            (Phase::Pre | Phase::Post, _) => true,
        }
    }

    /// Whether the forward should hand over `stage` at `layer` (None outside the layers) and
    /// position `pos`. For a per-expert stage: whether any expert of it is wanted there.
    pub fn wants(&self, stage: Stage, layer: Option<usize>, pos: usize) -> bool {
        self.clauses.iter().any(|c| {
            c.stages[stage.index()]
                && Self::layer_ok(c, stage, layer)
                && c.pos.get(pos).copied().unwrap_or(false)
                && (!stage.per_expert() || c.experts.iter().any(|&e| e))
        })
    }

    /// Whether the forward should hand over per-expert `stage` for `expert`.
    pub fn wants_expert(&self, stage: Stage, layer: usize, pos: usize, expert: usize) -> bool {
        self.clauses.iter().any(|c| {
            c.stages[stage.index()]
                && Self::layer_ok(c, stage, Some(layer))
                && c.pos.get(pos).copied().unwrap_or(false)
                && c.experts.get(expert).copied().unwrap_or(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIMS: PlanDims = PlanDims {
        n_layer: 48,
        n_expert: 128,
        n_tokens: 6,
    };

    fn bad(spec: &str) -> SpecError {
        match TracePlan::parse(spec, DIMS) {
            Ok(_) => panic!("spec {spec:?} was accepted"),
            Err(e) => e,
        }
    }

    fn caret(e: &SpecError) -> &str {
        &e.spec[e.span.clone()]
    }

    #[test]
    fn example_from_the_docs() {
        let p = TracePlan::parse("moe_router,moe_ffn_out@layers=0..48@pos=last", DIMS).unwrap();
        assert!(p.wants(Stage::MoeRouter, Some(0), 5));
        assert!(p.wants(Stage::MoeFfnOut, Some(47), 5));
        assert!(!p.wants(Stage::MoeRouter, Some(0), 4));
        assert!(!p.wants(Stage::LayerOut, Some(0), 5));
        assert!(!p.wants(Stage::Logits, None, 5));
    }

    #[test]
    fn clauses_are_a_union_and_keys_default_to_all() {
        let p = TracePlan::parse(" logits ; q @ layers = 3..=4 , 7 @pos=0,last", DIMS).unwrap();
        assert!((0..6).all(|pos| p.wants(Stage::Logits, None, pos)));
        for l in 0..48 {
            let want = l == 3 || l == 4 || l == 7;
            assert_eq!(p.wants(Stage::Q, Some(l), 0), want, "layer {l}");
            assert_eq!(p.wants(Stage::Q, Some(l), 5), want);
            assert!(!p.wants(Stage::Q, Some(l), 2));
        }
    }

    #[test]
    fn experts_filter_only_per_expert_stages() {
        let p = TracePlan::parse("moe_expert_out,moe_router@experts=3,100..", DIMS).unwrap();
        assert!(p.wants_expert(Stage::MoeExpertOut, 0, 0, 3));
        assert!(p.wants_expert(Stage::MoeExpertOut, 0, 0, 127));
        assert!(!p.wants_expert(Stage::MoeExpertOut, 0, 0, 4));
        assert!(p.wants(Stage::MoeRouter, Some(9), 1));
    }

    #[test]
    fn open_ranges() {
        let p = TracePlan::parse("layer_out@layers=..2,46..", DIMS).unwrap();
        let got: Vec<usize> = (0..48)
            .filter(|&l| p.wants(Stage::LayerOut, Some(l), 0))
            .collect();
        assert_eq!(got, vec![0, 1, 46, 47]);
    }

    #[test]
    fn errors_point_at_the_bad_text() {
        let e = bad("moe_routr,layer_out@layers=0..4");
        assert_eq!(caret(&e), "moe_routr");
        assert!(e.help.as_deref().unwrap_or("").contains("moe_router"));
        assert_eq!(caret(&bad("q@layers=0..49")), "0..49");
        assert_eq!(caret(&bad("q@layers=48")), "48");
        assert_eq!(caret(&bad("q@layers=0..=48")), "0..=48");
        assert_eq!(caret(&bad("q@layers=5..2")), "5..2");
        assert_eq!(caret(&bad("q@layers=3..3")), "3..3");
        assert_eq!(caret(&bad("q@layers=1..2..3")), "2..3");
        assert_eq!(caret(&bad("q@layers=x..3")), "x");
        assert_eq!(caret(&bad("q@layer=3")), "layer");
        assert_eq!(caret(&bad("q@layers")), "layers");
        assert_eq!(caret(&bad("q@layers=1@layers=2")), "layers=2");
        assert_eq!(caret(&bad("q@pos=6")), "6");
        assert_eq!(caret(&bad("q@layers=last")), "last");
        assert_eq!(caret(&bad("logits@layers=1")), "layers=1");
        assert_eq!(caret(&bad("q@experts=1")), "experts=1");
        assert_eq!(caret(&bad("moe_expert_up@experts=128")), "128");
        let e = bad("q;;k");
        assert_eq!(e.span, 2..2);
        let e = bad("q@layers=");
        assert_eq!(e.span, 9..9);
        bad("");
        bad("@layers=1");
        bad("q,,k");
        bad("q@layers=1,,2");
        bad("all,q");
        bad("q@layers=-1");
        bad("q@layers=99999999999999999999999");
    }

    #[test]
    fn rendering_puts_the_caret_under_the_span() {
        let e = bad("q,moe_routr@pos=last");
        let text = e.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "invalid trace spec: unknown stage `moe_routr`");
        assert_eq!(lines[1], "  | q,moe_routr@pos=last");
        assert_eq!(lines[2], "  |   ^^^^^^^^^");
    }

    #[test]
    fn everything_selects_everything() {
        let p = TracePlan::everything(DIMS);
        assert!(p.wants_expert(Stage::MoeExpertGate, 47, 5, 127));
    }
}
