/* lenet5.c: the classic LeNet-5 (LeCun et al. 1998) as the course labs use it:
 * conv 5x5 -> 6 (pad 2), pool 2, conv 5x5 -> 16, pool 2, fc 120, fc 84, fc 10,
 * with a configurable activation (relu, tanh, gelu) and pooling (max, avg). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/rng.h"
#include "model.h"

enum { P_C1W, P_C1B, P_C2W, P_C2B, P_F1W, P_F1B, P_F2W, P_F2B, P_F3W, P_F3B, P_COUNT };

typedef struct lenet5 {
  dt_model m;
  dt_param table[P_COUNT];
  dt_act act;
  int maxpool;
  dt_conv2d_shape c1, c2;   /* shapes at max_batch; n is set per call */
  dt_pool2d_shape s1, s2;
  /* activations at max_batch (device) */
  float *a1, *h1, *p1;      /* (N,6,28,28) (N,6,28,28) (N,6,14,14) */
  float *a2, *h2, *p2;      /* (N,16,10,10) (N,16,10,10) (N,16,5,5) */
  float *a3, *h3;           /* (N,120) */
  float *a4, *h4;           /* (N,84) */
  float *logits, *dlogits;  /* (N,10) */
  float *d0, *d1;           /* activation-gradient scratch, each as large as the largest activation */
  void *ws;                 /* conv workspace */
} lenet5;

static void act_fwd(lenet5 *L, float *out, const float *in, size_t n) {
  L->m.be->k->act_forward(L->m.be->ctx, L->act, out, in, n);
}

static void pool_fwd(lenet5 *L, float *out, const float *in, const dt_pool2d_shape *s) {
  const dt_kernels *k = L->m.be->k;
  if (L->maxpool) k->maxpool2d_forward(L->m.be->ctx, out, in, s);
  else k->avgpool2d_forward(L->m.be->ctx, out, in, s);
}

static void pool_bwd(lenet5 *L, float *din, const float *dout, const float *in,
                     const dt_pool2d_shape *s) {
  const dt_kernels *k = L->m.be->k;
  if (L->maxpool) k->maxpool2d_backward(L->m.be->ctx, din, dout, in, s);
  else k->avgpool2d_backward(L->m.be->ctx, din, dout, s);
}

static const float *lenet5_forward_backward(dt_model *m, const dt_batch *b, float *losses,
                                            float dscale) {
  lenet5 *L = (lenet5 *)m;
  const dt_kernels *k = m->be->k;
  void *ctx = m->be->ctx;
  const int n = b->n;
#define W(i) dt_model_param(m, i)
#define GW(i) dt_model_grad(m, i)
  /* each layer's weight and bias, fetched around their use (ZeRO-3 gathers
   * them; otherwise these do nothing) */
#define FETCH(w) dt_model_fetch(m, w, 2)
#define RELEASE(w) dt_model_release(m, w, 2)
  dt_conv2d_shape c1 = L->c1, c2 = L->c2;
  dt_pool2d_shape s1 = L->s1, s2 = L->s2;
  c1.n = c2.n = s1.n = s2.n = n;

  /* forward */
  FETCH(P_C1W);
  k->conv2d_forward(ctx, L->a1, b->x, W(P_C1W), W(P_C1B), &c1, L->ws);
  RELEASE(P_C1W);
  act_fwd(L, L->h1, L->a1, (size_t)n * 6 * 28 * 28);
  pool_fwd(L, L->p1, L->h1, &s1);
  FETCH(P_C2W);
  k->conv2d_forward(ctx, L->a2, L->p1, W(P_C2W), W(P_C2B), &c2, L->ws);
  RELEASE(P_C2W);
  act_fwd(L, L->h2, L->a2, (size_t)n * 16 * 10 * 10);
  pool_fwd(L, L->p2, L->h2, &s2);
  FETCH(P_F1W);
  k->linear_forward(ctx, L->a3, DT_F32, L->p2, DT_F32, W(P_F1W), W(P_F1B), n, 400, 120);
  RELEASE(P_F1W);
  act_fwd(L, L->h3, L->a3, (size_t)n * 120);
  FETCH(P_F2W);
  k->linear_forward(ctx, L->a4, DT_F32, L->h3, DT_F32, W(P_F2W), W(P_F2B), n, 120, 84);
  RELEASE(P_F2W);
  act_fwd(L, L->h4, L->a4, (size_t)n * 84);
  FETCH(P_F3W);
  k->linear_forward(ctx, L->logits, DT_F32, L->h4, DT_F32, W(P_F3W), W(P_F3B), n, 84, 10);
  RELEASE(P_F3W);
  k->softmax_xent(ctx, losses, dscale != 0.0f ? L->dlogits : NULL, L->logits, DT_F32, b->y, n, 10,
                  10, dscale);
  if (dscale == 0.0f) return L->logits;

  /* backward: activation gradients ping-pong between d0 and d1 */
  float *d0 = L->d0, *d1 = L->d1;
#define READY(w) dt_model_grad_ready(m, w), dt_model_grad_ready(m, w + 1)
  FETCH(P_F3W);
  k->linear_backward(ctx, d0, GW(P_F3W), GW(P_F3B), L->dlogits, DT_F32, L->h4, DT_F32, W(P_F3W),
                     n, 84, 10);
  RELEASE(P_F3W);
  READY(P_F3W);
  k->act_backward(ctx, L->act, d0, d0, L->a4, (size_t)n * 84);
  FETCH(P_F2W);
  k->linear_backward(ctx, d1, GW(P_F2W), GW(P_F2B), d0, DT_F32, L->h3, DT_F32, W(P_F2W), n, 120,
                     84);
  RELEASE(P_F2W);
  READY(P_F2W);
  k->act_backward(ctx, L->act, d1, d1, L->a3, (size_t)n * 120);
  FETCH(P_F1W);
  k->linear_backward(ctx, d0, GW(P_F1W), GW(P_F1B), d1, DT_F32, L->p2, DT_F32, W(P_F1W), n, 400,
                     120);
  RELEASE(P_F1W);
  READY(P_F1W);
  pool_bwd(L, d1, d0, L->h2, &s2);
  k->act_backward(ctx, L->act, d1, d1, L->a2, (size_t)n * 16 * 10 * 10);
  FETCH(P_C2W);
  k->conv2d_backward(ctx, d0, GW(P_C2W), GW(P_C2B), d1, L->p1, W(P_C2W), &c2, L->ws);
  RELEASE(P_C2W);
  READY(P_C2W);
  pool_bwd(L, d1, d0, L->h1, &s1);
  k->act_backward(ctx, L->act, d1, d1, L->a1, (size_t)n * 6 * 28 * 28);
  FETCH(P_C1W);
  k->conv2d_backward(ctx, NULL, GW(P_C1W), GW(P_C1B), d1, b->x, W(P_C1W), &c1, L->ws);
  RELEASE(P_C1W);
  READY(P_C1W);
#undef READY
#undef FETCH
#undef RELEASE
#undef W
#undef GW
  return L->logits;
}

