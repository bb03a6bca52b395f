/* safetensors.h: the safetensors format (8-byte little-endian header length,
 * a JSON header naming each tensor's dtype, shape and byte range, then the raw
 * little-endian data), read with strict validation and written in F32; plus
 * the small JSON reader the header needs, which also reads Hugging Face's
 * config.json. */
#ifndef DT_SAFETENSORS_H
#define DT_SAFETENSORS_H

#include <stdint.h>
#include <stdio.h>

#include "dt.h"

/* ---- JSON (a small DOM; numbers keep an exact int64 when they are integers) ---- */

typedef enum {
  DT_JSON_NULL,
  DT_JSON_BOOL,
  DT_JSON_NUMBER,
  DT_JSON_STRING,
  DT_JSON_ARRAY,
  DT_JSON_OBJECT
} dt_json_type;

typedef struct dt_json {
  dt_json_type type;
  char *key;             /* member name inside an object, else NULL */
  char *str;             /* strings, decoded to UTF-8 */
  double num;            /* numbers; booleans as 0/1 */
  int is_int;            /* the number was written without fraction or exponent */
  int64_t i;             /* ... and its exact value */
  int n;                 /* members of an object / elements of an array */
  struct dt_json *kids;
} dt_json;

/* Parses text[0 .. len) as one JSON value (nothing but whitespace after it).
 * NULL with err "<name>: JSON error at byte N: ..." on malformed input or
 * duplicate object keys. */
dt_json *dt_json_parse(const char *text, size_t len, const char *name, dt_error *err);
void dt_json_free(dt_json *v);
/* Member of an object by name, NULL if absent or v is not an object. */
const dt_json *dt_json_get(const dt_json *v, const char *key);

/* ---- safetensors ---- */

#define DT_ST_MAXDIMS 8

typedef enum {
  DT_ST_BOOL, DT_ST_U8, DT_ST_I8, DT_ST_F8_E5M2, DT_ST_F8_E4M3, DT_ST_I16, DT_ST_U16,
  DT_ST_F16, DT_ST_BF16, DT_ST_I32, DT_ST_U32, DT_ST_F32, DT_ST_F64, DT_ST_I64, DT_ST_U64,
  DT_ST_NDTYPES
} dt_st_dtype;

typedef struct dt_st_tensor {
  char *name;
  dt_st_dtype dtype;
  int ndims;
  int64_t shape[DT_ST_MAXDIMS];
  uint64_t begin, end;   /* bytes, from the start of the data section */
} dt_st_tensor;

typedef struct dt_st_file {
  char *path;
  FILE *fp;
  uint64_t header_bytes; /* the JSON header's length, as stored in the first 8 bytes */
  uint64_t data_start;   /* 8 + header_bytes */
  uint64_t data_bytes;   /* the rest of the file */
  int ntensors;
  dt_st_tensor *tensors; /* in the order of their data */
  dt_json *header;       /* the parsed header (holds __metadata__, if any) */
} dt_st_file;

const char *dt_st_dtype_name(dt_st_dtype d);
size_t dt_st_dtype_bytes(dt_st_dtype d);
/* Elements of a tensor (the product of its shape; 1 for a scalar). */
size_t dt_st_count(const dt_st_tensor *t);

/* Opens and validates path: a regular file, the header length against the
 * file size, the header's JSON, every tensor's dtype, shape and byte range
 * (inside the data, matching shape x dtype size, no overlaps, no gaps: the
 * data is exactly the tensors), unique names, __metadata__ string to string.
 * -1 with err naming the file (and the tensor) otherwise. */
int dt_st_open(dt_st_file *f, const char *path, dt_error *err);
void dt_st_close(dt_st_file *f);
/* Index of the tensor called name, -1 if absent. */
int dt_st_find(const dt_st_file *f, const char *name);
/* A __metadata__ value, NULL if absent. */
const char *dt_st_metadata(const dt_st_file *f, const char *key);
/* The tensor's bytes as stored (t->end - t->begin of them). */
int dt_st_read_raw(dt_st_file *f, int i, void *dst, dt_error *err);
/* The tensor as floats (dt_st_count of them), converting F16, BF16 and F64;
 * other dtypes are an error naming the file and tensor. */
int dt_st_read_f32(dt_st_file *f, int i, float *dst, dt_error *err);

/* One F32 tensor to write. */
typedef struct dt_st_out {
  const char *name;
  int ndims;
  int64_t shape[DT_ST_MAXDIMS];
  const float *data;     /* dt_st_count elements, row-major */
} dt_st_out;

/* Writes the tensors to path as the safetensors library does (tensors sorted by
 * name, header in that order after __metadata__, padded with spaces to a
 * multiple of 8 bytes), so a file saved by PyTorch's safetensors and written
 * back here are the same bytes. meta: nmeta key/value pairs
 * {k0, v0, k1, v1, ...} for __metadata__ (nmeta = 0: none). Written to
 * path.tmp and renamed, so a failure leaves no partial file at path. */
int dt_st_write_f32(const char *path, const dt_st_out *tensors, int n, const char *const *meta,
                    int nmeta, dt_error *err);

#endif
