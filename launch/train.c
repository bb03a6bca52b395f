/* train.c: the training loop for image classification (LeNet-5 on MNIST):
 * seeded resumable data order, gradient accumulation, clipping, LR schedule,
 * optimizer, evaluation, metrics and checkpoints. */
#include "train.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../models/model.h"
#include "../runtime/backend.h"
#include "../runtime/checkpoint.h"
#include "../runtime/dataset.h"
#include "../runtime/metrics.h"
#include "../runtime/rng.h"

#define MNIST_MEAN 0.1307f
#define MNIST_STD 0.3081f

static volatile sig_atomic_t g_stop_signal = 0;
static void on_signal(int sig) { g_stop_signal = sig; }

typedef struct trainer {
  const dt_config *cfg;
  char *config_text;
  char run_dir[DT_STR * 2], ckpt_dir[DT_STR * 2];
  dt_backend_t be;
  dt_model *m;
  dt_image_set train, test;
  uint8_t *d_train_images, *d_test_images; /* resident on the device */
  int32_t *h_idx, *h_y, *d_idx, *d_y;
  float *d_x, *d_losses, *h_losses, *h_logits, *d_sumsq;
  int nstates;
  const char *state_names[2];
  float *d_states[2];
  int32_t *perm;
  int64_t perm_epoch;
  int64_t batch, micro, eval_batch;
  int64_t steps_per_epoch, total_steps;
  int64_t step, epoch, offset; /* optimizer steps done; loader position */
  uint64_t seed;
  double train_time; /* seconds in training steps (no eval, no I/O) in this process */
  dt_metrics *metrics;
} trainer;

/* ---------- data ---------- */

static void load_data(trainer *T) {
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
  if (T->perm_epoch != epoch) {
    dt_rng r;
    dt_rng_seed(&r, T->seed, 0x5eed0000ULL + (uint64_t)epoch);
    dt_rng_permutation(&r, T->perm, T->train.n);
    T->perm_epoch = epoch;
  }
  return T->perm;
}

/* Uploads a micro-batch of sample indices and labels, then gathers and
 * normalises the images on the device. */
static dt_image_batch make_batch(trainer *T, const uint8_t *d_images, const uint8_t *labels,
                                 const int32_t *idx, int n) {
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
  return (dt_image_batch){.n = n, .x = T->d_x, .y = T->d_y};
}

/* ---------- schedule and optimizer ---------- */

static double lr_at(const trainer *T, int64_t s) {
  const dt_config *c = T->cfg;
  double base = c->optim_lr, lo = c->optim_min_lr;
  int64_t W = c->optim_warmup_steps;
  if (s < W) return base * (double)(s + 1) / (double)W;
  double p = T->total_steps > W ? (double)(s - W) / (double)(T->total_steps - W) : 1.0;
  if (p > 1) p = 1;
  if (!strcmp(c->optim_schedule, "cosine")) return lo + 0.5 * (base - lo) * (1 + cos(M_PI * p));
  if (!strcmp(c->optim_schedule, "linear")) return base + (lo - base) * p;
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
  size_t bytes = T->m->nparams_total * sizeof(float);
  for (int s = 0; s < T->nstates; s++) {
    T->d_states[s] = be->alloc(be, bytes);
    be->memset0(be, T->d_states[s], bytes);
  }
}

