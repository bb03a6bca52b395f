/* test_hf_io.c: Hugging Face GPT-2 weights in and out of dtrain, against
 * files written by transformers and safetensors (tests/fixtures/, made by
 * tests/oracle/make_hf_import_fixture.py): the safetensors reader's dtype
 * conversions; a transformers-saved model imported into models/gpt.c gives
 * transformers' logits; export(import(file)) is the same bytes as the file;
 * both key styles; and every malformed file or mismatched model is an error
 * naming the file and the tensor or key: headers of 100k names are read in
 * well under a second (not quadratically), a directory or FIFO where a file
 * belongs and NaN/Inf weights (F32, F16, BF16) are refused; config.json's
 * integers may be written as integral floats (4.0).
 * Usage: test_hf_io FIXTURES_DIR
 * Helpers for tests/test_hf_io.sh:
 *   test_hf_io make-shards DIR VOCAB NTOKENS     random train.h5 / val.h5 token shards
 *   test_hf_io compare CKPT WEIGHTS [MAXDIFF]    checkpoint params vs imported weights:
 *       exit 0 if max |diff| <= MAXDIFF (default 0: bit for bit); with a negative
 *       MAXDIFF, exit 0 if max |diff| >= -MAXDIFF (they differ) */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../models/model.h"
#include "../runtime/checkpoint.h"
#include "../runtime/h5.h"
#include "../runtime/hf_gpt2.h"
#include "../runtime/rng.h"
#include "../runtime/safetensors.h"
#include "../runtime/textprep.h"
#include "check.h"

static char g_tmp[256];

static void *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  rewind(f);
  char *b = malloc((size_t)len + 1);
  *n = fread(b, 1, (size_t)len, f);
  fclose(f);
  return b;
}

static void write_bytes(const char *path, const void *b, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(b, 1, n, f) != n) printf("cannot write %s\n", path), exit(1);
  fclose(f);
}

/* max |a - r| over n, and whether any element differs in its bits */
static double max_abs(const float *a, const float *r, size_t n, size_t *worst) {
  double m = 0;
  *worst = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)r[i]);
    if (!(d <= m)) m = d, *worst = i;
  }
  return m;
}

static void tiny_config(dt_config *cfg, long L, long C) {
  dt_config_defaults(cfg);
  snprintf(cfg->model_name, sizeof cfg->model_name, "gpt");
  snprintf(cfg->train_device, sizeof cfg->train_device, "cpu");
  cfg->model_n_layer = L;
  cfg->model_n_head = 4;
  cfg->model_n_embd = C;
  cfg->model_vocab_size = 97;
  cfg->model_block_size = 16;
}

/* The import of path into a model built from cfg; the error message, if
 * any, in err. Returns the flat buffer (NULL on error). */
static float *import_with(const dt_config *cfg, dt_backend_t be, const char *path,
                          dt_error *err) {
  dt_model *m = dt_model_create(cfg, be, 1, err);
  if (!m) return NULL;
  float *flat = calloc(m->nparams_total, sizeof(float));
  int rc = dt_hf_gpt2_import(path, cfg, m->params, m->nparams, flat, NULL, 0, err);
  dt_model_destroy(m);
  if (rc) free(flat), flat = NULL;
  return flat;
}

/* An import that must fail with a message holding every one of the needles. */
static void expect_error(const char *what, const dt_config *cfg, dt_backend_t be,
                         const char *path, const char *n1, const char *n2) {
  dt_error err = {{0}};
  float *flat = import_with(cfg, be, path, &err);
  int ok = !flat && strstr(err.msg, n1) && (!n2 || strstr(err.msg, n2));
  CHECK(ok, "%-44s -> %s", what, flat ? "(imported!)" : err.msg);
  free(flat);
}

/* ---- the reader on PyTorch-rounded dtypes ---- */

