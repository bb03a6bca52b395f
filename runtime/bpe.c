/* bpe.c: GPT-2's byte-level BPE. The pre-tokenizer is GPT-2's regex
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * written out by hand over UTF-8; each piece is then merged pair by pair,
 * lowest merge rank first (leftmost on ties), as tiktoken does, with a cache
 * of pieces already seen (text repeats its words, which makes this fast). */
#include "bpe.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { CL_OTHER = 0, CL_LETTER = 1, CL_NUMBER = 2, CL_SPACE = 3 };

#define BMP 0x10000
#define NO_MERGE INT32_MAX
#define CACHE_MAX_PIECE 256         /* longer pieces are rare: not cached */
#define CACHE_MAX_ENTRIES (1u << 20) /* then the cache starts over */

typedef struct cache_entry {
  uint64_t hash;
  uint32_t key_off, val_off; /* into ckeys / cvals */
  uint16_t key_len, val_n;   /* key_len 0: empty slot */
} cache_entry;

struct dt_bpe {
  int n_vocab;
  int32_t eot;
  uint32_t *tok_off; /* (n_vocab+1): token id's bytes are tok_bytes[tok_off[id]..tok_off[id+1]) */
  char *tok_bytes;
  int32_t byte_id[256];
  /* merges: key (left << 32 | right) -> rank (line in vocab.bpe) and merged id */
  uint64_t *mkey;
  int32_t *mrank, *mid;
  size_t mmask;
  const uint8_t *cls; /* class of each code point below BMP (shared, never freed) */
  /* Specials named on vocab.bpe's first line (dtrain-trained tokenizers):
   * whole tokens only, never the result of a merge. */
  int32_t special[DT_BPE_MAX_SPECIALS];
  int n_special;
  /* piece cache */
  cache_entry *cache;
  size_t cmask, cn;
  char *ckeys;
  size_t ckeys_n, ckeys_cap;
  int32_t *cvals;
  size_t cvals_n, cvals_cap;
  /* scratch for one piece: symbols, pair ranks, pair results */
  int32_t *sym, *rank, *merged;
  size_t work_cap;
  size_t heap_min; /* pieces this long and longer merge through a heap */
};

/* ---- small helpers ---- */

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  return k;
}

/* Decodes one UTF-8 character (strict: no overlongs, surrogates or values
 * over U+10FFFF). Returns its length, 0 when s does not start a valid one. */
static size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
  uint8_t c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t len;
  uint32_t v, min;
  if (c >= 0xC2 && c <= 0xDF) len = 2, v = c & 0x1F, min = 0x80;
  else if (c >= 0xE0 && c <= 0xEF) len = 3, v = c & 0x0F, min = 0x800;
  else if (c >= 0xF0 && c <= 0xF4) len = 4, v = c & 0x07, min = 0x10000;
  else return 0;
  if (len > n) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    v = v << 6 | (s[i] & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

static int in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (cp < r[mid][0]) hi = mid;
    else if (cp > r[mid][1]) lo = mid + 1;
    else return 1;
  }
  return 0;
}

static int class_of_cp(uint32_t cp) {
  if (in_ranges(dt_unicode_letter, dt_unicode_letter_count, cp)) return CL_LETTER;
  if (in_ranges(dt_unicode_number, dt_unicode_number_count, cp)) return CL_NUMBER;
  if (in_ranges(dt_unicode_space, dt_unicode_space_count, cp)) return CL_SPACE;
  return CL_OTHER;
}

/* The class of the character at s[i] and its length in bytes; a byte that
 * does not start valid UTF-8 is one character of class "other". */
static inline int char_at(const uint8_t *cls, const uint8_t *s, size_t i, size_t n, size_t *len) {
  if (s[i] < 0x80) {
    *len = 1;
    return cls[s[i]];
  }
  uint32_t cp;
  size_t l = utf8_decode(s + i, n - i, &cp);
  if (!l) {
    *len = 1;
    return CL_OTHER;
  }
  *len = l;
  return cp < BMP ? cls[cp] : class_of_cp(cp);
}

/* ---- pre-tokenizer ---- */

/* The end of the piece that starts at i (< n): the regex's alternatives in
 * order, leftmost-first as a backtracking engine takes them. */
