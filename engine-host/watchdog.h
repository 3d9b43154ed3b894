/*
 * watchdog: stops a script that holds the engine's only thread past its
 * deadline from inside a C function, where no hook can run.
 *
 * While a script runs (engine_watchdog_enter .. leave, called by script.c
 * around every stretch of Lua code), a POSIX timer is armed at the script's
 * deadline and sends SIGALRM to the engine's thread:
 *   first tick   engine_script_interrupt: the running thread gets a hook on
 *                every instruction, call and return, so the script ends with
 *                its deadline error ("timeout") as soon as the C function
 *                gives control back. Nothing else is lost.
 *   second tick  grace_ms later, if the same run still has not returned, the
 *                thread cannot be had back without corrupting the Lua state:
 *                the handler writes one log line (watchdog_exit, with the
 *                script id) and ends the process with
 *                ENGINE_WATCHDOG_EXIT_STATUS. The supervisor starts a fresh
 *                engine; the broker fails every script this engine was running
 *                (engine_lost), and their in-flight calls' replies are dropped.
 *
 * Scripts without an instruction limit also get a tick every
 * ENGINE_SCRIPT_TICK_MS of a run (engine_watchdog_ticks).
 *
 * The sandbox meters the C functions known to run long (pattern.c,
 * sandbox.c), so the second tick is a backstop for what was missed.
 * Process-wide (a signal handler is): one engine per process. Linux only
 * (SIGEV_THREAD_ID).
 */
#ifndef ENGINE_WATCHDOG_H
#define ENGINE_WATCHDOG_H

#include "ferry_err.h"
#include "script.h"

#include <stddef.h>
#include <stdint.h>

/* Exit status of an engine ended by the watchdog (EX_SOFTWARE). */
#define ENGINE_WATCHDOG_EXIT_STATUS 70

/*
 * Installs the SIGALRM handler and creates the timer, aimed at the calling
 * thread (the one that will run scripts). grace_ms 0 keeps the first tick
 * and never ends the process. Until this is called, enter and leave do
 * nothing (unit tests). On failure writes why into err.
 */
ferry_err engine_watchdog_init(int64_t grace_ms, char *err, size_t errlen);

/* Deletes the timer; the handler stays installed but idle. */
void engine_watchdog_fini(void);

/*
 * True when the watchdog runs s's periodic checks: it is initialised and s
 * has no instruction limit, so s needs no count hook (which slows every
 * instruction down, since Lua then goes through its hook check at each one).
 * Every ENGINE_SCRIPT_TICK_MS of a run, the timer then sets a one-shot hook
 * on the running thread (engine_script_poke) that checks the deadline and
 * calls the host's tick. Otherwise the count hook does that itself.
 */
int engine_watchdog_ticks(const engine_script *s);

/* s is about to run Lua code (on s->running) until it yields or ends. */
void engine_watchdog_enter(engine_script *s);

/* s's run is over. */
void engine_watchdog_leave(engine_script *s);

#endif
