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
  int tp_parts;                    /* tp_dim holds this many blocks, each split tp_n ways
                                    * (3 for GPT's fused q,k,v: a rank keeps its heads of
                                    * each); 1 otherwise. Parts of a block differ by one
                                    * row at most when tp_n does not divide it. */
  int tp_n, tp_r;                  /* the model's tensor-parallel size and this rank in it;
                                    * a split tensor holds part tp_r of tp_n */
  int pp_copy;                     /* 1: a copy of a tensor an earlier pipeline stage holds
                                    * and saves (GPT's token table, tied to the LM head on
                                    * the last stage); the engine sums the copies' gradients */
  size_t offset, count;            /* elements this rank holds (the part, when split) */
  int decay;                       /* 1 = weight decay applies (weights), 0 = biases, norms */
  int64_t fan_in, fan_out;         /* for initialisation */
} dt_param;

/* Whether p is cut over tensor-parallel ranks (else each holds it whole). */
static inline int dt_param_is_split(const dt_param *p) { return p->tp_dim >= 0 && p->tp_n > 1; }

/* Elements of the full logical tensor. */
size_t dt_param_full_count(const dt_param *p);

/* The size of tp_dim in part tp_r of tp_n, and that part's elements. */
int64_t dt_param_part_dim(const dt_param *p, int tp_n, int tp_r);
size_t dt_param_part_count(const dt_param *p, int tp_n, int tp_r);

/* Where element `local` (flat, row-major) of part tp_r of tp_n of p sits in
 * the full tensor (flat). p's own tp_n/tp_r are not used. */
size_t dt_param_full_index(const dt_param *p, int tp_n, int tp_r, size_t local);

/* The other way: the part (of tp_n) holding full element `full`, and its
 * flat index in that part. */
int dt_param_part_of(const dt_param *p, int tp_n, size_t full, size_t *local);

/* Copies p's own part (p->tp_n, p->tp_r) out of the full tensor `full`
 * into `part` (p->count elements). */
void dt_param_extract(const dt_param *p, const float *full, float *part);

/* Makes table[0..n) rank tp_r's part of a tp_n-way tensor-parallel model:
 * split tensors keep their part of tp_dim (the caller checks every part
 * gets some),
 * offsets are laid out again (16-element aligned). Returns the elements of
 * the new flat buffer. */
size_t dt_param_table_split(dt_param *table, int n, int tp_n, int tp_r);

/* out[0..n) = the whole model's table (tp_n = 1) for a tensor-parallel one;
 * returns the elements of the whole flat buffer. */
size_t dt_param_table_whole(const dt_param *table, int n, dt_param *out);

#endif
