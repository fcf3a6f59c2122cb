// expect: brpc_stream: TRACEPRINTF is not provided: rpcz
#include <brpc/server.h>
int main() {
    TRACEPRINTF("Handle request %d", 1);
    return 0;
}
