// expect: brpc_stream: exposing a bvar by name .* is not provided
#include <brpc/server.h>
int main() {
    bvar::Adder<int> requests("example_requests");
    requests << 1;
    return 0;
}
