/* cudnn.h for the CPU emulation: only the handle the backend creates. */
#pragma once
#include "cuda_runtime.h"
typedef int cudnnStatus_t;
enum { CUDNN_STATUS_SUCCESS = 0 };
typedef struct emu_cudnn *cudnnHandle_t;
inline const char *cudnnGetErrorString(cudnnStatus_t) { return "CUDNN_STATUS_SUCCESS"; }
inline cudnnStatus_t cudnnCreate(cudnnHandle_t *h) {
  *h = (cudnnHandle_t)1;
  return CUDNN_STATUS_SUCCESS;
}
inline cudnnStatus_t cudnnDestroy(cudnnHandle_t) { return CUDNN_STATUS_SUCCESS; }
inline cudnnStatus_t cudnnSetStream(cudnnHandle_t, cudaStream_t) { return CUDNN_STATUS_SUCCESS; }
