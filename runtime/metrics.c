/* metrics.c: metrics.jsonl rows and TensorBoard event files. The event file is
 * TFRecord framing around hand-encoded protobuf Events, so no protobuf or
 * TensorFlow library is needed to write what TensorBoard reads. */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct dt_metrics {
  FILE *jsonl;
  FILE *tb; /* NULL without TensorBoard */
};

/* ---- CRC-32C (Castagnoli), reflected polynomial 0x82F63B78 ---- */

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    crc_table[i] = c;
  }
  crc_ready = 1;
}

uint32_t dt_crc32c(const void *data, size_t n) {
  if (!crc_ready) crc_init(); /* idempotent, so a race only repeats work */
  const unsigned char *p = data;
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

/* TFRecord stores CRCs masked, so a CRC of data that holds CRCs stays strong. */
static uint32_t masked_crc(const void *data, size_t n) {
  uint32_t c = dt_crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* ---- a growable byte buffer and the protobuf wire format ---- */

typedef struct buf {
  unsigned char *p;
  size_t len, cap;
} buf;

static void buf_put(buf *b, const void *data, size_t bytes) {
  if (b->len + bytes > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + bytes) cap *= 2;
    b->p = realloc(b->p, cap);
    DT_CHECK_ALLOC(b->p);
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, bytes);
  b->len += bytes;
}

static void put_le(buf *b, uint64_t v, int bytes) {
  unsigned char out[8];
  for (int i = 0; i < bytes; i++) out[i] = (unsigned char)(v >> (8 * i));
  buf_put(b, out, (size_t)bytes);
}

static void put_varint(buf *b, uint64_t v) {
  unsigned char out[10];
  int n = 0;
  do {
    out[n] = (unsigned char)(v & 0x7F);
    v >>= 7;
    if (v) out[n] |= 0x80;
    n++;
  } while (v);
  buf_put(b, out, (size_t)n);
}

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

static void put_key(buf *b, int field, int wire) { put_varint(b, (uint64_t)(field << 3 | wire)); }

static void put_bytes_field(buf *b, int field, const void *data, size_t bytes) {
  put_key(b, field, WIRE_LEN);
  put_varint(b, bytes);
  buf_put(b, data, bytes);
}

static void put_double_field(buf *b, int field, double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof u);
  put_key(b, field, WIRE_FIXED64);
  put_le(b, u, 8);
}

static void put_float_field(buf *b, int field, float v) {
  uint32_t u;
  memcpy(&u, &v, sizeof u);
  put_key(b, field, WIRE_FIXED32);
  put_le(b, u, 4);
}

/* ---- TensorBoard Events ---- */

/* Event fields: wall_time=1 (double), step=2 (int64), file_version=3 (string),
 * summary=5 (Summary). Summary: value=1 (repeated Value). Value: tag=1
 * (string), simple_value=2 (float). */
enum { EV_WALL_TIME = 1, EV_STEP = 2, EV_FILE_VERSION = 3, EV_SUMMARY = 5 };
enum { SUMMARY_VALUE = 1 };
enum { VALUE_TAG = 1, VALUE_SIMPLE = 2 };

static double wall_time(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void tb_write_record(FILE *f, const buf *data) {
  buf rec = {0};
  put_le(&rec, data->len, 8);
  uint32_t len_crc = masked_crc(rec.p, 8);
  put_le(&rec, len_crc, 4);
  buf_put(&rec, data->p, data->len);
  put_le(&rec, masked_crc(data->p, data->len), 4);
  fwrite(rec.p, 1, rec.len, f);
  free(rec.p);
}

/* Appends one Summary.Value {tag, simple_value} to summary. */
static void tb_add_value(buf *summary, const char *tag, double v) {
  buf val = {0};
  put_bytes_field(&val, VALUE_TAG, tag, strlen(tag));
  put_float_field(&val, VALUE_SIMPLE, (float)v);
  put_bytes_field(summary, SUMMARY_VALUE, val.p, val.len);
  free(val.p);
}

static void tb_write_row(FILE *f, const char *split, long step, const dt_metric *vals, int n,
                         const char *array_key, const double *array, int narray) {
  buf summary = {0};
  size_t tag_cap = strlen(split) + 64;
  for (int i = 0; i < n; i++) tag_cap = DT_MAX(tag_cap, strlen(split) + strlen(vals[i].key) + 64);
  if (array_key) tag_cap = DT_MAX(tag_cap, strlen(split) + strlen(array_key) + 64);
  char *tag = dt_malloc(tag_cap);
  for (int i = 0; i < n; i++) {
    snprintf(tag, tag_cap, "%s/%s", split, vals[i].key);
    tb_add_value(&summary, tag, vals[i].value);
  }
  for (int i = 0; array_key && i < narray; i++) {
    snprintf(tag, tag_cap, "%s/%s/%d", split, array_key, i);
    tb_add_value(&summary, tag, array[i]);
  }
  free(tag);

  buf ev = {0};
  put_double_field(&ev, EV_WALL_TIME, wall_time());
  put_key(&ev, EV_STEP, WIRE_VARINT);
  put_varint(&ev, (uint64_t)(int64_t)step); /* int64: negatives take ten bytes */
  put_bytes_field(&ev, EV_SUMMARY, summary.p, summary.len);
  tb_write_record(f, &ev);
  free(ev.p);
  free(summary.p);
}

static void tb_write_header(FILE *f) {
  static const char version[] = "brain.Event:2";
  buf ev = {0};
  put_double_field(&ev, EV_WALL_TIME, wall_time());
  put_bytes_field(&ev, EV_FILE_VERSION, version, strlen(version));
  tb_write_record(f, &ev);
  free(ev.p);
}

/* ---- JSON ---- */

static void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
      case '"': fputs("\\\"", f); break;
      case '\\': fputs("\\\\", f); break;
      case '\b': fputs("\\b", f); break;
      case '\f': fputs("\\f", f); break;
      case '\n': fputs("\\n", f); break;
      case '\r': fputs("\\r", f); break;
      case '\t': fputs("\\t", f); break;
      default:
        if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f); /* UTF-8 passes through unchanged */
    }
  }
  fputc('"', f);
}

