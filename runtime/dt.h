/* dt.h: the few things every dtrain file needs: error reporting, checked
 * library calls, small helpers. Nothing here knows about models or ranks
 * beyond the rank number printed in messages. */
#ifndef DT_DT_H
#define DT_DT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DT_NORETURN __attribute__((noreturn))

#define DT_EXIT_USER 2 /* bad input: config, data, checkpoint, layout */

/* A status for user-facing failures. Functions that read user input return
 * 0 on success or -1 with err->msg naming the file, line, section/key. */
typedef struct dt_error {
  char msg[1024];
} dt_error;

/* Formats into err (if non-NULL) and returns -1, so `return dt_error_set(...)`. */
int dt_error_set(dt_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The rank printed in messages; set once MPI is up (-1 before). */
void dt_set_rank(int rank);
/* The name user errors start with ("dtrain-translate: error: ..."); a
 * string that lives as long as the program. "dtrain" by default. */
void dt_set_program(const char *name);
int dt_rank(void);

/* Internal failures (a library call failed, out of memory): print
 * "[rank r] <lib> error: <msg> at file:line in func: <call>" and bring the
 * whole job down (MPI_Abort where MPI is up, abort() otherwise). */
DT_NORETURN void dt_fatal(const char *lib, const char *msg, const char *file,
                        int line, const char *func, const char *call);

/* dt_fatal for an MPI return code, with MPI's own message. */
DT_NORETURN void dt_fatal_mpi(int rc, const char *file, int line, const char *func,
                              const char *call);

/* Bad user input: print "dtrain: error: <msg>" once and exit with code 2
 * (MPI_Abort(2) when other ranks could be left waiting). */
DT_NORETURN void dt_die_user(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* The same, for errors every rank detects alike (config, layout): only rank 0
 * prints, every rank exits 2 without aborting the others. */
DT_NORETURN void dt_die_user_all(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* An allocation of `bytes` (0: unknown) of `what` ("host memory", "GPU
 * memory") failed. While a hint is set (dt_set_oom_hint: what the caller is
 * sizing and the keys that size it) that is the user's to fix: one message
 * naming the keys, exit 2; otherwise an internal error (dt_fatal). */
DT_NORETURN void dt_out_of_memory(const char *what, size_t bytes, const char *file, int line,
                                  const char *func);
/* The hint for out-of-memory errors from here on; NULL clears it. */
void dt_set_oom_hint(const char *hint);

#define DT_CHECK_ALLOC(p) \
  do { if (!(p)) dt_out_of_memory("host memory", 0, __FILE__, __LINE__, __func__); } while (0)

/* Checked malloc/calloc: never return NULL. */
void *dt_malloc(size_t bytes);
void *dt_calloc(size_t n, size_t size);
char *dt_strdup(const char *s);

/* Grows the array p (*cap elements of elem bytes) to hold at least need,
 * doubling from 64; returns the (maybe moved) array and updates *cap. */
void *dt_grow(void *p, size_t *cap, size_t need, size_t elem);

/* fopen(path, "rb") for a regular file only: a directory is an error
 * "<path>: is a directory, not a file", a FIFO, socket or device
 * "<path>: not a regular file" (checked without blocking on a FIFO). */
FILE *dt_fopen_regular(const char *path, dt_error *err);

/* Reads a whole file into a malloc'ed, NUL-terminated buffer (*len bytes,
 * the NUL not counted), opened through dt_fopen_regular. NULL with err
 * ("PATH: cannot open: ...", "... is a directory ...", "PATH: read error")
 * on failure; when the open itself failed, errno is open(2)'s. */
char *dt_read_file(const char *path, size_t *len, dt_error *err);

/* Where the first invalid UTF-8 sequence starts in text[0..n), or n when
 * there is none (strict: no overlongs, surrogates or code points over
 * U+10FFFF). */
size_t dt_utf8_invalid(const void *text, size_t n);

/* Monotonic wall clock in seconds. */
double dt_now(void);

#define DT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DT_MAX(a, b) ((a) > (b) ? (a) : (b))
#define DT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#ifdef __cplusplus
}
#endif

#endif
