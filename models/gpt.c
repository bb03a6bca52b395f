/* gpt.c: GPT-2 as Hugging Face's GPT2LMHeadModel computes it (tanh GELU,
 * LayerNorm eps 1e-5): token + learned position embeddings, pre-LN blocks, a
 * final LayerNorm and an LM head tied to the token table. Dropout
 * ([model] dropout) as HF's embd_pdrop and resid_pdrop, on the embedding
 * output and on each residual branch before its add; HF's attn_pdrop, on the
 * attention probabilities, is not applied: the fused attention kernel keeps
 * no probability matrix to drop from. Activation recompute
 * ([train] recompute) trades a second forward of the MLP or of a whole block
 * for the memory of its activations, with bit-identical gradients. Under
 * train.precision = bf16 the activations that feed GEMMs and attention
 * (LayerNorm outputs, qkv, attention's output, the MLP hidden before and
 * after GELU and its gradient) and the logits are stored in bf16 (G->at):
 * half the memory, and no rounding pass in front of each GEMM; the residual
 * stream and the other gradients stay fp32.
 *
 * Tensor parallelism (tp_n > 1) splits each block as Megatron-LM does: the
 * q,k,v projection and c_fc by output features (a rank keeps n_head/tp_n
 * heads and 4C/tp_n hidden units), each c_proj by input features, so a
 * block needs one all-reduce after each c_proj in forward (the engine's
 * tp_allreduce; the c_proj bias is added by part 0 alone) and one after each
 * column-parallel layer's input gradient in backward. The token embedding
 * and the tied LM head are vocabulary-parallel: a rank keeps wte's rows
 * [v0, v0+Vl), looks up the tokens it holds (zero rows for the others) and
 * the parts are summed; its logits cover those ids, the softmax's max and
 * sum come from every part's row statistics (an all-gather of 3 floats a
 * row), and d lnf is summed over the parts. The position embedding and the
 * LayerNorms are whole on every rank, which compute them alike.
 *
 * Sequence parallelism (parallel.sequence_parallel, with tp_n > 1) splits,
 * as Megatron-LM's does, what tensor parallelism leaves whole: a rank
 * keeps rows [r0, r0+Rl) of the step's n*t tokens (Rl = n*t/tp_n) of the
 * residual stream, the LayerNorms, dropout and the stage's input and
 * output. A LayerNorm's output is all-gathered before the column-parallel
 * GEMM that reads it (and again in backward, so only the rank's rows are
 * kept), a row-parallel layer's output is reduce-scattered instead of
 * all-reduced, and in backward the conjugates: the gradient entering a
 * row-parallel layer is all-gathered, the one leaving a column-parallel
 * layer reduce-scattered. The LayerNorm weights' gradients then cover a
 * rank's rows only, so each LayerNorm's (2C floats) is summed over the
 * parts before it is added; the row-parallel biases and wpe see the
 * gathered, whole gradient and need nothing.
 *
 * Pipeline parallelism (pp_n > 1) gives stage pp_r the blocks
 * [l0, l0+nl) (the layers split as evenly as they go, earlier stages taking
 * the extra ones); the first stage also holds the embeddings, the last ln_f
 * and the LM head, with a copy of the token table it is tied to (pp_copy:
 * the engine sums the two copies' gradients, and saves the first's). A
 * stage keeps the activations of up to nslots micro-batches in flight
 * (model.h's stage_forward/stage_backward); parameters keep their global
 * names and RNG streams, so every stage is the slice of the one model and a
 * checkpoint resumes in any layout. A stage that ends before the last block
 * adds its last residual plainly (the next stage's first LayerNorm reads the
 * sum: layernorm_forward gives the bits of the fused add + LayerNorm), so
 * the stages compute what one process does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/rng.h"
#include "model.h"

/* The parameter table, in Hugging Face's order: wte, wpe, then per block the
 * L_* tensors below, then ln_f. Linear weights are stored (OC, C) as dtrain's
 * linear kernels take them (HF's Conv1D keeps (C, OC)). */
enum { P_WTE, P_WPE, P_BLOCK0 }; /* the whole model's indices (RNG streams) */
enum {
  L_LN1W, L_LN1B,       /* ln_1 (C) */
  L_QKVW, L_QKVB,       /* attn.c_attn (3C, C), (3C) */
  L_APROJW, L_APROJB,   /* attn.c_proj (C, C), (C) */
  L_LN2W, L_LN2B,       /* ln_2 (C) */
  L_FCW, L_FCB,         /* mlp.c_fc (4C, C), (4C) */
  L_MPROJW, L_MPROJB,   /* mlp.c_proj (C, 4C), (C) */
  L_COUNT
};

#define GPT_LN_EPS 1e-5f

/* [train] recompute: none keeps every activation; mlp keeps no MLP hidden
 * (fch, fch_gelu: 8 of a block's 16 (BT,C)-sized tensors) and recomputes it
 * from ln2 in backward; block keeps only each block's input res[l] and
 * re-runs the block's forward before its backward. */
enum { RC_NONE, RC_MLP, RC_BLOCK };

/* What one block keeps for the backward, each at (max_batch * max_t) rows;
 * under sp ln1, ln2, mid and the LayerNorm statistics (and the residual
 * stream, dres, dbranch, lnf) at this rank's 1/tp of them.
 * Under recompute = block there is one set, shared by all blocks. The void
 * pointers are of the model's operand type G->at. */
typedef struct gpt_block_acts {
  void *ln1;                        /* (BT,C) */
  float *ln1_mean, *ln1_rstd;       /* (BT) (BT) */
  void *qkv;                        /* (BT,3C) */
  void *atty;                       /* (BT,C) */
  float *lse;                       /* (B,NH,T) */
  float *mid;                       /* (BT,C) residual after attention */
  void *ln2;                        /* (BT,C) */
  float *ln2_mean, *ln2_rstd;       /* (BT) (BT) */
  void *fch, *fch_gelu;             /* (BT,4C) before and after GELU; NULL unless none */
} gpt_block_acts;

