/* config.c: the .ini config. One schema table drives defaults, parsing,
 * validation, the resolved text (printed at start, stored in checkpoints) and
 * `dtrain --help-config`. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { CT_INT, CT_FLOAT, CT_BOOL, CT_STRING, CT_ENUM } cfg_type;

enum {
  F_MIN_OPEN = 1, /* min itself is not allowed: value > min */
  F_MAX_OPEN = 2, /* value < max */
  F_NONEMPTY = 4, /* strings: "" is an error */
};

typedef struct cfg_entry {
  const char *section, *key;
  cfg_type type;
  size_t offset;       /* into dt_config */
  const char *def;     /* default, as it would be written in the file */
  double min, max;     /* -INFINITY / INFINITY when unbounded */
  unsigned flags;
  const char *choices; /* enums: "a|b|c" */
  const char *help;
} cfg_entry;

/* The member's type is checked at compile time, so an entry can never write a
 * double into a long (a _Generic without a match does not compile). */
#define FIELD(m, T) (offsetof(dt_config, m) + 0 * sizeof(_Generic(((dt_config *)0)->m, T: 1)))
#define STRFIELD(m) \
  (offsetof(dt_config, m) + 0 * sizeof(char[sizeof(((dt_config *)0)->m) == DT_STR ? 1 : -1]))
#define NOLO (-INFINITY)
#define NOHI INFINITY

#define INT(s, k, m, def, lo, hi, help) {s, k, CT_INT, FIELD(m, long), def, lo, hi, 0, NULL, help}
#define FLT(s, k, m, def, lo, hi, fl, help) \
  {s, k, CT_FLOAT, FIELD(m, double), def, lo, hi, fl, NULL, help}
#define BOOL(s, k, m, def, help) {s, k, CT_BOOL, FIELD(m, int), def, 0, 1, 0, NULL, help}
#define STR(s, k, m, def, fl, help) {s, k, CT_STRING, STRFIELD(m), def, 0, 0, fl, NULL, help}
#define ENUM(s, k, m, def, ch, help) {s, k, CT_ENUM, STRFIELD(m), def, 0, 0, 0, ch, help}

