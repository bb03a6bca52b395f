/* conv.c: fp32 reference 2-D convolution as im2col + one OpenBLAS sgemm per
 * chunk of images. The workspace holds a chunk's columns (K, B*P) and its
 * output or output gradient re-laid out as (OC, B*P), so each GEMM sees the
 * whole chunk (K = C*KH*KW, P = OH*OW). */
#include <cblas.h>
#include <string.h>

#include "../conv.h"

/* The workspace stays below this, except that one image always fits. Small,
 * so a chunk's columns are still in cache when the GEMM reads them. */
#define CONV_WS_BUDGET ((size_t)1 << 20)

static int imin(int a, int b) { return a < b ? a : b; }
static size_t conv_k(const dt_conv2d_shape *s) { return (size_t)s->c * s->kh * s->kw; }
static size_t conv_p(const dt_conv2d_shape *s) { return (size_t)s->oh * s->ow; }

/* images per chunk; the same for the size query and the kernels */
static int conv_chunk(const dt_conv2d_shape *s) {
  size_t per_image = (conv_k(s) + (size_t)s->oc) * conv_p(s) * sizeof(float);
  size_t b = per_image ? CONV_WS_BUDGET / per_image : (size_t)s->n;
  if (b < 1) b = 1;
  if (b > (size_t)s->n) b = (size_t)(s->n > 0 ? s->n : 1);
  return (int)b;
}

size_t dt_cpu_conv2d_workspace(void *ctx, const dt_conv2d_shape *s) {
  (void)ctx;
  return (size_t)conv_chunk(s) * (conv_k(s) + (size_t)s->oc) * conv_p(s) * sizeof(float);
}

/* col (K, ldc) columns [0, P) = patches of one image img (C,H,W) */
static void im2col(float *col, size_t ldc, const float *img, const dt_conv2d_shape *s) {
  const int oh = s->oh, ow = s->ow, st = s->stride, pad = s->pad;
  for (int c = 0; c < s->c; c++)
    for (int ki = 0; ki < s->kh; ki++)
      for (int kj = 0; kj < s->kw; kj++) {
        float *row = col + ((size_t)(c * s->kh + ki) * s->kw + kj) * ldc;
        const float *plane = img + (size_t)c * s->h * s->w;
        /* ow range whose input column lies inside [0, W) */
        int lo = 0, hi = ow;
        while (lo < ow && lo * st - pad + kj < 0) lo++;
        while (hi > lo && (hi - 1) * st - pad + kj >= s->w) hi--;
        for (int y = 0; y < oh; y++) {
          float *dst = row + (size_t)y * ow;
          int iy = y * st - pad + ki;
          if (iy < 0 || iy >= s->h) {
            memset(dst, 0, sizeof(float) * (size_t)ow);
            continue;
          }
          const float *src = plane + (size_t)iy * s->w - pad + kj;
          for (int x = 0; x < lo; x++) dst[x] = 0.0f;
          if (st == 1)
            memcpy(dst + lo, src + lo, sizeof(float) * (size_t)(hi - lo));
          else
            for (int x = lo; x < hi; x++) dst[x] = src[x * st];
          for (int x = hi; x < ow; x++) dst[x] = 0.0f;
        }
      }
}

/* img (C,H,W) += scatter of dcol (K, ldc) columns [0, P); img is zeroed first */
static void col2im(float *img, const float *dcol, size_t ldc, const dt_conv2d_shape *s) {
  const int oh = s->oh, ow = s->ow, st = s->stride, pad = s->pad;
  memset(img, 0, sizeof(float) * (size_t)s->c * s->h * s->w);
  for (int c = 0; c < s->c; c++)
    for (int ki = 0; ki < s->kh; ki++)
      for (int kj = 0; kj < s->kw; kj++) {
        const float *row = dcol + ((size_t)(c * s->kh + ki) * s->kw + kj) * ldc;
        float *plane = img + (size_t)c * s->h * s->w;
        int lo = 0, hi = ow;
        while (lo < ow && lo * st - pad + kj < 0) lo++;
        while (hi > lo && (hi - 1) * st - pad + kj >= s->w) hi--;
        for (int y = 0; y < oh; y++) {
          int iy = y * st - pad + ki;
          if (iy < 0 || iy >= s->h) continue;
          const float *src = row + (size_t)y * ow;
          float *dst = plane + (size_t)iy * s->w - pad + kj;
          for (int x = lo; x < hi; x++) dst[x * st] += src[x];
        }
      }
}

