//! The JSON Schema of contracts: generation (`pv schema`) and checking a parsed document.

use std::sync::{Arc, OnceLock};

use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use pv_contract::rules::codes;
use pv_contract::rules::IdKind;
use pv_contract::yaml::{Node, Seg, Value};
use pv_contract::{Diagnostic, SourceFile};

/// The schema as pretty JSON with a trailing newline: exactly the committed
/// `contracts/contract.schema.json`.
pub fn schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&pv_contract::json_schema())
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize schema: {e}\"}}"));
    s.push('\n');
    s
}

fn validator() -> Result<&'static jsonschema::Validator, String> {
    static V: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    V.get_or_init(|| {
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .build(&pv_contract::json_schema())
            .map_err(|e| format!("the generated schema does not compile: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The rule code for a schema error at `path`: ids, versions, dates and metric fields have rule
/// codes of their own (the same as the semantic checks, so duplicates collapse); anything else
/// is a generic format error (PV002).
fn code_for(path: &[Seg]) -> &'static str {
    use Seg::{Index as I, Key as K};
    let k = |s: &Seg, name: &str| matches!(s, K(x) if x == name);
    match path {
        [K(c)] if c == "contract" => codes::ID_PATTERN,
        [K(v)] if v == "version" => codes::SEMVER,
        [K(list), I(_), K(id)]
            if id == "id"
                && matches!(
                    list.as_str(),
                    "stages"
                        | "falsifiers"
                        | "acceptance_criteria"
                        | "equations"
                        | "proof_obligations"
                ) =>
        {
            codes::ID_PATTERN
        }
        [K(h), I(_), f] if h == "amendment_history" && k(f, "version") => codes::SEMVER,
        [K(h), I(_), f] if h == "amendment_history" && k(f, "date") => codes::AMENDMENT_DATE,
        [K(fs), I(_), K(m), I(_), f] if fs == "falsifiers" && m == "metrics" => {
            if k(f, "name") {
                codes::METRIC_NAME
            } else if k(f, "op") {
                codes::METRIC_OP
            } else if k(f, "threshold") {
                codes::METRIC_THRESHOLD
            } else {
                codes::SCHEMA
            }
        }
        _ => codes::SCHEMA,
    }
}

fn pointer(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        s.push('/');
        match seg {
            Seg::Key(k) => s.push_str(k),
            Seg::Index(i) => s.push_str(&i.to_string()),
        }
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// Checks a parsed document against the schema; one diagnostic per violation, at its node.
pub fn check(source: &Arc<SourceFile>, tree: &Node) -> Vec<Diagnostic> {
    let v = match validator() {
        Ok(v) => v,
        Err(msg) => return vec![Diagnostic::file_error(codes::SCHEMA, None, msg)],
    };
    let instance = tree.to_json();
    let mut out = Vec::new();
    for err in v.iter_errors(&instance) {
        let path: Vec<Seg> = err
            .instance_path()
            .segments()
            .map(|s| match s {
                LocationSegment::Property(p) => Seg::Key(p.into_owned()),
                LocationSegment::Index(i) => Seg::Index(i),
            })
            .collect();
        let at = pointer(&path);
        let d = match err.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for key in unexpected {
                    let mut kp = path.clone();
                    kp.push(Seg::Key(key.clone()));
                    out.push(
                        Diagnostic::error(
                            codes::SCHEMA,
                            source,
                            tree.key_span_of(&kp),
                            format!("unknown field `{key}` in {at}"),
                            "not a field of the contract format",
                        )
                        .with_help(
                            "the format is closed; see docs/contract-format.md for the fields",
                        ),
                    );
                }
                continue;
            }
            ValidationErrorKind::Required { property } => {
                let name = property
                    .as_str()
                    .map_or_else(|| property.to_string(), str::to_owned);
                Diagnostic::error(
                    codes::SCHEMA,
                    source,
                    tree.span_of(&path),
                    format!("missing field `{name}` in {at}"),
                    format!("`{name}` is required here"),
                )
            }
            _ => {
                let code = code_for(&path);
                let node = tree.at(&path);
                let shown = node.map_or_else(String::new, |n| scalar_text(&n.value));
                let (message, label, help) = describe(code, &path, &shown, &at, &err.to_string());
                let mut d = Diagnostic::error(code, source, tree.span_of(&path), message, label);
                let yaml_typed = matches!(
                    node.map(|n| &n.value),
                    Some(Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Null)
                );
                if let Some(h) = help {
                    d = d.with_help(h);
                } else if code == codes::SCHEMA
                    && yaml_typed
                    && matches!(err.kind(), ValidationErrorKind::Type { .. })
                {
                    d = d.with_help(
                        "YAML reads this as a number, boolean or null; quote it if it is text",
                    );
                }
                d
            }
        };
        out.push(d);
    }
    out
}

/// `pv schema` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<std::path::PathBuf>,
}

/// `pv schema`: prints (or writes) the JSON Schema.
pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    use anyhow::Context;
    let text = schema_text();
    match args.output {
        Some(path) => std::fs::write(&path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .context("cannot write to stdout")?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_nan() => ".nan".into(),
        Value::Float(f) if f.is_infinite() => {
            if *f > 0.0 {
                ".inf".into()
            } else {
                "-.inf".into()
            }
        }
        Value::Float(f) => f.to_string(),
        Value::Str(s) => s.clone(),
        Value::Seq(_) => "a sequence".into(),
        Value::Map(_) => "a mapping".into(),
    }
}

/// Allowed values of the closed enumerations, for messages.
fn allowed(path: &[Seg]) -> Option<&'static str> {
    match path.last() {
        Some(Seg::Key(k)) if k == "tier" => Some("algorithm, hardware"),
        Some(Seg::Key(k)) if k == "classification" => Some("benign, not-benign"),
        Some(Seg::Key(k)) if k == "op" => Some("<, <=, >, >=, =="),
        Some(Seg::Key(k)) if k == "kind" => Some("invariant, postcondition, bound, equivalence"),
        _ => None,
    }
}

