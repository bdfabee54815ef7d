#include "tokenizer/jinja/parser.h"

#include <cstdlib>
#include <initializer_list>
#include <set>

#include "util/error.h"

namespace mixserve::jinja {
namespace {

class Parser {
 public:
  Parser(std::string_view source, const std::vector<Token>& tokens, int max_nesting)
      : src_(source), t_(tokens), max_nesting_(max_nesting) {}

  NodePtr program() {
    auto prog = node(NodeKind::kProgram, 0);
    while (cur_ < t_.size()) prog->body.push_back(any());
    return prog;
  }

 private:
  struct Nest {
    explicit Nest(Parser* p) : p(p) {
      if (++p->depth_ > p->max_nesting_) {
        p->fail("template nests deeper than the limit of " + std::to_string(p->max_nesting_));
      }
    }
    ~Nest() { --p->depth_; }
    Parser* p;
  };

  uint32_t offset_here() const {
    if (cur_ < t_.size()) return t_[cur_].offset;
    return static_cast<uint32_t>(src_.size());
  }
  [[noreturn]] void fail(const std::string& what) const { fail_at(offset_here(), what); }
  [[noreturn]] void fail_at(uint32_t off, const std::string& what) const {
    throw_error("chat template syntax error at ", describe_position(src_, off), ": ", what);
  }
  NodePtr node(NodeKind k, uint32_t off) const { return std::make_unique<Node>(k, off); }

  const Token& peek() const {
    if (cur_ >= t_.size()) fail("unexpected end of template (a block is not closed?)");
    return t_[cur_];
  }
  bool is(Tok type, size_t ahead = 0) const {
    return cur_ + ahead < t_.size() && t_[cur_ + ahead].type == type;
  }
  bool is_ident(std::string_view name, size_t ahead = 0) const {
    return is(Tok::kIdent, ahead) && t_[cur_ + ahead].value == name;
  }
  bool is_statement(std::initializer_list<std::string_view> names) const {
    if (!is(Tok::kOpenStatement) || !is(Tok::kIdent, 1)) return false;
    for (auto n : names) if (t_[cur_ + 1].value == n) return true;
    return false;
  }
  const Token& expect(Tok type, const char* what) {
    const Token& tok = peek();
    if (tok.type != type) {
      fail(std::string("expected ") + what + ", found " + tok_name(tok.type) +
           (tok.value.empty() ? "" : " '" + tok.value + "'"));
    }
    ++cur_;
    return tok;
  }
  void expect_ident(const char* name) {
    if (!is_ident(name)) fail(std::string("expected '") + name + "'");
    ++cur_;
  }
  // Body statements until one of `names` opens a tag.
  void block_until(std::initializer_list<std::string_view> names, std::vector<NodePtr>* out,
                   const char* closing) {
    while (!is_statement(names)) {
      if (cur_ >= t_.size()) fail(std::string("unexpected end of template: missing ") + closing);
      out->push_back(any());
    }
  }

  NodePtr any() {
    Nest nest(this);
    const Token& tok = peek();
    switch (tok.type) {
      case Tok::kComment: {
        ++cur_;
        return node(NodeKind::kComment, tok.offset);
      }
      case Tok::kText: {
        ++cur_;
        auto n = node(NodeKind::kText, tok.offset);
        n->str = tok.value;
        return n;
      }
      case Tok::kOpenStatement: return statement();
      case Tok::kOpenExpression: {
        ++cur_;
        auto e = expression();
        expect(Tok::kCloseExpression, "'}}'");
        return e;
      }
      default:
        fail(std::string("unexpected ") + tok_name(tok.type) + " '" + tok.value + "'");
    }
  }

