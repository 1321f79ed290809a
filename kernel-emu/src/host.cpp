// C entry points of the emulated kernels, called from Rust (src/lib.rs).
#include "../simt.h"

#define PV_EMU 1
// The engine's kernels.cu with its inline PTX replaced (build.rs), then attn_prefill.cu, decode.cu,
// decode_q16.cu and mmq.cu, which reuse its types (PV_KERNELS_PRELUDE), in the engine's order.
#include "kernels_emu.cu"
#define PV_KERNELS_PRELUDE
#include "../../engine/src/cuda/attn_prefill.cu"
#include "../../engine/src/cuda/decode.cu"
#include "../../engine/src/cuda/decode_q16.cu"
#include "../../engine/src/cuda/mmq.cu"

// Run CALL(suffix) for the kernel of qtype `qt` (the entry points are named <kernel>_<suffix>);
// return 0, or 1 for a qtype without such a kernel.
#define EMU_DISPATCH_QUANT(qt, CALL)                  \
    switch (qt) {                                     \
        case QT_Q4_K: CALL(q4_k); return 0;           \
        case QT_Q5_K: CALL(q5_k); return 0;           \
        case QT_Q6_K: CALL(q6_k); return 0;           \
        case QT_Q8_0: CALL(q8_0); return 0;           \
        default: return 1;                            \
    }
#define EMU_DISPATCH_ALL(qt, CALL)                    \
    switch (qt) {                                     \
        case QT_F32: CALL(f32); return 0;             \
        case QT_F16: CALL(f16); return 0;             \
        default: EMU_DISPATCH_QUANT(qt, CALL)         \
    }

extern "C" int emu_split_act_q16(const float* X, int x_stride, int K, int rows, i8* Xh, i8* Xl,
                                 float* Xd, float* Xs) {
    emu::launch({(unsigned)rows, 1, 1}, {64, 1, 1}, 0,
                [&] { split_act_q16(X, x_stride, K, rows, Xh, Xl, Xd, Xs); });
    return 0;
}

extern "C" int emu_matmat_qi(int qt, const u8* W, i64 expert_bytes, i64 row_bytes, int nrows,
                             int K, const i8* Xh, const i8* Xl, const float* Xd, const float* Xs,
                             int in_div, int n_dense, const int* list, const int* off, int groups,
                             int max_pairs, float* Y, int y_stride, int mode) {
    emu_dim3 grid{(unsigned)((nrows + MQ_BM - 1) / MQ_BM), (unsigned)((max_pairs + MQ_BN - 1) / MQ_BN),
                  (unsigned)groups};
#define QI_CALL(NAME)                                                                              \
    emu::launch(grid, {128, 1, 1}, QI_SMEM_BYTES, [&] {                                            \
        matmat_qi_##NAME(W, expert_bytes, row_bytes, nrows, K, Xh, Xl, Xd, Xs, in_div, n_dense, list, \
                         off, Y, y_stride, mode);                                                  \
    })
    EMU_DISPATCH_QUANT(qt, QI_CALL);
}

extern "C" int emu_qi_smem_bytes() { return QI_SMEM_BYTES; }

extern "C" int emu_attn_prefill(const float* q, const float* kc, const float* vc, float* out,
                                int pos0, int T, int n_head, int n_head_kv, int hd, float scale) {
    int G = n_head / n_head_kv;
    int qt = AP_ROWS / G;
    emu::launch({(unsigned)n_head_kv, (unsigned)((T + qt - 1) / qt), 1}, {256, 1, 1}, AP_SMEM_BYTES,
                [&] { attn_prefill(q, kc, vc, out, &pos0, T, n_head, n_head_kv, hd, scale); });
    return 0;
}

extern "C" int emu_ap_smem_bytes() { return AP_SMEM_BYTES; }

