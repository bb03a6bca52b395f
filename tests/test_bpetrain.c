/* test_bpetrain.c: the byte-level BPE trainer and the translation pair shards.
 *
 *   test_bpetrain                       merges on tiny handmade corpora (known order,
 *                                       ties, overlaps, the length cap), save + load
 *                                       through dt_bpe_load, specials, determinism
 *   test_bpetrain roundtrip TOKDIR FILE...
 *                                       decode(encode(line)) == line for every line
 *   test_bpetrain shard FILE.h5 TOKDIR SRC_FILE TGT_FILE
 *                                       the shard's layout and attributes, and every
 *                                       pair decoded equals its lines in the sources
 *
 * Exit 0 when all checks pass, 1 otherwise (each failure printed). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bpe.h"
#include "bpetrain.h"
#include "h5.h"

static int passed, failed;

static void check(int ok, const char *fmt, ...) {
  if (ok) {
    passed++;
    return;
  }
  failed++;
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
}

static int finish(void) {
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

/* The merges learned from text as "A B" lines of raw bytes, '\n'-separated
 * (a space inside a token shows as '_'). */
static char *merges_of(const char *text, int vocab, int *vocab_out) {
  dt_bpe_trainer *t = dt_bpe_trainer_new();
  dt_bpe_trainer_add(t, text, strlen(text));
  int v = dt_bpe_trainer_train(t, vocab, 0);
  if (vocab_out) *vocab_out = v;
  size_t cap = 1 << 16, at = 0;
  char *out = calloc(1, cap);
  for (int i = 0; i < dt_bpe_trainer_merges(t) && at + 300 < cap; i++) {
    int32_t a, b;
    dt_bpe_trainer_merge(t, i, &a, &b, NULL);
    const int32_t side[2] = {a, b};
    for (int k = 0; k < 2; k++) {
      size_t l;
      const char *p = dt_bpe_trainer_token(t, side[k], &l);
      for (size_t j = 0; j < l; j++) out[at++] = p[j] == ' ' ? '_' : p[j];
      out[at++] = k ? '\n' : ' ';
    }
  }
  dt_bpe_trainer_free(t);
  return out;
}

static void expect_merges(const char *name, const char *text, int vocab, const char *want,
                          int want_vocab) {
  int v;
  char *got = merges_of(text, vocab, &v);
  check(!strcmp(got, want), "%s: merges\n--- got\n%s--- want\n%s", name, got, want);
  check(v == want_vocab, "%s: vocabulary %d, want %d", name, v, want_vocab);
  free(got);
}

static void test_merge_order(void) {
  /* Pieces "ab", " ab" x4, " cd" x3, " abcd": a+b (6), then " "+ab (5),
   * c+d (4), " "+cd (3); what is left occurs once. */
  const char *text = "ab ab ab ab ab cd cd cd abcd";
  expect_merges("frequency order", text, 1000, "a b\n_ ab\nc d\n_ cd\n", DT_BPE_BASE_VOCAB + 4);
  expect_merges("vocabulary cap", text, DT_BPE_BASE_VOCAB + 2, "a b\n_ ab\n",
                DT_BPE_BASE_VOCAB + 2);
  /* Pieces "yx", " yx", "\n", "ba", "\n", "ba" (a newline is no " ?" prefix):
   * b+a and y+x both occur twice; the smaller left id (byte 'b') goes first. */
  expect_merges("ties", "yx yx\nba\nba", 1000, "b a\ny x\n", DT_BPE_BASE_VOCAB + 2);
  /* The same with the space: " "+b, b+a, y+x all twice; " " is the smallest. */
  expect_merges("ties with a space", "yx yx ba ba", 1000, "_ b\ny x\n_b a\n",
                DT_BPE_BASE_VOCAB + 3);
  /* "aaaa" and " aaaa": a+a occurs 6 times (overlapping), leaving aa aa twice. */
  expect_merges("overlaps", "aaaa aaaa", 1000, "a a\naa aa\n", DT_BPE_BASE_VOCAB + 2);
  /* Chinese: a run of Han characters (3 bytes each) is one piece, "\xe3\x80\x82"
   * (the full stop) another. Every pair of "zhong guo" occurs twice, so ties
   * decide: the smallest left byte each time (9b, then ad, b8, e4), then the
   * two halves. */
  expect_merges("han", "\xe4\xb8\xad\xe5\x9b\xbd\xe3\x80\x82\xe4\xb8\xad\xe5\x9b\xbd", 1000,
                "\x9b \xbd\n\xad \xe5\n\xb8 \xad\xe5\n\xe4 \xb8\xad\xe5\n"
                "\xe4\xb8\xad\xe5 \x9b\xbd\n",
                DT_BPE_BASE_VOCAB + 5);
  /* With counts apart the order follows them: "zhong" 3 times, "guo" twice. */
  expect_merges("han counts", "\xe4\xb8\xad\xe3\x80\x82\xe4\xb8\xad\xe3\x80\x82\xe4\xb8\xad\xe5\x9b\xbd"
                "\xe3\x80\x82\xe5\x9b\xbd", 1000,
                "\x80 \x82\n\xb8 \xad\n\xe3 \x80\x82\n\xe4 \xb8\xad\n\x9b \xbd\n\xe5 \x9b\xbd\n",
                DT_BPE_BASE_VOCAB + 6);
}

