/* xent.cu: fused softmax + cross-entropy on the GPU, one block per row:
 * max, then sum of exp(x - max) in double, then the loss and (optionally)
 * dlogits in one more pass. exp/log run in double, untouched by the build's
 * --use_fast_math, so the result tracks the fp32 CPU reference closely. */
#include <cuda_bf16.h>
#include <math.h>

#include "cuda_common.h"
#include "xent.h"

#define XENT_THREADS 512

/* The row x (v values) over the block: its max (a NaN wins) and the sum of
 * exp(x - max) in double, both returned to every thread. */
template <typename L>
static __device__ __forceinline__ void row_max_sumexp(const L *x, int v, float *mo, double *so) {
  float m = -INFINITY;
  for (int j = threadIdx.x; j < v; j += blockDim.x) {
    const float u = dt_ld(&x[j]);
    m = (u > m || u != u) ? u : m;
  }
  m = dt_block_max(m);
  double s = 0.0;
  for (int j = threadIdx.x; j < v; j += blockDim.x) s += exp((double)dt_ld(&x[j]) - (double)m);
  *mo = m;
  *so = dt_block_sum(s);
}

/* losses (N), dlogits (N,V) or NULL (may alias logits of its own type),
 * logits (N,V) of type L, targets (N); logits and dlogits rows ld apart,
 * dlogits' columns [V, ld) set to 0. bf16 dlogits are rounded from the
 * fp32 value: the bits of converting fp32 dlogits afterwards. */
template <typename D, typename L>
static __global__ void __launch_bounds__(XENT_THREADS)
    softmax_xent_kernel(float *losses, D *dlogits, const L *logits, const int32_t *targets,
                        int v, int ld, float dscale) {
  const size_t row = blockIdx.x;
  const L *x = logits + row * (size_t)ld;
  const int t = targets[row];
  const bool t_ok = t >= 0 && t < v;
  /* read before any write: dlogits may alias logits (the barriers inside the
   * block reductions below separate every read from the writes) */
  const float xt = t_ok ? dt_ld(&x[t]) : __int_as_float(0x7fc00000); /* NaN: bad target */
  float m;
  double s;
  row_max_sumexp(x, v, &m, &s);

  if (threadIdx.x == 0 && losses) losses[row] = (float)(log(s) - ((double)xt - (double)m));
  if (dlogits) {
    D *d = dlogits + row * (size_t)ld;
    const double inv = 1.0 / s;
    for (int j = threadIdx.x; j < v; j += blockDim.x) {
      const double p = exp((double)dt_ld(&x[j]) - (double)m) * inv;
      dt_st(&d[j], (float)((p - (j == t ? 1.0 : 0.0)) * (double)dscale));
    }
    for (int j = v + threadIdx.x; j < ld; j += blockDim.x) dt_st(&d[j], 0.0f);
  }
}

template <typename D>
static void xent_launch(cudaStream_t st, float *losses, void *dlogits, const void *logits,
                        dt_dtype lt, const int32_t *targets, int n, int v, int ld,
                        float dscale) {
  if (lt == DT_BF16)
    softmax_xent_kernel<D, __nv_bfloat16><<<n, XENT_THREADS, 0, st>>>(
        losses, (D *)dlogits, (const __nv_bfloat16 *)logits, targets, v, ld, dscale);
  else
    softmax_xent_kernel<D, float><<<n, XENT_THREADS, 0, st>>>(
        losses, (D *)dlogits, (const float *)logits, targets, v, ld, dscale);
  CUDA_LAUNCH_CHECK();
}

extern "C" void dt_cuda_softmax_xent(void *ctx, float *losses, float *dlogits, const void *logits,
                                     dt_dtype lt, const int32_t *targets, int n, int v, int ld,
                                     float dscale) {
  if (n <= 0) return;
  xent_launch<float>(DT_CUDA_CTX(ctx)->stream, losses, dlogits, logits, lt, targets, n, v, ld,
                     dscale);
}

void dt_cuda_softmax_xent_bf16(dt_cuda_ctx *c, float *losses, void *dlogits, const void *logits,
                               dt_dtype lt, const int32_t *targets, int n, int v, int ld,
                               float dscale) {
  if (n <= 0) return;
  xent_launch<__nv_bfloat16>(c->stream, losses, dlogits, logits, lt, targets, n, v, ld, dscale);
}

/* Vocabulary-parallel cross-entropy (see kernels.h), one block per row.
 * Step 1: the row's max over this part, the sum of exp(x - max) in double
 * (stored as float, as the CPU does), and the target's logit when this
 * part holds it. */
template <typename L>
static __global__ void __launch_bounds__(XENT_THREADS)
    xent_part_stats_kernel(float *stats, const L *logits, const int32_t *targets, int v, int ld,
                           int v0) {
  const size_t row = blockIdx.x;
  const L *x = logits + row * (size_t)ld;
  float m;
  double s;
  row_max_sumexp(x, v, &m, &s);
  if (threadIdx.x == 0) {
    const long long t = (long long)targets[row] - v0;
    stats[3 * row] = m;
    stats[3 * row + 1] = (float)s;
    stats[3 * row + 2] = t >= 0 && t < v ? dt_ld(&x[t]) : 0.0f;
  }
}

/* Step 2: every thread combines the parts' statistics (a few floats) in
 * part order, as the CPU does; then the loss and this part's dlogits. Each
 * dlogits element is written by the thread that read its logit, so they
 * may alias. */
