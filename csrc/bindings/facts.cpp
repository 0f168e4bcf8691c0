// What this library serves, as JSON, for aot_loss/ops/native.py (read through ctypes when the
// library loads): the cost names in id order, the floating types of the kernels and their
// size limits. Python copies none of these: it routes whatever the table lacks to torch.
// "tiers" are the sizes at which the CPU kernel changes algorithm, for the tests to cross.
// The devices are not listed here: the dispatcher knows which keys got kernels.
#include <string>

#include "bindings/binding_utils.h"
#include "common/costs.h"
#include "common/limits.h"
#include "common/sort.h"
#include "cpu/chunks.h"

namespace {

namespace k = aot_loss::kernels;

std::string facts_json() {
  std::string costs;
#define AOT_LOSS_COST_JSON(name, Functor) costs += std::string(costs.empty() ? "\"" : ", \"") + name + "\"";
  AOT_LOSS_COSTS(AOT_LOSS_COST_JSON)
#undef AOT_LOSS_COST_JSON
  return "{\"costs\": [" + costs + "], \"dtypes\": [" + aot_loss::binding::kKernelFloatNames +
         "], \"limits\": {\"max_row\": " + std::to_string(k::kMaxRow) +
         ", \"cuda_block_row\": " + std::to_string(k::kBlockMaxRow) +
         ", \"cuda_max_long_rows\": " + std::to_string(k::kMaxLongRows) +
         "}, \"tiers\": {\"rank_sort_max\": " + std::to_string(k::kRankSortMax) +
         ", \"wide_radix_min\": " + std::to_string(k::kWideRadixMin) + ", \"chunk\": " + std::to_string(k::kChunk) +
         "}}";
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const char* aot_loss_native_facts() {
  static const std::string facts = facts_json();
  return facts.c_str();
}
