#include "tokenizer/jinja/value.h"

#include <cmath>
#include <cstdio>

#include "tokenizer/jinja/js_text.h"
#include "util/error.h"

namespace mixserve::jinja {

const Value* Object::find(const std::string& key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

void Object::set(const std::string& key, Value v) {
  auto it = index_.find(key);
  if (it != index_.end()) {
    entries_[it->second].second = std::move(v);
    return;
  }
  index_.emplace(key, entries_.size());
  entries_.emplace_back(key, std::move(v));
}

bool Object::erase(const std::string& key) {
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  entries_.erase(entries_.begin() + static_cast<long>(it->second));
  index_.clear();
  for (size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].first, i);
  return true;
}

Value Value::null() {
  Value v;
  v.kind = Kind::kNull;
  return v;
}
Value Value::boolean(bool x) {
  Value v;
  v.kind = Kind::kBool;
  v.b = x;
  return v;
}
Value Value::integer(double x) {
  Value v;
  v.kind = Kind::kInt;
  v.num = x;
  return v;
}
Value Value::floating(double x) {
  Value v;
  v.kind = Kind::kFloat;
  v.num = x;
  return v;
}
Value Value::string(std::string s) {
  Value v;
  v.kind = Kind::kString;
  v.str = std::move(s);
  return v;
}
Value Value::array(Array items) {
  Value v;
  v.kind = Kind::kArray;
  v.arr = std::make_shared<Array>(std::move(items));
  return v;
}
Value Value::tuple(Array items) {
  Value v = array(std::move(items));
  v.is_tuple = true;
  return v;
}
Value Value::object(std::shared_ptr<Object> o) {
  Value v;
  v.kind = Kind::kObject;
  v.obj = o ? std::move(o) : std::make_shared<Object>();
  return v;
}
Value Value::ns(std::shared_ptr<Object> o) {
  Value v = object(std::move(o));
  v.kind = Kind::kNamespace;
  return v;
}
Value Value::function(Function f) {
  Value v;
  v.kind = Kind::kFunction;
  v.fn = std::make_shared<Function>(std::move(f));
  return v;
}

const char* type_name(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined: return "UndefinedValue";
    case Kind::kNull: return "NullValue";
    case Kind::kBool: return "BooleanValue";
    case Kind::kInt: return "IntegerValue";
    case Kind::kFloat: return "FloatValue";
    case Kind::kString: return "StringValue";
    case Kind::kArray: return v.is_tuple ? "TupleValue" : "ArrayValue";
    case Kind::kObject: return v.is_kwargs ? "KeywordArgumentsValue" : "ObjectValue";
    case Kind::kNamespace: return "NamespaceValue";
    case Kind::kFunction: return "FunctionValue";
  }
  return "?";
}

bool truthy(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined:
    case Kind::kNull: return false;
    case Kind::kBool: return v.b;
    case Kind::kInt:
    case Kind::kFloat: return v.num != 0 && !std::isnan(v.num);
    case Kind::kString: return !v.str.empty();
    case Kind::kArray: return !v.arr->empty();
    case Kind::kObject: return v.obj->size() > 0;
    case Kind::kNamespace:
    case Kind::kFunction: return true;
  }
  return false;
}

namespace {

std::string float_display(double x) {
  if (x == 0 && std::signbit(x)) return "-0.0";
  if (std::isfinite(x) && std::fmod(x, 1.0) == 0) {
    if (std::fabs(x) >= 1e21) return js_number_to_string(x);  // toFixed falls back to String()
    char buf[400];
    std::snprintf(buf, sizeof(buf), "%.1f", x);
    return buf;
  }
  return js_number_to_string(x);
}

}  // namespace

std::string to_display_string(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined:
    case Kind::kNull: return "undefined";  // the reference's NullValue holds `undefined`
    case Kind::kBool: return v.b ? "true" : "false";
    case Kind::kInt: return js_number_to_string(v.num);
    case Kind::kFloat: return float_display(v.num);
    case Kind::kString: return v.str;
    case Kind::kArray:
    case Kind::kObject:
    case Kind::kNamespace: return to_json(v, JsonOptions{}, 0, false);
    case Kind::kFunction:
      throw_error("cannot print a function (call it, e.g. name(...))");
  }
  return "";
}

