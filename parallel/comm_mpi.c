/* comm_mpi.c: the dt_comm interface over MPI, on every backend. Device
 * buffers are staged through pinned host buffers of the backend; bf16 and
 * fp16 reduce through user-defined MPI ops that accumulate in fp32.
 *
 * Counts above INT_MAX: all-reduce, broadcast and send/recv are split into
 * chunks of at most INT_MAX elements (DTRAIN_MPI_CHUNK, a test knob, lowers
 * the limit); reduce-scatter(v) and all-gather(v) cannot be split that way
 * (blocks are strided), so a per-rank count, or an all-gatherv displacement,
 * above INT_MAX is fatal. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "../runtime/checks.h"


/* ---- bf16 / fp16 reductions: widen, reduce in fp32, round back ----
 * bf16 through the inline conversions of kernels.h, not comm.c's exported
 * ones: a call per element made a bf16 all-reduce of 64 MiB take 2.3x as
 * long (bench/RESULTS.md). */

#define HALF_OP(name, to_f, from_f, expr)                                      \
  static void name(void *in, void *inout, int *len, MPI_Datatype *type) {      \
    (void)type;                                                                \
    const uint16_t *a = (const uint16_t *)in;                                  \
    uint16_t *b = (uint16_t *)inout;                                           \
    for (int i = 0; i < *len; i++) {                                           \
      float x = to_f(a[i]), y = to_f(b[i]);                                    \
      b[i] = from_f(expr);                                                     \
    }                                                                          \
  }

/* MAX/MIN keep a NaN from either side, as a sum would */
#define F_MAX(x, y) ((x) != (x) || (x) > (y) ? (x) : (y))
#define F_MIN(x, y) ((x) != (x) || (x) < (y) ? (x) : (y))
HALF_OP(bf16_sum, dt_bf16_value, dt_bf16_bits, x + y)
HALF_OP(bf16_max, dt_bf16_value, dt_bf16_bits, F_MAX(x, y))
HALF_OP(bf16_min, dt_bf16_value, dt_bf16_bits, F_MIN(x, y))
HALF_OP(f16_sum, dt_f16_to_float, dt_float_to_f16, x + y)
HALF_OP(f16_max, dt_f16_to_float, dt_float_to_f16, F_MAX(x, y))
HALF_OP(f16_min, dt_f16_to_float, dt_float_to_f16, F_MIN(x, y))

/* ---- state ---- */

/* A pinned host buffer for staging device data. `pending` means an h2d from
 * it may still be running, so it must not be written before a sync. */
typedef struct stage_buf {
  void *p;
  size_t cap;
  int busy, pending;
} stage_buf;

typedef struct mpi_impl {
  MPI_Comm comm;
  MPI_Datatype half;      /* 2 bytes, for bf16 and fp16 */
  MPI_Op half_ops[2][3];  /* [bf16, f16][DT_SUM, DT_MAX, DT_MIN] */
  size_t chunk;           /* most elements per MPI call where ops are split */
  stage_buf *bufs;
  int nbufs;
} mpi_impl;

/* One operation: its MPI requests (none when blocking), the int arrays MPI
 * reads until completion, the staging buffer it holds, and the copy that
 * finishes it (staged result to the device, or a temporary to the caller). */
struct dt_comm_req {
  MPI_Request *reqs;
  int nreq, cap;
  int *ints;
  int slot; /* index into mpi_impl.bufs, -1 for none */
  void *dst;
  const void *src;
  size_t bytes;
  int to_device; /* be->h2d, else memcpy */
};

static mpi_impl *impl(dt_comm_t c) { return (mpi_impl *)c->impl; }
static int on_device(dt_comm_t c) { return c->be->device != DT_DEVICE_CPU; }

static MPI_Datatype mpi_type(dt_comm_t c, dt_dtype t) {
  switch (t) {
    case DT_F32: return MPI_FLOAT;
    case DT_BF16:
    case DT_F16: return impl(c)->half;
    case DT_I32: return MPI_INT32_T;
    case DT_I64: return MPI_INT64_T;
    case DT_U8: return MPI_UINT8_T;
    default: break;
  }
  dt_fatal("dtrain", "unknown dtype", __FILE__, __LINE__, __func__, "mpi_type(c, t)");
}

