// butil/atomicops.h: butil::atomic and friends are std::atomic, as in brpc
// built with C++11.
#ifndef BUTIL_ATOMICOPS_H_
#define BUTIL_ATOMICOPS_H_

#include <atomic>
#include <cstdint>

namespace butil {
using std::atomic;
using std::memory_order;
using std::memory_order_relaxed;
using std::memory_order_consume;
using std::memory_order_acquire;
using std::memory_order_release;
using std::memory_order_acq_rel;
using std::memory_order_seq_cst;
using std::atomic_thread_fence;
using std::atomic_signal_fence;

namespace subtle {
typedef int32_t Atomic32;
typedef int64_t Atomic64;
}  // namespace subtle
}  // namespace butil

#endif  // BUTIL_ATOMICOPS_H_