  NodePtr statement() {
    expect(Tok::kOpenStatement, "'{%'");
    const Token& name_tok = peek();
    if (name_tok.type != Tok::kIdent) fail("expected a statement name after '{%'");
    const std::string name = name_tok.value;
    const uint32_t off = name_tok.offset;
    ++cur_;
    NodePtr result;
    if (name == "set") {
      result = set_statement(off);
    } else if (name == "if") {
      result = if_statement(off);
      close_block("endif");
    } else if (name == "for") {
      result = for_statement(off);
      close_block("endfor");
    } else if (name == "macro") {
      result = macro_statement(off);
      close_block("endmacro");
    } else if (name == "break" || name == "continue") {
      expect(Tok::kCloseStatement, "'%}'");
      result = node(name == "break" ? NodeKind::kBreak : NodeKind::kContinue, off);
    } else if (name == "filter") {
      result = node(NodeKind::kFilterBlock, off);
      result->a = filter_target();
      expect(Tok::kCloseStatement, "'%}'");
      block_until({"endfilter"}, &result->body, "{% endfilter %}");
      close_block("endfilter");
    } else if (name == "include" || name == "import" || name == "from" || name == "extends" ||
               name == "block") {
      fail_at(off, "'{% " + name + " %}' is not supported (chat templates are self-contained)");
    } else {
      fail_at(off, "unsupported statement '{% " + name + " %}'");
    }
    return result;
  }

  void close_block(const char* name) {
    expect(Tok::kOpenStatement, (std::string("'{% ") + name + " %}'").c_str());
    expect_ident(name);
    expect(Tok::kCloseStatement, "'%}'");
  }

  NodePtr set_statement(uint32_t off) {
    auto n = node(NodeKind::kSet, off);
    n->a = expression_sequence(false);
    if (is(Tok::kEquals)) {
      ++cur_;
      n->b = expression_sequence(false);
    } else {
      expect(Tok::kCloseStatement, "'=' or '%}'");
      block_until({"endset"}, &n->body, "{% endset %}");
      expect(Tok::kOpenStatement, "'{%'");
      expect_ident("endset");
    }
    expect(Tok::kCloseStatement, "'%}'");
    return n;
  }

  NodePtr if_statement(uint32_t off) {
    auto n = node(NodeKind::kIf, off);
    n->a = expression();
    expect(Tok::kCloseStatement, "'%}'");
    block_until({"elif", "else", "endif"}, &n->body, "{% endif %}");
    if (is_statement({"elif"})) {
      const uint32_t elif_off = t_[cur_ + 1].offset;
      cur_ += 2;
      n->alt.push_back(if_statement(elif_off));
    } else if (is_statement({"else"})) {
      cur_ += 2;
      expect(Tok::kCloseStatement, "'%}'");
      block_until({"endif"}, &n->alt, "{% endif %}");
    }
    return n;
  }

  NodePtr for_statement(uint32_t off) {
    auto n = node(NodeKind::kFor, off);
    n->a = expression_sequence(true);
    if (n->a->kind != NodeKind::kIdentifier && n->a->kind != NodeKind::kTuple) {
      fail_at(n->a->offset, "expected a name or names for the loop variable");
    }
    if (!is_ident("in")) fail("expected 'in' after the loop variable");
    ++cur_;
    auto iterable = expression();
    if (iterable->kind == NodeKind::kSelect) {  // for x in xs if cond
      n->b = std::move(iterable->a);
      n->c = std::move(iterable->b);
    } else {
      n->b = std::move(iterable);
    }
    expect(Tok::kCloseStatement, "'%}'");
    block_until({"endfor", "else"}, &n->body, "{% endfor %}");
    if (is_statement({"else"})) {
      cur_ += 2;
      expect(Tok::kCloseStatement, "'%}'");
      block_until({"endfor"}, &n->alt, "{% endfor %}");
    }
    return n;
  }

  NodePtr macro_statement(uint32_t off) {
    auto n = node(NodeKind::kMacro, off);
    auto name = primary();
    if (name->kind != NodeKind::kIdentifier) fail_at(name->offset, "expected a macro name");
    n->str = name->str;
    n->list = args(true);
    expect(Tok::kCloseStatement, "'%}'");
    block_until({"endmacro"}, &n->body, "{% endmacro %}");
    return n;
  }

