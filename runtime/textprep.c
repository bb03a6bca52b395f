/* textprep.c: text files and WOS abstracts -> GPT-2 token shards, and the
 * shard loader. Every input is read and tokenized before anything is
 * written, and shards are published by rename(2), as dataset.c does. */
#include "textprep.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "bpe.h"
#include "h5.h"
#include "safetensors.h"

#define ENCODE_SLICE (1 << 20) /* bytes encoded between progress checks */

/* ---- paths ---- */

typedef struct path_list {
  char **p;
  size_t n, cap;
} path_list;

static void paths_add(path_list *l, const char *path) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 16;
    l->p = realloc(l->p, l->cap * sizeof *l->p);
    DT_CHECK_ALLOC(l->p);
  }
  l->p[l->n++] = dt_strdup(path);
}

static void paths_free(path_list *l) {
  for (size_t i = 0; i < l->n; i++) free(l->p[i]);
  free(l->p);
  memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

typedef int (*name_filter)(const char *name);

/* Every regular file under dir whose name passes keep, unsorted. */
static int walk(const char *dir, name_filter keep, path_list *out, dt_error *err) {
  DIR *d = opendir(dir);
  if (!d) return dt_error_set(err, "%s: cannot read directory: %s", dir, strerror(errno));
  int rc = 0;
  struct dirent *e;
  while (!rc && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) {
      rc = dt_error_set(err, "%s/%s: path too long", dir, e->d_name);
      break;
    }
    struct stat st;
    if (stat(path, &st) != 0) continue; /* a dangling link is not text */
    if (S_ISDIR(st.st_mode)) rc = walk(path, keep, out, err);
    else if (S_ISREG(st.st_mode) && keep(e->d_name)) paths_add(out, path);
  }
  closedir(d);
  return rc;
}

static int is_jsonl_name(const char *name) {
  return ends_with(name, ".jsonl") || ends_with(name, ".jsonl.gz");
}

static int is_text_name(const char *name) {
  return ends_with(name, ".txt") || ends_with(name, ".txt.gz") || is_jsonl_name(name);
}

static int is_wos_x(const char *name) { return !strcmp(name, "X.txt"); }

static const char *base_name(const char *path) {
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') n--;
  const char *s = path + n;
  while (s > path && s[-1] != '/') s--;
  return s;
}

static int mkdir_p(const char *dir, dt_error *err) {
  char path[PATH_MAX];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof path) return dt_error_set(err, "%s: bad output directory name", dir);
  memcpy(path, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (path[i] != '/' && path[i] != '\0') continue;
    char c = path[i];
    path[i] = '\0';
    struct stat st;
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
      return dt_error_set(err, "%s: cannot create directory: %s", path, strerror(errno));
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
      return dt_error_set(err, "%s: exists and is not a directory", path);
    path[i] = c;
  }
  return 0;
}

/* Reads a whole file, gunzipping when it is gzip (zlib reads plain files
 * as they are). *data is malloc'ed and NUL-terminated. */
static gzFile open_gz(const char *path, dt_error *err) {
  gzFile g = gzopen(path, "rb");
  if (!g)
    dt_error_set(err, "%s: cannot open: %s", path, errno ? strerror(errno) : "gzopen failed");
  else
    gzbuffer(g, 1 << 18);
  return g;
}

static int read_text(const char *path, char **data, size_t *len, dt_error *err) {
  gzFile g = open_gz(path, err);
  if (!g) return -1;
  size_t cap = 1 << 20, n = 0;
  char *buf = dt_malloc(cap + 1);
  int rc = 0;
  for (;;) {
    if (n == cap) {
      cap *= 2;
      buf = realloc(buf, cap + 1);
      DT_CHECK_ALLOC(buf);
    }
    unsigned want = (unsigned)DT_MIN(cap - n, (size_t)1 << 30);
    int r = gzread(g, buf + n, want);
    if (r < 0) {
      int code;
      const char *msg = gzerror(g, &code);
      rc = dt_error_set(err, "%s: corrupt gzip stream (%s)", path,
                        code == Z_ERRNO ? strerror(errno) : msg);
      break;
    }
    if (r == 0) {
      int code;
      gzerror(g, &code);
      if (code == Z_BUF_ERROR) rc = dt_error_set(err, "%s: truncated (gzip stream cut short)", path);
      break;
    }
    n += (size_t)r;
  }
  gzclose(g);
  if (rc) {
    free(buf);
    return -1;
  }
  buf[n] = '\0';
  *data = buf;
  *len = n;
  return 0;
}

/* ---- the corpus: documents' tokens back to back ---- */

/* Documents are cut into slices of about ENCODE_SLICE bytes where the
 * pre-tokenizer starts a piece whatever the text around it (dt_bpe_cut), so
 * each slice encodes alone to the ids of the whole; a batch of slices is
 * encoded by the threads (one dt_bpe each: its cache is not shared), then
 * appended in order. The ids do not depend on the thread count. */
typedef struct slice {
  size_t at, len;   /* in the batch's text */
  int doc_end;      /* the last slice of its document */
  dt_token_buf ids;
} slice;

typedef struct corpus {
  dt_bpe **bpe;     /* one per thread */
  int nthreads;
  char *text;       /* the batch's documents, copied */
  size_t text_n, text_cap;
  slice *sl;
  size_t nsl, sl_cap;
  int64_t doc_start; /* where the document being appended began in tok */
  uint16_t *tok;    /* the documents' ids, each followed by eot */
  size_t n, cap;
  uint16_t eot;
  int64_t *doc_end; /* end of each document in tok (where its eot is) */
  size_t docs, doc_cap;
  int64_t bytes;
  double t0, t_last;
  int progress;
  /* Corpora larger than memory: once tok holds spill_at ids, they go to a
   * scratch file in the output directory (OUT/tokens.spill.tmp) and tok
   * starts again; tok[0] is then corpus position `base` (doc_end and
   * doc_start stay corpus positions), and the shards are written from the
   * file (write_spilled). A failure to spill is kept for write_shards. */
  const char *spill_dir;
  size_t spill_at;
  int64_t base;
  FILE *spill;
  char spill_path[PATH_MAX];
  int spill_failed;
  dt_error spill_err;
} corpus;

