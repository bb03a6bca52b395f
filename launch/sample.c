/* sample.c: `dtrain-sample CKPT "prompt"` — text from a trained language
 * model's checkpoint: temperature, top-k and top-p sampling
 * (runtime/sampling.h), one process. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/model.h"
#include "../runtime/bpe.h"
#include "../runtime/checkpoint.h"
#include "../runtime/rng.h"
#include "../runtime/sampling.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: dtrain-sample CHECKPOINT PROMPT [options]\n"
          "  CHECKPOINT         a step directory, or a checkpoint directory with LATEST\n"
          "  --tokens N         tokens to generate (default 100)\n"
          "  --temperature T    softmax temperature, > 0 (default 0.8)\n"
          "  --top-k K          sample among the K most likely tokens; 0 = all (default 40)\n"
          "  --top-p P          then among the fewest of those whose probabilities add up\n"
          "                     to P, in (0, 1] (nucleus sampling; default 1 = off)\n"
          "  --seed S           (default 1)\n"
          "  --tokenizer DIR    encoder.json and vocab.bpe (default $DTRAIN_DATA/gpt2-tokenizer,\n"
          "                     else data/gpt2-tokenizer)\n"
          "  --device D         auto | cpu | cuda (default auto)\n");
}

static double num_arg(int argc, char **argv, int *i, const char *name, double lo, double hi) {
  if (*i + 1 >= argc) dt_die_user("%s needs a value", name);
  char *end;
  const char *a = argv[++*i];
  double v = strtod(a, &end);
  if (end == a || *end || !(v >= lo && v <= hi))
    dt_die_user("%s: '%s' is not a number in [%g, %g]", name, a, lo, hi);
  return v;
}

/* The same for a count: a whole number. */
static double whole_arg(int argc, char **argv, int *i, const char *name, double lo, double hi) {
  double v = num_arg(argc, argv, i, name, lo, hi);
  if (v != floor(v)) dt_die_user("%s: '%s' is not a whole number", name, argv[*i]);
  return v;
}