static const cfg_entry k_schema[] = {
  ENUM("model", "name", model_name, "lenet5", "lenet5|gpt|transformer", "model family"),
  ENUM("model", "activation", model_activation, "relu", "relu|tanh|gelu|gelu_tanh",
       "activation function (transformer: of the feed-forward layers, relu or gelu)"),
  ENUM("model", "pool", model_pool, "max", "max|avg", "pooling layers"),
  INT("model", "n_layer", model_n_layer, "12", 1, NOHI, "gpt: transformer blocks"),
  INT("model", "n_head", model_n_head, "12", 1, NOHI,
      "gpt: attention heads (must divide n_embd)"),
  INT("model", "n_embd", model_n_embd, "768", 1, NOHI, "gpt: hidden size"),
  INT("model", "vocab_size", model_vocab_size, "50257", 2, 1e6, "gpt: vocabulary size"),
  INT("model", "pad_vocab_to", model_pad_vocab_to, "64", 1, 65536,
      "gpt: under train.precision = bf16, rows of logits lie the vocabulary rounded up to a "
      "multiple of this many elements apart, so every row the output layer's bf16 GEMMs "
      "write and read starts aligned (GPT-2's 50257 becomes 50304: Megatron's "
      "make-vocab-size-divisible-by, without padding the parameter); 1 = packed rows"),
  INT("model", "block_size", model_block_size, "1024", 1, NOHI,
      "gpt: longest sequence (rows of the position table)"),
  FLT("model", "dropout", model_dropout, "0", 0, 1, F_MAX_OPEN,
      "gpt, transformer: dropout probability in training, on the embeddings (transformer: "
      "each stack's embedding + position sum) and on each residual branch's output before "
      "its add (attention, cross-attention, feed-forward), as GPT-2 and the Transformer paper "
      "do; not on the attention probabilities, which the fused attention kernel never forms"),
  STR("model", "init_from", model_init_from, "", 0,
      "gpt: start from Hugging Face GPT-2 weights: a .safetensors file or a directory with "
      "model.safetensors (\"\" = seeded init; not applied when resuming)"),
  INT("model", "n_enc_layer", model_n_enc_layer, "6", 1, NOHI, "transformer: encoder layers"),
  INT("model", "n_dec_layer", model_n_dec_layer, "6", 1, NOHI, "transformer: decoder layers"),
  INT("model", "d_ff", model_d_ff, "2048", 1, NOHI,
      "transformer: feed-forward width (n_embd is d_model, n_head the heads)"),
  ENUM("model", "norm", model_norm, "post", "post|pre",
       "transformer: LayerNorm after each residual add (the paper) or before each sublayer"),
  ENUM("model", "pos", model_pos, "sinusoidal", "sinusoidal|learned",
       "transformer: position encodings (block_size positions at most)"),
  BOOL("model", "share_embeddings", model_share_embeddings, "true",
       "transformer: one table for source and target embeddings and the output projection "
       "(a joint vocabulary)"),

  STR("data", "dir", data_dir, "data/mnist-h5", F_NONEMPTY,
      "directory holding the shards (train.h5, test.h5)"),
  STR("data", "blend", data_blend, "", 0,
      "gpt: \"W1 DIR1 W2 DIR2 ...\" trains on a weighted blend of token-shard directories "
      "instead of data.dir (Megatron-LM's --data-path): an epoch draws as many windows as "
      "they hold together, dataset d a share W_d/sum(W) of every batch, each cycling "
      "through its windows in seeded orders; validation evaluates every dataset (val rows: "
      "loss over all, loss_<DIR name> each); the limits apply to each dataset"),
  INT("data", "train_limit", data_train_limit, "0", 0, NOHI,
      "use the first N training samples (0 = all)"),
  INT("data", "test_limit", data_test_limit, "0", 0, NOHI,
      "evaluate on the first N test samples (0 = all)"),

  ENUM("train", "device", train_device, "auto", "auto|cpu|cuda", "where to run"),
  ENUM("train", "precision", train_precision, "fp32", "fp32|bf16|auto",
       "auto: bf16 on a GPU, fp32 on the CPU (whose bf16 only rounds operands: no faster). "
       "bf16: the linear layers' matmuls take bf16 operands with fp32 accumulation "
       "(tensor cores on the GPU, where attention's products do too), and GPT and the "
       "Transformer keep their activations in bf16 (LayerNorm outputs, qkv, attention output, "
       "the MLP hidden and its gradient, logits); master weights, optimizer state, "
       "the residual stream, the other gradients, norm statistics and the loss stay fp32"),
  INT("train", "batch_size", train_batch_size, "64", 1, 1e9,
      "global batch, per optimizer step"),
  INT("train", "micro_batch_size", train_micro_batch_size, "0", 0, NOHI,
      "per rank per forward/backward (0 = batch_size/dp, accumulating the rest)"),
  INT("train", "epochs", train_epochs, "10", 0, NOHI, "passes over the training set"),
  INT("train", "max_steps", train_max_steps, "0", 0, NOHI,
      "stop after N optimizer steps (0 = the epochs decide)"),
  INT("train", "early_stop", train_early_stop, "0", 0, NOHI,
      "stop after N evaluations in a row without a better value of checkpoint.keep_best's "
      "metric (else the validation loss), with the last step's checkpoint (0 = never)"),
  FLT("train", "max_time_s", train_max_time_s, "0", 0, NOHI, 0,
      "stop after this many seconds of training (evaluation and checkpoints not counted), "
      "then evaluate and checkpoint as at the last step (0 = no limit)"),
  INT("train", "seed", train_seed, "1234", 0, NOHI, "seed for initialization and data order"),
  INT("train", "threads", train_threads, "0", 0, NOHI, "CPU threads (0 = all cores)"),
  INT("train", "eval_batch_size", train_eval_batch_size, "1000", 1, NOHI,
      "samples per evaluation batch"),
  INT("train", "eval_every", train_eval_every, "0", 0, NOHI,
      "evaluate on the validation or test set every N optimizer steps as well as at each "
      "epoch's end and the last step (0 = only those): the loss and accuracy, or the "
      "Transformer's loss (its BLEU as log.bleu_every says); training is not changed"),
  INT("train", "seq_len", train_seq_len, "0", 0, NOHI,
      "language models: tokens per sequence (0 = model.block_size)"),
  ENUM("train", "recompute", train_recompute, "none", "none|mlp|block",
       "gpt: recompute activations in backward instead of keeping them: mlp the MLP hidden "
       "(the largest), block all but each block's input; gradients are unchanged"),
  INT("train", "classifier_chunk", train_classifier_chunk, "2048", 0, NOHI,
      "gpt, transformer: rows (tokens) whose logits the output layer computes at a time; "
      "each chunk's loss and gradient are done before the next, so only chunk x vocab "
      "logits are kept (0 = the whole micro-batch at once)"),
  INT("train", "batch_tokens", train_batch_tokens, "0", 0, NOHI,
      "transformer: padded tokens per global batch (n sentences x the longest side; batches "
      "are cut from length-sorted pairs; 0 = use batch_size sentences)"),
  INT("train", "batch_multiple", train_batch_multiple, "8", 1, NOHI,
      "transformer: sentences per batch are a multiple of this (parallel.dp must divide it)"),
  FLT("train", "label_smoothing", train_label_smoothing, "0.1", 0, 1, F_MAX_OPEN,
      "transformer: label smoothing epsilon of the cross-entropy (0 = plain)"),

  ENUM("optim", "name", optim_name, "adam", "sgd|adam|adamw", "optimizer"),
  FLT("optim", "lr", optim_lr, "1e-3", 0, NOHI, F_MIN_OPEN, "peak learning rate (after warmup)"),
  FLT("optim", "min_lr", optim_min_lr, "0", 0, NOHI, 0, "floor of the decaying schedules"),
  ENUM("optim", "schedule", optim_schedule, "cosine",
       "constant|cosine|linear|step|inverse_sqrt|wsd",
       "learning-rate schedule after warmup (inverse_sqrt: lr * sqrt(warmup_steps / step), "
       "the Transformer paper's; wsd: warmup-stable-decay, lr held until the last "
       "decay_fraction of the steps, then linear to min_lr)"),
  FLT("optim", "decay_fraction", optim_decay_fraction, "0.2", 0, 1, F_MIN_OPEN,
      "wsd schedule: the share of the run's steps that decays"),
  INT("optim", "warmup_steps", optim_warmup_steps, "0", 0, NOHI,
      "linear warmup over N optimizer steps"),
  FLT("optim", "step_gamma", optim_step_gamma, "0.1", 0, 1, F_MIN_OPEN,
      "step schedule: lr *= gamma every step_size epochs"),
  INT("optim", "step_size", optim_step_size, "1", 1, NOHI, "step schedule: epochs between decays"),
  FLT("optim", "momentum", optim_momentum, "0.9", 0, 1, 0, "SGD momentum"),
  BOOL("optim", "nesterov", optim_nesterov, "false", "SGD Nesterov momentum"),
  FLT("optim", "beta1", optim_beta1, "0.9", 0, 1, F_MAX_OPEN, "Adam first-moment decay"),
  FLT("optim", "beta2", optim_beta2, "0.999", 0, 1, F_MAX_OPEN, "Adam second-moment decay"),
  FLT("optim", "eps", optim_eps, "1e-8", 0, NOHI, F_MIN_OPEN, "Adam denominator epsilon"),
  FLT("optim", "weight_decay", optim_weight_decay, "0", 0, NOHI, 0,
      "weight decay (decoupled for adamw)"),
  FLT("optim", "grad_clip", optim_grad_clip, "0", 0, NOHI, 0,
      "clip gradients to this global norm (0 = off)"),
  ENUM("optim", "offload", optim_offload, "none", "none|cpu", "keep optimizer state on the CPU"),

  INT("parallel", "dp", parallel_dp, "0", 0, NOHI,
      "data-parallel ranks (0 = the job's ranks over tp*pp, so mpirun -np N sets it)"),
  INT("parallel", "tp", parallel_tp, "1", 1, NOHI,
      "tensor-parallel ranks (gpt: heads, MLP units and the vocabulary split over them, "
      "Megatron-style; must divide model.n_head)"),
  INT("parallel", "pp", parallel_pp, "1", 1, NOHI,
      "pipeline stages (gpt: the blocks split over them, 1F1B schedule over the "
      "micro-batches of a step; at most model.n_layer)"),
  BOOL("parallel", "sequence_parallel", parallel_sequence_parallel, "false",
       "gpt under tp > 1: the residual stream, LayerNorms and dropout split over the tp ranks "
       "by tokens, Megatron-style (activations / tp; seq_len must divide by tp)"),
  ENUM("parallel", "pp_schedule", parallel_pp_schedule, "1f1b", "1f1b|gpipe",
       "the order of a step's micro-batches through the pipeline stages: 1f1b "
       "(PipeDream-Flush, Megatron-LM: stage s keeps at most pp-s micro-batches' activations) "
       "or gpipe (all forwards, then all backwards: every stage but the last keeps all of "
       "them); the same bubble"),
  ENUM("parallel", "pp_split", parallel_pp_split, "flops", "flops|even",
       "how the blocks are cut into pipeline stages: flops balances each stage's "
       "compute, counting the LM head on the last; even gives each n_layer/pp blocks"),
  INT("parallel", "zero", parallel_zero, "0", 0, 3, "ZeRO stage (0 = plain all-reduce)"),
  ENUM("parallel", "comm", parallel_comm, "auto", "auto|nccl|mpi",
       "communication library (auto: NCCL on GPUs, MPI otherwise)"),
  FLT("parallel", "bucket_mb", parallel_bucket_mb, "25", 0, NOHI, F_MIN_OPEN,
      "gradient bucket size in MiB"),
  ENUM("parallel", "reduce_dtype", parallel_reduce_dtype, "fp32", "fp32|bf16",
       "the dtype gradients are reduced in over the data-parallel ranks: bf16 halves the "
       "bytes sent (each bucket rounded once, partial sums rounded to bf16); accumulation "
       "and the optimizer stay fp32"),

  STR("checkpoint", "dir", checkpoint_dir, "", 0,
      "where checkpoints go (\"\" = <log.dir>/checkpoints)"),
  INT("checkpoint", "every", checkpoint_every, "0", 0, NOHI,
      "save every N optimizer steps (0 = never)"),
  INT("checkpoint", "keep", checkpoint_keep, "3", 0, NOHI, "keep the newest N (0 = all)"),
  BOOL("checkpoint", "async", checkpoint_async, "false",
       "write checkpoints in a thread while training goes on: the state is copied to the "
       "host at the step, its files written in the background and committed (LATEST) once "
       "every rank's are; the last save of a run is written before it ends"),
  ENUM("checkpoint", "keep_best", checkpoint_keep_best, "none", "none|loss|accuracy|bleu",
       "also save a checkpoint at each evaluation that improves this metric of the "
       "validation (test) split - the lowest loss, the highest accuracy (classifiers) or "
       "BLEU (translation) - name it in BEST and keep it whatever checkpoint.keep prunes"),
  STR("checkpoint", "resume", checkpoint_resume, "auto", F_NONEMPTY,
      "auto (newest in checkpoint.dir, if any) | never | best (the one BEST names) | a "
      "checkpoint path (a step directory, a directory holding LATEST, or a LATEST or BEST "
      "file)"),

  STR("log", "dir", log_dir, "", 0, "run directory (\"\" = runs/<config file stem>)"),
  INT("log", "every", log_every, "50", 1, NOHI, "log every N optimizer steps"),
  BOOL("log", "tensorboard", log_tensorboard, "true", "write TensorBoard event files"),
  BOOL("log", "profile", log_profile, "false",
       "time every kernel call and blocking communication (tp, pp, dp) of the training steps "
       "after the first (waiting for the device before and after each, so the run is slower) "
       "and print a table of time, share, TFLOP/s and GB/s per slot at the end, also written "
       "to <log.dir>/profile.txt (rank 0's)"),
  INT("log", "trace_steps", log_trace_steps, "3", 0, NOHI,
      "under log.profile: every rank's timed calls of the first N profiled steps as one "
      "timeline, <log.dir>/trace.json, for Perfetto (ui.perfetto.dev) or chrome://tracing "
      "(0 = none)"),
  FLT("log", "peak_tflops", log_peak_tflops, "0", 0, NOHI, 0,
      "gpt: the device's peak TFLOP/s for the MFU logged beside each step's model TFLOP/s "
      "per rank (0 = the bf16 dense peak of a GPU dtrain knows by name, under "
      "train.precision = bf16: H100 SXM and H200 989, H100 PCIe 756, A100 312; else no MFU)"),
  INT("log", "bleu_every", log_bleu_every, "0", 0, NOHI,
      "transformer: BLEU of greedy translations of the validation set every N steps and at "
      "the end (0 = only at the end)"),
  INT("log", "bleu_sentences", log_bleu_sentences, "500", 0, NOHI,
      "transformer: validation sentences translated for BLEU (0 = all)"),

  INT("decode", "beam", decode_beam, "4", 1, 64, "translation: beam size (1 = greedy)"),
  FLT("decode", "len_penalty", decode_len_penalty, "0.6", 0, 10, 0,
      "translation: GNMT length penalty exponent alpha, ((5+len)/6)^alpha"),
  FLT("decode", "max_len_a", decode_max_len_a, "1.5", 0, 1000, 0,
      "translation: at most max_len_a * source tokens + max_len_b target tokens (and never "
      "more than the model's positions)"),
  INT("decode", "max_len_b", decode_max_len_b, "10", 1, 1000000, "see max_len_a"),
  INT("decode", "batch", decode_batch, "32", 1, 65536, "translation: sentences decoded together"),
};

