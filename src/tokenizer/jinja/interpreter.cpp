#include "tokenizer/jinja/interpreter.h"

#include "tokenizer/jinja/control.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <functional>
#include <optional>

#include "tokenizer/jinja/js_text.h"
#include "tokenizer/jinja/lexer.h"
#include "util/error.h"

namespace mixserve::jinja {
namespace {

// An error that already names its position; outer frames pass it through unchanged.
class PositionedError : public Error {
 public:
  using Error::Error;
};

const char* kMonthsLong[] = {"January", "February", "March", "April", "May", "June", "July",
                             "August", "September", "October", "November", "December"};
const char* kMonthsShort[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

std::string strftime_now(const std::string& format) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  auto pad2 = [](int v) { return (v < 10 ? "0" : "") + std::to_string(v); };
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%' || i + 1 >= format.size()) {
      out += format[i];
      continue;
    }
    const char c = format[i + 1];
    switch (c) {
      case 'Y': out += std::to_string(tm.tm_year + 1900); break;
      case 'm': out += pad2(tm.tm_mon + 1); break;
      case 'd': out += pad2(tm.tm_mday); break;
      case 'b': out += kMonthsShort[tm.tm_mon]; break;
      case 'B': out += kMonthsLong[tm.tm_mon]; break;
      case 'H': out += pad2(tm.tm_hour); break;
      case 'M': out += pad2(tm.tm_min); break;
      case '%': out += '%'; break;
      default: out += '%'; out += c; break;
    }
    ++i;
  }
  return out;
}

// JS Array.prototype.join semantics for the raw values of raise_exception's arguments.
std::string join_raw(const std::vector<Value>& args) {
  std::string out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (i) out += ',';
    if (args[i].kind != Kind::kUndefined && args[i].kind != Kind::kNull) {
      out += raw_to_string(args[i]);
    }
  }
  return out;
}

}  // namespace

Interpreter::Interpreter(std::string_view source, const Limits& limits)
    : source_(source), limits_(limits) {
  namespace_fn_ = Value::function([](std::vector<Value>& args, Env&) {
    std::vector<Value> positional = args;
    Value kwargs;
    if (!positional.empty() && positional.back().is_kwargs) {
      kwargs = positional.back();
      positional.pop_back();
    }
    if (positional.size() > 1) {
      throw_error("namespace expected at most 1 argument, got ", positional.size());
    }
    auto entries = std::make_shared<Object>();
    if (positional.size() == 1) {
      const Value& source = positional[0];
      if (source.kind == Kind::kObject) {
        for (const auto& [k, v] : source.obj->entries()) entries->set(k, v);
      } else if (source.kind == Kind::kArray) {
        for (const Value& pair : *source.arr) {
          std::vector<Value> kv;
          if (pair.kind == Kind::kArray) kv = *pair.arr;
          else if (pair.kind == Kind::kString) {
            for (char32_t cp : utf8_decode(pair.str)) {
              std::string ch;
              utf8_append(ch, cp);
              kv.push_back(Value::string(ch));
            }
          }
          if (kv.size() != 2) {
            throw_error("namespace expected an object or an iterable of [key, value] pairs");
          }
          if (kv[0].kind != Kind::kString) throw_error("namespace keys must be strings");
          entries->set(kv[0].str, kv[1]);
        }
      } else {
        throw_error("'", type_name(source), "' object is not iterable");
      }
    }
    if (kwargs.obj) for (const auto& [k, v] : kwargs.obj->entries()) entries->set(k, v);
    return Value::ns(entries);
  });
}

