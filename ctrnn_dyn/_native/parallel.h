// Work spread over XLA's CPU thread pool, shared by the kernels of ctrnn_dyn.native.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>

#include "xla/ffi/api/ffi.h"

namespace ctrnn_dyn {

// Workers for `items` independent items of `work` multiply-adds in all: one per ~2e5 (less work
// does not pay for scheduling a pool task), at most the pool's threads and the items; 1 unless
// `spread` (programs of several host devices running at once keep to their calling thread).
inline int64_t Workers(xla::ffi::ThreadPool& pool, bool spread, double work, int64_t items) {
  if (!spread) return 1;
  const int64_t wanted = static_cast<int64_t>(work / 2e5) + 1;
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  return std::max<int64_t>(1, std::min({wanted, threads, items}));
}

// Runs fn(0..n_chunks-1) on the calling thread and up to (pool threads - 1) pool tasks. Chunks
// are claimed from a shared counter, so the caller never waits for a chunk nobody started.
template <typename Fn>
void ParallelChunks(xla::ffi::ThreadPool& pool, int64_t n_chunks, int64_t workers, Fn fn) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto state = std::make_shared<State>();
  auto work = [state, n_chunks, fn]() {
    for (int64_t i; (i = state->next.fetch_add(1)) < n_chunks;) {
      fn(i);
      if (state->done.fetch_add(1, std::memory_order_acq_rel) + 1 == n_chunks)
        state->done.notify_all();
    }
  };
  for (int64_t w = 1; w < workers; ++w) {
    auto task = work;
    pool.Schedule(std::move(task));
  }
  work();
  // Sleep, not spin: other devices' programs may want this core (an ensemble sharded over
  // host devices runs one of these calls per device at once).
  for (int64_t d; (d = state->done.load(std::memory_order_acquire)) < n_chunks;)
    state->done.wait(d, std::memory_order_acquire);
}

}  // namespace ctrnn_dyn
