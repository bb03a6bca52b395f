/* test_config.c: the .ini config: defaults, files, overrides, the text round
 * trip, and one message per kind of mistake, naming file, line and key. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

static int g_pass, g_fail;
static char g_dir[512];      /* a fresh temp directory for this run */
static char g_files[128][600];
static int g_nfiles;

static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("%s ", ok ? "ok  " : "FAIL");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  if (ok) g_pass++;
  else g_fail++;
}

/* Writes text (n bytes; -1 = strlen) to a new file in the temp dir. A name
 * ending in .ini keeps its stem; NULL makes one with mkstemps. */
static const char *write_file(const char *name, const char *text, long n) {
  if (g_nfiles == (int)(sizeof g_files / sizeof g_files[0])) {
    fprintf(stderr, "test_config: too many temp files\n");
    exit(1);
  }
  char *path = g_files[g_nfiles++];
  size_t len = n < 0 ? strlen(text) : (size_t)n;
  if (name) {
    snprintf(path, sizeof g_files[0], "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(text, 1, len, f) != len || fclose(f)) {
      perror(path);
      exit(1);
    }
    return path;
  }
  snprintf(path, sizeof g_files[0], "%s/cfg-XXXXXX.ini", g_dir);
  int fd = mkstemps(path, 4);
  if (fd < 0 || write(fd, text, len) != (ssize_t)len || close(fd)) {
    perror(path);
    exit(1);
  }
  return path;
}

/* ---- error cases ---- */

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* Loads text as a file (plus overrides) and expects failure with one message
 * naming the file and line (or "command line: ") and holding every fragment,
 * and cfg left exactly as it was. line = 0: an override error. */
static void expect_error(const char *label, const char *text, int line, int nover, char **over,
                         const char *frag1, const char *frag2) {
  const char *path = write_file(NULL, text, -1);
  dt_config cfg, before;
  memset(&cfg, 0x5a, sizeof cfg);
  memcpy(&before, &cfg, sizeof cfg);
  dt_error err;
  memset(&err, 0, sizeof err);
  int rc = dt_config_load(&cfg, path, nover, over, &err);
  char where[700];
  if (line > 0) snprintf(where, sizeof where, "%s:%d: ", path, line);
  else snprintf(where, sizeof where, "command line: ");
  int ok = rc == -1 && strncmp(err.msg, where, strlen(where)) == 0 && contains(err.msg, frag1) &&
           (!frag2 || contains(err.msg, frag2)) && memcmp(&cfg, &before, sizeof cfg) == 0;
  check(ok, "error: %-34s -> %s", label, rc == -1 ? err.msg : "(no error)");
  if (!ok)
    printf("      wanted rc -1, prefix '%s', '%s'%s%s%s, cfg untouched\n", where, frag1,
           frag2 ? ", '" : "", frag2 ? frag2 : "", frag2 ? "'" : "");
}