void Interpreter::install_globals(Env& env) {
  env.vars["false"] = Value::boolean(false);
  env.vars["true"] = Value::boolean(true);
  env.vars["none"] = Value::null();
  env.vars["False"] = Value::boolean(false);
  env.vars["True"] = Value::boolean(true);
  env.vars["None"] = Value::null();
  env.vars["raise_exception"] = Value::function([](std::vector<Value>& args, Env&) -> Value {
    throw Error(join_raw(args));
  });
  env.vars["range"] = Value::function([this](std::vector<Value>& args, Env&) {
    std::vector<double> n;
    for (const Value& a : args) {
      if (a.is_kwargs) continue;
      if (!a.is_number()) throw_error("range() arguments must be numbers, got ", type_name(a));
      n.push_back(a.num);
    }
    if (n.empty() || n.size() > 3) throw_error("range() takes 1 to 3 arguments");
    double start = 0, stop = n[0], step = 1;
    if (n.size() >= 2) start = n[0], stop = n[1];
    if (n.size() == 3) step = n[2];
    if (step == 0) throw_error("range() step must not be zero");
    Array out;
    for (double i = start; step > 0 ? i < stop : i > stop; i += step) {
      charge(1);
      out.push_back(std::floor(i) == i ? Value::integer(i) : Value::floating(i));
    }
    return Value::array(std::move(out));
  });
  env.vars["strftime_now"] = Value::function([](std::vector<Value>& args, Env&) {
    if (args.empty() || args[0].kind != Kind::kString) {
      throw_error("strftime_now() takes a format string");
    }
    return Value::string(strftime_now(args[0].str));
  });
}

void Interpreter::charge(uint64_t steps) {
  steps_ += steps;
  if (steps_ > limits_.max_loop_iterations) {
    throw_error("template exceeded the limit of ", limits_.max_loop_iterations,
                " loop iterations (hostile or runaway template?)");
  }
}

void Interpreter::check_size(size_t bytes) const {
  if (bytes > limits_.max_output_bytes) {
    throw_error("template output or a string it builds exceeds the limit of ",
                limits_.max_output_bytes, " bytes");
  }
}

std::string Interpreter::render(const Node& program, Env& globals) {
  try {
    return eval_block(program.body, globals);
  } catch (const BreakSignal&) {
    throw Error("chat template error: {% break %} outside a loop");
  } catch (const ContinueSignal&) {
    throw Error("chat template error: {% continue %} outside a loop");
  }
}

Value Interpreter::eval(const Node& n, Env& env) {
  struct Depth {
    explicit Depth(int* d) : d(d) { ++*d; }
    ~Depth() { --*d; }
    int* d;
  } depth(&depth_);
  try {
    if (depth_ > limits_.max_eval_depth) {
      throw_error("template evaluation nests deeper than the limit of ", limits_.max_eval_depth);
    }
    return eval_inner(n, env);
  } catch (const PositionedError&) {
    throw;
  } catch (const Error& e) {
    throw PositionedError("chat template error at " + describe_position(source_, n.offset) +
                          ": " + e.what());
  }
}

std::string Interpreter::eval_block(const std::vector<NodePtr>& body, Env& env) {
  std::string out;
  for (const auto& st : body) {
    const Value v = eval(*st, env);
    if (v.kind == Kind::kNull || v.kind == Kind::kUndefined) continue;
    if (v.kind == Kind::kString) out += v.str;
    else out += to_display_string(v);
    check_size(out.size());
  }
  return out;
}

Value Interpreter::lookup(const std::string& name, Env& env) {
  // Every scope of the reference holds its own `namespace`, so the innermost one wins.
  if (name == "namespace") {
    auto it = env.vars.find(name);
    return it == env.vars.end() ? namespace_fn_ : it->second;
  }
  for (Env* e = &env; e; e = e->parent) {
    auto it = e->vars.find(name);
    if (it != e->vars.end()) return it->second;
  }
  return Value::undefined();
}

