//! Per-stage tracing of the forward, and comparison of two traces.
//!
//! - [`stage`]: the named stages, in forward order.
//! - [`plan`]: the save-tensor plan spec (`moe_router@layers=0..4@pos=last`) and [`TracePlan`].
//! - [`npy`]: a small NPY v1.0 reader/writer.
//! - [`sink`]: the trace directory (`.npy` files + `manifest.json`).
//! - [`hook`]: [`TraceHook`], what the forward calls, and the writer behind it.
//! - `gpu` (feature `cuda`): the CUDA forward's layer observations as hook calls.
//! - [`diff`]: stage-by-stage comparison of two trace directories; first divergence, first NaN.
//!
//! The forward itself decides where the stages are; it asks a [`TracePlan`] whether a tensor is
//! wanted before copying it, so a forward without a sink does no tracing work at all.

pub mod diff;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod hook;
pub mod npy;
pub mod plan;
pub mod sink;
pub mod stage;

pub use hook::{emit_rows, HookedWriter, TraceHook};
pub use plan::{PlanDims, PlanSpec, SpecError, TracePlan};
pub use sink::{Manifest, ModelInfo, RunInfo, TensorKey, TraceDir, TraceError, TraceWriter};
pub use stage::{Phase, Stage};
