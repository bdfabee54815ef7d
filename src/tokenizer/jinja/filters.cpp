// Filters (`x | name`, `x | name(args)`) and tests (`x is name`), following the reference's
// applyFilter and its TESTS table, type by type.
#include <algorithm>
#include <cmath>
#include <set>

#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/js_text.h"
#include "util/error.h"

namespace mixserve::jinja {
namespace {

using Kwargs = std::vector<std::pair<std::string, Value>>;

const Value* kwarg(const Kwargs& kw, const char* name) {
  for (const auto& [k, v] : kw) if (k == name) return &v;
  return nullptr;
}

Value arg_or(const std::vector<Value>& args, size_t i, const Kwargs& kw, const char* name,
             Value def) {
  if (i < args.size()) return args[i];
  if (const Value* v = kwarg(kw, name)) return *v;
  return def;
}

// Array.prototype.join over raw values: undefined and null join as "".
std::string join_values(Interpreter& in, const Array& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    if (items[i].kind != Kind::kUndefined && items[i].kind != Kind::kNull) {
      out += raw_to_string(items[i]);
    }
    in.check_size(out.size());
  }
  return out;
}

std::string indent_lines(const std::string& s, int width, bool first, bool blank) {
  const std::string pad(static_cast<size_t>(std::max(width, 0)), ' ');
  std::string out;
  size_t from = 0, line = 0;
  while (true) {
    const size_t nl = s.find('\n', from);
    const std::string x = s.substr(from, nl == std::string::npos ? nl : nl - from);
    if (line > 0) out += '\n';
    if ((!first && line == 0) || (!blank && x.empty())) out += x;
    else out += pad + x;
    if (nl == std::string::npos) break;
    from = nl + 1;
    ++line;
  }
  return out;
}

[[noreturn]] void unknown(const char* type, const std::string& name) {
  throw_error("Unknown ", type, " filter: ", name);
}

Value simple_filter(Interpreter& in, const Value& operand, const std::string& name) {
  if (name == "safe") return operand;
  if (name == "tojson") return Value::string(to_json(operand, JsonOptions{}, 0, true));
  switch (operand.kind) {
    case Kind::kArray: {
      const Array& a = *operand.arr;
      if (name == "list") return operand;
      if (name == "first") return a.empty() ? Value::undefined() : a.front();
      if (name == "last") return a.empty() ? Value::undefined() : a.back();
      if (name == "length") return Value::integer(static_cast<double>(a.size()));
      if (name == "reverse") return Value::array(Array(a.rbegin(), a.rend()));
      if (name == "sort") {
        Array out = a;
        std::stable_sort(out.begin(), out.end(), [](const Value& x, const Value& y) {
          return compare_values(x, y, false) < 0;
        });
        return Value::array(std::move(out));
      }
      if (name == "join") return Value::string(join_values(in, a, ""));
      if (name == "string") return Value::string(to_json(operand, JsonOptions{}, 0, false));
      if (name == "unique") {
        Array out;
        for (const Value& x : a) {
          bool seen = false;
          for (const Value& y : out) {
            if (strict_equals(x, y) || (x.is_number() && y.is_number() && std::isnan(x.num) &&
                                        std::isnan(y.num))) {
              seen = true;
              break;
            }
          }
          if (!seen) out.push_back(x);
          in.charge(1);
        }
        return Value::array(std::move(out));
      }
      unknown("ArrayValue", name);
    }
    case Kind::kString: {
      if (name == "length" || name == "upper" || name == "lower" || name == "title" ||
          name == "capitalize") {
        Value b = builtin_attribute(in, operand, name);
        if (b.kind == Kind::kFunction) {
          std::vector<Value> none;
          Env scratch(nullptr);
          return (*b.fn)(none, scratch);
        }
        return b;
      }
      if (name == "trim") return Value::string(js_trim(operand.str, true, true));
      if (name == "indent") return Value::string(indent_lines(operand.str, 4, false, false));
      if (name == "join" || name == "string") return operand;
      if (name == "int") {
        const double v = js_parse_int(operand.str);
        return Value::integer(std::isnan(v) ? 0 : v);
      }
      if (name == "float") {
        const double v = js_parse_float(operand.str);
        return Value::floating(std::isnan(v) ? 0 : v);
      }
      unknown("StringValue", name);
    }
    case Kind::kInt:
    case Kind::kFloat: {
      if (name == "abs") {
        return operand.kind == Kind::kInt ? Value::integer(std::fabs(operand.num))
                                          : Value::floating(std::fabs(operand.num));
      }
      if (name == "int") return Value::integer(std::floor(operand.num));
      if (name == "float") return Value::floating(operand.num);
      if (name == "string") return Value::string(to_display_string(operand));
      unknown("NumericValue", name);
    }
    case Kind::kObject: {
      if (name == "length") return Value::integer(static_cast<double>(operand.obj->size()));
      Value b = builtin_attribute(in, operand, name);
      if (b.kind == Kind::kFunction) {
        std::vector<Value> none;
        Env scratch(nullptr);
        return (*b.fn)(none, scratch);
      }
      if (b.kind != Kind::kUndefined) return b;
      unknown("ObjectValue", name);
    }
    case Kind::kBool: {
      if (name == "bool") return operand;
      if (name == "int") return Value::integer(operand.b ? 1 : 0);
      if (name == "float") return Value::floating(operand.b ? 1 : 0);
      if (name == "string") return Value::string(operand.b ? "true" : "false");
      unknown("BooleanValue", name);
    }
    default: break;
  }
  throw_error("Cannot apply filter \"", name, "\" to type: ", type_name(operand));
}

Value tojson_filter(const Value& operand, const Kwargs& kw) {
  JsonOptions opts;
  if (const Value* v = kwarg(kw, "indent")) {
    if (v->kind != Kind::kInt && v->kind != Kind::kNull) {
      throw_error("If set, indent must be a number");
    }
    if (v->kind == Kind::kInt) opts.indent = static_cast<int>(std::clamp(v->num, -1.0, 64.0));
  }
  if (const Value* v = kwarg(kw, "ensure_ascii")) {
    if (v->kind != Kind::kBool) throw_error("If set, ensure_ascii must be a boolean");
    opts.ensure_ascii = v->b;
  }
  if (const Value* v = kwarg(kw, "sort_keys")) {
    if (v->kind != Kind::kBool) throw_error("If set, sort_keys must be a boolean");
    if (v->b) {
      throw_error("tojson(sort_keys=true) is not supported (the reference sorts with the "
                  "locale's collation)");
    }
  }
  if (const Value* v = kwarg(kw, "separators")) {
    if (v->kind == Kind::kArray) {
      if (v->arr->size() != 2 || (*v->arr)[0].kind != Kind::kString ||
          (*v->arr)[1].kind != Kind::kString) {
        throw_error("separators must be a tuple of two strings");
      }
      opts.has_separators = true;
      opts.item_separator = (*v->arr)[0].str;
      opts.key_separator = (*v->arr)[1].str;
    } else if (v->kind != Kind::kNull) {
      throw_error("If set, separators must be a tuple of two strings");
    }
  }
  if (opts.indent < 0) opts.indent = 0;
  return Value::string(to_json(operand, opts, 0, true));
}

Value select_filter(const Value& operand, const Node& call, Interpreter& in, Env& env,
                    bool select, const std::string& name) {
  for (const Value& item : *operand.arr) {
    if (!item.is_attribute_container()) {
      throw_error("`", name, "` can only be applied to array of objects");
    }
  }
  for (const auto& a : call.list) {
    if (a->kind != NodeKind::kString) throw_error("arguments of `", name, "` must be strings");
  }
  std::vector<Value> args;
  for (const auto& a : call.list) args.push_back(in.eval(*a, env));
  if (args.empty()) throw_error("`", name, "` needs an attribute name");
  if (args.size() > 1 && !has_test(args[1].str)) throw_error("Unknown test: ", args[1].str);
  Array out;
  for (const Value& item : *operand.arr) {
    in.charge(1);
    const Value* a = item.obj->find(args[0].str);
    bool result = false;
    if (a) {
      if (args.size() > 1) {
        std::vector<Value> test_args;
        if (args.size() > 2) test_args.push_back(args[2]);
        result = run_test(args[1].str, *a, test_args);
      } else {
        result = truthy(*a);
      }
    }
    if (result == select) out.push_back(item);
  }
  return Value::array(std::move(out));
}

Value call_filter(Interpreter& in, const Value& operand, const Node& call, Env& env) {
  if (call.a->kind != NodeKind::kIdentifier) throw_error("Unknown filter");
  const std::string& name = call.a->str;
  std::vector<Value> args;
  Kwargs kw;
  auto eval_args = [&] { in.evaluate_arguments(call.list, env, &args, &kw); };
  if (name == "tojson") {
    eval_args();
    return tojson_filter(operand, kw);
  }
  if (name == "join") {
    Array items;
    if (operand.kind == Kind::kString) {
      for (char32_t cp : utf8_decode(operand.str)) {
        std::string ch;
        utf8_append(ch, cp);
        items.push_back(Value::string(ch));
      }
    } else if (operand.kind == Kind::kArray) {
      items = *operand.arr;
    } else {
      throw_error("Cannot apply filter \"join\" to type: ", type_name(operand));
    }
    eval_args();
    const Value sep = arg_or(args, 0, kw, "separator", Value::string(""));
    if (sep.kind != Kind::kString) throw_error("separator must be a string");
    return Value::string(join_values(in, items, sep.str));
  }
  if (name == "int" || name == "float") {
    eval_args();
    const bool is_int = name == "int";
    const Value def = arg_or(args, 0, kw, "default",
                             is_int ? Value::integer(0) : Value::floating(0));
    if (operand.kind == Kind::kString) {
      const double v = is_int ? js_parse_int(operand.str) : js_parse_float(operand.str);
      if (std::isnan(v)) return def;
      return is_int ? Value::integer(v) : Value::floating(v);
    }
    if (operand.is_number()) return operand;
    if (operand.kind == Kind::kBool) {
      return is_int ? Value::integer(operand.b) : Value::floating(operand.b);
    }
    throw_error("Cannot apply filter \"", name, "\" to type: ", type_name(operand));
  }
  if (name == "default") {
    eval_args();
    const Value def = args.size() > 0 ? args[0] : Value::string("");
    const Value boolean = arg_or(args, 1, kw, "boolean", Value::boolean(false));
    if (boolean.kind != Kind::kBool) throw_error("`default` filter flag must be a boolean");
    if (operand.kind == Kind::kUndefined || (boolean.b && !truthy(operand))) return def;
    return operand;
  }
  if (operand.kind == Kind::kArray) {
    if (name == "sort") {
      eval_args();
      const Value reverse = arg_or(args, 0, kw, "reverse", Value::boolean(false));
      if (reverse.kind != Kind::kBool) throw_error("reverse must be a boolean");
      const Value cs = arg_or(args, 1, kw, "case_sensitive", Value::boolean(false));
      if (cs.kind != Kind::kBool) throw_error("case_sensitive must be a boolean");
      const Value attr = arg_or(args, 2, kw, "attribute", Value::null());
      if (attr.kind != Kind::kString && attr.kind != Kind::kInt && attr.kind != Kind::kNull) {
        throw_error("attribute must be a string, integer, or null");
      }
      auto key = [&](const Value& item) {
        if (attr.kind == Kind::kNull) return item;
        return attribute_path(item, attr.kind == Kind::kInt ? js_number_to_string(attr.num)
                                                             : attr.str);
      };
      Array out = *operand.arr;
      std::stable_sort(out.begin(), out.end(), [&](const Value& a, const Value& b) {
        const int r = compare_values(key(a), key(b), cs.b);
        return (reverse.b ? -r : r) < 0;
      });
      return Value::array(std::move(out));
    }
    if (name == "selectattr" || name == "rejectattr") {
      return select_filter(operand, call, in, env, name == "selectattr", name);
    }
    if (name == "map") {
      eval_args();
      const Value* attr = kwarg(kw, "attribute");
      if (!attr) {
        throw_error("`map` expressions without `attribute` set are not currently supported.");
      }
      if (attr->kind != Kind::kString) throw_error("attribute must be a string");
      const Value* def = kwarg(kw, "default");
      Array out;
      for (const Value& item : *operand.arr) {
        in.charge(1);
        if (!item.is_attribute_container()) throw_error("items in map must be an object");
        Value v = attribute_path(item, attr->str);
        if (v.kind == Kind::kUndefined && def) v = *def;
        out.push_back(std::move(v));
      }
      return Value::array(std::move(out));
    }
    unknown("ArrayValue", name);
  }
  if (operand.kind == Kind::kString) {
    if (name == "indent") {
      eval_args();
      const Value width = arg_or(args, 0, kw, "width", Value::integer(4));
      if (width.kind != Kind::kInt) throw_error("width must be a number");
      const Value first = arg_or(args, 1, kw, "first", Value::boolean(false));
      const Value blank = arg_or(args, 2, kw, "blank", Value::boolean(false));
      const double w = std::clamp(width.num, 0.0, 1024.0);
      const std::string out =
          indent_lines(operand.str, static_cast<int>(w), truthy(first), truthy(blank));
      in.check_size(out.size());
      return Value::string(out);
    }
    if (name == "replace") {
      eval_args();
      Value kwargs = Value::object();
      kwargs.is_kwargs = true;
      for (auto& [k, v] : kw) kwargs.obj->set(k, v);
      args.push_back(kwargs);
      Value fn = builtin_attribute(in, operand, "replace");
      return (*fn.fn)(args, env);
    }
    unknown("StringValue", name);
  }
  if (operand.kind == Kind::kObject) {
    Value fn = builtin_attribute(in, operand, name);
    if (fn.kind == Kind::kFunction) {
      eval_args();
      if (!kw.empty()) {
        Value kwargs = Value::object();
        kwargs.is_kwargs = true;
        for (auto& [k, v] : kw) kwargs.obj->set(k, v);
        args.push_back(kwargs);
      }
      return (*fn.fn)(args, env);
    }
    unknown("ObjectValue", name);
  }
  throw_error("Cannot apply filter \"", name, "\" to type: ", type_name(operand));
}

const std::set<std::string>& test_names() {
  static const std::set<std::string> kNames = {
      "boolean", "callable", "odd", "even", "false", "true", "none", "string", "number",
      "integer", "iterable", "mapping", "sequence", "lower", "upper", "defined", "undefined",
      "equalto", "eq", "divisibleby"};
  return kNames;
}

}  // namespace

