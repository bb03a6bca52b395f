/* cuda_common.h: private to the CUDA backend: the context every CUDA kernel
 * receives as `void *ctx`, the error checkers, launch helpers and small
 * device helpers shared by the kernels/cuda sources and runtime/backend_cuda.cu.
 *
 * Precision note: the fp32 kernels must agree with the CPU reference, so
 * they do their transcendentals in double and use the _rn intrinsics where a
 * correctly rounded float division or square root matters; that stays right
 * even if --use_fast_math is turned on for future bf16 kernels. */
#ifndef DT_KERNELS_CUDA_COMMON_H
#define DT_KERNELS_CUDA_COMMON_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stddef.h>

#include "dt.h"
#include "checks.h"
#include "elem.cuh"
#include "kernels.h" /* dt_dtype */

typedef struct dt_cuda_ctx {
  cudaStream_t stream;   /* every kernel and copy of this backend runs here */
  cublasHandle_t cublas; /* bound to stream, CUBLAS_DEFAULT_MATH (no TF32) */
  cublasLtHandle_t lt;
  cudnnHandle_t cudnn;   /* bound to stream */
  int device;
  int sm_count;
  size_t smem_optin;     /* the most dynamic shared memory a block may ask for */
  /* device scratch for deterministic two-pass reductions (sumsq); used only
   * in stream order, so one buffer per backend is enough */
  double *scratch;
  int scratch_count;     /* doubles in scratch */
  /* DT_PREC_BF16: the linear layers' operands, rounded to bf16 here before
   * each GEMM (grown on demand, used in stream order) */
  int matmul_bf16;
  void *bf16_buf[3];
  size_t bf16_cap[3];    /* bytes */
  /* fp32 scratch of the unfused bf16-output linear paths */
  void *f32_buf[2];
  size_t f32_cap[2];     /* bytes */
  /* set_weights: the parameters [wsrc, wsrc+wn) and their bf16 copy w16,
   * made on first use (w16_fresh) */
  const float *wsrc;
  size_t wn;
  void *w16;
  size_t w16_cap;        /* bytes */
  int w16_fresh;
  /* linear layers: DT_GEMM_* from DTRAIN_GEMM at creation; cuBLASLt's
   * workspace (allocated on first use); whether the fallback was reported */
  int gemm_mode;
  void *lt_ws;
  size_t lt_ws_bytes;
  int lt_warned;
  void *lt_plans;        /* matmul.cu's cache of cuBLASLt descriptors and algorithms */
  int lt_next;           /* the plan slot to fill (or evict) next */
  /* attention kernels (DT_ATT_*, from DTRAIN_ATTENTION at creation); att_d
   * is flash backward's rowsum(dout * out), grown on demand */
  int att_impl;
  void *att_d;
  size_t att_d_cap;      /* bytes */
  void *col_part;        /* partial column sums of dt_cuda_col_groups row groups */
  size_t col_part_cap;   /* bytes */
  void *att_f32;         /* fp32 copies of bf16 q, k, v, out for the fp32 kernels */
  size_t att_f32_cap;    /* bytes */
} dt_cuda_ctx;

/* DTRAIN_GEMM: auto (cuBLASLt's fused epilogues where it has an algorithm,
 * else cuBLAS and separate kernels), cublas (never cuBLASLt), lt (cuBLASLt
 * required wherever the epilogue is used: a missing algorithm is fatal) */
enum { DT_GEMM_AUTO = 0, DT_GEMM_CUBLAS = 1, DT_GEMM_LT = 2 };

#define DT_CUDA_CTX(ctx) ((dt_cuda_ctx *)(ctx))

/* *buf with room for `bytes`, reallocated when *cap (bytes) is smaller;
 * used in stream order, and cudaFree waits for kernels still reading the
 * old buffer. */
static inline void *dt_cuda_grow(void **buf, size_t *cap, size_t bytes) {
  if (*cap < bytes) {
    /* by half again at least: shapes that grow call after call (the
     * Transformer's token-count batches) reallocate, and so synchronise
     * the device, a few times rather than at every new size */
    if (*cap && bytes < *cap + *cap / 2) bytes = *cap + *cap / 2;
    CUDA_CHECK(cudaFree(*buf));
    CUDA_CHECK(cudaMalloc(buf, bytes));
    *cap = bytes;
  }
  return *buf;
}

/* Parameter gradients that sum a (N,C) tensor over its rows (bias, LayerNorm
 * weight and bias) run in two passes: row groups of about 256 rows, at most
 * 64, each block summing 32 columns of one group into a double partial,
 * then dt_cuda_col_sum_add adds the partials in group order. One pass had
 * only C/32 blocks (24 for C = 768) walking every row. The grouping depends
 * on N alone, so the result does not change from run to run. */
static inline int dt_cuda_col_groups(int n) {
  const int g = (n + 255) / 256;
  return g < 1 ? 1 : g > 64 ? 64 : g;
}
/* row group g of G: rows [lo, hi) of n */
#define DT_COL_GROUP(n, g, G, lo, hi)                       \
  const int lo = (int)((long long)(n) * (g) / (G)),         \
            hi = (int)((long long)(n) * ((g) + 1) / (G))
