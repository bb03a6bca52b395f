/* bpetrain.c: the byte-level BPE trainer. Text is cut into GPT-2's
 * pre-tokenizer pieces, which are counted once; merges then work on the
 * distinct pieces weighted by their counts. Pair counts are kept up to date
 * incrementally (each merge rewrites only the pieces that hold its pair, found
 * through a per-pair list) and the best pair comes from a max-heap whose
 * stale entries are corrected when they surface, as Hugging Face's tokenizers
 * do: the full WMT zh-en train set learns 16k tokens in a few seconds. */
#include "bpetrain.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"

static const char *const special_names[DT_BPE_N_SPECIAL] = {"<pad>", "<bos>", "<eos>"};

typedef struct vec32 {
  int32_t *v;
  int32_t n, cap;
} vec32;

static void vec_push(vec32 *x, int32_t v) {
  if (x->n == x->cap) {
    x->cap = x->cap ? 2 * x->cap : 4;
    x->v = realloc(x->v, (size_t)x->cap * sizeof *x->v);
    DT_CHECK_ALLOC(x->v);
  }
  x->v[x->n++] = v;
}

static uint64_t hash_bytes(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
  return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  return k;
}

/* A set of byte strings stored back to back: the distinct pieces, and the
 * tokens. Lookup by bytes through an open-addressing table of index + 1. */
typedef struct strset {
  char *bytes;
  size_t bytes_n, bytes_cap;
  size_t *off; /* n + 1 */
  size_t n, off_cap;
  uint64_t *hash;
  size_t hash_cap;
  size_t *slot;
  size_t slots;
  size_t first_indexed; /* entries before it are not in slot (specials) */
} strset;

static const char *strset_get(const strset *s, size_t i, size_t *len) {
  *len = s->off[i + 1] - s->off[i];
  return s->bytes + s->off[i];
}

static void strset_rehash(strset *s) {
  s->slots = s->slots ? 2 * s->slots : 1024;
  free(s->slot);
  s->slot = dt_calloc(s->slots, sizeof *s->slot);
  for (size_t i = s->first_indexed; i < s->n; i++) {
    size_t k = s->hash[i] & (s->slots - 1);
    while (s->slot[k]) k = (k + 1) & (s->slots - 1);
    s->slot[k] = i + 1;
  }
}

/* The index of p, or -1; *at is where to insert it. */
static int64_t strset_find(const strset *s, const char *p, size_t len, uint64_t h, size_t *at) {
  size_t k = h & (s->slots - 1);
  for (; s->slot[k]; k = (k + 1) & (s->slots - 1)) {
    size_t i = s->slot[k] - 1, l;
    const char *q = strset_get(s, i, &l);
    if (s->hash[i] == h && l == len && !memcmp(q, p, len)) return (int64_t)i;
  }
  *at = k;
  return -1;
}

/* Appends p (hashed only when index != 0). Returns its index. */
static size_t strset_append(strset *s, const char *p, size_t len, int index) {
  if (index && 2 * (s->n + 1) > s->slots) strset_rehash(s);
  uint64_t h = hash_bytes(p, len);
  size_t at = 0;
  if (index) {
    int64_t found = strset_find(s, p, len, h, &at);
    if (found >= 0) return (size_t)found;
  }
  s->off = dt_grow(s->off, &s->off_cap, s->n + 2, sizeof *s->off);
  s->hash = dt_grow(s->hash, &s->hash_cap, s->n + 1, sizeof *s->hash);
  s->bytes = dt_grow(s->bytes, &s->bytes_cap, s->bytes_n + len + 1, 1);
  if (s->n == 0) s->off[0] = 0;
  memcpy(s->bytes + s->bytes_n, p, len);
  s->bytes_n += len;
  s->off[s->n + 1] = s->bytes_n;
  s->hash[s->n] = h;
  if (index) s->slot[at] = s->n + 1;
  return s->n++;
}

static void strset_free(strset *s) {
  free(s->bytes);
  free(s->off);
  free(s->hash);
  free(s->slot);
  memset(s, 0, sizeof *s);
}

struct dt_bpe_trainer {
  strset pieces;
  int64_t *piece_count;
  size_t piece_count_cap;
  int64_t bytes;
  /* tokens: every id's bytes; only learned tokens and bytes are indexed
   * (a learned token may spell "<pad>": specials are never merge results) */
  strset tok;
  int32_t *merge_left, *merge_right;
  int64_t *merge_count;
  size_t merges, merge_cap;
  int trained;
};

