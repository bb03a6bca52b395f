/* kernels/profile.h on the CPU backend: the shim gives the bits of the
 * kernels it wraps, counts calls and FLOPs only while enabled, counts
 * units per enable/disable pair, refuses a second install, and removal
 * gives the backend its own table back. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/kernels.h"
#include "../kernels/profile.h"
#include "../runtime/backend.h"
#include "../runtime/rng.h"
#include "check.h"

static float *rnd(size_t n, uint64_t seed) {
  float *x = malloc(n * sizeof(float));
  dt_rng r;
  dt_rng_seed(&r, seed, 1);
  for (size_t i = 0; i < n; i++) x[i] = (float)dt_rng_normal(&r);
  return x;
}

int main(void) {
  dt_backend_t be = dt_backend_cpu_create(1);
  const dt_kernels *own = be->k;
  enum { N = 6, C = 5, OC = 7, B = 2, T = 4, NH = 2, HS = 3 };
  float *x = rnd(N * C, 1), *w = rnd(OC * C, 2), *b = rnd(OC, 3);
  float y0[N * OC], y1[N * OC];
  own->linear_forward(be->ctx, y0, DT_F32, x, DT_F32, w, b, N, C, OC);

  CHECK(dt_profile_comm_begin() < 0, "no profile installed: communication is not timed");
  dt_profile_comm_end(DT_PROF_TP_ALLREDUCE, 0.0, 8.0); /* and ending one is harmless */
  dt_profile *p = dt_profile_install(be);
  CHECK(p && be->k != own, "install replaces the backend's table");
  CHECK(dt_profile_install(be) == NULL, "a second install is refused");

  /* disabled: runs, counts nothing (a communication slot neither) */
  double t0 = dt_profile_comm_begin();
  dt_profile_comm_end(DT_PROF_PP_SENDRECV, t0, 64.0);
  CHECK(t0 < 0 && dt_profile_calls(p, "comm pp send/recv") == 0,
        "disabled: a communication slot counts nothing");
  be->k->linear_forward(be->ctx, y1, DT_F32, x, DT_F32, w, b, N, C, OC);
  CHECK(!memcmp(y0, y1, sizeof y0) && dt_profile_calls(p, "linear_forward") == 0 &&
            dt_profile_units(p) == 0,
        "disabled: the kernel's bits, nothing counted");

  dt_profile_enable(p, 1);
  memset(y1, 0, sizeof y1);
  be->k->linear_forward(be->ctx, y1, DT_F32, x, DT_F32, w, b, N, C, OC);
  be->k->linear_forward(be->ctx, y1, DT_F32, x, DT_F32, w, b, N, C, OC);
  /* linear_backward: dinp and dw (2 products), then dw alone (1) */
  float dinp[N * C], dw[OC * C] = {0}, db[OC] = {0};
  be->k->linear_backward(be->ctx, dinp, dw, db, y0, DT_F32, x, DT_F32, w, N, C, OC);
  be->k->linear_backward(be->ctx, NULL, dw, NULL, y0, DT_F32, x, DT_F32, w, N, C, OC);
  /* causal self-attention over T = 4: 10 of the 16 (query, key) pairs */
  const int W = NH * HS;
  float *q = rnd(B * T * W, 4), *k = rnd(B * T * W, 5), *v = rnd(B * T * W, 6);
  float out[B * T * W], lse[B * NH * T];
  be->k->attention_forward(be->ctx, out, lse, q, k, v, DT_F32, B, T, T, NH, HS, W, W, 1, NULL,
                           0.5f);
  t0 = dt_profile_comm_begin(); /* what the engine wraps around a collective */
  dt_profile_comm_end(DT_PROF_TP_ALLGATHER, t0, 96.0);
  dt_profile_enable(p, 0);
  dt_profile_enable(p, 1);
  be->k->scale(be->ctx, dw, 0.5f, OC * C);
  /* memory-bound: x (N,C) read, out written, weight and bias, mean and rstd */
  float ln[N * C], mean[N], rstd[N];
  be->k->layernorm_forward(be->ctx, ln, DT_F32, mean, rstd, x, b, b, N, C, 1e-5f);
  float m1[OC * C] = {0}, v1[OC * C] = {0};
  be->k->adam_step(be->ctx, w, dw, m1, v1, OC * C, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1, 1, 1.0f);
  dt_profile_enable(p, 0);
  be->k->scale(be->ctx, dw, 0.5f, OC * C); /* disabled again: not counted */

  const double mm = 2.0 * N * C * OC;
  CHECK(!memcmp(y0, y1, sizeof y0), "enabled: the kernel's bits");
  CHECK(dt_profile_calls(p, "linear_forward") == 2 &&
            dt_profile_flops(p, "linear_forward") == 2 * mm,
        "linear_forward: 2 calls, %g FLOPs (want %g)", dt_profile_flops(p, "linear_forward"),
        2 * mm);
  CHECK(dt_profile_calls(p, "linear_backward") == 2 &&
            dt_profile_flops(p, "linear_backward") == 3 * mm,
        "linear_backward: 2 calls, %g FLOPs (want %g: dinp and dw, then dw alone)",
        dt_profile_flops(p, "linear_backward"), 3 * mm);
  const double att = 4.0 * B * NH * 10 * HS;
  CHECK(dt_profile_calls(p, "attention_forward") == 1 &&
            dt_profile_flops(p, "attention_forward") == att,
        "causal attention_forward: %g FLOPs (want %g)", dt_profile_flops(p, "attention_forward"),
        att);
  CHECK(dt_profile_calls(p, "scale") == 1 && dt_profile_flops(p, "scale") == 0 &&
            dt_profile_bytes(p, "scale") == 8.0 * OC * C && dt_profile_units(p) == 2,
        "scale counted once while enabled: no FLOPs, %g bytes (want %d); 2 units",
        dt_profile_bytes(p, "scale"), 8 * OC * C);
  const double ln_bytes = 8.0 * N * C + 8.0 * C + 8.0 * N, adam_bytes = 28.0 * OC * C;
  CHECK(dt_profile_bytes(p, "layernorm_forward") == ln_bytes &&
            dt_profile_bytes(p, "adam_step") == adam_bytes &&
            dt_profile_bytes(p, "linear_forward") == 0,
        "bytes: layernorm_forward %g (want %g), adam_step %g (want %g), none for a matmul",
        dt_profile_bytes(p, "layernorm_forward"), ln_bytes, dt_profile_bytes(p, "adam_step"),
        adam_bytes);
  CHECK(dt_profile_seconds(p, "linear_forward") > 0 && dt_profile_calls(p, "no_such_slot") == 0,
        "time is counted; an unknown slot reads 0");
  CHECK(dt_profile_calls(p, "comm tp all-gather") == 1 &&
            dt_profile_bytes(p, "comm tp all-gather") == 96.0 &&
            dt_profile_seconds(p, "comm tp all-gather") >= 0 &&
            dt_profile_calls(p, "comm tp all-reduce") == 0,
        "a communication slot counts its call and bytes while enabled, %ld calls %g bytes",
        dt_profile_calls(p, "comm tp all-gather"), dt_profile_bytes(p, "comm tp all-gather"));

  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  dt_profile_print(p, f, "step");
  fclose(f);
  CHECK(strstr(text, "profile: 2 steps") && strstr(text, "linear_forward") &&
            strstr(text, "calls/step") && strstr(text, "outside the slots") &&
            strstr(text, "GB/s") && strstr(text, "adam_step") &&
            strstr(text, "comm tp all-gather") && !strstr(text, "comm pp") &&
            !strstr(text, "conv2d_forward"),
        "the table names the slots called, and only those");
  free(text);

  /* the trace: calls of the next 2 enabled spans kept, then none */
  dt_profile_trace(p, 2, dt_now());
  for (int span = 0; span < 3; span++) {
    dt_profile_enable(p, 1);
    be->k->scale(be->ctx, dw, 0.5f, OC * C);
    t0 = dt_profile_comm_begin();
    dt_profile_comm_end(DT_PROF_DP_WAIT, t0, 0.0);
    dt_profile_enable(p, 0);
  }
  size_t nev;
  const dt_prof_event *ev = dt_profile_events(p, &nev);
  int order = nev == 6, inside = 1;
  for (size_t i = 0; order && i < nev; i++) {
    /* scale, the bucket wait, then the span that holds them */
    order &= (i % 3 == 2) == (ev[i].slot < 0) && ev[i].t0 >= 0 && ev[i].dur >= 0;
    if (i % 3 == 2)
      for (size_t j = i - 2; j < i; j++)
        inside &= ev[j].t0 >= ev[i].t0 && ev[j].t0 + ev[j].dur <= ev[i].t0 + ev[i].dur + 1e-9;
  }
  CHECK(order && inside, "trace: 2 spans of a kernel and a wait each, the calls inside their "
        "span, the third span not kept (%zu events)", nev);
  char *js = NULL;
  size_t jl = 0;
  f = open_memstream(&js, &jl);
  dt_profile_trace_json(f, ev, nev, 3, "step", 1);
  fclose(f);
  CHECK(js[0] == '{' && strstr(js, "\"name\":\"rank 3\"") &&
            strstr(js, "\"name\":\"scale\",\"cat\":\"kernel\",\"ph\":\"X\",\"pid\":3") &&
            strstr(js, "\"name\":\"comm dp bucket wait\",\"cat\":\"communication\"") &&
            strstr(js, "\"name\":\"step\",\"cat\":\"step\",\"ph\":\"X\",\"pid\":3,\"tid\":1") &&
            strstr(js, "\"args\":{\"n\":2}") && !strstr(js, "\"n\":3"),
        "trace JSON: the process named, kernels, communication and spans as complete events");
  free(js);

  dt_profile_remove(p);
  CHECK(be->k == own, "remove restores the backend's own table");
  p = dt_profile_install(be);
  CHECK(p != NULL, "a profile can be installed again after removal");
  dt_profile_remove(p);

  free(x), free(w), free(b), free(q), free(k), free(v);
  dt_backend_destroy(be);
  return check_summary();
}
