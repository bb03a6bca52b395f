/* dropout.h: inverted dropout with a counter-based mask. Semantics are
 * documented on the slots of dt_kernels in kernels.h; kernels/cpu/dropout.c
 * is the fp32 reference and kernels/cuda/dropout.cu the fast path. The mask
 * function lives here, compiled into both, so the two backends drop the same
 * elements bit for bit and a recompute reproduces the mask without storing it. */
#ifndef DT_KERNELS_DROPOUT_H
#define DT_KERNELS_DROPOUT_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __CUDACC__
#define DT_DROPOUT_FN static __host__ __device__ __forceinline__
#else
#define DT_DROPOUT_FN static inline
#endif

/* splitmix64's output function (Steele, Lea & Flood 2014): a bijection on 64
 * bits whose outputs for inputs a Weyl step apart pass BigCrush. */
DT_DROPOUT_FN uint64_t dt_dropout_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* The stream key of a seed: mixed first so that nearby seeds (step numbers)
 * do not give overlapping, shifted streams. */
DT_DROPOUT_FN uint64_t dt_dropout_key(uint64_t seed) {
  return dt_dropout_mix64(seed ^ 0xD50F0D0FA5A5C3C3ull);
}

/* Element with counter i is kept iff the top 32 bits of its hash are at or
 * above thr = floor(p * 2^32), so P(drop) = thr / 2^32 (p to within 2^-32). */
DT_DROPOUT_FN int dt_dropout_keep(uint64_t key, uint64_t i, uint64_t thr) {
  return (dt_dropout_mix64(key + (i + 1) * 0x9E3779B97F4A7C15ull) >> 32) >= thr;
}
DT_DROPOUT_FN uint64_t dt_dropout_threshold(float p) {
  return p <= 0.0f ? 0 : (uint64_t)((double)p * 4294967296.0);
}
/* Kept elements are scaled by 1/(1-p), rounded once to fp32 on the host. */
DT_DROPOUT_FN float dt_dropout_scale(float p) { return 1.0f / (1.0f - p); }

void dt_cpu_dropout_forward(void *ctx, float *out, const float *inp, size_t n, float p,
                            uint64_t seed, uint64_t offset);
void dt_cpu_dropout_backward(void *ctx, float *dinp, const float *dout, size_t n, float p,
                             uint64_t seed, uint64_t offset);

void dt_cpu_dropout_rows(void *ctx, float *y, const float *x, int rows, size_t width,
                         size_t stride, float p, uint64_t seed, uint64_t offset);
void dt_cuda_dropout_rows(void *ctx, float *y, const float *x, int rows, size_t width,
                          size_t stride, float p, uint64_t seed, uint64_t offset);

void dt_cuda_dropout_forward(void *ctx, float *out, const float *inp, size_t n, float p,
                             uint64_t seed, uint64_t offset);
void dt_cuda_dropout_backward(void *ctx, float *dinp, const float *dout, size_t n, float p,
                              uint64_t seed, uint64_t offset);

#ifdef __cplusplus
}
#endif

#endif
