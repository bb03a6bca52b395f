/* safetensors.c: a strict safetensors reader, an F32 writer that lays files
 * out as the safetensors library does, and the small JSON parser both use. */
#include "safetensors.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* The data is little-endian on disk and copied as is. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

/* The safetensors library refuses larger headers; so do we, before allocating. */
#define ST_MAX_HEADER 100000000ULL
#define JSON_MAX_DEPTH 64

/* ================= JSON ================= */

typedef struct jparser {
  const char *s;
  size_t n, i;
  const char *name;
  dt_error *err;
} jparser;

__attribute__((format(printf, 2, 3))) static int jfail(jparser *p, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return dt_error_set(p->err, "%s: JSON error at byte %zu: %s", p->name, p->i, msg);
}

static void jskip(jparser *p) {
  while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' ||
                         p->s[p->i] == '\r'))
    p->i++;
}

static int jlit(jparser *p, const char *word) {
  size_t l = strlen(word);
  if (p->n - p->i < l || memcmp(p->s + p->i, word, l) != 0)
    return jfail(p, "unexpected character '%c'", p->s[p->i]);
  p->i += l;
  return 0;
}

static int hex4(jparser *p, unsigned *out) {
  if (p->n - p->i < 4) return jfail(p, "truncated \\u escape");
  unsigned v = 0;
  for (int k = 0; k < 4; k++) {
    char c = p->s[p->i++];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return jfail(p, "bad hex digit in \\u escape");
  }
  *out = v;
  return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) return o[0] = (char)cp, 1;
  if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F)), 2;
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* A string at p->i (on the opening quote), decoded into a malloc'ed buffer.
 * The decoded text is never longer than the escaped one. */
static int jstring(jparser *p, char **out) {
  size_t start = ++p->i, end = start;
  while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
  if (end >= p->n) return jfail(p, "unterminated string");
  char *o = dt_malloc(end - start + 1);
  size_t k = 0;
  while (p->s[p->i] != '"') {
    unsigned char c = (unsigned char)p->s[p->i];
    if (c < 0x20) return free(o), jfail(p, "control character in a string");
    if (c != '\\') {
      o[k++] = (char)c, p->i++;
      continue;
    }
    char e = p->s[++p->i];
    p->i++;
    switch (e) {
      case '"': o[k++] = '"'; break;
      case '\\': o[k++] = '\\'; break;
      case '/': o[k++] = '/'; break;
      case 'b': o[k++] = '\b'; break;
      case 'f': o[k++] = '\f'; break;
      case 'n': o[k++] = '\n'; break;
      case 'r': o[k++] = '\r'; break;
      case 't': o[k++] = '\t'; break;
      case 'u': {
        unsigned cp, lo;
        if (hex4(p, &cp)) return free(o), -1;
        if (cp >= 0xD800 && cp < 0xDC00) { /* a surrogate pair makes one code point */
          if (p->n - p->i < 6 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
            return free(o), jfail(p, "unpaired surrogate in \\u escape");
          p->i += 2;
          if (hex4(p, &lo)) return free(o), -1;
          if (lo < 0xDC00 || lo >= 0xE000)
            return free(o), jfail(p, "unpaired surrogate in \\u escape");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp < 0xE000) {
          return free(o), jfail(p, "unpaired surrogate in \\u escape");
        }
        if (cp == 0) return free(o), jfail(p, "\\u0000 in a string");
        k += put_utf8(o + k, cp);
        break;
      }
      default: p->i--; return free(o), jfail(p, "bad escape '\\%c'", e);
    }
  }
  p->i++;
  o[k] = '\0';
  *out = o;
  return 0;
}

static int jnumber(jparser *p, dt_json *v) {
  size_t start = p->i;
  int integer = 1;
  if (p->s[p->i] == '-') p->i++;
  if (p->i >= p->n || !(p->s[p->i] >= '0' && p->s[p->i] <= '9')) return jfail(p, "bad number");
  if (p->s[p->i] == '0') p->i++;
  else
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
  if (p->i < p->n && p->s[p->i] == '.') {
    integer = 0, p->i++;
    if (p->i >= p->n || !(p->s[p->i] >= '0' && p->s[p->i] <= '9'))
      return jfail(p, "bad number: no digits after '.'");
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
  }
  if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
    integer = 0, p->i++;
    if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
    if (p->i >= p->n || !(p->s[p->i] >= '0' && p->s[p->i] <= '9'))
      return jfail(p, "bad number: no digits in the exponent");
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
  }
  char buf[64];
  size_t len = p->i - start;
  if (len >= sizeof buf) return p->i = start, jfail(p, "number too long");
  memcpy(buf, p->s + start, len);
  buf[len] = '\0';
  v->type = DT_JSON_NUMBER;
  v->num = strtod(buf, NULL);
  if (integer) {
    errno = 0;
    long long x = strtoll(buf, NULL, 10);
    v->is_int = errno != ERANGE; /* beyond int64: only the double is kept */
    v->i = x;
  }
  return 0;
}