typedef struct gpt {
  dt_model m;
  dt_param *table;
  int *gidx;                 /* each parameter's index in the whole model's table */
  int L, NH, C, V, maxT;     /* maxT: rows of wpe (model.block_size) */
  int l0, nl, first, last;   /* this stage's blocks [l0, l0+nl); holds the embeddings,
                              * the head (whole model: 0, L, 1, 1) */
  int p_wte, p_wpe, p_blk0, p_lnf; /* indices in this stage's table, -1 when absent */
  int slot;                  /* the activation slot at hand, of m.nslots */
  int head_slot;             /* last stage: the slot whose d lnf is in scratch, or -1 */
  int NHl, Cl, Fl;           /* this rank's heads, their width NHl*HS, and MLP hidden units */
  int v0, Vl;                /* this rank's vocabulary ids [v0, v0+Vl) (0, V: whole) */
  float *vstats, *vstats_all; /* tensor parallelism: the classifier's row statistics,
                               * this part's (chunk,3) and every part's (tp_n,chunk,3) */
  int sp;                    /* sequence parallelism (tp_n > 1 only) */
  int Rl, r0;                /* the micro-batch at hand's rows of the residual stream on
                              * this rank: [r0, r0+Rl) of n*t (0, n*t without sp) */
  void *lng;                 /* sp: (BT,C) a LayerNorm output gathered, type at */
  float *gfull;              /* sp: (BT,C) a gradient gathered from every part's rows */
  float *sh;                 /* sp: (BT/tp,C) this rank's rows of a summed output */
  float *lngrad;             /* sp: (2C) a LayerNorm's weight and bias gradient */
  const float *dlnf;         /* d lnf of this rank's rows, where the classifier left it
                              * (scratch, or sh under sp) */
  int recompute;             /* RC_* */
  float dropout;             /* [model] dropout */
  dt_dtype at;               /* the type of the activations only GEMMs read: bf16 under
                              * train.precision = bf16 */
  gpt_block_acts *acts;      /* (nacts): nl per slot, or 1 under recompute = block */
  int nacts;
  float **res;               /* (nslots, nl+1) residual stream (BT,C): RES(G, l) enters
                              * block l, RES(G, l0+nl) leaves the stage */
  void *lnf;                 /* (BT,C), type at */
  float *lnf_mean, *lnf_rstd; /* (BT) (BT) */
  int chunk;                 /* rows of logits at a time ([train] classifier_chunk) */
  int ldv;                   /* logits' row stride: V, padded under bf16 (dt_logits_ld) */
  void *logits;              /* (chunk,V), rows ldv apart, type at */
  float *dlogits;            /* (chunk,V) fp32; NULL under bf16, whose dlogits (bf16)
                              * overwrite the logits */
  float *scratch;            /* (BT,C): projection outputs in forward, dln/datty in backward */
  float *dres;               /* (BT,C) gradient of the residual stream */
  float *dqkv;               /* (BT,3C), fp32 under bf16 too: qkv's bias gradient sums it,
                              * and summed from bf16 values the tiny GPT's bf16 run moved
                              * 2.7% from fp32's at a loss spike (0.2% in fp32) */
  void *dfch;                /* (BT,4C), type at */
  void *hpre, *hbuf;         /* (BT,4C) the MLP hidden of the block at hand, before and
                              * after GELU, unless none; type at */
  float *dbranch;            /* (BT,C) a residual branch's gradient through dropout */
  void *emb_ws;
  /* this call's dropout: p (0 in evaluation) and the batch it draws masks for */
  float drop_p;
  const dt_batch *drop_b;
} gpt;

static int block_param(const gpt *G, int l, int which) {
  return G->p_blk0 + (l - G->l0) * L_COUNT + which;
}
static gpt_block_acts *blk(gpt *G, int l) {
  return &G->acts[G->nacts == 1 ? 0 : G->slot * G->nl + (l - G->l0)];
}
/* the residual stream entering block l (l0 <= l <= l0+nl) of the slot at hand */
static float *RES(const gpt *G, int l) { return G->res[G->slot * (G->nl + 1) + (l - G->l0)]; }

/* The LayerNorm that follows block l: ln_1 of the next block, or ln_f. */
static int next_ln_param(const gpt *G, int l) {
  return l + 1 < G->l0 + G->nl ? block_param(G, l + 1, L_LN1W) : G->p_lnf;
}

/* ---- dropout sites: 0 the embedding output, 1 + 2l block l's attention
 * projection, 2 + 2l its MLP output. Site s counts its elements from s << 44,
 * each sequence from its index in the step's global batch (b->sample0 + i),
 * so no two sites or sequences of a step share a counter while a step holds
 * fewer than 2^44 elements per site (batch * seq_len * n_embd), and the
 * backward and any recompute regenerate the forward's mask. ---- */

static uint64_t drop_offset(const gpt *G, const dt_batch *b, int site) {
  return ((uint64_t)site << 44) + ((uint64_t)b->sample0 * (uint64_t)b->t + (uint64_t)G->r0) *
                                      (uint64_t)G->C;
}

/* x (Rl,C), this rank's rows of the residual stream, = dropout(x) in place;
 * nothing when not training or p = 0 */
static void drop_forward(gpt *G, int site, float *x) {
  const dt_batch *b = G->drop_b;
  if (G->drop_p <= 0.0f) return;
  G->m.be->k->dropout_forward(G->m.be->ctx, x, x, (size_t)G->Rl * G->C, G->drop_p,
                              b->seed, drop_offset(G, b, site));
}

/* The gradient through site's dropout: into dbranch (dres must survive for
 * the residual path), or dres itself when there is no dropout. */
static const float *drop_backward(gpt *G, int site, const float *dres) {
  const dt_batch *b = G->drop_b;
  if (G->drop_p <= 0.0f) return dres;
  G->m.be->k->dropout_backward(G->m.be->ctx, G->dbranch, dres, (size_t)G->Rl * G->C,
                               G->drop_p, b->seed, drop_offset(G, b, site));
  return G->dbranch;
}

#define W(i) dt_model_param(m, i)

/* A row-parallel layer's bias (weight p, bias p+1): added by part 0 only,
 * since the parts' outputs are summed. */
static const float *row_bias(gpt *G, int p) {
  return G->m.tp_r == 0 ? dt_model_param(&G->m, p + 1) : NULL;
}

/* ---- where tensor parallelism meets the residual stream ---- */

/* The input of a column-parallel GEMM, x (Rl,C) of type at: x itself, or
 * under sp every part's rows of it gathered into lng (BT,C). */
static const void *col_input(gpt *G, const void *x) {
  if (!G->sp) return x;
  G->m.tp_allgather(G->m.tp_ctx, x, G->lng, (size_t)G->Rl * G->C, G->at);
  return G->lng;
}

/* A row-parallel layer's output y (BT,C), this part's term: summed over
 * the parts in place, or under sp reduce-scattered into this rank's rows
 * (sh). Returns the (Rl,C) rows of the sum this rank holds. The gradient
 * leaving a column-parallel layer, d input (BT,C), takes the same path. */
static float *row_output(gpt *G, float *y, int BT) {
  if (!G->sp) {
    dt_model_tp_sum(&G->m, y, (size_t)BT * G->C);
    return y;
  }
  G->m.tp_reduce_scatter(G->m.tp_ctx, y, G->sh, (size_t)G->Rl * G->C);
  return G->sh;
}

/* The gradient entering a row-parallel layer, d (Rl,C): under sp every
 * part's rows gathered into gfull (BT,C). */
static const float *row_grad_input(gpt *G, const float *d) {
  if (!G->sp) return d;
  G->m.tp_allgather(G->m.tp_ctx, d, G->gfull, (size_t)G->Rl * G->C, DT_F32);
  return G->gfull;
}

/* The backward of LayerNorm p (weight p, bias p+1) over this rank's rows:
 * dinp += d inp, and the parameters' gradients, which under sp cover this
 * rank's rows only and are summed over the parts before they are added. */
static void ln_backward(gpt *G, int p, float *dinp, const float *dout, const float *inp,
                        const float *mean, const float *rstd) {
  dt_model *m = &G->m;
  const dt_kernels *k = m->be->k;
  const int C = G->C;
  dt_model_fetch(m, p, 2);
  float *dw = G->sp ? G->lngrad : dt_model_grad(m, p);
  float *db = G->sp ? G->lngrad + C : dt_model_grad(m, p + 1);
  if (G->sp) m->be->memset0(m->be, G->lngrad, 2 * (size_t)C * sizeof(float));
  k->layernorm_backward(m->be->ctx, dinp, dw, db, dout, inp, dt_model_param(m, p), mean, rstd,
                        G->Rl, C);
  if (G->sp) {
    m->tp_allreduce(m->tp_ctx, G->lngrad, 2 * (size_t)C);
    k->axpy(m->be->ctx, dt_model_grad(m, p), 1.0f, G->lngrad, (size_t)C);
    k->axpy(m->be->ctx, dt_model_grad(m, p + 1), 1.0f, G->lngrad + C, (size_t)C);
  }
  dt_model_release(m, p, 2);
  dt_model_grad_ready(m, p);
  dt_model_grad_ready(m, p + 1);
}

