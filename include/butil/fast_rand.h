// butil/fast_rand.h: brpc's fast, non-cryptographic random numbers
// (xorshift128+). Header-only; each thread has its own generator, seeded
// from the kernel's random bytes on its first use, so threads never share
// state or a sequence. Not for secrets: use <butil/rand_util.h> for those.
#ifndef BUTIL_FAST_RAND_H
#define BUTIL_FAST_RAND_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <limits>
#include <string>

#include "butil/rand_util.h"

namespace butil {

// A generator's state; all-zero means not seeded yet.
struct FastRandSeed {
    uint64_t s[2];
};

// Seeds `seed` with random bytes (never all-zero, which would stick).
inline void init_fast_rand_seed(FastRandSeed* seed) {
    do {
        RandBytes(seed->s, sizeof(seed->s));
    } while (seed->s[0] == 0 && seed->s[1] == 0);
}

// The next number of `seed`'s sequence (xorshift128+, Vigna 2014).
inline uint64_t fast_rand(FastRandSeed* seed) {
    uint64_t x = seed->s[0];
    const uint64_t y = seed->s[1];
    seed->s[0] = y;
    x ^= x << 23;
    seed->s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
    return seed->s[1] + y;
}

namespace fast_rand_internal {
// This thread's generator, seeded on first use.
inline FastRandSeed* ThreadSeed() {
    static thread_local FastRandSeed seed = {{0, 0}};
    if (seed.s[0] == 0 && seed.s[1] == 0) {
        init_fast_rand_seed(&seed);
    }
    return &seed;
}

// Uniform in [0, range) for range > 0: draws above the last whole multiple
// of `range` are redrawn so that no value is favoured.
inline uint64_t Below(uint64_t range, FastRandSeed* seed) {
    const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % range;
    uint64_t value;
    do {
        value = fast_rand(seed);
    } while (value >= limit);
    return value % range;
}
}  // namespace fast_rand_internal

// A number in [0, UINT64_MAX] from this thread's generator.
inline uint64_t fast_rand() { return fast_rand(fast_rand_internal::ThreadSeed()); }

// A number in [0, range); 0 when range is 0.
inline uint64_t fast_rand_less_than(uint64_t range) {
    if (range == 0) {
        return 0;
    }
    return fast_rand_internal::Below(range, fast_rand_internal::ThreadSeed());
}

// A number in [min, max], both included; min and max may come in either order.
inline int64_t fast_rand_in_64(int64_t min, int64_t max) {
    if (min > max) {
        const int64_t t = min;
        min = max;
        max = t;
    }
    // Two's complement: max - min as unsigned is the distance even when
    // the signed subtraction would overflow.
    const uint64_t range = static_cast<uint64_t>(max) - static_cast<uint64_t>(min) + 1;
    if (range == 0) {  // the whole int64 range
        return static_cast<int64_t>(fast_rand());
    }
    return static_cast<int64_t>(static_cast<uint64_t>(min) +
                                fast_rand_internal::Below(range, fast_rand_internal::ThreadSeed()));
}

inline uint64_t fast_rand_in_u64(uint64_t min, uint64_t max) {
    if (min > max) {
        const uint64_t t = min;
        min = max;
        max = t;
    }
    const uint64_t range = max - min + 1;
    if (range == 0) {  // the whole uint64 range
        return fast_rand();
    }
    return min + fast_rand_internal::Below(range, fast_rand_internal::ThreadSeed());
}

template <typename T>
T fast_rand_in(T min, T max) {
    if (std::numeric_limits<T>::is_signed) {
        return static_cast<T>(fast_rand_in_64(static_cast<int64_t>(min), static_cast<int64_t>(max)));
    }
    return static_cast<T>(fast_rand_in_u64(static_cast<uint64_t>(min), static_cast<uint64_t>(max)));
}

// A double in [0, 1).
inline double fast_rand_double() { return BitsToOpenEndedUnitInterval(fast_rand()); }

// Fills `output` with `output_length` bytes from this thread's generator.
inline void fast_rand_bytes(void* output, size_t output_length) {
    unsigned char* at = static_cast<unsigned char*>(output);
    while (output_length > 0) {
        uint64_t value = fast_rand();
        const size_t n = output_length < sizeof(value) ? output_length : sizeof(value);
        for (size_t i = 0; i < n; ++i) {
            at[i] = static_cast<unsigned char>(value >> (8 * i));
        }
        at += n;
        output_length -= n;
    }
}

// `length` characters, each 'A' plus 4 random bits ('A'..'P'), as brpc's.
inline std::string fast_rand_printable(size_t length) {
    std::string result(length, 'A');
    uint64_t bits = 0;
    for (size_t i = 0; i < length; ++i) {
        if (i % 16 == 0) {
            bits = fast_rand();
        }
        result[i] = static_cast<char>('A' + (bits & 0xF));
        bits >>= 4;
    }
    return result;
}

}  // namespace butil

#endif  // BUTIL_FAST_RAND_H
