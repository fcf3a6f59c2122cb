// butil::IOBuf: content, zero-copy sharing and isolation between copies.

#include <butil/iobuf.h>

#include <gtest/gtest.h>

#include <atomic>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

std::string pattern(size_t n) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) {
        s[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
    }
    return s;
}

// An IOBuf holding `parts` in separate blocks (user data blocks never merge
// with neighbours from other allocations).
butil::IOBuf split_into_blocks(const std::vector<std::string>& parts) {
    butil::IOBuf buf;
    for (const std::string& part : parts) {
        char* copy = new char[part.size()];
        memcpy(copy, part.data(), part.size());
        buf.append_user_data(copy, part.size(), [](void* p) { delete[] static_cast<char*>(p); });
    }
    return buf;
}

TEST(IOBufTest, StartsEmpty) {
    butil::IOBuf buf;
    EXPECT_TRUE(buf.empty());
    EXPECT_EQ(0u, buf.size());
    EXPECT_EQ(0u, buf.length());
    EXPECT_EQ("", buf.to_string());
    EXPECT_EQ(0u, buf.backing_block_num());
}

TEST(IOBufTest, AppendsBytesCStringsAndStringsInOrder) {
    butil::IOBuf buf;
    EXPECT_EQ(0, buf.append("ab", 2));
    EXPECT_EQ(0, buf.append("cd"));
    EXPECT_EQ(0, buf.append(std::string("e\0f", 3)));
    EXPECT_EQ(0, buf.push_back('g'));
    EXPECT_EQ(std::string("abcde\0fg", 8), buf.to_string());
    EXPECT_EQ(8u, buf.size());
    EXPECT_FALSE(buf.empty());
}

TEST(IOBufTest, AppendingNothingSucceedsAndChangesNothing) {
    butil::IOBuf buf;
    EXPECT_EQ(0, buf.append("", 0));
    EXPECT_EQ(0, buf.append(nullptr, 0));
    EXPECT_EQ(0, buf.append(""));
    EXPECT_TRUE(buf.empty());
    EXPECT_EQ(0u, buf.backing_block_num());
}

TEST(IOBufTest, AppendingFromANullPointerFails) {
    butil::IOBuf buf;
    EXPECT_EQ(-1, buf.append(nullptr, 3));
    EXPECT_EQ(-1, buf.append(static_cast<const char*>(nullptr)));
    EXPECT_TRUE(buf.empty());
}

TEST(IOBufTest, SmallAppendsFillOneBlock) {
    butil::IOBuf buf;
    for (int i = 0; i < 100; ++i) {
        buf.append("0123456789");
    }
    EXPECT_EQ(1000u, buf.size());
    EXPECT_EQ(1u, buf.backing_block_num());
}

TEST(IOBufTest, LargeAppendSpansBlocksAndKeepsEveryByte) {
    const std::string data = pattern(300 * 1000);
    butil::IOBuf buf;
    buf.append(data);
    EXPECT_EQ(data.size(), buf.size());
    EXPECT_GT(buf.backing_block_num(), 1u);
    EXPECT_EQ(data, buf.to_string());
}

TEST(IOBufTest, CopySharesBlocksWithoutCopyingBytes) {
    butil::IOBuf original;
    original.append(pattern(20000));
    const butil::IOBuf copy(original);
    ASSERT_EQ(original.backing_block_num(), copy.backing_block_num());
    for (size_t i = 0; i < copy.backing_block_num(); ++i) {
        EXPECT_EQ(original.backing_block(i).data(), copy.backing_block(i).data());
    }
    EXPECT_EQ(original, copy);
}

TEST(IOBufTest, AppendingToACopyLeavesTheOriginalUnchanged) {
    butil::IOBuf original;
    original.append("shared");
    butil::IOBuf copy(original);
    copy.append("-copy");
    original.append("-original");
    EXPECT_EQ("shared-copy", copy.to_string());
    EXPECT_EQ("shared-original", original.to_string());
}

