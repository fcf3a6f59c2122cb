// brpc's error numbers and berror()'s texts for them and for errno values.

#include <brpc/errno.pb.h>
#include <butil/errno.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

namespace {

TEST(ErrnoTest, BrpcCodesKeepBrpcNumbers) {
    EXPECT_EQ(1001, brpc::ENOSERVICE);
    EXPECT_EQ(1002, brpc::ENOMETHOD);
    EXPECT_EQ(1003, brpc::EREQUEST);
    EXPECT_EQ(1008, brpc::ERPCTIMEDOUT);
    EXPECT_EQ(1009, brpc::EFAILEDSOCKET);
    EXPECT_EQ(1014, brpc::EEOF);
    EXPECT_EQ(1017, brpc::EH2RUNOUTSTREAMS);
    EXPECT_EQ(2001, brpc::EINTERNAL);
    EXPECT_EQ(2002, brpc::ERESPONSE);
    EXPECT_EQ(2003, brpc::ELOGOFF);
    EXPECT_EQ(2006, brpc::EITP);
}

TEST(ErrnoTest, ValidityCoversExactlyBrpcCodes) {
    EXPECT_TRUE(brpc::Errno_IsValid(1001));
    EXPECT_TRUE(brpc::Errno_IsValid(1017));
    EXPECT_TRUE(brpc::Errno_IsValid(2006));
    EXPECT_FALSE(brpc::Errno_IsValid(1018));
    EXPECT_FALSE(brpc::Errno_IsValid(2000));
    EXPECT_FALSE(brpc::Errno_IsValid(ECONNRESET));
}

TEST(ErrnoTest, BerrorUsesBrpcWordingForBrpcCodes) {
    EXPECT_STREQ("Got EOF", berror(brpc::EEOF));
    EXPECT_STREQ("No such service", berror(brpc::ENOSERVICE));
    EXPECT_STREQ("RPC call is timed out", berror(brpc::ERPCTIMEDOUT));
    EXPECT_STREQ("Server is stopping", berror(brpc::ELOGOFF));
    for (int code = 1001; code <= 2006; ++code) {
        if (brpc::Errno_IsValid(code)) {
            EXPECT_NE(std::string::npos, std::string(berror(code)).find_first_not_of(' '))
                << code;
        }
    }
}

TEST(ErrnoTest, BerrorUsesTheCLibraryTextForSystemErrors) {
    EXPECT_STREQ("Connection reset by peer", berror(ECONNRESET));
    EXPECT_STREQ("Invalid argument", berror(EINVAL));
}

TEST(ErrnoTest, BerrorNamesUnknownNumbers) {
    EXPECT_STREQ("Unknown error 99999", berror(99999));
}

TEST(ErrnoTest, BerrorWithoutArgumentDescribesErrnoAndKeepsIt) {
    errno = EAGAIN;
    EXPECT_STREQ("Resource temporarily unavailable", berror());
    EXPECT_EQ(EAGAIN, errno);
}

}  // namespace
