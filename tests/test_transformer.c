/* test_transformer.c: models/transformer.c on the CPU backend: gradients by
 * central differences in every tensor (post/pre-LN, shared/separate
 * embeddings, relu/gelu, sinusoidal/learned positions), padding masks (a
 * padded batch equals its sentences alone), label smoothing and the ignore
 * index, ZeRO-3 fetch/release hooks, gradients final when announced,
 * incremental decoding against the teacher-forced forward, dropout (the
 * same checks in training mode, evaluation = no dropout, masks a function of
 * the seed and each sentence's place in the batch), and bad configs.
 * --backend cuda instead builds the model on the GPU and compares it with
 * the CPU one (logits, losses, gradients), and reruns the padding and decode
 * checks there; it exits 77 without a GPU.
 * Usage: test_transformer [--backend cpu|cuda] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/model.h"
#include "../models/transformer.h"
#include "../runtime/rng.h"
#include "check.h"

/* The tiny model: d 16, 2 heads, 1 + 2 layers, ff 32, vocab 23, 8 positions. */
enum { NB = 3, TS = 7, TT = 6, V = 23, PAD = 1 };
static const int32_t k_src_len[NB] = {7, 4, 2};
static const int32_t k_tgt_len[NB] = {6, 3, 5};

typedef struct variant {
  const char *norm, *act, *pos;
  int shared;
  double smoothing;
  double dropout;
} variant;

/* train.precision of the models make_model builds */
static const char *g_prec = "fp32";

static void tiny_config(dt_config *cfg, const variant *v) {
  dt_config_defaults(cfg);
  snprintf(cfg->train_precision, DT_STR, "%s", g_prec);
  snprintf(cfg->model_name, DT_STR, "transformer");
  cfg->model_n_embd = 16;
  cfg->model_n_head = 2;
  cfg->model_n_enc_layer = 1;
  cfg->model_n_dec_layer = 2;
  cfg->model_d_ff = 32;
  cfg->model_vocab_size = V;
  cfg->model_block_size = 8;
  snprintf(cfg->model_norm, DT_STR, "%s", v->norm);
  snprintf(cfg->model_activation, DT_STR, "%s", v->act);
  snprintf(cfg->model_pos, DT_STR, "%s", v->pos);
  cfg->model_share_embeddings = v->shared;
  cfg->train_label_smoothing = v->smoothing;
  cfg->model_dropout = v->dropout;
}

/* A padded batch: random ids, PAD past each length, y = -1 past tgt_len. */
typedef struct batch {
  int32_t src[NB * TS], tok[NB * TT], y[NB * TT];
  dt_batch b;
} batch;

static void make_batch(batch *bt, uint64_t seed, int use_tgt_len) {
  dt_rng r;
  dt_rng_seed(&r, seed, 1);
  for (int s = 0; s < NB; s++) {
    for (int j = 0; j < TS; j++)
      bt->src[s * TS + j] = j < k_src_len[s] ? 2 + (int32_t)dt_rng_below(&r, V - 2) : PAD;
    int tl = use_tgt_len ? k_tgt_len[s] : TT;
    for (int j = 0; j < TT; j++) {
      bt->tok[s * TT + j] = j < tl ? (j == 0 ? 0 : 2 + (int32_t)dt_rng_below(&r, V - 2)) : PAD;
      bt->y[s * TT + j] = j < tl ? 2 + (int32_t)dt_rng_below(&r, V - 2) : -1;
    }
  }
  bt->b = (dt_batch){.n = NB, .t = TT, .tokens = bt->tok, .y = bt->y, .ts = TS, .src = bt->src,
                     .src_len = k_src_len, .tgt_len = use_tgt_len ? k_tgt_len : NULL,
                     .seed = 0xd0d0 + seed};
}

static dt_model *make_model(dt_backend_t be, const variant *v, uint64_t seed) {
  dt_config cfg;
  tiny_config(&cfg, v);
  dt_error err = {{0}};
  dt_model *m = dt_model_create(&cfg, be, NB, &err);
  if (!m) {
    printf("FAIL create: %s\n", err.msg);
    exit(1);
  }
  m->p = malloc(m->nparams_total * sizeof(float));
  m->init(m, m->p, seed);
  /* break the init's symmetries (zero biases, unit LayerNorms) so every
   * tensor's gradient is exercised */
  dt_rng r;
  dt_rng_seed(&r, seed, 99);
  for (int i = 0; i < m->nparams; i++) {
    const dt_param *q = &m->params[i];
    if (q->ndims == 1)
      for (size_t j = 0; j < q->count; j++) m->p[q->offset + j] += (float)(0.2 * dt_rng_normal(&r));
  }
  return m;
}

/* sum of losses * dscale in double, the quantity the gradient is of */
static double run(dt_model *m, const dt_batch *b, float *losses, float dscale, int grad) {
  if (grad) memset(m->g, 0, m->nparams_total * sizeof(float));
  m->forward_backward(m, b, losses, grad ? dscale : 0.0f);
  double s = 0;
  for (int i = 0; i < b->n * b->t; i++) s += (double)losses[i] * dscale;
  return s;
}

/* [train] classifier_chunk = 4 (not dividing the 18 rows) and 1 against the
 * whole batch at once: the same losses in training and evaluation, and the
 * same gradients up to the order in which the output projection's gradient
 * sums its rows; no logits are returned once the batch takes two chunks. */
static void test_chunk(dt_backend_t be, const variant *v, const char *desc) {
  dt_model *m0 = make_model(be, v, 11);
  batch bt;
  make_batch(&bt, 5, 1);
  const size_t n = m0->nparams_total;
  float l0[NB * TT], e0[NB * TT], l1[NB * TT], e1[NB * TT];
  float *g0 = malloc(n * sizeof(float));
  run(m0, &bt.b, l0, 0.1f, 1);
  memcpy(g0, m0->g, n * sizeof(float));
  run(m0, &bt.b, e0, 0.1f, 0);
  double gmax = 0;
  for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(g0[i]));
  static const int chunks[] = {4, 1};
  for (int c = 0; c < 2; c++) {
    dt_config cfg;
    tiny_config(&cfg, v);
    cfg.train_classifier_chunk = chunks[c];
    dt_error err = {{0}};
    dt_model *m = dt_model_create(&cfg, be, NB, &err);
    if (!m) {
      printf("FAIL create classifier_chunk=%d: %s\n", chunks[c], err.msg);
      g_fail++;
      continue;
    }
    m->p = m0->p;
    memset(m->g, 0, n * sizeof(float));
    const float *lg = m->forward_backward(m, &bt.b, l1, 0.1f);
    run(m, &bt.b, e1, 0.1f, 0);
    double dl = 0, dg = 0;
    for (int i = 0; i < NB * TT; i++)
      dl = fmax(dl, fmax(fabs((double)l1[i] - l0[i]), fabs((double)e1[i] - e0[i])));
    for (size_t i = 0; i < n; i++) dg = fmax(dg, fabs((double)m->g[i] - g0[i]));
    CHECK(lg == NULL && dl <= 1e-6 && dg <= 1e-6 * gmax,
          "classifier_chunk=%d %-30s losses within %.2g, gradients %.2g of max |g|, no logits",
          chunks[c], desc, dl, dg / gmax);
    m->p = NULL;
    dt_model_destroy(m);
  }
  free(g0);
  free(m0->p);
  dt_model_destroy(m0);
}