static void test_dtypes(const char *dir) {
  char path[512], jpath[512];
  snprintf(path, sizeof path, "%s/st_dtypes.safetensors", dir);
  snprintf(jpath, sizeof jpath, "%s/st_dtypes.json", dir);
  dt_error err;
  dt_st_file f;
  size_t jn;
  char *jtext = read_file(jpath, &jn);
  dt_json *want = jtext ? dt_json_parse(jtext, jn, jpath, &err) : NULL;
  free(jtext);
  if (dt_st_open(&f, path, &err) || !want) {
    CHECK(0, "open %s: %s", path, err.msg);
    return;
  }
  const char *made = dt_st_metadata(&f, "made_by");
  CHECK(made && !strcmp(made, "make_hf_import_fixture.py"), "__metadata__ made_by read back");
  for (int k = 0; k < want->n; k++) {
    const dt_json *w = &want->kids[k];
    int i = dt_st_find(&f, w->key);
    float got[8] = {0};
    int bad = i < 0 || (int)dt_st_count(&f.tensors[i]) != w->n ||
              dt_st_read_f32(&f, i, got, &err);
    for (int j = 0; !bad && j < w->n; j++) {
      uint32_t bits;
      memcpy(&bits, &got[j], 4);
      bad = bits != (uint32_t)w->kids[j].i;
    }
    CHECK(!bad, "%-14s (%s) converts to PyTorch's floats bit for bit", w->key,
          i >= 0 ? dt_st_dtype_name(f.tensors[i].dtype) : "?");
  }
  int i = dt_st_find(&f, "i64");
  int64_t iv[4] = {0};
  float fv[4];
  CHECK(i >= 0 && dt_st_read_raw(&f, i, iv, &err) == 0 && iv[0] == 0 && iv[3] == 3,
        "i64 read raw: 0 1 2 3");
  int rc = i >= 0 ? dt_st_read_f32(&f, i, fv, &err) : 0;
  CHECK(rc && strstr(err.msg, "'i64'") && strstr(err.msg, "I64"),
        "i64 as floats is an error naming it -> %s", err.msg);
  dt_st_close(&f);
  dt_json_free(want);
}

/* ---- import: logits against transformers ---- */

static void test_logits(const char *dir, dt_backend_t be, float **flat_out) {
  char hf[512], lpath[512];
  snprintf(hf, sizeof hf, "%s/hf_gpt2_tiny", dir);
  snprintf(lpath, sizeof lpath, "%s/hf_gpt2_tiny_logits.h5", dir);
  dt_error err;
  hid_t h = dt_h5_open(lpath, &err);
  if (h < 0) {
    CHECK(0, "%s", err.msg);
    return;
  }
  int nd;
  int64_t dims[DT_H5_MAXDIMS];
  dt_h5_dims(h, "logits", &nd, dims, &err);
  const int B = (int)dims[0], T = (int)dims[1], V = (int)dims[2];
  int32_t *tokens = malloc((size_t)B * T * sizeof(int32_t));
  float *ref = malloc((size_t)B * T * V * sizeof(float));
  int64_t d2[2] = {B, T};
  int rc = dt_h5_read(h, "tokens", H5T_NATIVE_INT32, 2, d2, tokens, &err) ||
           dt_h5_read(h, "logits", H5T_NATIVE_FLOAT, 3, dims, ref, &err);
  dt_h5_close(h);
  dt_config cfg;
  tiny_config(&cfg, 2, 32);
  dt_model *m = rc ? NULL : dt_model_create(&cfg, be, B, &err);
  float *flat = m ? calloc(m->nparams_total, sizeof(float)) : NULL;
  char used[4200] = "";
  if (!m || dt_hf_gpt2_import(hf, &cfg, m->params, m->nparams, flat, used, sizeof used, &err)) {
    CHECK(0, "import %s: %s", hf, err.msg);
    return;
  }
  CHECK(strstr(used, "hf_gpt2_tiny/model.safetensors") != NULL, "a directory reads %s", used);
  m->p = flat; /* the CPU backend's device memory is host memory */
  int32_t *y = calloc((size_t)B * T, sizeof(int32_t));
  float *losses = calloc((size_t)B * T, sizeof(float));
  dt_batch b = {.n = B, .t = T, .tokens = tokens, .y = y};
  const float *logits = m->forward_backward(m, &b, losses, 0.0f);
  size_t worst;
  double d = max_abs(logits, ref, (size_t)B * T * V, &worst);
  CHECK(d <= 2e-6, "imported model's logits match transformers' (%dx%dx%d): max|diff| %.3g "
        "(worst [%zu] %.9g vs %.9g)", B, T, V, d, worst, logits[worst], ref[worst]);
  m->p = NULL;
  *flat_out = flat;
  free(y), free(losses), free(tokens), free(ref);
  dt_model_destroy(m);
}

/* ---- export(import(file)) == file ---- */

