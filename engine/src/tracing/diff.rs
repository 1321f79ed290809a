//! Stage-by-stage comparison of two trace directories.
//!
//! Tensors are matched by (stage, part, layer, position, expert) and visited in forward order
//! (see [`TensorKey::forward_order`]). For each pair: cosine similarity and max abs difference
//! over the elements finite on both sides, NaN and Inf counts on each side, and bit identity.
//! A pair *diverges* when its cosine is below the threshold, its shapes differ, or its NaN/Inf
//! counts differ. The router's top-k ids are compared as sets; a disagreement counts as a
//! divergence unless it happens at a near-tie (the k-th vs (k+1)-th probability margin is below
//! `tie_margin` on either side), because random and real weights do produce near-ties, and there
//! the two forwards may both be right.
//!
//! The report names the first divergence and the first NaN (and Inf) of each side, in forward
//! order: that is where to look.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::npy::{NpyArray, NpyData};
use super::sink::{ForwardOrder, ManifestTensor, TensorKey, TraceDir, TraceError};
use super::stage::Stage;

/// Settings of a comparison.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct DiffOptions {
    /// A tensor whose cosine similarity is below this diverges.
    pub threshold: f64,
    /// Router id-set disagreements with a k-th/(k+1)-th probability margin below this (on either
    /// side) are near-ties, reported but not counted as divergences.
    pub tie_margin: f64,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            threshold: 0.9999,
            tie_margin: 1e-3,
        }
    }
}

/// Where a tensor sits.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Location {
    pub stage: String,
    pub part: Option<String>,
    pub layer: Option<usize>,
    pub pos: usize,
    pub expert: Option<usize>,
    pub file: String,
    pub description: String,
}

impl Location {
    fn new(key: &TensorKey) -> Location {
        Location {
            stage: key.stage.name().to_string(),
            part: key.part.clone(),
            layer: key.layer,
            pos: key.pos,
            expert: key.expert,
            file: key.file_name(),
            description: key.describe(),
        }
    }
}

/// The comparison of one tensor.
#[derive(Clone, Debug, Serialize)]
pub struct TensorDiff {
    pub location: Location,
    pub shape_a: Vec<usize>,
    pub shape_b: Vec<usize>,
    /// Over elements finite on both sides; None when shapes differ or nothing is comparable.
    pub cosine: Option<f64>,
    pub max_abs_diff: f64,
    pub nan_a: usize,
    pub nan_b: usize,
    pub inf_a: usize,
    pub inf_b: usize,
    /// Same shape, same dtype, same bit patterns.
    pub identical: bool,
    pub diverged: bool,
    pub reason: Option<String>,
}

/// Router agreement at one layer and position.
#[derive(Clone, Debug, Serialize)]
pub struct RouterCheck {
    pub layer: usize,
    pub pos: usize,
    pub ids_a: Vec<i32>,
    pub ids_b: Vec<i32>,
    pub agree: bool,
    /// p_k - p_(k+1) on each side: from the forward's `margin` part, else from the traced
    /// router logits, else unknown.
    pub margin_a: Option<f64>,
    pub margin_b: Option<f64>,
    pub near_tie: bool,
}

/// One line of the per-layer, per-stage table: a stage (and part) at one layer, over all its
/// positions and experts.
#[derive(Clone, Debug, Serialize)]
pub struct StageRow {
    pub layer: Option<usize>,
    pub stage: String,
    pub part: Option<String>,
    pub tensors: usize,
    pub diverged: usize,
    pub identical: usize,
    pub min_cosine: Option<f64>,
    pub max_abs_diff: f64,
    pub nan_a: usize,
    pub nan_b: usize,
    pub inf_a: usize,
    pub inf_b: usize,
}

