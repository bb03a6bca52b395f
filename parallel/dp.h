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
 *      a shard accumulator, so only the gradient shard outlives backward;
 *      backward itself writes into a few bucket-sized buffers (the model
 *      asks dt_dp_grad_ptr where a parameter's gradient goes), not into a
 *      flat buffer of the whole model;
 *   3  as 2, and the parameters stay sharded too: a layer's parameters are
 *      all-gathered into a working slot just before its forward and its
 *      backward (the model calls dt_model_fetch), freed right after, and the
 *      next layer's gather is started ahead of time (prefetch).
 * The shard of rank r is the flat range [own_lo, own_hi), contiguous and in
 * rank order; checkpoints are written in these shards at every stage.
 * Gradients travel in fp32, or in bf16 (parallel.reduce_dtype, as Megatron-
 * LM's --grad-reduce-in-bf16 and DeepSpeed's communication_data_type): a
 * bucket is rounded into a bf16 buffer of its own, reduced there (half the
 * bytes on the wire; NCCL and the MPI reduction add in fp32 and round each
 * partial sum to bf16), and the rank's part widened back into the fp32
 * gradients; accumulation over micro-batches and the optimizer stay fp32. */
#ifndef DT_DP_H
#define DT_DP_H

#include "../runtime/param.h"
#include "comm.h"

typedef struct dt_dp_bucket {
  size_t lo, hi;      /* flat range */
  int nparams, pending;
  int launched;
  int buf;            /* ZeRO-2/3: the pool buffer holding its gradients, or -1 */
  dt_comm_req_t req;
  size_t *counts;     /* per-rank element counts of this bucket's shards */
} dt_dp_bucket;

typedef struct dt_dp_slot {
  float *buf;
  size_t cap;                 /* elements */
  int first, count;           /* the parameter group it holds */
  int state;                  /* 0 free, 1 prefetched (gather may be in flight), 2 in use */
  dt_comm_req_t req;
  size_t *counts;             /* per-rank counts of the gather */
} dt_dp_slot;

typedef struct dt_dp {
  dt_comm_t comm;
  dt_backend_t be;
  int zero;
  const dt_param *params;
  int nparams;
  size_t total;               /* elements in the flat buffers */
  float *g;                   /* the model's gradient buffer (NULL under the pool) */
  float *pstore;              /* the parameters this rank keeps: all of them, or (ZeRO-3)
                               * its shard; pstore[0] is flat element pstore_lo */
  size_t pstore_lo, pstore_hi;
  size_t own_lo, own_hi;      /* this rank's shard */
  size_t opt_lo, opt_hi;      /* the range this rank's optimizer updates */
  size_t *shard_counts;       /* per rank */
  float *gacc;                /* ZeRO-2: accumulated gradient shard (own_hi-own_lo) */
  int nbuckets;
  dt_dp_bucket *buckets;
  int *param_bucket;          /* bucket of each parameter */
  dt_dtype wire;              /* what gradients are reduced in: DT_F32 or DT_BF16 */
  uint16_t *wire_buf;         /* bf16, ZeRO-0/1: the flat gradient rounded, bucket by bucket */
  int reducing;               /* this micro-batch's gradients are reduced */
  /* ZeRO-2/3 over several ranks: bucket buffers lent to the buckets
   * backward writes, back once their reduce-scatter is folded into gacc */
  float **pool;
  size_t *pool_cap;           /* per buffer: elements */
  int *pool_bucket;           /* per buffer: the bucket holding it, or -1 */
  uint16_t **pool_wire;       /* bf16: per buffer, its rounded twin */
  int npool;
  int first_micro, last_micro; /* the micro-batch at hand is the step's first, last */
  /* ZeRO-3 */
  float **param_ptr;          /* per parameter: its gathered copy, or NULL */
  dt_dp_slot slots[2];
  int *seq, nseq, seq_cap, seq_pos, seq_frozen; /* the order layers are fetched in */
  long prefetches;            /* gathers started ahead of their layer */
} dt_dp;

/* Allocates the parameter storage (pstore) as the stage wants it; wire is
 * DT_F32 or DT_BF16, the dtype of the gradient reductions. */
dt_dp *dt_dp_create(dt_comm_t comm, dt_backend_t be, const dt_param *params, int nparams,
                    size_t total, float *g, int zero, double bucket_mb, dt_dtype wire);

/* ZeRO-3 fetch/release of parameters [first, first+count), for the model's
 * param_fetch/param_release hooks (ctx = the dt_dp). */
void dt_dp_fetch(void *dp, int first, int count);
void dt_dp_release(void *dp, int first, int count);
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

/* Whether the reduced gradient is kept apart as a shard accumulator (ZeRO-2/3
 * over more than one rank): backward then writes into bucket buffers
 * (dt_dp_grad_ptr) and the model's flat gradient buffer is not used;
 * otherwise micro-batches accumulate in that buffer. */
static inline int dt_dp_grads_sharded(const dt_dp *dp) {
  return dp->zero >= 2 && dp->comm->size > 1;
}

/* For the model's grad_ptr hook under dt_dp_grads_sharded: where parameter
 * i's gradient goes this micro-batch (its bucket's buffer, zeroed when the
 * bucket first takes one). */
float *dt_dp_grad_ptr(void *dp, int param_index);
/* Bytes of gradient buffers backward writes: the bucket pool (with its bf16
 * twins), or the flat buffer of the whole model. */
size_t dt_dp_grad_scratch_bytes(const dt_dp *dp);

/* What rank `rank` of `nranks` would keep, in bytes, of a model with this
 * parameter table at ZeRO stage `zero` with `nstates` optimizer tensors per
 * parameter, without allocating anything (dtrain --print-memory). The
 * parameter, gradient and optimizer bytes are dt_dp_memory's after a step,
 * ZeRO-3's gather slots given their largest possible size; the scratch
 * (dt_dp_grad_scratch_bytes) under ZeRO-2/3 is an estimate: the pool's
 * buffers depend on the order backward writes and finishes the buckets. */
typedef struct dt_dp_plan_bytes {
  size_t param_bytes, grad_bytes, optim_bytes, scratch_bytes;
} dt_dp_plan_bytes;
void dt_dp_plan(const dt_param *params, int nparams, size_t total, int nranks, int rank,
                int zero, int nstates, double bucket_mb, dt_dtype wire, dt_dp_plan_bytes *out);

/* The reduced (summed over ranks) gradient of flat index opt_lo. */
float *dt_dp_grads(dt_dp *dp);
/* ZeRO >= 1: all-gather the updated parameter shards. */
void dt_dp_gather_params(dt_dp *dp);
/* Sum of a host double over the data-parallel group. */
double dt_dp_sum(dt_dp *dp, double x);

/* Bytes this rank keeps for parameters, gradients and optimizer state
 * (nstates fp32 buffers), for the start-up memory table; the gradients'
 * include ZeRO-0/1's bf16 buffer they are reduced in. */
void dt_dp_memory(const dt_dp *dp, int nstates, size_t *param_bytes, size_t *grad_bytes,
                  size_t *optim_bytes);

#endif