static size_t next_piece(const uint8_t *cls, const uint8_t *s, size_t i, size_t n) {
  if (s[i] == '\'' && i + 1 < n) { /* 's 't 're 've 'm 'll 'd (case-sensitive) */
    uint8_t c1 = s[i + 1];
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return i + 2;
    if (i + 2 < n) {
      uint8_t c2 = s[i + 2];
      if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
        return i + 3;
    }
  }
  size_t len, j;
  int cl = char_at(cls, s, i, n, &len);
  j = i + len;
  if (s[i] == ' ' && j < n) { /* " ?" before a letter, number or other */
    size_t l1;
    int c1 = char_at(cls, s, j, n, &l1);
    if (c1 != CL_SPACE) {
      cl = c1;
      j += l1;
    }
  }
  if (cl != CL_SPACE) {
    while (j < n) {
      size_t l;
      if (char_at(cls, s, j, n, &l) != cl) break;
      j += l;
    }
    return j;
  }
  /* whitespace: \s+(?!\S) leaves the last one for the next piece when a
   * non-space follows, unless the run is that one character (\s+). */
  size_t last = i;
  while (j < n) {
    size_t l;
    if (char_at(cls, s, j, n, &l) != CL_SPACE) break;
    last = j;
    j += l;
  }
  if (j < n && last > i) return last;
  return j;
}

/* ---- merges ---- */

static void merge_put(dt_bpe *b, int32_t left, int32_t right, int32_t rank, int32_t id) {
  uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
  size_t k = hash_u64(key) & b->mmask;
  while (b->mkey[k] != UINT64_MAX && b->mkey[k] != key) k = (k + 1) & b->mmask;
  if (b->mkey[k] == key && b->mrank[k] <= rank) return; /* a duplicate line: the first wins */
  b->mkey[k] = key;
  b->mrank[k] = rank;
  b->mid[k] = id;
}

static inline int32_t merge_get(const dt_bpe *b, int32_t left, int32_t right, int32_t *id) {
  uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
  size_t k = hash_u64(key) & b->mmask;
  for (;;) {
    if (b->mkey[k] == key) {
      *id = b->mid[k];
      return b->mrank[k];
    }
    if (b->mkey[k] == UINT64_MAX) return NO_MERGE;
    k = (k + 1) & b->mmask;
  }
}

/* BPE of a long piece (a run of letters or of Han characters with no space
 * can be a whole line), in O(len log len): the symbols form a linked list,
 * and a min-heap holds each adjacent pair under (rank, position of its left
 * symbol), so the pair popped is the lowest-ranked and, among equals, the
 * leftmost, as bpe_piece's scan picks. An entry whose left symbol has since
 * merged or changed neighbour (its stamp moved on) is skipped when popped. */
typedef struct pair_ent {
  int32_t rank, pos, stamp;
} pair_ent;