static void test_roundtrip(const char *dir, dt_backend_t be, const float *flat) {
  char src[512], out[512];
  snprintf(src, sizeof src, "%s/hf_gpt2_tiny/model.safetensors", dir);
  snprintf(out, sizeof out, "%s/export.safetensors", g_tmp);
  dt_config cfg;
  tiny_config(&cfg, 2, 32);
  dt_error err;
  dt_model *m = dt_model_create(&cfg, be, 1, &err);
  int rc = dt_hf_gpt2_export(out, m->params, m->nparams, flat, &err);
  CHECK(rc == 0, "export %s", rc ? err.msg : "");
  dt_st_file a, b;
  if (rc || dt_st_open(&a, src, &err) || dt_st_open(&b, out, &err)) {
    CHECK(0, "open: %s", err.msg);
    dt_model_destroy(m);
    return;
  }
  int same = a.ntensors == b.ntensors, nsame = 0;
  for (int i = 0; i < a.ntensors; i++) {
    const dt_st_tensor *t = &a.tensors[i];
    int j = dt_st_find(&b, t->name);
    int ok = j >= 0 && b.tensors[j].dtype == t->dtype && b.tensors[j].ndims == t->ndims &&
             !memcmp(b.tensors[j].shape, t->shape, sizeof t->shape);
    if (ok) {
      size_t n = (size_t)(t->end - t->begin);
      char *x = malloc(n + 1), *y = malloc(n + 1);
      ok = !dt_st_read_raw(&a, i, x, &err) && !dt_st_read_raw(&b, j, y, &err) && !memcmp(x, y, n);
      free(x), free(y);
    }
    if (!ok) printf("     differs: %s\n", t->name);
    nsame += ok;
    same &= ok;
  }
  CHECK(same, "export(import(file)): %d/%d tensors byte-identical to transformers' "
        "(names, dtype, shape, data)", nsame, a.ntensors);
  const char *fmt = dt_st_metadata(&b, "format");
  CHECK(fmt && !strcmp(fmt, "pt"), "export writes __metadata__ format = pt");
  dt_st_close(&a), dt_st_close(&b);
  size_t na, nb;
  char *fa = read_file(src, &na), *fb = read_file(out, &nb);
  CHECK(fa && fb && na == nb && !memcmp(fa, fb, na),
        "the exported file is the transformers file byte for byte (%zu bytes)", na);
  free(fa), free(fb);
  dt_model_destroy(m);
}

/* ---- key styles: OpenAI's hub naming, buffers and the tied head ---- */

static void test_key_styles(dt_backend_t be, const float *flat) {
  dt_config cfg;
  tiny_config(&cfg, 2, 32);
  dt_error err;
  dt_model *m = dt_model_create(&cfg, be, 1, &err);
  char path[512];
  snprintf(path, sizeof path, "%s/hub-style.safetensors", g_tmp);
  /* the tensors as OpenAI's hub file has them: no prefix, Conv1D (in, out),
   * the causal-mask buffers and an lm_head equal to wte */
  int n = m->nparams;
  dt_st_out *out = calloc((size_t)n + 4, sizeof *out);
  float **tr = calloc((size_t)n, sizeof *tr);
  for (int k = 0; k < n; k++) {
    const dt_param *p = &m->params[k];
    out[k].name = p->name;
    out[k].ndims = p->ndims;
    memcpy(out[k].shape, p->shape, sizeof p->shape);
    out[k].data = flat + p->offset;
    if (p->ndims == 2 && strstr(p->name, "h.")) { /* the Conv1D weights */
      out[k].shape[0] = p->shape[1], out[k].shape[1] = p->shape[0];
      tr[k] = malloc(p->count * sizeof(float));
      for (int64_t r = 0; r < p->shape[0]; r++)
        for (int64_t c = 0; c < p->shape[1]; c++)
          tr[k][c * p->shape[0] + r] = flat[p->offset + r * p->shape[1] + c];
      out[k].data = tr[k];
    }
  }
  float *mask = calloc(16 * 16, sizeof(float));
  for (int l = 0; l < 2; l++)
    out[n + l] = (dt_st_out){l ? "h.1.attn.bias" : "h.0.attn.bias", 4, {1, 1, 16, 16}, mask};
  out[n + 2] = (dt_st_out){"lm_head.weight", 2, {97, 32}, flat};
  out[n + 3] = (dt_st_out){"h.0.attn.masked_bias", 0, {0}, mask};
  int rc = dt_st_write_f32(path, out, n + 4, NULL, 0, &err);
  float *got = rc ? NULL : import_with(&cfg, be, path, &err);
  size_t worst;
  CHECK(got && max_abs(got, flat, m->nparams_total, &worst) == 0,
        "no prefix + attn.bias/masked_bias buffers + tied lm_head: same weights %s",
        got ? "" : err.msg);
  free(got);
  /* an untied head cannot be represented */
  float *other = malloc(97 * 32 * sizeof(float));
  memcpy(other, flat, 97 * 32 * sizeof(float));
  other[5] += 1.0f;
  out[n + 2].data = other;
  dt_st_write_f32(path, out, n + 4, NULL, 0, &err);
  expect_error("lm_head.weight different from wte", &cfg, be, path, path, "'lm_head.weight'");
  /* one tensor under both names */
  out[n + 2] = (dt_st_out){"transformer.wpe.weight", 2, {16, 32}, flat};
  dt_st_write_f32(path, out, n + 3, NULL, 0, &err);
  expect_error("wpe.weight and transformer.wpe.weight", &cfg, be, path, "wpe.weight",
               "transformer.wpe.weight");
  for (int k = 0; k < n; k++) free(tr[k]);
  free(tr), free(out), free(mask), free(other);
  dt_model_destroy(m);
}