/* Weights uniform in +-sqrt(6/fan_in) (He) for relu/gelu, +-sqrt(6/(fan_in+fan_out))
 * (Glorot) for tanh; biases zero. */
static void lenet5_init(dt_model *m, float *host_p, uint64_t seed) {
  lenet5 *L = (lenet5 *)m;
  memset(host_p, 0, m->nparams_total * sizeof(float));
  for (int i = 0; i < m->nparams; i++) {
    const dt_param *p = &m->params[i];
    if (!p->decay) continue;
    dt_rng r;
    dt_rng_seed(&r, seed, 1000 + (uint64_t)i);
    double bound = L->act == DT_ACT_TANH ? sqrt(6.0 / (double)(p->fan_in + p->fan_out))
                                         : sqrt(6.0 / (double)p->fan_in);
    for (size_t j = 0; j < p->count; j++)
      host_p[p->offset + j] = (float)((2.0 * dt_rng_uniform(&r) - 1.0) * bound);
  }
}

static void lenet5_destroy(dt_model *m) {
  lenet5 *L = (lenet5 *)m;
  dt_backend_t be = m->be;
  float *bufs[] = {L->a1, L->h1, L->p1, L->a2, L->h2, L->p2, L->a3, L->h3,
                   L->a4, L->h4, L->logits, L->dlogits, L->d0, L->d1, m->g};
  for (size_t i = 0; i < DT_ARRAY_LEN(bufs); i++)
    if (bufs[i]) be->free(be, bufs[i]); /* m->g may be the engine's to free (grad_ptr) */
  if (L->ws) be->free(be, L->ws);
  free(L);
}

static float *act_alloc(dt_model *m, size_t n) {
  m->activation_bytes += n * sizeof(float);
  return m->be->alloc(m->be, n * sizeof(float));
}

