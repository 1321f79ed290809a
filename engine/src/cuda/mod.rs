//! CUDA backend for the Qwen3-MoE forward (cargo feature `cuda`).
//!
//! - [`device::GpuDevice`]: opens the GPU (clear errors when the driver, NVRTC or the device is
//!   missing), compiles `kernels.cu` with NVRTC for the chip it runs on.
//! - [`model::GpuModel`]: uploads every tensor once, in its own qtype (checked per tensor),
//!   keeps the KV cache and all activations on the device, runs prefill as batched products and
//!   decode as a captured CUDA graph.
//! - [`reference`]: a float64 CPU forward over the same weights, the oracle for the parity
//!   falsifiers; [`synth`]: synthetic models (tiny, tiny-mixed, the Qwen3-30B-A3B shape) built in
//!   memory.
//!
//! The model is described by [`HostModel`]: a config and borrowed tensor bytes in GGUF layout, so
//! any loader (engine::gguf's memmap, or [`synth`]) can feed it without copies.
//! Contract: contracts/qwen3-moe-forward-gpu-v1.yaml. Notes: docs/gpu.md.

pub mod bench;
pub mod device;
pub mod model;
pub mod qtype;
pub mod reference;
pub mod synth;

pub use device::{DeviceInfo, GpuDevice};
pub use model::{GpuModel, LayerObservation};
pub use qtype::{GpuQType, UnsupportedQType};

/// Errors of the GPU backend. Every variant says what is missing or wrong in words a user can act
/// on; none of them is raised by a panic.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error(
        "the CUDA driver library (libcuda.so) could not be loaded: this machine has no NVIDIA \
         driver, or it is not on the loader path (LD_LIBRARY_PATH). Use --device cpu to run on \
         the CPU."
    )]
    NoDriver,
    #[error(
        "the NVRTC library (libnvrtc.so, CUDA 13) could not be loaded: the GPU kernels are \
         compiled at start-up and need it. Install the CUDA runtime compiler or add its lib \
         directory to LD_LIBRARY_PATH."
    )]
    NoNvrtc,
    #[error("no CUDA device with ordinal {ordinal}: the driver reports {count} device(s)")]
    NoDevice { ordinal: usize, count: usize },
    #[error(
        "out of device memory while allocating {bytes} bytes for {what} ({free} bytes free of \
         {total})"
    )]
    OutOfMemory {
        what: String,
        bytes: usize,
        free: usize,
        total: usize,
    },
    #[error("tensor `{tensor}` is stored as {qtype}, which has no GPU kernel (supported: F32, F16, Q8_0, Q4_K, Q5_K, Q6_K)")]
    UnsupportedQType {
        tensor: String,
        qtype: UnsupportedQType,
    },
    #[error("model not usable on the GPU: {0}")]
    Model(String),
    #[error("compiling the GPU kernels with NVRTC failed:\n{0}")]
    Compile(String),
    #[error("CUDA call failed while {what}: {source}")]
    Driver {
        what: String,
        source: cudarc::driver::DriverError,
    },
}

/// Hyper-parameters of a Qwen3-MoE model (the `qwen3moe.*` GGUF keys).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct GpuConfig {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_expert: usize,
    pub n_expert_used: usize,
    pub expert_ff: usize,
    pub vocab: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
}

/// One tensor as stored in a GGUF file: ggml type id, dims fastest first, raw bytes.
#[derive(Clone, Debug)]
pub struct HostTensor<'a> {
    pub name: String,
    pub ggml_type: u32,
    pub dims: Vec<u64>,
    pub data: &'a [u8],
}

/// A model as the GPU backend consumes it.
#[derive(Clone, Debug)]
pub struct HostModel<'a> {
    pub config: GpuConfig,
    pub tensors: Vec<HostTensor<'a>>,
}

impl<'a> HostModel<'a> {
    pub fn tensor(&self, name: &str) -> Option<&HostTensor<'a>> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Sum of the tensors' bytes (what the file holds for weights).
    pub fn tensor_bytes(&self) -> usize {
        self.tensors.iter().map(|t| t.data.len()).sum()
    }
}
