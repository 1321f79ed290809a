//! The semver bump a contract change needs, for `pv diff`.
//!
//! Each change is one of three classes:
//!
//! - **breaking**: something an implementation or a reader of the contract relied on no longer
//!   holds: a falsifier, metric, stage, criterion, equation or obligation removed; a falsifier
//!   retired, or its tier or gate changed; any threshold changed (tightened: passing code may now
//!   fail; loosened: the claim is weaker) or a metric added to an existing falsifier (a new pass
//!   condition); a stage's `requires` or `falsifiers` changed; a criterion's falsifiers changed;
//!   an equation's mathematics (formula, domain, codomain, preconditions, invariants) changed; an
//!   obligation's kind, equation or tolerance changed, a falsifier or harness removed from what
//!   discharges it, or its generators changed or removed; a dependency's requirement changed; the
//!   contract id changed; an amendment entry edited or removed;
//! - **additive**: something new that nothing relied on: a falsifier, stage, criterion, equation,
//!   obligation, known divergence or dependency added, a retired falsifier revived, a falsifier or
//!   harness added to an obligation, generators added, a dependency removed;
//! - **text**: only words changed (titles, summaries, claims, `if_fails`, property text, units,
//!   formal text, findings, divergence text, owners, `kani`).
//!
//! The bump, as Cargo reads semver: from 1.0.0 on, breaking = major, additive = minor, text =
//! patch. Before 1.0.0 the minor version is the compatibility boundary (0.y.z), so breaking =
//! minor and additive or text = patch. The declared bump is the one from the old version to the
//! new; `pv diff` flags a declared bump smaller than the needed one (and `--check` exits 1).

use pv_contract::{Contract, Op};
use serde::Serialize;

use crate::diff::Change;

/// A semver bump, ordered by size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bump {
    /// The version did not move forward.
    None,
    /// x.y.Z
    Patch,
    /// x.Y.0
    Minor,
    /// X.0.0
    Major,
}

impl Bump {
    /// The name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Bump::None => "none",
            Bump::Patch => "patch",
            Bump::Minor => "minor",
            Bump::Major => "major",
        }
    }
}

/// The class of one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Only words changed.
    Text,
    /// Something was added.
    Additive,
    /// Something relied upon changed or went away.
    Breaking,
}

/// One classified change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    /// Its class.
    pub class: Class,
    /// What it is, in words.
    pub what: String,
}

/// The suggestion for a pair of contracts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    /// The smallest bump these changes need.
    pub needed: Bump,
    /// The bump from the old version to the new (`None` when it did not move forward or a
    /// version is not semver).
    pub declared: Bump,
    /// Whether the declared bump is at least the needed one.
    pub sufficient: bool,
    /// Every change that counts, breaking first.
    pub reasons: Vec<Reason>,
}

fn classify(c: &Change, a: &Contract, b: &Contract) -> Vec<Reason> {
    let r = |class: Class, what: String| Reason { class, what };
    let label = format!("{} {}", c.what, c.id);
    match (c.kind, c.what) {
        // New amendment entries are how every version moves; they are not a change to classify.
        ("added", "amendment") => vec![],
        ("added", "metric") => vec![r(
            Class::Breaking,
            format!(
                "added metric {} to an existing falsifier (a new pass condition)",
                c.id
            ),
        )],
        ("added", _) => vec![r(Class::Additive, format!("added {label}"))],
        ("removed", "divergence") => vec![r(Class::Text, format!("removed {label}"))],
        ("removed", "dependency") => vec![r(Class::Additive, format!("removed {label}"))],
        ("removed", _) => vec![r(Class::Breaking, format!("removed {label}"))],
        _ => c
            .details
            .iter()
            .filter_map(|d| changed_detail(c, d, a, b))
            .map(|(class, what)| r(class, format!("{label}: {what}")))
            .collect(),
    }
}