static int pair_less(const pair_ent *a, const pair_ent *b) {
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(pair_ent *h, size_t *n, pair_ent e) {
  size_t i = (*n)++;
  while (i > 0 && pair_less(&e, &h[(i - 1) / 2])) {
    h[i] = h[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h[i] = e;
}

static pair_ent heap_pop(pair_ent *h, size_t *n) {
  pair_ent top = h[0], last = h[--*n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= *n) break;
    if (c + 1 < *n && pair_less(&h[c + 1], &h[c])) c++;
    if (!pair_less(&h[c], &last)) break;
    h[i] = h[c];
    i = c;
  }
  if (*n) h[i] = last;
  return top;
}

static void bpe_piece_long(dt_bpe *b, const uint8_t *p, size_t len, dt_token_buf *out) {
  int32_t *sym = dt_malloc(len * sizeof *sym), *next = dt_malloc(len * sizeof *next);
  int32_t *prev = dt_malloc(len * sizeof *prev), *stamp = dt_calloc(len, sizeof *stamp);
  /* each merge pushes at most two pairs: len - 1 at the start, 2 per merge */
  pair_ent *heap = dt_malloc(3 * len * sizeof *heap);
  size_t nh = 0;
  for (size_t i = 0; i < len; i++) {
    sym[i] = b->byte_id[p[i]];
    next[i] = i + 1 < len ? (int32_t)(i + 1) : -1;
    prev[i] = (int32_t)i - 1;
  }
  int32_t id = -1;
  for (size_t i = 0; i + 1 < len; i++) {
    int32_t r = merge_get(b, sym[i], sym[i + 1], &id);
    if (r != NO_MERGE) heap_push(heap, &nh, (pair_ent){r, (int32_t)i, 0});
  }
  while (nh) {
    pair_ent e = heap_pop(heap, &nh);
    const int32_t i = e.pos, j = next[i];
    if (e.stamp != stamp[i] || j < 0) continue; /* stale */
    merge_get(b, sym[i], sym[j], &id);
    sym[i] = id;
    next[i] = next[j]; /* j joins i */
    if (next[j] >= 0) prev[next[j]] = i;
    stamp[j] = -1; /* j is gone: no entry for it is current */
    stamp[i]++;
    if (next[i] >= 0) {
      int32_t r = merge_get(b, sym[i], sym[next[i]], &id);
      if (r != NO_MERGE) heap_push(heap, &nh, (pair_ent){r, i, stamp[i]});
    }
    const int32_t h = prev[i];
    if (h >= 0) {
      stamp[h]++;
      int32_t r = merge_get(b, sym[h], sym[i], &id);
      if (r != NO_MERGE) heap_push(heap, &nh, (pair_ent){r, h, stamp[h]});
    }
  }
  size_t m = 0;
  for (int32_t i = 0; i >= 0; i = next[i]) m++;
  out->ids = dt_grow(out->ids, &out->cap, out->n + m, sizeof(int32_t));
  for (int32_t i = 0; i >= 0; i = next[i]) out->ids[out->n++] = sym[i];
  free(sym), free(next), free(prev), free(stamp), free(heap);
}

/* BPE on one piece of len >= 2 bytes; appends its ids to out. The scan
 * below is quadratic in len, and short pieces (nearly all) are fastest
 * with it. */
static void bpe_piece(dt_bpe *b, const uint8_t *p, size_t len, dt_token_buf *out) {
  if (len >= b->heap_min) {
    bpe_piece_long(b, p, len, out);
    return;
  }
  if (len > b->work_cap) {
    size_t cap = b->work_cap;
    b->sym = dt_grow(b->sym, &cap, len, sizeof(int32_t));
    cap = b->work_cap;
    b->rank = dt_grow(b->rank, &cap, len, sizeof(int32_t));
    cap = b->work_cap;
    b->merged = dt_grow(b->merged, &cap, len, sizeof(int32_t));
    b->work_cap = cap;
  }
  int32_t *sym = b->sym, *rank = b->rank, *merged = b->merged;
  size_t m = len;
  for (size_t i = 0; i < m; i++) sym[i] = b->byte_id[p[i]];
  for (size_t i = 0; i + 1 < m; i++) rank[i] = merge_get(b, sym[i], sym[i + 1], &merged[i]);
  while (m > 1) {
    size_t k = 0;
    for (size_t i = 1; i + 1 < m; i++)
      if (rank[i] < rank[k]) k = i;
    if (rank[k] == NO_MERGE) break;
    sym[k] = merged[k];
    /* drop symbol k+1 and pair k+1 */
    memmove(sym + k + 1, sym + k + 2, (m - k - 2) * sizeof *sym);
    if (k + 2 < m) {
      memmove(rank + k + 1, rank + k + 2, (m - k - 3) * sizeof *rank);
      memmove(merged + k + 1, merged + k + 2, (m - k - 3) * sizeof *merged);
    }
    m--;
    if (k > 0) rank[k - 1] = merge_get(b, sym[k - 1], sym[k], &merged[k - 1]);
    if (k + 1 < m) rank[k] = merge_get(b, sym[k], sym[k + 1], &merged[k]);
  }
  out->ids = dt_grow(out->ids, &out->cap, out->n + m, sizeof(int32_t));
  memcpy(out->ids + out->n, sym, m * sizeof *sym);
  out->n += m;
}

/* ---- the piece cache ---- */

static void cache_reset(dt_bpe *b, size_t slots) {
  free(b->cache);
  b->cache = dt_calloc(slots, sizeof *b->cache);
  b->cmask = slots - 1;
  b->cn = 0;
  b->ckeys_n = 0;
  b->cvals_n = 0;
}

static void cache_grow(dt_bpe *b) {
  size_t slots = (b->cmask + 1) * 2;
  cache_entry *old = b->cache, *t = dt_calloc(slots, sizeof *t);
  for (size_t i = 0; i <= b->cmask; i++) {
    if (!old[i].key_len) continue;
    size_t k = old[i].hash & (slots - 1);
    while (t[k].key_len) k = (k + 1) & (slots - 1);
    t[k] = old[i];
  }
  free(old);
  b->cache = t;
  b->cmask = slots - 1;
}

/* Encodes one piece through the cache. */
static void encode_piece(dt_bpe *b, const uint8_t *p, size_t len, dt_token_buf *out) {
  if (len == 1) {
    out->ids = dt_grow(out->ids, &out->cap, out->n + 1, sizeof(int32_t));
    out->ids[out->n++] = b->byte_id[p[0]];
    return;
  }
  if (len > CACHE_MAX_PIECE) {
    bpe_piece(b, p, len, out);
    return;
  }
  uint64_t h = hash_bytes(p, len);
  size_t k = h & b->cmask;
  for (cache_entry *e = &b->cache[k]; e->key_len; k = (k + 1) & b->cmask, e = &b->cache[k]) {
    if (e->hash == h && e->key_len == len && !memcmp(b->ckeys + e->key_off, p, len)) {
      out->ids = dt_grow(out->ids, &out->cap, out->n + e->val_n, sizeof(int32_t));
      memcpy(out->ids + out->n, b->cvals + e->val_off, e->val_n * sizeof(int32_t));
      out->n += e->val_n;
      return;
    }
  }
  size_t at = out->n;
  bpe_piece(b, p, len, out);
  if (b->cn >= CACHE_MAX_ENTRIES) {
    cache_reset(b, b->cmask + 1);
    k = h & b->cmask;
  }
  size_t nv = out->n - at;
  b->ckeys = dt_grow(b->ckeys, &b->ckeys_cap, b->ckeys_n + len, 1);
  b->cvals = dt_grow(b->cvals, &b->cvals_cap, b->cvals_n + nv, sizeof(int32_t));
  while (b->cache[k].key_len) k = (k + 1) & b->cmask;
  b->cache[k] = (cache_entry){.hash = h, .key_off = (uint32_t)b->ckeys_n,
                              .val_off = (uint32_t)b->cvals_n, .key_len = (uint16_t)len,
                              .val_n = (uint16_t)nv};
  memcpy(b->ckeys + b->ckeys_n, p, len);
  memcpy(b->cvals + b->cvals_n, out->ids + at, nv * sizeof(int32_t));
  b->ckeys_n += len;
  b->cvals_n += nv;
  if (++b->cn * 2 > b->cmask + 1) cache_grow(b);
}

void dt_bpe_set_heap_min(dt_bpe *b, size_t n) {
  b->heap_min = n < 2 ? 2 : n;
  cache_reset(b, b->cmask + 1); /* cached pieces were merged the other way */
}

int dt_bpe_encode_append(dt_bpe *b, const char *text, size_t len, dt_token_buf *out) {
  const uint8_t *s = (const uint8_t *)text;
  size_t i = 0;
  while (i < len) {
    size_t j = next_piece(b->cls, s, i, len);
    encode_piece(b, s + i, j - i, out);
    i = j;
  }
  return 0;
}

/* Before " x" (x an ASCII letter) that an ASCII non-space precedes, a piece
 * always ends (runs of letters, numbers and others stop at a space, and no
 * whitespace piece reaches it) and " ?\p{L}+" starts one, whatever follows. */
size_t dt_bpe_cut(const dt_bpe *b, const char *text, size_t len, size_t from) {
  const uint8_t *s = (const uint8_t *)text;
  for (size_t i = DT_MAX(from, (size_t)1); i + 1 < len; i++) {
    const uint8_t *sp = memchr(s + i, ' ', len - i - 1);
    if (!sp) break;
    i = (size_t)(sp - s);
    uint8_t prev = s[i - 1], next = s[i + 1];
    if (prev < 0x80 && b->cls[prev] != CL_SPACE && next < 0x80 && b->cls[next] == CL_LETTER)
      return i;
  }
  return len;
}

int dt_bpe_encode(dt_bpe *b, const char *text, size_t len, int32_t **ids, size_t *n) {
  dt_token_buf t = {0};
  dt_bpe_encode_append(b, text, len, &t);
  *ids = t.ids ? t.ids : dt_malloc(sizeof(int32_t));
  *n = t.n;
  return 0;
}

void dt_token_buf_free(dt_token_buf *t) {
  free(t->ids);
  memset(t, 0, sizeof *t);
}

/* ---- decode ---- */

int dt_bpe_vocab_size(const dt_bpe *b) { return b->n_vocab; }
int32_t dt_bpe_eot(const dt_bpe *b) { return b->eot; }

const char *dt_bpe_token_bytes(const dt_bpe *b, int32_t id, size_t *bytes) {
  if (id < 0 || id >= b->n_vocab) return NULL;
  *bytes = b->tok_off[id + 1] - b->tok_off[id];
  return b->tok_bytes + b->tok_off[id];
}

int dt_bpe_decode(const dt_bpe *b, const int32_t *ids, size_t n, char **text, size_t *bytes,
                  dt_error *err) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= b->n_vocab)
      return dt_error_set(err, "token %zu: id %d is outside the vocabulary [0,%d)", i, ids[i],
                          b->n_vocab);
    total += b->tok_off[ids[i] + 1] - b->tok_off[ids[i]];
  }
  char *out = dt_malloc(total + 1);
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    size_t l = b->tok_off[ids[i] + 1] - b->tok_off[ids[i]];
    memcpy(out + at, b->tok_bytes + b->tok_off[ids[i]], l);
    at += l;
  }
  out[at] = '\0';
  *text = out;
  *bytes = at;
  return 0;
}

