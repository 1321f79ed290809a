// Prefill products with integer operands on the int8 tensor cores (matmat_qi_*; PV_GPU_NO_MQ=1
// falls back to kernels.cu's matmat_tc). Written without a GPU, tested first under the SIMT
// emulator (kernel-emu, FALSIFY-EMU-MMQ-001), then on the H200.
//
// History (docs/gpu-perf-notes.md). kernels.cu's matmat_tc dequantizes every weight to f32 and
// splits both operands into f16 hi + lo parts in every block, three f16 products per step; it
// took 134 of a 512-token prefill's 162 ms on the H200. This file's first kernel (matmat_q,
// 2026-12-01) took the weights' integer quants as f16 and the activations as an f16 hi + lo
// split made once per product input: two f16 products per step, the prefill 3,161 -> 6,122
// tok/s. Its loop was bound by shared memory (ncu: L1/shared 81% busy, issue 45%): per k16 step
// a warp loaded 16 words of fragments for 8 f16 mma. The kernel here (2026-12-02) has both
// operands as bytes: a weight quant is one byte (Q4_K's nibble mask, no f16 build), an
// activation two (its Q16 high and low bytes), and one mma m16n8k32 covers 32 of K. Per 32 of K
// a warp loads 16 words of fragments (was 32) and issues 8 mma (was 16). On the H200, in one
// call (9f61d8d): matmat_q_q4_k 54.2 -> matmat_qi_q4_k 38.9 ms per prefill, pp512 6,230 ->
// 7,862 tok/s.
//
// Precision: the activations are rounded once, as the decode's Q16 vectors are
// (decode_q16.cu): per 32 elements an f32 scale dx = amax / Q16_MAX and integers v with
// |x - dx v| <= 0.502 dx = 1.54e-5 of the group's largest magnitude, stored as int8 halves
// v = 256 hi + lo. Everything after that is exact up to f32 rounding: sum_k q_k v_k
// = 256 (q . hi) + (q . lo) in int32 (|.| < 2^31: 32 x 255 x 32639), then per (row, pair, group)
// acc += (s dx) S - m xs, xs = dx sum_k v_k over the weight group (16 or 32), i.e. the min term
// on the same rounded activations, so that sum_k (s q_k - m) dx v_k is what the output is.
// Weights enter as unsigned bytes: Q4_K 0..15, Q5_K 0..31, Q6_K q + 32 (0..63), Q8_0 q + 128
// (0..255), the offset in m (32 s, 128 d), so one mma flavour (.u8 x .s8) serves all four.
// Q6_K's 16-element scale groups use mma m16n8k16; the others m16n8k32.
// Tile: 64 weight rows x 32 pairs (tokens), K in steps of 128; 4 warps, each 32 rows x 16 pairs.
// 32 pairs because a 512-token prefill gives each of 128 experts 32 pairs on average.
// Double-buffered: the next K tile's weights (registers) and activations (cp.async) are in
// flight while the tensor cores work on the current one. The pair bookkeeping (groups, spid,
// the epilogue's stores) follows kernels.cu's matmat_tc on purpose, so that the two can be read
// side by side.

// Compiled appended to kernels.cu (PV_KERNELS_PRELUDE), after decode_q16.cu: kernels.cu's types,
// qtype ids and helpers (h2f, pdl_begin) and decode_q16.cu's Q16 rounding (Q16_MAX, q16_scale,
// q16_split, q16_rint) are used as they are.
#ifndef PV_KERNELS_PRELUDE
#error "mmq.cu is compiled after kernels.cu"
#endif

#define MQ_BM 64
#define MQ_BN 32
#define MQ_BK 128
#define MQ_NG (MQ_BK / 16)  // 16-element groups per K tile
#define MQ_SCS (MQ_NG + 1)  // scale row stride (float2s): 9, so 8 rows hit 8 distinct bank pairs
#define QI_LD (MQ_BK + 16)  // bytes per shared row: 144 = 36 words, so 8 rows x 4 lanes hit 32 banks
#define QI_NG (MQ_BK / 32)  // 32-element activation groups per K tile

