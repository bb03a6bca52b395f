/* test_beam.c: runtime/beam.c against exhaustive search and greedy search on
 * a toy decoder whose next-token distribution depends on the whole prefix
 * (a hash of it), kept per row and reordered by parents like a key/value
 * cache. Beam search wide enough to keep every prefix must find exactly the
 * best-scoring sequence over all of them; beam 1 must be greedy search. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/beam.h"
#include "check.h"

enum { V = 5, BOS = 1, EOS = 2, MAXLEN = 5 };

static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/* log-softmax of pseudo-random logits drawn from the prefix state */
static void toy_logprobs(uint64_t state, float *lp) {
  double z[V], mx = -1e30, sum = 0;
  for (int v = 0; v < V; v++) {
    z[v] = 3.0 * ((double)(mix(state * 31 + (uint64_t)v) >> 11) / 9007199254740992.0);
    if (v == EOS) z[v] -= 2.0; /* so that the best sequences are long ones */
    if (z[v] > mx) mx = z[v];
  }
  for (int v = 0; v < V; v++) sum += exp(z[v] - mx);
  for (int v = 0; v < V; v++) lp[v] = (float)(z[v] - mx - log(sum));
}

typedef struct toy {
  int K;
  uint64_t *state, *tmp; /* per row: hash of the sentence id and its prefix */
  int steps;
} toy;

static int toy_step(void *ctx, int rows, const int32_t *parents, const int32_t *tokens,
                    float *lp) {
  toy *d = ctx;
  for (int r = 0; r < rows; r++) {
    uint64_t prev = parents ? d->state[parents[r]] : mix(1000 + (uint64_t)(r / d->K));
    d->tmp[r] = parents ? mix(prev ^ (uint64_t)(tokens[r] + 1) * 0x100000001b3ULL) : prev;
  }
  memcpy(d->state, d->tmp, (size_t)rows * sizeof(uint64_t));
  for (int r = 0; r < rows; r++) toy_logprobs(d->state[r], lp + (size_t)r * V);
  d->steps++;
  return 0;
}

/* The same decoder over a 40-token vocabulary (eos made unlikely). */
enum { BIGV = 40 };
static int big_step(void *ctx, int rows, const int32_t *parents, const int32_t *tokens,
                    float *lp) {
  toy *d = ctx;
  for (int r = 0; r < rows; r++) {
    uint64_t prev = parents ? d->state[parents[r]] : mix(2000 + (uint64_t)(r / d->K));
    d->tmp[r] = parents ? mix(prev ^ (uint64_t)(tokens[r] + 1) * 0x100000001b3ULL) : prev;
  }
  memcpy(d->state, d->tmp, (size_t)rows * sizeof(uint64_t));
  for (int r = 0; r < rows; r++) {
    double z[BIGV], mx = -1e30, sum = 0;
    for (int v = 0; v < BIGV; v++) {
      z[v] = 4.0 * ((double)(mix(d->state[r] * 31 + (uint64_t)v) >> 11) / 9007199254740992.0);
      if (v == EOS) z[v] -= 1.0;
      mx = z[v] > mx ? z[v] : mx;
    }
    for (int v = 0; v < BIGV; v++) sum += exp(z[v] - mx);
    for (int v = 0; v < BIGV; v++) lp[(size_t)r * BIGV + v] = (float)(z[v] - mx - log(sum));
  }
  return 0;
}

/* Exhaustive: every sequence ending in eos within MAXLEN tokens, or of
 * MAXLEN tokens without eos. */
typedef struct best {
  double score;
  int len;
  int32_t tok[MAXLEN];
} best;

static void dfs(uint64_t state, int depth, double sum, int32_t *prefix, double alpha, best *b) {
  float lp[V];
  toy_logprobs(state, lp);
  for (int v = 0; v < V; v++) {
    double s = sum + lp[v];
    int len = depth + 1;
    prefix[depth] = v;
    if (v == EOS || len == MAXLEN) {
      double ns = s / dt_beam_length_penalty(len, alpha);
      if (ns > b->score) {
        b->score = ns;
        b->len = v == EOS ? depth : len;
        memcpy(b->tok, prefix, sizeof b->tok);
      }
      if (v == EOS) continue;
    }
    if (len < MAXLEN) dfs(mix(state ^ (uint64_t)(v + 1) * 0x100000001b3ULL), len, s, prefix, alpha, b);
  }
}

