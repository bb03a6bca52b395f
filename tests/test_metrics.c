/* test_metrics.c: metrics.jsonl text, CRC-32C, and the TFRecord framing and
 * protobuf payload of TensorBoard event files, checked byte for byte.
 * `test_metrics --write-demo DIR` writes a small run for tests/tb_read.py. */
#include "metrics.h"

#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int n_pass, n_fail;

#define CHECK(cond, ...)                                       \
  do {                                                         \
    if (cond) {                                                \
      n_pass++;                                                \
    } else {                                                   \
      n_fail++;                                                \
      printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
      printf(__VA_ARGS__);                                     \
      printf("\n");                                            \
    }                                                          \
  } while (0)

/* ---- helpers: files ---- */

static char *read_file(const char *path, size_t *bytes) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, len = 0;
  char *p = dt_malloc(cap + 1);
  size_t got;
  while ((got = fread(p + len, 1, cap - len, f)) > 0) {
    len += got;
    if (len == cap) {
      cap *= 2;
      p = realloc(p, cap + 1);
      DT_CHECK_ALLOC(p);
    }
  }
  fclose(f);
  p[len] = '\0';
  if (bytes) *bytes = len;
  return p;
}

/* Lines of the file, NULL-terminated; *n is the count. */
static char **read_lines(const char *path, int *n) {
  char *text = read_file(path, NULL);
  *n = 0;
  if (!text) return NULL;
  char **lines = dt_calloc(strlen(text) + 2, sizeof *lines);
  for (char *s = strtok(text, "\n"); s; s = strtok(NULL, "\n")) lines[(*n)++] = dt_strdup(s);
  free(text);
  return lines;
}

static void free_lines(char **lines, int n) {
  for (int i = 0; i < n; i++) free(lines[i]);
  free(lines);
}

/* Event files in dir, sorted by name; returns the count (at most max). */
static int event_files(const char *dir, char paths[][1024], int max) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < max)
    if (strstr(e->d_name, "tfevents")) snprintf(paths[n++], 1024, "%s/%s", dir, e->d_name);
  closedir(d);
  qsort(paths, (size_t)n, 1024, (int (*)(const void *, const void *))strcmp);
  return n;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st; (void)flag; (void)ftw;
  return remove(path);
}