#define NENTRIES ((int)DT_ARRAY_LEN(k_schema))
#define MAX_NAME 64 /* longest section or key worth echoing back in a message */

/* ---- lookups and "did you mean" ---- */

static int section_known(const char *s) {
  for (int i = 0; i < NENTRIES; i++)
    if (strcmp(k_schema[i].section, s) == 0) return 1;
  return 0;
}

static int entry_find(const char *section, const char *key) {
  for (int i = 0; i < NENTRIES; i++)
    if (strcmp(k_schema[i].section, section) == 0 && strcmp(k_schema[i].key, key) == 0) return i;
  return -1;
}

/* Edit distance with adjacent transpositions ("trian" is one edit from
 * "train"); names are short and only close ones matter. */
static int edit_distance(const char *a, const char *b) {
  size_t na = strlen(a), nb = strlen(b);
  if (na > MAX_NAME || nb > MAX_NAME) return 99;
  int d[MAX_NAME + 1][MAX_NAME + 1];
  for (size_t i = 0; i <= na; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= nb; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= na; i++)
    for (size_t j = 1; j <= nb; j++) {
      int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      best = DT_MIN(best, d[i - 1][j] + 1);
      best = DT_MIN(best, d[i][j - 1] + 1);
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        best = DT_MIN(best, d[i - 2][j - 2] + 1);
      d[i][j] = best;
    }
  return d[na][nb];
}

