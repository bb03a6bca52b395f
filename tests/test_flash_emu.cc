/* test_flash_emu: the tiled attention kernels of kernels/cuda/flash_kernels.cuh,
 * fp32 and bf16 tensor-core, run on the CPU through tests/emu/cuda_emu.h and
 * compared with the CPU backend's attention (the fp32 reference that
 * test_kernels checks against float64 and finite differences). The bf16
 * kernels are compared with the reference on bf16-rounded q, k, v and dout,
 * within bf16 tolerances (they also round P and dS). Shapes cover partial
 * and several 64-row tiles, causal bottom-right with Tq < Tk and Tq > Tk,
 * padded keys (a batch with none), strided views into fused buffers, and
 * head sizes 16..128 including 50 and 80. Elements outside the views must
 * be left alone. This runs the same source nvcc compiles, but not on a GPU:
 * the CUDA twin tests (test_kernels --backend cuda) remain the word there. */
#include "emu/cuda_emu.h"

#include "../kernels/cuda/flash_kernels.cuh"

#include <cstdio>
#include <cstdlib>

extern "C" {
#include "backend.h"
}

static int g_pass, g_fail;

struct acase {
  int B, Tq, Tk, NH, HS, causal, padded, fused; /* fused: q,k,v in one (B,T,3,NH,HS) buffer */
};
static const acase k_cases[] = {
    {2, 130, 130, 2, 64, 1, 0, 1},  {3, 70, 150, 1, 50, 0, 1, 0}, {1, 129, 65, 1, 16, 1, 0, 0},
    {1, 64, 64, 2, 128, 1, 0, 1},   {1, 5, 300, 1, 80, 1, 1, 0},  {2, 20, 20, 3, 32, 0, 1, 1},
};

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float urand(float lo, float hi) {
  g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
  return lo + (hi - lo) * (float)((g_rng >> 11) * (1.0 / 9007199254740992.0));
}

static const float SENTINEL = 7777.0f;

struct bufs {
  std::vector<float> q, k, v, dout, out, lse, dq, dk, dv;
};

/* strides and sizes of a case: q, k, v views (separate tensors with a
 * 2-row-wide gap on each side, or one fused buffer) */
struct geom {
  int C, qs, kvs, qoff, koff, voff;
  size_t nq, nk, no, nl;
};
static geom make_geom(const acase &c) {
  geom g;
  g.C = c.NH * c.HS;
  if (c.fused) {
    g.qs = g.kvs = 3 * g.C, g.qoff = 0, g.koff = g.C, g.voff = 2 * g.C;
  } else {
    g.qs = g.kvs = g.C + 4, g.qoff = g.koff = g.voff = 2; /* gaps before and after */
  }
  g.nq = (size_t)c.B * c.Tq * g.qs;
  g.nk = (size_t)c.B * c.Tk * g.kvs;
  g.no = (size_t)c.B * c.Tq * g.C;
  g.nl = (size_t)c.B * c.NH * c.Tq;
  return g;
}

/* q/k/v storage: fused (Tq == Tk) shares one buffer; the views are offsets */
struct inputs {
  std::vector<float> qbuf, kbuf, vbuf, dout;
  const float *q, *k, *v;
};
static void make_inputs(const acase &c, const geom &g, inputs &in) {
  in.dout.resize(g.no);
  for (float &x : in.dout) x = urand(-1, 1);
  if (c.fused) {
    in.qbuf.resize(g.nq);
    for (float &x : in.qbuf) x = urand(-2, 2);
    in.q = in.qbuf.data() + g.qoff, in.k = in.qbuf.data() + g.koff, in.v = in.qbuf.data() + g.voff;
  } else {
    in.qbuf.resize(g.nq), in.kbuf.resize(g.nk), in.vbuf.resize(g.nk);
    for (float &x : in.qbuf) x = urand(-2, 2);
    for (float &x : in.kbuf) x = urand(-2, 2);
    for (float &x : in.vbuf) x = urand(-1, 1);
    in.q = in.qbuf.data() + g.qoff, in.k = in.kbuf.data() + g.koff, in.v = in.vbuf.data() + g.voff;
  }
}
static void round_inputs(const inputs &a, inputs &r) {
  r = a;
  for (auto *vec : {&r.qbuf, &r.kbuf, &r.vbuf, &r.dout})
    for (float &x : *vec) x = __bfloat162float(__float2bfloat16_rn(x));
  r.q = r.qbuf.data() + (a.q - a.qbuf.data());
  r.k = (a.kbuf.empty() ? r.qbuf.data() : r.kbuf.data()) +
        (a.k - (a.kbuf.empty() ? a.qbuf.data() : a.kbuf.data()));
  r.v = (a.vbuf.empty() ? r.qbuf.data() : r.vbuf.data()) +
        (a.v - (a.vbuf.empty() ? a.qbuf.data() : a.vbuf.data()));
}

