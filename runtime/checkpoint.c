/* checkpoint.c: step directories of HDF5 files, written atomically. */
#define _XOPEN_SOURCE 700
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5.h"

#define CKPT_FORMAT "dtrain-ckpt-v1"

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}
static int rm_rf(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return 0;
  return nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int mkdir_p(const char *path, dt_error *err) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
      return dt_error_set(err, "%s: cannot create directory: %s", buf, strerror(errno));
    *p = '/';
  }
  if (mkdir(buf, 0777) != 0 && errno != EEXIST)
    return dt_error_set(err, "%s: cannot create directory: %s", buf, strerror(errno));
  return 0;
}

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void tensor_name(char *buf, size_t size, const char *group, const char *name) {
  snprintf(buf, size, "%s/%s", group, name);
}

/* Fletcher's two sums over the slice's 32-bit words, mod 2^64, kept beside
 * it as the attribute "checksum": HDF5 checksums a file's headers but not
 * its data, and a bit flipped on disk in a weight or an optimizer moment
 * would otherwise resume as a quietly different model (a flip changes the
 * first sum, words swapped or moved the second). About a word a cycle, so
 * it costs little beside the write; HDF5's own Fletcher-32 filter doubled
 * the time to save gpt-124m. */
static void slice_checksum(const float *x, size_t n, int64_t sum[2]) {
  uint64_t a = 0, b = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t w;
    memcpy(&w, x + i, sizeof w);
    a += w;
    b += a;
  }
  sum[0] = (int64_t)a, sum[1] = (int64_t)b;
}

/* Writes elements [a, b) of tensor p's flattened data (of this rank's part,
 * when tensor parallelism splits it) as one dataset, a whole tensor or part
 * with its shape, slices as 1-D. A part says which it is in the attribute
 * tp_part = (tp_n, tp_r, tp_parts): param.h maps its elements into the full
 * tensor. */
static int write_slice(hid_t f, const char *dset, const dt_param *p, size_t a, size_t b,
                       const float *data, dt_error *err) {
  int64_t n = (int64_t)(b - a), flat_offset = (int64_t)a, tp_dim = p->tp_dim;
  int whole = a == 0 && b == p->count;
  int64_t shape[DT_PARAM_MAXDIMS];
  memcpy(shape, p->shape, sizeof shape);
  if (dt_param_is_split(p)) shape[p->tp_dim] = dt_param_part_dim(p, p->tp_n, p->tp_r);
  if (dt_h5_write(f, dset, H5T_NATIVE_FLOAT, whole ? p->ndims : 1, whole ? shape : &n, data, 0,
                  err))
    return -1;
  if (dt_h5_attr_write_i64(f, dset, "full_shape", p->ndims, p->shape, err)) return -1;
  if (dt_h5_attr_write_i64(f, dset, "flat_offset", 1, &flat_offset, err)) return -1;
  if (dt_h5_attr_write_i64(f, dset, "tp_dim", 1, &tp_dim, err)) return -1;
  const int64_t part[3] = {p->tp_n, p->tp_r, p->tp_parts};
  if (dt_param_is_split(p) && dt_h5_attr_write_i64(f, dset, "tp_part", 3, part, err)) return -1;
  int64_t sum[2];
  slice_checksum(data, (size_t)n, sum);
  return dt_h5_attr_write_i64(f, dset, "checksum", 2, sum, err);
}

int dt_ckpt_write_rank(const char *tmp_path, int64_t step, int rank, const dt_param *params,
                       int nparams, size_t lo, size_t hi, const dt_ckpt_buffers *bufs,
                       size_t state_base, dt_error *err) {
  char path[4300];
  snprintf(path, sizeof path, "%s/rank%05d.h5", tmp_path, rank);
  hid_t f = dt_h5_create(path, err);
  if (f < 0) return -1;
  char name[256];
  int rc = dt_h5_attr_write_i64(f, "/", "step", 1, &step, err);
  for (int i = 0; i < nparams && !rc; i++) {
    const dt_param *p = &params[i];
    size_t a = DT_MAX(lo, p->offset), b = DT_MIN(hi, p->offset + p->count);
    if (a >= b) continue;
    /* a tensor every tensor-parallel rank holds whole is saved by part 0's */
    if (!dt_param_is_split(p) && p->tp_r != 0) continue;
    /* a pipeline stage's copy of a tensor is saved by the stage holding it */
    if (p->pp_copy) continue;
    tensor_name(name, sizeof name, "params", p->name);
    rc = write_slice(f, name, p, a - p->offset, b - p->offset, bufs->params + a, err);
    for (int s = 0; s < bufs->nstates && !rc; s++) {
      char grp[128];
      snprintf(grp, sizeof grp, "optim/%s", bufs->state_names[s]);
      tensor_name(name, sizeof name, grp, p->name);
      rc = write_slice(f, name, p, a - p->offset, b - p->offset,
                       bufs->states[s] + (a - state_base), err);
    }
  }
  dt_h5_close(f);
  return rc;
}

