// Benettin's QR iteration for a CT-RNN map as an XLA FFI handler for the CPU (CtrnnDynBenettin):
// the state and its tangent basis stepped together, re-orthonormalised every few steps, the logs
// of |diag R| summed per block.
//
//   x' = c * x + f(x) W + d,           the map (W = K_rec alpha, c = 1 - alpha,
//   q' = c * q + (f'(x) * q) W,        d = alpha (b + u K_in)), q a row of the basis Q (k x n)
//
// From each start x0 (a row of (..., B, n)) with Q = the first k unit rows: n_transient steps
// (discarded: they settle the state and the basis), then n_blocks blocks of `block` steps; a
// run of m steps is cut into groups of steps_per_qr steps (the last one shorter), each followed
// by Gram-Schmidt (gram_schmidt.h) of Q, whose log r_j are added to the block's sums. Outputs:
// the final states x_end (..., B, n), sums (..., B, n_blocks, k), max |x| at the end of each block
// (..., B, n_blocks), and the distances |F^j(x_end) - x_end|, j = 1..n_recur, of the orbit that
// follows (..., B, n_recur; a classification's test for an exact return). The same iteration as
// ctrnn_dyn.attractors.lyapunov's XLA loop; here a start's state and its k tangent rows are rows of one register-tiled product with W (tiles.h),
// so one pass over W serves the state and the basis of several starts, and the basis is
// re-orthonormalised while it is in cache. Starts are independent: each worker runs whole runs
// for a block of one network's starts, spread over XLA's thread pool (spread = true) or on the
// calling thread (programs of several host devices running at once).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "floats.h"
#include "gram_schmidt.h"
#include "parallel.h"
#include "tiles.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using namespace ctrnn_dyn;  // the tiles, vectors and activations of tiles.h

struct Settings {
  int32_t act;
  int64_t n, k, transient, blocks, block, per_qr, recur;
};

