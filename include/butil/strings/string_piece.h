// butil::StringPiece: a non-owning view of bytes, the subset of brpc's
// StringPiece that IOBuf and brpc programs use. Header-only, C++11.

#ifndef BUTIL_STRINGS_STRING_PIECE_H
#define BUTIL_STRINGS_STRING_PIECE_H

#include <cstddef>
#include <cstring>
#include <ostream>
#include <string>

namespace butil {

class StringPiece {
public:
    typedef size_t size_type;
    typedef const char* const_iterator;
    static constexpr size_type npos = static_cast<size_type>(-1);

    StringPiece() : ptr_(NULL), length_(0) {}
    StringPiece(const char* str) : ptr_(str), length_(str ? strlen(str) : 0) {}
    StringPiece(const std::string& str) : ptr_(str.data()), length_(str.size()) {}
    StringPiece(const char* data, size_type length) : ptr_(data), length_(length) {}

    const char* data() const { return ptr_; }
    size_type size() const { return length_; }
    size_type length() const { return length_; }
    bool empty() const { return length_ == 0; }

    void clear() {
        ptr_ = NULL;
        length_ = 0;
    }
    void set(const char* data, size_type length) {
        ptr_ = data;
        length_ = length;
    }

    char operator[](size_type i) const { return ptr_[i]; }
    const_iterator begin() const { return ptr_; }
    const_iterator end() const { return ptr_ + length_; }

    // Callers pass n <= size(), as with brpc's StringPiece.
    void remove_prefix(size_type n) {
        ptr_ += n;
        length_ -= n;
    }
    void remove_suffix(size_type n) { length_ -= n; }

    // The bytes from `pos` on, at most `n` of them (empty when pos >= size()).
    StringPiece substr(size_type pos, size_type n = npos) const {
        if (pos >= length_) {
            return StringPiece();
        }
        const size_type rest = length_ - pos;
        return StringPiece(ptr_ + pos, n < rest ? n : rest);
    }
    // The index of the first `c` at or after `pos`, or npos.
    size_type find(char c, size_type pos = 0) const {
        for (size_type i = pos; i < length_; ++i) {
            if (ptr_[i] == c) {
                return i;
            }
        }
        return npos;
    }

    std::string as_string() const { return empty() ? std::string() : std::string(ptr_, length_); }
    void CopyToString(std::string* target) const { target->assign(ptr_ ? ptr_ : "", length_); }
    void AppendToString(std::string* target) const { target->append(ptr_ ? ptr_ : "", length_); }

    // Negative, zero or positive as *this sorts before, equal to or after x
    // (bytewise, a proper prefix sorting first).
    int compare(const StringPiece& x) const {
        const size_type common = length_ < x.length_ ? length_ : x.length_;
        const int r = common == 0 ? 0 : memcmp(ptr_, x.ptr_, common);
        if (r != 0) {
            return r;
        }
        return length_ < x.length_ ? -1 : (length_ > x.length_ ? 1 : 0);
    }
    bool starts_with(const StringPiece& x) const {
        return length_ >= x.length_ && StringPiece(ptr_, x.length_).compare(x) == 0;
    }
    bool ends_with(const StringPiece& x) const {
        return length_ >= x.length_ &&
               StringPiece(ptr_ + (length_ - x.length_), x.length_).compare(x) == 0;
    }

private:
    const char* ptr_;
    size_type length_;
};

inline bool operator==(const StringPiece& a, const StringPiece& b) { return a.compare(b) == 0; }
inline bool operator!=(const StringPiece& a, const StringPiece& b) { return a.compare(b) != 0; }
inline bool operator<(const StringPiece& a, const StringPiece& b) { return a.compare(b) < 0; }
inline bool operator>(const StringPiece& a, const StringPiece& b) { return a.compare(b) > 0; }
inline bool operator<=(const StringPiece& a, const StringPiece& b) { return a.compare(b) <= 0; }
inline bool operator>=(const StringPiece& a, const StringPiece& b) { return a.compare(b) >= 0; }

inline std::ostream& operator<<(std::ostream& os, const StringPiece& piece) {
    if (!piece.empty()) {
        os.write(piece.data(), static_cast<std::streamsize>(piece.size()));
    }
    return os;
}

}  // namespace butil

#endif  // BUTIL_STRINGS_STRING_PIECE_H
