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
#include <barrier>
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
struct block_state {
  unsigned nthreads;
  std::barrier<> block_bar;
  std::vector<std::unique_ptr<std::barrier<>>> warp_bar;
  std::vector<uint64_t> slots; /* one shuffle slot per thread */
  std::vector<unsigned char> smem;
  block_state(unsigned n, size_t shm) : nthreads(n), block_bar((std::ptrdiff_t)n), slots(n), smem(shm + 128) {
    for (unsigned w = 0; w < (n + 31) / 32; w++)
      warp_bar.emplace_back(new std::barrier<>((std::ptrdiff_t)std::min(32u, n - 32 * w)));
  }
};
inline thread_local dim3 tl_threadIdx, tl_blockIdx, tl_blockDim, tl_gridDim;
inline thread_local block_state *tl_block;

inline void *dyn_smem() {
  uintptr_t p = (uintptr_t)tl_block->smem.data();
  return (void *)((p + 127) & ~(uintptr_t)127);
}
inline void syncthreads() { tl_block->block_bar.arrive_and_wait(); }
inline void syncwarp() { tl_block->warp_bar[tl_threadIdx.x / 32]->arrive_and_wait(); }

template <typename T> T shfl_xor(T v, int lanemask) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a wide type");
  const unsigned me = tl_threadIdx.x, other = me ^ (unsigned)lanemask;
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

/* Runs kernel(args...) over grid x block, one block at a time, each block's
 * threads concurrently. */
template <typename K, typename... A>
void launch(dim3 grid, dim3 block, size_t shm, K kernel, A... args) {
  for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
      for (unsigned bx = 0; bx < grid.x; bx++) {
        block_state st(block.x, shm);
        std::vector<std::thread> th;
        for (unsigned t = 0; t < block.x; t++)
          th.emplace_back([&, t] {
            tl_threadIdx = dim3(t, 0, 0), tl_blockIdx = dim3(bx, by, bz);
            tl_blockDim = block, tl_gridDim = grid, tl_block = &st;
            kernel(args...);
          });
        for (auto &x : th) x.join();
      }
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

using std::max;
using std::min;
inline float __expf(float x) { return std::exp(x); }

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
  const unsigned lane = threadIdx.x % 32;
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
