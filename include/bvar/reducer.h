// bvar/reducer.h: brpc's bvar::Adder, bvar::Maxer and bvar::Miner as a
// program's own counters: add with <<, read with get_value(), take and
// zero with reset(). Header-only; safe from any number of threads (one
// atomic for integral types, a mutex for the others).
//
// The rest of bvar is not provided, and neither is exposing a variable by
// name (the named constructors, expose, expose_as): the server's /vars
// page lists the library's own counters only, so a named variable would
// be a promise this library does not keep. Naming one stops the build.
#ifndef BVAR_REDUCER_H
#define BVAR_REDUCER_H

#include <atomic>
#include <limits>
#include <mutex>
#include <type_traits>

namespace bvar {
namespace reducer_internal {

template <typename... Args>
struct NotProvided : std::false_type {};

#define BRPC_STREAM_BVAR_NOT_EXPOSED                                                               \
    "brpc_stream: exposing a bvar by name (named constructor, expose, expose_as) is not provided: " \
    "bvar is not part of this library and /vars lists the library's counters only; keep the "     \
    "variable unnamed and print get_value()"

struct AddOp {
    template <typename T>
    void operator()(T* into, const T& value) const {
        *into += value;
    }
};
struct MaxOp {
    template <typename T>
    void operator()(T* into, const T& value) const {
        if (*into < value) *into = value;
    }
};
struct MinOp {
    template <typename T>
    void operator()(T* into, const T& value) const {
        if (value < *into) *into = value;
    }
};

// The reduced value behind a variable: an atomic for integral types (sums
// by fetch_add, max/min by compare-exchange), else a value under a mutex.
template <typename T, typename Op, bool kAtomic = std::is_integral<T>::value>
class Cell {
public:
    explicit Cell(const T& identity) : identity_(identity), value_(identity) {}
    void Add(const T& v) {
        std::lock_guard<std::mutex> lock(mu_);
        Op()(&value_, v);
    }
    T Get() const {
        std::lock_guard<std::mutex> lock(mu_);
        return value_;
    }
    T Take() {
        std::lock_guard<std::mutex> lock(mu_);
        T old = value_;
        value_ = identity_;
        return old;
    }

private:
    const T identity_;
    mutable std::mutex mu_;
    T value_;
};

template <typename T, typename Op>
class Cell<T, Op, true> {
public:
    explicit Cell(T identity) : identity_(identity), value_(identity) {}
    void Add(T v) {
        if (std::is_same<Op, AddOp>::value) {
            value_.fetch_add(v, std::memory_order_relaxed);
            return;
        }
        T seen = value_.load(std::memory_order_relaxed);
        T wanted = seen;
        Op()(&wanted, v);
        while (wanted != seen && !value_.compare_exchange_weak(seen, wanted, std::memory_order_relaxed)) {
            wanted = seen;
            Op()(&wanted, v);
        }
    }
    T Get() const { return value_.load(std::memory_order_relaxed); }
    T Take() { return value_.exchange(identity_, std::memory_order_relaxed); }

private:
    const T identity_;
    std::atomic<T> value_;
};

template <typename T, typename Op, typename Self>
class Reducer {
public:
    explicit Reducer(const T& identity) : cell_(identity) {}

    // Adds (Adder), raises to (Maxer) or lowers to (Miner) `value`.
    Self& operator<<(const T& value) {
        cell_.Add(value);
        return *static_cast<Self*>(this);
    }
    // The value now.
    T get_value() const { return cell_.Get(); }
    // The value now, leaving the identity (0 for Adder) in its place.
    T reset() { return cell_.Take(); }

    template <typename... Args>
    int expose(Args&&...) {
        static_assert(NotProvided<Args...>::value, BRPC_STREAM_BVAR_NOT_EXPOSED);
        return -1;
    }
    template <typename... Args>
    int expose_as(Args&&...) {
        static_assert(NotProvided<Args...>::value, BRPC_STREAM_BVAR_NOT_EXPOSED);
        return -1;
    }

private:
    Reducer(const Reducer&);
    void operator=(const Reducer&);

    Cell<T, Op> cell_;
};

}  // namespace reducer_internal

// The sum of everything added (starts at T()).
template <typename T>
class Adder : public reducer_internal::Reducer<T, reducer_internal::AddOp, Adder<T> > {
public:
    typedef T value_type;
    Adder() : reducer_internal::Reducer<T, reducer_internal::AddOp, Adder<T> >(T()) {}
    template <typename Name, typename... More>
    explicit Adder(const Name&, const More&...) : Adder() {
        static_assert(reducer_internal::NotProvided<Name, More...>::value, BRPC_STREAM_BVAR_NOT_EXPOSED);
    }
};

// The largest value added (starts at numeric_limits<T>::min(), as brpc's).
template <typename T>
class Maxer : public reducer_internal::Reducer<T, reducer_internal::MaxOp, Maxer<T> > {
public:
    typedef T value_type;
    Maxer() : reducer_internal::Reducer<T, reducer_internal::MaxOp, Maxer<T> >(std::numeric_limits<T>::min()) {}
    template <typename Name, typename... More>
    explicit Maxer(const Name&, const More&...) : Maxer() {
        static_assert(reducer_internal::NotProvided<Name, More...>::value, BRPC_STREAM_BVAR_NOT_EXPOSED);
    }
};

// The smallest value added (starts at numeric_limits<T>::max()).
template <typename T>
class Miner : public reducer_internal::Reducer<T, reducer_internal::MinOp, Miner<T> > {
public:
    typedef T value_type;
    Miner() : reducer_internal::Reducer<T, reducer_internal::MinOp, Miner<T> >(std::numeric_limits<T>::max()) {}
    template <typename Name, typename... More>
    explicit Miner(const Name&, const More&...) : Miner() {
        static_assert(reducer_internal::NotProvided<Name, More...>::value, BRPC_STREAM_BVAR_NOT_EXPOSED);
    }
};

#undef BRPC_STREAM_BVAR_NOT_EXPOSED

}  // namespace bvar

#endif  // BVAR_REDUCER_H