/* Room for `count` doubles of partial sums (in stream order). */
double *dt_cuda_col_part(dt_cuda_ctx *c, size_t count);
/* out (C) += the sum over g < G of part (G,C), in order (reduce.cu) */
void dt_cuda_col_sum_add(dt_cuda_ctx *c, float *out, const double *part, int cols, int groups);

/* A kernel's dynamic shared memory, 128-byte aligned (WMMA wants 32). A
 * macro so that tests/emu can give each emulated block its own. */
#ifndef DT_DYN_SMEM
#define DT_DYN_SMEM(T, name) extern __shared__ __align__(128) T name[]
#endif

#define CUBLAS_CHECK(x)                                                                     \
  do {                                                                                      \
    cublasStatus_t s_ = (x);                                                                \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                                        \
      dt_fatal("cuBLAS", cublasGetStatusString(s_), __FILE__, __LINE__, __func__, #x);    \
  } while (0)

#define CUDNN_CHECK(x)                                                             \
  do {                                                                             \
    cudnnStatus_t s_ = (x);                                                        \
    if (s_ != CUDNN_STATUS_SUCCESS)                                                \
      dt_fatal("cuDNN", cudnnGetErrorString(s_), __FILE__, __LINE__, __func__, #x); \
  } while (0)

/* After every kernel launch: catches bad launch configurations at once
 * (faults inside the kernel surface at the next synchronising call). */
#define CUDA_LAUNCH_CHECK()                                                        \
  do {                                                                             \
    cudaError_t e_ = cudaGetLastError();                                           \
    if (e_ != cudaSuccess)                                                         \
      dt_fatal("CUDA", cudaGetErrorString(e_), __FILE__, __LINE__, __func__,       \
               "kernel launch");                                                   \
  } while (0)

/* Elementwise kernels use grid-stride loops over size_t indices with a
 * bounded grid, so any n works with one launch. */
#define DT_CUDA_THREADS 256
static inline unsigned dt_cuda_blocks(size_t n, int threads) {
  size_t b = (n + (size_t)threads - 1) / (size_t)threads;
  if (b < 1) b = 1;
  if (b > 65535u * 16u) b = 65535u * 16u;
  return (unsigned)b;
}

#define DT_GRID_STRIDE(i, n)                                                    \
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);       \
       i += (size_t)blockDim.x * gridDim.x)

/* Row-major GEMM through column-major cuBLAS, in true fp32:
 *   C (M,N) = alpha * op(A) @ op(B) + beta * C
 * A is stored (M,K) row-major, or (K,M) when ta; B is (K,N), or (N,K) when tb.
 * A row-major X is the column-major X^T, so C^T = op(B)^T op(A)^T is one
 * column-major call with the operands swapped. */
void dt_cuda_gemm_rm(dt_cuda_ctx *c, int ta, int tb, int m, int n, int k, float alpha,
                     const float *a, const float *b, float beta, float *out);
/* The same for `batch` independent products at the given element strides
 * (a stride of 0 reuses one operand for every product). */
void dt_cuda_gemm_rm_batched(dt_cuda_ctx *c, int ta, int tb, int m, int n, int k, float alpha,
                             const float *a, long long stride_a, const float *b,
                             long long stride_b, float beta, float *out, long long stride_c,
                             int batch);

/* x (n, fp32) rounded into out (n, bf16), in stream order (matmul.cu) */
void dt_cuda_to_bf16(dt_cuda_ctx *c, void *out, const float *x, size_t n);

/* softmax_xent (kernels.h) with dlogits (N,V), rows ld apart, written in
 * bf16 (xent.cu); dlogits may alias bf16 logits only */
void dt_cuda_softmax_xent_bf16(dt_cuda_ctx *c, float *losses, void *dlogits, const void *logits,
                               dt_dtype lt, const int32_t *targets, int n, int v, int ld,
                               float dscale);

/* Frees matmul.cu's cuBLASLt plans (backend destruction). */
#ifdef __cplusplus
extern "C"
#endif
void dt_cuda_lt_plans_free(dt_cuda_ctx *c);

#ifdef __CUDACC__
/* Block-wide sum of a double; every thread gets the result. blockDim.x must
 * be a multiple of 32 and at most 1024. Reuses its shared buffer, so it
 * starts with a barrier and may be called repeatedly. */
static __device__ __forceinline__ double dt_block_sum(double v) {
  __shared__ double warp_part[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) warp_part[warp] = v;
  __syncthreads();
  double s = 0.0;
  for (int w = 0; w < nwarps; w++) s += warp_part[w]; /* fixed order: deterministic */
  return s;
}

/* Block-wide max of a float; every thread gets the result (NaN-propagating). */
static __device__ __forceinline__ float dt_block_max(float v) {
  __shared__ float warp_part[32];
  for (int o = 16; o > 0; o >>= 1) {
    float u = __shfl_xor_sync(0xffffffffu, v, o);
    v = (u > v || u != u) ? u : v;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) warp_part[warp] = v;
  __syncthreads();
  float m = warp_part[0];
  for (int w = 1; w < nwarps; w++) {
    float u = warp_part[w];
    m = (u > m || u != u) ? u : m;
  }
  return m;
}
#endif

#endif