static int write_meta(const char *path, const dt_ckpt_meta *meta, const char *config_text,
                      dt_error *err) {
  hid_t f = dt_h5_create(path, err);
  if (f < 0) return -1;
  int64_t nums[] = {meta->step, meta->epoch, meta->epoch_offset, (int64_t)meta->seed,
                    meta->dp, meta->tp, meta->pp, meta->zero, meta->world};
  int rc = dt_h5_attr_write_str(f, "/", "format", CKPT_FORMAT, err) ||
           dt_h5_attr_write_str(f, "/", "model", meta->model, err) ||
           dt_h5_attr_write_str(f, "/", "optimizer", meta->optimizer, err) ||
           dt_h5_attr_write_str(f, "/", "config", config_text, err) ||
           dt_h5_attr_write_i64(f, "/", "step", 1, &nums[0], err) ||
           dt_h5_attr_write_i64(f, "/", "loader_epoch", 1, &nums[1], err) ||
           dt_h5_attr_write_i64(f, "/", "loader_offset", 1, &nums[2], err) ||
           dt_h5_attr_write_i64(f, "/", "seed", 1, &nums[3], err) ||
           dt_h5_attr_write_i64(f, "/", "layout_dp_tp_pp_zero_world", 5, &nums[4], err);
  if (!rc && meta->best_step > 0)
    rc = dt_h5_attr_write_str(f, "/", "best_metric", meta->best_metric, err) ||
         dt_h5_attr_write_f64(f, "/", "best", 1, &meta->best, err) ||
         dt_h5_attr_write_i64(f, "/", "best_step", 1, &meta->best_step, err) ||
         dt_h5_attr_write_i64(f, "/", "best_since", 1, &meta->best_since, err);
  dt_h5_close(f);
  return rc ? -1 : 0;
}

static int write_text_atomic(const char *path, const char *text, dt_error *err) {
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *fp = fopen(tmp, "w");
  if (!fp) return dt_error_set(err, "%s: cannot write: %s", tmp, strerror(errno));
  int bad = fputs(text, fp) < 0;
  bad |= fflush(fp) != 0 || fsync(fileno(fp)) != 0;
  bad |= fclose(fp) != 0;
  if (bad || rename(tmp, path) != 0) {
    remove(tmp);
    return dt_error_set(err, "%s: cannot write: %s", path, strerror(errno));
  }
  return 0;
}

static int is_step_name(const char *s, int64_t *step) {
  if (strncmp(s, "step_", 5) != 0) return 0;
  char *end;
  long long v = strtoll(s + 5, &end, 10);
  if (end == s + 5 || *end) return 0;
  *step = v;
  return 1;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* The step a pointer file (LATEST, BEST) in dir names, or -1. */
static int64_t pointer_step(const char *dir, const char *name) {
  char file[4200], text[256] = {0};
  snprintf(file, sizeof file, "%s/%s", dir, name);
  FILE *fp = fopen(file, "r");
  if (!fp) return -1;
  int ok = fgets(text, sizeof text, fp) != NULL;
  fclose(fp);
  text[strcspn(text, "\r\n")] = 0;
  int64_t s;
  return ok && is_step_name(text, &s) ? s : -1;
}

/* Deletes the step directories older than the newest `keep`, but not the
 * one BEST names (checkpoint.keep_best). */
static void prune(const char *dir, int keep) {
  if (keep <= 0) return;
  const int64_t best = pointer_step(dir, "BEST");
  DIR *d = opendir(dir);
  if (!d) return;
  int64_t steps[4096];
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 4096) {
    int64_t s;
    if (is_step_name(e->d_name, &s)) steps[n++] = s;
  }
  closedir(d);
  qsort(steps, (size_t)n, sizeof steps[0], cmp_i64);
  for (int i = 0; i + keep < n; i++) {
    if (steps[i] == best) continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/step_%08lld", dir, (long long)steps[i]);
    rm_rf(path);
  }
}