int main(int argc, char **argv) {
  dt_set_program("dtrain-sample");
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    usage(stdout);
    return 0;
  }
  if (argc < 3) {
    usage(stderr);
    return 2;
  }
  const char *ckpt = argv[1], *prompt = argv[2], *device = "auto", *tokdir = NULL;
  int ntok = 100, top_k = 40;
  double temperature = 0.8, top_p = 1.0;
  uint64_t seed = 1;
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "--tokens")) ntok = (int)whole_arg(argc, argv, &i, "--tokens", 0, 1e6);
    else if (!strcmp(argv[i], "--temperature"))
      temperature = num_arg(argc, argv, &i, "--temperature", 1e-6, 100);
    else if (!strcmp(argv[i], "--top-k")) top_k = (int)whole_arg(argc, argv, &i, "--top-k", 0, 1e7);
    else if (!strcmp(argv[i], "--top-p")) top_p = num_arg(argc, argv, &i, "--top-p", 1e-9, 1);
    else if (!strcmp(argv[i], "--seed"))
      seed = (uint64_t)whole_arg(argc, argv, &i, "--seed", 0, 1e18);
    else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tokdir = argv[++i];
    else if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
    else dt_die_user("unknown option '%s' (see dtrain-sample --help)", argv[i]);
  }
  MPI_Init(&argc, &argv);
  dt_error err;
  char path[4096], tok_default[4096];
  dt_ckpt_meta meta;
  dt_config cfg;
  if (dt_ckpt_open_run(ckpt, path, sizeof path, &meta, &cfg, &err)) dt_die_user("%s", err.msg);
  if (strcmp(cfg.model_name, "gpt") != 0)
    dt_die_user("%s: model '%s' is not a language model (dtrain-sample takes GPT checkpoints; "
                "for translation: dtrain-translate)", path, cfg.model_name);
  /* the prompt is encoded as UTF-8 text and echoed; bad bytes would come
   * back as other text */
  size_t bad = dt_utf8_invalid(prompt, strlen(prompt));
  if (bad < strlen(prompt))
    dt_die_user("the prompt is not UTF-8 (byte %zu is 0x%02x)", bad + 1,
                (unsigned char)prompt[bad]);
  snprintf(cfg.train_device, sizeof cfg.train_device, "%s", device);

  dt_backend_t be = dt_backend_create(cfg.train_device, 0, 0, &err);
  if (!be) dt_die_user("--device %s: %s", device, err.msg);
  /* every step reads the last position's logits: keep one sequence's whole;
   * and decode in fp32 whatever precision trained the weights (the backend
   * is fp32, and bf16 activations would need bf16 GEMMs) */
  cfg.train_classifier_chunk = 0;
  snprintf(cfg.train_precision, sizeof cfg.train_precision, "fp32");
  dt_model *m = dt_model_create(&cfg, be, 1, &err);
  if (!m) dt_die_user("%s", err.msg);
  if (m->max_t <= 0) dt_die_user("%s: model '%s' is not a language model", path, meta.model);
  size_t n = m->nparams_total;
  float *host = dt_calloc(n, sizeof(float));
  if (dt_ckpt_read_range(path, &meta, m->params, m->nparams, "params", 0, n, host, &err))
    dt_die_user("%s", err.msg);
  m->p = be->alloc(be, n * sizeof(float));
  be->h2d(be, m->p, host, n * sizeof(float));
  free(host);

  if (!tokdir) {
    const char *d = getenv("DTRAIN_DATA");
    snprintf(tok_default, sizeof tok_default, "%s/gpt2-tokenizer", d ? d : "data");
    tokdir = tok_default;
  }
  dt_bpe *bpe = dt_bpe_load(tokdir, &err);
  if (!bpe) dt_die_user("%s", err.msg);
  /* the tokenizer's ids must be the model's: more would index past the
   * embedding; fewer is a padded vocabulary, and sampling keeps to them */
  int vt = dt_bpe_vocab_size(bpe);
  if (vt > m->num_classes)
    dt_die_user("%s: the tokenizer has %d ids but the model %d (a tokenizer of another model? "
                "--tokenizer DIR)", tokdir, vt, m->num_classes);
  int32_t *ids = NULL;
  size_t nids = 0;
  dt_bpe_encode(bpe, prompt, strlen(prompt), &ids, &nids);
  int32_t *seq = dt_malloc((nids + (size_t)ntok + 1) * sizeof(int32_t));
  memcpy(seq, ids, nids * sizeof(int32_t));
  free(ids);
  if (nids == 0) { /* start from <|endoftext|>, as a document does */
    if (dt_bpe_eot(bpe) < 0)
      dt_die_user("%s: an empty prompt starts from the end-of-text token, which this tokenizer "
                  "lacks", tokdir);
    seq[nids++] = dt_bpe_eot(bpe);
  }

  int T = m->max_t, V = m->num_classes;
  int32_t *d_tok = be->alloc(be, (size_t)T * sizeof(int32_t));
  int32_t *d_y = be->alloc(be, (size_t)T * sizeof(int32_t));
  float *d_loss = be->alloc(be, (size_t)T * sizeof(float));
  float *logits = dt_malloc((size_t)V * sizeof(float));
  const dt_sampler sampler = {temperature, top_k, top_p};
  dt_rng rng;
  dt_rng_seed(&rng, seed, 0x5a3b1eULL);
  fputs(prompt, stdout);
  fflush(stdout);
  for (int k = 0; k < ntok; k++) {
    /* the model sees at most its last train.seq_len tokens */
    size_t start = nids > (size_t)T ? nids - (size_t)T : 0;
    int t = (int)(nids - start);
    be->h2d(be, d_tok, seq + start, (size_t)t * sizeof(int32_t));
    be->h2d(be, d_y, seq + start, (size_t)t * sizeof(int32_t)); /* targets unused */
    dt_batch b = {.n = 1, .t = t, .tokens = d_tok, .y = d_y};
    const float *out = m->forward_backward(m, &b, d_loss, 0.0f);
    be->d2h(be, logits, out + (size_t)(t - 1) * V, (size_t)V * sizeof(float));
    int32_t next = dt_sample_token(logits, vt, &sampler, &rng);
    seq[nids++] = next;
    char *piece = NULL;
    size_t bytes = 0;
    if (dt_bpe_decode(bpe, &next, 1, &piece, &bytes, &err)) dt_die_user("%s", err.msg);
    fwrite(piece, 1, bytes, stdout);
    free(piece);
    fflush(stdout);
  }
  putchar('\n');
  free(seq), free(logits);
  be->free(be, d_tok), be->free(be, d_y), be->free(be, d_loss), be->free(be, m->p);
  m->p = NULL;
  dt_bpe_free(bpe);
  dt_model_destroy(m);
  dt_backend_destroy(be);
  MPI_Finalize();
  return 0;
}
