//! A Qwen3-MoE inference engine for GGUF models.
//!
//! - [`gguf`]: memory-mapped GGUF reader (v2, v3) with checked offsets, and a streaming writer.
//! - [`quant`]: GGML block formats (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, Q8_K),
//!   reference dequantization, dot products and AVX2 fast paths checked against them.
//! - [`model`]: configuration from GGUF metadata, the CPU forward (KV cache, batched prefill,
//!   rayon) and the float64 reference forward used by falsifiers.
//! - [`tokenizer`], [`sampling`], [`generate`]: text in, text out.
//! - [`synth`]: synthetic models with random but sane weights, for tests and benchmarks.
//! - [`tracing`]: save-tensor plans, per-stage capture through the forward's hook, trace diffs.
//! - `cuda` (feature `cuda`): the GPU forward on cudarc, kernels compiled with NVRTC.
//!
//! The engine knows nothing about contracts; the `falsifiers` crate tests it against them.

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod generate;
pub mod gguf;
pub mod model;
pub mod quant;
pub mod sampling;
pub mod synth;
pub mod tokenizer;
pub mod tracing;
