// json2pb/pb_to_json.h: protobuf message to JSON, with brpc's signatures,
// on protobuf's own JSON printer. Field names are the .proto names, as
// brpc's; 64-bit integers print as JSON strings (protobuf's convention).
// An option protobuf's printer cannot honour (bytes not as base64, maps
// not as objects, empty arrays alone, a single repeated field as the whole
// document) makes the call fail with a text saying so.
#ifndef JSON2PB_PB_TO_JSON_H
#define JSON2PB_PB_TO_JSON_H

#include <algorithm>
#include <string>

#include <google/protobuf/io/zero_copy_stream.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

namespace json2pb {

enum EnumOption {
    OUTPUT_ENUM_BY_NAME = 0,
    OUTPUT_ENUM_BY_NUMBER = 1,
};

struct Pb2JsonOptions {
    Pb2JsonOptions()
        : enum_option(OUTPUT_ENUM_BY_NAME),
          pretty_json(false),
          enable_protobuf_map(true),
          bytes_to_base64(true),
          jsonify_empty_array(false),
          always_print_primitive_fields(false),
          single_repeated_to_array(false) {}

    EnumOption enum_option;
    bool pretty_json;
    bool enable_protobuf_map;
    bool bytes_to_base64;
    bool jsonify_empty_array;
    bool always_print_primitive_fields;
    bool single_repeated_to_array;
};

namespace pb_to_json_internal {

inline bool Fail(std::string* error, const std::string& text) {
    if (error != nullptr) {
        *error = text;
    }
    return false;
}

inline bool Convert(const google::protobuf::Message& message, std::string* json, const Pb2JsonOptions& options,
                    std::string* error) {
    if (!options.enable_protobuf_map || !options.bytes_to_base64 || options.jsonify_empty_array ||
        options.single_repeated_to_array) {
        return Fail(error,
                    "json2pb: this library prints JSON with protobuf's printer, which cannot honour "
                    "enable_protobuf_map=false, bytes_to_base64=false, jsonify_empty_array=true or "
                    "single_repeated_to_array=true");
    }
    google::protobuf::util::JsonPrintOptions print;
    print.add_whitespace = options.pretty_json;
    print.always_print_primitive_fields = options.always_print_primitive_fields;
    print.always_print_enums_as_ints = options.enum_option == OUTPUT_ENUM_BY_NUMBER;
    print.preserve_proto_field_names = true;
    json->clear();
    const google::protobuf::util::Status status =
        google::protobuf::util::MessageToJsonString(message, json, print);
    if (!status.ok()) {
        return Fail(error, std::string(status.message()));
    }
    return true;
}

}  // namespace pb_to_json_internal

inline bool ProtoMessageToJson(const google::protobuf::Message& message, std::string* json,
                               const Pb2JsonOptions& options, std::string* error = nullptr) {
    if (json == nullptr) {
        return pb_to_json_internal::Fail(error, "json2pb: json is NULL");
    }
    return pb_to_json_internal::Convert(message, json, options, error);
}

inline bool ProtoMessageToJson(const google::protobuf::Message& message,
                               google::protobuf::io::ZeroCopyOutputStream* json, const Pb2JsonOptions& options,
                               std::string* error = nullptr) {
    if (json == nullptr) {
        return pb_to_json_internal::Fail(error, "json2pb: json is NULL");
    }
    std::string text;
    if (!pb_to_json_internal::Convert(message, &text, options, error)) {
        return false;
    }
    size_t written = 0;
    while (written < text.size()) {
        void* block = nullptr;
        int size = 0;
        if (!json->Next(&block, &size)) {
            return pb_to_json_internal::Fail(error, "json2pb: the output stream refused more bytes");
        }
        const size_t n = std::min(static_cast<size_t>(size), text.size() - written);
        text.copy(static_cast<char*>(block), n, written);
        written += n;
        if (n < static_cast<size_t>(size)) {
            json->BackUp(size - static_cast<int>(n));
        }
    }
    return true;
}

inline bool ProtoMessageToJson(const google::protobuf::Message& message, std::string* json,
                               std::string* error = nullptr) {
    return ProtoMessageToJson(message, json, Pb2JsonOptions(), error);
}

inline bool ProtoMessageToJson(const google::protobuf::Message& message,
                               google::protobuf::io::ZeroCopyOutputStream* json, std::string* error = nullptr) {
    return ProtoMessageToJson(message, json, Pb2JsonOptions(), error);
}

}  // namespace json2pb

#endif  // JSON2PB_PB_TO_JSON_H
