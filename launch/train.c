/* train.c: the training loop, for image classification (LeNet-5 on MNIST)
 * and language models (GPT on token shards): seeded resumable data order
 * split over data-parallel ranks, gradient
 * accumulation, ZeRO-sharded optimizer, clipping, LR schedule, evaluation,
 * metrics and sharded checkpoints. */
#include "train.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../models/model.h"
#include "../kernels/profile.h"
#include "../runtime/blend.h"
#include "../runtime/backend.h"
#include "../runtime/checkpoint.h"
#include "../runtime/dataset.h"
#include "../runtime/hf_gpt2.h"
#include "../runtime/metrics.h"
#include "../runtime/pairdata.h"
#include "../runtime/bleu.h"
#include "../runtime/bpe.h"
#include "../models/translate.h"
#include "../runtime/rng.h"
#include "../runtime/textprep.h"
#include "../parallel/comm.h"
#include "../parallel/dp.h"
#include "../parallel/grid.h"
#include "../parallel/pipeline.h"
#include "../parallel/watchdog.h"

#define MNIST_MEAN 0.1307f
#define MNIST_STD 0.3081f

static volatile sig_atomic_t g_stop_signal = 0;
static void on_signal(int sig) { g_stop_signal = sig; }

typedef struct trainer {
  const dt_config *cfg;
  dt_config resolved;  /* the config with train.precision = auto decided, when it was */
  char *config_text;
  char run_dir[DT_STR * 2], ckpt_dir[DT_STR * 2];
  dt_backend_t be;
  dt_grid grid;
  dt_comm_t comm;   /* the data-parallel group */
  dt_comm_t tp_comm; /* the tensor-parallel group (NULL at parallel.tp = 1) */
  dt_comm_t pp_comm; /* the pipeline group (NULL at parallel.pp = 1) */
  dt_pipe *pipe;     /* this rank's stage's schedule (NULL at parallel.pp = 1) */
  dt_comm_t emb_comm; /* the first and last stages, for the tied token table's gradient */
  int tie_pairs;      /* emb_comm pairs the two copies: their gradients are summed in place */
  float *d_tied;      /* (its elements) else the exchange buffer of that gradient */
  const int32_t *pipe_perm; /* this step's samples, for the pipeline's batches */
  dt_dp *dp;
  int is_root;      /* world rank 0: logs, metrics, checkpoint metadata */
  dt_model *m;
  int lm;              /* a language model: samples are windows of seq tokens */
  int s2s;             /* translation: a step is one token-count batch of pairs */
  dt_pair_set pairs_train, pairs_val;
  dt_pair_batches bat_train, bat_val;
  int32_t *h_src, *d_src, *h_slen, *d_slen, *h_tlen, *d_tlen; /* (micro, max_len), (micro) */
  int64_t step_tokens;  /* s2s: target tokens of the last step (global) */
  int64_t step_samples; /* s2s: sentences of the last step (global) */
  dt_bpe *bpe;          /* s2s: data.dir/tokenizer, for validation BLEU */
  dt_translator *tr;
  int64_t seq;
  dt_image_set train, test;
  /* language models: the token datasets (data.dir's, or data.blend's), each
   * a train.h5 and a val.h5; sample ids number their windows one after
   * another (dataset d's from off[split]) */
  struct tokset {
    char dir[DT_STR], name[64];
    dt_token_map tok[2];
    int64_t nwin[2], off[2];
  } ts[DT_BLEND_MAX];
  int nts;
  dt_blend blend; /* data.blend's sample order (blend.ds NULL without one) */
  int64_t ntrain, neval;   /* samples: images, or token windows */
  int32_t *h_tok, *d_tok;  /* language models: (micro, seq) inputs, one set per activation
                            * slot of a pipeline stage (h_y, d_y too) */
  uint8_t *d_train_images, *d_test_images; /* resident on the device */
  int32_t *h_idx, *h_y, *d_idx, *d_y;
  float *d_x, *d_losses, *h_losses, *h_logits, *d_sumsq;
  int nstates;
  const char *state_names[2];
  float *d_states[2];  /* on opt_be, covering [opt_lo, opt_hi) */
  dt_backend_t opt_be; /* where the optimizer runs: be, or the CPU with optim.offload=cpu */
  float *h_p, *h_g;    /* offload: host master weights and gradients of [opt_lo, opt_hi) */
  int32_t *perm;
  int64_t perm_epoch;
  int64_t batch, rank_batch, micro, eval_batch; /* global, per dp rank, per forward */
  int64_t steps_per_epoch, total_steps;
  int64_t step, epoch, offset; /* optimizer steps done; loader position */
  uint64_t seed;
  double train_time; /* seconds in training steps (no eval, no I/O) in this process */
  double flops_tok;   /* gpt: model FLOPs a token (6N + 12 L T d), 0 for other models */
  double peak_tflops; /* for the MFU: log.peak_tflops or the GPU's known peak; 0 = none */
  dt_metrics *metrics;
  dt_profile *prof;  /* [log] profile: the kernel timing shim over be, or NULL */
  /* checkpoint.keep_best and train.early_stop: which metric (0 none,
   * BEST_LOSS, ...), its best value and step so far (best_step <= 0: none),
   * and the newest evaluation's values on rank 0 (NaN where it did not
   * compute one) */
  int best_metric;
  int keep_best;          /* save a checkpoint at each new best (else only train.early_stop
                           * follows the metric: the validation loss) */
  double best;
  int64_t best_step;
  int64_t since_best;     /* evaluations since the best (train.early_stop) */
  double eval_loss, eval_acc, eval_bleu;
  struct ckpt_job {  /* the newest save, until it is committed */
    int pending;     /* its files are being written (checkpoint.async) or wait for the commit */
    int thread;      /* a writer thread runs it */
    pthread_t tid;
    atomic_int done; /* the thread has written this rank's file */
    dt_ckpt_buffers b;
    dt_ckpt_meta meta;
    char tmp[4096];
    int wrank;       /* this rank if its write failed, else the world size */
    dt_error err;
    double t0;
    int64_t steps_during; /* training steps run while the thread wrote */
  } ck;
} trainer;

enum { BEST_LOSS = 1, BEST_ACCURACY, BEST_BLEU };

/* the metric checkpoint.keep_best and train.early_stop follow */
static const char *best_name(const trainer *T) {
  return T->best_metric == BEST_ACCURACY ? "accuracy" : T->best_metric == BEST_BLEU ? "bleu"
                                                                                   : "loss";
}

/* train.threads, or the node's cores shared among its ranks so that several
 * CPU ranks on one machine do not oversubscribe it */
static int cpu_threads(const trainer *T) {
  if (T->cfg->train_threads > 0) return (int)T->cfg->train_threads;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  int per = (int)(cores / DT_MAX(1, T->grid.local_size));
  return per > 0 ? per : 1;
}

/* ---------- data ---------- */

/* Language models: train.h5 and val.h5 token shards; sample i is the window
 * tokens[i*seq .. i*seq+seq] (inputs) shifted by one (targets). */
static const char *tok_names[2] = {"train.h5", "val.h5"};

static void load_tokens(trainer *T) {
  const dt_config *c = T->cfg;
  char path[DT_STR * 2 + 16];
  dt_error err;
  double w[DT_BLEND_MAX] = {1};
  const char *dirs[DT_BLEND_MAX] = {c->data_dir};
  char *spec = NULL;
  T->nts = 1;
  if (c->data_blend[0] && dt_blend_parse(c->data_blend, w, dirs, &T->nts, &spec, &err))
    dt_die_user_all("%s", err.msg);
  int64_t off[2] = {0, 0};
  for (int d = 0; d < T->nts; d++) {
    struct tokset *ts = &T->ts[d];
    snprintf(ts->dir, sizeof ts->dir, "%s", dirs[d]);
    /* its name in the val rows: the directory's last part, as a metric name */
    const char *base = ts->dir + strlen(ts->dir);
    while (base > ts->dir && base[-1] == '/') base--;
    const char *end = base;
    while (base > ts->dir && base[-1] != '/') base--;
    int n = 0;
    for (const char *q = base; q < end && n < (int)sizeof ts->name - 1; q++)
      ts->name[n++] = isalnum((unsigned char)*q) || *q == '-' ? *q : '_';
    ts->name[n] = 0;
    for (int e = 0; e < d; e++) /* two directories of one name: the later gets its index */
      if (!strcmp(T->ts[e].name, ts->name)) {
        snprintf(ts->name + DT_MIN(n, (int)sizeof ts->name - 4), 4, "_%d", d % 100);
        break;
      }
    const char *key = c->data_blend[0] ? "[data] blend: " : "[data] dir = ";
    for (int i = 0; i < 2; i++) {
      snprintf(path, sizeof path, "%s/%s", ts->dir, tok_names[i]);
      struct stat st;
      if (stat(path, &st) != 0)
        dt_die_user_all("%s%s: %s not found (prepare text with: build/dtrain-prep text "
                        "%s FILES... or build/dtrain-prep wos $DTRAIN_DATA/wos %s)",
                        key, ts->dir, tok_names[i], ts->dir, ts->dir);
      if (dt_token_shard_map(path, T->m->num_classes, &ts->tok[i], &err))
        dt_die_user_all("%s", err.msg);
      ts->nwin[i] = (ts->tok[i].count - 1) / T->seq;
      const long limit = i ? c->data_test_limit : c->data_train_limit;
      if (limit > 0) ts->nwin[i] = DT_MIN(ts->nwin[i], limit);
      if (ts->nwin[i] < 1)
        dt_die_user_all("%s%s: %s has %lld tokens, fewer than one window of train.seq_len + 1 "
                        "= %lld", key, ts->dir, tok_names[i], (long long)ts->tok[i].count,
                        (long long)T->seq + 1);
      ts->off[i] = off[i];
      off[i] += ts->nwin[i];
    }
    if (T->is_root)
      printf("data: %s/train.h5 %lld tokens, val.h5 %lld, %s\n", ts->dir,
             (long long)ts->tok[0].count, (long long)ts->tok[1].count,
             ts->tok[0].mapped && ts->tok[1].mapped
                 ? "memory-mapped (one copy per node, in the page cache)"
                 : "read into memory (compressed shards, or ids beyond the model's vocabulary)");
  }
  free(spec);
  if (off[0] > INT32_MAX || off[1] > INT32_MAX)
    dt_die_user_all("[data] %lld training windows of train.seq_len = %lld: more than int32 "
                    "sample ids hold (set data.train_limit)", (long long)off[0],
                    (long long)T->seq);
  T->ntrain = off[0];
  T->neval = off[1];
  if (!c->data_blend[0]) return;
  int64_t n[DT_BLEND_MAX];
  for (int d = 0; d < T->nts; d++) n[d] = T->ts[d].nwin[0];
  if (dt_blend_init(&T->blend, T->nts, n, w, &err)) dt_die_user_all("[data] blend: %s", err.msg);
  if (T->is_root) {
    printf("data: a blend of %d dataset%s, an epoch of %lld windows:", T->nts,
           T->nts == 1 ? "" : "s", (long long)T->blend.N);
    for (int d = 0; d < T->nts; d++)
      printf("%s %s %.3f (%lld draws an epoch of its %lld windows)", d ? "," : "",
             T->ts[d].name, T->blend.w[d], (long long)T->blend.per_epoch[d],
             (long long)T->ts[d].nwin[0]);
    printf("\n");
  }
}

/* Translation: train.h5 and valid.h5 pair shards, cut into token-count
 * batches of length-sorted pairs; a training step is one batch, an epoch
 * visits every batch once in a seeded order. */
static void load_pairs(trainer *T) {
  const dt_config *c = T->cfg;
  char path[DT_STR * 2 + 16];
  dt_error err;
  const char *names[2] = {"train.h5", "valid.h5"};
  dt_pair_set *sets[2] = {&T->pairs_train, &T->pairs_val};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s", c->data_dir, names[i]);
    struct stat st;
    if (stat(path, &st) != 0)
      dt_die_user_all("[data] dir = %s: %s not found (prepare translation pairs with: "
                      "build/dtrain-prep translation $DTRAIN_DATA/wmt-zh-en %s)",
                      c->data_dir, names[i], c->data_dir);
    if (dt_pair_set_load(sets[i], path, T->m->num_classes, &err)) dt_die_user_all("%s", err.msg);
  }
  int64_t max_len = DT_MIN(T->m->max_t, T->m->max_src_t);
  int64_t sentences = c->train_batch_size, multiple = c->train_batch_multiple;
  int64_t tokens = c->train_batch_tokens > 0 ? c->train_batch_tokens : INT64_MAX;
  if (multiple % T->grid.dp != 0)
    dt_die_user_all("[train] batch_multiple = %lld is not divisible by parallel.dp = %d (every "
                    "rank takes the same number of sentences)",
                    (long long)multiple, T->grid.dp);
  if (sentences < multiple)
    dt_die_user_all("[train] batch_size = %lld is below [train] batch_multiple = %lld",
                    (long long)sentences, (long long)multiple);
  if (tokens < multiple * max_len)
    dt_die_user_all("[train] batch_tokens = %lld cannot hold batch_multiple = %lld pairs of the "
                    "longest length %lld ([model] block_size): raise it to at least %lld",
                    (long long)tokens, (long long)multiple, (long long)max_len,
                    (long long)(multiple * max_len));
  if (dt_pair_batches_make(&T->pairs_train, tokens, sentences, (int)multiple, max_len,
                           &T->bat_train, &err) ||
      dt_pair_batches_make(&T->pairs_val, tokens, T->micro, 1, max_len, &T->bat_val, &err))
    dt_die_user_all("[data] dir = %s: %s", c->data_dir, err.msg);
  if (T->bat_train.nbatches < 1 || T->bat_val.nbatches < 1)
    dt_die_user_all("[data] dir = %s: no usable %s pairs (all longer than %lld tokens?)",
                    c->data_dir, T->bat_train.nbatches < 1 ? "train" : "valid",
                    (long long)max_len);
  T->ntrain = T->bat_train.nbatches;
  if (c->data_train_limit > 0) T->ntrain = DT_MIN(T->ntrain, c->data_train_limit);
  T->neval = T->bat_val.start[T->bat_val.nbatches]; /* pairs */
  if (T->is_root && (T->bat_train.skipped || T->bat_val.skipped))
    printf("data: %lld train and %lld valid pairs left out (longer than %lld tokens, or the "
           "last partial batch)\n",
           (long long)T->bat_train.skipped, (long long)T->bat_val.skipped, (long long)max_len);
}

