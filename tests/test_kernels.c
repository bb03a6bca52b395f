/* test_kernels.c: every kernel of every backend, case by case (the ggml
 * test-backend-ops idea): the CPU reference against float64 loops and
 * central finite differences, every other backend against its CPU twin.
 * Guard bytes after every buffer catch out-of-bounds writes; inputs must
 * come back unchanged. Usage: test_kernels [--backend cpu|cuda|all] [--time] */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "../kernels/attention.h"
#include "../kernels/matmul.h"
#include "dt.h"

/* ------------------------------------------------------------------ */
/* bookkeeping                                                        */

static int g_pass, g_fail;
static int g_cpu_checks;      /* run the float64 / finite-difference checks */
static dt_backend_t g_cpu;    /* always present: the twin every other backend is held to */
static dt_backend_t g_other;  /* the CUDA backend when one is present and asked for */

/* fp32 tolerances: against float64 and between backends */
#define TWIN_ATOL 1e-4
#define TWIN_RTOL 1e-3

static uint64_t g_rng;
static void rng_seed(uint64_t s) { g_rng = s * 0x9E3779B97F4A7C15ull + 12345; }
static uint64_t rng_u64(void) { /* splitmix64 */
  uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double urand(double lo, double hi) {
  return lo + (hi - lo) * (double)(rng_u64() >> 11) * (1.0 / 9007199254740992.0);
}
static void fill(float *x, size_t n, double lo, double hi) {
  for (size_t i = 0; i < n; i++) x[i] = (float)urand(lo, hi);
}
static float *fnew(size_t n) { return dt_calloc(n ? n : 1, sizeof(float)); }
static double *dnew(size_t n) { return dt_calloc(n ? n : 1, sizeof(double)); }
static double *todouble(const float *x, size_t n) {
  double *d = dnew(n);
  for (size_t i = 0; i < n; i++) d[i] = x[i];
  return d;
}

/* One comparison: got against want, |got - want| <= atol + rtol*|want|;
 * NaN must meet NaN and Inf the same Inf. Remembers the worst element. */
typedef struct cmp {
  double atol, rtol, maxerr, worst_score, worst_got, worst_want;
  const char *worst_t;
  size_t worst_i, nbad, n;
} cmp;

static void cmp_init(cmp *c, double atol, double rtol) {
  memset(c, 0, sizeof *c);
  c->atol = atol;
  c->rtol = rtol;
  c->worst_score = -1.0;
}
static void cmp_one(cmp *c, const char *t, size_t i, double got, double want) {
  double score;
  c->n++;
  if (!isfinite(got) || !isfinite(want)) {
    score = ((isnan(got) && isnan(want)) || got == want) ? 0.0 : INFINITY;
    if (score > 0.0) c->maxerr = INFINITY;
  } else {
    double err = fabs(got - want);
    if (err > c->maxerr) c->maxerr = err;
    double tol = c->atol + c->rtol * fabs(want);
    score = err == 0.0 ? 0.0 : (tol > 0.0 ? err / tol : INFINITY);
  }
  if (score > 1.0) c->nbad++;
  if (score > c->worst_score) {
    c->worst_score = score;
    c->worst_t = t;
    c->worst_i = i;
    c->worst_got = got;
    c->worst_want = want;
  }
}
static void cmp_fd(cmp *c, const char *t, const float *got, const double *want, size_t n) {
  for (size_t i = 0; i < n; i++) cmp_one(c, t, i, got[i], want[i]);
}
static void cmp_ff(cmp *c, const char *t, const float *got, const float *want, size_t n) {
  for (size_t i = 0; i < n; i++) cmp_one(c, t, i, got[i], want[i]);
}

/* Prints one result line and counts it. */
static int check_done(const cmp *c, const char *op, const char *vs, const char *desc) {
  int ok = c->nbad == 0;
  if (ok) {
    printf("ok   %-20s %-9s %s  maxerr=%.2e\n", op, vs, desc, c->maxerr);
    g_pass++;
  } else {
    printf("FAIL %-20s %-9s %s  maxerr=%.2e  worst %s[%zu] got=%.9g want=%.9g  (%zu of %zu bad, "
           "atol=%g rtol=%g)\n",
           op, vs, desc, c->maxerr, c->worst_t ? c->worst_t : "?", c->worst_i, c->worst_got,
           c->worst_want, c->nbad, c->n, c->atol, c->rtol);
    g_fail++;
  }
  fflush(stdout);
  return ok;
}
static void check_fail(const char *op, const char *vs, const char *desc, const char *why) {
  printf("FAIL %-20s %-9s %s  %s\n", op, vs, desc, why);
  fflush(stdout);
  g_fail++;
}

/* One check line: ok with what, or FAIL with it. */
static void check_line(int ok, const char *op, const char *vs, const char *desc,
                       const char *what) {
  if (!ok) {
    check_fail(op, vs, desc, what);
    return;
  }
  printf("ok   %-20s %-9s %s  %s\n", op, vs, desc, what);
  fflush(stdout);
  g_pass++;
}

/* ------------------------------------------------------------------ */
/* device buffers with guard bytes                                    */

#define GUARD_BYTES 64 /* 16 floats */
#define GUARD_FILL 0xA5

typedef struct devbufs {
  dt_backend_t be;
  void *p[32];
  int np;
  char bad[160]; /* first guard or input problem seen */
} devbufs;

/* A device copy of host[0, bytes) followed by guard bytes. host NULL (an
 * output or a workspace) gives all-ones bytes, NaN as floats, so a kernel
 * that leaves an element unwritten or reads scratch it never wrote shows. */
static void *dput(devbufs *d, const void *host, size_t bytes) {
  unsigned char *tmp = dt_malloc(bytes + GUARD_BYTES);
  if (host) memcpy(tmp, host, bytes);
  else memset(tmp, 0xFF, bytes);
  memset(tmp + bytes, GUARD_FILL, GUARD_BYTES);
  void *p = d->be->alloc(d->be, bytes + GUARD_BYTES);
  d->be->h2d(d->be, p, tmp, bytes + GUARD_BYTES);
  free(tmp);
  if (d->np == (int)DT_ARRAY_LEN(d->p)) {
    fprintf(stderr, "test_kernels: too many buffers\n");
    exit(1);
  }
  d->p[d->np++] = p;
  return p;
}
static void dnote(devbufs *d, const char *what, const char *name) {
  if (!d->bad[0]) snprintf(d->bad, sizeof d->bad, "%s %s", what, name);
}
/* Copies the buffer back into host and checks its guard. */
static void dget(devbufs *d, void *host, const void *dp, size_t bytes, const char *name) {
  unsigned char *tmp = dt_malloc(bytes + GUARD_BYTES);
  d->be->d2h(d->be, tmp, dp, bytes + GUARD_BYTES);
  if (host) memcpy(host, tmp, bytes);
  for (size_t i = 0; i < GUARD_BYTES; i++)
    if (tmp[bytes + i] != GUARD_FILL) {
      dnote(d, "out-of-bounds write after", name);
      break;
    }
  free(tmp);
}
/* An input must come back byte for byte (and its guard intact). */
static void dkeep(devbufs *d, const void *dp, const void *host, size_t bytes, const char *name) {
  unsigned char *tmp = dt_malloc(bytes ? bytes : 1);
  dget(d, tmp, dp, bytes, name);
  if (memcmp(tmp, host, bytes) != 0) dnote(d, "kernel modified its input", name);
  free(tmp);
}
/* Frees everything; reports a guard failure as its own line. */
static void dfree(devbufs *d, const char *op, const char *desc) {
  for (int i = 0; i < d->np; i++) d->be->free(d->be, d->p[i]);
  d->np = 0;
  if (d->bad[0]) {
    char vs[16];
    snprintf(vs, sizeof vs, "%s:guard", d->be->name);
    check_fail(op, vs, desc, d->bad);
  }
}

/* ------------------------------------------------------------------ */
/* central finite differences in float64                              */

#define FD_H 1e-5
#define FD_SAMPLES 48

typedef double (*loss_fn)(void *ctx);

/* c gets, for (a sample of) the elements of x, the kernel gradient
 * grad[i] - base[i] (base: what an accumulating output held before) against
 * (L(x+h) - L(x-h)) / 2h. x is perturbed in place and restored. */
static void fd_grad(cmp *c, const char *t, loss_fn f, void *ctx, double *x, size_t n,
                    const float *grad, const float *base) {
  size_t count = n <= FD_SAMPLES ? n : FD_SAMPLES;
  for (size_t s = 0; s < count; s++) {
    size_t i = n <= FD_SAMPLES ? s : (size_t)(rng_u64() % n);
    double x0 = x[i];
    x[i] = x0 + FD_H;
    double fp = f(ctx);
    x[i] = x0 - FD_H;
    double fm = f(ctx);
    x[i] = x0;
    double got = (double)grad[i] - (base ? (double)base[i] : 0.0);
    cmp_one(c, t, i, got, (fp - fm) / (2.0 * FD_H));
  }
}

static double dot(const double *a, const double *b, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/* ------------------------------------------------------------------ */
/* the no-empty-slot check                                            */

static int test_slots(dt_backend_t be) {
  char vs[16], why[96];
  snprintf(vs, sizeof vs, "%s:slots", be->name);
  for (size_t i = 0; i < DT_KERNELS_SLOTS; i++) {
    void (*fp)(void);
    memcpy(&fp, (const char *)be->k + i * sizeof fp, sizeof fp);
    if (!fp) {
      snprintf(why, sizeof why, "slot %zu of %zu is NULL", i, (size_t)DT_KERNELS_SLOTS);
      check_fail("kernel_table", vs, be->desc, why);
      return 0;
    }
  }
  printf("ok   %-20s %-9s %zu slots filled (%s)\n", "kernel_table", vs, (size_t)DT_KERNELS_SLOTS,
         be->desc);
  g_pass++;
  return 1;
}

/* ------------------------------------------------------------------ */
/* linear                                                             */

typedef struct linear_case {
  int n, c, oc;
  int bias, db, dinp; /* pass b / db / dinp (else NULL) */
} linear_case;

static const linear_case linear_cases[] = {
    {1, 1, 1, 1, 1, 1},    {3, 5, 7, 1, 1, 1},     {17, 33, 9, 0, 1, 1},
    {64, 400, 120, 1, 1, 1}, {5, 300, 2, 1, 0, 1}, {2, 7, 64, 1, 1, 0},
    {31, 84, 10, 1, 1, 1},   {700, 12, 40, 1, 1, 1}, /* the GPU's db: 3 row groups */
};

typedef struct linear_data {
  const linear_case *lc;
  float *inp, *w, *b, *dout, *dw0, *db0;  /* inputs (dw0/db0: what dw/db hold before) */
  float *out, *dinp, *dw, *db;            /* outputs */
} linear_data;

static void linear_alloc(linear_data *x, const linear_case *lc) {
  size_t nin = (size_t)lc->n * lc->c, nw = (size_t)lc->oc * lc->c, no = (size_t)lc->n * lc->oc;
  x->lc = lc;
  x->inp = fnew(nin), x->w = fnew(nw), x->b = fnew(lc->oc), x->dout = fnew(no);
  x->dw0 = fnew(nw), x->db0 = fnew(lc->oc);
  x->out = fnew(no), x->dinp = fnew(nin), x->dw = fnew(nw), x->db = fnew(lc->oc);
}
static void linear_free(linear_data *x) {
  float *all[] = {x->inp, x->w, x->b, x->dout, x->dw0, x->db0, x->out, x->dinp, x->dw, x->db};
  for (size_t i = 0; i < DT_ARRAY_LEN(all); i++) free(all[i]);
}

static void linear_run(dt_backend_t be, const linear_data *in, linear_data *o, const char *desc) {
  const linear_case *lc = in->lc;
  size_t nin = (size_t)lc->n * lc->c, nw = (size_t)lc->oc * lc->c, no = (size_t)lc->n * lc->oc;
  size_t F = sizeof(float);
  devbufs d = {.be = be};
  float *inp = dput(&d, in->inp, nin * F), *w = dput(&d, in->w, nw * F);
  float *b = lc->bias ? dput(&d, in->b, lc->oc * F) : NULL;
  float *dout = dput(&d, in->dout, no * F), *out = dput(&d, NULL, no * F);
  float *dw = dput(&d, in->dw0, nw * F);
  float *db = lc->db ? dput(&d, in->db0, lc->oc * F) : NULL;
  float *dinp = lc->dinp ? dput(&d, NULL, nin * F) : NULL;
  be->k->linear_forward(be->ctx, out, DT_F32, inp, DT_F32, w, b, lc->n, lc->c, lc->oc);
  be->k->linear_backward(be->ctx, dinp, dw, db, dout, DT_F32, inp, DT_F32, w, lc->n, lc->c,
                         lc->oc);
  dget(&d, o->out, out, no * F, "out");
  dget(&d, o->dw, dw, nw * F, "dw");
  if (db) dget(&d, o->db, db, lc->oc * F, "db");
  if (dinp) dget(&d, o->dinp, dinp, nin * F, "dinp");
  dkeep(&d, inp, in->inp, nin * F, "inp");
  dkeep(&d, w, in->w, nw * F, "w");
  dkeep(&d, dout, in->dout, no * F, "dout");
  if (b) dkeep(&d, b, in->b, lc->oc * F, "b");
  dfree(&d, "linear", desc);
}

static void ref_linear_forward(double *out, const double *inp, const double *w, const double *b,
                               int n, int c, int oc) {
  for (int i = 0; i < n; i++)
    for (int o = 0; o < oc; o++) {
      double s = b ? b[o] : 0.0;
      for (int k = 0; k < c; k++) s += inp[(size_t)i * c + k] * w[(size_t)o * c + k];
      out[(size_t)i * oc + o] = s;
    }
}
/* overwrites dinp, dw, db */
static void ref_linear_backward(double *dinp, double *dw, double *db, const double *dout,
                                const double *inp, const double *w, int n, int c, int oc) {
  memset(dinp, 0, sizeof(double) * n * c);
  memset(dw, 0, sizeof(double) * oc * c);
  memset(db, 0, sizeof(double) * oc);
  for (int i = 0; i < n; i++)
    for (int o = 0; o < oc; o++) {
      double g = dout[(size_t)i * oc + o];
      db[o] += g;
      for (int k = 0; k < c; k++) {
        dinp[(size_t)i * c + k] += g * w[(size_t)o * c + k];
        dw[(size_t)o * c + k] += g * inp[(size_t)i * c + k];
      }
    }
}

typedef struct linear_fd {
  const linear_case *lc;
  double *inp, *w, *b, *dout, *out;
} linear_fd;
static double linear_loss(void *p) {
  linear_fd *f = p;
  ref_linear_forward(f->out, f->inp, f->w, f->lc->bias ? f->b : NULL, f->lc->n, f->lc->c,
                     f->lc->oc);
  return dot(f->out, f->dout, (size_t)f->lc->n * f->lc->oc);
}

static void add_base(double *ref, const float *base, size_t n) {
  for (size_t i = 0; i < n; i++) ref[i] += base[i];
}

/* dt_bf16_round: nearest bf16 with ties to even (7 stored mantissa bits:
 * the spacing after 1 is 2^-7), overflow to infinity, NaN kept. */
static void test_bf16_round(void) {
  const float e8 = ldexpf(1.0f, -8), e7 = ldexpf(1.0f, -7), e6 = ldexpf(1.0f, -6);
  const struct { float x, want; } t[] = {
      {1.0f + e8, 1.0f},                           /* tie, 1 is even */
      {1.0f + 3 * e8, 1.0f + e6},                  /* tie, 1 + 2^-6 is even */
      {1.0f + e8 + ldexpf(1.0f, -20), 1.0f + e7},  /* above the tie */
      {-(1.0f + e8 + ldexpf(1.0f, -20)), -(1.0f + e7)},
      {3.0f, 3.0f}, {0.0f, 0.0f}, {FLT_MAX, INFINITY}, {-FLT_MAX, -INFINITY},
      {ldexpf(1.0f, -130), ldexpf(1.0f, -130)},    /* subnormals keep their top 7 bits */
      {ldexpf(1.0f, -140), 0.0f},                  /* below bf16's least subnormal, 2^-133 */
  };
  int ok = 1;
  for (size_t i = 0; i < DT_ARRAY_LEN(t); i++)
    if (dt_bf16_round(t[i].x) != t[i].want) {
      printf("     dt_bf16_round(%.9g) = %.9g, want %.9g\n", t[i].x, dt_bf16_round(t[i].x),
             t[i].want);
      ok = 0;
    }
  ok &= isnan(dt_bf16_round(NAN)) && signbit(dt_bf16_round(-0.0f));
  if (ok) {
    printf("ok   %-20s %-9s ties to even, overflow, NaN, -0, subnormal\n", "bf16_round", "cpu");
    g_pass++;
  } else {
    check_fail("bf16_round", "cpu", "", "wrong rounding");
  }
}

static double *bf16_rounded(const float *x, size_t n) {
  double *d = dnew(n);
  for (size_t i = 0; i < n; i++) d[i] = dt_bf16_round(x[i]);
  return d;
}

/* DT_PREC_BF16: the linear kernels on bf16-rounded operands. The CPU
 * against f64 on the rounded operands (db sums dout unrounded), as tight as
 * fp32 since bf16 products are exact; its output must differ from fp32's
 * (the rounding happened); the GPU against the CPU. */
static void test_linear_bf16(const linear_case *lc, const linear_data *in,
                             const linear_data *f32, const char *desc) {
  size_t nin = (size_t)lc->n * lc->c, nw = (size_t)lc->oc * lc->c, no = (size_t)lc->n * lc->oc;
  linear_data b16;
  linear_alloc(&b16, lc);
  g_cpu->set_matmul_precision(g_cpu, DT_PREC_BF16);
  linear_run(g_cpu, in, &b16, desc);
  g_cpu->set_matmul_precision(g_cpu, DT_PREC_FP32);
  if (g_cpu_checks) {
    double *ri = bf16_rounded(in->inp, nin), *rw = bf16_rounded(in->w, nw);
    double *rd = bf16_rounded(in->dout, no), *d = todouble(in->dout, no);
    double *rb = todouble(in->b, lc->oc), *out = dnew(no);
    double *rdinp = dnew(nin), *rdw = dnew(nw), *rdb = dnew(lc->oc), *xi = dnew(nin),
           *xw = dnew(nw);
    ref_linear_forward(out, ri, rw, lc->bias ? rb : NULL, lc->n, lc->c, lc->oc);
    ref_linear_backward(rdinp, rdw, xw, rd, ri, rw, lc->n, lc->c, lc->oc);
    ref_linear_backward(xi, xw, rdb, d, ri, rw, lc->n, lc->c, lc->oc);
    add_base(rdw, in->dw0, nw), add_base(rdb, in->db0, lc->oc);
    cmp c;
    cmp_init(&c, 1e-5, 1e-4);
    cmp_fd(&c, "out", b16.out, out, no);
    if (lc->dinp) cmp_fd(&c, "dinp", b16.dinp, rdinp, nin);
    cmp_fd(&c, "dw", b16.dw, rdw, nw);
    if (lc->db) cmp_fd(&c, "db", b16.db, rdb, lc->oc);
    check_done(&c, "linear_bf16", "cpu:f64", desc);
    double moved = 0;
    for (size_t i = 0; i < no; i++) moved = fmax(moved, fabs((double)b16.out[i] - f32->out[i]));
    if (moved > 0) {
      printf("ok   %-20s %-9s %s  differs from fp32 by up to %.2e\n", "linear_bf16", "cpu:fp32",
             desc, moved);
      g_pass++;
    } else {
      check_fail("linear_bf16", "cpu:fp32", desc, "bf16 output equals fp32's: no rounding");
    }
    free(ri), free(rw), free(rd), free(d), free(rb), free(out);
    free(rdinp), free(rdw), free(rdb), free(xi), free(xw);
  }
  if (g_other) {
    linear_data gpu;
    linear_alloc(&gpu, lc);
    g_other->set_matmul_precision(g_other, DT_PREC_BF16);
    linear_run(g_other, in, &gpu, desc);
    g_other->set_matmul_precision(g_other, DT_PREC_FP32);
    cmp c;
    cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
    cmp_ff(&c, "out", gpu.out, b16.out, no);
    if (lc->dinp) cmp_ff(&c, "dinp", gpu.dinp, b16.dinp, nin);
    cmp_ff(&c, "dw", gpu.dw, b16.dw, nw);
    if (lc->db) cmp_ff(&c, "db", gpu.db, b16.db, lc->oc);
    check_done(&c, "linear_bf16", "cuda:cpu", desc);
    linear_free(&gpu);
  }
  linear_free(&b16);
}

/* set_weights under bf16: GEMMs read weights lying in the given
 * parameters from one bf16 copy. Same bits as rounding per call; a change
 * made behind its back is not seen (so the copy is really what is read);
 * a new set_weights picks the change up. */
/* out = in @ w^T, then dinp = out @ w; both into host */
static void wcopy_run(dt_backend_t be, const float *in, const float *w, float *out, float *dinp,
                      int n, int c, int oc, float *host) {
  be->k->linear_forward(be->ctx, out, DT_F32, in, DT_F32, w, NULL, n, c, oc);
  be->k->linear_backward(be->ctx, dinp, NULL, NULL, out, DT_F32, NULL, DT_F32, w, n, c, oc);
  be->d2h(be, host, out, sizeof(float) * (size_t)n * oc);
  be->d2h(be, host + (size_t)n * oc, dinp, sizeof(float) * (size_t)n * c);
}
static void test_weight_copy(dt_backend_t be) {
  enum { N = 5, C = 24, OC = 16, PAD = 7 };
  const size_t np = PAD + (size_t)OC * C + PAD, F = sizeof(float);
  float *hp = fnew(np), *hp2 = fnew(np), *hin = fnew((size_t)N * C);
  rng_seed(900);
  fill(hp, np, -1, 1), fill(hp2, np, -1, 1), fill(hin, (size_t)N * C, -1, 1);
  float *p = be->alloc(be, np * F), *in = be->alloc(be, (size_t)N * C * F);
  float *out = be->alloc(be, (size_t)N * OC * F), *dinp = be->alloc(be, (size_t)N * C * F);
  float *w = p + PAD;
  float res[5][N * OC + N * C];
  be->h2d(be, in, hin, (size_t)N * C * F);
  be->set_matmul_precision(be, DT_PREC_BF16);
  for (int r = 0; r < 5; r++) {
    /* 0: hp per call, 1: hp from the copy, 2: hp2 behind the copy's back,
     * 3: hp2 after a new set_weights, 4: hp2 per call */
    if (r == 0 || r == 1) be->h2d(be, p, hp, np * F);
    if (r == 2) be->h2d(be, p, hp2, np * F);
    if (r == 1 || r == 3) be->set_weights(be, p, np);
    if (r == 4) be->set_weights(be, NULL, 0);
    wcopy_run(be, in, w, out, dinp, N, C, OC, res[r]);
  }
  be->set_weights(be, NULL, 0);
  be->set_matmul_precision(be, DT_PREC_FP32);
  char vs[24];
  snprintf(vs, sizeof vs, "%s:bf16", be->name);
  const size_t bytes = sizeof res[0];
  if (memcmp(res[0], res[1], bytes))
    check_fail("weight_copy", vs, "", "the bf16 copy gives other bits than rounding per call");
  else if (memcmp(res[1], res[2], bytes))
    check_fail("weight_copy", vs, "", "weights changed behind set_weights were read: no copy");
  else if (memcmp(res[3], res[4], bytes))
    check_fail("weight_copy", vs, "", "a new set_weights did not refresh the copy");
  else {
    printf("ok   %-20s %-9s same bits as per call; refreshed by set_weights\n", "weight_copy", vs);
    g_pass++;
  }
  be->free(be, p), be->free(be, in), be->free(be, out), be->free(be, dinp);
  free(hp), free(hp2), free(hin);
}

static void test_linear(const linear_case *lc, int idx) {
  char desc[128];
  snprintf(desc, sizeof desc, "n=%d c=%d oc=%d%s%s%s", lc->n, lc->c, lc->oc,
           lc->bias ? "" : " b=NULL", lc->db ? "" : " db=NULL", lc->dinp ? "" : " dinp=NULL");
  size_t nin = (size_t)lc->n * lc->c, nw = (size_t)lc->oc * lc->c, no = (size_t)lc->n * lc->oc;
  rng_seed(100 + idx);
  linear_data in, cpu;
  linear_alloc(&in, lc);
  linear_alloc(&cpu, lc);
  fill(in.inp, nin, -1, 1), fill(in.w, nw, -1, 1), fill(in.b, lc->oc, -1, 1);
  fill(in.dout, no, -1, 1), fill(in.dw0, nw, -1, 1), fill(in.db0, lc->oc, -1, 1);
  linear_run(g_cpu, &in, &cpu, desc);

  if (g_cpu_checks) {
    linear_fd f = {lc, todouble(in.inp, nin), todouble(in.w, nw), todouble(in.b, lc->oc),
                   todouble(in.dout, no), dnew(no)};
    double *rdinp = dnew(nin), *rdw = dnew(nw), *rdb = dnew(lc->oc);
    cmp c;
    cmp_init(&c, 1e-5, 1e-4);
    linear_loss(&f);
    cmp_fd(&c, "out", cpu.out, f.out, no);
    check_done(&c, "linear_forward", "cpu:f64", desc);

    ref_linear_backward(rdinp, rdw, rdb, f.dout, f.inp, f.w, lc->n, lc->c, lc->oc);
    add_base(rdw, in.dw0, nw), add_base(rdb, in.db0, lc->oc);
    cmp_init(&c, 1e-5, 1e-4);
    if (lc->dinp) cmp_fd(&c, "dinp", cpu.dinp, rdinp, nin);
    cmp_fd(&c, "dw", cpu.dw, rdw, nw);
    if (lc->db) cmp_fd(&c, "db", cpu.db, rdb, lc->oc);
    check_done(&c, "linear_backward", "cpu:f64", desc);

    cmp_init(&c, 1e-4, 1e-3);
    if (lc->dinp) fd_grad(&c, "dinp", linear_loss, &f, f.inp, nin, cpu.dinp, NULL);
    fd_grad(&c, "dw", linear_loss, &f, f.w, nw, cpu.dw, in.dw0);
    if (lc->db && lc->bias) fd_grad(&c, "db", linear_loss, &f, f.b, lc->oc, cpu.db, in.db0);
    check_done(&c, "linear_backward", "cpu:fd", desc);
    free(f.inp), free(f.w), free(f.b), free(f.dout), free(f.out);
    free(rdinp), free(rdw), free(rdb);
  }
  if (g_other) {
    linear_data gpu;
    linear_alloc(&gpu, lc);
    linear_run(g_other, &in, &gpu, desc);
    cmp c;
    cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
    cmp_ff(&c, "out", gpu.out, cpu.out, no);
    check_done(&c, "linear_forward", "cuda:cpu", desc);
    cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
    if (lc->dinp) cmp_ff(&c, "dinp", gpu.dinp, cpu.dinp, nin);
    cmp_ff(&c, "dw", gpu.dw, cpu.dw, nw);
    if (lc->db) cmp_ff(&c, "db", gpu.db, cpu.db, lc->oc);
    check_done(&c, "linear_backward", "cuda:cpu", desc);
    linear_free(&gpu);
  }
  test_linear_bf16(lc, &in, &cpu, desc);
  linear_free(&in);
  linear_free(&cpu);
}

/* ------------------------------------------------------------------ */
/* conv2d                                                             */

typedef struct conv_case {
  int n, c, h, w, oc, kh, kw, stride, pad;
  int dinp; /* pass dinp (else NULL) */
  int fd;   /* run finite differences (small cases) */
} conv_case;

static const conv_case conv_cases[] = {
    {1, 1, 5, 5, 1, 3, 3, 1, 0, 1, 1},
    {3, 2, 9, 7, 4, 3, 3, 2, 1, 1, 1},     /* stride 2, pad 1, non-square image */
    {2, 3, 8, 8, 5, 5, 5, 1, 2, 1, 1},     /* "same" padding */
    {2, 3, 10, 11, 3, 3, 2, 2, 0, 1, 1},   /* non-square kernel */
    {1, 2, 5, 5, 3, 1, 1, 1, 0, 1, 1},     /* 1x1 */
    {2, 2, 7, 7, 3, 3, 3, 3, 1, 1, 1},     /* stride 3 */
    {2, 3, 6, 6, 4, 3, 3, 1, 3, 1, 1},     /* pad >= k: border outputs see only zeros */
    {3, 2, 7, 9, 5, 4, 4, 2, 1, 0, 1},     /* even kernel, dinp NULL */
    {4, 1, 32, 32, 6, 5, 5, 1, 0, 1, 1},   /* LeNet conv1 */
    {3, 6, 14, 14, 16, 5, 5, 1, 0, 1, 1},  /* LeNet conv2 */
    {29, 16, 32, 32, 8, 3, 3, 1, 1, 1, 0}, /* the CPU works image by image */
    {30, 4, 16, 16, 3, 3, 3, 1, 1, 1, 0},  /* the CPU works in chunks, the last one short */
    {30, 16, 64, 64, 4, 3, 3, 1, 1, 1, 0}, /* CUDA too: 27 images a chunk (64 MB of columns) */
};

typedef struct conv_data {
  dt_conv2d_shape s;
  size_t nin, nw, no;
  float *inp, *w, *b, *dout, *dw0, *db0;
  float *out, *dinp, *dw, *db;
} conv_data;

static void conv_alloc(conv_data *x, const dt_conv2d_shape *s) {
  x->s = *s;
  x->nin = (size_t)s->n * s->c * s->h * s->w;
  x->nw = (size_t)s->oc * s->c * s->kh * s->kw;
  x->no = (size_t)s->n * s->oc * s->oh * s->ow;
  x->inp = fnew(x->nin), x->w = fnew(x->nw), x->b = fnew(s->oc), x->dout = fnew(x->no);
  x->dw0 = fnew(x->nw), x->db0 = fnew(s->oc);
  x->out = fnew(x->no), x->dinp = fnew(x->nin), x->dw = fnew(x->nw), x->db = fnew(s->oc);
}
static void conv_free(conv_data *x) {
  float *all[] = {x->inp, x->w, x->b, x->dout, x->dw0, x->db0, x->out, x->dinp, x->dw, x->db};
  for (size_t i = 0; i < DT_ARRAY_LEN(all); i++) free(all[i]);
}

static void conv_run(dt_backend_t be, const conv_data *in, conv_data *o, int want_dinp,
                     const char *desc) {
  const dt_conv2d_shape *s = &in->s;
  size_t F = sizeof(float);
  devbufs d = {.be = be};
  size_t wsb = be->k->conv2d_workspace(be->ctx, s);
  void *ws = dput(&d, NULL, wsb);
  float *inp = dput(&d, in->inp, in->nin * F), *w = dput(&d, in->w, in->nw * F);
  float *b = dput(&d, in->b, s->oc * F), *dout = dput(&d, in->dout, in->no * F);
  float *out = dput(&d, NULL, in->no * F), *dw = dput(&d, in->dw0, in->nw * F);
  float *db = dput(&d, in->db0, s->oc * F);
  float *dinp = want_dinp ? dput(&d, NULL, in->nin * F) : NULL;
  be->k->conv2d_forward(be->ctx, out, inp, w, b, s, ws);
  be->k->conv2d_backward(be->ctx, dinp, dw, db, dout, inp, w, s, ws);
  dget(&d, o->out, out, in->no * F, "out");
  dget(&d, o->dw, dw, in->nw * F, "dw");
  dget(&d, o->db, db, s->oc * F, "db");
  if (dinp) dget(&d, o->dinp, dinp, in->nin * F, "dinp");
  dget(&d, NULL, ws, wsb, "workspace");
  dkeep(&d, inp, in->inp, in->nin * F, "inp");
  dkeep(&d, w, in->w, in->nw * F, "w");
  dkeep(&d, b, in->b, s->oc * F, "b");
  dkeep(&d, dout, in->dout, in->no * F, "dout");
  dfree(&d, "conv2d", desc);
}

#define IDX4(a, b, c, d, B, C, D) ((((size_t)(a) * (B) + (b)) * (C) + (c)) * (D) + (d))

static void ref_conv_forward(double *out, const double *inp, const double *w, const double *b,
                             const dt_conv2d_shape *s) {
  for (int n = 0; n < s->n; n++)
    for (int o = 0; o < s->oc; o++)
      for (int y = 0; y < s->oh; y++)
        for (int x = 0; x < s->ow; x++) {
          double acc = b[o];
          for (int c = 0; c < s->c; c++)
            for (int i = 0; i < s->kh; i++)
              for (int j = 0; j < s->kw; j++) {
                int iy = y * s->stride - s->pad + i, ix = x * s->stride - s->pad + j;
                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
                acc += inp[IDX4(n, c, iy, ix, s->c, s->h, s->w)] *
                       w[IDX4(o, c, i, j, s->c, s->kh, s->kw)];
              }
          out[IDX4(n, o, y, x, s->oc, s->oh, s->ow)] = acc;
        }
}
/* overwrites dinp, dw, db */
static void ref_conv_backward(double *dinp, double *dw, double *db, const double *dout,
                              const double *inp, const double *w, const dt_conv2d_shape *s) {
  memset(dinp, 0, sizeof(double) * s->n * s->c * s->h * s->w);
  memset(dw, 0, sizeof(double) * s->oc * s->c * s->kh * s->kw);
  memset(db, 0, sizeof(double) * s->oc);
  for (int n = 0; n < s->n; n++)
    for (int o = 0; o < s->oc; o++)
      for (int y = 0; y < s->oh; y++)
        for (int x = 0; x < s->ow; x++) {
          double g = dout[IDX4(n, o, y, x, s->oc, s->oh, s->ow)];
          db[o] += g;
          for (int c = 0; c < s->c; c++)
            for (int i = 0; i < s->kh; i++)
              for (int j = 0; j < s->kw; j++) {
                int iy = y * s->stride - s->pad + i, ix = x * s->stride - s->pad + j;
                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
                size_t ii = IDX4(n, c, iy, ix, s->c, s->h, s->w);
                size_t wi = IDX4(o, c, i, j, s->c, s->kh, s->kw);
                dw[wi] += g * inp[ii];
                dinp[ii] += g * w[wi];
              }
        }
}

typedef struct conv_fd {
  const dt_conv2d_shape *s;
  size_t no;
  double *inp, *w, *b, *dout, *out;
} conv_fd;
static double conv_loss(void *p) {
  conv_fd *f = p;
  ref_conv_forward(f->out, f->inp, f->w, f->b, f->s);
  return dot(f->out, f->dout, f->no);
}

static void test_conv(const conv_case *cc, int idx) {
  dt_conv2d_shape s = {cc->n, cc->c, cc->h, cc->w, cc->oc, cc->kh, cc->kw, cc->stride, cc->pad, 0, 0};
  dt_conv2d_shape_init(&s);
  char desc[160];
  snprintf(desc, sizeof desc, "n=%d c=%d h=%d w=%d oc=%d k=%dx%d stride=%d pad=%d%s", s.n, s.c,
           s.h, s.w, s.oc, s.kh, s.kw, s.stride, s.pad, cc->dinp ? "" : " dinp=NULL");
  rng_seed(200 + idx);
  conv_data in, cpu;
  conv_alloc(&in, &s);
  conv_alloc(&cpu, &s);
  fill(in.inp, in.nin, -1, 1), fill(in.w, in.nw, -1, 1), fill(in.b, s.oc, -1, 1);
  fill(in.dout, in.no, -1, 1), fill(in.dw0, in.nw, -1, 1), fill(in.db0, s.oc, -1, 1);
  conv_run(g_cpu, &in, &cpu, cc->dinp, desc);

  if (g_cpu_checks) {
    conv_fd f = {&s, in.no, todouble(in.inp, in.nin), todouble(in.w, in.nw),
                 todouble(in.b, s.oc), todouble(in.dout, in.no), dnew(in.no)};
    double *rdinp = dnew(in.nin), *rdw = dnew(in.nw), *rdb = dnew(s.oc);
    cmp c;
    cmp_init(&c, 1e-5, 1e-4);
    conv_loss(&f);
    cmp_fd(&c, "out", cpu.out, f.out, in.no);
    check_done(&c, "conv2d_forward", "cpu:f64", desc);

    ref_conv_backward(rdinp, rdw, rdb, f.dout, f.inp, f.w, &s);
    add_base(rdw, in.dw0, in.nw), add_base(rdb, in.db0, s.oc);
    cmp_init(&c, 1e-4, 1e-4); /* dw sums over N*OH*OW terms */
    if (cc->dinp) cmp_fd(&c, "dinp", cpu.dinp, rdinp, in.nin);
    cmp_fd(&c, "dw", cpu.dw, rdw, in.nw);
    cmp_fd(&c, "db", cpu.db, rdb, s.oc);
    check_done(&c, "conv2d_backward", "cpu:f64", desc);

    if (cc->fd) {
      cmp_init(&c, 1e-4, 1e-3);
      if (cc->dinp) fd_grad(&c, "dinp", conv_loss, &f, f.inp, in.nin, cpu.dinp, NULL);
      fd_grad(&c, "dw", conv_loss, &f, f.w, in.nw, cpu.dw, in.dw0);
      fd_grad(&c, "db", conv_loss, &f, f.b, s.oc, cpu.db, in.db0);
      check_done(&c, "conv2d_backward", "cpu:fd", desc);
    }
    free(f.inp), free(f.w), free(f.b), free(f.dout), free(f.out);
    free(rdinp), free(rdw), free(rdb);
  }
  if (g_other) {
    conv_data gpu;
    conv_alloc(&gpu, &s);
    conv_run(g_other, &in, &gpu, cc->dinp, desc);
    cmp c;
    cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
    cmp_ff(&c, "out", gpu.out, cpu.out, in.no);
    check_done(&c, "conv2d_forward", "cuda:cpu", desc);
    cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
    if (cc->dinp) cmp_ff(&c, "dinp", gpu.dinp, cpu.dinp, in.nin);
    cmp_ff(&c, "dw", gpu.dw, cpu.dw, in.nw);
    cmp_ff(&c, "db", gpu.db, cpu.db, s.oc);
    check_done(&c, "conv2d_backward", "cuda:cpu", desc);
    conv_free(&gpu);
  }
  conv_free(&in);
  conv_free(&cpu);
}

/* ------------------------------------------------------------------ */
/* pooling                                                            */

typedef struct pool_case {
  int n, c, h, w, k, stride;
  int ties; /* 1: inputs from a few levels, so windows hold ties; 2: also NaN and
             * Inf, at most one NaN per window (no FD for either) */
} pool_case;

static const pool_case pool_cases[] = {
    {1, 1, 4, 4, 2, 2, 0},   {2, 3, 7, 9, 2, 2, 0},  /* odd sizes: last row/column unused */
    {2, 2, 9, 8, 3, 2, 0},   /* overlapping windows */
    {3, 6, 28, 28, 2, 2, 0}, /* LeNet pool1 */
    {1, 2, 5, 5, 3, 1, 0},   {2, 1, 6, 6, 1, 1, 0},  {2, 16, 10, 10, 2, 2, 0},
    {2, 3, 8, 8, 2, 2, 1},   {2, 2, 9, 7, 3, 2, 1},  /* ties, incl. overlapping windows */
    {2, 2, 8, 8, 2, 2, 2},   {1, 3, 11, 9, 3, 2, 2}, /* NaN wins a window, Inf ties */
};

typedef struct pool_data {
  dt_pool2d_shape s;
  size_t nin, no;
  float *inp, *dout;
  float *max_out, *max_dinp, *avg_out, *avg_dinp;
} pool_data;

static void pool_alloc(pool_data *x, const dt_pool2d_shape *s) {
  x->s = *s;
  x->nin = (size_t)s->n * s->c * s->h * s->w;
  x->no = (size_t)s->n * s->c * s->oh * s->ow;
  x->inp = fnew(x->nin), x->dout = fnew(x->no);
  x->max_out = fnew(x->no), x->max_dinp = fnew(x->nin);
  x->avg_out = fnew(x->no), x->avg_dinp = fnew(x->nin);
}
static void pool_free(pool_data *x) {
  free(x->inp), free(x->dout), free(x->max_out), free(x->max_dinp), free(x->avg_out);
  free(x->avg_dinp);
}

static void pool_run(dt_backend_t be, const pool_data *in, pool_data *o, const char *desc) {
  const dt_pool2d_shape *s = &in->s;
  size_t F = sizeof(float);
  devbufs d = {.be = be};
  float *inp = dput(&d, in->inp, in->nin * F), *dout = dput(&d, in->dout, in->no * F);
  /* dinp starts as garbage: the backward passes overwrite (=) */
  float *mo = dput(&d, NULL, in->no * F), *md = dput(&d, in->inp, in->nin * F);
  float *ao = dput(&d, NULL, in->no * F), *ad = dput(&d, in->inp, in->nin * F);
  be->k->maxpool2d_forward(be->ctx, mo, inp, s);
  be->k->maxpool2d_backward(be->ctx, md, dout, inp, s);
  be->k->avgpool2d_forward(be->ctx, ao, inp, s);
  be->k->avgpool2d_backward(be->ctx, ad, dout, s);
  dget(&d, o->max_out, mo, in->no * F, "max out");
  dget(&d, o->max_dinp, md, in->nin * F, "max dinp");
  dget(&d, o->avg_out, ao, in->no * F, "avg out");
  dget(&d, o->avg_dinp, ad, in->nin * F, "avg dinp");
  dkeep(&d, inp, in->inp, in->nin * F, "inp");
  dkeep(&d, dout, in->dout, in->no * F, "dout");
  dfree(&d, "pool2d", desc);
}

/* first element of the window in row-major order wins ties */
static size_t ref_argmax(const double *plane, const dt_pool2d_shape *s, int y, int x) {
  size_t best = (size_t)y * s->stride * s->w + (size_t)x * s->stride;
  for (int i = 0; i < s->k; i++)
    for (int j = 0; j < s->k; j++) {
      size_t o = (size_t)(y * s->stride + i) * s->w + x * s->stride + j;
      if (plane[o] > plane[best] || (isnan(plane[o]) && !isnan(plane[best]))) best = o;
    }
  return best;
}
/* max (avg = 0) or average pooling forward and its backward (dinp overwritten) */
static void ref_pool(double *out, double *dinp, const double *inp, const double *dout,
                     const dt_pool2d_shape *s, int avg) {
  size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->oh * s->ow;
  if (dinp) memset(dinp, 0, sizeof(double) * s->n * s->c * hw);
  for (size_t pl = 0; pl < (size_t)s->n * s->c; pl++)
    for (int y = 0; y < s->oh; y++)
      for (int x = 0; x < s->ow; x++) {
        const double *plane = inp + pl * hw;
        size_t oi = pl * ohw + (size_t)y * s->ow + x;
        if (!avg) {
          size_t a = ref_argmax(plane, s, y, x);
          if (out) out[oi] = plane[a];
          if (dinp) dinp[pl * hw + a] += dout[oi];
          continue;
        }
        double acc = 0.0, kk = (double)s->k * s->k;
        for (int i = 0; i < s->k; i++)
          for (int j = 0; j < s->k; j++) {
            size_t ii = (size_t)(y * s->stride + i) * s->w + x * s->stride + j;
            acc += plane[ii];
            if (dinp) dinp[pl * hw + ii] += dout[oi] / kk;
          }
        if (out) out[oi] = acc / kk;
      }
}

typedef struct pool_fd {
  const dt_pool2d_shape *s;
  size_t no;
  int avg;
  double *inp, *dout, *out;
} pool_fd;
static double pool_loss(void *p) {
  pool_fd *f = p;
  ref_pool(f->out, NULL, f->inp, NULL, f->s, f->avg);
  return dot(f->out, f->dout, f->no);
}

static void test_pool(const pool_case *pc, int idx) {
  dt_pool2d_shape s = {pc->n, pc->c, pc->h, pc->w, pc->k, pc->stride, 0, 0};
  dt_pool2d_shape_init(&s);
  char desc[128];
  snprintf(desc, sizeof desc, "n=%d c=%d h=%d w=%d k=%d stride=%d%s", s.n, s.c, s.h, s.w, s.k,
           s.stride, pc->ties == 2 ? " ties+nan+inf" : pc->ties ? " ties" : "");
  rng_seed(300 + idx);
  pool_data in, cpu;
  pool_alloc(&in, &s);
  pool_alloc(&cpu, &s);
  if (pc->ties) {
    for (size_t i = 0; i < in.nin; i++) in.inp[i] = (float)(rng_u64() % 3) * 0.5f;
    /* NaNs k+1 apart in both directions: no window holds two */
    for (size_t i = 0; pc->ties == 2 && i < in.nin; i++) {
      size_t y = i / s.w % s.h, x = i % s.w, p = (size_t)s.k + 1;
      if (y % p == 0 && x % p == (i / (s.w * s.h)) % p) in.inp[i] = NAN;
      else if (rng_u64() % 7 == 0) in.inp[i] = (rng_u64() & 1) ? INFINITY : -INFINITY;
    }
  } else {
    /* distinct values at least 1e-3 apart, so x +- FD_H never changes an argmax */
    int32_t *perm = dt_malloc(in.nin * sizeof *perm);
    for (size_t i = 0; i < in.nin; i++) perm[i] = (int32_t)i;
    for (size_t i = in.nin; i > 1; i--) {
      size_t j = rng_u64() % i;
      int32_t t = perm[i - 1];
      perm[i - 1] = perm[j], perm[j] = t;
    }
    for (size_t i = 0; i < in.nin; i++) in.inp[i] = (float)((perm[i] - (double)in.nin / 2) * 1e-3);
    free(perm);
  }
  /* multiples of 1/8: sums of routed gradients are exact in any order */
  for (size_t i = 0; i < in.no; i++) in.dout[i] = (float)((int)(rng_u64() % 17) - 8) / 8.0f;
  pool_run(g_cpu, &in, &cpu, desc);

  if (g_cpu_checks) {
    pool_fd f = {&s, in.no, 0, todouble(in.inp, in.nin), todouble(in.dout, in.no), dnew(in.no)};
    double *rdinp = dnew(in.nin);
    cmp c;
    for (int avg = 0; avg <= 1; avg++) {
      const char *fwd = avg ? "avgpool2d_forward" : "maxpool2d_forward";
      const char *bwd = avg ? "avgpool2d_backward" : "maxpool2d_backward";
      double tol = avg ? 1e-6 : 0.0; /* max pool copies and routes exactly */
      ref_pool(f.out, rdinp, f.inp, f.dout, &s, avg);
      cmp_init(&c, tol, tol);
      cmp_fd(&c, "out", avg ? cpu.avg_out : cpu.max_out, f.out, in.no);
      check_done(&c, fwd, "cpu:f64", desc);
      cmp_init(&c, tol, tol);
      cmp_fd(&c, "dinp", avg ? cpu.avg_dinp : cpu.max_dinp, rdinp, in.nin);
      check_done(&c, bwd, "cpu:f64", desc);
      if (!pc->ties) {
        f.avg = avg;
        cmp_init(&c, 1e-6, 1e-5);
        fd_grad(&c, "dinp", pool_loss, &f, f.inp, in.nin, avg ? cpu.avg_dinp : cpu.max_dinp,
                NULL);
        check_done(&c, bwd, "cpu:fd", desc);
      }
    }
    free(f.inp), free(f.dout), free(f.out), free(rdinp);
  }
  if (g_other) {
    pool_data gpu;
    pool_alloc(&gpu, &s);
    pool_run(g_other, &in, &gpu, desc);
    cmp c;
    cmp_init(&c, 0.0, 0.0);
    cmp_ff(&c, "out", gpu.max_out, cpu.max_out, in.no);
    check_done(&c, "maxpool2d_forward", "cuda:cpu", desc);
    cmp_init(&c, 0.0, 0.0);
    cmp_ff(&c, "dinp", gpu.max_dinp, cpu.max_dinp, in.nin);
    check_done(&c, "maxpool2d_backward", "cuda:cpu", desc);
    cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
    cmp_ff(&c, "out", gpu.avg_out, cpu.avg_out, in.no);
    check_done(&c, "avgpool2d_forward", "cuda:cpu", desc);
    cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
    cmp_ff(&c, "dinp", gpu.avg_dinp, cpu.avg_dinp, in.nin);
    check_done(&c, "avgpool2d_backward", "cuda:cpu", desc);
    pool_free(&gpu);
  }
  pool_free(&in);
  pool_free(&cpu);
}

/* ------------------------------------------------------------------ */
/* activations                                                        */

static const char *act_name[DT_ACT_COUNT] = {"relu", "tanh", "gelu", "gelu_tanh"};
static const size_t act_sizes[] = {1, 7, 1000, 4097};

static double ref_act(dt_act a, double x) {
  const double k = 0.7978845608028654; /* sqrt(2/pi) */
  switch (a) {
  case DT_ACT_RELU: return x > 0 ? x : 0.0;
  case DT_ACT_TANH: return tanh(x);
  case DT_ACT_GELU: return 0.5 * x * (1.0 + erf(x * 0.7071067811865476));
  case DT_ACT_GELU_TANH: return 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * x * x * x)));
  default: return NAN;
  }
}
static double ref_act_grad(dt_act a, double x) {
  const double k = 0.7978845608028654;
  switch (a) {
  case DT_ACT_RELU: return x > 0 ? 1.0 : 0.0;
  case DT_ACT_TANH: return 1.0 - tanh(x) * tanh(x);
  case DT_ACT_GELU:
    return 0.5 * (1.0 + erf(x * 0.7071067811865476)) + x * exp(-0.5 * x * x) * 0.3989422804014327;
  case DT_ACT_GELU_TANH: {
    double t = tanh(k * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3 * 0.044715 * x * x);
  }
  default: return NAN;
  }
}

