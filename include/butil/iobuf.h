// butil::IOBuf: a byte sequence that is copied, cut and concatenated without
// copying its bytes. brpc's public API, our own header-only design (C++11).
//
// The bytes live in reference-counted blocks; an IOBuf is a list of
// (block, offset, length) references into them. Copying an IOBuf or moving
// bytes from one IOBuf to another copies references, never bytes. A block's
// written bytes never change: appends write only past the written end of a
// block, and only while this IOBuf holds the sole reference to it, so bytes
// another IOBuf can see are immutable.
//
// Like brpc's, an IOBuf is thread-compatible: distinct IOBufs (even ones
// sharing blocks) may be used from different threads at once, one IOBuf may
// not be modified from two threads at once.
//
// Allocation failure throws std::bad_alloc, as the standard containers do;
// the int results report invalid arguments (-1), brpc's convention.

#ifndef BUTIL_IOBUF_H
#define BUTIL_IOBUF_H

#include <sys/types.h>
#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "butil/strings/string_piece.h"

namespace butil {

namespace iobuf_internal {

// Each thread keeps a few freed default-size blocks for its next IOBufs, so
// a stream of small messages does not go through malloc for 8 KiB each
// time (brpc's IOBuf has the same kind of per-thread block cache). Plain
// data, so it stays usable while the thread's other thread_locals are
// being destroyed; the reaper frees what is cached at thread exit.
struct BlockCache {
    enum { kCapacity = 32 };
    char* blocks[kCapacity];
    size_t count;
    bool closed;
};

inline BlockCache& block_cache() {
    static thread_local BlockCache cache;  // zero-initialized
    return cache;
}

struct BlockCacheReaper {
    ~BlockCacheReaper() {
        BlockCache& cache = block_cache();
        for (size_t i = 0; i < cache.count; ++i) {
            delete[] cache.blocks[i];
        }
        cache.count = 0;
        cache.closed = true;
    }
};

inline char* take_block(size_t capacity, size_t cached_size) {
    BlockCache& cache = block_cache();
    if (capacity == cached_size && cache.count > 0) {
        return cache.blocks[--cache.count];
    }
    return new char[capacity];
}

inline void give_back_block(char* block, size_t capacity, size_t cached_size) {
    BlockCache& cache = block_cache();
    if (capacity == cached_size && !cache.closed && cache.count < BlockCache::kCapacity) {
        static thread_local BlockCacheReaper reaper;
        (void)reaper;
        cache.blocks[cache.count++] = block;
        return;
    }
    delete[] block;
}

}  // namespace iobuf_internal

class IOBuf {
public:
    // Size of the blocks appends allocate; a single large append allocates
    // bigger blocks, up to MAX_BLOCK_SIZE, to keep the reference list short.
    static const size_t DEFAULT_BLOCK_SIZE = 8192;
    static const size_t MAX_BLOCK_SIZE = 65536;

    IOBuf() : length_(0) {}
    IOBuf(const IOBuf& other) : refs_(other.refs_), length_(other.length_) {}
    IOBuf(IOBuf&& other) noexcept : refs_(std::move(other.refs_)), length_(other.length_) {
        other.refs_.clear();
        other.length_ = 0;
    }
    ~IOBuf() {}

    IOBuf& operator=(const IOBuf& other) {
        if (this != &other) {
            refs_ = other.refs_;
            length_ = other.length_;
        }
        return *this;
    }
    IOBuf& operator=(IOBuf&& other) noexcept {
        if (this != &other) {
            refs_ = std::move(other.refs_);
            length_ = other.length_;
            other.refs_.clear();
            other.length_ = 0;
        }
        return *this;
    }
    IOBuf& operator=(const char* s) {
        clear();
        append(s);
        return *this;
    }
    IOBuf& operator=(const std::string& s) {
        clear();
        append(s);
        return *this;
    }

    void swap(IOBuf& other) {
        refs_.swap(other.refs_);
        std::swap(length_, other.length_);
    }