/* ---- malformed files ---- */

static void le64(unsigned char *b, uint64_t v) {
  for (int k = 0; k < 8; k++) b[k] = (unsigned char)(v >> (8 * k));
}

/* A file from a header text and data_bytes zero bytes. */
static void make_file(const char *path, const char *header, size_t data_bytes) {
  size_t h = strlen(header);
  unsigned char *b = calloc(8 + h + data_bytes + 1, 1);
  le64(b, h);
  memcpy(b + 8, header, h);
  write_bytes(path, b, 8 + h + data_bytes);
  free(b);
}

static void expect_open_error(const char *what, const char *path, const char *n1,
                              const char *n2) {
  dt_st_file f;
  dt_error err = {{0}};
  int rc = dt_st_open(&f, path, &err);
  if (!rc) dt_st_close(&f);
  int ok = rc && strstr(err.msg, path) && strstr(err.msg, n1) && (!n2 || strstr(err.msg, n2));
  CHECK(ok, "%-44s -> %s", what, rc ? err.msg : "(opened!)");
}

static void test_malformed(const char *dir) {
  char src[512], p[512];
  snprintf(src, sizeof src, "%s/hf_gpt2_tiny/model.safetensors", dir);
  snprintf(p, sizeof p, "%s/bad.safetensors", g_tmp);
  size_t n;
  unsigned char *b = read_file(src, &n);
  write_bytes(p, b, 5);
  expect_open_error("5 bytes", p, "truncated", NULL);
  write_bytes(p, b, 200);
  expect_open_error("cut inside the header", p, "header length", "runs past the end");
  write_bytes(p, b, n - 100);
  expect_open_error("cut inside the data", p, "'transformer.wte.weight'", "truncated");
  unsigned char *c = malloc(n + 16);
  memcpy(c, b, n);
  memset(c + n, 0, 16);
  write_bytes(p, c, n + 16);
  expect_open_error("16 bytes appended", p, "16 bytes after the last tensor", NULL);
  le64(c, 1ULL << 40);
  write_bytes(p, c, n);
  expect_open_error("header length 2^40", p, "header length 1099511627776", NULL);
  free(c);
  free(b);
  make_file(p, "[]      ", 0);
  expect_open_error("header not an object", p, "does not start with '{'", NULL);
  make_file(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}", 8);
  expect_open_error("trailing comma in the JSON", p, "JSON error at byte", "member name");
  make_file(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16);
  expect_open_error("a tensor named twice", p, "duplicate key \"a\"", "at byte 54:");
  make_file(p, "{\"b\":1,\"a\":2,\"c\":3,\"b\":4,\"a\":5}", 0);
  expect_open_error("names twice: the first repeat in the text", p, "at byte 19: duplicate key "
                    "\"b\"", NULL);
  make_file(p, "{\"w\":{\"dtype\":\"F12\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
  expect_open_error("unknown dtype", p, "'w'", "\"F12\"");
  make_file(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8);
  expect_open_error("shape x dtype != byte range", p, "'w'", "needs 12 bytes");
  make_file(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,8]}}", 8);
  expect_open_error("negative size", p, "'w'", "shape[0]");
  make_file(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12);
  expect_open_error("overlapping offsets", p, "'v' [4, 12) overlaps tensor 'w'", NULL);
  make_file(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20);
  expect_open_error("a gap between tensors", p, "[8, 12) before tensor 'v'", NULL);
  make_file(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8);
  expect_open_error("offsets beyond the data", p, "'w'", "run past the end of the data");
  make_file(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8);
  expect_open_error("end before begin", p, "'w'", "end before they begin");
  make_file(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8);
  expect_open_error("no data_offsets", p, "'w'", "lacks \"data_offsets\"");
  make_file(p, "{\"__metadata__\":{\"format\":1}}", 0);
  expect_open_error("__metadata__ value not a string", p, "__metadata__ \"format\"", NULL);
  make_file(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
               "\"data_offsets\":[0,8]}}", 8);
  expect_open_error("a shape whose size overflows", p, "'w'", "needs more than");
  snprintf(p, sizeof p, "%s/absent.safetensors", g_tmp);
  expect_open_error("no such file", p, "cannot open", NULL);
  /* the writer refuses a name given twice (its message read freed memory:
   * ASan's heap-use-after-free) */
  float two[2] = {1, 2};
  dt_st_out dup[2] = {{"x", 1, {1}, two}, {"x", 1, {1}, two + 1}};
  dt_error err = {{0}};
  snprintf(p, sizeof p, "%s/dup.safetensors", g_tmp);
  int rc = dt_st_write_f32(p, dup, 2, NULL, 0, &err);
  CHECK(rc && strstr(err.msg, "tensor name 'x' given twice") && access(p, F_OK) != 0,
        "writing a name twice -> %s", rc ? err.msg : "(written!)");
  /* not a file: a directory once gave "truncated: 9223372036854775807 bytes" */
  expect_open_error("a directory", g_tmp, "is a directory", NULL);
}