/// Whether the items of `detail` (`name: [a, b] -> [c]`) lost any entry.
fn list_lost_items(detail: &str) -> bool {
    let Some((_, lists)) = detail.split_once(": ") else {
        return true;
    };
    let Some((old, new)) = lists.split_once(" -> ") else {
        return true;
    };
    let items = |s: &str| -> Vec<String> {
        s.trim_matches(|c| c == '[' || c == ']')
            .split(", ")
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    let new = items(new);
    items(old).iter().any(|x| !new.contains(x))
}

fn threshold_word(c: &Change, a: &Contract, b: &Contract) -> &'static str {
    let Some((fid, name)) = c.id.split_once('/') else {
        return "changed";
    };
    let (Some(x), Some(y)) = (
        a.falsifier(fid).and_then(|f| f.metric(name)),
        b.falsifier(fid).and_then(|f| f.metric(name)),
    ) else {
        return "changed";
    };
    if x.op != y.op {
        return "operator changed";
    }
    let tighter = match y.op {
        Op::Lt | Op::Le => y.threshold < x.threshold,
        Op::Gt | Op::Ge => y.threshold > x.threshold,
        Op::Eq => return "changed",
    };
    if tighter {
        "tightened"
    } else {
        "loosened"
    }
}

/// The quantitative tokens of a claim's text, in order: every whitespace-separated word with a
/// digit in it, kept with the brackets, signs and units glued to it (`(0,1]`, `1e-6`, `5%`),
/// comparison operators, and the comparison and quantifier words of [`COMPARISON_WORDS`] and
/// [`COMPARISON_PHRASES`]. Two wordings with the same tokens say the same numbers, bounds and
/// comparisons; anything else may change what the claim means.
pub fn quantitative_tokens(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut out = Vec::new();
    for raw in lower.split_whitespace() {
        let has_digit = raw.chars().any(|c| c.is_ascii_digit());
        let is_op = matches!(
            raw,
            "<" | "<=" | ">" | ">=" | "==" | "!=" | "=" | "±" | "+-"
        );
        if has_digit || is_op {
            // Sentence punctuation after a number is not part of it.
            out.push(raw.trim_end_matches(['.', ';', ':']).to_string());
        } else {
            let word = raw.trim_matches(|c: char| !c.is_alphanumeric());
            if COMPARISON_WORDS.contains(&word) {
                out.push(word.to_string());
            }
        }
    }
    for phrase in COMPARISON_PHRASES {
        out.extend(lower.matches(phrase).map(str::to_string));
    }
    out
}

/// Single words that change what a claim's numbers mean.
pub const COMPARISON_WORDS: &[&str] = &[
    "below",
    "above",
    "under",
    "over",
    "within",
    "exactly",
    "never",
    "always",
    "every",
    "all",
    "any",
    "no",
    "not",
    "none",
    "inclusive",
    "exclusive",
];

/// Phrases that change what a claim's numbers mean.
pub const COMPARISON_PHRASES: &[&str] = &[
    "at most",
    "at least",
    "less than",
    "more than",
    "greater than",
    "fewer than",
];

/// A claim or criterion text change: `Text` when the wording changed but every number, bound
/// and comparison is the same, else `Breaking` (the meaning may have changed: `(0,1]` to
/// `[0,1]` weakens a range).
fn text_change_class(old: &str, new: &str) -> (Class, &'static str) {
    if quantitative_tokens(old) == quantitative_tokens(new) {
        (Class::Text, "")
    } else {
        (
            Class::Breaking,
            " (its numbers, bounds or comparisons changed: the claim may mean something else)",
        )
    }
}