/* How far a run (losses l, gradients g) is from a reference (l0, g0): the
 * worst relative loss difference over the nonzero (real) losses, and the
 * gradients' relative L2 distance. */
static void run_distance(const float *l, const float *l0, size_t nl, const float *g,
                         const float *g0, size_t n, double *dl, double *rel) {
  double e2 = 0, r2 = 0;
  *dl = 0;
  for (size_t i = 0; i < nl; i++)
    if (l0[i] != 0.0f) *dl = fmax(*dl, fabs((double)l[i] - l0[i]) / l0[i]);
  for (size_t i = 0; i < n; i++) {
    double d = (double)g[i] - g0[i];
    e2 += d * d, r2 += (double)g0[i] * g0[i];
  }
  *rel = sqrt(e2 / r2);
}

/* The activation bytes train.precision = bf16 saves, for the tiny model
 * (max_t = block_size = 8 rows per sentence on both sides): sub_acts' ln, a,
 * kv and c and the feed-forward's gradient dfc halved (2 of 4 bytes each),
 * and the (chunk, V) fp32 logits and dlogits (8 bytes an element) become one
 * bf16 buffer (2), the chunk being the whole micro-batch here. */
static size_t bf16_saved_bytes(const variant *v) {
  const size_t D = 16, F = 32, Le = 1, Ld = 2, R = NB * 8, S = NB * 8;
  const size_t pre = !strcmp(v->norm, "pre");
  size_t enc = (pre ? 2 * S * D : 0) + S * 4 * D + S * 2 * F;
  size_t dec = (pre ? 3 * R * D : 0) + R * 4 * D + (2 * R * D + S * 2 * D) + R * 2 * F;
  return 2 * (Le * enc + Ld * dec + (R > S ? R : S) * F) + 6 * R * V;
}

/* train.precision = bf16 (bf16 GEMM operands and bf16 activations, built
 * so): losses within 1% and gradients within 5% in relative L2 norm of
 * fp32's, and not the same bits; the activation bytes saved are the bf16
 * tensors' half; and incremental decoding, which keeps its own activations
 * in fp32, gives the bf16 teacher-forced logits to bf16 accuracy. */
static void test_bf16(dt_backend_t be, const variant *v, const char *desc) {
  dt_model *m = make_model(be, v, 11);
  g_prec = "bf16";
  dt_model *mb = make_model(be, v, 11);
  g_prec = "fp32";
  batch bt;
  make_batch(&bt, 5, 1);
  const size_t n = m->nparams_total;
  float l0[NB * TT], l1[NB * TT];
  run(m, &bt.b, l0, 0.1f, 1);
  be->set_matmul_precision(be, DT_PREC_BF16);
  run(mb, &bt.b, l1, 0.1f, 1);
  be->set_matmul_precision(be, DT_PREC_FP32);
  double dl, rel;
  run_distance(l1, l0, NB * TT, mb->g, m->g, n, &dl, &rel);
  CHECK(dl <= 0.01 && rel <= 0.05 && rel > 0,
        "bf16 %-30s losses within %.2g, gradients %.2g (rel. L2) of fp32", desc, dl, rel);
  const size_t saved = m->activation_bytes - mb->activation_bytes, want = bf16_saved_bytes(v);
  CHECK(saved == want, "bf16 %-30s activation bytes %zu -> %zu: %zu saved, formula %zu", desc,
        m->activation_bytes, mb->activation_bytes, saved, want);
  free(m->p);
  dt_model_destroy(m);
  free(mb->p);
  dt_model_destroy(mb);
}

static void test_gradients(dt_backend_t be, const variant *v, const char *desc) {
  dt_model *m = make_model(be, v, 11);
  batch bt;
  make_batch(&bt, 5, 1);
  float losses[NB * TT];
  const float dscale = 1.0f / 14.0f; /* 14 real target tokens */
  const double l0 = run(m, &bt.b, losses, dscale, 1);
  int pad_ok = 1;
  for (int s = 0; s < NB; s++)
    for (int j = k_tgt_len[s]; j < TT; j++) pad_ok &= losses[s * TT + j] == 0.0f;
  float *g = malloc(m->nparams_total * sizeof(float));
  memcpy(g, m->g, m->nparams_total * sizeof(float));
  dt_rng r;
  dt_rng_seed(&r, 3, 4);
  /* the differences are of the training loss (label smoothing, dropout
   * with the batch's fixed masks): evaluation would drop both.
   * central differences of an fp32 forward: the step trades truncation
   * (h^2) against rounding of the loss (~1e-7 / h). An entry whose one-sided
   * slopes disagree has a ReLU kink within h, where no difference quotient
   * is the derivative: it is skipped and counted. */
  const double h = 1e-3;
  int bad = 0, checked = 0, kinks = 0;
  double worst = 0;
  const char *worst_name = "";
  for (int i = 0; i < m->nparams; i++) {
    const dt_param *q = &m->params[i];
    for (int k = 0; k < 5; k++) {
      size_t j = q->offset + dt_rng_below(&r, q->count);
      float save = m->p[j];
      m->p[j] = save + (float)h;
      double lp = run(m, &bt.b, losses, dscale, 1);
      m->p[j] = save - (float)h;
      double lm = run(m, &bt.b, losses, dscale, 1);
      m->p[j] = save;
      double fd = (lp - lm) / (2 * h), an = g[j];
      if (fabs((lp - l0) - (l0 - lm)) / h > 0.1 * fabs(fd) + 2e-3) {
        kinks++;
        continue;
      }
      double excess = fabs(fd - an) / (2e-2 * fabs(an) + 3e-4);
      checked++;
      if (excess > 1) bad++;
      if (excess > worst) worst = excess, worst_name = q->name;
    }
  }
  CHECK(bad == 0 && pad_ok,
        "gradients %-34s %d entries of %d tensors (%d at kinks skipped), worst "
        "|fd-g|/(2e-2|g|+3e-4) = %.2f (%s)%s",
        desc, checked, m->nparams, kinks, worst, worst_name,
        pad_ok ? "" : "; padded losses not 0");
  free(g);
  free(m->p);
  dt_model_destroy(m);
}