/* ---- headers with very many names ---- */

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* {"<prefix>000000": <value>, ...}: n members, in a malloc'ed string */
static char *many_members(int n, const char *prefix, const char *value) {
  size_t each = strlen(prefix) + strlen(value) + 16;
  char *s = malloc((size_t)n * each + 4);
  size_t o = 0;
  s[o++] = '{';
  for (int i = 0; i < n; i++)
    o += (size_t)sprintf(s + o, "%s\"%s%06d\":%s", i ? "," : "", prefix, i, value);
  s[o++] = '}';
  s[o] = '\0';
  return s;
}

/* The duplicate-name check compared each name with every earlier one: 100k
 * names took about a minute (20k: 3 s). Sorted once, they take a fraction of
 * a second; 10 s leaves room for a slow machine and still fails the
 * quadratic check. */
static void test_many_names(dt_backend_t be) {
  enum { N = 100000 };
  const double limit = 10.0;
  char p[512];
  snprintf(p, sizeof p, "%s/many.safetensors", g_tmp);
  char *h = many_members(N, "t", "{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}");
  make_file(p, h, 0);
  free(h);
  dt_config cfg;
  tiny_config(&cfg, 2, 32);
  double t0 = now_s();
  expect_error("100k zero-size tensors", &cfg, be, p, "unexpected tensor 't000000'", p);
  double dt = now_s() - t0;
  CHECK(dt < limit, "... refused in %.2f s (limit %.0f s)", dt, limit);

  char *meta = many_members(N, "metadata_key_", "\"v\"");
  h = malloc(strlen(meta) + 32);
  sprintf(h, "{\"__metadata__\":%s}", meta);
  make_file(p, h, 0);
  free(meta), free(h);
  dt_st_file f;
  dt_error err = {{0}};
  t0 = now_s();
  int rc = dt_st_open(&f, p, &err);
  dt = now_s() - t0;
  const char *last = rc ? NULL : dt_st_metadata(&f, "metadata_key_099999");
  CHECK(!rc && last && !strcmp(last, "v"), "100k __metadata__ keys read %s", rc ? err.msg : "");
  CHECK(dt < limit, "... in %.2f s (limit %.0f s)", dt, limit);
  if (!rc) dt_st_close(&f);
}

/* ---- non-finite weights ---- */

/* The tiny model's parameters in HF naming as dtype ("F16" or "BF16"), every
 * element 1.0, but element bad_k of parameter bad (if not NULL) holding the
 * 16 bits bad_bits. */
