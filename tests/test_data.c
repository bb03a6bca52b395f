/* test_data.c: the HDF5 helpers, the IDX reader, MNIST prep and the image
 * shard loader, on small files crafted in a temporary directory. */
#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "dataset.h"
#include "dt.h"
#include "h5.h"

static int n_pass, n_fail;
static char tmpdir[512];

static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("%s ", ok ? "ok  " : "FAIL");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  ok ? n_pass++ : n_fail++;
}

/* A call that must fail with a message containing `want` (and the file). */
static void check_err(int rc, const dt_error *err, const char *file, const char *want,
                      const char *what) {
  int ok = rc < 0 && strstr(err->msg, file) && (!want || strstr(err->msg, want));
  check(ok, "%s -> rc %d, \"%s\"", what, rc, rc < 0 ? err->msg : "");
}

static const char *tpath(const char *name) {
  static char buf[8][1024];
  static int at;
  char *p = buf[at++ % 8];
  snprintf(p, 1024, "%s/%s", tmpdir, name);
  return p;
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n, f) != n || fclose(f)) {
    perror(path);
    exit(1);
  }
}

static void write_gz(const char *path, const void *data, size_t n) {
  gzFile g = gzopen(path, "wb6");
  if (!g || gzwrite(g, data, (unsigned)n) != (int)n || gzclose(g) != Z_OK) {
    fprintf(stderr, "%s: gzip write failed\n", path);
    exit(1);
  }
}

static uint8_t *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *p = dt_malloc(*n);
  if (fread(p, 1, *n, f) != *n) *n = 0;
  fclose(f);
  return p;
}

/* An IDX file in memory: header for magic/dims, then `extra` bytes more or
 * less than the dims say. */
static uint8_t *make_idx(int magic, int nd, const uint32_t *dims, int64_t extra, size_t *len) {
  size_t total = 1;
  for (int i = 0; i < nd; i++) total *= dims[i];
  size_t hdr = 4 + 4 * (size_t)nd;
  *len = hdr + (size_t)((int64_t)total + extra);
  uint8_t *p = dt_calloc(*len + 1, 1);
  p[0] = (uint8_t)(magic >> 24), p[1] = (uint8_t)(magic >> 16), p[2] = (uint8_t)(magic >> 8),
  p[3] = (uint8_t)magic;
  for (int i = 0; i < nd; i++) {
    uint8_t *q = p + 4 + 4 * i;
    q[0] = (uint8_t)(dims[i] >> 24), q[1] = (uint8_t)(dims[i] >> 16), q[2] = (uint8_t)(dims[i] >> 8),
    q[3] = (uint8_t)dims[i];
  }
  for (size_t i = hdr; i < *len; i++) p[i] = (uint8_t)((i * 131 + 7) % 251);
  return p;
}

/* Writes NAME (raw) or NAME.gz holding an IDX file. */
static const char *put_idx(const char *name, int gz, int magic, int nd, const uint32_t *dims,
                           int64_t extra) {
  size_t len;
  uint8_t *p = make_idx(magic, nd, dims, extra, &len);
  const char *path = tpath(name);
  (gz ? write_gz : write_file)(path, p, len);
  free(p);
  return path;
}

/* ---- h5 ---- */

