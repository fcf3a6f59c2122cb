// Not provided by this library (see the #error below).
// This header exists so that a program including it stops here with a clear
// message instead of an error deep inside another header, or a cascade of
// errors in its own code: the missing include after it ends the build.
#ifndef BRPC_STREAM_NOT_PROVIDED_BRPC_ESP_MESSAGE_H
#define BRPC_STREAM_NOT_PROVIDED_BRPC_ESP_MESSAGE_H
#error "brpc_stream: <brpc/esp_message.h> is not provided: only the baidu_std protocol (with streams) is part of this library, not brpc's HTTP, gRPC, redis, memcache, nshead, thrift, RTMP or other protocols. This library implements brpc's Socket, Stream, Channel, Server and Controller over the baidu_std protocol; see README.md for the supported API."
#include "brpc_stream: the build stops at the error above"
#endif