/* Returns the global gradient norm (before clipping). */
static double optimizer_step(trainer *T, double lr) {
  const dt_config *c = T->cfg;
  dt_backend_t be = T->be;
  dt_model *m = T->m;
  float sumsq = 0;
  be->k->sumsq(be->ctx, T->d_sumsq, m->g, m->nparams_total);
  be->d2h(be, &sumsq, T->d_sumsq, sizeof sumsq);
  double norm = sqrt((double)sumsq);
  float gscale = 1.0f;
  if (c->optim_grad_clip > 0 && norm > c->optim_grad_clip)
    gscale = (float)(c->optim_grad_clip / (norm + 1e-6));
  int t = (int)(T->step + 1);
  int sgd = !strcmp(c->optim_name, "sgd");
  int decoupled = !strcmp(c->optim_name, "adamw");
  for (int i = 0; i < m->nparams; i++) {
    const dt_param *p = &m->params[i];
    float wd = p->decay ? (float)c->optim_weight_decay : 0.0f;
    float *pp = m->p + p->offset, *g = m->g + p->offset;
    if (sgd)
      be->k->sgd_step(be->ctx, pp, g, T->d_states[0] + p->offset, p->count, (float)lr,
                      (float)c->optim_momentum, wd, c->optim_nesterov, t == 1, gscale);
    else
      be->k->adam_step(be->ctx, pp, g, T->d_states[0] + p->offset, T->d_states[1] + p->offset,
                       p->count, (float)lr, (float)c->optim_beta1, (float)c->optim_beta2,
                       (float)c->optim_eps, wd, decoupled, t, gscale);
  }
  return norm;
}

/* ---------- checkpoints ---------- */

static void fill_meta(const trainer *T, dt_ckpt_meta *meta) {
  memset(meta, 0, sizeof *meta);
  meta->step = T->step;
  meta->epoch = T->epoch;
  meta->epoch_offset = T->offset;
  meta->seed = T->seed;
  snprintf(meta->optimizer, sizeof meta->optimizer, "%s", T->cfg->optim_name);
  snprintf(meta->model, sizeof meta->model, "%s", T->m->family);
  meta->dp = meta->tp = meta->pp = meta->world = 1;
  meta->zero = 0;
}

static void host_buffers(trainer *T, dt_ckpt_buffers *b) {
  size_t n = T->m->nparams_total;
  memset(b, 0, sizeof *b);
  b->params = dt_malloc(n * sizeof(float));
  b->nstates = T->nstates;
  for (int s = 0; s < T->nstates; s++) {
    b->state_names[s] = T->state_names[s];
    b->states[s] = dt_malloc(n * sizeof(float));
  }
}

static void free_host_buffers(dt_ckpt_buffers *b) {
  free(b->params);
  for (int s = 0; s < b->nstates; s++) free(b->states[s]);
}

static void save_checkpoint(trainer *T) {
  dt_backend_t be = T->be;
  dt_ckpt_buffers b;
  host_buffers(T, &b);
  size_t bytes = T->m->nparams_total * sizeof(float);
  be->d2h(be, b.params, T->m->p, bytes);
  for (int s = 0; s < T->nstates; s++) be->d2h(be, b.states[s], T->d_states[s], bytes);
  dt_ckpt_meta meta;
  fill_meta(T, &meta);
  dt_error err;
  char path[4096];
  double t0 = dt_now();
  if (dt_ckpt_save(T->ckpt_dir, T->m->params, T->m->nparams, &meta, &b, T->config_text,
                   (int)T->cfg->checkpoint_keep, path, sizeof path, &err))
    dt_die_user("saving checkpoint: %s", err.msg);
  printf("checkpoint: saved %s (%.2f s)\n", path, dt_now() - t0);
  fflush(stdout);
  free_host_buffers(&b);
}

/* Returns 1 if a checkpoint was loaded. */
static int maybe_resume(trainer *T) {
  dt_error err;
  char path[4096];
  int r = dt_ckpt_resolve(T->cfg->checkpoint_resume, T->ckpt_dir, path, sizeof path, &err);
  if (r < 0) dt_die_user("%s", err.msg);
  if (r == 0) return 0;
  dt_ckpt_buffers b;
  host_buffers(T, &b);
  dt_ckpt_meta meta;
  fill_meta(T, &meta);
  if (dt_ckpt_load(path, T->m->params, T->m->nparams, &meta, &b, NULL, &err))
    dt_die_user("%s", err.msg);
  dt_backend_t be = T->be;
  size_t bytes = T->m->nparams_total * sizeof(float);
  be->h2d(be, T->m->p, b.params, bytes);
  for (int s = 0; s < T->nstates; s++) be->h2d(be, T->d_states[s], b.states[s], bytes);
  free_host_buffers(&b);
  if (meta.seed != T->seed)
    printf("note: checkpoint was made with train.seed=%llu; continuing its data order\n",
           (unsigned long long)meta.seed);
  T->seed = meta.seed;
  T->step = meta.step;
  T->epoch = meta.epoch;
  T->offset = meta.epoch_offset;
  printf("resumed from %s at step %lld (epoch %lld, sample %lld of it)\n", path,
         (long long)T->step, (long long)T->epoch, (long long)T->offset);
  return 1;
}

