//! The interface between a forward and a trace: [`TraceHook`], and [`TraceWriter`]'s
//! implementation of it.
//!
//! A forward takes `Option<&mut dyn TraceHook>`. With `None` it does one `Option` test per stage
//! and nothing else. With a hook it asks [`TraceHook::wants`] before it copies anything out,
//! then hands over one tensor per position (and per expert for the per-expert stages). The hook
//! only reads what it is given: it cannot change the forward's buffers.

use super::npy::NpyData;
use super::sink::{TensorKey, TraceError, TraceWriter};
use super::stage::Stage;

/// What a forward calls at its named stages.
pub trait TraceHook {
    /// Whether `stage` at `layer` (None outside the layers) and position `pos` is wanted. For a
    /// per-expert stage: whether any expert of it is wanted there.
    fn wants(&self, stage: Stage, layer: Option<usize>, pos: usize) -> bool;

    /// Whether per-expert `stage` is wanted for `expert`.
    fn wants_expert(&self, stage: Stage, layer: usize, pos: usize, expert: usize) -> bool;

    /// Receives one f32 tensor (for one position). Called only for wanted keys.
    fn record_f32(&mut self, key: TensorKey, shape: &[usize], data: &[f32]);

    /// Receives one i32 tensor (the router's top-k ids).
    fn record_i32(&mut self, key: TensorKey, shape: &[usize], data: &[i32]);
}

/// Hands over `stage` for the positions `pos0 .. pos0 + n_rows` of a row-major batch: row `i` of
/// `rows` (each `row_shape.iter().product()` long) belongs to position `pos0 + i`.
/// Does nothing when there is no hook or nothing is wanted.
pub fn emit_rows(
    hook: &mut Option<&mut dyn TraceHook>,
    stage: Stage,
    part: Option<&str>,
    layer: Option<usize>,
    pos0: usize,
    row_shape: &[usize],
    rows: &[f32],
) {
    let Some(h) = hook.as_deref_mut() else { return };
    let width: usize = row_shape.iter().product();
    if width == 0 {
        return;
    }
    for (i, row) in rows.chunks_exact(width).enumerate() {
        let pos = pos0 + i;
        if h.wants(stage, layer, pos) {
            let mut key = TensorKey::new(stage, layer, pos);
            if let Some(p) = part {
                key = key.part(p);
            }
            h.record_f32(key, row_shape, row);
        }
    }
}

/// A [`TraceWriter`] used as a hook keeps the first error (a full disk, say) and reports it from
/// [`HookedWriter::finish`], because the forward cannot handle I/O errors in the middle of a
/// layer.
pub struct HookedWriter {
    writer: TraceWriter,
    error: Option<TraceError>,
}

impl HookedWriter {
    pub fn new(writer: TraceWriter) -> HookedWriter {
        HookedWriter {
            writer,
            error: None,
        }
    }

    /// The writer, or the first error met while recording.
    pub fn into_writer(self) -> Result<TraceWriter, TraceError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.writer),
        }
    }

    fn record(&mut self, key: TensorKey, shape: &[usize], data: NpyData) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.writer.save(key, shape, data) {
            self.error = Some(e);
        }
    }
}

impl TraceHook for HookedWriter {
    fn wants(&self, stage: Stage, layer: Option<usize>, pos: usize) -> bool {
        self.error.is_none() && self.writer.plan().wants(stage, layer, pos)
    }

    fn wants_expert(&self, stage: Stage, layer: usize, pos: usize, expert: usize) -> bool {
        self.error.is_none() && self.writer.plan().wants_expert(stage, layer, pos, expert)
    }

    fn record_f32(&mut self, key: TensorKey, shape: &[usize], data: &[f32]) {
        self.record(key, shape, NpyData::F32(data.to_vec()));
    }

    fn record_i32(&mut self, key: TensorKey, shape: &[usize], data: &[i32]) {
        self.record(key, shape, NpyData::I32(data.to_vec()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracing::plan::{PlanDims, TracePlan};
    use crate::tracing::sink::TraceDir;

    #[test]
    fn emit_rows_hands_over_the_wanted_positions_only() {
        let dims = PlanDims {
            n_layer: 2,
            n_expert: 4,
            n_tokens: 3,
        };
        let tmp = tempfile::tempdir().unwrap();
        let plan = TracePlan::parse("attn_norm@layers=1@pos=last", dims).unwrap();
        let mut w = HookedWriter::new(TraceWriter::create(tmp.path(), plan).unwrap());
        let rows: Vec<f32> = (0..6).map(|i| i as f32).collect();
        {
            let mut hook: Option<&mut dyn TraceHook> = Some(&mut w);
            emit_rows(&mut hook, Stage::AttnNorm, None, Some(0), 0, &[2], &rows);
            emit_rows(&mut hook, Stage::AttnNorm, None, Some(1), 0, &[2], &rows);
        }
        let m = w
            .into_writer()
            .unwrap()
            .finish(crate::tracing::sink::RunInfo {
                model: crate::tracing::sink::ModelInfo {
                    path: "m".into(),
                    header_sha256: "0".into(),
                    header_bytes: 0,
                    n_layer: 2,
                    n_expert: 4,
                    n_expert_used: 2,
                },
                device: "cpu".into(),
                precision: "f32".into(),
                forward_options: String::new(),
                tokens: vec![1, 2, 3],
            })
            .unwrap();
        assert_eq!(m.tensors.len(), 1);
        assert_eq!(m.tensors[0].file, "L001.attn_norm.p002.npy");
        let t = TraceDir::open(tmp.path()).unwrap();
        assert_eq!(
            t.load(&m.tensors[0]).unwrap().data,
            NpyData::F32(vec![4.0, 5.0])
        );
    }
}
