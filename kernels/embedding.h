/* embedding.h: token + position embedding lookup and its deterministic
 * backward. Semantics are documented on the slots of dt_kernels in kernels.h;
 * kernels/cpu/embedding.c is the fp32 reference and kernels/cuda/embedding.cu
 * the fast path. */
#ifndef DT_KERNELS_EMBEDDING_H
#define DT_KERNELS_EMBEDDING_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

void dt_cpu_embedding_forward(void *ctx, float *out, const int32_t *tokens, const float *wte,
                              const float *wpe, int B, int T, int C, int V);
size_t dt_cpu_embedding_backward_workspace(void *ctx, int B, int T, int V);
void dt_cpu_embedding_backward(void *ctx, float *dwte, float *dwpe, const float *dout,
                               const int32_t *tokens, int B, int T, int C, int V, void *ws);
void dt_cpu_embedding_forward_part(void *ctx, float *out, const int32_t *tokens,
                                   const float *wte, const float *wpe, int B, int T, int C,
                                   int v0, int V);
void dt_cpu_embedding_backward_part(void *ctx, float *dwte, float *dwpe, const float *dout,
                                    const int32_t *tokens, int B, int T, int C, int v0, int V,
                                    void *ws);

void dt_cuda_embedding_forward(void *ctx, float *out, const int32_t *tokens, const float *wte,
                               const float *wpe, int B, int T, int C, int V);
size_t dt_cuda_embedding_backward_workspace(void *ctx, int B, int T, int V);
void dt_cuda_embedding_backward(void *ctx, float *dwte, float *dwpe, const float *dout,
                                const int32_t *tokens, int B, int T, int C, int V, void *ws);
void dt_cuda_embedding_forward_part(void *ctx, float *out, const int32_t *tokens,
                                    const float *wte, const float *wpe, int B, int T, int C,
                                    int v0, int V);
void dt_cuda_embedding_backward_part(void *ctx, float *dwte, float *dwpe, const float *dout,
                                     const int32_t *tokens, int B, int T, int C, int v0, int V,
                                     void *ws);

#ifdef __cplusplus
}
#endif

#endif
