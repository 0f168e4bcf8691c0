// The built-in convex costs h(d) and their slopes h'(d), d = Q_U(t) - Q_V(t), on host and device.
// Mirrors aot_loss/_costs.py (the spec); the slope at a kink and at NaN
// follows torch's relu backward (relu'(0) = 0, relu'(NaN) = 1).
//
// Adding a cost: its functor below (fields beta and ls, h(d) returned, h'(d) written to
// *slope) and one line in AOT_LOSS_COSTS. The ids, the name lookup, the dispatch and the
// table the library exports (bindings/facts.cpp) derive from that list; tests/test_costs.py
// checks that it names the costs of aot_loss/_costs.py.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

#include "common/device.h"
#include "common/exp_log.h"

namespace aot_loss::kernels {

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
  T beta, ls;
  AOT_HD T operator()(T d, T* slope) const {
    const T r = relu(beta - d);
    *slope = T(-2) * r;
    return r * r;
  }
};

template <typename T>
struct LeastSquares {  // (beta - d)^2
  T beta, ls;
  AOT_HD T operator()(T d, T* slope) const {
    const T gap = beta - d;
    *slope = T(-2) * gap;
    return gap * gap;
  }
};

template <typename T>
struct Hinge {  // relu(beta - d)
  T beta, ls;
  AOT_HD T operator()(T d, T* slope) const {
    const T r = relu(beta - d);
    *slope = r <= T(0) ? T(0) : T(-1);  // as relu's backward: 0 at the kink, -1 at NaN
    return r;
  }
};

// An id the table does not hold: NaN costs and slopes. Unreachable through the bindings,
// which reject an unknown name (cost_id) before any kernel runs.
template <typename T>
struct UnknownCost {
  T beta, ls;
  AOT_HD T operator()(T, T* slope) const {
    *slope = T(NAN);
    return T(NAN);
  }
};

// The built-in costs: (the name Python passes, the functor). Their order gives the ids.
#define AOT_LOSS_COSTS(X)            \
  X("logistic", Logistic)             \
  X("squared_hinge", SquaredHinge)    \
  X("least_squares", LeastSquares)    \
  X("hinge", Hinge)

enum class Cost : int {
#define AOT_LOSS_COST_ID(name, Functor) k##Functor,
  AOT_LOSS_COSTS(AOT_LOSS_COST_ID)
#undef AOT_LOSS_COST_ID
  kUnknown
};

inline bool known_cost(Cost cost) {
  return static_cast<int>(cost) >= 0 && static_cast<int>(cost) < static_cast<int>(Cost::kUnknown);
}

struct CostParams {
  Cost cost;
  double beta;
  double label_smoothing;
};

// The id of a cost name, kUnknown for a name the table does not hold.
inline Cost cost_id(std::string_view name) {
#define AOT_LOSS_COST_NAME(cost_name, Functor) \
  if (name == cost_name) return Cost::k##Functor;
  AOT_LOSS_COSTS(AOT_LOSS_COST_NAME)
#undef AOT_LOSS_COST_NAME
  return Cost::kUnknown;
}

// The one place that maps a Cost to its functor: returns f(cost). Loops over many elements
// dispatch once and call the cost inline, so that the loop can vectorise.
template <typename T, typename F>
AOT_HD inline auto with_cost(const CostParams& p, const F& f) {
  const T beta = static_cast<T>(p.beta), ls = static_cast<T>(p.label_smoothing);
  switch (p.cost) {
#define AOT_LOSS_COST_CASE(name, Functor) \
  case Cost::k##Functor:                  \
    return f(Functor<T>{beta, ls});
    AOT_LOSS_COSTS(AOT_LOSS_COST_CASE)
#undef AOT_LOSS_COST_CASE
    default:
      return f(UnknownCost<T>{beta, ls});
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