typedef struct act_out {
  float *out, *out_inplace, *dinp, *dinp_inplace;
} act_out;

/* out of place, then in place (out == inp, dinp == dout) */
static void act_run(dt_backend_t be, dt_act a, const float *x, const float *dy, size_t n,
                    act_out *o, const char *desc) {
  size_t F = sizeof(float);
  devbufs d = {.be = be};
  float *inp = dput(&d, x, n * F), *dout = dput(&d, dy, n * F);
  float *out = dput(&d, NULL, n * F), *dinp = dput(&d, NULL, n * F);
  float *io = dput(&d, x, n * F), *gio = dput(&d, dy, n * F);
  be->k->act_forward(be->ctx, a, out, inp, n);
  be->k->act_backward(be->ctx, a, dinp, dout, inp, n);
  be->k->act_forward(be->ctx, a, io, io, n);
  be->k->act_backward(be->ctx, a, gio, gio, inp, n);
  dget(&d, o->out, out, n * F, "out");
  dget(&d, o->dinp, dinp, n * F, "dinp");
  dget(&d, o->out_inplace, io, n * F, "out (in place)");
  dget(&d, o->dinp_inplace, gio, n * F, "dinp (in place)");
  dkeep(&d, inp, x, n * F, "inp");
  dkeep(&d, dout, dy, n * F, "dout");
  dfree(&d, act_name[a], desc);
}

static void test_act(dt_act a, size_t n, int idx) {
  char desc[64], fwd[40], bwd[40];
  snprintf(desc, sizeof desc, "n=%zu", n);
  snprintf(fwd, sizeof fwd, "act_forward/%s", act_name[a]);
  snprintf(bwd, sizeof bwd, "act_backward/%s", act_name[a]);
  rng_seed(400 + idx);
  float *x = fnew(n), *dy = fnew(n);
  fill(x, n, -4, 4), fill(dy, n, -1, 1);
  static const float special[] = {0.0f, -0.0f, 10.0f, -10.0f, 30.0f, -30.0f, 1e-3f, -5.5f};
  for (size_t i = 0; i < n && i < DT_ARRAY_LEN(special); i++)
    if (n > 8) x[i * 7 % n] = special[i];
  act_out cpu = {fnew(n), fnew(n), fnew(n), fnew(n)};
  act_run(g_cpu, a, x, dy, n, &cpu, desc);

  if (g_cpu_checks) {
    cmp c;
    cmp_init(&c, 1e-6, 1e-5);
    for (size_t i = 0; i < n; i++) {
      double r = ref_act(a, x[i]);
      cmp_one(&c, "out", i, cpu.out[i], r);
      cmp_one(&c, "out (in place)", i, cpu.out_inplace[i], r);
    }
    check_done(&c, fwd, "cpu:f64", desc);
    cmp_init(&c, 1e-5, 1e-5);
    for (size_t i = 0; i < n; i++) {
      double r = dy[i] * ref_act_grad(a, x[i]);
      cmp_one(&c, "dinp", i, cpu.dinp[i], r);
      cmp_one(&c, "dinp (in place)", i, cpu.dinp_inplace[i], r);
    }
    check_done(&c, bwd, "cpu:f64", desc);
    /* elementwise, so the central difference of element i alone is exact */
    cmp_init(&c, 1e-5, 1e-4);
    for (size_t i = 0; i < n; i++) {
      if (a == DT_ACT_RELU && fabs(x[i]) < 1e-2) continue; /* the kink */
      double fd = dy[i] * (ref_act(a, x[i] + FD_H) - ref_act(a, x[i] - FD_H)) / (2 * FD_H);
      cmp_one(&c, "dinp", i, cpu.dinp[i], fd);
    }
    check_done(&c, bwd, "cpu:fd", desc);
  }
  if (g_other) {
    act_out gpu = {fnew(n), fnew(n), fnew(n), fnew(n)};
    act_run(g_other, a, x, dy, n, &gpu, desc);
    cmp c;
    cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
    cmp_ff(&c, "out", gpu.out, cpu.out, n);
    cmp_ff(&c, "out (in place)", gpu.out_inplace, cpu.out, n);
    check_done(&c, fwd, "cuda:cpu", desc);
    cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
    cmp_ff(&c, "dinp", gpu.dinp, cpu.dinp, n);
    cmp_ff(&c, "dinp (in place)", gpu.dinp_inplace, cpu.dinp, n);
    check_done(&c, bwd, "cuda:cpu", desc);
    free(gpu.out), free(gpu.out_inplace), free(gpu.dinp), free(gpu.dinp_inplace);
  }
  free(cpu.out), free(cpu.out_inplace), free(cpu.dinp), free(cpu.dinp_inplace);
  free(x), free(dy);
}

/* ------------------------------------------------------------------ */
/* linear + activation (the MLP's fused GEMMs)                        */

typedef struct lact_case {
  int n, c, oc;
  int bias, pre; /* pass b and db / pre (else NULL) */
  int dw;        /* pass dw (else NULL) */
  dt_act act;
  int off;       /* device pointers 4 bytes past 256-byte alignment */
} lact_case;

/* On the GPU GELU (tanh) goes through cuBLASLt's epilogues, whose aux
 * matrix needs a leading dimension (oc forward, c backward) divisible by 8;
 * the other cases take the unfused path. */
