// butil/string_printf.h: printf into std::string.
#ifndef BUTIL_STRING_PRINTF_H
#define BUTIL_STRING_PRINTF_H

#include <cstdarg>
#include <cstdio>
#include <string>

namespace butil {

// Appends printf-formatted text to `output`; returns 0, or -1 when the
// format is invalid (output unchanged then).
inline int string_vappendf(std::string* output, const char* format, va_list args) {
    va_list copy;
    va_copy(copy, args);
    char small[256];
    const int len = vsnprintf(small, sizeof(small), format, copy);
    va_end(copy);
    if (len < 0) {
        return -1;
    }
    if (static_cast<size_t>(len) < sizeof(small)) {
        output->append(small, len);
        return 0;
    }
    const size_t old_size = output->size();
    output->resize(old_size + len + 1);
    va_copy(copy, args);
    vsnprintf(&(*output)[old_size], len + 1, format, copy);
    va_end(copy);
    output->resize(old_size + len);
    return 0;
}

inline int string_appendf(std::string* output, const char* format, ...)
    __attribute__((format(printf, 2, 3)));
inline int string_appendf(std::string* output, const char* format, ...) {
    va_list args;
    va_start(args, format);
    const int rc = string_vappendf(output, format, args);
    va_end(args);
    return rc;
}

inline int string_vprintf(std::string* output, const char* format, va_list args) {
    output->clear();
    return string_vappendf(output, format, args);
}

inline int string_printf(std::string* output, const char* format, ...)
    __attribute__((format(printf, 2, 3)));
inline int string_printf(std::string* output, const char* format, ...) {
    va_list args;
    va_start(args, format);
    const int rc = string_vprintf(output, format, args);
    va_end(args);
    return rc;
}

inline std::string string_printf(const char* format, ...) __attribute__((format(printf, 1, 2)));
inline std::string string_printf(const char* format, ...) {
    std::string result;
    va_list args;
    va_start(args, format);
    string_vappendf(&result, format, args);
    va_end(args);
    return result;
}

}  // namespace butil

#endif  // BUTIL_STRING_PRINTF_H
