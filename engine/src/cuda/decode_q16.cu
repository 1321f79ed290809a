// Decode MoE products with 16-bit integer activations and dp4a dots (the "q16" path; on by
// default, PV_GPU_NO_Q16=1 keeps the f32-activation kernels of kernels.cu / decode.cu).
// Appended after decode.cu (PV_KERNELS_PRELUDE): uses its RPW, MV_WARPS, warp_sum, pdl_begin,
// prefetch_l2_warp, scale_min_k4 and the QT_traits task layout.
//
// Why: the decode expert kernels (moe_gate_up2, moe_down_decode) were bound by instruction issue,
// not by memory: ptxas gives moe_gate_up2_q4_k ~4.6 instructions per weight (nibble shift and
// mask, integer-to-float conversion, FMA, and the activation sums), ~2,500 per warp, and the
// H200 ran them at ~1 TB/s of its ~4.8. With the activation as integers, four weights take one
// dp4a (a 4-way int8 dot with int32 accumulation) after one mask for four nibbles.
//
// Precision: 8-bit activations (llama.cpp's q8_1) perturb the router by up to ~1e-2 on tiny models
// (FALSIFY-QW3-REF-Q8ACT-001), far above the GPU contract's near-tie epsilon of 1e-4. So each
// activation is a 16-bit integer v (|v| <= Q16_MAX) per block of 8 elements with an f32 scale dx
// (x ~ dx v, |x - dx v| <= 0.502 dx = 1.54e-5 of the block's largest magnitude), held as two
// int8 halves v = 256 hi + lo (hi in [-128, 127], lo in [-128, 127]), and every dot takes two dp4a
// per four weights: sum q v = 256 (q . hi) + (q . lo), exact in int32. The products of the integer
// quants with v are exact; what is rounded is the activation (to 16 bits per 8 elements) and the
// f32 scaling per block, the block-scale / min application and the f32 sums, as before.
// Blocks of 8 (not 32) so that the gate/up kernel, whose thread block computes 8 consecutive
// rows of the SwiGLU output, can quantize its own outputs for the down kernel without a second
// launch or a cross-block handoff.
//
// Q16 vector layout for K elements (K % 32 == 0, 3 K bytes, 16-byte aligned parts):
//   i8 hi[K], i8 lo[K], f32 dx[K / 8], i32 isum[K / 8] (isum = sum of v over the block: the
//   activation sum of the Q4_K / Q5_K min term and the Q6_K offset term, as integers).

#ifndef PV_KERNELS_PRELUDE
#error "decode_q16.cu is compiled after kernels.cu"
#endif

#define Q16_MAX 32639  // 256 * 127 + 127: (v + 128) >> 8 stays in [-128, 127]
#define Q16_BLOCK 8
static_assert(RPW * MV_WARPS == Q16_BLOCK, "moe_gate_up2_q16: one thread block = one Q16 block of rows");

struct Q16Vec {
    const u8* hi;
    const u8* lo;
    const float* dx;
    const int* isum;
};

__device__ __forceinline__ Q16Vec q16_vec(const u8* base, int K) {
    Q16Vec v;
    v.hi = base;
    v.lo = base + K;
    v.dx = (const float*)(base + 2 * (i64)K);
    v.isum = (const int*)(base + 2 * (i64)K + 4 * (i64)(K / Q16_BLOCK));
    return v;
}

#ifdef PV_EMU
__device__ __forceinline__ int q16_dp4a(int a, int b, int c) { return emu_dp4a(a, b, c); }
__device__ __forceinline__ int q16_rint(float x) { return emu_rint(x); }
#else
__device__ __forceinline__ int q16_dp4a(int a, int b, int c) { return __dp4a(a, b, c); }
__device__ __forceinline__ int q16_rint(float x) { return __float2int_rn(x); }
#endif

