/* transformer.c: the encoder-decoder Transformer of "Attention Is All You
 * Need": token embeddings scaled by sqrt(d_model) plus sinusoidal or learned
 * positions, post-LN (the paper) or pre-LN residual sublayers, padding masks
 * from the source and target lengths, a causal decoder with cross-attention,
 * an output projection optionally tied to one joint embedding table, and a
 * label-smoothed loss that ignores padded targets. Also the incremental
 * decoder of transformer.h. Dropout ([model] dropout) as the paper and
 * fairseq's transformer_wmt_en_de apply it: on the embedding sums (encoder
 * and decoder) and on every sublayer's output before its residual add.
 * fairseq's attention_dropout and activation_dropout (on the attention
 * probabilities and after fc1's activation) are 0 in those recipes and not
 * built: the fused attention kernel never forms the probabilities. */
#include "transformer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/rng.h"

#define TF_LN_EPS 1e-5f

/* Each residual sublayer owns six consecutive parameters: its branch's two
 * linears (weight, bias, weight, bias) and its LayerNorm (weight, bias). For
 * attention the first linear is in_proj (3D, D), rows q | k | v as in
 * PyTorch's nn.MultiheadAttention (cross-attention applies rows [0, D) to the
 * decoder and rows [D, 3D) to the encoder output); for the feed-forward
 * sublayer they are fc1 (F, D) and fc2 (D, F). */
enum { SUB_SELF, SUB_CROSS, SUB_FFN };
enum { SP_W1, SP_B1, SP_W2, SP_B2, SP_LNW, SP_LNB, SUB_NP };
enum { INIT_ZERO, INIT_ONE, INIT_XAVIER, INIT_EMB };

/* What one sublayer keeps for the backward, at R = n * T rows. The tensors
 * only GEMMs and attention read (ln, a, kv, c) are of type t: bf16 under
 * train.precision = bf16, where the GEMMs round their operands to bf16
 * anyway. The residual stream (out, sum) and its gradients stay fp32, as
 * in GPT (models/gpt.c). */
typedef struct sub_acts {
  dt_dtype t;         /* the type of ln, a, kv and c */
  void *ln;           /* pre-LN: LayerNorm of the input (R,D) */
  float *mean, *rstd; /* (R) statistics of that LayerNorm (pre) or of sum (post) */
  float *sum;         /* post-LN: input + branch (R,D) */
  float *out;         /* the residual stream after the sublayer (R,D) */
  void *a;            /* self: qkv (R,3D); cross: q (R,D); ffn: fc1 output (R,F) */
  void *kv;           /* cross: k|v of the encoder output (S,2D) */
  void *c;            /* attention output (R,D), or the activation of fc1 (R,F) */
  float *lse;         /* attention: (n,NH,T) */
} sub_acts;

/* The shapes one stack's sublayers run at. */
typedef struct pass {
  int n, t;                 /* sequences, tokens per sequence (queries) */
  int causal;               /* self-attention */
  const int32_t *self_len;  /* (n) keys of self-attention, NULL = all */
  const float *enc;         /* cross: encoder output (n*ts, D) */
  int ts;                   /* cross: keys per sequence */
  const int32_t *src_len;   /* cross: (n) real keys */
} pass;

typedef struct tf {
  dt_model m;
  dt_param *table;
  unsigned char *init_kind; /* (nparams) INIT_* */
  int D, NH, F, Le, Ld, V, maxPos, pre, learned, shared;
  dt_act act;
  dt_dtype at;      /* sub_acts' t in training: bf16 under train.precision = bf16 */
  float smoothing;
  int p_enc_emb, p_dec_emb, p_out, p_enc_pos, p_dec_pos; /* -1 when absent */
  int p_enc0, p_enc_ln, p_dec0, p_dec_ln;                /* first sublayer; final LNs (pre) */
  float *pe;                          /* sinusoidal table (maxPos, D), NULL if learned */
  float *enc_x0, *dec_x0;             /* embeddings (R,D) */
  sub_acts *enc, *dec;                /* (2 Le), (3 Ld) */
  float *enc_ln, *enc_mean, *enc_rstd; /* pre-LN: the encoder's final LayerNorm */
  float *dec_ln, *dec_mean, *dec_rstd; /* pre-LN: the decoder's final LayerNorm */
  int chunk;                          /* rows of logits at a time ([train] classifier_chunk) */
  void *logits;                       /* (chunk, V), of type at */
  float *dlogits;                     /* (chunk, V) fp32; NULL under bf16, whose dlogits
                                       * (bf16) overwrite the logits */
  float *tmp;                         /* (R,D) branch output (post-LN) */
  float *d0, *d1, *du, *datt;         /* (R,D) backward scratch */
  float *dqkv;                        /* (R,3D), fp32 (qkv's bias gradient sums it) */
  void *dfc;                          /* (R,F), of type at */
  float *dkv, *denc, *denc_tmp;       /* (S,2D) (S,D) (S,D) */
  void *emb_ws;
  float dropout;                      /* [model] dropout */
  /* this call's dropout: p (0 in evaluation and decoding) and its batch */
  float drop_p;
  const dt_batch *drop_b;
  float *dbranch;                     /* (RM,D) a branch's gradient through dropout */
  void **bufs;                        /* every device buffer, for destroy */
  int nbufs, capbufs;
} tf;

#define W(i) dt_model_param(m, i)
#define GW(i) dt_model_grad(m, i)

static int enc_sub(const tf *T, int l, int s) { return T->p_enc0 + (2 * l + s) * SUB_NP; }
static int dec_sub(const tf *T, int l, int s) { return T->p_dec0 + (3 * l + s) * SUB_NP; }
static void ready2(dt_model *m, int p) {
  dt_model_grad_ready(m, p);
  dt_model_grad_ready(m, p + 1);
}

/* ---- dropout sites: 0 the encoder's embedding sum, 1 the decoder's, then
 * one per sublayer in parameter order (enc_site, dec_site). Site s counts
 * from s << 44; sequence i of a micro-batch from (b->sample0 + i) * max_t * D
 * within it, its index in the step's global batch times a fixed stride, so a
 * token's counters depend neither on the micro-batch split nor on how long
 * the micro-batch is padded. Distinct while a step holds fewer than 2^44
 * elements per site (check_config, and tf_forward_backward for sample0);
 * the backward regenerates the forward's masks. ---- */

enum { SITE_ENC_EMB, SITE_DEC_EMB, SITE_SUB0 };
static int enc_site(const tf *T, int l, int s) { (void)T; return SITE_SUB0 + 2 * l + s; }
static int dec_site(const tf *T, int l, int s) { return SITE_SUB0 + 2 * T->Le + 3 * l + s; }

static uint64_t drop_stride(const tf *T) { return (uint64_t)T->m.max_t * (uint64_t)T->D; }

/* y (n,t,D) = dropout(x) at site; nothing when p = 0 (x is then y) */
static void drop(tf *T, int site, float *y, const float *x, int n, int t) {
  const dt_batch *b = T->drop_b;
  if (T->drop_p <= 0.0f) return;
  T->m.be->k->dropout_rows(T->m.be->ctx, y, x, n, (size_t)t * T->D, drop_stride(T), T->drop_p,
                           b->seed,
                           ((uint64_t)site << 44) + (uint64_t)b->sample0 * drop_stride(T));
}

/* The gradient through a branch's dropout: into dbranch, since dres must
 * survive for the residual path; dres itself when there is no dropout. */