static void load_data(trainer *T) {
  if (T->lm) {
    load_tokens(T);
    return;
  }
  if (T->s2s) {
    load_pairs(T);
    return;
  }
  const dt_config *c = T->cfg;
  char path[DT_STR * 2 + 16];
  dt_error err;
  const char *names[2] = {"train.h5", "test.h5"};
  dt_image_set *sets[2] = {&T->train, &T->test};
  int64_t limits[2] = {c->data_train_limit, c->data_test_limit};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s", c->data_dir, names[i]);
    struct stat st;
    if (stat(path, &st) != 0)
      dt_die_user("[data] dir = %s: %s not found (prepare MNIST with: build/dtrain-prep mnist "
                  "$DTRAIN_DATA/mnist %s)",
                  c->data_dir, names[i], c->data_dir);
    if (dt_image_set_load(sets[i], path, limits[i], &err)) dt_die_user("%s", err.msg);
  }
  if (T->train.h != T->test.h || T->train.w != T->test.w)
    dt_die_user("[data] dir = %s: train images are %dx%d but test images %dx%d", c->data_dir,
                T->train.h, T->train.w, T->test.h, T->test.w);
  if (T->m->in_h != T->train.h || T->m->in_w != T->train.w)
    dt_die_user_all("[data] dir = %s: images are %dx%d, but %s expects %dx%d", c->data_dir,
                    T->train.h, T->train.w, T->m->family, T->m->in_h, T->m->in_w);
  if (T->train.num_classes > T->m->num_classes || T->train.num_classes > 64)
    dt_die_user_all("[data] dir = %s: %d classes, but %s has %d outputs", c->data_dir,
                    T->train.num_classes, T->m->family, T->m->num_classes);
  T->ntrain = T->train.n;
  T->neval = T->test.n;
  dt_backend_t be = T->be;
  size_t row = (size_t)T->train.h * T->train.w;
  T->d_train_images = be->alloc(be, (size_t)T->train.n * row);
  be->h2d(be, T->d_train_images, T->train.images, (size_t)T->train.n * row);
  T->d_test_images = be->alloc(be, (size_t)T->test.n * row);
  be->h2d(be, T->d_test_images, T->test.images, (size_t)T->test.n * row);
}

/* The permutation of epoch e is a pure function of (seed, e), so a resumed run
 * rebuilds it instead of storing it. */
static const int32_t *epoch_perm(trainer *T, int64_t epoch) {
  if (T->perm_epoch != epoch && T->blend.ds) { /* data.blend: blend.h's order */
    dt_blend_epoch(&T->blend, T->seed, epoch, T->perm);
    T->perm_epoch = epoch;
  }
  if (T->perm_epoch != epoch) {
    dt_rng r;
    dt_rng_seed(&r, T->seed, 0x5eed0000ULL + (uint64_t)epoch);
    dt_rng_permutation(&r, T->perm, T->ntrain);
    T->perm_epoch = epoch;
  }
  return T->perm;
}

/* The dropout seed of the coming optimizer step, a pure function of
 * (train.seed, step) like the data order, so a resumed run draws the masks
 * the uninterrupted one did. Models number each sequence's elements from its
 * place in the global batch (dt_batch.sample0), which covers micro-batches
 * and dp ranks. */
static uint64_t dropout_seed(const trainer *T) {
  dt_rng r;
  dt_rng_seed(&r, T->seed, 0xd40900000000ULL + (uint64_t)T->step);
  return dt_rng_u64(&r);
}

/* A window of a mapped shard holds an id the model has no row for: the
 * shard is corrupt or not what its vocab_size attribute says */
static DT_NORETURN void bad_window(const trainer *T, int split, int d, int64_t from,
                                   int64_t limit) {
  const uint16_t *w = T->ts[d].tok[split].tokens;
  int64_t i = from;
  while (w[i] < limit) i++;
  dt_die_user("[data] %s%s: %s: /tokens[%lld] = %u is not below vocab_size %lld",
              T->cfg->data_blend[0] ? "blend: " : "dir = ", T->ts[d].dir, tok_names[split],
              (long long)i, w[i], (long long)limit);
}

/* The dataset holding sample id `id` of split, and the window in it */
static int tokset_of(const trainer *T, int split, int64_t id, int64_t *window) {
  int d = T->nts - 1;
  while (d > 0 && id < T->ts[d].off[split]) d--;
  *window = id - T->ts[d].off[split];
  return d;
}

/* A micro-batch of token windows: inputs and next-token targets, in the
 * buffers of activation slot `slot` (0 without pipeline parallelism). */
static dt_batch make_lm_batch(trainer *T, int split, const int32_t *idx, int n, int slot) {
  dt_backend_t be = T->be;
  int64_t s = T->seq;
  const size_t at = (size_t)slot * (size_t)T->m->max_batch * (size_t)s;
  int32_t *htok = T->h_tok + at, *hy = T->h_y + at;
  for (int i = 0; i < n; i++) {
    int64_t win;
    const int d = tokset_of(T, split, idx[i], &win);
    const dt_token_map *map = &T->ts[d].tok[split];
    const int64_t limit = DT_MIN(map->limit, (int64_t)T->m->num_classes);
    const uint16_t *w = map->tokens + win * s;
    /* a mapped shard's ids are checked here, as they are read */
    int bad = w[0] >= limit;
    for (int64_t j = 0; j < s; j++) {
      htok[i * s + j] = w[j];
      hy[i * s + j] = w[j + 1];
      bad |= w[j + 1] >= limit;
    }
    if (bad) bad_window(T, split, d, win * s, limit);
  }
  be->h2d(be, T->d_tok + at, htok, (size_t)n * s * sizeof(int32_t));
  be->h2d(be, T->d_y + at, hy, (size_t)n * s * sizeof(int32_t));
  return (dt_batch){.n = n, .t = (int)s, .tokens = T->d_tok + at, .y = T->d_y + at};
}

/* Translation: n pairs, padded to this micro-batch's longest source and
 * target. *real gets the target tokens that count in the loss. */
static dt_batch make_s2s_batch(trainer *T, const dt_pair_set *set, const int32_t *idx, int n,
                               int64_t *real) {
  dt_backend_t be = T->be;
  int ts, t;
  *real = dt_pair_fill(set, idx, n, T->h_src, T->h_slen, T->h_tok, T->h_y, T->h_tlen, &ts, &t);
  be->h2d(be, T->d_src, T->h_src, (size_t)n * ts * sizeof(int32_t));
  be->h2d(be, T->d_slen, T->h_slen, (size_t)n * sizeof(int32_t));
  be->h2d(be, T->d_tok, T->h_tok, (size_t)n * t * sizeof(int32_t));
  be->h2d(be, T->d_y, T->h_y, (size_t)n * t * sizeof(int32_t));
  be->h2d(be, T->d_tlen, T->h_tlen, (size_t)n * sizeof(int32_t));
  return (dt_batch){.n = n, .t = t, .ts = ts, .tokens = T->d_tok, .y = T->d_y, .src = T->d_src,
                    .src_len = T->d_slen, .tgt_len = T->d_tlen};
}

/* Uploads a micro-batch of sample indices and labels, then gathers and
 * normalises the images on the device. */
static dt_batch make_batch(trainer *T, int eval, const int32_t *idx, int n) {
  if (T->lm) return make_lm_batch(T, eval ? 1 : 0, idx, n, 0);
  const uint8_t *d_images = eval ? T->d_test_images : T->d_train_images;
  const uint8_t *labels = eval ? T->test.labels : T->train.labels;
  dt_backend_t be = T->be;
  for (int i = 0; i < n; i++) {
    T->h_idx[i] = idx[i];
    T->h_y[i] = labels[idx[i]];
  }
  /* h_idx/h_y are reused by the next micro-batch; that is safe because every
   * caller reads losses back (a synchronising d2h) before the next call. */
  be->h2d(be, T->d_idx, T->h_idx, (size_t)n * sizeof(int32_t));
  be->h2d(be, T->d_y, T->h_y, (size_t)n * sizeof(int32_t));
  int row = T->train.h * T->train.w;
  be->k->gather_u8_normalize(be->ctx, T->d_x, d_images, T->d_idx, n, row, MNIST_MEAN, MNIST_STD);
  return (dt_batch){.n = n, .x = T->d_x, .y = T->d_y};
}

/* ---------- schedule and optimizer ---------- */

static double lr_at(const trainer *T, int64_t s) {
  const dt_config *c = T->cfg;
  double base = c->optim_lr, lo = c->optim_min_lr;
  int64_t W = c->optim_warmup_steps;
  if (s < W) return base * (double)(s + 1) / (double)W;
  /* the Transformer paper's d^-0.5 * min(s^-0.5, s * W^-1.5), with its peak
   * at step W scaled to optim.lr */
  if (!strcmp(c->optim_schedule, "inverse_sqrt"))
    return base * sqrt((double)DT_MAX(W, 1) / (double)(s + 1));
  double p = T->total_steps > W ? (double)(s - W) / (double)(T->total_steps - W) : 1.0;
  if (p > 1) p = 1;
  if (!strcmp(c->optim_schedule, "cosine")) return lo + 0.5 * (base - lo) * (1 + cos(M_PI * p));
  if (!strcmp(c->optim_schedule, "linear")) return base + (lo - base) * p;
  /* warmup-stable-decay (MiniCPM, DeepSeek): held at the peak, then the
   * last decay_fraction of the run decays linearly, from the peak at its
   * first step to min_lr at the last */
  if (!strcmp(c->optim_schedule, "wsd")) {
    const int64_t D = DT_MAX(W, T->total_steps - (int64_t)llround(c->optim_decay_fraction *
                                                                   (double)T->total_steps));
    if (s < D) return base;
    const int64_t n = T->total_steps - D;
    return n > 1 ? base + (lo - base) * (double)(s - D) / (double)(n - 1) : lo;
  }
  if (!strcmp(c->optim_schedule, "step"))
    return base * pow(c->optim_step_gamma, (double)((s / T->steps_per_epoch) / c->optim_step_size));
  return base;
}

static void setup_optimizer(trainer *T) {
  dt_backend_t be = T->be;
  if (!strcmp(T->cfg->optim_name, "sgd")) {
    T->nstates = 1;
    T->state_names[0] = "momentum_buffer";
  } else {
    T->nstates = 2;
    T->state_names[0] = "exp_avg";
    T->state_names[1] = "exp_avg_sq";
  }
  size_t n = T->dp->opt_hi - T->dp->opt_lo;
  /* optim.offload=cpu: optimizer state, fp32 master weights and the update
   * live on the host (the CPU backend's kernels), as DeepSpeed's offload */
  int offload = !strcmp(T->cfg->optim_offload, "cpu");
  T->opt_be = offload ? dt_backend_cpu_create(cpu_threads(T)) : be;
  for (int s = 0; s < T->nstates; s++) {
    T->d_states[s] = T->opt_be->alloc(T->opt_be, (n + 1) * sizeof(float));
    T->opt_be->memset0(T->opt_be, T->d_states[s], (n + 1) * sizeof(float));
  }
  if (offload) {
    T->h_p = be->host_alloc(be, (n + 1) * sizeof(float));
    T->h_g = be->host_alloc(be, (n + 1) * sizeof(float));
  }
}

/* Offload: the host master weights follow the device parameters (at start
 * and after a resume). */
static void offload_pull_params(trainer *T) {
  if (T->h_p)
    T->be->d2h(T->be, T->h_p, T->dp->pstore + (T->dp->opt_lo - T->dp->pstore_lo),
               (T->dp->opt_hi - T->dp->opt_lo) * sizeof(float));
}

/* a tensor's weight decay: optim.weight_decay, or 0 (biases, norms) */
static float param_wd(const dt_config *c, const dt_param *p) {
  return p->decay ? (float)c->optim_weight_decay : 0.0f;
}

static double pp_sum(trainer *T, double x);

/* The squared global gradient norm under tensor or pipeline parallelism: a
 * split tensor's parts are summed over the tensor-parallel group, a tensor
 * every part holds whole (with the same gradient) is counted once, and so is
 * the tied token table, which two pipeline stages hold; then the pipeline's
 * stages and the data-parallel group's shards are summed. One sumsq per
 * tensor in this rank's shard, into d_sumsq[i], read back at once. */
static double parts_grad_sumsq(trainer *T, const float *grads) {
  dt_backend_t be = T->be;
  const dt_dp *dp = T->dp;
  const dt_model *m = T->m;
  for (int i = 0; i < m->nparams; i++) {
    const dt_param *p = &m->params[i];
    size_t a = DT_MAX(p->offset, dp->own_lo), b = DT_MIN(p->offset + p->count, dp->own_hi);
    if (a < b) be->k->sumsq(be->ctx, T->d_sumsq + i, grads + (a - dp->opt_lo), b - a);
    else be->memset0(be, T->d_sumsq + i, sizeof(float));
  }
  float *h = dt_malloc((size_t)m->nparams * sizeof(float));
  be->d2h(be, h, T->d_sumsq, (size_t)m->nparams * sizeof(float));
  double sums[2] = {0, 0}; /* split, whole */
  for (int i = 0; i < m->nparams; i++)
    if (!m->params[i].pp_copy) sums[dt_param_is_split(&m->params[i]) ? 0 : 1] += h[i];
  free(h);
  if (T->tp_comm) {
    dt_watchdog_enter("an all-reduce of step statistics");
    MPI_Allreduce(MPI_IN_PLACE, &sums[0], 1, MPI_DOUBLE, MPI_SUM, T->tp_comm->mpi);
    dt_watchdog_leave();
  }
  return pp_sum(T, dt_dp_sum(T->dp, sums[0] + sums[1]));
}

