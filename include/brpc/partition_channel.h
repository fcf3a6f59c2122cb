// Not provided by this library (see the #error below).
// This header exists so that a program including it stops here with a clear
// message instead of an error deep inside another header, or a cascade of
// errors in its own code: the missing include after it ends the build.
#ifndef BRPC_STREAM_NOT_PROVIDED_BRPC_PARTITION_CHANNEL_H
#define BRPC_STREAM_NOT_PROVIDED_BRPC_PARTITION_CHANNEL_H
#error "brpc_stream: <brpc/partition_channel.h> is not provided: combo channels are not part of this library; use several brpc::Channel objects. This library implements brpc's Socket, Stream, Channel, Server and Controller over the baidu_std protocol; see README.md for the supported API."
#include "brpc_stream: the build stops at the error above"
#endif
