/* profile.c: the timing shim of profile.h. Each slot of dt_kernels gets a
 * wrapper of the same signature that brackets the real call with
 * prof_begin/prof_end; the slots that return a size (workspaces) pass
 * through untimed. */
#include "profile.h"

#include <stdlib.h>
#include <string.h>

#include "../runtime/dt.h"
#include "kernels.h"

#define SLOTS(X)                                                                        \
  X(linear_forward) X(linear_backward) X(linear_act_forward) X(linear_backward_act)    \
  X(lm_head_forward) X(lm_head_backward) X(conv2d_forward) X(conv2d_backward)          \
  X(maxpool2d_forward) X(maxpool2d_backward) X(avgpool2d_forward) X(avgpool2d_backward) \
  X(act_forward) X(act_backward) X(softmax_xent) X(softmax_xent_smooth)                \
  X(softmax_xent_part_stats) X(softmax_xent_part) X(sgd_step) X(adam_step) X(sumsq)    \
  X(scale) X(axpy) X(to_bf16) X(from_bf16) X(gather_u8_normalize) X(layernorm_forward) \
  X(layernorm_backward) X(residual_layernorm_forward) X(attention_forward)             \
  X(attention_backward)                                                                \
  X(embedding_forward) X(embedding_backward) X(embedding_forward_part)                 \
  X(embedding_backward_part) X(dropout_forward) X(dropout_backward) X(dropout_rows)

#define ENUM_SLOT(s) S_##s,
enum { SLOTS(ENUM_SLOT) S_COUNT };
/* the kernel slots, then the communication slots (dt_prof_comm's order) */
enum { NSLOTS = S_COUNT + DT_PROF_COMM_COUNT };
#define NAME_SLOT(s) #s,
static const char *const k_names[NSLOTS] = {
    SLOTS(NAME_SLOT) "comm tp all-reduce", "comm tp all-gather", "comm tp reduce-scatter",
    "comm pp send/recv", "comm dp bucket wait", "comm dp param all-gather"};
_Static_assert(DT_PROF_COMM_COUNT == 6, "profile.c: name every communication slot");
/* every slot but the two workspace queries: a slot added to dt_kernels
 * must be added here, or the shim would hold a NULL */
_Static_assert(S_COUNT + 2 == DT_KERNELS_SLOTS, "profile.c: SLOTS does not list every slot");

struct dt_profile {
  dt_backend_t be;
  const dt_kernels *inner; /* the backend's own table */
  dt_kernels shim;
  int on;
  double t_on;             /* when the current enabled span began */
  double wall;             /* seconds enabled */
  long units;              /* enable/disable pairs */
  long calls[NSLOTS];
  double secs[NSLOTS], flops[NSLOTS], bytes[NSLOTS];
  /* dt_profile_trace */
  long trace_left;         /* enabled spans still to trace */
  double origin;
  dt_prof_event *ev;
  size_t nev, ev_cap;
};

static void trace_add(dt_profile *p, double t0, double dur, int slot) {
  if (p->nev == p->ev_cap) {
    p->ev_cap = p->ev_cap ? 2 * p->ev_cap : 4096;
    p->ev = realloc(p->ev, p->ev_cap * sizeof *p->ev);
    DT_CHECK_ALLOC(p->ev);
  }
  p->ev[p->nev++] = (dt_prof_event){t0 - p->origin, dur, slot, 0};
}

static dt_profile *g_prof;

static double prof_begin(void) {
  dt_profile *p = g_prof;
  if (!p->on) return -1.0;
  p->be->sync(p->be);
  return dt_now();
}

static void prof_end(int slot, double t0, double flops, double bytes) {
  dt_profile *p = g_prof;
  if (t0 < 0) return;
  p->be->sync(p->be);
  const double dur = dt_now() - t0;
  p->secs[slot] += dur;
  p->calls[slot]++;
  if (p->trace_left > 0) trace_add(p, t0, dur, slot);
  p->flops[slot] += flops;
  p->bytes[slot] += bytes;
}

double dt_profile_comm_begin(void) { return g_prof ? prof_begin() : -1.0; }

void dt_profile_comm_end(dt_prof_comm slot, double t0, double bytes) {
  if (g_prof && (unsigned)slot < DT_PROF_COMM_COUNT) prof_end(S_COUNT + (int)slot, t0, 0, bytes);
}

