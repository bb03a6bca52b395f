/* test_translate.c: models/translate.c on a tiny random Transformer (CPU).
 * Beam search wide enough to keep every prefix must return exactly the
 * best-scoring translation found by exhaustive search, where every prefix is
 * scored by a full teacher-forced forward of the model (not by the key/value
 * cache the decoder uses); beam 1 must equal greedy search done the same way;
 * sentences decoded together must give what each gives alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/translate.h"
#include "../runtime/beam.h"
#include "../runtime/rng.h"
#include "check.h"

/* pad 0, bos 1, eos 2; tokens 3..5 */
enum { V = 6, PAD = 0, BOS = 1, EOS = 2, MAXLEN = 4, NS = 12 };
static int32_t k_src[NS][5];
static int k_src_len[NS];

/* random sources of 1..5 tokens */
static void make_sources(void) {
  dt_rng r;
  dt_rng_seed(&r, 5, 5);
  for (int s = 0; s < NS; s++) {
    k_src_len[s] = 1 + (int)dt_rng_below(&r, 5);
    for (int j = 0; j < k_src_len[s]; j++) k_src[s][j] = 3 + (int32_t)dt_rng_below(&r, 3);
  }
}

static dt_model *make_model(dt_backend_t be) {
  dt_config cfg;
  dt_config_defaults(&cfg);
  snprintf(cfg.model_name, DT_STR, "transformer");
  cfg.model_n_embd = 16;
  cfg.model_n_head = 2;
  cfg.model_n_enc_layer = 1;
  cfg.model_n_dec_layer = 2;
  cfg.model_d_ff = 32;
  cfg.model_vocab_size = V;
  cfg.model_block_size = 8;
  cfg.train_label_smoothing = 0;
  dt_error err = {{0}};
  dt_model *m = dt_model_create(&cfg, be, NS, &err);
  if (!m) {
    printf("FAIL create: %s\n", err.msg);
    exit(1);
  }
  m->p = malloc(m->nparams_total * sizeof(float));
  m->init(m, m->p, 7);
  /* eos's row of the (shared) embedding, which is also the output
   * projection's, is zero: its logit is 0 while the others spread, so the
   * best translations are not all empty and the search has something to
   * find (the check below insists on an optimum of 2+ tokens) */
  for (int i = 0; i < m->nparams; i++)
    if (strstr(m->params[i].name, "embed_tokens"))
      memset(m->p + m->params[i].offset + (size_t)EOS * m->params[i].shape[1], 0,
             (size_t)m->params[i].shape[1] * sizeof(float));
  return m;
}

/* log p(next | source s, prefix) by a full forward of bos + prefix, with
 * the same masking of pad and bos as the translator */
static void next_logprobs(dt_model *m, int s, const int32_t *prefix, int len, double *lp) {
  int32_t src[8], tok[8], y[8];
  int32_t sl = k_src_len[s] + 1, tl = len + 1;
  for (int j = 0; j < sl; j++) src[j] = j < k_src_len[s] ? k_src[s][j] : EOS;
  tok[0] = BOS;
  for (int j = 0; j < len; j++) tok[j + 1] = prefix[j];
  for (int j = 0; j < tl; j++) y[j] = 3; /* any valid target: only logits are used */
  dt_batch b = {.n = 1, .t = tl, .tokens = tok, .y = y, .ts = sl, .src = src, .src_len = &sl,
                .tgt_len = &tl};
  float losses[8];
  const float *logits = m->forward_backward(m, &b, losses, 0.0f) + (size_t)len * V;
  double mx = -INFINITY, sum = 0;
  for (int v = 0; v < V; v++) mx = fmax(mx, logits[v]);
  for (int v = 0; v < V; v++) sum += exp((double)logits[v] - mx);
  for (int v = 0; v < V; v++) lp[v] = (double)logits[v] - mx - log(sum);
  lp[PAD] = lp[BOS] = -INFINITY;
}

typedef struct best {
  double score;
  int len;
  int32_t tok[MAXLEN];
} best;

static void dfs(dt_model *m, int s, int32_t *prefix, int depth, double sum, double alpha,
                best *b) {
  double lp[V];
  next_logprobs(m, s, prefix, depth, lp);
  for (int v = 0; v < V; v++) {
    if (lp[v] == -INFINITY) continue;
    double x = sum + lp[v];
    int len = depth + 1;
    prefix[depth] = v;
    if (v == EOS || len == MAXLEN) {
      double ns = x / dt_beam_length_penalty(len, alpha);
      if (ns > b->score) {
        b->score = ns;
        b->len = v == EOS ? depth : len;
        memcpy(b->tok, prefix, sizeof b->tok);
      }
      if (v == EOS) continue;
    }
    if (len < MAXLEN) dfs(m, s, prefix, len, x, alpha, b);
  }
}

