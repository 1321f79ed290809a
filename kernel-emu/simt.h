// A small SIMT emulator: runs CUDA C kernels on the CPU so that their logic (indexing, bit
// tricks, fragment layouts, the order of shared-memory writes and barriers) can be tested on a
// machine without a GPU. It is not a model of performance, and it is no substitute for a run on
// the device: it checks what the kernel computes, given the PTX ISA's definition of each
// instruction it replaces.
//
// Model: every CUDA thread of a block is a std::thread; blocks run one after another (in a
// shuffled order, different for each launch), so a
// `__shared__` variable (a function-local static here) has one copy per running block, as on the
// GPU (launches are serialised). __syncthreads is a barrier over the block's threads, warp operations a barrier over the
// warp's 32. Threads that return early drop out of both barriers, as exited threads do on the
// GPU. Dynamic shared memory is filled with 0xFF bytes (NaN as f16 and f32) before each block, so
// a kernel that reads shared memory it never wrote produces NaN instead of a plausible number.
// cp.async copies are queued per thread and only carried out at that thread's wait, so a kernel
// that reads its destination before the wait reads the stale (or NaN) contents.
//
// Replaced instructions (the kernel calls emu_* under PV_EMU):
//   mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32: fragments as the PTX ISA defines them
//     (A: a0..a7 in 4 registers, rows g and g + 8, columns 2c, 2c + 1 and + 8; B: b0..b3, rows
//     2c, 2c + 1 and + 8, column g; C: rows g and g + 8, columns 2c, 2c + 1; g = lane / 4,
//     c = lane % 4). Products are exact (f16 x f16 fits in f64); the sum is rounded to f32 once
//     per instruction. The hardware's accumulation may round differently in the last bits.
//   mma.sync.aligned.m16n8k32 / m16n8k16 .row.col.s32.u8.s8.s32 (emu_mma_u8s8): exact int32.
//   cvt f16 <-> f32 (round to nearest even, via _Float16), cp.async (16 bytes).
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

struct emu_dim3 {
    unsigned x, y, z;
};
struct alignas(8) uint2 {
    unsigned x, y;
};
struct alignas(8) int2 {
    int x, y;
};
struct alignas(8) float2 {
    float x, y;
};
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline float2 make_float2(float x, float y) { return float2{x, y}; }
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
using std::max;
using std::min;

namespace emu {

struct WarpScratch {
    uint32_t a[32][4];
    uint32_t b[32][2];
    float v[32];
};

struct BlockCtx {
    std::unique_ptr<std::barrier<>> block_bar;
    std::vector<std::unique_ptr<std::barrier<>>> warp_bars;
    std::vector<WarpScratch> warps;
    unsigned char* dyn_smem = nullptr;
};

inline thread_local emu_dim3 thread_idx{0, 0, 0};
inline thread_local emu_dim3 block_idx{0, 0, 0};
inline emu_dim3 block_dim{1, 1, 1};
inline emu_dim3 grid_dim{1, 1, 1};
inline thread_local BlockCtx* ctx = nullptr;
inline thread_local std::vector<std::pair<void*, const void*>> cp_queue;

inline unsigned linear_tid() {
    return thread_idx.x + block_dim.x * (thread_idx.y + block_dim.y * thread_idx.z);
}
inline void warp_sync() { ctx->warp_bars[linear_tid() / 32]->arrive_and_wait(); }
inline WarpScratch& warp() { return ctx->warps[linear_tid() / 32]; }

// Launches run one at a time, whoever calls them (test harnesses call from several threads): the
// grid geometry and the kernels' __shared__ statics are process-wide.
inline std::mutex launch_lock;

// Run `kernel` (a callable with no arguments) over grid x block, `smem` bytes of dynamic shared
// memory per block.
template <class F>
void launch(emu_dim3 grid, emu_dim3 block, size_t smem, F kernel) {
    std::lock_guard<std::mutex> one_at_a_time(launch_lock);
    grid_dim = grid;
    block_dim = block;
    unsigned n = block.x * block.y * block.z;
    std::vector<unsigned char> dyn(smem + 16);
    // Blocks run one at a time, in a shuffled order (a different one per launch): a kernel that
    // relies on one block running before another (a race on the GPU) sees the other order here.
    std::vector<emu_dim3> order;
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) order.push_back({bx, by, bz});
    static uint64_t launches = 0;
    uint64_t r = 0x9E3779B97F4A7C15ull * ++launches;
    for (size_t i = order.size(); i > 1; i--) {
        r ^= r >> 12, r ^= r << 25, r ^= r >> 27;
        std::swap(order[i - 1], order[(r * 0x2545F4914F6CDD1Dull >> 33) % i]);
    }
    for (const emu_dim3 b : order) {
        unsigned bx = b.x, by = b.y, bz = b.z;
        std::fill(dyn.begin(), dyn.end(), 0xFF);
        BlockCtx bc;
        bc.block_bar = std::make_unique<std::barrier<>>(n);
        unsigned nw = (n + 31) / 32;
        for (unsigned w = 0; w < nw; w++)
            bc.warp_bars.push_back(std::make_unique<std::barrier<>>(std::min(32u, n - 32 * w)));
        bc.warps.resize(nw);
        bc.dyn_smem = dyn.data();
        std::vector<std::thread> threads;
        threads.reserve(n);
        for (unsigned t = 0; t < n; t++) {
            threads.emplace_back([&, t] {
                ctx = &bc;
                block_idx = {bx, by, bz};
                thread_idx = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                cp_queue.clear();
                kernel();
                cp_queue.clear();
                bc.warp_bars[t / 32]->arrive_and_drop();
                bc.block_bar->arrive_and_drop();
            });
        }
        for (auto& th : threads) th.join();
    }
}

}  // namespace emu