Value apply_filter(Interpreter& in, const Value& operand, const Node& filter, Env& env) {
  if (filter.kind == NodeKind::kIdentifier) return simple_filter(in, operand, filter.str);
  if (filter.kind == NodeKind::kCall) return call_filter(in, operand, filter, env);
  throw_error("Unknown filter");
}

bool has_test(const std::string& name) { return test_names().count(name) > 0; }

bool run_test(const std::string& name, const Value& v, const std::vector<Value>& args) {
  const Kind k = v.kind;
  if (name == "boolean") return k == Kind::kBool;
  if (name == "callable") return k == Kind::kFunction;
  if (name == "odd" || name == "even") {
    if (k != Kind::kInt) throw_error("cannot ", name, " on ", type_name(v));
    const bool odd = std::fmod(v.num, 2) != 0;
    return name == "odd" ? odd : !odd;
  }
  if (name == "divisibleby") {  // extension: Jinja's `x is divisibleby(n)`
    if (args.size() != 1 || !args[0].is_number() || !v.is_number()) {
      throw_error("divisibleby needs a number and one numeric argument");
    }
    return args[0].num != 0 && std::fmod(v.num, args[0].num) == 0;
  }
  if (name == "false") return k == Kind::kBool && !v.b;
  if (name == "true") return k == Kind::kBool && v.b;
  if (name == "none") return k == Kind::kNull;
  if (name == "string") return k == Kind::kString;
  if (name == "number") return v.is_number();
  if (name == "integer") return k == Kind::kInt;
  if (name == "iterable") return (k == Kind::kArray && !v.is_tuple) || k == Kind::kString;
  if (name == "mapping") return k == Kind::kObject;
  if (name == "sequence") return k == Kind::kArray || k == Kind::kObject || k == Kind::kString;
  if (name == "lower") return k == Kind::kString && v.str == ascii_lower(v.str);
  if (name == "upper") return k == Kind::kString && v.str == ascii_upper(v.str);
  if (name == "defined") return k != Kind::kUndefined;
  if (name == "undefined") return k == Kind::kUndefined;
  if (name == "equalto" || name == "eq") {
    return strict_equals(v, args.empty() ? Value::undefined() : args[0]);
  }
  throw_error("Unknown test: ", name);
}

}  // namespace mixserve::jinja
