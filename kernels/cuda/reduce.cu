/* reduce.cu: sum of squares, scaling, bf16 conversions and the uint8 image
 * gather on the GPU.
 * sumsq is a deterministic two-pass reduction in double: per-block partials
 * into the backend's scratch, then one block sums them in a fixed order
 * (no float atomics, so gradient clipping gives the same norm run after run). */
#include "cuda_common.h"
#include "reduce.h"

#define SUMSQ_THREADS 256
#define SUMSQ_FINAL_THREADS 1024

/* part[blockIdx.x] = sum over this block's grid-stride share of x^2 */
static __global__ void sumsq_partial_kernel(double *part, const float *x, size_t n) {
  double s = 0.0;
  DT_GRID_STRIDE(i, n) {
    const double v = x[i];
    s += v * v;
  }
  s = dt_block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

/* out[0] = sum of part[0..nparts) */
static __global__ void sumsq_final_kernel(float *out, const double *part, int nparts) {
  double s = 0.0;
  for (int i = threadIdx.x; i < nparts; i += blockDim.x) s += part[i];
  s = dt_block_sum(s);
  if (threadIdx.x == 0) out[0] = (float)s;
}

static __global__ void scale_kernel(float *x, float a, size_t n) {
  DT_GRID_STRIDE(i, n) x[i] *= a;
}

static __global__ void axpy_kernel(float *y, float a, const float *x, size_t n) {
  DT_GRID_STRIDE(i, n) y[i] = __fmaf_rn(a, x[i], y[i]);
}

/* dt_st's rounding: __float2bfloat16_rn (nearest, ties to even) */
static __global__ void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t n) {
  DT_GRID_STRIDE(i, n) dt_st(dst + i, src[i]);
}

static __global__ void from_bf16_kernel(float *y, const __nv_bfloat16 *x, size_t n,
                                        int accumulate) {
  DT_GRID_STRIDE(i, n) y[i] = accumulate ? y[i] + dt_ld(x + i) : dt_ld(x + i);
}

/* out (N,row) from src (M,row) uint8 rows idx (N) */
static __global__ void gather_u8_normalize_kernel(float *out, const uint8_t *src,
                                                  const int32_t *idx, int row, size_t total,
                                                  float mean, float std) {
  DT_GRID_STRIDE(k, total) {
    const size_t i = k / (size_t)row, j = k % (size_t)row;
    const float v = (float)src[(size_t)idx[i] * (size_t)row + j];
    out[k] = __fdiv_rn(__fdiv_rn(v, 255.0f) - mean, std);
  }
}

static __global__ void col_sum_add_kernel(float *out, const double *part, int cols,
                                          int groups) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  double s = 0.0;
  for (int g = 0; g < groups; g++) s += part[(size_t)g * cols + j];
  out[j] = (float)((double)out[j] + s);
}

double *dt_cuda_col_part(dt_cuda_ctx *c, size_t count) {
  return (double *)dt_cuda_grow(&c->col_part, &c->col_part_cap, count * sizeof(double));
}

void dt_cuda_col_sum_add(dt_cuda_ctx *c, float *out, const double *part, int cols, int groups) {
  col_sum_add_kernel<<<(cols + 255) / 256, 256, 0, c->stream>>>(out, part, cols, groups);
  CUDA_LAUNCH_CHECK();
}

extern "C" void dt_cuda_sumsq(void *ctx, float *out, const float *x, size_t n) {
  dt_cuda_ctx *c = DT_CUDA_CTX(ctx);
  if (n == 0) {
    CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(float), c->stream));
    return;
  }
  /* the grid depends only on n, so the summation order is fixed */
  unsigned blocks = dt_cuda_blocks(n, SUMSQ_THREADS);
  if (blocks > (unsigned)c->scratch_count) blocks = (unsigned)c->scratch_count;
  sumsq_partial_kernel<<<blocks, SUMSQ_THREADS, 0, c->stream>>>(c->scratch, x, n);
  CUDA_LAUNCH_CHECK();
  sumsq_final_kernel<<<1, SUMSQ_FINAL_THREADS, 0, c->stream>>>(out, c->scratch, (int)blocks);
  CUDA_LAUNCH_CHECK();
}

extern "C" void dt_cuda_scale(void *ctx, float *x, float a, size_t n) {
  if (n == 0) return;
  scale_kernel<<<dt_cuda_blocks(n, DT_CUDA_THREADS), DT_CUDA_THREADS, 0,
                 DT_CUDA_CTX(ctx)->stream>>>(x, a, n);
  CUDA_LAUNCH_CHECK();
}

extern "C" void dt_cuda_axpy(void *ctx, float *y, float a, const float *x, size_t n) {
  if (n == 0) return;
  axpy_kernel<<<dt_cuda_blocks(n, DT_CUDA_THREADS), DT_CUDA_THREADS, 0,
                DT_CUDA_CTX(ctx)->stream>>>(y, a, x, n);
  CUDA_LAUNCH_CHECK();
}

extern "C" void dt_cuda_to_bf16(void *ctx, uint16_t *dst, const float *src, size_t n) {
  if (n == 0) return;
  to_bf16_kernel<<<dt_cuda_blocks(n, DT_CUDA_THREADS), DT_CUDA_THREADS, 0,
                   DT_CUDA_CTX(ctx)->stream>>>((__nv_bfloat16 *)dst, src, n);
  CUDA_LAUNCH_CHECK();
}

extern "C" void dt_cuda_from_bf16(void *ctx, float *y, const uint16_t *x, size_t n,
                                  int accumulate) {
  if (n == 0) return;
  from_bf16_kernel<<<dt_cuda_blocks(n, DT_CUDA_THREADS), DT_CUDA_THREADS, 0,
                     DT_CUDA_CTX(ctx)->stream>>>(y, (const __nv_bfloat16 *)x, n, accumulate);
  CUDA_LAUNCH_CHECK();
}

extern "C" void dt_cuda_gather_u8_normalize(void *ctx, float *out, const uint8_t *src,
                                            const int32_t *idx, int n, int row, float mean,
                                            float std) {
  const size_t total = (size_t)(n > 0 ? n : 0) * (size_t)(row > 0 ? row : 0);
  if (total == 0) return;
  gather_u8_normalize_kernel<<<dt_cuda_blocks(total, DT_CUDA_THREADS), DT_CUDA_THREADS, 0,
                               DT_CUDA_CTX(ctx)->stream>>>(out, src, idx, row, total, mean,
                                                           std);
  CUDA_LAUNCH_CHECK();
}
