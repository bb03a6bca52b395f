/* profile.h: a timing shim over a backend's kernel table ([log] profile).
 *
 * dt_profile_install replaces be->k with a table whose every slot waits for
 * the backend (be->sync), calls the real kernel, waits again and adds the
 * wall time to that slot, with the FLOPs of the matmul, convolution and
 * attention slots (the counts kernels/kernels.h's shapes give: 2 per
 * multiply-add, causal attention halved, padding masks not subtracted) and
 * the bytes of the memory-bound ones (each input read once, each output
 * written once, an accumulated output read and written: the fewest a
 * kernel can move, so bytes/s is comparable with the device's bandwidth).
 * Waiting around each call serialises what would overlap (NCCL buckets,
 * the copy stream), so a profiled run is slower than a plain one; the
 * per-slot times are what each kernel costs on its own, launch included.
 * Results are unchanged: the same kernels run on the same data.
 *
 * The engine times its blocking communication the same way, as slots of
 * the same table (dt_profile_comm_begin/end): the tensor-parallel
 * collectives, the pipeline's sends and receives, the wait for a
 * micro-batch's data-parallel buckets and ZeRO's parameter all-gather, so
 * the table shows what a step spends communicating beside its kernels.
 *
 * Calls are counted only while enabled, so a trainer can leave out warm-up
 * and evaluation. One profile per process: the shim's slots find it
 * through a static pointer (a kernel call carries only the backend's ctx). */
#ifndef DT_KERNELS_PROFILE_H
#define DT_KERNELS_PROFILE_H

#include <stdio.h>

#include "../runtime/backend.h"

typedef struct dt_profile dt_profile;

/* Starts disabled. NULL (with nothing changed) when a profile is already
 * installed in this process. */
dt_profile *dt_profile_install(dt_backend_t be);
/* Restores the backend's own table and frees p (NULL: nothing). */
void dt_profile_remove(dt_profile *p);

/* Counting on (1) or off (0); the time spent enabled is the wall time the
 * table's shares are of, one unit of `per` (e.g. a training step) per
 * enable/disable pair. */
void dt_profile_enable(dt_profile *p, int on);

/* The table: one row per slot that was called, by time, each with calls
 * and milliseconds per unit, share of the enabled wall time, mean
 * microseconds per call and, where counted, TFLOP/s or GB/s; then the
 * wall time outside every slot (communication, copies, host work). `per`
 * names the unit ("step"). */
void dt_profile_print(const dt_profile *p, FILE *f, const char *per);

/* The communication slots, in the table as "comm tp all-reduce" etc. */
typedef enum {
  DT_PROF_TP_ALLREDUCE,
  DT_PROF_TP_ALLGATHER,
  DT_PROF_TP_REDUCE_SCATTER,
  DT_PROF_PP_SENDRECV,
  DT_PROF_DP_WAIT,
  DT_PROF_DP_GATHER,
  DT_PROF_COMM_COUNT
} dt_prof_comm;
/* Before a blocking communication call: -1 when no profile is counting;
 * else waits for the device, as before a kernel, and returns the time. */
double dt_profile_comm_begin(void);
/* After it: adds the time since t0 (nothing when t0 < 0) and `bytes`, the
 * data one rank sends or receives (the larger), to the slot. */
void dt_profile_comm_end(dt_prof_comm slot, double t0, double bytes);

/* A trace of the calls themselves, for Perfetto or chrome://tracing:
 * after dt_profile_trace(p, units, origin) every timed call of the next
 * `units` enabled spans is kept as an event (start and duration in seconds
 * since `origin`, its slot), and each span itself as an event of slot -1.
 * Ranks that take origin from one barrier line their traces up. */
typedef struct dt_prof_event {
  double t0, dur;
  int slot; /* -1: an enabled span (a unit) */
  int pad;
} dt_prof_event;
void dt_profile_trace(dt_profile *p, long units, double origin);
/* The events kept so far (n of them). */
const dt_prof_event *dt_profile_events(const dt_profile *p, size_t *n);
/* Writes events ev[0..n) of rank `rank` as Chrome trace-format JSON
 * objects (no enclosing brackets; a comma before each but the file's
 * first, so `first` says whether one has been written): calls on thread 0,
 * as the table names them, the spans ("per" k) on thread 1, the process
 * named "rank R". */
void dt_profile_trace_json(FILE *f, const dt_prof_event *ev, size_t n, int rank, const char *per,
                           int first);

/* For tests: calls, seconds, FLOPs and bytes of the slot named `slot` (0 if
 * never called or unknown), and the units counted. */
long dt_profile_calls(const dt_profile *p, const char *slot);
double dt_profile_seconds(const dt_profile *p, const char *slot);
double dt_profile_flops(const dt_profile *p, const char *slot);
double dt_profile_bytes(const dt_profile *p, const char *slot);
long dt_profile_units(const dt_profile *p);

#endif