// The engine's prefill product on the tensor cores (kernels.cu), for the emulator's own check:
// the engine runs it on the GPU, where the parity falsifiers hold it to the CPU forward.
extern "C" int emu_matmat_tc(int qt, const u8* W, i64 expert_bytes, i64 row_bytes, int nrows,
                             int K, const float* X, int x_stride, int in_div, int n_dense,
                             const int* list, const int* off, int groups, int max_pairs, float* Y,
                             int y_stride, int mode) {
    emu_dim3 grid{(unsigned)((nrows + TC_BM - 1) / TC_BM), (unsigned)((max_pairs + TC_BN - 1) / TC_BN),
                  (unsigned)groups};
#define TC_CALL(NAME)                                                                            \
    emu::launch(grid, {128, 1, 1}, TC_SMEM_BYTES, [&] {                                          \
        matmat_tc_##NAME(W, expert_bytes, row_bytes, nrows, K, X, x_stride, in_div, n_dense, list, \
                         off, Y, y_stride, mode);                                                \
    })
    EMU_DISPATCH_QUANT(qt, TC_CALL);
}

// Decode mat-vecs: variant 0 is kernels.cu's one-row-per-warp kernel, 1 decode.cu's
// two-rows-per-warp one.
extern "C" int emu_moe_gate_up(int variant, int qt, const u8* Wg, const u8* Wu, i64 expert_bytes,
                               i64 row_bytes, int ff, int K, const float* x, int x_stride,
                               int in_div, const int* ids, int pairs, float* act) {
    unsigned rows_per_block = MV_WARPS * (variant ? RPW : 1);
    emu_dim3 grid{(unsigned)((ff + rows_per_block - 1) / rows_per_block), (unsigned)pairs, 1};
#define GU_CALL(NAME)                                                                           \
    emu::launch(grid, {32 * MV_WARPS, 1, 1}, 0, [&] {                                           \
        if (variant)                                                                            \
            moe_gate_up2_##NAME(Wg, Wu, expert_bytes, row_bytes, ff, K, x, x_stride, in_div, ids, \
                                act, Wg, expert_bytes);                                         \
        else                                                                                    \
            moe_gate_up_##NAME(Wg, Wu, expert_bytes, row_bytes, ff, K, x, x_stride, in_div, ids,  \
                               act, Wg, expert_bytes);                                          \
    })
    EMU_DISPATCH_ALL(qt, GU_CALL);
}

extern "C" int emu_matvec3(int variant, int qt, const u8* W0, const u8* W1, const u8* W2,
                           i64 row_bytes, int n0, int n1, int n2, int K, const float* x, float* y0,
                           float* y1, float* y2) {
    unsigned rows_per_block = MV_WARPS * (variant ? RPW : 1);
    unsigned rows = (unsigned)(n0 + n1 + n2);
    emu_dim3 grid{(rows + rows_per_block - 1) / rows_per_block, 1, 1};
#define MV3_CALL(NAME)                                                                        \
    emu::launch(grid, {32 * MV_WARPS, 1, 1}, 0, [&] {                                         \
        if (variant)                                                                          \
            matvec3_2_##NAME(W0, W1, W2, row_bytes, n0, n1, n2, K, x, y0, y1, y2);             \
        else                                                                                  \
            matvec3_##NAME(W0, W1, W2, row_bytes, n0, n1, n2, K, x, y0, y1, y2);               \
    })
    EMU_DISPATCH_ALL(qt, MV3_CALL);
}