static const float *drop_backward(tf *T, int site, const float *dres, const pass *ps) {
  if (T->drop_p <= 0.0f) return dres;
  drop(T, site, T->dbranch, dres, ps->n, ps->t);
  return T->dbranch;
}

/* ---- forward pieces ---- */

/* x (n,t,D) = sqrt(D) * emb[tok] + pos[pos0 + t], the paper's scaling. */
static void embed_forward(tf *T, float *x, const int32_t *tok, int n, int t, int p_emb, int p_pos,
                          int pos0) {
  dt_model *m = &T->m;
  const dt_kernels *k = m->be->k;
  void *ctx = m->be->ctx;
  const int D = T->D;
  dt_model_fetch(m, p_emb, 1);
  k->embedding_forward(ctx, x, tok, W(p_emb), NULL, n, t, D, T->V);
  dt_model_release(m, p_emb, 1);
  k->scale(ctx, x, sqrtf((float)D), (size_t)n * t * D);
  if (T->learned) dt_model_fetch(m, p_pos, 1);
  const float *pe = (T->learned ? W(p_pos) : T->pe) + (size_t)pos0 * D;
  for (int b = 0; b < n; b++) k->axpy(ctx, x + (size_t)b * t * D, 1.0f, pe, (size_t)t * D);
  if (T->learned) dt_model_release(m, p_pos, 1);
}

/* The sublayer's branch input, of type *ut: LN(xin) for pre-LN, xin itself
 * (the fp32 stream) for post-LN. */
static const void *sub_begin(tf *T, int p, sub_acts *a, const float *xin, int R, dt_dtype *ut) {
  dt_model *m = &T->m;
  *ut = T->pre ? a->t : DT_F32;
  if (!T->pre) return xin;
  dt_model_fetch(m, p + SP_LNW, 2);
  m->be->k->layernorm_forward(m->be->ctx, a->ln, a->t, a->mean, a->rstd, xin, W(p + SP_LNW),
                              W(p + SP_LNB), R, T->D, TF_LN_EPS);
  dt_model_release(m, p + SP_LNW, 2);
  return a->ln;
}

/* Where the branch writes its output h: the stream itself for pre-LN (the
 * residual is added in place), scratch for post-LN. */
static float *sub_h(tf *T, sub_acts *a) { return T->pre ? a->out : T->tmp; }

/* out = xin + h (pre-LN), or LN(xin + h) (post-LN, the sum kept). */
static void sub_end(tf *T, int p, sub_acts *a, const float *xin, const float *h, int R) {
  dt_model *m = &T->m;
  if (T->pre) {
    m->be->k->axpy(m->be->ctx, a->out, 1.0f, xin, (size_t)R * T->D);
    return;
  }
  dt_model_fetch(m, p + SP_LNW, 2);
  m->be->k->residual_layernorm_forward(m->be->ctx, a->sum, a->out, DT_F32, a->mean, a->rstd, xin,
                                       h, W(p + SP_LNW), W(p + SP_LNB), R, T->D, TF_LN_EPS);
  dt_model_release(m, p + SP_LNW, 2);
}

/* h (R,D) = attention output a->c @ out_proj^T + bias */
static void attn_out_forward(tf *T, int p, sub_acts *a, float *h, int R) {
  dt_model *m = &T->m;
  dt_model_fetch(m, p + SP_W2, 2);
  m->be->k->linear_forward(m->be->ctx, h, DT_F32, a->c, a->t, W(p + SP_W2), W(p + SP_B2), R,
                           T->D, T->D);
  dt_model_release(m, p + SP_W2, 2);
}

static void branch_forward(tf *T, int kind, int p, sub_acts *a, const void *u, dt_dtype ut,
                           float *h, const pass *ps) {
  dt_model *m = &T->m;
  const dt_kernels *k = m->be->k;
  void *ctx = m->be->ctx;
  const int D = T->D, R = ps->n * ps->t, HS = D / T->NH;
  const float scale = 1.0f / sqrtf((float)HS);
  const dt_dtype t = a->t;
  if (kind == SUB_SELF) {
    dt_model_fetch(m, p, 2);
    k->linear_forward(ctx, a->a, t, u, ut, W(p), W(p + 1), R, D, 3 * D);
    dt_model_release(m, p, 2);
    k->attention_forward(ctx, a->c, a->lse, a->a, dt_elem(a->a, t, D), dt_elem(a->a, t, 2 * D),
                         t, ps->n, ps->t, ps->t, T->NH, HS, 3 * D, 3 * D, ps->causal,
                         ps->self_len, scale);
    attn_out_forward(T, p, a, h, R);
  } else if (kind == SUB_CROSS) {
    const int S = ps->n * ps->ts;
    dt_model_fetch(m, p, 2);
    k->linear_forward(ctx, a->a, t, u, ut, W(p), W(p + 1), R, D, D);
    k->linear_forward(ctx, a->kv, t, ps->enc, DT_F32, W(p) + (size_t)D * D, W(p + 1) + D, S, D,
                      2 * D);
    dt_model_release(m, p, 2);
    k->attention_forward(ctx, a->c, a->lse, a->a, a->kv, dt_elem(a->kv, t, D), t, ps->n, ps->t,
                         ps->ts, T->NH, HS, D, 2 * D, 0, ps->src_len, scale);
    attn_out_forward(T, p, a, h, R);
  } else {
    dt_model_fetch(m, p, 2);
    k->linear_act_forward(ctx, T->act, a->c, a->a, t, u, ut, W(p), W(p + 1), R, D, T->F);
    dt_model_release(m, p, 2);
    dt_model_fetch(m, p + SP_W2, 2);
    k->linear_forward(ctx, h, DT_F32, a->c, t, W(p + SP_W2), W(p + SP_B2), R, T->F, D);
    dt_model_release(m, p + SP_W2, 2);
  }
}

static void sub_forward(tf *T, int kind, int p, int site, sub_acts *a, const float *xin,
                        const pass *ps) {
  const int R = ps->n * ps->t;
  dt_dtype ut;
  const void *u = sub_begin(T, p, a, xin, R, &ut);
  float *h = sub_h(T, a);
  branch_forward(T, kind, p, a, u, ut, h, ps);
  drop(T, site, h, h, ps->n, ps->t);
  sub_end(T, p, a, xin, h, R);
}

/* A stack's output: its final LayerNorm (pre-LN) of the last stream. */
static const float *final_ln(tf *T, int p, float *out, float *mean, float *rstd, const float *x,
                             int R) {
  dt_model *m = &T->m;
  if (!T->pre) return x;
  dt_model_fetch(m, p, 2);
  m->be->k->layernorm_forward(m->be->ctx, out, DT_F32, mean, rstd, x, W(p), W(p + 1), R, T->D,
                              TF_LN_EPS);
  dt_model_release(m, p, 2);
  return out;
}

static const float *encoder_forward(tf *T, const int32_t *src, const int32_t *src_len, int n,
                                    int ts) {
  pass ps = {.n = n, .t = ts, .causal = 0, .self_len = src_len};
  embed_forward(T, T->enc_x0, src, n, ts, T->p_enc_emb, T->p_enc_pos, 0);
  drop(T, SITE_ENC_EMB, T->enc_x0, T->enc_x0, n, ts);
  const float *x = T->enc_x0;
  for (int l = 0; l < T->Le; l++)
    for (int s = 0; s < 2; s++) {
      sub_acts *a = &T->enc[2 * l + s];
      sub_forward(T, s ? SUB_FFN : SUB_SELF, enc_sub(T, l, s), enc_site(T, l, s), a, x, &ps);
      x = a->out;
    }
  return final_ln(T, T->p_enc_ln, T->enc_ln, T->enc_mean, T->enc_rstd, x, n * ts);
}

