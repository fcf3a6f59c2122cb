// butil/rand_util.h: brpc's random numbers for programs (RandInt,
// RandDouble, RandGenerator, RandBytes, ...). Header-only: the bytes come
// from the kernel's generator (getrandom(2), the source /dev/urandom
// reads), so values are unpredictable and every thread may call these at
// once. For fast, non-cryptographic numbers see <butil/fast_rand.h>.
#ifndef BUTIL_RAND_UTIL_H_
#define BUTIL_RAND_UTIL_H_

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/random.h>
#include <unistd.h>

#include <limits>
#include <string>

namespace butil {

// Fills `output` with `output_length` random bytes. getrandom returns at
// most 32 MiB per call and may be interrupted by a signal: loop until done.
inline void RandBytes(void* output, size_t output_length) {
    char* at = static_cast<char*>(output);
    size_t left = output_length;
    while (left > 0) {
        const ssize_t got = getrandom(at, left, 0);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            // Only a kernel without getrandom (before 3.17) gets here;
            // read the same source through the device instead.
            const int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                return;
            }
            while (left > 0) {
                const ssize_t n = read(fd, at, left);
                if (n <= 0 && errno != EINTR) {
                    break;
                }
                if (n > 0) {
                    at += n;
                    left -= static_cast<size_t>(n);
                }
            }
            close(fd);
            return;
        }
        at += got;
        left -= static_cast<size_t>(got);
    }
}

// `length` random bytes as a string.
inline std::string RandBytesAsString(size_t length) {
    std::string result(length, '\0');
    if (length > 0) {
        RandBytes(&result[0], length);
    }
    return result;
}

// A random number in [0, UINT64_MAX].
inline uint64_t RandUint64() {
    uint64_t value = 0;
    RandBytes(&value, sizeof(value));
    return value;
}

// A random number in [0, range), every value equally likely; 0 when range
// is 0 (brpc requires range > 0).
inline uint64_t RandGenerator(uint64_t range) {
    if (range == 0) {
        return 0;
    }
    // Values at or above the largest multiple of `range` would make the low
    // results more likely than the high ones: draw again.
    const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % range;
    uint64_t value;
    do {
        value = RandUint64();
    } while (value >= limit);
    return value % range;
}

// A random int in [min, max], both included (min <= max, as in brpc).
inline int RandInt(int min, int max) {
    if (max < min) {
        return min;
    }
    const uint64_t range = static_cast<uint64_t>(static_cast<int64_t>(max) - min) + 1;
    return static_cast<int>(static_cast<int64_t>(min) + static_cast<int64_t>(RandGenerator(range)));
}

// Maps 64 random bits to a double in [0, 1): the low 53 bits (a double's
// mantissa) scaled by 2^-53.
inline double BitsToOpenEndedUnitInterval(uint64_t bits) {
    const int kBits = std::numeric_limits<double>::digits;
    return ldexp(static_cast<double>(bits & ((UINT64_C(1) << kBits) - 1)), -kBits);
}

// A random double in [0, 1).
inline double RandDouble() { return BitsToOpenEndedUnitInterval(RandUint64()); }

// A descriptor open on /dev/urandom, opened once and kept for the process
// (as brpc's); -1 if it cannot be opened.
inline int GetUrandomFD() {
    static const int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    return fd;
}

}  // namespace butil

#endif  // BUTIL_RAND_UTIL_H_
