/* bpe.h: GPT-2's byte-level BPE tokenizer (OpenAI's encoder.json + vocab.bpe),
 * encoding exactly as GPT-2 / tiktoken do: pre-tokenizer regex, then merges. */
#ifndef DT_BPE_H
#define DT_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "dt.h"

#define DT_BPE_GPT2_VOCAB 50257
#define DT_BPE_GPT2_EOT 50256 /* <|endoftext|> */
#define DT_BPE_MAX_SPECIALS 8

typedef struct dt_bpe dt_bpe;

/* A growable array of token ids (n elements used, cap allocated). */
typedef struct dt_token_buf {
  int32_t *ids;
  size_t n, cap;
} dt_token_buf;

/* Loads DIR/encoder.json and DIR/vocab.bpe. NULL with err naming the file
 * (and line) when one is missing or malformed. */
dt_bpe *dt_bpe_load(const char *dir, dt_error *err);
void dt_bpe_free(dt_bpe *b);

/* Number of ids (50257 for GPT-2) and the id of <|endoftext|> (for a
 * tokenizer without one, dtrain's trained ones: the special <eos>). */
int dt_bpe_vocab_size(const dt_bpe *b);
int32_t dt_bpe_eot(const dt_bpe *b);

/* Special tokens: vocab.bpe's first line may name some ("#version: 0.2
 * dtrain-bpe specials=<pad>,<bos>,<eos>", as bpetrain.c writes); they are
 * ordinary entries of encoder.json that no merge ever produces, so text that
 * spells "<pad>" encodes as text. The id of the special with these bytes, or
 * -1 (always -1 for GPT-2's files, which name none). */
int32_t dt_bpe_special(const dt_bpe *b, const char *name);

/* GPT-2's pre-tokenizer alone: the end of the piece that starts at i < len
 * (what dt_bpe_encode merges within). No tokenizer needed: the BPE trainer
 * counts these pieces. */
size_t dt_bpe_piece_end(const char *text, size_t len, size_t i);

/* Encodes len bytes of text. Any bytes are accepted: GPT-2 works on bytes, so
 * invalid UTF-8 still encodes (each bad byte is one "other" character for the
 * pre-tokenizer) and decodes back exactly. "<|endoftext|>" in the text is
 * ordinary text; callers append dt_bpe_eot() themselves. Not thread-safe
 * (a cache of pieces lives in b): one dt_bpe per thread.
 * dt_bpe_encode: *ids is malloc'ed (the caller frees it), *n its count.
 * dt_bpe_encode_append: appends to out. Both return 0. */
int dt_bpe_encode(dt_bpe *b, const char *text, size_t len, int32_t **ids, size_t *n);
int dt_bpe_encode_append(dt_bpe *b, const char *text, size_t len, dt_token_buf *out);
void dt_token_buf_free(dt_token_buf *t);

/* A position in [max(from,1), len] where the pre-tokenizer always starts a
 * piece, whatever the text around it (before " x", x an ASCII letter, after
 * an ASCII non-space), or len: encoding text in parts cut there gives the
 * same ids as encoding it whole. */
size_t dt_bpe_cut(const dt_bpe *b, const char *text, size_t len, size_t from);

/* Pieces of at least n bytes (default 128) merge through a heap in
 * O(n log n) rather than by the quadratic scan; for tests, which check
 * that both give the same ids. */
void dt_bpe_set_heap_min(dt_bpe *b, size_t n);

/* The bytes of one token (NULL when id is out of range). */
const char *dt_bpe_token_bytes(const dt_bpe *b, int32_t id, size_t *bytes);

/* Decodes n ids to bytes: *text is malloc'ed and NUL-terminated (not counted
 * in *bytes). -1 with err when an id is out of range. */
int dt_bpe_decode(const dt_bpe *b, const int32_t *ids, size_t n, char **text, size_t *bytes,
                  dt_error *err);

/* Generated tables (unicode_tables.c): sorted inclusive code point ranges. */
extern const uint32_t dt_unicode_letter[][2];
extern const size_t dt_unicode_letter_count;
extern const uint32_t dt_unicode_number[][2];
extern const size_t dt_unicode_number_count;
extern const uint32_t dt_unicode_space[][2];
extern const size_t dt_unicode_space_count;

#endif