    size_t length() const { return length_; }
    size_t size() const { return length_; }
    bool empty() const { return length_ == 0; }
    void clear() {
        refs_.clear();
        length_ = 0;
    }

    // Appends a copy of `count` bytes at `data`. Returns 0, or -1 when
    // `data` is NULL and `count` is not 0.
    int append(const void* data, size_t count) {
        if (count == 0) {
            return 0;
        }
        if (data == NULL) {
            return -1;
        }
        const char* src = static_cast<const char*>(data);
        while (count > 0) {
            Block* tail = writable_tail();
            if (tail == NULL) {
                size_t capacity = count < DEFAULT_BLOCK_SIZE ? size_t(DEFAULT_BLOCK_SIZE) : count;
                if (capacity > MAX_BLOCK_SIZE) {
                    capacity = MAX_BLOCK_SIZE;
                }
                Ref fresh;
                fresh.block = std::make_shared<Block>(capacity);
                fresh.offset = 0;
                fresh.length = 0;
                refs_.push_back(std::move(fresh));
                tail = refs_.back().block.get();
            }
            const size_t room = tail->capacity - tail->written;
            const size_t n = count < room ? count : room;
            memcpy(tail->data + tail->written, src, n);
            tail->written += n;
            refs_.back().length += n;
            length_ += n;
            src += n;
            count -= n;
        }
        return 0;
    }
    // Appends a copy of the C string `s` (without its '\0'); -1 when NULL.
    int append(const char* s) {
        if (s == NULL) {
            return -1;
        }
        return append(s, strlen(s));
    }
    int append(const std::string& s) { return append(s.data(), s.size()); }
    // Shares other's bytes.
    void append(const IOBuf& other) {
        if (&other == this) {
            const RefList same(refs_);
            for (size_t i = 0; i < same.size(); ++i) {
                push_ref(same[i]);
            }
            return;
        }
        for (size_t i = 0; i < other.refs_.size(); ++i) {
            push_ref(other.refs_[i]);
        }
    }
    // Takes other's bytes and leaves it empty.
    void append(IOBuf&& other) {
        if (&other == this) {
            append(static_cast<const IOBuf&>(other));
            return;
        }
        for (size_t i = 0; i < other.refs_.size(); ++i) {
            push_ref(std::move(other.refs_[i]));
        }
        other.clear();
    }
    int push_back(char c) { return append(&c, 1); }

    // Appends `size` bytes at `data` without copying them; `deleter(data)`
    // runs once, when no IOBuf refers to them any more (immediately when
    // `size` is 0). Returns -1 when `data` is NULL.
    int append_user_data(void* data, size_t size, std::function<void(void*)> deleter) {
        if (data == NULL) {
            return -1;
        }
        if (size == 0) {
            if (deleter) {
                deleter(data);
            }
            return 0;
        }
        Ref ref;
        ref.block = std::make_shared<Block>(data, size, std::move(deleter));
        ref.offset = 0;
        ref.length = size;
        push_ref(std::move(ref));
        return 0;
    }

    // Moves the first min(n, length()) bytes to the back of `out`, sharing
    // them. Returns the number of bytes moved.
    size_t cutn(IOBuf* out, size_t n) {
        if (out == this) {
            IOBuf front;
            const size_t moved = cutn(&front, n);
            append(std::move(front));
            return moved;
        }
        if (n > length_) {
            n = length_;
        }
        size_t left = n;
        size_t whole = 0;
        while (whole < refs_.size() && refs_[whole].length <= left) {
            left -= refs_[whole].length;
            out->push_ref(std::move(refs_[whole]));
            ++whole;
        }
        refs_.erase_front(whole);
        if (left > 0) {
            Ref part = refs_.front();
            part.length = left;
            refs_.front().offset += left;
            refs_.front().length -= left;
            out->push_ref(std::move(part));
        }
        length_ -= n;
        return n;
    }
    // Copies the first min(n, length()) bytes to `out` and removes them.
    size_t cutn(void* out, size_t n) {
        const size_t copied = copy_to(out, n);
        pop_front(copied);
        return copied;
    }
    // Appends the first min(n, length()) bytes to `*out` and removes them.
    size_t cutn(std::string* out, size_t n) {
        const size_t copied = append_to(out, n);
        pop_front(copied);
        return copied;
    }
    // Removes the first byte into `*c`; false when empty.
    bool cut1(char* c) { return cutn(c, 1) == 1; }