static const lact_case lact_cases[] = {
    {4, 8, 16, 1, 1, 1, DT_ACT_GELU_TANH, 0},  {5, 7, 24, 0, 1, 1, DT_ACT_GELU_TANH, 0},
    {3, 16, 8, 1, 0, 0, DT_ACT_GELU_TANH, 0},  {6, 12, 10, 1, 1, 1, DT_ACT_GELU_TANH, 0},
    {9, 16, 32, 1, 1, 1, DT_ACT_GELU_TANH, 1}, {4, 8, 16, 1, 1, 1, DT_ACT_RELU, 0},
    {4, 8, 16, 0, 0, 1, DT_ACT_GELU, 0},       {64, 96, 128, 1, 1, 1, DT_ACT_GELU_TANH, 0},
};

typedef struct lact_data {
  float *inp, *w, *b, *dout, *pre_in;  /* inputs; pre_in (N,C) feeds the backward */
  float *dw0, *db0;                    /* what dw and db hold before */
  float *out, *pre, *dpre, *dw, *db;   /* outputs (N,OC) (N,OC) (N,C) (OC,C) (OC) */
} lact_data;

/* dput at `off` bytes past the allocation's start */
static void *dput_at(devbufs *d, const void *host, size_t bytes, size_t off) {
  unsigned char *tmp = dt_malloc(off + bytes + 1);
  memset(tmp, 0, off);
  if (host) memcpy(tmp + off, host, bytes);
  else memset(tmp + off, 0xFF, bytes);
  unsigned char *p = dput(d, tmp, off + bytes);
  free(tmp);
  return p + off;
}

static void lact_run(dt_backend_t be, const lact_case *lc, const lact_data *in, lact_data *o,
                     const char *desc) {
  const size_t F = sizeof(float), off = lc->off ? 4 : 0;
  const size_t nin = (size_t)lc->n * lc->c, nw = (size_t)lc->oc * lc->c,
               no = (size_t)lc->n * lc->oc;
  devbufs d = {.be = be};
  float *inp = dput_at(&d, in->inp, nin * F, off), *w = dput_at(&d, in->w, nw * F, off);
  float *b = lc->bias ? dput_at(&d, in->b, lc->oc * F, off) : NULL;
  float *out = dput_at(&d, NULL, no * F, off);
  float *pre = lc->pre ? dput_at(&d, NULL, no * F, off) : NULL;
  float *dout = dput_at(&d, in->dout, no * F, off), *pin = dput_at(&d, in->pre_in, nin * F, off);
  float *dpre = dput_at(&d, NULL, nin * F, off);
  float *dw = lc->dw ? dput_at(&d, in->dw0, nw * F, off) : NULL;
  float *db = lc->bias ? dput_at(&d, in->db0, lc->oc * F, off) : NULL;
  be->k->linear_act_forward(be->ctx, lc->act, out, pre, DT_F32, inp, DT_F32, w, b, lc->n, lc->c,
                            lc->oc);
  /* the backward's layer input (for dw) is inp: any (N,C) values do */
  be->k->linear_backward_act(be->ctx, lc->act, dpre, dw, db, dout, inp, w, pin, DT_F32, lc->n,
                             lc->c, lc->oc);
  dget(&d, o->out, out, no * F, "out");
  if (pre) dget(&d, o->pre, pre, no * F, "pre");
  dget(&d, o->dpre, dpre, nin * F, "dpre");
  if (dw) dget(&d, o->dw, dw, nw * F, "dw");
  if (db) dget(&d, o->db, db, lc->oc * F, "db");
  dkeep(&d, inp, in->inp, nin * F, "inp");
  dkeep(&d, w, in->w, nw * F, "w");
  dkeep(&d, dout, in->dout, no * F, "dout");
  dkeep(&d, pin, in->pre_in, nin * F, "pre (backward)");
  if (b) dkeep(&d, b, in->b, lc->oc * F, "b");
  dfree(&d, "linear_act", desc);
}

typedef struct lact_fd {
  const lact_case *lc;
  double *inp, *w, *b, *dout, *pre_in, *h, *y;
} lact_fd;
/* forward: sum(dout * act(inp @ w^T + b)) */
static double lact_loss_fwd(void *p) {
  lact_fd *f = p;
  const lact_case *lc = f->lc;
  const size_t no = (size_t)lc->n * lc->oc;
  ref_linear_forward(f->h, f->inp, f->w, lc->bias ? f->b : NULL, lc->n, lc->c, lc->oc);
  for (size_t i = 0; i < no; i++) f->y[i] = ref_act(lc->act, f->h[i]);
  return dot(f->y, f->dout, no);
}
/* backward: dpre is the gradient in pre of sum(dout * (act(pre) @ w^T)) */
static double lact_loss_bwd(void *p) {
  lact_fd *f = p;
  const lact_case *lc = f->lc;
  const size_t nin = (size_t)lc->n * lc->c;
  for (size_t i = 0; i < nin; i++) f->h[i] = ref_act(lc->act, f->pre_in[i]);
  ref_linear_forward(f->y, f->h, f->w, NULL, lc->n, lc->c, lc->oc);
  return dot(f->y, f->dout, (size_t)lc->n * lc->oc);
}

static void lact_alloc(lact_data *x, const lact_case *lc) {
  const size_t nin = (size_t)lc->n * lc->c, nw = (size_t)lc->oc * lc->c,
               no = (size_t)lc->n * lc->oc;
  *x = (lact_data){fnew(nin), fnew(nw), fnew(lc->oc), fnew(no), fnew(nin), fnew(nw),
                   fnew(lc->oc), fnew(no), fnew(no), fnew(nin), fnew(nw), fnew(lc->oc)};
}
static void lact_free(lact_data *x) {
  float *all[] = {x->inp, x->w,   x->b,   x->dout, x->pre_in, x->dw0,
                  x->db0, x->out, x->pre, x->dpre, x->dw,     x->db};
  for (size_t i = 0; i < DT_ARRAY_LEN(all); i++) free(all[i]);
}

/* "gelu_tanh n=4 c=8 oc=16 ..." and what is NULL or unaligned, then tail */
static void lact_desc(char *desc, size_t size, const lact_case *lc, const char *tail) {
  snprintf(desc, size, "%s n=%d c=%d oc=%d%s%s%s%s", act_name[lc->act], lc->n, lc->c, lc->oc,
           lc->bias ? "" : " b=NULL", lc->pre ? "" : " pre=NULL", lc->off ? " unaligned" : "",
           tail);
}

/* random inputs (seeded) for lc */
static void lact_inputs(lact_data *in, const lact_case *lc, int seed) {
  const size_t nin = (size_t)lc->n * lc->c, nw = (size_t)lc->oc * lc->c,
               no = (size_t)lc->n * lc->oc;
  rng_seed(seed);
  lact_alloc(in, lc);
  fill(in->inp, nin, -1, 1), fill(in->w, nw, -1, 1), fill(in->b, lc->oc, -1, 1);
  fill(in->dout, no, -1, 1), fill(in->pre_in, nin, -3, 3);
  fill(in->dw0, nw, -1, 1), fill(in->db0, lc->oc, -1, 1);
}

static void lact_twin(const lact_case *lc, const lact_data *in, const lact_data *cpu,
                      const char *desc, const char *vs) {
  const size_t nin = (size_t)lc->n * lc->c, no = (size_t)lc->n * lc->oc;
  lact_data gpu;
  lact_alloc(&gpu, lc);
  lact_run(g_other, lc, in, &gpu, desc);
  cmp c;
  cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
  cmp_ff(&c, "out", gpu.out, cpu->out, no);
  if (lc->pre) cmp_ff(&c, "pre", gpu.pre, cpu->pre, no);
  check_done(&c, "linear_act_forward", vs, desc);
  cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
  cmp_ff(&c, "dpre", gpu.dpre, cpu->dpre, nin);
  if (lc->dw) cmp_ff(&c, "dw", gpu.dw, cpu->dw, (size_t)lc->oc * lc->c);
  if (lc->bias) cmp_ff(&c, "db", gpu.db, cpu->db, lc->oc);
  check_done(&c, "linear_backward_act", vs, desc);
  lact_free(&gpu);
}

static void test_linear_act(const lact_case *lc, int idx) {
  char desc[128];
  lact_desc(desc, sizeof desc, lc, "");
  const size_t nin = (size_t)lc->n * lc->c, nw = (size_t)lc->oc * lc->c,
               no = (size_t)lc->n * lc->oc;
  lact_data in, cpu;
  lact_inputs(&in, lc, 700 + idx);
  lact_alloc(&cpu, lc);
  lact_run(g_cpu, lc, &in, &cpu, desc);
  if (g_cpu_checks) {
    lact_fd f = {lc, todouble(in.inp, nin), todouble(in.w, nw), todouble(in.b, lc->oc),
                 todouble(in.dout, no), todouble(in.pre_in, nin), dnew(no + nin), dnew(no + nin)};
    cmp c;
    cmp_init(&c, 1e-5, 1e-4);
    lact_loss_fwd(&f);
    cmp_fd(&c, "out", cpu.out, f.y, no);
    if (lc->pre) cmp_fd(&c, "pre", cpu.pre, f.h, no);
    check_done(&c, "linear_act_forward", "cpu:f64", desc);
    /* dpre = (dout @ w) * act'(pre) */
    double *g = dnew(nin);
    for (int i = 0; i < lc->n; i++)
      for (int k = 0; k < lc->c; k++) {
        double s = 0.0;
        for (int o = 0; o < lc->oc; o++)
          s += f.dout[(size_t)i * lc->oc + o] * f.w[(size_t)o * lc->c + k];
        g[(size_t)i * lc->c + k] = s * ref_act_grad(lc->act, f.pre_in[(size_t)i * lc->c + k]);
      }
    /* dw and db exactly as linear_backward's, on top of what they held */
    double *xi = dnew(nin), *rdw = dnew(nw), *rdb = dnew(lc->oc);
    ref_linear_backward(xi, rdw, rdb, f.dout, f.inp, f.w, lc->n, lc->c, lc->oc);
    add_base(rdw, in.dw0, nw), add_base(rdb, in.db0, lc->oc);
    cmp_init(&c, 1e-5, 1e-4);
    cmp_fd(&c, "dpre", cpu.dpre, g, nin);
    if (lc->dw) cmp_fd(&c, "dw", cpu.dw, rdw, nw);
    if (lc->bias) cmp_fd(&c, "db", cpu.db, rdb, lc->oc);
    check_done(&c, "linear_backward_act", "cpu:f64", desc);
    free(xi), free(rdw), free(rdb);
    cmp_init(&c, 1e-4, 1e-3);
    fd_grad(&c, "dpre", lact_loss_bwd, &f, f.pre_in, nin, cpu.dpre, NULL);
    check_done(&c, "linear_backward_act", "cpu:fd", desc);
    free(g), free(f.inp), free(f.w), free(f.b), free(f.dout), free(f.pre_in), free(f.h), free(f.y);
  }
  if (g_other) {
    lact_twin(lc, &in, &cpu, desc, "cuda:cpu");
    /* bf16 operands: both backends round them the same way */
    lact_data c16;
    lact_alloc(&c16, lc);
    g_cpu->set_matmul_precision(g_cpu, DT_PREC_BF16);
    g_other->set_matmul_precision(g_other, DT_PREC_BF16);
    lact_run(g_cpu, lc, &in, &c16, desc);
    lact_twin(lc, &in, &c16, desc, "cuda:bf16");
    g_cpu->set_matmul_precision(g_cpu, DT_PREC_FP32);
    g_other->set_matmul_precision(g_other, DT_PREC_FP32);
    lact_free(&c16);
  }
  lact_free(&in);
  lact_free(&cpu);
}

/* ------------------------------------------------------------------ */
/* activations stored in bf16 (dt_dtype arguments)                    */

static uint16_t *bits_of(const float *x, size_t n) {
  uint16_t *h = dt_malloc((n ? n : 1) * sizeof *h);
  for (size_t i = 0; i < n; i++) h[i] = dt_bf16_bits(x[i]);
  return h;
}
static float *values_of(const uint16_t *h, size_t n) {
  float *x = fnew(n);
  for (size_t i = 0; i < n; i++) x[i] = dt_bf16_value(h[i]);
  return x;
}
static float *rounded(const float *x, size_t n) {
  float *r = fnew(n);
  for (size_t i = 0; i < n; i++) r[i] = dt_bf16_round(x[i]);
  return r;
}
/* bit equality of two float arrays, as a check line */
static void check_same(const char *op, const char *vs, const char *desc, const char *what,
                       const void *got, const void *want, size_t bytes) {
  char why[128];
  if (!memcmp(got, want, bytes)) {
    printf("ok   %-20s %-9s %s  %s: same bits\n", op, vs, desc, what);
    g_pass++;
    return;
  }
  snprintf(why, sizeof why, "%s: bits differ", what);
  check_fail(op, vs, desc, why);
}

/* LayerNorm (plain and fused with the residual add) writing bf16: the bits
 * are the fp32 output's, rounded to nearest even; mean, rstd and the
 * residual sum are those of the fp32 call. */
static void test_ln_bf16(dt_backend_t be) {
  const int n = 5, c = 48;
  const size_t F = sizeof(float), nc = (size_t)n * c;
  char vs[24];
  snprintf(vs, sizeof vs, "%s:bf16", be->name);
  rng_seed(900);
  float *x = fnew(nc), *y = fnew(nc), *w = fnew(c), *b = fnew(c);
  fill(x, nc, -2, 3), fill(y, nc, -1, 1), fill(w, c, 0.5, 1.5), fill(b, c, -0.5, 0.5);
  float *o32 = fnew(nc), *st32 = fnew(2 * n), *r32 = fnew(nc), *st16 = fnew(2 * n), *r16 = fnew(nc);
  uint16_t *o16 = dt_malloc(nc * sizeof *o16);
  for (int fused = 0; fused < 2; fused++) {
    const char *op = fused ? "residual_layernorm" : "layernorm_forward";
    devbufs d = {.be = be};
    float *dx = dput(&d, x, nc * F), *dy = dput(&d, y, nc * F), *dw = dput(&d, w, c * F);
    float *db = dput(&d, b, c * F), *out32 = dput(&d, NULL, nc * F);
    void *out16 = dput(&d, NULL, nc * 2);
    float *m32 = dput(&d, NULL, n * F), *s32 = dput(&d, NULL, n * F);
    float *m16 = dput(&d, NULL, n * F), *s16 = dput(&d, NULL, n * F);
    float *res32 = dput(&d, NULL, nc * F), *res16 = dput(&d, NULL, nc * F);
    if (fused) {
      be->k->residual_layernorm_forward(be->ctx, res32, out32, DT_F32, m32, s32, dx, dy, dw, db,
                                        n, c, 1e-5f);
      be->k->residual_layernorm_forward(be->ctx, res16, out16, DT_BF16, m16, s16, dx, dy, dw,
                                        db, n, c, 1e-5f);
      dget(&d, r32, res32, nc * F, "res_out (fp32)");
      dget(&d, r16, res16, nc * F, "res_out (bf16)");
    } else {
      be->k->layernorm_forward(be->ctx, out32, DT_F32, m32, s32, dx, dw, db, n, c, 1e-5f);
      be->k->layernorm_forward(be->ctx, out16, DT_BF16, m16, s16, dx, dw, db, n, c, 1e-5f);
    }
    dget(&d, o32, out32, nc * F, "out (fp32)");
    dget(&d, o16, out16, nc * 2, "out (bf16)");
    dget(&d, st32, m32, n * F, "mean"), dget(&d, st32 + n, s32, n * F, "rstd");
    dget(&d, st16, m16, n * F, "mean"), dget(&d, st16 + n, s16, n * F, "rstd");
    dfree(&d, op, "n=5 c=48 bf16 out");
    uint16_t *want = bits_of(o32, nc);
    check_same(op, vs, "n=5 c=48", "bf16 out = bf16(fp32 out)", o16, want, nc * 2);
    check_same(op, vs, "n=5 c=48", "mean, rstd", st16, st32, 2 * n * F);
    if (fused) check_same(op, vs, "n=5 c=48", "res_out", r16, r32, nc * F);
    free(want);
  }
  free(x), free(y), free(w), free(b), free(o32), free(st32), free(r32), free(st16), free(r16);
  free(o16);
}

/* Under bf16 GEMMs an operand stored in bf16 is read as it is: the result
 * has the bits of the fp32 call given the same (rounded) values, for
 * linear_forward (inp), linear_backward (dout and inp; db then sums the
 * rounded dout, as the fp32 call does here) and lm_head_backward (x). */
static void test_gemm_bf16_operands(dt_backend_t be) {
  const int n = 6, c = 24, oc = 40, v = 50;
  const size_t F = sizeof(float), nin = (size_t)n * c, nw = (size_t)oc * c, no = (size_t)n * oc;
  char vs[24];
  snprintf(vs, sizeof vs, "%s:bf16", be->name);
  rng_seed(910);
  float *x = fnew(nin), *w = fnew(nw), *bias = fnew(oc), *g = fnew(no), *wv = fnew((size_t)v * c);
  int32_t t[6];
  fill(x, nin, -1, 1), fill(w, nw, -1, 1), fill(bias, oc, -1, 1), fill(g, no, -1, 1);
  fill(wv, (size_t)v * c, -1, 1);
  for (int i = 0; i < n; i++) t[i] = (int32_t)(rng_u64() % v);
  float *xr = rounded(x, nin), *gr = rounded(g, no);
  uint16_t *x16 = bits_of(x, nin), *g16 = bits_of(g, no);
  float *got[2][6];
  be->set_matmul_precision(be, DT_PREC_BF16);
  for (int typed = 0; typed < 2; typed++) {
    float **o = got[typed];
    const dt_dtype tt = typed ? DT_BF16 : DT_F32;
    devbufs d = {.be = be};
    const void *dx = typed ? dput(&d, x16, nin * 2) : dput(&d, xr, nin * F);
    const void *dg = typed ? dput(&d, g16, no * 2) : dput(&d, gr, no * F);
    float *dw = dput(&d, w, nw * F), *db = dput(&d, bias, oc * F), *out = dput(&d, NULL, no * F);
    float *dinp = dput(&d, NULL, nin * F), *gw = dput(&d, NULL, nw * F);
    float *gb = dput(&d, NULL, oc * F), *dwv = dput(&d, wv, (size_t)v * c * F);
    float *lg = dput(&d, NULL, (size_t)n * v * F), *sc = dput(&d, NULL, (size_t)n * v * F);
    float *ls = dput(&d, NULL, n * F), *dxh = dput(&d, NULL, nin * F);
    float *gwv = dput(&d, NULL, (size_t)v * c * F);
    int32_t *dt = dput(&d, t, sizeof t);
    be->memset0(be, gw, nw * F), be->memset0(be, gb, oc * F);
    be->memset0(be, gwv, (size_t)v * c * F);
    be->k->linear_forward(be->ctx, out, DT_F32, dx, tt, dw, db, n, c, oc);
    be->k->linear_backward(be->ctx, dinp, gw, gb, dg, tt, dx, tt, dw, n, c, oc);
    be->k->linear_forward(be->ctx, lg, DT_F32, dx, tt, dwv, NULL, n, c, v);
    be->k->lm_head_backward(be->ctx, ls, dxh, gwv, sc, lg, DT_F32, dt, dx, tt, dwv, n, c, v, v,
                            0.25f);
    const size_t sz[6] = {no, nin, nw, oc, nin, (size_t)v * c};
    const float *src[6] = {out, dinp, gw, gb, dxh, gwv};
    for (int i = 0; i < 6; i++) {
      o[i] = fnew(sz[i]);
      dget(&d, o[i], src[i], sz[i] * F, "out");
    }
    dfree(&d, "bf16 operands", typed ? "typed" : "fp32");
  }
  be->set_matmul_precision(be, DT_PREC_FP32);
  const char *what[6] = {"linear_forward out", "linear_backward dinp", "linear_backward dw",
                         "linear_backward db", "lm_head_backward dx", "lm_head_backward dw"};
  const size_t sz[6] = {no, nin, nw, oc, nin, (size_t)v * c};
  for (int i = 0; i < 6; i++) {
    check_same("bf16 operands", vs, "n=6 c=24 oc=40 v=50", what[i], got[1][i], got[0][i],
               sz[i] * F);
    free(got[0][i]), free(got[1][i]);
  }
  free(x), free(w), free(bias), free(g), free(wv), free(xr), free(gr), free(x16), free(g16);
}

/* bf16 logits: a linear layer writing bf16 is its fp32 sum (bias rounded
 * to bf16) rounded once, up to the rare sum that lands across a rounding
 * boundary; softmax_xent and lm_head_backward reading bf16 logits give the
 * bits of the fp32 calls on the same values, lm_head_backward also with its
 * bf16 dlogits overwriting the logits in place; softmax_xent_smooth (label
 * smoothing, one ignored row) on bf16 logits in place gives the fp32 call's
 * losses and its dlogits rounded once. */
static void test_logits_bf16(dt_backend_t be) {
  const int n = 7, c = 40, v = 300;
  const size_t F = sizeof(float), nin = (size_t)n * c, nw = (size_t)v * c, nv = (size_t)n * v;
  char vs[24];
  snprintf(vs, sizeof vs, "%s:bf16", be->name);
  const char *desc = "n=7 c=40 v=300";
  rng_seed(920);
  float *x = fnew(nin), *w = fnew(nw), *b = fnew(v), *br = fnew(v), *z = fnew(nv);
  int32_t t[7], ts[7];
  fill(x, nin, -1, 1), fill(w, nw, -1, 1), fill(b, v, -1, 1), fill(z, nv, -4, 4);
  for (int i = 0; i < v; i++) br[i] = dt_bf16_round(b[i]);
  for (int i = 0; i < n; i++) t[i] = (int32_t)(rng_u64() % v);
  memcpy(ts, t, sizeof t);
  ts[2] = -1; /* ignored (padding) */
  float *zr = rounded(z, nv);
  uint16_t *z16 = bits_of(z, nv), *o16 = dt_malloc(nv * 2);
  float *o32 = fnew(nv), *l[6], *dl[3], *dx[2], *dw[2];
  uint16_t *ds16 = dt_malloc(nv * 2);
  for (int i = 0; i < 6; i++) l[i] = fnew(n);
  for (int i = 0; i < 2; i++) dx[i] = fnew(nin), dw[i] = fnew(nw);
  for (int i = 0; i < 3; i++) dl[i] = fnew(nv);
  be->set_matmul_precision(be, DT_PREC_BF16);
  devbufs d = {.be = be};
  float *dxi = dput(&d, x, nin * F), *dwt = dput(&d, w, nw * F), *db = dput(&d, b, v * F);
  float *dbr = dput(&d, br, v * F), *out32 = dput(&d, NULL, nv * F);
  void *out16 = dput(&d, NULL, nv * 2), *zb = dput(&d, z16, nv * 2);
  float *zf = dput(&d, zr, nv * F), *ls = dput(&d, NULL, n * F), *dlg = dput(&d, NULL, nv * F);
  float *gx = dput(&d, NULL, nin * F), *gw = dput(&d, NULL, nw * F), *scr = dput(&d, NULL, nv * 2);
  int32_t *dt = dput(&d, t, sizeof t);
  be->k->linear_forward(be->ctx, out16, DT_BF16, dxi, DT_F32, dwt, db, n, c, v);
  be->k->linear_forward(be->ctx, out32, DT_F32, dxi, DT_F32, dwt, dbr, n, c, v);
  dget(&d, o16, out16, nv * 2, "out (bf16)"), dget(&d, o32, out32, nv * F, "out (fp32)");
  /* softmax_xent: bf16 logits against the fp32 call on their values */
  be->k->softmax_xent(be->ctx, ls, dlg, zb, DT_BF16, dt, n, v, v, 0.5f);
  dget(&d, l[0], ls, n * F, "losses"), dget(&d, dl[0], dlg, nv * F, "dlogits");
  be->k->softmax_xent(be->ctx, ls, dlg, zf, DT_F32, dt, n, v, v, 0.5f);
  dget(&d, l[1], ls, n * F, "losses"), dget(&d, dl[1], dlg, nv * F, "dlogits");
  /* lm_head_backward: fp32 logits and scratch, then bf16 logits in place */
  be->memset0(be, gw, nw * F);
  be->k->lm_head_backward(be->ctx, ls, gx, gw, scr, zf, DT_F32, dt, dxi, DT_F32, dwt, n, c, v,
                          v, 0.5f);
  dget(&d, l[2], ls, n * F, "losses"), dget(&d, dx[1], gx, nin * F, "dx");
  dget(&d, dw[1], gw, nw * F, "dw");
  be->memset0(be, gw, nw * F);
  be->k->lm_head_backward(be->ctx, ls, gx, gw, zb, zb, DT_BF16, dt, dxi, DT_F32, dwt, n, c, v,
                          v, 0.5f);
  dget(&d, l[3], ls, n * F, "losses"), dget(&d, dx[0], gx, nin * F, "dx");
  dget(&d, dw[0], gw, nw * F, "dw");
  /* softmax_xent_smooth: bf16 logits and dlogits in place, then fp32 */
  void *zs = dput(&d, z16, nv * 2);
  int32_t *dts = dput(&d, ts, sizeof ts);
  be->k->softmax_xent_smooth(be->ctx, ls, zs, zs, DT_BF16, dts, n, v, 0.5f, 0.1f);
  dget(&d, l[4], ls, n * F, "losses"), dget(&d, ds16, zs, nv * 2, "dlogits (bf16)");
  be->k->softmax_xent_smooth(be->ctx, ls, dlg, zf, DT_F32, dts, n, v, 0.5f, 0.1f);
  dget(&d, l[5], ls, n * F, "losses"), dget(&d, dl[2], dlg, nv * F, "dlogits");
  dfree(&d, "bf16 logits", desc);
  be->set_matmul_precision(be, DT_PREC_FP32);
  size_t off = 0;
  for (size_t i = 0; i < nv; i++) off += o16[i] != dt_bf16_bits(o32[i]);
  char what[128];
  snprintf(what, sizeof what, "%zu of %zu not bf16(fp32 out, bias rounded)", off, nv);
  check_line(off <= nv / 100 + 1, "linear_forward", vs, desc, what);
  check_same("softmax_xent", vs, desc, "bf16 logits: losses", l[0], l[1], n * F);
  check_same("softmax_xent", vs, desc, "bf16 logits: dlogits", dl[0], dl[1], nv * F);
  check_same("lm_head_backward", vs, desc, "bf16 logits in place: losses", l[3], l[2], n * F);
  check_same("lm_head_backward", vs, desc, "bf16 logits in place: dx", dx[0], dx[1], nin * F);
  check_same("lm_head_backward", vs, desc, "bf16 logits in place: dw", dw[0], dw[1], nw * F);
  check_same("softmax_xent_smooth", vs, desc, "bf16 logits in place: losses", l[4], l[5], n * F);
  uint16_t *want16 = bits_of(dl[2], nv);
  check_same("softmax_xent_smooth", vs, desc, "bf16 dlogits = bf16(fp32 dlogits)", ds16, want16,
             nv * 2);
  free(want16), free(ds16);
  for (int i = 0; i < 6; i++) free(l[i]);
  for (int i = 0; i < 2; i++) free(dx[i]), free(dw[i]);
  for (int i = 0; i < 3; i++) free(dl[i]);
  free(x), free(w), free(b), free(br), free(z), free(zr), free(z16), free(o16), free(o32);
}

/* GPT's output layer under bf16 with padded rows (ld > v, NaN between):
 * lm_head_forward's bf16 logits are its fp32 ones rounded once (up to a sum
 * across a rounding boundary) and leave the padding alone; the eval's
 * softmax_xent and the in-place lm_head_backward give the packed calls'
 * losses bit for bit and their dx, dw up to summation order; the bf16
 * dlogits' padding is 0. */
