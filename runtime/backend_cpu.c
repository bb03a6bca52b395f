/* backend_cpu.c: the CPU backend. Memory is plain host memory, copies are
 * memcpy, and the kernels are the fp32 references in kernels/cpu/. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "../kernels/matmul.h"

/* OpenBLAS exports this; the Debian cblas.h declares it too, but keep the
 * prototype here so other BLAS headers still compile. */
void openblas_set_num_threads(int num_threads);

static void *cpu_alloc(dt_backend_t be, size_t bytes) {
  (void)be;
  void *p = NULL;
  /* 64-byte alignment for vector loads */
  if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0 || !p)
    dt_out_of_memory("host memory", bytes, __FILE__, __LINE__, __func__);
  return p;
}
static void cpu_free(dt_backend_t be, void *p) { (void)be; free(p); }
static void cpu_copy(dt_backend_t be, void *dst, const void *src, size_t bytes) {
  (void)be;
  if (bytes) memmove(dst, src, bytes);
}
static void cpu_copy_rows(dt_backend_t be, void *dst, size_t dpitch, const void *src,
                          size_t spitch, size_t width, size_t rows) {
  (void)be;
  for (size_t r = 0; r < rows && width; r++)
    memmove((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
}
static void cpu_memset0(dt_backend_t be, void *p, size_t bytes) {
  (void)be;
  if (bytes) memset(p, 0, bytes);
}
static void cpu_sync(dt_backend_t be) { (void)be; }
static void cpu_destroy(dt_backend_t be) {
  dt_cpu_ctx_free(be->ctx);
  free(be);
}
static void cpu_set_matmul_precision(dt_backend_t be, dt_precision p) {
  ((dt_cpu_ctx *)be->ctx)->matmul_bf16 = p == DT_PREC_BF16;
}
static void cpu_set_weights(dt_backend_t be, const float *w, size_t n) {
  dt_cpu_ctx *c = be->ctx;
  c->wsrc = w, c->wn = w ? n : 0, c->w16_fresh = 0;
}

dt_backend_t dt_backend_cpu_create(int nthreads) {
  dt_backend_t be = dt_calloc(1, sizeof *be);
  be->name = "cpu";
  be->device = DT_DEVICE_CPU;
  be->ctx = dt_calloc(1, sizeof(dt_cpu_ctx));
  be->k = &dt_cpu_kernels;
  be->alloc = cpu_alloc;
  be->free = cpu_free;
  be->host_alloc = cpu_alloc;
  be->host_free = cpu_free;
  be->h2d = cpu_copy;
  be->d2h = cpu_copy;
  be->d2d = cpu_copy;
  be->d2d_rows = cpu_copy_rows;
  be->memset0 = cpu_memset0;
  be->sync = cpu_sync;
  be->destroy = cpu_destroy;
  be->set_matmul_precision = cpu_set_matmul_precision;
  be->set_weights = cpu_set_weights;
  if (nthreads > 0) openblas_set_num_threads(nthreads);
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  snprintf(be->desc, sizeof be->desc, "CPU, %d of %ld cores (OpenBLAS)",
           nthreads > 0 ? nthreads : (int)ncpu, ncpu);
  return be;
}