static int jvalue(jparser *p, dt_json *v, int depth);

static dt_json *jpush(dt_json *v, int *cap) {
  if (v->n == *cap) {
    *cap = *cap ? 2 * *cap : 8;
    v->kids = realloc(v->kids, (size_t)*cap * sizeof *v->kids);
    DT_CHECK_ALLOC(v->kids);
  }
  dt_json *k = &v->kids[v->n++];
  memset(k, 0, sizeof *k);
  return k;
}

typedef struct jkey {
  const char *key;
  size_t at; /* where the name's opening quote is in the text */
} jkey;

static int by_key(const void *a, const void *b) {
  const jkey *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  if (c) return c;
  return x->at < y->at ? -1 : x->at > y->at;
}

/* Member names must be unique. Checked once the object is read, by sorting
 * the names: comparing each new name with every earlier one was quadratic (a
 * header of 200k tensors took minutes). The error points at the first repeat
 * in the text, as a check while reading would. */
static int junique(jparser *p, const dt_json *v, const size_t *at) {
  jkey *keys = dt_malloc(((size_t)v->n + 1) * sizeof *keys);
  for (int j = 0; j < v->n; j++) keys[j] = (jkey){v->kids[j].key, at[j]};
  qsort(keys, (size_t)v->n, sizeof *keys, by_key);
  const jkey *dup = NULL;
  for (int j = 1; j < v->n; j++)
    if (!strcmp(keys[j - 1].key, keys[j].key) && (!dup || keys[j].at < dup->at)) dup = &keys[j];
  int rc = 0;
  if (dup) {
    p->i = dup->at;
    rc = jfail(p, "duplicate key \"%s\"", dup->key);
  }
  free(keys);
  return rc;
}

static int jcontainer(jparser *p, dt_json *v, int depth) {
  int obj = p->s[p->i] == '{', cap = 0, rc = 0;
  char close = obj ? '}' : ']';
  size_t *at = NULL; /* an object's name positions, for junique */
  v->type = obj ? DT_JSON_OBJECT : DT_JSON_ARRAY;
  p->i++;
  jskip(p);
  if (p->i < p->n && p->s[p->i] == close) return p->i++, 0;
  for (;;) {
    jskip(p);
    char *key = NULL;
    size_t key_at = p->i;
    if (obj) {
      if (p->i >= p->n || p->s[p->i] != '"') {
        rc = jfail(p, "expected a member name");
        break;
      }
      if ((rc = jstring(p, &key))) break;
      jskip(p);
      if (p->i >= p->n || p->s[p->i] != ':') {
        free(key);
        rc = jfail(p, "expected ':'");
        break;
      }
      p->i++;
    }
    int had = cap;
    dt_json *k = jpush(v, &cap);
    k->key = key;
    if (obj && cap != had) {
      at = realloc(at, (size_t)cap * sizeof *at);
      DT_CHECK_ALLOC(at);
    }
    if (obj) at[v->n - 1] = key_at;
    if ((rc = jvalue(p, k, depth + 1))) break;
    jskip(p);
    if (p->i >= p->n) {
      rc = jfail(p, "unexpected end (missing '%c')", close);
      break;
    }
    if (p->s[p->i] == close) {
      p->i++;
      if (obj) rc = junique(p, v, at);
      break;
    }
    if (p->s[p->i] != ',') {
      rc = jfail(p, "expected ',' or '%c'", close);
      break;
    }
    p->i++;
  }
  free(at);
  return rc;
}

