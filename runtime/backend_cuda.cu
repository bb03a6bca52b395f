/* backend_cuda.cu: the CUDA backend: one device, one non-blocking stream that
 * orders every copy and kernel, and the cuBLAS/cuBLASLt/cuDNN handles bound
 * to it. Compiled only when the CUDA backend is built (DT_HAVE_CUDA). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/attention.h"
#include "../kernels/cuda/cuda_common.h"
#include "backend.h"

/* Scratch doubles for two-pass reductions: enough for the largest grid the
 * first pass launches (see kernels/cuda/reduce.cu). */
#define DT_CUDA_SCRATCH_COUNT 1024

static dt_cuda_ctx *cuda_ctx(dt_backend_t be) { return (dt_cuda_ctx *)be->ctx; }

static void *cuda_alloc(dt_backend_t be, size_t bytes) {
  (void)be;
  void *p = NULL;
  /* cudaMalloc(0) may hand back NULL, and alloc never returns NULL */
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError(); /* clear it: the message below is the error */
    dt_out_of_memory("GPU memory", bytes, __FILE__, __LINE__, __func__);
  }
  if (e != cudaSuccess || !p) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s (cudaMalloc of %zu bytes)", cudaGetErrorString(e), bytes);
    dt_fatal("CUDA", msg, __FILE__, __LINE__, __func__, "cudaMalloc(&p, bytes)");
  }
  return p;
}

static void cuda_free(dt_backend_t be, void *p) {
  (void)be;
  if (p) CUDA_CHECK(cudaFree(p));
}

static void *cuda_host_alloc(dt_backend_t be, size_t bytes) {
  (void)be;
  void *p = NULL;
  cudaError_t e = cudaMallocHost(&p, bytes ? bytes : 64);
  if (e != cudaSuccess || !p) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s (cudaMallocHost of %zu bytes)", cudaGetErrorString(e), bytes);
    dt_fatal("CUDA", msg, __FILE__, __LINE__, __func__, "cudaMallocHost(&p, bytes)");
  }
  return p;
}

static void cuda_host_free(dt_backend_t be, void *p) {
  (void)be;
  if (p) CUDA_CHECK(cudaFreeHost(p));
}

/* From pageable memory cudaMemcpyAsync returns once src has been staged, so
 * callers may reuse src at once; from pinned memory (host_alloc) the copy is
 * truly asynchronous and src must stay untouched until the stream is synced. */
static void cuda_h2d(dt_backend_t be, void *dst, const void *src, size_t bytes) {
  if (bytes)
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cuda_ctx(be)->stream));
}

static void cuda_d2h(dt_backend_t be, void *dst, const void *src, size_t bytes) {
  if (!bytes) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cuda_ctx(be)->stream));
  CUDA_CHECK(cudaStreamSynchronize(cuda_ctx(be)->stream)); /* the host reads dst next */
}

static void cuda_d2d(dt_backend_t be, void *dst, const void *src, size_t bytes) {
  if (bytes)
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_ctx(be)->stream));
}

static void cuda_d2d_rows(dt_backend_t be, void *dst, size_t dpitch, const void *src,
                          size_t spitch, size_t width, size_t rows) {
  if (width && rows)
    CUDA_CHECK(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, cudaMemcpyDeviceToDevice,
                                 cuda_ctx(be)->stream));
}

static void cuda_memset0(dt_backend_t be, void *p, size_t bytes) {
  if (bytes) CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cuda_ctx(be)->stream));
}

static void cuda_set_matmul_precision(dt_backend_t be, dt_precision p) {
  cuda_ctx(be)->matmul_bf16 = p == DT_PREC_BF16;
}
static void cuda_set_weights(dt_backend_t be, const float *w, size_t n) {
  dt_cuda_ctx *c = cuda_ctx(be);
  c->wsrc = w, c->wn = w ? n : 0, c->w16_fresh = 0;
}
static void cuda_sync(dt_backend_t be) { CUDA_CHECK(cudaStreamSynchronize(cuda_ctx(be)->stream)); }

static void cuda_destroy(dt_backend_t be) {
  dt_cuda_ctx *c = cuda_ctx(be);
  CUDA_CHECK(cudaSetDevice(c->device));
  CUDA_CHECK(cudaStreamSynchronize(c->stream));
  CUDA_CHECK(cudaFree(c->scratch));
  for (int i = 0; i < 3; i++) CUDA_CHECK(cudaFree(c->bf16_buf[i]));
  for (int i = 0; i < 2; i++) CUDA_CHECK(cudaFree(c->f32_buf[i]));
  CUDA_CHECK(cudaFree(c->att_d));
  CUDA_CHECK(cudaFree(c->col_part));
  CUDA_CHECK(cudaFree(c->att_f32));
  dt_cuda_lt_plans_free(c);
  CUDA_CHECK(cudaFree(c->lt_ws));
  CUDA_CHECK(cudaFree(c->w16));
  CUDNN_CHECK(cudnnDestroy(c->cudnn));
  CUBLAS_CHECK(cublasLtDestroy(c->lt));
  CUBLAS_CHECK(cublasDestroy(c->cublas));
  CUDA_CHECK(cudaStreamDestroy(c->stream));
  free(c);
  free(be);
}

