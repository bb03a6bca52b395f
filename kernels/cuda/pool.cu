/* pool.cu: max and average pooling on the GPU, direct kernels. Backward
 * passes are gathers (one thread per input element, visiting the windows
 * that contain it in row-major order), so overlapping windows (stride < k)
 * need no atomics and the sums have a fixed order. */
#include "cuda_common.h"
#include "pool.h"

/* Index of the max of window (oh, ow) within its (H,W) plane; ties go to the
 * first element in row-major order (strict >), and the first NaN wins so
 * NaNs propagate, as on every backend. */
static __device__ __forceinline__ int window_argmax(const float *plane, const dt_pool2d_shape &s,
                                                    int oh, int ow) {
  const int y0 = oh * s.stride, x0 = ow * s.stride;
  int best = y0 * s.w + x0;
  float bv = plane[best];
  for (int ky = 0; ky < s.k; ky++)
    for (int kx = 0; kx < s.k; kx++) {
      const int j = (y0 + ky) * s.w + x0 + kx;
      const float v = plane[j];
      if (v > bv || (isnan(v) && !isnan(bv))) {
        bv = v;
        best = j;
      }
    }
  return best;
}

/* The windows containing input row y: oh in [lo, hi]. */
static __device__ __forceinline__ void window_range(int y, int k, int stride, int out,
                                                    int *lo, int *hi) {
  *lo = y < k ? 0 : (y - k) / stride + 1;
  *hi = DT_MIN(y / stride, out - 1);
}

static __global__ void maxpool_fwd_kernel(float *out, const float *inp, dt_pool2d_shape s) {
  const size_t total = (size_t)s.n * s.c * s.oh * s.ow;
  DT_GRID_STRIDE(idx, total) {
    const int ow = (int)(idx % s.ow), oh = (int)((idx / s.ow) % s.oh);
    const size_t plane = idx / ((size_t)s.oh * s.ow); /* n*C + c */
    const float *p = inp + plane * s.h * s.w;
    out[idx] = p[window_argmax(p, s, oh, ow)];
  }
}

static __global__ void maxpool_bwd_kernel(float *dinp, const float *dout, const float *inp,
                                          dt_pool2d_shape s) {
  const size_t total = (size_t)s.n * s.c * s.h * s.w;
  DT_GRID_STRIDE(idx, total) {
    const int x = (int)(idx % s.w), y = (int)((idx / s.w) % s.h);
    const size_t plane = idx / ((size_t)s.h * s.w);
    const float *p = inp + plane * s.h * s.w;
    const float *d = dout + plane * s.oh * s.ow;
    const int me = y * s.w + x;
    int oh0, oh1, ow0, ow1;
    window_range(y, s.k, s.stride, s.oh, &oh0, &oh1);
    window_range(x, s.k, s.stride, s.ow, &ow0, &ow1);
    float g = 0.0f;
    for (int oh = oh0; oh <= oh1; oh++)
      for (int ow = ow0; ow <= ow1; ow++)
        if (window_argmax(p, s, oh, ow) == me) g += d[oh * s.ow + ow];
    dinp[idx] = g;
  }
}

static __global__ void avgpool_fwd_kernel(float *out, const float *inp, dt_pool2d_shape s) {
  const size_t total = (size_t)s.n * s.c * s.oh * s.ow;
  const float kk = (float)(s.k * s.k);
  DT_GRID_STRIDE(idx, total) {
    const int ow = (int)(idx % s.ow), oh = (int)((idx / s.ow) % s.oh);
    const size_t plane = idx / ((size_t)s.oh * s.ow);
    const float *p = inp + plane * s.h * s.w + (size_t)(oh * s.stride) * s.w + ow * s.stride;
    float sum = 0.0f;
    for (int ky = 0; ky < s.k; ky++)
      for (int kx = 0; kx < s.k; kx++) sum += p[ky * s.w + kx];
    out[idx] = __fdiv_rn(sum, kk); /* exact division despite fast-math */
  }
}

static __global__ void avgpool_bwd_kernel(float *dinp, const float *dout, dt_pool2d_shape s) {
  const size_t total = (size_t)s.n * s.c * s.h * s.w;
  const float kk = (float)(s.k * s.k);
  DT_GRID_STRIDE(idx, total) {
    const int x = (int)(idx % s.w), y = (int)((idx / s.w) % s.h);
    const size_t plane = idx / ((size_t)s.h * s.w);
    const float *d = dout + plane * s.oh * s.ow;
    int oh0, oh1, ow0, ow1;
    window_range(y, s.k, s.stride, s.oh, &oh0, &oh1);
    window_range(x, s.k, s.stride, s.ow, &ow0, &ow1);
    float g = 0.0f;
    for (int oh = oh0; oh <= oh1; oh++)
      for (int ow = ow0; ow <= ow1; ow++) g += __fdiv_rn(d[oh * s.ow + ow], kk);
    dinp[idx] = g;
  }
}

/* Launch `kern` over `total` elements on the context's stream. */
#define POOL_LAUNCH(ctx, total, kern, ...)                                               \
  do {                                                                                   \
    const size_t n_ = (total);                                                           \
    if (n_ == 0) break;                                                                  \
    kern<<<dt_cuda_blocks(n_, DT_CUDA_THREADS), DT_CUDA_THREADS, 0,                      \
           DT_CUDA_CTX(ctx)->stream>>>(__VA_ARGS__);                                     \
    CUDA_LAUNCH_CHECK();                                                                 \
  } while (0)

static size_t pool_out_count(const dt_pool2d_shape *s) {
  if (s->oh <= 0 || s->ow <= 0) return 0;
  return (size_t)s->n * s->c * s->oh * s->ow;
}

/* Without any window every input gradient is zero; the gather kernels write
 * them, so only that degenerate case needs this. */
static int pool_no_windows(void *ctx, float *dinp, const dt_pool2d_shape *s) {
  if (pool_out_count(s) > 0) return 0;
  const size_t in = (size_t)s->n * s->c * s->h * s->w;
  if (in) CUDA_CHECK(cudaMemsetAsync(dinp, 0, sizeof(float) * in, DT_CUDA_CTX(ctx)->stream));
  return 1;
}

extern "C" void dt_cuda_maxpool2d_forward(void *ctx, float *out, const float *inp,
                                          const dt_pool2d_shape *s) {
  POOL_LAUNCH(ctx, pool_out_count(s), maxpool_fwd_kernel, out, inp, *s);
}

extern "C" void dt_cuda_maxpool2d_backward(void *ctx, float *dinp, const float *dout,
                                           const float *inp, const dt_pool2d_shape *s) {
  if (pool_no_windows(ctx, dinp, s)) return;
  POOL_LAUNCH(ctx, (size_t)s->n * s->c * s->h * s->w, maxpool_bwd_kernel, dinp, dout, inp, *s);
}

extern "C" void dt_cuda_avgpool2d_forward(void *ctx, float *out, const float *inp,
                                          const dt_pool2d_shape *s) {
  POOL_LAUNCH(ctx, pool_out_count(s), avgpool_fwd_kernel, out, inp, *s);
}

extern "C" void dt_cuda_avgpool2d_backward(void *ctx, float *dinp, const float *dout,
                                           const dt_pool2d_shape *s) {
  if (pool_no_windows(ctx, dinp, s)) return;
  POOL_LAUNCH(ctx, (size_t)s->n * s->c * s->h * s->w, avgpool_bwd_kernel, dinp, dout, *s);
}
