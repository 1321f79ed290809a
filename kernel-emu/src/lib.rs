//! The engine's CUDA kernels (engine/src/cuda/*.cu) run on the CPU by a SIMT emulator (`simt.h`),
//! so that what they compute can be tested on a machine without a GPU (CI, or a session that has no
//! device). One `std::thread` per CUDA thread, blocks one after another; the replaced instructions
//! (mma.sync, cp.async, f16 conversions) follow the PTX ISA. This checks the kernels' logic, not
//! their speed, and not the hardware's rounding in the last bits.
//!
//! The wrappers check every length against the launch geometry before calling into C++, and
//! return [`EmuError`] rather than let the kernel read or write out of bounds.

use engine::cuda::GpuQType;

pub mod testdata;

/// A launch whose buffers do not match its geometry.
#[derive(Debug, thiserror::Error)]
pub enum EmuError {
    #[error("{0}")]
    Geometry(String),
    #[error("qtype {0} has no matmat_qi kernel (Q4_K, Q5_K, Q6_K and Q8_0 do)")]
    QType(&'static str),
}

fn need(ok: bool, what: impl FnOnce() -> String) -> Result<(), EmuError> {
    if ok {
        Ok(())
    } else {
        Err(EmuError::Geometry(what()))
    }
}

mod ffi {
    extern "C" {
        pub fn emu_split_act_q16(
            x: *const f32,
            x_stride: i32,
            k: i32,
            rows: i32,
            xh: *mut i8,
            xl: *mut i8,
            xd: *mut f32,
            xs: *mut f32,
        ) -> i32;
        pub fn emu_matmat_qi(
            qt: i32,
            w: *const u8,
            expert_bytes: i64,
            row_bytes: i64,
            nrows: i32,
            k: i32,
            xh: *const i8,
            xl: *const i8,
            xd: *const f32,
            xs: *const f32,
            in_div: i32,
            n_dense: i32,
            list: *const i32,
            off: *const i32,
            groups: i32,
            max_pairs: i32,
            y: *mut f32,
            y_stride: i32,
            mode: i32,
        ) -> i32;
        pub fn emu_qi_smem_bytes() -> i32;
        pub fn emu_matmat_tc(
            qt: i32,
            w: *const u8,
            expert_bytes: i64,
            row_bytes: i64,
            nrows: i32,
            k: i32,
            x: *const f32,
            x_stride: i32,
            in_div: i32,
            n_dense: i32,
            list: *const i32,
            off: *const i32,
            groups: i32,
            max_pairs: i32,
            y: *mut f32,
            y_stride: i32,
            mode: i32,
        ) -> i32;
        pub fn emu_attn_prefill(
            q: *const f32,
            kc: *const f32,
            vc: *const f32,
            out: *mut f32,
            pos0: i32,
            t: i32,
            n_head: i32,
            n_head_kv: i32,
            hd: i32,
            scale: f32,
        ) -> i32;
        pub fn emu_ap_smem_bytes() -> i32;
        pub fn emu_matmat(
            qt: i32,
            w: *const u8,
            expert_bytes: i64,
            row_bytes: i64,
            nrows: i32,
            k: i32,
            x: *const f32,
            x_stride: i32,
            in_div: i32,
            n_dense: i32,
            list: *const i32,
            off: *const i32,
            groups: i32,
            y: *mut f32,
            y_stride: i32,
            mode: i32,
        ) -> i32;
        pub fn emu_matmat_tt() -> i32;
        pub fn emu_attn_decode(
            variant: i32,
            q: *mut f32,
            k: *const f32,
            v: *const f32,
            qnw: *const f32,
            knw: *const f32,
            kc: *mut f32,
            vc: *mut f32,
            part: *mut f32,
            out: *mut f32,
            pos: i32,
            n_head: i32,
            n_head_kv: i32,
            hd: i32,
            n_chunks: i32,
            scale: f32,
            base: f32,
            eps: f32,
            counter: *mut u32,
        ) -> i32;
        pub fn emu_moe_gate_up(
            variant: i32,
            qt: i32,
            wg: *const u8,
            wu: *const u8,
            expert_bytes: i64,
            row_bytes: i64,
            ff: i32,
            k: i32,
            x: *const f32,
            x_stride: i32,
            in_div: i32,
            ids: *const i32,
            pairs: i32,
            act: *mut f32,
        ) -> i32;
        pub fn emu_matvec3n(
            qt: i32,
            qt2: i32,
            w0: *const u8,
            w1: *const u8,
            w2: *const u8,
            row_bytes: i64,
            row_bytes2: i64,
            n0: i32,
            n1: i32,
            n2: i32,
            k: i32,
            x: *const f32,
            nw: *const f32,
            eps: f32,
            h_out: *mut f32,
            y0: *mut f32,
            y1: *mut f32,
            y2: *mut f32,
        ) -> i32;
        pub fn emu_q16_quantize(x: *const f32, k: i32, out: *mut u8) -> i32;
        pub fn emu_router_decode(
            qt: i32,
            w: *const u8,
            row_bytes: i64,
            n_exp: i32,
            k: i32,
            x: *const f32,
            nw: *const f32,
            eps: f32,
            h_out: *mut f32,
            logits: *mut f32,
            k_used: i32,
            ids: *mut i32,
            wts: *mut f32,
            counter: *mut u32,
            hq: *mut u8,
        ) -> i32;
        pub fn emu_q16_quantize_lanes8(x: *const f32, k: i32, threads: i32, out: *mut u8) -> i32;
        pub fn emu_matvec_q16(
            qt: i32,
            w: *const u8,
            row_bytes: i64,
            nrows: i32,
            k: i32,
            xq: *const u8,
            y: *mut f32,
            mode: i32,
        ) -> i32;
        pub fn emu_moe_gate_up2_q16(
            qt: i32,
            wg: *const u8,
            wu: *const u8,
            expert_bytes: i64,
            row_bytes: i64,
            ff: i32,
            k: i32,
            xq: *const u8,
            ids: *const i32,
            pairs: i32,
            act: *mut f32,
            actq: *mut u8,
        ) -> i32;
        pub fn emu_moe_down_q16(
            qt: i32,
            wd: *const u8,
            expert_bytes: i64,
            row_bytes: i64,
            nrows: i32,
            ff: i32,
            k: i32,
            actq: *const u8,
            ids: *const i32,
            wts: *const f32,
            x: *mut f32,
        ) -> i32;
        pub fn emu_matvec3n_q16(
            qt: i32,
            qt2: i32,
            w0: *const u8,
            w1: *const u8,
            w2: *const u8,
            row_bytes: i64,
            row_bytes2: i64,
            n0: i32,
            n1: i32,
            n2: i32,
            k: i32,
            x: *const f32,
            nw: *const f32,
            eps: f32,
            h_out: *mut f32,
            y0: *mut f32,
            y1: *mut f32,
            y2: *mut f32,
        ) -> i32;
        pub fn emu_matvec4(
            qt: i32,
            w: *const u8,
            row_bytes: i64,
            nrows: i32,
            k: i32,
            x: *const f32,
            y: *mut f32,
            mode: i32,
        ) -> i32;
        pub fn emu_group_pairs(
            variant: i32,
            ids: *const i32,
            n_pairs: i32,
            n_exp: i32,
            off: *mut i32,
            list: *mut i32,
        ) -> i32;
        pub fn emu_matvec3(
            variant: i32,
            qt: i32,
            w0: *const u8,
            w1: *const u8,
            w2: *const u8,
            row_bytes: i64,
            n0: i32,
            n1: i32,
            n2: i32,
            k: i32,
            x: *const f32,
            y0: *mut f32,
            y1: *mut f32,
            y2: *mut f32,
        ) -> i32;
    }
}

/// 16-byte aligned storage: the kernels load and store 16 bytes at a time (uint4, float4), which
/// on the device is safe because every allocation is 256-byte aligned, and on the CPU needs the
/// same alignment (the compiler emits aligned vector instructions for those types).
#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct Chunk([u8; 16]);

struct Aligned(Vec<Chunk>);

impl Aligned {
    fn zeroed(bytes: usize) -> Self {
        Aligned(vec![Chunk([0; 16]); bytes.div_ceil(16)])
    }
    fn from_bytes(b: &[u8]) -> Self {
        let mut a = Self::zeroed(b.len());
        a.bytes_mut()[..b.len()].copy_from_slice(b);
        a
    }
    fn from_f32(v: &[f32]) -> Self {
        let mut a = Self::zeroed(4 * v.len());
        for (d, s) in a.bytes_mut().chunks_exact_mut(4).zip(v) {
            d.copy_from_slice(&s.to_ne_bytes());
        }
        a
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: Chunk is 16 plain bytes; the Vec's buffer is len * 16 initialised bytes.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr() as *mut u8, self.0.len() * 16) }
    }
    fn bytes(&self) -> &[u8] {
        // SAFETY: as in bytes_mut.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr() as *const u8, self.0.len() * 16) }
    }
    fn ptr<T>(&self) -> *const T {
        self.0.as_ptr() as *const T
    }
    fn mut_ptr<T>(&mut self) -> *mut T {
        self.0.as_mut_ptr() as *mut T
    }
    fn to_f32(&self, n: usize) -> Vec<f32> {
        self.bytes()[..4 * n]
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}

/// Which pairs a matmat_qi (or matmat_tc) launch multiplies.
#[derive(Clone, Copy, Debug)]
pub enum Pairs<'a> {
    /// One group (expert 0) holding pairs 0 .. n.
    Dense(usize),
    /// Grouped MoE: group e holds pairs `list[off[e] .. off[e + 1]]`; `max_pairs` bounds every
    /// group's size (grid.y).
    Grouped {
        list: &'a [i32],
        off: &'a [i32],
        max_pairs: usize,
    },
}

/// A weight matrix (one or more experts) in the device layout (`repack_for_device`).
#[derive(Clone, Copy, Debug)]
pub struct Weights<'a> {
    pub qt: GpuQType,
    pub bytes: &'a [u8],
    pub rows: usize,
    pub k: usize,
    pub experts: usize,
}