// Shared memory: one weight tile and two activation stages. Every member's offset is a multiple
// of 16 bytes. Why one weight tile: the next tile's weights wait in registers (mq_load_raw) while
// the current one is computed, and are stored only after a barrier.
struct QiA {
    u8 a[MQ_BM * QI_LD];        // unsigned integer quants, row-major
    float2 sm[MQ_BM * MQ_SCS];  // per (row, 16-group): (scale s, offset m), w = s q - m
};
struct QiB {
    i8 bh[MQ_BN * QI_LD];     // activations: Q16 high bytes, one row per pair
    i8 bl[MQ_BN * QI_LD];     // low bytes
    float dx[MQ_BN * QI_NG];  // per (pair, 32-group): the Q16 scale
    float xs[MQ_BN * MQ_NG];  // per (pair, 16-group): dx times the sum of v
};
#define QI_SMEM_BYTES ((int)sizeof(QiA) + 2 * (int)sizeof(QiB))

// ---------------------------------------------------------------------------------------------
// The instructions kernels.cu has no helper for; the emulator replaces them (PV_EMU: simt.h).
// ---------------------------------------------------------------------------------------------
#ifdef PV_EMU
#define MQ_DYN_SMEM(T, name) T* name = (T*)emu_dyn_smem()
__device__ __forceinline__ void mq_cp16(void* dst, const void* src) { emu_cp_async16(dst, src); }
__device__ __forceinline__ void mq_cp_commit() {}
__device__ __forceinline__ void mq_cp_wait_all() { emu_cp_async_wait_all(); }
__device__ __forceinline__ void qi_mma_k32(int* c, const u32* a, const u32* b) { emu_mma_u8s8<32>(c, a, b); }
__device__ __forceinline__ void qi_mma_k16(int* c, const u32* a, const u32* b) { emu_mma_u8s8<16>(c, a, b); }
#else
#define MQ_DYN_SMEM(T, name) extern __shared__ __align__(16) T name[]
__device__ __forceinline__ void mq_cp16(void* dst, const void* src) {
    u32 s;
    asm("{ .reg .u64 a;\n cvta.to.shared.u64 a, %1;\n cvt.u32.u64 %0, a; }" : "=r"(s) : "l"(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(src) : "memory");
}
__device__ __forceinline__ void mq_cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
__device__ __forceinline__ void mq_cp_wait_all() { asm volatile("cp.async.wait_group 0;" ::: "memory"); }
// D = A B + C, A 16 x K unsigned bytes (row-major fragments), B K x 8 signed bytes, s32 sums
__device__ __forceinline__ void qi_mma_k32(int* c, const u32* a, const u32* b) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void qi_mma_k16(int* c, const u32* a, const u32* b) {
    asm("mma.sync.aligned.m16n8k16.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
        "{%0,%1,%2,%3};"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(b[0]));
}
#endif

// ---------------------------------------------------------------------------------------------
// split_act_q16: X (f32, row stride x_stride) -> per row Xh, Xl (int8, row stride K: v = 256 hi
// + lo), Xd (K / 32 f32 scales) and Xs (K / 16: dx times the sum of v of each 16 elements).
// grid.x = rows; one thread per 32-element group. K % 32 == 0.
// ---------------------------------------------------------------------------------------------
extern "C" __global__ void split_act_q16(const float* X, int x_stride, int K, int rows, i8* Xh,
                                         i8* Xl, float* Xd, float* Xs) {
    pdl_begin();
    int r = blockIdx.x;
    if (r >= rows) return;
    const float4* x4 = (const float4*)(X + (i64)r * x_stride);
    for (int g = threadIdx.x; g < K / 32; g += blockDim.x) {
        float v[32];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            float4 t = x4[8 * g + i];
            v[4 * i] = t.x; v[4 * i + 1] = t.y; v[4 * i + 2] = t.z; v[4 * i + 3] = t.w;
        }
        float amax = 0.f;
#pragma unroll
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(v[i]));
        float inv;
        float d = q16_scale(amax, inv);
        u32 h[8], l[8];
        int s[2] = {0, 0};
#pragma unroll
        for (int i = 0; i < 8; i++) h[i] = l[i] = 0u;
#pragma unroll
        for (int i = 0; i < 32; i++) {
            int q = q16_rint(v[i] * inv), qh, ql;
            q16_split(q, qh, ql);
            s[i / 16] += q;
            h[i / 4] |= ((u32)qh & 0xFFu) << (8 * (i & 3));
            l[i / 4] |= ((u32)ql & 0xFFu) << (8 * (i & 3));
        }
        uint4* dh = (uint4*)(Xh + (i64)r * K + 32 * g);
        uint4* dl = (uint4*)(Xl + (i64)r * K + 32 * g);
        dh[0] = make_uint4(h[0], h[1], h[2], h[3]);
        dh[1] = make_uint4(h[4], h[5], h[6], h[7]);
        dl[0] = make_uint4(l[0], l[1], l[2], l[3]);
        dl[1] = make_uint4(l[4], l[5], l[6], l[7]);
        Xd[(i64)r * (K / 32) + g] = d;
        Xs[(i64)r * (K / 16) + 2 * g] = d * (float)s[0];
        Xs[(i64)r * (K / 16) + 2 * g + 1] = d * (float)s[1];
    }
}

