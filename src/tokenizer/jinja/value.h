// Runtime values of the Jinja interpreter, mirroring @huggingface/jinja's RuntimeValue classes.
//
// Numbers are doubles (JavaScript numbers) with an integer/float tag, because the tag decides
// how they print ("1" vs "1.0") and the double decides overflow and rounding exactly as the
// reference does. Arrays, objects and namespaces are shared by reference, as in JavaScript:
// `set ns.x = 1` must be seen through every alias, and `==` compares them by identity.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mixserve::jinja {

enum class Kind { kUndefined, kNull, kBool, kInt, kFloat, kString, kArray, kObject, kNamespace,
                  kFunction };

struct Value;
struct Env;
using Array = std::vector<Value>;

// Insertion-ordered string map (JavaScript Map).
class Object {
 public:
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value v);
  bool erase(const std::string& key);
  size_t size() const { return entries_.size(); }
  const std::vector<std::pair<std::string, Value>>& entries() const { return entries_; }

 private:
  std::vector<std::pair<std::string, Value>> entries_;
  std::unordered_map<std::string, size_t> index_;
};

// Builtins and macros receive the call-site environment (macros scope from the caller, as the
// reference does). Keyword arguments arrive as a trailing object flagged is_kwargs.
using Function = std::function<Value(std::vector<Value>& args, Env& env)>;

struct Value {
  Kind kind = Kind::kUndefined;
  bool is_tuple = false;   // TupleValue: an array that is not "iterable" and has no JSON form
  bool is_kwargs = false;  // KeywordArgumentsValue
  bool b = false;
  double num = 0;
  std::string str;
  std::shared_ptr<Array> arr;
  std::shared_ptr<Object> obj;  // objects and namespaces
  std::shared_ptr<Function> fn;

  static Value undefined() { return Value(); }
  static Value null();
  static Value boolean(bool v);
  static Value integer(double v);
  static Value floating(double v);
  static Value string(std::string s);
  static Value array(Array items = {});
  static Value tuple(Array items);
  static Value object(std::shared_ptr<Object> o = nullptr);
  static Value ns(std::shared_ptr<Object> o);
  static Value function(Function f);

  bool is_number() const { return kind == Kind::kInt || kind == Kind::kFloat; }
  bool is_array() const { return kind == Kind::kArray; }
  bool is_object() const { return kind == Kind::kObject; }
  bool is_attribute_container() const {
    return kind == Kind::kObject || kind == Kind::kNamespace;
  }
};

// The reference's type names ("StringValue", ...), used in error messages.
const char* type_name(const Value& v);

// __bool__: Python-like truthiness (empty array/object false; namespaces always true).
bool truthy(const Value& v);

// RuntimeValue.toString(): what {{ v }} prints. Arrays and objects print as JSON.
std::string to_display_string(const Value& v);

// String(v.value) in JavaScript: what `~`, `+` with a string and join() use (1.0 -> "1",
// objects -> "[object Map]", arrays -> comma-joined display strings).
std::string raw_to_string(const Value& v);

struct JsonOptions {
  int indent = 0;  // 0: compact
  bool ensure_ascii = false;
  bool has_separators = false;
  std::string item_separator, key_separator;
};
// The reference's toJSON(); undefined prints "null" or "undefined" per undefined_to_null.
std::string to_json(const Value& v, const JsonOptions& opts, int depth, bool undefined_to_null);

// `==` (JavaScript loose equality on the raw values) and `===` (used by `in` and equalto).
bool loose_equals(const Value& a, const Value& b);
bool strict_equals(const Value& a, const Value& b);

}  // namespace mixserve::jinja