static void test_file_errors(void) {
  expect_error("not a number", "[optim]\nlr = abc\n", 2, 0, NULL, "[optim] lr",
               "'abc' is not a number");
  expect_error("unknown key, suggestion", "# hi\n\n[train]\nbatchsize = 3\n", 4, 0, NULL,
               "unknown key [train] batchsize", "(did you mean batch_size?)");
  expect_error("key in the wrong section", "[train]\nlr = 0.1\n", 2, 0, NULL,
               "unknown key [train] lr", "did you mean [optim] lr?");
  expect_error("duplicate key", "[train]\nseed = 1\n\nepochs = 3\nthreads = 2\n[optim]\n[train]\n"
               "epochs = 4\n", 8, 0, NULL, "duplicate key [train] epochs",
               "(first set on line 4)");
  expect_error("unknown section", "[train]\nepochs = 3\n[foo]\nbar = 1\n", 3, 0, NULL,
               "unknown section [foo]", NULL);
  expect_error("unknown section, suggestion", "[optm]\nlr = 1\n", 1, 0, NULL,
               "unknown section [optm]", "(did you mean [optim]?)");
  expect_error("key outside any section", "epochs = 3\n[train]\n", 1, 0, NULL, "'epochs'",
               "outside any section");
  expect_error("line is not key = value", "[train]\nepochs 3\n", 2, 0, NULL,
               "line is not 'key = value'", "'epochs 3'");
  expect_error("no key before =", "[train]\n = 3\n", 2, 0, NULL, "line is not 'key = value'",
               NULL);
  expect_error("header missing ]", "[train\nepochs = 3\n", 1, 0, NULL, "[train",
               "malformed section header");
  expect_error("text after header", "[train] epochs = 3\n", 1, 0, NULL, "[train]",
               "unexpected text after section header");
  expect_error("below the minimum", "[train]\nbatch_size = 0\n", 2, 0, NULL,
               "[train] batch_size = 0 is below the minimum 1", NULL);
  expect_error("negative count", "[data]\ntrain_limit = -5\n", 2, 0, NULL,
               "[data] train_limit = -5 is below the minimum 0", NULL);
  expect_error("above the maximum", "[train]\nbatch_size = 2000000000\n", 2, 0, NULL,
               "[train] batch_size = 2000000000 is above the maximum 1000000000", NULL);
  expect_error("zero stage above 3", "[parallel]\nzero = 4\n", 2, 0, NULL,
               "[parallel] zero = 4 is above the maximum 3", NULL);
  expect_error("exclusive minimum", "[optim]\nlr = 0\n", 2, 0, NULL,
               "[optim] lr = 0 must be greater than 0", NULL);
  expect_error("exclusive maximum", "[optim]\nbeta1 = 1.0\n", 2, 0, NULL,
               "[optim] beta1 = 1.0 must be less than 1", NULL);
  expect_error("float above maximum", "[optim]\nstep_gamma = 1.5\n", 2, 0, NULL,
               "[optim] step_gamma = 1.5 is above the maximum 1", NULL);
  expect_error("enum not a choice", "[optim]\nname = adamx\n", 2, 0, NULL,
               "[optim] name: 'adamx' is not one of sgd|adam|adamw", NULL);
  expect_error("enum is case-sensitive", "[train]\ndevice = CUDA\n", 2, 0, NULL,
               "[train] device: 'CUDA' is not one of auto|cpu|cuda", NULL);
  expect_error("int trailing garbage", "[train]\nepochs = 10x\n", 2, 0, NULL,
               "[train] epochs: '10x' is not an integer", NULL);
  expect_error("int with a fraction", "[train]\nepochs = 1.5\n", 2, 0, NULL,
               "[train] epochs: '1.5' is not an integer", NULL);
  expect_error("int in e-notation", "[train]\nbatch_size = 1e3\n", 2, 0, NULL,
               "[train] batch_size: '1e3' is not an integer", NULL);
  expect_error("int in hex", "[train]\nseed = 0x10\n", 2, 0, NULL,
               "[train] seed: '0x10' is not an integer", NULL);
  expect_error("int empty", "[train]\nepochs =\n", 2, 0, NULL,
               "[train] epochs: '' is not an integer", NULL);
  expect_error("int overflow", "[train]\nseed = 99999999999999999999\n", 2, 0, NULL,
               "[train] seed: '99999999999999999999' is out of range", NULL);
  expect_error("float trailing garbage", "[optim]\nlr = 1e-3x\n", 2, 0, NULL,
               "[optim] lr: '1e-3x' is not a number", NULL);
  expect_error("float empty quoted", "[optim]\nlr = \"\"\n", 2, 0, NULL,
               "[optim] lr: '' is not a number", NULL);
  expect_error("float nan", "[optim]\nweight_decay = nan\n", 2, 0, NULL,
               "[optim] weight_decay: 'nan' is not a finite number", NULL);
  expect_error("float inf", "[optim]\ngrad_clip = inf\n", 2, 0, NULL,
               "[optim] grad_clip: 'inf' is not a finite number", NULL);
  expect_error("float -Infinity", "[optim]\nmin_lr = -Infinity\n", 2, 0, NULL,
               "[optim] min_lr: '-Infinity' is not a finite number", NULL);
  expect_error("float overflow", "[optim]\nlr = 1e999\n", 2, 0, NULL,
               "[optim] lr: '1e999' is out of range", NULL);
  expect_error("bool not a bool", "[log]\ntensorboard = maybe\n", 2, 0, NULL,
               "[log] tensorboard: 'maybe' is not a boolean", NULL);
  char long_line[600];
  snprintf(long_line, sizeof long_line, "[data]\ndir = %0300d\n", 0);
  expect_error("string too long", long_line, 2, 0, NULL,
               "[data] dir: value is 300 characters long, the limit is 255", NULL);
  expect_error("unterminated quote", "[log]\ndir = \"runs/a\n", 2, 0, NULL,
               "[log] dir: unterminated quote", NULL);
  expect_error("text after the quote", "[log]\ndir = \"runs/a\" b\n", 2, 0, NULL,
               "[log] dir: unexpected text after the closing quote", NULL);
  expect_error("empty where not allowed", "[checkpoint]\nresume = \"\"\n", 2, 0, NULL,
               "[checkpoint] resume: must not be empty", NULL);
  expect_error("control character", "[data]\ndir = a\tb\n", 2, 0, NULL,
               "[data] dir: value contains a control character", NULL);
}

