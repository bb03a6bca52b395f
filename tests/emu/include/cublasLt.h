/* cublasLt.h for the CPU emulation: the part of cuBLASLt the backend uses
 * (one GEMM with a bias / GELU / GELU-gradient epilogue), written from the
 * cuBLAS documentation, with its rules checked rather than assumed:
 *  - every attribute is set with the size of its documented type;
 *  - op(A) op(B) must fit D, leading dimensions must hold their rows;
 *  - an aux epilogue needs EPILOGUE_AUX_LD, divisible by 8 and at least
 *    D's rows, and a bias epilogue needs the bias pointer;
 *  - an algorithm is only good for the pointers the preference's
 *    alignments promise (256 bytes unless lowered), as on the GPU where a
 *    less aligned pointer is undefined behaviour; here it is an error;
 *  - C and D have one type, fp32, or bf16 when A and B are bf16, and the
 *    bias and aux are read and written in D's type (the defaults of
 *    BIAS_DATA_TYPE and EPILOGUE_AUX_DATA_TYPE, which are not set here).
 * Values of the enums are the real header's. The product is summed in
 * double and the epilogue applied in float: GELU is the tanh form. */
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cublas_v2.h"

typedef struct emu_cublaslt *cublasLtHandle_t;
inline cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
  *h = (cublasLtHandle_t)1;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t) { return CUBLAS_STATUS_SUCCESS; }

typedef enum {
  CUBLASLT_EPILOGUE_DEFAULT = 1,
  CUBLASLT_EPILOGUE_BIAS = 4,
  CUBLASLT_EPILOGUE_GELU = 32,
  CUBLASLT_EPILOGUE_GELU_BIAS = 36,
  CUBLASLT_EPILOGUE_GELU_AUX = 160,
  CUBLASLT_EPILOGUE_GELU_AUX_BIAS = 164,
  CUBLASLT_EPILOGUE_DGELU = 192,
} cublasLtEpilogue_t;

typedef enum {
  CUBLASLT_MATMUL_DESC_TRANSA = 3,
  CUBLASLT_MATMUL_DESC_TRANSB = 4,
  CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
  CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
  CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER = 11,
  CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD = 12,
} cublasLtMatmulDescAttributes_t;

typedef enum {
  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
} cublasLtMatmulPreferenceAttributes_t;

struct emu_lt_desc {
  cublasComputeType_t compute;
  cudaDataType scale;
  int32_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void *bias = nullptr;
  void *aux = nullptr;
  int64_t aux_ld = 0;
};
struct emu_lt_layout {
  cudaDataType type;
  uint64_t rows, cols;
  int64_t ld;
};
struct emu_lt_pref {
  uint64_t workspace = 0;
  uint32_t align[4] = {256, 256, 256, 256}; /* A, B, C, D */
};
typedef emu_lt_desc *cublasLtMatmulDesc_t;
typedef emu_lt_layout *cublasLtMatrixLayout_t;
typedef emu_lt_pref *cublasLtMatmulPreference_t;
typedef struct {
  uint64_t data[8]; /* [0] the descriptor it was made for, [1..4] alignments */
} cublasLtMatmulAlgo_t;
typedef struct {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
} cublasLtMatmulHeuristicResult_t;

inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t c,
                                               cudaDataType s) {
  *d = new emu_lt_desc;
  (*d)->compute = c;
  (*d)->scale = s;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete d;
  return CUBLAS_STATUS_SUCCESS;
}
template <typename T> inline cublasStatus_t emu_lt_set(T *dst, const void *buf, size_t n) {
  if (n != sizeof(T)) return CUBLAS_STATUS_INVALID_VALUE;
  memcpy(dst, buf, n);
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d,
                                                     cublasLtMatmulDescAttributes_t a,
                                                     const void *buf, size_t n) {
  switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA: return emu_lt_set(&d->transa, buf, n);
    case CUBLASLT_MATMUL_DESC_TRANSB: return emu_lt_set(&d->transb, buf, n);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return emu_lt_set(&d->epilogue, buf, n);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return emu_lt_set(&d->bias, buf, n);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER: return emu_lt_set(&d->aux, buf, n);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD: return emu_lt_set(&d->aux_ld, buf, n);
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}
inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType t,
                                                 uint64_t rows, uint64_t cols, int64_t ld) {
  if (ld < (int64_t)rows || ld < 1) return CUBLAS_STATUS_INVALID_VALUE;
  *l = new emu_lt_layout{t, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete l;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
  *p = new emu_lt_pref;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete p;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                           cublasLtMatmulPreferenceAttributes_t a,
                                                           const void *buf, size_t n) {
  switch (a) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: return emu_lt_set(&p->workspace, buf, n);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: return emu_lt_set(&p->align[0], buf, n);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: return emu_lt_set(&p->align[1], buf, n);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: return emu_lt_set(&p->align[2], buf, n);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: return emu_lt_set(&p->align[3], buf, n);
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

inline bool emu_lt_has_bias(uint32_t e) { return e == 4 || e == 36 || e == 164; }
inline bool emu_lt_has_aux(uint32_t e) { return e == 160 || e == 164 || e == 192; }

/* op(A) (m,k) op(B) (k,n) = D (m,n): the shapes, types and epilogue rules */
inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(
    cublasLtHandle_t, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
    cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D, cublasLtMatmulPreference_t p, int req,
    cublasLtMatmulHeuristicResult_t *res, int *got) {
  *got = 0;
  if (req < 1 || d->compute != CUBLAS_COMPUTE_32F || d->scale != CUDA_R_32F)
    return CUBLAS_STATUS_INVALID_VALUE;
  const uint64_t am = d->transa ? A->cols : A->rows, ak = d->transa ? A->rows : A->cols;
  const uint64_t bk = d->transb ? B->cols : B->rows, bn = d->transb ? B->rows : B->cols;
  if (am != D->rows || bn != D->cols || ak != bk || C->rows != D->rows || C->cols != D->cols ||
      C->ld != D->ld)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (A->type != B->type || (A->type != CUDA_R_32F && A->type != CUDA_R_16BF) ||
      C->type != D->type || (D->type != CUDA_R_32F && D->type != A->type))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  switch (d->epilogue) {
    case 1: case 4: case 32: case 36: case 160: case 164: case 192: break;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (emu_lt_has_bias(d->epilogue) && !d->bias) return CUBLAS_STATUS_INVALID_VALUE;
  if (emu_lt_has_aux(d->epilogue) &&
      (!d->aux || d->aux_ld % 8 != 0 || d->aux_ld < (int64_t)D->rows))
    return CUBLAS_STATUS_INVALID_VALUE;
  res[0] = {};
  res[0].algo.data[0] = (uint64_t)(uintptr_t)d;
  for (int i = 0; i < 4; i++) res[0].algo.data[1 + i] = p->align[i];
  res[0].state = CUBLAS_STATUS_SUCCESS;
  *got = 1;
  return CUBLAS_STATUS_SUCCESS;
}

inline float emu_lt_gelu(float x) {
  const float s = 0.7978845608028654f, t = std::tanh(s * (x + 0.044715f * x * x * x));
  return 0.5f * x * (1.0f + t);
}
inline float emu_lt_dgelu(float x) {
  const float s = 0.7978845608028654f, t = std::tanh(s * (x + 0.044715f * x * x * x));
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * s * (1.0f + 3.0f * 0.044715f * x * x);
}
inline float emu_lt_at(const void *p, cudaDataType t, size_t i) {
  return t == CUDA_R_32F ? ((const float *)p)[i] : __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}
inline void emu_lt_put(void *p, cudaDataType t, size_t i, float v) {
  if (t == CUDA_R_32F)
    ((float *)p)[i] = v;
  else
    ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
}

inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void *alpha,
                                     const void *A, cublasLtMatrixLayout_t Al, const void *B,
                                     cublasLtMatrixLayout_t Bl, const void *beta, const void *C,
                                     cublasLtMatrixLayout_t Cl, void *D, cublasLtMatrixLayout_t Dl,
                                     const cublasLtMatmulAlgo_t *algo, void *, size_t,
                                     cudaStream_t) {
  if (!algo || algo->data[0] != (uint64_t)(uintptr_t)d) return CUBLAS_STATUS_INVALID_VALUE;
  const void *ptr[4] = {A, B, C, D};
  for (int i = 0; i < 4; i++)
    if ((uintptr_t)ptr[i] % algo->data[1 + i]) {
      fprintf(stderr, "cublasLt (emulated): matrix %c at %p is less aligned than the %u bytes "
              "the algorithm was chosen for\n", "ABCD"[i], ptr[i], (unsigned)algo->data[1 + i]);
      return CUBLAS_STATUS_INVALID_VALUE;
    }
  const float al = *(const float *)alpha, be = *(const float *)beta;
  const int64_t m = Dl->rows, n = Dl->cols, k = d->transa ? Al->rows : Al->cols;
  const uint32_t e = d->epilogue;
  const cudaDataType dt = Dl->type; /* also C's, the bias's and aux's */
  for (int64_t j = 0; j < n; j++)
    for (int64_t i = 0; i < m; i++) {
      double s = 0.0;
      for (int64_t l = 0; l < k; l++) {
        const size_t ia = d->transa ? (size_t)(i * Al->ld + l) : (size_t)(l * Al->ld + i);
        const size_t ib = d->transb ? (size_t)(l * Bl->ld + j) : (size_t)(j * Bl->ld + l);
        s += (double)emu_lt_at(A, Al->type, ia) * (double)emu_lt_at(B, Bl->type, ib);
      }
      float x = (float)(al * s);
      if (be != 0.0f) x += be * emu_lt_at(C, dt, j * Cl->ld + i);
      if (emu_lt_has_bias(e)) x += emu_lt_at(d->bias, dt, i);
      if (e == 192) {
        x *= emu_lt_dgelu(emu_lt_at(d->aux, dt, j * d->aux_ld + i));
      } else if (e & 32) {
        if (e & 128) emu_lt_put(d->aux, dt, j * d->aux_ld + i, x);
        x = emu_lt_gelu(x);
      }
      emu_lt_put(D, dt, j * Dl->ld + i, x);
    }
  return CUBLAS_STATUS_SUCCESS;
}
