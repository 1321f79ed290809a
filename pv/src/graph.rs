//! `pv graph`: contracts (`depends_on`) and stages (`requires`) as two DAGs, in topological
//! order, as Graphviz dot, JSON or a self-contained SVG coloured by derived stage status.
//!
//! Edges point from the prerequisite to the dependant (what must hold first, first). A cycle in
//! either graph is an error that names the cycle; a reference to something no contract defines
//! is kept as a dangling edge (`pv validate` reports it as PV014/PV017) and drawn nowhere.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use pv_contract::ContractSet;
use serde::Serialize;

use crate::status::{StageStatus, StatusReport};
use crate::status_cmd::Locations;
use crate::status_load::status_for;
use crate::status_render::{color, esc};

/// Output format of `pv graph`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Graphviz dot (`dot -Tsvg`), stages filled by status.
    #[default]
    Dot,
    /// Nodes, edges, layers and topological order as JSON.
    Json,
    /// A self-contained SVG, laid out by topological layer, stages coloured by status.
    Svg,
}

/// `pv graph` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub locations: Locations,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Write the output to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// A contract node.
#[derive(Debug, Clone, Serialize)]
pub struct ContractNode {
    /// Contract id.
    pub id: String,
    /// Its version.
    pub version: String,
    /// Contracts it depends on (that exist).
    pub depends_on: Vec<String>,
    /// Topological layer: 0 for no dependency, else 1 + the deepest dependency's layer.
    pub layer: usize,
}

/// A stage node.
#[derive(Debug, Clone, Serialize)]
pub struct StageNode {
    /// Stage id.
    pub id: String,
    /// The contract defining it.
    pub contract: String,
    /// Its title.
    pub title: String,
    /// Stages it requires (that exist).
    pub requires: Vec<String>,
    /// Derived status (`docs/status.md`), capped by required stages.
    pub status: StageStatus,
    /// Topological layer over `requires`.
    pub layer: usize,
}

/// An edge whose prerequisite no loaded contract defines.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Dangling {
    /// The node that names it.
    pub from: String,
    /// The missing contract or stage.
    pub missing: String,
}

/// Both graphs, nodes in topological order (ties broken by file order).
#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    /// Contracts, each after everything it depends on.
    pub contracts: Vec<ContractNode>,
    /// Stages, each after everything it requires.
    pub stages: Vec<StageNode>,
    /// References to contracts or stages that do not exist.
    pub dangling: Vec<Dangling>,
}

/// A dependency cycle: the ids along it, first repeated at the end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} form a cycle: {}", .path.join(" -> "))]
pub struct CycleError {
    /// `contract dependencies` or `stage requirements`.
    pub kind: &'static str,
    /// `a -> b -> a`, where `x -> y` means x depends on / requires y.
    pub path: Vec<String>,
}

