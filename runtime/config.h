/* config.h: the resolved run configuration. One schema table in config.c
 * ({section, key, type, default, min, max, choices, help}) drives parsing,
 * validation, `dtrain --help-config` and the text stored in checkpoints. */
#ifndef DT_CONFIG_H
#define DT_CONFIG_H

#include <stdio.h>

#include "dt.h"

#define DT_STR 256

typedef struct dt_config {
  /* [model] */
  char model_name[DT_STR];     /* lenet5 | gpt | transformer */
  char model_activation[DT_STR]; /* relu | tanh | gelu | gelu_tanh */
  char model_pool[DT_STR];     /* max | avg */
  long model_n_layer;          /* gpt: transformer blocks */
  long model_n_head;           /* gpt: attention heads (must divide n_embd) */
  long model_n_embd;           /* gpt: hidden size */
  long model_vocab_size;       /* gpt: tokens */
  long model_pad_vocab_to;     /* gpt: bf16 logits' rows a multiple of this apart */
  long model_block_size;       /* gpt: most positions (learned position table rows) */
  double model_dropout;        /* gpt, transformer: dropout probability in training */
  char model_init_from[DT_STR]; /* gpt: HF GPT-2 safetensors to start from; "" = seeded init */
  long model_n_enc_layer;      /* transformer: encoder layers */
  long model_n_dec_layer;      /* transformer: decoder layers */
  long model_d_ff;             /* transformer: feed-forward width */
  char model_norm[DT_STR];     /* transformer: post | pre (LayerNorm placement) */
  char model_pos[DT_STR];      /* transformer: sinusoidal | learned positions */
  int model_share_embeddings;  /* transformer: one table for source, target and output */
  /* [data] */
  char data_dir[DT_STR];       /* holds train.h5 and test.h5 */
  char data_blend[DT_STR];     /* gpt: "W1 DIR1 W2 DIR2 ...", else data_dir */
  long data_train_limit;       /* use only the first N training samples (0 = all) */
  long data_test_limit;        /* evaluate on the first N test samples (0 = all) */
  /* [train] */
  char train_device[DT_STR];   /* auto | cpu | cuda */
  char train_precision[DT_STR];/* fp32 | bf16 | auto (resolved by the trainer) */
  long train_batch_size;       /* global, per optimizer step */
  long train_micro_batch_size; /* per rank and forward/backward; 0 = batch_size / dp */
  long train_epochs;
  long train_max_steps;        /* 0 = the epochs decide */
  long train_early_stop;        /* evaluations without a new best before stopping; 0 = off */
  double train_max_time_s;     /* training-time budget in seconds; 0 = none */
  long train_seed;
  long train_threads;          /* CPU threads (OpenBLAS); 0 = all cores */
  long train_eval_batch_size;
  long train_eval_every;       /* evaluate every N steps too (0 = epoch ends and the end) */
  long train_seq_len;          /* language models: tokens per sequence; 0 = model.block_size */
  char train_recompute[DT_STR];/* none | mlp | block: activations recomputed in backward */
  long train_classifier_chunk; /* rows of logits computed at a time (0 = all) */
  long train_batch_tokens;      /* transformer: padded tokens per global batch; 0 = batch_size */
  long train_batch_multiple;   /* transformer: sentences per batch divisible by this */
  double train_label_smoothing; /* transformer: epsilon of the label-smoothed cross-entropy */
  /* [optim] */
  char optim_name[DT_STR];     /* sgd | adam | adamw */
  double optim_lr;
  double optim_min_lr;
  double optim_decay_fraction; /* wsd: the final share of steps that decays */
  char optim_schedule[DT_STR]; /* constant | cosine | linear | step | inverse_sqrt */
  long optim_warmup_steps;
  double optim_step_gamma;     /* step schedule: lr *= gamma every step_size epochs */
  long optim_step_size;
  double optim_momentum;
  int optim_nesterov;
  double optim_beta1, optim_beta2, optim_eps;
  double optim_weight_decay;
  double optim_grad_clip;      /* global-norm clip; 0 = off */
  char optim_offload[DT_STR];  /* none | cpu */
  /* [parallel] */
  long parallel_dp, parallel_tp, parallel_pp, parallel_zero;
  char parallel_comm[DT_STR];  /* auto | nccl | mpi */
  char parallel_pp_split[DT_STR]; /* flops | even */
  char parallel_pp_schedule[DT_STR]; /* 1f1b | gpipe */
  int parallel_sequence_parallel;
  double parallel_bucket_mb;
  char parallel_reduce_dtype[DT_STR]; /* fp32 | bf16: gradients on the wire */
  /* [checkpoint] */
  char checkpoint_dir[DT_STR]; /* "" = <log.dir>/checkpoints */
  long checkpoint_every;       /* optimizer steps; 0 = never (a final one is still written if keep_final) */
  long checkpoint_keep;        /* newest N kept; 0 = all */
  int checkpoint_async;         /* write the files in a thread while training goes on */
  char checkpoint_keep_best[DT_STR]; /* none | loss | accuracy | bleu */
  char checkpoint_resume[DT_STR]; /* auto | never | best | PATH */
  /* [log] */
  char log_dir[DT_STR];        /* "" = runs/<config file stem> */
  long log_every;
  int log_tensorboard;
  int log_profile;             /* time each kernel slot (kernels/profile.h) */
  long log_trace_steps;         /* under log_profile: steps kept in trace.json */
  double log_peak_tflops;      /* gpt: peak for the logged MFU (0 = known GPUs' bf16 peak) */
  long log_bleu_every;         /* transformer: validation BLEU every N steps (0 = at the end) */
  long log_bleu_sentences;     /* transformer: validation sentences for BLEU (0 = all) */
  /* [decode] */
  long decode_beam;            /* beam size, 1 = greedy */
  double decode_len_penalty;   /* GNMT alpha */
  double decode_max_len_a;     /* target tokens <= a * source + b */
  long decode_max_len_b;
  long decode_batch;           /* sentences decoded together */
  /* provenance */
  char path[DT_STR];           /* the .ini file it came from */
  char name[DT_STR];           /* the file's stem, e.g. lenet5-mnist */
} dt_config;

/* Fills cfg with every key's default. */
void dt_config_defaults(dt_config *cfg);

/* Reads an .ini file over the defaults, then applies "section.key=value"
 * overrides in order. Unknown or duplicate keys, unparsable or out-of-range
 * values, bad section headers, missing files: -1 with err naming the file,
 * line, section and key (or "command line" for overrides). */
int dt_config_load(dt_config *cfg, const char *path, int noverrides, char **overrides,
                   dt_error *err);

/* Parses ini text (name is used in messages), for tests and checkpoints. */
int dt_config_parse_text(dt_config *cfg, const char *text, const char *name, dt_error *err);

/* Applies one "section.key=value" override. */
int dt_config_set(dt_config *cfg, const char *assignment, dt_error *err);

/* Writes the resolved config as ini text (every key, sections in order) into a
 * malloc'ed string; parsing it back gives the same config. */
char *dt_config_to_text(const dt_config *cfg);

/* Prints every key with type, default, range/choices and help. */
void dt_config_print_help(FILE *f);

#endif
