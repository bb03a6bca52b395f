/* test_comm.c: every dt_comm operation, on every backend and communicator kind
 * present, against exactly known results; run under mpiexec -n 1, 2 and 4.
 * Inputs are small integers, so sums over 4 ranks are exact in every dtype
 * whatever the reduction order, and results are compared exactly. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "comm.h"

#define GUARD 16          /* elements after every buffer that must stay untouched */
#define GUARD_BYTE 0xA5   /* also the "never written" filler of outputs */

static const size_t sizes[] = {0, 1, 7, 1000, 65537};
static const dt_dtype red_types[] = {DT_F32, DT_BF16, DT_F16, DT_I32, DT_I64};
static const dt_dtype all_types[] = {DT_F32, DT_BF16, DT_F16, DT_I32, DT_I64, DT_U8};
static const char *op_names[] = {"sum", "max", "min"};

typedef struct suite {
  dt_comm_t c;
  dt_backend_t be;
  int rank, n;
  char label[64];
  long passed, failed;
} suite;

/* ---- values ---- */

/* In [-8, 8] (u8: [0, 16]): |sum over 4 ranks| <= 32, exact in bf16 and fp16. */
static int gen(dt_dtype t, int rank, size_t i, int salt) {
  int v = (int)(((size_t)rank * 7 + i * 3 + (size_t)salt * 5) % 17) - 8;
  return t == DT_U8 ? v + 8 : v;
}

static double reduce_gen(dt_dtype t, int n, dt_redop op, size_t i, int salt) {
  double acc = gen(t, 0, i, salt);
  for (int q = 1; q < n; q++) {
    double v = gen(t, q, i, salt);
    acc = op == DT_SUM ? acc + v : op == DT_MAX ? DT_MAX(acc, v) : DT_MIN(acc, v);
  }
  return acc;
}

static void put(dt_dtype t, void *p, size_t i, double v) {
  switch (t) {
    case DT_F32: ((float *)p)[i] = (float)v; break;
    case DT_BF16: ((uint16_t *)p)[i] = dt_float_to_bf16((float)v); break;
    case DT_F16: ((uint16_t *)p)[i] = dt_float_to_f16((float)v); break;
    case DT_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case DT_I64: ((int64_t *)p)[i] = (int64_t)v; break;
    case DT_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
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
    case DT_U8: return ((const uint8_t *)p)[i];
    default: return NAN;
  }
}

/* ---- buffers on the backend, with a host mirror ---- */

typedef struct buf {
  dt_dtype t;
  size_t n, es;
  unsigned char *h; /* n + GUARD elements */
  void *d;
} buf;

static buf buf_new(suite *s, dt_dtype t, size_t n) {
  buf b = {t, n, dt_dtype_size(t), NULL, NULL};
  size_t bytes = (n + GUARD) * b.es;
  b.h = dt_malloc(bytes);
  memset(b.h, GUARD_BYTE, bytes);
  b.d = s->be->alloc(s->be, bytes);
  return b;
}

static void buf_free(suite *s, buf *b) {
  free(b->h);
  s->be->free(s->be, b->d);
}

static void *at(const buf *b, size_t i) { return (char *)b->d + i * b->es; }

/* elements [off, off+len) = gen(rank, 0..len) */
static void buf_fill(buf *b, size_t off, size_t len, int rank, int salt) {
  for (size_t i = 0; i < len; i++) put(b->t, b->h, off + i, gen(b->t, rank, i, salt));
}

static void buf_up(suite *s, buf *b) {
  s->be->h2d(s->be, b->d, b->h, (b->n + GUARD) * b->es);
  s->be->sync(s->be);
}

static void buf_down(suite *s, buf *b) { s->be->d2h(s->be, b->h, b->d, (b->n + GUARD) * b->es); }

/* Elements [off, off+len) against want, and the guard after the buffer;
 * prints the first wrong element and returns the number wrong. */
