/* dp.c: gradient buckets, ZeRO shards, and the reductions between them. */
#include "dp.h"

#include <stdlib.h>
#include <string.h>

#include "../kernels/profile.h"
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

/* Cuts [0, total) into buckets in backward order (the last parameter
 * first); a bucket closes once it holds bucket_mb, and its range runs to
 * the next parameter's offset so the buckets partition [0, total). Fills
 * lo/hi/nparams of up to nparams buckets and each parameter's bucket
 * (param_bucket may be NULL); returns the count. */
static int cut_buckets(const dt_param *params, int nparams, size_t total, double bucket_mb,
                       dt_dp_bucket *out, int *param_bucket) {
  size_t cap = (size_t)(bucket_mb * 1024 * 1024 / sizeof(float));
  if (cap < 1) cap = 1;
  int n = 0;
  size_t hi = total;
  dt_dp_bucket *b = NULL;
  for (int i = nparams - 1; i >= 0; i--) {
    if (!b || b->hi - b->lo >= cap) {
      b = &out[n++];
      b->hi = hi;
      b->lo = hi;
    }
    b->lo = params[i].offset;
    b->nparams++;
    if (param_bucket) param_bucket[i] = n - 1;
    hi = b->lo;
  }
  if (b && b->lo > 0) b->lo = 0;
  return n;
}

static void build_buckets(dt_dp *dp, double bucket_mb) {
  dp->buckets = dt_calloc((size_t)dp->nparams + 1, sizeof *dp->buckets);
  dp->param_bucket = dt_calloc((size_t)dp->nparams + 1, sizeof(int));
  dp->nbuckets = cut_buckets(dp->params, dp->nparams, dp->total, bucket_mb, dp->buckets,
                             dp->param_bucket);
  for (int k = 0; k < dp->nbuckets; k++) {
    dp->buckets[k].buf = -1;
    dp->buckets[k].counts = dt_calloc((size_t)dp->comm->size, sizeof(size_t));
    shard_counts_of(dp, dp->buckets[k].lo, dp->buckets[k].hi, dp->buckets[k].counts);
  }
}

/* Rank r of n's shard [lo, hi) of [0, total): ceil(total/n) elements each,
 * the last ranks fewer (or none) */
static void shard_of(size_t total, int n, int r, size_t *lo, size_t *hi) {
  const size_t per = (total + (size_t)n - 1) / (size_t)n;
  *lo = DT_MIN((size_t)r * per, total);
  *hi = DT_MIN(*lo + per, total);
}

dt_dp *dt_dp_create(dt_comm_t comm, dt_backend_t be, const dt_param *params, int nparams,
                    size_t total, float *g, int zero, double bucket_mb, dt_dtype wire) {
  dt_dp *dp = dt_calloc(1, sizeof *dp);
  dp->comm = comm, dp->be = be, dp->zero = zero;
  dp->wire = wire == DT_BF16 ? DT_BF16 : DT_F32;
  dp->params = params, dp->nparams = nparams, dp->total = total;
  dp->g = g;
  int n = comm->size;
  dp->shard_counts = dt_calloc((size_t)n, sizeof(size_t));
  for (int r = 0; r < n; r++) {
    size_t lo, hi;
    shard_of(total, n, r, &lo, &hi);
    dp->shard_counts[r] = hi - lo;
    if (r == comm->rank) dp->own_lo = lo, dp->own_hi = hi;
  }
  dp->opt_lo = zero ? dp->own_lo : 0;
  dp->opt_hi = zero ? dp->own_hi : total;
  if (zero >= 2) dp->gacc = be->alloc(be, (dp->own_hi - dp->own_lo + 1) * sizeof(float));
  dp->pstore_lo = zero >= 3 ? dp->own_lo : 0;
  dp->pstore_hi = zero >= 3 ? dp->own_hi : total;
  dp->pstore = be->alloc(be, (dp->pstore_hi - dp->pstore_lo + 1) * sizeof(float));
  be->memset0(be, dp->pstore, (dp->pstore_hi - dp->pstore_lo + 1) * sizeof(float));
  if (zero >= 3) {
    dp->param_ptr = dt_calloc((size_t)nparams + 1, sizeof(float *));
    for (int s = 0; s < 2; s++) dp->slots[s].counts = dt_calloc((size_t)n, sizeof(size_t));
  }
  build_buckets(dp, bucket_mb);
  /* ZeRO-0/1 reduce every bucket at once after the last micro-batch, so
   * the bf16 copy covers the model; ZeRO-2/3's lives with the pool */
  if (dp->wire == DT_BF16 && n > 1 && !dt_dp_grads_sharded(dp))
    dp->wire_buf = be->alloc(be, total * sizeof(uint16_t));
  return dp;
}

