/* sampling.c: temperature, top-k and top-p sampling of a token. */
#include "sampling.h"

#include <math.h>
#include <stdlib.h>

#include "dt.h"

typedef struct cand {
  double p;   /* exp((logit - max) / temperature) */
  float logit;
  int32_t id;
} cand;

/* most likely first; equal logits by id */
static int by_logit(const void *a, const void *b) {
  const cand *x = a, *y = b;
  if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
  return (x->id > y->id) - (x->id < y->id);
}

/* The kept candidates, most likely first, in *c (malloc'ed): returns their
 * count and their unnormalised total. */
static int keep(const float *logits, int v, const dt_sampler *s, cand **out, double *total) {
  cand *c = dt_malloc((size_t)(v > 0 ? v : 1) * sizeof *c);
  float mx = -INFINITY;
  for (int j = 0; j < v; j++) mx = fmaxf(mx, logits[j]);
  for (int j = 0; j < v; j++)
    c[j] = (cand){exp(((double)logits[j] - mx) / s->temperature), logits[j], j};
  qsort(c, (size_t)v, sizeof *c, by_logit);
  int n = s->top_k > 0 && s->top_k < v ? s->top_k : v;
  double sum = 0;
  for (int j = 0; j < n; j++) sum += c[j].p;
  if (s->top_p < 1) { /* the fewest whose share reaches top_p */
    double acc = 0;
    int m = 0;
    while (m < n && acc < s->top_p * sum) acc += c[m++].p;
    n = m > 0 ? m : 1;
    sum = 0;
    for (int j = 0; j < n; j++) sum += c[j].p;
  }
  *out = c;
  *total = sum;
  return n;
}

void dt_sample_probs(const float *logits, int v, const dt_sampler *s, double *probs) {
  cand *c;
  double total;
  const int n = keep(logits, v, s, &c, &total);
  for (int j = 0; j < v; j++) probs[j] = 0;
  for (int j = 0; j < n; j++) probs[c[j].id] = c[j].p / total;
  free(c);
}

int32_t dt_sample_token(const float *logits, int v, const dt_sampler *s, dt_rng *r) {
  cand *c;
  double total;
  const int n = keep(logits, v, s, &c, &total);
  const double u = dt_rng_uniform(r) * total;
  double acc = 0;
  int32_t id = c[n - 1].id; /* where rounding leaves u past the last */
  for (int j = 0; j < n; j++) {
    acc += c[j].p;
    if (acc > u) {
      id = c[j].id;
      break;
    }
  }
  free(c);
  return id;
}
