// brpc/callback.h: brpc::NewCallback / NewPermanentCallback, closures over
// a function or a method with bound arguments (copied when the closure is
// made), and brpc::DoNothing(). A NewCallback closure deletes itself after
// Run(); a permanent one is deleted by its owner.
#ifndef BRPC_CALLBACK_H
#define BRPC_CALLBACK_H

#include <functional>
#include <utility>

#include <google/protobuf/stubs/callback.h>

namespace brpc {

namespace callback_internal {

class BoundClosure : public google::protobuf::Closure {
public:
    BoundClosure(std::function<void()> call, bool self_deleting)
        : call_(std::move(call)), self_deleting_(self_deleting) {}

    void Run() override {
        const bool self_deleting = self_deleting_;
        if (self_deleting) {
            // Deleted before the call returns to us, as brpc's closures are.
            std::function<void()> call;
            call.swap(call_);
            delete this;
            call();
        } else {
            call_();
        }
    }

private:
    std::function<void()> call_;
    const bool self_deleting_;
};

class NoOpClosure : public google::protobuf::Closure {
public:
    void Run() override {}
};

}  // namespace callback_internal

template <typename R, typename... Params, typename... Args>
google::protobuf::Closure* NewCallback(R (*function)(Params...), Args... args) {
    return new callback_internal::BoundClosure(std::bind(function, args...), true);
}

template <typename R, typename... Params, typename... Args>
google::protobuf::Closure* NewPermanentCallback(R (*function)(Params...), Args... args) {
    return new callback_internal::BoundClosure(std::bind(function, args...), false);
}

template <typename Class, typename Object, typename R, typename... Params, typename... Args>
google::protobuf::Closure* NewCallback(Object* object, R (Class::*method)(Params...), Args... args) {
    return new callback_internal::BoundClosure(std::bind(method, object, args...), true);
}

template <typename Class, typename Object, typename R, typename... Params, typename... Args>
google::protobuf::Closure* NewCallback(const Object* object, R (Class::*method)(Params...) const, Args... args) {
    return new callback_internal::BoundClosure(std::bind(method, object, args...), true);
}

template <typename Class, typename Object, typename R, typename... Params, typename... Args>
google::protobuf::Closure* NewPermanentCallback(Object* object, R (Class::*method)(Params...), Args... args) {
    return new callback_internal::BoundClosure(std::bind(method, object, args...), false);
}

// A closure that does nothing, never deleted (pass it where a `done` is
// required but nothing is to happen).
inline google::protobuf::Closure* DoNothing() {
    static callback_internal::NoOpClosure nothing;
    return &nothing;
}

}  // namespace brpc

#endif  // BRPC_CALLBACK_H
