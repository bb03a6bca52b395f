/* matmul.c: fp32 reference for the linear layer; every GEMM goes through
 * OpenBLAS so the CPU path is also fast enough to train LeNet-5. */
#include <cblas.h>

#include "../matmul.h"

/* out (N,OC) = inp (N,C) @ w (OC,C)^T + b (OC); b may be NULL */
void dt_cpu_linear_forward(void *ctx, float *out, const float *inp, const float *w,
                           const float *b, int n, int c, int oc) {
  (void)ctx;
  if (n <= 0 || oc <= 0) return;
  float beta = 0.0f;
  if (b) {
    for (int i = 0; i < n; i++)
      for (int o = 0; o < oc; o++) out[(size_t)i * oc + o] = b[o];
    beta = 1.0f;
  } else if (c <= 0) {
    for (size_t i = 0; i < (size_t)n * oc; i++) out[i] = 0.0f;
  }
  if (c <= 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, oc, c, 1.0f, inp, c, w, c, beta,
              out, oc);
}

/* dinp (N,C) = dout (N,OC) @ w (OC,C)            [=, skipped if dinp NULL]
 * dw (OC,C) += dout^T @ inp; db (OC) += sum_n dout [+=, db may be NULL] */
void dt_cpu_linear_backward(void *ctx, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int n, int c, int oc) {
  (void)ctx;
  if (n <= 0 || c <= 0) return;
  if (dinp) {
    if (oc > 0)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, c, oc, 1.0f, dout, oc, w, c,
                  0.0f, dinp, c);
    else
      for (size_t i = 0; i < (size_t)n * c; i++) dinp[i] = 0.0f;
  }
  if (oc <= 0) return;
  if (dw)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, oc, c, n, 1.0f, dout, oc, inp, c,
                1.0f, dw, c);
  if (db)
    for (int i = 0; i < n; i++)
      for (int o = 0; o < oc; o++) db[o] += dout[(size_t)i * oc + o];
}
