//! placeholder

pub mod tracing;