    // Remove min(n, length()) bytes from the front or the back; return how
    // many were removed.
    size_t pop_front(size_t n) {
        if (n > length_) {
            n = length_;
        }
        size_t left = n;
        size_t whole = 0;
        while (whole < refs_.size() && refs_[whole].length <= left) {
            left -= refs_[whole].length;
            ++whole;
        }
        refs_.erase_front(whole);
        if (left > 0) {
            refs_.front().offset += left;
            refs_.front().length -= left;
        }
        length_ -= n;
        return n;
    }
    size_t pop_back(size_t n) {
        if (n > length_) {
            n = length_;
        }
        size_t left = n;
        while (left > 0 && refs_.back().length <= left) {
            left -= refs_.back().length;
            refs_.pop_back();
        }
        if (left > 0) {
            refs_.back().length -= left;
        }
        length_ -= n;
        return n;
    }

    // Copy min(n, length() - pos) bytes starting at `pos` into `buf`
    // (nothing when pos >= length()); return how many were copied.
    size_t copy_to(void* buf, size_t n = (size_t)-1L, size_t pos = 0) const {
        char* dst = static_cast<char*>(buf);
        return for_each_span(pos, n, [&dst](const char* p, size_t len) {
            memcpy(dst, p, len);
            dst += len;
        });
    }
    // Replaces `*s` with the copied bytes.
    size_t copy_to(std::string* s, size_t n = (size_t)-1L, size_t pos = 0) const {
        s->clear();
        return append_to(s, n, pos);
    }
    // Copying into an IOBuf would pick the void* overload and overwrite the
    // object; append_to(IOBuf*) is the operation meant.
    size_t copy_to(IOBuf* buf, size_t n = (size_t)-1L, size_t pos = 0) const = delete;
    // Like copy_to, and '\0'-terminates: `cstr` holds at least the copied
    // length + 1 bytes.
    size_t copy_to_cstr(char* cstr, size_t n = (size_t)-1L, size_t pos = 0) const {
        const size_t copied = copy_to(cstr, n, pos);
        cstr[copied] = '\0';
        return copied;
    }
    // Append the selected bytes to `*s` (copied) or `*buf` (shared).
    size_t append_to(std::string* s, size_t n = (size_t)-1L, size_t pos = 0) const {
        return for_each_span(pos, n, [s](const char* p, size_t len) { s->append(p, len); });
    }
    size_t append_to(IOBuf* buf, size_t n = (size_t)-1L, size_t pos = 0) const {
        if (buf == this) {
            IOBuf selected;
            const size_t appended = append_to(&selected, n, pos);
            buf->append(std::move(selected));
            return appended;
        }
        size_t skip = pos;
        size_t want = n;
        size_t appended = 0;
        for (size_t i = 0; i < refs_.size() && want > 0; ++i) {
            const Ref& ref = refs_[i];
            if (skip >= ref.length) {
                skip -= ref.length;
                continue;
            }
            Ref part = ref;
            part.offset += skip;
            part.length -= skip;
            skip = 0;
            if (part.length > want) {
                part.length = want;
            }
            want -= part.length;
            appended += part.length;
            buf->push_ref(std::move(part));
        }
        return appended;
    }

    std::string to_string() const {
        std::string s;
        s.reserve(length_);
        append_to(&s);
        return s;
    }

