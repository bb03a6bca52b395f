/* test_checkpoint.c: checkpoint save/load round trip, pruning, LATEST, and the
 * clear errors for a checkpoint that does not fit the model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../runtime/checkpoint.h"
#include "../runtime/h5.h"
#include "check.h"

static void add(dt_param *t, int *n, size_t *total, const char *name, int nd, int64_t d0,
                int64_t d1) {
  int64_t shape[2] = {d0, d1};
  dt_param *p = &t[*n];
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s", name);
  p->ndims = nd;
  p->shape[0] = d0;
  if (nd > 1) p->shape[1] = shape[1];
  p->count = (size_t)(nd > 1 ? d0 * d1 : d0);
  p->offset = *total;
  p->tp_dim = -1;
  *total += p->count;
  (*n)++;
}

static dt_ckpt_meta meta_for(int64_t step) {
  dt_ckpt_meta m;
  memset(&m, 0, sizeof m);
  m.step = step;
  m.epoch = 2;
  m.epoch_offset = 150;
  m.seed = 42;
  snprintf(m.model, sizeof m.model, "toy");
  snprintf(m.optimizer, sizeof m.optimizer, "adam");
  m.dp = m.tp = m.pp = m.world = 1;
  return m;
}

/* runtime/param.c's tensor-parallel parts: for split tensors of several
 * shapes, tp_dim, blocks and sizes (uneven ones too) the parts' elements
 * cover the full tensor exactly once, dt_param_part_of inverts
 * dt_param_full_index, and dt_param_extract copies the right elements. */
static void test_tp_parts(void) {
  static const struct { int nd; int64_t d0, d1; int dim, parts, tp; } cs[] = {
      {2, 7, 5, 0, 1, 2}, {2, 7, 5, 0, 1, 3}, {2, 7, 5, 0, 1, 7}, {2, 12, 4, 0, 3, 2},
      {2, 12, 4, 0, 3, 4}, {2, 4, 9, 1, 1, 2}, {2, 4, 9, 1, 1, 3}, {1, 6, 0, 0, 3, 2},
      {2, 50257, 2, 0, 1, 3}};
  for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
    dt_param p;
    memset(&p, 0, sizeof p);
    p.ndims = cs[c].nd, p.shape[0] = cs[c].d0, p.shape[1] = cs[c].d1;
    p.tp_dim = cs[c].dim, p.tp_parts = cs[c].parts;
    const size_t full = dt_param_full_count(&p);
    int *seen = calloc(full, sizeof(int));
    float *f = malloc(full * sizeof(float));
    for (size_t i = 0; i < full; i++) f[i] = (float)i;
    size_t sum = 0;
    int bad = 0;
    for (int r = 0; r < cs[c].tp; r++) {
      dt_param q = p;
      dt_param_table_split(&q, 1, cs[c].tp, r);
      sum += q.count;
      float *part = malloc(q.count * sizeof(float));
      dt_param_extract(&q, f, part);
      for (size_t i = 0; i < q.count; i++) {
        size_t at = dt_param_full_index(&p, cs[c].tp, r, i), back;
        bad += at >= full || dt_param_part_of(&p, cs[c].tp, at, &back) != r || back != i ||
               part[i] != (float)at;
        if (at < full) seen[at]++;
      }
      free(part);
    }
    for (size_t i = 0; i < full; i++) bad += seen[i] != 1;
    CHECK(bad == 0 && sum == full, "tp parts: (%lld,%lld) dim %d, %d blocks, tp %d: %zu of %zu "
          "elements once each, part_of inverts full_index, extract copies them (%d bad)",
          (long long)cs[c].d0, (long long)cs[c].d1, cs[c].dim, cs[c].parts, cs[c].tp, sum, full,
          bad);
    free(seen), free(f);
  }
}

