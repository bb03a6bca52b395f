/* bleu.c: sacreBLEU's default corpus BLEU (13a tokenizer, 'exp' smoothing) and
 * chrF (char order 6, beta 2), written to give the same counts and scores as
 * sacreBLEU 2.x; tests/test_bleu.c holds it to a fixture sacreBLEU wrote.
 *
 * Text is UTF-8 and handled as bytes wherever that gives the same result as
 * sacreBLEU's code points (the 13a rules only look at ASCII); whitespace and
 * chrF's character n-grams decode it, with Python's notion of whitespace. */
#include "bleu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dt.h"

/* ---- a growable byte string ---- */

typedef struct sbuf {
  char *p;
  size_t n, cap;
} sbuf;

static void sb_reserve(sbuf *b, size_t more) {
  if (b->n + more + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->n + more + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  DT_CHECK_ALLOC(p);
  b->p = p;
  b->cap = cap;
  b->p[b->n] = '\0';
}

static void sb_put(sbuf *b, const char *s, size_t n) {
  sb_reserve(b, n);
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static void sb_putc(sbuf *b, char c) { sb_put(b, &c, 1); }

/* ---- UTF-8 and Python's whitespace ---- */

/* Decodes one character at s (n > 0 bytes left) into *cp and returns its length.
 * A byte that starts no valid sequence stands for itself as U+DC80..U+DCFF (as
 * Python's surrogateescape does), so it can never equal a real character. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned c = s[0];
  size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  uint32_t v = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
  if (len == 0 || len > n) goto bad;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) goto bad;
    v = v << 6 | (s[i] & 0x3f);
  }
  static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (v < min_for_len[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) goto bad;
  *cp = v;
  return len;
bad:
  *cp = 0xdc00 + c;
  return 1;
}

/* What Python's str.split() and str.rstrip() take for whitespace. */
static int py_isspace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
         c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Splits s[0..n) at whitespace in place: writes NULs after words and returns
 * the words (malloc'd array, *count of them). */
static char **split_words(char *s, size_t n, int *count) {
  int cap = 16, k = 0;
  char **w = dt_malloc((size_t)cap * sizeof *w);
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    size_t len = utf8_next((const unsigned char *)s + i, n - i, &cp);
    if (py_isspace(cp)) {
      i += len;
      continue;
    }
    if (k == cap) {
      cap *= 2;
      w = realloc(w, (size_t)cap * sizeof *w);
      DT_CHECK_ALLOC(w);
    }
    w[k++] = s + i;
    while (i < n) {
      len = utf8_next((const unsigned char *)s + i, n - i, &cp);
      if (py_isspace(cp)) break;
      i += len;
    }
    if (i < n) {
      /* The NUL overwrites the first byte of the separator; its other bytes (a
       * multi-byte space) are skipped without decoding them again. */
      s[i] = '\0';
      i += len;
    } else {
      s[n] = '\0';
    }
  }
  *count = k;
  return w;
}

/* ---- the 13a tokenizer ---- */

/* Python's str.replace: one left-to-right pass, matches do not overlap. */
static void replace_all(sbuf *b, const char *from, const char *to) {
  size_t nf = strlen(from), nt = strlen(to);
  if (!b->p || !strstr(b->p, from)) return;
  sbuf out = {0};
  sb_reserve(&out, b->n);
  const char *s = b->p, *end = b->p + b->n;
  for (const char *hit; (hit = strstr(s, from)) != NULL; s = hit + nf) {
    sb_put(&out, s, (size_t)(hit - s));
    sb_put(&out, to, nt);
  }
  sb_put(&out, s, (size_t)(end - s));
  free(b->p);
  *b = out;
}

/* TokenizerRegexp's first rule: [\{-\~\[-\` -\&\(-\+\:-\@\/] gets spaces around.
 * Not in it: ' , - . digits letters. */
static int is_split_punct(unsigned char c) {
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
         (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* The three two-character rules, each one re.sub pass: the regex engine tries a
 * match at each position and resumes after a match, so a character consumed as
 * the second of a pair is never the first of the next. Testing bytes instead of
 * characters changes nothing: a continuation byte is never a digit, '.' or ','. */
enum { RULE_BEFORE_PUNCT, RULE_AFTER_PUNCT, RULE_DIGIT_DASH };

static void apply_pair_rule(sbuf *b, int rule) {
  sbuf out = {0};
  sb_reserve(&out, b->n + b->n / 2);
  const unsigned char *s = (const unsigned char *)b->p;
  size_t n = b->n, i = 0;
  while (i < n) {
    if (i + 1 < n) {
      unsigned char a = s[i], c = s[i + 1];
      int pc = c == '.' || c == ',', pa = a == '.' || a == ',';
      char tmp[4] = {0};
      if (rule == RULE_BEFORE_PUNCT && !is_digit(a) && pc) { /* ([^0-9])([\.,]) -> \1 \2 */
        tmp[0] = (char)a, tmp[1] = ' ', tmp[2] = (char)c, tmp[3] = ' ';
      } else if (rule == RULE_AFTER_PUNCT && pa && !is_digit(c)) { /* ([\.,])([^0-9]) -> " \1 \2" */
        tmp[0] = ' ', tmp[1] = (char)a, tmp[2] = ' ', tmp[3] = (char)c;
      } else if (rule == RULE_DIGIT_DASH && is_digit(a) && c == '-') { /* ([0-9])(-) -> \1 \2 */
        tmp[0] = (char)a, tmp[1] = ' ', tmp[2] = '-', tmp[3] = ' ';
      }
      if (tmp[0]) {
        sb_put(&out, tmp, 4);
        i += 2;
        continue;
      }
    }
    sb_putc(&out, (char)s[i]);
    i++;
  }
  free(b->p);
  *b = out;
}

/* The 13a tokenization of line as words (in one malloc'd buffer *store). */
static char **tokenize_13a(const char *line, char **store, int *count) {
  size_t n = strlen(line), keep = 0, i = 0;
  while (i < n) { /* str.rstrip(): keep up to the last non-space character */
    uint32_t cp;
    i += utf8_next((const unsigned char *)line + i, n - i, &cp);
    if (!py_isspace(cp)) keep = i;
  }
  sbuf b = {0};
  sb_put(&b, line, keep);
  replace_all(&b, "<skipped>", "");
  replace_all(&b, "-\n", "");
  replace_all(&b, "\n", " ");
  if (strchr(b.p, '&')) {
    replace_all(&b, "&quot;", "\"");
    replace_all(&b, "&amp;", "&");
    replace_all(&b, "&lt;", "<");
    replace_all(&b, "&gt;", ">");
  }
  sbuf p = {0};
  sb_reserve(&p, b.n * 3 + 2);
  sb_putc(&p, ' ');
  for (size_t k = 0; k < b.n; k++) {
    unsigned char c = (unsigned char)b.p[k];
    if (is_split_punct(c)) {
      char tmp[3] = {' ', (char)c, ' '};
      sb_put(&p, tmp, 3);
    } else {
      sb_putc(&p, (char)c);
    }
  }
  sb_putc(&p, ' ');
  free(b.p);
  apply_pair_rule(&p, RULE_BEFORE_PUNCT);
  apply_pair_rule(&p, RULE_AFTER_PUNCT);
  apply_pair_rule(&p, RULE_DIGIT_DASH);
  *store = p.p;
  return split_words(p.p, p.n, count);
}

char *dt_bleu_tokenize_13a(const char *line) {
  char *store;
  int n;
  char **w = tokenize_13a(line, &store, &n);
  sbuf out = {0};
  sb_reserve(&out, 0);
  for (int i = 0; i < n; i++) {
    if (i) sb_putc(&out, ' ');
    sb_put(&out, w[i], strlen(w[i]));
  }
  free(w);
  free(store);
  return out.p;
}

/* ---- n-gram counting: sorted lists of (start, order) ---- */

typedef struct wgram {
  char *const *w; /* first word */
  int n;          /* order */
} wgram;

static int wgram_cmp(const void *pa, const void *pb) {
  const wgram *a = pa, *b = pb;
  if (a->n != b->n) return a->n < b->n ? -1 : 1;
  for (int i = 0; i < a->n; i++) {
    int c = strcmp(a->w[i], b->w[i]);
    if (c) return c;
  }
  return 0;
}

/* Every n-gram of n = 1..DT_BLEU_ORDER, sorted. */
static wgram *word_ngrams(char *const *w, int nw, size_t *count) {
  size_t k = 0;
  wgram *g = dt_malloc((size_t)(nw > 0 ? nw : 1) * DT_BLEU_ORDER * sizeof *g);
  for (int n = 1; n <= DT_BLEU_ORDER; n++)
    for (int i = 0; i + n <= nw; i++) g[k++] = (wgram){w + i, n};
  qsort(g, k, sizeof *g, wgram_cmp);
  *count = k;
  return g;
}

/* How many times key occurs in the sorted list g[0..n). */
static int64_t wgram_occurrences(const wgram *g, size_t n, const wgram *key) {
  size_t lo = 0, hi = n;
  while (lo < hi) { /* first element >= key */
    size_t mid = lo + (hi - lo) / 2;
    if (wgram_cmp(&g[mid], key) < 0) lo = mid + 1;
    else hi = mid;
  }
  size_t i = lo;
  while (i < n && wgram_cmp(&g[i], key) == 0) i++;
  return (int64_t)(i - lo);
}

void dt_bleu_add_multi(dt_bleu_stats *s, const char *hyp, const char *const *refs, int nrefs) {
  char *hstore, **hw;
  int nh;
  hw = tokenize_13a(hyp, &hstore, &nh);
  size_t ng;
  wgram *hg = word_ngrams(hw, nh, &ng);

  char **rstore = dt_calloc((size_t)(nrefs > 0 ? nrefs : 1), sizeof *rstore);
  char ***rw = dt_calloc((size_t)(nrefs > 0 ? nrefs : 1), sizeof *rw);
  wgram **rg = dt_calloc((size_t)(nrefs > 0 ? nrefs : 1), sizeof *rg);
  size_t *nrg = dt_calloc((size_t)(nrefs > 0 ? nrefs : 1), sizeof *nrg);
  int64_t ref_len = -1;
  for (int r = 0; r < nrefs; r++) {
    int nr;
    rw[r] = tokenize_13a(refs[r], &rstore[r], &nr);
    rg[r] = word_ngrams(rw[r], nr, &nrg[r]);
    /* The closest reference length, the shorter one on a tie. */
    int64_t d = llabs((int64_t)nh - nr), best = llabs((int64_t)nh - ref_len);
    if (ref_len < 0 || d < best || (d == best && nr < ref_len)) ref_len = nr;
  }

  for (size_t i = 0, j; i < ng; i = j) {
    for (j = i + 1; j < ng && wgram_cmp(&hg[i], &hg[j]) == 0; j++) {}
    int64_t h = (int64_t)(j - i), most = 0;
    for (int r = 0; r < nrefs; r++) {
      int64_t c = wgram_occurrences(rg[r], nrg[r], &hg[i]);
      if (c > most) most = c;
    }
    s->total[hg[i].n - 1] += h;
    s->correct[hg[i].n - 1] += h < most ? h : most;
  }
  s->sys_len += nh;
  s->ref_len += ref_len < 0 ? 0 : ref_len;
  s->segments++;

  for (int r = 0; r < nrefs; r++) free(rg[r]), free(rw[r]), free(rstore[r]);
  free(rg), free(rw), free(rstore), free(nrg);
  free(hg), free(hw), free(hstore);
}

void dt_bleu_add(dt_bleu_stats *s, const char *hyp, const char *ref) {
  dt_bleu_add_multi(s, hyp, &ref, 1);
}

void dt_bleu_stats_sum(dt_bleu_stats *dst, const dt_bleu_stats *src) {
  int64_t *d = (int64_t *)dst;
  const int64_t *a = (const int64_t *)src;
  for (size_t i = 0; i < DT_BLEU_STATS_N; i++) d[i] += a[i];
}

/* sacreBLEU's my_log: log 0 is a very negative number, not -inf. */
static double floored_log(double x) { return x == 0.0 ? -9999999999.0 : log(x); }

/* BLEU.compute_bleu with smooth_method='exp', effective_order=False; the
 * arithmetic follows its order so the doubles come out the same. */
double dt_bleu_score(const dt_bleu_stats *s, double *bp_out, double precisions[DT_BLEU_ORDER]) {
  double bp = 1.0, prec[DT_BLEU_ORDER] = {0};
  if (s->sys_len < s->ref_len)
    bp = s->sys_len > 0 ? exp(1.0 - (double)s->ref_len / (double)s->sys_len) : 0.0;
  if (bp_out) *bp_out = bp;
  int any = 0;
  for (int n = 0; n < DT_BLEU_ORDER; n++) any |= s->correct[n] != 0;
  double score = 0.0;
  if (any) { /* else: score 0 and unsmoothed zero precisions, as sacreBLEU */
    double smooth = 1.0;
    for (int n = 0; n < DT_BLEU_ORDER; n++) {
      if (s->total[n] == 0) break; /* this order and the higher ones stay 0 */
      if (s->correct[n] == 0) {
        smooth *= 2;
        prec[n] = 100.0 / (smooth * (double)s->total[n]);
      } else {
        prec[n] = 100.0 * (double)s->correct[n] / (double)s->total[n];
      }
    }
    double sum = 0.0;
    for (int n = 0; n < DT_BLEU_ORDER; n++) sum += floored_log(prec[n]);
    score = bp * exp(sum / DT_BLEU_ORDER);
  }
  if (precisions) memcpy(precisions, prec, sizeof prec);
  return score;
}

int dt_bleu_format(const dt_bleu_stats *s, char *buf, size_t size) {
  double bp, p[DT_BLEU_ORDER];
  double score = dt_bleu_score(s, &bp, p);
  double ratio = s->ref_len ? (double)s->sys_len / (double)s->ref_len : 0.0;
  return snprintf(buf, size,
                  "BLEU = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %lld "
                  "ref_len = %lld)",
                  score, p[0], p[1], p[2], p[3], bp, ratio, (long long)s->sys_len,
                  (long long)s->ref_len);
}

/* ---- chrF ---- */

/* The line's characters with all whitespace removed (''.join(line.split())). */
static uint32_t *chars_no_space(const char *line, size_t *count) {
  size_t n = strlen(line), k = 0;
  uint32_t *c = dt_malloc((n + 1) * sizeof *c);
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    i += utf8_next((const unsigned char *)line + i, n - i, &cp);
    if (!py_isspace(cp)) c[k++] = cp;
  }
  *count = k;
  return c;
}

typedef struct cgram {
  const uint32_t *c; /* first character */
  int n;             /* order */
} cgram;

static int cgram_cmp(const void *pa, const void *pb) {
  const cgram *a = pa, *b = pb;
  if (a->n != b->n) return a->n < b->n ? -1 : 1;
  for (int i = 0; i < a->n; i++)
    if (a->c[i] != b->c[i]) return a->c[i] < b->c[i] ? -1 : 1;
  return 0;
}

/* The order-n character n-grams of c[0..len), sorted. */
static cgram *char_ngrams(const uint32_t *c, size_t len, int n, size_t *count) {
  size_t k = len >= (size_t)n ? len - (size_t)n + 1 : 0;
  cgram *g = dt_malloc((k ? k : 1) * sizeof *g);
  for (size_t i = 0; i < k; i++) g[i] = (cgram){c + i, n};
  qsort(g, k, sizeof *g, cgram_cmp);
  *count = k;
  return g;
}

/* Clipped matches between two sorted lists of n-grams. */
static int64_t clipped_matches(const cgram *h, size_t nh, const cgram *r, size_t nr) {
  int64_t m = 0;
  size_t i = 0, j = 0;
  while (i < nh && j < nr) {
    int c = cgram_cmp(&h[i], &r[j]);
    if (c < 0) i++;
    else if (c > 0) j++;
    else {
      size_t i2 = i + 1, j2 = j + 1;
      while (i2 < nh && cgram_cmp(&h[i], &h[i2]) == 0) i2++;
      while (j2 < nr && cgram_cmp(&r[j], &r[j2]) == 0) j2++;
      m += (int64_t)DT_MIN(i2 - i, j2 - j);
      i = i2, j = j2;
    }
  }
  return m;
}

/* CHRF._compute_f_score without eps smoothing: the F-beta of the precision and
 * recall averaged over the orders both sides have n-grams of. */
static double chrf_f(const int64_t *hyp, const int64_t *ref, const int64_t *match) {
  const double factor = 2 * 2; /* beta squared */
  double avg_prec = 0.0, avg_rec = 0.0;
  int eff = 0;
  for (int i = 0; i < DT_CHRF_ORDER; i++) {
    if (hyp[i] > 0 && ref[i] > 0) {
      avg_prec += (double)match[i] / (double)hyp[i];
      avg_rec += (double)match[i] / (double)ref[i];
      eff++;
    }
  }
  if (eff == 0) return 0.0;
  avg_prec /= eff;
  avg_rec /= eff;
  if (avg_prec + avg_rec == 0.0) return 0.0;
  double score = (1 + factor) * avg_prec * avg_rec;
  score /= factor * avg_prec + avg_rec;
  return 100 * score;
}

void dt_chrf_add_multi(dt_chrf_stats *s, const char *hyp, const char *const *refs, int nrefs) {
  size_t nh;
  uint32_t *hc = chars_no_space(hyp, &nh);
  int64_t best[3][DT_CHRF_ORDER] = {{0}};
  double best_f = -1.0;
  for (int r = 0; r < nrefs; r++) {
    size_t nr;
    uint32_t *rc = chars_no_space(refs[r], &nr);
    int64_t st[3][DT_CHRF_ORDER];
    for (int n = 1; n <= DT_CHRF_ORDER; n++) {
      size_t kh, kr;
      cgram *hg = char_ngrams(hc, nh, n, &kh);
      cgram *rg = char_ngrams(rc, nr, n, &kr);
      /* A reference too short for this order also zeroes the hypothesis count. */
      st[0][n - 1] = kr ? (int64_t)kh : 0;
      st[1][n - 1] = (int64_t)kr;
      st[2][n - 1] = clipped_matches(hg, kh, rg, kr);
      free(hg), free(rg);
    }
    double f = chrf_f(st[0], st[1], st[2]);
    if (f > best_f) best_f = f, memcpy(best, st, sizeof st);
    free(rc);
  }
  for (int n = 0; n < DT_CHRF_ORDER; n++) {
    s->hyp[n] += best[0][n];
    s->ref[n] += best[1][n];
    s->match[n] += best[2][n];
  }
  s->segments++;
  free(hc);
}

void dt_chrf_add(dt_chrf_stats *s, const char *hyp, const char *ref) {
  dt_chrf_add_multi(s, hyp, &ref, 1);
}

void dt_chrf_stats_sum(dt_chrf_stats *dst, const dt_chrf_stats *src) {
  int64_t *d = (int64_t *)dst;
  const int64_t *a = (const int64_t *)src;
  for (size_t i = 0; i < DT_CHRF_STATS_N; i++) d[i] += a[i];
}

double dt_chrf_score(const dt_chrf_stats *s) { return chrf_f(s->hyp, s->ref, s->match); }
