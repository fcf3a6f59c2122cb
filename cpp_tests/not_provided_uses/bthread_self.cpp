// expect: brpc_stream: bthread_self is not provided
#include <brpc/channel.h>
int main() { return static_cast<int>(bthread_self()); }