int dt_ckpt_prepare(const char *dir, int64_t step, char *tmp_path, size_t size, dt_error *err) {
  if (mkdir_p(dir, err)) return -1;
  snprintf(tmp_path, size, "%s/step_%08lld.tmp", dir, (long long)step);
  rm_rf(tmp_path); /* left by a run that died while saving */
  if (mkdir(tmp_path, 0777) != 0)
    return dt_error_set(err, "%s: cannot create directory: %s", tmp_path, strerror(errno));
  return 0;
}

void dt_ckpt_discard(const char *tmp_path) { rm_rf(tmp_path); }

int dt_ckpt_commit(const char *dir, const char *tmp_path, const dt_ckpt_meta *meta,
                   const char *config_text, int keep, char *out_path, size_t out_size,
                   dt_error *err) {
  char final[4096], old[4200], file[4300];
  snprintf(final, sizeof final, "%s/step_%08lld", dir, (long long)meta->step);
  snprintf(old, sizeof old, "%s.old", final);
  snprintf(file, sizeof file, "%s/meta.h5", tmp_path);
  if (write_meta(file, meta, config_text, err)) goto fail;
  /* The same step saved again (a resumed run passing it once more) replaces
   * the old copy only after the new one is complete. */
  rm_rf(old);
  if (is_dir(final) && rename(final, old) != 0) {
    dt_error_set(err, "%s: cannot move aside: %s", final, strerror(errno));
    goto fail;
  }
  if (rename(tmp_path, final) != 0) {
    dt_error_set(err, "%s: cannot rename to %s: %s", tmp_path, final, strerror(errno));
    goto fail;
  }
  rm_rf(old);
  char latest[4200], text[64];
  snprintf(latest, sizeof latest, "%s/LATEST", dir);
  snprintf(text, sizeof text, "step_%08lld\n", (long long)meta->step);
  if (write_text_atomic(latest, text, err)) return -1;
  if (meta->is_best) {
    snprintf(latest, sizeof latest, "%s/BEST", dir);
    if (write_text_atomic(latest, text, err)) return -1;
  }
  prune(dir, keep);
  if (out_path) snprintf(out_path, out_size, "%s", final);
  return 0;
fail:
  rm_rf(tmp_path);
  return -1;
}

static size_t table_total(const dt_param *params, int nparams) {
  size_t total = 0;
  for (int i = 0; i < nparams; i++) total = DT_MAX(total, params[i].offset + params[i].count);
  return total;
}

int dt_ckpt_save(const char *dir, const dt_param *params, int nparams, const dt_ckpt_meta *meta,
                 const dt_ckpt_buffers *bufs, const char *config_text, int keep, char *out_path,
                 size_t out_size, dt_error *err) {
  char tmp[4200];
  if (dt_ckpt_prepare(dir, meta->step, tmp, sizeof tmp, err)) return -1;
  if (dt_ckpt_write_rank(tmp, meta->step, 0, params, nparams, 0, table_total(params, nparams),
                         bufs, 0, err)) {
    rm_rf(tmp);
    return -1;
  }
  return dt_ckpt_commit(dir, tmp, meta, config_text, keep, out_path, out_size, err);
}

/* path = the step directory dir/`name` (LATEST or BEST) names: 1, or 0
 * when there is no such file, -1 with err when it names no step. */
static int read_pointer(const char *dir, const char *file, char *path, size_t size,
                        dt_error *err) {
  char latest[4200];
  snprintf(latest, sizeof latest, "%s/%s", dir, file);
  FILE *fp = fopen(latest, "r");
  if (!fp) return 0;
  char name[256] = {0};
  int ok = fgets(name, sizeof name, fp) != NULL;
  fclose(fp);
  name[strcspn(name, "\r\n")] = 0;
  int64_t s;
  if (!ok || !is_step_name(name, &s))
    return dt_error_set(err, "%s: does not name a step directory (found '%s')", latest, name);
  snprintf(path, size, "%s/%s", dir, name);
  if (!is_dir(path))
    return dt_error_set(err, "%s: names %s, which does not exist", latest, path);
  return 1;
}