static const float *decoder_forward(tf *T, const dt_batch *b, const float *enc) {
  pass ps = {.n = b->n, .t = b->t, .causal = 1, .self_len = b->tgt_len, .enc = enc,
             .ts = b->ts, .src_len = b->src_len};
  embed_forward(T, T->dec_x0, b->tokens, b->n, b->t, T->p_dec_emb, T->p_dec_pos, 0);
  drop(T, SITE_DEC_EMB, T->dec_x0, T->dec_x0, b->n, b->t);
  const float *x = T->dec_x0;
  for (int l = 0; l < T->Ld; l++)
    for (int s = 0; s < 3; s++) {
      sub_acts *a = &T->dec[3 * l + s];
      sub_forward(T, s, dec_sub(T, l, s), dec_site(T, l, s), a, x, &ps);
      x = a->out;
    }
  return final_ln(T, T->p_dec_ln, T->dec_ln, T->dec_mean, T->dec_rstd, x, b->n * b->t);
}

static void logits_forward(tf *T, float *logits, const float *y, int R) {
  dt_model *m = &T->m;
  dt_model_fetch(m, T->p_out, 1);
  m->be->k->linear_forward(m->be->ctx, logits, DT_F32, y, DT_F32, W(T->p_out), NULL, R, T->D, T->V);
  dt_model_release(m, T->p_out, 1);
}

/* ---- backward pieces: activation gradients overwrite, parameter gradients
 * accumulate (dt_model_grad) and are announced once nothing else adds to them ---- */

static void branch_backward(tf *T, int kind, int p, sub_acts *a, const void *u, dt_dtype ut,
                            const float *dout, float *du, const pass *ps) {
  dt_model *m = &T->m;
  const dt_kernels *k = m->be->k;
  void *ctx = m->be->ctx;
  const int D = T->D, R = ps->n * ps->t, HS = D / T->NH;
  const float scale = 1.0f / sqrtf((float)HS);
  const dt_dtype t = a->t;
  if (kind == SUB_FFN) {
    dt_model_fetch(m, p + SP_W2, 2);
    k->linear_backward_act(ctx, T->act, T->dfc, GW(p + SP_W2), GW(p + SP_B2), dout, a->c,
                           W(p + SP_W2), a->a, t, R, T->F, D);
    dt_model_release(m, p + SP_W2, 2);
    ready2(m, p + SP_W2);
    dt_model_fetch(m, p, 2);
    k->linear_backward(ctx, du, GW(p), GW(p + 1), T->dfc, t, u, ut, W(p), R, D, T->F);
    dt_model_release(m, p, 2);
    ready2(m, p);
    return;
  }
  dt_model_fetch(m, p + SP_W2, 2);
  k->linear_backward(ctx, T->datt, GW(p + SP_W2), GW(p + SP_B2), dout, DT_F32, a->c, t,
                     W(p + SP_W2), R, D, D);
  dt_model_release(m, p + SP_W2, 2);
  ready2(m, p + SP_W2);
  if (kind == SUB_SELF) {
    k->attention_backward(ctx, T->dqkv, T->dqkv + D, T->dqkv + 2 * D, T->datt, a->a,
                          dt_elem(a->a, t, D), dt_elem(a->a, t, 2 * D), a->c, t, a->lse, ps->n,
                          ps->t, ps->t, T->NH, HS, 3 * D, 3 * D, ps->causal, ps->self_len, scale);
    dt_model_fetch(m, p, 2);
    k->linear_backward(ctx, du, GW(p), GW(p + 1), T->dqkv, DT_F32, u, ut, W(p), R, D, 3 * D);
    dt_model_release(m, p, 2);
  } else {
    const int S = ps->n * ps->ts;
    k->attention_backward(ctx, T->dqkv, T->dkv, T->dkv + D, T->datt, a->a, a->kv,
                          dt_elem(a->kv, t, D), a->c, t, a->lse, ps->n, ps->t, ps->ts, T->NH, HS,
                          D, 2 * D, 0, ps->src_len, scale);
    dt_model_fetch(m, p, 2);
    k->linear_backward(ctx, du, GW(p), GW(p + 1), T->dqkv, DT_F32, u, ut, W(p), R, D, D);
    k->linear_backward(ctx, T->denc_tmp, GW(p) + (size_t)D * D, GW(p + 1) + D, T->dkv, DT_F32,
                       ps->enc, DT_F32, W(p) + (size_t)D * D, S, D, 2 * D);
    dt_model_release(m, p, 2);
    /* every decoder layer reads the encoder output: its gradient sums them */
    k->axpy(ctx, T->denc, 1.0f, T->denc_tmp, (size_t)S * D);
  }
  ready2(m, p);
}

/* On entry *dres is d out; on return d xin. Post-LN needs a second buffer,
 * so the two pointers may trade places. */
static void sub_backward(tf *T, int kind, int p, int site, sub_acts *a, const float *xin,
                         const pass *ps, float **dres, float **spare) {
  dt_model *m = &T->m;
  const dt_kernels *k = m->be->k;
  void *ctx = m->be->ctx;
  const int R = ps->n * ps->t, D = T->D;
  if (T->pre) {
    branch_backward(T, kind, p, a, a->ln, a->t, drop_backward(T, site, *dres, ps), T->du, ps);
    dt_model_fetch(m, p + SP_LNW, 2);
    k->layernorm_backward(ctx, *dres, GW(p + SP_LNW), GW(p + SP_LNB), T->du, xin, W(p + SP_LNW),
                          a->mean, a->rstd, R, D);
    dt_model_release(m, p + SP_LNW, 2);
    ready2(m, p + SP_LNW);
    return;
  }
  float *dsum = *spare;
  m->be->memset0(m->be, dsum, (size_t)R * D * sizeof(float));
  dt_model_fetch(m, p + SP_LNW, 2);
  k->layernorm_backward(ctx, dsum, GW(p + SP_LNW), GW(p + SP_LNB), *dres, a->sum, W(p + SP_LNW),
                        a->mean, a->rstd, R, D);
  dt_model_release(m, p + SP_LNW, 2);
  ready2(m, p + SP_LNW);
  branch_backward(T, kind, p, a, xin, DT_F32, drop_backward(T, site, dsum, ps), T->du, ps);
  k->axpy(ctx, dsum, 1.0f, T->du, (size_t)R * D);
  *spare = *dres;
  *dres = dsum;
}

/* dx (n,t,D) is the gradient of the embedding sum; it is scaled in place. */
static void embed_backward(tf *T, float *dx, const int32_t *tok, int n, int t, int p_emb,
                           int p_pos) {
  dt_model *m = &T->m;
  const dt_kernels *k = m->be->k;
  void *ctx = m->be->ctx;
  if (T->learned) {
    k->embedding_backward(ctx, NULL, GW(p_pos), dx, tok, n, t, T->D, T->V, T->emb_ws);
    dt_model_grad_ready(m, p_pos);
  }
  k->scale(ctx, dx, sqrtf((float)T->D), (size_t)n * t * T->D);
  k->embedding_backward(ctx, GW(p_emb), NULL, dx, tok, n, t, T->D, T->V, T->emb_ws);
}

