// Qwen3-MoE forward kernels, compiled with NVRTC when the backend starts (engine/src/cuda/device.rs).
//
// Precision: weights are read in their stored format and dequantized to f32 in registers; every
// dot product, norm, softmax and sum accumulates in f32. No fast-math: expf / rsqrtf / sincosf
// are the accurate versions.
//
// Block layouts on the device (bytes). Q4_K and Q5_K are stored as in GGUF (144 / 176 bytes, both
// multiples of 16, so 16-byte loads are aligned). Q6_K (210 bytes) and Q8_0 (34 bytes) are
// repacked at upload to aligned strides (see engine/src/cuda/qtype.rs):
//   Q6_K: ql[128] @0, qh[64] @128, scales[16] (int8) @192, d (f16) @208, pad to 224
//   Q8_0: d (f16) @0, pad 2, qs[32] (int8) @4                                  -> 36
// No headers: NVRTC needs none of the toolkit's include files this way.

typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef long long i64;
typedef unsigned long long u64;

#define QT_F32 0
#define QT_F16 1
#define QT_Q8_0 8
#define QT_Q4_K 12
#define QT_Q5_K 13
#define QT_Q6_K 14

#define WARP 32
#define INFINITY __int_as_float(0x7f800000)
#define MV_WARPS 4  // warps (= rows) per block in the mat-vec kernels

__device__ __forceinline__ float h2f(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide sum; `red` holds >= 32 floats. All threads get the result.
__device__ float block_sum(float v, float* red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    float t = (threadIdx.x < nw) ? red[threadIdx.x] : 0.f;
    if (w == 0) t = warp_sum(t);
    if (threadIdx.x == 0) red[0] = t;
    __syncthreads();
    float r = red[0];
    __syncthreads();
    return r;
}

__device__ float block_max(float v, float* red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    float t = (threadIdx.x < nw) ? red[threadIdx.x] : -INFINITY;
    if (w == 0) t = warp_max(t);
    if (threadIdx.x == 0) red[0] = t;
    __syncthreads();
    float r = red[0];
    __syncthreads();
    return r;
}

// ---------------------------------------------------------------------------------------------
// Programmatic dependent launch (Hopper, sm_90). With PV_GPU_PDL=1 the decode step's kernels are
// launched with the programmatic-stream-serialization attribute (engine/src/cuda/model.rs), so
// kernel N+1 can be scheduled while kernel N is still running. Every kernel therefore starts
// with `pdl_begin()`: it waits until the previous kernel has completed and its writes are visible
// (`griddepcontrol.wait`), then lets the next kernel launch (`griddepcontrol.launch_dependents`;
// the order is explained below; docs/gpu-perf-notes.md has the measurements). Before the
// wait a kernel may only touch memory that no kernel of the step writes: the weights. The dense
// mat-vecs use that window to prefetch their rows into L2. Without the attribute (prefill, older
// GPUs, the default) both instructions do nothing and launches serialise as usual.
// ---------------------------------------------------------------------------------------------

// The wait comes first: a kernel that let its dependent launch before waiting itself would let
// the whole chain of the step's kernels launch at once, each holding SM slots while it waits
// (238 tok/s against 306 without PDL, 2026-12-02). Waiting first keeps at most one kernel
// waiting behind the one that runs. Still slower than no PDL on the H200 (296 against 321,
// 2026-12-02, fifth session), so PDL stays opt-in.
__device__ __forceinline__ void pdl_begin() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Prefetch bytes [0, n) of p into L2, lanes of one warp sharing the 128-byte lines.
__device__ __forceinline__ void prefetch_l2_warp(const u8* p, i64 n, int lane) {
    for (i64 off = (i64)lane * 128; off < n; off += 32 * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p + off));
}

// ---------------------------------------------------------------------------------------------
// Per-qtype traits. A "task" is the unit of work of one lane: one 16-byte load of quants (or the
// whole Q8_0 block) and the matching activations. TASK_ELEMS elements per task.
// ---------------------------------------------------------------------------------------------

template <int QT> struct QT_traits;
template <> struct QT_traits<QT_F32> { enum { TASK_ELEMS = 4, BLOCK_ELEMS = 4, BLOCK_BYTES = 16 }; };
template <> struct QT_traits<QT_F16> { enum { TASK_ELEMS = 8, BLOCK_ELEMS = 8, BLOCK_BYTES = 16 }; };
template <> struct QT_traits<QT_Q8_0> { enum { TASK_ELEMS = 32, BLOCK_ELEMS = 32, BLOCK_BYTES = 36 }; };
template <> struct QT_traits<QT_Q4_K> { enum { TASK_ELEMS = 32, BLOCK_ELEMS = 256, BLOCK_BYTES = 144 }; };
template <> struct QT_traits<QT_Q5_K> { enum { TASK_ELEMS = 32, BLOCK_ELEMS = 256, BLOCK_BYTES = 176 }; };
template <> struct QT_traits<QT_Q6_K> { enum { TASK_ELEMS = 64, BLOCK_ELEMS = 256, BLOCK_BYTES = 224 }; };

__device__ __forceinline__ void scale_min_k4(int j, const u8* q, float& sc, float& m) {
    if (j < 4) {
        sc = (float)(q[j] & 63);
        m = (float)(q[j + 4] & 63);
    } else {
        sc = (float)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m = (float)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

__device__ __forceinline__ void load16f(const float* p, float* v) {
    const float4* p4 = (const float4*)p;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float4 t = p4[i];
        v[4 * i] = t.x; v[4 * i + 1] = t.y; v[4 * i + 2] = t.z; v[4 * i + 3] = t.w;
    }
}

// Small unsigned integers to f32 without an integer-to-float conversion: byte k of w placed
// under the exponent of 2^23 (one byte permute) is the float 2^23 + byte, and subtracting 2^23
// (plus an offset) gives the byte's value exactly, so every sum is bit-identical to the
// conversions'. Used by Q6_K's dot only. Measured on the H200 (2026-12-02): with it, Q6_K's
// decode kernels got faster (output head 129 -> 110 us, moe_down_decode_q6_k 13.2 -> 12.7 us);
// the same change in Q4_K's dot made its kernels slower (moe_gate_up2_q4_k 16.6 -> 17.7 us:
// one FADD more per weight, and the integer-to-float conversions were not its limit), so Q4_K
// keeps the conversions.
#define MAGIC_2P23 8388608.0f
__device__ __forceinline__ float magic_byte(u32 w, int k) {
    return __int_as_float(__byte_perm(w, 0x4B000000u, 0x7440 | k));
}
// v < 2^23 to f32, exactly as (float)v
__device__ __forceinline__ float u2f_small(u32 v) {
    return __int_as_float(0x4B000000u | v) - MAGIC_2P23;
}
// byte b (0..3) of w as an integer (the other bytes zero)
__device__ __forceinline__ u32 byte_of(u32 w, int b) { return __byte_perm(w, 0u, 0x4440 | b); }

// Each qtype provides task_dot_n_<QT><N>: dequantize the weights of task t of a row into
// registers (f32) and accumulate their dot product with N activation vectors at once (N > 1 in
// the batched kernels, where each dequantized weight serves N tokens).

// Each body computes the task's dequantized weights (in registers, f32) and accumulates
// dot(w, xs[n] + offset) into acc[n] for n < N.

template <int N>
__device__ __forceinline__ void task_dot_n_F32(const u8* __restrict__ row, int t,
                                             const float* const* xs, float* acc) {
    float4 w = ((const float4*)row)[t];
#pragma unroll
    for (int n = 0; n < N; n++) {
        float4 x = ((const float4*)xs[n])[t];
        acc[n] += w.x * x.x + w.y * x.y + w.z * x.z + w.w * x.w;
    }
}

template <int N>
__device__ __forceinline__ void task_dot_n_F16(const u8* __restrict__ row, int t,
                                             const float* const* xs, float* acc) {
    uint4 raw = ((const uint4*)row)[t];
    float w[8];
    u32 r4[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        w[2 * i] = h2f((u16)(r4[i] & 0xFFFF));
        w[2 * i + 1] = h2f((u16)(r4[i] >> 16));
    }
#pragma unroll
    for (int n = 0; n < N; n++) {
        const float4* x4 = (const float4*)(xs[n] + 8 * t);
        float4 a = x4[0], b = x4[1];
        acc[n] += w[0] * a.x + w[1] * a.y + w[2] * a.z + w[3] * a.w + w[4] * b.x + w[5] * b.y +
                  w[6] * b.z + w[7] * b.w;
    }
}

template <int N>
__device__ __forceinline__ void task_dot_n_Q8_0(const u8* __restrict__ row, int t,
                                             const float* const* xs, float* acc) {
    const u8* blk = row + (i64)t * 36;
    float d = h2f(*(const u16*)blk);
    const int* q4 = (const int*)(blk + 4);
    int qv[8];
#pragma unroll
    for (int i = 0; i < 8; i++) qv[i] = q4[i];
#pragma unroll
    for (int n = 0; n < N; n++) {
        const float4* x4 = (const float4*)(xs[n] + 32 * t);
        float s = 0.f;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            float4 x = x4[i];
            int v = qv[i];
            s += (float)(i8)(v & 0xFF) * x.x + (float)(i8)((v >> 8) & 0xFF) * x.y +
                 (float)(i8)((v >> 16) & 0xFF) * x.z + (float)(i8)((v >> 24) & 0xFF) * x.w;
        }
        acc[n] += d * s;
    }
}