#define K (g_prof->inner)
/* a compute-bound slot counts FLOPs, a memory-bound one bytes */
#define TIMED_FB(slot, flops, bytes, call) \
  do {                                     \
    double t0_ = prof_begin();             \
    K->call;                               \
    prof_end(S_##slot, t0_, flops, bytes); \
  } while (0)
#define TIMED(slot, flops, call) TIMED_FB(slot, flops, 0, call)
#define TIMED_B(slot, bytes, call) TIMED_FB(slot, 0, bytes, call)

/* element sizes, for the byte counts */
static double sz(dt_dtype t) { return (double)dt_dtype_size(t); }

/* 2 FLOPs per multiply-add of an (n,c) x (c,oc) product */
static double mm(double n, double c, double oc) { return 2.0 * n * c * oc; }

/* q.k and p.v over the visible pairs: causal self-attention (Tq == Tk)
 * sees (T+1)/2 keys per query on average */
static double att(int B, int Tq, int Tk, int NH, int HS, int causal) {
  double pairs = (double)Tq * Tk;
  if (causal && Tq == Tk) pairs = (double)Tq * (Tq + 1) / 2.0;
  return 4.0 * B * NH * pairs * HS;
}

/* a pooling pass: the input read `in` times (the backward's dinp and the
 * max's input), the output (or its gradient) once, fp32 */
static double pool(const dt_pool2d_shape *s, int in) {
  return 4.0 * (in * (double)s->n * s->c * s->h * s->w + (double)s->n * s->c * s->oh * s->ow);
}

static double conv(const dt_conv2d_shape *s) {
  return 2.0 * s->n * s->oc * s->oh * s->ow * (double)s->c * s->kh * s->kw;
}

static void p_linear_forward(void *ctx, void *out, dt_dtype ot, const void *inp, dt_dtype it,
                             const float *w, const float *b, int n, int c, int oc) {
  TIMED(linear_forward, mm(n, c, oc), linear_forward(ctx, out, ot, inp, it, w, b, n, c, oc));
}

static void p_linear_backward(void *ctx, float *dinp, float *dw, float *db, const void *dout,
                              dt_dtype dt, const void *inp, dt_dtype it, const float *w, int n,
                              int c, int oc) {
  double f = (dinp ? mm(n, c, oc) : 0) + (dw ? mm(n, c, oc) : 0);
  TIMED(linear_backward, f, linear_backward(ctx, dinp, dw, db, dout, dt, inp, it, w, n, c, oc));
}

static void p_linear_act_forward(void *ctx, dt_act act, void *out, void *pre, dt_dtype ot,
                                 const void *inp, dt_dtype it, const float *w, const float *b,
                                 int n, int c, int oc) {
  TIMED(linear_act_forward, mm(n, c, oc),
        linear_act_forward(ctx, act, out, pre, ot, inp, it, w, b, n, c, oc));
}

static void p_linear_backward_act(void *ctx, dt_act act, void *dpre, float *dw, float *db,
                                  const float *dout, const void *inp, const float *w,
                                  const void *pre, dt_dtype t, int n, int c, int oc) {
  double f = (dpre ? mm(n, c, oc) : 0) + (dw ? mm(n, c, oc) : 0);
  TIMED(linear_backward_act, f,
        linear_backward_act(ctx, act, dpre, dw, db, dout, inp, w, pre, t, n, c, oc));
}

static void p_lm_head_forward(void *ctx, void *logits, dt_dtype lt, int ld, const void *x,
                              dt_dtype xt, const float *w, int n, int c, int v) {
  TIMED(lm_head_forward, mm(n, c, v), lm_head_forward(ctx, logits, lt, ld, x, xt, w, n, c, v));
}

static void p_lm_head_backward(void *ctx, float *losses, float *dx, float *dw, void *scratch,
                               const void *logits, dt_dtype lt, const int32_t *targets,
                               const void *x, dt_dtype xt, const float *w, int n, int c, int v,
                               int ld, float dscale) {
  double f = (dx ? mm(n, v, c) : 0) + (dw ? mm(n, v, c) : 0);
  TIMED(lm_head_backward, f,
        lm_head_backward(ctx, losses, dx, dw, scratch, logits, lt, targets, x, xt, w, n, c, v,
                         ld, dscale));
}

static size_t p_conv2d_workspace(void *ctx, const dt_conv2d_shape *s) {
  return K->conv2d_workspace(ctx, s);
}

static void p_conv2d_forward(void *ctx, float *out, const float *inp, const float *w,
                             const float *b, const dt_conv2d_shape *s, void *ws) {
  TIMED(conv2d_forward, conv(s), conv2d_forward(ctx, out, inp, w, b, s, ws));
}

static void p_conv2d_backward(void *ctx, float *dinp, float *dw, float *db, const float *dout,
                              const float *inp, const float *w, const dt_conv2d_shape *s,
                              void *ws) {
  double f = (dinp ? conv(s) : 0) + (dw ? conv(s) : 0);
  TIMED(conv2d_backward, f, conv2d_backward(ctx, dinp, dw, db, dout, inp, w, s, ws));
}

static void p_maxpool2d_forward(void *ctx, float *out, const float *inp,
                                const dt_pool2d_shape *s) {
  TIMED_B(maxpool2d_forward, pool(s, 1), maxpool2d_forward(ctx, out, inp, s));
}

static void p_maxpool2d_backward(void *ctx, float *dinp, const float *dout, const float *inp,
                                 const dt_pool2d_shape *s) {
  TIMED_B(maxpool2d_backward, pool(s, 2), maxpool2d_backward(ctx, dinp, dout, inp, s));
}

static void p_avgpool2d_forward(void *ctx, float *out, const float *inp,
                                const dt_pool2d_shape *s) {
  TIMED_B(avgpool2d_forward, pool(s, 1), avgpool2d_forward(ctx, out, inp, s));
}

static void p_avgpool2d_backward(void *ctx, float *dinp, const float *dout,
                                 const dt_pool2d_shape *s) {
  TIMED_B(avgpool2d_backward, pool(s, 1), avgpool2d_backward(ctx, dinp, dout, s));
}

static void p_act_forward(void *ctx, dt_act act, float *out, const float *inp, size_t n) {
  TIMED_B(act_forward, 8.0 * n, act_forward(ctx, act, out, inp, n));
}

static void p_act_backward(void *ctx, dt_act act, float *dinp, const float *dout,
                           const float *inp, size_t n) {
  TIMED_B(act_backward, 12.0 * n, act_backward(ctx, act, dinp, dout, inp, n));
}

static void p_softmax_xent(void *ctx, float *losses, float *dlogits, const void *logits,
                           dt_dtype lt, const int32_t *targets, int n, int v, int ld,
                           float dscale) {
  TIMED_B(softmax_xent, (double)n * v * (sz(lt) + (dlogits ? 4 : 0)) + 8.0 * n,
          softmax_xent(ctx, losses, dlogits, logits, lt, targets, n, v, ld, dscale));
}

static void p_softmax_xent_smooth(void *ctx, float *losses, void *dlogits, const void *logits,
                                  dt_dtype lt, const int32_t *targets, int n, int v, float dscale,
                                  float smoothing) {
  TIMED_B(softmax_xent_smooth, (double)n * v * sz(lt) * (dlogits ? 2 : 1) + 8.0 * n,
        softmax_xent_smooth(ctx, losses, dlogits, logits, lt, targets, n, v, dscale, smoothing));
}

static void p_softmax_xent_part_stats(void *ctx, float *stats, const void *logits, dt_dtype lt,
                                      const int32_t *targets, int n, int v, int ld, int v0) {
  TIMED_B(softmax_xent_part_stats, (double)n * v * sz(lt) + 16.0 * n,
          softmax_xent_part_stats(ctx, stats, logits, lt, targets, n, v, ld, v0));
}

static void p_softmax_xent_part(void *ctx, float *losses, void *dlogits, const void *logits,
                                dt_dtype lt, const int32_t *targets, const float *stats,
                                int parts, int n, int v, int ld, int v0, int vtotal,
                                float dscale) {
  TIMED_B(softmax_xent_part,
          (double)n * v * sz(lt) * (dlogits ? 2 : 1) + (8.0 + 12.0 * parts) * n,
          softmax_xent_part(ctx, losses, dlogits, logits, lt, targets, stats, parts, n, v, ld,
                            v0, vtotal, dscale));
}

static void p_sgd_step(void *ctx, float *p, const float *g, float *buf, size_t n, float lr,
                       float momentum, float wd, int nesterov, int first, float grad_scale) {
  TIMED_B(sgd_step, (buf ? 20.0 : 12.0) * n,
          sgd_step(ctx, p, g, buf, n, lr, momentum, wd, nesterov, first, grad_scale));
}

static void p_adam_step(void *ctx, float *p, const float *g, float *m, float *v, size_t n,
                        float lr, float b1, float b2, float eps, float wd, int decoupled, int t,
                        float grad_scale) {
  TIMED_B(adam_step, 28.0 * n,
        adam_step(ctx, p, g, m, v, n, lr, b1, b2, eps, wd, decoupled, t, grad_scale));
}

static void p_sumsq(void *ctx, float *out, const float *x, size_t n) {
  TIMED_B(sumsq, 4.0 * n, sumsq(ctx, out, x, n));
}

static void p_scale(void *ctx, float *x, float a, size_t n) {
  TIMED_B(scale, 8.0 * n, scale(ctx, x, a, n));
}

static void p_axpy(void *ctx, float *y, float a, const float *x, size_t n) {
  TIMED_B(axpy, 12.0 * n, axpy(ctx, y, a, x, n));
}

static void p_to_bf16(void *ctx, uint16_t *dst, const float *src, size_t n) {
  TIMED_B(to_bf16, 6.0 * n, to_bf16(ctx, dst, src, n));
}

static void p_from_bf16(void *ctx, float *y, const uint16_t *x, size_t n, int accumulate) {
  TIMED_B(from_bf16, (accumulate ? 10.0 : 6.0) * n, from_bf16(ctx, y, x, n, accumulate));
}

static void p_gather_u8_normalize(void *ctx, float *out, const uint8_t *src, const int32_t *idx,
                                  int n, int row, float mean, float std) {
  TIMED_B(gather_u8_normalize, 5.0 * n * row + 4.0 * n,
          gather_u8_normalize(ctx, out, src, idx, n, row, mean, std));
}

static void p_layernorm_forward(void *ctx, void *out, dt_dtype ot, float *mean, float *rstd,
                                const float *inp, const float *weight, const float *bias, int n,
                                int c, float eps) {
  TIMED_B(layernorm_forward, (double)n * c * (4 + sz(ot)) + 8.0 * c + 8.0 * n,
        layernorm_forward(ctx, out, ot, mean, rstd, inp, weight, bias, n, c, eps));
}

static void p_layernorm_backward(void *ctx, float *dinp, float *dweight, float *dbias,
                                 const float *dout, const float *inp, const float *weight,
                                 const float *mean, const float *rstd, int n, int c) {
  TIMED_B(layernorm_backward, 16.0 * n * c + 20.0 * c + 8.0 * n,
        layernorm_backward(ctx, dinp, dweight, dbias, dout, inp, weight, mean, rstd, n, c));
}

static void p_residual_layernorm_forward(void *ctx, float *res_out, void *out, dt_dtype ot,
                                         float *mean, float *rstd, const float *a,
                                         const float *b, const float *weight, const float *bias,
                                         int n, int c, float eps) {
  TIMED_B(residual_layernorm_forward, (double)n * c * (12 + sz(ot)) + 8.0 * c + 8.0 * n,
        residual_layernorm_forward(ctx, res_out, out, ot, mean, rstd, a, b, weight, bias, n, c,
                                   eps));
}

static void p_attention_forward(void *ctx, void *out, float *lse, const void *q, const void *k,
                                const void *v, dt_dtype t, int B, int Tq, int Tk, int NH, int HS,
                                int q_stride, int kv_stride, int causal, const int32_t *key_len,
                                float scale) {
  TIMED(attention_forward, att(B, Tq, Tk, NH, HS, causal),
        attention_forward(ctx, out, lse, q, k, v, t, B, Tq, Tk, NH, HS, q_stride, kv_stride,
                          causal, key_len, scale));
}

/* the backward's five products: q.k recomputed, dv, dp, dq and dk */
static void p_attention_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                                 const void *q, const void *k, const void *v, const void *out,
                                 dt_dtype t, const float *lse, int B, int Tq, int Tk, int NH,
                                 int HS, int q_stride, int kv_stride, int causal,
                                 const int32_t *key_len, float scale) {
  TIMED(attention_backward, 2.5 * att(B, Tq, Tk, NH, HS, causal),
        attention_backward(ctx, dq, dk, dv, dout, q, k, v, out, t, lse, B, Tq, Tk, NH, HS,
                           q_stride, kv_stride, causal, key_len, scale));
}

