//! The model on the GPU: upload (per-tensor qtype checks), device state (KV cache, activations),
//! and the forward: prefill as batched products over T tokens, decode as a captured graph.

use std::sync::Arc;

use cudarc::driver::{sys, CudaGraph, CudaSlice, LaunchConfig};

use super::device::{dptr, drv, GpuDevice};
use super::qtype::{dequantize_row_file, repack_for_device, GpuQType};
use super::{CudaError, GpuConfig, HostModel, HostTensor};
use crate::tracing::{emit_rows, Stage, TensorKey, TraceHook};

/// Rows (warps) per block of the mat-vec / mat-mat kernels: MV_WARPS in kernels.cu.
const MV_WARPS: usize = 4;
/// Threads of the decode router kernel (ROUTER_THREADS in kernels.cu): one block per expert row.
const ROUTER_THREADS: u32 = 256;
/// Dynamic shared memory of the tensor-core kernels: TC_SMEM_BYTES in kernels.cu.
pub(crate) const TC_SMEM_BYTES: u32 = 4 * 64 * 136 * 2;
/// Tokens one warp of kernels.cu's matmat handles per pass (TT there): the prefill router runs in
/// token tiles of this size.
const MATMAT_TT: usize = 8;
/// Dynamic shared memory of the int8 tensor-core kernels (matmat_qi_*): mmq.cu's one `QiA` (64 x
/// 144 quant bytes, 64 x 9 (scale, offset) pairs) and two `QiB`s (2 x 32 x 144 activation bytes,
/// 32 x 4 scales, 32 x 8 sums each): 35,328 bytes. kernel-emu's tests check it.
pub const QI_SMEM_BYTES: u32 =
    (64 * 144 + 64 * 9 * 8) + 2 * (2 * 32 * 144 + 32 * 4 * 4 + 32 * 8 * 4);
/// Dynamic shared memory of attn_prefill (attn_prefill.cu): 64 query rows and 32 K and V rows of
/// 132 floats, 64 x 33 scores and 3 x 64 row statistics. kernel-emu's tests check it.
pub const AP_SMEM_BYTES: u32 = ((64 + 2 * 32) * 132 + 64 * 33 + 3 * 64) * 4;
/// Longest context the attention kernel's shared-memory score row allows (f32, < 48 KB).
pub const MAX_CTX_LIMIT: usize = 8192;
/// Most positions whose logits one prefill call returns when asked for all of them.
pub const MAX_LOGIT_ROWS: usize = 64;

/// A bug that tests can plant on purpose to show that a falsifier catches it. Never set in
/// production code paths (the default is `None`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlantedBug {
    #[default]
    None,
    /// At this layer, every Q6_K matrix is run with the Q5_K kernel (a wrong qtype dispatch; the
    /// Q5_K kernel stays inside a Q6_K row, so it computes garbage without faulting).
    WrongQTypeDispatch { layer: usize },
}

/// Sizes of the device state.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// KV cache length (positions).
    pub max_ctx: usize,
    /// Most tokens one prefill launch sequence processes (longer prompts are chunked).
    pub max_batch: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_ctx: 1024,
            max_batch: 512,
        }
    }
}

/// What the forward computed at one layer, copied back for parity checks.
#[derive(Clone, Debug)]
pub struct LayerObservation {
    pub layer: usize,
    /// Position of the first token of this call.
    pub pos0: usize,
    /// Hidden state after the layer (residual stream), `tokens x n_embd`.
    pub hidden: Vec<f32>,
    /// Selected experts per token, `tokens x n_expert_used`, in selection order.
    pub expert_ids: Vec<i32>,
    /// Renormalised routing weights, same layout.
    pub expert_weights: Vec<f32>,
}

/// Memory accounting of the backend.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct VramReport {
    /// Weight bytes in the source (GGUF layout).
    pub weight_bytes_file: usize,
    /// Weight bytes on the device (after repacking).
    pub weight_bytes_device: usize,
    /// KV cache bytes.
    pub kv_bytes: usize,
    /// Activations and scratch.
    pub scratch_bytes: usize,
    /// Device memory in use (total - free) right after the context and kernels were set up,
    /// before any upload, and the largest value seen since.
    pub used_at_start: usize,
    pub used_peak: usize,
}

struct DevMat {
    qt: GpuQType,
    _buf: CudaSlice<u8>,
    ptr: u64,
    k: usize,
    rows: usize,
    row_bytes: usize,
    mat_bytes: usize,
}

struct DevVec {
    _buf: CudaSlice<f32>,
    ptr: u64,
}

struct Layer {
    attn_norm: DevVec,
    q: DevMat,
    k: DevMat,
    v: DevMat,
    o: DevMat,
    q_norm: DevVec,
    k_norm: DevVec,
    ffn_norm: DevVec,
    router: DevMat,
    gate: DevMat,
    up: DevMat,
    down: DevMat,
}

struct Buf<T> {
    _buf: CudaSlice<T>,
    ptr: u64,
}

struct State {
    kc: Vec<Buf<f32>>,
    vc: Vec<Buf<f32>>,
    x: Buf<f32>,
    h: Buf<f32>,
    q: Buf<f32>,
    k: Buf<f32>,
    v: Buf<f32>,
    att: Buf<f32>,
    part: Buf<f32>,
    rl: Buf<f32>,
    ids: Buf<i32>,
    wts: Buf<f32>,
    off: Buf<i32>,
    list: Buf<i32>,
    g: Buf<f32>,
    u: Buf<f32>,
    act: Buf<f32>,
    y: Buf<f32>,
    logits: Buf<f32>,
    tok: Buf<i32>,
    pos: Buf<i32>,
    counter: Buf<i32>,
    hist: Buf<i32>,
    /// split_act_q16's output for the prefill products (matmat_qi): the current activation
    /// matrix as Q16 high and low bytes, its 32-element group scales and its 16-element sums.
    xh: Buf<u8>,
    xl: Buf<u8>,
    xd: Buf<f32>,
    xs: Buf<f32>,
    /// The prefill router's token tiles: the identity pair list (0 .. max_batch, written at load)
    /// and tile offsets min(g * MATMAT_TT, t), written per prefill chunk.
    tok_list: Buf<i32>,
    tok_off: Buf<i32>,
    /// attn_decode's tickets, one per KV head (zero between launches).
    att_counter: Buf<i32>,
    /// Decode, q16 path (decode_q16.cu): the FFN-normed token as a Q16 vector (3 n_embd bytes,
    /// written by router_decode) and the SwiGLU outputs of the k slots (3 ff bytes each, written
    /// by moe_gate_up2_q16 for moe_down_q16).
    hq: Buf<u8>,
    actq: Buf<u8>,
    /// Decode, q16 path: the attention output as a Q16 vector (3 n_head head_dim bytes, written
    /// by attn_combine) for the o projection.
    attq: Buf<u8>,
}

/// A Qwen3-MoE model resident on one GPU, with its KV cache.
pub struct GpuModel {
    pub dev: Arc<GpuDevice>,
    pub cfg: GpuConfig,
    pub opts: LoadOptions,
    layers: Vec<Layer>,
    embd: DevMat,
    out_norm: DevVec,
    output: Option<DevMat>,
    st: State,
    pos: usize,
    graph: Option<CudaGraph>,
    planted: PlantedBug,
    vram: VramReport,
    /// Tensor-core products for prefill (off with PV_GPU_NO_TC=1, for A/B timing).
    use_tc: bool,
    /// Integer-operand products for prefill (mmq.cu; off with PV_GPU_NO_MQ=1, for A/B timing).
    use_mq: bool,
    /// Tiled prefill attention (attn_prefill.cu; off with PV_GPU_NO_AP=1, for A/B timing).
    use_ap: bool,
    /// Decode attention in one launch (decode.cu's attn_decode), on only with PV_GPU_FUSED_ATTN=1.
    /// Off by default because it measured slower on the H200 (2026-12-02: 23 us per layer against
    /// 4 + 9 + 5.6 us for qk_norm_rope_store, attn_partial, attn_combine; decode 272 against 306
    /// tok/s): every block normalises and rotates its 8 query heads before its first load, and 4
    /// blocks merge the partials that attn_combine merges with 32.
    use_fused_attn: bool,
    /// Prefill router in token tiles on kernels.cu's matmat (off with PV_GPU_NO_RT=1: matmat_tc
    /// with 64-token tiles, 16 blocks for the 128-row router).
    use_rt: bool,
    /// Decode mat-vec rows per warp for q/k/v and gate/up: 2 (decode.cu), or 1 with
    /// PV_GPU_DECODE_RPW=1 (kernels.cu's kernels, for A/B timing).
    decode_rpw: usize,
    /// Decode: the attention RMSNorm fused into the q/k/v mat-vec (decode.cu's matvec3n), with
    /// a v of another qtype in the same launch; off with PV_GPU_NO_FUSED_NORM=1 (A/B timing).
    use_fused_norm: bool,
    /// Decode mat-vecs of at least this many rows run four rows per warp (decode.cu's matvec4):
    /// by default the output head only; PV_GPU_MV4_ALL=1 makes it every dense mat-vec,
    /// PV_GPU_NO_MV4=1 none (A/B timing).
    mv4_min_rows: usize,
    /// Decode expert products (gate/up and down) on 16-bit integer activations with dp4a dots
    /// (decode_q16.cu), where the experts are Q4_K / Q5_K / Q6_K; off with PV_GPU_NO_Q16=1 (the
    /// f32-activation kernels, for A/B timing and as the reference path).
    use_q16: bool,
    /// Decode q/k/v on the Q16 copy of the attention norm (decode_q16.cu's matvec3n_q16_*), with
    /// use_q16; off with PV_GPU_NO_QKV_Q16=1 (A/B timing).
    use_qkv_q16: bool,
    /// Programmatic dependent launch (compute capability >= 9.0, opt-in with PV_GPU_PDL=1): a
    /// kernel may be scheduled while the one before it finishes, and waits for it in
    /// `pdl_begin()` (kernels.cu).
    pdl: bool,
    /// Whether the launches being encoded belong to a decode step (PDL is used there only: the
    /// long prefill kernels gain nothing from an early start, and measured slower with it).
    pdl_step: std::cell::Cell<bool>,
    /// When set, an event is recorded after every launch (kernel time breakdown).
    prof: std::cell::RefCell<Option<Vec<(String, cudarc::driver::CudaEvent)>>>,
}

