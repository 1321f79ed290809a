//! Opening the GPU: library checks, context, stream, NVRTC compilation of `kernels.cu`.
//!
//! cudarc is built with `dynamic-loading`: libcuda and libnvrtc are opened on first use, and a
//! missing library or symbol makes cudarc PANIC. So before the first cudarc call we ask
//! cudarc's own loaders whether the libraries are there, and turn "no" into an error.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{
    sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};

use super::CudaError;

/// The kernel source, compiled at start-up (see docs/gpu.md for why NVRTC rather than nvcc).
/// kernels.cu, then attn_prefill.cu (prefill attention), decode.cu (two-rows-per-warp decode
/// mat-vecs), decode_q16.cu (the decode expert products on 16-bit integer activations) and
/// mmq.cu (the integer-operand prefill products, which also use decode_q16.cu's Q16 rounding),
/// which reuse kernels.cu's types, qtype ids and helpers (PV_KERNELS_PRELUDE). All five also run
/// on the CPU under the SIMT emulator (crate kernel-emu).
pub const KERNELS_CU: &str = concat!(
    include_str!("kernels.cu"),
    "\n#define PV_KERNELS_PRELUDE\n",
    include_str!("attn_prefill.cu"),
    include_str!("decode.cu"),
    include_str!("decode_q16.cu"),
    include_str!("mmq.cu")
);

/// What the device reported about itself.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub sm_count: i32,
    pub l2_bytes: i32,
    pub total_mem_bytes: usize,
    pub driver_version: i32,
    pub nvrtc_version: (i32, i32),
}

/// An open GPU: context, one stream (everything the forward does is ordered on it), and the
/// compiled kernels.
pub struct GpuDevice {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    _module: Arc<CudaModule>,
    funcs: HashMap<String, CudaFunction>,
    pub info: DeviceInfo,
}

pub(crate) fn drv(what: &str) -> impl Fn(cudarc::driver::DriverError) -> CudaError + '_ {
    move |source| {
        if source.0 == sys::cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY {
            CudaError::OutOfMemory {
                what: what.to_string(),
                bytes: 0,
                free: 0,
                total: 0,
            }
        } else {
            CudaError::Driver {
                what: what.to_string(),
                source,
            }
        }
    }
}

/// Every kernel entry point in kernels.cu, loaded up front so that a missing one is a start-up
/// error rather than a failure in the middle of a forward.
fn kernel_names() -> Vec<String> {
    let mut v: Vec<String> = [
        "embed",
        "rmsnorm",
        "qk_norm_rope_store",
        "attn_partial",
        "attn_combine",
        "router_topk",
        "group_pairs",
        "group_pairs_w",
        "swiglu",
        "moe_combine",
        "argmax",
        "advance_pos",
        "fill_u32",
        "split_act_q16",
        "attn_prefill",
        "attn_decode",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for q in ["f32", "f16", "q8_0", "q4_k", "q5_k", "q6_k"] {
        for k in [
            "matvec",
            "matvec3",
            "router_decode",
            "moe_gate_up",
            "moe_down_decode",
            "matmat",
            "matmat_tc",
            "moe_gate_up2",
            "matvec3_2",
            "matvec4",
        ] {
            v.push(format!("{k}_{q}"));
        }
    }
    for q in ["q8_0", "q4_k", "q5_k", "q6_k"] {
        v.push(format!("matmat_qi_{q}"));
    }
    for q in Q16_QTYPES {
        v.push(format!("moe_gate_up2_q16_{q}"));
        v.push(format!("moe_down_q16_{q}"));
        v.push(format!("matvec_q16_{q}"));
    }
    for p in MATVEC3N_PAIRS {
        v.push(format!("matvec3n_{p}"));
    }
    for p in MATVEC3N_Q16_PAIRS {
        v.push(format!("matvec3n_q16_{p}"));
    }
    v
}

/// The weight qtypes decode_q16.cu instantiates its expert kernels for.
pub(crate) const Q16_QTYPES: [&str; 3] = ["q4_k", "q5_k", "q6_k"];

/// The matvec3n pairs decode_q16.cu also instantiates on Q16 activations (both qtypes Q16 ones).
pub(crate) const MATVEC3N_Q16_PAIRS: [&str; 6] = [
    "q4_k_q4_k",
    "q4_k_q6_k",
    "q4_k_q5_k",
    "q5_k_q5_k",
    "q5_k_q6_k",
    "q6_k_q6_k",
];

/// The (q/k qtype, v qtype) pairs decode.cu instantiates matvec3n for (the synthetic files'
/// Q4_K_M and mixed presets); other pairs run the unfused RMSNorm + q/k/v path.
pub(crate) const MATVEC3N_PAIRS: [&str; 13] = [
    "f32_f32",
    "f16_f16",
    "q8_0_q8_0",
    "q4_k_q4_k",
    "q5_k_q5_k",
    "q6_k_q6_k",
    "q4_k_q6_k",
    "q4_k_q5_k",
    "q5_k_q6_k",
    "q6_k_q8_0",
    "q8_0_f16",
    "f16_f32",
    "f32_q4_k",
];

/// Check that the CUDA driver and NVRTC libraries can be loaded, without panicking.
pub fn check_libraries() -> Result<(), CudaError> {
    // SAFETY: these only try to dlopen the library by cudarc's candidate names.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(CudaError::NoDriver);
    }
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(CudaError::NoNvrtc);
    }
    Ok(())
}