static void p_embedding_forward(void *ctx, float *out, const int32_t *tokens, const float *wte,
                                const float *wpe, int B, int T, int C, int V) {
  TIMED_B(embedding_forward, 8.0 * B * T * C + (wpe ? 4.0 * T * C : 0) + 4.0 * B * T,
          embedding_forward(ctx, out, tokens, wte, wpe, B, T, C, V));
}

static size_t p_embedding_backward_workspace(void *ctx, int B, int T, int V) {
  return K->embedding_backward_workspace(ctx, B, T, V);
}

static void p_embedding_backward(void *ctx, float *dwte, float *dwpe, const float *dout,
                                 const int32_t *tokens, int B, int T, int C, int V, void *ws) {
  /* dwte: one row read and written per token, at most */
  TIMED_B(embedding_backward,
          4.0 * B * T * C + (dwte ? 8.0 * B * T * C : 0) + (dwpe ? 8.0 * T * C : 0) + 4.0 * B * T,
          embedding_backward(ctx, dwte, dwpe, dout, tokens, B, T, C, V, ws));
}

static void p_embedding_forward_part(void *ctx, float *out, const int32_t *tokens,
                                     const float *wte, const float *wpe, int B, int T, int C,
                                     int v0, int V) {
  TIMED_B(embedding_forward_part, 8.0 * B * T * C + (wpe ? 4.0 * T * C : 0) + 4.0 * B * T,
          embedding_forward_part(ctx, out, tokens, wte, wpe, B, T, C, v0, V));
}