static int jvalue(jparser *p, dt_json *v, int depth) {
  if (depth > JSON_MAX_DEPTH) return jfail(p, "nested deeper than %d", JSON_MAX_DEPTH);
  jskip(p);
  if (p->i >= p->n) return jfail(p, "unexpected end");
  char c = p->s[p->i];
  if (c == '{' || c == '[') return jcontainer(p, v, depth);
  if (c == '"') return v->type = DT_JSON_STRING, jstring(p, &v->str);
  if (c == 't') return v->type = DT_JSON_BOOL, v->num = 1, jlit(p, "true");
  if (c == 'f') return v->type = DT_JSON_BOOL, jlit(p, "false");
  if (c == 'n') return v->type = DT_JSON_NULL, jlit(p, "null");
  if (c == '-' || (c >= '0' && c <= '9')) return jnumber(p, v);
  return jfail(p, "unexpected character '%c'", c);
}

static void json_free_kids(dt_json *v) {
  for (int j = 0; j < v->n; j++) json_free_kids(&v->kids[j]);
  free(v->kids);
  free(v->key);
  free(v->str);
}

void dt_json_free(dt_json *v) {
  if (!v) return;
  json_free_kids(v);
  free(v);
}

dt_json *dt_json_parse(const char *text, size_t len, const char *name, dt_error *err) {
  jparser p = {text, len, 0, name, err};
  dt_json *v = dt_calloc(1, sizeof *v);
  int rc = jvalue(&p, v, 0);
  if (!rc) {
    jskip(&p);
    if (p.i < p.n) rc = jfail(&p, "trailing characters after the value");
  }
  if (rc) {
    dt_json_free(v);
    return NULL;
  }
  return v;
}

const dt_json *dt_json_get(const dt_json *v, const char *key) {
  if (!v || v->type != DT_JSON_OBJECT) return NULL;
  for (int j = 0; j < v->n; j++)
    if (!strcmp(v->kids[j].key, key)) return &v->kids[j];
  return NULL;
}

/* ================= safetensors: reading ================= */

static const struct {
  const char *name;
  size_t bytes;
} k_dtypes[DT_ST_NDTYPES] = {
  [DT_ST_BOOL] = {"BOOL", 1},       [DT_ST_U8] = {"U8", 1},   [DT_ST_I8] = {"I8", 1},
  [DT_ST_F8_E5M2] = {"F8_E5M2", 1}, [DT_ST_F8_E4M3] = {"F8_E4M3", 1},
  [DT_ST_I16] = {"I16", 2},         [DT_ST_U16] = {"U16", 2}, [DT_ST_F16] = {"F16", 2},
  [DT_ST_BF16] = {"BF16", 2},       [DT_ST_I32] = {"I32", 4}, [DT_ST_U32] = {"U32", 4},
  [DT_ST_F32] = {"F32", 4},         [DT_ST_F64] = {"F64", 8}, [DT_ST_I64] = {"I64", 8},
  [DT_ST_U64] = {"U64", 8},
};

const char *dt_st_dtype_name(dt_st_dtype d) { return k_dtypes[d].name; }
size_t dt_st_dtype_bytes(dt_st_dtype d) { return k_dtypes[d].bytes; }

size_t dt_st_count(const dt_st_tensor *t) {
  size_t n = 1;
  for (int d = 0; d < t->ndims; d++) n *= (size_t)t->shape[d];
  return n;
}

static void shape_text(char *buf, size_t size, int nd, const int64_t *shape) {
  int o = snprintf(buf, size, "(");
  for (int d = 0; d < nd && o < (int)size; d++)
    o += snprintf(buf + o, size - (size_t)o, "%s%lld", d ? "," : "", (long long)shape[d]);
  if (o < (int)size) snprintf(buf + o, size - (size_t)o, ")");
}

/* One header entry {"dtype": ..., "shape": [...], "data_offsets": [b, e]}
 * into t, checked against the data section's size. */