impl GpuDevice {
    /// Open device `ordinal` and compile the kernels.
    pub fn open(ordinal: usize) -> Result<Self, CudaError> {
        check_libraries()?;
        cudarc::driver::result::init().map_err(drv("cuInit"))?;
        let count = CudaContext::device_count().map_err(drv("cuDeviceGetCount"))?;
        if count <= 0 || ordinal >= count as usize {
            return Err(CudaError::NoDevice {
                ordinal,
                count: count.max(0) as usize,
            });
        }
        let ctx = CudaContext::new(ordinal).map_err(drv("creating the CUDA context"))?;
        // One stream orders everything; cudarc's per-buffer event tracking would only add
        // driver calls (and cannot be captured into a graph), so it is turned off.
        // SAFETY: all buffers are created afterwards and used on `stream` alone.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(drv("creating a stream"))?;

        let (major, minor) = ctx
            .compute_capability()
            .map_err(drv("reading the compute capability"))?;
        let attr = |a| ctx.attribute(a).map_err(drv("reading a device attribute"));
        let sm_count = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
        let l2_bytes = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?;
        let mut driver_version = 0i32;
        // SAFETY: plain out-parameter call after cuInit.
        unsafe { sys::cuDriverGetVersion(&mut driver_version) }
            .result()
            .map_err(drv("cuDriverGetVersion"))?;
        let mut nvrtc_version = (0i32, 0i32);
        // SAFETY: plain out-parameter call; the library was found above.
        unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut nvrtc_version.0, &mut nvrtc_version.1) }
            .result()
            .map_err(|e| CudaError::Compile(format!("nvrtcVersion: {e:?}")))?;
        let info = DeviceInfo {
            ordinal,
            name: ctx.name().map_err(drv("reading the device name"))?,
            compute_capability: (major, minor),
            sm_count,
            l2_bytes,
            total_mem_bytes: ctx.total_mem().map_err(drv("reading the memory size"))?,
            driver_version,
            nvrtc_version,
        };

        // Compile for the exact chip we run on (sm_90 on Hopper); NVRTC emits PTX that the driver
        // JIT-compiles once at module load.
        let arch: &'static str = Box::leak(format!("compute_{major}{minor}").into_boxed_str());
        let opts = CompileOptions {
            arch: Some(arch),
            options: vec!["--std=c++17".into()],
            ..Default::default()
        };
        let ptx = compile_ptx_with_opts(KERNELS_CU, opts).map_err(|e| match e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                CudaError::Compile(log.to_string_lossy().into_owned())
            }
            other => CudaError::Compile(format!("{other:?}")),
        })?;
        let module = ctx
            .load_module(ptx)
            .map_err(drv("loading the compiled kernels"))?;
        let mut funcs = HashMap::new();
        for name in kernel_names() {
            let f = module
                .load_function(&name)
                .map_err(drv("looking up a kernel"))?;
            if name == "attn_prefill" {
                f.set_attribute(
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    super::model::AP_SMEM_BYTES as i32,
                )
                .map_err(drv(
                    "raising the shared-memory limit of the prefill attention kernel",
                ))?;
            }
            if name.starts_with("matmat_qi_") {
                // 4 blocks of 35,328 bytes (the registers allow 4 for Q4_K) want more shared
                // memory than a small carveout gives: prefer all of it
                f.set_attribute(
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT,
                    100,
                )
                .map_err(drv(
                    "setting the shared-memory carveout of the int8 tensor-core kernels",
                ))?;
            }
            if name.starts_with("matmat_tc_") {
                // more than the default 48 KB of dynamic shared memory
                f.set_attribute(
                    sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    super::model::TC_SMEM_BYTES as i32,
                )
                .map_err(drv(
                    "raising the shared-memory limit of the tensor-core kernels",
                ))?;
            }
            funcs.insert(name, f);
        }
        Ok(Self {
            ctx,
            stream,
            _module: module,
            funcs,
            info,
        })
    }

    /// Launch `f` on the stream with `params` (one pointer per kernel argument, as the driver
    /// takes them). With `pdl` the launch carries the programmatic-stream-serialization
    /// attribute: the kernel may start before the previous one on the stream has finished, and
    /// must wait for it itself (`pdl_begin()` in kernels.cu) before touching what it wrote.
    ///
    /// # Safety
    /// `params` must match `f`'s signature, every device pointer among them must be live, and
    /// with `pdl` the kernel must wait (griddepcontrol.wait) before reading or writing any
    /// buffer that an earlier kernel of the stream writes or reads.
    pub(crate) unsafe fn launch_raw(
        &self,
        f: &CudaFunction,
        cfg: cudarc::driver::LaunchConfig,
        params: &mut [*mut std::ffi::c_void],
        pdl: bool,
    ) -> Result<(), cudarc::driver::DriverError> {
        self.ctx.bind_to_thread()?;
        // SAFETY: an all-zero launch attribute is a valid "ignore" value; the fields set below
        // are the attribute id and its one-int value.
        let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
        attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attr.value.programmaticStreamSerializationAllowed = 1;
        let lc = sys::CUlaunchConfig {
            gridDimX: cfg.grid_dim.0,
            gridDimY: cfg.grid_dim.1,
            gridDimZ: cfg.grid_dim.2,
            blockDimX: cfg.block_dim.0,
            blockDimY: cfg.block_dim.1,
            blockDimZ: cfg.block_dim.2,
            sharedMemBytes: cfg.shared_mem_bytes,
            hStream: self.stream.cu_stream(),
            attrs: &mut attr,
            numAttrs: u32::from(pdl),
        };
        // SAFETY: the caller's contract above; `lc` and `attr` outlive the call.
        unsafe {
            sys::cuLaunchKernelEx(
                &lc,
                f.cu_function(),
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        }
        .result()
    }

    pub(crate) fn func(&self, name: &str) -> Result<&CudaFunction, CudaError> {
        self.funcs
            .get(name)
            .ok_or_else(|| CudaError::Model(format!("no kernel named {name}")))
    }

    /// (free, total) device memory in bytes.
    pub fn mem_info(&self) -> Result<(usize, usize), CudaError> {
        self.ctx.mem_get_info().map_err(drv("cuMemGetInfo"))
    }

    /// Allocate `n` elements, turning out-of-memory into an error that says how much was asked
    /// for and how much was free.
    pub fn alloc<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        n: usize,
        what: &str,
    ) -> Result<CudaSlice<T>, CudaError> {
        let bytes = n * std::mem::size_of::<T>();
        match self.stream.alloc_zeros::<T>(n.max(1)) {
            Ok(s) => Ok(s),
            Err(e) if e.0 == sys::cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY => {
                let (free, total) = self.mem_info().unwrap_or((0, 0));
                Err(CudaError::OutOfMemory {
                    what: what.to_string(),
                    bytes,
                    free,
                    total,
                })
            }
            Err(e) => Err(CudaError::Driver {
                what: format!("cuMemAlloc for {what}"),
                source: e,
            }),
        }
    }

    /// Upload a host slice into a new device buffer.
    pub fn upload<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        src: &[T],
        what: &str,
    ) -> Result<CudaSlice<T>, CudaError> {
        let mut d = self.alloc::<T>(src.len(), what)?;
        self.stream
            .memcpy_htod(src, &mut d)
            .map_err(drv("copying to the device"))?;
        Ok(d)
    }

    pub fn download<T: cudarc::driver::DeviceRepr + Default + Clone>(
        &self,
        src: &CudaSlice<T>,
        n: usize,
    ) -> Result<Vec<T>, CudaError> {
        let mut out = vec![T::default(); n];
        self.stream
            .memcpy_dtoh(&src.slice(0..n), &mut out[..])
            .map_err(drv("copying from the device"))?;
        self.sync()?;
        Ok(out)
    }

    /// `n` elements of `src` from element `start`, copied back on the stream (so after every
    /// launch encoded before it) and synchronised. For the traced prefill's sub-stage copies,
    /// which read rows of this chunk out of buffers such as the KV cache.
    pub fn download_range<T: cudarc::driver::DeviceRepr + Default + Clone>(
        &self,
        src: &CudaSlice<T>,
        start: usize,
        n: usize,
    ) -> Result<Vec<T>, CudaError> {
        let mut out = vec![T::default(); n];
        self.stream
            .memcpy_dtoh(&src.slice(start..start + n), &mut out[..])
            .map_err(drv("copying from the device"))?;
        self.sync()?;
        Ok(out)
    }

    pub fn sync(&self) -> Result<(), CudaError> {
        self.stream
            .synchronize()
            .map_err(drv("synchronizing the stream"))
    }

    /// Measure device-to-device copy bandwidth with a `bytes`-sized buffer: returns GB/s counting
    /// bytes read plus bytes written (median of `reps` copies, timed with events).
    pub fn copy_bandwidth_gbs(&self, bytes: usize, reps: usize) -> Result<f64, CudaError> {
        let n = bytes / 4;
        let src = self.alloc::<u32>(n, "bandwidth source")?;
        let mut dst = self.alloc::<u32>(n, "bandwidth destination")?;
        let start = self
            .ctx
            .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(drv("event"))?;
        let stop = self
            .ctx
            .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(drv("event"))?;
        let mut times = Vec::new();
        for i in 0..reps + 2 {
            start.record(&self.stream).map_err(drv("event record"))?;
            self.stream
                .memcpy_dtod(&src, &mut dst)
                .map_err(drv("device copy"))?;
            stop.record(&self.stream).map_err(drv("event record"))?;
            stop.synchronize().map_err(drv("event sync"))?;
            let ms = start.elapsed_ms(&stop).map_err(drv("event time"))?;
            if i >= 2 {
                times.push(ms as f64);
            }
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let med = times[times.len() / 2];
        Ok(2.0 * (n * 4) as f64 / (med * 1e-3) / 1e9)
    }
}

