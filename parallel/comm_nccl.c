/* comm_nccl.c: the dt_comm interface over NCCL, on the CUDA backend. NCCL runs
 * on its own stream, ordered with the backend's compute stream by events, so
 * no operation makes the host wait; host waits (barrier, destroy) poll with a
 * timeout and abort the communicator instead of hanging. */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"
#include "../runtime/checks.h"


typedef struct nccl_impl {
  ncclComm_t nccl;
  MPI_Comm comm;           /* duplicate of the group, for setup and barrier */
  cudaStream_t stream;     /* NCCL's own stream */
  cudaEvent_t compute_ev;  /* compute stream -> comm stream */
  cudaEvent_t comm_ev;     /* comm stream -> compute stream */
  double timeout_s;        /* DTRAIN_NCCL_TIMEOUT_S */
  const char *last_op;     /* the latest operation queued, named on a timeout */
} nccl_impl;

/* An asynchronous operation: the event recorded after it on the comm stream. */
struct dt_comm_req {
  cudaEvent_t done;
};

static nccl_impl *impl(dt_comm_t c) { return (nccl_impl *)c->impl; }

/* The backend's compute stream. dt_cuda_ctx (kernels/cuda/cuda_common.h,
 * private to the CUDA backend) starts with its cudaStream_t, so be->ctx
 * points at it; that header is not included here to keep this file plain C
 * against cuBLAS/cuDNN headers. */
static cudaStream_t compute_stream(dt_comm_t c) { return *(cudaStream_t *)c->be->ctx; }

static ncclDataType_t nccl_type(dt_dtype t) {
  switch (t) {
    case DT_F32: return ncclFloat32;
    case DT_BF16: return ncclBfloat16;
    case DT_F16: return ncclFloat16;
    case DT_I32: return ncclInt32;
    case DT_I64: return ncclInt64;
    case DT_U8: return ncclUint8;
    default: break;
  }
  dt_fatal("dtrain", "unknown dtype", __FILE__, __LINE__, __func__, "nccl_type(t)");
}

static ncclRedOp_t nccl_op(dt_redop op) {
  switch (op) {
    case DT_SUM: return ncclSum;
    case DT_MAX: return ncclMax;
    case DT_MIN: return ncclMin;
    default: break;
  }
  dt_fatal("dtrain", "unknown reduction", __FILE__, __LINE__, __func__, "nccl_op(op)");
}

/* ---- ordering between the compute and the comm stream ---- */

/* The comm stream waits for all work queued on the compute stream so far. */
static void begin(dt_comm_t c, const char *op) {
  nccl_impl *m = impl(c);
  CUDA_CHECK(cudaEventRecord(m->compute_ev, compute_stream(c)));
  CUDA_CHECK(cudaStreamWaitEvent(m->stream, m->compute_ev, 0));
  m->last_op = op;
}

/* Work queued on the compute stream from now on waits for the comm stream. */
static void end_blocking(dt_comm_t c) {
  nccl_impl *m = impl(c);
  CUDA_CHECK(cudaEventRecord(m->comm_ev, m->stream));
  CUDA_CHECK(cudaStreamWaitEvent(compute_stream(c), m->comm_ev, 0));
}

static dt_comm_req_t end_async(dt_comm_t c) {
  dt_comm_req_t r = (dt_comm_req_t)dt_calloc(1, sizeof *r);
  CUDA_CHECK(cudaEventCreateWithFlags(&r->done, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventRecord(r->done, impl(c)->stream));
  return r;
}

static int in_progress(ncclResult_t r) {
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 14, 0)
  return r == ncclInProgress;
#else
  (void)r;
  return 0;
#endif
}

/* The host waits for `ev`, polling, so that a peer that died or hung brings
 * this rank down after the timeout instead of blocking it forever. */
