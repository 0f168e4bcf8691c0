// The built-in convex costs h(d) and their slopes h'(d), d = Q_U(t) - Q_V(t), on host and device.
// Mirrors aot_loss/_costs.py (the spec); the slope at a kink and at NaN
// follows torch's relu backward (relu'(0) = 0, relu'(NaN) = 1).
#pragma once

#include <cstdint>
#include <string_view>

#include "device.h"
#include "exp_log.h"

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
  return (x > T(0) ? x : T(0)) + log1p_unit(e);
}

template <typename T>
AOT_HD inline T sigmoid_with(T x, T e) {
  const T inv = T(1) / (T(1) + e);  // both sides computed: a select, so that loops vectorise
  return x >= T(0) ? inv : e * inv;
}

// max(x, 0) that keeps NaN, as torch.relu does (std::fmax would drop it).
template <typename T>
AOT_HD inline T relu(T x) {
  return x > T(0) || x != x ? x : T(0);
}

// The table of built-in costs: each returns h(d) and writes h'(d) to *slope.
template <typename T>
struct Logistic {  // (1 - ls) softplus(-beta d) + ls softplus(beta d)
  T beta, ls;
  AOT_HD T operator()(T d, T* slope) const {
    const T z = beta * d;
    const T e = exp_nonpositive(-k_fabs(z));
    T h = softplus_with(-z, e);
    T s = -beta * sigmoid_with(-z, e);
    if (ls != T(0)) {
      h = (T(1) - ls) * h + ls * softplus_with(z, e);
      s = (T(1) - ls) * s + ls * beta * sigmoid_with(z, e);
    }
    *slope = s;
    return h;
  }
};

template <typename T>
struct SquaredHinge {  // relu(beta - d)^2
  T beta;
  AOT_HD T operator()(T d, T* slope) const {
    const T r = relu(beta - d);
    *slope = T(-2) * r;
    return r * r;
  }
};

template <typename T>
struct LeastSquares {  // (beta - d)^2
  T beta;
  AOT_HD T operator()(T d, T* slope) const {
    const T gap = beta - d;
    *slope = T(-2) * gap;
    return gap * gap;
  }
};

template <typename T>
struct Hinge {  // relu(beta - d)
  T beta;
  AOT_HD T operator()(T d, T* slope) const {
    const T r = relu(beta - d);
    *slope = r <= T(0) ? T(0) : T(-1);  // as relu's backward: 0 at the kink, -1 at NaN
    return r;
  }
};

// The one place that maps a Cost to its function: returns f(cost). Loops over many elements
// dispatch once and call the cost inline, so that the loop can vectorise.
template <typename T, typename F>
AOT_HD inline auto with_cost(const CostParams& p, const F& f) {
  const T beta = static_cast<T>(p.beta);
  switch (p.cost) {
    case Cost::kLogistic:
      return f(Logistic<T>{beta, static_cast<T>(p.label_smoothing)});
    case Cost::kSquaredHinge:
      return f(SquaredHinge<T>{beta});
    case Cost::kLeastSquares:
      return f(LeastSquares<T>{beta});
    case Cost::kHinge:
    default:
      return f(Hinge<T>{beta});
  }
}

template <typename T>
struct CostAt {
  T d;
  T* slope;
  template <typename C>
  AOT_HD T operator()(const C& cost) const {
    return cost(d, slope);
  }
};

// h(d), and h'(d) to *slope, for one element (per-element kernels: the GPU's threads).
template <typename T>
AOT_HD inline T cost_and_slope(T d, const CostParams& p, T* slope) {
  return with_cost<T>(p, CostAt<T>{d, slope});
}

}  // namespace aot_loss::kernels
