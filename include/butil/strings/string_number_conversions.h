// Not provided by this library (see the #error below).
// This header exists so that a program including it stops here with a clear
// message instead of an error deep inside another header, or a cascade of
// errors in its own code: the missing include after it ends the build.
#ifndef BRPC_STREAM_NOT_PROVIDED_BUTIL_STRINGS_STRING_NUMBER_CONVERSIONS_H
#define BRPC_STREAM_NOT_PROVIDED_BUTIL_STRINGS_STRING_NUMBER_CONVERSIONS_H
#error "brpc_stream: <butil/strings/string_number_conversions.h> is not provided: of butil's string helpers only string_piece.h, string_printf.h and string_splitter.h are part of this library; use std::to_string and std::strtol / std::from_chars. This library implements brpc's Socket, Stream, Channel, Server and Controller over the baidu_std protocol; see README.md for the supported API."
#include "brpc_stream: the build stops at the error above"
#endif