/* d (stack output) in *dres → through the final LayerNorm (pre-LN). */
static void final_ln_backward(tf *T, int p, const float *x, const float *mean, const float *rstd,
                              const float *dy, float *dx, int R) {
  dt_model *m = &T->m;
  m->be->memset0(m->be, dx, (size_t)R * T->D * sizeof(float));
  dt_model_fetch(m, p, 2);
  m->be->k->layernorm_backward(m->be->ctx, dx, GW(p), GW(p + 1), dy, x, W(p), mean, rstd, R,
                               T->D);
  dt_model_release(m, p, 2);
  ready2(m, p);
}

static void tf_backward(tf *T, const dt_batch *b, const float *enc) {
  dt_model *m = &T->m;
  const int n = b->n, BT = n * b->t, S = n * b->ts;
  const pass pd = {.n = n, .t = b->t, .causal = 1, .self_len = b->tgt_len, .enc = enc,
                   .ts = b->ts, .src_len = b->src_len};
  const pass pe = {.n = n, .t = b->ts, .causal = 0, .self_len = b->src_len};
  float *dres = T->d0, *spare = T->d1;

  m->be->memset0(m->be, T->denc, (size_t)S * T->D * sizeof(float));
  /* tf_classifier left d y in T->tmp (pre-LN) or T->d0 = dres, and the
   * output projection's gradient; a tied table is not final before the
   * embeddings */
  if (T->p_out != T->p_dec_emb) dt_model_grad_ready(m, T->p_out);
  const float *dec_last = T->dec[3 * T->Ld - 1].out;
  if (T->pre) final_ln_backward(T, T->p_dec_ln, dec_last, T->dec_mean, T->dec_rstd, T->tmp, dres, BT);

  for (int l = T->Ld - 1; l >= 0; l--)
    for (int s = 2; s >= 0; s--) {
      const float *xin = l == 0 && s == 0 ? T->dec_x0 : T->dec[3 * l + s - 1].out;
      sub_backward(T, s, dec_sub(T, l, s), dec_site(T, l, s), &T->dec[3 * l + s], xin, &pd,
                   &dres, &spare);
    }
  drop(T, SITE_DEC_EMB, dres, dres, n, b->t);
  embed_backward(T, dres, b->tokens, n, b->t, T->p_dec_emb, T->p_dec_pos);
  if (!T->shared) dt_model_grad_ready(m, T->p_dec_emb);

  const float *enc_last = T->enc[2 * T->Le - 1].out;
  if (T->pre) {
    final_ln_backward(T, T->p_enc_ln, enc_last, T->enc_mean, T->enc_rstd, T->denc, T->d0, S);
    dres = T->d0, spare = T->d1;
  } else {
    dres = T->denc, spare = T->d0;
  }
  for (int l = T->Le - 1; l >= 0; l--)
    for (int s = 1; s >= 0; s--) {
      const float *xin = l == 0 && s == 0 ? T->enc_x0 : T->enc[2 * l + s - 1].out;
      sub_backward(T, s ? SUB_FFN : SUB_SELF, enc_sub(T, l, s), enc_site(T, l, s),
                   &T->enc[2 * l + s], xin, &pe, &dres, &spare);
    }
  drop(T, SITE_ENC_EMB, dres, dres, n, b->ts);
  embed_backward(T, dres, b->src, n, b->ts, T->p_enc_emb, T->p_enc_pos);
  dt_model_grad_ready(m, T->p_enc_emb);
}

/* The output projection and the loss, chunk by chunk: rows [r0, r0+R) of the
 * decoder output y get their logits, losses and, when training, dlogits, the
 * gradient of y (into T->tmp under pre-LN, else T->d0, where tf_backward
 * picks it up) and the projection's gradient, before the next chunk reuses
 * the (chunk, V) buffers. Label smoothing is a training device: evaluation
 * (dscale = 0) reports the plain cross-entropy, so validation loss and
 * perplexity mean what they mean for every other model. Under bf16 the
 * logits are bf16 and their bf16 gradient is written over them, the bits
 * the bf16 GEMM would have read from fp32 ones. Returns the logits when the
 * batch was one chunk and they are fp32, else NULL. */
static const float *tf_classifier(tf *T, const dt_batch *b, const float *y, float *losses,
                                  float dscale) {
  dt_model *m = &T->m;
  const dt_kernels *k = m->be->k;
  void *ctx = m->be->ctx;
  const int BT = b->n * b->t, D = T->D, V = T->V;
  float *dy = T->pre ? T->tmp : T->d0;
  dt_model_fetch(m, T->p_out, 1);
  void *dlogits = T->dlogits ? (void *)T->dlogits : T->logits;
  for (int r0 = 0; r0 < BT; r0 += T->chunk) {
    const int R = DT_MIN(T->chunk, BT - r0);
    const float *x = y + (size_t)r0 * D;
    k->linear_forward(ctx, T->logits, T->at, x, DT_F32, W(T->p_out), NULL, R, D, V);
    k->softmax_xent_smooth(ctx, losses ? losses + r0 : NULL, dscale != 0.0f ? dlogits : NULL,
                           T->logits, T->at, b->y + r0, R, V, dscale,
                           dscale != 0.0f ? T->smoothing : 0.0f);
    if (dscale != 0.0f)
      k->linear_backward(ctx, dy + (size_t)r0 * D, GW(T->p_out), NULL, dlogits, T->at, x,
                         DT_F32, W(T->p_out), R, D, V);
  }
  dt_model_release(m, T->p_out, 1);
  return BT <= T->chunk && T->at == DT_F32 ? (const float *)T->logits : NULL;
}

static const float *tf_forward_backward(dt_model *m, const dt_batch *b, float *losses,
                                        float dscale) {
  tf *T = (tf *)m;
  /* a larger batch would write past every activation buffer */
  if (b->n < 1 || b->n > m->max_batch || b->t < 1 || b->t > m->max_t || b->ts < 1 ||
      b->ts > m->max_src_t || !b->src || !b->src_len)
    dt_die_user("transformer: a micro-batch of %d sentences, %d source x %d target tokens does "
                "not fit the model built for %d x %d x %d ([train] micro_batch_size, [train] "
                "seq_len, [model] block_size)",
                b->n, b->ts, b->t, m->max_batch, m->max_src_t, m->max_t);
  /* evaluation (dscale 0) sees the whole network */
  T->drop_p = dscale != 0.0f ? T->dropout : 0.0f;
  T->drop_b = b;
  if (T->drop_p > 0.0f &&
      (b->sample0 < 0 ||
       (double)(b->sample0 + b->n) * (double)drop_stride(T) >= 17592186044416.0))
    dt_die_user("transformer: dropout counters of sequences %lld..%lld (x %d tokens x %d) reach "
                "2^44, where the next site's begin",
                (long long)b->sample0, (long long)(b->sample0 + b->n), m->max_t, T->D);
  dt_model_weights_begin(m);
  const float *enc = encoder_forward(T, b->src, b->src_len, b->n, b->ts);
  const float *y = decoder_forward(T, b, enc);
  const float *logits = tf_classifier(T, b, y, losses, dscale);
  if (dscale != 0.0f) tf_backward(T, b, enc);
  dt_model_weights_end(m);
  /* dt_transformer_encode runs encoder_forward too: no dropout there */
  T->drop_p = 0.0f;
  T->drop_b = NULL;
  return logits;
}

/* ---- initialisation: nn.Transformer's Xavier-uniform projections, zero
 * biases, unit LayerNorms, and fairseq's N(0, d^-1/2) embeddings. One RNG
 * stream per tensor, so a tensor's values do not depend on the others. ---- */