int main(void) {
  test_tp_parts();
  char dir[] = "/tmp/dtrain-ckpt-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  char ck[512];
  snprintf(ck, sizeof ck, "%s/ck", dir);

  dt_param t[4];
  int n = 0;
  size_t total = 0;
  add(t, &n, &total, "layer.weight", 2, 3, 4);
  add(t, &n, &total, "layer.bias", 1, 5, 0);
  float *p = malloc(total * sizeof(float)), *m1 = malloc(total * sizeof(float)),
        *m2 = malloc(total * sizeof(float));
  for (size_t i = 0; i < total; i++) p[i] = 0.1f * (float)i - 1, m1[i] = (float)i, m2[i] = 1.0f / (float)(i + 1);
  dt_ckpt_buffers b = {.params = p, .nstates = 2, .state_names = {"exp_avg", "exp_avg_sq"},
                       .states = {m1, m2}};
  dt_error err = {{0}};
  char out[1024];
  for (int64_t s = 1; s <= 4; s++) {
    dt_ckpt_meta meta = meta_for(s);
    int rc = dt_ckpt_save(ck, t, n, &meta, &b, "[train]\nepochs = 1\n", 2, out, sizeof out, &err);
    CHECK(rc == 0, "save step %lld -> %s %s", (long long)s, out, rc ? err.msg : "");
  }
  char path[1024];
  snprintf(path, sizeof path, "%s/step_00000001", ck);
  CHECK(access(path, F_OK) != 0, "keep=2 pruned step 1");
  snprintf(path, sizeof path, "%s/step_00000003", ck);
  CHECK(access(path, F_OK) == 0, "keep=2 kept step 3");

  char found[1024];
  CHECK(dt_ckpt_resolve("never", ck, found, sizeof found, &err) == 0, "resume=never");
  CHECK(dt_ckpt_resolve("auto", dir, found, sizeof found, &err) == 0, "resume=auto without LATEST");
  int r = dt_ckpt_resolve("auto", ck, found, sizeof found, &err);
  CHECK(r == 1 && strstr(found, "step_00000004"), "resume=auto finds LATEST (%s)", found);
  r = dt_ckpt_resolve(ck, "unused", found, sizeof found, &err);
  CHECK(r == 1 && strstr(found, "step_00000004"), "resume=DIR with LATEST");
  r = dt_ckpt_resolve(path, "unused", found, sizeof found, &err);
  CHECK(r == 1 && !strcmp(found, path), "resume=step dir");
  r = dt_ckpt_resolve(dir, "unused", found, sizeof found, &err);
  CHECK(r == -1 && strstr(err.msg, "neither"), "resume=dir without checkpoint: %s", err.msg);

  float *q = calloc(total, sizeof(float)), *q1 = calloc(total, sizeof(float)),
        *q2 = calloc(total, sizeof(float));
  dt_ckpt_buffers lb = {.params = q, .nstates = 2, .state_names = {"exp_avg", "exp_avg_sq"},
                        .states = {q1, q2}};
  dt_ckpt_meta meta = meta_for(0);
  char *cfg = NULL;
  r = dt_ckpt_load(found, t, n, &meta, &lb, &cfg, &err);
  CHECK(r == 0, "load %s", r ? err.msg : "");
  CHECK(!memcmp(p, q, total * 4) && !memcmp(m1, q1, total * 4) && !memcmp(m2, q2, total * 4),
        "params and optimizer state identical after load");
  CHECK(meta.step == 3 && meta.epoch == 2 && meta.epoch_offset == 150 && meta.seed == 42,
        "meta restored (step %lld)", (long long)meta.step);
  CHECK(cfg && !strcmp(cfg, "[train]\nepochs = 1\n"), "config text restored");
  free(cfg);

  /* another shape */
  dt_param t2[4];
  int n2 = 0;
  size_t total2 = 0;
  add(t2, &n2, &total2, "layer.weight", 2, 3, 4);
  add(t2, &n2, &total2, "layer.bias", 1, 6, 0);
  float *big = calloc(total2, sizeof(float)), *big1 = calloc(total2, 4), *big2 = calloc(total2, 4);
  dt_ckpt_buffers bb = {.params = big, .nstates = 2, .state_names = {"exp_avg", "exp_avg_sq"},
                        .states = {big1, big2}};
  meta = meta_for(0);
  r = dt_ckpt_load(found, t2, n2, &meta, &bb, NULL, &err);
  CHECK(r == -1 && strstr(err.msg, "layer.bias") && strstr(err.msg, "(5)") && strstr(err.msg, "(6)"),
        "shape mismatch: %s", err.msg);
  /* a parameter the checkpoint lacks */
  n2 = 0, total2 = 0;
  add(t2, &n2, &total2, "other.weight", 2, 3, 4);
  r = dt_ckpt_load(found, t2, n2, &meta, &bb, NULL, &err);
  CHECK(r == -1 && strstr(err.msg, "other.weight"), "missing tensor: %s", err.msg);
  /* another model, another optimizer */
  meta = meta_for(0);
  snprintf(meta.model, sizeof meta.model, "gpt");
  r = dt_ckpt_load(found, t, n, &meta, &lb, NULL, &err);
  CHECK(r == -1 && strstr(err.msg, "toy") && strstr(err.msg, "gpt"), "model mismatch: %s", err.msg);
  meta = meta_for(0);
  snprintf(meta.optimizer, sizeof meta.optimizer, "sgd");
  r = dt_ckpt_load(found, t, n, &meta, &lb, NULL, &err);
  CHECK(r == -1 && strstr(err.msg, "sgd") && strstr(err.msg, "adam"), "optimizer mismatch: %s", err.msg);

  /* sharded: two ranks each write part of the flat range (cutting
   * layer.weight in the middle); any range reads back across both files */
  {
    char ck2[600], tmp[4200];
    snprintf(ck2, sizeof ck2, "%s/sharded", dir);
    dt_ckpt_meta sm = meta_for(7);
    sm.world = 2, sm.dp = 2, sm.zero = 1;
    int rc = dt_ckpt_prepare(ck2, 7, tmp, sizeof tmp, &err);
    dt_ckpt_buffers half = b;
    half.states[0] = m1 + 5, half.states[1] = m2 + 5; /* rank 1's state shard starts at 5 */
    rc = rc || dt_ckpt_write_rank(tmp, 7, 0, t, n, 0, 5, &b, 0, &err);
    rc = rc || dt_ckpt_write_rank(tmp, 7, 1, t, n, 5, total, &half, 5, &err);
    rc = rc || dt_ckpt_commit(ck2, tmp, &sm, "x", 0, out, sizeof out, &err);
    CHECK(rc == 0, "sharded save over 2 ranks %s", rc ? err.msg : "");
    dt_ckpt_meta rm = meta_for(0);
    rc = dt_ckpt_read_meta(out, &rm, NULL, &err);
    CHECK(rc == 0 && rm.world == 2 && rm.zero == 1, "sharded meta: world %lld", (long long)rm.world);
    float got[32] = {0};
    rc = dt_ckpt_read_range(out, &rm, t, n, "params", 3, total, got, &err);
    CHECK(rc == 0 && !memcmp(got, p + 3, (total - 3) * 4), "params [3,%zu) across both files %s",
          total, rc ? err.msg : "");
    rc = dt_ckpt_read_range(out, &rm, t, n, "exp_avg_sq", 0, 9, got, &err);
    CHECK(rc == 0 && !memcmp(got, m2, 9 * 4), "state [0,9) across both files");
    char r1[4400];
    snprintf(r1, sizeof r1, "%s/rank00001.h5", out);
    remove(r1);
    rc = dt_ckpt_read_range(out, &rm, t, n, "params", 0, total, got, &err);
    CHECK(rc == -1 && strstr(err.msg, "rank00001.h5"), "a missing rank file: %s", err.msg);
  }

  /* damage the format cannot see: a NaN in a tensor (training stops at a
   * non-finite loss, so no good checkpoint holds one), and a meta.h5 whose
   * step is not its directory's */
  {
    char ck3[600], tmp[4200], moved[4400];
    snprintf(ck3, sizeof ck3, "%s/damaged", dir);
    float keep = p[5];
    p[5] = NAN; /* layer.weight[5] */
    dt_ckpt_meta dm = meta_for(9);
    int rc = dt_ckpt_prepare(ck3, 9, tmp, sizeof tmp, &err);
    rc = rc || dt_ckpt_write_rank(tmp, 9, 0, t, n, 0, total, &b, 0, &err);
    rc = rc || dt_ckpt_commit(ck3, tmp, &dm, "x", 0, out, sizeof out, &err);
    p[5] = keep;
    CHECK(rc == 0, "save with a NaN %s", rc ? err.msg : "");
    meta = meta_for(0);
    r = dt_ckpt_load(out, t, n, &meta, &lb, NULL, &err);
    CHECK(r == -1 && strstr(err.msg, "params/layer.weight") && strstr(err.msg, "nan") &&
              strstr(err.msg, "element 5"),
          "a NaN in a tensor: %s", err.msg);
    snprintf(moved, sizeof moved, "%s/step_00000010", ck3);
    CHECK(rename(out, moved) == 0, "rename step 9's directory to step 10's");
    meta = meta_for(0);
    r = dt_ckpt_read_meta(moved, &meta, NULL, &err);
    CHECK(r == -1 && strstr(err.msg, "step = 9") && strstr(err.msg, "step 10"),
          "meta.h5 of another step: %s", err.msg);
    /* an earlier step's rank file beside step 11's meta.h5 */
    dm = meta_for(11);
    rc = dt_ckpt_save(ck3, t, n, &dm, &b, "x", 0, out, sizeof out, &err);
    char cmd4[9000];
    snprintf(cmd4, sizeof cmd4, "cp '%s/rank00000.h5' '%s/rank00000.h5'", found, out);
    CHECK(rc == 0 && system(cmd4) == 0, "save step 11, then put an older rank file in it");
    meta = meta_for(0);
    r = dt_ckpt_load(out, t, n, &meta, &lb, NULL, &err);
    CHECK(r == -1 && strstr(err.msg, "rank file is from step") && strstr(err.msg, "says step 11"),
          "a rank file of another step: %s", err.msg);
    /* one bit flipped on disk in a saved weight (the lowest of the mantissa
     * of layer.bias[2]: still a finite number, and HDF5 checks no data) */
    dm = meta_for(12);
    rc = dt_ckpt_save(ck3, t, n, &dm, &b, "x", 0, out, sizeof out, &err);
    char rf[1100];
    snprintf(rf, sizeof rf, "%s/rank00000.h5", out);
    hid_t hf = rc == 0 ? dt_h5_open(rf, &err) : -1;
    hid_t hd = hf >= 0 ? H5Dopen2(hf, "params/layer.bias", H5P_DEFAULT) : -1;
    haddr_t at = hd >= 0 ? H5Dget_offset(hd) : HADDR_UNDEF;
    if (hd >= 0) H5Dclose(hd);
    dt_h5_close(hf);
    FILE *fp = at != HADDR_UNDEF ? fopen(rf, "r+b") : NULL;
    int flipped = 0;
    if (fp && fseek(fp, (long)at + 2 * 4, SEEK_SET) == 0) { /* little-endian: low byte first */
      int c = fgetc(fp);
      flipped = c != EOF && fseek(fp, (long)at + 2 * 4, SEEK_SET) == 0 && fputc(c ^ 1, fp) != EOF;
    }
    if (fp) fclose(fp);
    CHECK(rc == 0 && flipped, "save step 12, then flip the low bit of layer.bias[2] in its file");
    meta = meta_for(0);
    r = dt_ckpt_load(out, t, n, &meta, &lb, NULL, &err);
    CHECK(r == -1 && strstr(err.msg, "params/layer.bias") && strstr(err.msg, "checksum"),
          "a flipped bit in a weight: %s", err.msg);
    memset(big, 0, total * sizeof(float));
    meta = meta_for(0);
    r = dt_ckpt_read_meta(out, &meta, NULL, &err);
    r = r ? r : dt_ckpt_read_range(out, &meta, t, n, "exp_avg", 0, total, big, &err);
    CHECK(r == 0 && !memcmp(big, m1, total * sizeof(float)),
          "the undamaged optimizer state still reads %s", r ? err.msg : "");
  }

  /* a truncated rank file */
  char rank[1200], cmd[5200];
  snprintf(rank, sizeof rank, "%s/rank00000.h5", found);
  snprintf(cmd, sizeof cmd, "head -c 1500 '%s' > '%s.t' && mv '%s.t' '%s'", rank, rank, rank, rank);
  CHECK(system(cmd) == 0, "truncate rank file");
  meta = meta_for(0);
  r = dt_ckpt_load(found, t, n, &meta, &lb, NULL, &err);
  CHECK(r == -1 && strstr(err.msg, "rank00000.h5"), "truncated rank file: %s", err.msg);

  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
  free(p), free(m1), free(m2), free(q), free(q1), free(q2), free(big), free(big1), free(big2);
  return check_summary();
}