static void test_length_cap(void) {
  char text[2048] = "";
  for (int r = 0; r < 4; r++) {
    strcat(text, r ? " " : "");
    for (int i = 0; i < 150; i++) strcat(text, "x");
  }
  dt_bpe_trainer *t = dt_bpe_trainer_new();
  dt_bpe_trainer_add(t, text, strlen(text));
  int v = dt_bpe_trainer_train(t, 5000, 0);
  size_t longest = 0;
  for (int32_t id = 0; id < v; id++) {
    size_t l;
    dt_bpe_trainer_token(t, id, &l);
    if (id >= DT_BPE_N_SPECIAL && l > longest) longest = l;
  }
  check(longest == DT_BPE_MAX_TOKEN_BYTES, "length cap: longest token %zu bytes, want %d", longest,
        DT_BPE_MAX_TOKEN_BYTES);
  dt_bpe_trainer_free(t);
}

/* A deterministic pseudo-text of words from a small alphabet, with Chinese. */
static char *pseudo_text(size_t words) {
  static const char *const syl[] = {"ka", "to", "ri", "men", "\xe4\xb8\xad", "\xe5\x9b\xbd",
                                    "\xe4\xba\xba", "s", "e", "qu", ",", "."};
  char *out = malloc(words * 12 + 1);
  size_t at = 0;
  uint64_t x = 88172645463325252ull;
  for (size_t w = 0; w < words; w++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int n = 1 + (int)(x % 3);
    if (w) out[at++] = (x >> 8) % 5 ? ' ' : '\n';
    for (int k = 0; k < n; k++) {
      const char *s = syl[(x >> (10 + 4 * k)) % DT_ARRAY_LEN(syl)];
      memcpy(out + at, s, strlen(s));
      at += strlen(s);
    }
  }
  out[at] = '\0';
  return out;
}

/* The trainer against the textbook algorithm: recount every pair of every
 * piece before each merge. Same merges, same counts, same order. */
typedef struct naive_word {
  int32_t sym[256];
  int n;
  int64_t count;
} naive_word;