// The block's scale and its elements' integer values. inv = Q16_MAX / amax rounds v into
// [-Q16_MAX, Q16_MAX] (x * inv <= Q16_MAX (1 + 2^-23) < Q16_MAX + 0.5); an all-zero block has
// dx = 0 and v = 0.
__device__ __forceinline__ float q16_scale(float amax, float& inv) {
    inv = amax > 0.f ? (float)Q16_MAX / amax : 0.f;
    return amax / (float)Q16_MAX;
}
// v -> (hi, lo) with v = 256 hi + lo, both in [-128, 127]
__device__ __forceinline__ void q16_split(int v, int& hi, int& lo) {
    hi = (v + 128) >> 8;  // arithmetic shift: floor
    lo = v - (hi << 8);
}

// Quantize the 8 elements at x8 into block b of the Q16 vector of K elements at out.
__device__ void q16_quantize_one(const float* x8, u8* out, int K, int b) {
    float v[8];
    const float4* x4 = (const float4*)x8;
    float4 a = x4[0], c = x4[1];
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
    v[4] = c.x; v[5] = c.y; v[6] = c.z; v[7] = c.w;
    float amax = 0.f;
#pragma unroll
    for (int i = 0; i < 8; i++) amax = fmaxf(amax, fabsf(v[i]));
    float inv;
    float d = q16_scale(amax, inv);
    u32 h[2] = {0u, 0u}, l[2] = {0u, 0u};
    int s = 0;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        int q = q16_rint(v[i] * inv), qh, ql;
        q16_split(q, qh, ql);
        s += q;
        h[i >> 2] |= ((u32)qh & 0xFFu) << (8 * (i & 3));
        l[i >> 2] |= ((u32)ql & 0xFFu) << (8 * (i & 3));
    }
    *(uint2*)(out + 8 * b) = make_uint2(h[0], h[1]);
    *(uint2*)(out + K + 8 * b) = make_uint2(l[0], l[1]);
    ((float*)(out + 2 * (i64)K))[b] = d;
    ((int*)(out + 2 * (i64)K + 4 * (i64)(K / Q16_BLOCK)))[b] = s;
}

// Quantize x[K] (16-byte aligned) into the Q16 vector at out, blocks first, first + step, ...
// (one thread per block, no shuffles: for a block of threads that already holds x, e.g. the
// decode router's normalised input in shared memory).
__device__ void q16_quantize_blocks(const float* x, int K, u8* out, int first, int step) {
    for (int b = first; b < K / Q16_BLOCK; b += step) q16_quantize_one(x + 8 * b, out, K, b);
}

