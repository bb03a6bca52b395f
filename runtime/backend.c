/* backend.c: picks a backend by name. The only place that knows whether the
 * CUDA backend was built. */
#include "backend.h"

#include <string.h>

#ifndef DT_HAVE_CUDA
int dt_cuda_built(void) { return 0; }
int dt_cuda_device_count(void) { return 0; }
dt_backend_t dt_backend_cuda_create(int device, dt_error *err) {
  (void)device;
  dt_error_set(err, "this dtrain was built without CUDA (meson -Dcuda=enabled needs nvcc, cuBLAS, cuDNN and NCCL)");
  return NULL;
}
#endif

dt_backend_t dt_backend_create(const char *device, int local_rank, int nthreads, dt_error *err) {
  if (!strcmp(device, "cpu")) return dt_backend_cpu_create(nthreads);
  int ngpu = dt_cuda_device_count();
  if (!strcmp(device, "auto")) {
    if (ngpu > 0) return dt_backend_cuda_create(local_rank % ngpu, err);
    return dt_backend_cpu_create(nthreads);
  }
  if (!strcmp(device, "cuda")) {
    if (!dt_cuda_built()) {
      dt_backend_cuda_create(0, err);
      return NULL;
    }
    if (ngpu == 0) {
      dt_error_set(err, "train.device = cuda, but no CUDA GPU is visible to this process");
      return NULL;
    }
    return dt_backend_cuda_create(local_rank % ngpu, err);
  }
  dt_error_set(err, "unknown device '%s' (expected auto, cpu or cuda)", device);
  return NULL;
}