    bool equals(const StringPiece& s) const {
        if (s.size() != length_) {
            return false;
        }
        const char* expected = s.data();
        for (size_t i = 0; i < refs_.size(); ++i) {
            if (memcmp(refs_[i].bytes(), expected, refs_[i].length) != 0) {
                return false;
            }
            expected += refs_[i].length;
        }
        return true;
    }
    bool equals(const IOBuf& other) const {
        if (other.length_ != length_) {
            return false;
        }
        size_t i = 0, i_offset = 0, j = 0, j_offset = 0;
        while (i < refs_.size() && j < other.refs_.size()) {
            const Ref& a = refs_[i];
            const Ref& b = other.refs_[j];
            const size_t a_left = a.length - i_offset;
            const size_t b_left = b.length - j_offset;
            const size_t n = a_left < b_left ? a_left : b_left;
            if (memcmp(a.bytes() + i_offset, b.bytes() + j_offset, n) != 0) {
                return false;
            }
            i_offset += n;
            j_offset += n;
            if (i_offset == a.length) {
                ++i;
                i_offset = 0;
            }
            if (j_offset == b.length) {
                ++j;
                j_offset = 0;
            }
        }
        return true;
    }

    // The contiguous pieces the bytes are stored in, in order; each is
    // valid while this IOBuf is alive and unmodified. Out-of-range i gives
    // an empty piece.
    size_t backing_block_num() const { return refs_.size(); }
    StringPiece backing_block(size_t i) const {
        if (i >= refs_.size()) {
            return StringPiece();
        }
        return StringPiece(refs_[i].bytes(), refs_[i].length);
    }

private:
    struct Block {
        explicit Block(size_t cap)
            : storage(iobuf_internal::take_block(cap, DEFAULT_BLOCK_SIZE)),
              data(storage),
              capacity(cap),
              written(0) {}
        Block(void* user_data, size_t size, std::function<void(void*)> user_deleter)
            : storage(NULL),
              data(static_cast<char*>(user_data)),
              capacity(size),
              written(size),
              deleter(std::move(user_deleter)) {}
        ~Block() {
            if (storage != NULL) {
                iobuf_internal::give_back_block(storage, capacity, DEFAULT_BLOCK_SIZE);
            } else if (deleter) {
                deleter(data);
            }
        }
        Block(const Block&) = delete;
        Block& operator=(const Block&) = delete;

        // Owned bytes (NULL for user data, which `deleter` releases).
        char* storage;
        char* data;
        size_t capacity;
        // Bytes [0, written) are immutable; only the sole owner writes past them.
        size_t written;
        std::function<void(void*)> deleter;
    };

    struct Ref {
        const char* bytes() const { return block->data + offset; }

        std::shared_ptr<Block> block;
        size_t offset;
        size_t length;
    };

    // The references, the first kept inline: most IOBufs (a received
    // message, a small request) have one, so making one allocates no list.
    class RefList {
    public:
        RefList() : first_(), has_first_(false) {}
        RefList(const RefList&) = default;
        RefList& operator=(const RefList&) = default;
        RefList(RefList&& other) noexcept
            : first_(std::move(other.first_)), rest_(std::move(other.rest_)), has_first_(other.has_first_) {
            other.clear();
        }
        RefList& operator=(RefList&& other) noexcept {
            if (this != &other) {
                first_ = std::move(other.first_);
                rest_ = std::move(other.rest_);
                has_first_ = other.has_first_;
                other.clear();
            }
            return *this;
        }

        size_t size() const { return has_first_ ? 1 + rest_.size() : 0; }
        bool empty() const { return !has_first_; }
        Ref& operator[](size_t i) { return i == 0 ? first_ : rest_[i - 1]; }
        const Ref& operator[](size_t i) const { return i == 0 ? first_ : rest_[i - 1]; }
        Ref& front() { return first_; }
        Ref& back() { return rest_.empty() ? first_ : rest_.back(); }
        const Ref& back() const { return rest_.empty() ? first_ : rest_.back(); }

