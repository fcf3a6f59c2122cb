// The brpc-style test programs listen on a port the system picks; the test
// runner (run_pair.sh) learns it from this file.
#ifndef BRPC_STYLE_PORT_FILE_H
#define BRPC_STYLE_PORT_FILE_H

#include <cstdio>
#include <string>

#include <butil/logging.h>

namespace brpc_style {

// Writes `port` to `path` (written whole, then renamed, so a reader never
// sees a partial file). An empty path writes nothing. False on failure.
inline bool WritePortFile(const std::string& path, int port) {
    if (path.empty()) {
        return true;
    }
    const std::string tmp = path + ".tmp";
    FILE* f = fopen(tmp.c_str(), "w");
    if (f == NULL) {
        PLOG(ERROR) << "Fail to open " << tmp;
        return false;
    }
    const bool written = fprintf(f, "%d\n", port) > 0;
    if (fclose(f) != 0 || !written || rename(tmp.c_str(), path.c_str()) != 0) {
        PLOG(ERROR) << "Fail to write " << path;
        return false;
    }
    return true;
}

}  // namespace brpc_style

#endif  // BRPC_STYLE_PORT_FILE_H