TEST(IOBufTest, AppendingAfterCuttingLeavesTheCutBytesUnchanged) {
    butil::IOBuf source;
    source.append("abcdef");
    butil::IOBuf front;
    source.cutn(&front, 3);
    front.append("XYZ");
    source.append("123");
    EXPECT_EQ("abcXYZ", front.to_string());
    EXPECT_EQ("def123", source.to_string());
}

TEST(IOBufTest, AppendingAfterPopBackDoesNotOverwriteBytesACopyStillSees) {
    butil::IOBuf buf;
    buf.append("abc");
    butil::IOBuf copy(buf);
    buf.pop_back(1);
    buf.append("X");
    EXPECT_EQ("abX", buf.to_string());
    EXPECT_EQ("abc", copy.to_string());
}

TEST(IOBufTest, AppendIOBufSharesTheOtherBytes) {
    butil::IOBuf other;
    other.append(pattern(100));
    butil::IOBuf buf;
    buf.append("head");
    buf.append(other);
    EXPECT_EQ("head" + pattern(100), buf.to_string());
    EXPECT_EQ(100u, other.size());
    EXPECT_EQ(other.backing_block(0).data(), buf.backing_block(1).data());
}

TEST(IOBufTest, AppendMovedIOBufTakesItsBytesAndEmptiesIt) {
    butil::IOBuf other;
    other.append("tail");
    butil::IOBuf buf;
    buf.append("head-");
    buf.append(std::move(other));
    EXPECT_EQ("head-tail", buf.to_string());
    EXPECT_TRUE(other.empty());  // NOLINT(bugprone-use-after-move): documented state
}

TEST(IOBufTest, AppendingItselfDoublesTheContent) {
    butil::IOBuf buf;
    buf.append("ab");
    buf.append(buf);
    EXPECT_EQ("abab", buf.to_string());
}

TEST(IOBufTest, CutnMovesBytesWithoutCopyingThem) {
    butil::IOBuf source;
    source.append("hello, world");
    const char* stored_at = source.backing_block(0).data();
    butil::IOBuf out;
    out.append(">");
    EXPECT_EQ(5u, source.cutn(&out, 5));
    EXPECT_EQ(">hello", out.to_string());
    EXPECT_EQ(", world", source.to_string());
    EXPECT_EQ(stored_at, out.backing_block(1).data());
    EXPECT_EQ(stored_at + 5, source.backing_block(0).data());
}

TEST(IOBufTest, CutnAcrossBlocksKeepsOrder) {
    butil::IOBuf source = split_into_blocks({"abc", "defg", "hi"});
    butil::IOBuf out;
    EXPECT_EQ(5u, source.cutn(&out, 5));
    EXPECT_EQ("abcde", out.to_string());
    EXPECT_EQ("fghi", source.to_string());
    EXPECT_EQ(2u, out.backing_block_num());
    EXPECT_EQ(2u, source.backing_block_num());
}

TEST(IOBufTest, CutnBeyondTheEndCutsWhatThereIs) {
    butil::IOBuf source;
    source.append("abc");
    butil::IOBuf out;
    EXPECT_EQ(3u, source.cutn(&out, 100));
    EXPECT_EQ("abc", out.to_string());
    EXPECT_TRUE(source.empty());
    EXPECT_EQ(0u, source.cutn(&out, 1));
}

TEST(IOBufTest, CutnIntoItselfMovesTheFrontToTheBack) {
    butil::IOBuf buf;
    buf.append("abcdef");
    EXPECT_EQ(2u, buf.cutn(&buf, 2));
    EXPECT_EQ("cdefab", buf.to_string());
}

TEST(IOBufTest, CutnIntoMemoryCopiesAndRemoves) {
    butil::IOBuf buf = split_into_blocks({"ab", "cdef"});
    char out[8] = {};
    EXPECT_EQ(3u, buf.cutn(out, 3));
    EXPECT_EQ("abc", std::string(out, 3));
    EXPECT_EQ("def", buf.to_string());
    EXPECT_EQ(3u, buf.cutn(out, sizeof(out)));
    EXPECT_EQ("def", std::string(out, 3));
    EXPECT_TRUE(buf.empty());
}

