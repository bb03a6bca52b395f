/* pool.c: fp32 reference max and average pooling (square window, no
 * padding). The max-pool argmax rule is shared with every backend: the
 * first element of the window in row-major order wins ties, and a NaN
 * wins over numbers (the first NaN), so NaNs propagate as in PyTorch. */
#include <math.h>
#include <string.h>

#include "../pool.h"

/* offset of the winning element of the window at (y, x) in plane (H,W) */
static size_t window_argmax(const float *plane, const dt_pool2d_shape *s, int y, int x) {
  size_t best = (size_t)y * s->stride * s->w + (size_t)x * s->stride;
  float bv = plane[best];
  for (int i = 0; i < s->k; i++)
    for (int j = 0; j < s->k; j++) {
      size_t o = ((size_t)y * s->stride + i) * s->w + (size_t)x * s->stride + j;
      float v = plane[o];
      if (v > bv || (isnan(v) && !isnan(bv))) {
        bv = v;
        best = o;
      }
    }
  return best;
}

/* out (N,C,OH,OW) = max over each window of inp (N,C,H,W) */
void dt_cpu_maxpool2d_forward(void *ctx, float *out, const float *inp,
                              const dt_pool2d_shape *s) {
  (void)ctx;
  const size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->oh * s->ow;
  for (size_t pl = 0; pl < (size_t)s->n * s->c; pl++) {
    const float *plane = inp + pl * hw;
    float *o = out + pl * ohw;
    for (int y = 0; y < s->oh; y++)
      for (int x = 0; x < s->ow; x++) o[(size_t)y * s->ow + x] = plane[window_argmax(plane, s, y, x)];
  }
}

/* dinp (N,C,H,W) = dout routed to each window's argmax [=]; overlapping
 * windows (stride < k) add up. */
void dt_cpu_maxpool2d_backward(void *ctx, float *dinp, const float *dout, const float *inp,
                               const dt_pool2d_shape *s) {
  (void)ctx;
  const size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->oh * s->ow;
  memset(dinp, 0, sizeof(float) * (size_t)s->n * s->c * hw);
  for (size_t pl = 0; pl < (size_t)s->n * s->c; pl++) {
    const float *plane = inp + pl * hw;
    const float *d = dout + pl * ohw;
    float *g = dinp + pl * hw;
    for (int y = 0; y < s->oh; y++)
      for (int x = 0; x < s->ow; x++) g[window_argmax(plane, s, y, x)] += d[(size_t)y * s->ow + x];
  }
}

/* out (N,C,OH,OW) = mean over each k*k window of inp (N,C,H,W) */
void dt_cpu_avgpool2d_forward(void *ctx, float *out, const float *inp,
                              const dt_pool2d_shape *s) {
  (void)ctx;
  const size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->oh * s->ow;
  const float inv = 1.0f / (float)(s->k * s->k);
  for (size_t pl = 0; pl < (size_t)s->n * s->c; pl++) {
    const float *plane = inp + pl * hw;
    float *o = out + pl * ohw;
    for (int y = 0; y < s->oh; y++)
      for (int x = 0; x < s->ow; x++) {
        const float *win = plane + (size_t)y * s->stride * s->w + (size_t)x * s->stride;
        float acc = 0.0f;
        for (int i = 0; i < s->k; i++)
          for (int j = 0; j < s->k; j++) acc += win[(size_t)i * s->w + j];
        o[(size_t)y * s->ow + x] = acc * inv;
      }
  }
}

/* dinp (N,C,H,W) = each dout spread evenly over its window [=]; elements
 * no window covers get 0. */
void dt_cpu_avgpool2d_backward(void *ctx, float *dinp, const float *dout,
                               const dt_pool2d_shape *s) {
  (void)ctx;
  const size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->oh * s->ow;
  const float inv = 1.0f / (float)(s->k * s->k);
  memset(dinp, 0, sizeof(float) * (size_t)s->n * s->c * hw);
  for (size_t pl = 0; pl < (size_t)s->n * s->c; pl++) {
    const float *d = dout + pl * ohw;
    float *g = dinp + pl * hw;
    for (int y = 0; y < s->oh; y++)
      for (int x = 0; x < s->ow; x++) {
        float *win = g + (size_t)y * s->stride * s->w + (size_t)x * s->stride;
        const float v = d[(size_t)y * s->ow + x] * inv;
        for (int i = 0; i < s->k; i++)
          for (int j = 0; j < s->k; j++) win[(size_t)i * s->w + j] += v;
      }
  }
}
