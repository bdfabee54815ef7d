// Evaluates a parsed template with the semantics of @huggingface/jinja's Interpreter, inside
// fixed bounds: output size, total loop iterations and macro calls, and evaluation depth.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/value.h"

namespace mixserve::jinja {

struct Limits {
  size_t max_output_bytes = 1 << 20;        // also the largest string a template may build
  uint64_t max_loop_iterations = 1000000;   // for-loop iterations + range() items + macro calls
                                            // + items copied by list concatenation, in total
  int max_recursion_depth = 64;             // nested macro calls
  int max_eval_depth = 512;                 // nested expression/statement evaluation
};

// A scope. Lookups walk to the parent; `set` writes the innermost scope (Jinja scoping: a
// for-loop body cannot rebind outer names, which is why templates use namespace()).
struct Env {
  explicit Env(Env* parent_env) : parent(parent_env) {}
  Env* parent;
  std::unordered_map<std::string, Value> vars;
};

class Interpreter {
 public:
  Interpreter(std::string_view source, const Limits& limits);

  // Renders the program with `globals` as the outermost scope. Throws mixserve::Error.
  std::string render(const Node& program, Env& globals);

  // Installs true/false/none, range, namespace, raise_exception, strftime_now.
  void install_globals(Env& env);

  // --- used by the filter/builtin helpers ---
  Value eval(const Node& n, Env& env);
  void charge(uint64_t steps);          // counts against max_loop_iterations
  void check_size(size_t bytes) const;  // throws when a string would pass max_output_bytes
  void evaluate_arguments(const std::vector<NodePtr>& args, Env& env, std::vector<Value>* pos,
                          std::vector<std::pair<std::string, Value>>* kw);

 private:
  Value eval_inner(const Node& n, Env& env);
  Value lookup(const std::string& name, Env& env);
  std::string eval_block(const std::vector<NodePtr>& body, Env& env);
  Value eval_binary(const Node& n, Env& env);
  Value eval_unary(const Node& n, Env& env);
  Value eval_member(const Node& n, Env& env);
  Value eval_slice(const Value& object, const Node& slice, Env& env);
  Value eval_call(const Node& n, Env& env);
  Value eval_for(const Node& n, Env& env);
  Value eval_set(const Node& n, Env& env);
  Value eval_macro(const Node& n, Env& env);
  Value eval_test(const Node& n, Env& env);

  std::string_view source_;
  Limits limits_;
  uint64_t steps_ = 0;
  int depth_ = 0;
  int macro_depth_ = 0;
  Value namespace_fn_;
};

// Filters and tests (filters.cpp), attribute builtins of strings and objects (builtins.cpp).
Value apply_filter(Interpreter& in, const Value& operand, const Node& filter, Env& env);
bool run_test(const std::string& name, const Value& operand, const std::vector<Value>& args);
bool has_test(const std::string& name);
// The builtin attribute `name` of `v` (a bound method or a value such as "length"), or
// undefined when there is none.
Value builtin_attribute(Interpreter& in, const Value& v, const std::string& name);
// Sort order of the reference's compareRuntimeValues (-1, 0, 1).
int compare_values(const Value& a, const Value& b, bool case_sensitive);
// item.a.b... for sort(attribute=) and map(attribute=).
Value attribute_path(const Value& item, const std::string& path);

}  // namespace mixserve::jinja
