// expect: brpc_stream: bthread_list_init is not provided
#include <brpc/server.h>
int main() {
    bthread_list_t* list = nullptr;
    return bthread_list_init(list, 0, 0);
}
