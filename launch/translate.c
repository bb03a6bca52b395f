/* translate.c: `dtrain-translate CKPT [section.key=value ...] < src.txt >
 * out.txt` — translates one sentence per line with a trained Transformer's
 * checkpoint: beam or greedy search, batched, then detokenized. With --ref
 * it also prints corpus BLEU (sacreBLEU's default) and chrF to stderr. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/translate.h"
#include "../runtime/bleu.h"
#include "../runtime/bpe.h"
#include "../runtime/checkpoint.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: dtrain-translate CHECKPOINT [options] [section.key=value ...] < SRC > OUT\n"
          "  CHECKPOINT         a step directory, or a checkpoint directory with LATEST\n"
          "  --tokenizer DIR    the BPE files (default: <data.dir>/tokenizer of the run)\n"
          "  --device D         auto | cpu | cuda (default auto)\n"
          "  --ref FILE         reference translations: print BLEU and chrF to stderr\n"
          "  section.key=value  decode.beam (1 = greedy), decode.len_penalty,\n"
          "                     decode.max_len_a, decode.max_len_b, decode.batch\n"
          "                     (see dtrain --help-config)\n"
          "One sentence per line in, one translation per line out, in order.\n");
}

/* Reads a whole stream into lines (trailing '\n' and '\r' removed). */
static char **read_lines(FILE *f, const char *name, int strip_bom, int *n) {
  size_t cap = 0, len = 0, r;
  char *buf = dt_grow(NULL, &cap, 1 << 16, 1);
  while ((r = fread(buf + len, 1, cap - len, f)) > 0) {
    len += r;
    if (len == cap) buf = dt_grow(buf, &cap, cap + 1, 1);
  }
  if (ferror(f)) dt_die_user("%s: read error", name);
  int nl = 0;
  size_t ncap = 0;
  char **lines = NULL;
  size_t start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && buf[i] != '\n') continue;
    if (i == len && start == len) break; /* no final empty line after the last '\n' */
    size_t e = i;
    if (e > start && buf[e - 1] == '\r') e--;
    /* a source's BOM (some editors write one) goes, as dtrain-prep drops it
     * from the training text; references keep theirs, as sacreBLEU does */
    if (strip_bom && nl == 0 && e - start >= 3 && !memcmp(buf + start, "\xEF\xBB\xBF", 3))
      start += 3;
    /* the BPE would encode bad bytes as bytes, and a NUL would cut the line:
     * name the line instead of translating something else */
    size_t bad = dt_utf8_invalid(buf + start, e - start);
    if (bad < e - start)
      dt_die_user("%s:%d: invalid UTF-8 at byte %zu of the line (0x%02x)", name, nl + 1, bad + 1,
                  (unsigned char)buf[start + bad]);
    if (memchr(buf + start, '\0', e - start))
      dt_die_user("%s:%d: the line holds a NUL byte; expected UTF-8 text", name, nl + 1);
    lines = dt_grow(lines, &ncap, (size_t)nl + 1, sizeof(char *));
    lines[nl] = dt_malloc(e - start + 1);
    memcpy(lines[nl], buf + start, e - start);
    lines[nl++][e - start] = 0;
    start = i + 1;
  }
  free(buf);
  *n = nl;
  return lines;
}