// Q4_K task t: super-block b = t / 8, chunk j = (t % 8) / 2 (64 elements), half h = t % 2.
// The 16 quant bytes qs[32j + 16h + i] hold element 64j + 16h + i (low nibble, scale 2j) and
// element 64j + 32 + 16h + i (high nibble, scale 2j + 1).
template <int N>
__device__ __forceinline__ void task_dot_n_Q4_K(const u8* __restrict__ row, int t,
                                             const float* const* xs, float* acc) {
    int b = t >> 3, j = (t >> 1) & 3, h = t & 1;
    const u8* blk = row + (i64)b * 144;
    u32 dd = *(const u32*)blk;
    float d = h2f((u16)(dd & 0xFFFF)), dmin = h2f((u16)(dd >> 16));
    float s0, m0, s1, m1;
    scale_min_k4(2 * j, blk + 4, s0, m0);
    scale_min_k4(2 * j + 1, blk + 4, s1, m1);
    uint4 raw = *(const uint4*)(blk + 16 + 32 * j + 16 * h);
    u32 r4[4] = {raw.x, raw.y, raw.z, raw.w};
    int e0 = b * 256 + 64 * j + 16 * h;
#pragma unroll
    for (int n = 0; n < N; n++) {
        float xl[16], xh[16];
        load16f(xs[n] + e0, xl);
        load16f(xs[n] + e0 + 32, xh);
        float sl = 0.f, sh = 0.f, xsl = 0.f, xsh = 0.f;
#pragma unroll
        for (int i = 0; i < 16; i++) {
            u32 byte = (r4[i >> 2] >> (8 * (i & 3))) & 0xFF;
            sl += (float)(byte & 0xF) * xl[i];
            sh += (float)(byte >> 4) * xh[i];
            xsl += xl[i];
            xsh += xh[i];
        }
        acc[n] += d * s0 * sl - dmin * m0 * xsl + d * s1 * sh - dmin * m1 * xsh;
    }
}

// Q5_K: like Q4_K plus one high bit per element from qh[32] (bit 2j for the low-nibble element
// l = 16h + i, bit 2j + 1 for the high-nibble one).
template <int N>
__device__ __forceinline__ void task_dot_n_Q5_K(const u8* __restrict__ row, int t,
                                             const float* const* xs, float* acc) {
    int b = t >> 3, j = (t >> 1) & 3, h = t & 1;
    const u8* blk = row + (i64)b * 176;
    u32 dd = *(const u32*)blk;
    float d = h2f((u16)(dd & 0xFFFF)), dmin = h2f((u16)(dd >> 16));
    float s0, m0, s1, m1;
    scale_min_k4(2 * j, blk + 4, s0, m0);
    scale_min_k4(2 * j + 1, blk + 4, s1, m1);
    uint4 raw = *(const uint4*)(blk + 48 + 32 * j + 16 * h);
    uint4 rawh = *(const uint4*)(blk + 16 + 16 * h);
    u32 r4[4] = {raw.x, raw.y, raw.z, raw.w};
    u32 h4[4] = {rawh.x, rawh.y, rawh.z, rawh.w};
    int e0 = b * 256 + 64 * j + 16 * h;
#pragma unroll
    for (int n = 0; n < N; n++) {
        float xl[16], xh[16];
        load16f(xs[n] + e0, xl);
        load16f(xs[n] + e0 + 32, xh);
        float sl = 0.f, sh = 0.f, xsl = 0.f, xsh = 0.f;
#pragma unroll
        for (int i = 0; i < 16; i++) {
            u32 byte = (r4[i >> 2] >> (8 * (i & 3))) & 0xFF;
            u32 hb = (h4[i >> 2] >> (8 * (i & 3))) & 0xFF;
            float ql = (float)((byte & 0xF) | (((hb >> (2 * j)) & 1) << 4));
            float qh = (float)((byte >> 4) | (((hb >> (2 * j + 1)) & 1) << 4));
            sl += ql * xl[i];
            sh += qh * xh[i];
            xsl += xl[i];
            xsh += xh[i];
        }
        acc[n] += d * s0 * sl - dmin * m0 * xsl + d * s1 * sh - dmin * m1 * xsh;
    }
}

// Q6_K (repacked) task t: super-block b = t / 4, half nh = (t % 4) / 2 (128 elements), a = t % 2
// selects l in [16a, 16a + 16). Element 128nh + l + 32k (k = 0..3) uses scale sc[8nh + a + 2k].
template <int N>
__device__ __forceinline__ void task_dot_n_Q6_K(const u8* __restrict__ row, int t,
                                             const float* const* xs, float* acc) {
    int b = t >> 2, nh = (t >> 1) & 1, a = t & 1;
    const u8* blk = row + (i64)b * 224;
    float d = h2f(*(const u16*)(blk + 208));
    // the four signed scale bytes (offsets a, a + 2, a + 4, a + 6) from one 8-byte load;
    // x ^ 0x80 is the signed byte plus 128, so u2f_small(...) - 128 is (float)(i8)x exactly
    uint2 scw = *(const uint2*)(blk + 192 + 8 * nh);
    u32 sa = __byte_perm(scw.x, scw.y, 0x6420 + 0x1111 * a) ^ 0x80808080u;
    float sc0 = d * (u2f_small(byte_of(sa, 0)) - 128.f), sc1 = d * (u2f_small(byte_of(sa, 1)) - 128.f),
          sc2 = d * (u2f_small(byte_of(sa, 2)) - 128.f), sc3 = d * (u2f_small(byte_of(sa, 3)) - 128.f);
    uint4 A = *(const uint4*)(blk + 64 * nh + 16 * a);
    uint4 B = *(const uint4*)(blk + 64 * nh + 32 + 16 * a);
    uint4 H = *(const uint4*)(blk + 128 + 32 * nh + 16 * a);
    u32 a4[4] = {A.x, A.y, A.z, A.w}, b4[4] = {B.x, B.y, B.z, B.w}, h4[4] = {H.x, H.y, H.z, H.w};
    int e0 = b * 256 + 128 * nh + 16 * a;
#pragma unroll
    for (int n = 0; n < N; n++) {
        float x0[16], x1[16], x2[16], x3[16];
        load16f(xs[n] + e0, x0);
        load16f(xs[n] + e0 + 32, x1);
        load16f(xs[n] + e0 + 64, x2);
        load16f(xs[n] + e0 + 96, x3);
        float t0 = 0.f, t1 = 0.f, t2 = 0.f, t3 = 0.f;
        // the four 6-bit values of each byte position, four bytes per word at once; as floats
        // through magic_byte, minus 2^23 + 32 (the Q6_K offset), exactly as (float)(q - 32)
#pragma unroll
        for (int w = 0; w < 4; w++) {
            u32 hw = h4[w];
            u32 v0 = (a4[w] & 0x0F0F0F0Fu) | ((hw << 4) & 0x30303030u);
            u32 v1 = (b4[w] & 0x0F0F0F0Fu) | ((hw << 2) & 0x30303030u);
            u32 v2 = ((a4[w] >> 4) & 0x0F0F0F0Fu) | (hw & 0x30303030u);
            u32 v3 = ((b4[w] >> 4) & 0x0F0F0F0Fu) | ((hw >> 2) & 0x30303030u);
#pragma unroll
            for (int k = 0; k < 4; k++) {
                int i = 4 * w + k;
                t0 += (magic_byte(v0, k) - (MAGIC_2P23 + 32.f)) * x0[i];
                t1 += (magic_byte(v1, k) - (MAGIC_2P23 + 32.f)) * x1[i];
                t2 += (magic_byte(v2, k) - (MAGIC_2P23 + 32.f)) * x2[i];
                t3 += (magic_byte(v3, k) - (MAGIC_2P23 + 32.f)) * x3[i];
            }
        }
        acc[n] += sc0 * t0 + sc1 * t1 + sc2 * t2 + sc3 * t3;
    }
}