static int read_latest(const char *dir, char *path, size_t size, dt_error *err) {
  return read_pointer(dir, "LATEST", path, size, err);
}

int dt_ckpt_resolve(const char *resume, const char *dir, char *path, size_t size, dt_error *err) {
  if (!strcmp(resume, "never")) return 0;
  if (!strcmp(resume, "auto")) return read_latest(dir, path, size, err);
  if (!strcmp(resume, "best")) {
    int r = read_pointer(dir, "BEST", path, size, err);
    return r ? r : dt_error_set(err, "[checkpoint] resume = best: %s/BEST does not exist "
                                "(checkpoint.keep_best saves it)", dir);
  }
  /* a pointer file: DIR/LATEST or DIR/BEST */
  const char *slash = strrchr(resume, '/'), *base = slash ? slash + 1 : resume;
  if (!is_dir(resume) && (!strcmp(base, "LATEST") || !strcmp(base, "BEST")) &&
      access(resume, F_OK) == 0) {
    char parent[4096];
    snprintf(parent, sizeof parent, "%.*s", slash ? (int)(slash - resume) : 1,
             slash ? resume : ".");
    return read_pointer(parent, base, path, size, err);
  }
  if (!is_dir(resume))
    return dt_error_set(err, "[checkpoint] resume: %s is not a directory", resume);
  char meta[4200];
  snprintf(meta, sizeof meta, "%s/meta.h5", resume);
  if (access(meta, F_OK) == 0) {
    snprintf(path, size, "%s", resume);
    return 1;
  }
  int r = read_latest(resume, path, size, err);
  if (r == 0)
    return dt_error_set(err,
                        "[checkpoint] resume: %s holds neither a checkpoint (meta.h5) nor LATEST",
                        resume);
  return r;
}

static void shape_str(char *buf, size_t size, int nd, const int64_t *d) {
  int o = snprintf(buf, size, "(");
  for (int i = 0; i < nd && o < (int)size; i++)
    o += snprintf(buf + o, size - (size_t)o, "%s%lld", i ? "," : "", (long long)d[i]);
  if (o < (int)size) snprintf(buf + o, size - (size_t)o, ")");
}

/* Reads dataset dset (nd dims) whole and checks it against its checksum. */
static float *read_checked(hid_t f, const char *file, const char *dset, int nd,
                           const int64_t *dims, size_t n, dt_error *err) {
  float *tmp = dt_malloc(n * sizeof(float));
  int rc = dt_h5_read(f, dset, H5T_NATIVE_FLOAT, nd, dims, tmp, err);
  /* checkpoints written before the checksum have none to compare */
  int64_t want[2], got[2];
  if (!rc && dt_h5_attr_read_i64(f, dset, "checksum", 2, want, NULL) == 0) {
    slice_checksum(tmp, n, got);
    if (got[0] != want[0] || got[1] != want[1])
      rc = dt_error_set(err, "checkpoint %s: %s does not match the checksum saved with it: the "
                        "file is damaged", file, dset);
  }
  if (rc) {
    free(tmp);
    return NULL;
  }
  return tmp;
}

/* A slice saved as part fr of fn of tensor p, for a rank whose split is
 * another: each element goes through its place in the full tensor to this
 * rank's part, when it is this rank's and in [lo, hi). */
static int read_slice_remap(hid_t f, const char *file, const char *dset, const dt_param *p,
                            int fn, int fr, size_t flat_offset, int nd, const int64_t *dims,
                            size_t lo, size_t hi, float *dst, size_t *copied, dt_error *err) {
  size_t n = 1;
  for (int d = 0; d < nd; d++) n *= (size_t)dims[d];
  float *tmp = read_checked(f, file, dset, nd, dims, n, err);
  if (!tmp) return -1;
  const int my_n = dt_param_is_split(p) ? p->tp_n : 1;
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    size_t local;
    const size_t full = dt_param_full_index(p, fn, fr, flat_offset + i);
    if (dt_param_part_of(p, my_n, full, &local) != (my_n > 1 ? p->tp_r : 0)) continue;
    const size_t at = p->offset + local;
    if (at < lo || at >= hi) continue;
    if (!isfinite(tmp[i]))
      rc = dt_error_set(err, "checkpoint %s: %s holds %g at element %zu (damaged file?)", file,
                        dset, tmp[i], flat_offset + i);
    dst[at - lo] = tmp[i];
    ++*copied;
  }
  free(tmp);
  return rc;
}

