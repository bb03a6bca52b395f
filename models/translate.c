/* translate.c: batched translation; see translate.h. */
#include "translate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/beam.h"

struct dt_translator {
  dt_model *m;
  dt_translate_opts o;
  dt_transformer_decode *d;
  int max_src, max_steps;
  int32_t *h_src, *h_len, *d_src, *d_len; /* (max_sent, max_src), (max_sent) */
  int32_t *d_tok, *d_parent;              /* (max_sent * beam) */
  float *h_logits;                        /* (max_sent * beam, V) */
};

dt_translator *dt_translator_create(dt_model *m, const dt_translate_opts *o, dt_error *err) {
  if (o->beam < 1 || o->max_sent < 1) {
    dt_error_set(err, "translate: beam = %d and batch = %d must be at least 1", o->beam,
                 o->max_sent);
    return NULL;
  }
  dt_translator *t = dt_calloc(1, sizeof *t);
  t->m = m;
  t->o = *o;
  t->max_src = m->max_src_t;
  t->max_steps = m->max_t;
  t->d = dt_transformer_decode_create(m, o->max_sent, o->beam, t->max_src, t->max_steps, err);
  if (!t->d) {
    free(t);
    return NULL;
  }
  dt_backend_t be = m->be;
  size_t K = (size_t)o->max_sent * o->beam;
  t->h_src = dt_malloc((size_t)o->max_sent * t->max_src * sizeof(int32_t));
  t->h_len = dt_malloc((size_t)o->max_sent * sizeof(int32_t));
  t->d_src = be->alloc(be, (size_t)o->max_sent * t->max_src * sizeof(int32_t));
  t->d_len = be->alloc(be, (size_t)o->max_sent * sizeof(int32_t));
  t->d_tok = be->alloc(be, K * sizeof(int32_t));
  t->d_parent = be->alloc(be, K * sizeof(int32_t));
  t->h_logits = dt_malloc(K * (size_t)m->num_classes * sizeof(float));
  return t;
}

void dt_translator_free(dt_translator *t) {
  if (!t) return;
  dt_backend_t be = t->m->be;
  dt_transformer_decode_free(t->d);
  be->free(be, t->d_src), be->free(be, t->d_len), be->free(be, t->d_tok);
  be->free(be, t->d_parent);
  free(t->h_src), free(t->h_len), free(t->h_logits);
  free(t);
}

/* The beam search's decoder: reorder the cache, feed one token per
 * hypothesis, and turn the logits into log-probabilities on the host. */
static int step(void *ctx, int rows, const int32_t *parents, const int32_t *tokens,
                float *logprobs) {
  dt_translator *t = ctx;
  dt_backend_t be = t->m->be;
  int V = t->m->num_classes;
  if (parents) {
    be->h2d(be, t->d_parent, parents, (size_t)rows * sizeof(int32_t));
    dt_transformer_decode_reorder(t->d, t->d_parent);
  }
  be->h2d(be, t->d_tok, tokens, (size_t)rows * sizeof(int32_t));
  const float *logits = dt_transformer_decode_step(t->d, t->d_tok);
  be->d2h(be, t->h_logits, logits, (size_t)rows * V * sizeof(float));
  for (int r = 0; r < rows; r++) {
    const float *l = t->h_logits + (size_t)r * V;
    float *o = logprobs + (size_t)r * V;
    double mx = -INFINITY, sum = 0;
    for (int v = 0; v < V; v++) mx = fmax(mx, l[v]);
    for (int v = 0; v < V; v++) sum += exp((double)l[v] - mx);
    double lse = mx + log(sum);
    for (int v = 0; v < V; v++) o[v] = (float)((double)l[v] - lse);
    /* never emit padding or a second bos */
    o[t->o.pad] = -INFINITY;
    if (t->o.bos != t->o.eos) o[t->o.bos] = -INFINITY;
  }
  return 0;
}

static const int *g_len_key; /* qsort has no context argument in C11 */
static int by_len(const void *a, const void *b) {
  int ia = *(const int *)a, ib = *(const int *)b;
  if (g_len_key[ia] != g_len_key[ib]) return g_len_key[ia] < g_len_key[ib] ? -1 : 1;
  return ia < ib ? -1 : ia > ib;
}

void dt_translate(dt_translator *t, int n, const int32_t *const *src, const int *src_len,
                  int32_t **out, int *out_len, double *out_score, int64_t *truncated) {
  dt_backend_t be = t->m->be;
  int *order = dt_malloc((size_t)(n > 0 ? n : 1) * sizeof(int));
  for (int i = 0; i < n; i++) order[i] = i;
  g_len_key = src_len;
  qsort(order, (size_t)n, sizeof(int), by_len);
  for (int i0 = 0; i0 < n; i0 += t->o.max_sent) {
    int bn = DT_MIN(t->o.max_sent, n - i0), ts = 1;
    for (int j = 0; j < bn; j++) {
      int l = DT_MIN(src_len[order[i0 + j]], t->max_src - 1) + 1; /* + eos */
      if (src_len[order[i0 + j]] > t->max_src - 1 && truncated) (*truncated)++;
      ts = DT_MAX(ts, l);
    }
    for (int j = 0; j < bn; j++) {
      int i = order[i0 + j], l = DT_MIN(src_len[i], t->max_src - 1);
      int32_t *row = t->h_src + (size_t)j * ts;
      for (int k = 0; k < ts; k++) row[k] = k < l ? src[i][k] : k == l ? t->o.eos : t->o.pad;
      t->h_len[j] = l + 1;
    }
    be->h2d(be, t->d_src, t->h_src, (size_t)bn * ts * sizeof(int32_t));
    be->h2d(be, t->d_len, t->h_len, (size_t)bn * sizeof(int32_t));
    dt_transformer_encode(t->d, t->d_src, t->d_len, bn, ts);
    /* the decoder's positions bound the output: bos plus max_len tokens */
    int max_len = (int)DT_MIN((double)t->max_steps, t->o.len_a * (ts - 1) + t->o.len_b);
    if (max_len < 1) max_len = 1;
    dt_beam_result res;
    dt_beam_search(bn, t->o.beam, t->m->num_classes, t->o.bos, t->o.eos, max_len, t->o.alpha,
                   step, t, &res);
    for (int j = 0; j < bn; j++) {
      int i = order[i0 + j];
      out_len[i] = res.len[j];
      if (out_score) out_score[i] = res.score[j];
      out[i] = dt_malloc((size_t)(res.len[j] > 0 ? res.len[j] : 1) * sizeof(int32_t));
      memcpy(out[i], res.tokens + (size_t)j * max_len, (size_t)res.len[j] * sizeof(int32_t));
    }
    dt_beam_result_free(&res);
  }
  free(order);
}