template <int QT, int N>
__device__ __forceinline__ void tdot(const u8* row, int t, const float* const* xs, float* acc) {
    if (QT == QT_F32) task_dot_n_F32<N>(row, t, xs, acc);
    else if (QT == QT_F16) task_dot_n_F16<N>(row, t, xs, acc);
    else if (QT == QT_Q8_0) task_dot_n_Q8_0<N>(row, t, xs, acc);
    else if (QT == QT_Q4_K) task_dot_n_Q4_K<N>(row, t, xs, acc);
    else if (QT == QT_Q5_K) task_dot_n_Q5_K<N>(row, t, xs, acc);
    else task_dot_n_Q6_K<N>(row, t, xs, acc);
}

// Whole-row dot product of one warp (all lanes get the result).
template <int QT>
__device__ __forceinline__ float warp_row_dot(const u8* row, int ntasks, const float* x) {
    float acc[1] = {0.f};
    const float* xs[1] = {x};
    int lane = threadIdx.x & 31;
    int t = lane;
    // Four tasks per iteration so that four independent 16-byte loads are in flight per lane
    // (a row of K = 2048 is 64 Q4_K tasks: one iteration after the remainder split; the F32
    // router row, 512 tasks, four instead of eight dependent round trips with two).
    for (; t + 3 * WARP < ntasks; t += 4 * WARP) {
        tdot<QT, 1>(row, t, xs, acc);
        tdot<QT, 1>(row, t + WARP, xs, acc);
        tdot<QT, 1>(row, t + 2 * WARP, xs, acc);
        tdot<QT, 1>(row, t + 3 * WARP, xs, acc);
    }
    for (; t + WARP < ntasks; t += 2 * WARP) {
        tdot<QT, 1>(row, t, xs, acc);
        tdot<QT, 1>(row, t + WARP, xs, acc);
    }
    if (t < ntasks) tdot<QT, 1>(row, t, xs, acc);
    return warp_sum(acc[0]);
}

// ---------------------------------------------------------------------------------------------
// Decode (one token) kernels.
// ---------------------------------------------------------------------------------------------

// y[r] (=|+=) W[r,:] . x  for r < nrows. One warp per row. mode 0: store, 1: add (residual).
template <int QT>
__device__ void matvec_impl(const u8* W, i64 row_bytes, int nrows, int K, const float* x, float* y,
                            int mode) {
    int r = blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
    if (r < nrows) prefetch_l2_warp(W + (i64)r * row_bytes, row_bytes, threadIdx.x & 31);
    pdl_begin();
    if (r >= nrows) return;
    int ntasks = K / QT_traits<QT>::TASK_ELEMS;
    float s = warp_row_dot<QT>(W + (i64)r * row_bytes, ntasks, x);
    if ((threadIdx.x & 31) == 0) {
        if (mode) y[r] += s;
        else y[r] = s;
    }
}

// q, k (and v) projections of one token in one launch: rows 0..n0 of W0, then n1 of W1, then
// n2 of W2 (same qtype and K; n2 = 0 when v has another qtype and runs on its own).
template <int QT>
__device__ void matvec3_impl(const u8* W0, const u8* W1, const u8* W2, i64 row_bytes, int n0, int n1,
                             int n2, int K, const float* x, float* y0, float* y1, float* y2) {
    int r = blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
    const u8* W;
    float* y;
    if (r < n0) {
        W = W0; y = y0;
    } else if (r < n0 + n1) {
        r -= n0; W = W1; y = y1;
    } else if (r < n0 + n1 + n2) {
        r -= n0 + n1; W = W2; y = y2;
    } else {
        pdl_begin();
        return;
    }
    prefetch_l2_warp(W + (i64)r * row_bytes, row_bytes, threadIdx.x & 31);
    pdl_begin();
    int ntasks = K / QT_traits<QT>::TASK_ELEMS;
    float s = warp_row_dot<QT>(W + (i64)r * row_bytes, ntasks, x);
    if ((threadIdx.x & 31) == 0) y[r] = s;
}

__device__ void topk_row(const volatile float* l, int n_exp, int k, int* ids, float* wts, int lane);

// topk_row's selection for a whole block (n_exp <= blockDim.x <= 1024, k <= n_exp): thread i
// holds logit i and counts the logits that rank above it (larger, or equal with a lower index:
// topk_row's tie rule), so the k selected experts are found in one parallel pass instead of k
// rounds of warp reductions (which sat on the decode router's critical path: ~130 dependent
// instructions with 10 shuffles per round). ids[rank] = i in order of decreasing probability;
// weights p_i / sum of the selected p (p = exp(l - max): the softmax renormalised over the
// selection, as topk_row computes it in another order). A NaN logit ranks as -inf (the ranks stay
// a permutation, so no slot is left unset) and makes every weight NaN, so that it is not hidden.
__device__ void topk_block(const volatile float* l, int n_exp, int k, int* ids, float* wts,
                           float* red) {
    __shared__ float keys[1024];
    __shared__ float top;
    __shared__ int nan_seen;
    int i = threadIdx.x;
    float li = i < n_exp ? l[i] : 0.f;
    float key = (i < n_exp && li == li) ? li : -INFINITY;
    if (i == 0) nan_seen = 0;
    keys[i] = key;
    __syncthreads();
    if (i < n_exp && !(li == li)) nan_seen = 1;
    int rank = 0;
    if (i < n_exp)
        for (int j = 0; j < n_exp; j++) {
            float kj = keys[j];
            rank += (kj > key) || (kj == key && j < i);
        }
    if (i < n_exp && rank == 0) top = key;
    __syncthreads();
    bool sel = i < n_exp && rank < k;
    float p = sel ? expf(key - top) : 0.f;
    float sum = block_sum(p, red);
    if (sel) {
        ids[rank] = i;
        wts[rank] = nan_seen ? __int_as_float(0x7fc00000) : p / sum;
    }
}
// decode_q16.cu (appended after this file)
__device__ void q16_quantize_blocks(const float* x, int K, u8* out, int first, int step);

// Decode router in one launch: logits[r] = W[r,:] . RMSNorm(x) * nw (one block of ROUTER_THREADS
// per row, so that a row's loads are spread over 8 warps and take one round trip), and the last
// block to finish (atomic ticket) runs the softmax / top-k. The norm's scale factors out of the
// dot product (logit = scale * W[r,:] . (x * nw)), so each block keeps x * nw in shared memory,
// and one block reduction gives both the sum of squares and the dot product: one pass over x
// and one reduction fewer than normalising first. Block 0 then writes h = scale * x * nw for the
// expert kernels (and, with hq set, h as a Q16 vector for the q16 gate/up kernel,
// decode_q16.cu). Dynamic shared memory: K floats. The ticket counter returns to 0 for the next
// launch (graph replays).
// (Tried and dropped: the last block asking the copy engine to prefetch the chosen experts'
// matrices into L2. One block's bulk prefetches of ~25 MB ran ~100 us: a single SM's copy engine
// is far slower than the DRAM. The down matrices are prefetched by moe_gate_up instead.)
#define ROUTER_THREADS 256
template <int QT>
__device__ void router_decode_impl(const u8* W, i64 row_bytes, int n_exp, int K, const float* x,
                                   const float* nw, float eps, float* h_out, float* logits, int k,
                                   int* ids, float* wts, unsigned* counter, u8* hq) {
    extern __shared__ __align__(16) float sh[];
    __shared__ float red[32];
    __shared__ float red2[32];
    __shared__ unsigned ticket;
    int tid = threadIdx.x;
    int r = blockIdx.x;  // grid = n_exp
    const u8* row = W + (i64)r * row_bytes;
    for (i64 off = (i64)tid * 128; off < row_bytes; off += (i64)ROUTER_THREADS * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(row + off));
    pdl_begin();
    const float4* x4 = (const float4*)x;
    const float4* w4 = (const float4*)nw;
    int n4 = K / 4;
    float ss = 0.f;
    for (int i = tid; i < n4; i += ROUTER_THREADS) {
        float4 v = x4[i], ww = w4[i];
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        ((float4*)sh)[i] = make_float4(v.x * ww.x, v.y * ww.y, v.z * ww.z, v.w * ww.w);
    }
    __syncthreads();
    int ntasks = K / QT_traits<QT>::TASK_ELEMS;
    float acc[1] = {0.f};
    const float* xs[1] = {sh};
    int t = tid;
    for (; t + ROUTER_THREADS < ntasks; t += 2 * ROUTER_THREADS) {
        tdot<QT, 1>(row, t, xs, acc);
        tdot<QT, 1>(row, t + ROUTER_THREADS, xs, acc);
    }
    if (t < ntasks) tdot<QT, 1>(row, t, xs, acc);
    // the two block sums in one pass (block_sum's steps for a pair)
    float d = warp_sum(acc[0]);
    ss = warp_sum(ss);
    int lane = tid & 31, w = tid >> 5;
    if (lane == 0) {
        red[w] = d;
        red2[w] = ss;
    }
    __syncthreads();
    if (w == 0) {
        float a = lane < ROUTER_THREADS / 32 ? red[lane] : 0.f;
        float b = lane < ROUTER_THREADS / 32 ? red2[lane] : 0.f;
        a = warp_sum(a);
        b = warp_sum(b);
        if (lane == 0) {
            red[0] = a;
            red2[0] = b;
        }
    }
    __syncthreads();
    float scale = rsqrtf(red2[0] / (float)K + eps);
    if (tid == 0) logits[r] = scale * red[0];
    __threadfence();
    __syncthreads();
    if (tid == 0) ticket = atomicAdd(counter, 1u);
    if (blockIdx.x == 0) {  // block-uniform: h for the expert kernels
        for (int i = tid; i < n4; i += ROUTER_THREADS) {
            float4 v = ((float4*)sh)[i];
            float4 hv = make_float4(v.x * scale, v.y * scale, v.z * scale, v.w * scale);
            ((float4*)sh)[i] = hv;
            ((float4*)h_out)[i] = hv;
        }
        if (hq) {
            __syncthreads();
            q16_quantize_blocks(sh, K, hq, tid, ROUTER_THREADS);
        }
    }
    __syncthreads();
    if (ticket == gridDim.x - 1) {
        __threadfence();
        topk_block(logits, n_exp, k, ids, wts, red);
        if (tid == 0) *counter = 0u;
    }
}