Value Interpreter::eval_inner(const Node& n, Env& env) {
  switch (n.kind) {
    case NodeKind::kProgram: return Value::string(eval_block(n.body, env));
    case NodeKind::kText:
    case NodeKind::kString: return Value::string(n.str);
    case NodeKind::kIf:
      return Value::string(eval_block(truthy(eval(*n.a, env)) ? n.body : n.alt, env));
    case NodeKind::kFor: return eval_for(n, env);
    case NodeKind::kSet: return eval_set(n, env);
    case NodeKind::kMacro: return eval_macro(n, env);
    case NodeKind::kBreak: throw BreakSignal{};
    case NodeKind::kContinue: throw ContinueSignal{};
    case NodeKind::kComment: return Value::null();
    case NodeKind::kInt: return Value::integer(n.num);
    case NodeKind::kFloat: return Value::floating(n.num);
    case NodeKind::kArray:
    case NodeKind::kTuple: {
      Array items;
      for (const auto& x : n.list) items.push_back(eval(*x, env));
      return n.kind == NodeKind::kArray ? Value::array(std::move(items))
                                        : Value::tuple(std::move(items));
    }
    case NodeKind::kObject: {
      Value out = Value::object();
      for (const auto& [k, v] : n.pairs) {
        const Value key = eval(*k, env);
        if (key.kind != Kind::kString) {
          throw_error("Object keys must be strings: got ", type_name(key));
        }
        out.obj->set(key.str, eval(*v, env));
      }
      return out;
    }
    case NodeKind::kIdentifier: return lookup(n.str, env);
    case NodeKind::kCall: return eval_call(n, env);
    case NodeKind::kMember: return eval_member(n, env);
    case NodeKind::kUnary: return eval_unary(n, env);
    case NodeKind::kBinary: return eval_binary(n, env);
    case NodeKind::kFilter: {
      const Value operand = eval(*n.a, env);
      return apply_filter(*this, operand, *n.b, env);
    }
    case NodeKind::kFilterBlock:
      return apply_filter(*this, Value::string(eval_block(n.body, env)), *n.a, env);
    case NodeKind::kTest: return eval_test(n, env);
    case NodeKind::kSelect:
      return truthy(eval(*n.b, env)) ? eval(*n.a, env) : Value::undefined();
    case NodeKind::kTernary: return truthy(eval(*n.a, env)) ? eval(*n.b, env) : eval(*n.c, env);
    case NodeKind::kSlice:
    case NodeKind::kKeywordArg:
    case NodeKind::kSpread:
    case NodeKind::kKeywordSpread: break;
  }
  throw_error("this expression is only allowed inside brackets or an argument list");
}

void Interpreter::evaluate_arguments(const std::vector<NodePtr>& args, Env& env,
                                     std::vector<Value>* pos,
                                     std::vector<std::pair<std::string, Value>>* kw) {
  for (const auto& a : args) {
    if (a->kind == NodeKind::kSpread) {
      const Value v = eval(*a->a, env);
      if (v.kind != Kind::kArray) throw_error("Cannot unpack non-iterable type: ", type_name(v));
      for (const Value& x : *v.arr) pos->push_back(x);
    } else if (a->kind != NodeKind::kKeywordArg && a->kind != NodeKind::kKeywordSpread) {
      pos->push_back(eval(*a, env));
    }
  }
  auto add = [&](const std::string& key, Value v) {
    for (const auto& [k, _] : *kw) {
      if (k == key) throw_error("Got multiple values for keyword argument '", key, "'");
    }
    kw->emplace_back(key, std::move(v));
  };
  for (const auto& a : args) {
    if (a->kind == NodeKind::kKeywordArg) {
      add(a->str, eval(*a->a, env));
    } else if (a->kind == NodeKind::kKeywordSpread) {
      const Value v = eval(*a->a, env);
      if (v.kind != Kind::kObject) {
        throw_error("Argument after ** must be a mapping, not ", type_name(v));
      }
      for (const auto& [k, x] : v.obj->entries()) add(k, x);
    }
  }
}

Value Interpreter::eval_call(const Node& n, Env& env) {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kw;
  evaluate_arguments(n.list, env, &args, &kw);
  if (!kw.empty()) {
    Value kwargs = Value::object();
    kwargs.is_kwargs = true;
    for (auto& [k, v] : kw) kwargs.obj->set(k, std::move(v));
    args.push_back(std::move(kwargs));
  }
  const Value fn = eval(*n.a, env);
  if (fn.kind != Kind::kFunction) {
    throw_error("Cannot call something that is not a function: got ", type_name(fn));
  }
  return (*fn.fn)(args, env);
}

Value Interpreter::eval_unary(const Node& n, Env& env) {
  const Value arg = eval(*n.a, env);
  if (n.str == "not") return Value::boolean(!truthy(arg));
  const double sign = n.str == "-" ? -1 : 1;
  if (arg.is_number() || arg.kind == Kind::kBool) {
    const double v = sign * (arg.kind == Kind::kBool ? (arg.b ? 1 : 0) : arg.num);
    return arg.kind == Kind::kFloat ? Value::floating(v) : Value::integer(v);
  }
  throw_error("Unknown operator \"", n.str, "\" for ", type_name(arg));
}

