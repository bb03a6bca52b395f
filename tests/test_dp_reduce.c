/* test_dp_reduce.c: the data-parallel engine's gradient reductions
 * (parallel/dp.c) at every ZeRO stage, with gradients reduced in fp32 and in
 * bf16 (parallel.reduce_dtype), one and two micro-batches a step, against
 * exactly known sums; run under mpiexec -n 2 and 4, on the CPU backend with
 * MPI and, where a (possibly emulated) GPU is present, on the CUDA backend
 * with MPI and NCCL.
 *
 * Each gradient element a rank's backward writes is a + d: a an integer in
 * [1, 8], d a multiple of 2^-12 with |d| <= 3 * 2^-12. In fp32 every partial
 * sum is exact (at most 19 significant bits), so the reduced gradient is
 * sum(a + d) in any order. Rounded to bf16 (8 significant bits), a + d is a,
 * and so is the sum of two micro-batches' (a1 + a2 + d1 + d2 rounds to
 * a1 + a2); sums of the a's are integers below 256, exact in bf16 in any
 * order: the reduced gradient is sum(a). The two answers differ wherever
 * sum(d) != 0, so a bf16 reduction that stays fp32, or an fp32 one that
 * rounds, fails, as does a lost, doubled or misplaced bucket or shard. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "comm.h"
#include "dp.h"

static const size_t counts[] = {7, 1000, 3, 65, 300, 2049, 1};
#define NPARAMS (sizeof counts / sizeof counts[0])
/* about 600 floats a bucket: several buckets, cut inside no parameter */
#define BUCKET_MB (600.0 * sizeof(float) / (1024.0 * 1024.0))

static long g_pass, g_fail;

static int ival(int step, int r, int j, size_t e) {
  return 1 + (int)(((size_t)step * 3 + (size_t)r * 5 + (size_t)j * 3 + e * 7) % 8);
}
static float dval(int step, int r, int j, size_t e) {
  return (float)((int)(((size_t)step + (size_t)r * 3 + (size_t)j * 5 + e * 11) % 7) - 3) *
         0x1p-12f;
}

/* The reduced gradient of flat element e over nranks ranks, nmicro
 * micro-batches each. */
static double expected(int step, int nranks, int nmicro, size_t e, int bf16) {
  double s = 0;
  for (int r = 0; r < nranks; r++)
    for (int j = 0; j < nmicro; j++) s += ival(step, r, j, e) + (bf16 ? 0.0 : dval(step, r, j, e));
  return s;
}

static void report(int ok, const char *label, const char *what) {
  int all = ok;
  MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) printf("%s %-44s %s\n", all ? "ok  " : "FAIL", label, what);
  if (all) g_pass++;
  else g_fail++;
}

/* Two optimizer steps of nmicro micro-batches through a dt_dp, checking the
 * reduced gradient of this rank's optimizer range after each. */
