/* transprep.c: dtrain-prep translation. Reads and checks all six files first,
 * trains the joint BPE on train's two sides, then encodes every split and
 * writes its pair shard; outputs appear by rename(2) only when all is done,
 * so bad input leaves OUT as it was. */
#include "transprep.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bpe.h"
#include "bpetrain.h"
#include "h5.h"

/* ---- SHA-256 (FIPS 180-4), for recording which inputs made a shard ---- */

typedef struct sha256 {
  uint32_t h[8];
  uint8_t buf[64];
  uint64_t bytes;
  size_t nbuf;
} sha256;

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#define ROR(x, n) ((x) >> (n) | (x) << (32 - (n)))

static void sha_block(sha256 *s, const uint8_t *p) {
  uint32_t w[64], v[8];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
           p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  memcpy(v, s->h, sizeof v);
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = v[7] + (ROR(v[4], 6) ^ ROR(v[4], 11) ^ ROR(v[4], 25)) +
                  ((v[4] & v[5]) ^ (~v[4] & v[6])) + sha_k[i] + w[i];
    uint32_t t2 = (ROR(v[0], 2) ^ ROR(v[0], 13) ^ ROR(v[0], 22)) +
                  ((v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]));
    memmove(v + 1, v, 7 * sizeof *v);
    v[4] += t1;
    v[0] = t1 + t2;
  }
  for (int i = 0; i < 8; i++) s->h[i] += v[i];
}

static void sha_init(sha256 *s) {
  static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(s->h, h0, sizeof h0);
  s->bytes = 0;
  s->nbuf = 0;
}

static void sha_update(sha256 *s, const void *data, size_t n) {
  const uint8_t *p = data;
  s->bytes += n;
  while (n) {
    size_t k = DT_MIN(n, 64 - s->nbuf);
    memcpy(s->buf + s->nbuf, p, k);
    s->nbuf += k, p += k, n -= k;
    if (s->nbuf == 64) {
      sha_block(s, s->buf);
      s->nbuf = 0;
    }
  }
}

static void sha_hex(sha256 *s, char out[65]) {
  uint64_t bits = s->bytes * 8;
  uint8_t pad = 0x80, zero = 0, len[8];
  sha_update(s, &pad, 1);
  while (s->nbuf != 56) sha_update(s, &zero, 1);
  for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
  sha_update(s, len, 8);
  for (int i = 0; i < 8; i++) snprintf(out + 8 * i, 9, "%08x", s->h[i]);
}

/* ---- reading and checking the inputs ---- */

typedef struct text_file {
  char path[PATH_MAX];
  char *data;
  size_t bytes;
  size_t *start, *len; /* each line, without '\n', '\r' or BOM */
  int64_t lines;
  char sha[65];
} text_file;

static void text_free(text_file *f) {
  free(f->data);
  free(f->start);
  free(f->len);
  f->data = NULL;
  f->start = f->len = NULL;
}

/* Reads the whole file (for its hash and size) and indexes its first
 * `limit` lines (all when limit <= 0), checking they are UTF-8. */
static int text_read(text_file *f, const char *dir, const char *name, int64_t limit,
                     dt_error *err) {
  memset(f, 0, sizeof *f);
  if (snprintf(f->path, sizeof f->path, "%s/%s", dir, name) >= (int)sizeof f->path)
    return dt_error_set(err, "%s/%s: path too long", dir, name);
  size_t n;
  char *buf = dt_read_file(f->path, &n, err);
  if (!buf) {
    if (errno == ENOENT)
      return dt_error_set(err, "%s: no such file (SRC_DIR must hold train, dev and test files "
                          "for both languages)", f->path);
    return -1;
  }
  f->data = buf;
  f->bytes = n;
  sha256 h;
  sha_init(&h);
  sha_update(&h, buf, n);
  sha_hex(&h, f->sha);
  size_t lcap = 0;
  for (size_t at = 0; at < n && (limit <= 0 || f->lines < limit);) {
    char *nl = memchr(buf + at, '\n', n - at);
    size_t end = nl ? (size_t)(nl - buf) : n, s = at, e = end;
    if (f->lines == 0 && e - s >= 3 && !memcmp(buf + s, "\xEF\xBB\xBF", 3)) s += 3;
    if (e > s && buf[e - 1] == '\r') e--;
    size_t badpos = dt_utf8_invalid(buf + s, e - s);
    if (badpos < e - s)
      return dt_error_set(err, "%s:%lld: invalid UTF-8 at byte %zu of the line (0x%02x)", f->path,
                          (long long)f->lines + 1, badpos + 1 + (s - at),
                          (uint8_t)buf[s + badpos]);
    if ((size_t)f->lines == lcap) {
      lcap = lcap ? 2 * lcap : 4096;
      f->start = realloc(f->start, lcap * sizeof *f->start);
      f->len = realloc(f->len, lcap * sizeof *f->len);
      DT_CHECK_ALLOC(f->start && f->len);
    }
    f->start[f->lines] = s;
    f->len[f->lines++] = e - s;
    at = end + 1;
  }
  if (f->lines == 0) return dt_error_set(err, "%s: empty file (no lines)", f->path);
  return 0;
}