/* Copies the part of one stored slice of tensor p that falls in the flat
 * range [lo, hi) into dst (dst[0] = flat lo); counts the elements copied. */
static int read_slice(hid_t f, const char *file, const char *dset, const dt_param *p, size_t lo,
                      size_t hi, float *dst, size_t *copied, dt_error *err) {
  int64_t full[DT_H5_MAXDIMS], flat_offset = 0;
  int nd = 0;
  int64_t dims[DT_H5_MAXDIMS];
  if (dt_h5_dims(f, dset, &nd, dims, err)) return -1;
  int same = dt_h5_attr_read_i64(f, dset, "full_shape", p->ndims, full, NULL) == 0;
  for (int d = 0; same && d < p->ndims; d++) same = full[d] == p->shape[d];
  if (!same) {
    char want[128], got[128];
    shape_str(want, sizeof want, p->ndims, p->shape);
    if (dt_h5_attr_read_i64(f, dset, "full_shape", p->ndims, full, NULL) == 0)
      shape_str(got, sizeof got, p->ndims, full);
    else
      shape_str(got, sizeof got, nd, dims);
    return dt_error_set(err, "checkpoint %s: %s has shape %s, but this model's %s is %s", file,
                        dset, got, p->name, want);
  }
  if (dt_h5_attr_read_i64(f, dset, "flat_offset", 1, &flat_offset, err)) return -1;
  /* which tensor-parallel part the slice is of (none: the whole tensor) */
  int64_t part[3] = {1, 0, p->tp_parts};
  if (dt_h5_attr_exists(f, dset, "tp_part") &&
      dt_h5_attr_read_i64(f, dset, "tp_part", 3, part, err))
    return -1;
  if (part[0] > 1 &&
      (p->tp_dim < 0 || part[1] < 0 || part[1] >= part[0] || part[2] != p->tp_parts ||
       p->shape[p->tp_dim] % part[2] != 0 || p->shape[p->tp_dim] / part[2] < part[0]))
    return dt_error_set(err, "checkpoint %s: %s says it is part %lld of %lld (in %lld blocks), "
                        "which this model's %s cannot be cut into (damaged file?)", file, dset,
                        (long long)part[1], (long long)part[0], (long long)part[2], p->name);
  /* same split as this rank (or none on both sides): the slice's flat
   * positions are this rank's; another part of the same split holds none of
   * them; another split is mapped element by element through the full
   * tensor (a run resumed with another parallel.tp) */
  const int same_split = part[0] == (dt_param_is_split(p) ? p->tp_n : 1);
  if (same_split && part[0] > 1 && part[1] != p->tp_r) return 0;
  const size_t held = same_split ? p->count : dt_param_part_count(p, (int)part[0], (int)part[1]);
  int64_t n = 1;
  for (int d = 0; d < nd; d++) n *= dims[d];
  if (flat_offset < 0 || (size_t)(flat_offset + n) > held)
    return dt_error_set(err, "checkpoint %s: %s covers elements [%lld, %lld) of a tensor of %zu",
                        file, dset, (long long)flat_offset, (long long)(flat_offset + n), held);
  if (!same_split) return read_slice_remap(f, file, dset, p, (int)part[0], (int)part[1],
                                     (size_t)flat_offset, nd, dims, lo, hi, dst, copied, err);
  size_t s_lo = p->offset + (size_t)flat_offset, s_hi = s_lo + (size_t)n;
  size_t a = DT_MAX(lo, s_lo), b = DT_MIN(hi, s_hi);
  if (a >= b) return 0;
  float *tmp = read_checked(f, file, dset, nd, dims, (size_t)n, err);
  if (!tmp) return -1;
  int rc = 0;
  /* training stops at a non-finite loss, so a saved NaN or Inf is damage */
  for (size_t i = a - s_lo; !rc && i < b - s_lo; i++)
    if (!isfinite(tmp[i]))
      rc = dt_error_set(err, "checkpoint %s: %s holds %g at element %lld (damaged file?)", file,
                        dset, tmp[i], (long long)flat_offset + (long long)i);
  if (!rc) {
    memcpy(dst + (a - lo), tmp + (a - s_lo), (b - a) * sizeof(float));
    *copied += b - a;
  }
  free(tmp);
  return rc;
}

