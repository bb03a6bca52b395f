/* test_bpe.c: the GPT-2 tokenizer against tiktoken's ids
 * (tests/fixtures/gpt2_tokens.json, from tests/oracle/make_tokenizer_fixture.py),
 * round trips on random bytes, and the token shard loader.
 *
 *   test_bpe [FIXTURE]                  the tests (77 without the tokenizer files)
 *   test_bpe --make-shard PATH ID...    write a token shard holding these ids
 *   test_bpe --encode FILE              print FILE's ids, one per line (for oracles)
 *
 * The tokenizer comes from $DTRAIN_DATA/gpt2-tokenizer (else data/gpt2-tokenizer). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bpe.h"
#include "h5.h"
#include "textprep.h"

static int passed, failed;

static void check(int ok, const char *fmt, const char *what) {
  if (ok) {
    passed++;
    return;
  }
  failed++;
  printf("FAIL ");
  printf(fmt, what);
  printf("\n");
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    fclose(f);
    free(buf);
    return NULL;
  }
  fclose(f);
  buf[n] = '\0';
  *len = (size_t)n;
  return buf;
}

/* ---- the shard loader (needs no tokenizer) ---- */

static void test_shards(const char *dir) {
  char good[1024], bad[1024], msg[2048];
  snprintf(good, sizeof good, "%s/good.h5", dir);
  snprintf(bad, sizeof bad, "%s/bad.h5", dir);
  uint16_t ids[6] = {15496, 995, 50256, 31373, 995, 0};
  const uint16_t ids0[6] = {15496, 995, 50256, 31373, 995, 0};
  dt_token_meta m = {.vocab_size = 50257, .eot = 50256, .documents = 2, .tokenizer = "gpt2",
                     .name = "t", .source = "test"};
  dt_error err = {{0}};
  uint16_t *tok = NULL;
  int64_t n = 0;
  check(dt_token_shard_write(good, ids, 6, &m, &err) == 0, "write a shard: %s", err.msg);
  int rc = dt_token_shard_load(good, 50257, &tok, &n, &err);
  check(rc == 0 && n == 6 && !memcmp(tok, ids, sizeof ids), "load it back: %s", err.msg);
  free(tok);
  check(dt_token_shard_is(good), "%s is a token shard", good);

  ids[3] = 50257;
  dt_token_shard_write(bad, ids, 6, &m, &err);
  rc = dt_token_shard_load(bad, 50257, &tok, &n, &err);
  snprintf(msg, sizeof msg, "%s: /tokens[3] = 50257 is not below vocab_size 50257", bad);
  check(rc != 0 && strstr(err.msg, msg) && !tok, "id >= vocab rejected, got: %s", err.msg);

  /* A model with a smaller vocabulary than the shard's ids. */
  rc = dt_token_shard_load(good, 1000, &tok, &n, &err);
  check(rc != 0 && strstr(err.msg, "/tokens[0] = 15496 is not below vocab_size 1000"),
        "ids over the model's vocab rejected, got: %s", err.msg);

  /* mapped: the writer stores /tokens whole, so training maps it; ids are
   * then checked as they are read (launch/train.c), against the writer's
   * vocab_size, which bounds them */
  dt_token_map map;
  rc = dt_token_shard_map(good, 50257, &map, &err);
  snprintf(msg, sizeof msg, "rc %d, mapped %d, count %lld: %s", rc, map.mapped,
           (long long)map.count, err.msg);
  check(rc == 0 && map.mapped && map.count == 6 && map.limit == 50257 &&
            !memcmp(map.tokens, ids0, sizeof ids0),
        "map a shard: %s", msg);
  if (!rc) dt_token_map_free(&map);
  rc = dt_token_shard_map(bad, 50257, &map, &err);
  check(rc == 0 && map.mapped && map.tokens[3] == 50257,
        "a mapped shard's ids are not read at load (the bad one is found when used): %s",
        err.msg);
  if (!rc) dt_token_map_free(&map);
  /* a model with fewer ids than the writer's vocab_size: read and checked whole */
  rc = dt_token_shard_map(good, 1000, &map, &err);
  check(rc != 0 && strstr(err.msg, "/tokens[0] = 15496 is not below vocab_size 1000"),
        "map: ids over the model's vocab rejected at load, got: %s", err.msg);
  /* a compressed shard (as dtrain-prep wrote them before) is read instead */
  enum { NBIG = 100000 };
  uint16_t *big = malloc(NBIG * sizeof *big);
  for (int i = 0; i < NBIG; i++) big[i] = (uint16_t)((i * 7919) % 50257);
  int64_t nbig = NBIG;
  dt_error e2 = {{0}};
  hid_t h = dt_h5_create(bad, &e2);
  int wrc = h < 0 || dt_h5_write(h, "/tokens", H5T_NATIVE_UINT16, 1, &nbig, big, 1, &e2) ||
            dt_h5_attr_write_str(h, "/", "format", DT_TOKENS_FORMAT, &e2) ||
            dt_h5_attr_write_i64(h, "/", "count", 1, &nbig, &e2) ||
            dt_h5_attr_write_i64(h, "/", "vocab_size", 1, &m.vocab_size, &e2);
  if (h >= 0) H5Fclose(h);
  rc = wrc ? -1 : dt_token_shard_map(bad, 50257, &map, &err);
  snprintf(msg, sizeof msg, "rc %d, mapped %d: %.400s%.400s", rc, rc ? -1 : map.mapped,
           e2.msg, err.msg);
  check(rc == 0 && !map.mapped && map.count == NBIG && !memcmp(map.tokens, big, NBIG * 2),
        "a compressed shard is read, not mapped: %s", msg);
  if (!rc) dt_token_map_free(&map);
  /* the file ends before /tokens does */
  rc = dt_token_shard_write(bad, big, NBIG, &m, &err);
  if (!rc) rc = truncate(bad, 4096);
  rc = rc ? -1 : dt_token_shard_map(bad, 50257, &map, &err);
  check(rc != 0 && strstr(err.msg, bad), "a truncated shard is an error naming it, got: %s",
        err.msg);
  free(big);

  FILE *f = fopen(bad, "w");
  if (f) fputs("not hdf5\n", f), fclose(f);
  rc = dt_token_shard_load(bad, 50257, &tok, &n, &err);
  check(rc != 0 && strstr(err.msg, bad), "a text file is rejected by name, got: %s", err.msg);
  check(!dt_token_shard_is(bad), "%s is not a token shard", bad);
  unlink(good);
  unlink(bad);
}