static long check(suite *s, const char *name, const char *what, const buf *b, size_t off,
                  const double *want, size_t len) {
  long wrong = 0;
  size_t first = 0;
  double got0 = 0, want0 = 0;
  for (size_t i = 0; i < len; i++) {
    double g = get(b->t, b->h, off + i);
    if (g != want[i]) {
      if (!wrong++) first = off + i, got0 = g, want0 = want[i];
    }
  }
  long guard = 0;
  for (size_t i = b->n * b->es; i < (b->n + GUARD) * b->es; i++) guard += b->h[i] != GUARD_BYTE;
  if (wrong)
    printf("[rank %d] FAIL %s %s: %s: #wrong %ld of %zu, first at %zu: got %g want %g\n",
           s->rank, s->label, name, what, wrong, len, first, got0, want0);
  if (guard)
    printf("[rank %d] FAIL %s %s: %s: %ld guard bytes after %zu elements overwritten\n",
           s->rank, s->label, name, what, guard, b->n);
  return wrong + guard;
}

static double *want_gen(dt_dtype t, size_t len, int rank, int salt) {
  double *w = dt_malloc((len ? len : 1) * sizeof *w);
  for (size_t i = 0; i < len; i++) w[i] = gen(t, rank, i, salt);
  return w;
}

static double *want_reduce(dt_dtype t, int n, dt_redop op, size_t off, size_t len, int salt) {
  double *w = dt_malloc((len ? len : 1) * sizeof *w);
  for (size_t i = 0; i < len; i++) w[i] = reduce_gen(t, n, op, off + i, salt);
  return w;
}

/* The input of an out-of-place operation must come back unchanged. */
static long check_input(suite *s, const char *name, buf *in, size_t off, size_t len, int salt) {
  buf_down(s, in);
  double *w = want_gen(in->t, len, s->rank, salt);
  long wrong = check(s, name, "input changed", in, off, w, len);
  free(w);
  return wrong;
}

