// Compression and checksums through the facade, as a brpc program asks for
// them: Controller::set_request_compress_type / set_response_compress_type
// with each brpc::CompressType, and CHECKSUM_TYPE_CRC32C, over real
// loopback TCP.

#include <atomic>
#include <string>

#include <gtest/gtest.h>

#include "brpc/channel.h"
#include "brpc/controller.h"
#include "brpc/server.h"
#include "echo.pb.h"

namespace {

// Echoes message and attachment, answering with the request's coding; a
// message of "answer-lz4" asks for a response compression with no codec.
class CodingEchoService : public test::EchoService {
public:
    void Echo(google::protobuf::RpcController* cntl_base, const test::EchoRequest* request,
              test::EchoResponse* response, google::protobuf::Closure* done) override {
        brpc::ClosureGuard done_guard(done);
        brpc::Controller* cntl = static_cast<brpc::Controller*>(cntl_base);
        ++calls;
        seen_compress_type = cntl->request_compress_type();
        seen_checksum_type = cntl->request_checksum_type();
        seen_checksum_attachment = cntl->request_checksum_attachment();
        if (request->message() == "answer-lz4") {
            cntl->set_response_compress_type(brpc::COMPRESS_TYPE_LZ4);
        } else {
            cntl->set_response_compress_type(cntl->request_compress_type());
            cntl->set_response_checksum_type(cntl->request_checksum_type());
            cntl->set_response_checksum_attachment(cntl->request_checksum_attachment());
        }
        cntl->response_attachment().append(cntl->request_attachment());
        response->set_message(request->message());
    }

    std::atomic<int> calls{0};
    std::atomic<int> seen_compress_type{-1};
    std::atomic<int> seen_checksum_type{-1};
    std::atomic<bool> seen_checksum_attachment{false};
};

class CodingTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_EQ(0, server_.AddService(&service_, brpc::SERVER_DOESNT_OWN_SERVICE));
        ASSERT_EQ(0, server_.Start("127.0.0.1:0", NULL));
        brpc::ChannelOptions options;
        options.timeout_ms = 10000;
        ASSERT_EQ(0, channel_.Init("127.0.0.1", server_.listen_address().port, &options));
    }

    std::string LongText() {
        std::string text;
        for (int i = 0; i < 200; ++i) {
            text += "words that compress well, ";
        }
        return text;
    }

    CodingEchoService service_;
    brpc::Server server_;
    brpc::Channel channel_;
};

class CompressTest : public CodingTest, public ::testing::WithParamInterface<brpc::CompressType> {};

TEST_P(CompressTest, RequestAndResponseArriveWholeWithTheCompressTypeTheySaid) {
    test::EchoService_Stub stub(&channel_);
    brpc::Controller cntl;
    cntl.set_request_compress_type(GetParam());
    cntl.request_attachment().append("attached, never compressed");
    test::EchoRequest request;
    request.set_message(LongText());
    test::EchoResponse response;
    stub.Echo(&cntl, &request, &response, NULL);

    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    EXPECT_EQ(LongText(), response.message());
    EXPECT_EQ("attached, never compressed", cntl.response_attachment().to_string());
    EXPECT_EQ((int)GetParam(), service_.seen_compress_type.load());
    EXPECT_EQ(brpc::CHECKSUM_TYPE_NONE, service_.seen_checksum_type.load());
    EXPECT_EQ(GetParam(), cntl.response_compress_type());
}

TEST_P(CompressTest, ACrc32cChecksumIsVerifiedBothWays) {
    test::EchoService_Stub stub(&channel_);
    for (int with_attachment = 0; with_attachment < 2; ++with_attachment) {
        brpc::Controller cntl;
        cntl.set_request_compress_type(GetParam());
        cntl.set_request_checksum_type(brpc::CHECKSUM_TYPE_CRC32C);
        cntl.set_request_checksum_attachment(with_attachment != 0);
        cntl.request_attachment().append("covered or not");
        test::EchoRequest request;
        request.set_message(LongText());
        test::EchoResponse response;
        stub.Echo(&cntl, &request, &response, NULL);

        ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
        EXPECT_EQ(LongText(), response.message());
        EXPECT_EQ(brpc::CHECKSUM_TYPE_CRC32C, service_.seen_checksum_type.load());
        EXPECT_EQ(with_attachment != 0, service_.seen_checksum_attachment.load());
        EXPECT_EQ(brpc::CHECKSUM_TYPE_CRC32C, cntl.response_checksum_type());
        EXPECT_EQ(with_attachment != 0, cntl.response_checksum_attachment());
    }
}

TEST_P(CompressTest, AnEmptyMessageRoundTrips) {
    test::EchoService_Stub stub(&channel_);
    brpc::Controller cntl;
    cntl.set_request_compress_type(GetParam());
    cntl.set_request_checksum_type(brpc::CHECKSUM_TYPE_CRC32C);
    test::EchoRequest request;
    test::EchoResponse response;
    stub.Echo(&cntl, &request, &response, NULL);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    EXPECT_EQ("", response.message());
}

INSTANTIATE_TEST_SUITE_P(EachCompressType, CompressTest,
                         ::testing::Values(brpc::COMPRESS_TYPE_NONE, brpc::COMPRESS_TYPE_SNAPPY,
                                           brpc::COMPRESS_TYPE_GZIP, brpc::COMPRESS_TYPE_ZLIB));

TEST_F(CodingTest, ACallAskingForLz4FailsWithErequestAndNeverReachesTheServer) {
    test::EchoService_Stub stub(&channel_);
    brpc::Controller cntl;
    cntl.set_request_compress_type(brpc::COMPRESS_TYPE_LZ4);
    test::EchoRequest request;
    request.set_message("hello");
    test::EchoResponse response;
    stub.Echo(&cntl, &request, &response, NULL);
    ASSERT_TRUE(cntl.Failed());
    EXPECT_EQ(brpc::EREQUEST, cntl.ErrorCode());
    EXPECT_NE(std::string::npos, cntl.ErrorText().find("lz4")) << cntl.ErrorText();
    EXPECT_EQ(0, service_.calls.load());
}

TEST_F(CodingTest, AServerAnsweringWithLz4SendsEresponseInstead) {
    test::EchoService_Stub stub(&channel_);
    brpc::Controller cntl;
    test::EchoRequest request;
    request.set_message("answer-lz4");
    test::EchoResponse response;
    stub.Echo(&cntl, &request, &response, NULL);
    ASSERT_TRUE(cntl.Failed());
    EXPECT_EQ(brpc::ERESPONSE, cntl.ErrorCode());
    EXPECT_NE(std::string::npos, cntl.ErrorText().find("lz4")) << cntl.ErrorText();
}

TEST_F(CodingTest, ResetForgetsTheCoding) {
    brpc::Controller cntl;
    cntl.set_request_compress_type(brpc::COMPRESS_TYPE_GZIP);
    cntl.set_request_checksum_type(brpc::CHECKSUM_TYPE_CRC32C);
    cntl.set_request_checksum_attachment(true);
    cntl.Reset();
    EXPECT_EQ(brpc::COMPRESS_TYPE_NONE, cntl.request_compress_type());
    EXPECT_EQ(brpc::CHECKSUM_TYPE_NONE, cntl.request_checksum_type());
    EXPECT_FALSE(cntl.request_checksum_attachment());
}

}  // namespace