/* out (N,OC,OH,OW) = conv(inp (N,C,H,W), w (OC,C,KH,KW)) + b (OC); b may be NULL */
void dt_cpu_conv2d_forward(void *ctx, float *out, const float *inp, const float *w,
                           const float *b, const dt_conv2d_shape *s, void *ws) {
  (void)ctx;
  const size_t K = conv_k(s), P = conv_p(s), img = (size_t)s->c * s->h * s->w;
  const int chunk = conv_chunk(s);
  float *col = ws;
  if (s->n <= 0 || P == 0 || s->oc <= 0) return;
  if (K == 0) {
    for (size_t i = 0; i < (size_t)s->n * s->oc; i++) {
      const float bias = b ? b[i % (size_t)s->oc] : 0.0f;
      for (size_t p = 0; p < P; p++) out[i * P + p] = bias;
    }
    return;
  }
  for (int n0 = 0; n0 < s->n; n0 += chunk) {
    const int nb = imin(chunk, s->n - n0);
    const size_t ldc = (size_t)nb * P;
    float *tmp = col + K * ldc;   /* (OC, nb*P) */
    for (int i = 0; i < nb; i++) im2col(col + (size_t)i * P, ldc, inp + (size_t)(n0 + i) * img, s);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->oc, (int)ldc, (int)K, 1.0f, w,
                (int)K, col, (int)ldc, 0.0f, tmp, (int)ldc);
    for (int i = 0; i < nb; i++)
      for (int o = 0; o < s->oc; o++) {
        float *dst = out + ((size_t)(n0 + i) * s->oc + o) * P;
        const float *src = tmp + (size_t)o * ldc + (size_t)i * P;
        const float bias = b ? b[o] : 0.0f;
        for (size_t p = 0; p < P; p++) dst[p] = src[p] + bias;
      }
  }
}

/* dinp (N,C,H,W) = W^T dout, col2im'd   [=, skipped if NULL]
 * dw (OC,C,KH,KW) += dout col^T; db (OC) += sum over N,OH,OW of dout   [+=, NULL skips] */
void dt_cpu_conv2d_backward(void *ctx, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const dt_conv2d_shape *s,
                            void *ws) {
  (void)ctx;
  const size_t K = conv_k(s), P = conv_p(s), img = (size_t)s->c * s->h * s->w;
  const int chunk = conv_chunk(s);
  float *col = ws;
  if (db)
    for (int i = 0; i < s->n; i++)
      for (int o = 0; o < s->oc; o++) {
        const float *src = dout + ((size_t)i * s->oc + o) * P;
        float acc = 0.0f;
        for (size_t p = 0; p < P; p++) acc += src[p];
        db[o] += acc;
      }
  if ((!dw && !dinp) || s->n <= 0 || P == 0 || K == 0) return;
  if (s->oc <= 0) {
    if (dinp) memset(dinp, 0, sizeof(float) * (size_t)s->n * img);
    return;
  }
  for (int n0 = 0; n0 < s->n; n0 += chunk) {
    const int nb = imin(chunk, s->n - n0);
    const size_t ldc = (size_t)nb * P;
    float *tmp = col + K * ldc;   /* dout as (OC, nb*P) */
    for (int i = 0; i < nb; i++)
      for (int o = 0; o < s->oc; o++)
        memcpy(tmp + (size_t)o * ldc + (size_t)i * P, dout + ((size_t)(n0 + i) * s->oc + o) * P,
               sizeof(float) * P);
    if (dw) {
      for (int i = 0; i < nb; i++)
        im2col(col + (size_t)i * P, ldc, inp + (size_t)(n0 + i) * img, s);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->oc, (int)K, (int)ldc, 1.0f, tmp,
                  (int)ldc, col, (int)ldc, 1.0f, dw, (int)K);
    }
    if (dinp) {
      /* dcol (K, nb*P) = w^T (K,OC) @ dout (OC, nb*P), reusing the column buffer */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)ldc, s->oc, 1.0f, w,
                  (int)K, tmp, (int)ldc, 0.0f, col, (int)ldc);
      for (int i = 0; i < nb; i++)
        col2im(dinp + (size_t)(n0 + i) * img, col + (size_t)i * P, ldc, s);
    }
  }
}