static void write_half_model(const char *path, const dt_model *m, const char *dtype,
                             const char *bad, size_t bad_k, uint16_t bad_bits) {
  const uint16_t one = !strcmp(dtype, "F16") ? 0x3C00 : 0x3F80;
  char *h = malloc(200 * (size_t)m->nparams + 16);
  uint16_t *data = malloc(m->nparams_total * 2);
  size_t o = 0, pos = 0;
  h[o++] = '{';
  for (int k = 0; k < m->nparams; k++) {
    const dt_param *p = &m->params[k];
    int64_t s0 = p->shape[0], s1 = p->ndims == 2 ? p->shape[1] : 0;
    if (p->ndims == 2 && strstr(p->name, "h.")) s0 = p->shape[1], s1 = p->shape[0]; /* Conv1D */
    o += (size_t)sprintf(h + o, "%s\"transformer.%s\":{\"dtype\":\"%s\",\"shape\":[%lld",
                         k ? "," : "", p->name, dtype, (long long)s0);
    if (p->ndims == 2) o += (size_t)sprintf(h + o, ",%lld", (long long)s1);
    o += (size_t)sprintf(h + o, "],\"data_offsets\":[%zu,%zu]}", 2 * pos, 2 * (pos + p->count));
    for (size_t i = 0; i < p->count; i++)
      data[pos + i] = bad && !strcmp(p->name, bad) && i == bad_k ? bad_bits : one;
    pos += p->count;
  }
  h[o++] = '}';
  h[o] = '\0';
  make_file(path, h, 0);
  FILE *f = fopen(path, "ab");
  fwrite(data, 2, pos, f);
  fclose(f);
  free(h), free(data);
}

/* A NaN once surfaced as "step 1: loss is nan ... lower [optim] lr". */
static void test_non_finite(const char *dir, dt_backend_t be) {
  dt_config cfg;
  tiny_config(&cfg, 2, 32);
  dt_error err = {{0}};
  char src[512], p[512];
  snprintf(src, sizeof src, "%s/hf_gpt2_tiny/model.safetensors", dir);
  snprintf(p, sizeof p, "%s/nan.safetensors", g_tmp);
  dt_st_file f;
  if (dt_st_open(&f, src, &err)) {
    CHECK(0, "%s", err.msg);
    return;
  }
  int i = dt_st_find(&f, "transformer.ln_f.weight");
  uint64_t at = f.data_start + (i >= 0 ? f.tensors[i].begin : 0) + 3 * sizeof(float);
  dt_st_close(&f);
  size_t n;
  unsigned char *b = read_file(src, &n);
  const float nan = NAN;
  memcpy(b + at, &nan, sizeof nan);
  write_bytes(p, b, n);
  free(b);
  expect_error("F32: NaN in ln_f.weight[3]", &cfg, be, p,
               "tensor 'transformer.ln_f.weight' holds nan at element 3", p);

  dt_model *m = dt_model_create(&cfg, be, 1, &err);
  if (!m) {
    CHECK(0, "%s", err.msg);
    return;
  }
  snprintf(p, sizeof p, "%s/half.safetensors", g_tmp);
  write_half_model(p, m, "F16", NULL, 0, 0);
  float *flat = import_with(&cfg, be, p, &err);
  CHECK(flat && flat[0] == 1.0f, "an F16 file of ones imports %s", flat ? "" : err.msg);
  free(flat);
  /* a Conv1D weight: the element is counted in the file's (in, out) layout */
  write_half_model(p, m, "F16", "h.1.mlp.c_fc.weight", 5, 0x7C00);
  expect_error("F16: +Inf in h.1.mlp.c_fc.weight[5]", &cfg, be, p,
               "tensor 'transformer.h.1.mlp.c_fc.weight' holds inf at element 5", p);
  write_half_model(p, m, "BF16", "wpe.weight", 7, 0xFF80);
  expect_error("BF16: -Inf in wpe.weight[7]", &cfg, be, p,
               "tensor 'transformer.wpe.weight' holds -inf at element 7", p);
  dt_model_destroy(m);
}

/* Makes directory d holding the fixture's model.safetensors (from fix). */
static void copy_fixture_model(const char *fix, const char *d) {
  char src[512], p[600];
  mkdir(d, 0755);
  snprintf(src, sizeof src, "%s/hf_gpt2_tiny/model.safetensors", fix);
  size_t n;
  char *b = read_file(src, &n);
  snprintf(p, sizeof p, "%s/model.safetensors", d);
  write_bytes(p, b, n);
  free(b);
}

