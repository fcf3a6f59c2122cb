// How many I/O threads (event loops) read the process's connections: brpc's
// gflag event_dispatcher_num, set by a function here (there are no gflags in
// this library). Header-only (C++11); brpc/server.h and brpc/channel.h
// include it.
//
//   int main(int argc, char* argv[]) {
//       brpc::SetEventDispatcherNum(4);   // where brpc programs pass
//       brpc::Server server;              // --event_dispatcher_num=4
//       ...
//
// A connection stays on the loop it was given (the one with the fewest);
// each loop reads its ready connections in turns of at most 64 KiB, so busy
// connections on one loop share it evenly. Unset, the environment variable
// BRPC_STREAM_EVENT_DISPATCHERS says, else one per two cores, from 1 to 4
// (brpc's default is 1).

#ifndef BRPC_EVENT_DISPATCHER_H
#define BRPC_EVENT_DISPATCHER_H

#include "brpc_stream.h"

namespace brpc {

// 1 to 64 I/O threads. Only before the first server, channel, stream or
// socket starts them: returns 0 then. After, returns EPERM and logs why (the
// loops run and connections are on them; the count stays as it is).
// EINVAL out of range (the count stays as it is).
inline int SetEventDispatcherNum(int num) { return brpc_set_event_dispatcher_num(num); }

// The I/O threads running now, or, before they start, how many will.
inline int EventDispatcherNum() { return brpc_event_dispatcher_num(); }

}  // namespace brpc

#endif  // BRPC_EVENT_DISPATCHER_H
