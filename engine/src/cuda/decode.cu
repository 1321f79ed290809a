// Decode mat-vecs with two rows per warp (PV_GPU_DECODE_RPW=1 falls back to one row per warp),
// and attn_decode, the decode attention in one launch (on only with PV_GPU_FUSED_ATTN=1).
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

#ifdef PV_EMU
#define DEC_DYN_SMEM(T, name) T* name = (T*)emu_dyn_smem()
#else
#define DEC_DYN_SMEM(T, name) extern __shared__ __align__(16) T name[]
#endif

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

// ---------------------------------------------------------------------------------------------
// attn_decode: one launch for what decode runs as three (qk_norm_rope_store, attn_partial,
// attn_combine), grid = (n_head_kv, n_chunks), 256 threads (hd <= 128, G <= 8, as
// attn_partial). Why: each launch boundary of the decode step costs the GPU a drain and a ramp,
// and this chain has two that carry almost no work (qk_norm_rope_store: 36 blocks of 128
// threads; attn_combine: 32 blocks reading 4 KB each).
//   - Every block normalises and rotates its KV head's G query heads itself (G x hd values).
//   - The block whose chunk holds the new position also normalises and rotates that position's
//     K row and stores it, with the V row, in the cache, before it loads its K/V tile (no other
//     block reads that row).
//   - The partials are those of attn_partial; the last block of each KV head to finish (an
//     atomic ticket, as in router_decode) merges them as attn_combine does.
// Arithmetic: the same operations in the same order as the three kernels (block sums over 128
// threads, powf / sincosf, chunk order in the merge), so the output is bit-equal to theirs
// (kernel-emu checks it).
// Measured on the H200 (2026-12-02): 23 us per layer, against 4 + 9.2 + 5.6 us for the three
// kernels, so it is off by default. Two costs the profile points at: every block runs the G query
// heads' norm and RoPE (with sincosf's slow path at large angles) before its first K/V load, and
// only n_head_kv (4) blocks merge what attn_combine merges with n_head (32). Kept as an opt-in
// for a version that fixes both; until then its partial and merge repeat attn_partial's and
// attn_combine's code line for line (the bit-equality test in kernel-emu holds them together).
// counter: n_head_kv zeros; each KV head's last block puts its ticket back to 0 (graph replays).
// ---------------------------------------------------------------------------------------------

// block_sum's reduction for one 128-thread group of a 256-thread block (group = tid / 128):
// warp sums, then the 4 partials summed by one warp with zeros in lanes 4..31, as block_sum does
// for a 128-thread block. red2: 2 x 32 floats.
__device__ float group128_sum(float v, float* red2) {
    int tid = threadIdx.x, grp = tid >> 7, lt = tid & 127, lane = tid & 31, w = lt >> 5;
    float* red = red2 + 32 * grp;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    float t = (lt < 4) ? red[lt] : 0.f;
    if (w == 0) t = warp_sum(t);
    if (lt == 0) red[0] = t;
    __syncthreads();
    float r = red[0];
    __syncthreads();
    return r;
}

// RMSNorm (weights nw) and RoPE at `pos` of one head vector, as qk_norm_rope_store computes it
// for element i (< hd) of a 128-thread group; buf: this group's hd floats of scratch.
__device__ float norm_rope_elem(float val, int i, int hd, const float* nw, float eps, float base,
                                int pos, float* buf, float* red2) {
    float ss = group128_sum(i < hd ? val * val : 0.f, red2);
    float nv = val * rsqrtf(ss / (float)hd + eps) * (i < hd ? nw[i] : 0.f);
    if (i < hd) buf[i] = nv;
    __syncthreads();
    int half = hd / 2;
    int pi = i < half ? i : i - half;
    float inv = powf(base, -2.0f * (float)pi / (float)hd);
    float ang = (float)pos * inv;
    float sn, cs;
    sincosf(ang, &sn, &cs);
    float out = 0.f;
    if (i < hd) out = i < half ? (buf[i] * cs - buf[i + half] * sn) : (buf[i - half] * sn + buf[i] * cs);
    __syncthreads();
    return out;
}

