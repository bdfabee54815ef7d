// Statements with scopes and control flow: for loops, set, and macros.
#include <algorithm>
#include <memory>

#include "tokenizer/jinja/control.h"
#include "tokenizer/jinja/interpreter.h"
#include "util/error.h"

namespace mixserve::jinja {
namespace {

bool is_special_macro_argument(const std::string& name) {
  return name == "kwargs" || name == "varargs";
}

// Which of kwargs/varargs a macro body reads (then it accepts extra arguments).
void find_special_arguments(const Node* n, std::vector<std::string>* found) {
  if (!n) return;
  if (n->kind == NodeKind::kIdentifier && is_special_macro_argument(n->str)) {
    found->push_back(n->str);
    return;
  }
  find_special_arguments(n->a.get(), found);
  if (!(n->kind == NodeKind::kMember && !n->flag)) find_special_arguments(n->b.get(), found);
  find_special_arguments(n->c.get(), found);
  for (const auto* v : {&n->list, &n->body, &n->alt}) {
    for (const auto& x : *v) find_special_arguments(x.get(), found);
  }
  for (const auto& [k, v] : n->pairs) {
    find_special_arguments(k.get(), found);
    find_special_arguments(v.get(), found);
  }
}

}  // namespace

Value Interpreter::eval_for(const Node& n, Env& env) {
  Env scope(&env);
  Value iterable = eval(*n.b, scope);
  if (iterable.kind != Kind::kArray && iterable.kind != Kind::kObject) {
    throw_error("Expected iterable or object type in for loop: got ", type_name(iterable));
  }
  if (iterable.kind == Kind::kObject) {
    Array keys;
    for (const auto& [k, _] : iterable.obj->entries()) keys.push_back(Value::string(k));
    iterable = Value::array(std::move(keys));
  }
  const Node& var = *n.a;
  auto bind = [&](Env& target, const Value& item) {
    if (var.kind == NodeKind::kIdentifier) {
      target.vars[var.str] = item;
      return;
    }
    for (size_t j = 0; j < var.list.size(); ++j) {
      if (var.list[j]->kind != NodeKind::kIdentifier) {
        throw_error("Cannot unpack non-identifier type in a for loop");
      }
      target.vars[var.list[j]->str] = (*item.arr)[j];
    }
  };
  Array items;
  const Array source = *iterable.arr;  // the body may not change what we iterate
  for (const Value& item : source) {
    charge(1);
    if (var.kind == NodeKind::kTuple) {
      if (item.kind != Kind::kArray || item.is_tuple) {
        throw_error("Cannot unpack non-iterable type: ", type_name(item));
      }
      if (item.arr->size() != var.list.size()) {
        throw_error("Too ", var.list.size() > item.arr->size() ? "few" : "many",
                    " items to unpack");
      }
    }
    if (n.c) {
      Env loop_scope(&scope);
      bind(loop_scope, item);
      if (!truthy(eval(*n.c, loop_scope))) continue;
    }
    items.push_back(item);
  }
  std::string result;
  bool no_iteration = true;
  const double count = static_cast<double>(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    charge(1);
    const double di = static_cast<double>(i);
    auto loop = std::make_shared<Object>();
    loop->set("index", Value::integer(di + 1));
    loop->set("index0", Value::integer(di));
    loop->set("revindex", Value::integer(count - di));
    loop->set("revindex0", Value::integer(count - di - 1));
    loop->set("first", Value::boolean(i == 0));
    loop->set("last", Value::boolean(i + 1 == items.size()));
    loop->set("length", Value::integer(count));
    loop->set("previtem", i > 0 ? items[i - 1] : Value::undefined());
    loop->set("nextitem", i + 1 < items.size() ? items[i + 1] : Value::undefined());
    scope.vars["loop"] = Value::object(loop);
    bind(scope, items[i]);
    try {
      result += eval_block(n.body, scope);
      check_size(result.size());
    } catch (const ContinueSignal&) {
      continue;
    } catch (const BreakSignal&) {
      break;
    }
    no_iteration = false;
  }
  if (no_iteration) {
    result += eval_block(n.alt, scope);
    check_size(result.size());
  }
  return Value::string(std::move(result));
}

Value Interpreter::eval_set(const Node& n, Env& env) {
  const Value rhs = n.b ? eval(*n.b, env) : Value::string(eval_block(n.body, env));
  const Node& target = *n.a;
  if (target.kind == NodeKind::kIdentifier) {
    env.vars[target.str] = rhs;
  } else if (target.kind == NodeKind::kTuple) {
    if (rhs.kind != Kind::kArray) {
      throw_error("Cannot unpack non-iterable type in set: ", type_name(rhs));
    }
    if (rhs.arr->size() != target.list.size()) {
      throw_error("Too ", target.list.size() > rhs.arr->size() ? "few" : "many",
                  " items to unpack in set");
    }
    for (size_t i = 0; i < target.list.size(); ++i) {
      if (target.list[i]->kind != NodeKind::kIdentifier) {
        throw_error("Cannot unpack to non-identifier in set");
      }
      env.vars[target.list[i]->str] = (*rhs.arr)[i];
    }
  } else if (target.kind == NodeKind::kMember) {
    const Value object = eval(*target.a, env);
    if (object.kind != Kind::kNamespace) {
      throw_error("cannot assign attribute on non-namespace object");
    }
    if (target.flag || target.b->kind != NodeKind::kIdentifier) {
      throw_error("Cannot assign to member with non-identifier property");
    }
    object.obj->set(target.b->str, rhs);
  } else {
    throw_error("invalid target of {% set %}");
  }
  return Value::null();
}

Value Interpreter::eval_macro(const Node& n, Env& env) {
  std::vector<std::string> special;
  for (const auto& p : n.list) {
    if (p->kind == NodeKind::kKeywordArg) find_special_arguments(p->a.get(), &special);
  }
  for (const auto& st : n.body) find_special_arguments(st.get(), &special);
  std::vector<std::string> params;
  for (const auto& p : n.list) params.push_back(p->str);
  const bool wants_kwargs =
      std::count(special.begin(), special.end(), "kwargs") > 0 &&
      std::count(params.begin(), params.end(), "kwargs") == 0;
  const bool wants_varargs =
      std::count(special.begin(), special.end(), "varargs") > 0 &&
      std::count(params.begin(), params.end(), "varargs") == 0;
  const Node* macro = &n;
  env.vars[n.str] = Value::function([this, macro, wants_kwargs, wants_varargs](
                                        std::vector<Value>& args, Env& call_env) {
    charge(1);
    if (macro_depth_ >= limits_.max_recursion_depth) {
      throw_error("macro calls nest deeper than the limit of ", limits_.max_recursion_depth);
    }
    struct Depth {
      explicit Depth(int* d) : d(d) { ++*d; }
      ~Depth() { --*d; }
      int* d;
    } depth(&macro_depth_);
    Env scope(&call_env);
    std::vector<Value> positional = args;
    auto kwargs = std::make_shared<Object>();
    if (!positional.empty() && positional.back().is_kwargs) {
      for (const auto& [k, v] : positional.back().obj->entries()) kwargs->set(k, v);
      positional.pop_back();
    }
    std::vector<const Node*> pending_defaults;
    for (size_t i = 0; i < macro->list.size(); ++i) {
      const Node& p = *macro->list[i];
      Value v;
      bool have = i < positional.size();
      if (have) v = positional[i];
      if (!have) {
        if (const Value* k = kwargs->find(p.str)) {
          v = *k;
          have = true;
          kwargs->erase(p.str);
        }
      }
      if (!have && p.kind == NodeKind::kKeywordArg) pending_defaults.push_back(&p);
      scope.vars[p.str] = v;
    }
    if (wants_kwargs) {
      scope.vars["kwargs"] = Value::object(kwargs);
    } else if (kwargs->size() > 0) {
      throw_error("macro '", macro->str, "' takes no keyword argument '",
                  kwargs->entries().front().first, "'");
    }
    if (wants_varargs) {
      Array rest;
      for (size_t i = macro->list.size(); i < positional.size(); ++i) rest.push_back(positional[i]);
      scope.vars["varargs"] = Value::array(std::move(rest));
    } else if (positional.size() > macro->list.size()) {
      throw_error("macro '", macro->str, "' takes not more than ", macro->list.size(),
                  " argument(s)");
    }
    for (const Node* p : pending_defaults) scope.vars[p->str] = eval(*p->a, scope);
    return Value::string(eval_block(macro->body, scope));
  });
  return Value::null();
}

}  // namespace mixserve::jinja
