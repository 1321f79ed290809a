// Causal attention for prefill (PV_GPU_NO_AP=1 falls back to attn_partial per token), one block per
// (KV head, tile of query tokens), all of the KV head's query heads together.
//
// Why: the engine's prefill runs its decode attention per query token (attn_partial, grid
// KV heads x key chunks x tokens): every token re-reads every K and V row before it, 20 ms of a
// 162 ms 512-token prefill on the H200. Here a block holds 64 query rows (64 / G tokens x the
// G query heads of one KV head) and streams the keys in tiles of 32, so each K and V row is read
// once per 64 query rows, and runs the softmax online (running max and sum per row, the output
// rescaled when the max grows), so nothing per key is written to global memory.
// Precision: f32 FMA throughout, accurate expf; no tensor cores (the scores would need f16
// splits of both operands to stay at f32 accuracy).
// Needs: hd % 32 == 0, hd <= 128, 64 % G == 0 (G = n_head / n_head_kv); the host checks and
// otherwise keeps the per-token kernels.
//
// q: T x (n_head * hd), already normalised and rotated (qk_norm_rope_store, which also wrote the
// T tokens' K and V rows at positions pos0 .. pos0 + T - 1). Token t attends keys 0 .. pos0 + t.
// out: T x (n_head * hd). grid = (n_head_kv, ceil(T / (64 / G))), 256 threads,
// AP_SMEM_BYTES of dynamic shared memory.

// Compiled appended to kernels.cu (PV_KERNELS_PRELUDE): uses its i64, INFINITY, warp_max,
// warp_sum and pdl_begin.
#ifndef PV_KERNELS_PRELUDE
#error "attn_prefill.cu is compiled after kernels.cu"
#endif

#define AP_ROWS 64       // query rows per block
#define AP_KT 32         // keys per tile
#define AP_LD (128 + 4)  // floats per shared row (16-byte aligned, rows 4 banks apart)
#define AP_SMEM_BYTES ((AP_ROWS + 2 * AP_KT) * AP_LD * 4 + AP_ROWS * (AP_KT + 1) * 4 + 3 * AP_ROWS * 4)

#ifdef PV_EMU
#define AP_DYN_SMEM(T, name) T* name = (T*)emu_dyn_smem()
#else
#define AP_DYN_SMEM(T, name) extern __shared__ __align__(16) T name[]
#endif

