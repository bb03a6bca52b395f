/* h5.c: checked HDF5 helpers. Every failure returns -1 (or a negative hid)
 * with a message naming the file and the object; HDF5's error stack stays
 * silent, so one message reaches the user instead of a page of traces. */
#include "h5.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Datasets over this many bytes are chunked and compressed on request;
 * smaller ones gain nothing from a filter pipeline. */
#define DT_H5_COMPRESS_MIN (64 * 1024)
/* Target chunk size: small enough that reading a few rows inflates little,
 * large enough for deflate to work well. */
#define DT_H5_CHUNK_BYTES (256 * 1024)

/* Names print with a leading '/', whatever the caller wrote. */
#define SL(name) ((name)[0] == '/' ? "" : "/"), (name)

void dt_h5_init(void) {
  static int done;
  if (!done) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    done = 1;
  }
}

const char *dt_h5_filename(hid_t f, char *buf, size_t size) {
  if (size == 0) return buf;
  if (H5Fget_name(f, buf, size) < 0) snprintf(buf, size, "(unknown HDF5 file)");
  return buf;
}

/* Short alias used by every message below. */
#define FNAME(f) dt_h5_filename((f), fname_buf, sizeof fname_buf)

hid_t dt_h5_create(const char *path, dt_error *err) {
  dt_h5_init();
  errno = 0;
  /* HDF5 1.8's file format rather than 1.0's: its superblock and object
   * headers carry checksums, so a damaged header (attributes included) is
   * an error on open instead of wrong values or a crash inside the
   * library; every HDF5 since 1.8 (h5py's too) reads it */
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl >= 0) H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
  /* and no times in the root group's header (that format keeps them), so
   * the same data still makes the same bytes */
  hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
  if (fcpl >= 0) H5Pset_obj_track_times(fcpl, 0);
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl >= 0 ? fcpl : H5P_DEFAULT,
                      fapl >= 0 ? fapl : H5P_DEFAULT);
  if (fcpl >= 0) H5Pclose(fcpl);
  if (fapl >= 0) H5Pclose(fapl);
  if (f < 0) {
    int e = errno;
    dt_error_set(err, "%s: cannot create HDF5 file%s%s", path, e ? ": " : "", e ? strerror(e) : "");
    return -1;
  }
  return f;
}

hid_t dt_h5_open(const char *path, dt_error *err) {
  dt_h5_init();
  /* Probe with plain open(2) first: it tells "missing" from "unreadable"
   * from "not HDF5", which HDF5's own failure does not. */
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    if (errno == ENOENT) return dt_error_set(err, "%s: no such file", path);
    return dt_error_set(err, "%s: cannot open: %s", path, strerror(errno));
  }
  struct stat st;
  int isdir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
  close(fd);
  if (isdir) return dt_error_set(err, "%s: is a directory, expected an HDF5 file", path);
  if (H5Fis_hdf5(path) <= 0) return dt_error_set(err, "%s: not an HDF5 file (or truncated)", path);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return dt_error_set(err, "%s: not an HDF5 file (or truncated)", path);
  return f;
}

void dt_h5_close(hid_t f) {
  if (f >= 0) H5Fclose(f);
}

int dt_h5_attr_exists(hid_t f, const char *obj, const char *attr) {
  return H5Aexists_by_name(f, obj, attr, H5P_DEFAULT) > 0;
}

int dt_h5_exists(hid_t f, const char *name) {
  /* H5Lexists fails (rather than answering no) when an intermediate group is
   * missing, so walk the path one component at a time. */
  char path[1024];
  size_t n = strlen(name);
  if (n >= sizeof path) return 0;
  memcpy(path, name, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (path[i] != '/' && path[i] != '\0') continue;
    if (path[i - 1] == '/') continue; /* leading or doubled '/' */
    char c = path[i];
    path[i] = '\0';
    htri_t ok = H5Lexists(f, path, H5P_DEFAULT);
    path[i] = c;
    if (ok <= 0) return 0;
  }
  return 1;
}

