#include "bus_guard.hpp"

#include <csetjmp>
#include <csignal>
#include <mutex>

namespace ltfast {
namespace {

thread_local sigjmp_buf* t_landing = nullptr;  // set only while this thread runs guarded work
struct sigaction g_previous {};

void on_bus_error(int, siginfo_t*, void*) {
    if (sigjmp_buf* landing = t_landing) siglongjmp(*landing, 1);
    // Not guarded work: give SIGBUS back to the handler from before. Returning runs the faulting
    // access again, which now reaches that handler (or the default, which ends the process).
    sigaction(SIGBUS, &g_previous, nullptr);
}

void install_once() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction action {};
        action.sa_sigaction = on_bus_error;
        action.sa_flags = SA_SIGINFO;
        sigemptyset(&action.sa_mask);
        sigaction(SIGBUS, &action, &g_previous);
    });
}

}  // namespace

bool run_catching_bus_errors(void (*work)(void*), void* argument) {
    install_once();
    sigjmp_buf landing;
    // savemask = 1: the jump restores the signal mask, which the kernel set to block SIGBUS
    // while the handler ran; a later SIGBUS on this thread is then caught again.
    if (sigsetjmp(landing, 1) != 0) {
        t_landing = nullptr;
        return false;
    }
    t_landing = &landing;
    try {
        work(argument);
    } catch (...) {  // the landing dies with this frame: never jump to it afterwards
        t_landing = nullptr;
        throw;
    }
    t_landing = nullptr;
    return true;
}

}  // namespace ltfast