static int close_enough(int d, const char *word) { return d <= DT_MAX(1, (int)strlen(word) / 3); }

/* " (did you mean X?)" for an unknown key, or "" when nothing is close. */
static void suggest_key(const char *section, const char *key, char *out, size_t cap) {
  int best = -1, best_d = 99;
  for (int i = 0; i < NENTRIES; i++) {
    if (strcmp(k_schema[i].section, section) != 0) continue;
    int d = edit_distance(key, k_schema[i].key);
    if (d < best_d) best_d = d, best = i;
  }
  out[0] = '\0';
  if (best >= 0 && close_enough(best_d, key)) {
    snprintf(out, cap, " (did you mean %s?)", k_schema[best].key);
    return;
  }
  for (int i = 0; i < NENTRIES; i++) /* right key, wrong section */
    if (strcmp(k_schema[i].key, key) == 0) {
      snprintf(out, cap, " (did you mean [%s] %s?)", k_schema[i].section, key);
      return;
    }
}

static void suggest_section(const char *section, char *out, size_t cap) {
  const char *best = NULL;
  int best_d = 99;
  for (int i = 0; i < NENTRIES; i++) {
    int d = edit_distance(section, k_schema[i].section);
    if (d < best_d) best_d = d, best = k_schema[i].section;
  }
  out[0] = '\0';
  if (best && close_enough(best_d, section)) snprintf(out, cap, " (did you mean [%s]?)", best);
}

/* ---- values ---- */

