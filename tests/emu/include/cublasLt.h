/* cublasLt.h for the CPU emulation: only the handle the backend creates. */
#pragma once
#include "cublas_v2.h"
typedef struct emu_cublaslt *cublasLtHandle_t;
inline cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
  *h = (cublasLtHandle_t)1;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t) { return CUBLAS_STATUS_SUCCESS; }