static void test_against_naive(void) {
  char *text = pseudo_text(3000);
  size_t len = strlen(text);
  static naive_word w[4096];
  int nw = 0;
  for (size_t i = 0; i < len;) { /* distinct pieces with counts */
    size_t j = dt_bpe_piece_end(text, len, i), k;
    int found = -1;
    for (int q = 0; q < nw && found < 0; q++) {
      if (w[q].n != (int)(j - i)) continue;
      for (k = 0; k < j - i && w[q].sym[k] == DT_BPE_FIRST_BYTE + (uint8_t)text[i + k]; k++) {}
      if (k == j - i) found = q;
    }
    if (found < 0 && j - i <= 256 && nw < 4096) {
      found = nw++;
      w[found].n = (int)(j - i);
      w[found].count = 0;
      for (k = 0; k < j - i; k++) w[found].sym[k] = DT_BPE_FIRST_BYTE + (uint8_t)text[i + k];
    }
    if (found >= 0) w[found].count++;
    i = j;
  }
  dt_bpe_trainer *t = dt_bpe_trainer_new();
  dt_bpe_trainer_add(t, text, len);
  int vocab = dt_bpe_trainer_train(t, 2000, 0);
  static int64_t cnt[2048][2048]; /* ids stay below 2048 here */
  int32_t tok_len[2048];
  for (int id = 0; id < 2048; id++) tok_len[id] = id < DT_BPE_BASE_VOCAB ? 1 : 0;
  int next_id = DT_BPE_BASE_VOCAB, m = 0, mismatch = -1;
  for (;; m++) {
    memset(cnt, 0, sizeof cnt);
    for (int q = 0; q < nw; q++)
      for (int i = 0; i + 1 < w[q].n; i++) cnt[w[q].sym[i]][w[q].sym[i + 1]] += w[q].count;
    int ba = -1, bb = -1;
    for (int a = 0; a < next_id; a++)
      for (int b = 0; b < next_id; b++)
        if (cnt[a][b] >= DT_BPE_MIN_PAIR_COUNT && tok_len[a] + tok_len[b] <= DT_BPE_MAX_TOKEN_BYTES &&
            (ba < 0 || cnt[a][b] > cnt[ba][bb]))
          ba = a, bb = b;
    if (ba < 0 || next_id >= 2000 || next_id >= 2048) break;
    if (m >= dt_bpe_trainer_merges(t)) {
      mismatch = m;
      break;
    }
    int32_t ta, tb;
    int64_t tc;
    dt_bpe_trainer_merge(t, m, &ta, &tb, &tc);
    if (ta != ba || tb != bb || tc != cnt[ba][bb]) {
      mismatch = m;
      printf("merge %d: trainer (%d, %d) x%lld, naive (%d, %d) x%lld\n", m, ta, tb, (long long)tc,
             ba, bb, (long long)cnt[ba][bb]);
      break;
    }
    int32_t c = next_id++; /* pseudo_text never makes the same bytes twice here */
    tok_len[c] = tok_len[ba] + tok_len[bb];
    for (int q = 0; q < nw; q++) {
      int k = 0;
      for (int i = 0; i < w[q].n;) {
        if (i + 1 < w[q].n && w[q].sym[i] == ba && w[q].sym[i + 1] == bb) {
          w[q].sym[k++] = c;
          i += 2;
        } else {
          w[q].sym[k++] = w[q].sym[i++];
        }
      }
      w[q].n = k;
    }
  }
  printf("naive recount: %d merges compared\n", m);
  check(mismatch < 0 && m == dt_bpe_trainer_merges(t),
        "trainer = naive recount: %d merges agree, trainer has %d (vocab %d)", m,
        dt_bpe_trainer_merges(t), vocab);
  dt_bpe_trainer_free(t);
  free(text);
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 16, n = 0, r;
  char *buf = malloc(cap + 1);
  while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n == cap) buf = realloc(buf, (cap *= 2) + 1);
  }
  fclose(f);
  buf[n] = '\0';
  *len = n;
  return buf;
}