static void test_override_errors(void) {
  const char *file = "[train]\nepochs = 3\n";
  char *o1[] = {"epochs=3"};
  expect_error("override without section", file, 0, 1, o1, "'epochs=3'",
               "is not section.key=value");
  char *o2[] = {"train.epochs"};
  expect_error("override without =", file, 0, 1, o2, "'train.epochs'",
               "is not section.key=value");
  char *o3[] = {"trian.epochs=3"};
  expect_error("override unknown section", file, 0, 1, o3, "unknown section [trian]",
               "(did you mean [train]?)");
  char *o4[] = {"train.epoch=3"};
  expect_error("override unknown key", file, 0, 1, o4, "unknown key [train] epoch",
               "(did you mean epochs?)");
  char *o5[] = {"optim.lr=abc"};
  expect_error("override not a number", file, 0, 1, o5, "[optim] lr: 'abc' is not a number",
               NULL);
  char *o6[] = {"train.epochs=4", "optim.lr=0.1", "train.epochs=5"};
  expect_error("override given twice", file, 0, 3, o6, "duplicate key [train] epochs",
               "'train.epochs=4', then 'train.epochs=5'");
  char *o7[] = {"train.batch_size=0"};
  expect_error("override below minimum", file, 0, 1, o7,
               "[train] batch_size = 0 is below the minimum 1", NULL);
  char *o8[] = {"parallel.comm=gloo"};
  expect_error("override enum", file, 0, 1, o8,
               "[parallel] comm: 'gloo' is not one of auto|nccl|mpi", NULL);
  char *o8b[] = {"parallel.pp_split=layers"};
  expect_error("override enum (pp_split)", file, 0, 1, o8b,
               "[parallel] pp_split: 'layers' is not one of flops|even", NULL);
  char *o9[] = {"log.tensorboard=2"};
  expect_error("override bool", file, 0, 1, o9, "[log] tensorboard: '2' is not a boolean", NULL);
  /* an error in the file wins over the overrides, and names the file */
  char *o10[] = {"train.epochs=4"};
  expect_error("file error with overrides", "[train]\nepochs = x\n", 2, 1, o10,
               "[train] epochs: 'x' is not an integer", NULL);
}