TEST(IOBufTest, CutnIntoStringAppendsToIt) {
    butil::IOBuf buf;
    buf.append("payload");
    std::string out = "pre-";
    EXPECT_EQ(3u, buf.cutn(&out, 3));
    EXPECT_EQ("pre-pay", out);
    EXPECT_EQ("load", buf.to_string());
}

TEST(IOBufTest, Cut1TakesTheFirstByteUntilEmpty) {
    butil::IOBuf buf;
    buf.append("xy");
    char c = 0;
    EXPECT_TRUE(buf.cut1(&c));
    EXPECT_EQ('x', c);
    EXPECT_TRUE(buf.cut1(&c));
    EXPECT_EQ('y', c);
    EXPECT_FALSE(buf.cut1(&c));
}

TEST(IOBufTest, PopFrontAndPopBackRemoveFromEachEnd) {
    butil::IOBuf buf = split_into_blocks({"abc", "def", "ghi"});
    EXPECT_EQ(4u, buf.pop_front(4));
    EXPECT_EQ("efghi", buf.to_string());
    EXPECT_EQ(4u, buf.pop_back(4));
    EXPECT_EQ("e", buf.to_string());
    EXPECT_EQ(1u, buf.pop_back(10));
    EXPECT_TRUE(buf.empty());
    EXPECT_EQ(0u, buf.pop_front(1));
    EXPECT_EQ(0u, buf.backing_block_num());
}

TEST(IOBufTest, RemovingWholeBlocksFromEitherEndKeepsTheRestInOrder) {
    butil::IOBuf buf = split_into_blocks({"ab", "cd", "ef", "gh"});
    ASSERT_EQ(4u, buf.backing_block_num());
    EXPECT_EQ(4u, buf.pop_front(4));
    EXPECT_EQ("efgh", buf.to_string());
    EXPECT_EQ(2u, buf.backing_block_num());
    EXPECT_EQ(2u, buf.pop_back(2));
    EXPECT_EQ("ef", buf.to_string());
    EXPECT_EQ(1u, buf.backing_block_num());
    butil::IOBuf front;
    EXPECT_EQ(2u, buf.cutn(&front, 2));
    EXPECT_TRUE(buf.empty());
    EXPECT_EQ(0u, buf.backing_block_num());
    EXPECT_EQ("ef", front.to_string());
    buf.append(front);
    buf.append(front);
    EXPECT_EQ("efef", buf.to_string());
    EXPECT_EQ(3u, buf.pop_back(3));
    EXPECT_EQ("e", buf.to_string());

    butil::IOBuf moved_from = split_into_blocks({"x", "y"});
    butil::IOBuf moved_to(std::move(moved_from));
    EXPECT_EQ("xy", moved_to.to_string());
    EXPECT_TRUE(moved_from.empty());
    EXPECT_EQ(0u, moved_from.backing_block_num());
    moved_from.append("z");
    EXPECT_EQ("z", moved_from.to_string());
}

TEST(IOBufTest, CopyToReadsFromAPositionWithoutRemoving) {
    butil::IOBuf buf = split_into_blocks({"0123", "4567", "89"});
    char out[16] = {};
    EXPECT_EQ(5u, buf.copy_to(out, 5, 3));
    EXPECT_EQ("34567", std::string(out, 5));
    EXPECT_EQ(10u, buf.copy_to(out));
    EXPECT_EQ("0123456789", std::string(out, 10));
    EXPECT_EQ(2u, buf.copy_to(out, 100, 8));
    EXPECT_EQ(0u, buf.copy_to(out, 1, 10));
    EXPECT_EQ("0123456789", buf.to_string());
}

