/* flash.cu: tiled flash attention (FlashAttention-2's loop order) in fp32 on
 * the CUDA cores, for head sizes up to FA_MAX_HS. attention.cu's kernels
 * take one block per query (or key) row and stream every key (or query)
 * row from L2 for it; here a block owns FA_T rows of one (batch, head),
 * stages them in shared memory once, and streams the other side through
 * shared memory FA_T rows at a time, so each loaded row is used FA_T times.
 *
 * Forward: block = FA_T query rows; an online softmax over key tiles.
 * Backward: D = rowsum(dout * out) first (flash_rowdot_kernel); then one
 * block per key tile accumulates dk, dv over the query tiles that see it,
 * and one block per query tile accumulates dq over its key tiles. Each
 * output element is summed by one thread in a fixed order: no atomics, so
 * the results are deterministic, at the price of computing P and dP twice.
 *
 * Thread layout (FA_THREADS = 256): ty = tid / 16 owns 4 rows of its block's
 * tile (ty*4 .. ty*4+3); tx = tid % 16 owns the other side's columns
 * tx + 16*b (b < 4) of a score tile, and the head dims tx + 16*e
 * (e < FA_MAX_HS/16) of an accumulator. The 16 threads of one ty are one
 * half-warp, so row reductions are shuffles over offsets 8..1. Shared rows
 * are padded to an odd stride (HS+1) so the 16 lanes reading 16 rows at the
 * same dim hit 16 banks. */
#include <math.h>

#include "attention.h"
#include "cuda_common.h"

#define FA_T 64
#define FA_THREADS 256
#define FA_MAX_HS 128
#define FA_NE (FA_MAX_HS / 16)

/* The keys query i of batch b sees are [0, key_end): as the CPU reference. */
static __device__ __forceinline__ int fa_key_end(int b, int i, int Tq, int Tk, int causal,
                                                 const int32_t *key_len) {
  long long e = Tk;
  if (key_len && key_len[b] < e) e = key_len[b];
  if (causal && (long long)i + Tk - Tq + 1 < e) e = (long long)i + Tk - Tq + 1;
  return e < 0 ? 0 : (int)e;
}

/* Rows [r0, r0 + FA_T) of a (rows, stride) tensor view (src at row 0 of this
 * batch and head) into dst (FA_T, hsp); rows at or past nrows become 0. */
static __device__ __forceinline__ void fa_load(float *dst, const float *src, size_t stride,
                                               int r0, int nrows, int HS, int hsp) {
  for (int idx = threadIdx.x; idx < FA_T * HS; idx += FA_THREADS) {
    const int r = idx / HS, d = idx - r * HS;
    dst[r * hsp + d] = r0 + r < nrows ? src[(size_t)(r0 + r) * stride + d] : 0.0f;
  }
}

