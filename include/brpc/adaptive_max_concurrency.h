// brpc::AdaptiveMaxConcurrency: a method's limit on calls in flight, as
// brpc's ServerOptions::method_max_concurrency and Server::MaxConcurrencyOf
// take it. Header-only.
//
// Set it to a number (0 or "unlimited": no limit; N or "N": at most N calls
// in flight, beyond which a request is answered ELIMIT and the method never
// runs). brpc's adaptive limiters ("auto", "timeout", TimeoutConcurrencyConf)
// are not implemented here: a server given one refuses to Start with a
// message saying so.
#ifndef BRPC_ADAPTIVE_MAX_CONCURRENCY_H
#define BRPC_ADAPTIVE_MAX_CONCURRENCY_H

#include <cstdint>
#include <cstdlib>
#include <ostream>
#include <string>

#include "butil/strings/string_piece.h"

namespace brpc {

struct TimeoutConcurrencyConf {
    int64_t timeout_ms;
    int max_concurrency;
};

class AdaptiveMaxConcurrency {
public:
    AdaptiveMaxConcurrency() : value_(UNLIMITED()), max_concurrency_(0) {}
    explicit AdaptiveMaxConcurrency(int max_concurrency) : max_concurrency_(0) { *this = max_concurrency; }
    explicit AdaptiveMaxConcurrency(const butil::StringPiece& value) : max_concurrency_(0) { *this = value; }
    explicit AdaptiveMaxConcurrency(const TimeoutConcurrencyConf& value) : max_concurrency_(0) { *this = value; }
    ~AdaptiveMaxConcurrency() {}

    void operator=(int max_concurrency) {
        if (max_concurrency <= 0) {
            value_ = UNLIMITED();
            max_concurrency_ = 0;
        } else {
            value_ = std::to_string(max_concurrency);
            max_concurrency_ = max_concurrency;
        }
    }

    void operator=(const butil::StringPiece& value) {
        const std::string text(value.data(), value.size());
        char* end = NULL;
        const long number = text.empty() ? 0 : std::strtol(text.c_str(), &end, 10);
        if (text == UNLIMITED() || (!text.empty() && end != NULL && *end == '\0' && number >= 0 &&
                                    number <= 0x7fffffff)) {
            *this = text == UNLIMITED() ? 0 : static_cast<int>(number);
        } else {
            // An adaptive limiter: kept by name, refused at Server::Start.
            value_ = text;
            max_concurrency_ = -1;
        }
    }

    void operator=(const TimeoutConcurrencyConf& /*value*/) {
        value_ = "timeout";
        max_concurrency_ = -1;
    }

    // 0: unlimited; > 0: a constant limit; < 0: a limiter this library
    // does not implement.
    operator int() const { return max_concurrency_; }

    // "unlimited", "N", or the limiter's name.
    const std::string& value() const { return value_; }

    const std::string& type() const {
        static const std::string user_defined = "user-defined";
        return max_concurrency_ == 0 ? UNLIMITED() : max_concurrency_ > 0 ? CONSTANT() : user_defined;
    }

    static const std::string& UNLIMITED() {
        static const std::string unlimited = "unlimited";
        return unlimited;
    }
    static const std::string& CONSTANT() {
        static const std::string constant = "constant";
        return constant;
    }

private:
    std::string value_;
    int max_concurrency_;
};

inline std::ostream& operator<<(std::ostream& os, const AdaptiveMaxConcurrency& amc) {
    return os << amc.value();
}

inline bool operator==(const AdaptiveMaxConcurrency& amc, const butil::StringPiece& concurrency) {
    return amc.value() == std::string(concurrency.data(), concurrency.size());
}
inline bool operator==(const butil::StringPiece& concurrency, const AdaptiveMaxConcurrency& amc) {
    return amc == concurrency;
}
inline bool operator!=(const AdaptiveMaxConcurrency& amc, const butil::StringPiece& concurrency) {
    return !(amc == concurrency);
}
inline bool operator!=(const butil::StringPiece& concurrency, const AdaptiveMaxConcurrency& amc) {
    return !(amc == concurrency);
}

}  // namespace brpc

#endif  // BRPC_ADAPTIVE_MAX_CONCURRENCY_H