TEST(IOBufTest, CopyToStringReplacesItsContent) {
    butil::IOBuf buf;
    buf.append("abcdef");
    std::string out = "old content";
    EXPECT_EQ(3u, buf.copy_to(&out, 3, 2));
    EXPECT_EQ("cde", out);
    EXPECT_EQ(0u, buf.copy_to(&out, 3, 6));
    EXPECT_EQ("", out);
}

TEST(IOBufTest, CopyToCstrTerminatesTheCopy) {
    butil::IOBuf buf;
    buf.append("abc");
    char out[8];
    memset(out, 'x', sizeof(out));
    EXPECT_EQ(2u, buf.copy_to_cstr(out, 2, 1));
    EXPECT_STREQ("bc", out);
}

TEST(IOBufTest, AppendToSharesARangeOfBytes) {
    butil::IOBuf buf = split_into_blocks({"abc", "def"});
    butil::IOBuf out;
    EXPECT_EQ(3u, buf.append_to(&out, 3, 2));
    EXPECT_EQ("cde", out.to_string());
    EXPECT_EQ(buf.backing_block(0).data() + 2, out.backing_block(0).data());
    EXPECT_EQ("abcdef", buf.to_string());
    std::string s = ">";
    EXPECT_EQ(2u, buf.append_to(&s, 100, 4));
    EXPECT_EQ(">ef", s);
}

TEST(IOBufTest, EqualityComparesBytesNotBlockLayout) {
    const butil::IOBuf split = split_into_blocks({"he", "llo", " world"});
    butil::IOBuf whole;
    whole.append("hello world");
    EXPECT_TRUE(split.equals(whole));
    EXPECT_TRUE(whole.equals(split));
    EXPECT_TRUE(split == whole);
    EXPECT_TRUE(split.equals("hello world"));
    EXPECT_TRUE(split == std::string("hello world"));
    EXPECT_TRUE("hello world" == split);
    whole.pop_back(1);
    whole.push_back('D');
    EXPECT_TRUE(split != whole);
    EXPECT_TRUE(split != "hello worlD");
    EXPECT_FALSE(split.equals("hello"));
}

TEST(IOBufTest, SwapExchangesContents) {
    butil::IOBuf a;
    a.append("first");
    butil::IOBuf b;
    b.append("second");
    a.swap(b);
    EXPECT_EQ("second", a.to_string());
    EXPECT_EQ("first", b.to_string());
}

TEST(IOBufTest, AssignmentReplacesContent) {
    butil::IOBuf a;
    a.append("a");
    butil::IOBuf b;
    b.append("b");
    a = b;
    EXPECT_EQ("b", a.to_string());
    a = a;
    EXPECT_EQ("b", a.to_string());
    butil::IOBuf c;
    c = std::move(a);
    EXPECT_EQ("b", c.to_string());
    EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): documented state
    c = "from C string";
    EXPECT_EQ("from C string", c.to_string());
    c = std::string("from string");
    EXPECT_EQ("from string", c.to_string());
}

TEST(IOBufTest, MoveConstructionTakesTheBytes) {
    butil::IOBuf a;
    a.append("moved");
    const char* stored_at = a.backing_block(0).data();
    butil::IOBuf b(std::move(a));
    EXPECT_EQ("moved", b.to_string());
    EXPECT_EQ(stored_at, b.backing_block(0).data());
    EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): documented state
}

TEST(IOBufTest, ClearEmptiesTheBuffer) {
    butil::IOBuf buf;
    buf.append(pattern(50000));
    buf.clear();
    EXPECT_TRUE(buf.empty());
    EXPECT_EQ(0u, buf.backing_block_num());
    buf.append("again");
    EXPECT_EQ("again", buf.to_string());
}

TEST(IOBufTest, StreamsItsBytesToAnOstream) {
    butil::IOBuf buf = split_into_blocks({"a\0", "bc"});
    buf.append(std::string("d\0", 2));
    std::ostringstream os;
    os << buf;
    EXPECT_EQ(buf.to_string(), os.str());
}

