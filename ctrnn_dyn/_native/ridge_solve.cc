// Levenberg-Marquardt's exact step for a batch of small systems, as XLA FFI handlers for the CPU:
//
//   x = (A + ridge I)^-1 b,   A (d x d) symmetric positive semi-definite (J^T J), by Cholesky
//   A + ridge I = G G^T and two triangular solves, A given
//
//   * as itself (CtrnnDynRidgeSolve, normal = false; only its upper triangle is read),
//   * as a Jacobian M, A = M^T M (CtrnnDynRidgeSolve, normal = true), or
//   * as a CT-RNN's Gauss-Newton parts (CtrnnDynGaussNewtonSolve): A = S M S - S P - (S P)^T +
//     diag(a2), S = diag(s), with M, P, a2 shared by a network's states and s (the activation's
//     slopes) per state.
//
// The last two form A here: no (d, d) matrix per state is written by XLA and read back (at
// d = 100, 80 kB a state, more than the caches hold for a batch).
//
// Under vmap XLA calls LAPACK once per matrix (potrf, then two trsv): at d = 16 the calls' fixed
// cost is most of the time, at d = 100 the triangular solves take nearly as long as the
// factorisation. Here, for d <= kLanesMaxD, kLanes systems are solved together, each scalar of
// the algorithm a vector across the systems; above it each matrix is factored right-looking in
// upper form, in panels of four rows, every update a contiguous row update the compiler
// vectorises. The batch is spread over XLA's thread pool (spread = true) or solved on the calling
// thread (programs of several host devices running at once). A system with a negative ridge is
// skipped (its solution zero; see SolveBatch). A matrix that is not numerically
// positive definite (a pivot <= 0 or not finite) gives a NaN solution, as XLA's Cholesky does.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "floats.h"
#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using ctrnn_dyn::ByType;
using ctrnn_dyn::ParallelChunks;
using ctrnn_dyn::Workers;

