/* att_keys.cuh: which keys a query sees, shared by the attention kernels of
 * attention.cu and flash_kernels.cuh; the same rule as kernels/cpu/attention.c
 * (kernels.h documents it): query i of batch b sees keys [0, key_end). */
#ifndef DT_ATT_KEYS_CUH
#define DT_ATT_KEYS_CUH

#include <stdint.h>

static __device__ __forceinline__ int fa_key_end(int b, int i, int Tq, int Tk, int causal,
                                                 const int32_t *key_len) {
  long long e = Tk;
  if (key_len && key_len[b] < e) e = key_len[b];
  if (causal && (long long)i + Tk - Tq + 1 < e) e = (long long)i + Tk - Tq + 1;
  return e < 0 ? 0 : (int)e;
}

#endif