static void test_file_level_errors(void) {
  dt_config cfg;
  dt_error err;
  char path[700];
  snprintf(path, sizeof path, "%s/no-such.ini", g_dir);
  int rc = dt_config_load(&cfg, path, 0, NULL, &err);
  char want[800];
  snprintf(want, sizeof want, "%s: cannot open config: No such file or directory", path);
  check(rc == -1 && strcmp(err.msg, want) == 0, "error: %-34s -> %s", "missing file",
        rc ? err.msg : "(no error)");

  rc = dt_config_load(&cfg, g_dir, 0, NULL, &err);
  check(rc == -1 && contains(err.msg, g_dir) && contains(err.msg, "cannot read config"),
        "error: %-34s -> %s", "directory as config", rc ? err.msg : "(no error)");

  const char *bin = write_file("binary.ini", "[train]\nepochs\0 = 3\n", 20);
  rc = dt_config_load(&cfg, bin, 0, NULL, &err);
  check(rc == -1 && contains(err.msg, bin) && contains(err.msg, "NUL byte"),
        "error: %-34s -> %s", "NUL byte in file", rc ? err.msg : "(no error)");

  rc = dt_config_parse_text(&cfg, "[train]\n\nbatch_size = -1\n", "checkpoint meta", &err);
  check(rc == -1 && strcmp(err.msg,
                           "checkpoint meta:3: [train] batch_size = -1 is below the minimum 1") == 0,
        "error: %-34s -> %s", "parse_text names its source", rc ? err.msg : "(no error)");

  dt_config_defaults(&cfg);
  rc = dt_config_set(&cfg, "optim.lr=-1", &err);
  check(rc == -1 && strcmp(err.msg, "command line: [optim] lr = -1 must be greater than 0") == 0 &&
            cfg.optim_lr == 1e-3,
        "error: %-34s -> %s", "dt_config_set leaves cfg alone", rc ? err.msg : "(no error)");
}

/* ---- good cases ---- */

#define CHECK_L(f, v) check(cfg.f == (v), "%s: " #f " = %ld (want %ld)", label, (long)cfg.f, (long)(v))
#define CHECK_D(f, v) check(cfg.f == (v), "%s: " #f " = %.17g (want %.17g)", label, cfg.f, (double)(v))
#define CHECK_S(f, v) check(strcmp(cfg.f, v) == 0, "%s: " #f " = '%s' (want '%s')", label, cfg.f, v)

static void test_defaults(void) {
  const char *label = "defaults";
  dt_config cfg;
  memset(&cfg, 0x5a, sizeof cfg);
  dt_config_defaults(&cfg);
  CHECK_S(model_name, "lenet5");
  CHECK_S(model_activation, "relu");
  CHECK_S(model_pool, "max");
  CHECK_L(model_n_layer, 12);
  CHECK_L(model_n_head, 12);
  CHECK_L(model_n_embd, 768);
  CHECK_L(model_vocab_size, 50257);
  CHECK_L(model_block_size, 1024);
  CHECK_D(model_dropout, 0);
  CHECK_S(data_dir, "data/mnist-h5");
  CHECK_L(data_train_limit, 0);
  CHECK_L(data_test_limit, 0);
  CHECK_S(train_device, "auto");
  CHECK_S(train_precision, "fp32");
  CHECK_L(train_batch_size, 64);
  CHECK_L(train_micro_batch_size, 0);
  CHECK_L(train_epochs, 10);
  CHECK_L(train_max_steps, 0);
  CHECK_L(train_seed, 1234);
  CHECK_L(train_threads, 0);
  CHECK_L(train_eval_batch_size, 1000);
  CHECK_L(train_seq_len, 0);
  CHECK_S(train_recompute, "none");
  CHECK_S(optim_name, "adam");
  CHECK_D(optim_lr, 1e-3);
  CHECK_D(optim_min_lr, 0);
  CHECK_S(optim_schedule, "cosine");
  CHECK_L(optim_warmup_steps, 0);
  CHECK_D(optim_step_gamma, 0.1);
  CHECK_L(optim_step_size, 1);
  CHECK_D(optim_momentum, 0.9);
  CHECK_L(optim_nesterov, 0);
  CHECK_D(optim_beta1, 0.9);
  CHECK_D(optim_beta2, 0.999);
  CHECK_D(optim_eps, 1e-8);
  CHECK_D(optim_weight_decay, 0);
  CHECK_D(optim_grad_clip, 0);
  CHECK_S(optim_offload, "none");
  CHECK_L(parallel_dp, 0);
  CHECK_L(parallel_tp, 1);
  CHECK_L(parallel_pp, 1);
  CHECK_S(parallel_pp_split, "flops");
  CHECK_S(parallel_pp_schedule, "1f1b");
  CHECK_L(parallel_sequence_parallel, 0);
  CHECK_L(parallel_zero, 0);
  CHECK_S(parallel_comm, "auto");
  CHECK_D(parallel_bucket_mb, 25);
  CHECK_S(checkpoint_dir, "");
  CHECK_L(checkpoint_every, 0);
  CHECK_L(checkpoint_keep, 3);
  CHECK_S(checkpoint_resume, "auto");
  CHECK_S(log_dir, "");
  CHECK_L(log_every, 50);
  CHECK_L(log_tensorboard, 1);
  CHECK_S(path, "");
  CHECK_S(name, "");
}

