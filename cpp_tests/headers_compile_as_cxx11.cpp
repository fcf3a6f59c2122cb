// Compiled with -std=c++11 -pedantic -Werror: brpc programs built as C++11
// include these headers, so any newer construct in them fails this build.

#include <brpc/callback.h>
#include <brpc/channel.h>
#include <brpc/closure_guard.h>
#include <brpc/describable.h>
#include <brpc/controller.h>
#include <brpc/errno.h>
#include <brpc/errno.pb.h>
#include <brpc/event_dispatcher.h>
#include <brpc/policy/hasher.h>
#include <brpc/server.h>
#include <brpc/socket.h>
#include <brpc/stream.h>
#include <brpc/stream_stats.h>
#include <butil/atomicops.h>
#include <butil/endpoint.h>
#include <butil/errno.h>
#include <butil/iobuf.h>
#include <butil/logging.h>
#include <butil/macros.h>
#include <butil/scoped_generic.h>
#include <butil/string_printf.h>
#include <butil/string_splitter.h>
#include <butil/strings/string_piece.h>
#include <butil/time.h>
#include <json2pb/json_to_pb.h>
#include <json2pb/pb_to_json.h>