extern "C" int dt_cuda_built(void) { return 1; }

extern "C" int dt_cuda_device_count(void) {
  int n = 0;
  /* No driver or no GPU is an answer (0), not a failure. */
  if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
  (void)cudaGetLastError(); /* clear the sticky error left by a failed query */
  return n;
}

/* The index of environment variable `var`'s value in names[0..n) (0 when
 * unset or empty); -1 with err set for any other value. */
static int env_choice(const char *var, const char *const *names, int n, dt_error *err) {
  const char *v = getenv(var);
  if (!v || !*v) return 0;
  for (int i = 0; i < n; i++)
    if (!strcmp(v, names[i])) return i;
  char list[96] = "";
  for (int i = 0; i < n; i++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
  dt_error_set(err, "%s=%s: expected one of %s", var, v, list);
  return -1;
}

extern "C" dt_backend_t dt_backend_cuda_create(int device, dt_error *err) {
  int ngpu = dt_cuda_device_count();
  if (ngpu == 0) {
    dt_error_set(err, "no CUDA GPU is visible to this process (no driver, or no device)");
    return NULL;
  }
  if (device < 0 || device >= ngpu) {
    dt_error_set(err, "CUDA device %d asked for, but this process sees %d (0..%d)", device,
                 ngpu, ngpu - 1);
    return NULL;
  }
  cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    dt_error_set(err, "cannot use CUDA device %d: %s", device, cudaGetErrorString(e));
    return NULL;
  }
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));

  /* the values' order is their DT_ATT_* / DT_GEMM_* number */
  static const char *const att_names[] = {"auto", "fp32", "simple"};
  static const char *const gemm_names[] = {"auto", "cublas", "lt"};
  const int att_impl = env_choice("DTRAIN_ATTENTION", att_names, 3, err);
  const int gemm_mode = att_impl < 0 ? -1 : env_choice("DTRAIN_GEMM", gemm_names, 3, err);
  if (gemm_mode < 0) return NULL;
  dt_cuda_ctx *c = (dt_cuda_ctx *)dt_calloc(1, sizeof *c);
  c->gemm_mode = gemm_mode;
  c->att_impl = att_impl;
  c->device = device;
  c->sm_count = prop.multiProcessorCount;
  c->smem_optin = prop.sharedMemPerBlockOptin;
  CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  CUBLAS_CHECK(cublasCreate(&c->cublas));
  CUBLAS_CHECK(cublasSetStream(c->cublas, c->stream));
  /* True fp32 GEMMs (no TF32 tensor-op math): the CUDA kernels are checked
   * against the fp32 CPU reference. */
  CUBLAS_CHECK(cublasSetMathMode(c->cublas, CUBLAS_DEFAULT_MATH));
  CUBLAS_CHECK(cublasLtCreate(&c->lt));
  CUDNN_CHECK(cudnnCreate(&c->cudnn));
  CUDNN_CHECK(cudnnSetStream(c->cudnn, c->stream));
  c->scratch_count = DT_CUDA_SCRATCH_COUNT;
  CUDA_CHECK(cudaMalloc((void **)&c->scratch, sizeof(double) * DT_CUDA_SCRATCH_COUNT));

  dt_backend_t be = (dt_backend_t)dt_calloc(1, sizeof *be);
  be->name = "cuda";
  be->device = DT_DEVICE_CUDA;
  snprintf(be->desc, sizeof be->desc, "%.64s (sm_%d%d, %d SMs, %.0f GiB), device %d",
           prop.name, prop.major, prop.minor, prop.multiProcessorCount,
           (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), device);
  be->ctx = c;
  be->k = &dt_cuda_kernels;
  be->alloc = cuda_alloc;
  be->free = cuda_free;
  be->host_alloc = cuda_host_alloc;
  be->host_free = cuda_host_free;
  be->h2d = cuda_h2d;
  be->d2h = cuda_d2h;
  be->d2d = cuda_d2d;
  be->d2d_rows = cuda_d2d_rows;
  be->memset0 = cuda_memset0;
  be->sync = cuda_sync;
  be->destroy = cuda_destroy;
  be->set_matmul_precision = cuda_set_matmul_precision;
  be->set_weights = cuda_set_weights;
  return be;
}