static int shape_str(char *buf, size_t size, int ndims, const int64_t *dims) {
  size_t at = 0;
  at += (size_t)snprintf(buf + at, size - at, "(");
  for (int i = 0; i < ndims && at < size; i++) {
    if (dims[i] < 0)
      at += (size_t)snprintf(buf + at, size - at, "%s*", i ? "," : "");
    else
      at += (size_t)snprintf(buf + at, size - at, "%s%lld", i ? "," : "", (long long)dims[i]);
  }
  if (at < size) snprintf(buf + at, size - at, ")");
  return 0;
}

/* Chunked + deflate(1) + shuffle along dim 0 when asked and worth it. */
static hid_t make_dcpl(hid_t type, int ndims, const int64_t *dims, int compress) {
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  /* No modification times in the object headers: the same data makes the
   * same file, byte for byte (dtrain-prep's outputs are compared so). */
  if (dcpl >= 0 && H5Pset_obj_track_times(dcpl, 0) < 0) {
    H5Pclose(dcpl);
    return -1;
  }
  if (dcpl < 0 || !compress || ndims < 1 || dims[0] <= 0) return dcpl;
  size_t row_bytes = H5Tget_size(type);
  for (int i = 1; i < ndims; i++) row_bytes *= (size_t)dims[i];
  if (row_bytes == 0 || row_bytes * (size_t)dims[0] <= DT_H5_COMPRESS_MIN) return dcpl;
  if (row_bytes > (1u << 30)) return dcpl; /* a single row over HDF5's chunk limit */
  hsize_t chunk[DT_H5_MAXDIMS];
  int64_t rows = (int64_t)(DT_H5_CHUNK_BYTES / row_bytes);
  chunk[0] = (hsize_t)DT_MAX(1, DT_MIN(rows, dims[0]));
  for (int i = 1; i < ndims; i++) chunk[i] = (hsize_t)dims[i];
  if (H5Pset_chunk(dcpl, ndims, chunk) < 0 || H5Pset_shuffle(dcpl) < 0 ||
      H5Pset_deflate(dcpl, 1) < 0) {
    H5Pclose(dcpl);
    return -1;
  }
  return dcpl;
}

/* Creates the groups above dataset `name` that do not exist yet, without
 * modification times (HDF5's intermediate groups would carry them). */
static int make_parents(hid_t f, const char *name) {
  char path[1024];
  size_t n = strlen(name);
  if (n >= sizeof path) return -1;
  memcpy(path, name, n + 1);
  hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
  if (gcpl < 0 || H5Pset_obj_track_times(gcpl, 0) < 0) {
    if (gcpl >= 0) H5Pclose(gcpl);
    return -1;
  }
  int rc = 0;
  for (char *q = strchr(path + 1, '/'); q && rc == 0; q = strchr(q + 1, '/')) {
    *q = '\0';
    if (!dt_h5_exists(f, path)) {
      hid_t g = H5Gcreate2(f, path, H5P_DEFAULT, gcpl, H5P_DEFAULT);
      if (g < 0) rc = -1;
      else H5Gclose(g);
    }
    *q = '/';
  }
  H5Pclose(gcpl);
  return rc;
}