/// A launch's pair geometry, checked against its buffers.
struct Launch {
    qt_id: i32,
    row_bytes: usize,
    expert_bytes: usize,
    n_dense: usize,
    list: *const i32,
    off: *const i32,
    groups: usize,
    max_pairs: usize,
}

fn check_launch(
    w: &Weights<'_>,
    x_rows: usize,
    in_div: usize,
    pairs: Pairs<'_>,
    y: &[f32],
    y_stride: usize,
) -> Result<Launch, EmuError> {
    let qt_id = match w.qt {
        GpuQType::Q4K | GpuQType::Q5K | GpuQType::Q6K | GpuQType::Q8_0 => w.qt.ggml_id() as i32,
        other => return Err(EmuError::QType(other.name())),
    };
    let row_bytes = w.qt.device_row_bytes(w.k);
    let expert_bytes = row_bytes * w.rows;
    need(w.k % 128 == 0 && w.k % w.qt.row_multiple() == 0, || {
        format!(
            "k = {} must be a multiple of 128 and of {}",
            w.k,
            w.qt.row_multiple()
        )
    })?;
    need(w.bytes.len() == expert_bytes * w.experts, || {
        format!(
            "weights hold {} bytes, {} experts x {} rows x {row_bytes} need {}",
            w.bytes.len(),
            w.experts,
            w.rows,
            expert_bytes * w.experts
        )
    })?;
    need(in_div > 0 && y_stride >= w.rows, || {
        format!("in_div = {in_div} must be > 0, y_stride = {y_stride} >= rows")
    })?;
    let (n_dense, list, off, groups, max_pairs, n_pairs) = match pairs {
        Pairs::Dense(n) => (n, std::ptr::null(), std::ptr::null(), 1usize, n, n),
        Pairs::Grouped {
            list,
            off,
            max_pairs,
        } => {
            need(off.len() == w.experts + 1 && off[0] == 0, || {
                format!("off needs {} entries starting at 0", w.experts + 1)
            })?;
            need(off.windows(2).all(|p| p[0] <= p[1]), || {
                "off must not decrease".to_string()
            })?;
            need(off[w.experts] as usize == list.len(), || {
                "off's last entry must equal list.len()".to_string()
            })?;
            need(
                off.windows(2).all(|p| (p[1] - p[0]) as usize <= max_pairs),
                || format!("a group holds more than max_pairs = {max_pairs}"),
            )?;
            need(list.iter().all(|&p| p >= 0), || "negative pair id".into())?;
            let n = list.iter().map(|&p| p as usize + 1).max().unwrap_or(0);
            (0, list.as_ptr(), off.as_ptr(), w.experts, max_pairs, n)
        }
    };
    need(n_pairs == 0 || (n_pairs - 1) / in_div < x_rows, || {
        format!(
            "pair {} reads activation row {}, only {x_rows} rows",
            n_pairs - 1,
            (n_pairs - 1) / in_div
        )
    })?;
    need(
        n_pairs == 0 || y.len() >= (n_pairs - 1) * y_stride + w.rows,
        || {
            format!(
                "y holds {} floats, pair {} needs more",
                y.len(),
                n_pairs - 1
            )
        },
    )?;
    Ok(Launch {
        qt_id,
        row_bytes,
        expert_bytes,
        n_dense,
        list,
        off,
        groups,
        max_pairs,
    })
}

