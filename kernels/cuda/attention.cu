/* attention.cu: multi-head attention on the GPU. Head sizes up to 128 go to
 * the tiled kernels of flash.cu; the kernels here, plain and obviously
 * correct (no tiling, no tensor cores), serve larger heads and
 * DTRAIN_ATTENTION=simple. Forward: one block per (query row, head, batch),
 * keys in tiles of blockDim with an online softmax; only lse is saved.
 * Backward: one block per query row for dq and one per key row for dk and dv,
 * each recomputing P = exp(score - lse); no atomics, so it is deterministic.
 * Dot products, exp and the running sums are in double (the build's
 * --use_fast_math leaves double alone), to track the CPU reference. */
#include <math.h>

#include "att_keys.cuh"
#include "attention.h"
#include "cuda_common.h"

#define ATT_THREADS 128


/* a (global or shared float) . b over n, in double */
static __device__ __forceinline__ double dot_d(const float *a, const float *b, int n) {
  double s = 0.0;
  for (int d = 0; d < n; d++) s += (double)a[d] * (double)b[d];
  return s;
}

/* Block-wide max of a double; every thread gets it. Starts with a barrier. */
static __device__ __forceinline__ double block_max_d(double v) {
  __shared__ double warp_part[32];
  for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) warp_part[warp] = v;
  __syncthreads();
  double m = warp_part[0];
  for (int w = 1; w < nwarps; w++) m = fmax(m, warp_part[w]);
  return m;
}

/* shared: q row (HS floats) | acc (HS doubles) | p (blockDim doubles) */
static __global__ void __launch_bounds__(ATT_THREADS)
    attention_fwd_kernel(float *out, float *lse, const float *q, const float *k, const float *v,
                         int Tq, int Tk, int NH, int HS, int q_stride, int kv_stride,
                         int causal, const int32_t *key_len, float scale) {
  DT_DYN_SMEM(double, sm);
  double *acc = sm, *ps = sm + HS;
  float *qs = (float *)(ps + blockDim.x);
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
  const float *qi = q + ((size_t)b * Tq + i) * q_stride + (size_t)h * HS;
  const float *kb = k + (size_t)b * Tk * kv_stride + (size_t)h * HS;
  const float *vb = v + (size_t)b * Tk * kv_stride + (size_t)h * HS;
  const int kend = fa_key_end(b, i, Tq, Tk, causal, key_len);
  for (int d = tid; d < HS; d += blockDim.x) qs[d] = qi[d], acc[d] = 0.0;
  __syncthreads();
  double m = -INFINITY, l = 0.0; /* uniform across the block */
  for (int j0 = 0; j0 < kend; j0 += blockDim.x) {
    const int j = j0 + tid, nt = min((int)blockDim.x, kend - j0);
    const double s = j < kend ? scale * dot_d(qs, kb + (size_t)j * kv_stride, HS) : -INFINITY;
    const double mn = fmax(m, block_max_d(s)); /* finite: the tile holds a visible key */
    const double corr = exp(m - mn), p = j < kend ? exp(s - mn) : 0.0;
    ps[tid] = p;
    l = l * corr + dt_block_sum(p); /* its barriers publish ps */
    for (int d = tid; d < HS; d += blockDim.x) {
      double a = acc[d] * corr;
      for (int t = 0; t < nt; t++) a += ps[t] * vb[(size_t)(j0 + t) * kv_stride + d];
      acc[d] = a;
    }
    m = mn;
    __syncthreads(); /* ps is rewritten by the next tile */
  }
  float *oi = out + (((size_t)b * Tq + i) * NH + h) * HS;
  for (int d = tid; d < HS; d += blockDim.x) oi[d] = kend ? (float)(acc[d] / l) : 0.0f;
  if (tid == 0) lse[((size_t)b * NH + h) * Tq + i] = kend ? (float)(m + log(l)) : -INFINITY;
}

/* dq row i: scale * sum_j P_ij (dout_i.v_j - D_i) k_j.
 * shared: gq (HS doubles) | ds (blockDim doubles) | q row, dout row (HS floats each) */
