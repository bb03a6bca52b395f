/* test_bleu.c: runtime/bleu.c against sacreBLEU (tests/fixtures/bleu_sacrebleu.txt,
 * written by tests/oracle/make_bleu_fixture.py): the 13a tokenization of each
 * string, and per set the exact n-gram counts and lengths, BLEU, its precisions
 * and brevity penalty within 0.01, sacreBLEU's printed line, and chrF within 0.01.
 * Usage: test_bleu FIXTURE.txt */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/bleu.h"
#include "check.h"

#define TOL 0.01 /* the bar: |ours - sacreBLEU| <= 0.01 points */

static char *slurp(const char *path) {
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
  return buf;
}

static size_t put_utf8(char *o, unsigned long c) {
  if (c < 0x80) return o[0] = (char)c, 1;
  if (c < 0x800) return o[0] = (char)(0xc0 | c >> 6), o[1] = (char)(0x80 | (c & 0x3f)), 2;
  if (c < 0x10000) {
    o[0] = (char)(0xe0 | c >> 12), o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
    o[2] = (char)(0x80 | (c & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | c >> 18), o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
  o[2] = (char)(0x80 | ((c >> 6) & 0x3f)), o[3] = (char)(0x80 | (c & 0x3f));
  return 4;
}

/* The fixture's escapes (see make_bleu_fixture.py) back to UTF-8; malloc'd. */
static char *unescape(const char *s, size_t n) {
  char *out = malloc(n + 1), *o = out;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '\\' || i + 1 == n) {
      *o++ = s[i];
      continue;
    }
    char e = s[++i];
    int hex = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
    if (hex && i + (size_t)hex < n) {
      char tmp[9] = {0};
      memcpy(tmp, s + i + 1, (size_t)hex);
      o += put_utf8(o, strtoul(tmp, NULL, 16));
      i += (size_t)hex;
    } else {
      *o++ = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
    }
  }
  *o = '\0';
  return out;
}

/* Splits a fixture line at tabs in place; returns the number of fields. */
static int fields(char *line, char **f, int max) {
  int k = 0;
  f[k++] = line;
  for (char *p = line; *p && k < max; p++)
    if (*p == '\t') *p = '\0', f[k++] = p + 1;
  return k;
}

typedef struct set {
  char name[64];
  int nrefs, nseg, cap;
  char **hyp;  /* (nseg) */
  char **refs; /* (nseg, nrefs) */
} set;

static double worst_bleu, worst_chrf;

static void check_bleu(const set *s, char **f, int nf) {
  if (nf != 17) {
    CHECK(0, "%s: bleu line has %d fields, want 17", s->name, nf);
    return;
  }
  dt_bleu_stats st = {0};
  for (int i = 0; i < s->nseg; i++)
    dt_bleu_add_multi(&st, s->hyp[i], (const char *const *)&s->refs[i * s->nrefs], s->nrefs);
  double bp, p[DT_BLEU_ORDER];
  double score = dt_bleu_score(&st, &bp, p);
  double want = atof(f[1]), want_bp = atof(f[2]);
  long long sys_len = atoll(f[3]), ref_len = atoll(f[4]);
  int counts_ok = st.sys_len == sys_len && st.ref_len == ref_len && st.segments == s->nseg;
  double pdiff = fabs(bp - want_bp);
  for (int n = 0; n < DT_BLEU_ORDER; n++) {
    counts_ok &= st.correct[n] == atoll(f[9 + n]) && st.total[n] == atoll(f[13 + n]);
    pdiff = fmax(pdiff, fabs(p[n] - atof(f[5 + n])));
  }
  CHECK(counts_ok,
        "%-16s counts: hyp_len %lld ref_len %lld, matches %lld/%lld/%lld/%lld of "
        "%lld/%lld/%lld/%lld (sacreBLEU: %s %s, %s/%s/%s/%s of %s/%s/%s/%s)",
        s->name, (long long)st.sys_len, (long long)st.ref_len, (long long)st.correct[0],
        (long long)st.correct[1], (long long)st.correct[2], (long long)st.correct[3],
        (long long)st.total[0], (long long)st.total[1], (long long)st.total[2],
        (long long)st.total[3], f[3], f[4], f[9], f[10], f[11], f[12], f[13], f[14], f[15],
        f[16]);
  double d = fabs(score - want);
  if (!(d <= worst_bleu)) worst_bleu = d;
  CHECK(d <= TOL, "%-16s BLEU %.6f vs sacreBLEU %.6f (|diff| %.2g)", s->name, score, want, d);
  CHECK(pdiff <= TOL, "%-16s precisions and BP within %.2g (worst |diff| %.2g)", s->name, TOL,
        pdiff);
}

static void check_line(const set *s, const char *want) {
  dt_bleu_stats st = {0};
  for (int i = 0; i < s->nseg; i++)
    dt_bleu_add_multi(&st, s->hyp[i], (const char *const *)&s->refs[i * s->nrefs], s->nrefs);
  char got[256];
  dt_bleu_format(&st, got, sizeof got);
  CHECK(!strcmp(got, want), "%-16s \"%s\"%s%s", s->name, got, strcmp(got, want) ? " vs " : "",
        strcmp(got, want) ? want : "");
}

static void check_chrf(const set *s, const char *want_s) {
  dt_chrf_stats st = {0};
  for (int i = 0; i < s->nseg; i++)
    dt_chrf_add_multi(&st, s->hyp[i], (const char *const *)&s->refs[i * s->nrefs], s->nrefs);
  double score = dt_chrf_score(&st), want = atof(want_s), d = fabs(score - want);
  if (!(d <= worst_chrf)) worst_chrf = d;
  CHECK(d <= TOL, "%-16s chrF2 %.6f vs sacreBLEU %.6f (|diff| %.2g)", s->name, score, want, d);
}