int dt_ckpt_read_range(const char *path, const dt_ckpt_meta *meta, const dt_param *params,
                       int nparams, const char *group, size_t lo, size_t hi, float *dst,
                       dt_error *err) {
  size_t *copied = dt_calloc((size_t)nparams + 1, sizeof(size_t));
  char grp[128], file[4300], dset[256];
  if (!strcmp(group, "params")) snprintf(grp, sizeof grp, "params");
  else snprintf(grp, sizeof grp, "optim/%s", group);
  int rc = 0;
  for (int64_t r = 0; r < meta->world && !rc; r++) {
    snprintf(file, sizeof file, "%s/rank%05lld.h5", path, (long long)r);
    hid_t f = dt_h5_open(file, err);
    if (f < 0) {
      rc = -1;
      break;
    }
    /* a rank file left from another step (older checkpoints carry no step) */
    int64_t fstep;
    if (dt_h5_attr_read_i64(f, "/", "step", 1, &fstep, NULL) == 0 && fstep != meta->step) {
      rc = dt_error_set(err, "checkpoint %s: the rank file is from step %lld, but meta.h5 says "
                        "step %lld", file, (long long)fstep, (long long)meta->step);
      dt_h5_close(f);
      break;
    }
    for (int i = 0; i < nparams && !rc; i++) {
      const dt_param *p = &params[i];
      if (p->offset >= hi || p->offset + p->count <= lo) continue;
      tensor_name(dset, sizeof dset, grp, p->name);
      if (!dt_h5_exists(f, dset)) continue;
      rc = read_slice(f, file, dset, p, lo, hi, dst, &copied[i], err);
    }
    dt_h5_close(f);
  }
  for (int i = 0; i < nparams && !rc; i++) {
    const dt_param *p = &params[i];
    size_t a = DT_MAX(lo, p->offset), b = DT_MIN(hi, p->offset + p->count);
    size_t want = b > a ? b - a : 0;
    if (copied[i] != want)
      rc = dt_error_set(err,
                        "checkpoint %s: %s/%s: %zu of the %zu elements this rank needs are "
                        "missing (was it saved by another model?)",
                        path, grp, p->name, want - DT_MIN(want, copied[i]), want);
  }
  free(copied);
  return rc;
}