/* ---------- evaluation ---------- */

static void evaluate(trainer *T, double epoch_f) {
  dt_backend_t be = T->be;
  int nc = T->m->num_classes;
  int64_t correct = 0, n = T->test.n;
  int64_t cls_total[64] = {0}, cls_correct[64] = {0};
  double loss_sum = 0;
  int32_t *idx = dt_malloc((size_t)T->eval_batch * sizeof(int32_t));
  for (int64_t i0 = 0; i0 < n; i0 += T->eval_batch) {
    int bn = (int)DT_MIN(T->eval_batch, n - i0);
    for (int i = 0; i < bn; i++) idx[i] = (int32_t)(i0 + i);
    dt_image_batch b = make_batch(T, T->d_test_images, T->test.labels, idx, bn);
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
      if (best == y) correct++, cls_correct[y]++;
      loss_sum += T->h_losses[i];
    }
  }
  free(idx);
  double acc = (double)correct / (double)n, loss = loss_sum / (double)n;
  double cls[64];
  for (int k = 0; k < nc; k++) cls[k] = cls_total[k] ? (double)cls_correct[k] / cls_total[k] : 0;
  dt_metric vals[] = {{"epoch", epoch_f, 0},
                      {"loss", loss, 0},
                      {"accuracy", acc, 0},
                      {"train_time_s", T->train_time, 0}};
  dt_metrics_log(T->metrics, "test", (long)T->step, vals, 4, "class_accuracy", cls, nc);
  printf("eval  step %lld | epoch %.2f | test loss %.4f | test accuracy %.2f%% (%lld/%lld)\n",
         (long long)T->step, epoch_f, loss, 100 * acc, (long long)correct, (long long)n);
  fflush(stdout);
}

/* ---------- the loop ---------- */