static MPI_Op mpi_op(dt_comm_t c, dt_dtype t, dt_redop op) {
  if ((unsigned)op > DT_MIN)
    dt_fatal("dtrain", "unknown reduction", __FILE__, __LINE__, __func__, "mpi_op(c, t, op)");
  if (t == DT_BF16 || t == DT_F16) return impl(c)->half_ops[t == DT_F16][op];
  static const MPI_Op ops[3] = {MPI_SUM, MPI_MAX, MPI_MIN};
  return ops[op];
}

static int int_count(size_t n, const char *what) {
  if (n > (size_t)INT_MAX) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s of %zu elements exceeds INT_MAX, the most one MPI call takes",
             what, n);
    dt_fatal("MPI", msg, __FILE__, __LINE__, __func__, "int_count(n, what)");
  }
  return (int)n;
}

/* ---- staging buffers ---- */

static void stage_sync(dt_comm_t c) {
  mpi_impl *m = impl(c);
  c->be->sync(c->be);
  for (int i = 0; i < m->nbufs; i++) m->bufs[i].pending = 0;
}

/* A free buffer of at least `bytes`: the smallest that fits, else the largest
 * free one regrown, else a new one. */
static int stage_acquire(dt_comm_t c, size_t bytes) {
  mpi_impl *m = impl(c);
  int best = -1;
  for (int i = 0; i < m->nbufs; i++)
    if (!m->bufs[i].busy && m->bufs[i].cap >= bytes && (best < 0 || m->bufs[i].cap < m->bufs[best].cap))
      best = i;
  if (best < 0) {
    for (int i = 0; i < m->nbufs; i++)
      if (!m->bufs[i].busy && (best < 0 || m->bufs[i].cap > m->bufs[best].cap)) best = i;
    if (best < 0) {
      m->bufs = (stage_buf *)realloc(m->bufs, (size_t)(m->nbufs + 1) * sizeof *m->bufs);
      DT_CHECK_ALLOC(m->bufs);
      best = m->nbufs++;
      memset(&m->bufs[best], 0, sizeof m->bufs[best]);
    }
    stage_buf *b = &m->bufs[best];
    if (b->p) {
      if (b->pending) stage_sync(c);
      c->be->host_free(c->be, b->p);
    }
    b->cap = DT_MAX(bytes + bytes / 8, (size_t)1 << 16); /* slack: sizes vary a little */
    b->p = c->be->host_alloc(c->be, b->cap);
  }
  if (m->bufs[best].pending) stage_sync(c);
  m->bufs[best].busy = 1;
  return best;
}

static void *stage_ptr(dt_comm_t c, int slot) { return impl(c)->bufs[slot].p; }

/* ---- requests ---- */

static dt_comm_req_t req_new(void) {
  dt_comm_req_t r = (dt_comm_req_t)dt_calloc(1, sizeof *r);
  r->slot = -1;
  return r;
}

/* Where a nonblocking call stores its request; NULL for blocking calls, which
 * the callers test before picking MPI_Ixxx or MPI_Xxx. */
static MPI_Request *req_post(dt_comm_req_t r) {
  if (r->nreq == r->cap) {
    r->cap = r->cap ? 2 * r->cap : 4;
    r->reqs = (MPI_Request *)realloc(r->reqs, (size_t)r->cap * sizeof *r->reqs);
    DT_CHECK_ALLOC(r->reqs);
  }
  return &r->reqs[r->nreq++];
}

/* The copy that completes the operation once MPI is done. */
static void req_then_copy(dt_comm_req_t r, void *dst, const void *src, size_t bytes, int to_device) {
  r->dst = dst;
  r->src = src;
  r->bytes = bytes;
  r->to_device = to_device;
}

static void req_finish(dt_comm_t c, dt_comm_req_t r) {
  if (r->nreq) MPI_CHECK(MPI_Waitall(r->nreq, r->reqs, MPI_STATUSES_IGNORE));
  if (r->bytes) {
    if (r->to_device) c->be->h2d(c->be, r->dst, r->src, r->bytes);
    else memcpy(r->dst, r->src, r->bytes);
  }
  if (r->slot >= 0) {
    stage_buf *b = &impl(c)->bufs[r->slot];
    b->busy = 0;
    b->pending = r->to_device && r->bytes; /* an h2d may still read it */
  }
  free(r->reqs);
  free(r->ints);
  free(r);
}