static void bound_text(double v, char *out, size_t cap) {
  if (v == floor(v) && fabs(v) < 1e15) snprintf(out, cap, "%.0f", v);
  else snprintf(out, cap, "%g", v);
}

static int check_range(const cfg_entry *e, double v, const char *text, const char *where,
                       dt_error *err) {
  char b[64];
  if (v < e->min || (v == e->min && (e->flags & F_MIN_OPEN))) {
    bound_text(e->min, b, sizeof b);
    if (e->flags & F_MIN_OPEN)
      return dt_error_set(err, "%s: [%s] %s = %s must be greater than %s", where, e->section,
                          e->key, text, b);
    return dt_error_set(err, "%s: [%s] %s = %s is below the minimum %s", where, e->section,
                        e->key, text, b);
  }
  if (v > e->max || (v == e->max && (e->flags & F_MAX_OPEN))) {
    bound_text(e->max, b, sizeof b);
    if (e->flags & F_MAX_OPEN)
      return dt_error_set(err, "%s: [%s] %s = %s must be less than %s", where, e->section, e->key,
                          text, b);
    return dt_error_set(err, "%s: [%s] %s = %s is above the maximum %s", where, e->section,
                        e->key, text, b);
  }
  return 0;
}

static int parse_int(const cfg_entry *e, const char *v, long *out, const char *where,
                     dt_error *err) {
  const char *p = v + (*v == '+' || *v == '-');
  if (!isdigit((unsigned char)*p))
    return dt_error_set(err, "%s: [%s] %s: '%.100s' is not an integer", where, e->section, e->key,
                        v);
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (*end)
    return dt_error_set(err, "%s: [%s] %s: '%.100s' is not an integer", where, e->section, e->key,
                        v);
  if (errno == ERANGE)
    return dt_error_set(err, "%s: [%s] %s: '%.100s' is out of range for an integer", where,
                        e->section, e->key, v);
  if (check_range(e, (double)x, v, where, err)) return -1;
  *out = x;
  return 0;
}

static int parse_float(const cfg_entry *e, const char *v, double *out, const char *where,
                       dt_error *err) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (end == v || *end || isspace((unsigned char)*v))
    return dt_error_set(err, "%s: [%s] %s: '%.100s' is not a number", where, e->section, e->key,
                        v);
  if (errno == ERANGE) /* overflow, or an underflow to a denormal or zero */
    return dt_error_set(err, "%s: [%s] %s: '%.100s' is out of range for a float", where,
                        e->section, e->key, v);
  if (!isfinite(x))
    return dt_error_set(err, "%s: [%s] %s: '%.100s' is not a finite number", where, e->section,
                        e->key, v);
  if (check_range(e, x, v, where, err)) return -1;
  *out = x;
  return 0;
}

static int parse_bool(const cfg_entry *e, const char *v, int *out, const char *where,
                      dt_error *err) {
  static const char *yes[] = {"true", "1", "yes", "on"}, *no[] = {"false", "0", "no", "off"};
  for (size_t i = 0; i < DT_ARRAY_LEN(yes); i++) {
    if (strcasecmp(v, yes[i]) == 0) return *out = 1, 0;
    if (strcasecmp(v, no[i]) == 0) return *out = 0, 0;
  }
  return dt_error_set(err, "%s: [%s] %s: '%.100s' is not a boolean (true|false|yes|no|on|off|1|0)",
                      where, e->section, e->key, v);
}

static int choice_ok(const char *choices, const char *v) {
  size_t n = strlen(v);
  for (const char *c = choices; *c;) {
    const char *bar = strchr(c, '|');
    size_t len = bar ? (size_t)(bar - c) : strlen(c);
    if (len == n && strncmp(c, v, n) == 0) return 1;
    c += len + (bar != NULL);
  }
  return 0;
}