/* Pipeline parallelism: the token table is held by the first stage (the
 * embedding) and the last (the tied LM head), each with its own part of its
 * gradient; both need the sum, as one process has it. Where a rank's
 * optimizer range holds the whole reduced gradient (ZeRO-0, or one
 * data-parallel rank), the two copies' ranks sum it in place. Else the
 * data-parallel ranks of both stages put the slice of it they own into a
 * zeroed buffer of the whole table (their slices partition it on each
 * stage), one all-reduce over all of them gives every rank the sum, and each
 * takes back the range its optimizer updates. The copies then stay equal:
 * same start (the checkpoint or the seeded init), same gradient, same
 * update. */
static void tie_embedding_grads(trainer *T, float *grads) {
  if (!T->emb_comm) return;
  dt_backend_t be = T->be;
  const dt_dp *dp = T->dp;
  const dt_param *p = &T->m->params[dt_model_find_param(T->m, "wte.weight")];
  const size_t lo = p->offset, hi = p->offset + p->count;
  if (T->tie_pairs) {
    dt_watchdog_enter("the all-reduce of the tied token table's gradient");
    T->emb_comm->allreduce(T->emb_comm, grads + (lo - dp->opt_lo), grads + (lo - dp->opt_lo),
                           p->count, DT_F32, DT_SUM);
    dt_watchdog_leave();
    return;
  }
  be->memset0(be, T->d_tied, p->count * sizeof(float));
  size_t a = DT_MAX(lo, dp->own_lo), b = DT_MIN(hi, dp->own_hi);
  if (a < b) be->d2d(be, T->d_tied + (a - lo), grads + (a - dp->opt_lo), (b - a) * sizeof(float));
  dt_watchdog_enter("the all-reduce of the tied token table's gradient");
  T->emb_comm->allreduce(T->emb_comm, T->d_tied, T->d_tied, p->count, DT_F32, DT_SUM);
  dt_watchdog_leave();
  a = DT_MAX(lo, dp->opt_lo), b = DT_MIN(hi, dp->opt_hi);
  if (a < b) be->d2d(be, grads + (a - dp->opt_lo), T->d_tied + (a - lo), (b - a) * sizeof(float));
}

/* Updates this rank's optimizer range [opt_lo, opt_hi) from the reduced
 * gradients, then all-gathers the parameters (ZeRO >= 1). Returns the global
 * gradient norm (before clipping). */
static double optimizer_step(trainer *T, double lr) {
  const dt_config *c = T->cfg;
  dt_backend_t be = T->be;
  dt_model *m = T->m;
  dt_dp *dp = T->dp;
  float *grads = dt_dp_grads(dp); /* grads[0] is flat element opt_lo */
  /* every rank adds the squares of its own shard once, so the sum over the
   * group is the global norm at every ZeRO stage */
  tie_embedding_grads(T, grads);
  double norm;
  if (T->tp_comm || T->pp_comm) {
    norm = sqrt(parts_grad_sumsq(T, grads));
  } else {
    float sumsq = 0;
    be->k->sumsq(be->ctx, T->d_sumsq, grads + (dp->own_lo - dp->opt_lo), dp->own_hi - dp->own_lo);
    be->d2h(be, &sumsq, T->d_sumsq, sizeof sumsq);
    norm = sqrt(dt_dp_sum(dp, (double)sumsq));
  }
  float gscale = 1.0f;
  if (c->optim_grad_clip > 0 && norm > c->optim_grad_clip)
    gscale = (float)(c->optim_grad_clip / (norm + 1e-6));
  int t = (int)(T->step + 1);
  int sgd = !strcmp(c->optim_name, "sgd");
  dt_backend_t ob = T->opt_be;
  size_t nopt = dp->opt_hi - dp->opt_lo;
  float *pdev = dp->pstore + (dp->opt_lo - dp->pstore_lo); /* [0] = flat opt_lo */
  float *pbase = pdev; /* where the optimizer updates them, on ob */
  if (T->h_p) {
    be->d2h(be, T->h_g, grads, nopt * sizeof(float));
    grads = T->h_g;
    pbase = T->h_p;
  }
  int decoupled = !strcmp(c->optim_name, "adamw");
  for (int i = 0; i < m->nparams; i++) {
    const dt_param *p = &m->params[i];
    size_t a = DT_MAX(p->offset, dp->opt_lo), b = DT_MIN(p->offset + p->count, dp->opt_hi);
    if (a >= b) continue;
    const float wd = param_wd(c, p);
    /* one launch for a run of adjacent tensors with the same decay (the
     * update is elementwise, so the bits are the same): with no weight
     * decay the whole range is one call instead of one per tensor */
    while (i + 1 < m->nparams && m->params[i + 1].offset == p->offset + p->count &&
           param_wd(c, &m->params[i + 1]) == wd &&
           m->params[i + 1].offset < dp->opt_hi) {
      p = &m->params[++i];
      b = DT_MIN(p->offset + p->count, dp->opt_hi);
    }
    float *pp = pbase + (a - dp->opt_lo), *g = grads + (a - dp->opt_lo);
    float *s0 = T->d_states[0] + (a - dp->opt_lo);
    if (sgd)
      ob->k->sgd_step(ob->ctx, pp, g, s0, b - a, (float)lr, (float)c->optim_momentum, wd,
                      c->optim_nesterov, t == 1, gscale);
    else
      ob->k->adam_step(ob->ctx, pp, g, s0, T->d_states[1] + (a - dp->opt_lo), b - a, (float)lr,
                       (float)c->optim_beta1, (float)c->optim_beta2, (float)c->optim_eps, wd,
                       decoupled, t, gscale);
  }
  if (T->h_p) be->h2d(be, pdev, T->h_p, nopt * sizeof(float));
  dt_dp_gather_params(dp);
  return norm;
}

/* ---------- checkpoints ---------- */

static void fill_meta(const trainer *T, dt_ckpt_meta *meta) {
  memset(meta, 0, sizeof *meta);
  meta->best = T->best, meta->best_step = T->best_step, meta->best_since = T->since_best;
  snprintf(meta->best_metric, sizeof meta->best_metric, "%s", best_name(T));
  meta->step = T->step;
  meta->epoch = T->epoch;
  meta->epoch_offset = T->offset;
  meta->seed = T->seed;
  snprintf(meta->optimizer, sizeof meta->optimizer, "%.31s", T->cfg->optim_name);
  snprintf(meta->model, sizeof meta->model, "%s", T->m->family);
  meta->dp = T->grid.dp, meta->tp = T->grid.tp, meta->pp = T->grid.pp;
  meta->world = T->grid.size;
  meta->zero = T->cfg->parallel_zero;
}

static void host_buffers(trainer *T, dt_ckpt_buffers *b) {
  size_t n = T->m->nparams_total;
  memset(b, 0, sizeof *b);
  b->params = dt_calloc(n, sizeof(float));
  b->nstates = T->nstates;
  for (int s = 0; s < T->nstates; s++) {
    b->state_names[s] = T->state_names[s];
    b->states[s] = dt_calloc(T->dp->opt_hi - T->dp->opt_lo + 1, sizeof(float));
  }
}

static void free_host_buffers(dt_ckpt_buffers *b) {
  free(b->params);
  for (int s = 0; s < b->nstates; s++) free(b->states[s]);
}

/* This rank's file of the save in T->ck (its own thread under
 * checkpoint.async: nothing in it touches the device or MPI) */
static void write_rank_file(trainer *T) {
  struct ckpt_job *j = &T->ck;
  const dt_dp *dp = T->dp;
  /* pipeline and tensor ranks own other slices; the dp group partitions
   * each one's flat buffers */
  j->wrank = dt_ckpt_write_rank(j->tmp, j->meta.step, T->grid.rank, T->m->params,
                                T->m->nparams, dp->own_lo, dp->own_hi, &j->b, dp->opt_lo,
                                &j->err)
                 ? T->grid.rank
                 : T->grid.size;
}

static void *writer_thread(void *arg) {
  trainer *T = arg;
  write_rank_file(T);
  atomic_store(&T->ck.done, 1);
  return NULL;
}

/* A run that ends with an error (exit 2) while a background save is being
 * written must not close HDF5 (its own atexit handler, registered before
 * this one, so run after it) under the writer: wait for the writer first,
 * unless the writer itself is exiting. */
static struct ckpt_job *g_writing; /* the save whose writer runs, else NULL */
static void wait_writer_at_exit(void) {
  struct ckpt_job *j = g_writing;
  if (j && !pthread_equal(pthread_self(), j->tid)) pthread_join(j->tid, NULL);
}

/* Collective: waits for every rank's file of the pending save, then rank 0
 * commits it (meta.h5, rename, LATEST). A rank that could not write (a full
 * disk, say): the half-written step goes, so it neither fills the disk nor
 * passes for a checkpoint, and the first failing rank's message ends the
 * run on every rank. */