/* ---- operations; `nb` picks the nonblocking MPI call ---- */

static dt_comm_req_t allreduce_start(dt_comm_t c, const void *send, void *recv, size_t count,
                                     dt_dtype t, dt_redop op, int nb) {
  mpi_impl *m = impl(c);
  size_t es = dt_dtype_size(t), bytes = count * es;
  MPI_Datatype type = mpi_type(c, t);
  MPI_Op mop = mpi_op(c, t, op);
  dt_comm_req_t r = req_new();
  if (!count) return r;
  const void *sbuf = send == recv ? MPI_IN_PLACE : send;
  char *rbuf = (char *)recv;
  if (on_device(c)) { /* reduce in place in one staging buffer */
    r->slot = stage_acquire(c, bytes);
    rbuf = (char *)stage_ptr(c, r->slot);
    c->be->d2h(c->be, rbuf, send, bytes);
    sbuf = MPI_IN_PLACE;
    req_then_copy(r, recv, rbuf, bytes, 1);
  }
  for (size_t off = 0; off < count; off += m->chunk) {
    int n = (int)DT_MIN(m->chunk, count - off);
    const void *s = sbuf == MPI_IN_PLACE ? MPI_IN_PLACE : (const char *)sbuf + off * es;
    if (nb) MPI_CHECK(MPI_Iallreduce(s, rbuf + off * es, n, type, mop, m->comm, req_post(r)));
    else MPI_CHECK(MPI_Allreduce(s, rbuf + off * es, n, type, mop, m->comm));
  }
  return r;
}

/* Reduce-scatter with per-rank counts; the block variant is the case of equal
 * counts and uses MPI_Reduce_scatter_block. MPI's in-place reduce-scatter
 * leaves the result at the start of the buffer, not at this rank's block, so
 * in place (and on devices) the result goes through a temporary. */
static dt_comm_req_t reduce_scatter_start(dt_comm_t c, const void *send, void *recv,
                                          const size_t *recvcounts, size_t blockcount,
                                          dt_dtype t, dt_redop op, int nb) {
  mpi_impl *m = impl(c);
  size_t es = dt_dtype_size(t), total = 0, off = 0;
  dt_comm_req_t r = req_new();
  if (recvcounts) {
    r->ints = (int *)dt_malloc((size_t)c->size * sizeof(int));
    for (int i = 0; i < c->size; i++) {
      r->ints[i] = int_count(recvcounts[i], "a reduce-scatterv block");
      if (i < c->rank) off += recvcounts[i];
      total += recvcounts[i];
    }
  } else {
    int_count(blockcount, "a reduce-scatter block");
    total = blockcount * (size_t)c->size;
    off = blockcount * (size_t)c->rank;
  }
  if (!total) return r;
  size_t mine = recvcounts ? recvcounts[c->rank] : blockcount;
  const char *sbuf = (const char *)send;
  void *rbuf = recv;
  if (on_device(c)) { /* [ whole input | this rank's result ] */
    r->slot = stage_acquire(c, (total + mine) * es);
    char *st = (char *)stage_ptr(c, r->slot);
    c->be->d2h(c->be, st, send, total * es);
    sbuf = st;
    rbuf = st + total * es;
    req_then_copy(r, recv, rbuf, mine * es, 1);
  } else if ((const char *)recv == sbuf + off * es && mine) {
    r->slot = stage_acquire(c, mine * es);
    rbuf = stage_ptr(c, r->slot);
    req_then_copy(r, recv, rbuf, mine * es, 0);
  }
  MPI_Datatype type = mpi_type(c, t);
  MPI_Op mop = mpi_op(c, t, op);
  if (recvcounts && nb)
    MPI_CHECK(MPI_Ireduce_scatter(sbuf, rbuf, r->ints, type, mop, m->comm, req_post(r)));
  else if (recvcounts)
    MPI_CHECK(MPI_Reduce_scatter(sbuf, rbuf, r->ints, type, mop, m->comm));
  else if (nb)
    MPI_CHECK(MPI_Ireduce_scatter_block(sbuf, rbuf, (int)blockcount, type, mop, m->comm,
                                        req_post(r)));
  else
    MPI_CHECK(MPI_Reduce_scatter_block(sbuf, rbuf, (int)blockcount, type, mop, m->comm));
  return r;
}