#define threadIdx (emu::thread_idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) alignas(n)
#define __restrict__ __restrict
#define __launch_bounds__(...)

inline void __syncthreads() { emu::ctx->block_bar->arrive_and_wait(); }
inline void __syncwarp() { emu::warp_sync(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }

// Warp shuffles of a 4-byte value (float or int), through the warp's scratch: every lane
// publishes v, then reads the value of the lane src(lane) names.
template <class T, class Src>
inline T emu_shuffle(T v, Src src) {
    static_assert(sizeof(T) == 4, "4-byte shuffles only");
    auto& w = emu::warp();
    unsigned lane = emu::linear_tid() & 31;
    std::memcpy(&w.v[lane], &v, 4);
    emu::warp_sync();
    T r;
    std::memcpy(&r, &w.v[src(lane) & 31], 4);
    emu::warp_sync();
    return r;
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int o) {
    return emu_shuffle(v, [o](unsigned lane) { return lane ^ (unsigned)o; });
}
template <class T>
inline T __shfl_sync(unsigned, T v, int src) {
    return emu_shuffle(v, [src](unsigned) { return (unsigned)src; });
}

inline float __int_as_float(unsigned v) {
    float f;
    std::memcpy(&f, &v, 4);
    return f;
}
// prmt.b32 without a mode: byte n of the result is byte (s >> 4n) & 7 of {y:x} (x bytes 0..3).
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    uint64_t xy = ((uint64_t)y << 32) | x;
    unsigned r = 0;
    for (int n = 0; n < 4; n++) r |= (unsigned)((xy >> (8 * ((s >> (4 * n)) & 7))) & 0xFF) << (8 * n);
    return r;
}
// A load that bypasses L1 on the GPU; the emulator has one memory.
inline float __ldcg(const float* p) { return *(const volatile float*)p; }

inline unsigned __popc(unsigned v) { return (unsigned)__builtin_popcount(v); }

// __match_any_sync for a full warp: the lanes whose value equals this lane's.
inline unsigned __match_any_sync(unsigned, int v) {
    auto& w = emu::warp();
    unsigned lane = emu::linear_tid() & 31;
    std::memcpy(&w.v[lane], &v, 4);
    emu::warp_sync();
    unsigned m = 0;
    for (unsigned l = 0; l < 32; l++) {
        int o;
        std::memcpy(&o, &w.v[l], 4);
        if (o == v) m |= 1u << l;
    }
    emu::warp_sync();
    return m;
}

inline unsigned char* emu_dyn_smem() { return emu::ctx->dyn_smem; }

inline float emu_h2f(uint16_t h) {
    _Float16 f;
    std::memcpy(&f, &h, 2);
    return (float)f;
}
inline uint16_t emu_f2h(float v) {
    _Float16 f = (_Float16)v;  // round to nearest even
    uint16_t h;
    std::memcpy(&h, &f, 2);
    return h;
}
inline uint32_t emu_pack_h2(float a, float b) { return (uint32_t)emu_f2h(a) | ((uint32_t)emu_f2h(b) << 16); }

