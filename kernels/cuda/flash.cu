/* flash.cu: the host side of tiled flash attention (FlashAttention-2's loop
 * order) for head sizes up to FA_MAX_HS; the kernels are in
 * flash_kernels.cuh: in fp32 on the CUDA cores, and under train.precision =
 * bf16 on the tensor cores (its fb_ kernels). attention.cu's kernels take
 * one block per query (or key) row and stream every key (or query)
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
#include "flash_kernels.cuh"

/* A kernel that needs more than 48 KiB of dynamic shared memory must opt in.
 * Each kernel's largest request so far is remembered (`allowed`, one per
 * call site), so the driver is asked only when a launch needs more; a
 * process uses one GPU. */
template <typename K> static void fa_allow_smem(K kernel, size_t bytes, size_t *allowed) {
  if (bytes <= *allowed) return;
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  (int)bytes));
  *allowed = bytes;
}
#define FA_ALLOW_SMEM(kernel, bytes)           \
  do {                                         \
    static size_t allowed_ = 48 * 1024;        \
    fa_allow_smem(kernel, bytes, &allowed_);   \
  } while (0)

/* Each kernel's dynamic shared memory at head size HS (flash_kernels.cuh's
 * carve-ups), for its launch and for the checks below */
static size_t fa_fwd_smem(int HS) { return fa_smem(HS, 3, 1, 0); }
static size_t fa_dkv_smem(int HS) { return fa_smem(HS, 4, 2, 2); }
static size_t fa_dq_smem(int HS) { return fa_smem(HS, 4, 1, 0); }
static size_t fb_fwd_smem(int HS) { return fb_smem(HS, 3, 1, 1, 1, 2); }
static size_t fb_dkv_smem(int HS) { return fb_smem(HS, 4, 2, 2, 2, 2); }
static size_t fb_dq_smem(int HS) { return fb_smem(HS, 4, 2, 1, 1, 0); }

/* The most either family asks for. On an H100 all fit up to FA_MAX_HS; an
 * A100 (-Dgpu_arch=80, 163 KiB) lacks room for the tensor-core dk/dv kernel
 * above head size ~100, and the caller then takes the next kind down
 * instead of failing at launch. */
static size_t fa_smem_need(int HS) {
  return DT_MAX(fa_fwd_smem(HS), DT_MAX(fa_dkv_smem(HS), fa_dq_smem(HS)));
}
static size_t fb_smem_need(int HS) {
  return DT_MAX(fb_fwd_smem(HS), DT_MAX(fb_dkv_smem(HS), fb_dq_smem(HS)));
}

/* head size HS within the kernels' reach, with `need` bytes a block */
static int flash_fits(const dt_cuda_ctx *c, int HS, size_t need) {
  return HS >= 1 && HS <= FA_MAX_HS && need <= c->smem_optin;
}

extern "C" int dt_cuda_flash_supported(void *ctx, int HS) {
  return flash_fits(DT_CUDA_CTX(ctx), HS, fa_smem_need(HS));
}

extern "C" int dt_cuda_flash_bf16(void *ctx, int HS) {
  const dt_cuda_ctx *c = DT_CUDA_CTX(ctx);
  return c->matmul_bf16 && c->att_impl == DT_ATT_AUTO && flash_fits(c, HS, fb_smem_need(HS));
}

/* The tensor-core kernels on q, k, v and out of type T (fp32 or bf16) */
template <typename T>
static void fb_forward(dt_cuda_ctx *c, void *out, float *lse, const void *q, const void *k,
                       const void *v, int B, int Tq, int Tk, int NH, int HS, int q_stride,
                       int kv_stride, int causal, const int32_t *key_len, float scale) {
  const size_t shm = fb_fwd_smem(HS);
  FA_ALLOW_SMEM(flash_bf16_fwd_kernel<T>, shm);
  flash_bf16_fwd_kernel<T><<<dim3((Tq + FA_T - 1) / FA_T, NH, B), FB_THREADS, shm, c->stream>>>(
      (T *)out, lse, (const T *)q, (const T *)k, (const T *)v, Tq, Tk, NH, HS, q_stride,
      kv_stride, causal, key_len, scale);
  CUDA_LAUNCH_CHECK();
}

template <typename T>
static void fb_backward(dt_cuda_ctx *c, float *dq, float *dk, float *dv, const float *dout,
                        const void *q, const void *k, const void *v, const float *lse,
                        const float *D, int B, int Tq, int Tk, int NH, int HS, int q_stride,
                        int kv_stride, int causal, const int32_t *key_len, float scale) {
  if (Tk > 0) {
    const size_t shm = fb_dkv_smem(HS);
    FA_ALLOW_SMEM(flash_bf16_dkv_kernel<T>, shm);
    flash_bf16_dkv_kernel<T><<<dim3((Tk + FA_T - 1) / FA_T, NH, B), FB_THREADS, shm,
                               c->stream>>>(dk, dv, dout, (const T *)q, (const T *)k,
                                            (const T *)v, lse, D, Tq, Tk, NH, HS, q_stride,
                                            kv_stride, causal, key_len, scale);
    CUDA_LAUNCH_CHECK();
  }
  if (Tq > 0) {
    const size_t shm = fb_dq_smem(HS);
    FA_ALLOW_SMEM(flash_bf16_dq_kernel<T>, shm);
    flash_bf16_dq_kernel<T><<<dim3((Tq + FA_T - 1) / FA_T, NH, B), FB_THREADS, shm,
                              c->stream>>>(dq, dout, (const T *)q, (const T *)k, (const T *)v,
                                           lse, D, Tq, Tk, NH, HS, q_stride, kv_stride, causal,
                                           key_len, scale);
    CUDA_LAUNCH_CHECK();
  }
}