/// Dynamic shared memory one matmat_qi block asks for (two pipeline stages).
pub fn qi_smem_bytes() -> usize {
    // SAFETY: a constant, no arguments.
    unsafe { ffi::emu_qi_smem_bytes() as usize }
}

/// split_act_q16's output, per row of k activations: per 32 elements a scale `dx` and 16-bit
/// integers v = 256 hi + lo (x ~ dx v), and per 16 elements `sums` = dx times the sum of v.
#[derive(Clone, Debug)]
pub struct SplitQ16 {
    pub rows: usize,
    pub k: usize,
    pub hi: Vec<i8>,
    pub lo: Vec<i8>,
    pub dx: Vec<f32>,
    pub sums: Vec<f32>,
}

impl SplitQ16 {
    /// Element i of row r as an integer.
    pub fn v(&self, r: usize, i: usize) -> i32 {
        256 * self.hi[r * self.k + i] as i32 + self.lo[r * self.k + i] as i32
    }
    /// Row r as the values the kernel multiplies: dx v, in float64 (exact).
    pub fn values(&self, r: usize) -> Vec<f64> {
        (0..self.k)
            .map(|i| self.dx[r * self.k / 32 + i / 32] as f64 * self.v(r, i) as f64)
            .collect()
    }
}

/// Run split_act_q16 over `rows` rows of `x` (row stride `x_stride`, `k` used columns).
pub fn split_act_q16(
    x: &[f32],
    x_stride: usize,
    k: usize,
    rows: usize,
) -> Result<SplitQ16, EmuError> {
    need(k % 32 == 0 && k > 0, || {
        format!("k = {k} is not a positive multiple of 32")
    })?;
    need(x_stride >= k && x_stride % 4 == 0, || {
        format!("x_stride = {x_stride} must be >= k and a multiple of 4")
    })?;
    need(rows > 0 && x.len() >= (rows - 1) * x_stride + k, || {
        format!(
            "x holds {} floats, {rows} rows of stride {x_stride} need more",
            x.len()
        )
    })?;
    let xa = Aligned::from_f32(x);
    let mut hi = Aligned::zeroed(rows * k);
    let mut lo = Aligned::zeroed(rows * k);
    let mut dx = Aligned::zeroed(4 * rows * k / 32);
    let mut sums = Aligned::zeroed(4 * rows * k / 16);
    // SAFETY: the lengths were checked above against what the kernel touches: row r reads
    // x[r * x_stride .. + k] and writes hi/lo[r * k .. + k], dx[r * k / 32 .. + k / 32] and
    // sums[r * k / 16 .. + k / 16]; every buffer is 16-byte aligned (Aligned).
    unsafe {
        ffi::emu_split_act_q16(
            xa.ptr(),
            x_stride as i32,
            k as i32,
            rows as i32,
            hi.mut_ptr(),
            lo.mut_ptr(),
            dx.mut_ptr(),
            sums.mut_ptr(),
        );
    }
    let bytes = |a: &Aligned| a.bytes()[..rows * k].iter().map(|&b| b as i8).collect();
    Ok(SplitQ16 {
        rows,
        k,
        hi: bytes(&hi),
        lo: bytes(&lo),
        dx: dx.to_f32(rows * k / 32),
        sums: sums.to_f32(rows * k / 16),
    })
}

/// Y[p, r] (= or +=) W_e[r, :] . X[p / in_div, :], as mmq.cu's matmat_qi kernel computes it on
/// split_act_q16's activations.
pub fn matmat_qi(
    w: Weights<'_>,
    x: &SplitQ16,
    in_div: usize,
    pairs: Pairs<'_>,
    y: &mut [f32],
    y_stride: usize,
    add: bool,
) -> Result<(), EmuError> {
    need(x.k == w.k, || {
        format!("activations have k = {}, weights {}", x.k, w.k)
    })?;
    let l = check_launch(&w, x.rows, in_div, pairs, y, y_stride)?;
    if l.max_pairs == 0 {
        return Ok(());
    }
    let wa = Aligned::from_bytes(w.bytes);
    let xh: Vec<u8> = x.hi.iter().map(|&v| v as u8).collect();
    let xl: Vec<u8> = x.lo.iter().map(|&v| v as u8).collect();
    let (xh, xl, xd, xs) = (
        Aligned::from_bytes(&xh),
        Aligned::from_bytes(&xl),
        Aligned::from_f32(&x.dx),
        Aligned::from_f32(&x.sums),
    );
    // SAFETY: check_launch checked every extent against the launch geometry: the kernel reads
    // rows < w.rows of each expert < w.experts, activation rows p / in_div < x.rows (k bytes,
    // k / 32 scales and k / 16 sums each), and writes y[p * y_stride + r] for the pairs p it was
    // given and r < w.rows. The inputs it reads 16 bytes at a time are 16-byte aligned copies
    // (Aligned).
    let rc = unsafe {
        ffi::emu_matmat_qi(
            l.qt_id,
            wa.ptr(),
            l.expert_bytes as i64,
            l.row_bytes as i64,
            w.rows as i32,
            w.k as i32,
            xh.ptr(),
            xl.ptr(),
            xd.ptr(),
            xs.ptr(),
            in_div as i32,
            l.n_dense as i32,
            l.list,
            l.off,
            l.groups as i32,
            l.max_pairs as i32,
            y.as_mut_ptr(),
            y_stride as i32,
            add as i32,
        )
    };
    need(rc == 0, || format!("the emulated launch returned {rc}"))
}