// Gate and up of the selected experts with SwiGLU fused: act[p*ff + r] = silu(g) * u where
// g = gate_e[r] . x_t, u = up_e[r] . x_t, e = ids[p], t = p / in_div. grid.y = number of pairs.
// Each warp also prefetches its 1/ff share of expert e's down matrix (Wd, d_bytes per expert)
// into L2, so that the down kernel after it reads L2 rather than waiting on DRAM.
template <int QT>
__device__ void moe_gate_up_impl(const u8* Wg, const u8* Wu, i64 expert_bytes, i64 row_bytes,
                                 int ff, int K, const float* x, int x_stride, int in_div,
                                 const int* ids, float* act, const u8* Wd, i64 d_bytes) {
    pdl_begin();
    int r = blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
    if (r >= ff) return;
    int p = blockIdx.y;
    int e = ids[p];
    {
        i64 piece = ((d_bytes / ff) + 127) & ~127LL;
        i64 start = (i64)r * piece;
        if (start < d_bytes)
            prefetch_l2_warp(Wd + (i64)e * d_bytes + start, min(piece, d_bytes - start), threadIdx.x & 31);
    }
    const float* xp = x + (i64)(p / in_div) * x_stride;
    int ntasks = K / QT_traits<QT>::TASK_ELEMS;
    // gate and up rows interleaved so that both rows' loads are in flight together
    const u8* rg = Wg + (i64)e * expert_bytes + (i64)r * row_bytes;
    const u8* ru = Wu + (i64)e * expert_bytes + (i64)r * row_bytes;
    float ag[1] = {0.f}, au[1] = {0.f};
    const float* xs[1] = {xp};
    int t = threadIdx.x & 31;
    for (; t + WARP < ntasks; t += 2 * WARP) {
        tdot<QT, 1>(rg, t, xs, ag);
        tdot<QT, 1>(ru, t, xs, au);
        tdot<QT, 1>(rg, t + WARP, xs, ag);
        tdot<QT, 1>(ru, t + WARP, xs, au);
    }
    if (t < ntasks) {
        tdot<QT, 1>(rg, t, xs, ag);
        tdot<QT, 1>(ru, t, xs, au);
    }
    float g = warp_sum(ag[0]);
    float u = warp_sum(au[0]);
    if ((threadIdx.x & 31) == 0) {
        float sg = g / (1.f + expf(-g));
        act[(i64)p * ff + r] = sg * u;
    }
}

// Down projection of the k selected experts, weighted and added to the residual:
// x[r] += sum_s w[s] * (down_{ids[s]}[r] . act[s]). One warp per output row, all k slots.
template <int QT>
__device__ void moe_down_decode_impl(const u8* Wd, i64 expert_bytes, i64 row_bytes, int nrows,
                                     int ff, int k, const float* act, const int* ids,
                                     const float* wts, float* x) {
    pdl_begin();
    int r = blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
    if (r >= nrows) return;
    int lane = threadIdx.x & 31;
    int tpr = ff / QT_traits<QT>::TASK_ELEMS;  // tasks per row
    int total = tpr * k;
    float acc = 0.f;
#pragma unroll 3
    for (int t = lane; t < total; t += WARP) {
        int s = t / tpr, tt = t - s * tpr;
        const u8* row = Wd + (i64)ids[s] * expert_bytes + (i64)r * row_bytes;
        float a[1] = {0.f};
        const float* xs[1] = {act + (i64)s * ff};
        tdot<QT, 1>(row, tt, xs, a);
        acc += wts[s] * a[0];
    }
    acc = warp_sum(acc);
    if (lane == 0) x[r] += acc;
}

// ---------------------------------------------------------------------------------------------
// Batched (prefill) mat-mat: Y[p, r] (=|+=) W_e[r,:] . X[p / in_div, :] for the pairs p of a
// group. Dense: one group (expert 0) holding p = 0..n. Grouped MoE: blockIdx.z = expert e, its
// pairs are list[off[e] .. off[e+1]). TT pairs share each dequantized weight task.
// ---------------------------------------------------------------------------------------------

#define TT 8

