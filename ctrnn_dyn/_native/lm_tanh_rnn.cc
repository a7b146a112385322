// Levenberg-Marquardt to the fixed points of one-layer tanh RNNs, x' = tanh(W x + c): every
// active start of every network (W stacked on a leading axis) run to its end in one call
// (ctrnn_dyn.fixed_points.native_lm), the starts spread over XLA's CPU thread pool.
//
// The iteration is the solver's (ctrnn_dyn.fixed_points.solvers._LevenbergMarquardt with the
// exact step, and the stop rule of its rounds), so a start takes the same steps as there, to
// rounding: residual r = tanh(W x + c) - x, Jacobian J = diag(1 - h^2) W - I, step
// (J^T J + mu I) v = J^T r, x_try = x - v, gain ratio (q - q_try) / (v^T (mu v + g) / 2); an
// accepted step scales mu by max(1/3, 1 - (2 gain - 1)^3), capped at max(2 q_try, mu q_try / q),
// and resets the increase factor nu to 2; a rejected one sets mu = min(mu nu, 2^32), nu =
// min(2 nu, 2^32). A start stops at q <= tol_q, ||g|| <= tol_grad, ||g|| <= grad_rtol ||r||,
// max_iters iterations, a non-finite q, or a step that is not finite (A + mu I not numerically
// positive definite, or an overflow), which is not taken. Unlike the XLA loop, a rejected step
// reuses J^T J: only the factorisation is redone.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "floats.h"
#include "parallel.h"
#include "tiles.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace ctrnn_dyn {
namespace {

struct Settings {
  double damping, tol_q, tol_grad, grad_rtol;
  int64_t max_iters;
};

// D: the state size where it is known at compile time (its loops unrolled), 0 elsewhere
template <typename T, int D>
class Row {
 public:
  Row(int64_t d) : d_(D ? D : d), buf_(9 * d + 4 * d * d) {
    // not copyable: the pointers below are into buf_
    T* p = buf_.data();
    for (T** v : {&h_, &r_, &g_, &v_, &xt_, &ht_, &rt_, &y_, &inv_}) v[0] = p, p += d;
    J_ = p, A_ = p + d * d, U_ = p + 2 * d * d, Ut_ = p + 3 * d * d;
  }

  // Runs start x (updated in place) of the network W (d x d) with input term c; returns the
  // iterations taken.
  int32_t Solve(const T* W, const T* c, T* x, const Settings& o) {
    const int64_t d = D ? D : d_;
    W_ = W;
    T q = Residual(c, x, h_, r_);
    Linearise();
    // the initial damping: damping * max |J^T J 1| (jaxopt's, with its 1e-6 factored as there)
    T m = 0;
    for (int64_t j = 0; j < d; ++j) {
      T sum = 0;
      for (int64_t k = 0; k < d; ++k) sum += A_[j * d + k];
      m = std::max(m, std::abs(sum));
    }
    T mu = (T(1e-6) * m) * T(o.damping / 1e-6), nu = 2;
    const T mu_max = T(4294967296.0);
    T err = Norm(g_);
    int32_t it = 0;
    auto stop = [&] {
      return q <= T(o.tol_q) || err <= T(o.tol_grad) || err <= T(o.grad_rtol) * std::sqrt(2 * q) ||
             it >= o.max_iters || !std::isfinite(q);
    };
    while (!stop()) {
      ++it;
      if (!Step(mu)) break;  // a step that is not finite is not taken, and the start stops
      for (int64_t i = 0; i < d; ++i) xt_[i] = x[i] - v_[i];
      bool finite = true;
      for (int64_t i = 0; i < d; ++i) finite &= std::isfinite(xt_[i]);
      if (!finite) break;
      const T qt = Residual(c, xt_, ht_, rt_);
      T denom = 0;
      for (int64_t i = 0; i < d; ++i) denom += v_[i] * (mu * v_[i] + g_[i]);
      const T gain = (q - qt) / (T(0.5) * denom);
      if (gain > 0) {
        const T t = 2 * gain - 1;
        T next = mu * std::max(T(1) / 3, 1 - t * t * t);
        const T ratio = qt / q;
        if (ratio < 1) next = std::min(next, std::max(2 * qt, mu * ratio));
        mu = next, nu = 2;
        std::copy(xt_, xt_ + d, x);
        std::copy(ht_, ht_ + d, h_);
        std::copy(rt_, rt_ + d, r_);
        q = qt;
        Linearise();
        err = Norm(g_);
      } else {
        mu = std::min(mu * nu, mu_max);
        nu = std::min(2 * nu, mu_max);
      }
    }
    return it;
  }

