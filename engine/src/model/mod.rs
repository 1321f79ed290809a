//! The Qwen3-MoE model on the CPU: configuration, weights, forward, float64 reference.

pub mod ops;
