// expect: brpc_stream: exposing a bvar by name .* is not provided
#include <bvar/reducer.h>
int main() {
    bvar::Maxer<long> worst;
    return worst.expose("worst");
}