/// The same product by the engine's own matmat_tc kernel (engine/src/cuda/kernels.cu, inline
/// PTX replaced by the emulator's): X is f32, `x_rows` rows of stride k.
#[allow(clippy::too_many_arguments)]
pub fn matmat_tc(
    w: Weights<'_>,
    x: &[f32],
    x_rows: usize,
    in_div: usize,
    pairs: Pairs<'_>,
    y: &mut [f32],
    y_stride: usize,
    add: bool,
) -> Result<(), EmuError> {
    need(x.len() == x_rows * w.k, || {
        format!(
            "x holds {} floats, {x_rows} rows of {} need more",
            x.len(),
            w.k
        )
    })?;
    let l = check_launch(&w, x_rows, in_div, pairs, y, y_stride)?;
    if l.max_pairs == 0 {
        return Ok(());
    }
    let (wa, xa) = (Aligned::from_bytes(w.bytes), Aligned::from_f32(x));
    // SAFETY: as in matmat_qi; x's extent was checked above.
    let rc = unsafe {
        ffi::emu_matmat_tc(
            l.qt_id,
            wa.ptr(),
            l.expert_bytes as i64,
            l.row_bytes as i64,
            w.rows as i32,
            w.k as i32,
            xa.ptr(),
            w.k as i32,
            in_div as i32,
            l.n_dense as i32,
            l.list,
            l.off,
            l.groups as i32,
            l.max_pairs as i32,
            y.as_mut_ptr(),
            y_stride as i32,
            add as i32,
        )
    };
    need(rc == 0, || format!("the emulated launch returned {rc}"))
}

/// Dynamic shared memory one attn_prefill block asks for.
pub fn ap_smem_bytes() -> usize {
    // SAFETY: a constant, no arguments.
    unsafe { ffi::emu_ap_smem_bytes() as usize }
}

/// Attention geometry: `n_head` query heads sharing `n_head_kv` KV heads of `hd` dims.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub hd: usize,
}

/// attn_prefill.cu's kernel: causal attention of `t` query tokens at positions pos0 ..
/// pos0 + t - 1 over the cache rows 0 .. pos0 + t - 1 (kc, vc: rows of n_head_kv * hd floats).
/// Returns t x (n_head * hd).
pub fn attn_prefill(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    pos0: usize,
    t: usize,
    h: Heads,
    scale: f32,
) -> Result<Vec<f32>, EmuError> {
    need(h.n_head_kv > 0 && h.n_head % h.n_head_kv == 0, || {
        format!(
            "{} query heads do not share {} KV heads evenly",
            h.n_head, h.n_head_kv
        )
    })?;
    let g = h.n_head / h.n_head_kv;
    need(64 % g == 0, || {
        format!("64 query rows per block need G | 64, G = {g}")
    })?;
    need(h.hd % 32 == 0 && h.hd > 0 && h.hd <= 128, || {
        format!("hd = {} must be a multiple of 32, at most 128", h.hd)
    })?;
    let q_dim = h.n_head * h.hd;
    let kv_dim = h.n_head_kv * h.hd;
    need(t > 0 && q.len() == t * q_dim, || {
        format!("q holds {} floats, {t} tokens need {}", q.len(), t * q_dim)
    })?;
    let keys = pos0 + t;
    need(
        kc.len() >= keys * kv_dim && vc.len() >= keys * kv_dim,
        || format!("the caches need {keys} rows of {kv_dim}"),
    )?;
    let (qa, ka, va) = (
        Aligned::from_f32(q),
        Aligned::from_f32(kc),
        Aligned::from_f32(vc),
    );
    let mut out = Aligned::zeroed(4 * t * q_dim);
    // SAFETY: the kernel reads q[.. t * q_dim], cache rows < pos0 + t and writes out[.. t *
    // q_dim], all checked above; every buffer is a 16-byte aligned copy.
    unsafe {
        ffi::emu_attn_prefill(
            qa.ptr(),
            ka.ptr(),
            va.ptr(),
            out.mut_ptr(),
            pos0 as i32,
            t as i32,
            h.n_head as i32,
            h.n_head_kv as i32,
            h.hd as i32,
            scale,
        );
    }
    Ok(out.to_f32(t * q_dim))
}

/// Which decode kernels to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decode {
    /// kernels.cu's: one row per warp; qk_norm_rope_store, attn_partial, attn_combine.
    KernelsCu,
    /// decode.cu's: two rows per warp; attention in one launch (attn_decode).
    DecodeCu,
}

fn check_rows(w: &Weights<'_>) -> Result<usize, EmuError> {
    need(w.k % w.qt.row_multiple() == 0 && w.k > 0, || {
        format!("k = {} must be a multiple of {}", w.k, w.qt.row_multiple())
    })?;
    let row_bytes = w.qt.device_row_bytes(w.k);
    need(w.bytes.len() == row_bytes * w.rows * w.experts, || {
        format!(
            "weights hold {} bytes, {} x {} rows of {row_bytes} need more",
            w.bytes.len(),
            w.experts,
            w.rows
        )
    })?;
    Ok(row_bytes)
}

/// act[p * ff + r] = silu(gate_e . x) * (up_e . x), e = ids[p], x = row p / in_div of `x`.
pub fn moe_gate_up(
    which: Decode,
    gate: Weights<'_>,
    up: Weights<'_>,
    x: &[f32],
    in_div: usize,
    ids: &[i32],
) -> Result<Vec<f32>, EmuError> {
    let row_bytes = check_rows(&gate)?;
    need(
        up.qt == gate.qt && up.rows == gate.rows && up.k == gate.k && up.experts == gate.experts,
        || "gate and up must have one shape and qtype".into(),
    )?;
    check_rows(&up)?;
    let (ff, k) = (gate.rows, gate.k);
    need(in_div > 0 && !ids.is_empty(), || {
        "in_div > 0 and at least one pair".into()
    })?;
    need(
        ids.iter().all(|&e| e >= 0 && (e as usize) < gate.experts),
        || "an expert id is out of range".into(),
    )?;
    need(x.len() >= ((ids.len() - 1) / in_div + 1) * k, || {
        "x is shorter than the pairs' tokens need".into()
    })?;
    let (ga, ua, xa) = (
        Aligned::from_bytes(gate.bytes),
        Aligned::from_bytes(up.bytes),
        Aligned::from_f32(x),
    );
    let mut act = vec![f32::NAN; ids.len() * ff];
    // SAFETY: expert ids < experts, rows < ff, tokens < x's rows: checked above; act holds
    // pairs x ff.
    let rc = unsafe {
        ffi::emu_moe_gate_up(
            (which == Decode::DecodeCu) as i32,
            gate.qt.ggml_id() as i32,
            ga.ptr(),
            ua.ptr(),
            (row_bytes * ff) as i64,
            row_bytes as i64,
            ff as i32,
            k as i32,
            xa.ptr(),
            k as i32,
            in_div as i32,
            ids.as_ptr(),
            ids.len() as i32,
            act.as_mut_ptr(),
        )
    };
    need(rc == 0, || format!("the emulated launch returned {rc}"))?;
    Ok(act)
}

