/* cuda_emu.h: just enough of CUDA to run this project's hand-written kernels
 * on the CPU, so their index arithmetic, masks, tiling and barriers are
 * tested where no GPU is (CI, and most sessions). Each block runs as
 * blockDim.x std::threads that meet at real barriers: __syncthreads is a
 * block barrier, __syncwarp a barrier of the 32 threads of the warp, and
 * __shfl_xor_sync an exchange through per-thread slots between two warp
 * barriers. WMMA fragments hold the whole 16x16 tile in every lane (the
 * real layout is opaque to kernels anyway); mma_sync multiplies in fp32 in
 * k order; store_matrix_sync has each lane write its share, with no
 * barrier (the kernel's __syncwarp publishes it, as on the GPU). bf16 is a
 * 16-bit pattern rounded to nearest even.
 *
 * What this cannot show: the GPU's memory model (a missing barrier may pass
 * here by luck of scheduling, though threads do run concurrently), speed,
 * shared-memory limits, or cuBLAS/cuDNN. Kernels use DT_DYN_SMEM for their
 * dynamic shared memory and take nothing from cuda_runtime.h. C++20. */
#ifndef DT_CUDA_EMU_H
#define DT_CUDA_EMU_H

#define DT_CUDA_EMU 1

#include <algorithm>
#include <atomic>
#include <barrier>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

namespace emu {
/* A barrier that threads leaving the kernel drop out of, as exited GPU
 * threads stop counting for __syncthreads. */
struct xbarrier {
  std::mutex m;
  int live = 0, waiting = 0;
  std::atomic<uint64_t> gen{0};
  void reset(int n) { live = n, waiting = 0; }
  void wait() {
    uint64_t g;
    {
      std::lock_guard<std::mutex> l(m);
      g = gen.load(std::memory_order_relaxed);
      if (++waiting == live) {
        waiting = 0;
        gen.fetch_add(1, std::memory_order_release);
        return;
      }
    }
    /* more threads than cores: yield rather than sleep on a condition
     * variable, whose wake-ups of every waiter cost far more here */
    while (gen.load(std::memory_order_acquire) == g) std::this_thread::yield();
  }
  void drop() {
    std::lock_guard<std::mutex> l(m);
    live--;
    if (waiting > 0 && waiting == live) {
      waiting = 0;
      gen.fetch_add(1, std::memory_order_release);
    }
  }
};

struct block_state {
  unsigned nthreads;
  xbarrier block_bar;
  std::vector<xbarrier> warp_bar;
  std::vector<uint64_t> slots; /* one shuffle slot per thread */
  std::vector<unsigned char> smem;
  std::barrier<> end_bar; /* every thread done with this block */
  std::atomic<bool> synced{false}; /* a barrier or shuffle was used */
  block_state(unsigned n, size_t shm)
      : nthreads(n), warp_bar((n + 31) / 32), slots(n), smem(shm + 128), end_bar((std::ptrdiff_t)n) {
    reset();
  }
  void reset() {
    block_bar.reset((int)nthreads);
    for (unsigned w = 0; w < warp_bar.size(); w++)
      warp_bar[w].reset((int)std::min(32u, nthreads - 32 * w));
  }
};
inline thread_local dim3 tl_threadIdx, tl_blockIdx, tl_blockDim, tl_gridDim;
inline thread_local block_state *tl_block;
inline thread_local unsigned tl_tid; /* linear thread index in the block */

inline void *dyn_smem() {
  uintptr_t p = (uintptr_t)tl_block->smem.data();
  return (void *)((p + 127) & ~(uintptr_t)127);
}
inline void syncthreads() {
  tl_block->synced.store(true, std::memory_order_relaxed);
  tl_block->block_bar.wait();
}
inline void syncwarp() {
  tl_block->synced.store(true, std::memory_order_relaxed);
  tl_block->warp_bar[tl_tid / 32].wait();
}

template <typename T> T shfl_xor(T v, int lanemask) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a wide type");
  const unsigned me = tl_tid, other = me ^ (unsigned)lanemask;
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  tl_block->slots[me] = bits;
  syncwarp();
  T r;
  bits = tl_block->slots[other];
  std::memcpy(&r, &bits, sizeof(T));
  syncwarp(); /* nobody overwrites a slot before its reader is done */
  return r;
}

/* Worker threads kept for the whole process: a launch hands thread t of
 * every block to worker t, which runs the blocks in order. */
struct pool {
  std::mutex m;
  std::condition_variable start, done;
  std::vector<std::thread> th;
  std::function<void(unsigned)> work;
  unsigned active = 0, finished = 0;
  uint64_t gen = 0;
  void grow(unsigned n) {
    while (th.size() < n) {
      const unsigned id = (unsigned)th.size();
      th.emplace_back([this, id] {
        uint64_t seen = 0;
        for (;;) {
          std::function<void(unsigned)> w;
          {
            std::unique_lock<std::mutex> l(m);
            start.wait(l, [&] { return gen != seen; });
            seen = gen;
            if (id >= active) continue;
            w = work;
          }
          w(id);
          std::lock_guard<std::mutex> l(m);
          if (++finished == active) done.notify_all();
        }
      });
      th.back().detach();
    }
  }
  void run(unsigned n, std::function<void(unsigned)> f) {
    grow(n);
    std::unique_lock<std::mutex> l(m);
    work = std::move(f), active = n, finished = 0, gen++;
    start.notify_all();
    done.wait(l, [&] { return finished == active; });
  }
};
inline pool &the_pool() {
  static pool *p = new pool; /* never destroyed: its threads are detached */
  return *p;
}