/* ---- ZeRO-3: parameter groups gathered on use ---- */

static void group_range(const dt_dp *dp, int first, int count, size_t *lo, size_t *hi) {
  *lo = dp->params[first].offset;
  *hi = dp->params[first + count - 1].offset + dp->params[first + count - 1].count;
}

/* Starts gathering group (first, count) into slot s. */
static void gather_start(dt_dp *dp, dt_dp_slot *s, int first, int count) {
  size_t lo, hi;
  group_range(dp, first, count, &lo, &hi);
  if (s->cap < hi - lo) {
    if (s->buf) dp->be->free(dp->be, s->buf);
    s->cap = hi - lo;
    s->buf = dp->be->alloc(dp->be, s->cap * sizeof(float));
  }
  shard_counts_of(dp, lo, hi, s->counts);
  size_t mine_lo = DT_MAX(lo, dp->own_lo);
  const float *send = dp->pstore + (mine_lo < dp->own_hi ? mine_lo - dp->own_lo : 0);
  s->req = dp->comm->allgatherv_async(dp->comm, send, s->buf, s->counts, DT_F32);
  s->first = first, s->count = count, s->state = 1;
}

static void slot_wait(dt_dp *dp, dt_dp_slot *s) {
  if (s->req) {
    dt_watchdog_enter("a ZeRO-3 parameter gather");
    dp->comm->wait(dp->comm, s->req);
    dt_watchdog_leave();
    s->req = NULL;
  }
}

static dt_dp_slot *slot_holding(dt_dp *dp, int first) {
  for (int i = 0; i < 2; i++)
    if (dp->slots[i].state && dp->slots[i].first == first) return &dp->slots[i];
  return NULL;
}

/* A slot not in use; a stale prefetch is finished and dropped. */
static dt_dp_slot *slot_free(dt_dp *dp) {
  for (int i = 0; i < 2; i++)
    if (dp->slots[i].state == 0) return &dp->slots[i];
  for (int i = 0; i < 2; i++)
    if (dp->slots[i].state == 1) {
      slot_wait(dp, &dp->slots[i]);
      dp->slots[i].state = 0;
      return &dp->slots[i];
    }
  dt_fatal("dtrain", "ZeRO-3: more than two parameter groups fetched at once", __FILE__,
           __LINE__, __func__, "slot_free");
}

void dt_dp_fetch(void *ctx, int first, int count) {
  dt_dp *dp = ctx;
  dt_dp_slot *s = slot_holding(dp, first);
  if (!s) {
    s = slot_free(dp);
    gather_start(dp, s, first, count);
  }
  slot_wait(dp, s);
  s->state = 2;
  size_t lo, hi;
  group_range(dp, first, count, &lo, &hi);
  for (int i = first; i < first + count; i++)
    dp->param_ptr[i] = s->buf + (dp->params[i].offset - lo);
  /* the first optimizer step records the order layers are fetched in; later
   * ones prefetch the group that comes next in it */
  if (!dp->seq_frozen) {
    if (dp->nseq == dp->seq_cap) {
      dp->seq_cap = dp->seq_cap ? 2 * dp->seq_cap : 16;
      int *grown = dt_calloc((size_t)dp->seq_cap, 2 * sizeof(int));
      if (dp->seq) memcpy(grown, dp->seq, (size_t)dp->nseq * 2 * sizeof(int));
      free(dp->seq);
      dp->seq = grown;
    }
    dp->seq[2 * dp->nseq] = first, dp->seq[2 * dp->nseq + 1] = count;
    dp->nseq++;
    return;
  }
  for (int j = dp->seq_pos; j + 1 < dp->nseq; j++) {
    if (dp->seq[2 * j] != first) continue;
    dp->seq_pos = j + 1;
    int next = dp->seq[2 * (j + 1)], ncount = dp->seq[2 * (j + 1) + 1];
    if (next != first && !slot_holding(dp, next))
      for (int i = 0; i < 2; i++)
        if (dp->slots[i].state == 0) {
          gather_start(dp, &dp->slots[i], next, ncount);
          dp->prefetches++;
          break;
        }
    break;
  }
}

void dt_dp_release(void *ctx, int first, int count) {
  dt_dp *dp = ctx;
  dt_dp_slot *s = slot_holding(dp, first);
  if (s && s->state == 2) s->state = 0;
  for (int i = first; i < first + count; i++) dp->param_ptr[i] = NULL;
}