/// Message, label and help for a schema violation: the same wording as the semantic rule with
/// that code, so the reader sees one voice whichever check found it first.
fn describe(
    code: &'static str,
    path: &[Seg],
    shown: &str,
    at: &str,
    raw: &str,
) -> (String, String, Option<String>) {
    let id_kind = match path {
        [Seg::Key(k)] if k == "contract" => Some(IdKind::Contract),
        [Seg::Key(k), Seg::Index(_), _] if k == "stages" => Some(IdKind::Stage),
        [Seg::Key(k), Seg::Index(_), _] if k == "falsifiers" => Some(IdKind::Falsifier),
        [Seg::Key(k), Seg::Index(_), _] if k == "acceptance_criteria" => Some(IdKind::Criterion),
        [Seg::Key(k), Seg::Index(_), _] if k == "equations" => Some(IdKind::Equation),
        [Seg::Key(k), Seg::Index(_), _] if k == "proof_obligations" => Some(IdKind::Obligation),
        _ => None,
    };
    match code {
        codes::ID_PATTERN => {
            let kind = id_kind.unwrap_or(IdKind::Contract);
            (
                format!("`{shown}` is not a valid {}", kind.name()),
                "does not match the pattern".into(),
                Some(format!(
                    "{} {} looks like {}",
                    kind.article(),
                    kind.name(),
                    kind.shape()
                )),
            )
        }
        codes::SEMVER => (
            format!("`{shown}` is not a semantic version"),
            "not semver".into(),
            Some("write MAJOR.MINOR.PATCH, e.g. 0.1.0 (unquoted 1.0 is a YAML float)".into()),
        ),
        codes::AMENDMENT_DATE => (
            format!("`{shown}` is not a date"),
            "expected YYYY-MM-DD".into(),
            Some("write the date as YYYY-MM-DD, e.g. 2026-11-22".into()),
        ),
        codes::METRIC_NAME => (
            format!("metric name `{shown}` is not snake_case"),
            "not snake_case".into(),
            Some("lowercase letters and digits joined by '_', e.g. max_abs_diff".into()),
        ),
        codes::METRIC_OP => (
            format!("metric op `{shown}` is not one of <, <=, >, >=, =="),
            "unknown operator".into(),
            Some("quote the operator: op: \"<=\"".into()),
        ),
        codes::METRIC_THRESHOLD => (
            format!("threshold `{shown}` is not a finite number"),
            "not a finite number".into(),
            Some("a threshold nothing can fail (.inf, .nan) decides nothing".into()),
        ),
        _ => match allowed(path) {
            Some(values) => (
                format!("`{shown}` is not allowed at {at}"),
                format!("expected one of {values}"),
                None,
            ),
            None => (format!("{at}: {raw}"), String::new(), None),
        },
    }
}
