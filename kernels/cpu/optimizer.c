/* optimizer.c: fp32 reference SGD (PyTorch momentum semantics) and
 * Adam / AdamW, elementwise over a flat shard. */
#include <math.h>

#include "../optimizer.h"

/* g' = g*grad_scale + wd*p; buf = mom*buf + g' (buf = g' when first);
 * p -= lr * (nesterov ? g' + mom*buf : buf). A NULL buf means no momentum. */
void dt_cpu_sgd_step(void *ctx, float *p, const float *g, float *buf, size_t n, float lr,
                     float momentum, float wd, int nesterov, int first, float grad_scale) {
  (void)ctx;
  for (size_t i = 0; i < n; i++) {
    float gi = g[i] * grad_scale + wd * p[i];
    float step = gi;
    if (buf) {
      /* momentum 0: buf = g' whatever buf held, even uninitialised memory */
      float b = (first || momentum == 0.0f) ? gi : momentum * buf[i] + gi;
      buf[i] = b;
      step = nesterov ? gi + momentum * b : b;
    }
    p[i] -= lr * step;
  }
}

/* g' = g*grad_scale (+ wd*p for Adam); m, v moments; AdamW decays p by
 * lr*wd*p (old p) before the Adam step, as PyTorch does. */
void dt_cpu_adam_step(void *ctx, float *p, const float *g, float *m, float *v, size_t n,
                      float lr, float b1, float b2, float eps, float wd, int decoupled, int t,
                      float grad_scale) {
  (void)ctx;
  const float bc1 = (float)(1.0 - pow((double)b1, (double)t));
  const float bc2 = (float)(1.0 - pow((double)b2, (double)t));
  for (size_t i = 0; i < n; i++) {
    float gi = g[i] * grad_scale;
    if (!decoupled) gi += wd * p[i];
    float mi = b1 * m[i] + (1.0f - b1) * gi;
    float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float pi = p[i];
    if (decoupled) pi -= lr * wd * pi;
    p[i] = pi - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
  }
}
