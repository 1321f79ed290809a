//! `pv show CONTRACT`: a contract's equations and proof obligations, as text or as a LaTeX
//! fragment (`align*` per equation, `itemize` for conditions and obligations) to `\input` into a
//! document that loads `amsmath`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use pv_contract::{Contract, ContractSet};

use crate::status_cmd::Locations;
use crate::status_load::load_contracts;

/// Output format of `pv show`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Plain text.
    #[default]
    Text,
    /// A LaTeX fragment (needs `amsmath`).
    Latex,
}

/// `pv show` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The contract id (`quant-kernels-v1`).
    pub contract: String,
    #[command(flatten)]
    pub locations: Locations,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Write the output to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Finds `id` in `set`, or says which contracts exist.
pub fn find<'a>(set: &'a ContractSet, id: &str) -> anyhow::Result<&'a Contract> {
    match set.contract(id) {
        Some(c) => Ok(c),
        None => {
            let known: Vec<&str> = set.contracts().map(|c| c.contract.as_str()).collect();
            bail!(
                "no contract `{id}`; loaded contracts: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        }
    }
}

/// A tolerance as written by a person: `0`, `0.5`, `1e-6` (the shorter of plain and
/// exponent notation, both exact round-trips of the f64).
pub fn fmt_tolerance(t: f64) -> String {
    if t == t.trunc() && t.abs() < 1e15 {
        return format!("{}", t as i64);
    }
    let plain = format!("{t}");
    let exp = format!("{t:e}");
    if exp.len() < plain.len() {
        exp
    } else {
        plain
    }
}

/// Plain text.
pub fn text(c: &Contract) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} {}: {}", c.contract, c.version, c.title);
    if c.equations.is_empty() && c.proof_obligations.is_empty() {
        let _ = writeln!(s, "\n(no equations and no proof obligations)");
        return s;
    }
    if !c.equations.is_empty() {
        let _ = writeln!(s, "\nEquations");
    }
    for q in &c.equations {
        let _ = writeln!(s, "\n  {}  {}", q.id, q.name);
        let _ = writeln!(s, "    {}", q.formula.trim());
        if let Some(d) = &q.domain {
            let _ = writeln!(s, "    domain:   {}", d.trim());
        }
        if let Some(d) = &q.codomain {
            let _ = writeln!(s, "    codomain: {}", d.trim());
        }
        for p in &q.preconditions {
            let _ = writeln!(s, "    requires: {}", p.trim());
        }
        for i in &q.invariants {
            let _ = writeln!(s, "    ensures:  {}", i.trim());
        }
    }
    if !c.proof_obligations.is_empty() {
        let _ = writeln!(s, "\nProof obligations");
    }
    for o in &c.proof_obligations {
        let _ = writeln!(s, "\n  {}  {} of {}", o.id, o.kind, o.equation);
        let _ = writeln!(s, "    {}", o.property.trim());
        if let Some(f) = &o.formal {
            let _ = writeln!(s, "    formally:  {}", f.trim());
        }
        if let Some(t) = o.tolerance {
            let _ = writeln!(s, "    tolerance: {}", fmt_tolerance(t));
        }
        let mut by: Vec<String> = o.discharged_by.falsifiers.clone();
        by.extend(
            o.discharged_by
                .harnesses
                .iter()
                .map(|h| format!("harness {h}")),
        );
        let _ = writeln!(
            s,
            "    discharged by: {}",
            if by.is_empty() {
                "nothing".to_string()
            } else {
                by.join(", ")
            }
        );
        if o.kani {
            let _ = writeln!(s, "    kani: yes");
        }
    }
    s
}

