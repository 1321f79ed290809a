//! placeholder

pub mod tracing;
#[cfg(feature = "cuda")]
pub mod cuda;