static void translate(dt_model *m, int beam, double alpha, int max_sent, const int *which,
                      int n, int32_t **out, int *out_len, double *score) {
  dt_translate_opts o = {.beam = beam, .alpha = alpha, .len_a = 0, .len_b = MAXLEN,
                         .max_sent = max_sent, .bos = BOS, .eos = EOS, .pad = PAD};
  dt_error err = {{0}};
  dt_translator *t = dt_translator_create(m, &o, &err);
  if (!t) {
    printf("FAIL translator: %s\n", err.msg);
    exit(1);
  }
  const int32_t *src[NS];
  int len[NS];
  for (int i = 0; i < n; i++) src[i] = k_src[which[i]], len[i] = k_src_len[which[i]];
  dt_translate(t, n, src, len, out, out_len, score, NULL);
  dt_translator_free(t);
}

int main(void) {
  dt_error err = {{0}};
  dt_backend_t be = dt_backend_create("cpu", 0, 1, &err);
  if (!be) return printf("FAIL backend: %s\n", err.msg), 1;
  make_sources();
  dt_model *m = make_model(be);
  int all[NS];
  for (int s = 0; s < NS; s++) all[s] = s;
  const double alphas[] = {0.0, 1.0};
  for (int ai = 0; ai < 2; ai++) {
    double alpha = alphas[ai];
    int32_t *wide[NS], *one[NS];
    int wide_len[NS], one_len[NS];
    double wide_score[NS];
    /* 4 usable tokens, so at most 4^3 live prefixes before the last step */
    translate(m, 64, alpha, NS, all, NS, wide, wide_len, wide_score);
    translate(m, 1, alpha, NS, all, NS, one, one_len, NULL);
    int exact = 1, greedy = 1, longest = 0, beats_greedy = 0;
    double worst = 0;
    for (int s = 0; s < NS; s++) {
      best b = {-INFINITY, 0, {0}};
      int32_t prefix[MAXLEN];
      dfs(m, s, prefix, 0, 0.0, alpha, &b);
      longest = b.len > longest ? b.len : longest;
      /* the score too: the cached decoder must give the full forward's
       * log-probabilities along the way, not merely the same argmax */
      worst = fmax(worst, fabs(wide_score[s] - b.score));
      exact &= wide_len[s] == b.len && !memcmp(wide[s], b.tok, (size_t)b.len * sizeof(int32_t)) &&
               fabs(wide_score[s] - b.score) < 1e-5;
      /* greedy by full forwards */
      int32_t g[MAXLEN];
      int gl = 0;
      for (int t = 0; t < MAXLEN; t++) {
        double lp[V];
        next_logprobs(m, s, g, gl, lp);
        int arg = 0;
        for (int v = 1; v < V; v++)
          if (lp[v] > lp[arg]) arg = v;
        if (arg == EOS) break;
        g[gl++] = arg;
      }
      greedy &= one_len[s] == gl && !memcmp(one[s], g, (size_t)gl * sizeof(int32_t));
      /* an optimum that is not the greedy path leaves the best row at some
       * step, so it is only found if the cache follows the parents */
      beats_greedy += b.len != gl || memcmp(b.tok, g, (size_t)gl * sizeof(int32_t)) != 0;
      free(wide[s]), free(one[s]);
    }
    CHECK(exact && longest >= 2 && beats_greedy >= 1, "alpha %.1f: beam 64 returns the "
          "exhaustive optimum of %d sentences and its score (|diff| %.2g; longest optimum %d "
          "tokens; %d optima differ from greedy)", alpha, NS, worst, longest, beats_greedy);
    CHECK(greedy, "alpha %.1f: beam 1 is greedy search", alpha);
  }
  /* decoding together == decoding alone (padding of shorter sources) */
  int32_t *tog[NS], *alone;
  int tog_len[NS], alone_len, same = 1;
  translate(m, 4, 0.6, NS, all, NS, tog, tog_len, NULL);
  for (int s = 0; s < NS; s++) {
    translate(m, 4, 0.6, 1, &all[s], 1, &alone, &alone_len, NULL);
    same &= alone_len == tog_len[s] && !memcmp(alone, tog[s], (size_t)alone_len * 4);
    free(alone), free(tog[s]);
  }
  CHECK(same, "beam 4: %d sentences decoded together = each decoded alone", NS);
  free(m->p);
  m->p = NULL;
  dt_model_destroy(m);
  dt_backend_destroy(be);
  return check_summary();
}
