//! Tracing the CUDA forward (feature `cuda`).
//!
//! The CUDA forward does not call [`TraceHook`] inside its layers yet. What it offers is a
//! per-layer observation callback of its production prefill (`GpuModel::prefill`), which copies
//! back each layer's output and the router's choice. This adapter turns those observations into
//! hook calls, so that a GPU trace holds [`GPU_TRACED_STAGES`] and can be diffed against a CPU
//! trace: enough to find the first bad layer (step 2 of the bisection in docs/tracing.md). The
//! sub-stages of that layer need the hook inside the CUDA layer.

use crate::cuda::{CudaError, GpuConfig, GpuModel, HostModel, HostTensor, LayerObservation};
use crate::model::{GgufFile, Model, TensorSource};

use super::hook::{emit_rows, TraceHook};
use super::sink::TensorKey;
use super::stage::Stage;

/// What a GPU trace holds.
pub const GPU_TRACED_STAGES: &str =
    "layer_out, moe_router.topk_ids, moe_router.topk_weights, logits";

/// The GGUF file's tensors and the model's configuration, as the CUDA backend loads them.
pub fn host_model<'f>(file: &'f GgufFile, model: &Model<'_>) -> HostModel<'f> {
    let c = &model.config;
    let config = GpuConfig {
        n_layer: c.n_layer,
        n_embd: c.hidden,
        n_head: c.n_head,
        n_head_kv: c.n_head_kv,
        head_dim: c.head_dim,
        n_expert: c.n_expert,
        n_expert_used: c.n_expert_used,
        expert_ff: c.ffn_dim,
        vocab: c.vocab,
        rope_base: c.rope_base,
        rms_eps: c.rms_eps,
    };
    let src = file;
    let tensors = file
        .tensors
        .iter()
        .filter_map(|ti| {
            src.tensor(&ti.name).map(|t| HostTensor {
                name: ti.name.clone(),
                ggml_type: t.qtype.ggml_id(),
                dims: t.dims.to_vec(),
                data: t.data,
            })
        })
        .collect();
    HostModel { config, tensors }
}

/// Runs the CUDA prefill over `tokens` from position 0 (the context is reset first), hands the
/// observed stages to `hook`, and returns the logits of every position.
pub fn traced_prefill(
    gpu: &mut GpuModel,
    tokens: &[u32],
    mut hook: Option<&mut dyn TraceHook>,
) -> Result<Vec<f32>, CudaError> {
    gpu.reset()?;
    let n = tokens.len().max(1);
    let traced = hook.is_some();
    let mut observe = |o: LayerObservation| {
        let Some(h) = hook.as_deref_mut() else { return };
        let hid = o.hidden.len() / n;
        let k = o.expert_ids.len() / n;
        for t in 0..tokens.len() {
            let (l, pos) = (Some(o.layer), o.pos0 + t);
            if h.wants(Stage::MoeRouter, l, pos) {
                let key = TensorKey::new(Stage::MoeRouter, l, pos);
                h.record_i32(
                    key.clone().part("topk_ids"),
                    &[k],
                    &o.expert_ids[t * k..(t + 1) * k],
                );
                h.record_f32(
                    key.part("topk_weights"),
                    &[k],
                    &o.expert_weights[t * k..(t + 1) * k],
                );
            }
            if h.wants(Stage::LayerOut, l, pos) {
                let key = TensorKey::new(Stage::LayerOut, l, pos);
                h.record_f32(key, &[hid], &o.hidden[t * hid..(t + 1) * hid]);
            }
        }
    };
    // Without a hook, pass no callback: the forward then skips the per-layer copies entirely.
    let logits = if traced {
        gpu.prefill(tokens, true, Some(&mut observe))?
    } else {
        gpu.prefill(tokens, true, None)?
    };
    let vocab = logits.len() / n;
    emit_rows(&mut hook, Stage::Logits, None, None, 0, &[vocab], &logits);
    Ok(logits)
}
