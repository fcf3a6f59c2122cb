// butil::StringSplitter, StringMultiSplitter and KeyValuePairsSplitter, as
// brpc declares them: walk the fields of a string separated by one character
// (or any of a set), without copying or allocating. Header-only, C++11.
//
//   for (butil::StringSplitter sp("a,b,,c", ','); sp; ++sp) {
//       use(sp.field(), sp.length());   // "a", "b", "c"
//   }
//
// The input is either NUL-terminated (no end given) or the range
// [begin, end), which may hold NULs. Empty fields are skipped unless
// ALLOW_EMPTY_FIELD is given. The to_*() conversions parse the whole field
// as a base-10 number (or floating point); they return 0 on success and -1
// when the field holds anything else or the value does not fit, as brpc's.
// Unlike brpc's, they never read past the field's end.

#ifndef BUTIL_STRING_SPLITTER_H
#define BUTIL_STRING_SPLITTER_H

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include <butil/strings/string_piece.h>

namespace butil {

enum EmptyFieldAction { SKIP_EMPTY_FIELD, ALLOW_EMPTY_FIELD };

namespace string_splitter_detail {

// Parses all of [p, p+n) with `parse` (a strto* function taking a base or
// not); false when the field is empty or has bytes the parser did not take.
template <typename T, typename Parse>
inline bool parse_whole(const char* p, size_t n, Parse parse, T* out) {
    if (n == 0) {
        return false;
    }
    // A copy ends the field with NUL: the strto* functions stop there.
    const std::string field(p, n);
    char* end = NULL;
    *out = parse(field.c_str(), &end);
    return end == field.c_str() + field.size();
}

inline long to_long(const char* s, char** e) { return strtol(s, e, 10); }
inline unsigned long to_ulong(const char* s, char** e) { return strtoul(s, e, 10); }
inline long long to_longlong(const char* s, char** e) { return strtoll(s, e, 10); }
inline unsigned long long to_ulonglong(const char* s, char** e) { return strtoull(s, e, 10); }
inline float to_float(const char* s, char** e) { return strtof(s, e); }
inline double to_double(const char* s, char** e) { return strtod(s, e); }

// The numeric conversions both splitters offer, over the derived class's
// field() and length().
template <typename Derived>
class FieldConversions {
public:
    int to_int8(int8_t* pv) const { return narrow_signed(pv, INT8_MIN, INT8_MAX); }
    int to_uint8(uint8_t* pv) const { return narrow_unsigned(pv, UINT8_MAX); }
    int to_int(int* pv) const { return narrow_signed(pv, INT_MIN, INT_MAX); }
    int to_uint(unsigned int* pv) const { return narrow_unsigned(pv, UINT_MAX); }
    int to_long(long* pv) const { return whole(string_splitter_detail::to_long, pv); }
    int to_ulong(unsigned long* pv) const { return whole(string_splitter_detail::to_ulong, pv); }
    int to_longlong(long long* pv) const {
        return whole(string_splitter_detail::to_longlong, pv);
    }
    int to_ulonglong(unsigned long long* pv) const {
        return whole(string_splitter_detail::to_ulonglong, pv);
    }
    int to_float(float* pv) const { return whole(string_splitter_detail::to_float, pv); }
    int to_double(double* pv) const { return whole(string_splitter_detail::to_double, pv); }

private:
    const Derived& self() const { return *static_cast<const Derived*>(this); }
    template <typename T, typename Parse>
    int whole(Parse parse, T* pv) const {
        return parse_whole(self().field(), self().length(), parse, pv) ? 0 : -1;
    }
    template <typename T>
    int narrow_signed(T* pv, long lo, long hi) const {
        long v = 0;
        if (to_long(&v) != 0 || v < lo || v > hi) {
            return -1;
        }
        *pv = static_cast<T>(v);
        return 0;
    }
    template <typename T>
    int narrow_unsigned(T* pv, unsigned long hi) const {
        unsigned long v = 0;
        if (to_ulong(&v) != 0 || v > hi) {
            return -1;
        }
        *pv = static_cast<T>(v);
        return 0;
    }
};

// The walk shared by both splitters; `IsSep` tells a separator.
template <typename IsSep>
class FieldWalk {
public:
    FieldWalk(const char* begin, const char* end, IsSep is_sep, EmptyFieldAction action)
        : head_(begin), tail_(NULL), end_(end), is_sep_(is_sep), action_(action) {
        if (head_ == NULL) {
            return;
        }
        if (action_ == SKIP_EMPTY_FIELD) {
            while (more(head_) && is_sep_(*head_)) {
                ++head_;
            }
        }
        tail_ = field_end(head_);
    }

    void next() {
        if (tail_ == NULL) {
            return;
        }
        if (more(tail_)) {
            ++tail_;  // past the separator
            if (action_ == SKIP_EMPTY_FIELD) {
                while (more(tail_) && is_sep_(*tail_)) {
                    ++tail_;
                }
            }
        }
        head_ = tail_;
        tail_ = field_end(head_);
    }