/* Block l from its ln1 (already normalised) to mid = res[l] + drop(attn) and
 * ln2 = LN(mid): the forward, and under recompute = block its replay. */
static void attn_forward(gpt *G, const dt_batch *b, int l) {
  dt_model *m = &G->m;
  const dt_kernels *k = m->be->k;
  void *ctx = m->be->ctx;
  const int BT = b->n * b->t, C = G->C, HS = C / G->NH, Cl = G->Cl;
  gpt_block_acts *a = blk(G, l);
  int p = block_param(G, l, L_QKVW);
  const void *x = col_input(G, a->ln1);
  dt_model_fetch(m, p, 2);
  k->linear_forward(ctx, a->qkv, G->at, x, G->at, W(p), W(p + 1), BT, C, 3 * Cl);
  dt_model_release(m, p, 2);
  k->attention_forward(ctx, a->atty, a->lse, a->qkv, dt_elem(a->qkv, G->at, Cl),
                       dt_elem(a->qkv, G->at, 2 * (size_t)Cl), G->at, b->n, b->t, b->t, G->NHl,
                       HS, 3 * Cl, 3 * Cl, 1, NULL, 1.0f / sqrtf((float)HS));
  p = block_param(G, l, L_APROJW);
  dt_model_fetch(m, p, 2);
  k->linear_forward(ctx, G->scratch, DT_F32, a->atty, G->at, W(p), row_bias(G, p), BT, Cl, C);
  dt_model_release(m, p, 2);
  float *y = row_output(G, G->scratch, BT);
  drop_forward(G, 1 + 2 * l, y);
  p = block_param(G, l, L_LN2W);
  dt_model_fetch(m, p, 2);
  k->residual_layernorm_forward(ctx, a->mid, a->ln2, G->at, a->ln2_mean, a->ln2_rstd, RES(G, l),
                                y, W(p), W(p + 1), G->Rl, C, GPT_LN_EPS);
  dt_model_release(m, p, 2);
}

/* c_fc then GELU of block l's ln2 (x: col_input of it), one fused GEMM on
 * the GPU, into fch/fch_gelu (none) or hpre/hbuf (recompute). Returns
 * GELU's output.
 * Recompute makes the very same call, so the GPU's epilogue GELU gives the
 * same bits the second time: an elementwise GELU after a plain GEMM could
 * round differently. */
static void *mlp_hidden_forward(gpt *G, int BT, int l, const void *x) {
  dt_model *m = &G->m;
  const dt_kernels *k = m->be->k;
  gpt_block_acts *a = blk(G, l);
  const int C = G->C, p = block_param(G, l, L_FCW);
  void *out = a->fch ? a->fch_gelu : G->hbuf;
  dt_model_fetch(m, p, 2);
  k->linear_act_forward(m->be->ctx, DT_ACT_GELU_TANH, out, a->fch ? a->fch : G->hpre, G->at,
                        x, G->at, W(p), W(p + 1), BT, C, G->Fl);
  dt_model_release(m, p, 2);
  return out;
}

/* The stage's forward from its input: the embeddings (first stage) or the
 * previous stage's output already in RES(G, l0), to RES(G, l0+nl) and, on
 * the last stage, lnf. */
static void gpt_forward(gpt *G, const dt_batch *b) {
  dt_model *m = &G->m;
  const dt_kernels *k = m->be->k;
  void *ctx = m->be->ctx;
  const int BT = b->n * b->t, C = G->C, l0 = G->l0, lend = G->l0 + G->nl;
  float *x0 = RES(G, l0);

  if (G->first) {
    dt_model_fetch(m, G->p_wte, 2);
    const float *wte = W(G->p_wte), *wpe = W(G->p_wpe);
    if (G->m.tp_n > 1) { /* this part's rows, wpe added once, then the parts summed */
      float *e = G->sp ? G->scratch : x0; /* sp: every row, then this rank's rows summed */
      k->embedding_forward_part(ctx, e, b->tokens, wte, G->m.tp_r ? NULL : wpe, b->n, b->t, C,
                                G->v0, G->Vl);
      if (G->sp)
        m->tp_reduce_scatter(m->tp_ctx, e, x0, (size_t)G->Rl * C);
      else
        dt_model_tp_sum(m, x0, (size_t)BT * C);
    } else {
      k->embedding_forward(ctx, x0, b->tokens, wte, wpe, b->n, b->t, C, G->V);
    }
    dt_model_release(m, G->p_wte, 2);
    drop_forward(G, 0, x0);
  }
  int p = block_param(G, l0, L_LN1W);
  dt_model_fetch(m, p, 2);
  k->layernorm_forward(ctx, blk(G, l0)->ln1, G->at, blk(G, l0)->ln1_mean, blk(G, l0)->ln1_rstd,
                       x0, W(p), W(p + 1), G->Rl, C, GPT_LN_EPS);
  dt_model_release(m, p, 2);

  for (int l = l0; l < lend; l++) {
    attn_forward(G, b, l);
    const void *h = mlp_hidden_forward(G, BT, l, col_input(G, blk(G, l)->ln2));
    p = block_param(G, l, L_MPROJW);
    dt_model_fetch(m, p, 2);
    k->linear_forward(ctx, G->scratch, DT_F32, h, G->at, W(p), row_bias(G, p), BT, G->Fl, C);
    dt_model_release(m, p, 2);
    float *y = row_output(G, G->scratch, BT);
    drop_forward(G, 2 + 2 * l, y);
    if (l + 1 == lend && !G->last) { /* the stage's output: the plain residual sum */
      m->be->d2d(m->be, RES(G, lend), blk(G, l)->mid, (size_t)G->Rl * C * sizeof(float));
      k->axpy(ctx, RES(G, lend), 1.0f, y, (size_t)G->Rl * C);
      break;
    }
    /* the second residual add is fused with the LayerNorm that follows it;
     * under recompute = block the next ln1 lands in the one shared set,
     * whose ln1 this block has finished with */
    int last = l + 1 == lend;
    gpt_block_acts *nx = last ? NULL : blk(G, l + 1);
    p = next_ln_param(G, l);
    dt_model_fetch(m, p, 2);
    k->residual_layernorm_forward(ctx, RES(G, l + 1), last ? G->lnf : nx->ln1, G->at,
                                  last ? G->lnf_mean : nx->ln1_mean,
                                  last ? G->lnf_rstd : nx->ln1_rstd, blk(G, l)->mid, y, W(p),
                                  W(p + 1), G->Rl, C, GPT_LN_EPS);
    dt_model_release(m, p, 2);
  }
}

#define GW(i) dt_model_grad(m, i)

/* gpt_classifier under tensor parallelism: this part's logits (ids
 * [v0, v0+Vl), rows packed), their row statistics gathered from every
 * part, the loss and this part's dlogits (in place), and the GEMMs of
 * linear_backward: wte's part of the gradient, and this part's term of
 * d lnf, summed over the parts once every chunk is done. */
