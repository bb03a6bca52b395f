/* pipeline.c: the 1F1B and GPipe schedules (pipeline.h). The order of sends and
 * receives is Megatron-LM's: in the steady phase a stage sends an output
 * forward while it receives a gradient back, and sends a gradient back while
 * it receives the next input, each pair as one sendrecv, so neighbouring
 * stages never both wait in a blocking send. */
#include "pipeline.h"

#include <stdlib.h>

#include "../kernels/profile.h"
#include "watchdog.h"

int dt_pipe_slots(int stage, int nstages, int nmicro, int gpipe) {
  if (gpipe) return stage == nstages - 1 ? 1 : DT_MAX(1, nmicro);
  return (int)DT_MAX(1, DT_MIN(nstages - stage, nmicro));
}

static size_t act_count(const dt_pipe *p, const dt_batch *b) {
  return (size_t)b->n * (size_t)b->t * (size_t)p->m->stage_width;
}

static int first(const dt_pipe *p) { return p->comm->rank == 0; }
static int last(const dt_pipe *p) { return p->comm->rank == p->comm->size - 1; }

void dt_pipe_init(dt_pipe *p, dt_comm_t comm, dt_model *m, dt_dp *dp, int gpipe, int64_t nmicro,
                  size_t max_count) {
  *p = (dt_pipe){comm, m, dp, gpipe, NULL};
  size_t bytes = dt_pipe_stash_bytes(comm->rank, comm->size, gpipe, nmicro, max_count);
  if (bytes) {
    p->stash = m->be->alloc(m->be, bytes);
    m->activation_bytes += bytes;
  }
}

size_t dt_pipe_stash_bytes(int stage, int nstages, int gpipe, int64_t nmicro, size_t max_count) {
  /* GPipe's last stage runs every backward before the earlier stages do */
  if (!gpipe || stage != nstages - 1 || stage == 0) return 0;
  return (size_t)nmicro * max_count * sizeof(float);
}

void dt_pipe_free(dt_pipe *p) {
  if (p && p->stash) p->m->be->free(p->m->be, p->stash);
}

/* One exchange with the neighbours: send (sbuf, to `to`) and receive (rbuf,
 * from `from`), either half skipped when its peer is < 0. */
static void exchange(dt_pipe *p, const float *sbuf, size_t sn, int to, float *rbuf, size_t rn,
                     int from) {
  if (to < 0 && from < 0) return;
  dt_watchdog_enter(to >= 0 && from >= 0 ? "a pipeline send/receive"
                    : to >= 0            ? "a pipeline send"
                                         : "a pipeline receive");
  double t0 = dt_profile_comm_begin();
  p->comm->sendrecv(p->comm, sbuf, sn, to, rbuf, rn, from, DT_F32);
  dt_profile_comm_end(DT_PROF_PP_SENDRECV, t0, (double)DT_MAX(sn, rn) * sizeof(float));
  dt_watchdog_leave();
}

static int prev_stage(const dt_pipe *p) { return first(p) ? -1 : p->comm->rank - 1; }
static int next_stage(const dt_pipe *p) { return last(p) ? -1 : p->comm->rank + 1; }

static void recv_forward(dt_pipe *p, const dt_batch *b, int slot) {
  exchange(p, NULL, 0, -1, first(p) ? NULL : p->m->stage_input(p->m, slot), act_count(p, b),
           prev_stage(p));
}

static void send_forward(dt_pipe *p, const dt_batch *b, int slot) {
  exchange(p, last(p) ? NULL : p->m->stage_output(p->m, slot), act_count(p, b), next_stage(p),
           NULL, 0, -1);
}

typedef struct step_ctx {
  dt_pipe *p;
  int64_t nmicro;
  float dscale;
  dt_pipe_batch_fn batch;
  void *ctx;
  float *losses;
  size_t stride;
  dt_batch *b;     /* per slot: the micro-batch in it */
} step_ctx;

static int slot_of(const step_ctx *s, int64_t j) { return (int)(j % s->p->m->nslots); }

/* Gradients are written from the last stage's forward (the LM head's) or
 * from a backward: the data-parallel engine's micro-batch starts there. */
static void forward(step_ctx *s, int64_t j) {
  dt_pipe *p = s->p;
  const dt_batch *b = &s->b[slot_of(s, j)];
  if (last(p)) dt_dp_micro_begin(p->dp, j == 0, j + 1 == s->nmicro);
  p->m->stage_forward(p->m, b, slot_of(s, j), last(p) ? s->losses + j * s->stride : NULL,
                      s->dscale);
}

static void backward(step_ctx *s, int64_t j) {
  dt_pipe *p = s->p;
  if (!last(p)) dt_dp_micro_begin(p->dp, j == 0, j + 1 == s->nmicro);
  p->m->stage_backward(p->m, &s->b[slot_of(s, j)], slot_of(s, j));
  dt_dp_micro_end(p->dp);
}

/* The batch of micro-batch j, made when its slot is taken (before the
 * receive of its input, which the batch's size gives). */
static const dt_batch *take_slot(step_ctx *s, int64_t j) {
  int slot = slot_of(s, j);
  s->b[slot] = s->batch(s->ctx, j, slot);
  return &s->b[slot];
}