static int is_blank(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\v' && p[i] != '\f') return 0;
  return 1;
}

typedef struct split_in {
  const char *name, *file_base; /* "valid", "dev" */
  text_file side[2];            /* src, tgt */
} split_in;

static int split_read(split_in *sp, const char *dir, const dt_transprep_opts *o, dt_error *err) {
  const char *lang[2] = {o->src, o->tgt};
  for (int k = 0; k < 2; k++) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", sp->file_base, lang[k]);
    if (text_read(&sp->side[k], dir, name, o->limit, err)) return -1;
  }
  text_file *a = &sp->side[0], *b = &sp->side[1];
  if (a->lines != b->lines) {
    text_file *more = a->lines > b->lines ? a : b, *less = more == a ? b : a;
    return dt_error_set(err, "%s:%lld: no line %lld in %s, which has %lld lines (line i of one "
                        "language must translate line i of the other)", more->path,
                        (long long)less->lines + 1, (long long)less->lines + 1, less->path,
                        (long long)less->lines);
  }
  return 0;
}

/* ---- encoding and writing ---- */

typedef struct side_out {
  uint16_t *tok;
  size_t n, cap;
  int64_t *off;
} side_out;

typedef struct progress {
  int on;
  double t0, last;
  int64_t bytes;
} progress;

static void progress_tick(progress *p, const char *what, int64_t pairs, int final) {
  double now = dt_now();
  if (!p->on || (!final && now - p->last < 1.0)) return;
  p->last = now;
  double mb = (double)p->bytes / 1e6;
  fprintf(stderr, "dtrain-prep: encoding %s: %.1f MB, %.2f MB/s, %lld pairs\n", what, mb,
          mb / DT_MAX(now - p->t0, 1e-9), (long long)pairs);
}

/* Encodes one side of one line; 0 when it fits max_len with bos and eos. */
static int encode_line(dt_bpe *b, const text_file *f, int64_t i, int max_len, dt_token_buf *buf) {
  buf->n = 0;
  dt_bpe_encode_append(b, f->data + f->start[i], f->len[i], buf);
  return buf->n + 2 <= (size_t)max_len ? 0 : -1;
}

static void side_append(side_out *s, const dt_token_buf *buf) {
  if (s->n + buf->n > s->cap) {
    while (s->n + buf->n > s->cap) s->cap = s->cap ? 2 * s->cap : 1 << 16;
    s->tok = realloc(s->tok, s->cap * sizeof *s->tok);
    DT_CHECK_ALLOC(s->tok);
  }
  for (size_t i = 0; i < buf->n; i++) s->tok[s->n + i] = (uint16_t)buf->ids[i];
  s->n += buf->n;
}

typedef struct shard_meta {
  const dt_transprep_opts *o;
  const split_in *sp;
  dt_transprep_split *st;
  int vocab;
} shard_meta;