Value Interpreter::eval_binary(const Node& n, Env& env) {
  const std::string& op = n.str;
  const Value left = eval(*n.a, env);
  if (op == "and") return truthy(left) ? eval(*n.b, env) : left;
  if (op == "or") return truthy(left) ? left : eval(*n.b, env);
  const Value right = eval(*n.b, env);
  if (op == "==") return Value::boolean(loose_equals(left, right));
  if (op == "!=") return Value::boolean(!loose_equals(left, right));
  if (left.kind == Kind::kUndefined || right.kind == Kind::kUndefined) {
    if (right.kind == Kind::kUndefined && (op == "in" || op == "not in")) {
      return Value::boolean(op == "not in");
    }
    throw_error("Cannot perform operation ", op, " on undefined values");
  }
  if (left.kind == Kind::kNull || right.kind == Kind::kNull) {
    throw_error("Cannot perform operation on null values");
  }
  auto concat = [&](const Value& a, const Value& b) {
    std::string s = raw_to_string(a);
    const std::string t = raw_to_string(b);
    check_size(s.size() + t.size());
    return Value::string(s + t);
  };
  if (op == "~") return concat(left, right);
  const bool left_numeric = left.is_number() || left.kind == Kind::kBool;
  const bool right_numeric = right.is_number() || right.kind == Kind::kBool;
  if (op == "**" && left_numeric && right_numeric) {
    const double a = left.kind == Kind::kBool ? left.b : left.num;
    const double b = right.kind == Kind::kBool ? right.b : right.num;
    if (a == 0 && b < 0) throw_error("0.0 cannot be raised to a negative power");
    const double r = std::pow(a, b);
    if (!std::isfinite(r)) throw_error("Exponentiation result is not a finite real number");
    const bool is_float = left.kind == Kind::kFloat || right.kind == Kind::kFloat || b < 0;
    return is_float ? Value::floating(r) : Value::integer(r);
  }
  if (left.is_number() && right.is_number()) {
    const double a = left.num, b = right.num;
    const bool is_float = left.kind == Kind::kFloat || right.kind == Kind::kFloat;
    auto num = [&](double r) { return is_float ? Value::floating(r) : Value::integer(r); };
    if (op == "+") return num(a + b);
    if (op == "-") return num(a - b);
    if (op == "*") return num(a * b);
    if (op == "/") return Value::floating(a / b);
    if (op == "//") return num(std::floor(a / b));
    if (op == "%") return num(std::fmod(a, b));
    if (op == "<") return Value::boolean(a < b);
    if (op == ">") return Value::boolean(a > b);
    if (op == ">=") return Value::boolean(a >= b);
    if (op == "<=") return Value::boolean(a <= b);
  } else if (left.kind == Kind::kArray && right.kind == Kind::kArray) {
    if (op == "+") {
      charge(left.arr->size() + right.arr->size());
      Array out = *left.arr;
      out.insert(out.end(), right.arr->begin(), right.arr->end());
      return Value::array(std::move(out));
    }
  } else if (right.kind == Kind::kArray && (op == "in" || op == "not in")) {
    bool member = false;
    for (const Value& x : *right.arr) {
      if (strict_equals(x, left)) {
        member = true;
        break;
      }
    }
    return Value::boolean(op == "in" ? member : !member);
  }
  if ((left.kind == Kind::kString || right.kind == Kind::kString) && op == "+") {
    return concat(left, right);
  }
  if (left.kind == Kind::kString && right.kind == Kind::kString) {
    if (op == "in") return Value::boolean(right.str.find(left.str) != std::string::npos);
    if (op == "not in") return Value::boolean(right.str.find(left.str) == std::string::npos);
  }
  if (left.kind == Kind::kString && right.kind == Kind::kObject) {
    if (op == "in") return Value::boolean(right.obj->find(left.str) != nullptr);
    if (op == "not in") return Value::boolean(right.obj->find(left.str) == nullptr);
  }
  throw_error("Unknown operator \"", op, "\" between ", type_name(left), " and ",
              type_name(right));
}