dt_bpe_trainer *dt_bpe_trainer_new(void) {
  dt_bpe_trainer *t = dt_calloc(1, sizeof *t);
  strset_rehash(&t->pieces);
  strset_rehash(&t->tok);
  t->tok.first_indexed = DT_BPE_N_SPECIAL;
  for (int k = 0; k < DT_BPE_N_SPECIAL; k++)
    strset_append(&t->tok, special_names[k], strlen(special_names[k]), 0);
  for (int c = 0; c < 256; c++) {
    char b = (char)c;
    strset_append(&t->tok, &b, 1, 1);
  }
  return t;
}

void dt_bpe_trainer_free(dt_bpe_trainer *t) {
  if (!t) return;
  strset_free(&t->pieces);
  strset_free(&t->tok);
  free(t->piece_count);
  free(t->merge_left);
  free(t->merge_right);
  free(t->merge_count);
  free(t);
}

void dt_bpe_trainer_add(dt_bpe_trainer *t, const char *text, size_t len) {
  size_t i = 0;
  while (i < len) {
    size_t j = dt_bpe_piece_end(text, len, i);
    size_t before = t->pieces.n;
    size_t k = strset_append(&t->pieces, text + i, j - i, 1);
    t->piece_count =
        dt_grow(t->piece_count, &t->piece_count_cap, t->pieces.n, sizeof(int64_t));
    if (t->pieces.n > before) t->piece_count[k] = 0;
    t->piece_count[k]++;
    i = j;
  }
  t->bytes += (int64_t)len;
}

int64_t dt_bpe_trainer_bytes(const dt_bpe_trainer *t) { return t->bytes; }
int64_t dt_bpe_trainer_pieces(const dt_bpe_trainer *t) { return (int64_t)t->pieces.n; }

/* ---- training state ---- */

/* Every adjacent pair of symbols: its count over all pieces and the pieces
 * that hold (or once held) it. */
typedef struct pair_table {
  uint64_t *key; /* (left << 32 | right), UINT64_MAX empty */
  int32_t *at;   /* pair index */
  size_t mask;
  int64_t *count;
  vec32 *where;
  int32_t *left, *right;
  int32_t *stamp; /* the merge that last queued this pair for the heap */
  size_t n, cap;
} pair_table;

static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

static void pairs_rehash(pair_table *p) {
  size_t slots = p->mask ? 2 * (p->mask + 1) : 1 << 16;
  uint64_t *key = dt_malloc(slots * sizeof *key);
  int32_t *at = dt_malloc(slots * sizeof *at);
  for (size_t k = 0; k < slots; k++) key[k] = UINT64_MAX;
  for (size_t k = 0; p->mask && k <= p->mask; k++) {
    if (p->key[k] == UINT64_MAX) continue;
    size_t s = hash_u64(p->key[k]) & (slots - 1);
    while (key[s] != UINT64_MAX) s = (s + 1) & (slots - 1);
    key[s] = p->key[k];
    at[s] = p->at[k];
  }
  free(p->key);
  free(p->at);
  p->key = key;
  p->at = at;
  p->mask = slots - 1;
}

static int32_t pair_get(pair_table *p, int32_t a, int32_t b) {
  if (2 * (p->n + 1) > p->mask + 1) pairs_rehash(p);
  uint64_t key = pair_key(a, b);
  size_t s = hash_u64(key) & p->mask;
  for (; p->key[s] != UINT64_MAX; s = (s + 1) & p->mask)
    if (p->key[s] == key) return p->at[s];
  if (p->n == p->cap) {
    p->cap = p->cap ? 2 * p->cap : 1 << 16;
    p->count = realloc(p->count, p->cap * sizeof *p->count);
    p->where = realloc(p->where, p->cap * sizeof *p->where);
    p->stamp = realloc(p->stamp, p->cap * sizeof *p->stamp);
    p->left = realloc(p->left, p->cap * sizeof *p->left);
    p->right = realloc(p->right, p->cap * sizeof *p->right);
    DT_CHECK_ALLOC(p->count && p->where && p->stamp && p->left && p->right);
  }
  p->key[s] = key;
  p->at[s] = (int32_t)p->n;
  p->count[p->n] = 0;
  p->where[p->n] = (vec32){0};
  p->stamp[p->n] = -1;
  p->left[p->n] = a;
  p->right[p->n] = b;
  return (int32_t)p->n++;
}

