/* model.h: what every model provides to the engine: a parameter table over
 * one flat buffer, seeded initialisation, and forward/backward on a
 * micro-batch. Models call kernels through the backend only; they never see
 * ranks, MPI or NCCL. */
#ifndef DT_MODEL_H
#define DT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/backend.h"
#include "../runtime/config.h"
#include "../runtime/param.h"

typedef struct dt_model dt_model;

/* A micro-batch on the device. Image classifiers read x (n,c,h,w) and
 * y (n) class ids; language models read tokens (n,t) and y (n,t), the next
 * token at every position. */
typedef struct dt_batch {
  int n;                  /* images or sequences */
  int t;                  /* tokens per sequence (0 for images) */
  const float *x;
  const int32_t *tokens;
  const int32_t *y;
  /* Sequence to sequence (the Transformer): tokens (n,t) is the decoder input
   * (bos + target, padded), y (n,t) the next target token (target + eos) and
   * -1 at padded positions, which add neither loss nor gradient. */
  int ts;                   /* seq2seq: source tokens per sequence (padded) */
  const int32_t *src;       /* (n, ts) source ids, padded with the pad id */
  const int32_t *src_len;   /* (n) real source lengths (1..ts) */
  const int32_t *tgt_len;   /* (n) real decoder-input lengths (1..t); NULL = all t */
  /* Dropout (training only): the masks are a function of (seed, sample0 + i,
   * position) alone. The engine draws seed per optimizer step from
   * train.seed, so a resumed run drops the same elements; sample0 is the
   * index of the micro-batch's first sequence in the step's global batch,
   * so the masks do not depend on the micro-batch size or the dp layout. */
  uint64_t seed;
  int64_t sample0;
} dt_batch;

struct dt_model {
  const char *family;         /* "lenet5", "gpt" */
  dt_backend_t be;
  int nparams;
  dt_param *params;
  size_t nparams_total;       /* elements in the flat buffers */
  float *p;                   /* parameters (device); NULL when the engine shards them
                               * (ZeRO-3), then param_ptr[i] points at gathered copies */
  float *g;                   /* gradients (device), owned by the model; backward accumulates.
                               * The engine may free it and set it NULL when it sets grad_ptr */
  int in_c, in_h, in_w;       /* image models: input shape */
  int num_classes;            /* classes, or the vocabulary of a language model */
  int max_batch;              /* largest micro-batch forward accepts (n) */
  int max_t;                  /* language models: longest sequence (t) */
  int max_src_t;              /* seq2seq models: longest source sequence (ts) */
  size_t activation_bytes;    /* device bytes of activations at max_batch */

  /* Seeded initialisation written into host_p (nparams_total floats). */
  void (*init)(dt_model *m, float *host_p, uint64_t seed);
  /* Forward on b. losses (device) = cross-entropy per sample (n) or per
   * token (n*t). If dscale != 0 the gradient of dscale * sum(losses) is
   * computed as well and accumulated (+=) into dt_model_grad. Returns the logits
   * (n[*t], num_classes), valid until the next call, or NULL when the
   * language models computed them in chunks of [train] classifier_chunk
   * rows and the batch took more than one (they are never all kept), or
   * kept them in bf16 (GPT under train.precision = bf16). */
  const float *(*forward_backward)(dt_model *m, const dt_batch *b, float *losses, float dscale);
  void (*destroy)(dt_model *m);
  void *impl;

  /* Set by the engine: called during backward once parameter i's gradient
   * for this micro-batch is complete, so its bucket can be reduced while
   * backward goes on. NULL = nobody listens. */
  void (*grad_hook)(void *ctx, int param_index);
  void *grad_hook_ctx;

  /* Set by the engine when parameters are sharded (ZeRO-3): a layer calls
   * dt_model_fetch before it reads parameters [first, first+count) and
   * dt_model_release when done, in forward and again in backward; in between
   * param_ptr[i] points at the gathered parameter. */
  void (*param_fetch)(void *ctx, int first, int count);
  void (*param_release)(void *ctx, int first, int count);
  void *param_hook_ctx;
  float **param_ptr;