// Element e of a Q16 vector of K elements, held by this lane as x: the block of 8 is lanes
// 8j .. 8j + 7 of the warp (e % 8 == lane % 8, all 32 lanes present), which find its largest
// magnitude and integer sum by shuffles; each lane stores its own two bytes.
__device__ void q16_quantize_lanes8(float x, u8* out, int K, int e) {
    float amax = fabsf(x);
#pragma unroll
    for (int o = 1; o < 8; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    float inv;
    float d = q16_scale(amax, inv);
    int v = q16_rint(x * inv), hi, lo;
    q16_split(v, hi, lo);
    int s = v;
#pragma unroll
    for (int o = 1; o < 8; o <<= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    out[e] = (u8)(hi & 0xFF);
    out[K + e] = (u8)(lo & 0xFF);
    if ((e & 7) == 0) {
        ((float*)(out + 2 * (i64)K))[e / 8] = d;
        ((int*)(out + 2 * (i64)K + 4 * (i64)(K / Q16_BLOCK)))[e / 8] = s;
    }
}

// sum_i q_i v_i over the 8 elements of one block, q in two words of four signed bytes (the
// quants), v's halves in (h0, h1) and (l0, l1): |result| <= 8 * 63 * Q16_MAX < 2^24 for quants
// below 64, so its float is exact.
__device__ __forceinline__ int q16_dot8(u32 q0, u32 q1, u32 h0, u32 h1, u32 l0, u32 l1) {
    int ph = q16_dp4a((int)q0, (int)h0, q16_dp4a((int)q1, (int)h1, 0));
    int pl = q16_dp4a((int)q0, (int)l0, q16_dp4a((int)q1, (int)l1, 0));
    return (ph << 8) + pl;
}

// The activation side of 16 consecutive elements e .. e + 15 (e % 16 == 0): two blocks.
struct Q16Act16 {
    uint4 h, l;
    float2 dx;
    int2 is;
};
__device__ __forceinline__ Q16Act16 q16_load16(const Q16Vec& x, int e) {
    Q16Act16 a;
    a.h = *(const uint4*)(x.hi + e);
    a.l = *(const uint4*)(x.lo + e);
    a.dx = *(const float2*)(x.dx + e / 8);
    a.is = *(const int2*)(x.isum + e / 8);
    return a;
}
// dx-weighted dot of 16 quants (four words of bytes) with the 16 activations of a
// (sum_i q_i x_i with x_i = dx_b v_i), and sum_i x_i of the same elements.
__device__ __forceinline__ float q16_dot16(const u32* q, const Q16Act16& a, float& xsum) {
    int s0 = q16_dot8(q[0], q[1], a.h.x, a.h.y, a.l.x, a.l.y);
    int s1 = q16_dot8(q[2], q[3], a.h.z, a.h.w, a.l.z, a.l.w);
    xsum = a.dx.x * (float)a.is.x + a.dx.y * (float)a.is.y;
    return a.dx.x * (float)s0 + a.dx.y * (float)s1;
}

// Task t of a Q4_K / Q5_K / Q6_K row (the task layouts of kernels.cu's task_dot_n_*) against
// a Q16 activation vector: acc += the task's dot product.
template <int QT>
__device__ __forceinline__ void tdot_q16(const u8* __restrict__ row, int t, const Q16Vec& x,
                                         float& acc) {
    if (QT == QT_Q4_K || QT == QT_Q5_K) {
        const int BB = QT == QT_Q4_K ? 144 : 176;
        int b = t >> 3, j = (t >> 1) & 3, h = t & 1;
        const u8* blk = row + (i64)b * BB;
        u32 dd = *(const u32*)blk;
        float d = h2f((u16)(dd & 0xFFFF)), dmin = h2f((u16)(dd >> 16));
        float s0, m0, s1, m1;
        scale_min_k4(2 * j, blk + 4, s0, m0);
        scale_min_k4(2 * j + 1, blk + 4, s1, m1);
        uint4 raw = *(const uint4*)(blk + (QT == QT_Q4_K ? 16 : 48) + 32 * j + 16 * h);
        u32 r4[4] = {raw.x, raw.y, raw.z, raw.w};
        u32 ql[4], qh[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            ql[i] = r4[i] & 0x0F0F0F0Fu;
            qh[i] = (r4[i] >> 4) & 0x0F0F0F0Fu;
        }
        if (QT == QT_Q5_K) {  // bit 2j (low-nibble element) and 2j + 1 (high) of qh[16h + i]
            uint4 rawh = *(const uint4*)(blk + 16 + 16 * h);
            u32 h4[4] = {rawh.x, rawh.y, rawh.z, rawh.w};
#pragma unroll
            for (int i = 0; i < 4; i++) {
                ql[i] |= ((h4[i] >> (2 * j)) & 0x01010101u) << 4;
                qh[i] |= ((h4[i] >> (2 * j + 1)) & 0x01010101u) << 4;
            }
        }
        int e0 = b * 256 + 64 * j + 16 * h;
        float xsl, xsh;
        float sl = q16_dot16(ql, q16_load16(x, e0), xsl);
        float sh = q16_dot16(qh, q16_load16(x, e0 + 32), xsh);
        acc += d * s0 * sl - dmin * m0 * xsl + d * s1 * sh - dmin * m1 * xsh;
    } else {  // Q6_K (repacked), task_dot_n_Q6_K's layout; q - 32 through the integer sums
        int b = t >> 2, nh = (t >> 1) & 1, a = t & 1;
        const u8* blk = row + (i64)b * 224;
        float d = h2f(*(const u16*)(blk + 208));
        uint2 scw = *(const uint2*)(blk + 192 + 8 * nh);
        u32 sa = __byte_perm(scw.x, scw.y, 0x6420 + 0x1111 * a);
        uint4 A = *(const uint4*)(blk + 64 * nh + 16 * a);
        uint4 B = *(const uint4*)(blk + 64 * nh + 32 + 16 * a);
        uint4 H = *(const uint4*)(blk + 128 + 32 * nh + 16 * a);
        u32 a4[4] = {A.x, A.y, A.z, A.w}, b4[4] = {B.x, B.y, B.z, B.w}, h4[4] = {H.x, H.y, H.z, H.w};
        u32 v[4][4];
#pragma unroll
        for (int w = 0; w < 4; w++) {
            u32 hw = h4[w];
            v[0][w] = (a4[w] & 0x0F0F0F0Fu) | ((hw << 4) & 0x30303030u);
            v[1][w] = (b4[w] & 0x0F0F0F0Fu) | ((hw << 2) & 0x30303030u);
            v[2][w] = ((a4[w] >> 4) & 0x0F0F0F0Fu) | (hw & 0x30303030u);
            v[3][w] = ((b4[w] >> 4) & 0x0F0F0F0Fu) | ((hw >> 2) & 0x30303030u);
        }
        int e0 = b * 256 + 128 * nh + 16 * a;
        float tsum = 0.f;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            Q16Act16 x16 = q16_load16(x, e0 + 32 * k);
            // sum (q - 32) v per block, exact: |.| <= 8 * 32 * Q16_MAX
            int s0 = q16_dot8(v[k][0], v[k][1], x16.h.x, x16.h.y, x16.l.x, x16.l.y) - 32 * x16.is.x;
            int s1 = q16_dot8(v[k][2], v[k][3], x16.h.z, x16.h.w, x16.l.z, x16.l.w) - 32 * x16.is.y;
            float sc = d * (float)(int)(i8)((sa >> (8 * k)) & 0xFF);
            tsum += sc * (x16.dx.x * (float)s0 + x16.dx.y * (float)s1);
        }
        acc += tsum;
    }
}

// ---------------------------------------------------------------------------------------------
// moe_gate_up2_q16: moe_gate_up2 (decode.cu) with the Q16 input xq (one token: the decode
// router wrote it), two rows per warp, 8 rows per block; it also writes the block's 8 SwiGLU
// outputs as one Q16 block of the down kernel's input actq (3 ff bytes per pair). grid =
// (ff / 8, pairs), 128 threads; ff % 32 == 0 (the host checks).
// ---------------------------------------------------------------------------------------------
template <int QT>
__device__ void moe_gate_up2_q16_impl(const u8* Wg, const u8* Wu, i64 expert_bytes,
                                      i64 row_bytes, int ff, int K, const u8* xq, const int* ids,
                                      float* act, u8* actq, const u8* Wd, i64 d_bytes) {
    __align__(16) __shared__ float sact[RPW * MV_WARPS];
    pdl_begin();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int r0 = RPW * (blockIdx.x * MV_WARPS + warp);
    const int p = blockIdx.y;
    const int e = ids[p];
    {
        i64 piece = ((d_bytes / ff) + 127) & ~127LL;
        for (int i = 0; i < RPW; i++) {
            i64 start = (i64)(r0 + i) * piece;
            if (start < d_bytes)
                prefetch_l2_warp(Wd + (i64)e * d_bytes + start, min(piece, d_bytes - start), lane);
        }
    }
    const Q16Vec x = q16_vec(xq, K);
    const int ntasks = K / QT_traits<QT>::TASK_ELEMS;
    const u8* g0 = Wg + (i64)e * expert_bytes + (i64)r0 * row_bytes;
    const u8* u0 = Wu + (i64)e * expert_bytes + (i64)r0 * row_bytes;
    const u8* g1 = g0 + row_bytes;
    const u8* u1 = u0 + row_bytes;
    float ag0 = 0.f, au0 = 0.f, ag1 = 0.f, au1 = 0.f;
    int t = lane;
    for (; t + WARP < ntasks; t += 2 * WARP) {
        tdot_q16<QT>(g0, t, x, ag0);
        tdot_q16<QT>(u0, t, x, au0);
        tdot_q16<QT>(g1, t, x, ag1);
        tdot_q16<QT>(u1, t, x, au1);
        tdot_q16<QT>(g0, t + WARP, x, ag0);
        tdot_q16<QT>(u0, t + WARP, x, au0);
        tdot_q16<QT>(g1, t + WARP, x, ag1);
        tdot_q16<QT>(u1, t + WARP, x, au1);
    }
    if (t < ntasks) {
        tdot_q16<QT>(g0, t, x, ag0);
        tdot_q16<QT>(u0, t, x, au0);
        tdot_q16<QT>(g1, t, x, ag1);
        tdot_q16<QT>(u1, t, x, au1);
    }
    float gv[2] = {warp_sum(ag0), warp_sum(ag1)};
    float uv[2] = {warp_sum(au0), warp_sum(au1)};
    if (lane == 0) {
        for (int i = 0; i < RPW; i++) {
            float sg = gv[i] / (1.f + expf(-gv[i]));
            float a = sg * uv[i];
            act[(i64)p * ff + r0 + i] = a;
            sact[RPW * warp + i] = a;
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) q16_quantize_one(sact, actq + (i64)p * 3 * ff, ff, blockIdx.x);
}

// ---------------------------------------------------------------------------------------------
// moe_down_q16: moe_down_decode (kernels.cu) against the Q16 SwiGLU outputs actq (3 ff bytes per
// slot): x[r] += sum_s w[s] (down_{ids[s]}[r] . act[s]), one warp per output row.
// ---------------------------------------------------------------------------------------------
template <int QT>
__device__ void moe_down_q16_impl(const u8* Wd, i64 expert_bytes, i64 row_bytes, int nrows,
                                  int ff, int k, const u8* actq, const int* ids, const float* wts,
                                  float* x) {
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
        float a = 0.f;
        tdot_q16<QT>(row, tt, q16_vec(actq + (i64)s * 3 * ff, ff), a);
        acc += wts[s] * a;
    }
    acc = warp_sum(acc);
    if (lane == 0) x[r] += acc;
}

// ---------------------------------------------------------------------------------------------
// matvec_q16: y[r] (=|+=) W[r,:] . x for the Q16 vector xq (the decode o projection, whose
// input attn_combine writes as Q16 too), one warp per row, four tasks in flight per lane as in
// kernels.cu's warp_row_dot. mode 0: store, 1: add (residual).
// ---------------------------------------------------------------------------------------------
template <int QT>
__device__ void matvec_q16_impl(const u8* W, i64 row_bytes, int nrows, int K, const u8* xq,
                                float* y, int mode) {
    int r = blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r < nrows) prefetch_l2_warp(W + (i64)r * row_bytes, row_bytes, lane);
    pdl_begin();
    if (r >= nrows) return;
    const u8* row = W + (i64)r * row_bytes;
    const Q16Vec x = q16_vec(xq, K);
    const int ntasks = K / QT_traits<QT>::TASK_ELEMS;
    float acc = 0.f;
    int t = lane;
    for (; t + 3 * WARP < ntasks; t += 4 * WARP) {
        tdot_q16<QT>(row, t, x, acc);
        tdot_q16<QT>(row, t + WARP, x, acc);
        tdot_q16<QT>(row, t + 2 * WARP, x, acc);
        tdot_q16<QT>(row, t + 3 * WARP, x, acc);
    }
    for (; t < ntasks; t += WARP) tdot_q16<QT>(row, t, x, acc);
    acc = warp_sum(acc);
    if (lane == 0) {
        if (mode) y[r] += acc;
        else y[r] = acc;
    }
}