/* ---- loading ---- */

/* GPT-2's bytes_to_unicode(): printable bytes stand for themselves, the
 * others for U+0100 onwards in byte order. unicode_byte[cp] inverts it
 * (-1: no byte), for cp < 512. */
static void byte_alphabet(int unicode_byte[512]) {
  for (int i = 0; i < 512; i++) unicode_byte[i] = -1;
  int extra = 0;
  for (int c = 0; c < 256; c++) {
    int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
    unicode_byte[printable ? c : 256 + extra++] = c;
  }
}

/* Turns a token written in GPT-2's alphabet (UTF-8, len bytes) into its raw
 * bytes, in place (never longer). -1 on a character outside the alphabet. */
static int token_to_bytes(const int unicode_byte[512], char *s, size_t len, size_t *out_len) {
  size_t i = 0, o = 0;
  while (i < len) {
    uint32_t cp;
    size_t l = utf8_decode((const uint8_t *)s + i, len - i, &cp);
    if (!l || cp >= 512 || unicode_byte[cp] < 0) return -1;
    s[o++] = (char)unicode_byte[cp];
    i += l;
  }
  *out_len = o;
  return 0;
}

/* A JSON string starting at s[*i] == '"': its UTF-8 into out (cap >= the
 * remaining input suffices). Advances *i past the closing quote. */