extern "C" __global__ void __launch_bounds__(256) attn_prefill(
    const float* q, const float* kc, const float* vc, float* out, const int* pos_ptr, int T,
    int n_head, int n_head_kv, int hd, float scale) {
    pdl_begin();
    AP_DYN_SMEM(float, ap_smem);
    float* sQ = ap_smem;                    // [AP_ROWS][AP_LD]
    float* sK = sQ + AP_ROWS * AP_LD;        // [AP_KT][AP_LD]
    float* sV = sK + AP_KT * AP_LD;          // [AP_KT][AP_LD]
    float* sS = sV + AP_KT * AP_LD;          // [AP_ROWS][AP_KT + 1]: scores, then probabilities
    float* sM = sS + AP_ROWS * (AP_KT + 1);  // running max per row
    float* sL = sM + AP_ROWS;                // running sum per row
    float* sA = sL + AP_ROWS;                // this tile's rescale factor per row
    const int G = n_head / n_head_kv;
    const int QT = AP_ROWS / G;  // tokens per block
    const int kvh = blockIdx.x;
    // the longest tiles (last tokens) first, so that they do not finish the grid alone
    const int t0 = ((int)gridDim.y - 1 - (int)blockIdx.y) * QT;
    const int pos0 = *pos_ptr;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int q_dim = n_head * hd, kv_dim = n_head_kv * hd;
    const int nq = min(QT, T - t0);  // tokens of this tile
    const int hd4 = hd / 4;
    // row r = token t0 + r / G, query head kvh * G + r % G
    for (int i = tid; i < AP_ROWS * hd4; i += 256) {
        int r = i / hd4, d4 = i % hd4;
        int tl = min(r / G, nq - 1);  // rows past the last token repeat it (computed, not stored)
        const float4* src = (const float4*)(q + (i64)(t0 + tl) * q_dim + (kvh * G + r % G) * hd);
        ((float4*)(sQ + r * AP_LD))[d4] = src[d4];
    }
    for (int r = tid; r < AP_ROWS; r += 256) {
        sM[r] = (-INFINITY);
        sL[r] = 0.f;
    }
    // scores: thread -> rows 2 rp, 2 rp + 1 and keys kq + 8 j (j < 4)
    const int rp = tid >> 3, kq = tid & 7;
    // output: thread -> rows 2 rp, 2 rp + 1 and dims 4 dg + 32 c (c < hd / 32)
    const int dg = tid & 7;
    float o[2][4][4];
#pragma unroll
    for (int a = 0; a < 2; a++)
#pragma unroll
        for (int c = 0; c < 4; c++)
#pragma unroll
            for (int i = 0; i < 4; i++) o[a][c][i] = 0.f;
    const int n_keys = pos0 + t0 + nq;  // keys the tile's last token sees
    for (int j0 = 0; j0 < n_keys; j0 += AP_KT) {
        const int cnt = min(AP_KT, n_keys - j0);
        __syncthreads();  // the previous tile's sK / sV / sS are no longer read
        for (int i = tid; i < AP_KT * hd4; i += 256) {
            int j = i / hd4, d4 = i % hd4;
            float4 kv = make_float4(0.f, 0.f, 0.f, 0.f), vv = kv;
            if (j < cnt) {
                i64 off = (i64)(j0 + j) * kv_dim + kvh * hd;
                kv = ((const float4*)(kc + off))[d4];
                vv = ((const float4*)(vc + off))[d4];
            }
            ((float4*)(sK + j * AP_LD))[d4] = kv;
            ((float4*)(sV + j * AP_LD))[d4] = vv;
        }
        __syncthreads();
        {
            float s[2][4];
#pragma unroll
            for (int a = 0; a < 2; a++)
#pragma unroll
                for (int b = 0; b < 4; b++) s[a][b] = 0.f;
            for (int d4 = 0; d4 < hd4; d4++) {
                float4 qa = ((const float4*)(sQ + (2 * rp) * AP_LD))[d4];
                float4 qb = ((const float4*)(sQ + (2 * rp + 1) * AP_LD))[d4];
#pragma unroll
                for (int b = 0; b < 4; b++) {
                    float4 k4 = ((const float4*)(sK + (kq + 8 * b) * AP_LD))[d4];
                    s[0][b] += qa.x * k4.x + qa.y * k4.y + qa.z * k4.z + qa.w * k4.w;
                    s[1][b] += qb.x * k4.x + qb.y * k4.y + qb.z * k4.z + qb.w * k4.w;
                }
            }
#pragma unroll
            for (int a = 0; a < 2; a++) {
                int r = 2 * rp + a;
                int pos = pos0 + t0 + min(r / G, nq - 1);  // this row's token position
#pragma unroll
                for (int b = 0; b < 4; b++) {
                    int j = kq + 8 * b;
                    bool seen = j < cnt && j0 + j <= pos;
                    sS[r * (AP_KT + 1) + j] = seen ? s[a][b] * scale : (-INFINITY);
                }
            }
        }
        __syncthreads();
        // online softmax, one warp per 8 rows, one key per lane
        for (int r = warp; r < AP_ROWS; r += 8) {
            float sc = sS[r * (AP_KT + 1) + lane];
            float mt = warp_max(sc);
            float m_old = sM[r];
            float m_new = fmaxf(m_old, mt);  // finite: key 0 is always seen
            float p = expf(sc - m_new);      // exp(-inf) = 0 for masked keys
            float ps = warp_sum(p);
            sS[r * (AP_KT + 1) + lane] = p;
            if (lane == 0) {
                float alpha = expf(m_old - m_new);  // 0 on the first tile (m_old = -inf)
                sA[r] = alpha;
                sM[r] = m_new;
                sL[r] = sL[r] * alpha + ps;
            }
        }
        __syncthreads();
        {
            float al[2] = {sA[2 * rp], sA[2 * rp + 1]};
#pragma unroll
            for (int a = 0; a < 2; a++)
#pragma unroll
                for (int c = 0; c < 4; c++)
#pragma unroll
                    for (int i = 0; i < 4; i++) o[a][c][i] *= al[a];
            for (int j = 0; j < cnt; j++) {
                float pa = sS[(2 * rp) * (AP_KT + 1) + j], pb = sS[(2 * rp + 1) * (AP_KT + 1) + j];
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    if (32 * c < hd) {
                        float4 v4 = ((const float4*)(sV + j * AP_LD + 32 * c))[dg];
                        o[0][c][0] += pa * v4.x; o[0][c][1] += pa * v4.y;
                        o[0][c][2] += pa * v4.z; o[0][c][3] += pa * v4.w;
                        o[1][c][0] += pb * v4.x; o[1][c][1] += pb * v4.y;
                        o[1][c][2] += pb * v4.z; o[1][c][3] += pb * v4.w;
                    }
                }
            }
        }
    }
    __syncthreads();
#pragma unroll
    for (int a = 0; a < 2; a++) {
        int r = 2 * rp + a;
        if (r / G >= nq) continue;
        float inv = 1.f / sL[r];
        float* dst = out + (i64)(t0 + r / G) * q_dim + (kvh * G + r % G) * hd;
#pragma unroll
        for (int c = 0; c < 4; c++)
            if (32 * c < hd)
                ((float4*)(dst + 32 * c))[dg] =
                    make_float4(o[a][c][0] * inv, o[a][c][1] * inv, o[a][c][2] * inv, o[a][c][3] * inv);
    }
}
