// Host fields of AttentionArgs from the step's BatchPlan (what the split and prefill choices
// are planned from). Set seq_offsets first: it decides which tokens the split-K kernel gets.
#include <algorithm>

#include "backend/batch_plan.h"
#include "backend/cuda/kernels.h"

namespace mixserve::cuda {

void set_attention_plan_fields(AttentionArgs& a, const BatchPlan& plan) {
  a.num_seqs = plan.num_seqs();
  a.max_q_len = 0;
  a.max_context = 0;
  a.num_decode_tokens = 0;
  for (int s = 0; s < plan.num_seqs(); ++s) {
    const int q_len = plan.seq_offsets[s + 1] - plan.seq_offsets[s];
    if (q_len == 0) continue;
    a.max_q_len = std::max(a.max_q_len, q_len);
    // Only the split-K kernel's tokens matter for its split.
    if (a.seq_offsets != nullptr && q_len >= a.prefill_min_q) continue;
    a.num_decode_tokens += q_len;
    a.max_context = std::max(a.max_context, plan.positions[plan.seq_offsets[s + 1] - 1] + 1);
  }
}

}  // namespace mixserve::cuda