// decode.cu's matvec3n (the attention RMSNorm and q/k/v in one launch; v of qtype qt2), for the
// pairs the engine instantiates; 1 for another pair.
extern "C" int emu_matvec3n(int qt, int qt2, const u8* W0, const u8* W1, const u8* W2,
                            i64 row_bytes, i64 row_bytes2, int n0, int n1, int n2, int K,
                            const float* x, const float* nw, float eps, float* h_out, float* y0,
                            float* y1, float* y2) {
    unsigned warps = qt == qt2 ? (unsigned)(n0 + n1 + n2 + 1) / 2 : (unsigned)((n0 + n1) / 2 + n2);
    emu_dim3 grid{(warps + MV_WARPS - 1) / MV_WARPS, 1, 1};
#define MV3N_CALL(NAME)                                                                           \
    emu::launch(grid, {32 * MV_WARPS, 1, 1}, (size_t)K * 4, [&] {                                \
        matvec3n_##NAME(W0, W1, W2, row_bytes, row_bytes2, n0, n1, n2, K, x, nw, eps, h_out, y0, \
                        y1, y2);                                                                 \
    });                                                                                          \
    return 0
    if (qt == QT_Q4_K && qt2 == QT_Q4_K) { MV3N_CALL(q4_k_q4_k); }
    if (qt == QT_Q4_K && qt2 == QT_Q6_K) { MV3N_CALL(q4_k_q6_k); }
    if (qt == QT_Q4_K && qt2 == QT_Q5_K) { MV3N_CALL(q4_k_q5_k); }
    if (qt == QT_Q5_K && qt2 == QT_Q6_K) { MV3N_CALL(q5_k_q6_k); }
    if (qt == QT_Q6_K && qt2 == QT_Q8_0) { MV3N_CALL(q6_k_q8_0); }
    if (qt == QT_Q8_0 && qt2 == QT_F16) { MV3N_CALL(q8_0_f16); }
    if (qt == QT_F16 && qt2 == QT_F32) { MV3N_CALL(f16_f32); }
    if (qt == QT_F32 && qt2 == QT_Q4_K) { MV3N_CALL(f32_q4_k); }
    if (qt == QT_Q6_K && qt2 == QT_Q6_K) { MV3N_CALL(q6_k_q6_k); }
    if (qt == QT_Q5_K && qt2 == QT_Q5_K) { MV3N_CALL(q5_k_q5_k); }
    if (qt == QT_Q8_0 && qt2 == QT_Q8_0) { MV3N_CALL(q8_0_q8_0); }
    if (qt == QT_F16 && qt2 == QT_F16) { MV3N_CALL(f16_f16); }
    if (qt == QT_F32 && qt2 == QT_F32) { MV3N_CALL(f32_f32); }
    return 1;
}

