/* comm.c (bench): all-reduce, reduce-scatter and all-gather bandwidth through
 * dt_comm, in the manner of nccl-tests: results checked on exact data first,
 * then timed; algbw = bytes / time, busbw = algbw * the collective's factor.
 *
 *   mpiexec -n 2 build/bench/comm [--backend cpu|cuda] [--comm mpi|nccl]
 *       [--min 8] [--max 1G] [--dtype f32] [--iters 20] [--warmup 5] [--jsonl]
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "comm.h"

typedef enum coll { ALL_REDUCE, REDUCE_SCATTER, ALL_GATHER } coll;
static const char *coll_names[] = {"all_reduce", "reduce_scatter", "all_gather"};

typedef struct opts {
  const char *backend, *comm;
  size_t min_bytes, max_bytes;
  dt_dtype t;
  int iters, warmup, jsonl;
} opts;

typedef struct bench {
  opts o;
  dt_backend_t be;
  dt_comm_t c;
  int rank, n;
  void *send, *recv; /* max_bytes each, on the backend */
  unsigned char *host;
  int range;         /* inputs in [-range, range]: sums stay exact in the dtype */
  double busbw_sum;
  int rows;
  long wrong_total;
} bench;

static void usage(void) {
  fprintf(stderr,
          "usage: comm [--backend cpu|cuda] [--comm mpi|nccl] [--min BYTES] [--max BYTES]\n"
          "            [--dtype f32|bf16|f16|i32|i64] [--iters N] [--warmup N] [--jsonl]\n"
          "BYTES takes K, M, G suffixes (powers of 1024); sizes double from --min to --max\n");
}

static size_t parse_bytes(const char *s, const char *flag) {
  char *end = NULL;
  unsigned long long v = strtoull(s, &end, 10);
  size_t mul = 1;
  if (*end == 'K' || *end == 'k') mul = (size_t)1 << 10, end++;
  else if (*end == 'M' || *end == 'm') mul = (size_t)1 << 20, end++;
  else if (*end == 'G' || *end == 'g') mul = (size_t)1 << 30, end++;
  if (end == s || *end != '\0' || v == 0) dt_die_user_all("%s: '%s' is not a size in bytes", flag, s);
  return (size_t)v * mul;
}

static int parse_int(const char *s, const char *flag, int min) {
  char *end = NULL;
  long v = strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < min || v > 1000000)
    dt_die_user_all("%s: '%s' is not an integer >= %d", flag, s, min);
  return (int)v;
}

static opts parse_args(int argc, char **argv) {
  opts o = {"cpu", "mpi", 8, (size_t)1 << 30, DT_F32, 20, 5, 0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--jsonl")) { o.jsonl = 1; continue; }
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      if (dt_rank() <= 0) usage();
      MPI_Finalize();
      exit(0);
    }
    if (!v) {
      if (dt_rank() <= 0) usage();
      dt_die_user_all("%s: missing value or unknown option", a);
    }
    i++;
    if (!strcmp(a, "--backend")) o.backend = v;
    else if (!strcmp(a, "--comm")) o.comm = v;
    else if (!strcmp(a, "--min")) o.min_bytes = parse_bytes(v, a);
    else if (!strcmp(a, "--max")) o.max_bytes = parse_bytes(v, a);
    else if (!strcmp(a, "--iters")) o.iters = parse_int(v, a, 1);
    else if (!strcmp(a, "--warmup")) o.warmup = parse_int(v, a, 0);
    else if (!strcmp(a, "--dtype")) {
      int k = 0;
      while (k < DT_U8 && strcmp(dt_dtype_name((dt_dtype)k), v)) k++;
      if (k == DT_U8) dt_die_user_all("--dtype: '%s' is not one of f32, bf16, f16, i32, i64", v);
      o.t = (dt_dtype)k;
    } else {
      if (dt_rank() <= 0) usage();
      dt_die_user_all("unknown option %s", a);
    }
  }
  if (strcmp(o.comm, "mpi") && strcmp(o.comm, "nccl"))
    dt_die_user_all("--comm: '%s' is not mpi or nccl", o.comm);
  if (o.min_bytes > o.max_bytes) dt_die_user_all("--min is larger than --max");
  return o;
}

/* ---- exact data ---- */

static int gen(const bench *b, int rank, size_t i) {
  return (int)(((size_t)rank * 7 + i * 3) % (size_t)(2 * b->range + 1)) - b->range;
}