/// Escapes text for LaTeX text mode.
pub fn tex_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.trim().chars() {
        match ch {
            '\\' => out.push_str("\\textbackslash{}"),
            '{' | '}' | '_' | '%' | '&' | '#' | '$' => {
                out.push('\\');
                out.push(ch);
            }
            '^' => out.push_str("\\textasciicircum{}"),
            '~' => out.push_str("\\textasciitilde{}"),
            '<' => out.push_str("\\textless{}"),
            '>' => out.push_str("\\textgreater{}"),
            '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A formula for math mode: it is written LaTeX-ish (`_`, `^`, braces, backslash commands stay
/// as they are), with the ASCII operators spelt as symbols and the characters that would end
/// or break the environment (`%`, `#`, `&`, `$`) escaped.
pub fn tex_math(s: &str) -> String {
    let b = s.trim();
    let chars: Vec<char> = b.chars().collect();
    let mut out = String::with_capacity(b.len() + 16);
    // A symbol command, with a space either side unless one is already there (`a*b` must not
    // become `a\cdotb`).
    let sym = |out: &mut String, cmd: &str, after: Option<&char>| {
        if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
        out.push_str(cmd);
        if after.is_some_and(|c| *c != ' ') {
            out.push(' ');
        }
    };
    let mut i = 0;
    while i < chars.len() {
        let (ch, next) = (chars[i], chars.get(i + 1));
        match (ch, next) {
            ('<', Some('=')) => {
                sym(&mut out, "\\le", chars.get(i + 2));
                i += 2;
            }
            ('>', Some('=')) => {
                sym(&mut out, "\\ge", chars.get(i + 2));
                i += 2;
            }
            ('!', Some('=')) => {
                sym(&mut out, "\\ne", chars.get(i + 2));
                i += 2;
            }
            ('=', Some('=')) => {
                sym(&mut out, "=", chars.get(i + 2));
                i += 2;
            }
            ('*', _) => {
                sym(&mut out, "\\cdot", next);
                i += 1;
            }
            ('%' | '#' | '&' | '$', _) => {
                out.push('\\');
                out.push(ch);
                i += 1;
            }
            ('\n', _) => {
                out.push(' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The LaTeX fragment.
pub fn latex(c: &Contract) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "% pv show {} --format latex ({} {}); needs \\usepackage{{amsmath}}",
        c.contract, c.contract, c.version
    );
    let _ = writeln!(
        s,
        "\\subsection*{{{} {}: {}}}",
        tex_text(&c.contract),
        tex_text(&c.version),
        tex_text(&c.title)
    );
    if !c.equations.is_empty() {
        let _ = writeln!(s, "\\subsubsection*{{Equations}}");
    }
    for q in &c.equations {
        let _ = writeln!(
            s,
            "\\paragraph{{\\texttt{{{}}} {}}}",
            tex_text(&q.id),
            tex_text(&q.name)
        );
        let _ = writeln!(
            s,
            "\\begin{{align*}}\n  {}\n\\end{{align*}}",
            tex_math(&q.formula)
        );
        let mut items = Vec::new();
        if let Some(d) = &q.domain {
            items.push(format!("\\item[Domain] {}", tex_text(d)));
        }
        if let Some(d) = &q.codomain {
            items.push(format!("\\item[Codomain] {}", tex_text(d)));
        }
        items.extend(
            q.preconditions
                .iter()
                .map(|p| format!("\\item[Requires] {}", tex_text(p))),
        );
        items.extend(
            q.invariants
                .iter()
                .map(|p| format!("\\item[Ensures] {}", tex_text(p))),
        );
        if !items.is_empty() {
            let _ = writeln!(s, "\\begin{{itemize}}");
            for i in items {
                let _ = writeln!(s, "  {i}");
            }
            let _ = writeln!(s, "\\end{{itemize}}");
        }
    }
    if !c.proof_obligations.is_empty() {
        let _ = writeln!(
            s,
            "\\subsubsection*{{Proof obligations}}\n\\begin{{itemize}}"
        );
        for o in &c.proof_obligations {
            let _ = write!(
                s,
                "  \\item \\texttt{{{}}} ({}, on \\texttt{{{}}}): {}",
                tex_text(&o.id),
                o.kind,
                tex_text(&o.equation),
                tex_text(&o.property)
            );
            if let Some(f) = &o.formal {
                let _ = write!(s, " Formally: \\texttt{{{}}}.", tex_text(f));
            }
            if let Some(t) = o.tolerance {
                let _ = write!(s, " Tolerance ${}$.", tex_math(&fmt_tolerance(t)));
            }
            let mut by: Vec<String> = o
                .discharged_by
                .falsifiers
                .iter()
                .map(|f| format!("\\texttt{{{}}}", tex_text(f)))
                .collect();
            by.extend(
                o.discharged_by
                    .harnesses
                    .iter()
                    .map(|h| format!("harness \\texttt{{{}}}", tex_text(h))),
            );
            let _ = writeln!(
                s,
                " Discharged by {}.",
                if by.is_empty() {
                    "nothing".to_string()
                } else {
                    by.join(", ")
                }
            );
        }
        let _ = writeln!(s, "\\end{{itemize}}");
    }
    s
}

/// `pv show`: exit 0, or 2 (error) when the contract is not loaded.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let paths = args.locations.paths()?;
    let set = load_contracts(&paths.contracts).context("loading contracts")?;
    let c = find(&set, &args.contract)?;
    let out = match args.format {
        Format::Text => text(c),
        Format::Latex => latex(c),
    };
    crate::graph::emit(&out, args.output.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerances_read_as_written() {
        assert_eq!(fmt_tolerance(0.0), "0");
        assert_eq!(fmt_tolerance(1e-6), "1e-6");
        assert_eq!(fmt_tolerance(0.5), "0.5");
        assert_eq!(fmt_tolerance(2.5e-3), "0.0025");
    }

    #[test]
    fn latex_escapes_text_and_spells_operators() {
        assert_eq!(tex_text("Q4_K 100% & #1"), "Q4\\_K 100\\% \\& \\#1");
        assert_eq!(tex_text("a\\b"), "a\\textbackslash{}b");
        assert_eq!(tex_math("y_i = d * q_i"), "y_i = d \\cdot q_i");
        assert_eq!(tex_math("a*b"), "a \\cdot b");
        assert_eq!(tex_math("|a-b| <= 1e-6"), "|a-b| \\le 1e-6");
        assert_eq!(tex_math("x>=0"), "x \\ge 0");
        assert_eq!(tex_math("50% & x"), "50\\% \\& x");
        assert_eq!(tex_math("\\sum_{j} p_j == 1"), "\\sum_{j} p_j = 1");
    }
}