/* A padded batch equals each sentence alone, unpadded. */
static void test_masks(dt_backend_t be, const variant *v) {
  dt_model *m = make_model(be, v, 21);
  batch bt;
  make_batch(&bt, 8, 1);
  size_t n = m->nparams_total;
  float losses[NB * TT], l1[TT];
  const float *lg = m->forward_backward(m, &bt.b, losses, 0.0f);
  float *logits = malloc(NB * TT * V * sizeof(float));
  memcpy(logits, lg, sizeof(float) * NB * TT * V);
  run(m, &bt.b, losses, 1.0f, 1);
  float *gbatch = malloc(n * sizeof(float)), *gsum = calloc(n, sizeof(float));
  memcpy(gbatch, m->g, n * sizeof(float));
  double dl = 0, dlog = 0;
  for (int s = 0; s < NB; s++) {
    int ts = k_src_len[s], t = k_tgt_len[s];
    dt_batch one = {.n = 1, .t = t, .tokens = bt.tok + s * TT, .y = bt.y + s * TT, .ts = ts,
                    .src = bt.src + s * TS, .src_len = &k_src_len[s], .tgt_len = &k_tgt_len[s]};
    memset(m->g, 0, n * sizeof(float));
    lg = m->forward_backward(m, &one, l1, 1.0f);
    for (int j = 0; j < t; j++) {
      dl = fmax(dl, fabs(l1[j] - losses[s * TT + j]));
      for (int c = 0; c < V; c++)
        dlog = fmax(dlog, fabs(lg[j * V + c] - logits[((size_t)s * TT + j) * V + c]));
    }
    for (size_t i = 0; i < n; i++) gsum[i] += m->g[i];
  }
  double dg = 0, gmax = 0;
  for (size_t i = 0; i < n; i++) {
    dg = fmax(dg, fabs(gsum[i] - gbatch[i]));
    gmax = fmax(gmax, fabs(gbatch[i]));
  }
  CHECK(dl <= 1e-5 && dlog <= 1e-5, "masks: padded batch vs sentences alone: max|dloss| %.2g, "
        "max|dlogit| %.2g", dl, dlog);
  CHECK(dg <= 1e-5 * fmax(1.0, gmax), "masks: batch gradient = sum of sentence gradients "
        "(max|diff| %.2g, max|g| %.2g)", dg, gmax);
  free(logits), free(gbatch), free(gsum), free(m->p);
  dt_model_destroy(m);
}

/* smoothing 0 is plain cross-entropy; negative targets are ignored */
static void test_smoothing(dt_backend_t be) {
  enum { N = 5, C = 11 };
  float x[N * C], l0[N], l1[N], d0[N * C], d1[N * C];
  int32_t t[N] = {3, -1, 0, 10, -1};
  dt_rng r;
  dt_rng_seed(&r, 1, 2);
  for (int i = 0; i < N * C; i++) x[i] = (float)(3 * dt_rng_normal(&r));
  be->k->softmax_xent_smooth(be->ctx, l0, d0, x, DT_F32, t, N, C, 0.5f, 0.0f);
  int32_t tp[N];
  for (int i = 0; i < N; i++) tp[i] = t[i] < 0 ? 0 : t[i];
  be->k->softmax_xent(be->ctx, l1, d1, x, DT_F32, tp, N, C, C, 0.5f);
  int same = 1, ign = 1;
  for (int i = 0; i < N; i++) {
    if (t[i] < 0) {
      ign &= l0[i] == 0.0f;
      for (int j = 0; j < C; j++) ign &= d0[i * C + j] == 0.0f;
      continue;
    }
    same &= fabsf(l0[i] - l1[i]) <= 1e-6f * fabsf(l1[i]) + 1e-7f;
    for (int j = 0; j < C; j++) same &= fabsf(d0[i * C + j] - d1[i * C + j]) <= 1e-7f;
  }
  CHECK(same && ign, "label smoothing 0 == softmax_xent; targets < 0 give loss 0 and zero rows");
  /* and through the model: smoothing 0 vs 0.1 differ only where y >= 0 */
  variant v0 = {"post", "relu", "sinusoidal", 1, 0.0, 0}, v1 = v0;
  v1.smoothing = 0.1;
  dt_model *m0 = make_model(be, &v0, 2), *m1 = make_model(be, &v1, 2);
  batch bt;
  make_batch(&bt, 9, 1);
  float a[NB * TT], b[NB * TT], c[NB * TT];
  const float *lg = m0->forward_backward(m0, &bt.b, a, 0.0f);
  /* smoothing applies to training (dscale != 0); evaluation reports NLL */
  m1->forward_backward(m1, &bt.b, b, 1.0f);
  m1->forward_backward(m1, &bt.b, c, 0.0f);
  /* the model's losses against a float64 reference from its own logits */
  double err0 = 0, err1 = 0, err2 = 0;
  for (int i = 0; i < NB * TT; i++) {
    if (bt.y[i] < 0) {
      err0 = fmax(err0, fabs(a[i])), err1 = fmax(err1, fabs(b[i])), err2 = fmax(err2, fabs(c[i]));
      continue;
    }
    const float *row = lg + (size_t)i * V;
    double mx = row[0], s = 0, mean = 0;
    for (int j = 1; j < V; j++) mx = fmax(mx, row[j]);
    for (int j = 0; j < V; j++) s += exp(row[j] - mx), mean += row[j];
    double lse = log(s) + mx, nll = lse - row[bt.y[i]], smooth = lse - mean / V;
    err0 = fmax(err0, fabs(a[i] - nll));
    err1 = fmax(err1, fabs(b[i] - (0.9 * nll + 0.1 * smooth)));
    err2 = fmax(err2, fabs(c[i] - nll));
  }
  CHECK(err0 < 1e-5 && err1 < 1e-5 && err2 < 1e-5, "model losses: eps 0 = NLL (%.2g), eps 0.1 "
        "in training = PyTorch's label-smoothed loss (%.2g), in evaluation = NLL (%.2g), "
        "padding 0", err0, err1, err2);
  free(m0->p), free(m1->p);
  dt_model_destroy(m0), dt_model_destroy(m1);
}