    bool valid() const { return head_ != NULL && more(head_); }
    const char* head() const { return head_; }
    size_t length() const { return tail_ == NULL ? 0 : static_cast<size_t>(tail_ - head_); }

private:
    // Whether p is inside the input (before its end or its NUL).
    bool more(const char* p) const { return end_ == NULL ? *p != '\0' : p != end_; }
    const char* field_end(const char* p) const {
        while (more(p) && !is_sep_(*p)) {
            ++p;
        }
        return p;
    }

    const char* head_;
    const char* tail_;
    const char* end_;
    IsSep is_sep_;
    EmptyFieldAction action_;
};

struct OneSeparator {
    char sep;
    bool operator()(char c) const { return c == sep; }
};

struct AnySeparator {
    const char* seps;
    bool operator()(char c) const { return c != '\0' && seps != NULL && strchr(seps, c) != NULL; }
};

}  // namespace string_splitter_detail

// Fields of a string separated by one character.
class StringSplitter : public string_splitter_detail::FieldConversions<StringSplitter> {
public:
    StringSplitter(const char* input, char separator, EmptyFieldAction action = SKIP_EMPTY_FIELD)
        : walk_(input, NULL, sep(separator), action) {}
    StringSplitter(const char* str_begin, const char* str_end, char separator,
                   EmptyFieldAction action = SKIP_EMPTY_FIELD)
        : walk_(str_begin, str_end, sep(separator), action) {}
    StringSplitter(const StringPiece& input, char separator,
                   EmptyFieldAction action = SKIP_EMPTY_FIELD)
        : walk_(input.data(), input.data() + input.size(), sep(separator), action) {}

    // Moves to the next field.
    StringSplitter& operator++() {
        walk_.next();
        return *this;
    }
    StringSplitter operator++(int) {
        StringSplitter before = *this;
        walk_.next();
        return before;
    }
    // Non-null while there is a field.
    operator const void*() const { return walk_.valid() ? walk_.head() : NULL; }

    // The field's first byte (not NUL-terminated at its end) and its length.
    const char* field() const { return walk_.head(); }
    size_t length() const { return walk_.length(); }
    StringPiece field_sp() const { return StringPiece(field(), length()); }

private:
    static string_splitter_detail::OneSeparator sep(char c) {
        string_splitter_detail::OneSeparator s;
        s.sep = c;
        return s;
    }
    string_splitter_detail::FieldWalk<string_splitter_detail::OneSeparator> walk_;
};

// Fields of a string separated by any of the characters of `separators`
// (a NUL-terminated set, which must outlive the splitter).
class StringMultiSplitter
    : public string_splitter_detail::FieldConversions<StringMultiSplitter> {
public:
    StringMultiSplitter(const char* input, const char* separators,
                        EmptyFieldAction action = SKIP_EMPTY_FIELD)
        : walk_(input, NULL, seps(separators), action) {}
    StringMultiSplitter(const char* str_begin, const char* str_end, const char* separators,
                        EmptyFieldAction action = SKIP_EMPTY_FIELD)
        : walk_(str_begin, str_end, seps(separators), action) {}

    StringMultiSplitter& operator++() {
        walk_.next();
        return *this;
    }
    StringMultiSplitter operator++(int) {
        StringMultiSplitter before = *this;
        walk_.next();
        return before;
    }
    operator const void*() const { return walk_.valid() ? walk_.head() : NULL; }

    const char* field() const { return walk_.head(); }
    size_t length() const { return walk_.length(); }
    StringPiece field_sp() const { return StringPiece(field(), length()); }

private:
    static string_splitter_detail::AnySeparator seps(const char* s) {
        string_splitter_detail::AnySeparator a;
        a.seps = s;
        return a;
    }
    string_splitter_detail::FieldWalk<string_splitter_detail::AnySeparator> walk_;
};

// "k1=v1&k2=v2": pairs separated by `pair_delimiter`, each split at its
// first `key_value_delimiter` (a pair without one is all key, empty value).
class KeyValuePairsSplitter {
public:
    KeyValuePairsSplitter(const char* str_begin, const char* str_end, char pair_delimiter,
                          char key_value_delimiter)
        : sp_(str_begin, str_end, pair_delimiter), kv_delim_(key_value_delimiter) {}
    KeyValuePairsSplitter(const char* str_begin, char pair_delimiter, char key_value_delimiter)
        : sp_(str_begin, pair_delimiter), kv_delim_(key_value_delimiter) {}
    KeyValuePairsSplitter(const StringPiece& sp, char pair_delimiter, char key_value_delimiter)
        : sp_(sp, pair_delimiter), kv_delim_(key_value_delimiter) {}

    StringPiece key_and_value() const { return sp_.field_sp(); }
    StringPiece key() const { return key_and_value().substr(0, delim_pos()); }
    StringPiece value() const {
        const StringPiece::size_type pos = delim_pos();
        return pos == StringPiece::npos ? StringPiece() : key_and_value().substr(pos + 1);
    }

    KeyValuePairsSplitter& operator++() {
        ++sp_;
        return *this;
    }
    KeyValuePairsSplitter operator++(int) {
        KeyValuePairsSplitter before = *this;
        ++sp_;
        return before;
    }
    operator const void*() const { return sp_; }

private:
    StringPiece::size_type delim_pos() const { return key_and_value().find(kv_delim_); }

    StringSplitter sp_;
    char kv_delim_;
};

}  // namespace butil

#endif  // BUTIL_STRING_SPLITTER_H