  NodePtr expression_sequence(bool primary_only) {
    const uint32_t off = offset_here();
    std::vector<NodePtr> items;
    items.push_back(primary_only ? primary() : expression());
    const bool tuple = is(Tok::kComma);
    while (tuple) {
      ++cur_;
      items.push_back(primary_only ? primary() : expression());
      if (!is(Tok::kComma)) break;
    }
    if (!tuple) return std::move(items[0]);
    auto n = node(NodeKind::kTuple, off);
    n->list = std::move(items);
    return n;
  }

  NodePtr expression() {
    Nest nest(this);
    const uint32_t off = offset_here();
    auto a = logical_or();
    if (is_ident("if")) {
      ++cur_;
      auto test = logical_or();
      if (is_ident("else")) {
        ++cur_;
        auto n = node(NodeKind::kTernary, off);
        n->a = std::move(test);
        n->b = std::move(a);
        n->c = expression();
        return n;
      }
      auto n = node(NodeKind::kSelect, off);
      n->a = std::move(a);
      n->b = std::move(test);
      return n;
    }
    return a;
  }

  NodePtr binary(std::string op, NodePtr l, NodePtr r, uint32_t off) {
    auto n = node(NodeKind::kBinary, off);
    n->str = std::move(op);
    n->a = std::move(l);
    n->b = std::move(r);
    return n;
  }

