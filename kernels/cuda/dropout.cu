/* dropout.cu: inverted dropout on the GPU as a grid-stride elementwise
 * kernel. The mask comes from dt_dropout_keep (kernels/dropout.h), the same
 * integer hash the CPU reference runs, and the scale is rounded on the host
 * as there, so both backends give the same bits. */
#include "cuda_common.h"
#include "dropout.h"

static __global__ void dropout_kernel(float *y, const float *x, size_t n, uint64_t key,
                                      uint64_t thr, float scale, uint64_t offset) {
  /* __fmul_rn: one correctly rounded multiply, never contracted or
   * approximated whatever the fast-math flags, like the CPU's x * scale */
  DT_GRID_STRIDE(i, n) {
    y[i] = dt_dropout_keep(key, offset + i, thr) ? __fmul_rn(x[i], scale) : 0.0f;
  }
}

/* rows of width elements, row r's counters from offset + r * stride */
static __global__ void dropout_rows_kernel(float *y, const float *x, size_t n, size_t width,
                                           uint64_t stride, uint64_t key, uint64_t thr,
                                           float scale, uint64_t offset) {
  DT_GRID_STRIDE(i, n) {
    uint64_t c = offset + (uint64_t)(i / width) * stride + (uint64_t)(i % width);
    y[i] = dt_dropout_keep(key, c, thr) ? __fmul_rn(x[i], scale) : 0.0f;
  }
}

static void dropout_launch(void *ctx, float *y, const float *x, size_t n, float p, uint64_t seed,
                           uint64_t offset) {
  if (n == 0) return;
  dropout_kernel<<<dt_cuda_blocks(n, DT_CUDA_THREADS), DT_CUDA_THREADS, 0,
                   DT_CUDA_CTX(ctx)->stream>>>(y, x, n, dt_dropout_key(seed),
                                               dt_dropout_threshold(p), dt_dropout_scale(p),
                                               offset);
  CUDA_LAUNCH_CHECK();
}

extern "C" void dt_cuda_dropout_forward(void *ctx, float *out, const float *inp, size_t n,
                                        float p, uint64_t seed, uint64_t offset) {
  dropout_launch(ctx, out, inp, n, p, seed, offset);
}

extern "C" void dt_cuda_dropout_backward(void *ctx, float *dinp, const float *dout, size_t n,
                                         float p, uint64_t seed, uint64_t offset) {
  dropout_launch(ctx, dinp, dout, n, p, seed, offset);
}

extern "C" void dt_cuda_dropout_rows(void *ctx, float *y, const float *x, int rows, size_t width,
                                     size_t stride, float p, uint64_t seed, uint64_t offset) {
  size_t n = (size_t)rows * width;
  if (n == 0) return;
  dropout_rows_kernel<<<dt_cuda_blocks(n, DT_CUDA_THREADS), DT_CUDA_THREADS, 0,
                        DT_CUDA_CTX(ctx)->stream>>>(y, x, n, width, stride, dt_dropout_key(seed),
                                                    dt_dropout_threshold(p),
                                                    dt_dropout_scale(p), offset);
  CUDA_LAUNCH_CHECK();
}