void dt_dp_destroy(dt_dp *dp) {
  if (!dp) return;
  for (int k = 0; k < dp->nbuckets; k++) free(dp->buckets[k].counts);
  for (int s = 0; s < 2; s++) {
    slot_wait(dp, &dp->slots[s]);
    if (dp->slots[s].buf) dp->be->free(dp->be, dp->slots[s].buf);
    free(dp->slots[s].counts);
  }
  for (int i = 0; i < dp->npool; i++) {
    dp->be->free(dp->be, dp->pool[i]);
    if (dp->pool_wire) dp->be->free(dp->be, dp->pool_wire[i]);
  }
  free(dp->pool);
  free(dp->pool_wire);
  if (dp->wire_buf) dp->be->free(dp->be, dp->wire_buf);
  free(dp->pool_cap);
  free(dp->pool_bucket);
  free(dp->param_ptr);
  free(dp->seq);
  dp->be->free(dp->be, dp->pstore);
  free(dp->buckets);
  free(dp->param_bucket);
  free(dp->shard_counts);
  if (dp->gacc) dp->be->free(dp->be, dp->gacc);
  free(dp);
}

/* After the first micro-batch has recorded the order layers are fetched in:
 * both gather slots take the size of the largest group, once. */
static void freeze_sequence(dt_dp *dp) {
  if (dp->seq_frozen || dp->nseq == 0) return;
  dp->seq_frozen = 1;
  size_t most = 0, lo, hi;
  for (int j = 0; j < dp->nseq; j++) {
    group_range(dp, dp->seq[2 * j], dp->seq[2 * j + 1], &lo, &hi);
    most = DT_MAX(most, hi - lo);
  }
  for (int s = 0; s < 2; s++) {
    dt_dp_slot *sl = &dp->slots[s];
    if (sl->state || sl->cap >= most) continue;
    if (sl->buf) dp->be->free(dp->be, sl->buf);
    sl->cap = most;
    sl->buf = dp->be->alloc(dp->be, most * sizeof(float));
  }
}

/* Where this rank's block of bucket b starts within the bucket. */
static size_t rank_offset(const dt_dp *dp, const dt_dp_bucket *b) {
  size_t before = 0;
  for (int r = 0; r < dp->comm->rank; r++) before += b->counts[r];
  return before;
}

/* ---- ZeRO-2/3: backward's gradients in a pool of bucket buffers ---- */

/* This rank's part of a reduced bucket, in place in its buffer, into the
 * shard accumulator (copied on the step's first micro-batch, added after);
 * then the buffer goes back to the pool. */
static void bucket_fold(dt_dp *dp, dt_dp_bucket *b) {
  if (b->req) {
    dt_watchdog_enter("the gradient reduction");
    dp->comm->wait(dp->comm, b->req);
    dt_watchdog_leave();
    b->req = NULL;
  }
  const size_t before = rank_offset(dp, b), n = b->counts[dp->comm->rank];
  if (n) {
    float *mine = dp->pool[b->buf] + before, *acc = dp->gacc + (b->lo + before - dp->own_lo);
    if (dp->wire == DT_BF16)
      dp->be->k->from_bf16(dp->be->ctx, acc, dp->pool_wire[b->buf] + before, n,
                           !dp->first_micro);
    else if (dp->first_micro) dp->be->d2d(dp->be, acc, mine, n * sizeof(float));
    else dp->be->k->axpy(dp->be->ctx, acc, 1.0f, mine, n);
  }
  dp->pool_bucket[b->buf] = -1;
  b->buf = -1;
}

/* Lends bucket b a zeroed buffer that holds it: the smallest free one,
 * else the one of the oldest bucket whose reduction is in flight (finished
 * first), else a new one of b's size. A bucket as large as GPT's token
 * table gets a buffer of its own, the others share a few of theirs. */