/* ---- ZeRO-3 stand-in, as in test_gpt.c: a fetch copies a group into a fresh
 * slot, a release fills it with NaN ---- */
typedef struct zero3 {
  const dt_model *m;
  const float *shard;
  float **ptr, **slots;
  int *live, nslots, cap, bad, fetches;
} zero3;

static void z3_fetch(void *ctx, int first, int count) {
  zero3 *z = ctx;
  size_t n = 0;
  for (int i = first; i < first + count; i++) n += z->m->params[i].count;
  float *slot = malloc(n * sizeof(float));
  if (z->nslots == z->cap) {
    z->cap = z->cap ? 2 * z->cap : 64;
    z->slots = realloc(z->slots, (size_t)z->cap * sizeof *z->slots);
  }
  z->slots[z->nslots++] = slot;
  for (int i = first; i < first + count; i++) {
    const dt_param *p = &z->m->params[i];
    memcpy(slot, z->shard + p->offset, p->count * sizeof(float));
    z->ptr[i] = slot;
    slot += p->count;
    if (z->live[i]++) z->bad++;
  }
  z->fetches++;
}
static void z3_release(void *ctx, int first, int count) {
  zero3 *z = ctx;
  for (int i = first; i < first + count; i++) {
    const dt_param *p = &z->m->params[i];
    for (size_t j = 0; j < p->count; j++) z->ptr[i][j] = NAN;
    if (--z->live[i] != 0) z->bad++;
  }
}

typedef struct ready_log {
  const dt_model *m;
  int *calls;
  float *snapshot;
} ready_log;
static void on_ready(void *ctx, int i) {
  ready_log *r = ctx;
  const dt_param *p = &r->m->params[i];
  r->calls[i]++;
  memcpy(r->snapshot + p->offset, r->m->g + p->offset, p->count * sizeof(float));
}

static void test_zero3(dt_backend_t be, const variant *v, const char *desc) {
  dt_model *m = make_model(be, v, 31);
  batch bt;
  make_batch(&bt, 12, 1);
  size_t n = m->nparams_total;
  float l1[NB * TT], l2[NB * TT];
  ready_log rl = {m, calloc((size_t)m->nparams, sizeof(int)), calloc(n, sizeof(float))};
  m->grad_hook = on_ready;
  m->grad_hook_ctx = &rl;
  run(m, &bt.b, l1, 0.1f, 1);
  float *logits1 = malloc(sizeof(float) * NB * TT * V), *g1 = malloc(n * sizeof(float));
  /* training logits: with dropout they are not evaluation's */
  memset(m->g, 0, n * sizeof(float));
  memcpy(logits1, m->forward_backward(m, &bt.b, l1, 0.1f), sizeof(float) * NB * TT * V);
  memcpy(g1, m->g, n * sizeof(float));
  int once = 1;
  for (int i = 0; i < m->nparams; i++) once &= rl.calls[i] == 2;
  int final = memcmp(rl.snapshot, m->g, n * sizeof(float)) == 0;
  CHECK(once && final, "grad hooks %-30s every tensor announced once per backward, final when "
        "announced", desc);
  m->grad_hook = NULL;

  float *shard = m->p;
  zero3 z = {.m = m, .shard = shard};
  z.ptr = calloc((size_t)m->nparams, sizeof(float *));
  z.live = calloc((size_t)m->nparams, sizeof(int));
  m->p = NULL;
  m->param_ptr = z.ptr;
  m->param_fetch = z3_fetch;
  m->param_release = z3_release;
  m->param_hook_ctx = &z;
  memset(m->g, 0, n * sizeof(float));
  const float *logits = m->forward_backward(m, &bt.b, l2, 0.1f);
  int balanced = !z.bad;
  for (int i = 0; i < m->nparams; i++) balanced &= z.live[i] == 0;
  CHECK(balanced && z.fetches > 0 &&
            memcmp(logits, logits1, sizeof(float) * NB * TT * V) == 0 &&
            memcmp(l1, l2, sizeof l1) == 0 && memcmp(m->g, g1, n * sizeof(float)) == 0,
        "zero-3 %-35s %d fetches balanced, logits, losses, gradients bit-identical", desc,
        z.fetches);
  m->p = shard;
  m->param_fetch = m->param_release = NULL;
  m->param_ptr = NULL;
  for (int i = 0; i < z.nslots; i++) free(z.slots[i]);
  free(z.slots), free(z.ptr), free(z.live), free(rl.calls), free(rl.snapshot);
  free(logits1), free(g1), free(m->p);
  dt_model_destroy(m);
}

/* Incremental decoding with beam 2: hypothesis (s,0) follows batch A's
 * tokens, (s,1) batch B's; after step 3 they swap parents (and streams).
 * Every step's logits must equal the teacher-forced forward's. */
