/* attention.c: fp32 reference multi-head attention, one query row at a time
 * with the scores of that row in double. Only lse (B,NH,Tq) is kept for the
 * backward, which recomputes each probability as exp(score - lse). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../attention.h"
#include "dt.h"

/* Keys visible to query i of batch b form the prefix [0, kend): key_len
 * masks the padding at the end, causal masks keys past i + (Tk - Tq). */
static int key_end(int b, int i, int Tq, int Tk, int causal, const int32_t *key_len) {
  long e = Tk;
  if (key_len && key_len[b] < e) e = key_len[b];
  if (causal && (long)i + Tk - Tq + 1 < e) e = (long)i + Tk - Tq + 1;
  return e < 0 ? 0 : (int)e;
}

static double dotf(const float *a, const float *b, int n) {
  double s = 0.0;
  for (int d = 0; d < n; d++) s += (double)a[d] * b[d];
  return s;
}

/* rows (rows, width) at stride elements apart, bf16, as contiguous fp32 */
static float *rows_f32(const void *p, size_t rows, size_t width, size_t stride) {
  float *o = dt_malloc(sizeof(float) * (rows * width > 0 ? rows * width : 1));
  for (size_t r = 0; r < rows; r++)
    for (size_t j = 0; j < width; j++) o[r * width + j] = dt_load(p, DT_BF16, r * stride + j);
  return o;
}

static void forward_f32(float *out, float *lse, const float *q, const float *k, const float *v,
                        int B, int Tq, int Tk, int NH, int HS, int q_stride, int kv_stride,
                        int causal, const int32_t *key_len, float scale);
static void backward_f32(float *dq, float *dk, float *dv, const float *dout, const float *q,
                         const float *k, const float *v, const float *out, const float *lse,
                         int B, int Tq, int Tk, int NH, int HS, int q_stride, int kv_stride,
                         int causal, const int32_t *key_len, float scale);

/* bf16 q, k, v, out: their values in fp32 copies (q and k, v at strides
 * NH*HS), the fp32 reference on them, out rounded once */
void dt_cpu_attention_forward(void *ctx, void *out, float *lse, const void *q, const void *k,
                              const void *v, dt_dtype t, int B, int Tq, int Tk, int NH, int HS,
                              int q_stride, int kv_stride, int causal, const int32_t *key_len,
                              float scale) {
  (void)ctx;
  if (t == DT_F32) {
    forward_f32(out, lse, q, k, v, B, Tq, Tk, NH, HS, q_stride, kv_stride, causal, key_len,
                scale);
    return;
  }
  const size_t W = (size_t)NH * HS, nq = (size_t)B * Tq, nk = (size_t)B * Tk;
  float *q32 = rows_f32(q, nq, W, q_stride), *k32 = rows_f32(k, nk, W, kv_stride);
  float *v32 = rows_f32(v, nk, W, kv_stride), *o32 = dt_malloc(sizeof(float) * (nq * W + 1));
  forward_f32(o32, lse, q32, k32, v32, B, Tq, Tk, NH, HS, (int)W, (int)W, causal, key_len, scale);
  for (size_t i = 0; i < nq * W; i++) dt_store(out, DT_BF16, i, o32[i]);
  free(q32), free(k32), free(v32), free(o32);
}

void dt_cpu_attention_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                               const void *q, const void *k, const void *v, const void *out,
                               dt_dtype t, const float *lse, int B, int Tq, int Tk, int NH,
                               int HS, int q_stride, int kv_stride, int causal,
                               const int32_t *key_len, float scale) {
  (void)ctx;
  if (t == DT_F32) {
    backward_f32(dq, dk, dv, dout, q, k, v, out, lse, B, Tq, Tk, NH, HS, q_stride, kv_stride,
                 causal, key_len, scale);
    return;
  }
  /* the fp32 gradients at stride NH*HS, then into their strided places */
  const size_t W = (size_t)NH * HS, nq = (size_t)B * Tq, nk = (size_t)B * Tk;
  float *q32 = rows_f32(q, nq, W, q_stride), *k32 = rows_f32(k, nk, W, kv_stride);
  float *v32 = rows_f32(v, nk, W, kv_stride), *o32 = rows_f32(out, nq, W, W);
  float *g = dt_malloc(sizeof(float) * (nq * W + 2 * nk * W + 1));
  backward_f32(g, g + nq * W, g + nq * W + nk * W, dout, q32, k32, v32, o32, lse, B, Tq, Tk, NH,
               HS, (int)W, (int)W, causal, key_len, scale);
  for (size_t r = 0; r < nq; r++) memcpy(dq + r * q_stride, g + r * W, W * sizeof(float));
  for (size_t r = 0; r < nk; r++) {
    memcpy(dk + r * kv_stride, g + nq * W + r * W, W * sizeof(float));
    memcpy(dv + r * kv_stride, g + nq * W + nk * W + r * W, W * sizeof(float));
  }
  free(q32), free(k32), free(v32), free(o32), free(g);
}