static void bucket_open(dt_dp *dp, dt_dp_bucket *b) {
  const size_t need = b->hi - b->lo;
  int got = -1;
  for (int i = 0; i < dp->npool; i++)
    if (dp->pool_bucket[i] < 0 && dp->pool_cap[i] >= need &&
        (got < 0 || dp->pool_cap[i] < dp->pool_cap[got]))
      got = i;
  /* buckets launch in backward order, which is descending index order */
  for (int k = dp->nbuckets - 1; k >= 0 && got < 0; k--) {
    dt_dp_bucket *o = &dp->buckets[k];
    if (o->buf >= 0 && o->launched && dp->pool_cap[o->buf] >= need) {
      got = o->buf;
      bucket_fold(dp, o);
    }
  }
  if (got < 0) {
    const size_t n = (size_t)dp->npool + 1;
    dp->pool = realloc(dp->pool, n * sizeof *dp->pool);
    dp->pool_cap = realloc(dp->pool_cap, n * sizeof *dp->pool_cap);
    dp->pool_bucket = realloc(dp->pool_bucket, n * sizeof *dp->pool_bucket);
    dp->pool_wire = realloc(dp->pool_wire, n * sizeof *dp->pool_wire);
    if (!dp->pool || !dp->pool_cap || !dp->pool_bucket || !dp->pool_wire)
      dt_fatal("dtrain", "out of host memory", __FILE__, __LINE__, __func__, "realloc");
    dp->pool[dp->npool] = dp->be->alloc(dp->be, need * sizeof(float));
    dp->pool_wire[dp->npool] =
        dp->wire == DT_BF16 ? dp->be->alloc(dp->be, need * sizeof(uint16_t)) : NULL;
    dp->pool_cap[dp->npool] = need;
    got = dp->npool++;
  }
  dp->pool_bucket[got] = (int)(b - dp->buckets);
  b->buf = got;
  dp->be->memset0(dp->be, dp->pool[got], (b->hi - b->lo) * sizeof(float));
}

float *dt_dp_grad_ptr(void *ctx, int i) {
  dt_dp *dp = ctx;
  dt_dp_bucket *b = &dp->buckets[dp->param_bucket[i]];
  if (b->buf < 0) bucket_open(dp, b);
  return dp->pool[b->buf] + (dp->params[i].offset - b->lo);
}

size_t dt_dp_grad_scratch_bytes(const dt_dp *dp) {
  if (!dt_dp_grads_sharded(dp)) return dp->total * sizeof(float);
  size_t n = 0;
  for (int i = 0; i < dp->npool; i++) n += dp->pool_cap[i];
  return n * (sizeof(float) + (dp->wire == DT_BF16 ? sizeof(uint16_t) : 0));
}

void dt_dp_micro_begin(dt_dp *dp, int first, int last) {
  dp->seq_pos = 0;
  dp->reducing = dp->comm->size > 1 && (dp->zero >= 2 || last);
  dp->first_micro = first;
  dp->last_micro = last;
  for (int k = 0; k < dp->nbuckets; k++) {
    dp->buckets[k].pending = dp->buckets[k].nparams;
    dp->buckets[k].launched = 0;
  }
}

static void launch(dt_dp *dp, dt_dp_bucket *b) {
  b->launched = 1;
  if (!dp->reducing) return;
  float *send = dp->g + b->lo;
  if (dt_dp_grads_sharded(dp)) {
    /* a bucket backward wrote nothing into still owes its (zero) share */
    if (b->buf < 0) bucket_open(dp, b);
    send = dp->pool[b->buf];
  }
  const size_t n = b->hi - b->lo;
  void *buf = send; /* reduced in place: fp32, or its bf16 copy */
  if (dp->wire == DT_BF16) {
    uint16_t *w = dt_dp_grads_sharded(dp) ? dp->pool_wire[b->buf] : dp->wire_buf + b->lo;
    dp->be->k->to_bf16(dp->be->ctx, w, send, n);
    buf = w;
  }
  if (dp->zero == 0) {
    b->req = dp->comm->allreduce_async(dp->comm, buf, buf, n, dp->wire, DT_SUM);
  } else {
    char *mine = (char *)buf + rank_offset(dp, b) * dt_dtype_size(dp->wire);
    b->req = dp->comm->reduce_scatterv_async(dp->comm, buf, mine, b->counts, dp->wire, DT_SUM);
  }
}

/* ZeRO-0/1 in bf16: the reduced bucket (ZeRO-1: this rank's part of it)
 * widened back into the flat gradient. */
static void unwire(dt_dp *dp, const dt_dp_bucket *b) {
  const size_t off = dp->zero == 0 ? 0 : rank_offset(dp, b);
  const size_t n = dp->zero == 0 ? b->hi - b->lo : b->counts[dp->comm->rank];
  dp->be->k->from_bf16(dp->be->ctx, dp->g + b->lo + off, dp->wire_buf + b->lo + off, n, 0);
}

void dt_dp_grad_ready(void *ctx, int i) {
  dt_dp *dp = ctx;
  dt_dp_bucket *b = &dp->buckets[dp->param_bucket[i]];
  if (--b->pending == 0 && !b->launched) launch(dp, b);
}