extern "C" __global__ void __launch_bounds__(256) attn_decode(
    const float* q, const float* k, const float* v, const float* qnw, const float* knw, float* kc,
    float* vc, float* part, float* out, const int* pos_ptr, int n_head, int n_head_kv, int hd,
    int n_chunks, float scale, float base, float eps, unsigned* counter) {
    pdl_begin();
    __shared__ float sk[ATT_CH][ATT_HD + 1];
    __shared__ float sv[ATT_CH][ATT_HD + 1];
    __shared__ float sq[8][ATT_HD];
    __shared__ float sp[8][ATT_CH];
    __shared__ float nbuf[2][ATT_HD];
    __shared__ float red2[64];
    __shared__ unsigned ticket;
    const int kvh = blockIdx.x, c = blockIdx.y;
    const int G = n_head / n_head_kv;
    const int pos = *pos_ptr;
    const int n = pos + 1;
    const int j0 = c * ATT_CH;
    const int kv_dim = n_head_kv * hd;
    const int tid = threadIdx.x, grp = tid >> 7, i = tid & 127;
    if (j0 < n) {
        // the G query heads, two at a time (one per 128-thread group); 256 threads so G even or 1
        for (int g0 = 0; g0 < G; g0 += 2) {
            int g = g0 + grp;
            int hh = kvh * G + (g < G ? g : g0);  // a missing odd head repeats g0 (not stored)
            float val = i < hd ? q[hh * hd + i] : 0.f;
            float o = norm_rope_elem(val, i, hd, qnw, eps, base, pos, nbuf[grp], red2);
            if (g < G && i < hd) sq[g][i] = o;
        }
        if (c == pos / ATT_CH) {  // this block's chunk holds the new position
            float val = i < hd ? k[kvh * hd + i] : 0.f;
            float o = norm_rope_elem(val, i, hd, knw, eps, base, pos, nbuf[grp], red2);
            if (grp == 0 && i < hd) {
                kc[(i64)pos * kv_dim + kvh * hd + i] = o;
                vc[(i64)pos * kv_dim + kvh * hd + i] = v[kvh * hd + i];
            }
            __syncthreads();  // the stores above are visible to this block's loads below
        }
        int cnt = min(ATT_CH, n - j0);
        load_tiles_kv(sk, sv, kc, vc, j0, cnt, kv_dim, kvh * hd, hd, tid);
        __syncthreads();
        for (int x = tid; x < G * ATT_CH; x += blockDim.x) {
            int g = x / ATT_CH, j = x % ATT_CH;
            float s = -INFINITY;
            if (j < cnt) {
                s = 0.f;
                for (int d = 0; d < hd; d++) s += sq[g][d] * sk[j][d];
                s *= scale;
            }
            sp[g][j] = s;
        }
        __syncthreads();
        int lane = tid & 31, w = tid >> 5;
        for (int g = w; g < G; g += blockDim.x >> 5) {
            float m = warp_max(sp[g][lane]);
            float e0 = lane < cnt ? expf(sp[g][lane] - m) : 0.f;
            sp[g][lane] = e0;
            float l = warp_sum(e0);
            if (lane == 0) {
                float* pp = part + ((i64)(kvh * G + g) * n_chunks + c) * (hd + 2);
                pp[hd] = m;
                pp[hd + 1] = l;
            }
        }
        __syncthreads();
        int nsets = blockDim.x / hd;
        int d = tid % hd, set = tid / hd;
        if (set < nsets) {
            float acc[8];
#pragma unroll
            for (int g = 0; g < 8; g++) acc[g] = 0.f;
            for (int j = 0; j < cnt; j++) {
                float vv = sv[j][d];
#pragma unroll
                for (int g = 0; g < 8; g++)
                    if (g % nsets == set && g < G) acc[g] += sp[g][j] * vv;
            }
#pragma unroll
            for (int g = 0; g < 8; g++)
                if (g % nsets == set && g < G)
                    part[((i64)(kvh * G + g) * n_chunks + c) * (hd + 2) + d] = acc[g];
        }
    } else {
        for (int g = tid; g < G; g += blockDim.x) {
            float* pp = part + ((i64)(kvh * G + g) * n_chunks + c) * (hd + 2);
            pp[hd] = -INFINITY;
            pp[hd + 1] = 0.f;
        }
    }
    // the last block of this KV head merges its chunks (attn_combine's arithmetic)
    __threadfence();
    __syncthreads();
    if (tid == 0) ticket = atomicAdd(counter + kvh, 1u);
    __syncthreads();
    if (ticket != (unsigned)gridDim.y - 1) return;
    __threadfence();
    int used = (n + ATT_CH - 1) / ATT_CH;
    for (int x = tid; x < G * hd; x += blockDim.x) {
        int g = x / hd, d = x % hd;
        const volatile float* pp = part + (i64)(kvh * G + g) * n_chunks * (hd + 2);
        float M = -INFINITY;
        for (int cc = 0; cc < used; cc++) M = fmaxf(M, pp[cc * (hd + 2) + hd]);
        float L = 0.f, acc = 0.f;
        for (int cc = 0; cc < used; cc++) {
            float f = expf(pp[cc * (hd + 2) + hd] - M);
            L += f * pp[cc * (hd + 2) + hd + 1];
            acc += f * pp[cc * (hd + 2) + d];
        }
        out[(i64)(kvh * G + g) * hd + d] = acc / L;
    }
    if (tid == 0) counter[kvh] = 0u;
}