/// Raw device address of a buffer (event tracking is off, so the guard does nothing).
pub(crate) fn dptr<T>(s: &CudaSlice<T>, stream: &CudaStream) -> u64 {
    let (p, _guard) = s.device_ptr(stream);
    p
}

/// Compile `kernels.cu` to PTX for `arch` (e.g. "compute_90") without a device: used by tests
/// on machines that have NVRTC but no GPU.
pub fn compile_kernels(arch: &'static str) -> Result<String, CudaError> {
    check_libraries_nvrtc_only()?;
    let opts = CompileOptions {
        arch: Some(arch),
        options: vec!["--std=c++17".into()],
        ..Default::default()
    };
    let ptx = compile_ptx_with_opts(KERNELS_CU, opts).map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { log, .. } => {
            CudaError::Compile(log.to_string_lossy().into_owned())
        }
        other => CudaError::Compile(format!("{other:?}")),
    })?;
    Ok(ptx.to_src())
}

fn check_libraries_nvrtc_only() -> Result<(), CudaError> {
    // SAFETY: only tries to dlopen the library.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(CudaError::NoNvrtc);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where NVRTC is installed (GPU machines, or a developer machine with the library on
    /// LD_LIBRARY_PATH), the kernel source must compile and define every entry point we load.
    #[test]
    fn kernels_compile_where_nvrtc_exists() {
        match compile_kernels("compute_90") {
            Err(CudaError::NoNvrtc) => eprintln!("NVRTC not installed here: compile check not run"),
            Err(e) => panic!("{e}"),
            Ok(ptx) => {
                // PV_GPU_PTX_OUT=<file>: keep the PTX (for `ptxas -v` register/spill reports)
                if let Ok(p) = std::env::var("PV_GPU_PTX_OUT") {
                    std::fs::write(p, &ptx).expect("writing the PTX");
                }
                for name in kernel_names() {
                    assert!(
                        ptx.contains(&format!(".entry {name}(")),
                        "kernel {name} missing from the PTX"
                    );
                }
            }
        }
    }
}