static const float *classifier_part(gpt *G, const dt_batch *b, float *losses, float dscale,
                                    float *dln) {
  const void *lnf = col_input(G, G->lnf); /* under sp every rank's rows */
  dt_model *m = &G->m;
  const dt_kernels *k = m->be->k;
  void *ctx = m->be->ctx;
  const int BT = b->n * b->t, C = G->C, Vl = G->Vl;
  dt_model_fetch(m, G->p_wte, 1);
  for (int r0 = 0; r0 < BT; r0 += G->chunk) {
    const int R = DT_MIN(G->chunk, BT - r0);
    const void *x = dt_elem(lnf, G->at, (size_t)r0 * C);
    k->lm_head_forward(ctx, G->logits, G->at, Vl, x, G->at, W(G->p_wte), R, C, Vl);
    k->softmax_xent_part_stats(ctx, G->vstats, G->logits, G->at, b->y + r0, R, Vl, Vl, G->v0);
    m->tp_allgather(m->tp_ctx, G->vstats, G->vstats_all, (size_t)R * 3, DT_F32);
    k->softmax_xent_part(ctx, losses ? losses + r0 : NULL, dscale != 0.0f ? G->logits : NULL,
                         G->logits, G->at, b->y + r0, G->vstats_all, G->m.tp_n, R, Vl, Vl, G->v0,
                         G->V, dscale);
    if (dscale != 0.0f)
      k->linear_backward(ctx, dln + (size_t)r0 * C, GW(G->p_wte), NULL, G->logits, G->at, x, G->at,
                         W(G->p_wte), R, C, Vl);
  }
  dt_model_release(m, G->p_wte, 1);
  if (dscale != 0.0f) G->dlnf = row_output(G, dln, BT);
  return NULL;
}

/* The LM head tied to the token table and the loss, chunk by chunk: rows
 * [r0, r0+R) get logits = lnf @ wte^T, their losses, and when training
 * (dscale != 0) dlogits, d lnf (into dln) and wte's gradient before the next
 * chunk reuses the buffers, so no (BT,V) tensor is ever kept: at gpt-124m's
 * 16 x 1024 tokens that is 3.3 GB of logits and as much of dlogits. wte's
 * gradient sums its chunks' terms one GEMM after the other. Under bf16 the
 * logits are bf16 (the classifier keeps no fp32 logits) and their bf16
 * gradient overwrites them. Returns the (fp32) logits when the batch was
 * one chunk, else NULL; always NULL under bf16. */
static const float *gpt_classifier(gpt *G, const dt_batch *b, float *losses, float dscale,
                                   float *dln) {
  dt_model *m = &G->m;
  const dt_kernels *k = m->be->k;
  void *ctx = m->be->ctx;
  const int BT = b->n * b->t, C = G->C, V = G->V;
  if (G->m.tp_n > 1) return classifier_part(G, b, losses, dscale, dln);
  G->dlnf = dln;
  dt_model_fetch(m, G->p_wte, 1);
  for (int r0 = 0; r0 < BT; r0 += G->chunk) {
    const int R = DT_MIN(G->chunk, BT - r0);
    const void *x = dt_elem(G->lnf, G->at, (size_t)r0 * C);
    k->lm_head_forward(ctx, G->logits, G->at, G->ldv, x, G->at, W(G->p_wte), R, C, V);
    if (dscale != 0.0f) /* softmax, loss, dlogits and both GEMMs */
      k->lm_head_backward(ctx, losses ? losses + r0 : NULL, dln + (size_t)r0 * C, GW(G->p_wte),
                          G->dlogits ? (void *)G->dlogits : G->logits, G->logits, G->at,
                          b->y + r0, x, G->at, W(G->p_wte), R, C, V, G->ldv, dscale);
    else
      k->softmax_xent(ctx, losses ? losses + r0 : NULL, NULL, G->logits, G->at, b->y + r0, R, V,
                      G->ldv, 0.0f);
  }
  dt_model_release(m, G->p_wte, 1);
  return BT <= G->chunk && G->at == DT_F32 ? (const float *)G->logits : NULL;
}
#define READY2(i) dt_model_grad_ready(m, i), dt_model_grad_ready(m, (i) + 1)

/* The MLP of block l backward: dres is d res[l+1] (this rank's rows);
 * returns d ln2 of this rank's rows (dln, or sh under sp).
 * c_proj's d input and GELU's backward are one call (one fused GEMM on the
 * GPU): dfch = (dout @ W) * GELU'(fch). Without a kept hidden, the hidden
 * is first recomputed into hpre/hbuf by the forward's own call, so every
 * mode gives the same bits. */
static const float *mlp_backward(gpt *G, int BT, int l, const float *dres, float *dln) {
  dt_model *m = &G->m;
  const dt_kernels *k = m->be->k;
  void *ctx = m->be->ctx;
  gpt_block_acts *a = blk(G, l);
  const int C = G->C;
  const float *dout = row_grad_input(G, drop_backward(G, 2 + 2 * l, dres));
  const void *x = col_input(G, a->ln2);
  const void *h = a->fch ? a->fch_gelu : mlp_hidden_forward(G, BT, l, x);
  const void *pre = a->fch ? a->fch : G->hpre;
  int p = block_param(G, l, L_MPROJW);
  dt_model_fetch(m, p, 2);
  k->linear_backward_act(ctx, DT_ACT_GELU_TANH, G->dfch, GW(p), GW(p + 1), dout, h, W(p), pre,
                         G->at, BT, G->Fl, C);
  dt_model_release(m, p, 2);
  READY2(p);
  p = block_param(G, l, L_FCW);
  dt_model_fetch(m, p, 2);
  k->linear_backward(ctx, dln, GW(p), GW(p + 1), G->dfch, G->at, x, G->at, W(p), BT, C, G->Fl);
  dt_model_release(m, p, 2);
  READY2(p);
  return row_output(G, dln, BT);
}

/* Parameter gradients accumulate (dt_model_grad); each parameter is announced
 * ready once nothing later in the backward adds to it. Starts from d lnf in
 * G->scratch, which gpt_classifier left there (last stage), or from the
 * gradient of the stage's output in G->dres (the next stage's d input); a
 * stage after the first leaves the gradient of its input in G->dres. */