static void pairs_free(pair_table *p) {
  for (size_t i = 0; i < p->n; i++) free(p->where[i].v);
  free(p->key);
  free(p->at);
  free(p->count);
  free(p->where);
  free(p->stamp);
  free(p->left);
  free(p->right);
}

/* Max-heap of (count, left, right); an entry's count may be stale (higher
 * than the pair's count now), which the pop loop checks. */
typedef struct heap_entry {
  int64_t count;
  int32_t a, b, pair;
} heap_entry;

typedef struct heap {
  heap_entry *e;
  size_t n, cap;
} heap;

static int heap_before(const heap_entry *x, const heap_entry *y) {
  if (x->count != y->count) return x->count > y->count;
  if (x->a != y->a) return x->a < y->a;
  return x->b < y->b;
}

static void heap_push(heap *h, heap_entry v) {
  h->e = dt_grow(h->e, &h->cap, h->n + 1, sizeof *h->e);
  size_t i = h->n++;
  while (i > 0 && heap_before(&v, &h->e[(i - 1) / 2])) {
    h->e[i] = h->e[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h->e[i] = v;
}

static heap_entry heap_pop(heap *h) {
  heap_entry top = h->e[0], v = h->e[--h->n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= h->n) break;
    if (c + 1 < h->n && heap_before(&h->e[c + 1], &h->e[c])) c++;
    if (!heap_before(&h->e[c], &v)) break;
    h->e[i] = h->e[c];
    i = c;
  }
  if (h->n) h->e[i] = v;
  return top;
}

typedef struct train_state {
  int32_t *sym; /* every piece's symbols back to back */
  size_t *off;
  int32_t *len;
  int64_t *freq;
  size_t n_words;
  pair_table pairs;
  heap heap;
  int32_t *word_stamp; /* the merge that last rewrote this word */
  vec32 fresh;         /* pairs made by the current merge */
  int32_t merge_no;
} train_state;

/* Adds delta * (the word's count) to pair (a, b); a pair gaining count comes
 * from the current merge: note the word and queue the pair for the heap. */
static void pair_add(train_state *s, int32_t a, int32_t b, int64_t delta, int32_t w) {
  int32_t p = pair_get(&s->pairs, a, b);
  s->pairs.count[p] += delta;
  if (delta <= 0) return;
  vec32 *wh = &s->pairs.where[p];
  if (wh->n == 0 || wh->v[wh->n - 1] != w) vec_push(wh, w);
  if (s->pairs.stamp[p] != s->merge_no) {
    s->pairs.stamp[p] = s->merge_no;
    vec_push(&s->fresh, p);
  }
}

/* Rewrites word w with (a, b) -> c, left to right, updating the pair counts
 * around each occurrence (the symbol before is the one just written, so
 * overlapping runs like "a b a b" come out right). */
static void merge_word(train_state *s, int32_t w, int32_t a, int32_t b, int32_t c) {
  int32_t *x = s->sym + s->off[w];
  int32_t n = s->len[w], k = 0;
  int64_t f = s->freq[w];
  for (int32_t j = 0; j < n;) {
    if (j + 1 < n && x[j] == a && x[j + 1] == b) {
      if (k > 0) {
        pair_add(s, x[k - 1], a, -f, w);
        pair_add(s, x[k - 1], c, f, w);
      }
      if (j + 2 < n) {
        pair_add(s, b, x[j + 2], -f, w);
        pair_add(s, c, x[j + 2], f, w);
      }
      pair_add(s, a, b, -f, w);
      x[k++] = c;
      j += 2;
    } else {
      x[k++] = x[j++];
    }
  }
  s->len[w] = k;
}

static void train_init(train_state *s, const dt_bpe_trainer *t) {
  memset(s, 0, sizeof *s);
  s->n_words = t->pieces.n;
  s->sym = dt_malloc((t->pieces.bytes_n + 1) * sizeof *s->sym);
  s->off = dt_malloc((s->n_words + 1) * sizeof *s->off);
  s->len = dt_malloc((s->n_words + 1) * sizeof *s->len);
  s->freq = dt_malloc((s->n_words + 1) * sizeof *s->freq);
  s->word_stamp = dt_malloc((s->n_words + 1) * sizeof *s->word_stamp);
  size_t at = 0;
  s->merge_no = 0; /* merges count from 1: every pair found here is fresh */
  for (size_t w = 0; w < s->n_words; w++) {
    size_t l;
    const char *p = strset_get(&t->pieces, w, &l);
    s->off[w] = at;
    s->len[w] = (int32_t)l;
    s->freq[w] = t->piece_count[w];
    s->word_stamp[w] = -1;
    for (size_t i = 0; i < l; i++) s->sym[at + i] = DT_BPE_FIRST_BYTE + (uint8_t)p[i];
    for (size_t i = 0; i + 1 < l; i++)
      pair_add(s, s->sym[at + i], s->sym[at + i + 1], s->freq[w], (int32_t)w);
    at += l;
  }
}

static void train_free(train_state *s) {
  free(s->sym);
  free(s->off);
  free(s->len);
  free(s->freq);
  free(s->word_stamp);
  free(s->fresh.v);
  free(s->heap.e);
  pairs_free(&s->pairs);
}

/* Queues the pairs the last step created (or found at the start). */
static void push_fresh(train_state *s) {
  for (int32_t i = 0; i < s->fresh.n; i++) {
    int32_t p = s->fresh.v[i];
    if (s->pairs.count[p] <= 0) continue;
    heap_push(&s->heap, (heap_entry){s->pairs.count[p], s->pairs.left[p], s->pairs.right[p], p});
  }
  s->fresh.n = 0;
}

static void add_merge(dt_bpe_trainer *t, int32_t a, int32_t b, int64_t count) {
  size_t cap = t->merge_cap;
  t->merge_left = dt_grow(t->merge_left, &cap, t->merges + 1, sizeof *t->merge_left);
  cap = t->merge_cap;
  t->merge_right = dt_grow(t->merge_right, &cap, t->merges + 1, sizeof *t->merge_right);
  cap = t->merge_cap;
  t->merge_count = dt_grow(t->merge_count, &cap, t->merges + 1, sizeof *t->merge_count);
  t->merge_cap = cap;
  t->merge_left[t->merges] = a;
  t->merge_right[t->merges] = b;
  t->merge_count[t->merges++] = count;
}

/* The best pair now, or -1 when none is worth merging. */
static int32_t best_pair(train_state *s, const dt_bpe_trainer *t) {
  while (s->heap.n) {
    heap_entry e = heap_pop(&s->heap);
    int64_t now = s->pairs.count[e.pair];
    if (now != e.count) { /* stale: counts only fall, so queue it again as it is */
      if (now > 0) {
        e.count = now;
        heap_push(&s->heap, e);
      }
      continue;
    }
    if (now < DT_BPE_MIN_PAIR_COUNT) return -1;
    size_t la = t->tok.off[e.a + 1] - t->tok.off[e.a], lb = t->tok.off[e.b + 1] - t->tok.off[e.b];
    if (la + lb > DT_BPE_MAX_TOKEN_BYTES) continue; /* never: dropped for good */
    return e.pair;
  }
  return -1;
}

int dt_bpe_trainer_train(dt_bpe_trainer *t, int vocab_size, int progress) {
  if (t->trained) return (int)t->tok.n;
  t->trained = 1;
  train_state s;
  train_init(&s, t);
  push_fresh(&s);
  double t0 = dt_now(), last = t0;
  int32_t p;
  while ((int)t->tok.n < vocab_size && (p = best_pair(&s, t)) >= 0) {
    int32_t a = s.pairs.left[p], b = s.pairs.right[p];
    char joined[2 * DT_BPE_MAX_TOKEN_BYTES];
    size_t la, lb;
    const char *pa = strset_get(&t->tok, (size_t)a, &la);
    memcpy(joined, pa, la);
    const char *pb = strset_get(&t->tok, (size_t)b, &lb);
    memcpy(joined + la, pb, lb);
    int32_t c = (int32_t)strset_append(&t->tok, joined, la + lb, 1);
    add_merge(t, a, b, s.pairs.count[p]);
    s.merge_no++;
    vec32 words = s.pairs.where[p]; /* the pair disappears from all of them */
    s.pairs.where[p] = (vec32){0};
    for (int32_t i = 0; i < words.n; i++) {
      int32_t w = words.v[i];
      if (s.word_stamp[w] == s.merge_no) continue;
      s.word_stamp[w] = s.merge_no;
      merge_word(&s, w, a, b, c);
    }
    free(words.v);
    push_fresh(&s);
    double now = dt_now();
    if (progress && now - last >= 1.0) {
      last = now;
      fprintf(stderr, "dtrain-prep: bpe: %zu/%d tokens, %zu merges, %.0f merges/s\n", t->tok.n,
              vocab_size, t->merges, (double)t->merges / (now - t0));
    }
  }
  train_free(&s);
  return (int)t->tok.n;
}

int dt_bpe_trainer_vocab(const dt_bpe_trainer *t) { return (int)t->tok.n; }

const char *dt_bpe_trainer_token(const dt_bpe_trainer *t, int32_t id, size_t *bytes) {
  if (id < 0 || (size_t)id >= t->tok.n) return NULL;
  return strset_get(&t->tok, (size_t)id, bytes);
}

int dt_bpe_trainer_merges(const dt_bpe_trainer *t) { return (int)t->merges; }

void dt_bpe_trainer_merge(const dt_bpe_trainer *t, int i, int32_t *left, int32_t *right,
                          int64_t *count) {
  *left = t->merge_left[i];
  *right = t->merge_right[i];
  if (count) *count = t->merge_count[i];
}

/* ---- saving in GPT-2's format ---- */

/* GPT-2's bytes_to_unicode(): printable bytes stand for themselves, the
 * others for U+0100 onwards in byte order; as UTF-8 (at most 2 bytes). */
static void byte_chars(char chars[256][3]) {
  int extra = 0;
  for (int c = 0; c < 256; c++) {
    int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
    int cp = printable ? c : 256 + extra++;
    if (cp < 0x80) {
      chars[c][0] = (char)cp;
      chars[c][1] = 0;
    } else {
      chars[c][0] = (char)(0xC0 | cp >> 6);
      chars[c][1] = (char)(0x80 | (cp & 0x3F));
      chars[c][2] = 0;
    }
  }
}

/* A token in GPT-2's alphabet; json: escaped for a JSON string. */
static void put_token(FILE *f, const char chars[256][3], const char *p, size_t n, int json) {
  for (size_t i = 0; i < n; i++) {
    const char *ch = chars[(uint8_t)p[i]];
    if (json && (ch[0] == '"' || ch[0] == '\\')) fputc('\\', f);
    fputs(ch, f);
  }
}

static int close_checked(FILE *f, const char *path, dt_error *err) {
  int bad = ferror(f);
  if (fclose(f) != 0 || bad)
    return dt_error_set(err, "%s: write error (disk full?)", path);
  return 0;
}

int dt_bpe_trainer_save(const dt_bpe_trainer *t, const char *dir, dt_error *err) {
  char chars[256][3], path[4096];
  byte_chars(chars);
  snprintf(path, sizeof path, "%s/encoder.json", dir);
  FILE *f = fopen(path, "wb");
  if (!f) return dt_error_set(err, "%s: cannot create: %s", path, strerror(errno));
  fputs("{", f);
  for (size_t id = 0; id < t->tok.n; id++) {
    size_t l;
    const char *p = strset_get(&t->tok, id, &l);
    fputs(id ? ",\n\"" : "\"", f);
    put_token(f, chars, p, l, 1);
    fprintf(f, "\": %zu", id);
  }
  fputs("}\n", f);
  if (close_checked(f, path, err)) return -1;
  snprintf(path, sizeof path, "%s/vocab.bpe", dir);
  f = fopen(path, "wb");
  if (!f) return dt_error_set(err, "%s: cannot create: %s", path, strerror(errno));
  fputs("#version: 0.2 dtrain-bpe specials=", f);
  for (int k = 0; k < DT_BPE_N_SPECIAL; k++) fprintf(f, "%s%s", k ? "," : "", special_names[k]);
  fputs("\n", f);
  for (size_t i = 0; i < t->merges; i++) {
    size_t la, lb;
    const char *a = strset_get(&t->tok, (size_t)t->merge_left[i], &la);
    const char *b = strset_get(&t->tok, (size_t)t->merge_right[i], &lb);
    put_token(f, chars, a, la, 0);
    fputc(' ', f);
    put_token(f, chars, b, lb, 0);
    fputc('\n', f);
  }
  return close_checked(f, path, err);
}