static void p_embedding_backward_part(void *ctx, float *dwte, float *dwpe, const float *dout,
                                      const int32_t *tokens, int B, int T, int C, int v0, int V,
                                      void *ws) {
  TIMED_B(embedding_backward_part,
          4.0 * B * T * C + (dwte ? 8.0 * B * T * C : 0) + (dwpe ? 8.0 * T * C : 0) + 4.0 * B * T,
          embedding_backward_part(ctx, dwte, dwpe, dout, tokens, B, T, C, v0, V, ws));
}

static void p_dropout_forward(void *ctx, float *out, const float *inp, size_t n, float p,
                              uint64_t seed, uint64_t offset) {
  TIMED_B(dropout_forward, 8.0 * n, dropout_forward(ctx, out, inp, n, p, seed, offset));
}

static void p_dropout_backward(void *ctx, float *dinp, const float *dout, size_t n, float p,
                               uint64_t seed, uint64_t offset) {
  TIMED_B(dropout_backward, 8.0 * n, dropout_backward(ctx, dinp, dout, n, p, seed, offset));
}

static void p_dropout_rows(void *ctx, float *y, const float *x, int rows, size_t width,
                           size_t stride, float p, uint64_t seed, uint64_t offset) {
  TIMED_B(dropout_rows, 8.0 * rows * width,
          dropout_rows(ctx, y, x, rows, width, stride, p, seed, offset));
}