/* Every rank agrees on pass/fail: a case fails if it failed anywhere. */
static void record(suite *s, long wrong) {
  long total = 0;
  MPI_Allreduce(&wrong, &total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
  if (total) s->failed++;
  else s->passed++;
}

/* Uneven per-rank counts for the v-variants: rank 1 gets none. */
static size_t *uneven(int n, size_t count, size_t *total) {
  size_t *c = dt_malloc((size_t)n * sizeof *c);
  *total = 0;
  for (int r = 0; r < n; r++) {
    c[r] = r == 1 ? 0 : count * (size_t)(r + 1) / (size_t)n + (size_t)r;
    *total += c[r];
  }
  return c;
}

static size_t prefix(const size_t *c, int r) {
  size_t off = 0;
  for (int q = 0; q < r; q++) off += c[q];
  return off;
}

/* ---- one case per function ---- */

static void case_allreduce(suite *s, dt_dtype t, size_t count, dt_redop op, int inplace) {
  char name[96];
  snprintf(name, sizeof name, "allreduce %s %s n=%zu%s", op_names[op], dt_dtype_name(t), count,
           inplace ? " in-place" : "");
  buf in = buf_new(s, t, count), out = inplace ? in : buf_new(s, t, count);
  buf_fill(&in, 0, count, s->rank, 0);
  buf_up(s, &in);
  if (!inplace) buf_up(s, &out);
  s->c->allreduce(s->c, in.d, out.d, count, t, op);
  buf_down(s, &out);
  double *w = want_reduce(t, s->n, op, 0, count, 0);
  long wrong = check(s, name, "result", &out, 0, w, count);
  if (!inplace) wrong += check_input(s, name, &in, 0, count, 0);
  record(s, wrong);
  free(w);
  buf_free(s, &in);
  if (!inplace) buf_free(s, &out);
}

/* reduce_scatter (counts NULL: every rank `count`) or reduce_scatterv */
static void case_reduce_scatter(suite *s, dt_dtype t, size_t count, int v, int inplace) {
  char name[96];
  snprintf(name, sizeof name, "reduce_scatter%s %s n=%zu%s", v ? "v" : "", dt_dtype_name(t),
           count, inplace ? " in-place" : "");
  size_t total = count * (size_t)s->n, *counts = v ? uneven(s->n, count, &total) : NULL;
  size_t mine = v ? counts[s->rank] : count;
  size_t off = v ? prefix(counts, s->rank) : count * (size_t)s->rank;
  buf in = buf_new(s, t, total), out = inplace ? in : buf_new(s, t, mine);
  buf_fill(&in, 0, total, s->rank, 0);
  buf_up(s, &in);
  if (!inplace) buf_up(s, &out);
  void *recv = inplace ? at(&in, off) : out.d;
  if (v) s->c->reduce_scatterv(s->c, in.d, recv, counts, t, DT_SUM);
  else s->c->reduce_scatter(s->c, in.d, recv, count, t, DT_SUM);
  buf_down(s, &out);
  double *w = want_reduce(t, s->n, DT_SUM, off, mine, 0);
  long wrong = check(s, name, "result", &out, inplace ? off : 0, w, mine);
  if (!inplace) wrong += check_input(s, name, &in, 0, total, 0);
  record(s, wrong);
  free(w);
  free(counts);
  buf_free(s, &in);
  if (!inplace) buf_free(s, &out);
}

static double *want_gathered(dt_dtype t, int n, const size_t *counts, size_t count, size_t total,
                             int salt) {
  double *w = dt_malloc((total ? total : 1) * sizeof *w);
  size_t k = 0;
  for (int r = 0; r < n; r++)
    for (size_t i = 0; i < (counts ? counts[r] : count); i++) w[k++] = gen(t, r, i, salt);
  return w;
}

static void case_allgather(suite *s, dt_dtype t, size_t count, int v, int inplace) {
  char name[96];
  snprintf(name, sizeof name, "allgather%s %s n=%zu%s", v ? "v" : "", dt_dtype_name(t), count,
           inplace ? " in-place" : "");
  size_t total = count * (size_t)s->n, *counts = v ? uneven(s->n, count, &total) : NULL;
  size_t mine = v ? counts[s->rank] : count;
  size_t off = v ? prefix(counts, s->rank) : count * (size_t)s->rank;
  buf out = buf_new(s, t, total), in = inplace ? out : buf_new(s, t, mine);
  buf_fill(&in, inplace ? off : 0, mine, s->rank, 0);
  buf_up(s, &out);
  if (!inplace) buf_up(s, &in);
  void *send = inplace ? at(&out, off) : in.d;
  if (v) s->c->allgatherv(s->c, send, out.d, counts, t);
  else s->c->allgather(s->c, send, out.d, count, t);
  buf_down(s, &out);
  double *w = want_gathered(t, s->n, counts, count, total, 0);
  long wrong = check(s, name, "result", &out, 0, w, total);
  if (!inplace) wrong += check_input(s, name, &in, 0, mine, 0);
  record(s, wrong);
  free(w);
  free(counts);
  buf_free(s, &out);
  if (!inplace) buf_free(s, &in);
}

static void case_broadcast(suite *s, dt_dtype t, size_t count, int root) {
  char name[96];
  snprintf(name, sizeof name, "broadcast %s n=%zu root=%d", dt_dtype_name(t), count, root);
  buf b = buf_new(s, t, count);
  if (s->rank == root) buf_fill(&b, 0, count, root, 0);
  buf_up(s, &b);
  s->c->broadcast(s->c, b.d, count, t, root);
  buf_down(s, &b);
  double *w = want_gen(t, count, root, 0);
  record(s, check(s, name, "result", &b, 0, w, count));
  free(w);
  buf_free(s, &b);
}

/* Each rank sends to the next and receives from the previous; even ranks
 * send first, so blocking sends cannot all wait on each other. */
static void case_ring(suite *s, dt_dtype t, size_t count) {
  char name[96];
  snprintf(name, sizeof name, "send/recv ring %s n=%zu", dt_dtype_name(t), count);
  int next = (s->rank + 1) % s->n, prev = (s->rank + s->n - 1) % s->n;
  buf in = buf_new(s, t, count), out = buf_new(s, t, count);
  buf_fill(&in, 0, count, s->rank, 0);
  buf_up(s, &in);
  buf_up(s, &out);
  if (s->rank % 2 == 0) {
    s->c->send(s->c, in.d, count, t, next);
    s->c->recv(s->c, out.d, count, t, prev);
  } else {
    s->c->recv(s->c, out.d, count, t, prev);
    s->c->send(s->c, in.d, count, t, next);
  }
  buf_down(s, &out);
  double *w = want_gen(t, count, prev, 0);
  long wrong = check(s, name, "result", &out, 0, w, count);
  wrong += check_input(s, name, &in, 0, count, 0);
  record(s, wrong);
  free(w);
  buf_free(s, &in);
  buf_free(s, &out);
}

/* A pipeline's exchange: every rank sends to the next and receives from the
 * previous in one sendrecv, all at once (blocking sends of this size would
 * wait on each other); then an open chain, whose ends skip a half (peer -1),
 * sending a different count than it receives. */
static void case_sendrecv(suite *s, dt_dtype t, size_t count) {
  char name[96];
  snprintf(name, sizeof name, "sendrecv %s n=%zu", dt_dtype_name(t), count);
  int next = (s->rank + 1) % s->n, prev = (s->rank + s->n - 1) % s->n;
  buf in = buf_new(s, t, count + 1), out = buf_new(s, t, count + 1);
  buf_fill(&in, 0, count + 1, s->rank, 0);
  buf_up(s, &in);
  buf_up(s, &out);
  s->c->sendrecv(s->c, in.d, count, next, out.d, count, prev, t);
  buf_down(s, &out);
  double *w = want_gen(t, count, prev, 0);
  long wrong = check(s, name, "ring", &out, 0, w, count);
  free(w);
  /* chain: rank r sends count + 1 elements up to r + 1 and gets as many from
   * r - 1; rank 0 receives nothing and the last rank sends nothing */
  buf_fill(&out, 0, count + 1, s->n + 7, 1);
  buf_up(s, &out);
  int up = s->rank + 1 < s->n ? s->rank + 1 : -1, down = s->rank - 1;
  s->c->sendrecv(s->c, in.d, count + 1, up, out.d, count + 1, down, t);
  buf_down(s, &out);
  w = down >= 0 ? want_gen(t, count + 1, down, 0) : want_gen(t, count + 1, s->n + 7, 1);
  wrong += check(s, name, down >= 0 ? "chain" : "chain start untouched", &out, 0, w, count + 1);
  wrong += check_input(s, name, &in, 0, count + 1, 0);
  record(s, wrong);
  free(w);
  buf_free(s, &in);
  buf_free(s, &out);
}

/* Four operations in flight at once, waited for in reverse order. */
static void case_async(suite *s, dt_dtype t, size_t count, int inplace) {
  char name[96];
  snprintf(name, sizeof name, "async x4 %s n=%zu%s", dt_dtype_name(t), count,
           inplace ? " in-place" : "");
  size_t total;
  size_t *counts = uneven(s->n, count, &total);
  size_t mine = counts[s->rank], off = prefix(counts, s->rank);
  /* A: allreduce sum, B: reduce_scatterv max, C: allgatherv, D: allreduce min */
  buf a = buf_new(s, t, count), ao = inplace ? a : buf_new(s, t, count);
  buf b = buf_new(s, t, total), bo = inplace ? b : buf_new(s, t, mine);
  buf co = buf_new(s, t, total), c = inplace ? co : buf_new(s, t, mine);
  buf d = buf_new(s, t, count), dout = inplace ? d : buf_new(s, t, count);
  buf_fill(&a, 0, count, s->rank, 1);
  buf_fill(&b, 0, total, s->rank, 2);
  buf_fill(&c, inplace ? off : 0, mine, s->rank, 3);
  buf_fill(&d, 0, count, s->rank, 4);
  buf *all[] = {&a, &ao, &b, &bo, &c, &co, &d, &dout};
  for (int i = 0; i < 8; i++)
    if (i % 2 == 0 || !inplace) buf_up(s, all[i]);
  dt_comm_req_t req[4];
  req[0] = s->c->allreduce_async(s->c, a.d, ao.d, count, t, DT_SUM);
  req[1] = s->c->reduce_scatterv_async(s->c, b.d, inplace ? at(&b, off) : bo.d, counts, t, DT_MAX);
  req[2] = s->c->allgatherv_async(s->c, inplace ? at(&co, off) : c.d, co.d, counts, t);
  req[3] = s->c->allreduce_async(s->c, d.d, dout.d, count, t, DT_MIN);
  for (int i = 3; i >= 0; i--) s->c->wait(s->c, req[i]);
  buf_down(s, &ao);
  buf_down(s, &bo);
  buf_down(s, &co);
  buf_down(s, &dout);
  double *w = want_reduce(t, s->n, DT_SUM, 0, count, 1);
  long wrong = check(s, name, "allreduce sum", &ao, 0, w, count);
  free(w);
  w = want_reduce(t, s->n, DT_MAX, off, mine, 2);
  wrong += check(s, name, "reduce_scatterv max", &bo, inplace ? off : 0, w, mine);
  free(w);
  w = want_gathered(t, s->n, counts, 0, total, 3);
  wrong += check(s, name, "allgatherv", &co, 0, w, total);
  free(w);
  w = want_reduce(t, s->n, DT_MIN, 0, count, 4);
  wrong += check(s, name, "allreduce min", &dout, 0, w, count);
  free(w);
  record(s, wrong);
  free(counts);
  for (int i = 0; i < 8; i++)
    if (i % 2 == 0 || !inplace) buf_free(s, all[i]);
}

static void run_suite(suite *s) {
  for (size_t k = 0; k < DT_ARRAY_LEN(sizes); k++) {
    size_t count = sizes[k];
    for (size_t j = 0; j < DT_ARRAY_LEN(red_types); j++) {
      dt_dtype t = red_types[j];
      for (int inplace = 0; inplace < 2; inplace++) {
        for (int op = DT_SUM; op <= DT_MIN; op++) case_allreduce(s, t, count, (dt_redop)op, inplace);
        case_reduce_scatter(s, t, count, 0, inplace);
        case_reduce_scatter(s, t, count, 1, inplace);
        case_async(s, t, count, inplace);
      }
    }
    for (size_t j = 0; j < DT_ARRAY_LEN(all_types); j++) {
      dt_dtype t = all_types[j];
      for (int inplace = 0; inplace < 2; inplace++) {
        case_allgather(s, t, count, 0, inplace);
        case_allgather(s, t, count, 1, inplace);
      }
      for (int root = 0; root < s->n; root++) case_broadcast(s, t, count, root);
      if (s->n > 1) case_ring(s, t, count);
      if (s->n > 1) case_sendrecv(s, t, count);
    }
  }
  s->c->barrier(s->c);
  record(s, 0);
}

/* ---- bf16 / fp16 conversions against a brute-force nearest-even rounding ---- */

typedef float (*to_float_fn)(uint16_t);

/* The value of positive pattern p, where p = maxfin + 1 stands for the next
 * step (rounding there means infinity). */
static double half_value(to_float_fn f, uint16_t maxfin, unsigned p) {
  if (p <= maxfin) return f((uint16_t)p);
  return 2.0 * f(maxfin) - f((uint16_t)(maxfin - 1));
}

/* Round |x| (finite) to the nearest positive pattern, ties to even. */
static unsigned ref_round(to_float_fn f, uint16_t maxfin, uint16_t inf, double x) {
  unsigned lo = 0, hi = (unsigned)maxfin + 1; /* value(lo) <= x < value(hi) */
  if (x >= half_value(f, maxfin, hi)) return inf;
  while (hi - lo > 1) {
    unsigned mid = (lo + hi) / 2;
    if (half_value(f, maxfin, mid) <= x) lo = mid;
    else hi = mid;
  }
  double dl = x - half_value(f, maxfin, lo), dh = half_value(f, maxfin, hi) - x;
  unsigned p = dl < dh ? lo : dh < dl ? hi : (lo % 2 == 0 ? lo : hi);
  return p > maxfin ? inf : p;
}

static long check_conversion(const char *name, to_float_fn to_f, uint16_t (*from_f)(float),
                             uint16_t maxfin, uint16_t inf) {
  long wrong = 0;
  for (unsigned p = 0; p <= 0xffffu; p++) { /* every pattern survives a round trip */
    float v = to_f((uint16_t)p);
    uint16_t back = from_f(v);
    int ok = isnan(v) ? isnan(to_f(back)) : back == p;
    if (!ok && wrong++ < 3) printf("FAIL %s round trip of 0x%04x gave 0x%04x\n", name, p, back);
  }
  /* every midpoint between neighbours, and just either side of it */
  for (unsigned p = 0; p <= maxfin; p++) {
    float mid = (float)((half_value(to_f, maxfin, p) + half_value(to_f, maxfin, p + 1)) / 2);
    float xs[3] = {nextafterf(mid, 0.0f), mid, nextafterf(mid, INFINITY)};
    for (int k = 0; k < 3; k++)
      for (int sign = 0; sign < 2; sign++) {
        float x = sign ? -xs[k] : xs[k];
        uint16_t want = (uint16_t)(ref_round(to_f, maxfin, inf, xs[k]) | (sign ? 0x8000u : 0));
        uint16_t got = from_f(x);
        if (got != want && wrong++ < 3)
          printf("FAIL %s(%a) gave 0x%04x want 0x%04x\n", name, (double)x, got, want);
      }
  }
  uint32_t seed = 12345;
  for (int k = 0; k < 200000; k++) { /* random floats */
    seed = seed * 1664525u + 1013904223u;
    uint32_t bits = seed;
    float x;
    memcpy(&x, &bits, sizeof x);
    if (isnan(x) || isinf(x)) continue;
    uint16_t want = (uint16_t)(ref_round(to_f, maxfin, inf, fabs((double)x)) |
                               (signbit(x) ? 0x8000u : 0));
    uint16_t got = from_f(x);
    if (got != want && wrong++ < 3) printf("FAIL %s(%a) gave 0x%04x want 0x%04x\n", name, (double)x, got, want);
  }
  if (!isnan(to_f(from_f(NAN))) || to_f(from_f(INFINITY)) != INFINITY) {
    wrong++;
    printf("FAIL %s: NaN or infinity not kept\n", name);
  }
  return wrong;
}

/* ---- setups ---- */

/* CPU memory behind a backend that calls itself a device: comm_mpi then takes
 * its staging path (d2h into its host buffers, MPI there, h2d back), which
 * is tested this way on machines without a GPU. */
static dt_backend_t staged_backend_create(void) {
  dt_backend_t be = dt_backend_cpu_create(0);
  be->device = DT_DEVICE_CUDA;
  be->name = "cpu-staged";
  return be;
}

static int local_rank(void) {
  MPI_Comm node;
  int r = 0;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &r);
  MPI_Comm_free(&node);
  return r;
}

