/* export.c: `dtrain-export CHECKPOINT OUT` — a GPT checkpoint's full tensors
 * (gathered from however many rank files hold them) as one safetensors file
 * in Hugging Face GPT-2 naming, optionally with the config.json that makes it
 * a directory GPT2LMHeadModel.from_pretrained loads. One process, CPU only. */
#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../models/model.h"
#include "../runtime/checkpoint.h"
#include "../runtime/hf_gpt2.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: dtrain-export CHECKPOINT OUT.safetensors\n"
          "       dtrain-export CHECKPOINT --hf-dir OUT_DIR\n"
          "  CHECKPOINT       a step directory, or a checkpoint directory with LATEST\n"
          "  OUT.safetensors  the model's tensors, named as Hugging Face's GPT2LMHeadModel\n"
          "                   saves them (transformer.wte.weight,\n"
          "                   transformer.h.0.attn.c_attn.weight, ...; Conv1D weights\n"
          "                   (in, out); no lm_head.weight, it is tied to wte)\n"
          "  --hf-dir OUT_DIR OUT_DIR/model.safetensors and OUT_DIR/config.json, for\n"
          "                   GPT2LMHeadModel.from_pretrained(OUT_DIR)\n"
          "Only the parameters are exported (no optimizer state). Both the file and\n"
          "the directory are read back by model.init_from. Bad input exits 2.\n");
}

int main(int argc, char **argv) {
  dt_set_program("dtrain-export");
  const char *ckpt = NULL, *out_file = NULL, *out_dir = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(argv[i], "--hf-dir")) {
      if (i + 1 >= argc) dt_die_user("--hf-dir needs a directory (see dtrain-export --help)");
      out_dir = argv[++i];
    } else if (argv[i][0] == '-' && argv[i][1]) {
      dt_die_user("unknown option '%s' (see dtrain-export --help)", argv[i]);
    } else if (!ckpt) {
      ckpt = argv[i];
    } else if (!out_file) {
      out_file = argv[i];
    } else {
      dt_die_user("unexpected argument '%s' (see dtrain-export --help)", argv[i]);
    }
  }
  if (!ckpt || (!out_file) == (!out_dir)) {
    usage(stderr);
    return 2;
  }
  MPI_Init(&argc, &argv);
  dt_error err;
  char path[4096];
  struct stat st;
  /* a step directory, one holding LATEST, or a LATEST or BEST file */
  const char *base = strrchr(ckpt, '/') ? strrchr(ckpt, '/') + 1 : ckpt;
  if (stat(ckpt, &st) != 0 ||
      !(S_ISDIR(st.st_mode) || !strcmp(base, "LATEST") || !strcmp(base, "BEST")))
    dt_die_user("%s: not a directory (a checkpoint step directory, or one holding LATEST) "
                "nor a LATEST or BEST file", ckpt);
  dt_ckpt_meta meta;
  dt_config cfg;
  if (dt_ckpt_open_run(ckpt, path, sizeof path, &meta, &cfg, &err)) dt_die_user("%s", err.msg);
  if (strcmp(meta.model, "gpt") != 0)
    dt_die_user("%s: model '%s' has no Hugging Face GPT-2 naming (only gpt checkpoints export)",
                path, meta.model);
  /* the parameter table is all that is needed: a CPU model with one-token
   * activations keeps a big model's export from allocating a training batch */
  snprintf(cfg.train_device, sizeof cfg.train_device, "cpu");
  cfg.train_seq_len = 1;
  dt_backend_t be = dt_backend_create("cpu", 0, 1, &err);
  if (!be) dt_die_user("cpu backend: %s", err.msg);
  dt_model *m = dt_model_create(&cfg, be, 1, &err);
  if (!m) dt_die_user("%s", err.msg);
  size_t n = m->nparams_total;
  float *host = dt_calloc(n, sizeof(float));
  if (dt_ckpt_read_range(path, &meta, m->params, m->nparams, "params", 0, n, host, &err))
    dt_die_user("%s", err.msg);

  char file[4200];
  if (out_dir) {
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST)
      dt_die_user("--hf-dir %s: cannot create: %s", out_dir, strerror(errno));
    snprintf(file, sizeof file, "%s/model.safetensors", out_dir);
  } else {
    snprintf(file, sizeof file, "%s", out_file);
  }
  if (dt_hf_gpt2_export(file, m->params, m->nparams, host, &err)) dt_die_user("%s", err.msg);
  if (out_dir) {
    char cj[4200];
    snprintf(cj, sizeof cj, "%s/config.json", out_dir);
    if (dt_hf_gpt2_write_config(cj, &cfg, &err)) dt_die_user("%s", err.msg);
  }
  printf("exported %s (step %lld): %d tensors, %zu parameters -> %s%s\n", path,
         (long long)meta.step, m->nparams, n, file, out_dir ? " + config.json" : "");
  free(host);
  dt_model_destroy(m);
  dt_backend_destroy(be);
  MPI_Finalize();
  return 0;
}