static void test_h5_roundtrip(void) {
  dt_error err = {{0}};
  const char *path = tpath("rt.h5");
  hid_t f = dt_h5_create(path, &err);
  check(f >= 0, "dt_h5_create %s", err.msg);
  if (f < 0) return;

  float vf[6] = {1.5f, -2, 3, 4, 5, 6.25f};
  uint8_t vu8[20];
  uint16_t vu16[4] = {0, 1, 65535, 300};
  int32_t vi32[3] = {-7, 0, 2147483647};
  int64_t vi64[2] = {-5, 1LL << 40};
  double vd[2] = {3.141592653589793, -1e300};
  for (int i = 0; i < 20; i++) vu8[i] = (uint8_t)(i * 13);
  /* 300 x 1000 bytes: over the compression threshold, chunked + deflate. */
  int64_t big_dims[2] = {300, 1000};
  uint8_t *big = dt_malloc(300 * 1000);
  for (int i = 0; i < 300 * 1000; i++) big[i] = (uint8_t)((i / 1000) ^ (i % 7));

  int64_t d23[2] = {2, 3}, d45[2] = {4, 5}, d4[1] = {4}, d3[1] = {3}, d2[1] = {2};
  int rc = 0;
  rc |= dt_h5_write(f, "f32", H5T_NATIVE_FLOAT, 2, d23, vf, 0, &err);
  rc |= dt_h5_write(f, "/g/u8", H5T_NATIVE_UINT8, 2, d45, vu8, 1, &err);
  rc |= dt_h5_write(f, "a/b/c/u16", H5T_NATIVE_UINT16, 1, d4, vu16, 0, &err);
  rc |= dt_h5_write(f, "i32", H5T_NATIVE_INT32, 1, d3, vi32, 0, &err);
  rc |= dt_h5_write(f, "i64", H5T_NATIVE_INT64, 1, d2, vi64, 0, &err);
  rc |= dt_h5_write(f, "f64", H5T_NATIVE_DOUBLE, 1, d2, vd, 0, &err);
  rc |= dt_h5_write(f, "big", H5T_NATIVE_UINT8, 2, big_dims, big, 1, &err);
  check(rc == 0, "dt_h5_write of every type, nested names %s", err.msg);

  int64_t iv[3] = {1, -2, 1LL << 50};
  double dv[2] = {0.5, -1e-30};
  rc = dt_h5_attr_write_i64(f, "/", "ints", 3, iv, &err);
  rc |= dt_h5_attr_write_f64(f, "a/b/c/u16", "floats", 2, dv, &err);
  rc |= dt_h5_attr_write_str(f, "/", "name", "lenet5 \xc3\xa9t\xc3\xa9", &err);
  rc |= dt_h5_attr_write_str(f, "/", "empty", "", &err);
  rc |= dt_h5_attr_write_str(f, "/", "name", "replaced", &err); /* overwrite */
  check(rc == 0, "attribute writes %s", err.msg);
  /* A fixed-length string attribute, as other tools may write. */
  {
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR), g = H5Oopen(f, "/", H5P_DEFAULT);
    H5Tset_size(t, 8);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    hid_t a = H5Acreate2(g, "fixed", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, "abcdefgh");
    H5Aclose(a), H5Oclose(g), H5Sclose(sp), H5Tclose(t);
  }
  dt_h5_close(f);

  f = dt_h5_open(path, &err);
  check(f >= 0, "dt_h5_open after write %s", err.msg);
  if (f < 0) return;
  float rf[6];
  uint8_t ru8[20];
  uint16_t ru16[4];
  int32_t ri32[3];
  int64_t ri64[2];
  double rd[2];
  int64_t any2[2] = {-1, 3};
  check(dt_h5_read(f, "f32", H5T_NATIVE_FLOAT, 2, any2, rf, &err) == 0 && !memcmp(rf, vf, sizeof vf),
        "read float32 (2,3) with (*,3)");
  check(dt_h5_read(f, "g/u8", H5T_NATIVE_UINT8, 2, d45, ru8, &err) == 0 && !memcmp(ru8, vu8, 20),
        "read uint8");
  check(dt_h5_read(f, "/a/b/c/u16", H5T_NATIVE_UINT16, 1, d4, ru16, &err) == 0 &&
            !memcmp(ru16, vu16, sizeof vu16),
        "read uint16 under intermediate groups");
  check(dt_h5_read(f, "i32", H5T_NATIVE_INT32, 1, d3, ri32, &err) == 0 &&
            !memcmp(ri32, vi32, sizeof vi32),
        "read int32");
  check(dt_h5_read(f, "i64", H5T_NATIVE_INT64, 1, d2, ri64, &err) == 0 &&
            !memcmp(ri64, vi64, sizeof vi64),
        "read int64");
  check(dt_h5_read(f, "f64", H5T_NATIVE_DOUBLE, 1, d2, rd, &err) == 0 && !memcmp(rd, vd, sizeof vd),
        "read float64");
  float u8f[20];
  check(dt_h5_read(f, "g/u8", H5T_NATIVE_FLOAT, 2, d45, u8f, &err) == 0 && u8f[19] == 19 * 13 % 256,
        "read uint8 converted to float");
  /* a stored value the memory type cannot hold fails the read (HDF5 alone
   * would clamp it, or drop a fraction); widening still reads */
  uint8_t c8[6];
  uint16_t c16[3];
  int32_t c32[20];
  check_err(dt_h5_read(f, "/a/b/c/u16", H5T_NATIVE_UINT8, 1, d4, c8, &err), &err, "rt.h5",
            "cannot hold", "uint16 300 read as uint8");
  check_err(dt_h5_read_rows(f, "/a/b/c/u16", H5T_NATIVE_UINT8, 0, 4, c8, &err), &err, "rt.h5",
            "cannot hold", "rows of uint16 300 read as uint8");
  check_err(dt_h5_read(f, "i32", H5T_NATIVE_UINT16, 1, d3, c16, &err), &err, "rt.h5",
            "cannot hold", "int32 -7 read as uint16");
  check_err(dt_h5_read(f, "f32", H5T_NATIVE_INT32, 2, d23, c32, &err), &err, "rt.h5",
            "cannot hold", "float 1.5 read as int32");
  check(dt_h5_read(f, "g/u8", H5T_NATIVE_INT32, 2, d45, c32, &err) == 0 && c32[19] == 19 * 13 % 256,
        "uint8 read as int32 (widening)");

  int nd = 0;
  int64_t dims[DT_H5_MAXDIMS];
  check(dt_h5_dims(f, "big", &nd, dims, &err) == 0 && nd == 2 && dims[0] == 300 && dims[1] == 1000,
        "dt_h5_dims");
  {
    hid_t d = H5Dopen2(f, "big", H5P_DEFAULT), p = H5Dget_create_plist(d);
    check(H5Pget_layout(p) == H5D_CHUNKED && H5Pget_nfilters(p) == 2,
          "large compressed dataset is chunked with 2 filters");
    H5Pclose(p), H5Dclose(d);
    d = H5Dopen2(f, "f32", H5P_DEFAULT), p = H5Dget_create_plist(d);
    check(H5Pget_layout(p) != H5D_CHUNKED, "small dataset stays contiguous");
    H5Pclose(p), H5Dclose(d);
  }
  uint8_t *rows = dt_malloc(5 * 1000);
  check(dt_h5_read_rows(f, "big", H5T_NATIVE_UINT8, 10, 5, rows, &err) == 0 &&
            !memcmp(rows, big + 10 * 1000, 5 * 1000),
        "read_rows [10,15)");
  check(dt_h5_read_rows(f, "big", H5T_NATIVE_UINT8, 295, 5, rows, &err) == 0 &&
            !memcmp(rows, big + 295 * 1000, 5 * 1000),
        "read_rows last rows");
  check_err(dt_h5_read_rows(f, "big", H5T_NATIVE_UINT8, 298, 5, rows, &err), &err, "rt.h5",
            "rows [298,303) out of range for dataset /big with 300 rows", "read_rows out of range");
  free(rows);
  free(big);

  check(dt_h5_exists(f, "a") && dt_h5_exists(f, "a/b") && dt_h5_exists(f, "/a/b/c/u16") &&
            dt_h5_exists(f, "/"),
        "exists: groups and nested dataset");
  check(!dt_h5_exists(f, "a/x/y") && !dt_h5_exists(f, "nope") && !dt_h5_exists(f, "f32/x"),
        "exists: missing paths are 0, not errors");

  int64_t ri[3];
  double rdv[2];
  check(dt_h5_attr_read_i64(f, "/", "ints", 3, ri, &err) == 0 && !memcmp(ri, iv, sizeof iv),
        "attr i64[3]");
  check(dt_h5_attr_read_f64(f, "/a/b/c/u16", "floats", 2, rdv, &err) == 0 &&
            !memcmp(rdv, dv, sizeof dv),
        "attr f64[2] on a dataset");
  char *s = dt_h5_attr_read_str(f, "/", "name", &err);
  check(s && !strcmp(s, "replaced"), "attr string (rewritten) = \"%s\"", s ? s : "(null)");
  free(s);
  s = dt_h5_attr_read_str(f, "/", "empty", &err);
  check(s && !strcmp(s, ""), "attr empty string");
  free(s);
  s = dt_h5_attr_read_str(f, "/", "fixed", &err);
  check(s && !strcmp(s, "abcdefgh"), "attr fixed-length string = \"%s\"", s ? s : "(null)");
  free(s);

  /* Errors name the file and the object. */
  char want[256];
  int64_t mn[3] = {-1, 28, 28};
  check_err(dt_h5_read(f, "big", H5T_NATIVE_UINT8, 3, mn, ru8, &err), &err, "rt.h5",
            "dataset /big has shape (300,1000), expected (*,28,28)", "shape mismatch (ndims)");
  int64_t mn2[2] = {2, 4};
  check_err(dt_h5_read(f, "/f32", H5T_NATIVE_FLOAT, 2, mn2, rf, &err), &err, "rt.h5",
            "dataset /f32 has shape (2,3), expected (2,4)", "shape mismatch (size)");
  snprintf(want, sizeof want, "%s: no dataset /labels", path);
  check_err(dt_h5_read(f, "labels", H5T_NATIVE_UINT8, 1, d2, ru8, &err), &err, path, want,
            "missing dataset");
  check_err(dt_h5_dims(f, "a/zz/q", &nd, dims, &err), &err, "rt.h5", "no dataset /a/zz/q",
            "dims of missing nested dataset");
  check_err(dt_h5_read(f, "a/b", H5T_NATIVE_UINT8, 1, d2, ru8, &err), &err, "rt.h5",
            "/a/b is not a dataset", "group read as dataset");
  check_err(dt_h5_attr_read_i64(f, "/", "nope", 1, ri, &err), &err, "rt.h5",
            "no attribute nope on /", "missing attribute");
  check_err(dt_h5_attr_read_i64(f, "/", "ints", 2, ri, &err), &err, "rt.h5",
            "has 3 values, expected 2", "attribute count mismatch");
  check_err(dt_h5_attr_read_i64(f, "/", "name", 1, ri, &err), &err, "rt.h5", "not numeric",
            "string attribute read as number");
  check_err(dt_h5_attr_read_str(f, "/", "ints", &err) ? 0 : -1, &err, "rt.h5",
            "is not a single string", "number attribute read as string");
  check_err(dt_h5_attr_read_i64(f, "/nowhere", "x", 1, ri, &err), &err, "rt.h5",
            "no object /nowhere", "attribute on missing object");
  dt_h5_close(f);
}

