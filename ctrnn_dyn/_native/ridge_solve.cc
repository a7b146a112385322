// Levenberg-Marquardt's exact step for a batch of small systems, as an XLA FFI handler for the CPU:
//
//   x = (A + ridge I)^-1 b,   A (..., d, d) symmetric positive semi-definite (J^T J), b (..., d),
//   ridge (...),  by Cholesky A + ridge I = U^T U and two triangular solves.
//
// Under vmap XLA calls LAPACK once per matrix (potrf, then two trsv): at d = 16 the calls' fixed
// cost is most of the time, at d = 100 the triangular solves take nearly as long as the
// factorisation. Here each matrix is factored right-looking in upper form, in panels of four
// rows, every update a contiguous row update the compiler vectorises, and the batch is spread
// over XLA's thread pool (spread = true) or solved on the calling thread (programs of several
// host devices running at once).
// Only the upper triangle of A is read. A matrix that is not numerically positive definite (a
// pivot <= 0 or not finite) gives a NaN solution, as XLA's Cholesky does.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using ctrnn_dyn::ParallelChunks;

namespace {

// Rows of U factored together: the trailing rows get one rank-4 update per panel instead of four
// rank-1 updates (a quarter of the passes over a matrix that lives in L2 at d = 100).
constexpr int64_t kPanel = 4;

// One system: U (d x d scratch) = Cholesky factor of A + ridge I in upper form, x = solution.
template <typename T>
void RidgeSolveOne(int64_t d, const T* __restrict A, const T* __restrict b, T ridge,
                   T* __restrict x, T* __restrict U) {
  std::memcpy(U, A, sizeof(T) * d * d);
  for (int64_t j = 0; j < d; ++j) U[j * d + j] += ridge;
  // U[i, k] -= U[j, i] U[j, k] for the rows i of [i0, i1), k >= i
  auto rank1 = [&](int64_t j, int64_t i0, int64_t i1) {
    const T* Uj = U + j * d;
    for (int64_t i = i0; i < i1; ++i) {
      T* __restrict Ui = U + i * d;
      const T s = Uj[i];
      for (int64_t k = i; k < d; ++k) Ui[k] -= s * Uj[k];
    }
  };
  for (int64_t j0 = 0; j0 < d; j0 += kPanel) {
    const int64_t j1 = std::min(d, j0 + kPanel);
    for (int64_t j = j0; j < j1; ++j) {  // the panel's rows, unblocked
      T* Uj = U + j * d;
      if (!(Uj[j] > T(0)) || !std::isfinite(Uj[j])) {
        std::fill(x, x + d, std::numeric_limits<T>::quiet_NaN());
        return;
      }
      const T p = std::sqrt(Uj[j]);
      const T inv = T(1) / p;
      Uj[j] = p;
      for (int64_t k = j + 1; k < d; ++k) Uj[k] *= inv;
      rank1(j, j + 1, j1);
    }
    if (j1 - j0 < kPanel) {
      for (int64_t j = j0; j < j1; ++j) rank1(j, j1, d);
      continue;
    }
    const T* R0 = U + j0 * d;
    const T* R1 = R0 + d;
    const T* R2 = R1 + d;
    const T* R3 = R2 + d;
    for (int64_t i = j1; i < d; ++i) {
      T* __restrict Ui = U + i * d;
      const T s0 = R0[i], s1 = R1[i], s2 = R2[i], s3 = R3[i];
      for (int64_t k = i; k < d; ++k) Ui[k] -= s0 * R0[k] + s1 * R1[k] + s2 * R2[k] + s3 * R3[k];
    }
  }
  // U^T y = b, row updates forward; then U x = y, dot products backward
  std::memcpy(x, b, sizeof(T) * d);
  for (int64_t j = 0; j < d; ++j) {
    const T* Uj = U + j * d;
    x[j] /= Uj[j];
    const T xj = x[j];
    for (int64_t k = j + 1; k < d; ++k) x[k] -= xj * Uj[k];
  }
  for (int64_t i = d - 1; i >= 0; --i) {
    const T* Ui = U + i * d;
    T acc = x[i];
    for (int64_t k = i + 1; k < d; ++k) acc -= Ui[k] * x[k];
    x[i] = acc / Ui[i];
  }
}

// Workers for a batch: one per ~2e5 multiply-adds of factorisation (less work does not pay for
// scheduling a pool task), at most the pool's threads and the batch.
int64_t Workers(int64_t batch, int64_t d, int64_t threads) {
  const double work = static_cast<double>(batch) * d * d * d / 3.0;
  const int64_t wanted = static_cast<int64_t>(work / 2e5) + 1;
  return std::max<int64_t>(1, std::min({wanted, threads, batch}));
}

template <typename T>
void RidgeSolveBatch(ffi::ThreadPool& pool, bool spread, int64_t batch, int64_t d, const T* A,
                     const T* b, const T* ridge, T* x) {
  const int64_t workers = spread ? Workers(batch, d, std::max<int64_t>(1, pool.num_threads())) : 1;
  const int64_t per = (batch + workers - 1) / workers;
  ParallelChunks(pool, (batch + per - 1) / per, workers, [=](int64_t chunk) {
    std::vector<T> U(d * d);
    const int64_t end = std::min(batch, (chunk + 1) * per);
    for (int64_t e = chunk * per; e < end; ++e)
      RidgeSolveOne<T>(d, A + e * d * d, b + e * d, ridge[e], x + e * d, U.data());
  });
}

ffi::Error RidgeSolveImpl(ffi::ThreadPool pool, ffi::AnyBuffer a, ffi::AnyBuffer b,
                          ffi::AnyBuffer ridge, ffi::Result<ffi::AnyBuffer> x, bool spread) {
  auto bd = b.dimensions();
  if (bd.size() < 1) return ffi::Error::InvalidArgument("b must be (..., d)");
  const int64_t d = bd.back();
  const int64_t batch = d > 0 ? static_cast<int64_t>(b.element_count()) / d : 0;
  if (static_cast<int64_t>(a.element_count()) != batch * d * d ||
      static_cast<int64_t>(ridge.element_count()) != batch ||
      static_cast<int64_t>(x->element_count()) != batch * d)
    return ffi::Error::InvalidArgument("A must be (..., d, d), ridge (...) and x (..., d)");
  if (a.element_type() != b.element_type() || ridge.element_type() != b.element_type() ||
      x->element_type() != b.element_type())
    return ffi::Error::InvalidArgument("A, b, ridge and x must share one dtype");
  if (batch == 0) return ffi::Error::Success();
  auto run = [&](auto zero) {
    using T = decltype(zero);
    RidgeSolveBatch<T>(pool, spread, batch, d, static_cast<const T*>(a.untyped_data()),
                       static_cast<const T*>(b.untyped_data()),
                       static_cast<const T*>(ridge.untyped_data()),
                       static_cast<T*>(x->untyped_data()));
    return ffi::Error::Success();
  };
  switch (b.element_type()) {
    case ffi::DataType::F32:
      return run(float{});
    case ffi::DataType::F64:
      return run(double{});
    default:
      return ffi::Error::InvalidArgument("dtype must be float32 or float64");
  }
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(CtrnnDynRidgeSolve, RidgeSolveImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<bool>("spread"));
