/* norm.cu: layer norm on the GPU. Forward and dinp: one block per row, row
 * statistics and row sums in double through dt_block_sum (fixed order).
 * dweight/dbias: one block per 32 columns, each column summed over the rows
 * in a fixed order in double, so every result is the same run after run. */
#include <cuda_bf16.h>
#include <math.h>

#include "cuda_common.h"
#include "norm.h"

#define LN_THREADS 256
#define LN_COLS 32 /* dweight/dbias block: LN_COLS columns x LN_ROWS row groups */
#define LN_ROWS 8

/* One row: res (C) = a + b first when RES, then out (of type T), mean, rstd
 * from x = res or inp. */
template <bool RES, typename T>
static __global__ void __launch_bounds__(LN_THREADS)
    layernorm_fwd_kernel(float *res_out, T *out, float *mean, float *rstd, const float *inp,
                         const float *a, const float *b, const float *weight, const float *bias,
                         int c, float eps) {
  const size_t row = (size_t)blockIdx.x * c;
  /* with RES each thread reads back only the elements it wrote itself, so
   * res_out aliasing a or b is safe */
  const float *x = RES ? res_out + row : inp + row;
  double s = 0.0;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    if (RES) res_out[row + j] = a[row + j] + b[row + j];
    s += x[j];
  }
  const double m = dt_block_sum(s) / c;
  double v = 0.0;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    const double d = x[j] - m;
    v += d * d;
  }
  v = dt_block_sum(v) / c;
  const float mf = (float)m, sf = (float)(1.0 / sqrt(v + (double)eps));
  T *y = out + row;
  for (int j = threadIdx.x; j < c; j += blockDim.x)
    dt_st(&y[j], (x[j] - mf) * sf * weight[j] + bias[j]);
  if (threadIdx.x == 0) {
    if (mean) mean[blockIdx.x] = mf;
    if (rstd) rstd[blockIdx.x] = sf;
  }
}

/* dinp (row) += (w*dy - mean(w*dy) - xhat * mean(w*dy*xhat)) * rstd */
static __global__ void __launch_bounds__(LN_THREADS)
    layernorm_bwd_dinp_kernel(float *dinp, const float *dout, const float *inp,
                              const float *weight, const float *mean, const float *rstd, int c) {
  const size_t row = (size_t)blockIdx.x * c;
  const float *x = inp + row, *dy = dout + row;
  const float m = mean[blockIdx.x], s = rstd[blockIdx.x];
  double dn = 0.0, dnx = 0.0;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    const float xhat = (x[j] - m) * s, g = weight[j] * dy[j];
    dn += g;
    dnx += (double)g * xhat;
  }
  dn = dt_block_sum(dn) / c;
  dnx = dt_block_sum(dnx) / c;
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    const float xhat = (x[j] - m) * s, g = weight[j] * dy[j];
    dinp[row + j] += (float)(((double)g - dn - xhat * dnx) * s);
  }
}

/* part (2,G,C): rows g of [0] and [1] = the sums over row group g of
 * dout * xhat and of dout (dweight's and dbias's terms; see
 * dt_cuda_col_groups); block (LN_COLS, LN_ROWS) */
static __global__ void layernorm_bwd_params_kernel(double *part, const float *dout,
                                                   const float *inp, const float *mean,
                                                   const float *rstd, int n, int c) {
  __shared__ double part_w[LN_ROWS][LN_COLS], part_b[LN_ROWS][LN_COLS];
  const int col = blockIdx.x * LN_COLS + threadIdx.x, g = blockIdx.y, G = gridDim.y;
  DT_COL_GROUP(n, g, G, lo, hi);
  double sw = 0.0, sb = 0.0;
  if (col < c)
    for (int i = lo + threadIdx.y; i < hi; i += LN_ROWS) {
      const size_t k = (size_t)i * c + col;
      const float xhat = (inp[k] - mean[i]) * rstd[i];
      sw += (double)dout[k] * xhat;
      sb += dout[k];
    }
  part_w[threadIdx.y][threadIdx.x] = sw;
  part_b[threadIdx.y][threadIdx.x] = sb;
  __syncthreads();
  if (threadIdx.y == 0 && col < c) {
    for (int r = 1; r < LN_ROWS; r++) { /* fixed order: deterministic */
      sw += part_w[r][threadIdx.x];
      sb += part_b[r][threadIdx.x];
    }
    part[(size_t)g * c + col] = sw;
    part[((size_t)G + g) * c + col] = sb;
  }
}

template <bool RES>
static void layernorm_fwd(void *ctx, float *res_out, void *out, dt_dtype ot, float *mean,
                          float *rstd, const float *inp, const float *a, const float *b,
                          const float *weight, const float *bias, int n, int c, float eps) {
  if (n <= 0 || c <= 0) return;
  cudaStream_t st = DT_CUDA_CTX(ctx)->stream;
  if (ot == DT_BF16)
    layernorm_fwd_kernel<RES, __nv_bfloat16><<<n, LN_THREADS, 0, st>>>(
        res_out, (__nv_bfloat16 *)out, mean, rstd, inp, a, b, weight, bias, c, eps);
  else
    layernorm_fwd_kernel<RES, float><<<n, LN_THREADS, 0, st>>>(res_out, (float *)out, mean, rstd,
                                                                inp, a, b, weight, bias, c, eps);
  CUDA_LAUNCH_CHECK();
}

extern "C" void dt_cuda_layernorm_forward(void *ctx, void *out, dt_dtype ot, float *mean,
                                          float *rstd, const float *inp, const float *weight,
                                          const float *bias, int n, int c, float eps) {
  layernorm_fwd<false>(ctx, NULL, out, ot, mean, rstd, inp, NULL, NULL, weight, bias, n, c, eps);
}

extern "C" void dt_cuda_residual_layernorm_forward(void *ctx, float *res_out, void *out,
                                                   dt_dtype ot, float *mean, float *rstd,
                                                   const float *a, const float *b,
                                                   const float *weight, const float *bias, int n,
                                                   int c, float eps) {
  layernorm_fwd<true>(ctx, res_out, out, ot, mean, rstd, NULL, a, b, weight, bias, n, c, eps);
}

extern "C" void dt_cuda_layernorm_backward(void *ctx, float *dinp, float *dweight, float *dbias,
                                           const float *dout, const float *inp,
                                           const float *weight, const float *mean,
                                           const float *rstd, int n, int c) {
  if (n <= 0 || c <= 0) return;
  cudaStream_t st = DT_CUDA_CTX(ctx)->stream;
  layernorm_bwd_dinp_kernel<<<n, LN_THREADS, 0, st>>>(dinp, dout, inp, weight, mean, rstd, c);
  CUDA_LAUNCH_CHECK();
  dt_cuda_ctx *cc = DT_CUDA_CTX(ctx);
  const int G = dt_cuda_col_groups(n);
  double *part = dt_cuda_col_part(cc, 2 * (size_t)G * c);
  layernorm_bwd_params_kernel<<<dim3((c + LN_COLS - 1) / LN_COLS, G), dim3(LN_COLS, LN_ROWS), 0,
                                st>>>(part, dout, inp, mean, rstd, n, c);
  CUDA_LAUNCH_CHECK();
  dt_cuda_col_sum_add(cc, dweight, part, c, G);
  dt_cuda_col_sum_add(cc, dbias, part + (size_t)G * c, c, G);
}
