/* table.cu: the CUDA kernel table. Every slot is filled; the order follows
 * dt_kernels in kernels.h (C++ designated initializers must keep it). The
 * declaration in kernels.h, seen first, gives this const object external
 * C linkage, so the C code links against it. */
#include "act.h"
#include "attention.h"
#include "conv.h"
#include "dropout.h"
#include "embedding.h"
#include "kernels.h"
#include "matmul.h"
#include "norm.h"
#include "optimizer.h"
#include "pool.h"
#include "reduce.h"
#include "xent.h"

extern "C" const dt_kernels dt_cuda_kernels = {
    .linear_forward = dt_cuda_linear_forward,
    .linear_backward = dt_cuda_linear_backward,
    .linear_act_forward = dt_cuda_linear_act_forward,
    .linear_backward_act = dt_cuda_linear_backward_act,
    .lm_head_forward = dt_cuda_lm_head_forward,
    .lm_head_backward = dt_cuda_lm_head_backward,
    .conv2d_workspace = dt_cuda_conv2d_workspace,
    .conv2d_forward = dt_cuda_conv2d_forward,
    .conv2d_backward = dt_cuda_conv2d_backward,
    .maxpool2d_forward = dt_cuda_maxpool2d_forward,
    .maxpool2d_backward = dt_cuda_maxpool2d_backward,
    .avgpool2d_forward = dt_cuda_avgpool2d_forward,
    .avgpool2d_backward = dt_cuda_avgpool2d_backward,
    .act_forward = dt_cuda_act_forward,
    .act_backward = dt_cuda_act_backward,
    .softmax_xent = dt_cuda_softmax_xent,
    .softmax_xent_smooth = dt_cuda_softmax_xent_smooth,
    .softmax_xent_part_stats = dt_cuda_softmax_xent_part_stats,
    .softmax_xent_part = dt_cuda_softmax_xent_part,
    .sgd_step = dt_cuda_sgd_step,
    .adam_step = dt_cuda_adam_step,
    .sumsq = dt_cuda_sumsq,
    .scale = dt_cuda_scale,
    .axpy = dt_cuda_axpy,
    .to_bf16 = dt_cuda_to_bf16,
    .from_bf16 = dt_cuda_from_bf16,
    .gather_u8_normalize = dt_cuda_gather_u8_normalize,
    .layernorm_forward = dt_cuda_layernorm_forward,
    .layernorm_backward = dt_cuda_layernorm_backward,
    .residual_layernorm_forward = dt_cuda_residual_layernorm_forward,
    .attention_forward = dt_cuda_attention_forward,
    .attention_backward = dt_cuda_attention_backward,
    .embedding_forward = dt_cuda_embedding_forward,
    .embedding_backward_workspace = dt_cuda_embedding_backward_workspace,
    .embedding_backward = dt_cuda_embedding_backward,
    .embedding_forward_part = dt_cuda_embedding_forward_part,
    .embedding_backward_part = dt_cuda_embedding_backward_part,
    .dropout_forward = dt_cuda_dropout_forward,
    .dropout_backward = dt_cuda_dropout_backward,
    .dropout_rows = dt_cuda_dropout_rows,
};

/* A slot added to dt_kernels without an initializer here would be NULL;
 * keep the count in step. */
static_assert(DT_KERNELS_SLOTS == 40, "dt_kernels changed: fill the new slots in table.cu");