/* Moves tok's ids to the scratch file. */
static void spill(corpus *c) {
  if (c->spill_failed || c->n == 0) return;
  if (!c->spill) {
    if (mkdir_p(c->spill_dir, &c->spill_err)) {
      c->spill_failed = 1;
      return;
    }
    snprintf(c->spill_path, sizeof c->spill_path, "%s/tokens.spill.tmp", c->spill_dir);
    c->spill = fopen(c->spill_path, "w+b");
    if (!c->spill) {
      dt_error_set(&c->spill_err, "%s: cannot create: %s", c->spill_path, strerror(errno));
      c->spill_failed = 1;
      return;
    }
  }
  if (fwrite(c->tok, sizeof *c->tok, c->n, c->spill) != c->n) {
    dt_error_set(&c->spill_err, "%s: cannot write (disk full?): %s", c->spill_path,
                 strerror(errno));
    c->spill_failed = 1;
    return;
  }
  c->base += (int64_t)c->n;
  c->n = 0;
}

static void corpus_progress(corpus *c, int final) {
  double now = dt_now();
  if (!c->progress || (!final && now - c->t_last < 1.0)) return;
  c->t_last = now;
  double mb = (double)c->bytes / 1e6, secs = DT_MAX(now - c->t0, 1e-9);
  fprintf(stderr, "dtrain-prep: %.1f MB read, %.2f MB/s, %lld tokens, %zu documents\n", mb,
          mb / secs, (long long)(c->base + (int64_t)c->n - (int64_t)c->docs), c->docs);
}

typedef struct encode_job {
  corpus *c;
  int t;
  atomic_size_t *next;
} encode_job;

static void *encode_worker(void *arg) {
  encode_job *j = arg;
  corpus *c = j->c;
  for (size_t i; (i = atomic_fetch_add(j->next, 1)) < c->nsl;) {
    slice *s = &c->sl[i];
    s->ids.n = 0;
    dt_bpe_encode_append(c->bpe[j->t], c->text + s->at, s->len, &s->ids);
  }
  return NULL;
}

/* Encodes the batch and appends it; a document whose slices gave no ids
 * (an empty one) is dropped. */
static void corpus_flush(corpus *c) {
  if (c->nsl == 0) return;
  atomic_size_t next = 0;
  const int nt = (int)DT_MIN((size_t)c->nthreads, c->nsl);
  encode_job jobs[64];
  pthread_t tid[64];
  int started = 0;
  for (int t = 1; t < nt; t++) {
    jobs[t] = (encode_job){c, t, &next};
    if (pthread_create(&tid[t], NULL, encode_worker, &jobs[t]) != 0) break;
    started = t;
  }
  jobs[0] = (encode_job){c, 0, &next};
  encode_worker(&jobs[0]); /* the rest, and all of it if no thread started */
  for (int t = 1; t <= started; t++) pthread_join(tid[t], NULL);
  for (size_t i = 0; i < c->nsl; i++) {
    const slice *s = &c->sl[i];
    if (c->n + s->ids.n > c->cap) {
      while (c->n + s->ids.n > c->cap) c->cap = c->cap ? 2 * c->cap : 1 << 20;
      c->tok = realloc(c->tok, c->cap * sizeof *c->tok);
      DT_CHECK_ALLOC(c->tok);
    }
    for (size_t k = 0; k < s->ids.n; k++) c->tok[c->n + k] = (uint16_t)s->ids.ids[k];
    c->n += s->ids.n;
    c->bytes += (int64_t)s->len;
    if (!s->doc_end) continue;
    if (c->base + (int64_t)c->n > c->doc_start) {
      if (c->docs == c->doc_cap) {
        c->doc_cap = c->doc_cap ? 2 * c->doc_cap : 1024;
        c->doc_end = realloc(c->doc_end, c->doc_cap * sizeof *c->doc_end);
        DT_CHECK_ALLOC(c->doc_end);
      }
      c->doc_end[c->docs++] = c->base + (int64_t)c->n;
      /* the separator the splits put between documents, kept here so
       * that they are made in place (make_splits) */
      if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1 << 20;
        c->tok = realloc(c->tok, c->cap * sizeof *c->tok);
        DT_CHECK_ALLOC(c->tok);
      }
      c->tok[c->n++] = c->eot;
    }
    c->doc_start = c->base + (int64_t)c->n;
  }
  c->nsl = 0;
  c->text_n = 0;
  /* a flush ends on a document's end: all of tok may go */
  if (c->spill_at && c->spill_dir && c->n >= c->spill_at) spill(c);
  corpus_progress(c, 0);
}

/* Queues one document (copied), encoding the batch once it holds enough
 * text to keep every thread busy. */