static void test_decode(dt_backend_t be, const variant *v, const char *desc) {
  const int bf16 = !strcmp(g_prec, "bf16");
  dt_model *m = make_model(be, v, 41);
  /* a bf16 model keeps no fp32 logits: the teacher-forced reference is the
   * same weights built with fp32 activations, under the same bf16 GEMMs */
  g_prec = "fp32";
  dt_model *ref = bf16 ? make_model(be, v, 41) : m;
  if (bf16) g_prec = "bf16", be->set_matmul_precision(be, DT_PREC_BF16);
  batch A, B;
  make_batch(&A, 14, 0);
  make_batch(&B, 15, 0);
  memcpy(B.src, A.src, sizeof A.src);
  float losses[NB * TT];
  float *la = malloc(sizeof(float) * NB * TT * V), *lb = malloc(sizeof(float) * NB * TT * V);
  memcpy(la, ref->forward_backward(ref, &A.b, losses, 0.0f), sizeof(float) * NB * TT * V);
  memcpy(lb, ref->forward_backward(ref, &B.b, losses, 0.0f), sizeof(float) * NB * TT * V);
  if (ref != m) free(ref->p), dt_model_destroy(ref);
  dt_error err = {{0}};
  dt_transformer_decode *d = dt_transformer_decode_create(m, NB, 2, TS, TT, &err);
  if (!d) {
    CHECK(0, "decode %s: %s", desc, err.msg);
    return;
  }
  dt_transformer_encode(d, A.src, k_src_len, NB, TS);
  double worst = 0, refmax = 0;
  int swapped = 0;
  for (int step = 0; step < TT; step++) {
    if (step == 3) {
      int32_t parent[2 * NB];
      for (int k = 0; k < 2 * NB; k++) parent[k] = k ^ 1;
      dt_transformer_decode_reorder(d, parent);
      swapped = 1;
    }
    int32_t tok[2 * NB];
    for (int s = 0; s < NB; s++)
      for (int h = 0; h < 2; h++) {
        int stream = h ^ swapped; /* 0: A, 1: B */
        tok[2 * s + h] = (stream ? B.tok : A.tok)[s * TT + step];
      }
    const float *lg = dt_transformer_decode_step(d, tok);
    for (int s = 0; s < NB; s++)
      for (int h = 0; h < 2; h++) {
        const float *ref = ((h ^ swapped) ? lb : la) + ((size_t)s * TT + step) * V;
        for (int c = 0; c < V; c++) {
          worst = fmax(worst, fabs(lg[(2 * s + h) * V + c] - ref[c]));
          refmax = fmax(refmax, fabs(ref[c]));
        }
      }
  }
  /* bf16: the decoder's encoder pass stores its activations in bf16, the
   * reference's in fp32: a few bf16 steps (2^-8 relative) apart */
  CHECK(worst <= (bf16 ? 1.5e-2 * fmax(1.0, refmax) : 1e-5) && dt_transformer_decode_len(d) == TT,
        "decode %-35s %s, %d steps, beam 2, reorder at step 3: max|logit - teacher forced| "
        "%.2g (max|logit| %.2g)", desc, g_prec, TT, worst, refmax);
  be->set_matmul_precision(be, DT_PREC_FP32);
  dt_transformer_decode_free(d);
  free(la), free(lb), free(m->p);
  dt_model_destroy(m);
}

/* Dropout: evaluation is the dropout-0 model bit for bit; training masks
 * are fixed by the seed (same bits again, another seed another loss); and
 * sentence s alone, unpadded, with sample0 = s gives the padded batch's
 * losses and gradient share, so masks follow the sentence, not the split
 * or the padding. (Gradients by central differences with dropout on are
 * test_gradients on the dropout variants.) */
static void test_dropout(dt_backend_t be, const variant *v, const char *desc) {
  variant v0 = *v;
  v0.dropout = 0;
  dt_model *m = make_model(be, v, 61), *m0 = make_model(be, &v0, 61);
  batch bt;
  make_batch(&bt, 17, 1);
  size_t n = m->nparams_total, NV = (size_t)NB * TT * V;
  float l0[NB * TT], l1[NB * TT], l2[NB * TT];
  float *lg0 = malloc(NV * sizeof(float));
  memcpy(lg0, m0->forward_backward(m0, &bt.b, l0, 0.0f), NV * sizeof(float));
  const float *lg1 = m->forward_backward(m, &bt.b, l1, 0.0f);
  CHECK(memcmp(lg0, lg1, NV * sizeof(float)) == 0 && memcmp(l0, l1, sizeof l0) == 0,
        "dropout %-34s evaluation (dscale 0) bit-identical to dropout 0", desc);

  const float dscale = 1.0f / 14.0f;
  double plain = run(m0, &bt.b, l0, dscale, 1), dropped = run(m, &bt.b, l1, dscale, 1);
  float *g1 = malloc(n * sizeof(float));
  memcpy(g1, m->g, n * sizeof(float));
  double again = run(m, &bt.b, l2, dscale, 1);
  int same = memcmp(l1, l2, sizeof l1) == 0 && memcmp(g1, m->g, n * sizeof(float)) == 0;
  bt.b.seed++;
  double other = run(m, &bt.b, l2, dscale, 1);
  bt.b.seed--;
  CHECK(dropped != plain && again == dropped && same && other != dropped,
        "dropout %-34s training loss %.6f (dropout 0: %.6f), same seed same bits, seed+1 %.6f",
        desc, dropped, plain, other);

  float *gsum = calloc(n, sizeof(float));
  double dl = 0;
  for (int s = 0; s < NB; s++) {
    int ts = k_src_len[s], t = k_tgt_len[s];
    dt_batch one = {.n = 1, .t = t, .tokens = bt.tok + s * TT, .y = bt.y + s * TT, .ts = ts,
                    .src = bt.src + s * TS, .src_len = &k_src_len[s], .tgt_len = &k_tgt_len[s],
                    .seed = bt.b.seed, .sample0 = s};
    float l[TT];
    run(m, &one, l, dscale, 1);
    for (int j = 0; j < t; j++) dl = fmax(dl, fabs(l[j] - l1[s * TT + j]));
    for (size_t i = 0; i < n; i++) gsum[i] += m->g[i];
  }
  double dg = 0, gmax = 0;
  for (size_t i = 0; i < n; i++) {
    dg = fmax(dg, fabs(gsum[i] - g1[i]));
    gmax = fmax(gmax, fabs(g1[i]));
  }
  CHECK(dl <= 1e-5 && dg <= 1e-5 * fmax(1.0, gmax),
        "dropout %-34s %d micro-batches of one unpadded sentence (sample0 = s) = the padded "
        "batch: max|dloss| %.2g, max|dg| %.2g", desc, NB, dl, dg);
  free(lg0), free(g1), free(gsum), free(m->p), free(m0->p);
  dt_model_destroy(m), dt_model_destroy(m0);
}