/* The corpus stats of a set are the sum of any split of it (ranks merge them). */
static void check_sum(const set *s) {
  dt_bleu_stats all = {0}, a = {0}, b = {0};
  dt_chrf_stats call = {0}, ca = {0}, cb = {0};
  for (int i = 0; i < s->nseg; i++) {
    const char *const *r = (const char *const *)&s->refs[i * s->nrefs];
    dt_bleu_add_multi(&all, s->hyp[i], r, s->nrefs);
    dt_bleu_add_multi(i % 3 ? &a : &b, s->hyp[i], r, s->nrefs);
    dt_chrf_add_multi(&call, s->hyp[i], r, s->nrefs);
    dt_chrf_add_multi(i % 3 ? &ca : &cb, s->hyp[i], r, s->nrefs);
  }
  dt_bleu_stats_sum(&a, &b);
  dt_chrf_stats_sum(&ca, &cb);
  CHECK(!memcmp(&a, &all, sizeof a) && !memcmp(&ca, &call, sizeof ca),
        "%-16s stats of two shards sum to the whole", s->name);
}

static void free_set(set *s) {
  for (int i = 0; i < s->nseg; i++) free(s->hyp[i]);
  for (int i = 0; i < s->nseg * s->nrefs; i++) free(s->refs[i]);
  free(s->hyp), free(s->refs);
  memset(s, 0, sizeof *s);
}

/* Bytes that are not UTF-8 pass through the tokenizer untouched. */
static void check_invalid_utf8(void) {
  char *t = dt_bleu_tokenize_13a("a\xff" "b.\xc3 x\xe2\x80");
  CHECK(!strcmp(t, "a\xff" "b . \xc3 x\xe2\x80"), "invalid UTF-8 kept as bytes");
  free(t);
  dt_bleu_stats st = {0};
  dt_bleu_add(&st, "\xff\xfe same", "\xff\xfe same");
  CHECK(dt_bleu_score(&st, NULL, NULL) == 0.0 && st.correct[0] == 2 && st.total[1] == 1,
        "invalid UTF-8 words match themselves");
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s FIXTURE.txt\n", argv[0]);
    return 2;
  }
  char *text = slurp(argv[1]);
  if (!text) {
    printf("FAIL cannot read %s\n", argv[1]);
    return 1;
  }
  int tok_n = 0, tok_bad = 0, sets = 0;
  set s = {0};
  int nref_in_seg = 0;
  for (char *line = text, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = '\0';
    char *f[20];
    if (line[0] == '#' || !line[0]) continue;
    int nf = fields(line, f, 20);
    if (s.nseg > 0 && nref_in_seg != s.nrefs && strcmp(f[0], "ref")) {
      printf("FAIL %s: segment %d has %d references, want %d\n", s.name, s.nseg, nref_in_seg,
             s.nrefs);
      return 1;
    }
    if (!strcmp(f[0], "tok") && nf == 3) {
      char *in = unescape(f[1], strlen(f[1])), *want = unescape(f[2], strlen(f[2]));
      char *got = dt_bleu_tokenize_13a(in);
      tok_n++;
      if (strcmp(got, want)) {
        tok_bad++;
        printf("FAIL 13a \"%s\": got \"%s\", want \"%s\"\n", f[1], got, f[2]);
      }
      free(in), free(want), free(got);
    } else if (!strcmp(f[0], "set") && nf == 3) {
      free_set(&s);
      snprintf(s.name, sizeof s.name, "%s", f[1]);
      s.nrefs = atoi(f[2]);
    } else if (!strcmp(f[0], "hyp") && nf == 2) {
      if (s.nseg == s.cap) {
        s.cap = s.cap ? 2 * s.cap : 64;
        s.hyp = realloc(s.hyp, (size_t)s.cap * sizeof *s.hyp);
        s.refs = realloc(s.refs, (size_t)s.cap * (size_t)s.nrefs * sizeof *s.refs);
      }
      s.hyp[s.nseg++] = unescape(f[1], strlen(f[1]));
      nref_in_seg = 0;
    } else if (!strcmp(f[0], "ref") && nf == 2 && s.nseg > 0 && nref_in_seg < s.nrefs) {
      s.refs[(s.nseg - 1) * s.nrefs + nref_in_seg++] = unescape(f[1], strlen(f[1]));
    } else if (!strcmp(f[0], "bleu")) {
      check_bleu(&s, f, nf);
    } else if (!strcmp(f[0], "line") && nf == 2) {
      char *want = unescape(f[1], strlen(f[1]));
      check_line(&s, want);
      free(want);
    } else if (!strcmp(f[0], "chrf") && nf == 2) {
      check_chrf(&s, f[1]);
    } else if (!strcmp(f[0], "end")) {
      check_sum(&s);
      sets++;
    } else {
      CHECK(0, "unexpected fixture line starting \"%.40s\"", f[0]);
    }
  }
  free_set(&s);
  free(text);
  CHECK(tok_n >= 100 && tok_bad == 0, "13a tokenizer: %d of %d strings as sacreBLEU", tok_n - tok_bad,
        tok_n);
  CHECK(sets >= 10, "fixture holds %d sets", sets);
  check_invalid_utf8();
  printf("worst |diff| vs sacreBLEU: BLEU %.3g, chrF %.3g (tolerance %.2g)\n", worst_bleu,
         worst_chrf, TOL);
  return check_summary();
}