/* Every key set to something other than its default, in every spelling the
 * format allows: comments, quotes, odd spacing, CRLF, a BOM, a section twice. */
static const char *k_every_key =
    "\xEF\xBB\xBF# every key, all but model.name (one choice) off its default\r\n"
    "; a semicolon comment\n"
    "[model]\n"
    "name = lenet5   # a family\n"
    "activation=gelu_tanh\n"
    "  pool   =   avg  ; trailing comment\n"
    "n_layer = 2\n"
    "n_head = 4\n"
    "n_embd = 32\n"
    "vocab_size = 97\n"
    "block_size = 16\n"
    "dropout = 0.1\n"
    "\n"
    "[ data ]  # spaces inside the brackets\n"
    "dir = \"my data/mnist #1\"\n"
    "train_limit = +5000\n"
    "test_limit = 100\n"
    "[train]\r\n"
    "device = cuda\r\n"
    "precision = bf16\n"
    "batch_size = 128\n"
    "micro_batch_size = 16\n"
    "epochs = 0\n"
    "max_steps = 7\n"
    "seed = 42\n"
    "threads = 4\n"
    "eval_batch_size = 500\n"
    "seq_len = 12\n"
    "recompute = block\n"
    "[optim]\n"
    "name = sgd\n"
    "lr = 0.1\n"
    "min_lr = 1e-5\n"
    "schedule = step\n"
    "warmup_steps = 10\n"
    "step_gamma = 1\n"
    "step_size = 3\n"
    "momentum = 0.0\n"
    "nesterov = Yes\n"
    "beta1 = 0\n"
    "[parallel]\n"
    "dp = 2\n"
    "tp = 4\n"
    "pp = 8\n"
    "zero = 3\n"
    "comm = mpi\n"
    "bucket_mb = 0.5\n"
    "[optim]  ; a section may come back\n"
    "beta2 = 0.95\n"
    "eps = 1E-6\n"
    "weight_decay = 0.01\n"
    "grad_clip = 1.0\n"
    "offload = cpu\n"
    "[checkpoint]\n"
    "dir = ckpt#a;b\n"
    "every = 100\n"
    "keep = 0\n"
    "resume = \"runs/x/step \\\"7\\\"\"\n"
    "[log]\n"
    "dir = \"\"\n"
    "every = 1\n"
    "tensorboard = off\n";

static void check_every_key(const dt_config *c, const char *label) {
  dt_config cfg;
  memcpy(&cfg, c, sizeof cfg);
  CHECK_S(model_name, "lenet5");
  CHECK_S(model_activation, "gelu_tanh");
  CHECK_S(model_pool, "avg");
  CHECK_L(model_n_layer, 2);
  CHECK_L(model_n_head, 4);
  CHECK_L(model_n_embd, 32);
  CHECK_L(model_vocab_size, 97);
  CHECK_L(model_block_size, 16);
  CHECK_D(model_dropout, 0.1);
  CHECK_S(data_dir, "my data/mnist #1");
  CHECK_L(data_train_limit, 5000);
  CHECK_L(data_test_limit, 100);
  CHECK_S(train_device, "cuda");
  CHECK_S(train_precision, "bf16");
  CHECK_L(train_batch_size, 128);
  CHECK_L(train_micro_batch_size, 16);
  CHECK_L(train_epochs, 0);
  CHECK_L(train_max_steps, 7);
  CHECK_L(train_seed, 42);
  CHECK_L(train_threads, 4);
  CHECK_L(train_eval_batch_size, 500);
  CHECK_L(train_seq_len, 12);
  CHECK_S(train_recompute, "block");
  CHECK_S(optim_name, "sgd");
  CHECK_D(optim_lr, 0.1);
  CHECK_D(optim_min_lr, 1e-5);
  CHECK_S(optim_schedule, "step");
  CHECK_L(optim_warmup_steps, 10);
  CHECK_D(optim_step_gamma, 1);
  CHECK_L(optim_step_size, 3);
  CHECK_D(optim_momentum, 0);
  CHECK_L(optim_nesterov, 1);
  CHECK_D(optim_beta1, 0);
  CHECK_D(optim_beta2, 0.95);
  CHECK_D(optim_eps, 1e-6);
  CHECK_D(optim_weight_decay, 0.01);
  CHECK_D(optim_grad_clip, 1.0);
  CHECK_S(optim_offload, "cpu");
  CHECK_L(parallel_dp, 2);
  CHECK_L(parallel_tp, 4);
  CHECK_L(parallel_pp, 8);
  CHECK_L(parallel_zero, 3);
  CHECK_S(parallel_comm, "mpi");
  CHECK_D(parallel_bucket_mb, 0.5);
  CHECK_S(checkpoint_dir, "ckpt#a;b");
  CHECK_L(checkpoint_every, 100);
  CHECK_L(checkpoint_keep, 0);
  CHECK_S(checkpoint_resume, "runs/x/step \"7\"");
  CHECK_S(log_dir, "");
  CHECK_L(log_every, 1);
  CHECK_L(log_tensorboard, 0);
}