static int parse_tensor(const dt_st_file *f, const dt_json *v, dt_st_tensor *t, dt_error *err) {
  const char *fn = f->path, *tn = v->key;
  if (v->type != DT_JSON_OBJECT)
    return dt_error_set(err, "%s: tensor '%s': header entry is not an object", fn, tn);
  for (int j = 0; j < v->n; j++) {
    const char *k = v->kids[j].key;
    if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
      return dt_error_set(err, "%s: tensor '%s': unknown header field \"%s\"", fn, tn, k);
  }
  const dt_json *dt = dt_json_get(v, "dtype"), *sh = dt_json_get(v, "shape"),
                *off = dt_json_get(v, "data_offsets");
  if (!dt || !sh || !off)
    return dt_error_set(err, "%s: tensor '%s': header entry lacks \"%s\"", fn, tn,
                        !dt ? "dtype" : !sh ? "shape" : "data_offsets");
  if (dt->type != DT_JSON_STRING)
    return dt_error_set(err, "%s: tensor '%s': dtype is not a string", fn, tn);
  t->dtype = DT_ST_NDTYPES;
  for (int d = 0; d < DT_ST_NDTYPES; d++)
    if (!strcmp(dt->str, k_dtypes[d].name)) t->dtype = (dt_st_dtype)d;
  if (t->dtype == DT_ST_NDTYPES)
    return dt_error_set(err, "%s: tensor '%s': unknown or unsupported dtype \"%s\"", fn, tn,
                        dt->str);
  if (sh->type != DT_JSON_ARRAY || sh->n > DT_ST_MAXDIMS)
    return dt_error_set(err, "%s: tensor '%s': shape is not an array of at most %d sizes", fn, tn,
                        DT_ST_MAXDIMS);
  t->ndims = sh->n;
  /* the byte count, checked for overflow as the shape multiplies up */
  uint64_t bytes = k_dtypes[t->dtype].bytes;
  int overflow = 0;
  for (int d = 0; d < sh->n; d++) {
    const dt_json *x = &sh->kids[d];
    if (x->type != DT_JSON_NUMBER || !x->is_int || x->i < 0)
      return dt_error_set(err, "%s: tensor '%s': shape[%d] is not a size (an integer >= 0)", fn,
                          tn, d);
    t->shape[d] = x->i;
    if (x->i && bytes > UINT64_MAX / (uint64_t)x->i) overflow = 1;
    else bytes *= (uint64_t)x->i;
  }
  if (off->type != DT_JSON_ARRAY || off->n != 2)
    return dt_error_set(err, "%s: tensor '%s': data_offsets is not a pair [begin, end]", fn, tn);
  for (int k = 0; k < 2; k++)
    if (off->kids[k].type != DT_JSON_NUMBER || !off->kids[k].is_int || off->kids[k].i < 0)
      return dt_error_set(err, "%s: tensor '%s': data_offsets[%d] is not an integer >= 0", fn,
                          tn, k);
  t->begin = (uint64_t)off->kids[0].i;
  t->end = (uint64_t)off->kids[1].i;
  if (t->end < t->begin)
    return dt_error_set(err, "%s: tensor '%s': data_offsets [%llu, %llu) end before they begin",
                        fn, tn, (unsigned long long)t->begin, (unsigned long long)t->end);
  if (t->end > f->data_bytes)
    return dt_error_set(err,
                        "%s: tensor '%s': data_offsets [%llu, %llu) run past the end of the data "
                        "(%llu bytes; truncated file?)",
                        fn, tn, (unsigned long long)t->begin, (unsigned long long)t->end,
                        (unsigned long long)f->data_bytes);
  if (overflow || bytes != t->end - t->begin) {
    char s[160], need[64];
    shape_text(s, sizeof s, t->ndims, t->shape);
    if (overflow) snprintf(need, sizeof need, "more than 2^64");
    else snprintf(need, sizeof need, "%llu", (unsigned long long)bytes);
    return dt_error_set(err,
                        "%s: tensor '%s': shape %s of %s needs %s bytes, but data_offsets "
                        "[%llu, %llu) hold %llu",
                        fn, tn, s, dt->str, need, (unsigned long long)t->begin,
                        (unsigned long long)t->end, (unsigned long long)(t->end - t->begin));
  }
  return 0;
}