namespace {

// Rows of U factored together: the trailing rows get one rank-4 update per panel instead of four
// rank-1 updates (a quarter of the passes over a matrix that lives in L2 at d = 100).
constexpr int64_t kPanel = 4;

// Systems of this size or smaller are solved kLanes at a time (RidgeSolveLanes): faster than one
// by one at every size measured, 3.5 times at d = 16, 1.6 at d = 100, 1.25 at d = 256 (float64,
// one thread); above it the lanes' scratch, 2 kLanes d^2 numbers, is not worth holding. A group
// less than half full is solved one by one.
constexpr int64_t kLanesMaxD = 256;
template <typename T>
constexpr int kLanes = 32 / sizeof(T) * 2;  // two AVX registers

// Where a system's matrix comes from (see the top of the file).
enum class Source { kMatrix, kJacobian, kGaussNewton };

template <typename T>
struct System {
  const T* a;             // A, M (kJacobian) or the Gauss-Newton M
  const T* p = nullptr;   // kGaussNewton: P (d x d), a2 and s (d)
  const T* a2 = nullptr;
  const T* s = nullptr;
};

// The upper triangle of A into U (d x d): kJacobian by one rank-1 row update per row of M.
template <typename T>
void LoadUpper(int64_t d, Source src, const System<T>& sys, T* __restrict U) {
  if (src == Source::kMatrix) {
    std::memcpy(U, sys.a, sizeof(T) * d * d);
  } else if (src == Source::kJacobian) {
    std::fill(U, U + d * d, T(0));
    for (int64_t m = 0; m < d; ++m) {
      const T* __restrict Mm = sys.a + m * d;
      for (int64_t i = 0; i < d; ++i) {
        T* __restrict Ui = U + i * d;
        const T s = Mm[i];
        for (int64_t k = i; k < d; ++k) Ui[k] += s * Mm[k];
      }
    }
  } else {
    const T* __restrict s = sys.s;
    for (int64_t i = 0; i < d; ++i) {
      const T* __restrict Mi = sys.a + i * d;
      const T* __restrict Pi = sys.p + i * d;
      T* __restrict Ui = U + i * d;
      for (int64_t k = i; k < d; ++k) Ui[k] = s[i] * (s[k] * Mi[k] - Pi[k]) - s[k] * sys.p[k * d + i];
      Ui[i] += sys.a2[i];
    }
  }
}

// One system: U (d x d scratch) = Cholesky factor of A + ridge I in upper form, x = solution.
template <typename T>
void RidgeSolveOne(int64_t d, Source src, const System<T>& sys, const T* __restrict b, T ridge,
                   T* __restrict x, T* __restrict U) {
  LoadUpper(d, src, sys, U);
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

// kLanes systems e0 .. e0 + n - 1 (n <= kLanes; the other lanes solve I x = 0): every array held
// lane-interleaved, element (i, k) of lane l at [(i d + k) kLanes + l], so that each step of the
// algorithm is one vector operation across the systems. Cholesky A + ridge I = G G^T, G lower,
// left-looking: each entry of G is a dot product of two rows (contiguous: a column walk would
// stride by d kLanes elements and thrash the cache's sets at d = 32), accumulated in registers and
// stored once.
template <typename T>
void RidgeSolveLanes(int64_t d, int64_t n, Source src, const System<T>* sys,
                     const T* const* b, const T* ridge, T* const* x, T* __restrict G,
                     T* __restrict Mt) {
  constexpr int L = kLanes<T>;
  auto at = [=](T* base, int64_t i, int64_t k) { return base + (i * d + k) * L; };
  const bool normal = src == Source::kJacobian;
  if (normal) {  // M^T: row i of Mt is column i of M
    for (int64_t m = 0; m < d; ++m)
      for (int64_t i = 0; i < d; ++i)
        for (int l = 0; l < L; ++l) at(Mt, i, m)[l] = l < n ? sys[l].a[m * d + i] : T(m == i);
  } else if (src == Source::kMatrix) {  // the upper triangle of A, read as the lower one
    for (int64_t i = 0; i < d; ++i)
      for (int64_t k = i; k < d; ++k)
        for (int l = 0; l < L; ++l) at(G, k, i)[l] = l < n ? sys[l].a[i * d + k] : T(i == k);
  } else {  // G[k, i] = s_k (s_i M[k, i] - P[k, i]) - s_i P[i, k] + a2_k [k = i], k >= i
    T* s = Mt;  // the slopes interleaved; empty lanes: s = 0, a2 = 1 (A = I)
    for (int64_t k = 0; k < d; ++k)
      for (int l = 0; l < L; ++l) s[k * L + l] = l < n ? sys[l].s[k] : T(0);
    bool shared = true;  // one network's M, P, a2 for every lane (as under vmap over its states)
    for (int l = 1; l < n; ++l)
      shared &= sys[l].a == sys[0].a && sys[l].p == sys[0].p && sys[l].a2 == sys[0].a2;
    for (int64_t k = 0; k < d; ++k)
      for (int64_t i = 0; i <= k; ++i) {
        T* __restrict g = at(G, k, i);
        const T* __restrict sk = s + k * L;
        const T* __restrict si = s + i * L;
        if (shared) {
          const T m = sys[0].a[k * d + i], pki = sys[0].p[k * d + i], pik = sys[0].p[i * d + k];
          for (int l = 0; l < L; ++l) g[l] = sk[l] * (si[l] * m - pki) - si[l] * pik;
        } else {
          for (int l = 0; l < L; ++l) {
            const System<T>& y = sys[l < n ? l : 0];
            g[l] = sk[l] * (si[l] * y.a[k * d + i] - y.p[k * d + i]) - si[l] * y.p[i * d + k];
          }
        }
        if (i == k)
          for (int l = 0; l < L; ++l) g[l] += l < n ? sys[l].a2[k] : T(1);
      }
  }
  // out[q] = sum_{j < len} s_q[j] r[j] per lane for the R rows s_q: r is loaded once for all of
  // them, and the R accumulators are independent chains of FMAs (one row alone is bound by its
  // loads and by its chain's latency)
  typedef T V __attribute__((vector_size(sizeof(T) * L)));
  auto load = [](const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  };
  auto dots = [&](auto rows, const T* const* s, const T* __restrict r, int64_t len, T* out) {
    constexpr int R = decltype(rows)::value;
    V acc[R];
    for (int q = 0; q < R; ++q) acc[q] = V{};
    for (int64_t j = 0; j < len * L; j += L) {
      const V rj = load(r + j);
      for (int q = 0; q < R; ++q) acc[q] += load(s[q] + j) * rj;
    }
    std::memcpy(out, acc, sizeof(acc));
  };
  // rows k .. k + R - 1 of column i of G (k > i; k = i: the pivot's square), before the division
  // by the pivot: (A + ridge I)[k, i] - sum_{j < i} G[k, j] G[i, j], where
  // A[k, i] = sum_m M[m, k] M[m, i] if normal
  auto entries = [&](auto rows, int64_t k, int64_t i, T* acc) {
    constexpr int R = decltype(rows)::value;
    const T* s[R];
    if (normal) {
      for (int q = 0; q < R; ++q) s[q] = at(Mt, k + q, 0);
      dots(rows, s, at(Mt, i, 0), d, acc);
    } else {
      for (int q = 0; q < R; ++q)
        for (int l = 0; l < L; ++l) acc[q * L + l] = at(G, k + q, i)[l];
    }
    if (k == i)
      for (int l = 0; l < n; ++l) acc[l] += ridge[l];
    T sub[R * L];
    for (int q = 0; q < R; ++q) s[q] = at(G, k + q, 0);
    dots(rows, s, at(G, i, 0), i, sub);
    for (int q = 0; q < R * L; ++q) acc[q] -= sub[q];
  };
  using One = std::integral_constant<int, 1>;
  using Four = std::integral_constant<int, 4>;
  bool bad[L] = {};
  for (int64_t i = 0; i < d; ++i) {
    T acc[4 * L], inv[L];
    entries(One{}, i, i, acc);
    for (int l = 0; l < L; ++l) {
      bad[l] |= !(acc[l] > T(0)) || !(acc[l] < std::numeric_limits<T>::infinity());
      const T p = std::sqrt(acc[l]);
      at(G, i, i)[l] = p;
      inv[l] = T(1) / p;
    }
    int64_t k = i + 1;
    for (; k + 4 <= d; k += 4) {
      entries(Four{}, k, i, acc);
      for (int q = 0; q < 4; ++q)
        for (int l = 0; l < L; ++l) at(G, k + q, i)[l] = acc[q * L + l] * inv[l];
    }
    for (; k < d; ++k) {
      entries(One{}, k, i, acc);
      for (int l = 0; l < L; ++l) at(G, k, i)[l] = acc[l] * inv[l];
    }
  }
  // G y = b by dot products forward, then G^T x = y by row updates backward (y, x held in Mt)
  T* y = Mt;
  for (int64_t i = 0; i < d; ++i) {
    T acc[L];
    for (int l = 0; l < L; ++l) acc[l] = l < n ? b[l][i] : T(0);
    const T* __restrict g = at(G, i, 0);
    for (int64_t j = 0; j < i; ++j)
      for (int l = 0; l < L; ++l) acc[l] -= g[j * L + l] * y[j * L + l];
    for (int l = 0; l < L; ++l) y[i * L + l] = acc[l] / at(G, i, i)[l];
  }
  for (int64_t k = d - 1; k >= 0; --k) {
    T xk[L];
    const T* __restrict g = at(G, k, 0);
    for (int l = 0; l < L; ++l) xk[l] = y[k * L + l] /= g[k * L + l];
    for (int64_t j = 0; j < k; ++j)
      for (int l = 0; l < L; ++l) y[j * L + l] -= g[j * L + l] * xk[l];
  }
  for (int l = 0; l < n; ++l)
    for (int64_t i = 0; i < d; ++i)
      x[l][i] = bad[l] ? std::numeric_limits<T>::quiet_NaN() : y[i * L + l];
}

// The batch's systems: e -> its System, right-hand side and ridge; x is (batch, d). A system
// with a negative ridge is skipped, its solution zero: under vmap of a while loop every row runs
// the loop's body until the last row stops, and the solver marks the rows that have stopped
// (whose results the loop discards) so that they cost nothing here.
template <typename T, typename SystemOf, typename RhsOf, typename RidgeOf>
void SolveBatch(ffi::ThreadPool& pool, bool spread, int64_t batch, int64_t d, Source src,
                SystemOf system, RhsOf rhs, RidgeOf ridge, T* x) {
  std::vector<int64_t> live;
  live.reserve(batch);
  for (int64_t e = 0; e < batch; ++e) {
    if (ridge(e) < T(0))
      std::fill(x + e * d, x + (e + 1) * d, T(0));
    else
      live.push_back(e);  // NaN too: it gives a NaN solution, as XLA's Cholesky does
  }
  const int64_t count = static_cast<int64_t>(live.size());
  if (count == 0) return;
  const bool lanes = d <= kLanesMaxD;
  // a chunk of the live systems per worker, a whole number of lane groups where the lanes run
  constexpr int64_t L = kLanes<T>;
  const int64_t unit = lanes ? L : 1;
  const int64_t units = (count + unit - 1) / unit;
  // the factorisations' multiply-adds, d^3 / 3 a system
  const double work = static_cast<double>(count) * d * d * d / 3.0;
  const int64_t workers = Workers(pool, spread, work, count);
  const int64_t per = (std::min(units, (units + workers - 1) / workers)) * unit;
  const int64_t* index = live.data();
  ParallelChunks(pool, (count + per - 1) / per, workers, [=](int64_t chunk) {
    std::vector<T> U(d * d * unit), M(lanes ? d * d * unit : 0);
    const int64_t end = std::min(count, (chunk + 1) * per);
    for (int64_t i = chunk * per; i < end; i += unit) {
      const int64_t n = std::min(unit, end - i);
      if (lanes && 2 * n >= unit) {
        System<T> sys[L];
        const T* b[L];
        T r[L], *out[L];
        for (int64_t l = 0; l < n; ++l) {
          const int64_t e = index[i + l];
          sys[l] = system(e);
          b[l] = rhs(e);
          r[l] = ridge(e);
          out[l] = x + e * d;
        }
        RidgeSolveLanes<T>(d, n, src, sys, b, r, out, U.data(), M.data());
      } else {
        for (int64_t j = i; j < i + n; ++j) {
          const int64_t e = index[j];
          RidgeSolveOne<T>(d, src, system(e), rhs(e), ridge(e), x + e * d, U.data());
        }
      }
    }
  });
}

// The element of an input's batch for each element of the output's batch (row-major): the
// input's batch dimensions are each the output's or 1 (broadcast, as vmap's "expand_dims" passes
// an input it does not batch), or it has none (shared by all).
class BatchIndex {
 public:
  // core: the input's trailing dimensions that are not batch dimensions
  static bool Make(ffi::Span<const int64_t> in, int64_t core, ffi::Span<const int64_t> out,
                   BatchIndex* index) {
    const int64_t rank = static_cast<int64_t>(in.size()) - core;
    if (rank < 0) return false;
    index->sizes_.assign(out.begin(), out.end());
    index->strides_.assign(out.size(), 0);
    if (rank == 0) return true;
    if (rank != static_cast<int64_t>(out.size())) return false;
    int64_t stride = 1;
    for (int64_t j = rank - 1; j >= 0; --j) {
      if (in[j] != out[j] && in[j] != 1) return false;
      index->strides_[j] = in[j] == 1 ? 0 : stride;
      stride *= in[j];
    }
    return true;
  }
  int64_t operator()(int64_t e) const {
    int64_t at = 0;
    for (int64_t j = static_cast<int64_t>(sizes_.size()) - 1; j >= 0; --j) {
      at += (e % sizes_[j]) * strides_[j];
      e /= sizes_[j];
    }
    return at;
  }

 private:
  std::vector<int64_t> sizes_, strides_;
};

ffi::Error RidgeSolveImpl(ffi::ThreadPool pool, ffi::AnyBuffer a, ffi::AnyBuffer b,
                          ffi::AnyBuffer ridge, ffi::Result<ffi::AnyBuffer> x, bool spread,
                          bool normal) {
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
  return ByType(b.element_type(), [&](auto zero) {
    using T = decltype(zero);
    const T* A = static_cast<const T*>(a.untyped_data());
    const T* B = static_cast<const T*>(b.untyped_data());
    const T* R = static_cast<const T*>(ridge.untyped_data());
    SolveBatch<T>(
        pool, spread, batch, d, normal ? Source::kJacobian : Source::kMatrix,
        [=](int64_t e) { return System<T>{A + e * d * d}; }, [=](int64_t e) { return B + e * d; },
        [=](int64_t e) { return R[e]; }, static_cast<T*>(x->untyped_data()));
    return ffi::Error::Success();
  });
}

ffi::Error GaussNewtonSolveImpl(ffi::ThreadPool pool, ffi::AnyBuffer m, ffi::AnyBuffer p,
                                ffi::AnyBuffer a2, ffi::AnyBuffer s, ffi::AnyBuffer b,
                                ffi::AnyBuffer ridge, ffi::Result<ffi::AnyBuffer> x, bool spread) {
  auto xd = x->dimensions();
  if (xd.size() < 1) return ffi::Error::InvalidArgument("x must be (..., d)");
  const int64_t d = xd.back();
  ffi::Span<const int64_t> out(xd.begin(), xd.size() - 1);
  BatchIndex im, ip, ia, is, ib, ir;
  if (m.dimensions().size() < 2 || m.dimensions().back() != d ||
      p.dimensions().size() < 2 || p.dimensions().back() != d || a2.dimensions().back() != d ||
      s.dimensions().back() != d || b.dimensions().back() != d ||
      !BatchIndex::Make(m.dimensions(), 2, out, &im) ||
      !BatchIndex::Make(p.dimensions(), 2, out, &ip) ||
      !BatchIndex::Make(a2.dimensions(), 1, out, &ia) ||
      !BatchIndex::Make(s.dimensions(), 1, out, &is) ||
      !BatchIndex::Make(b.dimensions(), 1, out, &ib) ||
      !BatchIndex::Make(ridge.dimensions(), 0, out, &ir))
    return ffi::Error::InvalidArgument(
        "M and P must be (..., d, d), a2, s, b and x (..., d), ridge (...), their leading "
        "dimensions x's or 1");
  for (auto t : {m.element_type(), p.element_type(), a2.element_type(), s.element_type(),
                 b.element_type(), ridge.element_type()})
    if (t != x->element_type())
      return ffi::Error::InvalidArgument("M, P, a2, s, b, ridge and x must share one dtype");
  const int64_t batch = d > 0 ? static_cast<int64_t>(x->element_count()) / d : 0;
  if (batch == 0) return ffi::Error::Success();
  return ByType(x->element_type(), [&](auto zero) {
    using T = decltype(zero);
    auto data = [](ffi::AnyBuffer buffer) { return static_cast<const T*>(buffer.untyped_data()); };
    const T *M = data(m), *P = data(p), *A2 = data(a2), *S = data(s), *B = data(b),
            *R = data(ridge);
    SolveBatch<T>(
        pool, spread, batch, d, Source::kGaussNewton,
        [=](int64_t e) {
          return System<T>{M + im(e) * d * d, P + ip(e) * d * d, A2 + ia(e) * d, S + is(e) * d};
        },
        [=](int64_t e) { return B + ib(e) * d; }, [=](int64_t e) { return R[ir(e)]; },
        static_cast<T*>(x->untyped_data()));
    return ffi::Error::Success();
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(CtrnnDynRidgeSolve, RidgeSolveImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<bool>("spread")
                                  .Attr<bool>("normal"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(CtrnnDynGaussNewtonSolve, GaussNewtonSolveImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<bool>("spread"));
