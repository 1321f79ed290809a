//! Falsifiers of contracts/qwen3-moe-forward-gpu-v1.yaml (the CUDA forward). Bodies live in
//! `gpu_support` as plain functions; each test here only binds one to its contract id.
//!
//! On a GPU machine: `cargo test --release --features cuda -p falsifiers --test gpu_forward --
//! --include-ignored --test-threads=1` (scripts/device-run.sh runs each test in its own process).
#![cfg(feature = "cuda")]

mod gpu_support;

use contract_macros::falsifier;
use pv_evidence::{Ctx, FalsifierResult};

#[falsifier("FALSIFY-QW3-GPU-PRELOAD-001")]
fn gpu_preload_per_tensor_qtypes(ctx: &mut Ctx) -> FalsifierResult {
    gpu_support::preload(ctx)
}

#[falsifier("FALSIFY-QW3-GPU-FINITE-001")]
fn gpu_logits_finite(ctx: &mut Ctx) -> FalsifierResult {
    gpu_support::finite(ctx)
}

#[falsifier("FALSIFY-QW3-GPU-LAYER-COS-001")]
fn gpu_layer_cosine_tiny(ctx: &mut Ctx) -> FalsifierResult {
    gpu_support::layer_cos_tiny(ctx)
}

#[falsifier("FALSIFY-QW3-GPU-LAYER-COS-002")]
fn gpu_layer_cosine_30b_shape(ctx: &mut Ctx) -> FalsifierResult {
    gpu_support::layer_cos_big(ctx)
}

#[falsifier("FALSIFY-QW3-GPU-ROUTER-001")]
fn gpu_router_topk_agreement(ctx: &mut Ctx) -> FalsifierResult {
    gpu_support::router(ctx)
}

#[falsifier("FALSIFY-QW3-GPU-LOGITS-001")]
fn gpu_logits_parity(ctx: &mut Ctx) -> FalsifierResult {
    gpu_support::logits(ctx)
}

#[falsifier("FALSIFY-QW3-GPU-DECODE-TPS-002")]
fn gpu_decode_vs_llama_cpp(ctx: &mut Ctx) -> FalsifierResult {
    gpu_support::decode_tps(ctx)
}

#[falsifier("FALSIFY-QW3-GPU-PREFILL-TPS-002")]
fn gpu_prefill_vs_llama_cpp(ctx: &mut Ctx) -> FalsifierResult {
    gpu_support::prefill_tps(ctx)
}

#[falsifier("FALSIFY-QW3-GPU-VRAM-001")]
fn gpu_vram_budget(ctx: &mut Ctx) -> FalsifierResult {
    gpu_support::vram(ctx)
}

#[falsifier("FALSIFY-QW3-GPU-ERRORS-001")]
fn gpu_clear_errors(ctx: &mut Ctx) -> FalsifierResult {
    gpu_support::errors(ctx)
}

/// Not a falsifier: prints what the device is (name, SMs, memory, copy bandwidth) for the log.
#[test]
#[ignore = "needs a CUDA device"]
fn gpu_describe_device() {
    match gpu_support::describe_device() {
        Ok(s) => println!("DEVICE: {s}"),
        Err(e) => panic!("{e}"),
    }
}