static void commit_checkpoint(trainer *T) {
  struct ckpt_job *j = &T->ck;
  if (!j->pending) return;
  if (j->thread) pthread_join(j->tid, NULL);
  g_writing = NULL;
  dt_watchdog_enter("saving a checkpoint");
  int first_bad = T->grid.size;
  MPI_Allreduce(&j->wrank, &first_bad, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first_bad < T->grid.size) {
    if (T->is_root) dt_ckpt_discard(j->tmp);
    MPI_Bcast(j->err.msg, sizeof j->err.msg, MPI_CHAR, first_bad, MPI_COMM_WORLD);
    char who[32] = "", latest[sizeof T->ckpt_dir + 8];
    if (T->grid.size > 1) snprintf(who, sizeof who, " (rank %d)", first_bad);
    snprintf(latest, sizeof latest, "%s/LATEST", T->ckpt_dir);
    dt_die_user_all("saving the checkpoint of step %lld%s: %s; the partial step was removed%s",
                    (long long)j->meta.step, who, j->err.msg,
                    access(latest, F_OK) == 0
                        ? ", and LATEST still names the last complete checkpoint"
                        : " (there is no earlier checkpoint)");
  }
  if (T->is_root) {
    char path[4096];
    dt_error err;
    if (dt_ckpt_commit(T->ckpt_dir, j->tmp, &j->meta, T->config_text,
                       (int)T->cfg->checkpoint_keep, path, sizeof path, &err))
      dt_die_user("saving checkpoint: %s", err.msg);
    char how[128];
    if (j->thread) /* the seconds from its step to the commit, steps included */
      snprintf(how, sizeof how, "written in the background while %lld training step%s ran, "
               "committed %.2f s after its step", (long long)j->steps_during,
               j->steps_during == 1 ? "" : "s", dt_now() - j->t0);
    else
      snprintf(how, sizeof how, "%.2f s", dt_now() - j->t0);
    printf("checkpoint: saved %s (%d rank file%s, %s)%s\n", path, T->grid.size,
           T->grid.size == 1 ? "" : "s", how, j->meta.is_best ? "; BEST names it" : "");
    fflush(stdout);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  dt_watchdog_leave();
  free_host_buffers(&j->b);
  j->pending = j->thread = 0;
}

/* Every rank writes the shard it owns into its own file; rank 0 makes the
 * step directory first and commits it last. The state is copied to the
 * host first; with async the files are written by a thread while training
 * goes on, and committed once every rank's is written (checked after each
 * step) or before the next save and at the end. */
static void save_checkpoint(trainer *T, int async, int is_best) {
  commit_checkpoint(T); /* one save at a time */
  dt_backend_t be = T->be;
  dt_dp *dp = T->dp;
  struct ckpt_job *j = &T->ck;
  j->t0 = dt_now();
  host_buffers(T, &j->b);
  be->d2h(be, j->b.params + dp->pstore_lo, dp->pstore,
          (dp->pstore_hi - dp->pstore_lo) * sizeof(float));
  for (int s = 0; s < T->nstates; s++)
    T->opt_be->d2h(T->opt_be, j->b.states[s], T->d_states[s],
                   (dp->opt_hi - dp->opt_lo) * sizeof(float));
  fill_meta(T, &j->meta);
  j->meta.is_best = is_best;
  dt_error err = {{0}};
  int bad = T->is_root && dt_ckpt_prepare(T->ckpt_dir, T->step, j->tmp, sizeof j->tmp, &err);
  dt_watchdog_enter("saving a checkpoint");
  MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (bad) { /* every rank says rank 0's reason */
    MPI_Bcast(err.msg, sizeof err.msg, MPI_CHAR, 0, MPI_COMM_WORLD);
    dt_die_user("saving checkpoint: %s", err.msg);
  }
  MPI_Bcast(j->tmp, sizeof j->tmp, MPI_CHAR, 0, MPI_COMM_WORLD);
  dt_watchdog_leave();
  j->pending = 1;
  j->steps_during = 0;
  atomic_store(&j->done, 0);
  static int at_exit;
  if (async && !at_exit) at_exit = !atexit(wait_writer_at_exit);
  j->thread = async && pthread_create(&j->tid, NULL, writer_thread, T) == 0;
  if (j->thread) g_writing = j;
  if (j->thread) return;
  write_rank_file(T);
  commit_checkpoint(T);
}

/* After each step: commits a background save once every rank has written
 * its file. sig (this rank's stop signal) rides the same all-reduce, which
 * every step makes anyway when there are several ranks; returns the
 * largest over the ranks. */
static int end_of_step(trainer *T, int sig) {
  struct ckpt_job *j = &T->ck;
  if (j->pending && j->meta.step < T->step) j->steps_during++; /* steps after the save's */
  int v[2] = {sig, j->pending && !atomic_load(&j->done)};
  if (T->grid.size > 1) {
    dt_watchdog_enter("the end-of-step check");
    MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    dt_watchdog_leave();
  }
  if (j->pending && !v[1]) commit_checkpoint(T);
  return v[0];
}

/* Returns 1 if a checkpoint was loaded. Every rank reads the slices its own
 * layout needs from whichever rank files hold them, so a run saved with one
 * dp/ZeRO layout resumes with another. */
static int maybe_resume(trainer *T) {
  dt_error err;
  char path[4096];
  int r = dt_ckpt_resolve(T->cfg->checkpoint_resume, T->ckpt_dir, path, sizeof path, &err);
  if (r < 0) dt_die_user_all("%s", err.msg);
  if (r == 0) return 0;
  dt_ckpt_meta meta;
  fill_meta(T, &meta);
  if (dt_ckpt_read_meta(path, &meta, NULL, &err)) dt_die_user_all("%s", err.msg);
  dt_ckpt_buffers b;
  host_buffers(T, &b);
  dt_dp *dp = T->dp;
  size_t n = T->m->nparams_total;
  if (dt_ckpt_read_range(path, &meta, T->m->params, T->m->nparams, "params", dp->pstore_lo,
                         dp->pstore_hi, b.params + dp->pstore_lo, &err))
    dt_die_user("%s", err.msg);
  for (int s = 0; s < T->nstates; s++)
    if (dt_ckpt_read_range(path, &meta, T->m->params, T->m->nparams, T->state_names[s],
                           dp->opt_lo, dp->opt_hi, b.states[s], &err))
      dt_die_user("%s", err.msg);
  dt_backend_t be = T->be;
  (void)n;
  be->h2d(be, dp->pstore, b.params + dp->pstore_lo,
          (dp->pstore_hi - dp->pstore_lo) * sizeof(float));
  for (int s = 0; s < T->nstates; s++)
    T->opt_be->h2d(T->opt_be, T->d_states[s], b.states[s],
                   (dp->opt_hi - dp->opt_lo) * sizeof(float));
  be->sync(be);
  offload_pull_params(T);
  free_host_buffers(&b);
  if (T->is_root && meta.seed != T->seed)
    printf("note: checkpoint was made with train.seed=%llu; continuing its data order\n",
           (unsigned long long)meta.seed);
  T->seed = meta.seed;
  T->step = meta.step;
  /* checkpoint.keep_best goes on from the best the run had, if it kept the
   * same metric */
  if (meta.best_step > 0 && T->best_metric && !strcmp(meta.best_metric, best_name(T)))
    T->best = meta.best, T->best_step = meta.best_step, T->since_best = meta.best_since;
  T->epoch = meta.epoch;
  T->offset = meta.epoch_offset;
  /* the loader position indexes this epoch's permutation: one past the
   * training set would read beyond it. A batch that no longer fits (a
   * resume with a larger train.batch_size or a smaller data.train_limit)
   * starts the next epoch, as the step that wrote it would have. */
  if (meta.epoch < 0 || meta.epoch_offset < 0 || meta.epoch_offset > T->ntrain)
    dt_die_user_all("checkpoint %s: loader position (epoch %lld, sample %lld) is outside the "
                    "%lld training %s of this run's data",
                    path, (long long)meta.epoch, (long long)meta.epoch_offset,
                    (long long)T->ntrain, T->s2s ? "batches" : "samples");
  if (T->offset + T->batch > T->ntrain) {
    T->epoch++;
    T->offset = 0;
  }
  if (T->is_root)
    printf("resumed from %s at step %lld (epoch %lld, sample %lld of it; saved by dp=%lld "
           "tp=%lld pp=%lld zero=%lld on %lld rank%s)\n",
           path, (long long)T->step, (long long)T->epoch, (long long)T->offset,
           (long long)meta.dp, (long long)meta.tp, (long long)meta.pp, (long long)meta.zero,
           (long long)meta.world,
           meta.world == 1 ? "" : "s");
  return 1;
}

/* ---------- evaluation ---------- */

/* whether this rank holds the last pipeline stage (the losses): always
 * without pipeline parallelism */
static int last_stage(const trainer *T) { return T->grid.pp_rank == T->grid.pp - 1; }

/* An evaluation forward of b (losses into d_losses): through the pipeline's
 * stages, in step with them, or the whole model. Returns whether this rank
 * has the losses (the last stage). */
static int eval_forward(trainer *T, const dt_batch *b) {
  if (!T->pipe) {
    T->m->forward_backward(T->m, b, T->d_losses, 0.0f);
    return 1;
  }
  dt_pipe_forward(T->pipe, b, T->d_losses);
  return last_stage(T);
}

/* ZeRO-3 gathers parameters inside every forward, collectively, so every
 * rank must run as many evaluation forwards as the busiest one: a rank with
 * fewer runs the rest on a throwaway one-sample batch. mine = this rank's
 * forwards, most = the largest count over the group. */
static void eval_pad_forwards(trainer *T, int64_t mine, int64_t most) {
  if (T->dp->zero < 3) return;
  for (int64_t k = mine; k < most; k++) {
    int32_t idx0 = 0;
    int64_t real;
    dt_batch b = T->s2s ? make_s2s_batch(T, &T->pairs_val, T->bat_val.order, 1, &real)
                        : make_batch(T, 1, &idx0, 1);
    eval_forward(T, &b);
    T->be->sync(T->be);
  }
}


/* Each data-parallel rank evaluates its share of the test set; the counts are
 * summed over the group and rank 0 logs them. */
/* Language models: mean loss per token over the validation windows, each
 * rank taking its share. */
static void evaluate_lm(trainer *T, double epoch_f) {
  dt_backend_t be = T->be;
  int64_t n = T->neval;
  int64_t lo = n * T->grid.dp_rank / T->grid.dp, hi = n * (T->grid.dp_rank + 1) / T->grid.dp;
  double sum[DT_BLEND_MAX + 1] = {0}; /* every dataset's, then all of them */
  int32_t *idx = dt_malloc((size_t)T->micro * sizeof(int32_t));
  for (int64_t i0 = lo; i0 < hi; i0 += T->micro) {
    int bn = (int)DT_MIN(T->micro, hi - i0);
    for (int i = 0; i < bn; i++) idx[i] = (int32_t)(i0 + i);
    dt_batch b = make_batch(T, 1, idx, bn);
    if (!eval_forward(T, &b)) continue;
    be->d2h(be, T->h_losses, T->d_losses, (size_t)bn * T->seq * sizeof(float));
    for (int i = 0; i < bn; i++) {
      int64_t win;
      double *to = &sum[tokset_of(T, 1, idx[i], &win)];
      for (int64_t j = 0; j < T->seq; j++) *to += T->h_losses[i * T->seq + j];
    }
  }
  free(idx);
  eval_pad_forwards(T, (hi - lo + T->micro - 1) / T->micro,
                    ((n + T->grid.dp - 1) / T->grid.dp + T->micro - 1) / T->micro);
  for (int d = 0; d < T->nts; d++) sum[d] = pp_sum(T, sum[d]);
  if (T->grid.dp > 1) {
    dt_watchdog_enter("the evaluation all-reduce");
    MPI_Allreduce(MPI_IN_PLACE, sum, T->nts, MPI_DOUBLE, MPI_SUM, T->comm->mpi);
    dt_watchdog_leave();
  }
  if (!T->is_root) return;
  for (int d = 0; d < T->nts; d++) sum[DT_BLEND_MAX] += sum[d];
  double loss = sum[DT_BLEND_MAX] / (double)(n * T->seq);
  T->eval_loss = loss;
  /* a blend of several datasets: each one's loss too, as loss_<name> */
  dt_metric vals[4 + DT_BLEND_MAX] = {{"epoch", epoch_f, 0},
                                      {"loss", loss, 0},
                                      {"perplexity", exp(loss), 0},
                                      {"train_time_s", T->train_time, 0}};
  char names[DT_BLEND_MAX][80];
  int nv = 4;
  for (int d = 0; T->nts > 1 && d < T->nts; d++) {
    snprintf(names[d], sizeof names[d], "loss_%s", T->ts[d].name);
    vals[nv++] = (dt_metric){names[d], sum[d] / (double)(T->ts[d].nwin[1] * T->seq), 0};
  }
  dt_metrics_log(T->metrics, "val", (long)T->step, vals, nv, NULL, NULL, 0);
  printf("eval  step %lld | epoch %.2f | val loss %.4f | perplexity %.1f (%lld tokens)",
         (long long)T->step, epoch_f, loss, exp(loss), (long long)(n * T->seq));
  for (int v = 4; v < nv; v++) printf(" | %s %.4f", vals[v].key, vals[v].value);
  printf("\n");
  fflush(stdout);
}

/* Translation BLEU: greedy translations of the first log.bleu_sentences
 * validation pairs against their references (the target ids decoded back to
 * text: the tokenizer round-trips every line exactly), each rank taking a
 * share; the n-gram statistics are summed over the group. Returns -1 when
 * BLEU cannot be computed in this layout. */
static double validation_bleu(trainer *T, double *chrf) {
  const dt_pair_set *P = &T->pairs_val;
  if (!T->tr || !T->m->p) return -1; /* ZeRO-3: no whole replica to decode with */
  int64_t n = T->cfg->log_bleu_sentences > 0 ? DT_MIN(P->n, T->cfg->log_bleu_sentences) : P->n;
  int64_t lo = n * T->grid.dp_rank / T->grid.dp, hi = n * (T->grid.dp_rank + 1) / T->grid.dp;
  int k = (int)(hi - lo);
  int32_t **src = dt_calloc((size_t)k + 1, sizeof(int32_t *)), **out = dt_calloc((size_t)k + 1, sizeof(int32_t *));
  int *src_len = dt_calloc((size_t)k + 1, sizeof(int)), *out_len = dt_calloc((size_t)k + 1, sizeof(int));
  for (int i = 0; i < k; i++) {
    int64_t p = lo + i, l = P->src_off[p + 1] - P->src_off[p];
    src[i] = dt_malloc((size_t)l * sizeof(int32_t));
    for (int64_t j = 0; j < l; j++) src[i][j] = P->src[P->src_off[p] + j];
    src_len[i] = (int)l;
  }
  dt_translate(T->tr, k, (const int32_t *const *)src, src_len, out, out_len, NULL, NULL);
  dt_bleu_stats bs = {0};
  dt_chrf_stats cs = {0};
  dt_error err;
  for (int i = 0; i < k; i++) {
    int64_t p = lo + i, l = P->tgt_off[p + 1] - P->tgt_off[p];
    int32_t *r = dt_malloc((size_t)l * sizeof(int32_t));
    for (int64_t j = 0; j < l; j++) r[j] = P->tgt[P->tgt_off[p] + j];
    char *hyp = NULL, *reft = NULL;
    size_t bytes;
    if (dt_bpe_decode(T->bpe, out[i], (size_t)out_len[i], &hyp, &bytes, &err) ||
        dt_bpe_decode(T->bpe, r, (size_t)l, &reft, &bytes, &err))
      dt_die_user("validation BLEU: %s", err.msg);
    dt_bleu_add(&bs, hyp, reft);
    dt_chrf_add(&cs, hyp, reft);
    free(hyp), free(reft), free(r), free(src[i]), free(out[i]);
  }
  free(src), free(out), free(src_len), free(out_len);
  if (T->grid.dp > 1) {
    dt_watchdog_enter("the BLEU all-reduce");
    MPI_Allreduce(MPI_IN_PLACE, &bs, (int)DT_BLEU_STATS_N, MPI_INT64_T, MPI_SUM, T->comm->mpi);
    MPI_Allreduce(MPI_IN_PLACE, &cs, (int)DT_CHRF_STATS_N, MPI_INT64_T, MPI_SUM, T->comm->mpi);
    dt_watchdog_leave();
  }
  double bp, prec[DT_BLEU_ORDER];
  *chrf = dt_chrf_score(&cs);
  return dt_bleu_score(&bs, &bp, prec);
}

/* Translation: mean loss per target token over the validation pairs (each
 * rank every dp-th batch), and BLEU when due. */
static void evaluate_s2s(trainer *T, double epoch_f, int with_bleu) {
  dt_backend_t be = T->be;
  const dt_pair_batches *B = &T->bat_val;
  double acc[2] = {0, 0}; /* loss sum, tokens */
  for (int64_t b = T->grid.dp_rank; b < B->nbatches; b += T->grid.dp) {
    int64_t real;
    dt_batch bt = make_s2s_batch(T, &T->pairs_val, B->order + B->start[b],
                                 (int)(B->start[b + 1] - B->start[b]), &real);
    T->m->forward_backward(T->m, &bt, T->d_losses, 0.0f);
    size_t nl = (size_t)bt.n * bt.t;
    be->d2h(be, T->h_losses, T->d_losses, nl * sizeof(float));
    for (size_t i = 0; i < nl; i++) acc[0] += T->h_losses[i];
    acc[1] += (double)real;
  }
  int64_t nb = B->nbatches, dp = T->grid.dp;
  eval_pad_forwards(T, (nb - T->grid.dp_rank + dp - 1) / dp, (nb + dp - 1) / dp);
  if (T->grid.dp > 1) {
    dt_watchdog_enter("the evaluation all-reduce");
    MPI_Allreduce(MPI_IN_PLACE, acc, 2, MPI_DOUBLE, MPI_SUM, T->comm->mpi);
    dt_watchdog_leave();
  }
  double chrf = 0, bleu = with_bleu ? validation_bleu(T, &chrf) : -1;
  if (!T->is_root) return;
  double loss = acc[0] / acc[1];
  T->eval_loss = loss;
  if (bleu >= 0) T->eval_bleu = bleu;
  dt_metric vals[6] = {{"epoch", epoch_f, 0},
                       {"loss", loss, 0},
                       {"perplexity", exp(loss), 0},
                       {"train_time_s", T->train_time, 0}};
  int nv = 4;
  if (bleu >= 0) vals[nv++] = (dt_metric){"bleu", bleu, 0}, vals[nv++] = (dt_metric){"chrf", chrf, 0};
  dt_metrics_log(T->metrics, "val", (long)T->step, vals, nv, NULL, NULL, 0);
  printf("eval  step %lld | epoch %.2f | val loss %.4f | perplexity %.2f (%.0f tokens)",
         (long long)T->step, epoch_f, loss, exp(loss), acc[1]);
  if (bleu >= 0)
    printf(" | BLEU %.2f chrF %.2f (greedy, %lld sentences)", bleu, chrf,
           (long long)(T->cfg->log_bleu_sentences > 0
                           ? DT_MIN(T->pairs_val.n, T->cfg->log_bleu_sentences)
                           : T->pairs_val.n));
  else if (with_bleu)
    printf(" | BLEU not computed with parallel.zero=3");
  printf("\n");
  fflush(stdout);
}

/* Each data-parallel rank evaluates its share of the test set; the counts are
 * summed over the group and rank 0 logs them. */
static void evaluate(trainer *T, double epoch_f) {
  if (T->lm) {
    evaluate_lm(T, epoch_f);
    return;
  }
  if (T->s2s) {
    evaluate_s2s(T, epoch_f, 1);
    return;
  }
  dt_backend_t be = T->be;
  int nc = T->m->num_classes;
  int64_t n = T->neval;
  int64_t lo = n * T->grid.dp_rank / T->grid.dp, hi = n * (T->grid.dp_rank + 1) / T->grid.dp;
  /* [correct, loss, per-class total, per-class correct] summed in doubles */
  double acc_buf[2 + 2 * 64] = {0};
  double *cls_total = acc_buf + 2, *cls_correct = acc_buf + 2 + 64;
  int32_t *idx = dt_malloc((size_t)T->eval_batch * sizeof(int32_t));
  for (int64_t i0 = lo; i0 < hi; i0 += T->eval_batch) {
    int bn = (int)DT_MIN(T->eval_batch, hi - i0);
    for (int i = 0; i < bn; i++) idx[i] = (int32_t)(i0 + i);
    dt_batch b = make_batch(T, 1, idx, bn);
    const float *logits = T->m->forward_backward(T->m, &b, T->d_losses, 0.0f);
    be->d2h(be, T->h_logits, logits, (size_t)bn * nc * sizeof(float));
    be->d2h(be, T->h_losses, T->d_losses, (size_t)bn * sizeof(float));
    for (int i = 0; i < bn; i++) {
      const float *l = T->h_logits + (size_t)i * nc;
      int best = 0;
      for (int k = 1; k < nc; k++)
        if (l[k] > l[best]) best = k;
      int y = T->h_y[i];
      cls_total[y]++;
      if (best == y) acc_buf[0]++, cls_correct[y]++;
      acc_buf[1] += T->h_losses[i];
    }
  }
  free(idx);
  eval_pad_forwards(T, (hi - lo + T->eval_batch - 1) / T->eval_batch,
                    ((n + T->grid.dp - 1) / T->grid.dp + T->eval_batch - 1) / T->eval_batch);
  if (T->grid.dp > 1) {
    dt_watchdog_enter("the evaluation all-reduce");
    MPI_Allreduce(MPI_IN_PLACE, acc_buf, (int)DT_ARRAY_LEN(acc_buf), MPI_DOUBLE, MPI_SUM,
                  T->comm->mpi);
    dt_watchdog_leave();
  }
  if (!T->is_root) return;
  double acc = acc_buf[0] / (double)n, loss = acc_buf[1] / (double)n;
  T->eval_loss = loss, T->eval_acc = acc;
  double cls[64];
  for (int k = 0; k < nc; k++) cls[k] = cls_total[k] ? cls_correct[k] / cls_total[k] : 0;
  dt_metric vals[] = {{"epoch", epoch_f, 0},
                      {"loss", loss, 0},
                      {"accuracy", acc, 0},
                      {"train_time_s", T->train_time, 0}};
  dt_metrics_log(T->metrics, "test", (long)T->step, vals, 4, "class_accuracy", cls, nc);
  printf("eval  step %lld | epoch %.2f | test loss %.4f | test accuracy %.2f%% (%.0f/%lld)\n",
         (long long)T->step, epoch_f, loss, 100 * acc, acc_buf[0], (long long)n);
  fflush(stdout);
}

/* ---------- the loop ---------- */

/* checkpoint.keep_best, train.early_stop: whether the evaluation just made
 * improved the metric (rank 0 has the values and decides; every rank
 * learns it). An evaluation that did not compute the metric (BLEU is
 * computed every log.bleu_every steps) counts neither way. */
static int improved_best(trainer *T) {
  if (!T->best_metric) return 0;
  const int lower = T->best_metric == BEST_LOSS;
  double v = lower ? T->eval_loss : T->best_metric == BEST_ACCURACY ? T->eval_acc : T->eval_bleu;
  /* 0: not computed, 1: better, 2: not better */
  int state = !T->is_root || !isfinite(v) ? 0
              : T->best_step <= 0 || (lower ? v < T->best : v > T->best) ? 1
                                                                           : 2;
  if (T->grid.size > 1) {
    dt_watchdog_enter("the keep_best decision");
    MPI_Bcast(&state, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Bcast(&v, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    dt_watchdog_leave();
  }
  T->eval_loss = T->eval_acc = T->eval_bleu = NAN;
  if (state != 1) {
    T->since_best += state == 2;
    return 0;
  }
  T->since_best = 0;
  if (T->is_root) {
    char was[96] = "";
    if (T->best_step > 0)
      snprintf(was, sizeof was, " (was %.4f at step %lld)", T->best, (long long)T->best_step);
    printf("best: %s %s %.4f at step %lld%s\n", T->lm || T->s2s ? "val" : "test",
           best_name(T), v, (long long)T->step, was);
  }
  T->best = v, T->best_step = T->step;
  return 1;
}

static void setup_parallel(trainer *T) {
  const dt_config *c = T->cfg;
  dt_error err;
  if (dt_grid_init(&T->grid, (int)c->parallel_dp, (int)c->parallel_tp, (int)c->parallel_pp,
                   &err))
    dt_die_user_all("%s", err.msg);
  T->is_root = T->grid.rank == 0;
  dt_set_rank(T->grid.rank);
  if (T->grid.size > 1) dt_watchdog_start();
}

/* the model's tensor-parallel collectives (m->tp_allreduce, tp_allgather,
 * tp_reduce_scatter) */
static void tp_allreduce(void *ctx, float *x, size_t n) {
  dt_comm_t c = ctx;
  dt_watchdog_enter("a tensor-parallel all-reduce");
  double t0 = dt_profile_comm_begin();
  c->allreduce(c, x, x, n, DT_F32, DT_SUM);
  dt_profile_comm_end(DT_PROF_TP_ALLREDUCE, t0, (double)n * sizeof(float));
  dt_watchdog_leave();
}

static void tp_allgather(void *ctx, const void *send, void *recv, size_t n, dt_dtype t) {
  dt_comm_t c = ctx;
  dt_watchdog_enter("a tensor-parallel all-gather");
  double t0 = dt_profile_comm_begin();
  c->allgather(c, send, recv, n, t);
  dt_profile_comm_end(DT_PROF_TP_ALLGATHER, t0, (double)n * c->size * dt_dtype_size(t));
  dt_watchdog_leave();
}

static void tp_reduce_scatter(void *ctx, const float *send, float *recv, size_t n) {
  dt_comm_t c = ctx;
  dt_watchdog_enter("a tensor-parallel reduce-scatter");
  double t0 = dt_profile_comm_begin();
  c->reduce_scatter(c, send, recv, n, DT_F32, DT_SUM);
  dt_profile_comm_end(DT_PROF_TP_REDUCE_SCATTER, t0, (double)n * c->size * sizeof(float));
  dt_watchdog_leave();
}

static dt_comm_t make_comm(trainer *T, const char *kind, MPI_Comm group) {
  if (strcmp(kind, "nccl") != 0) return dt_comm_mpi_create(group, T->be);
  dt_error err;
  dt_comm_t c = dt_comm_nccl_create(group, T->be, &err);
  if (!c) dt_die_user_all("[parallel] comm = nccl: %s", err.msg);
  return c;
}

static void setup_comm(trainer *T) {
  const char *kind = T->cfg->parallel_comm;
  if (!strcmp(kind, "auto")) kind = T->be->device == DT_DEVICE_CUDA ? "nccl" : "mpi";
  T->comm = make_comm(T, kind, T->grid.dp_comm);
  if (T->grid.tp > 1) T->tp_comm = make_comm(T, kind, T->grid.tp_comm);
  if (T->grid.pp > 1) {
    T->pp_comm = make_comm(T, kind, T->grid.pp_comm);
    /* the tied token table's two copies (first and last stage), per
     * tensor-parallel part: where each rank's optimizer sees the whole
     * gradient (ZeRO-0, or one data-parallel rank) the two ranks of a
     * data-parallel position; else every data-parallel rank of both stages
     * (tie_embedding_grads) */
    const dt_grid *g = &T->grid;
    int ends = g->pp_rank == 0 || g->pp_rank == g->pp - 1;
    T->tie_pairs = T->cfg->parallel_zero == 0 || g->dp == 1;
    MPI_Comm emb;
    MPI_Comm_split(MPI_COMM_WORLD,
                   !ends ? MPI_UNDEFINED : T->tie_pairs ? g->dp_rank * g->tp + g->tp_rank
                                                        : g->tp_rank,
                   g->rank, &emb);
    if (ends) {
      T->emb_comm = make_comm(T, kind, emb);
      MPI_Comm_free(&emb);
    }
  }
  if (T->is_root && T->grid.dp > 1)
    printf("data parallel: %d ranks over %s\n", T->grid.dp, T->comm->kind);
  if (T->is_root && T->tp_comm)
    printf("tensor parallel: %d ranks over %s%s\n", T->grid.tp, T->tp_comm->kind,
           T->cfg->parallel_sequence_parallel ? ", sequence parallel (each rank holds 1/tp of the "
                                           "residual stream's tokens)" : "");
  if (T->is_root && T->pp_comm) {
    /* what the schedule leaves idle: (pp-1) of the M+pp-1 slots a stage
     * takes per step */
    const long M = (long)(T->rank_batch / T->micro), P = T->grid.pp;
    printf("pipeline parallel: %ld stages over %s; %ld micro-batch%s a step, so each stage "
           "idles %.0f%% of it in the %s bubble, (pp-1)/(M+pp-1)\n", P, T->pp_comm->kind, M,
           M == 1 ? "" : "es", 100.0 * (double)(P - 1) / (double)(M + P - 1),
           strcmp(T->cfg->parallel_pp_schedule, "gpipe") ? "1F1B" : "GPipe");
    if (M < P)
      printf("note: fewer micro-batches a step than stages: raise train.batch_size or lower "
             "train.micro_batch_size\n");
  }
}

/* Rank 0 prints what each rank keeps, in bytes, after the first step (when
 * ZeRO-3's gather slots and the bucket buffers have their size); the ZeRO
 * paper's accounting for fp32 Adam is params 4P (ZeRO-3: 4P/Nd, plus here
 * two layers being gathered), grads 4P (ZeRO-2/3: 4P/Nd), optimizer 8P
 * (ZeRO>=1: 8P/Nd), P parameters over Nd data-parallel ranks. Under
 * ZeRO-2/3 the last column gives the buffers backward writes before the
 * reduce-scatter (a few buckets), which are peak memory too. */
static void print_memory(trainer *T) {
  size_t pb, gb, ob;
  dt_dp_memory(T->dp, T->nstates, &pb, &gb, &ob);
  /* the first and last pipeline stages may also keep the token table's
   * gradient exchange buffer (tie_embedding_grads) */
  if (T->d_tied)
    gb += T->m->params[dt_model_find_param(T->m, "wte.weight")].count * sizeof(float);
  double row[5] = {(double)pb, (double)gb, (double)ob, (double)T->m->activation_bytes,
                   (double)dt_dp_grad_scratch_bytes(T->dp)};
  double *all = T->is_root ? dt_malloc(sizeof row * (size_t)T->grid.size) : NULL;
  MPI_Gather(row, 5, MPI_DOUBLE, all, 5, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  if (!T->is_root) return;
  printf("memory per rank (bytes): zero=%ld, %zu parameters\n", T->cfg->parallel_zero,
         T->m->nparams_total);
  const int scratch = T->dp->zero >= 2; /* backward's buffers are not the grads column */
  printf("  rank        params         grads     optimizer   activations%s\n",
         scratch ? "  grad scratch" : "");
  for (int r = 0; r < T->grid.size; r++) {
    double *x = all + 5 * r;
    printf("  %4d  %12.0f  %12.0f  %12.0f  %12.0f", r, x[0], x[1], x[2], x[3]);
    if (scratch) printf("  %12.0f", x[4]);
    printf("\n");
  }
  if (scratch)
    printf("  (grad scratch: the bucket buffers backward writes, reduce-scattered into the "
           "grads shard; the whole model's on one data-parallel rank)\n");
  if (T->dp->wire == DT_BF16 && T->grid.dp > 1)
    printf("  (parallel.reduce_dtype = bf16: %s holds the bf16 copies gradients are reduced "
           "in)\n", scratch ? "grad scratch" : "grads");
  if (T->grid.pp > 1)
    printf("  (pipeline: activations for the micro-batches a stage keeps in flight%s)\n",
           T->tie_pairs ? "" : "; grads on the first and last stages include a buffer of the "
                               "token table's size, where the two copies' gradients are summed");
  fflush(stdout);
  free(all);
}

/* model.init_from: Hugging Face GPT-2 weights replace the seeded init in the
 * full host copy, on every rank alike, before the engine hands each rank its
 * slice, so every dp/ZeRO layout starts from them. A run that resumes takes
 * its weights from the checkpoint instead. */
static void import_weights(trainer *T, float *hp) {
  const dt_config *c = T->cfg;
  if (!c->model_init_from[0]) return;
  dt_error err;
  char path[4096], file[4200];
  if (dt_ckpt_resolve(c->checkpoint_resume, T->ckpt_dir, path, sizeof path, &err) > 0) {
    if (T->is_root) printf("init: resuming, so [model] init_from = %s is not read\n",
                           c->model_init_from);
    return;
  }
  if (strcmp(T->m->family, "gpt") != 0)
    dt_die_user_all("[model] init_from = %s: only gpt models start from Hugging Face GPT-2 "
                    "weights (model.name = %s)", c->model_init_from, c->model_name);
  /* a whole model is read in place; a part (tensor or pipeline
   * parallelism) reads the whole model, then keeps its stage's tensors or
   * their parts */
  const dt_model *m = T->m;
  int nwhole;
  size_t total;
  dt_param *whole = dt_gpt_whole_table(c, &nwhole, &total);
  const int part = m->tp_n > 1 || m->pp_n > 1;
  float *full = part ? dt_malloc(total * sizeof(float)) : hp;
  if (dt_hf_gpt2_import(c->model_init_from, c, whole, nwhole, full, file, sizeof file, &err))
    dt_die_user_all("[model] init_from: %s", err.msg);
  if (part) {
    for (int i = 0; i < m->nparams; i++) {
      int j = 0;
      while (strcmp(whole[j].name, m->params[i].name)) j++; /* stages keep the model's names */
      dt_param_extract(&m->params[i], full + whole[j].offset, hp + m->params[i].offset);
    }
    free(full);
  }
  free(whole);
  if (T->is_root) printf("init: %zu parameters from %s\n", total, file);
}

int dt_train_batches(const dt_config *c, int dp, dt_batches *out, dt_error *err) {
  out->batch = c->train_batch_size;
  if (!strcmp(c->model_name, "transformer")) {
    /* a step is one token-count batch of at most batch_size sentences; each
     * rank runs its share in forwards of at most micro_batch_size sentences */
    out->micro = c->train_micro_batch_size ? c->train_micro_batch_size : out->batch / dp;
    if (out->micro < 1)
      return dt_error_set(err, "[train] batch_size = %lld leaves no sentence for each of "
                          "parallel.dp = %d ranks", (long long)out->batch, dp);
    out->batch = out->rank_batch = 1;
    return 0;
  }
  if (out->batch % dp != 0)
    return dt_error_set(err, "[train] batch_size = %lld is not divisible by parallel.dp = %d",
                        (long long)out->batch, dp);
  out->rank_batch = out->batch / dp;
  out->micro = c->train_micro_batch_size ? c->train_micro_batch_size : out->rank_batch;
  if (out->rank_batch % out->micro != 0)
    return dt_error_set(err, "[train] micro_batch_size = %lld does not divide the per-rank "
                        "batch batch_size/dp = %lld",
                        (long long)out->micro, (long long)out->rank_batch);
  return 0;
}

int dt_train_max_batch(const dt_config *c, int64_t micro) {
  if (!strcmp(c->model_name, "gpt") || !strcmp(c->model_name, "transformer")) return (int)micro;
  return (int)DT_MAX(micro, c->train_eval_batch_size);
}

static void setup(trainer *T, const dt_config *c) {
  T->cfg = c;
  if (c->log_dir[0]) snprintf(T->run_dir, sizeof T->run_dir, "%s", c->log_dir);
  else snprintf(T->run_dir, sizeof T->run_dir, "runs/%s", c->name[0] ? c->name : "run");
  if (c->checkpoint_dir[0]) snprintf(T->ckpt_dir, sizeof T->ckpt_dir, "%s", c->checkpoint_dir);
  else snprintf(T->ckpt_dir, sizeof T->ckpt_dir, "%.*s/checkpoints", DT_STR, T->run_dir);
  T->seed = (uint64_t)c->train_seed;
  T->perm_epoch = -1;
  setup_parallel(T);

  T->s2s = !strcmp(c->model_name, "transformer");
  if (c->data_blend[0] && strcmp(c->model_name, "gpt") != 0)
    dt_die_user_all("[data] blend: only gpt trains on blended token datasets (model.name = "
                    "%s reads data.dir)", c->model_name);
  /* checkpoint.keep_best: a metric this model's evaluation computes */
  const char *kb = c->checkpoint_keep_best;
  T->keep_best = strcmp(kb, "none") != 0;
  T->best_metric = !strcmp(kb, "loss") ? BEST_LOSS : !strcmp(kb, "accuracy") ? BEST_ACCURACY
                   : !strcmp(kb, "bleu") ? BEST_BLEU : 0;
  if (!T->best_metric && c->train_early_stop > 0) T->best_metric = BEST_LOSS;
  T->eval_loss = T->eval_acc = T->eval_bleu = NAN;
  const int classifier = !T->s2s && !strcmp(c->model_name, "lenet5");
  if (T->best_metric == BEST_ACCURACY && !classifier)
    dt_die_user_all("[checkpoint] keep_best = accuracy: only classifiers (lenet5) report an "
                    "accuracy; model.name = %s evaluates loss%s", c->model_name,
                    T->s2s ? " and bleu" : "");
  if (T->best_metric == BEST_BLEU && (!T->s2s || c->parallel_zero >= 3))
    dt_die_user_all("[checkpoint] keep_best = bleu: %s", !T->s2s
                    ? "only the transformer computes BLEU"
                    : "BLEU is not computed under parallel.zero = 3 (no whole replica to "
                      "decode with); keep the best loss instead");
  dt_batches bs;
  dt_error berr;
  if (dt_train_batches(c, T->grid.dp, &bs, &berr)) dt_die_user_all("%s", berr.msg);
  T->batch = bs.batch, T->rank_batch = bs.rank_batch, T->micro = bs.micro;
  T->eval_batch = c->train_eval_batch_size;

  dt_error err;
  T->be = dt_backend_create(c->train_device, T->grid.local_rank, cpu_threads(T), &err);
  if (!T->be) dt_die_user_all("[train] device = %s: %s", c->train_device, err.msg);
  if (!strcmp(c->train_precision, "auto")) {
    /* bf16 where the tensor cores make it fast; the run directory's
     * config.ini and the checkpoints record what was decided */
    T->resolved = *c;
    snprintf(T->resolved.train_precision, sizeof T->resolved.train_precision, "%s",
             T->be->device == DT_DEVICE_CUDA ? "bf16" : "fp32");
    c = T->cfg = &T->resolved;
  }
  T->config_text = dt_config_to_text(c);
  T->be->set_matmul_precision(T->be, strcmp(c->train_precision, "bf16") ? DT_PREC_FP32
                                                                        : DT_PREC_BF16);
  if (T->grid.size > 1) dt_grid_print(&T->grid, T->be->desc, stdout);
  if (c->log_profile) T->prof = dt_profile_install(T->be);
  setup_comm(T);

  /* language models evaluate in training micro-batches; classifiers in
   * train.eval_batch_size */
  T->lm = !strcmp(c->model_name, "gpt");
  int maxb = dt_train_max_batch(c, T->micro);
  /* what runs out of memory from here to the end of setup is sized by keys */
  char hint[400];
  snprintf(hint, sizeof hint,
           "%.32s's parameters, optimizer state and activations for %d %s a forward "
           "([train] micro_batch_size%s): lower it, or set train.recompute (gpt), "
           "train.precision = bf16 or parallel.zero (dtrain --print-memory=GIB plans "
           "what fits)",
           c->model_name, maxb, T->lm ? "sequences" : T->s2s ? "sentences" : "samples",
           T->lm || T->s2s ? "" : " or eval_batch_size");
  dt_set_oom_hint(hint);
  /* a pipeline stage keeps the activations of the micro-batches its
   * schedule has in flight */
  const int nmicro = T->s2s ? 1 : (int)(T->rank_batch / T->micro);
  const int gpipe = !strcmp(c->parallel_pp_schedule, "gpipe");
  const dt_model_part part = {T->grid.tp, T->grid.tp_rank, T->grid.pp, T->grid.pp_rank,
                              dt_pipe_slots(T->grid.pp_rank, T->grid.pp, nmicro, gpipe)};
  T->m = dt_model_create_part(c, T->be, maxb, &part, &err);
  if (!T->m) dt_die_user_all("%s", err.msg);
  T->m->tp_allreduce = tp_allreduce;
  T->m->tp_allgather = tp_allgather;
  T->m->tp_reduce_scatter = tp_reduce_scatter;
  T->m->tp_ctx = T->tp_comm;
  T->seq = T->lm ? T->m->max_t : 0;
  load_data(T);
  if (T->batch > T->ntrain)
    dt_die_user_all("[train] batch_size = %lld is larger than the %lld training samples",
                    (long long)T->batch, (long long)T->ntrain);
  T->steps_per_epoch = T->ntrain / T->batch; /* the last partial batch is dropped */
  T->total_steps = c->train_max_steps > 0 ? c->train_max_steps : c->train_epochs * T->steps_per_epoch;
  T->dp = dt_dp_create(T->comm, T->be, T->m->params, T->m->nparams, T->m->nparams_total,
                       T->m->g, (int)c->parallel_zero, c->parallel_bucket_mb,
                       dt_train_reduce_dtype(c));
  T->m->grad_hook = dt_dp_grad_ready;
  T->m->grad_hook_ctx = T->dp;
  if (T->pp_comm) {
    T->pipe = dt_calloc(1, sizeof *T->pipe);
    dt_pipe_init(T->pipe, T->pp_comm, T->m, T->dp, gpipe, nmicro,
                 (size_t)maxb * (size_t)T->m->max_t * (size_t)T->m->stage_width);
  }
  if (T->emb_comm && !T->tie_pairs) {
    const dt_param *wte = &T->m->params[dt_model_find_param(T->m, "wte.weight")];
    T->d_tied = T->be->alloc(T->be, wte->count * sizeof(float));
  }
  if (dt_dp_grads_sharded(T->dp)) {
    /* ZeRO-2/3: backward writes into the engine's bucket buffers; the
     * model's flat gradient buffer is not needed */
    T->be->free(T->be, T->m->g);
    T->m->g = T->dp->g = NULL;
    T->m->grad_ptr = dt_dp_grad_ptr;
    T->m->grad_ptr_ctx = T->dp;
  }
  if (c->parallel_zero >= 3) { /* the model sees parameters only as gathered layers */
    T->m->p = NULL;
    T->m->param_ptr = T->dp->param_ptr;
    T->m->param_fetch = dt_dp_fetch;
    T->m->param_release = dt_dp_release;
    T->m->param_hook_ctx = T->dp;
  } else {
    T->m->p = T->dp->pstore;
  }

  dt_backend_t be = T->be;
  float *hp = dt_malloc(T->m->nparams_total * sizeof(float));
  T->m->init(T->m, hp, T->seed); /* same seed on every rank: identical replicas */
  import_weights(T, hp);
  be->h2d(be, T->dp->pstore, hp + T->dp->pstore_lo,
          (T->dp->pstore_hi - T->dp->pstore_lo) * sizeof(float));
  be->sync(be);
  free(hp);
  setup_optimizer(T);
  offload_pull_params(T);

  size_t rows = (size_t)maxb * (T->lm ? (size_t)T->seq : 1); /* targets and losses */
  if (T->s2s) rows = (size_t)maxb * (size_t)DT_MAX(T->m->max_t, T->m->max_src_t);
  const size_t slots = (size_t)DT_MAX(1, T->m->nslots); /* token and target buffers */
  T->h_idx = be->host_alloc(be, (size_t)maxb * sizeof(int32_t));
  /* a pipeline stage's host runs ahead of its device by several
   * micro-batches with no read-back between them: pageable buffers, whose
   * asynchronous upload copies the source before returning, so a slot's
   * buffer can be refilled while the device has not yet run its last
   * upload (pinned ones would be read by the DMA later) */
  const int pageable = T->grid.pp > 1;
  T->h_y = pageable ? dt_malloc(slots * rows * sizeof(int32_t))
                    : be->host_alloc(be, slots * rows * sizeof(int32_t));
  T->d_idx = be->alloc(be, (size_t)maxb * sizeof(int32_t));
  T->d_y = be->alloc(be, slots * rows * sizeof(int32_t));
  /* a pipeline's last stage keeps a whole step's losses */
  const size_t lrows = T->pp_comm ? DT_MAX(rows, (size_t)T->rank_batch * (size_t)T->seq) : rows;
  T->d_losses = be->alloc(be, lrows * sizeof(float));
  T->h_losses = be->host_alloc(be, lrows * sizeof(float));
  if (T->lm || T->s2s) {
    T->h_tok = pageable ? dt_malloc(slots * rows * sizeof(int32_t))
                        : be->host_alloc(be, slots * rows * sizeof(int32_t));
    T->d_tok = be->alloc(be, slots * rows * sizeof(int32_t));
  }
  if (T->s2s) {
    T->h_src = be->host_alloc(be, rows * sizeof(int32_t));
    T->d_src = be->alloc(be, rows * sizeof(int32_t));
    T->h_slen = be->host_alloc(be, (size_t)maxb * sizeof(int32_t));
    T->d_slen = be->alloc(be, (size_t)maxb * sizeof(int32_t));
    T->h_tlen = be->host_alloc(be, (size_t)maxb * sizeof(int32_t));
    T->d_tlen = be->alloc(be, (size_t)maxb * sizeof(int32_t));
    /* validation BLEU decodes with the tokenizer the shards were made with */
    char tokdir[DT_STR + 16];
    snprintf(tokdir, sizeof tokdir, "%s/tokenizer", c->data_dir);
    T->bpe = dt_bpe_load(tokdir, &err);
    if (!T->bpe) dt_die_user_all("[data] dir = %s: %s", c->data_dir, err.msg);
    if (dt_bpe_vocab_size(T->bpe) != T->pairs_train.vocab)
      dt_die_user_all("[data] dir = %s: the tokenizer has %d ids but train.h5 %lld", c->data_dir,
                      dt_bpe_vocab_size(T->bpe), (long long)T->pairs_train.vocab);
    if (c->parallel_zero < 3) {
      dt_translate_opts o = {.beam = 1, .alpha = 0, .len_a = c->decode_max_len_a,
                             .len_b = (int)c->decode_max_len_b,
                             .max_sent = (int)DT_MIN(c->decode_batch, T->micro),
                             .pad = (int32_t)T->pairs_train.pad, .bos = (int32_t)T->pairs_train.bos,
                             .eos = (int32_t)T->pairs_train.eos};
      T->tr = dt_translator_create(T->m, &o, &err);
      if (!T->tr) dt_die_user_all("validation BLEU: %s", err.msg);
    }
  } else if (!T->lm) {
    T->d_x = be->alloc(be, (size_t)maxb * T->train.h * T->train.w * sizeof(float));
    T->h_logits = be->host_alloc(be, (size_t)maxb * T->m->num_classes * sizeof(float));
  }
  T->d_sumsq = be->alloc(be, ((size_t)T->m->nparams + 1) * sizeof(float));
  T->perm = dt_malloc((size_t)T->ntrain * sizeof(int32_t));
  dt_set_oom_hint(NULL);
}

static void teardown(trainer *T) {
  dt_backend_t be = T->be;
  dt_profile_remove(T->prof);
  if (T->metrics) dt_metrics_close(T->metrics);
  for (int s = 0; s < T->nstates; s++) T->opt_be->free(T->opt_be, T->d_states[s]);
  if (T->h_p) be->host_free(be, T->h_p), be->host_free(be, T->h_g);
  if (T->opt_be != be) dt_backend_destroy(T->opt_be);
  be->free(be, T->d_train_images);
  be->free(be, T->d_test_images);
  be->host_free(be, T->h_idx);
  if (T->grid.pp > 1) free(T->h_y), free(T->h_tok), T->h_y = T->h_tok = NULL;
  be->host_free(be, T->h_y);
  be->host_free(be, T->h_losses);
  be->host_free(be, T->h_logits);
  be->free(be, T->d_idx);
  be->free(be, T->d_y);
  be->free(be, T->d_x);
  be->host_free(be, T->h_tok);
  be->free(be, T->d_tok);
  if (T->s2s) {
    dt_translator_free(T->tr);
    dt_bpe_free(T->bpe);
    be->host_free(be, T->h_src), be->free(be, T->d_src);
    be->host_free(be, T->h_slen), be->free(be, T->d_slen);
    be->host_free(be, T->h_tlen), be->free(be, T->d_tlen);
    dt_pair_batches_free(&T->bat_train), dt_pair_batches_free(&T->bat_val);
    dt_pair_set_free(&T->pairs_train), dt_pair_set_free(&T->pairs_val);
  }
  for (int d = 0; d < T->nts; d++)
    for (int i = 0; i < 2; i++)
      if (T->ts[d].tok[i].tokens) dt_token_map_free(&T->ts[d].tok[i]);
  dt_blend_free(&T->blend);
  be->free(be, T->d_losses);
  be->free(be, T->d_sumsq);
  dt_dp_destroy(T->dp);
  dt_comm_destroy(T->comm);
  dt_comm_destroy(T->tp_comm);
  dt_comm_destroy(T->pp_comm);
  dt_comm_destroy(T->emb_comm);
  dt_pipe_free(T->pipe);
  free(T->pipe);
  if (T->d_tied) be->free(be, T->d_tied);
  dt_model_destroy(T->m);
  dt_backend_destroy(be);
  dt_grid_free(&T->grid);
  dt_image_set_free(&T->train);
  dt_image_set_free(&T->test);
  free(T->perm);
  free(T->config_text);
}

/* Translation: one step is one token-count batch. Its n sentences (a
 * multiple of dp) are split evenly over the ranks and each rank's share into
 * micro-batches of at most train.micro_batch_size; the loss is the mean over
 * the batch's target tokens, so every rank scales by the same 1/tokens. */
static double train_step_s2s(trainer *T) {
  dt_backend_t be = T->be;
  dt_model *m = T->m;
  const dt_pair_batches *B = &T->bat_train;
  int64_t b = epoch_perm(T, T->epoch)[T->offset];
  int64_t n = B->start[b + 1] - B->start[b], per_rank = n / T->grid.dp;
  const int32_t *mine = B->order + B->start[b] + per_rank * T->grid.dp_rank;
  int64_t nmicro = (per_rank + T->micro - 1) / T->micro;
  float dscale = (float)(1.0 / (double)B->ntgt[b]);
  double loss_sum = 0;
  for (int64_t j = 0; j < nmicro; j++) {
    int first = j == 0, last = j + 1 == nmicro;
    if (first && m->g) be->memset0(be, m->g, m->nparams_total * sizeof(float));
    dt_dp_micro_begin(T->dp, first, last);
    int64_t lo = per_rank * j / nmicro, hi = per_rank * (j + 1) / nmicro;
    int64_t real;
    dt_batch bt = make_s2s_batch(T, &T->pairs_train, mine + lo, (int)(hi - lo), &real);
    bt.seed = dropout_seed(T);
    bt.sample0 = per_rank * T->grid.dp_rank + lo; /* the first sentence's place in the batch */
    m->forward_backward(m, &bt, T->d_losses, dscale);
    size_t nl = (size_t)bt.n * bt.t;
    be->d2h(be, T->h_losses, T->d_losses, nl * sizeof(float));
    for (size_t i = 0; i < nl; i++) loss_sum += T->h_losses[i];
    dt_dp_micro_end(T->dp);
  }
  T->step_tokens = B->ntgt[b];
  T->step_samples = n;
  return dt_dp_sum(T->dp, loss_sum) / (double)B->ntgt[b];
}

/* The pipeline's micro-batch j of this step (dt_pipe_batch_fn) */
static dt_batch pipe_train_batch(void *ctx, int64_t j, int slot) {
  trainer *T = ctx;
  dt_batch b = make_lm_batch(T, 0, T->pipe_perm + j * T->micro, (int)T->micro, slot);
  b.seed = dropout_seed(T);
  b.sample0 = T->grid.dp_rank * T->rank_batch + j * T->micro;
  return b;
}

/* The sum of x over the pipeline group (the losses live on the last stage). */
static double pp_sum(trainer *T, double x) {
  if (!T->pp_comm) return x;
  dt_watchdog_enter("an all-reduce of step statistics over the pipeline");
  MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_SUM, T->grid.pp_comm);
  dt_watchdog_leave();
  return x;
}

/* One optimizer step: this rank's rank_batch samples of the global batch in
 * micro-batches, gradients reduced over the data-parallel group. Returns the
 * mean loss over the global batch. */
static double train_step(trainer *T) {
  if (T->s2s) return train_step_s2s(T);
  dt_backend_t be = T->be;
  dt_model *m = T->m;
  const int32_t *perm = epoch_perm(T, T->epoch) + T->offset + T->grid.dp_rank * T->rank_batch;
  double loss_sum = 0;
  /* the loss is the mean over the global batch's samples (or tokens); summing
   * the gradients over ranks then gives its gradient */
  double per_step = (double)T->batch * (T->lm ? (double)T->seq : 1.0);
  float dscale = (float)(1.0 / per_step);
  if (T->pipe) { /* the micro-batches flow through the stages (pipeline.h) */
    if (m->g) be->memset0(be, m->g, m->nparams_total * sizeof(float));
    T->pipe_perm = perm;
    const size_t nl = (size_t)T->rank_batch * (size_t)T->seq; /* this rank's tokens */
    dt_pipe_train_step(T->pipe, T->rank_batch / T->micro, dscale, pipe_train_batch, T,
                       T->d_losses, (size_t)T->micro * (size_t)T->seq);
    if (last_stage(T)) { /* the losses of the whole step, read once */
      be->d2h(be, T->h_losses, T->d_losses, nl * sizeof(float));
      for (size_t i = 0; i < nl; i++) loss_sum += T->h_losses[i];
    }
    return pp_sum(T, dt_dp_sum(T->dp, loss_sum)) / per_step;
  }
  for (int64_t j = 0; j < T->rank_batch; j += T->micro) {
    int first = j == 0, last = j + T->micro == T->rank_batch;
    /* micro-batches add up in the model's gradient buffer; under ZeRO-2/3
     * over several ranks there is none: each one's buckets are reduced into
     * the shard accumulator from buffers that start zeroed */
    if (first && m->g) be->memset0(be, m->g, m->nparams_total * sizeof(float));
    dt_dp_micro_begin(T->dp, first, last);
    int n = (int)T->micro;
    dt_batch b = make_batch(T, 0, perm + j, n);
    b.seed = dropout_seed(T);
    b.sample0 = T->grid.dp_rank * T->rank_batch + j;
    m->forward_backward(m, &b, T->d_losses, dscale);
    size_t nl = (size_t)n * (T->lm ? (size_t)T->seq : 1);
    be->d2h(be, T->h_losses, T->d_losses, nl * sizeof(float));
    for (size_t i = 0; i < nl; i++) loss_sum += T->h_losses[i];
    dt_dp_micro_end(T->dp);
  }
  return dt_dp_sum(T->dp, loss_sum) / per_step;
}

/* s seconds as "42 s", "12m05s" or "3h07m", for the console's eta */
static void fmt_duration(char *buf, size_t cap, double s) {
  long t = s > 0 ? (long)(s + 0.5) : 0;
  if (t < 60) snprintf(buf, cap, "%ld s", t);
  else if (t < 3600) snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
  else snprintf(buf, cap, "%ldh%02ldm", t / 3600, t % 3600 / 60);
}

/* The time left: this process's wall time per step so far (evaluation and
 * checkpoints included) times the steps left, or what train.max_time_s
 * leaves of training time at this run's ratio of wall to training time,
 * whichever ends first. */
static double eta_s(const trainer *T, double wall, int64_t nrun) {
  if (nrun <= 0) return 0.0;
  double left = wall / (double)nrun * (double)(T->total_steps - T->step);
  double budget = T->cfg->train_max_time_s;
  if (budget > 0 && T->train_time > 0)
    left = fmin(left, fmax(0.0, budget - T->train_time) * wall / T->train_time);
  return left;
}

/* The step log's model TFLOP/s and MFU (GPT). Model FLOPs a token are
 * PaLM's count, as bench/gpt.sh's: 6N for the matmuls of forward and
 * backward over every parameter (the tied token table once, for the LM
 * head; the embedding lookups are not matmuls but the usual count keeps
 * them) and 12 L T d for attention's two T x T products; recompute is
 * not counted (it is hardware FLOPs, not model FLOPs). The peak is
 * log.peak_tflops, else the bf16 dense peak of a GPU known by name when
 * the run is bf16 (an fp32 run has no tensor-core peak to be measured
 * against). */
static void set_flops(trainer *T, size_t nwhole) {
  const dt_config *c = T->cfg;
  T->flops_tok = 6.0 * (double)nwhole + 12.0 * (double)c->model_n_layer * (double)T->seq *
                                            (double)c->model_n_embd;
  T->peak_tflops = c->log_peak_tflops;
  if (T->peak_tflops > 0 || T->be->device != DT_DEVICE_CUDA ||
      strcmp(c->train_precision, "bf16"))
    return;
  static const struct {
    const char *name;
    double peak;
  } known[] = {{"H200", 989}, {"H100 PCIe", 756}, {"H100", 989}, {"A100", 312}};
  for (size_t i = 0; i < DT_ARRAY_LEN(known); i++)
    if (strstr(T->be->desc, known[i].name)) {
      T->peak_tflops = known[i].peak;
      break;
    }
}

/* [log] profile: rank 0's table on the console and in RUN/profile.txt */
static void print_profile(const trainer *T) {
  dt_profile_print(T->prof, stdout, "step");
  char path[DT_STR * 2 + 16];
  snprintf(path, sizeof path, "%s/profile.txt", T->run_dir);
  FILE *f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "dtrain: warning: cannot write %s: %s\n", path, strerror(errno));
    return;
  }
  dt_profile_print(T->prof, f, "step");
  fclose(f);
}

/* [log] trace_steps: every rank's events gathered on rank 0 and written as
 * one Chrome trace-format timeline, RUN/trace.json (a process per rank). */
static void write_trace(const trainer *T) {
  size_t n;
  const dt_prof_event *ev = dt_profile_events(T->prof, &n);
  int bytes = (int)(n * sizeof *ev), *counts = NULL, *displs = NULL;
  long spans = 0; /* the steps traced: fewer than log.trace_steps in a short run */
  for (size_t i = 0; i < n; i++) spans += ev[i].slot < 0;
  char *all = NULL;
  if (T->is_root) {
    counts = dt_calloc((size_t)T->grid.size, sizeof(int));
    displs = dt_calloc((size_t)T->grid.size, sizeof(int));
  }
  dt_watchdog_enter("gathering the trace");
  MPI_Gather(&bytes, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (T->is_root) {
    long total = 0;
    for (int r = 0; r < T->grid.size; r++) displs[r] = (int)total, total += counts[r];
    all = dt_malloc((size_t)total + 1);
  }
  MPI_Gatherv(ev, bytes, MPI_BYTE, all, counts, displs, MPI_BYTE, 0, MPI_COMM_WORLD);
  dt_watchdog_leave();
  if (T->is_root) {
    char path[DT_STR * 2 + 16];
    snprintf(path, sizeof path, "%s/trace.json", T->run_dir);
    FILE *f = fopen(path, "w");
    if (!f) {
      fprintf(stderr, "dtrain: warning: cannot write %s: %s\n", path, strerror(errno));
    } else {
      fputs("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n", f);
      for (int r = 0; r < T->grid.size; r++)
        dt_profile_trace_json(f, (const dt_prof_event *)(all + displs[r]),
                              (size_t)counts[r] / sizeof *ev, r, "step", r == 0);
      fputs("\n]}\n", f);
      if (fclose(f) == 0)
        printf("trace: %s (%ld profiled step%s of %d rank%s; open it in ui.perfetto.dev or "
               "chrome://tracing)\n", path, spans, spans == 1 ? "" : "s", T->grid.size,
               T->grid.size == 1 ? "" : "s");
    }
  }
  free(all), free(counts), free(displs);
}

int dt_evaluate(const dt_config *c) {
  trainer T_;
  trainer *T = &T_;
  memset(T, 0, sizeof *T);
  setup(T, c);
  c = T->cfg;
  const int resumed = maybe_resume(T);
  if (T->is_root) {
    char dir[sizeof T->run_dir + 8];
    dt_error err;
    snprintf(dir, sizeof dir, "%.*s/eval", (int)sizeof T->run_dir - 1, T->run_dir);
    T->metrics = dt_metrics_open(dir, 0, &err);
    if (!T->metrics) dt_die_user("[log] dir: %s", err.msg);
    if (!resumed)
      printf("evaluating %s (no checkpoint: checkpoint.resume = %s, in %s)\n",
             c->model_init_from[0] ? "the weights of model.init_from"
                                   : "the seeded initial weights",
             c->checkpoint_resume, T->ckpt_dir);
    fflush(stdout);
  }
  const double epoch_f =
      (double)T->epoch + (double)T->offset / (double)DT_MAX(1, T->steps_per_epoch * T->batch);
  evaluate(T, epoch_f);
  if (T->is_root) {
    dt_metrics_flush(T->metrics);
    printf("eval row written to %s/eval/metrics.jsonl\n", T->run_dir);
  }
  teardown(T);
  return 0;
}

int dt_print_layout(const dt_config *c) {
  trainer T;
  memset(&T, 0, sizeof T);
  T.cfg = c;
  setup_parallel(&T);
  dt_error err;
  T.be = dt_backend_create(c->train_device, T.grid.local_rank, cpu_threads(&T), &err);
  if (!T.be) dt_die_user_all("[train] device = %s: %s", c->train_device, err.msg);
  dt_grid_print(&T.grid, T.be->desc, stdout);
  if (T.grid.rank == 0 && T.grid.pp > 1 && !strcmp(c->model_name, "gpt") &&
      T.grid.pp <= c->model_n_layer) {
    printf("pipeline stages ([parallel] pp_split = %s):\n", c->parallel_pp_split);
    for (int r = 0, l0, nl; r < T.grid.pp; r++) {
      dt_gpt_stage_blocks(c, T.grid.pp, r, &l0, &nl);
      char blocks[32];
      if (nl == 1) snprintf(blocks, sizeof blocks, "block %d", l0);
      else snprintf(blocks, sizeof blocks, "blocks %d-%d", l0, l0 + nl - 1);
      printf("  pp %-3d %s%s%s\n", r, blocks, r == 0 ? ", the embeddings" : "",
             r == T.grid.pp - 1 ? ", ln_f and the LM head (tied to a copy of wte)" : "");
    }
  }
  dt_backend_destroy(T.be);
  dt_grid_free(&T.grid);
  return 0;
}

int dt_train(const dt_config *c) {
  trainer T_;
  trainer *T = &T_;
  memset(T, 0, sizeof *T);
  setup(T, c);
  c = T->cfg; /* train.precision = auto decided */
  maybe_resume(T);

  dt_error err;
  if (T->is_root) {
    T->metrics = dt_metrics_open(T->run_dir, c->log_tensorboard, &err);
    if (!T->metrics) dt_die_user("[log] dir: %s", err.msg);
    char path[2048];
    snprintf(path, sizeof path, "%.*s/config.ini", DT_STR * 2, T->run_dir);
    FILE *fp = fopen(path, "w");
    if (fp) fputs(T->config_text, fp), fclose(fp);
    /* under tensor or pipeline parallelism: the whole model's count, then
     * this rank's */
    size_t nwhole = T->m->nparams_total;
    if (!strcmp(T->m->family, "gpt")) {
      int n;
      free(dt_gpt_whole_table(c, &n, &nwhole));
      set_flops(T, nwhole);
    }
    char split[256] = "", tps[96] = "", pps[96] = "";
    if (T->grid.tp > 1)
      snprintf(tps, sizeof tps, "tp %d splits heads, MLP units and vocabulary%s", T->grid.tp,
               c->parallel_sequence_parallel ? ", sp the tokens" : "");
    if (T->grid.pp > 1) { /* "pp 3 stages of 2+1+1 blocks" */
      int n = snprintf(pps, sizeof pps, "pp %d stages of ", T->grid.pp), l0, nl;
      for (int r = 0; r < T->grid.pp && n < (int)sizeof pps; r++) {
        dt_gpt_stage_blocks(c, T->grid.pp, r, &l0, &nl);
        n += snprintf(pps + n, sizeof pps - (size_t)n, "%s%d", r ? "+" : "", nl);
      }
      if (n < (int)sizeof pps) snprintf(pps + n, sizeof pps - (size_t)n, " blocks");
    }
    if (tps[0] || pps[0])
      snprintf(split, sizeof split, " (%s%s%s: rank 0 holds %zu)", tps,
               tps[0] && pps[0] ? ", " : "", pps, T->m->nparams_total);
    printf("device: %s\nmodel: %s, %zu parameters%s, %.1f MB activations at micro-batch %d, "
           "%s\n",
           T->be->desc, T->m->family, nwhole, split, T->m->activation_bytes / 1e6,
           T->m->max_batch,
           strcmp(c->train_precision, "bf16")
               ? "fp32"
               : "bf16 matmuls (bf16 operands and weight copy, fp32 accumulation; fp32 master "
                 "weights and optimizer; GPT's and the Transformer's activations in bf16 but the "
                 "residual stream)");
    if (T->s2s)
      printf("data: %lld train pairs in %lld batches of <= %ld padded tokens / %lld valid "
             "pairs; each batch split over dp %d (micro %lld sentences), %lld steps/epoch, %lld "
             "steps\nrun dir: %s\n",
             (long long)T->bat_train.start[T->bat_train.nbatches], (long long)T->ntrain,
             c->train_batch_tokens, (long long)T->neval, T->grid.dp, (long long)T->micro,
             (long long)T->steps_per_epoch, (long long)T->total_steps, T->run_dir);
    else
    printf("data: %lld train / %lld %s %s; batch %lld = dp %d x %lld (micro %lld), %lld "
           "steps/epoch, %lld steps\nrun dir: %s\n",
           (long long)T->ntrain, (long long)T->neval, T->lm ? "val" : "test",
           T->lm ? "windows of train.seq_len tokens" : "images", (long long)T->batch, T->grid.dp,
           (long long)T->rank_batch, (long long)T->micro, (long long)T->steps_per_epoch,
           (long long)T->total_steps, T->run_dir);
    fflush(stdout);
  }

  if (T->prof && c->log_trace_steps > 0) { /* one origin for every rank's trace */
    dt_watchdog_enter("the barrier before the trace");
    MPI_Barrier(MPI_COMM_WORLD);
    dt_watchdog_leave();
    dt_profile_trace(T->prof, c->log_trace_steps, dt_now());
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  double t_start = dt_now(), t_log = t_start;
  int64_t log_samples = 0, run_samples = 0;
  /* tokens (language and translation models) or images */
  double log_units = 0, run_units = 0;
  const char *unit = T->lm || T->s2s ? "tok/s" : "img/s";
  int stop = 0;
  int64_t nrun = 0; /* steps run by this process */
  while (T->step < T->total_steps && !stop) {
    /* [log] profile: the first step warms up (cuBLASLt's algorithm search,
     * buffers growing), so it is left out unless it is the only one */
    int profiled = T->prof && (nrun > 0 || T->step + 1 == T->total_steps);
    nrun++;
    dt_profile_enable(T->prof, profiled);
    double t0 = dt_now();
    double lr = lr_at(T, T->step);
    double loss = train_step(T);
    double gnorm = optimizer_step(T, lr);
    T->be->sync(T->be);
    T->train_time += dt_now() - t0;
    dt_profile_enable(T->prof, 0);
    if (run_samples == 0) print_memory(T);
    T->step++;
    T->offset += T->batch;
    log_samples += T->s2s ? T->step_samples : T->batch;
    run_samples += T->s2s ? T->step_samples : T->batch;
    double units = T->s2s ? (double)T->step_tokens : (double)T->batch * (T->lm ? (double)T->seq : 1.0);
    log_units += units;
    run_units += units;
    int epoch_end = T->offset + T->batch > T->ntrain;
    double epoch_f = (double)T->epoch + (double)T->offset / (double)(T->steps_per_epoch * T->batch);
    if (!isfinite(loss))
      dt_die_user_all("step %lld: loss is %f (not finite); lower [optim] lr or set "
                      "optim.grad_clip",
                      (long long)T->step, loss);
    if (T->is_root && (T->step % c->log_every == 0 || T->step == T->total_steps || T->step == 1)) {
      double now = dt_now();
      double sps = log_samples / (now - t_log), ups = log_units / (now - t_log);
      /* model TFLOP/s per rank (GPT), and its share of the peak */
      const double tflops = T->flops_tok * ups / (double)T->grid.size / 1e12;
      const double mfu = T->peak_tflops > 0 ? tflops / T->peak_tflops : 0;
      dt_metric vals[] = {{"epoch", epoch_f, 0},       {"loss", loss, 0},
                          {"lr", lr, 0},               {"grad_norm", gnorm, 0},
                          {"samples_per_s", sps, 0},   {"time_s", now - t_start, 0},
                          {"tokens_per_s", ups, 0},    {"tflops_per_rank", tflops, 0},
                          {"mfu", mfu, 0}};
      const int nvals = !(T->lm || T->s2s) ? 6 : !T->flops_tok ? 7 : mfu > 0 ? 9 : 8;
      dt_metrics_log(T->metrics, "train", (long)T->step, vals, nvals, NULL, NULL, 0);
      char eta[32], perf[64] = "";
      fmt_duration(eta, sizeof eta, eta_s(T, now - t_start, nrun));
      if (T->flops_tok > 0)
        snprintf(perf, sizeof perf, " | %.*f TFLOP/s%s", tflops < 10 ? 3 : 1, tflops,
                 mfu > 0 ? "" : " a rank");
      if (mfu > 0)
        snprintf(perf + strlen(perf), sizeof perf - strlen(perf), " a rank, MFU %.1f%%",
                 100 * mfu);
      printf("step %6lld/%lld | epoch %5.2f | loss %.6f | lr %.3e | gnorm %.3f | %8.0f %s%s | "
             "%.1f s | eta %s\n",
             (long long)T->step, (long long)T->total_steps, epoch_f, loss, lr, gnorm, ups, unit,
             perf, now - t_start, eta);
      fflush(stdout);
      t_log = now;
      log_samples = 0;
      log_units = 0;
    }
    if (epoch_end) {
      T->epoch++;
      T->offset = 0;
    }
    /* train.max_time_s: rank 0's clock decides, so every rank stops at the
     * same step */
    int out_of_time = c->train_max_time_s > 0 && T->train_time >= c->train_max_time_s;
    if (c->train_max_time_s > 0 && T->grid.size > 1) {
      dt_watchdog_enter("the time-budget check");
      MPI_Bcast(&out_of_time, 1, MPI_INT, 0, MPI_COMM_WORLD);
      dt_watchdog_leave();
    }
    int last = T->step == T->total_steps || out_of_time;
    /* train.eval_every and log.bleu_every (the Transformer's BLEU, which
     * costs a translation of the validation set) between the evaluations
     * of epoch ends and the end */
    int due = c->train_eval_every > 0 && T->step % c->train_eval_every == 0;
    int bleu_due = T->s2s && c->log_bleu_every > 0 && T->step % c->log_bleu_every == 0;
    if (epoch_end || last) {
      evaluate(T, epoch_end ? (double)T->epoch : epoch_f);
      if (T->is_root) dt_metrics_flush(T->metrics);
    } else if (due || bleu_due) {
      if (T->s2s) evaluate_s2s(T, epoch_f, bleu_due);
      else evaluate(T, epoch_f);
      if (T->is_root) dt_metrics_flush(T->metrics);
    }
    const int evaluated = epoch_end || last || due || bleu_due;
    const int best = evaluated && improved_best(T) && T->keep_best;
    /* train.early_stop: that many evaluations in a row without a new best
     * end the run here, as its last step would (the checkpoint) */
    const int early = evaluated && !last && c->train_early_stop > 0 &&
                      T->since_best >= c->train_early_stop;
    if ((c->checkpoint_every > 0 && (T->step % c->checkpoint_every == 0 || last || early)) ||
        best)
      save_checkpoint(T, c->checkpoint_async && !last && !early, best);
    /* every rank stops at the same step, whichever got the signal */
    int sig = end_of_step(T, (int)g_stop_signal);
    if (sig) stop = sig;
    if (out_of_time) {
      if (T->is_root)
        printf("stopping at step %lld: train.max_time_s = %g s of training reached\n",
               (long long)T->step, c->train_max_time_s);
      break;
    }
    if (early) {
      if (T->is_root)
        printf("stopping at step %lld: train.early_stop = %ld evaluations without a better %s "
               "%s (the best, %.4f, at step %lld)\n", (long long)T->step, c->train_early_stop,
               T->lm || T->s2s ? "val" : "test", best_name(T), T->best,
               (long long)T->best_step);
      break;
    }
  }
  int code = 0;
  if (stop) {
    if (T->is_root) printf("stopped by signal %d at step %lld\n", stop, (long long)T->step);
    if (c->checkpoint_every > 0) save_checkpoint(T, 0, 0);
    code = 128 + stop;
  }
  commit_checkpoint(T); /* a background save still being written */
  if (T->is_root)
    printf("done: %lld steps, %.2f s training (%.0f %s), %.2f s total\n", (long long)T->step,
           T->train_time,
           T->train_time > 0 ? run_units / T->train_time : 0.0, unit, dt_now() - t_start);
  if (T->is_root && T->dp->zero >= 3)
    printf("zero-3: %ld layer gathers were prefetched\n", T->dp->prefetches);
  if (T->is_root && T->prof) print_profile(T);
  if (T->prof && c->log_trace_steps > 0) write_trace(T);
  teardown(T);
  return code;
}