static void test_save_load(const char *dir) {
  char *text = pseudo_text(20000);
  dt_bpe_trainer *t[2];
  char sub[2][1100];
  for (int r = 0; r < 2; r++) {
    t[r] = dt_bpe_trainer_new();
    dt_bpe_trainer_add(t[r], text, strlen(text));
    dt_bpe_trainer_train(t[r], 400, 0);
    snprintf(sub[r], sizeof sub[r], "%s/tok%d", dir, r);
    mkdir(sub[r], 0777);
    dt_error err;
    check(dt_bpe_trainer_save(t[r], sub[r], &err) == 0, "save: %s", err.msg);
  }
  /* determinism: byte-identical files */
  const char *files[] = {"encoder.json", "vocab.bpe"};
  for (int k = 0; k < 2; k++) {
    char p0[1200], p1[1200];
    size_t n0 = 0, n1 = 0;
    snprintf(p0, sizeof p0, "%s/%s", sub[0], files[k]);
    snprintf(p1, sizeof p1, "%s/%s", sub[1], files[k]);
    char *a = slurp(p0, &n0), *b = slurp(p1, &n1);
    check(a && b && n0 == n1 && !memcmp(a, b, n0), "two trainings give the same %s", files[k]);
    free(a);
    free(b);
  }
  dt_error err;
  dt_bpe *b = dt_bpe_load(sub[0], &err);
  check(b != NULL, "load the trained tokenizer: %s", b ? "" : err.msg);
  if (!b) goto out;
  check(dt_bpe_vocab_size(b) == 400, "loaded vocabulary %d, want 400", dt_bpe_vocab_size(b));
  check(dt_bpe_special(b, "<pad>") == DT_BPE_PAD_ID && dt_bpe_special(b, "<bos>") == DT_BPE_BOS_ID &&
            dt_bpe_special(b, "<eos>") == DT_BPE_EOS_ID && dt_bpe_special(b, "<unk>") == -1,
        "special ids pad %d bos %d eos %d", dt_bpe_special(b, "<pad>"), dt_bpe_special(b, "<bos>"),
        dt_bpe_special(b, "<eos>"));
  check(dt_bpe_eot(b) == DT_BPE_EOS_ID, "eot is eos: %d", dt_bpe_eot(b));
  /* The encoder applies the learned merges: each learned token's own bytes,
   * when the pre-tokenizer keeps them one piece, encode to few ids, and the
   * trainer's first merge is the loader's rank 0. */
  int32_t a0, b0;
  dt_bpe_trainer_merge(t[0], 0, &a0, &b0, NULL);
  size_t la, lb;
  const char *pa = dt_bpe_trainer_token(t[0], a0, &la), *pb = dt_bpe_trainer_token(t[0], b0, &lb);
  char first[256];
  memcpy(first, pa, la);
  memcpy(first + la, pb, lb);
  int32_t *ids;
  size_t n;
  dt_bpe_encode(b, first, la + lb, &ids, &n);
  check(n == 1 && ids[0] == DT_BPE_BASE_VOCAB, "the first merge's bytes encode to id %d (%zu ids)",
        DT_BPE_BASE_VOCAB, n);
  free(ids);
  /* Specials are never produced from text. */
  const char *tricky[] = {"<pad>", "<bos> x <eos>", "\xe4\xb8\xad\xe5\x9b\xbd<eos>", "\xff\xfe bad"};
  for (size_t k = 0; k < DT_ARRAY_LEN(tricky); k++) {
    dt_bpe_encode(b, tricky[k], strlen(tricky[k]), &ids, &n);
    int special = 0;
    for (size_t i = 0; i < n; i++) special |= ids[i] < DT_BPE_N_SPECIAL;
    char *back;
    size_t bytes;
    int rc = dt_bpe_decode(b, ids, n, &back, &bytes, &err);
    check(!special && rc == 0 && bytes == strlen(tricky[k]) && !memcmp(back, tricky[k], bytes),
          "'%s' round-trips without special ids", tricky[k]);
    if (!rc) free(back);
    free(ids);
  }
  /* Round trip of the training text itself. */
  dt_bpe_encode(b, text, strlen(text), &ids, &n);
  char *back;
  size_t bytes;
  check(dt_bpe_decode(b, ids, n, &back, &bytes, &err) == 0 && bytes == strlen(text) &&
            !memcmp(back, text, bytes),
        "the training text round-trips");
  check(n < strlen(text) / 2, "merges shorten the text: %zu ids for %zu bytes", n, strlen(text));
  free(back);
  free(ids);
  dt_bpe_free(b);
  { /* A special that encoder.json lacks is an error naming vocab.bpe's line 1. */
    char path[1200];
    size_t len;
    snprintf(path, sizeof path, "%s/vocab.bpe", sub[1]);
    char *v = slurp(path, &len), *nl = v ? strchr(v, '\n') : NULL;
    FILE *f = nl ? fopen(path, "wb") : NULL;
    if (f) {
      fprintf(f, "#version: 0.2 dtrain-bpe specials=<pad>,<nope>%s", nl);
      fclose(f);
    }
    dt_bpe *bad = dt_bpe_load(sub[1], &err);
    check(!bad && strstr(err.msg, "vocab.bpe:1:") && strstr(err.msg, "<nope>"),
          "an unknown special is refused: %s", bad ? "(loaded)" : err.msg);
    dt_bpe_free(bad);
    free(v);
  }
out:
  dt_bpe_trainer_free(t[0]);
  dt_bpe_trainer_free(t[1]);
  free(text);
}