template <int QT>
__device__ void matmat_impl(const u8* W, i64 expert_bytes, i64 row_bytes, int nrows, int K,
                            const float* X, int x_stride, int in_div, int n_dense,
                            const int* list, const int* off, float* Y, int y_stride, int mode) {
    pdl_begin();
    int r = blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
    if (r >= nrows) return;
    int lane = threadIdx.x & 31;
    int e = blockIdx.z;
    int p0 = 0, p1 = n_dense;
    if (off) {
        p0 = off[e];
        p1 = off[e + 1];
    }
    const u8* row = W + (i64)e * expert_bytes + (i64)r * row_bytes;
    int ntasks = K / QT_traits<QT>::TASK_ELEMS;
    for (int base = p0; base < p1; base += TT) {
        int cnt = min(TT, p1 - base);
        const float* xs[TT];
        int pid[TT];
#pragma unroll
        for (int n = 0; n < TT; n++) {
            int idx = base + min(n, cnt - 1);  // duplicates past the end are computed, not stored
            int p = list ? list[idx] : idx;
            pid[n] = p;
            xs[n] = X + (i64)(p / in_div) * x_stride;
        }
        float acc[TT];
#pragma unroll
        for (int n = 0; n < TT; n++) acc[n] = 0.f;
        for (int t = lane; t < ntasks; t += WARP) tdot<QT, TT>(row, t, xs, acc);
#pragma unroll
        for (int n = 0; n < TT; n++) {
            float s = warp_sum(acc[n]);
            if (lane == 0 && n < cnt) {
                float* dst = Y + (i64)pid[n] * y_stride + r;
                if (mode) *dst += s;
                else *dst = s;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Batched products on the tensor cores (prefill): Y[p, r] (=|+=) W_e[r,:] . X[p / in_div, :].
// Block tile: TC_BM = 64 weight rows x TC_BN = 64 pairs (tokens), K in steps of 128. The weight
// tile is dequantized to f16 in shared memory, the activation tile converted to f16; 4 warps each
// compute 32 rows x 32 pairs with mma.sync m16n8k16 (f16 operands, f32 accumulation).
// grid = (ceil(rows / 64), ceil(max pairs per group / 64), groups). K % 128 == 0.
// ---------------------------------------------------------------------------------------------

#define TC_BM 64
#define TC_BN 64
#define TC_BK 128
#define TC_LD (TC_BK + 8)  // halves per shared row: +8 keeps fragment loads free of bank conflicts

__device__ __forceinline__ u32 pack_h2(float a, float b) {
    u32 r;
    asm("{ .reg .f16 lo, hi;\n cvt.rn.f16.f32 lo, %1;\n cvt.rn.f16.f32 hi, %2;\n mov.b32 %0, {lo, hi}; }"
        : "=r"(r) : "f"(a), "f"(b));
    return r;
}

// Dequantize 64 consecutive weights (elements e0 .. e0+63 of a row, e0 % 64 == 0) into f32.
template <int QT>
__device__ __forceinline__ void deq64(const u8* __restrict__ row, int e0, float* w) {
    if (QT == QT_F32) {
#pragma unroll
        for (int i = 0; i < 64; i++) w[i] = ((const float*)row)[e0 + i];
    } else if (QT == QT_F16) {
#pragma unroll
        for (int i = 0; i < 64; i++) w[i] = h2f(((const u16*)row)[e0 + i]);
    } else if (QT == QT_Q8_0) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const u8* blk = row + (i64)(e0 / 32 + h) * 36;
            float d = h2f(*(const u16*)blk);
#pragma unroll
            for (int i = 0; i < 32; i++) w[32 * h + i] = d * (float)((const i8*)(blk + 4))[i];
        }
    } else if (QT == QT_Q4_K || QT == QT_Q5_K) {
        int b = e0 / 256, j = (e0 % 256) / 64;
        const u8* blk = row + (i64)b * (QT == QT_Q4_K ? 144 : 176);
        u32 dd = *(const u32*)blk;
        float d = h2f((u16)(dd & 0xFFFF)), dmin = h2f((u16)(dd >> 16));
        float s0, m0, s1, m1;
        scale_min_k4(2 * j, blk + 4, s0, m0);
        scale_min_k4(2 * j + 1, blk + 4, s1, m1);
        float d0 = d * s0, mm0 = dmin * m0, d1 = d * s1, mm1 = dmin * m1;
        const uint4* qs4 = (const uint4*)(blk + (QT == QT_Q4_K ? 16 : 48) + 32 * j);
        uint4 qa = qs4[0], qb = qs4[1];
        u32 q8[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
        u32 h8[8];
        if (QT == QT_Q5_K) {
            const uint4* qh4 = (const uint4*)(blk + 16);
            uint4 ha = qh4[0], hb = qh4[1];
            h8[0] = ha.x; h8[1] = ha.y; h8[2] = ha.z; h8[3] = ha.w;
            h8[4] = hb.x; h8[5] = hb.y; h8[6] = hb.z; h8[7] = hb.w;
        }
#pragma unroll
        for (int l = 0; l < 32; l++) {
            u32 byte = (q8[l >> 2] >> (8 * (l & 3))) & 0xFF;
            u32 lo = byte & 0xF, hi = byte >> 4;
            if (QT == QT_Q5_K) {
                u32 hb = (h8[l >> 2] >> (8 * (l & 3))) & 0xFF;
                lo |= ((hb >> (2 * j)) & 1) << 4;
                hi |= ((hb >> (2 * j + 1)) & 1) << 4;
            }
            w[l] = d0 * (float)lo - mm0;
            w[32 + l] = d1 * (float)hi - mm1;
        }
    } else {  // Q6_K repacked: elements l + 32 kk (kk = 2 half, 2 half + 1) of half nh
        int b = e0 / 256, nh = (e0 % 256) / 128, half = (e0 % 128) / 64;
        const u8* blk = row + (i64)b * 224;
        float d = h2f(*(const u16*)(blk + 208));
        const u8* ql = blk + 64 * nh;
        const u8* qh = blk + 128 + 32 * nh;
        const i8* sc = (const i8*)(blk + 192 + 8 * nh);
#pragma unroll
        for (int k2 = 0; k2 < 2; k2++) {
            int kk = 2 * half + k2;
#pragma unroll
            for (int l = 0; l < 32; l++) {
                int lo = (kk & 1) ? ql[l + 32] : ql[l];
                lo = (kk & 2) ? (lo >> 4) : (lo & 0xF);
                int hb = (qh[l] >> (2 * kk)) & 3;
                w[32 * k2 + l] = d * (float)sc[l / 16 + 2 * kk] * (float)((lo | (hb << 4)) - 32);
            }
        }
    }
}

__device__ __forceinline__ void mma16816(float* c, const u32* a, const u32* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// f32 -> (hi, lo) f16 pair with hi + lo == v to about 2^-22 relative.
__device__ __forceinline__ void split_h2(float a, float b, u32& hi, u32& lo) {
    hi = pack_h2(a, b);
    float ah, bh;
    asm("{ .reg .f16 lo, hi;\n mov.b32 {lo, hi}, %2;\n cvt.f32.f16 %0, lo;\n cvt.f32.f16 %1, hi; }"
        : "=f"(ah), "=f"(bh) : "r"(hi));
    lo = pack_h2(a - ah, b - bh);
}

// Dynamic shared memory: A hi/lo and B hi/lo tiles, TC_LD halves per row.
#define TC_SMEM_BYTES (4 * TC_BM * TC_LD * 2)

template <int QT>
__device__ void matmat_tc_impl(const u8* W, i64 expert_bytes, i64 row_bytes, int nrows, int K,
                               const float* X, int x_stride, int in_div, int n_dense,
                               const int* list, const int* off, float* Y, int y_stride, int mode) {
    pdl_begin();
    extern __shared__ __align__(16) u16 tc_smem[];
    u16* sAh = tc_smem;
    u16* sAl = sAh + TC_BM * TC_LD;
    u16* sBh = sAl + TC_BM * TC_LD;
    u16* sBl = sBh + TC_BN * TC_LD;
    __shared__ int spid[TC_BN];
    int e = blockIdx.z;
    int p0 = 0, p1 = n_dense;
    if (off) {
        p0 = off[e];
        p1 = off[e + 1];
    }
    int base = p0 + blockIdx.y * TC_BN;
    if (base >= p1) return;
    int cnt = min(TC_BN, p1 - base);
    int r0 = blockIdx.x * TC_BM;
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    if (tid < TC_BN) {
        int idx = base + min(tid, cnt - 1);
        spid[tid] = list ? list[idx] : idx;
    }
    const u8* Wb = W + (i64)e * expert_bytes;
    float acc[2][4][4];
#pragma unroll
    for (int a = 0; a < 2; a++)
#pragma unroll
        for (int b = 0; b < 4; b++)
#pragma unroll
            for (int c = 0; c < 4; c++) acc[a][b][c] = 0.f;
    int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;  // warp tile origin (rows, pairs)
    int g = lane >> 2, cq = lane & 3;
    __syncthreads();
    for (int k0 = 0; k0 < K; k0 += TC_BK) {
        {
            int rr = tid >> 1, hh = tid & 1;
            int r = min(r0 + rr, nrows - 1);
            float w[64];
            deq64<QT>(Wb + (i64)r * row_bytes, k0 + 64 * hh, w);
            u32* dh = (u32*)(sAh + rr * TC_LD + 64 * hh);
            u32* dl = (u32*)(sAl + rr * TC_LD + 64 * hh);
#pragma unroll
            for (int i = 0; i < 32; i++) split_h2(w[2 * i], w[2 * i + 1], dh[i], dl[i]);
        }
        {
            int pp = tid >> 1, hh = tid & 1;
            const float4* x4 = (const float4*)(X + (i64)(spid[pp] / in_div) * x_stride + k0 + 64 * hh);
            u32* dh = (u32*)(sBh + pp * TC_LD + 64 * hh);
            u32* dl = (u32*)(sBl + pp * TC_LD + 64 * hh);
#pragma unroll
            for (int i = 0; i < 16; i++) {
                float4 v = x4[i];
                split_h2(v.x, v.y, dh[2 * i], dl[2 * i]);
                split_h2(v.z, v.w, dh[2 * i + 1], dl[2 * i + 1]);
            }
        }
        __syncthreads();
#pragma unroll 2
        for (int kk = 0; kk < TC_BK; kk += 16) {
            u32 ah[2][4], al[2][4], bh[4][2], bl[4][2];
#pragma unroll
            for (int a = 0; a < 2; a++) {
                int o = (wm + 16 * a + g) * TC_LD + kk + 2 * cq;
                ah[a][0] = *(const u32*)(sAh + o);
                ah[a][1] = *(const u32*)(sAh + o + 8 * TC_LD);
                ah[a][2] = *(const u32*)(sAh + o + 8);
                ah[a][3] = *(const u32*)(sAh + o + 8 * TC_LD + 8);
                al[a][0] = *(const u32*)(sAl + o);
                al[a][1] = *(const u32*)(sAl + o + 8 * TC_LD);
                al[a][2] = *(const u32*)(sAl + o + 8);
                al[a][3] = *(const u32*)(sAl + o + 8 * TC_LD + 8);
            }
#pragma unroll
            for (int b = 0; b < 4; b++) {
                int o = (wn + 8 * b + g) * TC_LD + kk + 2 * cq;
                bh[b][0] = *(const u32*)(sBh + o);
                bh[b][1] = *(const u32*)(sBh + o + 8);
                bl[b][0] = *(const u32*)(sBl + o);
                bl[b][1] = *(const u32*)(sBl + o + 8);
            }
            // W x = Wh xh + Wh xl + Wl xh (+ Wl xl, below f32 rounding): f32-like precision
#pragma unroll
            for (int a = 0; a < 2; a++)
#pragma unroll
                for (int b = 0; b < 4; b++) {
                    mma16816(acc[a][b], al[a], bh[b]);
                    mma16816(acc[a][b], ah[a], bl[b]);
                    mma16816(acc[a][b], ah[a], bh[b]);
                }
        }
        __syncthreads();
    }
    // c0,c1: (row g, pairs 2cq, 2cq+1); c2,c3: (row g+8, same pairs)
#pragma unroll
    for (int a = 0; a < 2; a++)
#pragma unroll
        for (int b = 0; b < 4; b++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int r = r0 + wm + 16 * a + g + ((i & 2) ? 8 : 0);
                int pl = wn + 8 * b + 2 * cq + (i & 1);
                if (r < nrows && pl < cnt) {
                    float* dst = Y + (i64)spid[pl] * y_stride + r;
                    if (mode) *dst += acc[a][b][i];
                    else *dst = acc[a][b][i];
                }
            }
}

// ---------------------------------------------------------------------------------------------
// Entry points, one per supported qtype (the host picks by the tensor's qtype; there is no
// default branch: an unsupported qtype has no entry point and is rejected at load).
// ---------------------------------------------------------------------------------------------

#define ENTRIES(NAME, QT)                                                                        \
    extern "C" __global__ void matvec_##NAME(const u8* W, i64 row_bytes, int nrows, int K,        \
                                             const float* x, float* y, int mode) {                \
        matvec_impl<QT>(W, row_bytes, nrows, K, x, y, mode);                                     \
    }                                                                                            \
    extern "C" __global__ void matvec3_##NAME(const u8* W0, const u8* W1, const u8* W2,          \
                                              i64 row_bytes, int n0, int n1, int n2, int K,       \
                                              const float* x, float* y0, float* y1, float* y2) {  \
        matvec3_impl<QT>(W0, W1, W2, row_bytes, n0, n1, n2, K, x, y0, y1, y2);                   \
    }                                                                                            \
    extern "C" __global__ void router_decode_##NAME(const u8* W, i64 row_bytes, int n_exp, int K,   \
                                                    const float* x, const float* nw, float eps,   \
                                                    float* h_out, float* logits, int k, int* ids, \
                                                    float* wts, unsigned* counter, u8* hq) {      \
        router_decode_impl<QT>(W, row_bytes, n_exp, K, x, nw, eps, h_out, logits, k, ids, wts,    \
                               counter, hq);                                                      \
    }                                                                                            \
    extern "C" __global__ void moe_gate_up_##NAME(const u8* Wg, const u8* Wu, i64 expert_bytes,   \
                                                  i64 row_bytes, int ff, int K, const float* x,   \
                                                  int x_stride, int in_div, const int* ids,       \
                                                  float* act, const u8* Wd, i64 d_bytes) {        \
        moe_gate_up_impl<QT>(Wg, Wu, expert_bytes, row_bytes, ff, K, x, x_stride, in_div, ids,    \
                             act, Wd, d_bytes);                                                   \
    }                                                                                            \
    extern "C" __global__ void moe_down_decode_##NAME(const u8* Wd, i64 expert_bytes,             \
                                                      i64 row_bytes, int nrows, int ff, int k,    \
                                                      const float* act, const int* ids,           \
                                                      const float* wts, float* x) {               \
        moe_down_decode_impl<QT>(Wd, expert_bytes, row_bytes, nrows, ff, k, act, ids, wts, x);   \
    }                                                                                            \
    extern "C" __global__ void matmat_##NAME(const u8* W, i64 expert_bytes, i64 row_bytes,        \
                                             int nrows, int K, const float* X, int x_stride,      \
                                             int in_div, int n_dense, const int* list,            \
                                             const int* off, float* Y, int y_stride, int mode) {  \
        matmat_impl<QT>(W, expert_bytes, row_bytes, nrows, K, X, x_stride, in_div, n_dense, list, \
                        off, Y, y_stride, mode);                                                  \
    }                                                                                            \
    extern "C" __global__ void __launch_bounds__(128) matmat_tc_##NAME(                           \
        const u8* W, i64 expert_bytes, i64 row_bytes, int nrows, int K, const float* X,          \
        int x_stride, int in_div, int n_dense, const int* list, const int* off, float* Y,        \
        int y_stride, int mode) {                                                                \
        matmat_tc_impl<QT>(W, expert_bytes, row_bytes, nrows, K, X, x_stride, in_div, n_dense,    \
                           list, off, Y, y_stride, mode);                                         \
    }