/* t = DT_BF16 only where dt_cuda_flash_bf16 (attention.cu sees to it) */
extern "C" void dt_cuda_flash_forward(void *ctx, void *out, float *lse, const void *q,
                                      const void *k, const void *v, dt_dtype t, int B, int Tq,
                                      int Tk, int NH, int HS, int q_stride, int kv_stride,
                                      int causal, const int32_t *key_len, float scale) {
  dt_cuda_ctx *c = DT_CUDA_CTX(ctx);
  if (dt_cuda_flash_bf16(ctx, HS)) {
    if (t == DT_BF16)
      fb_forward<__nv_bfloat16>(c, out, lse, q, k, v, B, Tq, Tk, NH, HS, q_stride, kv_stride,
                                causal, key_len, scale);
    else
      fb_forward<float>(c, out, lse, q, k, v, B, Tq, Tk, NH, HS, q_stride, kv_stride, causal,
                        key_len, scale);
    return;
  }
  const size_t shm = fa_fwd_smem(HS);
  FA_ALLOW_SMEM(flash_fwd_kernel, shm);
  flash_fwd_kernel<<<dim3((Tq + FA_T - 1) / FA_T, NH, B), FA_THREADS, shm, c->stream>>>(
      (float *)out, lse, (const float *)q, (const float *)k, (const float *)v, Tq, Tk, NH, HS,
      q_stride, kv_stride, causal, key_len, scale);
  CUDA_LAUNCH_CHECK();
}

extern "C" void dt_cuda_flash_backward(void *ctx, float *dq, float *dk, float *dv,
                                       const float *dout, const void *q, const void *k,
                                       const void *v, const void *out, dt_dtype t,
                                       const float *lse, int B, int Tq, int Tk, int NH, int HS,
                                       int q_stride, int kv_stride, int causal,
                                       const int32_t *key_len, float scale) {
  dt_cuda_ctx *c = DT_CUDA_CTX(ctx);
  const size_t nrows = (size_t)B * NH * Tq;
  float *D = NULL;
  if (nrows) {
    D = (float *)dt_cuda_grow(&c->att_d, &c->att_d_cap, nrows * sizeof(float));
    const unsigned blocks = (unsigned)((nrows * 32 + 255) / 256);
    if (t == DT_BF16)
      flash_rowdot_kernel<__nv_bfloat16><<<blocks, 256, 0, c->stream>>>(
          D, dout, (const __nv_bfloat16 *)out, B, Tq, NH, HS);
    else
      flash_rowdot_kernel<float><<<blocks, 256, 0, c->stream>>>(D, dout, (const float *)out, B,
                                                                 Tq, NH, HS);
    CUDA_LAUNCH_CHECK();
  }
  if (dt_cuda_flash_bf16(ctx, HS)) {
    if (t == DT_BF16)
      fb_backward<__nv_bfloat16>(c, dq, dk, dv, dout, q, k, v, lse, D, B, Tq, Tk, NH, HS,
                                 q_stride, kv_stride, causal, key_len, scale);
    else
      fb_backward<float>(c, dq, dk, dv, dout, q, k, v, lse, D, B, Tq, Tk, NH, HS, q_stride,
                         kv_stride, causal, key_len, scale);
    return;
  }
  const float *qf = (const float *)q, *kf = (const float *)k, *vf = (const float *)v;
  if (Tk > 0) {
    const size_t shm = fa_dkv_smem(HS);
    FA_ALLOW_SMEM(flash_bwd_dkv_kernel, shm);
    flash_bwd_dkv_kernel<<<dim3((Tk + FA_T - 1) / FA_T, NH, B), FA_THREADS, shm, c->stream>>>(
        dk, dv, dout, qf, kf, vf, lse, D, Tq, Tk, NH, HS, q_stride, kv_stride, causal, key_len,
        scale);
    CUDA_LAUNCH_CHECK();
  }
  if (Tq > 0) {
    const size_t shm = fa_dq_smem(HS);
    FA_ALLOW_SMEM(flash_bwd_dq_kernel, shm);
    flash_bwd_dq_kernel<<<dim3((Tq + FA_T - 1) / FA_T, NH, B), FA_THREADS, shm, c->stream>>>(
        dq, dout, qf, kf, vf, lse, D, Tq, Tk, NH, HS, q_stride, kv_stride, causal, key_len,
        scale);
    CUDA_LAUNCH_CHECK();
  }
}