static void test_lm_head_bf16_padded(dt_backend_t be) {
  const int n = 7, c = 40, v = 300, ld = 320;
  const size_t F = sizeof(float), nin = (size_t)n * c, nw = (size_t)v * c, nv = (size_t)n * v,
               nl = (size_t)n * ld;
  char vs[24];
  snprintf(vs, sizeof vs, "%s:bf16", be->name);
  const char *desc = "n=7 c=40 v=300 ld=320";
  rng_seed(930);
  float *x = fnew(nin), *w = fnew(nw), *z = fnew(nv), *o32 = fnew(nv);
  int32_t t[7];
  fill(x, nin, -1, 1), fill(w, nw, -1, 1), fill(z, nv, -4, 4);
  for (int i = 0; i < n; i++) t[i] = (int32_t)(rng_u64() % v);
  uint16_t *z16 = bits_of(z, nv), *zp = dt_malloc(nl * 2), *o16 = dt_malloc(nl * 2);
  uint16_t *dpad = dt_malloc(nl * 2);
  for (size_t i = 0; i < nl; i++) zp[i] = 0x7FC0; /* NaN */
  for (int r = 0; r < n; r++) memcpy(zp + (size_t)r * ld, z16 + (size_t)r * v, v * 2);
  float *l[4], *gxo[2], *gwo[2];
  for (int i = 0; i < 4; i++) l[i] = fnew(n);
  for (int i = 0; i < 2; i++) gxo[i] = fnew(nin), gwo[i] = fnew(nw);
  be->set_matmul_precision(be, DT_PREC_BF16);
  devbufs d = {.be = be};
  float *dxi = dput(&d, x, nin * F), *dwt = dput(&d, w, nw * F), *ls = dput(&d, NULL, n * F);
  void *out16 = dput(&d, NULL, nl * 2), *zb = dput(&d, z16, nv * 2), *zpb = dput(&d, zp, nl * 2);
  float *out32 = dput(&d, NULL, nv * F), *gx = dput(&d, NULL, nin * F);
  float *gw = dput(&d, NULL, nw * F);
  int32_t *dt = dput(&d, t, sizeof t);
  be->k->lm_head_forward(be->ctx, out16, DT_BF16, ld, dxi, DT_F32, dwt, n, c, v);
  be->k->lm_head_forward(be->ctx, out32, DT_F32, v, dxi, DT_F32, dwt, n, c, v);
  dget(&d, o16, out16, nl * 2, "logits (bf16)"), dget(&d, o32, out32, nv * F, "logits");
  be->k->softmax_xent(be->ctx, ls, NULL, zb, DT_BF16, dt, n, v, v, 0.0f);
  dget(&d, l[0], ls, n * F, "losses");
  be->k->softmax_xent(be->ctx, ls, NULL, zpb, DT_BF16, dt, n, v, ld, 0.0f);
  dget(&d, l[1], ls, n * F, "losses");
  for (int k = 0; k < 2; k++) { /* packed, then padded; dlogits over the logits */
    be->memset0(be, gw, nw * F);
    void *lg = k ? zpb : zb;
    be->k->lm_head_backward(be->ctx, ls, gx, gw, lg, lg, DT_BF16, dt, dxi, DT_F32, dwt, n, c, v,
                            k ? ld : v, 0.5f);
    dget(&d, l[2 + k], ls, n * F, "losses"), dget(&d, gxo[k], gx, nin * F, "dx");
    dget(&d, gwo[k], gw, nw * F, "dw");
  }
  dget(&d, dpad, zpb, nl * 2, "dlogits (bf16)");
  dfree(&d, "lm_head bf16", desc);
  be->set_matmul_precision(be, DT_PREC_FP32);
  size_t off = 0, pads = 0;
  for (int r = 0; r < n; r++) {
    for (int j = 0; j < v; j++)
      off += o16[(size_t)r * ld + j] != dt_bf16_bits(o32[(size_t)r * v + j]);
    for (int j = v; j < ld; j++)
      pads += (o16[(size_t)r * ld + j] != 0xFFFF) + (dpad[(size_t)r * ld + j] != 0);
  }
  char what[128];
  snprintf(what, sizeof what, "%zu of %zu not bf16(fp32 logits), %zu bad padding elements", off,
           nv, pads);
  check_line(off <= nv / 100 + 1 && pads == 0, "lm_head_forward", vs, desc, what);
  check_same("softmax_xent", vs, desc, "padded bf16 logits: losses", l[1], l[0], n * F);
  check_same("lm_head_backward", vs, desc, "padded, in place: losses", l[3], l[2], n * F);
  cmp cm;
  cmp_init(&cm, 1e-6, 1e-5);
  cmp_ff(&cm, "dx", gxo[1], gxo[0], nin);
  cmp_ff(&cm, "dw", gwo[1], gwo[0], nw);
  check_done(&cm, "lm_head_backward", vs, "padded vs packed: dx, dw");
  for (int i = 0; i < 4; i++) free(l[i]);
  for (int i = 0; i < 2; i++) free(gxo[i]), free(gwo[i]);
  free(x), free(w), free(z), free(o32), free(z16), free(zp), free(o16), free(dpad);
}

/* linear_act_forward / linear_backward_act with bf16 outputs (inp, pre and
 * dpre in bf16, as GPT's MLP under train.precision = bf16) */
static void lact16_run(dt_backend_t be, const lact_case *lc, const lact_data *in, lact_data *o,
                       const char *desc) {
  const size_t F = sizeof(float), off = lc->off ? 4 : 0;
  const size_t nin = (size_t)lc->n * lc->c, nw = (size_t)lc->oc * lc->c,
               no = (size_t)lc->n * lc->oc;
  uint16_t *x16 = bits_of(in->inp, nin), *p16 = bits_of(in->pre_in, nin);
  uint16_t *h_out = dt_malloc(no * 2), *h_pre = dt_malloc(no * 2), *h_dpre = dt_malloc(nin * 2);
  devbufs d = {.be = be};
  void *inp = dput_at(&d, x16, nin * 2, off), *pin = dput_at(&d, p16, nin * 2, off);
  float *w = dput_at(&d, in->w, nw * F, off);
  float *b = lc->bias ? dput_at(&d, in->b, lc->oc * F, off) : NULL;
  void *out = dput_at(&d, NULL, no * 2, off);
  void *pre = lc->pre ? dput_at(&d, NULL, no * 2, off) : NULL;
  float *dout = dput_at(&d, in->dout, no * F, off);
  void *dpre = dput_at(&d, NULL, nin * 2, off);
  float *dw = lc->dw ? dput_at(&d, in->dw0, nw * F, off) : NULL;
  float *db = lc->bias ? dput_at(&d, in->db0, lc->oc * F, off) : NULL;
  be->set_matmul_precision(be, DT_PREC_BF16);
  be->k->linear_act_forward(be->ctx, lc->act, out, pre, DT_BF16, inp, DT_BF16, w, b, lc->n,
                            lc->c, lc->oc);
  be->k->linear_backward_act(be->ctx, lc->act, dpre, dw, db, dout, inp, w, pin, DT_BF16, lc->n,
                             lc->c, lc->oc);
  be->set_matmul_precision(be, DT_PREC_FP32);
  dget(&d, h_out, out, no * 2, "out");
  if (pre) dget(&d, h_pre, pre, no * 2, "pre");
  dget(&d, h_dpre, dpre, nin * 2, "dpre");
  if (dw) dget(&d, o->dw, dw, nw * F, "dw");
  if (db) dget(&d, o->db, db, lc->oc * F, "db");
  dkeep(&d, inp, x16, nin * 2, "inp");
  dkeep(&d, pin, p16, nin * 2, "pre (backward)");
  dkeep(&d, dout, in->dout, no * F, "dout");
  dfree(&d, "linear_act bf16", desc);
  float *v;
  v = values_of(h_out, no), memcpy(o->out, v, no * F), free(v);
  if (pre) v = values_of(h_pre, no), memcpy(o->pre, v, no * F), free(v);
  v = values_of(h_dpre, nin), memcpy(o->dpre, v, nin * F), free(v);
  free(x16), free(p16), free(h_out), free(h_pre), free(h_dpre);
}

/* how many of got (n) are not the bf16 rounding of want, by more than 1e-5 */
static size_t not_rounding_of(const float *got, const double *want, size_t n) {
  size_t off = 0;
  for (size_t i = 0; i < n; i++)
    off += got[i] != dt_bf16_round((float)want[i]) && fabs(got[i] - want[i]) > 1e-5;
  return off;
}

/* Against float64 on the rounded operands: s = bf16(inp) @ bf16(w)^T +
 * bf16(b), pre = s and out = act(s) each within one bf16 rounding
 * (2^-8 relative) of the sums; dpre = (bf16(dout) @ bf16(w)) * act'(pre)
 * likewise; dw += bf16(dout)^T @ inp and db += sum dout (fp32) as
 * linear_backward's. Then the GPU against the CPU within one bf16 step. */
static void test_linear_act_bf16(const lact_case *lc, int idx) {
  char desc[128];
  lact_desc(desc, sizeof desc, lc, " bf16");
  const size_t nin = (size_t)lc->n * lc->c, nw = (size_t)lc->oc * lc->c,
               no = (size_t)lc->n * lc->oc;
  lact_data in, cpu;
  lact_inputs(&in, lc, 750 + idx);
  lact_alloc(&cpu, lc);
  lact16_run(g_cpu, lc, &in, &cpu, desc);
  if (g_cpu_checks) {
    double *x = bf16_rounded(in.inp, nin), *w = bf16_rounded(in.w, nw);
    double *b = bf16_rounded(in.b, lc->oc), *g = bf16_rounded(in.dout, no);
    double *p = bf16_rounded(in.pre_in, nin), *s = dnew(no), *y = dnew(no), *dp = dnew(nin);
    ref_linear_forward(s, x, w, lc->bias ? b : NULL, lc->n, lc->c, lc->oc);
    for (size_t i = 0; i < no; i++) y[i] = ref_act(lc->act, s[i]);
    for (int i = 0; i < lc->n; i++)
      for (int k = 0; k < lc->c; k++) {
        double a = 0.0;
        for (int o = 0; o < lc->oc; o++) a += g[(size_t)i * lc->oc + o] * w[(size_t)o * lc->c + k];
        dp[(size_t)i * lc->c + k] = a * ref_act_grad(lc->act, p[(size_t)i * lc->c + k]);
      }
    double *xi = dnew(nin), *rdw = dnew(nw), *rdb = dnew(lc->oc), *g64 = todouble(in.dout, no);
    double *tw = dnew(nw), *tb = dnew(lc->oc);
    ref_linear_backward(xi, rdw, tb, g, x, w, lc->n, lc->c, lc->oc);   /* dw: rounded dout */
    ref_linear_backward(xi, tw, rdb, g64, x, w, lc->n, lc->c, lc->oc); /* db: fp32 dout */
    free(tw), free(tb);
    add_base(rdw, in.dw0, nw), add_base(rdb, in.db0, lc->oc);
    cmp c;
    cmp_init(&c, 1e-5, 1.0 / 256);
    cmp_fd(&c, "out", cpu.out, y, no);
    if (lc->pre) cmp_fd(&c, "pre", cpu.pre, s, no);
    cmp_fd(&c, "dpre", cpu.dpre, dp, nin);
    check_done(&c, "linear_act bf16", "cpu:f64", desc);
    /* and each is the float64 value's own bf16 rounding, but for the rare
     * element whose fp32 sum falls on the other side of a rounding
     * boundary (one in 10^4 or so): a bias read unrounded, or an output
     * rounded twice, moves many. (Below 1e-5, fp32's GELU of a large
     * negative input loses digits to cancellation; those do not count.) */
    size_t off = 0, tot = no + nin + (lc->pre ? no : 0);
    off += not_rounding_of(cpu.out, y, no);
    if (lc->pre) off += not_rounding_of(cpu.pre, s, no);
    off += not_rounding_of(cpu.dpre, dp, nin);
    if (off <= tot / 100 + 1) {
      printf("ok   %-20s %-9s %s  %zu of %zu outputs not the exact rounding\n", "linear_act bf16",
             "cpu:f64", desc, off, tot);
      g_pass++;
    } else {
      char why[96];
      snprintf(why, sizeof why, "%zu of %zu outputs not the exact rounding", off, tot);
      check_fail("linear_act bf16", "cpu:f64", desc, why);
    }
    cmp_init(&c, 1e-5, 1e-4);
    if (lc->dw) cmp_fd(&c, "dw", cpu.dw, rdw, nw);
    if (lc->bias) cmp_fd(&c, "db", cpu.db, rdb, lc->oc);
    if (lc->dw || lc->bias) check_done(&c, "linear_act bf16", "cpu:f64", desc);
    free(x), free(w), free(b), free(g), free(p), free(s), free(y), free(dp);
    free(xi), free(rdw), free(rdb), free(g64);
  }
  if (g_other) {
    lact_data gpu;
    lact_alloc(&gpu, lc);
    lact16_run(g_other, lc, &in, &gpu, desc);
    cmp c;
    cmp_init(&c, 1e-6, 1.0 / 128); /* one bf16 step: the fp32 sums may differ in order */
    cmp_ff(&c, "out", gpu.out, cpu.out, no);
    if (lc->pre) cmp_ff(&c, "pre", gpu.pre, cpu.pre, no);
    cmp_ff(&c, "dpre", gpu.dpre, cpu.dpre, nin);
    check_done(&c, "linear_act bf16", "cuda:cpu", desc);
    cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
    if (lc->dw) cmp_ff(&c, "dw", gpu.dw, cpu.dw, nw);
    if (lc->bias) cmp_ff(&c, "db", gpu.db, cpu.db, lc->oc);
    if (lc->dw || lc->bias) check_done(&c, "linear_act bf16", "cuda:cpu", desc);
    lact_free(&gpu);
  }
  lact_free(&in);
  lact_free(&cpu);
}

/* ------------------------------------------------------------------ */
/* softmax + cross-entropy                                            */

typedef struct xent_case {
  int n, v;
  double scale, offset; /* logits = scale * U(-1,1) + offset, rounded if scale < 0 */
} xent_case;

static const xent_case xent_cases[] = {
    {1, 1, 3, 0},   {1, 2, 3, 0},      {3, 10, 3, 0},     {7, 33, 5, 0},
    {4, 1000, 4, 0}, {2, 50257, 6, 0}, {5, 17, 30, 1000}, /* needs the max subtracted */
    {6, 9, 40, -500}, {4, 12, -2, 0}, /* integer logits: the target ties other logits */
};

typedef struct xent_out {
  float *losses, *dlogits, *losses_nograd, *dlogits_alias;
} xent_out;

/* with dlogits; with dlogits NULL; with dlogits aliasing logits */
static void xent_run(dt_backend_t be, const float *logits, const int32_t *t, int n, int v,
                     float dscale, xent_out *o, const char *desc) {
  size_t F = sizeof(float), nv = (size_t)n * v;
  devbufs d = {.be = be};
  float *x = dput(&d, logits, nv * F), *xa = dput(&d, logits, nv * F);
  int32_t *tg = dput(&d, t, n * sizeof(int32_t));
  float *loss = dput(&d, NULL, n * F), *dl = dput(&d, NULL, nv * F);
  float *loss2 = dput(&d, NULL, n * F), *loss3 = dput(&d, NULL, n * F);
  be->k->softmax_xent(be->ctx, loss, dl, x, DT_F32, tg, n, v, v, dscale);
  be->k->softmax_xent(be->ctx, loss2, NULL, x, DT_F32, tg, n, v, v, dscale);
  be->k->softmax_xent(be->ctx, loss3, xa, xa, DT_F32, tg, n, v, v, dscale);
  dget(&d, o->losses, loss, n * F, "losses");
  dget(&d, o->dlogits, dl, nv * F, "dlogits");
  dget(&d, o->losses_nograd, loss2, n * F, "losses (dlogits NULL)");
  dget(&d, o->dlogits_alias, xa, nv * F, "dlogits (aliasing logits)");
  dkeep(&d, x, logits, nv * F, "logits");
  dkeep(&d, tg, t, n * sizeof(int32_t), "targets");
  dfree(&d, "softmax_xent", desc);
}

typedef struct xent_fd {
  int n, v;
  const int32_t *t;
  double *x;
} xent_fd;
/* mean over rows of logsumexp - logit[t], in float64; dlogits too if d */
static double ref_xent(const double *x, const int32_t *t, int n, int v, double *losses,
                       double *d) {
  double total = 0.0;
  for (int i = 0; i < n; i++) {
    const double *r = x + (size_t)i * v;
    double mx = r[0], s = 0.0;
    for (int j = 1; j < v; j++) mx = r[j] > mx ? r[j] : mx;
    for (int j = 0; j < v; j++) s += exp(r[j] - mx);
    double l = log(s) + mx - r[t[i]];
    if (losses) losses[i] = l;
    total += l;
    if (d)
      for (int j = 0; j < v; j++) d[(size_t)i * v + j] = (exp(r[j] - mx) / s - (j == t[i])) / n;
  }
  return total / n;
}
static double xent_loss(void *p) {
  xent_fd *f = p;
  return ref_xent(f->x, f->t, f->n, f->v, NULL, NULL);
}

static void test_xent(const xent_case *xc, int idx) {
  int n = xc->n, v = xc->v;
  size_t nv = (size_t)n * v;
  char desc[96];
  snprintf(desc, sizeof desc, "n=%d v=%d logits=%s%g*U(-1,1)%s%+g dscale=1/n", n, v,
           xc->scale < 0 ? "round(" : "", fabs(xc->scale), xc->scale < 0 ? ")" : "", xc->offset);
  rng_seed(500 + idx);
  float *x = fnew(nv);
  int32_t *t = dt_malloc(n * sizeof *t);
  fill(x, nv, -fabs(xc->scale), fabs(xc->scale));
  for (size_t i = 0; i < nv; i++) x[i] = (xc->scale < 0 ? roundf(x[i]) : x[i]) + (float)xc->offset;
  for (int i = 0; i < n; i++) t[i] = (int32_t)(rng_u64() % v);
  float dscale = 1.0f / n;
  xent_out cpu = {fnew(n), fnew(nv), fnew(n), fnew(nv)};
  xent_run(g_cpu, x, t, n, v, dscale, &cpu, desc);

  if (g_cpu_checks) {
    xent_fd f = {n, v, t, todouble(x, nv)};
    double *rl = dnew(n), *rd = dnew(nv);
    ref_xent(f.x, t, n, v, rl, rd);
    cmp c;
    cmp_init(&c, 1e-5, 1e-5);
    cmp_fd(&c, "losses", cpu.losses, rl, n);
    cmp_fd(&c, "losses (dlogits NULL)", cpu.losses_nograd, rl, n);
    cmp_fd(&c, "dlogits", cpu.dlogits, rd, nv);
    cmp_fd(&c, "dlogits (aliasing logits)", cpu.dlogits_alias, rd, nv);
    check_done(&c, "softmax_xent", "cpu:f64", desc);
    cmp_init(&c, 1e-6, 1e-4);
    fd_grad(&c, "dlogits", xent_loss, &f, f.x, nv, cpu.dlogits, NULL);
    check_done(&c, "softmax_xent", "cpu:fd", desc);
    free(f.x), free(rl), free(rd);
  }
  if (g_other) {
    xent_out gpu = {fnew(n), fnew(nv), fnew(n), fnew(nv)};
    xent_run(g_other, x, t, n, v, dscale, &gpu, desc);
    cmp c;
    cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
    cmp_ff(&c, "losses", gpu.losses, cpu.losses, n);
    cmp_ff(&c, "losses (dlogits NULL)", gpu.losses_nograd, cpu.losses, n);
    cmp_ff(&c, "dlogits", gpu.dlogits, cpu.dlogits, nv);
    cmp_ff(&c, "dlogits (aliasing logits)", gpu.dlogits_alias, cpu.dlogits, nv);
    check_done(&c, "softmax_xent", "cuda:cpu", desc);
    free(gpu.losses), free(gpu.dlogits), free(gpu.losses_nograd), free(gpu.dlogits_alias);
  }
  free(cpu.losses), free(cpu.dlogits), free(cpu.losses_nograd), free(cpu.dlogits_alias);
  free(x), free(t);
}

/* ------------------------------------------------------------------ */
/* the output layer (lm_head_forward, lm_head_backward)              */

/* ld: the logits' row stride; ld > v pads the rows as GPT does under bf16 */
typedef struct lmh_case {
  int n, c, v, ld;
} lmh_case;
static const lmh_case lmh_cases[] = {
    {3, 8, 11, 11}, {5, 16, 50, 64}, {17, 24, 1000, 1000}, {4, 64, 50257, 50304}};

/* fwd: lm_head_forward's fp32 logits (n,ld); pads: elements of the padding
 * columns that are not as the contract says (logits untouched, dlogits 0) */
typedef struct lmh_out {
  float *losses, *dx, *dw, *fwd;
  size_t pads;
} lmh_out;

static void lmh_alloc(lmh_out *o, const lmh_case *lc) {
  *o = (lmh_out){fnew(lc->n), fnew((size_t)lc->n * lc->c), fnew((size_t)lc->v * lc->c),
                 fnew((size_t)lc->n * lc->ld), 0};
}
static void lmh_free(lmh_out *o) { free(o->losses), free(o->dx), free(o->dw), free(o->fwd); }

/* logits (n,v) given packed; the kernels get them rows ld apart with NaN
 * between, so a kernel that reads a padding column shows */
static void lmh_run(dt_backend_t be, const lmh_case *lc, const float *x, const float *w,
                    const float *logits, const int32_t *t, const float *dw0, int bf16,
                    lmh_out *o, const char *desc) {
  const size_t F = sizeof(float), nx = (size_t)lc->n * lc->c, nw = (size_t)lc->v * lc->c,
               nl = (size_t)lc->n * lc->ld;
  float *padded = fnew(nl);
  for (size_t i = 0; i < nl; i++) padded[i] = NAN;
  for (int r = 0; r < lc->n; r++)
    memcpy(padded + (size_t)r * lc->ld, logits + (size_t)r * lc->v, lc->v * F);
  devbufs d = {.be = be};
  float *xd = dput(&d, x, nx * F), *wd = dput(&d, w, nw * F), *ld = dput(&d, padded, nl * F);
  int32_t *td = dput(&d, t, lc->n * sizeof(int32_t));
  float *dwd = dput(&d, dw0, nw * F), *dxd = dput(&d, NULL, nx * F);
  float *lsd = dput(&d, NULL, lc->n * F), *scr = dput(&d, NULL, nl * F);
  float *fwd = dput(&d, NULL, nl * F);
  be->k->lm_head_forward(be->ctx, fwd, DT_F32, lc->ld, xd, DT_F32, wd, lc->n, lc->c, lc->v);
  be->k->lm_head_backward(be->ctx, lsd, dxd, dwd, scr, ld, DT_F32, td, xd, DT_F32, wd, lc->n,
                          lc->c, lc->v, lc->ld, 1.0f / lc->n);
  dget(&d, o->losses, lsd, lc->n * F, "losses");
  dget(&d, o->dx, dxd, nx * F, "dx");
  dget(&d, o->dw, dwd, nw * F, "dw");
  dget(&d, o->fwd, fwd, nl * F, "logits (forward)");
  /* scratch holds fp32 dlogits, or bf16 ones under bf16: zero either way */
  unsigned char *sc = dt_malloc(nl * F);
  dget(&d, sc, scr, nl * F, "scratch");
  const size_t esz = bf16 ? 2 : F;
  uint32_t allones;
  memset(&allones, 0xFF, sizeof allones);
  o->pads = 0;
  for (int r = 0; r < lc->n; r++)
    for (int j = lc->v; j < lc->ld; j++) {
      const size_t i = (size_t)r * lc->ld + j;
      o->pads += memcmp(&o->fwd[i], &allones, F) != 0;
      for (size_t b = 0; b < esz; b++) o->pads += sc[i * esz + b] != 0;
    }
  free(sc);
  dkeep(&d, xd, x, nx * F, "x");
  dkeep(&d, wd, w, nw * F, "w");
  dkeep(&d, ld, padded, nl * F, "logits");
  dfree(&d, "lm_head", desc);
  free(padded);
}

/* the padding columns as the contract says, as a check line */
static void lmh_check_pads(const lmh_out *o, const char *vs, const char *desc) {
  char what[128];
  snprintf(what, sizeof what, "padding columns (logits untouched, dlogits 0): %zu bad", o->pads);
  check_line(o->pads == 0, "lm_head", vs, desc, what);
}

/* the packed columns of (n,ld) rows */
static float *lmh_packed(const float *rows, const lmh_case *lc) {
  float *p = fnew((size_t)lc->n * lc->v);
  for (int r = 0; r < lc->n; r++)
    memcpy(p + (size_t)r * lc->v, rows + (size_t)r * lc->ld, lc->v * sizeof(float));
  return p;
}

typedef struct lmh_fd {
  const lmh_case *lc;
  const int32_t *t;
  double *x, *w, *lg;
} lmh_fd;
/* mean cross-entropy of x @ w^T */
static double lmh_loss(void *p) {
  lmh_fd *f = p;
  ref_linear_forward(f->lg, f->x, f->w, NULL, f->lc->n, f->lc->c, f->lc->v);
  return ref_xent(f->lg, f->t, f->lc->n, f->lc->v, NULL, NULL);
}

static void test_lm_head(const lmh_case *lc, int idx) {
  char desc[64];
  snprintf(desc, sizeof desc, "n=%d c=%d v=%d ld=%d", lc->n, lc->c, lc->v, lc->ld);
  const size_t nx = (size_t)lc->n * lc->c, nw = (size_t)lc->v * lc->c,
               nv = (size_t)lc->n * lc->v;
  rng_seed(800 + idx);
  float *x = fnew(nx), *w = fnew(nw), *lg = fnew(nv), *dw0 = fnew(nw);
  int32_t *t = dt_calloc(lc->n, sizeof *t);
  fill(x, nx, -1, 1), fill(w, nw, -1, 1), fill(dw0, nw, -1, 1);
  for (int i = 0; i < lc->n; i++) t[i] = (int32_t)(rng_u64() % (uint64_t)lc->v);
  lmh_fd f = {lc, t, todouble(x, nx), todouble(w, nw), dnew(nv)};
  lmh_loss(&f); /* the logits the kernel gets are x @ w^T */
  for (size_t i = 0; i < nv; i++) lg[i] = (float)f.lg[i];
  lmh_out cpu;
  lmh_alloc(&cpu, lc);
  lmh_run(g_cpu, lc, x, w, lg, t, dw0, 0, &cpu, desc);
  float *cfwd = lmh_packed(cpu.fwd, lc);
  if (g_cpu_checks) {
    double *rl = dnew(lc->n), *rd = dnew(nv), *lgd = todouble(lg, nv);
    double *rdx = dnew(nx), *rdw = dnew(nw), *xb = dnew(lc->v);
    ref_xent(lgd, t, lc->n, lc->v, rl, rd);
    ref_linear_backward(rdx, rdw, xb, rd, f.x, f.w, lc->n, lc->c, lc->v);
    add_base(rdw, dw0, nw);
    cmp c;
    cmp_init(&c, 1e-5, 1e-4);
    cmp_fd(&c, "logits", cfwd, f.lg, nv);
    check_done(&c, "lm_head_forward", "cpu:f64", desc);
    cmp_init(&c, 1e-5, 1e-4);
    cmp_fd(&c, "losses", cpu.losses, rl, lc->n);
    cmp_fd(&c, "dx", cpu.dx, rdx, nx);
    cmp_fd(&c, "dw", cpu.dw, rdw, nw);
    check_done(&c, "lm_head_backward", "cpu:f64", desc);
    lmh_check_pads(&cpu, "cpu", desc);
    if (lc->v <= 1000) { /* through x @ w^T: each sample is a full forward */
      cmp_init(&c, 1e-4, 1e-3);
      fd_grad(&c, "dx", lmh_loss, &f, f.x, nx, cpu.dx, NULL);
      fd_grad(&c, "dw", lmh_loss, &f, f.w, nw, cpu.dw, dw0);
      check_done(&c, "lm_head_backward", "cpu:fd", desc);
    }
    free(rl), free(rd), free(lgd), free(rdx), free(rdw), free(xb);
  }
  if (g_other) {
    for (int prec = 0; prec < 2; prec++) {
      lmh_out ref = cpu, gpu;
      lmh_alloc(&gpu, lc);
      if (prec) { /* bf16: the CPU twin in bf16 too */
        lmh_alloc(&ref, lc);
        g_cpu->set_matmul_precision(g_cpu, DT_PREC_BF16);
        g_other->set_matmul_precision(g_other, DT_PREC_BF16);
        lmh_run(g_cpu, lc, x, w, lg, t, dw0, 1, &ref, desc);
      }
      lmh_run(g_other, lc, x, w, lg, t, dw0, prec, &gpu, desc);
      g_cpu->set_matmul_precision(g_cpu, DT_PREC_FP32);
      g_other->set_matmul_precision(g_other, DT_PREC_FP32);
      const char *vs = prec ? "cuda:bf16" : "cuda:cpu";
      float *gf = lmh_packed(gpu.fwd, lc), *rf = lmh_packed(ref.fwd, lc);
      cmp c;
      cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
      cmp_ff(&c, "logits", gf, rf, nv);
      check_done(&c, "lm_head_forward", vs, desc);
      cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
      cmp_ff(&c, "losses", gpu.losses, ref.losses, lc->n);
      cmp_ff(&c, "dx", gpu.dx, ref.dx, nx);
      cmp_ff(&c, "dw", gpu.dw, ref.dw, nw);
      check_done(&c, "lm_head_backward", vs, desc);
      lmh_check_pads(&gpu, vs, desc);
      free(gf), free(rf);
      lmh_free(&gpu);
      if (prec) lmh_free(&ref);
    }
  }
  lmh_free(&cpu);
  free(cfwd);
  free(f.x), free(f.w), free(f.lg), free(x), free(w), free(lg), free(dw0), free(t);
}

