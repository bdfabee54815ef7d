// Elementwise and matrix operations of the CPU reference, written to match Hugging Face
// transformers' float32 modules (MixtralRMSNorm, rotary embedding, nn.Linear, SiLU).
//
// Shapes: T = tokens, In / Out = a linear layer's input / output size, H = hidden, D = head dim.
// Every output element is computed by one thread in a fixed order, so results do not depend
// on the thread count or on which other tokens share the call.
#pragma once

#include <vector>

namespace mixserve::cpu {

// sum_i a[i] * b[i] in float, as 8 interleaved partial sums (lane i % 8) combined in a fixed
// tree at the end: a fixed order the compiler may still vectorize.
float dot(const float* a, const float* b, int n);

// y[t, o] = sum_i x[t, i] * w[o, i]  (nn.Linear without bias)
//   x: [T, In], w: [Out, In], y: [T, Out]. Threads split the output rows.
void linear(const float* x, int T, const float* w, int in, int out, float* y, int num_threads);

// MixtralRMSNorm: y = w * (x * rsqrt(mean(x^2) + eps)), per row.  x, y: [T, H], w: [H].
void rms_norm(const float* x, int T, int H, const float* w, float eps, float* y);

// inv_freq[i] = 1 / theta^(2i / D), i < D/2, computed in float32 as transformers does
// (`1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))`).
std::vector<float> rope_inv_freq(int D, double theta);

// Rotates each of `heads` vectors of x ([heads, D], in place) for `position`, with the
// rotate_half (non-interleaved) convention: angle_i = float(position) * inv_freq[i] for
// i < D/2, and for d < D/2:  x'[d] = x[d] cos - x[d + D/2] sin,
//                            x'[d + D/2] = x[d + D/2] cos + x[d] sin.
void apply_rope(float* x, int heads, int D, int position, const float* inv_freq);

// torch.nn.functional.silu in float32: x / (1 + exp(-x)).
float silu(float x);

}  // namespace mixserve::cpu