static void test_h5_bad_files(void) {
  dt_error err = {{0}};
  char want[1024];
  const char *missing = tpath("missing.h5");
  snprintf(want, sizeof want, "%s: no such file", missing);
  check_err((int)dt_h5_open(missing, &err), &err, missing, want, "open missing file");

  const char *text = tpath("text.h5");
  write_file(text, "hello, not hdf5\n", 16);
  snprintf(want, sizeof want, "%s: not an HDF5 file (or truncated)", text);
  check_err((int)dt_h5_open(text, &err), &err, text, want, "open a text file");
  dt_image_set s;
  check_err(dt_image_set_load(&s, text, 0, &err), &err, text, "not an HDF5 file",
            "image_set_load of a text file");
  check(s.images == NULL && s.labels == NULL, "failed load leaves an empty set");

  check_err((int)dt_h5_open(tmpdir, &err), &err, tmpdir, "is a directory", "open a directory");

  /* Truncations of a real file: past the superblock, and inside it. */
  size_t n;
  uint8_t *p = read_file(tpath("rt.h5"), &n);
  check(p && n > 4096, "rt.h5 is %zu bytes", n);
  if (!p) return;
  const char *trunc = tpath("trunc.h5");
  write_file(trunc, p, n / 2);
  check_err((int)dt_h5_open(trunc, &err), &err, trunc, "not an HDF5 file (or truncated)",
            "open an .h5 cut in half");
  check_err(dt_image_set_load(&s, trunc, 0, &err), &err, trunc, "truncated",
            "image_set_load of an .h5 cut in half");
  write_file(trunc, p, 20);
  check_err((int)dt_h5_open(trunc, &err), &err, trunc, "not an HDF5 file (or truncated)",
            "open an .h5 cut to 20 bytes");
  free(p);

  check_err((int)dt_h5_create(tpath("no/such/dir/x.h5"), &err), &err, "no/such/dir/x.h5",
            "cannot create", "create in a missing directory");
}