static void test_bad_configs(dt_backend_t be) {
  static const struct { const char *what, *key; } cases[] = {
      {"n_head 3 of d_model 16", "n_head"}, {"norm = mid", "norm"},
      {"pos = rope", "pos"},                {"dropout 1", "dropout"},
      {"activation tanh", "activation"},    {"seq_len > block_size", "seq_len"},
  };
  variant v = {"post", "relu", "sinusoidal", 1, 0.1, 0};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    dt_config cfg;
    tiny_config(&cfg, &v);
    switch (c) {
      case 0: cfg.model_n_head = 3; break;
      case 1: snprintf(cfg.model_norm, DT_STR, "mid"); break;
      case 2: snprintf(cfg.model_pos, DT_STR, "rope"); break;
      case 3: cfg.model_dropout = 1.0; break;
      case 4: snprintf(cfg.model_activation, DT_STR, "tanh"); break;
      case 5: cfg.train_seq_len = cfg.model_block_size + 1; break;
    }
    dt_error err = {{0}};
    dt_model *m = dt_model_create(&cfg, be, NB, &err);
    CHECK(m == NULL && strstr(err.msg, cases[c].key), "bad config: %-24s -> %s", cases[c].what,
          err.msg);
    dt_model_destroy(m);
  }
  /* the schema takes the keys */
  dt_config cfg;
  dt_config_defaults(&cfg);
  dt_error err = {{0}};
  const char *text = "[model]\nname = transformer\nnorm = pre\npos = learned\nn_enc_layer = 3\n"
                     "n_dec_layer = 3\nd_ff = 1024\nshare_embeddings = false\n"
                     "[train]\nlabel_smoothing = 0.1\n";
  int rc = dt_config_parse_text(&cfg, text, "inline", &err);
  CHECK(rc == 0 && !strcmp(cfg.model_norm, "pre") && cfg.model_n_dec_layer == 3 &&
            cfg.model_d_ff == 1024 && !cfg.model_share_embeddings &&
            fabs(cfg.train_label_smoothing - 0.1) < 1e-12,
        "config: transformer keys parse%s%s", rc ? ": " : "", rc ? err.msg : "");
}

/* ---- --backend cuda: the model on the device against the CPU model with
 * the same weights. Batches, parameters and results travel by h2d/d2h, so
 * these functions run on any backend. ---- */

static void *dev_dup(dt_backend_t be, const void *h, size_t bytes) {
  void *p = be->alloc(be, bytes);
  be->h2d(be, p, h, bytes);
  return p;
}

/* a device copy of a host batch; free with dev_batch_free */
typedef struct dev_batch {
  dt_batch b;
  void *buf[5];
} dev_batch;

static void dev_batch_make(dt_backend_t be, dev_batch *d, const dt_batch *h) {
  const size_t nt = (size_t)h->n * h->t * sizeof(int32_t);
  d->b = *h;
  d->b.tokens = d->buf[0] = dev_dup(be, h->tokens, nt);
  d->b.y = d->buf[1] = dev_dup(be, h->y, nt);
  d->b.src = d->buf[2] = dev_dup(be, h->src, (size_t)h->n * h->ts * sizeof(int32_t));
  d->b.src_len = d->buf[3] = dev_dup(be, h->src_len, (size_t)h->n * sizeof(int32_t));
  d->buf[4] = h->tgt_len ? dev_dup(be, h->tgt_len, (size_t)h->n * sizeof(int32_t)) : NULL;
  d->b.tgt_len = d->buf[4];
}
static void dev_batch_free(dt_backend_t be, dev_batch *d) {
  for (int i = 0; i < 5; i++)
    if (d->buf[i]) be->free(be, d->buf[i]);
}

/* the model of v on be with ref's weights */
static dt_model *dev_model(dt_backend_t be, const variant *v, const dt_model *ref) {
  dt_config cfg;
  tiny_config(&cfg, v);
  dt_error err = {{0}};
  dt_model *m = dt_model_create(&cfg, be, NB, &err);
  if (!m) {
    printf("FAIL create on %s: %s\n", be->desc, err.msg);
    exit(1);
  }
  m->p = dev_dup(be, ref->p, m->nparams_total * sizeof(float));
  return m;
}
static void dev_model_free(dt_model *m) {
  m->be->free(m->be, m->p);
  dt_model_destroy(m);
}

/* One forward(+backward) of a device batch; losses (n*t), logits (n*t*V)
 * and gradients (when training) back on the host; NULL skips one. */
static void dev_run(dt_model *m, const dt_batch *db, float *losses, float *logits, float *g,
                    float dscale) {
  dt_backend_t be = m->be;
  const size_t nl = (size_t)db->n * db->t;
  float *dl = be->alloc(be, nl * sizeof(float));
  if (dscale != 0.0f) be->memset0(be, m->g, m->nparams_total * sizeof(float));
  const float *lg = m->forward_backward(m, db, dl, dscale);
  be->d2h(be, losses, dl, nl * sizeof(float));
  if (logits) be->d2h(be, logits, lg, nl * V * sizeof(float));
  if (g && dscale != 0.0f) be->d2h(be, g, m->g, m->nparams_total * sizeof(float));
  be->free(be, dl);
}

/* max |a - b| over n, and max |b| */
static double maxdiff(const float *a, const float *b, size_t n, double *bmax) {
  double d = 0, mx = 0;
  for (size_t i = 0; i < n; i++) {
    d = fmax(d, fabs((double)a[i] - b[i]));
    mx = fmax(mx, fabs((double)b[i]));
  }
  if (bmax) *bmax = mx;
  return d;
}

/* logits, losses (evaluation and training) and every gradient on dev
 * against the CPU, within float32 accumulation-order differences; with
 * dropout the two backends draw the same masks (one hash), so the same
 * tolerance holds. */
static void dev_compare(dt_backend_t cpu, dt_backend_t dev, const variant *v, const char *desc) {
  dt_model *mc = make_model(cpu, v, 51), *md = dev_model(dev, v, mc);
  batch bt;
  make_batch(&bt, 16, 1);
  dev_batch db;
  dev_batch_make(dev, &db, &bt.b);
  const size_t NL = NB * TT, NV = NL * V, n = mc->nparams_total;
  float lc[NB * TT], ld[NB * TT];
  float *gc = malloc(n * sizeof(float)), *gd = malloc(n * sizeof(float));
  float *xc = malloc(NV * sizeof(float)), *xd = malloc(NV * sizeof(float));
  double lgmax, lmax, gmax;
  memcpy(xc, mc->forward_backward(mc, &bt.b, lc, 0.0f), NV * sizeof(float));
  dev_run(md, &db.b, ld, xd, NULL, 0.0f);
  double dlog = maxdiff(xd, xc, NV, &lgmax), dle = maxdiff(ld, lc, NL, &lmax);
  int ok_eval = dlog <= 1e-4 * fmax(1.0, lgmax) && dle <= 1e-4 * fmax(1.0, lmax);
  const float dscale = 1.0f / 14.0f;
  run(mc, &bt.b, lc, dscale, 1);
  memcpy(gc, mc->g, n * sizeof(float));
  dev_run(md, &db.b, ld, NULL, gd, dscale);
  double dlt = maxdiff(ld, lc, NL, &lmax), dg = maxdiff(gd, gc, n, &gmax);
  /* the worst tensor, relative to its own largest gradient */
  double worst = 0;
  const char *wname = "";
  for (int i = 0; i < mc->nparams; i++) {
    const dt_param *q = &mc->params[i];
    double qmax, d = maxdiff(gd + q->offset, gc + q->offset, q->count, &qmax);
    double r = d / fmax(qmax, 1e-3 * gmax);
    if (r > worst) worst = r, wname = q->name;
  }
  CHECK(ok_eval && dlt <= 1e-4 * fmax(1.0, lmax) && dg <= 1e-4 * gmax,
        "%s vs cpu %-30s eval max|dlogit| %.2g (max %.2g), |dloss| %.2g; train |dloss| %.2g, "
        "max|dg| %.2g of max|g| %.2g (worst tensor %.2g relative, %s)",
        "cuda", desc, dlog, lgmax, dle, dlt, dg, gmax, worst, wname);
  dev_batch_free(dev, &db);
  free(gc), free(gd), free(xc), free(xd), free(mc->p);
  dt_model_destroy(mc);
  dev_model_free(md);
}