TEST(IOBufTest, BackingBlocksCoverTheBytesInOrder) {
    butil::IOBuf buf = split_into_blocks({"ab", "cde"});
    buf.append(pattern(30000));
    std::string joined;
    for (size_t i = 0; i < buf.backing_block_num(); ++i) {
        const butil::StringPiece piece = buf.backing_block(i);
        EXPECT_FALSE(piece.empty());
        joined.append(piece.data(), piece.size());
    }
    EXPECT_EQ(buf.to_string(), joined);
    EXPECT_TRUE(buf.backing_block(buf.backing_block_num()).empty());
}

TEST(IOBufTest, UserDataIsReleasedOnceWhenTheLastReferenceGoes) {
    int releases = 0;
    static char data[] = "user bytes";
    {
        butil::IOBuf buf;
        EXPECT_EQ(0, buf.append_user_data(data, 10, [&releases](void* p) {
            EXPECT_EQ(static_cast<void*>(data), p);
            ++releases;
        }));
        EXPECT_EQ(data, buf.backing_block(0).data());
        butil::IOBuf part;
        buf.cutn(&part, 4);
        EXPECT_EQ("user", part.to_string());
        buf.clear();
        EXPECT_EQ(0, releases);
        EXPECT_EQ("user", part.to_string());
    }
    EXPECT_EQ(1, releases);
}

TEST(IOBufTest, EmptyUserDataIsReleasedAtOnce) {
    int releases = 0;
    char byte = 0;
    butil::IOBuf buf;
    EXPECT_EQ(0, buf.append_user_data(&byte, 0, [&releases](void*) { ++releases; }));
    EXPECT_EQ(1, releases);
    EXPECT_TRUE(buf.empty());
    EXPECT_EQ(-1, buf.append_user_data(nullptr, 1, [](void*) {}));
}

TEST(IOBufTest, AppendingAfterUserDataStartsANewBlock) {
    static char data[] = "fixed";
    butil::IOBuf buf;
    buf.append_user_data(data, 5, [](void*) {});
    buf.append("+more");
    EXPECT_EQ("fixed+more", buf.to_string());
    EXPECT_STREQ("fixed", data);
}

TEST(IOBufTest, CopiesOfOneBufferCanBeModifiedOnDifferentThreads) {
    const std::string base = pattern(40000);
    butil::IOBuf shared;
    shared.append(base);
    std::atomic<int> mismatches{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&shared, &base, &mismatches, t] {
            for (int round = 0; round < 200; ++round) {
                butil::IOBuf mine(shared);
                const std::string suffix(static_cast<size_t>(t + 1), static_cast<char>('a' + t));
                mine.append(suffix);
                butil::IOBuf front;
                mine.cutn(&front, 1000);
                if (front.to_string() != base.substr(0, 1000) ||
                    mine.to_string() != base.substr(1000) + suffix) {
                    ++mismatches;
                }
            }
        });
    }
    for (std::thread& thread : threads) {
        thread.join();
    }
    EXPECT_EQ(0, mismatches.load());
    EXPECT_EQ(base, shared.to_string());
}

TEST(StringPieceTest, ViewsStringsAndComparesBytes) {
    const std::string text("abc\0def", 7);
    butil::StringPiece piece(text);
    EXPECT_EQ(7u, piece.size());
    EXPECT_EQ(text, piece.as_string());
    EXPECT_TRUE(piece.starts_with("abc"));
    EXPECT_TRUE(piece.ends_with(butil::StringPiece("def")));
    piece.remove_prefix(4);
    piece.remove_suffix(1);
    EXPECT_EQ(butil::StringPiece("de"), piece);
    EXPECT_TRUE(butil::StringPiece("ab") < butil::StringPiece("abc"));
    EXPECT_TRUE(butil::StringPiece().empty());
    EXPECT_EQ("", butil::StringPiece(static_cast<const char*>(nullptr)).as_string());
}

}  // namespace