// decode.cu's matvec4 (four rows per warp): y (=|+=) W x.
extern "C" int emu_matvec4(int qt, const u8* W, i64 row_bytes, int nrows, int K, const float* x,
                           float* y, int mode) {
    emu_dim3 grid{(unsigned)((nrows + 4 * MV_WARPS - 1) / (4 * MV_WARPS)), 1, 1};
#define MV4_CALL(NAME) \
    emu::launch(grid, {32 * MV_WARPS, 1, 1}, 0, [&] { matvec4_##NAME(W, row_bytes, nrows, K, x, y, mode); })
    EMU_DISPATCH_ALL(qt, MV4_CALL);
}

// The engine's grouping of (token, slot) pairs by expert for the prefill MoE products:
// variant 0 kernels.cu's group_pairs (one thread per expert scans every pair), 1 group_pairs_w
// (the pairs split over 32 warps). One block of 1024 threads, as the engine launches them.
extern "C" int emu_group_pairs(int variant, const int* ids, int n_pairs, int n_exp, int* off,
                               int* list) {
    size_t smem = (size_t)(variant ? n_pairs + 33 * n_exp : n_pairs) * 4;
    emu::launch({1, 1, 1}, {1024, 1, 1}, smem, [&] {
        if (variant)
            group_pairs_w(ids, n_pairs, n_exp, off, list);
        else
            group_pairs(ids, n_pairs, n_exp, off, list);
    });
    return 0;
}

// The engine's CUDA-core product (kernels.cu's matmat_*) with a caller's grid and groups: the
// adoption patch runs the prefill router through it with one group per TT tokens and
// expert_bytes = 0 (every group reads the same matrix).
extern "C" int emu_matmat(int qt, const u8* W, i64 expert_bytes, i64 row_bytes, int nrows, int K,
                          const float* X, int x_stride, int in_div, int n_dense, const int* list,
                          const int* off, int groups, float* Y, int y_stride, int mode) {
    emu_dim3 grid{(unsigned)((nrows + MV_WARPS - 1) / MV_WARPS), 1, (unsigned)groups};
#define MM_CALL(NAME)                                                                            \
    emu::launch(grid, {32 * MV_WARPS, 1, 1}, 0, [&] {                                            \
        matmat_##NAME(W, expert_bytes, row_bytes, nrows, K, X, x_stride, in_div, n_dense, list,  \
                      off, Y, y_stride, mode);                                                   \
    })
    EMU_DISPATCH_ALL(qt, MM_CALL);
}

extern "C" int emu_matmat_tt() { return TT; }

// Decode attention of one token: variant 0 runs the engine's three kernels (qk_norm_rope_store,
// attn_partial, attn_combine), 1 decode.cu's attn_decode. q is normalised in place by variant 0
// only; kc / vc get the new position's rows; part is scratch; counter n_head_kv zeros.
extern "C" int emu_attn_decode(int variant, float* q, const float* k, const float* v,
                               const float* qnw, const float* knw, float* kc, float* vc,
                               float* part, float* out, int pos, int n_head, int n_head_kv,
                               int hd, int n_chunks, float scale, float base, float eps,
                               unsigned* counter) {
    if (variant) {
        emu::launch({(unsigned)n_head_kv, (unsigned)n_chunks, 1}, {256, 1, 1}, 0, [&] {
            attn_decode(q, k, v, qnw, knw, kc, vc, part, out, &pos, n_head, n_head_kv, hd, n_chunks,
                        scale, base, eps, counter);
        });
        return 0;
    }
    emu::launch({(unsigned)(n_head + n_head_kv), 1, 1}, {(unsigned)hd, 1, 1}, 0, [&] {
        qk_norm_rope_store(q, k, v, qnw, knw, kc, vc, &pos, n_head, n_head_kv, hd, base, eps);
    });
    emu::launch({(unsigned)n_head_kv, (unsigned)n_chunks, 1}, {256, 1, 1}, 0, [&] {
        attn_partial(q, kc, vc, part, &pos, n_head, n_head_kv, hd, n_chunks, scale);
    });
    emu::launch({(unsigned)n_head, 1, 1}, {(unsigned)hd, 1, 1}, 0,
                [&] { attn_combine(part, out, &pos, n_head, hd, n_chunks, nullptr); });
    return 0;
}

// The decode expert products on Q16 activations (decode_q16.cu).
// q16_quantize_blocks as router_decode and matvec3n_q16 call it: one block, threads striding
// over the blocks of 8 (a test kernel; the engine has no launch of its own for it).
__global__ void q16_quantize_kernel(const float* x, int K, u8* out) {
    q16_quantize_blocks(x, K, out, threadIdx.x, blockDim.x);
}
extern "C" int emu_q16_quantize(const float* x, int K, u8* out) {
    emu::launch({1, 1, 1}, {64, 1, 1}, 0, [&] { q16_quantize_kernel(x, K, out); });
    return 0;
}

extern "C" int emu_moe_gate_up2_q16(int qt, const u8* Wg, const u8* Wu, i64 expert_bytes,
                                    i64 row_bytes, int ff, int K, const u8* xq, const int* ids,
                                    int pairs, float* act, u8* actq) {
    emu_dim3 grid{(unsigned)(ff / (RPW * MV_WARPS)), (unsigned)pairs, 1};
#define GUQ_CALL(NAME)                                                                       \
    emu::launch(grid, {32 * MV_WARPS, 1, 1}, 0, [&] {                                        \
        moe_gate_up2_q16_##NAME(Wg, Wu, expert_bytes, row_bytes, ff, K, xq, ids, act, actq, Wg, \
                                expert_bytes);                                               \
    })
    switch (qt) {
        case QT_Q4_K: GUQ_CALL(q4_k); return 0;
        case QT_Q5_K: GUQ_CALL(q5_k); return 0;
        case QT_Q6_K: GUQ_CALL(q6_k); return 0;
        default: return 1;
    }
}

