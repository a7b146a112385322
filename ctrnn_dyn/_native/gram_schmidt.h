// Classical Gram-Schmidt, every vector projected twice, of one small basis held as rows, shared by
// the kernels of ctrnn_dyn.native (gram_schmidt.cc: a batch of bases; benettin.cc: the tangent
// basis of a Lyapunov spectrum):
//
//   a (k x n, rows a_j) -> q (k x n, orthonormal rows), r (k) = |diag R|,
//   v = a_j,  v <- v - sum_{i<j} (q_i . v) q_i  (twice),  r_j = |v|,  q_j = v / r_j
//
// (orthogonal to rounding while the rows are not numerically dependent; a row with nothing left,
// r_j = 0, stays zero).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace ctrnn_dyn {

// c[i] = q_i . v for the m rows q_i, in one pass over v: every row's sum in its own vector
// accumulators (the products of one row are independent chains, not one chain of n additions).
template <typename T>
void Dots(int64_t n, const T* __restrict q, int64_t m, const T* __restrict v, T* __restrict c) {
  constexpr int64_t W = 64 / sizeof(T);  // one AVX-512 register, or two AVX2 ones
  typedef T V __attribute__((vector_size(sizeof(T) * W)));
  auto load = [](const T* p) {
    V x;
    std::memcpy(&x, p, sizeof(V));
    return x;
  };
  for (int64_t i = 0; i < m; ++i) {
    const T* __restrict qi = q + i * n;
    V acc0{}, acc1{};
    int64_t t = 0;
    for (; t + 2 * W <= n; t += 2 * W) {
      acc0 += load(qi + t) * load(v + t);
      acc1 += load(qi + t + W) * load(v + t + W);
    }
    acc0 += acc1;
    T s = 0;
    for (int64_t l = 0; l < W; ++l) s += acc0[l];
    for (; t < n; ++t) s += qi[t] * v[t];
    c[i] = s;
  }
}

template <typename T>
void OrthonormaliseOne(int64_t k, int64_t n, const T* __restrict a, T* __restrict q,
                       T* __restrict r, T* __restrict c) {
  for (int64_t j = 0; j < k; ++j) {
    T* __restrict v = q + j * n;
    std::memcpy(v, a + j * n, sizeof(T) * n);
    for (int pass = 0; pass < 2 && j > 0; ++pass) {
      Dots<T>(n, q, j, v, c);
      for (int64_t i = 0; i < j; ++i) {
        const T* __restrict qi = q + i * n;
        const T ci = c[i];
        for (int64_t t = 0; t < n; ++t) v[t] -= ci * qi[t];
      }
    }
    T norm2;
    Dots<T>(n, v, 1, v, &norm2);
    const T norm = std::sqrt(norm2);
    const T scale = T(1) / (norm > T(0) ? norm : T(1));
    for (int64_t t = 0; t < n; ++t) v[t] *= scale;
    r[j] = norm;
  }
}

}  // namespace ctrnn_dyn