// The runs of starts x0 (S x n rows) of one network: rows of start s are s (1 + k) (its state)
// and the k after it (its tangent basis).
template <typename T>
void RunStarts(const Settings& s, const PaddedWeights<T>& W, const T* c, const T* d, int64_t S,
               const T* x0, T* x_end, T* sums, T* maxabs, T* dist) {
  const int64_t n = s.n, k = s.k, g = 1 + k, rows = S * g;
  std::vector<T> prev(rows * n, T(0)), cur(rows * n), A(rows * n), q(k * n), r(k), dots(k);
  for (int64_t b = 0; b < S; ++b) {
    std::memcpy(&prev[b * g * n], x0 + b * n, n * sizeof(T));
    for (int64_t j = 0; j < k; ++j) prev[(b * g + 1 + j) * n + j] = T(1);
  }
  auto step = [&] {
    for (int64_t b = 0; b < S; ++b) {
      const int64_t o = b * g * n;
      T* a = &A[o];
      Activate<T>(s.act, &prev[o], a, n);  // f(x)
      for (int64_t j = 1; j <= k; ++j) {   // f'(x) * q_j, f' from the rates
        const T* qj = &prev[o + j * n];
        T* aj = a + j * n;
        if (s.act == kTanh) {
          for (int64_t i = 0; i < n; ++i) aj[i] = (T(1) - a[i] * a[i]) * qj[i];
        } else {
          for (int64_t i = 0; i < n; ++i) aj[i] = a[i] > T(0) ? qj[i] : T(0);
        }
      }
      std::memcpy(&cur[o], d, n * sizeof(T));
      std::fill(&cur[o + n], &cur[o + g * n], T(0));
    }
    Step<T>(cur.data(), prev.data(), A.data(), W.data(), W.stride(), c, nullptr, nullptr, s.act,
            rows, n);
    std::swap(cur, prev);
  };
  // Gram-Schmidt of every start's basis; the logs of r added to sums[b, blk] (blk >= 0)
  auto orthonormalise = [&](int64_t blk) {
    for (int64_t b = 0; b < S; ++b) {
      T* basis = &prev[(b * g + 1) * n];
      OrthonormaliseOne<T>(k, n, basis, q.data(), r.data(), dots.data());
      std::memcpy(basis, q.data(), k * n * sizeof(T));
      if (blk < 0) continue;
      T* out = sums + (b * s.blocks + blk) * k;
      for (int64_t j = 0; j < k; ++j) out[j] += std::log(r[j]);
    }
  };
  auto run = [&](int64_t steps, int64_t blk) {
    for (int64_t left = steps; left > 0;) {
      const int64_t m = std::min(s.per_qr, left);
      for (int64_t t = 0; t < m; ++t) step();
      orthonormalise(blk);
      left -= m;
    }
  };
  run(s.transient, -1);
  std::fill(sums, sums + S * s.blocks * k, T(0));
  for (int64_t blk = 0; blk < s.blocks; ++blk) {
    run(s.block, blk);
    for (int64_t b = 0; b < S; ++b) {  // max |x|, NaN if any entry is
      const T* x = &prev[b * g * n];
      T m = T(0);
      for (int64_t i = 0; i < n; ++i) {
        const T a = std::abs(x[i]);
        if (a != a) {
          m = a;
          break;
        }
        m = std::max(m, a);
      }
      maxabs[b * s.blocks + blk] = m;
    }
  }
  for (int64_t b = 0; b < S; ++b) std::memcpy(x_end + b * n, &prev[b * g * n], n * sizeof(T));
  if (s.recur == 0) return;
  // the orbit from x_end: the state rows alone
  std::vector<T> x(x_end, x_end + S * n), y(S * n);
  for (int64_t t = 0; t < s.recur; ++t) {
    Activate<T>(s.act, x.data(), A.data(), S * n);
    for (int64_t b = 0; b < S; ++b) std::memcpy(&y[b * n], d, n * sizeof(T));
    Step<T>(y.data(), x.data(), A.data(), W.data(), W.stride(), c, nullptr, nullptr, s.act, S, n);
    std::swap(x, y);
    for (int64_t b = 0; b < S; ++b) {
      T sq = T(0);
      for (int64_t i = 0; i < n; ++i) {
        const T e = x[b * n + i] - x_end[b * n + i];
        sq += e * e;
      }
      dist[b * s.recur + t] = std::sqrt(sq);
    }
  }
}

