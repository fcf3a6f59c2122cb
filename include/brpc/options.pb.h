// brpc generates this header from options.proto; programs reach its enums
// through <brpc/controller.h> or include it by that name. The enums here
// carry brpc's numbers (the C ABI has them as BRPC_COMPRESS_TYPE_* and
// BRPC_CHECKSUM_TYPE_* in brpc_stream.h).

#ifndef BRPC_OPTIONS_PB_H
#define BRPC_OPTIONS_PB_H

namespace brpc {

// How a message's payload is compressed on the wire (its attachment never
// is). LZ4 is declared, as in brpc, but has no baidu_std codec there or
// here: a call asking for it fails.
enum CompressType {
    COMPRESS_TYPE_NONE = 0,
    COMPRESS_TYPE_SNAPPY = 1,
    COMPRESS_TYPE_GZIP = 2,
    COMPRESS_TYPE_ZLIB = 3,
    COMPRESS_TYPE_LZ4 = 4,
};

// The checksum sent with a message's payload and verified by its receiver.
enum ChecksumType {
    CHECKSUM_TYPE_NONE = 0,
    CHECKSUM_TYPE_CRC32C = 1,
};

}  // namespace brpc

#endif  // BRPC_OPTIONS_PB_H