static __global__ void __launch_bounds__(ATT_THREADS)
    attention_bwd_dq_kernel(float *dq, const float *dout, const float *q, const float *k,
                            const float *v, const float *out, const float *lse, int Tq, int Tk,
                            int NH, int HS, int q_stride, int kv_stride, int causal,
                            const int32_t *key_len, float scale) {
  DT_DYN_SMEM(double, sm);
  double *gq = sm, *dss = sm + HS;
  float *qs = (float *)(dss + blockDim.x), *dos = qs + HS;
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
  const size_t qrow = ((size_t)b * Tq + i) * q_stride + (size_t)h * HS;
  const size_t orow = (((size_t)b * Tq + i) * NH + h) * HS;
  const float *kb = k + (size_t)b * Tk * kv_stride + (size_t)h * HS;
  const float *vb = v + (size_t)b * Tk * kv_stride + (size_t)h * HS;
  const int kend = fa_key_end(b, i, Tq, Tk, causal, key_len);
  double dd = 0.0;
  for (int d = tid; d < HS; d += blockDim.x) {
    qs[d] = q[qrow + d], dos[d] = dout[orow + d], gq[d] = 0.0;
    dd += (double)dout[orow + d] * out[orow + d];
  }
  const double D = dt_block_sum(dd); /* its barriers publish qs, dos */
  const double L = kend ? (double)lse[((size_t)b * NH + h) * Tq + i] : 0.0;
  for (int j0 = 0; j0 < kend; j0 += blockDim.x) {
    const int j = j0 + tid, nt = min((int)blockDim.x, kend - j0);
    double ds = 0.0;
    if (j < kend) {
      const size_t kr = (size_t)j * kv_stride;
      const double p = exp(scale * dot_d(qs, kb + kr, HS) - L);
      ds = p * (dot_d(dos, vb + kr, HS) - D) * scale;
    }
    dss[tid] = ds;
    __syncthreads();
    for (int d = tid; d < HS; d += blockDim.x) {
      double a = gq[d];
      for (int t = 0; t < nt; t++) a += dss[t] * kb[(size_t)(j0 + t) * kv_stride + d];
      gq[d] = a;
    }
    __syncthreads();
  }
  for (int d = tid; d < HS; d += blockDim.x) dq[qrow + d] = (float)gq[d];
}

/* dk, dv row j over the queries that see key j.
 * shared: gk, gv (HS doubles each) | p, ds (blockDim doubles each) | k row, v row (HS floats each) */
static __global__ void __launch_bounds__(ATT_THREADS)
    attention_bwd_dkv_kernel(float *dk, float *dv, const float *dout, const float *q,
                             const float *k, const float *v, const float *out, const float *lse,
                             int Tq, int Tk, int NH, int HS, int q_stride, int kv_stride,
                             int causal, const int32_t *key_len, float scale) {
  DT_DYN_SMEM(double, sm);
  double *gk = sm, *gv = sm + HS, *ps = sm + 2 * HS, *dss = ps + blockDim.x;
  float *ks = (float *)(dss + blockDim.x), *vs = ks + HS;
  const int j = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
  const size_t krow = ((size_t)b * Tk + j) * kv_stride + (size_t)h * HS;
  const float *qb = q + (size_t)b * Tq * q_stride + (size_t)h * HS;
  const size_t ob = (size_t)b * Tq * NH * HS + (size_t)h * HS, ostride = (size_t)NH * HS;
  const float *lb = lse + ((size_t)b * NH + h) * Tq;
  /* key j is visible to queries i >= j - (Tk - Tq) (causal), if it is not padding */
  int i0 = causal ? max(0, j - (Tk - Tq)) : 0;
  if (key_len && j >= key_len[b]) i0 = Tq;
  for (int d = tid; d < HS; d += blockDim.x) ks[d] = k[krow + d], vs[d] = v[krow + d];
  for (int d = tid; d < HS; d += blockDim.x) gk[d] = 0.0, gv[d] = 0.0;
  __syncthreads();
  for (int t0 = i0; t0 < Tq; t0 += blockDim.x) {
    const int i = t0 + tid, nt = min((int)blockDim.x, Tq - t0);
    double p = 0.0, ds = 0.0;
    if (i < Tq) {
      const float *qi = qb + (size_t)i * q_stride, *doi = dout + ob + (size_t)i * ostride;
      p = exp(scale * dot_d(qi, ks, HS) - (double)lb[i]);
      const double D = dot_d(doi, out + ob + (size_t)i * ostride, HS);
      ds = p * (dot_d(doi, vs, HS) - D) * scale;
    }
    ps[tid] = p, dss[tid] = ds;
    __syncthreads();
    for (int d = tid; d < HS; d += blockDim.x) {
      double ak = gk[d], av = gv[d];
      for (int t = 0; t < nt; t++) {
        av += ps[t] * dout[ob + (size_t)(t0 + t) * ostride + d];
        ak += dss[t] * qb[(size_t)(t0 + t) * q_stride + d];
      }
      gk[d] = ak, gv[d] = av;
    }
    __syncthreads();
  }
  for (int d = tid; d < HS; d += blockDim.x) dk[krow + d] = (float)gk[d], dv[krow + d] = (float)gv[d];
}