// ---------------------------------------------------------------------------------------------
// matvec3n: the attention RMSNorm and the q, k, v products of one token in one launch.
// Why: the RMSNorm launch before q/k/v carries 8 KB of work and costs a launch boundary (rmsnorm
// and the separate Q6_K v product were 2.8 and ~3.5 us per layer of the 68 us decode layer,
// 2026-12-02 profile). Each block computes h = RMSNorm(x) * nw into shared memory itself (x is
// K floats, read from L2), as router_decode does for the FFN norm; the block's weight rows are
// prefetched into L2 before that, so their DRAM latency overlaps the norm. Block 0 also writes h
// to h_out, so that st.h holds the same vector in both paths (the observation hooks read it).
// Rows: W0 (q) and W1 (k) share QT and go two per warp as in matvec3_2; W2 (v) has QT2. When
// QT2 == QT its rows pair up like the others; otherwise they go one per warp to the warps after
// the q/k pairs, so that no warp mixes qtypes (the host requires n0 + n1 even then).
// grid = ceil(warps / MV_WARPS), warps = (n0 + n1 + n2 + 1) / 2 or (n0 + n1) / 2 + n2.
// Numerics: the norm sums in another order than the rmsnorm kernel (block of 128, float4), so h
// may differ from its h in the last bit; each row's dot is tdot in matvec3_2's order.
// Measured on the H200 (2026-12-02): decode 321.5 tok/s against 313.0 with the rmsnorm launch
// and the separate v product (PV_GPU_NO_FUSED_NORM=1).
// ---------------------------------------------------------------------------------------------

