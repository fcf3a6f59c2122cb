// butil/macros.h: the small macros brpc programs use (copy control, array
// sizes, token pasting, compile-time checks, branch hints).
#ifndef BUTIL_MACROS_H_
#define BUTIL_MACROS_H_

#include <cstddef>

// As brpc's macros.h: programs reach butil::string_printf through it.
#include "butil/string_printf.h"

#define BUTIL_DELETE_FUNCTION(decl) decl = delete
#define DISALLOW_COPY(TypeName) BUTIL_DELETE_FUNCTION(TypeName(const TypeName&))
#define DISALLOW_ASSIGN(TypeName) BUTIL_DELETE_FUNCTION(void operator=(const TypeName&))
#define DISALLOW_MOVE(TypeName) BUTIL_DELETE_FUNCTION(TypeName(TypeName&&))
#define DISALLOW_MOVE_ASSIGN(TypeName) BUTIL_DELETE_FUNCTION(void operator=(TypeName&&))
#define DISALLOW_COPY_AND_ASSIGN(TypeName) \
    DISALLOW_COPY(TypeName);               \
    DISALLOW_ASSIGN(TypeName)
#define DISALLOW_MOVE_AND_ASSIGN(TypeName) \
    DISALLOW_MOVE(TypeName);               \
    DISALLOW_MOVE_ASSIGN(TypeName)
#define DISALLOW_COPY_AND_MOVE(TypeName) \
    DISALLOW_COPY_AND_ASSIGN(TypeName);  \
    DISALLOW_MOVE_AND_ASSIGN(TypeName)
#define DISALLOW_EVIL_CONSTRUCTORS(TypeName) DISALLOW_COPY_AND_ASSIGN(TypeName)
#define DISALLOW_IMPLICIT_CONSTRUCTORS(TypeName) \
    BUTIL_DELETE_FUNCTION(TypeName());           \
    DISALLOW_COPY_AND_ASSIGN(TypeName)

// Elements of a C array; does not compile for a pointer.
namespace butil {
namespace macros_internal {
template <typename T, size_t N>
char (&ArraySizeHelper(T (&array)[N]))[N];
}  // namespace macros_internal
}  // namespace butil
#define arraysize(array) (sizeof(::butil::macros_internal::ArraySizeHelper(array)))
#define ARRAY_SIZE(array) arraysize(array)
#define ARRAYSIZE_UNSAFE(a) \
    ((sizeof(a) / sizeof(*(a))) / static_cast<size_t>(!(sizeof(a) % sizeof(*(a)))))

#define BAIDU_CONCAT_HELPER(a, b) a##b
#define BAIDU_CONCAT(a, b) BAIDU_CONCAT_HELPER(a, b)
#define BAIDU_SYMBOLSTR_HELPER(a) #a
#define BAIDU_SYMBOLSTR(a) BAIDU_SYMBOLSTR_HELPER(a)
#define BAIDU_CASSERT(expr, msg) static_assert(expr, #msg)
#define COMPILE_ASSERT(expr, msg) static_assert(expr, #msg)
#define BAIDU_TYPEOF(expr) __typeof__(expr)

#define BAIDU_LIKELY(expr) (__builtin_expect(!!(expr), 1))
#define BAIDU_UNLIKELY(expr) (__builtin_expect(!!(expr), 0))
#define ALLOW_UNUSED __attribute__((unused))
#define WARN_UNUSED_RESULT __attribute__((warn_unused_result))
#define NOINLINE __attribute__((noinline))
#define BUTIL_FORCE_INLINE inline __attribute__((always_inline))
#define BAIDU_WEAK __attribute__((weak))
#define BAIDU_DEPRECATED __attribute__((deprecated))
#define BAIDU_NOEXCEPT noexcept
#define BAIDU_CACHELINE_SIZE 64
#define BAIDU_CACHELINE_ALIGNMENT __attribute__((aligned(BAIDU_CACHELINE_SIZE)))
#define ALIGNAS(byte_alignment) __attribute__((aligned(byte_alignment)))
#define ALIGNOF(type) alignof(type)
#define OVERRIDE override
#define FINAL final
#define PRINTF_FORMAT(format_param, dots_param) \
    __attribute__((format(printf, format_param, dots_param)))

// Pointer to the struct holding `ptr` as its `member`.
#define container_of(ptr, type, member) \
    (reinterpret_cast<type*>(reinterpret_cast<char*>(ptr) - offsetof(type, member)))

namespace butil {
// Discards a result a caller must otherwise use (WARN_UNUSED_RESULT).
template <typename T>
inline void ignore_result(const T&) {}
}  // namespace butil

#endif  // BUTIL_MACROS_H_
