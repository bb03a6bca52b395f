/* beam.c: batched beam search; see beam.h. */
#include "beam.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dt.h"

int dt_beam_keep_all = 0;

double dt_beam_length_penalty(int len, double alpha) {
  return alpha == 0.0 ? 1.0 : pow((5.0 + len) / 6.0, alpha);
}

typedef struct cand {
  double score; /* sum of log-probabilities so far */
  int row, tok;
} cand;

static int by_score_desc(const void *pa, const void *pb) {
  const cand *a = pa, *b = pb;
  if (a->score != b->score) return a->score > b->score ? -1 : 1;
  if (a->row != b->row) return a->row < b->row ? -1 : 1; /* deterministic ties */
  return a->tok < b->tok ? -1 : a->tok > b->tok;
}

/* Keeps the best m candidates of a stream in a heap whose root is the worst
 * kept (by_score_desc order), so a row's V tokens cost V log m, not a sort. */
static void heap_sift_down(cand *h, int n, int i) {
  for (;;) {
    int l = 2 * i + 1, r = l + 1, w = i;
    if (l < n && by_score_desc(&h[l], &h[w]) > 0) w = l;
    if (r < n && by_score_desc(&h[r], &h[w]) > 0) w = r;
    if (w == i) return;
    cand t = h[i];
    h[i] = h[w], h[w] = t;
    i = w;
  }
}

static void heap_push(cand *h, int *n, int m, cand x) {
  if (*n < m) { /* sift up */
    int i = (*n)++;
    h[i] = x;
    while (i > 0 && by_score_desc(&h[(i - 1) / 2], &h[i]) < 0) {
      cand t = h[i];
      h[i] = h[(i - 1) / 2], h[(i - 1) / 2] = t;
      i = (i - 1) / 2;
    }
  } else if (by_score_desc(&x, &h[0]) < 0) { /* better than the worst kept */
    h[0] = x;
    heap_sift_down(h, *n, 0);
  }
}

typedef struct sentence {
  int done, nfinished;
  double best;      /* best finished normalised score */
  int best_len;
  int32_t *best_tok; /* (max_len) */
} sentence;

