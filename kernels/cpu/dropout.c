/* dropout.c: fp32 reference inverted dropout. The mask is recomputed from
 * (seed, offset + i) by dt_dropout_keep in both directions, so nothing is
 * stored between forward and backward; elementwise, so in place is fine. */
#include "../dropout.h"

/* y = keep(i) ? x * scale : 0, the same map forward (x = inp) and backward
 * (x = dout): the derivative of a masked scaling is the masked scaling. */
static void dropout_apply(float *y, const float *x, size_t n, float p, uint64_t seed,
                          uint64_t offset) {
  const uint64_t key = dt_dropout_key(seed), thr = dt_dropout_threshold(p);
  const float scale = dt_dropout_scale(p);
  for (size_t i = 0; i < n; i++)
    y[i] = dt_dropout_keep(key, offset + i, thr) ? x[i] * scale : 0.0f;
}

void dt_cpu_dropout_forward(void *ctx, float *out, const float *inp, size_t n, float p,
                            uint64_t seed, uint64_t offset) {
  (void)ctx;
  dropout_apply(out, inp, n, p, seed, offset);
}

void dt_cpu_dropout_backward(void *ctx, float *dinp, const float *dout, size_t n, float p,
                             uint64_t seed, uint64_t offset) {
  (void)ctx;
  dropout_apply(dinp, dout, n, p, seed, offset);
}

void dt_cpu_dropout_rows(void *ctx, float *y, const float *x, int rows, size_t width,
                         size_t stride, float p, uint64_t seed, uint64_t offset) {
  (void)ctx;
  for (int r = 0; r < rows; r++)
    dropout_apply(y + (size_t)r * width, x + (size_t)r * width, width, p, seed,
                  offset + (uint64_t)r * stride);
}