static void setup(trainer *T, const dt_config *c) {
  T->cfg = c;
  if (c->log_dir[0]) snprintf(T->run_dir, sizeof T->run_dir, "%s", c->log_dir);
  else snprintf(T->run_dir, sizeof T->run_dir, "runs/%s", c->name[0] ? c->name : "run");
  if (c->checkpoint_dir[0]) snprintf(T->ckpt_dir, sizeof T->ckpt_dir, "%s", c->checkpoint_dir);
  else snprintf(T->ckpt_dir, sizeof T->ckpt_dir, "%s/checkpoints", T->run_dir);
  T->config_text = dt_config_to_text(c);
  T->seed = (uint64_t)c->train_seed;
  T->perm_epoch = -1;

  if (c->parallel_dp * c->parallel_tp * c->parallel_pp != 1 || c->parallel_zero != 0)
    dt_die_user_all("[parallel] dp=%ld tp=%ld pp=%ld zero=%ld: only dp=tp=pp=1 zero=0 is built so "
                "far (the distributed engine is still to come)",
                c->parallel_dp, c->parallel_tp, c->parallel_pp, c->parallel_zero);
  if (strcmp(c->train_precision, "fp32") != 0)
    dt_die_user("[train] precision = %s: LeNet-5 trains in fp32 only for now", c->train_precision);
  if (strcmp(c->optim_offload, "none") != 0)
    dt_die_user("[optim] offload = %s needs the distributed engine (not built yet)",
                c->optim_offload);
  T->batch = c->train_batch_size;
  T->micro = c->train_micro_batch_size ? c->train_micro_batch_size : T->batch;
  if (T->batch % T->micro != 0)
    dt_die_user("[train] micro_batch_size = %lld does not divide batch_size = %lld",
                (long long)T->micro, (long long)T->batch);
  T->eval_batch = c->train_eval_batch_size;

  dt_error err;
  T->be = dt_backend_create(c->train_device, 0, (int)c->train_threads, &err);
  if (!T->be) dt_die_user("[train] device = %s: %s", c->train_device, err.msg);
  load_data(T);
  if (T->batch > T->train.n)
    dt_die_user("[train] batch_size = %lld is larger than the %lld training samples",
                (long long)T->batch, (long long)T->train.n);
  T->steps_per_epoch = T->train.n / T->batch; /* the last partial batch is dropped */
  T->total_steps = c->train_max_steps > 0 ? c->train_max_steps : c->train_epochs * T->steps_per_epoch;

  int maxb = (int)DT_MAX(T->micro, T->eval_batch);
  T->m = dt_model_create(c, T->be, maxb, &err);
  if (!T->m) dt_die_user("%s", err.msg);
  if (T->m->in_h != T->train.h || T->m->in_w != T->train.w)
    dt_die_user("[data] dir = %s: images are %dx%d, but %s expects %dx%d", c->data_dir,
                T->train.h, T->train.w, T->m->family, T->m->in_h, T->m->in_w);
  if (T->train.num_classes > T->m->num_classes || T->train.num_classes > 64)
    dt_die_user("[data] dir = %s: %d classes, but %s has %d outputs", c->data_dir,
                T->train.num_classes, T->m->family, T->m->num_classes);

  dt_backend_t be = T->be;
  float *hp = dt_malloc(T->m->nparams_total * sizeof(float));
  T->m->init(T->m, hp, T->seed);
  be->h2d(be, T->m->p, hp, T->m->nparams_total * sizeof(float));
  free(hp);
  setup_optimizer(T);

  T->h_idx = be->host_alloc(be, (size_t)maxb * sizeof(int32_t));
  T->h_y = be->host_alloc(be, (size_t)maxb * sizeof(int32_t));
  T->d_idx = be->alloc(be, (size_t)maxb * sizeof(int32_t));
  T->d_y = be->alloc(be, (size_t)maxb * sizeof(int32_t));
  T->d_x = be->alloc(be, (size_t)maxb * T->train.h * T->train.w * sizeof(float));
  T->d_losses = be->alloc(be, (size_t)maxb * sizeof(float));
  T->h_losses = be->host_alloc(be, (size_t)maxb * sizeof(float));
  T->h_logits = be->host_alloc(be, (size_t)maxb * T->m->num_classes * sizeof(float));
  T->d_sumsq = be->alloc(be, sizeof(float));
  T->perm = dt_malloc((size_t)T->train.n * sizeof(int32_t));
}

static void teardown(trainer *T) {
  dt_backend_t be = T->be;
  dt_metrics_close(T->metrics);
  for (int s = 0; s < T->nstates; s++) be->free(be, T->d_states[s]);
  be->free(be, T->d_train_images);
  be->free(be, T->d_test_images);
  be->host_free(be, T->h_idx);
  be->host_free(be, T->h_y);
  be->host_free(be, T->h_losses);
  be->host_free(be, T->h_logits);
  be->free(be, T->d_idx);
  be->free(be, T->d_y);
  be->free(be, T->d_x);
  be->free(be, T->d_losses);
  be->free(be, T->d_sumsq);
  dt_model_destroy(T->m);
  dt_backend_destroy(be);
  dt_image_set_free(&T->train);
  dt_image_set_free(&T->test);
  free(T->perm);
  free(T->config_text);
}

