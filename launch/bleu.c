/* bleu.c: `dtrain-bleu REF.txt [REF2.txt ...] < HYP.txt` — corpus BLEU and chrF
 * of detokenized output, as `sacrebleu REF.txt < HYP.txt` computes them by
 * default (runtime/bleu.c), printed in sacreBLEU's short text form. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/bleu.h"
#include "../runtime/dt.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: dtrain-bleu REF.txt [REF2.txt ...] [options] < HYP.txt\n"
          "  One segment per line, UTF-8, detokenized; every file has as many lines as\n"
          "  the hypotheses. Scores as sacreBLEU's defaults: BLEU with the 13a tokenizer,\n"
          "  mixed case, 'exp' smoothing; chrF with character order 6, beta 2.\n"
          "  -i, --input FILE   read the hypotheses from FILE instead of stdin\n"
          "  -b, --score-only   print only the BLEU score\n");
}

typedef struct lines {
  char **s;
  size_t n;
} lines;

/* Every line of f without its '\n' (a '\r' stays, as sacreBLEU keeps it). */
static lines read_lines(FILE *f, const char *name) {
  lines l = {0};
  size_t cap = 0;
  char *buf = NULL;
  size_t bufcap = 0;
  ssize_t len;
  while ((len = getline(&buf, &bufcap, f)) >= 0) {
    if (len > 0 && buf[len - 1] == '\n') buf[--len] = '\0';
    if (memchr(buf, '\0', (size_t)len))
      dt_die_user("%s: line %zu holds a NUL byte; expected UTF-8 text", name, l.n + 1);
    /* sacreBLEU reads its files as strict UTF-8 and stops on a bad byte;
     * scoring it as bytes would give a number sacreBLEU never gives */
    size_t bad = dt_utf8_invalid(buf, (size_t)len);
    if (bad < (size_t)len)
      dt_die_user("%s: line %zu: invalid UTF-8 at byte %zu (0x%02x)", name, l.n + 1, bad + 1,
                  (unsigned char)buf[bad]);
    if (l.n == cap) {
      cap = cap ? 2 * cap : 1024;
      l.s = realloc(l.s, cap * sizeof *l.s);
      DT_CHECK_ALLOC(l.s);
    }
    l.s[l.n++] = dt_strdup(buf);
  }
  if (ferror(f)) dt_die_user("%s: cannot read: %s", name, strerror(errno));
  free(buf);
  return l;
}

int main(int argc, char **argv) {
  dt_set_program("dtrain-bleu");
  const char *input = NULL;
  int score_only = 0, nrefs = 0;
  const char **ref_files = calloc((size_t)argc, sizeof *ref_files);
  DT_CHECK_ALLOC(ref_files);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(argv[i], "-i") || !strcmp(argv[i], "--input")) {
      if (i + 1 >= argc) dt_die_user("%s needs a file", argv[i]);
      input = argv[++i];
    } else if (!strcmp(argv[i], "-b") || !strcmp(argv[i], "--score-only")) {
      score_only = 1;
    } else if (argv[i][0] == '-' && argv[i][1]) {
      usage(stderr);
      dt_die_user("unknown option %s", argv[i]);
    } else {
      ref_files[nrefs++] = argv[i];
    }
  }
  if (nrefs == 0) {
    usage(stderr);
    return DT_EXIT_USER;
  }

  FILE *hf = input ? fopen(input, "rb") : stdin;
  if (!hf) dt_die_user("cannot open %s", input);
  const char *hname = input ? input : "stdin";
  lines hyp = read_lines(hf, hname);
  if (input) fclose(hf);
  lines *refs = calloc((size_t)nrefs, sizeof *refs);
  DT_CHECK_ALLOC(refs);
  for (int r = 0; r < nrefs; r++) {
    FILE *f = fopen(ref_files[r], "rb");
    if (!f) dt_die_user("cannot open %s", ref_files[r]);
    refs[r] = read_lines(f, ref_files[r]);
    fclose(f);
    if (refs[r].n != hyp.n)
      dt_die_user("%s has %zu lines but %s has %zu; every reference needs one line per "
                  "hypothesis", ref_files[r], refs[r].n, hname, hyp.n);
  }

  dt_bleu_stats bleu = {0};
  dt_chrf_stats chrf = {0};
  const char **seg_refs = calloc((size_t)nrefs, sizeof *seg_refs);
  DT_CHECK_ALLOC(seg_refs);
  for (size_t i = 0; i < hyp.n; i++) {
    for (int r = 0; r < nrefs; r++) seg_refs[r] = refs[r].s[i];
    dt_bleu_add_multi(&bleu, hyp.s[i], seg_refs, nrefs);
    if (!score_only) dt_chrf_add_multi(&chrf, hyp.s[i], seg_refs, nrefs);
  }
  if (score_only) {
    printf("%.2f\n", dt_bleu_score(&bleu, NULL, NULL));
  } else {
    char line[256];
    dt_bleu_format(&bleu, line, sizeof line);
    printf("%s\nchrF2 = %.2f\n", line, dt_chrf_score(&chrf));
  }
  return 0;
}