impl StageRow {
    /// `stage` or `stage.part`.
    pub fn name(&self) -> String {
        match &self.part {
            Some(p) => format!("{}.{p}", self.stage),
            None => self.stage.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Divergence {
    pub location: Location,
    pub reason: String,
    pub cosine: Option<f64>,
    pub max_abs_diff: Option<f64>,
    /// Context that may explain it, e.g. a near-tie router disagreement at the same layer.
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NonFinite {
    pub location: Location,
    pub count: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct TraceSummary {
    pub dir: String,
    pub device: String,
    pub precision: String,
    pub forward_options: String,
    pub model_path: String,
    pub header_sha256: String,
    pub tensors: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct DiffReport {
    pub a: TraceSummary,
    pub b: TraceSummary,
    pub options: DiffOptions,
    pub tokens: Vec<u32>,
    pub warnings: Vec<String>,
    pub compared: usize,
    pub diverged: usize,
    pub rows: Vec<StageRow>,
    pub router: Vec<RouterCheck>,
    /// Tensors present on one side only (e.g. experts chosen by one router and not the other).
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
    pub first_divergence: Option<Divergence>,
    pub first_nan_a: Option<NonFinite>,
    pub first_nan_b: Option<NonFinite>,
    pub first_inf_a: Option<NonFinite>,
    pub first_inf_b: Option<NonFinite>,
    /// Every tensor comparison, in forward order.
    pub tensors: Vec<TensorDiff>,
}

struct Stats {
    cosine: Option<f64>,
    max_abs_diff: f64,
    nan_a: usize,
    nan_b: usize,
    inf_a: usize,
    inf_b: usize,
    identical: bool,
}

fn count_non_finite(v: &[f64]) -> (usize, usize) {
    let nan = v.iter().filter(|x| x.is_nan()).count();
    let inf = v.iter().filter(|x| x.is_infinite()).count();
    (nan, inf)
}

fn bits_identical(a: &NpyData, b: &NpyData) -> bool {
    match (a, b) {
        (NpyData::F32(x), NpyData::F32(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
        }
        (NpyData::I32(x), NpyData::I32(y)) => x == y,
        _ => false,
    }
}

/// Cosine and max abs difference over the pairs finite on both sides.
fn compare_values(a: &[f64], b: &[f64]) -> (Option<f64>, f64) {
    let (mut dot, mut na, mut nb, mut max_abs) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let mut n = 0usize;
    for (&x, &y) in a.iter().zip(b) {
        if x.is_finite() && y.is_finite() {
            dot += x * y;
            na += x * x;
            nb += y * y;
            max_abs = max_abs.max((x - y).abs());
            n += 1;
        }
    }
    let cosine = if n == 0 {
        None
    } else if na == 0.0 && nb == 0.0 {
        Some(1.0)
    } else if na == 0.0 || nb == 0.0 {
        Some(0.0)
    } else {
        Some(dot / (na.sqrt() * nb.sqrt()))
    };
    (cosine, max_abs)
}

fn stats(a: &NpyArray, b: &NpyArray) -> Stats {
    let (va, vb) = (a.data.to_f64(), b.data.to_f64());
    let (nan_a, inf_a) = count_non_finite(&va);
    let (nan_b, inf_b) = count_non_finite(&vb);
    let identical = a.shape == b.shape && bits_identical(&a.data, &b.data);
    let (cosine, max_abs_diff) = if a.shape == b.shape {
        let (c, m) = compare_values(&va, &vb);
        // Rounding in the sums can put the cosine of identical vectors a hair below 1.
        (if identical { c.map(|_| 1.0) } else { c }, m)
    } else {
        (None, f64::NAN)
    };
    Stats {
        cosine,
        max_abs_diff,
        nan_a,
        nan_b,
        inf_a,
        inf_b,
        identical,
    }
}

/// p_k - p_(k+1) of softmax(logits), k = `k`.
fn margin_from_logits(logits: &[f64], k: usize) -> Option<f64> {
    if k == 0 || k >= logits.len() || logits.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|x| (x - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    let mut p: Vec<f64> = exps.iter().map(|e| e / sum).collect();
    p.sort_by(|x, y| y.total_cmp(x));
    Some(p[k - 1] - p[k])
}

#[derive(Default)]
struct RouterSide {
    ids: Option<Vec<i32>>,
    margin: Option<f64>,
    logits: Option<Vec<f64>>,
}

impl RouterSide {
    fn margin(&self) -> Option<f64> {
        self.margin.or_else(|| {
            let k = self.ids.as_ref()?.len();
            margin_from_logits(self.logits.as_ref()?, k)
        })
    }
}

fn summary(t: &TraceDir) -> TraceSummary {
    TraceSummary {
        dir: t.dir.display().to_string(),
        device: t.manifest.device.clone(),
        precision: t.manifest.precision.clone(),
        forward_options: t.manifest.forward_options.clone(),
        model_path: t.manifest.model.path.clone(),
        header_sha256: t.manifest.model.header_sha256.clone(),
        tensors: t.manifest.tensors.len(),
    }
}

/// Manifest entries keyed in forward order.
type Keyed<'a> = BTreeMap<(ForwardOrder, TensorKey), &'a ManifestTensor>;

fn keyed(t: &TraceDir) -> Result<Keyed<'_>, TraceError> {
    let mut m = BTreeMap::new();
    for e in &t.manifest.tensors {
        let key = e.key().map_err(TraceError::Invalid)?;
        m.insert((key.forward_order(), key), e);
    }
    Ok(m)
}

/// Opens two trace directories and compares them.
pub fn diff_dirs(a: &Path, b: &Path, opts: DiffOptions) -> Result<DiffReport, TraceError> {
    let ta = TraceDir::open(a)?;
    let tb = TraceDir::open(b)?;
    diff_traces(&ta, &tb, opts)
}

/// Compares two opened traces.
pub fn diff_traces(
    ta: &TraceDir,
    tb: &TraceDir,
    opts: DiffOptions,
) -> Result<DiffReport, TraceError> {
    let (ma, mb) = (&ta.manifest, &tb.manifest);
    if ma.tokens != mb.tokens {
        return Err(TraceError::Invalid(format!(
            "the traces ran on different token ids ({:?} vs {:?}); a stage-by-stage diff needs the same input",
            ma.tokens, mb.tokens
        )));
    }
    if ma.model.n_layer != mb.model.n_layer || ma.model.n_expert != mb.model.n_expert {
        return Err(TraceError::Invalid(format!(
            "the traces come from models of different shapes ({} layers / {} experts vs {} / {})",
            ma.model.n_layer, ma.model.n_expert, mb.model.n_layer, mb.model.n_expert
        )));
    }
    let mut warnings = Vec::new();
    if ma.model.header_sha256 != mb.model.header_sha256 {
        warnings.push(format!(
            "the model headers differ (sha256 {} vs {}): the traces may come from different files",
            ma.model.header_sha256, mb.model.header_sha256
        ));
    }
    let (ka, kb) = (keyed(ta)?, keyed(tb)?);

    let mut tensors: Vec<TensorDiff> = Vec::new();
    let mut candidates: Vec<(ForwardOrder, Divergence)> = Vec::new();
    let mut only_in_a = Vec::new();
    let mut only_in_b = Vec::new();
    let mut first_nan_a = None;
    let mut first_nan_b = None;
    let mut first_inf_a = None;
    let mut first_inf_b = None;
    let mut routers: BTreeMap<(usize, usize), (RouterSide, RouterSide)> = BTreeMap::new();
    // Stage names (with part) present on one side only, for the warning below.
    let mut only_parts_a = std::collections::BTreeSet::new();
    let mut only_parts_b = std::collections::BTreeSet::new();

    let mut all_keys: Vec<&(ForwardOrder, TensorKey)> = ka.keys().chain(kb.keys()).collect();
    all_keys.sort();
    all_keys.dedup();

    for full in all_keys {
        let (order, key) = (full.0, &full.1);
        let (ea, eb) = (ka.get(full), kb.get(full));
        let arr_a = ea.map(|e| ta.load(e)).transpose()?;
        let arr_b = eb.map(|e| tb.load(e)).transpose()?;
        // First NaN / Inf on each side, whether or not the other side has the tensor.
        for (arr, nan_slot, inf_slot) in [
            (&arr_a, &mut first_nan_a, &mut first_inf_a),
            (&arr_b, &mut first_nan_b, &mut first_inf_b),
        ] {
            if let Some(arr) = arr {
                let (nan, inf) = count_non_finite(&arr.data.to_f64());
                if nan > 0 && nan_slot.is_none() {
                    *nan_slot = Some(NonFinite {
                        location: Location::new(key),
                        count: nan,
                    });
                }
                if inf > 0 && inf_slot.is_none() {
                    *inf_slot = Some(NonFinite {
                        location: Location::new(key),
                        count: inf,
                    });
                }
            }
        }
        // Router parts are gathered for the id-set check, each side on its own: one side may
        // lack a part (the CUDA forward reports no router logits or margin) and the other
        // side's margin still tells whether a disagreement is a near-tie.
        let is_router = key.stage == Stage::MoeRouter;
        if is_router {
            let slot = routers
                .entry((key.layer.unwrap_or(0), key.pos))
                .or_default();
            for (arr, side) in [(&arr_a, &mut slot.0), (&arr_b, &mut slot.1)] {
                let Some(arr) = arr else { continue };
                match (key.part.as_deref(), &arr.data) {
                    (Some("topk_ids"), NpyData::I32(ids)) => side.ids = Some(ids.clone()),
                    (Some("margin"), d) => side.margin = d.to_f64().first().copied(),
                    (Some("logits"), d) => side.logits = Some(d.to_f64()),
                    _ => {}
                }
            }
        }
        let (arr_a, arr_b) = match (arr_a, arr_b) {
            (Some(x), Some(y)) => (x, y),
            (Some(_), None) => {
                only_in_a.push(key.describe());
                only_parts_a.insert(part_name(key));
                continue;
            }
            (None, Some(_)) => {
                only_in_b.push(key.describe());
                only_parts_b.insert(part_name(key));
                continue;
            }
            (None, None) => continue,
        };

        // The weights are compared aligned by expert id: the two sides may list the same
        // experts in another order.
        let (mut sa, mut sb) = (arr_a, arr_b);
        if is_router && key.part.as_deref() == Some("topk_weights") {
            if let Some((ra, rb)) = routers.get(&(key.layer.unwrap_or(0), key.pos)) {
                if let (Some(ia), Some(ib)) = (&ra.ids, &rb.ids) {
                    sa = sort_by_ids(sa, ia);
                    sb = sort_by_ids(sb, ib);
                }
            }
        }
        let mut st = stats(&sa, &sb);
        // A cosine means nothing for the router's ids (compared as sets in the router check
        // below) or for its scalar margin (reported there too).
        let not_a_vector =
            is_router && matches!(key.part.as_deref(), Some("topk_ids") | Some("margin"));
        if not_a_vector {
            st.cosine = None;
        }
        let mut reason = None;
        if sa.shape != sb.shape {
            reason = Some(format!("shape {:?} vs {:?}", sa.shape, sb.shape));
        } else if st.nan_a != st.nan_b || st.inf_a != st.inf_b {
            reason = Some(format!(
                "non-finite values differ: NaN {} vs {}, Inf {} vs {}",
                st.nan_a, st.nan_b, st.inf_a, st.inf_b
            ));
        } else if !not_a_vector && !st.identical {
            match st.cosine {
                Some(c) if c >= opts.threshold => {}
                Some(c) => reason = Some(format!("cosine {c:.6} < {}", opts.threshold)),
                None => reason = Some("no element is finite on both sides".into()),
            }
        }
        if let Some(r) = &reason {
            candidates.push((
                order,
                Divergence {
                    location: Location::new(key),
                    reason: r.clone(),
                    cosine: st.cosine,
                    max_abs_diff: Some(st.max_abs_diff),
                    note: None,
                },
            ));
        }
        tensors.push(TensorDiff {
            location: Location::new(key),
            shape_a: sa.shape.clone(),
            shape_b: sb.shape.clone(),
            cosine: st.cosine,
            max_abs_diff: st.max_abs_diff,
            nan_a: st.nan_a,
            nan_b: st.nan_b,
            inf_a: st.inf_a,
            inf_b: st.inf_b,
            identical: st.identical,
            diverged: reason.is_some(),
            reason,
        });
    }

    let mut router = Vec::new();
    for (&(layer, pos), (ra, rb)) in &routers {
        let (Some(ia), Some(ib)) = (&ra.ids, &rb.ids) else {
            continue;
        };
        let (mut sa, mut sb) = (ia.clone(), ib.clone());
        sa.sort_unstable();
        sb.sort_unstable();
        let agree = sa == sb;
        let (margin_a, margin_b) = (ra.margin(), rb.margin());
        let near_tie = [margin_a, margin_b]
            .iter()
            .any(|m| m.is_some_and(|m| m.abs() < opts.tie_margin));
        if !agree && !near_tie {
            let key = TensorKey::new(Stage::MoeRouter, Some(layer), pos).part("topk_ids");
            candidates.push((
                key.forward_order(),
                Divergence {
                    location: Location::new(&key),
                    reason: format!(
                        "router picked experts {ia:?} vs {ib:?} with margins {} / {} (not a near-tie)",
                        fmt_opt(margin_a),
                        fmt_opt(margin_b)
                    ),
                    cosine: None,
                    max_abs_diff: None,
                    note: None,
                },
            ));
        }
        router.push(RouterCheck {
            layer,
            pos,
            ids_a: ia.clone(),
            ids_b: ib.clone(),
            agree,
            margin_a,
            margin_b,
            near_tie,
        });
    }

    candidates.sort_by_key(|c| c.0);
    let diverged = candidates.len();
    let first_divergence = candidates.into_iter().next().map(|(_, mut d)| {
        // A near-tie at this layer, at or before this point, explains a divergence after it.
        if let Some(l) = d.location.layer {
            let ties: Vec<String> = router
                .iter()
                .filter(|r| r.layer == l && !r.agree && r.near_tie)
                .map(|r| format!("pos {}", r.pos))
                .collect();
            let router_first = d.location.stage != Stage::MoeRouter.name()
                && Stage::from_name(&d.location.stage).is_some_and(|s| s > Stage::MoeRouter);
            if !ties.is_empty() && router_first {
                d.note = Some(format!(
                    "the routers disagree at a near-tie in this layer ({}); this may be a benign consequence",
                    ties.join(", ")
                ));
            }
        }
        d
    });

    let rows = build_rows(&tensors);
    // Per-expert tensors on one side only follow from router disagreements, listed above; any
    // other one-sided stage means the plans, or what the two forwards expose, differ.
    let one_sided = |parts: &std::collections::BTreeSet<String>| -> Vec<String> {
        parts
            .iter()
            .filter(|p| {
                !Stage::from_name(p.split('.').next().unwrap_or("")).is_some_and(|s| s.per_expert())
            })
            .cloned()
            .collect()
    };
    let (sa, sb) = (one_sided(&only_parts_a), one_sided(&only_parts_b));
    if !sa.is_empty() || !sb.is_empty() {
        warnings.push(format!(
            "stages traced on one side only (not compared): A only [{}], B only [{}]; the plans \
             differ, or one forward does not expose them",
            sa.join(", "),
            sb.join(", ")
        ));
    }
    Ok(DiffReport {
        a: summary(ta),
        b: summary(tb),
        options: opts,
        tokens: ma.tokens.clone(),
        warnings,
        compared: tensors.len(),
        diverged,
        rows,
        router,
        only_in_a,
        only_in_b,
        first_divergence,
        first_nan_a,
        first_nan_b,
        first_inf_a,
        first_inf_b,
        tensors,
    })
}

/// `stage` or `stage.part`.
fn part_name(key: &TensorKey) -> String {
    match &key.part {
        Some(p) => format!("{}.{p}", key.stage),
        None => key.stage.to_string(),
    }
}

/// Reorders `arr` (one value per selected expert) by ascending expert id.
fn sort_by_ids(arr: NpyArray, ids: &[i32]) -> NpyArray {
    let NpyData::F32(v) = &arr.data else {
        return arr;
    };
    if v.len() != ids.len() {
        return arr;
    }
    let mut pairs: Vec<(i32, f32)> = ids.iter().copied().zip(v.iter().copied()).collect();
    pairs.sort_by_key(|p| p.0);
    NpyArray {
        shape: arr.shape.clone(),
        data: NpyData::F32(pairs.into_iter().map(|p| p.1).collect()),
    }
}

fn build_rows(tensors: &[TensorDiff]) -> Vec<StageRow> {
    let mut rows: Vec<StageRow> = Vec::new();
    let mut index: HashMap<(Option<usize>, String, Option<String>), usize> = HashMap::new();
    // Tensors are in forward order with positions inside a stage, so rows come out in forward
    // order as long as each row is created at its first tensor; sort at the end to be sure.
    for t in tensors {
        let l = &t.location;
        let id = (l.layer, l.stage.clone(), l.part.clone());
        let i = *index.entry(id).or_insert_with(|| {
            rows.push(StageRow {
                layer: l.layer,
                stage: l.stage.clone(),
                part: l.part.clone(),
                tensors: 0,
                diverged: 0,
                identical: 0,
                min_cosine: None,
                max_abs_diff: 0.0,
                nan_a: 0,
                nan_b: 0,
                inf_a: 0,
                inf_b: 0,
            });
            rows.len() - 1
        });
        let r = &mut rows[i];
        r.tensors += 1;
        r.diverged += usize::from(t.diverged);
        r.identical += usize::from(t.identical);
        if let Some(c) = t.cosine {
            r.min_cosine = Some(r.min_cosine.map_or(c, |m: f64| m.min(c)));
        }
        if t.max_abs_diff > r.max_abs_diff || t.max_abs_diff.is_nan() {
            r.max_abs_diff = t.max_abs_diff;
        }
        r.nan_a += t.nan_a;
        r.nan_b += t.nan_b;
        r.inf_a += t.inf_a;
        r.inf_b += t.inf_b;
    }
    rows.sort_by_key(row_order);
    rows
}

fn row_order(r: &StageRow) -> (u8, usize, usize, usize) {
    let stage = Stage::from_name(&r.stage);
    let part_idx = match (stage, &r.part) {
        (Some(s), Some(p)) => s.parts().iter().position(|q| q == p).unwrap_or(0),
        _ => 0,
    };
    (
        stage.map_or(0, |s| s.phase() as u8),
        r.layer.unwrap_or(0),
        stage.map_or(0, |s| s.index()),
        part_idx,
    )
}

fn fmt_opt(m: Option<f64>) -> String {
    m.map_or_else(|| "unknown".to_string(), |m| format!("{m:.3e}"))
}

fn fmt_loc_count(n: &Option<NonFinite>) -> String {
    match n {
        Some(n) => format!("{} ({} values)", n.location.description, n.count),
        None => "none".to_string(),
    }
}

/// The human-readable report. With `only_diverged`, the table keeps only the rows that diverged
/// or hold a NaN or an Inf (the summary lines below it are always complete).
pub fn render_text(r: &DiffReport, only_diverged: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "A: {} ({}, {}, {})",
        r.a.dir, r.a.device, r.a.precision, r.a.forward_options
    );
    let _ = writeln!(
        s,
        "B: {} ({}, {}, {})",
        r.b.dir, r.b.device, r.b.precision, r.b.forward_options
    );
    let _ = writeln!(
        s,
        "tokens: {}   threshold: cosine >= {}   near-tie margin: {:e}",
        r.tokens.len(),
        r.options.threshold,
        r.options.tie_margin
    );
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:>5}  {:<26} {:>7} {:>9} {:>12} {:>10} {:>11} {:>11}",
        "layer", "stage", "tensors", "diverged", "min cosine", "1-cos", "max |a-b|", "NaN/Inf A|B"
    );
    let shown = r.rows.iter().filter(|row| {
        !only_diverged || row.diverged > 0 || row.nan_a + row.nan_b + row.inf_a + row.inf_b > 0
    });
    for row in shown {
        let layer = row.layer.map_or_else(|| "-".to_string(), |l| l.to_string());
        let (cos, one_minus) = match row.min_cosine {
            Some(c) => (format!("{c:.8}"), format!("{:.2e}", (1.0 - c).max(0.0))),
            None => ("-".to_string(), "-".to_string()),
        };
        let flag = if row.diverged > 0 {
            "  <-- diverged"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "{:>5}  {:<26} {:>7} {:>9} {:>12} {:>10} {:>11.3e} {:>5}|{:<5}{flag}",
            layer,
            row.name(),
            row.tensors,
            row.diverged,
            cos,
            one_minus,
            row.max_abs_diff,
            format!("{}/{}", row.nan_a, row.inf_a),
            format!("{}/{}", row.nan_b, row.inf_b),
        );
    }
    let disagreements: Vec<&RouterCheck> = r.router.iter().filter(|c| !c.agree).collect();
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "router: {} (layer, position) pairs checked, {} id-set disagreements",
        r.router.len(),
        disagreements.len()
    );
    for c in disagreements {
        let _ = writeln!(
            s,
            "  layer {} pos {}: A {:?} vs B {:?}, margin A {} B {}{}",
            c.layer,
            c.pos,
            c.ids_a,
            c.ids_b,
            fmt_opt(c.margin_a),
            fmt_opt(c.margin_b),
            if c.near_tie {
                " (near-tie)"
            } else {
                " (NOT a near-tie)"
            }
        );
    }
    if !r.only_in_a.is_empty() || !r.only_in_b.is_empty() {
        let _ = writeln!(
            s,
            "only in A: {} tensors, only in B: {} tensors",
            r.only_in_a.len(),
            r.only_in_b.len()
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "compared {} tensors, {} diverged",
        r.compared, r.diverged
    );
    match &r.first_divergence {
        Some(d) => {
            let _ = writeln!(
                s,
                "FIRST DIVERGENCE: {} — {}",
                d.location.description, d.reason
            );
            let _ = writeln!(s, "  file: {}", d.location.file);
            if let Some(n) = &d.note {
                let _ = writeln!(s, "  note: {n}");
            }
        }
        None => {
            let _ = writeln!(s, "no divergence");
        }
    }
    let _ = writeln!(
        s,
        "first NaN: A {}; B {}",
        fmt_loc_count(&r.first_nan_a),
        fmt_loc_count(&r.first_nan_b)
    );
    let _ = writeln!(
        s,
        "first Inf: A {}; B {}",
        fmt_loc_count(&r.first_inf_a),
        fmt_loc_count(&r.first_inf_b)
    );
    s
}

/// A plot of 1 - cosine (log scale) per layer, one line per per-layer stage, as standalone SVG.
pub fn render_svg(r: &DiffReport) -> String {
    const W: f64 = 960.0;
    const H: f64 = 540.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 230.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 50.0;
    // 1 - cosine is drawn from 1e-12 (identical, or as good as) to 1 (orthogonal).
    const FLOOR: f64 = -12.0;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let layers: Vec<usize> = r.rows.iter().filter_map(|row| row.layer).collect();
    let max_layer = layers.iter().copied().max().unwrap_or(0);
    let x = |l: usize| {
        LEFT + if max_layer == 0 {
            plot_w / 2.0
        } else {
            plot_w * l as f64 / max_layer as f64
        }
    };
    let y = |one_minus_cos: f64| {
        let v = if one_minus_cos > 0.0 {
            one_minus_cos.log10().clamp(FLOOR, 0.0)
        } else {
            FLOOR
        };
        TOP + plot_h * (v / FLOOR)
    };
    let palette = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
        "#e6550d", "#31a354", "#756bb1", "#636363",
    ];

    // One series per (stage, part) of the layer stages, in forward order; the value per layer is
    // the worst (lowest) cosine over positions and experts.
    let mut series: Vec<(String, usize, BTreeMap<usize, f64>)> = Vec::new();
    for row in r.rows.iter().filter(|row| row.layer.is_some()) {
        let (Some(l), Some(c)) = (row.layer, row.min_cosine) else {
            continue;
        };
        let name = row.name();
        let order = row_order(row);
        let idx = match series.iter().position(|s| s.0 == name) {
            Some(i) => i,
            None => {
                series.push((name, order.2 * 8 + order.3, BTreeMap::new()));
                series.len() - 1
            }
        };
        series[idx].2.insert(l, 1.0 - c);
    }
    series.sort_by_key(|s| s.1);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let name = |dir: &str| {
        Path::new(dir)
            .file_name()
            .map_or_else(|| dir.to_string(), |n| n.to_string_lossy().into_owned())
    };
    let title = format!(
        "trace-diff: 1 - cosine per layer (A: {} on {}, B: {} on {})",
        name(&r.a.dir),
        r.a.device,
        name(&r.b.dir),
        r.b.device
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15">{}</text>"#,
        xml_escape(&title)
    );
    for e in (FLOOR as i32)..=0 {
        let yy = y(10f64.powi(e));
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">1e{e}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    let step = (max_layer / 12).max(1);
    for l in (0..=max_layer).step_by(step) {
        let xx = x(l);
        let _ = writeln!(
            s,
            r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{l}</text>"#,
            TOP + plot_h + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">layer</text>"#,
        LEFT + plot_w / 2.0,
        H - 8.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(16,{:.1}) rotate(-90)" text-anchor="middle">1 - cosine (worst over positions)</text>"#,
        TOP + plot_h / 2.0
    );
    let ty = y(1.0 - r.options.threshold);
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#d62728" stroke-dasharray="6,4"/><text x="{:.1}" y="{:.1}" fill="#d62728" text-anchor="end">threshold</text>"##,
        LEFT + plot_w,
        LEFT + plot_w - 4.0,
        ty - 4.0
    );
    if let Some(l) = r.first_divergence.as_ref().and_then(|d| d.location.layer) {
        let xx = x(l);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="#000" stroke-dasharray="2,3"/><text x="{:.1}" y="{:.1}">first divergence</text>"##,
            TOP + plot_h,
            xx + 4.0,
            TOP + 12.0
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>"##
    );
    for (i, (name, _, points)) in series.iter().enumerate() {
        let color = palette[i % palette.len()];
        let pts: Vec<String> = points
            .iter()
            .map(|(&l, &v)| format!("{:.1},{:.1}", x(l), y(v)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"><title>{}</title></polyline>"#,
            pts.join(" "),
            xml_escape(name)
        );
        for (&l, &v) in points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.2" fill="{color}"><title>{} layer {l}: 1-cos {v:.3e}</title></circle>"#,
                x(l),
                y(v),
                xml_escape(name)
            );
        }
        let ly = TOP + 6.0 + 15.0 * i as f64;
        let lx = LEFT + plot_w + 14.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            xml_escape(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracing::plan::{PlanDims, TracePlan};
    use crate::tracing::sink::{ModelInfo, RunInfo, TraceWriter};
    use crate::tracing::stage::Phase;

    const DIMS: PlanDims = PlanDims {
        n_layer: 3,
        n_expert: 4,
        n_tokens: 2,
    };

    /// Writes a synthetic trace: every layer stage is a deterministic vector; `corrupt` changes
    /// one tensor (layer, stage) into something else, and everything after it in that layer and
    /// all later layers, like a real bug propagates.
    fn write_trace(dir: &Path, corrupt: Option<(usize, Stage, f32)>, ids: [i32; 2], margin: f32) {
        let mut w = TraceWriter::create(dir, TracePlan::everything(DIMS)).unwrap();
        let base = |seed: usize| -> Vec<f32> {
            (0..8)
                .map(|i| ((seed * 31 + i * 7) % 13) as f32 - 6.0)
                .collect()
        };
        for pos in 0..DIMS.n_tokens {
            w.save(
                TensorKey::new(Stage::Embed, None, pos),
                &[8],
                NpyData::F32(base(pos)),
            )
            .unwrap();
            for layer in 0..DIMS.n_layer {
                for (si, stage) in Stage::ALL.iter().enumerate() {
                    if stage.phase() != Phase::Layer
                        || stage.per_expert()
                        || *stage == Stage::MoeRouter
                        || *stage == Stage::Rope
                    {
                        continue;
                    }
                    let mut v = base(layer * 100 + si * 3 + pos);
                    if let Some((cl, cs, val)) = corrupt {
                        if (layer, *stage) >= (cl, cs) {
                            v[0] = val;
                            v[1] += 50.0;
                        }
                    }
                    w.save(
                        TensorKey::new(*stage, Some(layer), pos),
                        &[8],
                        NpyData::F32(v),
                    )
                    .unwrap();
                }
                let k = TensorKey::new(Stage::MoeRouter, Some(layer), pos);
                w.save(k.clone().part("topk_ids"), &[2], NpyData::I32(ids.to_vec()))
                    .unwrap();
                // A NaN margin stands for a forward that does not report one (the CUDA one).
                if !margin.is_nan() {
                    w.save(k.clone().part("margin"), &[1], NpyData::F32(vec![margin]))
                        .unwrap();
                }
                for e in ids {
                    let ke =
                        TensorKey::new(Stage::MoeExpertOut, Some(layer), pos).expert(e as usize);
                    w.save(ke, &[8], NpyData::F32(base(e as usize))).unwrap();
                }
            }
        }
        w.finish(RunInfo {
            model: ModelInfo {
                path: "m".into(),
                header_sha256: "ab".into(),
                header_bytes: 1,
                n_layer: 3,
                n_expert: 4,
                n_expert_used: 2,
            },
            device: "cpu".into(),
            precision: "f32".into(),
            forward_options: "test".into(),
            tokens: vec![5, 6],
        })
        .unwrap();
    }

    #[test]
    fn identical_traces_do_not_diverge() {
        let t = tempfile::tempdir().unwrap();
        write_trace(&t.path().join("a"), None, [1, 2], 0.1);
        write_trace(&t.path().join("b"), None, [1, 2], 0.1);
        let r = diff_dirs(
            &t.path().join("a"),
            &t.path().join("b"),
            DiffOptions::default(),
        )
        .unwrap();
        assert!(r.first_divergence.is_none());
        assert_eq!(r.diverged, 0);
        assert!(r.tensors.iter().all(|t| t.identical));
        assert!(render_text(&r, false).contains("no divergence"));
    }

    #[test]
    fn names_the_first_corrupted_stage() {
        let t = tempfile::tempdir().unwrap();
        write_trace(&t.path().join("a"), None, [1, 2], 0.1);
        write_trace(
            &t.path().join("b"),
            Some((1, Stage::FfnNorm, 100.0)),
            [1, 2],
            0.1,
        );
        let r = diff_dirs(
            &t.path().join("a"),
            &t.path().join("b"),
            DiffOptions::default(),
        )
        .unwrap();
        let d = r.first_divergence.as_ref().unwrap();
        assert_eq!(
            (d.location.layer, d.location.stage.as_str(), d.location.pos),
            (Some(1), "ffn_norm", 0)
        );
        assert!(r.first_nan_b.is_none());
        let svg = render_svg(&r);
        assert!(
            svg.starts_with("<svg")
                && svg.contains("ffn_norm")
                && svg.trim_end().ends_with("</svg>")
        );
    }

    #[test]
    fn finds_the_first_nan() {
        let t = tempfile::tempdir().unwrap();
        write_trace(&t.path().join("a"), None, [1, 2], 0.1);
        write_trace(
            &t.path().join("b"),
            Some((2, Stage::Q, f32::NAN)),
            [1, 2],
            0.1,
        );
        let r = diff_dirs(
            &t.path().join("a"),
            &t.path().join("b"),
            DiffOptions::default(),
        )
        .unwrap();
        let n = r.first_nan_b.as_ref().unwrap();
        assert_eq!(
            (n.location.layer, n.location.stage.as_str()),
            (Some(2), "q")
        );
        assert!(r.first_nan_a.is_none());
        assert_eq!(r.first_divergence.as_ref().unwrap().location.stage, "q");
    }

    #[test]
    fn router_disagreement_is_a_divergence_unless_near_tie() {
        let t = tempfile::tempdir().unwrap();
        write_trace(&t.path().join("a"), None, [1, 2], 0.1);
        write_trace(&t.path().join("b"), None, [1, 3], 0.1);
        let r = diff_dirs(
            &t.path().join("a"),
            &t.path().join("b"),
            DiffOptions::default(),
        )
        .unwrap();
        let d = r.first_divergence.as_ref().unwrap();
        assert_eq!(
            (d.location.layer, d.location.part.as_deref()),
            (Some(0), Some("topk_ids"))
        );
        assert_eq!(r.only_in_a.len(), 6); // expert 2 in 3 layers x 2 positions
                                          // the same disagreement at a near-tie is reported but is no divergence
        let t2 = tempfile::tempdir().unwrap();
        write_trace(&t2.path().join("a"), None, [1, 2], 1e-5);
        write_trace(&t2.path().join("b"), None, [2, 3], 2e-5);
        let r = diff_dirs(
            &t2.path().join("a"),
            &t2.path().join("b"),
            DiffOptions::default(),
        )
        .unwrap();
        assert!(r.first_divergence.is_none(), "{:?}", r.first_divergence);
        assert!(r.router.iter().all(|c| !c.agree && c.near_tie));
    }

    #[test]
    fn one_sided_margin_still_classifies_near_ties() {
        let t = tempfile::tempdir().unwrap();
        write_trace(&t.path().join("a"), None, [1, 2], 1e-5);
        write_trace(&t.path().join("b"), None, [2, 3], f32::NAN);
        let r = diff_dirs(
            &t.path().join("a"),
            &t.path().join("b"),
            DiffOptions::default(),
        )
        .unwrap();
        assert!(r
            .router
            .iter()
            .all(|c| !c.agree && c.near_tie && c.margin_b.is_none()));
        assert!(r.first_divergence.is_none(), "{:?}", r.first_divergence);
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("A only [moe_router.margin]")),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn different_tokens_are_refused() {
        let t = tempfile::tempdir().unwrap();
        write_trace(&t.path().join("a"), None, [1, 2], 0.1);
        write_trace(&t.path().join("b"), None, [1, 2], 0.1);
        let p = t.path().join("b").join("manifest.json");
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace("\"tokens\": [\n    5,", "\"tokens\": [\n    7,");
        std::fs::write(&p, text).unwrap();
        let e = diff_dirs(
            &t.path().join("a"),
            &t.path().join("b"),
            DiffOptions::default(),
        );
        assert!(matches!(e, Err(TraceError::Invalid(m)) if m.contains("different token ids")));
    }

    #[test]
    fn margin_from_logits_matches_a_hand_computation() {
        // softmax([0, ln 2, ln 3]) = [1/6, 2/6, 3/6]; k = 1: 3/6 - 2/6.
        let m = margin_from_logits(&[0.0, 2f64.ln(), 3f64.ln()], 1).unwrap();
        assert!((m - 1.0 / 6.0).abs() < 1e-12);
    }
}
