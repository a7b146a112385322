// Register-tiled rows x W products for CT-RNN steps on the CPU, shared by the kernels of
// ctrnn_dyn.native (recurrence.cc: training's forward and backward loops; benettin.cc: the
// state and its tangent basis in a Lyapunov spectrum): vector types of the build's widest
// registers, the activations (tanh by glibc's libmvec where the build found it) and one time step
// cur += c * prev + s * (A W) of a block of rows.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace ctrnn_dyn {
#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif

template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(kVectorBytes)));
  typedef T unaligned __attribute__((vector_size(kVectorBytes), aligned(alignof(T))));
  static constexpr int kLanes = kVectorBytes / sizeof(T);
};
template <typename T>
using vec_t = typename Vec<T>::type;

template <typename T>
inline vec_t<T> Load(const T* p) {
  return *reinterpret_cast<const typename Vec<T>::unaligned*>(p);
}
template <typename T>
inline void Store(T* p, vec_t<T> v) {
  *reinterpret_cast<typename Vec<T>::unaligned*>(p) = v;
}

// Vector tanh from glibc's libmvec when the build found it (CTRNN_DYN_LIBMVEC), else scalar.
#if defined(CTRNN_DYN_LIBMVEC) && defined(__AVX512F__)
extern "C" vec_t<float> _ZGVeN16v_tanhf(vec_t<float>);
extern "C" vec_t<float> _ZGVeN16v_logf(vec_t<float>);
inline vec_t<float> VectorLog(vec_t<float> x) { return _ZGVeN16v_logf(x); }
extern "C" vec_t<double> _ZGVeN8v_tanh(vec_t<double>);
inline vec_t<float> VectorTanh(vec_t<float> x) { return _ZGVeN16v_tanhf(x); }
inline vec_t<double> VectorTanh(vec_t<double> x) { return _ZGVeN8v_tanh(x); }
#define CTRNN_DYN_VECTOR_TANH 1
#elif defined(CTRNN_DYN_LIBMVEC) && defined(__AVX2__)
extern "C" vec_t<float> _ZGVdN8v_tanhf(vec_t<float>);
extern "C" vec_t<float> _ZGVdN8v_logf(vec_t<float>);
inline vec_t<float> VectorLog(vec_t<float> x) { return _ZGVdN8v_logf(x); }
extern "C" vec_t<double> _ZGVdN4v_tanh(vec_t<double>);
inline vec_t<float> VectorTanh(vec_t<float> x) { return _ZGVdN8v_tanhf(x); }
inline vec_t<double> VectorTanh(vec_t<double> x) { return _ZGVdN4v_tanh(x); }
#define CTRNN_DYN_VECTOR_TANH 1
#endif
#ifndef CTRNN_DYN_VECTOR_TANH
inline vec_t<float> VectorLog(vec_t<float> x) {
  float lanes[Vec<float>::kLanes];
  Store<float>(lanes, x);
  for (float& l : lanes) l = std::log(l);
  return Load<float>(lanes);
}
#endif

enum Activation : int32_t { kTanh = 0, kRelu = 1 };

template <typename T>
void Activate(int32_t act, const T* x, T* r, int64_t len) {
  int64_t i = 0;
  if (act == kTanh) {
#ifdef CTRNN_DYN_VECTOR_TANH
    constexpr int L = Vec<T>::kLanes;
    for (; i + L <= len; i += L) Store<T>(r + i, VectorTanh(Load<T>(x + i)));
#endif
    for (; i < len; ++i) r[i] = std::tanh(x[i]);
  } else {
    for (; i < len; ++i) r[i] = (x[i] > T(0) || x[i] != x[i]) ? x[i] : T(0);  // NaN stays NaN
  }
}

template <typename T>
inline vec_t<T> Derivative(int32_t act, vec_t<T> r) {
  using V = vec_t<T>;
  const V one = V{} + T(1);
  return act == kTanh ? one - r * r : (r > V{} ? one : V{});
}

// The first m lanes of a vector (the last, partial vector of a row); the other lanes are 0.
template <typename T>
inline vec_t<T> LoadPart(const T* p, int64_t m) {
  T lanes[Vec<T>::kLanes] = {};
  std::memcpy(lanes, p, m * sizeof(T));
  return Load<T>(lanes);
}
template <typename T>
inline void StorePart(T* p, vec_t<T> v, int64_t m) {
  T lanes[Vec<T>::kLanes];
  Store<T>(lanes, v);
  std::memcpy(p, lanes, m * sizeof(T));
}

