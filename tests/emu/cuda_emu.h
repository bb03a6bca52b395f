/* cuda_emu.h: just enough of CUDA to run this project's hand-written kernels
 * on the CPU, so their index arithmetic, masks, tiling and barriers are
 * tested where no GPU is (CI, and most sessions). Each thread of a block is
 * a fiber on the calling thread (see emu::launch; even blocks run their
 * threads first to last, odd ones last to first): __syncthreads and
 * __syncwarp are barriers of the block's and the warp's fibers, and
 * __shfl_xor_sync an exchange through per-thread slots between two warp
 * barriers. WMMA fragments hold the whole 16x16 tile in every lane (the
 * real layout is opaque to kernels anyway); mma_sync multiplies in fp32 in
 * k order, each lane only the share of the tile that its store_matrix_sync
 * writes (elements lane + 32j), with no barrier (the kernel's __syncwarp
 * publishes it, as on the GPU). bf16 is a 16-bit pattern rounded to
 * nearest even.
 *
 * What this cannot show: the GPU's memory model and true concurrency,
 * speed, shared-memory limits, or cuBLAS/cuDNN themselves. Kernels use
 * DT_DYN_SMEM for their dynamic shared memory. C++20. */
#ifndef DT_CUDA_EMU_H
#define DT_CUDA_EMU_H

#define DT_CUDA_EMU 1

#include <algorithm>
#include <ucontext.h>

#include <cstdio>
#include <functional>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "kernels.h" /* dt_bf16_bits: the project's one bf16 rounding */

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