dt_profile *dt_profile_install(dt_backend_t be) {
  if (g_prof) return NULL;
  dt_profile *p = dt_calloc(1, sizeof *p);
  p->be = be;
  p->inner = be->k;
#define SET_SLOT(s) p->shim.s = p_##s;
  SLOTS(SET_SLOT)
  p->shim.conv2d_workspace = p_conv2d_workspace;
  p->shim.embedding_backward_workspace = p_embedding_backward_workspace;
  g_prof = p;
  be->k = &p->shim;
  return p;
}

void dt_profile_remove(dt_profile *p) {
  if (!p) return;
  p->be->k = p->inner;
  if (g_prof == p) g_prof = NULL;
  free(p->ev);
  free(p);
}

void dt_profile_enable(dt_profile *p, int on) {
  if (!p || !on == !p->on) return;
  p->be->sync(p->be);
  double now = dt_now();
  if (on) {
    p->t_on = now;
  } else {
    p->wall += now - p->t_on;
    p->units++;
    if (p->trace_left > 0) {
      trace_add(p, p->t_on, now - p->t_on, -1);
      p->trace_left--;
    }
  }
  p->on = on;
}

void dt_profile_trace(dt_profile *p, long units, double origin) {
  if (!p) return;
  p->trace_left = units;
  p->origin = origin;
}

const dt_prof_event *dt_profile_events(const dt_profile *p, size_t *n) {
  *n = p ? p->nev : 0;
  return p ? p->ev : NULL;
}

