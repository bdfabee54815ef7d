// Syntax tree of a template: one node struct with a kind and generic child slots, mirroring
// the reference's AST classes (the comment on each kind says which slots it uses).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace mixserve::jinja {

enum class NodeKind {
  kProgram,       // body
  kText,          // str (template text; printed as is)
  kIf,            // a = test, body, alt
  kFor,           // a = loop var (Identifier|Tuple), b = iterable, c = select test or null,
                  // body, alt (else block)
  kBreak, kContinue,
  kSet,           // a = target, b = value or null (then body is the block)
  kMacro,         // str = name, list = parameters (Identifier|KeywordArgument), body
  kFilterBlock,   // a = filter (Identifier|Call), body
  kComment,
  kInt, kFloat,   // num
  kString,        // str
  kArray,         // list
  kTuple,         // list
  kObject,        // pairs
  kIdentifier,    // str
  kMember,        // a = object, b = property, flag = computed
  kCall,          // a = callee, list = arguments
  kUnary,         // str = operator, a
  kBinary,        // str = operator, a, b
  kFilter,        // a = operand, b = filter (Identifier|Call)
  kTest,          // a = operand, str = test name, flag = negate, list = extra arguments
  kSelect,        // a = value, b = test  (`x if c` without else)
  kTernary,       // a = condition, b = if true, c = if false
  kSlice,         // a, b, c = start, stop, step (each may be null)
  kKeywordArg,    // str = name, a = value
  kSpread,        // a  (*args)
  kKeywordSpread  // a  (**kwargs)
};

struct Node;
using NodePtr = std::unique_ptr<Node>;

struct Node {
  NodeKind kind;
  uint32_t offset = 0;  // byte offset in the template, for error messages
  std::string str;
  double num = 0;
  bool flag = false;
  NodePtr a, b, c;
  std::vector<NodePtr> list, body, alt;
  std::vector<std::pair<NodePtr, NodePtr>> pairs;

  Node(NodeKind k, uint32_t off) : kind(k), offset(off) {}
};

}  // namespace mixserve::jinja