static void run(int B, int K, double alpha, dt_beam_result *res, int *steps) {
  toy d = {K, calloc((size_t)B * K, 8), calloc((size_t)B * K, 8), 0};
  int rc = dt_beam_search(B, K, V, BOS, EOS, MAXLEN, alpha, toy_step, &d, res);
  if (rc) printf("search failed\n"), exit(1);
  *steps = d.steps;
  free(d.state), free(d.tmp);
}

int main(void) {
  const int B = 4;
  const double alphas[] = {0.0, 0.6, 1.0};
  for (int ai = 0; ai < 3; ai++) {
    double alpha = alphas[ai];
    dt_beam_result wide, one, narrow;
    int steps;
    /* V^MAXLEN hypotheses: nothing is ever pruned */
    run(B, 3125, alpha, &wide, &steps);
    run(B, 1, alpha, &one, &steps);
    run(B, 3, alpha, &narrow, &steps);
    int exact = 1, greedy_ok = 1, narrow_ok = 1, longest = 0;
    double worst = 0;
    for (int b = 0; b < B; b++) {
      best e = {-INFINITY, 0, {0}};
      int32_t prefix[MAXLEN];
      dfs(mix(1000 + (uint64_t)b), 0, 0.0, prefix, alpha, &e);
      worst = fmax(worst, fabs(e.score - wide.score[b]));
      if (e.len > longest) longest = e.len;
      exact &= e.len == wide.len[b] && fabs(e.score - wide.score[b]) < 1e-9 &&
               !memcmp(e.tok, wide.tokens + b * MAXLEN, (size_t)e.len * sizeof(int32_t));
      narrow_ok &= narrow.score[b] <= e.score + 1e-12;
      /* greedy: the most likely token at every step until eos */
      uint64_t st = mix(1000 + (uint64_t)b);
      int len = 0;
      int32_t g[MAXLEN];
      double sum = 0;
      for (int t = 0; t < MAXLEN; t++) {
        float lp[V];
        toy_logprobs(st, lp);
        int arg = 0;
        for (int v = 1; v < V; v++)
          if (lp[v] > lp[arg]) arg = v;
        sum += lp[arg];
        if (arg == EOS) break;
        g[len++] = arg;
        st = mix(st ^ (uint64_t)(arg + 1) * 0x100000001b3ULL);
      }
      int glen_tokens = len < MAXLEN ? len + 1 : MAXLEN;
      greedy_ok &= one.len[b] == len && !memcmp(g, one.tokens + b * MAXLEN, (size_t)len * 4) &&
                   fabs(one.score[b] - sum / dt_beam_length_penalty(glen_tokens, alpha)) < 1e-9;
    }
    CHECK(exact && longest >= 3, "alpha %.1f: beam 3125 finds the exhaustive optimum for %d "
          "sentences (max |score diff| %.2g, longest optimum %d tokens)", alpha, B, worst, longest);
    CHECK(greedy_ok, "alpha %.1f: beam 1 is greedy search", alpha);
    CHECK(narrow_ok, "alpha %.1f: beam 3 never beats the optimum", alpha);
    dt_beam_result_free(&wide), dt_beam_result_free(&one), dt_beam_result_free(&narrow);
  }
  /* a vocabulary much larger than 2K: keeping each row's best 2K
   * candidates must give exactly what sorting all of them gives */
  for (int K = 1; K <= 4; K++) {
    int same = 1;
    for (int keep = 0; keep < 2; keep++) {
      static dt_beam_result r2[2];
      dt_beam_keep_all = keep;
      toy d = {K, calloc((size_t)8 * K, 8), calloc((size_t)8 * K, 8), 0};
      dt_beam_search(8, K, BIGV, BOS, EOS, MAXLEN, 0.6, big_step, &d, &r2[keep]);
      free(d.state), free(d.tmp);
      if (keep) {
        for (int b = 0; b < 8; b++)
          same &= r2[0].len[b] == r2[1].len[b] && r2[0].score[b] == r2[1].score[b] &&
                  !memcmp(r2[0].tokens + b * MAXLEN, r2[1].tokens + b * MAXLEN,
                          (size_t)r2[0].len[b] * sizeof(int32_t));
        dt_beam_result_free(&r2[0]), dt_beam_result_free(&r2[1]);
      }
    }
    dt_beam_keep_all = 0;
    CHECK(same, "beam %d over %d tokens: each row's best %d candidates give the full sort's "
          "result for 8 sentences", K, BIGV, 2 * K);
  }
  return check_summary();
}
