/* xent.c: fp32 reference fused softmax + cross-entropy, numerically stable:
 * the row max is subtracted and the sum of exponentials is kept in double. */
#include <math.h>

#include "../xent.h"

/* logits (N,V) of type lt, rows ld apart, targets (N) in [0,V). losses (N) =
 * logsumexp - logit[t] (skipped if NULL). dlogits (N,V) of type dt, rows ld
 * apart, = (softmax - onehot(t)) * dscale [=] and 0 in columns [V, ld),
 * skipped if NULL; it may alias logits of the same type, so each element is
 * read first. */
void dt_cpu_xent_rows(float *losses, void *dlogits, dt_dtype dt, const void *logits, dt_dtype lt,
                      const int32_t *targets, int n, int v, int ld, float dscale) {
  for (int i = 0; i < n; i++) {
    const size_t r = (size_t)i * ld;
    const int t = targets[i];
    float mx = dt_load(logits, lt, r);
    for (int j = 1; j < v; j++) {
      const float u = dt_load(logits, lt, r + j);
      mx = u > mx ? u : mx;
    }
    double sum = 0.0;
    for (int j = 0; j < v; j++) sum += expf(dt_load(logits, lt, r + j) - mx);
    const double lse_rel = log(sum);  /* logsumexp - max */
    const int t_ok = t >= 0 && t < v; /* a bad target gives a NaN loss, as on the GPU */
    const double xt = t_ok ? (double)dt_load(logits, lt, r + t) : NAN;
    if (losses) losses[i] = (float)(lse_rel - (xt - mx));
    if (dlogits) {
      const double inv = 1.0 / sum;
      for (int j = 0; j < v; j++) {
        double p = expf(dt_load(logits, lt, r + j) - mx) * inv;
        dt_store(dlogits, dt, r + j, (float)((p - (j == t ? 1.0 : 0.0)) * dscale));
      }
      for (int j = v; j < ld; j++) dt_store(dlogits, dt, r + j, 0.0f);
    }
  }
}

void dt_cpu_softmax_xent(void *ctx, float *losses, float *dlogits, const void *logits,
                         dt_dtype lt, const int32_t *targets, int n, int v, int ld,
                         float dscale) {
  (void)ctx;
  dt_cpu_xent_rows(losses, dlogits, DT_F32, logits, lt, targets, n, v, ld, dscale);
}

/* Vocabulary-parallel cross-entropy, step 1: each row's (max, sum of
 * exp(x - max) in double, target logit or 0) over this part's columns. */
void dt_cpu_softmax_xent_part_stats(void *ctx, float *stats, const void *logits, dt_dtype lt,
                                    const int32_t *targets, int n, int v, int ld, int v0) {
  (void)ctx;
  for (int i = 0; i < n; i++) {
    const size_t r = (size_t)i * ld;
    float mx = -INFINITY;
    for (int j = 0; j < v; j++) {
      const float u = dt_load(logits, lt, r + j);
      mx = u > mx || u != u ? u : mx;
    }
    double sum = 0.0;
    for (int j = 0; j < v; j++) sum += exp((double)dt_load(logits, lt, r + j) - (double)mx);
    const int64_t t = (int64_t)targets[i] - v0;
    stats[3 * (size_t)i] = mx;
    stats[3 * (size_t)i + 1] = (float)sum;
    stats[3 * (size_t)i + 2] = t >= 0 && t < v ? dt_load(logits, lt, r + (size_t)t) : 0.0f;
  }
}

/* Step 2: the parts' statistics combined in part order, in double: the
 * row's max M over the parts, S = sum of s_r exp(m_r - M), lse = M + log S,
 * the target's logit the sum of the parts' (one holds it). */
void dt_cpu_softmax_xent_part(void *ctx, float *losses, void *dlogits, const void *logits,
                              dt_dtype lt, const int32_t *targets, const float *stats, int parts,
                              int n, int v, int ld, int v0, int vtotal, float dscale) {
  (void)ctx;
  for (int i = 0; i < n; i++) {
    double lse, xt;
    dt_xent_part_combine(stats, parts, n, i, &lse, &xt);
    const int t = targets[i];
    if (losses) losses[i] = t >= 0 && t < vtotal ? (float)(lse - xt) : NAN;
    if (!dlogits) continue;
    const size_t r = (size_t)i * ld;
    for (int j = 0; j < v; j++) {
      const double p = exp((double)dt_load(logits, lt, r + j) - lse);
      dt_store(dlogits, lt, r + j, (float)((p - (v0 + j == t ? 1.0 : 0.0)) * dscale));
    }
    for (int j = v; j < ld; j++) dt_store(dlogits, lt, r + j, 0.0f);
  }
}

/* Label smoothing spreads eps of the target's mass evenly over all V classes,
 * so the loss is the mix of the target's and the mean's -log softmax and the
 * gradient subtracts (1-eps)*onehot + eps/V. A negative target marks padding.
 * dlogits may alias logits (both of type lt): each element is read first. */
void dt_cpu_softmax_xent_smooth(void *ctx, float *losses, void *dlogits, const void *logits,
                                dt_dtype lt, const int32_t *targets, int n, int v, float dscale,
                                float smoothing) {
  (void)ctx;
  const double eps = smoothing;
  for (int i = 0; i < n; i++) {
    const size_t r = (size_t)i * v;
    const int t = targets[i];
    if (t < 0) {
      if (losses) losses[i] = 0.0f;
      if (dlogits)
        for (int j = 0; j < v; j++) dt_store(dlogits, lt, r + j, 0.0f);
      continue;
    }
    float mx = dt_load(logits, lt, r);
    for (int j = 1; j < v; j++) {
      const float u = dt_load(logits, lt, r + j);
      mx = u > mx ? u : mx;
    }
    double sum = 0.0, xsum = 0.0;
    for (int j = 0; j < v; j++) {
      const float u = dt_load(logits, lt, r + j);
      sum += expf(u - mx);
      xsum += (double)u - mx;
    }
    const double lse_rel = log(sum);
    /* a bad target: NaN, as on the GPU */
    const double xt = t < v ? (double)dt_load(logits, lt, r + t) - mx : NAN;
    if (losses) losses[i] = (float)((1.0 - eps) * (lse_rel - xt) + eps * (lse_rel - xsum / v));
    if (dlogits) {
      const double inv = 1.0 / sum, off = eps / v;
      for (int j = 0; j < v; j++) {
        double p = expf(dt_load(logits, lt, r + j) - mx) * inv;
        dt_store(dlogits, lt, r + j, (float)((p - (j == t ? 1.0 - eps : 0.0) - off) * dscale));
      }
    }
  }
}