/* ------------------------------------------------------------------ */
/* label-smoothed cross-entropy with ignored (negative) targets        */

typedef struct xsm_case {
  int n, v;
  double scale, eps; /* logits = scale * U(-1,1); every third target is -1 */
} xsm_case;

static const xsm_case xsm_cases[] = {
    {1, 2, 3, 0.1}, {4, 10, 3, 0.0}, {7, 33, 5, 0.1}, {6, 1000, 4, 0.2}, {3, 50257, 6, 0.1},
};

typedef struct xsm_fd {
  int n, v;
  const int32_t *t;
  double *x, eps;
} xsm_fd;
/* sum over rows of the smoothed loss / n, in float64; dlogits too if d */
static double ref_xsm(const double *x, const int32_t *t, int n, int v, double eps, double *losses,
                      double *d) {
  double total = 0.0;
  for (int i = 0; i < n; i++) {
    const double *r = x + (size_t)i * v;
    if (t[i] < 0) {
      if (losses) losses[i] = 0.0;
      if (d)
        for (int j = 0; j < v; j++) d[(size_t)i * v + j] = 0.0;
      continue;
    }
    double mx = r[0], s = 0.0, mean = 0.0;
    for (int j = 1; j < v; j++) mx = r[j] > mx ? r[j] : mx;
    for (int j = 0; j < v; j++) s += exp(r[j] - mx), mean += r[j] / v;
    double lse = log(s) + mx, l = (1 - eps) * (lse - r[t[i]]) + eps * (lse - mean);
    if (losses) losses[i] = l;
    total += l;
    if (d)
      for (int j = 0; j < v; j++)
        d[(size_t)i * v + j] = (exp(r[j] - mx) / s - (j == t[i]) * (1 - eps) - eps / v) / n;
  }
  return total / n;
}
static double xsm_loss(void *p) {
  xsm_fd *f = p;
  return ref_xsm(f->x, f->t, f->n, f->v, f->eps, NULL, NULL);
}

static void xsm_run(dt_backend_t be, const float *logits, const int32_t *t, int n, int v,
                    float dscale, float eps, xent_out *o, const char *desc) {
  size_t F = sizeof(float), nv = (size_t)n * v;
  devbufs d = {.be = be};
  float *x = dput(&d, logits, nv * F), *xa = dput(&d, logits, nv * F);
  int32_t *tg = dput(&d, t, n * sizeof(int32_t));
  float *loss = dput(&d, NULL, n * F), *dl = dput(&d, NULL, nv * F);
  float *loss2 = dput(&d, NULL, n * F), *loss3 = dput(&d, NULL, n * F);
  be->k->softmax_xent_smooth(be->ctx, loss, dl, x, DT_F32, tg, n, v, dscale, eps);
  be->k->softmax_xent_smooth(be->ctx, loss2, NULL, x, DT_F32, tg, n, v, dscale, eps);
  be->k->softmax_xent_smooth(be->ctx, loss3, xa, xa, DT_F32, tg, n, v, dscale, eps);
  dget(&d, o->losses, loss, n * F, "losses");
  dget(&d, o->dlogits, dl, nv * F, "dlogits");
  dget(&d, o->losses_nograd, loss2, n * F, "losses (dlogits NULL)");
  dget(&d, o->dlogits_alias, xa, nv * F, "dlogits (aliasing logits)");
  dkeep(&d, x, logits, nv * F, "logits");
  dkeep(&d, tg, t, n * sizeof(int32_t), "targets");
  dfree(&d, "softmax_xent_smooth", desc);
}

static void test_xsm(const xsm_case *xc, int idx) {
  int n = xc->n, v = xc->v;
  size_t nv = (size_t)n * v;
  char desc[96];
  snprintf(desc, sizeof desc, "n=%d v=%d logits=%g*U(-1,1) eps=%g ignore=every 3rd", n, v,
           xc->scale, xc->eps);
  rng_seed(700 + idx);
  float *x = fnew(nv);
  int32_t *t = dt_malloc(n * sizeof *t);
  fill(x, nv, -xc->scale, xc->scale);
  for (int i = 0; i < n; i++) t[i] = i % 3 == 2 ? -1 : (int32_t)(rng_u64() % v);
  float dscale = 1.0f / n, eps = (float)xc->eps;
  xent_out cpu = {fnew(n), fnew(nv), fnew(n), fnew(nv)};
  xsm_run(g_cpu, x, t, n, v, dscale, eps, &cpu, desc);
  if (g_cpu_checks) {
    xsm_fd f = {n, v, t, todouble(x, nv), (double)eps};
    double *rl = dnew(n), *rd = dnew(nv);
    ref_xsm(f.x, t, n, v, f.eps, rl, rd);
    cmp c;
    cmp_init(&c, 1e-5, 1e-5);
    cmp_fd(&c, "losses", cpu.losses, rl, n);
    cmp_fd(&c, "losses (dlogits NULL)", cpu.losses_nograd, rl, n);
    cmp_fd(&c, "dlogits", cpu.dlogits, rd, nv);
    cmp_fd(&c, "dlogits (aliasing logits)", cpu.dlogits_alias, rd, nv);
    check_done(&c, "softmax_xent_smooth", "cpu:f64", desc);
    cmp_init(&c, 1e-6, 1e-4);
    fd_grad(&c, "dlogits", xsm_loss, &f, f.x, nv, cpu.dlogits, NULL);
    check_done(&c, "softmax_xent_smooth", "cpu:fd", desc);
    free(f.x), free(rl), free(rd);
  }
  if (g_other) {
    xent_out gpu = {fnew(n), fnew(nv), fnew(n), fnew(nv)};
    xsm_run(g_other, x, t, n, v, dscale, eps, &gpu, desc);
    cmp c;
    cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
    cmp_ff(&c, "losses", gpu.losses, cpu.losses, n);
    cmp_ff(&c, "losses (dlogits NULL)", gpu.losses_nograd, cpu.losses, n);
    cmp_ff(&c, "dlogits", gpu.dlogits, cpu.dlogits, nv);
    cmp_ff(&c, "dlogits (aliasing logits)", gpu.dlogits_alias, cpu.dlogits, nv);
    check_done(&c, "softmax_xent_smooth", "cuda:cpu", desc);
    free(gpu.losses), free(gpu.dlogits), free(gpu.losses_nograd), free(gpu.dlogits_alias);
  }
  free(cpu.losses), free(cpu.dlogits), free(cpu.losses_nograd), free(cpu.dlogits_alias);
  free(x), free(t);
}

/* ------------------------------------------------------------------ */
/* optimizers: several steps against a float64 replay                 */

#define OPT_STEPS 3

typedef struct opt_case {
  int adam; /* 0: SGD, 1: Adam/AdamW */
  size_t n;
  float lr, b1_or_mom, b2, eps, wd, grad_scale;
  int decoupled_or_nesterov;
  int prefill; /* SGD: buf holds history and step 1 has first=0; Adam: m, v non-zero */
} opt_case;

static const opt_case opt_cases[] = {
    {0, 1001, 0.1f, 0.9f, 0, 0, 0.0f, 1.0f, 0, 0},
    {0, 257, 0.1f, 0.9f, 0, 0, 0.01f, 0.5f, 1, 0},    /* nesterov, wd, grad_scale */
    {0, 33, 0.05f, 0.0f, 0, 0, 0.1f, 1.0f, 0, 0},     /* no momentum */
    {0, 1000, 0.1f, 0.8f, 0, 0, 0.001f, 2.0f, 0, 1},  /* first=0 from step 1 */
    {0, 7, 0.1f, 0.9f, 0, 0, 0.0f, 1.0f, 1, 1},
    {1, 1001, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, 0, 0},
    {1, 1001, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, 1.0f, 1, 0},  /* AdamW */
    {1, 513, 3e-3f, 0.9f, 0.95f, 1e-6f, 0.1f, 0.25f, 0, 1},   /* Adam + L2, grad_scale */
    {1, 9, 1e-2f, 0.8f, 0.99f, 1e-8f, 0.01f, 4.0f, 1, 1},
};

typedef struct opt_hist {
  float *p, *s1, *s2; /* (OPT_STEPS, n): p, buf or m, v after each step */
} opt_hist;

static void opt_run(dt_backend_t be, const opt_case *oc, const float *p0, const float *s10,
                    const float *s20, const float *g, opt_hist *h, const char *op,
                    const char *desc) {
  size_t F = sizeof(float), n = oc->n;
  devbufs d = {.be = be};
  float *p = dput(&d, p0, n * F), *s1 = dput(&d, s10, n * F), *s2 = dput(&d, s20, n * F);
  float *gd = dput(&d, NULL, n * F);
  for (int t = 1; t <= OPT_STEPS; t++) {
    const float *gt = g + (t - 1) * n;
    be->h2d(be, gd, gt, n * F);
    if (oc->adam)
      be->k->adam_step(be->ctx, p, gd, s1, s2, n, oc->lr, oc->b1_or_mom, oc->b2, oc->eps,
                       oc->wd, oc->decoupled_or_nesterov, t, oc->grad_scale);
    else
      be->k->sgd_step(be->ctx, p, gd, s1, n, oc->lr, oc->b1_or_mom, oc->wd,
                      oc->decoupled_or_nesterov, t == 1 && !oc->prefill, oc->grad_scale);
    dget(&d, h->p + (t - 1) * n, p, n * F, "p");
    dget(&d, h->s1 + (t - 1) * n, s1, n * F, oc->adam ? "m" : "buf");
    dget(&d, h->s2 + (t - 1) * n, s2, n * F, oc->adam ? "v" : "(unused)");
    dkeep(&d, gd, gt, n * F, "g");
  }
  dfree(&d, op, desc);
}

/* one step of the documented update in float64 */
static void ref_opt_step(const opt_case *oc, double *p, const float *g, double *s1, double *s2,
                         int t) {
  double lr = oc->lr, wd = oc->wd, gs = oc->grad_scale, mom = oc->b1_or_mom;
  for (size_t i = 0; i < oc->n; i++) {
    double gi = g[i] * gs;
    if (!oc->adam) {
      gi += wd * p[i];
      s1[i] = (t == 1 && !oc->prefill) ? gi : mom * s1[i] + gi;
      p[i] -= lr * (oc->decoupled_or_nesterov ? gi + mom * s1[i] : s1[i]);
      continue;
    }
    double b1 = oc->b1_or_mom, b2 = oc->b2;
    if (!oc->decoupled_or_nesterov) gi += wd * p[i];
    s1[i] = b1 * s1[i] + (1 - b1) * gi;
    s2[i] = b2 * s2[i] + (1 - b2) * gi * gi;
    if (oc->decoupled_or_nesterov) p[i] -= lr * wd * p[i];
    p[i] -= lr * (s1[i] / (1 - pow(b1, t))) / (sqrt(s2[i] / (1 - pow(b2, t))) + oc->eps);
  }
}

static void test_opt(const opt_case *oc, int idx) {
  size_t n = oc->n;
  char desc[160];
  const char *op = oc->adam ? "adam_step" : "sgd_step";
  if (oc->adam)
    snprintf(desc, sizeof desc, "n=%zu lr=%g b1=%g b2=%g eps=%g wd=%g %s grad_scale=%g%s t=1..%d",
             n, oc->lr, oc->b1_or_mom, oc->b2, oc->eps, oc->wd,
             oc->decoupled_or_nesterov ? "adamw" : "adam", oc->grad_scale,
             oc->prefill ? " m,v!=0" : "", OPT_STEPS);
  else
    snprintf(desc, sizeof desc, "n=%zu lr=%g momentum=%g wd=%g nesterov=%d grad_scale=%g first=%d t=1..%d",
             n, oc->lr, oc->b1_or_mom, oc->wd, oc->decoupled_or_nesterov, oc->grad_scale,
             !oc->prefill, OPT_STEPS);
  rng_seed(600 + idx);
  float *p0 = fnew(n), *s10 = fnew(n), *s20 = fnew(n), *g = fnew(OPT_STEPS * n);
  fill(p0, n, -1, 1), fill(g, OPT_STEPS * n, -1, 1);
  if (oc->prefill) fill(s10, n, -0.5, 0.5), fill(s20, n, 0, 0.5);
  if (!oc->adam && !oc->prefill) fill(s10, n, -9, 9); /* first=1 must ignore it */
  opt_hist cpu = {fnew(OPT_STEPS * n), fnew(OPT_STEPS * n), fnew(OPT_STEPS * n)};
  opt_run(g_cpu, oc, p0, s10, s20, g, &cpu, op, desc);

  if (g_cpu_checks) {
    double *p = todouble(p0, n), *s1 = todouble(s10, n), *s2 = todouble(s20, n);
    cmp c;
    cmp_init(&c, 1e-6, 1e-5);
    for (int t = 1; t <= OPT_STEPS; t++) {
      ref_opt_step(oc, p, g + (t - 1) * n, s1, s2, t);
      cmp_fd(&c, "p", cpu.p + (t - 1) * n, p, n);
      cmp_fd(&c, oc->adam ? "m" : "buf", cpu.s1 + (t - 1) * n, s1, n);
      if (oc->adam) cmp_fd(&c, "v", cpu.s2 + (t - 1) * n, s2, n);
    }
    check_done(&c, op, "cpu:f64", desc);
    free(p), free(s1), free(s2);
  }
  if (g_other) {
    opt_hist gpu = {fnew(OPT_STEPS * n), fnew(OPT_STEPS * n), fnew(OPT_STEPS * n)};
    opt_run(g_other, oc, p0, s10, s20, g, &gpu, op, desc);
    cmp c;
    cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
    cmp_ff(&c, "p", gpu.p, cpu.p, OPT_STEPS * n);
    cmp_ff(&c, oc->adam ? "m" : "buf", gpu.s1, cpu.s1, OPT_STEPS * n);
    if (oc->adam) cmp_ff(&c, "v", gpu.s2, cpu.s2, OPT_STEPS * n);
    check_done(&c, op, "cuda:cpu", desc);
    free(gpu.p), free(gpu.s1), free(gpu.s2);
  }
  free(cpu.p), free(cpu.s1), free(cpu.s2);
  free(p0), free(s10), free(s20), free(g);
}

/* ------------------------------------------------------------------ */
/* sumsq, scale, gather_u8_normalize                                  */

typedef struct reduce_case {
  size_t n;
  double range;
} reduce_case;

static const reduce_case reduce_cases[] = {
    {1, 1}, {1000, 1}, {4097, 1e3}, {(1u << 20) + 3, 1},
};

static void test_reduce(const reduce_case *rc, int idx) {
  size_t n = rc->n, F = sizeof(float);
  const float a = -0.37f;
  char desc[64];
  snprintf(desc, sizeof desc, "n=%zu x=U(-%g,%g) a=%g", n, rc->range, rc->range, a);
  rng_seed(700 + idx);
  float *x = fnew(n);
  fill(x, n, -rc->range, rc->range);
  float res[2][1];
  float *scaled[2] = {fnew(n), fnew(n)};
  float *ys[2] = {fnew(n), fnew(n)};
  float *y0 = fnew(n);
  fill(y0, n, -rc->range, rc->range);
  dt_backend_t bes[2] = {g_cpu, g_other};
  for (int b = 0; b < 2 && bes[b]; b++) {
    devbufs d = {.be = bes[b]};
    float *xd = dput(&d, x, n * F), *out = dput(&d, NULL, F), *xs = dput(&d, x, n * F);
    bes[b]->k->sumsq(bes[b]->ctx, out, xd, n);
    bes[b]->k->scale(bes[b]->ctx, xs, a, n);
    float *yd = dput(&d, y0, n * F);
    bes[b]->k->axpy(bes[b]->ctx, yd, a, xd, n);
    dget(&d, ys[b], yd, n * F, "y (axpy)");
    dget(&d, res[b], out, F, "sumsq out");
    dget(&d, scaled[b], xs, n * F, "x (scaled)");
    dkeep(&d, xd, x, n * F, "x");
    dfree(&d, "sumsq/scale", desc);
  }
  if (g_cpu_checks) {
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    cmp c;
    cmp_init(&c, 0.0, 1e-6);
    cmp_one(&c, "out", 0, res[0][0], ss);
    check_done(&c, "sumsq", "cpu:f64", desc);
    cmp_init(&c, 0.0, 1.2e-7); /* one correctly rounded multiply */
    for (size_t i = 0; i < n; i++) cmp_one(&c, "x", i, scaled[0][i], (double)x[i] * a);
    check_done(&c, "scale", "cpu:f64", desc);
    cmp_init(&c, 0.0, 1.2e-7); /* one correctly rounded fused multiply-add */
    for (size_t i = 0; i < n; i++) cmp_one(&c, "y", i, ys[0][i], fma((double)a, x[i], y0[i]));
    check_done(&c, "axpy", "cpu:f64", desc);
  }
  if (g_other) {
    cmp c;
    cmp_init(&c, 0.0, 1e-5); /* summation order differs */
    cmp_one(&c, "out", 0, res[1][0], res[0][0]);
    check_done(&c, "sumsq", "cuda:cpu", desc);
    cmp_init(&c, 0.0, 0.0);
    cmp_ff(&c, "x", scaled[1], scaled[0], n);
    check_done(&c, "scale", "cuda:cpu", desc);
    cmp_init(&c, 0.0, 0.0);
    cmp_ff(&c, "y", ys[1], ys[0], n);
    check_done(&c, "axpy", "cuda:cpu", desc);
  }
  free(x), free(scaled[0]), free(scaled[1]), free(ys[0]), free(ys[1]), free(y0);
}

/* x rounded to bf16 in float64, from its fields rather than bit tricks:
 * the significand scaled to 8 bits and rounded half to even by rint, then
 * overflow past bf16's largest finite value (0x7f7f) to infinity. For fp32
 * normals, zeros, infinities and NaN, which are what the test feeds it. */
static double ref_bf16(float x) {
  if (!isfinite(x) || x == 0.0f) return x;
  int e;
  const double m = frexp((double)x, &e); /* |m| in [0.5, 1) */
  const double r = ldexp(rint(ldexp(m, 8)), e - 8);
  return fabs(r) > 0x1.fep127 ? copysign(INFINITY, r) : r;
}

/* bf16 bit pattern h as a double, from sign, exponent and significand */
static double bf16_fields(uint16_t h) {
  const int s = h >> 15, e = (h >> 7) & 0xff, m = h & 0x7f;
  double v = e == 0xff ? (m ? NAN : INFINITY)
             : e == 0  ? ldexp(m, -133)
                       : ldexp(128 + m, e - 134);
  return s ? -v : v;
}

/* to_bf16 / from_bf16: the rounding of gradients sent as bf16 and their
 * widening back. Rounding and widening are exact operations with one right
 * answer, so every backend must give the float64 reference's bits (no
 * finite differences: the rounding's derivative is not a useful check). */
static void test_bf16_cast(size_t n, double range, int idx) {
  char desc[64];
  snprintf(desc, sizeof desc, "n=%zu x=U(-%g,%g)+edges", n, range, range);
  rng_seed(750 + idx);
  float *x = fnew(n), *y0 = fnew(n);
  fill(x, n, -range, range);
  fill(y0, n, -range, range);
  /* ties to even both ways, the largest finite bf16, overflow to inf,
   * signed zero, infinities, NaN, tiny normals */
  const float edges[] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -1.0f - 0x1p-8f, 0x1.fep127f,
                         0x1.ffp127f,    FLT_MAX,            -0.0f,           INFINITY,
                         -INFINITY,      NAN,                0x1p-126f,       -3.0e-38f};
  for (size_t i = 0; i < DT_ARRAY_LEN(edges) && i < n; i++) x[i] = edges[i];
  uint16_t *bits[2] = {dt_calloc(n, 2), dt_calloc(n, 2)};
  float *wide[2] = {fnew(n), fnew(n)}, *acc[2] = {fnew(n), fnew(n)};
  dt_backend_t bes[2] = {g_cpu, g_other};
  for (int b = 0; b < 2 && bes[b]; b++) {
    devbufs d = {.be = bes[b]};
    float *xd = dput(&d, x, n * 4), *wd = dput(&d, NULL, n * 4), *ad = dput(&d, y0, n * 4);
    uint16_t *hd = dput(&d, NULL, n * 2);
    bes[b]->k->to_bf16(bes[b]->ctx, hd, xd, n);
    bes[b]->k->from_bf16(bes[b]->ctx, wd, hd, n, 0);
    bes[b]->k->from_bf16(bes[b]->ctx, ad, hd, n, 1);
    dget(&d, bits[b], hd, n * 2, "dst (to_bf16)");
    dget(&d, wide[b], wd, n * 4, "y (from_bf16)");
    dget(&d, acc[b], ad, n * 4, "y (from_bf16 accumulate)");
    dkeep(&d, xd, x, n * 4, "src");
    dfree(&d, "to_bf16/from_bf16", desc);
  }
  if (g_cpu_checks) {
    cmp c;
    cmp_init(&c, 0.0, 0.0);
    for (size_t i = 0; i < n; i++) cmp_one(&c, "dst", i, bf16_fields(bits[0][i]), ref_bf16(x[i]));
    check_done(&c, "to_bf16", "cpu:f64", desc);
    cmp_init(&c, 0.0, 0.0);
    for (size_t i = 0; i < n; i++) cmp_one(&c, "y", i, wide[0][i], bf16_fields(bits[0][i]));
    check_done(&c, "from_bf16", "cpu:f64", desc);
    cmp_init(&c, 0.0, 0.0); /* one correctly rounded fp32 add */
    for (size_t i = 0; i < n; i++)
      cmp_one(&c, "y", i, acc[0][i], (float)((double)y0[i] + bf16_fields(bits[0][i])));
    check_done(&c, "from_bf16 (+=)", "cpu:f64", desc);
  }
  if (g_other) {
    size_t diff = 0, first = 0;
    for (size_t i = n; i-- > 0;)
      if (bits[1][i] != bits[0][i] && !(isnan(x[i]) && (bits[1][i] & 0x7fff) > 0x7f80))
        diff++, first = i;
    char what[96];
    snprintf(what, sizeof what, "%zu of %zu bit patterns differ (first at %zu)", diff, n, first);
    check_line(diff == 0, "to_bf16", "cuda:cpu", desc, diff ? what : "bit-identical");
    cmp c;
    cmp_init(&c, 0.0, 0.0);
    cmp_ff(&c, "y", wide[1], wide[0], n);
    check_done(&c, "from_bf16", "cuda:cpu", desc);
    cmp_init(&c, 0.0, 0.0);
    cmp_ff(&c, "y", acc[1], acc[0], n);
    check_done(&c, "from_bf16 (+=)", "cuda:cpu", desc);
  }
  free(x), free(y0), free(bits[0]), free(bits[1]);
  free(wide[0]), free(wide[1]), free(acc[0]), free(acc[1]);
}

typedef struct gather_case {
  int m, row, n;
  float mean, std;
} gather_case;

static const gather_case gather_cases[] = {
    {12, 784, 9, 0.1307f, 0.3081f}, {5, 13, 7, 0.0f, 1.0f}, {3, 1, 4, 0.5f, 0.5f},
    {64, 3072, 33, 0.45f, 0.22f},
};

static void test_gather(const gather_case *gc, int idx) {
  size_t F = sizeof(float), no = (size_t)gc->n * gc->row, ns = (size_t)gc->m * gc->row;
  char desc[96];
  snprintf(desc, sizeof desc, "m=%d row=%d n=%d mean=%g std=%g", gc->m, gc->row, gc->n, gc->mean,
           gc->std);
  rng_seed(800 + idx);
  uint8_t *src = dt_malloc(ns);
  int32_t *ix = dt_malloc(gc->n * sizeof *ix);
  for (size_t i = 0; i < ns; i++) src[i] = (uint8_t)(rng_u64() & 255);
  src[0] = 0, src[ns - 1] = 255;
  for (int i = 0; i < gc->n; i++) ix[i] = (int32_t)(rng_u64() % gc->m); /* repeats allowed */
  ix[0] = gc->m - 1;
  float *out[2] = {fnew(no), fnew(no)};
  dt_backend_t bes[2] = {g_cpu, g_other};
  for (int b = 0; b < 2 && bes[b]; b++) {
    devbufs d = {.be = bes[b]};
    uint8_t *sd = dput(&d, src, ns);
    int32_t *id = dput(&d, ix, gc->n * sizeof *ix);
    float *od = dput(&d, NULL, no * F);
    bes[b]->k->gather_u8_normalize(bes[b]->ctx, od, sd, id, gc->n, gc->row, gc->mean, gc->std);
    dget(&d, out[b], od, no * F, "out");
    dkeep(&d, sd, src, ns, "src");
    dkeep(&d, id, ix, gc->n * sizeof *ix, "idx");
    dfree(&d, "gather_u8_normalize", desc);
  }
  if (g_cpu_checks) {
    cmp c;
    cmp_init(&c, 1e-6, 1e-6);
    for (size_t i = 0; i < no; i++) {
      double s = src[(size_t)ix[i / gc->row] * gc->row + i % gc->row];
      cmp_one(&c, "out", i, out[0][i], (s / 255.0 - gc->mean) / gc->std);
    }
    check_done(&c, "gather_u8_normalize", "cpu:f64", desc);
  }
  if (g_other) {
    cmp c;
    cmp_init(&c, 0.0, 0.0);
    cmp_ff(&c, "out", out[1], out[0], no);
    check_done(&c, "gather_u8_normalize", "cuda:cpu", desc);
  }
  free(src), free(ix), free(out[0]), free(out[1]);
}