fn changed_detail(c: &Change, d: &str, a: &Contract, b: &Contract) -> Option<(Class, String)> {
    use Class::{Additive, Breaking, Text};
    let field = d.split([':', ' ']).next().unwrap_or("");
    let texts = match (c.what, field) {
        ("falsifier", "claim") => a
            .falsifier(&c.id)
            .zip(b.falsifier(&c.id))
            .map(|(x, y)| (x.claim.as_str(), y.claim.as_str())),
        ("criterion", "text") => a
            .acceptance_criteria
            .iter()
            .find(|x| x.id == c.id)
            .zip(b.acceptance_criteria.iter().find(|x| x.id == c.id))
            .map(|(x, y)| (x.text.as_str(), y.text.as_str())),
        _ => None,
    };
    if let Some((old, new)) = texts {
        let (class, why) = text_change_class(old, new);
        return Some((class, format!("{d}{why}")));
    }
    let class = match (c.what, field) {
        ("contract", "version") => return None,
        ("contract", "id") => Breaking,
        ("falsifier", "retired" | "tier" | "gate") => Breaking,
        ("falsifier", "un-retired") => Additive,
        ("metric", "threshold") => {
            return Some((
                Breaking,
                format!("threshold {}: {d}", threshold_word(c, a, b)),
            ))
        }
        ("stage", "requires" | "falsifiers") | ("criterion", "falsifiers") => Breaking,
        ("equation", "formula" | "domain" | "codomain" | "preconditions" | "invariants") => {
            Breaking
        }
        ("obligation", "kind" | "equation" | "tolerance") => Breaking,
        ("obligation", "falsifiers" | "harnesses") => {
            if list_lost_items(d) {
                Breaking
            } else {
                Additive
            }
        }
        ("obligation", "generators") => {
            if d.starts_with("generators added") {
                Additive
            } else {
                Breaking
            }
        }
        ("dependency", "version") | ("amendment", _) => Breaking,
        _ => Text,
    };
    Some((class, d.to_string()))
}

/// The bump from `old` to `new` version strings (`None` if either is not semver or it did not
/// move forward).
pub fn declared(old: &str, new: &str) -> Bump {
    match (semver::Version::parse(old), semver::Version::parse(new)) {
        (Ok(a), Ok(b)) if b > a => {
            if b.major > a.major {
                Bump::Major
            } else if b.minor > a.minor {
                Bump::Minor
            } else {
                Bump::Patch
            }
        }
        _ => Bump::None,
    }
}

/// The bump a class of change needs at `version` (see the module documentation).
pub fn needed_for(class: Class, version: &str) -> Bump {
    let pre_1 = semver::Version::parse(version).map_or(true, |v| v.major == 0);
    match (class, pre_1) {
        (Class::Breaking, false) => Bump::Major,
        (Class::Breaking, true) | (Class::Additive, false) => Bump::Minor,
        (Class::Additive, true) | (Class::Text, _) => Bump::Patch,
    }
}

/// Classifies every change between `a` and `b` and compares the needed bump with the declared.
pub fn suggest(a: &Contract, b: &Contract, changes: &[Change]) -> Suggestion {
    let mut reasons: Vec<Reason> = changes.iter().flat_map(|c| classify(c, a, b)).collect();
    // Breaking first, then additive, then text; stable within a class (the diff's order).
    reasons.sort_by_key(|r| std::cmp::Reverse(r.class));
    let needed = reasons
        .iter()
        .map(|r| needed_for(r.class, &a.version))
        .max()
        .unwrap_or(Bump::None);
    let declared = declared(&a.version, &b.version);
    Suggestion {
        needed,
        declared,
        sufficient: declared >= needed,
        reasons,
    }
}

/// The text block `pv diff` prints under the changes.
pub fn to_text(a: &Contract, b: &Contract, s: &Suggestion) -> String {
    let mut out = String::new();
    if s.needed == Bump::None {
        out.push_str("  suggested bump: none (no change to the contract's content)\n");
        return out;
    }
    let era = if needed_for(Class::Breaking, &a.version) == Bump::Minor {
        " (before 1.0.0: breaking = minor, additive and text = patch)"
    } else {
        ""
    };
    out.push_str(&format!("  suggested bump: {}{era}\n", s.needed.as_str()));
    for r in &s.reasons {
        let class = match r.class {
            Class::Breaking => "breaking",
            Class::Additive => "additive",
            Class::Text => "text    ",
        };
        out.push_str(&format!("    {class}  {}\n", r.what));
    }
    if s.sufficient {
        out.push_str(&format!(
            "  declared bump: {} ({} -> {}): ok\n",
            s.declared.as_str(),
            a.version,
            b.version
        ));
    } else {
        out.push_str(&format!(
            "  declared bump: {} ({} -> {}): TOO SMALL, these changes need at least {}\n",
            s.declared.as_str(),
            a.version,
            b.version,
            s.needed.as_str()
        ));
    }
    out
}