 private:
  // h = tanh(W x + c), r = h - x; returns q = |r|^2 / 2
  T Residual(const T* c, const T* x, T* h, T* r) const {
    const int64_t d = D ? D : d_;
    for (int64_t i = 0; i < d; ++i) {
      const T* Wi = W_ + i * d;
      T z = c[i];
      for (int64_t k = 0; k < d; ++k) z += Wi[k] * x[k];
      h[i] = z;
    }
    Activate<T>(kTanh, h, h, d);
    T q = 0;
    for (int64_t i = 0; i < d; ++i) {
      r[i] = h[i] - x[i];
      q += r[i] * r[i];
    }
    return T(0.5) * q;
  }

  // J = diag(1 - h^2) W - I at the current point, g = J^T r, and J^T J (full rows: loops of
  // d that vectorise, where the upper triangle's shorter ones ran at a third of the speed)
  void Linearise() {
    const int64_t d = D ? D : d_;
    T* __restrict J = J_;
    T* __restrict A = A_;
    T* __restrict g = g_;
    for (int64_t i = 0; i < d; ++i) {
      const T s = 1 - h_[i] * h_[i];
      const T* __restrict Wi = W_ + i * d;
      T* __restrict Ji = J + i * d;
      for (int64_t k = 0; k < d; ++k) Ji[k] = s * Wi[k];
      Ji[i] -= 1;
    }
    std::fill(g, g + d, T(0));
    for (int64_t i = 0; i < d; ++i) {
      const T* __restrict Ji = J + i * d;
      const T ri = r_[i];
      for (int64_t k = 0; k < d; ++k) g[k] += Ji[k] * ri;
    }
    // row j of A = sum_i J[i, j] J[i, :], accumulated in registers
    for (int64_t j = 0; j < d; ++j) {
      T acc[D ? D : 1];
      T* __restrict Aj = A + j * d;
      T* __restrict out = D ? acc : Aj;
      for (int64_t k = 0; k < d; ++k) out[k] = 0;
      for (int64_t i = 0; i < d; ++i) {
        const T a = J[i * d + j];
        const T* __restrict Ji = J + i * d;
        for (int64_t k = 0; k < d; ++k) out[k] += a * Ji[k];
      }
      if (D) std::copy(acc, acc + d, Aj);
    }
  }

  // v = (J^T J + mu I)^{-1} g by Cholesky (U^T U, U upper triangular); false where not
  // positive definite or not finite. Every loop runs over whole rows (vector operations): the
  // entries left of U's diagonal are computed too and never read, and so are those of the
  // partial sums that a solve has used up.
  bool Step(T mu) {
    const int64_t d = D ? D : d_;
    T* __restrict U = U_;
    T* __restrict Ut = Ut_;  // U^T, row i = column i of U, for the back substitution
    T* __restrict inv = inv_;
    T* __restrict v = v_;
    T* __restrict y = y_;
    // row j of U from A's and the rows above it, accumulated in registers (the loops over rows
    // unrolled where D is known keep the accumulators in registers: a step 20-25 % faster)
#pragma GCC unroll 16
    for (int64_t j = 0; j < d; ++j) {
      T acc[D ? D : 1];
      T* __restrict Uj = U + j * d;
      T* __restrict row = D ? acc : Uj;
      const T* __restrict Aj = A_ + j * d;
      for (int64_t k = 0; k < d; ++k) row[k] = Aj[k];
      row[j] += mu;
      for (int64_t i = 0; i < j; ++i) {
        const T* __restrict Ui = U + i * d;
        const T a = Ui[j];
        for (int64_t k = 0; k < d; ++k) row[k] -= a * Ui[k];
      }
      if (!(row[j] > 0)) return false;
      inv[j] = 1 / std::sqrt(row[j]);
      for (int64_t k = 0; k < d; ++k) Uj[k] = row[k] * inv[j];
      for (int64_t k = 0; k < d; ++k) Ut[k * d + j] = Uj[k];
    }
    // U^T y = g by columns of U^T (rows of U), then U v = y by columns of U (rows of U^T)
    for (int64_t i = 0; i < d; ++i) v[i] = g_[i];
#pragma GCC unroll 16
    for (int64_t j = 0; j < d; ++j) {
      const T* __restrict Uj = U + j * d;
      const T yj = y[j] = v[j] * inv[j];
      for (int64_t k = 0; k < d; ++k) v[k] -= yj * Uj[k];
    }
#pragma GCC unroll 16
    for (int64_t i = d - 1; i >= 0; --i) {
      const T* __restrict Ui = Ut + i * d;
      const T xi = v[i] = y[i] * inv[i];
      for (int64_t k = 0; k < d; ++k) y[k] -= xi * Ui[k];
    }
    bool finite = true;
    for (int64_t i = 0; i < d; ++i) finite &= std::isfinite(v[i]);
    return finite;
  }

