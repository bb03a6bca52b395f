/* plan.c: `dtrain --print-memory`: what each rank of a layout would keep in
 * device memory, computed without a device and without allocating it, so a
 * user can size GPT-1.6B's layout on a login node. The model is built as it
 * is for training but on a backend whose allocations only count (its
 * activation bytes are the model's own sum); the data-parallel engine's
 * bytes come from dt_dp_plan, the pipeline's from dt_pipe_stash_bytes: the
 * functions the engine itself sizes its buffers with. tests/test_plan.sh
 * checks the plan against the table a real run prints after its first step. */
#include "plan.h"

#include <mpi.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../models/model.h"
#include "../parallel/dp.h"
#include "../parallel/pipeline.h"
#include "../runtime/backend.h"
#include "../runtime/dt.h"
#include "train.h"

/* ---- a backend whose allocations hand out no memory ---- */

/* The models' constructors keep the pointers they are given and may
 * upload constants (the Transformer's position table), which go nowhere;
 * reading memory back would be a bug of the plan, caught here rather than
 * as a wild read. */
static max_align_t meter_cell;
static void *meter_alloc(dt_backend_t be, size_t bytes) {
  (void)be, (void)bytes;
  return &meter_cell;
}
static void meter_free(dt_backend_t be, void *p) { (void)be, (void)p; }
static void meter_memset0(dt_backend_t be, void *p, size_t bytes) {
  (void)be, (void)p, (void)bytes;
}
static void meter_put(dt_backend_t be, void *dst, const void *src, size_t bytes) {
  (void)be, (void)dst, (void)src, (void)bytes;
}
static void meter_get(dt_backend_t be, void *dst, const void *src, size_t bytes) {
  (void)be, (void)dst, (void)src, (void)bytes;
  dt_fatal("dtrain", "the memory plan read memory it never allocated", __FILE__, __LINE__,
           __func__, "meter_get");
}

/* ---- the layout a config asks for ---- */

typedef struct plan {
  const dt_config *c;
  int dp, tp, pp, zero, nstates, offload, gpipe, s2s;
  int cuda, bf16;
  int64_t rank_batch, micro; /* dt_train_batches' */
} plan;

typedef struct plan_row {
  int rank, tp_r, pp_r;
  double params, grads, optim, acts, scratch, wcopy, total;
} plan_row;

/* Rank (dp rank 0, tp_r, pp_r)'s row at micro-batch size `micro`. Data-
 * parallel rank 0 holds the largest shard; the others as much or less. */
static void plan_rank(const plan *P, dt_backend_t meter, int64_t micro, int tp_r, int pp_r,
                      plan_row *row) {
  const dt_config *c = P->c;
  const int maxb = dt_train_max_batch(c, micro);
  const int nmicro = P->s2s ? 1 : (int)(P->rank_batch / micro);
  const dt_model_part part = {P->tp, tp_r, P->pp, pp_r,
                              dt_pipe_slots(pp_r, P->pp, nmicro, P->gpipe)};
  dt_error err;
  dt_model *m = dt_model_create_part(c, meter, maxb, &part, &err);
  if (!m) dt_die_user("%s", err.msg);
  dt_dp_plan_bytes b;
  dt_dp_plan(m->params, m->nparams, m->nparams_total, P->dp, 0, P->zero, P->nstates,
             c->parallel_bucket_mb, dt_train_reduce_dtype(c), &b);
  memset(row, 0, sizeof *row);
  row->rank = (pp_r * P->dp) * P->tp + tp_r; /* tp fastest, then dp, then pp */
  row->tp_r = tp_r, row->pp_r = pp_r;
  row->params = (double)b.param_bytes;
  row->grads = (double)b.grad_bytes;
  row->optim = P->offload ? 0.0 : (double)b.optim_bytes;
  size_t stash = P->pp > 1 ? dt_pipe_stash_bytes(pp_r, P->pp, P->gpipe, nmicro,
                                                 (size_t)maxb * (size_t)m->max_t *
                                                     (size_t)m->stage_width)
                           : 0;
  row->acts = (double)(m->activation_bytes + stash);
  /* the first and last stages' exchange buffer of the tied token table's
   * gradient, where the two copies are not paired (train.c) */
  const int ends = pp_r == 0 || pp_r == P->pp - 1;
  const int wte = dt_model_find_param(m, "wte.weight");
  if (P->pp > 1 && ends && wte >= 0 && !(P->zero == 0 || P->dp == 1))
    row->grads += (double)m->params[wte].count * sizeof(float);
  /* the scratch is a buffer of its own only where the gradients are
   * sharded; else it is the grads column's flat buffer */
  row->scratch = (double)b.scratch_bytes;
  /* train.precision = bf16: the linear layers read a rounded copy of the
   * weights, bf16 on the GPU and rounded floats on the CPU; ZeRO-3 rounds
   * each gathered layer as it goes instead */
  if (P->bf16 && P->zero < 3)
    row->wcopy = (double)m->nparams_total * (P->cuda ? 2.0 : 4.0);
  row->total = row->params + row->grads + row->optim + row->acts + row->wcopy +
               (P->zero >= 2 ? row->scratch : 0.0) + (P->cuda ? (double)(32 << 20) : 0.0);
  dt_model_destroy(m);
}

