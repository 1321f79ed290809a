//! Tracing the CUDA forward (feature `cuda`).
//!
//! The CUDA forward calls [`TraceHook`] itself, inside its layers (`GpuModel::prefill_traced`):
//! at every stage it materializes as a buffer, it copies that buffer back right after the launch
//! that writes it, on the forward's stream, when the hook wants it, and hands it over under the
//! CPU forward's keys, parts and row shapes, so that a GPU trace diffs against a CPU trace stage
//! by stage ([`GPU_TRACED`]). The stages that live only inside fused kernels are not traced:
//! `q_norm` and `k_norm` (qk_norm_rope_store normalises and rotates in one pass), `attn_out`
//! (the output projection adds into the residual stream; st.att, the attention before that
//! projection, is not the CPU's `attn_out`), `moe_ffn_out` (moe_combine adds the weighted expert
//! sum into the residual stream) and the router's `margin` (not computed on the GPU; trace-diff
//! derives it from the traced router logits). Chunks of one token run the decode kernels, which
//! fuse more: there only `moe_router` top-k and `layer_out` are handed over inside the layers.

use crate::cuda::{CudaError, GpuConfig, GpuModel, HostModel, HostTensor};
use crate::model::{GgufFile, Model, TensorSource};

use super::hook::TraceHook;

/// What a GPU trace holds (prefill chunks of two or more tokens), for messages.
pub const GPU_TRACED_STAGES: &str = "embed, attn_norm, q, k, v, rope (q, k), attn_residual, \
     ffn_norm, moe_router (logits, topk_ids, topk_weights), moe_expert_gate, moe_expert_up, \
     moe_expert_swiglu, moe_expert_out, layer_out, final_norm, logits";

/// The stages (`stage` or `stage.part`) a GPU trace holds, in forward order: those the CUDA
/// forward materializes as buffers (prefill chunks of two or more tokens).
pub const GPU_TRACED: &[&str] = &[
    "embed",
    "attn_norm",
    "q",
    "k",
    "v",
    "rope.q",
    "rope.k",
    "attn_residual",
    "ffn_norm",
    "moe_router.logits",
    "moe_router.topk_ids",
    "moe_router.topk_weights",
    "moe_expert_gate",
    "moe_expert_up",
    "moe_expert_swiglu",
    "moe_expert_out",
    "layer_out",
    "final_norm",
    "logits",
];

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

/// Runs the CUDA prefill over `tokens` from position 0 (the context is reset first), the CUDA
/// forward handing its stages to `hook` (see the module docs), and returns the logits of every
/// position. Without a hook this is the plain prefill: nothing is copied back but the logits.
pub fn traced_prefill(
    gpu: &mut GpuModel,
    tokens: &[u32],
    hook: Option<&mut dyn TraceHook>,
) -> Result<Vec<f32>, CudaError> {
    gpu.reset()?;
    gpu.prefill_traced(tokens, true, hook)
}