  T Norm(const T* a) const {
    T s = 0;
    for (int64_t i = 0; i < (D ? D : d_); ++i) s += a[i] * a[i];
    return std::sqrt(s);
  }

  Row(const Row&) = delete;
  int64_t d_;
  const T* W_ = nullptr;
  std::vector<T> buf_;
  T *h_, *r_, *g_, *v_, *xt_, *ht_, *rt_, *y_, *inv_, *J_, *A_, *U_, *Ut_;
};

ffi::Error LmTanhRnnImpl(ffi::ThreadPool pool, ffi::AnyBuffer w, ffi::AnyBuffer c,
                         ffi::AnyBuffer x0, ffi::Buffer<ffi::PRED> active,
                         ffi::Result<ffi::AnyBuffer> x,
                         ffi::Result<ffi::Buffer<ffi::S32>> iters, double damping, double tol_q,
                         double tol_grad, double grad_rtol, int64_t max_iters, bool spread) {
  auto xd = x0.dimensions();
  auto wd = w.dimensions();
  if (xd.size() != 3 || wd.size() != 3)
    return ffi::Error::InvalidArgument("x0 must be (E, n, d) and W (E, d, d)");
  const int64_t E = xd[0], n = xd[1], d = xd[2];
  if (wd[0] != E || wd[1] != d || wd[2] != d)
    return ffi::Error::InvalidArgument("W must be (E, d, d) for x0 of (E, n, d)");
  if (static_cast<int64_t>(c.element_count()) != E * n * d ||
      static_cast<int64_t>(x->element_count()) != E * n * d ||
      static_cast<int64_t>(iters->element_count()) != E * n ||
      static_cast<int64_t>(active.element_count()) != E * n)
    return ffi::Error::InvalidArgument(
        "c and x must be (E, n, d), active and iters (E, n), for x0 of (E, n, d)");
  if (w.element_type() != x0.element_type() || c.element_type() != x0.element_type() ||
      x->element_type() != x0.element_type())
    return ffi::Error::InvalidArgument("W, c, x0 and x must share one dtype");
  if (max_iters < 0 || !(damping > 0))
    return ffi::Error::InvalidArgument("max_iters must be >= 0 and damping > 0");
  const int64_t rows = E * n;  // start s of network s / n
  if (rows == 0 || d == 0) return ffi::Error::Success();
  const Settings o{damping, tol_q, tol_grad, grad_rtol, max_iters};
  return ByType(x0.element_type(), [&](auto zero) {
    using T = decltype(zero);
    const T* W = static_cast<const T*>(w.untyped_data());
    const T* C = static_cast<const T*>(c.untyped_data());
    const T* X0 = static_cast<const T*>(x0.untyped_data());
    T* X = static_cast<T*>(x->untyped_data());
    int32_t* its = iters->typed_data();
    const bool* on = active.typed_data();
    std::copy(X0, X0 + rows * d, X);
    // a start's run: about 10 iterations of d^3 multiply-adds
    const double work = 10.0 * static_cast<double>(rows) * d * d * d;
    const int64_t workers = Workers(pool, spread, work, rows);
    const int64_t per = (rows + 4 * workers - 1) / (4 * workers);  // chunks even out the runs
    auto run = [&](auto size) {
      ParallelChunks(pool, (rows + per - 1) / per, workers, [=](int64_t chunk) {
        Row<T, decltype(size)::value> row(d);
        for (int64_t s = chunk * per; s < std::min(rows, (chunk + 1) * per); ++s)
          its[s] = on[s] ? row.Solve(W + (s / n) * d * d, C + s * d, X + s * d, o) : 0;
      });
    };
    // 16 and 32 units (FixedPointFinder's examples, many tasks' networks) with their loops
    // unrolled (16-fold): at 16 units seed 0 of benchmarks/fpf_real.py took 18 ms against 26 with
    // the general loops, before the row loops' unrolling took it to 15; the two sizes take this
    // source from 7 to 10 s to compile
    if (d == 16) run(std::integral_constant<int, 16>{});
    else if (d == 32) run(std::integral_constant<int, 32>{});
    else run(std::integral_constant<int, 0>{});
    return ffi::Error::Success();
  });
}

}  // namespace
}  // namespace ctrnn_dyn

XLA_FFI_DEFINE_HANDLER_SYMBOL(CtrnnDynLmTanhRnn, ctrnn_dyn::LmTanhRnnImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::PRED>>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<double>("damping")
                                  .Attr<double>("tol_q")
                                  .Attr<double>("tol_grad")
                                  .Attr<double>("grad_rtol")
                                  .Attr<int64_t>("max_iters")
                                  .Attr<bool>("spread"));
