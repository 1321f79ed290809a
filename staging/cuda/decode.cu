// STAGED, NOT IN THE ENGINE (staging/README.md). Decode mat-vecs with two rows per warp.
// Appended to kernels.cu (PV_KERNELS_PRELUDE): uses its tdot, QT_traits, warp_sum, pdl_begin,
// prefetch_l2_warp and MV_WARPS.
//
// Why: with one row per warp, the decode step's two largest launches do not fit on the GPU at
// once. moe_gate_up is 768 rows x 8 experts = 6144 warps and matvec3 (q, k, v of Qwen3-30B-A3B)
// 5120 warps; at 72 registers per thread (ptxas) an SM holds 28 warps, 132 SMs 3696, so both run
// in two waves, each paying the memory latency again, and every warp has only its own row's
// loads in flight. Two rows per warp halve the warps (3072 and 2560), and __launch_bounds__(128,
// 6) holds the registers to what 6 blocks (24 warps) per SM need (80; ptxas: moe_gate_up2_q4_k
// 8 bytes of spills, matvec3_2_q4_k none), so each launch is one wave, with twice the loads in
// flight per warp and each activation load serving two rows.
// Numerics: the same tdot per row, the same order of accumulation as one row per warp; the
// results are identical to moe_gate_up / matvec3 except for the order of the warp's sums, which
// is also the same (warp_sum per row).

#define RPW 2  // rows per warp

// act[p * ff + r] = silu(gate_e[r] . x_t) * (up_e[r] . x_t) for rows r = 2 w, 2 w + 1 of warp w,
// e = ids[p], t = p / in_div; grid = (ceil(ff / (2 MV_WARPS)), pairs). Like moe_gate_up, each
// row also prefetches its 1/ff share of expert e's down matrix into L2.
template <int QT>
__device__ void moe_gate_up2_impl(const u8* Wg, const u8* Wu, i64 expert_bytes, i64 row_bytes,
                                  int ff, int K, const float* x, int x_stride, int in_div,
                                  const int* ids, float* act, const u8* Wd, i64 d_bytes) {
    pdl_begin();
    int r0 = RPW * (blockIdx.x * MV_WARPS + (threadIdx.x >> 5));
    if (r0 >= ff) return;
    const int lane = threadIdx.x & 31;
    const int nr = min(RPW, ff - r0);
    int p = blockIdx.y;
    int e = ids[p];
    {
        i64 piece = ((d_bytes / ff) + 127) & ~127LL;
        for (int i = 0; i < nr; i++) {
            i64 start = (i64)(r0 + i) * piece;
            if (start < d_bytes)
                prefetch_l2_warp(Wd + (i64)e * d_bytes + start, min(piece, d_bytes - start), lane);
        }
    }
    const float* xs[1] = {x + (i64)(p / in_div) * x_stride};
    const int ntasks = K / QT_traits<QT>::TASK_ELEMS;
    const u8* g0 = Wg + (i64)e * expert_bytes + (i64)r0 * row_bytes;
    const u8* u0 = Wu + (i64)e * expert_bytes + (i64)r0 * row_bytes;
    // a second row past the end reads the first row again (computed, not stored)
    const u8* g1 = nr > 1 ? g0 + row_bytes : g0;
    const u8* u1 = nr > 1 ? u0 + row_bytes : u0;
    float ag0[1] = {0.f}, au0[1] = {0.f}, ag1[1] = {0.f}, au1[1] = {0.f};
    int t = lane;
    for (; t + WARP < ntasks; t += 2 * WARP) {
        tdot<QT, 1>(g0, t, xs, ag0);
        tdot<QT, 1>(u0, t, xs, au0);
        tdot<QT, 1>(g1, t, xs, ag1);
        tdot<QT, 1>(u1, t, xs, au1);
        tdot<QT, 1>(g0, t + WARP, xs, ag0);
        tdot<QT, 1>(u0, t + WARP, xs, au0);
        tdot<QT, 1>(g1, t + WARP, xs, ag1);
        tdot<QT, 1>(u1, t + WARP, xs, au1);
    }
    if (t < ntasks) {
        tdot<QT, 1>(g0, t, xs, ag0);
        tdot<QT, 1>(u0, t, xs, au0);
        tdot<QT, 1>(g1, t, xs, ag1);
        tdot<QT, 1>(u1, t, xs, au1);
    }
    float gv[2] = {warp_sum(ag0[0]), warp_sum(ag1[0])};
    float uv[2] = {warp_sum(au0[0]), warp_sum(au1[0])};
    if (lane == 0) {
        for (int i = 0; i < nr; i++) {
            float sg = gv[i] / (1.f + expf(-gv[i]));
            act[(i64)p * ff + r0 + i] = sg * uv[i];
        }
    }
}