/* train.precision = bf16 on dev against the CPU's bf16: the CPU rounds the
 * GEMM operands and the stored activations, the GPU also attention's P and
 * dS (kernels/attention.h), so the two agree to bf16 accuracy: losses
 * within 1% and gradients within 3% in relative L2 norm. */
static void dev_bf16(dt_backend_t cpu, dt_backend_t dev, const variant *v, const char *desc) {
  g_prec = "bf16";
  dt_model *mc = make_model(cpu, v, 53), *md = dev_model(dev, v, mc);
  g_prec = "fp32";
  cpu->set_matmul_precision(cpu, DT_PREC_BF16);
  dev->set_matmul_precision(dev, DT_PREC_BF16);
  batch bt;
  make_batch(&bt, 17, 1);
  dev_batch db;
  dev_batch_make(dev, &db, &bt.b);
  const size_t NL = NB * TT, n = mc->nparams_total;
  float lc[NB * TT], ld[NB * TT];
  float *gc = malloc(n * sizeof(float)), *gd = malloc(n * sizeof(float));
  const float dscale = 1.0f / 14.0f;
  run(mc, &bt.b, lc, dscale, 1);
  memcpy(gc, mc->g, n * sizeof(float));
  dev_run(md, &db.b, ld, NULL, gd, dscale);
  double dl, rel;
  run_distance(ld, lc, NL, gd, gc, n, &dl, &rel);
  CHECK(dl <= 0.01 && rel <= 0.03, "cuda vs cpu bf16 %-30s losses within %.2g, gradients %.2g "
        "(rel. L2)", desc, dl, rel);
  cpu->set_matmul_precision(cpu, DT_PREC_FP32);
  dev->set_matmul_precision(dev, DT_PREC_FP32);
  dev_batch_free(dev, &db);
  free(gc), free(gd), free(mc->p);
  dt_model_destroy(mc);
  dev_model_free(md);
}

/* test_masks on dev: a padded batch equals each sentence alone, unpadded
 * (with dropout, at sample0 = s, in training too) */
static void dev_masks(dt_backend_t cpu, dt_backend_t dev, const variant *v, const char *desc) {
  dt_model *mc = make_model(cpu, v, 21), *md = dev_model(dev, v, mc);
  batch bt;
  make_batch(&bt, 8, 1);
  dev_batch db;
  dev_batch_make(dev, &db, &bt.b);
  const size_t n = mc->nparams_total, NV = (size_t)NB * TT * V;
  float losses[NB * TT], ltrain[NB * TT], l1[TT];
  float *logits = malloc(NV * sizeof(float)), *lg1 = malloc((size_t)TT * V * sizeof(float));
  float *gbatch = malloc(n * sizeof(float)), *g1 = malloc(n * sizeof(float));
  float *gsum = calloc(n, sizeof(float));
  dev_run(md, &db.b, losses, logits, NULL, 0.0f);
  dev_run(md, &db.b, ltrain, NULL, gbatch, 1.0f);
  double dl = 0, dlog = 0, dlt = 0;
  for (int s = 0; s < NB; s++) {
    int ts = k_src_len[s], t = k_tgt_len[s];
    dt_batch one = {.n = 1, .t = t, .tokens = bt.tok + s * TT, .y = bt.y + s * TT, .ts = ts,
                    .src = bt.src + s * TS, .src_len = &k_src_len[s], .tgt_len = &k_tgt_len[s],
                    .seed = bt.b.seed, .sample0 = s};
    dev_batch d1;
    dev_batch_make(dev, &d1, &one);
    dev_run(md, &d1.b, l1, lg1, NULL, 0.0f);
    for (int j = 0; j < t; j++) {
      dl = fmax(dl, fabs(l1[j] - losses[s * TT + j]));
      for (int c = 0; c < V; c++)
        dlog = fmax(dlog, fabs(lg1[j * V + c] - logits[((size_t)s * TT + j) * V + c]));
    }
    dev_run(md, &d1.b, l1, NULL, g1, 1.0f);
    for (int j = 0; j < t; j++) dlt = fmax(dlt, fabs(l1[j] - ltrain[s * TT + j]));
    for (size_t i = 0; i < n; i++) gsum[i] += g1[i];
    dev_batch_free(dev, &d1);
  }
  double gmax, dg = maxdiff(gsum, gbatch, n, &gmax);
  /* 1e-4: cuBLAS may pick other reduction orders for other shapes */
  CHECK(dl <= 1e-4 && dlog <= 1e-4 && dlt <= 1e-4 && dg <= 1e-4 * fmax(1.0, gmax),
        "%s masks %-30s padded batch vs sentences alone: max|dloss| %.2g (training %.2g), "
        "max|dlogit| %.2g, gradient sum max|diff| %.2g (max|g| %.2g)",
        "cuda", desc, dl, dlt, dlog, dg, gmax);
  dev_batch_free(dev, &db);
  free(logits), free(lg1), free(gbatch), free(g1), free(gsum), free(mc->p);
  dt_model_destroy(mc);
  dev_model_free(md);
}

/* test_decode on dev: incremental decoding with beam 2 and a reorder at step
 * 3 against the teacher-forced forward, both on the device */