static int parse_string(const cfg_entry *e, const char *v, const char *where, dt_error *err) {
  size_t n = strlen(v);
  if (n >= DT_STR)
    return dt_error_set(err, "%s: [%s] %s: value is %zu characters long, the limit is %d", where,
                        e->section, e->key, n, DT_STR - 1);
  for (const char *p = v; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      return dt_error_set(err, "%s: [%s] %s: value contains a control character", where,
                          e->section, e->key);
  if (n == 0 && (e->flags & F_NONEMPTY))
    return dt_error_set(err, "%s: [%s] %s: must not be empty", where, e->section, e->key);
  if (e->type == CT_ENUM && !choice_ok(e->choices, v))
    return dt_error_set(err, "%s: [%s] %s: '%.100s' is not one of %s", where, e->section, e->key,
                        v, e->choices);
  return 0;
}

/* Parses text v for entry e and stores it into cfg; cfg is untouched on error. */
static int set_value(dt_config *cfg, const cfg_entry *e, const char *v, const char *where,
                     dt_error *err) {
  char *field = (char *)cfg + e->offset;
  switch (e->type) {
  case CT_INT: {
    long x;
    if (parse_int(e, v, &x, where, err)) return -1;
    memcpy(field, &x, sizeof x);
    return 0;
  }
  case CT_FLOAT: {
    double x;
    if (parse_float(e, v, &x, where, err)) return -1;
    memcpy(field, &x, sizeof x);
    return 0;
  }
  case CT_BOOL: {
    int x = 0;
    if (parse_bool(e, v, &x, where, err)) return -1;
    memcpy(field, &x, sizeof x);
    return 0;
  }
  case CT_STRING:
  case CT_ENUM:
    if (parse_string(e, v, where, err)) return -1;
    /* zero the tail too, so equal configs are equal bytes */
    memset(field, 0, DT_STR);
    memcpy(field, v, strlen(v));
    return 0;
  }
  return -1;
}

void dt_config_defaults(dt_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  for (int i = 0; i < NENTRIES; i++) {
    dt_error err;
    if (set_value(cfg, &k_schema[i], k_schema[i].def, "schema default", &err))
      dt_fatal("config", err.msg, __FILE__, __LINE__, __func__, "set_value");
  }
}

/* ---- text ---- */

static char *trim(char *s) {
  while (isspace((unsigned char)*s)) s++;
  size_t n = strlen(s);
  while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
  return s;
}

/* Extracts a value from s (the text after '='): an optional double-quoted
 * string with \" and \\ escapes, then, in files, an optional comment starting
 * with # or ; (after whitespace, so "a#b" is one value). Writes into out (at
 * least strlen(s)+1 bytes). Returns NULL or the reason it failed. */
static const char *extract_value(const char *s, int comments, char *out) {
  while (isspace((unsigned char)*s)) s++;
  if (*s == '"') {
    const char *p = s + 1;
    size_t n = 0;
    for (; *p && *p != '"'; p++) {
      if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) p++;
      out[n++] = *p;
    }
    out[n] = '\0';
    if (*p != '"') return "unterminated quote";
    for (p++; isspace((unsigned char)*p); p++) {
    }
    if (*p && !(comments && (*p == '#' || *p == ';'))) return "unexpected text after the closing quote";
    return NULL;
  }
  size_t n = 0;
  for (const char *p = s; *p; p++) {
    if (comments && (*p == '#' || *p == ';') && (p == s || isspace((unsigned char)p[-1]))) break;
    out[n++] = *p;
  }
  while (n > 0 && isspace((unsigned char)out[n - 1])) n--;
  out[n] = '\0';
  return NULL;
}

static int key_chars_ok(const char *k) {
  if (!*k) return 0;
  for (; *k; k++)
    if (!isalnum((unsigned char)*k) && *k != '_' && *k != '-' && *k != '.') return 0;
  return 1;
}

/* One "key = value" line under section (NULL before any header). */
static int parse_assignment_line(dt_config *cfg, const char *section, char *line, int *first_line,
                                 const char *name, int lineno, dt_error *err) {
  char where[DT_STR + 32];
  snprintf(where, sizeof where, "%s:%d", name, lineno);
  char *eq = strchr(line, '=');
  if (!eq)
    return dt_error_set(err, "%s: line is not 'key = value': '%.100s'", where, line);
  *eq = '\0';
  char *key = trim(line), *rest = eq + 1;
  if (!key_chars_ok(key) || strlen(key) > MAX_NAME)
    return dt_error_set(err, "%s: line is not 'key = value': '%.100s=%.100s'", where, key, rest);
  if (!section)
    return dt_error_set(err, "%s: key '%s' outside any section (add a [section] header above it)",
                        where, key);
  int idx = entry_find(section, key);
  if (idx < 0) {
    char hint[160];
    suggest_key(section, key, hint, sizeof hint);
    return dt_error_set(err, "%s: unknown key [%s] %s%s", where, section, key, hint);
  }
  const cfg_entry *e = &k_schema[idx];
  if (first_line[idx])
    return dt_error_set(err, "%s: duplicate key [%s] %s (first set on line %d)", where, e->section,
                        e->key, first_line[idx]);
  first_line[idx] = lineno;
  char *value = dt_malloc(strlen(rest) + 1);
  const char *why = extract_value(rest, 1, value);
  int rc = why ? dt_error_set(err, "%s: [%s] %s: %s", where, e->section, e->key, why)
               : set_value(cfg, e, value, where, err);
  free(value);
  return rc;
}

/* "[name]" with an optional comment after it; section gets the name. */
static int parse_header_line(char *line, char *section, const char *name, int lineno,
                             dt_error *err) {
  char *close = strchr(line, ']');
  if (!close)
    return dt_error_set(err, "%s:%d: malformed section header '%.100s' (missing ']')", name,
                        lineno, line);
  *close = '\0';
  char *s = trim(line + 1), *after = trim(close + 1);
  if (*after && *after != '#' && *after != ';')
    return dt_error_set(err, "%s:%d: unexpected text after section header [%.100s]: '%.100s'",
                        name, lineno, s, after);
  if (!section_known(s)) {
    char hint[160];
    suggest_section(s, hint, sizeof hint);
    return dt_error_set(err, "%s:%d: unknown section [%.100s]%s", name, lineno, s, hint);
  }
  snprintf(section, MAX_NAME + 1, "%s", s);
  return 0;
}