static void gpt_backward(gpt *G, const dt_batch *b) {
  dt_model *m = &G->m;
  const dt_kernels *k = m->be->k;
  void *ctx = m->be->ctx;
  const int BT = b->n * b->t, C = G->C, HS = C / G->NH, Cl = G->Cl;
  float *dln = G->scratch, *dres = G->dres;

  /* wte's gradient from the LM head is in; it is not final until the
   * embedding's backward (on a later stage than the first: now) */
  int p = G->p_lnf;
  if (G->last) {
    m->be->memset0(m->be, dres, (size_t)G->Rl * C * sizeof(float));
    ln_backward(G, p, dres, G->dlnf, RES(G, G->l0 + G->nl), G->lnf_mean, G->lnf_rstd);
    if (!G->first) dt_model_grad_ready(m, G->p_wte);
  }

  for (int l = G->l0 + G->nl - 1; l >= G->l0; l--) {
    gpt_block_acts *a = blk(G, l);
    if (G->recompute == RC_BLOCK) {
      /* replay the block up to ln2 from res[l]; layernorm_forward of res[l]
       * gives the bits the fused residual+LayerNorm gave in the forward */
      p = block_param(G, l, L_LN1W);
      dt_model_fetch(m, p, 2);
      k->layernorm_forward(ctx, a->ln1, G->at, a->ln1_mean, a->ln1_rstd, RES(G, l), W(p),
                           W(p + 1), G->Rl, C, GPT_LN_EPS);
      dt_model_release(m, p, 2);
      attn_forward(G, b, l);
    }
    /* dres is d res[l+1] = d mid + d (mlp output) */
    const float *d = mlp_backward(G, BT, l, dres, dln);
    ln_backward(G, block_param(G, l, L_LN2W), dres, d, a->mid, a->ln2_mean, a->ln2_rstd);
    /* dres is now d mid = d res[l] + d (attention output) */
    const float *dout = row_grad_input(G, drop_backward(G, 1 + 2 * l, dres));
    p = block_param(G, l, L_APROJW);
    dt_model_fetch(m, p, 2);
    k->linear_backward(ctx, dln, GW(p), GW(p + 1), dout, DT_F32, a->atty, G->at, W(p), BT, Cl,
                       C);
    dt_model_release(m, p, 2);
    READY2(p);
    k->attention_backward(ctx, G->dqkv, G->dqkv + Cl, G->dqkv + 2 * Cl, dln, a->qkv,
                          dt_elem(a->qkv, G->at, Cl), dt_elem(a->qkv, G->at, 2 * (size_t)Cl),
                          a->atty, G->at, a->lse, b->n, b->t, b->t, G->NHl, HS, 3 * Cl, 3 * Cl, 1,
                          NULL, 1.0f / sqrtf((float)HS));
    p = block_param(G, l, L_QKVW);
    const void *x = col_input(G, a->ln1);
    dt_model_fetch(m, p, 2);
    k->linear_backward(ctx, dln, GW(p), GW(p + 1), G->dqkv, DT_F32, x, G->at, W(p), BT, C,
                       3 * Cl);
    dt_model_release(m, p, 2);
    READY2(p);
    d = row_output(G, dln, BT);
    ln_backward(G, block_param(G, l, L_LN1W), dres, d, RES(G, l), a->ln1_mean, a->ln1_rstd);
  }

  if (!G->first) return;
  /* dres is d res[0], through the embedding dropout (in place: dres is
   * done with after this); the embeddings need no parameter reads */
  if (G->drop_p > 0.0f)
    k->dropout_backward(ctx, dres, dres, (size_t)G->Rl * C, G->drop_p, b->seed,
                        drop_offset(G, b, 0));
  if (G->m.tp_n > 1) /* this part's rows of wte; wpe's gradient whole, as every part has
                      * it (under sp from every rank's rows of d res[0], gathered) */
    k->embedding_backward_part(ctx, GW(G->p_wte), GW(G->p_wpe), row_grad_input(G, dres),
                               b->tokens, b->n, b->t, C, G->v0, G->Vl, G->emb_ws);
  else
    k->embedding_backward(ctx, GW(G->p_wte), GW(G->p_wpe), dres, b->tokens, b->n, b->t, C, G->V,
                          G->emb_ws);
  dt_model_grad_ready(m, G->p_wpe);
  dt_model_grad_ready(m, G->p_wte);
}
#undef READY2
#undef GW
#undef W

/* the engine sizes batches from max_batch and train.seq_len; a larger one
 * would write past every activation buffer. Sets the batch's rows of the
 * residual stream this rank holds. */
static void check_batch(gpt *G, const dt_batch *b) {
  const dt_model *m = &G->m;
  if (G->m.tp_n > 1 &&
      (!m->tp_allreduce || !m->tp_allgather || (G->sp && !m->tp_reduce_scatter)))
    dt_fatal("gpt", "a tensor-parallel part was built, but nobody set tp_allreduce", __FILE__,
             __LINE__, __func__, "gpt_forward_backward");
  if (G->sp && b->t % G->m.tp_n != 0)
    dt_die_user("gpt: a micro-batch of sequences of %d tokens does not split over [parallel] "
                "tp = %d ranks (parallel.sequence_parallel)", b->t, G->m.tp_n);
  if (b->n < 1 || b->n > m->max_batch || b->t < 1 || b->t > m->max_t)
    dt_die_user("gpt: a micro-batch of %d x %d tokens does not fit the model built for %d x %d "
                "([train] micro_batch_size, [train] seq_len, [model] block_size = %d)",
                b->n, b->t, m->max_batch, m->max_t, G->maxT);
  G->Rl = G->sp ? b->n * b->t / m->tp_n : b->n * b->t;
  G->r0 = G->sp ? m->tp_r * G->Rl : 0;
}

static const float *gpt_forward_backward(dt_model *m, const dt_batch *b, float *losses,
                                         float dscale) {
  gpt *G = (gpt *)m;
  if (m->pp_n > 1)
    dt_fatal("gpt", "forward_backward called on a pipeline stage (use stage_forward)", __FILE__,
             __LINE__, __func__, "gpt_forward_backward");
  check_batch(G, b);
  /* evaluation (dscale 0) sees the whole network, as model.eval() does */
  G->drop_p = dscale != 0.0f ? G->dropout : 0.0f;
  G->drop_b = b;
  dt_model_weights_begin(m);
  gpt_forward(G, b);
  const float *logits = gpt_classifier(G, b, losses, dscale, G->scratch);
  if (dscale != 0.0f) gpt_backward(G, b);
  dt_model_weights_end(m);
  G->drop_b = NULL;
  return logits;
}

/* ---- pipeline stages (model.h) ---- */

static void use_slot(gpt *G, int slot, const char *who) {
  if (slot < 0 || slot >= G->m.nslots)
    dt_fatal("gpt", "activation slot out of range", __FILE__, __LINE__, __func__, who);
  G->slot = slot;
}

static void gpt_stage_forward(dt_model *m, const dt_batch *b, int slot, float *losses,
                              float dscale) {
  gpt *G = (gpt *)m;
  check_batch(G, b);
  use_slot(G, slot, "stage_forward");
  G->drop_p = dscale != 0.0f ? G->dropout : 0.0f;
  G->drop_b = b;
  gpt_forward(G, b);
  if (G->last) {
    gpt_classifier(G, b, losses, dscale, G->scratch);
    G->head_slot = dscale != 0.0f ? slot : -1; /* d lnf of this slot is in scratch */
  }
  G->drop_b = NULL;
}

static void gpt_stage_backward(dt_model *m, const dt_batch *b, int slot) {
  gpt *G = (gpt *)m;
  check_batch(G, b);
  use_slot(G, slot, "stage_backward");
  /* the last stage's backward starts from the head's gradient, which only
   * the forward just before it left */
  if (G->last && G->head_slot != slot)
    dt_fatal("gpt", "the last stage's backward does not follow its training forward", __FILE__,
             __LINE__, __func__, "stage_backward");
  G->head_slot = -1;
  G->drop_p = G->dropout;
  G->drop_b = b;
  gpt_backward(G, b);
  G->drop_b = NULL;
}

static float *gpt_stage_input(dt_model *m, int slot) {
  gpt *G = (gpt *)m;
  return G->res[slot * (G->nl + 1)];
}

static const float *gpt_stage_output(dt_model *m, int slot) {
  gpt *G = (gpt *)m;
  return G->res[slot * (G->nl + 1) + G->nl];
}