/// (W0 x, W1 x, W2 x) for one token: the decode q / k / v launch.
pub fn matvec3(which: Decode, w: [Weights<'_>; 3], x: &[f32]) -> Result<[Vec<f32>; 3], EmuError> {
    let row_bytes = check_rows(&w[0])?;
    for m in &w[1..] {
        need(m.qt == w[0].qt && m.k == w[0].k, || {
            "one qtype and k for all three".into()
        })?;
        check_rows(m)?;
    }
    need(x.len() == w[0].k, || {
        format!("x must hold k = {} floats", w[0].k)
    })?;
    let a: Vec<Aligned> = w.iter().map(|m| Aligned::from_bytes(m.bytes)).collect();
    let xa = Aligned::from_f32(x);
    let mut y = [
        vec![f32::NAN; w[0].rows],
        vec![f32::NAN; w[1].rows],
        vec![f32::NAN; w[2].rows],
    ];
    let [y0, y1, y2] = &mut y;
    // SAFETY: each matrix holds its rows of row_bytes (checked); y_i holds w_i.rows floats.
    let rc = unsafe {
        ffi::emu_matvec3(
            (which == Decode::DecodeCu) as i32,
            w[0].qt.ggml_id() as i32,
            a[0].ptr(),
            a[1].ptr(),
            a[2].ptr(),
            row_bytes as i64,
            w[0].rows as i32,
            w[1].rows as i32,
            w[2].rows as i32,
            w[0].k as i32,
            xa.ptr(),
            y0.as_mut_ptr(),
            y1.as_mut_ptr(),
            y2.as_mut_ptr(),
        )
    };
    need(rc == 0, || format!("the emulated launch returned {rc}"))?;
    Ok(y)
}

/// Tokens per warp pass of kernels.cu's matmat (TT).
pub fn matmat_tt() -> usize {
    // SAFETY: a constant, no arguments.
    unsafe { ffi::emu_matmat_tt() as usize }
}

/// Y[t, r] = W[r, :] . X[t, :] for t < `t`, by the engine's matmat kernel in token tiles: one
/// group of [`matmat_tt`] tokens per grid.z, every group reading the same matrix (expert_bytes
/// 0), the pair list the identity. This is how the adoption patch runs the prefill router.
pub fn matmat_token_tiles(w: Weights<'_>, x: &[f32], t: usize) -> Result<Vec<f32>, EmuError> {
    let row_bytes = check_rows(&w)?;
    need(w.experts == 1, || "one matrix".into())?;
    need(t > 0 && x.len() == t * w.k, || {
        format!("x must hold {t} rows of {}", w.k)
    })?;
    let tt = matmat_tt();
    let groups = t.div_ceil(tt);
    let list: Vec<i32> = (0..t as i32).collect();
    let off: Vec<i32> = (0..=groups).map(|g| (g * tt).min(t) as i32).collect();
    let (wa, xa) = (Aligned::from_bytes(w.bytes), Aligned::from_f32(x));
    let mut y = vec![f32::NAN; t * w.rows];
    // SAFETY: groups cover pairs 0 .. t (off), each reads x row p < t and writes y[p * rows +
    // r], r < rows; the one matrix has rows x row_bytes bytes (checked).
    let rc = unsafe {
        ffi::emu_matmat(
            w.qt.ggml_id() as i32,
            wa.ptr(),
            0,
            row_bytes as i64,
            w.rows as i32,
            w.k as i32,
            xa.ptr(),
            w.k as i32,
            1,
            0,
            list.as_ptr(),
            off.as_ptr(),
            groups as i32,
            y.as_mut_ptr(),
            w.rows as i32,
            0,
        )
    };
    need(rc == 0, || format!("the emulated launch returned {rc}"))?;
    Ok(y)
}

/// One decode token's attention inputs: its q, k, v rows (before q/k norm and RoPE), the norm
/// weights, and the caches (max_ctx rows of n_head_kv * hd) holding positions < pos.
#[derive(Clone, Debug)]
pub struct DecodeAttn {
    pub h: Heads,
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub q_norm: Vec<f32>,
    pub k_norm: Vec<f32>,
    pub kc: Vec<f32>,
    pub vc: Vec<f32>,
    pub max_ctx: usize,
    pub pos: usize,
    pub rope_base: f32,
    pub eps: f32,
}

/// What decode attention leaves behind: its output and both caches.
#[derive(Clone, Debug)]
pub struct DecodeAttnOut {
    pub out: Vec<f32>,
    pub kc: Vec<f32>,
    pub vc: Vec<f32>,
}

/// Run decode attention for `a` with the engine's three kernels or decode.cu's attn_decode.
pub fn attn_decode(which: Decode, a: &DecodeAttn) -> Result<DecodeAttnOut, EmuError> {
    let h = a.h;
    need(
        h.n_head_kv > 0 && h.n_head % h.n_head_kv == 0 && h.n_head / h.n_head_kv <= 8,
        || "G = n_head / n_head_kv must be a whole number <= 8".into(),
    )?;
    need(h.hd <= 128 && h.hd % 4 == 0 && h.hd >= 32, || {
        "32 <= hd <= 128, hd % 4 == 0".into()
    })?;
    let (qd, kvd) = (h.n_head * h.hd, h.n_head_kv * h.hd);
    need(
        a.q.len() == qd && a.k.len() == kvd && a.v.len() == kvd,
        || "q, k, v lengths".into(),
    )?;
    need(a.q_norm.len() == h.hd && a.k_norm.len() == h.hd, || {
        "norm weights: hd each".into()
    })?;
    need(
        a.pos < a.max_ctx && a.kc.len() == a.max_ctx * kvd && a.vc.len() == a.kc.len(),
        || "caches: max_ctx rows, pos < max_ctx".into(),
    )?;
    let n_chunks = a.max_ctx.div_ceil(32);
    let mut q = Aligned::from_f32(&a.q);
    let (k, v) = (Aligned::from_f32(&a.k), Aligned::from_f32(&a.v));
    let (qn, kn) = (Aligned::from_f32(&a.q_norm), Aligned::from_f32(&a.k_norm));
    let (mut kc, mut vc) = (Aligned::from_f32(&a.kc), Aligned::from_f32(&a.vc));
    let mut part = Aligned::zeroed(4 * qd / h.hd * n_chunks * (h.hd + 2));
    let mut out = Aligned::zeroed(4 * qd);
    let mut counter = Aligned::zeroed(4 * h.n_head_kv);
    // SAFETY: every buffer has the extent the kernels index (checked above, or sized here:
    // part = n_head x n_chunks x (hd + 2), out = n_head x hd, counter = n_head_kv).
    let rc = unsafe {
        ffi::emu_attn_decode(
            (which == Decode::DecodeCu) as i32,
            q.mut_ptr(),
            k.ptr(),
            v.ptr(),
            qn.ptr(),
            kn.ptr(),
            kc.mut_ptr(),
            vc.mut_ptr(),
            part.mut_ptr(),
            out.mut_ptr(),
            a.pos as i32,
            h.n_head as i32,
            h.n_head_kv as i32,
            h.hd as i32,
            n_chunks as i32,
            1.0 / (h.hd as f32).sqrt(),
            a.rope_base,
            a.eps,
            counter.mut_ptr(),
        )
    };
    need(rc == 0, || format!("the emulated launch returned {rc}"))?;
    let counter_left = counter.to_f32(h.n_head_kv);
    need(counter_left.iter().all(|c| c.to_bits() == 0), || {
        "a ticket counter was not put back to 0".into()
    })?;
    Ok(DecodeAttnOut {
        out: out.to_f32(qd),
        kc: kc.to_f32(a.kc.len()),
        vc: vc.to_f32(a.vc.len()),
    })
}

/// Which expert-grouping kernel to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    /// kernels.cu's group_pairs: one thread per expert scans every pair.
    Serial,
    /// kernels.cu's group_pairs_w: the pairs split over the block's 32 warps.
    Warps,
}