ENTRIES(f32, QT_F32)
ENTRIES(f16, QT_F16)
ENTRIES(q8_0, QT_Q8_0)
ENTRIES(q4_k, QT_Q4_K)
ENTRIES(q5_k, QT_Q5_K)
ENTRIES(q6_k, QT_Q6_K)

// ---------------------------------------------------------------------------------------------
// Element-wise and small kernels (T tokens; grid.x or blocks over tokens).
// ---------------------------------------------------------------------------------------------

// Dequantize one element of a row (embedding lookup only: a handful of rows per step).
__device__ float deq_elem(int qt, const u8* row, int i) {
    if (qt == QT_F32) return ((const float*)row)[i];
    if (qt == QT_F16) return h2f(((const u16*)row)[i]);
    if (qt == QT_Q8_0) {
        const u8* blk = row + (i / 32) * 36;
        return h2f(*(const u16*)blk) * (float)((const i8*)(blk + 4))[i % 32];
    }
    int b = i / 256, k = i % 256;
    if (qt == QT_Q4_K || qt == QT_Q5_K) {
        const u8* blk = row + b * (qt == QT_Q4_K ? 144 : 176);
        float d = h2f(((const u16*)blk)[0]), dmin = h2f(((const u16*)blk)[1]);
        int j = k / 64, l = k % 32, hi = (k / 32) & 1;
        float sc, m;
        scale_min_k4(2 * j + hi, blk + 4, sc, m);
        const u8* qs = blk + (qt == QT_Q4_K ? 16 : 48);
        int q = hi ? (qs[32 * j + l] >> 4) : (qs[32 * j + l] & 0xF);
        if (qt == QT_Q5_K) q |= ((blk[16 + l] >> (2 * j + hi)) & 1) << 4;
        return d * sc * (float)q - dmin * m;
    }
    // Q6_K repacked
    const u8* blk = row + b * 224;
    float d = h2f(*(const u16*)(blk + 208));
    int nh = k / 128, r = k % 128, kk = r / 32, l = r % 32;
    const u8* ql = blk + 64 * nh;
    const u8* qh = blk + 128 + 32 * nh;
    const i8* sc = (const i8*)(blk + 192 + 8 * nh);
    int lo = (kk & 1) ? ql[l + 32] : ql[l];
    lo = (kk & 2) ? (lo >> 4) : (lo & 0xF);
    int hb = (qh[l] >> (2 * kk)) & 3;
    int q = (lo | (hb << 4)) - 32;
    return d * (float)sc[l / 16 + 2 * kk] * (float)q;
}

// x[t, :] = dequant(E[tokens[t], :]); grid.x = T.
extern "C" __global__ void embed(int qt, const u8* E, i64 row_bytes, int n_embd, int vocab,
                                 const int* tokens, float* x) {
    pdl_begin();
    int t = blockIdx.x;
    int tok = tokens[t];
    if (tok < 0 || tok >= vocab) tok = 0;  // the host validates tokens; this only avoids a fault
    const u8* row = E + (i64)tok * row_bytes;
    for (int i = threadIdx.x; i < n_embd; i += blockDim.x) x[(i64)t * n_embd + i] = deq_elem(qt, row, i);
}