static void test_good_file(void) {
  const char *path = write_file("lenet5-mnist.ini", k_every_key, -1);
  dt_config cfg;
  dt_error err;
  int rc = dt_config_load(&cfg, path, 0, NULL, &err);
  check(rc == 0, "good file loads%s%s", rc ? ": " : "", rc ? err.msg : "");
  if (rc) return;
  check_every_key(&cfg, "file");
  check(strcmp(cfg.path, path) == 0, "file: path = '%s'", cfg.path);
  check(strcmp(cfg.name, "lenet5-mnist") == 0, "file: name = '%s' (want lenet5-mnist)", cfg.name);

  const char *bare = write_file("bare", "", -1);
  rc = dt_config_load(&cfg, bare, 0, NULL, &err);
  check(rc == 0 && strcmp(cfg.name, "bare") == 0 && cfg.train_epochs == 10,
        "empty file without .ini: defaults, name = '%s'", rc ? err.msg : cfg.name);

  const char *label = "empty file";
  CHECK_L(train_batch_size, 64);
}

static void test_overrides(void) {
  const char *path = write_file(NULL, "[train]\nepochs = 3\nseed = 9\n[optim]\nlr = 0.5\n", -1);
  char *over[] = {"train.epochs=20", " optim.name = sgd ", "log.dir=\"runs/my run\"",
                  "optim.lr=2e-4", "log.tensorboard=FALSE", "data.dir=a#b ;c",
                  "checkpoint.dir="};
  dt_config cfg;
  dt_error err;
  int rc = dt_config_load(&cfg, path, (int)DT_ARRAY_LEN(over), over, &err);
  check(rc == 0, "overrides load%s%s", rc ? ": " : "", rc ? err.msg : "");
  if (rc) return;
  const char *label = "overrides";
  CHECK_L(train_epochs, 20);  /* the override beats the file */
  CHECK_L(train_seed, 9);     /* the file beats the default */
  CHECK_D(optim_lr, 2e-4);
  CHECK_S(optim_name, "sgd");
  CHECK_S(log_dir, "runs/my run");
  CHECK_L(log_tensorboard, 0);
  CHECK_S(data_dir, "a#b ;c"); /* no comments on the command line */
  CHECK_S(checkpoint_dir, "");
  CHECK_L(train_batch_size, 64);

  dt_config_defaults(&cfg);
  rc = dt_config_set(&cfg, "parallel.zero=2", &err);
  rc |= dt_config_set(&cfg, "parallel.zero=1", &err); /* dt_config_set alone: last one wins */
  label = "dt_config_set";
  check(rc == 0, "dt_config_set applies twice%s%s", rc ? ": " : "", rc ? err.msg : "");
  CHECK_L(parallel_zero, 1);
}

static void clear_provenance(dt_config *c) {
  memset(c->path, 0, sizeof c->path);
  memset(c->name, 0, sizeof c->name);
}

