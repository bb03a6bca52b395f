/* test_sampling.c: temperature, top-k and top-p sampling (runtime/sampling.c)
 * against distributions worked out here from the logits in float64 (sort,
 * keep the top k, then the fewest whose renormalised mass reaches p, then
 * renormalise), and 200,000 draws of each setting against them: every
 * token's frequency within 5 standard deviations, none outside the kept
 * set, the draws reproducible from the seed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "rng.h"
#include "sampling.h"

#define V 8
static const float logits[V] = {1.0f, 3.0f, -2.0f, 2.5f, 0.0f, 3.0f, -1.0f, 2.0f};

/* The reference: ids by logit (ties: lower id first), the cuts, renormalised. */
static void reference(double T, int k, double p, double *want) {
  int order[V];
  for (int i = 0; i < V; i++) order[i] = i;
  for (int i = 0; i < V; i++) /* insertion sort, most likely first */
    for (int j = i; j > 0 && (logits[order[j]] > logits[order[j - 1]] ||
                              (logits[order[j]] == logits[order[j - 1]] &&
                               order[j] < order[j - 1]));
         j--) {
      int t = order[j];
      order[j] = order[j - 1], order[j - 1] = t;
    }
  double w[V], total = 0;
  int n = k > 0 && k < V ? k : V;
  for (int i = 0; i < n; i++) total += w[i] = exp(logits[order[i]] / T);
  int m = n;
  if (p < 1) {
    double acc = 0;
    for (m = 0; m < n && acc < p * total;) acc += w[m++];
    if (m == 0) m = 1;
  }
  double kept = 0;
  for (int i = 0; i < m; i++) kept += w[i];
  for (int i = 0; i < V; i++) want[i] = 0;
  for (int i = 0; i < m; i++) want[order[i]] = w[i] / kept;
}

int main(void) {
  const struct {
    double T;
    int k;
    double p;
    int kept;
  } cases[] = {
      {1.0, 0, 1.0, 8},  /* plain softmax */
      {0.5, 0, 1.0, 8},  /* sharper */
      {1.0, 3, 1.0, 3},  /* top-k: ids 1, 5 (tied, both), 3 */
      {1.0, 0, 0.5, 2},  /* nucleus: 1 and 5 hold 0.27 each */
      {1.0, 0, 0.9, 4},  /* ... 1, 5, 3, 7 (0.94 of the mass) */
      {2.0, 4, 0.8, 3},  /* both, flatter: 1, 5, 3 of the top 4 */
      {1.0, 0, 1e-6, 1}, /* the most likely alone: id 1 (the tie's lower id) */
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const dt_sampler s = {cases[c].T, cases[c].k, cases[c].p};
    double want[V], got[V];
    reference(s.temperature, s.top_k, s.top_p, want);
    dt_sample_probs(logits, V, &s, got);
    double err = 0;
    int kept = 0;
    for (int i = 0; i < V; i++) err = fmax(err, fabs(got[i] - want[i])), kept += got[i] > 0;
    CHECK(err < 1e-12 && kept == cases[c].kept,
          "T=%g top_k=%d top_p=%g: %d tokens kept (want %d), probabilities within %.1e",
          s.temperature, s.top_k, s.top_p, kept, cases[c].kept, err);
    enum { N = 200000 };
    long count[V] = {0};
    dt_rng r;
    dt_rng_seed(&r, 11, c);
    for (int i = 0; i < N; i++) count[dt_sample_token(logits, V, &s, &r)]++;
    double worst = 0;
    int outside = 0;
    for (int i = 0; i < V; i++) {
      if (want[i] == 0) {
        outside += count[i] > 0;
        continue;
      }
      const double sd = sqrt(N * want[i] * (1 - want[i])) + 1e-9;
      worst = fmax(worst, fabs((double)count[i] - N * want[i]) / sd);
    }
    CHECK(worst < 5 && !outside, "... 200000 draws: worst %.2f standard deviations off, %d "
          "tokens drawn outside the kept set", worst, outside);
  }
  const dt_sampler s = {0.8, 5, 0.95};
  dt_rng a, b;
  dt_rng_seed(&a, 5, 0);
  dt_rng_seed(&b, 5, 0);
  int same = 1;
  for (int i = 0; i < 1000; i++) same &= dt_sample_token(logits, V, &s, &a) ==
                                          dt_sample_token(logits, V, &s, &b);
  CHECK(same, "the same seed draws the same tokens");
  return check_summary();
}
