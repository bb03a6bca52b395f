/* param.h: the description of one model tensor in the flat buffers; shared by
 * models, the optimizer, the parallel engine and checkpoints. */
#ifndef DT_PARAM_H
#define DT_PARAM_H

#include <stddef.h>
#include <stdint.h>

#define DT_PARAM_NAME 64
#define DT_PARAM_MAXDIMS 4

/* One tensor of the model. Its data is flat[offset .. offset+count) in the
 * parameter, gradient and optimizer-state buffers alike, so a gradient bucket
 * or a ZeRO shard is just a slice. */
typedef struct dt_param {
  char name[DT_PARAM_NAME];       /* e.g. "conv1.weight" */
  int ndims;
  int64_t shape[DT_PARAM_MAXDIMS]; /* full logical shape */
  int tp_dim;                      /* the dimension tensor parallelism splits; -1 = replicated */
  size_t offset, count;            /* elements */
  int decay;                       /* 1 = weight decay applies (weights), 0 = biases, norms */
  int64_t fan_in, fan_out;         /* for initialisation */
} dt_param;

#endif