static void put(dt_dtype t, void *p, size_t i, int v) {
  switch (t) {
    case DT_F32: ((float *)p)[i] = (float)v; break;
    case DT_BF16: ((uint16_t *)p)[i] = dt_float_to_bf16((float)v); break;
    case DT_F16: ((uint16_t *)p)[i] = dt_float_to_f16((float)v); break;
    case DT_I32: ((int32_t *)p)[i] = v; break;
    case DT_I64: ((int64_t *)p)[i] = v; break;
    default: break;
  }
}

static double get(dt_dtype t, const void *p, size_t i) {
  switch (t) {
    case DT_F32: return ((const float *)p)[i];
    case DT_BF16: return dt_bf16_to_float(((const uint16_t *)p)[i]);
    case DT_F16: return dt_f16_to_float(((const uint16_t *)p)[i]);
    case DT_I32: return ((const int32_t *)p)[i];
    case DT_I64: return (double)((const int64_t *)p)[i];
    default: return 0;
  }
}

/* Per-rank input and output element counts of one row. */
static void row_counts(const bench *b, coll k, size_t count, size_t *in, size_t *out) {
  size_t per = count / (size_t)b->n;
  *in = k == ALL_REDUCE ? count : k == REDUCE_SCATTER ? per * (size_t)b->n : per;
  *out = k == ALL_REDUCE ? count : k == REDUCE_SCATTER ? per : per * (size_t)b->n;
}

static void run_once(bench *b, coll k, size_t count) {
  size_t per = count / (size_t)b->n;
  if (k == ALL_REDUCE) b->c->allreduce(b->c, b->send, b->recv, count, b->o.t, DT_SUM);
  else if (k == REDUCE_SCATTER) b->c->reduce_scatter(b->c, b->send, b->recv, per, b->o.t, DT_SUM);
  else b->c->allgather(b->c, b->send, b->recv, per, b->o.t);
}

/* Fill the input, run once, compare every output element; wrong on this rank. */
static long check_row(bench *b, coll k, size_t count) {
  size_t in, out, es = dt_dtype_size(b->o.t);
  row_counts(b, k, count, &in, &out);
  for (size_t i = 0; i < in; i++) put(b->o.t, b->host, i, gen(b, b->rank, i));
  b->be->h2d(b->be, b->send, b->host, in * es);
  b->be->memset0(b->be, b->recv, out * es);
  run_once(b, k, count);
  b->be->d2h(b->be, b->host, b->recv, out * es);
  size_t per = count / (size_t)b->n;
  long wrong = 0;
  for (size_t i = 0; i < out; i++) {
    double want = 0;
    if (k == ALL_GATHER) want = gen(b, (int)(i / per), i % per);
    else {
      size_t j = k == ALL_REDUCE ? i : (size_t)b->rank * per + i;
      for (int r = 0; r < b->n; r++) want += gen(b, r, j);
    }
    wrong += get(b->o.t, b->host, i) != want;
  }
  return wrong;
}

