/* checkpoint.h: checkpoints as DESIGN.md lays them out. A checkpoint is a
 * directory per step, CKPT_DIR/step_NNNNNNNN, written first as
 * step_NNNNNNNN.tmp and renamed once complete; CKPT_DIR/LATEST (replaced
 * atomically) names the newest. Inside: meta.h5 (format, step, model, optimizer,
 * config text, RNG seed, loader position, layout) and rankNNNNN.h5 per rank with
 * the slices it owns: /params/<name>, /optim/<state>/<name>, each dataset tagged
 * with its full logical shape and its offset in the full tensor. */
#ifndef DT_CHECKPOINT_H
#define DT_CHECKPOINT_H

#include <stdint.h>

#include "param.h"
#include "dt.h"

#define DT_CKPT_MAX_STATES 4

typedef struct dt_ckpt_meta {
  int64_t step;          /* optimizer steps completed */
  int64_t epoch;         /* loader position: epoch ... */
  int64_t epoch_offset;  /* ... and samples of it consumed */
  uint64_t seed;         /* train.seed the run started with (drives init and data order) */
  char optimizer[32];    /* optim.name */
  char model[32];        /* model family */
  int64_t dp, tp, pp, zero, world;
} dt_ckpt_meta;

/* Host copies of what a checkpoint holds, each nparams_total floats laid out
 * by the parameter table. */
typedef struct dt_ckpt_buffers {
  float *params;
  int nstates;
  const char *state_names[DT_CKPT_MAX_STATES]; /* e.g. "exp_avg", "exp_avg_sq" */
  float *states[DT_CKPT_MAX_STATES];
} dt_ckpt_buffers;

/* Writes DIR/step_NNNNNNNN for meta->step, updates LATEST, then deletes the
 * oldest step directories beyond `keep` (0 = keep all). out_path (if non-NULL)
 * gets the directory written. */
int dt_ckpt_save(const char *dir, const dt_param *params, int nparams,
                 const dt_ckpt_meta *meta,
                 const dt_ckpt_buffers *bufs, const char *config_text, int keep,
                 char *out_path, size_t out_size, dt_error *err);

/* Resolves checkpoint.resume: "never" -> 0; "auto" -> 1 and path set if
 * DIR/LATEST exists, else 0; anything else is a path to a step directory or to
 * a directory holding LATEST -> 1 (or -1 with err if it is neither). */
int dt_ckpt_resolve(const char *resume, const char *dir, char *path, size_t size, dt_error *err);

/* Reads a checkpoint written by dt_ckpt_save into bufs and meta, checking the
 * format, meta->model and meta->optimizer (as the caller fills them) and
 * every parameter's shape against the table; meta is then overwritten.
 * config_text (if non-NULL) gets the stored config, malloc'ed. */
int dt_ckpt_load(const char *path, const dt_param *params, int nparams, dt_ckpt_meta *meta,
                 const dt_ckpt_buffers *bufs, char **config_text, dt_error *err);

#endif
