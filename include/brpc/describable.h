// brpc/describable.h: brpc::Describable, the interface through which an
// object (a service, typically) describes itself in text, and
// DescribeOptions. A Describable written to an ostream describes itself
// briefly; the default description is the object's class name.
//
// This library has no builtin /status page: nothing in it calls Describe.
// The interface is here so that programs written against brpc, whose
// services often implement it, compile and can describe their objects.

#ifndef BRPC_DESCRIBABLE_H
#define BRPC_DESCRIBABLE_H

#include <cxxabi.h>

#include <cstdlib>
#include <ostream>
#include <string>
#include <typeinfo>

namespace brpc {

struct DescribeOptions {
    DescribeOptions() : verbose(true), use_html(false) {}

    // Full description (true) or a short one (false, as operator<< asks).
    bool verbose;
    // The description is embedded in an HTML page.
    bool use_html;
};

namespace describable_internal {

// The readable name of the dynamic type (the mangled one if demangling fails).
inline std::string ClassName(const std::type_info& type) {
    int status = 0;
    char* readable = abi::__cxa_demangle(type.name(), NULL, NULL, &status);
    std::string name = (status == 0 && readable != NULL) ? readable : type.name();
    free(readable);
    return name;
}

}  // namespace describable_internal

class Describable {
public:
    virtual ~Describable() {}
    virtual void Describe(std::ostream& os, const DescribeOptions&) const {
        os << describable_internal::ClassName(typeid(*this));
    }
};

// For objects whose description needs to change them (counters read and reset).
class NonConstDescribable {
public:
    virtual ~NonConstDescribable() {}
    virtual void Describe(std::ostream& os, const DescribeOptions&) {
        os << describable_internal::ClassName(typeid(*this));
    }
};

inline std::ostream& operator<<(std::ostream& os, const Describable& object) {
    DescribeOptions options;
    options.verbose = false;
    object.Describe(os, options);
    return os;
}

inline std::ostream& operator<<(std::ostream& os, NonConstDescribable& object) {
    DescribeOptions options;
    options.verbose = false;
    object.Describe(os, options);
    return os;
}

}  // namespace brpc

#endif  // BRPC_DESCRIBABLE_H