static void corpus_add(corpus *c, const char *text, size_t len) {
  if (c->text_n + len > c->text_cap) {
    while (c->text_n + len > c->text_cap) c->text_cap = c->text_cap ? 2 * c->text_cap : 1 << 20;
    c->text = realloc(c->text, c->text_cap);
    DT_CHECK_ALLOC(c->text);
  }
  if (len) memcpy(c->text + c->text_n, text, len); /* an empty first one: no buffer yet */
  size_t at = 0;
  do { /* an empty document is one empty slice, which ends it */
    size_t end =
        at + ENCODE_SLICE >= len ? len : dt_bpe_cut(c->bpe[0], text, len, at + ENCODE_SLICE);
    if (c->nsl == c->sl_cap) {
      size_t cap = c->sl_cap ? 2 * c->sl_cap : 256;
      c->sl = realloc(c->sl, cap * sizeof *c->sl);
      DT_CHECK_ALLOC(c->sl);
      memset(c->sl + c->sl_cap, 0, (cap - c->sl_cap) * sizeof *c->sl);
      c->sl_cap = cap;
    }
    slice *s = &c->sl[c->nsl++];
    s->at = c->text_n + at, s->len = end - at, s->doc_end = end == len;
    at = end;
  } while (at < len);
  c->text_n += len;
  if (c->text_n >= (size_t)c->nthreads * 4 * ENCODE_SLICE) corpus_flush(c);
}

static void corpus_free(corpus *c);

static int corpus_init(corpus *c, const dt_textprep_opts *o, dt_error *err) {
  memset(c, 0, sizeof *c);
  if (!(o->val_fraction > 0 && o->val_fraction <= 0.5))
    return dt_error_set(err, "--val-fraction %g: must be in (0, 0.5]", o->val_fraction);
  const char *dir = o->tokenizer_dir ? o->tokenizer_dir : dt_textprep_default_tokenizer();
  c->nthreads = o->threads > 0 ? DT_MIN(o->threads, 64)
                               : (int)DT_MIN(sysconf(_SC_NPROCESSORS_ONLN), 16);
  if (c->nthreads < 1) c->nthreads = 1;
  c->bpe = dt_calloc((size_t)c->nthreads, sizeof *c->bpe);
  for (int t = 0; t < c->nthreads; t++)
    if (!(c->bpe[t] = dt_bpe_load(dir, err))) {
      corpus_free(c);
      return -1;
    }
  int nv = dt_bpe_vocab_size(c->bpe[0]);
  if (nv > 65536) {
    corpus_free(c);
    return dt_error_set(err, "%s: %d tokens do not fit the uint16 shards", dir, nv);
  }
  c->eot = (uint16_t)dt_bpe_eot(c->bpe[0]);
  c->progress = o->progress;
  c->t0 = c->t_last = dt_now();
  /* 2^28 ids (512 MB) in memory at most; DTRAIN_PREP_SPILL_TOKENS=N for
   * another bound (the tests spill tiny corpora so) */
  const char *env = getenv("DTRAIN_PREP_SPILL_TOKENS");
  c->spill_at = env && atol(env) > 0 ? (size_t)atol(env) : (size_t)1 << 28;
  return 0;
}

static void corpus_free(corpus *c) {
  for (int t = 0; c->bpe && t < c->nthreads; t++) dt_bpe_free(c->bpe[t]);
  free(c->bpe);
  for (size_t i = 0; i < c->sl_cap; i++) dt_token_buf_free(&c->sl[i].ids);
  free(c->sl);
  free(c->text);
  free(c->tok);
  free(c->doc_end);
  if (c->spill) fclose(c->spill), unlink(c->spill_path);
  memset(c, 0, sizeof *c);
}

/* ---- splitting and writing ---- */

typedef struct split {
  uint16_t *tok;
  int64_t n, docs;
  size_t cap;
} split;

/* Appends a document, after an eot when it is not the first. */
static void split_doc(split *s, const uint16_t *tok, int64_t n, uint16_t eot) {
  if ((size_t)(s->n + n + 1) > s->cap) {
    while ((size_t)(s->n + n + 1) > s->cap) s->cap = s->cap ? 2 * s->cap : 1 << 16;
    s->tok = realloc(s->tok, s->cap * sizeof *s->tok);
    DT_CHECK_ALLOC(s->tok);
  }
  if (s->docs++ > 0) s->tok[s->n++] = eot;
  memcpy(s->tok + s->n, tok, (size_t)n * sizeof *tok);
  s->n += n;
}

/* train and val as the header describes: every k-th document to val. The
 * val documents are copied out (their share is small); train is made in
 * place in c->tok, each train document moved down over what val took, so
 * a corpus of n ids needs n + its val share in memory, not 2n. *train
 * points into c->tok. */
static void make_splits(corpus *c, double frac, split *train, split *val) {
  const uint16_t eot = c->eot;
  if (c->docs == 1) {
    int64_t n = c->doc_end[0], nval = (int64_t)ceil(frac * (double)n);
    nval = DT_MAX(1, DT_MIN(nval, n - 1));
    split_doc(val, c->tok + n - nval, nval, eot);
    *train = (split){c->tok, n - nval, 1, 0};
    return;
  }
  size_t k = (size_t)DT_MAX(1L, lround(1.0 / frac));
  int64_t w = 0, ntrain = 0;
  for (size_t d = 0; d < c->docs; d++) {
    const int64_t from = d ? c->doc_end[d - 1] + 1 : 0, n = c->doc_end[d] - from;
    int to_val = k > c->docs ? d == c->docs - 1 : d % k == k - 1;
    if (to_val) {
      split_doc(val, c->tok + from, n, eot);
      continue;
    }
    if (ntrain++ > 0) c->tok[w++] = eot;
    memmove(c->tok + w, c->tok + from, (size_t)n * sizeof *c->tok); /* w <= from */
    w += n;
  }
  *train = (split){c->tok, w, ntrain, 0};
}