/* GPT-2's initialisation: weights and embeddings N(0, 0.02), the projections
 * into the residual stream N(0, 0.02/sqrt(2*n_layer)), biases 0, LayerNorm
 * weight 1 and bias 0. One RNG stream per tensor, drawn for the whole
 * tensor (numbered as in the whole model), so every tensor-parallel part and
 * pipeline stage is the slice of the one model. */
static void gpt_init(dt_model *m, float *host_p, uint64_t seed) {
  gpt *G = (gpt *)m;
  memset(host_p, 0, m->nparams_total * sizeof(float));
  for (int i = 0; i < m->nparams; i++) {
    const dt_param *p = &m->params[i];
    float *w = host_p + p->offset;
    if (strstr(p->name, "ln_")) {
      if (strstr(p->name, ".weight"))
        for (size_t j = 0; j < p->count; j++) w[j] = 1.0f;
      continue;
    }
    if (p->ndims != 2) continue; /* biases */
    double std = 0.02;
    if (strstr(p->name, ".c_proj.weight")) std = 0.02 / sqrt(2.0 * G->L);
    const size_t n = dt_param_full_count(p);
    float *full = dt_param_is_split(p) ? dt_malloc(n * sizeof(float)) : w;
    dt_rng r;
    dt_rng_seed(&r, seed, 1000 + (uint64_t)G->gidx[i]);
    for (size_t j = 0; j < n; j++) full[j] = (float)(std * dt_rng_normal(&r));
    if (full != w) {
      dt_param_extract(p, full, w);
      free(full);
    }
  }
}

static void gpt_destroy(dt_model *m) {
  gpt *G = (gpt *)m;
  dt_backend_t be = m->be;
  for (int l = 0; l < G->nacts; l++) {
    gpt_block_acts *a = &G->acts[l];
    void *bufs[] = {a->ln1, a->ln1_mean, a->ln1_rstd, a->qkv, a->atty, a->lse, a->mid, a->ln2,
                    a->ln2_mean, a->ln2_rstd, a->fch, a->fch_gelu};
    for (size_t i = 0; i < DT_ARRAY_LEN(bufs); i++)
      if (bufs[i]) be->free(be, bufs[i]);
  }
  for (int l = 0; l < m->nslots * (G->nl + 1); l++) be->free(be, G->res[l]);
  void *bufs[] = {G->lnf,  G->lnf_mean, G->lnf_rstd, G->logits, G->dlogits, G->scratch,
                  G->dres, G->dqkv,     G->dfch,     G->hpre,   G->hbuf,     G->dbranch,
                  G->vstats, G->vstats_all, G->lng, G->gfull, G->sh, G->lngrad, m->g};
  for (size_t i = 0; i < DT_ARRAY_LEN(bufs); i++)
    if (bufs[i]) be->free(be, bufs[i]);
  if (G->emb_ws) be->free(be, G->emb_ws);
  free(G->acts);
  free(G->res);
  free(G->table);
  free(G->gidx);
  free(G);
}

/* n elements of type t */
static void *act_alloc_t(dt_model *m, size_t n, dt_dtype t) {
  m->activation_bytes += n * dt_dtype_size(t);
  return m->be->alloc(m->be, n * dt_dtype_size(t));
}
static float *act_alloc(dt_model *m, size_t n) { return act_alloc_t(m, n, DT_F32); }

/* Adds one tensor, number gi of the whole model's table, with its
 * tensor-parallel split dimension, which holds `parts` blocks (3 for q,k,v) */
static void add(gpt *G, int *np, size_t *total, int gi, const char *name, int ndims, int64_t d0,
                int64_t d1, int decay, int tp_dim, int parts) {
  int64_t shape[2] = {d0, d1};
  int64_t fan_in = ndims == 2 ? d1 : d0, fan_out = d0;
  dt_param_add(G->table, np, total, name, ndims, shape, decay, fan_in, fan_out);
  G->table[*np - 1].tp_dim = tp_dim;
  G->table[*np - 1].tp_parts = parts;
  G->gidx[*np - 1] = gi;
}

/* This stage's table (the whole model's when l0 = 0, nl = L): wte and wpe
 * on the first stage, the blocks [l0, l0+nl), then ln_f and, on a last
 * stage that is not the first, the copy of wte for the tied head. */
static void build_table(gpt *G) {
  const int64_t C = G->C;
  int np = 0;
  size_t total = 0;
  char name[DT_PARAM_NAME];
  G->table = dt_calloc((size_t)(P_BLOCK0 + G->nl * L_COUNT + 3), sizeof *G->table);
  G->gidx = dt_calloc((size_t)(P_BLOCK0 + G->nl * L_COUNT + 3), sizeof *G->gidx);
  G->p_wte = G->p_wpe = G->p_lnf = -1;
  if (G->first) {
    G->p_wte = np;
    add(G, &np, &total, P_WTE, "wte.weight", 2, G->V, C, 1, 0, 1); /* vocabulary-parallel */
    G->p_wpe = np;
    add(G, &np, &total, P_WPE, "wpe.weight", 2, G->maxT, C, 1, -1, 1);
  }
  G->p_blk0 = np;
  for (int l = G->l0; l < G->l0 + G->nl; l++) {
    /* tp: the dimension split (-1: whole) and the blocks in it */
    static const struct {
      const char *name;
      int ndims;
      int64_t rows, cols;
      int decay, tp, parts;
    } b[] = {{"ln_1.weight", 1, 1, 0, 0, -1, 1},       {"ln_1.bias", 1, 1, 0, 0, -1, 1},
             {"attn.c_attn.weight", 2, 3, 1, 1, 0, 3}, {"attn.c_attn.bias", 1, 3, 0, 0, 0, 3},
             {"attn.c_proj.weight", 2, 1, 1, 1, 1, 1}, {"attn.c_proj.bias", 1, 1, 0, 0, -1, 1},
             {"ln_2.weight", 1, 1, 0, 0, -1, 1},       {"ln_2.bias", 1, 1, 0, 0, -1, 1},
             {"mlp.c_fc.weight", 2, 4, 1, 1, 0, 1},    {"mlp.c_fc.bias", 1, 4, 0, 0, 0, 1},
             {"mlp.c_proj.weight", 2, 1, 4, 1, 1, 1},  {"mlp.c_proj.bias", 1, 1, 0, 0, -1, 1}};
    for (int i = 0; i < L_COUNT; i++) {
      snprintf(name, sizeof name, "h.%d.%s", l, b[i].name);
      add(G, &np, &total, P_BLOCK0 + l * L_COUNT + i, name, b[i].ndims, b[i].rows * C,
          b[i].cols * C, b[i].decay, b[i].tp, b[i].parts);
    }
  }
  if (G->last) {
    G->p_lnf = np;
    add(G, &np, &total, P_BLOCK0 + G->L * L_COUNT, "ln_f.weight", 1, C, 0, 0, -1, 1);
    add(G, &np, &total, P_BLOCK0 + G->L * L_COUNT + 1, "ln_f.bias", 1, C, 0, 0, -1, 1);
    if (!G->first) { /* the LM head's copy of the token table */
      G->p_wte = np;
      add(G, &np, &total, P_WTE, "wte.weight", 2, G->V, C, 1, 0, 1);
      G->table[G->p_wte].pp_copy = 1;
    }
  }
  G->m.nparams = np;
  G->m.params = G->table;
  /* laid out again for this rank's parts; whole (tp 1) it is the same table */
  G->m.nparams_total =
      G->m.tp_n > 1 ? dt_param_table_split(G->table, np, G->m.tp_n, G->m.tp_r) : total;
  /* this rank's vocabulary ids: wte's part, as runtime/param.c cuts it */
  if (G->p_wte >= 0) {
    const dt_param *wte = &G->table[G->p_wte];
    G->v0 = (int)(dt_param_full_index(wte, G->m.tp_n, G->m.tp_r, 0) / (size_t)C);
    G->Vl = (int)dt_param_part_dim(wte, G->m.tp_n, G->m.tp_r);
  }
}