/* ------------------------------------------------------------------ */
/* layer norm, plain and fused with the residual add                   */

typedef struct ln_case {
  int n, c;
  float eps;
  double offset; /* inp = U(-2,2) + offset: a large mean tests the statistics */
} ln_case;

static const ln_case ln_cases[] = {
    {1, 1, 1e-5f, 0},  {3, 7, 1e-5f, 0},      {17, 64, 1e-5f, 0},   {5, 768, 1e-5f, 0},
    {4, 1600, 1e-5f, 0}, {6, 33, 1e-6f, 100}, {9, 300, 1e-1f, -3},
    {1300, 40, 1e-5f, 0}, /* the GPU's dweight, dbias: 6 row groups */
};

/* inputs first (a, r: the residual pair; *0: what the += gradients hold
 * before), then outputs; res_alias is a's buffer updated in place */
enum { LN_INP, LN_W, LN_B, LN_DOUT, LN_A, LN_R, LN_DINP0, LN_DW0, LN_DB0, LN_NIN,
       LN_OUT = LN_NIN, LN_MEAN, LN_RSTD, LN_OUT_NOSTATS, LN_DINP, LN_DW, LN_DB, LN_RES,
       LN_ROUT, LN_RMEAN, LN_RRSTD, LN_RES_ALIAS, LN_ROUT_ALIAS, LN_NBUF };
static const char *ln_name[LN_NBUF] = {
    "inp", "weight", "bias", "dout", "a", "b", "dinp0", "dweight0", "dbias0", "out", "mean",
    "rstd", "out (mean,rstd NULL)", "dinp", "dweight", "dbias", "res_out", "out (residual)",
    "mean (residual)", "rstd (residual)", "res_out (aliasing a)", "out (res_out aliasing a)"};

static size_t ln_count(int i, const ln_case *lc) {
  size_t nc = (size_t)lc->n * lc->c;
  switch (i) {
  case LN_W: case LN_B: case LN_DW0: case LN_DB0: case LN_DW: case LN_DB: return lc->c;
  case LN_MEAN: case LN_RSTD: case LN_RMEAN: case LN_RRSTD: return lc->n;
  default: return nc;
  }
}
static void ln_alloc(float **x, const ln_case *lc) {
  for (int i = 0; i < LN_NBUF; i++) x[i] = fnew(ln_count(i, lc));
}
static void ln_free(float **x) {
  for (int i = 0; i < LN_NBUF; i++) free(x[i]);
}

static void ln_run(dt_backend_t be, const ln_case *lc, float **in, float **o, const char *desc) {
  const int n = lc->n, c = lc->c;
  size_t F = sizeof(float);
  devbufs d = {.be = be};
  float *p[LN_NBUF];
  for (int i = 0; i < LN_NBUF; i++) {
    const float *init = i < LN_NIN ? in[i] : NULL;
    if (i == LN_DINP) init = in[LN_DINP0]; /* the += outputs start pre-filled */
    if (i == LN_DW) init = in[LN_DW0];
    if (i == LN_DB) init = in[LN_DB0];
    if (i == LN_RES_ALIAS) init = in[LN_A];
    p[i] = dput(&d, init, ln_count(i, lc) * F);
  }
  const dt_kernels *k = be->k;
  k->layernorm_forward(be->ctx, p[LN_OUT], DT_F32, p[LN_MEAN], p[LN_RSTD], p[LN_INP], p[LN_W],
                       p[LN_B], n, c, lc->eps);
  k->layernorm_forward(be->ctx, p[LN_OUT_NOSTATS], DT_F32, NULL, NULL, p[LN_INP], p[LN_W],
                       p[LN_B], n, c, lc->eps);
  k->layernorm_backward(be->ctx, p[LN_DINP], p[LN_DW], p[LN_DB], p[LN_DOUT], p[LN_INP],
                        p[LN_W], p[LN_MEAN], p[LN_RSTD], n, c);
  k->residual_layernorm_forward(be->ctx, p[LN_RES], p[LN_ROUT], DT_F32, p[LN_RMEAN],
                                p[LN_RRSTD], p[LN_A], p[LN_R], p[LN_W], p[LN_B], n, c, lc->eps);
  k->residual_layernorm_forward(be->ctx, p[LN_RES_ALIAS], p[LN_ROUT_ALIAS], DT_F32, NULL, NULL,
                                p[LN_RES_ALIAS], p[LN_R], p[LN_W], p[LN_B], n, c, lc->eps);
  for (int i = 0; i < LN_NBUF; i++) {
    if (i < LN_DINP0) dkeep(&d, p[i], in[i], ln_count(i, lc) * F, ln_name[i]);
    else if (i >= LN_NIN) dget(&d, o[i], p[i], ln_count(i, lc) * F, ln_name[i]);
  }
  dfree(&d, "layernorm", desc);
}

/* out, mean, rstd (each may be NULL) of x (N,C) in float64 */
static void ref_ln(double *out, double *mean, double *rstd, const double *x, const double *w,
                   const double *b, int n, int c, double eps) {
  for (int i = 0; i < n; i++) {
    const double *r = x + (size_t)i * c;
    double m = 0.0, v = 0.0;
    for (int j = 0; j < c; j++) m += r[j];
    m /= c;
    for (int j = 0; j < c; j++) v += (r[j] - m) * (r[j] - m);
    double s = 1.0 / sqrt(v / c + eps);
    if (mean) mean[i] = m;
    if (rstd) rstd[i] = s;
    if (out)
      for (int j = 0; j < c; j++) out[(size_t)i * c + j] = (r[j] - m) * s * w[j] + b[j];
  }
}
/* overwrites dinp, dw, db; statistics recomputed from x */
static void ref_ln_backward(double *dinp, double *dw, double *db, const double *dout,
                            const double *x, const double *w, int n, int c, double eps) {
  memset(dw, 0, sizeof(double) * c);
  memset(db, 0, sizeof(double) * c);
  for (int i = 0; i < n; i++) {
    const double *r = x + (size_t)i * c, *dy = dout + (size_t)i * c;
    double m, s, a = 0.0, bx = 0.0;
    ref_ln(NULL, &m, &s, r, w, NULL, 1, c, eps);
    for (int j = 0; j < c; j++) {
      a += w[j] * dy[j];
      bx += w[j] * dy[j] * (r[j] - m) * s;
    }
    for (int j = 0; j < c; j++) {
      double xhat = (r[j] - m) * s;
      dinp[(size_t)i * c + j] = (w[j] * dy[j] - a / c - xhat * bx / c) * s;
      dw[j] += dy[j] * xhat;
      db[j] += dy[j];
    }
  }
}

typedef struct ln_fd {
  const ln_case *lc;
  double *x, *w, *b, *dout, *out;
} ln_fd;
static double ln_loss(void *p) {
  ln_fd *f = p;
  ref_ln(f->out, NULL, NULL, f->x, f->w, f->b, f->lc->n, f->lc->c, f->lc->eps);
  return dot(f->out, f->dout, (size_t)f->lc->n * f->lc->c);
}

static void ln_check_f64(const ln_case *lc, float **in, float **cpu, const char *desc) {
  const int n = lc->n, c = lc->c;
  size_t nc = (size_t)n * c;
  ln_fd f = {lc, todouble(in[LN_INP], nc), todouble(in[LN_W], c), todouble(in[LN_B], c),
             todouble(in[LN_DOUT], nc), dnew(nc)};
  double *m = dnew(n), *s = dnew(n), *rd = dnew(nc), *rw = dnew(c), *rb = dnew(c);
  cmp cm;
  ref_ln(f.out, m, s, f.x, f.w, f.b, n, c, lc->eps);
  cmp_init(&cm, 1e-5, 1e-5);
  cmp_fd(&cm, "out", cpu[LN_OUT], f.out, nc);
  cmp_fd(&cm, "out (mean,rstd NULL)", cpu[LN_OUT_NOSTATS], f.out, nc);
  cmp_fd(&cm, "mean", cpu[LN_MEAN], m, n);
  cmp_fd(&cm, "rstd", cpu[LN_RSTD], s, n);
  check_done(&cm, "layernorm_forward", "cpu:f64", desc);

  ref_ln_backward(rd, rw, rb, f.dout, f.x, f.w, n, c, lc->eps);
  add_base(rd, in[LN_DINP0], nc), add_base(rw, in[LN_DW0], c), add_base(rb, in[LN_DB0], c);
  cmp_init(&cm, 1e-5, 1e-4);
  cmp_fd(&cm, "dinp", cpu[LN_DINP], rd, nc);
  cmp_fd(&cm, "dweight", cpu[LN_DW], rw, c);
  cmp_fd(&cm, "dbias", cpu[LN_DB], rb, c);
  check_done(&cm, "layernorm_backward", "cpu:f64", desc);

  cmp_init(&cm, 1e-4, 1e-3);
  fd_grad(&cm, "dinp", ln_loss, &f, f.x, nc, cpu[LN_DINP], in[LN_DINP0]);
  fd_grad(&cm, "dweight", ln_loss, &f, f.w, c, cpu[LN_DW], in[LN_DW0]);
  fd_grad(&cm, "dbias", ln_loss, &f, f.b, c, cpu[LN_DB], in[LN_DB0]);
  check_done(&cm, "layernorm_backward", "cpu:fd", desc);

  /* residual: one fp32 add, then the norm of exactly that sum */
  cmp_init(&cm, 0.0, 0.0);
  for (size_t i = 0; i < nc; i++) {
    float sum = in[LN_A][i] + in[LN_R][i];
    cmp_one(&cm, "res_out", i, cpu[LN_RES][i], sum);
    cmp_one(&cm, "res_out (aliasing a)", i, cpu[LN_RES_ALIAS][i], sum);
  }
  double *res = todouble(cpu[LN_RES], nc);
  ref_ln(f.out, m, s, res, f.w, f.b, n, c, lc->eps);
  cm.atol = 1e-5, cm.rtol = 1e-5; /* keeps the exact res_out results above */
  cmp_fd(&cm, "out (residual)", cpu[LN_ROUT], f.out, nc);
  cmp_fd(&cm, "out (res_out aliasing a)", cpu[LN_ROUT_ALIAS], f.out, nc);
  cmp_fd(&cm, "mean (residual)", cpu[LN_RMEAN], m, n);
  cmp_fd(&cm, "rstd (residual)", cpu[LN_RRSTD], s, n);
  check_done(&cm, "residual_layernorm_fwd", "cpu:f64", desc);
  free(res), free(f.x), free(f.w), free(f.b), free(f.dout), free(f.out);
  free(m), free(s), free(rd), free(rw), free(rb);
}

static void test_ln(const ln_case *lc, int idx) {
  char desc[96];
  snprintf(desc, sizeof desc, "n=%d c=%d eps=%g inp=U(-2,2)%+g", lc->n, lc->c, lc->eps,
           lc->offset);
  rng_seed(900 + idx);
  float *in[LN_NBUF], *cpu[LN_NBUF];
  ln_alloc(in, lc), ln_alloc(cpu, lc);
  for (int i = 0; i < LN_NIN; i++) fill(in[i], ln_count(i, lc), -1, 1);
  fill(in[LN_INP], ln_count(LN_INP, lc), lc->offset - 2, lc->offset + 2);
  fill(in[LN_A], ln_count(LN_A, lc), lc->offset - 2, lc->offset + 2);
  fill(in[LN_W], lc->c, 0.5, 1.5);
  ln_run(g_cpu, lc, in, cpu, desc);
  if (g_cpu_checks) ln_check_f64(lc, in, cpu, desc);
  if (g_other) {
    float *gpu[LN_NBUF];
    ln_alloc(gpu, lc);
    ln_run(g_other, lc, in, gpu, desc);
    static const int fwd[] = {LN_OUT, LN_MEAN, LN_RSTD, LN_OUT_NOSTATS};
    static const int bwd[] = {LN_DINP, LN_DW, LN_DB};
    static const int res[] = {LN_RES, LN_ROUT, LN_RMEAN, LN_RRSTD, LN_RES_ALIAS, LN_ROUT_ALIAS};
    cmp cm;
    cmp_init(&cm, TWIN_ATOL, TWIN_RTOL);
    for (size_t i = 0; i < DT_ARRAY_LEN(fwd); i++)
      cmp_ff(&cm, ln_name[fwd[i]], gpu[fwd[i]], cpu[fwd[i]], ln_count(fwd[i], lc));
    check_done(&cm, "layernorm_forward", "cuda:cpu", desc);
    cmp_init(&cm, TWIN_ATOL, TWIN_RTOL);
    for (size_t i = 0; i < DT_ARRAY_LEN(bwd); i++)
      cmp_ff(&cm, ln_name[bwd[i]], gpu[bwd[i]], cpu[bwd[i]], ln_count(bwd[i], lc));
    check_done(&cm, "layernorm_backward", "cuda:cpu", desc);
    cmp_init(&cm, TWIN_ATOL, TWIN_RTOL);
    for (size_t i = 0; i < DT_ARRAY_LEN(res); i++)
      cmp_ff(&cm, ln_name[res[i]], gpu[res[i]], cpu[res[i]], ln_count(res[i], lc));
    check_done(&cm, "residual_layernorm_fwd", "cuda:cpu", desc);
    ln_free(gpu);
  }
  ln_free(in), ln_free(cpu);
}

/* ------------------------------------------------------------------ */
/* attention                                                          */

/* Where q, k, v live: separate tensors; views into one fused (B,T,3,NH,HS)
 * qkv buffer; q alone and k, v in one fused (B,Tk,2,NH,HS) buffer; or each
 * inside a wider row with untouched elements on both sides. */
typedef enum att_layout { ATT_SEP, ATT_QKV, ATT_KV, ATT_GAP } att_layout;
static const char *att_layout_name[] = {"separate", "fused-qkv", "fused-kv", "gaps"};

typedef struct att_case {
  int B, Tq, Tk, NH, HS, causal;
  int padded; /* key_len: b=0 partial, b=1 zero (a fully masked batch), b=2 > Tk, then random */
  att_layout layout;
  int fd;     /* run finite differences (small cases) */
} att_case;

static const att_case att_cases[] = {
    {1, 4, 4, 1, 8, 1, 0, ATT_SEP, 1},
    {2, 7, 7, 3, 50, 1, 0, ATT_QKV, 1},    /* GPT-1.6B's head size */
    {2, 9, 9, 2, 64, 1, 0, ATT_QKV, 1},
    {1, 5, 5, 2, 80, 1, 0, ATT_SEP, 1},
    {2, 6, 6, 1, 128, 1, 0, ATT_QKV, 1},
    {3, 8, 8, 2, 16, 0, 1, ATT_QKV, 1},    /* padded encoder self-attention */
    {2, 5, 11, 2, 24, 0, 1, ATT_KV, 1},    /* cross-attention, Tq < Tk, padded source */
    {2, 13, 6, 3, 32, 0, 0, ATT_GAP, 1},   /* Tq > Tk */
    {3, 4, 9, 2, 16, 1, 1, ATT_GAP, 1},    /* causal, bottom-right, with padding */
    {1, 9, 5, 1, 8, 1, 0, ATT_SEP, 1},     /* causal, Tq > Tk: the first rows see nothing */
    {1, 200, 200, 2, 64, 1, 0, ATT_QKV, 0}, /* several key tiles on the GPU */
    {3, 150, 150, 1, 50, 0, 1, ATT_QKV, 0},
    {2, 3, 300, 2, 80, 0, 1, ATT_KV, 0},
    /* the tiled GPU kernels' edges: 64-row tiles, full and partial, causal
     * bottom-right across tiles, the largest tiled head size */
    {2, 130, 130, 2, 128, 1, 0, ATT_QKV, 0},
    {1, 70, 150, 2, 64, 1, 1, ATT_GAP, 0},
    {2, 64, 64, 1, 50, 1, 0, ATT_SEP, 0},
    {1, 129, 65, 1, 16, 1, 0, ATT_SEP, 0}, /* Tq > Tk: a whole tile sees nothing */
    {1, 33, 40, 2, 129, 0, 1, ATT_KV, 0},  /* past the tiled kernels: attention.cu */
};

/* buffer, offset (in rows of C = NH*HS) of q, k, v; width (in C) of each buffer */
typedef struct att_place {
  int buf[3], off[3], width[3], nbuf;
} att_place;
static att_place att_places(att_layout l) {
  switch (l) {
  case ATT_QKV: return (att_place){{0, 0, 0}, {0, 1, 2}, {3, 0, 0}, 1};
  case ATT_KV: return (att_place){{0, 1, 1}, {0, 0, 1}, {1, 2, 0}, 2};
  case ATT_GAP: return (att_place){{0, 1, 2}, {1, 1, 2}, {2, 3, 3}, 3};
  default: return (att_place){{0, 1, 2}, {0, 0, 0}, {1, 1, 1}, 3};
  }
}

#define ATT_STALE (-777.0f) /* what dq/dk/dv buffers hold before the backward */

typedef struct att_geom {
  const att_case *ac;
  att_place pl;
  int C;
  size_t nt[3];   /* logical elements of q, k, v */
  size_t nb[3];   /* elements of each buffer */
  size_t no, nl;  /* out, lse */
} att_geom;

static att_geom att_geom_init(const att_case *ac) {
  att_geom g = {ac, att_places(ac->layout), ac->NH * ac->HS, {0}, {0}, 0, 0};
  g.nt[0] = (size_t)ac->B * ac->Tq * g.C;
  g.nt[1] = g.nt[2] = (size_t)ac->B * ac->Tk * g.C;
  for (int x = 0; x < 3; x++) {
    int bi = g.pl.buf[x];
    g.nb[bi] = (size_t)ac->B * (x == 0 ? ac->Tq : ac->Tk) * g.pl.width[bi] * g.C;
  }
  g.no = g.nt[0];
  g.nl = (size_t)ac->B * ac->NH * ac->Tq;
  return g;
}
/* index in its buffer of element e of logical tensor x (0 q, 1 k, 2 v) */
static size_t att_at(const att_geom *g, int x, size_t e) {
  size_t row = e / g->C, col = e % g->C;
  return (row * g->pl.width[g->pl.buf[x]] + g->pl.off[x]) * g->C + col;
}
static void att_pack(const att_geom *g, float **bufs, float *const *t, float junk) {
  for (int b = 0; b < g->pl.nbuf; b++)
    for (size_t i = 0; i < g->nb[b]; i++) bufs[b][i] = junk;
  for (int x = 0; x < 3; x++)
    for (size_t e = 0; e < g->nt[x]; e++) bufs[g->pl.buf[x]][att_at(g, x, e)] = t[x][e];
}
/* logical tensors out of the buffers; every element no view covers must still be `stale` */
static void att_unpack(const att_geom *g, float **t, float *const *bufs, float stale, cmp *c) {
  for (int b = 0; b < g->pl.nbuf; b++) {
    unsigned char *seen = dt_calloc(g->nb[b], 1);
    for (int x = 0; x < 3; x++)
      if (g->pl.buf[x] == b)
        for (size_t e = 0; e < g->nt[x]; e++) {
          size_t i = att_at(g, x, e);
          t[x][e] = bufs[b][i];
          seen[i] = 1;
        }
    for (size_t i = 0; i < g->nb[b]; i++)
      if (!seen[i]) cmp_one(c, "element outside the views", i, bufs[b][i], stale);
    free(seen);
  }
}

typedef struct att_out {
  float *out, *lse, *grad[3]; /* grad: dq, dk, dv as logical contiguous tensors */
  cmp outside;                /* elements of the gradient buffers outside the views */
} att_out;

static void att_out_alloc(att_out *o, const att_geom *g) {
  o->out = fnew(g->no), o->lse = fnew(g->nl);
  for (int x = 0; x < 3; x++) o->grad[x] = fnew(g->nt[x]);
  cmp_init(&o->outside, 0.0, 0.0);
}
static void att_out_free(att_out *o) {
  free(o->out), free(o->lse), free(o->grad[0]), free(o->grad[1]), free(o->grad[2]);
}

/* One forward and backward on the packed buffers. With t = DT_BF16, q, k,
 * v and out are stored in bf16 (bufs' values rounded; o->out gets out's
 * values); with round_out, the fp32 out is rounded to bf16 in place
 * between the two calls (o->out gets the rounded values), which is what a
 * bf16 out gives the backward. */
static void att_run_t(dt_backend_t be, const att_geom *g, float **bufs, const float *dout_h,
                      const int32_t *key_len, float scale, att_out *o, const char *desc,
                      dt_dtype t, int round_out) {
  const att_case *ac = g->ac;
  const size_t F = sizeof(float), es = dt_dtype_size(t);
  devbufs d = {.be = be};
  void *bd[3];
  uint16_t *b16[3] = {NULL, NULL, NULL};
  float *gd[3], *gh[3];
  for (int b = 0; b < g->pl.nbuf; b++) {
    gh[b] = fnew(g->nb[b]);
    for (size_t i = 0; i < g->nb[b]; i++) gh[b][i] = ATT_STALE; /* the backward overwrites */
    if (t == DT_BF16) b16[b] = bits_of(bufs[b], g->nb[b]);
    bd[b] = dput(&d, t == DT_BF16 ? (void *)b16[b] : bufs[b], g->nb[b] * es);
    gd[b] = dput(&d, gh[b], g->nb[b] * F);
  }
  const void *x[3];
  float *dx[3];
  for (int i = 0; i < 3; i++) {
    x[i] = (const char *)bd[g->pl.buf[i]] + (size_t)g->pl.off[i] * g->C * es;
    dx[i] = gd[g->pl.buf[i]] + (size_t)g->pl.off[i] * g->C;
  }
  int qs = g->pl.width[g->pl.buf[0]] * g->C, kvs = g->pl.width[g->pl.buf[1]] * g->C;
  int32_t *kl = key_len ? dput(&d, key_len, ac->B * sizeof(int32_t)) : NULL;
  void *out = dput(&d, NULL, g->no * es);
  float *lse = dput(&d, NULL, g->nl * F), *dout = dput(&d, dout_h, g->no * F);
  be->k->attention_forward(be->ctx, out, lse, x[0], x[1], x[2], t, ac->B, ac->Tq, ac->Tk, ac->NH,
                           ac->HS, qs, kvs, ac->causal, kl, scale);
  if (round_out) {
    dget(&d, o->out, out, g->no * F, "out");
    for (size_t i = 0; i < g->no; i++) o->out[i] = dt_bf16_round(o->out[i]);
    be->h2d(be, out, o->out, g->no * F);
  }
  be->k->attention_backward(be->ctx, dx[0], dx[1], dx[2], dout, x[0], x[1], x[2], out, t, lse,
                            ac->B, ac->Tq, ac->Tk, ac->NH, ac->HS, qs, kvs, ac->causal, kl,
                            scale);
  if (t == DT_BF16) {
    uint16_t *h = dt_malloc(g->no * 2 + 1);
    dget(&d, h, out, g->no * 2, "out");
    for (size_t i = 0; i < g->no; i++) o->out[i] = dt_bf16_value(h[i]);
    free(h);
  } else {
    dget(&d, o->out, out, g->no * F, "out");
  }
  dget(&d, o->lse, lse, g->nl * F, "lse");
  for (int b = 0; b < g->pl.nbuf; b++) {
    dget(&d, gh[b], gd[b], g->nb[b] * F, "dq/dk/dv buffer");
    dkeep(&d, bd[b], t == DT_BF16 ? (void *)b16[b] : bufs[b], g->nb[b] * es, "q/k/v buffer");
  }
  att_unpack(g, o->grad, gh, ATT_STALE, &o->outside);
  dkeep(&d, dout, dout_h, g->no * F, "dout");
  if (kl) dkeep(&d, kl, key_len, ac->B * sizeof(int32_t), "key_len");
  dfree(&d, "attention", desc);
  for (int b = 0; b < g->pl.nbuf; b++) free(gh[b]), free(b16[b]);
}
static void att_run(dt_backend_t be, const att_geom *g, float **bufs, const float *dout_h,
                    const int32_t *key_len, float scale, att_out *o, const char *desc) {
  att_run_t(be, g, bufs, dout_h, key_len, scale, o, desc, DT_F32, 0);
}

/* q, k, v and out stored in bf16 (under bf16 matmuls) give the bits of the
 * fp32 call on the same values with its out rounded before the backward:
 * out, lse, dq, dk and dv */
static void att_check_typed(dt_backend_t be, const att_geom *g, float **bufs, const float *dout,
                            const int32_t *kl, float scale, const char *desc, const char *vs) {
  float *r16[3] = {NULL, NULL, NULL};
  for (int b = 0; b < g->pl.nbuf; b++) r16[b] = rounded(bufs[b], g->nb[b]);
  att_out a, t;
  att_out_alloc(&a, g), att_out_alloc(&t, g);
  be->set_matmul_precision(be, DT_PREC_BF16);
  att_run_t(be, g, r16, dout, kl, scale, &a, desc, DT_F32, 1);
  att_run_t(be, g, r16, dout, kl, scale, &t, desc, DT_BF16, 0);
  be->set_matmul_precision(be, DT_PREC_FP32);
  const size_t F = sizeof(float);
  int same = !memcmp(a.out, t.out, g->no * F) && !memcmp(a.lse, t.lse, g->nl * F);
  for (int x = 0; x < 3; x++) same &= !memcmp(a.grad[x], t.grad[x], g->nt[x] * F);
  same &= t.outside.nbad == 0; /* nothing written outside the dq/dk/dv views */
  if (same) {
    printf("ok   %-20s %-9s %s  bf16 q/k/v/out: same bits as fp32 on their values\n",
           "attention", vs, desc);
    g_pass++;
  } else {
    check_fail("attention", vs, desc, "bf16 q/k/v/out: bits differ from fp32 on their values");
  }
  att_out_free(&a), att_out_free(&t);
  for (int b = 0; b < 3; b++) free(r16[b]);
}

/* Written as a predicate, independently of the kernels' prefix form. */
static int ref_att_visible(const att_case *ac, const int32_t *kl, int b, int i, int j) {
  if (kl && j >= kl[b]) return 0;
  return !ac->causal || j <= i + ac->Tk - ac->Tq;
}

/* probabilities p (Tk) of row (b,h,i) from scratch; returns how many keys are visible */
static int ref_att_probs(double *p, const att_case *ac, const int32_t *kl, const double *q,
                         const double *k, int b, int h, int i, double scale) {
  const int C = ac->NH * ac->HS;
  const double *qi = q + ((size_t)b * ac->Tq + i) * C + (size_t)h * ac->HS;
  double m = -INFINITY, s = 0.0;
  int nvis = 0;
  for (int j = 0; j < ac->Tk; j++) {
    p[j] = -INFINITY;
    if (!ref_att_visible(ac, kl, b, i, j)) continue;
    nvis++;
    p[j] = scale * dot(qi, k + ((size_t)b * ac->Tk + j) * C + (size_t)h * ac->HS, ac->HS);
    m = p[j] > m ? p[j] : m;
  }
  for (int j = 0; j < ac->Tk; j++) s += nvis ? exp(p[j] - m) : 0.0;
  for (int j = 0; j < ac->Tk; j++) p[j] = nvis ? exp(p[j] - m) / s : 0.0;
  return nvis;
}

