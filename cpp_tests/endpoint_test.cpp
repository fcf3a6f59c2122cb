// butil::EndPoint: parsing, printing, resolving and the TCP helpers, on
// real loopback sockets.

#include <butil/endpoint.h>

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <sstream>
#include <string>
#include <unordered_set>

namespace {

butil::EndPoint loopback(int port) {
    butil::EndPoint point;
    EXPECT_EQ(0, butil::str2endpoint("127.0.0.1", port, &point));
    return point;
}

TEST(EndPointTest, DefaultsToAnyAddressAndPortZero) {
    const butil::EndPoint point;
    EXPECT_EQ(butil::IP_ANY, point.ip);
    EXPECT_EQ(0, point.port);
    EXPECT_STREQ("0.0.0.0:0", butil::endpoint2str(point).c_str());
}

TEST(EndPointTest, ParsesIpAndPort) {
    butil::EndPoint point;
    ASSERT_EQ(0, butil::str2endpoint("127.0.0.1:8000", &point));
    EXPECT_STREQ("127.0.0.1", butil::ip2str(point.ip).c_str());
    EXPECT_EQ(8000, point.port);
    EXPECT_EQ(htonl(INADDR_LOOPBACK), butil::ip2int(point.ip));
}

TEST(EndPointTest, ParsingToleratesSurroundingBlanks) {
    butil::EndPoint point;
    ASSERT_EQ(0, butil::str2endpoint("  10.1.2.3:65535  ", &point));
    EXPECT_STREQ("10.1.2.3:65535", butil::endpoint2str(point).c_str());
}

TEST(EndPointTest, RejectsMalformedTextAndLeavesTheEndPointAlone) {
    const char* bad[] = {"127.0.0.1",      "127.0.0.1:",      "127.0.0.1:x",   "127.0.0.1:80x",
                         "127.0.0.1:-1",   "127.0.0.1:65536", "300.0.0.1:80",  "localhost:80",
                         ":80",            "[::1]:80",        "1.2.3.4:99999999999999999999", ""};
    for (const char* text : bad) {
        butil::EndPoint point = loopback(1);
        EXPECT_EQ(-1, butil::str2endpoint(text, &point)) << text;
        EXPECT_EQ(loopback(1), point) << text;
    }
    butil::EndPoint point;
    EXPECT_EQ(-1, butil::str2endpoint(nullptr, &point));
    EXPECT_EQ(-1, butil::str2endpoint("1.2.3.4:5", nullptr));
}

TEST(EndPointTest, ParsesIpWithSeparatePort) {
    butil::EndPoint point;
    ASSERT_EQ(0, butil::str2endpoint("192.168.0.1", 443, &point));
    EXPECT_STREQ("192.168.0.1:443", butil::endpoint2str(point).c_str());
    EXPECT_EQ(-1, butil::str2endpoint("192.168.0.1", 65536, &point));
    EXPECT_EQ(-1, butil::str2endpoint("192.168.0.1", -1, &point));
    EXPECT_EQ(-1, butil::str2endpoint("not-an-ip", 80, &point));
}

TEST(EndPointTest, IpTextRoundTrips) {
    butil::ip_t ip = butil::IP_NONE;
    ASSERT_EQ(0, butil::str2ip("8.8.4.4", &ip));
    EXPECT_STREQ("8.8.4.4", butil::ip2str(ip).c_str());
    EXPECT_EQ(-1, butil::str2ip("8.8.4", &ip));
    EXPECT_EQ(ip, butil::int2ip(butil::ip2int(ip)));
    EXPECT_STREQ("255.255.255.255", butil::ip2str(butil::IP_NONE).c_str());
}

TEST(EndPointTest, ResolvesLocalhostToLoopback) {
    butil::EndPoint point;
    ASSERT_EQ(0, butil::hostname2endpoint("localhost:8123", &point));
    EXPECT_EQ(loopback(8123), point);
    butil::EndPoint with_port;
    ASSERT_EQ(0, butil::hostname2endpoint("localhost", 9, &with_port));
    EXPECT_EQ(loopback(9), with_port);
    butil::EndPoint numeric;
    ASSERT_EQ(0, butil::hostname2endpoint("127.0.0.1:7", &numeric));
    EXPECT_EQ(loopback(7), numeric);
}

TEST(EndPointTest, MyHostnameAndIpAreThisMachinesAndStayTheSame) {
    char name[256];
    ASSERT_EQ(0, gethostname(name, sizeof(name)));
    EXPECT_STREQ(name, butil::my_hostname());
    butil::ip_t expected = butil::IP_ANY;
    if (butil::hostname2ip(name, &expected) != 0) {
        expected = butil::IP_ANY;  // a host name that does not resolve: brpc says IP_ANY too
    }
    EXPECT_EQ(expected, butil::my_ip());
    EXPECT_STREQ(butil::ip2str(expected).c_str(), butil::my_ip_cstr());
    EXPECT_EQ(butil::my_ip_cstr(), butil::my_ip_cstr());  // found once, kept
}

TEST(EndPointTest, HostnameParsingRejectsMalformedPorts) {
    butil::EndPoint point;
    EXPECT_EQ(-1, butil::hostname2endpoint("localhost", &point));
    EXPECT_EQ(-1, butil::hostname2endpoint("localhost:70000", &point));
    EXPECT_EQ(-1, butil::hostname2endpoint("localhost", 70000, &point));
    EXPECT_EQ(-1, butil::hostname2endpoint(nullptr, 80, &point));
}

TEST(EndPointTest, ComparesByAddressThenPort) {
    const butil::EndPoint a = loopback(80);
    const butil::EndPoint b = loopback(81);
    butil::EndPoint c;
    ASSERT_EQ(0, butil::str2endpoint("127.0.0.2:1", &c));
    EXPECT_TRUE(a == loopback(80));
    EXPECT_TRUE(a != b);
    EXPECT_TRUE(a < b);
    EXPECT_FALSE(b < a);
    EXPECT_TRUE(a < c || c < a);
    std::map<butil::EndPoint, int> ordered{{b, 2}, {a, 1}};
    EXPECT_EQ(1, ordered.begin()->second);
}

TEST(EndPointTest, EqualEndPointsHashAlike) {
    std::unordered_set<butil::EndPoint> seen;
    seen.insert(loopback(80));
    seen.insert(loopback(80));
    seen.insert(loopback(81));
    EXPECT_EQ(2u, seen.size());
}

TEST(EndPointTest, PrintsAsIpColonPort) {
    std::ostringstream os;
    os << loopback(1234) << ' ' << loopback(1).ip;
    EXPECT_EQ("127.0.0.1:1234 127.0.0.1", os.str());
}

TEST(EndPointTest, SockaddrRoundTrips) {
    struct sockaddr_storage ss;
    socklen_t size = 0;
    ASSERT_EQ(0, butil::endpoint2sockaddr(loopback(4321), &ss, &size));
    EXPECT_EQ(sizeof(struct sockaddr_in), size);
    butil::EndPoint back;
    ASSERT_EQ(0, butil::sockaddr2endpoint(&ss, size, &back));
    EXPECT_EQ(loopback(4321), back);
    ss.ss_family = AF_INET6;
    EXPECT_EQ(-1, butil::sockaddr2endpoint(&ss, size, &back));
}

TEST(EndPointTest, ListenAndConnectOverLoopback) {
    const int listener = butil::tcp_listen(loopback(0));
    ASSERT_GE(listener, 0) << strerror(errno);
    butil::EndPoint listening;
    ASSERT_EQ(0, butil::get_local_side(listener, &listening));
    EXPECT_GT(listening.port, 0);

    int client_port = 0;
    const int client = butil::tcp_connect(listening, &client_port);
    ASSERT_GE(client, 0) << strerror(errno);
    const int accepted = accept(listener, nullptr, nullptr);
    ASSERT_GE(accepted, 0) << strerror(errno);

    butil::EndPoint peer;
    ASSERT_EQ(0, butil::get_remote_side(accepted, &peer));
    EXPECT_EQ(loopback(client_port), peer);
    butil::EndPoint server_side;
    ASSERT_EQ(0, butil::get_remote_side(client, &server_side));
    EXPECT_EQ(listening, server_side);

    ASSERT_EQ(1, write(client, "x", 1));
    char byte = 0;
    ASSERT_EQ(1, read(accepted, &byte, 1));
    EXPECT_EQ('x', byte);

    close(accepted);
    close(client);
    close(listener);
}

TEST(EndPointTest, ConnectingToAClosedPortFailsWithErrno) {
    const int listener = butil::tcp_listen(loopback(0));
    ASSERT_GE(listener, 0);
    butil::EndPoint vacated;
    ASSERT_EQ(0, butil::get_local_side(listener, &vacated));
    close(listener);
    errno = 0;
    EXPECT_EQ(-1, butil::tcp_connect(vacated, nullptr));
    EXPECT_EQ(ECONNREFUSED, errno);
}

TEST(EndPointTest, SideQueriesOnABadDescriptorFail) {
    butil::EndPoint point;
    EXPECT_EQ(-1, butil::get_local_side(-1, &point));
    EXPECT_EQ(-1, butil::get_remote_side(-1, &point));
}

}  // namespace
