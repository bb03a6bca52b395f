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

void dt_cpu_attention_forward(void *ctx, float *out, float *lse, const float *q, const float *k,
                              const float *v, int B, int Tq, int Tk, int NH, int HS,
                              int q_stride, int kv_stride, int causal, const int32_t *key_len,
                              float scale);
void dt_cpu_attention_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                               const float *q, const float *k, const float *v, const float *out,
                               const float *lse, int B, int Tq, int Tk, int NH, int HS,
                               int q_stride, int kv_stride, int causal, const int32_t *key_len,
                               float scale);

void dt_cuda_attention_forward(void *ctx, float *out, float *lse, const float *q, const float *k,
                               const float *v, int B, int Tq, int Tk, int NH, int HS,
                               int q_stride, int kv_stride, int causal, const int32_t *key_len,
                               float scale);
/* The tiled kernels of kernels/cuda/flash.cu, which dt_cuda_attention_*
 * use for head sizes flash_supported accepts unless the backend was made
 * with DTRAIN_ATTENTION=simple or set_attention_simple(ctx, 1) was called
 * (tests run both against the CPU). */
int dt_cuda_flash_supported(int HS);
void dt_cuda_set_attention_simple(void *ctx, int simple);
void dt_cuda_flash_forward(void *ctx, float *out, float *lse, const float *q, const float *k,
                           const float *v, int B, int Tq, int Tk, int NH, int HS, int q_stride,
                           int kv_stride, int causal, const int32_t *key_len, float scale);
void dt_cuda_flash_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                            const float *q, const float *k, const float *v, const float *out,
                            const float *lse, int B, int Tq, int Tk, int NH, int HS,
                            int q_stride, int kv_stride, int causal, const int32_t *key_len,
                            float scale);
void dt_cuda_attention_backward(void *ctx, float *dq, float *dk, float *dv, const float *dout,
                                const float *q, const float *k, const float *v,
                                const float *out, const float *lse, int B, int Tq, int Tk,
                                int NH, int HS, int q_stride, int kv_stride, int causal,
                                const int32_t *key_len, float scale);

#ifdef __cplusplus
}
#endif

#endif