/* gradient buffers shaped like q, k, v storage, filled with SENTINEL */
struct grads {
  std::vector<float> dqbuf, dkbuf, dvbuf, out, lse;
  float *dq, *dk, *dv;
};
static void make_grads(const acase &c, const geom &g, grads &d) {
  d.out.assign(g.no, SENTINEL), d.lse.assign(g.nl, SENTINEL);
  if (c.fused) {
    d.dqbuf.assign(g.nq, SENTINEL);
    d.dq = d.dqbuf.data() + g.qoff, d.dk = d.dqbuf.data() + g.koff, d.dv = d.dqbuf.data() + g.voff;
  } else {
    d.dqbuf.assign(g.nq, SENTINEL), d.dkbuf.assign(g.nk, SENTINEL), d.dvbuf.assign(g.nk, SENTINEL);
    d.dq = d.dqbuf.data() + g.qoff, d.dk = d.dkbuf.data() + g.koff, d.dv = d.dvbuf.data() + g.voff;
  }
}

static void run_cpu(dt_backend_t be, const acase &c, const geom &g, const inputs &in,
                    const int32_t *kl, float scale, grads &d) {
  be->k->attention_forward(be->ctx, d.out.data(), d.lse.data(), in.q, in.k, in.v, DT_F32, c.B, c.Tq, c.Tk,
                           c.NH, c.HS, g.qs, g.kvs, c.causal, kl, scale);
  be->k->attention_backward(be->ctx, d.dq, d.dk, d.dv, in.dout.data(), in.q, in.k, in.v,
                            d.out.data(), DT_F32, d.lse.data(), c.B, c.Tq, c.Tk, c.NH, c.HS, g.qs, g.kvs,
                            c.causal, kl, scale);
}

static void run_emu(int bf16, const acase &c, const geom &g, const inputs &in, const int32_t *kl,
                    float scale, grads &d) {
  const dim3 gq((c.Tq + FA_T - 1) / FA_T, c.NH, c.B), gk((c.Tk + FA_T - 1) / FA_T, c.NH, c.B);
  std::vector<float> D(g.nl, 0.0f);
  if (bf16) {
    emu::launch(gq, dim3(FB_THREADS), fb_smem(c.HS, 3, 1, 1, 1, 2), flash_bf16_fwd_kernel<float>,
                d.out.data(), d.lse.data(), in.q, in.k, in.v, c.Tq, c.Tk, c.NH, c.HS, g.qs, g.kvs,
                c.causal, kl, scale);
  } else {
    emu::launch(gq, dim3(FA_THREADS), fa_smem(c.HS, 3, 1, 0), flash_fwd_kernel, d.out.data(),
                d.lse.data(), in.q, in.k, in.v, c.Tq, c.Tk, c.NH, c.HS, g.qs, g.kvs, c.causal, kl,
                scale);
  }
  const unsigned rows = (unsigned)g.nl;
  emu::launch(dim3((rows * 32 + 255) / 256), dim3(256), 0, flash_rowdot_kernel<float>, D.data(),
              (const float *)in.dout.data(), (const float *)d.out.data(), c.B, c.Tq, c.NH, c.HS);
  const float *lse = d.lse.data(), *Dp = D.data(), *dout = in.dout.data();
  if (bf16) {
    emu::launch(gk, dim3(FB_THREADS), fb_smem(c.HS, 4, 2, 2, 2, 2), flash_bf16_dkv_kernel<float>, d.dk,
                d.dv, dout, in.q, in.k, in.v, lse, Dp, c.Tq, c.Tk, c.NH, c.HS, g.qs, g.kvs,
                c.causal, kl, scale);
    emu::launch(gq, dim3(FB_THREADS), fb_smem(c.HS, 4, 2, 1, 1, 0), flash_bf16_dq_kernel<float>, d.dq,
                dout, in.q, in.k, in.v, lse, Dp, c.Tq, c.Tk, c.NH, c.HS, g.qs, g.kvs, c.causal, kl,
                scale);
  } else {
    emu::launch(gk, dim3(FA_THREADS), fa_smem(c.HS, 4, 2, 2), flash_bwd_dkv_kernel, d.dk, d.dv,
                dout, in.q, in.k, in.v, lse, Dp, c.Tq, c.Tk, c.NH, c.HS, g.qs, g.kvs, c.causal,
                kl, scale);
    emu::launch(gq, dim3(FA_THREADS), fa_smem(c.HS, 4, 1, 0), flash_bwd_dq_kernel, d.dq, dout,
                in.q, in.k, in.v, lse, Dp, c.Tq, c.Tk, c.NH, c.HS, g.qs, g.kvs, c.causal, kl,
                scale);
  }
}

