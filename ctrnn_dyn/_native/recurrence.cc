// The two recurrences of ctrnn_dyn.fast_path as XLA FFI handlers for the CPU.
//
// forward:  X[t] += c * X[t-1] + f(X[t-1]) W,         R[t-1] = f(X[t-1]),  t = 1..T
// backward: M[t-1] += c * M[t] + a * f'(x_t) * (M[t] W),   f'(x_t) from R[t],  t = T-1..1
//
// f is tanh (f' = 1 - r^2) or relu (f' = [r > 0]). Buffers are (..., T+1, B, n), row-major; W is (..., n, n), c and a are (..., n); leading dims
// (networks, under vmap) must agree. Batch rows are independent through time, so each worker
// runs whole sequences for a block of rows: no synchronisation per time step. One step of a
// block is a register-tiled matmul with the update fused into its store.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <type_traits>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

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
extern "C" vec_t<double> _ZGVeN8v_tanh(vec_t<double>);
inline vec_t<float> VectorTanh(vec_t<float> x) { return _ZGVeN16v_tanhf(x); }
inline vec_t<double> VectorTanh(vec_t<double> x) { return _ZGVeN8v_tanh(x); }
#define CTRNN_DYN_VECTOR_TANH 1
#elif defined(CTRNN_DYN_LIBMVEC) && defined(__AVX2__)
extern "C" vec_t<float> _ZGVdN8v_tanhf(vec_t<float>);
extern "C" vec_t<double> _ZGVdN4v_tanh(vec_t<double>);
inline vec_t<float> VectorTanh(vec_t<float> x) { return _ZGVdN8v_tanhf(x); }
inline vec_t<double> VectorTanh(vec_t<double> x) { return _ZGVdN4v_tanh(x); }
#define CTRNN_DYN_VECTOR_TANH 1
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

template <typename T>
inline T Derivative(int32_t act, T r) {
  return act == kTanh ? T(1) - r * r : (r > T(0) ? T(1) : T(0));
}

// R rows x NV vectors of: cur += c * prev + s * (A W), with s = a f'(x) from the rates F
// (backward) or s = 1 (forward, F null).
template <typename T, int R, int NV>
inline void Tile(T* cur, const T* prev, const T* A, const T* W, const T* c, const T* F,
                 const T* a, int32_t act, int64_t n, int64_t j) {
  using V = vec_t<T>;
  constexpr int L = Vec<T>::kLanes;
  V acc[R][NV];
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = V{};
  for (int64_t k = 0; k < n; ++k) {
    V w[NV];
    for (int v = 0; v < NV; ++v) w[v] = Load<T>(W + k * n + j + v * L);
    for (int i = 0; i < R; ++i) {
      const T s = A[i * n + k];
      for (int v = 0; v < NV; ++v) acc[i][v] += s * w[v];
    }
  }
  for (int v = 0; v < NV; ++v) {
    const int64_t col = j + v * L;
    const V cv = Load<T>(c + col);
    for (int i = 0; i < R; ++i) {
      const int64_t o = i * n + col;
      V upd = acc[i][v];
      if (F) upd = upd * (Derivative<T>(act, Load<T>(F + o)) * Load<T>(a + col));
      Store<T>(cur + o, Load<T>(cur + o) + cv * Load<T>(prev + o) + upd);
    }
  }
}

template <typename T, int R>
inline void TileScalar(T* cur, const T* prev, const T* A, const T* W, const T* c, const T* F,
                       const T* a, int32_t act, int64_t n, int64_t j) {
  for (int i = 0; i < R; ++i) {
    T acc = 0;
    for (int64_t k = 0; k < n; ++k) acc += A[i * n + k] * W[k * n + j];
    const int64_t o = i * n + j;
    if (F) acc *= Derivative<T>(act, F[o]) * a[j];
    cur[o] = cur[o] + c[j] * prev[o] + acc;
  }
}

// Tile shapes measured at B = 32, n = 128 (float32, AVX-512, one core): 8 rows x 3 vectors (24
// of the 32 registers accumulate) ran at 87-98 GFLOP/s, 6 x 4 at 73-81, 4 x 4 at 47-54.
constexpr int kRowBlock = kVectorBytes == 64 ? 8 : 4;
constexpr int kColumnVectors = 3;

template <typename T, int R>
inline void Rows(T* cur, const T* prev, const T* A, const T* W, const T* c, const T* F,
                 const T* a, int32_t act, int64_t n) {
  constexpr int L = Vec<T>::kLanes;
  int64_t j = 0;
  for (; j + kColumnVectors * L <= n; j += kColumnVectors * L)
    Tile<T, R, kColumnVectors>(cur, prev, A, W, c, F, a, act, n, j);
  for (; j + L <= n; j += L) Tile<T, R, 1>(cur, prev, A, W, c, F, a, act, n, j);
  for (; j < n; ++j) TileScalar<T, R>(cur, prev, A, W, c, F, a, act, n, j);
}

