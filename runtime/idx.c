/* idx.c: the IDX reader (MNIST's format), raw or gzipped. A file is taken
 * only when its header, its dims and its exact length agree. */
#include "dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_MAX_ITEMS 100000000LL /* 1e8: far beyond any IDX data set */
#define IDX_MAX_IMAGE_DIM 4096

static const char *idx_kind(int magic) {
  return magic == 2051 ? "image" : magic == 2049 ? "label" : "item";
}

/* Reads exactly n bytes unless the stream ends or breaks; returns the count
 * read, or -1 on a gzip error (message set). */
static int64_t read_full(gzFile g, const char *path, void *buf, int64_t n, dt_error *err) {
  int64_t got = 0;
  while (got < n) {
    unsigned want = (unsigned)DT_MIN(n - got, (int64_t)1 << 30);
    int r = gzread(g, (char *)buf + got, want);
    if (r < 0) {
      int code;
      const char *msg = gzerror(g, &code);
      /* zlib prefixes "<fd:N>: " when opened by descriptor; the path says more. */
      const char *sep = msg[0] == '<' ? strstr(msg, ">: ") : NULL;
      if (sep) msg = sep + 3;
      return dt_error_set(err, "%s: corrupt gzip stream (%s)", path,
                          code == Z_ERRNO ? strerror(errno) : msg);
    }
    if (r == 0) break;
    got += r;
  }
  return got;
}

/* A short read ends either at a clean end of file or at a cut gzip stream. */
static const char *short_why(gzFile g) {
  int code;
  gzerror(g, &code);
  return code == Z_BUF_ERROR ? " (gzip stream cut short)" : "";
}

static int idx_parse(gzFile g, const char *path, int expect_magic, int *ndims, int64_t dims[3],
                     uint8_t **data, dt_error *err) {
  const char *kind = idx_kind(expect_magic);
  uint8_t hdr[4 + 4 * 3];
  int64_t r = read_full(g, path, hdr, 4, err);
  if (r < 0) return -1;
  if (r < 4)
    return dt_error_set(err, "%s: truncated: %lld bytes, too short for an IDX header%s", path,
                        (long long)r, short_why(g));
  unsigned magic = (unsigned)hdr[0] << 24 | (unsigned)hdr[1] << 16 | (unsigned)hdr[2] << 8 | hdr[3];
  if (magic != (unsigned)expect_magic)
    return dt_error_set(err, "%s: bad magic 0x%08x, expected 0x%08x (IDX %ss)", path, magic,
                        (unsigned)expect_magic, kind);
  int nd = expect_magic & 0xff;
  if (nd < 1 || nd > 3) return dt_error_set(err, "%s: IDX files with %d dims are not supported", path, nd);
  r = read_full(g, path, hdr + 4, 4 * nd, err);
  if (r < 0) return -1;
  if (r < 4 * nd)
    return dt_error_set(err, "%s: truncated: IDX header needs %d bytes, %lld found%s", path,
                        4 + 4 * nd, (long long)(4 + r), short_why(g));
  int64_t total = 1;
  for (int i = 0; i < nd; i++) {
    const uint8_t *p = hdr + 4 + 4 * i;
    dims[i] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
    if (dims[i] == 0) return dt_error_set(err, "%s: IDX dim %d is 0", path, i);
    if (dims[i] >= IDX_MAX_ITEMS || (i > 0 && dims[i] > IDX_MAX_IMAGE_DIM))
      return dt_error_set(err, "%s: implausible IDX dim %d = %lld", path, i, (long long)dims[i]);
    total *= dims[i];
    if (total >= IDX_MAX_ITEMS)
      return dt_error_set(err, "%s: implausible IDX size: over %lld bytes of %s data", path,
                          IDX_MAX_ITEMS, kind);
  }
  uint8_t *buf = dt_malloc((size_t)total);
  r = read_full(g, path, buf, total, err);
  if (r >= 0 && r < total)
    r = dt_error_set(err, "%s: truncated: %lld bytes of %s data expected, %lld found%s", path,
                     (long long)total, kind, (long long)r, short_why(g));
  /* Anything after the data means the header does not describe the file. */
  int64_t extra = 0;
  uint8_t tail[65536];
  while (r >= 0) {
    int64_t t = read_full(g, path, tail, sizeof tail, err);
    if (t < 0) r = -1;
    if (t <= 0) break;
    extra += t;
  }
  if (r >= 0 && extra > 0)
    r = dt_error_set(err, "%s: %lld bytes of trailing data after the %lld bytes the IDX header "
                     "describes", path, (long long)extra, (long long)total);
  if (r < 0) {
    free(buf);
    return -1;
  }
  *ndims = nd;
  *data = buf;
  return 0;
}

int dt_idx_read(const char *path, int expect_magic, int *ndims, int64_t dims[3], uint8_t **data,
                dt_error *err) {
  *data = NULL;
  *ndims = 0;
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    if (errno == ENOENT) return dt_error_set(err, "%s: no such file", path);
    return dt_error_set(err, "%s: cannot open: %s", path, strerror(errno));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return dt_error_set(err, "%s: not a regular file", path);
  }
  /* gzdopen reads gzip and passes any other bytes through unchanged. */
  gzFile g = gzdopen(fd, "rb");
  if (!g) {
    close(fd);
    return dt_error_set(err, "%s: cannot open: out of memory", path);
  }
  gzbuffer(g, 1 << 17);
  int rc = idx_parse(g, path, expect_magic, ndims, dims, data, err);
  gzclose_r(g);
  return rc;
}