int dt_ckpt_read_meta(const char *path, dt_ckpt_meta *meta, char **config_text, dt_error *err) {
  char file[4300];
  snprintf(file, sizeof file, "%s/meta.h5", path);
  hid_t f = dt_h5_open(file, err);
  if (f < 0) return -1;
  char *fmt = dt_h5_attr_read_str(f, "/", "format", err);
  char *model = fmt ? dt_h5_attr_read_str(f, "/", "model", err) : NULL;
  char *optim = model ? dt_h5_attr_read_str(f, "/", "optimizer", err) : NULL;
  char *cfg = optim ? dt_h5_attr_read_str(f, "/", "config", err) : NULL;
  int64_t nums[9];
  int rc = cfg ? 0 : -1;
  if (!rc)
    rc = dt_h5_attr_read_i64(f, "/", "step", 1, &nums[0], err) ||
         dt_h5_attr_read_i64(f, "/", "loader_epoch", 1, &nums[1], err) ||
         dt_h5_attr_read_i64(f, "/", "loader_offset", 1, &nums[2], err) ||
         dt_h5_attr_read_i64(f, "/", "seed", 1, &nums[3], err) ||
         dt_h5_attr_read_i64(f, "/", "layout_dp_tp_pp_zero_world", 5, &nums[4], err);
  /* checkpoint.keep_best's record, absent from checkpoints saved without it */
  double best = 0;
  int64_t best_step = -1, best_since = 0;
  char *best_metric = NULL;
  if (!rc && dt_h5_attr_exists(f, "/", "best_step") > 0) {
    best_metric = dt_h5_attr_read_str(f, "/", "best_metric", err);
    rc = !best_metric || dt_h5_attr_read_f64(f, "/", "best", 1, &best, err) ||
         dt_h5_attr_read_i64(f, "/", "best_step", 1, &best_step, err) ||
         (dt_h5_attr_exists(f, "/", "best_since") > 0 &&
          dt_h5_attr_read_i64(f, "/", "best_since", 1, &best_since, err));
  }
  dt_h5_close(f);
  if (!rc && strcmp(fmt, CKPT_FORMAT) != 0)
    rc = dt_error_set(err, "checkpoint %s: format '%s', expected '%s'", file, fmt, CKPT_FORMAT);
  if (!rc && meta->model[0] && strcmp(model, meta->model) != 0)
    rc = dt_error_set(err, "checkpoint %s was written by model '%s', but [model] name is '%s'",
                      path, model, meta->model);
  if (!rc && meta->optimizer[0] && strcmp(optim, meta->optimizer) != 0)
    rc = dt_error_set(err,
                      "checkpoint %s holds %s optimizer state, but [optim] name is '%s' "
                      "(resume with optim.name=%s, or start afresh with checkpoint.resume=never)",
                      path, optim, meta->optimizer, optim);
  if (!rc && (nums[0] < 0 || nums[1] < 0 || nums[2] < 0 || nums[8] < 1 || nums[8] > 1000000))
    rc = dt_error_set(err, "checkpoint %s: bad step, loader position or world size", file);
  /* a step directory's name says its step: a meta.h5 that disagrees is
   * damaged or was copied from another step */
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  long long named = -1;
  int used = 0;
  if (!rc && sscanf(base, "step_%lld%n", &named, &used) == 1 &&
      (base[used] == '\0' || base[used] == '/') && named != nums[0])
    rc = dt_error_set(err, "checkpoint %s: step = %lld, but the directory is named for step %lld",
                      file, (long long)nums[0], named);
  if (!rc) {
    meta->step = nums[0];
    meta->epoch = nums[1];
    meta->epoch_offset = nums[2];
    meta->seed = (uint64_t)nums[3];
    meta->dp = nums[4], meta->tp = nums[5], meta->pp = nums[6], meta->zero = nums[7];
    meta->world = nums[8];
    meta->best = best, meta->best_step = best_step, meta->best_since = best_since;
    meta->is_best = 0;
    snprintf(meta->best_metric, sizeof meta->best_metric, "%.15s",
             best_metric ? best_metric : "");
    snprintf(meta->model, sizeof meta->model, "%.31s", model);
    snprintf(meta->optimizer, sizeof meta->optimizer, "%.31s", optim);
  }
  free(fmt), free(model), free(optim), free(best_metric);
  if (rc || !config_text) free(cfg);
  else *config_text = cfg;
  return rc ? -1 : 0;
}

int dt_ckpt_load(const char *path, const dt_param *params, int nparams, dt_ckpt_meta *meta,
                 const dt_ckpt_buffers *bufs, char **config_text, dt_error *err) {
  if (dt_ckpt_read_meta(path, meta, config_text, err)) return -1;
  size_t total = table_total(params, nparams);
  int rc = dt_ckpt_read_range(path, meta, params, nparams, "params", 0, total, bufs->params, err);
  for (int s = 0; s < bufs->nstates && !rc; s++)
    rc = dt_ckpt_read_range(path, meta, params, nparams, bufs->state_names[s], 0, total,
                            bufs->states[s], err);
  if (rc && config_text) {
    free(*config_text);
    *config_text = NULL;
  }
  return rc;
}

int dt_ckpt_open_run(const char *ckpt, char *path, size_t size, dt_ckpt_meta *meta,
                     dt_config *cfg, dt_error *err) {
  int r = dt_ckpt_resolve(ckpt, "", path, size, err);
  if (r < 0) return -1;
  if (r == 0) return dt_error_set(err, "%s: no checkpoint there", ckpt);
  memset(meta, 0, sizeof *meta); /* empty model/optimizer: accept what is there */
  char *text = NULL;
  if (dt_ckpt_read_meta(path, meta, &text, err)) return -1;
  int rc = dt_config_parse_text(cfg, text, path, err);
  free(text);
  /* the tools build the model its config describes next */
  char hint[4200];
  snprintf(hint, sizeof hint, "the model checkpoint %s describes (the [model] keys of its "
           "config)", path);
  if (!rc) dt_set_oom_hint(hint);
  return rc;
}
