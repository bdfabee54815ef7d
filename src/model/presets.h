// Named model shapes: tiny ones for tests and the real Mixtral / Mistral shapes for synthetic
// benchmarks (`--model synthetic:mixtral-8x7b?layers=8`).
#pragma once

#include <string>
#include <vector>

#include "model/config.h"

namespace mixserve {

// The preset names, in a stable order (for help texts and error messages).
std::vector<std::string> preset_names();

// The config of a named preset; throws mixserve::Error listing the valid names.
ModelConfig preset_config(const std::string& name);

// "PRESET" or "PRESET?key=value&key=value" (the text after "synthetic:"). Keys: layers, experts,
// top_k, hidden, heads, kv_heads, head_dim, intermediate, vocab, max_pos. The result is
// validated like a config.json; unknown presets or keys throw, listing the valid ones.
ModelConfig preset_from_spec(const std::string& spec);

}  // namespace mixserve