dt_model *dt_lenet5_create(const dt_config *cfg, dt_backend_t be, int max_batch, dt_error *err) {
  static const struct { const char *name; dt_act act; } acts[] = {
      {"relu", DT_ACT_RELU}, {"tanh", DT_ACT_TANH}, {"gelu", DT_ACT_GELU},
      {"gelu_tanh", DT_ACT_GELU_TANH}};
  int act = -1;
  for (size_t i = 0; i < DT_ARRAY_LEN(acts); i++)
    if (!strcmp(cfg->model_activation, acts[i].name)) act = (int)acts[i].act;
  if (act < 0) {
    dt_error_set(err, "[model] activation: '%s' is not one of relu|tanh|gelu|gelu_tanh",
                 cfg->model_activation);
    return NULL;
  }
  if (max_batch < 1) {
    dt_error_set(err, "lenet5: micro-batch size must be at least 1");
    return NULL;
  }
  lenet5 *L = dt_calloc(1, sizeof *L);
  dt_model *m = &L->m;
  m->family = "lenet5";
  m->be = be;
  m->params = L->table;
  m->in_c = 1, m->in_h = 28, m->in_w = 28, m->num_classes = 10;
  m->max_batch = max_batch;
  L->act = (dt_act)act;
  L->maxpool = strcmp(cfg->model_pool, "avg") != 0;

  int np = 0;
  size_t total = 0;
  dt_param_add(L->table, &np, &total, "conv1.weight", 4, (int64_t[]){6, 1, 5, 5}, 1, 25, 150);
  dt_param_add(L->table, &np, &total, "conv1.bias", 1, (int64_t[]){6}, 0, 25, 150);
  dt_param_add(L->table, &np, &total, "conv2.weight", 4, (int64_t[]){16, 6, 5, 5}, 1, 150, 400);
  dt_param_add(L->table, &np, &total, "conv2.bias", 1, (int64_t[]){16}, 0, 150, 400);
  dt_param_add(L->table, &np, &total, "fc1.weight", 2, (int64_t[]){120, 400}, 1, 400, 120);
  dt_param_add(L->table, &np, &total, "fc1.bias", 1, (int64_t[]){120}, 0, 400, 120);
  dt_param_add(L->table, &np, &total, "fc2.weight", 2, (int64_t[]){84, 120}, 1, 120, 84);
  dt_param_add(L->table, &np, &total, "fc2.bias", 1, (int64_t[]){84}, 0, 120, 84);
  dt_param_add(L->table, &np, &total, "fc3.weight", 2, (int64_t[]){10, 84}, 1, 84, 10);
  dt_param_add(L->table, &np, &total, "fc3.bias", 1, (int64_t[]){10}, 0, 84, 10);
  m->nparams = np;
  m->nparams_total = total;
  /* the parameters themselves belong to the engine (dt_model.p), which may
   * keep them whole or sharded */
  m->g = be->alloc(be, total * sizeof(float));
  be->memset0(be, m->g, total * sizeof(float));

  L->c1 = (dt_conv2d_shape){.n = max_batch, .c = 1, .h = 28, .w = 28, .oc = 6, .kh = 5, .kw = 5,
                            .stride = 1, .pad = 2};
  L->c2 = (dt_conv2d_shape){.n = max_batch, .c = 6, .h = 14, .w = 14, .oc = 16, .kh = 5, .kw = 5,
                            .stride = 1, .pad = 0};
  dt_conv2d_shape_init(&L->c1);
  dt_conv2d_shape_init(&L->c2);
  L->s1 = (dt_pool2d_shape){.n = max_batch, .c = 6, .h = 28, .w = 28, .k = 2, .stride = 2};
  L->s2 = (dt_pool2d_shape){.n = max_batch, .c = 16, .h = 10, .w = 10, .k = 2, .stride = 2};
  dt_pool2d_shape_init(&L->s1);
  dt_pool2d_shape_init(&L->s2);

  size_t N = (size_t)max_batch;
  L->a1 = act_alloc(m, N * 6 * 28 * 28);
  L->h1 = act_alloc(m, N * 6 * 28 * 28);
  L->p1 = act_alloc(m, N * 6 * 14 * 14);
  L->a2 = act_alloc(m, N * 16 * 10 * 10);
  L->h2 = act_alloc(m, N * 16 * 10 * 10);
  L->p2 = act_alloc(m, N * 400);
  L->a3 = act_alloc(m, N * 120);
  L->h3 = act_alloc(m, N * 120);
  L->a4 = act_alloc(m, N * 84);
  L->h4 = act_alloc(m, N * 84);
  L->logits = act_alloc(m, N * 10);
  L->dlogits = act_alloc(m, N * 10);
  L->d0 = act_alloc(m, N * 6 * 28 * 28);
  L->d1 = act_alloc(m, N * 6 * 28 * 28);
  size_t ws = DT_MAX(be->k->conv2d_workspace(be->ctx, &L->c1),
                     be->k->conv2d_workspace(be->ctx, &L->c2));
  L->ws = ws ? be->alloc(be, ws) : NULL;
  m->activation_bytes += ws;

  m->init = lenet5_init;
  m->forward_backward = lenet5_forward_backward;
  m->destroy = lenet5_destroy;
  m->impl = L;
  return m;
}