#define Q16_ENTRIES(NAME, QT)                                                                    \
    extern "C" __global__ void __launch_bounds__(128, 6) moe_gate_up2_q16_##NAME(               \
        const u8* Wg, const u8* Wu, i64 expert_bytes, i64 row_bytes, int ff, int K,             \
        const u8* xq, const int* ids, float* act, u8* actq, const u8* Wd, i64 d_bytes) {         \
        moe_gate_up2_q16_impl<QT>(Wg, Wu, expert_bytes, row_bytes, ff, K, xq, ids, act, actq,   \
                                  Wd, d_bytes);                                                  \
    }                                                                                            \
    extern "C" __global__ void moe_down_q16_##NAME(const u8* Wd, i64 expert_bytes,              \
                                                   i64 row_bytes, int nrows, int ff, int k,     \
                                                   const u8* actq, const int* ids,              \
                                                   const float* wts, float* x) {                 \
        moe_down_q16_impl<QT>(Wd, expert_bytes, row_bytes, nrows, ff, k, actq, ids, wts, x);     \
    }                                                                                            \
    extern "C" __global__ void matvec_q16_##NAME(const u8* W, i64 row_bytes, int nrows, int K,  \
                                                 const u8* xq, float* y, int mode) {             \
        matvec_q16_impl<QT>(W, row_bytes, nrows, K, xq, y, mode);                                \
    }

