// The two recurrences of ctrnn_dyn.fast_path as XLA FFI handlers for the CPU.
//
// forward:  x_t += c * x_{t-1} + f(x_{t-1}) W, R[t-1] = f(x_{t-1}),  t = 1..T, with x_t = X[t-1]
//           (X is (..., T, B, n), x_0 (..., B, n), R (..., T+1, B, n))
// backward: M[t-1] += c * M[t] + a * f'(x_t) * (M[t] W),  f'(x_t) from R[t],  t = T-1..1
//           (M and R are (..., T+1, B, n))
//
// forward with noise: the same after adding scale[j] * xi[t-1, b, j] to X[t-1] in each step,
//           xi the standard-normal stream of ctrnn_dyn.noise (Philox4x32-10 under a two-word
//           key, Giles' inverse error function) generated there while the step's rows are in
//           cache (key (..., 2) uint32, scale (..., n))
//
// f is tanh (f' = 1 - r^2) or relu (f' = [r > 0]). Buffers are row-major; W is (..., n, n), c and
// a are (..., n); leading dims (networks, under vmap) must agree. Batch rows
// are independent through time, so each worker runs whole sequences for a block of rows: no
// synchronisation per time step. One step of a block is a register-tiled matmul with the update
// fused into its store.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "floats.h"
#include "parallel.h"
#include "tiles.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using ctrnn_dyn::ParallelChunks;