/* Parses text over what cfg already holds. */
static int parse_into(dt_config *cfg, const char *text, const char *name, dt_error *err) {
  char *buf = dt_strdup(text);
  int first_line[NENTRIES];
  memset(first_line, 0, sizeof first_line);
  char section[MAX_NAME + 1];
  int have_section = 0, rc = 0, lineno = 0;
  char *p = buf;
  if ((unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB && (unsigned char)p[2] == 0xBF)
    p += 3; /* UTF-8 byte-order mark from some editors */
  while (p && rc == 0) {
    char *nl = strchr(p, '\n');
    if (nl) *nl = '\0';
    lineno++;
    char *line = trim(p);
    p = nl ? nl + 1 : NULL;
    if (*line == '\0' || *line == '#' || *line == ';') continue;
    if (*line == '[') {
      rc = parse_header_line(line, section, name, lineno, err);
      have_section = rc == 0;
    } else {
      rc = parse_assignment_line(cfg, have_section ? section : NULL, line, first_line, name,
                                 lineno, err);
    }
  }
  free(buf);
  return rc;
}

int dt_config_parse_text(dt_config *cfg, const char *text, const char *name, dt_error *err) {
  /* Starts from the defaults and commits only on success, so a failed parse
   * leaves cfg as it was. */
  dt_config tmp;
  dt_config_defaults(&tmp);
  if (parse_into(&tmp, text, name, err)) return -1;
  memcpy(cfg, &tmp, sizeof tmp);
  return 0;
}

/* Splits "section.key=value" and finds its entry; value points into a. */
static int lookup_assignment(const char *a, int *idx, char **value, dt_error *err) {
  const char *eq = strchr(a, '=');
  const char *dot = memchr(a, '.', eq ? (size_t)(eq - a) : strlen(a));
  if (!eq || !dot)
    return dt_error_set(err, "command line: '%.100s' is not section.key=value", a);
  char name[2 * MAX_NAME + 2];
  size_t n = (size_t)(eq - a);
  if (n >= sizeof name)
    return dt_error_set(err, "command line: '%.100s' is not section.key=value", a);
  memcpy(name, a, n);
  name[n] = '\0';
  char *full = trim(name), *d = strchr(full, '.');
  *d = '\0';
  char *section = trim(full), *key = trim(d + 1);
  if (!section_known(section)) {
    char hint[160];
    suggest_section(section, hint, sizeof hint);
    return dt_error_set(err, "command line: unknown section [%s] in '%.100s'%s", section, a, hint);
  }
  *idx = entry_find(section, key);
  if (*idx < 0) {
    char hint[160];
    suggest_key(section, key, hint, sizeof hint);
    return dt_error_set(err, "command line: unknown key [%s] %s%s", section, key, hint);
  }
  *value = (char *)eq + 1;
  return 0;
}

static int apply_assignment(dt_config *cfg, const char *a, int *idx_out, dt_error *err) {
  int idx;
  char *rest;
  if (lookup_assignment(a, &idx, &rest, err)) return -1;
  const cfg_entry *e = &k_schema[idx];
  char *value = dt_malloc(strlen(rest) + 1);
  const char *why = extract_value(rest, 0, value);
  int rc = why ? dt_error_set(err, "command line: [%s] %s: %s", e->section, e->key, why)
               : set_value(cfg, e, value, "command line", err);
  free(value);
  if (idx_out) *idx_out = idx;
  return rc;
}

int dt_config_set(dt_config *cfg, const char *assignment, dt_error *err) {
  return apply_assignment(cfg, assignment, NULL, err);
}

static char *read_file(const char *path, dt_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    dt_error_set(err, "%s: cannot open config: %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 4096, n = 0;
  char *buf = dt_malloc(cap);
  for (;;) {
    n += fread(buf + n, 1, cap - 1 - n, f);
    if (n < cap - 1) break;
    cap *= 2;
    char *grown = realloc(buf, cap);
    DT_CHECK_ALLOC(grown);
    buf = grown;
  }
  int failed = ferror(f), saved = errno;
  fclose(f);
  buf[n] = '\0';
  if (failed) {
    dt_error_set(err, "%s: cannot read config: %s", path, strerror(saved));
  } else if (strlen(buf) != n) {
    dt_error_set(err, "%s: config contains a NUL byte; is it a text file?", path);
    failed = 1;
  }
  if (failed) free(buf), buf = NULL;
  return buf;
}

/* "configs/lenet5-mnist.ini" -> "lenet5-mnist" */
static void file_stem(const char *path, char *out) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(base);
  if (n > 4 && strcmp(base + n - 4, ".ini") == 0) n -= 4;
  n = DT_MIN(n, (size_t)DT_STR - 1);
  memcpy(out, base, n);
  out[n] = '\0';
}

int dt_config_load(dt_config *cfg, const char *path, int noverrides, char **overrides,
                   dt_error *err) {
  if (strlen(path) >= DT_STR)
    return dt_error_set(err, "%.200s...: config path is longer than %d characters", path,
                        DT_STR - 1);
  char *text = read_file(path, err);
  if (!text) return -1;
  dt_config tmp;
  dt_config_defaults(&tmp);
  int rc = parse_into(&tmp, text, path, err);
  free(text);
  if (rc) return -1;
  snprintf(tmp.path, sizeof tmp.path, "%s", path);
  file_stem(path, tmp.name);

  /* Overrides may repeat a key of the file (that is their point), but a key
   * given twice on the command line is almost surely a mistake. */
  int seen[NENTRIES];
  for (int i = 0; i < NENTRIES; i++) seen[i] = -1;
  for (int i = 0; i < noverrides; i++) {
    int idx;
    char *value;
    if (lookup_assignment(overrides[i], &idx, &value, err)) return -1;
    if (seen[idx] >= 0)
      return dt_error_set(err, "command line: duplicate key [%s] %s ('%.100s', then '%.100s')",
                          k_schema[idx].section, k_schema[idx].key, overrides[seen[idx]],
                          overrides[i]);
    seen[idx] = i;
    if (apply_assignment(&tmp, overrides[i], NULL, err)) return -1;
  }
  memcpy(cfg, &tmp, sizeof tmp);
  return 0;
}

/* ---- output ---- */

/* Shortest %.Ng that reads back as exactly x. */
static void format_float(double x, char *out, size_t cap) {
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(out, cap, "%.*g", prec, x);
    if (strtod(out, NULL) == x) return;
  }
}