static int write_attrs(hid_t f, const shard_meta *m, dt_error *err) {
  const dt_transprep_split *st = m->st;
  const text_file *s = &m->sp->side[0], *t = &m->sp->side[1];
  struct {
    const char *name;
    int64_t v;
  } ints[] = {{"vocab_size", m->vocab},
              {"pad_id", DT_BPE_PAD_ID},
              {"bos_id", DT_BPE_BOS_ID},
              {"eos_id", DT_BPE_EOS_ID},
              {"pairs", st->pairs},
              {"lines", st->lines},
              {"dropped_too_long", st->dropped_too_long},
              {"dropped_empty", st->dropped_empty},
              {"max_len", m->o->max_len},
              {"src_bytes", (int64_t)s->bytes},
              {"tgt_bytes", (int64_t)t->bytes},
              {"src_tokens", st->src_tokens},
              {"tgt_tokens", st->tgt_tokens}};
  for (size_t i = 0; i < DT_ARRAY_LEN(ints); i++)
    if (dt_h5_attr_write_i64(f, "/", ints[i].name, 1, &ints[i].v, err)) return -1;
  const char *base_s = strrchr(s->path, '/'), *base_t = strrchr(t->path, '/');
  const char *strs[][2] = {{"format", DT_PAIRS_FORMAT},
                           {"split", m->sp->name},
                           {"tokenizer", "dtrain-bpe (tokenizer/encoder.json, vocab.bpe)"},
                           {"src_lang", m->o->src},
                           {"tgt_lang", m->o->tgt},
                           {"src_file", base_s ? base_s + 1 : s->path},
                           {"tgt_file", base_t ? base_t + 1 : t->path},
                           {"src_sha256", s->sha},
                           {"tgt_sha256", t->sha}};
  for (size_t i = 0; i < DT_ARRAY_LEN(strs); i++)
    if (dt_h5_attr_write_str(f, "/", strs[i][0], strs[i][1], err)) return -1;
  return 0;
}

/* Encodes a split and writes its shard at path; fills m->st. */
static int encode_split(dt_bpe *b, const shard_meta *m, const char *path, progress *pg,
                        dt_error *err) {
  const split_in *sp = m->sp;
  dt_transprep_split *st = m->st;
  int64_t n = sp->side[0].lines, first_empty = -1;
  side_out out[2] = {{0}, {0}};
  int64_t *kept = dt_malloc((size_t)n * sizeof *kept);
  for (int k = 0; k < 2; k++) {
    out[k].off = dt_malloc((size_t)(n + 1) * sizeof(int64_t));
    out[k].off[0] = 0;
  }
  dt_token_buf buf[2] = {{0}, {0}};
  st->lines = n;
  pg->t0 = pg->last = dt_now(); /* rates per split */
  pg->bytes = 0;
  for (int64_t i = 0; i < n; i++) {
    const text_file *s = &sp->side[0], *t = &sp->side[1];
    pg->bytes += (int64_t)(s->len[i] + t->len[i]);
    if (is_blank(s->data + s->start[i], s->len[i]) || is_blank(t->data + t->start[i], t->len[i])) {
      if (st->dropped_empty++ == 0) first_empty = i;
      continue;
    }
    int too_long = encode_line(b, s, i, m->o->max_len, &buf[0]);
    too_long |= encode_line(b, t, i, m->o->max_len, &buf[1]);
    if (too_long) {
      st->dropped_too_long++;
      continue;
    }
    for (int k = 0; k < 2; k++) {
      side_append(&out[k], &buf[k]);
      out[k].off[st->pairs + 1] = (int64_t)out[k].n;
    }
    kept[st->pairs++] = i;
    progress_tick(pg, sp->name, st->pairs, 0);
  }
  st->src_tokens = (int64_t)out[0].n;
  st->tgt_tokens = (int64_t)out[1].n;
  if (st->dropped_empty)
    fprintf(stderr, "dtrain-prep: warning: %s: %lld pairs with an empty side dropped (the first: "
            "line %lld of %s / %s)\n", sp->name, (long long)st->dropped_empty,
            (long long)first_empty + 1, sp->side[0].path, sp->side[1].path);
  int rc = 0;
  if (st->pairs == 0)
    rc = dt_error_set(err, "%s / %s: no pair left (%lld empty, %lld longer than --max-len %d)",
                      sp->side[0].path, sp->side[1].path, (long long)st->dropped_empty,
                      (long long)st->dropped_too_long, m->o->max_len);
  hid_t f = rc ? -1 : dt_h5_create(path, err);
  if (f < 0) rc = -1;
  const char *tok_name[2] = {"/src_tokens", "/tgt_tokens"};
  const char *off_name[2] = {"/src_offsets", "/tgt_offsets"};
  for (int k = 0; k < 2 && !rc; k++) {
    int64_t nt = (int64_t)out[k].n, no = st->pairs + 1;
    rc = dt_h5_write(f, tok_name[k], H5T_NATIVE_UINT16, 1, &nt, out[k].tok, 1, err);
    if (!rc) rc = dt_h5_write(f, off_name[k], H5T_NATIVE_INT64, 1, &no, out[k].off, 1, err);
  }
  if (!rc) rc = dt_h5_write(f, "/kept_lines", H5T_NATIVE_INT64, 1, &st->pairs, kept, 1, err);
  if (!rc) rc = write_attrs(f, m, err);
  /* Closing flushes: a full disk shows up here, not earlier. */
  if (f >= 0 && H5Fclose(f) < 0 && !rc)
    rc = dt_error_set(err, "%s: cannot finish writing (disk full?)", path);
  progress_tick(pg, sp->name, st->pairs, 1);
  for (int k = 0; k < 2; k++) {
    free(out[k].tok);
    free(out[k].off);
    dt_token_buf_free(&buf[k]);
  }
  free(kept);
  return rc;
}

