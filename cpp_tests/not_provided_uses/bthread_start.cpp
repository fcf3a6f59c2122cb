// expect: brpc_stream: bthread_start_background is not provided
#include <brpc/server.h>
static void* Run(void*) { return nullptr; }
int main() {
    bthread_t tid;
    return bthread_start_background(&tid, &BTHREAD_ATTR_NORMAL, Run, nullptr);
}
