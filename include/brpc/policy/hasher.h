// brpc's hash functions for request codes of consistent hashing
// (Controller::set_request_code with "c_murmurhash" / "c_md5"): the same
// functions the balancers place servers with. Header-only over the C ABI.

#ifndef BRPC_POLICY_HASHER_H
#define BRPC_POLICY_HASHER_H

#include <cstddef>
#include <cstdint>

#include "brpc_stream.h"

namespace brpc {
namespace policy {

// MurmurHash3 x86 32-bit, seed 0.
inline uint32_t MurmurHash32(const void* key, size_t len) {
    return brpc_murmurhash32(static_cast<const uint8_t*>(key), len);
}

// The first four bytes of the MD5 digest, little-endian.
inline uint32_t MD5Hash32(const void* key, size_t len) {
    return brpc_md5hash32(static_cast<const uint8_t*>(key), len);
}

}  // namespace policy
}  // namespace brpc

#endif  // BRPC_POLICY_HASHER_H