static int json_string(const char *s, size_t n, size_t *i, char *out, size_t *out_len) {
  size_t p = *i + 1, o = 0;
  while (p < n && s[p] != '"') {
    unsigned char c = (unsigned char)s[p++];
    if (c != '\\') {
      out[o++] = (char)c;
      continue;
    }
    if (p >= n) return -1;
    c = (unsigned char)s[p++];
    const char *simple = strchr("\"\\/bfnrt", c);
    if (simple && c) {
      out[o++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
      continue;
    }
    if (c != 'u') return -1;
    uint32_t cp = 0;
    for (int pass = 0; pass < 2; pass++) {
      if (p + 4 > n) return -1;
      uint32_t u = 0;
      for (int k = 0; k < 4; k++) {
        char h = s[p++];
        int d = h >= '0' && h <= '9' ? h - '0'
                : h >= 'a' && h <= 'f' ? h - 'a' + 10
                : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                       : -1;
        if (d < 0) return -1;
        u = u << 4 | (uint32_t)d;
      }
      if (pass == 0 && u >= 0xD800 && u <= 0xDBFF) { /* a surrogate pair */
        if (p + 2 > n || s[p] != '\\' || s[p + 1] != 'u') return -1;
        p += 2;
        cp = u;
        continue;
      }
      if (pass == 1) {
        if (u < 0xDC00 || u > 0xDFFF) return -1;
        u = 0x10000 + ((cp - 0xD800) << 10) + (u - 0xDC00);
      }
      cp = u;
      break;
    }
    if (cp < 0x80) out[o++] = (char)cp;
    else if (cp < 0x800) out[o++] = (char)(0xC0 | cp >> 6), out[o++] = (char)(0x80 | (cp & 0x3F));
    else if (cp < 0x10000)
      out[o++] = (char)(0xE0 | cp >> 12), out[o++] = (char)(0x80 | (cp >> 6 & 0x3F)),
      out[o++] = (char)(0x80 | (cp & 0x3F));
    else
      out[o++] = (char)(0xF0 | cp >> 18), out[o++] = (char)(0x80 | (cp >> 12 & 0x3F)),
      out[o++] = (char)(0x80 | (cp >> 6 & 0x3F)), out[o++] = (char)(0x80 | (cp & 0x3F));
  }
  if (p >= n) return -1;
  *i = p + 1;
  *out_len = o;
  return 0;
}

static size_t skip_ws(const char *s, size_t n, size_t i) {
  while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) i++;
  return i;
}

/* A bytes -> id table used while loading (merges name tokens by text). */
typedef struct tok_index {
  int32_t *slot; /* id, or -1 */
  size_t mask;
} tok_index;

static int32_t tok_find(const dt_bpe *b, const tok_index *x, const char *p, size_t len) {
  size_t k = hash_bytes((const uint8_t *)p, len) & x->mask;
  for (; x->slot[k] >= 0; k = (k + 1) & x->mask) {
    int32_t id = x->slot[k];
    if (b->tok_off[id + 1] - b->tok_off[id] == len && !memcmp(b->tok_bytes + b->tok_off[id], p, len))
      return id;
  }
  return -1;
}