// One time step for `rows` rows starting at the given row pointers.
template <typename T>
void Step(T* cur, const T* prev, const T* A, const T* W, const T* c, const T* F, const T* a,
          int32_t act, int64_t rows, int64_t n) {
  int64_t b = 0;
  auto blocks = [&](auto rows_per_tile) {
    constexpr int R = decltype(rows_per_tile)::value;
    for (; b + R <= rows; b += R) {
      const int64_t o = b * n;
      Rows<T, R>(cur + o, prev + o, A + o, W, c, F ? F + o : nullptr, a, act, n);
    }
  };
  blocks(std::integral_constant<int, kRowBlock>{});
  blocks(std::integral_constant<int, 4>{});
  blocks(std::integral_constant<int, 1>{});
}

// Runs fn(0..n_chunks-1) on the calling thread and up to (pool threads - 1) pool tasks. Chunks
// are claimed from a shared counter, so the caller never waits for a chunk nobody started.
template <typename Fn>
void ParallelChunks(ffi::ThreadPool& pool, int64_t n_chunks, int64_t workers, Fn fn) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto state = std::make_shared<State>();
  auto work = [state, n_chunks, fn]() {
    for (int64_t i; (i = state->next.fetch_add(1)) < n_chunks;) {
      fn(i);
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  for (int64_t w = 1; w < workers; ++w) {
    auto task = work;
    pool.Schedule(std::move(task));
  }
  work();
  while (state->done.load(std::memory_order_acquire) < n_chunks) std::this_thread::yield();
}

struct Layout {
  int64_t nets, steps1, batch, n;  // steps1 = T + 1
};

ffi::Error CheckLayout(const ffi::AnyBuffer& x, const ffi::AnyBuffer& w, const ffi::AnyBuffer& c,
                       Layout* out) {
  auto xd = x.dimensions();
  if (xd.size() < 3) return ffi::Error::InvalidArgument("state buffer must be (..., T+1, B, n)");
  const int64_t r = xd.size();
  Layout l{1, xd[r - 3], xd[r - 2], xd[r - 1]};
  for (int64_t i = 0; i < r - 3; ++i) l.nets *= xd[i];
  if (w.element_count() != l.nets * l.n * l.n || c.element_count() != l.nets * l.n)
    return ffi::Error::InvalidArgument("weights must be (..., n, n) and c (..., n)");
  if (w.element_type() != x.element_type() || c.element_type() != x.element_type())
    return ffi::Error::InvalidArgument("all buffers must share one dtype");
  *out = l;
  return ffi::Error::Success();
}

// Pieces per network so that there is a chunk for each worker; pieces are whole row blocks.
int64_t RowsPerChunk(const Layout& l, int64_t workers) {
  const int64_t pieces = std::max<int64_t>(1, (workers + l.nets - 1) / l.nets);
  int64_t rows = (l.batch + pieces - 1) / pieces;
  rows = (rows + kRowBlock - 1) / kRowBlock * kRowBlock;
  return std::max<int64_t>(1, std::min(rows, l.batch));
}

template <typename T>
void Forward(ffi::ThreadPool& pool, const Layout& l, T* X, T* Rt, const T* W, const T* c,
             int32_t act) {
  const int64_t workers = std::max<int64_t>(1, pool.num_threads());
  const int64_t rows = RowsPerChunk(l, workers);
  const int64_t per_net = (l.batch + rows - 1) / rows;
  const int64_t plane = l.batch * l.n, seq = l.steps1 * plane;
  ParallelChunks(pool, l.nets * per_net, workers, [=](int64_t chunk) {
    const int64_t e = chunk / per_net, b0 = (chunk % per_net) * rows;
    const int64_t nb = std::min(rows, l.batch - b0);
    T* Xe = X + e * seq + b0 * l.n;
    T* Re = Rt + e * seq + b0 * l.n;
    const T* We = W + e * l.n * l.n;
    const T* ce = c + e * l.n;
    for (int64_t t = 1; t < l.steps1; ++t) {
      T* prev = Xe + (t - 1) * plane;
      T* rate = Re + (t - 1) * plane;
      Activate<T>(act, prev, rate, nb * l.n);
      Step<T>(Xe + t * plane, prev, rate, We, ce, nullptr, nullptr, act, nb, l.n);
    }
    Activate<T>(act, Xe + (l.steps1 - 1) * plane, Re + (l.steps1 - 1) * plane, nb * l.n);
  });
}

template <typename T>
void Backward(ffi::ThreadPool& pool, const Layout& l, T* M, const T* F, const T* W, const T* c,
              const T* a, int32_t act) {
  const int64_t workers = std::max<int64_t>(1, pool.num_threads());
  const int64_t rows = RowsPerChunk(l, workers);
  const int64_t per_net = (l.batch + rows - 1) / rows;
  const int64_t plane = l.batch * l.n, seq = l.steps1 * plane;
  ParallelChunks(pool, l.nets * per_net, workers, [=](int64_t chunk) {
    const int64_t e = chunk / per_net, b0 = (chunk % per_net) * rows;
    const int64_t nb = std::min(rows, l.batch - b0);
    T* Me = M + e * seq + b0 * l.n;
    const T* Fe = F + e * seq + b0 * l.n;
    const T* We = W + e * l.n * l.n;
    for (int64_t t = l.steps1 - 2; t >= 1; --t) {
      const T* prev = Me + t * plane;
      Step<T>(Me + (t - 1) * plane, prev, prev, We, c + e * l.n, Fe + t * plane, a + e * l.n,
              act, nb, l.n);
    }
  });
}

void CopyIfNotAliased(const ffi::AnyBuffer& in, ffi::Result<ffi::AnyBuffer>& out) {
  if (out->untyped_data() != in.untyped_data())
    std::memcpy(out->untyped_data(), in.untyped_data(), in.size_bytes());
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::AnyBuffer c,
                       ffi::Result<ffi::AnyBuffer> x_out, ffi::Result<ffi::AnyBuffer> r_out,
                       int32_t activation) {
  Layout l;
  if (auto err = CheckLayout(x, w, c, &l); err.failure()) return err;
  if (activation != kTanh && activation != kRelu)
    return ffi::Error::InvalidArgument("activation must be 0 (tanh) or 1 (relu)");
  CopyIfNotAliased(x, x_out);
  switch (x.element_type()) {
    case ffi::DataType::F32:
      Forward<float>(pool, l, static_cast<float*>(x_out->untyped_data()),
                     static_cast<float*>(r_out->untyped_data()),
                     static_cast<const float*>(w.untyped_data()),
                     static_cast<const float*>(c.untyped_data()), activation);
      return ffi::Error::Success();
    case ffi::DataType::F64:
      Forward<double>(pool, l, static_cast<double*>(x_out->untyped_data()),
                      static_cast<double*>(r_out->untyped_data()),
                      static_cast<const double*>(w.untyped_data()),
                      static_cast<const double*>(c.untyped_data()), activation);
      return ffi::Error::Success();
    default:
      return ffi::Error::InvalidArgument("dtype must be float32 or float64");
  }
}

ffi::Error BackwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer m, ffi::AnyBuffer f, ffi::AnyBuffer w,
                        ffi::AnyBuffer c, ffi::AnyBuffer a, ffi::Result<ffi::AnyBuffer> m_out,
                        int32_t activation) {
  Layout l;
  if (auto err = CheckLayout(m, w, c, &l); err.failure()) return err;
  if (activation != kTanh && activation != kRelu)
    return ffi::Error::InvalidArgument("activation must be 0 (tanh) or 1 (relu)");
  if (f.element_count() != m.element_count() || a.element_count() != c.element_count() ||
      f.element_type() != m.element_type() || a.element_type() != m.element_type())
    return ffi::Error::InvalidArgument("rates must match the adjoint buffer and a must match c");
  CopyIfNotAliased(m, m_out);
  switch (m.element_type()) {
    case ffi::DataType::F32:
      Backward<float>(pool, l, static_cast<float*>(m_out->untyped_data()),
                      static_cast<const float*>(f.untyped_data()),
                      static_cast<const float*>(w.untyped_data()),
                      static_cast<const float*>(c.untyped_data()),
                      static_cast<const float*>(a.untyped_data()), activation);
      return ffi::Error::Success();
    case ffi::DataType::F64:
      Backward<double>(pool, l, static_cast<double*>(m_out->untyped_data()),
                       static_cast<const double*>(f.untyped_data()),
                       static_cast<const double*>(w.untyped_data()),
                       static_cast<const double*>(c.untyped_data()),
                       static_cast<const double*>(a.untyped_data()), activation);
      return ffi::Error::Success();
    default:
      return ffi::Error::InvalidArgument("dtype must be float32 or float64");
  }
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(CtrnnDynForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int32_t>("activation"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(CtrnnDynBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int32_t>("activation"));