static int needs_quotes(const char *s) {
  return *s == '\0' || strpbrk(s, " \t#;\"\\") != NULL;
}

/* Appends the value of e in cfg as it would be written in a file. */
static void format_value(const dt_config *cfg, const cfg_entry *e, char *out, size_t cap) {
  const char *field = (const char *)cfg + e->offset;
  switch (e->type) {
  case CT_INT: {
    long x;
    memcpy(&x, field, sizeof x);
    snprintf(out, cap, "%ld", x);
    return;
  }
  case CT_FLOAT: {
    double x;
    memcpy(&x, field, sizeof x);
    format_float(x, out, cap);
    return;
  }
  case CT_BOOL: {
    int x;
    memcpy(&x, field, sizeof x);
    snprintf(out, cap, "%s", x ? "true" : "false");
    return;
  }
  case CT_STRING:
  case CT_ENUM:
    if (!needs_quotes(field)) {
      snprintf(out, cap, "%s", field);
      return;
    }
    size_t n = 0;
    out[n++] = '"';
    for (const char *p = field; *p && n + 3 < cap; p++) {
      if (*p == '"' || *p == '\\') out[n++] = '\\';
      out[n++] = *p;
    }
    out[n++] = '"';
    out[n] = '\0';
    return;
  }
}

char *dt_config_to_text(const dt_config *cfg) {
  /* each line: key, " = ", value (at most 2*DT_STR+2 when every char is escaped) */
  size_t cap = (size_t)NENTRIES * (MAX_NAME + 2 * DT_STR + 16) + 64 * 8;
  char *text = dt_malloc(cap);
  size_t n = 0;
  const char *section = NULL;
  for (int i = 0; i < NENTRIES; i++) {
    const cfg_entry *e = &k_schema[i];
    if (!section || strcmp(section, e->section) != 0) {
      n += (size_t)snprintf(text + n, cap - n, "%s[%s]\n", section ? "\n" : "", e->section);
      section = e->section;
    }
    char value[2 * DT_STR + 4];
    format_value(cfg, e, value, sizeof value);
    n += (size_t)snprintf(text + n, cap - n, "%s = %s\n", e->key, value);
  }
  return text;
}

static void range_text(const cfg_entry *e, char *out, size_t cap) {
  char lo[32], hi[32];
  bound_text(e->min, lo, sizeof lo);
  bound_text(e->max, hi, sizeof hi);
  switch (e->type) {
  case CT_ENUM: snprintf(out, cap, "%s", e->choices); return;
  case CT_BOOL: snprintf(out, cap, "true|false"); return;
  case CT_STRING: snprintf(out, cap, "%s", (e->flags & F_NONEMPTY) ? "not empty" : ""); return;
  case CT_INT:
  case CT_FLOAT:
    if (isinf(e->min) && isinf(e->max)) out[0] = '\0';
    else if (isinf(e->max))
      snprintf(out, cap, "%s %s", (e->flags & F_MIN_OPEN) ? ">" : ">=", lo);
    else
      snprintf(out, cap, "%s%s, %s%s", (e->flags & F_MIN_OPEN) ? "(" : "[", lo, hi,
               (e->flags & F_MAX_OPEN) ? ")" : "]");
    return;
  }
}

void dt_config_print_help(FILE *f) {
  static const char *type_names[] = {"int", "float", "bool", "string", "enum"};
  dt_config def;
  dt_config_defaults(&def);
  fprintf(f, "Config keys: set them in the .ini file under [section], or override with\n"
             "section.key=value on the command line.\n");
  const char *section = NULL;
  for (int i = 0; i < NENTRIES; i++) {
    const cfg_entry *e = &k_schema[i];
    if (!section || strcmp(section, e->section) != 0) {
      fprintf(f, "\n[%s]\n", e->section);
      section = e->section;
    }
    char full[2 * MAX_NAME + 2], value[2 * DT_STR + 4], dflt[2 * DT_STR + 16], range[128];
    snprintf(full, sizeof full, "%s.%s", e->section, e->key);
    format_value(&def, e, value, sizeof value);
    snprintf(dflt, sizeof dflt, "default=%s", value);
    range_text(e, range, sizeof range);
    /* help on its own line keeps the table about 80 columns wide */
    char line[2 * MAX_NAME + 2 * DT_STR + 256];
    snprintf(line, sizeof line, "  %-22s %-6s %-21s %s", full, type_names[e->type], dflt, range);
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == ' ') line[--n] = '\0';
    fprintf(f, "%s\n      %s\n", line, e->help);
  }
}