/* Parses encoder.json {"token": id, ...} into b's token table. */
static int load_encoder(dt_bpe *b, const char *path, const int unicode_byte[512], dt_error *err) {
  size_t n;
  char *s = dt_read_file(path, &n, err);
  if (!s) return -1;
  char *strings = dt_malloc(n + 1); /* every key's bytes, concatenated */
  size_t strings_n = 0, cap = 0, count = 0;
  uint32_t *off = NULL, *len = NULL;
  int32_t *ids = NULL;
  size_t cap2 = 0, cap3 = 0;
  int rc = -1;
  size_t i = skip_ws(s, n, 0);
  const char *what = "'{'";
  if (i >= n || s[i] != '{') goto bad;
  i = skip_ws(s, n, i + 1);
  while (i < n && s[i] != '}') {
    size_t l;
    what = "a string";
    if (s[i] != '"' || json_string(s, n, &i, strings + strings_n, &l)) goto bad;
    if (token_to_bytes(unicode_byte, strings + strings_n, l, &l)) {
      rc = dt_error_set(err, "%s: token %zu has a character outside GPT-2's byte alphabet", path,
                        count);
      goto out;
    }
    i = skip_ws(s, n, i);
    what = "':'";
    if (i >= n || s[i] != ':') goto bad;
    i = skip_ws(s, n, i + 1);
    what = "an id";
    char *end;
    errno = 0;
    long v = strtol(s + i, &end, 10);
    if (end == s + i || errno || v < 0 || v > 10000000) goto bad;
    i = skip_ws(s, n, (size_t)(end - s));
    off = dt_grow(off, &cap, count + 1, sizeof *off);
    len = dt_grow(len, &cap2, count + 1, sizeof *len);
    ids = dt_grow(ids, &cap3, count + 1, sizeof *ids);
    off[count] = (uint32_t)strings_n;
    len[count] = (uint32_t)l;
    ids[count++] = (int32_t)v;
    strings_n += l;
    what = "',' or '}'";
    if (i < n && s[i] == ',') i = skip_ws(s, n, i + 1);
    else if (i >= n || s[i] != '}') goto bad;
  }
  what = "'}'";
  if (i >= n) goto bad;
  /* nothing but white space after the object (a second object or stray
   * text would otherwise be ignored) */
  what = "the end of the file after '}'";
  i = skip_ws(s, n, i + 1);
  if (i < n) goto bad;
  if (count == 0) {
    rc = dt_error_set(err, "%s: no tokens", path);
    goto out;
  }
  /* ids must be exactly 0..count-1 */
  b->n_vocab = (int)count;
  uint32_t *pos = dt_malloc(count * sizeof *pos);
  for (size_t k = 0; k < count; k++) pos[k] = UINT32_MAX;
  for (size_t k = 0; k < count; k++) {
    if ((size_t)ids[k] >= count || pos[ids[k]] != UINT32_MAX) {
      rc = dt_error_set(err, "%s: id %d is repeated or outside 0..%zu (ids must be 0..N-1)", path,
                        ids[k], count - 1);
      free(pos);
      goto out;
    }
    pos[ids[k]] = (uint32_t)k;
  }
  b->tok_off = dt_malloc((count + 1) * sizeof *b->tok_off);
  b->tok_bytes = dt_malloc(strings_n + 1);
  size_t at = 0;
  for (size_t id = 0; id < count; id++) {
    b->tok_off[id] = (uint32_t)at;
    memcpy(b->tok_bytes + at, strings + off[pos[id]], len[pos[id]]);
    at += len[pos[id]];
  }
  b->tok_off[count] = (uint32_t)at;
  free(pos);
  rc = 0;
  goto out;
bad:
  rc = dt_error_set(err, "%s: malformed JSON at byte %zu: expected %s", path, i, what);
out:
  free(s);
  free(strings);
  free(off);
  free(len);
  free(ids);
  return rc;
}

static int is_special(const dt_bpe *b, int32_t id) {
  for (int k = 0; k < b->n_special; k++)
    if (b->special[k] == id) return 1;
  return 0;
}

int32_t dt_bpe_special(const dt_bpe *b, const char *name) {
  size_t n = strlen(name), l = 0;
  for (int k = 0; k < b->n_special; k++) {
    const char *t = dt_bpe_token_bytes(b, b->special[k], &l);
    if (l == n && !memcmp(t, name, n)) return b->special[k];
  }
  return -1;
}

/* "specials=A,B,C" on vocab.bpe's "#version" line: those tokens of
 * encoder.json are special. GPT-2's own line has no such field. */
