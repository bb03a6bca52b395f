/* norm.c: fp32 reference layer norm (llm.c's formulation). Row statistics
 * and the backward's two row sums are accumulated in double; dinp
 * accumulates (+=) because it is the residual stream's gradient. */
#include <math.h>

#include "../norm.h"

/* mean and rstd of one row of c floats, two-pass in double */
static void row_stats(const float *x, int c, float eps, float *mean, float *rstd) {
  double m = 0.0, v = 0.0;
  for (int j = 0; j < c; j++) m += x[j];
  m /= c;
  for (int j = 0; j < c; j++) {
    double d = x[j] - m;
    v += d * d;
  }
  v /= c;
  *mean = (float)m;
  *rstd = (float)(1.0 / sqrt(v + eps));
}

/* out (N,C) of type ot, mean (N), rstd (N) (both may be NULL), inp (N,C),
 * weight (C), bias (C) */
void dt_cpu_layernorm_forward(void *ctx, void *out, dt_dtype ot, float *mean, float *rstd,
                              const float *inp, const float *weight, const float *bias, int n,
                              int c, float eps) {
  (void)ctx;
  for (int i = 0; i < n; i++) {
    const float *x = inp + (size_t)i * c;
    float m, s;
    row_stats(x, c, eps, &m, &s);
    for (int j = 0; j < c; j++)
      dt_store(out, ot, (size_t)i * c + j, (x[j] - m) * s * weight[j] + bias[j]);
    if (mean) mean[i] = m;
    if (rstd) rstd[i] = s;
  }
}

/* dinp (N,C) +=, dweight (C) +=, dbias (C) +=; dout, inp (N,C); mean, rstd (N) */
void dt_cpu_layernorm_backward(void *ctx, float *dinp, float *dweight, float *dbias,
                               const float *dout, const float *inp, const float *weight,
                               const float *mean, const float *rstd, int n, int c) {
  (void)ctx;
  for (int i = 0; i < n; i++) {
    const float *x = inp + (size_t)i * c, *dy = dout + (size_t)i * c;
    float *dx = dinp + (size_t)i * c;
    const float m = mean[i], s = rstd[i];
    /* the mean of dnorm = w*dy and of dnorm * xhat over the row */
    double dn_mean = 0.0, dnx_mean = 0.0;
    for (int j = 0; j < c; j++) {
      float xhat = (x[j] - m) * s, dn = weight[j] * dy[j];
      dn_mean += dn;
      dnx_mean += (double)dn * xhat;
    }
    dn_mean /= c;
    dnx_mean /= c;
    for (int j = 0; j < c; j++) {
      float xhat = (x[j] - m) * s, dn = weight[j] * dy[j];
      dbias[j] += dy[j];
      dweight[j] += xhat * dy[j];
      dx[j] += (float)(((double)dn - dn_mean - xhat * dnx_mean) * s);
    }
  }
}

/* res_out (N,C) = a + b (may alias a or b), then out, mean, rstd = LN(res_out) */
void dt_cpu_residual_layernorm_forward(void *ctx, float *res_out, void *out, dt_dtype ot,
                                       float *mean, float *rstd, const float *a, const float *b,
                                       const float *weight, const float *bias, int n, int c,
                                       float eps) {
  for (size_t i = 0; i < (size_t)n * c; i++) res_out[i] = a[i] + b[i];
  dt_cpu_layernorm_forward(ctx, out, ot, mean, rstd, res_out, weight, bias, n, c, eps);
}
