// Control-flow signals of {% break %} and {% continue %}, thrown by the statement and caught by
// the enclosing for loop (as the reference does with exceptions). Not errors: they never
// derive from mixserve::Error, so error handlers pass them through.
#pragma once

namespace mixserve::jinja {

struct BreakSignal {};
struct ContinueSignal {};

}  // namespace mixserve::jinja
