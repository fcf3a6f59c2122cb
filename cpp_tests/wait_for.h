// Polling with a deadline, for tests that wait on another thread's work.
#pragma once

#include <chrono>
#include <thread>

namespace test_support {

// Waits up to `seconds` for `done()`; true if it became true.
template <typename Pred>
bool WaitFor(Pred done, double seconds = 10) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds((int)(seconds * 1000));
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

}  // namespace test_support
