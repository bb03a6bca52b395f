/* checkpoint.h: checkpoints as DESIGN.md lays them out. A checkpoint is a
 * directory per step, CKPT_DIR/step_NNNNNNNN, written first as
 * step_NNNNNNNN.tmp and renamed once complete; CKPT_DIR/LATEST (replaced
 * atomically) names the newest. Inside: meta.h5 (format, step, model, optimizer,
 * config text, RNG seed, loader position, layout) and rankNNNNN.h5 per rank with
 * the slices it owns: /params/<name>, /optim/<state>/<name>, each dataset tagged
 * with its full logical shape and its offset in the full tensor, or, for a
 * tensor split by tensor parallelism, in the rank's part of it (tp_part, as
 * runtime/param.h maps parts). */
#ifndef DT_CHECKPOINT_H
#define DT_CHECKPOINT_H

#include <stdint.h>

#include "config.h"
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
  /* checkpoint.keep_best: the best value of its metric so far and the step
   * that had it (<= 0: none yet, or a checkpoint saved without it) */
  char best_metric[16];  /* loss | accuracy | bleu */
  double best;
  int64_t best_step;
  int64_t best_since;    /* evaluations since it (train.early_stop) */
  int is_best;           /* commit: this step is the best; BEST names it */
} dt_ckpt_meta;

/* Host copies of what a checkpoint holds, each nparams_total floats laid out
 * by the parameter table. */
typedef struct dt_ckpt_buffers {
  float *params;
  int nstates;
  const char *state_names[DT_CKPT_MAX_STATES]; /* e.g. "exp_avg", "exp_avg_sq" */
  float *states[DT_CKPT_MAX_STATES];
} dt_ckpt_buffers;

/* Sharded saving, in three steps the caller orders across ranks:
 *   rank 0: dt_ckpt_prepare   (creates DIR/step_N.tmp, removing a stale one)
 *   every rank, after a barrier: dt_ckpt_write_rank (its file, its slices)
 *   rank 0, after a barrier: dt_ckpt_commit (meta.h5, rename, LATEST, BEST
 *   when meta->is_best, prune: the oldest beyond `keep`, never BEST's),
 *   or, when a rank could not write its file, dt_ckpt_discard.
 * A rank writes the elements [lo, hi) of the flat buffers it owns: the
 * parameters (params[] is the whole flat buffer) and each optimizer state
 * (states[s][0] holds flat element state_base). Each tensor's slice is a
 * dataset /params/<name> or /optim/<state>/<name>, tagged with the tensor's
 * full_shape and the flat_offset of the slice in the flattened tensor; a
 * whole tensor keeps its shape. The file's step attribute is `step`: a rank
 * file that does not match its meta.h5 is refused when read. */
int dt_ckpt_prepare(const char *dir, int64_t step, char *tmp_path, size_t size, dt_error *err);
int dt_ckpt_write_rank(const char *tmp_path, int64_t step, int rank, const dt_param *params,
                       int nparams, size_t lo, size_t hi, const dt_ckpt_buffers *bufs,
                       size_t state_base, dt_error *err);
int dt_ckpt_commit(const char *dir, const char *tmp_path, const dt_ckpt_meta *meta,
                   const char *config_text, int keep, char *out_path, size_t out_size,
                   dt_error *err);

/* Removes a step directory that will not be committed (DIR/step_N.tmp). */
void dt_ckpt_discard(const char *tmp_path);

/* One rank's whole save (prepare, write rank 0 with everything, commit). */
int dt_ckpt_save(const char *dir, const dt_param *params, int nparams,
                 const dt_ckpt_meta *meta,
                 const dt_ckpt_buffers *bufs, const char *config_text, int keep,
                 char *out_path, size_t out_size, dt_error *err);

/* Resolves checkpoint.resume: "never" -> 0; "auto" -> 1 and path set if
 * DIR/LATEST exists, else 0; "best" -> 1 and the step DIR/BEST names (-1
 * without one); anything else is a path to a step directory, to a directory
 * holding LATEST, or to a LATEST or BEST file -> 1 (or -1 with err if it is
 * none of them). */
int dt_ckpt_resolve(const char *resume, const char *dir, char *path, size_t size, dt_error *err);

/* Reads meta.h5, checking the format, and meta->model and meta->optimizer
 * against what the caller filled in (an empty string accepts any); meta is
 * then overwritten.
 * config_text (if non-NULL) gets the stored config, malloc'ed. */
int dt_ckpt_read_meta(const char *path, dt_ckpt_meta *meta, char **config_text, dt_error *err);

/* For the tools that read a finished run (dtrain-sample, -translate,
 * -export): resolves ckpt (a step directory, or one holding LATEST) into
 * path, reads its metadata (any model, any optimizer) and parses the config
 * it was trained with into cfg. -1 with err naming the checkpoint. */
int dt_ckpt_open_run(const char *ckpt, char *path, size_t size, dt_ckpt_meta *meta,
                     dt_config *cfg, dt_error *err);

/* Fills dst[0 .. hi-lo) with flat elements [lo, hi) of `group` ("params" or a
 * state name) from whichever rank files of the checkpoint hold them (the
 * checkpoint's world size is meta->world), so any layout can resume any
 * other. Checks every tensor's full shape against the table and that every
 * element was found. */
int dt_ckpt_read_range(const char *path, const dt_ckpt_meta *meta, const dt_param *params,
                       int nparams, const char *group, size_t lo, size_t hi, float *dst,
                       dt_error *err);

/* One rank's whole load: meta, then all of params and every state. */
int dt_ckpt_load(const char *path, const dt_param *params, int nparams, dt_ckpt_meta *meta,
                 const dt_ckpt_buffers *bufs, char **config_text, dt_error *err);

#endif