extern "C" int emu_moe_down_q16(int qt, const u8* Wd, i64 expert_bytes, i64 row_bytes, int nrows,
                                int ff, int k, const u8* actq, const int* ids, const float* wts,
                                float* x) {
    emu_dim3 grid{(unsigned)((nrows + MV_WARPS - 1) / MV_WARPS), 1, 1};
#define DQ_CALL(NAME)                                                                          \
    emu::launch(grid, {32 * MV_WARPS, 1, 1}, 0,                                                \
                [&] { moe_down_q16_##NAME(Wd, expert_bytes, row_bytes, nrows, ff, k, actq, ids, wts, x); })
    switch (qt) {
        case QT_Q4_K: DQ_CALL(q4_k); return 0;
        case QT_Q5_K: DQ_CALL(q5_k); return 0;
        case QT_Q6_K: DQ_CALL(q6_k); return 0;
        default: return 1;
    }
}

// attn_combine's Q16 output path: q16_quantize_lanes8 as attn_combine calls it, one element per
// thread, blocks of `threads` (attn_combine's head_dim).
__global__ void q16_lanes8_kernel(const float* x, int K, u8* out) {
    int e = blockIdx.x * blockDim.x + threadIdx.x;
    q16_quantize_lanes8(x[e], out, K, e);
}
extern "C" int emu_q16_quantize_lanes8(const float* x, int K, int threads, u8* out) {
    emu::launch({(unsigned)(K / threads), 1, 1}, {(unsigned)threads, 1, 1}, 0,
                [&] { q16_lanes8_kernel(x, K, out); });
    return 0;
}

extern "C" int emu_matvec_q16(int qt, const u8* W, i64 row_bytes, int nrows, int K, const u8* xq,
                              float* y, int mode) {
    emu_dim3 grid{(unsigned)((nrows + MV_WARPS - 1) / MV_WARPS), 1, 1};
#define MVQ_CALL(NAME)                                              \
    emu::launch(grid, {32 * MV_WARPS, 1, 1}, 0,                     \
                [&] { matvec_q16_##NAME(W, row_bytes, nrows, K, xq, y, mode); })
    switch (qt) {
        case QT_Q4_K: MVQ_CALL(q4_k); return 0;
        case QT_Q5_K: MVQ_CALL(q5_k); return 0;
        case QT_Q6_K: MVQ_CALL(q6_k); return 0;
        default: return 1;
    }
}

// The decode router (kernels.cu's router_decode): RMSNorm, the router mat-vec and the last
// block's top-k, one block of ROUTER_THREADS per expert row.
extern "C" int emu_router_decode(int qt, const u8* W, i64 row_bytes, int n_exp, int K,
                                 const float* x, const float* nw, float eps, float* h_out,
                                 float* logits, int k, int* ids, float* wts, unsigned* counter,
                                 u8* hq) {
#define RD_CALL(NAME)                                                                          \
    emu::launch({(unsigned)n_exp, 1, 1}, {ROUTER_THREADS, 1, 1}, (unsigned)(4 * K), [&] {     \
        router_decode_##NAME(W, row_bytes, n_exp, K, x, nw, eps, h_out, logits, k, ids, wts,   \
                             counter, hq);                                                     \
    })
    EMU_DISPATCH_ALL(qt, RD_CALL);
}

// decode_q16.cu's matvec3n_q16_* (matvec3n with the dots on the block's Q16 copy of h).
extern "C" int emu_matvec3n_q16(int qt, int qt2, const u8* W0, const u8* W1, const u8* W2,
                                i64 row_bytes, i64 row_bytes2, int n0, int n1, int n2, int K,
                                const float* x, const float* nw, float eps, float* h_out,
                                float* y0, float* y1, float* y2) {
    unsigned warps = qt == qt2 ? (unsigned)(n0 + n1 + n2 + 1) / 2 : (unsigned)((n0 + n1) / 2 + n2);
    emu_dim3 grid{(warps + MV_WARPS - 1) / MV_WARPS, 1, 1};
#define MV3NQ_CALL(NAME)                                                                          \
    emu::launch(grid, {32 * MV_WARPS, 1, 1}, (size_t)K * 7, [&] {                                \
        matvec3n_q16_##NAME(W0, W1, W2, row_bytes, row_bytes2, n0, n1, n2, K, x, nw, eps, h_out, \
                            y0, y1, y2);                                                         \
    });                                                                                          \
    return 0
    if (qt == QT_Q4_K && qt2 == QT_Q4_K) { MV3NQ_CALL(q4_k_q4_k); }
    if (qt == QT_Q4_K && qt2 == QT_Q6_K) { MV3NQ_CALL(q4_k_q6_k); }
    if (qt == QT_Q4_K && qt2 == QT_Q5_K) { MV3NQ_CALL(q4_k_q5_k); }
    if (qt == QT_Q5_K && qt2 == QT_Q5_K) { MV3NQ_CALL(q5_k_q5_k); }
    if (qt == QT_Q5_K && qt2 == QT_Q6_K) { MV3NQ_CALL(q5_k_q6_k); }
    if (qt == QT_Q6_K && qt2 == QT_Q6_K) { MV3NQ_CALL(q6_k_q6_k); }
    return 1;
}