static int parse_specials(dt_bpe *b, const char *path, const char *line, size_t len,
                          const int unicode_byte[512], dt_error *err) {
  static const char key[] = " specials=";
  const char *p = NULL;
  for (size_t i = 0; i + sizeof key - 1 <= len; i++)
    if (!memcmp(line + i, key, sizeof key - 1)) p = line + i + sizeof key - 1;
  if (!p) return 0;
  const char *end = p;
  while (end < line + len && *end != ' ' && *end != '\t') end++;
  while (p < end) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    const char *e = comma ? comma : end;
    char name[256];
    size_t l;
    if (e == p || (size_t)(e - p) >= sizeof name || b->n_special == DT_BPE_MAX_SPECIALS)
      return dt_error_set(err, "%s:1: malformed specials= (at most %d names, comma-separated)",
                          path, DT_BPE_MAX_SPECIALS);
    memcpy(name, p, (size_t)(e - p));
    if (token_to_bytes(unicode_byte, name, (size_t)(e - p), &l))
      return dt_error_set(err, "%s:1: a special token outside GPT-2's byte alphabet", path);
    int32_t id = -1;
    for (int32_t t = 0; t < b->n_vocab && id < 0; t++)
      if (b->tok_off[t + 1] - b->tok_off[t] == l && !memcmp(b->tok_bytes + b->tok_off[t], name, l))
        id = t;
    if (id < 0)
      return dt_error_set(err, "%s:1: special token \"%.*s\" is not in encoder.json", path,
                          (int)l, name);
    b->special[b->n_special++] = id;
    p = comma ? comma + 1 : end;
  }
  return 0;
}

/* Parses vocab.bpe ("#version" line, then "A B" per line, rank = order). */
static int load_merges(dt_bpe *b, const char *path, const int unicode_byte[512], dt_error *err) {
  size_t n;
  char *s = dt_read_file(path, &n, err);
  if (!s) return -1;
  if (n && s[0] == '#') {
    char *nl = memchr(s, '\n', n);
    if (parse_specials(b, path, s, nl ? (size_t)(nl - s) : n, unicode_byte, err)) {
      free(s);
      return -1;
    }
  }
  tok_index x;
  size_t slots = 1;
  while (slots < (size_t)b->n_vocab * 2) slots *= 2;
  x.slot = dt_malloc(slots * sizeof *x.slot);
  x.mask = slots - 1;
  for (size_t k = 0; k < slots; k++) x.slot[k] = -1;
  for (int32_t id = 0; id < b->n_vocab; id++) {
    size_t len = b->tok_off[id + 1] - b->tok_off[id];
    /* A special is never the result of a merge, even when a learned token
     * has the same bytes; among equal tokens the first one is kept. */
    if (is_special(b, id) || tok_find(b, &x, b->tok_bytes + b->tok_off[id], len) >= 0) continue;
    size_t k = hash_bytes((const uint8_t *)b->tok_bytes + b->tok_off[id], len) & x.mask;
    while (x.slot[k] >= 0) k = (k + 1) & x.mask;
    x.slot[k] = id;
  }
  /* one slot a merge line at most, doubled: the merges' count is the
   * file's, not bounded by the vocabulary (a full table would never let
   * merge_put's probe end) */
  size_t lines = 1;
  for (const char *q = s; (q = memchr(q, '\n', (size_t)(s + n - q))); q++) lines++;
  size_t mslots = 1;
  while (mslots < DT_MAX((size_t)b->n_vocab, lines) * 2) mslots *= 2;
  b->mkey = dt_malloc(mslots * sizeof *b->mkey);
  b->mrank = dt_malloc(mslots * sizeof *b->mrank);
  b->mid = dt_malloc(mslots * sizeof *b->mid);
  b->mmask = mslots - 1;
  for (size_t k = 0; k < mslots; k++) b->mkey[k] = UINT64_MAX;

  int rc = 0, line = 0;
  int32_t rank = 0;
  size_t jcap = 0;
  char *joined = NULL;
  for (char *p = s, *next; p < s + n && !rc; p = next) {
    char *nl = memchr(p, '\n', (size_t)(s + n - p));
    next = nl ? nl + 1 : s + n;
    size_t len = (size_t)((nl ? nl : s + n) - p);
    line++;
    if (len && p[len - 1] == '\r') len--;
    if (len == 0 || (line == 1 && p[0] == '#')) continue;
    char *sp = memchr(p, ' ', len);
    size_t la, lb;
    if (!sp || sp == p || sp == p + len - 1 || memchr(sp + 1, ' ', (size_t)(p + len - sp - 1)) ||
        token_to_bytes(unicode_byte, p, (size_t)(sp - p), &la) ||
        token_to_bytes(unicode_byte, sp + 1, (size_t)(p + len - sp - 1), &lb)) {
      rc = dt_error_set(err, "%s:%d: expected two tokens of GPT-2's alphabet separated by a space",
                        path, line);
      break;
    }
    int32_t a = tok_find(b, &x, p, la), c = tok_find(b, &x, sp + 1, lb), ab;
    joined = dt_grow(joined, &jcap, la + lb, 1);
    memcpy(joined, p, la);
    memcpy(joined + la, sp + 1, lb);
    ab = tok_find(b, &x, joined, la + lb);
    if (a < 0 || c < 0 || ab < 0) {
      /* which one, and whether it is a special token (which never merges) */
      const char *what = a < 0 ? p : c < 0 ? sp + 1 : joined;
      size_t wl = a < 0 ? la : c < 0 ? lb : la + lb;
      int special = 0;
      for (int k = 0; k < b->n_special; k++) {
        int32_t t = b->special[k];
        special |= b->tok_off[t + 1] - b->tok_off[t] == wl &&
                   !memcmp(b->tok_bytes + b->tok_off[t], what, wl);
      }
      rc = dt_error_set(err, "%s:%d: the merge's %s is %s", path, line,
                        a < 0 ? "first token" : c < 0 ? "second token" : "result",
                        special ? "a special token (named on line 1), which takes part in no "
                                  "merge"
                                : "not in encoder.json");
      break;
    }
    merge_put(b, a, c, rank++, ab);
  }
  free(x.slot);
  free(joined);
  free(s);
  if (!rc && rank == 0) rc = dt_error_set(err, "%s: no merges", path);
  return rc;
}