static void host_wait(dt_comm_t c, cudaEvent_t ev, const char *why) {
  nccl_impl *m = impl(c);
  double t0 = dt_now();
  for (;;) {
    cudaError_t e = cudaEventQuery(ev);
    if (e == cudaSuccess) return;
    if (e != cudaErrorNotReady) CUDA_CHECK(e);
    ncclResult_t async_err = ncclSuccess;
    NCCL_CHECK(ncclCommGetAsyncError(m->nccl, &async_err));
    char msg[512];
    if (async_err != ncclSuccess && !in_progress(async_err)) {
      snprintf(msg, sizeof msg, "rank %d of %d: %s (last operation %s)", c->rank, c->size,
               ncclGetErrorString(async_err), m->last_op ? m->last_op : "none");
      ncclCommAbort(m->nccl);
      dt_fatal("NCCL", msg, __FILE__, __LINE__, __func__, why);
    }
    if (dt_now() - t0 > m->timeout_s) {
      snprintf(msg, sizeof msg,
               "rank %d of %d: %s did not finish within %.0f s (a peer may have died or hung; "
               "DTRAIN_NCCL_TIMEOUT_S sets the limit); communicator aborted",
               c->rank, c->size, m->last_op ? m->last_op : "the comm stream", m->timeout_s);
      ncclCommAbort(m->nccl);
      dt_fatal("NCCL", msg, __FILE__, __LINE__, __func__, why);
    }
    usleep(50);
  }
}

static void comm_stream_sync(dt_comm_t c, const char *why) {
  nccl_impl *m = impl(c);
  CUDA_CHECK(cudaEventRecord(m->comm_ev, m->stream));
  host_wait(c, m->comm_ev, why);
}

/* ---- launches, shared by the blocking and asynchronous slots ---- */

static void launch_allreduce(dt_comm_t c, const void *send, void *recv, size_t count,
                             dt_dtype t, dt_redop op) {
  begin(c, "allreduce");
  if (count)
    NCCL_CHECK(ncclAllReduce(send, recv, count, nccl_type(t), nccl_op(op), impl(c)->nccl,
                             impl(c)->stream));
}

/* One ncclReduce per rank's block, rooted at that rank, in one group. */
static void launch_reduce_scatterv(dt_comm_t c, const void *send, void *recv,
                                   const size_t *recvcounts, dt_dtype t, dt_redop op) {
  nccl_impl *m = impl(c);
  size_t es = dt_dtype_size(t), off = 0;
  begin(c, "reduce_scatterv");
  NCCL_CHECK(ncclGroupStart());
  for (int r = 0; r < c->size; r++) {
    if (recvcounts[r])
      NCCL_CHECK(ncclReduce((const char *)send + off * es, recv, recvcounts[r], nccl_type(t),
                            nccl_op(op), r, m->nccl, m->stream));
    off += recvcounts[r];
  }
  NCCL_CHECK(ncclGroupEnd());
}

/* One ncclBroadcast per rank's block, rooted at that rank, in one group. */
static void launch_allgatherv(dt_comm_t c, const void *send, void *recv, const size_t *counts,
                              dt_dtype t) {
  nccl_impl *m = impl(c);
  size_t es = dt_dtype_size(t), off = 0;
  begin(c, "allgatherv");
  NCCL_CHECK(ncclGroupStart());
  for (int r = 0; r < c->size; r++) {
    char *block = (char *)recv + off * es;
    if (counts[r])
      NCCL_CHECK(ncclBroadcast(r == c->rank ? send : block, block, counts[r], nccl_type(t), r,
                               m->nccl, m->stream));
    off += counts[r];
  }
  NCCL_CHECK(ncclGroupEnd());
}

/* ---- the dt_comm slots ---- */

static void nccl_allreduce(dt_comm_t c, const void *send, void *recv, size_t count, dt_dtype t,
                           dt_redop op) {
  launch_allreduce(c, send, recv, count, t, op);
  end_blocking(c);
}

static void nccl_reduce_scatter(dt_comm_t c, const void *send, void *recv, size_t recvcount,
                                dt_dtype t, dt_redop op) {
  begin(c, "reduce_scatter");
  if (recvcount)
    NCCL_CHECK(ncclReduceScatter(send, recv, recvcount, nccl_type(t), nccl_op(op),
                                 impl(c)->nccl, impl(c)->stream));
  end_blocking(c);
}

static void nccl_reduce_scatterv(dt_comm_t c, const void *send, void *recv,
                                 const size_t *recvcounts, dt_dtype t, dt_redop op) {
  launch_reduce_scatterv(c, send, recv, recvcounts, t, op);
  end_blocking(c);
}