static int by_offsets(const void *a, const void *b) {
  const dt_st_tensor *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return strcmp(x->name, y->name);
}

/* The data section must be exactly the tensors, back to back, as the format
 * requires: an overlap means two tensors share bytes, a gap means bytes no
 * tensor owns (a malformed or tampered file either way). */
static int check_layout(const dt_st_file *f, dt_error *err) {
  qsort(f->tensors, (size_t)f->ntensors, sizeof *f->tensors, by_offsets);
  uint64_t pos = 0;
  const dt_st_tensor *prev = NULL;
  for (int i = 0; i < f->ntensors; i++) {
    const dt_st_tensor *t = &f->tensors[i];
    if (t->begin < pos)
      return dt_error_set(err, "%s: tensor '%s' [%llu, %llu) overlaps tensor '%s' [%llu, %llu)",
                          f->path, t->name, (unsigned long long)t->begin,
                          (unsigned long long)t->end, prev->name,
                          (unsigned long long)prev->begin, (unsigned long long)prev->end);
    if (t->begin > pos)
      return dt_error_set(err, "%s: data bytes [%llu, %llu) before tensor '%s' belong to no tensor",
                          f->path, (unsigned long long)pos, (unsigned long long)t->begin,
                          t->name);
    pos = t->end;
    prev = t;
  }
  if (pos != f->data_bytes)
    return dt_error_set(err, "%s: %llu bytes after the last tensor's data belong to no tensor",
                        f->path, (unsigned long long)(f->data_bytes - pos));
  return 0;
}

static int parse_metadata(const dt_st_file *f, const dt_json *v, dt_error *err) {
  if (v->type != DT_JSON_OBJECT)
    return dt_error_set(err, "%s: __metadata__ is not an object", f->path);
  for (int j = 0; j < v->n; j++)
    if (v->kids[j].type != DT_JSON_STRING)
      return dt_error_set(err, "%s: __metadata__ \"%s\" is not a string", f->path, v->kids[j].key);
  return 0;
}

static int read_header(dt_st_file *f, dt_error *err) {
  if (fseeko(f->fp, 0, SEEK_END) != 0)
    return dt_error_set(err, "%s: cannot seek: %s", f->path, strerror(errno));
  off_t size = ftello(f->fp);
  rewind(f->fp);
  unsigned char len8[8];
  if (size < 8 || fread(len8, 1, 8, f->fp) != 8)
    return dt_error_set(err,
                        "%s: truncated: %lld bytes, less than the 8-byte header length a "
                        "safetensors file starts with",
                        f->path, (long long)size);
  uint64_t hl = 0;
  for (int k = 7; k >= 0; k--) hl = hl << 8 | len8[k];
  if (hl > (uint64_t)size - 8)
    return dt_error_set(err,
                        "%s: header length %llu runs past the end of the file (%lld bytes): "
                        "truncated, or not a safetensors file",
                        f->path, (unsigned long long)hl, (long long)size);
  if (hl > ST_MAX_HEADER)
    return dt_error_set(err, "%s: header length %llu is over the format's limit of %llu bytes",
                        f->path, (unsigned long long)hl, ST_MAX_HEADER);
  f->header_bytes = hl;
  f->data_start = 8 + hl;
  f->data_bytes = (uint64_t)size - f->data_start;
  char *text = dt_malloc(hl + 1);
  int ok = fread(text, 1, hl, f->fp) == hl;
  text[hl] = '\0';
  if (!ok || hl == 0 || text[0] != '{') {
    free(text);
    return dt_error_set(err, "%s: the header does not start with '{': not a safetensors file",
                        f->path);
  }
  char name[4200];
  snprintf(name, sizeof name, "%s: header", f->path);
  f->header = dt_json_parse(text, hl, name, err);
  free(text);
  return f->header ? 0 : -1;
}