/* ---- a Hugging Face directory with a directory where a file belongs ---- */

static void test_dir_entries(const char *dir, dt_backend_t be) {
  dt_config cfg;
  tiny_config(&cfg, 2, 32);
  char d[512], p[600];
  snprintf(d, sizeof d, "%s/model_is_dir", g_tmp);
  snprintf(p, sizeof p, "%s/model.safetensors", d);
  mkdir(d, 0755), mkdir(p, 0755);
  expect_error("model.safetensors is a directory", &cfg, be, d, p, "is a directory");
  /* config.json as a directory once read as empty: "JSON error at byte 0" */
  snprintf(d, sizeof d, "%s/config_is_dir", g_tmp);
  copy_fixture_model(dir, d);
  snprintf(p, sizeof p, "%s/config.json", d);
  mkdir(p, 0755);
  expect_error("config.json is a directory", &cfg, be, d, p, "is a directory");
}

/* ---- config.json integers written as floats ---- */

/* Writes dir/config.json: the fixture's, with the first `from` replaced by `to`. */
static void write_config(const char *fix, const char *dir, const char *from, const char *to) {
  char path[600];
  snprintf(path, sizeof path, "%s/hf_gpt2_tiny/config.json", fix);
  size_t n;
  char *t = read_file(path, &n);
  t[n] = '\0';
  char *at = strstr(t, from);
  if (!at) printf("no %s in %s\n", from, path), exit(1);
  snprintf(path, sizeof path, "%s/config.json", dir);
  FILE *f = fopen(path, "wb");
  fprintf(f, "%.*s%s%s", (int)(at - t), t, to, at + strlen(from));
  fclose(f);
  free(t);
}

static void test_config_floats(const char *fix, dt_backend_t be) {
  dt_config cfg;
  tiny_config(&cfg, 2, 32);
  char d[512];
  snprintf(d, sizeof d, "%s/config_floats", g_tmp);
  copy_fixture_model(fix, d);
  dt_error err = {{0}};
  write_config(fix, d, "\"n_head\": 4,\n  \"n_inner\": null,",
               "\"n_head\": 4.0,\n  \"n_inner\": 128.0,");
  float *flat = import_with(&cfg, be, d, &err);
  CHECK(flat != NULL, "config.json n_head = 4.0, n_inner = 128.0 are integers %s",
        flat ? "" : err.msg);
  free(flat);
  write_config(fix, d, "\"n_head\": 4,", "\"n_head\": 4.5,");
  expect_error("config.json n_head = 4.5", &cfg, be, d, "config.json: n_head is not an integer",
               NULL);
  write_config(fix, d, "\"n_inner\": null,", "\"n_inner\": 128.5,");
  expect_error("config.json n_inner = 128.5", &cfg, be, d, "config.json: n_inner is not null",
               NULL);
}

/* ---- a model the file does not fit ---- */

static void test_mismatch(const char *dir, dt_backend_t be) {
  char hf[512], file[512];
  snprintf(hf, sizeof hf, "%s/hf_gpt2_tiny", dir);
  snprintf(file, sizeof file, "%s/hf_gpt2_tiny/model.safetensors", dir);
  dt_config cfg;
  tiny_config(&cfg, 2, 64);
  expect_error("file, model.n_embd = 64", &cfg, be, file, "'transformer.h.0.attn.c_attn.bias'",
               "model.n_embd = 64");
  expect_error("directory, model.n_embd = 64", &cfg, be, hf, "config.json: n_embd = 32",
               "model.n_embd = 64");
  tiny_config(&cfg, 3, 32);
  expect_error("file, model.n_layer = 3 (a missing block)", &cfg, be, file,
               "missing tensor 'transformer.h.2.", file);
  tiny_config(&cfg, 1, 32);
  expect_error("file, model.n_layer = 1 (an extra block)", &cfg, be, file,
               "unexpected tensor 'transformer.h.1.", file);
  tiny_config(&cfg, 2, 32);
  cfg.model_vocab_size = 100;
  expect_error("file, model.vocab_size = 100", &cfg, be, file, "'transformer.wte.weight'",
               "(97,32)");
  tiny_config(&cfg, 2, 32);
  cfg.model_n_head = 8;
  expect_error("directory, model.n_head = 8", &cfg, be, hf, "config.json: n_head = 4",
               "model.n_head = 8");
  tiny_config(&cfg, 2, 32);
  expect_error("an empty directory", &cfg, be, g_tmp, "no model.safetensors", g_tmp);
}