namespace emu {
/* Each thread of a block is a fiber (ucontext) with its own stack, all on
 * the calling OS thread: a fiber runs until it reaches a barrier (or ends),
 * then the next runnable one runs, in thread order. A barrier opens when
 * every live thread of its block (or warp) has arrived; threads that have
 * left the kernel no longer count, as on the GPU. The schedule is
 * deterministic, and a missing barrier shows: threads before it run to the
 * next barrier before later threads have written anything. */
/* Context switches: on x86-64 a dozen instructions that save and restore
 * the callee-saved registers and the stack pointer (glibc's swapcontext
 * also saves the signal mask, a system call per switch); elsewhere
 * ucontext. */
#if defined(__x86_64__)
extern "C" void dt_emu_switch(void **save_sp, void *load_sp);
asm(R"(
  .text
  .weak dt_emu_switch /* one definition per object; the linker keeps one */
  .type dt_emu_switch, @function
dt_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size dt_emu_switch, .-dt_emu_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");
struct ctx_t {
  void *sp = nullptr;
};
inline void ctx_switch(ctx_t &save, ctx_t &load) { dt_emu_switch(&save.sp, load.sp); }
/* a context that starts fn on the given stack */
inline void ctx_init(ctx_t &c, char *stack, size_t size, void (*fn)()) {
  uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
  void **sp = (void **)top;
  *--sp = nullptr;      /* fn's return address: fn never returns */
  *--sp = (void *)fn;   /* where dt_emu_switch's ret goes */
  for (int i = 0; i < 6; i++) *--sp = nullptr; /* rbp rbx r12..r15 */
  c.sp = sp;
}
#else
struct ctx_t {
  ucontext_t uc;
};
inline void ctx_switch(ctx_t &save, ctx_t &load) { swapcontext(&save.uc, &load.uc); }
inline void ctx_init(ctx_t &c, char *stack, size_t size, void (*fn)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, fn, 0);
}
#endif

struct fiber {
  ctx_t ctx;
  std::unique_ptr<char[]> stack; /* untouched until used */
  bool done = false, blocked = false;
  int bar = -1; /* the barrier it waits at: 0 block, 1 + w warp w */
};

struct barrier_state {
  int live = 0, arrived = 0;
};

struct block_state {
  unsigned nthreads;
  std::vector<fiber> *fibers;
  barrier_state block_bar;
  std::vector<barrier_state> warp_bar;
  std::vector<uint64_t> slots; /* one shuffle slot per thread */
  std::vector<unsigned char> smem;
  bool synced = false; /* a barrier or shuffle was used */
  bool plain = false;  /* threads run as plain calls: no barrier allowed */
  ctx_t sched;
  block_state(unsigned n, size_t shm) : nthreads(n), warp_bar((n + 31) / 32), slots(n), smem(shm + 128) {}
  void reset() {
    block_bar = {(int)nthreads, 0};
    for (unsigned w = 0; w < warp_bar.size(); w++)
      warp_bar[w] = {(int)std::min(32u, nthreads - 32 * w), 0};
  }
};
inline dim3 tl_threadIdx, tl_blockIdx, tl_blockDim, tl_gridDim;
inline block_state *tl_block;
inline unsigned tl_tid; /* linear thread index in the block */

#if defined(__SANITIZE_ADDRESS__)
#define DT_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DT_EMU_ASAN 1
#endif
#endif
#ifdef DT_EMU_ASAN
}
extern "C" void __sanitizer_start_switch_fiber(void **, const void *, size_t);
extern "C" void __sanitizer_finish_switch_fiber(void *, const void **, size_t *);
namespace emu {
#endif

#ifdef DT_EMU_ASAN
inline const void *sched_stack; /* the scheduler's stack, as ASan reports it */
inline size_t sched_stack_size;
#endif
constexpr size_t fiber_stack = 256 * 1024;

inline void *dyn_smem() {
  uintptr_t p = (uintptr_t)tl_block->smem.data();
  return (void *)((p + 127) & ~(uintptr_t)127);
}

/* from fiber t back to the scheduler */
inline void to_scheduler(bool finished) {
  block_state *st = tl_block;
  fiber &f = (*st->fibers)[tl_tid];
#ifdef DT_EMU_ASAN
  void *fake = nullptr;
  __sanitizer_start_switch_fiber(finished ? nullptr : &fake, sched_stack, sched_stack_size);
  ctx_switch(f.ctx, st->sched);
  __sanitizer_finish_switch_fiber(fake, &sched_stack, &sched_stack_size);
#else
  (void)finished;
  ctx_switch(f.ctx, st->sched);
#endif
}

/* arrive at barrier id (0 block, 1 + w warp w); opens it for everyone
 * waiting when this is the last live thread */
inline void release(block_state *st, int id) {
  for (fiber &g : *st->fibers)
    if (g.blocked && g.bar == id) g.blocked = false, g.bar = -1;
}
inline void arrive(int id) {
  block_state *st = tl_block;
  if (st->plain) {
    std::fprintf(stderr, "cuda_emu: a kernel reached a barrier in block (%u,%u,%u) but not in "
                 "its first block\n", tl_blockIdx.x, tl_blockIdx.y, tl_blockIdx.z);
    std::abort();
  }
  st->synced = true;
  barrier_state &b = id == 0 ? st->block_bar : st->warp_bar[id - 1];
  if (++b.arrived == b.live) {
    b.arrived = 0;
    release(st, id);
    return;
  }
  fiber &f = (*st->fibers)[tl_tid];
  f.blocked = true, f.bar = id;
  to_scheduler(false);
}
/* a thread leaving the kernel stops counting for its block's and warp's barriers */
inline void leave(block_state *st, unsigned t) {
  for (int id : {0, 1 + (int)(t / 32)}) {
    barrier_state &b = id == 0 ? st->block_bar : st->warp_bar[id - 1];
    b.live--;
    if (b.arrived > 0 && b.arrived == b.live) b.arrived = 0, release(st, id);
  }
}
inline void syncthreads() { arrive(0); }
inline void syncwarp() { arrive(1 + (int)(tl_tid / 32)); }

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

inline std::function<void()> *tl_body; /* this launch's kernel call */

inline void fiber_main() {
#ifdef DT_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &sched_stack, &sched_stack_size);
#endif
  (*tl_body)();
  block_state *st = tl_block;
  (*st->fibers)[tl_tid].done = true;
  leave(st, tl_tid);
  to_scheduler(true);
}

inline std::vector<fiber> &fiber_pool(unsigned n) {
  static std::vector<fiber> pool;
  if (pool.size() < n) pool.resize(n);
  for (unsigned t = 0; t < n; t++)
    if (!pool[t].stack) pool[t].stack.reset(new char[fiber_stack]);
  return pool;
}

/* Runs kernel(args...) over grid x block, one block at a time; warps are
 * formed from the linear thread index x + y*bx + z*bx*by, as on the GPU. */
template <typename... P>
void launch(dim3 grid, dim3 block, size_t shm, void (*kernel)(P...),
            typename std::type_identity<P>::type... args) { /* converted at the call, as <<<>>> */
  const unsigned n = block.x * block.y * block.z;
  if (n == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  block_state st(n, shm);
  std::vector<fiber> &fib = fiber_pool(n);
  st.fibers = &fib;
  std::function<void()> body = [&] { kernel(args...); };
  tl_body = &body, tl_block = &st, tl_blockDim = block, tl_gridDim = grid;
  for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
      for (unsigned bx = 0; bx < grid.x; bx++) {
        tl_blockIdx = dim3(bx, by, bz);
        if (st.plain) { /* see below */
          for (unsigned t = 0; t < n; t++) {
            tl_tid = t;
            tl_threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
            body();
          }
          continue;
        }
        st.reset();
        for (unsigned t = 0; t < n; t++) {
          fiber &f = fib[t];
          f.done = f.blocked = false, f.bar = -1;
          ctx_init(f.ctx, f.stack.get(), fiber_stack, fiber_main);
        }
        /* odd blocks run their threads last to first: a barrier missing
         * between a write and a read shows whichever thread order it
         * depends on */
        const bool reverse = (bx + by + bz) & 1u;
        unsigned left = n;
        while (left > 0) {
          bool ran = false;
          for (unsigned i = 0; i < n; i++) {
            const unsigned t = reverse ? n - 1 - i : i;
            fiber &f = fib[t];
            if (f.done || f.blocked) continue;
            tl_tid = t;
            tl_threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
#ifdef DT_EMU_ASAN
            void *fake = nullptr;
            __sanitizer_start_switch_fiber(&fake, f.stack.get(), fiber_stack);
            ctx_switch(st.sched, f.ctx);
            __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
            ctx_switch(st.sched, f.ctx);
#endif
            ran = true;
            if (f.done) left--;
          }
          if (!ran) {
            std::fprintf(stderr, "cuda_emu: block (%u,%u,%u): every live thread waits at a "
                         "barrier the others never reach\n", bx, by, bz);
            std::abort();
          }
        }
        /* a kernel whose first block used no barrier, shuffle or dynamic
         * shared memory (an elementwise one) runs its other blocks' threads
         * as plain calls: they cannot see each other anyway */
        st.plain = !st.synced && shm == 0;
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
inline float __bfloat162float(__nv_bfloat16 h) { return dt_bf16_value(h.bits); }
inline __nv_bfloat16 __float2bfloat16_rn(float x) {
  return {dt_bf16_bits(x)};
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
/* each lane computes only the elements e = lane + 32j of the product, the
 * ones its store_matrix_sync writes (the rest of its copy is stale) */
template <typename TA, typename LA, typename TB, typename LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float> &d,
              const fragment<matrix_a, 16, 16, 16, TA, LA> &a,
              const fragment<matrix_b, 16, 16, 16, TB, LB> &b,
              const fragment<accumulator, 16, 16, 16, float> &c) {
  const unsigned lane = emu::tl_tid % 32;
  for (int e = (int)lane; e < 256; e += 32) {
    const int m = e / 16, n = e % 16;
    float acc = c.x[m][n];
    for (int k = 0; k < 16; k++) acc = std::fma(a.x[m][k], b.x[k][n], acc);
    d.x[m][n] = acc;
  }
}
} // namespace wmma
} // namespace nvcuda

#endif