// y[t, :] = x[t, :] / sqrt(mean(x^2) + eps) * w; grid.x = T.
extern "C" __global__ void rmsnorm(const float* x, const float* w, float* y, int n, float eps) {
    pdl_begin();
    __shared__ float red[32];
    const float* xr = x + (i64)blockIdx.x * n;
    float* yr = y + (i64)blockIdx.x * n;
    // n % 4 == 0 (checked at load): float4 accesses, unrolled so the loads overlap
    const float4* x4 = (const float4*)xr;
    const float4* w4 = (const float4*)w;
    float4* y4 = (float4*)yr;
    int n4 = n / 4;
    float s = 0.f;
#pragma unroll 4
    for (int i = threadIdx.x; i < n4; i += blockDim.x) {
        float4 v = x4[i];
        s += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    s = block_sum(s, red);
    float scale = rsqrtf(s / (float)n + eps);
#pragma unroll 4
    for (int i = threadIdx.x; i < n4; i += blockDim.x) {
        float4 v = x4[i], ww = w4[i];
        y4[i] = make_float4(v.x * scale * ww.x, v.y * scale * ww.y, v.z * scale * ww.z, v.w * scale * ww.w);
    }
}

// Per-head RMSNorm of q and k, NEOX RoPE, and the store of k and v into the cache.
// grid = (n_head + n_head_kv, T), block = head_dim threads. Token t sits at position
// pos0 + t, where pos0 = *pos_ptr (device-resident so that a captured decode graph replays at
// any position).
extern "C" __global__ void qk_norm_rope_store(float* q, const float* k, const float* v,
                                              const float* qnw, const float* knw, float* kc,
                                              float* vc, const int* pos_ptr, int n_head,
                                              int n_head_kv, int hd, float base, float eps) {
    pdl_begin();
    __shared__ float red[32];
    __shared__ float buf[512];
    int h = blockIdx.x, t = blockIdx.y, i = threadIdx.x;
    int pos = *pos_ptr + t;
    int q_dim = n_head * hd, kv_dim = n_head_kv * hd;
    bool is_q = h < n_head;
    int hh = is_q ? h : h - n_head;
    const float* src = is_q ? (q + (i64)t * q_dim + hh * hd) : (k + (i64)t * kv_dim + hh * hd);
    const float* nw = is_q ? qnw : knw;
    float val = src[i];
    float ss = block_sum(val * val, red);
    float nv = val * rsqrtf(ss / (float)hd + eps) * nw[i];
    buf[i] = nv;
    __syncthreads();
    int half = hd / 2;
    int pi = i < half ? i : i - half;
    float inv = powf(base, -2.0f * (float)pi / (float)hd);
    float ang = (float)pos * inv;
    float sn, cs;
    sincosf(ang, &sn, &cs);
    float out = i < half ? (buf[i] * cs - buf[i + half] * sn) : (buf[i - half] * sn + buf[i] * cs);
    if (is_q) {
        q[(i64)t * q_dim + hh * hd + i] = out;
    } else {
        kc[(i64)pos * kv_dim + hh * hd + i] = out;
        vc[(i64)pos * kv_dim + hh * hd + i] = v[(i64)t * kv_dim + hh * hd + i];
    }
}

// Causal attention, split over key chunks (flash-decoding): attn_partial computes, for query
// token t (position pos0 + t), KV head kvh and key chunk c (ATT_CH keys), the chunk's max score
// m, sum of exp l and unnormalised output o for each of the G = n_head / n_head_kv query heads
// of that KV head (each K and V row is read once for all G heads); attn_combine merges chunks.
// grid = (n_head_kv, n_chunks, T), block 256. Needs hd <= 128, G <= 8.
#define ATT_CH 32
#define ATT_HD 128
// K and V tiles of the same rows together: every float4 load of both is issued before the first
// store, so the two tiles cost one memory latency instead of two. 256 threads.
#define ATT_LD ((ATT_CH * ATT_HD / 4 + 255) / 256)
__device__ __forceinline__ void load_tiles_kv(float (*sk)[ATT_HD + 1], float (*sv)[ATT_HD + 1],
                                              const float* kc, const float* vc, int j0, int cnt,
                                              int kv_dim, int col0, int hd, int tid) {
    int per_row = hd / 4, nf = cnt * per_row;
    float4 tk[ATT_LD], tv[ATT_LD];
#pragma unroll
    for (int u = 0; u < ATT_LD; u++) {
        int f = tid + u * 256;
        if (f < nf) {
            int j = f / per_row, d4 = f % per_row;
            long long off = (long long)(j0 + j) * kv_dim + col0;
            tk[u] = ((const float4*)(kc + off))[d4];
            tv[u] = ((const float4*)(vc + off))[d4];
        }
    }
#pragma unroll
    for (int u = 0; u < ATT_LD; u++) {
        int f = tid + u * 256;
        if (f < nf) {
            int j = f / per_row, d = 4 * (f % per_row);
            sk[j][d] = tk[u].x; sk[j][d + 1] = tk[u].y; sk[j][d + 2] = tk[u].z; sk[j][d + 3] = tk[u].w;
            sv[j][d] = tv[u].x; sv[j][d + 1] = tv[u].y; sv[j][d + 2] = tv[u].z; sv[j][d + 3] = tv[u].w;
        }
    }
}

extern "C" __global__ void attn_partial(const float* q, const float* kc, const float* vc,
                                        float* part, const int* pos_ptr, int n_head,
                                        int n_head_kv, int hd, int n_chunks, float scale) {
    pdl_begin();
    __shared__ float sk[ATT_CH][ATT_HD + 1];
    __shared__ float sv[ATT_CH][ATT_HD + 1];
    __shared__ float sq[8][ATT_HD];
    __shared__ float sp[8][ATT_CH];
    int kvh = blockIdx.x, c = blockIdx.y, t = blockIdx.z;
    int G = n_head / n_head_kv;
    int n = *pos_ptr + t + 1;
    int j0 = c * ATT_CH;
    int q_dim = n_head * hd, kv_dim = n_head_kv * hd;
    // part layout: [t][head][chunk][hd + 2] with (m, l) after o
    int tid = threadIdx.x;
    if (j0 >= n) {
        for (int g = tid; g < G; g += blockDim.x) {
            float* pp = part + (((long long)t * n_head + kvh * G + g) * n_chunks + c) * (hd + 2);
            pp[hd] = -INFINITY;
            pp[hd + 1] = 0.f;
        }
        return;
    }
    int cnt = min(ATT_CH, n - j0);
    for (int i = tid; i < G * hd; i += blockDim.x) {
        int g = i / hd, d = i % hd;
        sq[g][d] = q[(long long)t * q_dim + (kvh * G + g) * hd + d];
    }
    load_tiles_kv(sk, sv, kc, vc, j0, cnt, kv_dim, kvh * hd, hd, tid);
    __syncthreads();
    for (int i = tid; i < G * ATT_CH; i += blockDim.x) {
        int g = i / ATT_CH, j = i % ATT_CH;
        float s = -INFINITY;
        if (j < cnt) {
            s = 0.f;
            for (int d = 0; d < hd; d++) s += sq[g][d] * sk[j][d];
            s *= scale;
        }
        sp[g][j] = s;
    }
    __syncthreads();
    // per head: max and exp (one warp per head)
    int lane = tid & 31, w = tid >> 5;
    for (int g = w; g < G; g += blockDim.x >> 5) {
        // ATT_CH == 32: one key per lane
        float m = warp_max(sp[g][lane]);
        float e0 = lane < cnt ? expf(sp[g][lane] - m) : 0.f;
        sp[g][lane] = e0;
        float l = warp_sum(e0);
        if (lane == 0) {
            float* pp = part + (((long long)t * n_head + kvh * G + g) * n_chunks + c) * (hd + 2);
            pp[hd] = m;
            pp[hd + 1] = l;
        }
    }
    __syncthreads();
    // o[g][d] = sum_j p[g][j] V[j][d]; thread -> (d, head set)
    int nsets = blockDim.x / hd;  // 2 when hd = 128
    int d = tid % hd, set = tid / hd;
    if (set < nsets) {
        float acc[8];
#pragma unroll
        for (int g = 0; g < 8; g++) acc[g] = 0.f;
        for (int j = 0; j < cnt; j++) {
            float v = sv[j][d];
#pragma unroll
            for (int g = 0; g < 8; g++)
                if (g % nsets == set && g < G) acc[g] += sp[g][j] * v;
        }
#pragma unroll
        for (int g = 0; g < 8; g++)
            if (g % nsets == set && g < G)
                part[(((long long)t * n_head + kvh * G + g) * n_chunks + c) * (hd + 2) + d] = acc[g];
    }
}

// out[t, h, :] = sum_c exp(m_c - M) o_c / sum_c exp(m_c - M) l_c. grid = (n_head, T), block hd.
__device__ void q16_quantize_lanes8(float x, u8* out, int K, int e);  // decode_q16.cu
// outq (decode only, may be 0): the output also as a Q16 vector of n_head hd elements for the
// q16 o projection (hd % 8 == 0: each block of 8 is 8 adjacent lanes of one warp).
extern "C" __global__ void attn_combine(const float* part, float* out, const int* pos_ptr,
                                        int n_head, int hd, int n_chunks, u8* outq) {
    pdl_begin();
    int h = blockIdx.x, t = blockIdx.y, d = threadIdx.x;
    int n = *pos_ptr + t + 1;
    int used = (n + ATT_CH - 1) / ATT_CH;
    const float* pp = part + ((long long)t * n_head + h) * n_chunks * (hd + 2);
    float M = -INFINITY;
    for (int c = 0; c < used; c++) M = fmaxf(M, pp[c * (hd + 2) + hd]);
    float L = 0.f, acc = 0.f;
    for (int c = 0; c < used; c++) {
        float f = expf(pp[c * (hd + 2) + hd] - M);
        L += f * pp[c * (hd + 2) + hd + 1];
        acc += f * pp[c * (hd + 2) + d];
    }
    out[(long long)t * n_head * hd + h * hd + d] = acc / L;
    if (outq) q16_quantize_lanes8(acc / L, outq, n_head * hd, h * hd + d);
}

// Router: p = softmax(l[:n_exp]); the k largest p (ties: lower index first), weights
// renormalised to sum 1. One warp (lane = its lane id); n_exp <= 256. `l` is read as volatile so
// that the fused decode router can read logits other blocks wrote in the same launch.
__device__ void topk_row(const volatile float* l, int n_exp, int k, int* ids, float* wts, int lane) {
    float v[8];
    float m = -INFINITY;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        int e = lane + 32 * i;
        v[i] = e < n_exp ? l[e] : -INFINITY;
        m = fmaxf(m, v[i]);
    }
    m = warp_max(m);
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        int e = lane + 32 * i;
        v[i] = e < n_exp ? expf(v[i] - m) : -1.f;  // probabilities are >= 0; -1 marks "absent"
        if (e < n_exp) s += v[i];
        // A NaN logit must not leave the selection without a candidate (that would index an
        // expert out of range): it competes as probability 0 and its NaN reaches the weights.
        if (e < n_exp && !(v[i] >= 0.f)) v[i] = 0.f;
    }
    s = warp_sum(s);
    float chosen_sum = 0.f;
    for (int r = 0; r < k; r++) {
        float best = -2.f;
        int bi = 1 << 30;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int e = lane + 32 * i;
            if (v[i] > best || (v[i] == best && e < bi)) { best = v[i]; bi = e; }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            float ob = __shfl_xor_sync(0xffffffffu, best, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ob > best || (ob == best && oi < bi)) { best = ob; bi = oi; }
        }
        if (bi >= n_exp) bi = 0;  // unreachable with the NaN guard above; never index past the experts
        if (lane == 0) {
            ids[r] = bi;
            wts[r] = best / s;
        }
        chosen_sum += best / s;
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (lane + 32 * i == bi) v[i] = -2.f;
    }
    __syncwarp();
    if (lane == 0)
        for (int r = 0; r < k; r++) wts[r] /= chosen_sum;
}