/* One optimizer step over batch/micro micro-batches. Returns the mean loss. */
static double train_step(trainer *T) {
  dt_backend_t be = T->be;
  dt_model *m = T->m;
  const int32_t *perm = epoch_perm(T, T->epoch);
  be->memset0(be, m->g, m->nparams_total * sizeof(float));
  double loss_sum = 0;
  float dscale = 1.0f / (float)T->batch;
  for (int64_t j = 0; j < T->batch; j += T->micro) {
    int n = (int)T->micro;
    dt_image_batch b = make_batch(T, T->d_train_images, T->train.labels, perm + T->offset + j, n);
    m->forward_backward(m, &b, T->d_losses, dscale);
    be->d2h(be, T->h_losses, T->d_losses, (size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) loss_sum += T->h_losses[i];
  }
  return loss_sum / (double)T->batch;
}

int dt_train(const dt_config *c) {
  trainer T_;
  trainer *T = &T_;
  memset(T, 0, sizeof *T);
  setup(T, c);
  maybe_resume(T);

  dt_error err;
  T->metrics = dt_metrics_open(T->run_dir, c->log_tensorboard, &err);
  if (!T->metrics) dt_die_user("[log] dir: %s", err.msg);
  {
    char path[DT_STR * 2 + 16];
    snprintf(path, sizeof path, "%s/config.ini", T->run_dir);
    FILE *fp = fopen(path, "w");
    if (fp) fputs(T->config_text, fp), fclose(fp);
  }
  printf("device: %s\nmodel: %s, %zu parameters, %.1f MB activations at micro-batch %d\n",
         T->be->desc, T->m->family, T->m->nparams_total, T->m->activation_bytes / 1e6,
         T->m->max_batch);
  printf("data: %lld train / %lld test images; batch %lld (micro %lld), %lld steps/epoch, %lld "
         "steps\nrun dir: %s\n",
         (long long)T->train.n, (long long)T->test.n, (long long)T->batch, (long long)T->micro,
         (long long)T->steps_per_epoch, (long long)T->total_steps, T->run_dir);
  fflush(stdout);

  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  double t_start = dt_now(), t_log = t_start;
  int64_t log_samples = 0, run_samples = 0;
  while (T->step < T->total_steps && !g_stop_signal) {
    double t0 = dt_now();
    double lr = lr_at(T, T->step);
    double loss = train_step(T);
    double gnorm = optimizer_step(T, lr);
    T->be->sync(T->be);
    T->train_time += dt_now() - t0;
    T->step++;
    T->offset += T->batch;
    log_samples += T->batch;
    run_samples += T->batch;
    int epoch_end = T->offset + T->batch > T->train.n;
    double epoch_f = (double)T->epoch + (double)T->offset / (double)(T->steps_per_epoch * T->batch);
    if (!isfinite(loss))
      dt_die_user("step %lld: loss is %f (not finite); lower [optim] lr or set optim.grad_clip",
                  (long long)T->step, loss);
    if (T->step % c->log_every == 0 || T->step == T->total_steps || T->step == 1) {
      double now = dt_now();
      double sps = log_samples / (now - t_log);
      dt_metric vals[] = {{"epoch", epoch_f, 0},       {"loss", loss, 0},
                          {"lr", lr, 0},               {"grad_norm", gnorm, 0},
                          {"samples_per_s", sps, 0},   {"time_s", now - t_start, 0}};
      dt_metrics_log(T->metrics, "train", (long)T->step, vals, 6, NULL, NULL, 0);
      printf("step %6lld/%lld | epoch %5.2f | loss %.6f | lr %.3e | gnorm %.3f | %8.0f img/s | "
             "%.1f s\n",
             (long long)T->step, (long long)T->total_steps, epoch_f, loss, lr, gnorm, sps,
             now - t_start);
      fflush(stdout);
      t_log = now;
      log_samples = 0;
    }
    if (epoch_end) {
      T->epoch++;
      T->offset = 0;
    }
    int last = T->step == T->total_steps;
    if (epoch_end || last) {
      evaluate(T, epoch_end ? (double)T->epoch : epoch_f);
      dt_metrics_flush(T->metrics);
    }
    if (c->checkpoint_every > 0 && (T->step % c->checkpoint_every == 0 || last))
      save_checkpoint(T);
  }
  int code = 0;
  if (g_stop_signal) {
    printf("stopped by signal %d at step %lld\n", (int)g_stop_signal, (long long)T->step);
    if (c->checkpoint_every > 0) save_checkpoint(T);
    code = 128 + (int)g_stop_signal;
  }
  printf("done: %lld steps, %.2f s training (%.0f img/s), %.2f s total\n", (long long)T->step,
         T->train_time, T->train_time > 0 ? (double)run_samples / T->train_time : 0.0, dt_now() - t_start);
  teardown(T);
  return code;
}