static void dev_decode(dt_backend_t cpu, dt_backend_t dev, const variant *v, const char *desc) {
  dt_model *mc = make_model(cpu, v, 41), *md = dev_model(dev, v, mc);
  batch A, B;
  make_batch(&A, 14, 0);
  make_batch(&B, 15, 0);
  memcpy(B.src, A.src, sizeof A.src);
  dev_batch da, dbb;
  dev_batch_make(dev, &da, &A.b);
  dev_batch_make(dev, &dbb, &B.b);
  const size_t NV = (size_t)NB * TT * V;
  float losses[NB * TT];
  float *la = malloc(NV * sizeof(float)), *lb = malloc(NV * sizeof(float));
  float *lg = malloc((size_t)2 * NB * V * sizeof(float));
  dev_run(md, &da.b, losses, la, NULL, 0.0f);
  dev_run(md, &dbb.b, losses, lb, NULL, 0.0f);
  dt_error err = {{0}};
  dt_transformer_decode *d = dt_transformer_decode_create(md, NB, 2, TS, TT, &err);
  if (!d) {
    CHECK(0, "%s decode %s: %s", "cuda", desc, err.msg);
    exit(1);
  }
  dt_transformer_encode(d, da.b.src, da.b.src_len, NB, TS);
  int32_t *dtok = dev->alloc(dev, 2 * NB * sizeof(int32_t));
  int32_t *dpar = dev->alloc(dev, 2 * NB * sizeof(int32_t));
  double worst = 0;
  int swapped = 0;
  for (int step = 0; step < TT; step++) {
    int32_t tok[2 * NB], parent[2 * NB];
    if (step == 3) {
      for (int k = 0; k < 2 * NB; k++) parent[k] = k ^ 1;
      dev->h2d(dev, dpar, parent, sizeof parent);
      dt_transformer_decode_reorder(d, dpar);
      swapped = 1;
    }
    for (int s = 0; s < NB; s++)
      for (int h = 0; h < 2; h++) tok[2 * s + h] = ((h ^ swapped) ? B.tok : A.tok)[s * TT + step];
    dev->h2d(dev, dtok, tok, sizeof tok);
    dev->d2h(dev, lg, dt_transformer_decode_step(d, dtok), (size_t)2 * NB * V * sizeof(float));
    for (int s = 0; s < NB; s++)
      for (int h = 0; h < 2; h++) {
        const float *ref = ((h ^ swapped) ? lb : la) + ((size_t)s * TT + step) * V;
        for (int c = 0; c < V; c++) worst = fmax(worst, fabs(lg[(2 * s + h) * V + c] - ref[c]));
      }
  }
  CHECK(worst <= 1e-4 && dt_transformer_decode_len(d) == TT,
        "%s decode %-30s %d steps, beam 2, reorder at step 3: max|logit - teacher forced| %.2g",
        "cuda", desc, TT, worst);
  dt_transformer_decode_free(d);
  dev->free(dev, dtok), dev->free(dev, dpar);
  dev_batch_free(dev, &da), dev_batch_free(dev, &dbb);
  free(la), free(lb), free(lg), free(mc->p);
  dt_model_destroy(mc);
  dev_model_free(md);
}

static const variant k_variants[] = {
    {"post", "relu", "sinusoidal", 1, 0.1, 0},   {"pre", "gelu", "learned", 0, 0.1, 0},
    {"post", "gelu", "learned", 0, 0.0, 0},      {"pre", "relu", "sinusoidal", 1, 0.2, 0},
    {"post", "relu", "sinusoidal", 1, 0.1, 0.2}, {"pre", "gelu", "learned", 0, 0.1, 0.2},
};

static void describe(char *desc, size_t cap, const variant *v) {
  int k = snprintf(desc, cap, "[%s %s %s %s eps=%.1f", v->norm, v->act, v->pos,
                   v->shared ? "shared" : "separate", v->smoothing);
  snprintf(desc + k, cap - (size_t)k, v->dropout > 0 ? " p=%.1f]" : "]", v->dropout);
}

static int run_cuda(void) {
  if (dt_cuda_device_count() < 1) {
    printf("skip: no CUDA device (%s)\n",
           dt_cuda_built() ? "built with CUDA, no GPU visible" : "built without CUDA");
    return 77;
  }
  dt_error err = {{0}};
  dt_backend_t gpu = dt_backend_cuda_create(0, &err);
  if (!gpu) {
    printf("FAIL cuda backend: %s\n0 passed, 1 failed\n", err.msg);
    return 1;
  }
  dt_backend_t cpu = dt_backend_cpu_create(1);
  printf("# backends: %s, %s\n", cpu->desc, gpu->desc);
  for (size_t i = 0; i < sizeof k_variants / sizeof k_variants[0]; i++) {
    char desc[96];
    describe(desc, sizeof desc, &k_variants[i]);
    dev_compare(cpu, gpu, &k_variants[i], desc);
    dev_bf16(cpu, gpu, &k_variants[i], desc);
    dev_masks(cpu, gpu, &k_variants[i], desc);
    dev_decode(cpu, gpu, &k_variants[i], desc);
  }
  dt_backend_destroy(gpu);
  dt_backend_destroy(cpu);
  return check_summary();
}

static void usage(void) {
  fprintf(stderr, "usage: test_transformer [--backend cpu|cuda]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *which = "cpu";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--backend") && i + 1 < argc) which = argv[++i];
    else if (!strncmp(argv[i], "--backend=", 10)) which = argv[i] + 10;
    else usage();
  }
  if (!strcmp(which, "cuda")) return run_cuda();
  if (strcmp(which, "cpu")) usage();
  dt_backend_t be = dt_backend_cpu_create(1);
  const size_t nv = sizeof k_variants / sizeof k_variants[0];
  for (size_t i = 0; i < nv; i++) {
    char desc[96];
    describe(desc, sizeof desc, &k_variants[i]);
    test_gradients(be, &k_variants[i], desc);
    test_zero3(be, &k_variants[i], desc);
    test_decode(be, &k_variants[i], desc);
    test_chunk(be, &k_variants[i], desc);
    test_bf16(be, &k_variants[i], desc);
    g_prec = "bf16";
    test_decode(be, &k_variants[i], desc);
    g_prec = "fp32";
    if (k_variants[i].dropout > 0) test_dropout(be, &k_variants[i], desc);
  }
  test_masks(be, &k_variants[0]);
  test_masks(be, &k_variants[1]);
  test_smoothing(be);
  test_bad_configs(be);
  dt_backend_destroy(be);
  return check_summary();
}