// ---------------------------------------------------------------------------------------------
// Weight tiles. Thread (rr = tid / 2, hh = tid % 2) owns the 64 weights e0 .. e0 + 63 of its row,
// e0 = k0 + 64 hh. mq_load_raw issues the loads (raw bytes into registers, nothing decoded, so
// the loads stay in flight across the compute that follows); qi_store_a decodes them into the
// tile: 64 unsigned byte quants and 4 (scale, offset) pairs, one per 16-group.
// ---------------------------------------------------------------------------------------------
struct MqRaw {
    u32 w[32];
};

__device__ __forceinline__ void mq_ld16(const u8* p, u32* w) {
    uint4 v = *(const uint4*)p;
    w[0] = v.x; w[1] = v.y; w[2] = v.z; w[3] = v.w;
}

template <int QT>
__device__ __forceinline__ void mq_load_raw(const u8* __restrict__ row, int e0, MqRaw& R) {
    if (QT == QT_Q4_K) {  // header (d, dmin, scales[12]) + the 32 quant bytes of chunk j
        const u8* blk = row + (i64)(e0 / 256) * 144;
        int j = (e0 % 256) / 64;
        mq_ld16(blk, R.w);
        mq_ld16(blk + 16 + 32 * j, R.w + 4);
        mq_ld16(blk + 32 + 32 * j, R.w + 8);
    } else if (QT == QT_Q5_K) {  // + qh[32]
        const u8* blk = row + (i64)(e0 / 256) * 176;
        int j = (e0 % 256) / 64;
        mq_ld16(blk, R.w);
        mq_ld16(blk + 16, R.w + 4);
        mq_ld16(blk + 32, R.w + 8);
        mq_ld16(blk + 48 + 32 * j, R.w + 12);
        mq_ld16(blk + 64 + 32 * j, R.w + 16);
    } else if (QT == QT_Q6_K) {  // repacked 224-byte block: ql[64] and qh[32] of half nh, scales, d
        const u8* blk = row + (i64)(e0 / 256) * 224;
        int nh = (e0 % 256) / 128;
#pragma unroll
        for (int i = 0; i < 4; i++) mq_ld16(blk + 64 * nh + 16 * i, R.w + 4 * i);
        mq_ld16(blk + 128 + 32 * nh, R.w + 16);
        mq_ld16(blk + 144 + 32 * nh, R.w + 20);
        mq_ld16(blk + 192, R.w + 24);
        mq_ld16(blk + 208, R.w + 28);
    } else {  // Q8_0 repacked 36-byte blocks (4-byte aligned): d + pad, qs[32]; two blocks
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const u32* p = (const u32*)(row + (i64)(e0 / 32 + h) * 36);
#pragma unroll
            for (int i = 0; i < 9; i++) R.w[9 * h + i] = p[i];
        }
    }
}

