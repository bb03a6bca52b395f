/* attention.h: multi-head scaled dot-product attention (causal, padded keys,
 * cross-attention) that saves only the per-row logsumexp. Semantics are
 * documented on the slots of dt_kernels in kernels.h; kernels/cpu/attention.c
 * is the fp32 reference and kernels/cuda/attention.cu the fast path. */
#ifndef DT_KERNELS_ATTENTION_H
#define DT_KERNELS_ATTENTION_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

void dt_cpu_attention_forward(void *ctx, void *out, float *lse, const void *q, const void *k,
                              const void *v, dt_dtype t, int B, int Tq, int Tk, int NH, int HS,
                              int q_stride, int kv_stride, int causal, const int32_t *key_len,
                              float scale);
void dt_cpu_attention_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                               const void *q, const void *k, const void *v, const void *out,
                               dt_dtype t, const float *lse, int B, int Tq, int Tk, int NH,
                               int HS, int q_stride, int kv_stride, int causal,
                               const int32_t *key_len, float scale);

void dt_cuda_attention_forward(void *ctx, void *out, float *lse, const void *q, const void *k,
                               const void *v, dt_dtype t, int B, int Tq, int Tk, int NH, int HS,
                               int q_stride, int kv_stride, int causal, const int32_t *key_len,
                               float scale);
/* Which CUDA attention kernels run. AUTO: the tiled ones of
 * kernels/cuda/flash.cu for head sizes flash_supported accepts, on the
 * tensor cores (bf16 operands, fp32 accumulation) when the backend's matmul
 * precision is bf16, else in fp32; the one-row-per-block kernels of
 * attention.cu otherwise. FP32: the tiled fp32 ones even under bf16.
 * SIMPLE: always attention.cu's. The backend starts from DTRAIN_ATTENTION
 * (auto | fp32 | simple; default auto); tests set each in turn. Tensors of
 * type DT_BF16 go straight to the tensor-core kernels; the fp32 ones get
 * fp32 copies of them (and round out back), so every kind takes both. */
enum { DT_ATT_AUTO = 0, DT_ATT_FP32 = 1, DT_ATT_SIMPLE = 2 };
/* Whether the tiled fp32 kernels take head size HS on this device */
int dt_cuda_flash_supported(void *ctx, int HS);
void dt_cuda_set_attention_impl(void *ctx, int impl);
/* Whether dt_cuda_flash_* take this call on the tensor cores (and with it
 * q, k, v and out in bf16) */
int dt_cuda_flash_bf16(void *ctx, int HS);
void dt_cuda_flash_forward(void *ctx, void *out, float *lse, const void *q, const void *k,
                           const void *v, dt_dtype t, int B, int Tq, int Tk, int NH, int HS,
                           int q_stride, int kv_stride, int causal, const int32_t *key_len,
                           float scale);
void dt_cuda_flash_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                            const void *q, const void *k, const void *v, const void *out,
                            dt_dtype t, const float *lse, int B, int Tq, int Tk, int NH, int HS,
                            int q_stride, int kv_stride, int causal, const int32_t *key_len,
                            float scale);
void dt_cuda_attention_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                                const void *q, const void *k, const void *v, const void *out,
                                dt_dtype t, const float *lse, int B, int Tq, int Tk, int NH,
                                int HS, int q_stride, int kv_stride, int causal,
                                const int32_t *key_len, float scale);

#ifdef __cplusplus
}
#endif

#endif