// D = A x B + C for one warp; each lane passes its own fragments and gets its own 4 outputs.
inline void emu_mma16816(float* c, const uint32_t* a, const uint32_t* b) {
    auto& w = emu::warp();
    unsigned lane = emu::linear_tid() & 31;
    std::memcpy(w.a[lane], a, 16);
    std::memcpy(w.b[lane], b, 8);
    emu::warp_sync();
    auto half = [](uint32_t r, int hi) { return (double)emu_h2f((uint16_t)(hi ? r >> 16 : r & 0xFFFF)); };
    auto A = [&](int row, int k) {  // register (row >= 8) + 2 (k % 16 >= 8) of lane 4 (row % 8) + (k % 8) / 2
        int l = 4 * (row % 8) + (k % 8) / 2;
        return half(w.a[l][(row >= 8) + 2 * (k >= 8)], k & 1);
    };
    auto B = [&](int k, int col) {  // register (k >= 8) of lane 4 col + (k % 8) / 2
        int l = 4 * col + (k % 8) / 2;
        return half(w.b[l][k >= 8], k & 1);
    };
    int g = lane / 4, cq = lane % 4;
    float out[4];
    for (int i = 0; i < 4; i++) {
        int row = g + ((i & 2) ? 8 : 0), col = 2 * cq + (i & 1);
        double s = 0;
        for (int k = 0; k < 16; k++) s += A(row, k) * B(k, col);
        out[i] = (float)((double)c[i] + s);
    }
    emu::warp_sync();
    for (int i = 0; i < 4; i++) c[i] = out[i];
}

// D = A x B + C for one warp, mma.sync.aligned.m16n8k{K}.row.col.s32.u8.s8.s32 with K = 32 or 16:
// A 16 x K unsigned bytes in K / 8 registers (register (row >= 8) + 2 (k >= 16) of lane
// 4 (row % 8) + (k % 16) / 4, byte k % 4), B K x 8 signed bytes in K / 16 registers (register
// k >= 16 of lane 4 col + (k % 16) / 4, byte k % 4), C / D as emu_mma16816's. Exact in int32;
// the sum wraps on overflow as the instruction without .satfinite does.
template <int K>
inline void emu_mma_u8s8(int* c, const uint32_t* a, const uint32_t* b) {
    static_assert(K == 16 || K == 32, "m16n8k16 or m16n8k32");
    auto& w = emu::warp();
    unsigned lane = emu::linear_tid() & 31;
    std::memcpy(w.a[lane], a, 4 * (K / 8));
    std::memcpy(w.b[lane], b, 4 * (K / 16));
    emu::warp_sync();
    auto A = [&](int row, int k) {
        int l = 4 * (row % 8) + (k % 16) / 4;
        return (int)(uint8_t)(w.a[l][(row >= 8) + 2 * (k >= 16)] >> (8 * (k % 4)));
    };
    auto B = [&](int k, int col) {
        int l = 4 * col + (k % 16) / 4;
        return (int)(int8_t)(w.b[l][k >= 16] >> (8 * (k % 4)));
    };
    int g = lane / 4, cq = lane % 4;
    int out[4];
    for (int i = 0; i < 4; i++) {
        int row = g + ((i & 2) ? 8 : 0), col = 2 * cq + (i & 1);
        uint32_t s = (uint32_t)c[i];
        for (int k = 0; k < K; k++) s += (uint32_t)(A(row, k) * B(k, col));
        out[i] = (int)s;
    }
    emu::warp_sync();
    for (int i = 0; i < 4; i++) c[i] = out[i];
}

// dp4a.s32.s32: c + the dot product of a's and b's four signed bytes.
inline int emu_dp4a(int a, int b, int c) {
    int s = c;
    for (int i = 0; i < 4; i++) s += (int)(int8_t)((unsigned)a >> (8 * i)) * (int)(int8_t)((unsigned)b >> (8 * i));
    return s;
}
// cvt.rni.s32.f32 (__float2int_rn): round to nearest, ties to even (the default rounding mode).
inline int emu_rint(float x) { return (int)std::nearbyint(x); }

inline void emu_cp_async16(void* dst, const void* src) { emu::cp_queue.emplace_back(dst, src); }
inline void emu_cp_async_wait_all() {
    for (auto& [d, s] : emu::cp_queue) std::memcpy(d, s, 16);
    emu::cp_queue.clear();
}