/* Runs kernel(args...) over grid x block, one block at a time; warps are
 * formed from the linear thread index x + y*bx + z*bx*by, as on the GPU. */
template <typename... P>
void launch(dim3 grid, dim3 block, size_t shm, void (*kernel)(P...),
            typename std::type_identity<P>::type... args) { /* converted at the call, as <<<>>> */
  const unsigned n = block.x * block.y * block.z;
  if (n == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  block_state st(n, shm);
  the_pool().run(n, [&](unsigned t) {
    tl_threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
    tl_tid = t;
    tl_blockDim = block, tl_gridDim = grid, tl_block = &st;
    /* A kernel whose first block used no barrier, shuffle or dynamic
     * shared memory (an elementwise one) runs its other blocks without the
     * per-block rendezvous: its threads cannot see each other anyway. */
    bool free_run = false;
    for (unsigned bz = 0; bz < grid.z; bz++)
      for (unsigned by = 0; by < grid.y; by++)
        for (unsigned bx = 0; bx < grid.x; bx++) {
          tl_blockIdx = dim3(bx, by, bz);
          kernel(args...);
          if (free_run) continue;
          st.block_bar.drop();
          st.warp_bar[t / 32].drop();
          st.end_bar.arrive_and_wait();
          if (t == 0) st.reset();
          st.end_bar.arrive_and_wait();
          free_run = shm == 0 && !st.synced.load();
        }
  });
}
} // namespace emu

#define threadIdx (emu::tl_threadIdx)
#define blockIdx (emu::tl_blockIdx)
#define blockDim (emu::tl_blockDim)
#define gridDim (emu::tl_gridDim)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __syncthreads() emu::syncthreads()
#define __syncwarp(...) emu::syncwarp()
#define __shfl_xor_sync(mask, v, o) emu::shfl_xor((v), (o))
#define DT_DYN_SMEM(T, name) T *name = (T *)emu::dyn_smem()

#define __shared__ static /* blocks run one at a time */
#define __align__(n) alignas(n)
#ifndef __CUDACC__
#define __CUDACC__ 1 /* the project's headers then declare their device helpers */
#endif

using std::isinf;
using std::isnan;
using std::max;
using std::min;
inline float __expf(float x) { return std::exp(x); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, 4);
  return i;
}

/* ---- bf16 ---- */
struct __nv_bfloat16 {
  uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 h) {
  uint32_t u = (uint32_t)h.bits << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {(uint16_t)((u >> 16) | 0x40u)}; /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return {(uint16_t)(u >> 16)};
}

/* ---- WMMA, m16n16k16 ---- */
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

inline float to_f(float x) { return x; }
inline float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }

/* x[r][c]: matrix_a (m, k), matrix_b (k, n), accumulator (m, n) */
template <typename Use, int M, int N, int K, typename T, typename Layout = void> struct fragment {
  float x[16][16];
};

template <typename Use, typename T, typename Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout> &f, const T *p, unsigned ldm) {
  constexpr bool col = std::is_same<Layout, col_major>::value;
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) f.x[r][c] = to_f(col ? p[c * ldm + r] : p[r * ldm + c]);
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p,
                             unsigned ldm, layout_t l) {
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) f.x[r][c] = l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
}
inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f,
                              unsigned ldm, layout_t l) {
  const unsigned lane = emu::tl_tid % 32;
  for (int e = (int)lane; e < 256; e += 32) {
    const int r = e / 16, c = e % 16;
    (l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r][c];
  }
  /* no barrier: as on the GPU, other lanes see these writes only after a
   * __syncwarp of the kernel's own */
}
inline void fill_fragment(fragment<accumulator, 16, 16, 16, float> &f, float v) {
  for (auto &row : f.x)
    for (float &y : row) y = v;
}
template <typename TA, typename LA, typename TB, typename LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float> &d,
              const fragment<matrix_a, 16, 16, 16, TA, LA> &a,
              const fragment<matrix_b, 16, 16, 16, TB, LB> &b,
              const fragment<accumulator, 16, 16, 16, float> &c) {
  float out[16][16];
  for (int m = 0; m < 16; m++)
    for (int n = 0; n < 16; n++) {
      float s = c.x[m][n];
      for (int k = 0; k < 16; k++) s = std::fma(a.x[m][k], b.x[k][n], s);
      out[m][n] = s;
    }
  std::memcpy(d.x, out, sizeof out);
}
} // namespace wmma
} // namespace nvcuda

#endif