        void push_back(Ref ref) {
            if (has_first_) {
                rest_.push_back(std::move(ref));
            } else {
                first_ = std::move(ref);
                has_first_ = true;
            }
        }
        void pop_back() {
            if (!rest_.empty()) {
                rest_.pop_back();
            } else {
                clear();
            }
        }
        // Removes the first `n` references (all when n >= size()).
        void erase_front(size_t n) {
            if (n == 0) {
                return;
            }
            if (n >= size()) {
                clear();
                return;
            }
            first_ = std::move(rest_[n - 1]);
            rest_.erase(rest_.begin(), rest_.begin() + static_cast<std::ptrdiff_t>(n));
        }
        void clear() {
            first_ = Ref();
            rest_.clear();
            has_first_ = false;
        }
        void swap(RefList& other) {
            std::swap(first_, other.first_);
            rest_.swap(other.rest_);
            std::swap(has_first_, other.has_first_);
        }

    private:
        Ref first_;
        std::vector<Ref> rest_;
        bool has_first_;
    };

    // The tail block when this IOBuf may write into it: its only owner is
    // this IOBuf, the tail reference ends where the written bytes end, and
    // it has room.
    Block* writable_tail() {
        if (refs_.empty()) {
            return NULL;
        }
        const Ref& tail = refs_.back();
        Block* block = tail.block.get();
        if (tail.block.use_count() != 1 || tail.offset + tail.length != block->written ||
            block->written == block->capacity) {
            return NULL;
        }
        // use_count() is a relaxed load: order our writes after another
        // thread's last use of the block, which ended in its release of it.
        std::atomic_thread_fence(std::memory_order_acquire);
        return block;
    }

    // Appends a reference, merging it into the tail when it continues it.
    void push_ref(Ref ref) {
        if (ref.length == 0) {
            return;
        }
        length_ += ref.length;
        if (!refs_.empty()) {
            Ref& tail = refs_.back();
            if (tail.block == ref.block && tail.offset + tail.length == ref.offset) {
                tail.length += ref.length;
                return;
            }
        }
        refs_.push_back(std::move(ref));
    }

    // Calls visit(ptr, len) on the contiguous pieces of the bytes
    // [pos, pos + n) clipped to the buffer; returns how many bytes it visited.
    template <typename Visit>
    size_t for_each_span(size_t pos, size_t n, Visit visit) const {
        size_t skip = pos;
        size_t want = n;
        size_t visited = 0;
        for (size_t i = 0; i < refs_.size() && want > 0; ++i) {
            const Ref& ref = refs_[i];
            if (skip >= ref.length) {
                skip -= ref.length;
                continue;
            }
            size_t len = ref.length - skip;
            if (len > want) {
                len = want;
            }
            visit(ref.bytes() + skip, len);
            skip = 0;
            want -= len;
            visited += len;
        }
        return visited;
    }

    // Invariant: no reference is empty, and length_ is the sum of their lengths.
    RefList refs_;
    size_t length_;
};

inline std::ostream& operator<<(std::ostream& os, const IOBuf& buf) {
    for (size_t i = 0; i < buf.backing_block_num(); ++i) {
        os << buf.backing_block(i);
    }
    return os;
}

inline bool operator==(const IOBuf& b, const StringPiece& s) { return b.equals(s); }
inline bool operator==(const StringPiece& s, const IOBuf& b) { return b.equals(s); }
inline bool operator!=(const IOBuf& b, const StringPiece& s) { return !b.equals(s); }
inline bool operator!=(const StringPiece& s, const IOBuf& b) { return !b.equals(s); }
inline bool operator==(const IOBuf& b1, const IOBuf& b2) { return b1.equals(b2); }
inline bool operator!=(const IOBuf& b1, const IOBuf& b2) { return !b1.equals(b2); }

}  // namespace butil

#endif  // BUTIL_IOBUF_H