// R rows x NV vectors from column j of: cur += c * prev + s * (A W), with s = a f'(x) from the
// rates F (backward) or s = 1 (forward, F null). W's rows are ws apart; when the last vector of
// a row is partial (kPartial: m lanes), W comes zero-padded to whole vectors.
template <typename T, int R, int NV, bool kPartial = false>
inline void Tile(T* cur, const T* prev, const T* A, const T* W, int64_t ws, const T* c,
                 const T* F, const T* a, int32_t act, int64_t n, int64_t j, int64_t m = 0) {
  using V = vec_t<T>;
  constexpr int L = Vec<T>::kLanes;
  auto load = [m](const T* p) { return kPartial ? LoadPart<T>(p, m) : Load<T>(p); };
  V acc[R][NV];
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = V{};
  for (int64_t k = 0; k < n; ++k) {
    V w[NV];
    for (int v = 0; v < NV; ++v) w[v] = Load<T>(W + k * ws + j + v * L);
    for (int i = 0; i < R; ++i) {
      const T s = A[i * n + k];
      for (int v = 0; v < NV; ++v) acc[i][v] += s * w[v];
    }
  }
  for (int v = 0; v < NV; ++v) {
    const int64_t col = j + v * L;
    const V cv = load(c + col);
    for (int i = 0; i < R; ++i) {
      const int64_t o = i * n + col;
      V upd = acc[i][v];
      if (F) upd = upd * (Derivative<T>(act, load(F + o)) * load(a + col));
      const V out = load(cur + o) + cv * load(prev + o) + upd;
      if constexpr (kPartial) StorePart<T>(cur + o, out, m);
      else Store<T>(cur + o, out);
    }
  }
}

// Tile shapes measured at B = 32, n = 128 (float32, AVX-512, one core): 8 rows x 3 vectors (24
// of the 32 registers accumulate) ran at 87-98 GFLOP/s, 6 x 4 at 73-81, 4 x 4 at 47-54.
constexpr int kRowBlock = kVectorBytes == 64 ? 8 : 4;
constexpr int kColumnVectors = 3;

template <typename T, int R>
inline void Rows(T* cur, const T* prev, const T* A, const T* W, int64_t ws, const T* c,
                 const T* F, const T* a, int32_t act, int64_t n) {
  constexpr int L = Vec<T>::kLanes;
  int64_t j = 0;
  for (; j + kColumnVectors * L <= n; j += kColumnVectors * L)
    Tile<T, R, kColumnVectors>(cur, prev, A, W, ws, c, F, a, act, n, j);
  for (; j + L <= n; j += L) Tile<T, R, 1>(cur, prev, A, W, ws, c, F, a, act, n, j);
  if (j < n) Tile<T, R, 1, true>(cur, prev, A, W, ws, c, F, a, act, n, j, n - j);
}

// One time step for `rows` rows starting at the given row pointers.
template <typename T>
void Step(T* cur, const T* prev, const T* A, const T* W, int64_t ws, const T* c, const T* F,
          const T* a, int32_t act, int64_t rows, int64_t n) {
  int64_t b = 0;
  auto blocks = [&](auto rows_per_tile) {
    constexpr int R = decltype(rows_per_tile)::value;
    for (; b + R <= rows; b += R) {
      const int64_t o = b * n;
      Rows<T, R>(cur + o, prev + o, A + o, W, ws, c, F ? F + o : nullptr, a, act, n);
    }
  };
  blocks(std::integral_constant<int, kRowBlock>{});
  blocks(std::integral_constant<int, 4>{});
  blocks(std::integral_constant<int, 1>{});
}

// W as the tiles read it: itself when rows are whole vectors, else a zero-padded copy.
template <typename T>
class PaddedWeights {
 public:
  PaddedWeights(const T* W, int64_t n) {
    constexpr int L = Vec<T>::kLanes;
    stride_ = (n + L - 1) / L * L;
    if (stride_ == n) {
      data_ = W;
      return;
    }
    copy_.assign(n * stride_, T(0));
    for (int64_t k = 0; k < n; ++k) std::memcpy(&copy_[k * stride_], W + k * n, n * sizeof(T));
    data_ = copy_.data();
  }
  const T* data() const { return data_; }
  int64_t stride() const { return stride_; }

 private:
  const T* data_;
  int64_t stride_;
  std::vector<T> copy_;
};

}  // namespace ctrnn_dyn