/* All-gather with per-rank counts (counts NULL: every rank `blockcount`). In
 * place (send at this rank's block of recv) maps to MPI_IN_PLACE; devices
 * gather in place in one staging buffer. */
static dt_comm_req_t allgather_start(dt_comm_t c, const void *send, void *recv,
                                     const size_t *counts, size_t blockcount, dt_dtype t,
                                     int nb) {
  mpi_impl *m = impl(c);
  size_t es = dt_dtype_size(t), total = 0, off = 0;
  dt_comm_req_t r = req_new();
  if (counts) {
    r->ints = (int *)dt_malloc(2 * (size_t)c->size * sizeof(int));
    for (int i = 0; i < c->size; i++) {
      r->ints[i] = int_count(counts[i], "an all-gatherv block");
      r->ints[c->size + i] = int_count(total, "an all-gatherv displacement");
      if (i < c->rank) off += counts[i];
      total += counts[i];
    }
  } else {
    int_count(blockcount, "an all-gather block");
    total = blockcount * (size_t)c->size;
    off = blockcount * (size_t)c->rank;
  }
  if (!total) return r;
  size_t mine = counts ? counts[c->rank] : blockcount;
  const void *sbuf = (const char *)send == (const char *)recv + off * es ? MPI_IN_PLACE : send;
  char *rbuf = (char *)recv;
  if (on_device(c)) {
    r->slot = stage_acquire(c, total * es);
    rbuf = (char *)stage_ptr(c, r->slot);
    c->be->d2h(c->be, rbuf + off * es, send, mine * es);
    sbuf = MPI_IN_PLACE;
    req_then_copy(r, recv, rbuf, total * es, 1);
  }
  MPI_Datatype type = mpi_type(c, t);
  int n = (int)mine; /* ignored with MPI_IN_PLACE */
  if (counts && nb)
    MPI_CHECK(MPI_Iallgatherv(sbuf, n, type, rbuf, r->ints, r->ints + c->size, type, m->comm,
                              req_post(r)));
  else if (counts)
    MPI_CHECK(MPI_Allgatherv(sbuf, n, type, rbuf, r->ints, r->ints + c->size, type, m->comm));
  else if (nb)
    MPI_CHECK(MPI_Iallgather(sbuf, n, type, rbuf, n, type, m->comm, req_post(r)));
  else
    MPI_CHECK(MPI_Allgather(sbuf, n, type, rbuf, n, type, m->comm));
  return r;
}

/* ---- the dt_comm slots ---- */

static void mpi_allreduce(dt_comm_t c, const void *send, void *recv, size_t count, dt_dtype t,
                          dt_redop op) {
  req_finish(c, allreduce_start(c, send, recv, count, t, op, 0));
}

static void mpi_reduce_scatter(dt_comm_t c, const void *send, void *recv, size_t recvcount,
                               dt_dtype t, dt_redop op) {
  req_finish(c, reduce_scatter_start(c, send, recv, NULL, recvcount, t, op, 0));
}

static void mpi_reduce_scatterv(dt_comm_t c, const void *send, void *recv,
                                const size_t *recvcounts, dt_dtype t, dt_redop op) {
  req_finish(c, reduce_scatter_start(c, send, recv, recvcounts, 0, t, op, 0));
}

static void mpi_allgather(dt_comm_t c, const void *send, void *recv, size_t sendcount,
                          dt_dtype t) {
  req_finish(c, allgather_start(c, send, recv, NULL, sendcount, t, 0));
}

static void mpi_allgatherv(dt_comm_t c, const void *send, void *recv, const size_t *counts,
                           dt_dtype t) {
  req_finish(c, allgather_start(c, send, recv, counts, 0, t, 0));
}