/* The busiest rank's total at micro-batch size `micro`; rows (tp*pp of
 * them) when given. */
static double plan_all(const plan *P, dt_backend_t meter, int64_t micro, plan_row *rows) {
  double most = 0;
  for (int s = 0; s < P->pp; s++)
    for (int t = 0; t < P->tp; t++) {
      plan_row r;
      plan_rank(P, meter, micro, t, s, &r);
      if (rows) rows[s * P->tp + t] = r;
      most = DT_MAX(most, r.total);
    }
  return most;
}

/* The busiest rank at the config's micro-batch under each ZeRO stage and,
 * for GPT, each train.recompute: what to change when the layout does not
 * fit (as DeepSpeed's estimators list their options). cc is P's config,
 * changed and put back. */
static void print_settings(plan *P, dt_config *cc, dt_backend_t meter, double limit_gib) {
  static const char *rc[] = {"none", "mlp", "block"};
  const int nrc = !strcmp(cc->model_name, "gpt") ? 3 : 1;
  const long zero0 = cc->parallel_zero;
  char rc0[DT_STR];
  snprintf(rc0, sizeof rc0, "%s", cc->train_recompute);
  printf("the busiest rank at micro_batch_size %lld under other settings (GiB; * within "
         "%.1f):\n          ", (long long)P->micro, limit_gib);
  for (int r = 0; r < nrc; r++) printf("  recompute=%-5s", nrc > 1 ? rc[r] : rc0);
  printf("\n");
  for (int z = 0; z <= 3; z++) {
    printf("  zero=%d   ", z);
    cc->parallel_zero = z, P->zero = z;
    for (int r = 0; r < nrc; r++) {
      if (nrc > 1) snprintf(cc->train_recompute, sizeof cc->train_recompute, "%s", rc[r]);
      const double gib = plan_all(P, meter, P->micro, NULL) / 1073741824.0;
      printf("  %14.2f%s", gib, gib <= limit_gib ? "*" : " ");
    }
    printf("\n");
  }
  cc->parallel_zero = zero0, P->zero = (int)zero0;
  snprintf(cc->train_recompute, sizeof cc->train_recompute, "%s", rc0);
}