int main(int argc, char **argv) {
  dt_set_program("dtrain-translate");
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    usage(stdout);
    return 0;
  }
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *ckpt = argv[1], *device = "auto", *tokdir = NULL, *ref_path = NULL;
  MPI_Init(&argc, &argv);
  dt_error err;
  char path[4096], tok_default[4096];
  dt_ckpt_meta meta;
  dt_config cfg;
  if (dt_ckpt_open_run(ckpt, path, sizeof path, &meta, &cfg, &err)) dt_die_user("%s", err.msg);
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tokdir = argv[++i];
    else if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
    else if (!strcmp(argv[i], "--ref") && i + 1 < argc) ref_path = argv[++i];
    else if (strchr(argv[i], '=')) {
      if (dt_config_set(&cfg, argv[i], &err)) dt_die_user("%s", err.msg);
    } else dt_die_user("unknown option '%s' (see dtrain-translate --help)", argv[i]);
  }
  if (strcmp(cfg.model_name, "transformer") != 0)
    dt_die_user("%s: model '%s' is not a translation model (model.name = transformer)", path,
                cfg.model_name);
  snprintf(cfg.train_device, sizeof cfg.train_device, "%s", device);
  if (!tokdir) {
    snprintf(tok_default, sizeof tok_default, "%s/tokenizer", cfg.data_dir);
    tokdir = tok_default;
  }
  dt_bpe *bpe = dt_bpe_load(tokdir, &err);
  if (!bpe) dt_die_user("%s (give the tokenizer with --tokenizer DIR)", err.msg);
  if (dt_bpe_vocab_size(bpe) != cfg.model_vocab_size)
    dt_die_user("%s: the tokenizer has %d ids but the model %ld", tokdir, dt_bpe_vocab_size(bpe),
                cfg.model_vocab_size);
  dt_translate_opts o = {.beam = (int)cfg.decode_beam,
                         .alpha = cfg.decode_len_penalty,
                         .len_a = cfg.decode_max_len_a,
                         .len_b = (int)cfg.decode_max_len_b,
                         .max_sent = (int)cfg.decode_batch,
                         .pad = dt_bpe_special(bpe, "<pad>"),
                         .bos = dt_bpe_special(bpe, "<bos>"),
                         .eos = dt_bpe_special(bpe, "<eos>")};
  if (o.pad < 0 || o.bos < 0 || o.eos < 0)
    dt_die_user("%s: the tokenizer has no <pad>, <bos> and <eos> (not made by dtrain-prep "
                "translation?)", tokdir);

  dt_backend_t be = dt_backend_create(cfg.train_device, 0, 0, &err);
  if (!be) dt_die_user("--device %s: %s", device, err.msg);
  /* the decoder runs the encoder in the model's own buffers: sized for one
   * group; and in fp32 whatever precision trained the weights (the backend
   * is fp32, and bf16 activations would need bf16 GEMMs) */
  snprintf(cfg.train_precision, sizeof cfg.train_precision, "fp32");
  char hint[160];
  snprintf(hint, sizeof hint, "the decoder of [decode] batch = %ld sentences at beam %ld: lower "
           "decode.batch", cfg.decode_batch, cfg.decode_beam);
  dt_set_oom_hint(hint);
  dt_model *m = dt_model_create(&cfg, be, (int)cfg.decode_batch, &err);
  if (!m) dt_die_user("%s", err.msg);
  size_t n = m->nparams_total;
  float *host = dt_calloc(n, sizeof(float));
  if (dt_ckpt_read_range(path, &meta, m->params, m->nparams, "params", 0, n, host, &err))
    dt_die_user("%s", err.msg);
  m->p = be->alloc(be, n * sizeof(float));
  be->h2d(be, m->p, host, n * sizeof(float));
  free(host);
  dt_translator *tr = dt_translator_create(m, &o, &err);
  if (!tr) dt_die_user("%s", err.msg);

  int nlines;
  char **lines = read_lines(stdin, "standard input", 1, &nlines);
  /* the references are checked before the translating, not after it */
  char **ref = NULL;
  if (ref_path) {
    FILE *f = fopen(ref_path, "rb");
    if (!f) dt_die_user("--ref %s: cannot open", ref_path);
    int nref;
    ref = read_lines(f, ref_path, 0, &nref);
    fclose(f);
    if (nref != nlines)
      dt_die_user("--ref %s: %d lines, but standard input has %d sentences", ref_path, nref,
                  nlines);
  }
  int32_t **src = dt_calloc((size_t)(nlines + 1), sizeof(int32_t *));
  int *src_len = dt_calloc((size_t)(nlines + 1), sizeof(int));
  for (int i = 0; i < nlines; i++) {
    size_t k = 0;
    dt_bpe_encode(bpe, lines[i], strlen(lines[i]), &src[i], &k);
    src_len[i] = (int)k;
  }
  int32_t **out = dt_calloc((size_t)(nlines + 1), sizeof(int32_t *));
  int *out_len = dt_calloc((size_t)(nlines + 1), sizeof(int));
  int64_t truncated = 0;
  double t0 = dt_now();
  dt_translate(tr, nlines, (const int32_t *const *)src, src_len, out, out_len, NULL,
               &truncated);
  double secs = dt_now() - t0;
  char **hyp = dt_calloc((size_t)(nlines + 1), sizeof(char *));
  int64_t out_tokens = 0;
  for (int i = 0; i < nlines; i++) {
    size_t bytes = 0;
    if (dt_bpe_decode(bpe, out[i], (size_t)out_len[i], &hyp[i], &bytes, &err))
      dt_die_user("%s", err.msg);
    fwrite(hyp[i], 1, bytes, stdout);
    putchar('\n');
    out_tokens += out_len[i];
  }
  fflush(stdout);
  fprintf(stderr, "translated %d sentences in %.2f s (%.0f output tokens/s, beam %d)%s\n",
          nlines, secs, secs > 0 ? out_tokens / secs : 0.0, o.beam,
          truncated ? " — some sources were cut to the model's length" : "");
  if (ref) {
    dt_bleu_stats bs = {0};
    dt_chrf_stats cs = {0};
    for (int i = 0; i < nlines; i++) {
      dt_bleu_add(&bs, hyp[i], ref[i]);
      dt_chrf_add(&cs, hyp[i], ref[i]);
      free(ref[i]);
    }
    free(ref);
    char line[512];
    dt_bleu_format(&bs, line, sizeof line);
    fprintf(stderr, "%s\nchrF2 = %.2f\n", line, dt_chrf_score(&cs));
  }
  for (int i = 0; i < nlines; i++) free(lines[i]), free(src[i]), free(out[i]), free(hyp[i]);
  free(lines), free(src), free(src_len), free(out), free(out_len), free(hyp);
  dt_translator_free(tr);
  be->free(be, m->p);
  m->p = NULL;
  dt_bpe_free(bpe);
  dt_model_destroy(m);
  dt_backend_destroy(be);
  MPI_Finalize();
  return 0;
}