/* out (B,Tq,NH,HS), lse (B,NH,Tq); q (B,Tq,NH,HS) rows at q_stride;
 * k, v (B,Tk,NH,HS) rows at kv_stride; key_len (B) or NULL */
static void forward_f32(float *out, float *lse, const float *q, const float *k, const float *v,
                        int B, int Tq, int Tk, int NH, int HS, int q_stride, int kv_stride,
                        int causal, const int32_t *key_len, float scale) {
  double *s = dt_malloc(sizeof(double) * (Tk > 0 ? Tk : 1));
  double *acc = dt_malloc(sizeof(double) * (HS > 0 ? HS : 1));
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int i = 0; i < Tq; i++) {
        const float *qi = q + ((size_t)b * Tq + i) * q_stride + (size_t)h * HS;
        float *oi = out + (((size_t)b * Tq + i) * NH + h) * HS;
        const int kend = key_end(b, i, Tq, Tk, causal, key_len);
        double m = -INFINITY, l = 0.0;
        for (int j = 0; j < kend; j++) {
          s[j] = scale * dotf(qi, k + ((size_t)b * Tk + j) * kv_stride + (size_t)h * HS, HS);
          m = s[j] > m ? s[j] : m;
        }
        memset(acc, 0, sizeof(double) * HS);
        for (int j = 0; j < kend; j++) {
          const float *vj = v + ((size_t)b * Tk + j) * kv_stride + (size_t)h * HS;
          const double p = exp(s[j] - m);
          l += p;
          for (int d = 0; d < HS; d++) acc[d] += p * vj[d];
        }
        for (int d = 0; d < HS; d++) oi[d] = kend ? (float)(acc[d] / l) : 0.0f;
        lse[((size_t)b * NH + h) * Tq + i] = kend ? (float)(m + log(l)) : -INFINITY;
      }
  free(s), free(acc);
}

/* dq strided like q, dk and dv like k and v [=]; dout, out (B,Tq,NH,HS); lse (B,NH,Tq).
 * With P = exp(S - lse) and D_i = dout_i . out_i:
 *   dv_j = sum_i P_ij dout_i, dS_ij = P_ij (dout_i . v_j - D_i),
 *   dq_i = scale sum_j dS_ij k_j, dk_j = scale sum_i dS_ij q_i. */
static void backward_f32(float *dq, float *dk, float *dv, const float *dout, const float *q,
                         const float *k, const float *v, const float *out, const float *lse,
                         int B, int Tq, int Tk, int NH, int HS, int q_stride, int kv_stride,
                         int causal, const int32_t *key_len, float scale) {
  size_t nkv = (size_t)(Tk > 0 ? Tk : 1) * (HS > 0 ? HS : 1);
  double *gk = dt_malloc(sizeof(double) * nkv), *gv = dt_malloc(sizeof(double) * nkv);
  double *gq = dt_malloc(sizeof(double) * (HS > 0 ? HS : 1));
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++) {
      memset(gk, 0, sizeof(double) * nkv);
      memset(gv, 0, sizeof(double) * nkv);
      for (int i = 0; i < Tq; i++) {
        const size_t qrow = ((size_t)b * Tq + i) * q_stride + (size_t)h * HS;
        const size_t orow = (((size_t)b * Tq + i) * NH + h) * HS;
        const float *qi = q + qrow, *doi = dout + orow;
        const int kend = key_end(b, i, Tq, Tk, causal, key_len);
        const double L = lse[((size_t)b * NH + h) * Tq + i], D = dotf(doi, out + orow, HS);
        memset(gq, 0, sizeof(double) * HS);
        for (int j = 0; j < kend; j++) {
          const size_t krow = ((size_t)b * Tk + j) * kv_stride + (size_t)h * HS;
          const float *kj = k + krow, *vj = v + krow;
          const double p = exp(scale * dotf(qi, kj, HS) - L);
          const double ds = p * (dotf(doi, vj, HS) - D) * scale;
          for (int d = 0; d < HS; d++) {
            gv[(size_t)j * HS + d] += p * doi[d];
            gk[(size_t)j * HS + d] += ds * qi[d];
            gq[d] += ds * kj[d];
          }
        }
        for (int d = 0; d < HS; d++) dq[qrow + d] = (float)gq[d];
      }
      for (int j = 0; j < Tk; j++) {
        const size_t krow = ((size_t)b * Tk + j) * kv_stride + (size_t)h * HS;
        for (int d = 0; d < HS; d++) {
          dk[krow + d] = (float)gk[(size_t)j * HS + d];
          dv[krow + d] = (float)gv[(size_t)j * HS + d];
        }
      }
    }
  free(gk), free(gv), free(gq);
}