static void micro_end(dt_dp *dp) {
  freeze_sequence(dp);
  /* after the step's last backward the optimizer changes the parameters: a
   * gather started ahead now (the recorded order wraps around to a forward
   * when a pipeline stage interleaves micro-batches) would hand the next
   * step the old values */
  if (dp->zero >= 3 && dp->last_micro)
    for (int i = 0; i < 2; i++)
      if (dp->slots[i].state == 1) {
        slot_wait(dp, &dp->slots[i]);
        dp->slots[i].state = 0;
      }
  for (int k = 0; k < dp->nbuckets; k++)
    if (!dp->buckets[k].launched) launch(dp, &dp->buckets[k]);
  if (!dp->reducing) return;
  if (dt_dp_grads_sharded(dp)) { /* ZeRO-2/3: every bucket's share into gacc */
    for (int k = 0; k < dp->nbuckets; k++)
      if (dp->buckets[k].buf >= 0) bucket_fold(dp, &dp->buckets[k]);
    return;
  }
  dt_watchdog_enter("the gradient reduction");
  for (int k = 0; k < dp->nbuckets; k++) {
    dp->comm->wait(dp->comm, dp->buckets[k].req);
    dp->buckets[k].req = NULL;
    if (dp->wire == DT_BF16) unwire(dp, &dp->buckets[k]);
  }
  dt_watchdog_leave();
}

void dt_dp_micro_end(dt_dp *dp) {
  /* [log] profile: what the reductions still take once backward is done */
  double t0 = dp->reducing ? dt_profile_comm_begin() : -1.0;
  micro_end(dp);
  dt_profile_comm_end(DT_PROF_DP_WAIT, t0, 0.0);
}

float *dt_dp_grads(dt_dp *dp) {
  if (dt_dp_grads_sharded(dp)) return dp->gacc;
  return dp->g + dp->opt_lo;
}

void dt_dp_gather_params(dt_dp *dp) {
  if (dp->zero == 0 || dp->zero >= 3 || dp->comm->size == 1) return;
  dt_watchdog_enter("the parameter all-gather");
  double t0 = dt_profile_comm_begin();
  dp->comm->allgatherv(dp->comm, dp->pstore + dp->own_lo, dp->pstore, dp->shard_counts, DT_F32);
  dt_profile_comm_end(DT_PROF_DP_GATHER, t0, (double)dp->total * sizeof(float));
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
  *param_bytes = (dp->pstore_hi - dp->pstore_lo + dp->slots[0].cap + dp->slots[1].cap) *
                 sizeof(float);
  *grad_bytes = (dp->zero >= 2 ? shard : dp->total) * sizeof(float) +
                (dp->wire_buf ? dp->total * sizeof(uint16_t) : 0);
  *optim_bytes = (size_t)nstates * (dp->opt_hi - dp->opt_lo) * sizeof(float);
}

void dt_dp_plan(const dt_param *params, int nparams, size_t total, int nranks, int rank,
                int zero, int nstates, double bucket_mb, dt_dtype wire,
                dt_dp_plan_bytes *out) {
  size_t lo, hi;
  shard_of(total, nranks, rank, &lo, &hi);
  const size_t shard = hi - lo;
  /* ZeRO-3's two gather slots hold at most the largest group a layer
   * fetches, which is one tensor or two neighbours (a weight and its bias,
   * GPT's wte and wpe) */
  size_t group = 0;
  for (int i = 0; zero >= 3 && i < nparams; i++)
    group = DT_MAX(group, params[i].count + (i + 1 < nparams ? params[i + 1].count : 0));
  out->param_bytes = ((zero >= 3 ? shard : total) + 2 * group) * sizeof(float);
  out->grad_bytes = (zero >= 2 ? shard : total) * sizeof(float);
  out->optim_bytes = (size_t)nstates * (zero ? shard : total) * sizeof(float);
  out->scratch_bytes = total * sizeof(float);
  if (zero < 2 && nranks > 1 && wire == DT_BF16) out->grad_bytes += total * sizeof(uint16_t);
  if (zero < 2 || nranks == 1) return;
  /* the pool: about the bucket backward keeps open longest (a tied token
   * table's, written at the head and finished at the embeddings) and two
   * more, one being written while the one before it is reduced */
  dt_dp_bucket *b = dt_calloc((size_t)nparams + 1, sizeof *b);
  const int nb = cut_buckets(params, nparams, total, bucket_mb, b, NULL);
  size_t big = 0, next = 0;
  for (int k = 0; k < nb; k++) {
    const size_t n = b[k].hi - b[k].lo;
    if (n > big) next = big, big = n;
    else if (n > next) next = n;
  }
  free(b);
  out->scratch_bytes = DT_MIN(total, big + 2 * next) *
                      (sizeof(float) + (wire == DT_BF16 ? sizeof(uint16_t) : 0));
}
