// Tokens -> syntax tree, with the grammar and precedence of @huggingface/jinja's parser.
#pragma once

#include <string_view>
#include <vector>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/lexer.h"

namespace mixserve::jinja {

// Throws mixserve::Error naming the construct and its line:column. max_nesting bounds the
// depth of nested blocks and brackets (deeper input would exhaust the stack).
NodePtr parse(std::string_view source, const std::vector<Token>& tokens, int max_nesting);

}  // namespace mixserve::jinja