/// Topological order of `n` nodes given `prereqs[i]` (indices that must come before `i`).
/// Kahn's algorithm, always taking the smallest ready index, so the order is deterministic and
/// follows file order where the edges allow. Returns (order, layer per node) or a cycle as
/// indices `[a, b, ..., a]` where each requires the next.
pub fn toposort(prereqs: &[Vec<usize>]) -> Result<(Vec<usize>, Vec<usize>), Vec<usize>> {
    let n = prereqs.len();
    let mut indegree: Vec<usize> = prereqs.iter().map(Vec::len).collect();
    let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ps) in prereqs.iter().enumerate() {
        for &p in ps {
            dependants[p].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    let mut layer = vec![0usize; n];
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependants[i] {
            layer[d] = layer[d].max(layer[i] + 1);
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if order.len() == n {
        return Ok((order, layer));
    }
    // Every node left has a prerequisite that is also left; walking prerequisites from the
    // smallest such node must revisit one, and the revisited stretch is a cycle.
    let left: Vec<bool> = indegree.iter().map(|&d| d > 0).collect();
    let start = (0..n).find(|&i| left[i]).unwrap_or(0);
    let mut seen_at: HashMap<usize, usize> = HashMap::new();
    let mut walk = Vec::new();
    let mut cur = start;
    loop {
        if let Some(&pos) = seen_at.get(&cur) {
            let mut cycle = walk[pos..].to_vec();
            cycle.push(cur);
            return Err(cycle);
        }
        seen_at.insert(cur, walk.len());
        walk.push(cur);
        match prereqs[cur].iter().copied().filter(|&p| left[p]).min() {
            Some(next) => cur = next,
            // Unreachable by the argument above; report the walk rather than loop forever.
            None => return Err(walk),
        }
    }
}

/// Builds both graphs. Stage statuses come from `report` (a stage missing from it, which
/// `derive` never produces, shows as PENDING).
pub fn build(set: &ContractSet, report: &StatusReport) -> Result<Graph, CycleError> {
    let mut dangling = Vec::new();

    let contracts: Vec<&pv_contract::Contract> = set.contracts().collect();
    let cindex: HashMap<&str, usize> = contracts
        .iter()
        .enumerate()
        .map(|(i, c)| (c.contract.as_str(), i))
        .collect();
    let mut cpre: Vec<Vec<usize>> = Vec::with_capacity(contracts.len());
    for c in &contracts {
        let mut ps = Vec::new();
        for d in &c.depends_on {
            match cindex.get(d.contract.as_str()) {
                Some(&i) => ps.push(i),
                None => dangling.push(Dangling {
                    from: c.contract.clone(),
                    missing: d.contract.clone(),
                }),
            }
        }
        cpre.push(ps);
    }
    let (corder, clayer) = toposort(&cpre).map_err(|cycle| CycleError {
        kind: "contract dependencies",
        path: cycle
            .iter()
            .map(|&i| contracts[i].contract.clone())
            .collect(),
    })?;

    let stages: Vec<(&pv_contract::Contract, &pv_contract::Stage)> = set.stages().collect();
    let sindex: HashMap<&str, usize> = stages
        .iter()
        .enumerate()
        .map(|(i, (_, s))| (s.id.as_str(), i))
        .collect();
    let mut spre: Vec<Vec<usize>> = Vec::with_capacity(stages.len());
    for (_, s) in &stages {
        let mut ps = Vec::new();
        for r in &s.requires {
            match sindex.get(r.as_str()) {
                Some(&i) => ps.push(i),
                None => dangling.push(Dangling {
                    from: s.id.clone(),
                    missing: r.clone(),
                }),
            }
        }
        spre.push(ps);
    }
    let (sorder, slayer) = toposort(&spre).map_err(|cycle| CycleError {
        kind: "stage requirements",
        path: cycle.iter().map(|&i| stages[i].1.id.clone()).collect(),
    })?;

    Ok(Graph {
        contracts: corder
            .iter()
            .map(|&i| ContractNode {
                id: contracts[i].contract.clone(),
                version: contracts[i].version.clone(),
                depends_on: cpre[i]
                    .iter()
                    .map(|&p| contracts[p].contract.clone())
                    .collect(),
                layer: clayer[i],
            })
            .collect(),
        stages: sorder
            .iter()
            .map(|&i| {
                let (c, s) = stages[i];
                StageNode {
                    id: s.id.clone(),
                    contract: c.contract.clone(),
                    title: s.title.clone(),
                    requires: spre[i].iter().map(|&p| stages[p].1.id.clone()).collect(),
                    status: report
                        .stage(&s.id)
                        .map_or(StageStatus::Pending, |r| r.status),
                    layer: slayer[i],
                }
            })
            .collect(),
        dangling,
    })
}

/// Escapes a dot string literal.
fn dot_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Graphviz dot: the contract nodes with dashed dependency edges, then one cluster per contract
/// holding its stages, filled by status, with requirement edges.
pub fn dot(g: &Graph) -> String {
    let mut s = String::from(
        "digraph pv {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n",
    );
    let _ = writeln!(s, "  subgraph contracts {{");
    for c in &g.contracts {
        let _ = writeln!(
            s,
            "    {} [label={}, fillcolor=\"#f6f8fa\"];",
            dot_str(&c.id),
            dot_str(&format!("{} {}", c.id, c.version))
        );
    }
    for c in &g.contracts {
        for d in &c.depends_on {
            let _ = writeln!(
                s,
                "    {} -> {} [style=dashed];",
                dot_str(d),
                dot_str(&c.id)
            );
        }
    }
    let _ = writeln!(s, "  }}");
    let mut by_contract: BTreeMap<&str, Vec<&StageNode>> = BTreeMap::new();
    for st in &g.stages {
        by_contract
            .entry(st.contract.as_str())
            .or_default()
            .push(st);
    }
    for (ci, c) in g.contracts.iter().enumerate() {
        let Some(stages) = by_contract.get(c.id.as_str()) else {
            continue;
        };
        let _ = writeln!(
            s,
            "  subgraph cluster_{ci} {{\n    label={};",
            dot_str(&c.id)
        );
        for st in stages {
            let _ = writeln!(
                s,
                "    {} [label={}, fillcolor=\"{}\", fontcolor=\"white\", tooltip={}];",
                dot_str(&st.id),
                dot_str(&format!("{}\n{}", st.id, st.status)),
                color(st.status),
                dot_str(&st.title)
            );
        }
        let _ = writeln!(s, "  }}");
    }
    for st in &g.stages {
        for r in &st.requires {
            let _ = writeln!(s, "  {} -> {};", dot_str(r), dot_str(&st.id));
        }
    }
    s.push_str("}\n");
    s
}

/// Pretty JSON with a trailing newline.
pub fn json(g: &Graph) -> String {
    let mut s = serde_json::to_string_pretty(g)
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize the graph: {e}\"}}"));
    s.push('\n');
    s
}