static __device__ __forceinline__ float fa_half_max(float v) {
  for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
static __device__ __forceinline__ float fa_half_sum(float v) {
  for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/* s[a][b] = scale * A[ty*4+a] . B[tx+16b] over HS, from shared tiles */
static __device__ __forceinline__ void fa_scores(float s[4][4], const float *A, const float *Bm,
                                                 int HS, int hsp, int ty, int tx, float scale) {
#pragma unroll
  for (int a = 0; a < 4; a++)
#pragma unroll
    for (int b = 0; b < 4; b++) s[a][b] = 0.0f;
  for (int d = 0; d < HS; d++) {
    float x[4], y[4];
#pragma unroll
    for (int a = 0; a < 4; a++) x[a] = A[(ty * 4 + a) * hsp + d];
#pragma unroll
    for (int b = 0; b < 4; b++) y[b] = Bm[(tx + 16 * b) * hsp + d];
#pragma unroll
    for (int a = 0; a < 4; a++)
#pragma unroll
      for (int b = 0; b < 4; b++) s[a][b] = fmaf(x[a], y[b], s[a][b]);
  }
#pragma unroll
  for (int a = 0; a < 4; a++)
#pragma unroll
    for (int b = 0; b < 4; b++) s[a][b] *= scale;
}

/* acc[a][e] += sum_c W[ty*4+a][c] * X[c][tx+16e] over the FA_T columns of
 * a (FA_T, FA_T+1) weight tile W and a (FA_T, hsp) tile X */
static __device__ __forceinline__ void fa_accumulate(float acc[4][FA_NE], const float *W,
                                                     const float *X, int HS, int hsp, int ty,
                                                     int tx) {
  for (int c = 0; c < FA_T; c++) {
    float w[4];
#pragma unroll
    for (int a = 0; a < 4; a++) w[a] = W[(ty * 4 + a) * (FA_T + 1) + c];
#pragma unroll
    for (int e = 0; e < FA_NE; e++) {
      const int d = tx + 16 * e;
      if (d < HS) {
        const float x = X[c * hsp + d];
#pragma unroll
        for (int a = 0; a < 4; a++) acc[a][e] = fmaf(w[a], x, acc[a][e]);
      }
    }
  }
}

/* shared: Qs, Ks, Vs (FA_T, hsp) | Ps (FA_T, FA_T+1) */
static __global__ void __launch_bounds__(FA_THREADS)
    flash_fwd_kernel(float *out, float *lse, const float *q, const float *k, const float *v,
                     int Tq, int Tk, int NH, int HS, int q_stride, int kv_stride, int causal,
                     const int32_t *key_len, float scale) {
  extern __shared__ float fsm[];
  const int hsp = HS + 1;
  float *Qs = fsm, *Ks = Qs + FA_T * hsp, *Vs = Ks + FA_T * hsp, *Ps = Vs + FA_T * hsp;
  const int i0 = blockIdx.x * FA_T, h = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x, ty = tid >> 4, tx = tid & 15;
  const float *qb = q + (size_t)b * Tq * q_stride + (size_t)h * HS;
  const float *kb = k + (size_t)b * Tk * kv_stride + (size_t)h * HS;
  const float *vb = v + (size_t)b * Tk * kv_stride + (size_t)h * HS;
  const int ilast = min(i0 + FA_T, Tq) - 1;
  const int kmax = fa_key_end(b, ilast, Tq, Tk, causal, key_len); /* non-decreasing in i */
  int kend[4];
#pragma unroll
  for (int a = 0; a < 4; a++) kend[a] = fa_key_end(b, i0 + ty * 4 + a, Tq, Tk, causal, key_len);
  fa_load(Qs, qb, (size_t)q_stride, i0, Tq, HS, hsp);
  float m[4], l[4], o[4][FA_NE];
#pragma unroll
  for (int a = 0; a < 4; a++) {
    m[a] = -INFINITY, l[a] = 0.0f;
#pragma unroll
    for (int e = 0; e < FA_NE; e++) o[a][e] = 0.0f;
  }
  for (int j0 = 0; j0 < kmax; j0 += FA_T) {
    fa_load(Ks, kb, (size_t)kv_stride, j0, Tk, HS, hsp);
    fa_load(Vs, vb, (size_t)kv_stride, j0, Tk, HS, hsp);
    __syncthreads(); /* Qs too, on the first tile */
    float s[4][4];
    fa_scores(s, Qs, Ks, HS, hsp, ty, tx, scale);
#pragma unroll
    for (int a = 0; a < 4; a++) {
      float mt = -INFINITY;
#pragma unroll
      for (int c = 0; c < 4; c++) {
        if (j0 + tx + 16 * c >= kend[a]) s[a][c] = -INFINITY;
        mt = fmaxf(mt, s[a][c]);
      }
      const float mn = fmaxf(m[a], fa_half_max(mt));
      /* a row that has seen no key yet keeps m = -inf and adds nothing */
      const float corr = mn == -INFINITY ? 1.0f : __expf(m[a] - mn);
      float rs = 0.0f;
#pragma unroll
      for (int c = 0; c < 4; c++) {
        const float p = mn == -INFINITY ? 0.0f : __expf(s[a][c] - mn);
        Ps[(ty * 4 + a) * (FA_T + 1) + tx + 16 * c] = p;
        rs += p;
      }
      l[a] = l[a] * corr + fa_half_sum(rs);
      m[a] = mn;
#pragma unroll
      for (int e = 0; e < FA_NE; e++) o[a][e] *= corr;
    }
    __syncthreads(); /* Ps */
    fa_accumulate(o, Ps, Vs, HS, hsp, ty, tx);
    __syncthreads(); /* Ks, Vs, Ps are rewritten next tile */
  }
#pragma unroll
  for (int a = 0; a < 4; a++) {
    const int i = i0 + ty * 4 + a;
    if (i >= Tq) continue;
    float *oi = out + (((size_t)b * Tq + i) * NH + h) * HS;
    const float inv = l[a] > 0.0f ? 1.0f / l[a] : 0.0f;
#pragma unroll
    for (int e = 0; e < FA_NE; e++) {
      const int d = tx + 16 * e;
      if (d < HS) oi[d] = o[a][e] * inv;
    }
    if (tx == 0) lse[((size_t)b * NH + h) * Tq + i] = l[a] > 0.0f ? m[a] + logf(l[a]) : -INFINITY;
  }
}

/* D (B,NH,Tq) = rowsum(dout * out), one warp per row */
static __global__ void flash_rowdot_kernel(float *D, const float *dout, const float *out,
                                           int B, int Tq, int NH, int HS) {
  const size_t row = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (row >= (size_t)B * NH * Tq) return; /* whole warps leave together */
  const int i = (int)(row % Tq), h = (int)((row / Tq) % NH), b = (int)(row / ((size_t)Tq * NH));
  const size_t o = (((size_t)b * Tq + i) * NH + h) * HS;
  float s = 0.0f;
  for (int d = lane; d < HS; d += 32) s = fmaf(dout[o + d], out[o + d], s);
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  if (lane == 0) D[row] = s;
}

/* dk, dv for FA_T keys; this block's rows are keys, its score columns
 * queries. shared: Ks, Vs, Qs, dOs (FA_T, hsp) | Ps, dSs (FA_T, FA_T+1) |
 * Ls, Ds (FA_T) */
static __global__ void __launch_bounds__(FA_THREADS)
    flash_bwd_dkv_kernel(float *dk, float *dv, const float *dout, const float *q,
                         const float *k, const float *v, const float *lse, const float *Dg,
                         int Tq, int Tk, int NH, int HS, int q_stride, int kv_stride, int causal,
                         const int32_t *key_len, float scale) {
  extern __shared__ float fsm[];
  const int hsp = HS + 1;
  float *Ks = fsm, *Vs = Ks + FA_T * hsp, *Qs = Vs + FA_T * hsp, *dOs = Qs + FA_T * hsp;
  float *Ps = dOs + FA_T * hsp, *dSs = Ps + FA_T * (FA_T + 1);
  float *Ls = dSs + FA_T * (FA_T + 1), *Ds = Ls + FA_T;
  const int j0 = blockIdx.x * FA_T, h = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x, ty = tid >> 4, tx = tid & 15;
  const float *qb = q + (size_t)b * Tq * q_stride + (size_t)h * HS;
  const float *kb = k + (size_t)b * Tk * kv_stride + (size_t)h * HS;
  const float *vb = v + (size_t)b * Tk * kv_stride + (size_t)h * HS;
  const float *dob = dout + (size_t)b * Tq * NH * HS + (size_t)h * HS;
  const float *lb = lse + ((size_t)b * NH + h) * Tq, *db = Dg + ((size_t)b * NH + h) * Tq;
  fa_load(Ks, kb, (size_t)kv_stride, j0, Tk, HS, hsp);
  fa_load(Vs, vb, (size_t)kv_stride, j0, Tk, HS, hsp);
  float gk[4][FA_NE], gv[4][FA_NE];
#pragma unroll
  for (int a = 0; a < 4; a++)
#pragma unroll
    for (int e = 0; e < FA_NE; e++) gk[a][e] = gv[a][e] = 0.0f;
  /* the first query that may see key j0; none when the tile is all padding */
  int istart = causal ? max(0, j0 - (Tk - Tq)) : 0;
  if (key_len && j0 >= key_len[b]) istart = Tq;
  for (int i0 = istart; i0 < Tq; i0 += FA_T) {
    fa_load(Qs, qb, (size_t)q_stride, i0, Tq, HS, hsp);
    fa_load(dOs, dob, (size_t)NH * HS, i0, Tq, HS, hsp);
    if (tid < FA_T) {
      Ls[tid] = i0 + tid < Tq ? lb[i0 + tid] : 0.0f;
      Ds[tid] = i0 + tid < Tq ? db[i0 + tid] : 0.0f;
    }
    __syncthreads();
    float s[4][4], dp[4][4];
    fa_scores(s, Ks, Qs, HS, hsp, ty, tx, scale);   /* s[key a][query c] */
    fa_scores(dp, Vs, dOs, HS, hsp, ty, tx, 1.0f);  /* v_j . dout_i */
#pragma unroll
    for (int a = 0; a < 4; a++) {
      const int j = j0 + ty * 4 + a;
#pragma unroll
      for (int c = 0; c < 4; c++) {
        const int r = tx + 16 * c, i = i0 + r;
        const int vis = i < Tq && j < fa_key_end(b, i, Tq, Tk, causal, key_len);
        const float p = vis ? __expf(s[a][c] - Ls[r]) : 0.0f;
        Ps[(ty * 4 + a) * (FA_T + 1) + r] = p;
        dSs[(ty * 4 + a) * (FA_T + 1) + r] = vis ? p * (dp[a][c] - Ds[r]) * scale : 0.0f;
      }
    }
    __syncthreads();
    fa_accumulate(gv, Ps, dOs, HS, hsp, ty, tx);
    fa_accumulate(gk, dSs, Qs, HS, hsp, ty, tx);
    __syncthreads(); /* every tile but Ks, Vs is rewritten next */
  }
#pragma unroll
  for (int a = 0; a < 4; a++) {
    const int j = j0 + ty * 4 + a;
    if (j >= Tk) continue;
    const size_t row = ((size_t)b * Tk + j) * kv_stride + (size_t)h * HS;
#pragma unroll
    for (int e = 0; e < FA_NE; e++) {
      const int d = tx + 16 * e;
      if (d < HS) dk[row + d] = gk[a][e], dv[row + d] = gv[a][e];
    }
  }
}

/* dq for FA_T queries. shared: Qs, dOs, Ks, Vs (FA_T, hsp) | dSs (FA_T,
 * FA_T+1) */
static __global__ void __launch_bounds__(FA_THREADS)
    flash_bwd_dq_kernel(float *dq, const float *dout, const float *q, const float *k,
                        const float *v, const float *lse, const float *Dg, int Tq, int Tk,
                        int NH, int HS, int q_stride, int kv_stride, int causal,
                        const int32_t *key_len, float scale) {
  extern __shared__ float fsm[];
  const int hsp = HS + 1;
  float *Qs = fsm, *dOs = Qs + FA_T * hsp, *Ks = dOs + FA_T * hsp, *Vs = Ks + FA_T * hsp;
  float *dSs = Vs + FA_T * hsp;
  const int i0 = blockIdx.x * FA_T, h = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x, ty = tid >> 4, tx = tid & 15;
  const float *qb = q + (size_t)b * Tq * q_stride + (size_t)h * HS;
  const float *kb = k + (size_t)b * Tk * kv_stride + (size_t)h * HS;
  const float *vb = v + (size_t)b * Tk * kv_stride + (size_t)h * HS;
  const float *dob = dout + (size_t)b * Tq * NH * HS + (size_t)h * HS;
  const float *lb = lse + ((size_t)b * NH + h) * Tq, *db = Dg + ((size_t)b * NH + h) * Tq;
  const int kmax = fa_key_end(b, min(i0 + FA_T, Tq) - 1, Tq, Tk, causal, key_len);
  int kend[4];
  float L[4], D[4];
#pragma unroll
  for (int a = 0; a < 4; a++) {
    const int i = i0 + ty * 4 + a;
    kend[a] = i < Tq ? fa_key_end(b, i, Tq, Tk, causal, key_len) : 0;
    L[a] = i < Tq ? lb[i] : 0.0f;
    D[a] = i < Tq ? db[i] : 0.0f;
  }
  fa_load(Qs, qb, (size_t)q_stride, i0, Tq, HS, hsp);
  fa_load(dOs, dob, (size_t)NH * HS, i0, Tq, HS, hsp);
  float gq[4][FA_NE];
#pragma unroll
  for (int a = 0; a < 4; a++)
#pragma unroll
    for (int e = 0; e < FA_NE; e++) gq[a][e] = 0.0f;
  for (int j0 = 0; j0 < kmax; j0 += FA_T) {
    fa_load(Ks, kb, (size_t)kv_stride, j0, Tk, HS, hsp);
    fa_load(Vs, vb, (size_t)kv_stride, j0, Tk, HS, hsp);
    __syncthreads();
    float s[4][4], dp[4][4];
    fa_scores(s, Qs, Ks, HS, hsp, ty, tx, scale);
    fa_scores(dp, dOs, Vs, HS, hsp, ty, tx, 1.0f);
#pragma unroll
    for (int a = 0; a < 4; a++)
#pragma unroll
      for (int c = 0; c < 4; c++) {
        const int vis = j0 + tx + 16 * c < kend[a];
        const float p = vis ? __expf(s[a][c] - L[a]) : 0.0f;
        dSs[(ty * 4 + a) * (FA_T + 1) + tx + 16 * c] = vis ? p * (dp[a][c] - D[a]) * scale : 0.0f;
      }
    __syncthreads();
    fa_accumulate(gq, dSs, Ks, HS, hsp, ty, tx);
    __syncthreads();
  }
#pragma unroll
  for (int a = 0; a < 4; a++) {
    const int i = i0 + ty * 4 + a;
    if (i >= Tq) continue;
    const size_t row = ((size_t)b * Tq + i) * q_stride + (size_t)h * HS;
#pragma unroll
    for (int e = 0; e < FA_NE; e++) {
      const int d = tx + 16 * e;
      if (d < HS) dq[row + d] = gq[a][e];
    }
  }
}

static size_t fa_smem(int HS, int tiles, int weight_tiles, int vecs) {
  return sizeof(float) * ((size_t)tiles * FA_T * (HS + 1) +
                          (size_t)weight_tiles * FA_T * (FA_T + 1) + (size_t)vecs * FA_T);
}

/* Kernels that need more than 48 KiB of dynamic shared memory must say so
 * once per device; the largest size any head size asks is set. */
template <typename K> static void fa_allow_smem(K kernel, size_t bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  (int)bytes));
}