/* Mean seconds per iteration on the slowest rank (valid on rank 0). */
static double time_row(bench *b, coll k, size_t count) {
  for (int i = 0; i < b->o.warmup; i++) run_once(b, k, count);
  b->be->sync(b->be);
  b->c->barrier(b->c);
  double t0 = MPI_Wtime();
  for (int i = 0; i < b->o.iters; i++) run_once(b, k, count);
  b->be->sync(b->be);
  double t = (MPI_Wtime() - t0) / b->o.iters, tmax = 0;
  MPI_Reduce(&t, &tmax, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  return tmax;
}

static void print_header(const bench *b, coll k) {
  if (b->rank != 0 || b->o.jsonl) return;
  printf("#\n# %s\n", coll_names[k]);
  printf("# %12s %12s %5s %6s | %10s %11s %11s %7s\n", "size", "count", "type", "redop",
         "time", "algbw", "busbw", "#wrong");
  printf("# %12s %12s %5s %6s | %10s %11s %11s %7s\n", "(B)", "(elements)", "", "", "(us)",
         "(GB/s)", "(GB/s)", "");
}

static void run_coll(bench *b, coll k) {
  size_t es = dt_dtype_size(b->o.t);
  double factor = k == ALL_REDUCE ? 2.0 * (b->n - 1) / b->n : (double)(b->n - 1) / b->n;
  print_header(b, k);
  for (size_t bytes = b->o.min_bytes; bytes <= b->o.max_bytes; bytes *= 2) {
    size_t count = bytes / es;
    if (k != ALL_REDUCE) count -= count % (size_t)b->n; /* whole blocks per rank */
    if (!count) continue;
    long wrong = check_row(b, k, count), wrong_all = 0;
    MPI_Allreduce(&wrong, &wrong_all, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    double t = time_row(b, k, count);
    b->wrong_total += wrong_all;
    if (b->rank != 0) continue;
    size_t row_bytes = count * es;
    double algbw = (double)row_bytes / t / 1e9, busbw = algbw * factor;
    b->busbw_sum += busbw;
    b->rows++;
    const char *redop = k == ALL_GATHER ? "none" : "sum";
    if (b->o.jsonl)
      printf("{\"coll\":\"%s\",\"ranks\":%d,\"backend\":\"%s\",\"comm\":\"%s\",\"size\":%zu,"
             "\"count\":%zu,\"type\":\"%s\",\"redop\":\"%s\",\"time_us\":%.3f,"
             "\"algbw_GBps\":%.4f,\"busbw_GBps\":%.4f,\"wrong\":%ld}\n",
             coll_names[k], b->n, b->be->name, b->c->kind, row_bytes, count,
             dt_dtype_name(b->o.t), redop, t * 1e6, algbw, busbw, wrong_all);
    else
      printf("  %12zu %12zu %5s %6s | %10.2f %11.3f %11.3f %7ld\n", row_bytes, count,
             dt_dtype_name(b->o.t), redop, t * 1e6, algbw, busbw, wrong_all);
    fflush(stdout);
  }
}

static dt_comm_t make_comm(bench *b) {
  if (!strcmp(b->o.comm, "mpi")) return dt_comm_mpi_create(MPI_COMM_WORLD, b->be);
  dt_error err = {""};
  dt_comm_t c = dt_comm_nccl_create(MPI_COMM_WORLD, b->be, &err);
  if (!c) dt_die_user_all("%s", err.msg);
  return c;
}

static int local_rank(void) {
  MPI_Comm node;
  int r = 0;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &r);
  MPI_Comm_free(&node);
  return r;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  bench b;
  memset(&b, 0, sizeof b);
  MPI_Comm_rank(MPI_COMM_WORLD, &b.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &b.n);
  dt_set_rank(b.rank);
  b.o = parse_args(argc, argv);
  dt_error err = {""};
  b.be = dt_backend_create(b.o.backend, local_rank(), 0, &err);
  if (!b.be) dt_die_user_all("--backend %s: %s", b.o.backend, err.msg);
  b.c = make_comm(&b);
  /* largest partial sum n * range: exact up to 256 in bf16, 2048 in fp16 */
  int exact = b.o.t == DT_BF16 ? 256 : b.o.t == DT_F16 ? 2048 : 1 << 20;
  b.range = DT_MAX(1, DT_MIN(8, exact / b.n));
  size_t es = dt_dtype_size(b.o.t), cap = b.o.max_bytes + (size_t)b.n * es;
  b.send = b.be->alloc(b.be, cap);
  b.recv = b.be->alloc(b.be, cap);
  b.host = b.be->host_alloc(b.be, cap);
  if (b.rank == 0 && !b.o.jsonl)
    printf("# dtrain comm benchmark: %d ranks, backend %s (%s), comm %s, dtype %s, %d iters, "
           "%d warmup\n# time: mean per iteration on the slowest rank; busbw factors "
           "all_reduce 2(n-1)/n, reduce_scatter and all_gather (n-1)/n\n",
           b.n, b.be->name, b.be->desc, b.c->kind, dt_dtype_name(b.o.t), b.o.iters, b.o.warmup);
  for (int k = ALL_REDUCE; k <= ALL_GATHER; k++) run_coll(&b, (coll)k);
  if (b.rank == 0 && !b.o.jsonl) {
    printf("#\n# Wrong values         : %ld %s\n", b.wrong_total, b.wrong_total ? "FAILED" : "OK");
    printf("# Avg bus bandwidth    : %.3f GB/s (%d rows)\n#\n",
           b.rows ? b.busbw_sum / b.rows : 0.0, b.rows);
  }
  b.be->host_free(b.be, b.host);
  b.be->free(b.be, b.send);
  b.be->free(b.be, b.recv);
  dt_comm_destroy(b.c);
  dt_backend_destroy(b.be);
  MPI_Finalize();
  return b.wrong_total ? 1 : 0;
}