/* ---- idx ---- */

static void test_idx(void) {
  dt_error err = {{0}};
  int nd;
  int64_t dims[3];
  uint8_t *data;
  char want[1024];
  const uint32_t idims[3] = {3, 4, 5}, ldims[1] = {3};
  size_t len;
  uint8_t *ref = make_idx(2051, 3, idims, 0, &len);

  for (int gz = 0; gz < 2; gz++) {
    const char *sfx = gz ? " (gz)" : " (raw)";
    char name[64];
    const char *p;
    snprintf(name, sizeof name, "img%s", gz ? ".gz" : "");
    p = put_idx(name, gz, 2051, 3, idims, 0);
    int rc = dt_idx_read(p, 2051, &nd, dims, &data, &err);
    check(rc == 0 && nd == 3 && dims[0] == 3 && dims[1] == 4 && dims[2] == 5 &&
              !memcmp(data, ref + 16, 60),
          "good IDX images%s %s", sfx, rc ? err.msg : "");
    free(data);

    snprintf(name, sizeof name, "lbl%s", gz ? ".gz" : "");
    p = put_idx(name, gz, 2049, 1, ldims, 0);
    rc = dt_idx_read(p, 2049, &nd, dims, &data, &err);
    check(rc == 0 && nd == 1 && dims[0] == 3, "good IDX labels%s %s", sfx, rc ? err.msg : "");
    free(data);

    snprintf(want, sizeof want, "%s: bad magic 0x00000801, expected 0x00000803 (IDX images)", p);
    check_err(dt_idx_read(p, 2051, &nd, dims, &data, &err), &err, p, want,
              gz ? "labels read as images (gz)" : "labels read as images (raw)");
    check(data == NULL, "data stays NULL on error");

    snprintf(name, sizeof name, "short%s", gz ? ".gz" : "");
    p = put_idx(name, gz, 2051, 3, idims, -1);
    check_err(dt_idx_read(p, 2051, &nd, dims, &data, &err), &err, p,
              "truncated: 60 bytes of image data expected, 59 found",
              gz ? "truncated data (gz)" : "truncated data (raw)");

    snprintf(name, sizeof name, "long%s", gz ? ".gz" : "");
    p = put_idx(name, gz, 2049, 1, ldims, 3);
    check_err(dt_idx_read(p, 2049, &nd, dims, &data, &err), &err, p,
              "3 bytes of trailing data after the 3 bytes",
              gz ? "trailing bytes (gz)" : "trailing bytes (raw)");

    snprintf(name, sizeof name, "zero%s", gz ? ".gz" : "");
    const uint32_t zd[3] = {3, 0, 5};
    p = put_idx(name, gz, 2051, 3, zd, 0);
    check_err(dt_idx_read(p, 2051, &nd, dims, &data, &err), &err, p, "IDX dim 1 is 0",
              gz ? "zero dim (gz)" : "zero dim (raw)");

    snprintf(name, sizeof name, "huge%s", gz ? ".gz" : "");
    const uint32_t hd[3] = {2, 5000, 1};
    p = put_idx(name, gz, 2051, 3, hd, 0);
    check_err(dt_idx_read(p, 2051, &nd, dims, &data, &err), &err, p, "implausible IDX dim 1",
              gz ? "image dim over 4096 (gz)" : "image dim over 4096 (raw)");

    snprintf(name, sizeof name, "hdr%s", gz ? ".gz" : "");
    p = tpath(name);
    (gz ? write_gz : write_file)(p, ref, 10);
    check_err(dt_idx_read(p, 2051, &nd, dims, &data, &err), &err, p,
              "truncated: IDX header needs 16 bytes, 10 found",
              gz ? "header cut short (gz)" : "header cut short (raw)");
  }
  const uint32_t many[3] = {20000, 100, 100};
  const char *p = tpath("many");
  uint8_t *hdr_only = make_idx(2051, 3, many, -(int64_t)many[0] * 100 * 100, &len);
  write_file(p, hdr_only, len); /* just the header: the size check comes first */
  free(hdr_only);
  check_err(dt_idx_read(p, 2051, &nd, dims, &data, &err), &err, p, "implausible IDX size",
            "over 1e8 items");

  /* Gzip damage: a flipped byte inside the deflate stream, and a cut stream. */
  const uint32_t bd[3] = {50, 28, 28};
  p = put_idx("bigimg.gz", 1, 2051, 3, bd, 0);
  size_t gzlen;
  uint8_t *gz = read_file(p, &gzlen);
  check(gz && gzlen > 200, "crafted gzip file is %zu bytes", gzlen);
  for (size_t i = gzlen / 3; i < gzlen / 3 + 8; i++) gz[i] ^= 0x5a;
  const char *bad = tpath("corrupt.gz");
  write_file(bad, gz, gzlen);
  snprintf(want, sizeof want, "%s: corrupt gzip stream", bad);
  check_err(dt_idx_read(bad, 2051, &nd, dims, &data, &err), &err, bad, want, "corrupt gzip");
  for (size_t i = gzlen / 3; i < gzlen / 3 + 8; i++) gz[i] ^= 0x5a;
  gz[gzlen - 6] ^= 0xff; /* the CRC-32 in the trailer */
  write_file(bad, gz, gzlen);
  check_err(dt_idx_read(bad, 2051, &nd, dims, &data, &err), &err, bad, "corrupt gzip stream",
            "gzip with a wrong CRC");
  write_file(bad, gz, gzlen / 2);
  check_err(dt_idx_read(bad, 2051, &nd, dims, &data, &err), &err, bad, "truncated",
            "gzip cut in half");
  free(gz);

  p = tpath("nothere.gz");
  snprintf(want, sizeof want, "%s: no such file", p);
  check_err(dt_idx_read(p, 2051, &nd, dims, &data, &err), &err, p, want, "missing IDX file");
  free(ref);
}