/* ---- the command ---- */

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

static int check_opts(const dt_transprep_opts *o, dt_error *err) {
  if (o->vocab_size < DT_BPE_BASE_VOCAB + 1 || o->vocab_size > 65536)
    return dt_error_set(err, "--vocab %d: must be in [%d, 65536] (3 specials, 256 bytes, at least "
                        "one merge; ids are stored as uint16)", o->vocab_size,
                        DT_BPE_BASE_VOCAB + 1);
  if (o->max_len < 3)
    return dt_error_set(err, "--max-len %d: must be at least 3 (bos, eos and one token)",
                        o->max_len);
  const char *lang[2] = {o->src, o->tgt};
  for (int k = 0; k < 2; k++)
    if (!lang[k] || !*lang[k] || strchr(lang[k], '/') || strlen(lang[k]) > 32)
      return dt_error_set(err, "--%s '%s': expected a language suffix such as zh or en",
                          k ? "tgt" : "src", lang[k] ? lang[k] : "");
  if (!strcmp(o->src, o->tgt))
    return dt_error_set(err, "--src and --tgt are both '%s'", o->src);
  return 0;
}

/* Trains on every non-blank line of both train files. */
static dt_bpe_trainer *train_bpe(const split_in *train, const dt_transprep_opts *o,
                                 dt_transprep_report *rep) {
  double t0 = dt_now();
  dt_bpe_trainer *t = dt_bpe_trainer_new();
  for (int k = 0; k < 2; k++) {
    const text_file *f = &train->side[k];
    for (int64_t i = 0; i < f->lines; i++)
      if (!is_blank(f->data + f->start[i], f->len[i]))
        dt_bpe_trainer_add(t, f->data + f->start[i], f->len[i]);
  }
  rep->train_bytes = dt_bpe_trainer_bytes(t);
  rep->pieces = dt_bpe_trainer_pieces(t);
  if (o->progress)
    fprintf(stderr, "dtrain-prep: bpe: %.1f MB of train text, %lld distinct pieces, learning %d "
            "tokens\n", (double)rep->train_bytes / 1e6, (long long)rep->pieces, o->vocab_size);
  rep->vocab = dt_bpe_trainer_train(t, o->vocab_size, o->progress);
  rep->merges = dt_bpe_trainer_merges(t);
  rep->train_secs = dt_now() - t0;
  if (o->progress)
    fprintf(stderr, "dtrain-prep: bpe: %d tokens, %d merges in %.2f s (%.0f merges/s)\n",
            rep->vocab, rep->merges, rep->train_secs,
            rep->merges / DT_MAX(rep->train_secs, 1e-9));
  if (rep->vocab < o->vocab_size)
    fprintf(stderr, "dtrain-prep: warning: no pair of tokens occurs %d times any more: the "
            "vocabulary stops at %d ids (--vocab %d asked for more)\n", DT_BPE_MIN_PAIR_COUNT,
            rep->vocab, o->vocab_size);
  return t;
}