/* A shard's attributes, after its /tokens */
static int shard_attrs(hid_t f, int64_t n, const dt_token_meta *m, dt_error *err) {
  int rc = dt_h5_attr_write_str(f, "/", "format", DT_TOKENS_FORMAT, err);
  if (!rc) rc = dt_h5_attr_write_i64(f, "/", "count", 1, &n, err);
  if (!rc) rc = dt_h5_attr_write_i64(f, "/", "vocab_size", 1, &m->vocab_size, err);
  if (!rc) rc = dt_h5_attr_write_i64(f, "/", "eot", 1, &m->eot, err);
  if (!rc) rc = dt_h5_attr_write_i64(f, "/", "documents", 1, &m->documents, err);
  if (!rc) rc = dt_h5_attr_write_str(f, "/", "tokenizer", m->tokenizer ? m->tokenizer : "gpt2", err);
  if (!rc) rc = dt_h5_attr_write_str(f, "/", "name", m->name ? m->name : "", err);
  if (!rc) rc = dt_h5_attr_write_str(f, "/", "source", m->source ? m->source : "", err);
  return rc;
}

int dt_token_shard_write(const char *path, const uint16_t *tokens, int64_t n,
                         const dt_token_meta *m, dt_error *err) {
  hid_t f = dt_h5_create(path, err);
  if (f < 0) return -1;
  /* stored whole, not compressed, so training can map the file
   * (dt_token_shard_map) instead of reading a copy into every rank */
  int rc = dt_h5_write(f, "/tokens", H5T_NATIVE_UINT16, 1, &n, tokens, 0, err);
  if (!rc) rc = shard_attrs(f, n, m, err);
  /* Closing flushes: a full disk shows up here, not earlier. */
  if (H5Fclose(f) < 0 && !rc) rc = dt_error_set(err, "%s: cannot finish writing (disk full?)", path);
  return rc;
}

/* Whether document d of a spilled corpus goes to split `val` (0 train, 1
 * val) as make_splits decides, and its range [*from, *from + *len) there;
 * k and nval1 are make_splits's: every k-th document to val, or a single
 * document's last nval1 tokens. */
static int doc_in_split(const corpus *c, size_t d, int val, size_t k, int64_t nval1,
                        int64_t *from, int64_t *len) {
  if (c->docs == 1) {
    *from = val ? c->doc_end[0] - nval1 : 0;
    *len = val ? nval1 : c->doc_end[0] - nval1;
    return 1;
  }
  *from = d ? c->doc_end[d - 1] + 1 : 0;
  *len = c->doc_end[d] - *from;
  return (k > c->docs ? d == c->docs - 1 : d % k == k - 1) == (val != 0);
}

/* A spilled corpus's split `val` into path, read back from the scratch
 * file a block at a time: the documents make_splits would put there, in
 * order, an eot between two. */
static int write_spilled(corpus *c, int val, double frac, const char *path,
                         const dt_token_meta *meta, dt_error *err) {
  const size_t k = (size_t)DT_MAX(1L, lround(1.0 / frac));
  int64_t nval1 = (int64_t)ceil(frac * (double)c->doc_end[0]), n = 0, from, len;
  nval1 = DT_MAX(1, DT_MIN(nval1, c->doc_end[0] - 1));
  dt_token_meta m = *meta;
  m.documents = 0;
  for (size_t d = 0; d < c->docs; d++)
    if (doc_in_split(c, d, val, k, nval1, &from, &len)) n += len + (m.documents++ > 0);
  hid_t f = dt_h5_create(path, err);
  if (f < 0) return -1;
  hid_t ds = dt_h5_create_1d(f, "/tokens", H5T_NATIVE_UINT16, n, err);
  int rc = ds < 0 ? -1 : 0;
  const int64_t block = 1 << 20;
  uint16_t *buf = dt_malloc((size_t)block * sizeof *buf);
  int64_t at = 0, docs = 0;
  for (size_t d = 0; d < c->docs && !rc; d++) {
    if (!doc_in_split(c, d, val, k, nval1, &from, &len)) continue;
    if (docs++ > 0) rc = dt_h5_write_at(ds, H5T_NATIVE_UINT16, at++, 1, &c->eot, err);
    for (int64_t o = 0; o < len && !rc; o += block) {
      const int64_t b = DT_MIN(block, len - o);
      const size_t bytes = (size_t)b * sizeof *buf;
      if (pread(fileno(c->spill), buf, bytes, (off_t)((from + o) * (int64_t)sizeof *buf)) !=
          (ssize_t)bytes)
        rc = dt_error_set(err, "%s: cannot read back: %s", c->spill_path, strerror(errno));
      else
        rc = dt_h5_write_at(ds, H5T_NATIVE_UINT16, at, b, buf, err);
      at += b;
    }
  }
  free(buf);
  dt_h5_dataset_close(ds);
  if (!rc) rc = shard_attrs(f, n, &m, err);
  if (H5Fclose(f) < 0 && !rc)
    rc = dt_error_set(err, "%s: cannot finish writing (disk full?)", path);
  return rc;
}