extern "C" int dt_cuda_flash_supported(int HS) { return HS >= 1 && HS <= FA_MAX_HS; }

extern "C" void dt_cuda_flash_forward(void *ctx, float *out, float *lse, const float *q,
                                      const float *k, const float *v, int B, int Tq, int Tk,
                                      int NH, int HS, int q_stride, int kv_stride, int causal,
                                      const int32_t *key_len, float scale) {
  const size_t shm = fa_smem(HS, 3, 1, 0);
  fa_allow_smem(flash_fwd_kernel, shm);
  flash_fwd_kernel<<<dim3((Tq + FA_T - 1) / FA_T, NH, B), FA_THREADS, shm,
                     DT_CUDA_CTX(ctx)->stream>>>(out, lse, q, k, v, Tq, Tk, NH, HS, q_stride,
                                                 kv_stride, causal, key_len, scale);
  CUDA_LAUNCH_CHECK();
}

extern "C" void dt_cuda_flash_backward(void *ctx, float *dq, float *dk, float *dv,
                                       const float *dout, const float *q, const float *k,
                                       const float *v, const float *out, const float *lse,
                                       int B, int Tq, int Tk, int NH, int HS, int q_stride,
                                       int kv_stride, int causal, const int32_t *key_len,
                                       float scale) {
  dt_cuda_ctx *c = DT_CUDA_CTX(ctx);
  const size_t nrows = (size_t)B * NH * Tq;
  float *D = NULL;
  if (nrows) {
    if (c->att_d_cap < nrows) {
      CUDA_CHECK(cudaFree(c->att_d)); /* waits for kernels still reading it */
      CUDA_CHECK(cudaMalloc((void **)&c->att_d, nrows * sizeof(float)));
      c->att_d_cap = nrows;
    }
    D = c->att_d;
    const unsigned blocks = (unsigned)((nrows * 32 + 255) / 256);
    flash_rowdot_kernel<<<blocks, 256, 0, c->stream>>>(D, dout, out, B, Tq, NH, HS);
    CUDA_LAUNCH_CHECK();
  }
  if (Tk > 0) {
    const size_t shm = fa_smem(HS, 4, 2, 2);
    fa_allow_smem(flash_bwd_dkv_kernel, shm);
    flash_bwd_dkv_kernel<<<dim3((Tk + FA_T - 1) / FA_T, NH, B), FA_THREADS, shm, c->stream>>>(
        dk, dv, dout, q, k, v, lse, D, Tq, Tk, NH, HS, q_stride, kv_stride, causal, key_len,
        scale);
    CUDA_LAUNCH_CHECK();
  }
  if (Tq > 0) {
    const size_t shm = fa_smem(HS, 4, 1, 0);
    fa_allow_smem(flash_bwd_dq_kernel, shm);
    flash_bwd_dq_kernel<<<dim3((Tq + FA_T - 1) / FA_T, NH, B), FA_THREADS, shm, c->stream>>>(
        dq, dout, q, k, v, lse, D, Tq, Tk, NH, HS, q_stride, kv_stride, causal, key_len, scale);
    CUDA_LAUNCH_CHECK();
  }
}