// grid.x = T, one warp per token.
extern "C" __global__ void router_topk(const float* logits, int n_exp, int k, int* ids, float* wts) {
    pdl_begin();
    int t = blockIdx.x;
    topk_row(logits + (i64)t * n_exp, n_exp, k, ids + t * k, wts + t * k, threadIdx.x);
}

// Group the (token, slot) pairs by expert: off[e] .. off[e+1] indexes list[], which holds the
// pair ids p = t * k + slot in increasing order per expert. One block; n_exp <= 1024.
extern "C" __global__ void group_pairs(const int* ids_g, int n_pairs, int n_exp, int* off, int* list) {
    pdl_begin();
    __shared__ int cnt[1024];
    __shared__ int start[1025];
    extern __shared__ int ids[];  // n_pairs ints (dynamic)
    for (int p = threadIdx.x; p < n_pairs; p += blockDim.x) ids[p] = ids_g[p];
    __syncthreads();
    for (int e = threadIdx.x; e < n_exp; e += blockDim.x) cnt[e] = 0;
    __syncthreads();
    for (int p = threadIdx.x; p < n_pairs; p += blockDim.x) atomicAdd(&cnt[ids[p]], 1);
    __syncthreads();
    if (threadIdx.x == 0) {
        int acc = 0;
        for (int e = 0; e < n_exp; e++) {
            start[e] = acc;
            off[e] = acc;
            acc += cnt[e];
        }
        off[n_exp] = acc;
    }
    __syncthreads();
    // thread e fills expert e's list in increasing pair order (deterministic, no atomics)
    for (int e = threadIdx.x; e < n_exp; e += blockDim.x) {
        int w = start[e];
        for (int p = 0; p < n_pairs; p++)
            if (ids[p] == e) list[w++] = p;
    }
}

// group_pairs with the pairs split over the block's 32 warps (the serial fill above, one thread
// per expert scanning every pair, was 41 us per prefill layer on the H200). Warp w takes a
// contiguous slice of the pairs; it counts its slice per expert (__match_any_sync: the lowest lane
// of each group of equal ids adds the group's size), the counts become each warp's first slot
// per expert (expert-major, warp-minor prefix sums), and the warp walks its slice again writing
// each pair at its slot plus its rank among the lower lanes of its group. The output is the
// serial kernel's: pairs in increasing order within each expert.
// Dynamic shared memory: (n_pairs + 33 * n_exp) ints; the host uses it for n_exp <= 128.
extern "C" __global__ void __launch_bounds__(1024) group_pairs_w(const int* ids_g, int n_pairs,
                                                               int n_exp, int* off, int* list) {
    pdl_begin();
    extern __shared__ int gp_smem[];
    int* ids = gp_smem;                 // n_pairs
    int* base = ids + n_pairs;          // [32][n_exp]: warp w's count, then its first slot
    int* tot = base + 32 * n_exp;       // n_exp: pairs per expert, then the expert's first slot
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const unsigned below = (1u << lane) - 1u;
    for (int p = threadIdx.x; p < n_pairs; p += blockDim.x) ids[p] = ids_g[p];
    for (int i = threadIdx.x; i < 32 * n_exp; i += blockDim.x) base[i] = 0;
    __syncthreads();
    const int per = (((n_pairs + 31) / 32) + 31) & ~31;  // pairs per warp, whole rounds of 32
    const int p0 = w * per, p1 = min(n_pairs, p0 + per);
    for (int q = p0; q < p1; q += 32) {
        int p = q + lane;
        int e = p < p1 ? ids[p] : -1;
        unsigned m = __match_any_sync(0xffffffffu, e);
        if (e >= 0 && (m & below) == 0) base[w * n_exp + e] += __popc(m);
        __syncwarp();
    }
    __syncthreads();
    for (int e = threadIdx.x; e < n_exp; e += blockDim.x) {
        int c = 0;
        for (int ww = 0; ww < 32; ww++) c += base[ww * n_exp + e];
        tot[e] = c;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int acc = 0;
        for (int e = 0; e < n_exp; e++) {
            int c = tot[e];
            tot[e] = acc;
            off[e] = acc;
            acc += c;
        }
        off[n_exp] = acc;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < n_exp; e += blockDim.x) {
        int run = tot[e];
        for (int ww = 0; ww < 32; ww++) {
            int c = base[ww * n_exp + e];
            base[ww * n_exp + e] = run;
            run += c;
        }
    }
    __syncthreads();
    for (int q = p0; q < p1; q += 32) {
        int p = q + lane;
        int e = p < p1 ? ids[p] : -1;
        unsigned m = __match_any_sync(0xffffffffu, e);
        int slot = e >= 0 ? base[w * n_exp + e] : 0;
        if (e >= 0) list[slot + __popc(m & below)] = p;
        __syncwarp();
        if (e >= 0 && (m & below) == 0) base[w * n_exp + e] = slot + __popc(m);
        __syncwarp();
    }
}

// act[i] = silu(g[i]) * u[i]
extern "C" __global__ void swiglu(const float* g, const float* u, float* act, i64 n) {
    pdl_begin();
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float x = g[i];
        act[i] = x / (1.f + expf(-x)) * u[i];
    }
}

// x[t, r] += sum_s wts[t*k + s] * y[(t*k + s), r]; grid.x = T.
extern "C" __global__ void moe_combine(const float* y, const float* wts, int k, int n, float* x) {
    pdl_begin();
    int t = blockIdx.x;
    for (int r = threadIdx.x; r < n; r += blockDim.x) {
        float acc = 0.f;
        for (int s = 0; s < k; s++) acc += wts[t * k + s] * y[((i64)t * k + s) * n + r];
        x[(i64)t * n + r] += acc;
    }
}

// First index of the maximum of v[0..n) (NaN never wins); writes it to out_tok[0] and to
// hist[*pos_ptr + off] (off = 1 inside a decode step, before the position advances; 0 right
// after a prefill, whose position has already advanced). One block.
extern "C" __global__ void argmax(const float* v, int n, int* out_tok, int* hist, const int* pos_ptr,
                                  int off) {
    pdl_begin();
    __shared__ float bv[32];
    __shared__ int bi[32];
    float best = -INFINITY;
    int idx = 0x7fffffff;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float x = v[i];
        if (x > best || (x == best && i < idx)) { best = x; idx = i; }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ob = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, idx, o);
        if (ob > best || (ob == best && oi < idx)) { best = ob; idx = oi; }
    }
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) { bv[w] = best; bi[w] = idx; }
    __syncthreads();
    if (threadIdx.x == 0) {
        int nw = blockDim.x >> 5;
        for (int i = 1; i < nw; i++)
            if (bv[i] > best || (bv[i] == best && bi[i] < idx)) { best = bv[i]; idx = bi[i]; }
        if (idx == 0x7fffffff) idx = 0;
        out_tok[0] = idx;
        if (hist) hist[*pos_ptr + off] = idx;
    }
}

// *pos_ptr += by (the last node of a captured decode step).
extern "C" __global__ void advance_pos(int* pos_ptr, int by) {
    pdl_begin();
    *pos_ptr += by;
}

// Poison fill for checks: every element set to a NaN pattern.
extern "C" __global__ void fill_u32(u32* p, u32 v, i64 n) {
    pdl_begin();
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) p[i] = v;
}
