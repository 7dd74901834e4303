// The tracer's own signals. While tracing, SIGINT, SIGTERM, SIGHUP, SIGUSR1
// and SIGCHLD are blocked and read from a signalfd by the trace loop; once
// tracing is over, the ending ones work again (a FIFO nobody reads must not
// hold the tracer).
#pragma once

namespace memscope {

// Blocks the trace loop's signals; their signalfd (non-blocking). Before
// anything slow, and before `run` forks (the child unblocks its own).
int trace_signal_fd();

// Tracing is over: SIGINT, SIGTERM and SIGHUP end the tracer again,
// whatever it is doing. The first one stops every wait on an output and the
// tracer ends with what it has written, 128 + the signal; a second ends it
// at once. Those already queued were for the trace, which has stopped; one
// ignored when we were started stays ignored.
void end_on_signals_again(int sigfd);

// The first ending signal since end_on_signals_again(), 0 when none.
int ending_signal();

} // namespace memscope