int dt_beam_search(int B, int K, int V, int32_t bos, int32_t eos, int max_len, double alpha,
                   dt_beam_step_fn step, void *ctx, dt_beam_result *out) {
  const int R = B * K;
  float *lp = dt_malloc((size_t)R * V * sizeof(float));
  int32_t *tokens = dt_malloc((size_t)R * sizeof(int32_t));
  int32_t *parents = dt_malloc((size_t)R * sizeof(int32_t));
  double *score = dt_malloc((size_t)R * sizeof(double)), *nscore = dt_malloc((size_t)R * sizeof(double));
  int32_t *hist = dt_calloc((size_t)R * (max_len + 1), sizeof(int32_t));
  int32_t *nhist = dt_calloc((size_t)R * (max_len + 1), sizeof(int32_t));
  cand *c = dt_malloc((size_t)K * (dt_beam_keep_all ? V : DT_MIN(2 * K, V)) * sizeof(cand));
  sentence *S = dt_calloc((size_t)B, sizeof(sentence));
  for (int b = 0; b < B; b++) {
    S[b].best = -INFINITY;
    S[b].best_tok = dt_calloc((size_t)max_len + 1, sizeof(int32_t));
  }
  /* only hypothesis 0 of each sentence is alive at first: the others would
   * duplicate it */
  for (int r = 0; r < R; r++) tokens[r] = bos, score[r] = r % K == 0 ? 0.0 : -INFINITY;
  int rc = 0;
  for (int t = 0; t < max_len; t++) {
    if ((rc = step(ctx, R, t ? parents : NULL, tokens, lp))) break;
    int all_done = 1;
    for (int b = 0; b < B; b++) {
      sentence *s = &S[b];
      /* Only the best 2K candidates of the sentence can matter: each row
       * has one eos, so among them at most K finish and at least K stay
       * live. Each row's best 2K are kept in a heap, then the union sorted. */
      int nc = 0, m = dt_beam_keep_all ? V : DT_MIN(2 * K, V);
      if (!s->done)
        for (int k = 0; k < K; k++) {
          int r = b * K + k, nh = 0;
          if (score[r] == -INFINITY) continue;
          cand *h = c + nc;
          for (int v = 0; v < V; v++) {
            double x = score[r] + (double)lp[(size_t)r * V + v];
            if (x > -INFINITY) heap_push(h, &nh, m, (cand){x, r, v});
          }
          nc += nh;
        }
      qsort(c, (size_t)nc, sizeof(cand), by_score_desc);
      int live = 0, last_step = t + 1 == max_len;
      for (int i = 0; i < nc && live < K && !s->done; i++) {
        int len = t + 1; /* tokens in the hypothesis, eos included */
        if (c[i].tok == eos || last_step) {
          /* at max_len a live hypothesis is finished as it stands */
          int keep = c[i].tok == eos ? t : t + 1;
          double ns = c[i].score / dt_beam_length_penalty(len, alpha);
          if (ns > s->best) {
            s->best = ns;
            s->best_len = keep;
            memcpy(s->best_tok, hist + (size_t)c[i].row * (max_len + 1), (size_t)t * sizeof(int32_t));
            if (keep > t) s->best_tok[t] = c[i].tok;
          }
          if (++s->nfinished >= K) s->done = 1;
          continue;
        }
        int r = b * K + live++;
        parents[r] = c[i].row;
        tokens[r] = c[i].tok;
        nscore[r] = c[i].score;
        memcpy(nhist + (size_t)r * (max_len + 1), hist + (size_t)c[i].row * (max_len + 1),
               (size_t)t * sizeof(int32_t));
        nhist[(size_t)r * (max_len + 1) + t] = c[i].tok;
      }
      /* log-probabilities are <= 0, so a live hypothesis only loses score;
       * with alpha = 0 none can beat the best finished one once below it
       * (with alpha > 0 the penalty can still lift it: keep searching) */
      if (!s->done && live > 0 && alpha == 0.0) {
        double top = -INFINITY;
        for (int k = 0; k < live; k++) top = DT_MAX(top, nscore[b * K + k]);
        if (top <= s->best) s->done = 1;
      }
      if (live == 0) s->done = 1;
      for (int k = s->done ? 0 : live; k < K; k++) {
        int r = b * K + k;
        parents[r] = r, tokens[r] = eos, nscore[r] = -INFINITY; /* idle row */
        memcpy(nhist + (size_t)r * (max_len + 1), hist + (size_t)r * (max_len + 1),
               (size_t)t * sizeof(int32_t));
      }
      all_done &= s->done;
    }
    double *ts = score; score = nscore; nscore = ts;
    int32_t *th = hist; hist = nhist; nhist = th;
    if (all_done) break;
  }
  if (rc == 0) {
    out->tokens = dt_calloc((size_t)B * (max_len > 0 ? max_len : 1), sizeof(int32_t));
    out->len = dt_calloc((size_t)B, sizeof(int));
    out->score = dt_calloc((size_t)B, sizeof(double));
    for (int b = 0; b < B; b++) {
      out->len[b] = S[b].best_len;
      out->score[b] = S[b].best;
      memcpy(out->tokens + (size_t)b * max_len, S[b].best_tok, (size_t)S[b].best_len * sizeof(int32_t));
    }
  }
  for (int b = 0; b < B; b++) free(S[b].best_tok);
  free(S), free(c), free(hist), free(nhist), free(score), free(nscore), free(parents);
  free(tokens), free(lp);
  return rc;
}

void dt_beam_result_free(dt_beam_result *r) {
  free(r->tokens), free(r->len), free(r->score);
  memset(r, 0, sizeof *r);
}
