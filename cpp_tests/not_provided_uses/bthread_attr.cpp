// expect: brpc_stream: bthread_attr_t / bthread_list_t are not provided
// As brpc's rpcz_echo server: a bthread attribute, with only brpc headers included.
#include <brpc/server.h>
static const bthread_attr_t kAttr = {BTHREAD_STACKTYPE_NORMAL, BTHREAD_INHERIT_SPAN, nullptr, BTHREAD_TAG_INVALID};
int main() { return 0; }