// h = x * rsqrt(mean(x^2) + eps) * nw into sh (K floats, K % 4 == 0); every thread of the block.
__device__ void block_rmsnorm_to_smem(const float* x, const float* nw, float eps, int K, float* sh,
                                      float* h_out, float* red) {
    const float4* x4 = (const float4*)x;
    const float4* w4 = (const float4*)nw;
    int n4 = K / 4;
    float ss = 0.f;
    for (int i = threadIdx.x; i < n4; i += blockDim.x) {
        float4 v = x4[i];
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    ss = block_sum(ss, red);
    float scale = rsqrtf(ss / (float)K + eps);
    for (int i = threadIdx.x; i < n4; i += blockDim.x) {
        float4 v = x4[i], ww = w4[i];
        float4 hv = make_float4(v.x * scale * ww.x, v.y * scale * ww.y, v.z * scale * ww.z,
                                v.w * scale * ww.w);
        ((float4*)sh)[i] = hv;
        if (blockIdx.x == 0) ((float4*)h_out)[i] = hv;
    }
    __syncthreads();
}

// Two rows' dots of one warp (rb == ra: the second is computed, not used), tdot in matvec3_2's
// order.
template <int QT>
__device__ __forceinline__ void warp_dot2(const u8* ra, const u8* rb, int K, const float* x,
                                          float& sa, float& sb) {
    const int lane = threadIdx.x & 31;
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
    sa = warp_sum(aa[0]);
    sb = warp_sum(ab[0]);
}

// decode_q16.cu: warp_dot2 against a Q16 vector (the Q16 instances of matvec3n).
template <int QT>
__device__ void warp_dot2_q16(const u8* ra, const u8* rb, int K, const u8* xq, float& sa,
                              float& sb);

// Q16 (decode_q16.cu's matvec3n_q16_* entries): each block also quantizes its h into a Q16
// vector after the K floats of dynamic shared memory (3 K bytes more), and the dots run on it.
template <int QT, int QT2, bool Q16 = false>
__device__ void matvec3n_impl(const u8* W0, const u8* W1, const u8* W2, i64 row_bytes,
                              i64 row_bytes2, int n0, int n1, int n2, int K, const float* x,
                              const float* nw, float eps, float* h_out, float* y0, float* y1,
                              float* y2) {
    DEC_DYN_SMEM(float, sh);
    __shared__ float red[32];
    const int w = blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    const bool same = QT == QT2;
    const int paired = same ? n0 + n1 + n2 : n0 + n1;  // rows that go two per warp
    const int pair_warps = (paired + 1) / 2;
    const u8 *ra = nullptr, *rb = nullptr;
    float *da = nullptr, *db = nullptr;
    bool has_a = false, has_b = false, single = false;
    if (w < pair_warps) {
        int r0 = 2 * w;
        has_a = mv3_row<QT>(r0, W0, W1, W2, row_bytes, n0, n1, same ? n2 : 0, y0, y1, y2, ra, da);
        has_b = mv3_row<QT>(r0 + 1, W0, W1, W2, row_bytes, n0, n1, same ? n2 : 0, y0, y1, y2, rb,
                            db);
        if (has_a) prefetch_l2_warp(ra, row_bytes, lane);
        if (has_b) prefetch_l2_warp(rb, row_bytes, lane);
    } else if (!same && w - pair_warps < n2) {
        int r = w - pair_warps;
        ra = W2 + (i64)r * row_bytes2;
        da = y2 + r;
        has_a = true;
        single = true;
        prefetch_l2_warp(ra, row_bytes2, lane);
    }
    pdl_begin();
    block_rmsnorm_to_smem(x, nw, eps, K, sh, h_out, red);
    u8* shq = (u8*)(sh + K);
    if constexpr (Q16) {
        q16_quantize_blocks(sh, K, shq, threadIdx.x, blockDim.x);
        __syncthreads();
    }
    if (!has_a) return;
    float sa, sb;
    if (single) {
        float unused;
        if constexpr (Q16) warp_dot2_q16<QT2>(ra, ra, K, shq, sa, unused);
        else warp_dot2<QT2>(ra, ra, K, sh, sa, unused);
    } else {
        if constexpr (Q16) warp_dot2_q16<QT>(ra, has_b ? rb : ra, K, shq, sa, sb);
        else warp_dot2<QT>(ra, has_b ? rb : ra, K, sh, sa, sb);
    }
    if (lane == 0) {
        *da = sa;
        if (has_b) *db = sb;
    }
}

#define MATVEC3N_ENTRY(NAME, QT, QT2, MINB)                                                      \
    extern "C" __global__ void __launch_bounds__(128, MINB) matvec3n_##NAME(                    \
        const u8* W0, const u8* W1, const u8* W2, i64 row_bytes, i64 row_bytes2, int n0, int n1, \
        int n2, int K, const float* x, const float* nw, float eps, float* h_out, float* y0,      \
        float* y1, float* y2) {                                                                  \
        matvec3n_impl<QT, QT2>(W0, W1, W2, row_bytes, row_bytes2, n0, n1, n2, K, x, nw, eps,     \
                               h_out, y0, y1, y2);                                               \
    }