static void tf_init(dt_model *m, float *host_p, uint64_t seed) {
  tf *T = (tf *)m;
  memset(host_p, 0, m->nparams_total * sizeof(float));
  for (int i = 0; i < m->nparams; i++) {
    const dt_param *p = &m->params[i];
    float *w = host_p + p->offset;
    dt_rng r;
    dt_rng_seed(&r, seed, 2000 + (uint64_t)i);
    if (T->init_kind[i] == INIT_ONE) {
      for (size_t j = 0; j < p->count; j++) w[j] = 1.0f;
    } else if (T->init_kind[i] == INIT_XAVIER) {
      double bound = sqrt(6.0 / (double)(p->shape[0] + p->shape[1]));
      for (size_t j = 0; j < p->count; j++) w[j] = (float)(bound * (2.0 * dt_rng_uniform(&r) - 1.0));
    } else if (T->init_kind[i] == INIT_EMB) {
      double std = 1.0 / sqrt((double)T->D);
      for (size_t j = 0; j < p->count; j++) w[j] = (float)(std * dt_rng_normal(&r));
    }
  }
}

/* ---- construction ---- */

/* n elements of type t */
static void *buf_alloc_t(tf *T, size_t n, dt_dtype t) {
  dt_model *m = &T->m;
  if (T->nbufs == T->capbufs) {
    T->capbufs = T->capbufs ? 2 * T->capbufs : 64;
    T->bufs = realloc(T->bufs, (size_t)T->capbufs * sizeof *T->bufs);
    DT_CHECK_ALLOC(T->bufs);
  }
  void *p = m->be->alloc(m->be, (n ? n : 1) * dt_dtype_size(t));
  T->bufs[T->nbufs++] = p;
  return p;
}
static float *buf_alloc(tf *T, size_t n) { return buf_alloc_t(T, n, DT_F32); }
static void *act_alloc_t(tf *T, size_t n, dt_dtype t) {
  T->m.activation_bytes += n * dt_dtype_size(t);
  return buf_alloc_t(T, n, t);
}
static float *act_alloc(tf *T, size_t n) { return act_alloc_t(T, n, DT_F32); }

static void tf_destroy(dt_model *m) {
  tf *T = (tf *)m;
  for (int i = 0; i < T->nbufs; i++) m->be->free(m->be, T->bufs[i]);
  if (m->g) m->be->free(m->be, m->g);
  if (T->emb_ws) m->be->free(m->be, T->emb_ws);
  free(T->bufs);
  free(T->enc);
  free(T->dec);
  free(T->init_kind);
  free(T->table);
  free(T);
}

static int add(tf *T, int *np, size_t *total, const char *name, int ndims, int64_t d0, int64_t d1,
               int decay, int tp_dim, int init) {
  int64_t shape[2] = {d0, d1};
  int64_t fan_in = ndims == 2 ? d1 : d0, fan_out = d0;
  dt_param_add(T->table, np, total, name, ndims, shape, decay, fan_in, fan_out);
  T->table[*np - 1].tp_dim = tp_dim;
  T->init_kind[*np - 1] = (unsigned char)init;
  return *np - 1;
}

/* One sublayer's six tensors. Attention: in_proj column-parallel (heads
 * split), out_proj row-parallel; feed-forward: fc1 column-, fc2 row-parallel. */
static void add_sub(tf *T, int *np, size_t *total, const char *prefix, int kind) {
  static const char *attn_names[] = {"in_proj_weight", "in_proj_bias", "out_proj.weight",
                                     "out_proj.bias"};
  static const char *ffn_names[] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
  static const char *ln_names[] = {"self_attn_layer_norm", "encoder_attn_layer_norm",
                                   "final_layer_norm"};
  static const char *attn_mod[] = {"self_attn", "encoder_attn"};
  const int64_t D = T->D, F = T->F;
  char name[DT_PARAM_NAME];
  if (kind == SUB_FFN) {
    snprintf(name, sizeof name, "%s.%s", prefix, ffn_names[0]);
    add(T, np, total, name, 2, F, D, 1, 0, INIT_XAVIER);
    snprintf(name, sizeof name, "%s.%s", prefix, ffn_names[1]);
    add(T, np, total, name, 1, F, 0, 0, 0, INIT_ZERO);
    snprintf(name, sizeof name, "%s.%s", prefix, ffn_names[2]);
    add(T, np, total, name, 2, D, F, 1, 1, INIT_XAVIER);
    snprintf(name, sizeof name, "%s.%s", prefix, ffn_names[3]);
    add(T, np, total, name, 1, D, 0, 0, -1, INIT_ZERO);
  } else {
    const char *mod = attn_mod[kind];
    snprintf(name, sizeof name, "%s.%s.%s", prefix, mod, attn_names[0]);
    add(T, np, total, name, 2, 3 * D, D, 1, 0, INIT_XAVIER);
    snprintf(name, sizeof name, "%s.%s.%s", prefix, mod, attn_names[1]);
    add(T, np, total, name, 1, 3 * D, 0, 0, 0, INIT_ZERO);
    snprintf(name, sizeof name, "%s.%s.%s", prefix, mod, attn_names[2]);
    add(T, np, total, name, 2, D, D, 1, 1, INIT_XAVIER);
    snprintf(name, sizeof name, "%s.%s.%s", prefix, mod, attn_names[3]);
    add(T, np, total, name, 1, D, 0, 0, -1, INIT_ZERO);
  }
  snprintf(name, sizeof name, "%s.%s.weight", prefix, ln_names[kind]);
  add(T, np, total, name, 1, D, 0, 0, -1, INIT_ONE);
  snprintf(name, sizeof name, "%s.%s.bias", prefix, ln_names[kind]);
  add(T, np, total, name, 1, D, 0, 0, -1, INIT_ZERO);
}

/* Names follow fairseq's transformer (embed_tokens, layers.N.fc1, ...) with
 * PyTorch's packed attention in_proj. */
static void build_table(tf *T) {
  const int64_t D = T->D, V = T->V, P = T->maxPos;
  int np = 0;
  size_t total = 0;
  char name[DT_PARAM_NAME];
  T->p_enc_emb = add(T, &np, &total, "encoder.embed_tokens.weight", 2, V, D, 1, 0, INIT_EMB);
  T->p_dec_emb = T->shared ? T->p_enc_emb
                           : add(T, &np, &total, "decoder.embed_tokens.weight", 2, V, D, 1, 0,
                                 INIT_EMB);
  T->p_enc_pos = T->p_dec_pos = -1;
  if (T->learned) {
    T->p_enc_pos = add(T, &np, &total, "encoder.embed_positions.weight", 2, P, D, 1, -1, INIT_EMB);
    T->p_dec_pos = add(T, &np, &total, "decoder.embed_positions.weight", 2, P, D, 1, -1, INIT_EMB);
  }
  T->p_enc0 = np;
  for (int l = 0; l < T->Le; l++)
    for (int s = 0; s < 2; s++) {
      snprintf(name, sizeof name, "encoder.layers.%d", l);
      add_sub(T, &np, &total, name, s ? SUB_FFN : SUB_SELF);
    }
  T->p_enc_ln = T->p_dec_ln = -1;
  if (T->pre) {
    T->p_enc_ln = add(T, &np, &total, "encoder.layer_norm.weight", 1, D, 0, 0, -1, INIT_ONE);
    add(T, &np, &total, "encoder.layer_norm.bias", 1, D, 0, 0, -1, INIT_ZERO);
  }
  T->p_dec0 = np;
  for (int l = 0; l < T->Ld; l++)
    for (int s = 0; s < 3; s++) {
      snprintf(name, sizeof name, "decoder.layers.%d", l);
      add_sub(T, &np, &total, name, s);
    }
  if (T->pre) {
    T->p_dec_ln = add(T, &np, &total, "decoder.layer_norm.weight", 1, D, 0, 0, -1, INIT_ONE);
    add(T, &np, &total, "decoder.layer_norm.bias", 1, D, 0, 0, -1, INIT_ZERO);
  }
  T->p_out = T->shared ? T->p_enc_emb
                       : add(T, &np, &total, "decoder.output_projection.weight", 2, V, D, 1, 0,
                             INIT_EMB);
  T->m.nparams = np;
  T->m.nparams_total = total;
}

