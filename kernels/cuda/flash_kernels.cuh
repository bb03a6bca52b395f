/* flash_kernels.cuh: the device code of flash.cu (which says how the
 * kernels work), apart from its host launchers so that tests/emu can also
 * compile it for the CPU: there DT_CUDA_EMU is defined and tests/emu/cuda_emu.h
 * provides threads, barriers, shuffles, bf16 and WMMA fragments. */
#ifndef DT_FLASH_KERNELS_CUH
#define DT_FLASH_KERNELS_CUH

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_bf16.h>
#include <mma.h>

#include "att_keys.cuh"
#include "elem.cuh"
#ifndef DT_DYN_SMEM /* cuda_common.h's, when it was not included first */
#define DT_DYN_SMEM(T, name) extern __shared__ __align__(128) T name[]
#endif

#define FA_T 64
#define FA_THREADS 256
#define FA_MAX_HS 128
#define FA_NE (FA_MAX_HS / 16)


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
  DT_DYN_SMEM(float, fsm);
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

/* D (B,NH,Tq) = rowsum(dout * out), one warp per row; out of type T */
template <typename T>
static __global__ void flash_rowdot_kernel(float *D, const float *dout, const T *out,
                                           int B, int Tq, int NH, int HS) {
  const size_t row = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (row >= (size_t)B * NH * Tq) return; /* whole warps leave together */
  const int i = (int)(row % Tq), h = (int)((row / Tq) % NH), b = (int)(row / ((size_t)Tq * NH));
  const size_t o = (((size_t)b * Tq + i) * NH + h) * HS;
  float s = 0.0f;
  for (int d = lane; d < HS; d += 32) s = fmaf(dout[o + d], dt_ld(&out[o + d]), s);
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
  DT_DYN_SMEM(float, fsm);
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
  DT_DYN_SMEM(float, fsm);
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

/* ---- bf16 tensor-core variants (train.precision = bf16) ----
 * The same tiles and loop order, with the products on the tensor cores
 * through WMMA 16x16x16 bf16 fragments and fp32 accumulation: q, k, v and
 * dout are rounded to bf16 as they are staged in shared memory, and so are
 * P (before P V, dV) and dS (before dK, dQ); the softmax, its statistics,
 * D and every accumulator stay fp32. 4 warps; warp w owns rows w*16..+15 of
 * its block's tile, and its score rows are handled two lanes per row (32
 * columns each). Head dims are padded to a multiple of 16 with zeros. */
namespace wm = nvcuda::wmma;
typedef __nv_bfloat16 bf16;
typedef wm::fragment<wm::matrix_a, 16, 16, 16, bf16, wm::row_major> fb_a;
typedef wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::row_major> fb_b_row;
typedef wm::fragment<wm::matrix_b, 16, 16, 16, bf16, wm::col_major> fb_b_col;
typedef wm::fragment<wm::accumulator, 16, 16, 16, float> fb_acc;

#define FB_THREADS 128
#define FB_LDS (FA_T + 4) /* fp32 score tiles */
#define FB_LDP (FA_T + 8) /* bf16 P / dS tiles */

/* Leading dimensions for head size HS: bf16 row tiles, fp32 accumulators.
 * Every region and fragment offset is a multiple of 32 bytes (WMMA). */
struct fb_dims {
  int hs16, ldh, ldo;
  __host__ __device__ fb_dims(int HS) : hs16((HS + 15) / 16 * 16), ldh(hs16 + 8), ldo(hs16 + 4) {}
};

/* rows [r0, r0 + FA_T) of a (rows, stride) fp32 or bf16 view into a bf16
 * tile (FA_T, ldh), fp32 rounded to nearest even, bf16 as it is; rows at or
 * past nrows and dims at or past HS become 0 */
static __device__ __forceinline__ bf16 fb_cvt(float x) { return __float2bfloat16_rn(x); }
static __device__ __forceinline__ bf16 fb_cvt(bf16 x) { return x; }
template <typename T>
static __device__ __forceinline__ void fb_load(bf16 *dst, const T *src, size_t stride, int r0,
                                               int nrows, int HS, const fb_dims &g) {
  for (int idx = threadIdx.x; idx < FA_T * g.hs16; idx += FB_THREADS) {
    const int r = idx / g.hs16, d = idx - r * g.hs16;
    dst[r * g.ldh + d] = r0 + r < nrows && d < HS ? fb_cvt(src[(size_t)(r0 + r) * stride + d])
                                                  : fb_cvt(0.0f);
  }
}

/* out (16 x 64, ld FB_LDS) = A rows (16 x hs16, ld ldh) . B rows^T, B a
 * (64 x hs16, ld ldh) tile whose rows are the output columns */
static __device__ __forceinline__ void fb_scores(float *out, const bf16 *A, const bf16 *Bt,
                                                 const fb_dims &g) {
  for (int n = 0; n < FA_T / 16; n++) {
    fb_acc c;
    wm::fill_fragment(c, 0.0f);
    for (int kk = 0; kk < g.hs16; kk += 16) {
      fb_a a;
      fb_b_col b;
      wm::load_matrix_sync(a, A + kk, g.ldh);
      wm::load_matrix_sync(b, Bt + n * 16 * g.ldh + kk, g.ldh);
      wm::mma_sync(c, a, b, c);
    }
    wm::store_matrix_sync(out + n * 16, c, FB_LDS, wm::mem_row_major);
  }
}

/* acc (16 x hs16 fp32, ld ldo) += W (16 x 64 bf16, ld FB_LDP) . X (64 x hs16, ld ldh) */
static __device__ __forceinline__ void fb_accumulate(float *acc, const bf16 *W, const bf16 *X,
                                                     const fb_dims &g) {
  for (int n = 0; n < g.hs16; n += 16) {
    fb_acc c;
    wm::load_matrix_sync(c, acc + n, g.ldo, wm::mem_row_major);
    for (int kk = 0; kk < FA_T; kk += 16) {
      fb_a a;
      fb_b_row b;
      wm::load_matrix_sync(a, W + kk, FB_LDP);
      wm::load_matrix_sync(b, X + kk * g.ldh + n, g.ldh);
      wm::mma_sync(c, a, b, c);
    }
    wm::store_matrix_sync(acc + n, c, g.ldo, wm::mem_row_major);
  }
}

static __host__ __device__ size_t fb_align(size_t bytes) { return (bytes + 127) / 128 * 128; }

/* shared: Qs Ks Vs (bf16 FA_T x ldh) | S (fp32 FA_T x FB_LDS) | O (fp32 FA_T
 * x ldo) | P (bf16 FA_T x FB_LDP) | M, L (fp32 FA_T) */
template <typename T>
static __global__ void __launch_bounds__(FB_THREADS)
    flash_bf16_fwd_kernel(T *out, float *lse, const T *q, const T *k, const T *v, int Tq, int Tk,
                          int NH, int HS, int q_stride, int kv_stride, int causal,
                          const int32_t *key_len, float scale) {
  DT_DYN_SMEM(unsigned char, fbsm);
  const fb_dims g(HS);
  const size_t tile = fb_align(sizeof(bf16) * FA_T * g.ldh);
  bf16 *Qs = (bf16 *)fbsm, *Ks = (bf16 *)(fbsm + tile), *Vs = (bf16 *)(fbsm + 2 * tile);
  float *S = (float *)(fbsm + 3 * tile);
  float *O = S + FA_T * FB_LDS;
  bf16 *P = (bf16 *)(O + FA_T * g.ldo);
  float *M = (float *)(P + FA_T * FB_LDP), *L = M + FA_T;
  const int i0 = blockIdx.x * FA_T, h = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31;
  const T *qb = q + (size_t)b * Tq * q_stride + (size_t)h * HS;
  const T *kb = k + (size_t)b * Tk * kv_stride + (size_t)h * HS;
  const T *vb = v + (size_t)b * Tk * kv_stride + (size_t)h * HS;
  const int kmax = fa_key_end(b, min(i0 + FA_T, Tq) - 1, Tq, Tk, causal, key_len);
  const int r = w * 16 + (lane >> 1), c0 = (lane & 1) * 32; /* this lane's score row, columns */
  const int kend = fa_key_end(b, i0 + r, Tq, Tk, causal, key_len);
  fb_load(Qs, qb, (size_t)q_stride, i0, Tq, HS, g);
  for (int idx = tid; idx < FA_T * g.ldo; idx += FB_THREADS) O[idx] = 0.0f;
  if (tid < FA_T) M[tid] = -INFINITY, L[tid] = 0.0f;
  for (int j0 = 0; j0 < kmax; j0 += FA_T) {
    __syncthreads(); /* Ks, Vs free again (and Qs, O, M, L published) */
    fb_load(Ks, kb, (size_t)kv_stride, j0, Tk, HS, g);
    fb_load(Vs, vb, (size_t)kv_stride, j0, Tk, HS, g);
    __syncthreads();
    float *Sw = S + w * 16 * FB_LDS;
    fb_scores(Sw, Qs + w * 16 * g.ldh, Ks, g);
    __syncwarp();
    float *srow = S + r * FB_LDS + c0;
    float mt = -INFINITY;
    for (int c = 0; c < 32; c++) {
      const float s = j0 + c0 + c < kend ? srow[c] * scale : -INFINITY;
      srow[c] = s;
      mt = fmaxf(mt, s);
    }
    mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
    const float mo = M[r], mn = fmaxf(mo, mt);
    const float corr = mn == -INFINITY ? 1.0f : __expf(mo - mn);
    float rs = 0.0f;
    bf16 *prow = P + r * FB_LDP + c0;
    for (int c = 0; c < 32; c++) {
      const bf16 p = __float2bfloat16_rn(mn == -INFINITY ? 0.0f : __expf(srow[c] - mn));
      prow[c] = p;
      rs += __bfloat162float(p); /* the sum of what P V adds up */
    }
    rs += __shfl_xor_sync(0xffffffffu, rs, 1);
    for (int d = lane & 1; d < g.hs16; d += 2) O[r * g.ldo + d] *= corr;
    __syncwarp(); /* both lanes of the row read M before it changes */
    if (!(lane & 1)) M[r] = mn, L[r] = L[r] * corr + rs;
    __syncwarp();
    fb_accumulate(O + w * 16 * g.ldo, P + w * 16 * FB_LDP, Vs, g);
  }
  __syncthreads(); /* O, M, L of a block with no key tile come from other warps */
  for (int idx = lane; idx < 16 * HS; idx += 32) {
    const int rr = w * 16 + idx / HS, d = idx % HS, i = i0 + rr;
    if (i < Tq)
      dt_st(&out[(((size_t)b * Tq + i) * NH + h) * HS + d],
             L[rr] > 0.0f ? O[rr * g.ldo + d] / L[rr] : 0.0f);
  }
  if (lane < 16) {
    const int rr = w * 16 + lane, i = i0 + rr;
    if (i < Tq) lse[((size_t)b * NH + h) * Tq + i] = L[rr] > 0.0f ? M[rr] + logf(L[rr]) : -INFINITY;
  }
}

/* dk, dv for FA_T keys (warp w: keys w*16..+15), over the query tiles that
 * see them. shared: Ks Vs Qs dOs (bf16) | S dP (fp32 FA_T x FB_LDS) | Pt dSt
 * (bf16 FA_T x FB_LDP) | dK dV (fp32 FA_T x ldo) | Lq Dq (fp32 FA_T) */
template <typename T>
static __global__ void __launch_bounds__(FB_THREADS)
    flash_bf16_dkv_kernel(float *dk, float *dv, const float *dout, const T *q, const T *k,
                          const T *v, const float *lse, const float *Dg,
                          int Tq, int Tk, int NH, int HS, int q_stride, int kv_stride,
                          int causal, const int32_t *key_len, float scale) {
  DT_DYN_SMEM(unsigned char, fbsm);
  const fb_dims g(HS);
  const size_t tile = fb_align(sizeof(bf16) * FA_T * g.ldh);
  bf16 *Ks = (bf16 *)fbsm, *Vs = (bf16 *)(fbsm + tile), *Qs = (bf16 *)(fbsm + 2 * tile),
       *dOs = (bf16 *)(fbsm + 3 * tile);
  float *S = (float *)(fbsm + 4 * tile), *dP = S + FA_T * FB_LDS;
  bf16 *Pt = (bf16 *)(dP + FA_T * FB_LDS), *dSt = Pt + FA_T * FB_LDP;
  float *dK = (float *)(dSt + FA_T * FB_LDP), *dV = dK + FA_T * g.ldo;
  float *Lq = dV + FA_T * g.ldo, *Dq = Lq + FA_T;
  const int j0 = blockIdx.x * FA_T, h = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31;
  const T *qb = q + (size_t)b * Tq * q_stride + (size_t)h * HS;
  const T *kb = k + (size_t)b * Tk * kv_stride + (size_t)h * HS;
  const T *vb = v + (size_t)b * Tk * kv_stride + (size_t)h * HS;
  const float *dob = dout + (size_t)b * Tq * NH * HS + (size_t)h * HS;
  const float *lb = lse + ((size_t)b * NH + h) * Tq, *db = Dg + ((size_t)b * NH + h) * Tq;
  const int r = w * 16 + (lane >> 1), c0 = (lane & 1) * 32, j = j0 + r;
  fb_load(Ks, kb, (size_t)kv_stride, j0, Tk, HS, g);
  fb_load(Vs, vb, (size_t)kv_stride, j0, Tk, HS, g);
  for (int idx = tid; idx < 2 * FA_T * g.ldo; idx += FB_THREADS) dK[idx] = 0.0f; /* dK, dV */
  int istart = causal ? max(0, j0 - (Tk - Tq)) : 0;
  if (key_len && j0 >= key_len[b]) istart = Tq;
  for (int i0 = istart; i0 < Tq; i0 += FA_T) {
    __syncthreads(); /* Qs, dOs, Lq, Dq free again */
    fb_load(Qs, qb, (size_t)q_stride, i0, Tq, HS, g);
    fb_load(dOs, dob, (size_t)NH * HS, i0, Tq, HS, g);
    if (tid < FA_T) {
      Lq[tid] = i0 + tid < Tq ? lb[i0 + tid] : 0.0f;
      Dq[tid] = i0 + tid < Tq ? db[i0 + tid] : 0.0f;
    }
    __syncthreads();
    fb_scores(S + w * 16 * FB_LDS, Ks + w * 16 * g.ldh, Qs, g);   /* k_j . q_i */
    fb_scores(dP + w * 16 * FB_LDS, Vs + w * 16 * g.ldh, dOs, g); /* v_j . dout_i */
    __syncwarp();
    for (int c = 0; c < 32; c++) {
      const int col = c0 + c, i = i0 + col;
      const int vis = i < Tq && j < fa_key_end(b, i, Tq, Tk, causal, key_len);
      const bf16 p =
          __float2bfloat16_rn(vis ? __expf(S[r * FB_LDS + col] * scale - Lq[col]) : 0.0f);
      Pt[r * FB_LDP + col] = p;
      dSt[r * FB_LDP + col] = __float2bfloat16_rn(
          vis ? __bfloat162float(p) * (dP[r * FB_LDS + col] - Dq[col]) * scale : 0.0f);
    }
    __syncwarp();
    fb_accumulate(dV + w * 16 * g.ldo, Pt + w * 16 * FB_LDP, dOs, g);
    fb_accumulate(dK + w * 16 * g.ldo, dSt + w * 16 * FB_LDP, Qs, g);
  }
  __syncthreads(); /* dK, dV of a block with no query tile were zeroed by all */
  for (int idx = lane; idx < 16 * HS; idx += 32) {
    const int rr = w * 16 + idx / HS, d = idx % HS, jj = j0 + rr;
    if (jj < Tk) {
      const size_t row = ((size_t)b * Tk + jj) * kv_stride + (size_t)h * HS;
      dk[row + d] = dK[rr * g.ldo + d], dv[row + d] = dV[rr * g.ldo + d];
    }
  }
}

/* dq for FA_T queries (warp w: queries w*16..+15) over their key tiles.
 * shared: Qs dOs Ks Vs (bf16) | S dP (fp32) | dS (bf16) | dQ (fp32) */
template <typename T>
static __global__ void __launch_bounds__(FB_THREADS)
    flash_bf16_dq_kernel(float *dq, const float *dout, const T *q, const T *k, const T *v,
                         const float *lse, const float *Dg, int Tq, int Tk,
                         int NH, int HS, int q_stride, int kv_stride, int causal,
                         const int32_t *key_len, float scale) {
  DT_DYN_SMEM(unsigned char, fbsm);
  const fb_dims g(HS);
  const size_t tile = fb_align(sizeof(bf16) * FA_T * g.ldh);
  bf16 *Qs = (bf16 *)fbsm, *dOs = (bf16 *)(fbsm + tile), *Ks = (bf16 *)(fbsm + 2 * tile),
       *Vs = (bf16 *)(fbsm + 3 * tile);
  float *S = (float *)(fbsm + 4 * tile), *dP = S + FA_T * FB_LDS;
  bf16 *dS = (bf16 *)(dP + FA_T * FB_LDS);
  float *dQ = (float *)(dS + FA_T * FB_LDP);
  const int i0 = blockIdx.x * FA_T, h = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31;
  const T *qb = q + (size_t)b * Tq * q_stride + (size_t)h * HS;
  const T *kb = k + (size_t)b * Tk * kv_stride + (size_t)h * HS;
  const T *vb = v + (size_t)b * Tk * kv_stride + (size_t)h * HS;
  const float *dob = dout + (size_t)b * Tq * NH * HS + (size_t)h * HS;
  const int kmax = fa_key_end(b, min(i0 + FA_T, Tq) - 1, Tq, Tk, causal, key_len);
  const int r = w * 16 + (lane >> 1), c0 = (lane & 1) * 32, i = i0 + r;
  const int kend = i < Tq ? fa_key_end(b, i, Tq, Tk, causal, key_len) : 0;
  const float Li = i < Tq ? lse[((size_t)b * NH + h) * Tq + i] : 0.0f;
  const float Di = i < Tq ? Dg[((size_t)b * NH + h) * Tq + i] : 0.0f;
  fb_load(Qs, qb, (size_t)q_stride, i0, Tq, HS, g);
  fb_load(dOs, dob, (size_t)NH * HS, i0, Tq, HS, g);
  for (int idx = tid; idx < FA_T * g.ldo; idx += FB_THREADS) dQ[idx] = 0.0f;
  for (int j0 = 0; j0 < kmax; j0 += FA_T) {
    __syncthreads(); /* Ks, Vs free again (and Qs, dOs, dQ published) */
    fb_load(Ks, kb, (size_t)kv_stride, j0, Tk, HS, g);
    fb_load(Vs, vb, (size_t)kv_stride, j0, Tk, HS, g);
    __syncthreads();
    fb_scores(S + w * 16 * FB_LDS, Qs + w * 16 * g.ldh, Ks, g);
    fb_scores(dP + w * 16 * FB_LDS, dOs + w * 16 * g.ldh, Vs, g);
    __syncwarp();
    for (int c = 0; c < 32; c++) {
      const int col = c0 + c, vis = j0 + col < kend;
      const bf16 p = __float2bfloat16_rn(vis ? __expf(S[r * FB_LDS + col] * scale - Li) : 0.0f);
      dS[r * FB_LDP + col] = __float2bfloat16_rn(
          vis ? __bfloat162float(p) * (dP[r * FB_LDS + col] - Di) * scale : 0.0f);
    }
    __syncwarp();
    fb_accumulate(dQ + w * 16 * g.ldo, dS + w * 16 * FB_LDP, Ks, g);
  }
  __syncthreads();
  for (int idx = lane; idx < 16 * HS; idx += 32) {
    const int rr = w * 16 + idx / HS, d = idx % HS, ii = i0 + rr;
    if (ii < Tq) dq[((size_t)b * Tq + ii) * q_stride + (size_t)h * HS + d] = dQ[rr * g.ldo + d];
  }
}


/* ---- host: dynamic shared memory of each kernel ---- */

/* bytes of shared memory: bf16 tiles, fp32 score tiles, bf16 weight tiles,
 * fp32 accumulators, fp32 vectors of FA_T */
static inline size_t fb_smem(int HS, int tiles, int scores, int weights, int accs, int vecs) {
  const fb_dims g(HS);
  return (size_t)tiles * fb_align(sizeof(bf16) * FA_T * g.ldh) +
         sizeof(float) * ((size_t)scores * FA_T * FB_LDS + (size_t)accs * FA_T * g.ldo +
                          (size_t)vecs * FA_T) +
         sizeof(bf16) * (size_t)weights * FA_T * FB_LDP;
}

static inline size_t fa_smem(int HS, int tiles, int weight_tiles, int vecs) {
  return sizeof(float) * ((size_t)tiles * FA_T * (HS + 1) +
                          (size_t)weight_tiles * FA_T * (FA_T + 1) + (size_t)vecs * FA_T);
}

#endif