/* [parallel] pp_split: stage r of n's blocks [l0, l0+nl). even: n_layer/n
 * each, the first n_layer % n stages one more. flops: the cut that
 * minimises the largest stage's compute (then the spread of the rest),
 * counting per token a block's matmuls and attention (24 C^2 + 4 T C
 * forward flops, a third more under recompute = block, which runs it
 * twice) and on the last stage the LM head's 2 V C (with its backward, 3x
 * the forward as a block's). The embeddings are lookups and count nothing.
 * Every stage gets a block. */
void dt_gpt_stage_blocks(const dt_config *cfg, int n, int r, int *l0, int *nl) {
  const int L = (int)cfg->model_n_layer;
  if (strcmp(cfg->parallel_pp_split, "flops") != 0 || n == 1 || n > L) {
    *nl = L / n + (r < L % n);
    *l0 = r * (L / n) + DT_MIN(r, L % n);
    return;
  }
  const double C = (double)cfg->model_n_embd, V = (double)cfg->model_vocab_size;
  const double T = (double)(cfg->train_seq_len ? cfg->train_seq_len : cfg->model_block_size);
  const double block = (24.0 * C * C + 4.0 * T * C) *
                       (strcmp(cfg->train_recompute, "block") ? 1.0 : 4.0 / 3.0);
  const double head = 2.0 * V * C;
  /* best[s][l]: stages 0..s holding blocks [0, l): the least largest cost,
   * then the least sum of squared costs; cut[s][l] = where stage s starts */
  const size_t W = (size_t)L + 1;
  double *mx = dt_malloc((size_t)n * W * sizeof(double));
  double *sq = dt_malloc((size_t)n * W * sizeof(double));
  int *cut = dt_malloc((size_t)n * W * sizeof(int));
  for (int s = 0; s < n; s++)
    for (int l = 0; l <= L; l++) {
      mx[s * W + l] = INFINITY, sq[s * W + l] = INFINITY, cut[s * W + l] = -1;
      for (int a = s; a < l; a++) { /* stage s holds [a, l) */
        if (s == 0 && a != 0) break;
        double pm = s ? mx[(s - 1) * W + a] : 0, ps = s ? sq[(s - 1) * W + a] : 0;
        if (!isfinite(pm)) continue;
        const double c = (l - a) * block + (s == n - 1 && l == L ? head : 0.0);
        const double m1 = DT_MAX(pm, c), s1 = ps + c * c;
        if (m1 < mx[s * W + l] || (m1 == mx[s * W + l] && s1 < sq[s * W + l]))
          mx[s * W + l] = m1, sq[s * W + l] = s1, cut[s * W + l] = a;
      }
    }
  int hi = L;
  for (int s = n - 1; s >= r; s--) {
    const int a = cut[s * W + hi];
    if (s == r) *l0 = a, *nl = hi - a;
    hi = a;
  }
  free(mx);
  free(sq);
  free(cut);
}

dt_param *dt_gpt_whole_table(const dt_config *cfg, int *nparams, size_t *total) {
  gpt G;
  memset(&G, 0, sizeof G);
  G.L = (int)cfg->model_n_layer, G.C = (int)cfg->model_n_embd, G.V = (int)cfg->model_vocab_size;
  G.maxT = (int)cfg->model_block_size;
  G.nl = G.L, G.first = G.last = 1;
  G.m.tp_n = 1;
  build_table(&G);
  free(G.gidx);
  *nparams = G.m.nparams;
  *total = G.m.nparams_total;
  return G.table;
}

static int recompute_mode(const char *s) {
  if (!strcmp(s, "none")) return RC_NONE;
  if (!strcmp(s, "mlp")) return RC_MLP;
  return !strcmp(s, "block") ? RC_BLOCK : -1;
}

static int check_config(const dt_config *cfg, int max_batch, int tp_n, dt_error *err) {
  long T = cfg->train_seq_len ? cfg->train_seq_len : cfg->model_block_size;
  if (!(cfg->model_dropout >= 0 && cfg->model_dropout < 1))
    return dt_error_set(err, "[model] dropout = %g: must be in [0, 1)", cfg->model_dropout);
  if (recompute_mode(cfg->train_recompute) < 0)
    return dt_error_set(err, "[train] recompute = %s: must be none, mlp or block",
                        cfg->train_recompute);
  if (cfg->model_n_embd % cfg->model_n_head != 0)
    return dt_error_set(err, "[model] n_head = %ld does not divide [model] n_embd = %ld",
                        cfg->model_n_head, cfg->model_n_embd);
  if (tp_n > 1 && cfg->model_n_head % tp_n != 0)
    return dt_error_set(err, "[parallel] tp = %d does not divide [model] n_head = %ld (tensor "
                        "parallelism gives each rank whole heads)", tp_n, cfg->model_n_head);
  if (tp_n > 1 && cfg->parallel_sequence_parallel && T % tp_n != 0)
    return dt_error_set(err, "[parallel] sequence_parallel: [train] seq_len = %ld does not "
                        "divide by [parallel] tp = %d (each rank holds seq_len/tp tokens of a "
                        "sequence)", T, tp_n);
  if (tp_n > cfg->model_vocab_size)
    return dt_error_set(err, "[parallel] tp = %d is more than [model] vocab_size = %ld (each "
                        "rank holds a part of the vocabulary)", tp_n, cfg->model_vocab_size);
  if (cfg->model_n_embd / cfg->model_n_head > 1024)
    return dt_error_set(err, "[model] n_embd / n_head = %ld: heads larger than 1024 are not "
                        "supported by the attention kernels", cfg->model_n_embd / cfg->model_n_head);
  if (cfg->train_seq_len > cfg->model_block_size)
    return dt_error_set(err, "[train] seq_len = %ld is longer than [model] block_size = %ld",
                        cfg->train_seq_len, cfg->model_block_size);
  if (max_batch < 1) return dt_error_set(err, "gpt: micro-batch size must be at least 1");
  /* each dropout site numbers a step's elements from its own 2^44 range */
  if (cfg->model_dropout > 0 &&
      (double)cfg->train_batch_size * (double)T * (double)cfg->model_n_embd >= 17592186044416.0)
    return dt_error_set(err, "[model] dropout = %g: a step of [train] batch_size = %ld x %ld "
                        "tokens x n_embd %ld has 2^44 elements or more per dropout site",
                        cfg->model_dropout, cfg->train_batch_size, T, cfg->model_n_embd);
  /* the kernels take row counts (n*t) and widths (4C, V) as int */
  double rows = (double)max_batch * (double)T;
  if (rows * 4.0 * (double)cfg->model_n_embd > 2147483647.0)
    return dt_error_set(err, "gpt: a micro-batch of %d x %ld tokens at [model] n_embd = %ld is "
                        "too large (more than 2^31 elements per activation)", max_batch, T,
                        cfg->model_n_embd);
  return dt_classifier_chunk_check(cfg, (size_t)rows, err);
}