static void mpi_broadcast(dt_comm_t c, void *buf, size_t count, dt_dtype t, int root) {
  mpi_impl *m = impl(c);
  size_t es = dt_dtype_size(t), bytes = count * es;
  if (!count) return;
  dt_comm_req_t r = req_new();
  char *hbuf = (char *)buf;
  if (on_device(c)) {
    r->slot = stage_acquire(c, bytes);
    hbuf = (char *)stage_ptr(c, r->slot);
    if (c->rank == root) c->be->d2h(c->be, hbuf, buf, bytes);
    else req_then_copy(r, buf, hbuf, bytes, 1);
  }
  MPI_Datatype type = mpi_type(c, t);
  for (size_t off = 0; off < count; off += m->chunk)
    MPI_CHECK(MPI_Bcast(hbuf + off * es, (int)DT_MIN(m->chunk, count - off), type, root, m->comm));
  req_finish(c, r);
}

#define P2P_TAG 7

static void mpi_send(dt_comm_t c, const void *buf, size_t count, dt_dtype t, int peer) {
  mpi_impl *m = impl(c);
  size_t es = dt_dtype_size(t), bytes = count * es;
  if (!count) return;
  dt_comm_req_t r = req_new();
  const char *hbuf = (const char *)buf;
  if (on_device(c)) {
    r->slot = stage_acquire(c, bytes);
    c->be->d2h(c->be, stage_ptr(c, r->slot), buf, bytes);
    hbuf = (const char *)stage_ptr(c, r->slot);
  }
  MPI_Datatype type = mpi_type(c, t);
  for (size_t off = 0; off < count; off += m->chunk)
    MPI_CHECK(MPI_Send(hbuf + off * es, (int)DT_MIN(m->chunk, count - off), type, peer, P2P_TAG,
                       m->comm));
  req_finish(c, r);
}

static void mpi_recv(dt_comm_t c, void *buf, size_t count, dt_dtype t, int peer) {
  mpi_impl *m = impl(c);
  size_t es = dt_dtype_size(t), bytes = count * es;
  if (!count) return;
  dt_comm_req_t r = req_new();
  char *hbuf = (char *)buf;
  if (on_device(c)) {
    r->slot = stage_acquire(c, bytes);
    hbuf = (char *)stage_ptr(c, r->slot);
    req_then_copy(r, buf, hbuf, bytes, 1);
  }
  MPI_Datatype type = mpi_type(c, t);
  for (size_t off = 0; off < count; off += m->chunk)
    MPI_CHECK(MPI_Recv(hbuf + off * es, (int)DT_MIN(m->chunk, count - off), type, peer, P2P_TAG,
                       m->comm, MPI_STATUS_IGNORE));
  req_finish(c, r);
}

/* Both halves posted nonblocking (in chunks) and waited for together; device
 * buffers go through one staging buffer each. */
static void mpi_sendrecv(dt_comm_t c, const void *sendbuf, size_t scount, int dst, void *recvbuf,
                         size_t rcount, int src, dt_dtype t) {
  mpi_impl *m = impl(c);
  size_t es = dt_dtype_size(t);
  if (dst < 0) scount = 0;
  if (src < 0) rcount = 0;
  dt_comm_req_t rs = req_new(), rr = req_new();
  const char *hs = (const char *)sendbuf;
  char *hr = (char *)recvbuf;
  if (on_device(c) && scount) {
    rs->slot = stage_acquire(c, scount * es);
    c->be->d2h(c->be, stage_ptr(c, rs->slot), sendbuf, scount * es);
    hs = (const char *)stage_ptr(c, rs->slot);
  }
  if (on_device(c) && rcount) {
    rr->slot = stage_acquire(c, rcount * es);
    hr = (char *)stage_ptr(c, rr->slot);
    req_then_copy(rr, recvbuf, hr, rcount * es, 1);
  }
  MPI_Datatype type = mpi_type(c, t);
  for (size_t off = 0; off < rcount; off += m->chunk)
    MPI_CHECK(MPI_Irecv(hr + off * es, (int)DT_MIN(m->chunk, rcount - off), type, src, P2P_TAG,
                        m->comm, req_post(rr)));
  for (size_t off = 0; off < scount; off += m->chunk)
    MPI_CHECK(MPI_Isend(hs + off * es, (int)DT_MIN(m->chunk, scount - off), type, dst, P2P_TAG,
                        m->comm, req_post(rs)));
  req_finish(c, rs);
  req_finish(c, rr);
}