static int write_shards(corpus *c, const char *out_dir, const dt_textprep_opts *o,
                        const char *name, const char *source, const char *what, dt_error *err) {
  corpus_flush(c);
  const int64_t total = c->base + (int64_t)c->n - (int64_t)c->docs; /* an eot a document */
  if (c->docs == 0 || total < 2)
    return dt_error_set(err, "%s: no text to tokenize (%lld tokens)", what, (long long)total);
  if (c->spill) spill(c); /* all of it to the file, then the shards from there */
  if (c->spill && !c->spill_failed && fflush(c->spill) != 0) {
    dt_error_set(&c->spill_err, "%s: cannot write (disk full?): %s", c->spill_path,
                 strerror(errno));
    c->spill_failed = 1;
  }
  if (c->spill_failed) return dt_error_set(err, "%s", c->spill_err.msg);
  split sp[2] = {{0}, {0}};
  if (!c->spill) make_splits(c, o->val_fraction, &sp[0], &sp[1]);
  const char *names[2] = {"train", "val"};
  char out[2][PATH_MAX], tmp[2][PATH_MAX];
  int rc = mkdir_p(out_dir, err), written = 0;
  for (int i = 0; i < 2 && !rc; i++) {
    if (snprintf(out[i], sizeof out[i], "%s/%s.h5", out_dir, names[i]) >= (int)sizeof out[i] ||
        snprintf(tmp[i], sizeof tmp[i], "%s.tmp", out[i]) >= (int)sizeof tmp[i]) {
      rc = dt_error_set(err, "%s: output path too long", out_dir);
      break;
    }
    dt_token_meta m = {.vocab_size = dt_bpe_vocab_size(c->bpe[0]), .eot = dt_bpe_eot(c->bpe[0]),
                       .documents = sp[i].docs, .tokenizer = "gpt2", .name = name,
                       .source = source};
    written = i + 1; /* the tmp file may exist, even if half-written */
    rc = c->spill ? write_spilled(c, i, o->val_fraction, tmp[i], &m, err)
                  : dt_token_shard_write(tmp[i], sp[i].tok, sp[i].n, &m, err);
  }
  for (int i = 0; i < 2 && !rc; i++)
    if (rename(tmp[i], out[i]) != 0)
      rc = dt_error_set(err, "%s: cannot rename to %s: %s", tmp[i], out[i], strerror(errno));
  if (rc)
    for (int i = 0; i < written; i++) unlink(tmp[i]);
  else
    corpus_progress(c, 1); /* the last line, only when all went well */
  free(sp[1].tok); /* sp[0] lies in c->tok */
  return rc;
}

/* ---- dtrain-prep text ---- */

const char *dt_textprep_default_tokenizer(void) {
  static char buf[PATH_MAX];
  const char *data = getenv("DTRAIN_DATA");
  snprintf(buf, sizeof buf, "%s/gpt2-tokenizer", data && *data ? data : "data");
  return buf;
}

/* The inputs, expanded: files as given, directories walked and sorted. */
static int list_inputs(const char *const *inputs, int n_inputs, path_list *files, dt_error *err) {
  if (n_inputs < 1) return dt_error_set(err, "no input files");
  for (int i = 0; i < n_inputs; i++) {
    struct stat st;
    if (stat(inputs[i], &st) != 0)
      return dt_error_set(err, "%s: %s", inputs[i], strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
      paths_add(files, inputs[i]);
      continue;
    }
    size_t before = files->n;
    if (walk(inputs[i], is_text_name, files, err)) return -1;
    if (files->n == before)
      return dt_error_set(err, "%s: no .txt, .jsonl (or .gz of them) files in this directory",
                          inputs[i]);
    qsort(files->p + before, files->n - before, sizeof *files->p, cmp_str);
  }
  return 0;
}

/* ---- JSON Lines: a document per line, its "text" field ---- */

/* A .jsonl (or .jsonl.gz) file: every non-blank line one JSON object, its
 * string `field` one document, read a line at a time (memory: the longest
 * line). */
static int add_jsonl(corpus *c, const char *path, const char *field, dt_error *err) {
  gzFile g = open_gz(path, err);
  if (!g) return -1;
  size_t cap = 1 << 16;
  char *line = dt_malloc(cap);
  long long lineno = 0;
  int rc = 0;
  for (;;) {
    size_t n = 0;
    int got = 0;
    /* one line, however long */
    while (gzgets(g, line + n, (int)DT_MIN(cap - n, (size_t)1 << 30))) {
      got = 1;
      n += strlen(line + n);
      if (n > 0 && line[n - 1] == '\n') break;
      if (n + 1 >= cap) {
        cap *= 2;
        line = realloc(line, cap);
        DT_CHECK_ALLOC(line);
      }
    }
    int code;
    const char *msg = gzerror(g, &code);
    if (code != Z_OK && code != Z_STREAM_END) {
      rc = dt_error_set(err, "%s: %s", path, code == Z_BUF_ERROR
                                                  ? "truncated (gzip stream cut short)"
                                                  : code == Z_ERRNO ? strerror(errno) : msg);
      break;
    }
    if (!got) break;
    lineno++;
    size_t blank = 0;
    while (blank < n && strchr(" \t\r\n", line[blank])) blank++;
    if (blank == n) continue; /* a blank line */
    char where[PATH_MAX + 32];
    snprintf(where, sizeof where, "%s:%lld", path, lineno);
    /* safetensors.h's parser: strings decoded to UTF-8, never holding a NUL */
    dt_json *v = dt_json_parse(line, n, where, err);
    const dt_json *t = dt_json_get(v, field);
    const char *why = !v                            ? NULL
                      : v->type != DT_JSON_OBJECT   ? "not a JSON object"
                      : !t                          ? "no such field"
                      : t->type != DT_JSON_STRING   ? "the field is not a string"
                                                    : "";
    if (!why || *why) {
      char msg[sizeof err->msg];
      snprintf(msg, sizeof msg, "%s", why ? why : err->msg);
      rc = dt_error_set(err, "%s%s%s (want one JSON object a line with a string \"%s\": "
                        "--field)", why ? where : "", why ? ": " : "", msg, field);
      dt_json_free(v);
      break;
    }
    corpus_add(c, t->str, strlen(t->str));
    dt_json_free(v);
  }
  free(line);
  gzclose(g);
  return rc;
}

static char *join_lines(const char *const *s, int n) {
  size_t len = 1;
  for (int i = 0; i < n; i++) len += strlen(s[i]) + 1;
  char *out = dt_malloc(len);
  out[0] = '\0';
  for (int i = 0; i < n; i++) {
    if (i) strcat(out, "\n");
    strcat(out, s[i]);
  }
  return out;
}