/// Positions by layer: column = layer, row = order of appearance within the layer.
fn layout<'a>(
    nodes: impl Iterator<Item = (&'a str, usize)>,
) -> (HashMap<&'a str, (usize, usize)>, usize, usize) {
    let mut rows_in: BTreeMap<usize, usize> = BTreeMap::new();
    let mut pos = HashMap::new();
    for (id, layer) in nodes {
        let row = rows_in.entry(layer).or_insert(0);
        pos.insert(id, (layer, *row));
        *row += 1;
    }
    let cols = rows_in.keys().next_back().map_or(0, |l| l + 1);
    let rows = rows_in.values().copied().max().unwrap_or(0);
    (pos, cols, rows)
}

/// A self-contained SVG: the contract graph on top, the stage graph below, each laid out in
/// columns by topological layer with arrows from prerequisite to dependant.
pub fn svg(g: &Graph) -> String {
    const W: f64 = 200.0;
    const H: f64 = 44.0;
    const GX: f64 = 50.0;
    const GY: f64 = 14.0;
    const M: f64 = 20.0;
    let (cpos, ccols, crows) = layout(g.contracts.iter().map(|c| (c.id.as_str(), c.layer)));
    let (spos, scols, srows) = layout(g.stages.iter().map(|s| (s.id.as_str(), s.layer)));
    let x = |col: usize| M + col as f64 * (W + GX);
    let cy0 = 40.0;
    let sy0 = cy0 + crows as f64 * (H + GY) + 50.0;
    let y = |y0: f64, row: usize| y0 + row as f64 * (H + GY);
    let width = 2.0 * M + ccols.max(scols).max(1) as f64 * (W + GX);
    let height = sy0 + srows as f64 * (H + GY) + M;
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="contract and stage graph" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="Helvetica,Arial,sans-serif">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#586069"/></marker></defs>
<text x="{M}" y="24" font-size="13" font-weight="bold">contracts (depends_on)</text>
<text x="{M}" y="{sl}" font-size="13" font-weight="bold">stages (requires), coloured by derived status</text>
"##,
        sl = sy0 - 16.0
    );
    let edge = |s: &mut String,
                (c1, r1): (usize, usize),
                (c2, r2): (usize, usize),
                y0: f64,
                dash: bool| {
        let (x1, y1, x2, y2) = if c1 == c2 {
            // Same layer cannot happen for an edge (a dependant is always a layer further);
            // kept for robustness: a vertical arrow.
            (x(c1) + W / 2.0, y(y0, r1) + H, x(c2) + W / 2.0, y(y0, r2))
        } else {
            (x(c1) + W, y(y0, r1) + H / 2.0, x(c2), y(y0, r2) + H / 2.0)
        };
        let dash = if dash {
            r#" stroke-dasharray="5,3""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r##"<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#586069" stroke-width="1.2"{dash} marker-end="url(#arrow)"/>"##
        );
    };
    for c in &g.contracts {
        for d in &c.depends_on {
            if let (Some(&a), Some(&b)) = (cpos.get(d.as_str()), cpos.get(c.id.as_str())) {
                edge(&mut s, a, b, cy0, true);
            }
        }
    }
    for st in &g.stages {
        for r in &st.requires {
            if let (Some(&a), Some(&b)) = (spos.get(r.as_str()), spos.get(st.id.as_str())) {
                edge(&mut s, a, b, sy0, false);
            }
        }
    }
    for c in &g.contracts {
        let Some(&(col, row)) = cpos.get(c.id.as_str()) else {
            continue;
        };
        let (nx, ny) = (x(col), y(cy0, row));
        let _ = writeln!(
            s,
            r##"<g class="contract" data-contract="{id}"><rect x="{nx}" y="{ny}" width="{W}" height="{H}" rx="6" fill="#f6f8fa" stroke="#586069"/><text x="{tx}" y="{ty1}" font-size="12" font-weight="bold">{id}</text><text x="{tx}" y="{ty2}" font-size="11" fill="#586069">{v}</text></g>"##,
            id = esc(&c.id),
            v = esc(&c.version),
            tx = nx + 8.0,
            ty1 = ny + 18.0,
            ty2 = ny + 35.0,
        );
    }
    for st in &g.stages {
        let Some(&(col, row)) = spos.get(st.id.as_str()) else {
            continue;
        };
        let (nx, ny) = (x(col), y(sy0, row));
        let fill = color(st.status);
        let _ = writeln!(
            s,
            r##"<g class="stage" data-stage="{id}" data-status="{status}"><title>{id} ({contract}): {title}</title><rect x="{nx}" y="{ny}" width="{W}" height="{H}" rx="6" fill="{fill}" fill-opacity="0.15" stroke="{fill}" stroke-width="2"/><text x="{tx}" y="{ty1}" font-size="12" font-weight="bold">{id}</text><text x="{tx}" y="{ty2}" font-size="11" fill="{fill}">{status}</text></g>"##,
            id = esc(&st.id),
            contract = esc(&st.contract),
            title = esc(&st.title),
            status = st.status,
            tx = nx + 8.0,
            ty1 = ny + 18.0,
            ty2 = ny + 35.0,
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Renders `g` in `format`.
pub fn render(g: &Graph, format: Format) -> String {
    match format {
        Format::Dot => dot(g),
        Format::Json => json(g),
        Format::Svg => svg(g),
    }
}

/// Writes `text` to `output` or stdout.
pub(crate) fn emit(text: &str, output: Option<&std::path::Path>) -> anyhow::Result<()> {
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .context("cannot write to stdout")
        }
    }
}