/* ---- the fixture ---- */

static int hexval(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void test_fixture(dt_bpe *b, const char *path) {
  size_t len;
  char *s = slurp(path, &len);
  check(s != NULL, "cannot read %s", path);
  if (!s) return;
  int cases = 0;
  for (char *p = strstr(s, "\"hex\": \""); p; p = strstr(p, "\"hex\": \"")) {
    p += 8;
    char *end = strchr(p, '"');
    size_t nb = (size_t)(end - p) / 2;
    char *text = malloc(nb + 1);
    for (size_t i = 0; i < nb; i++) text[i] = (char)(hexval(p[2 * i]) << 4 | hexval(p[2 * i + 1]));
    int32_t want[4096];
    size_t nw = 0;
    char *q = strstr(end, "\"ids\": [") + 8;
    while (*q != ']') {
      want[nw++] = (int32_t)strtol(q, &q, 10);
      while (*q == ',' || *q == ' ') q++;
    }
    char shown[120];
    snprintf(shown, sizeof shown, "%.*s", (int)DT_MIN(nb, 60), text);
    for (char *c = shown; *c; c++)
      if ((unsigned char)*c < 0x20) *c = ' ';
    int32_t *ids;
    size_t n;
    dt_bpe_encode(b, text, nb, &ids, &n);
    int same = n == nw && !memcmp(ids, want, n * sizeof *ids);
    if (!same) {
      printf("     got :");
      for (size_t i = 0; i < n; i++) printf(" %d", ids[i]);
      printf("\n     want:");
      for (size_t i = 0; i < nw; i++) printf(" %d", want[i]);
      printf("\n");
    }
    check(same, "encode \"%s\"", shown);
    char *back;
    size_t nback;
    dt_error err;
    int rc = dt_bpe_decode(b, want, nw, &back, &nback, &err);
    check(rc == 0 && nback == nb && !memcmp(back, text, nb), "decode back to \"%s\"", shown);
    if (!rc) free(back);
    free(ids);
    free(text);
    cases++;
    p = q;
  }
  printf("fixture: %d strings\n", cases);
  check(cases >= 50, "%s: fewer than 50 cases", path);
  free(s);
}

/* ---- random round trips ---- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

/* the ids of text with every piece merged by the quadratic scan (heap 0)
 * or by the heap (heap 1) */
static int32_t *encode_with(dt_bpe *b, int heap, const char *text, size_t n, size_t *nid) {
  dt_bpe_set_heap_min(b, heap ? 2 : SIZE_MAX);
  int32_t *ids;
  dt_bpe_encode(b, text, n, &ids, nid);
  return ids;
}

/* The heap merge gives the scan's ids: on random text (short pieces), on
 * long runs of letters from a small alphabet (many equal-rank pairs, so the
 * leftmost-first tie rule matters) and of Han characters (one piece each);
 * and a 200,000-character line encodes in about linear time. */
static void test_heap(dt_bpe *b) {
  static const char *letters[] = {"e", "t", "a", "th", "in", "er", "s", "o", "ee", "aaa"};
  char *buf = dt_malloc(1 << 20);
  int bad = 0, cases = 0;
  for (int t = 0; t < 400; t++) {
    size_t n = 0, want = 1 + rnd() % (t < 200 ? 300 : 4000);
    while (n < want) {
      if (t % 4 == 0) { /* Han: 3 bytes each */
        uint32_t cp = 0x4E00 + (uint32_t)(rnd() % 400);
        buf[n++] = (char)(0xE0 | cp >> 12), buf[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
        buf[n++] = (char)(0x80 | (cp & 0x3F));
      } else if (t % 4 == 1) {
        buf[n++] = (char)(rnd() & 0xFF);
      } else {
        const char *l = letters[rnd() % DT_ARRAY_LEN(letters)];
        memcpy(buf + n, l, strlen(l));
        n += strlen(l);
      }
    }
    size_t na, nb;
    int32_t *a = encode_with(b, 0, buf, n, &na), *c = encode_with(b, 1, buf, n, &nb);
    bad += na != nb || memcmp(a, c, na * sizeof *a);
    cases++;
    free(a), free(c);
  }
  char msg[160];
  snprintf(msg, sizeof msg, "heap merge = scan merge on %d texts (%d differ)", cases, bad);
  check(bad == 0, "%s", msg);
  printf("%s %s\n", bad ? "FAIL" : "ok  ", msg);
  dt_bpe_set_heap_min(b, 128); /* the default */
  size_t n = 0;
  while (n + 3 <= 600000) {
    uint32_t cp = 0x4E00 + (uint32_t)(rnd() % 20000);
    buf[n++] = (char)(0xE0 | cp >> 12), buf[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
    buf[n++] = (char)(0x80 | (cp & 0x3F));
  }
  double t0 = dt_now();
  int32_t *ids;
  size_t nid;
  dt_bpe_encode(b, buf, n, &ids, &nid);
  double dt = dt_now() - t0;
  snprintf(msg, sizeof msg, "a 200,000-character line of Han: %zu ids in %.2f s", nid, dt);
  check(nid >= n / 3 && dt < 10.0, "%s", msg);
  printf("%s %s\n", nid >= n / 3 && dt < 10.0 ? "ok  " : "FAIL", msg);
  free(ids), free(buf);
}

static void test_random(dt_bpe *b) {
  static const char *bits[] = {" ", "  ", "\n", "\t", "\r\n", "a", "Z", "the", " of", "'s", "'ll",
                               "7", "42", ".", "!?", "\xC3\xA9", "\xE4\xBD\xA0", "\xF0\x9F\x98\x80",
                               "\xCC\x81", "\xE3\x80\x80", "\xC2\xA0", "\x80", "\xFF", "\xC3",
                               "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xC0\xAF", "\0"};
  int bad_round = 0, bad_cut = 0;
  char buf[1024];
  for (int t = 0; t < 5000; t++) {
    size_t n = 0, want = rnd() % 300;
    while (n < want) {
      if (rnd() % 3 == 0) {
        buf[n++] = (char)(rnd() & 0xFF);
      } else {
        const char *s = bits[rnd() % DT_ARRAY_LEN(bits)];
        size_t l = s[0] ? strlen(s) : 1;
        memcpy(buf + n, s, l);
        n += l;
      }
    }
    int32_t *ids;
    size_t nid;
    dt_bpe_encode(b, buf, n, &ids, &nid);
    char *back;
    size_t nback;
    dt_error err;
    if (dt_bpe_decode(b, ids, nid, &back, &nback, &err) || nback != n || memcmp(back, buf, n))
      bad_round++;
    else
      free(back);
    /* encoding in parts cut by dt_bpe_cut gives the same ids */
    dt_token_buf parts = {0};
    for (size_t at = 0; at < n;) {
      size_t end = dt_bpe_cut(b, buf, n, at + 1 + rnd() % 40);
      if (end > n) end = n;
      dt_bpe_encode_append(b, buf + at, end - at, &parts);
      at = end;
    }
    if (parts.n != nid || (nid && memcmp(parts.ids, ids, nid * sizeof *ids))) bad_cut++;
    dt_token_buf_free(&parts);
    free(ids);
  }
  check(bad_round == 0, "random bytes: %s decode(encode(x)) != x", bad_round ? "some" : "no");
  check(bad_cut == 0, "random bytes: %s encodings in parts differ", bad_cut ? "some" : "no");
}

/* A byte-level tokenizer of our own in dir: the 256 bytes (ids 0..255, in
 * GPT-2's byte-to-character alphabet), then `extra` more tokens, then
 * <|endoftext|>; and the merges, each line "A B" of that alphabet (pure
 * ASCII letters here). */
static void put_cp(FILE *f, int cp) { /* one code point as UTF-8 */
  if (cp < 0x80) fputc(cp, f);
  else if (cp < 0x800) fputc(0xC0 | cp >> 6, f), fputc(0x80 | (cp & 63), f);
  else fputc(0xE0 | cp >> 12, f), fputc(0x80 | (cp >> 6 & 63), f), fputc(0x80 | (cp & 63), f);
}

static void write_tokenizer(const char *dir, int extra, void (*name)(int k, char *buf),
                            const char *merges) {
  char path[4096], tok[4096];
  snprintf(path, sizeof path, "%s/encoder.json", dir);
  FILE *f = fopen(path, "w");
  if (!f) return;
  fputc('{', f);
  for (int b = 0, shifted = 0; b < 256; b++) {
    int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    fputs(b ? ", \"" : "\"", f);
    if (b == '"' || b == '\\') fputc('\\', f);
    put_cp(f, keep ? b : 256 + shifted++);
    fprintf(f, "\": %d", b);
  }
  for (int k = 0; k < extra; k++) {
    name(k, tok);
    fprintf(f, ", \"%s\": %d", tok, 256 + k);
  }
  fprintf(f, ", \"<|endoftext|>\": %d}\n", 256 + extra);
  fclose(f);
  snprintf(path, sizeof path, "%s/vocab.bpe", dir);
  f = fopen(path, "w");
  if (f) fprintf(f, "#version: 0.2\n%s", merges), fclose(f);
}

static void a_run(int k, char *buf) { /* extra token k: "aa", "aaa", ... (k + 2 letters) */
  memset(buf, 'a', (size_t)k + 2);
  buf[k + 2] = '\0';
}

static void test_load_errors(const char *dir) {
  dt_error err;
  char path[4096];
  dt_bpe *b = dt_bpe_load(dir, &err); /* an empty directory */
  check(!b && strstr(err.msg, "encoder.json"), "missing encoder.json named, got: %s", err.msg);
  snprintf(path, sizeof path, "%s/encoder.json", dir);
  FILE *f = fopen(path, "w");
  if (f) fputs("{\"a\": 0, \"b\" 1}", f), fclose(f);
  b = dt_bpe_load(dir, &err);
  check(!b && strstr(err.msg, "malformed JSON at byte 13"), "malformed JSON named, got: %s",
        err.msg);
  /* a directory where encoder.json should be: said so, not "read error" */
  unlink(path);
  mkdir(path, 0700);
  b = dt_bpe_load(dir, &err);
  check(!b && strstr(err.msg, "is a directory"), "encoder.json a directory: %s", err.msg);
  rmdir(path);
  /* text after the object was ignored: now an error */
  write_tokenizer(dir, 1, a_run, "a a\n");
  f = fopen(path, "a");
  if (f) fputs("{\"b\": 1}\n", f), fclose(f);
  b = dt_bpe_load(dir, &err);
  check(!b && strstr(err.msg, "after '}'"), "a second object after encoder.json's: %s", err.msg);
  /* every split of a^2..a^46: 1,035 distinct merges over 302 ids, more
   * than a table sized by the vocabulary holds (its probe never ended) */
  size_t cap = 1 << 16, at = 0;
  char *m = dt_malloc(cap), as[47];
  memset(as, 'a', 46);
  as[46] = '\0';
  for (int k = 2; k <= 46; k++)
    for (int i = 1; i < k; i++)
      at += (size_t)snprintf(m + at, cap - at, "%.*s %.*s\n", i, as, k - i, as);
  write_tokenizer(dir, 45, a_run, m);
  free(m);
  b = dt_bpe_load(dir, &err);
  int32_t *ids = NULL;
  size_t nid = 0;
  if (b) dt_bpe_encode(b, "aaaaaaaaaa", 10, &ids, &nid);
  check(b && nid == 1 && ids[0] == 256 + 8, "1,035 merges over 302 ids load, and a^10 is one "
        "token (%s)", b ? "loaded" : err.msg);
  free(ids);
  dt_bpe_free(b);
  /* a merge naming a special token, which never merges */
  write_tokenizer(dir, 1, a_run, "a a\n");
  snprintf(path, sizeof path, "%s/vocab.bpe", dir);
  f = fopen(path, "w");
  if (f) fputs("#version: 0.2 specials=aa\naa a\n", f), fclose(f);
  b = dt_bpe_load(dir, &err);
  check(!b && strstr(err.msg, "vocab.bpe:2") && strstr(err.msg, "special token"),
        "a merge naming a special token: %s", err.msg);
  unlink(path);
  snprintf(path, sizeof path, "%s/encoder.json", dir);
  unlink(path);
}

static void speed(dt_bpe *b, const char *data) {
  char path[4096];
  size_t len;
  snprintf(path, sizeof path, "%s/tinyshakespeare/input.txt", data);
  char *s = slurp(path, &len);
  if (!s) return;
  double t0 = dt_now();
  int32_t *ids;
  size_t n;
  dt_bpe_encode(b, s, len, &ids, &n);
  double secs = dt_now() - t0;
  printf("speed: tinyshakespeare %.2f MB -> %zu tokens in %.3f s, %.1f MB/s (cold cache)\n",
         (double)len / 1e6, n, secs, (double)len / 1e6 / secs);
  check(n == 338025, "tinyshakespeare: %s tokens, tiktoken says 338025", n == 338025 ? "same" : "other");
  free(ids);
  free(s);
}

/* ---- modes for scripts ---- */

static int make_shard(int argc, char **argv) {
  int64_t n = argc - 3;
  uint16_t *ids = calloc((size_t)DT_MAX(n, 1), sizeof *ids);
  for (int64_t i = 0; i < n; i++) ids[i] = (uint16_t)atoi(argv[3 + i]);
  dt_token_meta m = {.vocab_size = 50257, .eot = 50256, .documents = 1, .tokenizer = "gpt2",
                     .name = "test", .source = "test_bpe --make-shard"};
  dt_error err;
  int rc = dt_token_shard_write(argv[2], ids, n, &m, &err);
  if (rc) fprintf(stderr, "test_bpe: %s\n", err.msg);
  free(ids);
  return rc ? 1 : 0;
}

static int encode_file(dt_bpe *b, const char *path) {
  size_t len;
  char *s = slurp(path, &len);
  if (!s) {
    fprintf(stderr, "test_bpe: cannot read %s\n", path);
    return 1;
  }
  int32_t *ids;
  size_t n;
  dt_bpe_encode(b, s, len, &ids, &n);
  for (size_t i = 0; i < n; i++) printf("%d\n", ids[i]);
  free(ids);
  free(s);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 3 && !strcmp(argv[1], "--make-shard")) return make_shard(argc, argv);
  const char *env = getenv("DTRAIN_DATA");
  const char *data = env && *env ? env : "data";
  char tokdir[4096];
  snprintf(tokdir, sizeof tokdir, "%s/gpt2-tokenizer", data);
  char tmpl[] = "/tmp/dtrain-test-bpe.XXXXXX";
  const char *tmp = mkdtemp(tmpl);
  if (!tmp) return 1;

  test_shards(tmp);
  test_load_errors(tmp);
  dt_error err;
  dt_bpe *b = dt_bpe_load(tokdir, &err);
  if (!b) {
    rmdir(tmp);
    printf("skip tokenizer tests: %s (set DTRAIN_DATA to the directory holding gpt2-tokenizer/)\n",
           err.msg);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 77;
  }
  if (argc >= 3 && !strcmp(argv[1], "--encode")) {
    rmdir(tmp);
    int rc = encode_file(b, argv[2]);
    dt_bpe_free(b);
    return rc;
  }
  check(dt_bpe_vocab_size(b) == 50257 && dt_bpe_eot(b) == 50256, "vocab %s", "50257, eot 50256");
  size_t l;
  const char *t = dt_bpe_token_bytes(b, 50256, &l);
  check(t && l == 13 && !memcmp(t, "<|endoftext|>", 13), "token 50256 is %s", "<|endoftext|>");
  char fixture[4096];
  const char *src = getenv("DTRAIN_SRC");
  snprintf(fixture, sizeof fixture, "%s/tests/fixtures/gpt2_tokens.json", src ? src : ".");
  test_fixture(b, argc >= 2 ? argv[1] : fixture);
  test_random(b);
  test_heap(b);
  speed(b, data);
  dt_bpe_free(b);
  rmdir(tmp);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
