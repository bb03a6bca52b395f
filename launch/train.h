/* train.h: the training engine behind `dtrain`: one process, one backend. */
#ifndef DT_TRAIN_H
#define DT_TRAIN_H

#include <stdint.h>
#include <string.h>

#include "../runtime/config.h"
#include "../kernels/kernels.h"
#include "../runtime/dt.h"

/* Trains per cfg. Returns the process exit code: 0 done, 2 bad input (after
 * printing one message), 130/143 stopped by SIGINT/SIGTERM after saving. */
int dt_train(const dt_config *cfg);

/* `dtrain --eval`: the weights a run would start from (the checkpoint
 * checkpoint.resume finds, else model.init_from's, else the seeded init)
 * evaluated as training evaluates them, on every rank of the layout; the
 * row goes to <log.dir>/eval/metrics.jsonl. 0, or 2 on bad input. */
int dt_evaluate(const dt_config *cfg);

/* A run's batches over dp data-parallel ranks: the samples of a step
 * (batch; 1 token-count batch for the Transformer), each rank's share and
 * its micro-batches. 0, or -1 with err naming the keys. */
typedef struct dt_batches {
  int64_t batch, rank_batch, micro;
} dt_batches;
int dt_train_batches(const dt_config *cfg, int dp, dt_batches *out, dt_error *err);
/* The most samples a forward takes at micro-batch size micro: language
 * models evaluate in training micro-batches, classifiers in
 * train.eval_batch_size. */
int dt_train_max_batch(const dt_config *cfg, int64_t micro);

/* parallel.reduce_dtype as the dtype the data-parallel engine reduces in */
static inline dt_dtype dt_train_reduce_dtype(const dt_config *cfg) {
  return strcmp(cfg->parallel_reduce_dtype, "bf16") ? DT_F32 : DT_BF16;
}

/* `dtrain --print-layout`: builds the rank grid and the backends, prints which
 * rank is where (host, node-local rank, device, coordinates), returns 0. */
int dt_print_layout(const dt_config *cfg);

#endif