/* %.9g: every float32 comes back bit for bit from its text. */
static void json_number(FILE *f, double v, int is_int) {
  if (!isfinite(v)) fputs("null", f);
  else if (is_int) fprintf(f, "%.0f", v);
  else fprintf(f, "%.9g", v);
}

/* ---- open / log / close ---- */

/* mkdir -p: each prefix of path that does not exist yet is created. */
static int mkdir_p(const char *path, dt_error *err) {
  if (!path[0]) return dt_error_set(err, "metrics: empty run directory name");
  char *p = dt_strdup(path);
  int rc = 0;
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != '\0') continue;
    char c = *s;
    *s = '\0';
    if (mkdir(p, 0777) != 0 && errno != EEXIST) {
      rc = dt_error_set(err, "%s: cannot create directory: %s", p, strerror(errno));
      break;
    }
    *s = c;
    if (c == '\0') break;
  }
  if (rc == 0) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
      rc = dt_error_set(err, "%s: not a directory", path);
  }
  free(p);
  return rc;
}

/* A fresh event file; "x" keeps a second open in the same second from
 * truncating the first, the later one gets a numbered suffix instead. */
static FILE *tb_open(const char *run_dir, dt_error *err) {
  char host[256] = "localhost";
  if (gethostname(host, sizeof host) != 0) strcpy(host, "localhost");
  host[sizeof host - 1] = '\0';
  for (char *h = host; *h; h++)
    if (*h == '/') *h = '_';
  size_t cap = strlen(run_dir) + strlen(host) + 128;
  char *path = dt_malloc(cap);
  FILE *f = NULL;
  long t = (long)time(NULL);
  for (int k = 0; k < 1000 && !f; k++) {
    if (k == 0)
      snprintf(path, cap, "%s/events.out.tfevents.%ld.%s.%ld.dtrain", run_dir, t, host,
               (long)getpid());
    else
      snprintf(path, cap, "%s/events.out.tfevents.%ld.%s.%ld.dtrain.%d", run_dir, t, host,
               (long)getpid(), k);
    f = fopen(path, "wbx");
    if (!f && errno != EEXIST) break;
  }
  if (!f) dt_error_set(err, "%s: cannot create: %s", path, strerror(errno));
  else tb_write_header(f);
  free(path);
  return f;
}

dt_metrics *dt_metrics_open(const char *run_dir, int tensorboard, dt_error *err) {
  if (mkdir_p(run_dir, err) != 0) return NULL;
  size_t cap = strlen(run_dir) + 32;
  char *path = dt_malloc(cap);
  snprintf(path, cap, "%s/metrics.jsonl", run_dir);
  FILE *jsonl = fopen(path, "a");
  if (!jsonl) {
    dt_error_set(err, "%s: cannot open for appending: %s", path, strerror(errno));
    free(path);
    return NULL;
  }
  free(path);
  FILE *tb = NULL;
  if (tensorboard && !(tb = tb_open(run_dir, err))) {
    fclose(jsonl);
    return NULL;
  }
  dt_metrics *m = dt_calloc(1, sizeof *m);
  m->jsonl = jsonl;
  m->tb = tb;
  dt_metrics_flush(m);
  return m;
}

void dt_metrics_log(dt_metrics *m, const char *split, long step, const dt_metric *vals, int n,
                    const char *array_key, const double *array, int narray) {
  FILE *f = m->jsonl;
  fputs("{\"split\":", f);
  json_string(f, split);
  fprintf(f, ",\"step\":%ld", step);
  for (int i = 0; i < n; i++) {
    fputc(',', f);
    json_string(f, vals[i].key);
    fputc(':', f);
    json_number(f, vals[i].value, vals[i].is_int);
  }
  if (array_key) {
    fputc(',', f);
    json_string(f, array_key);
    fputs(":[", f);
    for (int i = 0; i < narray; i++) {
      if (i) fputc(',', f);
      json_number(f, array[i], 0);
    }
    fputc(']', f);
  }
  fputs("}\n", f);
  if (m->tb) tb_write_row(m->tb, split, step, vals, n, array_key, array, narray);
  dt_metrics_flush(m); /* a crash loses nothing already logged */
}

void dt_metrics_flush(dt_metrics *m) {
  if (!m) return;
  fflush(m->jsonl);
  if (m->tb) fflush(m->tb);
}

void dt_metrics_close(dt_metrics *m) {
  if (!m) return;
  fclose(m->jsonl);
  if (m->tb) fclose(m->tb);
  free(m);
}