/* The class table is the same for every tokenizer: built once, shared by
 * every dt_bpe and by dt_bpe_piece_end (the trainer has no dt_bpe). */
static uint8_t *class_table;
static pthread_once_t class_once = PTHREAD_ONCE_INIT;

static void build_classes(void) {
  uint8_t *cls = dt_calloc(BMP, 1);
  const struct {
    const uint32_t (*r)[2];
    size_t n;
    int cl;
  } t[] = {{dt_unicode_letter, dt_unicode_letter_count, CL_LETTER},
           {dt_unicode_number, dt_unicode_number_count, CL_NUMBER},
           {dt_unicode_space, dt_unicode_space_count, CL_SPACE}};
  for (size_t k = 0; k < DT_ARRAY_LEN(t); k++)
    for (size_t i = 0; i < t[k].n; i++)
      for (uint32_t cp = t[k].r[i][0]; cp <= t[k].r[i][1] && cp < BMP; cp++)
        cls[cp] = (uint8_t)t[k].cl;
  class_table = cls;
}

static const uint8_t *classes(void) {
  pthread_once(&class_once, build_classes);
  return class_table;
}

size_t dt_bpe_piece_end(const char *text, size_t len, size_t i) {
  return next_piece(classes(), (const uint8_t *)text, i, len);
}

dt_bpe *dt_bpe_load(const char *dir, dt_error *err) {
  char path[4096];
  int unicode_byte[512];
  byte_alphabet(unicode_byte);
  dt_bpe *b = dt_calloc(1, sizeof *b);
  b->heap_min = 128;
  snprintf(path, sizeof path, "%s/encoder.json", dir);
  if (load_encoder(b, path, unicode_byte, err)) goto fail;
  for (int c = 0; c < 256; c++) b->byte_id[c] = -1;
  b->eot = -1;
  for (int32_t id = 0; id < b->n_vocab; id++) {
    size_t l;
    const char *t = dt_bpe_token_bytes(b, id, &l);
    if (l == 1 && b->byte_id[(uint8_t)t[0]] < 0) b->byte_id[(uint8_t)t[0]] = id;
    if (l == 13 && !memcmp(t, "<|endoftext|>", 13)) b->eot = id;
  }
  for (int c = 0; c < 256; c++)
    if (b->byte_id[c] < 0) {
      dt_error_set(err, "%s: no token for the byte 0x%02x (not a byte-level BPE vocabulary?)", path,
                   c);
      goto fail;
    }
  char enc_path[4096];
  snprintf(enc_path, sizeof enc_path, "%s", path);
  snprintf(path, sizeof path, "%s/vocab.bpe", dir);
  if (load_merges(b, path, unicode_byte, err)) goto fail;
  if (b->eot < 0) b->eot = dt_bpe_special(b, "<eos>"); /* dtrain's own tokenizers */
  if (b->eot < 0) {
    dt_error_set(err, "%s: no <|endoftext|> token (nor a special <eos>)", enc_path);
    goto fail;
  }
  b->cls = classes();
  cache_reset(b, 1 << 16);
  return b;
fail:
  dt_bpe_free(b);
  return NULL;
}

void dt_bpe_free(dt_bpe *b) {
  if (!b) return;
  free(b->tok_off);
  free(b->tok_bytes);
  free(b->mkey);
  free(b->mrank);
  free(b->mid);
  free(b->cache);
  free(b->ckeys);
  free(b->cvals);
  free(b->sym);
  free(b->rank);
  free(b->merged);
  free(b);
}