/* ---- prep and load ---- */

/* Writes a small MNIST-like source dir: train 6 samples, test 4. */
static const char *make_src(const char *dir, int gz, int bad_label) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", dir);
  mkdir(tpath(buf), 0777);
  const uint32_t ti[3] = {6, 28, 28}, tl[1] = {6}, ei[3] = {4, 28, 28}, el[1] = {4};
  const char *sfx = gz ? ".gz" : "";
  snprintf(buf, sizeof buf, "%s/train-images-idx3-ubyte%s", dir, sfx);
  put_idx(buf, gz, 2051, 3, ti, 0);
  snprintf(buf, sizeof buf, "%s/t10k-images-idx3-ubyte%s", dir, sfx);
  put_idx(buf, gz, 2051, 3, ei, 0);
  size_t len;
  uint8_t *l = make_idx(2049, 1, tl, 0, &len);
  for (int i = 0; i < 6; i++) l[8 + i] = (uint8_t)(i * 3 % 10);
  if (bad_label) l[8 + 4] = 10;
  snprintf(buf, sizeof buf, "%s/train-labels-idx1-ubyte%s", dir, sfx);
  (gz ? write_gz : write_file)(tpath(buf), l, len);
  free(l);
  l = make_idx(2049, 1, el, 0, &len);
  for (int i = 0; i < 4; i++) l[8 + i] = (uint8_t)(9 - i);
  snprintf(buf, sizeof buf, "%s/t10k-labels-idx1-ubyte%s", dir, sfx);
  (gz ? write_gz : write_file)(tpath(buf), l, len);
  free(l);
  return tpath(dir);
}

