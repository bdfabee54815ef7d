// Attribute builtins: string methods (upper, split, replace, ...), dict methods (get, items,
// keys, values, dictsort) and `length`, with the reference's JavaScript semantics.
#include <algorithm>
#include <cmath>

#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/js_text.h"
#include "util/error.h"

namespace mixserve::jinja {
namespace {

bool is_word_byte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// value.replace(/\b\w/g, toUpperCase): only the first ASCII word character of each word.
std::string title_case(const std::string& s) {
  std::string out = s;
  for (size_t i = 0; i < out.size(); ++i) {
    if (is_word_byte(out[i]) && (i == 0 || !is_word_byte(out[i - 1])) && out[i] >= 'a' &&
        out[i] <= 'z') {
      out[i] = static_cast<char>(out[i] - 32);
    }
  }
  return out;
}

bool starts_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(0, p.size(), p) == 0;
}
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

Value affix_test(const std::string& self, const std::vector<Value>& args, bool start,
                 const char* name) {
  if (args.empty()) throw_error(name, "() requires at least one argument");
  const Value& p = args[0];
  auto test = [&](const std::string& x) { return start ? starts_with(self, x) : ends_with(self, x); };
  if (p.kind == Kind::kString) return Value::boolean(test(p.str));
  if (p.kind == Kind::kArray) {
    for (const Value& item : *p.arr) {
      if (item.kind != Kind::kString) throw_error(name, "() tuple elements must be strings");
      if (test(item.str)) return Value::boolean(true);
    }
    return Value::boolean(false);
  }
  throw_error(name, "() argument must be a string or tuple of strings");
}

Value split(const std::string& self, const std::vector<Value>& args) {
  const Value sep = args.size() > 0 ? args[0] : Value::null();
  if (sep.kind != Kind::kString && sep.kind != Kind::kNull) {
    throw_error("sep argument must be a string or null");
  }
  const Value maxsplit = args.size() > 1 ? args[1] : Value::integer(-1);
  if (maxsplit.kind != Kind::kInt) throw_error("maxsplit argument must be a number");
  const double max = maxsplit.num;
  Array out;
  if (sep.kind == Kind::kNull) {
    const std::string text = js_trim(self, true, false);
    const auto cps = utf8_decode(text);
    size_t i = 0;
    while (i < cps.size()) {
      while (i < cps.size() && is_js_space(cps[i])) ++i;
      if (i >= cps.size()) break;
      size_t j = i;
      while (j < cps.size() && !is_js_space(cps[j])) ++j;
      if (max != -1 && static_cast<double>(out.size()) >= max) {
        out.push_back(Value::string(utf8_encode(cps, i, cps.size())));
        break;
      }
      out.push_back(Value::string(utf8_encode(cps, i, j)));
      i = j;
    }
    return Value::array(std::move(out));
  }
  if (sep.str.empty()) throw_error("empty separator");
  std::vector<std::string> parts;
  size_t from = 0;
  while (true) {
    const size_t at = self.find(sep.str, from);
    if (at == std::string::npos) {
      parts.push_back(self.substr(from));
      break;
    }
    parts.push_back(self.substr(from, at - from));
    from = at + sep.str.size();
  }
  if (max != -1 && static_cast<double>(parts.size()) > max) {
    const size_t keep = max < 0 ? 0 : static_cast<size_t>(max);
    std::string rest;
    for (size_t i = keep; i < parts.size(); ++i) rest += (i > keep ? sep.str : "") + parts[i];
    parts.resize(keep);
    parts.push_back(rest);
  }
  for (auto& p : parts) out.push_back(Value::string(std::move(p)));
  return Value::array(std::move(out));
}

Value replace(Interpreter& in, const std::string& self, const std::vector<Value>& args) {
  if (args.size() < 2) throw_error("replace() requires at least two arguments");
  const Value& old_v = args[0];
  const Value& new_v = args[1];
  if (old_v.kind != Kind::kString || new_v.kind != Kind::kString) {
    throw_error("replace() arguments must be strings");
  }
  Value count = Value::null();
  if (args.size() > 2) {
    if (args[2].is_kwargs) {
      const Value* c = args[2].obj->find("count");
      count = c ? *c : Value::null();
    } else {
      count = args[2];
    }
  }
  if (count.kind != Kind::kInt && count.kind != Kind::kNull) {
    throw_error("replace() count argument must be a number or null");
  }
  if (count.kind == Kind::kInt && count.num == 0) return Value::string(self);
  double remaining = (count.kind == Kind::kNull || count.num < 0) ? INFINITY : count.num;
  std::string out;
  if (old_v.str.empty()) {  // matches at every code point boundary
    const auto cps = utf8_decode(self);
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (remaining > 0) {
        out += new_v.str;
        --remaining;
      }
      if (i < cps.size()) utf8_append(out, cps[i]);
      in.check_size(out.size());
    }
    return Value::string(std::move(out));
  }
  size_t from = 0;
  while (remaining > 0) {
    const size_t at = self.find(old_v.str, from);
    if (at == std::string::npos) break;
    out.append(self, from, at - from);
    out += new_v.str;
    in.check_size(out.size());
    from = at + old_v.str.size();
    --remaining;
  }
  out.append(self, from, std::string::npos);
  in.check_size(out.size());
  return Value::string(std::move(out));
}