int dt_h5_write(hid_t f, const char *name, hid_t type, int ndims, const int64_t *dims,
                const void *data, int compress, dt_error *err) {
  char fname_buf[512];
  if (ndims < 0 || ndims > DT_H5_MAXDIMS)
    return dt_error_set(err, "%s: dataset %s%s: %d dims, at most %d supported", FNAME(f), SL(name),
                        ndims, DT_H5_MAXDIMS);
  hsize_t hd[DT_H5_MAXDIMS];
  for (int i = 0; i < ndims; i++) {
    if (dims[i] < 0)
      return dt_error_set(err, "%s: dataset %s%s: negative dim %lld", FNAME(f), SL(name),
                          (long long)dims[i]);
    hd[i] = (hsize_t)dims[i];
  }
  /* Replacing keeps callers simple (rewrite a dataset in an open file). */
  if (dt_h5_exists(f, name) && H5Ldelete(f, name, H5P_DEFAULT) < 0)
    return dt_error_set(err, "%s: cannot replace dataset %s%s", FNAME(f), SL(name));
  int rc = -1;
  hid_t space = ndims ? H5Screate_simple(ndims, hd, NULL) : H5Screate(H5S_SCALAR);
  hid_t dcpl = make_dcpl(type, ndims, dims, compress);
  hid_t d = -1;
  if (space >= 0 && dcpl >= 0 && make_parents(f, name) == 0)
    d = H5Dcreate2(f, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (d < 0)
    dt_error_set(err, "%s: cannot create dataset %s%s", FNAME(f), SL(name));
  else if (H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    dt_error_set(err, "%s: cannot write dataset %s%s (disk full?)", FNAME(f), SL(name));
  else
    rc = 0;
  if (d >= 0) H5Dclose(d);
  if (dcpl >= 0) H5Pclose(dcpl);
  if (space >= 0) H5Sclose(space);
  return rc;
}

hid_t dt_h5_create_1d(hid_t f, const char *name, hid_t type, int64_t n, dt_error *err) {
  char fname_buf[512];
  const hsize_t hn = (hsize_t)(n > 0 ? n : 0);
  hid_t space = H5Screate_simple(1, &hn, NULL), dcpl = make_dcpl(type, 1, &n, 0), d = -1;
  if (space >= 0 && dcpl >= 0 && make_parents(f, name) == 0)
    d = H5Dcreate2(f, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (d < 0) dt_error_set(err, "%s: cannot create dataset %s%s", FNAME(f), SL(name));
  if (dcpl >= 0) H5Pclose(dcpl);
  if (space >= 0) H5Sclose(space);
  return d < 0 ? -1 : d;
}

int dt_h5_write_at(hid_t d, hid_t type, int64_t at, int64_t count, const void *data,
                   dt_error *err) {
  if (count <= 0) return 0;
  const hsize_t start = (hsize_t)at, n = (hsize_t)count;
  hid_t fs = H5Dget_space(d), ms = H5Screate_simple(1, &n, NULL);
  int ok = fs >= 0 && ms >= 0 &&
           H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &n, NULL) >= 0 &&
           H5Dwrite(d, type, ms, fs, H5P_DEFAULT, data) >= 0;
  if (ms >= 0) H5Sclose(ms);
  if (fs >= 0) H5Sclose(fs);
  if (ok) return 0;
  char fname_buf[512];
  return dt_error_set(err, "%s: cannot write elements %lld..%lld (disk full?)", FNAME(d),
                      (long long)at, (long long)(at + count));
}

void dt_h5_dataset_close(hid_t d) {
  if (d >= 0) H5Dclose(d);
}

/* Opens a dataset, telling "missing" apart from "not openable". */
static hid_t open_dataset(hid_t f, const char *name, dt_error *err) {
  char fname_buf[512];
  if (!dt_h5_exists(f, name)) return dt_error_set(err, "%s: no dataset %s%s", FNAME(f), SL(name));
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  if (d < 0) return dt_error_set(err, "%s: %s%s is not a dataset", FNAME(f), SL(name));
  return d;
}

static int dataset_dims(hid_t f, hid_t d, const char *name, int *ndims,
                        int64_t dims[DT_H5_MAXDIMS], dt_error *err) {
  char fname_buf[512];
  hid_t space = H5Dget_space(d);
  int nd = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
  if (nd < 0 || nd > DT_H5_MAXDIMS) {
    if (space >= 0) H5Sclose(space);
    return dt_error_set(err, "%s: dataset %s%s has an unreadable or over-%d-dim shape", FNAME(f),
                        SL(name), DT_H5_MAXDIMS);
  }
  hsize_t hd[DT_H5_MAXDIMS];
  H5Sget_simple_extent_dims(space, hd, NULL);
  H5Sclose(space);
  *ndims = nd;
  for (int i = 0; i < nd; i++) dims[i] = (int64_t)hd[i];
  return 0;
}

int dt_h5_dims(hid_t f, const char *name, int *ndims, int64_t dims[DT_H5_MAXDIMS], dt_error *err) {
  hid_t d = open_dataset(f, name, err);
  if (d < 0) return -1;
  int rc = dataset_dims(f, d, name, ndims, dims, err);
  H5Dclose(d);
  return rc;
}

/* HDF5 converts a stored value the memory type cannot hold by clamping it
 * (an int8 -1 label becomes 0, a 300 becomes 255) or by dropping its
 * fraction; dtrain's reads stop at such a value instead. */
static H5T_conv_ret_t conv_abort(H5T_conv_except_t e, hid_t src, hid_t dst, void *s, void *d,
                                 void *user) {
  (void)src, (void)dst, (void)s, (void)d, (void)user;
  return e == H5T_CONV_EXCEPT_PRECISION ? H5T_CONV_UNHANDLED : H5T_CONV_ABORT;
}

/* The transfer property list of every read: conversions that would change
 * a value fail (made once, kept for the process) */
static hid_t strict_xfer(void) {
  static hid_t x = -1;
  if (x < 0) {
    x = H5Pcreate(H5P_DATASET_XFER);
    if (x >= 0 && H5Pset_type_conv_cb(x, conv_abort, NULL) < 0) {
      H5Pclose(x);
      x = -1;
    }
  }
  return x < 0 ? H5P_DEFAULT : x;
}

int dt_h5_read(hid_t f, const char *name, hid_t type, int ndims, const int64_t *dims, void *data,
               dt_error *err) {
  char fname_buf[512];
  hid_t d = open_dataset(f, name, err);
  if (d < 0) return -1;
  int nd;
  int64_t got[DT_H5_MAXDIMS];
  int rc = dataset_dims(f, d, name, &nd, got, err);
  int match = rc == 0 && nd == ndims;
  for (int i = 0; match && i < nd; i++)
    if (dims[i] >= 0 && dims[i] != got[i]) match = 0;
  if (rc == 0 && !match) {
    char have[256], want[256];
    shape_str(have, sizeof have, nd, got);
    shape_str(want, sizeof want, ndims, dims);
    rc = dt_error_set(err, "%s: dataset %s%s has shape %s, expected %s", FNAME(f), SL(name), have,
                      want);
  }
  if (rc == 0 && H5Dread(d, type, H5S_ALL, H5S_ALL, strict_xfer(), data) < 0)
    rc = dt_error_set(err, "%s: cannot read dataset %s%s (corrupt, of a type that is not "
                      "convertible, or holding a value the expected type cannot hold)",
                      FNAME(f), SL(name));
  H5Dclose(d);
  return rc;
}

int dt_h5_read_rows(hid_t f, const char *name, hid_t type, int64_t row0, int64_t nrows,
                    void *data, dt_error *err) {
  char fname_buf[512];
  hid_t d = open_dataset(f, name, err);
  if (d < 0) return -1;
  int nd;
  int64_t dims[DT_H5_MAXDIMS];
  int rc = dataset_dims(f, d, name, &nd, dims, err);
  if (rc == 0 && nd < 1)
    rc = dt_error_set(err, "%s: dataset %s%s is a scalar, it has no rows", FNAME(f), SL(name));
  if (rc == 0 && (row0 < 0 || nrows < 0 || row0 + nrows > dims[0]))
    rc = dt_error_set(err, "%s: rows [%lld,%lld) out of range for dataset %s%s with %lld rows",
                      FNAME(f), (long long)row0, (long long)(row0 + nrows), SL(name),
                      (long long)dims[0]);
  if (rc != 0 || nrows == 0) {
    H5Dclose(d);
    return rc;
  }
  hsize_t start[DT_H5_MAXDIMS] = {0}, count[DT_H5_MAXDIMS];
  start[0] = (hsize_t)row0;
  count[0] = (hsize_t)nrows;
  for (int i = 1; i < nd; i++) count[i] = (hsize_t)dims[i];
  hid_t fspace = H5Dget_space(d);
  hid_t mspace = H5Screate_simple(nd, count, NULL);
  rc = -1;
  if (fspace >= 0 && mspace >= 0 &&
      H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
      H5Dread(d, type, mspace, fspace, strict_xfer(), data) >= 0)
    rc = 0;
  else
    dt_error_set(err, "%s: cannot read rows [%lld,%lld) of dataset %s%s (corrupt, or holding "
                 "a value the expected type cannot hold)", FNAME(f),
                 (long long)row0, (long long)(row0 + nrows), SL(name));
  if (mspace >= 0) H5Sclose(mspace);
  if (fspace >= 0) H5Sclose(fspace);
  H5Dclose(d);
  return rc;
}

/* ---- attributes ---- */

static hid_t open_object(hid_t f, const char *obj, dt_error *err) {
  char fname_buf[512];
  if (!(strcmp(obj, "/") == 0 || dt_h5_exists(f, obj)))
    return dt_error_set(err, "%s: no object %s%s", FNAME(f), SL(obj));
  hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
  if (o < 0) return dt_error_set(err, "%s: cannot open object %s%s", FNAME(f), SL(obj));
  return o;
}

/* Creates attr on obj (replacing an old one) and writes it. */
static int attr_write(hid_t f, const char *obj, const char *attr, hid_t ftype, hid_t mtype,
                      hid_t space, const void *buf, dt_error *err) {
  char fname_buf[512];
  hid_t o = open_object(f, obj, err);
  if (o < 0) return -1;
  if (H5Aexists(o, attr) > 0) H5Adelete(o, attr);
  int rc = -1;
  hid_t a = H5Acreate2(o, attr, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a >= 0 && H5Awrite(a, mtype, buf) >= 0)
    rc = 0;
  else
    dt_error_set(err, "%s: cannot write attribute %s on %s%s", FNAME(f), attr, SL(obj));
  if (a >= 0) H5Aclose(a);
  H5Oclose(o);
  return rc;
}

static int attr_write_num(hid_t f, const char *obj, const char *attr, hid_t ftype, hid_t mtype,
                          int n, const void *v, dt_error *err) {
  char fname_buf[512];
  if (n < 1)
    return dt_error_set(err, "%s: attribute %s on %s%s: %d values", FNAME(f), attr, SL(obj), n);
  hsize_t hn = (hsize_t)n;
  hid_t space = H5Screate_simple(1, &hn, NULL);
  if (space < 0)
    return dt_error_set(err, "%s: cannot write attribute %s on %s%s", FNAME(f), attr, SL(obj));
  int rc = attr_write(f, obj, attr, ftype, mtype, space, v, err);
  H5Sclose(space);
  return rc;
}

/* Opens attr on obj; *o gets the object to close after. */
static hid_t attr_open(hid_t f, const char *obj, const char *attr, hid_t *o, dt_error *err) {
  char fname_buf[512];
  *o = open_object(f, obj, err);
  if (*o < 0) return -1;
  htri_t exists = H5Aexists(*o, attr);
  hid_t a = exists > 0 ? H5Aopen(*o, attr, H5P_DEFAULT) : -1;
  if (a < 0) {
    H5Oclose(*o);
    *o = -1;
    if (exists == 0)
      return dt_error_set(err, "%s: no attribute %s on %s%s", FNAME(f), attr, SL(obj));
    return dt_error_set(err, "%s: cannot read attribute %s on %s%s: the file is damaged there "
                        "(HDF5 cannot parse the object's header, or its checksum does not match)",
                        FNAME(f), attr, SL(obj));
  }
  return a;
}

static int attr_read_num(hid_t f, const char *obj, const char *attr, hid_t mtype, int n, void *v,
                         dt_error *err) {
  char fname_buf[512];
  hid_t o;
  hid_t a = attr_open(f, obj, attr, &o, err);
  if (a < 0) return -1;
  int rc = 0;
  hid_t ftype = H5Aget_type(a);
  H5T_class_t cls = ftype >= 0 ? H5Tget_class(ftype) : H5T_NO_CLASS;
  hid_t space = H5Aget_space(a);
  hssize_t count = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
  if (cls != H5T_INTEGER && cls != H5T_FLOAT)
    rc = dt_error_set(err, "%s: attribute %s on %s%s is not numeric", FNAME(f), attr, SL(obj));
  else if (count != n)
    rc = dt_error_set(err, "%s: attribute %s on %s%s has %lld values, expected %d", FNAME(f), attr,
                      SL(obj), (long long)count, n);
  else if (H5Aread(a, mtype, v) < 0)
    rc = dt_error_set(err, "%s: cannot read attribute %s on %s%s", FNAME(f), attr, SL(obj));
  if (space >= 0) H5Sclose(space);
  if (ftype >= 0) H5Tclose(ftype);
  H5Aclose(a);
  H5Oclose(o);
  return rc;
}

int dt_h5_attr_write_i64(hid_t f, const char *obj, const char *attr, int n, const int64_t *v,
                         dt_error *err) {
  return attr_write_num(f, obj, attr, H5T_STD_I64LE, H5T_NATIVE_INT64, n, v, err);
}

int dt_h5_attr_read_i64(hid_t f, const char *obj, const char *attr, int n, int64_t *v,
                        dt_error *err) {
  return attr_read_num(f, obj, attr, H5T_NATIVE_INT64, n, v, err);
}

int dt_h5_attr_write_f64(hid_t f, const char *obj, const char *attr, int n, const double *v,
                         dt_error *err) {
  return attr_write_num(f, obj, attr, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, n, v, err);
}

int dt_h5_attr_read_f64(hid_t f, const char *obj, const char *attr, int n, double *v,
                        dt_error *err) {
  return attr_read_num(f, obj, attr, H5T_NATIVE_DOUBLE, n, v, err);
}

/* Strings are written as scalar fixed-length UTF-8, null-terminated, inside
 * the (checksummed) object header. Variable-length ones (what h5py writes
 * for a Python str) live in a global heap that has no checksum, and a
 * damaged one crashed HDF5 itself when read; reading accepts both. */
int dt_h5_attr_write_str(hid_t f, const char *obj, const char *attr, const char *s,
                         dt_error *err) {
  char fname_buf[512];
  hid_t type = H5Tcopy(H5T_C_S1);
  hid_t space = H5Screate(H5S_SCALAR);
  int rc;
  if (type < 0 || space < 0 || H5Tset_size(type, strlen(s) + 1) < 0 ||
      H5Tset_strpad(type, H5T_STR_NULLTERM) < 0 || H5Tset_cset(type, H5T_CSET_UTF8) < 0)
    rc = dt_error_set(err, "%s: cannot write attribute %s on %s%s", FNAME(f), attr, SL(obj));
  else
    rc = attr_write(f, obj, attr, type, type, space, s, err);
  if (space >= 0) H5Sclose(space);
  if (type >= 0) H5Tclose(type);
  return rc;
}

char *dt_h5_attr_read_str(hid_t f, const char *obj, const char *attr, dt_error *err) {
  char fname_buf[512];
  hid_t o;
  hid_t a = attr_open(f, obj, attr, &o, err);
  if (a < 0) return NULL;
  char *out = NULL;
  hid_t ftype = H5Aget_type(a);
  hid_t space = H5Aget_space(a);
  hid_t mtype = ftype >= 0 ? H5Tcopy(H5T_C_S1) : -1;
  int ok = ftype >= 0 && space >= 0 && mtype >= 0;
  if (!ok || H5Tget_class(ftype) != H5T_STRING || H5Sget_simple_extent_npoints(space) != 1) {
    dt_error_set(err, "%s: attribute %s on %s%s is not a single string", FNAME(f), attr, SL(obj));
  } else if (H5Tis_variable_str(ftype) > 0) {
    char *p = NULL;
    H5Tset_size(mtype, H5T_VARIABLE);
    H5Tset_cset(mtype, H5Tget_cset(ftype));
    if (H5Aread(a, mtype, &p) >= 0 && p) {
      out = dt_strdup(p);
      H5free_memory(p);
    } else {
      dt_error_set(err, "%s: cannot read attribute %s on %s%s", FNAME(f), attr, SL(obj));
    }
  } else {
    size_t n = H5Tget_size(ftype);
    char *buf = dt_calloc(n + 1, 1);
    H5Tset_size(mtype, n + 1); /* room for the terminator whatever the padding */
    H5Tset_strpad(mtype, H5T_STR_NULLTERM);
    H5Tset_cset(mtype, H5Tget_cset(ftype));
    if (H5Aread(a, mtype, buf) >= 0) {
      out = buf;
    } else {
      free(buf);
      dt_error_set(err, "%s: cannot read attribute %s on %s%s", FNAME(f), attr, SL(obj));
    }
  }
  if (mtype >= 0) H5Tclose(mtype);
  if (space >= 0) H5Sclose(space);
  if (ftype >= 0) H5Tclose(ftype);
  H5Aclose(a);
  H5Oclose(o);
  return out;
}