template <typename L>
static __global__ void __launch_bounds__(XENT_THREADS)
    xent_part_kernel(float *losses, L *dlogits, const L *logits, const int32_t *targets,
                     const float *stats, int parts, int n, int v, int ld, int v0, int vtotal,
                     float dscale) {
  const size_t row = blockIdx.x;
  double lse, xt;
  dt_xent_part_combine(stats, parts, n, (int)row, &lse, &xt);
  const int t = targets[row];
  if (threadIdx.x == 0 && losses)
    losses[row] = t >= 0 && t < vtotal ? (float)(lse - xt) : __int_as_float(0x7fc00000);
  if (!dlogits) return;
  const L *x = logits + row * (size_t)ld;
  L *d = dlogits + row * (size_t)ld;
  for (int j = threadIdx.x; j < v; j += blockDim.x) {
    const double p = exp((double)dt_ld(&x[j]) - lse);
    dt_st(&d[j], (float)((p - (v0 + j == t ? 1.0 : 0.0)) * (double)dscale));
  }
  for (int j = v + threadIdx.x; j < ld; j += blockDim.x) dt_st(&d[j], 0.0f);
}

extern "C" void dt_cuda_softmax_xent_part_stats(void *ctx, float *stats, const void *logits,
                                                dt_dtype lt, const int32_t *targets, int n,
                                                int v, int ld, int v0) {
  if (n <= 0) return;
  cudaStream_t st = DT_CUDA_CTX(ctx)->stream;
  if (lt == DT_BF16)
    xent_part_stats_kernel<__nv_bfloat16><<<n, XENT_THREADS, 0, st>>>(
        stats, (const __nv_bfloat16 *)logits, targets, v, ld, v0);
  else
    xent_part_stats_kernel<float><<<n, XENT_THREADS, 0, st>>>(stats, (const float *)logits,
                                                              targets, v, ld, v0);
  CUDA_LAUNCH_CHECK();
}

extern "C" void dt_cuda_softmax_xent_part(void *ctx, float *losses, void *dlogits,
                                          const void *logits, dt_dtype lt,
                                          const int32_t *targets, const float *stats, int parts,
                                          int n, int v, int ld, int v0, int vtotal,
                                          float dscale) {
  if (n <= 0) return;
  cudaStream_t st = DT_CUDA_CTX(ctx)->stream;
  if (lt == DT_BF16)
    xent_part_kernel<__nv_bfloat16><<<n, XENT_THREADS, 0, st>>>(
        losses, (__nv_bfloat16 *)dlogits, (const __nv_bfloat16 *)logits, targets, stats, parts, n,
        v, ld, v0, vtotal, dscale);
  else
    xent_part_kernel<float><<<n, XENT_THREADS, 0, st>>>(losses, (float *)dlogits,
                                                        (const float *)logits, targets, stats,
                                                        parts, n, v, ld, v0, vtotal, dscale);
  CUDA_LAUNCH_CHECK();
}

/* Label-smoothed variant (see kernels.h): also sums the logits for the mean
 * term; a negative target is padding and gets a zero loss and gradient row.
 * logits and dlogits of type T; dlogits may alias logits (each element is
 * read before it is written, as in softmax_xent_kernel). */
template <typename T>
static __global__ void __launch_bounds__(XENT_THREADS)
    softmax_xent_smooth_kernel(float *losses, T *dlogits, const T *logits,
                               const int32_t *targets, int v, float dscale, float smoothing) {
  const size_t row = blockIdx.x;
  const T *x = logits + row * (size_t)v;
  const int t = targets[row];
  if (t < 0) { /* uniform per block, so no thread skips a barrier below */
    if (threadIdx.x == 0 && losses) losses[row] = 0.0f;
    if (dlogits)
      for (int j = threadIdx.x; j < v; j += blockDim.x) dt_st(&dlogits[row * (size_t)v + j], 0.0f);
    return;
  }
  const float xt = t < v ? dt_ld(&x[t]) : __int_as_float(0x7fc00000);

  float m = -INFINITY;
  for (int j = threadIdx.x; j < v; j += blockDim.x) {
    const float u = dt_ld(&x[j]);
    m = (u > m || u != u) ? u : m;
  }
  m = dt_block_max(m);

  double s = 0.0, xs = 0.0;
  for (int j = threadIdx.x; j < v; j += blockDim.x) {
    const double u = (double)dt_ld(&x[j]) - (double)m;
    s += exp(u);
    xs += u;
  }
  s = dt_block_sum(s);
  xs = dt_block_sum(xs);

  const double eps = smoothing;
  if (threadIdx.x == 0 && losses) {
    const double lse = log(s);
    losses[row] = (float)((1.0 - eps) * (lse - ((double)xt - (double)m)) + eps * (lse - xs / v));
  }
  if (dlogits) {
    T *d = dlogits + row * (size_t)v;
    const double inv = 1.0 / s, off = eps / v;
    for (int j = threadIdx.x; j < v; j += blockDim.x) {
      const double p = exp((double)dt_ld(&x[j]) - (double)m) * inv;
      dt_st(&d[j], (float)((p - (j == t ? 1.0 - eps : 0.0) - off) * (double)dscale));
    }
  }
}

extern "C" void dt_cuda_softmax_xent_smooth(void *ctx, float *losses, void *dlogits,
                                            const void *logits, dt_dtype lt,
                                            const int32_t *targets, int n, int v, float dscale,
                                            float smoothing) {
  if (n <= 0) return;
  cudaStream_t st = DT_CUDA_CTX(ctx)->stream;
  if (lt == DT_BF16)
    softmax_xent_smooth_kernel<__nv_bfloat16><<<n, XENT_THREADS, 0, st>>>(
        losses, (__nv_bfloat16 *)dlogits, (const __nv_bfloat16 *)logits, targets, v, dscale,
        smoothing);
  else
    softmax_xent_smooth_kernel<float><<<n, XENT_THREADS, 0, st>>>(
        losses, (float *)dlogits, (const float *)logits, targets, v, dscale, smoothing);
  CUDA_LAUNCH_CHECK();
}