extern "C" void dt_cuda_set_attention_impl(void *ctx, int impl) {
  DT_CUDA_CTX(ctx)->att_impl = impl;
}

static void att_check_sizes(int B, int Tq, int Tk, int NH, int HS) {
  char msg[160];
  if (NH <= 65535 && B <= 65535 && HS <= 1024) return; /* grid y, z; shared memory */
  snprintf(msg, sizeof msg, "attention sizes out of range: B=%d Tq=%d Tk=%d NH=%d HS=%d", B, Tq,
           Tk, NH, HS);
  dt_fatal("dtrain", msg, __FILE__, __LINE__, __func__, "attention");
}

/* ---- bf16 tensors for the fp32 kernels: fp32 copies at the same places
 * (the gradients keep the strides of q, k and v), out rounded back ---- */

static __global__ void att_rows_f32_kernel(float *dst, const __nv_bfloat16 *src, size_t rows,
                                           int W, size_t stride) {
  DT_GRID_STRIDE(i, rows * (size_t)W) {
    const size_t e = i / W * stride + i % W;
    dst[e] = __bfloat162float(src[e]);
  }
}

/* fp32 copies of the bf16 views q (nq rows at qs), k and v (nk at kvs) and,
 * with out, of out (nq rows of W); *o32 gets room for an fp32 out */
static void att_f32_copies(dt_cuda_ctx *c, const void *q, const void *k, const void *v,
                           const void *out, size_t nq, size_t nk, int W, size_t qs, size_t kvs,
                           float **q32, float **k32, float **v32, float **o32) {
  const size_t nqe = nq ? (nq - 1) * qs + W : 0, nke = nk ? (nk - 1) * kvs + W : 0;
  float *base = (float *)dt_cuda_grow(&c->att_f32, &c->att_f32_cap,
                                      sizeof(float) * (nqe + 2 * nke + nq * W + 1));
  *q32 = base, *k32 = base + nqe, *v32 = *k32 + nke, *o32 = *v32 + nke;
  const struct { float *d; const void *s; size_t rows, stride; } cv[4] = {
      {*q32, q, nq, qs}, {*k32, k, nk, kvs}, {*v32, v, nk, kvs}, {*o32, out, nq, (size_t)W}};
  for (int i = 0; i < 4; i++) {
    const size_t n = cv[i].rows * W;
    if (!cv[i].s || !n) continue;
    att_rows_f32_kernel<<<dt_cuda_blocks(n, DT_CUDA_THREADS), DT_CUDA_THREADS, 0, c->stream>>>(
        cv[i].d, (const __nv_bfloat16 *)cv[i].s, cv[i].rows, W, cv[i].stride);
    CUDA_LAUNCH_CHECK();
  }
}