/* ---- helpers for the shell test ---- */

static int make_shards(const char *dir, int vocab, int64_t n) {
  dt_rng r;
  dt_rng_seed(&r, 77, 0);
  uint16_t *tok = malloc((size_t)n * sizeof *tok);
  dt_error err;
  const char *names[2] = {"train.h5", "val.h5"};
  for (int s = 0; s < 2; s++) {
    for (int64_t i = 0; i < n; i++) tok[i] = (uint16_t)(dt_rng_uniform(&r) * vocab);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, names[s]);
    dt_token_meta meta = {.vocab_size = vocab, .eot = vocab - 1, .documents = 1,
                          .tokenizer = "none", .name = names[s], .source = "random"};
    if (dt_token_shard_write(path, tok, s ? n / 4 : n, &meta, &err))
      return printf("%s\n", err.msg), 1;
  }
  free(tok);
  return 0;
}

static int compare(const char *ckpt, const char *weights, double maxdiff) {
  dt_error err;
  char path[4096];
  if (dt_ckpt_resolve(ckpt, "", path, sizeof path, &err) <= 0) return printf("%s\n", err.msg), 1;
  dt_ckpt_meta meta;
  memset(&meta, 0, sizeof meta);
  char *text = NULL;
  dt_config cfg;
  if (dt_ckpt_read_meta(path, &meta, &text, &err) ||
      dt_config_parse_text(&cfg, text, path, &err))
    return printf("%s\n", err.msg), 1;
  free(text);
  cfg.train_seq_len = 1;
  dt_backend_t be = dt_backend_cpu_create(1);
  dt_model *m = dt_model_create(&cfg, be, 1, &err);
  if (!m) return printf("%s\n", err.msg), 1;
  size_t n = m->nparams_total;
  float *a = calloc(n, sizeof(float)), *b = calloc(n, sizeof(float));
  if (dt_ckpt_read_range(path, &meta, m->params, m->nparams, "params", 0, n, a, &err) ||
      dt_hf_gpt2_import(weights, &cfg, m->params, m->nparams, b, NULL, 0, &err))
    return printf("%s\n", err.msg), 1;
  size_t worst;
  double d = max_abs(a, b, n, &worst);
  int k = 0;
  while (k + 1 < m->nparams && m->params[k + 1].offset <= worst) k++;
  printf("   %zu parameters: max|diff| %.3g (in %s)\n", n, d, m->params[k].name);
  free(a), free(b);
  dt_model_destroy(m);
  dt_backend_destroy(be);
  return maxdiff >= 0 ? !(d <= maxdiff) : !(d >= -maxdiff);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rc;
  if (argc == 5 && !strcmp(argv[1], "make-shards")) {
    rc = make_shards(argv[2], atoi(argv[3]), atoll(argv[4]));
  } else if ((argc == 4 || argc == 5) && !strcmp(argv[1], "compare")) {
    rc = compare(argv[2], argv[3], argc == 5 ? atof(argv[4]) : 0.0);
  } else if (argc == 2) {
    const char *tmpdir = getenv("TMPDIR") ? getenv("TMPDIR") : P_tmpdir;
    snprintf(g_tmp, sizeof g_tmp, "%s/test_hf_io.XXXXXX", tmpdir);
    if (!mkdtemp(g_tmp)) return perror("mkdtemp"), 1;
    dt_backend_t be = dt_backend_cpu_create(1);
    float *flat = NULL;
    test_dtypes(argv[1]);
    test_logits(argv[1], be, &flat);
    if (flat) {
      test_roundtrip(argv[1], be, flat);
      test_key_styles(be, flat);
    }
    test_malformed(argv[1]);
    test_mismatch(argv[1], be);
    test_many_names(be);
    test_non_finite(argv[1], be);
    test_dir_entries(argv[1], be);
    test_config_floats(argv[1], be);
    free(flat);
    dt_backend_destroy(be);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) printf("could not remove %s\n", g_tmp);
    rc = check_summary();
  } else {
    fprintf(stderr, "usage: test_hf_io FIXTURES_DIR | make-shards DIR VOCAB N | "
                    "compare CKPT WEIGHTS [MAXDIFF]\n");
    rc = 2;
  }
  MPI_Finalize();
  return rc;
}
