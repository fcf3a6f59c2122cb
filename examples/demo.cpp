// Placeholder demo: an IOBuf round trip, until the stream demo replaces it.

#include <butil/iobuf.h>

#include <iostream>

int main() {
    butil::IOBuf message;
    message.append("hello, ");
    message.append(std::string("stream"));
    butil::IOBuf greeting;
    message.cutn(&greeting, 5);
    std::cout << "cut \"" << greeting << "\", left \"" << message << "\" ("
              << message.backing_block_num() << " block)" << std::endl;
    return greeting == "hello" && message == ", stream" ? 0 : 1;
}
