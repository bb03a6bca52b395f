/* cuda_runtime.h for the CPU emulation (tests/emu): device memory is host
 * memory, streams are in order by construction, and there is one "GPU". */
#pragma once
#define __CUDA_RUNTIME_H__ /* what runtime/checks.h looks for */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

#include "cuda_emu.h"

typedef int cudaError_t;
enum {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorNotReady = 600
};
typedef struct emu_stream *cudaStream_t;
typedef struct emu_event *cudaEvent_t;
#define cudaEventDisableTiming 2
enum cudaMemcpyKind {
  cudaMemcpyHostToHost,
  cudaMemcpyHostToDevice,
  cudaMemcpyDeviceToHost,
  cudaMemcpyDeviceToDevice,
  cudaMemcpyDefault
};
#define cudaStreamNonBlocking 1
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
struct cudaDeviceProp {
  char name[256];
  int major, minor, multiProcessorCount;
  size_t totalGlobalMem, sharedMemPerBlockOptin;
};

inline const char *cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : "out of memory (emulated)";
}
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
/* 256-byte aligned, as the driver's: cuBLASLt's alignment rules see it */
inline cudaError_t cudaMalloc(void **p, size_t n) {
  if (posix_memalign(p, 256, n ? n : 1)) *p = nullptr;
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
template <typename T> cudaError_t cudaMalloc(T **p, size_t n) { return cudaMalloc((void **)p, n); }
inline cudaError_t cudaFree(void *p) {
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMallocHost(void **p, size_t n) { return cudaMalloc(p, n); }
template <typename T> cudaError_t cudaMallocHost(T **p, size_t n) {
  return cudaMalloc((void **)p, n);
}
inline cudaError_t cudaFreeHost(void *p) { return cudaFree(p); }
inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind,
                                   cudaStream_t = nullptr) {
  if (n) std::memmove(d, s, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k) {
  return cudaMemcpyAsync(d, s, n, k);
}
inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t = nullptr) {
  if (n) std::memset(p, v, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy2DAsync(void *d, size_t dpitch, const void *s, size_t spitch,
                                     size_t width, size_t height, cudaMemcpyKind,
                                     cudaStream_t = nullptr) {
  if (width > dpitch || width > spitch) return cudaErrorInvalidValue; /* as CUDA */
  for (size_t r = 0; r < height; r++)
    std::memmove((char *)d + r * dpitch, (const char *)s + r * spitch, width);
  return cudaSuccess;
}
inline cudaError_t cudaMemset2DAsync(void *p, size_t pitch, int v, size_t width, size_t height,
                                     cudaStream_t = nullptr) {
  for (size_t r = 0; r < height; r++) std::memset((char *)p + r * pitch, v, width);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) {
  *s = (cudaStream_t)1;
  return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
/* Streams run each call at once, so an event has happened when recorded */
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) {
  *e = (cudaEvent_t)std::malloc(1);
  return *e ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
  std::free(e);
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t = nullptr) { return cudaSuccess; }
inline cudaError_t cudaEventQuery(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) {
  return cudaSuccess;
}
/* Each process emulates a GPU of its own; DT_EMU_SHARED_GPU=1 makes them all
 * one, as several ranks on one real GPU (NCCL refuses that layout) */
inline cudaError_t cudaDeviceGetPCIBusId(char *id, int len, int) {
  const char *e = std::getenv("DT_EMU_SHARED_GPU");
  std::snprintf(id, (size_t)len, "emu:%ld", e && *e == '1' ? 0L : (long)getpid());
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int *d) {
  *d = 0;
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceCount(int *n) {
  *n = 1;
  return cudaSuccess;
}
/* A block's shared memory limit: an H100's 227 KiB, or DT_EMU_SMEM_OPTIN
 * bytes (another GPU's, e.g. an A100's 166912) */
inline size_t emu_smem_optin() {
  const char *e = std::getenv("DT_EMU_SMEM_OPTIN");
  return e && *e ? (size_t)std::strtoull(e, nullptr, 10) : (size_t)227 * 1024;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) {
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "CPU emulation of CUDA (tests/emu)");
  p->major = 9, p->minor = 0, p->multiProcessorCount = 1;
  p->totalGlobalMem = (size_t)1 << 30, p->sharedMemPerBlockOptin = emu_smem_optin();
  return cudaSuccess;
}
template <typename T> cudaError_t cudaFuncSetAttribute(T *, cudaFuncAttribute, int bytes) {
  /* what the GPU would refuse */
  return (size_t)bytes <= emu_smem_optin() ? cudaSuccess : cudaErrorMemoryAllocation;
}