/* GPT-2's own files still load with no specials (when they are at hand). */
static void test_gpt2_untouched(void) {
  const char *data = getenv("DTRAIN_DATA");
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/gpt2-tokenizer", data && *data ? data : "data");
  dt_error err;
  dt_bpe *b = dt_bpe_load(dir, &err);
  if (!b) {
    printf("note: no GPT-2 tokenizer in %s, its checks skipped\n", dir);
    return;
  }
  check(dt_bpe_special(b, "<pad>") == -1 && dt_bpe_eot(b) == DT_BPE_GPT2_EOT,
        "GPT-2: no specials, eot %d", dt_bpe_eot(b));
  int32_t *ids;
  size_t n;
  dt_bpe_encode(b, "Hello world", 11, &ids, &n);
  check(n == 2 && ids[0] == 15496 && ids[1] == 995, "GPT-2 still encodes 'Hello world' as 15496 995");
  free(ids);
  dt_bpe_free(b);
}

/* ---- files ---- */

typedef struct lines {
  char *data;
  size_t *start, *len;
  int64_t n;
} lines;

/* Lines as dtrain-prep reads them: no '\n', no trailing '\r', no BOM on the first. */
static int read_lines(const char *path, lines *L) {
  size_t n;
  memset(L, 0, sizeof *L);
  L->data = slurp(path, &n);
  if (!L->data) return -1;
  size_t cap = 1024;
  L->start = malloc(cap * sizeof *L->start);
  L->len = malloc(cap * sizeof *L->len);
  for (size_t at = 0; at < n;) {
    char *nl = memchr(L->data + at, '\n', n - at);
    size_t end = nl ? (size_t)(nl - L->data) : n, s = at, e = end;
    if (L->n == 0 && e - s >= 3 && !memcmp(L->data + s, "\xEF\xBB\xBF", 3)) s += 3;
    if (e > s && L->data[e - 1] == '\r') e--;
    if ((size_t)L->n == cap) {
      cap *= 2;
      L->start = realloc(L->start, cap * sizeof *L->start);
      L->len = realloc(L->len, cap * sizeof *L->len);
    }
    L->start[L->n] = s;
    L->len[L->n++] = e - s;
    at = end + 1;
  }
  return 0;
}

static void lines_free(lines *L) {
  free(L->data);
  free(L->start);
  free(L->len);
}

static int cmd_roundtrip(const char *tokdir, char **files, int nfiles) {
  dt_error err;
  dt_bpe *b = dt_bpe_load(tokdir, &err);
  if (!b) {
    printf("FAIL %s\n", err.msg);
    return 1;
  }
  for (int f = 0; f < nfiles; f++) {
    lines L;
    if (read_lines(files[f], &L)) {
      check(0, "%s: cannot read", files[f]);
      continue;
    }
    int64_t bad = 0, tokens = 0;
    for (int64_t i = 0; i < L.n; i++) {
      int32_t *ids;
      size_t n, bytes;
      char *back;
      const char *line = L.data + L.start[i];
      dt_bpe_encode(b, line, L.len[i], &ids, &n);
      int special = 0;
      for (size_t k = 0; k < n; k++) special |= ids[k] < DT_BPE_N_SPECIAL;
      int ok = dt_bpe_decode(b, ids, n, &back, &bytes, &err) == 0 && !special &&
               bytes == L.len[i] && !memcmp(back, line, bytes);
      if (!ok && bad++ < 3) check(0, "%s:%lld: decode(encode(line)) differs", files[f], (long long)i + 1);
      tokens += (int64_t)n;
      free(ids);
      free(back);
    }
    check(bad == 0, "%s: %lld of %lld lines do not round-trip", files[f], (long long)bad,
          (long long)L.n);
    if (!bad)
      printf("ok   %s: %lld lines round-trip (%lld tokens)\n", files[f], (long long)L.n,
             (long long)tokens);
    lines_free(&L);
  }
  dt_bpe_free(b);
  return finish();
}