// Byte i (0..11) of the three words y, z, w (the Q4_K / Q5_K scales), without indexing an array.
__device__ __forceinline__ u32 mq_byte3(u32 y, u32 z, u32 w, int i) {
    u32 v = i < 4 ? y : (i < 8 ? z : w);
    return (v >> (8 * (i & 3))) & 0xFF;
}

// The 6-bit scale and min of sub-block s (0..7) of a Q4_K / Q5_K block (scales in y, z, w).
__device__ __forceinline__ void mq_scale_min(u32 y, u32 z, u32 w, int s, float& sc, float& m) {
    if (s < 4) {
        sc = (float)(mq_byte3(y, z, w, s) & 63);
        m = (float)(mq_byte3(y, z, w, s + 4) & 63);
    } else {
        u32 b = mq_byte3(y, z, w, s + 4);
        sc = (float)((b & 0xF) | ((mq_byte3(y, z, w, s - 4) >> 6) << 4));
        m = (float)((b >> 4) | ((mq_byte3(y, z, w, s) >> 6) << 4));
    }
}

// The 64 weights of this thread (mq_load_raw's raw bytes) as unsigned bytes at arow (16-byte
// aligned), and per 16-group (scale, offset) with w = s q - m. The bytes are built in registers
// and stored 16 at a time. Why: the 32 threads of a warp write 16 rows x 2 halves, whose 4-byte
// stores hit only 8 banks (4-way conflicts, 64 shared-memory wavefronts per warp and K tile);
// 16-byte stores take 16.
template <int QT>
__device__ __forceinline__ void qi_store_a(const MqRaw& R, int e0, u8* arow, float2* sm) {
    u32 au[16];  // columns 0..63 of this thread's part of the row, 4 per word
    if (QT == QT_Q4_K || QT == QT_Q5_K) {
        int j = (e0 % 256) / 64;
        float d = h2f((u16)(R.w[0] & 0xFFFF)), dmin = h2f((u16)(R.w[0] >> 16));
        float s0, m0, s1, m1;
        mq_scale_min(R.w[1], R.w[2], R.w[3], 2 * j, s0, m0);
        mq_scale_min(R.w[1], R.w[2], R.w[3], 2 * j + 1, s1, m1);
        const u32* q = R.w + (QT == QT_Q4_K ? 4 : 12);
#pragma unroll
        for (int i = 0; i < 8; i++) {  // bytes l = 4i .. 4i+3: low nibble -> column l, high -> 32 + l
            u32 lo = q[i] & 0x0F0F0F0Fu, hi = (q[i] >> 4) & 0x0F0F0F0Fu;
            if (QT == QT_Q5_K) {  // bit 4 from qh[l]: bit 2j for the low nibbles, 2j + 1 for the high
                u32 hw = R.w[4 + i];
                lo |= ((hw >> (2 * j)) & 0x01010101u) << 4;
                hi |= ((hw >> (2 * j + 1)) & 0x01010101u) << 4;
            }
            au[i] = lo;
            au[8 + i] = hi;
        }
        sm[0] = sm[1] = make_float2(d * s0, dmin * m0);
        sm[2] = sm[3] = make_float2(d * s1, dmin * m1);
    } else if (QT == QT_Q6_K) {
        // element l (0..31) of quarter kk of half nh: low 4 bits from ql[l] (kk even) or
        // ql[l + 32] (kk odd), the low (kk < 2) or high nibble; 2 high bits (qh[l] >> 2 kk) & 3;
        // scale sc[l / 16 + 2 kk] (of the half's 8). This thread holds kk = 2 half, 2 half + 1.
        // The quant is q + 32 in 0..63; the -32 goes into the offset m = 32 s.
        int nh = (e0 % 256) / 128, half = (e0 % 128) / 64;
        float d = h2f((u16)(R.w[28] & 0xFFFF));
#pragma unroll
        for (int k2 = 0; k2 < 2; k2++) {
            int kk = 2 * half + k2;
#pragma unroll
            for (int i = 0; i < 8; i++) {
                u32 w = R.w[8 * k2 + i];
                u32 p = half ? (w >> 4) & 0x0F0F0F0Fu : w & 0x0F0F0F0Fu;
                u32 f = (R.w[16 + i] >> (2 * kk)) & 0x03030303u;
                au[8 * k2 + i] = p | (f << 4);
            }
#pragma unroll
            for (int s = 0; s < 2; s++) {
                int bi = 8 * nh + s + 2 * kk;  // byte of scales[16] (R.w[24..27])
                u32 word = bi < 4 ? R.w[24] : (bi < 8 ? R.w[25] : (bi < 12 ? R.w[26] : R.w[27]));
                float sc = d * (float)(int)(i8)((word >> (8 * (bi & 3))) & 0xFF);
                sm[2 * k2 + s] = make_float2(sc, 32.f * sc);
            }
        }
    } else {  // Q8_0: int8 + 128 as an unsigned byte, offset 128 d
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float d = h2f((u16)(R.w[9 * h] & 0xFFFF));
#pragma unroll
            for (int i = 0; i < 8; i++) au[8 * h + i] = R.w[9 * h + 1 + i] ^ 0x80808080u;
            sm[2 * h] = sm[2 * h + 1] = make_float2(d, 128.f * d);
        }
    }
    uint4* dst = (uint4*)arow;
