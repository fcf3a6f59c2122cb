// butil::ScopedGeneric<T, Traits>: owns one value of a handle type T (an fd,
// an id) and frees it through Traits::Free when it goes out of scope, as
// std::unique_ptr does for pointers. brpc's public API (brpc::ScopedStream
// is one), our own header-only implementation (C++11).
//
// Traits provides `static T InvalidValue()` and `static void Free(T)`;
// Free is never called with InvalidValue().

#ifndef BUTIL_SCOPED_GENERIC_H
#define BUTIL_SCOPED_GENERIC_H

#include <utility>

namespace butil {

template <typename T, typename Traits>
class ScopedGeneric : private Traits {
public:
    typedef T element_type;
    typedef Traits traits_type;

    ScopedGeneric() : value_(Traits::InvalidValue()) {}
    explicit ScopedGeneric(const element_type& value) : value_(value) {}
    ScopedGeneric(const element_type& value, const traits_type& traits)
        : Traits(traits), value_(value) {}
    ScopedGeneric(ScopedGeneric&& other)
        : Traits(std::move(other.get_traits())), value_(other.release()) {}
    ScopedGeneric& operator=(ScopedGeneric&& other) {
        if (this != &other) {
            reset(other.release());
            get_traits() = std::move(other.get_traits());
        }
        return *this;
    }
    ScopedGeneric(const ScopedGeneric&) = delete;
    ScopedGeneric& operator=(const ScopedGeneric&) = delete;

    ~ScopedGeneric() { FreeIfValid(); }

    // Frees the held value (unless it is `value` itself) and holds `value`.
    void reset(const element_type& value = Traits::InvalidValue()) {
        if (value == value_) {
            return;
        }
        FreeIfValid();
        value_ = value;
    }

    void swap(ScopedGeneric& other) {
        std::swap(get_traits(), other.get_traits());
        std::swap(value_, other.value_);
    }

    // Gives up ownership without freeing; returns the value held.
    element_type release() {
        element_type old = value_;
        value_ = Traits::InvalidValue();
        return old;
    }

    const element_type& get() const { return value_; }
    bool is_valid() const { return value_ != Traits::InvalidValue(); }

    bool operator==(const element_type& value) const { return value_ == value; }
    bool operator!=(const element_type& value) const { return value_ != value; }

    Traits& get_traits() { return *this; }
    const Traits& get_traits() const { return *this; }

private:
    void FreeIfValid() {
        if (value_ != Traits::InvalidValue()) {
            const element_type old = value_;
            value_ = Traits::InvalidValue();
            get_traits().Free(old);
        }
    }

    element_type value_;
};

template <typename T, typename Traits>
void swap(ScopedGeneric<T, Traits>& a, ScopedGeneric<T, Traits>& b) {
    a.swap(b);
}

template <typename T, typename Traits>
bool operator==(const T& value, const ScopedGeneric<T, Traits>& scoped) {
    return value == scoped.get();
}

template <typename T, typename Traits>
bool operator!=(const T& value, const ScopedGeneric<T, Traits>& scoped) {
    return value != scoped.get();
}

}  // namespace butil

#endif  // BUTIL_SCOPED_GENERIC_H
