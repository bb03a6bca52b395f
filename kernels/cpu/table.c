/* table.c: the CPU kernel table, every slot filled with the fp32 reference. */
#include "../act.h"
#include "../attention.h"
#include "../conv.h"
#include "../dropout.h"
#include "../embedding.h"
#include "../matmul.h"
#include "../norm.h"
#include "../optimizer.h"
#include "../pool.h"
#include "../reduce.h"
#include "../xent.h"

const dt_kernels dt_cpu_kernels = {
    .linear_forward = dt_cpu_linear_forward,
    .linear_backward = dt_cpu_linear_backward,
    .linear_act_forward = dt_cpu_linear_act_forward,
    .linear_backward_act = dt_cpu_linear_backward_act,
    .lm_head_forward = dt_cpu_lm_head_forward,
    .lm_head_backward = dt_cpu_lm_head_backward,
    .conv2d_workspace = dt_cpu_conv2d_workspace,
    .conv2d_forward = dt_cpu_conv2d_forward,
    .conv2d_backward = dt_cpu_conv2d_backward,
    .maxpool2d_forward = dt_cpu_maxpool2d_forward,
    .maxpool2d_backward = dt_cpu_maxpool2d_backward,
    .avgpool2d_forward = dt_cpu_avgpool2d_forward,
    .avgpool2d_backward = dt_cpu_avgpool2d_backward,
    .act_forward = dt_cpu_act_forward,
    .act_backward = dt_cpu_act_backward,
    .softmax_xent = dt_cpu_softmax_xent,
    .softmax_xent_smooth = dt_cpu_softmax_xent_smooth,
    .softmax_xent_part_stats = dt_cpu_softmax_xent_part_stats,
    .softmax_xent_part = dt_cpu_softmax_xent_part,
    .sgd_step = dt_cpu_sgd_step,
    .adam_step = dt_cpu_adam_step,
    .sumsq = dt_cpu_sumsq,
    .scale = dt_cpu_scale,
    .axpy = dt_cpu_axpy,
    .to_bf16 = dt_cpu_to_bf16,
    .from_bf16 = dt_cpu_from_bf16,
    .gather_u8_normalize = dt_cpu_gather_u8_normalize,
    .layernorm_forward = dt_cpu_layernorm_forward,
    .layernorm_backward = dt_cpu_layernorm_backward,
    .residual_layernorm_forward = dt_cpu_residual_layernorm_forward,
    .attention_forward = dt_cpu_attention_forward,
    .attention_backward = dt_cpu_attention_backward,
    .embedding_forward = dt_cpu_embedding_forward,
    .embedding_backward_workspace = dt_cpu_embedding_backward_workspace,
    .embedding_backward = dt_cpu_embedding_backward,
    .embedding_forward_part = dt_cpu_embedding_forward_part,
    .embedding_backward_part = dt_cpu_embedding_backward_part,
    .dropout_forward = dt_cpu_dropout_forward,
    .dropout_backward = dt_cpu_dropout_backward,
    .dropout_rows = dt_cpu_dropout_rows,
};