void dt_profile_trace_json(FILE *f, const dt_prof_event *ev, size_t n, int rank, const char *per,
                           int first) {
  fprintf(f, "%s{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,"
          "\"args\":{\"name\":\"rank %d\"}}",
          first ? "" : ",\n", rank, rank);
  fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,"
          "\"args\":{\"name\":\"kernels and communication\"}}", rank);
  fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":1,"
          "\"args\":{\"name\":\"%ss\"}}", rank, per);
  long unit = 0;
  for (size_t i = 0; i < n; i++) {
    const dt_prof_event *e = &ev[i];
    const int span = e->slot < 0 || e->slot >= NSLOTS;
    /* microseconds, to the nanosecond */
    fprintf(f, ",\n{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":%d,"
            "\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f",
            span ? per : k_names[e->slot],
            span ? per : e->slot >= S_COUNT ? "communication" : "kernel", rank, span,
            1e6 * e->t0, 1e6 * e->dur);
    if (span) fprintf(f, ",\"args\":{\"n\":%ld}", ++unit);
    fputc('}', f);
  }
}

static int find(const char *slot) {
  for (int i = 0; i < NSLOTS; i++)
    if (!strcmp(k_names[i], slot)) return i;
  return -1;
}

long dt_profile_calls(const dt_profile *p, const char *slot) {
  int i = find(slot);
  return i < 0 ? 0 : p->calls[i];
}

double dt_profile_seconds(const dt_profile *p, const char *slot) {
  int i = find(slot);
  return i < 0 ? 0.0 : p->secs[i];
}

double dt_profile_flops(const dt_profile *p, const char *slot) {
  int i = find(slot);
  return i < 0 ? 0.0 : p->flops[i];
}

double dt_profile_bytes(const dt_profile *p, const char *slot) {
  int i = find(slot);
  return i < 0 ? 0.0 : p->bytes[i];
}

long dt_profile_units(const dt_profile *p) { return p->units; }

static const dt_profile *g_sort;
static int by_time(const void *a, const void *b) {
  double x = g_sort->secs[*(const int *)a], y = g_sort->secs[*(const int *)b];
  return x < y ? 1 : x > y ? -1 : *(const int *)a - *(const int *)b;
}

void dt_profile_print(const dt_profile *p, FILE *f, const char *per) {
  const double u = p->units > 0 ? (double)p->units : 1.0;
  double in = 0;
  int order[NSLOTS], n = 0;
  for (int i = 0; i < NSLOTS; i++)
    if (p->calls[i]) order[n++] = i, in += p->secs[i];
  g_sort = p;
  qsort(order, (size_t)n, sizeof order[0], by_time);
  fprintf(f, "profile: %ld %ss on %s, %.3f ms/%s wall; every kernel call and blocking "
          "communication timed alone (synchronised before and after)\n",
          p->units, per, p->be->desc, 1e3 * p->wall / u, per);
  char calls_h[32], ms_h[32];
  snprintf(calls_h, sizeof calls_h, "calls/%s", per);
  snprintf(ms_h, sizeof ms_h, "ms/%s", per);
  fprintf(f, "  %-28s %10s %10s %7s %10s %9s %9s\n", "slot", calls_h, ms_h, "share",
          "us/call", "TFLOP/s", "GB/s");
  for (int j = 0; j < n; j++) {
    int i = order[j];
    char rate[32] = "-", bw[32] = "-";
    if (p->flops[i] > 0 && p->secs[i] > 0)
      snprintf(rate, sizeof rate, "%.3f", p->flops[i] / p->secs[i] / 1e12);
    if (p->bytes[i] > 0 && p->secs[i] > 0)
      snprintf(bw, sizeof bw, "%.1f", p->bytes[i] / p->secs[i] / 1e9);
    fprintf(f, "  %-28s %10.1f %10.3f %6.1f%% %10.1f %9s %9s\n", k_names[i], p->calls[i] / u,
            1e3 * p->secs[i] / u, p->wall > 0 ? 100.0 * p->secs[i] / p->wall : 0.0,
            1e6 * p->secs[i] / (double)p->calls[i], rate, bw);
  }
  double out = p->wall - in;
  fprintf(f, "  %-28s %10s %10.3f %6.1f%%   (copies, memsets, host work, asynchronous "
          "communication)\n",
          "outside the slots", "", 1e3 * out / u, p->wall > 0 ? 100.0 * out / p->wall : 0.0);
}
