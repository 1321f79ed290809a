//! placeholder

pub mod generate;
pub mod gguf;
pub mod model;
pub mod quant;
pub mod sampling;
pub mod synth;
pub mod tokenizer;
pub mod tracing;
#[cfg(feature = "cuda")]
pub mod cuda;