ffi::Error BenettinImpl(ffi::ThreadPool pool, ffi::AnyBuffer x0, ffi::AnyBuffer w,
                        ffi::AnyBuffer c, ffi::AnyBuffer d, ffi::Result<ffi::AnyBuffer> x_end,
                        ffi::Result<ffi::AnyBuffer> sums, ffi::Result<ffi::AnyBuffer> maxabs,
                        ffi::Result<ffi::AnyBuffer> dist, int32_t activation, int64_t k,
                        int64_t n_transient, int64_t n_blocks, int64_t block,
                        int64_t steps_per_qr, int64_t n_recur, bool spread) {
  auto dims = x0.dimensions();
  if (dims.size() < 2) return ffi::Error::InvalidArgument("x0 must be (..., B, n)");
  const int64_t n = dims.back(), B = dims[dims.size() - 2];
  if (n < 1 || B < 1) return ffi::Error::InvalidArgument("x0 must be (..., B, n), B, n >= 1");
  if (k < 1 || k > n) return ffi::Error::InvalidArgument("k must be in 1 .. n");
  if (n_transient < 0 || n_recur < 0)
    return ffi::Error::InvalidArgument("n_transient and n_recur must be >= 0");
  if (n_blocks < 1 || block < 1 || steps_per_qr < 1)
    return ffi::Error::InvalidArgument("n_blocks, block and steps_per_qr must be >= 1");
  if (activation != kTanh && activation != kRelu)
    return ffi::Error::InvalidArgument("activation must be 0 (tanh) or 1 (relu)");
  const int64_t nets = static_cast<int64_t>(x0.element_count()) / (B * n);
  if (static_cast<int64_t>(w.element_count()) != nets * n * n ||
      static_cast<int64_t>(c.element_count()) != nets * n ||
      static_cast<int64_t>(d.element_count()) != nets * n ||
      static_cast<int64_t>(x_end->element_count()) != nets * B * n ||
      static_cast<int64_t>(sums->element_count()) != nets * B * n_blocks * k ||
      static_cast<int64_t>(maxabs->element_count()) != nets * B * n_blocks ||
      static_cast<int64_t>(dist->element_count()) != nets * B * n_recur)
    return ffi::Error::InvalidArgument(
        "W must be (..., n, n), c and d (..., n), x_end (..., B, n), sums (..., B, n_blocks, "
        "k), maxabs (..., B, n_blocks) and dist (..., B, n_recur)");
  for (auto* buf : {&w, &c, &d})
    if (buf->element_type() != x0.element_type())
      return ffi::Error::InvalidArgument("all buffers must share one dtype");
  if (x_end->element_type() != x0.element_type() || sums->element_type() != x0.element_type() ||
      maxabs->element_type() != x0.element_type() || dist->element_type() != x0.element_type())
    return ffi::Error::InvalidArgument("all buffers must share one dtype");
  const Settings s{activation, n, k, n_transient, n_blocks, block, steps_per_qr, n_recur};
  return ByType(x0.element_type(), [&](auto zero) {
    using T = decltype(zero);
    const T* X0 = static_cast<const T*>(x0.untyped_data());
    const T* Wp = static_cast<const T*>(w.untyped_data());
    const T* Cp = static_cast<const T*>(c.untyped_data());
    const T* Dp = static_cast<const T*>(d.untyped_data());
    T* Xe = static_cast<T*>(x_end->untyped_data());
    T* Sp = static_cast<T*>(sums->untyped_data());
    T* Mp = static_cast<T*>(maxabs->untyped_data());
    T* Dist = static_cast<T*>(dist->untyped_data());
    const double steps = (1.0 + k) * (n_transient + static_cast<double>(n_blocks) * block) +
                         static_cast<double>(n_recur);
    const double work = static_cast<double>(nets) * B * n * n * steps;
    const int64_t workers = Workers(pool, spread, work, nets * B);
    // blocks of a network's starts, enough of them for every worker
    const int64_t pieces = std::max<int64_t>(1, (workers + nets - 1) / nets);
    const int64_t per = (B + pieces - 1) / pieces, per_net = (B + per - 1) / per;
    ParallelChunks(pool, nets * per_net, workers, [=](int64_t chunk) {
      const int64_t e = chunk / per_net, b0 = (chunk % per_net) * per;
      const int64_t S = std::min(per, B - b0), first = e * B + b0;
      const PaddedWeights<T> We(Wp + e * n * n, n);
      RunStarts<T>(s, We, Cp + e * n, Dp + e * n, S, X0 + first * n, Xe + first * n,
                   Sp + first * n_blocks * k, Mp + first * n_blocks, Dist + first * n_recur);
    });
    return ffi::Error::Success();
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(CtrnnDynBenettin, BenettinImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // x0
                                  .Arg<ffi::AnyBuffer>()  // W
                                  .Arg<ffi::AnyBuffer>()  // c
                                  .Arg<ffi::AnyBuffer>()  // d
                                  .Ret<ffi::AnyBuffer>()  // x_end
                                  .Ret<ffi::AnyBuffer>()  // sums
                                  .Ret<ffi::AnyBuffer>()  // maxabs
                                  .Ret<ffi::AnyBuffer>()  // dist
                                  .Attr<int32_t>("activation")
                                  .Attr<int64_t>("k")
                                  .Attr<int64_t>("n_transient")
                                  .Attr<int64_t>("n_blocks")
                                  .Attr<int64_t>("block")
                                  .Attr<int64_t>("steps_per_qr")
                                  .Attr<int64_t>("n_recur")
                                  .Attr<bool>("spread"));
