/* h5.h: small checked helpers over HDF5 for shards and checkpoints. Every
 * failure returns -1 (or a negative hid) with err naming the file and the
 * dataset or attribute; HDF5's own error-stack printing is silenced. */
#ifndef DT_H5_H
#define DT_H5_H

#include <hdf5.h>
#include <stdint.h>

#include "dt.h"

#define DT_H5_MAXDIMS 8

/* Turns off HDF5's automatic error printing (idempotent). */
void dt_h5_init(void);

/* Create (truncate) / open read-only. Negative on failure, err set ("PATH:
 * not an HDF5 file", "PATH: no such file", ...). */
hid_t dt_h5_create(const char *path, dt_error *err);
hid_t dt_h5_open(const char *path, dt_error *err);
void dt_h5_close(hid_t f);

/* Whether an object (dataset or group) at `name` exists ("a/b/c" paths). */
int dt_h5_exists(hid_t f, const char *name);

/* Writes a dataset, creating intermediate groups. type: H5T_NATIVE_FLOAT,
 * H5T_NATIVE_UINT8, H5T_NATIVE_UINT16, H5T_NATIVE_INT32, H5T_NATIVE_INT64,
 * H5T_NATIVE_DOUBLE... Large datasets are chunked and deflate-compressed
 * when compress != 0. */
int dt_h5_write(hid_t f, const char *name, hid_t type, int ndims, const int64_t *dims,
                const void *data, int compress, dt_error *err);

/* The same dataset written in pieces, for data that is not in memory at
 * once: dt_h5_create_1d makes a 1-D dataset of n elements laid out as
 * dt_h5_write lays out an uncompressed one (-1 with err, else the dataset),
 * dt_h5_write_at writes elements [at, at+count) of it, dt_h5_dataset_close
 * closes it. */
hid_t dt_h5_create_1d(hid_t f, const char *name, hid_t type, int64_t n, dt_error *err);
int dt_h5_write_at(hid_t d, hid_t type, int64_t at, int64_t count, const void *data,
                   dt_error *err);
void dt_h5_dataset_close(hid_t d);

/* Reads the dims of a dataset. */
int dt_h5_dims(hid_t f, const char *name, int *ndims, int64_t dims[DT_H5_MAXDIMS], dt_error *err);

/* Reads a whole dataset converted to `type` into data. The dataset must have
 * exactly ndims dims equal to dims[] (entries < 0 accept any size); a
 * mismatch is an error naming file, dataset, expected and found shape. */
int dt_h5_read(hid_t f, const char *name, hid_t type, int ndims, const int64_t *dims, void *data,
               dt_error *err);

/* Reads rows [row0, row0+nrows) along the first dimension (for loaders). */
int dt_h5_read_rows(hid_t f, const char *name, hid_t type, int64_t row0, int64_t nrows,
                    void *data, dt_error *err);

/* Whether the object `obj` (which exists) carries attribute `attr`. */
int dt_h5_attr_exists(hid_t f, const char *obj, const char *attr);

/* Attributes on the object `obj` ("/" for the file root). */
int dt_h5_attr_write_i64(hid_t f, const char *obj, const char *attr, int n, const int64_t *v,
                         dt_error *err);
int dt_h5_attr_read_i64(hid_t f, const char *obj, const char *attr, int n, int64_t *v,
                        dt_error *err);
int dt_h5_attr_write_f64(hid_t f, const char *obj, const char *attr, int n, const double *v,
                         dt_error *err);
int dt_h5_attr_read_f64(hid_t f, const char *obj, const char *attr, int n, double *v,
                        dt_error *err);
int dt_h5_attr_write_str(hid_t f, const char *obj, const char *attr, const char *s,
                         dt_error *err);
/* malloc'ed string, NULL on error */
char *dt_h5_attr_read_str(hid_t f, const char *obj, const char *attr, dt_error *err);

/* The file name of an open file, for messages (static buffer per call site is
 * not needed: writes into buf). */
const char *dt_h5_filename(hid_t f, char *buf, size_t size);

#endif