int dt_prep_text(const char *out_dir, const char *const *inputs, int n_inputs,
                 const dt_textprep_opts *o, dt_error *err) {
  path_list files = {0};
  corpus c;
  if (list_inputs(inputs, n_inputs, &files, err)) {
    paths_free(&files);
    return -1;
  }
  if (corpus_init(&c, o, err)) {
    paths_free(&files);
    return -1;
  }
  c.spill_dir = out_dir;
  int rc = 0;
  for (size_t i = 0; i < files.n && !rc; i++) {
    if (is_jsonl_name(files.p[i])) {
      rc = add_jsonl(&c, files.p[i], o->jsonl_field ? o->jsonl_field : "text", err);
      continue;
    }
    char *text;
    size_t len;
    rc = read_text(files.p[i], &text, &len, err);
    if (rc) break;
    size_t skip = len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3) ? 3 : 0; /* a BOM is not text */
    corpus_add(&c, text + skip, len - skip);
    free(text);
  }
  if (!rc) {
    char name[256];
    const char *base = base_name(inputs[0]);
    snprintf(name, sizeof name, "%.*s", (int)strcspn(base, "."), base);
    char *source = join_lines(inputs, n_inputs);
    char what[PATH_MAX + 32];
    snprintf(what, sizeof what, "%s%s", inputs[0], n_inputs > 1 ? " and the other inputs" : "");
    rc = write_shards(&c, out_dir, o, o->name ? o->name : name, source, what, err);
    free(source);
  }
  corpus_free(&c);
  paths_free(&files);
  return rc;
}

/* ---- dtrain-prep wos ---- */

/* Collapses runs of ASCII whitespace to one space and trims, in place. */
static size_t collapse_ws(char *s, size_t n) {
  size_t o = 0;
  int space = 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f') {
      space = o > 0;
      continue;
    }
    if (space) s[o++] = ' ';
    space = 0;
    s[o++] = ch;
  }
  return o;
}

/* Abstracts seen so far, for dropping duplicates. */
typedef struct abstract_set {
  char **text;
  size_t *len;
  uint64_t *hash;
  size_t n, cap;
  size_t *slot; /* index + 1, 0 empty */
  size_t slots;
  int64_t dropped;
} abstract_set;

static uint64_t fnv64(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
  return h;
}

static void set_rehash(abstract_set *s) {
  s->slots = s->slots ? 2 * s->slots : 4096;
  free(s->slot);
  s->slot = dt_calloc(s->slots, sizeof *s->slot);
  for (size_t i = 0; i < s->n; i++) {
    size_t k = s->hash[i] & (s->slots - 1);
    while (s->slot[k]) k = (k + 1) & (s->slots - 1);
    s->slot[k] = i + 1;
  }
}

/* Adds a copy of text unless it is empty or already there. */
static void set_add(abstract_set *s, const char *text, size_t len) {
  if (len == 0) return;
  if (2 * (s->n + 1) > s->slots) set_rehash(s);
  uint64_t h = fnv64(text, len);
  size_t k = h & (s->slots - 1);
  for (; s->slot[k]; k = (k + 1) & (s->slots - 1)) {
    size_t i = s->slot[k] - 1;
    if (s->hash[i] == h && s->len[i] == len && !memcmp(s->text[i], text, len)) {
      s->dropped++;
      return;
    }
  }
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 1024;
    s->text = realloc(s->text, s->cap * sizeof *s->text);
    s->len = realloc(s->len, s->cap * sizeof *s->len);
    s->hash = realloc(s->hash, s->cap * sizeof *s->hash);
    DT_CHECK_ALLOC(s->text && s->len && s->hash);
  }
  s->text[s->n] = dt_malloc(len);
  memcpy(s->text[s->n], text, len);
  s->len[s->n] = len;
  s->hash[s->n] = h;
  s->slot[k] = ++s->n;
}

static void set_free(abstract_set *s) {
  for (size_t i = 0; i < s->n; i++) free(s->text[i]);
  free(s->text);
  free(s->len);
  free(s->hash);
  free(s->slot);
  memset(s, 0, sizeof *s);
}

/* The field of a tab-separated line (fields are counted from 0). */
static int tsv_field(char *line, int want, char **field, size_t *len, int *nfields) {
  int k = 0;
  char *p = line;
  *field = NULL;
  for (;;) {
    char *tab = strchr(p, '\t');
    if (k == want) {
      *field = p;
      *len = tab ? (size_t)(tab - p) : strlen(p);
    }
    k++;
    if (!tab) break;
    p = tab + 1;
  }
  *nfields = k;
  return *field ? 0 : -1;
}

/* Data1k.txt: the Abstract column of a TSV with a header line. */
static int read_wos_tsv(const char *path, abstract_set *set, dt_error *err) {
  char *data;
  size_t n;
  if (read_text(path, &data, &n, err)) return -1;
  int rc = 0, line = 0, col = -1, ncols = 0;
  for (char *p = data, *next; p < data + n && !rc; p = next) {
    char *nl = memchr(p, '\n', (size_t)(data + n - p));
    next = nl ? nl + 1 : data + n;
    if (nl) *nl = '\0';
    line++;
    size_t ll = strlen(p);
    if (ll && p[ll - 1] == '\r') p[--ll] = '\0';
    if (line == 1) { /* the header: find "Abstract" */
      char *f;
      size_t fl;
      for (int k = 0; !tsv_field(p, k, &f, &fl, &ncols); k++)
        if (collapse_ws(f, fl) == 8 && !memcmp(f, "Abstract", 8)) col = k;
      if (col < 0)
        rc = dt_error_set(err, "%s:1: no Abstract column in the header (expected the WOS header "
                          "\"Y1 Y2 Y Domain area keywords Abstract\", tab-separated)", path);
      continue;
    }
    if (ll == 0) continue;
    char *f;
    size_t fl = 0;
    int nf;
    if (tsv_field(p, col, &f, &fl, &nf) || nf != ncols) {
      rc = dt_error_set(err, "%s:%d: %d tab-separated fields, the header has %d", path, line, nf,
                        ncols);
      break;
    }
    fl = collapse_ws(f, fl);
    if (fl >= 2 && f[0] == '"' && f[fl - 1] == '"') { /* a quoted field: "" is one quote */
      size_t o = 0;
      for (size_t i = 1; i + 1 < fl; i++) {
        f[o++] = f[i];
        if (f[i] == '"' && f[i + 1] == '"' && i + 2 < fl) i++;
      }
      fl = collapse_ws(f, o);
    }
    set_add(set, f, fl);
  }
  free(data);
  return rc;
}