static void run_case(const char *name, dt_backend_t be, dt_comm_t comm, int zero, dt_dtype wire,
                     int nmicro) {
  dt_param params[NPARAMS];
  size_t total = 0;
  for (size_t i = 0; i < NPARAMS; i++) {
    memset(&params[i], 0, sizeof params[i]);
    snprintf(params[i].name, sizeof params[i].name, "p%zu", i);
    params[i].ndims = 1, params[i].shape[0] = (int64_t)counts[i], params[i].tp_dim = -1;
    params[i].offset = total, params[i].count = counts[i];
    total += counts[i];
  }
  const int bf16 = wire == DT_BF16;
  char label[128];
  snprintf(label, sizeof label, "%s zero=%d %s micro=%d", name, zero, bf16 ? "bf16" : "fp32",
           nmicro);
  const int sharded = zero >= 2 && comm->size > 1;
  float *g = sharded ? NULL : be->alloc(be, total * sizeof(float));
  dt_dp *dp = dt_dp_create(comm, be, params, (int)NPARAMS, total, g, zero, BUCKET_MB, wire);
  float *h = dt_calloc(total, sizeof(float));     /* this rank's gradient, as backward adds it */
  float *got = dt_calloc(total, sizeof(float));
  for (int step = 0; step < 2; step++) {
    memset(h, 0, total * sizeof(float));
    if (g) be->memset0(be, g, total * sizeof(float));
    for (int j = 0; j < nmicro; j++) {
      dt_dp_micro_begin(dp, j == 0, j == nmicro - 1);
      /* backward order: the last parameter's gradient is final first */
      for (int i = (int)NPARAMS - 1; i >= 0; i--) {
        const dt_param *p = &params[i];
        float *dst = sharded ? dt_dp_grad_ptr(dp, i) : g + p->offset;
        for (size_t k = 0; k < p->count; k++) {
          const size_t e = p->offset + k;
          const float v = (float)ival(step, comm->rank, j, e) + dval(step, comm->rank, j, e);
          /* the micro-batches add up in the flat buffer; a pool buffer
           * starts zeroed every micro-batch */
          h[e] = sharded ? v : h[e] + v;
        }
        be->h2d(be, dst, h + p->offset, p->count * sizeof(float));
        dt_dp_grad_ready(dp, i);
      }
      dt_dp_micro_end(dp);
    }
    const size_t n = dp->opt_hi - dp->opt_lo;
    be->d2h(be, got, dt_dp_grads(dp), n * sizeof(float));
    size_t bad = 0, first = 0;
    double want_first = 0, got_first = 0;
    for (size_t k = n; k-- > 0;) {
      const size_t e = dp->opt_lo + k;
      const double want = expected(step, comm->size, nmicro, e, bf16 && comm->size > 1);
      if ((double)got[k] != want) bad++, first = e, want_first = want, got_first = got[k];
    }
    char what[160];
    if (bad)
      snprintf(what, sizeof what, "step %d: rank %d: %zu of %zu wrong, first [%zu] = %.9g, want "
               "%.9g", step + 1, comm->rank, bad, n, first, got_first, want_first);
    else
      snprintf(what, sizeof what, "step %d: [%zu, %zu) of %zu exact", step + 1, dp->opt_lo,
               dp->opt_hi, total);
    report(bad == 0, label, what);
  }
  /* the start-up table's gradient bytes are what dtrain --print-memory plans */
  size_t pb, gb, ob;
  dt_dp_memory(dp, 2, &pb, &gb, &ob);
  dt_dp_plan_bytes plan;
  dt_dp_plan(params, (int)NPARAMS, total, comm->size, comm->rank, zero, 2, BUCKET_MB, wire, &plan);
  char what[160];
  snprintf(what, sizeof what, "grads %zu B, optimizer %zu B; planned %zu, %zu", gb, ob,
           plan.grad_bytes, plan.optim_bytes);
  report(gb == plan.grad_bytes && ob == plan.optim_bytes, label, what);
  free(h), free(got);
  dt_dp_destroy(dp);
  if (g) be->free(be, g);
}

static void run_all(const char *name, dt_backend_t be, dt_comm_t comm) {
  const dt_dtype wires[] = {DT_F32, DT_BF16};
  for (int zero = 0; zero <= 3; zero++)
    for (int w = 0; w < 2; w++)
      for (int nmicro = 1; nmicro <= 2; nmicro++) run_case(name, be, comm, zero, wires[w], nmicro);
}

static int local_rank(void) {
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int r;
  MPI_Comm_rank(node, &r);
  MPI_Comm_free(&node);
  return r;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  dt_set_rank(rank);
  setvbuf(stdout, NULL, _IOLBF, 0);

  dt_backend_t cpu = dt_backend_cpu_create(1);
  dt_comm_t c = dt_comm_mpi_create(MPI_COMM_WORLD, cpu);
  run_all("cpu/mpi", cpu, c);
  dt_comm_destroy(c);
  dt_backend_destroy(cpu);

  int ngpu = dt_cuda_device_count(), any_gpu = 0;
  MPI_Allreduce(&ngpu, &any_gpu, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (any_gpu > 0) {
    dt_error err = {""};
    dt_backend_t gpu = dt_backend_create("cuda", local_rank(), 0, &err);
    if (!gpu) dt_die_user("%s", err.msg);
    c = dt_comm_mpi_create(MPI_COMM_WORLD, gpu);
    run_all("cuda/mpi", gpu, c);
    dt_comm_destroy(c);
    c = dt_comm_nccl_create(MPI_COMM_WORLD, gpu, &err);
    if (c) {
      run_all("cuda/nccl", gpu, c);
      dt_comm_destroy(c);
    } else if (rank == 0) {
      printf("cuda/nccl not run: %s\n", err.msg);
    }
    dt_backend_destroy(gpu);
  } else if (rank == 0) {
    printf("cuda/mpi, cuda/nccl not run: no GPU visible\n");
  }
  if (rank == 0) printf("%ld passed, %ld failed\n", g_pass, g_fail);
  MPI_Finalize();
  return g_fail ? 1 : 0;
}
