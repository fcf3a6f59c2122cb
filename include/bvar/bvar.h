// Not provided by this library (see the #error below).
// This header exists so that a program including it stops here with a clear
// message instead of an error deep inside another header, or a cascade of
// errors in its own code: the missing include after it ends the build.
#ifndef BRPC_STREAM_NOT_PROVIDED_BVAR_BVAR_H
#define BRPC_STREAM_NOT_PROVIDED_BVAR_BVAR_H
#error "brpc_stream: <bvar/bvar.h> is not provided: bvar is not part of this library (only bvar::Adder, Maxer and Miner, unnamed, in <bvar/reducer.h>); the library's counters are in <brpc/stream_stats.h> (brpc::GetStreamStats). This library implements brpc's Socket, Stream, Channel, Server and Controller over the baidu_std protocol; see README.md for the supported API."
#include "brpc_stream: the build stops at the error above"
#endif