/* X.txt: one abstract per line. */
static int read_wos_lines(const char *path, abstract_set *set, dt_error *err) {
  char *data;
  size_t n;
  if (read_text(path, &data, &n, err)) return -1;
  for (char *p = data, *next; p < data + n; p = next) {
    char *nl = memchr(p, '\n', (size_t)(data + n - p));
    next = nl ? nl + 1 : data + n;
    set_add(set, p, collapse_ws(p, (size_t)((nl ? nl : data + n) - p)));
  }
  free(data);
  return 0;
}

static void append(char *buf, size_t size, const char *s) {
  size_t n = strlen(buf);
  snprintf(buf + n, size - n, "%s", s);
}

int dt_prep_wos(const char *src, const char *out_dir, const dt_textprep_opts *o, dt_error *err) {
  struct stat st;
  if (stat(src, &st) != 0 || !S_ISDIR(st.st_mode))
    return dt_error_set(err, "%s: no such directory (expected the WOS abstracts: Data1k.txt "
                        "and/or */X.txt)", src);
  path_list xs = {0};
  abstract_set set = {0};
  char tsv[PATH_MAX], source[8192];
  snprintf(tsv, sizeof tsv, "%s/Data1k.txt", src);
  int have_tsv = stat(tsv, &st) == 0;
  int rc = walk(src, is_wos_x, &xs, err);
  if (!rc && !have_tsv && xs.n == 0)
    rc = dt_error_set(err, "%s: no Data1k.txt and no X.txt below it (the WOS layout: Data1k.txt, "
                      "WOS1000/X.txt, WOS-more/X.txt, WOS11967/X.txt, ...)", src);
  if (xs.n) qsort(xs.p, xs.n, sizeof *xs.p, cmp_str);
  snprintf(source, sizeof source, "WOS abstracts in %s:", src);
  if (!rc && have_tsv) {
    rc = read_wos_tsv(tsv, &set, err);
    append(source, sizeof source, " Data1k.txt");
  }
  for (size_t i = 0; i < xs.n && !rc; i++) {
    rc = read_wos_lines(xs.p[i], &set, err);
    append(source, sizeof source, have_tsv || i ? ", " : " ");
    append(source, sizeof source, xs.p[i] + strlen(src) + 1);
  }
  corpus c;
  if (!rc && set.n == 0) rc = dt_error_set(err, "%s: no abstracts found", src);
  if (!rc && !(rc = corpus_init(&c, o, err))) {
    c.spill_dir = out_dir;
    for (size_t i = 0; i < set.n; i++) corpus_add(&c, set.text[i], set.len[i]);
    rc = write_shards(&c, out_dir, o, o->name ? o->name : "wos", source, src, err);
    if (!rc && o->progress)
      fprintf(stderr, "dtrain-prep: %zu abstracts, %lld duplicates dropped\n", set.n,
              (long long)set.dropped);
    corpus_free(&c);
  }
  set_free(&set);
  paths_free(&xs);
  return rc;
}

/* ---- loading ---- */

int dt_token_shard_is(const char *path) {
  dt_error err;
  hid_t f = dt_h5_open(path, &err);
  if (f < 0) return 0;
  char *format = dt_h5_attr_read_str(f, "/", "format", &err);
  int yes = format && !strcmp(format, DT_TOKENS_FORMAT);
  free(format);
  dt_h5_close(f);
  return yes;
}

/* The shard's header: format, /tokens 1-D uint16 and not empty, its count
 * and vocab_size attributes. *le: /tokens is stored little-endian. */
static int check_header(hid_t f, const char *path, int64_t *count, int64_t *vocab, int *le,
                        dt_error *err) {
  char *format = dt_h5_attr_read_str(f, "/", "format", err);
  if (!format) {
    if (err) {
      size_t l = strlen(err->msg);
      snprintf(err->msg + l, sizeof err->msg - l, " (not a dtrain token shard?)");
    }
    return -1;
  }
  int bad = strcmp(format, DT_TOKENS_FORMAT) != 0;
  if (bad) dt_error_set(err, "%s: format is \"%s\", expected \"%s\"", path, format, DT_TOKENS_FORMAT);
  free(format);
  if (bad) return -1;
  int nd;
  int64_t dims[DT_H5_MAXDIMS];
  if (dt_h5_dims(f, "/tokens", &nd, dims, err)) return -1;
  if (nd != 1 || dims[0] < 1)
    return dt_error_set(err, "%s: dataset /tokens must be 1-D and not empty", path);
  hid_t d = H5Dopen2(f, "/tokens", H5P_DEFAULT);
  hid_t t = d >= 0 ? H5Dget_type(d) : -1;
  int ok = t >= 0 && H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 2 &&
           H5Tget_sign(t) == H5T_SGN_NONE;
  *le = ok && H5Tget_order(t) == H5T_ORDER_LE;
  if (t >= 0) H5Tclose(t);
  if (d >= 0) H5Dclose(d);
  if (!ok) return dt_error_set(err, "%s: dataset /tokens is not uint16", path);
  if (dt_h5_attr_read_i64(f, "/", "count", 1, count, err) ||
      dt_h5_attr_read_i64(f, "/", "vocab_size", 1, vocab, err))
    return -1;
  if (*count != dims[0])
    return dt_error_set(err, "%s: attribute count = %lld, but /tokens has %lld", path,
                        (long long)*count, (long long)dims[0]);
  if (*vocab < 1 || *vocab > 65536)
    return dt_error_set(err, "%s: attribute vocab_size = %lld, expected 1..65536", path,
                        (long long)*vocab);
  return 0;
}