  /* Set by the engine when gradients live in its bucket buffers (ZeRO-2/3
   * over several ranks): where parameter i's gradient goes this
   * micro-batch; backward adds into it as into m->g. NULL = m->g. */
  float *(*grad_ptr)(void *ctx, int param_index);
  void *grad_ptr_ctx;

  /* Tensor parallelism (a model built by dt_model_create_tp with tp_n > 1):
   * set by the engine, sums x (n floats, device) over the tensor-parallel
   * group in place, as Megatron's row-parallel layers do in forward and
   * column-parallel ones in backward. */
  void (*tp_allreduce)(void *ctx, float *x, size_t n);
  /* recv (tp_n * n elements of type t, device) = every part's send (n) in
   * part order */
  void (*tp_allgather)(void *ctx, const void *send, void *recv, size_t n, dt_dtype t);
  /* recv (n floats) = the sum over the parts of block tp_r of send (tp_n * n
   * floats): sequence parallelism's exit from a row-parallel layer */
  void (*tp_reduce_scatter)(void *ctx, const float *send, float *recv, size_t n);
  void *tp_ctx;
  int tp_n, tp_r;             /* the split this model was built for (1, 0: whole) */

  /* Pipeline parallelism (a model built with pp_n > 1; only gpt splits):
   * stage pp_r of pp_n runs a micro-batch in two calls, which the engine
   * orders by its schedule and between which it passes activations of
   * (n, t, stage_width) floats. stage_forward reads the previous stage's
   * output from stage_input(slot) (every stage but the first; the engine
   * receives into it) and leaves its own in stage_output(slot) (every stage
   * but the last); the last stage computes the losses and, when dscale != 0,
   * their gradient. stage_backward reads the gradient of the stage's output
   * from stage_grad (every stage but the last: the engine receives into it)
   * and leaves the gradient of its input there (every stage but the first).
   * Up to nslots micro-batches may be between their forward and backward,
   * each in its own slot; on the last stage a training forward is followed
   * by its backward before the next forward. Parameter gradients accumulate
   * and are announced as in forward_backward. The engine brackets the calls
   * with dt_model_weights_begin/end. */
  int pp_n, pp_r, nslots;
  int stage_width;
  void (*stage_forward)(dt_model *m, const dt_batch *b, int slot, float *losses, float dscale);
  void (*stage_backward)(dt_model *m, const dt_batch *b, int slot);
  float *(*stage_input)(dt_model *m, int slot);
  const float *(*stage_output)(dt_model *m, int slot);
  float *stage_grad;
};

static inline void dt_model_grad_ready(dt_model *m, int param_index) {
  if (m->grad_hook) m->grad_hook(m->grad_hook_ctx, param_index);
}
static inline void dt_model_fetch(dt_model *m, int first, int count) {
  if (m->param_fetch) m->param_fetch(m->param_hook_ctx, first, count);
}
static inline void dt_model_release(dt_model *m, int first, int count) {
  if (m->param_release) m->param_release(m->param_hook_ctx, first, count);
}
/* Around a forward_backward: the whole parameter buffer, when the model
 * holds it (not under ZeRO-3), may be read as one bf16 copy (backend.h
 * set_weights); after, no copy is trusted, since the optimizer moves on. */
static inline void dt_model_weights_begin(dt_model *m) {
  m->be->set_weights(m->be, m->p, m->p ? m->nparams_total : 0);
}
static inline void dt_model_weights_end(dt_model *m) { m->be->set_weights(m->be, NULL, 0); }

/* Sums x over the tensor-parallel group (nothing when the model is whole). */
static inline void dt_model_tp_sum(dt_model *m, float *x, size_t n) {
  if (m->tp_n > 1) m->tp_allreduce(m->tp_ctx, x, n);
}