std::string raw_to_string(const Value& v) {
  switch (v.kind) {
    case Kind::kArray: {
      std::string out;
      for (size_t i = 0; i < v.arr->size(); ++i) {
        if (i) out += ',';
        out += to_display_string((*v.arr)[i]);
      }
      return out;
    }
    case Kind::kObject:
    case Kind::kNamespace: return "[object Map]";
    case Kind::kFloat: return js_number_to_string(v.num);
    default: return to_display_string(v);
  }
}

std::string to_json(const Value& v, const JsonOptions& opts, int depth, bool undefined_to_null) {
  const std::string item_sep =
      opts.has_separators ? opts.item_separator : (opts.indent ? "," : ", ");
  const std::string key_sep = opts.has_separators ? opts.key_separator : ": ";
  switch (v.kind) {
    case Kind::kNull: return "null";
    case Kind::kUndefined: return undefined_to_null ? "null" : "undefined";
    case Kind::kInt:
    case Kind::kFloat: return std::isfinite(v.num) ? js_number_to_string(v.num) : "null";
    case Kind::kBool: return v.b ? "true" : "false";
    case Kind::kString: return json_quote(v.str, opts.ensure_ascii);
    case Kind::kArray:
    case Kind::kObject:
    case Kind::kNamespace: {
      if (v.is_tuple || v.is_kwargs) break;
      const std::string indent(opts.indent > 0 ? opts.indent : 0, ' ');
      std::string base = "\n";
      for (int i = 0; i < depth; ++i) base += indent;
      const std::string child = base + indent;
      std::vector<std::string> core;
      if (v.kind == Kind::kArray) {
        for (const Value& x : *v.arr) core.push_back(to_json(x, opts, depth + 1, undefined_to_null));
        std::string out = "[";
        for (size_t i = 0; i < core.size(); ++i) {
          if (opts.indent) out += (i ? item_sep : "") + child;
          else if (i) out += item_sep;
          out += core[i];
        }
        if (opts.indent && !core.empty()) out += base;
        return out + "]";
      }
      std::string out = "{";
      size_t i = 0;
      for (const auto& [key, val] : v.obj->entries()) {
        if (i++) out += item_sep;
        if (opts.indent) out += child;
        out += json_quote(key, opts.ensure_ascii) + key_sep +
               to_json(val, opts, depth + 1, undefined_to_null);
      }
      if (opts.indent && v.obj->size() > 0) out += base;
      return out + "}";
    }
    case Kind::kFunction: break;
  }
  throw_error("Cannot convert to JSON: ", type_name(v));
}

namespace {

bool nullish(const Value& v) { return v.kind == Kind::kUndefined || v.kind == Kind::kNull; }
bool by_reference(const Value& v) {
  return v.kind == Kind::kArray || v.kind == Kind::kObject || v.kind == Kind::kNamespace ||
         v.kind == Kind::kFunction;
}
const void* identity(const Value& v) {
  if (v.kind == Kind::kArray) return v.arr.get();
  if (v.kind == Kind::kFunction) return v.fn.get();
  return v.obj.get();
}

}  // namespace

bool strict_equals(const Value& a, const Value& b) {
  if (nullish(a) || nullish(b)) return nullish(a) && nullish(b);
  if (a.is_number() && b.is_number()) return a.num == b.num;
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::kBool: return a.b == b.b;
    case Kind::kString: return a.str == b.str;
    default: return identity(a) == identity(b);
  }
}

bool loose_equals(const Value& a, const Value& b) {
  if (nullish(a) || nullish(b)) return nullish(a) && nullish(b);
  if (by_reference(a) && by_reference(b)) return identity(a) == identity(b);
  if (by_reference(a)) return loose_equals(Value::string(raw_to_string(a)), b);
  if (by_reference(b)) return loose_equals(a, Value::string(raw_to_string(b)));
  if (a.kind == Kind::kBool) return loose_equals(Value::integer(a.b ? 1 : 0), b);
  if (b.kind == Kind::kBool) return loose_equals(a, Value::integer(b.b ? 1 : 0));
  if (a.is_number() && b.is_number()) return a.num == b.num;
  if (a.kind == Kind::kString && b.kind == Kind::kString) return a.str == b.str;
  if (a.is_number()) return a.num == js_string_to_number(b.str);
  return js_string_to_number(a.str) == b.num;
}

}  // namespace mixserve::jinja