static void test_prep(void) {
  dt_error err = {{0}};
  dt_image_set s;
  char out[1024], train[1024], test[1024];
  const char *src = make_src("src", 1, 0);
  snprintf(out, sizeof out, "%s", tpath("out/deeper"));
  snprintf(train, sizeof train, "%s", tpath("out/deeper/train.h5"));
  snprintf(test, sizeof test, "%s", tpath("out/deeper/test.h5"));
  check(dt_prep_mnist(src, out, &err) == 0, "prep small gz MNIST into a new nested dir %s", err.msg);
  int rc = dt_image_set_load(&s, train, 0, &err);
  check(rc == 0 && s.n == 6 && s.h == 28 && s.w == 28 && s.num_classes == 10 && s.labels[1] == 3 &&
            s.labels[5] == 5,
        "load train.h5 back %s", rc ? err.msg : "");
  dt_image_set_free(&s);
  rc = dt_image_set_load(&s, test, 3, &err);
  check(rc == 0 && s.n == 3 && s.labels[0] == 9 && s.labels[2] == 7, "load test.h5 with limit 3 %s",
        rc ? err.msg : "");
  dt_image_set_free(&s);
  rc = dt_image_set_load(&s, test, 100, &err);
  check(rc == 0 && s.n == 4, "limit over N loads all %s", rc ? err.msg : "");
  dt_image_set_free(&s);
  hid_t f = dt_h5_open(train, &err);
  char *fmt = f >= 0 ? dt_h5_attr_read_str(f, "/", "format", &err) : NULL;
  char *source = f >= 0 ? dt_h5_attr_read_str(f, "/", "source", &err) : NULL;
  check(fmt && !strcmp(fmt, "dtrain-images-v1"), "format attribute");
  check(source && !strcmp(source, "MNIST IDX: train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz"),
        "source attribute \"%s\"", source ? source : "(null)");
  free(fmt), free(source), dt_h5_close(f);
  check(access(tpath("out/deeper/train.h5.tmp"), F_OK) != 0, "no .tmp file left behind");

  size_t n0, n1;
  uint8_t *before = read_file(train, &n0);
  src = make_src("rawsrc", 0, 0);
  check(dt_prep_mnist(src, tpath("rawout"), &err) == 0, "prep raw (not gzipped) IDX %s", err.msg);

  /* Failures leave the earlier good train.h5 byte for byte. */
  src = make_src("badlabel", 0, 1);
  check_err(dt_prep_mnist(src, out, &err), &err, "train-labels-idx1-ubyte",
            "label 10 at index 4 is out of range [0,10)", "label 10 rejected");
  const char *mis = tpath("missing");
  mkdir(mis, 0777);
  check_err(dt_prep_mnist(mis, out, &err), &err, mis,
            "no train-images-idx3-ubyte or train-images-idx3-ubyte.gz there",
            "missing files listed");
  check_err(dt_prep_mnist(tpath("nodir"), out, &err), &err, "nodir", "no such directory",
            "missing source dir");
  src = make_src("count", 1, 0);
  const uint32_t five[1] = {5};
  put_idx("count/train-labels-idx1-ubyte.gz", 1, 2049, 1, five, 0);
  check_err(dt_prep_mnist(src, out, &err), &err, "train-images-idx3-ubyte.gz",
            "6 images, but", "image/label count mismatch");
  /* A failure while writing: test.h5.tmp cannot be created (a directory is
   * in the way) after train.h5.tmp was written; that must be removed too. */
  src = make_src("src2", 1, 0);
  mkdir(tpath("out/deeper/test.h5.tmp"), 0777);
  check_err(dt_prep_mnist(src, out, &err), &err, "test.h5.tmp", "cannot create HDF5 file",
            "write failure on the second shard");
  rmdir(tpath("out/deeper/test.h5.tmp"));
  uint8_t *after = read_file(train, &n1);
  check(before && after && n0 == n1 && !memcmp(before, after, n0),
        "train.h5 unchanged by the failed preps");
  check(access(tpath("out/deeper/train.h5.tmp"), F_OK) != 0 &&
            access(tpath("out/deeper/test.h5.tmp"), F_OK) != 0,
        "no .tmp files after failures");
  free(before), free(after);

  /* Shards the loader must refuse. */
  int64_t d3[3] = {4, 2, 2}, d1[1] = {4}, d1b[1] = {3}, cnt = 4, cls = 10;
  uint8_t img[16] = {0}, lab[4] = {1, 2, 3, 4};
  struct {
    const char *name, *want;
    int variant;
  } cases[] = {
      {"noformat.h5", "no attribute format on / (not a dtrain image shard?)", 0},
      {"badformat.h5", "format is \"other\", expected \"dtrain-images-v1\"", 1},
      {"labels_n.h5", "dataset /labels must be (4) to match /images", 2},
      {"images_2d.h5", "dataset /images must be (N,H,W)", 3},
      {"badlabel.h5", "/labels[3] = 12 is out of range [0,10)", 4},
      {"count.h5", "attribute count = 5, but /images has 4 rows", 5},
      {"floatimg.h5", "dataset /images is not of an integer type", 6},
      {"nolabels.h5", "no dataset /labels", 7},
  };
  for (size_t i = 0; i < DT_ARRAY_LEN(cases); i++) {
    const char *p = tpath(cases[i].name);
    int v = cases[i].variant;
    f = dt_h5_create(p, &err);
    if (v != 0) dt_h5_attr_write_str(f, "/", "format", v == 1 ? "other" : "dtrain-images-v1", &err);
    float fimg[16] = {0};
    if (v == 3)
      dt_h5_write(f, "images", H5T_NATIVE_UINT8, 2, d3, img, 0, &err);
    else if (v == 6)
      dt_h5_write(f, "images", H5T_NATIVE_FLOAT, 3, d3, fimg, 0, &err);
    else
      dt_h5_write(f, "images", H5T_NATIVE_UINT8, 3, d3, img, 0, &err);
    lab[3] = v == 4 ? 12 : 4;
    if (v != 7) dt_h5_write(f, "labels", H5T_NATIVE_UINT8, 1, v == 2 ? d1b : d1, lab, 0, &err);
    int64_t c = v == 5 ? 5 : cnt;
    dt_h5_attr_write_i64(f, "/", "count", 1, &c, &err);
    dt_h5_attr_write_i64(f, "/", "num_classes", 1, &cls, &err);
    dt_h5_close(f);
    char what[128];
    snprintf(what, sizeof what, "load refuses %s", cases[i].name);
    check_err(dt_image_set_load(&s, p, 0, &err), &err, cases[i].name, cases[i].want, what);
  }
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  return remove(path);
}

int main(void) {
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/dtrain-test-data-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  test_h5_roundtrip();
  test_h5_bad_files();
  test_idx();
  test_prep();
  if (n_fail == 0) nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  else printf("kept %s for inspection\n", tmpdir);
  printf("%d passed, %d failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