#pragma unroll
    for (int j = 0; j < 4; j++) dst[j] = make_uint4(au[4 * j], au[4 * j + 1], au[4 * j + 2], au[4 * j + 3]);
}

// ---------------------------------------------------------------------------------------------
// matmat_qi: Y[p, r] (=|+=) W_e[r, :] . X[p / in_div, :] for the pairs p of a group, with X given
// as split_act_q16's Xh, Xl, Xd, Xs (row index p / in_div, row stride K). Dense: one group
// (expert 0) holding p = 0 .. n_dense; grouped MoE: blockIdx.z = expert e with pairs
// list[off[e] .. off[e + 1]). grid = (ceil(rows / 64), ceil(max pairs per group / 32), groups),
// 128 threads, QI_SMEM_BYTES of dynamic shared memory. K % 128 == 0.
// ---------------------------------------------------------------------------------------------
template <int QT>
__device__ void matmat_qi_impl(const u8* W, i64 expert_bytes, i64 row_bytes, int nrows, int K,
                               const i8* Xh, const i8* Xl, const float* Xd, const float* Xs,
                               int in_div, int n_dense, const int* list, const int* off, float* Y,
                               int y_stride, int mode) {
    pdl_begin();
    MQ_DYN_SMEM(u8, qi_smem);
    QiA* sa = (QiA*)qi_smem;
    QiB* stages = (QiB*)(qi_smem + sizeof(QiA));
    __shared__ int spid[MQ_BN];   // pair id of each tile column
    __shared__ int sxrow[MQ_BN];  // its activation row, pair / in_div
    int e = blockIdx.z;
    int p0 = 0, p1 = n_dense;
    if (off) {
        p0 = off[e];
        p1 = off[e + 1];
    }
    int base = p0 + blockIdx.y * MQ_BN;
    if (base >= p1) return;  // uniform over the block
    int cnt = min(MQ_BN, p1 - base);
    int r0 = blockIdx.x * MQ_BM;
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    if (tid < MQ_BN) {
        int idx = base + min(tid, cnt - 1);  // duplicates past the end are computed, not stored
        int p = list ? list[idx] : idx;
        spid[tid] = p;
        sxrow[tid] = p / in_div;
    }
    __syncthreads();

    const int rr = tid >> 1, hh = tid & 1;
    const u8* wrow = W + (i64)e * expert_bytes + (i64)min(r0 + rr, nrows - 1) * row_bytes;
    // activations of K tile k0 into stage st: 32 rows x 128 bytes of hi and of lo (4 cp.async of
    // 16 bytes per thread), the rows' 4 scales (threads 0..31) and 8 sums (threads 32..95)
    auto issue_b = [&](QiB* st, int k0) {
#pragma unroll
        for (int c = 0; c < 2; c++) {
            int idx = tid + 128 * c;
            int pr = idx >> 3, ch = idx & 7;
            i64 src = (i64)sxrow[pr] * K + k0 + 16 * ch;
            mq_cp16(st->bh + pr * QI_LD + 16 * ch, Xh + src);
            mq_cp16(st->bl + pr * QI_LD + 16 * ch, Xl + src);
        }
        if (tid < MQ_BN) {
            mq_cp16(st->dx + tid * QI_NG, Xd + (i64)sxrow[tid] * (K / 32) + k0 / 32);
        } else if (tid < 3 * MQ_BN) {
            int pr = (tid - MQ_BN) >> 1, ch = tid & 1;
            mq_cp16(st->xs + pr * MQ_NG + 4 * ch, Xs + (i64)sxrow[pr] * (K / 16) + k0 / 16 + 4 * ch);
        }
        mq_cp_commit();
    };
    auto store_a = [&](const MqRaw& R, int k0) {
        qi_store_a<QT>(R, k0 + 64 * hh, sa->a + rr * QI_LD + 64 * hh, sa->sm + rr * MQ_SCS + 4 * hh);
    };

    float acc[2][2][4];
#pragma unroll
    for (int a = 0; a < 2; a++)
#pragma unroll
        for (int b = 0; b < 2; b++)
#pragma unroll
            for (int i = 0; i < 4; i++) acc[a][b][i] = 0.f;
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 16;  // warp tile origin (rows, pairs)
    const int g = lane >> 2, cq = lane & 3;

    // acc += (s dx) S - m xs for the outputs of sub-tile (a, b): S = 256 sh + sl, group gk (16s)
    auto scale_add = [&](float (&c)[4], const int (&sh)[4], const int (&sl)[4], const float2 (&rp)[2],
                         const float (&dxp)[2], const float (&xsp)[2]) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 p = rp[i >> 1];  // row g (i < 2) or g + 8
            float v = (float)(256 * sh[i] + sl[i]);
            c[i] = fmaf(v, p.x * dxp[i & 1], fmaf(-p.y, xsp[i & 1], c[i]));
        }
    };

    MqRaw R;
    issue_b(&stages[0], 0);
    mq_load_raw<QT>(wrow, 64 * hh, R);
    store_a(R, 0);
    mq_cp_wait_all();
    __syncthreads();
    const int nk = K / MQ_BK;
    for (int kt = 0; kt < nk; kt++) {
        const QiB* cur = &stages[kt & 1];
        QiB* nxt = &stages[(kt + 1) & 1];
        const bool more = kt + 1 < nk;
        if (more) {  // the next tile's loads fly while this one is computed
            issue_b(nxt, (kt + 1) * MQ_BK);
            mq_load_raw<QT>(wrow, (kt + 1) * MQ_BK + 64 * hh, R);
        }
#pragma unroll
        for (int gq = 0; gq < QI_NG; gq++) {
            const int kk = 32 * gq;
            // B fragments: bytes kk + 4cq (.. + 3) and kk + 16 + 4cq of pair column g
            u32 bh[2][2], bl[2][2];
            float dxp[2][2];
#pragma unroll
            for (int b = 0; b < 2; b++) {
                int o = (wn + 8 * b + g) * QI_LD + kk + 4 * cq;
                bh[b][0] = *(const u32*)(cur->bh + o);
                bh[b][1] = *(const u32*)(cur->bh + o + 16);
                bl[b][0] = *(const u32*)(cur->bl + o);
                bl[b][1] = *(const u32*)(cur->bl + o + 16);
#pragma unroll
                for (int j = 0; j < 2; j++) dxp[b][j] = cur->dx[(wn + 8 * b + 2 * cq + j) * QI_NG + gq];
            }
            if (QT != QT_Q6_K) {  // one 32-group per mma
                u32 af[2][4];
                float2 rp[2][2];
#pragma unroll
                for (int a = 0; a < 2; a++) {
                    int o = (wm + 16 * a + g) * QI_LD + kk + 4 * cq;
                    af[a][0] = *(const u32*)(sa->a + o);
                    af[a][1] = *(const u32*)(sa->a + o + 8 * QI_LD);
                    af[a][2] = *(const u32*)(sa->a + o + 16);
                    af[a][3] = *(const u32*)(sa->a + o + 8 * QI_LD + 16);
#pragma unroll
                    for (int hr = 0; hr < 2; hr++)
                        rp[a][hr] = sa->sm[(wm + 16 * a + g + 8 * hr) * MQ_SCS + 2 * gq];
                }
                float xsp[2][2];
#pragma unroll
                for (int b = 0; b < 2; b++)
#pragma unroll
                    for (int j = 0; j < 2; j++) {
                        float2 t = *(const float2*)(cur->xs + (wn + 8 * b + 2 * cq + j) * MQ_NG + 2 * gq);
                        xsp[b][j] = t.x + t.y;
                    }
#pragma unroll
                for (int a = 0; a < 2; a++)
#pragma unroll
                    for (int b = 0; b < 2; b++) {
                        int sh[4] = {0, 0, 0, 0}, sl[4] = {0, 0, 0, 0};
                        qi_mma_k32(sh, af[a], bh[b]);
                        qi_mma_k32(sl, af[a], bl[b]);
                        scale_add(acc[a][b], sh, sl, rp[a], dxp[b], xsp[b]);
                    }
            } else {  // Q6_K: two 16-groups, one mma m16n8k16 each
#pragma unroll
                for (int s = 0; s < 2; s++) {
                    u32 af[2][2];
                    float2 rp[2][2];
#pragma unroll
                    for (int a = 0; a < 2; a++) {
                        int o = (wm + 16 * a + g) * QI_LD + kk + 16 * s + 4 * cq;
                        af[a][0] = *(const u32*)(sa->a + o);
                        af[a][1] = *(const u32*)(sa->a + o + 8 * QI_LD);
#pragma unroll
                        for (int hr = 0; hr < 2; hr++)
                            rp[a][hr] = sa->sm[(wm + 16 * a + g + 8 * hr) * MQ_SCS + 2 * gq + s];
                    }
                    float xsp[2][2];
#pragma unroll
                    for (int b = 0; b < 2; b++)
#pragma unroll
                        for (int j = 0; j < 2; j++)
                            xsp[b][j] = cur->xs[(wn + 8 * b + 2 * cq + j) * MQ_NG + 2 * gq + s];
#pragma unroll
                    for (int a = 0; a < 2; a++)
#pragma unroll
                        for (int b = 0; b < 2; b++) {
                            int sh[4] = {0, 0, 0, 0}, sl[4] = {0, 0, 0, 0};
                            qi_mma_k16(sh, af[a], &bh[b][s]);
                            qi_mma_k16(sl, af[a], &bl[b][s]);
                            scale_add(acc[a][b], sh, sl, rp[a], dxp[b], xsp[b]);
                        }
                }
            }
        }
        if (more) {
            __syncthreads();  // every warp is done with this weight tile
            store_a(R, (kt + 1) * MQ_BK);
            mq_cp_wait_all();
        }
        __syncthreads();
    }
#pragma unroll
    for (int a = 0; a < 2; a++)
#pragma unroll
        for (int b = 0; b < 2; b++)
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

#define QI_ENTRY(NAME, QT)                                                                         \
    extern "C" __global__ void __launch_bounds__(128) matmat_qi_##NAME(                            \
        const u8* W, i64 expert_bytes, i64 row_bytes, int nrows, int K, const i8* Xh,              \
        const i8* Xl, const float* Xd, const float* Xs, int in_div, int n_dense, const int* list,  \
        const int* off, float* Y, int y_stride, int mode) {                                        \
        matmat_qi_impl<QT>(W, expert_bytes, row_bytes, nrows, K, Xh, Xl, Xd, Xs, in_div, n_dense, \
                           list, off, Y, y_stride, mode);                                          \
    }

QI_ENTRY(q4_k, QT_Q4_K)
QI_ENTRY(q5_k, QT_Q5_K)
QI_ENTRY(q6_k, QT_Q6_K)
QI_ENTRY(q8_0, QT_Q8_0)