/* The device address of parameter i's gradient, for backward to add into. */
static inline float *dt_model_grad(dt_model *m, int i) {
  return m->grad_ptr ? m->grad_ptr(m->grad_ptr_ctx, i) : m->g + m->params[i].offset;
}

/* The device address of parameter i for the layer that fetched it. */
static inline float *dt_model_param(const dt_model *m, int i) {
  return m->p ? m->p + m->params[i].offset : m->param_ptr[i];
}

/* Builds the model named by cfg->model_name on be for micro-batches up to
 * max_batch. NULL with err on a config the model cannot take. */
dt_model *dt_model_create(const dt_config *cfg, dt_backend_t be, int max_batch, dt_error *err);

/* The part of a model one rank builds: tensor-parallel part tp_r of tp_n
 * (parameter table: param.h), pipeline stage pp_r of pp_n keeping the
 * activations of nslots micro-batches; {1, 0, 1, 0, 1} is the whole model. */
typedef struct dt_model_part {
  int tp_n, tp_r, pp_n, pp_r, nslots;
} dt_model_part;
/* The same as dt_model_create, as one rank's part (only gpt splits). The
 * engine sets tp_allreduce before the first forward. */
dt_model *dt_model_create_part(const dt_config *cfg, dt_backend_t be, int max_batch,
                               const dt_model_part *part, dt_error *err);
void dt_model_destroy(dt_model *m);

/* Index of a parameter by name, -1 if absent. */
int dt_model_find_param(const dt_model *m, const char *name);

/* Language models' output layer ([train] classifier_chunk): the rows of
 * logits computed at a time for micro-batches of up to `rows` tokens, and
 * the check that chunk x vocab_size fits the kernels' int sizes (-1 with
 * err when not). */
size_t dt_classifier_chunk(const dt_config *cfg, size_t rows);
int dt_classifier_chunk_check(const dt_config *cfg, size_t rows, dt_error *err);
/* GPT's logits row stride for a vocabulary of v: v rounded up to a
 * multiple of [model] pad_vocab_to under bf16, v itself in fp32 (whose
 * logits forward_backward hands back packed) */
int64_t dt_logits_ld(const dt_config *cfg, int64_t v);

/* Appends a parameter to a table being built (helper for model files). */
void dt_param_add(dt_param *table, int *count, size_t *total, const char *name, int ndims,
                  const int64_t *shape, int decay, int64_t fan_in, int64_t fan_out);

/* Families */
dt_model *dt_lenet5_create(const dt_config *cfg, dt_backend_t be, int max_batch, dt_error *err);
/* GPT-2 (models/gpt.c): model.n_layer, n_head, n_embd, vocab_size, block_size;
 * batches of up to max_batch sequences of train.seq_len (0 = block_size) tokens;
 * one rank's part (heads, MLP units and vocabulary split over tp, Megatron-style;
 * blocks over pp stages). */
dt_model *dt_gpt_create(const dt_config *cfg, dt_backend_t be, int max_batch,
                        const dt_model_part *part, dt_error *err);
/* The blocks [*l0, *l0 + *nl) of pipeline stage r of n ([parallel] pp_split). */
void dt_gpt_stage_blocks(const dt_config *cfg, int n, int r, int *l0, int *nl);
/* The whole GPT's parameter table for cfg (malloc'd; offsets of one flat
 * buffer of *total elements), whatever part a rank holds. */
dt_param *dt_gpt_whole_table(const dt_config *cfg, int *nparams, size_t *total);
/* The encoder-decoder Transformer (models/transformer.c, decoding API in
 * models/transformer.h): model.n_embd (d_model), n_head, n_enc_layer,
 * n_dec_layer, d_ff, norm, pos, share_embeddings, activation, vocab_size,
 * block_size; source and target sequences of up to train.seq_len
 * (0 = block_size) tokens. */
dt_model *dt_transformer_create(const dt_config *cfg, dt_backend_t be, int max_batch,
                                dt_error *err);

#endif