int dt_st_open(dt_st_file *f, const char *path, dt_error *err) {
  memset(f, 0, sizeof *f);
  f->path = dt_strdup(path);
  f->fp = dt_fopen_regular(path, err);
  if (!f->fp) return dt_st_close(f), -1;
  if (read_header(f, err)) return dt_st_close(f), -1;
  const dt_json *h = f->header;
  if (h->type != DT_JSON_OBJECT) {
    dt_error_set(err, "%s: header is not a JSON object", path);
    return dt_st_close(f), -1;
  }
  f->tensors = dt_calloc((size_t)h->n + 1, sizeof *f->tensors);
  for (int j = 0; j < h->n; j++) {
    const dt_json *v = &h->kids[j];
    int rc;
    if (!strcmp(v->key, "__metadata__")) {
      rc = parse_metadata(f, v, err);
    } else {
      dt_st_tensor *t = &f->tensors[f->ntensors++];
      t->name = v->key; /* owned by the header */
      rc = parse_tensor(f, v, t, err);
    }
    if (rc) return dt_st_close(f), -1;
  }
  if (check_layout(f, err)) return dt_st_close(f), -1;
  return 0;
}

void dt_st_close(dt_st_file *f) {
  if (f->fp) fclose(f->fp);
  free(f->tensors);
  dt_json_free(f->header);
  free(f->path);
  memset(f, 0, sizeof *f);
}

int dt_st_find(const dt_st_file *f, const char *name) {
  for (int i = 0; i < f->ntensors; i++)
    if (!strcmp(f->tensors[i].name, name)) return i;
  return -1;
}

const char *dt_st_metadata(const dt_st_file *f, const char *key) {
  const dt_json *v = dt_json_get(dt_json_get(f->header, "__metadata__"), key);
  return v && v->type == DT_JSON_STRING ? v->str : NULL;
}

int dt_st_read_raw(dt_st_file *f, int i, void *dst, dt_error *err) {
  const dt_st_tensor *t = &f->tensors[i];
  size_t bytes = (size_t)(t->end - t->begin);
  if (bytes == 0) return 0;
  if (fseeko(f->fp, (off_t)(f->data_start + t->begin), SEEK_SET) != 0 ||
      fread(dst, 1, bytes, f->fp) != bytes)
    return dt_error_set(err, "%s: tensor '%s': reading %zu bytes failed (file changed?)", f->path,
                        t->name, bytes);
  return 0;
}

/* IEEE half to float, subnormals, infinities and NaN included. */
static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | man << 13;
  } else if (exp) {
    bits = sign | (exp + 112) << 23 | man << 13;
  } else {
    float v = ldexpf((float)man, -24); /* zero or subnormal: exact in float */
    return sign ? -v : v;
  }
  float v;
  memcpy(&v, &bits, sizeof v);
  return v;
}

int dt_st_read_f32(dt_st_file *f, int i, float *dst, dt_error *err) {
  const dt_st_tensor *t = &f->tensors[i];
  size_t n = dt_st_count(t);
  if (t->dtype == DT_ST_F32) return dt_st_read_raw(f, i, dst, err);
  if (t->dtype != DT_ST_F16 && t->dtype != DT_ST_BF16 && t->dtype != DT_ST_F64)
    return dt_error_set(err, "%s: tensor '%s' is %s; only F32, F16, BF16 and F64 read as floats",
                        f->path, t->name, k_dtypes[t->dtype].name);
  void *raw = dt_malloc((size_t)(t->end - t->begin) + 1);
  if (dt_st_read_raw(f, i, raw, err)) return free(raw), -1;
  if (t->dtype == DT_ST_F64) {
    const double *d = raw;
    for (size_t k = 0; k < n; k++) dst[k] = (float)d[k];
  } else {
    const uint16_t *h = raw;
    for (size_t k = 0; k < n; k++) {
      if (t->dtype == DT_ST_F16) {
        dst[k] = half_to_float(h[k]);
      } else {
        uint32_t bits = (uint32_t)h[k] << 16;
        memcpy(&dst[k], &bits, sizeof bits);
      }
    }
  }
  free(raw);
  return 0;
}

/* ================= safetensors: writing ================= */

