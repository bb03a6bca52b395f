/* dp.h: data parallelism with ZeRO over the flat parameter/gradient buffers.
 * Gradients are cut into buckets in backward order; a bucket is reduced as
 * soon as backward has produced all of its gradients (the model calls
 * dt_dp_grad_ready), on the communicator's own stream, overlapping the rest
 * of backward. ZeRO stages (the paper's P_os, P_os+g):
 *   0  all-reduce gradients; every rank keeps full optimizer state;
 *   1  reduce-scatter gradients to their owners; each rank keeps and updates
 *      only its shard of the optimizer state and master weights, then the
 *      parameters are all-gathered;
 *   2  as 1, and gradients are reduce-scattered after every micro-batch into
 *      a shard accumulator, so only the gradient shard outlives backward.
 * The shard of rank r is the flat range [own_lo, own_hi), contiguous and in
 * rank order; checkpoints are written in these shards at every stage. */
#ifndef DT_DP_H
#define DT_DP_H

#include "../runtime/param.h"
#include "comm.h"

typedef struct dt_dp_bucket {
  size_t lo, hi;      /* flat range */
  int nparams, pending;
  int launched;
  dt_comm_req_t req;
  size_t *counts;     /* per-rank element counts of this bucket's shards */
} dt_dp_bucket;

typedef struct dt_dp {
  dt_comm_t comm;
  dt_backend_t be;
  int zero;
  const dt_param *params;
  int nparams;
  size_t total;               /* elements in the flat buffers */
  float *p, *g;               /* the model's buffers */
  size_t own_lo, own_hi;      /* this rank's shard */
  size_t opt_lo, opt_hi;      /* the range this rank's optimizer updates */
  size_t *shard_counts;       /* per rank */
  float *gacc;                /* ZeRO-2: accumulated gradient shard (own_hi-own_lo) */
  int nbuckets;
  dt_dp_bucket *buckets;
  int *param_bucket;          /* bucket of each parameter */
  int reducing;               /* this micro-batch's gradients are reduced */
  int first_micro;
} dt_dp;

dt_dp *dt_dp_create(dt_comm_t comm, dt_backend_t be, const dt_param *params, int nparams,
                    size_t total, float *p, float *g, int zero, double bucket_mb);
void dt_dp_destroy(dt_dp *dp);

/* Before a micro-batch's forward/backward. `last` = the last micro-batch of
 * the optimizer step (ZeRO 0/1 reduce only then; ZeRO 2 every time). */
void dt_dp_micro_begin(dt_dp *dp, int first, int last);
/* Called by the model during backward once parameter i's gradient is final
 * for this micro-batch. */
void dt_dp_grad_ready(void *dp, int param_index);
/* After the micro-batch's backward: launches buckets the model did not
 * report, waits for this micro-batch's reductions. */
void dt_dp_micro_end(dt_dp *dp);

/* The reduced (summed over ranks) gradient of flat index opt_lo. */
float *dt_dp_grads(dt_dp *dp);
/* ZeRO >= 1: all-gather the updated parameter shards. */
void dt_dp_gather_params(dt_dp *dp);
/* Sum of a host double over the data-parallel group. */
double dt_dp_sum(dt_dp *dp, double x);

/* Bytes this rank keeps for parameters, gradients and optimizer state
 * (nstates fp32 buffers), for the start-up memory table. */
void dt_dp_memory(const dt_dp *dp, int nstates, size_t *param_bytes, size_t *grad_bytes,
                  size_t *optim_bytes);

#endif
