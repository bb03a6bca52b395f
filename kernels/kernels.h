/* kernels.h: the kernel table every backend fills. Models call kernels only
 * through this table (be->k->name(be->ctx, ...)), so they never #ifdef on
 * the device. All pointers are device pointers of the backend that owns the
 * table; all tensors are row-major and contiguous; images are NCHW.
 * Convention (from llm.c): activation gradients overwrite (=), parameter
 * gradients accumulate (+=). `n`/`count` are elements, `bytes` are bytes. */
#ifndef DT_KERNELS_H
#define DT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dt_conv2d_shape {
  int n, c, h, w;      /* input (N,C,H,W) */
  int oc, kh, kw;      /* weight (OC,C,KH,KW), bias (OC) */
  int stride, pad;     /* same in both spatial dims; zero padding */
  int oh, ow;          /* output (N,OC,OH,OW), filled by dt_conv2d_shape_init */
} dt_conv2d_shape;

typedef struct dt_pool2d_shape {
  int n, c, h, w;      /* input (N,C,H,W) */
  int k, stride;       /* square window, no padding */
  int oh, ow;          /* output (N,C,OH,OW), filled by dt_pool2d_shape_init */
} dt_pool2d_shape;

static inline void dt_conv2d_shape_init(dt_conv2d_shape *s) {
  s->oh = (s->h + 2 * s->pad - s->kh) / s->stride + 1;
  s->ow = (s->w + 2 * s->pad - s->kw) / s->stride + 1;
}
static inline void dt_pool2d_shape_init(dt_pool2d_shape *s) {
  s->oh = (s->h - s->k) / s->stride + 1;
  s->ow = (s->w - s->k) / s->stride + 1;
}

typedef enum dt_act {
  DT_ACT_RELU = 0,
  DT_ACT_TANH = 1,
  DT_ACT_GELU = 2,      /* exact: x * Phi(x), with erf */
  DT_ACT_GELU_TANH = 3, /* GPT-2's tanh approximation */
  DT_ACT_COUNT
} dt_act;

typedef struct dt_kernels {
  /* ---- matmul (kernels/matmul.h) ----
   * out (N,OC) = inp (N,C) @ w(OC,C)^T + b(OC); b may be NULL. */
  void (*linear_forward)(void *ctx, float *out, const float *inp, const float *w,
                         const float *b, int n, int c, int oc);
  /* dinp (N,C) = dout (N,OC) @ w (OC,C)          [=, skipped if dinp NULL]
   * dw (OC,C) += dout^T @ inp; db (OC) += sum_n dout  [+=, db may be NULL] */
  void (*linear_backward)(void *ctx, float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, int n, int c, int oc);

  /* ---- conv (kernels/conv.h) ----
   * Bytes of scratch the two calls below need for shape s (may be 0). */
  size_t (*conv2d_workspace)(void *ctx, const dt_conv2d_shape *s);
  /* out (N,OC,OH,OW) = conv(inp, w) + b; b may be NULL */
  void (*conv2d_forward)(void *ctx, float *out, const float *inp, const float *w,
                         const float *b, const dt_conv2d_shape *s, void *ws);
  /* dinp (N,C,H,W) = ...  [=, skipped if NULL]; dw += ...; db += ... */
  void (*conv2d_backward)(void *ctx, float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w, const dt_conv2d_shape *s,
                          void *ws);

  /* ---- pool (kernels/pool.h) ----
   * Max pooling; ties go to the first element of the window in row-major
   * order and the first NaN wins (NaNs propagate), on every backend, so
   * gradients agree exactly. */
  void (*maxpool2d_forward)(void *ctx, float *out, const float *inp, const dt_pool2d_shape *s);
  /* dinp (N,C,H,W) = scatter of dout to each window's argmax [=] */
  void (*maxpool2d_backward)(void *ctx, float *dinp, const float *dout, const float *inp,
                             const dt_pool2d_shape *s);
  void (*avgpool2d_forward)(void *ctx, float *out, const float *inp, const dt_pool2d_shape *s);
  void (*avgpool2d_backward)(void *ctx, float *dinp, const float *dout, const dt_pool2d_shape *s);

  /* ---- act (kernels/act.h) ---- out (n) = f(inp); in place allowed. */
  void (*act_forward)(void *ctx, dt_act act, float *out, const float *inp, size_t n);
  /* dinp (n) = dout * f'(inp) [=]; inp is the pre-activation input. */
  void (*act_backward)(void *ctx, dt_act act, float *dinp, const float *dout, const float *inp,
                       size_t n);

  /* ---- softmax / cross-entropy (kernels/xent.h) ----
   * logits (N,V), targets (N) in [0,V). losses (N) = -log softmax(logits)[t]
   * (skipped if NULL; a target outside [0,V) gives a NaN loss).
   * If dlogits is non-NULL: dlogits (N,V) = (softmax - onehot(t)) * dscale [=]
   * (dlogits may alias logits). Fused so no probability tensor is kept. */
  void (*softmax_xent)(void *ctx, float *losses, float *dlogits, const float *logits,
                       const int32_t *targets, int n, int v, float dscale);

  /* ---- optimizer (kernels/optimizer.h) ----
   * Every step first forms g' = g * grad_scale (clipping, loss scaling).
   * SGD with momentum (PyTorch semantics): g' += wd*p; buf = mom*buf + g'
   * (buf = g' when first != 0); p -= lr * (nesterov ? g' + mom*buf : buf).
   * buf may be NULL when momentum is 0. */
  void (*sgd_step)(void *ctx, float *p, const float *g, float *buf, size_t n, float lr,
                   float momentum, float wd, int nesterov, int first, float grad_scale);
  /* Adam / AdamW, t = step number starting at 1 (for bias correction).
   * decoupled = 0: Adam, g' += wd*p (L2); decoupled = 1: AdamW, p -= lr*wd*p.
   * m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2;
   * p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps). */
  void (*adam_step)(void *ctx, float *p, const float *g, float *m, float *v, size_t n,
                    float lr, float b1, float b2, float eps, float wd, int decoupled, int t,
                    float grad_scale);

  /* ---- reduce / elementwise (kernels/reduce.h) ----
   * out[0] (a device float) = sum x^2, accumulated in at least fp32 pairwise
   * or in fp64 so the result does not depend on n's size badly. */
  void (*sumsq)(void *ctx, float *out, const float *x, size_t n);
  /* x (n) *= a */
  void (*scale)(void *ctx, float *x, float a, size_t n);
  /* y (n) += a * x, as one fused multiply-add per element on every backend */
  void (*axpy)(void *ctx, float *y, float a, const float *x, size_t n);
  /* out (N,row) = (src[idx[i]*row + j] / 255 - mean) / std, for the image
   * batch gather: src is (M,row) uint8, idx (N) int32 device indices. */
  void (*gather_u8_normalize)(void *ctx, float *out, const uint8_t *src, const int32_t *idx,
                              int n, int row, float mean, float std);
} dt_kernels;

/* The number of function slots in dt_kernels, for the test that checks that
 * no backend leaves one empty. */
#define DT_KERNELS_SLOTS (sizeof(dt_kernels) / sizeof(void (*)(void)))

extern const dt_kernels dt_cpu_kernels;
#ifdef DT_HAVE_CUDA
extern const dt_kernels dt_cuda_kernels;
#endif

#ifdef __cplusplus
}
#endif

#endif