/* worst |got - want| / (atol + rtol |want|) over a view; SENTINEL must stay
 * outside the views; -inf must meet -inf */
struct cmp {
  double worst = 0, maxerr = 0;
  long outside = 0;
};
static void cmp_view(cmp &r, const float *got, const float *want, int rows, int stride, int width,
                     double atol, double rtol) {
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < width; j++) {
      const double a = got[(size_t)i * stride + j], b = want[(size_t)i * stride + j];
      double s;
      if (std::isinf(b) || std::isinf(a)) s = a == b ? 0 : INFINITY;
      else {
        const double e = std::fabs(a - b);
        r.maxerr = std::max(r.maxerr, e);
        s = e / (atol + rtol * std::fabs(b));
      }
      if (!(s <= r.worst)) r.worst = s;
    }
}
static void cmp_outside(cmp &r, const std::vector<float> &buf, const float *view, int rows,
                        int stride, int width) {
  /* every element of buf not inside the view's rows must be SENTINEL */
  std::vector<char> in(buf.size(), 0);
  const size_t off = (size_t)(view - buf.data());
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < width; j++) in[off + (size_t)i * stride + j] = 1;
  for (size_t i = 0; i < buf.size(); i++)
    if (!in[i] && buf[i] != SENTINEL) r.outside++;
}

static void check(const char *what, const acase &c, const geom &g, const grads &got,
                  const grads &want, double atol, double rtol) {
  cmp f, b;
  cmp_view(f, got.out.data(), want.out.data(), c.B * c.Tq, g.C, g.C, atol, rtol);
  cmp_view(f, got.lse.data(), want.lse.data(), 1, (int)g.nl, (int)g.nl, atol, rtol);
  cmp_view(b, got.dq, want.dq, c.B * c.Tq, g.qs, g.C, atol, rtol);
  cmp_view(b, got.dk, want.dk, c.B * c.Tk, g.kvs, g.C, atol, rtol);
  cmp_view(b, got.dv, want.dv, c.B * c.Tk, g.kvs, g.C, atol, rtol);
  if (c.fused) {
    /* the three views tile the fused buffer's rows: nothing is outside */
  } else {
    cmp_outside(b, got.dqbuf, got.dq, c.B * c.Tq, g.qs, g.C);
    cmp_outside(b, got.dkbuf, got.dk, c.B * c.Tk, g.kvs, g.C);
    cmp_outside(b, got.dvbuf, got.dv, c.B * c.Tk, g.kvs, g.C);
  }
  char desc[160];
  snprintf(desc, sizeof desc, "B=%d Tq=%d Tk=%d NH=%d HS=%d %s%s%s", c.B, c.Tq, c.Tk, c.NH, c.HS,
           c.causal ? "causal" : "full", c.padded ? " padded" : "", c.fused ? " fused-qkv" : "");
  const bool ok = f.worst <= 1.0 && b.worst <= 1.0 && b.outside == 0;
  printf("%s %-22s %s  forward maxerr %.2e, backward maxerr %.2e%s\n", ok ? "ok  " : "FAIL", what,
         desc, f.maxerr, b.maxerr, b.outside ? ", wrote outside its views" : "");
  fflush(stdout);
  ok ? g_pass++ : g_fail++;
}

int main() {
  dt_backend_t cpu = dt_backend_cpu_create(1);
  for (const acase &c : k_cases) {
    const geom g = make_geom(c);
    inputs in, in16;
    make_inputs(c, g, in);
    round_inputs(in, in16);
    std::vector<int32_t> klv(c.B);
    for (int b = 0; b < c.B; b++)
      klv[b] = b == 0 ? 1 + (int32_t)(urand(0, 1) * (c.Tk - 1)) : b == 1 ? 0 : c.Tk + 3;
    const int32_t *kl = c.padded ? klv.data() : nullptr;
    const float scale = 1.0f / std::sqrt((float)c.HS);
    grads ref, ref16, e32, e16;
    make_grads(c, g, ref), make_grads(c, g, ref16), make_grads(c, g, e32), make_grads(c, g, e16);
    run_cpu(cpu, c, g, in, kl, scale, ref);
    run_cpu(cpu, c, g, in16, kl, scale, ref16);
    run_emu(0, c, g, in, kl, scale, e32);
    check("flash fp32 vs cpu", c, g, e32, ref, 1e-4, 1e-3);
    run_emu(1, c, g, in, kl, scale, e16);
    check("flash bf16 vs cpu16", c, g, e16, ref16, 1e-2, 1e-2);
  }
  dt_backend_destroy(cpu);
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
