// Expert -> group assignment of the grouped MoE layouts (moe_padded.h, moe_padded_fp8.h).
#pragma once

#include <cstdint>

namespace mixserve::cuda {

// One thread: group g < (experts with rows) is the g-th such expert; the other groups have no
// rows and reuse group 0's expert.  counts, expert_group: [E]; group_expert, group_count: [G]
__device__ inline void assign_moe_groups(const int32_t* counts, int E, int G, int32_t* group_expert,
                                         int32_t* group_count, int32_t* expert_group) {
  int g = 0;
  for (int e = 0; e < E; ++e) {
    expert_group[e] = -1;
    if (counts[e] > 0 && g < G) {
      group_expert[g] = e;
      group_count[g] = counts[e];
      expert_group[e] = g++;
    }
  }
  const int first = g > 0 ? group_expert[0] : 0;
  for (; g < G; ++g) {
    group_expert[g] = first;
    group_count[g] = 0;
  }
}

// As assign_moe_groups, but group g is the expert with the g-th largest count (ties: the
// lower expert first), the order plan_counted_layout (moe_padded_fp8.h) cuts into tiers.
__device__ inline void assign_moe_groups_by_count(const int32_t* counts, int E, int G,
                                                  int32_t* group_expert, int32_t* group_count,
                                                  int32_t* expert_group) {
  for (int e = 0; e < E; ++e) expert_group[e] = -1;
  int g = 0;
  for (; g < G; ++g) {
    int best = -1, most = 0;
    for (int e = 0; e < E; ++e) {
      const int32_t n = counts[e];
      if (n > most && expert_group[e] < 0) {
        best = e;
        most = n;
      }
    }
    if (best < 0) break;
    group_expert[g] = best;
    group_count[g] = most;
    expert_group[best] = g;
  }
  const int first = g > 0 ? group_expert[0] : 0;
  for (; g < G; ++g) {
    group_expert[g] = first;
    group_count[g] = 0;
  }
}

}  // namespace mixserve::cuda
