// The built-in convex costs h(d) and their slopes h'(d), d = Q_U(t) - Q_V(t), on host and device.
// Mirrors aot_loss/_costs.py (the spec); the slope at a kink and at NaN
// follows torch's relu backward (relu'(0) = 0, relu'(NaN) = 1).
#pragma once

#include <cstdint>
#include <string_view>

#include "device.h"

namespace aot_loss::kernels {

enum class Cost : int { kLogistic, kSquaredHinge, kLeastSquares, kHinge, kUnknown };

inline Cost parse_cost(std::string_view name) {
  if (name == "logistic") return Cost::kLogistic;
  if (name == "squared_hinge") return Cost::kSquaredHinge;
  if (name == "least_squares") return Cost::kLeastSquares;
  if (name == "hinge") return Cost::kHinge;
  return Cost::kUnknown;
}

struct CostParams {
  Cost cost;
  double beta;
  double label_smoothing;
};

// softplus(x) = log(1 + exp(x)) without overflow, and its derivative sigmoid(x), from one
// shared e = exp(-|x|): the exponential is the costly part of the logistic cost.
template <typename T>
AOT_HD inline T softplus_with(T x, T e) {
  return (x > T(0) ? x : T(0)) + k_log1p(e);
}

template <typename T>
AOT_HD inline T sigmoid_with(T x, T e) {
  return x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}

// max(x, 0) that keeps NaN, as torch.relu does (std::fmax would drop it).
template <typename T>
AOT_HD inline T relu(T x) {
  return x > T(0) || x != x ? x : T(0);
}

// Returns h(d) and writes h'(d) to *slope.
template <typename T>
AOT_HD inline T cost_and_slope(T d, const CostParams& p, T* slope) {
  const T beta = static_cast<T>(p.beta);
  switch (p.cost) {
    case Cost::kLogistic: {
      const T ls = static_cast<T>(p.label_smoothing);
      const T z = beta * d;
      const T e = k_exp(-k_fabs(z));
      T h = softplus_with(-z, e);
      T s = -beta * sigmoid_with(-z, e);
      if (ls != T(0)) {
        h = (T(1) - ls) * h + ls * softplus_with(z, e);
        s = (T(1) - ls) * s + ls * beta * sigmoid_with(z, e);
      }
      *slope = s;
      return h;
    }
    case Cost::kSquaredHinge: {
      const T r = relu(beta - d);
      *slope = T(-2) * r;
      return r * r;
    }
    case Cost::kLeastSquares: {
      const T gap = beta - d;
      *slope = T(-2) * gap;
      return gap * gap;
    }
    case Cost::kHinge:
    default: {
      const T r = relu(beta - d);
      *slope = r <= T(0) ? T(0) : T(-1);  // as relu's backward: 0 at the kink, -1 at NaN
      return r;
    }
  }
}

}  // namespace aot_loss::kernels
