// expect: compiles
// Including the headers that declare the refused names, and using what is
// provided next to them, compiles: the refusals fire only where used.
#include <brpc/channel.h>
#include <brpc/server.h>
#include <brpc/traceprintf.h>
#include <bvar/reducer.h>
int main() {
    bvar::Adder<size_t> n;
    n << 1;
    const bthread_attr_t* attr = nullptr;  // naming the type is fine, using one is not
    (void)attr;
    bthread_usleep(1);
    return static_cast<int>(n.get_value()) - 1;
}