/// `pv graph`: exit 0 with the graph, 1 when either graph has a cycle (the error names it),
/// 2 when the contracts or evidence cannot be read.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let paths = args.locations.paths()?;
    let (set, report) = status_for(&paths).context("deriving stage status")?;
    match build(&set, &report) {
        Ok(g) => {
            for d in &g.dangling {
                eprintln!(
                    "warning: {} names `{}`, which no loaded contract defines (not drawn)",
                    d.from, d.missing
                );
            }
            emit(&render(&g, args.format), args.output.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Err(cycle) => {
            eprintln!("error: {cycle} (`a -> b`: a depends on / requires b)");
            Ok(ExitCode::from(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toposort_orders_and_layers() {
        // 0 <- 1 <- 2, 0 <- 3
        let pre = vec![vec![], vec![0], vec![1], vec![0]];
        let (order, layer) = toposort(&pre).expect("acyclic");
        assert_eq!(order, vec![0, 1, 2, 3]);
        assert_eq!(layer, vec![0, 1, 2, 1]);
    }

    #[test]
    fn toposort_names_the_cycle() {
        // 0 needs 2, 2 needs 1, 1 needs 0; 3 needs 0 (not on the cycle).
        let pre = vec![vec![2], vec![0], vec![1], vec![0]];
        let cycle = toposort(&pre).expect_err("cyclic");
        assert_eq!(cycle, vec![0, 2, 1, 0]);
        // Self loop.
        assert_eq!(toposort(&[vec![0]]).expect_err("self loop"), vec![0, 0]);
    }

    #[test]
    fn dot_strings_are_escaped() {
        assert_eq!(dot_str("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }
}