Value pair(const std::string& k, const Value& v) {
  return Value::array({Value::string(k), v});
}

Value dictsort(const Value& self, const std::vector<Value>& args) {
  std::vector<Value> positional;
  std::shared_ptr<Object> kwargs = std::make_shared<Object>();
  for (const Value& a : args) {
    if (a.is_kwargs) kwargs = a.obj;
    else positional.push_back(a);
  }
  auto arg = [&](size_t i, const char* name, Value def) {
    if (i < positional.size()) return positional[i];
    if (const Value* v = kwargs->find(name)) return *v;
    return def;
  };
  const Value case_sensitive = arg(0, "case_sensitive", Value::boolean(false));
  if (case_sensitive.kind != Kind::kBool) throw_error("case_sensitive must be a boolean");
  const Value by = arg(1, "by", Value::string("key"));
  if (by.kind != Kind::kString) throw_error("by must be a string");
  if (by.str != "key" && by.str != "value") throw_error("by must be either 'key' or 'value'");
  const Value reverse = arg(2, "reverse", Value::boolean(false));
  if (reverse.kind != Kind::kBool) throw_error("reverse must be a boolean");
  Array items;
  for (const auto& [k, v] : self.obj->entries()) items.push_back(pair(k, v));
  const size_t idx = by.str == "key" ? 0 : 1;
  std::stable_sort(items.begin(), items.end(), [&](const Value& a, const Value& b) {
    const int r = compare_values((*a.arr)[idx], (*b.arr)[idx], case_sensitive.b);
    return (reverse.b ? -r : r) < 0;
  });
  return Value::array(std::move(items));
}

}  // namespace

