/* pipeline.h: pipeline parallelism's schedule. The ranks of one pipeline
 * group each hold a stage of the model (models/model.h: stage_forward,
 * stage_backward); an optimizer step's micro-batches flow through them in
 * the 1F1B order of PipeDream-Flush / Megatron-LM: stage s runs
 * min(pp-s-1, M) forwards ahead, then alternates one forward with one
 * backward, then drains the backwards, so it keeps at most min(pp-s, M)
 * micro-batches' activations (GPipe would keep all M) and the bubble is
 * (pp-1)/(M+pp-1) of the step, as GPipe's. Activations go to the next stage
 * and gradients to the previous one over the group's communicator, an
 * exchange in both directions as one sendrecv. parallel.pp_schedule = gpipe
 * runs GPipe's order instead, the simple case: every stage runs all M
 * forwards, then all M backwards (keeping M micro-batches' activations);
 * the last stage runs each backward right after its forward and keeps the
 * M input gradients until the stage before it starts its backwards. */
#ifndef DT_PIPELINE_H
#define DT_PIPELINE_H

#include "../models/model.h"
#include "comm.h"
#include "dp.h"

typedef struct dt_pipe {
  dt_comm_t comm;  /* the pipeline group; stage s is its rank s */
  dt_model *m;     /* this rank's stage */
  dt_dp *dp;       /* the stage's data-parallel engine (bucket reductions) */
  int gpipe;       /* GPipe's order, else 1F1B */
  float *stash;    /* gpipe, last stage: the step's input gradients (dt_pipe_init) */
} dt_pipe;

/* The number of activation slots stage `stage` of `nstages` needs for
 * steps of nmicro micro-batches: min(nstages - stage, nmicro) under 1F1B;
 * nmicro under GPipe, but 1 on the last stage. */
int dt_pipe_slots(int stage, int nstages, int nmicro, int gpipe);

/* The bytes of dt_pipe_init's stash on stage `stage` of `nstages`. */
size_t dt_pipe_stash_bytes(int stage, int nstages, int gpipe, int64_t nmicro, size_t max_count);

/* Sets p up for steps of nmicro micro-batches of at most max_count
 * activation floats each (the last stage's gradient stash under GPipe,
 * counted in the model's activation bytes). */
void dt_pipe_init(dt_pipe *p, dt_comm_t comm, dt_model *m, dt_dp *dp, int gpipe, int64_t nmicro,
                  size_t max_count);
void dt_pipe_free(dt_pipe *p);

/* Fills micro-batch j (0..nmicro) of the step into slot `slot`'s buffers
 * (which stay untouched until the micro-batch's backward is done). */
typedef dt_batch (*dt_pipe_batch_fn)(void *ctx, int64_t j, int slot);

/* One optimizer step's forwards and backwards of nmicro micro-batches,
 * the gradient of dscale * sum(losses) accumulated into the model's
 * gradients and reduced by dp as the micro-batches finish (dt_dp_micro_*).
 * The last stage leaves micro-batch j's losses (device) at
 * losses + j * stride, to be read back once the step is done rather than
 * after every forward, which would stall the device. */
void dt_pipe_train_step(dt_pipe *p, int64_t nmicro, float dscale, dt_pipe_batch_fn batch,
                        void *ctx, float *losses, size_t stride);

/* Evaluation: micro-batch b's forward through this stage (slot 0): receive
 * the input, run, pass the output on; the last stage leaves b's losses in
 * `losses`. Every stage calls it for the same micro-batches in order. */
void dt_pipe_forward(dt_pipe *p, const dt_batch *b, float *losses);

#endif