static void ref_att_forward(double *out, double *lse, const att_case *ac, const int32_t *kl,
                            const double *q, const double *k, const double *v, double scale) {
  const int C = ac->NH * ac->HS, HS = ac->HS;
  double *p = dnew(ac->Tk);
  for (int b = 0; b < ac->B; b++)
    for (int h = 0; h < ac->NH; h++)
      for (int i = 0; i < ac->Tq; i++) {
        int nvis = ref_att_probs(p, ac, kl, q, k, b, h, i, scale);
        double *oi = out + ((size_t)b * ac->Tq + i) * C + (size_t)h * HS;
        for (int d = 0; d < HS; d++) oi[d] = 0.0;
        for (int j = 0; j < ac->Tk; j++)
          for (int d = 0; d < HS; d++) oi[d] += p[j] * v[((size_t)b * ac->Tk + j) * C + h * HS + d];
        if (lse) {
          /* lse = scale*q.k_j - log p_j for any visible j; take the likeliest */
          int jb = 0;
          for (int j = 1; j < ac->Tk; j++) jb = p[j] > p[jb] ? j : jb;
          const double *qi = q + ((size_t)b * ac->Tq + i) * C + (size_t)h * HS;
          const double *kj = k + ((size_t)b * ac->Tk + jb) * C + (size_t)h * HS;
          lse[((size_t)b * ac->NH + h) * ac->Tq + i] =
              nvis ? scale * dot(qi, kj, HS) - log(p[jb]) : -INFINITY;
        }
      }
  free(p);
}

/* overwrites dq, dk, dv; D_i = sum_j P_ij dP_ij from its definition */
static void ref_att_backward(double **grad, const double *dout, const att_case *ac,
                             const int32_t *kl, const double *q, const double *k,
                             const double *v, double scale) {
  const int C = ac->NH * ac->HS, HS = ac->HS;
  double *p = dnew(ac->Tk), *dp = dnew(ac->Tk);
  memset(grad[0], 0, sizeof(double) * ac->B * ac->Tq * C);
  memset(grad[1], 0, sizeof(double) * ac->B * ac->Tk * C);
  memset(grad[2], 0, sizeof(double) * ac->B * ac->Tk * C);
  for (int b = 0; b < ac->B; b++)
    for (int h = 0; h < ac->NH; h++)
      for (int i = 0; i < ac->Tq; i++) {
        ref_att_probs(p, ac, kl, q, k, b, h, i, scale);
        size_t qo = ((size_t)b * ac->Tq + i) * C + (size_t)h * HS;
        double D = 0.0;
        for (int j = 0; j < ac->Tk; j++) {
          dp[j] = dot(dout + qo, v + ((size_t)b * ac->Tk + j) * C + h * HS, HS);
          D += p[j] * dp[j];
        }
        for (int j = 0; j < ac->Tk; j++) {
          size_t ko = ((size_t)b * ac->Tk + j) * C + (size_t)h * HS;
          double ds = p[j] * (dp[j] - D) * scale;
          for (int d = 0; d < HS; d++) {
            grad[0][qo + d] += ds * k[ko + d];
            grad[1][ko + d] += ds * q[qo + d];
            grad[2][ko + d] += p[j] * dout[qo + d];
          }
        }
      }
  free(p), free(dp);
}

typedef struct att_fd {
  const att_case *ac;
  const int32_t *kl;
  double scale, *x[3], *dout, *out;
} att_fd;
static double att_loss(void *p) {
  att_fd *f = p;
  ref_att_forward(f->out, NULL, f->ac, f->kl, f->x[0], f->x[1], f->x[2], f->scale);
  return dot(f->out, f->dout, (size_t)f->ac->B * f->ac->Tq * f->ac->NH * f->ac->HS);
}

static const char *att_grad_name[3] = {"dq", "dk", "dv"};

static void att_check_f64(const att_geom *g, float **t, const float *dout, const int32_t *kl,
                          float scale, const att_out *cpu, const char *desc) {
  const att_case *ac = g->ac;
  att_fd f = {ac, kl, scale, {todouble(t[0], g->nt[0]), todouble(t[1], g->nt[1]),
                              todouble(t[2], g->nt[2])}, todouble(dout, g->no), dnew(g->no)};
  double *lse = dnew(g->nl), *rg[3] = {dnew(g->nt[0]), dnew(g->nt[1]), dnew(g->nt[2])};
  cmp c;
  ref_att_forward(f.out, lse, ac, kl, f.x[0], f.x[1], f.x[2], scale);
  cmp_init(&c, 1e-5, 1e-4);
  cmp_fd(&c, "out", cpu->out, f.out, g->no);
  cmp_fd(&c, "lse", cpu->lse, lse, g->nl);
  check_done(&c, "attention_forward", "cpu:f64", desc);
  ref_att_backward(rg, f.dout, ac, kl, f.x[0], f.x[1], f.x[2], scale);
  c = cpu->outside;
  c.atol = 1e-5, c.rtol = 1e-4;
  for (int x = 0; x < 3; x++) cmp_fd(&c, att_grad_name[x], cpu->grad[x], rg[x], g->nt[x]);
  check_done(&c, "attention_backward", "cpu:f64", desc);
  if (ac->fd) {
    cmp_init(&c, 1e-4, 1e-3);
    for (int x = 0; x < 3; x++)
      fd_grad(&c, att_grad_name[x], att_loss, &f, f.x[x], g->nt[x], cpu->grad[x], NULL);
    check_done(&c, "attention_backward", "cpu:fd", desc);
  }
  for (int x = 0; x < 3; x++) free(f.x[x]), free(rg[x]);
  free(f.dout), free(f.out), free(lse);
}

static void test_att(const att_case *ac, int idx) {
  att_geom g = att_geom_init(ac);
  rng_seed(1000 + idx);
  int32_t *kl = NULL;
  char desc[192], kls[64] = "";
  if (ac->padded) {
    kl = dt_malloc(ac->B * sizeof *kl);
    for (int b = 0; b < ac->B; b++)
      kl[b] = b == 0 ? 1 + (int32_t)(rng_u64() % (ac->Tk - 1)) : b == 1 ? 0
            : b == 2 ? ac->Tk + 3 : (int32_t)(rng_u64() % (ac->Tk + 1));
    int len = snprintf(kls, sizeof kls, " key_len=[");
    for (int b = 0; b < ac->B && len < 48; b++)
      len += snprintf(kls + len, sizeof kls - len, "%s%d", b ? "," : "", kl[b]);
    snprintf(kls + len, sizeof kls - len, "]");
  }
  snprintf(desc, sizeof desc, "B=%d Tq=%d Tk=%d NH=%d HS=%d %s %s%s", ac->B, ac->Tq, ac->Tk,
           ac->NH, ac->HS, ac->causal ? "causal" : "full", att_layout_name[ac->layout], kls);
  float scale = (float)(1.0 / sqrt((double)ac->HS));
  float *t[3], *bufs[3] = {NULL, NULL, NULL}, *dout = fnew(g.no);
  for (int x = 0; x < 3; x++) {
    t[x] = fnew(g.nt[x]);
    fill(t[x], g.nt[x], x == 2 ? -1 : -2, x == 2 ? 1 : 2);
  }
  fill(dout, g.no, -1, 1);
  for (int b = 0; b < g.pl.nbuf; b++) bufs[b] = fnew(g.nb[b]);
  att_pack(&g, bufs, t, NAN); /* a kernel reading outside the views turns NaN */
  att_out cpu;
  att_out_alloc(&cpu, &g);
  att_run(g_cpu, &g, bufs, dout, kl, scale, &cpu, desc);
  if (g_cpu_checks) att_check_f64(&g, t, dout, kl, scale, &cpu, desc);
  if (g_cpu_checks) att_check_typed(g_cpu, &g, bufs, dout, kl, scale, desc, "cpu:bf16");
#ifdef DT_HAVE_CUDA
  /* on the GPU: the tiled fp32 kernels (flash.cu) where the head size
   * allows, the one-row-per-block ones (attention.cu), each against the CPU;
   * then the tiled bf16 tensor-core ones against the CPU on bf16-rounded
   * q, k, v and dout, within bf16 tolerances (they also round P and dS) */
  const int tiled = g_other && dt_cuda_flash_supported(g_other->ctx, ac->HS);
  att_out cpu16;
  att_out_alloc(&cpu16, &g);
  if (g_other && tiled) {
    float *r16[3] = {NULL, NULL, NULL}, *dout16 = fnew(g.no);
    for (int b = 0; b < g.pl.nbuf; b++) {
      r16[b] = fnew(g.nb[b]);
      for (size_t i = 0; i < g.nb[b]; i++) r16[b][i] = dt_bf16_round(bufs[b][i]);
    }
    for (size_t i = 0; i < g.no; i++) dout16[i] = dt_bf16_round(dout[i]);
    att_run(g_cpu, &g, r16, dout16, kl, scale, &cpu16, desc);
    for (int b = 0; b < 3; b++) free(r16[b]);
    free(dout16);
  }
  for (int run = tiled ? 0 : 1; g_other && run < 3 + tiled - 1; run++) {
    const int bf16 = run == 2;
    const char *vs = run == 0 ? "flash:cpu" : run == 1 ? "cuda:cpu" : "flash16:cpu16";
    const double atol = bf16 ? 1e-2 : TWIN_ATOL, rtol = bf16 ? 1e-2 : TWIN_RTOL;
    const att_out *want = bf16 ? &cpu16 : &cpu;
    dt_cuda_set_attention_impl(g_other->ctx, run == 1 ? DT_ATT_SIMPLE : DT_ATT_AUTO);
    g_other->set_matmul_precision(g_other, bf16 ? DT_PREC_BF16 : DT_PREC_FP32);
    att_out gpu;
    att_out_alloc(&gpu, &g);
    att_run(g_other, &g, bufs, dout, kl, scale, &gpu, desc);
    cmp c;
    cmp_init(&c, atol, rtol);
    cmp_ff(&c, "out", gpu.out, want->out, g.no);
    cmp_ff(&c, "lse", gpu.lse, want->lse, g.nl);
    check_done(&c, "attention_forward", vs, desc);
    c = gpu.outside;
    c.atol = atol, c.rtol = rtol;
    for (int x = 0; x < 3; x++) cmp_ff(&c, att_grad_name[x], gpu.grad[x], want->grad[x], g.nt[x]);
    check_done(&c, "attention_backward", vs, desc);
    att_out_free(&gpu);
  }
  att_out_free(&cpu16);
  for (int impl = 0; g_other && impl < 3; impl++) { /* bf16 storage on each kind */
    static const char *vs[3] = {"auto:bf16", "fp32:bf16", "simple:bf16"};
    dt_cuda_set_attention_impl(g_other->ctx, impl);
    att_check_typed(g_other, &g, bufs, dout, kl, scale, desc, vs[impl]);
  }
  if (g_other) {
    dt_cuda_set_attention_impl(g_other->ctx, DT_ATT_AUTO);
    g_other->set_matmul_precision(g_other, DT_PREC_FP32);
  }
#endif
  att_out_free(&cpu);
  for (int x = 0; x < 3; x++) free(t[x]), free(bufs[x]);
  free(dout), free(kl);
}

/* ------------------------------------------------------------------ */
/* embedding                                                          */

typedef struct emb_case {
  int B, T, C, V, maxT;
  int wpe;  /* learned positions */
  int mode; /* 0: uniform tokens; 1: half of them token 0 (long runs); 2: also bad tokens */
} emb_case;

static const emb_case emb_cases[] = {
    {1, 1, 1, 1, 1, 1, 0},      {2, 5, 7, 11, 8, 1, 0},     {3, 17, 33, 50, 20, 0, 0},
    {4, 64, 96, 13, 80, 1, 1},  {2, 300, 50, 50257, 300, 1, 1},
    {2, 6, 5, 9, 6, 1, 2},      {1, 40, 300, 7, 64, 0, 2},
};

/* inputs, then outputs: out; dwte, dwpe accumulating into their *0 values;
 * the same with the other gradient NULL */
enum { EMB_WTE, EMB_WPE, EMB_DOUT, EMB_DWTE0, EMB_DWPE0, EMB_NIN, EMB_OUT = EMB_NIN, EMB_DWTE,
       EMB_DWPE, EMB_DWTE_ONLY, EMB_DWPE_ONLY, EMB_NBUF };
static const char *emb_name[EMB_NBUF] = {"wte", "wpe", "dout", "dwte0", "dwpe0", "out", "dwte",
                                         "dwpe", "dwte (dwpe NULL)", "dwpe (dwte NULL)"};

static size_t emb_count(int i, const emb_case *ec) {
  switch (i) {
  case EMB_WTE: case EMB_DWTE0: case EMB_DWTE: case EMB_DWTE_ONLY: return (size_t)ec->V * ec->C;
  case EMB_WPE: case EMB_DWPE0: case EMB_DWPE: case EMB_DWPE_ONLY: return (size_t)ec->maxT * ec->C;
  default: return (size_t)ec->B * ec->T * ec->C;
  }
}

static void emb_run(dt_backend_t be, const emb_case *ec, float **in, const int32_t *tok,
                    float **o, const char *desc) {
  size_t F = sizeof(float), nt = (size_t)ec->B * ec->T;
  devbufs d = {.be = be};
  float *p[EMB_NBUF];
  for (int i = 0; i < EMB_NBUF; i++) {
    const float *init = i < EMB_NIN ? in[i] : NULL;
    if (i == EMB_DWTE || i == EMB_DWTE_ONLY) init = in[EMB_DWTE0];
    if (i == EMB_DWPE || i == EMB_DWPE_ONLY) init = in[EMB_DWPE0];
    p[i] = dput(&d, init, emb_count(i, ec) * F);
  }
  int32_t *td = dput(&d, tok, nt * sizeof(int32_t));
  size_t wsb = be->k->embedding_backward_workspace(be->ctx, ec->B, ec->T, ec->V);
  void *ws = dput(&d, NULL, wsb);
  const dt_kernels *k = be->k;
  float *wpe = ec->wpe ? p[EMB_WPE] : NULL;
  k->embedding_forward(be->ctx, p[EMB_OUT], td, p[EMB_WTE], wpe, ec->B, ec->T, ec->C, ec->V);
  k->embedding_backward(be->ctx, p[EMB_DWTE], p[EMB_DWPE], p[EMB_DOUT], td, ec->B, ec->T, ec->C,
                        ec->V, ws);
  k->embedding_backward(be->ctx, p[EMB_DWTE_ONLY], NULL, p[EMB_DOUT], td, ec->B, ec->T, ec->C,
                        ec->V, ws);
  k->embedding_backward(be->ctx, NULL, p[EMB_DWPE_ONLY], p[EMB_DOUT], td, ec->B, ec->T, ec->C,
                        ec->V, ws);
  for (int i = 0; i < EMB_NBUF; i++) {
    if (i < EMB_NIN) dkeep(&d, p[i], in[i], emb_count(i, ec) * F, emb_name[i]);
    else dget(&d, o[i], p[i], emb_count(i, ec) * F, emb_name[i]);
  }
  dkeep(&d, td, tok, nt * sizeof(int32_t), "tokens");
  dget(&d, NULL, ws, wsb, "workspace");
  dfree(&d, "embedding", desc);
}

/* out (B,T,C) in float64, NaN rows for bad tokens; with grad: dwte, dwpe (overwritten) */
static void ref_emb(double *out, double *dwte, double *dwpe, const double *wte,
                    const double *wpe, const double *dout, const int32_t *tok,
                    const emb_case *ec) {
  const int C = ec->C;
  if (dwte) memset(dwte, 0, sizeof(double) * ec->V * C);
  if (dwpe) memset(dwpe, 0, sizeof(double) * ec->maxT * C);
  for (int i = 0; i < ec->B * ec->T; i++) {
    int t = i % ec->T, ok = tok[i] >= 0 && tok[i] < ec->V;
    for (int c = 0; c < C; c++) {
      size_t o = (size_t)i * C + c;
      if (out) out[o] = ok ? wte[(size_t)tok[i] * C + c] + (wpe ? wpe[(size_t)t * C + c] : 0.0) : NAN;
      if (dwte && ok) dwte[(size_t)tok[i] * C + c] += dout[o];
      if (dwpe) dwpe[(size_t)t * C + c] += dout[o];
    }
  }
}

typedef struct emb_fd {
  const emb_case *ec;
  const int32_t *tok;
  double *wte, *wpe, *dout, *out;
} emb_fd;
static double emb_loss(void *p) {
  emb_fd *f = p;
  ref_emb(f->out, NULL, NULL, f->wte, f->ec->wpe ? f->wpe : NULL, NULL, f->tok, f->ec);
  return dot(f->out, f->dout, (size_t)f->ec->B * f->ec->T * f->ec->C);
}

static void emb_check_f64(const emb_case *ec, float **in, const int32_t *tok, float **cpu,
                          const char *desc) {
  size_t nw = emb_count(EMB_WTE, ec), np = emb_count(EMB_WPE, ec), no = emb_count(EMB_OUT, ec);
  emb_fd f = {ec, tok, todouble(in[EMB_WTE], nw), todouble(in[EMB_WPE], np),
              todouble(in[EMB_DOUT], no), dnew(no)};
  double *rw = dnew(nw), *rp = dnew(np);
  cmp c;
  ref_emb(f.out, rw, rp, f.wte, ec->wpe ? f.wpe : NULL, f.dout, tok, ec);
  cmp_init(&c, 1e-6, 1e-6); /* one fp32 add */
  cmp_fd(&c, "out", cpu[EMB_OUT], f.out, no);
  check_done(&c, "embedding_forward", "cpu:f64", desc);
  add_base(rw, in[EMB_DWTE0], nw), add_base(rp, in[EMB_DWPE0], np);
  cmp_init(&c, 1e-4, 1e-4); /* long runs of fp32 adds */
  cmp_fd(&c, "dwte", cpu[EMB_DWTE], rw, nw);
  cmp_fd(&c, "dwpe", cpu[EMB_DWPE], rp, np);
  check_done(&c, "embedding_backward", "cpu:f64", desc);
  /* the NULL gradient must change nothing about the other one */
  cmp_init(&c, 0.0, 0.0);
  cmp_ff(&c, "dwte (dwpe NULL)", cpu[EMB_DWTE_ONLY], cpu[EMB_DWTE], nw);
  cmp_ff(&c, "dwpe (dwte NULL)", cpu[EMB_DWPE_ONLY], cpu[EMB_DWPE], np);
  check_done(&c, "embedding_backward", "cpu:null", desc);
  if (ec->mode != 2) { /* NaN rows make the loss NaN */
    cmp_init(&c, 1e-4, 1e-3);
    fd_grad(&c, "dwte", emb_loss, &f, f.wte, nw, cpu[EMB_DWTE], in[EMB_DWTE0]);
    if (ec->wpe) fd_grad(&c, "dwpe", emb_loss, &f, f.wpe, np, cpu[EMB_DWPE], in[EMB_DWPE0]);
    check_done(&c, "embedding_backward", "cpu:fd", desc);
  }
  free(f.wte), free(f.wpe), free(f.dout), free(f.out), free(rw), free(rp);
}

static void test_emb(const emb_case *ec, int idx) {
  size_t nt = (size_t)ec->B * ec->T;
  char desc[128];
  snprintf(desc, sizeof desc, "B=%d T=%d C=%d V=%d maxT=%d%s%s", ec->B, ec->T, ec->C, ec->V,
           ec->maxT, ec->wpe ? "" : " wpe=NULL",
           ec->mode == 1 ? " half token 0" : ec->mode == 2 ? " bad tokens" : "");
  rng_seed(1100 + idx);
  float *in[EMB_NBUF], *cpu[EMB_NBUF];
  for (int i = 0; i < EMB_NBUF; i++) in[i] = fnew(emb_count(i, ec)), cpu[i] = fnew(emb_count(i, ec));
  for (int i = 0; i < EMB_NIN; i++) fill(in[i], emb_count(i, ec), -1, 1);
  int32_t *tok = dt_malloc(nt * sizeof *tok);
  for (size_t i = 0; i < nt; i++) {
    tok[i] = (int32_t)(rng_u64() % ec->V);
    if (ec->mode >= 1 && rng_u64() % 2) tok[i] = 0;
    if (ec->mode == 2 && i % 5 == 1) tok[i] = (i % 10 == 1) ? -1 : ec->V;
  }
  emb_run(g_cpu, ec, in, tok, cpu, desc);
  if (g_cpu_checks) emb_check_f64(ec, in, tok, cpu, desc);
  if (g_other) {
    float *gpu[EMB_NBUF];
    for (int i = 0; i < EMB_NBUF; i++) gpu[i] = fnew(emb_count(i, ec));
    emb_run(g_other, ec, in, tok, gpu, desc);
    /* both backends add in (b,t) order: the same bits */
    cmp c;
    cmp_init(&c, 0.0, 0.0);
    cmp_ff(&c, "out", gpu[EMB_OUT], cpu[EMB_OUT], emb_count(EMB_OUT, ec));
    check_done(&c, "embedding_forward", "cuda:cpu", desc);
    cmp_init(&c, 0.0, 0.0);
    for (int i = EMB_DWTE; i < EMB_NBUF; i++) cmp_ff(&c, emb_name[i], gpu[i], cpu[i], emb_count(i, ec));
    check_done(&c, "embedding_backward", "cuda:cpu", desc);
    for (int i = 0; i < EMB_NBUF; i++) free(gpu[i]);
  }
  for (int i = 0; i < EMB_NBUF; i++) free(in[i]), free(cpu[i]);
  free(tok);
}

/* ------------------------------------------------------------------ */
/* vocabulary-parallel parts (tensor parallelism: each rank holds vocabulary
 * ids [v*r/parts, v*(r+1)/parts), as runtime/param.c cuts wte)            */

static int vp_lo(int v, int parts, int r) { return (int)((int64_t)v * r / parts); }

/* The embedding by parts on be: out = the parts' outputs summed in part
 * order (the all-reduce; wpe given to part 0), dwte the parts' rows put
 * together, dwpe (parts, maxT*C) each part's; and the whole table's
 * forward and backward on the same be (whole_out, whole_dwte, whole_dwpe). */
static void emb_parts_run(dt_backend_t be, const emb_case *ec, int parts, float **in,
                          const int32_t *tok, float *out, float *dwte, float *dwpe,
                          float *whole_out, float *whole_dwte, float *whole_dwpe,
                          const char *desc) {
  const size_t F = sizeof(float), no = emb_count(EMB_OUT, ec), np = emb_count(EMB_WPE, ec);
  const size_t nt = (size_t)ec->B * ec->T;
  float *tmp = fnew(no);
  memset(out, 0, no * F);
  for (int r = 0; r < parts; r++) {
    const int lo = vp_lo(ec->V, parts, r), vl = vp_lo(ec->V, parts, r + 1) - lo;
    const size_t nw = (size_t)vl * ec->C;
    devbufs d = {.be = be};
    float *w = dput(&d, in[EMB_WTE] + (size_t)lo * ec->C, nw * F);
    float *pe = ec->wpe && r == 0 ? dput(&d, in[EMB_WPE], np * F) : NULL;
    float *dout = dput(&d, in[EMB_DOUT], no * F);
    float *dw = dput(&d, in[EMB_DWTE0] + (size_t)lo * ec->C, nw * F);
    float *dp = dput(&d, in[EMB_DWPE0], np * F), *o = dput(&d, NULL, no * F);
    int32_t *td = dput(&d, tok, nt * sizeof(int32_t));
    size_t wsb = be->k->embedding_backward_workspace(be->ctx, ec->B, ec->T, vl);
    void *ws = dput(&d, NULL, wsb);
    be->k->embedding_forward_part(be->ctx, o, td, w, pe, ec->B, ec->T, ec->C, lo, vl);
    be->k->embedding_backward_part(be->ctx, dw, ec->wpe ? dp : NULL, dout, td, ec->B, ec->T,
                                   ec->C, lo, vl, ws);
    dget(&d, tmp, o, no * F, "out");
    for (size_t i = 0; i < no; i++) out[i] += tmp[i];
    dget(&d, dwte + (size_t)lo * ec->C, dw, nw * F, "dwte");
    dget(&d, dwpe + (size_t)r * np, dp, np * F, "dwpe");
    dkeep(&d, td, tok, nt * sizeof(int32_t), "tokens");
    dget(&d, NULL, ws, wsb, "workspace");
    dfree(&d, "embedding_part", desc);
  }
  free(tmp);
  devbufs d = {.be = be};
  float *w = dput(&d, in[EMB_WTE], emb_count(EMB_WTE, ec) * F);
  float *pe = ec->wpe ? dput(&d, in[EMB_WPE], np * F) : NULL;
  float *dout = dput(&d, in[EMB_DOUT], no * F);
  float *dw = dput(&d, in[EMB_DWTE0], emb_count(EMB_WTE, ec) * F);
  float *dp = dput(&d, in[EMB_DWPE0], np * F), *o = dput(&d, NULL, no * F);
  int32_t *td = dput(&d, tok, nt * sizeof(int32_t));
  size_t wsb = be->k->embedding_backward_workspace(be->ctx, ec->B, ec->T, ec->V);
  void *ws = dput(&d, NULL, wsb);
  be->k->embedding_forward(be->ctx, o, td, w, pe, ec->B, ec->T, ec->C, ec->V);
  be->k->embedding_backward(be->ctx, dw, ec->wpe ? dp : NULL, dout, td, ec->B, ec->T, ec->C,
                            ec->V, ws);
  dget(&d, whole_out, o, no * F, "out");
  dget(&d, whole_dwte, dw, emb_count(EMB_WTE, ec) * F, "dwte");
  dget(&d, whole_dwpe, dp, np * F, "dwpe");
  dfree(&d, "embedding", desc);
}

/* The parts give the whole table's bits: out summed, dwte put together,
 * every part's dwpe; on CUDA the CPU's bits too. */
static void test_emb_parts(const emb_case *ec, int parts, int idx) {
  char desc[128];
  snprintf(desc, sizeof desc, "B=%d T=%d C=%d V=%d in %d parts%s", ec->B, ec->T, ec->C, ec->V,
           parts, ec->wpe ? "" : " wpe=NULL");
  rng_seed(1300 + idx);
  const size_t no = emb_count(EMB_OUT, ec), nw = emb_count(EMB_WTE, ec);
  const size_t np = emb_count(EMB_WPE, ec), nt = (size_t)ec->B * ec->T;
  float *in[EMB_NIN];
  for (int i = 0; i < EMB_NIN; i++) in[i] = fnew(emb_count(i, ec)), fill(in[i], emb_count(i, ec), -1, 1);
  int32_t *tok = dt_malloc(nt * sizeof *tok);
  for (size_t i = 0; i < nt; i++) tok[i] = (int32_t)(rng_u64() % ec->V);
  dt_backend_t bes[2] = {g_cpu_checks ? g_cpu : NULL, g_other};
  float *ref_out = NULL, *ref_dwte = NULL, *ref_dwpe = NULL;
  for (int b = 0; b < 2; b++) {
    if (!bes[b]) continue;
    float *out = fnew(no), *dwte = fnew(nw), *dwpe = fnew(np * parts);
    float *wo = fnew(no), *wdw = fnew(nw), *wdp = fnew(np);
    emb_parts_run(bes[b], ec, parts, in, tok, out, dwte, dwpe, wo, wdw, wdp, desc);
    char vs[16];
    cmp c;
    snprintf(vs, sizeof vs, "%s:whole", bes[b]->name);
    cmp_init(&c, 0.0, 0.0);
    cmp_ff(&c, "out (parts summed)", out, wo, no);
    cmp_ff(&c, "dwte (parts' rows)", dwte, wdw, nw);
    for (int r = 0; r < parts && ec->wpe; r++) cmp_ff(&c, "dwpe", dwpe + (size_t)r * np, wdp, np);
    check_done(&c, "embedding_part", vs, desc);
    if (b == 1 && ref_out) { /* CUDA against the CPU, bit for bit */
      cmp_init(&c, 0.0, 0.0);
      cmp_ff(&c, "out", out, ref_out, no);
      cmp_ff(&c, "dwte", dwte, ref_dwte, nw);
      cmp_ff(&c, "dwpe", dwpe, ref_dwpe, np * parts);
      check_done(&c, "embedding_part", "cuda:cpu", desc);
    }
    free(wo), free(wdw), free(wdp);
    if (b == 0) ref_out = out, ref_dwte = dwte, ref_dwpe = dwpe;
    else free(out), free(dwte), free(dwpe);
  }
  free(ref_out), free(ref_dwte), free(ref_dwpe);
  for (int i = 0; i < EMB_NIN; i++) free(in[i]);
  free(tok);
}