extern "C" void dt_cuda_attention_forward(void *ctx, void *out, float *lse, const void *q,
                                          const void *k, const void *v, dt_dtype t, int B,
                                          int Tq, int Tk, int NH, int HS, int q_stride,
                                          int kv_stride, int causal, const int32_t *key_len,
                                          float scale) {
  dt_cuda_ctx *c = DT_CUDA_CTX(ctx);
  if (B <= 0 || Tq <= 0 || NH <= 0 || HS <= 0) return;
  att_check_sizes(B, Tq, Tk, NH, HS);
  if (t == DT_BF16 && !dt_cuda_flash_bf16(ctx, HS)) {
    const int W = NH * HS;
    const size_t nq = (size_t)B * Tq;
    float *q32, *k32, *v32, *o32;
    att_f32_copies(c, q, k, v, NULL, nq, (size_t)B * Tk, W, q_stride, kv_stride, &q32, &k32,
                   &v32, &o32);
    dt_cuda_attention_forward(ctx, o32, lse, q32, k32, v32, DT_F32, B, Tq, Tk, NH, HS, q_stride,
                              kv_stride, causal, key_len, scale);
    dt_cuda_to_bf16(c, out, o32, nq * W);
    return;
  }
  if (c->att_impl != DT_ATT_SIMPLE && dt_cuda_flash_supported(ctx, HS)) {
    dt_cuda_flash_forward(ctx, out, lse, q, k, v, t, B, Tq, Tk, NH, HS, q_stride, kv_stride,
                          causal, key_len, scale);
    return;
  }
  const size_t shm = sizeof(double) * (HS + ATT_THREADS) + sizeof(float) * HS;
  attention_fwd_kernel<<<dim3(Tq, NH, B), ATT_THREADS, shm, c->stream>>>(
      (float *)out, lse, (const float *)q, (const float *)k, (const float *)v, Tq, Tk, NH, HS,
      q_stride, kv_stride, causal, key_len, scale);
  CUDA_LAUNCH_CHECK();
}

extern "C" void dt_cuda_attention_backward(void *ctx, float *dq, float *dk, float *dv,
                                           const float *dout, const void *qv, const void *kv,
                                           const void *vv, const void *outv, dt_dtype t,
                                           const float *lse, int B, int Tq, int Tk, int NH,
                                           int HS, int q_stride, int kv_stride, int causal,
                                           const int32_t *key_len, float scale) {
  dt_cuda_ctx *c = DT_CUDA_CTX(ctx);
  if (B <= 0 || NH <= 0 || HS <= 0) return;
  att_check_sizes(B, Tq, Tk, NH, HS);
  if (t == DT_BF16 && !dt_cuda_flash_bf16(ctx, HS)) {
    float *q32, *k32, *v32, *o32;
    att_f32_copies(c, qv, kv, vv, outv, (size_t)B * Tq, (size_t)B * Tk, NH * HS, q_stride,
                   kv_stride, &q32, &k32, &v32, &o32);
    dt_cuda_attention_backward(ctx, dq, dk, dv, dout, q32, k32, v32, o32, DT_F32, lse, B, Tq, Tk,
                               NH, HS, q_stride, kv_stride, causal, key_len, scale);
    return;
  }
  if (c->att_impl != DT_ATT_SIMPLE && dt_cuda_flash_supported(ctx, HS)) {
    dt_cuda_flash_backward(ctx, dq, dk, dv, dout, qv, kv, vv, outv, t, lse, B, Tq, Tk, NH, HS,
                           q_stride, kv_stride, causal, key_len, scale);
    return;
  }
  const float *q = (const float *)qv, *k = (const float *)kv, *v = (const float *)vv;
  const float *out = (const float *)outv;
  cudaStream_t st = c->stream;
  if (Tq > 0) {
    const size_t shm = sizeof(double) * (HS + ATT_THREADS) + sizeof(float) * 2 * HS;
    attention_bwd_dq_kernel<<<dim3(Tq, NH, B), ATT_THREADS, shm, st>>>(
        dq, dout, q, k, v, out, lse, Tq, Tk, NH, HS, q_stride, kv_stride, causal, key_len, scale);
    CUDA_LAUNCH_CHECK();
  }
  if (Tk > 0) {
    const size_t shm = sizeof(double) * 2 * (HS + ATT_THREADS) + sizeof(float) * 2 * HS;
    attention_bwd_dkv_kernel<<<dim3(Tk, NH, B), ATT_THREADS, shm, st>>>(
        dk, dv, dout, q, k, v, out, lse, Tq, Tk, NH, HS, q_stride, kv_stride, causal, key_len,
        scale);
    CUDA_LAUNCH_CHECK();
  }
}
