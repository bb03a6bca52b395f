/* dp.c: gradient buckets, ZeRO shards, and the reductions between them. */
#include "dp.h"

#include <stdlib.h>
#include <string.h>

#include "watchdog.h"

/* The per-rank counts of the intersection of [lo, hi) with every shard. */
static void shard_counts_of(const dt_dp *dp, size_t lo, size_t hi, size_t *counts) {
  size_t start = 0;
  for (int r = 0; r < dp->comm->size; r++) {
    size_t s_lo = start, s_hi = start + dp->shard_counts[r];
    size_t a = lo > s_lo ? lo : s_lo, b = hi < s_hi ? hi : s_hi;
    counts[r] = b > a ? b - a : 0;
    start = s_hi;
  }
}

static void build_buckets(dt_dp *dp, double bucket_mb) {
  size_t cap = (size_t)(bucket_mb * 1024 * 1024 / sizeof(float));
  if (cap < 1) cap = 1;
  dp->buckets = dt_calloc((size_t)dp->nparams + 1, sizeof *dp->buckets);
  dp->param_bucket = dt_calloc((size_t)dp->nparams + 1, sizeof(int));
  /* walk parameters in backward order (last first); a bucket closes once it
   * holds cap elements. Ranges run to the next parameter's offset so the
   * buckets partition [0, total). */
  size_t hi = dp->total;
  dt_dp_bucket *b = NULL;
  for (int i = dp->nparams - 1; i >= 0; i--) {
    if (!b || b->hi - b->lo >= cap) {
      b = &dp->buckets[dp->nbuckets++];
      b->hi = hi;
      b->lo = hi;
    }
    b->lo = dp->params[i].offset;
    b->nparams++;
    dp->param_bucket[i] = dp->nbuckets - 1;
    hi = b->lo;
  }
  if (b && b->lo > 0) b->lo = 0;
  for (int k = 0; k < dp->nbuckets; k++) {
    dp->buckets[k].counts = dt_calloc((size_t)dp->comm->size, sizeof(size_t));
    shard_counts_of(dp, dp->buckets[k].lo, dp->buckets[k].hi, dp->buckets[k].counts);
  }
}

dt_dp *dt_dp_create(dt_comm_t comm, dt_backend_t be, const dt_param *params, int nparams,
                    size_t total, float *p, float *g, int zero, double bucket_mb) {
  dt_dp *dp = dt_calloc(1, sizeof *dp);
  dp->comm = comm, dp->be = be, dp->zero = zero;
  dp->params = params, dp->nparams = nparams, dp->total = total;
  dp->p = p, dp->g = g;
  int n = comm->size;
  dp->shard_counts = dt_calloc((size_t)n, sizeof(size_t));
  size_t per = (total + (size_t)n - 1) / (size_t)n, start = 0;
  for (int r = 0; r < n; r++) {
    size_t c = start + per <= total ? per : (start < total ? total - start : 0);
    dp->shard_counts[r] = c;
    if (r == comm->rank) dp->own_lo = start, dp->own_hi = start + c;
    start += c;
  }
  dp->opt_lo = zero ? dp->own_lo : 0;
  dp->opt_hi = zero ? dp->own_hi : total;
  if (zero >= 2) dp->gacc = be->alloc(be, (dp->own_hi - dp->own_lo + 1) * sizeof(float));
  build_buckets(dp, bucket_mb);
  return dp;
}

void dt_dp_destroy(dt_dp *dp) {
  if (!dp) return;
  for (int k = 0; k < dp->nbuckets; k++) free(dp->buckets[k].counts);
  free(dp->buckets);
  free(dp->param_bucket);
  free(dp->shard_counts);
  if (dp->gacc) dp->be->free(dp->be, dp->gacc);
  free(dp);
}

void dt_dp_micro_begin(dt_dp *dp, int first, int last) {
  dp->reducing = dp->comm->size > 1 && (dp->zero >= 2 || last);
  dp->first_micro = first;
  for (int k = 0; k < dp->nbuckets; k++) {
    dp->buckets[k].pending = dp->buckets[k].nparams;
    dp->buckets[k].launched = 0;
  }
}

static void launch(dt_dp *dp, dt_dp_bucket *b) {
  b->launched = 1;
  if (!dp->reducing) return;
  float *send = dp->g + b->lo;
  if (dp->zero == 0) {
    b->req = dp->comm->allreduce_async(dp->comm, send, send, b->hi - b->lo, DT_F32, DT_SUM);
  } else {
    size_t before = 0;
    for (int r = 0; r < dp->comm->rank; r++) before += b->counts[r];
    b->req = dp->comm->reduce_scatterv_async(dp->comm, send, send + before, b->counts, DT_F32,
                                             DT_SUM);
  }
}

void dt_dp_grad_ready(void *ctx, int i) {
  dt_dp *dp = ctx;
  dt_dp_bucket *b = &dp->buckets[dp->param_bucket[i]];
  if (--b->pending == 0 && !b->launched) launch(dp, b);
}

void dt_dp_micro_end(dt_dp *dp) {
  for (int k = 0; k < dp->nbuckets; k++)
    if (!dp->buckets[k].launched) launch(dp, &dp->buckets[k]);
  if (!dp->reducing) return;
  dt_watchdog_enter("the gradient reduction");
  for (int k = 0; k < dp->nbuckets; k++) {
    dp->comm->wait(dp->comm, dp->buckets[k].req);
    dp->buckets[k].req = NULL;
  }
  dt_watchdog_leave();
  if (dp->zero >= 2) {
    /* keep only the shard: the full buffer is scratch for the next micro-batch */
    size_t n = dp->own_hi - dp->own_lo;
    if (dp->first_micro) dp->be->d2d(dp->be, dp->gacc, dp->g + dp->own_lo, n * sizeof(float));
    else dp->be->k->axpy(dp->be->ctx, dp->gacc, 1.0f, dp->g + dp->own_lo, n);
  }
}

float *dt_dp_grads(dt_dp *dp) {
  if (dp->zero >= 2 && dp->comm->size > 1) return dp->gacc;
  return dp->g + dp->opt_lo;
}

void dt_dp_gather_params(dt_dp *dp) {
  if (dp->zero == 0 || dp->comm->size == 1) return;
  dt_watchdog_enter("the parameter all-gather");
  dp->comm->allgatherv(dp->comm, dp->p + dp->own_lo, dp->p, dp->shard_counts, DT_F32);
  dt_watchdog_leave();
}

double dt_dp_sum(dt_dp *dp, double x) {
  double y = x;
  if (dp->comm->size > 1) {
    dt_watchdog_enter("an all-reduce of step statistics");
    MPI_Allreduce(&x, &y, 1, MPI_DOUBLE, MPI_SUM, dp->comm->mpi);
    dt_watchdog_leave();
  }
  return y;
}

void dt_dp_memory(const dt_dp *dp, int nstates, size_t *param_bytes, size_t *grad_bytes,
                  size_t *optim_bytes) {
  size_t shard = dp->own_hi - dp->own_lo;
  *param_bytes = dp->total * sizeof(float);
  *grad_bytes = (dp->zero >= 2 ? shard : dp->total) * sizeof(float);
  *optim_bytes = (size_t)nstates * (dp->opt_hi - dp->opt_lo) * sizeof(float);
}