// q, k (and v) of one token, two rows per warp: rows 0 .. n0 of W0, then n1 of W1, then n2 of W2
// (same qtype and K), as matvec3. grid = ceil((n0 + n1 + n2) / (2 MV_WARPS)). A warp's two rows
// may belong to two matrices (n0, n1 odd), so each row finds its own.
template <int QT>
__device__ __forceinline__ bool mv3_row(int r, const u8* W0, const u8* W1, const u8* W2,
                                        i64 row_bytes, int n0, int n1, int n2, float* y0, float* y1,
                                        float* y2, const u8*& row, float*& dst) {
    if (r < n0) {
        row = W0 + (i64)r * row_bytes; dst = y0 + r;
    } else if (r < n0 + n1) {
        row = W1 + (i64)(r - n0) * row_bytes; dst = y1 + (r - n0);
    } else if (r < n0 + n1 + n2) {
        row = W2 + (i64)(r - n0 - n1) * row_bytes; dst = y2 + (r - n0 - n1);
    } else {
        return false;
    }
    return true;
}

template <int QT>
__device__ void matvec3_2_impl(const u8* W0, const u8* W1, const u8* W2, i64 row_bytes, int n0,
                               int n1, int n2, int K, const float* x, float* y0, float* y1,
                               float* y2) {
    const int r0 = RPW * (blockIdx.x * MV_WARPS + (threadIdx.x >> 5));
    const int lane = threadIdx.x & 31;
    const u8 *ra, *rb;
    float *da, *db;
    bool has_a = mv3_row<QT>(r0, W0, W1, W2, row_bytes, n0, n1, n2, y0, y1, y2, ra, da);
    bool has_b = mv3_row<QT>(r0 + 1, W0, W1, W2, row_bytes, n0, n1, n2, y0, y1, y2, rb, db);
    if (has_a) prefetch_l2_warp(ra, row_bytes, lane);
    if (has_b) prefetch_l2_warp(rb, row_bytes, lane);
    pdl_begin();
    if (!has_a) return;
    if (!has_b) rb = ra;  // computed, not stored
    const int ntasks = K / QT_traits<QT>::TASK_ELEMS;
    const float* xs[1] = {x};
    float aa[1] = {0.f}, ab[1] = {0.f};
    int t = lane;
    for (; t + WARP < ntasks; t += 2 * WARP) {
        tdot<QT, 1>(ra, t, xs, aa);
        tdot<QT, 1>(rb, t, xs, ab);
        tdot<QT, 1>(ra, t + WARP, xs, aa);
        tdot<QT, 1>(rb, t + WARP, xs, ab);
    }
    if (t < ntasks) {
        tdot<QT, 1>(ra, t, xs, aa);
        tdot<QT, 1>(rb, t, xs, ab);
    }
    float sa = warp_sum(aa[0]), sb = warp_sum(ab[0]);
    if (lane == 0) {
        *da = sa;
        if (has_b) *db = sb;
    }
}

// MINB: blocks per SM that __launch_bounds__ asks registers for. 6 (80 registers) makes the
// Qwen3-30B-A3B launches one wave; Q6_K's decoding needs more registers than that (ptxas: 1200
// bytes of spills at 80), so it gets no bound.
#define DECODE2_ENTRIES(NAME, QT, MINB)                                                          \
    extern "C" __global__ void __launch_bounds__(128, MINB) moe_gate_up2_##NAME(                \
        const u8* Wg, const u8* Wu, i64 expert_bytes, i64 row_bytes, int ff, int K,             \
        const float* x, int x_stride, int in_div, const int* ids, float* act, const u8* Wd,     \
        i64 d_bytes) {                                                                           \
        moe_gate_up2_impl<QT>(Wg, Wu, expert_bytes, row_bytes, ff, K, x, x_stride, in_div, ids,  \
                              act, Wd, d_bytes);                                                 \
    }                                                                                            \
    extern "C" __global__ void __launch_bounds__(128, MINB) matvec3_2_##NAME(                   \
        const u8* W0, const u8* W1, const u8* W2, i64 row_bytes, int n0, int n1, int n2, int K, \
        const float* x, float* y0, float* y1, float* y2) {                                       \
        matvec3_2_impl<QT>(W0, W1, W2, row_bytes, n0, n1, n2, K, x, y0, y1, y2);                 \
    }

DECODE2_ENTRIES(f32, QT_F32, 6)
DECODE2_ENTRIES(f16, QT_F16, 6)
DECODE2_ENTRIES(q8_0, QT_Q8_0, 6)
DECODE2_ENTRIES(q4_k, QT_Q4_K, 6)
DECODE2_ENTRIES(q5_k, QT_Q5_K, 6)
DECODE2_ENTRIES(q6_k, QT_Q6_K, 1)
