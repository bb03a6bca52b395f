/* error.c: fatal (internal) and user (exit 2) error reporting. */
#include "dt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <mpi.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int g_rank = -1;
static const char *g_program = "dtrain";

void dt_set_rank(int rank) { g_rank = rank; }
void dt_set_program(const char *name) { g_program = name; }
int dt_rank(void) { return g_rank; }

int dt_error_set(dt_error *err, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return -1;
}

static DT_NORETURN void abort_job(int code) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  int size = 1;
  if (init && !fin) MPI_Comm_size(MPI_COMM_WORLD, &size);
  fflush(stdout);
  fflush(stderr);
  /* With one rank a plain exit keeps the exit code exact; with several,
   * MPI_Abort is what stops the others from waiting forever. */
  if (init && !fin && size > 1) MPI_Abort(MPI_COMM_WORLD, code);
  if (init && !fin) MPI_Finalize();
  exit(code);
}

void dt_fatal(const char *lib, const char *msg, const char *file, int line,
              const char *func, const char *call) {
  fprintf(stderr, "[rank %d] %s error: %s at %s:%d in %s: %s\n", g_rank < 0 ? 0 : g_rank,
          lib, msg, file, line, func, call);
  abort_job(1);
}

void dt_fatal_mpi(int rc, const char *file, int line, const char *func, const char *call) {
  char msg[MPI_MAX_ERROR_STRING + 1];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  msg[len] = '\0';
  if (!len) snprintf(msg, sizeof msg, "MPI error code %d", rc);
  dt_fatal("MPI", msg, file, line, func, call);
}

static void print_user_error(const char *fmt, va_list ap) {
  fprintf(stderr, "%s: error: ", g_program);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
}

void dt_die_user(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  print_user_error(fmt, ap);
  va_end(ap);
  abort_job(DT_EXIT_USER);
}

void dt_die_user_all(const char *fmt, ...) {
  if (g_rank <= 0) {
    va_list ap;
    va_start(ap, fmt);
    print_user_error(fmt, ap);
    va_end(ap);
  }
  fflush(stdout);
  fflush(stderr);
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Finalize();
  exit(DT_EXIT_USER);
}

static char g_oom_hint[512];

void dt_set_oom_hint(const char *hint) {
  snprintf(g_oom_hint, sizeof g_oom_hint, "%s", hint ? hint : "");
}

void dt_out_of_memory(const char *what, size_t bytes, const char *file, int line,
                      const char *func) {
  char size[64] = "";
  if (bytes >= (size_t)1 << 30)
    snprintf(size, sizeof size, " (asked for %.1f GiB)", (double)bytes / (1 << 30));
  else if (bytes)
    snprintf(size, sizeof size, " (asked for %.1f MiB)", (double)bytes / (1 << 20));
  if (g_oom_hint[0]) {
    fprintf(stderr, "%s: error: [rank %d] out of %s%s for %s\n", g_program,
            g_rank < 0 ? 0 : g_rank, what, size, g_oom_hint);
    abort_job(DT_EXIT_USER);
  }
  char msg[128];
  snprintf(msg, sizeof msg, "out of %s%s", what, size);
  dt_fatal(strcmp(what, "GPU memory") ? "libc" : "CUDA", msg, file, line, func, "allocation");
}

void *dt_malloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) dt_out_of_memory("host memory", bytes, __FILE__, __LINE__, __func__);
  return p;
}

void *dt_calloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) dt_out_of_memory("host memory", n * size, __FILE__, __LINE__, __func__);
  return p;
}

char *dt_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = dt_malloc(n);
  memcpy(p, s, n);
  return p;
}

void *dt_grow(void *p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return p;
  size_t c = *cap ? *cap : 64;
  while (c < need) c *= 2;
  p = realloc(p, c * elem);
  DT_CHECK_ALLOC(p);
  *cap = c;
  return p;
}

FILE *dt_fopen_regular(const char *path, dt_error *err) {
  /* O_NONBLOCK: opening a FIFO to read waits for a writer, possibly forever,
   * before its type could be checked; the flag is cleared once it is known
   * to be a regular file */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    dt_error_set(err, "%s: cannot open: %s", path, strerror(e));
    errno = e; /* callers tell a missing file (ENOENT) from others */
    return NULL;
  }
  struct stat st;
  int flags;
  if (fstat(fd, &st) != 0 || (flags = fcntl(fd, F_GETFL)) < 0) {
    dt_error_set(err, "%s: cannot open: %s", path, strerror(errno));
  } else if (S_ISDIR(st.st_mode)) {
    dt_error_set(err, "%s: is a directory, not a file", path);
  } else if (!S_ISREG(st.st_mode)) {
    /* a FIFO, socket or device: no size to check a header against, and
     * reading it may block or never end */
    dt_error_set(err, "%s: not a regular file", path);
  } else if (fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    dt_error_set(err, "%s: cannot open: %s", path, strerror(errno));
  } else {
    FILE *fp = fdopen(fd, "rb");
    if (fp) return fp;
    dt_error_set(err, "%s: cannot open: %s", path, strerror(errno));
  }
  close(fd);
  return NULL;
}

char *dt_read_file(const char *path, size_t *len, dt_error *err) {
  FILE *f = dt_fopen_regular(path, err);
  if (!f) return NULL;
  size_t cap = 1 << 20, n = 0;
  char *buf = dt_malloc(cap + 1);
  for (;;) {
    if (n == cap) {
      cap *= 2;
      buf = realloc(buf, cap + 1);
      DT_CHECK_ALLOC(buf);
    }
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    dt_error_set(err, "%s: read error", path);
    return NULL;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

size_t dt_utf8_invalid(const void *text, size_t n) {
  const uint8_t *p = text;
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) len = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, v = c & 0x07, min = 0x10000;
    else return i;
    if (i + len > n) return i;
    for (size_t k = 1; k < len; k++) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      v = v << 6 | (p[i + k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return i;
    i += len;
  }
  return n;
}

double dt_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