static void rm_rf(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* ---- helpers: TFRecord and protobuf, decoded independently of metrics.c ---- */

static uint64_t le(const unsigned char *p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static uint32_t unmasked_ok(const unsigned char *data, size_t n, uint32_t stored) {
  uint32_t c = dt_crc32c(data, n);
  return stored == ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

typedef struct record {
  const unsigned char *data;
  size_t len;
} record;

/* Splits an event file into records; -1 on bad framing or CRC. */
static int parse_records(const unsigned char *p, size_t bytes, record *out, int max) {
  size_t at = 0;
  int n = 0;
  while (at < bytes) {
    if (bytes - at < 12 || n == max) return -1;
    uint64_t len = le(p + at, 8);
    if (!unmasked_ok(p + at, 8, (uint32_t)le(p + at + 8, 4))) return -1;
    if (bytes - at - 12 < len + 4) return -1;
    const unsigned char *data = p + at + 12;
    if (!unmasked_ok(data, len, (uint32_t)le(data + len, 4))) return -1;
    out[n].data = data;
    out[n].len = len;
    n++;
    at += 12 + len + 4;
  }
  return n;
}

/* One protobuf field: number, wire type, and its varint / fixed / bytes. */
typedef struct pb_field {
  int num, wire;
  uint64_t u;
  const unsigned char *data;
  size_t len;
} pb_field;

static uint64_t pb_varint(const unsigned char *p, size_t len, size_t *at) {
  uint64_t v = 0;
  for (int shift = 0; *at < len && shift < 64; shift += 7) {
    unsigned char c = p[(*at)++];
    v |= (uint64_t)(c & 0x7F) << shift;
    if (!(c & 0x80)) break;
  }
  return v;
}

/* Next field of message (p, len) from *at; 0 at the end, -1 if malformed. */
static int pb_next(const unsigned char *p, size_t len, size_t *at, pb_field *f) {
  if (*at >= len) return 0;
  uint64_t key = pb_varint(p, len, at);
  f->num = (int)(key >> 3);
  f->wire = (int)(key & 7);
  f->data = NULL;
  f->len = 0;
  switch (f->wire) {
    case 0: f->u = pb_varint(p, len, at); break;
    case 1: if (len - *at < 8) return -1; f->u = le(p + *at, 8); *at += 8; break;
    case 5: if (len - *at < 4) return -1; f->u = le(p + *at, 4); *at += 4; break;
    case 2:
      f->len = pb_varint(p, len, at);
      if (len - *at < f->len) return -1;
      f->data = p + *at;
      *at += f->len;
      break;
    default: return -1;
  }
  return 1;
}

typedef struct tb_event {
  double wall_time;
  int64_t step;
  char file_version[64];
  int nvalues;
  char tags[64][128];
  float values[64];
} tb_event;

static int decode_value(const unsigned char *p, size_t len, tb_event *ev) {
  if (ev->nvalues == 64) return -1;
  int i = ev->nvalues++;
  size_t at = 0;
  pb_field f;
  int rc;
  while ((rc = pb_next(p, len, &at, &f)) == 1) {
    if (f.num == 1 && f.wire == 2) snprintf(ev->tags[i], 128, "%.*s", (int)f.len, f.data);
    else if (f.num == 2 && f.wire == 5) {
      uint32_t u = (uint32_t)f.u;
      memcpy(&ev->values[i], &u, 4);
    } else return -1;
  }
  return rc;
}

static int decode_event(const record *r, tb_event *ev) {
  memset(ev, 0, sizeof *ev);
  size_t at = 0;
  pb_field f;
  int rc;
  while ((rc = pb_next(r->data, r->len, &at, &f)) == 1) {
    if (f.num == 1 && f.wire == 1) memcpy(&ev->wall_time, &f.u, 8);
    else if (f.num == 2 && f.wire == 0) ev->step = (int64_t)f.u;
    else if (f.num == 3 && f.wire == 2)
      snprintf(ev->file_version, sizeof ev->file_version, "%.*s", (int)f.len, f.data);
    else if (f.num == 5 && f.wire == 2) {
      size_t sat = 0;
      pb_field v;
      int src;
      while ((src = pb_next(f.data, f.len, &sat, &v)) == 1) {
        if (v.num != 1 || v.wire != 2 || decode_value(v.data, v.len, ev) != 0) return -1;
      }
      if (src < 0) return -1;
    } else return -1;
  }
  return rc;
}

static int same_float(float a, float b) { return memcmp(&a, &b, 4) == 0; }

/* ---- tests ---- */

static void test_crc32c(void) {
  CHECK(dt_crc32c("123456789", 9) == 0xE3069283u, "got 0x%08X", dt_crc32c("123456789", 9));
  unsigned char buf[32];
  memset(buf, 0, sizeof buf);
  CHECK(dt_crc32c(buf, 32) == 0x8A9136AAu, "zeros: got 0x%08X", dt_crc32c(buf, 32));
  memset(buf, 0xFF, sizeof buf);
  CHECK(dt_crc32c(buf, 32) == 0x62A8AB43u, "ones: got 0x%08X", dt_crc32c(buf, 32));
  for (int i = 0; i < 32; i++) buf[i] = (unsigned char)i;
  CHECK(dt_crc32c(buf, 32) == 0x46DD794Eu, "ascending: got 0x%08X", dt_crc32c(buf, 32));
  CHECK(dt_crc32c("", 0) == 0, "empty: got 0x%08X", dt_crc32c("", 0));
}

static void log_rows(dt_metrics *m) {
  dt_metric train[] = {
      {"loss", 0.1f, 0}, {"lr", 3e-4, 0}, {"tokens", 4096, 1}, {"grad_norm", NAN, 0}};
  dt_metrics_log(m, "train", 1, train, 4, NULL, NULL, 0);
  dt_metric test[] = {{"loss", 2.5f, 0}, {"accuracy", 0.98f, 0}};
  double cls[] = {0.5f, 1.0, INFINITY, 0.125};
  dt_metrics_log(m, "test", 1, test, 2, "class_accuracy", cls, 4);
  dt_metric odd[] = {{"q\"b\\n\n\x01", -1.5, 0}, {"big", 1e20, 1}};
  dt_metrics_log(m, "tr\tain", -3, odd, 2, NULL, NULL, 0);
}

static const char *expected_lines[] = {
    "{\"split\":\"train\",\"step\":1,\"loss\":0.100000001,\"lr\":0.0003,\"tokens\":4096,"
    "\"grad_norm\":null}",
    "{\"split\":\"test\",\"step\":1,\"loss\":2.5,\"accuracy\":0.980000019,"
    "\"class_accuracy\":[0.5,1,null,0.125]}",
    "{\"split\":\"tr\\tain\",\"step\":-3,\"q\\\"b\\\\n\\n\\u0001\":-1.5,"
    "\"big\":100000000000000000000}",
};

static void check_events(const char *path, int expect_rows) {
  size_t bytes = 0;
  unsigned char *p = (unsigned char *)read_file(path, &bytes);
  CHECK(p != NULL, "cannot read %s", path);
  if (!p) return;
  record rec[16];
  int n = parse_records(p, bytes, rec, 16);
  CHECK(n == 1 + expect_rows, "%s: %d records (framing/CRC bad if -1), want %d", path, n,
        1 + expect_rows);
  if (n < 1) { free(p); return; }
  tb_event ev;
  CHECK(decode_event(&rec[0], &ev) == 0, "header does not decode");
  CHECK(strcmp(ev.file_version, "brain.Event:2") == 0, "file_version '%s'", ev.file_version);
  CHECK(ev.wall_time > 1.5e9, "wall_time %f", ev.wall_time);
  if (n >= 2) {
    CHECK(decode_event(&rec[1], &ev) == 0, "row 1 does not decode");
    CHECK(ev.step == 1 && ev.nvalues == 4, "step %lld, %d values", (long long)ev.step,
          ev.nvalues);
    CHECK(strcmp(ev.tags[0], "train/loss") == 0 && same_float(ev.values[0], 0.1f), "%s=%.9g",
          ev.tags[0], ev.values[0]);
    CHECK(strcmp(ev.tags[2], "train/tokens") == 0 && ev.values[2] == 4096.0f, "%s=%.9g",
          ev.tags[2], ev.values[2]);
    CHECK(strcmp(ev.tags[3], "train/grad_norm") == 0 && isnan(ev.values[3]), "%s=%.9g",
          ev.tags[3], ev.values[3]);
  }
  if (n >= 3) {
    CHECK(decode_event(&rec[2], &ev) == 0, "row 2 does not decode");
    CHECK(ev.nvalues == 6, "%d values", ev.nvalues);
    CHECK(strcmp(ev.tags[4], "test/class_accuracy/2") == 0 && isinf(ev.values[4]), "%s=%.9g",
          ev.tags[4], ev.values[4]);
    CHECK(strcmp(ev.tags[5], "test/class_accuracy/3") == 0 && ev.values[5] == 0.125f,
          "%s=%.9g", ev.tags[5], ev.values[5]);
  }
  if (n >= 4) {
    CHECK(decode_event(&rec[3], &ev) == 0 && ev.step == -3, "negative step %lld",
          (long long)ev.step);
  }
  /* One flipped bit anywhere must break the framing check. */
  p[bytes / 2] ^= 0x10;
  CHECK(parse_records(p, bytes, rec, 16) < 0, "corrupted file still parses");
  free(p);
}

static void test_run_dir(const char *tmp) {
  char dir[1024], path[1100];
  snprintf(dir, sizeof dir, "%s/a/b/run", tmp); /* parents are created too */
  dt_error err = {{0}};
  dt_metrics *m = dt_metrics_open(dir, 1, &err);
  CHECK(m != NULL, "open: %s", err.msg);
  if (!m) return;
  log_rows(m);
  /* flushed per row: readable before close, as after a crash */
  snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
  int n = 0;
  char **lines = read_lines(path, &n);
  CHECK(n == 3, "%d lines before close", n);
  for (int i = 0; i < n && i < 3; i++)
    CHECK(strcmp(lines[i], expected_lines[i]) == 0, "line %d:\n  got  %s\n  want %s", i,
          lines[i], expected_lines[i]);
  free_lines(lines, n);
  char files[8][1024];
  CHECK(event_files(dir, files, 8) == 1, "event files: %d", event_files(dir, files, 8));
  check_events(files[0], 3); /* before close: everything was flushed */
  dt_metrics_close(m);

  /* reopening appends to metrics.jsonl and starts a second event file */
  m = dt_metrics_open(dir, 1, &err);
  CHECK(m != NULL, "reopen: %s", err.msg);
  if (!m) return;
  dt_metric row[] = {{"loss", 0.25f, 0}};
  dt_metrics_log(m, "train", 2, row, 1, NULL, NULL, 0);
  dt_metrics_close(m);
  lines = read_lines(path, &n);
  CHECK(n == 4, "%d lines after reopen", n);
  if (n == 4) {
    CHECK(strcmp(lines[0], expected_lines[0]) == 0, "first line changed: %s", lines[0]);
    CHECK(strcmp(lines[3], "{\"split\":\"train\",\"step\":2,\"loss\":0.25}") == 0, "got %s",
          lines[3]);
  }
  free_lines(lines, n);
  int nf = event_files(dir, files, 8);
  CHECK(nf == 2, "event files after reopen: %d", nf);
  for (int i = 0; i < nf; i++) {
    size_t bytes;
    unsigned char *p = (unsigned char *)read_file(files[i], &bytes);
    record rec[16];
    int nr = p ? parse_records(p, bytes, rec, 16) : -1;
    CHECK(nr == 4 || nr == 2, "%s: %d records", files[i], nr);
    free(p);
  }

  /* without TensorBoard: no event file */
  snprintf(dir, sizeof dir, "%s/plain", tmp);
  m = dt_metrics_open(dir, 0, &err);
  CHECK(m != NULL, "open plain: %s", err.msg);
  dt_metrics_log(m, "train", 1, row, 1, NULL, NULL, 0);
  dt_metrics_close(m);
  CHECK(event_files(dir, files, 8) == 0, "event file written without tensorboard");
}

/* Every float32 must come back from metrics.jsonl bit for bit. */
static void test_float_roundtrip(const char *tmp) {
  char dir[1024], path[1100];
  snprintf(dir, sizeof dir, "%s/roundtrip", tmp);
  dt_error err;
  dt_metrics *m = dt_metrics_open(dir, 0, &err);
  CHECK(m != NULL, "open: %s", err.msg);
  if (!m) return;
  enum { N = 2000 };
  static float want[N];
  static dt_metric vals[N];
  static char keys[N][16];
  uint32_t s = 12345;
  for (int i = 0; i < N; i++) {
    uint32_t bits;
    do {
      s = s * 1664525u + 1013904223u;
      bits = s;
    } while (!isfinite(*(float *)memcpy(&want[i], &bits, 4)));
    snprintf(keys[i], sizeof keys[i], "v%d", i);
    vals[i] = (dt_metric){keys[i], want[i], 0};
  }
  dt_metrics_log(m, "train", 7, vals, N, NULL, NULL, 0);
  dt_metrics_close(m);
  snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
  char *text = read_file(path, NULL);
  int bad = 0;
  for (int i = 0; text && i < N; i++) {
    char key[32];
    snprintf(key, sizeof key, "\"v%d\":", i);
    char *at = strstr(text, key);
    if (!at || !same_float(strtof(at + strlen(key), NULL), want[i])) bad++;
  }
  CHECK(text && bad == 0, "%d of %d floats do not round-trip", bad, N);
  free(text);
}

static void test_errors(const char *tmp) {
  char file[1024], dir[1100];
  snprintf(file, sizeof file, "%s/a-file", tmp);
  FILE *f = fopen(file, "w");
  if (f) fclose(f);
  snprintf(dir, sizeof dir, "%s/run", file);
  dt_error err = {{0}};
  dt_metrics *m = dt_metrics_open(dir, 1, &err);
  CHECK(m == NULL, "opened a run dir under a regular file");
  CHECK(strstr(err.msg, file) && strstr(err.msg, "Not a directory"), "message: %s", err.msg);
  dt_metrics_close(m);
}

/* A small run for tests/tb_read.py: train rows every step, test rows with
 * per-class accuracy every other step, one NaN. */
static int write_demo(const char *dir) {
  dt_error err;
  dt_metrics *m = dt_metrics_open(dir, 1, &err);
  if (!m) {
    fprintf(stderr, "test_metrics: %s\n", err.msg);
    return 1;
  }
  for (long step = 1; step <= 6; step++) {
    float loss = 2.5f / (float)step + 0.01f;
    dt_metric train[] = {{"loss", loss, 0},
                         {"lr", 1e-3 * (double)step / 6.0, 0},
                         {"tokens", (double)(step * 1024), 1},
                         {"grad_norm", step == 3 ? NAN : 1.0 / (double)step, 0}};
    dt_metrics_log(m, "train", step, train, 4, NULL, NULL, 0);
    if (step % 2 == 0) {
      double cls[10];
      for (int c = 0; c < 10; c++) cls[c] = (float)(0.5 + 0.05 * c + 0.01 * (double)step);
      dt_metric test[] = {{"loss", loss * 1.1f, 0}, {"accuracy", 0.9 + 0.01 * (double)step, 0}};
      dt_metrics_log(m, "test", step, test, 2, "class_accuracy", cls, 10);
    }
  }
  dt_metrics_close(m);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--write-demo") == 0) return write_demo(argv[2]);
  char tmp[512];
  const char *base = getenv("TMPDIR");
  snprintf(tmp, sizeof tmp, "%s/dtrain-metrics-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(tmp)) {
    perror("mkdtemp");
    return 1;
  }
  test_crc32c();
  test_run_dir(tmp);
  test_float_roundtrip(tmp);
  test_errors(tmp);
  rm_rf(tmp);
  printf("%d passed, %d failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