int compare_values(const Value& a, const Value& b, bool case_sensitive) {
  if (a.kind == Kind::kNull && b.kind == Kind::kNull) return 0;
  if (a.kind == Kind::kNull || b.kind == Kind::kNull) {
    throw_error("Cannot compare ", type_name(a), " with ", type_name(b));
  }
  if (a.kind == Kind::kUndefined && b.kind == Kind::kUndefined) return 0;
  if (a.kind == Kind::kUndefined || b.kind == Kind::kUndefined) {
    throw_error("Cannot compare ", type_name(a), " with ", type_name(b));
  }
  const bool an = a.is_number() || a.kind == Kind::kBool;
  const bool bn = b.is_number() || b.kind == Kind::kBool;
  if (an && bn) {
    const double x = a.kind == Kind::kBool ? a.b : a.num;
    const double y = b.kind == Kind::kBool ? b.b : b.num;
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.kind != b.kind || a.is_tuple != b.is_tuple) {
    throw_error("Cannot compare different types: ", type_name(a), " and ", type_name(b));
  }
  if (a.kind == Kind::kString) {
    const std::string x = case_sensitive ? a.str : ascii_lower(a.str);
    const std::string y = case_sensitive ? b.str : ascii_lower(b.str);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  throw_error("Cannot compare type: ", type_name(a));
}

Value attribute_path(const Value& item, const std::string& path) {
  Value v = item;
  size_t from = 0;
  while (true) {
    const size_t dot = path.find('.', from);
    const std::string part = path.substr(from, dot == std::string::npos ? dot : dot - from);
    if (v.is_attribute_container()) {
      const Value* x = v.obj->find(part);
      v = x ? *x : Value::undefined();
    } else if (v.kind == Kind::kArray) {
      const double i = js_parse_int(part);
      if (std::isnan(i) || i < 0 || i >= static_cast<double>(v.arr->size())) {
        return Value::undefined();
      }
      v = (*v.arr)[static_cast<size_t>(i)];
    } else {
      return Value::undefined();
    }
    if (dot == std::string::npos) break;
    from = dot + 1;
  }
  return v;
}

Value builtin_attribute(Interpreter& in, const Value& v, const std::string& name) {
  auto method = [](auto f) { return Value::function(f); };
  if (v.kind == Kind::kString) {
    const std::string s = v.str;
    if (name == "length") return Value::integer(static_cast<double>(utf16_length(s)));
    if (name == "upper") return method([s](std::vector<Value>&, Env&) {
      return Value::string(ascii_upper(s)); });
    if (name == "lower") return method([s](std::vector<Value>&, Env&) {
      return Value::string(ascii_lower(s)); });
    if (name == "strip") return method([s](std::vector<Value>&, Env&) {
      return Value::string(js_trim(s, true, true)); });
    if (name == "lstrip") return method([s](std::vector<Value>&, Env&) {
      return Value::string(js_trim(s, true, false)); });
    if (name == "rstrip") return method([s](std::vector<Value>&, Env&) {
      return Value::string(js_trim(s, false, true)); });
    if (name == "title") return method([s](std::vector<Value>&, Env&) {
      return Value::string(title_case(s)); });
    if (name == "capitalize") return method([s](std::vector<Value>&, Env&) {
      std::string out = s;
      if (!out.empty() && out[0] >= 'a' && out[0] <= 'z') out[0] = static_cast<char>(out[0] - 32);
      return Value::string(out);
    });
    if (name == "startswith") return method([s](std::vector<Value>& a, Env&) {
      return affix_test(s, a, true, "startswith"); });
    if (name == "endswith") return method([s](std::vector<Value>& a, Env&) {
      return affix_test(s, a, false, "endswith"); });
    if (name == "split") return method([s](std::vector<Value>& a, Env&) { return split(s, a); });
    if (name == "replace") return method([s, &in](std::vector<Value>& a, Env&) {
      return replace(in, s, a); });
    return Value::undefined();
  }
  if (v.kind == Kind::kArray) {
    if (name == "length") return Value::integer(static_cast<double>(v.arr->size()));
    return Value::undefined();
  }
  if (v.kind == Kind::kObject) {
    const Value self = v;
    if (name == "get") return method([self](std::vector<Value>& a, Env&) {
      if (a.empty() || a[0].kind != Kind::kString) {
        throw_error("Object key must be a string: got ",
                    a.empty() ? "nothing" : type_name(a[0]));
      }
      if (const Value* x = self.obj->find(a[0].str)) return *x;
      return a.size() > 1 ? a[1] : Value::null();
    });
    if (name == "items") return method([self](std::vector<Value>&, Env&) {
      Array out;
      for (const auto& [k, x] : self.obj->entries()) out.push_back(pair(k, x));
      return Value::array(std::move(out));
    });
    if (name == "keys") return method([self](std::vector<Value>&, Env&) {
      Array out;
      for (const auto& [k, x] : self.obj->entries()) out.push_back(Value::string(k));
      return Value::array(std::move(out));
    });
    if (name == "values") return method([self](std::vector<Value>&, Env&) {
      Array out;
      for (const auto& [k, x] : self.obj->entries()) out.push_back(x);
      return Value::array(std::move(out));
    });
    if (name == "dictsort") return method([self](std::vector<Value>& a, Env&) {
      return dictsort(self, a); });
  }
  return Value::undefined();
}

}  // namespace mixserve::jinja