static int check_config(const dt_config *cfg, int max_batch, dt_error *err) {
  if (!(cfg->model_dropout >= 0 && cfg->model_dropout < 1))
    return dt_error_set(err, "[model] dropout = %g: must be in [0, 1)", cfg->model_dropout);
  if (strcmp(cfg->train_recompute, "none") != 0)
    return dt_error_set(err, "[train] recompute = %s: activation recomputation is not built yet "
                        "for the transformer (only none)", cfg->train_recompute);
  if (cfg->model_n_embd % cfg->model_n_head != 0)
    return dt_error_set(err, "[model] n_head = %ld does not divide [model] n_embd = %ld "
                        "(d_model)", cfg->model_n_head, cfg->model_n_embd);
  if (cfg->model_n_embd / cfg->model_n_head > 1024)
    return dt_error_set(err, "[model] n_embd / n_head = %ld: heads larger than 1024 are not "
                        "supported by the attention kernels", cfg->model_n_embd / cfg->model_n_head);
  if (strcmp(cfg->model_activation, "relu") && strcmp(cfg->model_activation, "gelu") &&
      strcmp(cfg->model_activation, "gelu_tanh"))
    return dt_error_set(err, "[model] activation = %s: the transformer's feed-forward takes "
                        "relu, gelu or gelu_tanh", cfg->model_activation);
  if (strcmp(cfg->model_norm, "post") && strcmp(cfg->model_norm, "pre"))
    return dt_error_set(err, "[model] norm = %s: expected post or pre", cfg->model_norm);
  if (strcmp(cfg->model_pos, "sinusoidal") && strcmp(cfg->model_pos, "learned"))
    return dt_error_set(err, "[model] pos = %s: expected sinusoidal or learned", cfg->model_pos);
  if (cfg->train_seq_len > cfg->model_block_size)
    return dt_error_set(err, "[train] seq_len = %ld is longer than [model] block_size = %ld",
                        cfg->train_seq_len, cfg->model_block_size);
  if (cfg->train_label_smoothing < 0 || cfg->train_label_smoothing >= 1)
    return dt_error_set(err, "[train] label_smoothing = %g: expected 0 <= epsilon < 1",
                        cfg->train_label_smoothing);
  if (max_batch < 1) return dt_error_set(err, "transformer: micro-batch size must be at least 1");
  long T = cfg->train_seq_len ? cfg->train_seq_len : cfg->model_block_size;
  /* each dropout site numbers a step's elements from its own 2^44 range,
   * batch_size sentences (at most) of T positions x n_embd each */
  if (cfg->model_dropout > 0 &&
      (double)cfg->train_batch_size * (double)T * (double)cfg->model_n_embd >= 17592186044416.0)
    return dt_error_set(err, "[model] dropout = %g: a step of [train] batch_size = %ld x %ld "
                        "tokens x n_embd %ld has 2^44 elements or more per dropout site",
                        cfg->model_dropout, cfg->train_batch_size, T, cfg->model_n_embd);
  double rows = (double)max_batch * (double)T;
  double width = fmax(3.0 * cfg->model_n_embd, (double)cfg->model_d_ff);
  if (rows * width > 2147483647.0)
    return dt_error_set(err, "transformer: a micro-batch of %d x %ld tokens is too large (more "
                        "than 2^31 elements per activation; lower [train] micro_batch_size)",
                        max_batch, T);
  return dt_classifier_chunk_check(cfg, (size_t)rows, err);
}

static void alloc_sub(tf *T, sub_acts *a, int kind, size_t R, size_t S, size_t n, size_t t) {
  const size_t D = (size_t)T->D, F = (size_t)T->F;
  const dt_dtype at = a->t = T->at;
  if (T->pre) a->ln = act_alloc_t(T, R * D, at);
  else a->sum = act_alloc(T, R * D);
  a->mean = act_alloc(T, R);
  a->rstd = act_alloc(T, R);
  a->out = act_alloc(T, R * D);
  if (kind == SUB_FFN) {
    a->a = act_alloc_t(T, R * F, at);
    a->c = act_alloc_t(T, R * F, at);
    return;
  }
  a->a = act_alloc_t(T, R * (kind == SUB_SELF ? 3 : 1) * D, at);
  if (kind == SUB_CROSS) a->kv = act_alloc_t(T, S * 2 * D, at);
  a->c = act_alloc_t(T, R * D, at);
  a->lse = act_alloc(T, n * (size_t)T->NH * t);
}

/* The paper's interleaved table: PE(pos, 2i) = sin(pos / 10000^(2i/D)),
 * PE(pos, 2i+1) = cos(same), positions from 0. */
static void upload_sinusoids(tf *T) {
  const int D = T->D;
  float *h = dt_malloc((size_t)T->maxPos * D * sizeof(float));
  for (int pos = 0; pos < T->maxPos; pos++)
    for (int i = 0; i < D; i++) {
      double ang = pos / pow(10000.0, (double)(i & ~1) / D);
      h[(size_t)pos * D + i] = (float)(i & 1 ? cos(ang) : sin(ang));
    }
  T->pe = buf_alloc(T, (size_t)T->maxPos * D);
  T->m.be->h2d(T->m.be, T->pe, h, (size_t)T->maxPos * D * sizeof(float));
  free(h);
}