Q16_ENTRIES(q4_k, QT_Q4_K)
Q16_ENTRIES(q5_k, QT_Q5_K)
Q16_ENTRIES(q6_k, QT_Q6_K)

// warp_dot2 (decode.cu) against a Q16 vector: two rows' dots of one warp (rb == ra: the second
// is computed, not used).
template <int QT>
__device__ void warp_dot2_q16(const u8* ra, const u8* rb, int K, const u8* xq, float& sa,
                              float& sb) {
    const int lane = threadIdx.x & 31;
    const int ntasks = K / QT_traits<QT>::TASK_ELEMS;
    const Q16Vec x = q16_vec(xq, K);
    float aa = 0.f, ab = 0.f;
    int t = lane;
    for (; t + WARP < ntasks; t += 2 * WARP) {
        tdot_q16<QT>(ra, t, x, aa);
        tdot_q16<QT>(rb, t, x, ab);
        tdot_q16<QT>(ra, t + WARP, x, aa);
        tdot_q16<QT>(rb, t + WARP, x, ab);
    }
    if (t < ntasks) {
        tdot_q16<QT>(ra, t, x, aa);
        tdot_q16<QT>(rb, t, x, ab);
    }
    sa = warp_sum(aa);
    sb = warp_sum(ab);
}

// matvec3n (decode.cu) with the dots on the block's Q16 copy of h: the pairs of Q16 qtypes
// (MATVEC3N_Q16_PAIRS in device.rs). Dynamic shared memory: 7 K bytes.
#define MATVEC3N_Q16_ENTRY(NAME, QT, QT2, MINB)                                                  \
    extern "C" __global__ void __launch_bounds__(128, MINB) matvec3n_q16_##NAME(                \
        const u8* W0, const u8* W1, const u8* W2, i64 row_bytes, i64 row_bytes2, int n0, int n1, \
        int n2, int K, const float* x, const float* nw, float eps, float* h_out, float* y0,      \
        float* y1, float* y2) {                                                                  \
        matvec3n_impl<QT, QT2, true>(W0, W1, W2, row_bytes, row_bytes2, n0, n1, n2, K, x, nw,    \
                                     eps, h_out, y0, y1, y2);                                    \
    }
MATVEC3N_Q16_ENTRY(q4_k_q4_k, QT_Q4_K, QT_Q4_K, 6)
MATVEC3N_Q16_ENTRY(q4_k_q6_k, QT_Q4_K, QT_Q6_K, 6)
MATVEC3N_Q16_ENTRY(q4_k_q5_k, QT_Q4_K, QT_Q5_K, 6)
MATVEC3N_Q16_ENTRY(q5_k_q5_k, QT_Q5_K, QT_Q5_K, 6)
MATVEC3N_Q16_ENTRY(q5_k_q6_k, QT_Q5_K, QT_Q6_K, 6)
MATVEC3N_Q16_ENTRY(q6_k_q6_k, QT_Q6_K, QT_Q6_K, 1)