static void nccl_allgather(dt_comm_t c, const void *send, void *recv, size_t sendcount,
                           dt_dtype t) {
  begin(c, "allgather");
  if (sendcount)
    NCCL_CHECK(ncclAllGather(send, recv, sendcount, nccl_type(t), impl(c)->nccl,
                             impl(c)->stream));
  end_blocking(c);
}

static void nccl_allgatherv(dt_comm_t c, const void *send, void *recv, const size_t *counts,
                            dt_dtype t) {
  launch_allgatherv(c, send, recv, counts, t);
  end_blocking(c);
}

static void nccl_broadcast(dt_comm_t c, void *buf, size_t count, dt_dtype t, int root) {
  begin(c, "broadcast");
  if (count)
    NCCL_CHECK(ncclBroadcast(buf, buf, count, nccl_type(t), root, impl(c)->nccl,
                             impl(c)->stream));
  end_blocking(c);
}

static void nccl_send(dt_comm_t c, const void *buf, size_t count, dt_dtype t, int peer) {
  begin(c, "send");
  if (count)
    NCCL_CHECK(ncclSend(buf, count, nccl_type(t), peer, impl(c)->nccl, impl(c)->stream));
  end_blocking(c);
}

static void nccl_recv(dt_comm_t c, void *buf, size_t count, dt_dtype t, int peer) {
  begin(c, "recv");
  if (count)
    NCCL_CHECK(ncclRecv(buf, count, nccl_type(t), peer, impl(c)->nccl, impl(c)->stream));
  end_blocking(c);
}

/* one NCCL group: the send and the receive are matched together */
static void nccl_sendrecv(dt_comm_t c, const void *sendbuf, size_t scount, int dst,
                          void *recvbuf, size_t rcount, int src, dt_dtype t) {
  begin(c, "sendrecv");
  NCCL_CHECK(ncclGroupStart());
  if (dst >= 0 && scount)
    NCCL_CHECK(ncclSend(sendbuf, scount, nccl_type(t), dst, impl(c)->nccl, impl(c)->stream));
  if (src >= 0 && rcount)
    NCCL_CHECK(ncclRecv(recvbuf, rcount, nccl_type(t), src, impl(c)->nccl, impl(c)->stream));
  NCCL_CHECK(ncclGroupEnd());
  end_blocking(c);
}

/* Everything queued on the compute stream before, and every NCCL operation,
 * has finished on this rank when the ranks pass the MPI barrier. */
static void nccl_barrier(dt_comm_t c) {
  begin(c, "barrier");
  comm_stream_sync(c, "barrier");
  MPI_CHECK(MPI_Barrier(impl(c)->comm));
}

static dt_comm_req_t nccl_allreduce_async(dt_comm_t c, const void *send, void *recv,
                                          size_t count, dt_dtype t, dt_redop op) {
  launch_allreduce(c, send, recv, count, t, op);
  return end_async(c);
}

static dt_comm_req_t nccl_reduce_scatterv_async(dt_comm_t c, const void *send, void *recv,
                                                const size_t *recvcounts, dt_dtype t,
                                                dt_redop op) {
  launch_reduce_scatterv(c, send, recv, recvcounts, t, op);
  return end_async(c);
}

static dt_comm_req_t nccl_allgatherv_async(dt_comm_t c, const void *send, void *recv,
                                           const size_t *counts, dt_dtype t) {
  launch_allgatherv(c, send, recv, counts, t);
  return end_async(c);
}

/* The compute stream waits for the operation; the host does not. Destroying
 * the event right after is allowed: CUDA releases it once the wait is done. */
static void nccl_wait(dt_comm_t c, dt_comm_req_t req) {
  if (!req) return;
  CUDA_CHECK(cudaStreamWaitEvent(compute_stream(c), req->done, 0));
  CUDA_CHECK(cudaEventDestroy(req->done));
  free(req);
}

static void nccl_destroy(dt_comm_t c) {
  nccl_impl *m = impl(c);
  comm_stream_sync(c, "destroy");
  NCCL_CHECK(ncclCommDestroy(m->nccl));
  CUDA_CHECK(cudaEventDestroy(m->compute_ev));
  CUDA_CHECK(cudaEventDestroy(m->comm_ev));
  CUDA_CHECK(cudaStreamDestroy(m->stream));
  MPI_CHECK(MPI_Comm_free(&m->comm));
  free(m);
  free(c);
}