typedef struct vpart_case {
  int n, v, parts, pad, bf16; /* pad: extra columns per row (ld = part's v + pad) */
} vpart_case;
static const vpart_case vpart_cases[] = {
    {4, 37, 2, 0, 0}, {5, 37, 3, 3, 0}, {3, 50257, 4, 0, 0}, {6, 101, 3, 5, 1}, {2, 9, 1, 2, 0}};

/* Both calls for every part on be: stats (parts,n,3); losses (parts,n);
 * dlogits (n,v) put together from the parts' columns, and again from the
 * call whose dlogits alias the logits (alias); pads = padding elements
 * that are not 0. */
static void vpart_run(dt_backend_t be, const vpart_case *vc, const float *x, const int32_t *t,
                      float dscale, float *stats, float *losses, float *dl, float *alias,
                      size_t *pads, const char *desc) {
  const int n = vc->n, v = vc->v, P = vc->parts;
  const dt_dtype lt = vc->bf16 ? DT_BF16 : DT_F32;
  const size_t es = dt_dtype_size(lt), F = sizeof(float);
  *pads = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int r = 0; r < P; r++) {
      const int lo = vp_lo(v, P, r), vl = vp_lo(v, P, r + 1) - lo, ld = vl + vc->pad;
      const size_t nl = (size_t)n * ld;
      unsigned char *h = dt_malloc(nl * es), *back = dt_malloc(nl * es);
      for (int i = 0; i < n; i++)
        for (int j = 0; j < ld; j++) /* padding columns hold garbage */
          dt_store(h, lt, (size_t)i * ld + j, j < vl ? x[(size_t)i * v + lo + j] : 7.0f);
      devbufs d = {.be = be};
      void *px = dput(&d, h, nl * es), *pa = dput(&d, h, nl * es);
      int32_t *tg = dput(&d, t, n * sizeof(int32_t));
      if (pass == 0) {
        float *st = dput(&d, NULL, (size_t)n * 3 * F);
        be->k->softmax_xent_part_stats(be->ctx, st, px, lt, tg, n, vl, ld, lo);
        dget(&d, stats + (size_t)r * n * 3, st, (size_t)n * 3 * F, "stats");
      } else {
        float *sa = dput(&d, stats, (size_t)P * n * 3 * F), *loss = dput(&d, NULL, n * F);
        void *dd = dput(&d, NULL, nl * es);
        be->k->softmax_xent_part(be->ctx, loss, dd, px, lt, tg, sa, P, n, vl, ld, lo, v, dscale);
        be->k->softmax_xent_part(be->ctx, NULL, pa, pa, lt, tg, sa, P, n, vl, ld, lo, v, dscale);
        dget(&d, losses + (size_t)r * n, loss, n * F, "losses");
        for (int k = 0; k < 2; k++) {
          dget(&d, back, k ? pa : dd, nl * es, k ? "dlogits (aliasing logits)" : "dlogits");
          float *to = k ? alias : dl;
          for (int i = 0; i < n; i++)
            for (int j = 0; j < ld; j++) {
              const float u = dt_load(back, lt, (size_t)i * ld + j);
              if (j < vl) to[(size_t)i * v + lo + j] = u;
              else *pads += u != 0.0f;
            }
        }
        dkeep(&d, sa, stats, (size_t)P * n * 3 * F, "stats");
      }
      dkeep(&d, px, h, nl * es, "logits");
      dkeep(&d, tg, t, n * sizeof(int32_t), "targets");
      dfree(&d, "softmax_xent_part", desc);
      free(h), free(back);
    }
}

static void test_vpart(const vpart_case *vc, int idx) {
  const int n = vc->n, v = vc->v, P = vc->parts;
  const size_t nv = (size_t)n * v, ns = (size_t)P * n * 3;
  char desc[96];
  snprintf(desc, sizeof desc, "n=%d v=%d in %d parts ld=+%d %s", n, v, P, vc->pad,
           vc->bf16 ? "bf16" : "fp32");
  rng_seed(1400 + idx);
  float *x = fnew(nv);
  int32_t *t = dt_malloc(n * sizeof *t);
  fill(x, nv, -4, 4);
  if (vc->bf16) /* the values the kernels read */
    for (size_t i = 0; i < nv; i++) x[i] = dt_bf16_value(dt_bf16_bits(x[i]));
  for (int i = 0; i < n; i++) t[i] = (int32_t)(rng_u64() % v);
  t[0] = v - 1; /* the last part's last id */
  const float dscale = 1.0f / n;
  float *st = fnew(ns), *ls = fnew((size_t)P * n), *dl = fnew(nv), *al = fnew(nv);
  size_t pads;
  vpart_run(g_cpu, vc, x, t, dscale, st, ls, dl, al, &pads, desc);
  double dl_tol = vc->bf16 ? 4e-3 : 1e-6; /* a bf16 dlogits is rounded */
  if (g_cpu_checks) {
    /* float64: each part's statistics, and the whole vocabulary's loss
     * and dlogits (ref_xent, itself checked against finite differences) */
    double *sr = dnew(ns);
    for (int r = 0; r < P; r++) {
      const int lo = vp_lo(v, P, r), hi = vp_lo(v, P, r + 1);
      for (int i = 0; i < n; i++) {
        double m = -INFINITY, s = 0, xt = 0;
        for (int j = lo; j < hi; j++) m = fmax(m, x[(size_t)i * v + j]);
        for (int j = lo; j < hi; j++) s += exp(x[(size_t)i * v + j] - m);
        if (t[i] >= lo && t[i] < hi) xt = x[(size_t)i * v + t[i]];
        double *o = sr + 3 * ((size_t)r * n + i);
        o[0] = m, o[1] = s, o[2] = xt;
      }
    }
    xent_fd f = {n, v, t, todouble(x, nv)};
    double *rl = dnew(n), *rd = dnew(nv);
    ref_xent(f.x, t, n, v, rl, rd);
    cmp c;
    cmp_init(&c, 1e-6, 1e-6);
    cmp_fd(&c, "stats", st, sr, ns);
    for (int r = 0; r < P; r++) cmp_fd(&c, "losses", ls + (size_t)r * n, rl, n);
    check_done(&c, "softmax_xent_part", "cpu:f64", desc);
    cmp_init(&c, 1e-6, dl_tol);
    cmp_fd(&c, "dlogits", dl, rd, nv);
    cmp_fd(&c, "dlogits (aliasing logits)", al, rd, nv);
    check_line(pads == 0, "softmax_xent_part", "cpu:pad", desc, "padding columns set to 0");
    check_done(&c, "softmax_xent_part", "cpu:alias", desc);
    if (!vc->bf16) {
      cmp_init(&c, 1e-6, 1e-4);
      fd_grad(&c, "dlogits", xent_loss, &f, f.x, nv, dl, NULL);
      check_done(&c, "softmax_xent_part", "cpu:fd", desc);
    }
    free(sr), free(f.x), free(rl), free(rd);
  }
  if (g_other) {
    float *gs = fnew(ns), *gl = fnew((size_t)P * n), *gd = fnew(nv), *ga = fnew(nv);
    size_t gpads;
    vpart_run(g_other, vc, x, t, dscale, gs, gl, gd, ga, &gpads, desc);
    cmp c;
    cmp_init(&c, TWIN_ATOL, TWIN_RTOL);
    cmp_ff(&c, "stats", gs, st, ns);
    cmp_ff(&c, "losses", gl, ls, (size_t)P * n);
    cmp_ff(&c, "dlogits", gd, dl, nv);
    cmp_ff(&c, "dlogits (aliasing logits)", ga, dl, nv);
    check_line(gpads == 0, "softmax_xent_part", "cuda:pad", desc, "padding columns set to 0");
    check_done(&c, "softmax_xent_part", "cuda:cpu", desc);
    free(gs), free(gl), free(gd), free(ga);
  }
  free(st), free(ls), free(dl), free(al), free(x), free(t);
}

/* ------------------------------------------------------------------ */
/* dropout                                                            */

typedef struct drop_case {
  size_t n;
  float p;
  uint64_t seed, offset;
} drop_case;

static const drop_case drop_cases[] = {
    {1, 0.5f, 1, 0},         {1000, 0.0f, 2, 0},          {1000, 0.1f, 3, 0},
    {4097, 0.5f, 4, 77},     {(1u << 20) + 3, 0.1f, 5, 0}, {(1u << 20) + 3, 0.9f, 6, 1ull << 44},
    {100000, 0.25f, 7, 123456789012ull},
};

enum { DROP_OUT, DROP_DIN, DROP_INPLACE, DROP_SHIFT, DROP_NBUF };

/* On be: out = forward(x), din = backward(dy), forward in place on a copy of
 * x, and forward of x[1..] at offset + 1 (the same counters, one along). */
static void drop_run(dt_backend_t be, const drop_case *dc, const float *x, const float *dy,
                     float **o, const char *desc) {
  size_t n = dc->n, F = sizeof(float);
  devbufs d = {.be = be};
  float *xd = dput(&d, x, n * F), *dyd = dput(&d, dy, n * F), *od = dput(&d, NULL, n * F);
  float *dd = dput(&d, NULL, n * F), *ip = dput(&d, x, n * F);
  float *sd = dput(&d, NULL, n * F);
  be->k->dropout_forward(be->ctx, od, xd, n, dc->p, dc->seed, dc->offset);
  be->k->dropout_backward(be->ctx, dd, dyd, n, dc->p, dc->seed, dc->offset);
  be->k->dropout_forward(be->ctx, ip, ip, n, dc->p, dc->seed, dc->offset);
  if (n > 1) be->k->dropout_forward(be->ctx, sd, xd + 1, n - 1, dc->p, dc->seed, dc->offset + 1);
  dget(&d, o[DROP_OUT], od, n * F, "out");
  dget(&d, o[DROP_DIN], dd, n * F, "dinp");
  dget(&d, o[DROP_INPLACE], ip, n * F, "out (in place)");
  dget(&d, o[DROP_SHIFT], sd, n * F, "out (offset+1)");
  dkeep(&d, xd, x, n * F, "inp");
  dkeep(&d, dyd, dy, n * F, "dout");
  dfree(&d, "dropout", desc);
}

static void drop_check_cpu(const drop_case *dc, const float *x, const float *dy, float **o,
                           const char *desc) {
  size_t n = dc->n, kept = 0, exact = 1, same_mask = 1, p0 = 1, shift = 1, inplace = 1;
  const float scale = 1.0f / (1.0f - dc->p);
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    int k = o[DROP_OUT][i] != 0.0f;
    kept += (size_t)k;
    sum += k ? scale : 0.0; /* the output for an all-ones input */
    exact &= o[DROP_OUT][i] == (k ? x[i] * scale : 0.0f);
    same_mask &= (o[DROP_DIN][i] != 0.0f) == k && o[DROP_DIN][i] == (k ? dy[i] * scale : 0.0f);
    inplace &= o[DROP_INPLACE][i] == o[DROP_OUT][i];
    if (i + 1 < n) shift &= o[DROP_SHIFT][i] == o[DROP_OUT][i + 1];
    p0 &= dc->p != 0.0f || o[DROP_OUT][i] == x[i];
  }
  /* kept ~ Binomial(n, 1-p): within 5 standard deviations (+1 for tiny n) */
  double q = 1.0 - dc->p, sd = sqrt((double)n * dc->p * q);
  double dev = fabs((double)kept - q * (double)n);
  int frac_ok = dev <= 5.0 * sd + 1.0;
  int mean_ok = fabs(sum / (double)n - 1.0) <= (5.0 * sd + 1.0) / (q * (double)n);
  char why[160];
  snprintf(why, sizeof why, "kept %zu of %zu (expected %.1f, sd %.1f), mean of ones %.5f", kept,
           n, q * (double)n, sd, sum / (double)n);
  if (frac_ok && mean_ok) {
    printf("ok   %-20s %-9s %s  %s\n", "dropout_mask", "cpu:stat", desc, why);
    g_pass++;
  } else {
    check_fail("dropout_mask", "cpu:stat", desc, why);
  }
  cmp c;
  cmp_init(&c, 0.0, 0.0);
  cmp_one(&c, "out == keep ? x*scale : 0", 0, exact, 1);
  cmp_one(&c, "p = 0 is the identity", 0, p0, 1);
  cmp_one(&c, "in place == out of place", 0, inplace, 1);
  cmp_one(&c, "counter = offset + i", 0, shift, 1);
  check_done(&c, "dropout_forward", "cpu:ref", desc);
  cmp_init(&c, 0.0, 0.0);
  cmp_one(&c, "forward's mask and scale", 0, same_mask, 1);
  check_done(&c, "dropout_backward", "cpu:ref", desc);
}

static void test_dropout(const drop_case *dc, int idx) {
  size_t n = dc->n;
  char desc[96];
  snprintf(desc, sizeof desc, "n=%zu p=%g seed=%llu offset=%llu", n, dc->p,
           (unsigned long long)dc->seed, (unsigned long long)dc->offset);
  rng_seed(1200 + idx);
  /* |x| >= 0.5, so a zero output is a dropped element */
  float *x = fnew(n), *dy = fnew(n), *o[DROP_NBUF], *again = fnew(n), *other = fnew(n);
  for (size_t i = 0; i < n; i++) {
    x[i] = (float)(urand(0.5, 1.5) * (rng_u64() & 1 ? 1 : -1));
    dy[i] = (float)(urand(0.5, 1.5) * (rng_u64() & 1 ? 1 : -1));
  }
  for (int i = 0; i < DROP_NBUF; i++) o[i] = fnew(n);
  drop_run(g_cpu, dc, x, dy, o, desc);
  if (g_cpu_checks) {
    drop_check_cpu(dc, x, dy, o, desc);
    /* determinism across calls, and another seed another mask */
    g_cpu->k->dropout_forward(g_cpu->ctx, again, x, n, dc->p, dc->seed, dc->offset);
    g_cpu->k->dropout_forward(g_cpu->ctx, other, x, n, dc->p, dc->seed + 1, dc->offset);
    cmp c;
    cmp_init(&c, 0.0, 0.0);
    cmp_ff(&c, "out (second call)", again, o[DROP_OUT], n);
    if (n >= 1000 && dc->p > 0.0f)
      cmp_one(&c, "seed+1 differs", 0, memcmp(other, o[DROP_OUT], n * sizeof(float)) != 0, 1);
    check_done(&c, "dropout_forward", "cpu:det", desc);
  }
  if (g_other) {
    float *gpu[DROP_NBUF];
    for (int i = 0; i < DROP_NBUF; i++) gpu[i] = fnew(n);
    drop_run(g_other, dc, x, dy, gpu, desc);
    /* one hash, one rounded multiply: the same bits */
    static const char *names[DROP_NBUF] = {"out", "dinp", "out (in place)", "out (offset+1)"};
    cmp c;
    cmp_init(&c, 0.0, 0.0);
    for (int i = 0; i < DROP_NBUF; i++)
      if (i != DROP_DIN) cmp_ff(&c, names[i], gpu[i], o[i], i == DROP_SHIFT ? n - 1 : n);
    check_done(&c, "dropout_forward", "cuda:cpu", desc);
    cmp_init(&c, 0.0, 0.0);
    cmp_ff(&c, names[DROP_DIN], gpu[DROP_DIN], o[DROP_DIN], n);
    check_done(&c, "dropout_backward", "cuda:cpu", desc);
    for (int i = 0; i < DROP_NBUF; i++) free(gpu[i]);
  }
  for (int i = 0; i < DROP_NBUF; i++) free(o[i]);
  free(x), free(dy), free(again), free(other);
}

/* dropout_rows: row r of y is dropout_forward of row r of x at offset +
 * r*stride, and the GPU gives the CPU's bits */
typedef struct drop_rows_case {
  int rows;
  size_t width, stride;
  float p;
  uint64_t seed, offset;
} drop_rows_case;

static const drop_rows_case drop_rows_cases[] = {
    {1, 17, 17, 0.5f, 11, 0}, {5, 300, 1000, 0.3f, 12, 1ull << 44},
    {64, 4097, 8192, 0.1f, 13, 3}, {7, 1000, 1000, 0.0f, 14, 0},
};

static void drop_rows_run(dt_backend_t be, const drop_rows_case *dc, const float *x, float *y,
                          const char *desc) {
  size_t n = (size_t)dc->rows * dc->width, F = sizeof(float);
  devbufs d = {.be = be};
  float *xd = dput(&d, x, n * F), *yd = dput(&d, NULL, n * F);
  be->k->dropout_rows(be->ctx, yd, xd, dc->rows, dc->width, dc->stride, dc->p, dc->seed,
                      dc->offset);
  dget(&d, y, yd, n * F, "y");
  dkeep(&d, xd, x, n * F, "x");
  dfree(&d, "dropout_rows", desc);
}

static void test_dropout_rows(const drop_rows_case *dc, int idx) {
  size_t n = (size_t)dc->rows * dc->width;
  char desc[96];
  snprintf(desc, sizeof desc, "rows=%d width=%zu stride=%zu p=%g", dc->rows, dc->width,
           dc->stride, dc->p);
  rng_seed(1300 + idx);
  float *x = fnew(n), *y = fnew(n), *ref = fnew(n);
  for (size_t i = 0; i < n; i++) x[i] = (float)urand(-1.5, 1.5);
  drop_rows_run(g_cpu, dc, x, y, desc);
  cmp c;
  if (g_cpu_checks) {
    for (int r = 0; r < dc->rows; r++)
      g_cpu->k->dropout_forward(g_cpu->ctx, ref + (size_t)r * dc->width,
                                x + (size_t)r * dc->width, dc->width, dc->p, dc->seed,
                                dc->offset + (uint64_t)r * dc->stride);
    cmp_init(&c, 0.0, 0.0);
    cmp_ff(&c, "y == per-row dropout_forward", y, ref, n);
    check_done(&c, "dropout_rows", "cpu:ref", desc);
  }
  if (g_other) {
    drop_rows_run(g_other, dc, x, ref, desc);
    cmp_init(&c, 0.0, 0.0);
    cmp_ff(&c, "y", ref, y, n);
    check_done(&c, "dropout_rows", "cuda:cpu", desc);
  }
  free(x), free(y), free(ref);
}

/* ------------------------------------------------------------------ */
/* timing: LeNet-sized conv forward + backward                        */

static double time_lenet_convs(dt_backend_t be, int iters) {
  dt_conv2d_shape s[2] = {{64, 1, 32, 32, 6, 5, 5, 1, 0, 0, 0}, {64, 6, 14, 14, 16, 5, 5, 1, 0, 0, 0}};
  float *inp[2], *w[2], *b[2], *out[2], *dw[2], *db[2], *dinp;
  size_t wsb = 0, F = sizeof(float);
  for (int l = 0; l < 2; l++) {
    dt_conv2d_shape_init(&s[l]);
    size_t ws = be->k->conv2d_workspace(be->ctx, &s[l]);
    wsb = ws > wsb ? ws : wsb;
    size_t nin = (size_t)s[l].n * s[l].c * s[l].h * s[l].w;
    size_t nw = (size_t)s[l].oc * s[l].c * s[l].kh * s[l].kw;
    size_t no = (size_t)s[l].n * s[l].oc * s[l].oh * s[l].ow;
    float *h = fnew(nin > nw ? nin : nw);
    fill(h, nin > nw ? nin : nw, -1, 1);
    inp[l] = be->alloc(be, nin * F), w[l] = be->alloc(be, nw * F);
    b[l] = be->alloc(be, s[l].oc * F), out[l] = be->alloc(be, no * F);
    dw[l] = be->alloc(be, nw * F), db[l] = be->alloc(be, s[l].oc * F);
    be->h2d(be, inp[l], h, nin * F), be->h2d(be, w[l], h, nw * F);
    be->h2d(be, b[l], h, s[l].oc * F);
    be->memset0(be, dw[l], nw * F), be->memset0(be, db[l], s[l].oc * F);
    free(h);
  }
  dinp = be->alloc(be, (size_t)64 * 6 * 14 * 14 * F);
  void *ws = be->alloc(be, wsb ? wsb : 1);
  double t0 = 0.0;
  for (int it = -2; it < iters; it++) { /* two warm-up rounds */
    if (it == 0) {
      be->sync(be);
      t0 = dt_now();
    }
    be->k->conv2d_forward(be->ctx, out[0], inp[0], w[0], b[0], &s[0], ws);
    be->k->conv2d_forward(be->ctx, out[1], inp[1], w[1], b[1], &s[1], ws);
    /* dout = out (any values will do); the first layer needs no dinp */
    be->k->conv2d_backward(be->ctx, dinp, dw[1], db[1], out[1], inp[1], w[1], &s[1], ws);
    be->k->conv2d_backward(be->ctx, NULL, dw[0], db[0], out[0], inp[0], w[0], &s[0], ws);
  }
  be->sync(be);
  double ms = (dt_now() - t0) * 1e3 / iters;
  for (int l = 0; l < 2; l++) {
    be->free(be, inp[l]), be->free(be, w[l]), be->free(be, b[l]), be->free(be, out[l]);
    be->free(be, dw[l]), be->free(be, db[l]);
  }
  be->free(be, dinp), be->free(be, ws);
  return ms;
}

/* ------------------------------------------------------------------ */

static void usage(void) {
  fprintf(stderr, "usage: test_kernels [--backend cpu|cuda|all] [--time] [--only attention]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *which = "all", *only = NULL; /* --only attention: that family alone */
  int do_time = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--backend") && i + 1 < argc) which = argv[++i];
    else if (!strncmp(argv[i], "--backend=", 10)) which = argv[i] + 10;
    else if (!strcmp(argv[i], "--time")) do_time = 1;
    else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    else usage();
  }
  if (strcmp(which, "cpu") && strcmp(which, "cuda") && strcmp(which, "all")) usage();
  g_cpu_checks = strcmp(which, "cuda") != 0;
  g_cpu = dt_backend_cpu_create(0);
  if (strcmp(which, "cpu")) {
    if (dt_cuda_device_count() > 0) {
      dt_error err = {{0}};
      g_other = dt_backend_cuda_create(0, &err);
      if (!g_other) {
        printf("FAIL cuda backend: %s\n0 passed, 1 failed\n", err.msg);
        return 1;
      }
    } else if (!strcmp(which, "cuda")) {
      printf("skip: no CUDA device (%s)\n",
             dt_cuda_built() ? "built with CUDA, no GPU visible" : "built without CUDA");
      return 77;
    }
  }
  printf("# backends: %s%s%s\n", g_cpu->desc, g_other ? ", " : "", g_other ? g_other->desc : "");

  /* an empty slot would crash the cases below */
  if ((g_cpu_checks && !test_slots(g_cpu)) || (g_other && !test_slots(g_other))) {
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return 1;
  }
  if (only && strcmp(only, "attention")) usage();
  if (only) {
    for (size_t i = 0; i < DT_ARRAY_LEN(att_cases); i++) test_att(&att_cases[i], (int)i);
    printf("%d passed, %d failed\n", g_pass, g_fail);
    if (g_other) dt_backend_destroy(g_other);
    dt_backend_destroy(g_cpu);
    return g_fail ? 1 : 0;
  }
  if (g_cpu_checks) test_bf16_round();
  for (size_t i = 0; i < DT_ARRAY_LEN(linear_cases); i++) test_linear(&linear_cases[i], (int)i);
  if (g_cpu_checks) test_weight_copy(g_cpu);
  if (g_other) test_weight_copy(g_other);
  for (size_t i = 0; i < DT_ARRAY_LEN(conv_cases); i++) test_conv(&conv_cases[i], (int)i);
  for (size_t i = 0; i < DT_ARRAY_LEN(pool_cases); i++) test_pool(&pool_cases[i], (int)i);
  for (int a = 0; a < DT_ACT_COUNT; a++)
    for (size_t i = 0; i < DT_ARRAY_LEN(act_sizes); i++)
      test_act((dt_act)a, act_sizes[i], a * 10 + (int)i);
  for (size_t i = 0; i < DT_ARRAY_LEN(lact_cases); i++) test_linear_act(&lact_cases[i], (int)i);
  for (size_t i = 0; i < DT_ARRAY_LEN(lact_cases); i++)
    test_linear_act_bf16(&lact_cases[i], (int)i);
  if (g_cpu_checks) {
    test_ln_bf16(g_cpu), test_gemm_bf16_operands(g_cpu), test_logits_bf16(g_cpu);
    test_lm_head_bf16_padded(g_cpu);
  }
  if (g_other) {
    test_ln_bf16(g_other), test_gemm_bf16_operands(g_other), test_logits_bf16(g_other);
    test_lm_head_bf16_padded(g_other);
  }
  for (size_t i = 0; i < DT_ARRAY_LEN(xent_cases); i++) test_xent(&xent_cases[i], (int)i);
  for (size_t i = 0; i < DT_ARRAY_LEN(xsm_cases); i++) test_xsm(&xsm_cases[i], (int)i);
  for (size_t i = 0; i < DT_ARRAY_LEN(lmh_cases); i++) test_lm_head(&lmh_cases[i], (int)i);
  for (size_t i = 0; i < DT_ARRAY_LEN(opt_cases); i++) test_opt(&opt_cases[i], (int)i);
  for (size_t i = 0; i < DT_ARRAY_LEN(reduce_cases); i++) test_reduce(&reduce_cases[i], (int)i);
  test_bf16_cast(12, 1.0, 0);
  test_bf16_cast(100003, 1e3, 1);
  test_bf16_cast((1u << 20) + 5, 3e38, 2);
  for (size_t i = 0; i < DT_ARRAY_LEN(gather_cases); i++) test_gather(&gather_cases[i], (int)i);
  for (size_t i = 0; i < DT_ARRAY_LEN(ln_cases); i++) test_ln(&ln_cases[i], (int)i);
  for (size_t i = 0; i < DT_ARRAY_LEN(att_cases); i++) test_att(&att_cases[i], (int)i);
  for (size_t i = 0; i < DT_ARRAY_LEN(emb_cases); i++) test_emb(&emb_cases[i], (int)i);
  for (int parts = 2; parts <= 3; parts++) /* the cases with valid tokens */
    for (size_t i = 0; i < DT_ARRAY_LEN(emb_cases); i++)
      if (emb_cases[i].mode != 2 && emb_cases[i].V >= parts)
        test_emb_parts(&emb_cases[i], parts, (int)i * 4 + parts);
  for (size_t i = 0; i < DT_ARRAY_LEN(vpart_cases); i++) test_vpart(&vpart_cases[i], (int)i);
  for (size_t i = 0; i < DT_ARRAY_LEN(drop_cases); i++) test_dropout(&drop_cases[i], (int)i);
  for (size_t i = 0; i < DT_ARRAY_LEN(drop_rows_cases); i++)
    test_dropout_rows(&drop_rows_cases[i], (int)i);

  if (do_time) {
    dt_backend_t bes[2] = {g_cpu_checks ? g_cpu : NULL, g_other};
    for (int b = 0; b < 2; b++)
      if (bes[b])
        printf("# time %-4s lenet conv1+conv2 forward+backward, batch 64: %.3f ms\n",
               bes[b]->name, time_lenet_convs(bes[b], bes[b] == g_cpu ? 50 : 200));
  }
  printf("%d passed, %d failed\n", g_pass, g_fail);
  if (g_other) dt_backend_destroy(g_other);
  dt_backend_destroy(g_cpu);
  return g_fail ? 1 : 0;
}
