// A file mapped into memory that shrinks while it is read raises SIGBUS, which ends the process.
// RecordReader checks each file's size before every copy, but another process can truncate a
// file in the middle of one; this guard turns that last race into an error too.
#pragma once

namespace ltfast {

// Calls work(argument) and returns true, or returns false if a SIGBUS interrupted it on this
// thread. Other threads and SIGBUS raised outside such a call keep the handler that was
// installed before (Python's faulthandler, or the default). `work` must not own objects with
// destructors on its stack: an interruption jumps over them.
bool run_catching_bus_errors(void (*work)(void*), void* argument);

}  // namespace ltfast
