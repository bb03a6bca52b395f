/* reduce.c: fp32 reference reductions and small elementwise ops. */
#include <math.h>

#include "../reduce.h"

/* out[0] = sum x^2, accumulated in double */
void dt_cpu_sumsq(void *ctx, float *out, const float *x, size_t n) {
  (void)ctx;
  double acc = 0.0;
  for (size_t i = 0; i < n; i++) acc += (double)x[i] * x[i];
  out[0] = (float)acc;
}

/* x (n) *= a */
void dt_cpu_scale(void *ctx, float *x, float a, size_t n) {
  (void)ctx;
  for (size_t i = 0; i < n; i++) x[i] *= a;
}

/* y (n) += a * x, fused like the CUDA kernel so the backends agree exactly */
void dt_cpu_axpy(void *ctx, float *y, float a, const float *x, size_t n) {
  (void)ctx;
  for (size_t i = 0; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

/* dst (n) = src rounded to bf16 bit patterns, ties to even */
void dt_cpu_to_bf16(void *ctx, uint16_t *dst, const float *src, size_t n) {
  (void)ctx;
  for (size_t i = 0; i < n; i++) dst[i] = dt_bf16_bits(src[i]);
}

/* y (n) = x widened (exact), or y += x */
void dt_cpu_from_bf16(void *ctx, float *y, const uint16_t *x, size_t n, int accumulate) {
  (void)ctx;
  if (accumulate)
    for (size_t i = 0; i < n; i++) y[i] += dt_bf16_value(x[i]);
  else
    for (size_t i = 0; i < n; i++) y[i] = dt_bf16_value(x[i]);
}

/* out (N,row) = (src[idx[i]*row + j] / 255 - mean) / std; src (M,row) uint8 */
void dt_cpu_gather_u8_normalize(void *ctx, float *out, const uint8_t *src, const int32_t *idx,
                                int n, int row, float mean, float std) {
  (void)ctx;
  for (int i = 0; i < n; i++) {
    const uint8_t *s = src + (size_t)idx[i] * row;
    float *o = out + (size_t)i * row;
    for (int j = 0; j < row; j++) o[j] = ((float)s[j] / 255.0f - mean) / std;
  }
}
