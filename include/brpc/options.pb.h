// brpc generates this header from options.proto; programs reach its enums
// through <brpc/controller.h> or include it by that name. The enums here
// carry brpc's numbers (the C ABI has them as BRPC_COMPRESS_TYPE_* and
// BRPC_CHECKSUM_TYPE_* in brpc_stream.h).

#ifndef BRPC_OPTIONS_PB_H
#define BRPC_OPTIONS_PB_H

namespace brpc {

// brpc's protocols with the numbers of its options.proto. Only baidu_std is
// spoken here: a channel given any other fails Init, naming it.
enum ProtocolType {
    PROTOCOL_UNKNOWN = 0,
    PROTOCOL_RDMA_HANDSHAKE = 1,
    PROTOCOL_BAIDU_STD = 2,
    PROTOCOL_STREAMING_RPC = 3,
    PROTOCOL_HULU_PBRPC = 4,
    PROTOCOL_SOFA_PBRPC = 5,
    PROTOCOL_RTMP = 6,
    PROTOCOL_THRIFT = 7,
    PROTOCOL_HTTP = 8,
    PROTOCOL_PUBLIC_PBRPC = 9,
    PROTOCOL_NOVA_PBRPC = 10,
    PROTOCOL_REDIS = 11,
    PROTOCOL_NSHEAD_CLIENT = 12,
    PROTOCOL_NSHEAD = 13,
    PROTOCOL_HADOOP_RPC = 14,
    PROTOCOL_HADOOP_SERVER_RPC = 15,
    PROTOCOL_MONGO = 16,
    PROTOCOL_UBRPC_COMPACK = 17,
    PROTOCOL_DIDX_CLIENT = 18,
    PROTOCOL_MEMCACHE = 19,
    PROTOCOL_ITP = 20,
    PROTOCOL_NSHEAD_MCPACK = 21,
    PROTOCOL_DISP_IDL = 22,
    PROTOCOL_ERSDA_CLIENT = 23,
    PROTOCOL_UBRPC_MCPACK2 = 24,
    PROTOCOL_CDS_AGENT = 25,
    PROTOCOL_ESP = 26,
    PROTOCOL_H2 = 27,
    PROTOCOL_COUCHBASE = 28,
    PROTOCOL_MYSQL = 29,
};

// brpc's name of each protocol (what options.protocol = "..." takes);
// "unknown" for a number outside the list.
inline const char* ProtocolTypeName(ProtocolType type) {
    switch (type) {
        case PROTOCOL_UNKNOWN: return "unknown";
        case PROTOCOL_RDMA_HANDSHAKE: return "rdma_handshake";
        case PROTOCOL_BAIDU_STD: return "baidu_std";
        case PROTOCOL_STREAMING_RPC: return "streaming_rpc";
        case PROTOCOL_HULU_PBRPC: return "hulu_pbrpc";
        case PROTOCOL_SOFA_PBRPC: return "sofa_pbrpc";
        case PROTOCOL_RTMP: return "rtmp";
        case PROTOCOL_THRIFT: return "thrift";
        case PROTOCOL_HTTP: return "http";
        case PROTOCOL_PUBLIC_PBRPC: return "public_pbrpc";
        case PROTOCOL_NOVA_PBRPC: return "nova_pbrpc";
        case PROTOCOL_REDIS: return "redis";
        case PROTOCOL_NSHEAD_CLIENT: return "nshead_client";
        case PROTOCOL_NSHEAD: return "nshead";
        case PROTOCOL_HADOOP_RPC: return "hadoop_rpc";
        case PROTOCOL_HADOOP_SERVER_RPC: return "hadoop_server_rpc";
        case PROTOCOL_MONGO: return "mongo";
        case PROTOCOL_UBRPC_COMPACK: return "ubrpc_compack";
        case PROTOCOL_DIDX_CLIENT: return "didx_client";
        case PROTOCOL_MEMCACHE: return "memcache";
        case PROTOCOL_ITP: return "itp";
        case PROTOCOL_NSHEAD_MCPACK: return "nshead_mcpack";
        case PROTOCOL_DISP_IDL: return "disp_idl";
        case PROTOCOL_ERSDA_CLIENT: return "ersda_client";
        case PROTOCOL_UBRPC_MCPACK2: return "ubrpc_mcpack2";
        case PROTOCOL_CDS_AGENT: return "cds_agent";
        case PROTOCOL_ESP: return "esp";
        case PROTOCOL_H2: return "h2";
        case PROTOCOL_COUCHBASE: return "couchbase";
        case PROTOCOL_MYSQL: return "mysql";
    }
    return "unknown";
}

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