int dt_print_memory(const dt_config *c, double limit_gib) {
  int world = 1, me = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  if (me != 0) return 0; /* a plan needs one process; under mpirun rank 0 speaks */
  plan P;
  memset(&P, 0, sizeof P);
  P.c = c;
  P.tp = (int)c->parallel_tp, P.pp = (int)c->parallel_pp, P.zero = (int)c->parallel_zero;
  P.dp = (int)c->parallel_dp;
  if (P.dp == 0) {
    if (world == 1 && P.tp * P.pp > 1)
      dt_die_user("[parallel] dp = 0 takes the job's ranks over tp*pp = %d; for a memory "
                  "plan give the layout: parallel.dp=N (and tp, pp)", P.tp * P.pp);
    if (world % (P.tp * P.pp) != 0)
      dt_die_user("[parallel] dp = 0 takes the %d ranks over tp*pp = %d, which does not "
                  "divide them", world, P.tp * P.pp);
    P.dp = world / (P.tp * P.pp);
  }
  P.nstates = !strcmp(c->optim_name, "sgd") ? 1 : 2;
  P.offload = !strcmp(c->optim_offload, "cpu");
  P.gpipe = !strcmp(c->parallel_pp_schedule, "gpipe");
  P.s2s = !strcmp(c->model_name, "transformer");
  /* the plan is for the GPU unless train.device = cpu, whether or not this
   * machine has one; precision auto is the trainer's choice there */
  P.cuda = strcmp(c->train_device, "cpu") != 0;
  dt_config cc = *c;
  if (!strcmp(cc.train_precision, "auto"))
    snprintf(cc.train_precision, sizeof cc.train_precision, "%s", P.cuda ? "bf16" : "fp32");
  P.c = c = &cc;
  P.bf16 = !strcmp(c->train_precision, "bf16");
  dt_batches bs;
  dt_error err;
  if (dt_train_batches(c, P.dp, &bs, &err)) dt_die_user("%s", err.msg);
  P.rank_batch = bs.rank_batch, P.micro = bs.micro;

  /* the CPU backend's kernel table answers the constructor's size queries
   * (the embedding backward's workspace, a few bytes a token on either) */
  dt_backend_t cpu = dt_backend_cpu_create(1);
  struct dt_backend meter = *cpu;
  meter.alloc = meter_alloc, meter.free = meter_free, meter.memset0 = meter_memset0;
  meter.h2d = meter.d2d = meter_put, meter.d2h = meter_get;

  const int nrows = P.tp * P.pp;
  plan_row *rows = dt_calloc((size_t)nrows, sizeof *rows);
  plan_all(&P, &meter, P.micro, rows);
  const char *unit = P.s2s ? "sentences" : !strcmp(c->model_name, "gpt") ? "sequences" : "samples";
  printf("memory plan per rank (bytes): %s, dp %d x tp %d x pp %d = %d ranks, zero=%d, %s on %s, "
         "micro-batch %lld %s, recompute %s\n", c->model_name, P.dp, P.tp, P.pp,
         P.dp * P.tp * P.pp, P.zero, c->train_precision, P.cuda ? "cuda" : "cpu",
         (long long)P.micro, unit, c->train_recompute);
  printf("  rank  tp  pp        params         grads     optimizer   activations  grad scratch"
         "  %s    total GiB\n", P.bf16 ? "bf16 weights" : "            ");
  for (int i = 0; i < nrows; i++) {
    const plan_row *r = &rows[i];
    printf("  %4d  %2d  %2d  %12.0f  %12.0f  %12.0f  %12.0f  %12.0f  ", r->rank, r->tp_r, r->pp_r,
           r->params, r->grads, r->optim, r->acts, r->scratch);
    if (P.bf16) printf("%12.0f", r->wcopy);
    else printf("%12s", "");
    printf("  %11.2f\n", r->total / 1073741824.0);
  }
  printf("  (data-parallel rank 0 of each part; the other dp ranks hold as much or less.\n"
         "  grads: the flat gradient buffer, or under ZeRO-2/3 over several dp ranks the\n"
         "  reduced shard; grad scratch: the buffers backward writes, under ZeRO-2/3 an\n"
         "  estimate (the largest gradient bucket and two of the next size), else the flat\n"
         "  gradient buffer of the grads column. parallel.reduce_dtype = bf16 over several\n"
         "  dp ranks adds the bf16 copies gradients are reduced in: to grads under ZeRO-0/1,\n"
         "  to grad scratch under ZeRO-2/3. total: the columns%s.\n"
         "  Not counted: the CUDA context, the libraries' own buffers, the GEMMs' operand\n"
         "  scratch, the data batches%s)\n",
         P.cuda ? " and cuBLASLt's 32 MiB workspace" : "",
         P.offload ? ", the optimizer state, which optim.offload = cpu keeps on the host" : "");
  if (limit_gib > 0 && P.s2s)
    printf("(the Transformer's batches are token counts: no micro-batch search)\n");
  if (limit_gib > 0 && !P.s2s) {
    /* the micro-batch sizes that divide the per-rank batch, smallest first */
    printf("micro-batch sizes within %.1f GiB on the busiest rank ([train] batch_size / dp = "
           "%lld per rank):\n", limit_gib, (long long)P.rank_batch);
    int64_t best = 0;
    for (int64_t mb = 1; mb <= P.rank_batch; mb++) {
      if (P.rank_batch % mb) continue;
      const double most = plan_all(&P, &meter, mb, NULL) / 1073741824.0;
      const int fits = most <= limit_gib;
      printf("  micro_batch_size %5lld  %9.2f GiB  %s\n", (long long)mb, most,
             fits ? "fits" : "does not fit");
      if (!fits) break; /* more sequences only add activations */
      best = mb;
    }
    if (best) printf("largest micro_batch_size that fits: %lld\n", (long long)best);
    else printf("no micro_batch_size fits in %.1f GiB: add parallel.zero, tp or pp, or set "
                "train.recompute\n", limit_gib);
    print_settings(&P, &cc, &meter, limit_gib);
  }
  fflush(stdout);
  free(rows);
  dt_backend_destroy(cpu);
  return 0;
}