/* ---- creation ---- */

typedef struct gpu_id {
  char host[256];
  char bus[64]; /* PCI bus id of this rank's device */
} gpu_id;

/* NCCL fails obscurely (or hangs) when two ranks drive one GPU; find that
 * first. Every rank sees the same table, so all return the same answer. */
static int find_shared_gpu(MPI_Comm mpi, int size, dt_error *err) {
  gpu_id me;
  memset(&me, 0, sizeof me);
  if (gethostname(me.host, sizeof me.host - 1) != 0) snprintf(me.host, sizeof me.host, "?");
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetPCIBusId(me.bus, (int)sizeof me.bus, dev));
  gpu_id *all = (gpu_id *)dt_malloc((size_t)size * sizeof *all);
  MPI_CHECK(MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, mpi));
  int found = 0;
  for (int i = 0; i < size && !found; i++)
    for (int j = i + 1; j < size && !found; j++)
      if (!strcmp(all[i].host, all[j].host) && !strcmp(all[i].bus, all[j].bus)) {
        dt_error_set(err,
                     "ranks %d and %d share GPU %s on host %s; NCCL cannot run two ranks on one "
                     "GPU: use parallel.comm=mpi",
                     i, j, all[i].bus, all[i].host);
        found = 1;
      }
  free(all);
  return found;
}

static double timeout_from_env(void) {
  const char *s = getenv("DTRAIN_NCCL_TIMEOUT_S");
  if (s && *s) {
    char *end = NULL;
    double v = strtod(s, &end);
    if (*end == '\0' && v > 0) return v;
    if (dt_rank() <= 0)
      fprintf(stderr, "dtrain: warning: DTRAIN_NCCL_TIMEOUT_S=%s is not a positive number; "
                      "using 600\n", s);
  }
  return 600.0;
}

dt_comm_t dt_comm_nccl_create(MPI_Comm mpi, dt_backend_t be, dt_error *err) {
  if (!be || be->device != DT_DEVICE_CUDA) {
    dt_error_set(err, "NCCL needs the CUDA backend (this rank runs on %s); use parallel.comm=mpi",
                 be ? be->name : "no backend");
    return NULL;
  }
  int size = 0;
  MPI_CHECK(MPI_Comm_size(mpi, &size));
  if (find_shared_gpu(mpi, size, err)) return NULL;

  dt_comm_t c = (dt_comm_t)dt_calloc(1, sizeof *c);
  nccl_impl *m = (nccl_impl *)dt_calloc(1, sizeof *m);
  MPI_CHECK(MPI_Comm_dup(mpi, &m->comm));
  MPI_CHECK(MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN));
  MPI_CHECK(MPI_Comm_rank(m->comm, &c->rank));
  c->size = size;
  ncclUniqueId id;
  memset(&id, 0, sizeof id);
  if (c->rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  MPI_CHECK(MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, m->comm));
  NCCL_CHECK(ncclCommInitRank(&m->nccl, size, id, c->rank));
  CUDA_CHECK(cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking));
  CUDA_CHECK(cudaEventCreateWithFlags(&m->compute_ev, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventCreateWithFlags(&m->comm_ev, cudaEventDisableTiming));
  m->timeout_s = timeout_from_env();

  c->kind = "nccl";
  c->mpi = m->comm;
  c->be = be;
  c->impl = m;
  c->allreduce = nccl_allreduce;
  c->reduce_scatter = nccl_reduce_scatter;
  c->reduce_scatterv = nccl_reduce_scatterv;
  c->allgather = nccl_allgather;
  c->allgatherv = nccl_allgatherv;
  c->broadcast = nccl_broadcast;
  c->send = nccl_send;
  c->recv = nccl_recv;
  c->sendrecv = nccl_sendrecv;
  c->barrier = nccl_barrier;
  c->allreduce_async = nccl_allreduce_async;
  c->reduce_scatterv_async = nccl_reduce_scatterv_async;
  c->allgatherv_async = nccl_allgatherv_async;
  c->wait = nccl_wait;
  c->destroy = nccl_destroy;
  return c;
}