enum { N_SPLITS = 3, N_OUT = 5 }; /* 3 shards, encoder.json, vocab.bpe */

int dt_prep_translation(const char *src_dir, const char *out_dir, const dt_transprep_opts *o,
                        dt_transprep_report *rep, dt_error *err) {
  memset(rep, 0, sizeof *rep);
  if (check_opts(o, err)) return -1;
  struct stat st;
  if (stat(src_dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return dt_error_set(err, "%s: no such directory (expected train, dev and test .%s/.%s files)",
                        src_dir, o->src, o->tgt);
  split_in sp[N_SPLITS] = {{.name = "train", .file_base = "train"},
                           {.name = "valid", .file_base = "dev"},
                           {.name = "test", .file_base = "test"}};
  int rc = 0;
  int out_existed = stat(out_dir, &st) == 0; /* if we make it, a failure removes it */
  for (int i = 0; i < N_SPLITS && !rc; i++) rc = split_read(&sp[i], src_dir, o, err);
  dt_bpe_trainer *trainer = NULL;
  dt_bpe *bpe = NULL;
  char tmp_dir[PATH_MAX], tok_dir[PATH_MAX], tmp[N_OUT][PATH_MAX], final[N_OUT][PATH_MAX];
  int made_tmp_dir = 0, tmp_made[N_OUT] = {0};
  const char *names[N_OUT] = {"train.h5", "valid.h5", "test.h5", "encoder.json", "vocab.bpe"};
  if (!rc) {
    int bad = snprintf(tmp_dir, sizeof tmp_dir, "%s/tokenizer.tmp", out_dir) >= (int)sizeof tmp_dir;
    bad |= snprintf(tok_dir, sizeof tok_dir, "%s/tokenizer", out_dir) >= (int)sizeof tok_dir;
    for (int i = 0; i < N_OUT; i++) {
      const char *dir = i < N_SPLITS ? out_dir : tok_dir;
      bad |= snprintf(final[i], sizeof final[i], "%s/%s", dir, names[i]) >= (int)sizeof final[i];
      if (i < N_SPLITS)
        bad |= snprintf(tmp[i], sizeof tmp[i], "%s.tmp", final[i]) >= (int)sizeof tmp[i];
      else
        bad |= snprintf(tmp[i], sizeof tmp[i], "%s/%s", tmp_dir, names[i]) >= (int)sizeof tmp[i];
    }
    if (bad) rc = dt_error_set(err, "%s: output path too long", out_dir);
  }
  if (!rc) {
    trainer = train_bpe(&sp[0], o, rep);
    rc = mkdir_p(tmp_dir, err);
    made_tmp_dir = !rc;
  }
  if (!rc) {
    tmp_made[3] = tmp_made[4] = 1;
    rc = dt_bpe_trainer_save(trainer, tmp_dir, err);
  }
  /* Encode with what was written: the files are checked as any user's are. */
  if (!rc && !(bpe = dt_bpe_load(tmp_dir, err))) rc = -1;
  double t0 = dt_now();
  progress pg = {.on = o->progress};
  for (int i = 0; i < N_SPLITS && !rc; i++) {
    rep->split[i].name = sp[i].name;
    shard_meta m = {.o = o, .sp = &sp[i], .st = &rep->split[i], .vocab = rep->vocab};
    tmp_made[i] = 1;
    rc = encode_split(bpe, &m, tmp[i], &pg, err);
  }
  rep->encode_secs = dt_now() - t0;
  if (!rc) rc = mkdir_p(tok_dir, err);
  for (int i = 0; i < N_OUT && !rc; i++)
    if (rename(tmp[i], final[i]) != 0)
      rc = dt_error_set(err, "%s: cannot rename to %s: %s", tmp[i], final[i], strerror(errno));
    else
      tmp_made[i] = 0;
  for (int i = 0; i < N_OUT; i++)
    if (tmp_made[i]) unlink(tmp[i]);
  if (made_tmp_dir) rmdir(tmp_dir);
  if (rc && !out_existed) rmdir(out_dir); /* only when still empty */
  dt_bpe_free(bpe);
  dt_bpe_trainer_free(trainer);
  for (int i = 0; i < N_SPLITS; i++) text_free(&sp[i].side[0]), text_free(&sp[i].side[1]);
  return rc;
}