/* Work queued on the device before the barrier is finished when it returns. */
static void mpi_barrier(dt_comm_t c) {
  if (on_device(c)) stage_sync(c);
  MPI_CHECK(MPI_Barrier(impl(c)->comm));
}

static dt_comm_req_t mpi_allreduce_async(dt_comm_t c, const void *send, void *recv,
                                         size_t count, dt_dtype t, dt_redop op) {
  return allreduce_start(c, send, recv, count, t, op, 1);
}

static dt_comm_req_t mpi_reduce_scatterv_async(dt_comm_t c, const void *send, void *recv,
                                               const size_t *recvcounts, dt_dtype t,
                                               dt_redop op) {
  return reduce_scatter_start(c, send, recv, recvcounts, 0, t, op, 1);
}

static dt_comm_req_t mpi_allgatherv_async(dt_comm_t c, const void *send, void *recv,
                                          const size_t *counts, dt_dtype t) {
  return allgather_start(c, send, recv, counts, 0, t, 1);
}

static void mpi_wait(dt_comm_t c, dt_comm_req_t req) {
  if (req) req_finish(c, req);
}

static void mpi_destroy(dt_comm_t c) {
  mpi_impl *m = impl(c);
  int pending = 0;
  for (int i = 0; i < m->nbufs; i++) pending |= m->bufs[i].pending;
  if (pending) c->be->sync(c->be); /* an h2d may still read a buffer */
  for (int i = 0; i < m->nbufs; i++) c->be->host_free(c->be, m->bufs[i].p);
  free(m->bufs);
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++) MPI_CHECK(MPI_Op_free(&m->half_ops[i][j]));
  MPI_CHECK(MPI_Type_free(&m->half));
  MPI_CHECK(MPI_Comm_free(&m->comm));
  free(m);
  free(c);
}

static size_t chunk_limit(void) {
  const char *s = getenv("DTRAIN_MPI_CHUNK");
  if (s && *s) {
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end == '\0' && v > 0 && v <= (unsigned long long)INT_MAX) return (size_t)v;
  }
  return (size_t)INT_MAX;
}

dt_comm_t dt_comm_mpi_create(MPI_Comm mpi, dt_backend_t be) {
  dt_comm_t c = (dt_comm_t)dt_calloc(1, sizeof *c);
  mpi_impl *m = (mpi_impl *)dt_calloc(1, sizeof *m);
  MPI_CHECK(MPI_Comm_dup(mpi, &m->comm));
  MPI_CHECK(MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN));
  MPI_CHECK(MPI_Type_contiguous(2, MPI_BYTE, &m->half));
  MPI_CHECK(MPI_Type_commit(&m->half));
  MPI_User_function *fns[2][3] = {{bf16_sum, bf16_max, bf16_min}, {f16_sum, f16_max, f16_min}};
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++) MPI_CHECK(MPI_Op_create(fns[i][j], 1, &m->half_ops[i][j]));
  m->chunk = chunk_limit();
  MPI_CHECK(MPI_Comm_rank(m->comm, &c->rank));
  MPI_CHECK(MPI_Comm_size(m->comm, &c->size));
  c->kind = "mpi";
  c->mpi = m->comm;
  c->be = be;
  c->impl = m;
  c->allreduce = mpi_allreduce;
  c->reduce_scatter = mpi_reduce_scatter;
  c->reduce_scatterv = mpi_reduce_scatterv;
  c->allgather = mpi_allgather;
  c->allgatherv = mpi_allgatherv;
  c->broadcast = mpi_broadcast;
  c->send = mpi_send;
  c->recv = mpi_recv;
  c->sendrecv = mpi_sendrecv;
  c->barrier = mpi_barrier;
  c->allreduce_async = mpi_allreduce_async;
  c->reduce_scatterv_async = mpi_reduce_scatterv_async;
  c->allgatherv_async = mpi_allgatherv_async;
  c->wait = mpi_wait;
  c->destroy = mpi_destroy;
  return c;
}
