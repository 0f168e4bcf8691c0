// Runs the GPU block kernel's phases (csrc/kernels/dominance_block.h) on the host with
// SerialExec, for tests/test_block_row.py. Reads one problem per invocation from stdin:
//   dtype(f32|f64) cost beta label_smoothing descending n m weighted need_grad
//   u[n] v[m], then wu[n] when weighted & 1 and wv[m] when weighted & 2
// and prints the cost, then grad_u and grad_v when need_grad, one value per line.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "kernels/dominance_block.h"

namespace k = aot_loss::kernels;

// strtod, unlike operator>>, reads nan and inf.
double read_number() {
  std::string token;
  std::cin >> token;
  return std::strtod(token.c_str(), nullptr);
}

template <typename T>
int run(const std::string& cost, double beta, double ls, bool descending, int64_t n, int64_t m, int weighted,
        bool need_grad) {
  std::vector<T> u(n), v(m), wu(weighted & 1 ? n : 0), wv(weighted & 2 ? m : 0);
  for (auto* values : {&u, &v, &wu, &wv}) {
    for (auto& x : *values) x = static_cast<T>(read_number());
  }
  if (!std::cin) return 2;
  T cost_out = T(0);
  std::vector<T> gu(n), gv(m);
  const k::RowIo<T> io{u.data(), v.data(), weighted & 1 ? wu.data() : nullptr, weighted & 2 ? wv.data() : nullptr,
                       n, m, {k::parse_cost(cost), beta, ls}, &cost_out,
                       need_grad ? gu.data() : nullptr, need_grad ? gv.data() : nullptr};
  const int64_t p = k::sort_width(n + m);
  std::vector<k::key_t<T>> keys(p);
  std::vector<uint32_t> tags(p), counts(n + m);
  std::vector<double> levels(n + m), cells(n + m);
  k::RowWork<T> work{keys.data(), tags.data(), p, levels.data(), counts.data(), cells.data()};
  k::SerialExec ex{descending};
  k::block_row(ex, io, work);
  std::printf("%.17g\n", static_cast<double>(cost_out));
  if (need_grad) {
    for (T g : gu) std::printf("%.17g\n", static_cast<double>(g));
    for (T g : gv) std::printf("%.17g\n", static_cast<double>(g));
  }
  return 0;
}

int main() {
  std::string dtype, cost;
  double beta, ls;
  int descending, weighted, need_grad;
  int64_t n, m;
  std::cin >> dtype >> cost >> beta >> ls >> descending >> n >> m >> weighted >> need_grad;
  if (!std::cin || n < 1 || m < 1) return 2;
  return dtype == "f32" ? run<float>(cost, beta, ls, descending, n, m, weighted, need_grad)
                        : run<double>(cost, beta, ls, descending, n, m, weighted, need_grad);
}
