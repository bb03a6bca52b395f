/* comm.c: what every communicator shares: dtype sizes and names, the bf16 and
 * fp16 <-> float conversions (round to nearest even), and the NCCL stub of a
 * build without CUDA. */
#include "comm.h"

#include <string.h>

const char *dt_dtype_name(dt_dtype t) {
  static const char *names[DT_DTYPE_COUNT] = {"f32", "bf16", "f16", "i32", "i64", "u8"};
  return (unsigned)t < DT_DTYPE_COUNT ? names[t] : "?";
}

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static float f32_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

float dt_bf16_to_float(uint16_t h) { return dt_bf16_value(h); }

uint16_t dt_float_to_bf16(float f) { return dt_bf16_bits(f); }

float dt_f16_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) { /* zero or subnormal: mant * 2^-24, exact in float */
    float v = (float)mant * 0x1p-24f;
    return sign ? -v : v;
  }
  if (exp == 31) return f32_from_bits(sign | 0x7f800000u | (mant << 13));
  return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

/* After F. Giesen's float_to_half_fast3_rtne: subnormal results come from one
 * float addition that aligns the 10 mantissa bits (the FPU rounds to nearest
 * even); normal ones from integer rounding of the dropped 13 bits. */
uint16_t dt_float_to_f16(float f) {
  uint32_t u = f32_bits(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7fffffffu;
  uint16_t o;
  if (u >= 0x47800000u) { /* >= 65536 (or inf/NaN): inf, NaN stays a quiet NaN */
    o = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
  } else if (u < 0x38800000u) { /* below 2^-14: subnormal or zero */
    const uint32_t magic = 126u << 23; /* 0.5: its ulp is the fp16 subnormal step 2^-24 */
    o = (uint16_t)(f32_bits(f32_from_bits(u) + f32_from_bits(magic)) - magic);
  } else {
    uint32_t odd = (u >> 13) & 1u;
    u += 0xc8000fffu + odd; /* rebias exponent 127 -> 15 (wraps), round half to even */
    o = (uint16_t)(u >> 13);  /* 65520..65535 carry into the inf pattern */
  }
  return (uint16_t)(o | sign);
}

#ifndef DT_HAVE_CUDA
dt_comm_t dt_comm_nccl_create(MPI_Comm mpi, dt_backend_t be, dt_error *err) {
  (void)mpi;
  (void)be;
  dt_error_set(err, "this dtrain was built without CUDA/NCCL; use parallel.comm=mpi");
  return NULL;
}
#endif
