/* cublas_v2.h for the CPU emulation: the column-major GEMMs the kernels call,
 * done by OpenBLAS; bf16 operands are widened first (fp32 products of bf16
 * values are exact, so this is the tensor-core result up to summation order). */
#pragma once
#include <cblas.h>

#include <vector>

#include "cuda_runtime.h"

typedef int cublasStatus_t;
enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_NOT_SUPPORTED = 15 };
typedef struct emu_cublas *cublasHandle_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 } cublasMath_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;

inline const char *cublasGetStatusString(cublasStatus_t s) {
  return s == CUBLAS_STATUS_SUCCESS         ? "CUBLAS_STATUS_SUCCESS"
         : s == CUBLAS_STATUS_INVALID_VALUE ? "CUBLAS_STATUS_INVALID_VALUE"
                                            : "CUBLAS_STATUS_NOT_SUPPORTED";
}
inline cublasStatus_t cublasCreate(cublasHandle_t *h) {
  *h = (cublasHandle_t)1;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasDestroy(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) {
  return CUBLAS_STATUS_SUCCESS;
}
inline CBLAS_TRANSPOSE emu_op(cublasOperation_t o) { return o == CUBLAS_OP_T ? CblasTrans : CblasNoTrans; }
inline cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m,
                                  int n, int k, const float *alpha, const float *A, int lda,
                                  const float *B, int ldb, const float *beta, float *C, int ldc) {
  cblas_sgemm(CblasColMajor, emu_op(ta), emu_op(tb), m, n, k, *alpha, A, lda, B, ldb, *beta, C,
              ldc);
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta,
                                                cublasOperation_t tb, int m, int n, int k,
                                                const float *alpha, const float *A, int lda,
                                                long long sa, const float *B, int ldb,
                                                long long sb, const float *beta, float *C,
                                                int ldc, long long sc, int batch) {
  for (int i = 0; i < batch; i++)
    cublasSgemm(h, ta, tb, m, n, k, alpha, A + i * sa, lda, B + i * sb, ldb, beta, C + i * sc, ldc);
  return CUBLAS_STATUS_SUCCESS;
}
/* a column-major (rows x cols, ld) operand as fp32 */
inline std::vector<float> emu_widen(const void *p, cudaDataType t, int rows, int cols, int ld) {
  std::vector<float> out((size_t)ld * cols, 0.0f);
  for (int c = 0; c < cols; c++)
    for (int r = 0; r < rows; r++) {
      const size_t i = (size_t)c * ld + r;
      out[i] = t == CUDA_R_32F ? ((const float *)p)[i]
                               : __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    }
  return out;
}
inline cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                   int m, int n, int k, const void *alpha, const void *A,
                                   cudaDataType at, int lda, const void *B, cudaDataType bt,
                                   int ldb, const void *beta, void *C, cudaDataType ct, int ldc,
                                   cublasComputeType_t, cublasGemmAlgo_t) {
  /* the fp32-compute combinations cuBLAS documents: A and B of one type,
   * fp32 or bf16; C fp32, or bf16 with bf16 operands */
  if ((at != CUDA_R_32F && at != CUDA_R_16BF) || bt != at ||
      (ct != CUDA_R_32F && ct != CUDA_R_16BF) || (ct == CUDA_R_16BF && at != CUDA_R_16BF))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  const std::vector<float> a = emu_widen(A, at, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda);
  const std::vector<float> b = emu_widen(B, bt, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb);
  if (ct == CUDA_R_32F)
    return cublasSgemm(h, ta, tb, m, n, k, (const float *)alpha, a.data(), lda, b.data(), ldb,
                       (const float *)beta, (float *)C, ldc);
  /* a bf16 C: the fp32 result rounded once; elements between rows untouched */
  std::vector<float> c = emu_widen(C, ct, m, n, ldc);
  cublasSgemm(h, ta, tb, m, n, k, (const float *)alpha, a.data(), lda, b.data(), ldb,
              (const float *)beta, c.data(), ldc);
  for (int j = 0; j < n; j++)
    for (int i = 0; i < m; i++)
      ((__nv_bfloat16 *)C)[(size_t)j * ldc + i] = __float2bfloat16_rn(c[(size_t)j * ldc + i]);
  return CUBLAS_STATUS_SUCCESS;
}