Value Interpreter::eval_slice(const Value& object, const Node& slice, Env& env) {
  if (object.kind != Kind::kArray && object.kind != Kind::kString) {
    throw_error("Slice object must be an array or string");
  }
  auto part = [&](const NodePtr& p, const char* what) -> std::optional<double> {
    if (!p) return std::nullopt;
    const Value v = eval(*p, env);
    if (v.kind == Kind::kUndefined) return std::nullopt;
    if (v.kind != Kind::kInt) throw_error("Slice ", what, " must be numeric or undefined");
    return v.num;
  };
  const auto start_v = part(slice.a, "start");
  const auto stop_v = part(slice.b, "stop");
  const auto step_v = part(slice.c, "step");
  std::vector<char32_t> cps;
  if (object.kind == Kind::kString) cps = utf8_decode(object.str);
  const double len = object.kind == Kind::kArray ? static_cast<double>(object.arr->size())
                                                 : static_cast<double>(cps.size());
  const double step = step_v.value_or(1);
  const double dir = step > 0 ? 1 : step < 0 ? -1 : 0;
  double start, stop;
  if (dir >= 0) {
    start = start_v.value_or(0);
    start = start < 0 ? std::max(len + start, 0.0) : std::min(start, len);
    stop = stop_v.value_or(len);
    stop = stop < 0 ? std::max(len + stop, 0.0) : std::min(stop, len);
  } else {
    start = start_v.value_or(len - 1);
    start = start < 0 ? std::max(len + start, -1.0) : std::min(start, len - 1);
    stop = stop_v.value_or(-1);
    stop = stop < -1 ? std::max(len + stop, -1.0) : std::min(stop, len - 1);
  }
  Array items;
  std::string text;
  for (double i = start; dir * i < dir * stop; i += step) {
    const auto idx = static_cast<size_t>(i);
    if (object.kind == Kind::kArray) items.push_back((*object.arr)[idx]);
    else utf8_append(text, cps[idx]);
  }
  if (object.kind == Kind::kArray) return Value::array(std::move(items));
  return Value::string(std::move(text));
}

Value Interpreter::eval_member(const Node& n, Env& env) {
  const Value object = eval(*n.a, env);
  Value property;
  if (n.flag) {
    if (n.b->kind == NodeKind::kSlice) return eval_slice(object, *n.b, env);
    property = eval(*n.b, env);
  } else if (n.b->kind == NodeKind::kInt) {
    property = Value::integer(n.b->num);
  } else {
    property = Value::string(n.b->str);
  }
  if (object.is_attribute_container()) {
    if (property.kind != Kind::kString) {
      throw_error("Cannot access property with non-string: got ", type_name(property));
    }
    if (const Value* v = object.obj->find(property.str)) return *v;
    if (object.kind == Kind::kObject) return builtin_attribute(*this, object, property.str);
    return Value::undefined();
  }
  if (object.kind == Kind::kArray || object.kind == Kind::kString) {
    if (property.kind == Kind::kInt) {
      if (object.kind == Kind::kString) {
        std::string ch;
        return utf16_at(object.str, property.num, &ch) ? Value::string(ch) : Value::undefined();
      }
      double i = std::isnan(property.num) ? 0 : std::trunc(property.num);
      const double size = static_cast<double>(object.arr->size());
      if (i < 0) i += size;
      if (i < 0 || i >= size) return Value::undefined();
      return (*object.arr)[static_cast<size_t>(i)];
    }
    if (property.kind == Kind::kString) return builtin_attribute(*this, object, property.str);
    throw_error("Cannot access property with non-string/non-number: got ", type_name(property));
  }
  if (property.kind != Kind::kString) {
    throw_error("Cannot access property with non-string: got ", type_name(property));
  }
  return builtin_attribute(*this, object, property.str);
}

Value Interpreter::eval_test(const Node& n, Env& env) {
  const Value operand = eval(*n.a, env);
  if (!has_test(n.str)) throw_error("Unknown test: ", n.str);
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kw;
  evaluate_arguments(n.list, env, &args, &kw);
  if (!kw.empty()) throw_error("test '", n.str, "' takes no keyword arguments");
  const bool r = run_test(n.str, operand, args);
  return Value::boolean(n.flag ? !r : r);
}

}  // namespace mixserve::jinja
