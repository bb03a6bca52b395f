/* backend.h: one interface over the CPU and the CUDA implementation: memory,
 * copies, synchronisation and the kernel table. Callers never #ifdef on the
 * device; they hold a dt_backend_t and call through it. */
#ifndef DT_BACKEND_H
#define DT_BACKEND_H

#include <stddef.h>

#include "../kernels/kernels.h"
#include "dt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dt_device { DT_DEVICE_CPU = 0, DT_DEVICE_CUDA = 1 } dt_device;

typedef struct dt_backend *dt_backend_t;

/* Precision of the linear layers' GEMMs (linear_forward / linear_backward;
 * conv stays fp32, and so does attention on the CPU, while the CUDA backend
 * also runs attention's products in bf16: kernels/attention.h). FP32: fp32
 * operands. BF16: each operand is
 * rounded to bfloat16 (nearest even) first; the products, which bf16 makes
 * exact in fp32, are summed in fp32 into an fp32 output. On the GPU that is
 * a tensor-core GEMM with bf16 inputs and fp32 accumulation; on the CPU, the
 * same rounding before an fp32 sgemm, so both backends compute the same
 * function up to summation order. */
typedef enum dt_precision { DT_PREC_FP32 = 0, DT_PREC_BF16 = 1 } dt_precision;

struct dt_backend {
  const char *name;      /* "cpu" or "cuda" */
  dt_device device;
  char desc[128];        /* e.g. "NVIDIA H100 80GB HBM3 (sm_90)" or "CPU, 2 threads" */
  void *ctx;             /* backend-private state handed to every kernel */
  const dt_kernels *k;   /* the kernel table */
  /* device memory; alloc never returns NULL (fatal on failure) */
  void *(*alloc)(dt_backend_t be, size_t bytes);
  void (*free)(dt_backend_t be, void *p);
  /* host memory suited to copies (pinned on CUDA) */
  void *(*host_alloc)(dt_backend_t be, size_t bytes);
  void (*host_free)(dt_backend_t be, void *p);
  /* copies are ordered on the backend's stream; d2h returns when the data is
   * on the host. h2d may be asynchronous (CUDA, from pinned memory): the
   * source must not change until the next d2h or sync. */
  void (*h2d)(dt_backend_t be, void *dst, const void *src, size_t bytes);
  void (*d2h)(dt_backend_t be, void *dst, const void *src, size_t bytes);
  void (*d2d)(dt_backend_t be, void *dst, const void *src, size_t bytes);
  /* `rows` copies of `width` bytes in one call: from src rows spitch bytes
   * apart to dst rows dpitch bytes apart (a decoder writing each
   * hypothesis's new keys and values into its cache rows) */
  void (*d2d_rows)(dt_backend_t be, void *dst, size_t dpitch, const void *src, size_t spitch,
                   size_t width, size_t rows);
  void (*memset0)(dt_backend_t be, void *p, size_t bytes);
  void (*sync)(dt_backend_t be);
  void (*destroy)(dt_backend_t be);
  /* Sets the linear layers' GEMM precision for later kernel calls
   * (DT_PREC_FP32 at creation). */
  void (*set_matmul_precision)(dt_backend_t be, dt_precision p);
  /* The model's flat parameters [w, w+n), unchanged until the next call
   * (w NULL: none). Under DT_PREC_BF16 the backend rounds them to bf16
   * once, on the first GEMM that reads one of them, and linear layers read
   * their weights from that copy (2 bytes a parameter on the GPU) instead of rounding
   * them again at every call: a chunked classifier would otherwise round
   * the whole token table twice per chunk. The bits are the same either
   * way. GPT and the Transformer call it around each forward_backward
   * (dt_model_weights_*), so the copy never outlives its weights. */
  void (*set_weights)(dt_backend_t be, const float *w, size_t n);
};

/* The CPU backend; nthreads <= 0 keeps OpenBLAS's default. */
dt_backend_t dt_backend_cpu_create(int nthreads);

/* The CUDA backend on device `device`; NULL with err set if CUDA was not
 * built or no usable GPU is present. */
dt_backend_t dt_backend_cuda_create(int device, dt_error *err);

/* Whether this build has the CUDA backend, and how many GPUs it sees (0 when
 * none or not built). Never fails. */
int dt_cuda_built(void);
int dt_cuda_device_count(void);

/* "auto" | "cpu" | "cuda": auto picks CUDA when a GPU is present. NULL with
 * err set when "cuda" is asked for and cannot be had. */
dt_backend_t dt_backend_create(const char *device, int local_rank, int nthreads, dt_error *err);

static inline void dt_backend_destroy(dt_backend_t be) {
  if (be) be->destroy(be);
}

#ifdef __cplusplus
}
#endif

#endif