  NodePtr logical_or() {
    auto left = logical_and();
    while (is_ident("or")) {
      const uint32_t off = t_[cur_++].offset;
      left = binary("or", std::move(left), logical_and(), off);
    }
    return left;
  }
  NodePtr logical_and() {
    auto left = logical_not();
    while (is_ident("and")) {
      const uint32_t off = t_[cur_++].offset;
      left = binary("and", std::move(left), logical_not(), off);
    }
    return left;
  }
  NodePtr logical_not() {
    if (is_ident("not")) {
      Nest nest(this);
      const uint32_t off = t_[cur_++].offset;
      auto n = node(NodeKind::kUnary, off);
      n->str = "not";
      n->a = logical_not();
      return n;
    }
    return comparison();
  }
  NodePtr comparison() {
    auto left = additive();
    while (true) {
      std::string op;
      const uint32_t off = offset_here();
      if (is_ident("not") && is_ident("in", 1)) {
        op = "not in";
        cur_ += 2;
      } else if (is_ident("in")) {
        op = "in";
        ++cur_;
      } else if (is(Tok::kComparison)) {
        op = t_[cur_++].value;
      } else {
        break;
      }
      left = binary(op, std::move(left), additive(), off);
    }
    return left;
  }
  NodePtr additive() {
    auto left = multiplicative();
    while (is(Tok::kAdditive)) {
      const Token& op = t_[cur_++];
      left = binary(op.value, std::move(left), multiplicative(), op.offset);
    }
    return left;
  }
  NodePtr multiplicative() {
    auto left = power();
    while (is(Tok::kMultiplicative)) {
      const Token& op = t_[cur_++];
      left = binary(op.value, std::move(left), power(), op.offset);
    }
    return left;
  }
  NodePtr power() {
    auto left = test_expression();
    while (is(Tok::kPower)) {
      const Token& op = t_[cur_++];
      left = binary(op.value, std::move(left), test_expression(), op.offset);
    }
    return left;
  }
  NodePtr test_expression() {
    auto operand = filter_expression();
    while (is_ident("is")) {
      const uint32_t off = t_[cur_++].offset;
      auto n = node(NodeKind::kTest, off);
      n->flag = is_ident("not");
      if (n->flag) ++cur_;
      auto name = primary();
      if (name->kind != NodeKind::kIdentifier) fail_at(name->offset, "expected a test name");
      n->str = name->str;
      if (is(Tok::kOpenParen)) n->list = args(false);  // extension: `is divisibleby(3)`
      n->a = std::move(operand);
      operand = std::move(n);
    }
    return operand;
  }
  NodePtr filter_target() {
    auto f = primary();
    if (f->kind != NodeKind::kIdentifier) fail_at(f->offset, "expected a filter name");
    if (is(Tok::kOpenParen)) return call(std::move(f));
    return f;
  }
  NodePtr filter_expression() {
    auto operand = unary_sign();
    while (is(Tok::kPipe)) {
      const uint32_t off = t_[cur_++].offset;
      auto n = node(NodeKind::kFilter, off);
      n->a = std::move(operand);
      n->b = filter_target();
      operand = std::move(n);
    }
    return operand;
  }
  NodePtr unary_sign() {
    if ((is(Tok::kUnary) || is(Tok::kAdditive)) &&
        (t_[cur_].value == "-" || t_[cur_].value == "+")) {
      Nest nest(this);
      const Token& op = t_[cur_++];
      auto n = node(NodeKind::kUnary, op.offset);
      n->str = op.value;
      n->a = unary_sign();
      return n;
    }
    auto member = member_chain(primary());
    if (is(Tok::kOpenParen)) return call(std::move(member));
    return member;
  }
  NodePtr call(NodePtr callee) {
    Nest nest(this);
    auto n = node(NodeKind::kCall, callee->offset);
    n->a = std::move(callee);
    n->list = args(false);
    NodePtr expr = member_chain(std::move(n));
    if (is(Tok::kOpenParen)) return call(std::move(expr));
    return expr;
  }
  std::vector<NodePtr> args(bool parameters) {
    expect(Tok::kOpenParen, "'('");
    std::vector<NodePtr> out;
    std::set<std::string> names;
    bool saw_keyword = false, saw_spread = false;
    while (!is(Tok::kCloseParen)) {
      if (cur_ >= t_.size()) fail("unexpected end of template in an argument list");
      const uint32_t off = offset_here();
      const bool kw_spread = is(Tok::kPower);
      const bool pos_spread = is(Tok::kMultiplicative) && t_[cur_].value == "*";
      if (parameters && (kw_spread || pos_spread)) fail("argument unpacking in a parameter list");
      if (kw_spread) {
        ++cur_;
        auto n = node(NodeKind::kKeywordSpread, off);
        n->a = expression();
        out.push_back(std::move(n));
        if (is(Tok::kComma)) ++cur_;
        if (!is(Tok::kCloseParen)) fail("'**' must be applied to the last argument");
        break;
      }
      NodePtr arg;
      if (pos_spread) {
        if (saw_spread) fail("only one '*' argument unpacking is allowed");
        saw_spread = true;
        ++cur_;
        arg = node(NodeKind::kSpread, off);
        arg->a = expression();
      } else {
        arg = expression();
        if (is(Tok::kEquals)) {
          ++cur_;
          if (arg->kind != NodeKind::kIdentifier) fail_at(off, "expected a name before '='");
          auto kw = node(NodeKind::kKeywordArg, off);
          kw->str = arg->str;
          kw->a = expression();
          arg = std::move(kw);
        }
        if (parameters) {
          if (arg->kind != NodeKind::kIdentifier && arg->kind != NodeKind::kKeywordArg) {
            fail_at(off, "expected a parameter name");
          }
          if (!names.insert(arg->str).second) fail_at(off, "duplicate parameter '" + arg->str + "'");
        }
        if (arg->kind == NodeKind::kKeywordArg) {
          saw_keyword = true;
        } else if (saw_keyword) {
          fail_at(off, parameters ? "non-default parameter follows a default one"
                                  : "positional argument follows a keyword argument");
        } else if (saw_spread) {
          fail_at(off, "positional argument follows '*' unpacking");
        }
      }
      out.push_back(std::move(arg));
      if (is(Tok::kComma)) ++cur_;
    }
    ++cur_;
    return out;
  }
  NodePtr subscript() {
    const uint32_t off = offset_here();
    std::vector<NodePtr> parts;
    bool slice = false;
    while (!is(Tok::kCloseSquare)) {
      if (cur_ >= t_.size()) fail("unexpected end of template in '[...]'");
      if (is(Tok::kColon)) {
        parts.push_back(nullptr);
        ++cur_;
        slice = true;
      } else {
        parts.push_back(expression());
        if (is(Tok::kColon)) {
          ++cur_;
          slice = true;
        }
      }
    }
    if (parts.empty()) fail_at(off, "empty subscript '[]'");
    if (!slice) return std::move(parts[0]);
    if (parts.size() > 3) fail_at(off, "a slice takes at most 3 parts");
    auto n = node(NodeKind::kSlice, off);
    parts.resize(3);
    n->a = std::move(parts[0]);
    n->b = std::move(parts[1]);
    n->c = std::move(parts[2]);
    return n;
  }
  NodePtr member_chain(NodePtr object) {
    while (is(Tok::kDot) || is(Tok::kOpenSquare)) {
      Nest nest(this);
      const Token& op = t_[cur_++];
      auto n = node(NodeKind::kMember, op.offset);
      n->flag = op.type == Tok::kOpenSquare;
      if (n->flag) {
        n->b = subscript();
        expect(Tok::kCloseSquare, "']'");
      } else {
        n->b = primary();
        if (n->b->kind != NodeKind::kIdentifier && n->b->kind != NodeKind::kInt) {
          fail_at(n->b->offset, "expected a name or an integer after '.'");
        }
      }
      n->a = std::move(object);
      object = std::move(n);
    }
    return object;
  }
  NodePtr primary() {
    Nest nest(this);
    const Token& tok = peek();
    ++cur_;
    switch (tok.type) {
      case Tok::kNumber: {
        const bool is_float = tok.value.find('.') != std::string::npos;
        auto n = node(is_float ? NodeKind::kFloat : NodeKind::kInt, tok.offset);
        n->num = std::strtod(tok.value.c_str(), nullptr);
        return n;
      }
      case Tok::kString: {
        auto n = node(NodeKind::kString, tok.offset);
        n->str = tok.value;
        while (is(Tok::kString)) n->str += t_[cur_++].value;  // adjacent literals concatenate
        return n;
      }
      case Tok::kIdent: {
        auto n = node(NodeKind::kIdentifier, tok.offset);
        n->str = tok.value;
        return n;
      }
      case Tok::kOpenParen: {
        auto e = expression_sequence(false);
        expect(Tok::kCloseParen, "')'");
        return e;
      }
      case Tok::kOpenSquare: {
        auto n = node(NodeKind::kArray, tok.offset);
        while (!is(Tok::kCloseSquare)) {
          if (cur_ >= t_.size()) fail("unexpected end of template in a list literal");
          n->list.push_back(expression());
          if (is(Tok::kComma)) ++cur_;
        }
        ++cur_;
        return n;
      }
      case Tok::kOpenCurly: {
        auto n = node(NodeKind::kObject, tok.offset);
        while (!is(Tok::kCloseCurly)) {
          if (cur_ >= t_.size()) fail("unexpected end of template in a dict literal");
          auto key = expression();
          expect(Tok::kColon, "':' between key and value");
          auto value = expression();
          n->pairs.emplace_back(std::move(key), std::move(value));
          if (is(Tok::kComma)) ++cur_;
        }
        ++cur_;
        return n;
      }
      default:
        fail_at(tok.offset, std::string("unexpected ") + tok_name(tok.type) +
                                (tok.value.empty() ? "" : " '" + tok.value + "'"));
    }
  }

  std::string_view src_;
  const std::vector<Token>& t_;
  size_t cur_ = 0;
  int depth_ = 0;
  int max_nesting_;
};

}  // namespace

NodePtr parse(std::string_view source, const std::vector<Token>& tokens, int max_nesting) {
  return Parser(source, tokens, max_nesting).program();
}

}  // namespace mixserve::jinja