/* The first id of tok[0, n) at or above limit, named; 0 when there is none */
static int check_ids(const char *path, const uint16_t *tok, int64_t n, int64_t limit,
                     int64_t vocab, dt_error *err) {
  for (int64_t i = 0; i < n; i++)
    if (tok[i] >= limit)
      return dt_error_set(err, "%s: /tokens[%lld] = %u is not below vocab_size %lld%s", path,
                          (long long)i, tok[i], (long long)limit,
                          limit < vocab ? " (the model's)" : "");
  return 0;
}

/* /tokens read whole, each id checked against the model's vocabulary
 * (vocab_size; <= 0: the shard's own); count and vocab are the header's */
static int read_tokens(hid_t f, const char *path, int64_t count, int64_t vocab, int vocab_size,
                       uint16_t **tokens, int64_t *n, dt_error *err) {
  int64_t limit = vocab_size > 0 ? DT_MIN(vocab, (int64_t)vocab_size) : vocab;
  uint16_t *tok = dt_malloc((size_t)count * sizeof *tok);
  if (dt_h5_read_rows(f, "/tokens", H5T_NATIVE_UINT16, 0, count, tok, err) ||
      check_ids(path, tok, count, limit, vocab, err)) {
    free(tok);
    return -1;
  }
  *tokens = tok;
  *n = count;
  return 0;
}

static int load_tokens(hid_t f, const char *path, int vocab_size, uint16_t **tokens, int64_t *n,
                       dt_error *err) {
  int64_t count, vocab;
  int le;
  if (check_header(f, path, &count, &vocab, &le, err)) return -1;
  return read_tokens(f, path, count, vocab, vocab_size, tokens, n, err);
}

int dt_token_shard_load(const char *path, int vocab_size, uint16_t **tokens, int64_t *n,
                        dt_error *err) {
  *tokens = NULL;
  *n = 0;
  hid_t f = dt_h5_open(path, err);
  if (f < 0) return -1;
  int rc = load_tokens(f, path, vocab_size, tokens, n, err);
  dt_h5_close(f);
  return rc;
}

/* Where /tokens lies in the file when it is stored whole (contiguous, not
 * compressed), little-endian and the host too; else -1 */
static int64_t mappable_offset(hid_t f, int le) {
  const uint16_t probe = 1;
  if (!le || *(const uint8_t *)&probe != 1) return -1;
  hid_t d = H5Dopen2(f, "/tokens", H5P_DEFAULT);
  if (d < 0) return -1;
  haddr_t off = H5Dget_offset(d); /* undefined for chunked (compressed) datasets */
  H5Dclose(d);
  return off == HADDR_UNDEF ? -1 : (int64_t)off;
}

int dt_token_shard_map(const char *path, int vocab_size, dt_token_map *map, dt_error *err) {
  memset(map, 0, sizeof *map);
  hid_t f = dt_h5_open(path, err);
  if (f < 0) return -1;
  int64_t count, vocab;
  int le;
  if (check_header(f, path, &count, &vocab, &le, err)) {
    dt_h5_close(f);
    return -1;
  }
  const int64_t off = mappable_offset(f, le);
  /* ids the writer may have put beyond the model's vocabulary, or a shard
   * that cannot be mapped: read it all and check every id now */
  if (off < 0 || (vocab_size > 0 && vocab > vocab_size)) {
    int rc = read_tokens(f, path, count, vocab, vocab_size, (uint16_t **)&map->tokens,
                         &map->count, err);
    dt_h5_close(f);
    map->limit = vocab_size > 0 ? DT_MIN(vocab, (int64_t)vocab_size) : vocab;
    return rc;
  }
  dt_h5_close(f);
  const size_t bytes = (size_t)count * sizeof(uint16_t);
  int fd = open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    if (fd >= 0) close(fd);
    return dt_error_set(err, "%s: cannot open: %s", path, strerror(errno));
  }
  if ((uint64_t)st.st_size < (uint64_t)off + bytes) {
    close(fd);
    return dt_error_set(err, "%s: truncated: /tokens needs bytes up to %llu, the file has %llu",
                        path, (unsigned long long)((uint64_t)off + bytes),
                        (unsigned long long)st.st_size);
  }
  const long page = sysconf(_SC_PAGESIZE);
  const int64_t start = off / page * page;
  void *base = mmap(NULL, bytes + (size_t)(off - start), PROT_READ, MAP_SHARED, fd, start);
  close(fd); /* the mapping keeps the file */
  if (base == MAP_FAILED) return dt_error_set(err, "%s: cannot map: %s", path, strerror(errno));
  map->base = base;
  map->len = bytes + (size_t)(off - start);
  map->tokens = (const uint16_t *)((const char *)base + (off - start));
  map->count = count;
  map->limit = vocab; /* the writer's ids are below it: checked as they are read */
  map->mapped = 1;
  return 0;
}

void dt_token_map_free(dt_token_map *map) {
  if (map->mapped) munmap(map->base, map->len);
  else free((void *)map->tokens);
  memset(map, 0, sizeof *map);
}