dt_model *dt_gpt_create(const dt_config *cfg, dt_backend_t be, int max_batch,
                        const dt_model_part *part, dt_error *err) {
  const int tp_n = part->tp_n, tp_r = part->tp_r, pp_n = part->pp_n, pp_r = part->pp_r;
  if (tp_n < 1 || tp_r < 0 || tp_r >= tp_n || pp_n < 1 || pp_r < 0 || pp_r >= pp_n ||
      part->nslots < 1) {
    dt_error_set(err, "gpt: tensor-parallel part %d of %d, stage %d of %d, %d slots", tp_r, tp_n,
                 pp_r, pp_n, part->nslots);
    return NULL;
  }
  if (check_config(cfg, max_batch, tp_n, err)) return NULL;
  if (pp_n > cfg->model_n_layer) {
    dt_error_set(err, "[parallel] pp = %d is more than [model] n_layer = %ld (each pipeline "
                 "stage holds at least one block)", pp_n, cfg->model_n_layer);
    return NULL;
  }
  gpt *G = dt_calloc(1, sizeof *G);
  dt_model *m = &G->m;
  G->L = (int)cfg->model_n_layer;
  G->NH = (int)cfg->model_n_head;
  G->C = (int)cfg->model_n_embd;
  G->V = (int)cfg->model_vocab_size;
  G->maxT = (int)cfg->model_block_size;
  m->tp_n = tp_n;
  m->tp_r = tp_r;
  m->pp_n = pp_n;
  m->pp_r = pp_r;
  dt_gpt_stage_blocks(cfg, pp_n, pp_r, &G->l0, &G->nl);
  G->first = pp_r == 0;
  G->last = pp_r == pp_n - 1;
  m->nslots = pp_n > 1 ? part->nslots : 1;
  G->head_slot = -1;
  G->NHl = G->NH / tp_n;
  G->Cl = G->C / tp_n;
  G->Fl = 4 * G->C / tp_n;
  m->family = "gpt";
  m->be = be;
  m->num_classes = G->V;
  m->max_batch = max_batch;
  m->max_t = (int)(cfg->train_seq_len ? cfg->train_seq_len : cfg->model_block_size);
  build_table(G);
  m->g = be->alloc(be, m->nparams_total * sizeof(float));
  be->memset0(be, m->g, m->nparams_total * sizeof(float));

  const size_t BT = (size_t)max_batch * (size_t)m->max_t, C = (size_t)G->C, Cl = (size_t)G->Cl,
               Fl = (size_t)G->Fl;
  /* sp: the residual stream and the LayerNorms keep this rank's rows only */
  G->sp = tp_n > 1 && cfg->parallel_sequence_parallel;
  const size_t Rs = G->sp ? BT / (size_t)tp_n : BT;
  G->recompute = recompute_mode(cfg->train_recompute);
  G->dropout = (float)cfg->model_dropout;
  G->at = strcmp(cfg->train_precision, "bf16") ? DT_F32 : DT_BF16;
  /* a micro-batch between its forward and backward keeps its slot's
   * residual stream and block activations (one shared set under recompute =
   * block, whose backward replays each block from the residual stream) */
  G->nacts = G->recompute == RC_BLOCK ? 1 : m->nslots * G->nl;
  G->acts = dt_calloc((size_t)G->nacts, sizeof *G->acts);
  G->res = dt_calloc((size_t)m->nslots * (G->nl + 1), sizeof *G->res);
  for (int l = 0; l < m->nslots * (G->nl + 1); l++) G->res[l] = act_alloc(m, Rs * C);
  for (int l = 0; l < G->nacts; l++) {
    gpt_block_acts *a = &G->acts[l];
    a->ln1 = act_alloc_t(m, Rs * C, G->at);
    a->ln1_mean = act_alloc(m, Rs);
    a->ln1_rstd = act_alloc(m, Rs);
    a->qkv = act_alloc_t(m, BT * 3 * Cl, G->at);
    a->atty = act_alloc_t(m, BT * Cl, G->at);
    a->lse = act_alloc(m, BT * (size_t)G->NHl);
    a->mid = act_alloc(m, Rs * C);
    a->ln2 = act_alloc_t(m, Rs * C, G->at);
    a->ln2_mean = act_alloc(m, Rs);
    a->ln2_rstd = act_alloc(m, Rs);
    if (G->recompute == RC_NONE) {
      a->fch = act_alloc_t(m, BT * Fl, G->at);
      a->fch_gelu = act_alloc_t(m, BT * Fl, G->at);
    }
  }
  if (G->recompute != RC_NONE) {
    G->hpre = act_alloc_t(m, BT * Fl, G->at);
    G->hbuf = act_alloc_t(m, BT * Fl, G->at);
  }
  if (G->dropout > 0.0f) G->dbranch = act_alloc(m, Rs * C);
  G->chunk = (int)dt_classifier_chunk(cfg, BT); /* checked to fit in check_config */
  G->ldv = (int)dt_logits_ld(cfg, G->V);
  if (G->last && tp_n > 1) { /* this part's logits, packed; their gradient overwrites them */
    G->logits = act_alloc_t(m, (size_t)G->chunk * G->Vl, G->at);
    G->vstats = act_alloc(m, (size_t)G->chunk * 3);
    G->vstats_all = act_alloc(m, (size_t)G->chunk * 3 * tp_n);
  } else if (G->last) {
    G->logits = act_alloc_t(m, (size_t)G->chunk * G->ldv, G->at);
    if (G->at == DT_F32) G->dlogits = act_alloc(m, (size_t)G->chunk * G->ldv);
  }
  if (G->last) {
    G->lnf = act_alloc_t(m, Rs * C, G->at);
    G->lnf_mean = act_alloc(m, Rs);
    G->lnf_rstd = act_alloc(m, Rs);
  }
  G->scratch = act_alloc(m, BT * C);
  G->dres = act_alloc(m, Rs * C);
  if (G->sp) {
    G->lng = act_alloc_t(m, BT * C, G->at);
    G->gfull = act_alloc(m, BT * C);
    G->sh = act_alloc(m, Rs * C);
    G->lngrad = act_alloc(m, 2 * C);
  }
  G->dqkv = act_alloc(m, BT * 3 * Cl);
  G->dfch = act_alloc_t(m, BT * Fl, G->at);
  size_t ws = G->first ? be->k->embedding_backward_workspace(be->ctx, max_batch, m->max_t, G->Vl)
                       : 0;
  G->emb_ws = ws ? be->alloc(be, ws) : NULL;
  m->activation_bytes += ws;

  m->init = gpt_init;
  m->forward_backward = gpt_forward_backward;
  m->stage_forward = gpt_stage_forward;
  m->stage_backward = gpt_stage_backward;
  m->stage_input = gpt_stage_input;
  m->stage_output = gpt_stage_output;
  m->stage_grad = G->dres;
  m->stage_width = G->sp ? G->C / tp_n : G->C; /* (n,t,C) split by rows under sp */
  m->destroy = gpt_destroy;
  m->impl = G;
  return m;
}