/// The engine's grouping of pairs by expert: (list, off) as the prefill MoE products read them
/// (off[e] .. off[e + 1] indexes list, which holds pair ids in increasing order per expert).
pub fn group_pairs_kernel(
    which: Grouping,
    ids: &[i32],
    experts: usize,
) -> Result<(Vec<i32>, Vec<i32>), EmuError> {
    need((1..=1024).contains(&experts), || {
        "1 ..= 1024 experts".into()
    })?;
    need(
        ids.iter().all(|&e| e >= 0 && (e as usize) < experts),
        || "every id must name an expert".into(),
    )?;
    let mut off = vec![-1i32; experts + 1];
    let mut list = vec![-1i32; ids.len()];
    // SAFETY: ids holds n_pairs ints, off experts + 1 and list n_pairs (the kernel's writes).
    let rc = unsafe {
        ffi::emu_group_pairs(
            (which == Grouping::Warps) as i32,
            ids.as_ptr(),
            ids.len() as i32,
            experts as i32,
            off.as_mut_ptr(),
            list.as_mut_ptr(),
        )
    };
    need(rc == 0, || format!("the emulated launch returned {rc}"))?;
    Ok((list, off))
}

/// decode.cu's matvec3n: h = RMSNorm(x) * nw (also returned), then q, k (w[0], w[1], one qtype)
/// and v (w[2], its own qtype) of h, in one launch, as the engine's decode runs them. An error
/// for a qtype pair the engine has no instance of, or q/k rows of odd sum with a v of another
/// qtype (the engine then runs the unfused path).
pub fn matvec3n(
    w: [Weights<'_>; 3],
    x: &[f32],
    nw: &[f32],
    eps: f32,
) -> Result<(Vec<f32>, [Vec<f32>; 3]), EmuError> {
    matvec3n_variant(false, w, x, nw, eps)
}

/// decode_q16.cu's matvec3n_q16_*: matvec3n with the dots on the block's Q16 copy of h (so y is
/// W times q16_quantize(h)'s values).
pub fn matvec3n_q16(
    w: [Weights<'_>; 3],
    x: &[f32],
    nw: &[f32],
    eps: f32,
) -> Result<(Vec<f32>, [Vec<f32>; 3]), EmuError> {
    q16_geometry(w[0].k)?;
    matvec3n_variant(true, w, x, nw, eps)
}

fn matvec3n_variant(
    q16: bool,
    w: [Weights<'_>; 3],
    x: &[f32],
    nw: &[f32],
    eps: f32,
) -> Result<(Vec<f32>, [Vec<f32>; 3]), EmuError> {
    let row_bytes = check_rows(&w[0])?;
    let row_bytes2 = check_rows(&w[2])?;
    check_rows(&w[1])?;
    need(
        w[1].qt == w[0].qt && w.iter().all(|m| m.k == w[0].k),
        || "q and k share a qtype; all three read k floats".into(),
    )?;
    need(w[0].k % 4 == 0, || "k must be a multiple of 4".into())?;
    need(
        w[2].qt == w[0].qt || (w[0].rows + w[1].rows) % 2 == 0,
        || "q and k rows must sum to an even count when v has another qtype".into(),
    )?;
    need(x.len() == w[0].k && nw.len() == w[0].k, || {
        format!("x and nw must hold k = {} floats", w[0].k)
    })?;
    let a: Vec<Aligned> = w.iter().map(|m| Aligned::from_bytes(m.bytes)).collect();
    let (xa, na) = (Aligned::from_f32(x), Aligned::from_f32(nw));
    let mut h = vec![f32::NAN; w[0].k];
    let mut y = [
        vec![f32::NAN; w[0].rows],
        vec![f32::NAN; w[1].rows],
        vec![f32::NAN; w[2].rows],
    ];
    let [y0, y1, y2] = &mut y;
    // SAFETY: each matrix holds its rows (checked); h holds k floats, y_i w_i.rows floats.
    let launch = if q16 {
        ffi::emu_matvec3n_q16
    } else {
        ffi::emu_matvec3n
    };
    let rc = unsafe {
        launch(
            w[0].qt.ggml_id() as i32,
            w[2].qt.ggml_id() as i32,
            a[0].ptr(),
            a[1].ptr(),
            a[2].ptr(),
            row_bytes as i64,
            row_bytes2 as i64,
            w[0].rows as i32,
            w[1].rows as i32,
            w[2].rows as i32,
            w[0].k as i32,
            xa.ptr(),
            na.ptr(),
            eps,
            h.as_mut_ptr(),
            y0.as_mut_ptr(),
            y1.as_mut_ptr(),
            y2.as_mut_ptr(),
        )
    };
    need(rc == 0, || {
        format!("no matvec3n instance for this qtype pair (launch returned {rc})")
    })?;
    Ok((h, y))
}

/// decode.cu's matvec4 (four rows per warp): W x (the engine's output head).
pub fn matvec4(w: Weights<'_>, x: &[f32]) -> Result<Vec<f32>, EmuError> {
    let row_bytes = check_rows(&w)?;
    need(x.len() == w.k, || format!("x must hold k = {} floats", w.k))?;
    let a = Aligned::from_bytes(w.bytes);
    let xa = Aligned::from_f32(x);
    let mut y = vec![f32::NAN; w.rows];
    // SAFETY: W holds its rows (checked), y w.rows floats.
    let rc = unsafe {
        ffi::emu_matvec4(
            w.qt.ggml_id() as i32,
            a.ptr(),
            row_bytes as i64,
            w.rows as i32,
            w.k as i32,
            xa.ptr(),
            y.as_mut_ptr(),
            0,
        )
    };
    need(rc == 0, || format!("the emulated launch returned {rc}"))?;
    Ok(y)
}

/// A vector of K activations as decode_q16.cu's Q16 format holds it: per block of 8 elements a
/// scale `dx` and 16-bit integers `v = 256 hi + lo`, so that element i is about `dx[i / 8] v[i]`.
#[derive(Clone, Debug)]
pub struct Q16 {
    /// The device bytes (hi[K], lo[K], dx[K / 8], isum[K / 8]).
    pub bytes: Vec<u8>,
    pub k: usize,
}

impl Q16 {
    fn word(&self, off: usize) -> [u8; 4] {
        [
            self.bytes[off],
            self.bytes[off + 1],
            self.bytes[off + 2],
            self.bytes[off + 3],
        ]
    }
    pub fn hi(&self, i: usize) -> i8 {
        self.bytes[i] as i8
    }
    pub fn lo(&self, i: usize) -> i8 {
        self.bytes[self.k + i] as i8
    }
    /// The integer value of element i.
    pub fn v(&self, i: usize) -> i32 {
        256 * self.hi(i) as i32 + self.lo(i) as i32
    }
    pub fn dx(&self, b: usize) -> f32 {
        f32::from_ne_bytes(self.word(2 * self.k + 4 * b))
    }
    pub fn isum(&self, b: usize) -> i32 {
        i32::from_ne_bytes(self.word(2 * self.k + 4 * (self.k / 8) + 4 * b))
    }
    /// The activations the integer dots see: dx v, in float64.
    pub fn dequantized(&self) -> Vec<f64> {
        (0..self.k)
            .map(|i| self.dx(i / 8) as f64 * self.v(i) as f64)
            .collect()
    }
}

fn q16_geometry(k: usize) -> Result<(), EmuError> {
    need(k > 0 && k % 32 == 0, || {
        format!("a Q16 vector needs K % 32 == 0 (got {k})")
    })
}

/// decode_q16.cu's q16_quantize_blocks (as router_decode and matvec3n_q16 quantize their normed
/// input): `x` as a Q16 vector.
pub fn q16_quantize(x: &[f32]) -> Result<Q16, EmuError> {
    let k = x.len();
    q16_geometry(k)?;
    let xa = Aligned::from_f32(x);
    let mut out = Aligned::zeroed(3 * k);
    // SAFETY: x holds k floats, out 3 k bytes, k % 32 == 0 (checked).
    let rc = unsafe { ffi::emu_q16_quantize(xa.ptr(), k as i32, out.mut_ptr()) };
    need(rc == 0, || format!("the emulated launch returned {rc}"))?;
    Ok(Q16 {
        bytes: out.bytes()[..3 * k].to_vec(),
        k,
    })
}

fn q16_qtype(qt: GpuQType) -> Result<(), EmuError> {
    need(
        matches!(qt, GpuQType::Q4K | GpuQType::Q5K | GpuQType::Q6K),
        || format!("{} has no Q16 kernel (Q4_K, Q5_K and Q6_K do)", qt.name()),
    )
}

/// decode_q16.cu's moe_gate_up2_q16 for the pairs `ids` of one token: the SwiGLU outputs (f32,
/// pairs x ff) and the same as one Q16 vector per pair (the down kernel's input).
pub fn moe_gate_up2_q16(
    gate: Weights<'_>,
    up: Weights<'_>,
    xq: &Q16,
    ids: &[i32],
) -> Result<(Vec<f32>, Vec<Q16>), EmuError> {
    q16_qtype(gate.qt)?;
    let row_bytes = check_rows(&gate)?;
    need(
        up.qt == gate.qt && up.rows == gate.rows && up.k == gate.k && up.experts == gate.experts,
        || "gate and up must have one shape and qtype".into(),
    )?;
    check_rows(&up)?;
    let (ff, k) = (gate.rows, gate.k);
    q16_geometry(ff)?;
    need(xq.k == k && xq.bytes.len() == 3 * k, || {
        format!("xq must be a Q16 vector of K = {k}")
    })?;
    need(!ids.is_empty(), || "at least one pair".into())?;
    need(
        ids.iter().all(|&e| e >= 0 && (e as usize) < gate.experts),
        || "an expert id is out of range".into(),
    )?;
    let (ga, ua, xa) = (
        Aligned::from_bytes(gate.bytes),
        Aligned::from_bytes(up.bytes),
        Aligned::from_bytes(&xq.bytes),
    );
    let mut act = vec![f32::NAN; ids.len() * ff];
    let mut actq = Aligned::zeroed(3 * ff * ids.len());
    // SAFETY: expert ids < experts, ff % 32 == 0 rows, xq 3 K bytes: checked above; act holds
    // pairs x ff floats, actq pairs x 3 ff bytes.
    let rc = unsafe {
        ffi::emu_moe_gate_up2_q16(
            gate.qt.ggml_id() as i32,
            ga.ptr(),
            ua.ptr(),
            (row_bytes * ff) as i64,
            row_bytes as i64,
            ff as i32,
            k as i32,
            xa.ptr(),
            ids.as_ptr(),
            ids.len() as i32,
            act.as_mut_ptr(),
            actq.mut_ptr(),
        )
    };
    need(rc == 0, || format!("the emulated launch returned {rc}"))?;
    let qs = actq.bytes()[..3 * ff * ids.len()]
        .chunks_exact(3 * ff)
        .map(|c| Q16 {
            bytes: c.to_vec(),
            k: ff,
        })
        .collect();
    Ok((act, qs))
}

/// decode_q16.cu's moe_down_q16: `x[r] + sum_s wts[s] (down_{ids[s]}[r] . act_s)` for every row
/// r, with act_s the Q16 SwiGLU outputs of slot s.
pub fn moe_down_q16(
    down: Weights<'_>,
    actq: &[Q16],
    ids: &[i32],
    wts: &[f32],
    x: &[f32],
) -> Result<Vec<f32>, EmuError> {
    q16_qtype(down.qt)?;
    let row_bytes = check_rows(&down)?;
    let (rows, ff) = (down.rows, down.k);
    q16_geometry(ff)?;
    need(
        !ids.is_empty() && ids.len() == actq.len() && ids.len() == wts.len(),
        || "one Q16 vector and one weight per slot".into(),
    )?;
    need(
        actq.iter().all(|q| q.k == ff && q.bytes.len() == 3 * ff),
        || format!("every slot's input must be a Q16 vector of K = {ff}"),
    )?;
    need(
        ids.iter().all(|&e| e >= 0 && (e as usize) < down.experts),
        || "an expert id is out of range".into(),
    )?;
    need(x.len() == rows, || format!("x must hold {rows} floats"))?;
    let wa = Aligned::from_bytes(down.bytes);
    let qa = Aligned::from_bytes(
        &actq
            .iter()
            .flat_map(|q| q.bytes.iter().copied())
            .collect::<Vec<u8>>(),
    );
    let mut y = x.to_vec();
    // SAFETY: ids < experts, the slots' Q16 vectors (3 ff bytes each) and weights match ids,
    // y holds rows floats: checked above.
    let rc = unsafe {
        ffi::emu_moe_down_q16(
            down.qt.ggml_id() as i32,
            wa.ptr(),
            (row_bytes * rows) as i64,
            row_bytes as i64,
            rows as i32,
            ff as i32,
            ids.len() as i32,
            qa.ptr(),
            ids.as_ptr(),
            wts.as_ptr(),
            y.as_mut_ptr(),
        )
    };
    need(rc == 0, || format!("the emulated launch returned {rc}"))?;
    Ok(y)
}

/// decode_q16.cu's q16_quantize_lanes8 as attn_combine calls it (one element per thread, blocks
/// of `threads` threads, which must be a multiple of 32 dividing K).
pub fn q16_quantize_lanes8(x: &[f32], threads: usize) -> Result<Q16, EmuError> {
    let k = x.len();
    q16_geometry(k)?;
    need(threads > 0 && threads % 32 == 0 && k % threads == 0, || {
        format!("{threads} threads per block must be a multiple of 32 that divides K = {k}")
    })?;
    let xa = Aligned::from_f32(x);
    let mut out = Aligned::zeroed(3 * k);
    // SAFETY: x holds k floats, out 3 k bytes; the grid covers k elements exactly (checked).
    let rc =
        unsafe { ffi::emu_q16_quantize_lanes8(xa.ptr(), k as i32, threads as i32, out.mut_ptr()) };
    need(rc == 0, || format!("the emulated launch returned {rc}"))?;
    Ok(Q16 {
        bytes: out.bytes()[..3 * k].to_vec(),
        k,
    })
}

/// decode_q16.cu's matvec_q16: `y + W x` (add) or `W x` for the Q16 vector x.
pub fn matvec_q16(w: Weights<'_>, xq: &Q16, y: &[f32], add: bool) -> Result<Vec<f32>, EmuError> {
    q16_qtype(w.qt)?;
    let row_bytes = check_rows(&w)?;
    need(xq.k == w.k && xq.bytes.len() == 3 * w.k, || {
        format!("xq must be a Q16 vector of K = {}", w.k)
    })?;
    need(y.len() == w.rows, || {
        format!("y must hold {} floats", w.rows)
    })?;
    let (wa, xa) = (Aligned::from_bytes(w.bytes), Aligned::from_bytes(&xq.bytes));
    let mut out = y.to_vec();
    // SAFETY: W holds its rows (checked), xq 3 K bytes, out w.rows floats.
    let rc = unsafe {
        ffi::emu_matvec_q16(
            w.qt.ggml_id() as i32,
            wa.ptr(),
            row_bytes as i64,
            w.rows as i32,
            w.k as i32,
            xa.ptr(),
            out.as_mut_ptr(),
            add as i32,
        )
    };
    need(rc == 0, || format!("the emulated launch returned {rc}"))?;
    Ok(out)
}

/// What kernels.cu's router_decode wrote.
#[derive(Clone, Debug)]
pub struct RouterDecode {
    /// RMSNorm(x) * nw.
    pub h: Vec<f32>,
    pub logits: Vec<f32>,
    pub ids: Vec<i32>,
    pub wts: Vec<f32>,
    /// h as a Q16 vector.
    pub hq: Q16,
    /// The ticket counter after the launch (0: ready for the next graph replay).
    pub counter_after: u32,
}

/// kernels.cu's router_decode for one token: `w.rows` experts, top `k`.
pub fn router_decode(
    w: Weights<'_>,
    x: &[f32],
    nw: &[f32],
    eps: f32,
    k: usize,
) -> Result<RouterDecode, EmuError> {
    let row_bytes = check_rows(&w)?;
    let (n_exp, kk) = (w.rows, w.k);
    q16_geometry(kk)?;
    need(x.len() == kk && nw.len() == kk, || {
        format!("x and nw must hold K = {kk} floats")
    })?;
    need(
        (1..=256).contains(&n_exp) && (1..=n_exp).contains(&k),
        || format!("1 <= k <= experts <= 256 (got k = {k}, {n_exp} experts)"),
    )?;
    let (wa, xa, na) = (
        Aligned::from_bytes(w.bytes),
        Aligned::from_f32(x),
        Aligned::from_f32(nw),
    );
    let mut h = Aligned::zeroed(4 * kk);
    let mut logits = vec![f32::NAN; n_exp];
    let mut ids = vec![-1i32; k];
    let mut wts = vec![f32::NAN; k];
    let mut counter = 0u32;
    let mut hq = Aligned::zeroed(3 * kk);
    // SAFETY: W holds n_exp rows of K (checked), x, nw and h K floats, logits n_exp, ids and
    // wts k, hq 3 K bytes.
    let rc = unsafe {
        ffi::emu_router_decode(
            w.qt.ggml_id() as i32,
            wa.ptr(),
            row_bytes as i64,
            n_exp as i32,
            kk as i32,
            xa.ptr(),
            na.ptr(),
            eps,
            h.mut_ptr(),
            logits.as_mut_ptr(),
            k as i32,
            ids.as_mut_ptr(),
            wts.as_mut_ptr(),
            &mut counter,
            hq.mut_ptr(),
        )
    };
    need(rc == 0, || format!("the emulated launch returned {rc}"))?;
    Ok(RouterDecode {
        h: h.to_f32(kk),
        logits,
        ids,
        wts,
        hq: Q16 {
            bytes: hq.bytes()[..3 * kk].to_vec(),
            k: kk,
        },
        counter_after: counter,
    })
}