dt_model *dt_transformer_create(const dt_config *cfg, dt_backend_t be, int max_batch,
                                dt_error *err) {
  if (check_config(cfg, max_batch, err)) return NULL;
  tf *T = dt_calloc(1, sizeof *T);
  dt_model *m = &T->m;
  T->D = (int)cfg->model_n_embd;
  T->NH = (int)cfg->model_n_head;
  T->F = (int)cfg->model_d_ff;
  T->Le = (int)cfg->model_n_enc_layer;
  T->Ld = (int)cfg->model_n_dec_layer;
  T->V = (int)cfg->model_vocab_size;
  T->maxPos = (int)cfg->model_block_size;
  T->pre = !strcmp(cfg->model_norm, "pre");
  T->learned = !strcmp(cfg->model_pos, "learned");
  T->shared = cfg->model_share_embeddings != 0;
  T->act = !strcmp(cfg->model_activation, "relu")   ? DT_ACT_RELU
           : !strcmp(cfg->model_activation, "gelu") ? DT_ACT_GELU
                                                    : DT_ACT_GELU_TANH;
  T->smoothing = (float)cfg->train_label_smoothing;
  T->dropout = (float)cfg->model_dropout;
  T->at = strcmp(cfg->train_precision, "bf16") ? DT_F32 : DT_BF16;
  m->family = "transformer";
  m->be = be;
  m->num_classes = T->V;
  m->max_batch = max_batch;
  m->max_t = m->max_src_t = (int)(cfg->train_seq_len ? cfg->train_seq_len : cfg->model_block_size);
  int maxp = 4 + 2 + 2 * T->Le * SUB_NP + 2 + 3 * T->Ld * SUB_NP + 1;
  T->table = dt_calloc((size_t)maxp, sizeof *T->table);
  T->init_kind = dt_calloc((size_t)maxp, 1);
  m->params = T->table;
  build_table(T);
  /* not in bufs: the engine may free it (model.h, grad_ptr) */
  m->g = be->alloc(be, m->nparams_total * sizeof(float));
  be->memset0(be, m->g, m->nparams_total * sizeof(float));
  if (!T->learned) upload_sinusoids(T);

  const size_t n = (size_t)max_batch, S = n * m->max_src_t, R = n * m->max_t;
  const size_t RM = R > S ? R : S, D = (size_t)T->D;
  T->enc = dt_calloc((size_t)2 * T->Le, sizeof *T->enc);
  T->dec = dt_calloc((size_t)3 * T->Ld, sizeof *T->dec);
  T->enc_x0 = act_alloc(T, S * D);
  T->dec_x0 = act_alloc(T, R * D);
  for (int i = 0; i < 2 * T->Le; i++)
    alloc_sub(T, &T->enc[i], i % 2 ? SUB_FFN : SUB_SELF, S, S, n, (size_t)m->max_src_t);
  for (int i = 0; i < 3 * T->Ld; i++) alloc_sub(T, &T->dec[i], i % 3, R, S, n, (size_t)m->max_t);
  if (T->pre) {
    T->enc_ln = act_alloc(T, S * D);
    T->enc_mean = act_alloc(T, S);
    T->enc_rstd = act_alloc(T, S);
    T->dec_ln = act_alloc(T, R * D);
    T->dec_mean = act_alloc(T, R);
    T->dec_rstd = act_alloc(T, R);
  }
  T->chunk = (int)dt_classifier_chunk(cfg, R); /* checked to fit in check_config */
  T->logits = act_alloc_t(T, (size_t)T->chunk * T->V, T->at);
  if (T->at == DT_F32) T->dlogits = act_alloc(T, (size_t)T->chunk * T->V);
  T->tmp = act_alloc(T, RM * D);
  T->d0 = act_alloc(T, RM * D);
  T->d1 = act_alloc(T, RM * D);
  T->du = act_alloc(T, RM * D);
  T->datt = act_alloc(T, RM * D);
  if (T->dropout > 0.0f) T->dbranch = act_alloc(T, RM * D);
  T->dqkv = act_alloc(T, RM * 3 * D);
  T->dfc = act_alloc_t(T, RM * (size_t)T->F, T->at);
  T->dkv = act_alloc(T, S * 2 * D);
  T->denc = act_alloc(T, S * D);
  T->denc_tmp = act_alloc(T, S * D);
  size_t ws1 = be->k->embedding_backward_workspace(be->ctx, max_batch, m->max_t, T->V);
  size_t ws2 = be->k->embedding_backward_workspace(be->ctx, max_batch, m->max_src_t, T->V);
  size_t ws = ws1 > ws2 ? ws1 : ws2;
  T->emb_ws = ws ? be->alloc(be, ws) : NULL;
  m->activation_bytes += ws;

  m->init = tf_init;
  m->forward_backward = tf_forward_backward;
  m->destroy = tf_destroy;
  m->impl = T;
  return m;
}

/* ---- incremental decoding (transformer.h) ---- */

struct dt_transformer_decode {
  tf *T;
  int max_sent, beam, max_src, max_steps;
  int n, ts, K, step;
  float **self_kv;     /* (Ld) (K, max_steps, 2D): k|v of every fed token */
  float *spare_kv;     /* same size: the target of a reorder, then swapped in */
  float **cross_kv;    /* (Ld) (K, ts, 2D): k|v of the hypothesis' source */
  float *kv_sent;      /* (max_sent * max_src, 2D) one sentence's k|v before replication */
  int32_t *lens;       /* (K) device: step + 1 keys each */
  int32_t *src_len;    /* (K) device: the source length of each hypothesis */
  int32_t *rep;        /* (K) device: k / beam */
  int32_t *host_i;     /* (K) host scratch */
  sub_acts act[2];     /* alternating, at K rows; fp32 whatever the training type */
  float *x, *tmp, *y, *y_mean, *y_rstd, *logits;
  void **bufs;         /* every device buffer above */
  int nbufs;
};

static float *dec_alloc(dt_transformer_decode *d, size_t n) {
  dt_backend_t be = d->T->m.be;
  float *p = be->alloc(be, (n ? n : 1) * sizeof(float));
  d->bufs[d->nbufs++] = p;
  return p;
}

dt_transformer_decode *dt_transformer_decode_create(dt_model *m, int max_sent, int beam,
                                                    int max_src, int max_steps, dt_error *err) {
  if (strcmp(m->family, "transformer") != 0) {
    dt_error_set(err, "decode: model '%s' is not a transformer", m->family);
    return NULL;
  }
  tf *T = (tf *)m;
  if (max_sent < 1 || max_sent > m->max_batch || beam < 1 || max_src < 1 ||
      max_src > m->max_src_t || max_steps < 1 || max_steps > T->maxPos) {
    dt_error_set(err, "decode: %d sentences x beam %d, %d source tokens, %d steps do not fit "
                 "the model (at most %d sentences, %d source tokens, %d positions)",
                 max_sent, beam, max_src, max_steps, m->max_batch, m->max_src_t, T->maxPos);
    return NULL;
  }
  dt_transformer_decode *d = dt_calloc(1, sizeof *d);
  d->T = T;
  d->max_sent = max_sent, d->beam = beam, d->max_src = max_src, d->max_steps = max_steps;
  d->bufs = dt_calloc((size_t)2 * T->Ld + 40, sizeof *d->bufs);
  const size_t K = (size_t)max_sent * beam, D = (size_t)T->D;
  d->self_kv = dt_calloc((size_t)T->Ld, sizeof *d->self_kv);
  d->cross_kv = dt_calloc((size_t)T->Ld, sizeof *d->cross_kv);
  for (int l = 0; l < T->Ld; l++) {
    d->self_kv[l] = dec_alloc(d, K * max_steps * 2 * D);
    d->cross_kv[l] = dec_alloc(d, K * max_src * 2 * D);
  }
  d->spare_kv = dec_alloc(d, K * max_steps * 2 * D);
  d->kv_sent = dec_alloc(d, (size_t)max_sent * max_src * 2 * D);
  d->lens = (int32_t *)dec_alloc(d, K);
  d->src_len = (int32_t *)dec_alloc(d, K);
  d->rep = (int32_t *)dec_alloc(d, K);
  d->host_i = dt_calloc(K, sizeof(int32_t));
  for (int i = 0; i < 2; i++) {
    sub_acts *a = &d->act[i];
    a->t = DT_F32;
    a->ln = dec_alloc(d, K * D);
    a->sum = dec_alloc(d, K * D);
    a->mean = dec_alloc(d, K);
    a->rstd = dec_alloc(d, K);
    a->out = dec_alloc(d, K * D);
    a->a = dec_alloc(d, K * (3 * D > (size_t)T->F ? 3 * D : (size_t)T->F));
    a->c = dec_alloc(d, K * (D > (size_t)T->F ? D : (size_t)T->F));
    a->lse = dec_alloc(d, K * (size_t)T->NH);
  }
  d->x = dec_alloc(d, K * D);
  d->tmp = dec_alloc(d, K * D);
  d->y = dec_alloc(d, K * D);
  d->y_mean = dec_alloc(d, K);
  d->y_rstd = dec_alloc(d, K);
  d->logits = dec_alloc(d, K * (size_t)T->V);
  return d;
}