typedef struct sbuf {
  char *s;
  size_t n, cap;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
    va_end(ap);
    if (b->s && (size_t)k < b->cap - b->n) {
      b->n += (size_t)k;
      return;
    }
    b->cap = DT_MAX(2 * b->cap, b->n + (size_t)k + 256);
    b->s = realloc(b->s, b->cap);
    DT_CHECK_ALLOC(b->s);
  }
}

/* A JSON string as serde_json writes it: quotes, backslashes and control
 * characters escaped, everything else (UTF-8 included) as is. */
static void sb_json_string(sbuf *b, const char *s) {
  sb_printf(b, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') sb_printf(b, "\\%c", c);
    else if (c == '\n') sb_printf(b, "\\n");
    else if (c == '\r') sb_printf(b, "\\r");
    else if (c == '\t') sb_printf(b, "\\t");
    else if (c == '\b') sb_printf(b, "\\b");
    else if (c == '\f') sb_printf(b, "\\f");
    else if (c < 0x20) sb_printf(b, "\\u%04x", c);
    else sb_printf(b, "%c", c);
  }
  sb_printf(b, "\"");
}

static int by_name(const void *a, const void *b) {
  return strcmp((*(const dt_st_out *const *)a)->name, (*(const dt_st_out *const *)b)->name);
}

static size_t out_count(const dt_st_out *t) {
  size_t n = 1;
  for (int d = 0; d < t->ndims; d++) n *= (size_t)t->shape[d];
  return n;
}

int dt_st_write_f32(const char *path, const dt_st_out *tensors, int n, const char *const *meta,
                    int nmeta, dt_error *err) {
  const dt_st_out **order = dt_malloc(((size_t)n + 1) * sizeof *order);
  for (int i = 0; i < n; i++) order[i] = &tensors[i];
  qsort(order, (size_t)n, sizeof *order, by_name);
  for (int i = 1; i < n; i++)
    if (!strcmp(order[i]->name, order[i - 1]->name)) {
      /* the message first: the name is reached through order */
      int rc = dt_error_set(err, "%s: tensor name '%s' given twice", path, order[i]->name);
      free(order);
      return rc;
    }
  sbuf h = {0};
  sb_printf(&h, "{");
  if (nmeta > 0) {
    sb_printf(&h, "\"__metadata__\":{");
    for (int k = 0; k < nmeta; k++) {
      sb_printf(&h, k ? "," : "");
      sb_json_string(&h, meta[2 * k]);
      sb_printf(&h, ":");
      sb_json_string(&h, meta[2 * k + 1]);
    }
    sb_printf(&h, "}");
  }
  uint64_t pos = 0;
  for (int i = 0; i < n; i++) {
    const dt_st_out *t = order[i];
    uint64_t bytes = (uint64_t)out_count(t) * sizeof(float);
    sb_printf(&h, (i || nmeta > 0) ? "," : "");
    sb_json_string(&h, t->name);
    sb_printf(&h, ":{\"dtype\":\"F32\",\"shape\":[");
    for (int d = 0; d < t->ndims; d++)
      sb_printf(&h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
    sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)pos,
              (unsigned long long)(pos + bytes));
    pos += bytes;
  }
  sb_printf(&h, "}");
  while (h.n % 8) sb_printf(&h, " "); /* the data starts 8-byte aligned */

  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *fp = fopen(tmp, "wb");
  int rc = 0;
  if (!fp) {
    rc = dt_error_set(err, "%s: cannot create: %s", tmp, strerror(errno));
  } else {
    unsigned char len8[8];
    for (int k = 0; k < 8; k++) len8[k] = (unsigned char)((uint64_t)h.n >> (8 * k));
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(h.s, 1, h.n, fp) == h.n;
    for (int i = 0; ok && i < n; i++) {
      size_t c = out_count(order[i]);
      ok = fwrite(order[i]->data, sizeof(float), c, fp) == c;
    }
    ok = fflush(fp) == 0 && ok;
    ok = fclose(fp) == 0 && ok;
    if (!ok) rc = dt_error_set(err, "%s: write failed: %s", tmp, strerror(errno));
    else if (rename(tmp, path) != 0)
      rc = dt_error_set(err, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (rc) remove(tmp);
  }
  free(h.s);
  free(order);
  return rc;
}
