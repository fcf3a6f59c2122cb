// Not provided by this library (see the #error below).
// This header exists so that a program including it stops here with a clear
// message instead of an error deep inside another header, or a cascade of
// errors in its own code: the missing include after it ends the build.
#ifndef BRPC_STREAM_NOT_PROVIDED_BTHREAD_TIMER_THREAD_H
#define BRPC_STREAM_NOT_PROVIDED_BTHREAD_TIMER_THREAD_H
#error "brpc_stream: <bthread/timer_thread.h> is not provided: bthread (brpc's M:N threads and its timer thread) is not part of this library; run timed work on a std::thread of your own. This library implements brpc's Socket, Stream, Channel, Server and Controller over the baidu_std protocol; see README.md for the supported API."
#include "brpc_stream: the build stops at the error above"
#endif