namespace {

using namespace ctrnn_dyn;  // the tiles, vectors and activations of tiles.h

struct Layout {
  int64_t nets, rows, batch, n;  // rows: time rows of the state buffer
};

ffi::Error CheckLayout(const ffi::AnyBuffer& x, const ffi::AnyBuffer& w, const ffi::AnyBuffer& c,
                       Layout* out) {
  auto xd = x.dimensions();
  if (xd.size() < 3) return ffi::Error::InvalidArgument("state buffer must be (..., time, B, n)");
  const int64_t r = xd.size();
  Layout l{1, xd[r - 3], xd[r - 2], xd[r - 1]};
  for (int64_t i = 0; i < r - 3; ++i) l.nets *= xd[i];
  if (static_cast<int64_t>(w.element_count()) != l.nets * l.n * l.n ||
      static_cast<int64_t>(c.element_count()) != l.nets * l.n)
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

// Runs fn(e, b0, nb) for the blocks of nb batch rows from row b0 of every network e, spread over
// the pool.
template <typename Fn>
void ForEachRowBlock(ffi::ThreadPool& pool, const Layout& l, Fn fn) {
  const int64_t workers = std::max<int64_t>(1, pool.num_threads());
  const int64_t rows = RowsPerChunk(l, workers);
  const int64_t per_net = (l.batch + rows - 1) / rows;
  ParallelChunks(pool, l.nets * per_net, workers, [=](int64_t chunk) {
    const int64_t e = chunk / per_net, b0 = (chunk % per_net) * rows;
    fn(e, b0, std::min(rows, l.batch - b0));
  });
}

// The noise stream of ctrnn_dyn.noise. Element i of a network's flattened (T, B, n) noise is
// word i % 4 of Philox4x32-10 at the counter (i / 4, 0, 0, 0) under the key (k0, k1), turned into
// a standard normal by xi = sqrt(2) * erfinv(v), v = (2 (word >> 8) + 1 - 2^24) 2^-24, with
// Giles' single-precision erfinv. The Python twin (noise.normal_from_words) is the same formula.
constexpr uint32_t kPhiloxM0 = 0xD2511F53, kPhiloxM1 = 0xCD9E8D57;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9, kPhiloxW1 = 0xBB67AE85;

// The four words of the blocks first .. first + count - 1, interleaved: out[4 b + w]. GCC
// vectorises the loop over blocks (the 10 rounds unrolled, 32 x 32 -> 64-bit products as
// widening multiplies).
void PhiloxBlocks(uint32_t k0, uint32_t k1, uint64_t first, int64_t count,
                  uint32_t* __restrict out) {
  const uint32_t f = static_cast<uint32_t>(first);  // counters < 2^32 (checked)
  for (int64_t i = 0; i < count; ++i) {
    uint32_t c0 = f + static_cast<uint32_t>(i), c1 = 0, c2 = 0, c3 = 0;
    uint32_t a0 = k0, a1 = k1;
#pragma GCC unroll 10
    for (int r = 0; r < 10; ++r) {
      const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c0;
      const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c2;
      c0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ a0;
      c2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ a1;
      c1 = static_cast<uint32_t>(p1);
      c3 = static_cast<uint32_t>(p0);
      a0 += kPhiloxW0;
      a1 += kPhiloxW1;
    }
    out[4 * i] = c0;
    out[4 * i + 1] = c1;
    out[4 * i + 2] = c2;
    out[4 * i + 3] = c3;
  }
}

constexpr float kErfinvCentral[] = {2.81022636e-08f, 3.43273939e-07f, -3.5233877e-06f,
                                    -4.39150654e-06f, 0.00021858087f,  -0.00125372503f,
                                    -0.00417768164f,  0.246640727f,    1.50140941f};
constexpr float kErfinvTail[] = {-0.000200214257f, 0.000100950558f, 0.00134934322f,
                                 -0.00367342844f,  0.00573950773f,  -0.0076224613f,
                                 0.00943887047f,   1.00167406f,     2.83297682f};

inline vec_t<float> VectorSqrt(vec_t<float> x) {
#if defined(__AVX512F__)
  return _mm512_sqrt_ps(x);
#elif defined(__AVX__)
  return _mm256_sqrt_ps(x);
#else
  for (int l = 0; l < Vec<float>::kLanes; ++l) x[l] = std::sqrt(x[l]);
  return x;
#endif
}

template <typename V>
inline V Horner(const float (&a)[9], V w) {
  V p = V{} + a[0];
  for (int i = 1; i < 9; ++i) p = a[i] + p * w;
  return p;
}

// v = (2 (word >> 8) + 1 - 2^24) 2^-24 of a vector of words, uniform in (-1, 1).
inline vec_t<float> Uniform(const uint32_t* bits) {
  using I = vec_t<int32_t>;
  const auto word = *reinterpret_cast<const typename Vec<uint32_t>::unaligned*>(bits);
  const I k = reinterpret_cast<I>(word >> 8);
  return __builtin_convertvector(2 * k + (1 - (1 << 24)), vec_t<float>) * (1.0f / 16777216.0f);
}

// xi[i] for the words bits[i], i < len rounded up to whole vectors (bits has that many words).
// Two passes: the calls of the vector log back to back, then the polynomials, whose dependent
// chains overlap across iterations.
void Normals(const uint32_t* bits, int64_t len, float* xi) {
  using V = vec_t<float>;
  constexpr int L = Vec<float>::kLanes;
  for (int64_t i = 0; i < len; i += L) {
    const V v = Uniform(bits + i);
    Store<float>(xi + i, -VectorLog((1.0f - v) * (1.0f + v)));  // w
  }
  const float sqrt2 = 1.41421356237309504880f;
  for (int64_t i = 0; i < len; i += L) {
    const V v = Uniform(bits + i), w = Load<float>(xi + i);
    // both polynomials: branching on the rare tail (|xi| > 2.7) was no faster
    const V p = w >= 5.0f ? Horner(kErfinvTail, VectorSqrt(w) - 3.0f)
                          : Horner(kErfinvCentral, w - 2.5f);
    Store<float>(xi + i, sqrt2 * (p * v));
  }
}

// Per-worker buffers of the noise of one step of a block of rows.
struct NoiseBuffers {
  explicit NoiseBuffers(int64_t len) {
    constexpr int L = Vec<float>::kLanes;
    padded = (len + L - 1) / L * L;
    bits.resize(padded + 8);
    xi.resize(padded);
  }
  // xi of the flat indices start .. start + len - 1 (as many as the constructor's len).
  const float* Draw(uint32_t k0, uint32_t k1, uint64_t start) {
    const uint64_t first = start / 4;
    const int64_t offset = static_cast<int64_t>(start % 4);
    PhiloxBlocks(k0, k1, first, (offset + padded + 3) / 4, bits.data());
    Normals(bits.data() + offset, padded, xi.data());
    return xi.data();
  }
  int64_t padded;
  std::vector<uint32_t> bits;
  std::vector<float> xi;
};

template <typename T>
void Forward(ffi::ThreadPool& pool, const Layout& l, T* X, const T* x0, T* R, const T* W,
             const T* c, int32_t act, const uint32_t* key = nullptr, const T* scale = nullptr) {
  const int64_t plane = l.batch * l.n, seq = l.rows * plane;
  ForEachRowBlock(pool, l, [=](int64_t e, int64_t b0, int64_t nb) {
    T* Xe = X + e * seq + b0 * l.n;
    T* Re = R + e * (seq + plane) + b0 * l.n;
    const PaddedWeights<T> We(W + e * l.n * l.n, l.n);
    const T* prev = x0 + e * plane + b0 * l.n;
    const int64_t len = nb * l.n;
    std::unique_ptr<NoiseBuffers> noise;
    if (key) noise = std::make_unique<NoiseBuffers>(len);
    for (int64_t t = 0; t < l.rows; ++t) {
      T* cur = Xe + t * plane;
      if (key) {  // the rows' noise: flat indices (t B + b0) n .. + len - 1 of network e
        const float* xi = noise->Draw(key[2 * e], key[2 * e + 1],
                                      static_cast<uint64_t>(t * l.batch + b0) * l.n);
        const T* s = scale + e * l.n;
        for (int64_t b = 0; b < nb; ++b)
          for (int64_t j = 0; j < l.n; ++j)
            cur[b * l.n + j] += s[j] * static_cast<T>(xi[b * l.n + j]);
      }
      T* rate = Re + t * plane;
      Activate<T>(act, prev, rate, len);
      Step<T>(cur, prev, rate, We.data(), We.stride(), c + e * l.n, nullptr, nullptr, act, nb,
              l.n);
      prev = cur;
    }
    Activate<T>(act, prev, Re + l.rows * plane, len);
  });
}

template <typename T>
void Backward(ffi::ThreadPool& pool, const Layout& l, T* M, const T* R, const T* W, const T* c,
              const T* a, int32_t act) {
  const int64_t plane = l.batch * l.n, seq = l.rows * plane;
  ForEachRowBlock(pool, l, [=](int64_t e, int64_t b0, int64_t nb) {
    T* Me = M + e * seq + b0 * l.n;
    const T* Re = R + e * seq + b0 * l.n;
    const PaddedWeights<T> We(W + e * l.n * l.n, l.n);
    for (int64_t t = l.rows - 2; t >= 1; --t) {
      const T* prev = Me + t * plane;
      Step<T>(Me + (t - 1) * plane, prev, prev, We.data(), We.stride(), c + e * l.n,
              Re + t * plane, a + e * l.n, act, nb, l.n);
    }
  });
}

void CopyIfNotAliased(const ffi::AnyBuffer& in, ffi::Result<ffi::AnyBuffer>& out) {
  if (out->untyped_data() != in.untyped_data())
    std::memcpy(out->untyped_data(), in.untyped_data(), in.size_bytes());
}

template <typename T>
T* Data(ffi::Result<ffi::AnyBuffer>& b) {
  return static_cast<T*>(b->untyped_data());
}
template <typename T>
const T* Data(const ffi::AnyBuffer& b) {
  return static_cast<const T*>(b.untyped_data());
}

// run(T{}) with T the buffers' float type, after checking the activation code.
template <typename Run>
ffi::Error Dispatch(const ffi::AnyBuffer& x, int32_t activation, Run run) {
  if (activation != kTanh && activation != kRelu)
    return ffi::Error::InvalidArgument("activation must be 0 (tanh) or 1 (relu)");
  return ctrnn_dyn::ByType(x.element_type(), [&](auto zero) {
    run(zero);
    return ffi::Error::Success();
  });
}

ffi::Error CheckForward(const ffi::AnyBuffer& x, const ffi::AnyBuffer& x0,
                        const ffi::AnyBuffer& w, const ffi::AnyBuffer& c,
                        ffi::Result<ffi::AnyBuffer>& r_out, Layout* l) {
  if (auto err = CheckLayout(x, w, c, l); err.failure()) return err;
  if (static_cast<int64_t>(x0.element_count()) != l->nets * l->batch * l->n ||
      static_cast<int64_t>(r_out->element_count()) != l->nets * (l->rows + 1) * l->batch * l->n ||
      x0.element_type() != x.element_type())
    return ffi::Error::InvalidArgument("x0 must be (..., B, n) and the rates (..., T+1, B, n)");
  return ffi::Error::Success();
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer x0,
                       ffi::AnyBuffer w, ffi::AnyBuffer c, ffi::Result<ffi::AnyBuffer> x_out,
                       ffi::Result<ffi::AnyBuffer> r_out, int32_t activation) {
  Layout l;
  if (auto err = CheckForward(x, x0, w, c, r_out, &l); err.failure()) return err;
  return Dispatch(x, activation, [&](auto zero) {
    using T = decltype(zero);
    CopyIfNotAliased(x, x_out);
    Forward<T>(pool, l, Data<T>(x_out), Data<T>(x0), Data<T>(r_out), Data<T>(w), Data<T>(c),
               activation);
  });
}

ffi::Error ForwardNoiseImpl(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer x0,
                            ffi::AnyBuffer w, ffi::AnyBuffer c, ffi::AnyBuffer key,
                            ffi::AnyBuffer scale, ffi::Result<ffi::AnyBuffer> x_out,
                            ffi::Result<ffi::AnyBuffer> r_out, int32_t activation) {
  Layout l;
  if (auto err = CheckForward(x, x0, w, c, r_out, &l); err.failure()) return err;
  if (key.element_type() != ffi::DataType::U32 ||
      static_cast<int64_t>(key.element_count()) != 2 * l.nets)
    return ffi::Error::InvalidArgument("the noise key must be (..., 2) uint32");
  if (scale.element_type() != x.element_type() ||
      static_cast<int64_t>(scale.element_count()) != l.nets * l.n)
    return ffi::Error::InvalidArgument("the noise scale must be (..., n), the states' dtype");
  if ((l.rows * l.batch * l.n + 3) / 4 > (int64_t{1} << 32))
    return ffi::Error::InvalidArgument("more than 2^34 noise draws per network");
  return Dispatch(x, activation, [&](auto zero) {
    using T = decltype(zero);
    CopyIfNotAliased(x, x_out);
    Forward<T>(pool, l, Data<T>(x_out), Data<T>(x0), Data<T>(r_out), Data<T>(w), Data<T>(c),
               activation, Data<uint32_t>(key), Data<T>(scale));
  });
}

ffi::Error BackwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer m, ffi::AnyBuffer rates,
                        ffi::AnyBuffer w, ffi::AnyBuffer c, ffi::AnyBuffer a,
                        ffi::Result<ffi::AnyBuffer> m_out, int32_t activation) {
  if (rates.element_count() != m.element_count() || a.element_count() != c.element_count() ||
      rates.element_type() != m.element_type() || a.element_type() != m.element_type())
    return ffi::Error::InvalidArgument("rates must match the adjoint buffer and a must match c");
  Layout l;
  if (auto err = CheckLayout(m, w, c, &l); err.failure()) return err;
  return Dispatch(m, activation, [&](auto zero) {
    using T = decltype(zero);
    CopyIfNotAliased(m, m_out);
    Backward<T>(pool, l, Data<T>(m_out), Data<T>(rates), Data<T>(w), Data<T>(c), Data<T>(a),
                activation);
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(CtrnnDynForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int32_t>("activation"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(CtrnnDynForwardNoise, ForwardNoiseImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
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
