// brpc::ClosureGuard: runs a closure when the guard goes out of scope, so a
// service method answers its call on every path. Header-only (C++11).

#ifndef BRPC_CLOSURE_GUARD_H
#define BRPC_CLOSURE_GUARD_H

#include <cstddef>

#include <google/protobuf/stubs/callback.h>

namespace brpc {

class ClosureGuard {
public:
    ClosureGuard() : done_(NULL) {}
    explicit ClosureGuard(google::protobuf::Closure* done) : done_(done) {}
    ~ClosureGuard() {
        if (done_ != NULL) {
            done_->Run();
        }
    }

    // Runs the held closure (if any) now and guards `done` instead.
    void reset(google::protobuf::Closure* done) {
        if (done_ != NULL) {
            done_->Run();
        }
        done_ = done;
    }

    // Gives the closure back without running it; the caller now runs it.
    google::protobuf::Closure* release() {
        google::protobuf::Closure* const done = done_;
        done_ = NULL;
        return done;
    }

    bool empty() const { return done_ == NULL; }

    void swap(ClosureGuard& other) {
        google::protobuf::Closure* const done = done_;
        done_ = other.done_;
        other.done_ = done;
    }

private:
    ClosureGuard(const ClosureGuard&);
    ClosureGuard& operator=(const ClosureGuard&);

    google::protobuf::Closure* done_;
};

}  // namespace brpc

#endif  // BRPC_CLOSURE_GUARD_H
