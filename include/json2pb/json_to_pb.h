// json2pb/json_to_pb.h: JSON to protobuf message, with brpc's signatures,
// on protobuf's own JSON parser (field names as in the .proto or in
// lowerCamelCase; unknown fields ignored, as brpc does). Options protobuf's
// parser cannot honour (bytes not as base64, an array as the single repeated
// field) make the call fail with a text saying so.
#ifndef JSON2PB_JSON_TO_PB_H
#define JSON2PB_JSON_TO_PB_H

#include <cstddef>
#include <string>

#include <google/protobuf/io/zero_copy_stream.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>

namespace json2pb {

struct Json2PbOptions {
    Json2PbOptions() : base64_to_bytes(true), array_to_single_repeated(false), allow_remaining_bytes_after_parsing(false) {}

    bool base64_to_bytes;
    bool array_to_single_repeated;
    bool allow_remaining_bytes_after_parsing;
};

namespace json_to_pb_internal {

inline bool Fail(std::string* error, const std::string& text) {
    if (error != nullptr) {
        *error = text;
    }
    return false;
}

}  // namespace json_to_pb_internal

inline bool JsonToProtoMessage(const std::string& json, google::protobuf::Message* message,
                               const Json2PbOptions& options, std::string* error = nullptr,
                               size_t* parsed_offset = nullptr) {
    if (message == nullptr) {
        return json_to_pb_internal::Fail(error, "json2pb: message is NULL");
    }
    if (!options.base64_to_bytes || options.array_to_single_repeated || options.allow_remaining_bytes_after_parsing) {
        return json_to_pb_internal::Fail(error,
                                         "json2pb: this library parses JSON with protobuf's parser, which cannot "
                                         "honour base64_to_bytes=false, array_to_single_repeated=true or "
                                         "allow_remaining_bytes_after_parsing=true");
    }
    google::protobuf::util::JsonParseOptions parse;
    parse.ignore_unknown_fields = true;
    message->Clear();
    const google::protobuf::util::Status status = google::protobuf::util::JsonStringToMessage(json, message, parse);
    if (!status.ok()) {
        return json_to_pb_internal::Fail(error, std::string(status.message()));
    }
    if (parsed_offset != nullptr) {
        *parsed_offset = json.size();
    }
    return true;
}

inline bool JsonToProtoMessage(google::protobuf::io::ZeroCopyInputStream* stream, google::protobuf::Message* message,
                               const Json2PbOptions& options, std::string* error = nullptr,
                               size_t* parsed_offset = nullptr) {
    if (stream == nullptr) {
        return json_to_pb_internal::Fail(error, "json2pb: stream is NULL");
    }
    std::string json;
    const void* block = nullptr;
    int size = 0;
    while (stream->Next(&block, &size)) {
        json.append(static_cast<const char*>(block), size);
    }
    return JsonToProtoMessage(json, message, options, error, parsed_offset);
}

inline bool JsonToProtoMessage(const std::string& json, google::protobuf::Message* message,
                               std::string* error = nullptr) {
    return JsonToProtoMessage(json, message, Json2PbOptions(), error);
}

inline bool JsonToProtoMessage(google::protobuf::io::ZeroCopyInputStream* stream, google::protobuf::Message* message,
                               std::string* error = nullptr) {
    return JsonToProtoMessage(stream, message, Json2PbOptions(), error);
}

}  // namespace json2pb

#endif  // JSON2PB_JSON_TO_PB_H