static void run_on(suite *tot, const char *label, dt_backend_t be, dt_comm_t c) {
  suite s = {c, be, c->rank, c->size, "", 0, 0};
  snprintf(s.label, sizeof s.label, "%s", label);
  double t0 = MPI_Wtime();
  run_suite(&s);
  if (s.rank == 0)
    printf("%-20s %ld passed, %ld failed (%.1f s)\n", label, s.passed, s.failed, MPI_Wtime() - t0);
  tot->passed += s.passed;
  tot->failed += s.failed;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, n;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  dt_set_rank(rank);
  setvbuf(stdout, NULL, _IOLBF, 0);
  suite tot = {0};

  long wrong = check_conversion("bf16", dt_bf16_to_float, dt_float_to_bf16, 0x7f7f, 0x7f80);
  record(&tot, wrong);
  wrong = check_conversion("f16", dt_f16_to_float, dt_float_to_f16, 0x7bff, 0x7c00);
  record(&tot, wrong);
  if (strcmp(dt_dtype_name(DT_BF16), "bf16") || dt_dtype_size(DT_I64) != 8 ||
      dt_dtype_size(DT_BF16) != 2 || dt_dtype_size(DT_U8) != 1)
    wrong++;
  record(&tot, wrong);

  dt_backend_t cpu = dt_backend_cpu_create(1);
  dt_comm_t c = dt_comm_mpi_create(MPI_COMM_WORLD, cpu);
  run_on(&tot, "cpu/mpi", cpu, c);
  dt_comm_destroy(c);

  /* all-reduce, broadcast and send/recv split into chunks of 999 elements */
  setenv("DTRAIN_MPI_CHUNK", "999", 1);
  c = dt_comm_mpi_create(MPI_COMM_WORLD, cpu);
  unsetenv("DTRAIN_MPI_CHUNK");
  run_on(&tot, "cpu/mpi chunk=999", cpu, c);
  dt_comm_destroy(c);

  dt_backend_t staged = staged_backend_create();
  c = dt_comm_mpi_create(MPI_COMM_WORLD, staged);
  run_on(&tot, "staged/mpi", staged, c);
  dt_comm_destroy(c);
  dt_backend_destroy(staged);

  /* the NCCL stub of a CPU-only build, or NCCL's refusal of a CPU backend */
  dt_error err = {""};
  c = dt_comm_nccl_create(MPI_COMM_WORLD, cpu, &err);
  record(&tot, c != NULL || !strstr(err.msg, "parallel.comm=mpi"));
  dt_comm_destroy(c);
  dt_backend_destroy(cpu);

  int ngpu = dt_cuda_device_count(), lr = local_rank();
  int any_gpu = 0;
  MPI_Allreduce(&ngpu, &any_gpu, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (any_gpu > 0) {
    dt_backend_t gpu = dt_backend_create("cuda", lr, 0, &err);
    if (!gpu) dt_die_user("%s", err.msg);
    c = dt_comm_mpi_create(MPI_COMM_WORLD, gpu);
    run_on(&tot, "cuda/mpi", gpu, c);
    dt_comm_destroy(c);
    /* DT_TEST_NCCL=run or =refused: what must happen here (the emulated
     * runs set it: each rank its own emulated GPU, or all of them one) */
    const char *want = getenv("DT_TEST_NCCL");
    c = dt_comm_nccl_create(MPI_COMM_WORLD, gpu, &err);
    if (c) {
      run_on(&tot, "cuda/nccl", gpu, c);
      dt_comm_destroy(c);
      record(&tot, want && !strcmp(want, "refused"));
    } else {
      /* more ranks than GPUs on a node: the refusal must say so */
      int shared = strstr(err.msg, "share GPU") != NULL;
      if (rank == 0) printf("%-20s not run: %s\n", "cuda/nccl", err.msg);
      record(&tot, !shared || (want && !strcmp(want, "run")));
    }
    dt_backend_destroy(gpu);
  } else if (rank == 0) {
    printf("%-20s not run: no GPU visible\n", "cuda/mpi, cuda/nccl");
  }

  if (rank == 0) printf("%ld passed, %ld failed\n", tot.passed, tot.failed);
  MPI_Finalize();
  return tot.failed ? 1 : 0;
}