/* GPipe: all forwards, then all backwards. The last stage runs each
 * backward right after its forward (the model keeps the head's gradient
 * for that one micro-batch) and keeps its input gradient in the stash; the
 * gradients go back in order once its forwards are done, when the stage
 * before has finished its forwards too, so no send waits on a stage that
 * is itself sending. */
static void gpipe_step(step_ctx *s) {
  dt_pipe *p = s->p;
  dt_model *m = p->m;
  size_t *cnt = dt_calloc((size_t)s->nmicro, sizeof *cnt), off = 0;
  for (int64_t j = 0; j < s->nmicro; j++) {
    const dt_batch *b = take_slot(s, j);
    cnt[j] = act_count(p, b);
    recv_forward(p, b, slot_of(s, j));
    forward(s, j);
    if (!last(p)) {
      send_forward(p, b, slot_of(s, j));
      continue;
    }
    backward(s, j);
    m->be->d2d(m->be, p->stash + off, m->stage_grad, cnt[j] * sizeof(float));
    off += cnt[j];
  }
  off = 0;
  for (int64_t j = 0; j < s->nmicro; j++) {
    if (last(p)) {
      exchange(p, p->stash + off, cnt[j], prev_stage(p), NULL, 0, -1);
      off += cnt[j];
      continue;
    }
    exchange(p, NULL, 0, -1, m->stage_grad, cnt[j], next_stage(p));
    backward(s, j);
    exchange(p, first(p) ? NULL : m->stage_grad, cnt[j], prev_stage(p), NULL, 0, -1);
  }
  free(cnt);
}

/* 1F1B: stage s runs min(pp-s-1, M) forwards ahead, then one forward and
 * one backward at a time, then the remaining backwards. */
static void one_f_one_b(step_ctx *s) {
  dt_pipe *p = s->p;
  dt_model *m = p->m;
  const int64_t nmicro = s->nmicro;
  const int64_t warm = DT_MIN(p->comm->size - p->comm->rank - 1, nmicro);
  const int64_t steady = nmicro - warm;
  /* warm-up: forwards only */
  for (int64_t j = 0; j < warm; j++) {
    const dt_batch *b = take_slot(s, j);
    recv_forward(p, b, slot_of(s, j));
    forward(s, j);
    send_forward(p, b, slot_of(s, j));
  }
  if (steady > 0) recv_forward(p, take_slot(s, warm), slot_of(s, warm));
  /* steady: forward micro-batch warm+i, backward micro-batch i */
  for (int64_t i = 0; i < steady; i++) {
    const int64_t jf = warm + i;
    const dt_batch *bf = &s->b[slot_of(s, jf)];
    forward(s, jf);
    /* the output goes on while the oldest micro-batch's gradient comes back */
    const dt_batch *bb = &s->b[slot_of(s, i)];
    exchange(p, last(p) ? NULL : m->stage_output(m, slot_of(s, jf)), act_count(p, bf),
             next_stage(p), last(p) ? NULL : m->stage_grad, act_count(p, bb), next_stage(p));
    backward(s, i);
    if (i + 1 < steady) {
      /* the gradient goes back while the next input comes in */
      const dt_batch *bn = take_slot(s, jf + 1);
      exchange(p, first(p) ? NULL : m->stage_grad, act_count(p, bb), prev_stage(p),
               first(p) ? NULL : m->stage_input(m, slot_of(s, jf + 1)), act_count(p, bn),
               prev_stage(p));
    } else {
      exchange(p, first(p) ? NULL : m->stage_grad, act_count(p, bb), prev_stage(p), NULL, 0, -1);
    }
  }
  /* cool-down: the backwards of the warm-up's micro-batches */
  for (int64_t j = steady; j < nmicro; j++) {
    const dt_batch *b = &s->b[slot_of(s, j)];
    exchange(p, NULL, 0, -1, last(p) ? NULL : m->stage_grad, act_count(p, b), next_stage(p));
    backward(s, j);
    exchange(p, first(p) ? NULL : m->stage_grad, act_count(p, b), prev_stage(p), NULL, 0, -1);
  }
}

void dt_pipe_train_step(dt_pipe *p, int64_t nmicro, float dscale, dt_pipe_batch_fn batch,
                        void *ctx, float *losses, size_t stride) {
  dt_model *m = p->m;
  if (m->nslots < dt_pipe_slots(p->comm->rank, p->comm->size, (int)nmicro, p->gpipe))
    dt_fatal("pipeline", "fewer activation slots than micro-batches in flight", __FILE__,
             __LINE__, __func__, "dt_pipe_train_step");
  step_ctx s = {p, nmicro, dscale, batch, ctx, losses, stride, NULL};
  s.b = dt_calloc((size_t)m->nslots, sizeof *s.b);
  dt_model_weights_begin(m);
  if (p->gpipe)
    gpipe_step(&s);
  else
    one_f_one_b(&s);
  dt_model_weights_end(m);
  free(s.b);
}

void dt_pipe_forward(dt_pipe *p, const dt_batch *b, float *losses) {
  dt_model *m = p->m;
  dt_model_weights_begin(m);
  recv_forward(p, b, 0);
  m->stage_forward(m, b, 0, last(p) ? losses : NULL, 0.0f);
  send_forward(p, b, 0);
  dt_model_weights_end(m);
}
