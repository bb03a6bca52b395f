/* elem.cuh: one element of an fp32 or bf16 tensor as fp32 (dt_ld), and an
 * fp32 value stored into one (dt_st: bf16 rounded to nearest even, as
 * __float2bfloat16_rn and the CPU's dt_bf16_bits), for kernels templated on
 * the element type. Included by cuda_common.h, and by flash_kernels.cuh,
 * which the CPU emulation also compiles without cuda_common.h. */
#ifndef DT_ELEM_CUH
#define DT_ELEM_CUH

#include <cuda_bf16.h>

static __device__ __forceinline__ float dt_ld(const float *p) { return *p; }
static __device__ __forceinline__ float dt_ld(const __nv_bfloat16 *p) {
  return __bfloat162float(*p);
}
static __device__ __forceinline__ void dt_st(float *p, float x) { *p = x; }
static __device__ __forceinline__ void dt_st(__nv_bfloat16 *p, float x) {
  *p = __float2bfloat16_rn(x);
}

#endif