// The pairs (q qtype, v qtype) that the synthetic files hold: Q4_K_M (q4_k with q4_k or q6_k)
// and the mixed preset's cycle; any other pair runs the rmsnorm + matvec3_2 path (model.rs).
MATVEC3N_ENTRY(f32_f32, QT_F32, QT_F32, 6)
MATVEC3N_ENTRY(f16_f16, QT_F16, QT_F16, 6)
MATVEC3N_ENTRY(q8_0_q8_0, QT_Q8_0, QT_Q8_0, 6)
MATVEC3N_ENTRY(q4_k_q4_k, QT_Q4_K, QT_Q4_K, 6)
MATVEC3N_ENTRY(q5_k_q5_k, QT_Q5_K, QT_Q5_K, 6)
MATVEC3N_ENTRY(q6_k_q6_k, QT_Q6_K, QT_Q6_K, 1)
MATVEC3N_ENTRY(q4_k_q6_k, QT_Q4_K, QT_Q6_K, 6)
MATVEC3N_ENTRY(q4_k_q5_k, QT_Q4_K, QT_Q5_K, 6)
MATVEC3N_ENTRY(q5_k_q6_k, QT_Q5_K, QT_Q6_K, 6)
MATVEC3N_ENTRY(q6_k_q8_0, QT_Q6_K, QT_Q8_0, 1)
MATVEC3N_ENTRY(q8_0_f16, QT_Q8_0, QT_F16, 6)
MATVEC3N_ENTRY(f16_f32, QT_F16, QT_F32, 6)
MATVEC3N_ENTRY(f32_q4_k, QT_F32, QT_Q4_K, 6)

// ---------------------------------------------------------------------------------------------
// matvec4: y[r] (=|+=) W[r,:] . x with four rows per warp. For the output head (151,936 Q6_K
// rows of K = 2048: one 64-element task per lane per row): with one row per warp each warp
// carried a single task's loads and the launch ran in ~57 waves, ~200 us against ~60 us at the
// copy bandwidth (2026-12-02 profile). Four rows per warp give each lane four rows' loads in
// flight, one activation slice serving the four (the compiler shares the loads: no store between
// them), and a quarter of the waves. grid = ceil(nrows / (4 MV_WARPS)); rows past the end repeat
// row r0 (computed, not stored). mode 0: store, 1: add.
// Measured on the H200 (2026-12-02): the head 200 -> 129 us (110 with Q6_K's byte-permute dot),
// decode 314.2 -> 321.5 tok/s. For every dense decode mat-vec (PV_GPU_MV4_ALL=1: the o
// projection, 2,048 rows of K = 4,096, a quarter of the warps) it was slower, 312.0.
// ---------------------------------------------------------------------------------------------
template <int QT>
__device__ void matvec4_impl(const u8* W, i64 row_bytes, int nrows, int K, const float* x, float* y,
                             int mode) {
    const int r0 = 4 * (blockIdx.x * MV_WARPS + (threadIdx.x >> 5));
    const int lane = threadIdx.x & 31;
    const int nr = r0 < nrows ? min(4, nrows - r0) : 0;
    const u8* rows[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        rows[i] = W + (i64)(i < nr ? r0 + i : r0) * row_bytes;
        if (i < nr) prefetch_l2_warp(rows[i], row_bytes, lane);
    }
    pdl_begin();
    if (nr == 0) return;
    const int ntasks = K / QT_traits<QT>::TASK_ELEMS;
    const float* xs[1] = {x};
    float acc[4][1] = {{0.f}, {0.f}, {0.f}, {0.f}};
    for (int t = lane; t < ntasks; t += WARP) {
#pragma unroll
        for (int i = 0; i < 4; i++) tdot<QT, 1>(rows[i], t, xs, acc[i]);
    }
    float s[4];
#pragma unroll
    for (int i = 0; i < 4; i++) s[i] = warp_sum(acc[i][0]);
    if (lane == 0) {
        for (int i = 0; i < nr; i++) {
            if (mode) y[r0 + i] += s[i];
            else y[r0 + i] = s[i];
        }
    }
}

#define MATVEC4_ENTRY(NAME, QT)                                                                  \
    extern "C" __global__ void matvec4_##NAME(const u8* W, i64 row_bytes, int nrows, int K,     \
                                              const float* x, float* y, int mode) {             \
        matvec4_impl<QT>(W, row_bytes, nrows, K, x, y, mode);                                    \
    }
MATVEC4_ENTRY(f32, QT_F32)
MATVEC4_ENTRY(f16, QT_F16)
MATVEC4_ENTRY(q8_0, QT_Q8_0)
MATVEC4_ENTRY(q4_k, QT_Q4_K)
MATVEC4_ENTRY(q5_k, QT_Q5_K)
MATVEC4_ENTRY(q6_k, QT_Q6_K)