/* ---- pair shards ---- */

static int64_t attr_i64(hid_t f, const char *name) {
  int64_t v = -1;
  dt_error err;
  if (dt_h5_attr_read_i64(f, "/", name, 1, &v, &err)) check(0, "%s", err.msg);
  return v;
}

static void *read_all(hid_t f, const char *name, hid_t type, size_t elem, int64_t *n) {
  int nd;
  int64_t dims[DT_H5_MAXDIMS];
  dt_error err;
  *n = -1;
  if (dt_h5_dims(f, name, &nd, dims, &err) || nd != 1) {
    check(0, "%s: missing or not 1-D", name);
    return NULL;
  }
  void *p = malloc((size_t)(dims[0] + 1) * elem);
  if (dims[0] > 0 && dt_h5_read(f, name, type, 1, dims, p, &err)) {
    check(0, "%s", err.msg);
    free(p);
    return NULL;
  }
  *n = dims[0];
  return p;
}

static int cmd_shard(const char *path, const char *tokdir, const char *src, const char *tgt) {
  dt_error err;
  hid_t f = dt_h5_open(path, &err);
  dt_bpe *b = dt_bpe_load(tokdir, &err);
  lines L[2];
  if (f < 0 || !b || read_lines(src, &L[0]) || read_lines(tgt, &L[1])) {
    printf("FAIL cannot open the shard, tokenizer or sources: %s\n", err.msg);
    return 1;
  }
  int64_t vocab = attr_i64(f, "vocab_size"), pairs = attr_i64(f, "pairs"),
          lines_attr = attr_i64(f, "lines"), too_long = attr_i64(f, "dropped_too_long"),
          empty = attr_i64(f, "dropped_empty"), max_len = attr_i64(f, "max_len");
  check(vocab == dt_bpe_vocab_size(b), "vocab_size %lld, the tokenizer has %d", (long long)vocab,
        dt_bpe_vocab_size(b));
  check(attr_i64(f, "pad_id") == DT_BPE_PAD_ID && attr_i64(f, "bos_id") == DT_BPE_BOS_ID &&
            attr_i64(f, "eos_id") == DT_BPE_EOS_ID,
        "pad/bos/eos ids");
  check(pairs + too_long + empty == lines_attr, "pairs %lld + dropped %lld + %lld != lines %lld",
        (long long)pairs, (long long)too_long, (long long)empty, (long long)lines_attr);
  int64_t n_kept, n_tok[2], n_off[2];
  int64_t *kept = read_all(f, "/kept_lines", H5T_NATIVE_INT64, 8, &n_kept);
  const char *tok_names[2] = {"/src_tokens", "/tgt_tokens"}, *off_names[2] = {"/src_offsets", "/tgt_offsets"};
  const char *attr_tok[2] = {"src_tokens", "tgt_tokens"};
  uint16_t *tok[2];
  int64_t *off[2];
  for (int k = 0; k < 2; k++) {
    tok[k] = read_all(f, tok_names[k], H5T_NATIVE_UINT16, 2, &n_tok[k]);
    off[k] = read_all(f, off_names[k], H5T_NATIVE_INT64, 8, &n_off[k]);
  }
  int ok = kept && tok[0] && tok[1] && off[0] && off[1];
  check(ok && n_kept == pairs && n_off[0] == pairs + 1 && n_off[1] == pairs + 1,
        "shapes: kept_lines %lld, offsets %lld/%lld for %lld pairs", (long long)n_kept,
        (long long)n_off[0], (long long)n_off[1], (long long)pairs);
  if (!ok || n_kept != pairs || n_off[0] != pairs + 1 || n_off[1] != pairs + 1) goto out;
  for (int k = 0; k < 2; k++) {
    check(attr_i64(f, attr_tok[k]) == n_tok[k], "attribute %s = token count", attr_tok[k]);
    int64_t bad_off = -1, bad_id = -1;
    for (int64_t i = 0; i < pairs && bad_off < 0; i++)
      if (off[k][i + 1] <= off[k][i] || off[k][i + 1] - off[k][i] + 2 > max_len) bad_off = i;
    for (int64_t i = 0; i < n_tok[k] && bad_id < 0; i++)
      if (tok[k][i] < DT_BPE_N_SPECIAL || tok[k][i] >= vocab) bad_id = i;
    check(off[k][0] == 0 && off[k][pairs] == n_tok[k] && bad_off < 0,
          "%s: start 0, end at the token count, every pair 1..max_len-2 tokens (pair %lld)",
          off_names[k], (long long)bad_off);
    check(bad_id < 0, "%s[%lld]: a special or out-of-range id", tok_names[k], (long long)bad_id);
  }
  int64_t bad_order = -1;
  for (int64_t i = 0; i < pairs && bad_order < 0; i++)
    if (kept[i] < (i ? kept[i - 1] + 1 : 0) || kept[i] >= L[0].n || kept[i] >= L[1].n) bad_order = i;
  check(bad_order < 0, "kept_lines increase and stay within the files (pair %lld)",
        (long long)bad_order);
  check(L[0].n == L[1].n && L[0].n >= lines_attr, "the sources have %lld / %lld lines, lines = %lld",
        (long long)L[0].n, (long long)L[1].n, (long long)lines_attr);
  if (bad_order >= 0) goto out;
  int64_t wrong = 0;
  int32_t *ids = malloc((size_t)(max_len + 1) * sizeof *ids);
  for (int64_t i = 0; i < pairs; i++)
    for (int k = 0; k < 2; k++) {
      int64_t n = off[k][i + 1] - off[k][i];
      for (int64_t j = 0; j < n; j++) ids[j] = tok[k][off[k][i] + j];
      char *text;
      size_t bytes;
      const lines *S = &L[k];
      int good = dt_bpe_decode(b, ids, (size_t)n, &text, &bytes, &err) == 0 &&
                 bytes == S->len[kept[i]] && !memcmp(text, S->data + S->start[kept[i]], bytes);
      if (!good && wrong++ < 3)
        check(0, "pair %lld (%s line %lld) decodes to other text", (long long)i, k ? tgt : src,
              (long long)kept[i] + 1);
      if (text) free(text);
    }
  free(ids);
  check(wrong == 0, "%lld sentences differ from their source lines", (long long)wrong);
  if (!wrong) printf("ok   %s: %lld pairs decode to their source lines\n", path, (long long)pairs);
out:
  for (int k = 0; k < 2; k++) {
    free(tok[k]);
    free(off[k]);
    lines_free(&L[k]);
  }
  free(kept);
  dt_h5_close(f);
  dt_bpe_free(b);
  return finish();
}

int main(int argc, char **argv) {
  dt_h5_init();
  if (argc >= 4 && !strcmp(argv[1], "roundtrip")) return cmd_roundtrip(argv[2], argv + 3, argc - 3);
  if (argc == 6 && !strcmp(argv[1], "shard")) return cmd_shard(argv[2], argv[3], argv[4], argv[5]);
  if (argc != 1) {
    fprintf(stderr, "usage: test_bpetrain | roundtrip TOKDIR FILE... | shard FILE.h5 TOKDIR SRC TGT\n");
    return 2;
  }
  const char *tmpdir = getenv("TMPDIR");
  char dirbuf[1024];
  snprintf(dirbuf, sizeof dirbuf, "%s/dtrain-test-bpetrain.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
  if (!mkdtemp(dirbuf)) {
    perror("mkdtemp");
    return 1;
  }
  test_merge_order();
  test_length_cap();
  test_against_naive();
  test_save_load(dirbuf);
  test_gpt2_untouched();
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dirbuf);
  if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", dirbuf);
  return finish();
}