void dt_transformer_decode_free(dt_transformer_decode *d) {
  if (!d) return;
  for (int i = 0; i < d->nbufs; i++) d->T->m.be->free(d->T->m.be, d->bufs[i]);
  free(d->bufs);
  free(d->self_kv);
  free(d->cross_kv);
  free(d->host_i);
  free(d);
}

int dt_transformer_decode_len(const dt_transformer_decode *d) { return d->step; }

void dt_transformer_encode(dt_transformer_decode *d, const int32_t *src, const int32_t *src_len,
                           int n, int ts) {
  tf *T = d->T;
  dt_model *m = &T->m;
  dt_backend_t be = m->be;
  if (n < 1 || n > d->max_sent || ts < 1 || ts > d->max_src)
    dt_die_user("decode: %d sentences of %d tokens do not fit the decode state (%d x %d)", n, ts,
                d->max_sent, d->max_src);
  const int D = T->D, K = n * d->beam;
  d->n = n, d->ts = ts, d->K = K, d->step = 0;
  const float *enc = encoder_forward(T, src, src_len, n, ts);
  /* hypothesis k reads sentence k / beam: replicate its keys, values and length */
  for (int k = 0; k < K; k++) d->host_i[k] = k / d->beam;
  be->h2d(be, d->rep, d->host_i, (size_t)K * sizeof(int32_t));
  int32_t *lens = dt_malloc((size_t)n * sizeof *lens);
  be->d2h(be, lens, src_len, (size_t)n * sizeof *lens);
  for (int k = 0; k < K; k++) d->host_i[k] = lens[k / d->beam];
  free(lens);
  be->h2d(be, d->src_len, d->host_i, (size_t)K * sizeof(int32_t));
  for (int l = 0; l < T->Ld; l++) {
    int p = dec_sub(T, l, SUB_CROSS);
    dt_model_fetch(m, p, 2);
    be->k->linear_forward(be->ctx, d->kv_sent, DT_F32, enc, DT_F32, W(p) + (size_t)D * D,
                          W(p + 1) + D, n * ts, D, 2 * D);
    dt_model_release(m, p, 2);
    /* a row gather: the embedding kernel with sentences as the table */
    be->k->embedding_forward(be->ctx, d->cross_kv[l], d->rep, d->kv_sent, NULL, 1, K,
                             ts * 2 * D, n);
    be->memset0(be, d->self_kv[l], (size_t)K * d->max_steps * 2 * D * sizeof(float));
  }
}

/* Self-attention of one new token per hypothesis over the cache. */
static void cached_self_attn(dt_transformer_decode *d, int l, int p, sub_acts *a, const void *u,
                             dt_dtype ut, float *h) {
  tf *T = d->T;
  dt_model *m = &T->m;
  dt_backend_t be = m->be;
  const int D = T->D, K = d->K, HS = D / T->NH;
  dt_model_fetch(m, p, 2);
  be->k->linear_forward(be->ctx, a->a, DT_F32, u, ut, W(p), W(p + 1), K, D, 3 * D);
  dt_model_release(m, p, 2);
  const float *qkv = a->a;
  /* each hypothesis's new k|v into its cache row `step`: one strided copy */
  const size_t F = sizeof(float);
  be->d2d_rows(be, d->self_kv[l] + (size_t)d->step * 2 * D, (size_t)d->max_steps * 2 * D * F,
               qkv + D, 3 * (size_t)D * F, 2 * (size_t)D * F, (size_t)K);
  /* the cache's unused slots are masked by key_len = step + 1 */
  be->k->attention_forward(be->ctx, a->c, a->lse, a->a, d->self_kv[l], d->self_kv[l] + D, DT_F32,
                           K, 1, d->max_steps, T->NH, HS, 3 * D, 2 * D, 0, d->lens,
                           1.0f / sqrtf((float)HS));
  attn_out_forward(T, p, a, h, K);
}

static void cached_cross_attn(dt_transformer_decode *d, int l, int p, sub_acts *a, const void *u,
                              dt_dtype ut, float *h) {
  tf *T = d->T;
  dt_model *m = &T->m;
  dt_backend_t be = m->be;
  const int D = T->D, K = d->K, HS = D / T->NH;
  dt_model_fetch(m, p, 2);
  be->k->linear_forward(be->ctx, a->a, DT_F32, u, ut, W(p), W(p + 1), K, D, D);
  dt_model_release(m, p, 2);
  be->k->attention_forward(be->ctx, a->c, a->lse, a->a, d->cross_kv[l], d->cross_kv[l] + D, DT_F32, K, 1,
                           d->ts, T->NH, HS, D, 2 * D, 0, d->src_len, 1.0f / sqrtf((float)HS));
  attn_out_forward(T, p, a, h, K);
}

const float *dt_transformer_decode_step(dt_transformer_decode *d, const int32_t *tokens) {
  tf *T = d->T;
  dt_model *m = &T->m;
  dt_backend_t be = m->be;
  const int K = d->K;
  if (K < 1 || d->step >= d->max_steps)
    dt_die_user("decode: step %d past the decode state's %d steps (or nothing encoded)", d->step,
                d->max_steps);
  for (int k = 0; k < K; k++) d->host_i[k] = d->step + 1;
  be->h2d(be, d->lens, d->host_i, (size_t)K * sizeof(int32_t));
  embed_forward(T, d->x, tokens, K, 1, T->p_dec_emb, T->p_dec_pos, d->step);
  const float *x = d->x;
  pass ps = {.n = K, .t = 1};
  int cur = 0;
  float *saved_tmp = T->tmp;
  T->tmp = d->tmp; /* sub_h's post-LN scratch at K rows */
  for (int l = 0; l < T->Ld; l++)
    for (int s = 0; s < 3; s++) {
      sub_acts *a = &d->act[cur];
      int p = dec_sub(T, l, s);
      dt_dtype ut;
      const void *u = sub_begin(T, p, a, x, K, &ut);
      float *h = sub_h(T, a);
      if (s == SUB_SELF) cached_self_attn(d, l, p, a, u, ut, h);
      else if (s == SUB_CROSS) cached_cross_attn(d, l, p, a, u, ut, h);
      else branch_forward(T, SUB_FFN, p, a, u, ut, h, &ps);
      sub_end(T, p, a, x, h, K);
      x = a->out;
      cur ^= 1;
    }
  T->tmp = saved_tmp;
  const float *y = final_ln(T, T->p_dec_ln, d->y, d->y_mean, d->y_rstd, x, K);
  logits_forward(T, d->logits, y, K);
  d->step++;
  return d->logits;
}

void dt_transformer_decode_reorder(dt_transformer_decode *d, const int32_t *parent) {
  tf *T = d->T;
  dt_backend_t be = T->m.be;
  const int C = d->max_steps * 2 * T->D;
  for (int l = 0; l < T->Ld; l++) {
    be->k->embedding_forward(be->ctx, d->spare_kv, parent, d->self_kv[l], NULL, 1, d->K, C, d->K);
    float *t = d->self_kv[l];
    d->self_kv[l] = d->spare_kv;
    d->spare_kv = t;
  }
}