fn cfg1(n: usize, threads: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n as u32, 1, 1),
        block_dim: (threads as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Programmatic dependent launch needs compute capability 9.0 (`griddepcontrol`). It is off
/// unless `PV_GPU_PDL=1`: on the H200 the decode step ran at 250.8 tok/s with it and 288.9
/// without (same call, same file; docs/gpu-perf-notes.md, version 8), so it stays an experiment.
fn pdl_enabled(cc: (i32, i32)) -> bool {
    cc.0 >= 9 && env_set("PV_GPU_PDL")
}

/// Whether an A/B switch of the environment is on (`VAR=1`; anything else, or unset, is off).
fn env_set(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

fn ceil_div(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

macro_rules! launch {
    ($m:expr, $name:expr, $cfg:expr $(, $arg:expr)* $(,)?) => {{
        let f = $m.dev.func($name)?;
        let cfg: LaunchConfig = $cfg;
        let mut params: Vec<*mut std::ffi::c_void> = Vec::new();
        // Each argument lives in its own local until the end of this block (a shadowed binding is
        // not dropped), so the addresses handed to the driver stay valid for the launch.
        $(
            let a = $arg;
            params.push(std::ptr::addr_of!(a) as *mut std::ffi::c_void);
        )*
        // SAFETY: the argument lists match the kernel signatures in kernels.cu (checked by the
        // parity tests), every pointer is a live device buffer sized by `GpuModel::load`, and
        // every kernel starts with `pdl_begin()` (its wait precedes all reads of data an earlier
        // kernel writes), which is what makes the programmatic launch below safe.
        let pdl = $m.pdl && $m.pdl_step.get();
        unsafe { $m.dev.launch_raw(f, cfg, &mut params, pdl) }.map_err(drv($name))?;
        $m.after_launch($name)?;
    }};
}

impl GpuModel {
    /// Upload `host` to the device. Every tensor's qtype is checked first: one without a kernel
    /// fails the load naming the tensor, before anything is allocated.
    pub fn load(
        dev: Arc<GpuDevice>,
        host: &HostModel<'_>,
        opts: LoadOptions,
    ) -> Result<Self, CudaError> {
        let cfg = host.config.clone();
        validate_config(&cfg, &opts)?;
        for t in &host.tensors {
            GpuQType::from_ggml(t.ggml_type).map_err(|q| CudaError::UnsupportedQType {
                tensor: t.name.clone(),
                qtype: q,
            })?;
        }
        let (free0, total) = dev.mem_info()?;
        let mut vram = VramReport {
            used_at_start: total - free0,
            ..Default::default()
        };

        // Check the whole budget before the first allocation: an out-of-memory half way through
        // an 18 GB upload would waste a minute and say less.
        let need_w: usize = host
            .tensors
            .iter()
            .map(|t| {
                let qt = GpuQType::from_ggml(t.ggml_type).expect("checked above");
                t.data.len() / qt.file_block_bytes() * qt.device_block_bytes()
            })
            .sum();
        let kv_dim = cfg.n_head_kv * cfg.head_dim;
        let kv_bytes = cfg.n_layer * 2 * opts.max_ctx * kv_dim * 4;
        let scratch = scratch_bytes(&cfg, &opts);
        let need = need_w + kv_bytes + scratch;
        if need > free0 {
            return Err(CudaError::OutOfMemory {
                what: format!(
                    "the model ({need_w} weight bytes, {kv_bytes} KV-cache bytes for {} positions, {scratch} scratch bytes)",
                    opts.max_ctx
                ),
                bytes: need,
                free: free0,
                total,
            });
        }

        let get = |name: &str| -> Result<&HostTensor<'_>, CudaError> {
            host.tensor(name)
                .ok_or_else(|| CudaError::Model(format!("tensor `{name}` is missing")))
        };
        let mut repack = Vec::new();
        let mut up_mat = |t: &HostTensor<'_>, dims: &[usize]| -> Result<DevMat, CudaError> {
            upload_mat(&dev, t, dims, &mut repack)
        };
        let e = cfg.n_embd;
        let qd = cfg.n_head * cfg.head_dim;
        let embd = up_mat(get("token_embd.weight")?, &[e, cfg.vocab])?;
        let output = match host.tensor("output.weight") {
            Some(t) => Some(up_mat(t, &[e, cfg.vocab])?),
            None => None, // tied to the embedding
        };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            let gate = up_mat(get(&n("ffn_gate_exps"))?, &[e, cfg.expert_ff, cfg.n_expert])?;
            let up = up_mat(get(&n("ffn_up_exps"))?, &[e, cfg.expert_ff, cfg.n_expert])?;
            if gate.qt != up.qt {
                return Err(CudaError::Model(format!(
                    "blk.{l}: ffn_gate_exps is {} but ffn_up_exps is {}; the fused gate/up kernel needs one qtype",
                    gate.qt.name(),
                    up.qt.name()
                )));
            }
            layers.push(Layer {
                attn_norm: upload_vec(&dev, get(&n("attn_norm"))?, e)?,
                q: up_mat(get(&n("attn_q"))?, &[e, qd])?,
                k: up_mat(get(&n("attn_k"))?, &[e, kv_dim])?,
                v: up_mat(get(&n("attn_v"))?, &[e, kv_dim])?,
                o: up_mat(get(&n("attn_output"))?, &[qd, e])?,
                q_norm: upload_vec(&dev, get(&n("attn_q_norm"))?, cfg.head_dim)?,
                k_norm: upload_vec(&dev, get(&n("attn_k_norm"))?, cfg.head_dim)?,
                ffn_norm: upload_vec(&dev, get(&n("ffn_norm"))?, e)?,
                router: up_mat(get(&n("ffn_gate_inp"))?, &[e, cfg.n_expert])?,
                gate,
                up,
                down: up_mat(get(&n("ffn_down_exps"))?, &[cfg.expert_ff, e, cfg.n_expert])?,
            });
        }
        let out_norm = upload_vec(&dev, get("output_norm.weight")?, e)?;
        let dev_cc = dev.info.compute_capability;
        let st = alloc_state(&dev, &cfg, &opts)?;
        let (free1, _) = dev.mem_info()?;
        vram.weight_bytes_file = host.tensor_bytes();
        vram.weight_bytes_device = need_w;
        vram.kv_bytes = kv_bytes;
        vram.scratch_bytes = scratch;
        vram.used_peak = total - free1;
        Ok(Self {
            dev,
            cfg,
            opts,
            layers,
            embd,
            out_norm,
            output,
            st,
            pos: 0,
            graph: None,
            planted: PlantedBug::None,
            vram,
            use_tc: !env_set("PV_GPU_NO_TC"),
            use_mq: !env_set("PV_GPU_NO_MQ"),
            use_ap: !env_set("PV_GPU_NO_AP"),
            use_fused_attn: env_set("PV_GPU_FUSED_ATTN"),
            use_rt: !env_set("PV_GPU_NO_RT"),
            decode_rpw: if env_set("PV_GPU_DECODE_RPW") { 1 } else { 2 },
            use_fused_norm: !env_set("PV_GPU_NO_FUSED_NORM"),
            use_q16: !env_set("PV_GPU_NO_Q16"),
            use_qkv_q16: !env_set("PV_GPU_NO_QKV_Q16"),
            mv4_min_rows: if env_set("PV_GPU_NO_MV4") {
                usize::MAX
            } else if env_set("PV_GPU_MV4_ALL") {
                0
            } else {
                16384
            },
            pdl: pdl_enabled(dev_cc),
            pdl_step: std::cell::Cell::new(false),
            prof: std::cell::RefCell::new(None),
        })
    }

    /// Plant a deliberate bug (tests only; see [`PlantedBug`]). Drops any captured graph.
    pub fn set_planted_bug(&mut self, bug: PlantedBug) {
        self.planted = bug;
        self.graph = None;
    }

    /// Next position to be written in the KV cache.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Forget the context (the KV cache contents are simply overwritten later).
    pub fn reset(&mut self) -> Result<(), CudaError> {
        self.pos = 0;
        self.write_pos()
    }

    pub fn vram(&mut self) -> Result<VramReport, CudaError> {
        let (free, total) = self.dev.mem_info()?;
        self.vram.used_peak = self.vram.used_peak.max(total - free);
        Ok(self.vram)
    }

    fn write_pos(&mut self) -> Result<(), CudaError> {
        let p = [self.pos as i32];
        let mut dst = self.st.pos._buf.slice_mut(0..1);
        self.dev
            .stream
            .memcpy_htod(&p[..], &mut dst)
            .map_err(drv("writing the position"))?;
        Ok(())
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<(), CudaError> {
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.cfg.vocab) {
            return Err(CudaError::Model(format!(
                "token id {t} is outside the vocabulary ({})",
                self.cfg.vocab
            )));
        }
        if self.pos + tokens.len() > self.opts.max_ctx {
            return Err(CudaError::Model(format!(
                "context full: {} positions used, {} more asked, KV cache holds {}",
                self.pos,
                tokens.len(),
                self.opts.max_ctx
            )));
        }
        Ok(())
    }

    /// Process `tokens` at the current position. Returns the logits of the last token, or of
    /// every token of the call when `all_logits` (at most [`MAX_LOGIT_ROWS`] tokens then).
    /// `obs`, when given, receives every layer's output (this synchronises per layer: tests only).
    pub fn prefill(
        &mut self,
        tokens: &[u32],
        all_logits: bool,
        obs: Option<&mut dyn FnMut(LayerObservation)>,
    ) -> Result<Vec<f32>, CudaError> {
        self.prefill_with(tokens, all_logits, obs, None)
    }

    /// [`GpuModel::prefill`] calling the trace hook at every stage the forward materializes as a
    /// buffer (engine::tracing::gpu lists them): the embedding, inside each layer of a chunk of
    /// two or more tokens `attn_norm`, `q`, `k`, `v`, `rope` (q, k), `attn_residual`,
    /// `ffn_norm`, `moe_router` (logits, topk_ids, topk_weights), the per-expert gate / up /
    /// SwiGLU / output rows and `layer_out`, then `final_norm` and `logits`. A chunk of one token
    /// runs the decode kernels, which fuse most of a layer: only its `moe_router` top-k and
    /// `layer_out` are handed over there.
    ///
    /// Each wanted buffer is copied back right after the launch that writes it, on the same
    /// stream (the copy waits for that launch and the host waits for the copy), before a later
    /// launch can overwrite it (st.h holds attn_norm, then ffn_norm; st.q is normed and rotated
    /// in place). Copies only read: the launches, their order and their results are the same as
    /// without a hook, and with `None` (or a hook that wants nothing) nothing is copied at all.
    /// This synchronises once per copied stage: for tracing, never for serving.
    pub fn prefill_traced(
        &mut self,
        tokens: &[u32],
        all_logits: bool,
        hook: Option<&mut dyn TraceHook>,
    ) -> Result<Vec<f32>, CudaError> {
        self.prefill_with(tokens, all_logits, None, hook)
    }

    fn prefill_with(
        &mut self,
        tokens: &[u32],
        all_logits: bool,
        mut obs: Option<&mut dyn FnMut(LayerObservation)>,
        mut hook: Option<&mut dyn TraceHook>,
    ) -> Result<Vec<f32>, CudaError> {
        if tokens.is_empty() {
            return Err(CudaError::Model("prefill of an empty prompt".into()));
        }
        if all_logits && tokens.len() > MAX_LOGIT_ROWS {
            return Err(CudaError::Model(format!(
                "all_logits is limited to {MAX_LOGIT_ROWS} tokens"
            )));
        }
        self.check_tokens(tokens)?;
        self.pdl_step.set(false);
        let mut out = Vec::new();
        let n_chunks = tokens.len().div_ceil(self.opts.max_batch);
        for (ci, chunk) in tokens.chunks(self.opts.max_batch).enumerate() {
            let toks: Vec<i32> = chunk.iter().map(|&t| t as i32).collect();
            let mut dst = self.st.tok._buf.slice_mut(0..toks.len());
            self.dev
                .stream
                .memcpy_htod(&toks[..], &mut dst)
                .map_err(drv("copying tokens"))?;
            self.write_pos()?;
            let t = chunk.len();
            // the router's token tiles for this chunk (encode_router_tiles)
            let off: Vec<i32> = (0..=t.div_ceil(MATMAT_TT))
                .map(|g| (g * MATMAT_TT).min(t) as i32)
                .collect();
            let mut dst = self.st.tok_off._buf.slice_mut(0..off.len());
            self.dev
                .stream
                .memcpy_htod(&off[..], &mut dst)
                .map_err(drv("writing the router's token tiles"))?;
            let (pos0, hid) = (self.pos, self.cfg.n_embd);
            self.encode_embed(t)?;
            let x = &self.st.x._buf;
            self.tap_rows(&mut hook, Stage::Embed, None, None, x, 0, pos0, t, &[hid])?;
            for l in 0..self.cfg.n_layer {
                self.encode_layer_traced(l, t, &mut hook)?;
                if t == 1 {
                    // the decode kernels ran (see prefill_traced): the layer's end state only
                    self.tap_router(&mut hook, l, t)?;
                    let (li, x) = (Some(l), &self.st.x._buf);
                    self.tap_rows(&mut hook, Stage::LayerOut, None, li, x, 0, pos0, t, &[hid])?;
                }
                if let Some(f) = obs.as_deref_mut() {
                    f(self.observe(l, t)?);
                }
            }
            let last = ci + 1 == n_chunks;
            let rows = if all_logits { t } else { 1 };
            if last {
                self.encode_head(t, rows)?;
                // st.h holds the final norm of this chunk's last `rows` tokens
                let (h, p) = (&self.st.h._buf, pos0 + t - rows);
                self.tap_rows(
                    &mut hook,
                    Stage::FinalNorm,
                    None,
                    None,
                    h,
                    0,
                    p,
                    rows,
                    &[hid],
                )?;
            }
            launch!(self, "advance_pos", cfg1(1, 1), self.st.pos.ptr, t as i32);
            self.pos += t;
            if last {
                out = self
                    .dev
                    .download(&self.st.logits._buf, rows * self.cfg.vocab)?;
                let (p, vocab) = (pos0 + t - rows, self.cfg.vocab);
                emit_rows(&mut hook, Stage::Logits, None, None, p, &[vocab], &out);
            }
        }
        Ok(out)
    }

    /// One decode step without the graph (tests): feed `token`, return its logits.
    pub fn decode(
        &mut self,
        token: u32,
        mut obs: Option<&mut dyn FnMut(LayerObservation)>,
    ) -> Result<Vec<f32>, CudaError> {
        self.check_tokens(&[token])?;
        self.pdl_step.set(true);
        let tok = [token as i32];
        let mut dst = self.st.tok._buf.slice_mut(0..1);
        self.dev
            .stream
            .memcpy_htod(&tok[..], &mut dst)
            .map_err(drv("copying a token"))?;
        self.write_pos()?;
        self.encode_embed(1)?;
        for l in 0..self.cfg.n_layer {
            self.encode_layer(l, 1)?;
            if let Some(f) = obs.as_deref_mut() {
                f(self.observe(l, 1)?);
            }
        }
        self.encode_head(1, 1)?;
        launch!(self, "advance_pos", cfg1(1, 1), self.st.pos.ptr, 1i32);
        self.pos += 1;
        self.dev.download(&self.st.logits._buf, self.cfg.vocab)
    }

    /// Greedy generation of `n` tokens after a prefill: the first is the argmax of the prefill's
    /// last logits, each next one comes from a decode step replayed from a captured CUDA graph
    /// (the position and token live on the device, so the host only launches the graph).
    /// Returns the tokens; the caller can time the call with [`GpuModel::decode_steps_graph`].
    pub fn generate_greedy(&mut self, n: usize) -> Result<Vec<u32>, CudaError> {
        if self.pos == 0 {
            return Err(CudaError::Model(
                "generate_greedy needs a prefill first".into(),
            ));
        }
        if self.pos + n > self.opts.max_ctx {
            return Err(CudaError::Model("context full".into()));
        }
        let p0 = self.pos;
        self.argmax_last_logits()?;
        if n > 1 {
            self.decode_steps_graph(n - 1)?;
        }
        let hist = self.dev.download(&self.st.hist._buf, p0 + n)?;
        Ok(hist[p0..p0 + n].iter().map(|&t| t as u32).collect())
    }

    /// The argmax of the last logits becomes the token at the current position (device only).
    pub fn argmax_last_logits(&mut self) -> Result<(), CudaError> {
        launch!(
            self,
            "argmax",
            cfg1(1, 1024),
            self.st.logits.ptr,
            self.cfg.vocab as i32,
            self.st.tok.ptr,
            self.st.hist.ptr,
            self.st.pos.ptr,
            0i32
        );
        Ok(())
    }

    /// Run `steps` decode steps from the graph, each feeding the token the previous one chose.
    /// Asynchronous: synchronise (or record an event) to wait for them.
    pub fn decode_steps_graph(&mut self, steps: usize) -> Result<(), CudaError> {
        if self.pos + steps >= self.opts.max_ctx {
            return Err(CudaError::Model("context full".into()));
        }
        if self.graph.is_none() {
            self.capture_decode_graph()?;
        }
        let g = self.graph.as_ref().expect("captured above");
        for _ in 0..steps {
            g.launch().map_err(drv("launching the decode graph"))?;
        }
        self.pos += steps;
        Ok(())
    }

    fn capture_decode_graph(&mut self) -> Result<(), CudaError> {
        self.dev.sync()?;
        self.dev
            .stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(drv("beginning graph capture"))?;
        let r = self.encode_decode_step();
        let g = self
            .dev
            .stream
            .end_capture(
                sys::CUgraphInstantiate_flags::CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH,
            )
            .map_err(drv("ending graph capture"))?;
        r?;
        let g = g.ok_or_else(|| CudaError::Model("graph capture produced no graph".into()))?;
        g.upload().map_err(drv("uploading the decode graph"))?;
        self.graph = Some(g);
        Ok(())
    }

    /// The launches of one graph decode step: token and position come from device memory.
    fn encode_decode_step(&self) -> Result<(), CudaError> {
        self.pdl_step.set(true);
        self.encode_embed(1)?;
        for l in 0..self.cfg.n_layer {
            self.encode_layer(l, 1)?;
        }
        self.encode_head(1, 1)?;
        launch!(
            self,
            "argmax",
            cfg1(1, 1024),
            self.st.logits.ptr,
            self.cfg.vocab as i32,
            self.st.tok.ptr,
            self.st.hist.ptr,
            self.st.pos.ptr,
            1i32
        );
        launch!(self, "advance_pos", cfg1(1, 1), self.st.pos.ptr, 1i32);
        Ok(())
    }

    fn observe(&self, layer: usize, t: usize) -> Result<LayerObservation, CudaError> {
        let k = self.cfg.n_expert_used;
        Ok(LayerObservation {
            layer,
            pos0: self.pos,
            hidden: self.dev.download(&self.st.x._buf, t * self.cfg.n_embd)?,
            expert_ids: self.dev.download(&self.st.ids._buf, t * k)?,
            expert_weights: self.dev.download(&self.st.wts._buf, t * k)?,
        })
    }

    /// Tensor-core path for a batched product (K in whole 128-element steps). Its operands are
    /// split into f16 hi + lo pairs (three products, f32 accumulation), which keeps f32-like
    /// precision: a plain f16 product flipped router choices at margins of 1e-4 (see
    /// docs/gpu-perf-notes.md).
    fn tc_ok(&self, m: &DevMat) -> bool {
        self.use_tc && m.k % 128 == 0
    }

    /// Whether `m` runs on the integer-operand kernel in prefill (its qtype has integer quants
    /// and K splits into 128-wide tiles).
    fn mq_ok(&self, m: &DevMat) -> bool {
        self.use_mq
            && matches!(
                m.qt,
                GpuQType::Q4K | GpuQType::Q5K | GpuQType::Q6K | GpuQType::Q8_0
            )
            && m.k % 128 == 0
    }

    /// rl = router h for t tokens on kernels.cu's matmat, one group per MATMAT_TT tokens (grid.z),
    /// every group reading the same matrix (expert_bytes 0): 128 rows x ceil(t / 8) tiles keep
    /// the GPU busy where matmat_tc's 64 x 64 tiles made 16 blocks.
    fn encode_router_tiles(
        &self,
        m: &DevMat,
        layer: Option<usize>,
        t: usize,
    ) -> Result<(), CudaError> {
        let s = &self.st;
        let name = self.kernel_for(m, layer, "matmat");
        let cfg = LaunchConfig {
            grid_dim: (
                ceil_div(m.rows, MV_WARPS) as u32,
                1,
                ceil_div(t, MATMAT_TT) as u32,
            ),
            block_dim: (32 * MV_WARPS as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(
            self,
            name.as_str(),
            cfg,
            m.ptr,
            0i64,
            m.row_bytes as i64,
            m.rows as i32,
            m.k as i32,
            s.h.ptr,
            m.k as i32,
            1i32,
            0i32,
            s.tok_list.ptr,
            s.tok_off.ptr,
            s.rl.ptr,
            m.rows as i32,
            0i32
        );
        Ok(())
    }

    /// split_act_q16 over `rows` rows of `x` (k columns, row stride k) into st.xh / xl / xd /
    /// xs, for the matmat_qi launches that follow (which read it as their activations).
    fn encode_split(&self, x: u64, k: usize, rows: usize) -> Result<(), CudaError> {
        let s = &self.st;
        launch!(
            self,
            "split_act_q16",
            cfg1(rows, 64),
            x,
            k as i32,
            k as i32,
            rows as i32,
            s.xh.ptr,
            s.xl.ptr,
            s.xd.ptr,
            s.xs.ptr
        );
        Ok(())
    }

    /// Y (=|+=) W X on the integer-operand kernel; X is the last encode_split's input.
    #[allow(clippy::too_many_arguments)]
    fn encode_mq(
        &self,
        m: &DevMat,
        layer: Option<usize>,
        rows: usize,
        in_div: usize,
        dense_pairs: usize,
        grouped: Option<(usize, usize)>, // (groups, max pairs per group)
        y: u64,
        y_stride: usize,
        add: bool,
    ) -> Result<(), CudaError> {
        let s = &self.st;
        let (groups, max_pairs, list, off) = match grouped {
            Some((g, mp)) => (g, mp, s.list.ptr, s.off.ptr),
            None => (1, dense_pairs, 0u64, 0u64),
        };
        let grid_dim = (
            ceil_div(rows, 64) as u32,
            ceil_div(max_pairs, 32) as u32,
            groups as u32,
        );
        let expert_bytes = if grouped.is_some() {
            m.mat_bytes as i64
        } else {
            0i64
        };
        let name = self.kernel_for(m, layer, "matmat_qi");
        let cfg = LaunchConfig {
            grid_dim,
            block_dim: (128, 1, 1),
            shared_mem_bytes: QI_SMEM_BYTES,
        };
        launch!(
            self,
            name.as_str(),
            cfg,
            m.ptr,
            expert_bytes,
            m.row_bytes as i64,
            rows as i32,
            m.k as i32,
            s.xh.ptr,
            s.xl.ptr,
            s.xd.ptr,
            s.xs.ptr,
            in_div as i32,
            dense_pairs as i32,
            list,
            off,
            y,
            y_stride as i32,
            add as i32
        );
        Ok(())
    }

    fn after_launch(&self, name: &str) -> Result<(), CudaError> {
        if let Some(v) = self.prof.borrow_mut().as_mut() {
            let ev = self
                .dev
                .ctx
                .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(drv("creating a profiling event"))?;
            ev.record(&self.dev.stream)
                .map_err(drv("recording a profiling event"))?;
            v.push((name.to_string(), ev));
        }
        Ok(())
    }

    /// Time every kernel of one forward over `tokens` (a prefill when more than one token, else
    /// a direct decode step) with events between launches; returns (kernel, total ms, launches)
    /// sorted by time. Diagnostics only: events add a little time of their own.
    pub fn profile(&mut self, tokens: &[u32]) -> Result<Vec<(String, f64, usize)>, CudaError> {
        let start = self
            .dev
            .ctx
            .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(drv("event"))?;
        start.record(&self.dev.stream).map_err(drv("event"))?;
        *self.prof.borrow_mut() = Some(vec![("start".into(), start)]);
        let r = if tokens.len() > 1 {
            self.prefill(tokens, false, None).map(|_| ())
        } else {
            self.decode(tokens[0], None).map(|_| ())
        };
        let evs = self.prof.borrow_mut().take().unwrap_or_default();
        r?;
        self.dev.sync()?;
        let mut agg: std::collections::HashMap<String, (f64, usize)> =
            std::collections::HashMap::new();
        for w in evs.windows(2) {
            let ms = w[0].1.elapsed_ms(&w[1].1).map_err(drv("event time"))? as f64;
            let e = agg.entry(w[1].0.clone()).or_insert((0.0, 0));
            e.0 += ms;
            e.1 += 1;
        }
        let mut v: Vec<(String, f64, usize)> =
            agg.into_iter().map(|(k, (ms, n))| (k, ms, n)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(v)
    }

    /// decode.cu's matvec3n for layer l's q/k/v when it applies: the qtype pair is one the
    /// kernels are instantiated for, every product reads the n_embd-wide normed input, and the
    /// norm fits in the default 48 KB of dynamic shared memory. Returns the kernel's name and its
    /// dynamic shared memory per element of h: the f32 norm, and for a Q16 instance also the
    /// block's Q16 copy of it (3 bytes per element after the floats).
    fn matvec3n_kernel(&self, l: usize) -> Option<(String, usize)> {
        let ly = &self.layers[l];
        let e = self.cfg.n_embd;
        let fits = self.use_fused_norm
            && ly.q.qt == ly.k.qt
            && [&ly.q, &ly.k, &ly.v].iter().all(|m| m.k == e)
            && e % 4 == 0
            && e * 4 <= 48 * 1024
            && (ly.v.qt == ly.q.qt || (ly.q.rows + ly.k.rows) % 2 == 0);
        if !fits {
            return None;
        }
        // kernel_for keeps the planted wrong-qtype dispatch on this path too
        let q = self.kernel_for(&ly.q, Some(l), "matvec3n");
        let v = self.kernel_for(&ly.v, Some(l), "");
        let name = format!("{q}{v}");
        let pair = name.strip_prefix("matvec3n_")?;
        if !super::device::MATVEC3N_PAIRS.contains(&pair) {
            return None;
        }
        // the Q16 instance (decode_q16.cu) where both qtypes have Q16 dots and the block's
        // Q16 copy of h (3 e bytes after its e floats) fits
        if self.use_q16
            && self.use_qkv_q16
            && super::device::MATVEC3N_Q16_PAIRS.contains(&pair)
            && e % 32 == 0
            && e * 7 <= 48 * 1024
        {
            return Some((format!("matvec3n_q16_{pair}"), 7));
        }
        Some((name, 4))
    }

    /// Whether this layer's decode gate/up runs on Q16 activations (decode_q16.cu): Q4_K / Q5_K /
    /// Q6_K gate and up of one qtype, two rows per warp, and shapes whose Q16 vectors keep their
    /// 16-byte alignment (n_embd and ff multiples of 32).
    fn q16_gate_up(&self, ly: &Layer) -> bool {
        let q16 = |m: &DevMat| matches!(m.qt, GpuQType::Q4K | GpuQType::Q5K | GpuQType::Q6K);
        self.use_q16
            && self.decode_rpw == 2
            && q16(&ly.gate)
            && ly.up.qt == ly.gate.qt
            && self.cfg.n_embd % 32 == 0
            && self.cfg.expert_ff % 32 == 0
    }

    /// Whether the decode o projection runs on Q16 activations (decode_q16.cu's matvec_q16 on
    /// attn_combine's Q16 output): a Q4_K / Q5_K / Q6_K matrix below matvec4's row count, heads
    /// whose width splits into blocks of 8, and a Q16 vector that keeps its alignment.
    fn q16_o(&self, ly: &Layer) -> bool {
        let c = &self.cfg;
        self.use_q16
            && matches!(ly.o.qt, GpuQType::Q4K | GpuQType::Q5K | GpuQType::Q6K)
            && ly.o.rows < self.mv4_min_rows
            && c.head_dim % 8 == 0
            && (c.n_head * c.head_dim) % 32 == 0
            && ly.o.k == c.n_head * c.head_dim
    }

    /// Whether the decode down projection reads the Q16 SwiGLU outputs that the Q16 gate/up
    /// wrote (its qtype has a Q16 kernel).
    fn q16_down(&self, ly: &Layer) -> bool {
        self.q16_gate_up(ly) && matches!(ly.down.qt, GpuQType::Q4K | GpuQType::Q5K | GpuQType::Q6K)
    }

    /// decode.cu's attn_decode for layer l: one block per (KV head, chunk).
    fn encode_attn_decode(&self, ly: &Layer, l: usize, nch: usize) -> Result<(), CudaError> {
        let (c, s) = (&self.cfg, &self.st);
        let cfg = LaunchConfig {
            grid_dim: (c.n_head_kv as u32, nch as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(
            self,
            "attn_decode",
            cfg,
            s.q.ptr,
            s.k.ptr,
            s.v.ptr,
            ly.q_norm.ptr,
            ly.k_norm.ptr,
            s.kc[l].ptr,
            s.vc[l].ptr,
            s.part.ptr,
            s.att.ptr,
            s.pos.ptr,
            c.n_head as i32,
            c.n_head_kv as i32,
            c.head_dim as i32,
            nch as i32,
            1.0f32 / (c.head_dim as f32).sqrt(),
            c.rope_base,
            c.rms_eps,
            s.att_counter.ptr
        );
        Ok(())
    }

    /// The decode down projection on the f32 SwiGLU outputs (kernels.cu's moe_down_decode).
    fn encode_down_decode(&self, ly: &Layer, l: usize) -> Result<(), CudaError> {
        let (c, s) = (&self.cfg, &self.st);
        let k = c.n_expert_used;
        let name = self.kernel_for(&ly.down, Some(l), "moe_down_decode");
        launch!(
            self,
            name.as_str(),
            cfg1(ceil_div(c.n_embd, MV_WARPS), 32 * MV_WARPS),
            ly.down.ptr,
            ly.down.mat_bytes as i64,
            ly.down.row_bytes as i64,
            c.n_embd as i32,
            c.expert_ff as i32,
            k as i32,
            s.act.ptr,
            s.ids.ptr,
            s.wts.ptr,
            s.x.ptr
        );
        Ok(())
    }

    fn kernel_for(&self, m: &DevMat, layer: Option<usize>, op: &str) -> String {
        let mut qt = m.qt;
        if let (PlantedBug::WrongQTypeDispatch { layer: bl }, Some(l)) = (self.planted, layer) {
            if bl == l && qt == GpuQType::Q6K {
                qt = GpuQType::Q5K;
            }
        }
        format!("{op}_{}", qt.kernel_suffix())
    }

    /// y (=|+=) W x for t tokens (x, y with row strides k and rows). `split_ready`: st.xh / xl /
    /// xd / xs hold x's split (encode_split), so a prefill product may use matmat_qi.
    #[allow(clippy::too_many_arguments)]
    fn encode_dense(
        &self,
        m: &DevMat,
        layer: Option<usize>,
        t: usize,
        x: u64,
        y: u64,
        add: bool,
        split_ready: bool,
    ) -> Result<(), CudaError> {
        let mode = add as i32;
        if t > 1 && split_ready && self.mq_ok(m) {
            return self.encode_mq(m, layer, m.rows, 1, t, None, y, m.rows, add);
        }
        if t == 1 {
            let rpw = if m.rows >= self.mv4_min_rows { 4 } else { 1 };
            let name = self.kernel_for(m, layer, if rpw == 4 { "matvec4" } else { "matvec" });
            launch!(
                self,
                name.as_str(),
                cfg1(ceil_div(m.rows, rpw * MV_WARPS), 32 * MV_WARPS),
                m.ptr,
                m.row_bytes as i64,
                m.rows as i32,
                m.k as i32,
                x,
                y,
                mode
            );
        } else {
            let tc = self.tc_ok(m);
            let name = self.kernel_for(m, layer, if tc { "matmat_tc" } else { "matmat" });
            let cfg = if tc {
                LaunchConfig {
                    grid_dim: (ceil_div(m.rows, 64) as u32, ceil_div(t, 64) as u32, 1),
                    block_dim: (128, 1, 1),
                    shared_mem_bytes: TC_SMEM_BYTES,
                }
            } else {
                cfg1(ceil_div(m.rows, MV_WARPS), 32 * MV_WARPS)
            };
            launch!(
                self,
                name.as_str(),
                cfg,
                m.ptr,
                0i64,
                m.row_bytes as i64,
                m.rows as i32,
                m.k as i32,
                x,
                m.k as i32,
                1i32,
                t as i32,
                0u64,
                0u64,
                y,
                m.rows as i32,
                mode
            );
        }
        Ok(())
    }

    fn encode_embed(&self, t: usize) -> Result<(), CudaError> {
        launch!(
            self,
            "embed",
            cfg1(t, 256),
            self.embd.qt.ggml_id() as i32,
            self.embd.ptr,
            self.embd.row_bytes as i64,
            self.cfg.n_embd as i32,
            self.cfg.vocab as i32,
            self.st.tok.ptr,
            self.st.x.ptr
        );
        Ok(())
    }

    fn encode_layer(&self, l: usize, t: usize) -> Result<(), CudaError> {
        self.encode_layer_traced(l, t, &mut None)
    }

    /// The launches of layer `l` for `t` tokens; with a hook and `t > 1` (a prefill chunk), each
    /// stage's buffer is handed to it right after the launch that writes it (`tap_*`, see
    /// prefill_traced). The decode step (`t == 1`, and the captured graph) never taps: the hook
    /// is dropped below, so its launches are exactly those of an untraced step.
    fn encode_layer_traced(
        &self,
        l: usize,
        t: usize,
        hook: &mut Option<&mut dyn TraceHook>,
    ) -> Result<(), CudaError> {
        let c = &self.cfg;
        let s = &self.st;
        let ly = &self.layers[l];
        let e = c.n_embd as i32;
        let k = c.n_expert_used;
        let mut no_hook: Option<&mut dyn TraceHook> = None;
        let hook = if t > 1 { hook } else { &mut no_hook };
        // row shapes of the taps: as the CPU forward hands its stages over
        let (li, pos0, hid) = (Some(l), self.pos, c.n_embd);
        let (nh, nkv, hd) = (c.n_head, c.n_head_kv, c.head_dim);
        let fused_qkv = if t == 1 {
            self.matvec3n_kernel(l)
        } else {
            None
        };
        if fused_qkv.is_none() {
            launch!(
                self,
                "rmsnorm",
                cfg1(t, 256),
                s.x.ptr,
                ly.attn_norm.ptr,
                s.h.ptr,
                e,
                c.rms_eps
            );
        }
        // t > 1: st.h = attn_norm (overwritten by ffn_norm later in the layer)
        self.tap_rows(
            hook,
            Stage::AttnNorm,
            None,
            li,
            &s.h._buf,
            0,
            pos0,
            t,
            &[hid],
        )?;
        if let Some((name, smem_per_elem)) = fused_qkv {
            let same = ly.v.qt == ly.q.qt;
            let warps = if same {
                ceil_div(ly.q.rows + ly.k.rows + ly.v.rows, 2)
            } else {
                (ly.q.rows + ly.k.rows) / 2 + ly.v.rows
            };
            let smem = smem_per_elem * c.n_embd;
            let cfg = LaunchConfig {
                grid_dim: (ceil_div(warps, MV_WARPS) as u32, 1, 1),
                block_dim: (32 * MV_WARPS as u32, 1, 1),
                shared_mem_bytes: smem as u32,
            };
            launch!(
                self,
                name.as_str(),
                cfg,
                ly.q.ptr,
                ly.k.ptr,
                ly.v.ptr,
                ly.q.row_bytes as i64,
                ly.v.row_bytes as i64,
                ly.q.rows as i32,
                ly.k.rows as i32,
                ly.v.rows as i32,
                e,
                s.x.ptr,
                ly.attn_norm.ptr,
                c.rms_eps,
                s.h.ptr,
                s.q.ptr,
                s.k.ptr,
                s.v.ptr
            );
        } else if t == 1 && ly.q.qt == ly.k.qt && ly.q.k == ly.k.k {
            // one launch for q, k (and v when it has their qtype): 5120 rows keep the GPU busy
            // where k and v alone (512 rows each) would not
            let with_v = ly.v.qt == ly.q.qt;
            let (op, rpw) = if self.decode_rpw == 2 {
                ("matvec3_2", 2)
            } else {
                ("matvec3", 1)
            };
            let name = self.kernel_for(&ly.q, Some(l), op);
            let rows = ly.q.rows + ly.k.rows + if with_v { ly.v.rows } else { 0 };
            launch!(
                self,
                name.as_str(),
                cfg1(ceil_div(rows, rpw * MV_WARPS), 32 * MV_WARPS),
                ly.q.ptr,
                ly.k.ptr,
                ly.v.ptr,
                ly.q.row_bytes as i64,
                ly.q.rows as i32,
                ly.k.rows as i32,
                if with_v { ly.v.rows as i32 } else { 0i32 },
                ly.q.k as i32,
                s.h.ptr,
                s.q.ptr,
                s.k.ptr,
                s.v.ptr
            );
            if !with_v {
                self.encode_dense(&ly.v, Some(l), t, s.h.ptr, s.v.ptr, false, false)?;
            }
        } else {
            // one split of h serves the q, k and v products
            let split = t > 1 && [&ly.q, &ly.k, &ly.v].iter().any(|m| self.mq_ok(m));
            if split {
                self.encode_split(s.h.ptr, c.n_embd, t)?;
            }
            self.encode_dense(&ly.q, Some(l), t, s.h.ptr, s.q.ptr, false, split)?;
            self.encode_dense(&ly.k, Some(l), t, s.h.ptr, s.k.ptr, false, split)?;
            self.encode_dense(&ly.v, Some(l), t, s.h.ptr, s.v.ptr, false, split)?;
        }
        // t > 1: the three products above, T x rows each (q before qk_norm_rope_store, which
        // normalises and rotates it in place)
        self.tap_rows(hook, Stage::Q, None, li, &s.q._buf, 0, pos0, t, &[nh, hd])?;
        self.tap_rows(hook, Stage::K, None, li, &s.k._buf, 0, pos0, t, &[nkv, hd])?;
        self.tap_rows(hook, Stage::V, None, li, &s.v._buf, 0, pos0, t, &[nkv, hd])?;
        let nch = n_chunks(self.opts.max_ctx);
        // whether attn_combine writes the attention output as Q16 for the o projection
        let mut att_q16 = false;
        if t == 1 && self.use_fused_attn {
            // q/k norm, RoPE, K/V store, chunk partials and their merge in one launch
            self.encode_attn_decode(ly, l, nch)?;
        } else {
            let qk_cfg = LaunchConfig {
                grid_dim: ((c.n_head + c.n_head_kv) as u32, t as u32, 1),
                block_dim: (c.head_dim as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            launch!(
                self,
                "qk_norm_rope_store",
                qk_cfg,
                s.q.ptr,
                s.k.ptr,
                s.v.ptr,
                ly.q_norm.ptr,
                ly.k_norm.ptr,
                s.kc[l].ptr,
                s.vc[l].ptr,
                s.pos.ptr,
                c.n_head as i32,
                c.n_head_kv as i32,
                c.head_dim as i32,
                c.rope_base,
                c.rms_eps
            );
            // t > 1: q normed and rotated in place (T x q_dim); k normed, rotated and stored
            // into the K cache only, at rows pos0 .. pos0 + T (st.k keeps the raw product)
            let (q, kc) = (&s.q._buf, &s.kc[l]._buf);
            self.tap_rows(hook, Stage::Rope, Some("q"), li, q, 0, pos0, t, &[nh, hd])?;
            self.tap_rows(
                hook,
                Stage::Rope,
                Some("k"),
                li,
                kc,
                pos0,
                pos0,
                t,
                &[nkv, hd],
            )?;
            let g = c.n_head / c.n_head_kv;
            if t > 1 && self.use_ap && c.head_dim % 32 == 0 && c.head_dim <= 128 && 64 % g == 0 {
                let ap_cfg = LaunchConfig {
                    grid_dim: (c.n_head_kv as u32, ceil_div(t, 64 / g) as u32, 1),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: AP_SMEM_BYTES,
                };
                launch!(
                    self,
                    "attn_prefill",
                    ap_cfg,
                    s.q.ptr,
                    s.kc[l].ptr,
                    s.vc[l].ptr,
                    s.att.ptr,
                    s.pos.ptr,
                    t as i32,
                    c.n_head as i32,
                    c.n_head_kv as i32,
                    c.head_dim as i32,
                    1.0f32 / (c.head_dim as f32).sqrt()
                );
            } else {
                let part_cfg = LaunchConfig {
                    grid_dim: (c.n_head_kv as u32, nch as u32, t as u32),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                };
                launch!(
                    self,
                    "attn_partial",
                    part_cfg,
                    s.q.ptr,
                    s.kc[l].ptr,
                    s.vc[l].ptr,
                    s.part.ptr,
                    s.pos.ptr,
                    c.n_head as i32,
                    c.n_head_kv as i32,
                    c.head_dim as i32,
                    nch as i32,
                    1.0f32 / (c.head_dim as f32).sqrt()
                );
                let comb_cfg = LaunchConfig {
                    grid_dim: (c.n_head as u32, t as u32, 1),
                    block_dim: (c.head_dim as u32, 1, 1),
                    shared_mem_bytes: 0,
                };
                att_q16 = t == 1 && self.q16_o(ly);
                launch!(
                    self,
                    "attn_combine",
                    comb_cfg,
                    s.part.ptr,
                    s.att.ptr,
                    s.pos.ptr,
                    c.n_head as i32,
                    c.head_dim as i32,
                    nch as i32,
                    if att_q16 { s.attq.ptr } else { 0u64 }
                );
            }
        }
        let split_o = t > 1 && self.mq_ok(&ly.o);
        if split_o {
            self.encode_split(s.att.ptr, ly.o.k, t)?;
        }
        if att_q16 {
            // the o projection on attn_combine's Q16 output (decode_q16.cu), added to x
            let name = self.kernel_for(&ly.o, Some(l), "matvec_q16");
            launch!(
                self,
                name.as_str(),
                cfg1(ceil_div(ly.o.rows, MV_WARPS), 32 * MV_WARPS),
                ly.o.ptr,
                ly.o.row_bytes as i64,
                ly.o.rows as i32,
                ly.o.k as i32,
                s.attq.ptr,
                s.x.ptr,
                1i32
            );
        } else {
            self.encode_dense(&ly.o, Some(l), t, s.att.ptr, s.x.ptr, true, split_o)?;
        }
        // t > 1: x += attn_output(att), the residual stream after attention. (The projection
        // alone, the CPU's attn_out, is never a buffer here: the product adds into x.)
        self.tap_rows(
            hook,
            Stage::AttnResidual,
            None,
            li,
            &s.x._buf,
            0,
            pos0,
            t,
            &[hid],
        )?;
        // decode only: the gate/up product reads the router's Q16 copy of the normed h
        let q16_gate_up = t == 1 && self.q16_gate_up(ly);
        if t == 1 {
            // ffn RMSNorm + router mat-vec + top-k in one launch
            // one block per expert row
            let name = self.kernel_for(&ly.router, Some(l), "router_decode");
            let cfg = LaunchConfig {
                grid_dim: (c.n_expert as u32, 1, 1),
                block_dim: (ROUTER_THREADS, 1, 1),
                shared_mem_bytes: (c.n_embd * 4) as u32,
            };
            launch!(
                self,
                name.as_str(),
                cfg,
                ly.router.ptr,
                ly.router.row_bytes as i64,
                c.n_expert as i32,
                e,
                s.x.ptr,
                ly.ffn_norm.ptr,
                c.rms_eps,
                s.h.ptr,
                s.rl.ptr,
                k as i32,
                s.ids.ptr,
                s.wts.ptr,
                s.counter.ptr,
                if q16_gate_up { s.hq.ptr } else { 0u64 }
            );
        } else {
            launch!(
                self,
                "rmsnorm",
                cfg1(t, 256),
                s.x.ptr,
                ly.ffn_norm.ptr,
                s.h.ptr,
                e,
                c.rms_eps
            );
            self.tap_rows(
                hook,
                Stage::FfnNorm,
                None,
                li,
                &s.h._buf,
                0,
                pos0,
                t,
                &[hid],
            )?;
            if self.use_rt {
                self.encode_router_tiles(&ly.router, Some(l), t)?;
            } else {
                self.encode_dense(&ly.router, Some(l), t, s.h.ptr, s.rl.ptr, false, false)?;
            }
            // T x n_expert router logits (either product writes rows of stride n_expert)
            let (rl, ne) = (&s.rl._buf, c.n_expert);
            self.tap_rows(
                hook,
                Stage::MoeRouter,
                Some("logits"),
                li,
                rl,
                0,
                pos0,
                t,
                &[ne],
            )?;
            launch!(
                self,
                "router_topk",
                cfg1(t, 32),
                s.rl.ptr,
                c.n_expert as i32,
                k as i32,
                s.ids.ptr,
                s.wts.ptr
            );
            self.tap_router(hook, l, t)?;
        }
        let ff = c.expert_ff;
        if q16_gate_up {
            let name = self.kernel_for(&ly.gate, Some(l), "moe_gate_up2_q16");
            let gu_cfg = LaunchConfig {
                grid_dim: ((ff / 8) as u32, k as u32, 1),
                block_dim: (32 * MV_WARPS as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            launch!(
                self,
                name.as_str(),
                gu_cfg,
                ly.gate.ptr,
                ly.up.ptr,
                ly.gate.mat_bytes as i64,
                ly.gate.row_bytes as i64,
                ff as i32,
                e,
                s.hq.ptr,
                s.ids.ptr,
                s.act.ptr,
                s.actq.ptr,
                ly.down.ptr,
                ly.down.mat_bytes as i64
            );
            if self.q16_down(ly) {
                let name = self.kernel_for(&ly.down, Some(l), "moe_down_q16");
                launch!(
                    self,
                    name.as_str(),
                    cfg1(ceil_div(c.n_embd, MV_WARPS), 32 * MV_WARPS),
                    ly.down.ptr,
                    ly.down.mat_bytes as i64,
                    ly.down.row_bytes as i64,
                    e,
                    ff as i32,
                    k as i32,
                    s.actq.ptr,
                    s.ids.ptr,
                    s.wts.ptr,
                    s.x.ptr
                );
            } else {
                self.encode_down_decode(ly, l)?;
            }
        } else if t == 1 {
            let (op, rpw) = if self.decode_rpw == 2 {
                ("moe_gate_up2", 2)
            } else {
                ("moe_gate_up", 1)
            };
            let name = self.kernel_for(&ly.gate, Some(l), op);
            let gu_cfg = LaunchConfig {
                grid_dim: (ceil_div(ff, rpw * MV_WARPS) as u32, k as u32, 1),
                block_dim: (32 * MV_WARPS as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            launch!(
                self,
                name.as_str(),
                gu_cfg,
                ly.gate.ptr,
                ly.up.ptr,
                ly.gate.mat_bytes as i64,
                ly.gate.row_bytes as i64,
                ff as i32,
                e,
                s.h.ptr,
                e,
                k as i32,
                s.ids.ptr,
                s.act.ptr,
                ly.down.ptr,
                ly.down.mat_bytes as i64
            );
            self.encode_down_decode(ly, l)?;
        } else {
            let pairs = t * k;
            // the warp-parallel grouping where its counters fit (n_exp <= 128), else the serial
            let gp_w_smem = (pairs + 33 * c.n_expert) * 4;
            let gp_w = c.n_expert <= 128 && gp_w_smem <= 48 * 1024;
            let gp_cfg = LaunchConfig {
                grid_dim: (1, 1, 1),
                block_dim: (1024, 1, 1),
                shared_mem_bytes: if gp_w { gp_w_smem } else { pairs * 4 } as u32,
            };
            launch!(
                self,
                if gp_w { "group_pairs_w" } else { "group_pairs" },
                gp_cfg,
                s.ids.ptr,
                pairs as i32,
                c.n_expert as i32,
                s.off.ptr,
                s.list.ptr
            );
            let grouped = |m: &DevMat,
                           rows: usize,
                           x: u64,
                           xs: usize,
                           in_div: usize,
                           y: u64,
                           ys: usize,
                           split_ready: bool|
             -> Result<(), CudaError> {
                if split_ready && self.mq_ok(m) {
                    // A token picks an expert at most once: no expert has more than t pairs.
                    return self.encode_mq(
                        m,
                        Some(l),
                        rows,
                        in_div,
                        0,
                        Some((c.n_expert, t)),
                        y,
                        ys,
                        false,
                    );
                }
                let tc = self.tc_ok(m);
                let name = self.kernel_for(m, Some(l), if tc { "matmat_tc" } else { "matmat" });
                // A token picks an expert at most once: no expert has more than t pairs.
                let cfg = if tc {
                    LaunchConfig {
                        grid_dim: (
                            ceil_div(rows, 64) as u32,
                            ceil_div(t, 64) as u32,
                            c.n_expert as u32,
                        ),
                        block_dim: (128, 1, 1),
                        shared_mem_bytes: TC_SMEM_BYTES,
                    }
                } else {
                    LaunchConfig {
                        grid_dim: (ceil_div(rows, MV_WARPS) as u32, 1, c.n_expert as u32),
                        block_dim: (32 * MV_WARPS as u32, 1, 1),
                        shared_mem_bytes: 0,
                    }
                };
                launch!(
                    self,
                    name.as_str(),
                    cfg,
                    m.ptr,
                    m.mat_bytes as i64,
                    m.row_bytes as i64,
                    rows as i32,
                    m.k as i32,
                    x,
                    xs as i32,
                    in_div as i32,
                    0i32,
                    s.list.ptr,
                    s.off.ptr,
                    y,
                    ys as i32,
                    0i32
                );
                Ok(())
            };
            // one split of h serves gate and up (rows are tokens: pair p reads row p / k)
            let split_gu = self.mq_ok(&ly.gate) || self.mq_ok(&ly.up);
            if split_gu {
                self.encode_split(s.h.ptr, c.n_embd, t)?;
            }
            // Each grouped product writes row p = token * k + slot of its output (pair p, expert
            // ids[p]); tap_experts hands row p over as that expert's tensor at that position.
            grouped(&ly.gate, ff, s.h.ptr, c.n_embd, k, s.g.ptr, ff, split_gu)?;
            self.tap_experts(hook, Stage::MoeExpertGate, l, t, &s.g._buf, ff)?;
            grouped(&ly.up, ff, s.h.ptr, c.n_embd, k, s.u.ptr, ff, split_gu)?;
            self.tap_experts(hook, Stage::MoeExpertUp, l, t, &s.u._buf, ff)?;
            let n = (pairs * ff) as i64;
            launch!(
                self,
                "swiglu",
                cfg1(ceil_div(pairs * ff, 256), 256),
                s.g.ptr,
                s.u.ptr,
                s.act.ptr,
                n
            );
            self.tap_experts(hook, Stage::MoeExpertSwiglu, l, t, &s.act._buf, ff)?;
            let split_d = self.mq_ok(&ly.down);
            if split_d {
                self.encode_split(s.act.ptr, ff, pairs)?;
            }
            grouped(
                &ly.down, c.n_embd, s.act.ptr, ff, 1, s.y.ptr, c.n_embd, split_d,
            )?;
            self.tap_experts(hook, Stage::MoeExpertOut, l, t, &s.y._buf, hid)?;
            // moe_combine adds the weighted sum into x: the CPU's moe_ffn_out is never a buffer
            launch!(
                self,
                "moe_combine",
                cfg1(t, 256),
                s.y.ptr,
                s.wts.ptr,
                k as i32,
                e,
                s.x.ptr
            );
            self.tap_rows(
                hook,
                Stage::LayerOut,
                None,
                li,
                &s.x._buf,
                0,
                pos0,
                t,
                &[hid],
            )?;
        }
        Ok(())
    }

    /// Traced prefill: hands rows `row0 .. row0 + n` of `src` (each `row_shape` elements, row i
    /// at position `pos0 + i`) to the hook as `stage` / `part`, when it wants any of them. Called
    /// right after the launch that writes `src`; the copy is on the forward's stream and waits.
    #[allow(clippy::too_many_arguments)]
    fn tap_rows(
        &self,
        hook: &mut Option<&mut dyn TraceHook>,
        stage: Stage,
        part: Option<&str>,
        layer: Option<usize>,
        src: &CudaSlice<f32>,
        row0: usize,
        pos0: usize,
        n: usize,
        row_shape: &[usize],
    ) -> Result<(), CudaError> {
        let Some(h) = hook.as_deref_mut() else {
            return Ok(());
        };
        if !(pos0..pos0 + n).any(|p| h.wants(stage, layer, p)) {
            return Ok(());
        }
        let width: usize = row_shape.iter().product();
        let rows = self.dev.download_range(src, row0 * width, n * width)?;
        emit_rows(hook, stage, part, layer, pos0, row_shape, &rows);
        Ok(())
    }

    /// Traced prefill: the router's choice for this chunk's `t` tokens (st.ids / st.wts, T x k
    /// in selection order) as `moe_router` topk_ids and topk_weights.
    fn tap_router(
        &self,
        hook: &mut Option<&mut dyn TraceHook>,
        l: usize,
        t: usize,
    ) -> Result<(), CudaError> {
        let Some(h) = hook.as_deref_mut() else {
            return Ok(());
        };
        let pos0 = self.pos;
        if !(pos0..pos0 + t).any(|p| h.wants(Stage::MoeRouter, Some(l), p)) {
            return Ok(());
        }
        let k = self.cfg.n_expert_used;
        let ids = self.dev.download(&self.st.ids._buf, t * k)?;
        let wts = self.dev.download(&self.st.wts._buf, t * k)?;
        for i in 0..t {
            let pos = pos0 + i;
            if h.wants(Stage::MoeRouter, Some(l), pos) {
                let key = TensorKey::new(Stage::MoeRouter, Some(l), pos);
                let r = i * k..(i + 1) * k;
                h.record_i32(key.clone().part("topk_ids"), &[k], &ids[r.clone()]);
                h.record_f32(key.part("topk_weights"), &[k], &wts[r]);
            }
        }
        Ok(())
    }

    /// Traced prefill: a per-expert stage of layer `l`, `src` holding one row of `width` per
    /// (token, slot) pair p = token * k + slot (the grouped products' output layout), for the
    /// expert st.ids[p] chose.
    fn tap_experts(
        &self,
        hook: &mut Option<&mut dyn TraceHook>,
        stage: Stage,
        l: usize,
        t: usize,
        src: &CudaSlice<f32>,
        width: usize,
    ) -> Result<(), CudaError> {
        let Some(h) = hook.as_deref_mut() else {
            return Ok(());
        };
        let pos0 = self.pos;
        // for a per-expert stage, `wants` says whether any expert is wanted at that position
        if !(pos0..pos0 + t).any(|p| h.wants(stage, Some(l), p)) {
            return Ok(());
        }
        let k = self.cfg.n_expert_used;
        let ids = self.dev.download(&self.st.ids._buf, t * k)?;
        let rows = self.dev.download(src, t * k * width)?;
        for (p, row) in rows.chunks_exact(width).enumerate() {
            let pos = pos0 + p / k;
            // an id outside 0..n_expert (a broken router) is never wanted, so never recorded
            let Ok(e) = usize::try_from(ids[p]) else {
                continue;
            };
            if h.wants_expert(stage, l, pos, e) {
                let key = TensorKey::new(stage, Some(l), pos).expert(e);
                h.record_f32(key, &[width], row);
            }
        }
        Ok(())
    }

    /// Final norm and lm_head for the last `rows` of the `t` tokens.
    fn encode_head(&self, t: usize, rows: usize) -> Result<(), CudaError> {
        let c = &self.cfg;
        let s = &self.st;
        let x0 = s.x.ptr + ((t - rows) * c.n_embd * 4) as u64;
        launch!(
            self,
            "rmsnorm",
            cfg1(rows, 256),
            x0,
            self.out_norm.ptr,
            s.h.ptr,
            c.n_embd as i32,
            c.rms_eps
        );
        let head = self.output.as_ref().unwrap_or(&self.embd);
        self.encode_dense(head, None, rows, s.h.ptr, s.logits.ptr, false, false)
    }
}

/// Key chunks of the split attention (ATT_CH = 32 keys in kernels.cu).
fn n_chunks(max_ctx: usize) -> usize {
    max_ctx.div_ceil(32)
}

fn validate_config(c: &GpuConfig, o: &LoadOptions) -> Result<(), CudaError> {
    let bad = |m: String| Err(CudaError::Model(m));
    if c.head_dim == 0 || c.head_dim > 128 || c.head_dim % 32 != 0 {
        return bad(format!(
            "head_dim {} unsupported (the attention kernel needs a multiple of 32, at most 128)",
            c.head_dim
        ));
    }
    if c.n_head_kv == 0 || c.n_head % c.n_head_kv != 0 || c.n_head / c.n_head_kv > 8 {
        return bad(format!(
            "n_head {} / n_head_kv {} unsupported (the attention kernel needs a whole group of at most 8 query heads per KV head)",
            c.n_head, c.n_head_kv
        ));
    }
    if c.n_expert == 0 || c.n_expert > 256 || c.n_expert_used == 0 || c.n_expert_used > c.n_expert {
        return bad(format!(
            "{} experts with {} used is unsupported (at most 256 experts)",
            c.n_expert, c.n_expert_used
        ));
    }
    if o.max_ctx == 0 || o.max_ctx > MAX_CTX_LIMIT {
        return bad(format!("max_ctx {} outside 1..={MAX_CTX_LIMIT}", o.max_ctx));
    }
    if o.max_batch == 0 || o.max_batch * c.n_expert_used > 8192 {
        return bad(format!(
            "max_batch {} x {} experts used must be between 1 and 8192 (expert grouping keeps the ids in shared memory)",
            o.max_batch, c.n_expert_used
        ));
    }
    if c.n_embd % 4 != 0 || c.n_embd > 12 * 1024 {
        return bad(format!("n_embd {} must be a multiple of 4 and at most 12288 (the decode router keeps it in shared memory)", c.n_embd));
    }
    Ok(())
}

fn scratch_bytes(c: &GpuConfig, o: &LoadOptions) -> usize {
    let b = o.max_batch;
    let k = c.n_expert_used;
    let qd = c.n_head * c.head_dim;
    let kvd = c.n_head_kv * c.head_dim;
    let f = b * (2 * c.n_embd + 2 * qd + 2 * kvd + c.n_expert + k)
        + 3 * b * k * c.expert_ff
        + b * k * c.n_embd
        + MAX_LOGIT_ROWS.min(b).max(1) * c.vocab;
    let f = f + b * c.n_head * n_chunks(o.max_ctx) * (c.head_dim + 2);
    let i = b * k * 2 + c.n_expert + 1 + b + 1 + o.max_ctx + 2;
    let n = split_elems(c, o);
    let tiles = b + b.div_ceil(MATMAT_TT) + 1; // the router's token list and tile offsets
    let tickets = c.n_head_kv; // attn_decode
    4 * (f + i + tiles + tickets) + 2 * n + 4 * (n / 16) + 4 * (n / 32)
}

/// Elements of the largest activation matrix the prefill products split (split_act_q16): the
/// tokens' rows of h or att, or the pairs' rows of the expert activations.
fn split_elems(c: &GpuConfig, o: &LoadOptions) -> usize {
    let b = o.max_batch;
    let qd = c.n_head * c.head_dim;
    (b * c.n_embd)
        .max(b * qd)
        .max(b * c.n_expert_used * c.expert_ff)
}

fn alloc_state(dev: &GpuDevice, c: &GpuConfig, o: &LoadOptions) -> Result<State, CudaError> {
    let b = o.max_batch;
    let k = c.n_expert_used;
    let qd = c.n_head * c.head_dim;
    let kvd = c.n_head_kv * c.head_dim;
    let f = |n: usize, what: &str| -> Result<Buf<f32>, CudaError> {
        let s = dev.alloc::<f32>(n, what)?;
        let ptr = dptr(&s, &dev.stream);
        Ok(Buf { _buf: s, ptr })
    };
    let i = |n: usize, what: &str| -> Result<Buf<i32>, CudaError> {
        let s = dev.alloc::<i32>(n, what)?;
        let ptr = dptr(&s, &dev.stream);
        Ok(Buf { _buf: s, ptr })
    };
    let bytes = |n: usize, what: &str| -> Result<Buf<u8>, CudaError> {
        let s = dev.alloc::<u8>(n, what)?;
        let ptr = dptr(&s, &dev.stream);
        Ok(Buf { _buf: s, ptr })
    };
    let n_split = split_elems(c, o);
    let mut tok_list = i(b, "token list")?;
    let ids: Vec<i32> = (0..b as i32).collect();
    dev.stream
        .memcpy_htod(&ids[..], &mut tok_list._buf)
        .map_err(drv("writing the token list"))?;
    let mut kc = Vec::new();
    let mut vc = Vec::new();
    for _ in 0..c.n_layer {
        kc.push(f(o.max_ctx * kvd, "the K cache")?);
        vc.push(f(o.max_ctx * kvd, "the V cache")?);
    }
    Ok(State {
        kc,
        vc,
        x: f(b * c.n_embd, "activations")?,
        h: f(b * c.n_embd, "activations")?,
        q: f(b * qd, "activations")?,
        k: f(b * kvd, "activations")?,
        v: f(b * kvd, "activations")?,
        att: f(b * qd, "activations")?,
        part: f(
            b * c.n_head * n_chunks(o.max_ctx) * (c.head_dim + 2),
            "attention partials",
        )?,
        rl: f(b * c.n_expert, "router logits")?,
        ids: i(b * k, "expert ids")?,
        wts: f(b * k, "expert weights")?,
        off: i(c.n_expert + 1, "expert offsets")?,
        list: i(b * k, "expert pair lists")?,
        g: f(b * k * c.expert_ff, "expert activations")?,
        u: f(b * k * c.expert_ff, "expert activations")?,
        act: f(b * k * c.expert_ff, "expert activations")?,
        y: f(b * k * c.n_embd, "expert outputs")?,
        logits: f(MAX_LOGIT_ROWS.min(b).max(1) * c.vocab, "logits")?,
        tok: i(b + 1, "tokens")?,
        pos: i(1, "position")?,
        counter: i(1, "the router's block counter")?,
        hist: i(o.max_ctx + 2, "token history")?,
        xh: bytes(n_split, "split activations")?,
        xl: bytes(n_split, "split activations")?,
        xd: f(n_split / 32, "activation group scales")?,
        xs: f(n_split / 16, "activation group sums")?,
        tok_list,
        tok_off: i(b.div_ceil(MATMAT_TT) + 1, "token tiles")?,
        att_counter: i(c.n_head_kv, "attention tickets")?,
        hq: bytes(3 * c.n_embd, "the decode router's Q16 output")?,
        attq: bytes(3 * qd, "the decode attention output as Q16")?,
        actq: bytes(3 * k * c.expert_ff, "the decode SwiGLU outputs as Q16")?,
    })
}

fn upload_mat(
    dev: &GpuDevice,
    t: &HostTensor<'_>,
    dims: &[usize],
    repack: &mut Vec<u8>,
) -> Result<DevMat, CudaError> {
    let qt = GpuQType::from_ggml(t.ggml_type).map_err(|q| CudaError::UnsupportedQType {
        tensor: t.name.clone(),
        qtype: q,
    })?;
    let got: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    // Trailing 1s are not stored by every writer: compare up to them.
    let trim = |v: &[usize]| -> Vec<usize> {
        let mut v = v.to_vec();
        while v.len() > 1 && v.last() == Some(&1) {
            v.pop();
        }
        v
    };
    if trim(&got) != trim(dims) {
        return Err(CudaError::Model(format!(
            "tensor `{}` has dims {:?}, expected {:?}",
            t.name, got, dims
        )));
    }
    let k = dims[0];
    if k % qt.row_multiple() != 0 {
        return Err(CudaError::Model(format!(
            "tensor `{}`: row length {k} is not a multiple of {} as the {} kernel needs",
            t.name,
            qt.row_multiple(),
            qt.name()
        )));
    }
    let n_rows_total: usize = dims[1..].iter().product();
    let expect = qt.file_row_bytes(k) * n_rows_total;
    if t.data.len() != expect {
        return Err(CudaError::Model(format!(
            "tensor `{}` holds {} bytes, expected {expect}",
            t.name,
            t.data.len()
        )));
    }
    let bytes: &[u8] = if qt.device_block_bytes() != qt.file_block_bytes() {
        repack_for_device(qt, t.data, repack);
        repack
    } else {
        t.data
    };
    let buf = dev.upload::<u8>(bytes, &t.name)?;
    let ptr = dptr(&buf, &dev.stream);
    let row_bytes = qt.device_row_bytes(k);
    Ok(DevMat {
        qt,
        _buf: buf,
        ptr,
        k,
        rows: dims[1],
        row_bytes,
        mat_bytes: row_bytes * dims[1],
    })
}

fn upload_vec(dev: &GpuDevice, t: &HostTensor<'_>, n: usize) -> Result<DevVec, CudaError> {
    let qt = GpuQType::from_ggml(t.ggml_type).map_err(|q| CudaError::UnsupportedQType {
        tensor: t.name.clone(),
        qtype: q,
    })?;
    if t.dims.iter().product::<u64>() as usize != n || t.data.len() != qt.file_row_bytes(n) {
        return Err(CudaError::Model(format!(
            "tensor `{}` has dims {:?}, expected [{n}]",
            t.name, t.dims
        )));
    }
    if n % qt.block_elems() != 0 {
        return Err(CudaError::Model(format!(
            "tensor `{}`: length {n} is not whole blocks",
            t.name
        )));
    }
    let mut v = vec![0f32; n];
    dequantize_row_file(qt, t.data, &mut v);
    let buf = dev.upload::<f32>(&v, &t.name)?;
    let ptr = dptr(&buf, &dev.stream);
    Ok(DevVec { _buf: buf, ptr })
}

/// Per-tensor layout on the device, for the preload falsifier: (name, qtype, k, rows, n_mat,
/// device bytes).
pub fn device_layout(m: &GpuModel) -> Vec<(String, GpuQType, usize, usize, usize)> {
    let mut v = Vec::new();
    let mut push = |n: String, d: &DevMat| v.push((n, d.qt, d.k, d.rows, d._buf.len()));
    push("token_embd.weight".into(), &m.embd);
    if let Some(o) = &m.output {
        push("output.weight".into(), o);
    }
    for (l, ly) in m.layers.iter().enumerate() {
        for (s, d) in [
            ("attn_q", &ly.q),
            ("attn_k", &ly.k),
            ("attn_v", &ly.v),
            ("attn_output", &ly.o),
            ("ffn_gate_inp", &ly.router),
            ("ffn_gate_exps", &ly.gate),
            ("ffn_up_exps", &ly.up),
            ("ffn_down_exps", &ly.down),
        ] {
            push(format!("blk.{l}.{s}.weight"), d);
        }
    }
    v
}

impl GpuModel {
    /// Weight bytes one decode step must read at least: every dense matrix once, the k selected
    /// experts' gate/up/down, the head, one embedding row (device layout).
    pub fn active_bytes_per_token(&self) -> usize {
        let k = self.cfg.n_expert_used;
        let mut b = self.embd.row_bytes;
        for ly in &self.layers {
            b += ly.q.mat_bytes
                + ly.k.mat_bytes
                + ly.v.mat_bytes
                + ly.o.mat_bytes
                + ly.router.mat_bytes;
            b += k * (ly.gate.mat_bytes + ly.up.mat_bytes + ly.down.mat_bytes);
        }
        b + self.output.as_ref().unwrap_or(&self.embd).mat_bytes
    }
}

impl GpuModel {
    /// Tokens the device wrote at positions `from .. from + n` (greedy decode history).
    pub fn generated_tokens(&self, from: usize, n: usize) -> Result<Vec<u32>, CudaError> {
        let h = self.dev.download(&self.st.hist._buf, from + n)?;
        Ok(h[from..].iter().map(|&t| t as u32).collect())
    }
}
