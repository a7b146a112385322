// The thin QR of Benettin's tangent basis, re-orthonormalised during a Lyapunov spectrum, for a
// batch of small bases, as an XLA FFI handler for the CPU (CtrnnDynGramSchmidt):
//
//   a (k x n, rows a_j) -> q (k x n, orthonormal rows), r (k) = |diag R|,
//   v = a_j,  v <- v - sum_{i<j} (q_i . v) q_i  (twice),  r_j = |v|,  q_j = v / r_j
//
// (classical Gram-Schmidt, every vector projected twice: orthogonal to rounding while the rows are
// not numerically dependent; a row with nothing left, r_j = 0, stays zero). XLA runs the same
// algorithm as dozens of small fused loops per step, each a pass over the whole batch of bases
// (for a sharded ensemble several MB, out of cache); here each basis, a few kB, is finished while
// it is in L1. The batch is spread over XLA's thread pool (spread = true) or done on the calling
// thread (programs of several host devices running at once).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "floats.h"
#include "gram_schmidt.h"
#include "parallel.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using ctrnn_dyn::ByType;
using ctrnn_dyn::OrthonormaliseOne;
using ctrnn_dyn::ParallelChunks;
using ctrnn_dyn::Workers;

namespace {

ffi::Error GramSchmidtImpl(ffi::ThreadPool pool, ffi::AnyBuffer a, ffi::Result<ffi::AnyBuffer> q,
                           ffi::Result<ffi::AnyBuffer> r, bool spread) {
  auto dims = a.dimensions();
  if (dims.size() < 2) return ffi::Error::InvalidArgument("a must be (..., k, n)");
  const int64_t n = dims.back(), k = dims[dims.size() - 2];
  const int64_t batch = k * n > 0 ? static_cast<int64_t>(a.element_count()) / (k * n) : 0;
  if (static_cast<int64_t>(q->element_count()) != batch * k * n ||
      static_cast<int64_t>(r->element_count()) != batch * k)
    return ffi::Error::InvalidArgument("q must be (..., k, n) as a, and r (..., k)");
  if (q->element_type() != a.element_type() || r->element_type() != a.element_type())
    return ffi::Error::InvalidArgument("a, q and r must share one dtype");
  if (batch == 0) return ffi::Error::Success();
  return ByType(a.element_type(), [&](auto zero) {
    using T = decltype(zero);
    const T* A = static_cast<const T*>(a.untyped_data());
    T* Q = static_cast<T*>(q->untyped_data());
    T* R = static_cast<T*>(r->untyped_data());
    // about 2 k^2 n multiply-adds a basis (two projections of each row on those before it)
    const double work = 2.0 * static_cast<double>(batch) * k * k * n;
    const int64_t workers = Workers(pool, spread, work, batch);
    const int64_t per = (batch + workers - 1) / workers;
    ParallelChunks(pool, (batch + per - 1) / per, workers, [=](int64_t chunk) {
      std::vector<T> c(k);
      const int64_t end = std::min(batch, (chunk + 1) * per);
      for (int64_t e = chunk * per; e < end; ++e)
        OrthonormaliseOne<T>(k, n, A + e * k * n, Q + e * k * n, R + e * k, c.data());
    });
    return ffi::Error::Success();
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(CtrnnDynGramSchmidt, GramSchmidtImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<bool>("spread"));