static void round_trip(const char *label, const dt_config *in) {
  char *text = dt_config_to_text(in);
  dt_config out;
  dt_error err;
  memset(&out, 0x77, sizeof out);
  int rc = dt_config_parse_text(&out, text, label, &err);
  dt_config a;
  memcpy(&a, in, sizeof a);
  clear_provenance(&a);
  clear_provenance(&out);
  check(rc == 0 && memcmp(&a, &out, sizeof a) == 0, "round trip: %s%s%s", label,
        rc ? ": " : "", rc ? err.msg : "");
  /* the text of the text is the same text */
  char *again = dt_config_to_text(&out);
  check(strcmp(text, again) == 0, "round trip: %s, text is stable", label);
  free(again);
  free(text);
}

static void test_round_trip(void) {
  dt_config cfg;
  dt_error err;
  dt_config_defaults(&cfg);
  round_trip("defaults", &cfg);

  if (dt_config_parse_text(&cfg, k_every_key, "every key", &err) == 0) {
    check_every_key(&cfg, "parse_text");
    check(cfg.path[0] == '\0' && cfg.name[0] == '\0', "parse_text leaves provenance empty");
    round_trip("every key", &cfg);
  } else {
    check(0, "parse_text every key: %s", err.msg);
  }

  dt_config_defaults(&cfg);
  cfg.optim_lr = 0.1 + 0.2; /* 0.30000000000000004 needs 17 digits */
  cfg.optim_eps = 5e-324 * 1e300; /* an odd value far from a short decimal */
  cfg.optim_min_lr = 1.0 / 3.0;
  cfg.train_seed = 9223372036854775807L;
  snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", "C:\\data\\\"q\" ; # x");
  snprintf(cfg.log_dir, sizeof cfg.log_dir, "%s", " leading and trailing ");
  memset(cfg.checkpoint_resume, 0, DT_STR);
  memset(cfg.checkpoint_resume, 'r', DT_STR - 1); /* the longest string */
  round_trip("awkward values", &cfg);

  char *text = dt_config_to_text(&cfg);
  check(contains(text, "lr = 0.30000000000000004\n"), "to_text: 0.1+0.2 written exactly");
  check(contains(text, "dir = \"C:\\\\data\\\\\\\"q\\\" ; # x\"\n"), "to_text: escapes quotes");
  free(text);

  dt_config_defaults(&cfg);
  text = dt_config_to_text(&cfg);
  int keys = 0, sections = 0;
  for (const char *p = text; *p; p = strchr(p, '\n') + 1) {
    if (*p == '[') sections++;
    else if (*p != '\n') keys++;
  }
  check(keys == 84 && sections == 8, "to_text: %d keys in %d sections (want 84 in 8)", keys,
        sections);
  check(strncmp(text, "[model]\nname = lenet5\n", 22) == 0 &&
            contains(text, "\n[optim]\nname = adam\nlr = 0.001\n") &&
            contains(text, "\n[checkpoint]\ndir = \"\"\n") &&
            contains(text, "tensorboard = true\n") && contains(text, "\nprofile = false\n"),
        "to_text: layout and defaults");
  free(text);
}

static void test_help(void) {
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  dt_config_print_help(f);
  fclose(f);
  check(contains(buf, "\n[optim]\n") && contains(buf, "optim.lr") &&
            contains(buf, "log.tensorboard") && contains(buf, "sgd|adam|adamw") &&
            contains(buf, "default=0.001") && contains(buf, "[1, 1000000000]") &&
            contains(buf, "(0, 1]") && contains(buf, "[0, 1)"),
        "print_help: keys, defaults, ranges, choices");
  int lines = 0;
  for (const char *p = buf; *p; p++) lines += *p == '\n' && p[1] == ' ' && p[2] == ' ' && p[3] != ' ';
  check(lines == 84, "print_help: %d key lines (want 84)", lines);
  if (getenv("TEST_CONFIG_SHOW_HELP")) fputs(buf, stdout);
  free(buf);
}

int main(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/dtrain-test-config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_defaults();
  test_good_file();
  test_overrides();
  test_round_trip();
  test_help();
  test_file_errors();
  test_override_errors();
  test_file_level_errors();
  for (int i = 0; i < g_nfiles; i++) unlink(g_files[i]);
  rmdir(g_dir);
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
